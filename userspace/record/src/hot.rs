//! Borrowed views of the per-statement records — statement, decision, response — so that the
//! daemon records straight from its own buffers instead of building a [`crate::RecordBody`]
//! (a dozen small allocations) for every statement. The recorder serialises them exactly as
//! it would the owned bodies.

use crate::model::{Action, Decision, ResponseSummary, Statement, Truncation};

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
    /// Time from forwarding to completion, microseconds.
    pub duration_us: u64,
    /// Error message (masked), if the statement failed.
    pub error: Option<&'a str>,
    /// Result rows as the client saw them (masked); the writer applies the row cap.
    pub data: &'a [Vec<Option<String>>],
    /// Where the cap cut `data` (set by the writer).
    pub truncated: Option<Truncation>,
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
            data: &self.data,
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
