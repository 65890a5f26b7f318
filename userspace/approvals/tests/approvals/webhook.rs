//! Webhooks: payloads reach a local receiver, hostile statements arrive escaped, a failing
//! receiver is retried then given up without blocking anything.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use dbwarden_approvals::{Resolution, WebhookConfig, WebhookFormat, WebhookTarget, Webhooks};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;

use crate::common::{open, req, who, MIN};

struct Receiver {
    addr: SocketAddr,
    rx: mpsc::UnboundedReceiver<(String, serde_json::Value)>,
    hits: Arc<AtomicUsize>,
}

/// A hyper server on 127.0.0.1:0 answering `status` and reporting (path, JSON body).
async fn receiver(status: u16) -> Receiver {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = Arc::clone(&hits);
    tokio::spawn(async move {
        loop {
            let (s, _) = l.accept().await.unwrap();
            let tx = tx.clone();
            let h = Arc::clone(&h);
            tokio::spawn(async move {
                let svc = service_fn(move |r: Request<hyper::body::Incoming>| {
                    let tx = tx.clone();
                    let h = Arc::clone(&h);
                    async move {
                        h.fetch_add(1, Ordering::SeqCst);
                        assert_eq!(r.method(), "POST");
                        assert_eq!(r.headers()["content-type"], "application/json");
                        let path = r.uri().path().to_owned();
                        let b = r.into_body().collect().await.unwrap().to_bytes();
                        let _ = tx.send((path, serde_json::from_slice(&b).unwrap()));
                        let mut resp = Response::new(Full::new(Bytes::from_static(b"ok")));
                        *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    Receiver { addr, rx, hits }
}

async fn next(r: &mut Receiver) -> (String, serde_json::Value) {
    tokio::time::timeout(Duration::from_secs(10), r.rx.recv())
        .await
        .expect("webhook not received within 10 s")
        .unwrap()
}

const HOSTILE: &str = "SELECT '<https://evil|click> @channel *bold* ``` <!here>' FROM t\u{1b}[2J";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generic_and_slack_payloads_for_request_and_decision() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path()).await;
    let mut generic = receiver(200).await;
    let mut slack = receiver(200).await;
    let hooks = Webhooks::spawn(WebhookConfig::new(vec![
        WebhookTarget {
            url: format!("http://{}/generic", generic.addr),
            format: WebhookFormat::Generic,
        },
        WebhookTarget {
            url: format!("http://{}/services/T0/B0/x", slack.addr),
            format: WebhookFormat::Slack,
        },
    ]))
    .unwrap();
    let _fwd = hooks.attach(&b);

    let mut p = b.request(req(9, HOSTILE, MIN)).unwrap();
    let id = p.id().to_owned();

    let (path, g) = next(&mut generic).await;
    assert_eq!(path, "/generic");
    assert_eq!(g["source"], "dbwarden");
    assert_eq!(g["event"], "approval.requested");
    assert_eq!(g["approval"]["id"], id.as_str());
    assert_eq!(g["approval"]["session_id"], 9);
    assert_eq!(g["approval"]["rule"], "prod-writes");
    assert_eq!(g["approval"]["state"], "pending");
    let stmt = g["approval"]["statement"].as_str().unwrap();
    assert!(!stmt.contains('\u{1b}'), "control characters stripped");

    let (path, s) = next(&mut slack).await;
    assert_eq!(path, "/services/T0/B0/x");
    assert_slack_safe(&s);
    assert!(s["text"].as_str().unwrap().contains(&id));
    let blocks = s["blocks"].as_array().unwrap();
    let code = blocks
        .iter()
        .map(|b| b["text"]["text"].as_str().unwrap_or(""))
        .find(|t| t.starts_with("```\n"))
        .expect("statement code block");
    let inner = code
        .strip_prefix("```\n")
        .and_then(|c| c.strip_suffix("\n```"))
        .unwrap();
    assert!(
        !inner.contains('`'),
        "no backtick can close the fence: {inner}"
    );
    assert!(
        inner.contains("*bold*"),
        "formatting stays literal inside the block"
    );
    assert!(inner.contains("&lt;https://evil|click&gt;"), "{inner}");
    // The formatting characters appear nowhere outside the code block.
    for b in blocks {
        let t = b["text"]["text"].as_str().unwrap_or("");
        if !t.starts_with("```") {
            assert!(!t.contains("*bold*"), "{t}");
        }
    }

    b.decide(
        &id,
        &who("alice"),
        Resolution::Deny {
            reason: Some("<!channel> go away".into()),
        },
    )
    .unwrap();
    assert!(!p.wait().await.is_approved());
    let (_, g) = next(&mut generic).await;
    assert_eq!(g["event"], "approval.decided");
    assert_eq!(g["approval"]["state"], "decided");
    assert_eq!(g["approval"]["decision"]["outcome"], "denied");
    assert_eq!(g["approval"]["decision"]["approver"], "alice");
    assert!(g["approval"]["waited_ms"].is_u64());
    let (_, s) = next(&mut slack).await;
    assert_slack_safe(&s);
    let all = s.to_string();
    assert!(all.contains("Denied"), "{all}");
    assert!(all.contains("&lt;!channel&gt; go away"), "{all}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while hooks.stats().delivered < 4 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            hooks.stats()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(hooks.stats().given_up, 0);
}

/// No link, mention or markup sequence from hostile text survives anywhere in the payload.
fn assert_slack_safe(payload: &serde_json::Value) {
    let all = payload.to_string();
    for bad in [
        "<https://",
        "<!here>",
        "<!channel>",
        "@channel",
        "@here",
        "|click>",
        "\u{1b}",
    ] {
        assert!(!all.contains(bad), "{bad:?} in {all}");
    }
    assert!(!all.contains('<'), "no raw angle bracket at all: {all}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_receiver_is_retried_then_given_up_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path()).await;
    let failing = receiver(500).await;
    let mut ok = receiver(200).await;
    let mut cfg = WebhookConfig::new(vec![
        WebhookTarget {
            url: format!("http://{}/fail", failing.addr),
            format: WebhookFormat::Generic,
        },
        WebhookTarget {
            url: format!("http://{}/ok", ok.addr),
            format: WebhookFormat::Slack,
        },
    ]);
    cfg.attempts = 3;
    cfg.backoff = Duration::from_millis(20);
    let hooks = Webhooks::spawn(cfg).unwrap();
    let _fwd = hooks.attach(&b);

    let started = std::time::Instant::now();
    let mut p = b.request(req(1, "DELETE FROM t", MIN)).unwrap();
    b.decide(
        p.id(),
        &who("alice"),
        Resolution::Approve {
            scope: dbwarden_approvals::Scope::Once,
            reason: None,
        },
    )
    .unwrap();
    assert!(p.wait().await.is_approved());
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "sessions never wait for webhooks"
    );

    // The healthy receiver gets both notifications regardless of the failing one.
    next(&mut ok).await;
    next(&mut ok).await;
    // 2 notifications × 3 attempts, then given up.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while hooks.stats().given_up < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            hooks.stats()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(failing.hits.load(Ordering::SeqCst), 6);
    let st = hooks.stats();
    assert_eq!(
        (st.failed_attempts, st.given_up, st.delivered),
        (6, 2, 2),
        "{st:?}"
    );
}

#[tokio::test]
async fn unreachable_receiver_and_bad_urls() {
    assert!(Webhooks::spawn(WebhookConfig::new(vec![WebhookTarget {
        url: "https://hooks.slack.com/services/x".into(),
        format: WebhookFormat::Slack,
    }]))
    .is_err());
    // A port nobody listens on: connection refused, retried, given up.
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut cfg = WebhookConfig::new(vec![WebhookTarget {
        url: format!("http://{free}/x"),
        format: WebhookFormat::Generic,
    }]);
    cfg.attempts = 2;
    cfg.backoff = Duration::from_millis(5);
    let hooks = Webhooks::spawn(cfg).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path()).await;
    let _fwd = hooks.attach(&b);
    let p = b.request(req(1, "x", MIN)).unwrap();
    drop(p);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while hooks.stats().given_up < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            hooks.stats()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(hooks.stats().failed_attempts, 4);
}
