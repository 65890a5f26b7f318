//! One task per agent connection: connect upstream to the original destination, then run the
//! protocol-specific session (PostgreSQL: [`pg`]; others: the byte [`relay`]).
//!
//! This is the seam where the statement pipeline plugs in: a protocol session decodes client
//! messages, asks policy, and passes server messages through masking and recording.

pub mod cancel;
pub mod pg;
pub mod recording;
pub mod relay;

use std::{net::SocketAddr, sync::Arc, time::Instant};

use tokio::net::TcpStream;
use tracing::{info, warn, Instrument};

use crate::{
    identity::{ConnIdentity, ProtocolName},
    pipeline::SessionInfo,
    server::Shared,
};

/// Totals reported when a session ends.
#[derive(Debug, Default, Clone, Copy)]
pub struct Totals {
    /// Bytes from the agent to the database.
    pub client_to_server: u64,
    /// Bytes from the database to the agent.
    pub server_to_client: u64,
}

/// Runs a session to completion and logs its summary.
pub async fn run(
    client: TcpStream,
    peer: SocketAddr,
    ident: ConnIdentity,
    id: u64,
    shared: Arc<Shared>,
) {
    let span = tracing::info_span!(
        "session",
        session = id,
        pid = ident.pid,
        uid = ident.uid,
        exe = %ident.exe,
        dst = %ident.original_dst,
        proto = %ident.protocol,
    );
    async move {
        let labels = serde_json::to_string(&ident.labels).unwrap_or_default();
        info!(
            client = %peer,
            tid = ident.tid,
            user = ident.user.as_deref().unwrap_or(""),
            gid = ident.gid,
            cgroup = %ident.cgroup,
            cgroup_id = ident.cgroup_id,
            comm = %ident.comm,
            cmdline = %ident.cmdline,
            labels = %labels,
            proc_verified = ident.proc_verified,
            "session started"
        );
        let started = Instant::now();
        let m = shared.metrics.clone();
        crate::metrics::Metrics::inc(&m.sessions_total);
        m.sessions_active
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        struct Active(std::sync::Arc<crate::metrics::Metrics>);
        impl Drop for Active {
            fn drop(&mut self) {
                self.0
                    .sessions_active
                    .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        let _active = Active(m.clone());
        let _ = client.set_nodelay(true);
        let upstream = match tokio::time::timeout(
            shared.settings.connect_timeout,
            TcpStream::connect(ident.original_dst),
        )
        .await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                warn!(error = %e, "upstream connect failed; closing agent connection");
                return;
            }
            Err(_) => {
                warn!("upstream connect timed out; closing agent connection");
                return;
            }
        };
        let _ = upstream.set_nodelay(true);
        let dst = ident.original_dst;
        let result = match ident.protocol {
            ProtocolName::Postgres => {
                let info = SessionInfo {
                    id,
                    policy_ident: Arc::new(crate::pipeline::policy_identity(&ident)),
                    ident: Arc::new(ident),
                    database: None,
                    db_user: None,
                };
                pg::run(client, upstream, dst, info, shared.clone()).await
            }
            ProtocolName::Mysql | ProtocolName::Unknown => {
                relay::run(client, upstream, &shared.shutdown).await
            }
        };
        let (totals, reason) = match &result {
            Ok(t) => (*t, "closed".to_string()),
            Err((t, e)) => (*t, e.clone()),
        };
        m.bytes_client_to_server_total.fetch_add(
            totals.client_to_server,
            std::sync::atomic::Ordering::Relaxed,
        );
        m.bytes_server_to_client_total.fetch_add(
            totals.server_to_client,
            std::sync::atomic::Ordering::Relaxed,
        );
        info!(
            bytes_client_to_server = totals.client_to_server,
            bytes_server_to_client = totals.server_to_client,
            duration_ms = started.elapsed().as_millis() as u64,
            reason = %reason,
            "session ended"
        );
    }
    .instrument(span)
    .await
}
