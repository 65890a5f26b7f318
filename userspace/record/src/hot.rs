//! Borrowed views of the per-statement records — statement, decision, response — so that the
//! daemon records straight from its own buffers instead of building a [`crate::RecordBody`]
//! (a dozen small allocations) for every statement. The recorder serialises them exactly as
//! it would the owned bodies.

use crate::model::{Action, Decision, ResponseSummary, Statement, Truncation};
use crate::rows::RowsRef;

/// A statement as received (text and parameters already masked).
#[derive(Clone, Copy, Debug)]
pub struct StatementRef<'a> {
    /// Statement number within the session.
    pub stmt: u64,
    /// Masked SQL text.
    pub text: &'a str,
    /// Masked bind parameters (`None` = SQL NULL).
    pub params: &'a [Option<String>],
}

/// The policy decision for one statement.
#[derive(Clone, Copy, Debug)]
pub struct DecisionRef<'a> {
    /// Statement number.
    pub stmt: u64,
    /// Verdict.
    pub action: Action,
    /// Rule that decided, if any.
    pub rule: Option<&'a str>,
    /// Approver, when a held statement was approved or rejected.
    pub approver: Option<&'a str>,
    /// Policy tags.
    pub tags: &'a [String],
    /// Message sent to the agent (for a deny).
    pub message: Option<&'a str>,
}

/// What the server answered.
#[derive(Clone, Copy, Debug, Default)]
pub struct ResponseRef<'a> {
    /// Statement number.
    pub stmt: u64,
    /// Result column names.
    pub columns: &'a [String],
    /// Rows returned/affected, if known.
    pub rows: Option<u64>,
    /// Command tag.
    pub command_tag: Option<&'a str>,
    /// Time from forwarding to completion, microseconds; or [`Self::SINCE_STATEMENT`].
    pub duration_us: u64,
    /// Error message (masked), if the statement failed.
    pub error: Option<&'a str>,
    /// Result rows as the client saw them (masked); the writer applies the row cap.
    pub data: RowsRef<'a>,
    /// Where the cap cut `data` (set by the writer).
    pub truncated: Option<Truncation>,
}

impl ResponseRef<'_> {
    /// A [`Self::duration_us`] that asks a [`crate::Recorder`] to record the time from
    /// statement `stmt`'s record to this response's (0 when that statement was not recorded
    /// through it). The session then keeps no start times of its own: its two directions
    /// share nothing for them.
    pub const SINCE_STATEMENT: u64 = u64::MAX;
}

impl Statement {
    /// A borrowed view.
    pub fn view(&self) -> StatementRef<'_> {
        StatementRef {
            stmt: self.stmt,
            text: &self.text,
            params: &self.params,
        }
    }
}

impl Decision {
    /// A borrowed view.
    pub fn view(&self) -> DecisionRef<'_> {
        DecisionRef {
            stmt: self.stmt,
            action: self.action,
            rule: self.rule.as_deref(),
            approver: self.approver.as_deref(),
            tags: &self.tags,
            message: self.message.as_deref(),
        }
    }
}

impl ResponseSummary {
    /// A borrowed view.
    pub fn view(&self) -> ResponseRef<'_> {
        ResponseRef {
            stmt: self.stmt,
            columns: &self.columns,
            rows: self.rows,
            command_tag: self.command_tag.as_deref(),
            duration_us: self.duration_us,
            error: self.error.as_deref(),
            data: RowsRef::Cells(&self.data),
            truncated: self.truncated,
        }
    }
}

/// One per-statement record, borrowed: what [`crate::Recorder::try_put`] takes.
#[derive(Clone, Copy, Debug)]
pub enum Hot<'a> {
    /// A statement.
    Statement(StatementRef<'a>),
    /// Its decision.
    Decision(DecisionRef<'a>),
    /// Its response.
    Response(ResponseRef<'a>),
}

impl Hot<'_> {
    /// The statement number.
    pub fn stmt(&self) -> u64 {
        match self {
            Self::Statement(s) => s.stmt,
            Self::Decision(d) => d.stmt,
            Self::Response(r) => r.stmt,
        }
    }
}

impl Hot<'_> {
    /// The owned record body (for a caller that must keep the record past its borrows, say
    /// to wait for room in the queue).
    pub fn to_body(&self) -> crate::RecordBody {
        use crate::RecordBody;
        match *self {
            Self::Statement(s) => RecordBody::Statement(Statement {
                stmt: s.stmt,
                text: s.text.to_owned(),
                params: s.params.to_vec(),
            }),
            Self::Decision(d) => RecordBody::Decision(Decision {
                stmt: d.stmt,
                action: d.action,
                rule: d.rule.map(str::to_owned),
                approver: d.approver.map(str::to_owned),
                tags: d.tags.to_vec(),
                message: d.message.map(str::to_owned),
            }),
            Self::Response(r) => RecordBody::Response(ResponseSummary {
                stmt: r.stmt,
                columns: r.columns.to_vec(),
                rows: r.rows,
                command_tag: r.command_tag.map(str::to_owned),
                duration_us: r.duration_us,
                error: r.error.map(str::to_owned),
                data: r.data.to_vec(),
                truncated: r.truncated,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RecordBody;

    #[test]
    fn views_and_owned_bodies_round_trip() {
        let st = Statement {
            stmt: 1,
            text: "SELECT $1".into(),
            params: vec![Some("x".into()), None],
        };
        let d = Decision {
            stmt: 1,
            action: Action::Hold,
            rule: Some("r".into()),
            approver: Some("a".into()),
            tags: vec!["t".into()],
            message: Some("m".into()),
        };
        let r = ResponseSummary {
            stmt: 1,
            columns: vec!["c".into()],
            rows: Some(1),
            command_tag: Some("SELECT 1".into()),
            duration_us: 5,
            error: None,
            data: vec![vec![Some("v".into())]],
            truncated: None,
        };
        assert_eq!(
            Hot::Statement(st.view()).to_body(),
            RecordBody::Statement(st.clone())
        );
        assert_eq!(
            Hot::Decision(d.view()).to_body(),
            RecordBody::Decision(d.clone())
        );
        assert_eq!(
            Hot::Response(r.view()).to_body(),
            RecordBody::Response(r.clone())
        );
    }
}
