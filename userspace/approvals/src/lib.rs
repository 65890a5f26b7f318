//! Just-in-time approval for statements a dbwarden policy holds (`require_approval`).
//!
//! # Layout
//! A session whose statement is held files an [`ApprovalRequest`] with the [`Broker`]
//! ([`broker`]) and awaits its [`PendingApproval`] while it stops forwarding that client's
//! messages; other sessions are unaffected. People decide through two channels, both of
//! which call [`Broker::decide`]:
//! - [`control`]: the Unix control socket `control.sock` in the runtime dir (root or the
//!   `dbwarden` group, checked by kernel credentials), and its client for the
//!   `dbwarden approvals …` CLI;
//! - [`http`]: a loopback HTTP API with a bearer token.
//!
//! A decision, timeout, cancel or client disconnect ends the request exactly once, yielding
//! a [`Decision`] (approver, reason, [`Scope`]). The daemon turns anything but
//! `Approved` into a protocol-native error, and keeps a [`SessionGrants`] ([`grants`]) per
//! session for `Scope::Session` approvals.
//!
//! Every request and decision is journaled ([`journal`], `approvals.journal`) so that a
//! restarted daemon reports the requests it left pending ([`OrphanedRequest`], to be
//! recorded as denied), and broadcast as an [`ApprovalEvent`] for recording, metrics and
//! [`webhook`] notifications (generic JSON or Slack, escaped, off the hot path).
//! [`text`] holds the hygiene applied to hostile text shown to people.
//!
//! Approving (not denying) is further restricted by [`approver`]: no approver inside a
//! controlled cgroup, none with the requesting session's uid unless self-approval is allowed,
//! none the channel cannot verify (the HTTP API finds its client process through
//! [`tcp_peer`]). Refusals are journaled.

#![warn(missing_docs)]

pub mod approver;
pub mod broker;
pub mod control;
pub mod grants;
pub mod http;
pub mod journal;
pub mod model;
pub mod tcp_peer;
pub mod text;
pub mod webhook;

pub use approver::{ApprovalRules, Approver, ApproverProcess, CgroupResolver};
pub use broker::{
    Broker, BrokerConfig, DecideError, OpenError, PendingApproval, RequestError, DISCONNECT_REASON,
    MAX_TIMEOUT,
};
pub use control::peer::ControlAuth;
pub use control::server::{bind_control, serve_control, ControlError};
pub use grants::SessionGrants;
pub use http::{bind_http, load_or_create_token, serve_http, ApiToken, HttpError};
pub use journal::{JournalError, RESTART_REASON};
pub use model::{
    ApprovalEvent, ApprovalRequest, ApprovalState, ApprovalView, Decision, OrphanedRequest,
    Resolution, Scope, DEFAULT_TIMEOUT,
};
pub use webhook::{WebhookConfig, WebhookFormat, WebhookStats, WebhookTarget, Webhooks};
