//! Map types of the Unix-socket programs (`ebpf/unix/dbw_unix.bpf.c`, written in C because
//! they need a kfunc and an attach type aya 0.14 lacks). These mirror `ebpf/unix/dbw_unix.h`
//! field for field; the layout tests here and the `_Static_assert`s there keep them equal.

/// `sizeof(sockaddr_un.sun_path)`.
pub const SUN_PATH: usize = 108;

/// Map names (and pin file names under `<bpffs_dir>/unix/`).
pub const MAP_UNIX_CONFIG: &str = "DBW_UNIX_CONFIG";
/// lsm mode: listener names refused ([`UnixPath`] → `u32`).
pub const MAP_UNIX_DENY: &str = "DBW_UNIX_DENY";
/// Inode of the agent's socket → the path it asked for ([`UnixName`]), for getpeername.
pub const MAP_UNIX_ORIG: &str = "DBW_UNIX_ORIG";
/// Inode of the agent's socket → [`UnixConn`].
pub const MAP_UNIX_CONNS: &str = "DBW_UNIX_CONNS";
/// Every pinned map of the Unix object (its per-CPU scratch map is not pinned).
pub const ALL_UNIX_MAPS: [&str; 4] = [
    MAP_UNIX_CONFIG,
    MAP_UNIX_DENY,
    MAP_UNIX_ORIG,
    MAP_UNIX_CONNS,
];

/// Program names (function names in `dbw_unix.bpf.c`).
pub const PROG_CONNECT_UNIX: &str = "dbw_connect_unix";
/// See [`PROG_CONNECT_UNIX`].
pub const PROG_GETPEERNAME_UNIX: &str = "dbw_getpeername_unix";
/// See [`PROG_CONNECT_UNIX`]. The only one attached in lsm mode.
pub const PROG_UNIX_GUARD: &str = "dbw_unix_guard";

/// A socket path, NUL padded (map key).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnixPath {
    /// The path bytes, then zeros.
    pub path: [u8; SUN_PATH],
}

/// A path and the number of its bytes that count (strlen + 1).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnixName {
    /// The path bytes, then zeros.
    pub path: [u8; SUN_PATH],
    /// strlen + 1 (at most 108).
    pub len: u32,
}

/// Index 0 of [`MAP_UNIX_CONFIG`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnixConfig {
    /// 1 once every map is filled; until then intercepted connects are refused.
    pub ready: u32,
    /// lsm mode: also refuse unlisted listeners named like database sockets.
    pub deny_db_patterns: u32,
    /// redirect mode: the daemon's resolver listener.
    pub resolver: UnixName,
}

/// What the daemon learns about a redirected connect.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnixConn {
    /// The caller (family `AF_UNIX`, no address).
    pub info: crate::ConnInfo,
    /// The path it asked for, as written.
    pub orig: UnixName,
}

impl UnixPath {
    /// The key for `path`, or `None` if it does not fit (107 bytes at most) or holds a NUL.
    pub fn new(path: &[u8]) -> Option<UnixPath> {
        if path.is_empty() || path.len() >= SUN_PATH || path.contains(&0) {
            return None;
        }
        let mut p = [0u8; SUN_PATH];
        p[..path.len()].copy_from_slice(path);
        Some(UnixPath { path: p })
    }
}

impl UnixName {
    /// The bytes that count, without the NUL.
    pub fn bytes(&self) -> &[u8] {
        let n = (self.len as usize).min(SUN_PATH);
        let s = &self.path[..n];
        s.iter().position(|b| *b == 0).map_or(s, |i| &s[..i])
    }

    /// The name for `path` (same limits as [`UnixPath::new`]).
    pub fn new(path: &[u8]) -> Option<UnixName> {
        let k = UnixPath::new(path)?;
        Some(UnixName {
            path: k.path,
            len: path.len() as u32 + 1,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_match_the_c_header() {
        assert_eq!(core::mem::size_of::<UnixPath>(), 108);
        assert_eq!(core::mem::size_of::<UnixName>(), 112);
        assert_eq!(core::mem::size_of::<UnixConfig>(), 120);
        assert_eq!(core::mem::size_of::<UnixConn>(), 192);
    }

    #[test]
    fn paths_are_nul_padded_and_bounded() {
        let k = UnixPath::new(b"/run/x.sock").unwrap();
        assert_eq!(&k.path[..11], b"/run/x.sock");
        assert!(k.path[11..].iter().all(|b| *b == 0));
        assert_eq!(UnixName::new(b"/a").unwrap().len, 3);
        assert!(UnixPath::new(&[b'a'; 108]).is_none());
        assert!(UnixPath::new(&[b'a'; 107]).is_some());
        assert!(UnixPath::new(b"a\0b").is_none());
        assert!(UnixPath::new(b"").is_none());
    }
}
