//! Statements `sqlparser` cannot parse: the lexer splits the text, and a keyword-based
//! fallback recognises what a policy must see (`DO`, `ALTER SYSTEM`, MySQL `LOAD DATA`,
//! `SELECT .. INTO OUTFILE`, `PREPARE .. FROM`); anything else is a parse error.

use super::*;

pub(super) fn error_facts(reason: String) -> StatementFacts {
    StatementFacts {
        parse_error: Some(reason),
        ..StatementFacts::default()
    }
}

pub(super) fn only(kinds: &[Kind]) -> StatementFacts {
    StatementFacts {
        kinds: kinds.iter().copied().collect(),
        primary: kinds.first().copied(),
        ..StatementFacts::default()
    }
}

/// Keyword-based recognition of statements `sqlparser` cannot parse.
pub(super) fn fallback(piece: &str, dialect: Dialect, err: String, cx: Ctx<'_>) -> StatementFacts {
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
pub(super) fn sig_tokens(piece: &str) -> Vec<lexer::Tok> {
    lexer::tokens(piece, Dialect::MySql)
        .0
        .into_iter()
        .filter(|t| !matches!(t.kind, TokKind::Space | TokKind::Comment))
        .collect()
}

pub(super) fn ident_text(piece: &str, t: lexer::Tok) -> Option<String> {
    let s = &piece[t.start..t.end];
    match t.kind {
        TokKind::Word => Some(s.to_lowercase()),
        TokKind::QuotedIdent => Some(s[1..s.len() - 1].replace("``", "`")),
        _ => None,
    }
}

/// `LOAD DATA .. INTO TABLE name`: the target table.
pub(super) fn mysql_load_target(piece: &str) -> Option<Name> {
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
pub(super) fn mysql_prepare(piece: &str, err: String, cx: Ctx<'_>) -> StatementFacts {
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
pub(super) fn mysql_outfile(piece: &str) -> Option<StatementFacts> {
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
pub(super) fn pg_words(piece: &str) -> Vec<String> {
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
pub(super) fn credential_word(w: &str) -> bool {
    matches!(
        w,
        "PASSWORD" | "ENCRYPTED" | "VALID" | "UNTIL" | "WITH" | "NULL" | "LOGIN" | ""
    )
}

/// PostgreSQL statements `sqlparser` cannot parse but whose meaning the
/// policy must see: `SET role TO x`, `SET LOCAL SESSION AUTHORIZATION ..`,
/// `CREATE USER x WITH PASSWORD ..`, `CREATE EVENT TRIGGER`, function and
/// procedure definitions whose body is not visible.
pub(super) fn pg_fallback(piece: &str) -> Option<StatementFacts> {
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
