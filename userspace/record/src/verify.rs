//! Verification of session files and of a whole sessions directory.
//!
//! [`verify`] walks a file segment by segment and stops at the first problem,
//! reporting it precisely ([`Outcome`]). Per segment, in order:
//! 1. the header frame parses;
//! 2. its key id names a key in the caller's `trusted` list ([`Outcome::UnknownKey`]
//!    otherwise — a key found in the file is never trusted) and the signature
//!    verifies under it ([`Outcome::BadSignature`]);
//! 3. it belongs to this session ([`Outcome::Spliced`]) and continues it:
//!    sequence number, first record and chain hash ([`Outcome::SegmentOutOfOrder`]);
//! 4. its records re-hash to the stored per-record hashes, with consecutive
//!    indexes ([`Outcome::Tampered`], [`Outcome::MissingRecord`],
//!    [`Outcome::Reordered`]), and to the signed head, count and payload hash
//!    ([`Outcome::PayloadAltered`]);
//! 5. a seal record is last, counts correctly, and its signature verifies.
//!
//! A file that ends cleanly or mid-segment without a seal is
//! [`Outcome::Unsealed`] with the last good record.

use crate::format::{self, FrameAt, HeaderAt};
use crate::key::{KeyId, PublicKey};
use crate::model::{Record, RecordBody, SessionId};
use crate::store::{check_index, EntryKind, IndexProblem, INDEX_FILE};
use crate::util::{hex, sha256, unhex};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

/// Progress of a long operation, in bytes of the file(s) processed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Bytes done.
    pub done: u64,
    /// Bytes in total.
    pub total: u64,
}

/// What verification found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every segment authentic, chain intact, sealed.
    Ok,
    /// Intact but no seal: the session ended abnormally (or the file was cut).
    Unsealed {
        /// Index of the last intact record (`None`: not even the header).
        last_record: Option<u64>,
        /// Bytes of an incomplete segment after it, if the file ends mid-segment.
        partial_tail: Option<u64>,
    },
    /// A record's content does not match its chain hash.
    Tampered {
        /// Record index.
        record: u64,
        /// Segment number (position in the file).
        segment: u64,
    },
    /// A record is missing.
    MissingRecord {
        /// The index that should have come next.
        record: u64,
        /// Segment.
        segment: u64,
    },
    /// Records are out of order.
    Reordered {
        /// The index expected at this position.
        record: u64,
        /// Segment.
        segment: u64,
    },
    /// The compressed payload is not what was signed.
    PayloadAltered {
        /// Segment.
        segment: u64,
        /// Detail.
        detail: String,
    },
    /// Signature does not verify under the trusted key with that id.
    BadSignature {
        /// Segment.
        segment: u64,
        /// Key id named by the segment.
        key_id: KeyId,
    },
    /// Signed by a key not in the trusted list.
    UnknownKey {
        /// Segment.
        segment: u64,
        /// Key id named by the segment.
        key_id: KeyId,
    },
    /// A segment of another session.
    Spliced {
        /// Segment.
        segment: u64,
        /// Session id found in it.
        found: SessionId,
    },
    /// A segment of this session in the wrong place (removed, duplicated or reordered segments).
    SegmentOutOfOrder {
        /// Segment position in the file.
        segment: u64,
        /// Detail.
        detail: String,
    },
    /// The seal record is inconsistent or its signature does not verify.
    BadSeal {
        /// Detail.
        detail: String,
    },
    /// Structure that cannot be parsed.
    Malformed {
        /// Segment position.
        segment: u64,
        /// Byte offset in the file.
        offset: u64,
        /// Detail.
        detail: String,
    },
    /// The file could not be read.
    Unreadable(String),
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ok => write!(f, "OK"),
            Self::Unsealed {
                last_record,
                partial_tail,
            } => {
                match last_record {
                    Some(n) => write!(f, "UNSEALED: ended abnormally after record {n}")?,
                    None => write!(f, "UNSEALED: no intact record")?,
                }
                if let Some(b) = partial_tail {
                    write!(f, " (truncated: {b} bytes of an incomplete segment follow)")?;
                }
                Ok(())
            }
            Self::Tampered { record, segment } => {
                write!(
                    f,
                    "TAMPERED at record {record} (segment {segment}): hash mismatch"
                )
            }
            Self::MissingRecord { record, segment } => {
                write!(f, "TAMPERED: record {record} missing (segment {segment})")
            }
            Self::Reordered { record, segment } => {
                write!(
                    f,
                    "TAMPERED: records reordered at record {record} (segment {segment})"
                )
            }
            Self::PayloadAltered { segment, detail } => {
                write!(f, "TAMPERED: segment {segment} payload altered: {detail}")
            }
            Self::BadSignature { segment, key_id } => {
                write!(f, "BAD SIGNATURE on segment {segment} (key id {key_id})")
            }
            Self::UnknownKey { segment, key_id } => {
                write!(
                    f,
                    "UNKNOWN KEY: segment {segment} signed by untrusted key id {key_id}"
                )
            }
            Self::Spliced { segment, found } => {
                write!(f, "SPLICED: segment {segment} belongs to session {found}")
            }
            Self::SegmentOutOfOrder { segment, detail } => {
                write!(f, "TAMPERED: segment {segment} out of place: {detail}")
            }
            Self::BadSeal { detail } => write!(f, "BAD SEAL: {detail}"),
            Self::Malformed {
                segment,
                offset,
                detail,
            } => {
                write!(f, "MALFORMED segment {segment} at byte {offset}: {detail}")
            }
            Self::Unreadable(e) => write!(f, "UNREADABLE: {e}"),
        }
    }
}

/// Verification result for one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    /// The file.
    pub path: PathBuf,
    /// Session id (from the first authentic segment).
    pub session_id: Option<SessionId>,
    /// Result.
    pub outcome: Outcome,
    /// Records verified intact.
    pub records: u64,
    /// Segments verified intact.
    pub segments: u64,
    /// Whether an intact seal closed the file.
    pub sealed: bool,
    /// Chain hash after the last intact record.
    pub final_hash: Option<[u8; 32]>,
    /// Keys that signed intact segments.
    pub key_ids: Vec<KeyId>,
}

impl VerifyReport {
    /// True only for [`Outcome::Ok`].
    pub fn is_ok(&self) -> bool {
        self.outcome == Outcome::Ok
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.path.file_name().map_or_else(
            || self.path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        write!(f, "{name}: {}", self.outcome)?;
        write!(f, " [{} records, {} segments", self.records, self.segments)?;
        for k in &self.key_ids {
            write!(f, ", key {k}")?;
        }
        write!(f, "]")
    }
}

/// Verifies one session file against the `trusted` public keys.
pub fn verify(path: impl AsRef<Path>, trusted: &[PublicKey]) -> VerifyReport {
    verify_with_progress(path, trusted, &mut |_| {})
}

/// [`verify`] with a progress callback (called after each segment).
pub fn verify_with_progress(
    path: impl AsRef<Path>,
    trusted: &[PublicKey],
    progress: &mut dyn FnMut(Progress),
) -> VerifyReport {
    let path = path.as_ref();
    match std::fs::read(path) {
        Ok(data) => verify_bytes(path, &data, trusted, progress),
        Err(e) => VerifyReport {
            path: path.into(),
            session_id: None,
            outcome: Outcome::Unreadable(e.to_string()),
            records: 0,
            segments: 0,
            sealed: false,
            final_hash: None,
            key_ids: Vec::new(),
        },
    }
}

struct Walk {
    session: Option<SessionId>,
    head: [u8; 32],
    records: u64,
    segments: u64,
    sealed: bool,
    keys: Vec<KeyId>,
}

/// Verifies an in-memory session file (`path` is only used in the report).
pub fn verify_bytes(
    path: &Path,
    data: &[u8],
    trusted: &[PublicKey],
    progress: &mut dyn FnMut(Progress),
) -> VerifyReport {
    let mut w = Walk {
        session: None,
        head: [0; 32],
        records: 0,
        segments: 0,
        sealed: false,
        keys: Vec::new(),
    };
    let outcome = walk(data, trusted, &mut w, progress);
    VerifyReport {
        path: path.into(),
        session_id: w.session,
        outcome,
        records: w.records,
        segments: w.segments,
        sealed: w.sealed,
        final_hash: w.session.map(|_| w.head),
        key_ids: w.keys,
    }
}

fn walk(
    data: &[u8],
    trusted: &[PublicKey],
    w: &mut Walk,
    progress: &mut dyn FnMut(Progress),
) -> Outcome {
    let total = data.len() as u64;
    let mut off = 0usize;
    loop {
        let seg = w.segments;
        let unsealed = |w: &Walk, tail: Option<u64>| Outcome::Unsealed {
            last_record: w.records.checked_sub(1),
            partial_tail: tail,
        };
        if w.sealed && off < data.len() {
            return Outcome::Malformed {
                segment: seg,
                offset: off as u64,
                detail: format!("{} bytes after the seal", data.len() - off),
            };
        }
        let (h, payload_off) = match format::header_at(data, off) {
            HeaderAt::End if w.sealed => return Outcome::Ok,
            HeaderAt::End => return unsealed(w, None),
            HeaderAt::Truncated { have } => return unsealed(w, Some(have as u64)),
            HeaderAt::Malformed(detail) => {
                return Outcome::Malformed {
                    segment: seg,
                    offset: off as u64,
                    detail,
                }
            }
            HeaderAt::Header {
                header,
                payload_offset,
            } => (header, payload_offset),
        };
        // Authenticity first: which key, and does it verify under that key.
        let candidates: Vec<&PublicKey> =
            trusted.iter().filter(|k| k.key_id() == h.key_id).collect();
        if candidates.is_empty() {
            return Outcome::UnknownKey {
                segment: seg,
                key_id: h.key_id,
            };
        }
        if !candidates.iter().any(|k| h.verify(k)) {
            return Outcome::BadSignature {
                segment: seg,
                key_id: h.key_id,
            };
        }
        // Belongs here?
        match w.session {
            None if h.seq == 0 && h.first_record == 0 => {
                w.session = Some(h.session_id);
                w.head = format::genesis(&h.session_id);
            }
            None => {
                return Outcome::SegmentOutOfOrder {
                    segment: seg,
                    detail: format!(
                        "file starts with segment {} (record {}), not the session start",
                        h.seq, h.first_record
                    ),
                }
            }
            Some(id) if id != h.session_id => {
                return Outcome::Spliced {
                    segment: seg,
                    found: h.session_id,
                }
            }
            Some(_) => {}
        }
        if h.seq != seg || h.first_record != w.records || h.prev_head != w.head {
            let detail = if h.seq > seg || h.first_record > w.records {
                format!(
                    "segment {} (records from {}) follows record {}: segments missing",
                    h.seq,
                    h.first_record,
                    w.records.saturating_sub(1)
                )
            } else if h.seq != seg || h.first_record != w.records {
                format!(
                    "segment {} (records from {}) repeated or reordered",
                    h.seq, h.first_record
                )
            } else {
                "chain does not continue from the previous segment".into()
            };
            return Outcome::SegmentOutOfOrder {
                segment: seg,
                detail,
            };
        }
        // Payload.
        let frame_len = match format::payload_frame(data, payload_off, h.payload_len) {
            FrameAt::Frame(n) => n,
            FrameAt::Truncated => return unsealed(w, Some((data.len() - off) as u64)),
            FrameAt::Bad(detail) => {
                return Outcome::PayloadAltered {
                    segment: seg,
                    detail,
                }
            }
        };
        let frame = &data[payload_off..payload_off + frame_len];
        let raw = match format::decompress(frame) {
            Ok(r) => r,
            Err(detail) => {
                return Outcome::PayloadAltered {
                    segment: seg,
                    detail,
                }
            }
        };
        let lines = match format::lines(&raw) {
            Ok(l) => l,
            Err(detail) => {
                return Outcome::PayloadAltered {
                    segment: seg,
                    detail: detail.into(),
                }
            }
        };
        let mut head = w.head;
        for (i, line) in lines.iter().enumerate() {
            let expect = h.first_record + i as u64;
            let Ok((stored, json)) = format::split_line(line) else {
                return Outcome::Tampered {
                    record: expect,
                    segment: seg,
                };
            };
            let computed = format::chain(&head, json);
            let rec: Option<Record> = serde_json::from_slice(json).ok();
            if computed != stored || rec.as_ref().map(|r| r.n) != Some(expect) {
                return diagnose(rec.as_ref(), expect, &lines[i..], seg);
            }
            let before = head;
            head = computed;
            let Some(rec) = rec else {
                return Outcome::Tampered {
                    record: expect,
                    segment: seg,
                };
            };
            let ctx = RecordCtx {
                h: &h,
                before: &before,
                last_in_segment: i + 1 == lines.len(),
                seg,
                off,
            };
            if let Some(o) = check_record(&rec, &ctx, trusted) {
                return o;
            }
        }
        if lines.len() as u64 != u64::from(h.record_count) {
            return Outcome::MissingRecord {
                record: h.first_record + lines.len() as u64,
                segment: seg,
            };
        }
        if head != h.head {
            return Outcome::PayloadAltered {
                segment: seg,
                detail: "records re-hashed: chain does not reach the signed head".into(),
            };
        }
        if frame_len != h.payload_len as usize
            || raw.len() != h.raw_len as usize
            || sha256(&[frame]) != h.payload_hash
        {
            return Outcome::PayloadAltered {
                segment: seg,
                detail: "compressed bytes differ from the signed ones".into(),
            };
        }
        // Segment intact: commit.
        if w.records == 0 && lines.is_empty() {
            return Outcome::Malformed {
                segment: seg,
                offset: off as u64,
                detail: "first segment holds no header record".into(),
            };
        }
        w.head = head;
        w.records += lines.len() as u64;
        w.segments += 1;
        if !w.keys.contains(&h.key_id) {
            w.keys.push(h.key_id);
        }
        if lines.last().is_some_and(|l| is_seal_line(l)) {
            w.sealed = true;
        }
        off = payload_off + frame_len;
        progress(Progress {
            done: off as u64,
            total,
        });
    }
}

fn is_seal_line(line: &[u8]) -> bool {
    format::split_line(line)
        .ok()
        .and_then(|(_, j)| serde_json::from_slice::<Record>(j).ok())
        .is_some_and(|r| matches!(r.body, RecordBody::Seal(_)))
}

fn diagnose(rec: Option<&Record>, expect: u64, rest: &[&[u8]], seg: u64) -> Outcome {
    let Some(rec) = rec else {
        return Outcome::Tampered {
            record: expect,
            segment: seg,
        };
    };
    if rec.n == expect {
        return Outcome::Tampered {
            record: expect,
            segment: seg,
        };
    }
    let later_has_expected = rest.iter().skip(1).any(|l| {
        format::split_line(l)
            .ok()
            .and_then(|(_, j)| serde_json::from_slice::<Record>(j).ok())
            .is_some_and(|r| r.n == expect)
    });
    if rec.n < expect || later_has_expected {
        Outcome::Reordered {
            record: expect,
            segment: seg,
        }
    } else {
        Outcome::MissingRecord {
            record: expect,
            segment: seg,
        }
    }
}

struct RecordCtx<'a> {
    h: &'a format::SegmentHeader,
    /// Chain hash before this record.
    before: &'a [u8; 32],
    last_in_segment: bool,
    seg: u64,
    off: usize,
}

/// Structural checks of one authentic record (header first, seal last and valid).
fn check_record(rec: &Record, c: &RecordCtx<'_>, trusted: &[PublicKey]) -> Option<Outcome> {
    let (h, seg, off) = (c.h, c.seg, c.off);
    let malformed = |detail: String| {
        Some(Outcome::Malformed {
            segment: seg,
            offset: off as u64,
            detail,
        })
    };
    match (&rec.body, rec.n) {
        (RecordBody::Header(hd), 0) if hd.session_id == h.session_id => None,
        (RecordBody::Header(_), 0) => malformed("header record names another session".into()),
        (RecordBody::Header(_), n) => malformed(format!("second header at record {n}")),
        (_, 0) => malformed("record 0 is not a session header".into()),
        (RecordBody::Seal(s), n) => {
            if !c.last_in_segment {
                return malformed(format!("records follow the seal (record {n})"));
            }
            let Some(fh) = unhex::<32>(&s.final_hash) else {
                return Some(Outcome::BadSeal {
                    detail: "final hash not hex".into(),
                });
            };
            let Some(sig) = unhex::<64>(&s.signature) else {
                return Some(Outcome::BadSeal {
                    detail: "signature not hex".into(),
                });
            };
            if s.records != n {
                return Some(Outcome::BadSeal {
                    detail: format!("seal counts {} records, it is record {n}", s.records),
                });
            }
            if fh != *c.before {
                return Some(Outcome::BadSeal {
                    detail: format!("seal final hash {} does not match the chain", s.final_hash),
                });
            }
            let msg = format::seal_message(&h.session_id, n, &fh);
            let ok = trusted
                .iter()
                .filter(|k| k.key_id().to_string() == s.key_id)
                .any(|k| k.verify(&msg, &sig));
            if ok {
                None
            } else {
                Some(Outcome::BadSeal {
                    detail: format!(
                        "seal signature does not verify under a trusted key (key id {})",
                        s.key_id
                    ),
                })
            }
        }
        _ => None,
    }
}

/// Verification of a whole sessions directory.
#[derive(Clone, Debug, Default)]
pub struct DirReport {
    /// One report per `*.dbws` file, sorted by name.
    pub sessions: Vec<VerifyReport>,
    /// Index problems and index/file mismatches.
    pub problems: Vec<IndexProblem>,
}

impl DirReport {
    /// Every session OK and no index problem.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty() && self.sessions.iter().all(VerifyReport::is_ok)
    }
}

/// Verifies every session file in `dir` and cross-checks them with the index.
///
/// # Errors
/// Only when the directory cannot be listed; everything else is a finding.
pub fn verify_dir(
    dir: impl AsRef<Path>,
    trusted: &[PublicKey],
    progress: &mut dyn FnMut(Progress),
) -> std::io::Result<DirReport> {
    let dir = dir.as_ref();
    let files = session_files(dir)?;
    let total: u64 = files.iter().map(|(_, len)| len).sum();
    let mut done = 0u64;
    let mut report = DirReport::default();
    let mut by_name = BTreeMap::new();
    for (path, len) in &files {
        let base = done;
        let r = verify_with_progress(path, trusted, &mut |p| {
            progress(Progress {
                done: base + p.done,
                total,
            });
        });
        done += len;
        progress(Progress { done, total });
        if let Some(name) = path.file_name() {
            by_name.insert(name.to_string_lossy().into_owned(), report.sessions.len());
        }
        report.sessions.push(r);
    }
    let index = match std::fs::read(dir.join(INDEX_FILE)) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if !files.is_empty() {
                report.problems.push(IndexProblem::IndexMissing);
            }
            return Ok(report);
        }
        Err(e) => return Err(e),
    };
    let (entries, mut problems) = check_index(&index, trusted);
    // Last authentic entry per session file.
    let mut last: BTreeMap<String, &crate::store::IndexEntry> = BTreeMap::new();
    for e in &entries {
        last.insert(e.file.clone(), e);
    }
    let mut known = BTreeSet::new();
    for (file, e) in &last {
        known.insert(file.clone());
        let Some(&i) = by_name.get(file) else {
            problems.push(IndexProblem::MissingFile {
                session_id: e.session_id,
                file: file.clone(),
            });
            continue;
        };
        let r = &report.sessions[i];
        let mut diffs = Vec::new();
        if r.session_id.is_some_and(|id| id != e.session_id) {
            diffs.push(format!(
                "file holds session {}",
                r.session_id.map(|s| s.to_string()).unwrap_or_default()
            ));
        }
        if e.kind == EntryKind::Sealed {
            if !r.sealed {
                diffs.push("index says sealed, file is not".into());
            }
            if e.final_hash.as_deref() != r.final_hash.map(|h| hex(&h)).as_deref() {
                diffs.push("final hash differs from the index".into());
            }
            if e.records != Some(r.records) {
                diffs.push(format!(
                    "index says {} records, file has {}",
                    e.records.unwrap_or(0),
                    r.records
                ));
            }
        }
        if !diffs.is_empty() {
            problems.push(IndexProblem::Replaced {
                session_id: e.session_id,
                file: file.clone(),
                detail: diffs.join("; "),
            });
        }
    }
    for name in by_name.keys() {
        if !known.contains(name) {
            problems.push(IndexProblem::NotInIndex { file: name.clone() });
        }
    }
    report.problems = problems;
    Ok(report)
}

/// `*.dbws` files in `dir`, sorted by name, with their sizes.
pub(crate) fn session_files(dir: &Path) -> std::io::Result<Vec<(PathBuf, u64)>> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let p = e.path();
        if p.extension().is_some_and(|x| x == format::SESSION_EXT) && e.file_type()?.is_file() {
            v.push((p, e.metadata()?.len()));
        }
    }
    v.sort();
    Ok(v)
}
