//! Who is on the other end of the control socket, and may they approve?
//!
//! The kernel says who connected (`SO_PEERCRED`: uid, gid, pid). Authorised: uid 0, or a
//! member of the approvers group (default `dbwarden`, gid resolved from `/etc/group` on
//! every connection so group changes apply without a restart) by primary gid or by
//! supplementary group. Supplementary groups come from `SO_PEERGROUPS` (Linux 4.13+), which
//! the kernel captures at `connect()` like `SO_PEERCRED`, so there is no PID-reuse race;
//! if that option is unavailable they are read from `/proc/<pid>/status` (`Groups:`),
//! after checking that the process still has the peer's uid.
//!
//! The approver identity is the user name of the peer's uid from `/etc/passwd`
//! (`uid:<n>` if it has none).

use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::path::PathBuf;

use tokio::net::UnixStream;

/// `SO_PEERGROUPS` from `asm-generic/socket.h` (not exported by the libc crate for Linux).
#[cfg(not(any(target_arch = "sparc", target_arch = "sparc64")))]
const SO_PEERGROUPS: libc::c_int = 59;
#[cfg(any(target_arch = "sparc", target_arch = "sparc64"))]
const SO_PEERGROUPS: libc::c_int = 0x3d;

/// Who may use the control socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlAuth {
    /// Group whose members may approve (besides root). Default `dbwarden`.
    pub group: String,
    /// Group database. Default `/etc/group`.
    pub group_file: PathBuf,
    /// User database, for approver names. Default `/etc/passwd`.
    pub passwd_file: PathBuf,
}

impl Default for ControlAuth {
    fn default() -> Self {
        ControlAuth {
            group: "dbwarden".to_owned(),
            group_file: PathBuf::from("/etc/group"),
            passwd_file: PathBuf::from("/etc/passwd"),
        }
    }
}

/// The kernel-reported peer of a control connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Effective uid at connect time.
    pub uid: u32,
    /// Effective gid at connect time.
    pub gid: u32,
    /// Process id at connect time, if known.
    pub pid: Option<i32>,
}

/// Why a peer was refused (sent to it and logged).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The peer is neither root nor in the approvers group.
    #[error("permission denied: uid {uid} is not root and not a member of group {group:?}")]
    NotMember {
        /// Peer uid.
        uid: u32,
        /// The approvers group.
        group: String,
    },
    /// The approvers group does not exist, so only root may approve.
    #[error("permission denied: uid {uid} is not root, and group {group:?} does not exist (only root may approve)")]
    NoGroup {
        /// Peer uid.
        uid: u32,
        /// The approvers group.
        group: String,
    },
    /// The peer's credentials or groups could not be determined.
    #[error("permission denied: cannot verify peer credentials ({0})")]
    Unverifiable(String),
}

/// Reads the peer credentials from the kernel.
pub(crate) fn peer_of(stream: &UnixStream) -> io::Result<Peer> {
    let cred = stream.peer_cred()?;
    Ok(Peer {
        uid: cred.uid(),
        gid: cred.gid(),
        pid: cred.pid(),
    })
}

/// Decides whether `peer` may approve; returns its approver name.
pub(crate) fn authorize(
    stream: &UnixStream,
    peer: &Peer,
    auth: &ControlAuth,
) -> Result<String, Refusal> {
    let name = || user_name(auth, peer.uid);
    if peer.uid == 0 {
        return Ok(name());
    }
    let Some(gid) = group_gid(auth) else {
        return Err(Refusal::NoGroup {
            uid: peer.uid,
            group: auth.group.clone(),
        });
    };
    if peer.gid == gid {
        return Ok(name());
    }
    let groups = match peer_groups(stream) {
        Ok(g) => g,
        Err(e) if e.raw_os_error() == Some(libc::ENOPROTOOPT) => {
            proc_groups(peer).map_err(Refusal::Unverifiable)?
        }
        Err(e) => return Err(Refusal::Unverifiable(format!("SO_PEERGROUPS: {e}"))),
    };
    if groups.contains(&gid) {
        Ok(name())
    } else {
        Err(Refusal::NotMember {
            uid: peer.uid,
            group: auth.group.clone(),
        })
    }
}

/// Supplementary groups of the peer as captured at connect time.
fn peer_groups(stream: &UnixStream) -> io::Result<Vec<u32>> {
    const MAX_GROUPS: usize = 65_536;
    let fd = stream.as_raw_fd();
    let elem = std::mem::size_of::<libc::gid_t>();
    let mut buf: Vec<libc::gid_t> = vec![0; 64];
    loop {
        let mut len = libc::socklen_t::try_from(buf.len() * elem).map_err(io::Error::other)?;
        // SAFETY: `buf` is a live, writable allocation of `len` bytes, `len` is a valid
        // out-pointer, and `fd` is an open socket owned by `stream` for this call.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                SO_PEERGROUPS,
                buf.as_mut_ptr().cast(),
                &raw mut len,
            )
        };
        let len = usize::try_from(len).map_err(io::Error::other)?;
        if rc == 0 {
            buf.truncate(len / elem);
            return Ok(buf);
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::ERANGE)
            && len > buf.len() * elem
            && len / elem <= MAX_GROUPS
        {
            buf.resize(len / elem, 0);
            continue;
        }
        return Err(err);
    }
}

/// Fallback: supplementary groups from `/proc/<pid>/status`, refused if the process there
/// no longer has the peer's uid (PID reused).
fn proc_groups(peer: &Peer) -> Result<Vec<u32>, String> {
    let pid = peer.pid.ok_or("peer pid unknown")?;
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("/proc/{pid}/status: {e}"))?;
    parse_status_groups(&status, peer.uid)
}

/// Parses `Groups:` from a `/proc/<pid>/status` text after checking `Uid:` (real and
/// effective) against `uid`.
pub(crate) fn parse_status_groups(status: &str, uid: u32) -> Result<Vec<u32>, String> {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .ok_or_else(|| format!("no {name} line in process status"))
    };
    let uids: Vec<&str> = field("Uid:")?.split_whitespace().collect();
    let expect = uid.to_string();
    if uids.len() < 2 || uids[0] != expect || uids[1] != expect {
        return Err("peer process changed (uid mismatch)".to_owned());
    }
    field("Groups:")?
        .split_whitespace()
        .map(|g| {
            g.parse::<u32>()
                .map_err(|e| format!("bad Groups entry: {e}"))
        })
        .collect()
}

/// Gid of `auth.group` from the group file.
fn group_gid(auth: &ControlAuth) -> Option<u32> {
    let text = fs::read_to_string(&auth.group_file).ok()?;
    parse_group_gid(&text, &auth.group)
}

/// Finds `name` in `/etc/group` text (`name:passwd:gid:members`).
pub(crate) fn parse_group_gid(text: &str, name: &str) -> Option<u32> {
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next()? == name).then_some(())?;
        f.next()?;
        f.next()?.trim().parse().ok()
    })
}

/// Finds the name of `uid` in `/etc/passwd` text (`name:passwd:uid:...`).
pub(crate) fn parse_passwd_name(text: &str, uid: u32) -> Option<String> {
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        f.next()?;
        (f.next()?.trim().parse::<u32>().ok()? == uid && !name.is_empty()).then(|| name.to_owned())
    })
}

/// The user name of `uid`, or `uid:<n>`.
pub(crate) fn user_name(auth: &ControlAuth, uid: u32) -> String {
    fs::read_to_string(&auth.passwd_file)
        .ok()
        .and_then(|t| parse_passwd_name(&t, uid))
        .unwrap_or_else(|| format!("uid:{uid}"))
}

/// Gid of the approvers group, for `chown` of the socket.
pub(crate) fn approvers_gid(auth: &ControlAuth) -> Option<u32> {
    group_gid(auth)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_and_passwd_parsing() {
        let g = "root:x:0:\n# comment\ndbwardenx:x:5:\ndbwarden:x:998:alice,bob\n";
        assert_eq!(parse_group_gid(g, "dbwarden"), Some(998));
        assert_eq!(parse_group_gid(g, "dbw"), None);
        let p = "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/sh\nbroken\n";
        assert_eq!(parse_passwd_name(p, 1000).as_deref(), Some("alice"));
        assert_eq!(parse_passwd_name(p, 0).as_deref(), Some("root"));
        assert_eq!(parse_passwd_name(p, 7), None);
    }

    #[test]
    fn status_groups_checked_against_uid() {
        let s = "Name:\tpsql\nUid:\t1000\t1000\t1000\t1000\nGid:\t1000\t1000\t1000\t1000\nGroups:\t4 27 998 \n";
        assert_eq!(parse_status_groups(s, 1000), Ok(vec![4, 27, 998]));
        assert!(parse_status_groups(s, 1001).is_err());
        let empty = "Uid:\t5\t5\t5\t5\nGroups:\t\n";
        assert_eq!(parse_status_groups(empty, 5), Ok(vec![]));
    }

    #[tokio::test]
    async fn own_peer_groups_readable() {
        let (a, _b) = UnixStream::pair().unwrap();
        let peer = peer_of(&a).unwrap();
        // SAFETY: getuid has no preconditions.
        assert_eq!(peer.uid, unsafe { libc::getuid() });
        let groups = peer_groups(&a).unwrap();
        // SAFETY: getgroups(0, null) only returns the count.
        let n = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
        assert_eq!(groups.len(), usize::try_from(n).unwrap());
    }
}
