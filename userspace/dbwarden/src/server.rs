//! The accept loop: every accepted connection is matched to its kernel record (fail closed:
//! no record, no service), its identity resolved, and a session task spawned.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use tokio::net::{TcpListener, TcpStream, UnixStream};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{debug, info, warn};

use crate::{
    config::Settings,
    destination::Destination,
    identity,
    intercept::Interceptor,
    session::{self, as_agent::AgentCred, stream::Stream},
    unix_resolve::{self, Reached},
};

/// State shared by all sessions (read-mostly).
pub struct Shared {
    /// Validated settings.
    pub settings: Settings,
    /// Kernel interception (map lookups).
    pub interceptor: Interceptor,
    /// Unix-socket interception (None when `[intercept] unix_mode = "off"`).
    pub unix: Option<crate::intercept::unix::UnixInterceptor>,
    /// What the resolver of redirected Unix connects looks for.
    pub resolve: unix_resolve::ResolveSettings,
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
    /// Source columns of result fields, per database.
    pub catalog: crate::catalog::Catalog,
}

/// Runs the accept loops until `shutdown` is cancelled, then drains sessions for up to `grace`.
pub async fn run(
    listeners: Vec<TcpListener>,
    resolver: Option<tokio::net::UnixListener>,
    shared: Arc<Shared>,
    grace: Duration,
) {
    let tracker = TaskTracker::new();
    for l in listeners {
        let shared = shared.clone();
        let tracker2 = tracker.clone();
        tracker.spawn(async move { accept_loop(l, shared, tracker2).await });
    }
    if let Some(l) = resolver {
        let shared = shared.clone();
        let tracker2 = tracker.clone();
        tracker.spawn(async move { accept_unix_loop(l, shared, tracker2).await });
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

async fn accept_unix_loop(l: tokio::net::UnixListener, shared: Arc<Shared>, tracker: TaskTracker) {
    let mut backoff = Duration::from_millis(5);
    loop {
        let accepted = tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            a = l.accept() => a,
        };
        match accepted {
            Ok((stream, _)) => {
                backoff = Duration::from_millis(5);
                let shared = shared.clone();
                tracker.spawn(async move { handle_unix(stream, shared).await });
            }
            Err(e) => {
                warn!(error = %e, "Unix accept failed; backing off");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// A redirected Unix connect: the kernel record comes by the inode of the agent's socket (the
/// peer of the accepted one); the path it asked for is resolved as the agent and judged.
async fn handle_unix(stream: UnixStream, shared: Arc<Shared>) {
    let refuse = |why: String| {
        warn!(reason = %why, "refusing Unix connection");
        crate::metrics::Metrics::inc(&shared.metrics.connections_refused_total);
    };
    let rec = crate::intercept::sock_diag::unix_peer_inode(&stream)
        .ok()
        .and_then(|ino| shared.unix.as_ref()?.take_conn(ino));
    let Some(rec) = rec else {
        return refuse(
            "no kernel record (not from a controlled cgroup, or the client closed before it was accepted)".into(),
        );
    };
    // SO_PEERCRED: the credentials the agent connected with (effective ids), which a direct
    // connection would have shown the database.
    let pc = match stream.peer_cred() {
        Ok(c) => c,
        Err(e) => return refuse(format!("no peer credentials: {e}")),
    };
    let mut ident = identity::resolve(&rec.info, &shared.settings.env_labels, None);
    let orig = rec.orig.bytes().to_vec();
    let asked = crate::identity::sanitize(&String::from_utf8_lossy(&orig));
    if !ident.proc_verified {
        return refuse(format!(
            "agent process {} gone or changed before its path {asked:?} could be resolved",
            ident.pid
        ));
    }
    let status = std::fs::read_to_string(format!("/proc/{}/status", ident.pid)).unwrap_or_default();
    let Some(cap_eff) = crate::session::as_agent::cap_eff_of(&status) else {
        return refuse(format!(
            "agent process {} has no readable CapEff",
            ident.pid
        ));
    };
    let cred = AgentCred {
        uid: pc.uid(),
        gid: pc.gid(),
        groups: identity::groups_in(&status, pc.uid()).unwrap_or_default(),
        cap_eff,
    };
    let (reached, upstream) =
        match unix_resolve::resolve_and_connect(&orig, ident.pid, &cred, &shared.resolve).await {
            Ok(r) => r,
            Err(e) => return refuse(format!("pid {} comm {}: {e}", ident.pid, ident.comm)),
        };
    match reached {
        Reached::Database(path, proto) => {
            ident.original_dst = Destination::Unix(path);
            ident.protocol = proto.into();
        }
        Reached::Other(path) => {
            debug!(asked = %asked, reached = %path.display(), "Unix connect to a non-database socket: relayed as bytes");
            ident.original_dst = Destination::Unix(path);
            ident.protocol = crate::identity::ProtocolName::Unknown;
        }
    }
    start_session(
        Stream::Unix(stream),
        ident,
        shared,
        Some(Stream::Unix(upstream)),
    )
    .await;
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
    let ident = identity::resolve(&info, &shared.settings.env_labels, None);
    let _ = peer;
    start_session(Stream::Tcp(stream), ident, shared, None).await;
}

async fn start_session(
    stream: Stream,
    mut ident: identity::ConnIdentity,
    shared: Arc<Shared>,
    upstream: Option<Stream>,
) {
    let id = shared
        .next_session
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // The command line and labels are the agent's words: they may carry card data, and they go
    // to logs and recordings.
    let masker = shared.pipeline.masker();
    ident.cmdline = masker.mask_str(&ident.cmdline).into_owned();
    ident.exe = masker.mask_str(&ident.exe).into_owned();
    for v in ident.labels.values_mut() {
        *v = masker.mask_str(v).into_owned();
    }
    session::run(stream, ident, id, shared, upstream).await;
}
