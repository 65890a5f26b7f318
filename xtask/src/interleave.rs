//! Recording cost by interleaved windows: one pgbench through the recording daemon and one
//! through the non-recording daemon, both connected for the whole run, take turns. Every
//! `window` the running one's cgroup is frozen (`cgroup.freeze`) and the other's thawed, so the
//! two configurations alternate many times a minute and each on-window is compared with the
//! off-windows on either side of it.
//!
//! Why: on a shared 2-core runner the machine's speed moves by tens of percent from one second
//! to the next (a single pgbench run's per-second TPS was seen to climb from 22k to 39k).
//! Separate 10 s runs, on then off, compare two different machines; short alternating windows
//! compare nearly the same one, and give many pairs per minute to average.
//!
//! Each window's TPS comes from pgbench's per-transaction log (`-l`): transactions whose
//! completion time falls inside the window, skipping its first `SETTLE` (responses that
//! arrived while the pgbench was frozen complete right after the thaw). The daemons and
//! PostgreSQL are never frozen: work a configuration leaves behind (a writer thread finishing
//! its last batch) runs in the other's window, which slightly favours that configuration.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{bail, Context, Result};

/// Skipped at the start of each window.
const SETTLE: Duration = Duration::from_millis(50);

/// One side of the comparison: a daemon's binary and the cgroup it intercepts.
pub struct Side<'a> {
    pub bin: &'a Path,
    pub cgroup: &'a str,
}

/// What an interleaved run measured.
pub struct Interleaved {
    /// TPS lost to recording, per on-window, against the mean of the off-windows beside it (%).
    pub costs: Vec<f64>,
    /// Median TPS of the on- and off-windows.
    pub on_tps: f64,
    pub off_tps: f64,
}

impl Interleaved {
    /// Mean cost and the half-width of its 95 % confidence interval (normal approximation).
    pub fn mean_ci(&self) -> (f64, f64) {
        let n = self.costs.len() as f64;
        if n < 2.0 {
            return (self.costs.first().copied().unwrap_or(f64::NAN), f64::NAN);
        }
        let mean = self.costs.iter().sum::<f64>() / n;
        let var = self.costs.iter().map(|c| (c - mean).powi(2)).sum::<f64>() / (n - 1.0);
        (mean, 1.96 * (var / n).sqrt())
    }

    pub fn median(&self) -> f64 {
        median(self.costs.clone())
    }
}

pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The mounted cgroup v2 hierarchy, from /proc/mounts.
pub fn cgroup2_root() -> Result<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/mounts")?;
    mounts
        .lines()
        .find(|l| l.split_whitespace().nth(2) == Some("cgroup2"))
        .and_then(|l| l.split_whitespace().nth(1))
        .map(PathBuf::from)
        .context("no cgroup2 mount in /proc/mounts")
}

/// A pgbench running (through `dbwarden exec`) in a daemon's cgroup, logging every transaction.
struct Client {
    child: Child,
    freeze: PathBuf,
    log_prefix: PathBuf,
}

impl Client {
    fn start(
        side: &Side<'_>,
        db: &str,
        args: &[&str],
        secs: u64,
        log_prefix: PathBuf,
    ) -> Result<Self> {
        let freeze = cgroup2_root()?.join(side.cgroup).join("cgroup.freeze");
        if !freeze.exists() {
            bail!(
                "{} is missing: the kernel has no cgroup freezer",
                freeze.display()
            );
        }
        let child = Command::new(side.bin)
            .args(["exec", "--cgroup", side.cgroup, "--", "pgbench"])
            .args([
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-n",
                "-c",
                "8",
                "-j",
                "2",
            ])
            .args(args)
            .args(["-T", &secs.to_string(), "-l"])
            .arg("--log-prefix")
            .arg(&log_prefix)
            .arg(db)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting pgbench")?;
        Ok(Self {
            child,
            freeze,
            log_prefix,
        })
    }

    fn set_frozen(&self, frozen: bool) -> Result<()> {
        std::fs::write(&self.freeze, if frozen { "1" } else { "0" })
            .with_context(|| format!("writing {}", self.freeze.display()))
    }

    /// Thaws, waits for pgbench to end, and returns its transactions' completion times
    /// (seconds since the epoch), sorted.
    fn finish(mut self) -> Result<Vec<f64>> {
        self.set_frozen(false)?;
        let out = std::mem::replace(&mut self.child, dummy()?).wait_with_output()?;
        if !out.status.success() {
            bail!(
                "pgbench failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        completion_times(&self.log_prefix)
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.freeze, "0");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A finished child to leave in a `Client` whose pgbench was taken.
fn dummy() -> Result<Child> {
    let mut c = Command::new("true").spawn()?;
    c.wait()?;
    Ok(c)
}

/// Completion times from pgbench's per-transaction logs (`PREFIX.PID`, `PREFIX.PID.N`): fields
/// `client transaction latency_us script epoch_s epoch_us`.
fn completion_times(prefix: &Path) -> Result<Vec<f64>> {
    let dir = prefix.parent().context("log prefix has no directory")?;
    let stem = prefix
        .file_name()
        .and_then(|s| s.to_str())
        .context("log prefix is not UTF-8")?;
    let mut times = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name();
        if !name
            .to_str()
            .is_some_and(|n| n.starts_with(&format!("{stem}.")))
        {
            continue;
        }
        let text = std::fs::read_to_string(e.path())?;
        for line in text.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (Some(s), Some(us)) = (f.get(4), f.get(5)) else {
                bail!(
                    "unexpected pgbench log line in {}: {line}",
                    e.path().display()
                );
            };
            let s: f64 = s.parse().context("pgbench log epoch")?;
            let us: f64 = us.parse().context("pgbench log microseconds")?;
            times.push(s + us / 1e6);
        }
    }
    if times.is_empty() {
        bail!("pgbench wrote no transaction log under {}", dir.display());
    }
    times.sort_by(f64::total_cmp);
    Ok(times)
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Transactions per second completed in `[start + SETTLE, end)`.
fn rate(times: &[f64], start: f64, end: f64) -> f64 {
    let start = start + SETTLE.as_secs_f64();
    let a = times.partition_point(|&t| t < start);
    let b = times.partition_point(|&t| t < end);
    (b - a) as f64 / (end - start)
}

/// Runs `pairs` on/off window pairs of `window` each; `scratch` holds pgbench's logs.
pub fn recording_cost(
    on: &Side<'_>,
    off: &Side<'_>,
    db: &str,
    args: &[&str],
    window: Duration,
    pairs: usize,
    scratch: &Path,
) -> Result<Interleaved> {
    let _ = std::fs::remove_dir_all(scratch);
    std::fs::create_dir_all(scratch)?;
    // Long enough for every window, the warm-up and the connections; both end on their own.
    let secs = (window.as_secs_f64() * 2.0 * pairs as f64).ceil() as u64 + 8;
    let a = Client::start(on, db, args, secs, scratch.join("on"))?;
    let b = Client::start(off, db, args, secs, scratch.join("off"))?;
    // Both connect and warm up together, then the on side starts alone.
    std::thread::sleep(Duration::from_secs(2));
    b.set_frozen(true)?;
    std::thread::sleep(Duration::from_millis(500));
    let mut windows = Vec::with_capacity(2 * pairs + 1);
    // on, off, on, ..., on: every off-window has an on-window on each side and vice versa.
    for i in 0..=2 * pairs {
        let running_on = i % 2 == 0;
        let start = now();
        std::thread::sleep(window);
        let end = now();
        windows.push((running_on, start, end));
        if i < 2 * pairs {
            let (stop, go) = if running_on { (&a, &b) } else { (&b, &a) };
            stop.set_frozen(true)?;
            go.set_frozen(false)?;
        }
    }
    b.set_frozen(true)?;
    let on_times = a.finish()?;
    let off_times = b.finish()?;
    let rates: Vec<(bool, f64)> = windows
        .iter()
        .map(|&(is_on, s, e)| {
            (
                is_on,
                rate(if is_on { &on_times } else { &off_times }, s, e),
            )
        })
        .collect();
    // Each off-window against the mean of the on-windows beside it: a linear drift of the
    // machine's speed cancels.
    let costs = rates
        .windows(3)
        .filter(|w| !w[1].0)
        .map(|w| (1.0 - (w[0].1 + w[2].1) / 2.0 / w[1].1) * 100.0)
        .collect();
    let med = |on: bool| median(rates.iter().filter(|r| r.0 == on).map(|r| r.1).collect());
    Ok(Interleaved {
        costs,
        on_tps: med(true),
        off_tps: med(false),
    })
}
