//! What a session file contains: the header and the record types.
//!
//! These types are deliberately generic (strings, maps) so the daemon maps its
//! own identity, decision and response structs into them. Everything stored
//! here must already be masked by the caller: the recorder writes what it is
//! given. Use [`crate::scan`] in tests to prove no PAN reaches a file.

use crate::util::{hex, unhex};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;
use time::OffsetDateTime;

/// 16-byte session identifier (a UUID's bytes or random), shown as 32 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub [u8; 16]);

impl SessionId {
    /// A random id from the OS random source.
    ///
    /// # Errors
    /// When the OS random source fails.
    pub fn random() -> Result<Self, getrandom::Error> {
        let mut b = [0u8; 16];
        getrandom::fill(&mut b)?;
        Ok(Self(b))
    }

    /// Parses 32 lowercase hex digits (a UUID with dashes is accepted too).
    pub fn parse(s: &str) -> Option<Self> {
        if s.len() == 36 {
            let compact: String = s.chars().filter(|&c| c != '-').collect();
            return (compact.len() == 32)
                .then(|| unhex(&compact).map(Self))
                .flatten();
        }
        unhex(s).map(Self)
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({self})")
    }
}

impl Serialize for SessionId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for SessionId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        unhex(&s)
            .map(Self)
            .ok_or_else(|| serde::de::Error::custom("session id must be 32 lowercase hex digits"))
    }
}

/// Who opened the connection, as the kernel and /proc told the daemon.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// Process id at connect time.
    pub pid: u32,
    /// Real user id.
    pub uid: u32,
    /// User name for `uid`, if resolvable.
    pub user: Option<String>,
    /// cgroup v2 path.
    pub cgroup: String,
    /// Executable path.
    pub exe: String,
    /// Command line (masked by the caller).
    pub cmdline: Vec<String>,
    /// Environment-derived labels (CI job, pipeline, agent name, ...).
    pub labels: BTreeMap<String, String>,
    /// Root, holding a capability that can subvert dbwarden, or not verifiable from `/proc`
    /// (the daemon fails closed). Files written before detection existed read as `false`.
    #[serde(default)]
    pub privileged: bool,
    /// The dangerous capabilities the process held (`cap_sys_admin`, `cap_bpf`, ...).
    #[serde(default)]
    pub capabilities: Vec<String>,
}

/// Record 0 of every session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionHeader {
    /// Also carried (and signed) in every segment header.
    pub session_id: SessionId,
    /// When the connection was accepted.
    #[serde(with = "time::serde::rfc3339")]
    pub start: OffsetDateTime,
    /// Caller identity.
    pub identity: Identity,
    /// Client socket address.
    pub client_addr: String,
    /// Where the agent meant to connect (before redirection).
    pub original_dst: String,
    /// `postgresql` or `mysql`.
    pub protocol: String,
    /// Database name from the startup packet.
    pub database: Option<String>,
    /// Database user from the startup packet.
    pub db_user: Option<String>,
    /// dbwarden version.
    pub daemon_version: String,
    /// Hash of the policy in force.
    pub policy_hash: String,
}

/// A statement as received (text and parameters already masked).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Statement {
    /// Statement number within the session; links decisions, responses, rows.
    pub stmt: u64,
    /// Masked SQL text.
    pub text: String,
    /// Masked bind parameters (`None` = SQL NULL).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<Option<String>>,
}

/// Policy verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Forwarded.
    Allow,
    /// Refused with a protocol-native error.
    Deny,
    /// Held for human approval.
    Hold,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::Hold => "hold",
        })
    }
}

/// The policy decision for one statement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// Statement number.
    pub stmt: u64,
    /// Verdict.
    pub action: Action,
    /// Rule that decided, if any.
    pub rule: Option<String>,
    /// Approver, when a held statement was approved or rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approver: Option<String>,
    /// Policy tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Message sent to the agent (for a deny).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// What the server answered (summary).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseSummary {
    /// Statement number.
    pub stmt: u64,
    /// Result column names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<String>,
    /// Rows returned/affected, if known.
    pub rows: Option<u64>,
    /// Command tag (`SELECT 3`, `INSERT 0 1`).
    pub command_tag: Option<String>,
    /// Time from forwarding to completion, microseconds.
    pub duration_us: u64,
    /// Error message (masked), if the statement failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The result rows themselves, exactly as the client saw them (masked), when the whole
    /// result fitted in one batch: one record per statement instead of two. Larger results
    /// arrive as [`Rows`] records before this one and leave this empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub data: Vec<Vec<Option<String>>>,
    /// Set by the writer when the cap cut `data`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncated: Option<Truncation>,
}

/// Where the per-statement row cap cut a result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Truncation {
    /// Rows kept for this statement before the cut.
    pub after_rows: u64,
    /// Cell bytes kept before the cut.
    pub after_bytes: u64,
    /// Configured row cap.
    pub cap_rows: u64,
    /// Configured byte cap.
    pub cap_bytes: u64,
}

/// A batch of result rows exactly as the client saw them (masked).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rows {
    /// Statement number.
    pub stmt: u64,
    /// Column names (may be empty on later batches of the same statement).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<String>,
    /// Text rendering of each cell; `None` = NULL.
    pub rows: Vec<Vec<Option<String>>>,
    /// Set by the writer when the cap cut this batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncated: Option<Truncation>,
}

/// A server notice (or a notice dbwarden sent, e.g. "held for approval").
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    /// Statement number, if tied to one.
    pub stmt: Option<u64>,
    /// Severity (`NOTICE`, `WARNING`, ...).
    pub severity: String,
    /// Masked message.
    pub message: String,
}

/// Kind of approval event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalKind {
    /// Approval was requested.
    Requested,
    /// A human (or timeout) decided.
    Decided,
}

/// Approval workflow event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    /// Statement number.
    pub stmt: u64,
    /// Requested or decided.
    pub event: ApprovalKind,
    /// Outcome (for `Decided`).
    pub decision: Option<Action>,
    /// Who decided.
    pub approver: Option<String>,
    /// Why.
    pub reason: Option<String>,
    /// How long the statement waited, milliseconds (for `Decided`).
    pub waited_ms: Option<u64>,
}

/// The recorder fell behind and dropped records (never silent).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gap {
    /// Records dropped since the previous record.
    pub dropped: u64,
}

/// Counters the writer keeps and writes into the end record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Statement records.
    pub statements: u64,
    /// Decisions with action deny.
    pub denied: u64,
    /// Decisions with action hold.
    pub held: u64,
    /// Rows recorded (after the cap).
    pub rows_recorded: u64,
    /// Rows cut by the cap.
    pub rows_cut: u64,
    /// Records dropped (sum of gaps).
    pub dropped: u64,
}

/// End of session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct End {
    /// Why the session ended (client closed, shutdown, error, ...).
    pub reason: String,
    /// Counters.
    pub totals: Totals,
}

/// Last record: counts and final hash, signed. Absent = ended abnormally.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seal {
    /// Number of records before the seal (= the seal's own index).
    pub records: u64,
    /// Chain hash after the last record before the seal (hex).
    pub final_hash: String,
    /// Key id of the signer (hex).
    pub key_id: String,
    /// Ed25519 signature over the seal message (hex).
    pub signature: String,
}

/// A statement, its decision and its response in one record. The recorder writes this when
/// nothing else is recorded between them and the response comes before the next flush (the
/// usual case), saving two chain hashes and record headers; otherwise it writes them as
/// separate records.
/// Readers treat it exactly as those records in that order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exchange {
    /// The statement.
    pub statement: Statement,
    /// Its decision, if one was recorded for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    /// The response summary (with small results' rows).
    pub response: ResponseSummary,
}

/// Record payloads. Serialised with a `type` tag.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RecordBody {
    /// Session header (record 0, written by the writer).
    Header(Box<SessionHeader>),
    /// A statement.
    Statement(Statement),
    /// Its decision.
    Decision(Decision),
    /// The response summary.
    Response(ResponseSummary),
    /// Statement, decision and response together.
    Exchange(Box<Exchange>),
    /// Result rows.
    Rows(Rows),
    /// Notice.
    Notice(Notice),
    /// Approval event.
    Approval(Approval),
    /// Dropped records.
    Gap(Gap),
    /// End of session (written by the writer on seal).
    End(End),
    /// Seal (written by the writer).
    Seal(Seal),
}

impl RecordBody {
    /// Short type name (`statement`, `rows`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Header(_) => "header",
            Self::Statement(_) => "statement",
            Self::Decision(_) => "decision",
            Self::Response(_) => "response",
            Self::Exchange(_) => "exchange",
            Self::Rows(_) => "rows",
            Self::Notice(_) => "notice",
            Self::Approval(_) => "approval",
            Self::Gap(_) => "gap",
            Self::End(_) => "end",
            Self::Seal(_) => "seal",
        }
    }

    /// The statement this record carries (a statement or an exchange record).
    pub fn statement(&self) -> Option<&Statement> {
        match self {
            Self::Statement(s) => Some(s),
            Self::Exchange(x) => Some(&x.statement),
            _ => None,
        }
    }

    /// The decision this record carries (a decision or an exchange record).
    pub fn decision(&self) -> Option<&Decision> {
        match self {
            Self::Decision(d) => Some(d),
            Self::Exchange(x) => x.decision.as_ref(),
            _ => None,
        }
    }

    /// The response this record carries (a response or an exchange record).
    pub fn response(&self) -> Option<&ResponseSummary> {
        match self {
            Self::Response(r) => Some(r),
            Self::Exchange(x) => Some(&x.response),
            _ => None,
        }
    }
}

/// One record: index, timestamp, payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Index within the session (header = 0).
    pub n: u64,
    /// When the event happened (replay pacing uses it).
    #[serde(with = "time::serde::rfc3339")]
    pub ts: OffsetDateTime,
    /// Payload.
    #[serde(flatten)]
    pub body: RecordBody,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_json_round_trip() {
        let r = Record {
            n: 3,
            ts: time::macros::datetime!(2026-11-26 02:15:00.5 UTC),
            body: RecordBody::Statement(Statement {
                stmt: 1,
                text: "SELECT 1".into(),
                params: vec![Some("a".into()), None],
            }),
        };
        let j = serde_json::to_string(&r).unwrap();
        assert!(j.contains(r#""type":"statement""#), "{j}");
        let back: Record = serde_json::from_str(&j).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn header_identity_privileges_round_trip_and_default_when_absent() {
        let header = |identity: Identity| Record {
            n: 0,
            ts: time::macros::datetime!(2026-11-26 02:15:00 UTC),
            body: RecordBody::Header(Box::new(SessionHeader {
                session_id: SessionId([1; 16]),
                start: time::macros::datetime!(2026-11-26 02:15:00 UTC),
                identity,
                client_addr: "127.0.0.1:1".into(),
                original_dst: "127.0.0.1:5432".into(),
                protocol: "postgres".into(),
                database: None,
                db_user: None,
                daemon_version: "0.1.0".into(),
                policy_hash: "sha256:00".into(),
            })),
        };
        let root = header(Identity {
            uid: 0,
            privileged: true,
            capabilities: vec!["cap_sys_admin".into(), "cap_bpf".into()],
            ..Identity::default()
        });
        let j = serde_json::to_string(&root).unwrap();
        assert!(
            j.contains(r#""privileged":true,"capabilities":["cap_sys_admin","cap_bpf"]"#),
            "{j}"
        );
        assert_eq!(serde_json::from_str::<Record>(&j).unwrap(), root);
        // A header written before privilege detection existed has neither field.
        let mut v: serde_json::Value = serde_json::from_str(&j).unwrap();
        let id = v["identity"].as_object_mut().unwrap();
        id.remove("privileged");
        id.remove("capabilities");
        let old: Record = serde_json::from_value(v).unwrap();
        assert_eq!(
            old,
            header(Identity {
                uid: 0,
                ..Identity::default()
            })
        );
    }

    #[test]
    fn session_id_forms() {
        let id = SessionId([0xab; 16]);
        assert_eq!(SessionId::parse(&id.to_string()), Some(id));
        assert_eq!(
            SessionId::parse("abababab-abab-abab-abab-abababababab"),
            Some(id)
        );
        assert_eq!(SessionId::parse("xyz"), None);
    }
}
