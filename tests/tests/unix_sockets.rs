//! Issue "No bypass": Unix-domain sockets are under control like TCP.
//!
//! Agents in a controlled cgroup connect to database sockets every way a client (or an agent
//! trying to get around dbwarden) can spell them: libpq's default, `-h` with the socket
//! directory, /run vs /var/run, `.` components, a symlink, a hard link, a path relative to the
//! working directory, a throwaway cluster's socket nobody configured. Every one must reach the
//! database through the daemon (proved from the daemon's log and session files), policed and
//! masked; `peer` authentication must see the agent's own uid; dbwarden's control socket must be
//! unreachable; other Unix sockets must keep working. Real kernel, real servers, loopback and
//! Unix sockets only.

mod e2e_common;

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    time::Duration,
};

use dbwarden_tests::{pg_cluster::PgCluster, *};
use e2e_common::*;

const T: Duration = Duration::from_secs(60);
const PAN: &str = "4111111111111111";

fn run(cmd: Command) -> Output {
    output_timeout(cmd, None, T)
}

fn text(o: &Output) -> String {
    all_text(o)
}

/// psql inside the cgroup with libpq connection parameters `conninfo` (no -h/-p added).
fn psql_unix(d: &Daemon, conninfo: &str, sql: &str) -> Output {
    let mut c = d.agent("psql");
    c.args([
        "-X",
        "-At",
        "-v",
        "ON_ERROR_STOP=1",
        "-d",
        conninfo,
        "-c",
        sql,
    ])
    .env_remove("PGHOST")
    .env_remove("PGPORT")
    .env("PGCONNECT_TIMEOUT", "10");
    run(c)
}

fn unix_sessions(d: &Daemon, dst: &str) -> usize {
    d.sessions_started()
        .iter()
        .filter(|e| e["span"]["dst"].as_str() == Some(&format!("unix:{dst}")))
        .count()
}

fn cards_db() -> PgDb {
    let db = PgDb::create("unix");
    psql_direct(
        &db.name,
        &format!("create table cards (id int primary key, card_number text, note text); insert into cards values (1, '{PAN}', 'hello')"),
    );
    db
}

#[test]
fn every_spelling_of_the_postgres_socket_goes_through_the_daemon() {
    let d = Daemon::start();
    let db = cards_db();
    let work = d.dir.join("spell");
    std::fs::create_dir_all(&work).unwrap();
    // A symlink to the socket directory and one to the socket itself, made by the "agent".
    std::os::unix::fs::symlink("/var/run/postgresql", work.join("dirlink")).unwrap();
    std::fs::create_dir_all(work.join("filelink")).unwrap();
    std::os::unix::fs::symlink(
        "/var/run/postgresql/.s.PGSQL.5432",
        work.join("filelink/.s.PGSQL.5432"),
    )
    .unwrap();
    let sql = "select card_number, note from cards where id = 1 limit 1";
    let spellings = [
        format!("dbname={} user=postgres", db.name), // libpq's default: the socket
        format!("host=/var/run/postgresql dbname={} user=postgres", db.name),
        format!("host=/run/postgresql dbname={} user=postgres", db.name),
        format!("host=/run/postgresql/./ dbname={} user=postgres", db.name),
        format!(
            "host=//var/run//postgresql dbname={} user=postgres",
            db.name
        ),
        format!(
            "host={} dbname={} user=postgres",
            work.join("dirlink").display(),
            db.name
        ),
        format!(
            "host={} dbname={} user=postgres",
            work.join("filelink").display(),
            db.name
        ),
    ];
    for s in &spellings {
        let out = psql_unix(&d, s, sql);
        assert_ok(&out, s);
        let got = stdout(&out);
        assert!(got.ends_with("|hello"), "{s}: {got}");
        assert_no_pan(&format!("agent output via {s}"), got.as_bytes(), &[PAN]);
        // The policy applies: the PCI default denies DROP, and the server keeps the table.
        let out = psql_unix(&d, s, "drop table cards");
        assert!(!out.status.success(), "{s}: DROP ran: {}", text(&out));
        assert!(text(&out).contains("dbwarden"), "{s}: {}", text(&out));
        assert_eq!(psql_direct(&db.name, "select count(*) from cards"), "1");
    }
    d.wait_for_log(T, "every spelling as a unix session", |_| {
        unix_sessions(&d, "/var/run/postgresql/.s.PGSQL.5432") >= 2 * spellings.len()
    });
    let ev = d.sessions_started();
    assert!(
        ev.iter().all(|e| e["span"]["proto"] == "postgres"),
        "{ev:?}"
    );
    finish_and_scan(&d, &[PAN]);
    let sessions = wait_sealed(&d, 2 * spellings.len(), T);
    assert!(sessions
        .iter()
        .all(|s| s.header.original_dst == "unix:/var/run/postgresql/.s.PGSQL.5432"));
}

/// A raw client: connect to `path` (maybe relative, after chdir to `cwd`) and speak a
/// PostgreSQL startup; print what getpeername said and the first reply byte.
const PY_STARTUP: &str = r#"
import os, socket, struct, sys
os.chdir(sys.argv[1])
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[2])
print("peer", s.getpeername())
body = struct.pack("!I", 196608) + b"user\0postgres\0database\0postgres\0\0"
s.sendall(struct.pack("!I", len(body) + 4) + body)
print("reply", s.recv(1)[:1].decode())
"#;

#[test]
fn relative_paths_and_hard_links_are_resolved_as_the_agent_would() {
    let d = Daemon::start();
    // A hard link to the socket on the same filesystem (/run is one tmpfs here).
    let hl_dir = PathBuf::from(format!("/run/{}-hl", d.name));
    std::fs::create_dir_all(&hl_dir).unwrap();
    let hl = hl_dir.join("innocent.sock");
    std::fs::hard_link("/run/postgresql/.s.PGSQL.5432", &hl).expect("hard link on /run");
    for (cwd, path) in [
        ("/var/run/postgresql", ".s.PGSQL.5432".to_string()),
        (
            "/var/run/postgresql",
            "../postgresql/.s.PGSQL.5432".to_string(),
        ),
        ("/", hl.display().to_string()),
    ] {
        let mut c = d.agent("python3");
        c.args(["-c", PY_STARTUP, cwd, &path]);
        let out = run(c);
        assert_ok(&out, &path);
        let t = stdout(&out);
        // The agent sees the path it asked for, and PostgreSQL answered ('R' = authentication).
        assert!(t.contains(&format!("peer {path}")), "{path}: {t}");
        assert!(t.contains("reply R"), "{path}: {t}");
    }
    d.wait_for_log(T, "three unix sessions", |_| {
        unix_sessions(&d, "/var/run/postgresql/.s.PGSQL.5432") >= 3
    });
    let _ = std::fs::remove_dir_all(&hl_dir);
}

#[test]
fn peer_authentication_sees_the_agents_uid() {
    // A cluster of our own: socket in /tmp (host=/tmp), `local ... peer`, not configured in
    // dbwarden at all: its name makes it a database socket.
    let port = free_port();
    let pg = PgCluster::start(
        "peer",
        port,
        Path::new("/tmp"),
        "local all postgres trust\nlocal all all peer\nhost all all 127.0.0.1/32 trust\n",
    );
    pg.sql("postgres", "create role nobody login");
    let d = Daemon::start();
    let nobody = |user: &str| {
        let mut c = d.agent("setpriv");
        c.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "psql",
            "-X",
            "-At",
            "-d",
        ])
        .arg(format!("host=/tmp port={port} dbname=postgres user={user}"))
        .args(["-c", "select current_user"]);
        run(c)
    };
    let out = nobody("nobody");
    assert_ok(&out, "peer auth as nobody through dbwarden");
    assert_eq!(stdout(&out), "nobody");
    // The agent cannot pretend to be someone else: peer auth sees uid 65534, as it would
    // directly.
    let out = nobody("postgres_impostor");
    assert!(!out.status.success());
    assert!(
        text(&out).contains("Peer authentication failed"),
        "{}",
        text(&out)
    );
    let direct = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "psql",
            "-X",
            "-At",
            "-d",
        ])
        .arg(format!(
            "host=/tmp port={port} dbname=postgres user=postgres_impostor"
        ))
        .args(["-c", "select 1"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&direct.stderr).contains("Peer authentication failed"));
    let sock = pg.socket().display().to_string();
    d.wait_for_log(T, "sessions on the throwaway socket", |_| {
        unix_sessions(&d, &sock) >= 2
    });
    let ev = d.sessions_started();
    assert!(
        ev.iter()
            .any(|e| e["span"]["dst"] == format!("unix:{sock}") && e["span"]["uid"] == 65534),
        "{ev:?}"
    );
}

#[test]
fn mysql_over_its_socket_goes_through_the_daemon() {
    let d = Daemon::start();
    for args in [
        &["-S", "/run/mysqld/mysqld.sock"][..],
        &["-S", "/var/run/mysqld/mysqld.sock"][..],
        &["-h", "localhost"][..],
        &[][..],
    ] {
        let mut c = d.agent("mysql");
        c.args(args)
            .args(["-u", "root", "-N", "-e", "select 40 + 2"]);
        let out = run(c);
        assert_ok(&out, &format!("mysql {args:?}"));
        assert_eq!(stdout(&out), "42");
    }
    d.wait_for_log(T, "four MySQL unix sessions", |_| {
        d.sessions_started()
            .iter()
            .filter(|e| {
                e["span"]["proto"] == "mysql"
                    && e["span"]["dst"]
                        .as_str()
                        .is_some_and(|s| s.starts_with("unix:") && s.ends_with("mysqld.sock"))
            })
            .count()
            >= 4
    });
}

#[test]
fn the_control_socket_and_control_ports_are_out_of_reach() {
    let http = free_port();
    let metrics = free_port();
    let d = Daemon::start_with(DaemonOpts {
        extra_config: format!(
            "metrics_listen = \"127.0.0.1:{metrics}\"\n[approvals]\nhttp_listen = \"127.0.0.1:{http}\"\n"
        ),
        ..Default::default()
    });
    let run_dir = d.dir.join("run");
    let control = run_dir.join("control.sock");
    let link = d.dir.join("ctl-link.sock");
    std::os::unix::fs::symlink(&control, &link).unwrap();
    // Outside the cgroup the operator's CLI works.
    let mut c = Command::new(dbwarden_bin());
    c.args(["approvals", "list", "--runtime-dir"]).arg(&run_dir);
    assert_ok(&run(c), "approvals list outside the cgroup");
    // Inside, a root agent gets nowhere: by the path, by a symlink, by the HTTP API, or by the
    // metrics port.
    let mut c = d.agent(dbwarden_bin());
    c.args(["approvals", "list", "--runtime-dir"]).arg(&run_dir);
    let out = run(c);
    assert!(
        !out.status.success(),
        "agent reached the control socket: {}",
        text(&out)
    );
    let mut c = d.agent("python3");
    c.args(["-c", "import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.connect(sys.argv[1])\ns.sendall(b'{\"op\":\"list\"}\\n')\nprint(repr(s.recv(100)))"])
        .arg(&link);
    let out = run(c);
    assert!(
        !stdout(&out).contains("approvals"),
        "agent reached the control socket via a symlink: {}",
        text(&out)
    );
    for port in [http, metrics] {
        let mut c = d.agent("curl");
        c.args(["-sS", "-m", "5", &format!("http://127.0.0.1:{port}/")]);
        let out = run(c);
        assert!(
            !out.status.success(),
            "agent reached port {port}: {}",
            text(&out)
        );
        let outside = Command::new("curl")
            .args([
                "-sS",
                "-m",
                "5",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                &format!("http://127.0.0.1:{port}/"),
            ])
            .output()
            .unwrap();
        assert!(
            outside.status.success(),
            "port {port} unreachable from outside too"
        );
    }
    assert!(
        d.log_text().contains("closed to controlled processes"),
        "{}",
        d.log_text()
    );
}

#[test]
fn other_unix_sockets_keep_working() {
    let d = Daemon::start();
    let path = d.dir.join("echo.sock");
    let l = std::os::unix::net::UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            use std::io::{Read, Write};
            let mut s = s;
            let mut b = [0u8; 64];
            let n = s.read(&mut b).unwrap_or(0);
            let _ = s.write_all(&[b"echo:", &b[..n]].concat());
        }
    });
    let mut c = d.agent("python3");
    c.args(["-c", "import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.connect(sys.argv[1])\nprint(s.getpeername())\ns.sendall(b'ping')\nprint(s.recv(64).decode())"])
        .arg(&path);
    let out = run(c);
    assert_ok(&out, "echo over a Unix socket from the cgroup");
    assert_eq!(stdout(&out), format!("{}\necho:ping", path.display()));
    // Abstract and datagram sockets are not touched at all.
    let mut c = d.agent("python3");
    c.args(["-c", "import socket\na=socket.socket(socket.AF_UNIX)\na.bind('\\0dbwt-abstract')\na.listen()\nb=socket.socket(socket.AF_UNIX)\nb.connect('\\0dbwt-abstract')\nc,_=a.accept()\nb.sendall(b'x')\nprint(c.recv(1).decode())"]);
    let out = run(c);
    assert_ok(&out, "abstract socket");
    assert_eq!(stdout(&out), "x");
}

#[test]
fn with_the_daemon_down_socket_connects_are_refused_not_bypassed() {
    let mut d = Daemon::start();
    d.kill();
    let out = psql_unix(&d, "dbname=postgres user=postgres", "select 1");
    assert!(
        !out.status.success(),
        "psql reached PostgreSQL with the daemon down"
    );
    let mut c = d.agent("mysql");
    c.args(["-u", "root", "-N", "-e", "select 1"]);
    assert!(
        !run(c).status.success(),
        "mysql reached MariaDB with the daemon down"
    );
    d.restart();
    let out = psql_unix(&d, "dbname=postgres user=postgres", "select 7");
    assert_ok(&out, "after restart");
    assert_eq!(stdout(&out), "7");
}

#[test]
fn forced_lsm_mode_refuses_database_sockets_or_does_not_start() {
    // With `unix_mode = "lsm"` agents' connects to database sockets are refused outright. On a
    // kernel whose BPF LSM cannot load programs (this CI VM refuses every trampoline-based
    // program with EPERM), the daemon must refuse to start rather than run unguarded.
    let name = format!("dbwt-lsm-{}", std::process::id());
    let dir = std::env::temp_dir().join(&name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let bpffs = PathBuf::from("/sys/fs/bpf").join(&name);
    let cfg = dir.join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "listen = \"127.0.0.1:{port}\"\ncgroups = [\"{name}\"]\nbpffs_dir = \"{}\"\nsessions_dir = \"{}\"\nruntime_dir = \"{}\"\n",
            bpffs.display(),
            dir.join("sessions").display(),
            dir.join("run").display()
        ),
    )
    .unwrap();
    require_privileged();
    let mut child = Command::new(dbwarden_bin())
        .args(["run", "--unix-mode", "lsm", "--config"])
        .arg(&cfg)
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let log = dir.join("stderr");
    let mut err = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        use std::io::Read;
        let _ = err.read_to_end(&mut v);
        std::fs::write(log, &v).unwrap();
        String::from_utf8_lossy(&v).into_owned()
    });
    let deadline = std::time::Instant::now() + T;
    let exited = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        let cg = cgroup2_mount().join(&name);
        if bpffs.join("unix").exists()
            && cg.exists()
            && std::fs::read_dir(bpffs.join("links")).is_ok_and(|mut r| r.next().is_some())
        {
            std::thread::sleep(Duration::from_millis(500));
            if let Some(st) = child.try_wait().unwrap() {
                break Some(st);
            }
            break None;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "daemon neither started nor exited"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    match exited {
        Some(st) => {
            let e = reader.join().unwrap();
            assert!(!st.success(), "daemon exited 0 in lsm mode");
            assert!(e.contains("BPF LSM"), "the error names the BPF LSM: {e}");
        }
        None => {
            let mut c = Command::new(dbwarden_bin());
            c.args([
                "exec", "--cgroup", &name, "--", "psql", "-X", "-At", "-U", "postgres", "-d",
                "postgres", "-c", "select 1",
            ]);
            let out = run(c);
            assert!(
                !out.status.success(),
                "lsm mode let a socket connect through"
            );
            assert!(text(&out).contains("Permission denied"), "{}", text(&out));
            // SAFETY: kill with a valid pid.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let _ = child.wait();
        }
    }
    let _ = Command::new(dbwarden_bin())
        .args(["detach", "--bpffs-dir"])
        .arg(&bpffs)
        .output();
    let _ = std::fs::remove_dir(cgroup2_mount().join(&name));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A listener in the test's hands: counts connections that reach it.
fn counting_listener(path: &Path) -> std::sync::Arc<std::sync::atomic::AtomicUsize> {
    let l = std::os::unix::net::UnixListener::bind(path).unwrap();
    let n = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let n2 = n.clone();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            n2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            use std::io::Write;
            let mut s = s;
            let _ = s.write_all(b"SECRET");
        }
    });
    n
}

const PY_CONNECT: &str = r#"
import os, socket, sys
os.chdir(sys.argv[1])
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    s.connect(sys.argv[2])
    s.settimeout(5)
    print("got", s.recv(10))
except OSError as e:
    print("error", e)
"#;

#[test]
fn a_private_mount_namespace_does_not_hide_the_database_socket() {
    // An unprivileged agent in its own user and mount namespaces bind-mounts the database
    // socket under an innocent name: the resolver judges the socket file itself.
    let d = Daemon::start();
    let script = format!(
        "mount -t tmpfs t /mnt && touch /mnt/innocent && mount --bind /var/run/postgresql/.s.PGSQL.5432 /mnt/innocent && exec python3 -c '{}' / /mnt/innocent",
        PY_STARTUP.replace('\'', "\"")
    );
    let mut c = d.agent("setpriv");
    c.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "unshare",
        "-Urm",
        "sh",
        "-c",
        &script,
    ]);
    let out = run(c);
    assert_ok(&out, "namespaced agent");
    assert!(stdout(&out).contains("reply R"), "{}", text(&out));
    d.wait_for_log(T, "the session, policed", |_| {
        unix_sessions(&d, "/var/run/postgresql/.s.PGSQL.5432") >= 1
    });
}

#[test]
fn the_resolver_follows_no_magic_link_and_lends_no_capability() {
    let d = Daemon::start();
    // 1. A socket the agent hid from itself with a tmpfs, then names through /proc/self: the
    //    kernel would not find it (that is the agent's own mount namespace); neither may the
    //    daemon's resolver, whose /proc/self is a daemon thread.
    let hidden_dir = d.dir.join("hidden");
    std::fs::create_dir_all(&hidden_dir).unwrap();
    let hidden = hidden_dir.join("s.sock");
    let reached = counting_listener(&hidden);
    std::fs::set_permissions(&hidden, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
    let rel = format!("proc/self/root{}", hidden.display());
    let script = format!(
        "mount -t tmpfs t {} && exec python3 -c '{}' / {rel}",
        hidden_dir.display(),
        PY_CONNECT.replace('\'', "\"")
    );
    let mut c = d.agent("setpriv");
    c.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "unshare",
        "-Urm",
        "sh",
        "-c",
        &script,
    ]);
    let out = run(c);
    assert!(!stdout(&out).contains("SECRET"), "{}", text(&out));
    // 2. A root agent without capabilities cannot borrow the daemon's: a 0600 socket owned by
    //    someone else in a 0700 directory stays closed to it.
    let priv_dir = d.dir.join("priv");
    std::fs::create_dir_all(&priv_dir).unwrap();
    let p = priv_dir.join("p.sock");
    let reached_priv = counting_listener(&p);
    std::os::unix::fs::chown(&p, Some(65534), Some(65534)).unwrap();
    std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    std::os::unix::fs::chown(&priv_dir, Some(65534), Some(65534)).unwrap();
    std::fs::set_permissions(
        &priv_dir,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let mut c = d.agent("setpriv");
    c.args([
        "--inh-caps=-all",
        "--bounding-set=-all",
        "python3",
        "-c",
        PY_CONNECT,
        "/",
    ])
    .arg(&p);
    let out = run(c);
    assert!(!stdout(&out).contains("SECRET"), "{}", text(&out));
    // The same agent with its capabilities does reach it (the daemon is not stricter than
    // the kernel).
    let mut c = d.agent("python3");
    c.args(["-c", PY_CONNECT, "/"]).arg(&p);
    let out = run(c);
    assert!(stdout(&out).contains("SECRET"), "{}", text(&out));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        reached.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the hidden socket was reached"
    );
    assert_eq!(
        reached_priv.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "only the capable agent got in"
    );
}
