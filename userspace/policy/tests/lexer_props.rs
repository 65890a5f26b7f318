//! Property tests of the lexer behind the analysis: statements built from every literal form
//! PostgreSQL has (standard, E'', U&'', dollar-quoted with and without a tag, quoted
//! identifiers), each holding arbitrary content escaped the way that form requires, joined by
//! `;` with line and nested block comments between them, split into exactly the statements
//! they were built from, whatever the content (quotes, backslashes, semicolons, dollars,
//! comment markers). And a backslash put into a standard string never changes the split: the
//! text is either judged the same or refused (its reading would depend on
//! standard_conforming_strings).

use dbwarden_policy::{analyze, Dialect, Kind};
use proptest::prelude::*;

/// Content full of the characters that end or escape literals and comments.
fn content() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just("'"),
            Just("\\"),
            Just(";"),
            Just("$"),
            Just("$$"),
            Just("--"),
            Just("/*"),
            Just("*/"),
            Just("\n"),
            Just("\""),
            Just("a"),
            Just(" "),
            Just("é"),
            Just("E'"),
        ],
        0..12,
    )
    .prop_map(|v| v.concat())
}

/// `c` as a literal of form `form`, escaped as that form requires.
fn literal(form: u8, c: &str) -> String {
    match form {
        // Standard string: quotes doubled; no backslash (its reading would depend on
        // standard_conforming_strings, see the other property).
        0 => format!("'{}'", c.replace('\\', "").replace('\'', "''")),
        1 => format!("E'{}'", c.replace('\\', "\\\\").replace('\'', "\\'")),
        2 => format!("U&'{}'", c.replace('\\', "\\\\").replace('\'', "''")),
        // Dollar quotes: the content must not hold the closing delimiter.
        3 => format!("$${}$$", c.replace('$', "")),
        4 => format!("$q1$ {} $q1$", c.replace("$q1$", "")),
        // A quoted identifier, as a column alias.
        _ => format!("1 AS \"{}\"", c.replace('"', "\"\"").replace('\0', "")),
    }
}

/// A separator between statements: `;`, possibly with comments around it.
fn separator() -> impl Strategy<Value = String> {
    (0u8..4, content()).prop_map(|(k, c)| match k {
        0 => ";".to_string(),
        1 => format!("; -- {}\n", c.replace('\n', " ")),
        2 => format!(" /* {} */ ;", c.replace("*/", "").replace("/*", "")),
        _ => format!(
            "; /* nested /* {} */ still */ ",
            c.replace("*/", "").replace("/*", "")
        ),
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn statements_split_as_built(
        parts in proptest::collection::vec(((0u8..6), content(), separator()), 1..5)
    ) {
        let mut sql = String::new();
        for (i, (form, c, sep)) in parts.iter().enumerate() {
            if i > 0 {
                sql.push_str(sep);
            }
            sql.push_str("SELECT ");
            sql.push_str(&literal(*form, c));
        }
        let a = analyze(&sql, Dialect::Postgres);
        prop_assert!(
            a.statements.iter().all(|s| s.parse_error.is_none()),
            "refused: {sql:?}: {a:?}"
        );
        prop_assert_eq!(a.statements.len(), parts.len(), "{:?}", sql);
        prop_assert!(a.statements.iter().all(|s| s.kinds.contains(Kind::Select)), "{:?}", sql);
    }

    #[test]
    fn a_backslash_in_a_standard_string_never_changes_the_split(
        before in content(), after in content(), tail in content()
    ) {
        let lit = |s: &str| s.replace('\\', "").replace('\'', "''");
        let plain = format!("SELECT '{}{}'; SELECT $${}$$", lit(&before), lit(&after), tail.replace('$', ""));
        let with = format!("SELECT '{}\\{}'; SELECT $${}$$", lit(&before), lit(&after), tail.replace('$', ""));
        let a = analyze(&plain, Dialect::Postgres);
        prop_assert_eq!(a.statements.len(), 2);
        let b = analyze(&with, Dialect::Postgres);
        let refused = b.statements.iter().any(|s| s.parse_error.is_some());
        prop_assert!(refused || b.statements.len() == 2, "{:?}: {:?}", with, b);
    }
}
