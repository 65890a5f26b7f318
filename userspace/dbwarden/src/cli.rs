//! Command-line interface (clap derive). Each flag's doc comment is its help text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// dbwarden: kernel-attested access control, masking and recording for AI agents' database
/// connections.
#[derive(Debug, Parser)]
#[command(name = "dbwarden", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: attach interception to the controlled cgroups and proxy their database
    /// connections.
    Run(RunArgs),
    /// Run a command inside a controlled cgroup (every socket it opens is intercepted).
    Exec(ExecArgs),
    /// Remove the pinned eBPF programs and maps on purpose (agents then reach databases
    /// directly again).
    Detach(DetachArgs),
    /// Read session recordings: list, show, replay, verify, export.
    Sessions(SessionsArgs),
    /// Validate policy files and evaluate statements against a policy.
    Policy(PolicyArgs),
    /// List, show, approve or deny statements held for approval.
    Approvals(ApprovalsArgs),
}

/// `dbwarden approvals`.
#[derive(Debug, Args)]
pub struct ApprovalsArgs {
    /// The daemon's runtime directory (holds control.sock). Default: /run/dbwarden.
    #[arg(long, global = true, value_name = "DIR")]
    pub runtime_dir: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: ApprovalsCommand,
}

/// `dbwarden approvals` subcommands.
#[derive(Debug, Subcommand)]
pub enum ApprovalsCommand {
    /// Pending requests.
    List,
    /// One request (pending or recently decided).
    Show {
        /// Request id.
        id: String,
    },
    /// Approve: the statement is forwarded.
    Approve {
        /// Request id.
        id: String,
        /// Why (recorded).
        #[arg(long)]
        reason: Option<String>,
        /// `once` (this statement) or `session` (this normalized statement for the rest of the
        /// session).
        #[arg(long, default_value = "once")]
        scope: dbwarden_approvals::Scope,
    },
    /// Deny: the agent gets an error naming you and the reason.
    Deny {
        /// Request id.
        id: String,
        /// Why (shown to the agent and recorded).
        #[arg(long)]
        reason: Option<String>,
    },
}

/// `dbwarden policy`.
#[derive(Debug, Args)]
pub struct PolicyArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: PolicyCommand,
}

/// `dbwarden policy` subcommands.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate policy files (rules and masking); problems are printed as file:line:column.
    Check {
        /// Policy files.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Print the decision for each statement of SQL, the rule that matched and why.
    Eval {
        /// Policy file. Default: the embedded PCI DSS policy.
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
        /// SQL dialect: postgres or mysql.
        #[arg(long, default_value = "postgres")]
        dialect: String,
        /// Identity attribute key=value (pid, uid, gid, user, cgroup, exe, comm,
        /// privileged=true|false, or a label such as CI_JOB_ID=42); repeatable.
        #[arg(long, value_name = "KEY=VALUE")]
        identity: Vec<String>,
        /// Target attribute key=value (address, database, user); repeatable.
        #[arg(long, value_name = "KEY=VALUE")]
        target: Vec<String>,
        /// The SQL text (may hold several statements).
        sql: String,
    },
}

/// `dbwarden sessions`.
#[derive(Debug, Args)]
pub struct SessionsArgs {
    /// Sessions directory. Default: /var/lib/dbwarden/sessions.
    #[arg(long, global = true, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: SessionsCommand,
}

/// `dbwarden sessions` subcommands.
#[derive(Debug, Subcommand)]
pub enum SessionsCommand {
    /// A table of recorded sessions.
    List {
        /// Only sessions started at or after this RFC 3339 time.
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Identity filter `key=value` (pid, uid, user, cgroup, exe, privileged=true|false, or
        /// a label such as CI_JOB_ID); repeatable, all must match.
        #[arg(long, value_name = "KEY=VALUE")]
        identity: Vec<String>,
        /// Substring of the target (`protocol://user@address/database`).
        #[arg(long, value_name = "TEXT")]
        target: Option<String>,
    },
    /// A psql-like transcript of a session.
    Show {
        /// Session id (or unique prefix) or file path.
        session: String,
    },
    /// The transcript, paced by the recorded timing.
    Replay {
        /// Session id (or unique prefix) or file path.
        session: String,
        /// Speed factor (2 = twice as fast).
        #[arg(long, default_value_t = 1.0)]
        speed: f64,
    },
    /// Verify integrity: hash chain, signatures (and which key), seal, index.
    Verify {
        /// Session id (or unique prefix) or file path.
        session: Option<String>,
        /// Verify every session in the directory and the index.
        #[arg(long, conflicts_with = "session")]
        all: bool,
        /// Trusted public key file (repeatable). Default: the host key next to the directory.
        #[arg(long, value_name = "FILE")]
        pubkey: Vec<PathBuf>,
    },
    /// Export a session.
    Export {
        /// Session id (or unique prefix) or file path.
        session: String,
        /// Output format.
        #[arg(long, default_value = "jsonl")]
        format: String,
    },
    /// Print the host's public key (to verify recordings elsewhere).
    Pubkey {
        /// Host key file. Default: host_ed25519.key next to the sessions directory.
        #[arg(long, value_name = "FILE")]
        key_file: Option<PathBuf>,
    },
}

/// Log output format.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `dbwarden run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Config file (TOML). Default: /etc/dbwarden/dbwarden.toml when it exists.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Controlled cgroup, relative to the cgroup2 mount (repeatable). Created when missing;
    /// an existing one (e.g. a systemd slice) is adopted. Default: dbwarden-agents.
    #[arg(long = "cgroup", value_name = "NAME")]
    pub cgroups: Vec<String>,
    /// Daemon listener, an IPv4 loopback address with a fixed port. Default: 127.0.0.1:7432.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Do not listen on [::1]; IPv6 agent connections are then refused.
    #[arg(long)]
    pub no_ipv6: bool,
    /// Unix-socket interception: auto, lsm or off (overrides `[intercept] unix_mode`).
    ///
    /// `lsm` refuses agents' connects to database and control sockets with a BPF LSM program
    /// instead of redirecting them; the daemon does not start if the kernel cannot load it.
    #[arg(long, value_name = "MODE", value_parser = ["auto", "lsm", "off"])]
    pub unix_mode: Option<String>,
    /// Policy file (TOML). Default: the embedded PCI DSS policy.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Directory for session recordings. Default: /var/lib/dbwarden/sessions.
    #[arg(long, value_name = "DIR")]
    pub sessions_dir: Option<PathBuf>,
    /// Runtime directory (control socket). Default: /run/dbwarden.
    #[arg(long, value_name = "DIR")]
    pub runtime_dir: Option<PathBuf>,
    /// bpffs directory where programs and maps are pinned. Default: /sys/fs/bpf/dbwarden.
    #[arg(long, value_name = "DIR")]
    pub bpffs_dir: Option<PathBuf>,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// `dbwarden exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// The controlled cgroup to run in (relative to the cgroup2 mount).
    #[arg(long, value_name = "NAME", default_value = crate::config::DEFAULT_CGROUP)]
    pub cgroup: String,
    /// Run the command as this user (name or numeric uid), the way to run an agent: after the
    /// move into the cgroup, root is dropped (supplementary groups from /etc/group, gid, uid)
    /// and no_new_privs is set, so setuid programs such as sudo or su cannot regain it. HOME,
    /// USER and LOGNAME are set to the user's. Needs root.
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// Primary group (name or numeric gid) to run as with --user. Default: the user's primary
    /// group from /etc/passwd.
    #[arg(long, value_name = "GROUP", requires = "user")]
    pub group: Option<String>,
    /// The command and its arguments.
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    pub command: Vec<std::ffi::OsString>,
}

/// `dbwarden detach`.
#[derive(Debug, Args)]
pub struct DetachArgs {
    /// bpffs directory of the pins. Default: /sys/fs/bpf/dbwarden (or the config file's).
    #[arg(long, value_name = "DIR")]
    pub bpffs_dir: Option<PathBuf>,
    /// Config file to read bpffs_dir from.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Detach only this cgroup (keeps the maps); default: everything.
    #[arg(long, value_name = "NAME")]
    pub cgroup: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_flags_parse() {
        let c = Cli::try_parse_from([
            "dbwarden",
            "run",
            "--cgroup",
            "a",
            "--cgroup",
            "b.slice/c",
            "--listen",
            "127.0.0.1:9",
            "--policy",
            "p.toml",
            "--sessions-dir",
            "/s",
            "--runtime-dir",
            "/r",
            "--bpffs-dir",
            "/sys/fs/bpf/x",
            "--log-format",
            "json",
            "--no-ipv6",
            "--unix-mode",
            "lsm",
            "-c",
            "x.toml",
        ])
        .unwrap();
        let Command::Run(r) = c.command else {
            panic!("not run")
        };
        assert_eq!(r.cgroups, ["a", "b.slice/c"]);
        assert_eq!(r.listen.as_deref(), Some("127.0.0.1:9"));
        assert_eq!(r.log_format, LogFormat::Json);
        assert!(r.no_ipv6);
        assert_eq!(r.unix_mode.as_deref(), Some("lsm"));
        assert_eq!(r.config, Some(PathBuf::from("x.toml")));
    }

    #[test]
    fn exec_takes_trailing_command() {
        let c = Cli::try_parse_from([
            "dbwarden", "exec", "--cgroup", "g", "--", "psql", "-c", "select 1",
        ])
        .unwrap();
        let Command::Exec(e) = c.command else {
            panic!("not exec")
        };
        assert_eq!(e.cgroup, "g");
        assert_eq!(e.command, ["psql", "-c", "select 1"]);
        assert_eq!((e.user, e.group), (None, None));
        assert!(Cli::try_parse_from(["dbwarden", "exec"]).is_err());
    }

    #[test]
    fn exec_user_and_group_parse() {
        let c = Cli::try_parse_from([
            "dbwarden", "exec", "--cgroup", "g", "--user", "nobody", "--group", "nogroup", "--",
            "id", "-u",
        ])
        .unwrap();
        let Command::Exec(e) = c.command else {
            panic!("not exec")
        };
        assert_eq!(e.user.as_deref(), Some("nobody"));
        assert_eq!(e.group.as_deref(), Some("nogroup"));
        assert_eq!(e.command, ["id", "-u"]);
        // Numeric ids, the default cgroup, and no `--` before the command.
        let c = Cli::try_parse_from(["dbwarden", "exec", "--user", "65534", "id"]).unwrap();
        let Command::Exec(e) = c.command else {
            panic!("not exec")
        };
        assert_eq!(e.user.as_deref(), Some("65534"));
        assert_eq!(e.group, None);
        assert_eq!(e.cgroup, crate::config::DEFAULT_CGROUP);
        assert_eq!(e.command, ["id"]);
        // Flags after the command belong to the command.
        let c = Cli::try_parse_from(["dbwarden", "exec", "--", "sh", "--user", "x"]).unwrap();
        let Command::Exec(e) = c.command else {
            panic!("not exec")
        };
        assert_eq!(e.user, None);
        assert_eq!(e.command, ["sh", "--user", "x"]);
        // --group needs --user; --user needs a value.
        assert!(Cli::try_parse_from(["dbwarden", "exec", "--group", "g", "--", "id"]).is_err());
        assert!(Cli::try_parse_from(["dbwarden", "exec", "--user"]).is_err());
    }
}
