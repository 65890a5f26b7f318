//! Messages the server (backend) sends, decoded from the backend's point of view (tag `D` here
//! is DataRow; from the client it would be Describe), and encoders for the ones the proxy
//! synthesizes or rewrites.

use bytes::{Bytes, BytesMut};

use crate::data_row::DataRow;
use crate::error::{Direction, ProtocolError};
use crate::error_response::{ErrorResponse, NoticeResponse};
use crate::format::Format;
use crate::read::{tagged, Reader};
use crate::row_description::RowDescription;
use crate::startup::{MAX_SECRET_KEY_LEN, MIN_SECRET_KEY_LEN};
use crate::write::encode_message;

/// Transaction status carried by ReadyForQuery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionStatus {
    /// `I`: not in a transaction block.
    Idle,
    /// `T`: in a transaction block.
    InTransaction,
    /// `E`: in a failed transaction block (statements are rejected until it ends).
    Failed,
}

impl TransactionStatus {
    /// The wire byte.
    #[must_use]
    pub fn byte(self) -> u8 {
        match self {
            TransactionStatus::Idle => b'I',
            TransactionStatus::InTransaction => b'T',
            TransactionStatus::Failed => b'E',
        }
    }

    /// Maps a wire byte.
    #[must_use]
    pub fn from_byte(b: u8) -> Option<TransactionStatus> {
        match b {
            b'I' => Some(TransactionStatus::Idle),
            b'T' => Some(TransactionStatus::InTransaction),
            b'E' => Some(TransactionStatus::Failed),
            _ => None,
        }
    }
}

/// An Authentication* message: the Int32 subtype (0 = Ok, 3 = cleartext, 5 = MD5, 10 = SASL,
/// 11 = SASLContinue, 12 = SASLFinal, ...) and the rest of the body kept raw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authentication {
    /// Authentication subtype.
    pub subtype: i32,
    /// The bytes after the subtype (salt, SASL mechanisms or data).
    pub data: Bytes,
}

impl Authentication {
    /// Subtype of AuthenticationOk.
    pub const OK: i32 = 0;

    /// AuthenticationOk.
    #[must_use]
    pub fn ok() -> Authentication {
        Authentication {
            subtype: Self::OK,
            data: Bytes::new(),
        }
    }
}

/// BackendKeyData: the key a client needs to cancel its queries (4-byte secret in protocol 3.0,
/// 4 to 256 bytes in 3.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendKeyData {
    /// Process id.
    pub pid: i32,
    /// Secret key.
    pub secret_key: Bytes,
}

/// CopyInResponse, CopyOutResponse or CopyBothResponse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyResponse {
    /// Overall format: text (rows are lines) or binary.
    pub format: Format,
    /// Per-column formats (all text when `format` is text).
    pub column_formats: Vec<Format>,
}

/// NotificationResponse: a NOTIFY delivered to this session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationResponse {
    /// Process id of the notifying backend.
    pub pid: i32,
    /// Channel name.
    pub channel: String,
    /// Payload (may carry data: mask it).
    pub payload: String,
}

/// A decoded backend message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendMessage {
    /// `R`: authentication request or result.
    Authentication(Authentication),
    /// `K`: cancellation key.
    BackendKeyData(BackendKeyData),
    /// `S`: a run-time parameter's value.
    ParameterStatus {
        /// Parameter name.
        name: String,
        /// Its value.
        value: String,
    },
    /// `Z`: ready for a new query.
    ReadyForQuery(TransactionStatus),
    /// `T`: columns of the rows that follow.
    RowDescription(RowDescription),
    /// `D`: a result row.
    DataRow(DataRow),
    /// `C`: a command finished.
    CommandComplete {
        /// The command tag, e.g. `SELECT 5`.
        tag: String,
    },
    /// `I`: the query string was empty.
    EmptyQueryResponse,
    /// `E`: an error.
    ErrorResponse(ErrorResponse),
    /// `N`: a notice.
    NoticeResponse(NoticeResponse),
    /// `1`.
    ParseComplete,
    /// `2`.
    BindComplete,
    /// `3`.
    CloseComplete,
    /// `n`: the statement or portal returns no rows.
    NoData,
    /// `t`: parameter types of a described statement.
    ParameterDescription {
        /// Parameter type OIDs.
        types: Vec<u32>,
    },
    /// `s`: Execute's row limit was reached.
    PortalSuspended,
    /// `G`: the server is ready to receive COPY data.
    CopyInResponse(CopyResponse),
    /// `H`: COPY TO STDOUT data follows.
    CopyOutResponse(CopyResponse),
    /// `W`: bidirectional copy (replication).
    CopyBothResponse(CopyResponse),
    /// `d`: COPY data.
    CopyData(Bytes),
    /// `c`: end of COPY data.
    CopyDone,
    /// `A`: asynchronous notification.
    NotificationResponse(NotificationResponse),
    /// `V`: result of a fast-path function call (`None` = NULL).
    FunctionCallResponse {
        /// The result value.
        value: Option<Bytes>,
    },
    /// `v`: the server does not support the requested minor version or `_pq_.` options.
    NegotiateProtocolVersion {
        /// Newest minor version the server supports.
        newest_minor: i32,
        /// Protocol options the server did not recognize.
        unrecognized: Vec<String>,
    },
}

fn read_copy_response(r: &mut Reader<'_>) -> Result<CopyResponse, ProtocolError> {
    let f = r.u8("overall format")?;
    let format =
        Format::from_code(i16::from(f)).ok_or_else(|| r.invalid("overall format", i64::from(f)))?;
    let n = r.count16("column count", 2)?;
    let column_formats = (0..n)
        .map(|_| {
            let c = r.i16("column format")?;
            Format::from_code(c).ok_or_else(|| r.invalid("column format", i64::from(c)))
        })
        .collect::<Result<_, _>>()?;
    Ok(CopyResponse {
        format,
        column_formats,
    })
}

impl BackendMessage {
    /// The message type name for a backend tag byte, or `None` if it is not a backend message.
    #[must_use]
    pub fn tag_name(tag: u8) -> Option<&'static str> {
        Some(match tag {
            b'R' => "Authentication",
            b'K' => "BackendKeyData",
            b'S' => "ParameterStatus",
            b'Z' => "ReadyForQuery",
            b'T' => "RowDescription",
            b'D' => "DataRow",
            b'C' => "CommandComplete",
            b'I' => "EmptyQueryResponse",
            b'E' => "ErrorResponse",
            b'N' => "NoticeResponse",
            b'1' => "ParseComplete",
            b'2' => "BindComplete",
            b'3' => "CloseComplete",
            b'n' => "NoData",
            b't' => "ParameterDescription",
            b's' => "PortalSuspended",
            b'G' => "CopyInResponse",
            b'H' => "CopyOutResponse",
            b'W' => "CopyBothResponse",
            b'd' => "CopyData",
            b'c' => "CopyDone",
            b'A' => "NotificationResponse",
            b'V' => "FunctionCallResponse",
            b'v' => "NegotiateProtocolVersion",
            _ => return None,
        })
    }

    /// The tag byte.
    #[must_use]
    pub fn tag(&self) -> u8 {
        match self {
            BackendMessage::Authentication(_) => b'R',
            BackendMessage::BackendKeyData(_) => b'K',
            BackendMessage::ParameterStatus { .. } => b'S',
            BackendMessage::ReadyForQuery(_) => b'Z',
            BackendMessage::RowDescription(_) => b'T',
            BackendMessage::DataRow(_) => b'D',
            BackendMessage::CommandComplete { .. } => b'C',
            BackendMessage::EmptyQueryResponse => b'I',
            BackendMessage::ErrorResponse(_) => b'E',
            BackendMessage::NoticeResponse(_) => b'N',
            BackendMessage::ParseComplete => b'1',
            BackendMessage::BindComplete => b'2',
            BackendMessage::CloseComplete => b'3',
            BackendMessage::NoData => b'n',
            BackendMessage::ParameterDescription { .. } => b't',
            BackendMessage::PortalSuspended => b's',
            BackendMessage::CopyInResponse(_) => b'G',
            BackendMessage::CopyOutResponse(_) => b'H',
            BackendMessage::CopyBothResponse(_) => b'W',
            BackendMessage::CopyData(_) => b'd',
            BackendMessage::CopyDone => b'c',
            BackendMessage::NotificationResponse(_) => b'A',
            BackendMessage::FunctionCallResponse { .. } => b'V',
            BackendMessage::NegotiateProtocolVersion { .. } => b'v',
        }
    }

    /// The message type name (for logs and errors).
    #[must_use]
    pub fn name(&self) -> &'static str {
        Self::tag_name(self.tag()).unwrap_or("backend message")
    }

    /// Parses one raw tagged message as returned by [`crate::frame::split_message`]. DataRow,
    /// CopyData and error fields keep zero-copy references to `raw`.
    ///
    /// # Errors
    /// An unknown tag, a header that does not match the slice, or any malformed field.
    pub fn parse(raw: &Bytes) -> Result<BackendMessage, ProtocolError> {
        Self::parse_in(raw, crate::TextEncoding::UTF8)
    }

    /// [`BackendMessage::parse`] with text fields (names, messages, tags) in `text`, the
    /// session's client encoding.
    ///
    /// # Errors
    /// As [`BackendMessage::parse`]; text malformed in `text`.
    pub fn parse_in(
        raw: &Bytes,
        text: crate::TextEncoding,
    ) -> Result<BackendMessage, ProtocolError> {
        let tag = crate::frame::tag(raw);
        let name = Self::tag_name(tag).ok_or(ProtocolError::UnknownTag {
            direction: Direction::Backend,
            tag,
        })?;
        match tag {
            b'D' => return DataRow::parse(raw.clone()).map(BackendMessage::DataRow),
            b'T' => return RowDescription::parse_in(raw, text).map(BackendMessage::RowDescription),
            b'E' => return ErrorResponse::parse_in(raw, text).map(BackendMessage::ErrorResponse),
            b'N' => return NoticeResponse::parse_in(raw, text).map(BackendMessage::NoticeResponse),
            _ => {}
        }
        let mut r = tagged(raw, name)?.with_text(text);
        let msg = match tag {
            b'R' => {
                let subtype = r.i32("authentication subtype")?;
                BackendMessage::Authentication(Authentication {
                    subtype,
                    data: r.rest(),
                })
            }
            b'K' => {
                let pid = r.i32("process id")?;
                let n = r.remaining();
                if !(MIN_SECRET_KEY_LEN..=MAX_SECRET_KEY_LEN).contains(&n) {
                    return Err(r.invalid("secret key length", n as i64));
                }
                BackendMessage::BackendKeyData(BackendKeyData {
                    pid,
                    secret_key: r.rest(),
                })
            }
            b'S' => BackendMessage::ParameterStatus {
                name: r.string("parameter name")?,
                value: r.string("parameter value")?,
            },
            b'Z' => {
                let b = r.u8("transaction status")?;
                BackendMessage::ReadyForQuery(
                    TransactionStatus::from_byte(b)
                        .ok_or_else(|| r.invalid("transaction status", i64::from(b)))?,
                )
            }
            b'C' => BackendMessage::CommandComplete {
                tag: r.string("command tag")?,
            },
            b'I' => BackendMessage::EmptyQueryResponse,
            b'1' => BackendMessage::ParseComplete,
            b'2' => BackendMessage::BindComplete,
            b'3' => BackendMessage::CloseComplete,
            b'n' => BackendMessage::NoData,
            b't' => {
                let n = r.count16("parameter count", 4)?;
                BackendMessage::ParameterDescription {
                    types: (0..n)
                        .map(|_| r.u32("parameter type"))
                        .collect::<Result<_, _>>()?,
                }
            }
            b's' => BackendMessage::PortalSuspended,
            b'G' => BackendMessage::CopyInResponse(read_copy_response(&mut r)?),
            b'H' => BackendMessage::CopyOutResponse(read_copy_response(&mut r)?),
            b'W' => BackendMessage::CopyBothResponse(read_copy_response(&mut r)?),
            b'd' => BackendMessage::CopyData(r.rest()),
            b'c' => BackendMessage::CopyDone,
            b'A' => BackendMessage::NotificationResponse(NotificationResponse {
                pid: r.i32("process id")?,
                channel: r.string("channel")?,
                payload: r.string("payload")?,
            }),
            b'V' => BackendMessage::FunctionCallResponse {
                value: r.nullable_bytes("result value")?,
            },
            // b'v': the only remaining tag accepted by tag_name.
            _ => {
                let newest_minor = r.i32("newest minor version")?;
                let n = r.count32("option count", 1)?;
                BackendMessage::NegotiateProtocolVersion {
                    newest_minor,
                    unrecognized: (0..n)
                        .map(|_| r.string("option name"))
                        .collect::<Result<_, _>>()?,
                }
            }
        };
        r.finish()?;
        Ok(msg)
    }

    /// Appends the encoded message to `dst`.
    ///
    /// # Errors
    /// A string contains a NUL byte, a key has an invalid length, or a count or value is too
    /// large for the wire format.
    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        match self {
            BackendMessage::DataRow(row) => {
                dst.extend_from_slice(row.raw());
                return Ok(());
            }
            BackendMessage::RowDescription(rd) => return rd.encode(dst),
            BackendMessage::ErrorResponse(e) => return e.encode(dst),
            BackendMessage::NoticeResponse(n) => return n.encode(dst),
            _ => {}
        }
        encode_message(dst, Some(self.tag()), self.name(), |w| {
            match self {
                BackendMessage::Authentication(a) => {
                    w.i32(a.subtype);
                    w.bytes(&a.data);
                }
                BackendMessage::BackendKeyData(k) => {
                    if !(MIN_SECRET_KEY_LEN..=MAX_SECRET_KEY_LEN).contains(&k.secret_key.len()) {
                        return Err(w.unencodable("secret key must be 4 to 256 bytes"));
                    }
                    w.i32(k.pid);
                    w.bytes(&k.secret_key);
                }
                BackendMessage::ParameterStatus { name, value } => {
                    w.cstr(name)?;
                    w.cstr(value)?;
                }
                BackendMessage::ReadyForQuery(s) => w.u8(s.byte()),
                BackendMessage::CommandComplete { tag } => w.cstr(tag)?,
                BackendMessage::ParameterDescription { types } => {
                    w.count16(types.len())?;
                    for t in types {
                        w.u32(*t);
                    }
                }
                BackendMessage::CopyInResponse(c)
                | BackendMessage::CopyOutResponse(c)
                | BackendMessage::CopyBothResponse(c) => {
                    w.u8(c.format.code() as u8);
                    w.count16(c.column_formats.len())?;
                    for f in &c.column_formats {
                        w.i16(f.code());
                    }
                }
                BackendMessage::CopyData(d) => w.bytes(d),
                BackendMessage::NotificationResponse(n) => {
                    w.i32(n.pid);
                    w.cstr(&n.channel)?;
                    w.cstr(&n.payload)?;
                }
                BackendMessage::FunctionCallResponse { value } => w.nullable(value.as_deref())?,
                BackendMessage::NegotiateProtocolVersion {
                    newest_minor,
                    unrecognized,
                } => {
                    w.i32(*newest_minor);
                    let n = i32::try_from(unrecognized.len())
                        .map_err(|_| w.unencodable("too many options"))?;
                    w.i32(n);
                    for o in unrecognized {
                        w.cstr(o)?;
                    }
                }
                // Bodiless messages; the four delegated variants returned above.
                _ => {}
            }
            Ok(())
        })
    }

    /// Encodes into a fresh buffer.
    ///
    /// # Errors
    /// As [`BackendMessage::encode`].
    pub fn to_bytes(&self) -> Result<Bytes, ProtocolError> {
        let mut buf = BytesMut::new();
        self.encode(&mut buf)?;
        Ok(buf.freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data_row::encode_data_row;
    use crate::row_description::FieldDescription;

    fn samples() -> Vec<BackendMessage> {
        let mut row = BytesMut::new();
        encode_data_row(&[Some(b"1"), None], &mut row).unwrap();
        vec![
            BackendMessage::Authentication(Authentication::ok()),
            BackendMessage::Authentication(Authentication {
                subtype: 10,
                data: Bytes::from_static(b"SCRAM-SHA-256\0\0"),
            }),
            BackendMessage::BackendKeyData(BackendKeyData {
                pid: 77,
                secret_key: Bytes::from_static(b"\x01\x02\x03\x04"),
            }),
            BackendMessage::BackendKeyData(BackendKeyData {
                pid: 77,
                secret_key: Bytes::from(vec![9u8; 32]),
            }),
            BackendMessage::ParameterStatus {
                name: "server_version".into(),
                value: "17.2".into(),
            },
            BackendMessage::ReadyForQuery(TransactionStatus::Idle),
            BackendMessage::ReadyForQuery(TransactionStatus::InTransaction),
            BackendMessage::ReadyForQuery(TransactionStatus::Failed),
            BackendMessage::RowDescription(RowDescription {
                fields: vec![FieldDescription {
                    name: "pan".into(),
                    table_oid: 1,
                    column_attr: 2,
                    type_oid: 25,
                    type_len: -1,
                    type_mod: -1,
                    format: Format::Text,
                }],
            }),
            BackendMessage::DataRow(DataRow::parse(row.freeze()).unwrap()),
            BackendMessage::CommandComplete {
                tag: "SELECT 1".into(),
            },
            BackendMessage::EmptyQueryResponse,
            BackendMessage::ErrorResponse(ErrorResponse::insufficient_privilege("no", None, None)),
            BackendMessage::NoticeResponse(NoticeResponse::notice("held")),
            BackendMessage::ParseComplete,
            BackendMessage::BindComplete,
            BackendMessage::CloseComplete,
            BackendMessage::NoData,
            BackendMessage::ParameterDescription {
                types: vec![20, 25],
            },
            BackendMessage::PortalSuspended,
            BackendMessage::CopyInResponse(CopyResponse {
                format: Format::Text,
                column_formats: vec![Format::Text; 2],
            }),
            BackendMessage::CopyOutResponse(CopyResponse {
                format: Format::Binary,
                column_formats: vec![Format::Binary],
            }),
            BackendMessage::CopyBothResponse(CopyResponse {
                format: Format::Binary,
                column_formats: vec![],
            }),
            BackendMessage::CopyData(Bytes::from_static(b"1\t4111\n")),
            BackendMessage::CopyDone,
            BackendMessage::NotificationResponse(NotificationResponse {
                pid: 5,
                channel: "ch".into(),
                payload: "p".into(),
            }),
            BackendMessage::FunctionCallResponse { value: None },
            BackendMessage::FunctionCallResponse {
                value: Some(Bytes::from_static(b"abc")),
            },
            BackendMessage::NegotiateProtocolVersion {
                newest_minor: 0,
                unrecognized: vec!["_pq_.x".into()],
            },
        ]
    }

    #[test]
    fn round_trip_every_message() {
        for m in samples() {
            let raw = m.to_bytes().unwrap();
            assert_eq!(BackendMessage::parse(&raw).unwrap(), m, "{}", m.name());
            assert_eq!(raw[0], m.tag());
        }
    }

    #[test]
    fn rejects_malformed() {
        let bad: &[&[u8]] = &[
            b"Q\0\0\0\x04",                         // frontend tag
            b"Z\0\0\0\x05X",                        // bad status
            b"Z\0\0\0\x04",                         // missing status
            b"K\0\0\0\x0a\0\0\0\x01\0\0",           // 2-byte key
            b"t\0\0\0\x06\x00\x05",                 // count > body
            b"H\0\0\0\x07\x02\x00\x00",             // bad overall format
            b"v\0\0\0\x0c\0\0\0\0\x7f\xff\xff\xff", // option count > body
            b"A\0\0\0\x09\0\0\0\x01c",              // channel missing NUL
            b"C\0\0\0\x06x\0\0",                    // header mismatch
            b"1\0\0\0\x05\0",                       // trailing byte
        ];
        for raw in bad {
            assert!(
                BackendMessage::parse(&Bytes::from_static(raw)).is_err(),
                "{raw:?}"
            );
        }
    }
}
