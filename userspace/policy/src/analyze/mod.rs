//! Statement analysis: SQL text → [`Analysis`] (per-statement facts).
//!
//! The analysis does not depend on who runs the statement, so it can be
//! cached by the normalized text (see [`crate::cache`]); rule matching then
//! runs on the facts every time.
//!
//! Flow: the whole text is parsed with `sqlparser` in the session's dialect.
//! If that fails, the text is split on top-level `;` by the lexer and each
//! piece is parsed on its own, so that one statement `sqlparser` does not know
//! does not hide the others. Pieces that still fail go through a small
//! keyword-based fallback for statements `sqlparser` cannot parse but that a
//! policy must recognise (`DO`, `ALTER SYSTEM`, MySQL `LOAD DATA`,
//! `SELECT .. INTO OUTFILE`, `PREPARE .. FROM`); anything else is a parse
//! error, judged by the policy's `on_parse_error`.
//!
//! Every AST node is visited (`sqlparser`'s `Visitor`), so functions nested
//! in expressions, subqueries, joins and `FROM` functions are all seen, and so
//! are DML statements inside CTEs, `EXPLAIN`, `PREPARE`, `CREATE TABLE AS`.
//!
//! Facts hold identifiers only (normalized: unquoted parts lower-cased, quoted
//! parts verbatim), never literal values.
//!
//! Files: this one (entry points, facts, parsing), `visit.rs` (the AST walk),
//! `statement.rs` (facts per statement type), `collector.rs` (bookkeeping,
//! SQL inside strings and function bodies), `fallback.rs` (what `sqlparser`
//! cannot parse).

use std::ops::ControlFlow;

use sqlparser::ast::{
    AlterRoleOperation, AlterTableOperation, CopySource, CopyTarget, CreateFunctionBody, Expr,
    FromTable, FunctionArg, FunctionArgExpr, FunctionArguments, LimitClause, ObjectName,
    ObjectNamePart, ObjectType, Query, Reset, RoleOption, Select, SelectItem, Set, SetExpr,
    Statement, TableFactor, TableObject, Value, Visit, Visitor,
};
use sqlparser::dialect::{MySqlDialect, PostgreSqlDialect};
use sqlparser::parser::Parser;

use crate::fold;
use crate::kind::{Kind, KindSet};
use crate::lexer::{self, LexIssue, TokKind};
use crate::Dialect;

/// A normalized, possibly qualified object name (`["public", "cards"]`).
pub type Name = Vec<String>;

/// What the policy engine knows about one statement.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatementFacts {
    /// All kinds of the statement, nested statements included.
    pub kinds: KindSet,
    /// The kind of the outermost statement, for messages.
    pub primary: Option<Kind>,
    /// Tables (and views, CTE names) read.
    pub tables_read: Vec<Name>,
    /// Tables written, created, altered, dropped or truncated.
    pub tables_written: Vec<Name>,
    /// Column names referenced anywhere (last identifier part).
    pub columns: Vec<String>,
    /// A `*` / `t.*` projection (or a whole-table `COPY`): every column may be read.
    pub wildcard: bool,
    /// Functions called anywhere, including `FROM` functions and `CALL`.
    pub functions: Vec<Name>,
    /// Variables assigned by `SET` (`search_path`, `role`, ...).
    pub settings: Vec<String>,
    /// Language of a `CREATE FUNCTION/PROCEDURE`.
    pub language: Option<String>,
    /// An `UPDATE`/`DELETE` (anywhere in the statement) has no `WHERE`.
    pub where_less: bool,
    /// The query whose rows go to the client has no numeric `LIMIT`/`FETCH`/`TOP`.
    pub no_limit: bool,
    /// The row limit of the query whose rows go to the client, when it is a
    /// plain integer (`LIMIT 10`). `None` with `no_limit == false` means the
    /// statement returns no query rows (not a query).
    pub limit: Option<u64>,
    /// Every table read by a query whose rows reach the client, with the
    /// row bound that holds **where it is read** (`None`: unbounded). An
    /// outer `LIMIT` bounds the queries its rows pass through (set
    /// operations, parenthesized bodies), not subqueries, `ARRAY(..)`,
    /// CTE bodies or derived tables; a per-row subquery (`LATERAL`, scalar,
    /// `ARRAY`) is bounded by its own limit times the enclosing bound.
    pub reads: Vec<(Name, Option<u64>)>,
    /// Why the statement could not be analysed (contains no SQL text).
    pub parse_error: Option<String>,
    /// For a `COPY ... TO STDOUT`: the stream's format, options and column names, or why the
    /// masker cannot read it.
    pub copy_out: Option<Result<crate::copy::CopyOut, String>>,
    /// `SET client_encoding` / `SET NAMES` to an encoding whose characters can end in a quote
    /// or backslash byte: refused unless `[policy] client_encodings` allows it.
    pub unsafe_encoding: Option<String>,
}

/// Functions whose argument is a query string the server runs, beyond the
/// built-in list (`[policy] sql_functions`): lower-cased name parts and the
/// 0-based argument position.
pub(crate) type SqlFunctions = [(Vec<String>, usize)];

/// Nesting limit for SQL found inside strings and function bodies.
const MAX_DEPTH: usize = 8;

#[derive(Clone, Copy)]
struct Ctx<'a> {
    depth: usize,
    extra: &'a SqlFunctions,
}

/// The analysis of a whole query string.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Analysis {
    /// One entry per statement, in order. Empty for an empty query.
    pub statements: Vec<StatementFacts>,
    /// Whether the analysis may be reused for texts that differ only in
    /// literal values (false when literal contents were interpreted, or on
    /// any error path).
    pub cacheable: bool,
}

fn parse(sql: &str, dialect: Dialect) -> Result<Vec<Statement>, String> {
    let r = match dialect {
        Dialect::Postgres => Parser::parse_sql(&PostgreSqlDialect {}, sql),
        Dialect::MySql => Parser::parse_sql(&MySqlDialect {}, sql),
    };
    r.map_err(|e| parse_error_reason(&e.to_string(), dialect))
}

/// Builds a parse-error reason that never contains SQL text: `sqlparser`
/// messages quote the offending token, which may be a literal (a PAN). Only
/// the location is kept.
fn parse_error_reason(msg: &str, dialect: Dialect) -> String {
    let d = match dialect {
        Dialect::Postgres => "PostgreSQL",
        Dialect::MySql => "MySQL",
    };
    let loc = msg.rfind(" at Line: ").map(|i| &msg[i + 4..]).filter(|l| {
        l.chars().all(|c| {
            c.is_ascii_digit() || c.is_ascii_alphabetic() || c == ':' || c == ',' || c == ' '
        })
    });
    match loc {
        Some(l) => format!("statement could not be parsed as {d} SQL (at {l})"),
        None => format!("statement could not be parsed as {d} SQL"),
    }
}

/// Analyses `sql` in `dialect`. Never fails: problems become statements with
/// [`StatementFacts::parse_error`] set.
#[must_use]
pub fn analyze(sql: &str, dialect: Dialect) -> Analysis {
    analyze_with(sql, dialect, &[])
}

/// [`analyze`] with extra query-string functions (`[policy] sql_functions`).
#[must_use]
pub(crate) fn analyze_with(sql: &str, dialect: Dialect, extra: &SqlFunctions) -> Analysis {
    analyze_ctx(sql, dialect, Ctx { depth: 0, extra })
}

fn analyze_ctx(sql: &str, dialect: Dialect, cx: Ctx<'_>) -> Analysis {
    if cx.depth > MAX_DEPTH {
        return Analysis {
            statements: vec![error_facts("SQL nested too deeply in strings".to_owned())],
            cacheable: false,
        };
    }
    if dialect == Dialect::Postgres && sql.contains('\\') && !lexer::scs_independent(sql) {
        // The server's reading depends on standard_conforming_strings, which the agent
        // controls (SET, startup options, role defaults) and which may change in a pipeline
        // before dbwarden sees the server report it: judged one way, run another. Refused.
        return Analysis {
            statements: vec![error_facts(
                "a backslash in a '...' string makes this statement read differently with standard_conforming_strings off; use E'...' or $$...$$ strings"
                    .to_owned(),
            )],
            cacheable: false,
        };
    }
    if dialect == Dialect::MySql
        && sql.contains("/*M!")
        && lexer::tokens(sql, dialect).1 == Some(LexIssue::MariaDbExecComment)
    {
        return Analysis {
            statements: vec![error_facts(
                "MariaDB executable comments (/*M! .. */) are not allowed".to_owned(),
            )],
            cacheable: false,
        };
    }
    match parse(sql, dialect) {
        Ok(stmts) => {
            let mut cacheable = true;
            let statements = stmts
                .iter()
                .map(|s| {
                    let (f, c) = facts_of(s, dialect, cx);
                    cacheable &= c;
                    f
                })
                .collect();
            Analysis {
                statements,
                cacheable,
            }
        }
        Err(whole_err) => {
            let (pieces, _) = lexer::split(sql, dialect);
            if pieces.is_empty() {
                // Only comments/whitespace, yet the parser failed (e.g. an
                // unterminated comment): judge it as unparseable.
                return Analysis {
                    statements: vec![error_facts(whole_err)],
                    cacheable: false,
                };
            }
            let mut statements = Vec::new();
            for piece in pieces {
                match parse(piece, dialect) {
                    Ok(stmts) => {
                        for s in &stmts {
                            statements.push(facts_of(s, dialect, cx).0);
                        }
                    }
                    Err(e) => statements.push(fallback(piece, dialect, e, cx)),
                }
            }
            Analysis {
                statements,
                cacheable: false,
            }
        }
    }
}

mod collector;
mod fallback;
mod statement;
#[cfg(test)]
mod tests;
mod visit;

use fallback::*;

fn merge(into: &mut StatementFacts, from: &StatementFacts) {
    for k in from.kinds.iter() {
        into.kinds.insert(k);
    }
    into.tables_read.extend(from.tables_read.iter().cloned());
    into.tables_written
        .extend(from.tables_written.iter().cloned());
    into.columns.extend(from.columns.iter().cloned());
    into.functions.extend(from.functions.iter().cloned());
    into.settings.extend(from.settings.iter().cloned());
    into.reads.extend(from.reads.iter().cloned());
    into.wildcard |= from.wildcard;
    into.where_less |= from.where_less;
    into.no_limit |= from.no_limit;
    if into.limit.is_none() {
        into.limit = from.limit;
    }
    if into.language.is_none() {
        into.language.clone_from(&from.language);
    }
}

/// Normalizes one identifier: unquoted → lower-case, quoted → verbatim.
fn norm_ident(value: &str, quoted: bool) -> String {
    if quoted {
        value.to_owned()
    } else {
        value.to_lowercase()
    }
}

fn norm_name(n: &ObjectName) -> Name {
    n.0.iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(i) => norm_ident(&i.value, i.quote_style.is_some()),
            ObjectNamePart::Function(f) => f.name.value.to_lowercase(),
        })
        .collect()
}

/// The value of a LIMIT/FETCH quantity when it is a plain integer literal
/// (a bound the policy can trust). Anything else (`ALL`, `NULL`, `$1`, a
/// subquery, `1e9`) is unbounded.
fn int_literal(e: &Expr) -> Option<u64> {
    match e {
        Expr::Value(v) => match &v.value {
            Value::Number(n, _) => n.parse().ok(),
            _ => None,
        },
        Expr::Nested(inner) => int_literal(inner),
        _ => None,
    }
}

/// The row limit of `q`, if it has a trustworthy one (smallest of LIMIT,
/// FETCH and TOP).
fn query_limit(q: &Query) -> Option<u64> {
    let limit = match &q.limit_clause {
        Some(LimitClause::LimitOffset { limit: Some(l), .. }) => int_literal(l),
        Some(LimitClause::OffsetCommaLimit { limit, .. }) => int_literal(limit),
        _ => None,
    };
    let fetch = q
        .fetch
        .as_ref()
        .filter(|f| !f.percent)
        .and_then(|f| f.quantity.as_ref().and_then(int_literal));
    let top = match q.body.as_ref() {
        SetExpr::Select(s) => {
            s.top
                .as_ref()
                .filter(|t| !t.percent)
                .and_then(|t| match &t.quantity {
                    Some(sqlparser::ast::TopQuantity::Constant(n)) => Some(*n),
                    Some(sqlparser::ast::TopQuantity::Expr(e)) => int_literal(e),
                    None => None,
                })
        }
        _ => None,
    };
    [limit, fetch, top].into_iter().flatten().min()
}

/// How a query's rows relate to the query it is nested in.
#[derive(Clone, Copy, PartialEq, Eq)]
enum QRole {
    /// Body or set-operation branch: the enclosing LIMIT bounds it too.
    PassThrough,
    /// Evaluated once (CTE body, plain derived table): its own limit only.
    Once,
}

/// Row bound of a read nested per row: own bound times the outer bound.
fn times(own: Option<u64>, outer: Option<u64>) -> Option<u64> {
    match (own, outer) {
        (Some(a), Some(b)) => Some(a.saturating_mul(b)),
        _ => None,
    }
}

struct Collector<'a> {
    cx: Ctx<'a>,
    dialect: Dialect,
    /// Row bound of each enclosing query (innermost last).
    qstack: Vec<Option<u64>>,
    /// Roles of queries not yet visited, by address.
    qroles: Vec<(usize, QRole)>,
    /// For each enclosing statement: its query rows reach the client.
    out_stack: Vec<bool>,
    f: StatementFacts,
    /// Addresses of `TableFactor`s that are write targets (not reads).
    write_factors: Vec<usize>,
    /// Statement nesting: true for each ancestor that passes its query's rows
    /// through to the client (EXPLAIN, PREPARE).
    stack: Vec<bool>,
    cacheable: bool,
    mysql: bool,
}

fn dedup(v: &mut Vec<Name>) {
    v.sort();
    v.dedup();
}

/// Facts of one parsed statement, and whether they may be cached.
fn facts_of(st: &Statement, dialect: Dialect, cx: Ctx<'_>) -> (StatementFacts, bool) {
    let mut c = Collector {
        cx,
        dialect,
        qstack: Vec::new(),
        qroles: Vec::new(),
        out_stack: Vec::new(),
        f: StatementFacts::default(),
        write_factors: Vec::new(),
        stack: Vec::new(),
        cacheable: true,
        mysql: dialect == Dialect::MySql,
    };
    // The visitor never breaks.
    let _ = st.visit(&mut c);
    let mut f = c.f;
    if f.kinds.is_empty() {
        f.kinds.insert(Kind::Other);
        f.primary = Some(Kind::Other);
    }
    // Every read counts for the statement's row bound.
    for (_, b) in &f.reads {
        match b {
            Some(n) => f.limit = Some(f.limit.map_or(*n, |m| m.max(*n))),
            None => f.no_limit = true,
        }
    }
    f.reads.sort();
    f.reads.dedup();
    dedup(&mut f.tables_read);
    dedup(&mut f.tables_written);
    dedup(&mut f.functions);
    f.columns.sort();
    f.columns.dedup();
    f.settings.sort();
    f.settings.dedup();
    (f, c.cacheable)
}
