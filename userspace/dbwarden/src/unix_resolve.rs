//! Where a redirected Unix connect wanted to go, decided by the daemon.
//!
//! The connect program hands over the path the agent wrote, unresolved. The daemon resolves it
//! exactly as the kernel would have for the agent: relative to the agent's root and working
//! directory (`/proc/<pid>/root`, `/proc/<pid>/cwd`, opened before anything else so a chdir
//! cannot race it), with the agent's credentials (a credential-switched thread), into an
//! `O_PATH` descriptor of the socket file. That descriptor is then both judged (by device
//! and inode, against the database and control sockets) and connected to (through
//! `/proc/self/fd/N`), so the file judged is the file connected to: swapping a symlink in
//! between changes nothing.
//!
//! - a database socket (configured, or named `.s.PGSQL.*` / `mysqld.sock` / `mysql.sock`):
//!   a policed session of that protocol;
//! - the daemon's control socket or its own resolver listener: refused;
//! - anything else: relayed as bytes, connected as the agent.

use std::{
    ffi::CString,
    io,
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd},
        unix::{ffi::OsStrExt, fs::FileTypeExt, fs::MetadataExt},
    },
    path::{Path, PathBuf},
};

use dbwarden_common::Proto;

use crate::session::upstream::{self, AgentCred};

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
    let path = PathBuf::from(std::ffi::OsStr::from_bytes(orig));
    let base = if path.is_absolute() { "root" } else { "cwd" };
    let dir = open_path(&format!("/proc/{pid}/{base}"), libc::O_DIRECTORY)
        .map_err(|e| format!("cannot open the agent's {base} (/proc/{pid}/{base}): {e}"))?;
    let s = s.clone();
    let absolute = path.is_absolute();
    let shown = crate::identity::sanitize(&path.to_string_lossy());
    let (reached, std) = upstream::run_as(cred.clone(), move || {
        let fd = openat2_path(&dir, &path, absolute)?;
        let reached = judge(&fd, &s)?;
        let via = format!("/proc/self/fd/{}", fd.as_raw_fd());
        let stream = std::os::unix::net::UnixStream::connect(via)?;
        Ok((reached, stream))
    })
    .await
    .map_err(|e| format!("Unix path {shown:?}: {e}"))?;
    let stream = upstream::into_tokio(std).map_err(|e| e.to_string())?;
    Ok((reached, stream))
}

fn open_path(p: &str, extra: libc::c_int) -> io::Result<OwnedFd> {
    let c = CString::new(p).map_err(io::Error::other)?;
    // SAFETY: valid NUL-terminated path.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_CLOEXEC | extra) };
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
const RESOLVE_IN_ROOT: u64 = 0x10;

/// Opens `path` below `dir` as `O_PATH`: an absolute path inside the agent's root (its
/// absolute symlinks too), a relative one from its working directory.
fn openat2_path(dir: &OwnedFd, path: &Path, in_root: bool) -> io::Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let how = OpenHow {
        flags: (libc::O_PATH | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: if in_root { RESOLVE_IN_ROOT } else { 0 },
    };
    // SAFETY: openat2 with a valid dirfd, NUL-terminated path and open_how of the stated size.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            c.as_ptr(),
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

/// Judges the socket file behind `fd`.
fn judge(fd: &OwnedFd, s: &ResolveSettings) -> io::Result<Reached> {
    let link = format!("/proc/self/fd/{}", fd.as_raw_fd());
    let meta = std::fs::metadata(&link)?;
    if !meta.file_type().is_socket() {
        // What connect(2) says for a path that is not a socket.
        return Err(io::Error::from_raw_os_error(libc::ECONNREFUSED));
    }
    let id = (meta.dev(), meta.ino());
    let same = |p: &Path| std::fs::metadata(p).is_ok_and(|m| (m.dev(), m.ino()) == id);
    if let Some(p) = s.forbidden.iter().find(|p| same(p)) {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} is a dbwarden socket, closed to controlled processes",
                p.display()
            ),
        ));
    }
    if let Some((p, proto)) = s.databases.iter().find(|(p, _)| same(p)) {
        return Ok(Reached::Database(p.clone(), *proto));
    }
    let resolved = std::fs::read_link(&link)?;
    if s.db_patterns {
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
        // A missing path is the kernel's error.
        let e = resolve_and_connect(format!("{d}/nope").as_bytes(), me, &root, &s)
            .await
            .unwrap_err();
        assert!(e.contains("No such file"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
