//! The broker: the registry of held statements and the single place where they are decided.
//!
//! Flow: a session calls [`Broker::request`] and awaits [`PendingApproval::wait`] while it
//! stops forwarding that client's messages. An approver decides through a channel
//! ([`Broker::decide`]), or the request's timer fires, or the session cancels or drops the
//! [`PendingApproval`] (client disconnect). Each path goes through one function that, under
//! one lock, writes the `decided` journal record, removes the entry, wakes the waiter and
//! emits an [`ApprovalEvent`]; whoever comes second gets [`DecideError::AlreadyDecided`].
//!
//! Approvals (not denials) first pass the approver rules ([`crate::approver`]): no approver
//! in a controlled cgroup, none with the requesting session's uid unless self-approval is
//! allowed, none the channel could not verify. A refusal is journaled (`refused`), logged
//! and returned as [`DecideError::Refused`]; the request stays pending.
//!
//! Locking: one `std::sync::Mutex` around the whole state, journal included, held only for
//! map updates and one small appended line (no `.await` inside), so `requested` always
//! precedes `decided` in the journal and events come out in the same order.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime};

use rand::Rng;
use tokio::sync::{broadcast, oneshot};
use tokio::task::AbortHandle;
use tokio::time::Instant;

mod error;

pub use error::{DecideError, OpenError, RequestError};

use crate::approver::{ApprovalRules, Approver, Refusal};
use crate::journal::{Journal, Record};
use crate::model::{
    dur_ms, unix_ms, ApprovalEvent, ApprovalRequest, ApprovalState, ApprovalView, Decision,
    OrphanedRequest, Resolution,
};
use crate::text::{
    sanitize_line, sanitize_reason, sanitize_text, MAX_APPROVER_CHARS, MAX_FIELD_CHARS,
    MAX_STATEMENT_CHARS,
};

/// Longest timeout accepted; longer ones are clamped (keeps deadlines representable).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// Reason recorded when a [`PendingApproval`] is dropped without a decision.
pub const DISCONNECT_REASON: &str = "client disconnected";

/// Broker settings.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Runtime dir holding `approvals.journal` (created `0700` if missing).
    pub runtime_dir: PathBuf,
    /// `fdatasync` the journal after every record (default true: approvals are rare, and
    /// a restart must find every pending request).
    pub fsync_journal: bool,
    /// Decided approvals kept in memory so `show ID` still answers (default 1000).
    pub history: usize,
    /// Capacity of the event channel; slow subscribers lose the oldest events (default 1024).
    pub event_capacity: usize,
    /// Pending requests allowed at once; further requests fail closed (default 1024).
    pub max_pending: usize,
    /// Who may approve (controlled cgroups, self-approval); default: no controlled cgroups,
    /// self-approval refused.
    pub rules: ApprovalRules,
}

impl BrokerConfig {
    /// Defaults for the given runtime dir.
    #[must_use]
    pub fn new(runtime_dir: impl Into<PathBuf>) -> Self {
        BrokerConfig {
            runtime_dir: runtime_dir.into(),
            fsync_journal: true,
            history: 1000,
            event_capacity: 1024,
            max_pending: 1024,
            rules: ApprovalRules::default(),
        }
    }
}

/// Handle to the approval broker. Cheap to clone; all clones share one registry.
#[derive(Clone, Debug)]
pub struct Broker {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    events: broadcast::Sender<ApprovalEvent>,
    runtime: tokio::runtime::Handle,
    history_cap: usize,
    max_pending: usize,
    rules: ApprovalRules,
}

#[derive(Debug)]
struct State {
    pending: HashMap<String, Entry>,
    /// Decided approvals, oldest first, bounded by `history_cap`.
    history: VecDeque<ApprovalView>,
    /// Ids ever issued (journal and this run), never reused.
    used_ids: HashSet<String>,
    journal: Journal,
    seq: u64,
}

#[derive(Debug)]
struct Entry {
    /// The view with state `Pending { expires_in_ms: 0 }`; the state is filled on read.
    view: ApprovalView,
    seq: u64,
    requester_uid: u32,
    started: Instant,
    deadline: Instant,
    tx: oneshot::Sender<Decision>,
    timer: Option<AbortHandle>,
}

impl Entry {
    fn current_view(&self, now: Instant) -> ApprovalView {
        let mut v = self.view.clone();
        v.state = ApprovalState::Pending {
            expires_in_ms: dur_ms(self.deadline.saturating_duration_since(now)),
        };
        v
    }
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    // A panic while holding the lock cannot leave the maps half-updated in a way that
    // matters more than refusing every approval, so recover the guard.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Broker {
    /// Opens the broker: creates the runtime dir if needed, opens the journal, and returns
    /// the requests the previous daemon left pending (already marked decided, reason
    /// "daemon restarted", in the journal) so the daemon can record them as denied.
    ///
    /// # Errors
    /// [`OpenError`] if the runtime dir or journal cannot be used, or outside a runtime.
    pub async fn open(cfg: BrokerConfig) -> Result<(Broker, Vec<OrphanedRequest>), OpenError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| OpenError::NoRuntime)?;
        create_runtime_dir(&cfg.runtime_dir)?;
        let opened = Journal::open(
            &cfg.runtime_dir,
            cfg.fsync_journal,
            unix_ms(SystemTime::now()),
        )?;
        for o in &opened.orphans {
            tracing::warn!(
                approval = %o.id,
                session = o.session_id,
                rule = %o.rule,
                "approval request pending at previous daemon exit; denied (daemon restarted)"
            );
        }
        let (events, _) = broadcast::channel(cfg.event_capacity.max(1));
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                pending: HashMap::new(),
                history: VecDeque::new(),
                used_ids: opened.known_ids,
                journal: opened.journal,
                seq: 0,
            }),
            events,
            runtime,
            history_cap: cfg.history,
            max_pending: cfg.max_pending,
            rules: cfg.rules,
        });
        Ok((Broker { shared }, opened.orphans))
    }

    /// Holds a statement: journals the request, starts its timer, notifies subscribers.
    /// The caller stops forwarding the session's messages until
    /// [`PendingApproval::wait`] returns.
    ///
    /// Text fields are sanitised (control and invisible characters stripped, bounded
    /// length) before anyone sees them; the timeout is clamped to [`MAX_TIMEOUT`].
    ///
    /// # Errors
    /// [`RequestError`] if too many requests are pending or the journal cannot be written;
    /// the statement must then be refused.
    pub fn request(&self, req: ApprovalRequest) -> Result<PendingApproval, RequestError> {
        let timeout = req.timeout.min(MAX_TIMEOUT);
        let now = Instant::now();
        let deadline = now + timeout;
        let requested_at_ms = unix_ms(SystemTime::now());
        let mut view = ApprovalView {
            id: String::new(),
            session_id: req.session_id,
            rule: sanitize_line(&req.rule, MAX_FIELD_CHARS),
            statement: sanitize_text(&req.statement, MAX_STATEMENT_CHARS),
            normalized: sanitize_text(&req.normalized, MAX_STATEMENT_CHARS),
            identity: sanitize_line(&req.identity_summary, MAX_FIELD_CHARS),
            target: sanitize_line(&req.target, MAX_FIELD_CHARS),
            requested_at_ms,
            timeout_ms: dur_ms(timeout),
            state: ApprovalState::Pending {
                expires_in_ms: dur_ms(timeout),
            },
        };

        let mut st = lock(&self.shared.state);
        if st.pending.len() >= self.shared.max_pending {
            return Err(RequestError::TooManyPending {
                limit: self.shared.max_pending,
            });
        }
        let id = loop {
            let candidate = format!("{:08x}", rand::thread_rng().gen::<u32>());
            if !st.used_ids.contains(&candidate) {
                break candidate;
            }
        };
        view.id.clone_from(&id);
        let rec = Record::Requested {
            id: id.clone(),
            at_ms: requested_at_ms,
            session_id: view.session_id,
            rule: view.rule.clone(),
            statement: view.statement.clone(),
            normalized: view.normalized.clone(),
            identity: view.identity.clone(),
            target: view.target.clone(),
            timeout_ms: view.timeout_ms,
            requester_uid: Some(req.requester_uid),
        };
        if let Err(source) = st.journal.append(&rec) {
            tracing::error!(journal = %st.journal.path().display(), error = %source, "cannot journal approval request; refusing");
            return Err(RequestError::Journal {
                path: st.journal.path().to_owned(),
                source,
            });
        }
        st.used_ids.insert(id.clone());
        st.seq += 1;
        let seq = st.seq;

        let (tx, rx) = oneshot::channel();
        let weak = Arc::downgrade(&self.shared);
        let timer_id = id.clone();
        let timeout_ms = dur_ms(timeout);
        let timer = self.shared.runtime.spawn(async move {
            tokio::time::sleep_until(deadline).await;
            if let Some(shared) = Weak::upgrade(&weak) {
                let _ = finish(&shared, &timer_id, Decision::TimedOut { timeout_ms });
            }
        });
        st.pending.insert(
            id.clone(),
            Entry {
                view: view.clone(),
                seq,
                requester_uid: req.requester_uid,
                started: now,
                deadline,
                tx,
                timer: Some(timer.abort_handle()),
            },
        );
        tracing::info!(
            approval = %id,
            session = view.session_id,
            rule = %view.rule,
            timeout_ms = view.timeout_ms,
            "statement held for approval"
        );
        let _ = self
            .shared
            .events
            .send(ApprovalEvent::Requested { approval: view });
        drop(st);

        Ok(PendingApproval {
            id,
            shared: Arc::clone(&self.shared),
            rx,
            deadline,
            timeout_ms,
            result: None,
        })
    }

    /// Pending approvals, oldest first.
    #[must_use]
    pub fn list(&self) -> Vec<ApprovalView> {
        let st = lock(&self.shared.state);
        let now = Instant::now();
        let mut entries: Vec<&Entry> = st.pending.values().collect();
        entries.sort_by_key(|e| e.seq);
        entries.iter().map(|e| e.current_view(now)).collect()
    }

    /// One approval, pending or recently decided.
    #[must_use]
    pub fn get(&self, id: &str) -> Option<ApprovalView> {
        let st = lock(&self.shared.state);
        if let Some(e) = st.pending.get(id) {
            return Some(e.current_view(Instant::now()));
        }
        st.history.iter().rev().find(|v| v.id == id).cloned()
    }

    /// Decides a pending approval on behalf of `who` (name sanitised; channels prefix it,
    /// e.g. `http:alice`). Returns the decision delivered to the waiting session.
    ///
    /// # Errors
    /// [`DecideError::UnknownId`], [`DecideError::AlreadyDecided`],
    /// [`DecideError::InvalidApprover`] (empty name), [`DecideError::Refused`] (approver
    /// rules, approvals only), or [`DecideError::Journal`] when an approval cannot be
    /// journaled (it is then not granted and stays pending).
    pub fn decide(
        &self,
        id: &str,
        who: &Approver,
        resolution: Resolution,
    ) -> Result<Decision, DecideError> {
        let approver = sanitize_line(&who.name, MAX_APPROVER_CHARS)
            .trim()
            .to_owned();
        if approver.is_empty() {
            return Err(DecideError::InvalidApprover);
        }
        if matches!(resolution, Resolution::Approve { .. }) {
            // Unknown or decided ids fall through to `finish`, which reports them.
            let requester = lock(&self.shared.state)
                .pending
                .get(id)
                .map(|e| e.requester_uid);
            if let Some(requester_uid) = requester {
                // Outside the lock: the check reads /proc.
                if let Err(refusal) = self.shared.rules.check_approve(who, requester_uid) {
                    self.refused(id, &approver, who, &refusal);
                    return Err(DecideError::Refused(refusal));
                }
            }
        }
        let decision = match resolution {
            Resolution::Approve { scope, reason } => Decision::Approved {
                approver,
                reason: sanitize_reason(reason.as_deref()),
                scope,
            },
            Resolution::Deny { reason } => Decision::Denied {
                approver,
                reason: sanitize_reason(reason.as_deref()),
            },
        };
        finish(&self.shared, id, decision)
    }

    /// Journals and logs a refused approval attempt (the refusal stands even if the journal
    /// cannot be written).
    fn refused(&self, id: &str, approver: &str, who: &Approver, refusal: &Refusal) {
        let message = refusal.to_string();
        tracing::warn!(
            approval = %id,
            approver = %approver,
            uid = who.uid(),
            refusal = refusal.kind(),
            reason = %message,
            "approval refused by the approver rules; still pending"
        );
        let mut st = lock(&self.shared.state);
        let rec = Record::Refused {
            id: id.to_owned(),
            at_ms: unix_ms(SystemTime::now()),
            approver: approver.to_owned(),
            uid: who.uid(),
            refusal: refusal.kind().to_owned(),
            message,
        };
        if let Err(e) = st.journal.append(&rec) {
            tracing::error!(journal = %st.journal.path().display(), approval = %id, error = %e, "cannot journal a refused approval");
        }
    }

    /// Cancels every pending approval (e.g. at graceful shutdown) with `reason`; returns
    /// how many were cancelled.
    pub fn cancel_all(&self, reason: &str) -> usize {
        let ids: Vec<String> = lock(&self.shared.state).pending.keys().cloned().collect();
        let reason = sanitize_line(reason, MAX_FIELD_CHARS);
        ids.iter()
            .filter(|id| {
                finish(
                    &self.shared,
                    id,
                    Decision::Cancelled {
                        reason: reason.clone(),
                    },
                )
                .is_ok()
            })
            .count()
    }

    /// Subscribes to request and decision events (for recording, metrics, webhooks).
    /// A subscriber that falls behind by more than the channel capacity gets
    /// `RecvError::Lagged` and loses the oldest events.
    #[must_use]
    pub fn subscribe(&self) -> broadcast::Receiver<ApprovalEvent> {
        self.shared.events.subscribe()
    }

    /// Number of pending approvals.
    #[must_use]
    pub fn pending_count(&self) -> usize {
        lock(&self.shared.state).pending.len()
    }
}

fn create_runtime_dir(dir: &Path) -> Result<(), OpenError> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| OpenError::RuntimeDir {
            path: dir.to_owned(),
            source,
        })
}

/// The one place an approval ends. See the module docs.
fn finish(shared: &Shared, id: &str, decision: Decision) -> Result<Decision, DecideError> {
    let mut st = lock(&shared.state);
    if !st.pending.contains_key(id) {
        return Err(match st.history.iter().rev().find(|v| v.id == id) {
            Some(ApprovalView {
                state: ApprovalState::Decided { decision, .. },
                ..
            }) => DecideError::AlreadyDecided {
                id: id.to_owned(),
                decision: decision.clone(),
            },
            _ => DecideError::UnknownId(sanitize_line(id, 16)),
        });
    }
    let now_ms = unix_ms(SystemTime::now());
    let rec = Record::Decided {
        id: id.to_owned(),
        at_ms: now_ms,
        decision: decision.clone(),
    };
    if let Err(source) = st.journal.append(&rec) {
        let path = st.journal.path().to_owned();
        tracing::error!(journal = %path.display(), approval = %id, error = %source, "cannot journal approval decision");
        if decision.is_approved() {
            return Err(DecideError::Journal { path, source });
        }
    }
    let Some(entry) = st.pending.remove(id) else {
        return Err(DecideError::UnknownId(id.to_owned()));
    };
    if let Some(t) = &entry.timer {
        t.abort();
    }
    let waited = entry.started.elapsed();
    let mut view = entry.view;
    view.state = ApprovalState::Decided {
        decision: decision.clone(),
        decided_at_ms: now_ms,
        waited_ms: dur_ms(waited),
    };
    // The waiter may be gone only if it was dropped, and its drop decides first.
    let _ = entry.tx.send(decision.clone());
    tracing::info!(
        approval = %id,
        session = view.session_id,
        rule = %view.rule,
        outcome = decision.outcome(),
        approver = decision.approver().unwrap_or(""),
        reason = decision.reason().unwrap_or(""),
        waited_ms = dur_ms(waited),
        "approval decided"
    );
    if shared.history_cap > 0 {
        while st.history.len() >= shared.history_cap {
            st.history.pop_front();
        }
        st.history.push_back(view.clone());
    }
    let _ = shared
        .events
        .send(ApprovalEvent::Decided { approval: view });
    Ok(decision)
}

/// A held statement, owned by the session that filed it.
///
/// Dropping it before a decision (the session ended: client disconnect) cancels the request
/// with reason [`DISCONNECT_REASON`], which is journaled and emitted like any decision.
#[derive(Debug)]
pub struct PendingApproval {
    id: String,
    shared: Arc<Shared>,
    rx: oneshot::Receiver<Decision>,
    deadline: Instant,
    timeout_ms: u64,
    result: Option<Decision>,
}

impl PendingApproval {
    /// The approval id approvers use.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }

    /// When the request times out.
    #[must_use]
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Waits for the decision; resolves [`Decision::TimedOut`] at the deadline.
    /// Calling it again after it returned gives the same decision.
    ///
    /// # Cancellation safety
    /// Cancel-safe: dropping the future (e.g. in a `select!` with the client socket) loses
    /// nothing; call `wait` again, or [`Self::cancel`], or drop `self`.
    pub async fn wait(&mut self) -> Decision {
        if let Some(d) = &self.result {
            return d.clone();
        }
        let d = tokio::select! {
            r = &mut self.rx => r.unwrap_or_else(|_| broker_closed()),
            () = tokio::time::sleep_until(self.deadline) => {
                match finish(&self.shared, &self.id, Decision::TimedOut { timeout_ms: self.timeout_ms }) {
                    Ok(d) => d,
                    // Decided just before the deadline: the decision is in the channel.
                    Err(_) => self.rx.try_recv().unwrap_or_else(|_| broker_closed()),
                }
            }
        };
        self.result = Some(d.clone());
        d
    }

    /// Cancels the request (session cancelled, shutdown) and returns the final decision:
    /// `Cancelled { reason }`, or the decision that got there first.
    pub fn cancel(&mut self, reason: &str) -> Decision {
        if let Some(d) = &self.result {
            return d.clone();
        }
        let d = match finish(
            &self.shared,
            &self.id,
            Decision::Cancelled {
                reason: sanitize_line(reason, MAX_FIELD_CHARS),
            },
        ) {
            Ok(d) => d,
            Err(_) => self.rx.try_recv().unwrap_or_else(|_| broker_closed()),
        };
        self.result = Some(d.clone());
        d
    }
}

fn broker_closed() -> Decision {
    Decision::Cancelled {
        reason: "approval broker closed".to_owned(),
    }
}

impl Drop for PendingApproval {
    fn drop(&mut self) {
        if self.result.is_none() && self.rx.try_recv().is_err() {
            let _ = finish(
                &self.shared,
                &self.id,
                Decision::Cancelled {
                    reason: DISCONNECT_REASON.to_owned(),
                },
            );
        }
    }
}
