//! dbwarden: AI agents in CI talk to databases holding cardholder data; dbwarden makes every such
//! connection attributable, policed, masked and recorded, with no change to the agents.
//!
//! # How a connection flows
//! 1. [`intercept`]: eBPF programs on the controlled cgroups ([`cgroup`]) rewrite the agent's
//!    `connect()` to the daemon's listener and record who connected and where it wanted to go.
//!    Unix-socket connects to database sockets are rewritten to one daemon listener per socket
//!    ([`intercept::unix`]); any other path that reaches a database socket is refused.
//! 2. [`server`]: the accept loop takes that kernel record by the connection's 4-tuple, or for
//!    a Unix socket by the accepted socket's cookie (no record ⇒ refused), and [`identity`]
//!    enriches it from `/proc`.
//! 3. [`session`]: connects upstream to the original destination and runs the protocol session
//!    (decode → policy → forward; responses → masking → recording → agent).
//! 4. [`daemon`] wires it together with [`config`] and shutdown; [`cli`] and [`exec`] are the
//!    command-line surface.
//!
//! The pure pieces — wire codecs, policy, masking, recording — are separate crates without tokio
//! (`userspace/{wire-pg,policy,mask,record}`).

pub mod approvals;
pub mod approvals_cli;
pub mod catalog;
pub mod cgroup;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod destination;
pub mod exec;
pub mod identity;
pub mod intercept;
pub mod masking;
pub mod memory;
pub mod metrics;
pub mod pipeline;
pub mod policy_cli;
pub mod privilege;
pub mod server;
pub mod session;
pub mod sessions_cli;
pub mod startup_policy;
pub mod unix_listen;
pub mod unix_resolve;
