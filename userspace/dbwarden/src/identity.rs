//! Who is connecting: the kernel record (pid, uid, cgroup, comm — trusted) enriched with what
//! `/proc` says about that process at accept time (exe, cmdline, allow-listed environment labels).
//!
//! PIDs are reused: the process's start time must not be later than the connect recorded by the
//! kernel, otherwise the /proc data belongs to someone else and is discarded.

use std::{collections::BTreeMap, fs, path::Path};

use dbwarden_common::{ConnInfo, Proto};

use crate::{destination::Destination, intercept::to_socket_addr};

/// Environment variables read from the agent by default (CI job labels).
pub const DEFAULT_ENV_LABELS: &[&str] = &[
    "CI_JOB_ID",
    "CI_PIPELINE_ID",
    "CI_PROJECT_PATH",
    "CI_JOB_NAME",
    "GITHUB_RUN_ID",
    "GITHUB_RUN_ATTEMPT",
    "GITHUB_REPOSITORY",
    "GITHUB_WORKFLOW",
    "GITHUB_JOB",
    "BUILDKITE_JOB_ID",
    "DBWARDEN_AGENT",
];

/// A connection's identity and destination, as the daemon will log, police and record it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ConnIdentity {
    /// Process id (tgid).
    pub pid: u32,
    /// Thread id that called connect.
    pub tid: u32,
    /// uid (kernel).
    pub uid: u32,
    /// gid (kernel).
    pub gid: u32,
    /// User name from /etc/passwd, if any.
    pub user: Option<String>,
    /// cgroup v2 id (kernel).
    pub cgroup_id: u64,
    /// cgroup path relative to the cgroup2 mount, e.g. `/dbwarden-agents`.
    pub cgroup: String,
    /// `comm` (kernel).
    pub comm: String,
    /// Executable path (from /proc; empty if the process was gone or reused).
    pub exe: String,
    /// Command line, arguments joined by spaces (from /proc).
    pub cmdline: String,
    /// Allow-listed environment labels.
    pub labels: BTreeMap<String, String>,
    /// Where the agent wanted to go.
    pub original_dst: Destination,
    /// The protocol configured for that port.
    pub protocol: ProtocolName,
    /// True when /proc could be read and belongs to the connecting process.
    pub proc_verified: bool,
    /// Root or dangerous capabilities (privileged when /proc cannot be verified).
    pub privileges: crate::privilege::Privileges,
}

/// Protocol label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProtocolName {
    /// PostgreSQL.
    Postgres,
    /// MySQL / MariaDB.
    Mysql,
    /// Unknown.
    Unknown,
}

impl From<Proto> for ProtocolName {
    fn from(p: Proto) -> Self {
        match p {
            Proto::Postgres => ProtocolName::Postgres,
            Proto::Mysql => ProtocolName::Mysql,
            Proto::Unknown => ProtocolName::Unknown,
        }
    }
}

impl std::fmt::Display for ProtocolName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ProtocolName::Postgres => "postgres",
            ProtocolName::Mysql => "mysql",
            ProtocolName::Unknown => "unknown",
        })
    }
}

/// Resolves the identity of a redirected connection from its kernel record and /proc.
pub fn resolve(
    info: &ConnInfo,
    env_labels: &[String],
    cgroup_path: Option<String>,
) -> ConnIdentity {
    let proc_dir = format!("/proc/{}", info.tgid);
    let proc_dir = Path::new(&proc_dir);
    let comm_len = info
        .comm
        .iter()
        .position(|b| *b == 0)
        .unwrap_or(info.comm.len());
    let comm = sanitize(&String::from_utf8_lossy(&info.comm[..comm_len]));
    let verified = process_started_before(proc_dir, info.ktime_ns) && same_uid(proc_dir, info.uid);
    let (exe, cmdline, labels, proc_cgroup) = if verified {
        (
            fs::read_link(proc_dir.join("exe"))
                .map(|p| sanitize(&p.to_string_lossy()))
                .unwrap_or_default(),
            read_cmdline(proc_dir),
            read_labels(proc_dir, env_labels),
            read_cgroup(proc_dir),
        )
    } else {
        (String::new(), String::new(), BTreeMap::new(), None)
    };
    ConnIdentity {
        pid: info.tgid,
        tid: info.pid,
        uid: info.uid,
        gid: info.gid,
        user: user_name(info.uid),
        cgroup_id: info.cgroup_id,
        cgroup: cgroup_path.or(proc_cgroup).unwrap_or_default(),
        comm,
        exe,
        cmdline,
        labels,
        original_dst: Destination::Tcp(to_socket_addr(&info.orig_addr, info.orig_port)),
        protocol: Proto::from_u8(info.proto).into(),
        proc_verified: verified,
        privileges: crate::privilege::detect(proc_dir, verified, || {
            process_started_before(proc_dir, info.ktime_ns)
        }),
    }
}

/// Strips control characters (identity strings come from the agent and end up in logs).
pub fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .take(4096)
        .collect()
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// Start time (ns since boot) from /proc/PID/stat field 22.
fn start_time_ns(proc_dir: &Path) -> Option<u64> {
    let stat = fs::read_to_string(proc_dir.join("stat")).ok()?;
    // comm may contain spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let ticks: u64 = rest.split(' ').nth(19)?.parse().ok()?;
    Some(ticks.saturating_mul(1_000_000_000) / clock_ticks())
}

fn process_started_before(proc_dir: &Path, connect_ktime_ns: u64) -> bool {
    // /proc start time has clock-tick granularity (10 ms at 100 Hz): allow one tick of slack.
    let slack = 1_000_000_000 / clock_ticks();
    match start_time_ns(proc_dir) {
        Some(start) => start <= connect_ktime_ns.saturating_add(slack),
        None => false,
    }
}

fn same_uid(proc_dir: &Path, uid: u32) -> bool {
    let Ok(status) = fs::read_to_string(proc_dir.join("status")) else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|u| u.parse::<u32>().ok())
        == Some(uid)
}

/// Supplementary groups from a `/proc/<pid>/status` text, if its effective uid is still
/// `euid` (so a reused pid yields nothing).
pub fn groups_in(status: &str, euid: u32) -> Option<Vec<u32>> {
    let field = |name: &str| status.lines().find_map(|l| l.strip_prefix(name));
    let uids: Vec<u32> = field("Uid:")?
        .split_whitespace()
        .filter_map(|u| u.parse().ok())
        .collect();
    if uids.get(1) != Some(&euid) {
        return None;
    }
    field("Groups:")?
        .split_whitespace()
        .map(|g| g.parse().ok())
        .collect()
}

fn read_cmdline(proc_dir: &Path) -> String {
    let raw = fs::read(proc_dir.join("cmdline")).unwrap_or_default();
    let parts: Vec<String> = raw
        .split(|b| *b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| sanitize(&String::from_utf8_lossy(p)))
        .collect();
    parts.join(" ")
}

fn read_labels(proc_dir: &Path, allow: &[String]) -> BTreeMap<String, String> {
    let raw = fs::read(proc_dir.join("environ")).unwrap_or_default();
    parse_environ(&raw, allow)
}

fn parse_environ(raw: &[u8], allow: &[String]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for kv in raw.split(|b| *b == 0) {
        let Some(eq) = kv.iter().position(|b| *b == b'=') else {
            continue;
        };
        let k = String::from_utf8_lossy(&kv[..eq]);
        if allow.iter().any(|a| a == k.as_ref()) {
            let v: String = sanitize(&String::from_utf8_lossy(&kv[eq + 1..]))
                .chars()
                .take(256)
                .collect();
            out.insert(k.into_owned(), v);
        }
    }
    out
}

fn read_cgroup(proc_dir: &Path) -> Option<String> {
    let s = fs::read_to_string(proc_dir.join("cgroup")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(|p| sanitize(p.trim()))
}

fn user_name(uid: u32) -> Option<String> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        let _pw = f.next()?;
        (f.next()?.parse::<u32>().ok()? == uid).then(|| name.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environ_keeps_only_allow_listed_labels() {
        let raw = b"PATH=/bin\0CI_JOB_ID=42\0SECRET=x\0GITHUB_REPOSITORY=acme/app\0broken\0";
        let allow: Vec<String> = DEFAULT_ENV_LABELS.iter().map(|s| s.to_string()).collect();
        let m = parse_environ(raw, &allow);
        assert_eq!(m.len(), 2);
        assert_eq!(m["CI_JOB_ID"], "42");
        assert_eq!(m["GITHUB_REPOSITORY"], "acme/app");
    }

    #[test]
    fn own_process_is_verified() {
        let me = Path::new("/proc/self");
        assert!(start_time_ns(me).is_some());
        assert!(process_started_before(me, u64::MAX / 2));
        assert!(!process_started_before(me, 0));
        assert_eq!(user_name(0).as_deref(), Some("root"));
    }

    #[test]
    fn sanitize_strips_controls() {
        assert_eq!(sanitize("a\nb\x1b[31m"), "a?b?[31m");
    }
}
