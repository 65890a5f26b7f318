//! Helpers for the CLI: `dbwarden policy check FILE..` and
//! `dbwarden policy eval` output.

use std::fmt::Write as _;
use std::path::Path;

use crate::engine::{Action, Verdict};
use crate::policy::{Policy, PolicyError};

/// Compiles every file in `paths`; returns one error per bad file (each
/// prints as `file:line:column: reason`). An empty vector means all files
/// are valid.
#[must_use]
pub fn check_files<P: AsRef<Path>>(paths: &[P]) -> Vec<PolicyError> {
    paths
        .iter()
        .filter_map(|p| Policy::from_file(p.as_ref()).err())
        .collect()
}

fn action_text(a: Action) -> String {
    match a {
        Action::Allow => "ALLOW".to_owned(),
        Action::Deny => "DENY".to_owned(),
        Action::RequireApproval { timeout } => {
            format!("REQUIRE_APPROVAL (timeout {}s)", timeout.as_secs())
        }
    }
}

/// Renders a verdict for humans: the overall decision and message, then for
/// each statement its kind, tables, decision, deciding rule and why. The
/// output contains no literal values from the SQL.
#[must_use]
pub fn render_eval(policy: &Policy, verdict: &Verdict) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "policy: {} {} (sha256 {})",
        policy.name(),
        policy.version().unwrap_or("-"),
        policy.hash()
    );
    let _ = writeln!(out, "decision: {}", action_text(verdict.action));
    let _ = writeln!(out, "rule: {}", verdict.rule);
    let _ = writeln!(out, "message: {}", verdict.message);
    if !verdict.tags.is_empty() {
        let _ = writeln!(out, "tags: {}", verdict.tags.join(", "));
    }
    for s in &verdict.statements {
        let tables = if s.tables.is_empty() {
            "-".to_owned()
        } else {
            s.tables.join(", ")
        };
        let _ = writeln!(
            out,
            "statement {}: kind={} tables={} -> {} by rule \"{}\"",
            s.index + 1,
            s.kind,
            tables,
            action_text(s.action),
            s.rule
        );
        let _ = writeln!(out, "  why: {}", s.reason);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Dialect, Engine, Identity, Protocol, Target};

    #[test]
    fn eval_rendering_names_rule_and_reason() {
        let e = Engine::new(Policy::embedded_default());
        let t = Target {
            addr: None,
            protocol: Protocol::Postgres,
            database: None,
            user: None,
        };
        let v = e.decide(
            "SELECT 1; TRUNCATE cards",
            Dialect::Postgres,
            &Identity::default(),
            &t,
        );
        let text = render_eval(&e.policy(), &v);
        assert!(text.contains("decision: DENY"), "{text}");
        assert!(
            text.contains("statement 2: kind=truncate tables=cards -> DENY"),
            "{text}"
        );
        assert!(text.contains("why: kind truncate"), "{text}");
    }

    #[test]
    fn check_files_reports_locations() {
        let dir =
            std::env::temp_dir().join(format!("dbwarden-policy-check-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.toml");
        let bad = dir.join("bad.toml");
        std::fs::write(&good, crate::EMBEDDED_DEFAULT_SRC).unwrap();
        std::fs::write(
            &bad,
            "[policy]\nname = \"x\"\ndefault = \"allow\"\nbogus = 1\n",
        )
        .unwrap();
        let missing = dir.join("missing.toml");
        let errs = check_files(&[good, bad.clone(), missing]);
        assert_eq!(errs.len(), 2);
        assert_eq!(
            errs[0].to_string().split(": ").next().unwrap(),
            format!("{}:4:1", bad.display())
        );
        assert!(matches!(errs[1], PolicyError::Io { .. }));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
