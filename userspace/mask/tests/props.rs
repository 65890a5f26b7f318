//! Property tests over realistic rows: every PAN format in every position is masked; look-alikes
//! (non-Luhn 16-digit numbers, dates, phone numbers, order ids, amounts) are left alone.

use std::borrow::Cow;

use dbwarden_mask::{MaskConfig, Masker};
use proptest::prelude::*;

fn masker() -> Masker {
    let cfg = MaskConfig::from_policy_toml(
        "[masking]\ndetectors = [\"pan\", \"ssn\", \"iban\", \"email\"]\n",
        "t",
    )
    .expect("config");
    Masker::new(&cfg, [5; 32]).expect("masker")
}

fn luhn_check_digit(body: &[u8]) -> u8 {
    let mut sum = 0u32;
    for (i, &d) in body.iter().rev().enumerate() {
        let mut v = u32::from(d - b'0');
        if i % 2 == 0 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    b'0' + u8::try_from((10 - sum % 10) % 10).expect("digit")
}

/// (prefix, total length) of real issuer ranges.
const ISSUERS: &[(&str, usize)] = &[
    ("4", 16),
    ("4", 13),
    ("4", 19),
    ("51", 16),
    ("55", 16),
    ("2221", 16),
    ("2720", 16),
    ("34", 15),
    ("37", 15),
    ("6011", 16),
    ("65", 16),
    ("3528", 16),
    ("36", 14),
    ("62", 19),
];

/// A valid PAN (digits only).
fn pan() -> impl Strategy<Value = Vec<u8>> {
    (0..ISSUERS.len(), proptest::collection::vec(b'0'..=b'9', 19)).prop_map(|(i, rnd)| {
        let (p, len) = ISSUERS[i];
        let mut d = p.as_bytes().to_vec();
        d.extend_from_slice(&rnd[..len - 1 - p.len()]);
        let c = luhn_check_digit(&d);
        d.push(c);
        d
    })
}

/// Format digits with groups `sizes` joined by `sep` (sizes must cover all digits).
fn group(d: &[u8], sizes: &[usize], sep: u8) -> Vec<u8> {
    let mut out = Vec::new();
    let mut at = 0;
    for (k, &s) in sizes.iter().enumerate() {
        if k > 0 {
            out.push(sep);
        }
        let end = (at + s).min(d.len());
        out.extend_from_slice(&d[at..end]);
        at = end;
    }
    out.extend_from_slice(&d[at..]);
    out
}

/// A PAN in one of the printed formats.
fn formatted_pan() -> impl Strategy<Value = Vec<u8>> {
    (pan(), 0..5usize).prop_map(|(d, f)| match (f, d.len()) {
        (1, 16) => group(&d, &[4, 4, 4, 4], b' '),
        (2, 16) => group(&d, &[4, 4, 4, 4], b'-'),
        (3, 15) => group(&d, &[4, 6, 5], b' '),
        (4, 15) => group(&d, &[4, 6, 5], b'-'),
        _ => d,
    })
}

/// Benign row fields that must never be masked.
fn benign_field() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        "[A-Z][a-z]{2,10} [A-Z][a-z]{2,12}".prop_map(String::into_bytes),
        (2000u32..2030, 1u32..13, 1u32..29)
            .prop_map(|(y, m, d)| format!("{y}-{m:02}-{d:02}").into_bytes()),
        (2000u32..2030, 1u32..13, 1u32..29, 0u32..24, 0u32..60).prop_map(|(y, m, d, h, mi)| {
            format!("{y}{m:02}{d:02} {y}-{m:02}-{d:02} {h:02}:{mi:02}:00").into_bytes()
        }),
        (200u32..999, 200u32..999, 0u32..9999)
            .prop_map(|(a, b, c)| format!("+1 {a}-{b}-{c:04}").into_bytes()),
        (200u32..999, 200u32..999, 0u32..9999)
            .prop_map(|(a, b, c)| format!("({a}) {b} {c:04}").into_bytes()),
        (0u64..10_000_000_000).prop_map(|n| format!("ORD-{n:010}").into_bytes()),
        (0u64..100_000_000, 0u32..100).prop_map(|(n, c)| format!("{n}.{c:02}").into_bytes()),
        pan().prop_map(|mut d| {
            // Break the Luhn check digit.
            let last = d.len() - 1;
            d[last] = b'0' + (d[last] - b'0' + 1) % 10;
            d
        }),
    ]
}

fn join(fields: &[Vec<u8>]) -> Vec<u8> {
    let mut row = Vec::new();
    for (k, f) in fields.iter().enumerate() {
        if k > 0 {
            row.push(b',');
        }
        row.extend_from_slice(f);
    }
    row
}

fn expected_last4(p: &[u8]) -> Vec<u8> {
    let digits = p.iter().filter(|b| b.is_ascii_digit()).count();
    let mut seen = 0;
    p.iter()
        .map(|&b| {
            if b.is_ascii_digit() {
                seen += 1;
                if seen > digits - 4 {
                    b
                } else {
                    b'*'
                }
            } else {
                b
            }
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn pans_are_always_masked(
        pad in 0usize..70,
        fields in proptest::collection::vec(benign_field(), 0..8),
        at in 0usize..8,
        p in formatted_pan(),
    ) {
        let m = masker();
        let mut fields = fields;
        let at = at.min(fields.len());
        fields.insert(at, p.clone());
        let mut row = vec![b'x'; pad];
        row.push(b'=');
        row.extend_from_slice(&join(&fields));
        let start = pad + 1 + fields[..at].iter().map(|f| f.len() + 1).sum::<usize>();
        let out = m.mask_bytes(&row);
        prop_assert_eq!(out.len(), row.len());
        let expect = expected_last4(&p);
        prop_assert_eq!(&out[start..start + p.len()], expect.as_slice());
        prop_assert!(!out.windows(p.len()).any(|w| w == p.as_slice()));
    }

    #[test]
    fn lookalikes_are_left_alone(
        pad in 0usize..70,
        fields in proptest::collection::vec(benign_field(), 1..12),
    ) {
        let m = masker();
        let mut row = vec![b'x'; pad];
        row.push(b'|');
        row.extend_from_slice(&join(&fields));
        let out = m.mask_bytes(&row);
        prop_assert!(matches!(out, Cow::Borrowed(_)), "changed: {}", String::from_utf8_lossy(&out));
    }

    #[test]
    fn pan_inside_longer_run_is_not_a_pan(p in pan(), extra in proptest::collection::vec(b'0'..=b'9', 7..12)) {
        let m = masker();
        let mut row = b"id=".to_vec();
        row.extend_from_slice(&p);
        row.extend_from_slice(&extra);
        prop_assume!(p.len() + extra.len() > 19);
        prop_assert!(m.find(&row).is_empty());
    }

    #[test]
    fn mask_str_never_panics_and_stays_utf8(s in "\\PC{0,200}") {
        let m = masker();
        let out = m.mask_str(&s);
        prop_assert_eq!(out.chars().count() >= 1 || s.is_empty(), true);
    }
}

#[test]
fn letters_adjacent_are_fine() {
    let m = masker();
    assert_eq!(
        &*m.mask_str("pan=4111111111111111;"),
        "pan=************1111;"
    );
    assert_eq!(&*m.mask_str("x4111111111111111y"), "x************1111y");
    assert_eq!(
        &*m.mask_str("1234567890123456789012345"),
        "1234567890123456789012345"
    );
}

#[test]
fn iban_ssn_email_detected() {
    let m = masker();
    assert_eq!(
        &*m.mask_str("iban DE89 3704 0044 0532 0130 00."),
        "iban **** **** **** **** **30 00."
    );
    assert_eq!(&*m.mask_str("ssn=123-45-6789"), "ssn=***-**-****");
    assert_eq!(
        &*m.mask_str("to: jane.doe@example.org"),
        "to: ****.***@*******.***"
    );
}
