//! The Unix-socket side of interception: the C programs in `ebpf/unix/` (CO-RE, a kfunc, and
//! attach types aya 0.14 cannot load), loaded and attached by libbpf, pinned beside the TCP
//! programs so they too stay in force — fail closed — when the daemon stops.
//!
//! Two modes (logged at start):
//! - `redirect` (kernel 6.7+, `cgroup/connect_unix`): every stream connect of a controlled
//!   socket to a named Unix socket is rewritten to the
//!   daemon's resolver listener, with the caller and the path it asked for recorded under the
//!   inode of the agent's socket. The daemon resolves that path as the agent would and judges
//!   the socket it reaches ([`crate::unix_resolve`]), so no spelling of a database socket path
//!   (symlink, hard link, `..`, relative to a chdir) gets past it.
//! - `lsm` (BPF LSM, for kernels without connect_unix): a guard on `unix_stream_connect`
//!   refuses (EACCES) connects whose listener is bound to a database or control socket name.
//!   Chosen when connect_unix is missing, or forced by `[intercept] unix_mode = "lsm"`. If the
//!   guard cannot be loaded either, the daemon does not start.

use std::{
    os::fd::AsRawFd,
    path::{Path, PathBuf},
};

use dbwarden_common::unix::{
    UnixConfig, UnixConn, UnixName, UnixPath, ALL_UNIX_MAPS, MAP_UNIX_CONFIG, MAP_UNIX_CONNS,
    MAP_UNIX_DENY, PROG_CONNECT_UNIX, PROG_GETPEERNAME_UNIX, PROG_UNIX_GUARD,
};
use libbpf_rs::{MapCore, MapFlags};
use tracing::{info, warn};

use crate::cgroup::Cgroup;

/// The object built by `build.rs` from `ebpf/unix/dbw_unix.bpf.c`.
static UNIX_OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/dbw_unix.bpf.o"));

/// Which Unix-socket interception to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnixMode {
    /// Redirect where the kernel can, else LSM.
    Auto,
    /// Guard only: agents' connects to database sockets are refused.
    Lsm,
    /// No Unix-socket interception at all (agents reach Unix sockets directly: a bypass,
    /// logged as such).
    Off,
}

/// What the Unix side must do.
#[derive(Debug, Clone)]
pub struct UnixSettings {
    /// Requested mode.
    pub mode: UnixMode,
    /// redirect mode: the daemon's resolver listener.
    pub resolver: PathBuf,
    /// lsm mode: listener names refused (database sockets, the control socket).
    pub deny: Vec<PathBuf>,
    /// lsm mode: also refuse unlisted sockets named like database sockets.
    pub deny_db_patterns: bool,
}

/// Errors of the Unix side; each names what failed.
#[derive(Debug, thiserror::Error)]
pub enum UnixError {
    /// libbpf failed.
    #[error("{op}: {source}")]
    Bpf {
        /// What was being done.
        op: String,
        /// Cause.
        #[source]
        source: libbpf_rs::Error,
    },
    /// Filesystem operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// Operation.
        op: &'static str,
        /// Path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A path does not fit a sockaddr_un.
    #[error("Unix socket path {0} is longer than 107 bytes or holds a NUL; choose a shorter one")]
    PathTooLong(PathBuf),
    /// The kernel cannot enforce anything for Unix sockets.
    #[error("the BPF LSM is not usable here ({0}), so connects to database Unix sockets cannot be refused; enable it (boot with lsm=...,bpf) or set [intercept] unix_mode = \"off\" to accept that agents reach Unix sockets directly")]
    NoLsm(String),
}

fn bpf(op: impl Into<String>) -> impl FnOnce(libbpf_rs::Error) -> UnixError {
    let op = op.into();
    move |source| UnixError::Bpf { op, source }
}

/// The mode actually in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActiveMode {
    /// connect_unix rewrite + guard.
    Redirect,
    /// Guard only.
    Lsm,
}

impl ActiveMode {
    /// For logs: `redirect` or `lsm`.
    pub fn name(self) -> &'static str {
        match self {
            ActiveMode::Redirect => "redirect",
            ActiveMode::Lsm => "lsm",
        }
    }
}

/// The loaded, attached and pinned Unix-socket interception.
pub struct UnixInterceptor {
    obj: libbpf_rs::Object,
    mode: ActiveMode,
}

/// A short digest of the embedded object, naming its pins.
fn object_version() -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(UNIX_OBJECT);
    d[..6].iter().map(|b| format!("{b:02x}")).collect()
}

/// Byte view of a plain repr(C) value without padding.
fn bytes_of<T: aya::Pod>(v: &T) -> &[u8] {
    // SAFETY: T is Pod (repr(C), explicit zeroed padding), so every byte is initialised.
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), std::mem::size_of::<T>()) }
}

fn key_of(p: &Path) -> Result<UnixPath, UnixError> {
    UnixPath::new(p.as_os_str().as_encoded_bytes()).ok_or_else(|| UnixError::PathTooLong(p.into()))
}

/// The spellings of a path that name the same file on a usual Linux host: as written, with
/// `/var/run` and `/run` swapped (one is a symlink to the other), and canonicalised.
pub fn spellings(p: &Path) -> Vec<PathBuf> {
    let mut out = vec![p.to_path_buf()];
    let s = p.to_string_lossy();
    if let Some(rest) = s.strip_prefix("/var/run/") {
        out.push(PathBuf::from(format!("/run/{rest}")));
    } else if let Some(rest) = s.strip_prefix("/run/") {
        out.push(PathBuf::from(format!("/var/run/{rest}")));
    }
    if let (Some(dir), Some(name)) = (p.parent(), p.file_name()) {
        if let Ok(c) = std::fs::canonicalize(dir) {
            out.push(c.join(name));
        }
    }
    out.sort();
    out.dedup();
    out
}

/// A cgroup's link directory, created.
fn link_dir(bpffs_dir: &Path, cg: &Cgroup) -> Result<PathBuf, UnixError> {
    let dir = super::loader::link_dir(bpffs_dir, cg);
    std::fs::create_dir_all(&dir).map_err(|source| UnixError::Io {
        op: "create",
        path: dir.clone(),
        source,
    })?;
    Ok(dir)
}

/// Whether the BPF LSM is in the kernel's active list. Without it an LSM program loads and
/// attaches but never runs, so this must be checked, not inferred from a successful attach.
/// securityfs is mounted if it is not yet.
fn lsm_active() -> Result<(), String> {
    let list = std::path::Path::new("/sys/kernel/security/lsm");
    if !list.exists() {
        super::loader::mount_pseudo_fs(c"securityfs", c"/sys/kernel/security")
            .map_err(|e| format!("securityfs is not mounted and mounting it failed: {e}"))?;
    }
    match std::fs::read_to_string(list) {
        Ok(l) if l.split(',').any(|x| x.trim() == "bpf") => Ok(()),
        Ok(l) => Err(format!("active LSMs: {}", l.trim())),
        Err(e) => Err(format!("/sys/kernel/security/lsm: {e}")),
    }
}

impl UnixInterceptor {
    /// Loads the programs, fills the maps, attaches to every cgroup (adopting pinned links)
    /// and pins links and maps. `None` when the mode is [`UnixMode::Off`].
    pub fn start(
        bpffs_dir: &Path,
        cgroups: &[Cgroup],
        s: &UnixSettings,
    ) -> Result<Option<UnixInterceptor>, UnixError> {
        if s.mode == UnixMode::Off {
            warn!("Unix-socket interception is off: agents reach database Unix sockets directly, unpoliced");
            return Ok(None);
        }
        let map_dir = bpffs_dir.join("unix");
        std::fs::create_dir_all(&map_dir).map_err(|source| UnixError::Io {
            op: "create",
            path: map_dir.clone(),
            source,
        })?;
        let redirect = match s.mode {
            UnixMode::Auto => match Self::load(&map_dir, true) {
                Ok(o) => Some(o),
                Err(e) => {
                    warn!(error = %e, "cgroup/connect_unix is not available; falling back to refusing agents' connects to database sockets (lsm mode)");
                    None
                }
            },
            _ => None,
        };
        let (obj, mode) = match redirect {
            Some(o) => (o, ActiveMode::Redirect),
            None => {
                lsm_active().map_err(UnixError::NoLsm)?;
                let o = Self::load(&map_dir, false).map_err(|e| UnixError::NoLsm(e.to_string()))?;
                (o, ActiveMode::Lsm)
            }
        };
        let me = UnixInterceptor { obj, mode };
        me.fill(s)?;
        if mode == ActiveMode::Redirect {
            me.attach_getpeername(bpffs_dir)?;
        }
        for cg in cgroups {
            me.attach(bpffs_dir, cg)?;
        }
        Ok(Some(me))
    }

    fn load(map_dir: &Path, redirect: bool) -> Result<libbpf_rs::Object, UnixError> {
        let mut open = libbpf_rs::ObjectBuilder::default()
            .open_memory(UNIX_OBJECT)
            .map_err(bpf("opening the Unix-socket eBPF object"))?;
        for mut m in open.maps_mut() {
            let name = m.name().to_string_lossy().into_owned();
            if ALL_UNIX_MAPS.contains(&name.as_str()) {
                m.set_pin_path(map_dir.join(&name))
                    .map_err(bpf(format!("pin path of map {name}")))?;
            }
        }
        for mut p in open.progs_mut() {
            let name = p.name().to_string_lossy().into_owned();
            if name == PROG_CONNECT_UNIX || name == PROG_GETPEERNAME_UNIX {
                p.set_autoload(redirect);
            } else if name == PROG_UNIX_GUARD {
                p.set_autoload(!redirect);
            }
        }
        open.load().map_err(bpf(if redirect {
            "loading the Unix-socket programs (redirect mode)"
        } else {
            "loading the Unix-socket guard (lsm mode)"
        }))
    }

    /// The programs this mode attaches.
    fn wanted(&self) -> &'static [&'static str] {
        match self.mode {
            ActiveMode::Redirect => &[PROG_CONNECT_UNIX],
            ActiveMode::Lsm => &[PROG_UNIX_GUARD],
        }
    }

    /// Attaches program `name` to `cg` and pins the link at `pin`.
    fn attach_and_pin(&self, name: &str, cg: &Cgroup, pin: &Path) -> Result<(), UnixError> {
        let cg_file = std::fs::File::open(&cg.path).map_err(|source| UnixError::Io {
            op: "open cgroup",
            path: cg.path.clone(),
            source,
        })?;
        let prog = self
            .obj
            .progs_mut()
            .find(|p| p.name() == name)
            .ok_or_else(|| UnixError::Io {
                op: "find program",
                path: PathBuf::from(name),
                source: std::io::ErrorKind::NotFound.into(),
            })?;
        let mut link = prog
            .attach_cgroup(cg_file.as_raw_fd())
            .map_err(bpf(format!("attaching {name} to cgroup {}", cg.name)))?;
        link.pin(pin)
            .map_err(bpf(format!("pinning {}", pin.display())))
    }

    fn attach(&self, bpffs_dir: &Path, cg: &Cgroup) -> Result<(), UnixError> {
        let dir = link_dir(bpffs_dir, cg)?;
        let version = object_version();
        for name in self.wanted() {
            // Pins carry the object's version: a previous daemon's links of the same build are
            // adopted (they use the same pinned maps); another build's are replaced, new link
            // first, so the cgroup is never without the program.
            let pin = dir.join(format!("{name}_v{version}"));
            if !pin.exists() {
                self.attach_and_pin(name, cg, &pin)?;
            }
        }
        // Links of other builds, or of the other mode, go once ours are in place.
        if let Ok(rd) = std::fs::read_dir(&dir) {
            for e in rd.flatten() {
                let f = e.file_name().to_string_lossy().into_owned();
                let ours = self.wanted().iter().any(|n| f == format!("{n}_v{version}"));
                let unix_prog = [PROG_CONNECT_UNIX, PROG_GETPEERNAME_UNIX, PROG_UNIX_GUARD]
                    .iter()
                    .any(|n| f == *n || f.starts_with(&format!("{n}_v")));
                if unix_prog && !ours {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        info!(cgroup = %cg.name, mode = self.mode.name(), "attached Unix-socket programs");
        Ok(())
    }

    /// getpeername_unix runs with the *peer* socket (the daemon's end of a redirected
    /// connection), so it goes on the daemon's own cgroup. Replaced at every start (it only
    /// hides the resolver's path; nothing fails open without it).
    fn attach_getpeername(&self, bpffs_dir: &Path) -> Result<(), UnixError> {
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let rel = own
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .unwrap_or("/")
            .trim()
            .trim_start_matches('/')
            .to_string();
        let mount = crate::cgroup::cgroup2_mount().map_err(|e| UnixError::Io {
            op: "find cgroup2 mount",
            path: PathBuf::from("/proc/mounts"),
            source: std::io::Error::other(e.to_string()),
        })?;
        let path = if rel.is_empty() {
            mount
        } else {
            mount.join(&rel)
        };
        let cg = Cgroup {
            name: "daemon".into(),
            path,
        };
        let pin = link_dir(bpffs_dir, &cg)?.join(PROG_GETPEERNAME_UNIX);
        let _ = std::fs::remove_file(&pin);
        self.attach_and_pin(PROG_GETPEERNAME_UNIX, &cg, &pin)
    }

    fn map(&self, name: &str) -> libbpf_rs::Map<'_> {
        self.obj
            .maps()
            .find(|m| m.name() == name)
            .expect("the Unix-socket object defines every map in ALL_UNIX_MAPS")
    }

    fn fill(&self, s: &UnixSettings) -> Result<(), UnixError> {
        let replace = |map: &str, paths: &[PathBuf]| -> Result<(), UnixError> {
            let m = self.map(map);
            let stale: Vec<Vec<u8>> = m.keys().collect();
            for k in stale {
                let _ = m.delete(&k);
            }
            for p in paths {
                let k = key_of(p)?;
                m.update(bytes_of(&k), &1u32.to_ne_bytes(), MapFlags::ANY)
                    .map_err(bpf(format!("{map} entry for {}", p.display())))?;
            }
            Ok(())
        };
        let deny: Vec<PathBuf> = s.deny.iter().flat_map(|p| spellings(p)).collect();
        replace(MAP_UNIX_DENY, &deny)?;
        let resolver = UnixName::new(s.resolver.as_os_str().as_encoded_bytes())
            .ok_or_else(|| UnixError::PathTooLong(s.resolver.clone()))?;
        let cfg = UnixConfig {
            ready: 1,
            deny_db_patterns: u32::from(s.deny_db_patterns),
            resolver,
        };
        self.map(MAP_UNIX_CONFIG)
            .update(&0u32.to_ne_bytes(), bytes_of(&cfg), MapFlags::ANY)
            .map_err(bpf("writing the Unix-socket configuration"))
    }

    /// Takes (looks up and deletes) the kernel record of a redirected connect, by the inode of
    /// the agent's socket (the peer of the socket the daemon accepted).
    pub fn take_conn(&self, agent_socket_ino: u64) -> Option<UnixConn> {
        let v = self
            .map(MAP_UNIX_CONNS)
            .lookup_and_delete(&agent_socket_ino.to_ne_bytes())
            .ok()
            .flatten()?;
        if v.len() != std::mem::size_of::<UnixConn>() {
            return None;
        }
        // SAFETY: UnixConn is Pod and `v` holds exactly its size; read_unaligned copes with
        // the Vec's alignment.
        Some(unsafe { std::ptr::read_unaligned(v.as_ptr().cast::<UnixConn>()) })
    }

    /// The mode in force.
    pub fn mode(&self) -> ActiveMode {
        self.mode
    }
}

/// Removes the pinned Unix-socket maps (links are removed with the TCP ones).
pub fn detach_maps(bpffs_dir: &Path) -> Vec<PathBuf> {
    let dir = bpffs_dir.join("unix");
    let mut removed = Vec::new();
    for m in ALL_UNIX_MAPS {
        let p = dir.join(m);
        if std::fs::remove_file(&p).is_ok() {
            removed.push(p);
        }
    }
    let _ = std::fs::remove_dir(&dir);
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_and_var_run_are_one_place() {
        let s = spellings(Path::new("/var/run/postgresql/.s.PGSQL.5432"));
        assert!(
            s.contains(&PathBuf::from("/run/postgresql/.s.PGSQL.5432")),
            "{s:?}"
        );
        assert!(s.contains(&PathBuf::from("/var/run/postgresql/.s.PGSQL.5432")));
        let s = spellings(Path::new("/run/mysqld/mysqld.sock"));
        assert!(
            s.contains(&PathBuf::from("/var/run/mysqld/mysqld.sock")),
            "{s:?}"
        );
    }
}
