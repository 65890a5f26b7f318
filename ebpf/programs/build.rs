//! Rebuild the programs whenever the `bpf-linker` binary changes: building them has an
//! undeclared dependency on it.
fn main() {
    if let Ok(linker) = which::which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", linker.display());
    }
}
