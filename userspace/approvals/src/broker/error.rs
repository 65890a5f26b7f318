//! Errors of the broker: opening it, holding a statement, deciding one.

use std::path::PathBuf;

use crate::approver::Refusal;
use crate::journal::JournalError;
use crate::model::Decision;

/// Failure to open the broker.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The runtime dir could not be created.
    #[error("cannot create runtime dir {path}")]
    RuntimeDir {
        /// The runtime dir.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The journal could not be opened, read or updated.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// `open` was not called inside a Tokio runtime.
    #[error("the approval broker must be opened inside a Tokio runtime")]
    NoRuntime,
}

/// Failure to hold a statement: the daemon must refuse the statement (fail closed).
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// Too many statements are already waiting.
    #[error("too many statements waiting for approval (limit {limit})")]
    TooManyPending {
        /// The configured limit ([`crate::BrokerConfig::max_pending`]).
        limit: usize,
    },
    /// The `requested` record could not be written, so a restart could not report it.
    #[error("cannot write approval journal {path}")]
    Journal {
        /// Journal path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// Failure to decide an approval.
#[derive(Debug, thiserror::Error)]
pub enum DecideError {
    /// No approval with this id (never existed, or too old to be remembered).
    #[error("no approval with id {0:?}")]
    UnknownId(String),
    /// The approval was already decided.
    #[error("approval {id} was already decided: {}", decision.summary())]
    AlreadyDecided {
        /// The approval id.
        id: String,
        /// The decision it got.
        decision: Decision,
    },
    /// The approver name is empty after sanitising.
    #[error("an approver name is required")]
    InvalidApprover,
    /// The approver rules refused this approver; the request is still pending.
    #[error(transparent)]
    Refused(Refusal),
    /// The approval could not be journaled, so it was not granted (it is still pending).
    #[error("cannot write approval journal {path}; approval not granted")]
    Journal {
        /// Journal path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}
