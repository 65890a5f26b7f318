//! Per-session recording glue: turns the PostgreSQL state machine's events and the (already
//! masked) outputs into session-file records, off the hot path (the record crate's writer
//! thread). Everything handed to the recorder is masked first: statement text and parameters
//! through the masker, result rows as the client saw them.

use std::{
    collections::HashMap,
    hash::{BuildHasherDefault, Hasher},
    sync::{Arc, Mutex},
};

use dbwarden_mask::Masker;
use dbwarden_record::{
    self as record,
    model::{Notice, Rows},
    Action, DecisionRef, Hot, RecordBody, Recorder, ResponseRef, RowBuf, RowsRef, SessionHeader,
    SessionId, Stamp, StatementRef,
};
use dbwarden_wire_pg::{
    proxy::{Outcome, ResultContext},
    DataRow, Format,
};
use tracing::warn;

use crate::pipeline::SessionInfo;

/// Rows are handed to the recorder in batches of this many, or of this much cell text.
const ROW_BATCH: usize = 64;
const ROW_BATCH_BYTES: usize = 1 << 20;

#[derive(Default)]
struct RowAcc {
    /// Masked column names (shared with the session's cache).
    columns: Option<Arc<[String]>>,
    /// Rows not yet recorded, as flat text (no allocation per row or cell).
    rows: RowBuf,
    count: u64,
    /// A batch already went out as a `Rows` record; otherwise the rows ride in the response.
    flushed: bool,
}

/// Hashes statement numbers (small, distinct integers) with one multiplication.
#[derive(Default)]
struct StmtHasher(u64);

impl Hasher for StmtHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// Recording state of one session, shared by its two directions. Each direction's own state
/// has its own lock, on its own cache lines: the two directions usually run on different
/// cores, and a lock both take for every statement moves between them each time.
pub struct SessionRecording {
    recorder: Recorder,
    masker: Arc<Masker>,
    row_cap: u64,
    /// Client→server: statements and their parameters.
    client: Aligned<Mutex<ClientSide>>,
    /// Server→client: result rows.
    server: Aligned<Mutex<ServerSide>>,
    failure: std::sync::OnceLock<String>,
}

/// Keeps a value on cache lines of its own.
#[derive(Default)]
#[repr(align(128))]
struct Aligned<T>(T);

fn lock<T>(m: &Aligned<Mutex<T>>) -> std::sync::MutexGuard<'_, T> {
    m.0.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Default)]
struct ClientSide {
    /// The last statement text masked, by content: prepared statements are executed over and
    /// over with the same text, which is then masked once.
    /// Raw and masked text, reused across statements (simple queries change every time).
    last_sql: (String, String),
    /// Masked parameters bound to the unnamed portal (most drivers bind only that one).
    unnamed: Vec<Option<String>>,
    /// ... and to named portals.
    params: HashMap<String, Vec<Option<String>>>,
}

/// The parameters bound to `portal`.
fn portal_params<'a>(
    unnamed: &'a [Option<String>],
    named: &'a HashMap<String, Vec<Option<String>>>,
    portal: &str,
) -> &'a [Option<String>] {
    if portal.is_empty() {
        return unnamed;
    }
    named.get(portal).map_or(&[][..], Vec::as_slice)
}

impl ClientSide {
    fn params_mut(&mut self, portal: &str) -> &mut Vec<Option<String>> {
        if portal.is_empty() {
            return &mut self.unnamed;
        }
        // Named portals are rare: the key is allocated for the lookup.
        self.params.entry(portal.to_owned()).or_default()
    }
}

#[derive(Default)]
struct ServerSide {
    /// A finished statement's row accumulator, cleared, for the next one.
    spare_acc: Option<RowAcc>,
    /// The last result's column names, raw and masked: statements repeat their result shape.
    columns: Option<(Vec<String>, Arc<[String]>)>,
    rows: HashMap<u64, RowAcc, BuildHasherDefault<StmtHasher>>,
}

/// Builds the session header from the kernel identity and startup parameters.
pub fn header(
    info: &SessionInfo,
    client_addr: &str,
    policy_hash: &str,
) -> Result<SessionHeader, String> {
    let id = SessionId::random().map_err(|e| format!("session id: {e}"))?;
    let ident = &info.ident;
    Ok(SessionHeader {
        session_id: id,
        start: time::OffsetDateTime::now_utc(),
        identity: record::model::Identity {
            pid: ident.pid,
            uid: ident.uid,
            user: ident.user.clone(),
            cgroup: ident.cgroup.clone(),
            exe: ident.exe.clone(),
            cmdline: ident.cmdline.split(' ').map(str::to_string).collect(),
            labels: ident.labels.clone(),
            privileged: ident.privileges.privileged,
            capabilities: ident
                .privileges
                .capabilities
                .iter()
                .map(|c| (*c).to_string())
                .collect(),
        },
        client_addr: client_addr.to_string(),
        original_dst: ident.original_dst.to_string(),
        protocol: ident.protocol.to_string(),
        database: info.database.clone(),
        db_user: info.db_user.clone(),
        daemon_version: env!("CARGO_PKG_VERSION").to_string(),
        policy_hash: policy_hash.to_string(),
    })
}

impl SessionRecording {
    /// Wraps a started recorder.
    pub fn new(recorder: Recorder, masker: Arc<Masker>, row_cap: u64) -> Self {
        SessionRecording {
            recorder,
            masker,
            row_cap,
            client: Aligned::default(),
            server: Aligned::default(),
            failure: std::sync::OnceLock::new(),
        }
    }

    /// Queues a record. With a full queue and the block behaviour the calling worker thread
    /// waits (block_in_place) — the session stalls rather than losing records.
    fn put(&self, body: RecordBody) {
        match self.recorder.try_record(body) {
            Ok(()) => {}
            Err(record::TryRecordError::Full(body)) => self.put_at(Stamp::now(), *body),
            Err(record::TryRecordError::Failed(e)) => self.fail(&e),
        }
    }

    /// Queues a record stamped `ts`; with a full queue and the block behaviour the calling
    /// worker thread waits (block_in_place).
    fn put_at(&self, ts: Stamp, body: RecordBody) {
        let r = tokio::task::block_in_place(|| self.recorder.record_at(ts, body));
        if let Err(e) = r {
            self.fail(&e);
        }
    }

    /// Records a statement, decision or response from borrowed data, without ever waiting:
    /// this runs while the session state's lock is held, and the other direction must not
    /// block on that lock while this one waits for the recorder. When the queue is full (the
    /// block behaviour) the record comes back owned, to go through [`Self::put_at`] once the
    /// lock is released; records after it in `later` then follow it there, in order.
    fn put_hot(&self, later: &mut Vec<(Stamp, RecordBody)>, ts: Stamp, item: Hot<'_>) {
        if !later.is_empty() {
            later.push((ts, item.to_body()));
            return;
        }
        match self.recorder.try_put_at(ts, item) {
            Ok(_) => {}
            Err(record::PutError::Full) => later.push((ts, item.to_body())),
            Err(record::PutError::Failed(e)) => self.fail(&e),
        }
    }

    /// Records what [`Self::put_hot`] could not (or was given to keep in order), now that no
    /// lock is held: without waiting while there is room, else waiting for it.
    fn put_later(&self, later: Vec<(Stamp, RecordBody)>) {
        for (ts, body) in later {
            match self.recorder.try_record_at(ts, body) {
                Ok(()) => {}
                Err(record::TryRecordError::Full(body)) => self.put_at(ts, *body),
                Err(record::TryRecordError::Failed(e)) => self.fail(&e),
            }
        }
    }

    fn fail(&self, e: &record::RecorderError) {
        if self.failure.set(e.to_string()).is_ok() {
            warn!(error = %e, "session recorder failed; the session will be closed");
        }
    }

    /// Why the writer failed, if it did: the session must then stop (fail closed: no
    /// unrecorded statements).
    pub fn failure(&self) -> Option<String> {
        self.failure.get().cloned()
    }

    /// `sql` masked; the last text is remembered, since agents repeat statements. Long texts
    /// are masked each time rather than kept in memory.
    fn masked_text<'a>(
        masker: &Masker,
        last_sql: &'a mut (String, String),
        sql: &'a str,
    ) -> std::borrow::Cow<'a, str> {
        if sql.len() > 4096 {
            return masker.mask_str(sql);
        }
        let (raw, masked) = last_sql;
        if raw != sql {
            raw.clear();
            raw.push_str(sql);
            masked.clear();
            masked.push_str(&masker.mask_str(sql));
        }
        std::borrow::Cow::Borrowed(masked)
    }

    /// Records statement `stmt` as starting now: its text (masked), the parameters bound to
    /// `portal`, and its decision if it has one (both under one recorder lock).
    fn start_statement(
        &self,
        c: &mut ClientSide,
        later: &mut Vec<(Stamp, RecordBody)>,
        stmt: u64,
        sql: Option<&str>,
        portal: Option<&str>,
        decision: Option<DecisionRef<'_>>,
    ) {
        let now = Stamp::now();
        let ClientSide {
            last_sql,
            unnamed,
            params,
        } = c;
        let params = portal.map_or(&[][..], |p| portal_params(unnamed, params, p));
        let text = sql.map_or(std::borrow::Cow::Borrowed(""), |s| {
            Self::masked_text(&self.masker, last_sql, s)
        });
        let statement = Hot::Statement(StatementRef {
            stmt,
            text: &text,
            params,
        });
        match decision {
            None => self.put_hot(later, now, statement),
            Some(d) => self.put_hot_all(later, now, &[statement, Hot::Decision(d)]),
        }
    }

    /// [`Self::put_hot`] for several records under one lock.
    fn put_hot_all(&self, later: &mut Vec<(Stamp, RecordBody)>, ts: Stamp, items: &[Hot<'_>]) {
        if later.is_empty() {
            match self.recorder.try_put_all_at(ts, items) {
                Ok(()) => return,
                Err(record::PutError::Full) => {}
                Err(record::PutError::Failed(e)) => return self.fail(&e),
            }
        }
        later.extend(items.iter().map(|i| (ts, i.to_body())));
    }

    /// A statement was decided (simple query, Parse, fast-path call). `message` is what the
    /// agent is told; the caller passes none for an allow.
    pub fn decided(
        &self,
        stmt: u64,
        sql: &str,
        action: Action,
        rule: Option<&str>,
        message: Option<&str>,
        tags: &[String],
    ) {
        let mut later = Vec::new();
        let decision = DecisionRef {
            stmt,
            action,
            rule,
            approver: None,
            tags,
            message,
        };
        self.start_statement(
            &mut lock(&self.client),
            &mut later,
            stmt,
            Some(sql),
            None,
            Some(decision),
        );
        self.put_later(later);
    }

    /// Parameters bound to a portal (masked; binary values are not rendered).
    pub fn bound(&self, portal: &str, formats: &[i16], params: &[Option<bytes::Bytes>]) {
        use std::fmt::Write as _;
        let mut c = lock(&self.client);
        let slot = c.params_mut(portal);
        // Rendered into the portal's previous values' buffers: an agent binds the same
        // portal over and over.
        slot.resize(params.len(), None);
        for (i, (p, cell)) in params.iter().zip(slot.iter_mut()).enumerate() {
            let Some(v) = p else {
                *cell = None;
                continue;
            };
            let binary = match formats.len() {
                0 => false,
                1 => formats[0] == 1,
                _ => formats.get(i).copied() == Some(1),
            };
            let s = cell.get_or_insert_with(String::new);
            s.clear();
            if binary {
                let _ = write!(s, "<binary {} bytes>", v.len());
            } else {
                s.push_str(&self.masker.mask_str(&String::from_utf8_lossy(v)));
            }
        }
    }

    /// A portal is executed.
    pub fn executed(&self, stmt: u64, portal: &str, sql: Option<&str>) {
        let mut later = Vec::new();
        self.start_statement(
            &mut lock(&self.client),
            &mut later,
            stmt,
            sql,
            Some(portal),
            None,
        );
        self.put_later(later);
    }

    /// A (masked) row as the client saw it.
    pub fn row(&self, masked: &bytes::Bytes, ctx: &ResultContext) {
        let stmt = ctx.request.0;
        let flush = {
            let mut g = lock(&self.server);
            let ServerSide {
                rows,
                spare_acc,
                columns,
                ..
            } = &mut *g;
            let acc = rows
                .entry(stmt)
                .or_insert_with(|| spare_acc.take().unwrap_or_default());
            acc.count += 1;
            if acc.count > self.row_cap {
                return;
            }
            if acc.columns.is_none() {
                if let Some(d) = &ctx.description {
                    let same = columns.as_ref().is_some_and(|(raw, _)| {
                        raw.len() == d.fields.len()
                            && raw.iter().zip(&d.fields).all(|(r, f)| *r == f.name)
                    });
                    if !same {
                        let masked = d
                            .fields
                            .iter()
                            .map(|f| self.masker.mask_str(&f.name).into_owned())
                            .collect();
                        let raw = d.fields.iter().map(|f| f.name.clone()).collect();
                        *columns = Some((raw, masked));
                    }
                    acc.columns = columns.as_ref().map(|(_, m)| Arc::clone(m));
                }
            }
            let Ok(values) = DataRow::values_of(masked) else {
                return;
            };
            let rows = &mut acc.rows;
            for (i, v) in values.enumerate() {
                match v {
                    None => rows.push_null(),
                    Some(b) if !rows.fits(2 + 2 * b.len()) => {
                        // Over 2 GiB of text in one batch: not representable, and far past
                        // any row cap. Recorded as a cut cell rather than not at all.
                        rows.push_str("<cell too large to record>");
                    }
                    Some(b) => match ctx.format(i) {
                        Some(Format::Binary) => rows.push_hex(b),
                        _ => rows.push_lossy(b),
                    },
                }
            }
            rows.end_row();
            if rows.len() >= ROW_BATCH || rows.text_len() >= ROW_BATCH_BYTES {
                // Column names go with the first batch only.
                let columns = if acc.flushed {
                    Vec::new()
                } else {
                    acc.columns
                        .as_deref()
                        .map_or_else(Vec::new, <[String]>::to_vec)
                };
                acc.flushed = true;
                let batch = acc.rows.to_rows();
                acc.rows.clear();
                Some(Rows {
                    stmt,
                    columns,
                    rows: batch,
                    truncated: None,
                })
            } else {
                None
            }
        };
        if let Some(r) = flush {
            self.put(RecordBody::Rows(r));
        }
    }

    /// A request finished.
    pub fn completed(&self, stmt: u64, outcome: &Outcome) {
        let failure;
        let (command_tag, error) = match outcome {
            Outcome::Command(t) => (Some(t.as_str()), None),
            Outcome::EmptyQuery => (Some("EMPTY"), None),
            Outcome::Suspended => (Some("SUSPENDED"), None),
            Outcome::Parsed => return,
            Outcome::FunctionReturned => (Some("FUNCTION"), None),
            Outcome::Error { code, .. } => {
                failure = format!("SQLSTATE {}", code.as_deref().unwrap_or("?"));
                (None, Some(failure.as_str()))
            }
            Outcome::Refused => (None, Some("refused by policy")),
            Outcome::Skipped => (None, Some("skipped after an earlier error")),
        };
        let mut later = Vec::new();
        // One lock for the whole response (the other direction takes it too, so every
        // acquisition may move it between cores); recording never waits under it: what finds
        // the queue full goes to `later`.
        {
            let mut g = lock(&self.server);
            let mut acc = g.rows.remove(&stmt);
            let now = Stamp::now();
            if let Some(acc) = acc.as_mut().filter(|a| a.flushed && !a.rows.is_empty()) {
                // The rest of a large result, after the batches already recorded.
                let rows = acc.rows.to_rows();
                acc.rows.clear();
                later.push((
                    now,
                    RecordBody::Rows(Rows {
                        stmt,
                        columns: Vec::new(),
                        rows,
                        truncated: None,
                    }),
                ));
            }
            // A small result (no batch sent yet) rides in the response: one record, not two.
            let (columns, rows, data) = match &acc {
                Some(acc) => (
                    acc.columns.as_deref().unwrap_or_default(),
                    Some(acc.count),
                    RowsRef::buf(&acc.rows),
                ),
                None => (&[][..], None, RowsRef::default()),
            };
            self.put_hot(
                &mut later,
                now,
                Hot::Response(ResponseRef {
                    stmt,
                    columns,
                    rows,
                    command_tag,
                    // The recorder takes it from the statement's record: the two
                    // directions share no start times.
                    duration_us: ResponseRef::SINCE_STATEMENT,
                    error,
                    data,
                    truncated: None,
                }),
            );
            if let Some(mut a) = acc {
                // Its buffers serve the next statement's rows.
                a.columns = None;
                a.rows.clear();
                a.count = 0;
                a.flushed = false;
                g.spare_acc = Some(a);
            }
        }
        self.put_later(later);
    }

    /// An approval event for statement `stmt`.
    pub fn approval(
        &self,
        stmt: u64,
        requested: bool,
        decision: Option<Action>,
        approver: Option<String>,
        reason: Option<String>,
        waited_ms: Option<u64>,
    ) {
        self.put(RecordBody::Approval(record::Approval {
            stmt,
            event: if requested {
                record::ApprovalKind::Requested
            } else {
                record::ApprovalKind::Decided
            },
            decision,
            approver,
            reason: reason.map(|r| self.masker.mask_str(&r).into_owned()),
            waited_ms,
        }));
    }

    /// A notice from the server (already masked text).
    pub fn notice(&self, severity: &str, message: &str) {
        self.put(RecordBody::Notice(Notice {
            stmt: None,
            severity: severity.to_string(),
            message: self.masker.mask_str(message).into_owned(),
        }));
    }

    /// Seals the file (blocking: run on a blocking thread).
    pub fn finish(self, reason: &str) {
        if let Err(e) = self.recorder.finish(reason) {
            warn!(error = %e, "sealing the session file failed");
        }
    }
}
