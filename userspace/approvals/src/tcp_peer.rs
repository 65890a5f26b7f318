//! The local process on the other end of a loopback TCP connection, for the HTTP API's
//! approver checks.
//!
//! The kernel's socket tables (`/proc/net/tcp`, `/proc/net/tcp6`, of the reader's network
//! namespace) list the client's socket as the row whose local address is the connection's
//! peer address and whose remote address is our local address; its `uid` column is the
//! socket's owner and its `inode` names the socket. The processes holding it are found by
//! scanning `/proc/*/fd` for `socket:[inode]` (every holder is returned: a socket passed to
//! or inherited by another process acts for all of them).
//!
//! Table format: addresses are hex dumps of the kernel's in-memory values, `%08X` per
//! 32-bit word in host byte order (IPv4: one word, IPv6: four), and the port is `%04X` of
//! the host-order port. On x86 `127.0.0.1:8080` is `0100007F:1F90`.

use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// One row of a `/proc/net/tcp{,6}` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpRow {
    /// Local address.
    pub local: SocketAddr,
    /// Remote address.
    pub remote: SocketAddr,
    /// Owner uid of the socket.
    pub uid: u32,
    /// Socket inode (0 for sockets without a file, e.g. `TIME_WAIT`).
    pub inode: u64,
}

/// The client side of a connection: socket owner and the processes holding the socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpPeer {
    /// Owner uid of the client socket.
    pub uid: u32,
    /// Socket inode.
    pub inode: u64,
    /// Processes holding the socket (never empty).
    pub pids: Vec<u32>,
}

/// Parses one address field (`0100007F:1F90`, or 32 hex digits and a port for IPv6).
#[must_use]
pub fn parse_addr(field: &str) -> Option<SocketAddr> {
    let (ip, port) = field.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |s: &str| u32::from_str_radix(s, 16).ok().map(u32::to_ne_bytes);
    let ip = match ip.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(ip)?)),
        32 => {
            let mut b = [0u8; 16];
            for (i, chunk) in b.chunks_exact_mut(4).enumerate() {
                chunk.copy_from_slice(&word(ip.get(i * 8..i * 8 + 8)?)?);
            }
            IpAddr::V6(Ipv6Addr::from(b))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// Parses a whole table; the header and malformed lines are skipped.
#[must_use]
pub fn parse_table(text: &str) -> Vec<TcpRow> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 || !f[0].ends_with(':') {
                return None;
            }
            Some(TcpRow {
                local: parse_addr(f[1])?,
                remote: parse_addr(f[2])?,
                uid: f[7].parse().ok()?,
                inode: f[9].parse().ok()?,
            })
        })
        .collect()
}

/// IPv4-mapped IPv6 addresses as IPv4, so both tables compare alike.
fn canonical(a: SocketAddr) -> SocketAddr {
    match a.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), a.port()),
            None => a,
        },
        IpAddr::V4(_) => a,
    }
}

/// The client socket of the connection whose peer is `peer` and whose local end is `local`.
#[must_use]
pub fn find_client_row(rows: &[TcpRow], peer: SocketAddr, local: SocketAddr) -> Option<&TcpRow> {
    let (peer, local) = (canonical(peer), canonical(local));
    rows.iter()
        .find(|r| r.inode != 0 && canonical(r.local) == peer && canonical(r.remote) == local)
}

/// Pids whose fd table holds `socket:[inode]`. Processes that vanish or cannot be read
/// while scanning are skipped (as root every live process is readable).
#[must_use]
pub fn socket_holders(inode: u64) -> Vec<u32> {
    let target = format!("socket:[{inode}]");
    let Ok(procs) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = procs
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
                fds.flatten().any(|fd| {
                    fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == target.as_str())
                })
            })
        })
        .collect();
    pids.sort_unstable();
    pids
}

/// Resolves the local client of a TCP connection (`peer` as returned by `accept`, `local`
/// our end).
///
/// # Errors
/// Why not: tables unreadable, no such client socket in this network namespace (the client
/// is not local, or already closed it), or no process holds it.
pub fn resolve(peer: SocketAddr, local: SocketAddr) -> Result<TcpPeer, String> {
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        match fs::read_to_string(table) {
            Ok(t) => rows.extend(parse_table(&t)),
            Err(e) => errors.push(format!("{table}: {e}")),
        }
    }
    let Some(row) = find_client_row(&rows, peer, local) else {
        return Err(if errors.is_empty() {
            format!("no local socket {peer} connected to {local} in /proc/net/tcp{{,6}}")
        } else {
            errors.join("; ")
        });
    };
    let pids = socket_holders(row.inode);
    if pids.is_empty() {
        return Err(format!(
            "no process holds the client socket {peer} (inode {})",
            row.inode
        ));
    }
    Ok(TcpPeer {
        uid: row.uid,
        inode: row.inode,
        pids,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Real lines from this kernel (x86_64, little endian).
    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1D11 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 31337 1 0000000000000000 100 0 0 10 0
   1: 0100007F:A2C4 0100007F:1D11 01 00000000:00000000 00:00000000 00000000  1000        0 424242 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:1D11 0100007F:A2C4 01 00000000:00000000 00:00000000 00000000     0        0 424243 1 0000000000000000 20 4 30 10 -1
   3: 0100007F:A2C5 0100007F:1D11 06 00000000:00000000 03:00001234 00000000     0        0 0 3 0000000000000000
";

    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:1D11 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5000 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000001000000:D431 00000000000000000000000001000000:1D11 01 00000000:00000000 00:00000000 00000000    33        0 5001 1 0000000000000000 20 4 30 10 -1
   2: 0000000000000000FFFF00000100007F:D432 0000000000000000FFFF00000100007F:1D12 01 00000000:00000000 00:00000000 00000000    34        0 5002 1 0000000000000000 20 4 30 10 -1
   3: B80D0120000000000000000001000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5003 1 0000000000000000 100 0 0 10 0
";

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn ipv4_hex_is_host_order_words() {
        assert_eq!(parse_addr("0100007F:1F90"), Some(sa("127.0.0.1:8080")));
        assert_eq!(parse_addr("0101A8C0:0016"), Some(sa("192.168.1.1:22")));
        assert_eq!(parse_addr("00000000:0000"), Some(sa("0.0.0.0:0")));
        assert_eq!(parse_addr("0100007F"), None);
        assert_eq!(parse_addr("0100007:1F90"), None);
        assert_eq!(parse_addr("0100007G:1F90"), None);
        assert_eq!(parse_addr("0100007F:1F90F"), None);
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn ipv6_hex_is_four_host_order_words() {
        assert_eq!(
            parse_addr("00000000000000000000000001000000:1D11"),
            Some(sa("[::1]:7441"))
        );
        // 2001:db8::1 → words 0x20010db8, 0, 0, 1, each printed little-endian.
        assert_eq!(
            parse_addr("B80D0120000000000000000001000000:0050"),
            Some(sa("[2001:db8::1]:80"))
        );
        assert_eq!(
            parse_addr("0000000000000000FFFF00000100007F:D432"),
            Some(sa("[::ffff:127.0.0.1]:54322"))
        );
        assert_eq!(parse_addr("000000000000000000000000010000:1D11"), None);
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn table_rows_and_client_lookup() {
        let rows = parse_table(TCP);
        assert_eq!(rows.len(), 4, "header skipped");
        assert_eq!(rows[1].uid, 1000);
        assert_eq!(rows[1].inode, 424_242);
        // The server (127.0.0.1:7441) accepted a client from 127.0.0.1:41668: the client's
        // row is the one with local = peer, remote = us, not the server's own socket.
        let c = find_client_row(&rows, sa("127.0.0.1:41668"), sa("127.0.0.1:7441")).unwrap();
        assert_eq!((c.uid, c.inode), (1000, 424_242));
        // TIME_WAIT rows have no inode and never match.
        assert!(find_client_row(&rows, sa("127.0.0.1:41669"), sa("127.0.0.1:7441")).is_none());
        assert!(find_client_row(&rows, sa("127.0.0.1:1"), sa("127.0.0.1:7441")).is_none());

        let rows6 = parse_table(TCP6);
        assert_eq!(rows6.len(), 4);
        let c = find_client_row(&rows6, sa("[::1]:54321"), sa("[::1]:7441")).unwrap();
        assert_eq!((c.uid, c.inode), (33, 5001));
        // A v4-mapped client on a dual-stack socket, as accept reports it or as IPv4.
        let c = find_client_row(&rows6, sa("[::ffff:127.0.0.1]:54322"), sa("127.0.0.1:7442"));
        assert_eq!(c.map(|r| r.inode), Some(5002));
        let c = find_client_row(&rows6, sa("127.0.0.1:54322"), sa("[::ffff:127.0.0.1]:7442"));
        assert_eq!(c.map(|r| r.inode), Some(5002));
        assert!(parse_table("garbage\n 0: x y\n").is_empty());
    }

    #[test]
    fn resolves_a_live_loopback_connection_to_this_process() {
        for addr in ["127.0.0.1:0", "[::1]:0"] {
            let Ok(l) = std::net::TcpListener::bind(addr) else {
                continue; // no IPv6 loopback here
            };
            let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
            let (_s, peer) = l.accept().unwrap();
            let p = resolve(peer, l.local_addr().unwrap()).unwrap();
            // SAFETY: geteuid has no preconditions.
            assert_eq!(p.uid, unsafe { libc::geteuid() });
            assert_eq!(p.pids, vec![std::process::id()], "{addr}");
            drop(c);
        }
        let e = resolve(sa("127.0.0.1:1"), sa("127.0.0.1:2")).unwrap_err();
        assert!(e.contains("no local socket"), "{e}");
    }
}
