//! Metrics: the daemon's counters follow what really happened (sessions, allowed / denied /
//! held statements, approval outcomes and wait time) and carry no statement text.

use std::{
    io::{Read, Write},
    net::TcpStream,
    process::Command,
    time::{Duration, Instant},
};

use dbwarden_tests::*;

fn scrape(port: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to metrics");
    s.write_all(b"GET /metrics HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200 OK"), "{out}");
    out
}

fn value(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("dbwarden_{name} ")))
        .unwrap_or_else(|| panic!("no metric {name} in\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn counters_follow_decisions_and_approvals() {
    let mport = free_port();
    let d = Daemon::start_with(DaemonOpts {
        // Root approves a root agent's statement here: the point is the counters.
        extra_config: format!(
            "metrics_listen = \"127.0.0.1:{mport}\"\n[approvals]\nallow_self_approval = true\n"
        ),
        ..Default::default()
    });
    let db = PgDb::create("metrics");
    psql_direct(&db.name, "create table cards (id int, card_number text); insert into cards values (1, '4111111111111111')");

    let ok = psql(&d, &db.name, "select 1");
    assert_ok(&ok, "allowed select");
    let denied = psql(&d, &db.name, "truncate cards");
    assert!(!denied.status.success());
    assert!(String::from_utf8_lossy(&denied.stderr).contains("no-truncate"));

    // A held statement, approved by root over the control socket.
    let run = d.dir.join("run");
    let held = d
        .agent("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            &db.name,
            "-X",
            "-At",
            "-c",
            "select card_number from cards",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let id = loop {
        let out = Command::new(dbwarden_bin())
            .args(["approvals", "--runtime-dir"])
            .arg(&run)
            .arg("list")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        if let Some(line) = text.lines().nth(1) {
            break line.split_whitespace().next().unwrap().to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no pending approval appeared: {text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    std::thread::sleep(Duration::from_millis(200));
    let out = Command::new(dbwarden_bin())
        .args(["approvals", "--runtime-dir"])
        .arg(&run)
        .args(["approve", &id, "--reason", "metrics test"])
        .output()
        .unwrap();
    assert_ok(&out, "approve");
    let held = held.wait_with_output().unwrap();
    assert_ok(&held, "held select after approval");
    assert_eq!(stdout(&held), "************1111");

    // Counters settle once the sessions have ended.
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let t = scrape(mport);
        if value(&t, "sessions_active") == 0 && value(&t, "approvals_approved_total") == 1 {
            break t;
        }
        assert!(Instant::now() < deadline, "metrics did not settle:\n{t}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(value(&text, "sessions_total"), 3, "{text}");
    assert!(value(&text, "statements_allowed_total") >= 1, "{text}");
    assert_eq!(value(&text, "statements_denied_total"), 1, "{text}");
    assert_eq!(value(&text, "statements_held_total"), 1, "{text}");
    assert!(value(&text, "approval_wait_ms_total") >= 200, "{text}");
    assert_eq!(value(&text, "approvals_denied_total"), 0, "{text}");
    assert!(value(&text, "bytes_server_to_client_total") > 0, "{text}");
    assert!(
        !text.contains("4111") && !text.contains("cards"),
        "metrics must carry no data:\n{text}"
    );
}
