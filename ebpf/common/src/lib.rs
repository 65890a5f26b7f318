//! Types shared between the dbwarden eBPF programs (`ebpf/programs`) and the daemon.
//!
//! Everything here is `#[repr(C)]` with explicit padding fields that both sides zero, so a key
//! built in the kernel and one built in userspace compare equal byte for byte.
//!
//! # Byte order
//! * Addresses are 16-byte IPv6 addresses in network byte order, stored as four `u32` words whose
//!   in-memory bytes are the address bytes (exactly how the kernel exposes `user_ip6`,
//!   `local_ip6`, ...). IPv4 addresses are stored IPv4-mapped (`::ffff:a.b.c.d`) so one key type
//!   serves both families.
//! * Ports are in **host** byte order.
#![no_std]

pub mod unix;

/// Name of the map (and its pin file) holding [`Config`] at index 0.
pub const MAP_CONFIG: &str = "DBW_CONFIG";
/// Name of the map of intercepted destination ports (host order `u16` → [`Proto`] as `u8`).
pub const MAP_PORTS: &str = "DBW_PORTS";
/// Name of the LPM trie of intercepted destination networks (IPv6 / IPv4-mapped prefixes).
pub const MAP_NETS: &str = "DBW_NETS";
/// Name of the LRU map socket cookie → [`ConnInfo`], written at connect time.
pub const MAP_SOCKS: &str = "DBW_SOCKS";
/// Name of the LRU map client 4-tuple ([`ConnKey`]) → [`ConnInfo`], written by sock_ops.
pub const MAP_CONNS: &str = "DBW_CONNS";

/// Program names (function names in `ebpf/programs/src/main.rs`).
pub const PROG_CONNECT4: &str = "dbw_connect4";
/// See [`PROG_CONNECT4`].
pub const PROG_CONNECT6: &str = "dbw_connect6";
/// See [`PROG_CONNECT4`].
pub const PROG_SOCK_OPS: &str = "dbw_sock_ops";
/// See [`PROG_CONNECT4`].
pub const PROG_GETPEERNAME4: &str = "dbw_getpeername4";
/// See [`PROG_CONNECT4`].
pub const PROG_GETPEERNAME6: &str = "dbw_getpeername6";
/// See [`PROG_CONNECT4`].
pub const PROG_SOCK_RELEASE: &str = "dbw_sock_release";

/// Every program, in the order the loader attaches them.
pub const ALL_PROGRAMS: [&str; 6] = [
    PROG_SOCK_OPS,
    PROG_GETPEERNAME4,
    PROG_GETPEERNAME6,
    PROG_SOCK_RELEASE,
    PROG_CONNECT4,
    PROG_CONNECT6,
];

/// Value in [`MAP_PORTS`] for a port no controlled process may connect to at all (the
/// daemon's approval API and metrics listeners).
pub const PORT_DENY: u8 = 0xff;

/// Database protocol recorded for an intercepted port.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    /// Unknown: the daemon sniffs the first bytes.
    Unknown = 0,
    /// PostgreSQL wire protocol.
    Postgres = 1,
    /// MySQL / MariaDB wire protocol.
    Mysql = 2,
}

impl Proto {
    /// Decodes the `u8` stored in maps; unknown values map to [`Proto::Unknown`].
    pub const fn from_u8(v: u8) -> Self {
        match v {
            1 => Proto::Postgres,
            2 => Proto::Mysql,
            _ => Proto::Unknown,
        }
    }
}

/// Global configuration written by the daemon (index 0 of [`MAP_CONFIG`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// Daemon listener for IPv4 (and IPv4-mapped) destinations, network order.
    pub listen_v4: u32,
    /// Daemon listener port, host order.
    pub listen_port: u16,
    /// 1 when `listen_v6` is valid (the daemon listens on an IPv6 loopback address).
    pub has_v6: u8,
    /// 1 once the daemon has written a complete configuration; until then nothing is redirected
    /// and intercepted connects are refused (fail closed).
    pub ready: u8,
    /// Daemon listener for IPv6 destinations, network order words.
    pub listen_v6: [u32; 4],
    /// Unused, always zero (was the daemon's tgid; a stale pid must never exempt anyone).
    pub _reserved: u32,
    /// Explicit padding, always zero.
    pub _pad: u32,
}

/// Client-side 4-tuple of a redirected connection, as the daemon sees it after `accept()`:
/// `client` is the peer address, `server` the daemon's local (listener) address.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ConnKey {
    /// Client (agent) address, IPv6 or IPv4-mapped, network order words.
    pub client_addr: [u32; 4],
    /// Daemon listener address, IPv6 or IPv4-mapped, network order words.
    pub server_addr: [u32; 4],
    /// Client port, host order.
    pub client_port: u16,
    /// Daemon listener port, host order.
    pub server_port: u16,
    /// Explicit padding, always zero.
    pub _pad: u32,
}

/// What the kernel knew about the connecting process and where it wanted to go.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnInfo {
    /// Original destination, IPv6 or IPv4-mapped, network order words.
    pub orig_addr: [u32; 4],
    /// Original destination port, host order.
    pub orig_port: u16,
    /// `AF_INET` (2) or `AF_INET6` (10): the family of the agent's socket.
    pub family: u16,
    /// Thread group id (the process id userspace knows).
    pub tgid: u32,
    /// Thread id of the connecting thread.
    pub pid: u32,
    /// Real uid of the caller.
    pub uid: u32,
    /// Real gid of the caller.
    pub gid: u32,
    /// [`Proto`] of the matched port as `u8`.
    pub proto: u8,
    /// Explicit padding, always zero.
    pub _pad: [u8; 3],
    /// cgroup v2 id of the caller (inode number of the cgroup directory).
    pub cgroup_id: u64,
    /// Socket cookie (stable for the socket's lifetime).
    pub cookie: u64,
    /// Kernel time (CLOCK_BOOTTIME ns, comparable with /proc start times) of the connect call.
    pub ktime_ns: u64,
    /// `comm` of the calling thread, NUL padded.
    pub comm: [u8; 16],
}

/// Builds an IPv4-mapped address (`::ffff:a.b.c.d`) from a network-order IPv4 word.
pub const fn v4_mapped(ip4_be: u32) -> [u32; 4] {
    [0, 0, u32::from_ne_bytes([0, 0, 0xff, 0xff]), ip4_be]
}

/// True when `addr` is IPv4-mapped.
pub const fn is_v4_mapped(addr: &[u32; 4]) -> bool {
    addr[0] == 0 && addr[1] == 0 && addr[2] == u32::from_ne_bytes([0, 0, 0xff, 0xff])
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain repr(C) data with explicit, zeroed padding and no invalid bit patterns.
    unsafe impl aya::Pod for super::Config {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::ConnKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::ConnInfo {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::unix::UnixPath {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::unix::UnixName {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::unix::UnixConfig {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::unix::UnixConn {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(core::mem::size_of::<Config>(), 32);
        assert_eq!(core::mem::size_of::<ConnKey>(), 40);
        assert_eq!(core::mem::size_of::<ConnInfo>(), 80);
    }

    #[test]
    fn v4_mapped_bytes() {
        let a = v4_mapped(u32::from_ne_bytes([127, 0, 0, 1]));
        let mut bytes = [0u8; 16];
        for (i, w) in a.iter().enumerate() {
            bytes[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
        }
        assert_eq!(
            core::net::Ipv6Addr::from(bytes),
            core::net::Ipv4Addr::new(127, 0, 0, 1).to_ipv6_mapped()
        );
        assert!(is_v4_mapped(&a));
    }
}
