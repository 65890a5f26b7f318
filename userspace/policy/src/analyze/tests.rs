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
    let f = one("SELECT 1 FROM t WHERE x = (SELECT max(pg_catalog.lo_export(1, '/tmp/x')) FROM u)");
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
