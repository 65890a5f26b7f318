//! Daemon counters, exposed in the Prometheus text format on an optional loopback listener
//! (`metrics_listen`). Counters only carry numbers and fixed labels — never statement text,
//! identities or values (no PAN can reach a metric).

use std::{
    fmt::Write as _,
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Arc,
    },
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

macro_rules! metrics {
    ($($name:ident: $help:literal,)*) => {
        /// All counters of the daemon.
        #[derive(Debug, Default)]
        pub struct Metrics {
            $(#[doc = $help] pub $name: AtomicU64,)*
        }

        impl Metrics {
            /// Renders every counter in the Prometheus text format.
            pub fn render(&self) -> String {
                let mut s = String::new();
                $(
                    let _ = writeln!(s, "# HELP dbwarden_{} {}", stringify!($name), $help);
                    let kind = if stringify!($name).ends_with("_active") { "gauge" } else { "counter" };
                    let _ = writeln!(s, "# TYPE dbwarden_{} {}", stringify!($name), kind);
                    let _ = writeln!(s, "dbwarden_{} {}", stringify!($name), self.$name.load(Relaxed));
                )*
                s
            }
        }
    };
}

metrics! {
    sessions_total: "Agent connections accepted with a kernel record.",
    sessions_active: "Agent sessions in progress.",
    connections_refused_total: "Connections refused because no kernel record attested them.",
    statements_allowed_total: "Statements forwarded by policy.",
    statements_denied_total: "Statements refused by policy.",
    statements_held_total: "Statements held for human approval.",
    approvals_approved_total: "Held statements approved by a human.",
    approvals_denied_total: "Held statements denied by a human.",
    approvals_timed_out_total: "Held statements nobody decided in time.",
    approvals_cancelled_total: "Held statements cancelled (client cancel, disconnect, shutdown).",
    approval_wait_ms_total: "Total time statements waited for a decision, in milliseconds.",
    masking_failures_total: "Results withheld because a value could not be masked.",
    catalog_failures_total: "Source-column look-ups that failed (only column-name rules applied).",
    policy_reloads_total: "Successful policy reloads.",
    policy_reload_failures_total: "Rejected policy reloads (the previous policy stayed).",
    bytes_client_to_server_total: "Bytes relayed from agents to databases.",
    bytes_server_to_client_total: "Bytes relayed from databases to agents.",
}

impl Metrics {
    /// Adds one.
    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Relaxed);
    }
}

/// Serves `GET /metrics` (any path) on `addr` until shutdown.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    info!(%addr, "metrics listening");
    tokio::spawn(async move {
        loop {
            let (mut s, _) = tokio::select! {
                _ = shutdown.cancelled() => return,
                a = listener.accept() => match a {
                    Ok(a) => a,
                    Err(e) => {
                        warn!(error = %e, "metrics accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let m = metrics.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ =
                    tokio::time::timeout(std::time::Duration::from_secs(2), s.read(&mut buf)).await;
                let body = m.render();
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        Metrics::inc(&m.statements_denied_total);
        let t = m.render();
        assert!(t.contains(
            "# TYPE dbwarden_statements_denied_total counter\ndbwarden_statements_denied_total 1\n"
        ));
        assert!(t.contains("# TYPE dbwarden_sessions_active gauge"));
    }
}
