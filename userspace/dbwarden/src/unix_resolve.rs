//! Where a redirected Unix connect wanted to go, decided by the daemon.
//!
//! The connect program hands over the path the agent wrote, unresolved. The daemon resolves it
//! as the kernel would have for the agent: on a thread inside the agent's own root and working
//! directory (`/proc/<pid>/root` and `/cwd`, opened first; `..` stops at the agent's root)
//! with the agent's credentials ([`crate::session::as_agent`]), without following magic links
//! (`/proc/self/...` would name the daemon's thread), into an `O_PATH` descriptor of the socket
//! file. That descriptor is judged by device and inode against the database and control
//! sockets (as the daemon stats them, as root) and then connected to, non-blocking, through
//! `/proc/self/fd/N`: the file judged is the file connected to.
//!
//! - a database socket (configured, or named `.s.PGSQL.*` / `mysqld.sock` / `mysql.sock`):
//!   a policed session of that protocol;
//! - the daemon's control socket or its own resolver listener: refused;
//! - anything else: relayed as bytes, connected as the agent.
//!
//! At most [`MAX_IN_FLIGHT`] resolutions run at once (a thread each, counted until it ends,
//! even one stuck on a FUSE mount the agent controls); beyond that connects are refused.

use std::{
    ffi::CString,
    io,
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd},
        unix::{ffi::OsStrExt, fs::MetadataExt},
    },
    path::{Path, PathBuf},
    sync::{Arc, OnceLock},
    time::Duration,
};

use dbwarden_common::Proto;

use crate::session::{
    as_agent::{run_as, AgentCred, AgentFs},
    upstream,
};

/// Concurrent resolutions.
pub const MAX_IN_FLIGHT: usize = 64;
/// How long a resolution may take before the connection is refused.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);

fn in_flight() -> Arc<tokio::sync::Semaphore> {
    static S: OnceLock<Arc<tokio::sync::Semaphore>> = OnceLock::new();
    S.get_or_init(|| Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT)))
        .clone()
}

/// What the daemon knows to look for.
#[derive(Debug, Clone)]
pub struct ResolveSettings {
    /// Configured database sockets.
    pub databases: Vec<(PathBuf, Proto)>,
    /// Sockets no agent may reach (the control socket, the resolver itself).
    pub forbidden: Vec<PathBuf>,
    /// Treat unlisted sockets named like database sockets as databases.
    pub db_patterns: bool,
}

/// The socket an agent reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reached {
    /// A database socket: the path to show (the configured spelling when it is a configured
    /// socket, else the resolved path) and the protocol.
    Database(PathBuf, Proto),
    /// Some other socket (resolved path).
    Other(PathBuf),
}

/// The sockets that matter, by (device, inode), as the daemon sees them.
struct Known {
    forbidden: Vec<((u64, u64), PathBuf)>,
    databases: Vec<((u64, u64), PathBuf, Proto)>,
    patterns: bool,
}

impl Known {
    fn stat(s: &ResolveSettings) -> Known {
        let id = |p: &Path| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
        Known {
            forbidden: s
                .forbidden
                .iter()
                .filter_map(|p| Some((id(p)?, p.clone())))
                .collect(),
            databases: s
                .databases
                .iter()
                .filter_map(|(p, proto)| Some((id(p)?, p.clone(), *proto)))
                .collect(),
            patterns: s.db_patterns,
        }
    }
}

/// Resolves `orig` (as the agent with `pid` and `cred` would), judges it and connects to it.
///
/// # Errors
/// Why the connection is refused or failed, for the log (the agent sees its connection close).
pub async fn resolve_and_connect(
    orig: &[u8],
    pid: u32,
    cred: &AgentCred,
    s: &ResolveSettings,
) -> Result<(Reached, tokio::net::UnixStream), String> {
    let shown = crate::identity::sanitize(&String::from_utf8_lossy(orig));
    let Ok(permit) = in_flight().try_acquire_owned() else {
        return Err(format!(
            "{MAX_IN_FLIGHT} Unix connects are being resolved already; refusing {shown:?}"
        ));
    };
    let fs = AgentFs {
        root: open_path(&format!("/proc/{pid}/root"))
            .map_err(|e| format!("cannot open the agent's root (/proc/{pid}/root): {e}"))?,
        cwd: open_path(&format!("/proc/{pid}/cwd"))
            .map_err(|e| format!("cannot open the agent's cwd (/proc/{pid}/cwd): {e}"))?,
    };
    let known = Known::stat(s);
    let path = CString::new(orig).map_err(|_| format!("Unix path {shown:?} holds a NUL"))?;
    let work = async {
        let fd = run_as(cred.clone(), Some(fs), Some(permit), move || {
            openat2_in_root(&path)
        })
        .await?;
        let reached = judge(&fd, &known)?;
        let permit = in_flight().try_acquire_owned().ok();
        let std = run_as(cred.clone(), None, permit, move || connect_nonblocking(&fd)).await?;
        Ok::<_, io::Error>((reached, std))
    };
    let (reached, std) = tokio::time::timeout(RESOLVE_TIMEOUT, work)
        .await
        .map_err(|_| {
            format!(
                "Unix path {shown:?}: not resolved within {}s",
                RESOLVE_TIMEOUT.as_secs()
            )
        })?
        .map_err(|e| format!("Unix path {shown:?}: {e}"))?;
    let stream = upstream::into_tokio(std).map_err(|e| e.to_string())?;
    Ok((reached, stream))
}

fn open_path(p: &str) -> io::Result<OwnedFd> {
    let c = CString::new(p).map_err(io::Error::other)?;
    // SAFETY: valid NUL-terminated path.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_PATH | libc::O_CLOEXEC | libc::O_DIRECTORY,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh fd we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `struct open_how` (linux/openat2.h).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

const RESOLVE_NO_MAGICLINKS: u64 = 0x02;

/// Opens `path` as `O_PATH` from this thread's root and cwd (the agent's, see
/// [`AgentFs`]), refusing magic links.
fn openat2_in_root(path: &CString) -> io::Result<OwnedFd> {
    let how = OpenHow {
        flags: (libc::O_PATH | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: RESOLVE_NO_MAGICLINKS,
    };
    // SAFETY: openat2 with AT_FDCWD, a NUL-terminated path and open_how of the stated size.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            libc::AT_FDCWD,
            path.as_ptr(),
            &raw const how,
            std::mem::size_of::<OpenHow>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh fd we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Connects to the socket behind the `O_PATH` descriptor without blocking: a listener whose
/// backlog is full refuses (EAGAIN) instead of parking a daemon thread.
fn connect_nonblocking(fd: &OwnedFd) -> io::Result<std::os::unix::net::UnixStream> {
    // SAFETY: plain socket(2).
    let s = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if s < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh fd we own.
    let sock = unsafe { OwnedFd::from_raw_fd(s) };
    let via = format!("/proc/self/fd/{}", fd.as_raw_fd());
    // SAFETY: a zeroed sockaddr_un filled with a path shorter than sun_path.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (d, b) in addr.sun_path.iter_mut().zip(via.as_bytes()) {
        *d = *b as libc::c_char;
    }
    let len = (std::mem::size_of::<libc::sa_family_t>() + via.len() + 1) as libc::socklen_t;
    // SAFETY: valid socket and address of the stated length.
    let rc = unsafe { libc::connect(sock.as_raw_fd(), (&raw const addr).cast(), len) };
    if rc != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EAGAIN) {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "the listener's backlog is full",
            ));
        }
        return Err(e);
    }
    Ok(std::os::unix::net::UnixStream::from(sock))
}

/// Judges the socket file behind `fd`.
fn judge(fd: &OwnedFd, k: &Known) -> io::Result<Reached> {
    // SAFETY: fstat into a zeroed stat with a valid fd.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        // What connect(2) says for a path that is not a socket.
        return Err(io::Error::from_raw_os_error(libc::ECONNREFUSED));
    }
    let id = (st.st_dev, st.st_ino);
    if let Some((_, p)) = k.forbidden.iter().find(|(i, _)| *i == id) {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} is a dbwarden socket, closed to controlled processes",
                p.display()
            ),
        ));
    }
    if let Some((_, p, proto)) = k.databases.iter().find(|(i, _, _)| *i == id) {
        return Ok(Reached::Database(p.clone(), *proto));
    }
    let resolved = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))?;
    if k.patterns {
        if let Some(proto) = proto_by_name(&resolved) {
            return Ok(Reached::Database(resolved, proto));
        }
    }
    Ok(Reached::Other(resolved))
}

/// The protocol a socket's name suggests: `.s.PGSQL.<port>` (PostgreSQL, PgBouncer) or
/// `mysqld.sock` / `mysql.sock`.
pub fn proto_by_name(p: &Path) -> Option<Proto> {
    let name = p.file_name()?.as_bytes();
    if name.starts_with(b".s.PGSQL.") {
        Some(Proto::Postgres)
    } else if name == b"mysqld.sock" || name == b"mysql.sock" {
        Some(Proto::Mysql)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_mean_databases() {
        assert_eq!(
            proto_by_name(Path::new("/x/.s.PGSQL.5999")),
            Some(Proto::Postgres)
        );
        assert_eq!(
            proto_by_name(Path::new("/run/mysqld/mysqld.sock")),
            Some(Proto::Mysql)
        );
        assert_eq!(
            proto_by_name(Path::new("/tmp/mysql.sock")),
            Some(Proto::Mysql)
        );
        assert_eq!(
            proto_by_name(Path::new("/run/dbus/system_bus_socket")),
            None
        );
        assert_eq!(proto_by_name(Path::new("/tmp/.s.PGSQL.5432.lock/x")), None);
    }

    /// Every spelling of one socket resolves to it: symlinks, `..`, hard links, relative
    /// paths. (Runs as root: the resolution thread switches credentials.)
    #[tokio::test]
    async fn spellings_resolve_to_the_same_socket() {
        // SAFETY: no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            assert!(
                std::env::var_os("CI").is_none(),
                "needs root (CI runs as root)"
            );
            return;
        }
        let dir = std::env::temp_dir().join(format!("dbw-resolve-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("db")).unwrap();
        let sock = dir.join("db/.s.PGSQL.7777");
        let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        std::os::unix::fs::symlink(dir.join("db"), dir.join("link")).unwrap();
        std::fs::hard_link(&sock, dir.join("hard")).unwrap();
        let s = ResolveSettings {
            databases: vec![(sock.clone(), Proto::Postgres)],
            forbidden: vec![],
            db_patterns: true,
        };
        let me = std::process::id();
        let root = AgentCred {
            uid: 0,
            gid: 0,
            groups: vec![],
            cap_eff: u64::MAX,
        };
        let d = dir.display();
        for spelling in [
            format!("{d}/db/.s.PGSQL.7777"),
            format!("{d}/link/.s.PGSQL.7777"),
            format!("{d}/db/../db/./.s.PGSQL.7777"),
            format!("{d}//db//.s.PGSQL.7777"),
            format!("{d}/hard"),
        ] {
            let (r, _s) = resolve_and_connect(spelling.as_bytes(), me, &root, &s)
                .await
                .unwrap_or_else(|e| panic!("{spelling}: {e}"));
            assert_eq!(
                r,
                Reached::Database(sock.clone(), Proto::Postgres),
                "{spelling}"
            );
        }
        // Forbidden sockets are refused whatever the spelling.
        let s2 = ResolveSettings {
            forbidden: vec![sock.clone()],
            ..s.clone()
        };
        let e = resolve_and_connect(format!("{d}/hard").as_bytes(), me, &root, &s2)
            .await
            .unwrap_err();
        assert!(e.contains("dbwarden socket"), "{e}");
        // Magic links are not followed: /proc/self would be the daemon's resolver thread.
        let e = resolve_and_connect(format!("/proc/self/cwd/{d}/hard").as_bytes(), me, &root, &s)
            .await
            .unwrap_err();
        assert!(e.contains("symbolic links"), "{e}");
        // A missing path is the kernel's error.
        let e = resolve_and_connect(format!("{d}/nope").as_bytes(), me, &root, &s)
            .await
            .unwrap_err();
        assert!(e.contains("No such file"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
