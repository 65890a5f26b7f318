//! Messages a client (frontend) sends after the startup packet, decoded from the frontend's point
//! of view (tag `D` here is Describe; from the server it would be DataRow).
//!
//! Parsing is strict: every length and count is checked against the bytes present, strings must
//! be NUL-terminated UTF-8, and trailing bytes are an error. Values (`Bind` parameters, `CopyData`)
//! are zero-copy slices of the raw message.

use bytes::{Bytes, BytesMut};

use crate::error::{Direction, ProtocolError};
use crate::read::{tagged, Reader};
use crate::write::{encode_message, Writer};

/// What a Describe or Close message refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// A prepared statement (`S`).
    Statement,
    /// A portal (`P`).
    Portal,
}

impl Target {
    fn parse(r: &mut Reader<'_>) -> Result<Target, ProtocolError> {
        match r.u8("target kind")? {
            b'S' => Ok(Target::Statement),
            b'P' => Ok(Target::Portal),
            other => Err(r.invalid("target kind (expected 'S' or 'P')", i64::from(other))),
        }
    }

    fn byte(self) -> u8 {
        match self {
            Target::Statement => b'S',
            Target::Portal => b'P',
        }
    }
}

/// Bind: create a portal from a prepared statement and parameter values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    /// Destination portal ("" = unnamed).
    pub portal: String,
    /// Source prepared statement ("" = unnamed).
    pub statement: String,
    /// Parameter format codes: none (all text), one (applies to all) or one per parameter.
    pub param_formats: Vec<i16>,
    /// Parameter values; `None` is SQL NULL. Zero-copy slices of the raw message.
    pub params: Vec<Option<Bytes>>,
    /// Result column format codes: none (all text), one (applies to all) or one per column.
    pub result_formats: Vec<i16>,
}

/// FunctionCall: the legacy fast-path call of a function by OID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionCall {
    /// OID of the function to call.
    pub oid: u32,
    /// Argument format codes (none, one, or one per argument).
    pub arg_formats: Vec<i16>,
    /// Argument values; `None` is SQL NULL.
    pub args: Vec<Option<Bytes>>,
    /// Format code of the result.
    pub result_format: i16,
}

/// A decoded frontend message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrontendMessage {
    /// `Q`: simple query; may contain several statements.
    Query {
        /// The SQL text.
        sql: String,
    },
    /// `P`: create a prepared statement.
    Parse {
        /// Statement name ("" = unnamed).
        name: String,
        /// The SQL text.
        query: String,
        /// Parameter type OIDs the client specifies (0 = unspecified).
        param_types: Vec<u32>,
    },
    /// `B`: bind parameters into a portal.
    Bind(Bind),
    /// `D`: describe a statement or portal.
    Describe {
        /// Statement or portal.
        kind: Target,
        /// Its name.
        name: String,
    },
    /// `E`: execute a portal.
    Execute {
        /// Portal name.
        portal: String,
        /// Row limit, 0 = no limit.
        max_rows: i32,
    },
    /// `C`: close a statement or portal.
    Close {
        /// Statement or portal.
        kind: Target,
        /// Its name.
        name: String,
    },
    /// `S`: end of an extended-protocol batch.
    Sync,
    /// `H`: ask the server to flush its output.
    Flush,
    /// `X`: the client is closing the connection.
    Terminate,
    /// `d`: COPY FROM STDIN data.
    CopyData(Bytes),
    /// `c`: end of COPY FROM STDIN data.
    CopyDone,
    /// `f`: COPY FROM STDIN aborted by the client.
    CopyFail {
        /// The client's reason.
        message: String,
    },
    /// `F`: fast-path function call.
    FunctionCall(FunctionCall),
    /// `p`: PasswordMessage, SASLInitialResponse, SASLResponse or GSSResponse. Its layout
    /// depends on the authentication exchange, so the body is kept raw (and must never be logged).
    Password(Bytes),
}

fn check_formats(
    r: &Reader<'_>,
    what: &'static str,
    formats: &[i16],
    values: usize,
) -> Result<(), ProtocolError> {
    if formats.len() > 1 && formats.len() != values {
        return Err(r.invalid(what, formats.len() as i64));
    }
    Ok(())
}

fn read_formats(r: &mut Reader<'_>, what: &'static str) -> Result<Vec<i16>, ProtocolError> {
    let n = r.count16(what, 2)?;
    (0..n).map(|_| r.i16(what)).collect()
}

fn read_values(
    r: &mut Reader<'_>,
    what: &'static str,
) -> Result<Vec<Option<Bytes>>, ProtocolError> {
    let n = r.count16(what, 4)?;
    (0..n).map(|_| r.nullable_bytes(what)).collect()
}

fn write_formats(w: &mut Writer<'_>, formats: &[i16]) -> Result<(), ProtocolError> {
    w.count16(formats.len())?;
    for f in formats {
        w.i16(*f);
    }
    Ok(())
}

fn write_values(w: &mut Writer<'_>, values: &[Option<Bytes>]) -> Result<(), ProtocolError> {
    w.count16(values.len())?;
    for v in values {
        w.nullable(v.as_deref())?;
    }
    Ok(())
}

impl FrontendMessage {
    /// The message type name for a frontend tag byte, or `None` if it is not a frontend message.
    #[must_use]
    pub fn tag_name(tag: u8) -> Option<&'static str> {
        Some(match tag {
            b'Q' => "Query",
            b'P' => "Parse",
            b'B' => "Bind",
            b'D' => "Describe",
            b'E' => "Execute",
            b'C' => "Close",
            b'S' => "Sync",
            b'H' => "Flush",
            b'X' => "Terminate",
            b'd' => "CopyData",
            b'c' => "CopyDone",
            b'f' => "CopyFail",
            b'F' => "FunctionCall",
            b'p' => "PasswordMessage",
            _ => return None,
        })
    }

    /// The message type name (for logs and errors).
    #[must_use]
    pub fn name(&self) -> &'static str {
        Self::tag_name(self.tag()).unwrap_or("frontend message")
    }

    /// The tag byte.
    #[must_use]
    pub fn tag(&self) -> u8 {
        match self {
            FrontendMessage::Query { .. } => b'Q',
            FrontendMessage::Parse { .. } => b'P',
            FrontendMessage::Bind(_) => b'B',
            FrontendMessage::Describe { .. } => b'D',
            FrontendMessage::Execute { .. } => b'E',
            FrontendMessage::Close { .. } => b'C',
            FrontendMessage::Sync => b'S',
            FrontendMessage::Flush => b'H',
            FrontendMessage::Terminate => b'X',
            FrontendMessage::CopyData(_) => b'd',
            FrontendMessage::CopyDone => b'c',
            FrontendMessage::CopyFail { .. } => b'f',
            FrontendMessage::FunctionCall(_) => b'F',
            FrontendMessage::Password(_) => b'p',
        }
    }

    /// Parses one raw tagged message as returned by [`crate::frame::split_message`].
    ///
    /// # Errors
    /// An unknown tag, a header that does not match the slice, or any malformed field.
    pub fn parse(raw: &Bytes) -> Result<FrontendMessage, ProtocolError> {
        Self::parse_in(raw, crate::TextEncoding::UTF8)
    }

    /// [`FrontendMessage::parse`] with text fields (query strings, names) in `text`, the
    /// session's client encoding.
    ///
    /// # Errors
    /// As [`FrontendMessage::parse`]; text malformed in `text`.
    pub fn parse_in(
        raw: &Bytes,
        text: crate::TextEncoding,
    ) -> Result<FrontendMessage, ProtocolError> {
        let tag = crate::frame::tag(raw);
        let name = Self::tag_name(tag).ok_or(ProtocolError::UnknownTag {
            direction: Direction::Frontend,
            tag,
        })?;
        let mut r = tagged(raw, name)?.with_text(text);
        let msg = match tag {
            b'Q' => FrontendMessage::Query {
                sql: r.string("query string")?,
            },
            b'P' => {
                let name = r.string("statement name")?;
                let query = r.string("query string")?;
                let n = r.count16("parameter type count", 4)?;
                let param_types = (0..n)
                    .map(|_| r.u32("parameter type"))
                    .collect::<Result<_, _>>()?;
                FrontendMessage::Parse {
                    name,
                    query,
                    param_types,
                }
            }
            b'B' => {
                let portal = r.string("portal name")?;
                let statement = r.string("statement name")?;
                let param_formats = read_formats(&mut r, "parameter format count")?;
                let params = read_values(&mut r, "parameter count")?;
                check_formats(
                    &r,
                    "parameter format count (must be 0, 1 or the parameter count)",
                    &param_formats,
                    params.len(),
                )?;
                let result_formats = read_formats(&mut r, "result format count")?;
                FrontendMessage::Bind(Bind {
                    portal,
                    statement,
                    param_formats,
                    params,
                    result_formats,
                })
            }
            b'D' | b'C' => {
                let kind = Target::parse(&mut r)?;
                let name = r.string("name")?;
                if tag == b'D' {
                    FrontendMessage::Describe { kind, name }
                } else {
                    FrontendMessage::Close { kind, name }
                }
            }
            b'E' => FrontendMessage::Execute {
                portal: r.string("portal name")?,
                max_rows: r.i32("row limit")?,
            },
            b'S' => FrontendMessage::Sync,
            b'H' => FrontendMessage::Flush,
            b'X' => FrontendMessage::Terminate,
            b'd' => FrontendMessage::CopyData(r.rest()),
            b'c' => FrontendMessage::CopyDone,
            b'f' => FrontendMessage::CopyFail {
                message: r.string("error message")?,
            },
            b'F' => {
                let oid = r.u32("function OID")?;
                let arg_formats = read_formats(&mut r, "argument format count")?;
                let args = read_values(&mut r, "argument count")?;
                check_formats(
                    &r,
                    "argument format count (must be 0, 1 or the argument count)",
                    &arg_formats,
                    args.len(),
                )?;
                let result_format = r.i16("result format")?;
                FrontendMessage::FunctionCall(FunctionCall {
                    oid,
                    arg_formats,
                    args,
                    result_format,
                })
            }
            // b'p': the only remaining tag accepted by tag_name.
            _ => FrontendMessage::Password(r.rest()),
        };
        r.finish()?;
        Ok(msg)
    }

    /// Appends the encoded message to `dst`.
    ///
    /// # Errors
    /// A string contains a NUL byte, or a count or value is too large for the wire format.
    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        encode_message(dst, Some(self.tag()), self.name(), |w| {
            match self {
                FrontendMessage::Query { sql } => w.cstr(sql)?,
                FrontendMessage::Parse {
                    name,
                    query,
                    param_types,
                } => {
                    w.cstr(name)?;
                    w.cstr(query)?;
                    w.count16(param_types.len())?;
                    for t in param_types {
                        w.u32(*t);
                    }
                }
                FrontendMessage::Bind(b) => {
                    w.cstr(&b.portal)?;
                    w.cstr(&b.statement)?;
                    write_formats(w, &b.param_formats)?;
                    write_values(w, &b.params)?;
                    write_formats(w, &b.result_formats)?;
                }
                FrontendMessage::Describe { kind, name }
                | FrontendMessage::Close { kind, name } => {
                    w.u8(kind.byte());
                    w.cstr(name)?;
                }
                FrontendMessage::Execute { portal, max_rows } => {
                    w.cstr(portal)?;
                    w.i32(*max_rows);
                }
                FrontendMessage::Sync
                | FrontendMessage::Flush
                | FrontendMessage::Terminate
                | FrontendMessage::CopyDone => {}
                FrontendMessage::CopyData(data) | FrontendMessage::Password(data) => w.bytes(data),
                FrontendMessage::CopyFail { message } => w.cstr(message)?,
                FrontendMessage::FunctionCall(f) => {
                    w.u32(f.oid);
                    write_formats(w, &f.arg_formats)?;
                    write_values(w, &f.args)?;
                    w.i16(f.result_format);
                }
            }
            Ok(())
        })
    }

    /// Encodes into a fresh buffer.
    ///
    /// # Errors
    /// As [`FrontendMessage::encode`].
    pub fn to_bytes(&self) -> Result<Bytes, ProtocolError> {
        let mut buf = BytesMut::new();
        self.encode(&mut buf)?;
        Ok(buf.freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn samples() -> Vec<FrontendMessage> {
        vec![
            FrontendMessage::Query {
                sql: "SELECT 1; SELECT 'é'".into(),
            },
            FrontendMessage::Parse {
                name: "s1".into(),
                query: "SELECT $1::int8".into(),
                param_types: vec![20, 0],
            },
            FrontendMessage::Bind(Bind {
                portal: String::new(),
                statement: "s1".into(),
                param_formats: vec![1],
                params: vec![
                    Some(Bytes::from_static(&[0, 0, 0, 0, 0, 0, 0, 7])),
                    None,
                    Some(Bytes::new()),
                ],
                result_formats: vec![0, 1],
            }),
            FrontendMessage::Describe {
                kind: Target::Statement,
                name: "s1".into(),
            },
            FrontendMessage::Describe {
                kind: Target::Portal,
                name: String::new(),
            },
            FrontendMessage::Execute {
                portal: String::new(),
                max_rows: 10,
            },
            FrontendMessage::Close {
                kind: Target::Portal,
                name: "p".into(),
            },
            FrontendMessage::Sync,
            FrontendMessage::Flush,
            FrontendMessage::Terminate,
            FrontendMessage::CopyData(Bytes::from_static(b"1\t2\n")),
            FrontendMessage::CopyDone,
            FrontendMessage::CopyFail {
                message: "client abort".into(),
            },
            FrontendMessage::FunctionCall(FunctionCall {
                oid: 1598,
                arg_formats: vec![],
                args: vec![None, Some(Bytes::from_static(b"x"))],
                result_format: 1,
            }),
            FrontendMessage::Password(Bytes::from_static(b"secret\0")),
        ]
    }

    #[test]
    fn round_trip_every_message() {
        for m in samples() {
            let raw = m.to_bytes().unwrap();
            assert_eq!(FrontendMessage::parse(&raw).unwrap(), m, "{}", m.name());
            assert_eq!(raw[0], m.tag());
        }
    }

    #[test]
    fn rejects_malformed() {
        let bad: &[&[u8]] = &[
            b"Z\0\0\0\x04",                               // unknown tag
            b"Q\0\0\0\x05x",                              // missing NUL
            b"Q\0\0\0\x06\xff\0",                         // invalid UTF-8
            b"Q\0\0\0\x07x\0",                            // header longer than slice
            b"S\0\0\0\x05\0",                             // trailing byte
            b"D\0\0\0\x06Xa\0",                           // bad target
            b"P\0\0\0\x0ba\0b\0\x7f\xff",                 // param type count too large
            b"B\0\0\0\x0e\0\0\0\0\0\x01\0\0\0\x09",       // value length beyond body
            b"B\0\0\0\x0e\0\0\0\0\0\x01\xff\xff\xff\xfe", // negative value length
            b"E\0\0\0\x06p\0",                            // truncated row limit
            b"",
        ];
        for raw in bad {
            assert!(
                FrontendMessage::parse(&Bytes::from_static(raw)).is_err(),
                "{raw:?}"
            );
        }
    }

    #[test]
    fn encode_rejects_nul_in_strings() {
        let m = FrontendMessage::Query { sql: "a\0b".into() };
        assert!(m.to_bytes().is_err());
    }
}
