//! Doing something *as the agent*: on a fresh, short-lived thread whose credentials are the
//! agent's — effective uid and gid, supplementary groups, and no more capabilities than the
//! agent had — and, when given, inside the agent's own root and working directory.
//!
//! Linux credentials are per thread in the kernel, so the thread switches its own with the raw
//! syscalls (glibc's wrappers would change every thread of the daemon). Only the effective ids
//! change (real and saved stay root) so the switch back is always permitted; the thread ends
//! right after anyway. A root agent keeps uid 0, so its *capabilities* are what limits it: the
//! thread's effective set is cut to the agent's `CapEff`, or the daemon would lend a
//! capability-less root process its own power (a confused deputy).
//!
//! What still differs from the agent doing it itself: `SO_PEERCRED` shows the daemon's pid,
//! and the daemon's cgroup.

use std::{
    io,
    os::fd::{AsRawFd, OwnedFd},
};

use tokio::sync::OwnedSemaphorePermit;

/// Whose credentials to take (the agent's, from `SO_PEERCRED` of its connection to the daemon
/// and its verified `/proc/<pid>/status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentCred {
    /// Effective uid.
    pub uid: u32,
    /// Effective gid.
    pub gid: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
    /// Effective capabilities (`CapEff`).
    pub cap_eff: u64,
}

/// The agent's root and working directory (`O_PATH` descriptors of `/proc/<pid>/root` and
/// `/cwd`, opened as root before anything else).
pub struct AgentFs {
    /// `/proc/<pid>/root`.
    pub root: OwnedFd,
    /// `/proc/<pid>/cwd`.
    pub cwd: OwnedFd,
}

/// Runs `f` as the agent (see the module docs), inside `fs` when given. `permit` is held until
/// the thread ends, even if the caller stops waiting, so stuck threads stay counted.
///
/// # Errors
/// Entering the root or switching failed, the thread could not start, or `f` failed.
pub async fn run_as<T: Send + 'static>(
    cred: AgentCred,
    fs: Option<AgentFs>,
    permit: Option<OwnedSemaphorePermit>,
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("dbw-as-agent".into())
        .spawn(move || {
            let _permit = permit;
            let r = fs
                .map_or(Ok(()), |fs| enter(&fs))
                .and_then(|()| ThreadCred::switch(&cred))
                .and_then(|guard| {
                    let r = f();
                    drop(guard);
                    r
                });
            let _ = tx.send(r);
        })?;
    rx.await
        .map_err(|_| io::Error::other("credential-switched thread died"))?
}

fn check(rc: libc::c_long, what: &str) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        let e = io::Error::last_os_error();
        Err(io::Error::new(e.kind(), format!("{what}: {e}")))
    }
}

/// Gives this thread its own filesystem context and moves it into the agent's root and cwd:
/// `..` then stops at the agent's root, and absolute symlinks resolve inside it.
fn enter(fs: &AgentFs) -> io::Result<()> {
    // SAFETY: unshare/fchdir/chroot on this thread's own fs context with valid fds and a
    // NUL-terminated path.
    unsafe {
        check(libc::unshare(libc::CLONE_FS).into(), "unshare(CLONE_FS)")?;
        check(
            libc::fchdir(fs.root.as_raw_fd()).into(),
            "fchdir(agent root)",
        )?;
        check(libc::chroot(c".".as_ptr()).into(), "chroot(agent root)")?;
        check(libc::fchdir(fs.cwd.as_raw_fd()).into(), "fchdir(agent cwd)")?;
    }
    Ok(())
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}
const CAP_V3: u32 = 0x2008_0522;

fn capget() -> io::Result<[CapData; 2]> {
    let mut h = CapHeader {
        version: CAP_V3,
        pid: 0,
    };
    let mut d = [CapData::default(); 2];
    // SAFETY: header and two data structs, as the v3 ABI requires.
    check(
        unsafe { libc::syscall(libc::SYS_capget, &raw mut h, d.as_mut_ptr()) },
        "capget",
    )?;
    Ok(d)
}

fn capset_effective(eff: u64) -> io::Result<()> {
    let mut h = CapHeader {
        version: CAP_V3,
        pid: 0,
    };
    let mut d = capget()?;
    d[0].effective = (eff as u32) & d[0].permitted;
    d[1].effective = ((eff >> 32) as u32) & d[1].permitted;
    // SAFETY: as in capget.
    check(
        unsafe { libc::syscall(libc::SYS_capset, &raw mut h, d.as_ptr()) },
        "capset",
    )
}

/// This thread's credentials switched to an agent's; restored on drop.
struct ThreadCred {
    groups: Vec<libc::gid_t>,
    permitted: u64,
}

impl ThreadCred {
    fn switch(c: &AgentCred) -> io::Result<ThreadCred> {
        // SAFETY: getgroups with a correctly sized buffer.
        let n = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
        let mut groups = vec![0; usize::try_from(n).unwrap_or(0)];
        // SAFETY: the buffer holds n entries.
        let n = unsafe { libc::getgroups(n, groups.as_mut_ptr()) };
        groups.truncate(usize::try_from(n).unwrap_or(0));
        let caps = capget()?;
        let saved = ThreadCred {
            groups,
            permitted: u64::from(caps[0].permitted) | (u64::from(caps[1].permitted) << 32),
        };
        let keep = u32::MAX; // -1: leave unchanged
                             // SAFETY: raw per-thread credential syscalls with valid arguments.
        unsafe {
            check(
                libc::syscall(libc::SYS_setgroups, c.groups.len(), c.groups.as_ptr()),
                "setgroups",
            )?;
            check(
                libc::syscall(libc::SYS_setresgid, keep, c.gid, keep),
                "setresgid",
            )?;
            check(
                libc::syscall(libc::SYS_setresuid, keep, c.uid, keep),
                "setresuid",
            )?;
        }
        // A non-zero euid already cleared the effective set; a root agent's is cut to its own.
        capset_effective(c.cap_eff)?;
        Ok(saved)
    }
}

impl Drop for ThreadCred {
    fn drop(&mut self) {
        let keep = u32::MAX;
        // SAFETY: as in `switch`; restores what this thread had.
        unsafe {
            libc::syscall(libc::SYS_setresuid, keep, 0u32, keep);
            libc::syscall(libc::SYS_setresgid, keep, 0u32, keep);
            libc::syscall(libc::SYS_setgroups, self.groups.len(), self.groups.as_ptr());
        }
        let _ = capset_effective(self.permitted);
    }
}

/// `CapEff` from a `/proc/<pid>/status` text.
pub fn cap_eff_of(status: &str) -> Option<u64> {
    let v = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(v.trim(), 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn root() -> bool {
        // SAFETY: no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            return true;
        }
        assert!(
            std::env::var_os("CI").is_none(),
            "needs root (CI runs as root)"
        );
        false
    }

    fn peer_cred(s: &std::os::unix::net::UnixStream) -> (u32, u32) {
        let mut u = libc::ucred {
            pid: 0,
            uid: 0,
            gid: 0,
        };
        let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
        // SAFETY: valid fd and out buffer of the right size.
        let rc = unsafe {
            libc::getsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERCRED,
                (&raw mut u).cast(),
                &mut len,
            )
        };
        assert_eq!(rc, 0);
        (u.uid, u.gid)
    }

    #[tokio::test]
    async fn the_server_sees_the_agents_ids_and_permissions_hold() {
        if !root() {
            return;
        }
        let dir = std::env::temp_dir().join(format!("dbw-asagent-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        let l = std::os::unix::net::UnixListener::bind(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        let nobody = AgentCred {
            uid: 65534,
            gid: 65534,
            groups: vec![],
            cap_eff: 0,
        };
        let p = path.clone();
        let _c = run_as(nobody.clone(), None, None, move || {
            std::os::unix::net::UnixStream::connect(&p)
        })
        .await
        .unwrap();
        let (server, _) = l.accept().unwrap();
        assert_eq!(
            peer_cred(&server),
            (65534, 65534),
            "the server sees the agent's ids"
        );
        // SAFETY: no preconditions.
        assert_eq!(unsafe { libc::geteuid() }, 0, "the daemon kept root");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let p = path.clone();
        let e = run_as(nobody, None, None, move || {
            std::os::unix::net::UnixStream::connect(&p)
        })
        .await
        .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{e}");
        // A root agent without capabilities cannot use the daemon's: the 0600 socket is owned
        // by nobody, so only CAP_DAC_OVERRIDE would open it.
        std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
        let capless_root = AgentCred {
            uid: 0,
            gid: 0,
            groups: vec![],
            cap_eff: 0,
        };
        let p = path.clone();
        let e = run_as(capless_root, None, None, move || {
            std::os::unix::net::UnixStream::connect(&p)
        })
        .await
        .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{e}");
        let full_root = AgentCred {
            uid: 0,
            gid: 0,
            groups: vec![],
            cap_eff: u64::MAX,
        };
        let p = path.clone();
        run_as(full_root, None, None, move || {
            std::os::unix::net::UnixStream::connect(&p)
        })
        .await
        .expect("a root agent with its capabilities connects");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn cap_eff_parses() {
        assert_eq!(
            cap_eff_of("Name:\tx\nCapEff:\t000001ffffffffff\n"),
            Some(0x1ff_ffff_ffff)
        );
        assert_eq!(cap_eff_of("CapEff:\tzz\n"), None);
        assert_eq!(cap_eff_of(""), None);
    }
}
