//! Column rules match the source column (issue 17): an alias, `t.*`, a view that renames the
//! column, or a view over that view, all still mask the CVV, because RowDescription's table
//! OID and column number resolve (on a side connection, cached) to `cards.cvv`. psql and the
//! binary tokio-postgres agent through the eBPF redirect, PostgreSQL 15.

mod e2e_common;

use std::time::Duration;

use dbwarden_tests::*;
use e2e_common::*;

const CVVS: [&str; 2] = ["917", "8823"];

#[track_caller]
fn assert_no_cvv(what: &str, text: &str) {
    assert_no_field(what, text, &CVVS, &['|']);
}

#[test]
fn aliases_and_views_of_a_sensitive_column_are_masked() {
    let d = Daemon::start_with(DaemonOpts {
        policy: Some(PERMISSIVE_POLICY.into()),
        ..Default::default()
    });
    let db = PgDb::create("srccols");
    psql_direct(
        &db.name,
        "create table cards (id int, holder text, cvv text);
         insert into cards values (1, 'ann', '917'), (2, 'bob', '8823');
         create view v as select id, cvv as code, holder from cards;
         create view vv as select code as z, id from v;
         create schema s; create view s.w as select c.cvv as k from cards c;",
    );
    for sql in [
        "select id, cvv as x from cards order by id",
        "select c.* from cards c order by id",
        "select id, code from v order by id",
        "select * from v order by id",
        "select z from vv order by id",
        "select k from s.w",
        "select q.x from (select cvv as x from cards) q",
    ] {
        let mut c = psql_cmd(Some(&d), &db.name);
        c.args(["-v", "ON_ERROR_STOP=1", "-c", sql]);
        let out = output_timeout(c, None, Duration::from_secs(60));
        assert_ok(&out, sql);
        let text = stdout(&out);
        assert_eq!(text.lines().count(), 2, "{sql}: {text}");
        assert_no_cvv(sql, &text);
    }
    // Other columns are untouched.
    let mut c = psql_cmd(Some(&d), &db.name);
    c.args(["-c", "select holder as owner, id as n from v order by id"]);
    let out = output_timeout(c, None, Duration::from_secs(60));
    assert_ok(&out, "holder");
    assert_eq!(stdout(&out), "ann|1\nbob|2");
    // The binary extended-protocol client gets the same.
    let bin = agent_bin().with_file_name("dbw-mask-agent");
    let mut c = d.agent(bin);
    c.arg(PG_ADDR).arg(&db.name).args([
        "select cvv as x from cards order by id",
        "select code from v order by id",
    ]);
    let out = output_timeout(c, None, Duration::from_secs(60));
    assert_ok(&out, "dbw-mask-agent");
    for cvv in CVVS {
        assert!(
            !stdout(&out).contains(&format!("\"{cvv}\"")),
            "binary client got CVV {cvv}: {}",
            stdout(&out)
        );
    }
    assert_eq!(
        psql_direct(
            &db.name,
            "select string_agg(cvv, ',' order by id) from cards"
        ),
        "917,8823"
    );
    finish_and_scan(&d, &[]);
    let shown = all_sessions_shown(&d);
    for cvv in CVVS {
        assert!(
            !shown.contains(&format!("|{cvv}")) && !shown.contains(&format!("\"{cvv}\"")),
            "session file holds CVV {cvv}"
        );
    }
}
