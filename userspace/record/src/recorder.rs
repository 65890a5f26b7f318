//! Off-the-hot-path recording: a bounded queue feeding a writer thread.
//!
//! The session task hands records to [`Recorder`]; a dedicated std thread
//! owns the [`SessionWriter`], cuts a segment whenever the flush interval has
//! passed with records pending, and seals on [`Recorder::finish`].
//!
//! When the queue is full, [`OnFull`] decides:
//! - `Block` (default, fail closed): [`Recorder::record`] blocks until there
//!   is room. **Do not call it on an async executor thread**: call it from
//!   `spawn_blocking`, or use [`Recorder::try_record`] (never blocks, gives
//!   the record back when full) and wait/retry asynchronously yourself.
//! - `Drop`: the record is discarded and counted; the writer writes a
//!   [`crate::Gap`] record with the count before the next record. Never silent.
//!
//! If the writer fails (disk full, I/O error) every later call returns
//! [`RecorderError::WriterFailed`]: the daemon must then block the session.

use crate::error::RecordError;
use crate::json::{write_exchange_body, Prepared, PreparedKind};
use crate::model::{Gap, RecordBody};
use crate::writer::{PreparedEffect, RowCap, SealSummary, SessionWriter, Sink};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{
    sync_channel, Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError,
};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use time::OffsetDateTime;

/// Queue-full behaviour.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnFull {
    /// The caller waits (default).
    #[default]
    Block,
    /// The record is dropped and counted into a gap record.
    Drop,
}

/// Recorder settings.
#[derive(Clone, Copy, Debug)]
pub struct RecorderConfig {
    /// Queue capacity in records. Default 4096.
    pub queue: usize,
    /// Queue-full behaviour.
    pub on_full: OnFull,
}

impl Default for RecorderConfig {
    fn default() -> Self {
        Self {
            queue: 4096,
            on_full: OnFull::Block,
        }
    }
}

/// Recorder errors.
#[derive(Debug, thiserror::Error)]
pub enum RecorderError {
    /// The writer thread stopped (write error or already finished).
    #[error("session recorder failed: {0}")]
    WriterFailed(String),
    /// Spawning the writer thread failed.
    #[error("spawn recorder thread")]
    Spawn(#[source] std::io::Error),
    /// Sealing failed.
    #[error("seal session")]
    Seal(#[source] RecordError),
}

/// What [`Recorder::record`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recorded {
    /// Queued for writing.
    Queued,
    /// Dropped (queue full, `OnFull::Drop`); counted into a gap record.
    Dropped,
}

/// Error of [`Recorder::try_record`].
#[derive(Debug)]
pub enum TryRecordError {
    /// The queue is full; the record is handed back.
    Full(Box<RecordBody>),
    /// The writer failed.
    Failed(RecorderError),
}

enum Msg {
    Record(OffsetDateTime, RecordBody),
    /// A body serialised by the caller (see [`Prepared`]).
    Pre(OffsetDateTime, Prepared),
    Flush,
    Finish(OffsetDateTime, String),
}

type Failure = Arc<Mutex<Option<String>>>;

/// Handle to a session's writer thread.
pub struct Recorder {
    tx: Option<SyncSender<Msg>>,
    dropped: Arc<AtomicU64>,
    failure: Failure,
    thread: Option<JoinHandle<Result<SealSummary, RecordError>>>,
    on_full: OnFull,
    row_cap: RowCap,
    /// 1 + the statement of the last `rows` record queued (0: none): a response of that
    /// statement meets a row cap already in use, so the writer must apply it.
    rows_stmt: AtomicU64,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("on_full", &self.on_full)
            .finish_non_exhaustive()
    }
}

impl Recorder {
    /// Starts the writer thread for `writer`.
    ///
    /// # Errors
    /// [`RecorderError::Spawn`] if the thread cannot be created.
    pub fn start<W: Sink + Send + 'static>(
        writer: SessionWriter<W>,
        cfg: RecorderConfig,
    ) -> Result<Self, RecorderError> {
        let row_cap = writer.row_cap();
        let (tx, rx) = sync_channel(cfg.queue.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        let failure: Failure = Arc::default();
        let (d, fl) = (Arc::clone(&dropped), Arc::clone(&failure));
        let thread = std::thread::Builder::new()
            .name(format!("dbw-rec-{}", &writer.session_id().to_string()[..8]))
            .spawn(move || {
                let r = run(writer, &rx, &d);
                if let Err(e) = &r {
                    *fl.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
                        Some(error_chain(e));
                }
                r
            })
            .map_err(RecorderError::Spawn)?;
        Ok(Self {
            tx: Some(tx),
            dropped,
            failure,
            thread: Some(thread),
            on_full: cfg.on_full,
            row_cap,
            rows_stmt: AtomicU64::new(0),
        })
    }

    /// Serialises a statement, decision or response here, on the caller's thread, while its
    /// strings are still in this core's cache: the writer thread then reads one contiguous
    /// buffer instead of chasing a dozen cold allocations. A response whose rows the cap
    /// might cut is left to the writer, which keeps the cap's state.
    fn prepare(&self, body: &RecordBody) -> Option<Prepared> {
        match body {
            RecordBody::Statement(s) => Some(Prepared::statement(s)),
            RecordBody::Decision(d) => Some(Prepared::decision(d)),
            RecordBody::Response(r) => {
                if r.data.is_empty() {
                    return Some(Prepared::response(r, 0, 0));
                }
                if self.rows_stmt.load(Ordering::Relaxed) == r.stmt.wrapping_add(1) {
                    return None;
                }
                let rows = r.data.len() as u64;
                let bytes: u64 = r
                    .data
                    .iter()
                    .flatten()
                    .map(|c| c.as_ref().map_or(0, |v| v.len() as u64))
                    .sum();
                (rows <= self.row_cap.max_rows && bytes <= self.row_cap.max_bytes)
                    .then(|| Prepared::response(r, rows, bytes))
            }
            RecordBody::Rows(r) => {
                self.rows_stmt
                    .store(r.stmt.wrapping_add(1), Ordering::Relaxed);
                None
            }
            _ => None,
        }
    }

    fn message(&self, ts: OffsetDateTime, body: RecordBody) -> Msg {
        match self.prepare(&body) {
            Some(p) => Msg::Pre(ts, p),
            None => Msg::Record(ts, body),
        }
    }

    fn failed(&self) -> RecorderError {
        let why = self
            .failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .unwrap_or_else(|| "writer thread stopped".into());
        RecorderError::WriterFailed(why)
    }

    fn sender(&self) -> Result<&SyncSender<Msg>, RecorderError> {
        self.tx.as_ref().ok_or_else(|| self.failed())
    }

    /// Records `body` stamped now. With `OnFull::Block` this may block (see
    /// the module docs); with `OnFull::Drop` it never blocks.
    ///
    /// # Errors
    /// [`RecorderError::WriterFailed`] when the writer thread has stopped.
    pub fn record(&self, body: RecordBody) -> Result<Recorded, RecorderError> {
        self.record_at(OffsetDateTime::now_utc(), body)
    }

    /// Like [`Self::record`] with an explicit timestamp.
    ///
    /// # Errors
    /// [`RecorderError::WriterFailed`] when the writer thread has stopped.
    pub fn record_at(
        &self,
        ts: OffsetDateTime,
        body: RecordBody,
    ) -> Result<Recorded, RecorderError> {
        let tx = self.sender()?;
        let msg = self.message(ts, body);
        match self.on_full {
            OnFull::Block => tx
                .send(msg)
                .map(|()| Recorded::Queued)
                .map_err(|_| self.failed()),
            OnFull::Drop => match tx.try_send(msg) {
                Ok(()) => Ok(Recorded::Queued),
                Err(TrySendError::Full(_)) => {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                    Ok(Recorded::Dropped)
                }
                Err(TrySendError::Disconnected(_)) => Err(self.failed()),
            },
        }
    }

    /// Never blocks, whatever [`OnFull`] says: returns the record back when
    /// the queue is full so an async caller can wait and retry, or give up
    /// and call [`Self::note_dropped`].
    ///
    /// # Errors
    /// [`TryRecordError::Full`] or [`TryRecordError::Failed`].
    pub fn try_record(&self, body: RecordBody) -> Result<(), TryRecordError> {
        let tx = self.sender().map_err(TryRecordError::Failed)?;
        let ts = OffsetDateTime::now_utc();
        let sent = match self.prepare(&body) {
            // The body is kept until the send succeeds, to be handed back when the queue is full.
            Some(p) => tx.try_send(Msg::Pre(ts, p)).map_err(|e| match e {
                TrySendError::Full(_) => Some(body),
                TrySendError::Disconnected(_) => None,
            }),
            None => tx.try_send(Msg::Record(ts, body)).map_err(|e| match e {
                TrySendError::Full(Msg::Record(_, b)) => Some(b),
                _ => None,
            }),
        };
        match sent {
            Ok(()) => Ok(()),
            Err(Some(b)) => Err(TryRecordError::Full(Box::new(b))),
            Err(None) => Err(TryRecordError::Failed(self.failed())),
        }
    }

    /// Counts records the caller gave up on; they appear as a gap record.
    pub fn note_dropped(&self, n: u64) {
        self.dropped.fetch_add(n, Ordering::Relaxed);
    }

    /// Records dropped and not yet written as a gap.
    pub fn pending_dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Asks the writer to cut a segment now (blocks while the queue is full).
    ///
    /// # Errors
    /// [`RecorderError::WriterFailed`].
    pub fn flush(&self) -> Result<(), RecorderError> {
        self.sender()?.send(Msg::Flush).map_err(|_| self.failed())
    }

    /// Ends the session: drains the queue, writes a gap for pending drops, the
    /// end record with `reason`, and the seal; joins the writer thread.
    /// Blocking: call from `spawn_blocking` in async code.
    ///
    /// # Errors
    /// [`RecorderError::WriterFailed`] / [`RecorderError::Seal`].
    pub fn finish(mut self, reason: &str) -> Result<SealSummary, RecorderError> {
        let tx = self.tx.take().ok_or_else(|| self.failed())?;
        let sent = tx.send(Msg::Finish(OffsetDateTime::now_utc(), reason.to_owned()));
        drop(tx);
        let joined = self.thread.take().map(JoinHandle::join);
        match joined {
            Some(Ok(Ok(s))) if sent.is_ok() => Ok(s),
            Some(Ok(Err(e))) => Err(RecorderError::Seal(e)),
            Some(Err(_)) => Err(RecorderError::WriterFailed("writer thread panicked".into())),
            _ => Err(self.failed()),
        }
    }
}

impl Drop for Recorder {
    /// Dropping without [`Recorder::finish`] (a panicking session task, say)
    /// closes the queue; the writer thread drains it and seals with reason
    /// "recorder dropped without finish" in the background.
    fn drop(&mut self) {
        self.tx.take();
    }
}

fn write_gap<W: Sink>(w: &mut SessionWriter<W>, dropped: &AtomicU64) -> Result<(), RecordError> {
    // A plain load first: the common case (nothing dropped) then costs no
    // read-modify-write on a cache line the session side also touches.
    if dropped.load(Ordering::Relaxed) == 0 {
        return Ok(());
    }
    let n = dropped.swap(0, Ordering::Relaxed);
    if n > 0 {
        w.append(
            OffsetDateTime::now_utc(),
            RecordBody::Gap(Gap { dropped: n }),
        )?;
    }
    Ok(())
}

/// While records keep arriving, the writer drains the queue in batches and sleeps this long
/// between batches instead of blocking in `recv`: a sender then never has to wake the writer
/// thread (a futex wake and a context switch per record cost more than writing the record).
/// When the queue is found empty the writer blocks again, so an idle session costs nothing.
const BATCH_TICK: Duration = Duration::from_millis(20);

/// A statement (and its decision) held back while the queue is drained, so that when its
/// response is the next record they are written as one exchange record. Held only within one
/// drain pass: released before the writer sleeps or blocks, so the crash-loss bound holds.
struct Held {
    ts: OffsetDateTime,
    statement: Prepared,
    decision: Option<(OffsetDateTime, Prepared)>,
}

impl Held {
    fn stmt(&self) -> u64 {
        self.statement.kind.stmt()
    }
}

fn effect(p: &Prepared) -> PreparedEffect {
    match p.kind {
        PreparedKind::Statement { .. } => PreparedEffect {
            statement: true,
            ..PreparedEffect::default()
        },
        PreparedKind::Decision { action, .. } => PreparedEffect {
            decision: Some(action),
            ..PreparedEffect::default()
        },
        PreparedKind::Response { stmt, rows, bytes } => PreparedEffect {
            rows: Some((stmt, rows, bytes)),
            ..PreparedEffect::default()
        },
    }
}

fn append_prepared<W: Sink>(
    w: &mut SessionWriter<W>,
    ts: OffsetDateTime,
    p: &Prepared,
) -> Result<(), RecordError> {
    w.append_prepared(ts, effect(p), |out| p.write_body(out))
}

/// Writes a held statement (and decision) as separate records.
fn release<W: Sink>(w: &mut SessionWriter<W>, held: &mut Option<Held>) -> Result<(), RecordError> {
    if let Some(h) = held.take() {
        append_prepared(w, h.ts, &h.statement)?;
        if let Some((ts, d)) = &h.decision {
            append_prepared(w, *ts, d)?;
        }
    }
    Ok(())
}

fn handle_prepared<W: Sink>(
    w: &mut SessionWriter<W>,
    ts: OffsetDateTime,
    p: Prepared,
    held: &mut Option<Held>,
) -> Result<(), RecordError> {
    match p.kind {
        PreparedKind::Statement { .. } => {
            release(w, held)?;
            *held = Some(Held {
                ts,
                statement: p,
                decision: None,
            });
        }
        PreparedKind::Decision { stmt, .. } => match held {
            Some(h) if h.stmt() == stmt && h.decision.is_none() => {
                h.decision = Some((ts, p));
            }
            _ => {
                release(w, held)?;
                append_prepared(w, ts, &p)?;
            }
        },
        PreparedKind::Response { stmt, rows, bytes } => match held.take() {
            Some(h) if h.stmt() == stmt => {
                let e = PreparedEffect {
                    statement: true,
                    decision: h.decision.as_ref().and_then(|d| effect(&d.1).decision),
                    rows: Some((stmt, rows, bytes)),
                };
                w.append_prepared(h.ts, e, |out| {
                    write_exchange_body(
                        out,
                        &h.statement.fields,
                        h.decision.as_ref().map(|d| d.1.fields.as_slice()),
                        &p.fields,
                    );
                })?;
            }
            other => {
                *held = other;
                release(w, held)?;
                append_prepared(w, ts, &p)?;
            }
        },
    }
    Ok(())
}

fn handle<W: Sink>(
    w: &mut SessionWriter<W>,
    msg: Msg,
    dropped: &AtomicU64,
    held: &mut Option<Held>,
) -> Result<Option<SealSummary>, RecordError> {
    if dropped.load(Ordering::Relaxed) != 0 {
        // Records were dropped after the held one was queued: keep the order exact.
        release(w, held)?;
        write_gap(w, dropped)?;
    }
    match msg {
        Msg::Pre(ts, p) => handle_prepared(w, ts, p, held)?,
        // Statements and decisions are always prepared by the sender; these arms only keep
        // the writer correct whatever it is handed.
        Msg::Record(ts, RecordBody::Statement(s)) => {
            handle_prepared(w, ts, Prepared::statement(&s), held)?;
        }
        Msg::Record(ts, RecordBody::Decision(d)) => {
            handle_prepared(w, ts, Prepared::decision(&d), held)?;
        }
        Msg::Record(ts, body) => {
            release(w, held)?;
            write_gap(w, dropped)?;
            w.append(ts, body)?;
        }
        Msg::Flush => {
            release(w, held)?;
            write_gap(w, dropped)?;
            w.flush_segment()?;
        }
        Msg::Finish(ts, reason) => {
            release(w, held)?;
            write_gap(w, dropped)?;
            return w.seal(ts, &reason).map(Some);
        }
    }
    Ok(None)
}

fn run<W: Sink>(
    mut w: SessionWriter<W>,
    rx: &Receiver<Msg>,
    dropped: &AtomicU64,
) -> Result<SealSummary, RecordError> {
    let mut held = None;
    loop {
        let timeout = w.flush_deadline().map_or(Duration::from_secs(3600), |d| {
            d.saturating_duration_since(Instant::now())
        });
        // Idle: block until something arrives (or a flush is due).
        match rx.recv_timeout(timeout) {
            Ok(msg) => {
                if let Some(s) = handle(&mut w, msg, dropped, &mut held)? {
                    return Ok(s);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                write_gap(&mut w, dropped)?;
                return w.seal(OffsetDateTime::now_utc(), "recorder dropped without finish");
            }
        }
        // Busy: drain in batches, sleeping between them, until the queue is found empty.
        loop {
            let mut got = 0usize;
            loop {
                match rx.try_recv() {
                    Ok(msg) => {
                        got += 1;
                        if let Some(s) = handle(&mut w, msg, dropped, &mut held)? {
                            return Ok(s);
                        }
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        release(&mut w, &mut held)?;
                        write_gap(&mut w, dropped)?;
                        return w
                            .seal(OffsetDateTime::now_utc(), "recorder dropped without finish");
                    }
                }
            }
            // Nothing is held across a sleep.
            release(&mut w, &mut held)?;
            w.flush_if_due(Instant::now())?;
            if got == 0 {
                break;
            }
            std::thread::sleep(BATCH_TICK);
        }
        w.flush_if_due(Instant::now())?;
    }
}

/// `error: cause: cause` in one line (the failure text the daemon logs).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}
