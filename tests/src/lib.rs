//! Harness for dbwarden's end-to-end tests.
//!
//! Every test starts its own daemon (the real `dbwarden` binary) with its own cgroup, bpffs pin
//! directory, listener port and sessions directory, so tests run in parallel without sharing
//! kernel state. Agents are started with `dbwarden exec --cgroup ...`, exactly as operators do.
//!
//! Prerequisites (root, cgroup v2, BPF, PostgreSQL on 127.0.0.1:5432, MariaDB on 127.0.0.1:3306)
//! are checked by [`require_privileged`]: a missing one fails the test with a clear message —
//! never a silent skip.
//!
//! Network rule: every address used here is loopback.

use std::{
    io::{BufRead, BufReader},
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

pub mod pg_cluster;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// PostgreSQL used by the tests.
pub const PG_ADDR: &str = "127.0.0.1:5432";
/// MariaDB used by the tests.
pub const MYSQL_ADDR: &str = "127.0.0.1:3306";

/// Fails (panics) with an actionable message unless we are root and the databases answer.
pub fn require_privileged() {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    assert!(
        root,
        "these tests load eBPF programs and need root: run `sudo cargo xtask test` (CI={})",
        std::env::var("CI").unwrap_or_default()
    );
    for (what, addr) in [("PostgreSQL", PG_ADDR), ("MariaDB", MYSQL_ADDR)] {
        TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(3)).unwrap_or_else(
            |e| {
                panic!("{what} is not reachable on {addr} ({e}); start it before running the tests")
            },
        );
    }
}

/// Path of the `dbwarden` binary under test: `$DBWARDEN_BIN`, or next to this test executable
/// (`target/<profile>/dbwarden`; `cargo xtask test` builds it first).
pub fn dbwarden_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("DBWARDEN_BIN") {
        return p.into();
    }
    let exe = std::env::current_exe().expect("current_exe");
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let bin = dir.join("dbwarden");
    assert!(
        bin.exists(),
        "{} not found: build it first (`cargo build -p dbwarden`, done by `cargo xtask test`) or set DBWARDEN_BIN",
        bin.display()
    );
    bin
}

/// Path of the agent helper binary (`dbw-agent`), built with this package (cargo builds a
/// package's binaries before its integration tests), next to the test executable.
pub fn agent_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.join("dbw-agent")
}

/// A free loopback TCP port (bound then released), chosen below the kernel's ephemeral range:
/// a port from that range can be taken, between this call and the daemon's bind, by any
/// outgoing connection (the daemons' upstream and catalog connections of parallel tests).
pub fn free_port() -> u16 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| {
            r.split_whitespace()
                .next()
                .and_then(|p| p.parse::<u64>().ok())
        })
        .unwrap_or(32768);
    const BASE: u64 = 10_000;
    let span = low.saturating_sub(BASE).max(1);
    let seed = u64::from(std::process::id()) * 7919
        + std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::from(d.subsec_nanos()));
    for _ in 0..1000 {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let port = u16::try_from(BASE + (seed + n * 104_729) % span).unwrap_or(0);
        if port != 0 && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The cgroup2 mount point, from /proc/mounts.
pub fn cgroup2_mount() -> PathBuf {
    let m = std::fs::read_to_string("/proc/mounts").unwrap();
    m.lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 2 && f[2] == "cgroup2").then(|| PathBuf::from(f[1]))
        })
        .expect("no cgroup2 mount in /proc/mounts")
}

/// Options for a test daemon.
#[derive(Debug, Clone, Default)]
pub struct DaemonOpts {
    /// Extra TOML appended to the generated config file.
    pub extra_config: String,
    /// Policy file contents (written to a temp file and passed with --policy), if any.
    pub policy: Option<String>,
    /// Extra command-line arguments.
    pub args: Vec<String>,
}

/// A running test daemon with its own cgroup, pins, port and directories.
pub struct Daemon {
    /// Unique name of this instance.
    pub name: String,
    /// The controlled cgroup (relative name).
    pub cgroup: String,
    /// The listener port.
    pub port: u16,
    /// bpffs pin directory.
    pub bpffs_dir: PathBuf,
    /// Work directory (config, logs, sessions).
    pub dir: PathBuf,
    /// The daemon's log file (JSON lines).
    pub log: PathBuf,
    /// Config file path.
    pub config: PathBuf,
    child: Option<Child>,
}

impl Daemon {
    /// Starts a daemon with default options and waits until it is ready.
    pub fn start() -> Daemon {
        Self::start_with(DaemonOpts::default())
    }

    /// Starts a daemon and waits until it logs "dbwarden ready".
    pub fn start_with(opts: DaemonOpts) -> Daemon {
        require_privileged();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("dbwt-{}-{}", std::process::id(), n);
        let dir = std::env::temp_dir().join(&name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let bpffs_dir = PathBuf::from("/sys/fs/bpf").join(&name);
        let config = dir.join("dbwarden.toml");
        let mut toml = format!(
            "listen = \"127.0.0.1:{port}\"\ncgroups = [\"{name}\"]\nbpffs_dir = \"{}\"\nsessions_dir = \"{}\"\nruntime_dir = \"{}\"\n",
            bpffs_dir.display(),
            dir.join("sessions").display(),
            dir.join("run").display()
        );
        toml.push_str(&opts.extra_config);
        std::fs::write(&config, toml).unwrap();
        let mut d = Daemon {
            cgroup: name.clone(),
            name,
            port,
            bpffs_dir,
            log: dir.join("daemon.log"),
            config,
            dir,
            child: None,
        };
        if let Some(p) = &opts.policy {
            let pf = d.dir.join("policy.toml");
            std::fs::write(&pf, p).unwrap();
            d.extra_args_push(&["--policy".into(), pf.display().to_string()]);
        }
        d.spawn(&opts.args);
        d
    }

    fn extra_args_push(&mut self, a: &[String]) {
        let f = self.dir.join("extra-args");
        let mut cur = std::fs::read_to_string(&f).unwrap_or_default();
        for x in a {
            cur.push_str(x);
            cur.push('\n');
        }
        std::fs::write(f, cur).unwrap();
    }

    fn stored_args(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("extra-args"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn spawn(&mut self, args: &[String]) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut all = self.stored_args();
        all.extend(args.iter().cloned());
        let start_offset = std::fs::metadata(&self.log).map(|m| m.len()).unwrap_or(0);
        let child = Command::new(dbwarden_bin())
            .arg("run")
            .arg("--config")
            .arg(&self.config)
            .arg("--log-format")
            .arg("json")
            .args(&all)
            .env("DBWARDEN_LOG", "info,dbwarden=debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn dbwarden");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            if text[start_offset as usize..].contains("dbwarden ready") {
                return;
            }
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("dbwarden exited during startup ({st}); log:\n{text}");
            }
            assert!(
                Instant::now() < deadline,
                "dbwarden did not become ready; log:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Restarts a stopped (killed) daemon with the same configuration.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "daemon still running");
        self.spawn(&[]);
    }

    /// SIGKILLs the daemon (pins stay, as after a crash).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERMs the daemon and waits for it.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("daemon not running");
        // SAFETY: kill with a valid pid and signal.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        c.wait().unwrap()
    }

    /// PID of the daemon process.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// A command that runs `program` inside this daemon's controlled cgroup via `dbwarden exec`.
    pub fn agent(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new(dbwarden_bin());
        c.arg("exec")
            .arg("--cgroup")
            .arg(&self.cgroup)
            .arg("--")
            .arg(program);
        c
    }

    /// Runs the agent helper binary in the cgroup with `args`; returns its output.
    pub fn run_agent(&self, args: &[&str]) -> Output {
        let out = self
            .agent(agent_bin())
            .args(args)
            .output()
            .expect("run dbw-agent");
        out
    }

    /// The daemon log, parsed: one JSON object per line (non-JSON lines skipped).
    pub fn log_events(&self) -> Vec<serde_json::Value> {
        let f = std::fs::File::open(&self.log).unwrap();
        BufReader::new(f)
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| serde_json::from_str(&l).ok())
            .collect()
    }

    /// Raw daemon log text.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// "session started" events.
    pub fn sessions_started(&self) -> Vec<serde_json::Value> {
        self.log_events()
            .into_iter()
            .filter(|e| e["message"] == "session started")
            .collect()
    }

    /// Waits until `pred` holds for the log events (or panics after `timeout`).
    pub fn wait_for_log(
        &self,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&[serde_json::Value]) -> bool,
    ) {
        let deadline = Instant::now() + timeout;
        loop {
            if pred(&self.log_events()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Moves process `pid` into this daemon's cgroup (for helpers started outside `exec`).
    pub fn cgroup_path(&self) -> PathBuf {
        cgroup2_mount().join(&self.cgroup)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
        let _ = Command::new(dbwarden_bin())
            .args(["detach", "--bpffs-dir"])
            .arg(&self.bpffs_dir)
            .stdout(Stdio::null())
            .status();
        let cg = self.cgroup_path();
        // Processes left in the cgroup (should be none) would keep rmdir from succeeding.
        let _ = std::fs::remove_dir(&cg);
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// psql's connection and output flags for the tests: PostgreSQL on 127.0.0.1:5432, unaligned
/// tuples only, stop on the first error, no psqlrc.
pub const PSQL_ARGS: [&str; 10] = [
    "-h",
    "127.0.0.1",
    "-p",
    "5432",
    "-U",
    "postgres",
    "-X",
    "-At",
    "-v",
    "ON_ERROR_STOP=1",
];

/// Runs `psql` with `args` inside the daemon's cgroup against 127.0.0.1:5432.
pub fn psql(d: &Daemon, db: &str, sql: &str) -> Output {
    d.agent("psql")
        .args(PSQL_ARGS)
        .args(["-d", db, "-c", sql])
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .expect("run psql")
}

/// Runs SQL directly (outside any controlled cgroup) with psql; panics on failure.
pub fn psql_direct(db: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args(PSQL_ARGS)
        .args(["-d", db, "-c", sql])
        .output()
        .expect("run psql");
    assert!(
        out.status.success(),
        "direct psql failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim_end().to_string()
}

/// Creates a uniquely named PostgreSQL database (dropped by the guard).
pub struct PgDb {
    /// Database name.
    pub name: String,
}

impl PgDb {
    /// Creates the database, directly (not through dbwarden).
    pub fn create(tag: &str) -> PgDb {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("dbwt_{}_{}_{}", tag, std::process::id(), n);
        psql_direct("postgres", &format!("CREATE DATABASE {name}"));
        PgDb { name }
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-X",
                "-q",
                "-c",
            ])
            .arg(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .output();
    }
}

/// stdout as a trimmed string.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim_end().to_string()
}

/// Asserts success, printing stderr otherwise.
#[track_caller]
pub fn assert_ok(o: &Output, what: &str) {
    assert!(
        o.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A loopback TCP echo server on `addr` running in a background thread: it answers every line
/// with the same line.
pub fn echo_server(addr: &str) -> SocketAddr {
    let l = TcpListener::bind(addr).unwrap();
    let a = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut w = s.try_clone().unwrap();
                let r = BufReader::new(s);
                for line in r.lines().map_while(Result::ok) {
                    use std::io::Write;
                    if writeln!(w, "{line}").is_err() {
                        break;
                    }
                }
            });
        }
    });
    a
}

/// Returns the pinned entries under a bpffs directory (recursively).
pub fn pins_under(dir: &Path) -> Vec<PathBuf> {
    fn walk(d: &Path, out: &mut Vec<PathBuf>) {
        if let Ok(rd) = std::fs::read_dir(d) {
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, out);
                } else {
                    out.push(p);
                }
            }
        }
    }
    let mut v = Vec::new();
    walk(dir, &mut v);
    v
}

// ---------------------------------------------------------------------------------------------
// Helpers for the PostgreSQL proxy tests (tests/tests/pg_proxy.rs).

/// Runs `cmd` to completion with `stdin` fed to it, killing it and panicking (with whatever it
/// printed) if it takes longer than `timeout`. Never hangs a test on a stuck client.
#[track_caller]
pub fn output_timeout(cmd: Command, stdin: Option<Vec<u8>>, timeout: Duration) -> Output {
    output_timeout_with_pid(cmd, stdin, timeout).1
}

/// [`output_timeout`] that also returns the child's pid (for an agent started with `dbwarden
/// exec`, which execs in place, that is the agent's own pid).
#[track_caller]
pub fn output_timeout_with_pid(
    mut cmd: Command,
    stdin: Option<Vec<u8>>,
    timeout: Duration,
) -> (u32, Output) {
    use std::io::{Read, Write};
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let pid = child.id();
    let feeder = stdin.map(|data| {
        let mut w = child.stdin.take().unwrap();
        std::thread::spawn(move || {
            let _ = w.write_all(&data);
        })
    });
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = so.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = se.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let out = t_out.join().unwrap();
            let err = t_err.join().unwrap();
            panic!(
                "{cmd:?} did not finish within {timeout:?}\nstdout: {}\nstderr: {}",
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(&err)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    if let Some(f) = feeder {
        let _ = f.join();
    }
    (
        pid,
        Output {
            status,
            stdout: t_out.join().unwrap(),
            stderr: t_err.join().unwrap(),
        },
    )
}

/// Polls `f` every 50 ms until it returns `Some`, panicking with `what` after `timeout`.
#[track_caller]
pub fn wait_until<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Base `psql` command to 127.0.0.1:5432 as postgres with `-X -At` (no `-c`, no ON_ERROR_STOP):
/// inside the daemon's cgroup when `d` is given, directly otherwise.
pub fn psql_cmd(d: Option<&Daemon>, db: &str) -> Command {
    let mut c = match d {
        Some(d) => d.agent("psql"),
        None => Command::new("psql"),
    };
    c.args([
        "-h",
        "127.0.0.1",
        "-p",
        "5432",
        "-U",
        "postgres",
        "-d",
        db,
        "-X",
        "-At",
    ])
    .env("PGCONNECT_TIMEOUT", "10");
    c
}

/// Runs the agent helper (`dbw-agent`) with `args`, inside the cgroup when `d` is given,
/// directly otherwise, with a timeout.
#[track_caller]
pub fn agent_output(d: Option<&Daemon>, args: &[&str], timeout: Duration) -> Output {
    let mut c = match d {
        Some(d) => d.agent(agent_bin()),
        None => Command::new(agent_bin()),
    };
    c.args(args);
    output_timeout(c, None, timeout)
}

/// Resident memory of process `pid` in KiB (VmRSS from /proc), if it exists.
pub fn vm_rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Whether process `pid` exists and is not a zombie.
pub fn process_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

impl Daemon {
    /// "session ended" events.
    pub fn sessions_ended(&self) -> Vec<serde_json::Value> {
        self.log_events()
            .into_iter()
            .filter(|e| e["message"] == "session ended")
            .collect()
    }

    /// Waits until every started session has ended, then panics if any ended for a reason other
    /// than a normal close (protocol error, desync, malformed message...).
    #[track_caller]
    pub fn assert_sessions_closed_cleanly(&self, timeout: Duration) {
        self.wait_for_log(timeout, "all sessions to end", |ev| {
            let started = ev
                .iter()
                .filter(|e| e["message"] == "session started")
                .count();
            let ended = ev
                .iter()
                .filter(|e| e["message"] == "session ended")
                .count();
            started > 0 && started == ended
        });
        let bad: Vec<_> = self
            .sessions_ended()
            .into_iter()
            .filter(|e| e["reason"] != "closed")
            .collect();
        assert!(
            bad.is_empty(),
            "sessions ended abnormally: {bad:#?}\nlog:\n{}",
            self.log_text()
        );
    }

    /// Number of "session started" events whose process name (`comm`) starts with `prefix`.
    pub fn sessions_of(&self, comm_prefix: &str) -> usize {
        self.sessions_started()
            .iter()
            .filter(|e| {
                e["comm"]
                    .as_str()
                    .is_some_and(|c| c.starts_with(comm_prefix))
            })
            .count()
    }
}
