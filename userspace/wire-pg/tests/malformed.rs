//! Malformed input: bad lengths, truncated bodies, missing NULs and oversized counts produce
//! errors naming the message, never panics.

use bytes::{Bytes, BytesMut};
use dbwarden_wire_pg::{
    split_message, split_startup, BackendMessage, DataRow, FrontendMessage, ProtocolError,
    RowDescription, Startup,
};

#[test]
fn negative_length() {
    let mut buf = BytesMut::from(&b"Q\xff\xff\xff\xf0rest"[..]);
    assert_eq!(
        split_message(&mut buf, 1 << 20),
        Err(ProtocolError::LengthTooSmall {
            message: "message",
            len: -16
        })
    );
    let mut buf = BytesMut::from(&b"\x80\0\0\0"[..]);
    assert!(matches!(
        split_startup(&mut buf, 10_000),
        Err(ProtocolError::LengthTooSmall { .. })
    ));
}

#[test]
fn length_below_four() {
    for n in 0u8..4 {
        let mut buf = BytesMut::from(&[b'S', 0, 0, 0, n][..]);
        assert!(matches!(
            split_message(&mut buf, 100),
            Err(ProtocolError::LengthTooSmall { .. })
        ));
        let mut buf = BytesMut::from(&[0, 0, 0, n][..]);
        assert!(matches!(
            split_startup(&mut buf, 100),
            Err(ProtocolError::LengthTooSmall { .. })
        ));
    }
}

#[test]
fn length_over_max_is_rejected_before_the_body_arrives() {
    let mut buf = BytesMut::from(&b"D\x10\0\0\0"[..]);
    let err = split_message(&mut buf, 1 << 20).unwrap_err();
    assert!(matches!(
        err,
        ProtocolError::LengthTooLarge { max: 1_048_576, .. }
    ));
    assert!(
        buf.capacity() < 1 << 20,
        "nothing reserved for a rejected length"
    );
    let mut buf = BytesMut::from(&b"\0\x01\0\0"[..]);
    assert!(matches!(
        split_startup(&mut buf, 10_000),
        Err(ProtocolError::LengthTooLarge { .. })
    ));
}

#[test]
fn truncated_body_waits_then_parses() {
    let mut buf = BytesMut::from(&b"Q\0\0\0\x09SEL"[..]);
    assert_eq!(split_message(&mut buf, 100).unwrap(), None);
    assert_eq!(&buf[..], b"Q\0\0\0\x09SEL");
    // A message whose header claims more than the slice holds is rejected by the parser.
    for raw in [
        &b"Q\0\0\0\x09SEL"[..],
        b"T\0\0\0\x20\0\x01",
        b"D\0\0\0\x20\0\x01",
    ] {
        let raw = Bytes::copy_from_slice(raw);
        assert!(FrontendMessage::parse(&raw).is_err() || raw[0] != b'Q');
        assert!(BackendMessage::parse(&raw).is_err());
    }
    // Fields that run past the end of the body.
    let e = FrontendMessage::parse(&Bytes::from_static(b"E\0\0\0\x07p\0\0")).unwrap_err();
    assert!(
        matches!(
            e,
            ProtocolError::Truncated {
                message: "Execute",
                what: "row limit"
            }
        ),
        "{e}"
    );
}

#[test]
fn missing_nul() {
    let e = FrontendMessage::parse(&Bytes::from_static(b"Q\0\0\0\x07SEL")).unwrap_err();
    assert_eq!(
        e,
        ProtocolError::MissingNul {
            message: "Query",
            what: "query string"
        }
    );
    assert_eq!(
        e.to_string(),
        "Query: query string is missing its terminating NUL"
    );
    let e = BackendMessage::parse(&Bytes::from_static(b"C\0\0\0\x0cSELECT 1")).unwrap_err();
    assert!(matches!(
        e,
        ProtocolError::MissingNul {
            message: "CommandComplete",
            ..
        }
    ));
    let e = Startup::parse(&Bytes::from_static(b"\0\0\0\x0c\0\x03\0\0user")).unwrap_err();
    assert!(matches!(e, ProtocolError::MissingNul { .. }));
}

#[test]
fn invalid_utf8() {
    let e = FrontendMessage::parse(&Bytes::from_static(b"Q\0\0\0\x07\xc3\x28\0")).unwrap_err();
    assert!(matches!(
        e,
        ProtocolError::InvalidUtf8 {
            message: "Query",
            ..
        }
    ));
}

#[test]
fn counts_larger_than_the_body() {
    // Bind announcing 32767 parameters in a 14-byte message.
    let e = FrontendMessage::parse(&Bytes::from_static(b"B\0\0\0\x0e\0\0\0\0\x7f\xff\0\0\0\0"))
        .unwrap_err();
    assert!(
        matches!(
            e,
            ProtocolError::BadCount {
                message: "Bind",
                ..
            }
        ),
        "{e}"
    );
    let e = DataRow::parse(Bytes::from_static(b"D\0\0\0\x06\x7f\xff")).unwrap_err();
    assert!(matches!(
        e,
        ProtocolError::BadCount {
            message: "DataRow",
            value: 32767,
            ..
        }
    ));
    let e = RowDescription::parse(&Bytes::from_static(b"T\0\0\0\x06\0\x02")).unwrap_err();
    assert!(matches!(
        e,
        ProtocolError::BadCount {
            message: "RowDescription",
            ..
        }
    ));
    let e = BackendMessage::parse(&Bytes::from_static(b"t\0\0\0\x06\0\x09")).unwrap_err();
    assert!(matches!(
        e,
        ProtocolError::BadCount {
            message: "ParameterDescription",
            ..
        }
    ));
    // A value length larger than the rest of the row.
    let e = DataRow::parse(Bytes::from_static(b"D\0\0\0\x0c\0\x01\0\0\0\x10ab")).unwrap_err();
    assert!(matches!(
        e,
        ProtocolError::BadCount {
            what: "column value",
            ..
        }
    ));
}

#[test]
fn errors_never_quote_message_contents() {
    let pan = b"Q\0\0\0\x14SELECT 4111111111111111";
    let e = FrontendMessage::parse(&Bytes::from_static(pan)).unwrap_err();
    assert!(!e.to_string().contains("4111"), "{e}");
}

#[test]
fn direct_tls_is_a_distinct_error() {
    let hello = b"\x16\x03\x01\x00\xf1\x01\x00\x00\xed\x03\x03";
    let mut buf = BytesMut::from(&hello[..]);
    assert_eq!(
        split_startup(&mut buf, 10_000),
        Err(ProtocolError::DirectTls)
    );
    assert_eq!(
        Startup::parse(&Bytes::from_static(hello)),
        Err(ProtocolError::DirectTls)
    );
}
