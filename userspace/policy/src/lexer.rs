//! Hand-written single-pass SQL lexer used for three cheap jobs that must not
//! need a full parse:
//!
//! * the **cache key** ([`normalize`]): the statement text with every literal
//!   (string, dollar-quoted string, number) replaced by a placeholder, so
//!   queries that differ only in their literal values share one cached
//!   analysis;
//! * **statement splitting** ([`split`]) on top-level `;`, used when
//!   `sqlparser` rejects a multi-statement string so that every statement can
//!   still be judged on its own;
//! * **leading keywords** ([`tokens`]) for the handful of statements that
//!   `sqlparser` does not understand (`DO`, `ALTER SYSTEM`, `LOAD DATA`, ...).
//!
//! The lexer is deliberately conservative: whenever it meets something it is
//! not sure about (an unterminated quote or comment, a NUL byte, a backslash in
//! a standard string, a number glued to an identifier, MySQL executable
//! comments) it reports the input as *uncacheable*, and the caller analyses
//! the statement without the cache. Comments and whitespace are kept verbatim
//! in the key: two texts share a key only if they are identical outside the
//! literal contents.

use crate::Dialect;

/// Kind of a lexical token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokKind {
    /// Identifier or keyword (unquoted).
    Word,
    /// `"quoted"` (Postgres) or `` `quoted` `` (MySQL) identifier.
    QuotedIdent,
    /// String literal without backslash escapes (`'..'`, MySQL `"..."` too).
    Str,
    /// String literal with backslash escapes (`E'..'` in Postgres, every
    /// string in MySQL).
    EscStr,
    /// Dollar-quoted string (`$tag$ .. $tag$`).
    DollarStr,
    /// Numeric literal.
    Number,
    /// Positional parameter `$1`.
    Param,
    /// Comment (`-- ..`, `# ..`, `/* .. */`).
    Comment,
    /// Whitespace run.
    Space,
    /// Top-level `;`.
    Semi,
    /// Any other single character (operators, punctuation).
    Punct,
}

/// One token: kind and byte range in the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tok {
    pub kind: TokKind,
    pub start: usize,
    pub end: usize,
}

/// Why the lexer gave up (the statement is then analysed uncached).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LexIssue {
    /// Unterminated string, identifier or comment.
    Unterminated,
    /// Something the lexer is not sure about (NUL byte, odd number, ...).
    Unsure,
    /// MariaDB executable comment `/*M! .. */`: its content runs on MariaDB
    /// servers but `sqlparser` treats it as a comment. The analyzer refuses it.
    MariaDbExecComment,
}

/// Streaming scanner over a SQL text.
pub(crate) struct Scanner<'a> {
    src: &'a [u8],
    pos: usize,
    mysql: bool,
    /// PostgreSQL with `standard_conforming_strings = off`: a backslash escapes the next byte
    /// inside `'..'` too.
    pg_backslash: bool,
    /// First problem met, if any. Scanning goes on where possible.
    pub issue: Option<LexIssue>,
}

fn is_word_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

fn is_word_cont(b: u8, mysql: bool) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80 || (mysql && b == b'@')
}

impl<'a> Scanner<'a> {
    /// Starts scanning `src` with the lexical rules of `dialect`.
    pub(crate) fn new(src: &'a str, dialect: Dialect) -> Self {
        Scanner {
            src: src.as_bytes(),
            pos: 0,
            mysql: matches!(dialect, Dialect::MySql),
            pg_backslash: false,
            issue: None,
        }
    }

    fn flag(&mut self, issue: LexIssue) {
        // Keep the most serious issue: MariaDB comments must always surface.
        match (self.issue, issue) {
            (Some(LexIssue::MariaDbExecComment), _) => {}
            (None, i) | (Some(_), i @ LexIssue::MariaDbExecComment) => self.issue = Some(i),
            (Some(_), _) => {}
        }
    }

    fn peek(&self, off: usize) -> Option<u8> {
        self.src.get(self.pos + off).copied()
    }

    /// Scans a quoted run that started at `self.pos` (the opening quote).
    /// `backslash`: backslash escapes the next byte. Doubled quotes escape.
    fn quoted(&mut self, q: u8, backslash: bool) -> bool {
        let mut i = self.pos + 1;
        while i < self.src.len() {
            let b = self.src[i];
            if backslash && b == b'\\' {
                i += 2;
                continue;
            }
            if b == q {
                if self.src.get(i + 1) == Some(&q) {
                    i += 2;
                    continue;
                }
                self.pos = i + 1;
                return true;
            }
            i += 1;
        }
        self.pos = self.src.len();
        self.flag(LexIssue::Unterminated);
        false
    }

    fn block_comment(&mut self) {
        // self.pos at '/', next is '*'
        let body = self.pos + 2;
        if self.mysql {
            match self.src.get(body) {
                Some(b'!') | Some(b'+') => self.flag(LexIssue::Unsure),
                Some(b'M') if self.src.get(body + 1) == Some(&b'!') => {
                    self.flag(LexIssue::MariaDbExecComment)
                }
                _ => {}
            }
        }
        let nested = !self.mysql;
        let mut depth = 1usize;
        let mut i = body;
        while i + 1 < self.src.len() {
            let (a, b) = (self.src[i], self.src[i + 1]);
            if a == b'*' && b == b'/' {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    self.pos = i;
                    return;
                }
            } else if nested && a == b'/' && b == b'*' {
                depth += 1;
                i += 2;
            } else {
                i += 1;
            }
        }
        self.pos = self.src.len();
        self.flag(LexIssue::Unterminated);
    }

    fn line_comment(&mut self) {
        while self.pos < self.src.len() && self.src[self.pos] != b'\n' {
            self.pos += 1;
        }
    }

    fn number(&mut self) {
        let s = self.src;
        let mut i = self.pos;
        while i < s.len() && s[i].is_ascii_digit() {
            i += 1;
        }
        if i < s.len() && s[i] == b'.' {
            i += 1;
            while i < s.len() && s[i].is_ascii_digit() {
                i += 1;
            }
        }
        if i < s.len() && (s[i] == b'e' || s[i] == b'E') {
            let mut j = i + 1;
            if j < s.len() && (s[j] == b'+' || s[j] == b'-') {
                j += 1;
            }
            if j < s.len() && s[j].is_ascii_digit() {
                while j < s.len() && s[j].is_ascii_digit() {
                    j += 1;
                }
                i = j;
            }
        }
        self.pos = i;
        // A number glued to a word, a dot or another number (`0x1F`, `1_000`,
        // `1.2.3`) is lexed differently by different parsers: do not cache.
        if let Some(&b) = s.get(i) {
            if is_word_cont(b, self.mysql) || b == b'.' || b == b'\'' || b == b'"' {
                self.flag(LexIssue::Unsure);
            }
        }
    }

    /// Tries to scan a dollar quote at `self.pos` (`$`). Returns false if the
    /// `$` does not open a dollar quote.
    fn dollar(&mut self) -> bool {
        let s = self.src;
        let mut i = self.pos + 1;
        if i < s.len() && is_word_start(s[i]) {
            while i < s.len() && (s[i].is_ascii_alphanumeric() || s[i] == b'_' || s[i] >= 0x80) {
                i += 1;
            }
        }
        if s.get(i) != Some(&b'$') {
            return false;
        }
        let tag = &s[self.pos..=i];
        let body = i + 1;
        let mut j = body;
        while j + tag.len() <= s.len() {
            if s[j] == b'$' && &s[j..j + tag.len()] == tag {
                self.pos = j + tag.len();
                return true;
            }
            j += 1;
        }
        self.pos = s.len();
        self.flag(LexIssue::Unterminated);
        true
    }

    /// Returns the next token, or `None` at the end of input.
    pub(crate) fn next_tok(&mut self) -> Option<Tok> {
        let s = self.src;
        let start = self.pos;
        let b = *s.get(start)?;
        let kind = match b {
            0 => {
                self.flag(LexIssue::Unsure);
                self.pos += 1;
                TokKind::Punct
            }
            b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c => {
                while self.pos < s.len()
                    && matches!(s[self.pos], b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
                {
                    self.pos += 1;
                }
                TokKind::Space
            }
            b';' => {
                self.pos += 1;
                TokKind::Semi
            }
            b'\'' => {
                if self.mysql {
                    self.quoted(b'\'', true);
                    TokKind::EscStr
                } else {
                    self.quoted(b'\'', self.pg_backslash);
                    if s[start..self.pos].contains(&b'\\') {
                        // Meaning depends on standard_conforming_strings.
                        self.flag(LexIssue::Unsure);
                    }
                    TokKind::Str
                }
            }
            b'"' => {
                if self.mysql {
                    self.quoted(b'"', true);
                    TokKind::EscStr
                } else {
                    self.quoted(b'"', false);
                    TokKind::QuotedIdent
                }
            }
            b'`' if self.mysql => {
                self.quoted(b'`', false);
                TokKind::QuotedIdent
            }
            b'-' if self.peek(1) == Some(b'-') => {
                if self.mysql
                    && !matches!(
                        self.peek(2),
                        None | Some(b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
                    )
                {
                    // MySQL: `--1` is minus minus one, not a comment.
                    self.pos += 1;
                    TokKind::Punct
                } else {
                    self.line_comment();
                    TokKind::Comment
                }
            }
            b'#' if self.mysql => {
                self.line_comment();
                TokKind::Comment
            }
            b'/' if self.peek(1) == Some(b'*') => {
                self.block_comment();
                TokKind::Comment
            }
            b'$' if !self.mysql => {
                if matches!(self.peek(1), Some(d) if d.is_ascii_digit()) {
                    self.pos += 1;
                    while self.pos < s.len() && s[self.pos].is_ascii_digit() {
                        self.pos += 1;
                    }
                    TokKind::Param
                } else if self.dollar() {
                    TokKind::DollarStr
                } else {
                    self.pos += 1;
                    TokKind::Punct
                }
            }
            b'0'..=b'9' => {
                self.number();
                TokKind::Number
            }
            b'.' if matches!(self.peek(1), Some(d) if d.is_ascii_digit()) => {
                self.number();
                TokKind::Number
            }
            b if is_word_start(b) => {
                // Prefixed strings: E'..' (escapes), U&'..', and B/X/N'..'.
                if !self.mysql && (b == b'e' || b == b'E') && self.peek(1) == Some(b'\'') {
                    self.pos += 1;
                    self.quoted(b'\'', true);
                    return Some(Tok {
                        kind: TokKind::EscStr,
                        start,
                        end: self.pos,
                    });
                }
                if !self.mysql && (b == b'u' || b == b'U') && self.peek(1) == Some(b'&') {
                    // Unicode escapes: rare, do not try to be clever.
                    self.flag(LexIssue::Unsure);
                }
                while self.pos < s.len() && is_word_cont(s[self.pos], self.mysql) {
                    self.pos += 1;
                }
                TokKind::Word
            }
            b'@' if self.mysql => {
                self.pos += 1;
                while self.pos < s.len() && (is_word_cont(s[self.pos], true) || s[self.pos] == b'.')
                {
                    self.pos += 1;
                }
                TokKind::Word
            }
            _ => {
                // Step over one whole UTF-8 character.
                self.pos += 1;
                while self.pos < s.len() && (s[self.pos] & 0xC0) == 0x80 {
                    self.pos += 1;
                }
                TokKind::Punct
            }
        };
        Some(Tok {
            kind,
            start,
            end: self.pos,
        })
    }
}

/// Largest normalized text that gets a cache entry (bytes). Bigger statements
/// are analysed uncached so that the cache's memory stays bounded.
pub(crate) const MAX_KEY_LEN: usize = 4096;

/// Builds the cache key of `sql`: the dialect tag followed by the text with
/// every literal replaced by a placeholder (`\0s` plain string, `\0e` escaped
/// string, `\0d` dollar string, `\0n` number; NUL never occurs in cacheable
/// input, so a placeholder can never be forged).
///
/// Returns `None` when the text is not safely cacheable (see the module docs)
/// or longer than [`MAX_KEY_LEN`].
pub(crate) fn normalize(sql: &str, dialect: Dialect) -> Option<String> {
    if sql.len() > MAX_KEY_LEN * 4 {
        return None;
    }
    let mut out = String::with_capacity(sql.len() + 2);
    out.push(match dialect {
        Dialect::Postgres => 'P',
        Dialect::MySql => 'M',
    });
    out.push('\u{1}');
    let mut sc = Scanner::new(sql, dialect);
    // Numbers in LIMIT / FETCH FIRST / TOP clauses stay verbatim: the
    // analysis reads row limits, so they must be part of the key.
    let mut in_limit = false;
    while let Some(t) = sc.next_tok() {
        match t.kind {
            TokKind::Str => out.push_str("\0s"),
            TokKind::EscStr => out.push_str("\0e"),
            TokKind::DollarStr => out.push_str("\0d"),
            TokKind::Number if !in_limit => out.push_str("\0n"),
            TokKind::Word => {
                let w = &sql[t.start..t.end];
                in_limit = ["LIMIT", "TOP", "FETCH", "FIRST", "NEXT", "OFFSET"]
                    .iter()
                    .any(|k| w.eq_ignore_ascii_case(k));
                out.push_str(w);
            }
            _ => out.push_str(&sql[t.start..t.end]),
        }
    }
    if sc.issue.is_some() || out.len() > MAX_KEY_LEN {
        return None;
    }
    Some(out)
}

/// All tokens of `sql`, plus the first lexical issue met.
pub(crate) fn tokens(sql: &str, dialect: Dialect) -> (Vec<Tok>, Option<LexIssue>) {
    let mut sc = Scanner::new(sql, dialect);
    let mut v = Vec::new();
    while let Some(t) = sc.next_tok() {
        v.push(t);
    }
    (v, sc.issue)
}

/// Whether PostgreSQL reads `sql` into the same tokens (kinds and byte ranges) with
/// `standard_conforming_strings` on and off. Only then can a statement be judged without
/// knowing the session's setting (which the agent can change with SET, a startup option, or a
/// role or database default, also in a pipeline the proxy has not seen answered yet): with
/// equal token boundaries the server splits and parses the same statements either way, and
/// string contents that differ (a backslash inside `'..'`) are not constants for judging.
pub(crate) fn scs_independent(sql: &str) -> bool {
    let collect = |pg_backslash: bool| {
        let mut sc = Scanner::new(sql, Dialect::Postgres);
        sc.pg_backslash = pg_backslash;
        let mut v = Vec::new();
        while let Some(t) = sc.next_tok() {
            v.push(t);
        }
        (v, sc.issue == Some(LexIssue::Unterminated))
    };
    let (on, on_open) = collect(false);
    let (off, off_open) = collect(true);
    !on_open && !off_open && on == off
}

/// Splits `sql` on top-level `;` into statement texts, dropping pieces that
/// hold only whitespace and comments. Returns the issue if the lexer met one
/// (an unterminated construct makes the split unreliable).
pub(crate) fn split(sql: &str, dialect: Dialect) -> (Vec<&str>, Option<LexIssue>) {
    let (toks, issue) = tokens(sql, dialect);
    let mut out = Vec::new();
    let mut begin = 0usize;
    let mut meaningful = false;
    for t in &toks {
        match t.kind {
            TokKind::Semi => {
                if meaningful {
                    out.push(&sql[begin..t.start]);
                }
                begin = t.end;
                meaningful = false;
            }
            TokKind::Space | TokKind::Comment => {}
            _ => meaningful = true,
        }
    }
    if meaningful {
        out.push(&sql[begin..]);
    }
    (out, issue)
}

/// Upper-cased unquoted words at the start of `sql` (comments and whitespace
/// skipped), at most `n` of them, stopping at the first non-word token.
pub(crate) fn leading_words(sql: &str, dialect: Dialect, n: usize) -> Vec<String> {
    let mut sc = Scanner::new(sql, dialect);
    let mut out = Vec::new();
    while let Some(t) = sc.next_tok() {
        match t.kind {
            TokKind::Space | TokKind::Comment => {}
            TokKind::Word => {
                out.push(sql[t.start..t.end].to_ascii_uppercase());
                if out.len() >= n {
                    break;
                }
            }
            _ => break,
        }
    }
    out
}

/// Unescapes the content of a MySQL string literal token (quotes included in
/// `raw`). Returns `None` if `raw` is not a quoted string.
pub(crate) fn mysql_unescape(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let q = *bytes.first()?;
    if !(q == b'\'' || q == b'"') || bytes.len() < 2 || bytes[bytes.len() - 1] != q {
        return None;
    }
    let inner = &raw[1..raw.len() - 1];
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('r') => out.push('\r'),
                Some('0') => out.push('\0'),
                Some('Z') => out.push('\u{1a}'),
                Some('b') => out.push('\u{8}'),
                Some(o) => out.push(o),
                None => return None,
            }
        } else if c as u32 == u32::from(q) && chars.peek() == Some(&c) {
            chars.next();
            out.push(c);
        } else {
            out.push(c);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> Option<String> {
        normalize(s, Dialect::Postgres)
    }
    fn mkey(s: &str) -> Option<String> {
        normalize(s, Dialect::MySql)
    }

    #[test]
    fn literals_differ_same_key() {
        assert_eq!(
            key("SELECT * FROM t WHERE id = 1 AND name = 'bob'"),
            key("SELECT * FROM t WHERE id = 42 AND name = 'alice'")
        );
        assert_eq!(key("SELECT 1.5e3, .5"), key("SELECT 2, .7"));
        assert_eq!(
            key("SELECT $$a$$, $x$b;c$x$"),
            key("SELECT $$zz$$, $x$q$x$")
        );
        assert_eq!(key("SELECT E'a\\'b'"), key("SELECT E'c'"));
        assert!(key("SELECT 1").unwrap().contains("\0n"));
    }

    #[test]
    fn limit_values_stay_in_key() {
        let k = key("SELECT * FROM t WHERE a = 5 LIMIT 10").unwrap();
        assert!(k.contains("LIMIT 10") && !k.contains("= 5"), "{k:?}");
        assert_ne!(
            key("SELECT * FROM t LIMIT 10"),
            key("SELECT * FROM t LIMIT 100000")
        );
        assert_ne!(
            mkey("SELECT * FROM t LIMIT 1, 10"),
            mkey("SELECT * FROM t LIMIT 1, 99999")
        );
        assert_ne!(
            key("SELECT * FROM t FETCH FIRST 5 ROWS ONLY"),
            key("SELECT * FROM t FETCH FIRST 500000 ROWS ONLY")
        );
    }

    #[test]
    fn structure_differs_different_key() {
        assert_ne!(key("SELECT * FROM t"), key("SELECT * FROM u"));
        assert_ne!(key("SELECT 'a'"), key("SELECT \"a\""));
        assert_ne!(key("SELECT 1"), key("SELECT '1'"));
        assert_ne!(key("/* x */ SELECT 1"), key("SELECT 1"));
        assert_ne!(
            key("SELECT 1"),
            mkey("SELECT 1"),
            "dialect is part of the key"
        );
    }

    #[test]
    fn semicolon_inside_string_not_confused() {
        let k = key("SELECT 'a ; DROP TABLE t' FROM x").unwrap();
        assert!(!k.contains("DROP"));
        assert_eq!(k, key("SELECT 'b' FROM x").unwrap());
        let (parts, issue) = split("SELECT 'a ; DROP' ; SELECT 2", Dialect::Postgres);
        assert_eq!(issue, None);
        assert_eq!(parts, vec!["SELECT 'a ; DROP' ", " SELECT 2"]);
        // Doubled quotes do not end the string.
        let (parts, _) = split("SELECT 'it''s; fine'; SELECT 3", Dialect::Postgres);
        assert_eq!(parts.len(), 2);
        // The keyword DROP outside a literal stays in the key.
        assert!(key("SELECT 'a' ; DROP TABLE t")
            .unwrap()
            .contains("DROP TABLE t"));
    }

    #[test]
    fn unterminated_is_uncacheable() {
        assert_eq!(key("SELECT 'abc"), None);
        assert_eq!(key("SELECT \"abc"), None);
        assert_eq!(key("SELECT 1 /* abc"), None);
        assert_eq!(key("SELECT 1 /* /* nested */"), None);
        assert_eq!(key("SELECT $a$ abc $b$"), None);
        assert_eq!(mkey("SELECT `abc"), None);
        assert_eq!(key("SELECT 'a\\'"), None, "backslash in standard string");
        assert_eq!(key("SELECT 0x1F"), None);
        assert_eq!(key("SELECT 1\0"), None);
    }

    #[test]
    fn comments_and_nesting() {
        let (p, i) = split("SELECT 1; -- ;DROP\n", Dialect::Postgres);
        assert_eq!(i, None);
        assert_eq!(p, vec!["SELECT 1"]);
        let (p, i) = split("SELECT 1 /* a /* b */ ; c */ ; SELECT 2", Dialect::Postgres);
        assert_eq!(i, None);
        assert_eq!(p.len(), 2);
        // MySQL comments do not nest: the first */ closes.
        let (p, _) = split("SELECT 1 /* a /* b */ ; SELECT 2", Dialect::MySql);
        assert_eq!(p.len(), 2);
        let (p, _) = split("SELECT 1 # ; DROP\n", Dialect::MySql);
        assert_eq!(p.len(), 1);
        let (p, _) = split("SELECT 1 --1; DROP TABLE t", Dialect::MySql);
        assert_eq!(p.len(), 2, "MySQL `--1` is not a comment");
    }

    #[test]
    fn mysql_specifics() {
        assert_eq!(
            mkey("SELECT \"a\" FROM `t`"),
            mkey("SELECT \"bb\" FROM `t`")
        );
        assert_ne!(mkey("SELECT 1 FROM `t`"), mkey("SELECT 1 FROM `u`"));
        assert_eq!(mkey("SELECT 'a\\'; DROP'"), mkey("SELECT 'x'"));
        assert_eq!(mkey("SELECT /*!50000 1 */"), None);
        let (_, issue) = tokens("SELECT 1 /*M!100100 DROP TABLE t */", Dialect::MySql);
        assert_eq!(issue, Some(LexIssue::MariaDbExecComment));
    }

    #[test]
    fn leading_words_skip_comments() {
        assert_eq!(
            leading_words(
                "/* hi */ -- x\n alter  system set x = 1",
                Dialect::Postgres,
                2
            ),
            vec!["ALTER", "SYSTEM"]
        );
        assert_eq!(
            leading_words("DO $$ x $$", Dialect::Postgres, 3),
            vec!["DO"]
        );
    }

    #[test]
    fn standard_conforming_strings_differentials() {
        for same in [
            "select 1",
            "select 'C:\\path'",
            "select * from t where name ~ '\\d+' and x like 'a\\_%'",
            "select E'a\\'b'",
            "select 'a\\\\' || 'b'",
            "select $$a\\'$$",
        ] {
            assert!(scs_independent(same), "{same}");
        }
        for differs in [
            // scs on: one string; scs off: the string ends early and a DROP follows.
            "select 'a\\'';drop table t;--'",
            "select 'x\\' ; drop table t; --'",
            "select 'ends with backslash\\'",
        ] {
            assert!(!scs_independent(differs), "{differs}");
        }
    }

    #[test]
    fn unescape_mysql() {
        assert_eq!(mysql_unescape("'a\\'b'").as_deref(), Some("a'b"));
        assert_eq!(mysql_unescape("'it''s'").as_deref(), Some("it's"));
        assert_eq!(mysql_unescape("\"x\"").as_deref(), Some("x"));
        assert_eq!(mysql_unescape("x"), None);
    }

    #[test]
    fn long_statements_not_cached() {
        let long = format!("SELECT {} FROM t", "a, ".repeat(MAX_KEY_LEN));
        assert_eq!(key(&long), None);
    }
}
