//! The programs, attached to every controlled cgroup v2 directory:
//!
//! | program              | hook                          | job                                              |
//! |----------------------|-------------------------------|--------------------------------------------------|
//! | `dbw_connect4/6`     | `cgroup/connect4`, `connect6` | redirect intercepted TCP connects to the daemon, |
//! |                      |                               | record destination + caller identity by cookie   |
//! | `dbw_sock_ops`       | `sockops` (TCP_CONNECT_CB)    | re-key the record by the client 4-tuple          |
//! | `dbw_getpeername4/6` | `cgroup/getpeername4/6`       | show the agent the address it asked for          |
//! | `dbw_sock_release`   | `cgroup/sock_release`         | forget the socket's cookie record                |
//!
//! Minimum kernel: 5.8 (getpeername hooks, `bpf_get_socket_cookie` in sock_addr programs).
//! Fail closed: if the daemon has not written a complete [`Config`] yet, or a record cannot be
//! stored, an intercepted connect is refused (return 0 ⇒ `EPERM`), never let through.

use aya_ebpf::{
    bindings::{bpf_sock_addr, BPF_SOCK_OPS_TCP_CONNECT_CB},
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
        bpf_get_current_uid_gid,
        generated::{bpf_get_socket_cookie, bpf_ktime_get_boot_ns},
    },
    macros::{cgroup_sock, cgroup_sock_addr, map, sock_ops},
    maps::{lpm_trie::Key, Array, HashMap, LpmTrie, LruHashMap},
    programs::{SockAddrContext, SockContext, SockOpsContext},
};
use aya_log_ebpf::{debug, warn};
use core::ptr::{addr_of, addr_of_mut, read_volatile, write_volatile};
use dbwarden_common::{v4_mapped, Config, ConnInfo, ConnKey, PORT_DENY};

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
const SOCK_STREAM: u32 = 1;
const IPPROTO_TCP: u32 = 6;

/// Allow the syscall to proceed (possibly with a rewritten address).
const PASS: i32 = 1;
/// Refuse the syscall with `EPERM`.
const REFUSE: i32 = 0;

#[map(name = "DBW_CONFIG")]
static CONFIG: Array<Config> = Array::with_max_entries(1, 0);

#[map(name = "DBW_PORTS")]
static PORTS: HashMap<u16, u8> = HashMap::with_max_entries(64, 0);

#[map(name = "DBW_NETS")]
static NETS: LpmTrie<[u32; 4], u8> = LpmTrie::with_max_entries(256, 0);

#[map(name = "DBW_SOCKS")]
static SOCKS: LruHashMap<u64, ConnInfo> = LruHashMap::with_max_entries(65536, 0);

#[map(name = "DBW_CONNS")]
static CONNS: LruHashMap<ConnKey, ConnInfo> = LruHashMap::with_max_entries(65536, 0);

#[cgroup_sock_addr(connect4)]
pub fn dbw_connect4(ctx: SockAddrContext) -> i32 {
    let sa = ctx.sock_addr;
    // SAFETY: the kernel hands us a valid bpf_sock_addr; 4-byte reads of these fields are allowed.
    let (ty, proto, ip4, port_be) =
        unsafe { ((*sa).type_, (*sa).protocol, (*sa).user_ip4, (*sa).user_port) };
    if ty != SOCK_STREAM || (proto != IPPROTO_TCP && proto != 0) {
        return PASS;
    }
    let dest = v4_mapped(ip4);
    let port = u16::from_be(port_be as u16);
    let Some(cfg) = intercepted(&dest, port) else {
        return PASS;
    };
    let Some(cfg) = cfg else {
        warn!(
            &ctx,
            "dbwarden: refusing connect to port {}: denied port or daemon not ready", port
        );
        return REFUSE;
    };
    if !record(&ctx, sa, &dest, port, AF_INET) {
        return REFUSE;
    }
    // SAFETY: as above; the kernel allows writing user_ip4/user_port in connect4.
    unsafe {
        (*sa).user_ip4 = cfg.listen_v4;
        (*sa).user_port = u32::from(cfg.listen_port.to_be());
    }
    PASS
}

#[cgroup_sock_addr(connect6)]
pub fn dbw_connect6(ctx: SockAddrContext) -> i32 {
    let sa = ctx.sock_addr;
    // SAFETY: valid context; IPv6 words are read one u32 at a time as the verifier requires.
    let (ty, proto, port_be) = unsafe { ((*sa).type_, (*sa).protocol, (*sa).user_port) };
    if ty != SOCK_STREAM || (proto != IPPROTO_TCP && proto != 0) {
        return PASS;
    }
    let dest = unsafe {
        [
            read_volatile(addr_of!((*sa).user_ip6[0])),
            read_volatile(addr_of!((*sa).user_ip6[1])),
            read_volatile(addr_of!((*sa).user_ip6[2])),
            read_volatile(addr_of!((*sa).user_ip6[3])),
        ]
    };
    let port = u16::from_be(port_be as u16);
    let Some(cfg) = intercepted(&dest, port) else {
        return PASS;
    };
    let Some(cfg) = cfg else {
        warn!(
            &ctx,
            "dbwarden: refusing connect6 to port {}: denied port or daemon not ready", port
        );
        return REFUSE;
    };
    let mapped = dbwarden_common::is_v4_mapped(&dest);
    if !mapped && cfg.has_v6 == 0 {
        warn!(
            &ctx,
            "dbwarden: refusing IPv6 connect to port {}: no IPv6 listener", port
        );
        return REFUSE;
    }
    if !record(&ctx, sa, &dest, port, AF_INET6) {
        return REFUSE;
    }
    let to = if mapped {
        v4_mapped(cfg.listen_v4)
    } else {
        cfg.listen_v6
    };
    // SAFETY: connect6 may rewrite user_ip6 (word by word) and user_port.
    unsafe {
        write_volatile(addr_of_mut!((*sa).user_ip6[0]), to[0]);
        write_volatile(addr_of_mut!((*sa).user_ip6[1]), to[1]);
        write_volatile(addr_of_mut!((*sa).user_ip6[2]), to[2]);
        write_volatile(addr_of_mut!((*sa).user_ip6[3]), to[3]);
        (*sa).user_port = u32::from(cfg.listen_port.to_be());
    }
    PASS
}

/// `None`: not intercepted. `Some(None)`: refuse (a denied port, or the daemon is not ready).
/// `Some(Some(cfg))`: redirect to the daemon described by `cfg`.
#[inline(always)]
fn intercepted(dest: &[u32; 4], port: u16) -> Option<Option<&'static Config>> {
    // SAFETY: read-only lookup of a plain value; the daemon writes it before attaching.
    let proto = unsafe { PORTS.get(&port) }.copied()?;
    if proto == PORT_DENY {
        // The daemon's own control ports (approval API, metrics): never reachable from a
        // controlled cgroup, whatever address spells the host.
        return Some(None);
    }
    NETS.get(&Key::new(128, *dest))?;
    // No exemption by pid: a pid written by a daemon that crashed could be reused by an agent.
    // The daemon refuses to run inside a controlled cgroup instead.
    let cfg = CONFIG.get(0)?;
    if cfg.ready == 0 || cfg.listen_port == 0 {
        return Some(None);
    }
    Some(Some(cfg))
}

/// Stores destination and caller identity under the socket cookie. Returns false on failure.
#[inline(always)]
fn record(
    ctx: &SockAddrContext,
    sa: *mut bpf_sock_addr,
    dest: &[u32; 4],
    port: u16,
    family: u16,
) -> bool {
    // SAFETY: sa is the program's context pointer, valid for bpf_get_socket_cookie.
    let cookie = unsafe { bpf_get_socket_cookie(sa.cast()) };
    let pid_tgid = bpf_get_current_pid_tgid();
    let uid_gid = bpf_get_current_uid_gid();
    // SAFETY: no preconditions.
    let cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    let proto = unsafe { PORTS.get(&port) }.copied().unwrap_or(0);
    let info = ConnInfo {
        orig_addr: *dest,
        orig_port: port,
        family,
        tgid: (pid_tgid >> 32) as u32,
        pid: pid_tgid as u32,
        uid: uid_gid as u32,
        gid: (uid_gid >> 32) as u32,
        proto,
        _pad: [0; 3],
        cgroup_id,
        cookie,
        // SAFETY: no preconditions.
        ktime_ns: unsafe { bpf_ktime_get_boot_ns() },
        comm: bpf_get_current_comm().unwrap_or([0; 16]),
    };
    match SOCKS.insert(&cookie, &info, 0) {
        Ok(()) => {
            debug!(
                ctx,
                "dbwarden: redirect tgid {} uid {} port {} cookie {}",
                info.tgid,
                info.uid,
                port,
                cookie
            );
            true
        }
        Err(e) => {
            warn!(
                ctx,
                "dbwarden: cannot record connection (err {}), refusing", e
            );
            false
        }
    }
}

#[sock_ops]
pub fn dbw_sock_ops(ctx: SockOpsContext) -> u32 {
    if ctx.op() != BPF_SOCK_OPS_TCP_CONNECT_CB {
        return 1;
    }
    // SAFETY: ctx.ops is the program's context pointer.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.ops.cast()) };
    // SAFETY: the value is copied out immediately.
    let Some(info) = (unsafe { SOCKS.get(&cookie) }).copied() else {
        return 1;
    };
    let ops = ctx.ops;
    // Context fields are read with volatile loads at constant offsets: the verifier rejects
    // "dereference of modified ctx ptr", which LLVM produces when it folds array indexing into
    // pointer arithmetic (seen on 6.18: `r9 = r6; r9 += r3; *(u32 *)(r9 +0)`).
    // SAFETY: ops is the valid context pointer; every read is a naturally aligned u32 field.
    // All fields are loaded unconditionally and the family only selects between values:
    // otherwise LLVM merges the two branches into a variable offset (24 or 44), which the
    // verifier refuses.
    // SAFETY: ops is the valid context pointer; every read is a naturally aligned u32 field.
    let (family, l4, r4, l6, r6, lport, rport) = unsafe {
        (
            read_volatile(addr_of!((*ops).family)) as u16,
            read_volatile(addr_of!((*ops).local_ip4)),
            read_volatile(addr_of!((*ops).remote_ip4)),
            [
                read_volatile(addr_of!((*ops).local_ip6[0])),
                read_volatile(addr_of!((*ops).local_ip6[1])),
                read_volatile(addr_of!((*ops).local_ip6[2])),
                read_volatile(addr_of!((*ops).local_ip6[3])),
            ],
            [
                read_volatile(addr_of!((*ops).remote_ip6[0])),
                read_volatile(addr_of!((*ops).remote_ip6[1])),
                read_volatile(addr_of!((*ops).remote_ip6[2])),
                read_volatile(addr_of!((*ops).remote_ip6[3])),
            ],
            read_volatile(addr_of!((*ops).local_port)),
            read_volatile(addr_of!((*ops).remote_port)),
        )
    };
    let (client_addr, server_addr) = if family == AF_INET {
        (v4_mapped(l4), v4_mapped(r4))
    } else {
        (l6, r6)
    };
    let key = ConnKey {
        client_addr,
        server_addr,
        // local_port is host order; remote_port holds the network-order port in its upper half
        // (checked on 6.18; see notes.md §2).
        client_port: lport as u16,
        server_port: u16::from_be((rport >> 16) as u16),
        _pad: 0,
    };
    if CONNS.insert(&key, &info, 0).is_err() {
        warn!(&ctx, "dbwarden: cannot re-key connection cookie {}", cookie);
    }
    1
}

#[cgroup_sock_addr(getpeername4)]
pub fn dbw_getpeername4(ctx: SockAddrContext) -> i32 {
    let sa = ctx.sock_addr;
    // SAFETY: valid context pointer.
    let cookie = unsafe { bpf_get_socket_cookie(sa.cast()) };
    // SAFETY: copied out immediately.
    if let Some(info) = unsafe { SOCKS.get(&cookie) }.copied() {
        // SAFETY: getpeername4 may rewrite the returned address.
        unsafe {
            (*sa).user_ip4 = info.orig_addr[3];
            (*sa).user_port = u32::from(info.orig_port.to_be());
        }
    }
    PASS
}

#[cgroup_sock_addr(getpeername6)]
pub fn dbw_getpeername6(ctx: SockAddrContext) -> i32 {
    let sa = ctx.sock_addr;
    // SAFETY: valid context pointer.
    let cookie = unsafe { bpf_get_socket_cookie(sa.cast()) };
    // SAFETY: copied out immediately.
    if let Some(info) = unsafe { SOCKS.get(&cookie) }.copied() {
        // SAFETY: getpeername6 may rewrite the returned address, word by word.
        unsafe {
            write_volatile(addr_of_mut!((*sa).user_ip6[0]), info.orig_addr[0]);
            write_volatile(addr_of_mut!((*sa).user_ip6[1]), info.orig_addr[1]);
            write_volatile(addr_of_mut!((*sa).user_ip6[2]), info.orig_addr[2]);
            write_volatile(addr_of_mut!((*sa).user_ip6[3]), info.orig_addr[3]);
            (*sa).user_port = u32::from(info.orig_port.to_be());
        }
    }
    PASS
}

#[cgroup_sock(sock_release)]
pub fn dbw_sock_release(ctx: SockContext) -> i32 {
    // SAFETY: valid context pointer.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.sock.cast()) };
    let _ = SOCKS.remove(&cookie);
    1
}

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // SAFETY: the verifier rejects programs that could reach a panic; this is never executed.
    unsafe { core::hint::unreachable_unchecked() }
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
