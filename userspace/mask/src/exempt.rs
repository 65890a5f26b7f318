//! Whole tokens that hold digit runs but are not cardholder data.
//!
//! A 13–19 digit run between hex letters passes IIN and Luhn about one time in ten, so without
//! these rules about one md5 digest in 1,700 (and one random UUID in 20) would come back altered.
//! Each rule is for a *whole* token of one exact shape, bounded by characters that are not
//! letters or digits, so a PAN beside such a token, or in a token of another length, is still
//! found:
//!
//! * **Hex digest**: exactly 32, 40, 64 or 128 hex characters (md5, sha1, sha256, sha512) in one
//!   letter case, at least one of them a letter.
//! * **UUID**: `8-4-4-4-12` hex characters in one letter case.
//! * **Reference head**: in `RF57 5513 1471 4985` (ISO 11649 creditor references, IBAN-like
//!   account references), the two digits glued to the two capital letters that start the token
//!   are check digits, not the start of a card number: a PAN search does not start there.
//!
//! These tokens are shaped by whoever writes them: an agent could build one around a card number
//! on purpose. Content detection is the net for card numbers that appear by accident; columns
//! and the values derived from them are masked by their rules whatever they look like.

use std::ops::Range;

/// Lengths of the hex digests exempted: md5, sha1, sha256, sha512.
const DIGEST_LENS: [usize; 4] = [32, 40, 64, 128];

/// Whether the hit `r` of `input` (a PAN or IBAN candidate) is part of a whole hex digest or
/// UUID.
pub(crate) fn in_hex_token(input: &[u8], r: &Range<usize>) -> bool {
    in_digest(input, r) || in_uuid(input, r)
}

fn in_digest(input: &[u8], r: &Range<usize>) -> bool {
    if !input[r.clone()].iter().all(u8::is_ascii_hexdigit) {
        return false;
    }
    let s = extend_left(input, r.start, u8::is_ascii_hexdigit);
    let e = extend_right(input, r.end, u8::is_ascii_hexdigit);
    bounded(input, s, e) && is_digest(&input[s..e])
}

fn in_uuid(input: &[u8], r: &Range<usize>) -> bool {
    let hex_or_dash = |b: &u8| b.is_ascii_hexdigit() || *b == b'-';
    if !input[r.clone()].iter().all(hex_or_dash) {
        return false;
    }
    let s = extend_left(input, r.start, hex_or_dash);
    let e = extend_right(input, r.end, hex_or_dash);
    bounded(input, s, e) && is_uuid(&input[s..e])
}

/// Whether the digit group starting at `start` is the check-digit pair of an IBAN-like reference:
/// exactly two digits, glued to exactly two capital letters that start the token, followed by a
/// space and the next group.
pub(crate) fn reference_head(input: &[u8], start: usize, end: usize) -> bool {
    start >= 2
        && input[start - 2].is_ascii_uppercase()
        && input[start - 1].is_ascii_uppercase()
        && (start == 2 || !input[start - 3].is_ascii_alphanumeric())
        && start + 3 < end
        && input[start].is_ascii_digit()
        && input[start + 1].is_ascii_digit()
        && input[start + 2] == b' '
}

fn extend_left(input: &[u8], mut i: usize, f: impl Fn(&u8) -> bool) -> usize {
    while i > 0 && f(&input[i - 1]) {
        i -= 1;
    }
    i
}

fn extend_right(input: &[u8], mut i: usize, f: impl Fn(&u8) -> bool) -> usize {
    while i < input.len() && f(&input[i]) {
        i += 1;
    }
    i
}

/// Whether `input[s..e]` is not glued to further letters or digits.
fn bounded(input: &[u8], s: usize, e: usize) -> bool {
    (s == 0 || !input[s - 1].is_ascii_alphanumeric())
        && input.get(e).is_none_or(|b| !b.is_ascii_alphanumeric())
}

/// Hex letters in at most one case.
fn one_case(t: &[u8]) -> bool {
    !(t.iter().any(|b| (b'a'..=b'f').contains(b)) && t.iter().any(|b| (b'A'..=b'F').contains(b)))
}

fn is_digest(t: &[u8]) -> bool {
    DIGEST_LENS.contains(&t.len())
        && t.iter().all(u8::is_ascii_hexdigit)
        && t.iter().any(u8::is_ascii_alphabetic)
        && one_case(t)
}

fn is_uuid(t: &[u8]) -> bool {
    t.len() == 36
        && t.iter().enumerate().all(|(i, b)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                *b == b'-'
            } else {
                b.is_ascii_hexdigit()
            }
        })
        && one_case(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pan_at(s: &str, pan: &str) -> Range<usize> {
        let i = s.find(pan).unwrap();
        i..i + pan.len()
    }

    #[test]
    fn digests_and_uuids_by_shape() {
        let md5 = "6f3e29a35278d71c7f65495871231324";
        assert!(in_hex_token(md5.as_bytes(), &pan_at(md5, "65495871231324")));
        let ctx = format!("etag: \"{md5}\"");
        assert!(in_hex_token(
            ctx.as_bytes(),
            &pan_at(&ctx, "65495871231324")
        ));
        // Glued to a word, one character short, mixed case: not a digest.
        for s in [
            format!("x{md5}"),
            md5[1..].to_string(),
            "6F3E29a35278d71c7f65495871231324".to_string(),
        ] {
            assert!(
                !in_hex_token(s.as_bytes(), &pan_at(&s, "65495871231324")),
                "{s}"
            );
        }
        let u = "40902303-5778-2339-6492-088307269881";
        assert!(in_hex_token(u.as_bytes(), &pan_at(u, "5778-2339-6492")));
        let u2 = format!("{{{}}}", u.to_uppercase());
        assert!(in_hex_token(u2.as_bytes(), &pan_at(&u2, "5778-2339-6492")));
        let not = "40902303-5778-2339-6492-0883072698811";
        assert!(!in_hex_token(
            not.as_bytes(),
            &pan_at(not, "5778-2339-6492")
        ));
        let spaced = "4111 1111 1111 1111";
        assert!(!in_hex_token(spaced.as_bytes(), &(0..spaced.len())));
    }

    #[test]
    fn reference_heads() {
        let s = b"RF57 5513 1471 4985";
        assert!(reference_head(s, 2, s.len()));
        let s = b"ref: DE89 3704 0044";
        assert!(reference_head(s, 7, s.len()));
        for s in [&b"XRF57 5513"[..], b"Rf57 5513", b"RF575 513", b"RF57-5513"] {
            let start = s.iter().position(u8::is_ascii_digit).unwrap();
            assert!(!reference_head(s, start, s.len()), "{s:?}");
        }
    }
}
