//! ErrorResponse and NoticeResponse: lists of (field code, value) pairs. Parsing keeps the raw
//! message so an unchanged response is forwarded without re-encoding; any change drops it.
//!
//! The named constructors are how dbwarden tells an agent "no" in its own protocol, e.g.
//! [`ErrorResponse::insufficient_privilege`] (SQLSTATE 42501) naming the rule that refused it.

use bytes::{Bytes, BytesMut};

use crate::error::ProtocolError;
use crate::read::tagged;
use crate::write::encode_message;

/// Field codes of ErrorResponse/NoticeResponse (see "Error and Notice Message Fields").
pub mod field {
    /// Severity, possibly localized (`ERROR`, `FATAL`, `NOTICE`, ...).
    pub const SEVERITY: u8 = b'S';
    /// Severity, never localized (PostgreSQL 9.6+).
    pub const SEVERITY_NONLOCALIZED: u8 = b'V';
    /// SQLSTATE code.
    pub const CODE: u8 = b'C';
    /// Primary message.
    pub const MESSAGE: u8 = b'M';
    /// Detail (may echo data, e.g. the key of a unique violation).
    pub const DETAIL: u8 = b'D';
    /// Hint.
    pub const HINT: u8 = b'H';
    /// Cursor position in the query string.
    pub const POSITION: u8 = b'P';
    /// Position in an internally generated query.
    pub const INTERNAL_POSITION: u8 = b'p';
    /// Internally generated query text.
    pub const INTERNAL_QUERY: u8 = b'q';
    /// Context (call stack).
    pub const WHERE: u8 = b'W';
    /// Schema name.
    pub const SCHEMA: u8 = b's';
    /// Table name.
    pub const TABLE: u8 = b't';
    /// Column name.
    pub const COLUMN: u8 = b'c';
    /// Data type name.
    pub const DATA_TYPE: u8 = b'd';
    /// Constraint name.
    pub const CONSTRAINT: u8 = b'n';
    /// Source file.
    pub const FILE: u8 = b'F';
    /// Source line.
    pub const LINE: u8 = b'L';
    /// Source routine.
    pub const ROUTINE: u8 = b'R';
}

/// SQLSTATE codes dbwarden uses or recognizes.
pub mod sqlstate {
    /// insufficient_privilege: a statement refused by policy.
    pub const INSUFFICIENT_PRIVILEGE: &str = "42501";
    /// syntax_error: what the server answers to a refusal marker.
    pub const SYNTAX_ERROR: &str = "42601";
    /// protocol_violation.
    pub const PROTOCOL_VIOLATION: &str = "08P01";
    /// query_canceled (e.g. an approval that timed out).
    pub const QUERY_CANCELED: &str = "57014";
    /// admin_shutdown (the daemon is stopping).
    pub const ADMIN_SHUTDOWN: &str = "57P01";
    /// successful_completion (used by notices).
    pub const SUCCESSFUL_COMPLETION: &str = "00000";
}

/// Replaces NUL bytes, which cannot appear in a wire string, with U+FFFD.
fn sanitize(value: String) -> String {
    if value.contains('\0') {
        value.replace('\0', "\u{fffd}")
    } else {
        value
    }
}

macro_rules! fields_message {
    ($ty:ident, $tag:expr, $name:expr) => {
        impl $ty {
            /// Builds a response from (field code, value) pairs. NUL bytes in values are replaced.
            #[must_use]
            pub fn from_fields(fields: Vec<(u8, String)>) -> Self {
                $ty {
                    fields: fields.into_iter().map(|(c, v)| (c, sanitize(v))).collect(),
                    raw: None,
                }
            }

            /// Builds a response with severity (both `S` and `V`), SQLSTATE and message.
            #[must_use]
            pub fn new(severity: &str, code: &str, message: impl Into<String>) -> Self {
                Self::from_fields(vec![
                    (field::SEVERITY, severity.to_owned()),
                    (field::SEVERITY_NONLOCALIZED, severity.to_owned()),
                    (field::CODE, code.to_owned()),
                    (field::MESSAGE, message.into()),
                ])
            }

            /// Adds or replaces the DETAIL field.
            #[must_use]
            pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
                self.set_field(field::DETAIL, detail);
                self
            }

            /// Adds or replaces the HINT field.
            #[must_use]
            pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
                self.set_field(field::HINT, hint);
                self
            }

            /// Parses a raw message, keeping it for zero-copy forwarding.
            ///
            /// # Errors
            /// Wrong tag or header, a field code without a NUL-terminated UTF-8 value, a missing
            /// terminator, or trailing bytes.
            pub fn parse(raw: &Bytes) -> Result<Self, ProtocolError> {
                Self::parse_in(raw, crate::TextEncoding::UTF8)
            }

            /// [`Self::parse`] with field values in `text`.
            ///
            /// # Errors
            /// As [`Self::parse`]; a value malformed in `text`.
            pub fn parse_in(raw: &Bytes, text: crate::TextEncoding) -> Result<Self, ProtocolError> {
                if crate::frame::tag(raw) != $tag {
                    return Err(ProtocolError::InvalidValue {
                        message: $name,
                        what: "type byte",
                        value: i64::from(crate::frame::tag(raw)),
                    });
                }
                let mut r = tagged(raw, $name)?.with_text(text);
                let mut fields = Vec::new();
                loop {
                    let code = r.u8("field code")?;
                    if code == 0 {
                        break;
                    }
                    fields.push((code, r.string("field value")?));
                }
                r.finish()?;
                Ok($ty {
                    fields,
                    raw: Some(raw.clone()),
                })
            }

            /// All fields in wire order.
            #[must_use]
            pub fn fields(&self) -> &[(u8, String)] {
                &self.fields
            }

            /// The value of the first field with this code.
            #[must_use]
            pub fn field(&self, code: u8) -> Option<&str> {
                self.fields
                    .iter()
                    .find(|(c, _)| *c == code)
                    .map(|(_, v)| v.as_str())
            }

            /// The severity (`V` if present, else `S`).
            #[must_use]
            pub fn severity(&self) -> Option<&str> {
                self.field(field::SEVERITY_NONLOCALIZED)
                    .or_else(|| self.field(field::SEVERITY))
            }

            /// The SQLSTATE code.
            #[must_use]
            pub fn code(&self) -> Option<&str> {
                self.field(field::CODE)
            }

            /// The primary message.
            #[must_use]
            pub fn message(&self) -> Option<&str> {
                self.field(field::MESSAGE)
            }

            /// Sets a field (replacing every existing field with that code, or appending).
            /// NUL bytes in `value` are replaced. Drops the kept raw message.
            pub fn set_field(&mut self, code: u8, value: impl Into<String>) {
                let value = sanitize(value.into());
                self.raw = None;
                let mut seen = false;
                self.fields.retain_mut(|(c, v)| {
                    if *c != code {
                        return true;
                    }
                    if seen {
                        return false;
                    }
                    seen = true;
                    v.clone_from(&value);
                    true
                });
                if !seen {
                    self.fields.push((code, value));
                }
            }

            /// Removes every field with this code. Drops the kept raw message if one was removed.
            pub fn remove_field(&mut self, code: u8) {
                let before = self.fields.len();
                self.fields.retain(|(c, _)| *c != code);
                if self.fields.len() != before {
                    self.raw = None;
                }
            }

            /// Rewrites field values (for masking): `f(code, value)` returns `Some(new)` to
            /// replace a value. Returns whether anything changed; if so the raw message is dropped.
            pub fn rewrite_fields(
                &mut self,
                mut f: impl FnMut(u8, &str) -> Option<String>,
            ) -> bool {
                let mut changed = false;
                for (code, value) in &mut self.fields {
                    if let Some(new) = f(*code, value) {
                        *value = sanitize(new);
                        changed = true;
                    }
                }
                if changed {
                    self.raw = None;
                }
                changed
            }

            /// The raw message this was parsed from, if it has not been modified since.
            #[must_use]
            pub fn raw(&self) -> Option<&Bytes> {
                self.raw.as_ref()
            }

            /// Appends the message to `dst` (copying the raw message if unmodified).
            ///
            /// # Errors
            /// A field code is 0 or the message would be too long.
            pub fn encode(&self, dst: &mut BytesMut) -> Result<(), ProtocolError> {
                if let Some(raw) = &self.raw {
                    dst.extend_from_slice(raw);
                    return Ok(());
                }
                encode_message(dst, Some($tag), $name, |w| {
                    for (code, value) in &self.fields {
                        if *code == 0 {
                            return Err(w.unencodable("field code 0"));
                        }
                        w.u8(*code);
                        w.cstr(value)?;
                    }
                    w.u8(0);
                    Ok(())
                })
            }

            /// Encodes into `Bytes` (the raw message itself if unmodified).
            ///
            /// # Errors
            /// As `encode`.
            pub fn to_bytes(&self) -> Result<Bytes, ProtocolError> {
                if let Some(raw) = &self.raw {
                    return Ok(raw.clone());
                }
                let mut buf = BytesMut::new();
                self.encode(&mut buf)?;
                Ok(buf.freeze())
            }
        }

        impl PartialEq for $ty {
            fn eq(&self, other: &Self) -> bool {
                self.fields == other.fields
            }
        }

        impl Eq for $ty {}
    };
}

/// ErrorResponse (`E`): a statement or the session failed.
#[derive(Debug, Clone)]
pub struct ErrorResponse {
    fields: Vec<(u8, String)>,
    raw: Option<Bytes>,
}

/// NoticeResponse (`N`): a warning or information; may arrive at any time.
#[derive(Debug, Clone)]
pub struct NoticeResponse {
    fields: Vec<(u8, String)>,
    raw: Option<Bytes>,
}

fields_message!(ErrorResponse, b'E', "ErrorResponse");
fields_message!(NoticeResponse, b'N', "NoticeResponse");

impl ErrorResponse {
    /// An `ERROR` with SQLSTATE 42501 (insufficient_privilege): how dbwarden refuses a statement.
    /// `message` should name the rule; `detail` and `hint` are optional.
    #[must_use]
    pub fn insufficient_privilege(
        message: impl Into<String>,
        detail: Option<&str>,
        hint: Option<&str>,
    ) -> Self {
        let mut e = Self::new("ERROR", sqlstate::INSUFFICIENT_PRIVILEGE, message);
        if let Some(d) = detail {
            e.set_field(field::DETAIL, d);
        }
        if let Some(h) = hint {
            e.set_field(field::HINT, h);
        }
        e
    }

    /// An `ERROR` with SQLSTATE 57014 (query_canceled), e.g. when an approval timed out.
    #[must_use]
    pub fn query_canceled(message: impl Into<String>) -> Self {
        Self::new("ERROR", sqlstate::QUERY_CANCELED, message)
    }

    /// A `FATAL` with SQLSTATE 08P01 (protocol_violation), sent before closing a connection
    /// whose client broke the protocol.
    #[must_use]
    pub fn protocol_violation(message: impl Into<String>) -> Self {
        Self::new("FATAL", sqlstate::PROTOCOL_VIOLATION, message)
    }

    /// A `FATAL` with SQLSTATE 57P01 (admin_shutdown), sent when the daemon stops.
    #[must_use]
    pub fn admin_shutdown(message: impl Into<String>) -> Self {
        Self::new("FATAL", sqlstate::ADMIN_SHUTDOWN, message)
    }
}

impl NoticeResponse {
    /// A `NOTICE` with SQLSTATE 00000, e.g. "statement held for approval".
    #[must_use]
    pub fn notice(message: impl Into<String>) -> Self {
        Self::new("NOTICE", sqlstate::SUCCESSFUL_COMPLETION, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_raw_is_kept() {
        let e = ErrorResponse::insufficient_privilege(
            "denied by rule \"no-pan\"",
            Some("d"),
            Some("h"),
        );
        let raw = e.to_bytes().unwrap();
        let p = ErrorResponse::parse(&raw).unwrap();
        assert_eq!(p, e);
        assert_eq!(p.code(), Some("42501"));
        assert_eq!(p.severity(), Some("ERROR"));
        assert_eq!(p.field(field::DETAIL), Some("d"));
        assert_eq!(
            p.to_bytes().unwrap().as_ptr(),
            raw.as_ptr(),
            "unmodified = zero copy"
        );

        let n = NoticeResponse::notice("held for approval").with_hint("wait");
        let raw = n.to_bytes().unwrap();
        assert_eq!(raw[0], b'N');
        assert_eq!(NoticeResponse::parse(&raw).unwrap(), n);
        assert!(ErrorResponse::parse(&raw).is_err(), "wrong tag");
    }

    #[test]
    fn rewrite_fields_drops_raw() {
        let raw = ErrorResponse::new("ERROR", "23505", "duplicate key")
            .with_detail("Key (pan)=(4111111111111111) already exists.")
            .to_bytes()
            .unwrap();
        let mut e = ErrorResponse::parse(&raw).unwrap();
        assert!(e.raw().is_some());
        let changed = e.rewrite_fields(|code, v| {
            (code == field::DETAIL).then(|| v.replace("4111111111111111", "411111******1111"))
        });
        assert!(changed);
        assert!(e.raw().is_none());
        let out = ErrorResponse::parse(&e.to_bytes().unwrap()).unwrap();
        assert_eq!(
            out.field(field::DETAIL),
            Some("Key (pan)=(411111******1111) already exists.")
        );
        assert!(!e.rewrite_fields(|_, _| None));
    }

    #[test]
    fn set_and_remove_fields() {
        let mut e = ErrorResponse::from_fields(vec![(b'M', "a".into()), (b'M', "b".into())]);
        e.set_field(b'M', "c\0d");
        assert_eq!(e.fields(), &[(b'M', "c\u{fffd}d".to_owned())]);
        e.remove_field(b'M');
        assert!(e.fields().is_empty());
        let bad = ErrorResponse::from_fields(vec![(0, "x".into())]);
        assert!(bad.to_bytes().is_err());
    }

    #[test]
    fn rejects_malformed() {
        for raw in [
            &b"E\0\0\0\x04"[..],
            b"E\0\0\0\x07Mab",
            b"E\0\0\0\x08Ma\0\0\0",
        ] {
            assert!(ErrorResponse::parse(&Bytes::from_static(raw)).is_err());
        }
    }
}
