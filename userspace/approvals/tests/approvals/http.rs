//! HTTP API: bearer token, approve/deny, errors, loopback only.

use std::net::SocketAddr;

use bytes::Bytes;
use dbwarden_approvals::{bind_http, serve_http, ApiToken, Decision, HttpError, Scope};
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::sync::oneshot;

use crate::common::{open, req, MIN};

const TOKEN: &str = "test-token-0123456789abcdef";

/// One request; returns (status, WWW-Authenticate header, JSON body).
async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<String>,
) -> (u16, Option<String>, serde_json::Value) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut r = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    if let Some(t) = token {
        r = r.header("authorization", format!("Bearer {t}"));
    }
    let resp = tx
        .send_request(
            r.body(Full::new(Bytes::from(body.unwrap_or_default())))
                .unwrap(),
        )
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let www = resp
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, www, serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_required_and_decisions_via_http() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path()).await;
    let listener = bind_http("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(serve_http(
        b.clone(),
        listener,
        ApiToken::new(TOKEN).unwrap(),
        async {
            let _ = stopped.await;
        },
    ));

    let mut p1 = b.request(req(5, "DELETE FROM orders", MIN)).unwrap();
    let mut p2 = b.request(req(6, "DROP TABLE x", MIN)).unwrap();
    let id1 = p1.id().to_owned();
    let id2 = p2.id().to_owned();

    // 401 without and with a wrong token, on every endpoint.
    for (m, path) in [
        ("GET", "/v1/approvals".to_owned()),
        ("GET", format!("/v1/approvals/{id1}")),
        ("POST", format!("/v1/approvals/{id1}/approve")),
        ("POST", format!("/v1/approvals/{id1}/deny")),
    ] {
        let body = Some(r#"{"approver":"eve"}"#.to_owned());
        let (s, www, j) = call(addr, m, &path, None, body.clone()).await;
        assert_eq!((s, www.as_deref()), (401, Some("Bearer")), "{m} {path}");
        assert_eq!(j["error"], "unauthorized");
        let (s, _, _) = call(addr, m, &path, Some("test-token-0123456789abcdeX"), body).await;
        assert_eq!(s, 401, "{m} {path}");
    }
    assert_eq!(b.pending_count(), 2, "nothing decided without the token");

    let (s, _, j) = call(addr, "GET", "/v1/approvals", Some(TOKEN), None).await;
    assert_eq!(s, 200);
    let ids: Vec<&str> = j["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![id1.as_str(), id2.as_str()]);
    assert_eq!(j["approvals"][0]["state"], "pending");

    let (s, _, j) = call(
        addr,
        "GET",
        &format!("/v1/approvals/{id1}"),
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(
        (s, j["statement"].as_str()),
        (200, Some("DELETE FROM orders"))
    );

    let body = r#"{"approver":"alice","reason":"INC-9","scope":"session"}"#.to_owned();
    let (s, _, j) = call(
        addr,
        "POST",
        &format!("/v1/approvals/{id1}/approve"),
        Some(TOKEN),
        Some(body),
    )
    .await;
    assert_eq!(s, 200, "{j}");
    let expected = Decision::Approved {
        approver: "http:alice".into(),
        reason: Some("INC-9".into()),
        scope: Scope::Session,
    };
    assert_eq!(
        serde_json::from_value::<Decision>(j["decision"].clone()).unwrap(),
        expected
    );
    assert_eq!(p1.wait().await, expected);

    // Missing approver, unknown fields, bad JSON: 400; nothing decided.
    for bad in [
        r#"{"reason":"x"}"#,
        r#"{"approver":"a","scope":"forever"}"#,
        "not json",
        r#"{"approver":"  "}"#,
    ] {
        let (s, _, _) = call(
            addr,
            "POST",
            &format!("/v1/approvals/{id2}/approve"),
            Some(TOKEN),
            Some(bad.to_owned()),
        )
        .await;
        assert_eq!(s, 400, "{bad}");
    }
    let (s, _, _) = call(
        addr,
        "POST",
        &format!("/v1/approvals/{id2}/deny"),
        Some(TOKEN),
        Some("x".repeat(20_000)),
    )
    .await;
    assert_eq!(s, 413);
    assert_eq!(b.pending_count(), 1);

    let (s, _, j) = call(
        addr,
        "POST",
        &format!("/v1/approvals/{id2}/deny"),
        Some(TOKEN),
        Some(r#"{"approver":"bob","reason":"no"}"#.to_owned()),
    )
    .await;
    assert_eq!(s, 200, "{j}");
    assert_eq!(
        p2.wait().await,
        Decision::Denied {
            approver: "http:bob".into(),
            reason: Some("no".into())
        }
    );

    // Already decided: 409; unknown: 404; wrong method: 405; unknown path: 404.
    let (s, _, j) = call(
        addr,
        "POST",
        &format!("/v1/approvals/{id2}/approve"),
        Some(TOKEN),
        Some(r#"{"approver":"bob"}"#.to_owned()),
    )
    .await;
    assert_eq!((s, j["error"].as_str()), (409, Some("already_decided")));
    let (s, _, j) = call(addr, "GET", "/v1/approvals/ffffffff", Some(TOKEN), None).await;
    assert_eq!((s, j["error"].as_str()), (404, Some("unknown_id")));
    let (s, _, _) = call(
        addr,
        "DELETE",
        &format!("/v1/approvals/{id2}"),
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(s, 405);
    let (s, _, _) = call(addr, "GET", "/v2/whatever", Some(TOKEN), None).await;
    assert_eq!(s, 404);

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn non_loopback_bind_refused() {
    for a in ["0.0.0.0:0", "[::]:0", "192.0.2.1:7433"] {
        let e = bind_http(a.parse().unwrap()).await.unwrap_err();
        assert!(matches!(e, HttpError::NotLoopback(_)), "{a}: {e}");
        assert!(e.to_string().contains("non-loopback"));
    }
    bind_http("[::1]:0".parse().unwrap()).await.unwrap();

    // A listener bound elsewhere by the caller is refused too.
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path()).await;
    let l = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let e = serve_http(b, l, ApiToken::new(TOKEN).unwrap(), std::future::pending())
        .await
        .unwrap_err();
    assert!(matches!(e, HttpError::NotLoopback(_)), "{e}");
}

/// Serves `b` on a fresh loopback port; returns the address and the stop handle.
async fn serve(b: &dbwarden_approvals::Broker) -> (SocketAddr, oneshot::Sender<()>) {
    let listener = bind_http("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(serve_http(
        b.clone(),
        listener,
        ApiToken::new(TOKEN).unwrap(),
        async {
            let _ = stopped.await;
        },
    ));
    (addr, stop)
}

async fn open_with_rules(
    dir: &std::path::Path,
    rules: dbwarden_approvals::ApprovalRules,
) -> dbwarden_approvals::Broker {
    let mut c = crate::common::config(dir);
    c.rules = rules;
    dbwarden_approvals::Broker::open(c).await.unwrap().0
}

/// The HTTP client is this process: its uid (from /proc/net/tcp) equal to the session's is
/// refused with 403 whatever approver name the token holder gives; deny still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_self_approval_refused_by_socket_owner_uid() {
    let dir = tempfile::tempdir().unwrap();
    let b = open_with_rules(dir.path(), dbwarden_approvals::ApprovalRules::default()).await;
    let (addr, stop) = serve(&b).await;
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    let mut r = req(1, "DELETE FROM t", MIN);
    r.requester_uid = uid;
    let mut p = b.request(r).unwrap();
    let id = p.id().to_owned();
    let (s, _, j) = call(
        addr,
        "POST",
        &format!("/v1/approvals/{id}/approve"),
        Some(TOKEN),
        Some(r#"{"approver":"someone-else"}"#.to_owned()),
    )
    .await;
    assert_eq!(
        (s, j["error"].as_str()),
        (403, Some("approval_refused")),
        "{j}"
    );
    assert_eq!(
        j["message"],
        format!(
            "approval refused: the approver (uid {uid}) is the uid of the requesting session; \
             self-approval is disabled ([approvals] allow_self_approval)"
        )
        .as_str()
    );
    assert!(b.get(&id).unwrap().is_pending());
    let journal = std::fs::read_to_string(dir.path().join("approvals.journal")).unwrap();
    assert!(
        journal.contains("\"type\":\"refused\"")
            && journal.contains("\"approver\":\"http:someone-else\""),
        "{journal}"
    );
    let (s, _, j) = call(
        addr,
        "POST",
        &format!("/v1/approvals/{id}/deny"),
        Some(TOKEN),
        Some(r#"{"approver":"someone-else"}"#.to_owned()),
    )
    .await;
    assert_eq!(s, 200, "{j}");
    assert!(!p.wait().await.is_approved());
    stop.send(()).unwrap();
}

/// The HTTP client process (found through /proc/*/fd) in a controlled cgroup: 403.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_client_in_a_controlled_cgroup_refused() {
    let dir = tempfile::tempdir().unwrap();
    let me = std::process::id();
    let rules = dbwarden_approvals::ApprovalRules {
        allow_self_approval: true,
        controlled_cgroups: vec!["/dbwarden-agents".into()],
        cgroup_of: dbwarden_approvals::CgroupResolver::from_fn(move |pid, _| {
            Ok(if pid == me {
                "/dbwarden-agents".into()
            } else {
                "/".into()
            })
        }),
    };
    let b = open_with_rules(dir.path(), rules).await;
    let (addr, stop) = serve(&b).await;
    let mut p = b.request(req(1, "DELETE FROM t", MIN)).unwrap();
    let id = p.id().to_owned();
    let (s, _, j) = call(
        addr,
        "POST",
        &format!("/v1/approvals/{id}/approve"),
        Some(TOKEN),
        Some(r#"{"approver":"ops"}"#.to_owned()),
    )
    .await;
    assert_eq!(
        (s, j["error"].as_str()),
        (403, Some("approval_refused")),
        "{j}"
    );
    let msg = j["message"].as_str().unwrap();
    assert!(
        msg.contains(&format!("(pid {me}, uid"))
            && msg.contains("controlled cgroup /dbwarden-agents;"),
        "{msg}"
    );
    assert!(b.get(&id).unwrap().is_pending());
    let (s, _, _) = call(
        addr,
        "POST",
        &format!("/v1/approvals/{id}/deny"),
        Some(TOKEN),
        Some(r#"{"approver":"ops"}"#.to_owned()),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(p.wait().await.approver(), Some("http:ops"));
    stop.send(()).unwrap();
}
