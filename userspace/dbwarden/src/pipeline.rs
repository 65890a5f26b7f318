//! The statement pipeline: what happens to every statement an agent sends (decide) and to every
//! server message on the way back (mask, record). Protocol sessions call it; it knows no sockets.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::{Context, Result};
use dbwarden_mask::{MaskConfig, Masker};
use dbwarden_policy::{Action, Dialect, Engine, Policy, Protocol, Target};
use dbwarden_wire_pg::{
    proxy::{PendingStatement, StatementKind, Verdict},
    ErrorResponse,
};
use tracing::{debug, info};

use crate::identity::ConnIdentity;

/// The embedded default policy (PCI DSS), also the source of the default masking section.
pub const EMBEDDED_POLICY: &str = dbwarden_policy::EMBEDDED_DEFAULT_SRC;

/// Per-session facts the pipeline decides on.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    /// Daemon-wide session number.
    pub id: u64,
    /// Kernel-attested identity.
    pub ident: Arc<ConnIdentity>,
    /// The same identity as the policy sees it (built once per session).
    pub policy_ident: Arc<dbwarden_policy::Identity>,
    /// Database name from the startup packet.
    pub database: Option<String>,
    /// Database user from the startup packet.
    pub db_user: Option<String>,
}

/// A policy document: its text and where it came from.
#[derive(Debug, Clone)]
pub struct PolicySource {
    /// The TOML text.
    pub text: String,
    /// File path, or `<embedded pci-dss.toml>`.
    pub origin: String,
}

impl PolicySource {
    /// Reads the configured file, or the embedded default. A missing or unreadable file is an
    /// error, never a silent fallback.
    pub fn load(path: Option<&Path>) -> Result<PolicySource> {
        match path {
            None => Ok(PolicySource {
                text: EMBEDDED_POLICY.to_string(),
                origin: "<embedded pci-dss.toml>".into(),
            }),
            Some(p) => Ok(PolicySource {
                text: std::fs::read_to_string(p)
                    .with_context(|| format!("reading policy file {}", p.display()))?,
                origin: p.display().to_string(),
            }),
        }
    }
}

/// Validates a policy document: rules and masking section.
pub fn validate(src: &PolicySource) -> Result<()> {
    Policy::parse(&src.text, &src.origin).map_err(|e| anyhow::anyhow!("{e}"))?;
    let cfg = MaskConfig::from_policy_toml(&src.text, &src.origin).map_err(anyhow::Error::msg)?;
    Masker::new(&cfg, [0u8; 32]).map_err(anyhow::Error::msg)?;
    Ok(())
}

/// Loads (or creates, 0600) the host secret used for keyed-hash masking.
pub fn load_hmac_key(path: &Path) -> Result<[u8; 32]> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::read(path) {
        Ok(b) if b.len() == 32 => {
            let mut k = [0u8; 32];
            k.copy_from_slice(&b);
            Ok(k)
        }
        Ok(_) => anyhow::bail!("{}: expected exactly 32 bytes", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(d) = path.parent() {
                std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            }
            let mut k = [0u8; 32];
            rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut k);
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .with_context(|| format!("creating {}", path.display()))?;
            f.write_all(&k)?;
            Ok(k)
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// What the pipeline decided about one statement, for the proxy and the recording.
#[derive(Debug, Clone)]
pub struct Decision {
    /// The policy's verdict (rule, action, message, tags, per-statement detail).
    pub verdict: Arc<dbwarden_policy::Verdict>,
    /// What the wire state machine must do.
    pub wire: Verdict,
}

/// Verdicts a session remembers, by exact statement text.
const MEMO_CAPACITY: usize = 256;
/// Longer statements are judged every time rather than kept in memory (a bulk INSERT of
/// megabytes is rarely repeated verbatim).
const MEMO_MAX_TEXT: usize = 4096;

/// A session's memo of decisions by exact statement text. Within one session the identity
/// (`privileged` included: it is read once, at accept) and the target never change, so the same
/// text under the same policy always gets the same verdict, and no verdict reaches another
/// session's identity. Agents repeat their statements, and a repeat then costs a hash lookup
/// instead of normalisation and rule matching. Tied to the policy in force: a reload empties it.
#[derive(Default)]
pub struct VerdictMemo {
    policy: Option<Arc<Policy>>,
    decisions: std::collections::HashMap<Box<str>, Decision>,
}

impl VerdictMemo {
    fn get(&mut self, policy: &Arc<Policy>, sql: &str) -> Option<Decision> {
        if !self.policy.as_ref().is_some_and(|p| Arc::ptr_eq(p, policy)) {
            self.decisions.clear();
            self.policy = Some(Arc::clone(policy));
            return None;
        }
        self.decisions.get(sql).cloned()
    }

    fn put(&mut self, sql: &str, d: &Decision) {
        if sql.len() > MEMO_MAX_TEXT {
            return;
        }
        if self.decisions.len() >= MEMO_CAPACITY {
            self.decisions.clear();
        }
        self.decisions.insert(sql.into(), d.clone());
    }
}

/// Converts the kernel identity into the policy's view of it.
pub fn policy_identity(i: &ConnIdentity) -> dbwarden_policy::Identity {
    dbwarden_policy::Identity {
        pid: i.pid,
        uid: i.uid,
        gid: i.gid,
        user: i.user.clone(),
        cgroup: i.cgroup.clone(),
        exe: i.exe.clone(),
        comm: i.comm.clone(),
        labels: i.labels.clone(),
        privileged: i.privileges.privileged,
    }
}

/// The pipeline shared by all sessions.
pub struct Pipeline {
    /// Policy engine (swapped on reload) with its analysis cache.
    pub engine: Engine,
    /// Masker compiled from the policy's `[masking]` section (swapped on reload).
    masker: std::sync::RwLock<Arc<Masker>>,
    /// The host secret for keyed-hash masking (kept for reloads).
    hmac_key: [u8; 32],
    /// Where the host secrets live.
    pub state_dir: PathBuf,
    /// Result rows kept per statement in recordings.
    pub row_cap: u64,
    /// Result bytes kept per statement in recordings.
    pub byte_cap: u64,
    /// Drop (counted) instead of blocking when the recorder falls behind.
    pub drop_when_full: bool,
}

impl Pipeline {
    /// Builds the pipeline from a policy document (validated: errors name file:line:column).
    pub fn new(
        policy: &PolicySource,
        hmac_key: [u8; 32],
        state_dir: PathBuf,
        rec: &crate::config::Recording,
    ) -> Result<Pipeline> {
        let compiled =
            Policy::parse(&policy.text, &policy.origin).map_err(|e| anyhow::anyhow!("{e}"))?;
        let cfg = MaskConfig::from_policy_toml(&policy.text, &policy.origin)
            .map_err(anyhow::Error::msg)?;
        let masker = Masker::new(&cfg, hmac_key).map_err(anyhow::Error::msg)?;
        info!(policy = compiled.name(), origin = %policy.origin, hash = %compiled.hash(), "policy loaded");
        Ok(Pipeline {
            engine: Engine::new(compiled),
            masker: std::sync::RwLock::new(Arc::new(masker)),
            hmac_key,
            state_dir,
            row_cap: rec.max_rows,
            byte_cap: rec.max_bytes,
            drop_when_full: rec.drop_when_full,
        })
    }

    /// The masker in force.
    pub fn masker(&self) -> Arc<Masker> {
        self.masker
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// SHA-256 (hex) of the policy in force, recorded in every session header.
    pub fn policy_hash(&self) -> String {
        self.engine.policy().hash().to_string()
    }

    /// Validates a new policy document (rules and masking) and, only if all of it is valid,
    /// puts it in force. On error the old policy stays; the error names file:line:column.
    pub fn reload(&self, src: &PolicySource) -> Result<String> {
        let compiled = Policy::parse(&src.text, &src.origin).map_err(|e| anyhow::anyhow!("{e}"))?;
        let cfg =
            MaskConfig::from_policy_toml(&src.text, &src.origin).map_err(anyhow::Error::msg)?;
        let masker = Masker::new(&cfg, self.hmac_key).map_err(anyhow::Error::msg)?;
        let hash = compiled.hash().to_string();
        self.engine.replace(compiled);
        *self.masker.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(masker);
        Ok(hash)
    }

    /// Writer settings for new session files.
    pub fn writer_config(&self) -> dbwarden_record::WriterConfig {
        dbwarden_record::WriterConfig {
            row_cap: dbwarden_record::RowCap {
                max_rows: self.row_cap,
                max_bytes: self.byte_cap,
            },
            // Level 1: recording competes with the agents' queries for the same cores.
            zstd_level: 1,
            ..Default::default()
        }
    }

    /// Recorder queue settings.
    pub fn recorder_config(&self) -> dbwarden_record::RecorderConfig {
        dbwarden_record::RecorderConfig {
            on_full: if self.drop_when_full {
                dbwarden_record::OnFull::Drop
            } else {
                dbwarden_record::OnFull::Block
            },
            ..Default::default()
        }
    }

    /// Decides a PostgreSQL statement (simple query, Parse or fast-path call), remembering the
    /// decision in the session's `memo`.
    pub fn decide_pg(
        &self,
        stmt: &PendingStatement,
        session: &SessionInfo,
        memo: &mut VerdictMemo,
    ) -> Decision {
        let sql = match stmt.kind() {
            StatementKind::Query { sql } | StatementKind::Parse { sql, .. } => Some(sql.as_ref()),
            StatementKind::FunctionCall(_) => None,
        };
        let policy = self.engine.policy();
        let remembered = sql.and_then(|q| memo.get(&policy, q));
        let d = match remembered {
            Some(d) => d,
            None => {
                let d = self.judge_pg(stmt, session);
                if let Some(q) = sql {
                    memo.put(q, &d);
                }
                d
            }
        };
        Self::log_verdict(&d.verdict, session);
        d
    }

    /// The PostgreSQL target of a session, as the policy sees it.
    pub(crate) fn pg_target(session: &SessionInfo) -> Target {
        Target {
            addr: Some(session.ident.original_dst.to_string()),
            protocol: Protocol::Postgres,
            database: session.database.clone(),
            user: session.db_user.clone(),
        }
    }

    fn judge_pg(&self, stmt: &PendingStatement, session: &SessionInfo) -> Decision {
        let target = Self::pg_target(session);
        let ident = &*session.policy_ident;
        let verdict = match stmt.kind() {
            StatementKind::Query { sql } | StatementKind::Parse { sql, .. } => {
                self.engine.decide(sql, Dialect::Postgres, ident, &target)
            }
            // A fast-path call names a function by OID: it can run anything (lo_export, ...)
            // and no SQL text exists to judge. Judged as an opaque call.
            StatementKind::FunctionCall(_) => self.engine.decide(
                "SELECT dbwarden_fastpath_function_call()",
                Dialect::Postgres,
                ident,
                &target,
            ),
        };
        let fastpath = matches!(stmt.kind(), StatementKind::FunctionCall(_));
        let wire = match verdict.action {
            Action::Allow if !fastpath => Verdict::Allow,
            Action::Allow | Action::Deny => Verdict::Refuse(ErrorResponse::insufficient_privilege(
                if fastpath && verdict.action == Action::Allow {
                    "dbwarden: fast-path function calls are not allowed for agents".to_string()
                } else {
                    verdict.message.clone()
                },
                None,
                Some("the statement was refused by dbwarden's policy; nothing was executed"),
            )),
            Action::RequireApproval { .. } => {
                Verdict::Refuse(ErrorResponse::insufficient_privilege(
                    format!("{} (approval required)", verdict.message),
                    None,
                    Some("this statement needs a human's approval"),
                ))
            }
        };
        Decision {
            verdict: Arc::new(verdict),
            wire,
        }
    }

    pub(crate) fn log_verdict(verdict: &dbwarden_policy::Verdict, session: &SessionInfo) {
        let kinds = || {
            verdict
                .statements
                .iter()
                .map(|s| s.kind.as_str())
                .collect::<Vec<_>>()
        };
        match verdict.action {
            Action::Allow => {
                if tracing::enabled!(tracing::Level::DEBUG) {
                    debug!(session = session.id, rule = %verdict.rule, kinds = ?kinds(), cached = verdict.cached, "policy: allow");
                }
            }
            _ => info!(
                session = session.id,
                rule = %verdict.rule,
                action = verdict.action.name(),
                kinds = ?kinds(),
                verdict_message = %verdict.message,
                "policy decision"
            ),
        }
    }
}

/// What a statement that changes the client encoding needs from the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodingChange {
    /// It changes nothing.
    None,
    /// The session must stop decoding client messages until the server has answered it
    /// (and reported the new encoding): what follows is in the new encoding.
    Barrier,
}

/// Applies the client-encoding rules the policy cannot see (they depend on the session): a
/// statement pipelined behind an encoding change would be decoded the old way while the
/// server reads it the new way, so
/// - in a session whose encoding's characters can end in an ASCII byte (one the policy
///   allowed at startup) the encoding cannot change at all;
/// - elsewhere a change is allowed by simple query only (the session then waits for the
///   server before reading on: [`EncodingChange::Barrier`]); a prepared one is refused, since
///   it takes effect at an Execute that may be pipelined with more statements.
pub fn encoding_guard(
    d: Decision,
    text: dbwarden_wire_pg::TextEncoding,
    prepared: bool,
) -> (Decision, EncodingChange) {
    if !d
        .verdict
        .statements
        .iter()
        .any(|s| s.changes_client_encoding)
    {
        return (d, EncodingChange::None);
    }
    let message = if text.has_ascii_trail_bytes() {
        format!(
            "dbwarden: this session's client encoding ({}) cannot be changed mid-session; connect with the encoding you need",
            text.name()
        )
    } else if prepared {
        "dbwarden: the client encoding can be changed by a simple query only (SET client_encoding ...), so dbwarden can follow it".to_owned()
    } else {
        return (d, EncodingChange::Barrier);
    };
    let mut v = (*d.verdict).clone();
    v.action = Action::Deny;
    v.rule = "client_encoding".to_owned();
    v.message.clone_from(&message);
    let d = Decision {
        verdict: Arc::new(v),
        wire: Verdict::Refuse(ErrorResponse::insufficient_privilege(message, None, None)),
    };
    (d, EncodingChange::None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(rule: &str) -> Decision {
        Decision {
            verdict: Arc::new(dbwarden_policy::Verdict {
                action: Action::Allow,
                rule: rule.into(),
                message: String::new(),
                tags: Vec::new(),
                statements: Vec::new(),
                cached: false,
            }),
            wire: Verdict::Allow,
        }
    }

    #[test]
    fn verdict_memo_is_per_text_and_forgets_on_a_policy_change() {
        let src = "[policy]\nname = \"p\"\ndefault = \"allow\"\n";
        let p1 = Arc::new(Policy::parse(src, "p1").unwrap());
        let p2 = Arc::new(Policy::parse(src, "p2").unwrap());
        let mut memo = VerdictMemo::default();
        assert!(memo.get(&p1, "select 1").is_none());
        memo.put("select 1", &decision("r1"));
        assert_eq!(memo.get(&p1, "select 1").unwrap().verdict.rule, "r1");
        // Exact text only: another statement is judged afresh.
        assert!(memo.get(&p1, "select 2").is_none());
        assert!(memo.get(&p1, "SELECT 1").is_none());
        // A reloaded policy (another Arc, even with the same text) empties the memo.
        assert!(memo.get(&p2, "select 1").is_none());
        assert!(memo.get(&p1, "select 1").is_none());
        // Long texts are not kept.
        let long = "x".repeat(MEMO_MAX_TEXT + 1);
        memo.put(&long, &decision("r"));
        assert!(memo.get(&p1, &long).is_none());
        // Bounded.
        for i in 0..(MEMO_CAPACITY * 2) {
            memo.put(&format!("select {i}"), &decision("r"));
        }
        assert!(memo.decisions.len() <= MEMO_CAPACITY);
    }

    #[test]
    fn embedded_policy_and_its_masking_section_are_valid() {
        let src = PolicySource::load(None).unwrap();
        validate(&src).unwrap();
        let cfg = MaskConfig::from_policy_toml(&src.text, &src.origin).unwrap();
        let m = Masker::new(&cfg, [1u8; 32]).unwrap();
        assert!(m.column_rule(None, "cvv").is_some());
        assert!(m.column_rule(None, "card_number").is_some());
    }

    #[test]
    fn invalid_policy_is_reported_with_location() {
        let src = PolicySource {
            text: "[policy]\nname = \"x\"\nbogus = 1\n".into(),
            origin: "p.toml".into(),
        };
        let e = format!("{:#}", validate(&src).unwrap_err());
        assert!(e.starts_with("p.toml:3:"), "{e}");
    }

    #[test]
    fn encoding_changes_need_a_barrier_or_are_refused() {
        let mut d = decision("default");
        Arc::make_mut(&mut d.verdict)
            .statements
            .push(dbwarden_policy::StatementVerdict {
                index: 0,
                changes_client_encoding: true,
                kind: "set".into(),
                tables: Vec::new(),
                action: Action::Allow,
                rule: "default".into(),
                reason: String::new(),
                tags: Vec::new(),
            });
        let utf8 = dbwarden_wire_pg::TextEncoding::UTF8;
        let sjis = dbwarden_wire_pg::TextEncoding::from_pg_name("SJIS");
        let (g, c) = encoding_guard(d.clone(), utf8, false);
        assert!(matches!(g.wire, Verdict::Allow) && c == EncodingChange::Barrier);
        for (text, prepared) in [(utf8, true), (sjis, false), (sjis, true)] {
            let (g, c) = encoding_guard(d.clone(), text, prepared);
            assert!(matches!(g.wire, Verdict::Refuse(_)), "{text:?} {prepared}");
            assert_eq!(c, EncodingChange::None);
            assert_eq!(g.verdict.rule, "client_encoding");
        }
        let (g, c) = encoding_guard(decision("default"), sjis, false);
        assert!(matches!(g.wire, Verdict::Allow) && c == EncodingChange::None);
    }
}
