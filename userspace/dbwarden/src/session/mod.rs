//! One task per agent connection: check that the connection speaks what its destination is
//! configured for ([`sniff`]), connect upstream to the original destination ([`upstream`]),
//! then run the protocol-specific session (PostgreSQL: [`pg`]; others: the byte [`relay`]).
//!
//! This is the seam where the statement pipeline plugs in: a protocol session decodes client
//! messages, asks policy, and passes server messages through masking and recording.

pub mod as_agent;
pub mod cancel;
pub mod pg;
mod pg_startup;
pub mod recording;
pub mod relay;
pub mod sniff;
pub mod stream;
pub mod upstream;

use std::{sync::Arc, time::Duration, time::Instant};

use bytes::BytesMut;
use tokio::io::AsyncReadExt;
use tracing::{info, warn, Instrument};

use self::{sniff::Looks, stream::Stream};

use crate::{
    destination::Destination,
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

/// How long a client or server may take to send its first packet before the protocol check
/// gives up on the connection.
const FIRST_PACKET_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs a session to completion and logs its summary. `upstream` is the database connection
/// when it is already open (a Unix socket, connected as the agent by the resolver).
pub async fn run(
    client: Stream,
    ident: ConnIdentity,
    id: u64,
    shared: Arc<Shared>,
    upstream: Option<Stream>,
) {
    let peer = client.peer_label();
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
            privileged = ident.privileges.privileged,
            uid0 = ident.privileges.uid0,
            capabilities = %ident.privileges.capability_list(),
            privileges_verified = ident.privileges.verified,
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
        client.set_nodelay();
        let result = match open(client, &ident, &shared, upstream).await {
            Err(why) => {
                crate::metrics::Metrics::inc(&m.connections_refused_total);
                warn!(reason = %why, "connection refused");
                info!(
                    bytes_client_to_server = 0u64,
                    bytes_server_to_client = 0u64,
                    duration_ms = started.elapsed().as_millis() as u64,
                    reason = %why,
                    "session ended"
                );
                return;
            }
            Ok(Opened {
                client,
                server,
                proto,
                from_client,
                from_server,
            }) => {
                let mut ident = ident;
                ident.protocol = proto;
                let dst = ident.original_dst.clone();
                match proto {
                    ProtocolName::Postgres => {
                        let info = SessionInfo {
                            id,
                            policy_ident: Arc::new(crate::pipeline::policy_identity(&ident)),
                            ident: Arc::new(ident),
                            database: None,
                            db_user: None,
                        };
                        pg::run(client, server, dst, info, shared.clone(), from_client).await
                    }
                    ProtocolName::Mysql | ProtocolName::Unknown => {
                        relay::run(client, server, from_client, from_server, &shared.shutdown).await
                    }
                }
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

/// A connection whose protocol is settled, with the bytes the check read from each side.
struct Opened {
    client: Stream,
    server: Stream,
    proto: ProtocolName,
    from_client: BytesMut,
    from_server: BytesMut,
}

/// Checks the protocol and connects upstream. A PostgreSQL destination must get a PostgreSQL
/// first packet from the client (checked before connecting upstream); a MySQL destination
/// must greet like MySQL; on a plain TCP port a PostgreSQL client gets a PostgreSQL session and
/// anything else is relayed.
///
/// # Errors
/// Why the connection is refused (for the log).
async fn open(
    mut client: Stream,
    ident: &ConnIdentity,
    shared: &Shared,
    upstream: Option<Stream>,
) -> Result<Opened, String> {
    let mut upstream = upstream;
    let mut connect = |dst| {
        let ready = upstream.take();
        async move {
            match ready {
                Some(s) => Ok(s),
                None => upstream::connect(dst, shared.settings.connect_timeout)
                    .await
                    .map_err(|e| format!("upstream {dst} connect failed: {e}")),
            }
        }
    };
    let mut from_client = BytesMut::new();
    let mut from_server = BytesMut::new();
    let dst = &ident.original_dst;
    let (server, proto) = match ident.protocol {
        ProtocolName::Postgres => {
            if let Err(e) = sniff::read_until_decided(
                &mut client,
                &mut from_client,
                sniff::client_is_postgres,
                FIRST_PACKET_TIMEOUT,
                "client",
            )
            .await
            {
                // The client gets PostgreSQL's own kind of answer (FATAL 08P01), as the server
                // would give it for a malformed startup packet.
                let mut b = BytesMut::new();
                let msg = format!("dbwarden: malformed or non-PostgreSQL startup packet: {e}");
                if dbwarden_wire_pg::ErrorResponse::protocol_violation(msg)
                    .encode(&mut b)
                    .is_ok()
                {
                    use tokio::io::AsyncWriteExt;
                    let _ = client.write_all(&b).await;
                    let _ = client.shutdown().await;
                }
                return Err(format!(
                    "malformed or non-PostgreSQL first packet on a PostgreSQL destination: {e}"
                ));
            }
            (connect(dst).await?, ProtocolName::Postgres)
        }
        ProtocolName::Mysql => {
            let mut server = connect(dst).await?;
            sniff::read_until_decided(
                &mut server,
                &mut from_server,
                sniff::server_is_mysql,
                FIRST_PACKET_TIMEOUT,
                "server",
            )
            .await
            .map_err(|e| format!("not MySQL on a MySQL destination: {e}"))?;
            (server, ProtocolName::Mysql)
        }
        // A Unix socket the resolver found to be no database: relayed as it is.
        ProtocolName::Unknown if matches!(dst, Destination::Unix(_)) => {
            (connect(dst).await?, ProtocolName::Unknown)
        }
        ProtocolName::Unknown => {
            let mut server = connect(dst).await?;
            let proto =
                settle_plain_port(&mut client, &mut server, &mut from_client, &mut from_server)
                    .await?;
            (server, proto)
        }
    };
    server.set_nodelay();
    Ok(Opened {
        client,
        server,
        proto,
        from_client,
        from_server,
    })
}

/// A plain TCP port: whoever speaks first decides. Nothing is relayed until the protocol is
/// settled: a client that sends part of a packet and waits, or nobody speaking at all, must not
/// turn into a raw relay to a server that might be PostgreSQL.
async fn settle_plain_port(
    client: &mut Stream,
    server: &mut Stream,
    from_client: &mut BytesMut,
    from_server: &mut BytesMut,
) -> Result<ProtocolName, String> {
    let first = tokio::time::timeout(FIRST_PACKET_TIMEOUT, async {
        tokio::select! {
            r = client.read_buf(from_client) => r.map(|n| (true, n)),
            r = server.read_buf(from_server) => r.map(|n| (false, n)),
        }
    })
    .await;
    match first {
        Ok(Ok((true, n))) if n > 0 => {
            match sniff::read_until_decided(
                client,
                from_client,
                sniff::client_is_postgres,
                FIRST_PACKET_TIMEOUT,
                "client",
            )
            .await
            {
                Ok(()) => {
                    info!("PostgreSQL client on a plain TCP port: handled as a PostgreSQL session");
                    Ok(ProtocolName::Postgres)
                }
                Err(sniff::Undecided::Not(_)) => Ok(ProtocolName::Unknown),
                Err(e @ sniff::Undecided::Incomplete(_)) => {
                    Err(format!("protocol not settled on a plain TCP port: {e}"))
                }
            }
        }
        Ok(Ok((false, n))) if n > 0 => {
            if sniff::server_is_mysql(from_server) == Looks::Yes {
                info!("MySQL server on a plain TCP port: relayed as MySQL");
                Ok(ProtocolName::Mysql)
            } else {
                Ok(ProtocolName::Unknown)
            }
        }
        Ok(Ok(_)) => Err("a peer closed before anything was said".into()),
        Ok(Err(e)) => Err(format!("first read: {e}")),
        Err(_) => Err(format!(
            "nobody spoke within {}s on a plain TCP port",
            FIRST_PACKET_TIMEOUT.as_secs()
        )),
    }
}
