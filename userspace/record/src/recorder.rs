//! Off-the-hot-path recording. The session task appends its records as compact binary events
//! (`events.rs`: little more than copies of the masked text and rows) under a mutex that
//! the writer thread takes only a few times per second. The writer thread turns batches of
//! events into record lines — numbering, JSON, the SHA-256 chain, totals, the row cap — then
//! compresses, signs and writes the segments, and seals on [`Recorder::finish`]. A record
//! costs the session no allocation, no queue message and no wake-up of another thread; the
//! serialisation code runs over hundreds of records at once, on the writer's side.
//!
//! The session hands the writer its events in batches of about 32 KiB (or half the queue
//! capacity in records); the writer compresses the lines of each batch into the open segment
//! as it comes, so the buffers stay small and hot. A segment is signed and written
//! - once the flush interval (1 s) has passed since its oldest record was appended: the
//!   crash-loss bound;
//! - when it reaches the segment size limit, on [`Recorder::flush`], and at the seal.
//!
//! Records appended or in batches the writer has not taken yet count against the queue
//! capacity; when it is reached, [`OnFull`] decides:
//! - `Block` (default, fail closed): [`Recorder::record`] waits until the writer has taken the
//!   waiting batches. **Do not call it on an async executor thread**: call it from
//!   `spawn_blocking`, or use [`Recorder::try_put`] / [`Recorder::try_record`] (they never
//!   block) and [`Recorder::wait_for_room`] the way the daemon does.
//! - `Drop`: the record is discarded and counted; a [`crate::Gap`] record with the count is
//!   written before the next record. Never silent.
//!
//! The writer holds a statement (and its decision) back until its response: when the response
//! is the next record, the three are written as one `exchange` record. The hold ends at the
//! next flush at the latest, so the crash-loss bound holds; any other record ends it too, so
//! the order of records is exactly the order they were recorded in.
//!
//! If the writer fails (disk full, I/O error, a record it cannot serialise) every later call
//! returns [`RecorderError::WriterFailed`]: the daemon must then block the session.

use crate::chain::Chain;
use crate::error::RecordError;
use crate::events::{Batch, Event, Scratch};
use crate::hot::{Hot, ResponseRef};
use crate::json;
use crate::model::{Action, Gap, RecordBody};
use crate::stamp::Stamp;
use crate::writer::{SealSummary, SegmentOut, SessionWriter, Sink};
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

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
    /// Records buffered or waiting for the writer thread, at most. Default 4096.
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
    /// Appended for writing.
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

/// Error of [`Recorder::try_put`].
#[derive(Debug)]
pub enum PutError {
    /// The queue is full (`OnFull::Block`): [`Recorder::wait_for_room`], then put again.
    Full,
    /// The writer failed.
    Failed(RecorderError),
}

/// The held statement, its buffers reused from one statement to the next.
struct Open {
    active: bool,
    stmt: u64,
    ts: Stamp,
    /// Its fields, serialised when it arrived (its strings were then in this core's cache).
    statement: Vec<u8>,
    decision: Option<(Stamp, Action)>,
    decision_fields: Vec<u8>,
}

impl Open {
    /// Buffers this large are not kept for the next statement (a 30 MB statement text must
    /// not pin 30 MB for the rest of the session).
    const KEEP: usize = 64 << 10;

    fn shrink(&mut self) {
        for v in [&mut self.statement, &mut self.decision_fields] {
            if v.capacity() > Self::KEEP {
                *v = Vec::new();
            }
        }
    }
}

enum Ending {
    Finish(Stamp, String),
    Dropped,
}

/// The session's side, shared with the writer thread.
struct State {
    /// Records appended since the last cut, as events.
    events: Batch,
    /// Batches the writer has not taken yet, with when their oldest record was appended.
    ready: VecDeque<(Batch, Instant)>,
    ready_records: u64,
    /// When the oldest record not yet cut arrived.
    pending_since: Option<Instant>,
    dropped: u64,
    failed: Option<String>,
    ending: Option<Ending>,
    /// Batches the writer has turned into lines, recycled.
    spare: Vec<Batch>,
    /// The writer waits on `work` (notify only then: a notify is a syscall).
    writer_waiting: bool,
    /// Sessions waiting on `room`.
    room_waiters: u32,
    /// [`Recorder::flush`] asks the writer to write what it has now.
    flush_requested: bool,
}

/// The session hands its records to the writer in batches of about this size: small enough
/// that its buffers stay in cache, large enough that the writer wakes rarely.
const CHUNK: usize = 32 << 10;

struct Shared {
    state: Mutex<State>,
    work: Condvar,
    room: Condvar,
    queue: u64,
    cut_at: u32,
    max_bytes: usize,
    interval: Duration,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn full(&self, st: &State) -> bool {
        st.ready_records + u64::from(st.events.count()) >= self.queue
    }

    fn wake_writer(&self, st: &mut State) {
        if st.writer_waiting {
            st.writer_waiting = false;
            self.work.notify_one();
        }
    }

    /// After an append: starts the flush clock, and cuts when enough is buffered.
    fn appended(&self, st: &mut State) {
        if st.pending_since.is_none() && st.events.count() > 0 {
            st.pending_since = Some(Instant::now());
            self.wake_writer(st);
        }
        if st.events.count() >= self.cut_at || st.events.len() >= CHUNK {
            st.cut();
            self.wake_writer(st);
        }
    }
}

impl State {
    /// Records were dropped since the last append: a gap record says how many, in place.
    fn gap(&mut self, ts: Stamp) {
        if self.dropped > 0 {
            let dropped = std::mem::take(&mut self.dropped);
            self.events.push_body(ts, RecordBody::Gap(Gap { dropped }));
        }
    }

    fn put(&mut self, ts: Stamp, item: &Hot<'_>) {
        self.gap(ts);
        self.events.push_hot(ts, item);
    }

    fn put_body(&mut self, ts: Stamp, body: RecordBody) {
        self.gap(ts);
        self.events.push_body(ts, body);
    }

    /// Moves the appended events to the writer's queue as a batch.
    fn cut(&mut self) {
        if self.events.count() == 0 {
            return;
        }
        let next = self.spare.pop().unwrap_or_default();
        let b = std::mem::replace(&mut self.events, next);
        self.ready_records += u64::from(b.count());
        let since = self.pending_since.take().unwrap_or_else(Instant::now);
        self.ready.push_back((b, since));
    }
}

/// The writer's side: the chain, and the statement held back for its response.
struct Lines {
    chain: Chain,
    open: Open,
    /// When the held statement's batch was cut (it counts toward the flush interval).
    held_since: Option<Instant>,
    /// Statements not yet answered, in order, with their records' timestamps: the durations
    /// of responses put with [`ResponseRef::SINCE_STATEMENT`].
    starts: VecDeque<(u64, Stamp)>,
}

/// Start times kept for statements not yet answered, at most (a session that pipelines more
/// than this loses the oldest durations, recorded as 0, not memory).
const STARTS_KEPT: usize = 4096;

impl Lines {
    /// Writes a held statement (and decision) as separate records.
    fn release(&mut self) -> Result<(), RecordError> {
        self.held_since = None;
        if !self.open.active {
            return Ok(());
        }
        self.open.active = false;
        self.chain
            .statement_fields(self.open.ts, &self.open.statement)?;
        if let Some((ts, action)) = self.open.decision.take() {
            self.chain
                .decision_fields(ts, action, &self.open.decision_fields)?;
        }
        self.open.shrink();
        Ok(())
    }

    fn holds(&self, stmt: u64) -> bool {
        self.open.active && self.open.stmt == stmt
    }

    /// Notes when statement `stmt` started.
    fn started(&mut self, stmt: u64, ts: Stamp) {
        if self.starts.len() == STARTS_KEPT {
            self.starts.pop_front();
        }
        self.starts.push_back((stmt, ts));
    }

    /// The duration of a response to `stmt` recorded at `ts`, from its statement's record.
    /// Responses come in statement order, so earlier statements still listed never get one
    /// (a Parse, say) and are dropped on the way.
    fn since_statement(&mut self, stmt: u64, ts: Stamp) -> u64 {
        while let Some(&(s, start)) = self.starts.front() {
            if s > stmt {
                break;
            }
            self.starts.pop_front();
            if s == stmt {
                return ts.micros_since(start);
            }
        }
        0
    }

    fn put(&mut self, ts: Stamp, mut item: Hot<'_>) -> Result<(), RecordError> {
        match &mut item {
            Hot::Statement(s) => self.started(s.stmt, ts),
            Hot::Response(r) if r.duration_us == ResponseRef::SINCE_STATEMENT => {
                r.duration_us = self.since_statement(r.stmt, ts);
            }
            _ => {}
        }
        match item {
            Hot::Statement(s) if s.text.len() > Open::KEEP => {
                // Too large to hold and copy again: written on its own at once.
                self.release()?;
                self.chain.statement(ts, &s)?;
            }
            Hot::Statement(s) => {
                self.release()?;
                let o = &mut self.open;
                o.statement.clear();
                json::statement(&mut o.statement, &s);
                o.stmt = s.stmt;
                o.ts = ts;
                o.decision = None;
                o.active = true;
            }
            Hot::Decision(d) if self.holds(d.stmt) && self.open.decision.is_none() => {
                let o = &mut self.open;
                o.decision_fields.clear();
                json::decision(&mut o.decision_fields, &d);
                o.decision = Some((ts, d.action));
            }
            Hot::Response(r) if self.holds(r.stmt) => {
                let Self { chain, open, .. } = self;
                open.active = false;
                let d = open
                    .decision
                    .take()
                    .map(|(_, a)| (a, open.decision_fields.as_slice()));
                chain.exchange(open.ts, &open.statement, d, &r)?;
                open.shrink();
                self.held_since = None;
            }
            Hot::Decision(d) => {
                self.release()?;
                self.chain.decision(ts, &d)?;
            }
            Hot::Response(r) => {
                self.release()?;
                self.chain.response(ts, &r)?;
            }
        }
        Ok(())
    }

    fn put_body(&mut self, ts: Stamp, body: RecordBody) -> Result<(), RecordError> {
        match &body {
            RecordBody::Statement(s) => return self.put(ts, Hot::Statement(s.view())),
            RecordBody::Decision(d) => return self.put(ts, Hot::Decision(d.view())),
            RecordBody::Response(r) => return self.put(ts, Hot::Response(r.view())),
            _ => {}
        }
        self.release()?;
        self.chain.append(ts, body)
    }

    /// Turns a batch of events into record lines; `since`: when the batch's oldest record
    /// was appended.
    fn apply(
        &mut self,
        batch: &mut Batch,
        scratch: &mut Scratch,
        since: Instant,
    ) -> Result<(), RecordError> {
        let mut rd = batch.reader(scratch);
        while let Some(ev) = rd.next() {
            match ev {
                Event::Hot(ts, h) => self.put(ts, h)?,
                Event::Body(ts, b) => self.put_body(ts, b)?,
            }
        }
        if self.open.active && self.held_since.is_none() {
            self.held_since = Some(since);
        }
        Ok(())
    }

    /// Compresses the lines written since the last call into the open segment.
    fn feed<W: Sink>(
        &mut self,
        out: &mut SegmentOut<W>,
        spare: &mut Vec<u8>,
        since: Instant,
        max_bytes: usize,
    ) -> Result<(), RecordError> {
        if let Some(cut) = self.chain.cut(std::mem::take(spare)) {
            out.add(&cut, since, max_bytes)?;
            *spare = cut.raw;
        }
        Ok(())
    }
}

/// Handle to a session's recording.
pub struct Recorder {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<Result<SealSummary, RecordError>>>,
    on_full: OnFull,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("on_full", &self.on_full)
            .finish_non_exhaustive()
    }
}

impl Recorder {
    /// Takes over `writer`: its chain is shared with the caller, its output goes to a new
    /// writer thread.
    ///
    /// # Errors
    /// [`RecorderError::Spawn`] if the thread cannot be created;
    /// [`RecorderError::WriterFailed`] if the writer's output was already taken.
    pub fn start<W: Sink + Send + 'static>(
        writer: SessionWriter<W>,
        cfg: RecorderConfig,
    ) -> Result<Self, RecorderError> {
        let (chain, out, wcfg, closed) = writer.into_parts();
        let out = out.ok_or_else(|| RecorderError::WriterFailed("sink already taken".into()))?;
        let queue = cfg.queue.max(1) as u64;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                events: Batch::default(),
                ready: VecDeque::new(),
                ready_records: 0,
                pending_since: None,
                dropped: 0,
                failed: closed,
                ending: None,
                spare: Vec::new(),
                writer_waiting: false,
                room_waiters: 0,
                flush_requested: false,
            }),
            work: Condvar::new(),
            room: Condvar::new(),
            queue,
            cut_at: u32::try_from((queue / 2).max(1)).unwrap_or(u32::MAX),
            max_bytes: wcfg.max_segment_bytes,
            interval: wcfg.flush_interval,
        });
        let lines = Lines {
            chain,
            open: Open {
                active: false,
                stmt: 0,
                ts: Stamp::UNIX_EPOCH,
                statement: Vec::new(),
                decision: None,
                decision_fields: Vec::new(),
            },
            held_since: None,
            starts: VecDeque::new(),
        };
        let sh = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("dbw-rec-{}", &out.session().to_string()[..8]))
            .spawn(move || run(&sh, out, lines))
            .map_err(RecorderError::Spawn)?;
        Ok(Self {
            shared,
            thread: Some(thread),
            on_full: cfg.on_full,
        })
    }

    fn failed(st: &State) -> RecorderError {
        RecorderError::WriterFailed(
            st.failed
                .clone()
                .unwrap_or_else(|| "writer thread stopped".into()),
        )
    }

    /// Appends, or says why not: `Ok(None)` appended, `Ok(Some(Dropped))` dropped in Drop
    /// mode, `Err(None)` full in Block mode.
    fn append(
        &self,
        st: &mut State,
        put: impl FnOnce(&mut State),
    ) -> Result<Recorded, Option<RecorderError>> {
        if st.failed.is_some() {
            return Err(Some(Self::failed(st)));
        }
        if self.shared.full(st) {
            return match self.on_full {
                OnFull::Drop => {
                    st.dropped += 1;
                    Ok(Recorded::Dropped)
                }
                OnFull::Block => Err(None),
            };
        }
        put(st);
        self.shared.appended(st);
        Ok(Recorded::Queued)
    }

    /// Records a statement, decision or response straight from borrowed data, stamped now.
    /// Never blocks: with `OnFull::Block` a full queue gives [`PutError::Full`] (call
    /// [`Self::wait_for_room`] where blocking is allowed, then put again); with `OnFull::Drop`
    /// the record is dropped and counted.
    ///
    /// # Errors
    /// [`PutError::Full`] or [`PutError::Failed`].
    pub fn try_put(&self, item: Hot<'_>) -> Result<Recorded, PutError> {
        self.try_put_at(Stamp::now(), item)
    }

    /// Like [`Self::try_put`] with an explicit timestamp (a statement and its decision share
    /// one clock reading).
    ///
    /// # Errors
    /// [`PutError::Full`] or [`PutError::Failed`].
    pub fn try_put_at(&self, ts: Stamp, item: Hot<'_>) -> Result<Recorded, PutError> {
        let mut st = self.shared.lock();
        self.append(&mut st, |st| st.put(ts, &item))
            .map_err(|e| e.map_or(PutError::Full, PutError::Failed))
    }

    /// Like [`Self::try_put_at`] for several records under one lock. In `Block` mode they are
    /// all appended or, when the queue has no room for all of them, none.
    ///
    /// # Errors
    /// [`PutError::Full`] or [`PutError::Failed`].
    pub fn try_put_all_at(&self, ts: Stamp, items: &[Hot<'_>]) -> Result<(), PutError> {
        let mut st = self.shared.lock();
        if st.failed.is_none()
            && self.on_full == OnFull::Block
            && st.ready_records + u64::from(st.events.count()) + items.len() as u64
                > self.shared.queue
        {
            return Err(PutError::Full);
        }
        for item in items {
            self.append(&mut st, |st| st.put(ts, item))
                .map_err(|e| e.map_or(PutError::Full, PutError::Failed))?;
        }
        Ok(())
    }

    /// Waits until the queue has room (or the writer failed). Blocking.
    ///
    /// # Errors
    /// [`RecorderError::WriterFailed`].
    pub fn wait_for_room(&self) -> Result<(), RecorderError> {
        let mut st = self.shared.lock();
        loop {
            if st.failed.is_some() {
                return Err(Self::failed(&st));
            }
            if !self.shared.full(&st) {
                return Ok(());
            }
            if st.ready.is_empty() {
                // Full with nothing cut for the writer: hand it what is appended.
                st.gap(Stamp::now());
                st.cut();
            }
            st.room_waiters += 1;
            self.shared.wake_writer(&mut st);
            st = self
                .shared
                .room
                .wait(st)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            st.room_waiters -= 1;
        }
    }

    /// Records `body` stamped now. With `OnFull::Block` this may block (see
    /// the module docs); with `OnFull::Drop` it never blocks.
    ///
    /// # Errors
    /// [`RecorderError::WriterFailed`] when the writer thread has stopped.
    pub fn record(&self, body: RecordBody) -> Result<Recorded, RecorderError> {
        self.record_at(Stamp::now(), body)
    }

    /// Like [`Self::record`] with an explicit timestamp.
    ///
    /// # Errors
    /// [`RecorderError::WriterFailed`] when the writer thread has stopped.
    pub fn record_at(&self, ts: Stamp, body: RecordBody) -> Result<Recorded, RecorderError> {
        let mut body = Some(body);
        loop {
            {
                let mut st = self.shared.lock();
                match self.append(&mut st, |st| {
                    if let Some(b) = body.take() {
                        st.put_body(ts, b);
                    }
                }) {
                    Ok(r) => return Ok(r),
                    Err(Some(e)) => return Err(e),
                    Err(None) => {}
                }
            }
            self.wait_for_room()?;
        }
    }

    /// Never blocks, whatever [`OnFull`] says: returns the record back when
    /// the queue is full so an async caller can wait and retry, or give up
    /// and call [`Self::note_dropped`].
    ///
    /// # Errors
    /// [`TryRecordError::Full`] or [`TryRecordError::Failed`].
    pub fn try_record(&self, body: RecordBody) -> Result<(), TryRecordError> {
        self.try_record_at(Stamp::now(), body)
    }

    /// Like [`Self::try_record`] with an explicit timestamp.
    ///
    /// # Errors
    /// As [`Self::try_record`].
    pub fn try_record_at(&self, ts: Stamp, body: RecordBody) -> Result<(), TryRecordError> {
        let mut st = self.shared.lock();
        if st.failed.is_none() && self.shared.full(&st) {
            return Err(TryRecordError::Full(Box::new(body)));
        }
        match self.append(&mut st, |st| st.put_body(ts, body)) {
            Ok(_) | Err(None) => Ok(()),
            Err(Some(e)) => Err(TryRecordError::Failed(e)),
        }
    }

    /// Counts records the caller gave up on; they appear as a gap record.
    pub fn note_dropped(&self, n: u64) {
        self.shared.lock().dropped += n;
    }

    /// Records dropped and not yet written as a gap.
    pub fn pending_dropped(&self) -> u64 {
        self.shared.lock().dropped
    }

    /// Cuts a segment now (a held statement included) for the writer thread to write.
    ///
    /// # Errors
    /// [`RecorderError::WriterFailed`].
    pub fn flush(&self) -> Result<(), RecorderError> {
        let mut st = self.shared.lock();
        if st.failed.is_some() {
            return Err(Self::failed(&st));
        }
        st.gap(Stamp::now());
        st.cut();
        st.flush_requested = true;
        self.shared.wake_writer(&mut st);
        Ok(())
    }

    /// Ends the session: the writer writes what is pending, a gap for pending drops, the end
    /// record with `reason` and the seal; joins the writer thread.
    /// Blocking: call from `spawn_blocking` in async code.
    ///
    /// # Errors
    /// [`RecorderError::WriterFailed`] / [`RecorderError::Seal`].
    pub fn finish(mut self, reason: &str) -> Result<SealSummary, RecorderError> {
        {
            let mut st = self.shared.lock();
            st.ending = Some(Ending::Finish(Stamp::now(), reason.to_owned()));
            self.shared.wake_writer(&mut st);
        }
        let joined = self.thread.take().map(JoinHandle::join);
        match joined {
            Some(Ok(Ok(s))) => Ok(s),
            Some(Ok(Err(e))) => Err(RecorderError::Seal(e)),
            Some(Err(_)) => Err(RecorderError::WriterFailed("writer thread panicked".into())),
            None => Err(Self::failed(&self.shared.lock())),
        }
    }
}

impl Drop for Recorder {
    /// Dropping without [`Recorder::finish`] (a panicking session task, say) lets the writer
    /// thread write what is pending and seal with reason "recorder dropped without finish" in
    /// the background.
    fn drop(&mut self) {
        if self.thread.is_some() {
            let mut st = self.shared.lock();
            if st.ending.is_none() {
                st.ending = Some(Ending::Dropped);
            }
            self.shared.wake_writer(&mut st);
        }
    }
}

/// The writer thread.
fn run<W: Sink>(
    sh: &Shared,
    mut out: SegmentOut<W>,
    mut lines: Lines,
) -> Result<SealSummary, RecordError> {
    let r = write_until_sealed(sh, &mut out, &mut lines);
    if let Err(e) = &r {
        let mut st = sh.lock();
        st.failed.get_or_insert_with(|| error_chain(e));
        sh.room.notify_all();
    }
    r
}

fn write_until_sealed<W: Sink>(
    sh: &Shared,
    out: &mut SegmentOut<W>,
    lines: &mut Lines,
) -> Result<SealSummary, RecordError> {
    let mut scratch = Scratch::default();
    let mut spare = Vec::new();
    // The header (and anything else the writer was given) goes out within the interval.
    lines.feed(out, &mut spare, Instant::now(), sh.max_bytes)?;
    let mut st = sh.lock();
    loop {
        if let Some(ending) = st.ending.take() {
            let (ts, reason) = match ending {
                Ending::Finish(ts, reason) => (ts, reason),
                Ending::Dropped => (Stamp::now(), "recorder dropped without finish".to_owned()),
            };
            st.gap(ts);
            st.cut();
            while let Some((mut b, since)) = st.ready.pop_front() {
                lines.apply(&mut b, &mut scratch, since)?;
                lines.feed(out, &mut spare, since, sh.max_bytes)?;
            }
            lines.release()?;
            let totals = lines.chain.totals();
            let sig = lines.chain.seal(&out.session(), out.key(), ts, &reason)?;
            lines.feed(out, &mut spare, Instant::now(), sh.max_bytes)?;
            out.end_segment()?;
            st.failed = Some("session is sealed".into());
            return out.sealed(&lines.chain, sig, totals);
        }
        let now = Instant::now();
        // The oldest record not yet on disk: appended, held back, or in the open segment.
        let oldest = [st.pending_since, lines.held_since, out.open_since()]
            .into_iter()
            .flatten()
            .min();
        let due = oldest.is_some_and(|t| now >= t + sh.interval);
        let end = std::mem::take(&mut st.flush_requested) || due;
        if due {
            st.cut();
        }
        if st.ready.is_empty() && !end {
            let wait = oldest.map_or(Duration::from_secs(3600), |t| t + sh.interval - now);
            st.writer_waiting = true;
            st = sh
                .work
                .wait_timeout(st, wait)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
            st.writer_waiting = false;
            continue;
        }
        let batch: Vec<(Batch, Instant)> = st.ready.drain(..).collect();
        st.ready_records = 0;
        if st.room_waiters > 0 {
            sh.room.notify_all();
        }
        drop(st);
        let mut done = Vec::with_capacity(batch.len());
        for (mut b, since) in batch {
            lines.apply(&mut b, &mut scratch, since)?;
            lines.feed(out, &mut spare, since, sh.max_bytes)?;
            done.push(b);
        }
        if end {
            lines.release()?;
            lines.feed(out, &mut spare, now, sh.max_bytes)?;
            out.end_segment()?;
        }
        st = sh.lock();
        for mut b in done {
            if st.spare.len() < 4 && b.recycle() {
                st.spare.push(b);
            }
        }
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
