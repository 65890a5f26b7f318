//! PostgreSQL session: a thin async loop around the pure [`dbwarden_wire_pg::proxy::Proxy`]
//! state machine. Two tasks — client→server and server→client — so a client pipelining large
//! batches while the server streams large results can never deadlock the proxy; they share the
//! state machine behind a mutex that is never held across an `.await`.
//!
//! Memory per session is bounded: each direction keeps one read buffer (messages are split off
//! as they complete, capped at the codec's maximum message length) and one output batch that
//! is written out after every read.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};

use bytes::BytesMut;
use dbwarden_wire_pg::{
    proxy::{ClientAction, ClientEvent, Proxy, ProxyConfig, ServerEvent, ServerOutput, Verdict},
    ErrorResponse, ProtocolError,
};
use rand::Rng;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    sync::Mutex as AsyncMutex,
};
use tracing::{info, warn};

use super::{
    cancel,
    recording::SessionRecording,
    stream::{ReadHalf as OwnedReadHalf, Stream, WriteHalf as OwnedWriteHalf},
    Totals,
};
use crate::{destination::Destination, pipeline::SessionInfo, server::Shared};
use dbwarden_approvals::{ApprovalRequest, Decision as ApprovalDecision, SessionGrants};

const READ_CHUNK: usize = 64 * 1024;
/// Write the output batch once it exceeds this even mid-read (keeps memory bounded when one
/// read holds many small messages that expand, e.g. after masking).
const HIGH_WATER: usize = 256 * 1024;

/// Bytes client→server and server→client.
type Counters = Arc<(AtomicU64, AtomicU64)>;
type SharedProxy = Arc<std::sync::Mutex<Proxy>>;
/// The session's recording, created once the startup packet names database and user.
pub(super) type SharedRecording = Arc<std::sync::OnceLock<SessionRecording>>;
pub(super) type ClientWriter = Arc<AsyncMutex<OwnedWriteHalf>>;

fn lock(p: &SharedProxy) -> std::sync::MutexGuard<'_, Proxy> {
    p.lock().unwrap_or_else(|e| e.into_inner())
}

fn nonce() -> String {
    let mut rng = rand::thread_rng();
    (0..16)
        .map(|_| char::from(b"0123456789abcdefghijklmnopqrstuvwxyz"[rng.gen_range(0..36)]))
        .collect()
}

/// Runs a PostgreSQL session until either side closes. `pre` holds client bytes already read
/// (by the protocol check) that the session must process first.
pub async fn run(
    client: Stream,
    server: Stream,
    upstream: Destination,
    info: SessionInfo,
    shared: Arc<Shared>,
    pre: BytesMut,
) -> Result<Totals, (Totals, String)> {
    let client_addr = client.peer_label();
    let held_notify = Arc::new(cancel::HoldSignal::default());
    let key = shared.cancel.mint(upstream, held_notify.clone());
    let key_pid = key.pid;
    let proxy = match Proxy::new(ProxyConfig::new(nonce(), key)) {
        Ok(p) => Arc::new(std::sync::Mutex::new(p)),
        Err(e) => return Err((Totals::default(), format!("proxy setup: {e}"))),
    };
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let cw: ClientWriter = Arc::new(AsyncMutex::new(cw));
    let info = Arc::new(tokio::sync::RwLock::new(info));

    let counters: Counters = Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
    let rec: SharedRecording = Arc::new(std::sync::OnceLock::new());
    let legs = Legs {
        cw: cw.clone(),
        proxy: proxy.clone(),
        shared: shared.clone(),
        counters: counters.clone(),
        rec: rec.clone(),
        drained: Arc::new(tokio::sync::Notify::new()),
    };
    let c2s = client_to_server(
        cr,
        sw,
        legs.clone(),
        info.clone(),
        client_addr,
        held_notify,
        pre,
    );
    let s2c = server_to_client(sr, legs, info.clone());
    let (first, reason) = {
        tokio::pin!(c2s);
        tokio::pin!(s2c);
        // When one direction ends the session is over: the other is dropped (closing its socket).
        let (first, reason) = tokio::select! {
            r = &mut c2s => (r, "client side"),
            r = &mut s2c => (r, "server side"),
            _ = shared.shutdown.cancelled() => {
                close_with(&cw, ErrorResponse::admin_shutdown("dbwarden is shutting down")).await;
                (Err("daemon shutting down".to_string()), "shutdown")
            }
        };
        (first, reason)
    };
    shared.cancel.remove(key_pid);
    let end_reason = match &first {
        Ok(()) => "closed".to_string(),
        Err(e) => format!("{reason}: {e}"),
    };
    let moved = counters.0.load(Ordering::Relaxed) + counters.1.load(Ordering::Relaxed);
    if let Some(r) = Arc::try_unwrap(rec)
        .ok()
        .and_then(std::sync::OnceLock::into_inner)
    {
        let _ = tokio::task::spawn_blocking(move || {
            r.finish(&end_reason);
            if moved >= crate::memory::LARGE_MESSAGE as u64 {
                // The recording's buffers grew with the session's largest messages.
                crate::memory::release();
            }
        })
        .await;
    }
    let totals = Totals {
        client_to_server: counters.0.load(Ordering::Relaxed),
        server_to_client: counters.1.load(Ordering::Relaxed),
    };
    match first {
        Ok(()) => Ok(totals),
        Err(e) => Err((totals, format!("{reason}: {e}"))),
    }
}

/// Sends `err` to the client (best effort) and closes the client side.
pub(super) async fn close_with(cw: &ClientWriter, err: ErrorResponse) {
    let mut buf = BytesMut::new();
    if err.encode(&mut buf).is_ok() {
        let mut w = cw.lock().await;
        let _ = w.write_all(&buf).await;
        let _ = w.shutdown().await;
    }
}

/// Fails closed when the session's recording broke (disk full, I/O error): nothing more
/// reaches the server or the agent unrecorded; the agent gets a FATAL error.
async fn check_recording(rec: &SharedRecording, cw: &ClientWriter) -> Result<(), String> {
    if let Some(why) = rec.get().and_then(SessionRecording::failure) {
        let fatal = ErrorResponse::new(
            "FATAL",
            "58030",
            "dbwarden: the session recording failed, so the session is closed",
        );
        close_with(cw, fatal).await;
        return Err(format!("recording failed: {why}"));
    }
    Ok(())
}

/// Writes the client→server batch, if any: only while the recording works; counted.
async fn to_server(
    sw: &mut OwnedWriteHalf,
    out: &mut BytesMut,
    counters: &Counters,
    rec: &SharedRecording,
    cw: &ClientWriter,
) -> Result<(), String> {
    if out.is_empty() {
        return Ok(());
    }
    check_recording(rec, cw).await?;
    counters.0.fetch_add(out.len() as u64, Ordering::Relaxed);
    sw.write_all(out)
        .await
        .map_err(|e| format!("server write: {e}"))?;
    out.clear();
    Ok(())
}

/// Writes the server→client batch, if any: only while the recording works; counted.
async fn to_client(
    cw: &ClientWriter,
    out: &mut BytesMut,
    counters: &Counters,
    rec: &SharedRecording,
) -> Result<(), String> {
    if out.is_empty() {
        return Ok(());
    }
    check_recording(rec, cw).await?;
    counters.1.fetch_add(out.len() as u64, Ordering::Relaxed);
    cw.lock()
        .await
        .write_all(out)
        .await
        .map_err(|e| format!("client write: {e}"))?;
    out.clear();
    Ok(())
}

/// Sends a protocol-violation error to the client (best effort) before the session closes.
async fn refuse_client(cw: &ClientWriter, msg: String) {
    close_with(cw, ErrorResponse::protocol_violation(msg)).await;
}

/// What both directions of a session share.
#[derive(Clone)]
struct Legs {
    cw: ClientWriter,
    proxy: SharedProxy,
    shared: Arc<Shared>,
    counters: Counters,
    rec: SharedRecording,
    /// Notified at every ReadyForQuery (the server has answered everything sent before it).
    drained: Arc<tokio::sync::Notify>,
}

/// Waits until the server has answered every request sent so far.
async fn wait_drained(proxy: &SharedProxy, drained: &tokio::sync::Notify) {
    loop {
        let notified = drained.notified();
        tokio::pin!(notified);
        // Registered before the check, so a ReadyForQuery in between is not missed.
        notified.as_mut().enable();
        if lock(proxy).outstanding() == 0 {
            return;
        }
        notified.await;
    }
}

async fn client_to_server(
    mut cr: OwnedReadHalf,
    mut sw: OwnedWriteHalf,
    legs: Legs,
    info: Arc<tokio::sync::RwLock<SessionInfo>>,
    client_addr: String,
    held_notify: Arc<cancel::HoldSignal>,
    pre: BytesMut,
) -> Result<(), String> {
    let Legs {
        cw,
        proxy,
        shared,
        counters,
        rec,
        drained,
    } = legs;
    let mut buf = pre;
    buf.reserve(READ_CHUNK);
    let mut out = BytesMut::new();
    let mut grants = SessionGrants::new();
    let mut memo = crate::pipeline::VerdictMemo::default();
    // Bytes the protocol check already read are framed before the first read.
    let mut have_pre = !buf.is_empty();
    loop {
        buf.reserve(READ_CHUNK);
        if !std::mem::take(&mut have_pre) {
            let n = cr
                .read_buf(&mut buf)
                .await
                .map_err(|e| format!("client read: {e}"))?;
            if n == 0 {
                let _ = sw.shutdown().await;
                return Ok(());
            }
        }
        let mut large = false;
        loop {
            let frame = lock(&proxy).frame_client(&mut buf);
            let raw = match frame {
                Ok(Some(raw)) => {
                    large |= raw.len() >= crate::memory::LARGE_MESSAGE;
                    raw
                }
                Ok(None) => break,
                Err(e) => {
                    refuse_client(&cw, format!("dbwarden: malformed message from client: {e}"))
                        .await;
                    return Err(format!("malformed client message: {e}"));
                }
            };
            let step = lock(&proxy).client_message(raw);
            let step = match step {
                Ok(s) => s,
                Err(e) => {
                    refuse_client(&cw, format!("dbwarden: {e}")).await;
                    return Err(format!("client protocol error: {e}"));
                }
            };
            if let Some(ClientEvent::Startup { params, .. }) = &step.event {
                super::pg_startup::on_startup(params, &shared, &info, &rec, &cw, &client_addr)
                    .await?;
            }
            if let Some(r) = rec.get() {
                match &step.event {
                    Some(ClientEvent::Bind { bind, .. }) => {
                        r.bound(&bind.portal, &bind.param_formats, &bind.params)
                    }
                    Some(ClientEvent::Execute {
                        request,
                        portal,
                        sql,
                        ..
                    }) => r.executed(request.0, portal, sql.as_deref()),
                    _ => {}
                }
            }
            match step.action {
                ClientAction::Forward(b) => out.extend_from_slice(&b),
                ClientAction::Reply(b) => {
                    let mut w = cw.lock().await;
                    w.write_all(&b)
                        .await
                        .map_err(|e| format!("client write: {e}"))?;
                }
                ClientAction::Decide(pending) => {
                    let session = info.read().await.clone();
                    let (decision, encoding_change) = crate::pipeline::encoding_guard(
                        shared.pipeline.decide_pg(&pending, &session, &mut memo),
                        lock(&proxy).text_encoding(),
                        matches!(
                            pending.kind(),
                            dbwarden_wire_pg::proxy::StatementKind::Parse { .. }
                        ),
                    );
                    let stmt = pending.request().0;
                    let sql = pending
                        .sql()
                        .unwrap_or("<fast-path function call>")
                        .to_string();
                    let held = matches!(
                        decision.verdict.action,
                        dbwarden_policy::Action::RequireApproval { .. }
                    );
                    {
                        use crate::metrics::Metrics;
                        let m = &shared.metrics;
                        Metrics::inc(match (&decision.wire, held) {
                            (_, true) => &m.statements_held_total,
                            (Verdict::Allow, _) => &m.statements_allowed_total,
                            (Verdict::Refuse(_), _) => &m.statements_denied_total,
                        });
                    }
                    if let Some(r) = rec.get() {
                        let action = match (&decision.wire, held) {
                            (_, true) => dbwarden_record::Action::Hold,
                            (Verdict::Allow, _) => dbwarden_record::Action::Allow,
                            (Verdict::Refuse(_), _) => dbwarden_record::Action::Deny,
                        };
                        r.decided(
                            stmt,
                            &sql,
                            action,
                            Some(decision.verdict.rule.as_str()),
                            // For an allow the rule says it all.
                            (action != dbwarden_record::Action::Allow)
                                .then_some(decision.verdict.message.as_str()),
                            &decision.verdict.tags,
                        );
                    }
                    let verdict = if let dbwarden_policy::Action::RequireApproval { timeout } =
                        decision.verdict.action
                    {
                        // Flush what is already decided before waiting.
                        to_server(&mut sw, &mut out, &counters, &rec, &cw).await?;
                        let h = Hold {
                            shared: &shared,
                            session: &session,
                            rule: &decision.verdict.rule,
                            sql: &sql,
                            stmt,
                            timeout,
                            cw: &cw,
                            held: &held_notify,
                            rec: rec.get(),
                        };
                        h.wait(&mut cr, &mut buf, &mut grants).await?
                    } else {
                        decision.wire
                    };
                    let allowed = matches!(verdict, Verdict::Allow);
                    let bytes = lock(&proxy)
                        .decide(pending, verdict)
                        .map_err(|e| format!("decide: {e}"))?;
                    out.extend_from_slice(&bytes);
                    if allowed && encoding_change == crate::pipeline::EncodingChange::Barrier {
                        // What the client pipelined behind it is in the new encoding: let the
                        // server answer (and report the encoding) before decoding more.
                        to_server(&mut sw, &mut out, &counters, &rec, &cw).await?;
                        wait_drained(&proxy, &drained).await;
                    }
                }
                ClientAction::Cancel { pid, secret_key } => {
                    match shared.cancel.lookup(pid, &secret_key) {
                        Some(t) => {
                            // A statement held for approval is cancelled here (the server
                            // never saw it: forwarding would cancel whatever runs next); one
                            // running on the server is cancelled there.
                            if t.held.cancel() {
                                info!("cancel request cancelled the statement held for approval");
                            } else if let Some((upstream, key)) = t.server {
                                info!(%upstream, "forwarding cancel request");
                                if let Err(e) = cancel::forward_cancel(&upstream, &key).await {
                                    warn!(error = %e, "cancel forwarding failed");
                                }
                            }
                        }
                        None => warn!("cancel request with an unknown key ignored"),
                    }
                    return Ok(());
                }
            }
            if out.len() >= HIGH_WATER {
                to_server(&mut sw, &mut out, &counters, &rec, &cw).await?;
            }
        }
        to_server(&mut sw, &mut out, &counters, &rec, &cw).await?;
        if large {
            crate::memory::shrink(&mut buf, READ_CHUNK);
            crate::memory::shrink(&mut out, READ_CHUNK);
            crate::memory::release();
        }
    }
}

fn encode_err(e: ProtocolError) -> String {
    format!("encoding: {e}")
}

async fn server_to_client(
    mut sr: OwnedReadHalf,
    legs: Legs,
    info: Arc<tokio::sync::RwLock<SessionInfo>>,
) -> Result<(), String> {
    let Legs {
        cw,
        proxy,
        shared,
        counters,
        rec,
        drained,
    } = legs;
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut out = BytesMut::new();
    let mut withholding = false;
    let mut copy_rules = crate::masking::CopyRules::default();
    loop {
        buf.reserve(READ_CHUNK);
        let n = sr
            .read_buf(&mut buf)
            .await
            .map_err(|e| format!("server read: {e}"))?;
        if n == 0 {
            let mut w = cw.lock().await;
            if !out.is_empty() {
                let _ = w.write_all(&out).await;
            }
            let _ = w.shutdown().await;
            return Ok(());
        }
        let mut large = false;
        loop {
            let frame = lock(&proxy).frame_server(&mut buf);
            let raw = match frame {
                Ok(Some(raw)) => {
                    large |= raw.len() >= crate::memory::LARGE_MESSAGE;
                    raw
                }
                Ok(None) => break,
                Err(e) => {
                    refuse_client(&cw, "dbwarden: malformed message from the server".into()).await;
                    return Err(format!("malformed server message: {e}"));
                }
            };
            let step = lock(&proxy).server_message(raw);
            let step = match step {
                Ok(s) => s,
                Err(e) => {
                    refuse_client(&cw, "dbwarden: protocol error from the server".into()).await;
                    return Err(format!("server protocol error: {e}"));
                }
            };
            let mut ready = false;
            let r = rec.get();
            for ev in &step.events {
                match ev {
                    ServerEvent::BackendKey { server, client } => {
                        shared.cancel.bind(client, server.clone())
                    }
                    ServerEvent::ReadyForQuery(_) => {
                        ready = true;
                        drained.notify_waiters();
                    }
                    // The backstop: however the session got it (a role or database default),
                    // an unsafe client encoding ends the session.
                    ServerEvent::ParameterStatus { name, value }
                        if name == "client_encoding"
                            && !shared
                                .pipeline
                                .engine
                                .policy()
                                .allows_client_encoding(value) =>
                    {
                        let e = ErrorResponse::new(
                            "FATAL",
                            "22023",
                            dbwarden_policy::encoding::refusal(value),
                        );
                        close_with(&cw, e).await;
                        return Err("the server switched to an unsafe client encoding".into());
                    }
                    ServerEvent::Completed { request, outcome } => {
                        if let dbwarden_wire_pg::proxy::Outcome::Command(tag) = outcome {
                            if crate::catalog::changes_schema(tag) {
                                let i = info.read().await;
                                shared.catalog.invalidate(
                                    &i.ident.original_dst,
                                    i.database.as_deref().unwrap_or(""),
                                );
                            }
                        }
                        if let Some(r) = r {
                            r.completed(request.0, outcome);
                        }
                    }
                    _ => {}
                }
            }
            if withholding {
                // A value of this result could not be masked: everything up to the next
                // ReadyForQuery is withheld (the client already got the error).
                if ready {
                    withholding = false;
                    if let ServerOutput::Forward(b) = step.output {
                        out.extend_from_slice(&b);
                    }
                }
                continue;
            }
            if let ServerOutput::DataRow { context, .. } = &step.output {
                if let Some(d) = context
                    .description
                    .as_ref()
                    .filter(|d| copy_rules.is_new(d))
                {
                    let sources = crate::catalog::sources_for(&shared, &info, d).await;
                    copy_rules.prepare_rows(&shared.pipeline.masker(), d, &sources);
                }
            }
            let row_ctx = match (&step.output, r) {
                (ServerOutput::DataRow { context, .. }, Some(_)) => Some(context.clone()),
                (ServerOutput::Notice(n), Some(r)) => {
                    r.notice(n.severity().unwrap_or("NOTICE"), n.message().unwrap_or(""));
                    None
                }
                _ => None,
            };
            match crate::masking::mask_output(
                &shared.pipeline.masker(),
                step.output,
                &mut copy_rules,
                &shared.pipeline.engine,
            ) {
                Ok(m) => {
                    if let (Some(ctx), Some(r)) = (row_ctx, r) {
                        r.row(&m.bytes, &ctx);
                    }
                    out.extend_from_slice(&m.bytes);
                }
                Err(e) => {
                    warn!(reason = %e, "result withheld: masking failed");
                    crate::metrics::Metrics::inc(&shared.metrics.masking_failures_total);
                    ErrorResponse::insufficient_privilege(
                        format!("dbwarden: result withheld because a value could not be masked ({e})"),
                        None,
                        Some("masking fails closed: change the query so the value is not returned, or ask the operator to add a column rule"),
                    )
                    .encode(&mut out)
                    .map_err(encode_err)?;
                    withholding = !ready;
                }
            }
            if out.len() >= HIGH_WATER {
                to_client(&cw, &mut out, &counters, &rec).await?;
            }
        }
        to_client(&cw, &mut out, &counters, &rec).await?;
        if large {
            crate::memory::shrink(&mut buf, READ_CHUNK);
            crate::memory::shrink(&mut out, READ_CHUNK);
            crate::memory::release();
        }
    }
}

/// Largest amount of pipelined client data buffered while a statement is held.
const HOLD_BUFFER_LIMIT: usize = 1 << 20;

/// A statement held for a human's decision.
struct Hold<'a> {
    shared: &'a Shared,
    session: &'a SessionInfo,
    rule: &'a str,
    sql: &'a str,
    stmt: u64,
    timeout: std::time::Duration,
    cw: &'a ClientWriter,
    held: &'a cancel::HoldSignal,
    rec: Option<&'a SessionRecording>,
}

impl Hold<'_> {
    /// Waits for the decision while watching the client: a disconnect ends the session (the
    /// request is recorded as cancelled), a CancelRequest cancels the statement, pipelined
    /// bytes are kept for later. Returns what to do with the statement.
    async fn wait(
        self,
        cr: &mut OwnedReadHalf,
        buf: &mut BytesMut,
        grants: &mut SessionGrants,
    ) -> Result<Verdict, String> {
        // Registered before the request is filed, so a cancel sent after the client sees the
        // notice is never missed (`notify_waiters` reaches created, not-yet-polled futures).
        let cancelled = self.held.notified();
        tokio::pin!(cancelled);
        let _holding = self.held.begin();
        let masker = self.shared.pipeline.masker();
        let key = dbwarden_policy::normalized_key(self.sql, dbwarden_policy::Dialect::Postgres)
            .unwrap_or_else(|| self.sql.to_string());
        if grants.is_granted(&key) {
            info!(
                stmt = self.stmt,
                rule = self.rule,
                "approved earlier for this session"
            );
            if let Some(r) = self.rec {
                r.approval(
                    self.stmt,
                    false,
                    Some(dbwarden_record::Action::Allow),
                    Some("session grant".into()),
                    None,
                    Some(0),
                );
            }
            return Ok(Verdict::Allow);
        }
        let masked = masker.mask_str(self.sql).into_owned();
        let ident = &self.session.ident;
        let mut labels = String::new();
        for (k, v) in &ident.labels {
            labels.push_str(&format!(" {k}={v}"));
        }
        let req = ApprovalRequest {
            session_id: self.session.id,
            rule: self.rule.to_string(),
            statement: masked.clone(),
            normalized: dbwarden_policy::normalized_display(
                &masked,
                dbwarden_policy::Dialect::Postgres,
            )
            .unwrap_or_else(|| masked.clone()),
            identity_summary: format!(
                "pid {} uid {} ({}) exe {} cgroup {}{}",
                ident.pid,
                ident.uid,
                ident.user.as_deref().unwrap_or("?"),
                ident.exe,
                ident.cgroup,
                labels
            ),
            target: format!(
                "postgres://{}@{}/{}",
                self.session.db_user.as_deref().unwrap_or(""),
                ident.original_dst,
                self.session.database.as_deref().unwrap_or("")
            ),
            timeout: self.timeout,
            requester_uid: ident.uid,
        };
        let mut pending = match self.shared.approvals.request(req) {
            Ok(p) => p,
            Err(e) => {
                warn!(error = %e, "cannot hold the statement for approval; refusing it");
                return Ok(Verdict::Refuse(ErrorResponse::insufficient_privilege(
                    format!("dbwarden: statement needs approval (rule \"{}\") but no approval can be requested now", self.rule),
                    None,
                    None,
                )));
            }
        };
        let id = pending.id().to_string();
        info!(approval = %id, stmt = self.stmt, rule = self.rule, "statement held for approval");
        if let Some(r) = self.rec {
            r.approval(self.stmt, true, None, None, None, None);
        }
        let mut nb = BytesMut::new();
        let notice = dbwarden_wire_pg::NoticeResponse::notice(format!(
            "dbwarden: statement held for approval #{id} (rule \"{}\"); waiting up to {}s for a human to decide",
            self.rule,
            self.timeout.as_secs()
        ));
        if notice.encode(&mut nb).is_ok() {
            let mut w = self.cw.lock().await;
            let _ = w.write_all(&nb).await;
        }
        let started = std::time::Instant::now();
        let decision = loop {
            let can_read = buf.len() < HOLD_BUFFER_LIMIT;
            tokio::select! {
                d = pending.wait() => break d,
                () = &mut cancelled => break pending.cancel("cancelled by the client"),
                n = cr.read_buf(buf), if can_read => match n {
                    Ok(0) | Err(_) => {
                        drop(pending);
                        if let Some(r) = self.rec {
                            r.approval(self.stmt, false, Some(dbwarden_record::Action::Deny), None,
                                Some("client disconnected while waiting".into()), Some(started.elapsed().as_millis() as u64));
                        }
                        return Err(format!("client disconnected while approval #{id} was pending"));
                    }
                    Ok(_) => {}
                },
            }
        };
        let waited = started.elapsed().as_millis() as u64;
        let allowed = decision.is_approved();
        info!(approval = %id, outcome = decision.outcome(), approver = decision.approver().unwrap_or(""), waited_ms = waited, "approval resolved");
        if let Some(r) = self.rec {
            r.approval(
                self.stmt,
                false,
                Some(if allowed {
                    dbwarden_record::Action::Allow
                } else {
                    dbwarden_record::Action::Deny
                }),
                decision.approver().map(str::to_string),
                Some(decision.summary()),
                Some(waited),
            );
        }
        Ok(match &decision {
            ApprovalDecision::Approved { .. } => {
                grants.apply(&decision, &key);
                Verdict::Allow
            }
            ApprovalDecision::Cancelled { .. } => Verdict::Refuse(ErrorResponse::query_canceled(format!(
                "canceling statement due to user request (dbwarden approval #{id} cancelled)"
            ))),
            ApprovalDecision::TimedOut { .. } => Verdict::Refuse(ErrorResponse::insufficient_privilege(
                format!("dbwarden: statement timed out waiting for approval: {} (approval #{id}, rule \"{}\")", decision.summary(), self.rule),
                None,
                None,
            )),
            _ => Verdict::Refuse(ErrorResponse::insufficient_privilege(
                format!("dbwarden: statement {} (approval #{id}, rule \"{}\")", decision.summary(), self.rule),
                None,
                None,
            )),
        })
    }
}
