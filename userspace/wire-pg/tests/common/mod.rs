//! Shared fixtures: sample messages of every type and a proxy harness that plays both peers.
#![allow(dead_code)]

use bytes::{Bytes, BytesMut};
use dbwarden_wire_pg::backend::{Authentication, CopyResponse, NotificationResponse};
use dbwarden_wire_pg::data_row::encode_data_row;
use dbwarden_wire_pg::frontend::{Bind, FunctionCall, Target};
use dbwarden_wire_pg::proxy::{
    ClientAction, ClientStep, Proxy, ProxyConfig, ServerEvent, ServerOutput, ServerStep, Verdict,
};
use dbwarden_wire_pg::{
    BackendKeyData, BackendMessage, DataRow, ErrorResponse, FieldDescription, Format,
    FrontendMessage, NoticeResponse, RowDescription, Startup, TransactionStatus,
};

pub const NONCE: &str = "n0nce7abc";

pub fn frontend_samples() -> Vec<FrontendMessage> {
    vec![
        FrontendMessage::Query {
            sql: "SELECT 1; SELECT 2".into(),
        },
        FrontendMessage::Parse {
            name: "s1".into(),
            query: "SELECT pan FROM cards WHERE id = $1".into(),
            param_types: vec![23],
        },
        FrontendMessage::Bind(Bind {
            portal: "p1".into(),
            statement: "s1".into(),
            param_formats: vec![0],
            params: vec![Some(Bytes::from_static(b"7")), None],
            result_formats: vec![1],
        }),
        FrontendMessage::Describe {
            kind: Target::Statement,
            name: "s1".into(),
        },
        FrontendMessage::Describe {
            kind: Target::Portal,
            name: "p1".into(),
        },
        FrontendMessage::Execute {
            portal: "p1".into(),
            max_rows: 0,
        },
        FrontendMessage::Close {
            kind: Target::Statement,
            name: "s1".into(),
        },
        FrontendMessage::Sync,
        FrontendMessage::Flush,
        FrontendMessage::CopyData(Bytes::from_static(b"a\tb\n")),
        FrontendMessage::CopyDone,
        FrontendMessage::CopyFail {
            message: "nope".into(),
        },
        FrontendMessage::FunctionCall(FunctionCall {
            oid: 42,
            arg_formats: vec![1, 0],
            args: vec![Some(Bytes::from_static(b"\0\0\0\x01")), None],
            result_format: 0,
        }),
        FrontendMessage::Password(Bytes::from_static(b"SCRAM-SHA-256\0\0\0\0\x04abcd")),
        FrontendMessage::Terminate,
    ]
}

pub fn field(name: &str, type_oid: u32, format: Format) -> FieldDescription {
    FieldDescription {
        name: name.into(),
        table_oid: 16_400,
        column_attr: 1,
        type_oid,
        type_len: -1,
        type_mod: -1,
        format,
    }
}

pub fn row_desc(cols: &[(&str, u32)], format: Format) -> RowDescription {
    RowDescription {
        fields: cols.iter().map(|(n, t)| field(n, *t, format)).collect(),
    }
}

pub fn data_row(values: &[Option<&[u8]>]) -> BackendMessage {
    let mut buf = BytesMut::new();
    encode_data_row(values, &mut buf).unwrap();
    BackendMessage::DataRow(DataRow::parse(buf.freeze()).unwrap())
}

pub fn backend_samples() -> Vec<BackendMessage> {
    vec![
        BackendMessage::Authentication(Authentication::ok()),
        BackendMessage::Authentication(Authentication {
            subtype: 5,
            data: Bytes::from_static(b"salt"),
        }),
        BackendMessage::BackendKeyData(BackendKeyData {
            pid: 1234,
            secret_key: Bytes::from_static(b"\x01\x02\x03\x04"),
        }),
        BackendMessage::ParameterStatus {
            name: "client_encoding".into(),
            value: "UTF8".into(),
        },
        BackendMessage::ReadyForQuery(TransactionStatus::Idle),
        BackendMessage::RowDescription(row_desc(&[("id", 23), ("pan", 25)], Format::Text)),
        data_row(&[Some(b"1"), Some(b"4111111111111111"), None]),
        BackendMessage::CommandComplete {
            tag: "SELECT 1".into(),
        },
        BackendMessage::EmptyQueryResponse,
        BackendMessage::ErrorResponse(
            ErrorResponse::new("ERROR", "42601", "syntax error").with_hint("h"),
        ),
        BackendMessage::NoticeResponse(NoticeResponse::notice("n")),
        BackendMessage::ParseComplete,
        BackendMessage::BindComplete,
        BackendMessage::CloseComplete,
        BackendMessage::NoData,
        BackendMessage::ParameterDescription { types: vec![23] },
        BackendMessage::PortalSuspended,
        BackendMessage::CopyInResponse(CopyResponse {
            format: Format::Text,
            column_formats: vec![Format::Text],
        }),
        BackendMessage::CopyOutResponse(CopyResponse {
            format: Format::Text,
            column_formats: vec![Format::Text; 2],
        }),
        BackendMessage::CopyBothResponse(CopyResponse {
            format: Format::Binary,
            column_formats: vec![],
        }),
        BackendMessage::CopyData(Bytes::from_static(b"1\t4111111111111111\n")),
        BackendMessage::CopyDone,
        BackendMessage::NotificationResponse(NotificationResponse {
            pid: 1,
            channel: "c".into(),
            payload: "p".into(),
        }),
        BackendMessage::FunctionCallResponse {
            value: Some(Bytes::from_static(b"ok")),
        },
        BackendMessage::NegotiateProtocolVersion {
            newest_minor: 0,
            unrecognized: vec!["_pq_.a".into()],
        },
    ]
}

pub fn startup_samples() -> Vec<Startup> {
    vec![
        Startup::SslRequest,
        Startup::GssEncRequest,
        Startup::Params {
            major: 3,
            minor: 2,
            params: vec![
                ("user".into(), "agent".into()),
                ("database".into(), "shop".into()),
            ],
        },
        Startup::Cancel {
            pid: 7,
            secret_key: Bytes::from_static(b"\x09\x08\x07\x06"),
        },
    ]
}

pub fn enc_f(m: &FrontendMessage) -> Bytes {
    m.to_bytes().unwrap()
}

pub fn enc_b(m: &BackendMessage) -> Bytes {
    m.to_bytes().unwrap()
}

/// A proxy that has completed startup and authentication.
pub struct Harness {
    pub p: Proxy,
}

pub fn proxy_key() -> BackendKeyData {
    BackendKeyData {
        pid: 4242,
        secret_key: Bytes::from(vec![0xAB; 32]),
    }
}

impl Harness {
    pub fn ready() -> Harness {
        let mut p = Proxy::new(ProxyConfig::new(NONCE, proxy_key())).unwrap();
        let mut buf = BytesMut::new();
        Startup::Params {
            major: 3,
            minor: 0,
            params: vec![("user".into(), "agent".into())],
        }
        .encode(&mut buf)
        .unwrap();
        let raw = p.frame_client(&mut buf).unwrap().unwrap();
        assert!(matches!(
            p.client_message(raw).unwrap().action,
            ClientAction::Forward(_)
        ));
        let mut h = Harness { p };
        h.server(BackendMessage::Authentication(Authentication::ok()));
        h.server(BackendMessage::BackendKeyData(BackendKeyData {
            pid: 99,
            secret_key: Bytes::from_static(b"real"),
        }));
        h.server(BackendMessage::ReadyForQuery(TransactionStatus::Idle));
        assert!(h.p.is_ready());
        h
    }

    pub fn client(&mut self, m: FrontendMessage) -> ClientStep {
        self.p.client_message(enc_f(&m)).unwrap()
    }

    /// Sends a client message, allowing any statement; returns what goes to the server.
    pub fn send(&mut self, m: FrontendMessage) -> Bytes {
        match self.client(m).action {
            ClientAction::Forward(b) => b,
            ClientAction::Decide(stmt) => self.p.decide(stmt, Verdict::Allow).unwrap(),
            other => panic!("unexpected action {other:?}"),
        }
    }

    /// Sends a statement and refuses it; returns what goes to the server.
    pub fn refuse(&mut self, m: FrontendMessage, rule: &str) -> Bytes {
        match self.client(m).action {
            ClientAction::Decide(stmt) => self
                .p
                .decide(
                    stmt,
                    Verdict::Refuse(ErrorResponse::insufficient_privilege(
                        format!("refused by rule \"{rule}\""),
                        None,
                        None,
                    )),
                )
                .unwrap(),
            other => panic!("expected a decision, got {other:?}"),
        }
    }

    pub fn server(&mut self, m: BackendMessage) -> ServerStep {
        self.p.server_message(enc_b(&m)).unwrap()
    }

    /// What the real server answers to a refusal marker.
    pub fn marker_error(&self) -> BackendMessage {
        BackendMessage::ErrorResponse(
            ErrorResponse::new(
                "ERROR",
                "42601",
                format!("syntax error at or near \"{}\"", self.p.marker()),
            )
            .with_field_position(),
        )
    }
}

pub trait WithPosition {
    fn with_field_position(self) -> Self;
}

impl WithPosition for ErrorResponse {
    fn with_field_position(mut self) -> Self {
        self.set_field(b'P', "1");
        self
    }
}

/// The SQLSTATE of an error output.
pub fn error_code(step: &ServerStep) -> Option<String> {
    match &step.output {
        ServerOutput::Error(e) => e.code().map(str::to_owned),
        _ => None,
    }
}

pub fn completed(step: &ServerStep) -> Vec<(u64, dbwarden_wire_pg::proxy::Outcome)> {
    step.events
        .iter()
        .filter_map(|e| match e {
            ServerEvent::Completed { request, outcome } => Some((request.0, outcome.clone())),
            _ => None,
        })
        .collect()
}
