//! dbwarden session recording: one tamper-evident file per session.
//!
//! # Layout and flow
//! - [`model`]: the header and record types the daemon fills in (already masked).
//! - [`recorder`]: [`Recorder`] — bounded queue + writer thread, off the hot path.
//! - [`writer`]: [`SessionWriter`] — record lines → hash chain → zstd segments → signed headers → seal.
//! - [`format`](mod@format): the on-disk format (segment header layout, framing, hashes).
//! - [`store`]: [`SessionStore`] — the sessions directory and its signed, chained index.
//! - [`key`]: [`HostKey`] (Ed25519, PKCS#8 file 0600) and exported [`PublicKey`]s.
//! - [`reader`]: [`read_session`] — lenient decoding, tolerant of truncation.
//! - [`verify`](mod@verify): [`verify()`] / [`verify_dir`] — precise integrity reports against trusted keys.
//! - [`render`]: `list`, `show`, `replay`, `export` for the CLI.
//! - [`scan`]: PAN scanner for tests (prove nothing unmasked was written).
//!
//! Daemon flow: `HostKey::load_or_create` → `SessionStore::open` →
//! per session `store.create(header, cfg)` → `Recorder::start(writer, rcfg)` →
//! `recorder.record(..)` per event → `recorder.finish(reason)`.
//!
//! The caller masks: this crate writes exactly what it is given.
//!
//! ```
//! use dbwarden_record::*;
//! use std::sync::Arc;
//! # let tmp = tempfile::tempdir().unwrap();
//! # let dir = tmp.path();
//! let key = Arc::new(HostKey::load_or_create(dir.join("keys/host.key"))?);
//! let store = SessionStore::open(dir.join("sessions"), Arc::clone(&key))?;
//! let header = SessionHeader {
//!     session_id: SessionId::random().unwrap(),
//!     start: time::OffsetDateTime::now_utc(),
//!     identity: Identity { pid: 42, uid: 1000, user: Some("ci".into()), ..Identity::default() },
//!     client_addr: "127.0.0.1:40000".into(),
//!     original_dst: "127.0.0.1:5432".into(),
//!     protocol: "postgresql".into(),
//!     database: Some("shop".into()),
//!     db_user: Some("app".into()),
//!     daemon_version: "0.1.0".into(),
//!     policy_hash: "sha256:…".into(),
//! };
//! let writer = store.create(header, WriterConfig::default())?;
//! let rec = Recorder::start(writer, RecorderConfig::default()).unwrap();
//! rec.record(RecordBody::Statement(Statement { stmt: 1, text: "SELECT 1".into(), params: vec![] })).unwrap();
//! let sealed = rec.finish("client closed").unwrap();
//! assert_eq!(sealed.records, 4); // header, statement, end, seal
//!
//! // Elsewhere, with only the exported public key:
//! let trusted = PublicKey::parse(&key.public_key_pem())?;
//! let report = verify_dir(store.dir(), &[trusted], &mut |_| {}).unwrap();
//! assert!(report.is_ok());
//! # Ok::<(), RecordError>(())
//! ```

mod chain;
pub mod error;
mod events;
pub mod format;
pub mod hot;
mod json;
pub mod key;
pub mod model;
pub mod reader;
pub mod recorder;
pub mod render;
pub mod rows;
pub mod scan;
pub mod stamp;
pub mod store;
mod util;
pub mod verify;
pub mod writer;

pub use error::{RecordError, Result};
pub use hot::{DecisionRef, Hot, ResponseRef, StatementRef};
pub use key::{HostKey, KeyId, PublicKey};
pub use model::{
    Action, Approval, ApprovalKind, Decision, End, Exchange, Gap, Identity, Notice, Record,
    RecordBody, ResponseSummary, Rows, Seal, SessionHeader, SessionId, Statement, Totals,
    Truncation,
};
pub use reader::{read_session, read_session_bytes, Session};
pub use recorder::{
    OnFull, PutError, Recorded, Recorder, RecorderConfig, RecorderError, TryRecordError,
};
pub use render::{
    export_jsonl, list_dir, render_list, replay, show, summarize, transcript, ListFilter,
    SessionSummary,
};
pub use rows::{RowBuf, RowsRef};
pub use scan::{find_pans, scan_session_file, PanHit};
pub use stamp::Stamp;
pub use store::{
    session_file_name, IndexEntry, IndexProblem, SessionStore, DEFAULT_SESSIONS_DIR, INDEX_FILE,
};
pub use verify::{
    verify, verify_bytes, verify_dir, verify_with_progress, DirReport, Outcome, Progress,
    VerifyReport,
};
pub use writer::{RowCap, SealSummary, SessionWriter, Sink, WriterConfig};
