//! Control socket server: bind with restrictive permissions, accept, authorise each peer
//! once by kernel credentials, then answer one JSON line per request line.

use std::future::Future;
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;

use super::peer::{self, ControlAuth};
use super::{ControlRequest, ControlResponse, ErrorCode, MAX_LINE};
use crate::approver::Approver;
use crate::broker::{Broker, DecideError};
use crate::model::Resolution;
use crate::text::sanitize_line;

/// Concurrent control connections; more are told the server is busy.
const MAX_CONNECTIONS: usize = 32;
/// A connection idle this long between requests is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Failure to set up the control socket.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Another process is serving on the socket.
    #[error("control socket {0} is in use by another process")]
    InUse(PathBuf),
    /// Something other than a socket sits at the path.
    #[error("{0} exists and is not a socket; refusing to replace it")]
    NotASocket(PathBuf),
    /// A system call failed.
    #[error("control socket {path}: cannot {op}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// Socket path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}

/// Binds the control socket at `path`: replaces a stale socket (one nobody listens on),
/// then sets mode `0660` and group `auth.group` (if that group exists; otherwise only root
/// can connect, and a warning is logged).
///
/// The runtime dir should itself be private to root and the group: between `bind` and
/// `chmod` the socket briefly has umask permissions (peers are checked anyway).
///
/// # Errors
/// [`ControlError`] if the path is in use, is not a socket, or a system call fails.
pub fn bind_control(path: &Path, auth: &ControlAuth) -> Result<UnixListener, ControlError> {
    let io_err = |op: &'static str| {
        let path = path.to_owned();
        move |source| ControlError::Io { op, path, source }
    };
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(ControlError::InUse(path.to_owned()));
            }
            std::fs::remove_file(path).map_err(io_err("remove stale socket"))?;
        }
        Ok(_) => return Err(ControlError::NotASocket(path.to_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("stat")(e)),
    }
    let listener = UnixListener::bind(path).map_err(io_err("bind"))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(io_err("chmod"))?;
    match peer::approvers_gid(auth) {
        Some(gid) => std::os::unix::fs::chown(path, None, Some(gid)).map_err(io_err("chown"))?,
        None => tracing::warn!(
            group = %auth.group,
            socket = %path.display(),
            "approvers group does not exist; only root can use the control socket"
        ),
    }
    Ok(listener)
}

/// Serves the control socket until `shutdown` resolves, then removes the socket file.
/// Accept errors are logged and retried after a short pause; they never end the server.
pub async fn serve_control(
    broker: Broker,
    listener: UnixListener,
    auth: ControlAuth,
    shutdown: impl Future<Output = ()>,
) {
    let path = listener
        .local_addr()
        .ok()
        .and_then(|a| a.as_pathname().map(Path::to_owned));
    tracing::info!(socket = ?path, "approval control socket listening");
    let auth = Arc::new(auth);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "control socket accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let broker = broker.clone();
        let auth = Arc::clone(&auth);
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            tokio::spawn(async move {
                let mut s = stream;
                let _ = write_response(&mut s, &error(ErrorCode::Internal, "server busy")).await;
            });
            continue;
        };
        tokio::spawn(async move {
            if let Err(e) = handle(stream, &broker, &auth).await {
                tracing::debug!(error = %e, "control connection ended with an error");
            }
            drop(permit);
        });
    }
    if let Some(p) = path {
        let _ = std::fs::remove_file(p);
    }
}

fn error(code: ErrorCode, message: impl Into<String>) -> ControlResponse {
    ControlResponse::Error {
        code,
        message: message.into(),
    }
}

async fn write_response(s: &mut UnixStream, r: &ControlResponse) -> io::Result<()> {
    let mut line = serde_json::to_vec(r).map_err(io::Error::other)?;
    line.push(b'\n');
    s.write_all(&line).await
}

async fn handle(mut stream: UnixStream, broker: &Broker, auth: &ControlAuth) -> io::Result<()> {
    let peer = peer::peer_of(&stream)?;
    let approver = match peer::authorize(&stream, &peer, auth) {
        Ok(name) => name,
        Err(refusal) => {
            tracing::warn!(
                uid = peer.uid,
                gid = peer.gid,
                pid = peer.pid,
                reason = %refusal,
                "control socket peer refused"
            );
            write_response(
                &mut stream,
                &error(ErrorCode::Forbidden, refusal.to_string()),
            )
            .await?;
            stream.shutdown().await?;
            // Drain briefly so the peer's request write does not fail with EPIPE before it
            // reads the refusal.
            let mut sink = [0u8; 4096];
            let mut left = MAX_LINE;
            let _ = tokio::time::timeout(Duration::from_millis(200), async {
                while left > 0 {
                    match stream.read(&mut sink).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => left = left.saturating_sub(n),
                    }
                }
            })
            .await;
            return Ok(());
        }
    };
    tracing::debug!(uid = peer.uid, pid = peer.pid, approver = %approver, "control client connected");
    let approver = match peer
        .pid
        .and_then(|p| u32::try_from(p).ok())
        .filter(|&p| p > 0)
    {
        Some(pid) => Approver::new(approver, peer.uid, vec![pid]),
        // pid 0: the peer is in another pid namespace, its process cannot be checked.
        None => Approver::unverified(approver, "the peer's pid is not visible to the daemon"),
    };
    let (rd, mut wr) = stream.into_split();
    let mut reader = BufReader::new(rd);
    let mut line = Vec::new();
    loop {
        line.clear();
        let limit = u64::try_from(MAX_LINE + 1).unwrap_or(u64::MAX);
        let n = match tokio::time::timeout(
            IDLE_TIMEOUT,
            (&mut reader).take(limit).read_until(b'\n', &mut line),
        )
        .await
        {
            Ok(r) => r?,
            Err(_) => return Ok(()),
        };
        if n == 0 {
            return Ok(());
        }
        let too_long = line.last() != Some(&b'\n') && line.len() > MAX_LINE;
        let resp = if too_long {
            error(
                ErrorCode::BadRequest,
                format!("request line longer than {MAX_LINE} bytes"),
            )
        } else {
            match serde_json::from_slice::<ControlRequest>(&line) {
                Ok(req) => dispatch(broker, &approver, req),
                Err(e) => error(
                    ErrorCode::BadRequest,
                    format!("invalid request: {}", sanitize_line(&e.to_string(), 200)),
                ),
            }
        };
        let mut out = serde_json::to_vec(&resp).map_err(io::Error::other)?;
        out.push(b'\n');
        wr.write_all(&out).await?;
        if too_long {
            return Ok(());
        }
    }
}

/// Executes one request on behalf of `approver`.
pub(crate) fn dispatch(
    broker: &Broker,
    approver: &Approver,
    req: ControlRequest,
) -> ControlResponse {
    let decided = |id: String, r: Result<crate::Decision, DecideError>| match r {
        Ok(decision) => ControlResponse::Decided { id, decision },
        Err(e) => decide_error(&e),
    };
    match req {
        ControlRequest::List {} => ControlResponse::List {
            approvals: broker.list(),
        },
        ControlRequest::Show { id } => match broker.get(&id) {
            Some(approval) => ControlResponse::Show { approval },
            None => error(
                ErrorCode::UnknownId,
                format!("no approval with id {:?}", sanitize_line(&id, 16)),
            ),
        },
        ControlRequest::Approve { id, scope, reason } => {
            let r = broker.decide(&id, approver, Resolution::Approve { scope, reason });
            decided(id, r)
        }
        ControlRequest::Deny { id, reason } => {
            let r = broker.decide(&id, approver, Resolution::Deny { reason });
            decided(id, r)
        }
    }
}

fn decide_error(e: &DecideError) -> ControlResponse {
    let code = match e {
        DecideError::UnknownId(_) => ErrorCode::UnknownId,
        DecideError::AlreadyDecided { .. } => ErrorCode::AlreadyDecided,
        DecideError::InvalidApprover => ErrorCode::BadRequest,
        DecideError::Refused(_) => ErrorCode::ApprovalRefused,
        DecideError::Journal { .. } => ErrorCode::Internal,
    };
    error(code, e.to_string())
}
