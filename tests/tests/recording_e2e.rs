//! Issue 6: session recording, end to end.
//!
//! Real clients (psql, tokio-postgres, psycopg 3) run inside a controlled cgroup through the real
//! daemon; the session files it writes are then read back with the real `dbwarden sessions` CLI
//! (list / show / replay / verify / export / pubkey), on the recording host and on a copy in
//! another directory, after a daemon crash (SIGKILL), after tampering and after deletion. Every
//! test ends by scanning every session file (and the daemon log) it produced for PANs.
//! Loopback only.

mod e2e_common;

use std::{
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use dbwarden_record::Session;
use dbwarden_tests::*;
use e2e_common::*;

const T: Duration = Duration::from_secs(120);

const PANS: &[&str] = &[
    "4111111111111111",
    "5555555555554444",
    "4012888888881881",
    "6011111111111117",
];

const FIXTURE: &str = r#"
create table accounts (id int primary key, card_number text not null, note text);
insert into accounts values
  (1, '4111111111111111', 'primary card'),
  (2, '5555 5555 5555 4444', 'backup, old number 6011-1111-1111-1117'),
  (3, '4012-8888-8888-1881', null);
"#;

fn setup(tag: &str) -> (Daemon, PgDb) {
    let d = Daemon::start_with(DaemonOpts {
        policy: Some(PERMISSIVE_POLICY.into()),
        ..Default::default()
    });
    let db = PgDb::create(tag);
    psql_direct(&db.name, FIXTURE);
    (d, db)
}

/// A unique scratch directory (removed by the guard).
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let p = std::env::temp_dir().join(format!("dbwt-rec-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Spawns `cmd` (an agent: `dbwarden exec` execs the program in place, so the child's pid is
/// the agent's pid), returns its pid and output; panics after `timeout`.
fn run_with_pid(cmd: Command, timeout: Duration) -> (u32, Output) {
    output_timeout_with_pid(cmd, None, timeout)
}

fn psql_agent(d: &Daemon, db: &str, sqls: &[&str]) -> Command {
    let mut c = psql_cmd(Some(d), db);
    c.args(["-v", "VERBOSITY=verbose"]);
    for s in sqls {
        c.args(["-c", s]);
    }
    c
}

fn mask_agent_bin() -> PathBuf {
    let bin = agent_bin().with_file_name("dbw-mask-agent");
    assert!(
        bin.exists(),
        "{} not built (cargo build -p dbwarden-tests --bins)",
        bin.display()
    );
    bin
}

fn find_session(sessions: &[Session], pid: u32) -> &Session {
    sessions
        .iter()
        .find(|s| s.header.identity.pid == pid)
        .unwrap_or_else(|| {
            panic!(
                "no session recorded for pid {pid}: {:?}",
                sessions
                    .iter()
                    .map(|s| s.header.identity.pid)
                    .collect::<Vec<_>>()
            )
        })
}

fn id_of(s: &Session) -> String {
    s.header.session_id.to_string()
}

/// Writes the host public key (`sessions pubkey`) to `dir/host.pub`.
fn export_pubkey(d: &Daemon, dir: &Path) -> PathBuf {
    let out = sessions_cli(&sessions_dir(d), &["pubkey"]);
    assert_ok(&out, "sessions pubkey");
    let pem = stdout(&out);
    assert!(pem.contains("PUBLIC KEY"), "{pem}");
    let f = dir.join("host.pub");
    std::fs::write(&f, format!("{pem}\n")).unwrap();
    f
}

// ---------------------------------------------------------------------------------------- tests

/// psql (several statements, one failing) and tokio-postgres sessions are recorded with the
/// kernel identity; `list`, `show`, `verify --all`, `export`, `list --identity` work on the
/// recording host, and `verify --pubkey` works on a copy elsewhere (another machine).
#[test]
fn sessions_are_recorded_listed_shown_verified_and_exported() {
    let (d, db) = setup("rshow");
    let (psql_pid, out) = run_with_pid(
        psql_agent(
            &d,
            &db.name,
            &[
                "select id, card_number from accounts order by id",
                "select 1/0",
                "insert into accounts values (4, '6011111111111117', 'added')",
                "select count(*) as n from accounts",
                // More rows than one batch: these go out as `rows` records.
                "select g from generate_series(1, 100) g",
            ],
        ),
        T,
    );
    let so = stdout(&out);
    let series: String = (1..=100).map(|i| format!("\n{i}")).collect();
    assert_eq!(
        so,
        format!("1|************1111\n2|**** **** **** 4444\n3|****-****-****-1881\nINSERT 0 1\n4{series}"),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("22012"),
        "division by zero reported"
    );
    let mut c = d.agent(mask_agent_bin());
    c.arg(PG_ADDR)
        .arg(&db.name)
        .arg("select id, card_number, note from accounts order by id");
    let (agent_pid, out) = run_with_pid(c, T);
    assert_ok(&out, "dbw-mask-agent");
    assert!(!stdout(&out).contains("decode_error"), "{}", stdout(&out));

    d.assert_sessions_closed_cleanly(T);
    let sessions = wait_sealed(&d, 2, T);
    assert_eq!(sessions.len(), 2);
    let sp = find_session(&sessions, psql_pid);
    let sa = find_session(&sessions, agent_pid);
    let dir = sessions_dir(&d);

    // Header: kernel identity and the original destination.
    let cg = format!("/{}", d.cgroup);
    for (s, exe_tail) in [(sp, "/psql"), (sa, "/dbw-mask-agent")] {
        let h = &s.header;
        assert!(h.identity.exe.ends_with(exe_tail), "{}", h.identity.exe);
        assert_eq!(h.identity.cgroup, cg);
        assert_eq!(h.original_dst, "127.0.0.1:5432");
        assert_eq!(h.database.as_deref(), Some(db.name.as_str()));
        assert_eq!(h.db_user.as_deref(), Some("postgres"));
        assert_eq!(h.protocol, "postgres");
    }

    // list: both, sealed.
    let out = sessions_cli(&dir, &["list"]);
    assert_ok(&out, "sessions list");
    let list = stdout(&out);
    eprintln!("sessions list:\n{list}");
    assert!(list.ends_with("(2 sessions)"), "{list}");
    for s in [sp, sa] {
        let short = &id_of(s)[..12];
        let line = list
            .lines()
            .find(|l| l.contains(short))
            .unwrap_or_else(|| panic!("{short} not listed:\n{list}"));
        assert!(line.trim_end().ends_with("yes"), "not sealed: {line}");
        assert!(line.contains("127.0.0.1:5432"), "{line}");
    }

    // list --identity exe=...: only the matching session.
    let out = sessions_cli(
        &dir,
        &[
            "list",
            "--identity",
            &format!("exe={}", sa.header.identity.exe),
        ],
    );
    assert_ok(&out, "sessions list --identity");
    let filtered = stdout(&out);
    assert!(filtered.ends_with("(1 session)"), "{filtered}");
    assert!(
        filtered.contains(&id_of(sa)[..12]) && !filtered.contains(&id_of(sp)[..12]),
        "{filtered}"
    );
    let out = sessions_cli(&dir, &["list", "--identity", &format!("pid={psql_pid}")]);
    assert!(
        stdout(&out).contains(&id_of(sp)[..12]) && stdout(&out).ends_with("(1 session)"),
        "{}",
        stdout(&out)
    );

    // show: statements, the error, masked rows with counts.
    let out = sessions_cli(&dir, &["show", &id_of(sp)]);
    assert_ok(&out, "sessions show (psql)");
    let show = stdout(&out);
    eprintln!("sessions show (psql):\n{show}");
    for want in [
        "select id, card_number from accounts order by id",
        "************1111",
        "**** **** **** 4444",
        "(3 rows)",
        "select 1/0",
        "22012",
        "insert into accounts values (4, '************1117', 'added')",
        "INSERT 0 1",
        "select count(*) as n from accounts",
        "(1 row)",
        "select g from generate_series(1, 100) g",
        "(100 rows)",
    ] {
        assert!(show.contains(want), "missing {want:?} in:\n{show}");
    }
    assert_no_pan("sessions show (psql)", show.as_bytes(), PANS);
    let out = sessions_cli(&dir, &["show", &id_of(sa)[..12]]);
    assert_ok(&out, "sessions show (tokio-postgres, by id prefix)");
    let show_a = stdout(&out);
    assert!(
        show_a.contains("select id, card_number, note from accounts order by id"),
        "{show_a}"
    );
    assert!(show_a.contains("(4 rows)"), "{show_a}");
    assert_no_pan("sessions show (tokio-postgres)", show_a.as_bytes(), PANS);

    // verify --all with the host key next to the sessions directory.
    let out = sessions_cli(&dir, &["verify", "--all"]);
    let v = stdout(&out);
    eprintln!("sessions verify --all:\n{v}");
    assert_ok(&out, "sessions verify --all");
    assert_eq!(v.lines().last(), Some("OK"), "{v}");
    assert_eq!(
        v.lines().filter(|l| l.contains(".dbws: OK")).count(),
        2,
        "{v}"
    );

    // export: valid JSON lines, header first with identity and original destination.
    let out = sessions_cli(&dir, &["export", &id_of(sp), "--format", "jsonl"]);
    assert_ok(&out, "sessions export");
    let lines: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("invalid JSON line {l:?}: {e}")))
        .collect();
    assert_eq!(lines.len(), sp.records.len());
    let h = &lines[0];
    assert_eq!(h["type"], "header", "{h}");
    assert_eq!(h["n"], 0);
    assert_eq!(h["identity"]["pid"], psql_pid);
    assert!(
        h["identity"]["exe"].as_str().unwrap().ends_with("/psql"),
        "{h}"
    );
    assert_eq!(h["identity"]["cgroup"], cg.as_str());
    assert_eq!(h["original_dst"], "127.0.0.1:5432");
    assert_eq!(lines.last().unwrap()["type"], "seal");
    // A statement answered while the recorder drains its queue is written with its decision
    // and response as one exchange record (under load; an interactive psql session mostly
    // gets separate records): count what each record carries.
    let kinds: Vec<&str> = lines
        .iter()
        .flat_map(|l| match l["type"].as_str() {
            Some("exchange") => {
                let mut v = vec!["exchange", "statement", "response"];
                if l.get("decision").is_some() {
                    v.push("decision");
                }
                v
            }
            Some(k) => vec![k],
            None => Vec::new(),
        })
        .collect();
    for k in ["statement", "decision", "rows", "response", "end"] {
        assert!(kinds.contains(&k), "no {k} record: {kinds:?}");
    }
    // A small result rides in its response; the 100-row one came in `rows` batches.
    let response = |l: &'_ serde_json::Value| match l["type"].as_str() {
        Some("exchange") => Some(l["response"].clone()),
        Some("response") => Some(l.clone()),
        _ => None,
    };
    let carried = lines
        .iter()
        .filter_map(response)
        .find(|r| r["command_tag"] == "SELECT 3")
        .expect("response of the 3-row select");
    assert_eq!(carried["data"][0][1], "************1111", "{carried}");
    let batched: usize = lines
        .iter()
        .filter(|l| l["type"] == "rows")
        .map(|l| l["rows"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(batched, 100, "{kinds:?}");
    assert_no_pan("sessions export", &out.stdout, PANS);

    // Another machine: a copy of the file and the exported public key, no host key around.
    let other = Scratch::new("other");
    let key = export_pubkey(&d, &other.0);
    let copy = other.0.join(sp.path.file_name().unwrap());
    std::fs::copy(&sp.path, &copy).unwrap();
    let odir = other.0.join("sessions");
    std::fs::create_dir_all(&odir).unwrap();
    let out = sessions_cli(
        &odir,
        &[
            "verify",
            copy.to_str().unwrap(),
            "--pubkey",
            key.to_str().unwrap(),
        ],
    );
    assert_ok(&out, "verify a copied file with --pubkey");
    assert!(stdout(&out).contains(": OK"), "{}", stdout(&out));
    // Without a trusted key it refuses (never "OK" by default).
    let out = sessions_cli(&odir, &["verify", copy.to_str().unwrap()]);
    assert!(
        !out.status.success(),
        "verify without any key succeeded: {}",
        all_text(&out)
    );
    assert!(all_text(&out).contains("--pubkey"), "{}", all_text(&out));
    // With some other key, the signature is not trusted.
    let stranger = other.0.join("stranger.key");
    let sk = dbwarden_record::HostKey::load_or_create(&stranger).unwrap();
    let spub = other.0.join("stranger.pub");
    std::fs::write(&spub, sk.public_key_pem()).unwrap();
    let out = sessions_cli(
        &odir,
        &[
            "verify",
            copy.to_str().unwrap(),
            "--pubkey",
            spub.to_str().unwrap(),
        ],
    );
    assert!(
        !out.status.success(),
        "verified under an unrelated key: {}",
        all_text(&out)
    );
    assert!(
        stdout(&out).contains("KEY") || stdout(&out).contains("SIGNATURE"),
        "{}",
        all_text(&out)
    );

    finish_and_scan(&d, PANS);
}

/// SIGKILL of the daemon in the middle of a session: the file stays readable, and `verify`
/// says it ended abnormally (unsealed after record N), with a non-zero exit code.
#[test]
fn daemon_killed_mid_session_leaves_a_readable_unsealed_file() {
    let (mut d, db) = setup("rkill");
    let mut c = psql_agent(
        &d,
        &db.name,
        &[
            "select id, card_number from accounts order by id",
            "select pg_sleep(20)",
        ],
    );
    c.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(Stdio::null());
    let mut child = c.spawn().unwrap();
    let dir = sessions_dir(&d);
    // Wait until the recorder has put the sleeping statement on disk (segments are cut at
    // least every second while records are pending).
    let file = wait_until(T, "the pg_sleep statement to be on disk", || {
        session_files(&dir).into_iter().find(|f| {
            dbwarden_record::read_session(f).is_ok_and(|s| {
                s.records.iter().any(|r| {
                    r.body
                        .statement()
                        .is_some_and(|st| st.text.contains("pg_sleep"))
                })
            })
        })
    });
    d.kill();
    // The agent loses its connection (the daemon died); it must not hang.
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("psql still running 30 s after the daemon was killed");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success(), "psql succeeded although its proxy died");

    let s = dbwarden_record::read_session(&file).expect("the file of a killed session is readable");
    assert!(!s.sealed);
    let id = id_of(&s);
    let out = sessions_cli(&dir, &["show", &id]);
    assert_ok(&out, "sessions show on the unsealed file");
    let show = stdout(&out);
    assert!(
        show.contains("select pg_sleep(20)") && show.contains("(3 rows)"),
        "{show}"
    );
    let out = sessions_cli(&dir, &["list"]);
    let list = stdout(&out);
    let line = list
        .lines()
        .find(|l| l.contains(&id[..12]))
        .unwrap_or_else(|| panic!("{list}"));
    assert!(line.trim_end().ends_with("NO"), "listed as sealed: {line}");

    let out = sessions_cli(&dir, &["verify", &id]);
    let v = stdout(&out);
    eprintln!("verify after SIGKILL: {v}");
    assert_eq!(
        out.status.code(),
        Some(1),
        "verify of an unsealed file must fail: {}",
        all_text(&out)
    );
    let n = s.records.len() - 1;
    assert!(
        v.contains(&format!("UNSEALED: ended abnormally after record {n}")),
        "{v}"
    );
    let out = sessions_cli(&dir, &["verify", "--all"]);
    assert_eq!(out.status.code(), Some(1), "{}", all_text(&out));
    assert!(
        stdout(&out).contains("UNSEALED") && stdout(&out).ends_with("FAILED"),
        "{}",
        stdout(&out)
    );

    // Nothing in the crashed file or the log holds a PAN.
    assert_daemon_leaked_nothing(&d, PANS);
}

/// A flipped byte in a copied sealed file fails `verify --pubkey` with a reason; a deleted
/// sealed file is reported missing by `verify --all` through the index.
#[test]
fn tampered_and_deleted_files_are_detected() {
    let (d, db) = setup("rtamper");
    for q in [
        "select id, card_number from accounts order by id",
        "select note from accounts order by id",
        "select 1",
    ] {
        let out = psql_through_plain(&d, &db.name, q);
        assert_ok(&out, q);
    }
    d.assert_sessions_closed_cleanly(T);
    let sessions = wait_sealed(&d, 3, T);
    let dir = sessions_dir(&d);
    let scratch = Scratch::new("tamper");
    let key = export_pubkey(&d, &scratch.0);
    let victim = &sessions[0];
    let original = std::fs::read(&victim.path).unwrap();

    // One flipped byte in the middle, through the CLI.
    let tampered = scratch.0.join("tampered.dbws");
    let mut bytes = original.clone();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&tampered, &bytes).unwrap();
    let out = sessions_cli(
        &scratch.0,
        &[
            "verify",
            tampered.to_str().unwrap(),
            "--pubkey",
            key.to_str().unwrap(),
        ],
    );
    let v = stdout(&out);
    eprintln!("verify of a flipped byte at {mid}/{}: {v}", bytes.len());
    assert_eq!(out.status.code(), Some(1), "{}", all_text(&out));
    assert!(!v.contains(": OK"), "{v}");
    assert!(
        [
            "TAMPERED",
            "BAD SIGNATURE",
            "UNKNOWN KEY",
            "BAD SEAL",
            "MALFORMED",
            "SPLICED",
            "UNSEALED"
        ]
        .iter()
        .any(|w| v.contains(w)),
        "verify says why: {v}"
    );
    // The untouched copy verifies.
    let good = scratch.0.join("good.dbws");
    std::fs::write(&good, &original).unwrap();
    let out = sessions_cli(
        &scratch.0,
        &[
            "verify",
            good.to_str().unwrap(),
            "--pubkey",
            key.to_str().unwrap(),
        ],
    );
    assert_ok(&out, "verify the untouched copy");

    // Any single flipped byte anywhere in the file is caught (library verifier, same code as
    // the CLI), sampled over the whole file.
    let pk = dbwarden_record::PublicKey::parse(&std::fs::read_to_string(&key).unwrap()).unwrap();
    let step = (original.len() / 97).max(1);
    let mut checked = 0;
    for at in (0..original.len()).step_by(step) {
        let mut b = original.clone();
        b[at] ^= 0x20;
        let r = dbwarden_record::verify::verify_bytes(
            Path::new("x.dbws"),
            &b,
            std::slice::from_ref(&pk),
            &mut |_| {},
        );
        assert!(
            !r.is_ok(),
            "flipping byte {at} of {} went unnoticed: {r}",
            original.len()
        );
        checked += 1;
    }
    assert!(checked > 50);

    // Deleting a sealed file: the index still names it.
    let gone = sessions[1].path.clone();
    std::fs::remove_file(&gone).unwrap();
    let out = sessions_cli(&dir, &["verify", "--all"]);
    let v = stdout(&out);
    eprintln!("verify --all after deleting {}: {v}", gone.display());
    assert_eq!(out.status.code(), Some(1), "{}", all_text(&out));
    let name = gone.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        v.lines()
            .any(|l| l.starts_with("index:") && l.contains(&name) && l.contains("missing")),
        "deleted file not reported: {v}"
    );
    assert!(v.ends_with("FAILED"), "{v}");
    assert_daemon_leaked_nothing(&d, PANS);
}

fn psql_through_plain(d: &Daemon, db: &str, sql: &str) -> Output {
    let mut c = psql_cmd(Some(d), db);
    c.args(["-v", "ON_ERROR_STOP=1", "-c", sql]);
    output_timeout(c, None, T)
}

/// `sessions replay` prints the same transcript as `show`, paced by the recorded timing.
#[test]
fn replay_follows_the_recorded_timing() {
    let (d, db) = setup("rreplay");
    let out = psql_through_plain(&d, &db.name, "select 1 as a");
    assert_ok(&out, "psql");
    let mut c = psql_agent(
        &d,
        &db.name,
        &[
            "select 'before' as t",
            "select pg_sleep(1.5)",
            "select 'after' as t",
        ],
    );
    c.arg("-v").arg("ON_ERROR_STOP=1");
    let (pid, out) = run_with_pid(c, T);
    assert_ok(&out, "psql with a sleep");
    d.assert_sessions_closed_cleanly(T);
    let sessions = wait_sealed(&d, 2, T);
    let s = find_session(&sessions, pid);
    // Each response's duration runs from its statement's record to its own (the recorder
    // takes it from the two; the 1.5 s statement's response is a record of its own, written
    // after its statement was flushed alone).
    let mut texts = std::collections::HashMap::new();
    let mut durations = Vec::new();
    for r in &s.records {
        if let Some(st) = r.body.statement() {
            texts.insert(st.stmt, st.text.clone());
        }
        if let Some(resp) = r.body.response() {
            durations.push((texts[&resp.stmt].clone(), resp.duration_us));
        }
    }
    assert_eq!(durations.len(), 3, "{durations:?}");
    for (text, us) in &durations {
        let want = if text.contains("pg_sleep") {
            1_450_000..30_000_000
        } else {
            0..1_000_000
        };
        assert!(want.contains(us), "{text}: {us} µs ({durations:?})");
    }
    let dir = sessions_dir(&d);
    let id = id_of(s);
    let show = sessions_cli(&dir, &["show", &id]);
    assert_ok(&show, "show");
    let t0 = Instant::now();
    let fast = sessions_cli(&dir, &["replay", &id, "--speed", "100"]);
    let fast_took = t0.elapsed();
    assert_ok(&fast, "replay --speed 100");
    let text = stdout(&fast);
    eprintln!("replay --speed 100 ({fast_took:?}):\n{text}");
    assert_eq!(text, stdout(&show), "replay prints the transcript");
    for want in [
        "select 'before' as t",
        "before",
        "select pg_sleep(1.5)",
        "select 'after' as t",
        "after",
    ] {
        assert!(text.contains(want), "missing {want:?}:\n{text}");
    }
    // At speed 1 the 1.5 s spent in pg_sleep is replayed; at speed 100 it is not.
    let t1 = Instant::now();
    let slow = sessions_cli(&dir, &["replay", &id, "--speed", "1"]);
    let slow_took = t1.elapsed();
    assert_ok(&slow, "replay --speed 1");
    assert_eq!(stdout(&slow), text);
    assert!(
        slow_took >= Duration::from_millis(1400),
        "speed 1 took only {slow_took:?}"
    );
    assert!(
        fast_took < slow_took / 2 && fast_took < Duration::from_millis(1200),
        "speed 100 took {fast_took:?} (speed 1: {slow_took:?})"
    );
    finish_and_scan(&d, PANS);
}

/// PAN-heavy traffic in every recorded field: statement text, bound parameters, rows (text and
/// binary), errors, notices, column names. No session file may hold a PAN afterwards.
#[test]
fn no_session_file_holds_a_pan() {
    let (d, db) = setup("rscan");
    psql_direct(
        &db.name,
        "create function shout() returns int language plpgsql as $f$ begin \
         raise notice 'card %', '5555 5555 5555 4444'; return 1; end $f$",
    );
    let out = psql_agent(
        &d,
        &db.name,
        &[
            "select * from accounts order by id",
            "select '4111111111111111' as lit, 6011111111111117 as n",
            "select 'x 4012888888881881'::int",
            "select shout()",
            "select array_agg(card_number) from accounts",
        ],
    )
    .output()
    .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("NOTICE"),
        "{}",
        all_text(&out)
    );
    let mut c = d.agent(mask_agent_bin());
    c.arg(PG_ADDR).arg(&db.name).args([
        "select card_number, note, card_number::bytea as b from accounts order by id",
        "select 4111111111111111::int8 as big",
    ]);
    let out = output_timeout(c, None, T);
    assert_ok(&out, "binary agent");
    // Text parameters bound through the extended protocol (recorded as parameters).
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/mask_psycopg.py");
    let mut c = d.agent("python3");
    c.arg(script).args([
        "127.0.0.1",
        "5432",
        &db.name,
        "select id from accounts where card_number = %s or note = %s",
        "4111111111111111",
        "6011-1111-1111-1117",
    ]);
    let out = output_timeout(c, None, T);
    assert_ok(&out, "psycopg with PAN parameters");
    d.assert_sessions_closed_cleanly(T);
    let sessions = wait_sealed(&d, 3, T);
    // The parameters were recorded (masked), so the scan below covers them.
    let params: Vec<String> = sessions
        .iter()
        .flat_map(|s| s.records.iter())
        .filter_map(|r| {
            r.body
                .statement()
                .filter(|st| !st.params.is_empty())
                .map(|st| format!("{:?}", st.params))
        })
        .collect();
    assert!(!params.is_empty(), "no bound parameters were recorded");
    eprintln!("recorded parameters: {params:?}");
    finish_and_scan(&d, PANS);
}

/// A column name (alias) holding a PAN: rows are recorded with their column names, which must
/// be masked like everything else that goes into a session file.
#[test]
fn column_names_are_masked_in_recordings() {
    let (d, db) = setup("rcolname");
    let out = psql_agent(
        &d,
        &db.name,
        &[r#"select id as "4111 1111 1111 1111" from accounts order by id"#],
    )
    .output()
    .unwrap();
    assert_ok(&out, "psql");
    d.assert_sessions_closed_cleanly(T);
    wait_sealed(&d, 1, T);
    finish_and_scan(&d, PANS);
}

/// Unmounts the small filesystem the test put under the sessions directory.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// When the recording cannot be written (here: the sessions filesystem fills up), the session
/// fails closed — the agent gets a FATAL error and the connection ends — instead of carrying
/// on unrecorded.
#[test]
fn a_failing_recording_closes_the_session() {
    let (d, db) = setup("rfull");
    let dir = sessions_dir(&d);
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=96k,mode=0700", "tmpfs"])
        .arg(&dir)
        .status()
        .expect("run mount");
    assert!(st.success(), "mounting a small tmpfs on {}", dir.display());
    let _m = Mounted(dir.clone());
    // Incompressible rows (md5 text), a pause so the writer flushes segments as it goes.
    let mut sqls = Vec::new();
    for _ in 0..80 {
        sqls.push("select md5(random()::text) from generate_series(1, 1000)");
        sqls.push("select pg_sleep(0.05)");
    }
    let (_, out) = run_with_pid(psql_agent(&d, &db.name, &sqls), T);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "psql should lose its session: {err}");
    assert!(
        err.contains("session recording failed"),
        "the agent is told why: {err}"
    );
    let rows = stdout(&out).lines().count();
    assert!(
        rows < 80 * 1000,
        "the session went on after the recording failed ({rows} rows)"
    );
    d.wait_for_log(T, "recorder failure logged", |ev| {
        ev.iter().any(|e| {
            e["message"]
                .as_str()
                .is_some_and(|m| m.contains("session recorder failed"))
        })
    });
}
