//! The accept loop: every accepted connection is matched to its kernel record (fail closed:
//! no record, no service), its identity resolved, and a session task spawned.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use tokio::net::{TcpListener, TcpStream};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{debug, info, warn};

use crate::{config::Settings, identity, intercept::Interceptor, session};

/// State shared by all sessions (read-mostly).
pub struct Shared {
    /// Validated settings.
    pub settings: Settings,
    /// Kernel interception (map lookups).
    pub interceptor: Interceptor,
    /// Cancelled on shutdown.
    pub shutdown: CancellationToken,
    /// PostgreSQL cancellation keys of live sessions.
    pub cancel: crate::session::cancel::CancelRegistry,
    /// Policy, masking and recording.
    pub pipeline: crate::pipeline::Pipeline,
    /// Counters.
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// Approval broker (statements held for a human).
    pub approvals: dbwarden_approvals::Broker,
    /// Session recordings (None when recording is disabled).
    pub store: Option<std::sync::Arc<dbwarden_record::SessionStore>>,
    /// Unique per-daemon session counter.
    pub next_session: std::sync::atomic::AtomicU64,
}

/// Runs the accept loops until `shutdown` is cancelled, then drains sessions for up to `grace`.
pub async fn run(listeners: Vec<TcpListener>, shared: Arc<Shared>, grace: Duration) {
    let tracker = TaskTracker::new();
    for l in listeners {
        let shared = shared.clone();
        let tracker2 = tracker.clone();
        tracker.spawn(async move { accept_loop(l, shared, tracker2).await });
    }
    shared.shutdown.cancelled().await;
    tracker.close();
    info!(
        grace_secs = grace.as_secs(),
        "shutting down: no longer accepting, draining sessions"
    );
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        warn!(
            remaining = tracker.len(),
            "grace period over; closing remaining sessions"
        );
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, tracker: TaskTracker) {
    let mut backoff = Duration::from_millis(5);
    loop {
        let accepted = tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(5);
                let shared = shared.clone();
                tracker.spawn(async move { handle(stream, peer, shared).await });
            }
            Err(e) => {
                // EMFILE and friends: back off, never die.
                warn!(error = %e, "accept failed; backing off");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

async fn handle(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let local = match stream.local_addr() {
        Ok(l) => l,
        Err(e) => {
            debug!(%peer, error = %e, "connection vanished before it could be identified");
            return;
        }
    };
    let Some(info) = shared.interceptor.take_conn(peer, local) else {
        // Not redirected by our programs (someone connected to the listener directly, or the
        // record was evicted): we cannot attest who it is, so it gets nothing.
        warn!(%peer, %local, "refusing connection without a kernel record (not from a controlled cgroup)");
        crate::metrics::Metrics::inc(&shared.metrics.connections_refused_total);
        return;
    };
    let id = shared
        .next_session
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut ident = identity::resolve(&info, &shared.settings.env_labels, None);
    // The command line and labels are the agent's words: they may carry card data, and they go
    // to logs and recordings.
    let masker = shared.pipeline.masker();
    ident.cmdline = masker.mask_str(&ident.cmdline).into_owned();
    ident.exe = masker.mask_str(&ident.exe).into_owned();
    for v in ident.labels.values_mut() {
        *v = masker.mask_str(v).into_owned();
    }
    session::run(stream, peer, ident, id, shared).await;
}
