//! `cargo xtask setup`: make a fresh host ready, idempotently. Each step checks before it acts,
//! and each failure says how to fix it.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};

use crate::util::{self, output, runs, status};

/// bpf-linker version known to build against nightly 1.97's LLVM 22.
const BPF_LINKER_VERSION: &str = "0.13.0";

/// Everything: eBPF toolchain, bpffs, kernel checks, test clients.
pub fn setup(clients: bool) -> Result<()> {
    ensure_c_bpf_toolchain()?;
    ensure_ebpf_toolchain()?;
    check_kernel()?;
    if clients {
        ensure_clients()?;
    }
    println!("xtask setup: host ready");
    Ok(())
}

/// clang (builds `ebpf/unix/*.bpf.c`), libbpf headers, and what the vendored libbpf in
/// libbpf-sys links against (libelf, zlib, pkg-config).
pub fn ensure_c_bpf_toolchain() -> Result<()> {
    let have = |p: &str| Path::new(p).exists();
    let mut missing = Vec::new();
    if !runs("clang", "--version") {
        missing.push("clang");
    }
    for (file, pkg) in [
        ("/usr/include/bpf/bpf_helpers.h", "libbpf-dev"),
        ("/usr/include/libelf.h", "libelf-dev"),
        ("/usr/include/zlib.h", "zlib1g-dev"),
    ] {
        if !have(file) {
            missing.push(pkg);
        }
    }
    if !runs("pkg-config", "--version") {
        missing.push("pkg-config");
    }
    if missing.is_empty() {
        return Ok(());
    }
    apt_install(&missing)
}

fn apt_install(pkgs: &[&str]) -> Result<()> {
    if !util::is_root() {
        bail!("missing packages {pkgs:?}: install them with apt-get (as root)");
    }
    println!("xtask setup: installing {pkgs:?}");
    let _ = status({
        let mut c = Command::new("apt-get");
        c.args(["update", "-qq"]);
        c
    });
    status({
        let mut c = Command::new("apt-get");
        c.args(["install", "-y", "-qq"])
            .args(pkgs)
            .env("DEBIAN_FRONTEND", "noninteractive");
        c
    })
    .with_context(|| format!("apt-get install {pkgs:?} failed"))
}

/// nightly + rust-src + bpf-linker.
pub fn ensure_ebpf_toolchain() -> Result<()> {
    let toolchains = output({
        let mut c = Command::new("rustup");
        c.args(["toolchain", "list"]);
        c
    })
    .context("rustup is required (the eBPF programs build with nightly)")?;
    if !toolchains.lines().any(|l| l.starts_with("nightly")) {
        println!("xtask setup: installing the nightly toolchain");
        status({
            let mut c = Command::new("rustup");
            c.args(["toolchain", "install", "nightly", "--profile", "minimal"]);
            c
        })
        .context("installing nightly failed; install it with `rustup toolchain install nightly`")?;
    }
    let comps = output({
        let mut c = Command::new("rustup");
        c.args(["component", "list", "--toolchain", "nightly", "--installed"]);
        c
    })?;
    if !comps.lines().any(|l| l.starts_with("rust-src")) {
        println!("xtask setup: adding rust-src to nightly");
        status({
            let mut c = Command::new("rustup");
            c.args(["component", "add", "rust-src", "--toolchain", "nightly"]);
            c
        })
        .context("`rustup component add rust-src --toolchain nightly` failed")?;
    }
    ensure_bpf_linker()
}

fn bpf_linker_ok() -> bool {
    let Ok(v) = output({
        let mut c = Command::new("bpf-linker");
        c.arg("--version");
        c
    }) else {
        return false;
    };
    v.contains(BPF_LINKER_VERSION)
}

/// Builds bpf-linker against nightly's own LLVM: LLVM_PREFIX points at a directory whose lib/
/// holds `libLLVM.so` and the versioned name, both linking to nightly's libLLVM (the versioned
/// name lets bpf-linker run outside rustup's environment).
fn ensure_bpf_linker() -> Result<()> {
    if bpf_linker_ok() {
        return Ok(());
    }
    let sysroot = output({
        let mut c = Command::new("rustc");
        c.args(["+nightly", "--print", "sysroot"]);
        c
    })?;
    let lib = Path::new(sysroot.trim()).join("lib");
    let llvm = std::fs::read_dir(&lib)
        .with_context(|| format!("reading {}", lib.display()))?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libLLVM.so."))
        })
        .with_context(|| {
            format!(
                "no libLLVM.so.* in {}: is the nightly toolchain complete?",
                lib.display()
            )
        })?;
    let prefix = llvm_prefix_dir()?;
    let plib = prefix.join("lib");
    std::fs::create_dir_all(&plib)?;
    for name in [
        "libLLVM.so".to_string(),
        llvm.file_name().unwrap().to_string_lossy().into_owned(),
    ] {
        let link = plib.join(name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&llvm, &link)
            .with_context(|| format!("symlinking {}", link.display()))?;
    }
    println!(
        "xtask setup: building bpf-linker {BPF_LINKER_VERSION} against {} (about a minute)",
        llvm.display()
    );
    status({
        let mut c = Command::new("cargo");
        c.args([
            "install",
            "bpf-linker",
            "--version",
            BPF_LINKER_VERSION,
            "--no-default-features",
            "--features",
            "llvm-22",
        ])
        .env("LLVM_PREFIX", &prefix);
        c
    })
    .context("installing bpf-linker failed")?;
    if !bpf_linker_ok() {
        bail!("bpf-linker was installed but does not run; is ~/.cargo/bin on PATH?");
    }
    Ok(())
}

fn llvm_prefix_dir() -> Result<PathBuf> {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .context("neither CARGO_HOME nor HOME is set")?;
    Ok(home.join("dbwarden-llvm-prefix"))
}

/// BTF, cgroup v2, bpffs (mounted when root), BPF LSM (informational).
fn check_kernel() -> Result<()> {
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        bail!("the kernel exposes no BTF (/sys/kernel/btf/vmlinux): dbwarden needs CONFIG_DEBUG_INFO_BTF=y");
    }
    let mounts = std::fs::read_to_string("/proc/mounts")?;
    let cg2 = mounts
        .lines()
        .find(|l| l.split_whitespace().nth(2) == Some("cgroup2"))
        .and_then(|l| l.split_whitespace().nth(1).map(str::to_string));
    match cg2 {
        Some(m) => println!("xtask setup: cgroup v2 mounted at {m}"),
        None => bail!("no cgroup2 filesystem mounted: mount one (e.g. `mount -t cgroup2 none /sys/fs/cgroup/unified`)"),
    }
    let bpffs = mounts
        .lines()
        .any(|l| l.split_whitespace().nth(2) == Some("bpf"));
    if !bpffs {
        if util::is_root() {
            std::fs::create_dir_all("/sys/fs/bpf").ok();
            status({
                let mut c = Command::new("mount");
                c.args(["-t", "bpf", "bpf", "/sys/fs/bpf"]);
                c
            })
            .context("mounting bpffs at /sys/fs/bpf failed")?;
            println!("xtask setup: mounted bpffs at /sys/fs/bpf");
        } else {
            println!("xtask setup: bpffs is not mounted; the daemon mounts it when run as root");
        }
    }
    match std::fs::read_to_string("/sys/kernel/security/lsm") {
        Ok(l) if l.split(',').any(|x| x.trim() == "bpf") => {
            println!("xtask setup: BPF LSM active ({})", l.trim())
        }
        _ => println!("xtask setup: note: BPF LSM is not active (not required yet)"),
    }
    Ok(())
}

/// psql/pgbench, the mariadb client, and the Python drivers the e2e tests use.
fn ensure_clients() -> Result<()> {
    let mut missing = Vec::new();
    for (bin, pkg) in [
        ("psql", "postgresql-client"),
        ("pgbench", "postgresql-client"),
        ("mariadb", "mariadb-client"),
        ("setpriv", "util-linux"),
    ] {
        if !runs(bin, "--version") && !missing.contains(&pkg) {
            missing.push(pkg);
        }
    }
    if !missing.is_empty() {
        apt_install(&missing)?;
    }
    let req = util::root()?.join("tests/clients/requirements.txt");
    if req.exists() {
        let check = Command::new("python3")
            .args(["-c", "import psycopg, asyncpg"])
            .output();
        let ok = check.map(|o| o.status.success()).unwrap_or(false);
        if !ok {
            println!(
                "xtask setup: installing Python test clients from {}",
                req.display()
            );
            status({
                let mut c = Command::new("python3");
                c.args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "-r",
                ])
                .arg(&req);
                c
            })
            .context("pip install of the Python test clients failed")?;
        }
    }
    Ok(())
}

/// cargo-fuzz for `cargo xtask fuzz`.
pub fn ensure_cargo_fuzz() -> Result<()> {
    if runs("cargo-fuzz", "--version") {
        return Ok(());
    }
    println!("xtask: installing cargo-fuzz");
    status({
        let mut c = Command::new("cargo");
        c.args(["install", "cargo-fuzz", "--locked"]);
        c
    })
}
