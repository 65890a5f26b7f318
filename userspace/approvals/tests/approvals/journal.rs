//! Restart behaviour: requests pending when the daemon died come back once as orphans.

use std::time::Duration;

use dbwarden_approvals::{Broker, Decision, Resolution, Scope, RESTART_REASON};

use crate::common::{config, open, req, who};

#[tokio::test]
async fn pending_requests_become_orphans_once() {
    let dir = tempfile::tempdir().unwrap();
    let long = Duration::from_secs(3600);
    {
        let b = open(dir.path()).await;
        let decided = b.request(req(1, "DELETE FROM a", long)).unwrap();
        b.decide(
            decided.id(),
            &who("alice"),
            Resolution::Approve {
                scope: Scope::Once,
                reason: None,
            },
        )
        .unwrap();
        let orphan = b
            .request(req(2, "DELETE FROM b WHERE id = 9", long))
            .unwrap();
        let orphan_id = orphan.id().to_owned();
        // Simulate a crash: the session never gets to drop its PendingApproval, so no
        // `decided` record is written for it.
        std::mem::forget(orphan);
        drop(decided);
        drop(b);

        let (b2, orphans) = Broker::open(config(dir.path())).await.unwrap();
        assert_eq!(orphans.len(), 1, "{orphans:?}");
        let o = &orphans[0];
        assert_eq!(o.id, orphan_id);
        assert_eq!(o.session_id, 2);
        assert_eq!(o.statement, "DELETE FROM b WHERE id = 9");
        assert_eq!(o.rule, "prod-writes");
        assert!(o.requested_at_ms > 0);
        assert_eq!(
            o.decision,
            Decision::Cancelled {
                reason: RESTART_REASON.into()
            }
        );
        // New ids never repeat journaled ones.
        let p = b2.request(req(3, "x", long)).unwrap();
        assert_ne!(p.id(), orphan_id);
    }
    // The new request above was dropped (cancelled) and journaled as such: nothing left.
    let (_b3, orphans) = Broker::open(config(dir.path())).await.unwrap();
    assert!(orphans.is_empty(), "{orphans:?}");
    let text = std::fs::read_to_string(dir.path().join("approvals.journal")).unwrap();
    assert_eq!(text.matches("\"type\":\"requested\"").count(), 3);
    assert_eq!(text.matches("\"type\":\"decided\"").count(), 3);
}
