//! Small helpers: strict lowercase hex, SHA-256, terminal-safe text.

use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::fmt::Write as _;

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Lowercase hex encoding.
pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(char::from(HEX_DIGITS[usize::from(b >> 4)]));
        s.push(char::from(HEX_DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

/// Lowercase hex encoding of `bytes` into `out` (no allocation). `out` must
/// hold at least `2 * bytes.len()` bytes; only that prefix is written.
pub fn hex_into(out: &mut [u8], bytes: &[u8]) {
    for (pair, &b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = HEX_DIGITS[usize::from(b >> 4)];
        pair[1] = HEX_DIGITS[usize::from(b & 0x0f)];
    }
}

/// Strict hex decoding into a fixed array: exactly `2*N` lowercase hex digits.
///
/// Uppercase is rejected on purpose: a one-bit flip turns `a` into `A`, and
/// the verifier must never accept two spellings of the same value.
pub fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let b = s.as_bytes();
    if b.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = (nibble(b[2 * i])? << 4) | nibble(b[2 * i + 1])?;
    }
    Some(out)
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// SHA-256 over the concatenation of `parts`.
pub fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// Makes hostile text safe for a terminal: control characters (ESC, CR, BEL,
/// ...) and Unicode bidi overrides are shown as escapes. `keep_newlines`
/// keeps `\n` and `\t` (multi-line SQL).
pub fn sanitize(s: &str, keep_newlines: bool) -> Cow<'_, str> {
    let bad = |c: char| {
        (c.is_control() && !(keep_newlines && (c == '\n' || c == '\t')))
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !s.chars().any(bad) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if bad(c) {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_strictness() {
        let v = [0u8, 1, 0xab, 0xff];
        assert_eq!(hex(&v), "0001abff");
        assert_eq!(unhex::<4>("0001abff"), Some(v));
        assert_eq!(unhex::<4>("0001ABFF"), None);
        assert_eq!(unhex::<4>("0001abf"), None);
        assert_eq!(unhex::<4>("0001abfg"), None);
        let mut buf = [b'x'; 9];
        hex_into(&mut buf, &v);
        assert_eq!(&buf, b"0001abffx");
    }

    #[test]
    fn sanitize_escapes_terminal_controls() {
        assert_eq!(sanitize("a\x1b[2Jb", false), "a\\u{1b}[2Jb");
        assert_eq!(sanitize("a\nb", true), "a\nb");
        assert_eq!(sanitize("a\nb", false), "a\\u{a}b");
        assert_eq!(sanitize("x\u{202e}y", true), "x\\u{202e}y");
    }
}
