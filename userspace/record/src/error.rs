//! Error type shared by the writer, reader, key handling and index.

use std::path::PathBuf;

/// Everything that can go wrong while writing or reading session files.
///
/// Verification problems are *not* errors: [`crate::verify()`] reports them as a
/// [`crate::Outcome`]. This type is for failures to do the work at all.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// A file-system operation failed.
    #[error("{op} {}", path.display())]
    Io {
        /// What was being done ("create session file", "read host key", ...).
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Writing to the session sink failed (not tied to a path, e.g. an in-memory sink).
    #[error("{op}")]
    Sink {
        /// What was being done.
        op: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The host key file or an exported public key could not be parsed or is unsafe.
    #[error("host key {}: {reason}", path.as_ref().map_or_else(|| "<text>".to_owned(), |p| p.display().to_string()))]
    Key {
        /// The key file, if the key came from a file.
        path: Option<PathBuf>,
        /// What is wrong.
        reason: String,
    },
    /// The caller handed the writer a record it may not write (header, end or seal
    /// are written by the writer itself).
    #[error("invalid record: {0}")]
    InvalidRecord(String),
    /// A record could not be serialised.
    #[error("serialise record")]
    Serialize(#[source] serde_json::Error),
    /// A file is not a readable dbwarden session file.
    #[error("{}: {reason}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The writer was already sealed or failed earlier; nothing more can be written.
    #[error("session writer is closed: {0}")]
    Closed(String),
}

impl RecordError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// Result alias for this crate.
pub type Result<T, E = RecordError> = std::result::Result<T, E>;
