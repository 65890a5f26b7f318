//! The peer of a connected Unix socket, by inode, from the kernel's `sock_diag` netlink
//! interface (`UNIX_DIAG_PEER`, the same query `ss -x` makes). The daemon uses it to find the
//! record its connect program wrote for the agent's socket: the inode is the kernel's own
//! name for that socket, fixed when the socket was created, and never chosen by the agent.

use std::{io, mem::size_of, os::fd::AsRawFd};

const NETLINK_SOCK_DIAG: libc::c_int = 4;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const UDIAG_SHOW_PEER: u32 = 0x4;
const UNIX_DIAG_PEER: u16 = 2;

/// `struct unix_diag_req` (linux/unix_diag.h).
#[repr(C)]
struct UnixDiagReq {
    family: u8,
    protocol: u8,
    pad: u16,
    states: u32,
    ino: u32,
    show: u32,
    cookie: [u32; 2],
}

#[repr(C)]
struct Request {
    nlh: libc::nlmsghdr,
    req: UnixDiagReq,
}

/// The inode of the socket connected to `fd` (a Unix stream socket).
///
/// # Errors
/// The fd is not a connected Unix socket, or the kernel has no diag support.
pub fn unix_peer_inode(fd: &impl AsRawFd) -> io::Result<u64> {
    // SAFETY: fstat into a zeroed stat.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd and out pointer.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let ino =
        u32::try_from(st.st_ino).map_err(|_| io::Error::other("socket inode beyond 32 bits"))?;
    // SAFETY: plain socket(2).
    let nl = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            NETLINK_SOCK_DIAG,
        )
    };
    if nl < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: nl is a fresh fd we own.
    let nl = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(nl) };
    let req = Request {
        nlh: libc::nlmsghdr {
            nlmsg_len: size_of::<Request>() as u32,
            nlmsg_type: SOCK_DIAG_BY_FAMILY,
            nlmsg_flags: libc::NLM_F_REQUEST as u16,
            nlmsg_seq: 1,
            nlmsg_pid: 0,
        },
        req: UnixDiagReq {
            family: libc::AF_UNIX as u8,
            protocol: 0,
            pad: 0,
            states: u32::MAX,
            ino,
            show: UDIAG_SHOW_PEER,
            cookie: [u32::MAX, u32::MAX],
        },
    };
    // SAFETY: sending a fully initialised repr(C) request.
    let sent = unsafe {
        libc::send(
            nl.as_raw_fd(),
            (&raw const req).cast(),
            size_of::<Request>(),
            0,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = [0u8; 1024];
    // SAFETY: receiving into a local buffer of the stated size.
    let n = unsafe { libc::recv(nl.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    parse_peer(&buf[..n as usize], ino)
}

/// Finds `UNIX_DIAG_PEER` in the answer for socket `ino`.
fn parse_peer(b: &[u8], ino: u32) -> io::Result<u64> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("sock_diag: {what}"));
    let hdr = size_of::<libc::nlmsghdr>();
    if b.len() < hdr {
        return Err(bad("short answer"));
    }
    let len = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize;
    let ty = u16::from_ne_bytes([b[4], b[5]]);
    if ty == libc::NLMSG_ERROR as u16 {
        let errno = b
            .get(hdr..hdr + 4)
            .map(|e| i32::from_ne_bytes([e[0], e[1], e[2], e[3]]));
        return Err(match errno {
            Some(e) if e < 0 => io::Error::from_raw_os_error(-e),
            _ => bad("error answer"),
        });
    }
    if ty != SOCK_DIAG_BY_FAMILY || len > b.len() {
        return Err(bad("unexpected answer"));
    }
    // struct unix_diag_msg: family, type, state, pad (4 bytes), ino (u32), cookie (2 x u32).
    let msg = &b[hdr..len];
    if msg.len() < 16 {
        return Err(bad("short unix_diag_msg"));
    }
    if u32::from_ne_bytes([msg[4], msg[5], msg[6], msg[7]]) != ino {
        return Err(bad("answer for another socket"));
    }
    let mut a = &msg[16..];
    while a.len() >= 4 {
        let alen = u16::from_ne_bytes([a[0], a[1]]) as usize;
        let aty = u16::from_ne_bytes([a[2], a[3]]);
        if alen < 4 || alen > a.len() {
            return Err(bad("malformed attribute"));
        }
        if aty == UNIX_DIAG_PEER && alen >= 8 {
            return Ok(u64::from(u32::from_ne_bytes([a[4], a[5], a[6], a[7]])));
        }
        let step = (alen + 3) & !3;
        a = a.get(step..).unwrap_or(&[]);
    }
    Err(bad("no peer (the socket is not connected)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn finds_the_peer_of_a_connected_pair() {
        let dir = std::env::temp_dir().join(format!("dbw-diag-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("l.sock");
        let l = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let client = std::os::unix::net::UnixStream::connect(&path).unwrap();
        let (server, _) = l.accept().unwrap();
        let client_ino = std::fs::metadata(format!("/proc/self/fd/{}", client.as_raw_fd()))
            .unwrap()
            .ino();
        assert_eq!(unix_peer_inode(&server).unwrap(), client_ino);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn malformed_answers_are_errors() {
        assert!(parse_peer(&[1, 2, 3], 5).is_err());
        let mut b = vec![0u8; 16 + 16];
        b[0..4].copy_from_slice(&32u32.to_ne_bytes());
        b[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        b[16 + 4..16 + 8].copy_from_slice(&9u32.to_ne_bytes());
        assert!(parse_peer(&b, 9)
            .unwrap_err()
            .to_string()
            .contains("no peer"));
        assert!(parse_peer(&b, 8)
            .unwrap_err()
            .to_string()
            .contains("another socket"));
    }
}
