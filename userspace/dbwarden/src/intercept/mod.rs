//! The kernel side, seen from userspace: load the eBPF object, attach it to the controlled
//! cgroups, pin everything under bpffs (so it stays attached — fail closed — when the daemon
//! stops), adopt a previous daemon's pins, and look up a redirected connection's kernel record.

mod addr;
#[expect(
    clippy::result_large_err,
    reason = "aya's error types are large; these errors happen once, at startup or detach"
)]
mod loader;
pub mod sock_diag;
pub mod unix;

pub use addr::{key_for, to_socket_addr, Network};
pub use loader::{check_privileges, detach, InterceptConfig, Interceptor, LoadError};
