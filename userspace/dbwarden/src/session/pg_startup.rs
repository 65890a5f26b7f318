//! The PostgreSQL startup packet, judged before it reaches the server: unsafe client
//! encodings and replication connections are refused, the session learns its database and
//! user, its recording starts (no recording, no session), and the settings the packet carries
//! go to the policy ([`crate::startup_policy`]).

use dbwarden_wire_pg::ErrorResponse;
use tracing::{debug, warn};

use super::pg::{close_with, ClientWriter, SharedRecording};
use super::recording::{self, SessionRecording};
use crate::{pipeline::SessionInfo, server::Shared};

/// Handles the startup packet's `params`.
///
/// # Errors
/// Why the session is refused (the client already got a FATAL error).
pub(super) async fn on_startup(
    params: &[(String, String)],
    shared: &Shared,
    info: &tokio::sync::RwLock<SessionInfo>,
    rec: &SharedRecording,
    cw: &ClientWriter,
    client_addr: &str,
) -> Result<(), String> {
    let replication = params.iter().any(|(k, v)| {
        k == "replication"
            && !matches!(
                v.to_ascii_lowercase().as_str(),
                "false" | "off" | "no" | "0"
            )
    });
    let unsafe_encoding = dbwarden_wire_pg::startup_options::startup_settings(params)
        .into_iter()
        .find(|(k, v)| {
            k == "client_encoding" && !shared.pipeline.engine.policy().allows_client_encoding(v)
        });
    if let Some((_, enc)) = unsafe_encoding {
        warn!(encoding = %crate::identity::sanitize(&enc), "refusing an unsafe client encoding at startup");
        let e = ErrorResponse::new("FATAL", "22023", dbwarden_policy::encoding::refusal(&enc));
        close_with(cw, e).await;
        return Err("unsafe client encoding refused at startup".into());
    }
    if replication {
        // Streaming replication (CopyBoth) would move whole databases past policy.
        warn!("refusing a replication connection");
        let e = ErrorResponse::new(
            "FATAL",
            "42501",
            "dbwarden: replication connections are not allowed for agents",
        );
        close_with(cw, e).await;
        return Err("replication connection refused".into());
    }
    let mut i = info.write().await;
    for (k, v) in params {
        match k.as_str() {
            "database" => i.database = Some(crate::identity::sanitize(v)),
            "user" => i.db_user = Some(crate::identity::sanitize(v)),
            _ => {}
        }
    }
    if i.database.is_none() {
        i.database = i.db_user.clone();
    }
    debug!(database = ?i.database, db_user = ?i.db_user, "startup");
    if let Some(store) = &shared.store {
        let started = recording::header(&i, client_addr, &shared.pipeline.policy_hash())
            .and_then(|h| {
                store
                    .create(h, shared.pipeline.writer_config())
                    .map_err(|e| e.to_string())
            })
            .and_then(|w| {
                dbwarden_record::Recorder::start(w, shared.pipeline.recorder_config())
                    .map_err(|e| e.to_string())
            });
        match started {
            Ok(r) => {
                let _ = rec.set(SessionRecording::new(
                    r,
                    shared.pipeline.masker(),
                    shared.pipeline.row_cap,
                ));
            }
            Err(e) => {
                // Fail closed: no recording, no session.
                warn!(error = %e, "cannot record this session; refusing it");
                let fatal = ErrorResponse::new(
                    "FATAL",
                    "53000",
                    "dbwarden: the session cannot be recorded, so it is refused",
                );
                close_with(cw, fatal).await;
                return Err(format!("recording unavailable: {e}"));
            }
        }
    }
    let session = i.clone();
    drop(i);
    if let Err(refusal) = crate::startup_policy::judge_startup(&shared.pipeline, params, &session) {
        warn!(reason = %refusal.message, "refusing the startup packet");
        if let (Some(r), Some((sql, v))) = (rec.get(), &refusal.judged) {
            let tags = &v.tags;
            r.decided(
                0,
                sql,
                dbwarden_record::Action::Deny,
                Some(&v.rule),
                Some(&refusal.message),
                tags,
            );
        }
        close_with(cw, ErrorResponse::new("FATAL", "42501", refusal.message)).await;
        return Err("startup parameters refused by policy".into());
    }
    Ok(())
}
