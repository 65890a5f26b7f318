//! A writer that dies mid-session leaves a readable file that verifies as
//! "unsealed after record N".

mod common;
use common::*;
use dbwarden_record::*;
use std::sync::Arc;

#[test]
fn dropped_writer_flushes_but_does_not_seal() {
    let k = key(1);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.dbws");
    let f = std::fs::File::create(&path).unwrap();
    let mut w = SessionWriter::new(f, header(1), Arc::clone(&k), cfg()).unwrap();
    for i in 1..=3 {
        for b in statement_records(i) {
            w.append(T0, b).unwrap();
        }
    }
    let n = w.records();
    drop(w);
    let r = verify(&path, &[k.public_key().clone()]);
    assert_eq!(
        r.outcome,
        Outcome::Unsealed {
            last_record: Some(n - 1),
            partial_tail: None
        },
        "{r}"
    );
    let s = read_session(&path).unwrap();
    assert!(!s.sealed);
    assert_eq!(s.records.len() as u64, n);
    assert!(
        s.notes.iter().any(|x| x.contains("ended abnormally")),
        "{:?}",
        s.notes
    );
    let mut out = Vec::new();
    show(&mut out, &s).unwrap();
    assert!(String::from_utf8(out).unwrap().contains("UNSEALED"));
}

#[test]
fn forgotten_writer_loses_only_unflushed_records() {
    let k = key(1);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.dbws");
    let f = std::fs::File::create(&path).unwrap();
    let mut w = SessionWriter::new(f, header(1), Arc::clone(&k), cfg()).unwrap();
    for b in statement_records(1) {
        w.append(T0, b).unwrap();
    }
    w.flush_segment().unwrap();
    let flushed = w.records();
    for b in statement_records(2) {
        w.append(T0, b).unwrap();
    }
    std::mem::forget(w); // no Drop: like a crash
    let r = verify(&path, &[k.public_key().clone()]);
    assert_eq!(
        r.outcome,
        Outcome::Unsealed {
            last_record: Some(flushed - 1),
            partial_tail: None
        },
        "{r}"
    );
}

/// Child half of `aborted_process_leaves_verifiable_file`: only does something
/// when the parent sets `DBW_CRASH_FILE`.
#[test]
fn crash_child_helper() {
    let Ok(path) = std::env::var("DBW_CRASH_FILE") else {
        return;
    };
    let k = key(1);
    let f = std::fs::File::create(&path).unwrap();
    let cfg = WriterConfig {
        flush_interval: std::time::Duration::ZERO,
        fsync: false,
        ..WriterConfig::default()
    };
    let rec = Recorder::start(
        SessionWriter::new(f, header(1), k, cfg).unwrap(),
        RecorderConfig::default(),
    )
    .unwrap();
    for i in 1..=5 {
        for b in statement_records(i) {
            rec.record(b).unwrap();
        }
    }
    rec.flush().unwrap();
    // Give the writer thread time to write, then die hard (no unwinding, no Drop).
    std::thread::sleep(std::time::Duration::from_millis(500));
    std::process::abort();
}

#[test]
fn aborted_process_leaves_verifiable_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.dbws");
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash_child_helper",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("DBW_CRASH_FILE", &path)
        .stderr(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "child should have aborted");
    let k = key(1);
    let r = verify(&path, &[k.public_key().clone()]);
    // 1 header + 5 statements (4 records each except none denied here) were written.
    let expected: u64 = 1
        + (1..=5)
            .map(|i| statement_records(i).len() as u64)
            .sum::<u64>();
    assert_eq!(
        r.outcome,
        Outcome::Unsealed {
            last_record: Some(expected - 1),
            partial_tail: None
        },
        "{r}"
    );
    let s = read_session(&path).unwrap();
    assert_eq!(s.records.len() as u64, expected);
}
