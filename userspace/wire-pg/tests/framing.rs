//! Framing matrix: every sample message, concatenated, fed byte by byte and split at every
//! boundary; all messages come out intact and in order, and leftovers stay in the buffer.

mod common;

use bytes::{Bytes, BytesMut};
use common::*;
use dbwarden_wire_pg::{
    split_message, split_startup, BackendMessage, FrontendMessage, ProtocolError, Startup,
};

fn drain(buf: &mut BytesMut, out: &mut Vec<Bytes>) {
    while let Some(m) = split_message(buf, 1 << 20).unwrap() {
        out.push(m);
    }
}

fn check_matrix(stream: &[u8], expected: &[Bytes]) {
    // One byte at a time.
    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    for b in stream {
        buf.extend_from_slice(&[*b]);
        drain(&mut buf, &mut got);
    }
    assert_eq!(got, expected);
    assert!(buf.is_empty());
    // Every two-way split, with a partial trailing message left over.
    for k in 0..=stream.len() {
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        buf.extend_from_slice(&stream[..k]);
        drain(&mut buf, &mut got);
        let consumed: usize = got.iter().map(Bytes::len).sum();
        assert_eq!(
            &buf[..],
            &stream[consumed..k],
            "leftover preserved at split {k}"
        );
        buf.extend_from_slice(&stream[k..]);
        drain(&mut buf, &mut got);
        assert_eq!(got, expected, "split at {k}");
        assert!(buf.is_empty());
    }
}

#[test]
fn frontend_messages_survive_every_split() {
    let msgs: Vec<Bytes> = frontend_samples().iter().map(enc_f).collect();
    let stream: Vec<u8> = msgs.iter().flat_map(|m| m.iter().copied()).collect();
    check_matrix(&stream, &msgs);
    for (raw, m) in msgs.iter().zip(frontend_samples()) {
        assert_eq!(FrontendMessage::parse(raw).unwrap(), m);
    }
}

#[test]
fn backend_messages_survive_every_split() {
    let msgs: Vec<Bytes> = backend_samples().iter().map(enc_b).collect();
    let stream: Vec<u8> = msgs.iter().flat_map(|m| m.iter().copied()).collect();
    check_matrix(&stream, &msgs);
    for (raw, m) in msgs.iter().zip(backend_samples()) {
        assert_eq!(BackendMessage::parse(raw).unwrap(), m);
    }
}

#[test]
fn startup_packets_survive_every_split() {
    for s in startup_samples() {
        let mut one = BytesMut::new();
        s.encode(&mut one).unwrap();
        // Startup packet followed by the first tagged message.
        let mut stream = one.to_vec();
        stream.extend_from_slice(&enc_f(&FrontendMessage::Sync));
        for k in 0..=stream.len() {
            let mut buf = BytesMut::from(&stream[..k]);
            let first = split_startup(&mut buf, 10_000).unwrap();
            let first = match first {
                Some(f) => f,
                None => {
                    assert_eq!(&buf[..], &stream[..k]);
                    buf.extend_from_slice(&stream[k..]);
                    split_startup(&mut buf, 10_000).unwrap().unwrap()
                }
            };
            if buf.len() < stream.len() - first.len() {
                let have = buf.len();
                buf.extend_from_slice(&stream[first.len() + have..]);
            }
            assert_eq!(Startup::parse(&first).unwrap(), s);
            let sync = split_message(&mut buf, 100).unwrap().unwrap();
            assert_eq!(
                FrontendMessage::parse(&sync).unwrap(),
                FrontendMessage::Sync
            );
            assert!(buf.is_empty());
        }
    }
}

#[test]
fn limit_applies_to_whole_message() {
    let raw = enc_f(&FrontendMessage::Query {
        sql: "SELECT 1".into(),
    });
    let mut buf = BytesMut::from(&raw[..]);
    assert!(matches!(
        split_message(&mut buf, raw.len() - 1),
        Err(ProtocolError::LengthTooLarge { .. })
    ));
    let mut buf = BytesMut::from(&raw[..]);
    assert_eq!(split_message(&mut buf, raw.len()).unwrap().unwrap(), raw);
}
