//! Text renderers behind `dbwarden sessions list|show|replay|export`.
//!
//! Everything printed comes from hostile input (statement text, cell values,
//! labels): it is passed through `sanitize` (control characters and bidi overrides escaped) so terminal escape
//! sequences and bidi overrides are shown, never executed.

use crate::error::{RecordError, Result};
use crate::model::{Action, ApprovalKind, Record, RecordBody, Rows, SessionHeader, SessionId};
use crate::reader::{read_session, Session};
use crate::util::sanitize;
use crate::verify::{session_files, Progress};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::path::Path;
use std::time::Duration;
use time::OffsetDateTime;

/// One line of `sessions list`.
#[derive(Clone, Debug)]
pub struct SessionSummary {
    /// File name.
    pub file: String,
    /// Session id.
    pub session_id: SessionId,
    /// Start time.
    pub start: OffsetDateTime,
    /// Last record time minus start.
    pub duration: Duration,
    /// User name (or uid).
    pub user: String,
    /// Executable.
    pub exe: String,
    /// CI job label, if any.
    pub ci_job: Option<String>,
    /// `protocol://user@dst/db`.
    pub target: String,
    /// Statements recorded.
    pub statements: u64,
    /// Denied statements.
    pub denied: u64,
    /// Sealed (not verified; run verify for that).
    pub sealed: bool,
    /// The header, for filtering.
    pub header: SessionHeader,
}

/// Label keys tried, in order, for the CI job column.
pub const CI_JOB_LABELS: &[&str] = &[
    "ci_job",
    "ci.job",
    "CI_JOB_ID",
    "GITHUB_JOB",
    "GITHUB_RUN_ID",
    "BUILD_ID",
    "job",
];

/// `protocol://db_user@original_dst/database`.
pub fn target_of(h: &SessionHeader) -> String {
    format!(
        "{}://{}@{}/{}",
        h.protocol,
        h.db_user.as_deref().unwrap_or("?"),
        h.original_dst,
        h.database.as_deref().unwrap_or("")
    )
}

/// Builds the list line for a session.
pub fn summarize(s: &Session) -> SessionSummary {
    let h = &s.header;
    let last = s.records.last().map_or(h.start, |r| r.ts);
    let mut statements = 0;
    let mut denied = 0;
    for r in &s.records {
        if r.body.statement().is_some() {
            statements += 1;
        }
        if r.body.decision().is_some_and(|d| d.action == Action::Deny) {
            denied += 1;
        }
    }
    SessionSummary {
        file: s
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        session_id: h.session_id,
        start: h.start,
        duration: (last - h.start).try_into().unwrap_or_default(),
        user: h
            .identity
            .user
            .clone()
            .unwrap_or_else(|| format!("uid:{}", h.identity.uid)),
        exe: h.identity.exe.clone(),
        ci_job: CI_JOB_LABELS
            .iter()
            .find_map(|k| h.identity.labels.get(*k).cloned()),
        target: target_of(h),
        statements,
        denied,
        sealed: s.sealed,
        header: h.clone(),
    }
}

/// Filters for `sessions list`.
#[derive(Clone, Debug, Default)]
pub struct ListFilter {
    /// Only sessions that started at or after this time.
    pub since: Option<OffsetDateTime>,
    /// `key=value` pairs that must all match: `pid`, `uid`, `user`, `cgroup`,
    /// `exe`, `privileged` (`true`/`false`), or else an identity label.
    pub identity: Vec<(String, String)>,
    /// Substring of the target (`protocol://user@dst/db`).
    pub target: Option<String>,
}

impl ListFilter {
    /// Parses a `key=value` identity filter.
    ///
    /// # Errors
    /// When there is no `=` or the key is empty.
    pub fn parse_identity(s: &str) -> std::result::Result<(String, String), String> {
        match s.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
            _ => Err(format!(
                "identity filter `{s}` must look like key=value (e.g. user=ci or ci_job=1234)"
            )),
        }
    }

    /// Whether a session header passes the filter.
    pub fn matches(&self, h: &SessionHeader) -> bool {
        if self.since.is_some_and(|t| h.start < t) {
            return false;
        }
        if self
            .target
            .as_ref()
            .is_some_and(|t| !target_of(h).contains(t.as_str()))
        {
            return false;
        }
        self.identity.iter().all(|(k, v)| {
            let id = &h.identity;
            match k.as_str() {
                "pid" => id.pid.to_string() == *v,
                "uid" => id.uid.to_string() == *v,
                "user" => id.user.as_deref() == Some(v.as_str()),
                "cgroup" => id.cgroup == *v,
                "exe" => id.exe == *v,
                "privileged" => id.privileged.to_string() == *v,
                label => id.labels.get(label) == Some(v),
            }
        })
    }
}

fn fmt_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

fn fmt_clock(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}h{:02}m{:02}s", s / 3600, s / 60 % 60, s % 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

fn write_table(out: &mut String, headers: &[String], rows: &[Vec<String>]) {
    let ncols = headers
        .len()
        .max(rows.iter().map(Vec::len).max().unwrap_or(0));
    let mut w = vec![0usize; ncols];
    for (i, hd) in headers.iter().enumerate() {
        w[i] = w[i].max(hd.chars().count());
    }
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let cell = |s: &str, width: usize, center: bool| {
        let len = s.chars().count();
        let pad = width.saturating_sub(len);
        if center {
            let l = pad / 2;
            format!("{}{}{}", " ".repeat(l), s, " ".repeat(pad - l))
        } else {
            format!("{}{}", s, " ".repeat(pad))
        }
    };
    if !headers.is_empty() {
        let line: Vec<String> = (0..ncols)
            .map(|i| cell(headers.get(i).map_or("", String::as_str), w[i], true))
            .collect();
        let _ = writeln!(out, " {}", line.join(" | ").trim_end());
        let sep: Vec<String> = w.iter().map(|&n| "-".repeat(n + 2)).collect();
        let _ = writeln!(out, "{}", sep.join("+"));
    }
    for r in rows {
        let line: Vec<String> = (0..ncols)
            .map(|i| cell(r.get(i).map_or("", String::as_str), w[i], false))
            .collect();
        let _ = writeln!(out, " {}", line.join(" | ").trim_end());
    }
}

/// Writes the `sessions list` table.
///
/// # Errors
/// Write errors.
pub fn render_list(out: &mut dyn Write, sessions: &[SessionSummary]) -> io::Result<()> {
    let headers: Vec<String> = [
        "ID",
        "START (UTC)",
        "DURATION",
        "IDENTITY",
        "TARGET",
        "STMTS",
        "DENIED",
        "SEALED",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let rows: Vec<Vec<String>> = sessions
        .iter()
        .map(|s| {
            let exe = s.exe.rsplit('/').next().unwrap_or(&s.exe);
            let mut ident = format!("{} {}", s.user, exe);
            if let Some(j) = &s.ci_job {
                let _ = write!(ident, " job={j}");
            }
            vec![
                s.session_id.to_string()[..12].to_owned(),
                fmt_time(s.start),
                fmt_duration(s.duration),
                sanitize(&ident, false).into_owned(),
                sanitize(&s.target, false).into_owned(),
                s.statements.to_string(),
                s.denied.to_string(),
                if s.sealed { "yes" } else { "NO" }.to_owned(),
            ]
        })
        .collect();
    let mut text = String::new();
    write_table(&mut text, &headers, &rows);
    let _ = writeln!(
        text,
        "({} session{})",
        sessions.len(),
        if sessions.len() == 1 { "" } else { "s" }
    );
    out.write_all(text.as_bytes())
}

/// Reads every session in `dir`, filters, sorts by start, and writes the table.
/// Unreadable files are listed after the table (never silently skipped).
///
/// # Errors
/// Directory listing or write errors.
pub fn list_dir(dir: impl AsRef<Path>, filter: &ListFilter, out: &mut dyn Write) -> Result<()> {
    let dir = dir.as_ref();
    let files =
        session_files(dir).map_err(|e| RecordError::io("list sessions directory", dir, e))?;
    let mut sums = Vec::new();
    let mut bad = Vec::new();
    for (p, _) in files {
        match read_session(&p) {
            Ok(s) if filter.matches(&s.header) => sums.push(summarize(&s)),
            Ok(_) => {}
            Err(e) => bad.push(e.to_string()),
        }
    }
    sums.sort_by_key(|s| s.start);
    let w = |e| RecordError::Sink {
        op: "write list",
        source: e,
    };
    render_list(out, &sums).map_err(w)?;
    for b in bad {
        writeln!(out, "unreadable: {}", sanitize(&b, false)).map_err(w)?;
    }
    Ok(())
}

/// One piece of a transcript: the time it happened and the text to print.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk {
    /// Record timestamp.
    pub ts: OffsetDateTime,
    /// Text (ends with a newline).
    pub text: String,
}

/// Renders the psql-like transcript as chunks, one per record.
pub fn transcript(s: &Session) -> Vec<Chunk> {
    let mut chunks = Vec::with_capacity(s.records.len() + 1);
    let mut columns: HashMap<u64, Vec<String>> = HashMap::new();
    let mut had_rows: HashMap<u64, bool> = HashMap::new();
    for r in &s.records {
        let text = render_record(r, &mut columns, &mut had_rows);
        if !text.is_empty() {
            chunks.push(Chunk { ts: r.ts, text });
        }
    }
    if !s.sealed {
        let mut t = String::from(
            "-- UNSEALED: the session ended abnormally (recorder stopped or file cut)\n",
        );
        for n in &s.notes {
            let _ = writeln!(t, "-- note: {}", sanitize(n, false));
        }
        chunks.push(Chunk {
            ts: s.records.last().map_or(s.header.start, |r| r.ts),
            text: t,
        });
    }
    chunks
}

fn render_record(
    r: &Record,
    columns: &mut HashMap<u64, Vec<String>>,
    had_rows: &mut HashMap<u64, bool>,
) -> String {
    let mut t = String::new();
    let s = |x: &str| sanitize(x, false).into_owned();
    match &r.body {
        // An exchange reads exactly as its statement, decision and response records.
        RecordBody::Exchange(x) => {
            let part = |body| Record {
                n: r.n,
                ts: r.ts,
                body,
            };
            t.push_str(&render_record(
                &part(RecordBody::Statement(x.statement.clone())),
                columns,
                had_rows,
            ));
            if let Some(d) = &x.decision {
                t.push_str(&render_record(
                    &part(RecordBody::Decision(d.clone())),
                    columns,
                    had_rows,
                ));
            }
            t.push_str(&render_record(
                &part(RecordBody::Response(x.response.clone())),
                columns,
                had_rows,
            ));
        }
        RecordBody::Header(h) => {
            let id = &h.identity;
            let _ = writeln!(
                t,
                "-- session {} started {} UTC",
                h.session_id,
                fmt_time(h.start)
            );
            let _ = write!(
                t,
                "-- identity: user={} uid={} pid={} exe={} cgroup={}",
                s(id.user.as_deref().unwrap_or("?")),
                id.uid,
                id.pid,
                s(&id.exe),
                s(&id.cgroup)
            );
            for (k, v) in &id.labels {
                let _ = write!(t, " {}={}", s(k), s(v));
            }
            t.push('\n');
            // On its own line: label values come from the agent and could imitate it.
            if id.privileged {
                let caps: Vec<String> = id.capabilities.iter().map(|c| s(c)).collect();
                let _ = writeln!(
                    t,
                    "-- privileged: yes (capabilities: {})",
                    if caps.is_empty() {
                        "none listed".to_string()
                    } else {
                        caps.join(", ")
                    }
                );
            } else {
                t.push_str("-- privileged: no\n");
            }
            let _ = writeln!(
                t,
                "-- target: {}  client: {}",
                s(&target_of(h)),
                s(&h.client_addr)
            );
            let _ = writeln!(
                t,
                "-- dbwarden {} policy {}",
                s(&h.daemon_version),
                s(&h.policy_hash)
            );
        }
        RecordBody::Statement(st) => {
            let _ = writeln!(
                t,
                "\n[{}] #{} {}",
                fmt_clock(r.ts),
                st.stmt,
                sanitize(&st.text, true)
            );
            if !st.params.is_empty() {
                let ps: Vec<String> = st
                    .params
                    .iter()
                    .enumerate()
                    .map(|(i, p)| {
                        format!(
                            "${}={}",
                            i + 1,
                            p.as_deref()
                                .map_or_else(|| "NULL".to_owned(), |v| format!("'{}'", s(v)))
                        )
                    })
                    .collect();
                let _ = writeln!(t, "    params: {}", ps.join(", "));
            }
        }
        RecordBody::Decision(d) => {
            let _ = write!(t, "  -> {}", d.action.to_string().to_uppercase());
            if let Some(rule) = &d.rule {
                let _ = write!(t, " (rule {})", s(rule));
            }
            if let Some(a) = &d.approver {
                let _ = write!(t, " approved by {}", s(a));
            }
            if !d.tags.is_empty() {
                let tags: Vec<String> = d.tags.iter().map(|x| s(x)).collect();
                let _ = write!(t, " [{}]", tags.join(", "));
            }
            if let Some(m) = &d.message {
                let _ = write!(t, ": {}", s(m));
            }
            t.push('\n');
        }
        RecordBody::Approval(a) => match a.event {
            ApprovalKind::Requested => {
                let _ = writeln!(t, "  .. approval requested for #{}", a.stmt);
            }
            ApprovalKind::Decided => {
                let _ = write!(
                    t,
                    "  .. approval decided: {}",
                    a.decision.map_or_else(|| "?".to_owned(), |d| d.to_string())
                );
                if let Some(who) = &a.approver {
                    let _ = write!(t, " by {}", s(who));
                }
                if let Some(ms) = a.waited_ms {
                    let _ = write!(t, " after {:.1} s", Duration::from_millis(ms).as_secs_f64());
                }
                if let Some(why) = &a.reason {
                    let _ = write!(t, " ({})", s(why));
                }
                t.push('\n');
            }
        },
        RecordBody::Rows(rows) => render_rows(&mut t, rows, columns, had_rows, &s),
        RecordBody::Response(resp) => {
            if !resp.data.is_empty() || resp.truncated.is_some() {
                let rows = Rows {
                    stmt: resp.stmt,
                    columns: resp.columns.clone(),
                    rows: resp.data.clone(),
                    truncated: resp.truncated,
                };
                render_rows(&mut t, &rows, columns, had_rows, &s);
            }
            if let Some(e) = &resp.error {
                let _ = writeln!(t, "ERROR:  {}", s(e));
            } else if let (Some(n), true) = (
                resp.rows,
                had_rows.contains_key(&resp.stmt) || !resp.columns.is_empty(),
            ) {
                if !had_rows.contains_key(&resp.stmt) {
                    let hs: Vec<String> = resp.columns.iter().map(|c| s(c)).collect();
                    write_table(&mut t, &hs, &[]);
                }
                let _ = writeln!(t, "({n} row{})", if n == 1 { "" } else { "s" });
            } else if let Some(tag) = &resp.command_tag {
                let _ = writeln!(t, "{}", s(tag));
            }
            let _ = writeln!(t, "  -- {:.1} ms", resp.duration_us as f64 / 1000.0);
        }
        RecordBody::Notice(n) => {
            let _ = writeln!(t, "{}:  {}", s(&n.severity), s(&n.message));
        }
        RecordBody::Gap(g) => {
            let _ = writeln!(
                t,
                "!! recorder fell behind: {} records dropped here",
                g.dropped
            );
        }
        RecordBody::End(e) => {
            let tt = e.totals;
            let _ = writeln!(
                t,
                "\n-- session ended at {} UTC: {} ({} statements, {} denied, {} held, {} rows recorded, {} cut, {} dropped)",
                fmt_time(r.ts),
                s(&e.reason),
                tt.statements,
                tt.denied,
                tt.held,
                tt.rows_recorded,
                tt.rows_cut,
                tt.dropped
            );
        }
        RecordBody::Seal(seal) => {
            let _ = writeln!(
                t,
                "-- sealed: {} records, key {}",
                seal.records,
                s(&seal.key_id)
            );
        }
    }
    t
}

/// Writes the whole transcript (`sessions show`).
///
/// # Errors
/// Write errors.
pub fn show(out: &mut dyn Write, s: &Session) -> io::Result<()> {
    for c in transcript(s) {
        out.write_all(c.text.as_bytes())?;
    }
    Ok(())
}

/// `sessions replay`: the transcript as (delay before printing, text) pairs.
/// Delays follow the recorded timing divided by `speed` (2.0 = twice as
/// fast), each capped at `max_delay` so idle minutes do not stall a replay.
pub fn replay(
    s: &Session,
    speed: f64,
    max_delay: Duration,
) -> impl Iterator<Item = (Duration, String)> {
    let speed = if speed.is_finite() && speed > 0.0 {
        speed
    } else {
        1.0
    };
    let mut prev: Option<OffsetDateTime> = None;
    transcript(s).into_iter().map(move |c| {
        let gap = prev.map_or(Duration::ZERO, |p| {
            (c.ts - p).try_into().unwrap_or(Duration::ZERO)
        });
        prev = Some(c.ts);
        let d = Duration::try_from_secs_f64(gap.as_secs_f64() / speed).unwrap_or(max_delay);
        (d.min(max_delay), c.text)
    })
}

/// `sessions export`: one JSON object per line, header record first, then
/// every record as stored. `progress` gets records done / total.
///
/// # Errors
/// Write or serialisation errors.
pub fn export_jsonl(
    out: &mut dyn Write,
    s: &Session,
    progress: &mut dyn FnMut(Progress),
) -> io::Result<()> {
    let total = s.records.len() as u64;
    for (i, r) in s.records.iter().enumerate() {
        serde_json::to_writer(&mut *out, r)?;
        out.write_all(b"\n")?;
        if i % 256 == 255 || i + 1 == s.records.len() {
            progress(Progress {
                done: i as u64 + 1,
                total,
            });
        }
    }
    Ok(())
}

/// A table of result rows (a [`Rows`] record or the rows a response carries).
fn render_rows(
    t: &mut String,
    rows: &Rows,
    columns: &mut HashMap<u64, Vec<String>>,
    had_rows: &mut HashMap<u64, bool>,
    s: &dyn Fn(&str) -> String,
) {
    if !rows.columns.is_empty() {
        columns.insert(rows.stmt, rows.columns.iter().map(|c| s(c)).collect());
    }
    let first = !had_rows.contains_key(&rows.stmt);
    had_rows.insert(rows.stmt, true);
    let headers = if first {
        columns.get(&rows.stmt).cloned().unwrap_or_default()
    } else {
        Vec::new()
    };
    let cells: Vec<Vec<String>> = rows
        .rows
        .iter()
        .map(|row| {
            row.iter()
                .map(|c| c.as_deref().map(&s).unwrap_or_default())
                .collect()
        })
        .collect();
    write_table(t, &headers, &cells);
    if let Some(tr) = rows.truncated {
        let _ = writeln!(
            t,
            "(recording truncated after {} rows / {} bytes; cap {} rows / {} bytes)",
            tr.after_rows, tr.after_bytes, tr.cap_rows, tr.cap_bytes
        );
    }
}
