//! Is the connecting agent privileged? Root (any of its uids 0) or holding a capability that lets
//! it escape or subvert dbwarden: leave its cgroup, detach the pinned eBPF programs, ptrace or
//! kill the daemon, read the host key, load its own BPF programs.
//!
//! Read from `/proc/PID/status` of every thread of the connecting process, at accept time, and
//! only when [`crate::identity`] has verified that this `/proc` entry belongs to the process that
//! connected (start time not later than the connect, same uid). The start time is checked once
//! more after reading, so a PID reused while we read is caught too. Anything that cannot be
//! verified or parsed counts as **privileged** (fail closed), with `verified = false`.
//!
//! Credentials are per thread in the kernel, and threads share their memory: one privileged
//! thread makes the whole process privileged. The permitted set counts as well as the effective
//! one (a process raises a permitted capability into its effective set whenever it likes), and
//! so do the saved and filesystem uids (a saved uid 0 can be switched back to with `seteuid(0)`).
//! Capabilities held inside a user namespace of the agent's own are reported as well: `/proc`
//! shows them like any others, so such an agent is flagged too (a false positive, on the safe
//! side).

use std::{fs, path::Path};

/// Capabilities that make an agent privileged, by number (`linux/capability.h`) and name.
///
/// The first five are the ones that directly defeat dbwarden (`cap_sys_admin`: mounts, cgroup
/// moves, bpffs; `cap_bpf`: load and detach programs; `cap_net_admin`: cgroup socket programs,
/// netfilter; `cap_sys_ptrace`: the daemon's memory; `cap_dac_override`: any file, the host key
/// and `cgroup.procs` included). The others are as good as root: `cap_chown`, `cap_fowner` and
/// `cap_dac_read_search` reach any file (reading the host key forges recordings), `cap_setuid`
/// becomes uid 0, `cap_setfcap` grants any capability to a binary it then runs,
/// `cap_sys_module` and `cap_sys_rawio` reach the kernel itself.
pub const PRIVILEGED_CAPS: &[(u32, &str)] = &[
    (0, "cap_chown"),
    (1, "cap_dac_override"),
    (2, "cap_dac_read_search"),
    (3, "cap_fowner"),
    (7, "cap_setuid"),
    (12, "cap_net_admin"),
    (16, "cap_sys_module"),
    (17, "cap_sys_rawio"),
    (19, "cap_sys_ptrace"),
    (21, "cap_sys_admin"),
    (31, "cap_setfcap"),
    (39, "cap_bpf"),
];

/// What the daemon found about the agent's privileges.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Privileges {
    /// Root, or holding one of [`PRIVILEGED_CAPS`], or not verifiable (fail closed).
    pub privileged: bool,
    /// One of the process's uids (real, effective, saved, filesystem) is 0.
    pub uid0: bool,
    /// The [`PRIVILEGED_CAPS`] it holds (effective or permitted, in any thread), in number order.
    pub capabilities: Vec<&'static str>,
    /// True when this was read from the connecting process's own `/proc` entry. When false,
    /// `privileged` is true because nothing proves otherwise.
    pub verified: bool,
}

impl Privileges {
    /// The fail-closed answer when `/proc` cannot be trusted or read.
    #[must_use]
    pub fn unverified() -> Privileges {
        Privileges {
            privileged: true,
            uid0: false,
            capabilities: Vec::new(),
            verified: false,
        }
    }

    /// The capability names joined by commas (empty when none), for logs.
    #[must_use]
    pub fn capability_list(&self) -> String {
        self.capabilities.join(",")
    }
}

/// Credentials from one `/proc/.../status` text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusCreds {
    /// Real, effective, saved and filesystem uid.
    pub uids: [u32; 4],
    /// Effective capability set.
    pub cap_eff: u64,
    /// Permitted capability set.
    pub cap_prm: u64,
}

/// Parses the `Uid:`, `CapEff:` and `CapPrm:` lines of a `/proc/PID/status` text. `None` when
/// any of them is missing or malformed.
#[must_use]
pub fn parse_status(text: &str) -> Option<StatusCreds> {
    let mut uids = None;
    let mut cap_eff = None;
    let mut cap_prm = None;
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("Uid:") {
            let mut u = [0u32; 4];
            let mut it = v.split_whitespace();
            for slot in &mut u {
                *slot = it.next()?.parse().ok()?;
            }
            if it.next().is_some() {
                return None;
            }
            uids = Some(u);
        } else if let Some(v) = line.strip_prefix("CapEff:") {
            cap_eff = Some(parse_capset(v)?);
        } else if let Some(v) = line.strip_prefix("CapPrm:") {
            cap_prm = Some(parse_capset(v)?);
        }
    }
    Some(StatusCreds {
        uids: uids?,
        cap_eff: cap_eff?,
        cap_prm: cap_prm?,
    })
}

fn parse_capset(v: &str) -> Option<u64> {
    let v = v.trim();
    if v.is_empty() || v.len() > 16 || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(v, 16).ok()
}

/// Judges a set of thread credentials (one process's threads).
#[must_use]
pub fn judge(threads: &[StatusCreds]) -> Privileges {
    if threads.is_empty() {
        return Privileges::unverified();
    }
    let uid0 = threads.iter().any(|c| c.uids.contains(&0));
    let held = threads
        .iter()
        .fold(0u64, |acc, c| acc | c.cap_eff | c.cap_prm);
    let capabilities: Vec<&'static str> = PRIVILEGED_CAPS
        .iter()
        .filter(|(n, _)| held & (1u64 << n) != 0)
        .map(|(_, name)| *name)
        .collect();
    Privileges {
        privileged: uid0 || !capabilities.is_empty(),
        uid0,
        capabilities,
        verified: true,
    }
}

/// Detects the privileges of the process at `proc_dir` (`/proc/TGID`). `verified` is the
/// identity check's verdict on that directory; `still_same` re-runs the start-time check after
/// reading, so a process that exited (and whose PID was reused) meanwhile is not trusted.
pub fn detect(proc_dir: &Path, verified: bool, still_same: impl Fn() -> bool) -> Privileges {
    if !verified {
        return Privileges::unverified();
    }
    let Some(threads) = read_threads(proc_dir) else {
        return Privileges::unverified();
    };
    if !still_same() {
        return Privileges::unverified();
    }
    judge(&threads)
}

/// The credentials of the process's main thread and every other thread. `None` when the main
/// thread's status cannot be read or parsed, or any listed thread's status is malformed (a
/// thread that exited meanwhile is skipped: it can no longer act).
fn read_threads(proc_dir: &Path) -> Option<Vec<StatusCreds>> {
    let main = parse_status(&fs::read_to_string(proc_dir.join("status")).ok()?)?;
    let mut out = vec![main];
    let tasks = fs::read_dir(proc_dir.join("task")).ok()?;
    for t in tasks {
        let Ok(t) = t else { continue };
        match fs::read_to_string(t.path().join("status")) {
            Ok(text) => out.push(parse_status(&text)?),
            Err(_) => continue,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The head of a real `/proc/PID/status` (kernel 6.x), with the given uids and cap sets.
    fn status(uids: &str, eff: &str, prm: &str) -> String {
        format!(
            "Name:\tpsql\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t4242\nNgid:\t0\nPid:\t4242\n\
             PPid:\t4200\nTracerPid:\t0\nUid:\t{uids}\nGid:\t1000\t1000\t1000\t1000\n\
             FDSize:\t64\nGroups:\t27 1000 \nNStgid:\t4242\nVmPeak:\t   10000 kB\n\
             SigCgt:\t0000000180004002\nCapInh:\t0000000000000000\nCapPrm:\t{prm}\n\
             CapEff:\t{eff}\nCapBnd:\t000001ffffffffff\nCapAmb:\t0000000000000000\n\
             NoNewPrivs:\t0\nSeccomp:\t0\n"
        )
    }

    const NONE: &str = "0000000000000000";
    const ROOT: &str = "000001ffffffffff";

    #[test]
    fn ordinary_user_is_not_privileged() {
        let c = parse_status(&status("1000\t1000\t1000\t1000", NONE, NONE)).unwrap();
        assert_eq!(c.uids, [1000; 4]);
        let p = judge(&[c]);
        assert_eq!(
            p,
            Privileges {
                privileged: false,
                uid0: false,
                capabilities: vec![],
                verified: true
            }
        );
    }

    #[test]
    fn root_is_privileged_with_its_capabilities_named() {
        let p = judge(&[parse_status(&status("0\t0\t0\t0", ROOT, ROOT)).unwrap()]);
        assert!(p.privileged && p.uid0 && p.verified);
        assert_eq!(p.capabilities.len(), PRIVILEGED_CAPS.len());
        for name in [
            "cap_sys_admin",
            "cap_bpf",
            "cap_net_admin",
            "cap_sys_ptrace",
            "cap_dac_override",
        ] {
            assert!(p.capabilities.contains(&name), "{name}: {p:?}");
        }
        assert!(p
            .capability_list()
            .starts_with("cap_chown,cap_dac_override,"));
    }

    #[test]
    fn any_uid_zero_counts() {
        // Real uid root, effective not (a daemon that dropped euid), and the reverse (setuid
        // binary), and only the saved uid (can seteuid(0) back).
        for uids in [
            "0\t1000\t1000\t1000",
            "1000\t0\t0\t0",
            "1000\t1000\t0\t1000",
        ] {
            let p = judge(&[parse_status(&status(uids, NONE, NONE)).unwrap()]);
            assert!(p.privileged && p.uid0, "{uids}: {p:?}");
            assert!(p.capabilities.is_empty());
        }
    }

    #[test]
    fn one_dangerous_capability_is_enough_effective_or_permitted() {
        for (bit, name) in [
            (21, "cap_sys_admin"),
            (39, "cap_bpf"),
            (12, "cap_net_admin"),
            (19, "cap_sys_ptrace"),
            (1, "cap_dac_override"),
        ] {
            let set = format!("{:016x}", 1u64 << bit);
            let eff =
                judge(&[parse_status(&status("1000\t1000\t1000\t1000", &set, &set)).unwrap()]);
            assert!(eff.privileged && !eff.uid0, "{name}");
            assert_eq!(eff.capabilities, [name]);
            // Permitted but not (yet) effective: the process can raise it at will.
            let prm =
                judge(&[parse_status(&status("1000\t1000\t1000\t1000", NONE, &set)).unwrap()]);
            assert_eq!(prm.capabilities, [name]);
            assert!(prm.privileged);
        }
    }

    #[test]
    fn harmless_capabilities_do_not_count() {
        // cap_net_bind_service (10) and cap_net_raw (13): an agent may hold these.
        let set = format!("{:016x}", (1u64 << 10) | (1u64 << 13));
        let p = judge(&[parse_status(&status("1000\t1000\t1000\t1000", &set, &set)).unwrap()]);
        assert!(!p.privileged, "{p:?}");
    }

    #[test]
    fn one_privileged_thread_makes_the_process_privileged() {
        let user = parse_status(&status("1000\t1000\t1000\t1000", NONE, NONE)).unwrap();
        let root = parse_status(&status("0\t0\t0\t0", ROOT, ROOT)).unwrap();
        assert!(!judge(&[user, user]).privileged);
        assert!(judge(&[user, root]).privileged);
    }

    #[test]
    fn malformed_or_missing_fields_fail_closed() {
        for text in [
            String::new(),
            "Name:\tx\nUid:\t1000\t1000\t1000\t1000\n".to_string(), // no cap lines
            status("1000\t1000\t1000", NONE, NONE),                 // three uids
            status("1000\t1000\t1000\t1000\t5", NONE, NONE),        // five
            status("-1\t1000\t1000\t1000", NONE, NONE),
            status("1000\t1000\t1000\t1000", "zz", NONE),
            status("1000\t1000\t1000\t1000", NONE, "00000000000000000"), // 17 digits
            status("1000\t1000\t1000\t1000", "", NONE),
        ] {
            assert_eq!(parse_status(&text), None, "{text:?}");
        }
        assert_eq!(judge(&[]), Privileges::unverified());
        assert!(Privileges::unverified().privileged);
    }

    #[test]
    fn unverified_or_reused_proc_is_privileged() {
        let me = Path::new("/proc/self");
        assert_eq!(detect(me, false, || true), Privileges::unverified());
        // Verified at first, but the start-time check fails after reading: PID reused.
        assert_eq!(detect(me, true, || false), Privileges::unverified());
        let gone = Path::new("/proc/does-not-exist");
        assert_eq!(detect(gone, true, || true), Privileges::unverified());
    }

    #[test]
    fn own_process_is_read_from_proc() {
        let p = detect(Path::new("/proc/self"), true, || true);
        assert!(p.verified);
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            assert!(p.privileged && p.uid0, "{p:?}");
        }
        let mine = parse_status(&fs::read_to_string("/proc/self/status").unwrap()).unwrap();
        assert_eq!(p, judge(&[mine]));
    }
}
