//! Clients in a non-UTF-8 client encoding work, and the policy sees the names they send as the
//! server does (issue 17): psql with PGCLIENTENCODING=LATIN1 sends LATIN1 bytes (é = 0xE9)
//! through the eBPF redirect; dbwarden decodes them with the client encoding the server
//! reported, so a rule on the table `réservé` denies it (the table is still there), other
//! statements run, answers come back in LATIN1 and card numbers are masked.

mod e2e_common;

use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

use dbwarden_tests::*;
use e2e_common::*;

const POLICY: &str = "[policy]\nname = \"latin1\"\ndefault = \"allow\"\n\n[[rule]]\nname = \"no-reserved-table\"\naction = \"deny\"\ntables = [\"r\u{e9}serv\u{e9}\"]\n";

fn latin1(s: &str) -> Vec<u8> {
    s.chars()
        .map(|c| u8::try_from(u32::from(c)).expect("a LATIN1 character"))
        .collect()
}

fn psql_latin1(d: &Daemon, db: &str, sql: &str) -> std::process::Output {
    let mut c = psql_cmd(Some(d), db);
    c.env("PGCLIENTENCODING", "LATIN1")
        .args(["-v", "ON_ERROR_STOP=1", "-c"])
        .arg(std::ffi::OsStr::from_bytes(&latin1(sql)));
    output_timeout(c, None, Duration::from_secs(60))
}

#[test]
fn latin1_clients_are_judged_on_what_the_server_reads() {
    let d = Daemon::start_with(DaemonOpts {
        policy: Some(POLICY.into()),
        ..Default::default()
    });
    let db = PgDb::create("latin1");
    psql_direct(
        &db.name,
        "create table \"réservé\" (id int, libellé text); insert into \"réservé\" values (1, 'été');
         create table cartes (id int, numéro text); insert into cartes values (1, 'carte 4111111111111111');",
    );

    let out = psql_latin1(&d, &db.name, "select libellé from réservé");
    assert!(!out.status.success(), "the rule on réservé did not apply");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no-reserved-table"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = psql_latin1(&d, &db.name, "drop table \"réservé\"");
    assert!(
        !out.status.success(),
        "DROP of réservé was not judged as réservé"
    );
    assert_eq!(
        psql_direct(&db.name, "select count(*) from \"réservé\""),
        "1",
        "the table is still there"
    );

    let out = psql_latin1(
        &d,
        &db.name,
        "select 'déjà vu' as libellé, numéro from cartes",
    );
    assert_ok(&out, "a LATIN1 query");
    // The answer is in LATIN1, as the client asked, and the card number is masked.
    assert!(
        out.stdout
            .windows(7)
            .any(|w| w == latin1("déjà vu").as_slice()),
        "{:?}",
        out.stdout
    );
    assert_no_pan("LATIN1 answer", &out.stdout, &["4111111111111111"]);
    finish_and_scan(&d, &["4111111111111111"]);
}

/// A policy may allow SJIS; statements are then decoded before they are judged, so the byte
/// pair 0x83 0x5C is the katakana the server reads, not a backslash that would hide the rest
/// of the string: `select E'ソ'; drop table t; --'` is judged as the two statements the server
/// runs, and the DROP is denied.
#[test]
fn an_allowed_sjis_session_is_judged_on_the_decoded_text() {
    let policy = "[policy]\nname = \"sjis\"\ndefault = \"allow\"\nclient_encodings = [\"SJIS\"]\n\n[[rule]]\nname = \"no-drop\"\naction = \"deny\"\nkind = [\"drop\"]\n";
    let d = Daemon::start_with(DaemonOpts {
        policy: Some(policy.into()),
        ..Default::default()
    });
    let db = PgDb::create("sjis");
    psql_direct(
        &db.name,
        "create table t (id int); insert into t values (1)",
    );
    let mut sql = b"select E'".to_vec();
    sql.extend_from_slice(&[0x83, 0x5c]);
    sql.extend_from_slice(b"'; drop table t; --'");
    let mut c = psql_cmd(Some(&d), &db.name);
    c.env("PGCLIENTENCODING", "SJIS")
        .args(["-v", "ON_ERROR_STOP=1", "-c"])
        .arg(std::ffi::OsStr::from_bytes(&sql));
    let out = output_timeout(c, None, Duration::from_secs(60));
    assert!(!out.status.success(), "the hidden DROP was not refused");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no-drop"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        psql_direct(&db.name, "select count(*) from t"),
        "1",
        "table t was dropped"
    );
    // And the katakana itself is fine.
    let mut sql = b"select E'".to_vec();
    sql.extend_from_slice(&[0x83, 0x5c]);
    sql.extend_from_slice(b"' as k");
    let mut c = psql_cmd(Some(&d), &db.name);
    c.env("PGCLIENTENCODING", "SJIS")
        .args(["-c"])
        .arg(std::ffi::OsStr::from_bytes(&sql));
    let out = output_timeout(c, None, Duration::from_secs(60));
    assert_ok(&out, "an SJIS string");
    assert_eq!(out.stdout, [0x83, 0x5c, b'\n']);
    // The encoding is fixed for the session: no switching away from it (a statement pipelined
    // behind the switch would be read two ways), nor into it by SET.
    for (enc, sql) in [
        ("SJIS", "SET client_encoding TO 'LATIN1'"),
        ("SJIS", "RESET ALL"),
        ("UTF8", "SET client_encoding TO 'SJIS'"),
    ] {
        let mut c = psql_cmd(Some(&d), &db.name);
        c.env("PGCLIENTENCODING", enc).args([
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
            "-c",
            "show client_encoding",
        ]);
        let out = output_timeout(c, None, Duration::from_secs(60));
        assert!(
            !out.status.success(),
            "{enc}: {sql} was accepted: {}",
            stdout(&out)
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("client encoding"),
            "{enc}: {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A raw client: startup with a client encoding, then the given queries in one write
/// (pipelined); prints what came back.
const PY_PIPELINE: &str = r#"
import socket, struct, sys
s = socket.create_connection(("127.0.0.1", 5432))
body = struct.pack("!I", 196608) + b"user\0postgres\0database\0" + sys.argv[1].encode() + b"\0client_encoding\0" + sys.argv[2].encode() + b"\0\0"
s.sendall(struct.pack("!I", len(body) + 4) + body)
s.settimeout(20)
got = b""
def until(n):
    global got
    while got.count(b"Z\x00\x00\x00\x05") < n:
        chunk = s.recv(65536)
        if not chunk:
            return
        got += chunk
until(1)
qs = [bytes.fromhex(h) + b"\0" for h in sys.argv[3:]]
s.sendall(b"".join(b"Q" + struct.pack("!I", len(q) + 4) + q for q in qs))
until(1 + len(qs))
sys.stdout.write(got.decode("latin-1"))
"#;

/// Switching encodings by SET with the next statement pipelined behind it: dbwarden waits for
/// the server's answer before decoding the next one, so the UTF-8 name `réservé` in it is read
/// as the server reads it and the rule on it applies.
#[test]
fn a_statement_pipelined_behind_an_encoding_switch_is_read_the_new_way() {
    let d = Daemon::start_with(DaemonOpts {
        policy: Some(POLICY.into()),
        ..Default::default()
    });
    let db = PgDb::create("encswitch");
    psql_direct(
        &db.name,
        "create table \"réservé\" (id int); insert into \"réservé\" values (1);",
    );
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let mut c = d.agent("python3");
    c.args([
        "-c",
        PY_PIPELINE,
        &db.name,
        "LATIN1",
        &hex(b"SET client_encoding TO 'UTF8'"),
        &hex("select count(*) from réservé".as_bytes()),
    ]);
    let out = output_timeout(c, None, Duration::from_secs(60));
    let text = stdout(&out);
    assert!(
        text.contains("no-reserved-table"),
        "the rule did not apply: {text}"
    );
    assert!(
        text.contains("client_encoding\0UTF8"),
        "the switch happened: {text}"
    );
}
