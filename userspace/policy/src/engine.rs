//! The decision engine: statement facts + identity + target → [`Verdict`].
//!
//! [`Engine`] holds the current policy (swapped atomically on reload) and the
//! analysis cache. [`Engine::decide`] is synchronous and cheap on a cache hit;
//! the daemon calls it from many tasks at once.
//!
//! Evaluation, per statement: an unparseable statement gets the policy's
//! `on_parse_error` action. Otherwise rules are tried in file order; `tag`
//! rules add their tags and evaluation goes on; the **first** matching
//! terminal rule (allow / deny / require_approval) decides; if none matches,
//! the policy's `default` decides. For a multi-statement string the overall
//! action is the most severe one (deny > require_approval > allow): one denied
//! statement refuses the whole message.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::analyze::{analyze_with, Analysis, Name, StatementFacts};
use crate::cache::{AnalysisCache, CacheStats};
use crate::lexer::normalize;
use crate::policy::{Policy, Rule, RuleAction};
use crate::{Dialect, Protocol};

/// Who runs the statement. Filled from the kernel (eBPF maps, `/proc`),
/// never from anything the client says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// Process id of the connecting process.
    pub pid: u32,
    /// Real user id.
    pub uid: u32,
    /// Real group id.
    pub gid: u32,
    /// User name for `uid`, if resolvable.
    pub user: Option<String>,
    /// cgroup v2 path (`/agents.slice/agent-1.scope`).
    pub cgroup: String,
    /// Executable path (`/proc/PID/exe`).
    pub exe: String,
    /// Command name (`/proc/PID/comm`).
    pub comm: String,
    /// Environment labels collected by the daemon (e.g. `ci_job`).
    pub labels: BTreeMap<String, String>,
    /// Root or holding a capability that can subvert dbwarden (the daemon sets this when it
    /// cannot verify `/proc` too: fail closed).
    pub privileged: bool,
}

/// Where the statement goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Original destination the agent connected to: `ip:port`, `[v6]:port`, or
    /// `unix:/path/of/socket` (so one `address` glob list covers both transports).
    pub addr: Option<String>,
    /// Wire protocol of the session.
    pub protocol: Protocol,
    /// Database named in the startup/handshake packet.
    pub database: Option<String>,
    /// Database user named in the startup/handshake packet.
    pub user: Option<String>,
}

/// The decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Forward the message.
    Allow,
    /// Refuse it (SQLSTATE 42501 / MySQL access denied) with [`Verdict::message`].
    Deny,
    /// Hold it for a human; deny if nobody approves within `timeout`.
    RequireApproval {
        /// How long to wait for the approval.
        timeout: Duration,
    },
}

impl Action {
    fn severity(self) -> u8 {
        match self {
            Action::Allow => 0,
            Action::RequireApproval { .. } => 1,
            Action::Deny => 2,
        }
    }

    /// `allow`, `deny` or `require_approval`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Deny => "deny",
            Action::RequireApproval { .. } => "require_approval",
        }
    }
}

/// The verdict on one statement of the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementVerdict {
    /// Position in the message (0-based).
    pub index: usize,
    /// The statement can change the session's client encoding (`SET client_encoding`,
    /// `SET NAMES`, `RESET client_encoding`, `RESET ALL`, `DISCARD ALL`, `set_config`).
    pub changes_client_encoding: bool,
    /// Kind of the statement (`select`, `delete`, ... or `unparseable`).
    pub kind: String,
    /// Tables read or written (display form, sanitized).
    pub tables: Vec<String>,
    /// What to do with this statement.
    pub action: Action,
    /// Deciding rule (`default`, `on_parse_error` or a rule name).
    pub rule: String,
    /// Why the rule matched (matchers and the facts they matched). Never
    /// contains literal values.
    pub reason: String,
    /// Tags collected for this statement.
    pub tags: Vec<String>,
}

/// The verdict on a whole message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The most severe action over all statements.
    pub action: Action,
    /// Rule that decided the most severe statement.
    pub rule: String,
    /// Text for the agent (and logs): names the rule, never echoes literals.
    pub message: String,
    /// Tags for the recording (union over statements, first-seen order).
    pub tags: Vec<String>,
    /// Per-statement detail.
    pub statements: Vec<StatementVerdict>,
    /// Whether the analysis came from the cache.
    pub cached: bool,
}

/// Default number of cached analyses.
pub const DEFAULT_CACHE_CAPACITY: usize = 10_000;

/// Policy holder + analysis cache. `Send + Sync`.
pub struct Engine {
    policy: RwLock<Arc<Policy>>,
    cache: AnalysisCache,
}

impl Engine {
    /// Creates an engine with `policy` and a cache of
    /// [`DEFAULT_CACHE_CAPACITY`] analyses.
    #[must_use]
    pub fn new(policy: Policy) -> Self {
        Engine::with_cache_capacity(policy, DEFAULT_CACHE_CAPACITY)
    }

    /// Creates an engine with a cache of `capacity` analyses.
    #[must_use]
    pub fn with_cache_capacity(policy: Policy, capacity: usize) -> Self {
        Engine {
            policy: RwLock::new(Arc::new(policy)),
            cache: AnalysisCache::new(capacity),
        }
    }

    /// Swaps in a new policy. Decisions already running finish with the old
    /// one. The analysis cache stays valid (analyses do not depend on the
    /// policy).
    pub fn replace(&self, policy: Policy) {
        let mut g = self
            .policy
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Analyses depend on the policy's query-string functions only.
        let same = g.sql_functions == policy.sql_functions;
        *g = Arc::new(policy);
        if !same {
            self.cache.clear();
        }
    }

    /// The current policy.
    #[must_use]
    pub fn policy(&self) -> Arc<Policy> {
        Arc::clone(
            &self
                .policy
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Cache size and capacity.
    #[must_use]
    pub fn cache_stats(&self) -> CacheStats {
        self.cache.stats()
    }

    /// Empties the analysis cache (for tests and benchmarks; never needed for
    /// correctness).
    pub fn clear_cache(&self) {
        self.cache.clear();
    }

    /// Analysis of `sql`, from the cache when possible.
    fn analysis(&self, sql: &str, dialect: Dialect, policy: &Policy) -> (Arc<Analysis>, bool) {
        let key = normalize(sql, dialect);
        if let Some(k) = &key {
            if let Some(a) = self.cache.get(k) {
                return (a, true);
            }
        }
        let a = Arc::new(analyze_with(sql, dialect, &policy.sql_functions));
        if let Some(k) = key {
            if a.cacheable {
                self.cache.insert(&k, Arc::clone(&a));
            }
        }
        (a, false)
    }

    /// The shape of the `ordinal`-th (0-based) `COPY ... TO STDOUT` of `sql`, from the same
    /// analyzer the verdict came from (run again: a COPY analysis is never cached, since its
    /// options are literals that the cache key leaves out).
    ///
    /// # Errors
    /// No such COPY in `sql`, or options the masker cannot honour.
    pub fn copy_out(
        &self,
        sql: &str,
        dialect: Dialect,
        ordinal: usize,
    ) -> Result<crate::copy::CopyOut, String> {
        let policy = self.policy();
        let (analysis, _) = self.analysis(sql, dialect, &policy);
        analysis
            .statements
            .iter()
            .filter_map(|f| f.copy_out.as_ref())
            .nth(ordinal)
            .cloned()
            .unwrap_or_else(|| Err("the COPY statement could not be identified".into()))
    }

    /// Judges every statement of `sql` (one simple-query message) and
    /// combines the results. Never fails: unparseable input is judged by the
    /// policy's `on_parse_error` (deny by default).
    #[must_use]
    pub fn decide(
        &self,
        sql: &str,
        dialect: Dialect,
        identity: &Identity,
        target: &Target,
    ) -> Verdict {
        let policy = self.policy();
        let (analysis, cached) = self.analysis(sql, dialect, &policy);
        let mut v = decide_with(&policy, &analysis, identity, target);
        v.cached = cached;
        v
    }
}

/// Judges an analysis under `policy` (no cache involved).
#[must_use]
pub fn decide_with(
    policy: &Policy,
    analysis: &Analysis,
    identity: &Identity,
    target: &Target,
) -> Verdict {
    let n = analysis.statements.len();
    if n == 0 {
        return Verdict {
            action: Action::Allow,
            rule: "empty".to_owned(),
            message: "dbwarden: empty query".to_owned(),
            tags: Vec::new(),
            statements: Vec::new(),
            cached: false,
        };
    }
    let mut statements = Vec::with_capacity(n);
    let mut worst: Option<(usize, Action)> = None;
    let mut min_timeout: Option<Duration> = None;
    let mut messages: Vec<String> = Vec::with_capacity(n);
    for (i, f) in analysis.statements.iter().enumerate() {
        let (sv, msg) = judge(policy, i, f, identity, target);
        if let Action::RequireApproval { timeout } = sv.action {
            min_timeout = Some(min_timeout.map_or(timeout, |m| m.min(timeout)));
        }
        if worst.is_none_or(|(_, a)| sv.action.severity() > a.severity()) {
            worst = Some((i, sv.action));
        }
        messages.push(msg);
        statements.push(sv);
    }
    let (wi, mut action) = worst.unwrap_or((0, Action::Allow));
    if let (Action::RequireApproval { timeout }, Some(m)) = (&mut action, min_timeout) {
        *timeout = m;
    }
    let mut tags: Vec<String> = Vec::new();
    for s in &statements {
        for t in &s.tags {
            if !tags.contains(t) {
                tags.push(t.clone());
            }
        }
    }
    let decisive = &statements[wi];
    let verb = match action {
        Action::Allow => "allowed",
        Action::Deny => "denied",
        Action::RequireApproval { .. } => "held for approval",
    };
    let mut message = format!(
        "dbwarden: statement {verb} by rule \"{}\": {}",
        decisive.rule, messages[wi]
    );
    if n > 1 {
        let _ = write!(message, " (statement {} of {n})", wi + 1);
    }
    Verdict {
        action,
        rule: decisive.rule.clone(),
        message,
        tags,
        statements,
        cached: false,
    }
}

/// Makes an identifier safe for messages, logs and recordings: control
/// characters dropped, long names cut, and anything holding 12 or more digits
/// (which could be a card number smuggled into an identifier) redacted.
#[must_use]
pub fn sanitize_name(s: &str) -> String {
    if s.bytes().filter(u8::is_ascii_digit).count() >= 12 {
        return "<redacted>".to_owned();
    }
    let clean: String = s.chars().filter(|c| !c.is_control()).take(64).collect();
    if s.chars().count() > 64 {
        format!("{clean}…")
    } else {
        clean
    }
}

fn display_name(n: &Name) -> String {
    sanitize_name(&n.join("."))
}

fn kind_label(f: &StatementFacts) -> String {
    match (f.parse_error.is_some(), f.primary) {
        (true, _) => "unparseable".to_owned(),
        (false, Some(k)) => k.name().to_owned(),
        (false, None) => "other".to_owned(),
    }
}

fn to_action(a: RuleAction) -> Action {
    match a {
        RuleAction::Allow | RuleAction::Tag => Action::Allow,
        RuleAction::Deny => Action::Deny,
        RuleAction::RequireApproval { timeout } => Action::RequireApproval { timeout },
    }
}

/// Default agent-facing text when a rule has no `message`.
fn default_text(f: &StatementFacts, action: Action) -> String {
    let kind = f
        .primary
        .map_or("statement", |k| k.name())
        .to_uppercase()
        .replace('_', " ");
    let mut tables: Vec<String> = f
        .tables_written
        .iter()
        .chain(f.tables_read.iter())
        .map(display_name)
        .collect();
    tables.dedup();
    let on = if tables.is_empty() {
        String::new()
    } else {
        format!(" on {}", tables.join(", "))
    };
    match action {
        Action::Deny => format!("{kind}{on} is not allowed by policy"),
        Action::RequireApproval { .. } => format!("{kind}{on} needs human approval"),
        Action::Allow => format!("{kind}{on} is allowed"),
    }
}

fn judge(
    policy: &Policy,
    index: usize,
    f: &StatementFacts,
    identity: &Identity,
    target: &Target,
) -> (StatementVerdict, String) {
    let mut tables: Vec<String> = f
        .tables_read
        .iter()
        .chain(f.tables_written.iter())
        .map(display_name)
        .collect();
    tables.sort();
    tables.dedup();
    let kind = kind_label(f);
    let changes_client_encoding = f
        .settings
        .iter()
        .any(|s| matches!(s.as_str(), "client_encoding" | "names" | "all"));
    if let Some(err) = &f.parse_error {
        let action = to_action(policy.on_parse_error);
        return (
            StatementVerdict {
                index,
                changes_client_encoding,
                kind,
                tables,
                action,
                rule: "on_parse_error".to_owned(),
                reason: err.clone(),
                tags: vec!["parse-error".to_owned()],
            },
            err.clone(),
        );
    }
    if let Some(enc) = &f.unsafe_encoding {
        // Even where the policy allows the encoding: only at startup, where the server's
        // report of it arrives before the first statement. Switched in mid-session, a
        // statement pipelined behind the SET would be decoded the old way and run the new.
        let why = if policy.allows_client_encoding(enc) {
            format!("dbwarden: client encoding \"{}\" is allowed only from the start of a session (PGCLIENTENCODING, client_encoding in the startup packet), not by SET", sanitize_name(enc))
        } else {
            crate::encoding::refusal(enc)
        };
        return (
            StatementVerdict {
                index,
                changes_client_encoding,
                kind,
                tables,
                action: Action::Deny,
                rule: "client_encoding".to_owned(),
                reason: why.clone(),
                tags: vec!["client-encoding".to_owned()],
            },
            why,
        );
    }
    let mut tags: Vec<String> = Vec::new();
    for rule in &policy.rules {
        if !rule_matches(rule, f, identity, target, None) {
            continue;
        }
        for t in &rule.tags {
            if !tags.contains(t) {
                tags.push(t.clone());
            }
        }
        if rule.action == RuleAction::Tag {
            continue;
        }
        let action = to_action(rule.action);
        let mut why = Vec::new();
        rule_matches(rule, f, identity, target, Some(&mut why));
        let reason = if why.is_empty() {
            "rule has no matchers (matches everything)".to_owned()
        } else {
            why.join("; ")
        };
        let text = rule
            .message
            .clone()
            .unwrap_or_else(|| default_text(f, action));
        return (
            StatementVerdict {
                index,
                changes_client_encoding,
                kind,
                tables,
                action,
                rule: rule.name.clone(),
                reason,
                tags,
            },
            text,
        );
    }
    let action = to_action(policy.default);
    let text = policy
        .default_message
        .clone()
        .unwrap_or_else(|| default_text(f, action));
    (
        StatementVerdict {
            index,
            changes_client_encoding,
            kind,
            tables,
            action,
            rule: "default".to_owned(),
            reason: "no rule matched; policy default applies".to_owned(),
            tags,
        },
        text,
    )
}

/// Evaluates every matcher of `rule` (AND across matchers, OR within a
/// list). With `why`, records a description of each matcher that held.
fn rule_matches(
    rule: &Rule,
    f: &StatementFacts,
    id: &Identity,
    t: &Target,
    mut why: Option<&mut Vec<String>>,
) -> bool {
    macro_rules! note {
        ($($arg:tt)*) => {
            if let Some(w) = why.as_deref_mut() {
                w.push(format!($($arg)*));
            }
        };
    }
    if let Some(k) = rule.kinds {
        if !k.intersects(f.kinds) {
            return false;
        }
        if why.is_some() {
            let hit: Vec<&str> = f
                .kinds
                .iter()
                .filter(|x| k.contains(*x))
                .map(|x| x.name())
                .collect();
            note!("kind {}", hit.join(","));
        }
    }
    if let Some(p) = &rule.tables {
        let hit = p
            .first_match(&f.tables_read)
            .or_else(|| p.first_match(&f.tables_written));
        let Some((pat, name)) = hit else { return false };
        note!("table {} matches {pat:?}", sanitize_name(&name.join(".")));
    }
    if let Some(p) = &rule.tables_read {
        let Some((pat, name)) = p.first_match(&f.tables_read) else {
            return false;
        };
        note!(
            "reads table {} matching {pat:?}",
            sanitize_name(&name.join("."))
        );
    }
    if let Some(p) = &rule.tables_written {
        let Some((pat, name)) = p.first_match(&f.tables_written) else {
            return false;
        };
        note!(
            "writes table {} matching {pat:?}",
            sanitize_name(&name.join("."))
        );
    }
    if let Some(g) = &rule.columns {
        if f.wildcard {
            note!("selects * (may include any column)");
        } else {
            let Some(c) = f.columns.iter().find(|c| g.is_match(c)) else {
                return false;
            };
            note!("column {}", sanitize_name(c));
        }
    }
    if let Some(p) = &rule.functions {
        let Some((pat, name)) = p.first_match(&f.functions) else {
            return false;
        };
        note!(
            "calls function {} matching {pat:?}",
            sanitize_name(&name.join("."))
        );
    }
    if let Some(g) = &rule.settings {
        let Some(s) = f.settings.iter().find(|s| g.is_match(s)) else {
            return false;
        };
        note!("sets {}", sanitize_name(s));
    }
    if let Some(g) = &rule.languages {
        let Some(l) = f.language.as_deref().filter(|l| g.is_match(l)) else {
            return false;
        };
        note!("language {}", sanitize_name(l));
    }
    if let Some(b) = rule.where_less {
        if f.where_less != b {
            return false;
        }
        note!(
            "{}",
            if b {
                "UPDATE/DELETE without WHERE"
            } else {
                "every UPDATE/DELETE has a WHERE"
            }
        );
    }
    // With a table matcher, row limits are judged per read of a matching
    // table, where it is read (`select array(select pan from cards) limit 1`
    // reads cards without a bound).
    let scoped = rule.tables_read.as_ref().or(rule.tables.as_ref());
    if let (Some(p), true) = (scoped, rule.no_limit.is_some() || rule.limit_over.is_some()) {
        let mut matching = f
            .reads
            .iter()
            .filter(|(n, _)| p.first_match(std::slice::from_ref(n)).is_some());
        let over = |b: &Option<u64>| match (b, rule.limit_over) {
            (None, _) => true,
            (Some(n), Some(max)) => *n > max,
            (Some(_), None) => false,
        };
        let hit = match rule.no_limit {
            Some(false) => {
                let v: Vec<_> = matching.collect();
                !v.is_empty() && v.iter().all(|(_, b)| b.is_some() && !over(b))
            }
            _ => matching.find(|(_, b)| over(b)).is_some_and(|(n, b)| {
                match b {
                    Some(x) => note!("reads {} with LIMIT {x}", sanitize_name(&n.join("."))),
                    None => note!("reads {} without a row bound", sanitize_name(&n.join("."))),
                }
                true
            }),
        };
        if !hit {
            return false;
        }
        return identity_matches(rule, id, why.as_deref_mut()) && target_matches(rule, t, why);
    }
    if let Some(b) = rule.no_limit {
        if f.no_limit != b {
            return false;
        }
        note!("{}", if b { "no LIMIT" } else { "has a LIMIT" });
    }
    if let Some(max) = rule.limit_over {
        match f.limit {
            Some(n) if n > max => note!("LIMIT {n} is over {max}"),
            None if f.no_limit => note!("no LIMIT (limit_over {max})"),
            _ => return false,
        }
    }
    identity_matches(rule, id, why.as_deref_mut()) && target_matches(rule, t, why)
}

fn identity_matches(rule: &Rule, id: &Identity, mut why: Option<&mut Vec<String>>) -> bool {
    let s = &rule.identity;
    let mut note = |m: String| {
        if let Some(w) = why.as_deref_mut() {
            w.push(m);
        }
    };
    if let Some(g) = &s.cgroup {
        let Some(p) = g.matching(&id.cgroup) else {
            return false;
        };
        note(format!("cgroup matches {p:?}"));
    }
    if let Some(u) = &s.uid {
        if !u.contains(&id.uid) {
            return false;
        }
        note(format!("uid {}", id.uid));
    }
    if let Some(gs) = &s.gid {
        if !gs.contains(&id.gid) {
            return false;
        }
        note(format!("gid {}", id.gid));
    }
    if let Some(g) = &s.user {
        let Some(p) = id.user.as_deref().and_then(|u| g.matching(u)) else {
            return false;
        };
        note(format!("user matches {p:?}"));
    }
    if let Some(g) = &s.exe {
        let Some(p) = g.matching(&id.exe) else {
            return false;
        };
        note(format!("exe matches {p:?}"));
    }
    if let Some(g) = &s.comm {
        let Some(p) = g.matching(&id.comm) else {
            return false;
        };
        note(format!("comm matches {p:?}"));
    }
    if let Some(p) = s.privileged {
        if id.privileged != p {
            return false;
        }
        note(format!("privileged = {p}"));
    }
    for (k, g) in &s.labels {
        let Some(v) = id.labels.get(k) else {
            return false;
        };
        let Some(p) = g.matching(v) else { return false };
        note(format!("label {k} matches {p:?}"));
    }
    true
}

fn target_matches(rule: &Rule, t: &Target, mut why: Option<&mut Vec<String>>) -> bool {
    let s = &rule.target;
    let mut note = |m: String| {
        if let Some(w) = why.as_deref_mut() {
            w.push(m);
        }
    };
    if let Some(g) = &s.address {
        let Some(text) = t.addr.as_deref() else {
            return false;
        };
        let Some(p) = g.matching(text) else {
            return false;
        };
        note(format!("target address {text} matches {p:?}"));
    }
    if let Some(ps) = &s.protocol {
        if !ps.contains(&t.protocol) {
            return false;
        }
        note(format!("protocol {}", t.protocol.name()));
    }
    if let Some(g) = &s.database {
        let Some(p) = t.database.as_deref().and_then(|d| g.matching(d)) else {
            return false;
        };
        note(format!("database matches {p:?}"));
    }
    if let Some(g) = &s.user {
        let Some(p) = t.user.as_deref().and_then(|u| g.matching(u)) else {
            return false;
        };
        note(format!("database user matches {p:?}"));
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize() {
        assert_eq!(sanitize_name("cards"), "cards");
        assert_eq!(sanitize_name("t_4111111111111111"), "<redacted>");
        assert_eq!(sanitize_name("a\u{7}b"), "ab");
        assert!(sanitize_name(&"x".repeat(100)).ends_with('…'));
    }

    #[test]
    fn engine_is_send_sync() {
        fn check<T: Send + Sync>() {}
        check::<Engine>();
        check::<Policy>();
        check::<Verdict>();
    }
}
