//! Builds `ebpf/programs` for the BPF target (nightly + rust-src + bpf-linker, installed by
//! `cargo xtask setup`) and leaves the object in OUT_DIR for `include_bytes_aligned!`.
fn main() -> anyhow::Result<()> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../ebpf/programs");
    println!("cargo:rerun-if-changed={root}/src");
    println!("cargo:rerun-if-changed=../../ebpf/common/src");
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "dbwarden-ebpf",
            root_dir: root,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
}
