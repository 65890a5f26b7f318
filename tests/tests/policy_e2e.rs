//! Issue 4: statement policy, end to end through the real daemon.
//!
//! Real kernel (eBPF interception), real `dbwarden` binary, real PostgreSQL 15, real clients
//! (psql and tokio-postgres in simple, extended and pipelined mode); loopback only. Every
//! refusal must be SQLSTATE 42501 naming the rule, leave the data untouched (checked directly,
//! outside dbwarden) and leave the session usable with PostgreSQL's own error semantics.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    time::Duration,
};

use dbwarden_tests::*;
use serde_json::Value;

const T: Duration = Duration::from_secs(60);

/// The policy agent (`tests/src/bin/dbw-policy-agent.rs`), built with this package.
fn policy_agent_bin() -> PathBuf {
    let bin = agent_bin().with_file_name("dbw-policy-agent");
    assert!(
        bin.exists(),
        "{} not built (cargo build -p dbwarden-tests --bins)",
        bin.display()
    );
    bin
}

/// Runs a policy-agent command (see [`agent_cmd`]) to completion; returns its JSON lines.
#[track_caller]
fn policy_agent(cmd: Command, what: &str) -> Vec<Value> {
    let out = output_timeout(cmd, None, T);
    assert_ok(&out, what);
    stdout(&out)
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("{what}: bad JSON line {l:?}: {e}"))
        })
        .collect()
}

fn agent_cmd(d: &Daemon, sub: &str, db: &str, rest: &[&str]) -> Command {
    let mut c = d.agent(policy_agent_bin());
    c.args([sub, PG_ADDR, db]).args(rest);
    c
}

/// psql in the cgroup with VERBOSITY=verbose (SQLSTATEs in messages), one `-c` per statement,
/// ON_ERROR_STOP off (psql's default): every `-c` runs on the same connection.
fn psql_multi(d: &Daemon, db: &str, sqls: &[&str]) -> Output {
    let mut c = psql_cmd(Some(d), db);
    c.args(["-v", "VERBOSITY=verbose"]);
    for s in sqls {
        c.args(["-c", s]);
    }
    output_timeout(c, None, T)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A database with `t(id int)` holding 1, 2, 3.
fn setup(tag: &str) -> PgDb {
    let db = PgDb::create(tag);
    psql_direct(
        &db.name,
        "create table t (id int primary key); insert into t values (1), (2), (3)",
    );
    db
}

fn t_contents(db: &PgDb) -> String {
    psql_direct(
        &db.name,
        "select coalesce(string_agg(id::text, ',' order by id), '') from t",
    )
}

/// Denied statements and the rule of the embedded PCI DSS policy that must refuse each.
const DENIED: &[(&str, &str)] = &[
    ("TRUNCATE t", "no-truncate"),
    ("DROP TABLE t", "no-drop"),
    ("DELETE FROM t", "no-where-less-writes"),
    ("SELECT pg_read_file('/etc/passwd')", "no-file-functions"),
    ("COPY (select 1) TO PROGRAM 'id'", "no-copy-program"),
    (
        "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
        "no-where-less-writes",
    ),
    (
        "INSERT INTO t VALUES (99); TRUNCATE t; SELECT 1",
        "no-truncate",
    ),
];

fn denied_msg(rule: &str) -> String {
    format!("dbwarden: statement denied by rule \"{rule}\"")
}

/// psql: every denied statement gets `ERROR: 42501` naming its rule, the table is unchanged, and
/// the same connection runs the next statement.
#[test]
fn psql_denied_statements_name_the_rule_and_the_session_goes_on() {
    let d = Daemon::start();
    let db = setup("pol_psql");
    let mut sqls = Vec::new();
    let alive: Vec<String> = (0..DENIED.len())
        .map(|i| format!("select 'alive-{i}'"))
        .collect();
    for (i, (sql, _)) in DENIED.iter().enumerate() {
        sqls.push(*sql);
        sqls.push(&alive[i]);
    }
    let out = psql_multi(&d, &db.name, &sqls);
    let err = stderr(&out);
    eprintln!("psql stderr:\n{err}");
    // Every follow-up ran, in order, on the same connection.
    let want: Vec<String> = (0..DENIED.len()).map(|i| format!("alive-{i}")).collect();
    assert_eq!(
        stdout(&out).lines().collect::<Vec<_>>(),
        want,
        "stderr: {err}"
    );
    let errors: Vec<&str> = err.lines().filter(|l| l.contains("ERROR:")).collect();
    assert_eq!(
        errors.len(),
        DENIED.len(),
        "one error per denied statement: {err}"
    );
    for ((sql, rule), line) in DENIED.iter().zip(&errors) {
        assert!(
            line.contains(&format!("ERROR:  42501: {}", denied_msg(rule))),
            "{sql}: expected 42501 by {rule}, got {line}"
        );
    }
    assert_eq!(
        t_contents(&db),
        "1,2,3",
        "denied statements changed the table"
    );
    assert_eq!(
        psql_direct(
            &db.name,
            "select count(*) from pg_tables where tablename = 't'"
        ),
        "1"
    );
    // One connection for all of it.
    d.wait_for_log(Duration::from_secs(10), "psql session end", |ev| {
        ev.iter()
            .filter(|e| e["message"] == "session ended")
            .count()
            == 1
    });
    assert_eq!(d.sessions_of("psql"), 1);
    d.assert_sessions_closed_cleanly(Duration::from_secs(10));
}

/// tokio-postgres, simple and extended protocol: the same refusals, SQLSTATE 42501 with the
/// rule, and the connection keeps working after each.
#[test]
fn tokio_postgres_denied_statements_simple_and_extended() {
    let d = Daemon::start();
    let db = setup("pol_tp");
    for mode in ["simple", "extended"] {
        let mut sqls: Vec<String> = Vec::new();
        for (sql, _) in DENIED {
            sqls.push((*sql).to_string());
            sqls.push("select 41 + 1".to_string());
        }
        let args: Vec<&str> = std::iter::once(mode)
            .chain(sqls.iter().map(String::as_str))
            .collect();
        let lines = policy_agent(agent_cmd(&d, "script", &db.name, &args), mode);
        assert_eq!(lines.len(), sqls.len(), "{mode}: {lines:#?}");
        for (k, (sql, rule)) in DENIED.iter().enumerate() {
            let bad = &lines[2 * k];
            assert_eq!(bad["ok"], false, "{mode} {sql}: {bad}");
            assert_eq!(bad["code"], "42501", "{mode} {sql}: {bad}");
            let m = bad["message"].as_str().unwrap();
            assert!(m.starts_with(&denied_msg(rule)), "{mode} {sql}: {m}");
            let next = &lines[2 * k + 1];
            assert_eq!(
                next["ok"], true,
                "{mode}: statement after {sql} failed: {next}"
            );
            assert_eq!(next["rows"][0][0], "42", "{next}");
        }
        assert_eq!(
            t_contents(&db),
            "1,2,3",
            "{mode}: denied statements changed the table"
        );
    }
    d.assert_sessions_closed_cleanly(Duration::from_secs(10));
}

/// Extended protocol, pipelined: a denied Parse in the middle of a pipeline fails exactly that
/// batch; earlier and later batches run, and the session is still in sync afterwards.
#[test]
fn denied_parse_inside_a_pipeline_fails_only_its_batch() {
    let d = Daemon::start();
    let db = setup("pol_pipe");
    let sqls = [
        "select 'first'::text",
        "insert into t values (10) returning id",
        "truncate t",
        "select 'middle'::text",
        "delete from t",
        "insert into t values (11) returning id",
        "select count(*)::int8 from t where id >= 10",
    ];
    let lines = policy_agent(agent_cmd(&d, "pipeline", &db.name, &sqls), "pipeline");
    eprintln!("{lines:#?}");
    assert_eq!(lines.len(), sqls.len() + 1);
    let ok = |i: usize, want: &str| {
        assert_eq!(
            lines[i]["ok"], true,
            "batch {i} ({}) failed: {}",
            sqls[i], lines[i]
        );
        assert_eq!(lines[i]["rows"][0][0], want, "batch {i}: {}", lines[i]);
    };
    ok(0, "first");
    ok(1, "10");
    assert_eq!(lines[2]["code"], "42501", "{}", lines[2]);
    assert!(lines[2]["message"]
        .as_str()
        .unwrap()
        .starts_with(&denied_msg("no-truncate")));
    ok(3, "middle");
    assert_eq!(lines[4]["code"], "42501", "{}", lines[4]);
    assert!(lines[4]["message"]
        .as_str()
        .unwrap()
        .starts_with(&denied_msg("no-where-less-writes")));
    ok(5, "11");
    ok(6, "2");
    assert_eq!(lines[7]["rows"][0][0], "after pipeline", "{}", lines[7]);
    assert_eq!(t_contents(&db), "1,2,3,10,11");
    d.assert_sessions_closed_cleanly(Duration::from_secs(10));
}

/// Inside an explicit transaction a refusal aborts the transaction exactly like a server error:
/// the next statement gets 25P02, ROLLBACK works, the insert is gone. psql and tokio-postgres.
#[test]
fn refusal_inside_a_transaction_aborts_it_like_postgres() {
    let d = Daemon::start();
    let db = setup("pol_tx");
    let script = d.dir.join("tx.sql");
    std::fs::write(
        &script,
        "\\set ON_ERROR_STOP 0\nBEGIN;\nINSERT INTO t VALUES (50);\nTRUNCATE t;\nSELECT 'ignored';\nROLLBACK;\nSELECT string_agg(id::text, ',' ORDER BY id) FROM t;\n",
    )
    .unwrap();
    let mut c = psql_cmd(Some(&d), &db.name);
    c.args(["-v", "VERBOSITY=verbose", "-f"]).arg(&script);
    let out = output_timeout(c, None, T);
    let err = stderr(&out);
    eprintln!("psql -f stderr:\n{err}");
    assert!(
        err.contains(&format!("ERROR:  42501: {}", denied_msg("no-truncate"))),
        "{err}"
    );
    assert!(
        err.contains("ERROR:  25P02: current transaction is aborted, commands ignored until end of transaction block"),
        "{err}"
    );
    assert!(!stdout(&out).contains("ignored"), "{}", stdout(&out));
    assert_eq!(
        stdout(&out).lines().last(),
        Some("1,2,3"),
        "{}",
        stdout(&out)
    );
    assert_eq!(t_contents(&db), "1,2,3");

    for mode in ["simple", "extended"] {
        let lines = policy_agent(
            agent_cmd(
                &d,
                "script",
                &db.name,
                &[
                    mode,
                    "BEGIN",
                    "INSERT INTO t VALUES (51)",
                    "DELETE FROM t",
                    "select 1",
                    "ROLLBACK",
                    "select count(*)::int8 from t",
                ],
            ),
            mode,
        );
        eprintln!("{mode}: {lines:#?}");
        assert_eq!(lines[0]["ok"], true);
        assert_eq!(lines[1]["ok"], true);
        assert_eq!(lines[2]["code"], "42501", "{}", lines[2]);
        assert!(lines[2]["message"]
            .as_str()
            .unwrap()
            .starts_with(&denied_msg("no-where-less-writes")));
        assert_eq!(
            lines[3]["code"], "25P02",
            "{mode}: after a refusal the transaction must be aborted: {}",
            lines[3]
        );
        assert_eq!(
            lines[4]["ok"], true,
            "{mode}: ROLLBACK failed: {}",
            lines[4]
        );
        assert_eq!(lines[5]["rows"][0][0], "3", "{}", lines[5]);
        assert_eq!(t_contents(&db), "1,2,3", "{mode}");
    }
    d.assert_sessions_closed_cleanly(Duration::from_secs(10));
}

/// A policy whose exceptions select on an environment label and on the executable.
const IDENTITY_POLICY: &str = r#"
[policy]
name = "e2e-identity"
default = "allow"

[[rule]]
name = "allowed-job-may-delete-all"
action = "allow"
kind = ["delete"]
where_less = true
[rule.identity]
labels = { CI_JOB_ID = "allowed-job" }

[[rule]]
name = "no-where-less-delete"
action = "deny"
kind = ["delete"]
where_less = true
message = "DELETE without WHERE needs the allowed CI job"

[[rule]]
name = "policy-agent-may-truncate"
action = "allow"
kind = ["truncate"]
[rule.identity]
exe = ["*/dbw-policy-agent"]

[[rule]]
name = "no-truncate-for-others"
action = "deny"
kind = ["truncate"]
"#;

/// Identity selectors select: the same statement gets different verdicts for agents with
/// different environment labels (read by the daemon from /proc, never from the client) and
/// different executables.
#[test]
fn identity_selectors_give_agents_different_verdicts() {
    let d = Daemon::start_with(DaemonOpts {
        policy: Some(IDENTITY_POLICY.into()),
        ..Default::default()
    });
    let db = setup("pol_ident");
    let run = |label: Option<&str>, sql: &str| -> Vec<Value> {
        let mut c = agent_cmd(&d, "script", &db.name, &["simple", sql]);
        c.env_remove("CI_JOB_ID");
        if let Some(l) = label {
            c.env("CI_JOB_ID", l);
        }
        policy_agent(c, "identity agent")
    };
    // Another job, and no label at all: refused.
    for label in [Some("other-job"), Some("allowed-job-2"), None] {
        let r = run(label, "DELETE FROM t");
        assert_eq!(r[0]["code"], "42501", "{label:?}: {}", r[0]);
        assert!(
            r[0]["message"]
                .as_str()
                .unwrap()
                .starts_with(&denied_msg("no-where-less-delete")),
            "{}",
            r[0]
        );
        assert_eq!(t_contents(&db), "1,2,3", "{label:?}");
    }
    // psql pretending in its startup packet / application name changes nothing.
    let mut c = psql_cmd(Some(&d), &db.name);
    c.args(["-v", "VERBOSITY=verbose", "-c", "DELETE FROM t"])
        .env("CI_JOB_ID", "other")
        .env("PGAPPNAME", "CI_JOB_ID=allowed-job");
    let out = output_timeout(c, None, T);
    assert!(
        stderr(&out).contains(&denied_msg("no-where-less-delete")),
        "{}",
        stderr(&out)
    );
    // The allowed job.
    let r = run(Some("allowed-job"), "DELETE FROM t");
    assert_eq!(r[0]["ok"], true, "{}", r[0]);
    assert_eq!(t_contents(&db), "");

    // exe selector: the policy agent may TRUNCATE, psql may not.
    psql_direct(&db.name, "insert into t values (7), (8)");
    let out = psql_multi(&d, &db.name, &["TRUNCATE t"]);
    assert!(
        stderr(&out).contains(&format!(
            "ERROR:  42501: {}",
            denied_msg("no-truncate-for-others")
        )),
        "{}",
        stderr(&out)
    );
    assert_eq!(t_contents(&db), "7,8");
    let r = run(None, "TRUNCATE t");
    assert_eq!(r[0]["ok"], true, "{}", r[0]);
    assert_eq!(t_contents(&db), "");

    // The daemon saw the labels it decided on.
    d.wait_for_log(Duration::from_secs(5), "labelled sessions", |ev| {
        ev.iter()
            .any(|e| e["message"] == "session started" && e.to_string().contains("allowed-job"))
    });
}

fn write_bad_policy(dir: &Path) -> PathBuf {
    let p = dir.join("bad.toml");
    // Line 7, column 10: the value of `action`.
    std::fs::write(
        &p,
        "[policy]\nname = \"bad\"\ndefault = \"allow\"\n\n[[rule]]\nname = \"x\"\naction = \"block\"\nkind = [\"truncate\"]\n",
    )
    .unwrap();
    p
}

/// A bad policy file stops `dbwarden run` before anything is attached: exit 2, the error as
/// file:line:column on stderr, no pins under the bpffs directory.
#[test]
fn bad_policy_refuses_to_start_with_file_line_column() {
    require_privileged();
    let dir = std::env::temp_dir().join(format!("dbwt-badpol-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let bad = write_bad_policy(&dir);
    let name = format!("dbwt-badpol-{}", std::process::id());
    let bpffs = PathBuf::from("/sys/fs/bpf").join(&name);
    let cfg = dir.join("dbwarden.toml");
    std::fs::write(
        &cfg,
        format!(
            "listen = \"127.0.0.1:{}\"\ncgroups = [\"{name}\"]\nbpffs_dir = \"{}\"\nsessions_dir = \"{}\"\nruntime_dir = \"{}\"\n",
            free_port(),
            bpffs.display(),
            dir.join("sessions").display(),
            dir.join("run").display()
        ),
    )
    .unwrap();
    let mut c = Command::new(dbwarden_bin());
    c.arg("run")
        .arg("--config")
        .arg(&cfg)
        .arg("--policy")
        .arg(&bad);
    let out = output_timeout(c, None, Duration::from_secs(30));
    let err = stderr(&out);
    eprintln!("dbwarden run stderr:\n{err}");
    assert_eq!(out.status.code(), Some(2), "exit code; stderr: {err}");
    assert!(
        err.contains(&format!("{}:7:10", bad.display())),
        "no file:line:column: {err}"
    );
    assert!(err.contains("block"), "{err}");
    assert!(
        pins_under(&bpffs).is_empty(),
        "pins left: {:?}",
        pins_under(&bpffs)
    );
    assert!(
        !dir.join("run").join("control.sock").exists(),
        "control socket created"
    );
    let _ = std::fs::remove_dir(cgroup2_mount().join(&name));
    let _ = std::fs::remove_dir_all(&bpffs);
    let _ = std::fs::remove_dir_all(&dir);
}

fn dbwarden(args: &[&str]) -> Output {
    let mut c = Command::new(dbwarden_bin());
    c.args(args);
    output_timeout(c, None, Duration::from_secs(30))
}

/// `dbwarden policy check` and `policy eval`: exit codes, file:line:column, rule names, why.
#[test]
fn policy_check_and_eval_cli() {
    let dir = std::env::temp_dir().join(format!("dbwt-polcli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let bad = write_bad_policy(&dir);
    let ident = dir.join("ident.toml");
    std::fs::write(&ident, IDENTITY_POLICY).unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let shipped: Vec<String> = std::fs::read_dir(root.join("policies"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| p.display().to_string())
        .collect();
    assert!(shipped.len() >= 2, "{shipped:?}");

    // check: every shipped policy is OK.
    let mut args = vec!["policy", "check"];
    args.extend(shipped.iter().map(String::as_str));
    let out = dbwarden(&args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert_eq!(
        stdout(&out).lines().filter(|l| l.ends_with(": OK")).count(),
        shipped.len(),
        "{}",
        stdout(&out)
    );

    // check: a bad file is reported with file:line:column, exit 1; the good one still OK.
    let b = bad.display().to_string();
    let out = dbwarden(&["policy", "check", &b, &shipped[0]]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains(&format!("{b}:7:10: unknown variant `block`")),
        "{text}"
    );
    assert!(text.contains(&format!("{}: OK", shipped[0])), "{text}");
    // A missing file is an error, not a pass.
    let missing = dir.join("missing.toml").display().to_string();
    let out = dbwarden(&["policy", "check", &missing]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).contains(&missing));

    // eval with the embedded default: per-statement rule and why.
    let out = dbwarden(&["policy", "eval", "TRUNCATE t; select 1"]);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    assert!(text.contains("decision: DENY"), "{text}");
    assert!(text.contains("rule: no-truncate"), "{text}");
    assert!(
        text.contains("statement 1: kind=truncate tables=t -> DENY by rule \"no-truncate\""),
        "{text}"
    );
    assert!(text.contains("statement 2: kind=select"), "{text}");
    assert!(text.contains("why: kind truncate"), "{text}");

    let out = dbwarden(&["policy", "eval", "select * from cards"]);
    let text = stdout(&out);
    assert!(
        text.contains("decision: REQUIRE_APPROVAL (timeout 300s)"),
        "{text}"
    );
    assert!(
        text.contains("rule: approve-unbounded-cardholder-select"),
        "{text}"
    );
    assert!(text.contains("without a row bound"), "{text}");

    let out = dbwarden(&[
        "policy",
        "eval",
        "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
    ]);
    let text = stdout(&out);
    assert!(text.contains("rule: no-where-less-writes"), "{text}");

    // eval with identity: the label decides.
    let i = ident.display().to_string();
    let out = dbwarden(&[
        "policy",
        "eval",
        "--policy",
        &i,
        "--identity",
        "CI_JOB_ID=allowed-job",
        "DELETE FROM t",
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains("decision: ALLOW"), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("rule: allowed-job-may-delete-all"),
        "{}",
        stdout(&out)
    );
    let out = dbwarden(&[
        "policy",
        "eval",
        "--policy",
        &i,
        "--identity",
        "CI_JOB_ID=other",
        "DELETE FROM t",
    ]);
    assert!(stdout(&out).contains("decision: DENY"), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("rule: no-where-less-delete"),
        "{}",
        stdout(&out)
    );
    let out = dbwarden(&[
        "policy",
        "eval",
        "--policy",
        &i,
        "--identity",
        "exe=/usr/bin/psql",
        "TRUNCATE t",
    ]);
    assert!(
        stdout(&out).contains("rule: no-truncate-for-others"),
        "{}",
        stdout(&out)
    );

    // eval with a bad policy: exit 2, file:line:column on stderr.
    let out = dbwarden(&["policy", "eval", "--policy", &b, "select 1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(&format!("{b}:7:10")),
        "{}",
        stderr(&out)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn sha256_hex(p: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(p)
        .output()
        .expect("sha256sum");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// Replaces `p` atomically (write + rename), so the daemon's file watcher never reads half a file.
fn replace_file(p: &Path, text: &str) {
    let tmp = p.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, p).unwrap();
}

const RELOAD_ALLOW: &str = "[policy]\nname = \"reload\"\nversion = \"1\"\ndefault = \"allow\"\n";
const RELOAD_DENY: &str = "[policy]\nname = \"reload\"\nversion = \"2\"\ndefault = \"allow\"\n\n[[rule]]\nname = \"no-truncate-reloaded\"\naction = \"deny\"\nkind = [\"truncate\"]\n";
/// Line 5, column 1: an unknown key.
const RELOAD_INVALID: &str = "[policy]\nname = \"reload\"\ndefault = \"allow\"\n[[rule]]\nnmae = \"typo\"\naction = \"deny\"\n";

fn truncate_via_psql(d: &Daemon, db: &PgDb) -> Output {
    psql_direct(
        &db.name,
        "insert into t values (1), (2), (3) on conflict do nothing",
    );
    psql_multi(d, &db.name, &["TRUNCATE t"])
}

/// Hot reload: SIGHUP and file changes swap the policy; an invalid file is rejected with
/// file:line:column and the previous policy stays in force; the log names the new hash.
#[test]
fn policy_hot_reload_on_sighup_and_file_change() {
    let d = Daemon::start_with(DaemonOpts {
        policy: Some(RELOAD_ALLOW.into()),
        ..Default::default()
    });
    let db = setup("pol_reload");
    let pf = d.dir.join("policy.toml");
    let hash_allow = sha256_hex(&pf);

    let out = truncate_via_psql(&d, &db);
    assert_ok(&out, "TRUNCATE under the allowing policy");
    assert_eq!(t_contents(&db), "");

    // Deny + SIGHUP.
    replace_file(&pf, RELOAD_DENY);
    let hash_deny = sha256_hex(&pf);
    // SAFETY: kill with the daemon's pid and a valid signal.
    assert_eq!(unsafe { libc::kill(d.pid() as i32, libc::SIGHUP) }, 0);
    d.wait_for_log(Duration::from_secs(15), "policy reloaded (deny)", |ev| {
        ev.iter().any(|e| {
            e["message"] == "policy reloaded"
                && e["hash"] == hash_deny.as_str()
                && e["old_hash"] == hash_allow.as_str()
        })
    });
    let out = truncate_via_psql(&d, &db);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&format!(
            "ERROR:  42501: {}",
            denied_msg("no-truncate-reloaded")
        )),
        "{}",
        stderr(&out)
    );
    assert_eq!(t_contents(&db), "1,2,3");

    // Invalid + SIGHUP: rejected with file:line:column, the deny policy stays.
    replace_file(&pf, RELOAD_INVALID);
    let loc = format!("{}:5:1", pf.display());
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(d.pid() as i32, libc::SIGHUP) }, 0);
    d.wait_for_log(
        Duration::from_secs(15),
        "policy reload rejected with file:line:col",
        |ev| {
            ev.iter().any(|e| {
                e["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("policy reload"))
                    && e.to_string().contains(&loc)
            })
        },
    );
    let out = truncate_via_psql(&d, &db);
    assert!(
        stderr(&out).contains(&denied_msg("no-truncate-reloaded")),
        "the old policy must stay in force: {}",
        stderr(&out)
    );
    assert_eq!(t_contents(&db), "1,2,3");
    assert!(
        !d.log_events()
            .iter()
            .any(|e| e["message"] == "policy reloaded" && e["old_hash"] == hash_deny.as_str()),
        "an invalid policy was loaded"
    );

    // File change alone (no signal): the watcher reloads the allowing policy.
    replace_file(&pf, RELOAD_ALLOW);
    d.wait_for_log(
        Duration::from_secs(20),
        "policy reloaded by the file watcher",
        |ev| {
            ev.iter().any(|e| {
                e["message"] == "policy reloaded"
                    && e["hash"] == hash_allow.as_str()
                    && e["trigger"] == "file changed"
            })
        },
    );
    let out = truncate_via_psql(&d, &db);
    assert_ok(&out, "TRUNCATE after reloading the allowing policy");
    assert_eq!(t_contents(&db), "");
}
