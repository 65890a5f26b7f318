//! DataRow (`D`): one result row. Parsing does not copy values: it keeps the raw message and
//! the byte range of each column. [`DataRow::with_values`] rebuilds a row with some values
//! replaced (masking), re-framing the lengths.

use std::ops::Range;

use bytes::{Bytes, BytesMut};

use crate::error::ProtocolError;
use crate::read::tagged;
use crate::write::encode_message;

/// A parsed DataRow: the raw message plus, per column, the byte range of its value inside the
/// raw message (`None` = SQL NULL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataRow {
    raw: Bytes,
    columns: Vec<Option<Range<usize>>>,
}

const MSG: &str = "DataRow";

impl DataRow {
    /// Parses a raw DataRow without copying values.
    ///
    /// # Errors
    /// Wrong header, a column count larger than the body allows, a value length that is
    /// negative (other than -1) or runs past the end, or trailing bytes.
    pub fn parse(raw: Bytes) -> Result<DataRow, ProtocolError> {
        let mut columns = Vec::new();
        walk(&raw, |n, range| {
            if columns.is_empty() {
                columns.reserve_exact(n);
            }
            columns.push(range);
        })?;
        Ok(DataRow { raw, columns })
    }

    /// The values of a raw DataRow (`None` = NULL), borrowed from it, without building a
    /// [`DataRow`] (no allocation). The whole message is checked first, as by
    /// [`DataRow::parse`], so the iterator yields every column.
    ///
    /// # Errors
    /// As [`DataRow::parse`].
    pub fn values_of(raw: &Bytes) -> Result<impl Iterator<Item = Option<&[u8]>>, ProtocolError> {
        walk(raw, |_, _| {})?;
        let mut r = tagged(raw, MSG)?;
        let n = r.count16("column count", 4)?;
        Ok((0..n).map(move |_| {
            r.nullable_range("column value")
                .ok()
                .flatten()
                .and_then(|range| raw.get(range))
        }))
    }

    /// Number of columns.
    #[must_use]
    pub fn len(&self) -> usize {
        self.columns.len()
    }

    /// Whether the row has no columns.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.columns.is_empty()
    }

    /// The value of column `i`: `None` if out of range, `Some(None)` for NULL.
    #[must_use]
    pub fn get(&self, i: usize) -> Option<Option<&[u8]>> {
        self.columns
            .get(i)
            .map(|c| c.as_ref().and_then(|r| self.raw.get(r.clone())))
    }

    /// The value of column `i` as a zero-copy `Bytes`: `None` if out of range, `Some(None)` for NULL.
    #[must_use]
    pub fn get_bytes(&self, i: usize) -> Option<Option<Bytes>> {
        self.columns
            .get(i)
            .map(|c| c.clone().map(|r| self.raw.slice(r)))
    }

    /// Iterates over the column values (`None` = NULL).
    pub fn values(&self) -> impl Iterator<Item = Option<&[u8]>> + '_ {
        self.columns
            .iter()
            .map(|c| c.as_ref().and_then(|r| self.raw.get(r.clone())))
    }

    /// The byte ranges of the values inside [`DataRow::raw`].
    #[must_use]
    pub fn ranges(&self) -> &[Option<Range<usize>>] {
        &self.columns
    }

    /// The raw message (forward it as is when nothing needs masking).
    #[must_use]
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    /// Consumes the row, returning the raw message.
    #[must_use]
    pub fn into_raw(self) -> Bytes {
        self.raw
    }

    /// Builds a new DataRow message with some values replaced: each `(column, value)` pair sets
    /// that column (`None` = NULL); other columns are copied. Lengths are re-framed. Without
    /// replacements the raw message is returned unchanged.
    ///
    /// # Errors
    /// A column index out of range, or a value too long for the wire format.
    pub fn with_values(
        &self,
        replacements: &[(usize, Option<&[u8]>)],
    ) -> Result<Bytes, ProtocolError> {
        if replacements.is_empty() {
            return Ok(self.raw.clone());
        }
        if let Some((i, _)) = replacements.iter().find(|(i, _)| *i >= self.columns.len()) {
            return Err(ProtocolError::InvalidValue {
                message: MSG,
                what: "replacement column index",
                value: *i as i64,
            });
        }
        let mut values: Vec<Option<&[u8]>> = self.values().collect();
        for (i, v) in replacements {
            values[*i] = *v;
        }
        let mut buf = BytesMut::with_capacity(self.raw.len());
        encode_data_row(&values, &mut buf)?;
        Ok(buf.freeze())
    }
}

/// Checks a whole raw DataRow (header, every value's length, no trailing bytes), handing
/// `column` the column count and each value's byte range (`None` = NULL) in order.
fn walk(
    raw: &Bytes,
    mut column: impl FnMut(usize, Option<Range<usize>>),
) -> Result<(), ProtocolError> {
    let mut r = tagged(raw, MSG)?;
    let n = r.count16("column count", 4)?;
    for _ in 0..n {
        column(n, r.nullable_range("column value")?);
    }
    r.finish()
}

/// Appends a DataRow built from `values` (`None` = NULL) to `dst`.
///
/// # Errors
/// More than 32767 columns or a value longer than 2 GiB.
pub fn encode_data_row(values: &[Option<&[u8]>], dst: &mut BytesMut) -> Result<(), ProtocolError> {
    encode_message(dst, Some(b'D'), MSG, |w| {
        w.count16(values.len())?;
        for v in values {
            w.nullable(*v)?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(values: &[Option<&[u8]>]) -> Bytes {
        let mut buf = BytesMut::new();
        encode_data_row(values, &mut buf).unwrap();
        buf.freeze()
    }

    #[test]
    fn round_trip_zero_copy() {
        let raw = row(&[Some(b"42"), None, Some(b""), Some(b"4111111111111111")]);
        let r = DataRow::parse(raw.clone()).unwrap();
        assert_eq!(r.len(), 4);
        assert_eq!(r.get(0), Some(Some(&b"42"[..])));
        assert_eq!(r.get(1), Some(None));
        assert_eq!(r.get(2), Some(Some(&b""[..])));
        assert_eq!(r.get(4), None);
        assert_eq!(
            r.get_bytes(3).unwrap().unwrap().as_ptr(),
            raw[r.ranges()[3].clone().unwrap()].as_ptr()
        );
        assert_eq!(r.values().collect::<Vec<_>>().len(), 4);
        assert_eq!(r.raw(), &raw);
        assert_eq!(
            DataRow::values_of(&raw).unwrap().collect::<Vec<_>>(),
            r.values().collect::<Vec<_>>()
        );
    }

    #[test]
    fn replace_values_reframes() {
        let r = DataRow::parse(row(&[Some(b"1"), Some(b"4111111111111111"), None])).unwrap();
        let out = r
            .with_values(&[(1, Some(b"411111******1111xx")), (2, Some(b"z"))])
            .unwrap();
        let o = DataRow::parse(out).unwrap();
        assert_eq!(
            o.values().collect::<Vec<_>>(),
            vec![
                Some(&b"1"[..]),
                Some(&b"411111******1111xx"[..]),
                Some(&b"z"[..])
            ]
        );
        assert_eq!(r.with_values(&[]).unwrap(), *r.raw());
        assert!(r.with_values(&[(3, None)]).is_err());
    }

    #[test]
    fn rejects_malformed() {
        let bad: &[&[u8]] = &[
            b"D\0\0\0\x06\x00\x01",                 // count > body
            b"D\0\0\0\x06\xff\xff",                 // negative count
            b"D\0\0\0\x0a\x00\x01\x00\x00\x00\x05", // value past end
            b"D\0\0\0\x0a\x00\x01\xff\xff\xff\xfe", // length -2
            b"D\0\0\0\x07\x00\x00\x00",             // trailing byte
        ];
        for raw in bad {
            assert!(DataRow::parse(Bytes::from_static(raw)).is_err(), "{raw:?}");
            assert!(
                DataRow::values_of(&Bytes::from_static(raw)).is_err(),
                "{raw:?}"
            );
        }
    }
}
