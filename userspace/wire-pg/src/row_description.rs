//! RowDescription (`T`): the columns of a result set — names, source table and column, type and
//! format. Masking needs it to know which values are which.

use bytes::{Bytes, BytesMut};

use crate::error::ProtocolError;
use crate::format::Format;
use crate::read::{tagged, Reader};
use crate::write::encode_message;

/// One column of a RowDescription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldDescription {
    /// Column name (or alias) as the client will see it.
    pub name: String,
    /// OID of the source table, 0 if the column is not a plain table column.
    pub table_oid: u32,
    /// Attribute number of the source column, 0 if none.
    pub column_attr: i16,
    /// Data type OID.
    pub type_oid: u32,
    /// Data type size (negative for variable width).
    pub type_len: i16,
    /// Type modifier.
    pub type_mod: i32,
    /// Format of the values. Always text in a Describe-statement answer, where it is not yet known.
    pub format: Format,
}

/// A decoded RowDescription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowDescription {
    /// The columns, in order.
    pub fields: Vec<FieldDescription>,
}

const MSG: &str = "RowDescription";
/// Smallest encoded field: empty name (1) + 4 + 2 + 4 + 2 + 4 + 2.
const MIN_FIELD_LEN: usize = 19;

impl RowDescription {
    /// Parses a raw RowDescription.
    ///
    /// # Errors
    /// Wrong header, a field count larger than the body, a malformed field, an invalid format
    /// code, or trailing bytes.
    pub fn parse(raw: &Bytes) -> Result<RowDescription, ProtocolError> {
        Self::parse_in(raw, crate::TextEncoding::UTF8)
    }

    /// [`RowDescription::parse`] with names in `text`.
    ///
    /// # Errors
    /// As [`RowDescription::parse`]; a name malformed in `text`.
    pub fn parse_in(
        raw: &Bytes,
        text: crate::TextEncoding,
    ) -> Result<RowDescription, ProtocolError> {
        let mut r = tagged(raw, MSG)?.with_text(text);
        let n = r.count16("field count", MIN_FIELD_LEN)?;
        let mut fields = Vec::with_capacity(n);
        for _ in 0..n {
            fields.push(read_field(&mut r)?);
        }
        r.finish()?;
        Ok(RowDescription { fields })
    }

    /// Appends the encoded message to `dst`.
    ///
    /// # Errors
    /// A name contains a NUL byte or there are more than 32767 fields.
    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        encode_message(dst, Some(b'T'), MSG, |w| {
            w.count16(self.fields.len())?;
            for f in &self.fields {
                w.cstr(&f.name)?;
                w.u32(f.table_oid);
                w.i16(f.column_attr);
                w.u32(f.type_oid);
                w.i16(f.type_len);
                w.i32(f.type_mod);
                w.i16(f.format.code());
            }
            Ok(())
        })
    }

    /// Number of columns.
    #[must_use]
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Whether there are no columns.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }
}

fn read_field(r: &mut Reader<'_>) -> Result<FieldDescription, ProtocolError> {
    let name = r.string("field name")?;
    let table_oid = r.u32("table OID")?;
    let column_attr = r.i16("column attribute number")?;
    let type_oid = r.u32("type OID")?;
    let type_len = r.i16("type length")?;
    let type_mod = r.i32("type modifier")?;
    let code = r.i16("format code")?;
    let format =
        Format::from_code(code).ok_or_else(|| r.invalid("format code", i64::from(code)))?;
    Ok(FieldDescription {
        name,
        table_oid,
        column_attr,
        type_oid,
        type_len,
        type_mod,
        format,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> RowDescription {
        RowDescription {
            fields: vec![
                FieldDescription {
                    name: "id".into(),
                    table_oid: 16384,
                    column_attr: 1,
                    type_oid: 23,
                    type_len: 4,
                    type_mod: -1,
                    format: Format::Text,
                },
                FieldDescription {
                    name: "card_number".into(),
                    table_oid: 16384,
                    column_attr: 2,
                    type_oid: 20,
                    type_len: 8,
                    type_mod: -1,
                    format: Format::Binary,
                },
            ],
        }
    }

    #[test]
    fn round_trip() {
        let rd = sample();
        let mut buf = BytesMut::new();
        rd.encode(&mut buf).unwrap();
        assert_eq!(RowDescription::parse(&buf.freeze()).unwrap(), rd);
        let empty = RowDescription { fields: vec![] };
        let mut buf = BytesMut::new();
        empty.encode(&mut buf).unwrap();
        assert!(RowDescription::parse(&buf.freeze()).unwrap().is_empty());
    }

    #[test]
    fn rejects_bad_count_and_format() {
        assert!(matches!(
            RowDescription::parse(&Bytes::from_static(b"T\0\0\0\x06\x00\x02")),
            Err(ProtocolError::BadCount { .. })
        ));
        let mut buf = BytesMut::new();
        sample().encode(&mut buf).unwrap();
        let n = buf.len();
        buf[n - 1] = 7; // format code 7
        assert!(matches!(
            RowDescription::parse(&buf.freeze()),
            Err(ProtocolError::InvalidValue { .. })
        ));
    }
}
