//! Client side of the control socket, for `dbwarden approvals list|show|approve|deny`,
//! and plain-text renderers for a terminal.
//!
//! Every text field is passed through [`crate::text`] again before it is rendered, so a
//! hostile statement cannot drive the approver's terminal.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use super::{ControlRequest, ControlResponse, ErrorCode};
use crate::model::{ApprovalState, ApprovalView, Decision, Scope};
use crate::text::{sanitize_line, sanitize_text, MAX_STATEMENT_CHARS};

/// How long the client waits for the daemon.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest response line accepted (a long `list`).
const MAX_RESPONSE: u64 = 64 * 1024 * 1024;

/// Failure of a control client call.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket could not be reached (daemon not running, wrong path, no permission).
    #[error("cannot connect to the dbwarden control socket {path} (is the daemon running, and are you root or in the dbwarden group?)")]
    Connect {
        /// Socket path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// Reading or writing failed, or timed out.
    #[error("control socket I/O failed")]
    Io(#[from] io::Error),
    /// The daemon's answer was not understood.
    #[error("unexpected answer from the daemon: {0}")]
    Protocol(String),
    /// The daemon refused or failed the request.
    #[error("{message}")]
    Refused {
        /// Error class.
        code: ErrorCode,
        /// The daemon's message.
        message: String,
    },
}

/// Sends one request and reads one response.
///
/// # Errors
/// [`ClientError`] on connection, I/O, protocol failure or a refusal.
pub async fn call(socket: &Path, req: &ControlRequest) -> Result<ControlResponse, ClientError> {
    let fut = async {
        let mut s = UnixStream::connect(socket)
            .await
            .map_err(|source| ClientError::Connect {
                path: socket.to_owned(),
                source,
            })?;
        let mut line = serde_json::to_vec(req).map_err(|e| ClientError::Protocol(e.to_string()))?;
        line.push(b'\n');
        // A refused peer may find the socket closed before its request is written; the
        // daemon's refusal is still there to read.
        let wrote = s.write_all(&line).await;
        let mut reader = BufReader::new(s).take(MAX_RESPONSE);
        let mut buf = Vec::new();
        reader.read_until(b'\n', &mut buf).await?;
        if buf.is_empty() {
            wrote?;
            return Err(ClientError::Protocol(
                "connection closed without an answer".into(),
            ));
        }
        let resp: ControlResponse = serde_json::from_slice(&buf)
            .map_err(|e| ClientError::Protocol(sanitize_line(&e.to_string(), 200)))?;
        match resp {
            ControlResponse::Error { code, message } => Err(ClientError::Refused {
                code,
                message: sanitize_line(&message, 500),
            }),
            other => Ok(other),
        }
    };
    tokio::time::timeout(CLIENT_TIMEOUT, fut)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no answer within 10 s"))?
}

fn unexpected(r: &ControlResponse) -> ClientError {
    ClientError::Protocol(
        format!("unexpected response kind {r:?}")
            .chars()
            .take(200)
            .collect(),
    )
}

/// Pending approvals.
///
/// # Errors
/// See [`call`].
pub async fn list(socket: &Path) -> Result<Vec<ApprovalView>, ClientError> {
    match call(socket, &ControlRequest::List {}).await? {
        ControlResponse::List { approvals } => Ok(approvals),
        r => Err(unexpected(&r)),
    }
}

/// One approval.
///
/// # Errors
/// See [`call`]; an unknown id is `Refused { code: UnknownId, .. }`.
pub async fn show(socket: &Path, id: &str) -> Result<ApprovalView, ClientError> {
    match call(socket, &ControlRequest::Show { id: id.to_owned() }).await? {
        ControlResponse::Show { approval } => Ok(approval),
        r => Err(unexpected(&r)),
    }
}

/// Approves `id` as the calling user (identified by the daemon from the socket peer).
///
/// # Errors
/// See [`call`].
pub async fn approve(
    socket: &Path,
    id: &str,
    scope: Scope,
    reason: Option<&str>,
) -> Result<Decision, ClientError> {
    let req = ControlRequest::Approve {
        id: id.to_owned(),
        scope,
        reason: reason.map(str::to_owned),
    };
    match call(socket, &req).await? {
        ControlResponse::Decided { decision, .. } => Ok(decision),
        r => Err(unexpected(&r)),
    }
}

/// Denies `id` as the calling user.
///
/// # Errors
/// See [`call`].
pub async fn deny(socket: &Path, id: &str, reason: Option<&str>) -> Result<Decision, ClientError> {
    let req = ControlRequest::Deny {
        id: id.to_owned(),
        reason: reason.map(str::to_owned),
    };
    match call(socket, &req).await? {
        ControlResponse::Decided { decision, .. } => Ok(decision),
        r => Err(unexpected(&r)),
    }
}

fn clip(s: &str, n: usize) -> String {
    let line = sanitize_line(s, usize::MAX);
    if line.chars().count() <= n {
        line
    } else {
        let mut out: String = line.chars().take(n.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

fn pad(s: &str, n: usize) -> String {
    let len = s.chars().count();
    format!("{s}{}", " ".repeat(n.saturating_sub(len)))
}

fn secs(ms: u64) -> String {
    let s = ms.div_ceil(1000);
    if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

fn state_text(v: &ApprovalView) -> String {
    match &v.state {
        ApprovalState::Pending { expires_in_ms } => {
            format!("pending, expires in {}", secs(*expires_in_ms))
        }
        ApprovalState::Decided {
            decision,
            waited_ms,
            ..
        } => format!(
            "{} after {}",
            sanitize_line(&decision.summary(), 600),
            secs(*waited_ms)
        ),
    }
}

/// Renders approvals as a fixed-width table (`ID SESSION RULE EXPIRES TARGET STATEMENT`);
/// long fields are clipped. An empty list renders as `no pending approvals\n`.
#[must_use]
pub fn render_table(approvals: &[ApprovalView]) -> String {
    if approvals.is_empty() {
        return "no pending approvals\n".to_owned();
    }
    let mut out = format!(
        "{} {} {} {} {} STATEMENT\n",
        pad("ID", 8),
        pad("SESSION", 8),
        pad("RULE", 20),
        pad("EXPIRES", 7),
        pad("TARGET", 28)
    );
    for v in approvals {
        let expires = match &v.state {
            ApprovalState::Pending { expires_in_ms } => secs(*expires_in_ms),
            ApprovalState::Decided { decision, .. } => decision.outcome().to_owned(),
        };
        out.push_str(&format!(
            "{} {} {} {} {} {}\n",
            pad(&clip(&v.id, 8), 8),
            pad(&v.session_id.to_string(), 8),
            pad(&clip(&v.rule, 20), 20),
            pad(&clip(&expires, 7), 7),
            pad(&clip(&v.target, 28), 28),
            clip(&v.statement, 80)
        ));
    }
    out
}

/// Renders one approval with every field, the statement in full (multi-line, indented).
#[must_use]
pub fn render_detail(v: &ApprovalView) -> String {
    let statement = sanitize_text(&v.statement, MAX_STATEMENT_CHARS)
        .lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n");
    format!(
        "id:         {}\nstate:      {}\nsession:    {}\nrule:       {}\nrequester:  {}\ntarget:     {}\ntimeout:    {}\nnormalized: {}\nstatement:\n{}\n",
        sanitize_line(&v.id, 16),
        state_text(v),
        v.session_id,
        sanitize_line(&v.rule, 200),
        sanitize_line(&v.identity, 500),
        sanitize_line(&v.target, 500),
        secs(v.timeout_ms),
        sanitize_line(&v.normalized, 500),
        statement
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(statement: &str) -> ApprovalView {
        ApprovalView {
            id: "0badc0de".into(),
            session_id: 42,
            rule: "prod-writes".into(),
            statement: statement.into(),
            normalized: "DELETE FROM t WHERE id = ?".into(),
            identity: "pid 1 uid 0 (root) exe /usr/bin/psql".into(),
            target: "postgres 127.0.0.1:5432".into(),
            requested_at_ms: 0,
            timeout_ms: 300_000,
            state: ApprovalState::Pending {
                expires_in_ms: 61_000,
            },
        }
    }

    #[test]
    fn table_clips_and_strips() {
        let long = format!("DELETE\u{1b}[31m FROM t WHERE id = 1\n{}", "x".repeat(200));
        let t = render_table(&[view(&long)]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("ID       SESSION  RULE"));
        assert!(lines[1].starts_with("0badc0de 42       prod-writes          1m01s "));
        assert!(!t.contains('\u{1b}'));
        assert!(lines[1].ends_with('…'));
        assert_eq!(render_table(&[]), "no pending approvals\n");
    }

    #[test]
    fn detail_has_every_field() {
        let d = render_detail(&view("DELETE FROM t\nWHERE id = 1"));
        for needle in [
            "id:         0badc0de",
            "pending, expires in 1m01s",
            "session:    42",
            "requester:  pid 1 uid 0 (root)",
            "timeout:    5m00s",
            "    DELETE FROM t\n    WHERE id = 1",
        ] {
            assert!(d.contains(needle), "{needle:?} missing in {d}");
        }
    }
}
