//! What recording costs the machine per statement: a `pgbench -S`-like session (statement,
//! decision, one-row response, as the daemon hands them over) pushed through a [`Recorder`]
//! into a real file, counting the process's CPU time — the session's side and the writer
//! thread's serialisation, hashing, compression, signing and writes together.
//!
//! On a busy 2-core runner this CPU comes straight out of the database's and the proxy's
//! share, so it is the figure that decides the TPS cost of recording. Run with
//! `cargo bench -p dbwarden-record --bench recorder`.

use dbwarden_record::{
    Action, DecisionRef, HostKey, Hot, Identity, Recorder, RecorderConfig, ResponseRef, RowBuf,
    RowsRef, SessionHeader, SessionId, SessionWriter, StatementRef, WriterConfig,
};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;
use time::OffsetDateTime;

const STATEMENTS: u64 = 400_000;

fn header() -> SessionHeader {
    SessionHeader {
        session_id: SessionId([9; 16]),
        start: OffsetDateTime::now_utc(),
        identity: Identity {
            pid: 4242,
            uid: 1001,
            user: Some("ci".into()),
            cgroup: "/dbwarden.slice/agents".into(),
            exe: "/usr/bin/pgbench".into(),
            cmdline: vec!["pgbench".into(), "-S".into()],
            labels: BTreeMap::new(),
            privileged: false,
            capabilities: Vec::new(),
        },
        client_addr: "127.0.0.1:50000".into(),
        original_dst: "127.0.0.1:5432".into(),
        protocol: "postgres".into(),
        database: Some("bench".into()),
        db_user: Some("postgres".into()),
        daemon_version: "0.1.0".into(),
        policy_hash: "sha256:abc".into(),
    }
}

/// CPU time of this process (all threads, exited ones included), seconds.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rsplit_once(") ").map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    #[allow(clippy::cast_precision_loss)] // tick counts are small
    let s = ticks as f64 / 100.0;
    s
}

fn main() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let file = std::fs::File::create(dir.path().join("bench.dbws"))
        .unwrap_or_else(|e| panic!("create: {e}"));
    let key = Arc::new(HostKey::from_seed([5; 32]));
    let cfg = WriterConfig {
        zstd_level: 1,
        ..WriterConfig::default()
    };
    let w = SessionWriter::new(file, header(), key, cfg).unwrap_or_else(|e| panic!("writer: {e}"));
    let rec = Recorder::start(w, RecorderConfig::default()).unwrap_or_else(|e| panic!("{e}"));
    let columns = vec!["abalance".to_owned()];
    let mut rows = RowBuf::default();
    let mut text = String::new();
    let (cpu0, t0) = (cpu_seconds(), Instant::now());
    for stmt in 1..=STATEMENTS {
        text.clear();
        text.push_str("SELECT abalance FROM pgbench_accounts WHERE aid = ");
        text.push_str(&(stmt * 7919 % 1_000_000).to_string());
        text.push(';');
        let items = [
            Hot::Statement(StatementRef {
                stmt,
                text: &text,
                params: &[],
            }),
            Hot::Decision(DecisionRef {
                stmt,
                action: Action::Allow,
                rule: Some("default"),
                approver: None,
                tags: &[],
                message: None,
            }),
        ];
        for item in items {
            put(&rec, item);
        }
        rows.clear();
        rows.push_str(&(stmt % 5000).to_string());
        rows.end_row();
        put(
            &rec,
            Hot::Response(ResponseRef {
                stmt,
                columns: &columns,
                rows: Some(1),
                command_tag: Some("SELECT 1"),
                duration_us: 150 + stmt % 100,
                error: None,
                data: RowsRef::buf(&rows),
                truncated: None,
            }),
        );
    }
    let summary = rec
        .finish("bench done")
        .unwrap_or_else(|e| panic!("finish: {e}"));
    let (cpu, wall) = (cpu_seconds() - cpu0, t0.elapsed().as_secs_f64());
    let bytes = std::fs::metadata(dir.path().join("bench.dbws")).map_or(0, |m| m.len());
    #[allow(clippy::cast_precision_loss)] // small counts
    let n = STATEMENTS as f64;
    println!(
        "recorder: {STATEMENTS} pgbench-like statements ({} records): {:.2} µs CPU per statement \
         (session and writer thread), {:.2} µs wall; {:.1} bytes per statement on disk",
        summary.records,
        cpu * 1e6 / n,
        wall * 1e6 / n,
        bytes as f64 / n
    );
}

fn put(rec: &Recorder, item: Hot<'_>) {
    loop {
        match rec.try_put(item) {
            Ok(_) => return,
            Err(dbwarden_record::PutError::Full) => rec
                .wait_for_room()
                .unwrap_or_else(|e| panic!("recorder: {e}")),
            Err(e) => panic!("recorder: {e:?}"),
        }
    }
}
