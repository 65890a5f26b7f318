//! Bounds-checked reading of message bodies. Every accessor returns a [`ProtocolError`] naming
//! the message and field instead of panicking or indexing out of bounds.

use std::ops::Range;

use bytes::Bytes;

use crate::error::ProtocolError;

/// A cursor over one raw message. Positions are absolute offsets into the raw message so that
/// fields can be handed out as zero-copy [`Bytes`] slices of it.
pub(crate) struct Reader<'a> {
    raw: &'a Bytes,
    pos: usize,
    message: &'static str,
    /// How [`Reader::string`] decodes text.
    text: crate::text_encoding::TextEncoding,
}

impl<'a> Reader<'a> {
    /// Starts reading `raw` at offset `start` (5 for tagged messages, 4 for startup packets).
    pub(crate) fn new(raw: &'a Bytes, start: usize, message: &'static str) -> Self {
        Reader {
            raw,
            pos: start.min(raw.len()),
            message,
            text: crate::text_encoding::TextEncoding::UTF8,
        }
    }

    /// Decodes text fields with `text` from now on.
    pub(crate) fn with_text(mut self, text: crate::text_encoding::TextEncoding) -> Self {
        self.text = text;
        self
    }

    /// Bytes not yet read.
    pub(crate) fn remaining(&self) -> usize {
        self.raw.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<Range<usize>, ProtocolError> {
        if n > self.remaining() {
            return Err(ProtocolError::Truncated {
                message: self.message,
                what,
            });
        }
        let range = self.pos..self.pos + n;
        self.pos += n;
        Ok(range)
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, ProtocolError> {
        let r = self.take(1, what)?;
        Ok(self.raw[r.start])
    }

    pub(crate) fn i16(&mut self, what: &'static str) -> Result<i16, ProtocolError> {
        let r = self.take(2, what)?;
        let b = &self.raw[r];
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    pub(crate) fn i32(&mut self, what: &'static str) -> Result<i32, ProtocolError> {
        let r = self.take(4, what)?;
        let b = &self.raw[r];
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, ProtocolError> {
        let r = self.take(4, what)?;
        let b = &self.raw[r];
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Reads everything left as a zero-copy slice.
    pub(crate) fn rest(&mut self) -> Bytes {
        let r = self.pos..self.raw.len();
        self.pos = self.raw.len();
        self.raw.slice(r)
    }

    /// The bytes up to the next NUL (not consumed yet).
    fn until_nul(&self, what: &'static str) -> Result<&'a [u8], ProtocolError> {
        let raw: &'a Bytes = self.raw;
        let body = &raw[self.pos..];
        let nul = memchr::memchr(0, body).ok_or(ProtocolError::MissingNul {
            message: self.message,
            what,
        })?;
        Ok(&body[..nul])
    }

    /// Reads a NUL-terminated UTF-8 string (the NUL is consumed, not returned).
    pub(crate) fn cstr(&mut self, what: &'static str) -> Result<&'a str, ProtocolError> {
        let b = self.until_nul(what)?;
        let s = std::str::from_utf8(b).map_err(|_| ProtocolError::InvalidUtf8 {
            message: self.message,
            what,
        })?;
        self.pos += b.len() + 1;
        Ok(s)
    }

    /// Reads a NUL-terminated string in the reader's text encoding into an owned `String`.
    pub(crate) fn string(&mut self, what: &'static str) -> Result<String, ProtocolError> {
        if self.text.is_utf8() {
            return self.cstr(what).map(str::to_owned);
        }
        let b = self.until_nul(what)?;
        let s = self.text.decode(b).ok_or(ProtocolError::InvalidText {
            message: self.message,
            what,
            encoding: self.text.name(),
        })?;
        self.pos += b.len() + 1;
        Ok(s)
    }

    /// Reads an Int16 count and checks that `count * min_item_size` bytes can still follow,
    /// so no allocation is sized by an unchecked count.
    pub(crate) fn count16(
        &mut self,
        what: &'static str,
        min_item_size: usize,
    ) -> Result<usize, ProtocolError> {
        let v = self.i16(what)?;
        self.check_count(i64::from(v), what, min_item_size)
    }

    /// Like [`Reader::count16`] for an Int32 count.
    pub(crate) fn count32(
        &mut self,
        what: &'static str,
        min_item_size: usize,
    ) -> Result<usize, ProtocolError> {
        let v = self.i32(what)?;
        self.check_count(i64::from(v), what, min_item_size)
    }

    fn check_count(
        &self,
        v: i64,
        what: &'static str,
        min_item_size: usize,
    ) -> Result<usize, ProtocolError> {
        let remaining = self.remaining();
        let ok = usize::try_from(v)
            .ok()
            .filter(|&n| n.saturating_mul(min_item_size) <= remaining);
        ok.ok_or(ProtocolError::BadCount {
            message: self.message,
            what,
            value: v,
            remaining,
        })
    }

    /// Reads an Int32 length prefix followed by that many bytes; -1 means NULL.
    pub(crate) fn nullable_range(
        &mut self,
        what: &'static str,
    ) -> Result<Option<Range<usize>>, ProtocolError> {
        let len = self.i32(what)?;
        if len == -1 {
            return Ok(None);
        }
        let remaining = self.remaining();
        let n = usize::try_from(len)
            .ok()
            .filter(|&n| n <= remaining)
            .ok_or(ProtocolError::BadCount {
                message: self.message,
                what,
                value: i64::from(len),
                remaining,
            })?;
        self.take(n, what).map(Some)
    }

    /// Reads a nullable value as a zero-copy slice.
    pub(crate) fn nullable_bytes(
        &mut self,
        what: &'static str,
    ) -> Result<Option<Bytes>, ProtocolError> {
        Ok(self.nullable_range(what)?.map(|r| self.raw.slice(r)))
    }

    /// Fails if any byte is left unread.
    pub(crate) fn finish(&self) -> Result<(), ProtocolError> {
        match self.remaining() {
            0 => Ok(()),
            extra => Err(ProtocolError::TrailingBytes {
                message: self.message,
                extra,
            }),
        }
    }

    /// Builds an [`ProtocolError::InvalidValue`] for this message.
    pub(crate) fn invalid(&self, what: &'static str, value: i64) -> ProtocolError {
        ProtocolError::InvalidValue {
            message: self.message,
            what,
            value,
        }
    }
}

/// Checks the header of a raw tagged message (tag + Int32 length matching the slice) and returns
/// a reader positioned at the body.
pub(crate) fn tagged<'a>(
    raw: &'a Bytes,
    message: &'static str,
) -> Result<Reader<'a>, ProtocolError> {
    let mut r = Reader::new(raw, 1, message);
    if raw.is_empty() {
        return Err(ProtocolError::Truncated {
            message,
            what: "type byte",
        });
    }
    let len = r.i32("length")?;
    if usize::try_from(len).ok() != Some(raw.len() - 1) {
        return Err(ProtocolError::InvalidValue {
            message,
            what: "length header (does not match the message size)",
            value: i64::from(len),
        });
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fields_and_rejects_overruns() {
        let raw = Bytes::from_static(b"Xab\0\x00\x01\xff\xff\xff\xff");
        let mut r = Reader::new(&raw, 1, "Test");
        assert_eq!(r.cstr("name").unwrap(), "ab");
        assert_eq!(r.i16("n").unwrap(), 1);
        assert_eq!(r.nullable_range("v").unwrap(), None);
        r.finish().unwrap();
        assert!(matches!(r.u8("x"), Err(ProtocolError::Truncated { .. })));
    }

    #[test]
    fn rejects_missing_nul_and_bad_utf8() {
        let raw = Bytes::from_static(b"abc");
        assert!(matches!(
            Reader::new(&raw, 0, "T").cstr("s"),
            Err(ProtocolError::MissingNul { .. })
        ));
        let raw = Bytes::from_static(b"\xff\xfe\0");
        assert!(matches!(
            Reader::new(&raw, 0, "T").cstr("s"),
            Err(ProtocolError::InvalidUtf8 { .. })
        ));
    }

    #[test]
    fn counts_are_checked_against_remaining_bytes() {
        let raw = Bytes::from_static(b"\x7f\xff\0\0");
        assert!(matches!(
            Reader::new(&raw, 0, "T").count16("params", 4),
            Err(ProtocolError::BadCount { .. })
        ));
        let raw = Bytes::from_static(b"\xff\xff");
        assert!(matches!(
            Reader::new(&raw, 0, "T").count16("params", 0),
            Err(ProtocolError::BadCount { .. })
        ));
        let raw = Bytes::from_static(b"\x00\x00\x00\x05ab");
        assert!(matches!(
            Reader::new(&raw, 0, "T").nullable_range("v"),
            Err(ProtocolError::BadCount { .. })
        ));
    }
}
