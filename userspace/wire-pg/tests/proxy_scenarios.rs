//! State machine scenarios, one per test, driven as plain synchronous calls: the test plays
//! both the client and the PostgreSQL server.

mod common;

use bytes::Bytes;
use common::*;
use dbwarden_wire_pg::backend::CopyResponse;
use dbwarden_wire_pg::frontend::{Bind, FunctionCall, Target};
use dbwarden_wire_pg::proxy::{
    ClientAction, ClientEvent, Outcome, ProxyError, ResultFormats, ServerEvent, ServerOutput,
    Verdict,
};
use dbwarden_wire_pg::{
    BackendKeyData, BackendMessage, ErrorResponse, Format, FrontendMessage, NoticeResponse,
    TransactionStatus,
};

fn q(sql: &str) -> FrontendMessage {
    FrontendMessage::Query { sql: sql.into() }
}

fn parse(name: &str, sql: &str) -> FrontendMessage {
    FrontendMessage::Parse {
        name: name.into(),
        query: sql.into(),
        param_types: vec![],
    }
}

fn bind(portal: &str, stmt: &str, result_formats: Vec<i16>) -> FrontendMessage {
    FrontendMessage::Bind(Bind {
        portal: portal.into(),
        statement: stmt.into(),
        param_formats: vec![],
        params: vec![Some(Bytes::from_static(b"7"))],
        result_formats,
    })
}

fn exec(portal: &str) -> FrontendMessage {
    FrontendMessage::Execute {
        portal: portal.into(),
        max_rows: 0,
    }
}

fn rfq(s: TransactionStatus) -> BackendMessage {
    BackendMessage::ReadyForQuery(s)
}

fn cc(tag: &str) -> BackendMessage {
    BackendMessage::CommandComplete { tag: tag.into() }
}

fn server_error(code: &str, msg: &str) -> BackendMessage {
    BackendMessage::ErrorResponse(ErrorResponse::new("ERROR", code, msg))
}

/// Feeds a DataRow and returns its context.
fn row_ctx(
    h: &mut Harness,
    values: &[Option<&[u8]>],
) -> std::sync::Arc<dbwarden_wire_pg::proxy::ResultContext> {
    match h.server(data_row(values)).output {
        ServerOutput::DataRow { context, row } => {
            assert_eq!(row.len(), values.len());
            context
        }
        other => panic!("expected a DataRow, got {other:?}"),
    }
}

#[test]
fn startup_replaces_backend_key_and_reports_the_real_one() {
    let mut p = dbwarden_wire_pg::proxy::Proxy::new(dbwarden_wire_pg::proxy::ProxyConfig::new(
        NONCE,
        proxy_key(),
    ))
    .unwrap();
    let mut buf = bytes::BytesMut::new();
    dbwarden_wire_pg::Startup::Params {
        major: 3,
        minor: 2,
        params: vec![("user".into(), "a".into())],
    }
    .encode(&mut buf)
    .unwrap();
    p.client_message(buf.freeze()).unwrap();
    let real = BackendKeyData {
        pid: 99,
        secret_key: Bytes::from(vec![1u8; 32]),
    };
    let step = p
        .server_message(enc_b(&BackendMessage::BackendKeyData(real.clone())))
        .unwrap();
    let ServerOutput::Forward(out) = step.output else {
        panic!("forward expected")
    };
    // Protocol 3.2: the full 32-byte proxy key goes to the client.
    assert_eq!(
        BackendMessage::parse(&out).unwrap(),
        BackendMessage::BackendKeyData(proxy_key())
    );
    assert_eq!(p.server_key(), Some(&real));
    assert!(
        matches!(&step.events[0], ServerEvent::BackendKey { server, client } if *server == real && *client == proxy_key())
    );

    // Protocol 3.0 (the harness): the client gets a 4-byte secret.
    let h = Harness::ready();
    assert_eq!(
        h.p.server_key().unwrap().secret_key,
        Bytes::from_static(b"real")
    );
    assert_eq!(h.p.transaction_status(), Some(TransactionStatus::Idle));
}

#[test]
fn negotiate_protocol_version_downgrades_the_key() {
    let mut p = dbwarden_wire_pg::proxy::Proxy::new(dbwarden_wire_pg::proxy::ProxyConfig::new(
        NONCE,
        proxy_key(),
    ))
    .unwrap();
    let mut buf = bytes::BytesMut::new();
    dbwarden_wire_pg::Startup::Params {
        major: 3,
        minor: 2,
        params: vec![],
    }
    .encode(&mut buf)
    .unwrap();
    p.client_message(buf.freeze()).unwrap();
    p.server_message(enc_b(&BackendMessage::NegotiateProtocolVersion {
        newest_minor: 0,
        unrecognized: vec![],
    }))
    .unwrap();
    assert_eq!(p.protocol_minor(), 0);
    let step = p
        .server_message(enc_b(&BackendMessage::BackendKeyData(BackendKeyData {
            pid: 1,
            secret_key: Bytes::from_static(b"abcd"),
        })))
        .unwrap();
    let ServerOutput::Forward(out) = step.output else {
        panic!()
    };
    let BackendMessage::BackendKeyData(k) = BackendMessage::parse(&out).unwrap() else {
        panic!()
    };
    assert_eq!(k.secret_key.len(), 4);
}

#[test]
fn simple_query_with_several_result_sets() {
    let mut h = Harness::ready();
    let out = h.send(q("SELECT id FROM a; SELECT pan FROM cards"));
    assert_eq!(
        FrontendMessage::parse(&out).unwrap(),
        q("SELECT id FROM a; SELECT pan FROM cards")
    );

    h.server(BackendMessage::RowDescription(row_desc(
        &[("id", 23)],
        Format::Text,
    )));
    let c1 = row_ctx(&mut h, &[Some(b"1")]);
    assert_eq!(c1.field(0).unwrap().name, "id");
    let done = h.server(cc("SELECT 1"));
    assert_eq!(
        completed(&done),
        vec![(1, Outcome::Command("SELECT 1".into()))]
    );

    h.server(BackendMessage::RowDescription(row_desc(
        &[("pan", 25)],
        Format::Text,
    )));
    let c2 = row_ctx(&mut h, &[Some(b"4111111111111111")]);
    let c2b = row_ctx(&mut h, &[Some(b"5500000000000004")]);
    assert_eq!(c2.field(0).unwrap().name, "pan");
    assert_eq!(c2.field(0).unwrap().type_oid, 25);
    assert_eq!(c2.format(0), Some(Format::Text));
    assert_eq!(
        c2.sql.as_deref(),
        Some("SELECT id FROM a; SELECT pan FROM cards")
    );
    assert!(
        std::sync::Arc::ptr_eq(&c2, &c2b),
        "one context per result set"
    );
    h.server(cc("SELECT 2"));
    let z = h.server(rfq(TransactionStatus::Idle));
    assert_eq!(
        z.events,
        vec![ServerEvent::ReadyForQuery(TransactionStatus::Idle)]
    );
    assert_eq!(h.p.outstanding(), 0);
}

#[test]
fn extended_parse_bind_describe_execute_sync() {
    let mut h = Harness::ready();
    h.send(parse("", "SELECT id, pan FROM cards WHERE id = $1"));
    let step = h.client(bind("", "", vec![1]));
    match step.event {
        Some(ClientEvent::Bind { sql, bind, .. }) => {
            assert_eq!(
                sql.as_deref(),
                Some("SELECT id, pan FROM cards WHERE id = $1")
            );
            assert_eq!(bind.params, vec![Some(Bytes::from_static(b"7"))]);
        }
        other => panic!("expected Bind event, got {other:?}"),
    }
    h.send(FrontendMessage::Describe {
        kind: Target::Portal,
        name: String::new(),
    });
    let step = h.client(exec(""));
    assert!(
        matches!(step.event, Some(ClientEvent::Execute { sql: Some(ref s), .. }) if s.contains("FROM cards"))
    );
    h.send(FrontendMessage::Sync);
    assert_eq!(h.p.outstanding(), 5);

    assert_eq!(
        completed(&h.server(BackendMessage::ParseComplete)),
        vec![(1, Outcome::Parsed)]
    );
    h.server(BackendMessage::BindComplete);
    h.server(BackendMessage::RowDescription(row_desc(
        &[("id", 23), ("pan", 20)],
        Format::Binary,
    )));
    let ctx = row_ctx(
        &mut h,
        &[
            Some(b"\0\0\0\x01"),
            Some(&4_111_111_111_111_111i64.to_be_bytes()),
        ],
    );
    assert_eq!(ctx.format(1), Some(Format::Binary));
    assert_eq!(ctx.field(1).unwrap().name, "pan");
    assert_eq!(ctx.request.0, 4, "rows belong to the Execute");
    assert_eq!(
        completed(&h.server(cc("SELECT 1"))),
        vec![(4, Outcome::Command("SELECT 1".into()))]
    );
    h.server(rfq(TransactionStatus::Idle));
    assert_eq!(h.p.outstanding(), 0);
}

#[test]
fn prepared_statement_reexecuted_without_describe_in_binary() {
    let mut h = Harness::ready();
    // Prepare once with Describe S (what tokio-postgres and pgbench -M prepared do).
    h.send(parse("s1", "SELECT pan, cvv FROM cards WHERE id = $1"));
    h.send(FrontendMessage::Describe {
        kind: Target::Statement,
        name: "s1".into(),
    });
    h.send(FrontendMessage::Sync);
    h.server(BackendMessage::ParseComplete);
    h.server(BackendMessage::ParameterDescription { types: vec![23] });
    h.server(BackendMessage::RowDescription(row_desc(
        &[("pan", 20), ("cvv", 25)],
        Format::Text,
    )));
    h.server(rfq(TransactionStatus::Idle));

    // Execute it twice later, binary results, no Describe.
    for round in 0..2 {
        let step = h.client(bind("", "s1", vec![1]));
        assert!(matches!(
            step.event,
            Some(ClientEvent::Bind { sql: Some(_), .. })
        ));
        h.send(exec(""));
        h.send(FrontendMessage::Sync);
        h.server(BackendMessage::BindComplete);
        let ctx = row_ctx(
            &mut h,
            &[Some(&4_111_111_111_111_111i64.to_be_bytes()), Some(b"123")],
        );
        assert_eq!(ctx.field(0).unwrap().name, "pan", "round {round}");
        assert_eq!(ctx.field(0).unwrap().type_oid, 20);
        assert_eq!(ctx.format(0), Some(Format::Binary));
        assert_eq!(ctx.format(1), Some(Format::Binary));
        assert_eq!(
            ctx.sql.as_deref(),
            Some("SELECT pan, cvv FROM cards WHERE id = $1")
        );
        h.server(cc("SELECT 1"));
        h.server(rfq(TransactionStatus::Idle));
    }

    // Per-column formats from Bind are combined with the remembered description.
    h.send(bind("", "s1", vec![1, 0]));
    h.send(exec(""));
    h.send(FrontendMessage::Sync);
    h.server(BackendMessage::BindComplete);
    let ctx = row_ctx(&mut h, &[Some(b"12345678"), Some(b"123")]);
    assert_eq!(
        ctx.formats,
        ResultFormats::PerColumn(vec![Format::Binary, Format::Text].into())
    );
    assert_eq!(ctx.field(1).unwrap().name, "cvv");
}

#[test]
fn pipelining_with_three_syncs_outstanding() {
    let mut h = Harness::ready();
    let sqls = ["SELECT a FROM t1", "SELECT b FROM t2", "SELECT c FROM t3"];
    for (i, sql) in sqls.iter().enumerate() {
        h.send(parse("", sql));
        h.send(bind("", "", vec![(i % 2) as i16]));
        h.send(FrontendMessage::Describe {
            kind: Target::Portal,
            name: String::new(),
        });
        h.send(exec(""));
        h.send(FrontendMessage::Sync);
    }
    assert_eq!(h.p.outstanding(), 15);
    let cols = ["a", "b", "c"];
    for (i, sql) in sqls.iter().enumerate() {
        let fmt = if i % 2 == 0 {
            Format::Text
        } else {
            Format::Binary
        };
        h.server(BackendMessage::ParseComplete);
        h.server(BackendMessage::BindComplete);
        h.server(BackendMessage::RowDescription(row_desc(
            &[(cols[i], 25)],
            fmt,
        )));
        let ctx = row_ctx(&mut h, &[Some(b"v")]);
        assert_eq!(ctx.sql.as_deref(), Some(*sql));
        assert_eq!(ctx.field(0).unwrap().name, cols[i]);
        assert_eq!(ctx.format(0), Some(fmt));
        h.server(cc("SELECT 1"));
        h.server(rfq(TransactionStatus::Idle));
        assert_eq!(h.p.outstanding(), 15 - 5 * (i + 1));
    }
}

#[test]
fn refusal_of_second_parse_in_a_pipeline() {
    let mut h = Harness::ready();
    h.send(parse("ok", "SELECT 1"));
    h.send(bind("", "ok", vec![]));
    h.send(exec(""));
    let marker = h.refuse(parse("bad", "SELECT pan FROM cards"), "no-pan");
    // The marker keeps the statement name and carries the marker identifier as its text.
    assert_eq!(
        FrontendMessage::parse(&marker).unwrap(),
        FrontendMessage::Parse {
            name: "bad".into(),
            query: h.p.marker().into(),
            param_types: vec![]
        }
    );
    assert!(h.p.marker().starts_with("dbwarden_refused_"));
    h.send(bind("", "bad", vec![]));
    h.send(exec(""));
    h.send(FrontendMessage::Sync);
    // A later batch, already pipelined.
    h.send(parse("", "SELECT name FROM users"));
    h.send(bind("", "", vec![]));
    h.send(FrontendMessage::Describe {
        kind: Target::Portal,
        name: String::new(),
    });
    h.send(exec(""));
    h.send(FrontendMessage::Sync);

    h.server(BackendMessage::ParseComplete);
    h.server(BackendMessage::BindComplete);
    // The Describe the proxy put before the Execute.
    h.server(BackendMessage::RowDescription(row_desc(
        &[("?column?", 23)],
        Format::Text,
    )));
    h.server(data_row(&[Some(b"1")]));
    h.server(cc("SELECT 1"));
    // The server fails on the marker and discards the rest of the batch.
    let step = h.server(h.marker_error());
    assert_eq!(error_code(&step), Some("42501".into()));
    let ServerOutput::Error(e) = &step.output else {
        panic!()
    };
    assert!(e.message().unwrap().contains("no-pan"));
    assert!(!e.message().unwrap().contains(h.p.marker()));
    let outcomes = completed(&step);
    assert_eq!(outcomes[0].1, Outcome::Refused);
    assert_eq!(
        outcomes.len(),
        3,
        "refused Parse + skipped Bind and Execute: {outcomes:?}"
    );
    assert!(outcomes[1..].iter().all(|(_, o)| *o == Outcome::Skipped));
    h.server(rfq(TransactionStatus::Idle));

    // The next batch is unaffected.
    h.server(BackendMessage::ParseComplete);
    h.server(BackendMessage::BindComplete);
    h.server(BackendMessage::RowDescription(row_desc(
        &[("name", 25)],
        Format::Text,
    )));
    let ctx = row_ctx(&mut h, &[Some(b"alice")]);
    assert_eq!(ctx.sql.as_deref(), Some("SELECT name FROM users"));
    h.server(cc("SELECT 1"));
    h.server(rfq(TransactionStatus::Idle));
    assert_eq!(h.p.outstanding(), 0);
}

#[test]
fn refusal_dropped_when_an_earlier_message_already_failed() {
    let mut h = Harness::ready();
    h.send(parse("s1", "SELECT $1::int"));
    h.send(bind("", "s1", vec![]));
    h.send(exec(""));
    h.refuse(parse("s2", "DELETE FROM cards"), "no-delete");
    h.send(FrontendMessage::Sync);

    h.server(BackendMessage::ParseComplete);
    // Bind fails: the server never reaches the marker.
    let step = h.server(server_error(
        "22P02",
        "invalid input syntax for type integer",
    ));
    assert_eq!(
        error_code(&step),
        Some("22P02".into()),
        "the server's own error reaches the client"
    );
    let outcomes = completed(&step);
    assert!(
        matches!(outcomes[0].1, Outcome::Error { ref code, .. } if code.as_deref() == Some("22P02"))
    );
    assert!(outcomes[1..].iter().all(|(_, o)| *o == Outcome::Skipped));
    assert_eq!(
        outcomes.len(),
        3,
        "Execute and the refused Parse are skipped"
    );
    h.server(rfq(TransactionStatus::Idle));
    assert_eq!(h.p.outstanding(), 0);

    // A later genuine syntax error is not mistaken for a refusal.
    h.send(q("SELEC 1"));
    let step = h.server(server_error("42601", "syntax error at or near \"SELEC\""));
    assert_eq!(error_code(&step), Some("42601".into()));
    h.server(rfq(TransactionStatus::Idle));
}

#[test]
fn simple_query_refusal() {
    let mut h = Harness::ready();
    h.send(q("BEGIN"));
    h.server(cc("BEGIN"));
    h.server(rfq(TransactionStatus::InTransaction));
    let out = h.refuse(q("SELECT pan FROM cards"), "no-pan");
    assert_eq!(FrontendMessage::parse(&out).unwrap(), q(h.p.marker()));
    let step = h.server(h.marker_error());
    assert_eq!(error_code(&step), Some("42501".into()));
    assert_eq!(completed(&step), vec![(2, Outcome::Refused)]);
    // The server's transaction state is authoritative: the block is now failed, as it would be
    // after any error.
    let z = h.server(rfq(TransactionStatus::Failed));
    assert!(matches!(z.output, ServerOutput::Forward(_)));
    assert_eq!(h.p.transaction_status(), Some(TransactionStatus::Failed));
}

#[test]
fn function_call_refused_and_allowed() {
    let mut h = Harness::ready();
    let call = FrontendMessage::FunctionCall(FunctionCall {
        oid: 764,
        arg_formats: vec![],
        args: vec![],
        result_format: 1,
    });
    let out = h.refuse(call.clone(), "no-fastpath");
    assert_eq!(FrontendMessage::parse(&out).unwrap(), q(h.p.marker()));
    assert_eq!(
        error_code(&h.server(h.marker_error())),
        Some("42501".into())
    );
    h.server(rfq(TransactionStatus::Idle));

    let out = h.send(call.clone());
    assert_eq!(out, enc_f(&call));
    let step = h.server(BackendMessage::FunctionCallResponse {
        value: Some(Bytes::from_static(b"4111111111111111")),
    });
    assert!(matches!(
        step.output,
        ServerOutput::FunctionResult {
            format: Some(Format::Binary),
            ..
        }
    ));
    h.server(rfq(TransactionStatus::Idle));
    assert_eq!(h.p.outstanding(), 0);
}

#[test]
fn copy_out_context() {
    let mut h = Harness::ready();
    h.send(q("COPY cards TO STDOUT"));
    h.server(BackendMessage::CopyOutResponse(CopyResponse {
        format: Format::Text,
        column_formats: vec![Format::Text; 2],
    }));
    for line in [&b"1\t4111111111111111\n"[..], b"2\t5500000000000004\n"] {
        match h
            .server(BackendMessage::CopyData(Bytes::copy_from_slice(line)))
            .output
        {
            ServerOutput::CopyData { data, context, raw } => {
                assert_eq!(&data[..], line);
                assert_eq!(raw.len(), line.len() + 5);
                assert_eq!(context.column_formats.len(), 2);
                assert_eq!(context.format, Format::Text);
                assert_eq!(context.sql.as_deref(), Some("COPY cards TO STDOUT"));
                assert!(!context.both);
            }
            other => panic!("expected CopyData, got {other:?}"),
        }
    }
    h.server(BackendMessage::CopyDone);
    assert_eq!(
        completed(&h.server(cc("COPY 2"))),
        vec![(1, Outcome::Command("COPY 2".into()))]
    );
    h.server(rfq(TransactionStatus::Idle));
    // CopyData outside a COPY is a desync.
    h.send(q("SELECT 1"));
    let err =
        h.p.server_message(enc_b(&BackendMessage::CopyData(Bytes::from_static(b"x"))))
            .unwrap_err();
    assert!(matches!(
        err,
        ProxyError::Desync {
            message: "CopyData",
            ..
        }
    ));
}

#[test]
fn copy_in_ignores_syncs_sent_during_the_copy() {
    let mut h = Harness::ready();
    // libpq: Parse/Bind/Execute/Sync, then data, CopyDone and another Sync.
    h.send(parse("", "COPY t FROM STDIN"));
    h.send(bind("", "", vec![]));
    h.send(exec(""));
    h.send(FrontendMessage::Sync);
    h.send(FrontendMessage::CopyData(Bytes::from_static(b"1\n")));
    h.send(FrontendMessage::CopyDone);
    h.send(FrontendMessage::Sync);
    h.server(BackendMessage::ParseComplete);
    h.server(BackendMessage::BindComplete);
    h.server(BackendMessage::NoData);
    h.server(BackendMessage::CopyInResponse(CopyResponse {
        format: Format::Text,
        column_formats: vec![Format::Text],
    }));
    h.server(cc("COPY 1"));
    h.server(rfq(TransactionStatus::Idle));
    assert_eq!(h.p.outstanding(), 0);

    // Simple query COPY FROM STDIN where the response arrives before the client's data.
    h.send(q("COPY t FROM STDIN"));
    h.server(BackendMessage::CopyInResponse(CopyResponse {
        format: Format::Text,
        column_formats: vec![Format::Text],
    }));
    h.send(FrontendMessage::CopyData(Bytes::from_static(b"1\n")));
    let step = h.client(FrontendMessage::Sync);
    assert!(
        matches!(step.event, Some(ClientEvent::Sync { request: None })),
        "ignored during COPY"
    );
    h.send(FrontendMessage::CopyDone);
    h.server(cc("COPY 1"));
    h.server(rfq(TransactionStatus::Idle));
    assert_eq!(h.p.outstanding(), 0);
}

#[test]
fn error_mid_batch_resyncs_at_sync() {
    let mut h = Harness::ready();
    h.send(parse("", "SELECT 1/x FROM t"));
    h.send(bind("", "", vec![]));
    h.send(FrontendMessage::Describe {
        kind: Target::Portal,
        name: String::new(),
    });
    h.send(exec(""));
    h.send(FrontendMessage::Close {
        kind: Target::Portal,
        name: String::new(),
    });
    h.send(FrontendMessage::Sync);
    h.send(parse("", "SELECT 2"));
    h.send(bind("", "", vec![]));
    h.send(exec(""));
    h.send(FrontendMessage::Sync);

    h.server(BackendMessage::ParseComplete);
    h.server(BackendMessage::BindComplete);
    h.server(BackendMessage::RowDescription(row_desc(
        &[("q", 23)],
        Format::Text,
    )));
    row_ctx(&mut h, &[Some(b"1")]);
    let step = h.server(server_error("22012", "division by zero"));
    assert_eq!(completed(&step).len(), 2, "Execute failed, Close skipped");
    h.server(rfq(TransactionStatus::Idle));
    // Second batch: rows of an Execute without Describe, text by default.
    h.server(BackendMessage::ParseComplete);
    h.server(BackendMessage::BindComplete);
    h.server(BackendMessage::RowDescription(row_desc(
        &[("?column?", 23)],
        Format::Text,
    )));
    let ctx = row_ctx(&mut h, &[Some(b"2")]);
    assert_eq!(ctx.format(0), Some(Format::Text));
    assert_eq!(ctx.sql.as_deref(), Some("SELECT 2"));
    h.server(cc("SELECT 1"));
    h.server(rfq(TransactionStatus::Idle));
    assert_eq!(h.p.outstanding(), 0);
}

#[test]
fn error_before_sync_is_sent_skips_later_messages() {
    let mut h = Harness::ready();
    h.send(parse("", "SELEC"));
    h.send(FrontendMessage::Flush);
    h.server(server_error("42601", "syntax error"));
    // The client keeps sending the batch; the server discards it until Sync.
    h.send(bind("", "", vec![]));
    h.send(exec(""));
    h.refuse(parse("x", "DROP TABLE cards"), "no-ddl");
    assert_eq!(h.p.outstanding(), 0);
    h.send(FrontendMessage::Sync);
    h.server(rfq(TransactionStatus::Idle));
    assert_eq!(h.p.outstanding(), 0);
}

#[test]
fn hold_then_refuse_while_server_traffic_continues() {
    let mut h = Harness::ready();
    h.send(q("SELECT 1"));
    let ClientAction::Decide(held) = h.client(q("UPDATE cards SET pan = NULL")).action else {
        panic!()
    };
    assert!(h.p.awaiting_decision());
    // While held, the client must wait...
    assert!(matches!(
        h.p.client_message(enc_f(&FrontendMessage::Sync)),
        Err(ProxyError::DecisionPending)
    ));
    // ...but earlier results still flow, and the caller may send a notice.
    h.server(BackendMessage::RowDescription(row_desc(
        &[("?column?", 23)],
        Format::Text,
    )));
    row_ctx(&mut h, &[Some(b"1")]);
    h.server(cc("SELECT 1"));
    h.server(rfq(TransactionStatus::Idle));
    let notice = NoticeResponse::notice("statement held for approval")
        .to_bytes()
        .unwrap();
    assert_eq!(notice[0], b'N');
    let out =
        h.p.decide(
            held,
            Verdict::Refuse(ErrorResponse::insufficient_privilege(
                "approval denied",
                Some("rule hold-updates"),
                None,
            )),
        )
        .unwrap();
    assert_eq!(FrontendMessage::parse(&out).unwrap(), q(h.p.marker()));
    let step = h.server(h.marker_error());
    let ServerOutput::Error(e) = step.output else {
        panic!()
    };
    assert_eq!(e.code(), Some("42501"));
    assert_eq!(e.field(b'D'), Some("rule hold-updates"));
    h.server(rfq(TransactionStatus::Idle));
}

#[test]
fn asynchronous_messages_pass_at_any_time() {
    let mut h = Harness::ready();
    let n = h.server(BackendMessage::NoticeResponse(NoticeResponse::notice("hi")));
    assert!(matches!(n.output, ServerOutput::Notice(_)));
    let a = h.server(BackendMessage::NotificationResponse(
        dbwarden_wire_pg::backend::NotificationResponse {
            pid: 1,
            channel: "c".into(),
            payload: "4111111111111111".into(),
        },
    ));
    assert!(matches!(a.output, ServerOutput::Notification(ref n) if n.payload.starts_with("4111")));
    let s = h.server(BackendMessage::ParameterStatus {
        name: "TimeZone".into(),
        value: "UTC".into(),
    });
    assert!(
        matches!(&s.events[0], ServerEvent::ParameterStatus { name, .. } if name == "TimeZone")
    );
    // A FATAL with nothing outstanding is reported as a session error.
    let f = h.server(BackendMessage::ErrorResponse(
        ErrorResponse::admin_shutdown("terminating"),
    ));
    assert!(
        matches!(&f.events[0], ServerEvent::SessionError { code: Some(c), .. } if c == "57P01")
    );
    // A row with nothing outstanding is a desync.
    assert!(matches!(
        h.p.server_message(enc_b(&data_row(&[None]))),
        Err(ProxyError::Desync {
            message: "DataRow",
            ..
        })
    ));
}

#[test]
fn named_statements_close_and_reuse() {
    let mut h = Harness::ready();
    h.send(parse("s", "SELECT a FROM t"));
    h.send(FrontendMessage::Describe {
        kind: Target::Statement,
        name: "s".into(),
    });
    h.send(FrontendMessage::Close {
        kind: Target::Statement,
        name: "s".into(),
    });
    h.send(parse("s", "SELECT b, c FROM u"));
    h.send(FrontendMessage::Describe {
        kind: Target::Statement,
        name: "s".into(),
    });
    h.send(FrontendMessage::Sync);
    h.server(BackendMessage::ParseComplete);
    h.server(BackendMessage::ParameterDescription { types: vec![] });
    h.server(BackendMessage::RowDescription(row_desc(
        &[("a", 25)],
        Format::Text,
    )));
    h.server(BackendMessage::CloseComplete);
    h.server(BackendMessage::ParseComplete);
    h.server(BackendMessage::ParameterDescription { types: vec![] });
    h.server(BackendMessage::RowDescription(row_desc(
        &[("b", 25), ("c", 25)],
        Format::Text,
    )));
    h.server(rfq(TransactionStatus::Idle));
    let step = h.client(bind("", "s", vec![]));
    assert!(
        matches!(step.event, Some(ClientEvent::Bind { sql: Some(ref s), .. }) if &**s == "SELECT b, c FROM u")
    );
    h.send(exec(""));
    h.send(FrontendMessage::Sync);
    h.server(BackendMessage::BindComplete);
    let ctx = row_ctx(&mut h, &[Some(b"1"), Some(b"2")]);
    assert_eq!(ctx.field(1).unwrap().name, "c");
}

#[test]
fn password_only_during_authentication() {
    let mut h = Harness::ready();
    let err =
        h.p.client_message(enc_f(&FrontendMessage::Password(Bytes::from_static(
            b"pw\0",
        ))))
        .unwrap_err();
    assert!(matches!(err, ProxyError::Protocol(_)));
}

/// The client sends Bind/Execute with no Describe and no described statement: the proxy asks
/// for the portal's description in the same write, swallows the answer and masks the rows with
/// it (types and formats known, so a binary int8 PAN cannot pass unseen).
#[test]
fn execute_without_any_describe_gets_one_injected() {
    let mut h = Harness::ready();
    h.send(parse("", "SELECT pan, cvv FROM cards"));
    h.send(bind("p1", "", vec![1]));
    let out = h.send(FrontendMessage::Execute {
        portal: "p1".into(),
        max_rows: 1,
    });
    let mut buf = bytes::BytesMut::from(&out[..]);
    let first = dbwarden_wire_pg::frame::split_message(&mut buf, 1 << 20)
        .unwrap()
        .unwrap();
    assert_eq!(
        FrontendMessage::parse(&first).unwrap(),
        FrontendMessage::Describe {
            kind: Target::Portal,
            name: "p1".into()
        }
    );
    let second = dbwarden_wire_pg::frame::split_message(&mut buf, 1 << 20)
        .unwrap()
        .unwrap();
    assert!(matches!(
        FrontendMessage::parse(&second).unwrap(),
        FrontendMessage::Execute { .. }
    ));
    assert!(buf.is_empty());
    h.send(FrontendMessage::Sync);

    h.server(BackendMessage::ParseComplete);
    h.server(BackendMessage::BindComplete);
    let step = h.server(BackendMessage::RowDescription(row_desc(
        &[("pan", 20), ("cvv", 25)],
        Format::Binary,
    )));
    assert!(
        matches!(step.output, ServerOutput::Forward(ref b) if b.is_empty()),
        "the injected Describe's answer is not the client's: {:?}",
        step.output
    );
    assert!(step.events.is_empty());
    let ctx = row_ctx(
        &mut h,
        &[Some(&4_111_111_111_111_111i64.to_be_bytes()), Some(b"123")],
    );
    assert_eq!(ctx.field(0).unwrap().type_oid, 20);
    assert_eq!(ctx.format(0), Some(Format::Binary));
    assert_eq!(
        completed(&h.server(BackendMessage::PortalSuspended)),
        vec![(3, Outcome::Suspended)]
    );
    h.server(rfq(TransactionStatus::InTransaction));

    // Resuming the suspended portal needs no second Describe: the shape is remembered.
    let out = h.send(exec("p1"));
    assert!(matches!(
        FrontendMessage::parse(&out).unwrap(),
        FrontendMessage::Execute { .. }
    ));
    h.send(FrontendMessage::Sync);
    let ctx = row_ctx(&mut h, &[Some(&1i64.to_be_bytes()), Some(b"1")]);
    assert_eq!(ctx.field(1).unwrap().name, "cvv");
    h.server(cc("SELECT 2"));
    h.server(rfq(TransactionStatus::InTransaction));
    assert_eq!(h.p.outstanding(), 0);
}

/// A SQL cursor is a portal the proxy never saw bound: Execute of it is described first.
/// Executing a portal that does not exist fails on the injected Describe; the client sees that
/// as the Execute's error, once, and the batch resyncs.
#[test]
fn cursor_portals_and_missing_portals() {
    let mut h = Harness::ready();
    let out = h.send(exec("c1"));
    let mut buf = bytes::BytesMut::from(&out[..]);
    let first = dbwarden_wire_pg::frame::split_message(&mut buf, 1 << 20)
        .unwrap()
        .unwrap();
    assert!(matches!(
        FrontendMessage::parse(&first).unwrap(),
        FrontendMessage::Describe { .. }
    ));
    h.send(FrontendMessage::Sync);
    let step = h.server(BackendMessage::RowDescription(row_desc(
        &[("pan", 25)],
        Format::Text,
    )));
    assert!(matches!(step.output, ServerOutput::Forward(ref b) if b.is_empty()));
    let ctx = row_ctx(&mut h, &[Some(b"4111111111111111")]);
    assert_eq!(ctx.field(0).unwrap().name, "pan");
    assert_eq!(ctx.format(0), Some(Format::Text));
    h.server(cc("FETCH 1"));
    h.server(rfq(TransactionStatus::InTransaction));

    h.send(exec("nope"));
    h.send(FrontendMessage::Close {
        kind: Target::Portal,
        name: "x".into(),
    });
    h.send(FrontendMessage::Sync);
    let step = h.server(server_error("34000", "portal \"nope\" does not exist"));
    assert_eq!(error_code(&step), Some("34000".into()));
    let outcomes = completed(&step);
    assert_eq!(
        outcomes.len(),
        2,
        "the Execute failed, the Close was skipped: {outcomes:?}"
    );
    assert!(matches!(outcomes[0].1, Outcome::Error { .. }));
    assert_eq!(outcomes[1].1, Outcome::Skipped);
    h.server(rfq(TransactionStatus::InTransaction));
    assert_eq!(h.p.outstanding(), 0);
}

/// A statement described by the client (`Describe S`) needs no injection; its portals keep
/// the description even after the statement is closed.
#[test]
fn described_statement_needs_no_injection_even_after_close() {
    let mut h = Harness::ready();
    h.send(parse("s", "SELECT cvv FROM cards"));
    h.send(FrontendMessage::Describe {
        kind: Target::Statement,
        name: "s".into(),
    });
    h.send(FrontendMessage::Sync);
    h.server(BackendMessage::ParseComplete);
    h.server(BackendMessage::ParameterDescription { types: vec![] });
    h.server(BackendMessage::RowDescription(row_desc(
        &[("cvv", 25)],
        Format::Text,
    )));
    h.server(rfq(TransactionStatus::Idle));
    h.send(q("BEGIN"));
    h.server(cc("BEGIN"));
    h.server(rfq(TransactionStatus::InTransaction));
    h.send(bind("p", "s", vec![]));
    h.send(FrontendMessage::Close {
        kind: Target::Statement,
        name: "s".into(),
    });
    let out = h.send(exec("p"));
    assert!(matches!(
        FrontendMessage::parse(&out).unwrap(),
        FrontendMessage::Execute { .. }
    ));
    h.send(FrontendMessage::Sync);
    h.server(BackendMessage::BindComplete);
    h.server(BackendMessage::CloseComplete);
    let ctx = row_ctx(&mut h, &[Some(b"123")]);
    assert_eq!(ctx.field(0).unwrap().name, "cvv");
    h.server(cc("SELECT 1"));
    h.server(rfq(TransactionStatus::InTransaction));
    assert_eq!(h.p.outstanding(), 0);
}
