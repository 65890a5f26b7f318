//! Approver rules in the broker: self-approval, approvers in controlled cgroups, approvers
//! that cannot be verified. Approvals are refused (journaled, still pending); denials pass.

use dbwarden_approvals::approver::Refusal;
use dbwarden_approvals::{
    ApprovalEvent, ApprovalRules, Approver, Broker, CgroupResolver, DecideError, Decision,
    Resolution, Scope,
};

use crate::common::{config, req, AGENT_UID, MIN};

/// A pid the fake resolver places inside the controlled cgroup.
pub const AGENT_PID: u32 = 4242;

/// Rules with controlled cgroup `/dbwarden-agents`, where the resolver puts [`AGENT_PID`]
/// (in `/dbwarden-agents/job-7`) and every other pid in `/user.slice`.
pub fn agents_rules(allow_self_approval: bool) -> ApprovalRules {
    ApprovalRules {
        allow_self_approval,
        controlled_cgroups: vec!["/dbwarden-agents".into()],
        cgroup_of: CgroupResolver::from_fn(|pid, _uid| {
            Ok(if pid == AGENT_PID {
                "/dbwarden-agents/job-7".into()
            } else {
                "/user.slice/user-0.slice".into()
            })
        }),
    }
}

async fn open_with(dir: &std::path::Path, rules: ApprovalRules) -> Broker {
    let mut c = config(dir);
    c.rules = rules;
    Broker::open(c).await.expect("open broker").0
}

fn approve() -> Resolution {
    Resolution::Approve {
        scope: Scope::Once,
        reason: Some("looks fine".into()),
    }
}

fn deny() -> Resolution {
    Resolution::Deny {
        reason: Some("no".into()),
    }
}

fn journal(dir: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("approvals.journal"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn refused_records(dir: &std::path::Path) -> Vec<serde_json::Value> {
    journal(dir)
        .into_iter()
        .filter(|r| r["type"] == "refused")
        .collect()
}

#[tokio::test(start_paused = true)]
async fn self_approval_refused_by_default_and_journaled_deny_still_works() {
    let dir = tempfile::tempdir().unwrap();
    let b = open_with(dir.path(), ApprovalRules::default()).await;
    let mut events = b.subscribe();
    let mut p = b.request(req(1, "DELETE FROM t", MIN)).unwrap();
    let id = p.id().to_owned();
    let me = std::process::id();

    let e = b
        .decide(&id, &Approver::new("root", AGENT_UID, vec![me]), approve())
        .unwrap_err();
    assert!(
        matches!(
            e,
            DecideError::Refused(Refusal::SelfApproval { uid: AGENT_UID })
        ),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "approval refused: the approver (uid 5001) is the uid of the requesting session; \
         self-approval is disabled ([approvals] allow_self_approval)"
    );
    // Still pending, nothing delivered, no decision event.
    assert!(b.get(&id).unwrap().is_pending());
    assert_eq!(b.pending_count(), 1);
    let _requested = events.recv().await.unwrap();
    assert!(events.try_recv().is_err(), "a refusal is not a decision");

    let refused = refused_records(dir.path());
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0]["id"], id.as_str());
    assert_eq!(refused[0]["approver"], "root");
    assert_eq!(refused[0]["uid"], AGENT_UID);
    assert_eq!(refused[0]["refusal"], "self_approval");
    assert_eq!(refused[0]["message"], e.to_string().as_str());
    // The request record carries the requester's uid.
    let requested: Vec<_> = journal(dir.path())
        .into_iter()
        .filter(|r| r["type"] == "requested")
        .collect();
    assert_eq!(requested[0]["requester_uid"], AGENT_UID);

    // The same approver may deny.
    let d = b
        .decide(&id, &Approver::new("root", AGENT_UID, vec![me]), deny())
        .unwrap();
    assert_eq!(
        d,
        Decision::Denied {
            approver: "root".into(),
            reason: Some("no".into())
        }
    );
    assert_eq!(p.wait().await, d);
    assert!(matches!(
        events.recv().await.unwrap(),
        ApprovalEvent::Decided { .. }
    ));
}

#[tokio::test(start_paused = true)]
async fn self_approval_allowed_with_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let rules = ApprovalRules {
        allow_self_approval: true,
        ..ApprovalRules::default()
    };
    let b = open_with(dir.path(), rules).await;
    let mut p = b.request(req(1, "DELETE FROM t", MIN)).unwrap();
    let who = Approver::new("root", AGENT_UID, vec![std::process::id()]);
    let d = b.decide(p.id(), &who, approve()).unwrap();
    assert!(d.is_approved());
    assert_eq!(p.wait().await, d);
    assert!(refused_records(dir.path()).is_empty());
}

#[tokio::test(start_paused = true)]
async fn approver_in_a_controlled_cgroup_refused_even_with_self_approval_allowed() {
    for allow_self in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let b = open_with(dir.path(), agents_rules(allow_self)).await;
        let mut p = b.request(req(1, "DELETE FROM t", MIN)).unwrap();
        let id = p.id().to_owned();
        // uid 0 is not the requester's uid: only the cgroup stops it.
        let agent = Approver::new("root", 0, vec![AGENT_PID]);
        let e = b.decide(&id, &agent, approve()).unwrap_err();
        let DecideError::Refused(Refusal::ControlledCgroup { pid, uid, cgroup }) = &e else {
            panic!("{e:?}")
        };
        assert_eq!(
            (*pid, *uid, cgroup.as_str()),
            (4242, 0, "/dbwarden-agents/job-7")
        );
        assert!(
            e.to_string().starts_with(
                "approval refused: the approver (pid 4242, uid 0) runs in controlled cgroup \
                 /dbwarden-agents/job-7"
            ),
            "{e}"
        );
        // One holder inside is enough (a socket shared with an agent).
        let shared = Approver::new("http:ops", 0, vec![77, AGENT_PID]);
        assert!(matches!(
            b.decide(&id, &shared, approve()),
            Err(DecideError::Refused(Refusal::ControlledCgroup { .. }))
        ));
        assert!(b.get(&id).unwrap().is_pending());
        let refused = refused_records(dir.path());
        assert_eq!(refused.len(), 2);
        assert!(refused.iter().all(|r| r["refusal"] == "controlled_cgroup"));
        assert_eq!(refused[1]["approver"], "http:ops");

        // An operator outside the cgroup approves.
        let ops = Approver::new("root", 0, vec![77]);
        assert!(b.decide(&id, &ops, approve()).unwrap().is_approved());
        assert!(p.wait().await.is_approved());
    }
}

#[tokio::test(start_paused = true)]
async fn agent_in_a_controlled_cgroup_may_deny() {
    let dir = tempfile::tempdir().unwrap();
    let b = open_with(dir.path(), agents_rules(false)).await;
    let mut p = b.request(req(1, "DELETE FROM t", MIN)).unwrap();
    let agent = Approver::new("root", AGENT_UID, vec![AGENT_PID]);
    let d = b.decide(p.id(), &agent, deny()).unwrap();
    assert_eq!(p.wait().await, d);
    assert!(!d.is_approved());
    assert!(refused_records(dir.path()).is_empty());
}

#[tokio::test(start_paused = true)]
async fn unverifiable_approvers_fail_closed() {
    let dir = tempfile::tempdir().unwrap();
    let mut rules = agents_rules(false);
    rules.cgroup_of = CgroupResolver::from_fn(|pid, _| {
        if pid == 99 {
            Err("/proc/99/cgroup: No such file or directory".into())
        } else {
            Ok("/".into())
        }
    });
    let b = open_with(dir.path(), rules).await;
    let mut p = b.request(req(1, "DELETE FROM t", MIN)).unwrap();
    let id = p.id().to_owned();
    for (who, needle) in [
        (
            Approver::unverified("http:bot", "no local socket found"),
            "cannot verify the approving process (no local socket found)",
        ),
        (
            Approver::new("root", 0, vec![99]),
            "cannot verify the approving process (/proc/99/cgroup: No such file or directory)",
        ),
        (
            Approver::new("root", 0, vec![]),
            "no approving process found",
        ),
    ] {
        let e = b.decide(&id, &who, approve()).unwrap_err();
        assert!(
            matches!(e, DecideError::Refused(Refusal::Unverifiable(_))),
            "{e:?}"
        );
        assert!(e.to_string().contains(needle), "{e}");
    }
    assert_eq!(refused_records(dir.path()).len(), 3);
    assert!(refused_records(dir.path())
        .iter()
        .all(|r| r["refusal"] == "unverifiable"));
    // Unknown ids are still reported as unknown, not refused.
    assert!(matches!(
        b.decide("0badf00d", &Approver::unverified("x", "?"), approve()),
        Err(DecideError::UnknownId(_))
    ));
    let d = b
        .decide(&id, &Approver::unverified("http:bot", "?"), deny())
        .unwrap();
    assert_eq!(p.wait().await, d);
}

#[tokio::test]
async fn refused_request_is_still_an_orphan_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let b = open_with(dir.path(), ApprovalRules::default()).await;
    let p = b.request(req(1, "DELETE FROM t", MIN)).unwrap();
    let id = p.id().to_owned();
    assert!(b
        .decide(&id, &Approver::new("root", AGENT_UID, vec![1]), approve())
        .is_err());
    std::mem::forget(p);
    drop(b);
    let (_b2, orphans) = Broker::open(config(dir.path())).await.unwrap();
    assert_eq!(orphans.len(), 1);
    assert_eq!(orphans[0].id, id);
}
