//! Control socket: round trips as root, refusal of non-members, group members allowed.
//! Requires root (to act as other users through `setpriv`).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use dbwarden_approvals::control::client::{self, ClientError};
use dbwarden_approvals::control::ErrorCode;
use dbwarden_approvals::{bind_control, serve_control, Broker, ControlAuth, Decision, Scope};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::oneshot;

use crate::common::{is_root, open, req, MIN};

struct Server {
    sock: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap();
        assert!(!self.sock.exists(), "socket removed at shutdown");
    }
}

fn start(broker: &Broker, dir: &Path, auth: ControlAuth) -> Server {
    let sock = dir.join("control.sock");
    let listener = bind_control(&sock, &auth).expect("bind control socket");
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(serve_control(broker.clone(), listener, auth, async {
        let _ = rx.await;
    }));
    Server {
        sock,
        stop: Some(tx),
        task,
    }
}

fn require_root() {
    assert!(
        is_root(),
        "control socket tests must run as root (they switch users with setpriv)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_show_approve_deny_as_root() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path()).await;
    let srv = start(&b, dir.path(), ControlAuth::default());
    let meta = std::fs::metadata(&srv.sock).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);

    let mut p1 = b.request(req(11, "DELETE FROM orders", MIN)).unwrap();
    let mut p2 = b.request(req(12, "DROP TABLE audit", MIN)).unwrap();

    let list = client::list(&srv.sock).await.unwrap();
    assert_eq!(
        list.iter().map(|v| v.id.as_str()).collect::<Vec<_>>(),
        vec![p1.id(), p2.id()]
    );
    let table = client::render_table(&list);
    assert!(
        table.contains(p1.id()) && table.contains("DROP TABLE audit"),
        "{table}"
    );

    let v = client::show(&srv.sock, p1.id()).await.unwrap();
    assert_eq!(v.statement, "DELETE FROM orders");
    assert!(client::render_detail(&v).contains("session:    11"));

    let d = client::approve(&srv.sock, p1.id(), Scope::Session, Some("INC-7"))
        .await
        .unwrap();
    let expected = Decision::Approved {
        approver: "root".into(),
        reason: Some("INC-7".into()),
        scope: Scope::Session,
    };
    assert_eq!(d, expected);
    assert_eq!(p1.wait().await, expected);

    let d = client::deny(&srv.sock, p2.id(), Some("not today"))
        .await
        .unwrap();
    assert_eq!(d.summary(), "denied by root: not today");
    assert_eq!(p2.wait().await, d);

    // Decided approvals still show; deciding again is refused with a code.
    assert!(!client::show(&srv.sock, p2.id()).await.unwrap().is_pending());
    let e = client::approve(&srv.sock, p2.id(), Scope::Once, None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            ClientError::Refused {
                code: ErrorCode::AlreadyDecided,
                ..
            }
        ),
        "{e}"
    );
    let e = client::show(&srv.sock, "00000000").await.unwrap_err();
    assert!(
        matches!(
            e,
            ClientError::Refused {
                code: ErrorCode::UnknownId,
                ..
            }
        ),
        "{e}"
    );
    assert!(client::list(&srv.sock).await.unwrap().is_empty());

    // Garbage and oversized lines get a bad_request answer, not a crash.
    let mut s = tokio::net::UnixStream::connect(&srv.sock).await.unwrap();
    s.write_all(b"{\"op\":\"explode\"}\n").await.unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).await.unwrap();
    assert!(line.contains("\"code\":\"bad_request\""), "{line}");
    let mut s = r.into_inner();
    s.write_all(&vec![b'x'; 20_000]).await.unwrap();
    let mut r = BufReader::new(s);
    line.clear();
    r.read_line(&mut line).await.unwrap();
    assert!(line.contains("longer than"), "{line}");

    srv.stop().await;
}

fn probe(sock: &Path, setpriv_args: &[&str], line: &str) -> std::process::Output {
    Command::new("setpriv")
        .args(setpriv_args)
        .arg(env!("CARGO_BIN_EXE_dbwarden-approvals-probe"))
        .arg(sock)
        .arg(line)
        .output()
        .expect("run setpriv (util-linux)")
}

const NOBODY: [&str; 3] = ["--reuid=65534", "--regid=65534", "--clear-groups"];

/// Approvers group `dbwtest` (gid 4242) from a private group file.
fn test_group_auth(dir: &Path) -> ControlAuth {
    let group_file = dir.join("group");
    std::fs::write(&group_file, "root:x:0:\ndbwtest:x:4242:\n").unwrap();
    ControlAuth {
        group: "dbwtest".into(),
        group_file,
        passwd_file: "/etc/passwd".into(),
    }
}

fn open_dir_for_others(dir: &Path) {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_member_is_refused_by_peer_credentials() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    open_dir_for_others(dir.path());
    let b = open(dir.path()).await;
    let srv = start(&b, dir.path(), test_group_auth(dir.path()));
    let p = b.request(req(1, "DELETE FROM t", MIN)).unwrap();

    // With the socket's own 0660 mode, the kernel already refuses the connect.
    let out = probe(&srv.sock, &NOBODY, r#"{"op":"list"}"#);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("ermission denied"));

    // Open the file mode to everyone: SO_PEERCRED is the second line of defence.
    std::fs::set_permissions(&srv.sock, std::fs::Permissions::from_mode(0o666)).unwrap();
    let line = format!(r#"{{"op":"approve","id":"{}"}}"#, p.id());
    let out = probe(&srv.sock, &NOBODY, &line);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.contains("\"code\":\"forbidden\""), "{stdout}");
    assert!(
        stdout.contains("uid 65534 is not root and not a member of group \\\"dbwtest\\\""),
        "{stdout}"
    );
    // Without the group at all, only root gets in.
    srv.stop().await;
    let srv = start(
        &b,
        dir.path(),
        ControlAuth {
            group: "no-such-group".into(),
            ..ControlAuth::default()
        },
    );
    std::fs::set_permissions(&srv.sock, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = probe(&srv.sock, &NOBODY, r#"{"op":"list"}"#);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("\"code\":\"forbidden\"") && stdout.contains("does not exist"),
        "{stdout}"
    );
    // Nothing was approved.
    assert_eq!(b.list().len(), 1);
    assert!(b.get(p.id()).unwrap().is_pending());
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_member_may_approve_under_own_name() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    open_dir_for_others(dir.path());
    let auth = test_group_auth(dir.path());
    let b = open(dir.path()).await;
    let srv = start(&b, dir.path(), auth);
    assert_eq!(std::fs::metadata(&srv.sock).unwrap().gid(), 4242);
    let mut p = b.request(req(1, "DELETE FROM t", MIN)).unwrap();

    // Supplementary group membership (checked through SO_PEERGROUPS).
    let member = ["--reuid=65534", "--regid=65534", "--groups=4242"];
    let out = probe(&srv.sock, &member, r#"{"op":"list"}"#);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("\"status\":\"list\"") && stdout.contains(p.id()),
        "{out:?}"
    );

    let line = format!(
        r#"{{"op":"deny","id":"{}","reason":"member says no"}}"#,
        p.id()
    );
    let out = probe(&srv.sock, &member, &line);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("\"status\":\"decided\""),
        "{out:?}"
    );
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(5), p.wait())
            .await
            .unwrap(),
        Decision::Denied {
            approver: "nobody".into(),
            reason: Some("member says no".into())
        }
    );

    // Primary group membership.
    let mut p = b.request(req(2, "DELETE FROM u", MIN)).unwrap();
    let primary = ["--reuid=65534", "--regid=4242", "--clear-groups"];
    let line = format!(r#"{{"op":"approve","id":"{}"}}"#, p.id());
    let out = probe(&srv.sock, &primary, &line);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("\"status\":\"decided\""),
        "{out:?}"
    );
    assert_eq!(p.wait().await.approver(), Some("nobody"));
    srv.stop().await;
}

#[tokio::test]
async fn socket_in_use_or_not_a_socket_is_refused() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path()).await;
    let srv = start(&b, dir.path(), ControlAuth::default());
    let e = bind_control(&srv.sock, &ControlAuth::default()).unwrap_err();
    assert!(e.to_string().contains("in use"), "{e}");
    srv.stop().await;
    // A stale socket (no listener) is replaced.
    drop(std::os::unix::net::UnixListener::bind(dir.path().join("stale.sock")).unwrap());
    bind_control(&dir.path().join("stale.sock"), &ControlAuth::default()).unwrap();
    std::fs::write(dir.path().join("file"), "x").unwrap();
    let e = bind_control(&dir.path().join("file"), &ControlAuth::default()).unwrap_err();
    assert!(e.to_string().contains("not a socket"), "{e}");
}

async fn open_with_rules(dir: &Path, rules: dbwarden_approvals::ApprovalRules) -> Broker {
    let mut c = crate::common::config(dir);
    c.rules = rules;
    Broker::open(c).await.expect("open broker").0
}

fn refused_records(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("approvals.journal"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["type"] == "refused")
        .collect()
}

#[track_caller]
fn assert_approval_refused(e: &ClientError, needle: &str) {
    match e {
        ClientError::Refused {
            code: ErrorCode::ApprovalRefused,
            message,
        } => assert!(message.contains(needle), "{message}"),
        other => panic!("expected approval_refused, got {other:?}"),
    }
}

/// Root approving a statement of a root session: refused by default with a clear message
/// and code, journaled; the same root may deny it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_self_approval_refused_by_default_over_the_socket() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let b = open_with_rules(dir.path(), dbwarden_approvals::ApprovalRules::default()).await;
    let srv = start(&b, dir.path(), ControlAuth::default());
    let mut r = req(1, "DELETE FROM t", MIN);
    r.requester_uid = 0;
    let mut p = b.request(r).unwrap();

    let e = client::approve(&srv.sock, p.id(), Scope::Once, Some("mine"))
        .await
        .unwrap_err();
    assert_approval_refused(
        &e,
        "approval refused: the approver (uid 0) is the uid of the requesting session; \
         self-approval is disabled ([approvals] allow_self_approval)",
    );
    assert!(client::show(&srv.sock, p.id()).await.unwrap().is_pending());
    let refused = refused_records(dir.path());
    assert_eq!(refused.len(), 1);
    assert_eq!(
        (refused[0]["approver"].as_str(), refused[0]["uid"].as_u64()),
        (Some("root"), Some(0))
    );

    let d = client::deny(&srv.sock, p.id(), Some("my own"))
        .await
        .unwrap();
    assert_eq!(d.summary(), "denied by root: my own");
    assert_eq!(p.wait().await, d);
    srv.stop().await;
}

/// An approver the (injected) cgroup lookup places in a controlled cgroup is refused, even
/// with another uid than the session's and self-approval allowed; denying still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approver_in_a_controlled_cgroup_refused_over_the_socket() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let me = std::process::id();
    let rules = dbwarden_approvals::ApprovalRules {
        allow_self_approval: true,
        controlled_cgroups: vec!["/dbwarden-agents".into()],
        cgroup_of: dbwarden_approvals::CgroupResolver::from_fn(move |pid, uid| {
            assert_eq!(
                (pid, uid),
                (me, 0),
                "the socket peer is this process, as root"
            );
            Ok("/dbwarden-agents/job-7".into())
        }),
    };
    let b = open_with_rules(dir.path(), rules).await;
    let srv = start(&b, dir.path(), ControlAuth::default());
    let mut p = b.request(req(1, "DELETE FROM t", MIN)).unwrap();
    let e = client::approve(&srv.sock, p.id(), Scope::Session, None)
        .await
        .unwrap_err();
    assert_approval_refused(
        &e,
        &format!("the approver (pid {me}, uid 0) runs in controlled cgroup /dbwarden-agents/job-7"),
    );
    assert_eq!(
        refused_records(dir.path())[0]["refusal"],
        "controlled_cgroup"
    );
    assert!(b.get(p.id()).unwrap().is_pending());
    client::deny(&srv.sock, p.id(), None).await.unwrap();
    assert!(!p.wait().await.is_approved());
    srv.stop().await;
}

/// With the real `/proc` lookup: a probe moved into a real controlled cgroup is refused; the
/// same probe outside approves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approver_in_a_real_controlled_cgroup_refused() {
    require_root();
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    let mount = mounts
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 2 && f[2] == "cgroup2").then(|| PathBuf::from(f[1]))
        })
        .expect("cgroup2 must be mounted for this test");
    let name = format!("dbwt-appr-{}", std::process::id());
    let cg = mount.join(&name).join("agent");
    std::fs::create_dir_all(&cg).unwrap();
    struct Rm(PathBuf);
    impl Drop for Rm {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir(self.0.join("agent"));
            let _ = std::fs::remove_dir(&self.0);
        }
    }
    let _rm = Rm(mount.join(&name));

    let dir = tempfile::tempdir().unwrap();
    let rules = dbwarden_approvals::ApprovalRules {
        allow_self_approval: false,
        controlled_cgroups: vec![format!("/{name}")],
        cgroup_of: dbwarden_approvals::CgroupResolver::proc(),
    };
    let b = open_with_rules(dir.path(), rules).await;
    let srv = start(&b, dir.path(), ControlAuth::default());
    let mut p = b.request(req(1, "DELETE FROM t", MIN)).unwrap();
    let line = format!(r#"{{"op":"approve","id":"{}"}}"#, p.id());

    let out = Command::new("sh")
        .arg("-c")
        .arg(r#"echo $$ > "$1/cgroup.procs" && exec "$2" "$3" "$4""#)
        .arg("sh")
        .arg(&cg)
        .arg(env!("CARGO_BIN_EXE_dbwarden-approvals-probe"))
        .arg(&srv.sock)
        .arg(&line)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.contains("\"code\":\"approval_refused\""), "{stdout}");
    assert!(
        stdout.contains(&format!("runs in controlled cgroup /{name}/agent;")),
        "{stdout}"
    );
    assert!(b.get(p.id()).unwrap().is_pending());

    let out = Command::new(env!("CARGO_BIN_EXE_dbwarden-approvals-probe"))
        .arg(&srv.sock)
        .arg(&line)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("\"status\":\"decided\""), "{stdout}");
    assert_eq!(p.wait().await.approver(), Some("root"));
    srv.stop().await;
}
