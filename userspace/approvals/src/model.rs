//! Data types shared by the broker and its channels: the request the daemon files, the
//! decision it gets back, the scope of an approval, the view shown to approvers and the
//! events emitted for recording and metrics.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Default time a held statement waits for a human before it is refused (5 minutes).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// A statement held for approval, as filed by the daemon.
///
/// Every text field is treated as hostile by this crate (it is shown to humans and sent to
/// webhooks); `statement` must already be masked by the daemon (no PANs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRequest {
    /// Daemon session the statement belongs to.
    pub session_id: u64,
    /// Name of the policy rule that required approval.
    pub rule: String,
    /// Statement text, already masked.
    pub statement: String,
    /// Normalized statement (literals replaced), the key of a session-scoped grant.
    pub normalized: String,
    /// Who asks, from the kernel, e.g. `pid 123 uid 0 (root) exe /usr/bin/psql job 42`.
    pub identity_summary: String,
    /// Uid of the requesting session's process (kernel identity). An approver with this uid
    /// is refused unless self-approval is allowed ([`crate::ApprovalRules`]).
    pub requester_uid: u32,
    /// Database target, e.g. `postgres 127.0.0.1:5432 db=shop user=app`.
    pub target: String,
    /// How long to wait for a decision before [`Decision::TimedOut`].
    pub timeout: Duration,
}

/// How far an approval reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// This one statement only.
    #[default]
    Once,
    /// This normalized statement for the rest of the session (see [`crate::SessionGrants`]).
    Session,
}

impl Scope {
    /// `once` or `session`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Once => "once",
            Scope::Session => "session",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error returned when parsing an unknown scope name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown approval scope {0:?} (expected `once` or `session`)")]
pub struct ParseScopeError(pub String);

impl FromStr for Scope {
    type Err = ParseScopeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "once" => Ok(Scope::Once),
            "session" => Ok(Scope::Session),
            other => Err(ParseScopeError(crate::text::sanitize_line(other, 32))),
        }
    }
}

/// The outcome of a held statement. Only [`Decision::Approved`] lets it through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Decision {
    /// A person approved it.
    Approved {
        /// Who approved: a user name (control socket) or `http:<name>` (HTTP API).
        approver: String,
        /// Free-text reason given by the approver.
        reason: Option<String>,
        /// How far the approval reaches.
        scope: Scope,
    },
    /// A person denied it.
    Denied {
        /// Who denied (same format as for approvals).
        approver: String,
        /// Free-text reason given by the approver.
        reason: Option<String>,
    },
    /// Nobody decided within the request's timeout.
    TimedOut {
        /// The timeout that ran out, in milliseconds.
        timeout_ms: u64,
    },
    /// The request ended without a human decision: client disconnect, session cancel,
    /// daemon shutdown or restart, journal failure.
    Cancelled {
        /// Why, e.g. `client disconnected`.
        reason: String,
    },
}

impl Decision {
    /// True only for [`Decision::Approved`].
    #[must_use]
    pub fn is_approved(&self) -> bool {
        matches!(self, Decision::Approved { .. })
    }

    /// Short outcome name: `approved`, `denied`, `timed_out` or `cancelled`.
    #[must_use]
    pub fn outcome(&self) -> &'static str {
        match self {
            Decision::Approved { .. } => "approved",
            Decision::Denied { .. } => "denied",
            Decision::TimedOut { .. } => "timed_out",
            Decision::Cancelled { .. } => "cancelled",
        }
    }

    /// The approver, for approvals and denials.
    #[must_use]
    pub fn approver(&self) -> Option<&str> {
        match self {
            Decision::Approved { approver, .. } | Decision::Denied { approver, .. } => {
                Some(approver)
            }
            _ => None,
        }
    }

    /// The reason given, if any (for cancellations, why it was cancelled).
    #[must_use]
    pub fn reason(&self) -> Option<&str> {
        match self {
            Decision::Approved { reason, .. } | Decision::Denied { reason, .. } => {
                reason.as_deref()
            }
            Decision::Cancelled { reason } => Some(reason),
            Decision::TimedOut { .. } => None,
        }
    }

    /// One-line human summary for the protocol-native error the daemon sends, e.g.
    /// `denied by alice: not during business hours` or `no decision within 300 s`.
    /// Safe to show: the approver and reason were sanitised by the broker.
    #[must_use]
    pub fn summary(&self) -> String {
        let with_reason = |head: String, reason: &Option<String>| match reason {
            Some(r) => format!("{head}: {r}"),
            None => head,
        };
        match self {
            Decision::Approved {
                approver,
                reason,
                scope,
            } => with_reason(format!("approved by {approver} ({scope})"), reason),
            Decision::Denied { approver, reason } => {
                with_reason(format!("denied by {approver}"), reason)
            }
            Decision::TimedOut { timeout_ms } => {
                format!("no decision within {} s", timeout_ms.div_ceil(1000))
            }
            Decision::Cancelled { reason } => format!("cancelled: {reason}"),
        }
    }
}

/// What an approver asks for: the human half of a [`Decision`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// Let the statement through.
    Approve {
        /// How far the approval reaches.
        scope: Scope,
        /// Optional reason.
        reason: Option<String>,
    },
    /// Refuse the statement.
    Deny {
        /// Optional reason.
        reason: Option<String>,
    },
}

/// State of an approval as shown to approvers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ApprovalState {
    /// Waiting for a decision.
    Pending {
        /// Milliseconds left before it times out.
        expires_in_ms: u64,
    },
    /// Decided (kept in a bounded history so `show` still answers).
    Decided {
        /// The decision.
        decision: Decision,
        /// When it was decided, Unix milliseconds.
        decided_at_ms: u64,
        /// How long the statement waited, milliseconds.
        waited_ms: u64,
    },
}

/// An approval as listed by the control socket and the HTTP API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalView {
    /// The approval id (8 lowercase hex digits).
    pub id: String,
    /// Daemon session id.
    pub session_id: u64,
    /// Rule that required approval.
    pub rule: String,
    /// Statement text (masked, control characters stripped).
    pub statement: String,
    /// Normalized statement.
    pub normalized: String,
    /// Who asks (kernel-derived identity).
    pub identity: String,
    /// Database target.
    pub target: String,
    /// When the request was filed, Unix milliseconds.
    pub requested_at_ms: u64,
    /// The request's timeout, milliseconds.
    pub timeout_ms: u64,
    /// Pending or decided.
    #[serde(flatten)]
    pub state: ApprovalState,
}

impl ApprovalView {
    /// True while no decision exists.
    #[must_use]
    pub fn is_pending(&self) -> bool {
        matches!(self.state, ApprovalState::Pending { .. })
    }
}

/// Emitted by the broker for every request and decision (see [`crate::Broker::subscribe`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ApprovalEvent {
    /// A statement was held.
    Requested {
        /// The new approval (state pending).
        approval: ApprovalView,
    },
    /// A held statement was decided (by a person, a timeout or a cancellation).
    Decided {
        /// The approval, state decided (carries decision, approver, reason, waiting time).
        approval: ApprovalView,
    },
}

impl ApprovalEvent {
    /// The approval the event is about.
    #[must_use]
    pub fn approval(&self) -> &ApprovalView {
        match self {
            ApprovalEvent::Requested { approval } | ApprovalEvent::Decided { approval } => approval,
        }
    }
}

/// A request found pending in the journal at [`crate::Broker::open`]: the previous daemon
/// ended before it was decided. The broker has already marked it decided ("daemon
/// restarted") in the journal; the daemon should record it as denied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrphanedRequest {
    /// The approval id.
    pub id: String,
    /// Session id in the previous daemon run.
    pub session_id: u64,
    /// Rule that required approval.
    pub rule: String,
    /// Statement text (masked).
    pub statement: String,
    /// Normalized statement.
    pub normalized: String,
    /// Who asked.
    pub identity: String,
    /// Database target.
    pub target: String,
    /// When it was requested, Unix milliseconds.
    pub requested_at_ms: u64,
    /// The decision recorded for it: always `Cancelled { reason: "daemon restarted" }`.
    pub decision: Decision,
}

/// Milliseconds since the Unix epoch (0 if the clock is before 1970).
pub(crate) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Duration in whole milliseconds, saturating.
pub(crate) fn dur_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_parses_and_prints() {
        assert_eq!("once".parse::<Scope>(), Ok(Scope::Once));
        assert_eq!("session".parse::<Scope>(), Ok(Scope::Session));
        let err = "forever\u{7}".parse::<Scope>().unwrap_err();
        assert_eq!(err.0, "forever");
        assert_eq!(Scope::Session.to_string(), "session");
    }

    #[test]
    fn decision_summary_and_accessors() {
        let d = Decision::Denied {
            approver: "alice".into(),
            reason: Some("not now".into()),
        };
        assert_eq!(d.summary(), "denied by alice: not now");
        assert_eq!(d.approver(), Some("alice"));
        assert!(!d.is_approved());
        let t = Decision::TimedOut {
            timeout_ms: 299_001,
        };
        assert_eq!(t.summary(), "no decision within 300 s");
        assert_eq!(t.outcome(), "timed_out");
        let a = Decision::Approved {
            approver: "root".into(),
            reason: None,
            scope: Scope::Session,
        };
        assert_eq!(a.summary(), "approved by root (session)");
        assert!(a.is_approved());
    }

    #[test]
    fn decision_json_shape() {
        let d = Decision::Cancelled {
            reason: "client disconnected".into(),
        };
        let j = serde_json::to_string(&d).unwrap();
        assert_eq!(
            j,
            r#"{"outcome":"cancelled","reason":"client disconnected"}"#
        );
        assert_eq!(serde_json::from_str::<Decision>(&j).unwrap(), d);
    }
}
