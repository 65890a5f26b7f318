//! Startup parameters are judged like SET. A PostgreSQL startup packet can set any run-time
//! parameter (`role`, `session_authorization`, `session_replication_role`, ...), directly or in
//! `options` (`-c name=value`, `--name=value`), and can carry server switches (`-P`, `-d 5`)
//! as well. What drivers normally send is allowed as it is; every other setting becomes the
//! `SET` statement it is equivalent to and goes to the policy; anything else is refused.

/// Settings drivers send at startup (libpq, pgjdbc, npgsql, pgx, node-postgres, psycopg,
/// tokio-postgres, asyncpg), allowed without asking the policy. `client_encoding` is also
/// checked against the unsafe encodings ([`crate::encoding`]).
pub const DRIVER_SETTINGS: &[&str] = &[
    "application_name",
    "client_encoding",
    "datestyle",
    "timezone",
    "extra_float_digits",
    "search_path",
    "intervalstyle",
    "bytea_output",
    "statement_timeout",
    "lock_timeout",
    "idle_in_transaction_session_timeout",
    "geqo",
];

/// Startup keys that are not run-time settings.
const NOT_SETTINGS: &[&str] = &["user", "database", "replication"];

/// A startup setting the policy must judge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartupSet {
    /// The parameter's name, lowercased.
    pub name: String,
    /// The equivalent statement: `SET name = 'value'`.
    pub sql: String,
}

/// The settings of a startup packet that need a verdict, or why the packet is refused
/// outright. `settings` are (lowercased name, value) with `options` expanded; `other_options`
/// the words of `options` that are not settings.
///
/// # Errors
/// A message for the client when `options` holds server switches or a name is not a valid
/// parameter name.
pub fn startup_statements(
    settings: &[(String, String)],
    other_options: &[String],
) -> Result<Vec<StartupSet>, String> {
    if let Some(w) = other_options.first() {
        return Err(format!(
            "dbwarden: startup option \"{}\" is not allowed: only -c name=value settings are accepted",
            printable(w)
        ));
    }
    let mut out = Vec::new();
    for (name, value) in settings {
        // Protocol extensions (`_pq_.name`) are negotiated, not set.
        if NOT_SETTINGS.contains(&name.as_str())
            || DRIVER_SETTINGS.contains(&name.as_str())
            || name.starts_with("_pq_.")
        {
            continue;
        }
        if !valid_name(name) {
            return Err(format!(
                "dbwarden: startup parameter \"{}\" is not a valid parameter name",
                printable(name)
            ));
        }
        out.push(StartupSet {
            name: name.clone(),
            sql: format!("SET {name} = {}", literal(value)),
        });
    }
    Ok(out)
}

/// `value` as a string literal that reads the same whatever standard_conforming_strings is.
fn literal(value: &str) -> String {
    let quoted = value.replace('\'', "''");
    if value.contains('\\') {
        format!("E'{}'", quoted.replace('\\', "\\\\"))
    } else {
        format!("'{quoted}'")
    }
}

/// A parameter name as the server accepts one: an identifier, or `prefix.name` for an
/// extension's custom parameter.
fn valid_name(n: &str) -> bool {
    let part = |p: &str| {
        let mut b = p.bytes();
        b.next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == b'_')
            && b.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'$')
    };
    match n.split_once('.') {
        None => part(n),
        Some((a, b)) => part(a) && part(b),
    }
}

/// Names and switches come from the client: short and printable in messages.
fn printable(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(k: &str, v: &str) -> (String, String) {
        (k.to_owned(), v.to_owned())
    }

    #[test]
    fn driver_settings_pass_and_others_become_set() {
        let got = startup_statements(
            &[
                p("user", "app"),
                p("database", "db"),
                p("application_name", "psql"),
                p("datestyle", "ISO, MDY"),
                p("_pq_.compression", "on"),
                p("role", "admin"),
                p("work_mem", "it's"),
                p("myapp.tenant", "7"),
            ],
            &[],
        )
        .unwrap();
        assert_eq!(
            got,
            vec![
                StartupSet {
                    name: "role".into(),
                    sql: "SET role = 'admin'".into()
                },
                StartupSet {
                    name: "work_mem".into(),
                    sql: "SET work_mem = 'it''s'".into()
                },
                StartupSet {
                    name: "myapp.tenant".into(),
                    sql: "SET myapp.tenant = '7'".into()
                },
            ]
        );
    }

    #[test]
    fn switches_and_odd_names_are_refused() {
        assert!(startup_statements(&[], &["-P".into()])
            .unwrap_err()
            .contains("\"-P\""));
        for n in ["role; drop", "a.b.c", "9x", "", "Role"] {
            assert!(startup_statements(&[p(n, "x")], &[]).is_err(), "{n}");
        }
    }

    #[test]
    fn values_cannot_escape_the_literal() {
        for v in [
            "1'; DROP TABLE t; --",
            "a\\'; DROP TABLE t; --",
            "\\",
            "x\\",
        ] {
            let got = startup_statements(&[p("work_mem", v)], &[]).unwrap();
            let a = crate::analyze::analyze(&got[0].sql, crate::Dialect::Postgres);
            assert_eq!(a.statements.len(), 1, "{v}: {a:?}");
            assert!(a.statements[0].parse_error.is_none(), "{v}: {a:?}");
        }
    }
}
