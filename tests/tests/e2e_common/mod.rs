//! Helpers shared by `masking_e2e.rs` and `recording_e2e.rs`: an independent PAN detector (the
//! oracle the tests judge the daemon's output with), session-file discovery and polling, and the
//! `dbwarden sessions` CLI runner.
#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    time::Duration,
};

use dbwarden_tests::*;

/// A permissive policy (no rules, default allow, default masking): these tests exercise
/// masking and recording, not statement policy, so nothing may be held for approval.
pub const PERMISSIVE_POLICY: &str = "[policy]\nname = \"e2e-permissive\"\ndefault = \"allow\"\n";

/// Luhn check over ASCII digits.
pub fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(d - b'0');
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

/// A PAN-like hit: where it is and its last four digits (never the number itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// Byte offset of the first digit.
    pub offset: usize,
    /// Number of digits.
    pub digits: usize,
    /// Last four digits.
    pub last4: String,
    /// A little context with the digits replaced by `#` (safe to print).
    pub context: String,
}

/// Finds card-number-like digit sequences in `text`: runs of digit groups joined by single
/// spaces or dashes; every window of whole consecutive groups (and every single group) holding
/// 13–19 digits that starts with a non-zero digit and passes Luhn is a hit. Unlike the daemon's
/// detector this does not check IINs and ignores letters around the run: it is deliberately
/// stricter, so a masking bug cannot hide behind the same rule in the oracle. Only binary values
/// rendered as hex (`\x0a1b...`) and long hex strings (hashes, signatures, keys) are blanked
/// first, since their digits are not decimal numbers.
pub fn pan_hits(text: &[u8]) -> Vec<Hit> {
    let text = &blank_hex(text);
    let mut hits = Vec::new();
    let mut i = 0;
    while i < text.len() {
        if !text[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        // Collect groups of this run: (start, end) byte ranges.
        let mut groups: Vec<(usize, usize)> = Vec::new();
        let mut j = i;
        loop {
            let s = j;
            while j < text.len() && text[j].is_ascii_digit() {
                j += 1;
            }
            groups.push((s, j));
            if j + 1 < text.len()
                && (text[j] == b' ' || text[j] == b'-')
                && text[j + 1].is_ascii_digit()
            {
                j += 1;
                continue;
            }
            break;
        }
        for a in 0..groups.len() {
            let mut digits: Vec<u8> = Vec::new();
            for g in &groups[a..] {
                digits.extend_from_slice(&text[g.0..g.1]);
                if digits.len() > 19 {
                    break;
                }
                if digits.len() >= 13 && digits[0] != b'0' && luhn(&digits) {
                    push_hit(&mut hits, text, groups[a].0, g.1, &digits);
                }
            }
        }
        i = j.max(i + 1);
    }
    hits
}

/// Replaces `\\x` + hex tokens and hex tokens of 32+ characters containing a letter by spaces.
fn blank_hex(text: &[u8]) -> Vec<u8> {
    let mut out = text.to_vec();
    let mut i = 0;
    while i < text.len() {
        if !text[i].is_ascii_hexdigit() {
            i += 1;
            continue;
        }
        let s = i;
        while i < text.len() && text[i].is_ascii_hexdigit() {
            i += 1;
        }
        let tok = &text[s..i];
        let after_x = s >= 2 && text[s - 1] == b'x' && text[s - 2] == b'\\';
        let long_hex = tok.len() >= 32 && tok.iter().any(u8::is_ascii_alphabetic);
        if after_x || long_hex {
            out[s..i].fill(b' ');
        }
    }
    out
}

fn push_hit(hits: &mut Vec<Hit>, text: &[u8], start: usize, end: usize, digits: &[u8]) {
    let lo = start.saturating_sub(30);
    let hi = (end + 30).min(text.len());
    let context: String = String::from_utf8_lossy(&text[lo..hi])
        .chars()
        .map(|c| if c.is_ascii_digit() { '#' } else { c })
        .collect();
    hits.push(Hit {
        offset: start,
        digits: digits.len(),
        last4: String::from_utf8_lossy(&digits[digits.len() - 4..]).into_owned(),
        context,
    });
}

/// Asserts `text` holds no PAN-like sequence and none of the `known` PANs in any common
/// spelling (plain, grouped by spaces or dashes, even glued to letters).
#[track_caller]
pub fn assert_no_pan(what: &str, text: &[u8], known: &[&str]) {
    let hits = pan_hits(text);
    assert!(
        hits.is_empty(),
        "{what}: {} PAN-like hit(s): {hits:#?}",
        hits.len()
    );
    let s = String::from_utf8_lossy(text);
    for p in known {
        for form in spellings(p) {
            assert!(
                !s.contains(&form),
                "{what}: contains a known PAN ending in {}",
                &p[p.len() - 4..]
            );
        }
    }
}

/// Plain, 4-4-4-4 (or Amex 4-6-5) with spaces and dashes.
pub fn spellings(p: &str) -> Vec<String> {
    let groups: Vec<&str> = if p.len() == 15 {
        vec![&p[..4], &p[4..10], &p[10..]]
    } else {
        p.as_bytes()
            .chunks(4)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect()
    };
    vec![p.to_string(), groups.join(" "), groups.join("-")]
}

/// The daemon's sessions directory.
pub fn sessions_dir(d: &Daemon) -> PathBuf {
    d.dir.join("sessions")
}

/// Session files (`*.dbws`) in `dir`, sorted.
pub fn session_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "dbws"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Waits until at least `n` session files exist and every one of them is sealed; returns them
/// with their parsed sessions.
#[track_caller]
pub fn wait_sealed(d: &Daemon, n: usize, timeout: Duration) -> Vec<dbwarden_record::Session> {
    let dir = sessions_dir(d);
    wait_until(
        timeout,
        &format!("{n} sealed session files in {}", dir.display()),
        || {
            let files = session_files(&dir);
            if files.len() < n {
                return None;
            }
            let mut out = Vec::new();
            for f in files {
                let s = dbwarden_record::read_session(&f).ok()?;
                if !s.sealed {
                    return None;
                }
                out.push(s);
            }
            Some(out)
        },
    )
}

/// Runs `dbwarden sessions --dir DIR ARGS...` (outside the cgroup) with a timeout.
pub fn sessions_cli(dir: &Path, args: &[&str]) -> Output {
    let mut c = Command::new(dbwarden_bin());
    c.arg("sessions").arg("--dir").arg(dir).args(args);
    output_timeout(c, None, Duration::from_secs(60))
}

/// Combined stdout + stderr as text.
pub fn all_text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Scans the daemon log, every session file (decompressed, through the record crate's
/// scanner and through [`pan_hits`] on the exported records) and the index for PANs.
#[track_caller]
pub fn assert_daemon_leaked_nothing(d: &Daemon, known: &[&str]) {
    assert_no_pan("daemon log", d.log_text().as_bytes(), known);
    let dir = sessions_dir(d);
    let files = session_files(&dir);
    for f in &files {
        let hits = dbwarden_record::scan_session_file(f)
            .unwrap_or_else(|e| panic!("{} cannot be scanned: {e}", f.display()));
        assert!(
            hits.is_empty(),
            "{}: record scanner found PANs: {hits:?}",
            f.display()
        );
        // Same file through our own (stricter) oracle, on every decoded record.
        let s = dbwarden_record::read_session(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let mut text = Vec::new();
        for r in &s.records {
            serde_json::to_writer(&mut text, r).unwrap();
            text.push(b'\n');
        }
        assert_no_pan(&format!("session file {}", f.display()), &text, known);
    }
    if let Ok(idx) = std::fs::read(dir.join("index.dbwi")) {
        assert_no_pan("session index", &idx, known);
    }
}

/// Waits until every session of `d` ended normally and every session file is sealed, then
/// scans the daemon's log and files for PANs ([`assert_daemon_leaked_nothing`]).
#[track_caller]
pub fn finish_and_scan(d: &Daemon, known: &[&str]) {
    let t = Duration::from_secs(60);
    d.assert_sessions_closed_cleanly(t);
    let n = d.sessions_started().len();
    let sessions = wait_sealed(d, n, t);
    assert_eq!(sessions.len(), n, "one session file per session");
    assert_daemon_leaked_nothing(d, known);
}

/// The transcripts (`sessions show`) of every session file of `d`, concatenated.
pub fn all_sessions_shown(d: &Daemon) -> String {
    let dir = sessions_dir(d);
    let mut shown = String::new();
    for f in session_files(&dir) {
        shown.push_str(&all_text(&sessions_cli(
            &dir,
            &["show", &f.to_string_lossy()],
        )));
    }
    shown
}

/// Asserts that no field of `text` (split at `seps`) is one of `values` (CVVs, which no
/// detector can recognise by shape).
#[track_caller]
pub fn assert_no_field(what: &str, text: &str, values: &[&str], seps: &[char]) {
    for l in text.lines() {
        for v in values {
            assert!(
                !l.split(seps).any(|f| f == *v),
                "{what}: {v} reached the agent: {l}"
            );
        }
    }
}
