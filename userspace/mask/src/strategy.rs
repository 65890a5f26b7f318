//! Masking strategies and how they rewrite bytes.
//!
//! A strategy is applied to one matched span (content detectors) or one whole value (column rules).
//! Two output alphabets exist, because a masked value must still decode as its type:
//!
//! * [`Mode::Text`]: letters, digits and non-ASCII bytes become `*`; ASCII punctuation and whitespace stay
//!   (so `4111-1111-1111-1111` becomes `****-****-****-1111` under last4). Every byte of a multi-byte
//!   UTF-8 character is replaced, so valid UTF-8 stays valid UTF-8.
//! * [`Mode::Digits`]: only ASCII digits change, into digits (`0`-fill for redact), for numeric types in
//!   text format and numbers inside JSON.
//!
//! The keyed hash is HMAC-SHA-256 under the host secret (never an unkeyed hash, which would be
//! reversible by enumerating the ~10^9 PANs of an issuer). Separators are left out of the MAC input, so
//! `4111 1111 1111 1111` and `4111111111111111` get the same pseudonym.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// How a detected or rule-selected value is masked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// Same length, every significant character replaced (`*`, or `0` where the type needs digits;
    /// integers and numerics become 0).
    Redact,
    /// Keep the last four significant characters, redact the rest (PCI DSS allows showing the last 4).
    Last4,
    /// Keyed pseudonym: `hmac:` + hex of HMAC-SHA-256(host secret, value), fitted to fixed widths; digits
    /// derived from the MAC for numeric types.
    #[serde(alias = "hmac")]
    Hash,
    /// SQL NULL for PostgreSQL values; in plain text (logs, statement text) the same as `redact`.
    Null,
}

impl Strategy {
    /// Precedence when overlapping findings are merged: the stronger strategy wins.
    pub(crate) fn strength(self) -> u8 {
        match self {
            Strategy::Last4 => 0,
            Strategy::Hash => 1,
            Strategy::Redact => 2,
            Strategy::Null => 3,
        }
    }

    /// The stronger of two rules that both apply to one value (a rule on the source column and
    /// one on the output name).
    #[must_use]
    pub fn stronger(a: Option<Strategy>, b: Option<Strategy>) -> Option<Strategy> {
        match (a, b) {
            (Some(x), Some(y)) => Some(if y.strength() > x.strength() { y } else { x }),
            (x, None) => x,
            (None, y) => y,
        }
    }

    /// Whether the text form of this strategy keeps the byte length of what it masks.
    pub fn is_length_preserving(self) -> bool {
        !matches!(self, Strategy::Hash)
    }
}

/// Output alphabet of a masked span.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// `*` for significant bytes.
    Text,
    /// Digits only change into digits.
    Digits,
}

/// HMAC-SHA-256 keyed with the host secret; cloned per use from the prepared state.
#[derive(Clone)]
pub(crate) struct Keyed {
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for Keyed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keyed(<secret>)")
    }
}

impl Keyed {
    pub(crate) fn new(key: &[u8; 32]) -> Keyed {
        // HMAC accepts keys of any length; a 32-byte key cannot fail.
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        Keyed { mac }
    }

    /// MAC over the significant bytes of `src` (separators skipped).
    pub(crate) fn mac_significant(&self, src: &[u8]) -> [u8; 32] {
        let mut m = self.mac.clone();
        for chunk in src.split(|&b| !is_significant(b)) {
            m.update(chunk);
        }
        m.finalize().into_bytes().into()
    }

    /// MAC over raw bytes.
    pub(crate) fn mac(&self, src: &[u8]) -> [u8; 32] {
        let mut m = self.mac.clone();
        m.update(src);
        m.finalize().into_bytes().into()
    }
}

/// Bytes a strategy hides: everything except ASCII punctuation and whitespace.
#[inline]
pub(crate) fn is_significant(b: u8) -> bool {
    !(b.is_ascii_punctuation() || b.is_ascii_whitespace())
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Lowercase hex of the MAC, repeated if more characters are requested than it has.
fn hex_char(mac: &[u8; 32], i: usize) -> u8 {
    let byte = mac[(i / 2) % 32];
    HEX[usize::from(if i.is_multiple_of(2) {
        byte >> 4
    } else {
        byte & 15
    })]
}

/// Decimal digit number `i` derived from the MAC.
pub(crate) fn mac_digit(mac: &[u8; 32], i: usize) -> u8 {
    // Mix in the round so digits beyond 32 differ from the first 32.
    let byte = mac[i % 32].wrapping_add((i / 32) as u8 * 37);
    b'0' + byte % 10
}

/// Text pseudonym: `hmac:` + hex. `target` = fixed output length (`None` = `hmac:` + 16 hex). Targets
/// shorter than 13 bytes get hex only (a fixed-width type cannot hold the prefix).
pub(crate) fn hash_text(mac: &[u8; 32], target: Option<usize>, out: &mut Vec<u8>) {
    match target {
        None => {
            out.extend_from_slice(b"hmac:");
            out.extend((0..16).map(|i| hex_char(mac, i)));
        }
        Some(n) if n >= 13 => {
            out.extend_from_slice(b"hmac:");
            out.extend((0..n - 5).map(|i| hex_char(mac, i)));
        }
        Some(n) => out.extend((0..n).map(|i| hex_char(mac, i))),
    }
}

/// Start index of the part `last4` keeps: the last four significant characters (a multi-byte UTF-8
/// character counts once and is kept whole).
fn last4_start(src: &[u8], mode: Mode) -> usize {
    let mut kept = 0;
    let mut i = src.len();
    while i > 0 && kept < 4 {
        i -= 1;
        let b = src[i];
        let counts = match mode {
            Mode::Digits => b.is_ascii_digit(),
            // Continuation bytes are counted at their lead byte.
            Mode::Text => is_significant(b) && (b & 0xC0) != 0x80,
        };
        if counts {
            kept += 1;
        }
    }
    i
}

/// Replace the significant bytes of `buf` (text: `*`; digits mode: digits become `0`).
#[inline]
fn hide(buf: &mut [u8], mode: Mode) {
    match mode {
        Mode::Text => {
            for b in buf {
                if is_significant(*b) {
                    *b = b'*';
                }
            }
        }
        Mode::Digits => {
            for b in buf {
                if b.is_ascii_digit() {
                    *b = b'0';
                }
            }
        }
    }
}

/// Append the masked form of `src` to `out`.
///
/// `hash_target`: output length of a text hash (see [`hash_text`]); ignored for other strategies.
pub(crate) fn apply(
    strategy: Strategy,
    mode: Mode,
    src: &[u8],
    key: &Keyed,
    hash_target: Option<usize>,
    out: &mut Vec<u8>,
) {
    match (strategy, mode) {
        // Copy, then mask in place: no per-byte capacity checks.
        (Strategy::Redact | Strategy::Null, _) => {
            let at = out.len();
            out.extend_from_slice(src);
            hide(&mut out[at..], mode);
        }
        (Strategy::Last4, _) => {
            let keep = last4_start(src, mode);
            let at = out.len();
            out.extend_from_slice(src);
            hide(&mut out[at..at + keep], mode);
        }
        (Strategy::Hash, Mode::Text) => {
            let mac = key.mac_significant(src);
            hash_text(&mac, hash_target, out);
        }
        (Strategy::Hash, Mode::Digits) => {
            let mac = key.mac_significant(src);
            let mut k = 0;
            for &b in src {
                if b.is_ascii_digit() {
                    out.push(mac_digit(&mac, k));
                    k += 1;
                } else {
                    out.push(b);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(s: Strategy, m: Mode, src: &str, t: Option<usize>) -> String {
        let mut out = Vec::new();
        apply(s, m, src.as_bytes(), &Keyed::new(&[7; 32]), t, &mut out);
        String::from_utf8(out).expect("utf8")
    }

    /// The former per-byte formulation of redact / last4, as an oracle for the in-place one.
    fn mask_naive(s: Strategy, mode: Mode, src: &[u8]) -> Vec<u8> {
        let keep = match s {
            Strategy::Last4 => last4_start(src, mode),
            _ => src.len(),
        };
        src.iter()
            .enumerate()
            .map(|(i, &b)| match mode {
                Mode::Text if i < keep && is_significant(b) => b'*',
                Mode::Digits if i < keep && b.is_ascii_digit() => b'0',
                _ => b,
            })
            .collect()
    }

    proptest::proptest! {
        #[test]
        fn in_place_masking_matches_naive(
            src in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40),
            prefix in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..5),
        ) {
            for s in [Strategy::Redact, Strategy::Null, Strategy::Last4] {
                for mode in [Mode::Text, Mode::Digits] {
                    let mut out = prefix.clone();
                    apply(s, mode, &src, &Keyed::new(&[7; 32]), None, &mut out);
                    let mut expect = prefix.clone();
                    expect.extend(mask_naive(s, mode, &src));
                    proptest::prop_assert_eq!(out, expect);
                }
            }
        }
    }

    #[test]
    fn redact_and_last4_text() {
        assert_eq!(
            run(Strategy::Redact, Mode::Text, "4111-1111-1111-1111", None),
            "****-****-****-****"
        );
        assert_eq!(
            run(Strategy::Last4, Mode::Text, "4111 1111 1111 1234", None),
            "**** **** **** 1234"
        );
        assert_eq!(run(Strategy::Last4, Mode::Text, "ab", None), "ab");
        assert_eq!(run(Strategy::Last4, Mode::Text, "zäöüßx", None), "***öüßx");
        assert_eq!(run(Strategy::Redact, Mode::Text, "ä", None), "**");
    }

    #[test]
    fn digits_mode() {
        assert_eq!(
            run(Strategy::Redact, Mode::Digits, "-4111111111111111.50", None),
            "-0000000000000000.00"
        );
        assert_eq!(
            run(Strategy::Last4, Mode::Digits, "4111111111111234", None),
            "0000000000001234"
        );
        let h = run(Strategy::Hash, Mode::Digits, "4111111111111111", None);
        assert_eq!(h.len(), 16);
        assert!(h.bytes().all(|b| b.is_ascii_digit()));
        assert_ne!(h, "4111111111111111");
    }

    #[test]
    fn hash_is_keyed_and_normalised() {
        let a = run(Strategy::Hash, Mode::Text, "4111 1111 1111 1111", Some(19));
        let b = run(Strategy::Hash, Mode::Text, "4111111111111111", Some(19));
        assert_eq!(a, b);
        assert_eq!(a.len(), 19);
        assert!(a.starts_with("hmac:"));
        let mut other = Vec::new();
        apply(
            Strategy::Hash,
            Mode::Text,
            b"4111111111111111",
            &Keyed::new(&[8; 32]),
            Some(19),
            &mut other,
        );
        assert_ne!(a.as_bytes(), other.as_slice());
        assert_eq!(run(Strategy::Hash, Mode::Text, "x", None).len(), 21);
        assert_eq!(run(Strategy::Hash, Mode::Text, "x", Some(4)).len(), 4);
    }
}
