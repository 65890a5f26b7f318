//! One verdict per meaning: every spelling of an operation gets the same
//! action and deciding rule as its canonical spelling under the shipped
//! PCI default (`policies/pci-dss.toml`).

use dbwarden_policy::{Action, Dialect, Engine, Identity, Policy, Protocol, Target};

fn engine() -> Engine {
    Engine::new(Policy::embedded_default())
}

fn target() -> Target {
    Target {
        addr: Some("127.0.0.1:5432".to_owned()),
        protocol: Protocol::Postgres,
        database: Some("app".to_owned()),
        user: Some("agent".to_owned()),
    }
}

fn verdict(e: &Engine, sql: &str) -> (&'static str, String) {
    // Twice: the second answer may come from the analysis cache.
    let mut out = None;
    for _ in 0..2 {
        let v = e.decide(sql, Dialect::Postgres, &Identity::default(), &target());
        let a = match v.action {
            Action::Allow => "allow",
            Action::Deny => "deny",
            Action::RequireApproval { .. } => "approve",
        };
        let got = (a, v.rule.clone());
        if let Some(prev) = &out {
            assert_eq!(prev, &got, "{sql}: cached verdict differs");
        }
        out = Some(got);
    }
    out.unwrap()
}

fn same_as(canonical: &str, expected: (&str, &str), spellings: &[&str]) {
    let e = engine();
    let c = verdict(&e, canonical);
    assert_eq!((c.0, c.1.as_str()), expected, "canonical {canonical}");
    for s in spellings {
        assert_eq!(verdict(&e, s), c, "{s} (canonical: {canonical})");
    }
}

#[test]
fn role_switch_spellings() {
    same_as(
        "SET ROLE admin",
        ("deny", "no-role-management"),
        &[
            "SET role = admin",
            "SET role TO admin",
            "set Role to 'admin'",
            "SET \"role\" = admin",
            "SET \"ROLE\" TO admin",
            "SET LOCAL ROLE admin",
            "SET SESSION ROLE admin",
            "SET local role = admin",
            "SET ROLE NONE",
            "SET SESSION AUTHORIZATION admin",
            "SET LOCAL SESSION AUTHORIZATION DEFAULT",
            "SET session_authorization = admin",
            "SET session_authorization TO admin",
            "RESET ROLE",
            "RESET role",
            "RESET \"Role\"",
            "RESET SESSION AUTHORIZATION",
            "RESET session_authorization",
            "DISCARD ALL",
            "SELECT set_config('role', 'admin', false)",
            "select SET_CONFIG('ROLE', 'admin', false)",
            "SELECT pg_catalog.set_config('Role', 'admin', true)",
            "SELECT set_config('session_authorization', 'admin', false)",
            "SELECT set_config(E'\\x72ole', 'admin', false)",
            "SELECT set_config(U&'r\\006Fle', 'admin', false)",
            "SELECT set_config($$role$$, 'admin', false)",
            "SELECT set_config('ro' || 'le', 'admin', false)",
            "SELECT set_config('role'::text, 'admin', false)",
            "SELECT set_config(lower('ROLE'), 'admin', false)",
            "SELECT set_config(name, 'admin', false) FROM gucs",
            "SELECT 1 WHERE set_config('role', 'admin', false) IS NOT NULL",
            "SELECT * FROM orders WHERE id = (SELECT length(set_config('role','admin',false)))",
            "WITH x AS (SELECT set_config('role', 'admin', false)) SELECT * FROM x",
            "SELECT * FROM set_config('role', 'admin', false)",
            "SELECT set_config(setting_name => 'role', new_value => 'admin', is_local => false)",
        ],
    );
}

#[test]
fn non_role_gucs_are_not_role_switches() {
    let e = engine();
    // set_config of other settings stays the generic set_config rule.
    assert_eq!(
        verdict(&e, "SELECT set_config('search_path', 'public', false)"),
        ("deny", "no-set-config".to_owned())
    );
    // PostgreSQL does not trim GUC names: ' role' is not the role.
    assert_eq!(
        verdict(&e, "SELECT set_config(' role', 'admin', false)"),
        ("deny", "no-set-config".to_owned())
    );
    assert_eq!(verdict(&e, "SET search_path = public").0, "allow");
    assert_eq!(verdict(&e, "RESET ALL").0, "allow");
}

#[test]
fn where_less_spellings() {
    same_as(
        "UPDATE t SET v = 1",
        ("deny", "no-where-less-writes"),
        &[
            "UPDATE t SET v = 1 WHERE true",
            "UPDATE t SET v = 1 WHERE TRUE",
            "UPDATE t SET v = 1 WHERE 1=1",
            "UPDATE t SET v = 1 WHERE 1 = 1",
            "UPDATE t SET v = 1 WHERE 2 > 1",
            "UPDATE t SET v = 1 WHERE 'a'='a'",
            "UPDATE t SET v = 1 WHERE 'a' = 'a' AND 1 = 1",
            "UPDATE t SET v = 1 WHERE id = 5 OR true",
            "UPDATE t SET v = 1 WHERE id = 5 OR 1=1",
            "UPDATE t SET v = 1 WHERE NOT false",
            "UPDATE t SET v = 1 WHERE 1",
            "UPDATE t SET v = 1 WHERE (true)",
            "UPDATE t SET v = 1 WHERE ((1=1))",
            "UPDATE t SET v = 1 WHERE id = id",
            "UPDATE t SET v = 1 WHERE t.id = t.id",
            "UPDATE t SET v = 1 WHERE id >= id",
            "UPDATE t SET v = 1 WHERE id IS NOT DISTINCT FROM id",
            "UPDATE t SET v = 1 WHERE id IS NULL OR id IS NOT NULL",
            "UPDATE t SET v = 1 WHERE x OR NOT x",
            "UPDATE t SET v = 1 WHERE 't'",
            "UPDATE t SET v = 1 WHERE 'yes'::boolean",
            "UPDATE t SET v = 1 WHERE 1::bool",
            "UPDATE t SET v = 1 WHERE true IS TRUE",
            "UPDATE t SET v = 1 WHERE NULL IS NULL",
            "UPDATE t SET v = 1 WHERE 1 IN (1, 2)",
            "UPDATE t SET v = 1 WHERE 5 BETWEEN 1 AND 10",
            "UPDATE t SET v = 1 WHERE 'abc' LIKE '%'",
            "UPDATE t SET v = 1 WHERE 1 + 1 = 2",
            "UPDATE t SET v = 1 WHERE coalesce(NULL, true)",
            "UPDATE t SET v = 1 WHERE CASE WHEN true THEN true END",
            "UPDATE t SET v = 1 WHERE (SELECT true)",
            "UPDATE t SET v = 1 WHERE EXISTS (SELECT 1)",
            "UPDATE t SET v = 1 WHERE 'a' || 'b' = 'ab'",
            "DELETE FROM t WHERE true",
            "DELETE FROM t WHERE 1=1",
            "delete from t where id = id",
            "WITH d AS (DELETE FROM t WHERE 1=1 RETURNING *) SELECT * FROM d",
            "EXPLAIN ANALYZE DELETE FROM t WHERE true",
            "PREPARE p AS DELETE FROM t WHERE 'x' = 'x'",
        ],
    );
}

#[test]
fn restrictive_predicates_stay_allowed() {
    let e = engine();
    for s in [
        "UPDATE t SET v = 1 WHERE id = 5",
        "UPDATE t SET v = 1 WHERE 5 = id",
        "UPDATE t SET v = 1 WHERE 1=2 OR id = 5",
        "UPDATE t SET v = 1 WHERE id = 5 AND (x OR true)",
        "UPDATE t SET v = 1 WHERE false",
        "UPDATE t SET v = 1 WHERE 1=0",
        "UPDATE t SET v = 1 WHERE random() = random()",
        "UPDATE t SET v = 1 WHERE a = b",
        "DELETE FROM t WHERE id IN (1, 2)",
        "DELETE FROM t WHERE 'a' = 'b'",
    ] {
        assert_eq!(verdict(&e, s), ("allow", "default".to_owned()), "{s}");
    }
    // Literal-dependent folds are never shared through the cache.
    assert_eq!(verdict(&e, "DELETE FROM t WHERE 1 = 2").0, "allow");
    assert_eq!(verdict(&e, "DELETE FROM t WHERE 1 = 1").0, "deny");
    assert_eq!(verdict(&e, "DELETE FROM t WHERE 'a' = 'b'").0, "allow");
    assert_eq!(verdict(&e, "DELETE FROM t WHERE 'a' = 'a'").0, "deny");
}

#[test]
fn sql_in_strings_is_judged() {
    let e = engine();
    // The nested statement's kinds, tables and functions count.
    for (s, rule) in [
        (
            "SELECT query_to_xml('DELETE FROM orders', true, true, '')",
            "no-where-less-writes",
        ),
        (
            "SELECT query_to_xml('TRUNCATE orders', true, true, '')",
            "no-truncate",
        ),
        (
            "SELECT query_to_xml('select pg_read_file(''/etc/passwd'')', true, true, '')",
            "no-file-functions",
        ),
        (
            "SELECT query_to_xml($$SET ROLE admin$$, true, true, '')",
            "no-role-management",
        ),
        (
            "SELECT query_to_xml('select set_config(''role'',''x'',false)', true, true, '')",
            "no-role-management",
        ),
        (
            "SELECT query_to_xml(E'DROP TABLE orders', true, true, '')",
            "no-drop",
        ),
        (
            "SELECT query_to_xml_and_xmlschema('DELETE FROM t', true, true, '')",
            "no-where-less-writes",
        ),
        (
            "SELECT query_to_xmlschema('DELETE FROM t', true, true, '')",
            "no-where-less-writes",
        ),
        (
            "SELECT * FROM ts_stat('DELETE FROM t')",
            "no-where-less-writes",
        ),
        // Non-literal query strings are opaque code.
        (
            "SELECT query_to_xml(q, true, true, '') FROM queries",
            "no-opaque-code",
        ),
        (
            "SELECT query_to_xml('sel' || chr(101) || 'ct 1', true, true, '')",
            "no-opaque-code",
        ),
        (
            "SELECT schema_to_xml('public', true, true, '')",
            "no-opaque-code",
        ),
        ("SELECT database_to_xml(true, true, '')", "no-opaque-code"),
        (
            "SELECT table_to_xml(t::regclass, true, true, '') FROM x",
            "no-opaque-code",
        ),
        (
            "SELECT query_to_xml('this is not sql', true, true, '')",
            "no-opaque-code",
        ),
    ] {
        assert_eq!(verdict(&e, s), ("deny", rule.to_owned()), "{s}");
    }
    // Reads in query strings are unbounded reads of cardholder tables.
    for s in [
        "SELECT query_to_xml('select * from cards', true, true, '')",
        "SELECT query_to_xml('select * from cards', true, true, '') LIMIT 1",
        "SELECT table_to_xml('cards', true, true, '')",
        "SELECT table_to_xml('public.cards', true, true, '') LIMIT 1",
        "SELECT query_to_xml('select card_number from cards limit 5', true, true, '') FROM generate_series(1, 1000000)",
    ] {
        assert_eq!(
            verdict(&e, s),
            ("approve", "approve-unbounded-cardholder-select".to_owned()),
            "{s}"
        );
    }
    assert_eq!(
        verdict(&e, "SELECT query_to_xml('select 1', true, true, '')"),
        ("allow", "default".to_owned())
    );
}

#[test]
fn policy_extensible_sql_functions() {
    let src = dbwarden_policy::EMBEDDED_DEFAULT_SRC.replacen(
        "approval_timeout = \"5m\"",
        "approval_timeout = \"5m\"\nsql_functions = [\"run_sql\", \"admin.exec_on:2\"]",
        1,
    );
    let e = Engine::new(Policy::parse(&src, "test").unwrap());
    let d = |s: &str| {
        let v = e.decide(s, Dialect::Postgres, &Identity::default(), &target());
        (v.action, v.rule)
    };
    assert_eq!(
        d("SELECT run_sql('DELETE FROM t')"),
        (Action::Deny, "no-where-less-writes".to_owned())
    );
    assert_eq!(
        d("SELECT public.run_sql('TRUNCATE t')"),
        (Action::Deny, "no-truncate".to_owned())
    );
    assert_eq!(
        d("SELECT admin.exec_on('db1', 'TRUNCATE t')"),
        (Action::Deny, "no-truncate".to_owned())
    );
    assert_eq!(
        d("SELECT run_sql(q) FROM x"),
        (Action::Deny, "no-opaque-code".to_owned())
    );
    assert_eq!(
        d("SELECT run_sql('select 1')"),
        (Action::Allow, "default".to_owned())
    );
    assert!(Policy::parse(
        &dbwarden_policy::EMBEDDED_DEFAULT_SRC.replacen(
            "default = \"allow\"",
            "default = \"allow\"\nsql_functions = [\"f:0\"]",
            1
        ),
        "t"
    )
    .is_err());
}

#[test]
fn function_bodies_are_judged() {
    let e = engine();
    for (s, rule) in [
        ("CREATE FUNCTION f() RETURNS void LANGUAGE sql AS $$ DELETE FROM orders $$", "no-where-less-writes"),
        ("CREATE FUNCTION f() RETURNS void LANGUAGE sql AS 'DROP TABLE orders'", "no-drop"),
        ("CREATE FUNCTION f() RETURNS void AS $$ TRUNCATE orders $$ LANGUAGE sql", "no-truncate"),
        ("CREATE FUNCTION f() RETURNS void LANGUAGE sql BEGIN ATOMIC DELETE FROM orders; END", "no-where-less-writes"),
        ("CREATE FUNCTION f() RETURNS text LANGUAGE sql AS $$ SELECT pg_read_file('/etc/passwd') $$", "no-file-functions"),
        ("CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$ BEGIN EXECUTE 'DROP TABLE orders'; END $$", "no-drop"),
        ("CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$ BEGIN EXECUTE 'SET ROLE ' || 'admin'; END $$", "no-role-management"),
        ("CREATE FUNCTION f(q text) RETURNS void LANGUAGE plpgsql AS $$ BEGIN EXECUTE q; END $$", "no-opaque-code"),
        ("CREATE FUNCTION f(q text) RETURNS void LANGUAGE plpgsql AS $$ BEGIN EXECUTE format('DROP TABLE %I', q); END $$", "no-opaque-code"),
        ("CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$ BEGIN DELETE FROM orders; END $$", "no-where-less-writes"),
        ("CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$ BEGIN IF true THEN TRUNCATE orders; END IF; END $$", "no-truncate"),
        ("CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$ BEGIN PERFORM set_config('role', 'admin', false); END $$", "no-role-management"),
        ("CREATE FUNCTION f() RETURNS void LANGUAGE plperl AS $$ spi_exec_query('drop table t') $$", "no-opaque-code"),
        ("CREATE PROCEDURE p() LANGUAGE plpgsql AS $$ BEGIN EXECUTE 'x'; END $$", "no-opaque-code"),
        ("CREATE TRIGGER tr BEFORE INSERT ON orders FOR EACH ROW EXECUTE FUNCTION f()", "no-triggers"),
        ("CREATE RULE r AS ON INSERT TO orders DO INSTEAD NOTHING", "no-triggers"),
        ("CREATE EVENT TRIGGER e ON ddl_command_start EXECUTE FUNCTION f()", "no-triggers"),
        ("CREATE OR REPLACE TRIGGER tr BEFORE INSERT ON orders FOR EACH ROW EXECUTE FUNCTION f()", "no-triggers"),
    ] {
        assert_eq!(verdict(&e, s), ("deny", rule.to_owned()), "{s}");
    }
    assert_eq!(
        verdict(
            &e,
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$"
        )
        .1,
        "approve-schema-change"
    );
}

#[test]
fn change_management_and_credentials() {
    let e = engine();
    for s in [
        "ALTER TABLE orders ADD COLUMN note text",
        "CREATE INDEX i ON orders (id)",
        "DROP INDEX i",
        "CREATE TABLE t2 (id int)",
        "COMMENT ON TABLE orders IS 'x'",
    ] {
        assert_eq!(
            verdict(&e, s),
            ("approve", "approve-schema-change".to_owned()),
            "{s}"
        );
    }
    for s in [
        "ALTER ROLE app WITH PASSWORD 'new'",
        "ALTER USER app PASSWORD 'new'",
        "ALTER ROLE app PASSWORD 'new' VALID UNTIL '2030-01-01'",
        "CREATE ROLE app2 LOGIN PASSWORD 'p'",
        "CREATE USER app2 WITH PASSWORD 'p'",
    ] {
        assert_eq!(
            verdict(&e, s),
            ("approve", "approve-credential-rotation".to_owned()),
            "{s}"
        );
    }
    for s in [
        "ALTER ROLE app SUPERUSER",
        "ALTER ROLE app WITH SUPERUSER PASSWORD 'x'",
        "CREATE ROLE boss SUPERUSER PASSWORD 'x'",
        "CREATE USER boss WITH SUPERUSER PASSWORD 'x'",
        "CREATE ROLE r",
        "ALTER ROLE app RENAME TO x",
        "ALTER ROLE app SET role = 'admin'",
        "CREATE ROLE r2 PASSWORD 'x' IN ROLE pg_read_server_files",
    ] {
        assert_eq!(
            verdict(&e, s),
            ("deny", "no-role-management".to_owned()),
            "{s}"
        );
    }
    for s in [
        "DROP TABLE cards",
        "DROP SCHEMA public CASCADE",
        "DROP FUNCTION f()",
        "TRUNCATE cards",
        "ALTER TABLE cards DROP COLUMN pan",
    ] {
        assert_eq!(verdict(&e, s).0, "deny", "{s}");
    }
}

#[test]
fn every_cardholder_read_needs_a_bound_where_it_reads() {
    let e = engine();
    for s in [
        "select array(select card_number from cards) limit 1",
        "SELECT ARRAY(SELECT pan FROM cards) FROM orders LIMIT 1",
        "SELECT (SELECT pan FROM cards c WHERE c.id = g LIMIT 1) FROM generate_series(1, 100000) g",
        "SELECT * FROM (SELECT * FROM cards) s LIMIT 10",
        "WITH c AS (SELECT * FROM cards) SELECT * FROM c LIMIT 10",
        "SELECT * FROM orders o, LATERAL (SELECT pan FROM cards LIMIT 1) c",
        "SELECT * FROM orders WHERE id IN (SELECT order_id FROM payments) LIMIT 5",
        "SELECT 1 UNION ALL (SELECT 1 FROM cards) LIMIT 5000",
        "SELECT to_json(array(select pan from cards)) LIMIT 1",
    ] {
        assert_eq!(
            verdict(&e, s),
            ("approve", "approve-unbounded-cardholder-select".to_owned()),
            "{s}"
        );
    }
    for s in [
        "SELECT string_agg(card_number, ',') FROM (SELECT card_number FROM cards LIMIT 10) s",
        "SELECT jsonb_agg(c) FROM (SELECT * FROM cards LIMIT 10) c",
        "SELECT xmlagg(pan::xml) FROM (SELECT pan FROM cards LIMIT 5) s",
        "SELECT array_agg(pan) FROM (SELECT pan FROM cards LIMIT 5) s",
    ] {
        assert_eq!(
            verdict(&e, s),
            ("approve", "approve-cardholder-aggregation".to_owned()),
            "{s}"
        );
    }
    for s in [
        "SELECT * FROM cards LIMIT 10",
        "(SELECT * FROM cards) LIMIT 10",
        "SELECT * FROM (SELECT * FROM cards LIMIT 10) s",
        "WITH x AS (SELECT * FROM cards LIMIT 5) SELECT * FROM x",
        "SELECT * FROM orders o, LATERAL (SELECT pan FROM cards LIMIT 1) c LIMIT 10",
        "SELECT array(SELECT pan FROM cards LIMIT 3) LIMIT 1",
        "SELECT * FROM cards UNION ALL SELECT * FROM payments LIMIT 20",
    ] {
        assert_eq!(verdict(&e, s), ("allow", "default".to_owned()), "{s}");
    }
}

#[test]
fn unsafe_client_encodings_are_refused_on_set() {
    let e = dbwarden_policy::Engine::new(dbwarden_policy::Policy::embedded_default());
    let id = dbwarden_policy::Identity::default();
    let t = dbwarden_policy::Target {
        addr: None,
        protocol: dbwarden_policy::Protocol::Postgres,
        database: None,
        user: None,
    };
    for sql in [
        "SET client_encoding TO 'SJIS'",
        "SET client_encoding = sjis",
        "set CLIENT_ENCODING to 'Shift_JIS'",
        "SET \"client_encoding\" TO 'BIG5'",
        "SET SESSION client_encoding TO 'gbk'",
        "SET LOCAL client_encoding TO 'GB18030'",
        "SET NAMES 'UHC'",
        "SET client_encoding TO E'JOHAB'",
    ] {
        let v = e.decide(sql, dbwarden_policy::Dialect::Postgres, &id, &t);
        assert_eq!(v.action, dbwarden_policy::Action::Deny, "{sql}: {v:?}");
        assert!(
            v.message.contains("client encoding") || v.message.contains("client_encoding"),
            "{sql}: {}",
            v.message
        );
    }
    for sql in [
        "SET client_encoding TO 'UTF8'",
        "SET client_encoding = 'LATIN1'",
        "SET NAMES 'WIN1252'",
    ] {
        let v = e.decide(sql, dbwarden_policy::Dialect::Postgres, &id, &t);
        assert_eq!(v.action, dbwarden_policy::Action::Allow, "{sql}: {v:?}");
    }
}

#[test]
fn a_policy_can_allow_an_encoding_dbwarden_decodes() {
    let p = dbwarden_policy::Policy::parse(
        "[policy]\nname = \"sjis\"\ndefault = \"allow\"\nclient_encodings = [\"SJIS\", \"big5\"]\n",
        "t",
    )
    .unwrap();
    assert!(p.allows_client_encoding("Shift_JIS") && p.allows_client_encoding("WIN950"));
    assert!(!p.allows_client_encoding("GBK"));
    assert!(p.allows_client_encoding("LATIN1"));
    let e = dbwarden_policy::Engine::new(p);
    let id = dbwarden_policy::Identity::default();
    let t = dbwarden_policy::Target {
        addr: None,
        protocol: dbwarden_policy::Protocol::Postgres,
        database: None,
        user: None,
    };
    // Allowed from the start of a session only: a SET would let a statement pipelined
    // behind it be decoded the old way and run the new.
    let v = e.decide(
        "SET client_encoding TO 'SJIS'",
        dbwarden_policy::Dialect::Postgres,
        &id,
        &t,
    );
    assert_eq!(v.action, dbwarden_policy::Action::Deny, "{v:?}");
    assert!(v.message.contains("only from the start"), "{}", v.message);
    for (sql, changes) in [
        ("SET client_encoding TO 'UTF8'", true),
        ("SET NAMES 'LATIN1'", true),
        ("RESET client_encoding", true),
        ("RESET ALL", true),
        ("DISCARD ALL", true),
        ("SELECT set_config('client_encoding', 'UTF8', false)", true),
        ("SET work_mem = '8MB'", false),
        ("SELECT 1", false),
    ] {
        let v = e.decide(sql, dbwarden_policy::Dialect::Postgres, &id, &t);
        assert_eq!(v.statements[0].changes_client_encoding, changes, "{sql}");
    }
    let v = e.decide(
        "SET NAMES 'GBK'",
        dbwarden_policy::Dialect::Postgres,
        &id,
        &t,
    );
    assert_eq!(v.action, dbwarden_policy::Action::Deny, "{v:?}");
    // JOHAB cannot be decoded, and LATIN1 needs no permission: both are policy errors.
    for bad in ["JOHAB", "LATIN1", "nonsense"] {
        let src = format!(
            "[policy]\nname = \"x\"\ndefault = \"allow\"\nclient_encodings = [\"{bad}\"]\n"
        );
        let err = dbwarden_policy::Policy::parse(&src, "t")
            .unwrap_err()
            .to_string();
        assert!(err.contains("client_encodings"), "{bad}: {err}");
    }
}
