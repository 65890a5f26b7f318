//! The approval journal: `approvals.journal` in the runtime dir, JSON lines, one
//! `requested` record when a statement is held and one `decided` record when it ends.
//!
//! Its main job is to survive a daemon restart: at [`crate::Broker::open`] every request
//! with no `decided` record is returned as an orphan and a `decided` record ("daemon
//! restarted") is appended for it, so it is reported exactly once. It also keeps a `refused`
//! record for every approval attempt the approver rules turned down ([`crate::approver`]):
//! who tried (name, uid), why, and the message they got; the request stays pending.
//!
//! The file is created `0600` (it holds masked statement text) and opened with
//! `O_NOFOLLOW`. A torn last line (crash mid-write) is skipped with a warning, and the next
//! record starts on a fresh line. When the file grows past [`ROTATE_BYTES`] at open (when
//! nothing is pending) it is renamed to `approvals.journal.1`, replacing the previous one.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::model::{Decision, OrphanedRequest};

/// File name of the journal inside the runtime dir.
pub const JOURNAL_FILE: &str = "approvals.journal";
/// Size above which the journal is rotated at open.
pub const ROTATE_BYTES: u64 = 4 * 1024 * 1024;
/// Larger journals are refused rather than read into memory.
const MAX_READ_BYTES: u64 = 256 * 1024 * 1024;
/// Reason recorded for requests found pending at open.
pub const RESTART_REASON: &str = "daemon restarted";

/// Failure to read or write the journal.
#[derive(Debug, thiserror::Error)]
#[error("approval journal {path}: cannot {op}")]
pub struct JournalError {
    /// What was being done (`open`, `read`, `append to`, `rotate`, ...).
    pub op: &'static str,
    /// The journal path.
    pub path: PathBuf,
    /// The I/O error.
    #[source]
    pub source: io::Error,
}

/// One line of the journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum Record {
    Requested {
        id: String,
        at_ms: u64,
        session_id: u64,
        rule: String,
        statement: String,
        normalized: String,
        identity: String,
        target: String,
        timeout_ms: u64,
        /// Uid of the requesting session (absent in journals written before it existed).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        requester_uid: Option<u32>,
    },
    Decided {
        id: String,
        at_ms: u64,
        decision: Decision,
    },
    /// An approval attempt refused by the approver rules; the request stays pending.
    Refused {
        id: String,
        at_ms: u64,
        /// Approver name as the channel gave it (sanitised).
        approver: String,
        /// Approver uid, when known.
        uid: Option<u32>,
        /// `self_approval`, `controlled_cgroup` or `unverifiable`.
        refusal: String,
        /// The message sent to the approver.
        message: String,
    },
}

/// An open journal, appended to by the broker.
#[derive(Debug)]
pub(crate) struct Journal {
    file: File,
    path: PathBuf,
    fsync: bool,
}

/// What [`Journal::open`] found.
#[derive(Debug)]
pub(crate) struct Opened {
    pub journal: Journal,
    pub orphans: Vec<OrphanedRequest>,
    /// Every id seen in the journal, so new ids do not repeat them.
    pub known_ids: HashSet<String>,
}

fn open_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

impl Journal {
    /// Opens (creating) `dir/approvals.journal`, reports and closes orphans.
    pub(crate) fn open(dir: &Path, fsync: bool, now_ms: u64) -> Result<Opened, JournalError> {
        let path = dir.join(JOURNAL_FILE);
        let err = |op: &'static str| {
            let path = path.clone();
            move |source| JournalError { op, path, source }
        };
        let mut file = open_file(&path).map_err(err("open"))?;
        let meta = file.metadata().map_err(err("stat"))?;
        if !meta.is_file() {
            return Err(err("use")(io::Error::other("not a regular file")));
        }
        if meta.permissions().mode() & 0o077 != 0 {
            file.set_permissions(fs::Permissions::from_mode(0o600))
                .map_err(err("chmod"))?;
        }
        if meta.len() > MAX_READ_BYTES {
            return Err(err("read")(io::Error::other(format!(
                "file is {} bytes, over the {MAX_READ_BYTES}-byte limit; move it aside",
                meta.len()
            ))));
        }
        let mut raw = Vec::new();
        file.read_to_end(&mut raw).map_err(err("read"))?;

        let mut pending: HashMap<String, Record> = HashMap::new();
        let mut order: Vec<String> = Vec::new();
        let mut known_ids = HashSet::new();
        for (n, line) in raw.split(|&b| b == b'\n').enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<Record>(line) {
                Ok(rec @ Record::Requested { .. }) => {
                    let Record::Requested { id, .. } = &rec else {
                        continue;
                    };
                    known_ids.insert(id.clone());
                    order.push(id.clone());
                    pending.insert(id.clone(), rec);
                }
                Ok(Record::Decided { id, .. }) => {
                    known_ids.insert(id.clone());
                    pending.remove(&id);
                }
                Ok(Record::Refused { id, .. }) => {
                    known_ids.insert(id);
                }
                Err(e) => tracing::warn!(
                    journal = %path.display(),
                    line = n + 1,
                    error = %e,
                    "skipping unreadable approval journal line"
                ),
            }
        }

        let mut journal = Journal {
            file,
            path: path.clone(),
            fsync,
        };
        if raw.last().is_some_and(|&b| b != b'\n') {
            // Torn last record: start the next one on its own line.
            journal.write_raw(b"\n").map_err(err("append to"))?;
        }

        let decision = Decision::Cancelled {
            reason: RESTART_REASON.to_owned(),
        };
        let mut orphans = Vec::new();
        for id in order {
            let Some(Record::Requested {
                id,
                at_ms,
                session_id,
                rule,
                statement,
                normalized,
                identity,
                target,
                ..
            }) = pending.remove(&id)
            else {
                continue;
            };
            journal
                .append(&Record::Decided {
                    id: id.clone(),
                    at_ms: now_ms,
                    decision: decision.clone(),
                })
                .map_err(err("append to"))?;
            orphans.push(OrphanedRequest {
                id,
                session_id,
                rule,
                statement,
                normalized,
                identity,
                target,
                requested_at_ms: at_ms,
                decision: decision.clone(),
            });
        }

        let len = journal.file.metadata().map_err(err("stat"))?.len();
        if len > ROTATE_BYTES {
            let old = dir.join(format!("{JOURNAL_FILE}.1"));
            fs::rename(&path, &old).map_err(err("rotate"))?;
            journal.file = open_file(&path).map_err(err("reopen"))?;
            tracing::info!(journal = %path.display(), rotated_to = %old.display(), "approval journal rotated");
        }
        Ok(Opened {
            journal,
            orphans,
            known_ids,
        })
    }

    fn write_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all(bytes)?;
        if self.fsync {
            self.file.sync_data()?;
        }
        Ok(())
    }

    /// Appends one record as a single `write` of a whole line.
    pub(crate) fn append(&mut self, rec: &Record) -> io::Result<()> {
        let mut line = serde_json::to_vec(rec).map_err(io::Error::other)?;
        line.push(b'\n');
        self.write_raw(&line)
    }

    /// The journal path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn requested(id: &str) -> Record {
        Record::Requested {
            id: id.into(),
            at_ms: 1,
            session_id: 7,
            rule: "r".into(),
            statement: "DELETE FROM t".into(),
            normalized: "DELETE FROM t".into(),
            identity: "pid 1".into(),
            target: "pg".into(),
            timeout_ms: 1000,
            requester_uid: Some(1000),
        }
    }

    #[test]
    fn orphans_reported_once_and_torn_line_skipped() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut o = Journal::open(dir.path(), false, 0).unwrap();
            assert!(o.orphans.is_empty());
            o.journal.append(&requested("aaaaaaaa")).unwrap();
            o.journal.append(&requested("bbbbbbbb")).unwrap();
            o.journal
                .append(&Record::Decided {
                    id: "aaaaaaaa".into(),
                    at_ms: 2,
                    decision: Decision::TimedOut { timeout_ms: 1000 },
                })
                .unwrap();
            o.journal
                .append(&Record::Refused {
                    id: "bbbbbbbb".into(),
                    at_ms: 3,
                    approver: "root".into(),
                    uid: Some(1000),
                    refusal: "self_approval".into(),
                    message: "approval refused".into(),
                })
                .unwrap();
            o.journal.write_raw(b"{\"type\":\"requ").unwrap();
        }
        let o = Journal::open(dir.path(), false, 99).unwrap();
        assert_eq!(o.orphans.len(), 1);
        assert_eq!(o.orphans[0].id, "bbbbbbbb");
        assert_eq!(o.orphans[0].statement, "DELETE FROM t");
        assert!(o.known_ids.contains("aaaaaaaa"));
        drop(o);
        let o = Journal::open(dir.path(), false, 100).unwrap();
        assert!(o.orphans.is_empty());
        let text = fs::read_to_string(dir.path().join(JOURNAL_FILE)).unwrap();
        assert!(text.contains("\"reason\":\"daemon restarted\""));
        let mode = fs::metadata(dir.path().join(JOURNAL_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn journal_without_requester_uid_still_reads() {
        let dir = tempfile::tempdir().unwrap();
        // A `requested` record as written before `requester_uid` existed.
        fs::write(
            dir.path().join(JOURNAL_FILE),
            concat!(
                r#"{"type":"requested","id":"cccccccc","at_ms":1,"session_id":3,"rule":"r","#,
                r#""statement":"DELETE FROM t","normalized":"DELETE FROM t","identity":"pid 1","#,
                r#""target":"pg","timeout_ms":1000}"#,
                "\n"
            ),
        )
        .unwrap();
        let o = Journal::open(dir.path(), false, 5).unwrap();
        assert_eq!(o.orphans.len(), 1);
        assert_eq!(o.orphans[0].id, "cccccccc");
    }

    #[test]
    fn symlink_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join(JOURNAL_FILE)).unwrap();
        let e = Journal::open(dir.path(), false, 0).unwrap_err();
        assert_eq!(e.op, "open");
    }
}
