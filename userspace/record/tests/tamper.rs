//! Every way of altering a session file must be caught, with a precise reason.

mod common;
use common::*;
use dbwarden_record::*;

fn trusted() -> Vec<PublicKey> {
    vec![key(1).public_key().clone()]
}

/// Many byte positions of a small sealed file (header segment + one segment
/// with statements, end and seal), flipped with a rotating bit mask, must fail
/// verification with a reason, never panic. Runs on two threads: Ed25519 is
/// slow in unoptimised test builds (~9 ms per signature check).
#[test]
fn every_flipped_byte_of_a_small_file_fails_verification() {
    let k = key(1);
    let data = build(&k, 1, 2, 100, true);
    assert_eq!(split(&data).len(), 2);
    assert!(check(&data, &trusted()).is_ok());
    let masks = [0x01u8, 0x20, 0x80, 0xff, 0x10];
    // Every byte of both segment-header frames, every 3rd byte of the payloads.
    let segs = split(&data);
    let h0 = 8 + dbwarden_record::format::SEGMENT_HEADER_LEN;
    let s1 = segs[0].bytes().len();
    let positions: Vec<usize> = (0..data.len())
        .filter(|&p| p < h0 || (s1..s1 + h0).contains(&p) || p % 3 == 0 || p + 8 > data.len())
        .collect();
    let reasons = std::sync::Mutex::new(std::collections::BTreeMap::new());
    std::thread::scope(|sc| {
        for part in 0..2 {
            let (data, reasons, positions) = (&data, &reasons, &positions);
            sc.spawn(move || {
                let t = trusted();
                for &pos in positions.iter().skip(part).step_by(2) {
                    let mask = masks[pos % masks.len()];
                    let mut d = data.clone();
                    d[pos] ^= mask;
                    let r = check(&d, &t);
                    assert!(
                        !r.is_ok(),
                        "flip {mask:#x} at byte {pos} of {} went unnoticed",
                        data.len()
                    );
                    assert!(!r.to_string().is_empty());
                    let kind = format!("{:?}", r.outcome);
                    let kind = kind.split([' ', '{', '(']).next().unwrap().to_owned();
                    *reasons.lock().unwrap().entry(kind).or_insert(0) += 1;
                }
            });
        }
    });
    let reasons = reasons.into_inner().unwrap();
    // Different regions are reported differently (sanity of the diagnosis).
    assert!(reasons.len() >= 4, "{reasons:?}");
    eprintln!("{} bytes, outcomes: {reasons:?}", data.len());
}

#[test]
fn flipped_record_text_is_reported_at_that_record() {
    let k = key(1);
    let data = build(&k, 1, 10, 3, true);
    let mut segs = split(&data);
    let mut lines = segs[1].lines();
    let s = String::from_utf8(lines[4].clone())
        .unwrap()
        .replace("SELECT", "DELETE");
    assert!(s.contains("DELETE"));
    lines[4] = s.into_bytes();
    segs[1].set_lines(&lines);
    let r = check(&join(&segs), &trusted());
    let first = segs[1].header.first_record;
    assert_eq!(
        r.outcome,
        Outcome::Tampered {
            record: first + 4,
            segment: 1
        },
        "{r}"
    );
    assert_eq!(
        r.records, first,
        "records before the damage are still vouched for"
    );
}

#[test]
fn dropped_record_is_reported_missing() {
    let k = key(1);
    let data = build(&k, 1, 10, 3, true);
    let mut segs = split(&data);
    let first = segs[2].header.first_record;
    let mut lines = segs[2].lines();
    lines.remove(3);
    segs[2].set_lines(&lines);
    let r = check(&join(&segs), &trusted());
    assert_eq!(
        r.outcome,
        Outcome::MissingRecord {
            record: first + 3,
            segment: 2
        },
        "{r}"
    );

    // Dropping the last record of a segment: caught by the signed count.
    let mut segs = split(&data);
    let mut lines = segs[2].lines();
    let n = lines.len() as u64;
    lines.pop();
    segs[2].set_lines(&lines);
    let r = check(&join(&segs), &trusted());
    assert_eq!(
        r.outcome,
        Outcome::MissingRecord {
            record: first + n - 1,
            segment: 2
        },
        "{r}"
    );
}

#[test]
fn reordered_records_are_reported() {
    let k = key(1);
    let data = build(&k, 1, 10, 3, true);
    let mut segs = split(&data);
    let first = segs[1].header.first_record;
    let mut lines = segs[1].lines();
    lines.swap(4, 5);
    segs[1].set_lines(&lines);
    let r = check(&join(&segs), &trusted());
    assert_eq!(
        r.outcome,
        Outcome::Reordered {
            record: first + 4,
            segment: 1
        },
        "{r}"
    );
    assert!(r.to_string().contains("reordered at record"), "{r}");
}

#[test]
fn reordered_or_removed_segments_are_reported() {
    let k = key(1);
    let data = build(&k, 1, 10, 3, true);
    let segs = split(&data);
    let mut swapped = segs.clone();
    swapped.swap(1, 2);
    let r = check(&join(&swapped), &trusted());
    assert!(
        matches!(r.outcome, Outcome::SegmentOutOfOrder { segment: 1, .. }),
        "{r}"
    );
    let mut removed = segs.clone();
    removed.remove(2);
    let r = check(&join(&removed), &trusted());
    assert!(
        matches!(r.outcome, Outcome::SegmentOutOfOrder { segment: 2, .. }),
        "{r}"
    );
    assert!(r.to_string().contains("segments missing"), "{r}");
    let mut dup = segs.clone();
    dup.insert(2, segs[1].clone());
    let r = check(&join(&dup), &trusted());
    assert!(
        matches!(r.outcome, Outcome::SegmentOutOfOrder { segment: 2, .. }),
        "{r}"
    );
}

#[test]
fn truncation_reports_last_intact_record() {
    let k = key(1);
    let data = build(&k, 1, 10, 3, true);
    let segs = split(&data);
    let mut off = 0;
    for (i, s) in segs.iter().enumerate().take(segs.len() - 1) {
        off += s.bytes().len();
        let last = s.header.first_record + u64::from(s.header.record_count) - 1;
        // Cut exactly between segments.
        let r = check(&data[..off], &trusted());
        assert_eq!(
            r.outcome,
            Outcome::Unsealed {
                last_record: Some(last),
                partial_tail: None
            },
            "cut after segment {i}: {r}"
        );
        assert!(
            r.to_string().contains(&format!("after record {last}")),
            "{r}"
        );
        // Cut inside the next segment's header and inside its payload.
        for extra in [3, 100, 300] {
            let end = (off + extra).min(data.len() - 1);
            let r = check(&data[..end], &trusted());
            assert!(
                matches!(r.outcome, Outcome::Unsealed { last_record: Some(l), partial_tail: Some(_) } if l == last),
                "cut at {end} (segment {i} + {extra}): {r}"
            );
        }
    }
    let r = check(&[], &trusted());
    assert_eq!(
        r.outcome,
        Outcome::Unsealed {
            last_record: None,
            partial_tail: None
        }
    );
}

#[test]
fn segment_spliced_from_another_session_is_reported() {
    let k = key(1);
    let a = build(&k, 1, 10, 3, true);
    let b = build(&k, 2, 10, 3, true);
    let mut sa = split(&a);
    let sb = split(&b);
    sa[2] = sb[2].clone();
    let r = check(&join(&sa), &trusted());
    assert_eq!(
        r.outcome,
        Outcome::Spliced {
            segment: 2,
            found: SessionId([2; 16])
        },
        "{r}"
    );
}

#[test]
fn resigned_segments_are_rejected() {
    let k = key(1);
    let attacker = HostKey::from_seed([66; 32]);
    let data = build(&k, 1, 10, 3, true);

    // Attacker alters records and re-signs with their own key.
    let mut segs = split(&data);
    let mut lines = segs[1].lines();
    lines.remove(0);
    segs[1].set_lines(&lines);
    segs[1].header.payload_len = segs[1].payload.len() as u32;
    segs[1].header.sign(&attacker);
    let r = check(&join(&segs), &trusted());
    assert_eq!(
        r.outcome,
        Outcome::UnknownKey {
            segment: 1,
            key_id: attacker.key_id()
        },
        "{r}"
    );
    assert!(r.to_string().contains(&attacker.key_id().to_string()));

    // ... and claims to be the host key.
    segs[1].header.key_id = k.key_id();
    let r = check(&join(&segs), &trusted());
    assert_eq!(
        r.outcome,
        Outcome::BadSignature {
            segment: 1,
            key_id: k.key_id()
        },
        "{r}"
    );

    // A whole file forged with the attacker's key is rejected too.
    let forged = build(
        &std::sync::Arc::new(HostKey::from_seed([66; 32])),
        1,
        3,
        1,
        true,
    );
    assert!(matches!(
        check(&forged, &trusted()).outcome,
        Outcome::UnknownKey { segment: 0, .. }
    ));
    // Trusting several keys works: the verifier picks the one named.
    let both = vec![k.public_key().clone(), attacker.public_key().clone()];
    assert!(check(&forged, &both).is_ok());
}

#[test]
fn garbage_after_seal_and_garbage_files() {
    let k = key(1);
    let mut data = build(&k, 1, 3, 1, true);
    data.extend_from_slice(b"junk");
    assert!(matches!(
        check(&data, &trusted()).outcome,
        Outcome::Malformed { .. }
    ));
    let extra = build(&k, 1, 3, 1, true);
    let mut twice = extra.clone();
    twice.extend_from_slice(&split(&extra)[1].bytes());
    let r = check(&twice, &trusted());
    assert!(matches!(r.outcome, Outcome::Malformed { .. }), "{r}");
    // Random garbage never panics.
    let mut x = 0x1234_5678u32;
    for len in [0usize, 1, 7, 8, 100, 5000] {
        let g: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        assert!(!check(&g, &trusted()).is_ok());
        let _ = read_session_bytes(std::path::Path::new("g"), &g);
    }
}
