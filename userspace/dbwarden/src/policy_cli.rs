//! `dbwarden policy check|eval`: validate policy files, and show what a policy decides for a
//! statement and why — without a daemon, a kernel or a database.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use dbwarden_policy::{Dialect, Engine, Identity, Policy, Protocol, Target};

use crate::cli::{PolicyArgs, PolicyCommand};

/// Runs a `policy` subcommand; returns the exit code (1 when problems were found).
pub fn main(args: PolicyArgs) -> Result<i32> {
    match args.command {
        PolicyCommand::Check { files } => Ok(check(&files)),
        PolicyCommand::Eval {
            policy,
            dialect,
            identity,
            target,
            sql,
        } => {
            eval(policy, &dialect, &identity, &target, &sql)?;
            Ok(0)
        }
    }
}

fn check(files: &[PathBuf]) -> i32 {
    let mut bad = 0;
    for f in files {
        let origin = f.display().to_string();
        let text = match std::fs::read_to_string(f) {
            Ok(t) => t,
            Err(e) => {
                println!("{origin}: {e}");
                bad += 1;
                continue;
            }
        };
        let mut problems = Vec::new();
        if let Err(e) = Policy::parse(&text, &origin) {
            problems.push(e.to_string());
        }
        match dbwarden_mask::MaskConfig::from_policy_toml(&text, &origin) {
            Ok(cfg) => {
                if let Err(e) = dbwarden_mask::Masker::new(&cfg, [0u8; 32]) {
                    problems.push(e.to_string());
                }
            }
            Err(e) => problems.push(e.to_string()),
        }
        if problems.is_empty() {
            println!("{origin}: OK");
        } else {
            bad += 1;
            for p in problems {
                println!("{p}");
            }
        }
    }
    i32::from(bad > 0)
}

fn eval(
    policy: Option<PathBuf>,
    dialect: &str,
    identity: &[String],
    target: &[String],
    sql: &str,
) -> Result<()> {
    let policy = match policy {
        Some(p) => Policy::from_file(&p).map_err(|e| anyhow::anyhow!("{e}"))?,
        None => Policy::embedded_default(),
    };
    let (dialect, protocol) = match dialect {
        "postgres" | "postgresql" | "pg" => (Dialect::Postgres, Protocol::Postgres),
        "mysql" | "mariadb" => (Dialect::MySql, Protocol::Mysql),
        other => bail!("--dialect {other:?}: expected postgres or mysql"),
    };
    let mut id = Identity::default();
    for kv in identity {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--identity {kv:?}: expected key=value"))?;
        let num = || {
            v.parse::<u32>()
                .with_context(|| format!("--identity {k}: not a number: {v:?}"))
        };
        match k {
            "pid" => id.pid = num()?,
            "uid" => id.uid = num()?,
            "gid" => id.gid = num()?,
            "user" => id.user = Some(v.to_string()),
            "cgroup" => id.cgroup = v.to_string(),
            "exe" => id.exe = v.to_string(),
            "comm" => id.comm = v.to_string(),
            "privileged" => {
                id.privileged = v.parse::<bool>().with_context(|| {
                    format!("--identity privileged: expected true or false: {v:?}")
                })?;
            }
            label => {
                let label = label.strip_prefix("label.").unwrap_or(label);
                id.labels.insert(label.to_string(), v.to_string());
            }
        }
    }
    let mut t = Target {
        addr: None,
        protocol,
        database: None,
        user: None,
    };
    for kv in target {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--target {kv:?}: expected key=value"))?;
        match k {
            "address" | "addr" => {
                t.addr = Some(
                    v.parse()
                        .with_context(|| format!("--target address {v:?}"))?,
                )
            }
            "database" | "db" => t.database = Some(v.to_string()),
            "user" => t.user = Some(v.to_string()),
            other => bail!("--target {other:?}: expected address, database or user"),
        }
    }
    let engine = Engine::new(policy);
    let verdict = engine.decide(sql, dialect, &id, &t);
    print!(
        "{}",
        dbwarden_policy::render_eval(&engine.policy(), &verdict)
    );
    Ok(())
}
