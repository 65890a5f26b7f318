//! # dbwarden-policy — the policy engine
//!
//! Decides, for every SQL statement an agent sends, whether dbwarden forwards
//! it (**allow**), refuses it with a protocol-native error (**deny**), or
//! holds it for a human (**require approval**), and which tags go into the
//! session recording. Pure library: no I/O except [`Policy::from_file`] and
//! [`check_files`], no async runtime.
//!
//! ## Layout (how a decision flows)
//!
//! 1. [`Engine::decide`] gets the statement text, dialect, caller
//!    [`Identity`] and [`Target`].
//! 2. `lexer` builds the cache key: the text with literals replaced by
//!    placeholders (hand-written single-pass lexer; anything doubtful ⇒ not
//!    cached).
//! 3. `cache` (sharded LRU) returns the statement **analysis** for that key,
//!    or `analyze` produces it with `sqlparser` (PostgreSQL or MySQL
//!    dialect): kinds, tables read/written, columns, functions, settings,
//!    `WHERE`-less writes, missing `LIMIT`. Analyses, not verdicts, are
//!    cached, because verdicts depend on identity.
//! 4. `engine` matches the compiled rules of the current [`Policy`]
//!    (`policy`, `pattern`, `kind`) against the facts, identity and target:
//!    first matching rule wins; the most severe statement decides the message.
//! 5. `report` renders `dbwarden policy check` / `policy eval` output.
//!
//! The policy file format is documented in `docs/policies.md`.
//!
//! ## Invariants
//! * Fail closed: unparseable SQL is judged by `on_parse_error` (deny by
//!   default); opaque code (`DO`, `CALL`) is visible to rules as such.
//! * Verdict messages, reasons and table lists never contain literal values
//!   from the SQL, and identifiers that look like card numbers are redacted
//!   ([`sanitize_name`]).

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod analyze;
mod cache;
pub mod copy;
pub mod encoding;
mod engine;
mod fold;
mod kind;
mod lexer;
mod pattern;
mod policy;
mod report;
pub mod startup;

use std::time::Duration;

pub use analyze::{analyze, Analysis, Name, StatementFacts};
pub use cache::CacheStats;
pub use engine::{
    decide_with, sanitize_name, Action, Engine, Identity, StatementVerdict, Target, Verdict,
    DEFAULT_CACHE_CAPACITY,
};
pub use kind::{Kind, KindSet, GROUPS as KIND_GROUPS};
pub use policy::{Policy, PolicyError, RuleAction, EMBEDDED_DEFAULT_SRC};
pub use report::{check_files, render_eval};

/// Approval timeout used when neither the rule nor the policy sets one.
pub const DEFAULT_APPROVAL_TIMEOUT: Duration = Duration::from_secs(300);

/// Wire protocol of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// PostgreSQL frontend/backend protocol.
    Postgres,
    /// MySQL / MariaDB client/server protocol.
    Mysql,
}

impl Protocol {
    /// `postgres` or `mysql` (policy-file spelling).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Postgres => "postgres",
            Protocol::Mysql => "mysql",
        }
    }

    /// The SQL dialect spoken over this protocol.
    #[must_use]
    pub fn dialect(self) -> Dialect {
        match self {
            Protocol::Postgres => Dialect::Postgres,
            Protocol::Mysql => Dialect::MySql,
        }
    }
}

/// SQL dialect used to lex and parse statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// PostgreSQL.
    Postgres,
    /// MySQL / MariaDB.
    MySql,
}

/// A key for "the same statement with other literal values": the text with every literal
/// replaced by a placeholder (LIMIT numbers kept), as used by the analysis cache. `None` when
/// the lexer is not sure of the text (unterminated quotes, NUL bytes, ...): callers then fall
/// back to the exact text. Used for session-scoped approvals.
#[must_use]
pub fn normalized_key(sql: &str, dialect: Dialect) -> Option<String> {
    lexer::normalize(sql, dialect)
}

/// [`normalized_key`] for humans: placeholders shown as `?`, no control characters.
#[must_use]
pub fn normalized_display(sql: &str, dialect: Dialect) -> Option<String> {
    let k = lexer::normalize(sql, dialect)?;
    let body = k.get(2..).unwrap_or("");
    Some(
        body.replace("\0s", "?")
            .replace("\0e", "?")
            .replace("\0d", "?")
            .replace("\0n", "?"),
    )
}

#[cfg(test)]
mod normalized_tests {
    use super::*;

    #[test]
    fn literals_are_placeholders() {
        let a = normalized_key("select * from t where id = 42", Dialect::Postgres).unwrap();
        let b = normalized_key("select * from t where id = 7", Dialect::Postgres).unwrap();
        assert_eq!(a, b);
        assert_eq!(
            normalized_display("select * from t where n = 'x' limit 5", Dialect::Postgres).unwrap(),
            "select * from t where n = ? limit 5"
        );
        assert!(normalized_key("select 'unterminated", Dialect::Postgres).is_none());
    }
}
