//! Webhook notifications for requests and decisions, off the hot path.
//!
//! [`Webhooks::spawn`] starts one delivery task per configured URL, each with its own
//! bounded queue, so a slow or failing receiver delays nobody else. [`Webhooks::notify`]
//! only does a `try_send` (a full queue drops the notification, counted and logged) and
//! [`Webhooks::attach`] feeds it from the broker's event channel, so a session never
//! waits for a webhook. Each delivery is tried up to [`WebhookConfig::attempts`] times
//! with exponential backoff; a 4xx other than 408/429 is not retried. Plain `http://` only.
//!
//! Two payload formats ([`WebhookFormat`]):
//! - `generic`: `{"source":"dbwarden","event":"approval.requested|approval.decided","approval":{…}}`
//!   (the approval view, statement truncated).
//! - `slack`: `{"text": …, "blocks": […]}` for Slack incoming webhooks (and compatibles).
//!
//! Statement text, requester identity and target are hostile. In Slack payloads every such
//! field is cleaned ([`crate::text`]) and escaped by [`slack_escape`]: `&`, `<`, `>` become
//! entities (no links or `<!here>`-style mentions can be formed), backticks become `ˋ`
//! (U+02CB, so no code span or fence can be closed) and `@` becomes `＠` (U+FF20, no
//! `@channel`/`@here` mentions); the statement sits in a code block (no `*bold*` or
//! `_italic_`), other hostile fields in code spans. No buttons are sent: decisions are
//! taken through the control socket or the HTTP API.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HOST, USER_AGENT};
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

use crate::broker::Broker;
use crate::model::{ApprovalEvent, ApprovalState, ApprovalView, Decision};
use crate::text::{sanitize_line, sanitize_text};

/// Payload format of a webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookFormat {
    /// dbwarden's own JSON.
    Generic,
    /// Slack incoming-webhook JSON (`text` + `blocks`).
    Slack,
}

/// One webhook receiver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookTarget {
    /// `http://host[:port]/path`.
    pub url: String,
    /// Payload format.
    pub format: WebhookFormat,
}

/// Webhook settings.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Receivers.
    pub targets: Vec<WebhookTarget>,
    /// Queue length per receiver (default 64); notifications beyond it are dropped.
    pub queue: usize,
    /// Delivery attempts per notification (default 3).
    pub attempts: u32,
    /// Delay before the first retry, doubled each retry (default 1 s).
    pub backoff: Duration,
    /// Timeout of one attempt, connect to response (default 5 s).
    pub timeout: Duration,
    /// Statement characters included (default 1000).
    pub max_statement_chars: usize,
}

impl WebhookConfig {
    /// Defaults for the given receivers.
    #[must_use]
    pub fn new(targets: Vec<WebhookTarget>) -> Self {
        WebhookConfig {
            targets,
            queue: 64,
            attempts: 3,
            backoff: Duration::from_secs(1),
            timeout: Duration::from_secs(5),
            max_statement_chars: 1000,
        }
    }
}

/// Invalid webhook configuration.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The URL cannot be used.
    #[error("webhook URL {url:?}: {why} (setting `approvals.webhooks.url`)")]
    BadUrl {
        /// The URL (as configured).
        url: String,
        /// What is wrong.
        why: &'static str,
    },
    /// Not inside a Tokio runtime.
    #[error("webhooks must be started inside a Tokio runtime")]
    NoRuntime,
}

/// Delivery counters (for metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WebhookStats {
    /// Notifications accepted by a receiver (2xx).
    pub delivered: u64,
    /// Failed attempts (each retry counts).
    pub failed_attempts: u64,
    /// Notifications given up after the last attempt.
    pub given_up: u64,
    /// Notifications dropped because a queue was full.
    pub dropped: u64,
}

#[derive(Debug, Default)]
struct Counters {
    delivered: AtomicU64,
    failed_attempts: AtomicU64,
    given_up: AtomicU64,
    dropped: AtomicU64,
}

#[derive(Clone)]
struct Endpoint {
    /// Host for `connect` (IPv6 without brackets).
    host: String,
    port: u16,
    /// `Host` header value.
    authority: String,
    path: String,
    format: WebhookFormat,
    /// URL without query, for logs (a query may hold a secret).
    display: String,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display)
    }
}

fn parse_url(t: &WebhookTarget) -> Result<Endpoint, WebhookError> {
    let bad = |why| WebhookError::BadUrl {
        url: sanitize_line(&t.url, 200),
        why,
    };
    let uri: Uri = t.url.parse().map_err(|_| bad("not a valid URL"))?;
    if uri.scheme_str() != Some("http") {
        return Err(bad("only http:// URLs are supported"));
    }
    let auth = uri.authority().ok_or_else(|| bad("missing host"))?;
    if auth.as_str().contains('@') {
        return Err(bad("user info in URLs is not supported"));
    }
    let host = auth.host().trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(bad("missing host"));
    }
    let path = uri
        .path_and_query()
        .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
    Ok(Endpoint {
        host: host.to_owned(),
        port: auth.port_u16().unwrap_or(80),
        authority: auth.as_str().to_owned(),
        display: format!("http://{}{}", auth.as_str(), uri.path()),
        path,
        format: t.format,
    })
}

/// Handle to the webhook delivery tasks. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Webhooks {
    queues: Arc<Vec<(Endpoint, mpsc::Sender<Arc<ApprovalEvent>>)>>,
    counters: Arc<Counters>,
}

impl Webhooks {
    /// Validates the URLs and starts one delivery task per receiver.
    ///
    /// # Errors
    /// [`WebhookError::BadUrl`] for an unusable URL, [`WebhookError::NoRuntime`] outside a
    /// Tokio runtime.
    pub fn spawn(cfg: WebhookConfig) -> Result<Webhooks, WebhookError> {
        let rt = tokio::runtime::Handle::try_current().map_err(|_| WebhookError::NoRuntime)?;
        let endpoints = cfg
            .targets
            .iter()
            .map(parse_url)
            .collect::<Result<Vec<_>, _>>()?;
        let counters = Arc::new(Counters::default());
        let cfg = Arc::new(cfg);
        let mut queues = Vec::new();
        for ep in endpoints {
            let (tx, rx) = mpsc::channel(cfg.queue.max(1));
            rt.spawn(deliver_loop(
                ep.clone(),
                rx,
                Arc::clone(&cfg),
                Arc::clone(&counters),
            ));
            queues.push((ep, tx));
        }
        Ok(Webhooks {
            queues: Arc::new(queues),
            counters,
        })
    }

    /// Queues a notification for every receiver. Never blocks; a full queue drops it.
    pub fn notify(&self, event: &ApprovalEvent) {
        let ev = Arc::new(event.clone());
        for (ep, tx) in self.queues.iter() {
            if tx.try_send(Arc::clone(&ev)).is_err() {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(webhook = %ep.display, approval = %event.approval().id, "webhook queue full; notification dropped");
            }
        }
    }

    /// Forwards every broker event to [`Self::notify`] until the broker is gone.
    pub fn attach(&self, broker: &Broker) -> JoinHandle<()> {
        let mut rx = broker.subscribe();
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(ev) => me.notify(&ev),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        me.counters.dropped.fetch_add(n, Ordering::Relaxed);
                        tracing::warn!(lost = n, "webhook forwarder lagged; notifications dropped");
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        })
    }

    /// Delivery counters.
    #[must_use]
    pub fn stats(&self) -> WebhookStats {
        let c = &self.counters;
        WebhookStats {
            delivered: c.delivered.load(Ordering::Relaxed),
            failed_attempts: c.failed_attempts.load(Ordering::Relaxed),
            given_up: c.given_up.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
        }
    }
}

async fn deliver_loop(
    ep: Endpoint,
    mut rx: mpsc::Receiver<Arc<ApprovalEvent>>,
    cfg: Arc<WebhookConfig>,
    counters: Arc<Counters>,
) {
    while let Some(ev) = rx.recv().await {
        let body = Bytes::from(
            match ep.format {
                WebhookFormat::Generic => generic_payload(&ev, cfg.max_statement_chars),
                WebhookFormat::Slack => slack_payload(&ev, cfg.max_statement_chars),
            }
            .to_string(),
        );
        let id = &ev.approval().id;
        let attempts = cfg.attempts.max(1);
        let mut delay = cfg.backoff;
        for attempt in 1..=attempts {
            let outcome = tokio::time::timeout(cfg.timeout, post(&ep, body.clone())).await;
            let (err, retryable) = match outcome {
                Ok(Ok(status)) if (200..300).contains(&status) => {
                    counters.delivered.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(webhook = %ep.display, approval = %id, status, "webhook delivered");
                    break;
                }
                Ok(Ok(status)) => (
                    format!("HTTP status {status}"),
                    !(400..500).contains(&status) || status == 408 || status == 429,
                ),
                Ok(Err(e)) => (e, true),
                Err(_) => (format!("no response within {:?}", cfg.timeout), true),
            };
            counters.failed_attempts.fetch_add(1, Ordering::Relaxed);
            if attempt == attempts || !retryable {
                counters.given_up.fetch_add(1, Ordering::Relaxed);
                tracing::error!(webhook = %ep.display, approval = %id, attempt, error = %err, "webhook delivery failed; giving up");
                break;
            }
            tracing::warn!(webhook = %ep.display, approval = %id, attempt, error = %err, "webhook delivery failed; retrying");
            tokio::time::sleep(delay).await;
            delay = delay.saturating_mul(2);
        }
    }
}

/// One POST; returns the status code.
async fn post(ep: &Endpoint, body: Bytes) -> Result<u16, String> {
    let stream = TcpStream::connect((ep.host.as_str(), ep.port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let conn = tokio::spawn(conn);
    let req = Request::post(ep.path.as_str())
        .header(HOST, ep.authority.as_str())
        .header(CONTENT_TYPE, "application/json")
        .header(USER_AGENT, concat!("dbwarden/", env!("CARGO_PKG_VERSION")))
        .body(Full::new(body))
        .map_err(|e| format!("request: {e}"))?;
    let resp = sender.send_request(req).await;
    conn.abort();
    resp.map(|r| r.status().as_u16())
        .map_err(|e| format!("send: {e}"))
}

fn event_name(ev: &ApprovalEvent) -> &'static str {
    match ev {
        ApprovalEvent::Requested { .. } => "approval.requested",
        ApprovalEvent::Decided { .. } => "approval.decided",
    }
}

/// The generic JSON payload for an event (statement cleaned and truncated).
#[must_use]
pub fn generic_payload(ev: &ApprovalEvent, max_statement_chars: usize) -> serde_json::Value {
    let mut v = ev.approval().clone();
    v.statement = sanitize_text(&v.statement, max_statement_chars);
    v.normalized = sanitize_text(&v.normalized, max_statement_chars);
    v.rule = sanitize_line(&v.rule, 512);
    v.identity = sanitize_line(&v.identity, 512);
    v.target = sanitize_line(&v.target, 512);
    serde_json::json!({ "source": "dbwarden", "event": event_name(ev), "approval": v })
}

/// Escapes hostile text for Slack mrkdwn (see the module docs). Output is bounded to
/// `max_out` characters (entities are never split) with `…` when cut.
#[must_use]
pub fn slack_escape(s: &str, max_out: usize) -> String {
    let mut out = String::new();
    let mut n = 0usize;
    for c in s.chars() {
        let rep: &str = match c {
            '&' => "&amp;",
            '<' => "&lt;",
            '>' => "&gt;",
            '`' => "\u{02CB}",
            '@' => "\u{FF20}",
            _ => "",
        };
        let len = if rep.is_empty() {
            1
        } else {
            rep.chars().count()
        };
        if n + len > max_out {
            out.push('…');
            return out;
        }
        if rep.is_empty() {
            out.push(c);
        } else {
            out.push_str(rep);
        }
        n += len;
    }
    out
}

/// A hostile single-line field as an inline code span.
fn code_span(s: &str, max: usize) -> String {
    let e = slack_escape(&sanitize_line(s, max), max * 2);
    if e.is_empty() {
        "(none)".to_owned()
    } else {
        format!("`{e}`")
    }
}

fn secs(ms: u64) -> String {
    let s = ms.div_ceil(1000);
    if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

fn decision_line(d: &Decision) -> String {
    let who = |a: &str| code_span(a, 64);
    match d {
        Decision::Approved {
            approver, scope, ..
        } => format!(
            ":white_check_mark: *Approved* by {} (scope: {scope})",
            who(approver)
        ),
        Decision::Denied { approver, .. } => format!(":no_entry: *Denied* by {}", who(approver)),
        Decision::TimedOut { timeout_ms } => {
            format!(":hourglass: *Timed out* after {}", secs(*timeout_ms))
        }
        Decision::Cancelled { .. } => ":heavy_multiplication_x: *Cancelled*".to_owned(),
    }
}

fn section(text: String) -> serde_json::Value {
    serde_json::json!({ "type": "section", "text": { "type": "mrkdwn", "text": text } })
}

/// The Slack payload for an event. Every hostile field is escaped (see the module docs).
#[must_use]
pub fn slack_payload(ev: &ApprovalEvent, max_statement_chars: usize) -> serde_json::Value {
    let v: &ApprovalView = ev.approval();
    let id = code_span(&v.id, 16);
    // Slack limits a section's text to 3000 characters; leave room for the fences.
    let statement = slack_escape(&sanitize_text(&v.statement, max_statement_chars), 2900);
    let details = format!(
        "*Rule:* {}\n*Session:* {}\n*Requester:* {}\n*Target:* {}",
        code_span(&v.rule, 200),
        v.session_id,
        code_span(&v.identity, 300),
        code_span(&v.target, 300),
    );
    let code_block = section(format!("```\n{statement}\n```"));
    let (text, head, footer) = match &v.state {
        ApprovalState::Pending { expires_in_ms } => (
            format!(
                "dbwarden: statement held for approval {id} (rule {})",
                code_span(&v.rule, 200)
            ),
            format!(
                ":raised_hand: *Statement held for approval* {id}, expires in {}",
                secs(*expires_in_ms)
            ),
            format!(
                "Approve: `dbwarden approvals approve {0}` · Deny: `dbwarden approvals deny {0} --reason …`",
                slack_escape(&sanitize_line(&v.id, 16), 32)
            ),
        ),
        ApprovalState::Decided {
            decision,
            waited_ms,
            ..
        } => {
            let line = decision_line(decision);
            let reason = decision
                .reason()
                .map_or_else(|| "(none)".to_owned(), |r| code_span(r, 500));
            (
                format!("dbwarden: approval {id} {}", decision.outcome()),
                format!("{line} — approval {id}"),
                format!("Reason: {reason} · waited {}", secs(*waited_ms)),
            )
        }
    };
    serde_json::json!({
        "text": text,
        "blocks": [
            section(head),
            section(details),
            code_block,
            { "type": "context", "elements": [ { "type": "mrkdwn", "text": footer } ] },
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_parsing() {
        let t = |u: &str| WebhookTarget {
            url: u.into(),
            format: WebhookFormat::Generic,
        };
        let e = parse_url(&t("http://127.0.0.1:9000/hook?k=secret")).unwrap();
        assert_eq!((e.host.as_str(), e.port), ("127.0.0.1", 9000));
        assert_eq!(e.path, "/hook?k=secret");
        assert_eq!(e.display, "http://127.0.0.1:9000/hook");
        let e = parse_url(&t("http://[::1]/x")).unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.authority.as_str()),
            ("::1", 80, "[::1]")
        );
        assert!(parse_url(&t("https://hooks.slack.com/x")).is_err());
        assert!(parse_url(&t("http://user:pw@host/x")).is_err());
        assert!(parse_url(&t("not a url")).is_err());
    }

    #[test]
    fn escape_neutralises_markup() {
        let s = slack_escape("<https://evil|click> @channel `x` ``` <!here> a&b", 1000);
        assert_eq!(
            s,
            "&lt;https://evil|click&gt; \u{FF20}channel \u{02CB}x\u{02CB} \u{02CB}\u{02CB}\u{02CB} &lt;!here&gt; a&amp;b"
        );
        // Never cuts an entity.
        assert_eq!(slack_escape("ab<", 4), "ab…");
        assert_eq!(slack_escape("abc", 3), "abc");
    }
}
