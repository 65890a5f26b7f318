//! Writer throughput: a realistic `pgbench -S`-like record stream appended
//! through a [`SessionWriter`] (zstd level 1 as the daemon uses, no fsync),
//! reported as records per second.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use dbwarden_record::{
    Action, Decision, HostKey, Identity, RecordBody, ResponseSummary, SessionHeader, SessionId,
    SessionWriter, Statement, WriterConfig,
};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::io;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;

fn header() -> SessionHeader {
    let mut labels = BTreeMap::new();
    labels.insert("agent".to_owned(), "claude".to_owned());
    SessionHeader {
        session_id: SessionId([7; 16]),
        start: OffsetDateTime::now_utc(),
        identity: Identity {
            pid: 4242,
            uid: 1001,
            user: Some("ci".into()),
            cgroup: "/dbwarden.slice/agents".into(),
            exe: "/usr/bin/python3".into(),
            cmdline: vec!["python3".into(), "agent.py".into()],
            labels,
            privileged: false,
            capabilities: Vec::new(),
        },
        client_addr: "127.0.0.1:50000".into(),
        original_dst: "127.0.0.1:5432".into(),
        protocol: "postgresql".into(),
        database: Some("shop".into()),
        db_user: Some("app".into()),
        daemon_version: "0.1.0".into(),
        policy_hash: "sha256:abc".into(),
    }
}

/// The records of one `pgbench -S` statement in simple mode: the statement, the decision, and
/// the response carrying its one row (prepared executions have no decision record).
fn statement(stmt: u64) -> [RecordBody; 3] {
    [
        RecordBody::Statement(Statement {
            stmt,
            text: "SELECT abalance FROM pgbench_accounts WHERE aid = $1 /* bench */".into(),
            params: vec![Some("48213".into())],
        }),
        RecordBody::Decision(Decision {
            stmt,
            action: Action::Allow,
            rule: Some("default".into()),
            approver: None,
            tags: Vec::new(),
            message: None,
        }),
        RecordBody::Response(ResponseSummary {
            stmt,
            columns: vec!["abalance".into()],
            rows: Some(1),
            command_tag: Some("SELECT 1".into()),
            duration_us: 183,
            error: None,
            data: vec![vec![Some("-2719".into())]],
            truncated: None,
        }),
    ]
}

fn config(zstd_level: i32) -> WriterConfig {
    WriterConfig {
        zstd_level,
        fsync: false,
        flush_interval: Duration::from_secs(3600),
        ..WriterConfig::default()
    }
}

/// Compressed bytes per record at `level` (printed beside the timings, so a
/// level change can be judged on both cost and size).
fn bytes_per_record(key: &Arc<HostKey>, level: i32) -> f64 {
    const STATEMENTS: u64 = 20_000;
    let ts = OffsetDateTime::now_utc();
    let mut w = SessionWriter::new(Vec::new(), header(), Arc::clone(key), config(level))
        .unwrap_or_else(|e| panic!("writer: {e}"));
    for stmt in 1..=STATEMENTS {
        for r in statement(stmt) {
            w.append(ts, r).unwrap_or_else(|e| panic!("append: {e}"));
        }
    }
    let file = w.into_inner();
    #[allow(clippy::cast_precision_loss)] // small counts
    let per = file.len() as f64 / (STATEMENTS * 4) as f64;
    per
}

fn bench_writer(c: &mut Criterion) {
    let key = Arc::new(HostKey::from_seed([3; 32]));
    let mut g = c.benchmark_group("writer");
    g.throughput(Throughput::Elements(4));
    // Level 1 is what the daemon uses; -1 shows what zstd's fast mode would buy.
    for level in [1, -1] {
        eprintln!(
            "zstd level {level}: {:.1} compressed bytes per record",
            bytes_per_record(&key, level)
        );
        let mut w = SessionWriter::new(io::sink(), header(), Arc::clone(&key), config(level))
            .unwrap_or_else(|e| panic!("writer: {e}"));
        let mut stmt = 0u64;
        let ts = OffsetDateTime::now_utc();
        g.bench_function(format!("append_statement_4_records/zstd_{level}"), |b| {
            b.iter_batched(
                || {
                    stmt += 1;
                    statement(stmt)
                },
                |recs| {
                    for r in recs {
                        w.append(black_box(ts), r)
                            .unwrap_or_else(|e| panic!("append: {e}"));
                    }
                },
                BatchSize::SmallInput,
            );
        });
    }
    g.finish();
}

criterion_group!(benches, bench_writer);
criterion_main!(benches);
