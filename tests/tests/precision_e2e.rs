//! Precision through the daemon: values that are not card data come back byte-identical. Before
//! the whole-token rules, `select md5(g::text) from generate_series(1, 2000000) g` came back
//! with 1,204 rows altered (digit runs inside digests pass Luhn about one time in ten); random
//! UUIDs, uppercase digests (IBAN-shaped runs) and IBAN-like references fared similarly. The
//! card numbers in the same result are still masked.

mod e2e_common;

use std::time::Duration;

use dbwarden_tests::*;
use e2e_common::*;

/// Digests, UUIDs (digit-heavy, to provoke look-alikes), creditor references, timestamps,
/// addresses: one row each per `g`.
const CORPUS: &str = "select md5(g::text), upper(md5((g * 7)::text)), encode(sha256(g::text::bytea), 'hex'), \
     regexp_replace(md5('u' || g), '^(.{8})(.{4})(.{4})(.{4})(.{12})$', '\\1-\\2-\\3-\\4-\\5'), \
     translate(md5('v' || g), 'abcdef', '012345')::uuid, \
     'RF' || lpad((g % 100)::text, 2, '0') || ' ' || lpad((g * 7919 % 10000)::text, 4, '0') || ' ' || lpad((g * 104729 % 10000)::text, 4, '0') || ' ' || lpad((g * 1299709 % 10000)::text, 4, '0'), \
     timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second 17 microseconds', \
     ('10.0.0.0'::inet + g), '+44 20 ' || lpad((g % 10000)::text, 4, '0') || ' ' || lpad((g * 31 % 10000)::text, 4, '0') \
     from generate_series(1::int8, 300000) g order by g";

#[test]
fn digests_uuids_and_references_come_back_byte_identical() {
    let d = Daemon::start_with(DaemonOpts {
        policy: Some(PERMISSIVE_POLICY.into()),
        ..Default::default()
    });
    let db = PgDb::create("precision");
    let direct = psql_direct(&db.name, CORPUS);
    assert_eq!(direct.lines().count(), 300_000);
    let mut c = psql_cmd(Some(&d), &db.name);
    c.args(["-c", CORPUS]);
    let out = output_timeout(c, None, Duration::from_secs(300));
    assert_ok(&out, "psql through dbwarden");
    let through = stdout(&out);
    let differing: Vec<(&str, &str)> = direct
        .lines()
        .zip(through.lines())
        .filter(|(a, b)| a != b)
        .take(5)
        .collect();
    assert!(
        differing.is_empty() && direct.lines().count() == through.lines().count(),
        "rows altered through dbwarden, e.g. {differing:?}"
    );

    // The same session still masks a card number next to a digest and inside text.
    let mut c = psql_cmd(Some(&d), &db.name);
    c.args([
        "-c",
        "select md5('x') || ' 4111111111111111', 'ref RF71 4210 0000 0012, card 5555 5555 5555 4444'",
    ]);
    let out = output_timeout(c, None, Duration::from_secs(60));
    assert_ok(&out, "psql through dbwarden");
    let text = stdout(&out);
    assert!(
        text.contains(&psql_direct(&db.name, "select md5('x')")),
        "{text}"
    );
    assert!(text.contains("RF71 4210 0000 0012"), "{text}");
    // (Not the stricter oracle here: it would flag the reference, which is the point.)
    for p in ["4111111111111111", "5555555555554444"] {
        for s in spellings(p) {
            assert!(!text.contains(&s), "{s} reached the agent: {text}");
        }
    }
    // The strict test oracle (any Luhn-valid run) would flag the corpus itself, which is full
    // of look-alikes: the log and the session files are searched for the real card numbers.
    let t = Duration::from_secs(60);
    d.assert_sessions_closed_cleanly(t);
    let sessions = wait_sealed(&d, d.sessions_started().len(), t);
    assert_eq!(sessions.len(), 2);
    let mut recorded = d.log_text().into_bytes();
    for f in session_files(&sessions_dir(&d)) {
        let show = sessions_cli(&sessions_dir(&d), &["show", &f.to_string_lossy()]);
        assert_ok(&show, "sessions show");
        recorded.extend_from_slice(&show.stdout);
    }
    let recorded = String::from_utf8_lossy(&recorded);
    for p in ["4111111111111111", "5555555555554444"] {
        for s in spellings(p) {
            assert!(
                !recorded.contains(&s),
                "{s} is in the log or a session file"
            );
        }
    }
}
