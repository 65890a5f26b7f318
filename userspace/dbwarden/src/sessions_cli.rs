//! `dbwarden sessions list|show|replay|verify|export|pubkey`: read session recordings. Everything
//! works on a copied directory or file on another machine, given the exported public key.

use std::{
    io::{IsTerminal, Write},
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{bail, Context, Result};
use dbwarden_record::{self as record, render::ListFilter, verify::Progress, HostKey, PublicKey};

use crate::cli::{SessionsArgs, SessionsCommand};

/// Default sessions directory.
pub const DEFAULT_DIR: &str = "/var/lib/dbwarden/sessions";

/// The host key file that belongs to a sessions directory (`<parent>/host_ed25519.key`).
pub fn default_key_file(sessions_dir: &Path) -> PathBuf {
    sessions_dir
        .parent()
        .unwrap_or(Path::new("/var/lib/dbwarden"))
        .join("host_ed25519.key")
}

/// Resolves `ID|FILE`: an existing path, or a session id (or unique prefix) in `dir`.
fn resolve(dir: &Path, what: &str) -> Result<PathBuf> {
    let p = Path::new(what);
    if p.is_file() {
        return Ok(p.to_path_buf());
    }
    let needle = what.to_ascii_lowercase();
    let mut hits = Vec::new();
    for e in std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".dbws") {
            continue;
        }
        let id = name
            .trim_end_matches(".dbws")
            .rsplit('-')
            .next()
            .unwrap_or("");
        if id.starts_with(&needle) || name == what {
            hits.push(e.path());
        }
    }
    match hits.len() {
        1 => Ok(hits.remove(0)),
        0 => bail!(
            "no session {what:?} in {} (give a file path or a session id)",
            dir.display()
        ),
        n => bail!("{n} sessions match {what:?}; give more of the id"),
    }
}

fn trusted_keys(files: &[PathBuf], dir: &Path) -> Result<Vec<PublicKey>> {
    if !files.is_empty() {
        return files
            .iter()
            .map(|f| {
                let text = std::fs::read_to_string(f)
                    .with_context(|| format!("reading {}", f.display()))?;
                PublicKey::parse(&text)
                    .with_context(|| format!("{}: not a dbwarden public key", f.display()))
            })
            .collect();
    }
    let kf = default_key_file(dir);
    if !kf.exists() {
        bail!(
            "no trusted key: pass --pubkey FILE (export it on the recording host with `dbwarden sessions pubkey`), or run where {} exists",
            kf.display()
        );
    }
    let k = HostKey::load_or_create(&kf).with_context(|| format!("loading {}", kf.display()))?;
    Ok(vec![k.public_key().clone()])
}

fn progress_printer(label: &'static str) -> impl FnMut(Progress) {
    let tty = std::io::stderr().is_terminal();
    let mut last = u64::MAX;
    move |p: Progress| {
        if !tty || p.total == 0 {
            return;
        }
        let pct = p.done * 100 / p.total;
        if pct != last {
            last = pct;
            eprint!("\r{label} {pct:>3}%");
            if p.done >= p.total {
                eprintln!();
            }
        }
    }
}

/// Runs a `sessions` subcommand; returns the exit code (1 when verification finds problems).
pub fn main(args: SessionsArgs) -> Result<i32> {
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DIR));
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match args.command {
        SessionsCommand::List {
            since,
            identity,
            target,
        } => {
            let since = since
                .map(|s| {
                    time::OffsetDateTime::parse(&s, &time::format_description::well_known::Rfc3339)
                        .with_context(|| {
                            format!("--since {s:?}: expected RFC 3339, e.g. 2026-11-26T00:00:00Z")
                        })
                })
                .transpose()?;
            let identity = identity
                .iter()
                .map(|s| ListFilter::parse_identity(s).map_err(anyhow::Error::msg))
                .collect::<Result<Vec<_>>>()?;
            let filter = ListFilter {
                since,
                identity,
                target,
            };
            record::render::list_dir(&dir, &filter, &mut out)?;
        }
        SessionsCommand::Show { session } => {
            let s = record::read_session(resolve(&dir, &session)?)?;
            record::render::show(&mut out, &s)?;
        }
        SessionsCommand::Replay { session, speed } => {
            let s = record::read_session(resolve(&dir, &session)?)?;
            for (delay, text) in record::render::replay(&s, speed, Duration::from_secs(5)) {
                out.flush()?;
                std::thread::sleep(delay);
                out.write_all(text.as_bytes())?;
            }
        }
        SessionsCommand::Export { session, format } => {
            if format != "jsonl" {
                bail!("--format {format:?}: only jsonl is supported");
            }
            let s = record::read_session(resolve(&dir, &session)?)?;
            let mut p = progress_printer("exporting");
            record::render::export_jsonl(&mut out, &s, &mut p)?;
        }
        SessionsCommand::Verify {
            session,
            all,
            pubkey,
        } => {
            let keys = trusted_keys(&pubkey, &dir)?;
            let mut p = progress_printer("verifying");
            if all {
                let rep = record::verify_dir(&dir, &keys, &mut p)?;
                for s in &rep.sessions {
                    writeln!(out, "{s}")?;
                }
                for pr in &rep.problems {
                    writeln!(out, "index: {pr}")?;
                }
                writeln!(out, "{}", if rep.is_ok() { "OK" } else { "FAILED" })?;
                return Ok(if rep.is_ok() { 0 } else { 1 });
            }
            let Some(session) = session else {
                bail!("give a session id or file, or --all");
            };
            let rep = record::verify_with_progress(resolve(&dir, &session)?, &keys, &mut p);
            writeln!(out, "{rep}")?;
            return Ok(if rep.is_ok() { 0 } else { 1 });
        }
        SessionsCommand::Pubkey { key_file } => {
            let kf = key_file.unwrap_or_else(|| default_key_file(&dir));
            if !kf.exists() {
                bail!(
                    "{} does not exist (the daemon creates it on first start)",
                    kf.display()
                );
            }
            let k = HostKey::load_or_create(&kf)?;
            out.write_all(k.public_key_pem().as_bytes())?;
        }
    }
    Ok(0)
}
