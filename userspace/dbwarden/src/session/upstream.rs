//! Connecting to the database the agent meant to reach.
//!
//! A Unix-socket upstream is connected **as the agent**: PostgreSQL's `peer` authentication
//! and MariaDB's `unix_socket` plugin read the connecting credentials (`SO_PEERCRED`, taken at
//! `connect()` from the calling thread), and the socket file's permissions are checked against
//! them too. Linux credentials are per thread in the kernel, so a fresh thread switches its own
//! effective uid/gid and supplementary groups with the raw syscalls (glibc's wrappers would
//! change every thread of the daemon), connects, and exits. What differs from a direct
//! connection: the server sees the daemon's pid, not the agent's.

use std::{io, path::Path, time::Duration};

use tokio::net::TcpStream;

use super::stream::Stream;
use crate::destination::Destination;

/// Whose credentials a Unix-socket upstream connection carries (the agent's, from
/// `SO_PEERCRED` of its connection to the daemon and its verified `/proc` groups).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentCred {
    /// Effective uid.
    pub uid: u32,
    /// Effective gid.
    pub gid: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
}

/// Connects to `dst` within `timeout`; a Unix socket is connected with `cred` when given.
pub async fn connect(
    dst: &Destination,
    cred: Option<&AgentCred>,
    timeout: Duration,
) -> io::Result<Stream> {
    let fut = async {
        match dst {
            Destination::Tcp(a) => Ok(Stream::Tcp(TcpStream::connect(a).await?)),
            Destination::Unix(p) => connect_unix(p, cred).await.map(Stream::Unix),
        }
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "upstream connect timed out",
        )),
    }
}

async fn connect_unix(path: &Path, cred: Option<&AgentCred>) -> io::Result<tokio::net::UnixStream> {
    let std = match cred {
        None => std::os::unix::net::UnixStream::connect(path)?,
        Some(c) => {
            let path = path.to_path_buf();
            run_as(c.clone(), move || {
                std::os::unix::net::UnixStream::connect(&path)
            })
            .await?
        }
    };
    into_tokio(std)
}

/// A std Unix stream as a tokio one.
pub fn into_tokio(s: std::os::unix::net::UnixStream) -> io::Result<tokio::net::UnixStream> {
    s.set_nonblocking(true)?;
    tokio::net::UnixStream::from_std(s)
}

/// Runs `f` on a fresh, short-lived thread whose credentials are switched to `cred` (and
/// switched back before the thread ends), so file permissions and `SO_PEERCRED` are the
/// agent's for what `f` does.
///
/// # Errors
/// The switch failed, the thread could not start, or `f` failed.
pub async fn run_as<T: Send + 'static>(
    cred: AgentCred,
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("dbw-as-agent".into())
        .spawn(move || {
            let r = ThreadCred::switch(&cred).and_then(|guard| {
                let r = f();
                drop(guard);
                r
            });
            let _ = tx.send(r);
        })?;
    rx.await
        .map_err(|_| io::Error::other("credential-switched thread died"))?
}

/// This thread's credentials switched to an agent's; restored on drop.
struct ThreadCred {
    groups: Vec<libc::gid_t>,
}

fn check(rc: libc::c_long, what: &str) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        let e = io::Error::last_os_error();
        Err(io::Error::new(e.kind(), format!("{what}: {e}")))
    }
}

impl ThreadCred {
    fn switch(c: &AgentCred) -> io::Result<ThreadCred> {
        // SAFETY: getgroups with a correctly sized buffer.
        let n = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
        let mut groups = vec![0; usize::try_from(n).unwrap_or(0)];
        // SAFETY: the buffer holds n entries.
        let n = unsafe { libc::getgroups(n, groups.as_mut_ptr()) };
        groups.truncate(usize::try_from(n).unwrap_or(0));
        let saved = ThreadCred { groups };
        let keep = u32::MAX; // -1: leave unchanged
                             // SAFETY: raw per-thread credential syscalls with valid arguments; the effective ids are
                             // switched only (real and saved stay root), so switching back is always permitted.
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unix_upstream_is_connected_with_the_agents_credentials() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            assert!(
                std::env::var_os("CI").is_none(),
                "this test switches credentials and needs root (CI runs as root)"
            );
            return;
        }
        let dir = std::env::temp_dir().join(format!("dbw-upstream-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        let l = std::os::unix::net::UnixListener::bind(&path).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        let cred = AgentCred {
            uid: 65534,
            gid: 65534,
            groups: vec![],
        };
        let dst = Destination::Unix(path.clone());
        let _c = connect(&dst, Some(&cred), Duration::from_secs(5))
            .await
            .unwrap();
        let (server, _) = l.accept().unwrap();
        let mut ucred = libc::ucred {
            pid: 0,
            uid: 0,
            gid: 0,
        };
        let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
        use std::os::fd::AsRawFd;
        // SAFETY: valid fd and out buffer of the right size.
        let rc = unsafe {
            libc::getsockopt(
                server.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERCRED,
                (&raw mut ucred).cast(),
                &mut len,
            )
        };
        assert_eq!(rc, 0);
        assert_eq!(
            (ucred.uid, ucred.gid),
            (65534, 65534),
            "the server sees the agent's ids"
        );
        // This thread (and the daemon) kept root.
        // SAFETY: no preconditions.
        assert_eq!(unsafe { libc::geteuid() }, 0);
        // A socket the agent may not open stays closed to it through the daemon too.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = connect(&dst, Some(&cred), Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
