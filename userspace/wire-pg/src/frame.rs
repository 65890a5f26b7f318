//! Framing: cut whole messages off the front of a connection's read buffer.
//!
//! Both functions return `Ok(Some(raw))` with the complete raw message (header included),
//! `Ok(None)` when more bytes are needed, or an error when the length header is invalid. The
//! length is checked (negative, below 4, above `max`) *before* any memory is reserved for the
//! body, so a hostile length cannot make the daemon allocate. Bytes after the message stay in
//! the buffer.
//!
//! # Cancellation safety
//! The functions are synchronous and only split the buffer once a whole message is present:
//! a caller that reads into the same `BytesMut` inside `select!` loses nothing when a read is
//! cancelled.

use bytes::{Bytes, BytesMut};

use crate::error::ProtocolError;

/// Default limit for a tagged message: 256 MiB. PostgreSQL itself caps most messages at 1 GiB.
pub const DEFAULT_MAX_MESSAGE_LEN: usize = 256 * 1024 * 1024;

/// Default limit for a startup packet: 10 000 bytes, the limit PostgreSQL applies
/// (`MAX_STARTUP_PACKET_LENGTH`).
pub const DEFAULT_MAX_STARTUP_LEN: usize = 10_000;

/// First byte of a TLS handshake record: a client using PostgreSQL 17 direct SSL sends it instead
/// of a startup packet.
pub const TLS_HANDSHAKE_BYTE: u8 = 0x16;

/// Splits one startup-phase packet (Int32 length including itself, no type byte) off `buf`.
///
/// # Errors
/// [`ProtocolError::DirectTls`] when the first byte starts a TLS handshake; a length error when
/// the length is below 4 or above `max`.
pub fn split_startup(buf: &mut BytesMut, max: usize) -> Result<Option<Bytes>, ProtocolError> {
    if buf.first() == Some(&TLS_HANDSHAKE_BYTE) {
        return Err(ProtocolError::DirectTls);
    }
    split_at(buf, 0, max, "startup packet")
}

/// Splits one tagged message (type byte + Int32 length including itself) off `buf`.
///
/// # Errors
/// A length error when the length is below 4 or the whole message would exceed `max` bytes.
pub fn split_message(buf: &mut BytesMut, max: usize) -> Result<Option<Bytes>, ProtocolError> {
    split_at(buf, 1, max, "message")
}

fn split_at(
    buf: &mut BytesMut,
    header: usize,
    max: usize,
    message: &'static str,
) -> Result<Option<Bytes>, ProtocolError> {
    let Some(len_bytes) = buf.get(header..header + 4) else {
        return Ok(None);
    };
    let len = i32::from_be_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]);
    let body_len =
        usize::try_from(len)
            .ok()
            .filter(|&l| l >= 4)
            .ok_or(ProtocolError::LengthTooSmall {
                message,
                len: i64::from(len),
            })?;
    let total = body_len + header;
    if total > max {
        return Err(ProtocolError::LengthTooLarge {
            message,
            len: total as u64,
            max,
        });
    }
    if buf.len() < total {
        // Reserve for the rest of this (validated) message only.
        buf.reserve(total - buf.len());
        return Ok(None);
    }
    Ok(Some(buf.split_to(total).freeze()))
}

/// The tag byte of a raw tagged message (`0` for an empty slice, which framing never yields).
#[must_use]
pub fn tag(raw: &[u8]) -> u8 {
    raw.first().copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_whole_messages_and_keeps_leftovers() {
        let mut buf = BytesMut::from(&b"Q\0\0\0\x06x\0S\0\0\0\x04Z\0"[..]);
        let m = split_message(&mut buf, 100).unwrap().unwrap();
        assert_eq!(&m[..], b"Q\0\0\0\x06x\0");
        let m = split_message(&mut buf, 100).unwrap().unwrap();
        assert_eq!(&m[..], b"S\0\0\0\x04");
        assert_eq!(split_message(&mut buf, 100).unwrap(), None);
        assert_eq!(&buf[..], b"Z\0");
    }

    #[test]
    fn rejects_bad_lengths_before_allocating() {
        for hdr in [&b"Q\xff\xff\xff\xff"[..], b"Q\0\0\0\x03", b"Q\x80\0\0\0"] {
            let mut buf = BytesMut::from(hdr);
            assert!(matches!(
                split_message(&mut buf, 100),
                Err(ProtocolError::LengthTooSmall { .. })
            ));
        }
        let mut buf = BytesMut::from(&b"Q\x7f\xff\xff\xff"[..]);
        assert!(matches!(
            split_message(&mut buf, 1000),
            Err(ProtocolError::LengthTooLarge { .. })
        ));
        assert!(buf.capacity() < 1000);
    }

    #[test]
    fn startup_detects_direct_tls() {
        let mut buf = BytesMut::from(&b"\x16\x03\x01\x02\x00"[..]);
        assert_eq!(
            split_startup(&mut buf, 10_000),
            Err(ProtocolError::DirectTls)
        );
        let mut buf = BytesMut::from(&b"\0\0\0\x08\x04\xd2\x16\x2f"[..]);
        assert_eq!(split_startup(&mut buf, 10_000).unwrap().unwrap().len(), 8);
    }
}
