//! Broker behaviour: every way a held statement can end.

use std::time::Duration;

use dbwarden_approvals::{
    ApprovalEvent, ApprovalState, DecideError, Decision, RequestError, Resolution, Scope,
    SessionGrants, DISCONNECT_REASON,
};
use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::common::{config, open, req, who, MIN};

fn approve(scope: Scope, reason: Option<&str>) -> Resolution {
    Resolution::Approve {
        scope,
        reason: reason.map(Into::into),
    }
}

fn deny(reason: Option<&str>) -> Resolution {
    Resolution::Deny {
        reason: reason.map(Into::into),
    }
}

#[tokio::test(start_paused = true)]
async fn approve_delivers_and_emits_events() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path()).await;
    let mut events = b.subscribe();
    let mut p = b
        .request(req(7, "DELETE FROM orders WHERE id = 1", MIN))
        .unwrap();
    let id = p.id().to_owned();
    assert_eq!(id.len(), 8);
    assert!(id
        .bytes()
        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));

    let listed = b.list();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, id);
    assert_eq!(listed[0].session_id, 7);
    assert!(listed[0].is_pending());

    tokio::time::advance(Duration::from_secs(2)).await;
    let d = b
        .decide(&id, &who("alice"), approve(Scope::Once, Some("ticket 42")))
        .unwrap();
    let expected = Decision::Approved {
        approver: "alice".into(),
        reason: Some("ticket 42".into()),
        scope: Scope::Once,
    };
    assert_eq!(d, expected);
    assert_eq!(p.wait().await, expected);
    assert_eq!(p.wait().await, expected, "wait is idempotent");
    assert!(b.list().is_empty());

    let ApprovalEvent::Requested { approval } = events.recv().await.unwrap() else {
        panic!("first event must be Requested")
    };
    assert_eq!(approval.id, id);
    assert_eq!(approval.rule, "prod-writes");
    assert_eq!(
        approval.identity,
        "pid 123 uid 0 (root) exe /usr/bin/psql job 42"
    );
    let ApprovalEvent::Decided { approval } = events.recv().await.unwrap() else {
        panic!("second event must be Decided")
    };
    let ApprovalState::Decided {
        decision,
        waited_ms,
        ..
    } = approval.state
    else {
        panic!("decided state expected")
    };
    assert_eq!(decision, expected);
    assert_eq!(waited_ms, 2000);
    // `show` still answers after the decision.
    assert!(!b.get(&id).unwrap().is_pending());
}

#[tokio::test(start_paused = true)]
async fn deny_with_reason() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path()).await;
    let mut p = b.request(req(1, "DROP TABLE cards", MIN)).unwrap();
    let id = p.id().to_owned();
    b.decide(&id, &who("bob"), deny(Some("never in prod\n\u{1b}[2J")))
        .unwrap();
    let d = p.wait().await;
    assert_eq!(
        d,
        Decision::Denied {
            approver: "bob".into(),
            reason: Some("never in prod [2J".into()),
        }
    );
    assert_eq!(d.summary(), "denied by bob: never in prod [2J");
}

#[tokio::test(start_paused = true)]
async fn timeout_resolves_waiter() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path()).await;
    let mut events = b.subscribe();
    let mut p = b
        .request(req(1, "UPDATE t SET a = 1", Duration::from_secs(300)))
        .unwrap();
    let started = tokio::time::Instant::now();
    assert_eq!(
        p.wait().await,
        Decision::TimedOut {
            timeout_ms: 300_000
        }
    );
    assert_eq!(started.elapsed(), Duration::from_secs(300));
    assert!(b.list().is_empty());
    // A late approval is refused.
    let late = b.decide(p.id(), &who("alice"), approve(Scope::Once, None));
    assert!(matches!(
        late,
        Err(DecideError::AlreadyDecided {
            decision: Decision::TimedOut { .. },
            ..
        })
    ));
    events.recv().await.unwrap();
    let ev = events.recv().await.unwrap();
    assert!(matches!(ev, ApprovalEvent::Decided { .. }));
}

#[tokio::test(start_paused = true)]
async fn timeout_fires_without_a_waiter() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path()).await;
    let mut events = b.subscribe();
    let p = b
        .request(req(1, "UPDATE t SET a = 1", Duration::from_secs(5)))
        .unwrap();
    let _ = events.recv().await.unwrap();
    // Nobody polls `p`; the broker's own timer ends the request.
    let ev = events.recv().await.unwrap();
    let ApprovalState::Decided {
        decision,
        waited_ms,
        ..
    } = &ev.approval().state
    else {
        panic!("decided expected")
    };
    assert_eq!(*decision, Decision::TimedOut { timeout_ms: 5000 });
    assert_eq!(*waited_ms, 5000);
    assert_eq!(b.pending_count(), 0);
    drop(p);
    // Dropping after the timeout records nothing more.
    assert!(events.try_recv().is_err());
}

#[tokio::test(start_paused = true)]
async fn cancel_and_decision_after_cancel() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path()).await;
    let mut p = b.request(req(1, "DELETE FROM t", MIN)).unwrap();
    let id = p.id().to_owned();
    let d = p.cancel("session cancelled by client");
    assert_eq!(
        d,
        Decision::Cancelled {
            reason: "session cancelled by client".into()
        }
    );
    assert_eq!(p.wait().await, d);
    let e = b
        .decide(&id, &who("alice"), approve(Scope::Once, None))
        .unwrap_err();
    assert!(matches!(e, DecideError::AlreadyDecided { .. }), "{e}");
}

#[tokio::test(start_paused = true)]
async fn cancel_after_approval_reports_the_approval() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path()).await;
    let mut p = b.request(req(1, "DELETE FROM t", MIN)).unwrap();
    b.decide(p.id(), &who("alice"), approve(Scope::Once, None))
        .unwrap();
    assert!(p.cancel("too late").is_approved());
}

#[tokio::test(start_paused = true)]
async fn drop_is_client_disconnect() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path()).await;
    let mut events = b.subscribe();
    let p = b.request(req(3, "DELETE FROM t", MIN)).unwrap();
    let id = p.id().to_owned();
    drop(p);
    let _ = events.recv().await.unwrap();
    let ev = events.recv().await.unwrap();
    let ApprovalState::Decided { decision, .. } = &ev.approval().state else {
        panic!("decided expected")
    };
    assert_eq!(
        *decision,
        Decision::Cancelled {
            reason: DISCONNECT_REASON.into()
        }
    );
    assert!(b.list().is_empty());
    assert!(matches!(
        b.decide(&id, &who("alice"), deny(None)),
        Err(DecideError::AlreadyDecided { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn double_decision_refused() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path()).await;
    let mut p = b.request(req(1, "DELETE FROM t", MIN)).unwrap();
    let id = p.id().to_owned();
    b.decide(&id, &who("alice"), deny(Some("no"))).unwrap();
    let e = b
        .decide(&id, &who("mallory"), approve(Scope::Session, None))
        .unwrap_err();
    let DecideError::AlreadyDecided { decision, .. } = &e else {
        panic!("{e}")
    };
    assert_eq!(decision.approver(), Some("alice"));
    assert!(e.to_string().contains("denied by alice"), "{e}");
    assert!(!p.wait().await.is_approved());
}

#[tokio::test(start_paused = true)]
async fn unknown_id_and_empty_approver() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path()).await;
    assert!(matches!(
        b.decide("deadbeef", &who("alice"), deny(None)),
        Err(DecideError::UnknownId(_))
    ));
    assert!(b.get("deadbeef").is_none());
    let p = b.request(req(1, "DELETE FROM t", MIN)).unwrap();
    assert!(matches!(
        b.decide(p.id(), &who(" \u{7} "), deny(None)),
        Err(DecideError::InvalidApprover)
    ));
    assert_eq!(b.pending_count(), 1);
}

#[tokio::test(start_paused = true)]
async fn session_scope_grants() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path()).await;
    let mut grants = SessionGrants::new();
    let r = req(1, "DELETE FROM t WHERE id = 5", MIN);
    let normalized = r.normalized.clone();
    assert!(!grants.is_granted(&normalized));
    let mut p = b.request(r).unwrap();
    b.decide(p.id(), &who("alice"), approve(Scope::Session, None))
        .unwrap();
    let d = p.wait().await;
    assert!(grants.apply(&d, &normalized));
    assert!(grants.is_granted(&normalized));
    // Same shape, other literal: granted; other statement: not.
    let r2 = req(1, "DELETE FROM t WHERE id = 6", MIN);
    assert!(grants.is_granted(&r2.normalized));
    assert!(!grants.is_granted(&req(1, "DELETE FROM u", MIN).normalized));

    // A once-approval adds nothing.
    let mut p = b.request(req(1, "TRUNCATE x", MIN)).unwrap();
    b.decide(p.id(), &who("alice"), approve(Scope::Once, None))
        .unwrap();
    assert!(!grants.apply(&p.wait().await, "TRUNCATE x"));
    assert!(!grants.is_granted("TRUNCATE x"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_concurrent_requests_each_get_their_own_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path()).await;
    let mut ids = Vec::new();
    let mut tasks = Vec::new();
    for i in 0..10u64 {
        let mut p = b
            .request(req(i, &format!("DELETE FROM t{i}"), MIN))
            .unwrap();
        ids.push((i, p.id().to_owned()));
        tasks.push(tokio::spawn(async move { (i, p.wait().await) }));
    }
    let unique: std::collections::HashSet<_> = ids.iter().map(|(_, id)| id.clone()).collect();
    assert_eq!(unique.len(), 10, "ids are unique");
    let mut order = ids.clone();
    order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(0x5EED));
    for (i, id) in &order {
        let res = if i % 2 == 0 {
            approve(Scope::Once, Some(&format!("ok {i}")))
        } else {
            deny(Some(&format!("no {i}")))
        };
        b.decide(id, &who(&format!("approver{i}")), res).unwrap();
        tokio::task::yield_now().await;
    }
    for t in tasks {
        let (i, d) = t.await.unwrap();
        assert_eq!(d.approver(), Some(format!("approver{i}").as_str()));
        if i % 2 == 0 {
            assert!(d.is_approved());
            assert_eq!(d.reason(), Some(format!("ok {i}").as_str()));
        } else {
            assert!(!d.is_approved());
            assert_eq!(d.reason(), Some(format!("no {i}").as_str()));
        }
    }
    assert_eq!(b.pending_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn other_sessions_unaffected_by_a_held_statement() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path()).await;
    let mut held = b.request(req(1, "DELETE FROM a", MIN)).unwrap();
    let mut other = b.request(req(2, "DELETE FROM b", MIN)).unwrap();
    b.decide(other.id(), &who("alice"), approve(Scope::Once, None))
        .unwrap();
    assert!(other.wait().await.is_approved());
    assert_eq!(b.list().len(), 1);
    assert_eq!(b.list()[0].session_id, 1);
    b.decide(held.id(), &who("alice"), deny(None)).unwrap();
    assert!(!held.wait().await.is_approved());
}

#[tokio::test(start_paused = true)]
async fn pending_limit_fails_closed() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.max_pending = 2;
    let (b, _) = dbwarden_approvals::Broker::open(cfg).await.unwrap();
    let _a = b.request(req(1, "x", MIN)).unwrap();
    let _b = b.request(req(2, "y", MIN)).unwrap();
    assert!(matches!(
        b.request(req(3, "z", MIN)),
        Err(RequestError::TooManyPending { limit: 2 })
    ));
}

#[tokio::test(start_paused = true)]
async fn hostile_text_is_cleaned_and_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path()).await;
    let mut r = req(1, "", MIN);
    r.statement = format!(
        "SELECT 1\u{1b}]8;;http://evil\u{7}\u{202E}{}",
        "x".repeat(10_000)
    );
    r.identity_summary = "pid 1 exe /tmp/\u{1b}[31mpsql\nFAKE LOG LINE".into();
    let p = b.request(r).unwrap();
    let v = b.get(p.id()).unwrap();
    assert!(!v.statement.contains('\u{1b}'));
    assert!(!v.statement.contains('\u{202E}'));
    assert!(v.statement.contains("truncated"));
    assert!(v.statement.chars().count() < 4100);
    assert_eq!(v.identity, "pid 1 exe /tmp/[31mpsql FAKE LOG LINE");
}

#[tokio::test(start_paused = true)]
async fn cancel_all_for_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path()).await;
    let mut p1 = b.request(req(1, "x", MIN)).unwrap();
    let mut p2 = b.request(req(2, "y", MIN)).unwrap();
    assert_eq!(b.cancel_all("daemon shutting down"), 2);
    for p in [&mut p1, &mut p2] {
        assert_eq!(
            p.wait().await,
            Decision::Cancelled {
                reason: "daemon shutting down".into()
            }
        );
    }
}
