//! Shared fixtures: headers, typical statement streams, and a segment-level
//! file editor used to tamper with files the way an attacker would.
#![allow(dead_code)]

use dbwarden_record::format::{self, FrameAt, HeaderAt, SegmentHeader};
use dbwarden_record::*;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use time::macros::datetime;
use time::OffsetDateTime;

pub const T0: OffsetDateTime = datetime!(2026-11-26 02:15:00 UTC);

pub fn key(seed: u8) -> Arc<HostKey> {
    Arc::new(HostKey::from_seed([seed; 32]))
}

pub fn header(id: u8) -> SessionHeader {
    let mut labels = BTreeMap::new();
    labels.insert("ci_job".to_owned(), format!("job-{id}"));
    labels.insert("agent".to_owned(), "claude".to_owned());
    SessionHeader {
        session_id: SessionId([id; 16]),
        start: T0 + Duration::from_secs(u64::from(id)),
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

pub fn cfg() -> WriterConfig {
    WriterConfig {
        fsync: false,
        ..WriterConfig::default()
    }
}

/// A typical statement: statement, decision, rows, response (4 records).
pub fn statement_records(i: u64) -> Vec<RecordBody> {
    let denied = i % 5 == 4;
    let mut v = vec![
        RecordBody::Statement(Statement {
            stmt: i,
            text: format!("SELECT id, pan, holder FROM cards WHERE id = $1 /* {i} */"),
            params: vec![Some(i.to_string())],
        }),
        RecordBody::Decision(Decision {
            stmt: i,
            action: if denied { Action::Deny } else { Action::Allow },
            rule: Some(if denied {
                "no-bulk".into()
            } else {
                "read-cards".into()
            }),
            approver: None,
            tags: vec!["pci".into()],
            message: denied.then(|| "denied by rule no-bulk".to_owned()),
        }),
    ];
    if !denied {
        v.push(RecordBody::Rows(Rows {
            stmt: i,
            columns: vec!["id".into(), "pan".into(), "holder".into()],
            rows: vec![vec![
                Some(i.to_string()),
                Some("411111******1111".into()),
                Some("J. Doe".into()),
            ]],
            truncated: None,
        }));
        v.push(RecordBody::Response(ResponseSummary {
            stmt: i,
            columns: vec!["id".into(), "pan".into(), "holder".into()],
            rows: Some(1),
            command_tag: Some("SELECT 1".into()),
            duration_us: 850 + i,
            error: None,
            ..ResponseSummary::default()
        }));
    }
    v
}

/// Writes a sealed session with `statements` statements, cutting a segment
/// after every `per_segment` statements. Returns the file bytes.
pub fn build(key: &Arc<HostKey>, id: u8, statements: u64, per_segment: u64, seal: bool) -> Vec<u8> {
    let mut w = SessionWriter::new(Vec::new(), header(id), Arc::clone(key), cfg()).unwrap();
    let mut ts = T0 + Duration::from_secs(u64::from(id));
    for i in 1..=statements {
        for b in statement_records(i) {
            ts += Duration::from_millis(10);
            w.append(ts, b).unwrap();
        }
        if i % per_segment == 0 {
            w.flush_segment().unwrap();
        }
    }
    if seal {
        w.seal(ts, "client closed").unwrap();
    }
    w.into_inner()
}

/// One segment of a file, split apart for editing.
#[derive(Clone)]
pub struct Seg {
    pub header: SegmentHeader,
    pub payload: Vec<u8>,
}

impl Seg {
    pub fn lines(&self) -> Vec<Vec<u8>> {
        let raw = format::decompress(&self.payload).unwrap();
        format::lines(&raw)
            .unwrap()
            .into_iter()
            .map(<[u8]>::to_vec)
            .collect()
    }

    /// Replaces the records but keeps the (now stale) signed header.
    pub fn set_lines(&mut self, lines: &[Vec<u8>]) {
        let mut raw = Vec::new();
        for l in lines {
            raw.extend_from_slice(l);
            raw.push(b'\n');
        }
        self.payload = zstd::bulk::compress(&raw, 3).unwrap();
    }

    pub fn bytes(&self) -> Vec<u8> {
        let mut b = self.header.to_frame();
        b.extend_from_slice(&self.payload);
        b
    }
}

pub fn split(file: &[u8]) -> Vec<Seg> {
    let mut v = Vec::new();
    let mut off = 0;
    loop {
        match format::header_at(file, off) {
            HeaderAt::End => return v,
            HeaderAt::Header {
                header,
                payload_offset,
            } => {
                let FrameAt::Frame(n) =
                    format::payload_frame(file, payload_offset, header.payload_len)
                else {
                    panic!("bad frame")
                };
                v.push(Seg {
                    header: *header,
                    payload: file[payload_offset..payload_offset + n].to_vec(),
                });
                off = payload_offset + n;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

pub fn join(segs: &[Seg]) -> Vec<u8> {
    segs.iter().flat_map(Seg::bytes).collect()
}

pub fn check(data: &[u8], trusted: &[PublicKey]) -> VerifyReport {
    verify_bytes(
        std::path::Path::new("test.dbws"),
        data,
        trusted,
        &mut |_| {},
    )
}
