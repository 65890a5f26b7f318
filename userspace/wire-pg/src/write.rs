//! Encoding helpers: build one message into a `BytesMut`, patch its length afterwards, and roll
//! the buffer back if any field cannot be encoded, so a failed encode never leaves half a message.

use bytes::{BufMut, BytesMut};

use crate::error::ProtocolError;

/// Writes the fields of one message. Created by [`encode_message`].
pub(crate) struct Writer<'a> {
    dst: &'a mut BytesMut,
    message: &'static str,
}

impl Writer<'_> {
    pub(crate) fn u8(&mut self, v: u8) {
        self.dst.put_u8(v);
    }

    pub(crate) fn i16(&mut self, v: i16) {
        self.dst.put_i16(v);
    }

    pub(crate) fn i32(&mut self, v: i32) {
        self.dst.put_i32(v);
    }

    pub(crate) fn u32(&mut self, v: u32) {
        self.dst.put_u32(v);
    }

    pub(crate) fn bytes(&mut self, v: &[u8]) {
        self.dst.put_slice(v);
    }

    /// Writes a NUL-terminated string.
    ///
    /// # Errors
    /// The string contains a NUL byte (it would end the field early and desynchronise the peer).
    pub(crate) fn cstr(&mut self, s: &str) -> Result<(), ProtocolError> {
        if memchr::memchr(0, s.as_bytes()).is_some() {
            return Err(self.unencodable("string contains a NUL byte"));
        }
        self.dst.put_slice(s.as_bytes());
        self.dst.put_u8(0);
        Ok(())
    }

    /// Writes an Int16 count.
    ///
    /// # Errors
    /// `n` does not fit in an Int16.
    pub(crate) fn count16(&mut self, n: usize) -> Result<(), ProtocolError> {
        let v = i16::try_from(n).map_err(|_| self.unencodable("more than 32767 items"))?;
        self.dst.put_i16(v);
        Ok(())
    }

    /// Writes an Int32 length and the value, or -1 for NULL.
    ///
    /// # Errors
    /// The value is longer than `i32::MAX` bytes.
    pub(crate) fn nullable(&mut self, v: Option<&[u8]>) -> Result<(), ProtocolError> {
        match v {
            None => self.dst.put_i32(-1),
            Some(v) => {
                let len = i32::try_from(v.len())
                    .map_err(|_| self.unencodable("value longer than 2 GiB"))?;
                self.dst.put_i32(len);
                self.dst.put_slice(v);
            }
        }
        Ok(())
    }

    pub(crate) fn unencodable(&self, what: &'static str) -> ProtocolError {
        ProtocolError::Unencodable {
            message: self.message,
            what,
        }
    }
}

/// Appends one message to `dst`: the tag byte (if any), an Int32 length including itself, and
/// whatever `body` writes. On error `dst` is truncated back to its previous length.
///
/// # Errors
/// Whatever `body` returns, or the message being longer than `i32::MAX` bytes.
pub(crate) fn encode_message(
    dst: &mut BytesMut,
    tag: Option<u8>,
    message: &'static str,
    body: impl FnOnce(&mut Writer<'_>) -> Result<(), ProtocolError>,
) -> Result<(), ProtocolError> {
    let start = dst.len();
    if let Some(tag) = tag {
        dst.put_u8(tag);
    }
    let len_at = dst.len();
    dst.put_i32(0);
    let mut w = Writer { dst, message };
    let res = body(&mut w);
    let res = res.and_then(|()| {
        i32::try_from(dst.len() - len_at).map_err(|_| ProtocolError::Unencodable {
            message,
            what: "message longer than 2 GiB",
        })
    });
    match res {
        Ok(len) => {
            dst[len_at..len_at + 4].copy_from_slice(&len.to_be_bytes());
            Ok(())
        }
        Err(e) => {
            dst.truncate(start);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_encode_rolls_back() {
        let mut dst = BytesMut::from(&b"keep"[..]);
        let err = encode_message(&mut dst, Some(b'Q'), "Query", |w| w.cstr("a\0b")).unwrap_err();
        assert!(matches!(
            err,
            ProtocolError::Unencodable {
                message: "Query",
                ..
            }
        ));
        assert_eq!(&dst[..], b"keep");
    }

    #[test]
    fn length_is_patched() {
        let mut dst = BytesMut::new();
        encode_message(&mut dst, Some(b'Q'), "Query", |w| w.cstr("x")).unwrap();
        assert_eq!(&dst[..], b"Q\0\0\0\x06x\0");
    }
}
