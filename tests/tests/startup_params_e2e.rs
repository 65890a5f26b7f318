//! Startup parameters are judged like SET (issue 17): `role`, `session_authorization` and any
//! other setting in the startup packet or in `options` (`-c`, `-c` glued, `--name=value`) go to
//! the policy as the SET they are; server switches (`-P`, `-d 5`) are refused; what drivers
//! normally send passes. Real psql (PGOPTIONS) and a raw client, through the eBPF redirect,
//! with the embedded PCI policy; the server-side effect and the session file are checked.

mod e2e_common;

use std::time::Duration;

use dbwarden_tests::*;
use e2e_common::*;

const T: Duration = Duration::from_secs(60);

/// psql through the daemon with `PGOPTIONS`, recording `current_user` into `seen` first.
fn psql_with_options(d: &Daemon, db: &str, options: &str, sql: &str) -> std::process::Output {
    let mut c = psql_cmd(Some(d), db);
    c.env("PGOPTIONS", options)
        .args(["-v", "ON_ERROR_STOP=1", "-c", sql]);
    output_timeout(c, None, T)
}

fn all(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A raw startup packet with extra parameters; prints what the server (through dbwarden) sent.
const PY_RAW: &str = r#"
import socket, struct, sys
s = socket.create_connection(("127.0.0.1", 5432))
extra = b""
for kv in sys.argv[2:]:
    k, v = kv.split("=", 1)
    extra += k.encode() + b"\0" + v.encode() + b"\0"
body = struct.pack("!I", 196608) + b"user\0postgres\0database\0" + sys.argv[1].encode() + b"\0" + extra + b"\0"
s.sendall(struct.pack("!I", len(body) + 4) + body)
s.settimeout(10)
got = b""
while True:
    try:
        chunk = s.recv(65536)
    except socket.timeout:
        break
    if not chunk:
        break
    got += chunk
    if got.endswith(b"Z\x00\x00\x00\x05I"):
        break
sys.stdout.write(got.decode("latin-1"))
"#;

#[test]
fn startup_settings_follow_the_policy() {
    let d = Daemon::start();
    let db = PgDb::create("startup");
    let role = format!("{}_r", db.name);
    psql_direct(
        &db.name,
        &format!("create role {role}; grant {role} to postgres; create table seen (who text); grant all on seen to {role}"),
    );
    let record = "insert into seen select current_user";

    // A role switch, however it is spelled in options: refused before the server sees it.
    for opts in [
        format!("-c role={role}"),
        format!("-crole={role}"),
        format!("--role={role}"),
        format!("-c application_name=x -c session_authorization={role}"),
    ] {
        let out = psql_with_options(&d, &db.name, &opts, record);
        assert!(!out.status.success(), "{opts}: {}", all(&out));
        let text = all(&out);
        assert!(text.contains("refused"), "{opts}: {text}");
        assert!(text.contains("no-role-management"), "{opts}: {text}");
    }
    // Server switches are refused outright.
    for opts in ["-P", "-d 5", "-c"] {
        let out = psql_with_options(&d, &db.name, opts, record);
        assert!(!out.status.success(), "{opts}: {}", all(&out));
        assert!(
            all(&out).contains("is not allowed"),
            "{opts}: {}",
            all(&out)
        );
    }
    // The same parameters straight in the startup packet.
    for kv in [
        format!("role={role}"),
        format!("session_authorization={role}"),
    ] {
        let mut c = d.agent("python3");
        c.args(["-c", PY_RAW, &db.name, &kv]);
        let out = output_timeout(c, None, T);
        let text = stdout(&out);
        assert!(text.contains("42501"), "{kv}: {text}");
        assert!(text.contains("refused"), "{kv}: {text}");
        assert!(
            !text.contains("Z\0\0\0\x05I"),
            "{kv}: the session must not start: {text}"
        );
    }
    // Nothing ran as the role: the table is empty.
    assert_eq!(psql_direct(&db.name, "select count(*) from seen"), "0");

    // What drivers send, and settings the policy allows, work and take effect.
    let out = psql_with_options(
        &d,
        &db.name,
        "-c statement_timeout=5000 -c work_mem=8MB -c DateStyle=ISO,DMY",
        "insert into seen select current_setting('work_mem') || ' ' || current_setting('statement_timeout')",
    );
    assert_ok(&out, "allowed startup settings");
    assert_eq!(psql_direct(&db.name, "select who from seen"), "8MB 5s");

    // The refusals are in the session files, with the rule.
    let t = Duration::from_secs(60);
    let n = d.sessions_started().len();
    let sessions = wait_sealed(&d, n, t);
    assert_eq!(sessions.len(), n);
    let shown = all_sessions_shown(&d);
    assert!(
        shown.matches("no-role-management").count() >= 6,
        "every refused role switch is recorded: {shown}"
    );
}
