//! The `dbwarden` binary: thin glue over the library.
//!
//! Exit codes: 0 success, 1 runtime error, 2 usage or configuration error; `exec` passes the
//! command's own exit code through.

use clap::Parser;
use dbwarden::cli::{Cli, Command};

fn main() {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Run(args) => dbwarden::daemon::main(args),
        Command::Exec(args) => match dbwarden::exec::exec_in(
            &args.cgroup,
            args.user
                .map(|user| dbwarden::exec::RunAs {
                    user,
                    group: args.group,
                })
                .as_ref(),
            &args.command,
        ) {
            Ok(never) => match never {},
            Err(e) => {
                eprintln!("dbwarden exec: {e:#}");
                126
            }
        },
        Command::Detach(args) => dbwarden::daemon::detach_main(args),
        Command::Approvals(args) => match dbwarden::approvals_cli::main(args) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("dbwarden approvals: {e:#}");
                2
            }
        },
        Command::Policy(args) => match dbwarden::policy_cli::main(args) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("dbwarden policy: {e:#}");
                2
            }
        },
        Command::Sessions(args) => match dbwarden::sessions_cli::main(args) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("dbwarden sessions: {e:#}");
                2
            }
        },
    };
    std::process::exit(code);
}
