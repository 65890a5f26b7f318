//! Loopback HTTP API for approval tools (chat bots, web consoles), bearer-token protected.
//!
//! | method | path                          | body                                          |
//! |--------|-------------------------------|-----------------------------------------------|
//! | GET    | `/v1/approvals`               |                                               |
//! | GET    | `/v1/approvals/{id}`          |                                               |
//! | POST   | `/v1/approvals/{id}/approve`  | `{"approver","reason"?,"scope"?:"once|session"}` |
//! | POST   | `/v1/approvals/{id}/deny`     | `{"approver","reason"?}`                      |
//!
//! Every request needs `Authorization: Bearer <token>` (compared in constant time); the
//! token is configured or read from `http.token` in the runtime dir, created `0600` with
//! 256 random bits on first start. **The token holder is trusted to name the approver**:
//! the recorded approver is `http:<approver>` exactly as the caller gave it (sanitised), so
//! give the token only to a tool that authenticates its own users.
//!
//! The name is not trusted for the approver rules ([`crate::approver`]), though: on
//! `approve`, the client process is found from the kernel ([`crate::tcp_peer`]: the client
//! socket's owner uid in `/proc/net/tcp{,6}`, its holders in `/proc/*/fd`), and the approval
//! is refused with 403 `approval_refused` if that process runs in a controlled cgroup, has
//! the requesting session's uid (unless self-approval is allowed), or cannot be found (fail
//! closed). Deny is not checked.
//!
//! The server binds loopback addresses only ([`bind_http`] refuses others), speaks plain
//! HTTP/1.1, bounds request bodies ([`MAX_BODY`]) and header read time, and answers JSON:
//! `{"approvals":[…]}`, an approval view, `{"id","decision"}`, or
//! `{"error":"<code>","message":"…"}` with 400/401/403/404/405/409/413/500.

use std::convert::Infallible;
use std::fs::{self, OpenOptions};
use std::future::Future;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use rand::RngCore;
use serde::Deserialize;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use crate::approver::{Approver, ApproverProcess};
use crate::broker::{Broker, DecideError};
use crate::model::{Resolution, Scope};
use crate::text::sanitize_line;

/// Default listen address.
pub const DEFAULT_HTTP_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 7433);
/// Token file name inside the runtime dir.
pub const TOKEN_FILE: &str = "http.token";
/// Largest request body accepted.
pub const MAX_BODY: usize = 16 * 1024;
/// Shortest token accepted.
pub const MIN_TOKEN_LEN: usize = 16;
const MAX_CONNECTIONS: usize = 64;
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// HTTP API setup failure.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The address is not a loopback address.
    #[error("refusing to serve the approval HTTP API on non-loopback address {0}; use 127.0.0.1 or [::1] (setting `approvals.http_addr`)")]
    NotLoopback(SocketAddr),
    /// The token is too short or has characters not allowed in a header.
    #[error("approval HTTP token must be at least {MIN_TOKEN_LEN} visible ASCII characters without spaces")]
    BadToken,
    /// The token file is readable by group or others.
    #[error("approval HTTP token file {0} is accessible by group or others; chmod 600 it")]
    TokenFileMode(PathBuf),
    /// A system call failed.
    #[error("approval HTTP API: cannot {op} {target}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// File or address.
        target: String,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}

/// A validated bearer token.
#[derive(Clone)]
pub struct ApiToken(Arc<str>);

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiToken(<redacted>)")
    }
}

impl ApiToken {
    /// Validates a token: at least [`MIN_TOKEN_LEN`] visible ASCII characters.
    ///
    /// # Errors
    /// [`HttpError::BadToken`].
    pub fn new(token: &str) -> Result<Self, HttpError> {
        let t = token.trim();
        if t.len() < MIN_TOKEN_LEN || !t.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(HttpError::BadToken);
        }
        Ok(ApiToken(Arc::from(t)))
    }

    /// The token text (to hand to a client).
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Constant-time check of an `Authorization` header value.
    fn matches_header(&self, value: Option<&HeaderValue>) -> bool {
        let Some(v) = value else { return false };
        let Some(given) = v.as_bytes().strip_prefix(b"Bearer ") else {
            return false;
        };
        // Length is not secret; contents are compared in constant time.
        given.ct_eq(self.0.as_bytes()).into()
    }
}

/// Reads `dir/http.token`, or creates it (`0600`, 64 hex characters) if missing.
///
/// # Errors
/// [`HttpError`] if the file cannot be read or created, is group/other-accessible, or holds
/// an invalid token.
pub fn load_or_create_token(dir: &Path) -> Result<ApiToken, HttpError> {
    let path = dir.join(TOKEN_FILE);
    let io_err = |op: &'static str| {
        let target = path.display().to_string();
        move |source| HttpError::Io { op, target, source }
    };
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let fresh: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&path)
    {
        Ok(mut f) => {
            f.write_all(format!("{fresh}\n").as_bytes())
                .and_then(|()| f.sync_all())
                .map_err(io_err("write"))?;
            tracing::info!(file = %path.display(), "created approval HTTP API token");
            ApiToken::new(&fresh)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => read_token_file(&path),
        Err(e) => Err(io_err("create")(e)),
    }
}

/// Reads a token file, refusing one accessible by group or others.
///
/// # Errors
/// [`HttpError`] as for [`load_or_create_token`].
pub fn read_token_file(path: &Path) -> Result<ApiToken, HttpError> {
    let io_err = |op: &'static str| {
        let target = path.display().to_string();
        move |source| HttpError::Io { op, target, source }
    };
    let mut f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(io_err("open"))?;
    let meta = f.metadata().map_err(io_err("stat"))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(HttpError::TokenFileMode(path.to_owned()));
    }
    let mut s = String::new();
    Read::by_ref(&mut f)
        .take(4096)
        .read_to_string(&mut s)
        .map_err(io_err("read"))?;
    ApiToken::new(&s)
}

/// Binds the API listener, refusing non-loopback addresses.
///
/// # Errors
/// [`HttpError::NotLoopback`] or [`HttpError::Io`] (bind failed).
pub async fn bind_http(addr: SocketAddr) -> Result<TcpListener, HttpError> {
    if !addr.ip().is_loopback() {
        return Err(HttpError::NotLoopback(addr));
    }
    TcpListener::bind(addr)
        .await
        .map_err(|source| HttpError::Io {
            op: "bind",
            target: addr.to_string(),
            source,
        })
}

/// Serves the API on `listener` until `shutdown` resolves; open connections are then
/// closed gracefully. Refuses to serve a listener bound to a non-loopback address.
///
/// # Errors
/// [`HttpError::NotLoopback`] (checked before serving), [`HttpError::Io`] if the listener's
/// address cannot be read.
pub async fn serve_http(
    broker: Broker,
    listener: TcpListener,
    token: ApiToken,
    shutdown: impl Future<Output = ()>,
) -> Result<(), HttpError> {
    let local = listener.local_addr().map_err(|source| HttpError::Io {
        op: "read address of",
        target: "listener".into(),
        source,
    })?;
    if !local.ip().is_loopback() {
        return Err(HttpError::NotLoopback(local));
    }
    tracing::info!(addr = %local, "approval HTTP API listening");
    let (stop_tx, stop_rx) = watch::channel(false);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "approval HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::warn!(%peer, "approval HTTP API: too many connections, dropping one");
            continue;
        };
        let broker = broker.clone();
        let token = token.clone();
        let mut stop = stop_rx.clone();
        let ends = Ends {
            peer,
            local: stream.local_addr().unwrap_or(local),
        };
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let broker = broker.clone();
                let token = token.clone();
                async move { Ok::<_, Infallible>(route(req, &broker, &token, ends).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), svc);
            tokio::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "approval HTTP connection error");
            }
            drop(permit);
        });
    }
    let _ = stop_tx.send(true);
    Ok(())
}

fn json(status: StatusCode, body: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn err(status: StatusCode, code: &str, message: &str) -> Response<Full<Bytes>> {
    json(
        status,
        &serde_json::json!({ "error": code, "message": message }),
    )
}

/// The two ends of an API connection.
#[derive(Debug, Clone, Copy)]
struct Ends {
    peer: SocketAddr,
    local: SocketAddr,
}

impl Ends {
    /// The client process, from the kernel's socket tables (blocking `/proc` scan, off the
    /// runtime threads).
    async fn client(self) -> Result<ApproverProcess, String> {
        let found =
            tokio::task::spawn_blocking(move || crate::tcp_peer::resolve(self.peer, self.local))
                .await
                .map_err(|e| format!("peer lookup failed: {e}"))?;
        let p =
            found.map_err(|e| format!("cannot find the client process of {}: {e}", self.peer))?;
        Ok(ApproverProcess {
            uid: p.uid,
            pids: p.pids,
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApproveBody {
    approver: String,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    scope: Scope,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DenyBody {
    approver: String,
    #[serde(default)]
    reason: Option<String>,
}

async fn read_json<T: for<'de> Deserialize<'de>>(
    body: Incoming,
) -> Result<T, Response<Full<Bytes>>> {
    let bytes = match Limited::new(body, MAX_BODY).collect().await {
        Ok(c) => c.to_bytes(),
        Err(_) => {
            return Err(err(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                &format!("request body over {MAX_BODY} bytes or unreadable"),
            ))
        }
    };
    serde_json::from_slice(&bytes).map_err(|e| {
        err(
            StatusCode::BAD_REQUEST,
            "bad_request",
            &sanitize_line(&e.to_string(), 200),
        )
    })
}

async fn route(
    req: Request<Incoming>,
    broker: &Broker,
    token: &ApiToken,
    ends: Ends,
) -> Response<Full<Bytes>> {
    if !token.matches_header(req.headers().get(AUTHORIZATION)) {
        tracing::warn!(path = %sanitize_line(req.uri().path(), 100), "approval HTTP API: missing or wrong bearer token");
        let mut r = err(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or invalid bearer token",
        );
        r.headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return r;
    }
    let path = req.uri().path().to_owned();
    let segs: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    let method = req.method().clone();
    match (segs.as_slice(), method) {
        (["", "v1", "approvals"], Method::GET) => json(
            StatusCode::OK,
            &serde_json::json!({ "approvals": broker.list() }),
        ),
        (["", "v1", "approvals", id], Method::GET) => match broker.get(id) {
            Some(v) => json(StatusCode::OK, &serde_json::json!(v)),
            None => not_found(id),
        },
        (["", "v1", "approvals", id, "approve"], Method::POST) => {
            let id = (*id).to_owned();
            match read_json::<ApproveBody>(req.into_body()).await {
                Ok(b) => {
                    let client = ends.client().await;
                    decide(
                        broker,
                        &id,
                        &b.approver,
                        client,
                        Resolution::Approve {
                            scope: b.scope,
                            reason: b.reason,
                        },
                    )
                }
                Err(r) => r,
            }
        }
        (["", "v1", "approvals", id, "deny"], Method::POST) => {
            let id = (*id).to_owned();
            match read_json::<DenyBody>(req.into_body()).await {
                Ok(b) => decide(
                    broker,
                    &id,
                    &b.approver,
                    Err("not looked up for a denial".into()),
                    Resolution::Deny { reason: b.reason },
                ),
                Err(r) => r,
            }
        }
        (["", "v1", "approvals"] | ["", "v1", "approvals", _], _)
        | (["", "v1", "approvals", _, "approve" | "deny"], _) => err(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "method not allowed on this path",
        ),
        _ => err(StatusCode::NOT_FOUND, "not_found", "no such endpoint"),
    }
}

fn not_found(id: &str) -> Response<Full<Bytes>> {
    err(
        StatusCode::NOT_FOUND,
        "unknown_id",
        &format!("no approval with id {:?}", sanitize_line(id, 16)),
    )
}

fn decide(
    broker: &Broker,
    id: &str,
    approver: &str,
    client: Result<ApproverProcess, String>,
    res: Resolution,
) -> Response<Full<Bytes>> {
    let name = sanitize_line(approver, 64);
    if name.trim().is_empty() {
        return err(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "`approver` must not be empty",
        );
    }
    let who = Approver {
        name: format!("http:{}", name.trim()),
        process: client,
    };
    match broker.decide(id, &who, res) {
        Ok(decision) => json(
            StatusCode::OK,
            &serde_json::json!({ "id": id, "decision": decision }),
        ),
        Err(DecideError::UnknownId(_)) => not_found(id),
        Err(e @ DecideError::AlreadyDecided { .. }) => {
            err(StatusCode::CONFLICT, "already_decided", &e.to_string())
        }
        Err(e @ DecideError::InvalidApprover) => {
            err(StatusCode::BAD_REQUEST, "bad_request", &e.to_string())
        }
        Err(e @ DecideError::Refused(_)) => {
            err(StatusCode::FORBIDDEN, "approval_refused", &e.to_string())
        }
        Err(e @ DecideError::Journal { .. }) => err(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            &e.to_string(),
        ),
    }
}

/// Token file permissions helper for tests and the daemon: true if only the owner can read.
#[must_use]
pub fn token_file_is_private(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o077 == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_validation_and_compare() {
        assert!(ApiToken::new("short").is_err());
        assert!(ApiToken::new("has space inside the token").is_err());
        let t = ApiToken::new("0123456789abcdef0123\n").unwrap();
        assert_eq!(t.expose(), "0123456789abcdef0123");
        let hv = |s: &str| HeaderValue::from_str(s).unwrap();
        assert!(t.matches_header(Some(&hv("Bearer 0123456789abcdef0123"))));
        assert!(!t.matches_header(Some(&hv("Bearer 0123456789abcdef0124"))));
        assert!(!t.matches_header(Some(&hv("Bearer 0123456789abcdef012"))));
        assert!(!t.matches_header(Some(&hv("Basic 0123456789abcdef0123"))));
        assert!(!t.matches_header(None));
        assert_eq!(format!("{t:?}"), "ApiToken(<redacted>)");
    }

    #[test]
    fn token_file_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create_token(dir.path()).unwrap();
        assert_eq!(a.expose().len(), 64);
        let path = dir.path().join(TOKEN_FILE);
        assert!(token_file_is_private(&path));
        let b = load_or_create_token(dir.path()).unwrap();
        assert_eq!(a.expose(), b.expose());
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            load_or_create_token(dir.path()),
            Err(HttpError::TokenFileMode(_))
        ));
    }
}
