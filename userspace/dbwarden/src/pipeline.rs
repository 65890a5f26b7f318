//! The statement pipeline: what happens to every statement an agent sends (decide) and to every
//! server message on the way back (mask, record). Protocol sessions call it; it knows no sockets.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::{Context, Result};
use dbwarden_mask::{MaskConfig, Masker};
use dbwarden_wire_pg::proxy::{PendingStatement, Verdict};

use crate::identity::ConnIdentity;

/// The embedded default policy (PCI DSS), also the source of the default masking section.
pub const EMBEDDED_POLICY: &str = include_str!("../../../policies/pci-dss.toml");

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

/// The pipeline shared by all sessions.
pub struct Pipeline {
    /// Masker compiled from the policy's `[masking]` section.
    pub masker: Arc<Masker>,
    /// Where the host secrets live.
    pub state_dir: PathBuf,
    /// SHA-256 (hex) of the policy in force, recorded in every session header.
    pub policy_hash: String,
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
        let cfg = MaskConfig::from_policy_toml(&policy.text, &policy.origin).map_err(anyhow::Error::msg)?;
        let masker = Masker::new(&cfg, hmac_key).map_err(anyhow::Error::msg)?;
        let policy_hash = {
            use sha2::Digest;
            let d = sha2::Sha256::digest(policy.text.as_bytes());
            d.iter().map(|b| format!("{b:02x}")).collect()
        };
        Ok(Pipeline {
            masker: Arc::new(masker),
            state_dir,
            policy_hash,
            row_cap: rec.max_rows,
            byte_cap: rec.max_bytes,
            drop_when_full: rec.drop_when_full,
        })
    }

    /// Writer settings for new session files.
    pub fn writer_config(&self) -> dbwarden_record::WriterConfig {
        dbwarden_record::WriterConfig {
            row_cap: dbwarden_record::RowCap { max_rows: self.row_cap, max_bytes: self.byte_cap },
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

    /// Decides a PostgreSQL statement.
    pub fn decide_pg(&self, _stmt: &PendingStatement, _session: &SessionInfo) -> Verdict {
        Verdict::Allow
    }
}
