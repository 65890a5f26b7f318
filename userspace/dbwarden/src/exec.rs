//! `dbwarden exec`: move this process into a controlled cgroup, then exec the command, so every
//! socket the command creates belongs to the cgroup (a socket's cgroup is fixed at creation).

use std::{ffi::OsString, os::unix::process::CommandExt};

use anyhow::{bail, Context, Result};

use crate::cgroup::Cgroup;

/// Moves into `cgroup` and replaces this process with `command`. Only returns on error.
pub fn exec_in(cgroup: &str, command: &[OsString]) -> Result<std::convert::Infallible> {
    let cg = Cgroup::resolve(cgroup)?;
    cg.require()?;
    cg.add_process(0)
        .with_context(|| format!("moving into cgroup {} (are you root?)", cg.path.display()))?;
    let Some((prog, args)) = command.split_first() else {
        bail!("no command given");
    };
    let err = std::process::Command::new(prog).args(args).exec();
    Err(err).with_context(|| format!("executing {}", prog.to_string_lossy()))
}
