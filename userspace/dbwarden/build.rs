//! Builds the eBPF programs and leaves the objects in OUT_DIR:
//! - `ebpf/programs` (Rust) for the BPF target through aya-build (nightly + rust-src +
//!   bpf-linker, installed by `cargo xtask setup`), for `include_bytes_aligned!`;
//! - `ebpf/unix/dbw_unix.bpf.c` (C, CO-RE) with clang `-target bpf`, loaded by libbpf: the
//!   Unix-socket programs need a kfunc and attach types that aya 0.14 cannot load.
use std::{path::PathBuf, process::Command};

use anyhow::{bail, Context};

fn main() -> anyhow::Result<()> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../ebpf/programs");
    println!("cargo:rerun-if-changed={root}/src");
    println!("cargo:rerun-if-changed=../../ebpf/common/src");
    build_unix()?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "dbwarden-ebpf",
            root_dir: root,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
}

fn build_unix() -> anyhow::Result<()> {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../ebpf/unix"));
    for f in ["dbw_unix.bpf.c", "dbw_unix.h", "kernel_types.h"] {
        println!("cargo:rerun-if-changed={}", dir.join(f).display());
    }
    let out = PathBuf::from(std::env::var("OUT_DIR")?).join("dbw_unix.bpf.o");
    let clang = std::env::var("DBWARDEN_CLANG").unwrap_or_else(|_| "clang".into());
    let status = Command::new(&clang)
        .args(["-target", "bpf", "-O2", "-g", "-Wall", "-Werror", "-I"])
        .arg(&dir)
        .arg("-c")
        .arg(dir.join("dbw_unix.bpf.c"))
        .arg("-o")
        .arg(&out)
        .status()
        .with_context(|| {
            format!(
                "running {clang} for ebpf/unix (install clang and libbpf-dev: `cargo xtask setup`)"
            )
        })?;
    if !status.success() {
        bail!("{clang} failed to build ebpf/unix/dbw_unix.bpf.c ({status}); `cargo xtask setup` installs clang and libbpf-dev");
    }
    Ok(())
}
