//! Shared helpers.

use std::time::Duration;

use dbwarden_approvals::{ApprovalRequest, Approver, Broker, BrokerConfig};

/// Uid of the sessions filed by [`req`]: nobody in these tests approves with it unless a test
/// means to.
pub const AGENT_UID: u32 = 5001;

pub fn req(session_id: u64, statement: &str, timeout: Duration) -> ApprovalRequest {
    ApprovalRequest {
        session_id,
        rule: "prod-writes".into(),
        statement: statement.into(),
        normalized: statement.replace(|c: char| c.is_ascii_digit(), "?"),
        identity_summary: "pid 123 uid 0 (root) exe /usr/bin/psql job 42".into(),
        target: "postgres 127.0.0.1:5432 db=shop".into(),
        requester_uid: AGENT_UID,
        timeout,
    }
}

/// An approver named `name`: this test process, uid 1000 (not [`AGENT_UID`]).
pub fn who(name: &str) -> Approver {
    Approver::new(name, 1000, vec![std::process::id()])
}

pub fn config(dir: &std::path::Path) -> BrokerConfig {
    let mut c = BrokerConfig::new(dir);
    // Tests do not need durability against power loss.
    c.fsync_journal = false;
    c
}

pub async fn open(dir: &std::path::Path) -> Broker {
    let (b, orphans) = Broker::open(config(dir)).await.expect("open broker");
    assert!(orphans.is_empty(), "fresh dir has no orphans");
    b
}

pub const MIN: Duration = Duration::from_secs(60);

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}
