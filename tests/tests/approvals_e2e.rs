//! Issue 7: just-in-time approvals, end to end through the real daemon.
//!
//! Real kernel, real `dbwarden` binary, real PostgreSQL 15, real psql and tokio-postgres, the
//! real `dbwarden approvals` CLI over the control socket, the HTTP API, webhooks to a local
//! receiver, and the session recordings; loopback only. Everything waits by polling with a
//! deadline, never by sleeping and hoping.

mod e2e_common;

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Output, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use dbwarden_tests::*;
use e2e_common::{assert_no_pan, session_files, sessions_cli, wait_sealed};
use serde_json::Value;

const T: Duration = Duration::from_secs(60);
const RULE: &str = "approve-unbounded-cardholder-select";
const PANS: &[&str] = &["4111111111111111", "5555555555554444", "378282246310005"];

/// A database with a cardholder table `cards(id, pan, note)`.
fn setup(tag: &str) -> PgDb {
    let db = PgDb::create(tag);
    psql_direct(
        &db.name,
        "create table cards (id int primary key, pan text, note text); \
         insert into cards values (1, '4111111111111111', 'alpha'), (2, '5555555555554444', 'beta'), (3, '378282246310005', 'gamma')",
    );
    db
}

/// An agent process started in the background; its output is collected as it arrives.
struct Bg {
    child: Option<Child>,
    pid: u32,
    out: Arc<Mutex<Vec<u8>>>,
    err: Arc<Mutex<Vec<u8>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
    what: String,
}

fn collect(
    mut r: impl Read + Send + 'static,
    into: Arc<Mutex<Vec<u8>>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut b = [0u8; 4096];
        while let Ok(n) = r.read(&mut b) {
            if n == 0 {
                break;
            }
            into.lock().unwrap().extend_from_slice(&b[..n]);
        }
    })
}

impl Bg {
    fn spawn(mut cmd: Command, what: &str) -> Bg {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        let out = Arc::new(Mutex::new(Vec::new()));
        let err = Arc::new(Mutex::new(Vec::new()));
        let threads = vec![
            collect(child.stdout.take().unwrap(), out.clone()),
            collect(child.stderr.take().unwrap(), err.clone()),
        ];
        Bg {
            pid: child.id(),
            child: Some(child),
            out,
            err,
            threads,
            what: what.to_string(),
        }
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.err.lock().unwrap()).into_owned()
    }

    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().unwrap()).into_owned()
    }

    /// Approval ids announced so far in "held for approval #ID" notices.
    fn held_ids(&self) -> Vec<String> {
        held_ids(&self.stderr())
    }

    /// Waits until the `n`-th (1-based) statement is held; returns its approval id.
    #[track_caller]
    fn wait_held(&mut self, n: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ids = self.held_ids();
            if ids.len() >= n {
                return ids[n - 1].clone();
            }
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "{} exited ({st}) before statement {n} was held\nstdout: {}\nstderr: {}",
                    self.what,
                    self.stdout(),
                    self.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{}: statement {n} not held within 30 s; stderr: {}",
                self.what,
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill with our own child's pid and a valid signal.
        assert_eq!(unsafe { libc::kill(self.pid as i32, sig) }, 0);
    }

    /// Waits for the process to exit (panics after `timeout`).
    #[track_caller]
    fn finish(mut self, timeout: Duration) -> Output {
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{} did not finish within {timeout:?}\nstdout: {}\nstderr: {}",
                    self.what,
                    self.stdout(),
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        Output {
            status,
            stdout: self.out.lock().unwrap().clone(),
            stderr: self.err.lock().unwrap().clone(),
        }
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn held_ids(text: &str) -> Vec<String> {
    text.match_indices("held for approval #")
        .map(|(i, m)| {
            text[i + m.len()..]
                .chars()
                .take_while(char::is_ascii_alphanumeric)
                .collect()
        })
        .collect()
}

/// psql in the cgroup, VERBOSITY=verbose, one `-c` per statement, started in the background.
fn psql_bg(d: &Daemon, db: &str, sqls: &[&str]) -> Bg {
    let mut c = psql_cmd(Some(d), db);
    c.args(["-v", "VERBOSITY=verbose"]);
    for s in sqls {
        c.args(["-c", s]);
    }
    Bg::spawn(c, &format!("psql {sqls:?}"))
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// `[approvals] allow_self_approval = true`: the agents of these tests run as root and root
/// approves them. Tests whose point is not self-approval use it; the default (refused) is
/// tested by `root_approver_of_a_root_agent_is_refused_by_default`.
const SELF_APPROVAL: &str = "[approvals]\nallow_self_approval = true\n";

/// A daemon that lets root approve root agents ([`SELF_APPROVAL`]).
fn start_self_approving() -> Daemon {
    Daemon::start_with(DaemonOpts {
        extra_config: SELF_APPROVAL.into(),
        ..Default::default()
    })
}

fn runtime_dir(d: &Daemon) -> PathBuf {
    d.dir.join("run")
}

/// `dbwarden approvals --runtime-dir RUN ARGS...` as root.
fn approvals(d: &Daemon, args: &[&str]) -> Output {
    let mut c = Command::new(dbwarden_bin());
    c.arg("approvals")
        .arg("--runtime-dir")
        .arg(runtime_dir(d))
        .args(args);
    output_timeout(c, None, Duration::from_secs(30))
}

#[track_caller]
fn approvals_ok(d: &Daemon, args: &[&str]) -> String {
    let out = approvals(d, args);
    assert_ok(&out, &format!("dbwarden approvals {args:?}"));
    stdout(&out)
}

/// Polls `approvals show ID` until its output contains `needle`; returns the output.
#[track_caller]
fn wait_show(d: &Daemon, id: &str, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = approvals(d, &["show", id]);
        let last = format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
        if out.status.success() && last.contains(needle) {
            return last;
        }
        assert!(
            Instant::now() < deadline,
            "approval {id}: {needle:?} not shown within 20 s; last: {last}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn denied_by(approver: &str, reason: &str, id: &str, rule: &str) -> String {
    format!("ERROR:  42501: dbwarden: statement denied by {approver}: {reason} (approval #{id}, rule \"{rule}\")")
}

/// Rows of `select * from cards` as psql -At prints them: 3 rows, no clear PAN.
#[track_caller]
fn assert_masked_card_rows(out: &str, rows: usize) {
    let lines: Vec<&str> = out.lines().filter(|l| l.contains('|')).collect();
    assert_eq!(lines.len(), rows, "{out}");
    assert_no_pan("rows released after approval", out.as_bytes(), PANS);
}

/// psql: the unbounded cardholder SELECT is held (the notice names the id and rule, `list` and
/// `show` see it); `approve` releases the rows, masked; `deny --reason` gives 42501 with the
/// approver and reason; the session goes on after a denial.
#[test]
fn psql_held_statement_approved_then_denied() {
    let d = start_self_approving();
    let db = setup("appr_basic");
    let mut p = psql_bg(
        &d,
        &db.name,
        &["select * from cards order by id", "select 'after-approval'"],
    );
    let id = p.wait_held(1);
    let notice = p.stderr();
    assert!(
        notice.contains(&format!(
            "dbwarden: statement held for approval #{id} (rule \"{RULE}\"); waiting up to 300s"
        )),
        "{notice}"
    );
    let list = approvals_ok(&d, &["list"]);
    let row = list
        .lines()
        .find(|l| l.starts_with(&id))
        .unwrap_or_else(|| panic!("{id} not listed: {list}"));
    assert!(row.contains("approve-unbounded"), "{row}");
    assert!(row.contains("select * from cards"), "{row}");
    let show = approvals_ok(&d, &["show", &id]);
    assert!(show.contains("pending, expires in"), "{show}");
    assert!(show.contains(&format!("rule:       {RULE}")), "{show}");
    assert!(
        show.contains("exe /usr/bin/psql") || show.contains("psql"),
        "{show}"
    );
    assert!(show.contains(&format!("/{}", db.name)), "{show}");
    // Not forwarded while pending.
    assert!(
        p.stdout().is_empty(),
        "rows before approval: {}",
        p.stdout()
    );

    let said = approvals_ok(&d, &["approve", &id, "--reason", "ticket OPS-1"]);
    assert_eq!(said, "approved by root (once): ticket OPS-1");
    let out = p.finish(T);
    let (so, se) = text(&out);
    assert!(out.status.success(), "{se}");
    assert_masked_card_rows(&so, 3);
    assert!(so.ends_with("after-approval\n"), "{so}");
    assert!(wait_show(&d, &id, "approved by root (once): ticket OPS-1").contains("approved"));
    // A decided request cannot be decided again.
    let again = approvals(&d, &["deny", &id]);
    assert!(!again.status.success(), "deciding twice succeeded");

    // Deny with a reason: 42501 naming approver, reason, id and rule; the session goes on.
    let mut p = psql_bg(
        &d,
        &db.name,
        &["select pan from cards", "select 'after-denial'"],
    );
    let id2 = p.wait_held(1);
    assert_ne!(id, id2);
    let said = approvals_ok(&d, &["deny", &id2, "--reason", "not during the freeze"]);
    assert_eq!(said, "denied by root: not during the freeze");
    let out = p.finish(T);
    let (so, se) = text(&out);
    assert!(
        se.contains(&denied_by("root", "not during the freeze", &id2, RULE)),
        "{se}"
    );
    assert_eq!(so, "after-denial\n", "nothing but the next statement: {so}");
    assert!(approvals_ok(&d, &["list"]).contains("no pending approvals"));
    d.assert_sessions_closed_cleanly(Duration::from_secs(10));
}

const TIMEOUT_POLICY: &str = r#"
[policy]
name = "e2e-approval-timeouts"
default = "allow"
approval_timeout = "3s"

[[rule]]
name = "hold-cards-briefly"
action = "require_approval"
timeout = "2s"
kind = ["select"]
tables_read = ["cards"]

[[rule]]
name = "hold-payments-policy-timeout"
action = "require_approval"
kind = ["select"]
tables_read = ["payments"]
"#;

/// psql stderr holds a 42501 "no decision within N s" error for approval `id` under `rule`.
#[track_caller]
fn assert_timed_out(stderr: &str, secs: u64, id: &str, rule: &str) {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("ERROR:  42501: dbwarden: statement "))
        .unwrap_or_else(|| panic!("no 42501 error: {stderr}"));
    assert!(
        line.ends_with(&format!(
            "no decision within {secs} s (approval #{id}, rule \"{rule}\")"
        )),
        "{line}"
    );
}

/// No decision in time: 42501 "no decision within N s", with the rule's own timeout (2 s) or,
/// without one, the policy's `approval_timeout` (3 s).
#[test]
fn held_statement_times_out() {
    let d = Daemon::start_with(DaemonOpts {
        policy: Some(TIMEOUT_POLICY.into()),
        ..Default::default()
    });
    let db = setup("appr_timeout");
    psql_direct(&db.name, "create table payments (id int)");
    let start = Instant::now();
    let mut a = psql_bg(&d, &db.name, &["select * from cards", "select 'a-alive'"]);
    let mut b = psql_bg(
        &d,
        &db.name,
        &["select * from payments", "select 'b-alive'"],
    );
    let ida = a.wait_held(1);
    let idb = b.wait_held(1);
    assert!(a.stderr().contains("waiting up to 2s"), "{}", a.stderr());
    assert!(b.stderr().contains("waiting up to 3s"), "{}", b.stderr());
    let oa = a.finish(T);
    let ea = start.elapsed();
    let ob = b.finish(T);
    let eb = start.elapsed();
    let (so, se) = text(&oa);
    assert_timed_out(&se, 2, &ida, "hold-cards-briefly");
    assert_eq!(so, "a-alive\n");
    let (so, se) = text(&ob);
    assert_timed_out(&se, 3, &idb, "hold-payments-policy-timeout");
    assert_eq!(so, "b-alive\n");
    assert!(
        ea >= Duration::from_secs(2) && eb >= Duration::from_secs(3),
        "{ea:?} {eb:?}"
    );
    assert!(
        ea < Duration::from_secs(20) && eb < Duration::from_secs(20),
        "{ea:?} {eb:?}"
    );
    wait_show(&d, &ida, "no decision within 2 s");
    d.wait_for_log(Duration::from_secs(5), "timed_out outcome", |ev| {
        ev.iter().any(|e| {
            e["message"] == "approval decided"
                && e["approval"] == ida.as_str()
                && e["outcome"] == "timed_out"
        })
    });
    // Too late to approve.
    assert!(!approvals(&d, &["approve", &ida]).status.success());
}

/// A CancelRequest while the statement is held (psql on SIGINT; tokio-postgres' cancel token)
/// ends it with 57014 and the session stays usable.
#[test]
fn cancel_while_pending_gives_57014() {
    let d = Daemon::start();
    let db = setup("appr_cancel");
    let mut p = psql_bg(&d, &db.name, &["select * from cards"]);
    let id = p.wait_held(1);
    p.signal(libc::SIGINT);
    let out = p.finish(T);
    let (so, se) = text(&out);
    assert!(
        se.contains(&format!("ERROR:  57014: canceling statement due to user request (dbwarden approval #{id} cancelled)")),
        "{se}"
    );
    assert!(!so.contains('|'), "rows after cancel: {so}");
    wait_show(&d, &id, "cancelled");

    let bin = agent_bin().with_file_name("dbw-policy-agent");
    let mut c = d.agent(bin);
    c.args(["hold-cancel", PG_ADDR, &db.name, "select * from cards"]);
    let out = output_timeout(c, None, T);
    assert_ok(&out, "hold-cancel agent");
    let lines: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let notice = lines[0]["notice"].as_str().unwrap();
    let id2 = held_ids(notice).pop().unwrap();
    assert_eq!(lines[1]["outcome"]["code"], "57014", "{lines:?}");
    assert_eq!(
        lines[1]["outcome"]["message"],
        format!("canceling statement due to user request (dbwarden approval #{id2} cancelled)")
            .as_str()
    );
    assert_eq!(lines[2]["rows"][0][0], "usable", "{lines:?}");
    wait_show(&d, &id2, "cancelled");
    assert!(approvals_ok(&d, &["list"]).contains("no pending approvals"));
}

/// A client that disconnects while held cancels its request ("client disconnected"); other
/// sessions, held or not, are unaffected.
#[test]
fn disconnect_while_pending_cancels_only_that_request() {
    let d = start_self_approving();
    let db = setup("appr_disc");
    let mut victim = psql_bg(&d, &db.name, &["select * from cards"]);
    let mut other = psql_bg(&d, &db.name, &["select * from cards order by id desc"]);
    let vid = victim.wait_held(1);
    let oid = other.wait_held(1);
    victim.signal(libc::SIGKILL);
    let _ = victim.finish(T);
    let shown = wait_show(&d, &vid, "cancelled: client disconnected");
    assert!(!shown.contains("pending"), "{shown}");
    // The other held statement is still pending and can be approved.
    assert!(approvals_ok(&d, &["show", &oid]).contains("pending"));
    let list = approvals_ok(&d, &["list"]);
    assert!(list.contains(&oid) && !list.contains(&vid), "{list}");
    let mut c = psql_cmd(Some(&d), &db.name);
    c.args(["-c", "select note from cards order by id limit 10"]);
    let plain = output_timeout(c, None, T);
    assert_ok(&plain, "unrelated session");
    assert_eq!(stdout(&plain), "alpha\nbeta\ngamma");
    approvals_ok(&d, &["approve", &oid]);
    let out = other.finish(T);
    assert!(out.status.success(), "{}", text(&out).1);
    assert_masked_card_rows(&text(&out).0, 3);
    d.wait_for_log(Duration::from_secs(10), "disconnect recorded", |ev| {
        ev.iter().any(|e| {
            e["message"] == "approval decided"
                && e["approval"] == vid.as_str()
                && e["outcome"] == "cancelled"
        })
    });
}

/// xorshift64*: deterministic shuffling without a dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// Ten sessions each hold a statement; they are approved and denied in a shuffled order
/// (fixed seed): every session gets exactly its own outcome.
#[test]
fn ten_concurrent_holds_each_get_their_own_outcome() {
    const N: usize = 10;
    const SEED: u64 = 0x00db_3a7d_e25e_ed01;
    let d = start_self_approving();
    let db = setup("appr_ten");
    let sqls: Vec<(String, String)> = (0..N)
        .map(|i| {
            (
                format!("select *, {i} as who from cards order by id"),
                format!("select 'done-{i}'"),
            )
        })
        .collect();
    let mut agents: Vec<Bg> = sqls
        .iter()
        .map(|(a, b)| psql_bg(&d, &db.name, &[a, b]))
        .collect();
    let ids: Vec<String> = agents.iter_mut().map(|a| a.wait_held(1)).collect();
    let mut uniq = ids.clone();
    uniq.sort();
    uniq.dedup();
    assert_eq!(uniq.len(), N, "ids not unique: {ids:?}");
    let list = approvals_ok(&d, &["list"]);
    for id in &ids {
        assert!(list.contains(id.as_str()), "{id} not listed: {list}");
    }
    let mut rng = Rng(SEED);
    let mut order: Vec<usize> = (0..N).collect();
    for i in (1..N).rev() {
        order.swap(i, (rng.next() % (i as u64 + 1)) as usize);
    }
    let approve: Vec<bool> = (0..N).map(|_| rng.next().is_multiple_of(2)).collect();
    assert!(
        approve.iter().any(|a| *a) && approve.iter().any(|a| !*a),
        "seed gives one outcome only"
    );
    eprintln!("seed {SEED:#x}: order {order:?}, approve {approve:?}");
    for &i in &order {
        if approve[i] {
            approvals_ok(&d, &["approve", &ids[i], "--reason", &format!("ok-{i}")]);
        } else {
            approvals_ok(&d, &["deny", &ids[i], "--reason", &format!("reason-{i}")]);
        }
    }
    for (i, a) in agents.into_iter().enumerate() {
        let out = a.finish(T);
        let (so, se) = text(&out);
        if approve[i] {
            assert!(out.status.success(), "session {i}: {se}");
            let rows: Vec<&str> = so.lines().filter(|l| l.contains('|')).collect();
            assert_eq!(rows.len(), 3, "session {i}: {so}");
            assert!(
                rows.iter().all(|r| r.ends_with(&format!("|{i}"))),
                "session {i} got someone else's rows: {so}"
            );
            assert_no_pan(&format!("session {i}"), so.as_bytes(), PANS);
        } else {
            assert!(
                se.contains(&denied_by("root", &format!("reason-{i}"), &ids[i], RULE)),
                "session {i}: {se}"
            );
            assert!(!so.contains('|'), "session {i}: rows despite denial: {so}");
        }
        assert!(so.ends_with(&format!("done-{i}\n")), "session {i}: {so}");
        let foreign = held_ids(&se);
        assert_eq!(
            foreign,
            vec![ids[i].clone()],
            "session {i} saw other notices: {se}"
        );
    }
    d.assert_sessions_closed_cleanly(Duration::from_secs(20));
}

/// `--scope session`: the same normalized statement (other literal) passes without a new
/// request in that session — and only in that session.
#[test]
fn session_scope_grant_covers_the_same_statement_in_that_session_only() {
    let d = start_self_approving();
    let db = setup("appr_scope");
    let mut p = psql_bg(
        &d,
        &db.name,
        &[
            "select * from cards where note = 'alpha'",
            "select * from cards where note = 'beta'",
            "select id from cards",
            "select 'end'",
        ],
    );
    let id = p.wait_held(1);
    let said = approvals_ok(&d, &["approve", &id, "--scope", "session"]);
    assert_eq!(said, "approved by root (session)");
    // The next hold must be the third statement: the second (same normalized statement) has
    // already run by then, without a request.
    let id3 = p.wait_held(2);
    let so = p.stdout();
    let rows: Vec<&str> = so.lines().filter(|l| l.contains('|')).collect();
    assert_eq!(rows.len(), 2, "{so}");
    assert!(
        rows[0].ends_with("|alpha") && rows[1].ends_with("|beta"),
        "{so}"
    );
    assert!(approvals_ok(&d, &["show", &id3]).contains("select id from cards"));
    approvals_ok(&d, &["deny", &id3, "--reason", "different statement"]);
    let out = p.finish(T);
    let (so, se) = text(&out);
    assert!(
        se.contains(&denied_by("root", "different statement", &id3, RULE)),
        "{se}"
    );
    assert!(so.ends_with("end\n"), "{so}");
    assert_eq!(held_ids(&se).len(), 2, "{se}");
    d.wait_for_log(Duration::from_secs(5), "session grant used", |ev| {
        ev.iter()
            .any(|e| e["message"] == "approved earlier for this session")
    });
    let requested = d
        .log_events()
        .iter()
        .filter(|e| e["message"] == "approval requested")
        .count();
    assert_eq!(requested, 2, "alpha and the different statement only");

    // A new session asks again.
    let mut q = psql_bg(&d, &db.name, &["select * from cards where note = 'gamma'"]);
    let id2 = q.wait_held(1);
    assert_ne!(id, id2);
    approvals_ok(&d, &["deny", &id2]);
    let out = q.finish(T);
    assert!(
        text(&out).1.contains(&format!(
            "42501: dbwarden: statement denied by root (approval #{id2}"
        )),
        "{}",
        text(&out).1
    );
}

/// A loopback HTTP receiver recording (path, body) of every request; answers 200.
struct Receiver {
    addr: SocketAddr,
    got: Arc<Mutex<Vec<(String, String)>>>,
}

fn receiver() -> Receiver {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let g = g.clone();
            std::thread::spawn(move || {
                let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
                let mut w = s.try_clone().unwrap();
                let mut r = BufReader::new(s);
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                    let mut len = 0usize;
                    loop {
                        let mut h = String::new();
                        if r.read_line(&mut h).unwrap_or(0) == 0 {
                            return;
                        }
                        if h == "\r\n" || h == "\n" {
                            break;
                        }
                        if let Some((k, v)) = h.split_once(':') {
                            if k.eq_ignore_ascii_case("content-length") {
                                len = v.trim().parse().unwrap_or(0);
                            }
                        }
                    }
                    let mut body = vec![0u8; len];
                    if r.read_exact(&mut body).is_err() {
                        return;
                    }
                    g.lock()
                        .unwrap()
                        .push((path, String::from_utf8_lossy(&body).into_owned()));
                    if w.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    Receiver { addr, got }
}

impl Receiver {
    #[track_caller]
    fn wait(&self, path: &str, n: usize) -> Vec<String> {
        wait_until(
            Duration::from_secs(30),
            &format!("{n} webhook deliveries to {path}"),
            || {
                let v: Vec<String> = self
                    .got
                    .lock()
                    .unwrap()
                    .iter()
                    .filter(|(p, _)| p == path)
                    .map(|(_, b)| b.clone())
                    .collect();
                (v.len() >= n).then_some(v)
            },
        )
    }
}

/// Webhooks (generic and Slack) get the request and the decision; a statement crafted to inject
/// Slack markup and mentions arrives defused, and no PAN from it arrives at all.
#[test]
fn webhooks_notify_requests_and_decisions_without_markup_injection() {
    let rx = receiver();
    let d = Daemon::start_with(DaemonOpts {
        extra_config: format!(
            "[approvals]\n[[approvals.webhooks]]\nurl = \"http://{0}/generic\"\nformat = \"generic\"\n\n[[approvals.webhooks]]\nurl = \"http://{0}/slack\"\nformat = \"slack\"\n",
            rx.addr
        ),
        ..Default::default()
    });
    let db = setup("appr_hook");
    let evil = "select * from cards where note = '<https://evil|click> @channel <!here> *bold* ```' or pan = '4111111111111111'";
    let mut p = psql_bg(&d, &db.name, &[evil]);
    let id = p.wait_held(1);
    let generic = rx.wait("/generic", 1);
    let slack = rx.wait("/slack", 1);
    approvals_ok(&d, &["deny", &id, "--reason", "phishing <!channel>"]);
    let out = p.finish(T);
    assert!(text(&out).1.contains("42501"), "{}", text(&out).1);
    let generic = {
        let _ = generic;
        rx.wait("/generic", 2)
    };
    let slack = {
        let _ = slack;
        rx.wait("/slack", 2)
    };
    eprintln!("generic: {generic:#?}\nslack: {slack:#?}");

    let events: Vec<Value> = generic
        .iter()
        .map(|b| serde_json::from_str(b).expect("generic JSON"))
        .collect();
    let names: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["approval.requested", "approval.decided"],
        "{events:#?}"
    );
    for e in &events {
        assert_eq!(e["source"], "dbwarden");
        assert_eq!(e["approval"]["id"], id.as_str());
        assert_eq!(e["approval"]["rule"], RULE);
    }
    assert_eq!(
        events[1]["approval"]["decision"]["outcome"], "denied",
        "{}",
        events[1]
    );
    assert_eq!(
        events[1]["approval"]["decision"]["approver"], "root",
        "{}",
        events[1]
    );

    for (k, body) in slack.iter().enumerate() {
        let v: Value = serde_json::from_str(body).expect("slack JSON");
        // Every string in the payload, decoded.
        let strings = json_strings(&v);
        let all = strings.join("\n");
        assert!(all.contains(&id), "slack {k}: no id: {all}");
        for bad in ["<!here>", "<https://", "@channel", "<!channel>"] {
            assert!(
                !all.contains(bad) && !body.contains(bad),
                "slack {k} carries raw {bad:?}: {all}"
            );
        }
        // The statement is shown, inside a code block (no *bold*) it cannot close.
        let block = strings
            .iter()
            .find(|s| s.contains("evil"))
            .unwrap_or_else(|| panic!("slack {k}: statement not shown: {all}"));
        let inner = block
            .strip_prefix("```\n")
            .and_then(|b| b.strip_suffix("\n```"))
            .unwrap_or_else(|| panic!("slack {k}: statement not in a code block: {block}"));
        assert!(
            !inner.contains('`'),
            "slack {k}: backticks inside the code block: {inner}"
        );
        assert!(inner.contains("*bold*"), "{inner}");
    }
    // Every text field (JSON numbers such as 13-digit millisecond timestamps are not card
    // numbers, even when they happen to pass Luhn).
    for b in generic.iter().chain(&slack) {
        let v: Value = serde_json::from_str(b).unwrap();
        assert_no_pan(
            "webhook payload",
            json_strings(&v).join("\n").as_bytes(),
            PANS,
        );
    }
}

/// Every string value in a JSON document, decoded.
fn json_strings(v: &Value) -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) => out.push(s.clone()),
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            Value::Object(o) => o.values().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(v, &mut out);
    out
}

/// Minimal HTTP/1.1 client: returns (status, body).
fn http(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    let b = body.unwrap_or("");
    if body.is_some() {
        req.push_str("Content-Type: application/json\r\n");
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{b}", b.len()));
    s.write_all(req.as_bytes()).unwrap();
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// HTTP API: 401 without or with a wrong token (and nothing is decided); with the token from
/// `run/http.token` the list shows the request and an approval releases the rows.
#[test]
fn http_api_requires_the_token_and_approves() {
    let port = free_port();
    let d = Daemon::start_with(DaemonOpts {
        // Root approves a root agent here: what is tested is the API, not self-approval.
        extra_config: format!(
            "[approvals]\nhttp_listen = \"127.0.0.1:{port}\"\nallow_self_approval = true\n"
        ),
        ..Default::default()
    });
    let addr = format!("127.0.0.1:{port}");
    let db = setup("appr_http");
    let token_file = runtime_dir(&d).join("http.token");
    let token = std::fs::read_to_string(&token_file)
        .unwrap()
        .trim()
        .to_string();
    assert!(token.len() >= 16);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o077,
        0,
        "token file readable by others"
    );

    let mut p = psql_bg(&d, &db.name, &["select * from cards order by id"]);
    let id = p.wait_held(1);
    let approve_path = format!("/v1/approvals/{id}/approve");
    let body = r#"{"approver":"e2e-bot","reason":"approved over http","scope":"once"}"#;
    assert_eq!(http(&addr, "GET", "/v1/approvals", None, None).0, 401);
    assert_eq!(
        http(
            &addr,
            "GET",
            "/v1/approvals",
            Some("not-the-token-0123456789"),
            None
        )
        .0,
        401
    );
    assert_eq!(http(&addr, "POST", &approve_path, None, Some(body)).0, 401);
    assert_eq!(
        http(
            &addr,
            "POST",
            &approve_path,
            Some(&format!("{token}x")),
            Some(body)
        )
        .0,
        401
    );
    assert!(
        approvals_ok(&d, &["show", &id]).contains("pending"),
        "decided without a valid token"
    );

    let (st, list) = http(&addr, "GET", "/v1/approvals", Some(&token), None);
    assert_eq!(st, 200, "{list}");
    let v: Value = serde_json::from_str(&list).unwrap();
    assert!(
        v["approvals"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["id"] == id.as_str()),
        "{list}"
    );

    let (st, resp) = http(&addr, "POST", &approve_path, Some(&token), Some(body));
    assert_eq!(st, 200, "{resp}");
    let out = p.finish(T);
    assert!(out.status.success(), "{}", text(&out).1);
    assert_masked_card_rows(&text(&out).0, 3);
    let shown = wait_show(
        &d,
        &id,
        "approved by http:e2e-bot (once): approved over http",
    );
    assert!(shown.contains("approved"));
    // Deciding again: conflict.
    let (st, _) = http(
        &addr,
        "POST",
        &format!("/v1/approvals/{id}/deny"),
        Some(&token),
        Some(r#"{"approver":"e2e-bot"}"#),
    );
    assert_eq!(st, 409);
}

/// A non-root caller (nobody, no groups) is refused by the control socket: `list` and `approve`
/// fail with a message, and the request stays pending.
#[test]
fn non_root_caller_is_refused_on_the_control_socket() {
    let d = Daemon::start();
    let db = setup("appr_nonroot");
    let mut p = psql_bg(&d, &db.name, &["select * from cards"]);
    let id = p.wait_held(1);
    let as_nobody = |args: &[&str]| {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(dbwarden_bin())
            .arg("approvals")
            .arg("--runtime-dir")
            .arg(runtime_dir(&d))
            .args(args);
        output_timeout(c, None, Duration::from_secs(30))
    };
    for args in [
        vec!["list"],
        vec!["approve", id.as_str()],
        vec!["deny", id.as_str()],
    ] {
        let out = as_nobody(&args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        eprintln!("nobody {args:?}: {} {err}", out.status);
        assert!(
            !out.status.success(),
            "nobody could run approvals {args:?}: {}",
            stdout(&out)
        );
        assert!(
            err.contains("dbwarden approvals:"),
            "the CLI itself must have run: {err}"
        );
        assert!(
            err.contains("root")
                || err.contains("refused")
                || err.contains("not allowed")
                || err.contains("permission"),
            "no refusal message: {err}"
        );
        assert!(
            !stdout(&out).contains(&id),
            "listing leaked to nobody: {}",
            stdout(&out)
        );
    }
    assert!(
        approvals_ok(&d, &["show", &id]).contains("pending"),
        "nobody decided the request"
    );
    approvals_ok(&d, &["deny", &id]);
    let out = p.finish(T);
    assert!(
        text(&out).1.contains("statement denied by root"),
        "{}",
        text(&out).1
    );
}

/// The recording of a session with an approved and a denied statement holds the decision and
/// approval records: who decided, the reason, how long it waited.
#[test]
fn recording_shows_approval_records() {
    let d = start_self_approving();
    let db = setup("appr_rec");
    let mut p = psql_bg(
        &d,
        &db.name,
        &[
            "select * from cards order by id",
            "select * from cards where id > 0",
            "select 'fin'",
        ],
    );
    let a = p.wait_held(1);
    approvals_ok(&d, &["approve", &a, "--reason", "audit ok"]);
    let b = p.wait_held(2);
    approvals_ok(&d, &["deny", &b, "--reason", "enough for today"]);
    let out = p.finish(T);
    let (so, se) = text(&out);
    assert!(so.ends_with("fin\n"), "{so}{se}");
    assert!(
        se.contains(&denied_by("root", "enough for today", &b, RULE)),
        "{se}"
    );
    let sessions = wait_sealed(&d, 1, T);
    assert_eq!(sessions.len(), 1);
    let files = session_files(&d.dir.join("sessions"));
    let f = files[0].display().to_string();
    let out = sessions_cli(&d.dir.join("sessions"), &["show", &f]);
    assert_ok(&out, "sessions show");
    let show = stdout(&out);
    eprintln!("sessions show:\n{show}");
    assert_eq!(show.matches("approval requested").count(), 2, "{show}");
    let decided: Vec<&str> = show
        .lines()
        .filter(|l| l.contains("approval decided"))
        .collect();
    assert_eq!(decided.len(), 2, "{show}");
    assert!(
        decided[0].contains("allow")
            && decided[0].contains("by root")
            && decided[0].contains("audit ok"),
        "{}",
        decided[0]
    );
    assert!(
        decided[1].contains("deny")
            && decided[1].contains("by root")
            && decided[1].contains("enough for today"),
        "{}",
        decided[1]
    );
    assert!(
        decided.iter().all(|l| l.contains(" after ")),
        "waiting time missing: {decided:?}"
    );
    assert_eq!(
        show.matches(&format!("-> HOLD (rule {RULE})")).count(),
        2,
        "{show}"
    );
    assert_no_pan("sessions show", show.as_bytes(), PANS);
}

/// Polls `approvals list` until exactly `n` requests are pending; returns their ids.
#[track_caller]
fn wait_pending(d: &Daemon, n: usize) -> Vec<String> {
    wait_until(
        Duration::from_secs(30),
        &format!("{n} pending approvals"),
        || {
            let list = approvals_ok(d, &["list"]);
            let ids: Vec<String> = list
                .lines()
                .skip(1)
                .filter_map(|l| l.split_whitespace().next().map(str::to_string))
                .collect();
            (list.starts_with("ID") && ids.len() == n).then_some(ids)
        },
    )
}

/// Extended protocol, pipelined (tokio-postgres): a held Parse in the middle of a pipeline
/// waits while later batches queue behind it; approved, everything runs in order; denied, only
/// that batch fails (42501) and the session stays in sync.
#[test]
fn held_statement_inside_an_extended_pipeline() {
    let d = start_self_approving();
    let db = setup("appr_pipe");
    for approve in [true, false] {
        let mut c = d.agent(agent_bin().with_file_name("dbw-policy-agent"));
        c.args([
            "pipeline",
            PG_ADDR,
            &db.name,
            "select 'before'::text",
            "select note from cards order by id",
            "select 'later'::text",
        ]);
        let p = Bg::spawn(c, "pipeline agent");
        let id = wait_pending(&d, 1).remove(0);
        assert!(
            p.stdout().is_empty(),
            "results before the decision: {}",
            p.stdout()
        );
        if approve {
            approvals_ok(&d, &["approve", &id]);
        } else {
            approvals_ok(&d, &["deny", &id, "--reason", "pipelined no"]);
        }
        let out = p.finish(T);
        assert_ok(&out, "pipeline agent");
        let lines: Vec<Value> = stdout(&out)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        eprintln!("approve={approve}: {lines:?}");
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0]["rows"][0][0], "before");
        if approve {
            assert_eq!(
                lines[1]["rows"],
                serde_json::json!([["alpha"], ["beta"], ["gamma"]]),
                "{}",
                lines[1]
            );
        } else {
            assert_eq!(lines[1]["code"], "42501", "{}", lines[1]);
            assert_eq!(
                lines[1]["message"],
                format!("dbwarden: statement denied by root: pipelined no (approval #{id}, rule \"{RULE}\")").as_str()
            );
        }
        assert_eq!(lines[2]["rows"][0][0], "later", "{}", lines[2]);
        assert_eq!(lines[3]["rows"][0][0], "after pipeline", "{}", lines[3]);
    }
    d.assert_sessions_closed_cleanly(Duration::from_secs(10));
}

/// A held statement denied inside an explicit transaction aborts the transaction exactly like a
/// server error: 25P02 next, ROLLBACK works, the insert is gone.
#[test]
fn denied_approval_inside_a_transaction_aborts_it() {
    let d = Daemon::start();
    let db = setup("appr_tx");
    let script = d.dir.join("tx.sql");
    std::fs::write(
        &script,
        "\\set ON_ERROR_STOP 0\nBEGIN;\nINSERT INTO cards VALUES (9, '4000056655665556', 'tx');\nSELECT * FROM cards;\nSELECT 'ignored';\nROLLBACK;\nSELECT count(*) FROM cards WHERE id = 9 LIMIT 1;\n",
    )
    .unwrap();
    let mut c = psql_cmd(Some(&d), &db.name);
    c.args(["-v", "VERBOSITY=verbose", "-f"]).arg(&script);
    let mut p = Bg::spawn(c, "psql -f tx.sql");
    let id = p.wait_held(1);
    approvals_ok(&d, &["deny", &id, "--reason", "tx no"]);
    let out = p.finish(T);
    let (so, se) = text(&out);
    assert!(se.contains(&denied_by("root", "tx no", &id, RULE)), "{se}");
    assert!(
        se.contains("ERROR:  25P02: current transaction is aborted"),
        "{se}"
    );
    assert!(!so.contains("ignored"), "{so}");
    assert_eq!(so.lines().last(), Some("0"), "{so}");
    assert_eq!(psql_direct(&db.name, "select count(*) from cards"), "3");
}

/// A CancelRequest that arrives while nothing is held (here: cancelling a running
/// `pg_sleep`) must not cancel a statement held later in the same session: the later one
/// waits for a human like any other.
#[test]
fn earlier_cancel_does_not_cancel_a_later_hold() {
    let d = start_self_approving();
    let db = setup("appr_stale");
    let mut c = d.agent(agent_bin().with_file_name("dbw-policy-agent"));
    c.args(["cancel-then-run", PG_ADDR, &db.name, "select * from cards"]);
    let p = Bg::spawn(c, "cancel-then-run agent");
    // Either the statement is held (correct) or the agent finishes early (stale cancel).
    let id = wait_until(T, "the statement to be held or the agent to finish", || {
        let out = p.stdout();
        if out.contains("\"outcome\"") {
            return Some(None);
        }
        held_ids(&out).pop().map(Some)
    });
    let stale =
        "the held statement ended without a human decision: the CancelRequest sent for the \
                 earlier pg_sleep cancelled it (stale Notify permit)";
    let Some(id) = id else {
        panic!("{stale}:\n{}", p.stdout())
    };
    let approved = approvals(&d, &["approve", &id]);
    assert!(
        approved.status.success(),
        "{stale}: approve failed: {}\n{}",
        String::from_utf8_lossy(&approved.stderr),
        p.stdout()
    );
    let out = p.finish(T);
    assert_ok(&out, "cancel-then-run agent");
    let lines: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines[0]["code"], "57014",
        "the pg_sleep was cancelled by the server: {lines:?}"
    );
    let outcome = &lines.last().unwrap()["outcome"];
    assert_eq!(outcome["ok"], true, "{lines:?}");
    assert_eq!(outcome["rows"], 3, "{lines:?}");
}

/// What the CLI prints when root tries to approve a root session's statement by default.
const SELF_APPROVAL_REFUSED: &str = "dbwarden approvals: approval refused: the approver (uid 0) is the uid of the requesting session; self-approval is disabled ([approvals] allow_self_approval)\n";

/// `[approvals]` defaults: a root agent's held statements cannot be approved by root, even
/// from outside the cgroup, neither with the CLI (exit 1, the refusal on stderr) nor over
/// the HTTP API (403 `approval_refused`). Nothing runs: no rows reach the agent, the copy
/// table stays empty, the requests stay pending until root denies them (denying is allowed).
/// Every refusal is journaled and logged.
#[test]
fn root_approver_of_a_root_agent_is_refused_by_default() {
    let port = free_port();
    let d = Daemon::start_with(DaemonOpts {
        extra_config: format!("[approvals]\nhttp_listen = \"127.0.0.1:{port}\"\n"),
        ..Default::default()
    });
    let addr = format!("127.0.0.1:{port}");
    let db = setup("appr_self");
    psql_direct(&db.name, "create table cards_copy (like cards)");
    let token = std::fs::read_to_string(runtime_dir(&d).join("http.token"))
        .unwrap()
        .trim()
        .to_string();
    let mut p = psql_bg(
        &d,
        &db.name,
        &[
            "select * from cards order by id",
            "insert into cards_copy select * from cards",
            "select 'still-alive'",
        ],
    );
    let id = p.wait_held(1);
    assert!(approvals_ok(&d, &["show", &id]).contains("uid 0 (root)"));

    let out = approvals(&d, &["approve", &id, "--reason", "I am root"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stderr), SELF_APPROVAL_REFUSED);
    assert!(out.stdout.is_empty(), "{out:?}");
    // Session scope is no way around it.
    let out = approvals(&d, &["approve", &id, "--scope", "session"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stderr), SELF_APPROVAL_REFUSED);
    // Nor is the HTTP API, whatever approver name the token holder gives: the client socket
    // belongs to uid 0.
    let (st, body) = http(
        &addr,
        "POST",
        &format!("/v1/approvals/{id}/approve"),
        Some(&token),
        Some(r#"{"approver":"not-root"}"#),
    );
    assert_eq!(st, 403, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"], "approval_refused", "{body}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("the approver (uid 0) is the uid of the requesting session"),
        "{body}"
    );
    let show = approvals_ok(&d, &["show", &id]);
    assert!(show.contains("pending, expires in"), "{show}");
    assert!(
        p.stdout().is_empty(),
        "rows without approval: {}",
        p.stdout()
    );

    approvals_ok(&d, &["deny", &id, "--reason", "self-approval refused"]);
    let id2 = p.wait_held(2);
    assert!(approvals_ok(&d, &["show", &id2]).contains("insert into cards_copy"));
    let out = approvals(&d, &["approve", &id2]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stderr), SELF_APPROVAL_REFUSED);
    assert_eq!(
        psql_direct(&db.name, "select count(*) from cards_copy"),
        "0"
    );
    approvals_ok(&d, &["deny", &id2]);

    let out = p.finish(T);
    let (so, se) = text(&out);
    assert_eq!(
        so, "still-alive\n",
        "nothing but the last statement ran: {so}{se}"
    );
    assert!(
        se.contains(&denied_by("root", "self-approval refused", &id, RULE)),
        "{se}"
    );
    assert!(
        se.contains(&format!(
            "dbwarden: statement denied by root (approval #{id2}"
        )),
        "{se}"
    );
    assert_eq!(
        psql_direct(&db.name, "select count(*) from cards_copy"),
        "0"
    );
    assert_eq!(
        psql_direct(
            &db.name,
            "select string_agg(pan, ',' order by id) from cards"
        ),
        "4111111111111111,5555555555554444,378282246310005"
    );
    assert!(approvals_ok(&d, &["list"]).contains("no pending approvals"));

    // Journaled (3 refusals of the first request, 1 of the second) and logged.
    let journal = std::fs::read_to_string(runtime_dir(&d).join("approvals.journal")).unwrap();
    let refused: Vec<Value> = journal
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["type"] == "refused")
        .collect();
    assert_eq!(refused.len(), 4, "{journal}");
    assert!(refused
        .iter()
        .all(|r| r["refusal"] == "self_approval" && r["uid"] == 0));
    assert_eq!(refused[2]["approver"], "http:not-root");
    assert_eq!(refused[3]["id"], id2.as_str());
    d.wait_for_log(Duration::from_secs(5), "refusals logged", |ev| {
        ev.iter()
            .filter(|e| {
                e["level"] == "WARN"
                    && e["message"] == "approval refused by the approver rules; still pending"
            })
            .count()
            == 4
    });
}

/// An agent running as an unprivileged user (nobody) inside the cgroup: root, outside the
/// cgroup, approves with the default settings and the rows are released (masked).
#[test]
fn root_outside_the_cgroup_approves_an_unprivileged_agent() {
    let d = Daemon::start();
    let db = setup("appr_nobody");
    let mut c = d.agent("setpriv");
    c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "psql"])
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            "5432",
            "-U",
            "postgres",
            "-d",
            &db.name,
        ])
        .args(["-X", "-At", "-v", "VERBOSITY=verbose"])
        .args(["-c", "select * from cards order by id"])
        .env("PGCONNECT_TIMEOUT", "10");
    let mut p = Bg::spawn(c, "psql as nobody");
    let id = p.wait_held(1);
    let show = approvals_ok(&d, &["show", &id]);
    assert!(show.contains("uid 65534"), "{show}");
    let said = approvals_ok(&d, &["approve", &id, "--reason", "ticket OPS-2"]);
    assert_eq!(said, "approved by root (once): ticket OPS-2");
    let out = p.finish(T);
    let (so, se) = text(&out);
    assert!(out.status.success(), "{se}");
    assert_masked_card_rows(&so, 3);
    let journal = std::fs::read_to_string(runtime_dir(&d).join("approvals.journal")).unwrap();
    assert!(!journal.contains("\"type\":\"refused\""), "{journal}");
    assert!(journal.contains("\"requester_uid\":65534"), "{journal}");
}
