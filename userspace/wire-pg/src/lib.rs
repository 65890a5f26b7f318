//! Pure PostgreSQL wire protocol codec and per-connection proxy state machine for dbwarden.
//!
//! No I/O happens here: the daemon's session loop reads bytes from the sockets, hands them to
//! this crate, and writes what it is told to write.
//!
//! # Layout (in data-path order)
//! - [`frame`]: cut whole raw messages off a read buffer (length checked before allocating).
//! - [`startup`]: the untagged startup packets (StartupMessage, SSLRequest, CancelRequest...).
//! - [`frontend`]: messages from the client (Query, Parse, Bind, Execute, ...), per direction.
//! - [`backend`]: messages from the server, with [`row_description`], [`data_row`] (zero-copy
//!   rows, rebuilt for masking) and [`error_response`] (errors/notices and the named refusals).
//! - [`proxy`]: one value per proxied connection. Client messages become events and statements
//!   awaiting a policy verdict; refused statements are substituted by a marker that makes the
//!   server fail at the same point; server messages come back tagged with the context masking
//!   needs (row description and per-column formats) and with events for the recorder.
//! - [`error`]: [`ProtocolError`], which names the message and the problem but never quotes data.
//!
//! Strings on the wire are NUL-terminated; parsing rejects a missing NUL or invalid UTF-8, and
//! every count and length is checked against the bytes present before anything is allocated.

#![warn(missing_docs)]

pub mod backend;
pub mod data_row;
pub mod error;
pub mod error_response;
pub mod format;
pub mod frame;
pub mod frontend;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod proxy;
mod read;
pub mod row_description;
pub mod startup;
pub mod startup_options;
pub mod text_encoding;
mod write;

pub use backend::{BackendKeyData, BackendMessage, TransactionStatus};
pub use data_row::DataRow;
pub use error::{Direction, ProtocolError};
pub use error_response::{ErrorResponse, NoticeResponse};
pub use format::Format;
pub use frame::{split_message, split_startup, DEFAULT_MAX_MESSAGE_LEN, DEFAULT_MAX_STARTUP_LEN};
pub use frontend::FrontendMessage;
pub use row_description::{FieldDescription, RowDescription};
pub use startup::Startup;
pub use text_encoding::TextEncoding;
