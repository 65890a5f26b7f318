//! COPY TO STDOUT is read the way the statement says (issue 17): DELIMITER, FORMAT csv, QUOTE,
//! ESCAPE, NULL and HEADER come from the statement's analysis, so the CVV column rule hits the
//! CVV field whatever the layout; each COPY of a multi-statement query gets its own columns.
//! psql through the eBPF redirect against PostgreSQL 15; the agent's output, the server's data
//! and the session files are checked.

mod e2e_common;

use std::time::Duration;

use dbwarden_tests::*;
use e2e_common::*;

const CVVS: [&str; 2] = ["917", "8823"];

fn psql_copy(d: &Daemon, db: &str, sql: &str) -> std::process::Output {
    let mut c = psql_cmd(Some(d), db);
    c.args(["-v", "ON_ERROR_STOP=1", "-c", sql]);
    output_timeout(c, None, Duration::from_secs(60))
}

#[track_caller]
fn assert_no_cvv(what: &str, text: &str) {
    assert_no_field(what, text, &CVVS, &[',', ';', '|', '\t', '\'']);
}

#[test]
fn copy_layouts_follow_the_statement() {
    let d = Daemon::start_with(DaemonOpts {
        policy: Some(PERMISSIVE_POLICY.into()),
        ..Default::default()
    });
    let db = PgDb::create("copyopts");
    psql_direct(
        &db.name,
        "create table cards (id int, note text, cvv text);
         insert into cards values (1, 'a;b''c', '917'), (2, 'x,y|z', '8823'), (3, 'none', null);",
    );

    let out = psql_copy(
        &d,
        &db.name,
        "COPY (select id, cvv from cards order by id) TO STDOUT (DELIMITER ',')",
    );
    assert_ok(&out, "delimiter ,");
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 3, "{text}");
    assert!(text.starts_with("1,") && text.ends_with("3,\\N"), "{text}");
    assert_no_cvv("DELIMITER ','", &text);

    let out = psql_copy(
        &d,
        &db.name,
        "COPY (select id, note, cvv from cards order by id) TO STDOUT (FORMAT csv, DELIMITER ';', QUOTE '''', ESCAPE E'\\\\', NULL 'nil', HEADER)",
    );
    assert_ok(&out, "csv ;");
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0], "id;note;cvv",
        "the header is names, unmasked: {text}"
    );
    assert!(lines[1].starts_with("1;'a;b\\'c';"), "{text}");
    assert_eq!(lines[3], "3;none;nil", "NULL stays NULL: {text}");
    assert_no_cvv("csv ;", &text);

    let out = psql_copy(
        &d,
        &db.name,
        "COPY cards (id, cvv) TO STDOUT WITH CSV HEADER QUOTE AS '|'",
    );
    assert_ok(&out, "legacy csv");
    assert_no_cvv("legacy CSV", &stdout(&out));

    // Two COPYs in one query string: the second one's only column is the CVV.
    let out = psql_copy(
        &d,
        &db.name,
        "COPY (select id, note from cards order by id) TO STDOUT; COPY (select cvv from cards order by id) TO STDOUT",
    );
    assert_ok(&out, "two copies");
    let text = stdout(&out);
    assert!(
        text.contains("1\ta;b'c"),
        "the first COPY is untouched: {text}"
    );
    assert_eq!(text.lines().count(), 6, "{text}");
    assert_no_cvv("second COPY", &text);

    // The server still holds them.
    assert_eq!(
        psql_direct(
            &db.name,
            "select string_agg(cvv, ',' order by id) from cards"
        ),
        "917,8823"
    );
    finish_and_scan(&d, &[]);
    assert_no_cvv("session files", &all_sessions_shown(&d));
}
