//! The lexer sees what the server sees (issue 17): generated statements full of string
//! literals, E-strings, U&-strings, dollar quotes, quoted identifiers, line and nested block
//! comments and hidden `; insert ...` payloads, in each of the server's lexer modes
//! (`standard_conforming_strings` × `backslash_quote`). For every text the analyzer accepts,
//! the inserts PostgreSQL runs (counted by their side effect) are exactly the inserts the
//! analyzer saw: the server never runs a statement dbwarden did not judge. Texts the analyzer
//! refuses are fine (nothing runs); they are counted so the test cannot pass vacuously.

use dbwarden_policy::{analyze, Dialect, Kind};

/// Pieces the generator glues together inside and around literals.
const FRAGMENTS: &[&str] = &[
    "'",
    "''",
    "\\",
    "\\'",
    "\\\\",
    ";",
    "$$",
    "$q$",
    "--",
    "\n",
    "/*",
    "*/",
    "E'",
    "U&'",
    "\"",
    "a",
    " ",
    ")",
    "(",
    "\\';insert into fx values (99, 'p');--",
    "';insert into fx values (98, 'p');--",
    "$$;insert into fx values (97, 'p');--",
    "*/;insert into fx values (96, 'p');/*",
    "\n;insert into fx values (95, 'p');--",
];

struct Rng(u64);
impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

fn text(r: &mut Rng) -> String {
    let mut body = String::new();
    for _ in 0..1 + r.below(7) {
        body.push_str(FRAGMENTS[r.below(FRAGMENTS.len())]);
    }
    match r.below(7) {
        0 => format!("insert into fx values (1, '{body}')"),
        1 => format!("insert into fx values (1, E'{body}')"),
        2 => format!("insert into fx values (1, $${body}$$)"),
        3 => format!("insert into fx values (1, U&'{body}')"),
        4 => format!("insert into fx values (1, 'x') /* {body} */; insert into fx values (2, 'y')"),
        5 => format!(
            "insert into fx values (1, 'x') -- {body}\n; insert into fx values (2, \"{body}\")"
        ),
        _ => {
            format!("insert into fx values (1, '{body}'); insert into fx values (2, $q${body}$q$)")
        }
    }
}

async fn connect(options: &str) -> tokio_postgres::Client {
    let mut cfg = tokio_postgres::Config::new();
    cfg.host("127.0.0.1")
        .port(5432)
        .user("postgres")
        .dbname("postgres")
        .options(options);
    let (client, conn) = cfg
        .connect(tokio_postgres::NoTls)
        .await
        .expect("PostgreSQL on 127.0.0.1:5432 (pre-started in CI)");
    tokio::spawn(conn);
    client
}

#[tokio::test(flavor = "current_thread")]
async fn server_runs_only_what_the_analyzer_saw() {
    let table = format!("fx_{}", std::process::id());
    let setup = connect("").await;
    setup
        .batch_execute(&format!(
            "drop table if exists {table}; create table {table} (n int, t text)"
        ))
        .await
        .unwrap();
    let mut r = Rng(0x5eed_1234_abcd_ef01);
    for (scs, bq) in [
        ("on", "safe_encoding"),
        ("on", "on"),
        ("off", "safe_encoding"),
        ("off", "on"),
    ] {
        let c = connect(&format!(
            "-c standard_conforming_strings={scs} -c backslash_quote={bq} -c search_path=public"
        ))
        .await;
        let (mut ran_ok, mut refused) = (0, 0);
        for _ in 0..600 {
            let t = text(&mut r).replace(" fx ", &format!(" {table} "));
            let a = analyze(&t, Dialect::Postgres);
            if a.statements.iter().any(|s| s.parse_error.is_some()) {
                refused += 1;
                continue;
            }
            let seen = a
                .statements
                .iter()
                .filter(|s| s.kinds.contains(Kind::Insert))
                .count();
            if c.batch_execute(&t).await.is_err() {
                // The implicit transaction of the query string rolled back: nothing ran.
                let n: i64 = c
                    .query_one(&format!("select count(*) from {table}"), &[])
                    .await
                    .unwrap()
                    .get(0);
                assert_eq!(n, 0, "[{scs}/{bq}] a failed query string left rows: {t:?}");
                continue;
            }
            let n: i64 = c
                .query_one(&format!("select count(*) from {table}"), &[])
                .await
                .unwrap()
                .get(0);
            c.batch_execute(&format!("truncate {table}")).await.unwrap();
            assert_eq!(
                usize::try_from(n).unwrap(),
                seen,
                "[scs={scs} backslash_quote={bq}] the server ran {n} inserts, dbwarden saw {seen}: {t:?}"
            );
            ran_ok += 1;
        }
        eprintln!(
            "scs={scs} backslash_quote={bq}: {ran_ok} executed and matched, {refused} refused"
        );
        assert!(
            ran_ok >= 50,
            "[{scs}/{bq}] too few texts executed: {ran_ok}"
        );
        assert!(
            refused >= 10,
            "[{scs}/{bq}] the generator never provoked a refusal"
        );
    }
    setup
        .batch_execute(&format!("drop table {table}"))
        .await
        .unwrap();
}
