//! Bytes on disk per statement for a typical stream (printed; run with
//! `--nocapture` to see the numbers). Asserts a generous upper bound so a
//! format regression that bloats files is noticed.

mod common;
use common::*;
use dbwarden_record::*;
use std::sync::Arc;
use std::time::Duration;

fn measure(statements: u64, per_segment: u64, with_rows: bool) -> f64 {
    let k = key(1);
    let mut w = SessionWriter::new(Vec::new(), header(1), Arc::clone(&k), cfg()).unwrap();
    let mut ts = T0;
    for i in 1..=statements {
        for b in statement_records(i) {
            if !with_rows && matches!(b, RecordBody::Rows(_)) {
                continue;
            }
            ts += Duration::from_micros(1500);
            w.append(ts, b).unwrap();
        }
        if i % per_segment == 0 {
            w.flush_segment().unwrap();
        }
    }
    w.seal(ts, "bye").unwrap();
    let empty = {
        let mut e = SessionWriter::new(Vec::new(), header(1), Arc::clone(&k), cfg()).unwrap();
        e.seal(T0, "bye").unwrap();
        e.into_inner().len()
    };
    (w.into_inner().len() - empty) as f64 / statements as f64
}

#[test]
fn bytes_per_statement() {
    // ~100 statements per 1-second segment (a busy agent) and 10 (a slow one).
    let busy = measure(2000, 100, false);
    let slow = measure(500, 10, false);
    let busy_rows = measure(2000, 100, true);
    eprintln!(
        "bytes/statement on disk (statement+decision+response): {busy:.0} at 100 stmts/segment, {slow:.0} at 10 stmts/segment; \
         with one masked 3-column row: {busy_rows:.0}"
    );
    assert!(busy < 400.0, "{busy}");
    assert!(slow < 600.0, "{slow}");
}
