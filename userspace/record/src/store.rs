//! The sessions directory and its append-only, signed, chained index.
//!
//! [`SessionStore`] creates session files (`<start>-<id>.dbws`, mode 0600)
//! in a directory created 0700, and appends two signed entries per session to
//! `index.dbwi`: `opened` when the session starts (so a session that never
//! sealed is still known) and `sealed` with the final hash, record count and
//! seal signature. Each entry line is `<128 hex signature> <JSON>\n`; the JSON
//! carries `prev` = SHA-256 of the previous line, chaining entries across
//! sessions so removing or replacing a whole session file is detectable
//! (see [`crate::verify_dir`]).
//!
//! One `SessionStore` per directory per process: appends are serialised by
//! its mutex and written with `O_APPEND` in a single write.

use crate::error::{RecordError, Result};
use crate::format::SESSION_EXT;
use crate::key::{HostKey, PublicKey};
use crate::model::{SessionHeader, SessionId};
use crate::util::{hex, sha256, unhex};
use crate::writer::{SealSummary, SessionWriter, WriterConfig};
use serde::{Deserialize, Serialize};
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use time::OffsetDateTime;

/// Default sessions directory.
pub const DEFAULT_SESSIONS_DIR: &str = "/var/lib/dbwarden/sessions";
/// Index file name inside the sessions directory.
pub const INDEX_FILE: &str = "index.dbwi";

/// Kind of index entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// Session file created.
    Opened,
    /// Session sealed.
    Sealed,
}

/// One index entry (the signed JSON part of a line).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexEntry {
    /// Position in the index (0, 1, ...).
    pub seq: u64,
    /// Opened or sealed.
    pub kind: EntryKind,
    /// Session.
    pub session_id: SessionId,
    /// File name inside the sessions directory.
    pub file: String,
    /// When the entry was written.
    #[serde(with = "time::serde::rfc3339")]
    pub ts: OffsetDateTime,
    /// Final chain hash of the file (sealed entries).
    pub final_hash: Option<String>,
    /// Records in the file, seal included (sealed entries).
    pub records: Option<u64>,
    /// The seal record's signature (sealed entries).
    pub seal_signature: Option<String>,
    /// Signer key id.
    pub key_id: String,
    /// SHA-256 (hex) of the previous index line; zeros for the first.
    pub prev: String,
}

/// Message signed for an index entry.
pub(crate) fn index_message(json: &[u8]) -> Vec<u8> {
    let mut m = b"dbwarden-index-v1\0".to_vec();
    m.extend_from_slice(json);
    m
}

struct IndexState {
    last_hash: [u8; 32],
    next_seq: u64,
    /// The file ends in a torn line: start the next entry on a fresh line.
    needs_newline: bool,
}

/// A sessions directory with its index.
pub struct SessionStore {
    dir: PathBuf,
    key: Arc<HostKey>,
    index: Mutex<IndexState>,
}

impl std::fmt::Debug for SessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionStore")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// File name of a session: `YYYYMMDDTHHMMSSZ-<32 hex id>.dbws` (start time in UTC).
pub fn session_file_name(header: &SessionHeader) -> String {
    let t = header.start.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z-{}.{SESSION_EXT}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        header.session_id
    )
}

impl SessionStore {
    /// Opens (creating with mode 0700 if missing) the sessions directory and
    /// reads the tail of its index to continue the chain.
    ///
    /// # Errors
    /// Directory creation or index read errors.
    pub fn open(dir: impl Into<PathBuf>, key: Arc<HostKey>) -> Result<Arc<Self>> {
        let dir = dir.into();
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| RecordError::io("create sessions directory", &dir, e))?;
        let path = dir.join(INDEX_FILE);
        let mut state = IndexState {
            last_hash: [0; 32],
            next_seq: 0,
            needs_newline: false,
        };
        match File::open(&path) {
            Ok(mut f) => {
                let mut data = Vec::new();
                f.read_to_end(&mut data)
                    .map_err(|e| RecordError::io("read index", &path, e))?;
                state.needs_newline = !data.is_empty() && data.last() != Some(&b'\n');
                // Continue from the last well-formed line (verify_dir reports damage).
                for line in data.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                    if let Some(entry) = parse_line(line) {
                        state.last_hash = sha256(&[line]);
                        state.next_seq = entry.1.seq + 1;
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(RecordError::io("open index", &path, e)),
        }
        Ok(Arc::new(Self {
            dir,
            key,
            index: Mutex::new(state),
        }))
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Creates the session file (mode 0600, never overwriting), writes the
    /// header segment, and appends the `opened` index entry. Sealing the
    /// returned writer appends the `sealed` entry.
    ///
    /// # Errors
    /// File exists, I/O or index errors. The daemon must treat any error as
    /// "cannot record" and refuse the session (fail closed).
    pub fn create(
        self: &Arc<Self>,
        header: SessionHeader,
        cfg: WriterConfig,
    ) -> Result<SessionWriter<File>> {
        let name = session_file_name(&header);
        let path = self.dir.join(&name);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| RecordError::io("create session file", &path, e))?;
        let id = header.session_id;
        let mut w = SessionWriter::new(file, header, Arc::clone(&self.key), cfg)?;
        self.append(EntryKind::Opened, id, &name, None)?;
        w.set_index(Arc::clone(self), name);
        Ok(w)
    }

    pub(crate) fn append_sealed(&self, s: &SealSummary, file: &str) -> Result<()> {
        self.append(EntryKind::Sealed, s.session_id, file, Some(s))
    }

    fn append(
        &self,
        kind: EntryKind,
        id: SessionId,
        file: &str,
        seal: Option<&SealSummary>,
    ) -> Result<()> {
        let path = self.dir.join(INDEX_FILE);
        // A poisoned lock only means another thread panicked mid-append; the
        // state is still the last successfully written line.
        let mut st = self
            .index
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = IndexEntry {
            seq: st.next_seq,
            kind,
            session_id: id,
            file: file.to_owned(),
            ts: OffsetDateTime::now_utc(),
            final_hash: seal.map(|s| hex(&s.final_hash)),
            records: seal.map(|s| s.records),
            seal_signature: seal.map(|s| hex(&s.seal_signature)),
            key_id: self.key.key_id().to_string(),
            prev: hex(&st.last_hash),
        };
        let json = serde_json::to_vec(&entry).map_err(RecordError::Serialize)?;
        let sig = self.key.sign(&index_message(&json));
        let mut line = Vec::with_capacity(json.len() + 131);
        line.extend_from_slice(hex(&sig).as_bytes());
        line.push(b' ');
        line.extend_from_slice(&json);
        let hash = sha256(&[&line]);
        let mut out = Vec::with_capacity(line.len() + 2);
        if st.needs_newline {
            out.push(b'\n');
        }
        out.extend_from_slice(&line);
        out.push(b'\n');
        let mut f = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| RecordError::io("open index", &path, e))?;
        f.write_all(&out)
            .and_then(|()| f.sync_data())
            .map_err(|e| RecordError::io("append index entry", &path, e))?;
        st.last_hash = hash;
        st.next_seq += 1;
        st.needs_newline = false;
        Ok(())
    }
}

/// Splits an index line into signature and entry (no signature check).
pub(crate) fn parse_line(line: &[u8]) -> Option<([u8; 64], IndexEntry, &[u8])> {
    if line.len() < 130 || line[128] != b' ' {
        return None;
    }
    let sig = unhex::<64>(std::str::from_utf8(&line[..128]).ok()?)?;
    let json = &line[129..];
    let entry: IndexEntry = serde_json::from_slice(json).ok()?;
    Some((sig, entry, json))
}

/// A problem found in the index or between the index and the files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IndexProblem {
    /// No index file although session files exist.
    IndexMissing,
    /// Line `line` (1-based) is not a well-formed entry.
    Malformed {
        /// 1-based line number.
        line: usize,
    },
    /// The entry's signature does not verify under any trusted key.
    BadSignature {
        /// 1-based line number.
        line: usize,
        /// Key id the entry names.
        key_id: String,
    },
    /// `prev` or `seq` does not continue the chain (entry altered, removed or inserted).
    ChainBroken {
        /// 1-based line number.
        line: usize,
    },
    /// The index knows the session but its file is gone.
    MissingFile {
        /// Session.
        session_id: SessionId,
        /// Expected file name.
        file: String,
    },
    /// The file's content is not the session the index sealed (final hash,
    /// record count or session id differ, or it is no longer sealed).
    Replaced {
        /// Session.
        session_id: SessionId,
        /// File name.
        file: String,
        /// What differs.
        detail: String,
    },
    /// A session file the index does not know.
    NotInIndex {
        /// File name.
        file: String,
    },
}

impl std::fmt::Display for IndexProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::IndexMissing => write!(f, "index {INDEX_FILE} is missing"),
            Self::Malformed { line } => write!(f, "index line {line} is malformed"),
            Self::BadSignature { line, key_id } => {
                write!(
                    f,
                    "index line {line}: signature does not verify (key id {key_id})"
                )
            }
            Self::ChainBroken { line } => {
                write!(
                    f,
                    "index line {line}: chain broken (entry altered, removed or inserted)"
                )
            }
            Self::MissingFile { session_id, file } => {
                write!(f, "session {session_id}: file {file} is missing")
            }
            Self::Replaced {
                session_id,
                file,
                detail,
            } => {
                write!(
                    f,
                    "session {session_id}: file {file} was replaced or altered: {detail}"
                )
            }
            Self::NotInIndex { file } => write!(f, "file {file} is not in the index"),
        }
    }
}

/// Reads and checks the index: signatures under `trusted`, seq and prev chain.
/// Returns the entries that verified and the problems found.
pub(crate) fn check_index(
    data: &[u8],
    trusted: &[PublicKey],
) -> (Vec<IndexEntry>, Vec<IndexProblem>) {
    let mut entries = Vec::new();
    let mut problems = Vec::new();
    let mut prev = [0u8; 32];
    let mut next_seq = 0u64;
    for (i, line) in data.split(|&b| b == b'\n').enumerate() {
        let lineno = i + 1;
        if line.is_empty() {
            continue;
        }
        let Some((sig, entry, json)) = parse_line(line) else {
            problems.push(IndexProblem::Malformed { line: lineno });
            continue;
        };
        let msg = index_message(json);
        let ok = trusted
            .iter()
            .filter(|k| k.key_id().to_string() == entry.key_id)
            .any(|k| k.verify(&msg, &sig));
        if !ok {
            problems.push(IndexProblem::BadSignature {
                line: lineno,
                key_id: entry.key_id.clone(),
            });
            continue;
        }
        if entry.prev != hex(&prev) || entry.seq != next_seq {
            problems.push(IndexProblem::ChainBroken { line: lineno });
        }
        prev = sha256(&[line]);
        next_seq = entry.seq + 1;
        entries.push(entry);
    }
    (entries, problems)
}
