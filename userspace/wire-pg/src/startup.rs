//! The startup phase packets a client sends before any tagged message: StartupMessage,
//! SSLRequest, GSSENCRequest and CancelRequest. They have no type byte; the Int32 after the length
//! tells them apart.

use bytes::{Bytes, BytesMut};

use crate::error::ProtocolError;
use crate::read::Reader;
use crate::write::encode_message;

/// Request code of SSLRequest.
pub const SSL_REQUEST_CODE: i32 = 80_877_103;
/// Request code of GSSENCRequest.
pub const GSSENC_REQUEST_CODE: i32 = 80_877_104;
/// Request code of CancelRequest.
pub const CANCEL_REQUEST_CODE: i32 = 80_877_102;
/// Shortest cancel secret key (protocol 3.0 uses exactly 4 bytes).
pub const MIN_SECRET_KEY_LEN: usize = 4;
/// Longest cancel secret key allowed by protocol 3.2.
pub const MAX_SECRET_KEY_LEN: usize = 256;
/// Newest protocol minor version this codec speaks (3.2, PostgreSQL 18).
pub const NEWEST_MINOR: u16 = 2;

/// A decoded startup-phase packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Startup {
    /// StartupMessage: protocol version and the connection parameters (user, database, options,
    /// `_pq_.` protocol extensions), in wire order.
    Params {
        /// Major protocol version (always 3).
        major: u16,
        /// Minor protocol version (0 to 2).
        minor: u16,
        /// Parameter name/value pairs.
        params: Vec<(String, String)>,
    },
    /// SSLRequest: the client asks whether TLS is available.
    SslRequest,
    /// GSSENCRequest: the client asks whether GSSAPI encryption is available.
    GssEncRequest,
    /// CancelRequest: cancel the query running on the connection with this key.
    Cancel {
        /// Process id from BackendKeyData.
        pid: i32,
        /// Secret key from BackendKeyData (4 bytes in 3.0, up to 256 in 3.2).
        secret_key: Bytes,
    },
}

const MSG: &str = "startup packet";

impl Startup {
    /// Parses one raw startup packet as returned by [`crate::frame::split_startup`].
    ///
    /// # Errors
    /// [`ProtocolError::DirectTls`] for a TLS ClientHello, a length mismatch, an unsupported
    /// protocol version, an invalid cancel key length, or malformed parameters.
    pub fn parse(raw: &Bytes) -> Result<Startup, ProtocolError> {
        if raw.first() == Some(&crate::frame::TLS_HANDSHAKE_BYTE) {
            return Err(ProtocolError::DirectTls);
        }
        let mut r = Reader::new(raw, 0, MSG);
        let len = r.i32("length")?;
        if usize::try_from(len).ok() != Some(raw.len()) {
            return Err(ProtocolError::InvalidValue {
                message: MSG,
                what: "length header (does not match the packet size)",
                value: i64::from(len),
            });
        }
        let code = r.i32("protocol version or request code")?;
        match code {
            SSL_REQUEST_CODE => {
                r.finish()?;
                Ok(Startup::SslRequest)
            }
            GSSENC_REQUEST_CODE => {
                r.finish()?;
                Ok(Startup::GssEncRequest)
            }
            CANCEL_REQUEST_CODE => {
                let pid = r.i32("process id")?;
                let n = r.remaining();
                if !(MIN_SECRET_KEY_LEN..=MAX_SECRET_KEY_LEN).contains(&n) {
                    return Err(r.invalid("cancel secret key length", n as i64));
                }
                Ok(Startup::Cancel {
                    pid,
                    secret_key: r.rest(),
                })
            }
            _ => {
                let major = (code >> 16) as u16;
                let minor = (code & 0xffff) as u16;
                if major != 3 || minor > NEWEST_MINOR {
                    return Err(ProtocolError::UnsupportedVersion { major, minor });
                }
                let mut params = Vec::new();
                loop {
                    let name = r.cstr("parameter name")?;
                    if name.is_empty() {
                        break;
                    }
                    let value = r.string("parameter value")?;
                    params.push((name.to_owned(), value));
                }
                r.finish()?;
                Ok(Startup::Params {
                    major,
                    minor,
                    params,
                })
            }
        }
    }

    /// Appends the packet to `dst`.
    ///
    /// # Errors
    /// A parameter contains a NUL or is empty-named, a secret key has an invalid length, or the
    /// packet would be too long.
    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        encode_message(dst, None, MSG, |w| {
            match self {
                Startup::Params {
                    major,
                    minor,
                    params,
                } => {
                    w.i32((i32::from(*major) << 16) | i32::from(*minor));
                    for (name, value) in params {
                        if name.is_empty() {
                            return Err(w.unencodable("empty parameter name"));
                        }
                        w.cstr(name)?;
                        w.cstr(value)?;
                    }
                    w.u8(0);
                }
                Startup::SslRequest => w.i32(SSL_REQUEST_CODE),
                Startup::GssEncRequest => w.i32(GSSENC_REQUEST_CODE),
                Startup::Cancel { pid, secret_key } => {
                    if !(MIN_SECRET_KEY_LEN..=MAX_SECRET_KEY_LEN).contains(&secret_key.len()) {
                        return Err(w.unencodable("cancel secret key must be 4 to 256 bytes"));
                    }
                    w.i32(CANCEL_REQUEST_CODE);
                    w.i32(*pid);
                    w.bytes(secret_key);
                }
            }
            Ok(())
        })
    }

    /// Returns the value of a StartupMessage parameter (`user`, `database`, ...).
    #[must_use]
    pub fn param(&self, name: &str) -> Option<&str> {
        match self {
            Startup::Params { params, .. } => params
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(s: &Startup) -> Bytes {
        let mut buf = BytesMut::new();
        s.encode(&mut buf).unwrap();
        let raw = buf.freeze();
        assert_eq!(&Startup::parse(&raw).unwrap(), s);
        raw
    }

    #[test]
    fn round_trips() {
        let raw = round_trip(&Startup::Params {
            major: 3,
            minor: 0,
            params: vec![
                ("user".into(), "agent".into()),
                ("database".into(), "shop".into()),
            ],
        });
        assert_eq!(&raw[4..8], &[0, 3, 0, 0]);
        round_trip(&Startup::Params {
            major: 3,
            minor: 2,
            params: vec![],
        });
        assert_eq!(round_trip(&Startup::SslRequest).len(), 8);
        round_trip(&Startup::GssEncRequest);
        assert_eq!(
            round_trip(&Startup::Cancel {
                pid: 42,
                secret_key: Bytes::from_static(b"abcd")
            })
            .len(),
            16
        );
        round_trip(&Startup::Cancel {
            pid: 42,
            secret_key: Bytes::from(vec![7u8; 32]),
        });
    }

    #[test]
    fn rejects_bad_packets() {
        let bad: &[&[u8]] = &[
            b"\0\0\0\x08\x00\x04\x00\x00",           // protocol 4.0
            b"\0\0\0\x08\x00\x03\x00\x03",           // protocol 3.3
            b"\0\0\0\x0c\x04\xd2\x16\x2e\0\0\0\x01", // cancel without key
            b"\0\0\0\x0dx\x00\x03\x00\x00user\0",    // length mismatch
            b"\0\0\0\x0d\x00\x03\x00\x00user\0",     // value missing
            b"\0\0\0\x0e\x00\x03\x00\x00user\0a",    // value missing NUL
            b"\0\0\0\x0f\x00\x03\x00\x00u\0a\0\0\0", // trailing bytes
            b"\x16\x03\x01\x00\x10",                 // TLS
            b"\0\0\0\x09\x04\xd2\x16\x2f\0",         // SSLRequest with extra byte
        ];
        for raw in bad {
            assert!(Startup::parse(&Bytes::from_static(raw)).is_err(), "{raw:?}");
        }
    }

    #[test]
    fn param_lookup() {
        let s = Startup::Params {
            major: 3,
            minor: 0,
            params: vec![("user".into(), "agent".into())],
        };
        assert_eq!(s.param("user"), Some("agent"));
        assert_eq!(s.param("database"), None);
    }
}
