//! dbwarden's kernel side. Built for `bpfel-unknown-none` by aya-build (see
//! `userspace/dbwarden/build.rs`); on the host this file compiles to an empty binary.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod programs;

#[cfg(not(target_arch = "bpf"))]
fn main() {}
