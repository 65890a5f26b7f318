//! Errors of the codec: every malformed input maps to one [`ProtocolError`] that names the
//! message type and what was wrong. Errors never quote message contents (they may hold card data).

/// The side of the connection a message came from; the same tag byte means different messages
/// depending on the direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Client (frontend) to server.
    Frontend,
    /// Server (backend) to client.
    Backend,
}

impl std::fmt::Display for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Direction::Frontend => "frontend",
            Direction::Backend => "backend",
        })
    }
}

/// A violation of the PostgreSQL wire protocol, found while framing, parsing or encoding.
///
/// The `message` fields name the message type (`"Bind"`, `"DataRow"`, `"startup packet"`, ...).
/// No variant carries bytes from the offending message, so an error can be logged or shown
/// without leaking data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// The length header is below the 4 bytes the length field itself occupies (or negative).
    #[error("{message}: length {len} is invalid (negative or below 4)")]
    LengthTooSmall {
        /// Message type.
        message: &'static str,
        /// The declared length.
        len: i64,
    },
    /// The length header exceeds the caller's limit.
    #[error("{message}: length {len} exceeds the limit of {max} bytes")]
    LengthTooLarge {
        /// Message type.
        message: &'static str,
        /// The declared length.
        len: u64,
        /// The configured maximum.
        max: usize,
    },
    /// The body ended before a field could be read.
    #[error("{message}: truncated while reading {what}")]
    Truncated {
        /// Message type.
        message: &'static str,
        /// The field being read.
        what: &'static str,
    },
    /// A string field has no terminating NUL inside the message.
    #[error("{message}: {what} is missing its terminating NUL")]
    MissingNul {
        /// Message type.
        message: &'static str,
        /// The field being read.
        what: &'static str,
    },
    /// A string field is not valid UTF-8.
    #[error("{message}: {what} is not valid UTF-8")]
    InvalidUtf8 {
        /// Message type.
        message: &'static str,
        /// The field being read.
        what: &'static str,
    },
    /// A string field is malformed in the session's client encoding.
    #[error("{message}: {what} is not valid {encoding}")]
    InvalidText {
        /// Message type.
        message: &'static str,
        /// The field being read.
        what: &'static str,
        /// The encoding it should be in.
        encoding: &'static str,
    },
    /// A count or length field is negative or larger than the remaining body allows.
    #[error("{message}: {what} {value} is invalid for the {remaining} bytes left")]
    BadCount {
        /// Message type.
        message: &'static str,
        /// The field being read.
        what: &'static str,
        /// The declared value.
        value: i64,
        /// Bytes left in the body when it was read.
        remaining: usize,
    },
    /// A field holds a value the protocol does not allow.
    #[error("{message}: invalid {what} ({value})")]
    InvalidValue {
        /// Message type.
        message: &'static str,
        /// The field being read.
        what: &'static str,
        /// The offending value (a number or code, never message contents).
        value: i64,
    },
    /// Bytes remain after the last field of the message.
    #[error("{message}: {extra} unexpected trailing bytes")]
    TrailingBytes {
        /// Message type.
        message: &'static str,
        /// How many bytes were left.
        extra: usize,
    },
    /// The tag byte is not a message of this direction.
    #[error("unknown {direction} message type {tag:#04x}")]
    UnknownTag {
        /// Which side sent it.
        direction: Direction,
        /// The tag byte.
        tag: u8,
    },
    /// A message is valid on the wire but not allowed in the current protocol phase.
    #[error("{message} is not allowed {phase}")]
    UnexpectedMessage {
        /// Message type.
        message: &'static str,
        /// The phase, e.g. "before authentication completed".
        phase: &'static str,
    },
    /// The client opened with a TLS ClientHello (PostgreSQL 17 `sslnegotiation=direct`).
    #[error("client started TLS directly (sslnegotiation=direct), which is not supported; use sslmode=disable or prefer")]
    DirectTls,
    /// The startup packet asks for a protocol version this codec does not speak.
    #[error(
        "startup packet: unsupported protocol version {major}.{minor} (supported: 3.0 to 3.2)"
    )]
    UnsupportedVersion {
        /// Major version.
        major: u16,
        /// Minor version.
        minor: u16,
    },
    /// A value to encode cannot be represented (NUL inside a string, too many items, too long).
    #[error("cannot encode {message}: {what}")]
    Unencodable {
        /// Message type.
        message: &'static str,
        /// What is wrong with the value.
        what: &'static str,
    },
}
