//! Issue: transparent eBPF interception with kernel-attested identity.
//!
//! Real kernel, real daemon binary, real PostgreSQL and MariaDB, real clients; loopback only.

use std::{collections::HashMap, process::Command, time::Duration};

use dbwarden_tests::*;

fn session_pids(d: &Daemon) -> Vec<u64> {
    d.sessions_started()
        .iter()
        .filter_map(|e| e["span"]["pid"].as_u64())
        .collect()
}

#[test]
fn psql_goes_through_the_daemon() {
    let d = Daemon::start();
    let out = psql(&d, "postgres", "select 40 + 2");
    assert_ok(&out, "psql through dbwarden");
    assert_eq!(stdout(&out), "42");
    d.wait_for_log(Duration::from_secs(5), "psql session", |ev| {
        ev.iter().any(|e| {
            e["message"] == "session started"
                && e["comm"] == "psql"
                && e["span"]["dst"] == "127.0.0.1:5432"
                && e["span"]["proto"] == "postgres"
                && e["span"]["exe"].as_str().unwrap_or("").ends_with("psql")
                && e["proc_verified"] == true
                && e["cgroup"].as_str() == Some(&format!("/{}", d.cgroup))
        }) && ev.iter().any(|e| {
            e["message"] == "session ended" && e["bytes_server_to_client"].as_u64().unwrap_or(0) > 0
        })
    });
}

#[test]
fn rust_client_sees_original_peer_and_is_attributed_to_its_pid() {
    let d = Daemon::start();
    let out = d.run_agent(&["pg", "127.0.0.1:5432", "postgres", "select 1 + 1"]);
    assert_ok(&out, "tokio-postgres agent");
    let text = stdout(&out);
    let mut lines = text.lines();
    let first: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    // getpeername is rewritten by the eBPF program: the agent sees where it wanted to go.
    assert_eq!(first["peer"], "127.0.0.1:5432");
    assert_eq!(lines.next(), Some("2"));
    let pid = first["pid"].as_u64().unwrap();
    d.wait_for_log(Duration::from_secs(5), "agent session", |_| {
        session_pids(&d).contains(&pid)
    });
}

#[test]
fn extended_protocol_binary_results_work() {
    let d = Daemon::start();
    let out = d.run_agent(&[
        "pg-extended",
        "127.0.0.1:5432",
        "postgres",
        "select 7::int8, 'x'::text",
    ]);
    assert_ok(&out, "tokio-postgres extended");
    assert!(
        stdout(&out).lines().any(|l| l == "7\tx"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn mariadb_cli_goes_through_the_daemon() {
    let d = Daemon::start();
    let out = d
        .agent("mariadb")
        .args([
            "-h",
            "127.0.0.1",
            "-P",
            "3306",
            "-u",
            "root",
            "-N",
            "-B",
            "-e",
            "select 6*7",
        ])
        .output()
        .unwrap();
    assert_ok(&out, "mariadb through dbwarden");
    assert_eq!(stdout(&out), "42");
    d.wait_for_log(Duration::from_secs(5), "mariadb session", |ev| {
        ev.iter().any(|e| {
            e["message"] == "session started"
                && e["comm"] == "mariadb"
                && e["span"]["dst"] == "127.0.0.1:3306"
                && e["span"]["proto"] == "mysql"
        })
    });
}

#[test]
fn processes_outside_the_cgroup_are_untouched() {
    let d = Daemon::start();
    assert_eq!(psql_direct("postgres", "select 'direct'"), "direct");
    let out = Command::new("mariadb")
        .args([
            "-h",
            "127.0.0.1",
            "-P",
            "3306",
            "-u",
            "root",
            "-N",
            "-B",
            "-e",
            "select 'direct'",
        ])
        .output()
        .unwrap();
    assert_ok(&out, "direct mariadb");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        d.sessions_started().is_empty(),
        "a process outside the cgroup was intercepted:\n{}",
        d.log_text()
    );
}

#[test]
fn ipv6_ipv4_mapped_and_nonblocking_connects() {
    let v6 = echo_server("[::1]:0");
    let v4 = echo_server("127.0.0.1:0");
    let d = Daemon::start_with(DaemonOpts {
        extra_config: format!("[intercept]\ntcp_ports = [{}, {}]\n", v6.port(), v4.port()),
        ..Default::default()
    });
    let cases = [
        ("connect", v6.to_string(), v6.to_string()),
        ("nonblocking", v6.to_string(), v6.to_string()),
        (
            "connect",
            format!("[::ffff:127.0.0.1]:{}", v4.port()),
            format!("[::ffff:127.0.0.1]:{}", v4.port()),
        ),
        ("nonblocking", v4.to_string(), v4.to_string()),
        ("connect", v4.to_string(), v4.to_string()),
    ];
    for (mode, target, want_peer) in cases {
        let out = d.run_agent(&[mode, &target]);
        assert_ok(&out, &format!("{mode} {target}"));
        let v: serde_json::Value =
            serde_json::from_str(stdout(&out).lines().next().unwrap()).unwrap();
        assert_eq!(v["peer"], want_peer.as_str(), "{mode} {target}");
        assert_eq!(
            v["echo"],
            format!("hello from {}", v["pid"]),
            "{mode} {target}"
        );
        let pid = v["pid"].as_u64().unwrap();
        d.wait_for_log(Duration::from_secs(5), "session of the agent", |_| {
            session_pids(&d).contains(&pid)
        });
    }
    // PostgreSQL through an IPv6 socket to an IPv4-mapped address.
    let out = d
        .agent("psql")
        .args([
            "-h",
            "::ffff:127.0.0.1",
            "-U",
            "postgres",
            "-X",
            "-At",
            "-c",
            "select 'mapped'",
        ])
        .output()
        .unwrap();
    assert_ok(&out, "psql via ::ffff:127.0.0.1");
    assert_eq!(stdout(&out), "mapped");
}

#[test]
fn two_hundred_concurrent_agents_are_each_attributed_to_their_pid() {
    let echo = echo_server("127.0.0.1:0");
    let d = Daemon::start_with(DaemonOpts {
        extra_config: format!("[intercept]\ntcp_ports = [{}]\n", echo.port()),
        ..Default::default()
    });
    let out = d.run_agent(&["spawn-many", &echo.to_string(), "200", "1500"]);
    assert_ok(&out, "200 agents");
    let agents: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(agents.len(), 200);
    let mut by_client: HashMap<String, u64> = HashMap::new();
    d.wait_for_log(Duration::from_secs(10), "200 sessions", |ev| {
        ev.iter()
            .filter(|e| e["message"] == "session started")
            .count()
            >= 200
    });
    for e in d.sessions_started() {
        by_client.insert(
            e["client"].as_str().unwrap().to_string(),
            e["span"]["pid"].as_u64().unwrap(),
        );
    }
    let mut pids = std::collections::HashSet::new();
    for a in &agents {
        let local = a["local"].as_str().unwrap();
        let pid = a["pid"].as_u64().unwrap();
        assert_eq!(
            by_client.get(local),
            Some(&pid),
            "connection from {local} attributed wrongly"
        );
        assert_eq!(a["echo"], format!("hello from {pid}"));
        pids.insert(pid);
    }
    assert_eq!(pids.len(), 200, "children must be distinct processes");
}

#[test]
fn sigkill_fails_closed_and_a_restart_adopts_the_pins() {
    let mut d = Daemon::start();
    assert_ok(&psql(&d, "postgres", "select 1"), "psql before kill");
    d.kill();
    // The programs stay pinned: the agent's connect goes to the dead listener and is refused,
    // never sent straight to PostgreSQL.
    let out = psql(&d, "postgres", "select 1");
    assert!(!out.status.success(), "agent bypassed a dead daemon");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Connection refused"),
        "unexpected error: {err}"
    );
    assert!(
        pins_under(&d.bpffs_dir)
            .iter()
            .any(|p| p.ends_with("dbw_connect4")),
        "link pins must survive the daemon"
    );
    d.restart();
    assert!(
        d.log_text().contains("adopting pinned attachment"),
        "{}",
        d.log_text()
    );
    let out = psql(&d, "postgres", "select 'back'");
    assert_ok(&out, "psql after restart");
    assert_eq!(stdout(&out), "back");
    // SIGTERM: clean stop, still fail closed.
    let st = d.terminate();
    assert!(st.success(), "daemon exit status {st}");
    assert!(!psql(&d, "postgres", "select 1").status.success());
    // Detach on purpose: the agent reaches PostgreSQL directly again.
    let out = Command::new(dbwarden_bin())
        .args(["detach", "--bpffs-dir"])
        .arg(&d.bpffs_dir)
        .output()
        .unwrap();
    assert_ok(&out, "detach");
    assert!(pins_under(&d.bpffs_dir).is_empty());
    let out = psql(&d, "postgres", "select 'direct again'");
    assert_ok(&out, "psql after detach");
}

#[test]
fn bad_config_is_a_clear_error_with_location() {
    require_privileged();
    let dir = std::env::temp_dir().join(format!("dbwt-badcfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("bad.toml");
    std::fs::write(
        &cfg,
        "listen = \"127.0.0.1:7999\"\n\n[intercept]\npostgres_port = [5432]\n",
    )
    .unwrap();
    let out = Command::new(dbwarden_bin())
        .args(["run", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(cfg.to_str().unwrap())
            && err.contains("line 4")
            && err.contains("postgres_port"),
        "{err}"
    );

    std::fs::write(&cfg, "listen = \"10.1.2.3:7999\"\n").unwrap();
    let out = Command::new(dbwarden_bin())
        .args(["run", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback"));

    let out = Command::new(dbwarden_bin())
        .args(["run", "--cgroup", "../escape", "--listen", "127.0.0.1:7998"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid cgroup name"));

    let out = Command::new(dbwarden_bin())
        .args([
            "exec",
            "--cgroup",
            "dbwarden-no-such-cgroup-xyz",
            "--",
            "true",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("does not exist"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn without_privileges_nothing_is_left_half_attached() {
    require_privileged();
    let name = format!("dbwt-nopriv-{}", std::process::id());
    let bpffs = std::path::PathBuf::from("/sys/fs/bpf").join(&name);
    let port = free_port().to_string();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(dbwarden_bin())
        .args([
            "run",
            "--cgroup",
            &name,
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--bpffs-dir",
        ])
        .arg(&bpffs)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("needs root"), "{err}");
    assert!(pins_under(&bpffs).is_empty(), "pins left behind");
    assert!(
        !cgroup2_mount().join(&name).join("cgroup.procs").exists(),
        "cgroup created without privileges"
    );
}
