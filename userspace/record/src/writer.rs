//! Synchronous session writer: buffers records, cuts signed segments, seals.
//!
//! [`SessionWriter`] does blocking I/O and is meant to run on the recorder
//! thread ([`crate::Recorder`]); it is also usable directly (tests, tools).
//! A segment is written when [`SessionWriter::flush_if_due`] finds the flush
//! interval (1 s by default) elapsed, when the buffered payload reaches
//! `max_segment_bytes`, or on [`SessionWriter::flush_segment`]. Each segment
//! is written with a single `write_all` and, by default, `fdatasync`.
//!
//! Any write error closes the writer for good (fail closed): the file may hold
//! a partial segment, which verification reports as truncation.

use crate::error::{RecordError, Result};
use crate::format::{self, SegmentHeader, FORMAT_VERSION};
use crate::key::{HostKey, KeyId};
use crate::model::{
    Action, End, RecordBody, ResponseSummary, Rows, Seal, SessionHeader, SessionId, Totals,
    Truncation,
};
use crate::store::SessionStore;
use crate::util::{hex, hex_into};
use std::fs::File;
use std::io::{self, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};
use time::OffsetDateTime;

/// Where segments go: a `Write` that can also be made durable.
pub trait Sink: Write {
    /// Makes written data durable (fdatasync for files). Default: nothing.
    ///
    /// # Errors
    /// The underlying I/O error.
    fn sync(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Sink for File {
    fn sync(&mut self) -> io::Result<()> {
        self.sync_data()
    }
}

impl Sink for Vec<u8> {}

impl Sink for io::Cursor<Vec<u8>> {}

/// Discards everything (benchmarks, dry runs).
impl Sink for io::Sink {}

/// Per-statement cap on recorded result rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RowCap {
    /// Rows kept per statement.
    pub max_rows: u64,
    /// Cell bytes kept per statement.
    pub max_bytes: u64,
}

impl Default for RowCap {
    fn default() -> Self {
        Self {
            max_rows: 1000,
            max_bytes: 1 << 20,
        }
    }
}

/// Writer settings.
#[derive(Clone, Debug)]
pub struct WriterConfig {
    /// A segment is cut when this much time passed since the last one and
    /// records are pending (the crash-loss bound). Default 1 s.
    pub flush_interval: Duration,
    /// A segment is cut when the uncompressed payload reaches this size. Default 1 MiB.
    pub max_segment_bytes: usize,
    /// zstd level. Default 3.
    pub zstd_level: i32,
    /// Row cap per statement.
    pub row_cap: RowCap,
    /// `fdatasync` after every segment. Default true.
    pub fsync: bool,
}

impl Default for WriterConfig {
    fn default() -> Self {
        Self {
            flush_interval: Duration::from_secs(1),
            max_segment_bytes: 1 << 20,
            zstd_level: 3,
            row_cap: RowCap::default(),
            fsync: true,
        }
    }
}

/// What sealing produced (also what the index records).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealSummary {
    /// Session.
    pub session_id: SessionId,
    /// Records in the file, seal included.
    pub records: u64,
    /// Segments in the file.
    pub segments: u64,
    /// Chain hash after the seal record (the file's final hash).
    pub final_hash: [u8; 32],
    /// The seal's signature.
    pub seal_signature: [u8; 64],
    /// Signer.
    pub key_id: KeyId,
    /// Bytes written.
    pub bytes: u64,
    /// End-of-session counters.
    pub totals: Totals,
}

/// What a prepared record counts for in the totals and the row cap.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct PreparedEffect {
    /// It carries a statement.
    pub statement: bool,
    /// It carries a decision with this action.
    pub decision: Option<Action>,
    /// It carries `(stmt, rows, bytes)` of result rows, all kept.
    pub rows: Option<(u64, u64, u64)>,
}

#[derive(Default)]
struct CapState {
    stmt: Option<u64>,
    rows: u64,
    bytes: u64,
    cut: bool,
}

/// Writes one session.
pub struct SessionWriter<W: Sink> {
    /// `None` only after `into_inner`.
    out: Option<W>,
    key: Arc<HostKey>,
    cfg: WriterConfig,
    session: SessionId,
    next_n: u64,
    head: [u8; 32],
    seg_prev: [u8; 32],
    seg_first: u64,
    seg_count: u32,
    buf: Vec<u8>,
    seq: u64,
    last_flush: Instant,
    totals: Totals,
    cap: CapState,
    bytes: u64,
    closed: Option<String>,
    index: Option<(Arc<SessionStore>, String)>,
    compressor: zstd::bulk::Compressor<'static>,
    /// Segment assembly buffer, reused across segments (keeps about
    /// `compress_bound(max_segment_bytes)` allocated, like `buf` keeps its payload).
    seg_out: Vec<u8>,
}

impl<W: Sink> SessionWriter<W> {
    /// Starts a session: writes the header as record 0 and flushes it as
    /// segment 0 right away, so even a session that dies at once is on disk.
    ///
    /// # Errors
    /// Serialisation, compression or write errors.
    pub fn new(
        out: W,
        header: SessionHeader,
        key: Arc<HostKey>,
        cfg: WriterConfig,
    ) -> Result<Self> {
        let mut compressor =
            zstd::bulk::Compressor::new(cfg.zstd_level).map_err(|e| RecordError::Sink {
                op: "create zstd compressor",
                source: e,
            })?;
        compressor
            .set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true))
            .map_err(|e| RecordError::Sink {
                op: "configure zstd",
                source: e,
            })?;
        let session = header.session_id;
        let g = format::genesis(&session);
        let mut w = Self {
            out: Some(out),
            key,
            cfg,
            session,
            next_n: 0,
            head: g,
            seg_prev: g,
            seg_first: 0,
            seg_count: 0,
            buf: Vec::new(),
            seq: 0,
            last_flush: Instant::now(),
            totals: Totals::default(),
            cap: CapState::default(),
            bytes: 0,
            closed: None,
            index: None,
            compressor,
            seg_out: Vec::new(),
        };
        let ts = header.start;
        w.push(ts, RecordBody::Header(Box::new(header)))?;
        w.flush_segment()?;
        Ok(w)
    }

    pub(crate) fn set_index(&mut self, store: Arc<SessionStore>, file_name: String) {
        self.index = Some((store, file_name));
    }

    /// Session id.
    pub fn session_id(&self) -> SessionId {
        self.session
    }

    /// Records appended so far (header included).
    pub fn records(&self) -> u64 {
        self.next_n
    }

    /// Counters so far.
    pub fn totals(&self) -> Totals {
        self.totals
    }

    /// Appends a record. `Rows` are cut to the configured [`RowCap`] (a cut
    /// batch carries a [`Truncation`]; later batches of that statement are
    /// counted in `rows_cut` and not written).
    ///
    /// # Errors
    /// [`RecordError::InvalidRecord`] for header/end/seal bodies (the writer
    /// writes those), [`RecordError::Closed`] after seal or an earlier
    /// failure, and write errors when a segment is cut.
    pub fn append(&mut self, ts: OffsetDateTime, body: RecordBody) -> Result<()> {
        self.check_open()?;
        let body = match body {
            RecordBody::Header(_) | RecordBody::End(_) | RecordBody::Seal(_) => {
                return Err(RecordError::InvalidRecord(format!(
                    "{} records are written by the writer itself",
                    body.kind()
                )))
            }
            RecordBody::Rows(rows) => match self.apply_cap(rows) {
                Some(r) => RecordBody::Rows(r),
                None => return Ok(()),
            },
            RecordBody::Response(mut resp) => {
                self.cap_response(&mut resp);
                RecordBody::Response(resp)
            }
            RecordBody::Exchange(mut x) => {
                self.cap_response(&mut x.response);
                RecordBody::Exchange(x)
            }
            other => other,
        };
        if body.statement().is_some() {
            self.totals.statements += 1;
        }
        match body.decision().map(|d| d.action) {
            Some(Action::Deny) => self.totals.denied += 1,
            Some(Action::Hold) => self.totals.held += 1,
            _ => {}
        }
        if let RecordBody::Gap(g) = &body {
            self.totals.dropped += g.dropped;
        }
        self.push(ts, body)?;
        if self.buf.len() >= self.cfg.max_segment_bytes {
            self.flush_segment()?;
        }
        Ok(())
    }

    /// Rows carried by a response obey the same per-statement cap as `rows` records.
    fn cap_response(&mut self, resp: &mut ResponseSummary) {
        if resp.data.is_empty() {
            return;
        }
        let rows = Rows {
            stmt: resp.stmt,
            columns: Vec::new(),
            rows: std::mem::take(&mut resp.data),
            truncated: None,
        };
        if let Some(kept) = self.apply_cap(rows) {
            resp.data = kept.rows;
            resp.truncated = kept.truncated;
        }
    }

    fn apply_cap(&mut self, mut rows: Rows) -> Option<Rows> {
        if self.cap.stmt != Some(rows.stmt) {
            self.cap = CapState {
                stmt: Some(rows.stmt),
                ..CapState::default()
            };
        }
        if self.cap.cut {
            self.totals.rows_cut += rows.rows.len() as u64;
            return None;
        }
        let cap = self.cfg.row_cap;
        let mut keep = 0;
        for row in &rows.rows {
            let b: u64 = row
                .iter()
                .map(|c| c.as_ref().map_or(0, |s| s.len() as u64))
                .sum();
            if self.cap.rows + 1 > cap.max_rows || self.cap.bytes + b > cap.max_bytes {
                self.cap.cut = true;
                break;
            }
            self.cap.rows += 1;
            self.cap.bytes += b;
            keep += 1;
        }
        if self.cap.cut {
            self.totals.rows_cut += (rows.rows.len() - keep) as u64;
            rows.rows.truncate(keep);
            rows.truncated = Some(Truncation {
                after_rows: self.cap.rows,
                after_bytes: self.cap.bytes,
                cap_rows: cap.max_rows,
                cap_bytes: cap.max_bytes,
            });
        } else {
            rows.truncated = None;
        }
        self.totals.rows_recorded += keep as u64;
        Some(rows)
    }

    fn check_open(&self) -> Result<()> {
        match &self.closed {
            Some(why) => Err(RecordError::Closed(why.clone())),
            None => Ok(()),
        }
    }

    fn push(&mut self, ts: OffsetDateTime, body: RecordBody) -> Result<()> {
        let n = self.next_n;
        self.push_with(|out| format::write_record_json(out, n, ts, &body))
    }

    /// Appends one line whose JSON `write` puts into the segment buffer: a 64-byte hash
    /// placeholder and a space, the JSON, then the chain hash over that JSON written over the
    /// placeholder. On error the buffer is restored.
    fn push_with(
        &mut self,
        write: impl FnOnce(&mut Vec<u8>) -> std::result::Result<(), serde_json::Error>,
    ) -> Result<()> {
        let line_at = self.buf.len();
        self.buf.resize(line_at + 65, b' ');
        let json_at = self.buf.len();
        if let Err(e) = write(&mut self.buf) {
            self.buf.truncate(line_at);
            return Err(RecordError::Serialize(e));
        }
        self.head = format::chain(&self.head, &self.buf[json_at..]);
        hex_into(&mut self.buf[line_at..json_at], &self.head);
        self.buf.push(b'\n');
        self.next_n += 1;
        self.seg_count += 1;
        Ok(())
    }

    /// Appends a record whose body the recorder's caller serialised ahead (see
    /// [`crate::json::Prepared`]): `write_body` writes `,"type":…}`, and `effect` says what
    /// it counts for, exactly as [`Self::append`] would have counted the equivalent body.
    pub(crate) fn append_prepared(
        &mut self,
        ts: OffsetDateTime,
        effect: PreparedEffect,
        write_body: impl FnOnce(&mut Vec<u8>),
    ) -> Result<()> {
        self.check_open()?;
        if effect.statement {
            self.totals.statements += 1;
        }
        match effect.decision {
            Some(Action::Deny) => self.totals.denied += 1,
            Some(Action::Hold) => self.totals.held += 1,
            _ => {}
        }
        if let Some((stmt, rows, bytes)) = effect.rows.filter(|r| r.1 > 0) {
            // What `apply_cap` does for a fresh statement whose rows all fit.
            self.cap = CapState {
                stmt: Some(stmt),
                rows,
                bytes,
                cut: false,
            };
            self.totals.rows_recorded += rows;
        }
        let n = self.next_n;
        self.push_with(|out| {
            format::write_record_prefix(out, n, ts)?;
            write_body(out);
            Ok(())
        })?;
        if self.buf.len() >= self.cfg.max_segment_bytes {
            self.flush_segment()?;
        }
        Ok(())
    }

    /// The per-statement row cap.
    pub fn row_cap(&self) -> RowCap {
        self.cfg.row_cap
    }

    /// Cuts a segment if records are pending and the flush interval elapsed.
    /// Returns whether a segment was written.
    ///
    /// # Errors
    /// Write errors (the writer is then closed).
    pub fn flush_if_due(&mut self, now: Instant) -> Result<bool> {
        if self.seg_count > 0 && now.duration_since(self.last_flush) >= self.cfg.flush_interval {
            self.flush_segment()?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Time until the pending records must be flushed (`None` if nothing pending).
    pub fn flush_deadline(&self) -> Option<Instant> {
        (self.seg_count > 0).then(|| self.last_flush + self.cfg.flush_interval)
    }

    /// Writes pending records as one signed segment (no-op when none are pending).
    ///
    /// # Errors
    /// Compression or write errors (the writer is then closed).
    pub fn flush_segment(&mut self) -> Result<()> {
        self.check_open()?;
        if self.seg_count == 0 {
            return Ok(());
        }
        let r = self.write_segment();
        if let Err(e) = &r {
            self.closed = Some(format!("segment write failed: {e}"));
        }
        r
    }

    fn write_segment(&mut self) -> Result<()> {
        // The segment is assembled in `seg_out`, reused across segments (a
        // fresh multi-megabyte buffer per segment costs page faults): header
        // frame placeholder, then the compressed payload written right after
        // it, then the header filled in. One `write_all` per segment.
        const FRAME_LEN: usize = 8 + format::SEGMENT_HEADER_LEN;
        self.seg_out.clear();
        self.seg_out.resize(FRAME_LEN, 0);
        self.seg_out
            .reserve(zstd::zstd_safe::compress_bound(self.buf.len()));
        let mut dst = io::Cursor::new(&mut self.seg_out);
        dst.set_position(FRAME_LEN as u64);
        self.compressor
            .compress_to_buffer(&self.buf, &mut dst)
            .map_err(|e| RecordError::Sink {
                op: "compress segment",
                source: e,
            })?;
        let payload = &self.seg_out[FRAME_LEN..];
        let too_big = |what| {
            RecordError::InvalidRecord(format!(
                "segment {what} exceeds {} bytes",
                format::MAX_PAYLOAD
            ))
        };
        let raw_len = u32::try_from(self.buf.len())
            .ok()
            .filter(|&l| l <= format::MAX_PAYLOAD)
            .ok_or_else(|| too_big("payload"))?;
        let payload_len = u32::try_from(payload.len())
            .ok()
            .filter(|&l| l <= format::MAX_PAYLOAD)
            .ok_or_else(|| too_big("compressed payload"))?;
        let mut h = SegmentHeader {
            version: FORMAT_VERSION,
            session_id: self.session,
            seq: self.seq,
            first_record: self.seg_first,
            record_count: self.seg_count,
            raw_len,
            payload_len,
            prev_head: self.seg_prev,
            head: self.head,
            payload_hash: crate::util::sha256(&[payload]),
            key_id: self.key.key_id(),
            signature: [0; 64],
        };
        h.sign(&self.key);
        self.seg_out[..FRAME_LEN].copy_from_slice(&h.to_frame());
        let out = &self.seg_out;
        let sink = self
            .out
            .as_mut()
            .ok_or_else(|| RecordError::Closed("sink already taken".into()))?;
        sink.write_all(out)
            .and_then(|()| sink.flush())
            .map_err(|e| RecordError::Sink {
                op: "write segment",
                source: e,
            })?;
        if self.cfg.fsync {
            sink.sync().map_err(|e| RecordError::Sink {
                op: "sync session file",
                source: e,
            })?;
        }
        self.bytes += out.len() as u64;
        self.buf.clear();
        self.seg_prev = self.head;
        self.seg_first = self.next_n;
        self.seg_count = 0;
        self.seq += 1;
        self.last_flush = Instant::now();
        Ok(())
    }

    /// Ends the session: writes the end record (reason + totals) and the
    /// signed seal, flushes, and (for sessions from a [`SessionStore`])
    /// appends the "sealed" index entry. The writer is closed afterwards.
    ///
    /// # Errors
    /// Write errors; index append errors (the file itself is sealed then).
    pub fn seal(&mut self, ts: OffsetDateTime, reason: &str) -> Result<SealSummary> {
        self.check_open()?;
        let totals = self.totals;
        self.push(
            ts,
            RecordBody::End(End {
                reason: reason.to_owned(),
                totals,
            }),
        )?;
        let records = self.next_n;
        let final_hash = self.head;
        let sig = self
            .key
            .sign(&format::seal_message(&self.session, records, &final_hash));
        self.push(
            ts,
            RecordBody::Seal(Seal {
                records,
                final_hash: hex(&final_hash),
                key_id: self.key.key_id().to_string(),
                signature: hex(&sig),
            }),
        )?;
        self.flush_segment()?;
        self.closed = Some("session is sealed".into());
        let summary = SealSummary {
            session_id: self.session,
            records: self.next_n,
            segments: self.seq,
            final_hash: self.head,
            seal_signature: sig,
            key_id: self.key.key_id(),
            bytes: self.bytes,
            totals,
        };
        if let Some((store, name)) = self.index.take() {
            store.append_sealed(&summary, &name)?;
        }
        Ok(summary)
    }

    /// Gives back the sink (e.g. the `Vec<u8>` of an in-memory session),
    /// after flushing pending records (best effort; the session stays unsealed
    /// unless [`Self::seal`] was called).
    pub fn into_inner(mut self) -> W {
        let _ = self.flush_segment();
        self.closed = Some("consumed".into());
        match self.out.take() {
            Some(out) => out,
            // `out` is only taken here, and `self` is consumed.
            None => unreachable!("session writer sink taken twice"),
        }
    }
}

impl<W: Sink> Drop for SessionWriter<W> {
    /// Flushes pending records (best effort) but does NOT seal: a session
    /// whose writer was dropped without [`SessionWriter::seal`] reads back as
    /// "ended abnormally", which is the truth.
    fn drop(&mut self) {
        if self.out.is_some() && self.closed.is_none() {
            let _ = self.flush_segment();
        }
    }
}
