//! `cargo xtask <task>`: everything a developer or CI needs, from a fresh host.
//!
//! * `setup` — idempotently install the eBPF toolchain (nightly `rust-src`, `bpf-linker` built
//!   against nightly's LLVM), mount bpffs, check BTF / cgroup v2 / BPF LSM, install the test
//!   clients (Debian and PyPI packages). Every failure says what to do.
//! * `build` — build the eBPF programs (via the daemon's build.rs) and userspace.
//! * `run` — build, then run the daemon with the embedded defaults (`-- ARGS` are passed on).
//! * `test` — setup, build, then every test in the workspace (unit, codec, e2e with eBPF).
//! * `bench` — pgbench direct vs through dbwarden, plus the criterion benches.
//! * `fuzz` — short cargo-fuzz runs of the wire codecs.

mod bench;
mod interleave;
mod setup;
mod util;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "dbwarden development tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Make this host ready to build and test dbwarden (idempotent).
    Setup {
        /// Skip installing client packages used by the tests (psql, mariadb, Python drivers).
        #[arg(long)]
        no_clients: bool,
    },
    /// Build eBPF programs and userspace.
    Build {
        /// Release profile.
        #[arg(long)]
        release: bool,
    },
    /// Build and run the daemon (as root) with the embedded defaults; extra args follow `--`.
    Run {
        /// Release profile.
        #[arg(long)]
        release: bool,
        /// Arguments for `dbwarden run`.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Run every test (needs root, PostgreSQL and MariaDB on loopback).
    Test {
        /// Skip `setup` (when you know the host is ready).
        #[arg(long)]
        no_setup: bool,
        /// Extra arguments for `cargo test` (after `--`).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Benchmarks: pgbench direct vs through dbwarden, criterion benches.
    Bench {
        /// Shorter runs (for a smoke check).
        #[arg(long)]
        quick: bool,
        /// Skip the criterion benches.
        #[arg(long)]
        no_criterion: bool,
        /// Interleaved pgbench rounds per mode (more rounds, steadier medians).
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// Recording on/off window pairs per mode in the interleaved measurement (0: skip it).
        #[arg(long, default_value_t = 60)]
        pairs: usize,
    },
    /// Run each wire-codec fuzz target for a while.
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 30)]
        seconds: u64,
    },
}

fn main() {
    let cli = Cli::parse();
    let r = match cli.task {
        Task::Setup { no_clients } => setup::setup(!no_clients),
        Task::Build { release } => build(release),
        Task::Run { release, args } => run(release, &args),
        Task::Test { no_setup, args } => test(no_setup, &args),
        Task::Bench {
            quick,
            no_criterion,
            rounds,
            pairs,
        } => bench::bench(quick, !no_criterion, rounds, pairs),
        Task::Fuzz { seconds } => fuzz(seconds),
    };
    if let Err(e) = r {
        eprintln!("xtask: {e:#}");
        std::process::exit(1);
    }
}

fn build(release: bool) -> Result<()> {
    setup::ensure_c_bpf_toolchain()?;
    setup::ensure_ebpf_toolchain()?;
    let mut args = vec!["build", "-p", "dbwarden", "-p", "dbwarden-tests", "--bins"];
    if release {
        args.push("--release");
    }
    util::cargo(&args)
}

fn run(release: bool, extra: &[String]) -> Result<()> {
    build(release)?;
    let bin = util::target_dir()?
        .join(if release { "release" } else { "debug" })
        .join("dbwarden");
    let mut cmd = std::process::Command::new(bin);
    cmd.arg("run").args(extra);
    util::exec(cmd)
}

fn test(no_setup: bool, extra: &[String]) -> Result<()> {
    if !no_setup {
        setup::setup(true)?;
    }
    build(false)?;
    let mut args: Vec<String> = ["test", "--workspace", "--no-fail-fast"]
        .map(String::from)
        .to_vec();
    if !extra.is_empty() {
        args.push("--".into());
        args.extend(extra.iter().cloned());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    util::cargo(&args)
}

fn fuzz(seconds: u64) -> Result<()> {
    setup::ensure_cargo_fuzz()?;
    let dir = util::root()?.join("userspace/wire-pg/fuzz");
    for target in ["frontend", "backend"] {
        println!("xtask: fuzzing wire-pg/{target} for {seconds}s");
        let mut cmd = std::process::Command::new("cargo");
        cmd.current_dir(&dir).args([
            "+nightly",
            "fuzz",
            "run",
            target,
            "--",
            &format!("-max_total_time={seconds}"),
        ]);
        util::status(cmd)?;
    }
    Ok(())
}
