//! One verdict per meaning, end to end: spellings of a role switch, constant-true WHERE
//! clauses and cardholder reads nested in expressions get the canonical verdict from the real
//! daemon, and the server-side effect is checked directly (outside dbwarden).

use std::time::Duration;

use dbwarden_tests::*;

fn setup(tag: &str) -> PgDb {
    let db = PgDb::create(tag);
    psql_direct(
        &db.name,
        "CREATE TABLE t (id int primary key, v int); INSERT INTO t VALUES (1, 0), (2, 0), (3, 0);
         CREATE TABLE cards (id int primary key, card_number text);
         INSERT INTO cards VALUES (1, '4111111111111111'), (2, '5500000000000004');
         DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'dbw_meaning_other')
           THEN CREATE ROLE dbw_meaning_other; END IF; END $$;
         GRANT dbw_meaning_other TO postgres;",
    );
    db
}

fn err(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn role_switch_spellings_do_not_change_the_role() {
    require_privileged();
    let d = Daemon::start();
    let db = setup("meaning_role");
    for s in [
        "SET role = dbw_meaning_other",
        "SET role TO dbw_meaning_other",
        "SET \"ROLE\" TO dbw_meaning_other",
        "SET LOCAL ROLE dbw_meaning_other",
        "SET SESSION AUTHORIZATION dbw_meaning_other",
        "SELECT set_config('ROLE', 'dbw_meaning_other', false)",
        "SELECT set_config(E'\\x72ole', 'dbw_meaning_other', false)",
        "SELECT query_to_xml('select set_config(''role'', ''dbw_meaning_other'', false)', true, true, '')",
    ] {
        // The switch and a current_user check on the same connection.
        let sql = format!("{s}; SELECT current_user");
        let o = psql(&d, &db.name, &sql);
        assert!(!o.status.success(), "{s}: accepted: {}", stdout(&o));
        let e = err(&o);
        assert!(e.contains("no-role-management"), "{s}: {e}");
        // Same session, next statement: still the original role.
        let mut c = psql_cmd(Some(&d), &db.name);
        c.args(["-At", "-c", s, "-c", "SELECT current_user"]);
        let o = output_timeout(c, None, Duration::from_secs(30));
        let out = stdout(&o);
        assert!(out.lines().any(|l| l == "postgres"), "{s}: {out} {}", err(&o));
        assert!(!out.contains("dbw_meaning_other"), "{s}: role changed: {out}");
    }
}

#[test]
fn constant_true_where_is_refused_and_the_table_is_unchanged() {
    require_privileged();
    let d = Daemon::start();
    let db = setup("meaning_where");
    for s in [
        "UPDATE t SET v = 1 WHERE 1=1",
        "UPDATE t SET v = 1 WHERE true",
        "UPDATE t SET v = 1 WHERE 'a'='a'",
        "UPDATE t SET v = 1 WHERE id = 2 OR true",
        "UPDATE t SET v = 1 WHERE NOT false",
        "UPDATE t SET v = 1 WHERE id = id",
        "DELETE FROM t WHERE 1=1",
        "SELECT query_to_xml('delete from t', true, true, '')",
    ] {
        let o = psql(&d, &db.name, s);
        assert!(!o.status.success(), "{s}: accepted");
        let e = err(&o);
        assert!(e.contains("no-where-less-writes"), "{s}: {e}");
        assert_eq!(
            psql_direct(
                &db.name,
                "SELECT string_agg(id || ':' || v, ',' ORDER BY id) FROM t"
            ),
            "1:0,2:0,3:0",
            "{s}"
        );
    }
    // A real predicate still works.
    let o = psql(&d, &db.name, "UPDATE t SET v = 7 WHERE id = 2");
    assert_ok(&o, "restrictive update");
    assert_eq!(psql_direct(&db.name, "SELECT v FROM t WHERE id = 2"), "7");
}

#[test]
fn nested_unbounded_cardholder_read_is_held_not_answered() {
    require_privileged();
    let policy =
        dbwarden_policy_src().replacen("approval_timeout = \"5m\"", "approval_timeout = \"2s\"", 1);
    let d = Daemon::start_with(DaemonOpts {
        policy: Some(policy),
        ..Default::default()
    });
    let db = setup("meaning_held");
    for s in [
        "select array(select card_number from cards) limit 1",
        "select (select string_agg(card_number, ',') from cards) limit 1",
        "with c as (select * from cards) select * from c limit 1",
    ] {
        let o = psql(&d, &db.name, s);
        let out = stdout(&o);
        assert!(!o.status.success(), "{s}: answered: {out}");
        assert!(!out.contains("4111"), "{s}: card data returned: {out}");
        let e = err(&o);
        assert!(e.contains("approv"), "{s}: {e}");
    }
    // A bounded read is answered.
    let o = psql(
        &d,
        &db.name,
        "select card_number from cards order by id limit 1",
    );
    assert_ok(&o, "bounded read");
}

/// The shipped PCI policy source.
fn dbwarden_policy_src() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../policies/pci-dss.toml"
    ))
    .expect("read policies/pci-dss.toml")
}

/// A quoting trick: with `standard_conforming_strings = off` (set by the agent, in its
/// startup options, or pipelined ahead of the server's report), `'a\'';drop table t;--'` is a
/// SELECT of one string to a lexer that assumes the default but a SELECT and a DROP to the
/// server. dbwarden refuses any statement whose reading depends on the setting.
#[test]
fn a_backslash_quoting_trick_cannot_hide_a_drop() {
    require_privileged();
    let d = Daemon::start();
    let db = setup("meaning_scs");
    let trick = r"select 'a\'';drop table t;--'";
    for (how, pre, opts) in [
        (
            "SET in the same session",
            "SET standard_conforming_strings = off",
            "",
        ),
        ("startup option", "", "-c standard_conforming_strings=off"),
        (
            "pipelined SET",
            "SET standard_conforming_strings TO off;",
            "",
        ),
    ] {
        let mut c = psql_cmd(Some(&d), &db.name);
        if !pre.is_empty() {
            c.args(["-c", pre]);
        }
        c.args(["-c", trick]).env("PGOPTIONS", opts);
        let o = output_timeout(c, None, Duration::from_secs(30));
        assert!(!o.status.success(), "{how}: accepted: {}", stdout(&o));
        assert!(
            err(&o).contains("standard_conforming_strings"),
            "{how}: {}",
            err(&o)
        );
        assert_eq!(
            psql_direct(&db.name, "select count(*) from t"),
            "3",
            "{how}: table t gone"
        );
    }
    // Ordinary backslashes (regular expressions, LIKE escapes, Windows paths) still work.
    let o = psql(&d, &db.name, r"select 'C:\dir' ~ '\\', 'a_b' like 'a\_b'");
    assert_ok(&o, "ordinary backslashes");
}

/// Client encodings whose multibyte characters can end in a quote or backslash byte are
/// refused however the session would get one: the startup packet (PGCLIENTENCODING), `SET`, or
/// a role default the server applies at login.
#[test]
fn unsafe_client_encodings_are_refused_every_way() {
    require_privileged();
    let d = Daemon::start();
    let db = setup("meaning_enc");
    // Startup.
    let mut c = psql_cmd(Some(&d), &db.name);
    c.args(["-c", "select 1"]).env("PGCLIENTENCODING", "SJIS");
    let o = output_timeout(c, None, Duration::from_secs(30));
    assert!(!o.status.success(), "SJIS startup accepted: {}", stdout(&o));
    assert!(err(&o).contains("client encoding"), "{}", err(&o));
    let mut c = psql_cmd(Some(&d), &db.name);
    c.args(["-c", "select 1"])
        .env("PGOPTIONS", "-c client_encoding=BIG5");
    let o = output_timeout(c, None, Duration::from_secs(30));
    assert!(
        !o.status.success(),
        "BIG5 in options accepted: {}",
        stdout(&o)
    );
    // SET, then the same session still speaks UTF8.
    let mut c = psql_cmd(Some(&d), &db.name);
    c.args([
        "-c",
        "SET client_encoding TO 'GBK'",
        "-c",
        "show client_encoding",
    ]);
    let o = output_timeout(c, None, Duration::from_secs(30));
    assert!(err(&o).contains("client encoding"), "{}", err(&o));
    assert!(
        !stdout(&o).to_ascii_uppercase().contains("GBK"),
        "{}",
        stdout(&o)
    );
    // A role default: the server switches at login; dbwarden ends the session.
    let role = format!("dbw_enc_{}", std::process::id());
    psql_direct(
        &db.name,
        &format!("CREATE ROLE {role} LOGIN; ALTER ROLE {role} SET client_encoding = 'SJIS'"),
    );
    let mut c = d.agent("psql");
    c.args([
        "-X",
        "-At",
        "-h",
        "127.0.0.1",
        "-U",
        &role,
        "-d",
        &db.name,
        "-c",
        "select 1",
    ])
    .env_remove("PGCLIENTENCODING");
    let o = output_timeout(c, None, Duration::from_secs(30));
    let _ = psql_direct(&db.name, &format!("DROP ROLE {role}"));
    assert!(
        !o.status.success(),
        "role default SJIS accepted: {}",
        stdout(&o)
    );
    assert!(err(&o).contains("client encoding"), "{}", err(&o));
    // UTF8 and single-byte encodings keep working.
    let mut c = psql_cmd(Some(&d), &db.name);
    c.args(["-c", "select 'ok'"])
        .env("PGCLIENTENCODING", "LATIN1");
    let o = output_timeout(c, None, Duration::from_secs(30));
    assert_ok(&o, "LATIN1 session");
}
