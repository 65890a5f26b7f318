//! The statement pipeline: what happens to every statement an agent sends (decide) and to every
//! server message on the way back (mask, record). Protocol sessions call it; it knows no sockets.

use std::sync::Arc;

use dbwarden_wire_pg::proxy::{PendingStatement, Verdict};

use crate::identity::ConnIdentity;

/// Per-session facts the pipeline decides on.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    /// Daemon-wide session number.
    pub id: u64,
    /// Kernel-attested identity.
    pub ident: Arc<ConnIdentity>,
    /// Database name from the startup packet.
    pub database: Option<String>,
    /// Database user from the startup packet.
    pub db_user: Option<String>,
}

/// The pipeline shared by all sessions.
#[derive(Default)]
pub struct Pipeline {}

impl Pipeline {
    /// Decides a PostgreSQL statement.
    pub fn decide_pg(&self, _stmt: &PendingStatement, _session: &SessionInfo) -> Verdict {
        Verdict::Allow
    }
}
