//! cgroup v2 plumbing: find the cgroup2 mount, create or adopt controlled groups, move processes.
//!
//! The mount point is read from `/proc/mounts` (hybrid hierarchies mount cgroup2 at
//! `/sys/fs/cgroup/unified`, unified ones at `/sys/fs/cgroup`); it is never assumed.

use std::{
    fs,
    io::{self, BufRead},
    os::unix::fs::MetadataExt,
    path::{Component, Path, PathBuf},
};

/// Errors from cgroup handling.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// No cgroup2 filesystem in /proc/mounts.
    #[error("no cgroup2 filesystem is mounted (looked in /proc/mounts); dbwarden needs cgroup v2")]
    NoCgroup2,
    /// The name is absolute, empty or climbs out of the hierarchy.
    #[error("invalid cgroup name {0:?}: use a relative path inside the cgroup2 hierarchy, e.g. `dbwarden-agents` or `ci.slice/agents.scope`")]
    BadName(String),
    /// The cgroup does not exist (and we were not asked to create it).
    #[error(
        "cgroup {0} does not exist; start the daemon (`dbwarden run --cgroup NAME`) to create it"
    )]
    Missing(PathBuf),
    /// An I/O operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What we were doing.
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// Returns the mount point of the cgroup2 filesystem, from `/proc/mounts`.
pub fn cgroup2_mount() -> Result<PathBuf, CgroupError> {
    let f = fs::File::open("/proc/mounts").map_err(|source| CgroupError::Io {
        op: "open",
        path: "/proc/mounts".into(),
        source,
    })?;
    parse_mounts(io::BufReader::new(f)).ok_or(CgroupError::NoCgroup2)
}

fn parse_mounts(r: impl BufRead) -> Option<PathBuf> {
    r.lines().map_while(Result::ok).find_map(|line| {
        let mut it = line.split_whitespace();
        let (_dev, mnt, fstype) = (it.next()?, it.next()?, it.next()?);
        (fstype == "cgroup2").then(|| PathBuf::from(unescape_mount(mnt)))
    })
}

/// /proc/mounts escapes space, tab, newline and backslash as octal.
fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A controlled cgroup: its name (relative to the mount) and absolute path.
#[derive(Debug, Clone)]
pub struct Cgroup {
    /// Name as configured, relative to the cgroup2 mount.
    pub name: String,
    /// Absolute path of the directory.
    pub path: PathBuf,
}

impl Cgroup {
    /// Resolves `name` under the cgroup2 mount without touching it.
    pub fn resolve(name: &str) -> Result<Cgroup, CgroupError> {
        let mount = cgroup2_mount()?;
        Self::resolve_in(&mount, name)
    }

    fn resolve_in(mount: &Path, name: &str) -> Result<Cgroup, CgroupError> {
        let rel = Path::new(name);
        let ok = !name.is_empty() && rel.components().all(|c| matches!(c, Component::Normal(_)));
        if !ok {
            return Err(CgroupError::BadName(name.to_string()));
        }
        Ok(Cgroup {
            name: name.to_string(),
            path: mount.join(rel),
        })
    }

    /// Creates the directory (and parents) if missing; an existing one (e.g. a systemd slice)
    /// is adopted as it is.
    pub fn ensure(&self) -> Result<(), CgroupError> {
        fs::create_dir_all(&self.path).map_err(|source| CgroupError::Io {
            op: "create cgroup",
            path: self.path.clone(),
            source,
        })
    }

    /// Errors unless the directory exists and is a cgroup2 directory.
    pub fn require(&self) -> Result<(), CgroupError> {
        if self.path.join("cgroup.procs").exists() {
            Ok(())
        } else {
            Err(CgroupError::Missing(self.path.clone()))
        }
    }

    /// The cgroup id the kernel reports (`bpf_get_current_cgroup_id`): the directory's inode.
    pub fn id(&self) -> Result<u64, CgroupError> {
        fs::metadata(&self.path)
            .map(|m| m.ino())
            .map_err(|source| CgroupError::Io {
                op: "stat",
                path: self.path.clone(),
                source,
            })
    }

    /// Moves process `pid` (0 = the caller) into this cgroup.
    pub fn add_process(&self, pid: u32) -> Result<(), CgroupError> {
        let procs = self.path.join("cgroup.procs");
        fs::write(&procs, format!("{pid}\n")).map_err(|source| CgroupError::Io {
            op: "write",
            path: procs,
            source,
        })
    }
}

/// Finds the path (relative to the cgroup2 mount, with a leading `/`) of cgroup `id` by walking
/// below `under` (a controlled cgroup). Returns `None` when not found.
pub fn path_of_id(mount: &Path, under: &Path, id: u64) -> Option<String> {
    fn walk(dir: &Path, id: u64, depth: u32) -> Option<PathBuf> {
        if fs::metadata(dir).ok()?.ino() == id {
            return Some(dir.to_path_buf());
        }
        if depth > 16 {
            return None;
        }
        for e in fs::read_dir(dir).ok()?.flatten() {
            if e.file_type().ok()?.is_dir() {
                if let Some(p) = walk(&e.path(), id, depth + 1) {
                    return Some(p);
                }
            }
        }
        None
    }
    let p = walk(under, id, 0)?;
    let rel = p.strip_prefix(mount).ok()?;
    Some(format!("/{}", rel.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_cgroup2_in_hybrid_mounts() {
        let mounts = "tmpfs /sys/fs/cgroup tmpfs rw 0 0\n\
                      cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n\
                      cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n";
        assert_eq!(
            parse_mounts(mounts.as_bytes()),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        assert_eq!(parse_mounts("proc /proc proc rw 0 0\n".as_bytes()), None);
    }

    #[test]
    fn unescapes_octal() {
        assert_eq!(unescape_mount("/a\\040b"), "/a b");
        assert_eq!(unescape_mount("/plain"), "/plain");
    }

    #[test]
    fn rejects_escaping_names() {
        let m = Path::new("/cg");
        assert!(Cgroup::resolve_in(m, "../x").is_err());
        assert!(Cgroup::resolve_in(m, "/abs").is_err());
        assert!(Cgroup::resolve_in(m, "").is_err());
        assert_eq!(
            Cgroup::resolve_in(m, "ci.slice/agents.scope").unwrap().path,
            PathBuf::from("/cg/ci.slice/agents.scope")
        );
    }
}
