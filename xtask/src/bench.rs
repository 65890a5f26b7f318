//! `cargo xtask bench`: pgbench select-only, direct vs through dbwarden (same run, same
//! database), simple and prepared protocols, printed as a table with the ratio; then the
//! criterion benches of the pure crates.
//!
//! The daemon runs from the release build with its own cgroup, pin directory and port, and is
//! detached afterwards. Everything targets 127.0.0.1.

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use crate::interleave::{self, median};
use crate::util::{self, output, status};

/// One window of the interleaved recording-cost measurement.
const WINDOW: Duration = Duration::from_secs(1);

struct BenchDaemon {
    child: Child,
    bin: std::path::PathBuf,
    cgroup: String,
    bpffs: String,
    dir: std::path::PathBuf,
}

impl Drop for BenchDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = Command::new(&self.bin)
            .args(["detach", "--bpffs-dir", &self.bpffs])
            .stdout(Stdio::null())
            .status();
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
        if let Some(m) = mounts
            .lines()
            .find(|l| l.split_whitespace().nth(2) == Some("cgroup2"))
            .and_then(|l| l.split_whitespace().nth(1))
        {
            let _ = std::fs::remove_dir(std::path::Path::new(m).join(&self.cgroup));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start_daemon(tag: &str, config: &str) -> Result<BenchDaemon> {
    let bin = util::target_dir()?.join("release/dbwarden");
    let name = format!("dbwarden-bench-{}-{tag}", std::process::id());
    let dir = std::env::temp_dir().join(&name);
    std::fs::create_dir_all(&dir)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let bpffs = format!("/sys/fs/bpf/{name}");
    let log = std::fs::File::create(dir.join("daemon.log"))?;
    let cfg = dir.join("dbwarden.toml");
    // The benchmark measures the proxy path, not the policy's opinion of pgbench.
    let policy = dir.join("policy.toml");
    std::fs::write(
        &policy,
        "[policy]\nname = \"bench-allow-all\"\ndefault = \"allow\"\n",
    )?;
    std::fs::write(&cfg, config)?;
    let child = Command::new(&bin)
        .args([
            "run",
            "--cgroup",
            &name,
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--bpffs-dir",
            &bpffs,
        ])
        .arg("--sessions-dir")
        .arg(dir.join("sessions"))
        .arg("--runtime-dir")
        .arg(dir.join("run"))
        .arg("--config")
        .arg(&cfg)
        .arg("--policy")
        .arg(&policy)
        .env("DBWARDEN_LOG", "warn")
        .stderr(log)
        .stdout(Stdio::null())
        .spawn()
        .context("starting the daemon")?;
    let d = BenchDaemon {
        child,
        bin,
        cgroup: name,
        bpffs,
        dir,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!(
                "daemon did not start; see {}",
                d.dir.join("daemon.log").display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // The listener is up; give the attach a moment to complete.
    std::thread::sleep(Duration::from_millis(500));
    Ok(d)
}

/// PgBouncer in session mode, when installed: the reference for what any userspace proxy on the
/// path costs on this machine (it forwards whole messages and parses no SQL). `None` when the
/// binary is missing; the table then says so.
struct Bouncer {
    child: Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start_pgbouncer(db: &str) -> Result<Option<Bouncer>> {
    let Some(bin) = ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
        .into_iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.exists())
    else {
        return Ok(None);
    };
    let dir = std::env::temp_dir().join(format!("dbwarden-bench-pgbouncer-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    std::fs::write(dir.join("users.txt"), "\"postgres\" \"\"\n")?;
    std::fs::write(
        dir.join("pgbouncer.ini"),
        format!(
            "[databases]\n{db} = host=127.0.0.1 port=5432\n\n[pgbouncer]\nlisten_addr = 127.0.0.1\n\
             listen_port = {port}\nauth_type = trust\nauth_file = {users}\npool_mode = session\n\
             default_pool_size = 16\nmax_client_conn = 64\nlogfile = {log}\nunix_socket_dir =\n",
            users = dir.join("users.txt").display(),
            log = dir.join("pgbouncer.log").display(),
        ),
    )?;
    // PgBouncer refuses to run as root: -u drops to the postgres user, who must read the files.
    let _ = Command::new("chown")
        .args(["-R", "postgres"])
        .arg(&dir)
        .status();
    let mut cmd = Command::new(bin);
    if util::is_root() {
        cmd.args(["-u", "postgres"]);
    }
    let child = cmd
        .arg(dir.join("pgbouncer.ini"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting pgbouncer")?;
    let b = Bouncer { child, port, dir };
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!(
                "pgbouncer did not start; see {}",
                b.dir.join("pgbouncer.log").display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(Some(b))
}

/// Daemon CPU time (user + system, all threads) in clock ticks, from /proc.
fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat
        .rsplit_once(") ")
        .map(|(_, r)| r)
        .context("unexpected /proc/<pid>/stat")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let t = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    Ok(t(11) + t(12))
}

fn clock_ticks_per_sec() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
        .max(1)
}

/// One pgbench run: TPS, transactions, and (through the daemon) the daemon's CPU µs per
/// transaction — a figure far less noisy than TPS on a shared 2-core runner.
struct Run {
    tps: f64,
    cpu_us_per_txn: Option<f64>,
}

/// A pgbench workload: a row of the table.
#[derive(Clone, Copy)]
struct Workload {
    /// Row label.
    name: &'static str,
    /// pgbench arguments choosing the script and protocol.
    args: &'static [&'static str],
    /// Measured by interleaved windows too (the workload must hold no locks across a freeze:
    /// a frozen TPC-B client would block the other side on its branch row).
    interleave: bool,
}

const WORKLOADS: [Workload; 3] = [
    Workload {
        name: "S simple",
        args: &["-S", "-M", "simple"],
        interleave: true,
    },
    Workload {
        name: "S prepared",
        args: &["-S", "-M", "prepared"],
        interleave: true,
    },
    Workload {
        name: "tpcb",
        args: &["-M", "simple"],
        interleave: false,
    },
];

fn pgbench(through: Option<&BenchDaemon>, db: &str, w: Workload, secs: u64) -> Result<Run> {
    let before = through.map(|d| cpu_ticks(d.child.id())).transpose()?;
    let r = pgbench_tps(through, 5432, db, w, secs)?;
    let cpu_us_per_txn = match (through, before) {
        (Some(d), Some(b)) if r.1 > 0 => {
            let ticks = cpu_ticks(d.child.id())?.saturating_sub(b);
            Some(ticks as f64 * 1e6 / clock_ticks_per_sec() as f64 / r.1 as f64)
        }
        _ => None,
    };
    Ok(Run {
        tps: r.0,
        cpu_us_per_txn,
    })
}

fn pgbench_tps(
    through: Option<&BenchDaemon>,
    port: u16,
    db: &str,
    w: Workload,
    secs: u64,
) -> Result<(f64, u64)> {
    let mut cmd = match through {
        Some(d) => {
            let mut c = Command::new(&d.bin);
            c.args(["exec", "--cgroup", &d.cgroup, "--", "pgbench"]);
            c
        }
        None => Command::new("pgbench"),
    };
    cmd.args([
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-U",
        "postgres",
        "-n",
    ])
    .args(["-c", "8", "-j", "2"])
    .args(w.args)
    .args(["-T", &secs.to_string(), db]);
    let out = output(cmd)?;
    let tps = out
        .lines()
        .find_map(|l| l.strip_prefix("tps = "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok())
        .with_context(|| format!("no tps in pgbench output:\n{out}"))?;
    let txns = out
        .lines()
        .find_map(|l| l.strip_prefix("number of transactions actually processed: "))
        .and_then(|l| l.split(['/', ' ']).next())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    Ok((tps, txns))
}

fn dir_size(dir: &std::path::Path) -> Result<(u64, usize)> {
    let mut total = 0;
    let mut files = 0;
    for e in std::fs::read_dir(dir)?.flatten() {
        if e.file_name().to_string_lossy().ends_with(".dbws") {
            total += e.metadata()?.len();
            files += 1;
        }
    }
    Ok((total, files))
}

/// Statements recorded, from `dbwarden sessions list` (the STMTS column).
fn count_statements(d: &BenchDaemon) -> Result<u64> {
    // Sessions are sealed when pgbench disconnects; give the writer threads a moment.
    std::thread::sleep(Duration::from_secs(2));
    let mut c = Command::new(&d.bin);
    c.args(["sessions", "--dir"])
        .arg(d.dir.join("sessions"))
        .arg("list");
    let out = output(c)?;
    let mut n = 0;
    for line in out.lines().skip(2) {
        let cols: Vec<&str> = line.split('|').map(str::trim).collect();
        if cols.len() >= 8 {
            n += cols[5].parse::<u64>().unwrap_or(0);
        }
    }
    Ok(n)
}

/// Runs the benchmarks and prints the results.
pub fn bench(quick: bool, criterion: bool, rounds: usize, pairs: usize) -> Result<()> {
    let rounds = if quick { 1 } else { rounds.max(1) };
    let pairs = if quick { pairs.min(5) } else { pairs };
    if !util::is_root() {
        bail!("the pgbench comparison attaches eBPF programs: run `sudo cargo xtask bench`");
    }
    crate::setup::ensure_c_bpf_toolchain()?;
    crate::setup::ensure_ebpf_toolchain()?;
    util::cargo(&["build", "--release", "-p", "dbwarden"])?;
    let db = format!("dbwarden_bench_{}", std::process::id());
    let psql = |sql: &str| {
        let mut c = Command::new("psql");
        c.args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-X",
            "-q",
            "-c",
            sql,
        ]);
        status(c)
    };
    psql(&format!("CREATE DATABASE {db}"))?;
    let result = (|| {
        let scale = if quick { "2" } else { "10" };
        status({
            let mut c = Command::new("pgbench");
            c.args([
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-i",
                "-q",
                "-s",
                scale,
                &db,
            ]);
            c
        })?;
        let secs = if quick { 5 } else { 10 };
        let rec_on = start_daemon("rec", "")?;
        let rec_off = start_daemon("norec", "[recording]\nenabled = false\n")?;
        let bouncer = start_pgbouncer(&db)?;
        println!(
            "\npgbench -n -c 8 -j 2 -T {secs}, scale {scale}, {} cores; direct vs through dbwarden; median of {} interleaved rounds\n\
             (S = select-only -S, simple or prepared protocol; tpcb = pgbench's default TPC-B-like script)",
            std::thread::available_parallelism().map_or(0, std::num::NonZeroUsize::get),
            rounds
        );
        println!(
            "{:<10} {:>9} {:>9} {:>6} {:>9} {:>6} {:>9} {:>6} {:>9} | {:>9} {:>9} {:>9}",
            "workload",
            "direct",
            "dbwarden",
            "ratio",
            "no-rec",
            "ratio",
            "pgbouncer",
            "ratio",
            "rec.cost",
            "cpu µs/tx",
            "no-rec",
            "rec.cost"
        );
        // Interleaved rounds, medians: a 2-core runner is noisy, and a single sequence of
        // runs mostly measures what else the machine did at that moment.
        for w in WORKLOADS {
            let (mut direct, mut proxied, mut norec) = (Vec::new(), Vec::new(), Vec::new());
            let (mut cpu_rec, mut cpu_norec, mut bounced) = (Vec::new(), Vec::new(), Vec::new());
            let mut paired_cost = Vec::new();
            for round in 0..rounds {
                direct.push(pgbench(None, &db, w, secs)?.tps);
                // Recording on and off run back to back, in alternating order, and the cost is
                // taken per round: slow drift on a shared runner then cancels out.
                let (on, off) = if round % 2 == 0 {
                    let on = pgbench(Some(&rec_on), &db, w, secs)?;
                    (on, pgbench(Some(&rec_off), &db, w, secs)?)
                } else {
                    let off = pgbench(Some(&rec_off), &db, w, secs)?;
                    (pgbench(Some(&rec_on), &db, w, secs)?, off)
                };
                paired_cost.push((1.0 - on.tps / off.tps) * 100.0);
                proxied.push(on.tps);
                cpu_rec.extend(on.cpu_us_per_txn);
                norec.push(off.tps);
                cpu_norec.extend(off.cpu_us_per_txn);
                if let Some(b) = &bouncer {
                    bounced.push(pgbench_tps(None, b.port, &db, w, secs)?.0);
                }
            }
            let rounds_cost = paired_cost
                .iter()
                .map(|c| format!("{c:.1}"))
                .collect::<Vec<_>>()
                .join(" ");
            let (direct, proxied, norec) = (median(direct), median(proxied), median(norec));
            let (cpu_rec, cpu_norec, bounced) =
                (median(cpu_rec), median(cpu_norec), median(bounced));
            println!(
                "{:<10} {direct:>9.0} {proxied:>9.0} {:>5.2}x {norec:>9.0} {:>5.2}x {bounced:>9.0} {:>5.2}x {:>8.1}% | {cpu_rec:>9.1} {cpu_norec:>9.1} {:>8.1}%",
                w.name,
                proxied / direct,
                norec / direct,
                bounced / direct,
                median(paired_cost),
                (cpu_rec / cpu_norec - 1.0) * 100.0
            );
            println!("{:<10} rec.cost per round (%): {rounds_cost}", "");
            if pairs > 0 && w.interleave {
                let scratch = std::env::temp_dir()
                    .join(format!("dbwarden-bench-interleave-{}", std::process::id()));
                let r = interleave::recording_cost(
                    &interleave::Side {
                        bin: &rec_on.bin,
                        cgroup: &rec_on.cgroup,
                    },
                    &interleave::Side {
                        bin: &rec_off.bin,
                        cgroup: &rec_off.cgroup,
                    },
                    &db,
                    w.args,
                    WINDOW,
                    pairs,
                    &scratch,
                );
                let _ = std::fs::remove_dir_all(&scratch);
                let r = r?;
                let (mean, ci) = r.mean_ci();
                println!(
                    "{:<10} rec.cost interleaved ({pairs} × {:.0} s windows each way): mean {mean:.1}% ± {ci:.1} (95 % CI), median {:.1}%; window TPS on {:.0} / off {:.0}",
                    "",
                    WINDOW.as_secs_f64(),
                    r.median(),
                    r.on_tps,
                    r.off_tps
                );
            }
        }
        if bouncer.is_none() {
            println!("(pgbouncer is not installed, so there is no reference row: apt-get install pgbouncer)");
        }
        println!(
            "(TPS: median of interleaved rounds; pgbouncer = PgBouncer in session mode on the same \
             machine, the cost of a userspace hop that parses no SQL; rec.cost = TPS lost to \
             recording, the median of each round's back-to-back on/off pair; rec.cost interleaved = \
             the same from alternating 1 s windows, the steadier figure on a noisy runner. cpu µs/tx: \
             the daemon's own CPU time per transaction, recording on / off, and the recording's share.)"
        );
        // Bytes per statement on disk, over every workload's recorded sessions.
        let (bytes, files) = dir_size(&rec_on.dir.join("sessions"))?;
        let stmts = count_statements(&rec_on)?;
        if stmts > 0 {
            println!(
                "recording: {files} session files, {bytes} bytes, {stmts} statements: {:.0} bytes/statement",
                bytes as f64 / stmts as f64
            );
        }
        Ok::<(), anyhow::Error>(())
    })();
    let _ = psql(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"));
    result?;
    if criterion {
        let mut args = vec![
            "bench",
            "--workspace",
            "--exclude",
            "xtask",
            "--exclude",
            "dbwarden-tests",
            "--exclude",
            "dbwarden-ebpf",
        ];
        if quick {
            // Only the criterion harnesses take these flags (not the libtest unit-test ones).
            args.extend([
                "--benches",
                "--",
                "--warm-up-time",
                "1",
                "--measurement-time",
                "2",
            ]);
        }
        util::cargo(&args)?;
    }
    Ok(())
}
