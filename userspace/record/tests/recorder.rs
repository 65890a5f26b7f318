//! Recorder thread: blocking and dropping behaviour, gaps, flush timing.

mod common;
use common::*;
use dbwarden_record::*;
use std::io::{self, Write};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;
use time::OffsetDateTime;

/// A sink whose writes can be held at a gate, to fill the recorder's queue
/// deterministically.
#[derive(Clone)]
struct GatedSink {
    data: Arc<Mutex<Vec<u8>>>,
    gate: Arc<(Mutex<bool>, Condvar)>,
    entered: mpsc::SyncSender<()>,
}

impl Write for GatedSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let _ = self.entered.try_send(());
        let (m, c) = &*self.gate;
        let mut open = m.lock().unwrap();
        while !*open {
            open = c.wait(open).unwrap();
        }
        self.data.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
impl Sink for GatedSink {}

fn gated() -> (GatedSink, mpsc::Receiver<()>) {
    let (tx, rx) = mpsc::sync_channel(1000);
    (
        GatedSink {
            data: Arc::default(),
            gate: Arc::new((Mutex::new(true), Condvar::new())),
            entered: tx,
        },
        rx,
    )
}

fn set_gate(s: &GatedSink, open: bool) {
    *s.gate.0.lock().unwrap() = open;
    s.gate.1.notify_all();
}

fn note(i: u64) -> RecordBody {
    RecordBody::Notice(Notice {
        stmt: Some(i),
        severity: "NOTICE".into(),
        message: format!("n{i}"),
    })
}

#[test]
fn drop_mode_records_a_counted_gap() {
    let (sink, entered) = gated();
    let w = SessionWriter::new(sink.clone(), header(1), key(1), cfg()).unwrap();
    while entered.try_recv().is_ok() {}
    let rec = Recorder::start(
        w,
        RecorderConfig {
            queue: 2,
            on_full: OnFull::Drop,
        },
    )
    .unwrap();
    set_gate(&sink, false);
    rec.record(note(0)).unwrap();
    rec.flush().unwrap();
    entered.recv_timeout(Duration::from_secs(10)).unwrap(); // writer now stuck in write
    let mut dropped = 0;
    for i in 1..=20 {
        if rec.record(note(i)).unwrap() == Recorded::Dropped {
            dropped += 1;
        }
    }
    assert_eq!(dropped, 18, "queue of 2 holds 2 records");
    assert_eq!(rec.pending_dropped(), 18);
    // try_record never blocks and hands the record back.
    match rec.try_record(note(99)) {
        Err(TryRecordError::Full(b)) => assert_eq!(*b, note(99)),
        other => panic!("{other:?}"),
    }
    rec.note_dropped(1);
    set_gate(&sink, true);
    let sum = rec.finish("done").unwrap();
    assert_eq!(sum.totals.dropped, 19);
    let data = sink.data.lock().unwrap().clone();
    let s = read_session_bytes(std::path::Path::new("x"), &data).unwrap();
    let gaps: Vec<u64> = s
        .records
        .iter()
        .filter_map(|r| {
            if let RecordBody::Gap(g) = &r.body {
                Some(g.dropped)
            } else {
                None
            }
        })
        .collect();
    assert_eq!(gaps.iter().sum::<u64>(), 19, "{gaps:?}");
    let mut out = Vec::new();
    show(&mut out, &s).unwrap();
    assert!(String::from_utf8(out)
        .unwrap()
        .contains("records dropped here"));
    assert!(check(&data, &[key(1).public_key().clone()]).is_ok());
}

#[test]
fn block_mode_loses_nothing() {
    let (sink, _entered) = gated();
    let w = SessionWriter::new(sink.clone(), header(2), key(1), cfg()).unwrap();
    let rec = Recorder::start(
        w,
        RecorderConfig {
            queue: 4,
            on_full: OnFull::Block,
        },
    )
    .unwrap();
    for i in 0..500 {
        assert_eq!(rec.record(note(i)).unwrap(), Recorded::Queued);
    }
    let sum = rec.finish("done").unwrap();
    assert_eq!(sum.records, 1 + 500 + 2);
    let data = sink.data.lock().unwrap().clone();
    let r = check(&data, &[key(1).public_key().clone()]);
    assert!(r.is_ok(), "{r}");
    assert_eq!(r.records, 503);
}

#[test]
fn writer_thread_flushes_within_the_interval() {
    let (sink, _entered) = gated();
    let w = SessionWriter::new(
        sink.clone(),
        header(3),
        key(1),
        WriterConfig {
            flush_interval: Duration::from_millis(100),
            fsync: false,
            ..WriterConfig::default()
        },
    )
    .unwrap();
    let before = sink.data.lock().unwrap().len();
    let rec = Recorder::start(w, RecorderConfig::default()).unwrap();
    rec.record(note(1)).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while sink.data.lock().unwrap().len() == before {
        assert!(
            std::time::Instant::now() < deadline,
            "no segment written within 5 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let data = sink.data.lock().unwrap().clone();
    let r = check(&data, &[key(1).public_key().clone()]);
    assert_eq!(
        r.outcome,
        Outcome::Unsealed {
            last_record: Some(1),
            partial_tail: None
        }
    );
    drop(rec);
}

struct FailingSink {
    writes: usize,
}
impl Write for FailingSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writes += 1;
        if self.writes > 1 {
            return Err(io::Error::other("disk full"));
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
impl Sink for FailingSink {}

#[test]
fn write_failure_fails_closed() {
    let w = SessionWriter::new(FailingSink { writes: 0 }, header(4), key(1), cfg()).unwrap();
    let rec = Recorder::start(
        w,
        RecorderConfig {
            queue: 1,
            on_full: OnFull::Block,
        },
    )
    .unwrap();
    rec.record(note(1)).unwrap();
    rec.flush().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match rec.record(note(2)) {
            Err(RecorderError::WriterFailed(why)) => {
                assert!(why.contains("disk full"), "{why}");
                break;
            }
            Ok(_) => assert!(
                std::time::Instant::now() < deadline,
                "failure never surfaced"
            ),
            Err(e) => panic!("{e}"),
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(rec.finish("x").is_err());
}

#[test]
fn dropped_recorder_still_seals() {
    let (sink, _entered) = gated();
    let w = SessionWriter::new(sink.clone(), header(5), key(1), cfg()).unwrap();
    let rec = Recorder::start(w, RecorderConfig::default()).unwrap();
    rec.record(note(1)).unwrap();
    drop(rec);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let data = sink.data.lock().unwrap().clone();
        let r = check(&data, &[key(1).public_key().clone()]);
        if r.is_ok() {
            let s = read_session_bytes(std::path::Path::new("x"), &data).unwrap();
            assert_eq!(s.end().unwrap().reason, "recorder dropped without finish");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{r}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A recorder whose writer has written a note and is held inside the next segment write, so
/// that everything recorded next is queued before it drains. Open the gate to go on.
fn held_recorder(id: u8, cfg: WriterConfig) -> (GatedSink, Recorder) {
    let (sink, entered) = gated();
    let w = SessionWriter::new(sink.clone(), header(id), key(1), cfg).unwrap();
    while entered.try_recv().is_ok() {}
    let rec = Recorder::start(w, RecorderConfig::default()).unwrap();
    set_gate(&sink, false);
    rec.record(note(0)).unwrap();
    rec.flush().unwrap();
    entered.recv_timeout(Duration::from_secs(5)).unwrap();
    (sink, rec)
}

#[test]
fn statement_decision_and_response_back_to_back_become_one_exchange() {
    let (sink, rec) = held_recorder(6, cfg());
    let stmt = |n: u64| {
        RecordBody::Statement(Statement {
            stmt: n,
            text: format!("SELECT {n}"),
            params: Vec::new(),
        })
    };
    let decision = |n: u64| {
        RecordBody::Decision(Decision {
            stmt: n,
            action: Action::Allow,
            rule: Some("r".into()),
            approver: None,
            tags: Vec::new(),
            message: None,
        })
    };
    let response = |n: u64, data: Vec<Vec<Option<String>>>| {
        RecordBody::Response(ResponseSummary {
            stmt: n,
            rows: Some(data.len() as u64),
            data,
            ..ResponseSummary::default()
        })
    };
    for body in [
        // Merged, decision included.
        stmt(1),
        decision(1),
        response(1, vec![vec![Some("a".into())]]),
        // Merged without a decision (an extended-protocol execute).
        stmt(2),
        response(2, Vec::new()),
        // Rows in between: separate records.
        stmt(3),
        RecordBody::Rows(Rows {
            stmt: 3,
            columns: vec!["c".into()],
            rows: vec![vec![None]],
            truncated: None,
        }),
        response(3, Vec::new()),
        // A response for another statement does not swallow the held one.
        stmt(4),
        decision(4),
        response(9, Vec::new()),
        // Still running at the end: written on its own.
        stmt(5),
    ] {
        rec.record(body).unwrap();
    }
    set_gate(&sink, true);
    let sum = rec.finish("done").unwrap();
    let data = sink.data.lock().unwrap().clone();
    let r = check(&data, &[key(1).public_key().clone()]);
    assert!(r.is_ok(), "{r}");
    let s = read_session_bytes(std::path::Path::new("mem"), &data).unwrap();
    let kinds: Vec<String> = s
        .records
        .iter()
        .map(|r| match &r.body {
            RecordBody::Exchange(x) => format!(
                "exchange {}{}",
                x.statement.stmt,
                if x.decision.is_some() { "+d" } else { "" }
            ),
            b => format!("{} {}", b.kind(), b.statement().map_or(0, |s| s.stmt)),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "header 0",
            "notice 0",
            "exchange 1+d",
            "exchange 2",
            "statement 3",
            "rows 0",
            "response 0",
            "statement 4",
            "decision 0",
            "response 0",
            "statement 5",
            "end 0",
            "seal 0",
        ],
    );
    // The response's rows obey the cap like any others, and totals count each statement once.
    let RecordBody::Exchange(x) = &s.records[2].body else {
        unreachable!()
    };
    assert_eq!(x.response.data, vec![vec![Some("a".to_owned())]]);
    assert_eq!(sum.totals.statements, 5);
    assert_eq!(sum.records, 13);
}

/// Records put through the recorder (held statements, exchanges) count exactly as the writer
/// counts them appended one by one, and the row cap cuts what it must, whichever record a
/// response ends up in.
#[test]
fn recorded_exchanges_count_and_cap_like_the_writer() {
    let cap_cfg = || WriterConfig {
        row_cap: RowCap {
            max_rows: 2,
            max_bytes: 100,
        },
        ..cfg()
    };
    let row = |v: &str| vec![Some(v.to_owned())];
    let bodies = |n: u64| {
        let stmt = RecordBody::Statement(Statement {
            stmt: n,
            text: format!("SELECT {n}"),
            params: Vec::new(),
        });
        let deny = RecordBody::Decision(Decision {
            stmt: n,
            action: Action::Deny,
            rule: None,
            approver: None,
            tags: Vec::new(),
            message: None,
        });
        let resp = |data: Vec<Vec<Option<String>>>| {
            RecordBody::Response(ResponseSummary {
                stmt: n,
                rows: Some(data.len() as u64),
                data,
                ..ResponseSummary::default()
            })
        };
        match n {
            // Three rows: over the cap, so the exchange's response is cut.
            1 => vec![stmt, resp(vec![row("a"), row("b"), row("c")])],
            // Two rows: merged, all kept.
            2 => vec![stmt, deny, resp(vec![row("a"), row("b")])],
            // Rows first, then a response carrying more: the cap already in use cuts it.
            _ => vec![
                stmt,
                RecordBody::Rows(Rows {
                    stmt: n,
                    columns: Vec::new(),
                    rows: vec![row("a"), row("b")],
                    truncated: None,
                }),
                resp(vec![row("c")]),
            ],
        }
    };
    // Through the recorder (exchanges)...
    let (sink, rec) = held_recorder(7, cap_cfg());
    for n in 1..=3 {
        for b in bodies(n) {
            rec.record(b).unwrap();
        }
    }
    set_gate(&sink, true);
    let via_recorder = rec.finish("done").unwrap().totals;
    // ...and straight into a writer.
    let mut w = SessionWriter::new(Vec::new(), header(8), key(1), cap_cfg()).unwrap();
    w.append(OffsetDateTime::now_utc(), note(0)).unwrap();
    for n in 1..=3 {
        for b in bodies(n) {
            w.append(OffsetDateTime::now_utc(), b).unwrap();
        }
    }
    let direct = w.totals();
    assert_eq!(via_recorder, direct);
    assert_eq!(
        (
            direct.statements,
            direct.denied,
            direct.rows_recorded,
            direct.rows_cut
        ),
        (3, 1, 6, 2)
    );
    let data = sink.data.lock().unwrap().clone();
    let s = read_session_bytes(std::path::Path::new("mem"), &data).unwrap();
    let kinds: Vec<&str> = s.records.iter().map(|r| r.body.kind()).collect();
    assert_eq!(
        kinds,
        [
            "header",
            "notice",
            "exchange",
            "exchange",
            "statement",
            "rows",
            "response",
            "end",
            "seal"
        ]
    );
    let cut: Vec<bool> = s
        .records
        .iter()
        .filter_map(|r| r.body.response())
        .map(|r| r.truncated.is_some())
        .collect();
    assert_eq!(cut, [true, false, true]);
}

/// A huge statement is written at once rather than held (and copied again) for an exchange.
#[test]
fn a_huge_statement_is_not_held_for_its_response() {
    let (sink, rec) = held_recorder(9, cfg());
    let text = "x".repeat(200 << 10);
    rec.record(RecordBody::Statement(Statement {
        stmt: 1,
        text: text.clone(),
        params: Vec::new(),
    }))
    .unwrap();
    rec.record(RecordBody::Response(ResponseSummary {
        stmt: 1,
        rows: Some(0),
        ..ResponseSummary::default()
    }))
    .unwrap();
    set_gate(&sink, true);
    rec.finish("done").unwrap();
    let data = sink.data.lock().unwrap().clone();
    let s = read_session_bytes(std::path::Path::new("mem"), &data).unwrap();
    let kinds: Vec<&str> = s.records.iter().map(|r| r.body.kind()).collect();
    assert_eq!(
        kinds,
        ["header", "notice", "statement", "response", "end", "seal"]
    );
    assert_eq!(s.records[2].body.statement().unwrap().text, text);
}

/// Records reach the writer in batches of about 32 KiB, whose lines it compresses into one
/// streaming frame per segment: many batches, one segment, and the file reads and verifies
/// whole.
#[test]
fn chunks_are_compressed_into_one_segment() {
    let (sink, _entered) = gated();
    let slow_clock = WriterConfig {
        flush_interval: Duration::from_secs(600),
        ..cfg()
    };
    let w = SessionWriter::new(sink.clone(), header(10), key(1), slow_clock).unwrap();
    let rec = Recorder::start(w, RecorderConfig::default()).unwrap();
    let big = |i: u64| {
        RecordBody::Notice(Notice {
            stmt: Some(i),
            severity: "NOTICE".into(),
            message: format!("{i} {}", "m".repeat(1000)),
        })
    };
    for i in 0..400 {
        rec.record(big(i)).unwrap();
    }
    let sum = rec.finish("done").unwrap();
    // The header's segment, then everything else in one (the flush interval cannot pass).
    assert_eq!(sum.segments, 2, "{sum:?}");
    assert_eq!(sum.records, 1 + 400 + 2);
    let data = sink.data.lock().unwrap().clone();
    let r = check(&data, &[key(1).public_key().clone()]);
    assert!(r.is_ok(), "{r}");
    let s = read_session_bytes(std::path::Path::new("mem"), &data).unwrap();
    assert_eq!(s.records[400].body, big(399));
}

#[test]
fn put_all_in_block_mode_appends_all_or_nothing() {
    let (sink, entered) = gated();
    let w = SessionWriter::new(sink.clone(), header(9), key(1), cfg()).unwrap();
    while entered.try_recv().is_ok() {}
    let rec = Recorder::start(
        w,
        RecorderConfig {
            queue: 3,
            ..RecorderConfig::default()
        },
    )
    .unwrap();
    set_gate(&sink, false);
    rec.record(note(0)).unwrap();
    rec.flush().unwrap();
    entered.recv_timeout(Duration::from_secs(5)).unwrap(); // writer now stuck in write
    let statement = |stmt| {
        Hot::Statement(StatementRef {
            stmt,
            text: "SELECT 1",
            params: &[],
        })
    };
    let decision = |stmt| {
        Hot::Decision(DecisionRef {
            stmt,
            action: Action::Allow,
            rule: None,
            approver: None,
            tags: &[],
            message: None,
        })
    };
    let ts = Stamp::now();
    rec.try_put_all_at(ts, &[statement(1), decision(1)])
        .unwrap();
    // Room for one more record, not two: neither is appended.
    assert!(matches!(
        rec.try_put_all_at(ts, &[statement(2), decision(2)]),
        Err(PutError::Full)
    ));
    rec.try_put_at(ts, statement(2)).unwrap();
    assert!(matches!(
        rec.try_put_at(ts, statement(3)),
        Err(PutError::Full)
    ));
    set_gate(&sink, true);
    let sum = rec.finish("done").unwrap();
    // Header, note, statement 1, its decision, statement 2, end, seal.
    assert_eq!(sum.records, 7);
    let data = sink.data.lock().unwrap().clone();
    let r = check(&data, &[key(1).public_key().clone()]);
    assert!(r.is_ok(), "{r}");
}

/// `ResponseRef::SINCE_STATEMENT`: the recorder takes a response's duration from its
/// statement's record, whether the two merge into an exchange or not, skips statements that
/// never get a response (a Parse), and records 0 for a statement it never saw.
#[test]
fn durations_since_the_statement_are_taken_by_the_recorder() {
    let (sink, rec) = held_recorder(7, cfg());
    let at = |ms: i64| Stamp::from_unix(1_800_000_000 + ms / 1000, (ms % 1000) as u32 * 1_000_000);
    let stmt = |n: u64| {
        Hot::Statement(StatementRef {
            stmt: n,
            text: "SELECT 1",
            params: &[],
        })
    };
    let response = |n: u64| {
        Hot::Response(ResponseRef {
            stmt: n,
            duration_us: ResponseRef::SINCE_STATEMENT,
            ..ResponseRef::default()
        })
    };
    let rows = RecordBody::Rows(Rows {
        stmt: 3,
        columns: vec!["c".into()],
        rows: vec![vec![None]],
        truncated: None,
    });
    // 1: an exchange, 250 ms. 2: a Parse, never answered. 3: rows in between, 1.5 s.
    // 9: never recorded as a statement.
    rec.try_put_at(at(0), stmt(1)).unwrap();
    rec.try_put_at(at(250), response(1)).unwrap();
    rec.try_put_at(at(300), stmt(2)).unwrap();
    rec.try_put_at(at(400), stmt(3)).unwrap();
    rec.record_at(at(500), rows).unwrap();
    rec.try_put_at(at(1900), response(3)).unwrap();
    rec.try_put_at(at(2000), response(9)).unwrap();
    set_gate(&sink, true);
    rec.finish("done").unwrap();
    let data = sink.data.lock().unwrap().clone();
    let s = read_session_bytes(std::path::Path::new("mem"), &data).unwrap();
    let durations: Vec<(u64, u64)> = s
        .records
        .iter()
        .filter_map(|r| match &r.body {
            RecordBody::Exchange(x) => Some((x.response.stmt, x.response.duration_us)),
            RecordBody::Response(r) => Some((r.stmt, r.duration_us)),
            _ => None,
        })
        .collect();
    assert_eq!(durations, [(1, 250_000), (3, 1_500_000), (9, 0)]);
}
