//! Privileged agents, end to end: `dbwarden exec --user` drops root for good (no setuid program
//! gives it back), the daemon detects root agents at accept time, logs and records them as
//! privileged with their capabilities, and the `privileged` identity matcher lets a policy
//! refuse them.
//!
//! Real kernel (eBPF interception, cgroup v2), the real `dbwarden` binary, real PostgreSQL on
//! 127.0.0.1:5432 (trusts loopback, so psql as `nobody` connects with `-U postgres`), real psql.
//! Needs root: every test fails loudly without it (never skips).

mod e2e_common;

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Command, Output},
    time::Duration,
};

use dbwarden_tests::*;
use e2e_common::*;

const T: Duration = Duration::from_secs(60);

/// `dbwarden exec --cgroup CG --user USER -- PROGRAM` for this daemon's cgroup.
fn agent_as(d: &Daemon, user: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = Command::new(dbwarden_bin());
    c.args(["exec", "--cgroup", &d.cgroup, "--user", user, "--"])
        .arg(program);
    c
}

/// psql as postgres to 127.0.0.1:5432 running `sql` (verbose errors: SQLSTATE shown), inside the
/// daemon's cgroup, as `user` (None: as root, like [`psql_cmd`]).
fn psql_as(d: &Daemon, user: Option<&str>, sql: &str) -> Command {
    let mut c = match user {
        Some(u) => agent_as(d, u, "psql"),
        None => d.agent("psql"),
    };
    c.args(PSQL_ARGS)
        .args(["-d", "postgres", "-v", "VERBOSITY=verbose", "-c", sql])
        .env("PGCONNECT_TIMEOUT", "10");
    c
}

fn run(c: Command) -> Output {
    output_timeout(c, None, T)
}

fn text(o: &Output) -> String {
    all_text(o)
}

/// A scratch directory any user can traverse (removed by the guard unless the test failed).
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let p = std::env::temp_dir().join(format!("dbwt-priv-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        Scratch(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A setuid-root copy of `id` (mode 4755, owner root) in `dir`: run by anyone without
/// no_new_privs it reports euid 0.
fn setuid_id(dir: &Path) -> PathBuf {
    let p = dir.join("suid-id");
    std::fs::copy("/usr/bin/id", &p).unwrap();
    std::os::unix::fs::chown(&p, Some(0), Some(0)).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o4755)).unwrap();
    p
}

/// The "session started" log event of the session of process `pid`.
fn started_event(d: &Daemon, pid: u32) -> serde_json::Value {
    let is_it =
        |e: &serde_json::Value| e["message"] == "session started" && e["span"]["pid"] == pid;
    d.wait_for_log(T, &format!("session started for pid {pid}"), |ev| {
        ev.iter().any(is_it)
    });
    d.sessions_started().into_iter().find(is_it).unwrap()
}

/// (a) `--user nobody`: uid, gid and groups are nobody's (no root group), the process is in
/// the cgroup with no capabilities and no_new_privs set, and neither a setuid-root binary nor
/// `su` makes it root again, while the same setuid binary does give root without
/// no_new_privs (so the first result means something). It cannot leave its cgroup, remove the
/// pins or kill the daemon either. Bad input fails clearly, and nothing runs.
#[test]
fn exec_user_drops_root_and_setuid_programs_cannot_regain_it() {
    let d = Daemon::start();
    let ids = run({
        let mut c = agent_as(&d, "nobody", "sh");
        c.args([
            "-c",
            "id -u; id -g; id -G; grep '^0::' /proc/self/cgroup; \
             grep -E '^(NoNewPrivs|CapEff|CapPrm|CapAmb):' /proc/self/status; \
             echo \"$HOME $USER $LOGNAME\"",
        ]);
        c
    });
    assert_ok(&ids, "dbwarden exec --user nobody");
    let out = stdout(&ids);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "65534", "uid: {out}");
    assert_eq!(lines[1], "65534", "gid: {out}");
    let groups: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(groups, ["65534"], "groups: {out}");
    assert!(!groups.contains(&"0"), "root group kept: {out}");
    assert_eq!(lines[3], format!("0::/{}", d.cgroup), "{out}");
    for want in [
        "NoNewPrivs:\t1",
        "CapEff:\t0000000000000000",
        "CapPrm:\t0000000000000000",
        "CapAmb:\t0000000000000000",
    ] {
        assert!(lines.contains(&want), "{want:?} missing: {out}");
    }
    assert_eq!(lines.last(), Some(&"/nonexistent nobody nobody"), "{out}");

    // A setuid-root binary: root without no_new_privs (control), not through dbwarden exec.
    let scratch = Scratch::new("suid");
    let suid = setuid_id(&scratch.0);
    let control = run({
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&suid)
            .arg("-u");
        c
    });
    assert_ok(&control, "setuid id without no_new_privs");
    assert_eq!(
        stdout(&control),
        "0",
        "control: the setuid copy must give euid 0 without no_new_privs (is {} mounted nosuid?)",
        scratch.0.display()
    );
    let escalate = run({
        let mut c = agent_as(&d, "nobody", &suid);
        c.arg("-u");
        c
    });
    assert_ok(&escalate, "setuid id under dbwarden exec --user");
    assert_eq!(
        stdout(&escalate),
        "65534",
        "setuid bit honoured: {}",
        text(&escalate)
    );

    // su: it cannot become root (no password, and no setuid either).
    assert!(
        Path::new("/usr/bin/su").exists(),
        "/usr/bin/su missing: the su check needs it"
    );
    let su = run({
        let mut c = agent_as(&d, "nobody", "/usr/bin/su");
        c.args(["-c", "id -u", "root"]);
        c
    });
    assert!(!su.status.success(), "su succeeded: {}", text(&su));
    assert!(
        !stdout(&su).lines().any(|l| l.trim() == "0"),
        "su ran a command as root: {}",
        text(&su)
    );

    // What a root agent could do and this one cannot: leave the cgroup, remove the pins,
    // kill the daemon.
    let pins = pins_under(&d.bpffs_dir);
    assert!(!pins.is_empty(), "no pins under {}", d.bpffs_dir.display());
    let escape = run({
        let mut c = agent_as(&d, "nobody", "sh");
        c.arg("-c").arg(format!(
            "echo $$ > {root}/cgroup.procs && echo LEFT; rm -rf {pins} 2>/dev/null && echo UNPINNED; \
             kill -9 {daemon} 2>/dev/null && echo KILLED; grep '^0::' /proc/self/cgroup",
            root = cgroup2_mount().display(),
            pins = d.bpffs_dir.display(),
            daemon = d.pid()
        ));
        c
    });
    let esc = stdout(&escape);
    for bad in ["LEFT", "UNPINNED", "KILLED"] {
        assert!(!esc.contains(bad), "{bad}: {}", text(&escape));
    }
    assert!(
        esc.ends_with(&format!("0::/{}", d.cgroup)),
        "{}",
        text(&escape)
    );
    assert_eq!(pins_under(&d.bpffs_dir), pins, "pins changed");
    assert!(process_alive(d.pid()), "daemon killed");

    // Clear errors, and the command never runs.
    let unknown = run(agent_as(&d, "no-such-user-dbwt", "true"));
    assert_eq!(unknown.status.code(), Some(126), "{}", text(&unknown));
    assert!(
        text(&unknown).contains("unknown user \"no-such-user-dbwt\": not in /etc/passwd"),
        "{}",
        text(&unknown)
    );
    let bad_group = run({
        let mut c = Command::new(dbwarden_bin());
        c.args([
            "exec",
            "--cgroup",
            &d.cgroup,
            "--user",
            "nobody",
            "--group",
            "no-such-group-dbwt",
            "--",
            "true",
        ]);
        c
    });
    assert_eq!(bad_group.status.code(), Some(126), "{}", text(&bad_group));
    assert!(
        text(&bad_group).contains("unknown group"),
        "{}",
        text(&bad_group)
    );
    let not_root = run({
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(dbwarden_bin())
            .args([
                "exec", "--cgroup", &d.cgroup, "--user", "nobody", "--", "true",
            ]);
        c
    });
    assert_eq!(not_root.status.code(), Some(126), "{}", text(&not_root));
    assert!(
        text(&not_root).contains("--user needs root"),
        "{}",
        text(&not_root)
    );
    // --group by number; supplementary groups follow /etc/group.
    let g = run({
        let mut c = Command::new(dbwarden_bin());
        c.args([
            "exec", "--cgroup", &d.cgroup, "--user", "65534", "--group", "4242", "--", "id", "-G",
        ]);
        c
    });
    assert_ok(&g, "--user 65534 --group 4242");
    assert_eq!(stdout(&g), "4242", "{}", text(&g));
}

/// (b) A root agent's psql session is logged and recorded as privileged, with its
/// capabilities in the session header (and in `sessions show`); the same psql through
/// `--user nobody` is not privileged.
#[test]
fn root_agent_is_logged_and_recorded_as_privileged_and_nobody_is_not() {
    let d = Daemon::start_with(DaemonOpts {
        policy: Some(PERMISSIVE_POLICY.into()),
        ..Default::default()
    });
    let (root_pid, out) = output_timeout_with_pid(psql_as(&d, None, "select 1"), None, T);
    assert_ok(&out, "psql as root");
    assert_eq!(stdout(&out), "1");
    let (user_pid, out) = output_timeout_with_pid(psql_as(&d, Some("nobody"), "select 2"), None, T);
    assert_ok(&out, "psql as nobody");
    assert_eq!(stdout(&out), "2");

    // Logged at accept time.
    let root_ev = started_event(&d, root_pid);
    assert_eq!(root_ev["privileged"], true, "{root_ev}");
    assert_eq!(root_ev["uid0"], true, "{root_ev}");
    assert_eq!(root_ev["privileges_verified"], true, "{root_ev}");
    let caps = root_ev["capabilities"].as_str().unwrap_or_default();
    for c in [
        "cap_sys_admin",
        "cap_bpf",
        "cap_net_admin",
        "cap_sys_ptrace",
        "cap_dac_override",
    ] {
        assert!(caps.split(',').any(|x| x == c), "{c} not logged: {root_ev}");
    }
    let user_ev = started_event(&d, user_pid);
    assert_eq!(user_ev["privileged"], false, "{user_ev}");
    assert_eq!(user_ev["uid0"], false, "{user_ev}");
    assert_eq!(user_ev["capabilities"], "", "{user_ev}");
    assert_eq!(user_ev["privileges_verified"], true, "{user_ev}");
    assert_eq!(user_ev["span"]["uid"], 65534, "{user_ev}");

    // Recorded in the session header.
    d.assert_sessions_closed_cleanly(T);
    let sessions = wait_sealed(&d, 2, T);
    let find = |pid: u32| {
        sessions
            .iter()
            .find(|s| s.header.identity.pid == pid)
            .unwrap_or_else(|| panic!("no session recorded for pid {pid}"))
    };
    let root = &find(root_pid).header;
    assert_eq!(root.identity.uid, 0);
    assert!(root.identity.privileged, "{root:?}");
    for c in [
        "cap_sys_admin",
        "cap_bpf",
        "cap_net_admin",
        "cap_sys_ptrace",
        "cap_dac_override",
    ] {
        assert!(
            root.identity.capabilities.iter().any(|x| x == c),
            "{c} not recorded: {:?}",
            root.identity.capabilities
        );
    }
    let user = &find(user_pid).header;
    assert_eq!(user.identity.uid, 65534);
    assert_eq!(user.identity.user.as_deref(), Some("nobody"));
    assert!(!user.identity.privileged, "{user:?}");
    assert!(user.identity.capabilities.is_empty(), "{user:?}");

    // `sessions show` prints it in the header; `list --identity privileged=true` selects.
    let dir = sessions_dir(&d);
    let show = sessions_cli(&dir, &["show", &root.session_id.to_string()]);
    assert_ok(&show, "sessions show (root)");
    let line = stdout(&show)
        .lines()
        .find(|l| l.starts_with("-- privileged: "))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no privileged line: {}", stdout(&show)));
    assert!(
        line.starts_with("-- privileged: yes (capabilities: ") && line.contains("cap_sys_admin"),
        "{line}"
    );
    let show = sessions_cli(&dir, &["show", &user.session_id.to_string()]);
    assert_ok(&show, "sessions show (nobody)");
    assert!(
        stdout(&show).lines().any(|l| l == "-- privileged: no"),
        "{}",
        stdout(&show)
    );
    let list = sessions_cli(&dir, &["list", "--identity", "privileged=true"]);
    assert_ok(&list, "sessions list --identity privileged=true");
    assert!(stdout(&list).contains("(1 session)"), "{}", stdout(&list));
}

/// (c) A rule denying `privileged = true` identities refuses the root agent's `select 1` with
/// SQLSTATE 42501 naming the rule, while the same statement from the `--user nobody` agent
/// passes (its verdict is its own, though the analysis is cached by then).
#[test]
fn privileged_rule_refuses_the_root_agent_and_passes_nobody() {
    let policy = r#"
[policy]
name = "e2e-no-privileged-agents"
default = "allow"

[[rule]]
name = "no-privileged-agents"
action = "deny"
message = "privileged agents are not allowed"
[rule.identity]
privileged = true
"#;
    let d = Daemon::start_with(DaemonOpts {
        policy: Some(policy.into()),
        ..Default::default()
    });
    for round in 0..2 {
        let out = run(psql_as(&d, None, "select 1"));
        assert!(!out.status.success(), "root agent allowed: {}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(
                "ERROR:  42501: dbwarden: statement denied by rule \"no-privileged-agents\": privileged agents are not allowed"
            ),
            "round {round}: {}",
            text(&out)
        );
        let out = run(psql_as(&d, Some("nobody"), "select 1"));
        assert_ok(&out, "psql as nobody under the no-privileged policy");
        assert_eq!(stdout(&out), "1", "round {round}");
    }
    d.assert_sessions_closed_cleanly(T);
}
