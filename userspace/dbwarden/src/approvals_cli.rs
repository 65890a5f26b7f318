//! `dbwarden approvals list|show|approve|deny` over the daemon's control socket. The approver is
//! whoever the kernel says is on the other end of the socket (SO_PEERCRED): root or a member of
//! the approver group.

use anyhow::Result;
use dbwarden_approvals::control::client;

use crate::cli::{ApprovalsArgs, ApprovalsCommand};

/// Runs an `approvals` subcommand; returns the exit code.
pub fn main(args: ApprovalsArgs) -> Result<i32> {
    let dir = args.runtime_dir.unwrap_or_else(|| "/run/dbwarden".into());
    let sock = dir.join(dbwarden_approvals::control::SOCKET_FILE);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let r: Result<String, client::ClientError> = match args.command {
            ApprovalsCommand::List => client::list(&sock).await.map(|v| client::render_table(&v)),
            ApprovalsCommand::Show { id } => client::show(&sock, &id)
                .await
                .map(|v| client::render_detail(&v)),
            ApprovalsCommand::Approve { id, reason, scope } => {
                client::approve(&sock, &id, scope, reason.as_deref())
                    .await
                    .map(|d| format!("{}\n", d.summary()))
            }
            ApprovalsCommand::Deny { id, reason } => client::deny(&sock, &id, reason.as_deref())
                .await
                .map(|d| format!("{}\n", d.summary())),
        };
        match r {
            Ok(text) => {
                print!("{text}");
                Ok(0)
            }
            Err(e) => {
                eprintln!("dbwarden approvals: {e}");
                Ok(1)
            }
        }
    })
}
