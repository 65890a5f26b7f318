//! Sessions directory and index: whole-file deletion or replacement is detected.

mod common;
use common::*;
use dbwarden_record::*;
use std::sync::Arc;

fn populate(dir: &std::path::Path, k: &Arc<HostKey>, n: u8) -> Arc<SessionStore> {
    let store = SessionStore::open(dir, Arc::clone(k)).unwrap();
    for id in 1..=n {
        let mut w = store.create(header(id), cfg()).unwrap();
        for b in statement_records(u64::from(id)) {
            w.append(T0, b).unwrap();
        }
        w.seal(T0, "bye").unwrap();
    }
    store
}

fn file_of(id: u8) -> String {
    session_file_name(&header(id))
}

#[test]
fn clean_directory_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sessions");
    let k = key(1);
    let store = populate(&dir, &k, 3);
    // An open (never sealed) session is known to the index and reported unsealed.
    let mut w = store.create(header(9), cfg()).unwrap();
    w.append(T0, statement_records(1).remove(0)).unwrap();
    drop(w);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    assert_eq!(
        std::fs::metadata(dir.join(file_of(1)))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert!(
        file_of(1).starts_with("20261126T021501Z-0101"),
        "{}",
        file_of(1)
    );
    let mut last = None;
    let rep = verify_dir(&dir, &[k.public_key().clone()], &mut |p| last = Some(p)).unwrap();
    assert!(rep.problems.is_empty(), "{:?}", rep.problems);
    assert_eq!(rep.sessions.len(), 4);
    assert_eq!(rep.sessions.iter().filter(|r| r.is_ok()).count(), 3);
    let open = rep.sessions.iter().find(|r| !r.is_ok()).unwrap();
    assert_eq!(
        open.outcome,
        Outcome::Unsealed {
            last_record: Some(1),
            partial_tail: None
        }
    );
    let p = last.unwrap();
    assert_eq!(p.done, p.total);
    // Reopening the store continues the chain.
    drop(store);
    let store = SessionStore::open(&dir, Arc::clone(&k)).unwrap();
    let mut w = store.create(header(10), cfg()).unwrap();
    w.seal(T0, "bye").unwrap();
    let rep = verify_dir(&dir, &[k.public_key().clone()], &mut |_| {}).unwrap();
    assert!(rep.problems.is_empty(), "{:?}", rep.problems);
}

#[test]
fn deleted_sealed_file_is_reported_missing() {
    let tmp = tempfile::tempdir().unwrap();
    let k = key(1);
    populate(tmp.path(), &k, 3);
    std::fs::remove_file(tmp.path().join(file_of(2))).unwrap();
    let rep = verify_dir(tmp.path(), &[k.public_key().clone()], &mut |_| {}).unwrap();
    assert!(!rep.is_ok());
    assert_eq!(
        rep.problems,
        vec![IndexProblem::MissingFile {
            session_id: SessionId([2; 16]),
            file: file_of(2)
        }]
    );
    assert!(rep.problems[0].to_string().contains("is missing"));
}

#[test]
fn file_replaced_by_another_valid_session_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let k = key(1);
    populate(tmp.path(), &k, 3);
    std::fs::copy(tmp.path().join(file_of(3)), tmp.path().join(file_of(2))).unwrap();
    let rep = verify_dir(tmp.path(), &[k.public_key().clone()], &mut |_| {}).unwrap();
    // The file itself is a valid session…
    assert!(rep.sessions.iter().all(VerifyReport::is_ok));
    // …but not the one the index sealed under that name.
    assert_eq!(rep.problems.len(), 1, "{:?}", rep.problems);
    let IndexProblem::Replaced {
        session_id,
        file,
        detail,
    } = &rep.problems[0]
    else {
        panic!("{:?}", rep.problems)
    };
    assert_eq!(
        (*session_id, file.as_str()),
        (SessionId([2; 16]), file_of(2).as_str())
    );
    assert!(detail.contains("final hash differs"), "{detail}");

    // Same session, cut back to an earlier state (seal removed): also reported.
    populate(&tmp.path().join("b"), &k, 1);
    let p = tmp.path().join("b").join(file_of(1));
    let data = std::fs::read(&p).unwrap();
    let segs = split(&data);
    std::fs::write(&p, join(&segs[..segs.len() - 1])).unwrap();
    let rep = verify_dir(tmp.path().join("b"), &[k.public_key().clone()], &mut |_| {}).unwrap();
    assert!(
        matches!(&rep.problems[..], [IndexProblem::Replaced { detail, .. }] if detail.contains("index says sealed")),
        "{:?}",
        rep.problems
    );
}

#[test]
fn unindexed_file_and_tampered_index_are_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let k = key(1);
    populate(tmp.path(), &k, 3);
    // A session written elsewhere and dropped in.
    let other = build(&k, 7, 2, 1, true);
    std::fs::write(tmp.path().join(file_of(7)), other).unwrap();
    // An index entry edited (record count changed).
    let idx = tmp.path().join(INDEX_FILE);
    let text = std::fs::read_to_string(&idx).unwrap();
    let edited = text.replacen("\"records\":7", "\"records\":8", 1);
    assert_ne!(edited, text);
    std::fs::write(&idx, edited).unwrap();
    let rep = verify_dir(tmp.path(), &[k.public_key().clone()], &mut |_| {}).unwrap();
    assert!(
        rep.problems
            .contains(&IndexProblem::NotInIndex { file: file_of(7) }),
        "{:?}",
        rep.problems
    );
    assert!(
        rep.problems
            .iter()
            .any(|p| matches!(p, IndexProblem::BadSignature { .. })),
        "{:?}",
        rep.problems
    );
    // Index removed entirely.
    std::fs::remove_file(&idx).unwrap();
    let rep = verify_dir(tmp.path(), &[k.public_key().clone()], &mut |_| {}).unwrap();
    assert_eq!(rep.problems, vec![IndexProblem::IndexMissing]);
    // A line removed from the middle breaks the chain.
    let tmp2 = tempfile::tempdir().unwrap();
    populate(tmp2.path(), &k, 3);
    let idx = tmp2.path().join(INDEX_FILE);
    let text = std::fs::read_to_string(&idx).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.remove(1);
    std::fs::write(&idx, lines.join("\n") + "\n").unwrap();
    let rep = verify_dir(tmp2.path(), &[k.public_key().clone()], &mut |_| {}).unwrap();
    assert!(
        rep.problems
            .iter()
            .any(|p| matches!(p, IndexProblem::ChainBroken { line: 2 })),
        "{:?}",
        rep.problems
    );
}
