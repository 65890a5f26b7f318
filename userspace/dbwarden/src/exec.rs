//! `dbwarden exec`: move this process into a controlled cgroup, then exec the command, so every
//! socket the command creates belongs to the cgroup (a socket's cgroup is fixed at creation).
//!
//! With `--user` it also drops root before the exec, after the cgroup move (which needs root):
//! supplementary groups as `initgroups` would set them from `/etc/group`, then the gid, then
//! the uid (real, effective and saved), then `PR_SET_NO_NEW_PRIVS` so no setuid binary (`sudo`,
//! `su`) and no file capability can give privileges back. Every step is checked before the
//! command runs: if anything did not stick, nothing is executed.

use std::{ffi::OsString, fs, os::unix::process::CommandExt};

use anyhow::{bail, ensure, Context, Result};

use crate::cgroup::Cgroup;

/// Whom to run the command as (`--user`, `--group`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    /// User name or numeric uid.
    pub user: String,
    /// Group name or numeric gid; default: the user's primary group.
    pub group: Option<String>,
}

/// A resolved target account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// User name (the numeric uid when it has no `/etc/passwd` entry).
    pub name: String,
    /// uid.
    pub uid: u32,
    /// Primary gid (from `--group`, else the passwd entry).
    pub gid: u32,
    /// Supplementary groups: the primary gid and every `/etc/group` entry listing the user.
    pub groups: Vec<u32>,
    /// Home directory (`/` without a passwd entry).
    pub home: String,
}

/// Moves into `cgroup`, drops to `run_as` if given, and replaces this process with `command`.
/// Only returns on error.
pub fn exec_in(
    cgroup: &str,
    run_as: Option<&RunAs>,
    command: &[OsString],
) -> Result<std::convert::Infallible> {
    let Some((prog, args)) = command.split_first() else {
        bail!("no command given");
    };
    // Resolve the account before anything changes, so a typo fails cleanly.
    let account = match run_as {
        None => None,
        Some(r) => {
            // SAFETY: geteuid has no preconditions.
            let euid = unsafe { libc::geteuid() };
            ensure!(
                euid == 0,
                "--user needs root (dbwarden exec is running as uid {euid}): start it with sudo"
            );
            Some(resolve_account(
                &read_etc("/etc/passwd")?,
                &read_etc("/etc/group")?,
                r,
            )?)
        }
    };
    let cg = Cgroup::resolve(cgroup)?;
    cg.require()?;
    cg.add_process(0)
        .with_context(|| format!("moving into cgroup {} (are you root?)", cg.path.display()))?;
    let mut cmd = std::process::Command::new(prog);
    cmd.args(args);
    if let Some(a) = &account {
        drop_privileges(a)?;
        cmd.env("HOME", &a.home)
            .env("USER", &a.name)
            .env("LOGNAME", &a.name);
    }
    let err = cmd.exec();
    Err(err).with_context(|| format!("executing {}", prog.to_string_lossy()))
}

fn read_etc(path: &str) -> Result<String> {
    fs::read_to_string(path).with_context(|| format!("reading {path}"))
}

/// One `/etc/passwd` entry: name, uid, gid, home.
fn passwd_entries(passwd: &str) -> impl Iterator<Item = (&str, u32, u32, &str)> {
    passwd.lines().filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 7 || f[0].is_empty() || f[0].starts_with('#') {
            return None;
        }
        Some((f[0], f[2].parse().ok()?, f[3].parse().ok()?, f[5]))
    })
}

/// One `/etc/group` entry: name, gid, members.
fn group_entries(group: &str) -> impl Iterator<Item = (&str, u32, Vec<&str>)> {
    group.lines().filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 4 || f[0].is_empty() || f[0].starts_with('#') {
            return None;
        }
        let members = f[3].split(',').map(str::trim).filter(|m| !m.is_empty());
        Some((f[0], f[2].parse().ok()?, members.collect()))
    })
}

fn numeric(s: &str) -> Option<u32> {
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// Resolves `--user`/`--group` against the texts of `/etc/passwd` and `/etc/group`. Names are
/// looked up first, then numeric ids (like chown). A numeric uid without a passwd entry needs
/// `--group`.
pub fn resolve_account(passwd: &str, group: &str, r: &RunAs) -> Result<Account> {
    let entry = passwd_entries(passwd)
        .find(|e| e.0 == r.user)
        .or_else(|| numeric(&r.user).and_then(|u| passwd_entries(passwd).find(|e| e.1 == u)));
    let (name, uid, pw_gid, home) = match entry {
        Some((n, u, g, h)) => (n.to_string(), u, Some(g), h.to_string()),
        None => match numeric(&r.user) {
            Some(u) => (u.to_string(), u, None, "/".to_string()),
            None => bail!("unknown user {:?}: not in /etc/passwd", r.user),
        },
    };
    let gid = match &r.group {
        Some(g) => group_entries(group)
            .find(|e| e.0 == g)
            .map(|e| e.1)
            .or_else(|| numeric(g))
            .with_context(|| format!("unknown group {g:?}: not in /etc/group"))?,
        None => pw_gid.with_context(|| {
            format!("uid {uid} has no /etc/passwd entry: give its group with --group")
        })?,
    };
    let mut groups = vec![gid];
    if entry.is_some() {
        for (_, g, members) in group_entries(group) {
            if members.contains(&name.as_str()) && !groups.contains(&g) {
                groups.push(g);
            }
        }
    }
    Ok(Account {
        name,
        uid,
        gid,
        groups,
        home: if home.is_empty() { "/".into() } else { home },
    })
}

fn os_err(what: &str) -> anyhow::Error {
    anyhow::Error::new(std::io::Error::last_os_error()).context(what.to_string())
}

/// setgroups, setresgid, setresuid, `PR_SET_NO_NEW_PRIVS`; then checks that each stuck.
fn drop_privileges(a: &Account) -> Result<()> {
    // SAFETY: plain syscalls on values we own; `groups` outlives the setgroups call. This
    // process is single-threaded here (glibc's set*id change every thread anyway).
    unsafe {
        if libc::setgroups(a.groups.len(), a.groups.as_ptr()) != 0 {
            return Err(os_err("setgroups"));
        }
        if libc::setresgid(a.gid, a.gid, a.gid) != 0 {
            return Err(os_err("setresgid"));
        }
        if libc::setresuid(a.uid, a.uid, a.uid) != 0 {
            return Err(os_err("setresuid"));
        }
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return Err(os_err("prctl(PR_SET_NO_NEW_PRIVS)"));
        }
    }
    verify_dropped(a)
}

fn verify_dropped(a: &Account) -> Result<()> {
    let (mut r, mut e, mut s) = (0, 0, 0);
    // SAFETY: getresuid/getresgid write three ids through valid pointers.
    unsafe {
        ensure!(
            libc::getresuid(&mut r, &mut e, &mut s) == 0,
            "getresuid failed"
        );
    }
    ensure!(
        [r, e, s] == [a.uid; 3],
        "privilege drop did not stick: uids are {r}/{e}/{s}, wanted {}",
        a.uid
    );
    // SAFETY: as above.
    unsafe {
        ensure!(
            libc::getresgid(&mut r, &mut e, &mut s) == 0,
            "getresgid failed"
        );
    }
    ensure!(
        [r, e, s] == [a.gid; 3],
        "privilege drop did not stick: gids are {r}/{e}/{s}, wanted {}",
        a.gid
    );
    let mut now = vec![0 as libc::gid_t; a.groups.len() + 1];
    // SAFETY: `now` has room for the given count.
    let n = unsafe { libc::getgroups(now.len() as libc::c_int, now.as_mut_ptr()) };
    ensure!(n >= 0, "getgroups failed");
    now.truncate(n as usize);
    let (mut want, mut got) = (a.groups.clone(), now);
    want.sort_unstable();
    got.sort_unstable();
    ensure!(
        want == got,
        "privilege drop did not stick: groups are {got:?}, wanted {want:?}"
    );
    if a.uid != 0 {
        // SAFETY: setuid and setgid have no memory preconditions; failing is the point.
        let (u, g) = unsafe { (libc::setuid(0), libc::setgid(0)) };
        ensure!(
            u != 0 && g != 0,
            "privilege drop did not stick: setuid(0)/setgid(0) still succeed"
        );
        let status =
            fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
        let creds = crate::privilege::parse_status(&status)
            .context("cannot parse /proc/self/status to check capabilities")?;
        ensure!(
            creds.cap_eff == 0 && creds.cap_prm == 0,
            "capabilities left after the drop: effective {:#x}, permitted {:#x}",
            creds.cap_eff,
            creds.cap_prm
        );
    }
    // SAFETY: PR_GET_NO_NEW_PRIVS takes no pointers.
    let nnp = unsafe { libc::prctl(libc::PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) };
    ensure!(nnp == 1, "PR_SET_NO_NEW_PRIVS did not stick");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n\
        # comment\n\
        daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
        nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n\
        ci:x:1001:1001:CI runner,,,:/home/ci:/bin/bash\n\
        broken:x:notanumber:1:b:/:/bin/sh\n\
        nohome:x:1002:1002::::\n";
    const GROUP: &str = "root:x:0:\n\
        adm:x:4:syslog,ci\n\
        docker:x:999:ci, other\n\
        nogroup:x:65534:\n\
        ci:x:1001:\n\
        dbwarden:x:998:root\n";

    fn run(user: &str, group: Option<&str>) -> Result<Account> {
        resolve_account(
            PASSWD,
            GROUP,
            &RunAs {
                user: user.into(),
                group: group.map(Into::into),
            },
        )
    }

    #[test]
    fn user_by_name_gets_primary_and_supplementary_groups() {
        let a = run("ci", None).unwrap();
        assert_eq!(
            a,
            Account {
                name: "ci".into(),
                uid: 1001,
                gid: 1001,
                groups: vec![1001, 4, 999],
                home: "/home/ci".into()
            }
        );
        let n = run("nobody", None).unwrap();
        assert_eq!((n.uid, n.gid, n.groups), (65534, 65534, vec![65534]));
        assert_eq!(n.home, "/nonexistent");
    }

    #[test]
    fn numeric_ids_and_explicit_groups() {
        // A numeric uid with an entry resolves to that entry.
        assert_eq!(run("65534", None).unwrap().name, "nobody");
        // --group by name or number replaces the primary group; memberships stay.
        let a = run("ci", Some("docker")).unwrap();
        assert_eq!((a.gid, a.groups), (999, vec![999, 4]));
        assert_eq!(run("ci", Some("4242")).unwrap().gid, 4242);
        // A uid without an entry needs --group, and gets no supplementary groups.
        let e = run("4000", None).unwrap_err().to_string();
        assert!(e.contains("--group"), "{e}");
        let a = run("4000", Some("nogroup")).unwrap();
        assert_eq!(
            (a.name.as_str(), a.uid, a.gid, a.groups, a.home.as_str()),
            ("4000", 4000, 65534, vec![65534], "/")
        );
        assert_eq!(run("nohome", None).unwrap().home, "/");
    }

    #[test]
    fn unknown_names_are_clear_errors() {
        let e = run("mallory", None).unwrap_err().to_string();
        assert_eq!(e, "unknown user \"mallory\": not in /etc/passwd");
        let e = run("ci", Some("wheel")).unwrap_err().to_string();
        assert_eq!(e, "unknown group \"wheel\": not in /etc/group");
        // Malformed lines are skipped, not misread.
        assert!(run("broken", None).is_err());
        assert!(run("# comment", None).is_err());
    }

    #[test]
    fn this_hosts_nobody_resolves() {
        let a = resolve_account(
            &read_etc("/etc/passwd").unwrap(),
            &read_etc("/etc/group").unwrap(),
            &RunAs {
                user: "nobody".into(),
                group: None,
            },
        )
        .unwrap();
        assert_eq!(a.uid, 65534);
        assert!(!a.groups.contains(&0));
    }
}
