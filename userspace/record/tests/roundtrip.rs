//! Write → read → verify → render, on a session spanning many segments.

mod common;
use common::*;
use dbwarden_record::*;
use std::sync::Arc;

#[test]
fn many_records_many_segments_round_trip() {
    let k = key(1);
    let data = build(&k, 1, 200, 7, true);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.dbws");
    std::fs::write(&path, &data).unwrap();

    let mut calls = 0;
    let r = verify_with_progress(&path, &[k.public_key().clone()], &mut |p| {
        calls += 1;
        assert!(p.done <= p.total);
    });
    assert_eq!(r.outcome, Outcome::Ok, "{r}");
    assert!(r.sealed);
    assert!(r.segments > 25, "{} segments", r.segments);
    assert!(calls as u64 >= r.segments);
    assert_eq!(r.key_ids, vec![k.key_id()]);

    let s = read_session(&path).unwrap();
    assert!(s.sealed && s.notes.is_empty(), "{:?}", s.notes);
    assert_eq!(s.records.len() as u64, r.records);
    for (i, rec) in s.records.iter().enumerate() {
        assert_eq!(rec.n, i as u64);
    }
    assert_eq!(s.header, header(1));
    let end = s.end().unwrap();
    assert_eq!(end.totals.statements, 200);
    assert_eq!(end.totals.denied, 40);
    assert_eq!(end.reason, "client closed");

    let mut out = Vec::new();
    show(&mut out, &s).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains("SELECT id, pan, holder FROM cards WHERE id = $1 /* 17 */"),
        "{text}"
    );
    assert!(text.contains("  -> ALLOW (rule read-cards) [pci]"));
    assert!(text.contains("  -> DENY (rule no-bulk) [pci]: denied by rule no-bulk"));
    assert!(
        text.contains(" id |       pan        | holder\n----+------------------+--------\n"),
        "{text}"
    );
    assert!(text.contains(" 17 | 411111******1111 | J. Doe"));
    assert!(text.contains("(1 row)"));
    assert!(text.contains("-- sealed:"));
    assert!(text.contains("ci_job=job-1"));

    let mut out = Vec::new();
    let mut last = None;
    export_jsonl(&mut out, &s, &mut |p| last = Some(p)).unwrap();
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), s.records.len());
    let first: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(first["type"], "header");
    assert_eq!(first["identity"]["user"], "ci");
    let back: Record = serde_json::from_str(lines[5]).unwrap();
    assert_eq!(back, s.records[5]);
    assert_eq!(last.unwrap().done, s.records.len() as u64);
}

#[test]
fn verifies_on_another_machine_with_exported_key_only() {
    let k = key(2);
    let data = build(&k, 2, 10, 3, true);
    let exported = k.public_key_pem();
    let trusted = PublicKey::parse(&exported).unwrap();
    assert!(check(&data, &[trusted]).is_ok());
    // Nothing trusted ⇒ unknown key, never "OK because the file says so".
    let r = check(&data, &[]);
    assert_eq!(
        r.outcome,
        Outcome::UnknownKey {
            segment: 0,
            key_id: k.key_id()
        }
    );
}

#[test]
fn stock_zstd_decoder_reads_the_payload() {
    let k = key(3);
    let data = build(&k, 3, 5, 2, true);
    // Skippable frames are skipped by any conforming decoder.
    let text = zstd::stream::decode_all(&data[..]).unwrap();
    let text = String::from_utf8(text).unwrap();
    assert!(text.lines().count() > 10);
    assert!(text.contains("\"type\":\"seal\""));
}

#[test]
fn replay_paces_by_recorded_time() {
    let k = key(4);
    let data = build(&k, 4, 3, 1, true);
    let s = read_session_bytes(std::path::Path::new("x"), &data).unwrap();
    let steps: Vec<_> = replay(&s, 2.0, std::time::Duration::from_secs(5)).collect();
    assert_eq!(steps[0].0, std::time::Duration::ZERO);
    // Records are 10 ms apart; at 2x speed that is 5 ms.
    assert!(
        steps
            .iter()
            .any(|(d, _)| *d == std::time::Duration::from_millis(5)),
        "{steps:?}"
    );
    let joined: String = steps.iter().map(|(_, t)| t.as_str()).collect();
    let mut shown = Vec::new();
    show(&mut shown, &s).unwrap();
    assert_eq!(joined.as_bytes(), &shown[..]);
}

/// A writer (host key and header `id`) keeping at most `max_rows` rows per statement.
fn capped_writer(id: u8, max_rows: u64) -> SessionWriter<Vec<u8>> {
    let cfg = WriterConfig {
        row_cap: RowCap {
            max_rows,
            max_bytes: 1 << 20,
        },
        fsync: false,
        ..WriterConfig::default()
    };
    SessionWriter::new(Vec::new(), header(id), key(id), cfg).unwrap()
}

#[test]
fn row_cap_truncates_and_says_so() {
    let mut w = capped_writer(5, 3);
    let batch = |n: usize| {
        RecordBody::Rows(Rows {
            stmt: 1,
            columns: vec!["n".into()],
            rows: (0..n).map(|i| vec![Some(i.to_string())]).collect(),
            truncated: None,
        })
    };
    w.append(
        T0,
        RecordBody::Statement(Statement {
            stmt: 1,
            text: "SELECT n".into(),
            params: vec![],
        }),
    )
    .unwrap();
    w.append(T0, batch(2)).unwrap();
    w.append(T0, batch(2)).unwrap();
    w.append(T0, batch(5)).unwrap();
    let sum = w.seal(T0, "done").unwrap();
    assert_eq!(sum.totals.rows_recorded, 3);
    assert_eq!(sum.totals.rows_cut, 6);
    let s = read_session_bytes(std::path::Path::new("x"), &w.into_inner()).unwrap();
    let rows: Vec<&Rows> = s
        .records
        .iter()
        .filter_map(|r| {
            if let RecordBody::Rows(r) = &r.body {
                Some(r)
            } else {
                None
            }
        })
        .collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1].rows.len(), 1);
    assert_eq!(
        rows[1].truncated,
        Some(Truncation {
            after_rows: 3,
            after_bytes: 3,
            cap_rows: 3,
            cap_bytes: 1 << 20
        })
    );
    let mut out = Vec::new();
    show(&mut out, &s).unwrap();
    assert!(String::from_utf8(out)
        .unwrap()
        .contains("recording truncated after 3 rows / 3 bytes"));
}

/// A small result rides in its response record: the cap applies to it, `show` prints the
/// table, and a later Rows batch of another statement starts its own table.
#[test]
fn rows_carried_by_the_response_are_capped_and_shown() {
    let mut w = capped_writer(7, 2);
    for stmt in [1, 2] {
        w.append(
            T0,
            RecordBody::Statement(Statement {
                stmt,
                text: format!("SELECT n -- {stmt}"),
                params: vec![],
            }),
        )
        .unwrap();
        let n = if stmt == 1 { 2 } else { 3 };
        w.append(
            T0,
            RecordBody::Response(ResponseSummary {
                stmt,
                columns: vec!["n".into()],
                rows: Some(n),
                command_tag: Some(format!("SELECT {n}")),
                data: (0..n).map(|i| vec![Some(format!("v{stmt}{i}"))]).collect(),
                ..ResponseSummary::default()
            }),
        )
        .unwrap();
    }
    let sum = w.seal(T0, "done").unwrap();
    assert_eq!(sum.totals.rows_recorded, 4);
    assert_eq!(sum.totals.rows_cut, 1);
    let s = read_session_bytes(std::path::Path::new("x"), &w.into_inner()).unwrap();
    let resp: Vec<&ResponseSummary> = s
        .records
        .iter()
        .filter_map(|r| match &r.body {
            RecordBody::Response(r) => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(resp.len(), 2);
    assert_eq!(resp[0].data.len(), 2);
    assert_eq!(resp[0].truncated, None);
    assert_eq!(resp[1].data.len(), 2);
    assert_eq!(resp[1].truncated.map(|t| t.after_rows), Some(2));
    let mut out = Vec::new();
    show(&mut out, &s).unwrap();
    let out = String::from_utf8(out).unwrap();
    for want in [
        "v10",
        "v11",
        "v20",
        "v21",
        "(2 rows)",
        "(3 rows)",
        "recording truncated after 2 rows",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    assert!(!out.contains("v22"), "{out}");
    // The column header is printed once per statement.
    assert_eq!(
        out.matches(" n \n").count() + out.matches(" n\n").count(),
        2,
        "{out}"
    );
}

#[test]
fn writer_refuses_writer_only_records_and_writes_after_seal() {
    let k = key(6);
    let mut w = SessionWriter::new(Vec::new(), header(6), k, cfg()).unwrap();
    assert!(matches!(
        w.append(T0, RecordBody::Header(Box::new(header(6)))),
        Err(RecordError::InvalidRecord(_))
    ));
    w.seal(T0, "x").unwrap();
    let e = w
        .append(T0, RecordBody::Gap(Gap { dropped: 1 }))
        .unwrap_err();
    assert!(matches!(e, RecordError::Closed(_)), "{e}");
}

#[test]
fn hostile_text_is_neutralised_in_show() {
    let k = key(7);
    let mut w = SessionWriter::new(Vec::new(), header(7), k, cfg()).unwrap();
    w.append(
        T0,
        RecordBody::Statement(Statement {
            stmt: 1,
            text: "SELECT '\x1b]0;pwned\x07'".into(),
            params: vec![],
        }),
    )
    .unwrap();
    w.seal(T0, "x").unwrap();
    let s = read_session_bytes(std::path::Path::new("x"), &w.into_inner()).unwrap();
    let mut out = Vec::new();
    show(&mut out, &s).unwrap();
    assert!(!out.contains(&0x1b) && !out.contains(&0x07));
}

#[test]
fn list_with_filters() {
    let dir = tempfile::tempdir().unwrap();
    let k = key(8);
    let store = SessionStore::open(dir.path().join("sessions"), Arc::clone(&k)).unwrap();
    for id in 1..=3u8 {
        let mut h = header(id);
        if id == 3 {
            h.identity.user = Some("alice".into());
            h.original_dst = "10.0.0.9:3306".into();
            h.protocol = "mysql".into();
        }
        let mut w = store.create(h, cfg()).unwrap();
        for b in statement_records(4) {
            w.append(T0, b).unwrap();
        }
        w.seal(T0, "bye").unwrap();
    }
    let mut out = Vec::new();
    list_dir(store.dir(), &ListFilter::default(), &mut out).unwrap();
    let all = String::from_utf8(out).unwrap();
    assert!(all.contains("(3 sessions)"), "{all}");
    assert!(all.contains("ci python3 job=job-1"), "{all}");
    let f = ListFilter {
        identity: vec![ListFilter::parse_identity("user=alice").unwrap()],
        ..ListFilter::default()
    };
    let mut out = Vec::new();
    list_dir(store.dir(), &f, &mut out).unwrap();
    let one = String::from_utf8(out).unwrap();
    assert!(
        one.contains("(1 session)") && one.contains("mysql://app@10.0.0.9:3306/shop"),
        "{one}"
    );
    let f = ListFilter {
        identity: vec![("ci_job".into(), "job-2".into())],
        target: Some("5432".into()),
        since: Some(T0 + std::time::Duration::from_secs(2)),
    };
    let mut out = Vec::new();
    list_dir(store.dir(), &f, &mut out).unwrap();
    let one = String::from_utf8(out).unwrap();
    assert!(
        one.contains("(1 session)") && one.contains("job=job-2"),
        "{one}"
    );
    assert!(ListFilter::parse_identity("novalue").is_err());
}

#[test]
fn privileged_identity_is_shown_in_the_header_and_filterable() {
    let dir = tempfile::tempdir().unwrap();
    let k = key(10);
    let store = SessionStore::open(dir.path().join("sessions"), Arc::clone(&k)).unwrap();
    for id in 1..=2u8 {
        let mut h = header(id);
        if id == 2 {
            h.identity.uid = 0;
            h.identity.user = None;
            h.identity.privileged = true;
            h.identity.capabilities = vec!["cap_sys_admin".into(), "cap_bpf\u{1b}[2J".into()];
        }
        let mut w = store.create(h, cfg()).unwrap();
        w.seal(T0, "bye").unwrap();
    }
    let texts: Vec<String> = std::fs::read_dir(store.dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "dbws"))
        .map(|f| {
            let s = read_session(&f).unwrap();
            let mut out = Vec::new();
            show(&mut out, &s).unwrap();
            String::from_utf8(out).unwrap()
        })
        .collect();
    let root = texts.iter().find(|t| t.contains("uid=0 ")).unwrap();
    let user = texts.iter().find(|t| t.contains("uid=1001 ")).unwrap();
    assert!(
        root.contains("\n-- privileged: yes (capabilities: cap_sys_admin, cap_bpf\\u{1b}[2J)\n"),
        "{root}"
    );
    assert!(user.contains("\n-- privileged: no\n"), "{user}");
    let f = ListFilter {
        identity: vec![ListFilter::parse_identity("privileged=true").unwrap()],
        ..ListFilter::default()
    };
    let mut out = Vec::new();
    list_dir(store.dir(), &f, &mut out).unwrap();
    let one = String::from_utf8(out).unwrap();
    assert!(
        one.contains("(1 session)") && one.contains("uid:0"),
        "{one}"
    );
}

#[test]
fn pan_scan_helper_finds_unmasked_pans_only() {
    let dir = tempfile::tempdir().unwrap();
    let k = key(9);
    let clean = build(&k, 9, 50, 10, true);
    let p = dir.path().join("clean.dbws");
    std::fs::write(&p, clean).unwrap();
    assert_eq!(scan_session_file(&p).unwrap(), vec![]);

    let mut w = SessionWriter::new(Vec::new(), header(10), k, cfg()).unwrap();
    w.append(
        T0,
        RecordBody::Notice(Notice {
            stmt: None,
            severity: "NOTICE".into(),
            message: "key 4111111111111111 exists".into(),
        }),
    )
    .unwrap();
    w.seal(T0, "x").unwrap();
    let p = dir.path().join("dirty.dbws");
    std::fs::write(&p, w.into_inner()).unwrap();
    let hits = scan_session_file(&p).unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].last4, "1111");
}

/// An exchange record reads exactly like its statement, decision and response written as
/// separate records: same transcript, same list line.
#[test]
fn exchange_renders_like_its_parts() {
    let k = key(1);
    let ts = time::macros::datetime!(2026-11-26 08:00:00 UTC);
    let stmt = Statement {
        stmt: 1,
        text: "SELECT pan FROM cards WHERE id = $1".into(),
        params: vec![Some("7".into())],
    };
    let decision = Decision {
        stmt: 1,
        action: Action::Deny,
        rule: Some("no-pan".into()),
        approver: None,
        tags: vec!["pci".into()],
        message: Some("denied".into()),
    };
    let response = ResponseSummary {
        stmt: 1,
        columns: vec!["pan".into()],
        rows: Some(1),
        command_tag: Some("SELECT 1".into()),
        duration_us: 120,
        error: None,
        data: vec![vec![Some("411111******1111".into())]],
        truncated: None,
    };
    let write = |bodies: Vec<RecordBody>| {
        let mut w = SessionWriter::new(Vec::new(), header(9), Arc::clone(&k), cfg()).unwrap();
        for b in bodies {
            w.append(ts, b).unwrap();
        }
        w.seal(ts, "done").unwrap();
        let data = w.into_inner();
        read_session_bytes(std::path::Path::new("s.dbws"), &data).unwrap()
    };
    let parts = write(vec![
        RecordBody::Statement(stmt.clone()),
        RecordBody::Decision(decision.clone()),
        RecordBody::Response(response.clone()),
    ]);
    let merged = write(vec![RecordBody::Exchange(Box::new(Exchange {
        statement: stmt,
        decision: Some(decision),
        response,
    }))]);
    let text = |s: &Session| {
        let mut out = Vec::new();
        show(&mut out, s).unwrap();
        String::from_utf8(out).unwrap()
    };
    // Identical but for the record count on the seal line (3 records against 5).
    let body = |s: &Session| {
        text(s)
            .lines()
            .filter(|l| !l.starts_with("-- sealed:"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(body(&merged), body(&parts));
    assert!(
        text(&merged).contains("-- sealed: 3 records"),
        "{}",
        text(&merged)
    );
    assert!(
        text(&merged).contains("411111******1111"),
        "{}",
        text(&merged)
    );
    let (a, b) = (summarize(&merged), summarize(&parts));
    assert_eq!((a.statements, a.denied), (b.statements, b.denied));
    assert_eq!((a.statements, a.denied), (1, 1));
    assert_eq!(merged.end().unwrap().totals.statements, 1);
    assert_eq!(merged.end().unwrap().totals.denied, 1);
}
