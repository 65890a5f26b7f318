//! Issue "No bypass": every intercepted port speaks what it claims, and the common database
//! ports are covered by default.
//!
//! A throwaway PostgreSQL on 5433 (a default port now) and one on a port listed only under
//! `tcp_ports` must both be policed like the main server; a non-PostgreSQL client on a
//! PostgreSQL port is refused with a logged reason; ports nobody listed stay untouched; and the
//! daemon will not run inside the cgroups it controls. Real kernel, real servers, loopback only.

use std::{
    path::Path,
    process::{Command, Output},
    time::Duration,
};

use dbwarden_tests::{pg_cluster::PgCluster, *};

const T: Duration = Duration::from_secs(60);

fn run(cmd: Command) -> Output {
    output_timeout(cmd, None, T)
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn psql_port(d: &Daemon, port: u16, sql: &str) -> Output {
    let mut c = d.agent("psql");
    c.args([
        "-X",
        "-At",
        "-v",
        "ON_ERROR_STOP=1",
        "-h",
        "127.0.0.1",
        "-p",
    ])
    .arg(port.to_string())
    .args(["-U", "postgres", "-d", "postgres", "-c", sql])
    .env("PGCONNECT_TIMEOUT", "10");
    run(c)
}

/// The cluster keeps its table; DROP is refused by the PCI default and a SELECT works.
fn assert_policed(d: &Daemon, pg: &PgCluster) {
    pg.sql(
        "postgres",
        "create table keep_me (x int); insert into keep_me values (1)",
    );
    let out = psql_port(d, pg.port, "select x from keep_me");
    assert_ok(&out, "select through dbwarden");
    assert_eq!(stdout(&out), "1");
    let out = psql_port(d, pg.port, "drop table keep_me");
    assert!(!out.status.success(), "DROP ran: {}", text(&out));
    assert!(text(&out).contains("dbwarden"), "{}", text(&out));
    assert_eq!(pg.sql("postgres", "select count(*) from keep_me"), "1");
    let dst = format!("127.0.0.1:{}", pg.port);
    d.wait_for_log(T, "sessions to the throwaway cluster", |ev| {
        ev.iter()
            .filter(|e| e["message"] == "session started" && e["span"]["dst"] == dst.as_str())
            .count()
            >= 2
    });
}

fn hba() -> &'static str {
    "local all all trust\nhost all all 127.0.0.1/32 trust\n"
}

#[test]
fn postgres_on_5433_is_policed_by_default() {
    let sock = std::env::temp_dir().join(format!("dbwt-5433-{}", std::process::id()));
    let pg = PgCluster::start("p5433", 5433, &sock, hba());
    let d = Daemon::start();
    assert_policed(&d, &pg);
    // The cluster's own Unix socket is a database socket too (by its name).
    let mut c = d.agent("psql");
    c.args(["-X", "-At", "-h"]).arg(&sock).args([
        "-p",
        "5433",
        "-U",
        "postgres",
        "-d",
        "postgres",
        "-c",
        "drop table keep_me",
    ]);
    let out = run(c);
    assert!(
        !out.status.success(),
        "DROP over the socket ran: {}",
        text(&out)
    );
    assert_eq!(pg.sql("postgres", "select count(*) from keep_me"), "1");
}

#[test]
fn postgres_on_a_plain_tcp_port_is_handled_as_postgres() {
    let port = free_port();
    let sock = std::env::temp_dir().join(format!("dbwt-tcpp-{}", std::process::id()));
    let pg = PgCluster::start("tcpport", port, &sock, hba());
    let d = Daemon::start_with(DaemonOpts {
        extra_config: format!("[intercept]\ntcp_ports = [{port}]\n"),
        ..Default::default()
    });
    assert_policed(&d, &pg);
    assert!(
        d.log_text()
            .contains("PostgreSQL client on a plain TCP port"),
        "{}",
        d.log_text()
    );
    let _ = Path::new(&sock);
}

#[test]
fn a_postgres_port_refuses_other_protocols() {
    let d = Daemon::start();
    let mut c = d.agent("python3");
    c.args([
        "-c",
        "import socket\ns=socket.create_connection(('127.0.0.1',5432))\ns.sendall(b'GET / HTTP/1.0\\r\\nHost: x\\r\\n\\r\\n')\ns.settimeout(40)\nb=b''\nwhile True:\n  x=s.recv(4096)\n  if not x: break\n  b+=x\nprint(repr(b))",
    ]);
    let out = run(c);
    assert_ok(&out, "raw client");
    let got = stdout(&out);
    // dbwarden's own FATAL 08P01 and nothing from PostgreSQL (no authentication request).
    assert!(got.starts_with("b'E") || got.starts_with("b\"E"), "{got}");
    assert!(got.contains("08P01"), "{got}");
    assert!(!got.contains("server_version"), "{got}");
    d.wait_for_log(T, "the refusal", |ev| {
        ev.iter().any(|e| {
            e["message"] == "connection refused"
                && e["reason"].as_str().is_some_and(|r| {
                    r.contains("non-PostgreSQL first packet on a PostgreSQL destination")
                })
        })
    });
}

#[test]
fn ports_nobody_listed_are_untouched() {
    let d = Daemon::start();
    // Redis, pre-started on this kind of machine, is not a database dbwarden intercepts.
    let mut c = d.agent("redis-cli");
    c.args(["-h", "127.0.0.1", "-p", "6379", "ping"]);
    let out = run(c);
    assert_ok(&out, "redis-cli from the cgroup");
    assert_eq!(stdout(&out), "PONG");
    assert!(d.sessions_started().is_empty(), "redis was intercepted");
}

#[test]
fn the_daemon_will_not_run_inside_a_cgroup_it_controls() {
    let d = Daemon::start();
    let cfg = d.dir.join("inside.toml");
    let port = free_port();
    std::fs::write(
        &cfg,
        format!(
            "listen = \"127.0.0.1:{port}\"\ncgroups = [\"{}\"]\nbpffs_dir = \"/sys/fs/bpf/{}-in\"\nsessions_dir = \"{}\"\nruntime_dir = \"{}\"\n",
            d.cgroup,
            d.name,
            d.dir.join("s2").display(),
            d.dir.join("r2").display()
        ),
    )
    .unwrap();
    let mut c = d.agent(dbwarden_bin());
    c.args(["run", "--config"]).arg(&cfg);
    let out = run(c);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("runs inside the controlled cgroup"),
        "{}",
        text(&out)
    );
    let _ = Command::new(dbwarden_bin())
        .args(["detach", "--bpffs-dir"])
        .arg(format!("/sys/fs/bpf/{}-in", d.name))
        .output();
}

/// A client that sends part of a PostgreSQL startup on a plain TCP port and waits past the
/// protocol check's deadline must not be relayed raw to the server (which would still accept
/// the rest of the login: its own authentication_timeout is longer).
#[test]
fn an_unsettled_first_packet_on_a_plain_tcp_port_is_not_relayed() {
    let port = free_port();
    let sock = std::env::temp_dir().join(format!("dbwt-stall-{}", std::process::id()));
    let pg = PgCluster::start("stall", port, &sock, hba());
    let d = Daemon::start_with(DaemonOpts {
        extra_config: format!("[intercept]\ntcp_ports = [{port}]\n"),
        ..Default::default()
    });
    let mut c = d.agent("python3");
    c.args([
        "-c",
        "import socket,struct,sys,time\nbody=struct.pack('!I',196608)+b'user\\0postgres\\0database\\0postgres\\0\\0'\np=struct.pack('!I',len(body)+4)+body\ns=socket.create_connection(('127.0.0.1',int(sys.argv[1])))\ns.sendall(p[:3])\ntime.sleep(33)\ntry:\n  s.sendall(p[3:])\n  s.settimeout(10)\n  print(repr(s.recv(100)))\nexcept OSError as e:\n  print('closed', e)",
    ])
    .arg(port.to_string());
    let out = output_timeout(c, None, Duration::from_secs(90));
    let got = stdout(&out);
    assert!(
        got == "b''" || got.starts_with("closed"),
        "the server answered a login relayed raw: {got}"
    );
    d.wait_for_log(T, "the refusal", |ev| {
        ev.iter().any(|e| {
            e["message"] == "connection refused"
                && e["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("protocol not settled"))
        })
    });
    drop(pg);
}
