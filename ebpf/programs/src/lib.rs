//! Host-side placeholder so the workspace (and the daemon's build dependency) can compile this
//! package for the host; the programs themselves are in `main.rs`, built for `bpfel-unknown-none`.
#![no_std]
