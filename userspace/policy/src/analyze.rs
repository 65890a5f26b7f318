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

fn error_facts(reason: String) -> StatementFacts {
    StatementFacts {
        parse_error: Some(reason),
        ..StatementFacts::default()
    }
}

fn only(kinds: &[Kind]) -> StatementFacts {
    StatementFacts {
        kinds: kinds.iter().copied().collect(),
        primary: kinds.first().copied(),
        ..StatementFacts::default()
    }
}

/// Keyword-based recognition of statements `sqlparser` cannot parse.
fn fallback(piece: &str, dialect: Dialect, err: String, cx: Ctx<'_>) -> StatementFacts {
    let words = lexer::leading_words(piece, dialect, 4);
    let w = |i: usize| words.get(i).map_or("", String::as_str);
    match (w(0), w(1)) {
        ("DO", _) => return only(&[Kind::Do]),
        ("ALTER", "SYSTEM") => return only(&[Kind::AlterSystem, Kind::Alter]),
        _ => {}
    }
    if dialect == Dialect::Postgres {
        if let Some(f) = pg_fallback(piece) {
            return f;
        }
    }
    if dialect == Dialect::MySql {
        if w(0) == "LOAD" && w(1) == "DATA" {
            let local = words.iter().any(|x| x == "LOCAL");
            let mut f = only(&[if local {
                Kind::LoadDataLocalInfile
            } else {
                Kind::LoadDataInfile
            }]);
            f.kinds.insert(Kind::Insert);
            if let Some(t) = mysql_load_target(piece) {
                f.tables_written.push(t);
            }
            return f;
        }
        if w(0) == "PREPARE" {
            return mysql_prepare(piece, err, cx);
        }
        if w(0) == "SELECT" || w(0) == "WITH" || piece.trim_start().starts_with('(') {
            if let Some(f) = mysql_outfile(piece) {
                return f;
            }
        }
    }
    error_facts(err)
}

/// Significant tokens (no whitespace/comments) of a piece.
fn sig_tokens(piece: &str) -> Vec<lexer::Tok> {
    lexer::tokens(piece, Dialect::MySql)
        .0
        .into_iter()
        .filter(|t| !matches!(t.kind, TokKind::Space | TokKind::Comment))
        .collect()
}

fn ident_text(piece: &str, t: lexer::Tok) -> Option<String> {
    let s = &piece[t.start..t.end];
    match t.kind {
        TokKind::Word => Some(s.to_lowercase()),
        TokKind::QuotedIdent => Some(s[1..s.len() - 1].replace("``", "`")),
        _ => None,
    }
}

/// `LOAD DATA .. INTO TABLE name`: the target table.
fn mysql_load_target(piece: &str) -> Option<Name> {
    let toks = sig_tokens(piece);
    let pos = toks.windows(2).position(|w| {
        piece[w[0].start..w[0].end].eq_ignore_ascii_case("INTO")
            && piece[w[1].start..w[1].end].eq_ignore_ascii_case("TABLE")
    })?;
    let mut name = Vec::new();
    let mut i = pos + 2;
    while let Some(t) = toks.get(i) {
        name.push(ident_text(piece, *t)?);
        if toks
            .get(i + 1)
            .is_some_and(|d| &piece[d.start..d.end] == ".")
        {
            i += 2;
        } else {
            break;
        }
    }
    (!name.is_empty()).then_some(name)
}

/// MySQL `PREPARE s FROM 'sql'` (the inner statement is analysed and judged)
/// or `PREPARE s FROM @var` (opaque).
fn mysql_prepare(piece: &str, err: String, cx: Ctx<'_>) -> StatementFacts {
    let toks = sig_tokens(piece);
    let texts: Vec<&str> = toks.iter().map(|t| &piece[t.start..t.end]).collect();
    if toks.len() == 4 && texts[2].eq_ignore_ascii_case("FROM") {
        let src = toks[3];
        if src.kind == TokKind::EscStr {
            if let Some(inner) = lexer::mysql_unescape(texts[3]) {
                let inner_analysis = analyze_ctx(
                    &inner,
                    Dialect::MySql,
                    Ctx {
                        depth: cx.depth + 1,
                        ..cx
                    },
                );
                let mut f = only(&[Kind::Prepare]);
                if inner_analysis.statements.len() != 1 {
                    return error_facts(
                        "PREPARE .. FROM must hold exactly one parseable statement".to_owned(),
                    );
                }
                let inner = &inner_analysis.statements[0];
                if inner.parse_error.is_some() {
                    return inner.clone();
                }
                merge(&mut f, inner);
                return f;
            }
        }
        if src.kind == TokKind::Word && texts[3].starts_with('@') {
            return only(&[Kind::Prepare, Kind::DynamicSql]);
        }
    }
    error_facts(err)
}

/// MySQL `SELECT .. INTO OUTFILE|DUMPFILE 'f' ..`: re-parse without the
/// `INTO` clause to learn what is read.
fn mysql_outfile(piece: &str) -> Option<StatementFacts> {
    let toks = sig_tokens(piece);
    let is = |t: &lexer::Tok, w: &str| {
        t.kind == TokKind::Word && piece[t.start..t.end].eq_ignore_ascii_case(w)
    };
    let into = toks
        .windows(2)
        .position(|w| is(&w[0], "INTO") && (is(&w[1], "OUTFILE") || is(&w[1], "DUMPFILE")))?;
    let cut_start = toks[into].start;
    let cut_end = toks[into..]
        .iter()
        .find(|t| is(t, "FROM"))
        .map_or(piece.len(), |t| t.start);
    let rest = format!("{} {}", &piece[..cut_start], &piece[cut_end..]);
    let stmts = parse(&rest, Dialect::MySql).ok()?;
    if stmts.len() != 1 {
        return None;
    }
    let (inner, _) = facts_of(
        &stmts[0],
        Dialect::MySql,
        Ctx {
            depth: 0,
            extra: &[],
        },
    );
    let mut f = only(&[Kind::SelectIntoOutfile]);
    merge(&mut f, &inner);
    Some(f)
}

/// Significant words of a PostgreSQL piece: unquoted words upper-cased,
/// quoted identifiers upper-cased too (GUC and keyword comparisons are
/// case-insensitive), other tokens as `""`.
fn pg_words(piece: &str) -> Vec<String> {
    lexer::tokens(piece, Dialect::Postgres)
        .0
        .into_iter()
        .filter(|t| !matches!(t.kind, TokKind::Space | TokKind::Comment))
        .map(|t| {
            let s = &piece[t.start..t.end];
            match t.kind {
                TokKind::Word => s.to_ascii_uppercase(),
                TokKind::QuotedIdent if s.len() >= 2 => {
                    s[1..s.len() - 1].replace("\"\"", "\"").to_ascii_uppercase()
                }
                _ => String::new(),
            }
        })
        .collect()
}

/// Role options that only set credentials.
fn credential_word(w: &str) -> bool {
    matches!(
        w,
        "PASSWORD" | "ENCRYPTED" | "VALID" | "UNTIL" | "WITH" | "NULL" | "LOGIN" | ""
    )
}

/// PostgreSQL statements `sqlparser` cannot parse but whose meaning the
/// policy must see: `SET role TO x`, `SET LOCAL SESSION AUTHORIZATION ..`,
/// `CREATE USER x WITH PASSWORD ..`, `CREATE EVENT TRIGGER`, function and
/// procedure definitions whose body is not visible.
fn pg_fallback(piece: &str) -> Option<StatementFacts> {
    let w = pg_words(piece);
    let at = |i: usize| w.get(i).map_or("", String::as_str);
    match at(0) {
        "SET" => {
            let mut i = 1;
            while matches!(at(i), "LOCAL" | "SESSION")
                && !(at(i) == "SESSION" && at(i + 1) == "AUTHORIZATION")
            {
                i += 1;
            }
            let setting = match (at(i), at(i + 1)) {
                ("ROLE", _) => "role",
                ("SESSION_AUTHORIZATION", _) | ("SESSION", "AUTHORIZATION") => {
                    "session_authorization"
                }
                _ => return None,
            };
            let mut f = only(&[Kind::Set, Kind::SetRole]);
            f.settings.push(setting.to_owned());
            Some(f)
        }
        "RESET" if matches!(at(1), "ROLE" | "SESSION_AUTHORIZATION" | "SESSION") => {
            let mut f = only(&[Kind::Reset, Kind::SetRole]);
            f.settings.push("role".to_owned());
            Some(f)
        }
        "CREATE" | "ALTER" => {
            let mut i = 1;
            while matches!(
                at(i),
                "OR" | "REPLACE"
                    | "CONSTRAINT"
                    | "EVENT"
                    | "TEMP"
                    | "TEMPORARY"
                    | "TRUSTED"
                    | "PROCEDURAL"
            ) {
                i += 1;
            }
            let create = at(0) == "CREATE";
            match at(i) {
                "USER" | "ROLE" | "GROUP" => {
                    let mut f = if create {
                        only(&[Kind::CreateRole, Kind::Create])
                    } else {
                        only(&[Kind::AlterRole, Kind::Alter])
                    };
                    let opts = &w[(i + 2).min(w.len())..];
                    let has_pw = opts.iter().any(|x| x == "PASSWORD");
                    if !has_pw || !opts.iter().all(|x| credential_word(x)) || at(i) == "GROUP" {
                        f.kinds.insert(Kind::RolePrivilege);
                    }
                    Some(f)
                }
                "TRIGGER" | "RULE" if create => Some(only(&[Kind::CreateTrigger, Kind::Create])),
                "FUNCTION" | "PROCEDURE" if create => {
                    // The body is not visible to dbwarden: opaque code.
                    Some(only(&[
                        Kind::CreateFunction,
                        Kind::Create,
                        Kind::DynamicSql,
                    ]))
                }
                _ => None,
            }
        }
        _ => None,
    }
}

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

impl Collector<'_> {
    fn kind(&mut self, k: Kind) {
        self.f.kinds.insert(k);
        if self.stack.len() == 1 && self.f.primary.is_none() {
            self.f.primary = Some(k);
        }
    }
    fn kinds(&mut self, ks: &[Kind]) {
        for k in ks {
            self.kind(*k);
        }
    }
    fn written(&mut self, n: &ObjectName) {
        self.f.tables_written.push(norm_name(n));
    }
    fn write_factor(&mut self, tf: &TableFactor) {
        if let TableFactor::Table { name, .. } = tf {
            self.written(name);
        }
        self.write_factors.push(std::ptr::from_ref(tf) as usize);
    }
    fn setting(&mut self, n: &ObjectName) {
        let name = norm_name(n);
        if let Some(last) = name.last() {
            // GUC names are case-insensitive, quoted or not.
            let last = last.to_lowercase();
            if name.len() == 1 && matches!(last.as_str(), "role" | "session_authorization") {
                self.kind(Kind::SetRole);
            }
            self.f.settings.push(last);
        }
    }

    /// A `WHERE` that provably keeps every row counts as none.
    fn where_less(&mut self, sel: Option<&Expr>) -> bool {
        match sel {
            None => true,
            Some(e) => {
                let mut lit = false;
                let t = fold::always_true(e, &mut lit);
                if lit {
                    self.cacheable = false;
                }
                t
            }
        }
    }

    fn current_bound(&self) -> Option<u64> {
        self.qstack.last().copied().flatten()
    }

    fn record_read(&mut self, name: Name, bound: Option<u64>) {
        if self.out_stack.last().copied().unwrap_or(false) {
            self.f.reads.push((name, bound));
        }
    }

    fn opaque(&mut self) {
        self.kind(Kind::DynamicSql);
    }

    /// SQL text the server will run (a query-string argument, a function
    /// body): judged as nested statements of this one.
    fn nested_sql(&mut self, text: &str, per_row: bool) {
        self.cacheable = false;
        let a = analyze_ctx(
            text,
            self.dialect,
            Ctx {
                depth: self.cx.depth + 1,
                ..self.cx
            },
        );
        let outer = if per_row {
            self.current_bound()
        } else {
            Some(1)
        };
        for st in &a.statements {
            if st.parse_error.is_some() {
                self.opaque();
                continue;
            }
            let mut st = st.clone();
            // The nested query's rows reach the client through this one.
            for r in &mut st.reads {
                r.1 = times(r.1, outer);
            }
            if !self.out_stack.last().copied().unwrap_or(false) {
                st.reads.clear();
            }
            let reads = std::mem::take(&mut st.reads);
            let (limit, no_limit) = (self.f.limit, self.f.no_limit);
            merge(&mut self.f, &st);
            self.f.limit = limit;
            self.f.no_limit = no_limit;
            self.f.reads.extend(reads);
        }
    }

    fn sql_arg(&mut self, arg: Option<&Expr>, per_row: bool) {
        let Some(e) = arg else {
            self.opaque();
            return;
        };
        let mut lit = false;
        match fold::const_string(e, &mut lit) {
            Some(text) => self.nested_sql(&text, per_row),
            None => self.opaque(),
        }
        if lit {
            self.cacheable = false;
        }
    }

    /// Functions with meaning beyond their name: `set_config` (a `SET`),
    /// and functions that execute a query string.
    fn function_call(&mut self, f: &sqlparser::ast::Function) {
        match &f.args {
            FunctionArguments::List(l) => self.function_call_args(&f.name, &l.args),
            _ => self.function_call_args(&f.name, &[]),
        }
    }

    fn function_call_args(&mut self, fname: &ObjectName, fargs: &[FunctionArg]) {
        let name: Vec<String> = norm_name(fname).iter().map(|p| p.to_lowercase()).collect();
        let Some(last) = name.last().map(String::as_str) else {
            return;
        };
        let args: Vec<&Expr> = {
            fargs
                .iter()
                .filter_map(|a| match a {
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(x))
                    | FunctionArg::Named {
                        arg: FunctionArgExpr::Expr(x),
                        ..
                    }
                    | FunctionArg::ExprNamed {
                        arg: FunctionArgExpr::Expr(x),
                        ..
                    } => Some(x),
                    _ => None,
                })
                .collect()
        };
        let is_bool = |e: &Expr| {
            let mut l = false;
            matches!(fold::eval(e, &mut l), fold::Val::Bool(_))
        };
        match last {
            "set_config" => {
                self.kind(Kind::Set);
                let named = fargs.iter().find_map(|a| match a {
                    FunctionArg::Named {
                        name,
                        arg: FunctionArgExpr::Expr(x),
                        ..
                    } if name.value.eq_ignore_ascii_case("setting_name") => Some(x),
                    _ => None,
                });
                let has_named = fargs.iter().any(|a| !matches!(a, FunctionArg::Unnamed(_)));
                let target = if has_named {
                    named
                } else {
                    args.first().copied()
                };
                let mut lit = false;
                let guc = target.and_then(|e| fold::const_string(e, &mut lit));
                self.cacheable = false;
                match guc {
                    // PostgreSQL compares GUC names ASCII case-insensitively
                    // and exactly (no trimming).
                    Some(g) => {
                        let g = g.to_ascii_lowercase();
                        if g == "role" || g == "session_authorization" {
                            self.kind(Kind::SetRole);
                        }
                        self.f.settings.push(g);
                    }
                    None => {
                        // Name not visible: it may be the role.
                        self.kind(Kind::SetRole);
                        self.f.settings.push("role".to_owned());
                    }
                }
            }
            "query_to_xml" | "query_to_xmlschema" | "query_to_xml_and_xmlschema" | "ts_stat" => {
                self.sql_arg(args.first().copied(), true);
            }
            "dblink" | "dblink_exec" => {
                let i = match args.len() {
                    0 | 1 => 0,
                    2 if is_bool(args[1]) => 0,
                    _ => 1,
                };
                self.sql_arg(args.get(i).copied(), true);
            }
            "dblink_open" => {
                let i = match args.len() {
                    0..=2 => 1,
                    3 if is_bool(args[2]) => 1,
                    _ => 2,
                };
                self.sql_arg(args.get(i).copied(), true);
            }
            "dblink_send_query" => self.sql_arg(args.get(1).copied(), true),
            "table_to_xml" | "table_to_xmlschema" | "table_to_xml_and_xmlschema" => {
                let mut lit = false;
                match args.first().and_then(|e| fold::const_string(e, &mut lit)) {
                    Some(t) => {
                        let t = format!("SELECT * FROM {t}");
                        self.nested_sql(&t, true);
                    }
                    None => self.opaque(),
                }
                self.cacheable = false;
            }
            "schema_to_xml"
            | "schema_to_xmlschema"
            | "schema_to_xml_and_xmlschema"
            | "database_to_xml"
            | "database_to_xmlschema"
            | "database_to_xml_and_xmlschema" => self.opaque(),
            _ => {
                let hit = self.cx.extra.iter().find(|(pat, _)| {
                    pat.len() <= name.len()
                        && pat.iter().rev().zip(name.iter().rev()).all(|(p, n)| p == n)
                });
                if let Some((_, i)) = hit {
                    let i = *i;
                    self.sql_arg(args.get(i).copied(), true);
                }
            }
        }
    }

    /// `CREATE FUNCTION/PROCEDURE` body: `LANGUAGE sql` bodies are judged as
    /// nested statements; `plpgsql` bodies contribute the statements that
    /// can be extracted (`EXECUTE 'literal'` is nested, `EXECUTE expr` is
    /// opaque); other languages are opaque.
    fn function_body(&mut self, language: Option<&str>, body: Option<&CreateFunctionBody>) {
        let text = match body {
            Some(
                CreateFunctionBody::AsBeforeOptions { body: e, .. }
                | CreateFunctionBody::AsAfterOptions(e),
            ) => {
                let mut lit = false;
                fold::const_string(e, &mut lit)
            }
            // RETURN expr / BEGIN ATOMIC: visited as part of the AST.
            Some(_) => return,
            None => None,
        };
        let lang = language.unwrap_or("sql");
        let Some(text) = text else {
            if body.is_some() {
                self.opaque();
            }
            return;
        };
        match lang {
            "sql" => self.nested_sql(&text, false),
            "plpgsql" => self.plpgsql(&text),
            _ => self.opaque(),
        }
    }

    fn plpgsql(&mut self, body: &str) {
        let (pieces, _) = lexer::split(body, Dialect::Postgres);
        for piece in pieces {
            let toks: Vec<lexer::Tok> = lexer::tokens(piece, Dialect::Postgres)
                .0
                .into_iter()
                .filter(|t| !matches!(t.kind, TokKind::Space | TokKind::Comment))
                .collect();
            let word = |t: &lexer::Tok| {
                if t.kind == TokKind::Word {
                    piece[t.start..t.end].to_ascii_uppercase()
                } else {
                    String::new()
                }
            };
            // EXECUTE anywhere in the piece (also RETURN QUERY EXECUTE, FOR ..
            // IN EXECUTE).
            if let Some(i) = toks.iter().position(|t| word(t) == "EXECUTE") {
                let start = toks.get(i + 1).map_or(piece.len(), |t| t.start);
                let end = toks[i + 1..]
                    .iter()
                    .find(|t| matches!(word(t).as_str(), "INTO" | "USING" | "LOOP"))
                    .map_or(piece.len(), |t| t.start);
                let expr_text = &piece[start..end.max(start)];
                let parsed =
                    Parser::parse_sql(&PostgreSqlDialect {}, &format!("SELECT {expr_text}"));
                let expr = match parsed.as_deref() {
                    Ok([Statement::Query(q)]) => match q.body.as_ref() {
                        SetExpr::Select(sel) if sel.projection.len() == 1 => {
                            match &sel.projection[0] {
                                SelectItem::UnnamedExpr(e) => Some(e.clone()),
                                _ => None,
                            }
                        }
                        _ => None,
                    },
                    _ => None,
                };
                match expr {
                    Some(e) => self.sql_arg(Some(&e), false),
                    None => self.opaque(),
                }
                continue;
            }
            // The SQL statement after block keywords.
            let mut i = 0;
            while i < toks.len() {
                let w = word(&toks[i]);
                if matches!(w.as_str(), "BEGIN" | "THEN" | "ELSE" | "LOOP" | "DECLARE") {
                    i += 1;
                    continue;
                }
                if w == "RETURN" && toks.get(i + 1).is_some_and(|t| word(t) == "QUERY") {
                    i += 2;
                    continue;
                }
                if let Some(j) = toks[i..]
                    .iter()
                    .rposition(|t| matches!(word(t).as_str(), "THEN" | "LOOP" | "ELSE"))
                {
                    if j > 0 {
                        i += j;
                        continue;
                    }
                }
                break;
            }
            let Some(first) = toks.get(i) else { continue };
            let w = word(first);
            let sql = &piece[first.start..];
            match w.as_str() {
                "PERFORM" => self.nested_sql(&format!("SELECT {}", &sql[7..]), false),
                "SELECT" | "WITH" | "INSERT" | "UPDATE" | "DELETE" | "MERGE" | "TRUNCATE"
                | "DROP" | "ALTER" | "CREATE" | "GRANT" | "REVOKE" | "COPY" | "SET" | "RESET"
                | "CALL" | "DO" | "LOCK" | "COMMENT" | "REFRESH" | "VACUUM" | "DISCARD"
                | "NOTIFY" | "LISTEN" | "SECURITY" | "IMPORT" | "REASSIGN" => {
                    self.nested_sql(sql, false);
                }
                _ => {}
            }
        }
    }

    /// Records the facts of `st` itself. `output`: its query result goes to
    /// the client (no enclosing statement other than EXPLAIN/PREPARE).
    fn statement(&mut self, st: &Statement, output: bool) {
        match st {
            Statement::Query(q) => {
                self.kind(Kind::Select);
                if output {
                    self.output_limit(q);
                }
            }
            Statement::Insert(i) => {
                self.kind(Kind::Insert);
                if let TableObject::TableName(n) = &i.table {
                    self.written(n);
                }
            }
            Statement::Update(u) => {
                self.kind(Kind::Update);
                self.write_factor(&u.table.relation);
                if self.where_less(u.selection.as_ref()) {
                    self.f.where_less = true;
                }
            }
            Statement::Delete(d) => {
                self.kind(Kind::Delete);
                if d.tables.is_empty() {
                    let from = match &d.from {
                        FromTable::WithFromKeyword(v) | FromTable::WithoutKeyword(v) => v,
                    };
                    for twj in from {
                        self.write_factor(&twj.relation);
                    }
                } else {
                    for n in &d.tables {
                        self.written(n);
                    }
                }
                if self.where_less(d.selection.as_ref()) {
                    self.f.where_less = true;
                }
            }
            Statement::Merge(m) => {
                self.kind(Kind::Merge);
                self.write_factor(&m.table);
            }
            Statement::CreateTable(ct) => {
                self.kinds(&[Kind::CreateTable, Kind::Create]);
                self.written(&ct.name);
            }
            Statement::CreateView(cv) => {
                self.kinds(&[Kind::CreateView, Kind::Create]);
                self.written(&cv.name);
            }
            Statement::CreateIndex(ci) => {
                self.kinds(&[Kind::CreateIndex, Kind::Create]);
                self.written(&ci.table_name);
            }
            Statement::CreateFunction(cf) => {
                self.kinds(&[Kind::CreateFunction, Kind::Create]);
                self.f.language = cf.language.as_ref().map(|l| l.value.to_lowercase());
                // `LANGUAGE 'c'` may be a string literal: do not share this
                // analysis with other literal values.
                self.cacheable = false;
                let lang = self.f.language.clone();
                self.function_body(lang.as_deref(), cf.function_body.as_ref());
            }
            Statement::CreateProcedure { language, .. } => {
                self.kinds(&[Kind::CreateFunction, Kind::Create]);
                self.f.language = language.as_ref().map(|l| l.value.to_lowercase());
                self.cacheable = false;
                if !matches!(self.f.language.as_deref(), None | Some("sql")) {
                    self.opaque();
                }
            }
            Statement::CreateExtension(_) => self.kinds(&[Kind::CreateExtension, Kind::Create]),
            Statement::CreateRole(r) => {
                self.kinds(&[Kind::CreateRole, Kind::Create]);
                let no = |b: Option<bool>| b != Some(true);
                let credential_only = r.password.is_some()
                    && no(r.superuser)
                    && no(r.create_db)
                    && no(r.create_role)
                    && no(r.replication)
                    && no(r.bypassrls)
                    && r.in_role.is_empty()
                    && r.in_group.is_empty()
                    && r.role.is_empty()
                    && r.user.is_empty()
                    && r.admin.is_empty()
                    && r.authorization_owner.is_none();
                if !credential_only {
                    self.kind(Kind::RolePrivilege);
                }
            }
            Statement::CreateUser(_) => {
                self.kinds(&[Kind::CreateRole, Kind::Create, Kind::RolePrivilege]);
            }
            Statement::CreateTrigger(_) | Statement::CreateRule(_) => {
                self.kinds(&[Kind::CreateTrigger, Kind::Create]);
            }
            Statement::AlterTable(at) => {
                self.kinds(&[Kind::AlterTable, Kind::Alter]);
                self.written(&at.name);
                for op in &at.operations {
                    self.alter_op(op);
                }
            }
            Statement::AlterRole { operation, .. } => {
                self.kinds(&[Kind::AlterRole, Kind::Alter]);
                let credential_only = matches!(operation, AlterRoleOperation::WithOptions { options }
                    if options.iter().any(|o| matches!(o, RoleOption::Password(_)))
                        && options.iter().all(|o| matches!(o, RoleOption::Password(_) | RoleOption::ValidUntil(_))));
                if !credential_only {
                    self.kind(Kind::RolePrivilege);
                }
            }
            Statement::AlterUser(_) => {
                self.kinds(&[Kind::AlterRole, Kind::Alter, Kind::RolePrivilege]);
            }
            Statement::Drop {
                names, object_type, ..
            } => {
                self.kind(Kind::Drop);
                if *object_type == ObjectType::Index {
                    self.kind(Kind::DropIndex);
                } else {
                    self.kind(Kind::DropDestructive);
                }
                for n in names {
                    self.written(n);
                }
            }
            Statement::Truncate(t) => {
                self.kind(Kind::Truncate);
                for n in &t.table_names {
                    self.written(&n.name);
                }
            }
            Statement::RenameTable(rs) => {
                self.kind(Kind::Rename);
                for r in rs {
                    self.written(&r.old_name);
                    self.written(&r.new_name);
                }
            }
            Statement::Comment { .. } => self.kind(Kind::Comment),
            Statement::Grant(_)
            | Statement::GrantRole(_)
            | Statement::AlterDefaultPrivileges(_) => {
                self.kind(Kind::Grant);
            }
            Statement::Revoke(_) | Statement::RevokeRole(_) | Statement::Deny(_) => {
                self.kind(Kind::Revoke);
            }
            Statement::Copy {
                source, to, target, ..
            } => {
                if self.stack.len() == 1 {
                    // Options are literals: the normalised text would share one analysis
                    // between `DELIMITER ','` and `DELIMITER ';'`.
                    self.f.copy_out = crate::copy::copy_out(st);
                    self.cacheable = false;
                }
                let k = match (target, *to) {
                    (CopyTarget::Stdout, _) => Kind::CopyToStdout,
                    (CopyTarget::Stdin, _) => Kind::CopyFromStdin,
                    (CopyTarget::File { .. }, true) => Kind::CopyToFile,
                    (CopyTarget::File { .. }, false) => Kind::CopyFromFile,
                    (CopyTarget::Program { .. }, true) => Kind::CopyToProgram,
                    (CopyTarget::Program { .. }, false) => Kind::CopyFromProgram,
                };
                self.kind(k);
                if let CopySource::Table {
                    table_name,
                    columns,
                } = source
                {
                    if *to {
                        self.f.tables_read.push(norm_name(table_name));
                        if columns.is_empty() {
                            self.f.wildcard = true;
                        }
                        for c in columns {
                            self.f
                                .columns
                                .push(norm_ident(&c.value, c.quote_style.is_some()));
                        }
                    } else {
                        self.written(table_name);
                    }
                }
            }
            Statement::LoadData {
                local, table_name, ..
            } => {
                self.kind(if *local {
                    Kind::LoadDataLocalInfile
                } else {
                    Kind::LoadDataInfile
                });
                self.kind(Kind::Insert);
                self.written(table_name);
            }
            Statement::Set(s) => self.set(s),
            Statement::Reset(r) => {
                self.kind(Kind::Reset);
                match &r.reset {
                    Reset::SessionAuthorization => {
                        self.kind(Kind::SetRole);
                        self.f.settings.push("session_authorization".to_owned());
                    }
                    Reset::ConfigurationParameter(n) => self.setting(n),
                    Reset::ALL => self.f.settings.push("all".to_owned()),
                }
            }
            Statement::Use(_) => self.kind(Kind::Use),
            Statement::ExplainTable { .. } => self.kind(Kind::Show),
            Statement::Call(f) => {
                self.kind(Kind::Call);
                self.f.functions.push(norm_name(&f.name));
            }
            Statement::Execute { immediate, .. } => {
                self.kind(Kind::Execute);
                if *immediate {
                    self.kind(Kind::DynamicSql);
                }
            }
            Statement::Prepare { .. } => self.kind(Kind::Prepare),
            Statement::Deallocate { .. } => self.kind(Kind::Deallocate),
            Statement::StartTransaction { .. } => self.kind(Kind::Begin),
            Statement::Commit { .. } => self.kind(Kind::Commit),
            Statement::Rollback { .. } => self.kind(Kind::Rollback),
            Statement::Savepoint { .. } | Statement::ReleaseSavepoint { .. } => {
                self.kind(Kind::Savepoint);
            }
            Statement::Explain { analyze, .. } => {
                self.kind(Kind::Explain);
                if *analyze {
                    self.kind(Kind::ExplainAnalyze);
                }
            }
            Statement::Lock(_) | Statement::LockTables { .. } | Statement::UnlockTables => {
                self.kind(Kind::Lock);
            }
            Statement::Vacuum(_)
            | Statement::Analyze(_)
            | Statement::OptimizeTable { .. }
            | Statement::RefreshMaterializedView(_) => self.kind(Kind::Maintenance),
            Statement::LISTEN { .. } | Statement::UNLISTEN { .. } => self.kind(Kind::Listen),
            Statement::NOTIFY { .. } => self.kind(Kind::Notify),
            Statement::Declare { stmts, .. } => {
                self.kind(Kind::Cursor);
                // A cursor's rows reach the client through FETCH: judge its
                // query like a SELECT (kind and row limit).
                for d in stmts {
                    if let Some(q) = &d.for_query {
                        self.kind(Kind::Select);
                        if output {
                            self.output_limit(q);
                        }
                    }
                }
            }
            Statement::Fetch { .. } | Statement::Close { .. } => self.kind(Kind::Cursor),
            Statement::Discard { object_type } => {
                self.kind(Kind::Discard);
                // DISCARD ALL includes SET SESSION AUTHORIZATION DEFAULT.
                if matches!(object_type, sqlparser::ast::DiscardObject::ALL) {
                    self.kind(Kind::SetRole);
                    self.f.settings.push("session_authorization".to_owned());
                    // ... and RESET ALL.
                    self.f.settings.push("all".to_owned());
                }
            }
            other => self.by_variant_name(other),
        }
    }

    /// Records the row limit of a query whose rows go to the client.
    fn output_limit(&mut self, q: &Query) {
        match query_limit(q) {
            Some(n) => self.f.limit = Some(self.f.limit.map_or(n, |m| m.max(n))),
            None => self.f.no_limit = true,
        }
    }

    /// `TABLE name` (a query body that is not a `TableFactor`), also inside
    /// set operations.
    fn set_expr_tables(&mut self, e: &SetExpr, bound: Option<u64>) {
        match e {
            SetExpr::Table(t) => {
                if let Some(name) = &t.table_name {
                    let mut n = Vec::new();
                    if let Some(schema) = &t.schema_name {
                        n.push(norm_ident(&schema.value, schema.quote_style.is_some()));
                    }
                    n.push(norm_ident(&name.value, name.quote_style.is_some()));
                    self.record_read(n.clone(), bound);
                    self.f.tables_read.push(n);
                    self.f.wildcard = true;
                }
            }
            SetExpr::SetOperation { left, right, .. } => {
                self.set_expr_tables(left, bound);
                self.set_expr_tables(right, bound);
            }
            _ => {}
        }
    }

    /// Classifies the long tail of statements by their variant name
    /// (`CreateSchema`, `AlterIndex`, `DropFunction`, `ShowTables`, ...).
    fn by_variant_name(&mut self, st: &Statement) {
        let dbg = format!("{st:?}");
        let name: String = dbg
            .chars()
            .take_while(char::is_ascii_alphanumeric)
            .collect();
        let k = if name.starts_with("Create") {
            Kind::Create
        } else if name.starts_with("Alter") {
            Kind::Alter
        } else if name.starts_with("Drop") {
            self.kind(Kind::DropDestructive);
            Kind::Drop
        } else if name.starts_with("Show") {
            Kind::Show
        } else {
            Kind::Other
        };
        self.kind(k);
    }

    fn alter_op(&mut self, op: &AlterTableOperation) {
        let dbg = format!("{op:?}");
        if dbg.starts_with("Drop") {
            self.kind(Kind::AlterDrop);
        } else if dbg.starts_with("Rename") {
            self.kind(Kind::Rename);
        }
    }

    /// `SET client_encoding` / `SET NAMES` to an encoding whose characters can end in a quote
    /// or backslash byte ([`crate::encoding`]) is recorded for the engine, which refuses it
    /// unless the policy allows it; a value dbwarden cannot read is refused here.
    fn client_encoding(&mut self, value: Option<&Expr>) {
        let name = match value {
            Some(Expr::Identifier(i)) => Some(i.value.clone()),
            Some(e) => {
                let mut lit = false;
                fold::const_string(e, &mut lit)
            }
            None => None,
        };
        match name {
            Some(n) if !crate::encoding::unsafe_client_encoding(&n) => {}
            // Judged by the engine: the policy may allow it.
            Some(n) => self.f.unsafe_encoding = Some(n),
            None => {
                self.f.parse_error = Some(
                    "dbwarden: SET client_encoding to a value dbwarden cannot read is refused"
                        .to_owned(),
                )
            }
        }
        self.cacheable = false;
    }

    fn set(&mut self, s: &Set) {
        self.kind(Kind::Set);
        match s {
            Set::SingleAssignment {
                variable, values, ..
            } => {
                self.setting(variable);
                // GUC names are case-insensitive, quoted or not (as in `setting`).
                let name = norm_name(variable);
                let last = name.last().map(|l| l.to_lowercase());
                if name.len() == 1 && matches!(last.as_deref(), Some("client_encoding" | "names")) {
                    self.client_encoding(values.first());
                }
            }
            Set::SetNames { charset_name, .. } => {
                self.f.settings.push("names".to_owned());
                self.client_encoding(Some(&Expr::Identifier(charset_name.clone())));
            }
            Set::ParenthesizedAssignments { variables, .. } => {
                for v in variables {
                    self.setting(v);
                }
            }
            Set::MultipleAssignments { assignments } => {
                for a in assignments {
                    self.setting(&a.name);
                }
            }
            Set::SetRole { .. } => {
                self.kind(Kind::SetRole);
                self.f.settings.push("role".to_owned());
            }
            Set::SetSessionAuthorization(_) => {
                self.kind(Kind::SetRole);
                self.f.settings.push("session_authorization".to_owned());
            }
            other => {
                // SET TIME ZONE, SET NAMES, SET TRANSACTION, ...: record the
                // variant as a snake_case setting name.
                let dbg = format!("{other:?}");
                let variant: String = dbg
                    .chars()
                    .take_while(char::is_ascii_alphanumeric)
                    .collect();
                let mut name = String::new();
                for (i, c) in variant.trim_start_matches("Set").chars().enumerate() {
                    if c.is_ascii_uppercase() && i > 0 {
                        name.push('_');
                    }
                    name.push(c.to_ascii_lowercase());
                }
                self.f.settings.push(name);
            }
        }
    }
}

impl Visitor for Collector<'_> {
    type Break = ();

    fn pre_visit_statement(&mut self, st: &Statement) -> ControlFlow<()> {
        let output = self.stack.iter().all(|b| *b);
        let passes = matches!(st, Statement::Explain { .. } | Statement::Prepare { .. });
        self.stack.push(passes);
        self.out_stack
            .push(output && matches!(st, Statement::Query(_) | Statement::Declare { .. }));
        self.statement(st, output);
        ControlFlow::Continue(())
    }

    fn post_visit_statement(&mut self, _st: &Statement) -> ControlFlow<()> {
        self.stack.pop();
        self.out_stack.pop();
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
        let addr = std::ptr::from_ref(q) as usize;
        let role = self
            .qroles
            .iter()
            .rposition(|(a, _)| *a == addr)
            .map(|i| self.qroles.swap_remove(i).1);
        let own = query_limit(q);
        let outer = self.qstack.last().copied();
        let bound = match (outer, role) {
            (None, _) | (Some(_), Some(QRole::Once)) => own,
            (Some(o), Some(QRole::PassThrough)) => match (own, o) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
            // Expression subqueries, ARRAY(..), LATERAL: once per outer row.
            (Some(o), None) => times(own, o),
        };
        self.qstack.push(bound);
        // Children whose rows pass through this query's LIMIT.
        fn pass(e: &SetExpr, out: &mut Vec<(usize, QRole)>) {
            match e {
                SetExpr::Query(inner) => {
                    out.push((std::ptr::from_ref(&**inner) as usize, QRole::PassThrough))
                }
                SetExpr::SetOperation { left, right, .. } => {
                    pass(left, out);
                    pass(right, out);
                }
                _ => {}
            }
        }
        pass(&q.body, &mut self.qroles);
        if let Some(w) = &q.with {
            for c in &w.cte_tables {
                self.qroles
                    .push((std::ptr::from_ref(&*c.query) as usize, QRole::Once));
            }
        }
        self.set_expr_tables(&q.body, bound);
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _q: &Query) -> ControlFlow<()> {
        self.qstack.pop();
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, s: &Select) -> ControlFlow<()> {
        if let Some(into) = &s.into {
            self.kinds(&[Kind::SelectInto, Kind::Create, Kind::CreateTable]);
            for t in &into.targets {
                match t {
                    Expr::Identifier(i) => self
                        .f
                        .tables_written
                        .push(vec![norm_ident(&i.value, i.quote_style.is_some())]),
                    Expr::CompoundIdentifier(parts) => self.f.tables_written.push(
                        parts
                            .iter()
                            .map(|i| norm_ident(&i.value, i.quote_style.is_some()))
                            .collect(),
                    ),
                    _ => {}
                }
            }
        }
        if s.projection.iter().any(|p| {
            matches!(
                p,
                SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)
            )
        }) {
            self.f.wildcard = true;
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, tf: &TableFactor) -> ControlFlow<()> {
        match tf {
            TableFactor::Table {
                name,
                args: Some(a),
                ..
            } => {
                self.f.functions.push(norm_name(name));
                self.function_call_args(name, &a.args);
            }
            TableFactor::Function { name, args, .. } => {
                self.f.functions.push(norm_name(name));
                self.function_call_args(name, args);
            }
            TableFactor::Table { name, .. } => {
                let addr = std::ptr::from_ref(tf) as usize;
                if !self.write_factors.contains(&addr) {
                    let n = norm_name(name);
                    let b = self.current_bound();
                    self.record_read(n.clone(), b);
                    self.f.tables_read.push(n);
                }
            }
            TableFactor::Derived {
                lateral: false,
                subquery,
                ..
            } => {
                self.qroles
                    .push((std::ptr::from_ref(&**subquery) as usize, QRole::Once));
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
        match e {
            Expr::Function(f) => {
                self.f.functions.push(norm_name(&f.name));
                self.function_call(f);
            }
            // MySQL `@user_variables` are not columns.
            Expr::Identifier(i) if !(self.mysql && i.value.starts_with('@')) => {
                self.f
                    .columns
                    .push(norm_ident(&i.value, i.quote_style.is_some()));
            }
            Expr::CompoundIdentifier(parts) => {
                if let Some(i) = parts.last() {
                    self.f
                        .columns
                        .push(norm_ident(&i.value, i.quote_style.is_some()));
                }
            }
            Expr::QualifiedWildcard(..) | Expr::Wildcard(..) => self.f.wildcard = true,
            _ => {}
        }
        ControlFlow::Continue(())
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn one(sql: &str) -> StatementFacts {
        let a = analyze(sql, Dialect::Postgres);
        assert_eq!(a.statements.len(), 1, "{sql}: {a:?}");
        a.statements.into_iter().next().unwrap()
    }

    fn names(v: &[Name]) -> Vec<String> {
        v.iter().map(|n| n.join(".")).collect()
    }

    #[test]
    fn select_reads_and_functions() {
        let f = one("SELECT upper(c.pan), count(*) FROM public.Cards c JOIN \"Orders\" o ON o.id = c.id WHERE c.x IN (SELECT lower(y) FROM z)");
        assert_eq!(f.primary, Some(Kind::Select));
        assert_eq!(names(&f.tables_read), vec!["Orders", "public.cards", "z"]);
        assert!(f.tables_written.is_empty());
        assert_eq!(names(&f.functions), vec!["count", "lower", "upper"]);
        assert!(f.columns.contains(&"pan".to_owned()));
        assert!(f.no_limit);
        assert!(!one("SELECT * FROM t LIMIT 10").no_limit);
        assert_eq!(one("SELECT * FROM t LIMIT 10").limit, Some(10));
        assert!(one("SELECT * FROM t LIMIT (SELECT 5)").no_limit);
        assert!(one("SELECT * FROM t LIMIT ALL").no_limit);
        assert!(one("SELECT * FROM t LIMIT $1").no_limit);
        assert!(!one("SELECT * FROM t FETCH FIRST 5 ROWS ONLY").no_limit);
    }

    #[test]
    fn writes_are_not_reads() {
        let f = one("UPDATE cards SET x = 1 FROM other WHERE cards.id = other.id");
        assert_eq!(names(&f.tables_written), vec!["cards"]);
        assert_eq!(names(&f.tables_read), vec!["other"]);
        assert!(!f.where_less);
        let f = one("DELETE FROM t");
        assert!(f.where_less);
        assert_eq!(names(&f.tables_written), vec!["t"]);
        assert!(f.tables_read.is_empty());
        let f = one("INSERT INTO t SELECT * FROM t");
        assert_eq!(names(&f.tables_written), vec!["t"]);
        assert_eq!(names(&f.tables_read), vec!["t"]);
    }

    #[test]
    fn nested_dml_is_seen() {
        let f = one("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d");
        assert!(f.kinds.contains(Kind::Delete) && f.kinds.contains(Kind::Select));
        assert!(f.where_less);
        let f = one("EXPLAIN ANALYZE DELETE FROM t");
        assert!(f.kinds.contains(Kind::ExplainAnalyze) && f.kinds.contains(Kind::Delete));
        let f = one("PREPARE x AS DELETE FROM t");
        assert!(f.kinds.contains(Kind::Prepare) && f.kinds.contains(Kind::Delete));
        let f = one("CREATE TABLE x AS SELECT * FROM cards");
        assert_eq!(names(&f.tables_read), vec!["cards"]);
        assert_eq!(names(&f.tables_written), vec!["x"]);
        let f = one("SELECT a INTO newt FROM cards");
        assert!(f.kinds.contains(Kind::SelectInto));
        assert_eq!(names(&f.tables_written), vec!["newt"]);
    }

    #[test]
    fn functions_everywhere() {
        let f = one("SELECT * FROM pg_read_file('/etc/passwd')");
        assert_eq!(names(&f.functions), vec!["pg_read_file"]);
        assert!(f.tables_read.is_empty());
        let f =
            one("SELECT 1 FROM t WHERE x = (SELECT max(pg_catalog.lo_export(1, '/tmp/x')) FROM u)");
        assert!(names(&f.functions).contains(&"pg_catalog.lo_export".to_owned()));
        let f = one("SELECT * FROM t, LATERAL dblink('c', 'q') AS r(a int)");
        assert!(names(&f.functions).contains(&"dblink".to_owned()));
    }

    #[test]
    fn table_statement_and_cursors() {
        // A bare `TABLE cards` does not parse (denied by on_parse_error);
        // in parentheses and set operations it does.
        assert!(one("TABLE cards").parse_error.is_some());
        let f = one("(TABLE cards)");
        assert_eq!(names(&f.tables_read), vec!["cards"]);
        assert!(f.no_limit && f.wildcard);
        let f = one("SELECT 1 UNION TABLE billing.cards");
        assert_eq!(names(&f.tables_read), vec!["billing.cards"]);
        let f = one("DECLARE c CURSOR FOR SELECT * FROM cards");
        assert!(f.kinds.contains(Kind::Select) && f.kinds.contains(Kind::Cursor));
        assert_eq!(names(&f.tables_read), vec!["cards"]);
        assert!(f.no_limit);
    }

    #[test]
    fn copy_and_fallbacks() {
        let f = one("COPY (SELECT * FROM cards) TO PROGRAM 'curl x'");
        assert!(f.kinds.contains(Kind::CopyToProgram));
        assert_eq!(names(&f.tables_read), vec!["cards"]);
        assert!(one("COPY cards TO STDOUT")
            .kinds
            .contains(Kind::CopyToStdout));
        assert!(one("COPY cards FROM '/etc/passwd'")
            .kinds
            .contains(Kind::CopyFromFile));
        assert!(one("DO $$ BEGIN PERFORM 1; END $$")
            .kinds
            .contains(Kind::Do));
        assert!(one("alter system set x = 1")
            .kinds
            .contains(Kind::AlterSystem));
        let f = one("SELECT 1 FROM");
        assert!(f.parse_error.is_some());
    }

    #[test]
    fn parse_errors_do_not_echo_sql() {
        let f = one("SELECT 4111111111111111 4111111111111111 FROM");
        let reason = f.parse_error.unwrap();
        assert!(!reason.contains("4111"), "{reason}");
        assert!(reason.contains("Line"), "{reason}");
    }

    #[test]
    fn mysql_fallbacks() {
        let m = |s: &str| {
            let a = analyze(s, Dialect::MySql);
            assert_eq!(a.statements.len(), 1, "{s}: {a:?}");
            a.statements.into_iter().next().unwrap()
        };
        let f = m("LOAD DATA LOCAL INFILE '/etc/passwd' INTO TABLE db.t");
        assert!(f.kinds.contains(Kind::LoadDataLocalInfile));
        assert_eq!(names(&f.tables_written), vec!["db.t"]);
        let f = m("SELECT * FROM cards INTO OUTFILE '/tmp/x'");
        assert!(f.kinds.contains(Kind::SelectIntoOutfile));
        assert_eq!(names(&f.tables_read), vec!["cards"]);
        let f = m("SELECT pan INTO DUMPFILE '/tmp/x' FROM `Cards`");
        assert_eq!(names(&f.tables_read), vec!["Cards"]);
        let f = m("PREPARE s FROM 'DELETE FROM t'");
        assert!(f.kinds.contains(Kind::Delete) && f.where_less);
        let f = m("PREPARE s FROM @q");
        assert!(f.kinds.contains(Kind::DynamicSql));
        let f = m("SELECT 1 /*M!100100 ; DROP TABLE t */");
        assert!(f.parse_error.is_some());
        let f = m("SELECT 1 /*!50000 , pg_sleep(1) */ FROM t");
        assert!(names(&f.functions).contains(&"pg_sleep".to_owned()));
    }

    #[test]
    fn multi_statement_with_unparseable_piece() {
        let a = analyze(
            "SELECT 1; DO $$ BEGIN END $$; DELETE FROM t",
            Dialect::Postgres,
        );
        assert_eq!(a.statements.len(), 3);
        assert!(!a.cacheable);
        assert!(a.statements[1].kinds.contains(Kind::Do));
        assert!(a.statements[2].where_less);
    }
}
