//! Engine behaviour: identity and target selectors, verdict combination,
//! messages, cache, policy reload.

use std::collections::BTreeMap;
use std::time::Duration;

use dbwarden_policy::{render_eval, Action, Dialect, Engine, Identity, Policy, Protocol, Target};

const POLICY: &str = r#"
[policy]
name = "selectors"
version = "1"
default = "allow"
approval_timeout = 120

[[rule]]
name = "tag-all-writes"
action = "tag"
kind = ["dml"]
tags = ["write"]

[[rule]]
name = "ci-may-truncate"
action = "allow"
kind = ["truncate"]
tags = ["ci"]
[rule.identity]
labels = { ci_job = "nightly-*" }

[[rule]]
name = "agents-no-truncate"
action = "deny"
kind = ["truncate"]
message = "TRUNCATE is not allowed for agents"
[rule.identity]
cgroup = ["/agents.slice/*"]

[[rule]]
name = "uid-1000-no-delete"
action = "deny"
kind = ["delete"]
[rule.identity]
uid = [1000]
exe = ["/usr/bin/python*"]

[[rule]]
name = "prod-db-approval"
action = "require_approval"
timeout = "30s"
kind = ["update"]
[rule.target]
database = ["prod"]
user = ["app"]

[[rule]]
name = "mysql-approval"
action = "require_approval"
kind = ["insert"]
[rule.target]
protocol = ["mysql"]
address = ["10.0.0.*:3306"]

[[rule]]
name = "deny-everything-else-truncate"
action = "deny"
kind = ["truncate"]
"#;

fn engine() -> Engine {
    Engine::new(Policy::parse(POLICY, "selectors.toml").unwrap())
}

fn id(cgroup: &str, labels: &[(&str, &str)]) -> Identity {
    Identity {
        pid: 42,
        uid: 1000,
        gid: 1000,
        user: Some("agent".into()),
        cgroup: cgroup.into(),
        exe: "/usr/bin/python3.12".into(),
        comm: "python3".into(),
        labels: labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<BTreeMap<_, _>>(),
        privileged: false,
    }
}

fn pg(db: &str, user: &str) -> Target {
    Target {
        addr: Some("127.0.0.1:5432".into()),
        protocol: Protocol::Postgres,
        database: Some(db.into()),
        user: Some(user.into()),
    }
}

#[test]
fn identity_labels_and_cgroups_select() {
    let e = engine();
    let t = pg("shop", "app");
    let ci = e.decide(
        "TRUNCATE t",
        Dialect::Postgres,
        &id("/ci.slice/x", &[("ci_job", "nightly-7")]),
        &t,
    );
    assert_eq!(ci.action, Action::Allow);
    assert_eq!(ci.rule, "ci-may-truncate");
    assert_eq!(ci.tags, vec!["ci"]);
    let agent = e.decide(
        "TRUNCATE t",
        Dialect::Postgres,
        &id("/agents.slice/a1.scope", &[]),
        &t,
    );
    assert_eq!(agent.action, Action::Deny);
    assert_eq!(agent.rule, "agents-no-truncate");
    assert_eq!(
        agent.message,
        "dbwarden: statement denied by rule \"agents-no-truncate\": TRUNCATE is not allowed for agents"
    );
    // A label with a non-matching value does not select.
    let other = e.decide(
        "TRUNCATE t",
        Dialect::Postgres,
        &id("/x", &[("ci_job", "weekly")]),
        &t,
    );
    assert_eq!(other.rule, "deny-everything-else-truncate");
    // The second decision came from the cache, the verdicts still differ.
    assert!(agent.cached && other.cached);
}

#[test]
fn uid_and_exe_select() {
    let e = engine();
    let t = pg("shop", "app");
    let mut who = id("/x", &[]);
    let v = e.decide("DELETE FROM t WHERE id = 1", Dialect::Postgres, &who, &t);
    assert_eq!(
        (v.action, v.rule.as_str()),
        (Action::Deny, "uid-1000-no-delete")
    );
    assert_eq!(v.tags, vec!["write"], "tags of tag rules are kept");
    who.uid = 0;
    let v = e.decide("DELETE FROM t WHERE id = 1", Dialect::Postgres, &who, &t);
    assert_eq!((v.action, v.rule.as_str()), (Action::Allow, "default"));
    who.uid = 1000;
    who.exe = "/usr/bin/psql".into();
    let v = e.decide("DELETE FROM t WHERE id = 1", Dialect::Postgres, &who, &t);
    assert_eq!(v.rule, "default");
}

const PRIVILEGE_POLICY: &str = r#"
[policy]
name = "privileged-agents"
default = "allow"

[[rule]]
name = "unprivileged-may-truncate-scratch"
action = "allow"
kind = ["truncate"]
tables = ["scratch"]
[rule.identity]
privileged = false

[[rule]]
name = "no-privileged-agents"
action = "deny"
message = "privileged agents may not query"
identity = { privileged = true, cgroup = ["/agents/*"] }

[[rule]]
name = "truncate-needs-approval"
action = "require_approval"
kind = ["truncate"]
"#;

#[test]
fn privileged_matcher_selects_and_cached_analyses_do_not_leak_verdicts() {
    let e = Engine::new(Policy::parse(PRIVILEGE_POLICY, "privileged.toml").unwrap());
    let t = pg("shop", "app");
    let user = id("/agents/a1", &[]);
    let root = Identity {
        uid: 0,
        privileged: true,
        ..id("/agents/a1", &[])
    };
    // Alternate identities on the same text: from the second decision on, the analysis comes
    // from the cache, and each verdict is still the identity's own.
    for round in 0..3 {
        let r = e.decide("select 1", Dialect::Postgres, &root, &t);
        assert_eq!(
            (r.action, r.rule.as_str()),
            (Action::Deny, "no-privileged-agents"),
            "round {round}"
        );
        assert_eq!(
            r.message,
            "dbwarden: statement denied by rule \"no-privileged-agents\": privileged agents may not query"
        );
        assert!(
            r.statements[0].reason.contains("privileged = true"),
            "{r:?}"
        );
        assert_eq!(r.cached, round > 0);
        let u = e.decide("select 1", Dialect::Postgres, &user, &t);
        assert_eq!((u.action, u.rule.as_str()), (Action::Allow, "default"));
        assert!(u.cached);
        let r2 = e.decide("select 1", Dialect::Postgres, &root, &t);
        assert_eq!(r2.action, Action::Deny);
    }
    // The matcher combines with the others: a privileged process outside /agents/* is not
    // selected by that rule.
    let elsewhere = Identity {
        cgroup: "/ops".into(),
        ..root.clone()
    };
    assert_eq!(
        e.decide("select 1", Dialect::Postgres, &elsewhere, &t).rule,
        "default"
    );
    // `privileged = false` selects only unprivileged identities.
    let u = e.decide("TRUNCATE scratch", Dialect::Postgres, &user, &t);
    assert_eq!(
        (u.action, u.rule.as_str()),
        (Action::Allow, "unprivileged-may-truncate-scratch")
    );
    assert!(
        u.statements[0].reason.contains("privileged = false"),
        "{u:?}"
    );
    let r = e.decide("TRUNCATE scratch", Dialect::Postgres, &elsewhere, &t);
    assert!(
        matches!(r.action, Action::RequireApproval { .. }) && r.rule == "truncate-needs-approval",
        "{r:?}"
    );
    // A default identity (what a caller that never sets the field gets) is unprivileged.
    assert!(!Identity::default().privileged);
}

#[test]
fn privileged_matcher_must_be_a_boolean() {
    for bad in ["\"yes\"", "1", "[true]"] {
        let src = format!(
            "[policy]\nname = \"p\"\ndefault = \"allow\"\n[[rule]]\nname = \"r\"\naction = \"deny\"\n[rule.identity]\nprivileged = {bad}\n"
        );
        let err = Policy::parse(&src, "p.toml").unwrap_err().to_string();
        assert!(err.contains("p.toml:8:"), "{bad}: {err}");
    }
}

#[test]
fn target_database_user_protocol_address_select() {
    let e = engine();
    let who = id("/x", &[]);
    let v = e.decide(
        "UPDATE t SET a = 1 WHERE id = 2",
        Dialect::Postgres,
        &who,
        &pg("prod", "app"),
    );
    assert_eq!(
        v.action,
        Action::RequireApproval {
            timeout: Duration::from_secs(30)
        }
    );
    assert_eq!(v.rule, "prod-db-approval");
    assert!(v
        .message
        .starts_with("dbwarden: statement held for approval by rule \"prod-db-approval\""));
    let v = e.decide(
        "UPDATE t SET a = 1 WHERE id = 2",
        Dialect::Postgres,
        &who,
        &pg("staging", "app"),
    );
    assert_eq!(v.action, Action::Allow);
    let v = e.decide(
        "UPDATE t SET a = 1 WHERE id = 2",
        Dialect::Postgres,
        &who,
        &pg("prod", "admin"),
    );
    assert_eq!(v.action, Action::Allow);
    let my = Target {
        addr: Some("10.0.0.9:3306".into()),
        protocol: Protocol::Mysql,
        database: None,
        user: None,
    };
    let v = e.decide("INSERT INTO t VALUES (1)", Dialect::MySql, &who, &my);
    assert_eq!(
        v.action,
        Action::RequireApproval {
            timeout: Duration::from_secs(120)
        }
    );
    let v = e.decide(
        "INSERT INTO t VALUES (1)",
        Dialect::MySql,
        &who,
        &Target {
            addr: None,
            ..my.clone()
        },
    );
    assert_eq!(v.action, Action::Allow, "address matcher needs an address");
    let v = e.decide(
        "INSERT INTO t VALUES (1)",
        Dialect::Postgres,
        &who,
        &pg("prod", "x"),
    );
    assert_eq!(v.action, Action::Allow);
}

#[test]
fn multi_statement_combination() {
    let e = Engine::new(Policy::embedded_default());
    let who = id("/x", &[]);
    let t = pg("shop", "app");
    let v = e.decide(
        "SELECT * FROM cards; COPY t TO STDOUT; TRUNCATE t; SELECT 1",
        Dialect::Postgres,
        &who,
        &t,
    );
    assert_eq!(v.action, Action::Deny);
    assert_eq!(v.rule, "no-truncate");
    assert!(v.message.ends_with("(statement 3 of 4)"), "{}", v.message);
    assert_eq!(v.statements.len(), 4);
    assert_eq!(v.statements[0].rule, "approve-unbounded-cardholder-select");
    assert_eq!(v.statements[3].action, Action::Allow);
    assert!(v.tags.contains(&"pci:destructive".to_owned()));
    assert!(v.tags.contains(&"pci:cardholder-data".to_owned()));
    let v = e.decide("SELECT * FROM cards; SELECT 2", Dialect::Postgres, &who, &t);
    assert_eq!(
        v.action,
        Action::RequireApproval {
            timeout: Duration::from_secs(300)
        }
    );
    let empty = e.decide("  -- nothing\n", Dialect::Postgres, &who, &t);
    assert_eq!(empty.action, Action::Allow);
    assert!(empty.statements.is_empty());
}

#[test]
fn approval_timeout_is_the_smallest() {
    let src = r#"
[policy]
name = "t"
default = "allow"
[[rule]]
name = "slow"
action = "require_approval"
timeout = "10m"
kind = ["update"]
[[rule]]
name = "fast"
action = "require_approval"
timeout = 20
kind = ["insert"]
"#;
    let e = Engine::new(Policy::parse(src, "t").unwrap());
    let v = e.decide(
        "UPDATE t SET a = 1 WHERE b = 2; INSERT INTO t VALUES (1)",
        Dialect::Postgres,
        &Identity::default(),
        &pg("d", "u"),
    );
    assert_eq!(
        v.action,
        Action::RequireApproval {
            timeout: Duration::from_secs(20)
        }
    );
    assert_eq!(v.rule, "slow", "first most severe statement names the rule");
}

#[test]
fn messages_never_echo_literals() {
    let e = Engine::new(Policy::embedded_default());
    let who = Identity::default();
    let t = pg("shop", "app");
    let pan = "4111111111111111";
    for sql in [
        format!("DELETE FROM orders -- {pan}"),
        format!("SELECT pg_read_file('{pan}')"),
        format!("SELECT * FROM cards WHERE pan = '{pan}'"),
        format!("SELEC {pan}"),
        format!("SELECT 1 FROM t WHERE x = {pan} {pan}"),
        format!("TRUNCATE \"t_{pan}\""),
        format!("COPY (SELECT '{pan}') TO PROGRAM 'echo {pan}'"),
        format!("DO $$ BEGIN RAISE '{pan}'; END $$"),
    ] {
        let v = e.decide(&sql, Dialect::Postgres, &who, &t);
        let text = format!("{v:?}\n{}", render_eval(&e.policy(), &v));
        assert!(!text.contains("4111"), "{sql}: {text}");
    }
}

#[test]
fn literal_varying_queries_share_the_cache() {
    let e = Engine::new(Policy::embedded_default());
    let who = Identity::default();
    let t = pg("shop", "app");
    let a = e.decide(
        "SELECT * FROM orders WHERE id = 1 AND n = 'a'",
        Dialect::Postgres,
        &who,
        &t,
    );
    let b = e.decide(
        "SELECT * FROM orders WHERE id = 99 AND n = 'zz'",
        Dialect::Postgres,
        &who,
        &t,
    );
    assert!(!a.cached && b.cached);
    assert_eq!(e.cache_stats().len, 1);
    // The dialect is part of the key.
    let c = e.decide(
        "SELECT * FROM orders WHERE id = 1 AND n = 'a'",
        Dialect::MySql,
        &who,
        &t,
    );
    assert!(!c.cached);
    // Unterminated input is never cached.
    let d1 = e.decide("SELECT 'x", Dialect::Postgres, &who, &t);
    let d2 = e.decide("SELECT 'x", Dialect::Postgres, &who, &t);
    assert!(!d1.cached && !d2.cached);
    assert_eq!(d2.action, Action::Deny);
    // A string hiding `; DROP` is a literal, and keys stay separate from real DROPs.
    let s = e.decide("SELECT 'a' ; DROP TABLE t", Dialect::Postgres, &who, &t);
    assert_eq!(s.action, Action::Deny);
    let s2 = e.decide("SELECT 'a ; DROP TABLE t'", Dialect::Postgres, &who, &t);
    assert_eq!(s2.action, Action::Allow);
    // Statements whose analysis reads literal contents are not cached.
    let p1 = e.decide("PREPARE s FROM 'SELECT 1'", Dialect::MySql, &who, &t);
    let p2 = e.decide("PREPARE s FROM 'DELETE FROM t'", Dialect::MySql, &who, &t);
    assert_eq!(p1.action, Action::Allow);
    assert_eq!(p2.action, Action::Deny);
    let f1 = e.decide(
        "CREATE FUNCTION f() RETURNS int LANGUAGE 'sql' AS 'SELECT 1'",
        Dialect::Postgres,
        &who,
        &t,
    );
    let f2 = e.decide(
        "CREATE FUNCTION f() RETURNS int LANGUAGE 'c' AS 'SELECT 1'",
        Dialect::Postgres,
        &who,
        &t,
    );
    // A trusted-language function is a schema change (held); C is denied.
    assert!(
        matches!(
            (f1.action, f2.action),
            (Action::RequireApproval { .. }, Action::Deny)
        ),
        "{f1:?} {f2:?}"
    );
}

#[test]
fn replace_swaps_policy() {
    let e = Engine::new(Policy::embedded_default());
    let who = Identity::default();
    let t = pg("shop", "app");
    assert_eq!(
        e.decide("INSERT INTO t VALUES (1)", Dialect::Postgres, &who, &t)
            .action,
        Action::Allow
    );
    let old = e.policy();
    e.replace(Policy::parse(include_str!("../../../policies/read-only.toml"), "ro").unwrap());
    assert_eq!(e.policy().name(), "read-only");
    assert_eq!(old.name(), "pci-dss", "holders of the old Arc keep it");
    assert_eq!(
        e.decide("INSERT INTO t VALUES (1)", Dialect::Postgres, &who, &t)
            .action,
        Action::Deny
    );
}

#[test]
fn concurrent_decisions() {
    let e = std::sync::Arc::new(Engine::new(Policy::embedded_default()));
    let hs: Vec<_> = (0..4)
        .map(|i| {
            let e = std::sync::Arc::clone(&e);
            std::thread::spawn(move || {
                let t = pg("shop", "app");
                for n in 0..300 {
                    let v = e.decide(
                        &format!("SELECT * FROM orders WHERE id = {n}"),
                        Dialect::Postgres,
                        &Identity::default(),
                        &t,
                    );
                    assert_eq!(v.action, Action::Allow);
                    let v = e.decide(
                        &format!("DELETE FROM t{i}"),
                        Dialect::Postgres,
                        &Identity::default(),
                        &t,
                    );
                    assert_eq!(v.action, Action::Deny);
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
}

#[test]
fn hostile_inputs_do_not_panic() {
    let e = Engine::new(Policy::embedded_default());
    let who = Identity::default();
    let t = pg("shop", "app");
    let deep = format!("SELECT {}1{}", "(".repeat(5000), ")".repeat(5000));
    let long = format!("SELECT {} FROM t", vec!["a"; 20000].join(","));
    for sql in [
        deep.as_str(),
        long.as_str(),
        "\0",
        "SELECT '\u{0}'",
        ";;;;",
        "$$",
        "$a$",
        "/*/*/*",
        "E'\\",
        "SELECT \u{1F600} FROM \"\u{1F600}\"",
        "`",
    ] {
        for d in [Dialect::Postgres, Dialect::MySql] {
            let v = e.decide(sql, d, &who, &t);
            assert!(matches!(
                v.action,
                Action::Allow | Action::Deny | Action::RequireApproval { .. }
            ));
        }
    }
    assert_eq!(
        e.decide(&deep, Dialect::Postgres, &who, &t).action,
        Action::Deny
    );
}
