//! Lenient reading of a session file (no signature checks: use
//! [`crate::verify()`] for that). Truncated or damaged files yield every record
//! before the damage plus a note saying what stopped the reader.

use crate::error::{RecordError, Result};
use crate::format::{self, FrameAt, HeaderAt};
use crate::model::{End, Record, RecordBody, Seal, SessionHeader};
use std::path::{Path, PathBuf};

/// A decoded session.
#[derive(Clone, Debug)]
pub struct Session {
    /// The file read.
    pub path: PathBuf,
    /// Record 0.
    pub header: SessionHeader,
    /// All readable records, header included, in file order.
    pub records: Vec<Record>,
    /// A seal record closes the file (not verified here).
    pub sealed: bool,
    /// Why reading stopped early, or oddities seen (empty for a clean file).
    pub notes: Vec<String>,
    /// File size in bytes.
    pub file_bytes: u64,
}

impl Session {
    /// The end record, if any.
    pub fn end(&self) -> Option<&End> {
        self.records.iter().rev().find_map(|r| match &r.body {
            RecordBody::End(e) => Some(e),
            _ => None,
        })
    }

    /// The seal record, if any.
    pub fn seal(&self) -> Option<&Seal> {
        self.records.iter().rev().find_map(|r| match &r.body {
            RecordBody::Seal(s) => Some(s),
            _ => None,
        })
    }
}

/// Reads a session file.
///
/// # Errors
/// When the file cannot be read or not even the header record is readable.
pub fn read_session(path: impl AsRef<Path>) -> Result<Session> {
    let path = path.as_ref();
    let data = std::fs::read(path).map_err(|e| RecordError::io("read session file", path, e))?;
    read_session_bytes(path, &data)
}

/// Reads a session from memory (`path` is only used in messages).
///
/// # Errors
/// When not even the header record is readable.
pub fn read_session_bytes(path: &Path, data: &[u8]) -> Result<Session> {
    let mut records: Vec<Record> = Vec::new();
    let mut notes = Vec::new();
    let mut off = 0usize;
    let mut session = None;
    let mut head = [0u8; 32];
    let mut seg = 0u64;
    'outer: loop {
        let (h, poff) = match format::header_at(data, off) {
            HeaderAt::End => break,
            HeaderAt::Truncated { have } => {
                notes.push(format!(
                    "file ends inside a segment header ({have} bytes ignored)"
                ));
                break;
            }
            HeaderAt::Malformed(d) => {
                notes.push(format!("segment {seg} at byte {off}: {d}"));
                break;
            }
            HeaderAt::Header {
                header,
                payload_offset,
            } => (header, payload_offset),
        };
        match session {
            None => {
                session = Some(h.session_id);
                head = format::genesis(&h.session_id);
            }
            Some(id) if id != h.session_id => {
                notes.push(format!(
                    "segment {seg} belongs to another session ({}); stopped",
                    h.session_id
                ));
                break;
            }
            Some(_) => {}
        }
        let len = match format::payload_frame(data, poff, h.payload_len) {
            FrameAt::Frame(n) => n,
            FrameAt::Truncated => {
                notes.push(format!(
                    "file ends inside segment {seg} ({} bytes ignored)",
                    data.len() - off
                ));
                break;
            }
            FrameAt::Bad(d) => {
                notes.push(format!("segment {seg}: {d}"));
                break;
            }
        };
        let raw = match format::decompress(&data[poff..poff + len]) {
            Ok(r) => r,
            Err(d) => {
                notes.push(format!("segment {seg}: {d}"));
                break;
            }
        };
        let lines = match format::lines(&raw) {
            Ok(l) => l,
            Err(d) => {
                notes.push(format!("segment {seg}: {d}"));
                break;
            }
        };
        for line in lines {
            let parsed = format::split_line(line)
                .map_err(str::to_owned)
                .and_then(|(h, j)| {
                    serde_json::from_slice::<Record>(j)
                        .map(|r| (h, j, r))
                        .map_err(|e| e.to_string())
                });
            match parsed {
                Ok((stored, json, rec)) => {
                    head = format::chain(&head, json);
                    if stored != head {
                        notes.push(format!("record {}: hash mismatch (run verify)", rec.n));
                        head = stored;
                    }
                    records.push(rec);
                }
                Err(e) => {
                    notes.push(format!("segment {seg}: unreadable record: {e}"));
                    break 'outer;
                }
            }
        }
        off = poff + len;
        seg += 1;
    }
    let header = match records.first().map(|r| &r.body) {
        Some(RecordBody::Header(h)) => (**h).clone(),
        _ => {
            return Err(RecordError::Format {
                path: path.into(),
                reason: format!(
                    "no readable session header{}",
                    notes.first().map(|n| format!(": {n}")).unwrap_or_default()
                ),
            })
        }
    };
    let sealed = records
        .last()
        .is_some_and(|r| matches!(r.body, RecordBody::Seal(_)));
    if !sealed {
        notes.push(format!(
            "no seal: session ended abnormally after record {}",
            records.last().map_or(0, |r| r.n)
        ));
    }
    Ok(Session {
        path: path.into(),
        header,
        records,
        sealed,
        notes,
        file_bytes: data.len() as u64,
    })
}
