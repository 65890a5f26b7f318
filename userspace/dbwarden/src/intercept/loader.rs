//! Loading, attaching, pinning and adopting the eBPF programs.

use std::{
    fs,
    net::{IpAddr, SocketAddr},
    os::fd::AsFd,
    path::{Path, PathBuf},
    sync::Mutex,
};

use aya::{
    maps::{lpm_trie::Key, Array, HashMap, LpmTrie, MapData},
    programs::{
        links::{FdLink, LinkError},
        CgroupAttachMode, Program,
    },
    Ebpf, EbpfLoader,
};
use dbwarden_common::{
    Config, ConnInfo, ConnKey, Proto, ALL_PROGRAMS, MAP_CONFIG, MAP_CONNS, MAP_NETS, MAP_PORTS,
    MAP_SOCKS,
};
use tracing::{debug, info, warn};

use super::addr::{addr_words, Network};
use crate::cgroup::Cgroup;

/// The eBPF object built by `build.rs`.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/dbwarden"));

const ALL_MAPS: [&str; 5] = [MAP_CONFIG, MAP_PORTS, MAP_NETS, MAP_SOCKS, MAP_CONNS];

/// What the kernel side must do.
#[derive(Debug, Clone)]
pub struct InterceptConfig {
    /// bpffs directory holding our pins (e.g. `/sys/fs/bpf/dbwarden`).
    pub bpffs_dir: PathBuf,
    /// Controlled cgroups.
    pub cgroups: Vec<Cgroup>,
    /// Intercepted destination ports and the protocol spoken there.
    pub ports: Vec<(u16, Proto)>,
    /// Intercepted destination networks.
    pub networks: Vec<Network>,
    /// Ports controlled processes may not connect to at all (the daemon's control listeners).
    pub deny_ports: Vec<u16>,
    /// The daemon's IPv4 loopback listener.
    pub listen_v4: SocketAddr,
    /// The daemon's IPv6 loopback listener, if IPv6 is available.
    pub listen_v6: Option<SocketAddr>,
}

/// Errors while loading or attaching. Each names the operation and the fix.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Not root.
    #[error(
        "loading eBPF programs needs root (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN); run with sudo"
    )]
    NotRoot,
    /// bpffs missing and could not be mounted.
    #[error("bpffs is not mounted at /sys/fs/bpf and mounting it failed ({0}); run `mount -t bpf bpf /sys/fs/bpf` or `cargo xtask setup`")]
    NoBpffs(std::io::Error),
    /// The pin directory is not on bpffs.
    #[error("{0} is not on a bpf filesystem; choose a --bpffs-dir under /sys/fs/bpf")]
    NotBpffs(PathBuf),
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
    /// aya failed to load the object.
    #[error("loading the eBPF object: {0}")]
    Ebpf(#[from] aya::EbpfError),
    /// A program failed to load or attach.
    #[error("{op} program {program} (cgroup {cgroup}): {source}")]
    Program {
        /// Operation.
        op: &'static str,
        /// Program name.
        program: &'static str,
        /// cgroup name, if any.
        cgroup: String,
        /// Cause (the verifier log is inside for load errors).
        #[source]
        source: aya::programs::ProgramError,
    },
    /// A map operation failed.
    #[error("map {map}: {source}")]
    Map {
        /// Map name.
        map: &'static str,
        /// Cause.
        #[source]
        source: aya::maps::MapError,
    },
    /// A link could not be converted for pinning.
    #[error("program {program}: link cannot be pinned: {source}")]
    Link {
        /// Program name.
        program: &'static str,
        /// Cause.
        #[source]
        source: LinkError,
    },
    /// Pinning failed.
    #[error("pinning {path}: {source}")]
    Pin {
        /// Path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: aya::pin::PinError,
    },
    /// The object lacks something we need (build mismatch).
    #[error("the embedded eBPF object has no {0}; rebuild with `cargo xtask build`")]
    Missing(&'static str),
    /// cgroup errors.
    #[error(transparent)]
    Cgroup(#[from] crate::cgroup::CgroupError),
}

/// The loaded, attached and pinned interception state.
pub struct Interceptor {
    // Keeps the programs and maps loaded while the daemon runs. The links are pinned, so they
    // survive the daemon.
    _ebpf: Ebpf,
    conns: Mutex<HashMap<MapData, ConnKey, ConnInfo>>,
    config: Array<MapData, Config>,
    /// Forwards eBPF log records into `log` (and so tracing). Must stay alive: dropping it
    /// closes the ring buffer fd.
    pub logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
    settings: InterceptConfig,
}

/// Errors unless the process can load eBPF programs (checked before anything is created).
pub fn check_privileges() -> Result<(), LoadError> {
    if is_root() {
        Ok(())
    } else {
        Err(LoadError::NotRoot)
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn on_bpffs(p: &Path) -> bool {
    // BPF_FS_MAGIC from linux/magic.h.
    const BPF_FS_MAGIC: libc::c_long = 0xcafe4a11;
    let Ok(c) = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is a valid NUL-terminated path and st a valid out pointer.
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    rc == 0 && st.f_type as libc::c_long == BPF_FS_MAGIC
}

/// Mounts bpffs at /sys/fs/bpf if it is not mounted yet.
pub fn ensure_bpffs() -> Result<(), LoadError> {
    let root = Path::new("/sys/fs/bpf");
    if on_bpffs(root) {
        return Ok(());
    }
    let _ = fs::create_dir_all(root);
    mount_pseudo_fs(c"bpf", c"/sys/fs/bpf").map_err(LoadError::NoBpffs)
}

/// Mounts the pseudo filesystem `fstype` (bpf, securityfs) at `target`.
pub(super) fn mount_pseudo_fs(
    fstype: &std::ffi::CStr,
    target: &std::ffi::CStr,
) -> std::io::Result<()> {
    // SAFETY: all pointers are valid NUL-terminated strings; data may be NULL.
    let rc = unsafe {
        libc::mount(
            fstype.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Where a cgroup's pinned links live (TCP and Unix programs alike).
pub(super) fn link_dir(bpffs_dir: &Path, cg: &Cgroup) -> PathBuf {
    let safe: String = cg
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    bpffs_dir.join("links").join(safe)
}

fn remove_tcp_pins(dir: &Path) {
    for p in ALL_PROGRAMS {
        let _ = fs::remove_file(dir.join(p));
    }
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> LoadError + 'a {
    move |source| LoadError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

impl Interceptor {
    /// Loads the programs, fills the maps, attaches to every cgroup (or adopts pinned
    /// attachments) and pins links and maps. On error nothing this call attached stays attached.
    pub fn start(settings: InterceptConfig) -> Result<Interceptor, LoadError> {
        if !is_root() {
            return Err(LoadError::NotRoot);
        }
        ensure_bpffs()?;
        fs::create_dir_all(&settings.bpffs_dir).map_err(io_err("create", &settings.bpffs_dir))?;
        if !on_bpffs(&settings.bpffs_dir) {
            return Err(LoadError::NotBpffs(settings.bpffs_dir.clone()));
        }
        for cg in &settings.cgroups {
            cg.ensure()?;
        }

        let map_paths: Vec<(&str, PathBuf)> = ALL_MAPS
            .iter()
            .map(|m| (*m, settings.bpffs_dir.join(m)))
            .collect();
        let mut loader = EbpfLoader::new();
        for (name, path) in &map_paths {
            loader.map_pin_path(name, path.as_path());
        }
        let mut ebpf = loader.load(EBPF_OBJECT)?;
        let logger = match aya_log::EbpfLogger::init(&mut ebpf) {
            Ok(l) => Some(l),
            Err(e) => {
                warn!(error = %e, "eBPF logger unavailable; kernel-side diagnostics will not be shown");
                None
            }
        };

        fill_maps(&mut ebpf, &settings)?;

        let mut attached_dirs = Vec::new();
        let result = (|| {
            for cg in &settings.cgroups {
                let dir = link_dir(&settings.bpffs_dir, cg);
                if ALL_PROGRAMS.iter().all(|p| dir.join(p).exists()) {
                    info!(cgroup = %cg.name, "adopting pinned attachment from a previous daemon");
                    continue;
                }
                // Partial state from a crash: clear it before attaching afresh (only the TCP
                // programs' pins: the Unix programs' are kept in force, see unix.rs).
                remove_tcp_pins(&dir);
                fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
                attached_dirs.push(dir.clone());
                attach_cgroup(&mut ebpf, cg, &dir)?;
                info!(cgroup = %cg.name, path = %cg.path.display(), "attached interception programs");
            }
            Ok::<(), LoadError>(())
        })();
        if let Err(e) = result {
            for d in attached_dirs {
                remove_tcp_pins(&d);
            }
            return Err(e);
        }

        let conns = HashMap::try_from(
            ebpf.take_map(MAP_CONNS)
                .ok_or(LoadError::Missing("CONNS map"))?,
        )
        .map_err(|source| LoadError::Map {
            map: MAP_CONNS,
            source,
        })?;
        let config = Array::try_from(
            ebpf.take_map(MAP_CONFIG)
                .ok_or(LoadError::Missing("CONFIG map"))?,
        )
        .map_err(|source| LoadError::Map {
            map: MAP_CONFIG,
            source,
        })?;
        Ok(Interceptor {
            _ebpf: ebpf,
            conns: Mutex::new(conns),
            config,
            logger,
            settings,
        })
    }

    /// Takes (looks up and deletes) the kernel record of an accepted connection.
    pub fn take_conn(&self, peer: SocketAddr, local: SocketAddr) -> Option<ConnInfo> {
        let key = super::key_for(peer, local);
        let mut map = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        let info = map.get(&key, 0).ok()?;
        let _ = map.remove(&key);
        Some(info)
    }

    /// The configuration in force.
    pub fn settings(&self) -> &InterceptConfig {
        &self.settings
    }

    /// Marks the kernel configuration not ready: intercepted connects are refused from now on
    /// (used on shutdown so nothing lands on a half-closed listener).
    pub fn set_ready(&mut self, ready: bool) -> Result<(), LoadError> {
        let mut cfg = self.config.get(&0, 0).map_err(|source| LoadError::Map {
            map: MAP_CONFIG,
            source,
        })?;
        cfg.ready = u8::from(ready);
        self.config.set(0, cfg, 0).map_err(|source| LoadError::Map {
            map: MAP_CONFIG,
            source,
        })
    }
}

fn fill_maps(ebpf: &mut Ebpf, s: &InterceptConfig) -> Result<(), LoadError> {
    {
        let mut ports: HashMap<&mut MapData, u16, u8> = HashMap::try_from(
            ebpf.map_mut(MAP_PORTS)
                .ok_or(LoadError::Missing("PORTS map"))?,
        )
        .map_err(|source| LoadError::Map {
            map: MAP_PORTS,
            source,
        })?;
        let stale: Vec<u16> = ports.keys().filter_map(Result::ok).collect();
        for p in stale {
            if !s.ports.iter().any(|(q, _)| *q == p) && !s.deny_ports.contains(&p) {
                let _ = ports.remove(&p);
            }
        }
        for port in &s.deny_ports {
            ports
                .insert(port, dbwarden_common::PORT_DENY, 0)
                .map_err(|source| LoadError::Map {
                    map: MAP_PORTS,
                    source,
                })?;
        }
        for (port, proto) in &s.ports {
            ports
                .insert(port, *proto as u8, 0)
                .map_err(|source| LoadError::Map {
                    map: MAP_PORTS,
                    source,
                })?;
        }
    }
    {
        let mut nets: LpmTrie<&mut MapData, [u32; 4], u8> = LpmTrie::try_from(
            ebpf.map_mut(MAP_NETS)
                .ok_or(LoadError::Missing("NETS map"))?,
        )
        .map_err(|source| LoadError::Map {
            map: MAP_NETS,
            source,
        })?;
        let stale: Vec<Key<[u32; 4]>> = nets.keys().filter_map(Result::ok).collect();
        for k in stale {
            let _ = nets.remove(&k);
        }
        for n in &s.networks {
            nets.insert(&Key::new(u32::from(n.prefix), n.words()), 1, 0)
                .map_err(|source| LoadError::Map {
                    map: MAP_NETS,
                    source,
                })?;
        }
    }
    let v4 = match s.listen_v4.ip() {
        IpAddr::V4(v4) => u32::from_ne_bytes(v4.octets()),
        IpAddr::V6(_) => 0,
    };
    let cfg = Config {
        listen_v4: v4,
        listen_port: s.listen_v4.port(),
        has_v6: u8::from(s.listen_v6.is_some()),
        ready: 1,
        listen_v6: s.listen_v6.map(|a| addr_words(a.ip())).unwrap_or_default(),
        _reserved: 0,
        _pad: 0,
    };
    if let Some(v6) = s.listen_v6 {
        if v6.port() != s.listen_v4.port() {
            warn!("IPv6 listener port differs from IPv4; using the IPv4 port for both");
        }
    }
    let mut config: Array<&mut MapData, Config> = Array::try_from(
        ebpf.map_mut(MAP_CONFIG)
            .ok_or(LoadError::Missing("CONFIG map"))?,
    )
    .map_err(|source| LoadError::Map {
        map: MAP_CONFIG,
        source,
    })?;
    config.set(0, cfg, 0).map_err(|source| LoadError::Map {
        map: MAP_CONFIG,
        source,
    })?;
    debug!(?cfg, "kernel configuration written");
    Ok(())
}

fn attach_cgroup(ebpf: &mut Ebpf, cg: &Cgroup, dir: &Path) -> Result<(), LoadError> {
    let cg_file = fs::File::open(&cg.path).map_err(io_err("open cgroup", &cg.path))?;
    for name in ALL_PROGRAMS {
        let prog = ebpf.program_mut(name).ok_or(LoadError::Missing(name))?;
        let perr = |op: &'static str| {
            let cgroup = cg.name.clone();
            move |source| LoadError::Program {
                op,
                program: name,
                cgroup,
                source,
            }
        };
        // The three program types share no trait for load/attach/take_link in aya 0.14.
        macro_rules! attach_and_take {
            ($p:expr) => {{
                let p = $p;
                if p.fd().is_err() {
                    p.load().map_err(perr("load"))?;
                }
                let id = p
                    .attach(cg_file.as_fd(), CgroupAttachMode::Single)
                    .map_err(perr("attach"))?;
                p.take_link(id)
                    .map_err(perr("take link"))?
                    .try_into()
                    .map_err(|source| LoadError::Link {
                        program: name,
                        source,
                    })?
            }};
        }
        let link: FdLink = match prog {
            Program::CgroupSockAddr(p) => attach_and_take!(p),
            Program::SockOps(p) => attach_and_take!(p),
            Program::CgroupSock(p) => attach_and_take!(p),
            _ => return Err(LoadError::Missing(name)),
        };
        let path = dir.join(name);
        link.pin(&path)
            .map_err(|source| LoadError::Pin { path, source })?;
    }
    Ok(())
}

/// Removes pinned links (for `cgroup`, or all) and, when `cgroup` is `None`, the pinned maps:
/// the programs detach as soon as no pin or process holds them.
pub fn detach(bpffs_dir: &Path, cgroup: Option<&Cgroup>) -> Result<Vec<PathBuf>, LoadError> {
    let mut removed = Vec::new();
    let dirs: Vec<PathBuf> = match cgroup {
        Some(cg) => vec![link_dir(bpffs_dir, cg)],
        None => match fs::read_dir(bpffs_dir.join("links")) {
            Ok(rd) => rd.flatten().map(|e| e.path()).collect(),
            Err(_) => Vec::new(),
        },
    };
    for d in dirs {
        if d.exists() {
            fs::remove_dir_all(&d).map_err(io_err("remove", &d))?;
            removed.push(d);
        }
    }
    if cgroup.is_none() {
        for m in ALL_MAPS {
            let p = bpffs_dir.join(m);
            if p.exists() {
                fs::remove_file(&p).map_err(io_err("remove", &p))?;
                removed.push(p);
            }
        }
        removed.extend(super::unix::detach_maps(bpffs_dir));
        let _ = fs::remove_dir(bpffs_dir.join("links"));
        let _ = fs::remove_dir(bpffs_dir);
    }
    Ok(removed)
}
