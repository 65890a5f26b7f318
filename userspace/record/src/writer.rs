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

use crate::chain::{Chain, Cut};
use crate::error::{RecordError, Result};
use crate::format::{self, SegmentHeader, FORMAT_VERSION};
use crate::key::{HostKey, KeyId};
use crate::model::{RecordBody, SessionHeader, SessionId, Totals};
use crate::store::SessionStore;
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

/// The output half of a session file: compresses, signs and writes the segments made of the
/// chunks cut from its [`Chain`], and appends the index entry once the session is sealed.
///
/// Chunks are compressed as they come, into one streaming zstd frame per segment: the
/// session's chunk buffers stay small and hot in cache, and signing and syncing still happen
/// once per segment.
pub(crate) struct SegmentOut<W: Sink> {
    /// `None` only after [`SessionWriter::into_inner`].
    out: Option<W>,
    key: Arc<HostKey>,
    session: SessionId,
    seq: u64,
    bytes: u64,
    fsync: bool,
    index: Option<(Arc<SessionStore>, String)>,
    cctx: zstd::zstd_safe::CCtx<'static>,
    /// The segment being assembled: header frame placeholder, then the compressed payload so
    /// far. Reused across segments.
    seg_out: Vec<u8>,
    /// Largest `seg_out` kept between segments.
    keep: usize,
    /// The open segment, if a chunk was fed since the last one was written.
    open: Option<OpenSegment>,
}

/// What the open segment holds so far.
struct OpenSegment {
    first_record: u64,
    count: u32,
    raw_len: usize,
    prev_head: [u8; 32],
    head: [u8; 32],
    /// When its oldest record was cut (the flush clock).
    since: Instant,
}

const FRAME_LEN: usize = 8 + format::SEGMENT_HEADER_LEN;

fn zstd_err(op: &'static str) -> impl Fn(usize) -> RecordError {
    move |code| RecordError::Sink {
        op,
        source: io::Error::other(zstd::zstd_safe::get_error_name(code)),
    }
}

impl<W: Sink> SegmentOut<W> {
    fn new(out: W, key: Arc<HostKey>, session: SessionId, cfg: &WriterConfig) -> Result<Self> {
        use zstd::zstd_safe::CParameter;
        let mut cctx = zstd::zstd_safe::CCtx::try_create().ok_or_else(|| RecordError::Sink {
            op: "create zstd compressor",
            source: io::Error::other("out of memory"),
        })?;
        for p in [
            CParameter::CompressionLevel(cfg.zstd_level),
            // No zstd content checksum: the signed segment header holds the SHA-256 of the
            // compressed bytes, and every record line its chain hash.
            CParameter::ChecksumFlag(false),
            // A 128 KiB window and a 4 KiB match table: records repeat within a few KiB, and
            // small tables stay in cache. On recorded pgbench sessions this compresses about
            // 6 % better than level 1's defaults, and faster.
            CParameter::WindowLog(17),
            CParameter::HashLog(10),
            CParameter::MinMatch(7),
        ] {
            cctx.set_parameter(p).map_err(zstd_err("configure zstd"))?;
        }
        Ok(Self {
            out: Some(out),
            key,
            session,
            seq: 0,
            bytes: 0,
            fsync: cfg.fsync,
            index: None,
            cctx,
            seg_out: Vec::new(),
            keep: 4 * (FRAME_LEN + zstd::zstd_safe::compress_bound(cfg.max_segment_bytes)),
            open: None,
        })
    }

    pub(crate) fn key(&self) -> &Arc<HostKey> {
        &self.key
    }

    pub(crate) fn session(&self) -> SessionId {
        self.session
    }

    /// Uncompressed bytes in the open segment.
    pub(crate) fn open_len(&self) -> usize {
        self.open.as_ref().map_or(0, |o| o.raw_len)
    }

    /// When the oldest record of the open segment was cut.
    pub(crate) fn open_since(&self) -> Option<Instant> {
        self.open.as_ref().map(|o| o.since)
    }

    /// Compresses a chunk into the open segment (opening one if needed). `since`: when its
    /// oldest record was cut.
    pub(crate) fn feed(&mut self, cut: &Cut, since: Instant) -> Result<()> {
        use zstd::zstd_safe::{zstd_sys::ZSTD_EndDirective, InBuffer, OutBuffer};
        match &mut self.open {
            Some(o) => {
                o.count = o.count.saturating_add(cut.count);
                o.raw_len += cut.raw.len();
                o.head = cut.head;
                o.since = o.since.min(since);
            }
            None => {
                self.seg_out.clear();
                self.seg_out.resize(FRAME_LEN, 0);
                self.open = Some(OpenSegment {
                    first_record: cut.first_record,
                    count: cut.count,
                    raw_len: cut.raw.len(),
                    prev_head: cut.prev_head,
                    head: cut.head,
                    since,
                });
            }
        }
        let mut input = InBuffer::around(&cut.raw);
        while input.pos() < cut.raw.len() {
            self.seg_out
                .reserve(zstd::zstd_safe::compress_bound(cut.raw.len() - input.pos()));
            let at = self.seg_out.len();
            let mut out = OutBuffer::around_pos(&mut self.seg_out, at);
            self.cctx
                .compress_stream2(&mut out, &mut input, ZSTD_EndDirective::ZSTD_e_continue)
                .map_err(zstd_err("compress segment"))?;
        }
        Ok(())
    }

    /// Ends the open segment (if any) and writes it: header frame, then the compressed
    /// payload, in one `write_all`, then (by default) `fdatasync`.
    pub(crate) fn end_segment(&mut self) -> Result<()> {
        let Some(seg) = self.open.take() else {
            return Ok(());
        };
        loop {
            self.seg_out.reserve(1 << 12);
            let at = self.seg_out.len();
            let mut out = zstd::zstd_safe::OutBuffer::around_pos(&mut self.seg_out, at);
            let left = self
                .cctx
                .end_stream(&mut out)
                .map_err(zstd_err("compress segment"))?;
            if left == 0 {
                break;
            }
        }
        let payload = &self.seg_out[FRAME_LEN..];
        let too_big = |what| {
            RecordError::InvalidRecord(format!(
                "segment {what} exceeds {} bytes",
                format::MAX_PAYLOAD
            ))
        };
        let raw_len = u32::try_from(seg.raw_len)
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
            first_record: seg.first_record,
            record_count: seg.count,
            raw_len,
            payload_len,
            prev_head: seg.prev_head,
            head: seg.head,
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
        if self.fsync {
            sink.sync().map_err(|e| RecordError::Sink {
                op: "sync session file",
                source: e,
            })?;
        }
        self.bytes += out.len() as u64;
        self.seq += 1;
        if self.seg_out.capacity() > self.keep {
            // Grown by a huge record: not kept for ordinary segments.
            self.seg_out = Vec::new();
        }
        Ok(())
    }

    /// Feeds a chunk, ending the open segment first when the chunk would take it past
    /// `max_bytes`, and after it when it reached `max_bytes`.
    pub(crate) fn add(&mut self, cut: &Cut, since: Instant, max_bytes: usize) -> Result<()> {
        if self.open_len() > 0 && self.open_len() + cut.raw.len() > max_bytes {
            self.end_segment()?;
        }
        self.feed(cut, since)?;
        if self.open_len() >= max_bytes {
            self.end_segment()?;
        }
        Ok(())
    }

    /// The seal's summary, and the "sealed" index entry for sessions from a [`SessionStore`].
    pub(crate) fn sealed(
        &mut self,
        chain: &Chain,
        seal_signature: [u8; 64],
        totals: Totals,
    ) -> Result<SealSummary> {
        let summary = SealSummary {
            session_id: self.session,
            records: chain.records(),
            segments: self.seq,
            final_hash: chain.head(),
            seal_signature,
            key_id: self.key.key_id(),
            bytes: self.bytes,
            totals,
        };
        if let Some((store, name)) = self.index.take() {
            store.append_sealed(&summary, &name)?;
        }
        Ok(summary)
    }
}

/// Writes one session.
pub struct SessionWriter<W: Sink> {
    chain: Chain,
    /// `None` only after `into_inner` or `into_parts`.
    out: Option<SegmentOut<W>>,
    cfg: WriterConfig,
    last_flush: Instant,
    closed: Option<String>,
    /// A written payload's buffer, recycled as the next one.
    spare: Vec<u8>,
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
        let session = header.session_id;
        let out = SegmentOut::new(out, key, session, &cfg)?;
        let mut chain = Chain::new(&session, cfg.row_cap);
        chain.header(header)?;
        let mut w = Self {
            chain,
            out: Some(out),
            cfg,
            last_flush: Instant::now(),
            closed: None,
            spare: Vec::new(),
        };
        w.flush_segment()?;
        Ok(w)
    }

    pub(crate) fn set_index(&mut self, store: Arc<SessionStore>, file_name: String) {
        if let Some(o) = &mut self.out {
            o.index = Some((store, file_name));
        }
    }

    /// Splits the writer for [`crate::Recorder`]: the chain (with any records still
    /// buffered), the output, the settings, and why the writer is closed if it is.
    pub(crate) fn into_parts(
        mut self,
    ) -> (Chain, Option<SegmentOut<W>>, WriterConfig, Option<String>) {
        let chain = std::mem::replace(
            &mut self.chain,
            Chain::new(&SessionId([0; 16]), self.cfg.row_cap),
        );
        let closed = self.closed.take();
        self.closed = Some("split into a recorder".into());
        (chain, self.out.take(), self.cfg.clone(), closed)
    }

    /// Session id.
    pub fn session_id(&self) -> SessionId {
        self.out
            .as_ref()
            .map_or(SessionId([0; 16]), SegmentOut::session)
    }

    /// Records appended so far (header included).
    pub fn records(&self) -> u64 {
        self.chain.records()
    }

    /// Counters so far.
    pub fn totals(&self) -> Totals {
        self.chain.totals()
    }

    /// Appends a record. `Rows` are cut to the configured [`RowCap`] (a cut
    /// batch carries a [`crate::Truncation`]; later batches of that statement are
    /// counted in `rows_cut` and not written).
    ///
    /// # Errors
    /// [`RecordError::InvalidRecord`] for header/end/seal bodies (the writer
    /// writes those), [`RecordError::Closed`] after seal or an earlier
    /// failure, and write errors when a segment is cut.
    pub fn append(&mut self, ts: OffsetDateTime, body: RecordBody) -> Result<()> {
        self.check_open()?;
        self.chain.append(ts.into(), body)?;
        if self.chain.buffered() >= self.cfg.max_segment_bytes {
            self.flush_segment()?;
        }
        Ok(())
    }

    fn check_open(&self) -> Result<()> {
        match &self.closed {
            Some(why) => Err(RecordError::Closed(why.clone())),
            None => Ok(()),
        }
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
        if self.chain.pending() > 0
            && now.duration_since(self.last_flush) >= self.cfg.flush_interval
        {
            self.flush_segment()?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Time until the pending records must be flushed (`None` if nothing pending).
    pub fn flush_deadline(&self) -> Option<Instant> {
        (self.chain.pending() > 0).then(|| self.last_flush + self.cfg.flush_interval)
    }

    /// Writes pending records as one signed segment (no-op when none are pending).
    ///
    /// # Errors
    /// Compression or write errors (the writer is then closed).
    pub fn flush_segment(&mut self) -> Result<()> {
        self.check_open()?;
        let Some(cut) = self.chain.cut(std::mem::take(&mut self.spare)) else {
            return Ok(());
        };
        let r = match &mut self.out {
            Some(o) => o.feed(&cut, Instant::now()).and_then(|()| o.end_segment()),
            None => Err(RecordError::Closed("sink already taken".into())),
        };
        if cut.raw.capacity() <= 4 * self.cfg.max_segment_bytes {
            self.spare = cut.raw;
        }
        if let Err(e) = &r {
            self.closed = Some(format!("segment write failed: {e}"));
        }
        self.last_flush = Instant::now();
        r
    }

    /// Ends the session: writes the end record (reason + totals) and the
    /// signed seal, flushes, and (for sessions from a [`SessionStore`])
    /// appends the "sealed" index entry. The writer is closed afterwards.
    ///
    /// # Errors
    /// Write errors; index append errors (the file itself is sealed then).
    pub fn seal(&mut self, ts: OffsetDateTime, reason: &str) -> Result<SealSummary> {
        self.check_open()?;
        let out = self
            .out
            .as_mut()
            .ok_or_else(|| RecordError::Closed("sink already taken".into()))?;
        let totals = self.chain.totals();
        let session = out.session();
        let sig = self.chain.seal(&session, out.key(), ts.into(), reason)?;
        self.flush_segment()?;
        self.closed = Some("session is sealed".into());
        match &mut self.out {
            Some(o) => o.sealed(&self.chain, sig, totals),
            None => Err(RecordError::Closed("sink already taken".into())),
        }
    }

    /// Gives back the sink (e.g. the `Vec<u8>` of an in-memory session),
    /// after flushing pending records (best effort; the session stays unsealed
    /// unless [`Self::seal`] was called).
    pub fn into_inner(mut self) -> W {
        let _ = self.flush_segment();
        self.closed = Some("consumed".into());
        match self.out.take().and_then(|mut o| o.out.take()) {
            Some(out) => out,
            // `out` is only taken here and by `into_parts`, and `self` is consumed.
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
