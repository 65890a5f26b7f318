//! Who is deciding, and may they approve this request? The rules that keep approvals out of
//! the agents' reach, applied by [`crate::Broker::decide`] whatever the channel.
//!
//! A channel (control socket, HTTP API) hands the broker an [`Approver`]: the name to record
//! and the approving process as the kernel reports it (uid and pids), or why it could not be
//! determined. Approving a held statement is then refused ([`Refusal`]) when
//! - the approving process cannot be verified (unknown peer, `/proc` unreadable, the process
//!   changed or exited while it was checked): fail closed;
//! - any approving process runs in a controlled cgroup (the cgroup itself or a descendant):
//!   an agent must never approve, whatever its uid;
//! - the approver has the uid of the session that asked, unless
//!   [`ApprovalRules::allow_self_approval`] (`[approvals] allow_self_approval = true`).
//!
//! **Denying is not checked.** A denial only makes the statement fail, which the agent can
//! achieve anyway (cancel, disconnect, never send it); refusing it would buy nothing and
//! would stop an authorised operator who happens to share the agent's uid from stopping it.
//!
//! The cgroup of a pid comes from a [`CgroupResolver`]: by default `/proc/<pid>/cgroup` (the
//! `0::` line), read through a pidfd and checked against `/proc/<pid>/status` (`Uid:`) so a
//! reused or exited pid is refused. Tests inject their own resolver.

use std::fmt;
use std::fs;
use std::sync::Arc;

/// The approving process as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApproverProcess {
    /// Uid of the approver (`SO_PEERCRED`, or the socket owner in `/proc/net/tcp`).
    pub uid: u32,
    /// Processes acting as the approver (the control-socket peer; every holder of an HTTP
    /// client socket). Never empty when verified.
    pub pids: Vec<u32>,
}

/// Someone deciding a held statement, as established by a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approver {
    /// Name recorded in the decision (`root`, `http:alice`, ...); sanitised by the broker.
    pub name: String,
    /// The approving process, or why it could not be determined (approvals are then
    /// refused; denials are still accepted).
    pub process: Result<ApproverProcess, String>,
}

impl Approver {
    /// An approver whose process is known.
    #[must_use]
    pub fn new(name: impl Into<String>, uid: u32, pids: Vec<u32>) -> Self {
        Approver {
            name: name.into(),
            process: Ok(ApproverProcess { uid, pids }),
        }
    }

    /// An approver whose process could not be determined (`why` is shown in refusals).
    #[must_use]
    pub fn unverified(name: impl Into<String>, why: impl Into<String>) -> Self {
        Approver {
            name: name.into(),
            process: Err(why.into()),
        }
    }

    /// The approver's uid, when known.
    #[must_use]
    pub fn uid(&self) -> Option<u32> {
        self.process.as_ref().ok().map(|p| p.uid)
    }
}

/// Why an approval was refused (sent to the approver, logged, journaled).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The approver is the uid of the session that asked.
    #[error("approval refused: the approver (uid {uid}) is the uid of the requesting session; self-approval is disabled ([approvals] allow_self_approval)")]
    SelfApproval {
        /// The shared uid.
        uid: u32,
    },
    /// An approving process runs in a controlled cgroup.
    #[error("approval refused: the approver (pid {pid}, uid {uid}) runs in controlled cgroup {cgroup}; agents cannot approve, approve from outside the controlled cgroups")]
    ControlledCgroup {
        /// The process.
        pid: u32,
        /// Its uid.
        uid: u32,
        /// Its cgroup (relative to the cgroup2 mount).
        cgroup: String,
    },
    /// The approving process could not be verified.
    #[error("approval refused: cannot verify the approving process ({0}); approvals need a process the daemon can check is outside the controlled cgroups")]
    Unverifiable(String),
}

impl Refusal {
    /// Short machine name: `self_approval`, `controlled_cgroup` or `unverifiable`.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Refusal::SelfApproval { .. } => "self_approval",
            Refusal::ControlledCgroup { .. } => "controlled_cgroup",
            Refusal::Unverifiable(_) => "unverifiable",
        }
    }
}

type ResolveFn = dyn Fn(u32, u32) -> Result<String, String> + Send + Sync;

/// Finds the cgroup v2 path (relative to the cgroup2 mount, leading `/`) of a pid that must
/// have a given uid; `Err(why)` if that cannot be established.
#[derive(Clone)]
pub struct CgroupResolver(Arc<ResolveFn>);

impl CgroupResolver {
    /// The real one: `/proc/<pid>/cgroup`, see the module docs.
    #[must_use]
    pub fn proc() -> Self {
        CgroupResolver(Arc::new(proc_cgroup))
    }

    /// A custom resolver `f(pid, uid)` (tests: "this pid is in /dbwarden-agents").
    pub fn from_fn(f: impl Fn(u32, u32) -> Result<String, String> + Send + Sync + 'static) -> Self {
        CgroupResolver(Arc::new(f))
    }

    /// The cgroup of `pid`, which must have `uid`.
    ///
    /// # Errors
    /// Why it could not be established.
    pub fn resolve(&self, pid: u32, uid: u32) -> Result<String, String> {
        (self.0)(pid, uid)
    }
}

impl Default for CgroupResolver {
    fn default() -> Self {
        Self::proc()
    }
}

impl fmt::Debug for CgroupResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CgroupResolver(..)")
    }
}

/// Who may approve, beyond the channel's own authorisation.
#[derive(Debug, Clone, Default)]
pub struct ApprovalRules {
    /// Let an approver with the requesting session's uid approve (default false).
    pub allow_self_approval: bool,
    /// Controlled cgroups, relative to the cgroup2 mount (`/dbwarden-agents`); a process
    /// in one of them or below may not approve.
    pub controlled_cgroups: Vec<String>,
    /// How the cgroup of an approving process is found.
    pub cgroup_of: CgroupResolver,
}

impl ApprovalRules {
    /// Whether `approver` may approve a statement held for a session of `requester_uid`.
    ///
    /// # Errors
    /// The [`Refusal`]; checked in order: verifiable, outside the controlled cgroups, not
    /// the requester's uid.
    pub fn check_approve(&self, approver: &Approver, requester_uid: u32) -> Result<(), Refusal> {
        let p = approver
            .process
            .as_ref()
            .map_err(|why| Refusal::Unverifiable(why.clone()))?;
        if p.pids.is_empty() {
            return Err(Refusal::Unverifiable("no approving process found".into()));
        }
        if !self.controlled_cgroups.is_empty() {
            for &pid in &p.pids {
                let cgroup = self
                    .cgroup_of
                    .resolve(pid, p.uid)
                    .map_err(Refusal::Unverifiable)?;
                if self
                    .controlled_cgroups
                    .iter()
                    .any(|c| is_inside(&cgroup, c))
                {
                    return Err(Refusal::ControlledCgroup {
                        pid,
                        uid: p.uid,
                        cgroup,
                    });
                }
            }
        }
        if p.uid == requester_uid && !self.allow_self_approval {
            return Err(Refusal::SelfApproval { uid: p.uid });
        }
        Ok(())
    }
}

/// True if cgroup path `path` is `root` or below it (both relative to the cgroup2 mount;
/// leading and trailing slashes ignored).
#[must_use]
pub fn is_inside(path: &str, root: &str) -> bool {
    let root = root.trim_matches('/');
    let path = path.trim_end_matches('/');
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    if root.is_empty() {
        // The whole hierarchy is controlled.
        return true;
    }
    rest == root || rest.strip_prefix(root).is_some_and(|r| r.starts_with('/'))
}

/// The cgroup v2 path in a `/proc/<pid>/cgroup` text: the `0::/path` line.
///
/// # Errors
/// No `0::` line (no cgroup v2 membership visible).
pub fn parse_proc_cgroup(text: &str) -> Result<String, String> {
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(|p| p.trim_end().to_owned())
        .filter(|p| p.starts_with('/'))
        .ok_or_else(|| "no cgroup v2 (\"0::\") line".to_owned())
}

/// Checks `Uid:` (real and effective) of a `/proc/<pid>/status` text against `uid`.
///
/// # Errors
/// Missing line or another uid (the pid now belongs to another process).
pub fn check_status_uid(status: &str, uid: u32) -> Result<(), String> {
    let uids: Vec<&str> = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .ok_or("no Uid line in process status")?
        .split_whitespace()
        .collect();
    let expect = uid.to_string();
    if uids.len() >= 2 && uids[0] == expect && uids[1] == expect {
        Ok(())
    } else {
        Err(format!("process changed: uid is not {uid}"))
    }
}

/// Default resolver: the pid is pinned with a pidfd before `/proc` is read and must still be
/// alive afterwards, so the files read belong to that one process.
fn proc_cgroup(pid: u32, uid: u32) -> Result<String, String> {
    let pidfd = Pidfd::open(pid).map_err(|e| format!("pid {pid}: {e}"))?;
    let read = |f: &str| {
        fs::read_to_string(format!("/proc/{pid}/{f}")).map_err(|e| format!("/proc/{pid}/{f}: {e}"))
    };
    let cgroup =
        parse_proc_cgroup(&read("cgroup")?).map_err(|e| format!("/proc/{pid}/cgroup: {e}"))?;
    check_status_uid(&read("status")?, uid).map_err(|e| format!("pid {pid}: {e}"))?;
    if !pidfd.alive() {
        return Err(format!("pid {pid} exited while it was checked"));
    }
    Ok(cgroup)
}

/// A pidfd (Linux 5.3+). If the kernel has none, checks fall back to the uid comparison.
struct Pidfd(Option<std::os::fd::OwnedFd>);

impl Pidfd {
    fn open(pid: u32) -> std::io::Result<Pidfd> {
        use std::os::fd::FromRawFd;
        let pid = libc::pid_t::try_from(pid).map_err(std::io::Error::other)?;
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
        let rc = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if rc < 0 {
            let e = std::io::Error::last_os_error();
            return if e.raw_os_error() == Some(libc::ENOSYS) {
                Ok(Pidfd(None))
            } else {
                Err(e)
            };
        }
        let fd = i32::try_from(rc).map_err(std::io::Error::other)?;
        // SAFETY: `fd` was just returned by pidfd_open and is owned by nobody else.
        Ok(Pidfd(Some(unsafe {
            std::os::fd::OwnedFd::from_raw_fd(fd)
        })))
    }

    /// False once the process has exited (signal 0 through the pidfd fails with ESRCH).
    fn alive(&self) -> bool {
        use std::os::fd::AsRawFd;
        let Some(fd) = &self.0 else { return true };
        // SAFETY: pidfd_send_signal with signal 0 only checks existence and permission.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                fd.as_raw_fd(),
                0,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inside_means_equal_or_below() {
        assert!(is_inside("/dbwarden-agents", "/dbwarden-agents"));
        assert!(is_inside("/dbwarden-agents/job-1", "dbwarden-agents"));
        assert!(is_inside("/dbwarden-agents/", "/dbwarden-agents/"));
        assert!(!is_inside("/dbwarden-agents2", "/dbwarden-agents"));
        assert!(!is_inside("/", "/dbwarden-agents"));
        assert!(!is_inside("/user.slice", "/dbwarden-agents"));
        assert!(is_inside(
            "/ci.slice/agents.scope/x",
            "ci.slice/agents.scope"
        ));
        assert!(!is_inside("/ci.slice", "ci.slice/agents.scope"));
        assert!(!is_inside("relative", "relative"));
    }

    #[test]
    fn proc_cgroup_parsing() {
        let hybrid = "12:cpu,cpuacct:/foo\n1:name=systemd:/user.slice\n0::/dbwarden-agents/x\n";
        assert_eq!(parse_proc_cgroup(hybrid).unwrap(), "/dbwarden-agents/x");
        assert_eq!(parse_proc_cgroup("0::/\n").unwrap(), "/");
        assert!(parse_proc_cgroup("1:name=systemd:/x\n").is_err());
        assert!(parse_proc_cgroup("").is_err());
    }

    #[test]
    fn status_uid_checked() {
        let s = "Name:\tpsql\nUid:\t0\t0\t0\t0\n";
        assert!(check_status_uid(s, 0).is_ok());
        assert!(check_status_uid(s, 1000).is_err());
        assert!(check_status_uid("Uid:\t0\t1000\t0\t0\n", 0).is_err());
        assert!(check_status_uid("Name:\tx\n", 0).is_err());
    }

    fn rules(allow_self: bool, in_agents: &'static [u32]) -> ApprovalRules {
        ApprovalRules {
            allow_self_approval: allow_self,
            controlled_cgroups: vec!["/dbwarden-agents".into()],
            cgroup_of: CgroupResolver::from_fn(move |pid, _| {
                Ok(if in_agents.contains(&pid) {
                    "/dbwarden-agents/sub".into()
                } else {
                    "/user.slice".into()
                })
            }),
        }
    }

    #[test]
    fn rules_order_and_outcomes() {
        let r = rules(false, &[7]);
        assert_eq!(r.check_approve(&Approver::new("a", 1, vec![5]), 2), Ok(()));
        assert_eq!(
            r.check_approve(&Approver::new("a", 2, vec![5]), 2),
            Err(Refusal::SelfApproval { uid: 2 })
        );
        // The cgroup rule wins over the uid rule and is not lifted by the flag.
        let e = rules(true, &[7])
            .check_approve(&Approver::new("a", 1, vec![5, 7]), 2)
            .unwrap_err();
        assert_eq!(e.kind(), "controlled_cgroup");
        assert!(e.to_string().contains("pid 7, uid 1"), "{e}");
        assert_eq!(
            rules(true, &[]).check_approve(&Approver::new("a", 2, vec![5]), 2),
            Ok(())
        );
        assert_eq!(
            r.check_approve(&Approver::unverified("a", "peer gone"), 2),
            Err(Refusal::Unverifiable("peer gone".into()))
        );
        assert!(r.check_approve(&Approver::new("a", 1, vec![]), 2).is_err());
    }

    #[test]
    fn real_resolver_on_this_process() {
        let me = std::process::id();
        // SAFETY: geteuid has no preconditions.
        let uid = unsafe { libc::geteuid() };
        let cg = CgroupResolver::proc().resolve(me, uid);
        // Some CI sandboxes have no cgroup v2 line; the answer must then be an error.
        match std::fs::read_to_string("/proc/self/cgroup").map(|t| parse_proc_cgroup(&t)) {
            Ok(Ok(expected)) => assert_eq!(cg.unwrap(), expected),
            _ => assert!(cg.is_err()),
        }
        assert!(CgroupResolver::proc()
            .resolve(me, uid.wrapping_add(1))
            .is_err());
        assert!(CgroupResolver::proc().resolve(u32::MAX / 2, uid).is_err());
    }
}
