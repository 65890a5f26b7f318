//! The Unix control socket (`control.sock` in the runtime dir) and its CLI client.
//!
//! - [`peer`]: who connected (`SO_PEERCRED`, `SO_PEERGROUPS`) and whether they may approve.
//! - [`server`]: bind (mode `0660`, group `dbwarden`), accept, authorise, answer.
//! - [`client`]: `list` / `show` / `approve` / `deny` for `dbwarden approvals`, plus
//!   renderers.
//!
//! Protocol: one JSON object per line each way. Requests ([`ControlRequest`]):
//! `{"op":"list"}`, `{"op":"show","id":"…"}`,
//! `{"op":"approve","id":"…","scope":"once|session","reason":"…"}`,
//! `{"op":"deny","id":"…","reason":"…"}`. Responses ([`ControlResponse`]) carry
//! `"status"`: `list`, `show`, `decided` or `error` (with a [`ErrorCode`] and message).
//! A refused peer gets one `error`/`forbidden` line and the connection is closed. An
//! `approve` that the approver rules refuse ([`crate::approver`]) gets
//! `error`/`approval_refused`; the connection stays open.

pub mod client;
pub mod peer;
pub mod server;

use serde::{Deserialize, Serialize};

use crate::model::{ApprovalView, Decision, Scope};

/// File name of the control socket inside the runtime dir.
pub const SOCKET_FILE: &str = "control.sock";

/// Longest request line accepted (bytes, newline excluded).
pub const MAX_LINE: usize = 16 * 1024;

/// A control request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum ControlRequest {
    /// Pending approvals.
    List {},
    /// One approval, pending or recently decided.
    Show {
        /// Approval id.
        id: String,
    },
    /// Approve a pending approval.
    Approve {
        /// Approval id.
        id: String,
        /// Scope (default `once`).
        #[serde(default)]
        scope: Scope,
        /// Optional reason.
        #[serde(default)]
        reason: Option<String>,
    },
    /// Deny a pending approval.
    Deny {
        /// Approval id.
        id: String,
        /// Optional reason.
        #[serde(default)]
        reason: Option<String>,
    },
}

/// Machine-readable error class of a control response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The peer may not use the control socket (not root, not in the approvers group).
    Forbidden,
    /// The peer may use the socket but may not approve this statement: it runs in a
    /// controlled cgroup, has the requesting session's uid (self-approval disabled), or
    /// could not be verified. Denying is still allowed.
    ApprovalRefused,
    /// The request line is not a valid request.
    BadRequest,
    /// No approval with that id.
    UnknownId,
    /// Already decided.
    AlreadyDecided,
    /// Server-side failure (journal, overload).
    Internal,
}

/// A control response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ControlResponse {
    /// Answer to `list`.
    List {
        /// Pending approvals, oldest first.
        approvals: Vec<ApprovalView>,
    },
    /// Answer to `show`.
    Show {
        /// The approval.
        approval: ApprovalView,
    },
    /// Answer to `approve` / `deny`.
    Decided {
        /// Approval id.
        id: String,
        /// The decision delivered to the session.
        decision: Decision,
    },
    /// Any failure.
    Error {
        /// Error class.
        code: ErrorCode,
        /// Human-readable message.
        message: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_wire_format() {
        let r: ControlRequest =
            serde_json::from_str(r#"{"op":"approve","id":"0badc0de","scope":"session"}"#).unwrap();
        assert_eq!(
            r,
            ControlRequest::Approve {
                id: "0badc0de".into(),
                scope: Scope::Session,
                reason: None
            }
        );
        assert_eq!(
            serde_json::from_str::<ControlRequest>(r#"{"op":"list"}"#).unwrap(),
            ControlRequest::List {}
        );
        assert!(serde_json::from_str::<ControlRequest>(r#"{"op":"list","x":1}"#).is_err());
        assert!(serde_json::from_str::<ControlRequest>(r#"{"op":"drop"}"#).is_err());
        let e = ControlResponse::Error {
            code: ErrorCode::Forbidden,
            message: "no".into(),
        };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"status":"error","code":"forbidden","message":"no"}"#
        );
    }
}
