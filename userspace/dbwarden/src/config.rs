//! Configuration: the TOML file (`/etc/dbwarden/dbwarden.toml` if present, or `--config FILE`),
//! overridden by command-line flags, validated into [`Settings`] before anything is bound or
//! attached.
//!
//! Unknown keys are errors; errors name the file and the toml crate's line and column.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use dbwarden_common::Proto;
use serde::Deserialize;

use crate::{
    cgroup::Cgroup,
    identity::DEFAULT_ENV_LABELS,
    intercept::{unix::UnixMode, Network},
};

/// Default config file, read when it exists and no `--config` is given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/dbwarden/dbwarden.toml";
/// Default daemon listener.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7432";
/// Default controlled cgroup.
pub const DEFAULT_CGROUP: &str = "dbwarden-agents";

/// The config file, as written. Every field is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Daemon listener (IPv4 loopback address and port).
    pub listen: Option<String>,
    /// Also listen on [::1] with the same port for IPv6 agents (default true).
    pub listen_v6: Option<bool>,
    /// Controlled cgroups, relative to the cgroup2 mount.
    pub cgroups: Option<Vec<String>>,
    /// Policy file; the embedded PCI DSS policy when absent.
    pub policy: Option<PathBuf>,
    /// Where session recordings go.
    pub sessions_dir: Option<PathBuf>,
    /// Runtime directory (control socket).
    pub runtime_dir: Option<PathBuf>,
    /// bpffs directory for pins.
    pub bpffs_dir: Option<PathBuf>,
    /// What is intercepted.
    pub intercept: Option<InterceptSection>,
    /// Identity enrichment.
    pub identity: Option<IdentitySection>,
    /// Upstream connection settings.
    pub upstream: Option<UpstreamSection>,
    /// Session recording.
    pub recording: Option<RecordingSection>,
    /// Just-in-time approvals.
    pub approvals: Option<ApprovalsSection>,
    /// Loopback address for Prometheus metrics (off unless set).
    pub metrics_listen: Option<String>,
}

/// `[approvals]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalsSection {
    /// Loopback address for the HTTP API (token auth). Off unless set.
    pub http_listen: Option<String>,
    /// Group whose members may approve over the control socket (besides root).
    pub group: Option<String>,
    /// Webhook receivers notified on requests and decisions.
    pub webhooks: Option<Vec<WebhookEntry>>,
    /// Let an approver with the uid of the session that asked approve it (default false:
    /// an agent running as root cannot approve its own statements as root).
    pub allow_self_approval: Option<bool>,
}

/// One `[[approvals.webhooks]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookEntry {
    /// `http://host:port/path`.
    pub url: String,
    /// "generic" (default) or "slack".
    pub format: Option<String>,
}

/// `[recording]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordingSection {
    /// Record sessions (default true). Turning it off loses the audit trail.
    pub enabled: Option<bool>,
    /// When the recorder falls behind: "block" the session (default) or "drop" with a counted gap.
    pub on_full: Option<String>,
    /// Result rows kept per statement.
    pub max_rows: Option<u64>,
    /// Result bytes kept per statement.
    pub max_bytes: Option<u64>,
    /// Host signing key (Ed25519). Default: host_ed25519.key next to the sessions directory.
    pub key_file: Option<PathBuf>,
}

/// `[intercept]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterceptSection {
    /// Ports speaking PostgreSQL.
    pub postgres_ports: Option<Vec<u16>>,
    /// Ports speaking MySQL/MariaDB.
    pub mysql_ports: Option<Vec<u16>>,
    /// Other TCP ports: intercepted, attributed and logged, relayed without protocol awareness
    /// (no policy can be applied to them).
    pub tcp_ports: Option<Vec<u16>>,
    /// Destination networks (CIDR); default any address.
    pub networks: Option<Vec<String>>,
    /// Database Unix sockets: `{ path = "...", protocol = "postgres" | "mysql" }`. Default:
    /// `.s.PGSQL.<port>` for every PostgreSQL port under /var/run/postgresql, /run/postgresql
    /// and /tmp; /run/mysqld/mysqld.sock, /var/run/mysqld/mysqld.sock, /tmp/mysql.sock.
    pub unix_sockets: Option<Vec<UnixSocketEntry>>,
    /// "auto" (default: redirect where the kernel has cgroup/connect_unix, else refuse),
    /// "lsm" (refuse agents' connects to database sockets), or "off" (no Unix interception).
    pub unix_mode: Option<String>,
    /// Treat unlisted sockets named like database sockets (`.s.PGSQL.*`, `mysqld.sock`,
    /// `mysql.sock`) as databases too. Default true.
    pub unlisted_db_sockets: Option<bool>,
}

/// One `[[intercept.unix_sockets]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnixSocketEntry {
    /// Absolute socket path, as clients spell it (at most 107 bytes).
    pub path: PathBuf,
    /// "postgres" or "mysql".
    pub protocol: String,
}

/// `[identity]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentitySection {
    /// Environment variables read from the agent process as labels.
    pub env_labels: Option<Vec<String>>,
}

/// `[upstream]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSection {
    /// Connect timeout in milliseconds.
    pub connect_timeout_ms: Option<u64>,
}

/// Errors while reading or validating configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// File.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// TOML syntax or schema error (the message carries line and column).
    #[error("{path}: {message}")]
    Parse {
        /// File.
        path: PathBuf,
        /// The toml crate's message, with line, column and a snippet.
        message: String,
    },
    /// A value is invalid.
    #[error("{origin}: invalid {key} = {value:?}: {reason}")]
    Invalid {
        /// File path or "command line".
        origin: String,
        /// Setting name (file key / flag).
        key: &'static str,
        /// The bad value.
        value: String,
        /// Why.
        reason: String,
    },
}

impl FileConfig {
    /// Parses a config document. `path` is only used in messages.
    pub fn parse(src: &str, path: &Path) -> Result<FileConfig, ConfigError> {
        toml::from_str(src).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })
    }

    /// Reads `path`; with `explicit == false` a missing file yields the defaults.
    pub fn load(path: &Path, explicit: bool) -> Result<FileConfig, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(s) => Self::parse(&s, path),
            Err(e) if !explicit && e.kind() == std::io::ErrorKind::NotFound => {
                Ok(FileConfig::default())
            }
            Err(source) => Err(ConfigError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }
}

/// Command-line overrides for `dbwarden run`.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--cgroup` (repeatable).
    pub cgroups: Vec<String>,
    /// `--listen`.
    pub listen: Option<String>,
    /// `--policy`.
    pub policy: Option<PathBuf>,
    /// `--sessions-dir`.
    pub sessions_dir: Option<PathBuf>,
    /// `--runtime-dir`.
    pub runtime_dir: Option<PathBuf>,
    /// `--bpffs-dir`.
    pub bpffs_dir: Option<PathBuf>,
    /// `--no-ipv6`.
    pub no_ipv6: bool,
    /// `--unix-mode`.
    pub unix_mode: Option<String>,
}

/// Validated, ready-to-use settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// IPv4 listener.
    pub listen: SocketAddr,
    /// Listen on [::1] too.
    pub listen_v6: bool,
    /// Controlled cgroups.
    pub cgroups: Vec<Cgroup>,
    /// Policy file (None = embedded default).
    pub policy: Option<PathBuf>,
    /// Sessions directory.
    pub sessions_dir: PathBuf,
    /// Runtime directory.
    pub runtime_dir: PathBuf,
    /// bpffs pin directory.
    pub bpffs_dir: PathBuf,
    /// Intercepted ports.
    pub ports: Vec<(u16, Proto)>,
    /// Intercepted networks.
    pub networks: Vec<Network>,
    /// Ports no controlled process may connect to (the approval API and metrics listeners).
    pub deny_ports: Vec<u16>,
    /// Unix-socket interception.
    pub unix: UnixIntercept,
    /// Environment labels to read.
    pub env_labels: Vec<String>,
    /// Upstream connect timeout.
    pub connect_timeout: std::time::Duration,
    /// Recording settings.
    pub recording: Recording,
    /// Approval channels.
    pub approvals: Approvals,
    /// Metrics listener (loopback), if enabled.
    pub metrics_listen: Option<SocketAddr>,
}

/// Validated Unix-socket interception settings.
#[derive(Debug, Clone)]
pub struct UnixIntercept {
    /// Requested mode.
    pub mode: UnixMode,
    /// Database sockets and their protocols.
    pub sockets: Vec<(PathBuf, Proto)>,
    /// Treat unlisted sockets named like database sockets as databases (refuse them in lsm
    /// mode).
    pub deny_db_patterns: bool,
}

/// The default database socket locations for these PostgreSQL ports.
pub fn default_unix_sockets(postgres_ports: &[u16]) -> Vec<(PathBuf, Proto)> {
    let mut v = Vec::new();
    for port in postgres_ports {
        for dir in ["/var/run/postgresql", "/run/postgresql", "/tmp"] {
            v.push((
                PathBuf::from(format!("{dir}/.s.PGSQL.{port}")),
                Proto::Postgres,
            ));
        }
    }
    for p in [
        "/run/mysqld/mysqld.sock",
        "/var/run/mysqld/mysqld.sock",
        "/tmp/mysql.sock",
    ] {
        v.push((PathBuf::from(p), Proto::Mysql));
    }
    v
}

/// Validated approval settings.
#[derive(Debug, Clone)]
pub struct Approvals {
    /// HTTP API listener (loopback), if enabled.
    pub http_listen: Option<SocketAddr>,
    /// Approver group for the control socket.
    pub group: String,
    /// Webhooks: (url, slack?).
    pub webhooks: Vec<(String, bool)>,
    /// Approvers may have the requesting session's uid (`allow_self_approval`).
    pub allow_self_approval: bool,
}

/// Validated recording settings.
#[derive(Debug, Clone)]
pub struct Recording {
    /// Whether sessions are recorded.
    pub enabled: bool,
    /// Drop (with a gap record) instead of blocking when the recorder falls behind.
    pub drop_when_full: bool,
    /// Rows kept per statement.
    pub max_rows: u64,
    /// Bytes kept per statement.
    pub max_bytes: u64,
    /// Host key file.
    pub key_file: PathBuf,
}

impl Settings {
    /// Merges file and flags and validates every value.
    pub fn build(file: FileConfig, origin: &str, o: Overrides) -> Result<Settings, ConfigError> {
        let (listen_s, listen_origin) = match (&o.listen, &file.listen) {
            (Some(l), _) => (l.clone(), "--listen".to_string()),
            (None, Some(l)) => (l.clone(), origin.to_string()),
            (None, None) => (DEFAULT_LISTEN.to_string(), "default".to_string()),
        };
        let listen: SocketAddr = listen_s.parse().map_err(|_| ConfigError::Invalid {
            origin: listen_origin.clone(),
            key: "listen",
            value: listen_s.clone(),
            reason: "expected IPv4 address:port, e.g. 127.0.0.1:7432".into(),
        })?;
        if !listen.ip().is_loopback() || !listen.is_ipv4() || listen.port() == 0 {
            return Err(ConfigError::Invalid {
                origin: listen_origin,
                key: "listen",
                value: listen_s,
                reason: "the daemon listens on an IPv4 loopback address with a fixed port (agents are redirected there)".into(),
            });
        }
        let cgroup_names = if !o.cgroups.is_empty() {
            o.cgroups.clone()
        } else {
            file.cgroups
                .clone()
                .unwrap_or_else(|| vec![DEFAULT_CGROUP.to_string()])
        };
        let mut cgroups = Vec::new();
        for n in cgroup_names {
            let cg = Cgroup::resolve(&n).map_err(|e| ConfigError::Invalid {
                origin: origin.to_string(),
                key: "cgroups",
                value: n.clone(),
                reason: e.to_string(),
            })?;
            cgroups.push(cg);
        }
        let icpt = file.intercept.unwrap_or_default();
        let mut ports = Vec::new();
        let pg_ports = icpt
            .postgres_ports
            .unwrap_or_else(|| DEFAULT_POSTGRES_PORTS.to_vec());
        for p in &pg_ports {
            ports.push((*p, Proto::Postgres));
        }
        for p in icpt
            .mysql_ports
            .unwrap_or_else(|| DEFAULT_MYSQL_PORTS.to_vec())
        {
            ports.push((p, Proto::Mysql));
        }
        let unix = unix_intercept(
            icpt.unix_sockets,
            o.unix_mode.as_deref().or(icpt.unix_mode.as_deref()),
            icpt.unlisted_db_sockets,
            &pg_ports,
            origin,
        )?;
        for p in icpt.tcp_ports.unwrap_or_default() {
            ports.push((p, Proto::Unknown));
        }
        for (p, _) in &ports {
            if *p == 0 || *p == listen.port() {
                return Err(ConfigError::Invalid {
                    origin: origin.to_string(),
                    key: "intercept ports",
                    value: p.to_string(),
                    reason: "must be non-zero and differ from the daemon's listen port".into(),
                });
            }
        }
        let mut seen = std::collections::HashSet::new();
        if let Some((p, _)) = ports.iter().find(|(p, _)| !seen.insert(*p)) {
            return Err(ConfigError::Invalid {
                origin: origin.to_string(),
                key: "intercept ports",
                value: p.to_string(),
                reason: "listed twice".into(),
            });
        }
        let mut networks = Vec::new();
        for n in icpt
            .networks
            .unwrap_or_else(|| vec!["0.0.0.0/0".into(), "::/0".into()])
        {
            networks.push(n.parse().map_err(|reason| ConfigError::Invalid {
                origin: origin.to_string(),
                key: "intercept.networks",
                value: n.clone(),
                reason,
            })?);
        }
        let env_labels = file
            .identity
            .and_then(|i| i.env_labels)
            .unwrap_or_else(|| DEFAULT_ENV_LABELS.iter().map(|s| s.to_string()).collect());
        let sessions_dir = o
            .sessions_dir
            .or(file.sessions_dir)
            .unwrap_or_else(|| "/var/lib/dbwarden/sessions".into());
        let rec = file.recording.unwrap_or_default();
        let drop_when_full = match rec.on_full.as_deref() {
            None | Some("block") => false,
            Some("drop") => true,
            Some(v) => {
                return Err(ConfigError::Invalid {
                    origin: origin.to_string(),
                    key: "recording.on_full",
                    value: v.to_string(),
                    reason: "expected \"block\" or \"drop\"".into(),
                })
            }
        };
        let recording = Recording {
            enabled: rec.enabled.unwrap_or(true),
            drop_when_full,
            max_rows: rec.max_rows.unwrap_or(1000),
            max_bytes: rec.max_bytes.unwrap_or(1 << 20),
            key_file: rec
                .key_file
                .unwrap_or_else(|| crate::sessions_cli::default_key_file(&sessions_dir)),
        };
        let ap = file.approvals.unwrap_or_default();
        let http_listen = match ap.http_listen {
            None => None,
            Some(a) => {
                let addr: SocketAddr = a.parse().map_err(|_| ConfigError::Invalid {
                    origin: origin.to_string(),
                    key: "approvals.http_listen",
                    value: a.clone(),
                    reason: "expected a loopback address:port such as 127.0.0.1:7433".into(),
                })?;
                if !addr.ip().is_loopback() {
                    return Err(ConfigError::Invalid {
                        origin: origin.to_string(),
                        key: "approvals.http_listen",
                        value: a,
                        reason: "the approval API only listens on loopback".into(),
                    });
                }
                Some(addr)
            }
        };
        let mut webhooks = Vec::new();
        for w in ap.webhooks.unwrap_or_default() {
            let slack = match w.format.as_deref() {
                None | Some("generic") => false,
                Some("slack") => true,
                Some(f) => {
                    return Err(ConfigError::Invalid {
                        origin: origin.to_string(),
                        key: "approvals.webhooks.format",
                        value: f.to_string(),
                        reason: "expected \"generic\" or \"slack\"".into(),
                    })
                }
            };
            if !w.url.starts_with("http://") {
                return Err(ConfigError::Invalid {
                    origin: origin.to_string(),
                    key: "approvals.webhooks.url",
                    value: w.url,
                    reason: "only http:// receivers are supported".into(),
                });
            }
            webhooks.push((w.url, slack));
        }
        let approvals = Approvals {
            http_listen,
            group: ap.group.unwrap_or_else(|| "dbwarden".into()),
            webhooks,
            allow_self_approval: ap.allow_self_approval.unwrap_or(false),
        };
        let metrics_listen = match file.metrics_listen {
            None => None,
            Some(a) => match a.parse::<SocketAddr>() {
                Ok(addr) if addr.ip().is_loopback() => Some(addr),
                _ => {
                    return Err(ConfigError::Invalid {
                        origin: origin.to_string(),
                        key: "metrics_listen",
                        value: a,
                        reason: "expected a loopback address:port such as 127.0.0.1:9187".into(),
                    })
                }
            },
        };
        let mut deny_ports: Vec<u16> = [http_listen, metrics_listen]
            .iter()
            .flatten()
            .map(SocketAddr::port)
            .collect();
        deny_ports.sort_unstable();
        deny_ports.dedup();
        if let Some(p) = deny_ports
            .iter()
            .find(|d| ports.iter().any(|(p, _)| p == *d))
        {
            return Err(ConfigError::Invalid {
                origin: origin.to_string(),
                key: "intercept ports",
                value: p.to_string(),
                reason: "is also the port of approvals.http_listen or metrics_listen, which controlled processes may never reach".into(),
            });
        }
        Ok(Settings {
            deny_ports,
            unix,
            metrics_listen,
            approvals,
            recording,
            listen,
            listen_v6: !o.no_ipv6 && file.listen_v6.unwrap_or(true),
            cgroups,
            policy: o.policy.or(file.policy),
            sessions_dir,
            runtime_dir: o
                .runtime_dir
                .or(file.runtime_dir)
                .unwrap_or_else(|| "/run/dbwarden".into()),
            bpffs_dir: o
                .bpffs_dir
                .or(file.bpffs_dir)
                .unwrap_or_else(|| "/sys/fs/bpf/dbwarden".into()),
            ports,
            networks,
            env_labels,
            connect_timeout: std::time::Duration::from_millis(
                file.upstream
                    .and_then(|u| u.connect_timeout_ms)
                    .unwrap_or(5000),
            ),
        })
    }
}

/// Default PostgreSQL ports: the server's own, the usual second cluster, PgBouncer.
pub const DEFAULT_POSTGRES_PORTS: [u16; 3] = [5432, 5433, 6432];
/// Default MySQL/MariaDB ports: the server's own and the usual second instance.
pub const DEFAULT_MYSQL_PORTS: [u16; 2] = [3306, 3307];

fn unix_intercept(
    entries: Option<Vec<UnixSocketEntry>>,
    mode: Option<&str>,
    deny_patterns: Option<bool>,
    pg_ports: &[u16],
    origin: &str,
) -> Result<UnixIntercept, ConfigError> {
    let invalid = |key: &'static str, value: String, reason: &str| ConfigError::Invalid {
        origin: origin.to_string(),
        key,
        value,
        reason: reason.to_string(),
    };
    let mode = match mode {
        None | Some("auto") => UnixMode::Auto,
        Some("lsm") => UnixMode::Lsm,
        Some("off") => UnixMode::Off,
        Some(m) => {
            return Err(invalid(
                "intercept.unix_mode",
                m.to_string(),
                "expected \"auto\", \"lsm\" or \"off\"",
            ))
        }
    };
    let sockets = match entries {
        None => default_unix_sockets(pg_ports),
        Some(list) => {
            let mut v = Vec::new();
            for e in list {
                let proto = match e.protocol.as_str() {
                    "postgres" => Proto::Postgres,
                    "mysql" => Proto::Mysql,
                    p => {
                        return Err(invalid(
                            "intercept.unix_sockets.protocol",
                            p.to_string(),
                            "expected \"postgres\" or \"mysql\"",
                        ))
                    }
                };
                let bytes = e.path.as_os_str().as_encoded_bytes();
                if !e.path.is_absolute() || bytes.len() > 107 || bytes.contains(&0) {
                    return Err(invalid(
                        "intercept.unix_sockets.path",
                        e.path.display().to_string(),
                        "must be an absolute path of at most 107 bytes",
                    ));
                }
                if v.iter().any(|(p, _)| p == &e.path) {
                    return Err(invalid(
                        "intercept.unix_sockets.path",
                        e.path.display().to_string(),
                        "listed twice",
                    ));
                }
                v.push((e.path, proto));
            }
            v
        }
    };
    Ok(UnixIntercept {
        mode,
        sockets,
        deny_db_patterns: deny_patterns.unwrap_or(true),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_names_line_and_column() {
        let e = FileConfig::parse(
            "listen = \"127.0.0.1:7000\"\nlisten_port = 3\n",
            Path::new("/etc/x.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("/etc/x.toml: "), "{e}");
        assert!(e.contains("line 2, column 1"), "{e}");
        assert!(e.contains("listen_port"), "{e}");
    }

    #[test]
    fn bad_values_are_named() {
        let f = FileConfig::parse("listen = \"10.0.0.1:7000\"\n", Path::new("c.toml")).unwrap();
        let e = Settings::build(f, "c.toml", Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("listen") && e.contains("loopback"), "{e}");
        let f = FileConfig::parse(
            "[intercept]\nnetworks = [\"300.1.1.1/8\"]\n",
            Path::new("c.toml"),
        )
        .unwrap();
        let e = Settings::build(f, "c.toml", Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("intercept.networks") && e.contains("300.1.1.1/8"),
            "{e}"
        );
    }

    #[test]
    fn flags_override_file() {
        let f = FileConfig::parse(
            "listen = \"127.0.0.1:7000\"\ncgroups = [\"a\"]\n",
            Path::new("c.toml"),
        )
        .unwrap();
        let o = Overrides {
            listen: Some("127.0.0.1:7001".into()),
            cgroups: vec!["b".into()],
            ..Default::default()
        };
        let s = Settings::build(f, "c.toml", o).unwrap();
        assert_eq!(s.listen.port(), 7001);
        assert_eq!(s.cgroups[0].name, "b");
        assert_eq!(
            s.ports,
            vec![
                (5432, Proto::Postgres),
                (5433, Proto::Postgres),
                (6432, Proto::Postgres),
                (3306, Proto::Mysql),
                (3307, Proto::Mysql)
            ]
        );
        assert_eq!(s.unix.mode, UnixMode::Auto);
        assert_eq!(
            s.unix.sockets.len(),
            12,
            "3 dirs x 3 PostgreSQL ports + 3 MySQL paths"
        );
        assert!(s.unix.sockets.contains(&(
            PathBuf::from("/var/run/postgresql/.s.PGSQL.5432"),
            Proto::Postgres
        )));
        assert!(s.deny_ports.is_empty());
    }

    #[test]
    fn unix_sockets_and_control_ports() {
        let f = FileConfig::parse(
            "metrics_listen = \"127.0.0.1:9187\"\n[approvals]\nhttp_listen = \"127.0.0.1:7433\"\n[intercept]\nunix_mode = \"lsm\"\nunix_sockets = [{ path = \"/srv/pg/.s.PGSQL.5999\", protocol = \"postgres\" }]\n",
            Path::new("c.toml"),
        )
        .unwrap();
        let s = Settings::build(f, "c.toml", Overrides::default()).unwrap();
        assert_eq!(s.unix.mode, UnixMode::Lsm);
        assert_eq!(
            s.unix.sockets,
            vec![(PathBuf::from("/srv/pg/.s.PGSQL.5999"), Proto::Postgres)]
        );
        assert_eq!(s.deny_ports, vec![7433, 9187]);
        for (bad, needle) in [
            ("[intercept]\nunix_mode = \"maybe\"\n", "unix_mode"),
            (
                "[intercept]\nunix_sockets = [{ path = \"rel.sock\", protocol = \"postgres\" }]\n",
                "absolute",
            ),
            (
                "[intercept]\nunix_sockets = [{ path = \"/a.sock\", protocol = \"redis\" }]\n",
                "protocol",
            ),
            ("metrics_listen = \"127.0.0.1:5433\"\n", "metrics_listen"),
        ] {
            let f = FileConfig::parse(bad, Path::new("c.toml")).unwrap();
            let e = Settings::build(f, "c.toml", Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(e.contains(needle), "{bad}: {e}");
        }
    }
}
