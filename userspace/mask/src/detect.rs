//! Validators for the built-in content detectors.
//!
//! The SIMD scanner ([`crate::scan`]) only nominates candidates: exact digit *stretches* (digit groups
//! joined by single space/dash separators), positions of `[A-Z]{2}[0-9]{2}` (IBAN starts) and `@`
//! bytes. This module decides which candidates are real:
//!
//! * **PAN** — a span of whole digit groups of one stretch, all joined by the *same* separator (or by
//!   none), holding 13–19 digits, with a known IIN prefix and a valid Luhn check digit. Because a span
//!   must start and end at group boundaries, a PAN embedded in a longer unseparated digit run (say 25
//!   digits) is not a PAN, while letters or punctuation next to it (`pan=4111111111111111;`) are fine.
//!   Groups may have any size: obfuscations like `4 1 1 1 ...` are caught at the price of rare false
//!   positives on lists of small numbers (a false positive only masks a harmless number).
//! * **SSN** — exactly `ddd-dd-dddd` as three whole groups of a stretch joined by dashes, not continued by
//!   a further dash group, with area not 000/666/900–999, group not 00 and serial not 0000. Bare 9-digit
//!   runs are *not* SSNs: order ids, phone numbers and amounts would match far too often.
//! * **IBAN** — a known country code, two check digits and the country's exact length, compact or
//!   printed in groups of four separated by single spaces, passing ISO 7064 mod-97. Uppercase only.
//! * **Email** — `local@domain.tld` with a conservative ASCII character set.

use std::ops::Range;

/// Smallest number of digits a PAN can have.
pub(crate) const PAN_MIN: usize = 13;
/// Largest number of digits a PAN can have.
pub(crate) const PAN_MAX: usize = 19;
/// Byte length of a dashed SSN (`123-45-6789`), the shortest stretch worth validating.
pub(crate) const SSN_LEN: usize = 11;

/// Luhn value of a doubled digit: `2d` with its digits summed.
const LUHN_DOUBLE: [u32; 10] = [0, 2, 4, 6, 8, 1, 3, 5, 7, 9];

/// Luhn (mod 10) check over ASCII digits.
pub(crate) fn luhn_ok(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    let mut rev = digits.iter().rev();
    while let Some(&d) = rev.next() {
        sum += u32::from(d - b'0');
        if let Some(&d) = rev.next() {
            sum += LUHN_DOUBLE[usize::from(d - b'0') % 10];
        }
    }
    sum.is_multiple_of(10)
}

/// Numeric value of the first `n` digits (n ≤ 6).
fn prefix(digits: &[u8], n: usize) -> u32 {
    digits[..n]
        .iter()
        .fold(0u32, |acc, &d| acc * 10 + u32::from(d - b'0'))
}

/// Whether `digits` (13–19 ASCII digits) start with a known issuer identification number prefix and
/// have a length that issuer uses.
pub(crate) fn iin_ok(digits: &[u8]) -> bool {
    let len = digits.len();
    (PAN_MIN..=PAN_MAX).contains(&len) && iin_prefix_ok(prefix(digits, 4), len)
}

/// [`iin_ok`] from the value of the first four digits `p4` and the digit count `len` (13–19).
#[inline]
fn iin_prefix_ok(p4: u32, len: usize) -> bool {
    let (p1, p2, p3) = (p4 / 1000, p4 / 100, p4 / 10);
    match p1 {
        // UATP (airline cards): always 15 digits.
        1 => len == 15,
        // Mir 2200–2204; Mastercard 2-series 2221–2720 (16 digits).
        2 => (2200..=2204).contains(&p4) || ((2221..=2720).contains(&p4) && len == 16),
        3 => {
            // Amex 34/37 (15 digits); Diners 300–305, 3095, 36, 38–39; JCB 3528–3589; RuPay 353/356.
            if p2 == 34 || p2 == 37 {
                len == 15
            } else {
                (300..=305).contains(&p3)
                    || p4 == 3095
                    || p2 == 36
                    || p2 == 38
                    || p2 == 39
                    || (3528..=3589).contains(&p4)
                    || p3 == 353
                    || p3 == 356
            }
        }
        // Visa.
        4 => true,
        // Mastercard 51–55 (16 digits); Maestro / Verve 50, 56–59.
        5 => match p2 {
            51..=55 => len == 16,
            50 | 56..=59 => true,
            _ => false,
        },
        // Discover 6011/644–649/65, UnionPay 62, RuPay 60, Maestro 56–69: the whole 6 range is issued.
        6 => true,
        // RuPay 81/82.
        8 => p2 == 81 || p2 == 82,
        // Troy.
        9 => p4 == 9792,
        _ => false,
    }
}

/// Whether `digits` form a plausible PAN (length, IIN, Luhn).
pub(crate) fn pan_ok(digits: &[u8]) -> bool {
    iin_ok(digits) && luhn_ok(digits)
}

/// SSN area/group/serial rules over the 9 digits `ddddddddd`.
pub(crate) fn ssn_ok(d: &[u8]) -> bool {
    let area = prefix(d, 3);
    let group = prefix(&d[3..], 2);
    let serial = prefix(&d[5..], 4);
    area != 0 && area != 666 && area < 900 && group != 0 && serial != 0
}

/// One digit group of a stretch.
#[derive(Clone, Copy, Debug)]
struct Group {
    start: usize,
    end: usize,
}

/// Kind of a detector hit produced by [`check_stretch`].
#[cfg(test)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StretchHit {
    Pan,
    Ssn,
}

/// Reference validator: one exact stretch `input[start..end]` (starts and ends with a digit; digit
/// groups joined by single separators), PAN and SSN hits. The scanner-driven path
/// ([`check_pan`] on stretch events, [`check_ssn_at`] on SSN shape events) must find exactly the same.
#[cfg(test)]
pub(crate) fn check_stretch(
    input: &[u8],
    start: usize,
    end: usize,
    pan: bool,
    ssn: bool,
    out: &mut Vec<(Range<usize>, StretchHit)>,
) {
    let stretch = &input[start..end];
    if pan && stretch.iter().filter(|b| b.is_ascii_digit()).count() >= PAN_MIN {
        check_pan(input, start, end, &mut |r| out.push((r, StretchHit::Pan)));
    }
    if ssn {
        check_ssn(input, start, end, out);
    }
}

/// Iterate the digit groups of a stretch.
fn groups(input: &[u8], start: usize, end: usize) -> impl Iterator<Item = Group> + '_ {
    let mut i = start;
    std::iter::from_fn(move || {
        if i >= end {
            return None;
        }
        let g0 = i;
        while i < end && input[i].is_ascii_digit() {
            i += 1;
        }
        let g = Group { start: g0, end: i };
        // Skip the single separator (the stretch guarantees a digit follows it).
        i += 1;
        Some(g)
    })
}

/// Fast path of [`check_pan`], exact for the common case: a stretch of 13–19 digits whose groups are
/// all joined by the same separator (or none) and that is a valid PAN as a whole. The general search
/// would then pick the whole stretch too (the longest valid span from the first group, after which no
/// group is left).
///
/// Branch-free over the bytes: digit values are compacted into a zeroed window as they come (a
/// non-digit is written too but not counted, so the next digit overwrites it; a stretch ends with a
/// digit), and the separators seen are collected as bits `b & 31` (space 0, `-` 13, digits 16–25).
/// Luhn then runs over a fixed 19 positions counted from the last digit (zeros before the first one
/// add nothing), so the doubling parity is a constant per unrolled step.
#[inline]
fn whole_stretch_is_pan(stretch: &[u8]) -> bool {
    /// Where the first digit is stored: leaves `PAN_MAX` zeros before it.
    const AT: usize = 32;
    // A 19-digit PAN with 18 single separators is at most 37 bytes long.
    if stretch.len() > 2 * PAN_MAX - 1 {
        return false;
    }
    let mut win = [0u8; 128];
    let mut n = 0usize;
    let mut kinds = 0u32;
    for &b in stretch {
        let v = b.wrapping_sub(b'0');
        win[(AT + n) & 127] = v;
        n += usize::from(v < 10);
        kinds |= 1 << (b & 31);
    }
    const MIXED: u32 = 1 << (b' ' & 31) | 1 << (b'-' & 31);
    if kinds & MIXED == MIXED || !(PAN_MIN..=PAN_MAX).contains(&n) {
        return false;
    }
    let p4 = u32::from(win[AT]) * 1000
        + u32::from(win[AT + 1]) * 100
        + u32::from(win[AT + 2]) * 10
        + u32::from(win[AT + 3]);
    if !iin_prefix_ok(p4, n) {
        return false;
    }
    // `last[j]` = the digit `j` places before the check digit (0 past the first digit).
    let last: &[u8; PAN_MAX] = win[AT + n - PAN_MAX..AT + n]
        .try_into()
        .unwrap_or_else(|_| unreachable!("PAN_MAX bytes"));
    // LUHN_DOUBLE padded to 16 entries so `& 15` replaces the bounds check (values are 0–9).
    const DOUBLE: [u8; 16] = [0, 2, 4, 6, 8, 1, 3, 5, 7, 9, 0, 0, 0, 0, 0, 0];
    let mut sum = 0u32;
    for j in 0..PAN_MAX {
        let v = last[PAN_MAX - 1 - j];
        sum += u32::from(if j % 2 == 1 {
            DOUBLE[usize::from(v & 15)]
        } else {
            v
        });
    }
    sum.is_multiple_of(10)
}

/// PANs inside one exact stretch `input[start..end]` (see [`check_stretch`]); `emit` gets each PAN's
/// byte range, in increasing order.
pub(crate) fn check_pan(
    input: &[u8],
    start: usize,
    end: usize,
    emit: &mut impl FnMut(Range<usize>),
) {
    // Exemptions of whole tokens that are not card data (see `crate::exempt`); checked only
    // for hits, which are rare, and for the stretch's first group.
    let mut emit = |r: Range<usize>| {
        if !crate::exempt::in_hex_token(input, &r) {
            emit(r);
        }
    };
    let skip_head = crate::exempt::reference_head(input, start, end);
    if !skip_head && whole_stretch_is_pan(&input[start..end]) {
        emit(start..end);
    } else {
        check_pan_groups(input, start, end, usize::from(skip_head), &mut emit);
    }
}

/// The general PAN search of [`check_pan`]: from each digit group, the longest span of whole groups
/// joined by one separator that is a valid PAN. Spans start at group `first` or later.
fn check_pan_groups(
    input: &[u8],
    start: usize,
    end: usize,
    first: usize,
    emit: &mut impl FnMut(Range<usize>),
) {
    // Typical stretches have a handful of groups: keep them on the stack.
    let mut stack = [Group { start: 0, end: 0 }; 20];
    let mut heap: Vec<Group> = Vec::new();
    let mut n = 0;
    for g in groups(input, start, end) {
        if n < stack.len() {
            stack[n] = g;
        } else {
            if heap.is_empty() {
                heap.extend_from_slice(&stack);
            }
            heap.push(g);
        }
        n += 1;
    }
    let groups: &[Group] = if heap.is_empty() { &stack[..n] } else { &heap };
    let sep_after = |k: usize| input[groups[k].end];
    let mut digits = [0u8; PAN_MAX];
    let mut a = first;
    while a < n {
        let mut best: Option<usize> = None;
        let mut total = 0;
        for (b, &g) in groups.iter().enumerate().skip(a) {
            if b > a && sep_after(b - 1) != sep_after(a) {
                break;
            }
            let before = total;
            total += g.end - g.start;
            if total > PAN_MAX {
                break;
            }
            digits[before..total].copy_from_slice(&input[g.start..g.end]);
            if total >= PAN_MIN && pan_ok(&digits[..total]) {
                best = Some(b);
            }
        }
        if let Some(b) = best {
            emit(groups[a].start..groups[b].end);
            a = b + 1;
        } else {
            a += 1;
        }
    }
}

/// Validate the SSN whose `ddd-dd-dddd` shape (as whole digit groups, see [`crate::scan::Event::Ssn`])
/// the scanner found at `pos`: area, group and serial rules. Returns its byte range.
pub(crate) fn check_ssn_at(input: &[u8], pos: usize) -> Option<Range<usize>> {
    let s: &[u8; 11] = input.get(pos..pos + SSN_LEN)?.try_into().ok()?;
    debug_assert!(s[3] == b'-' && s[6] == b'-');
    let d = [s[0], s[1], s[2], s[4], s[5], s[7], s[8], s[9], s[10]];
    (d.iter().all(u8::is_ascii_digit) && ssn_ok(&d)).then_some(pos..pos + SSN_LEN)
}

/// Reference SSN finder over a stretch: three consecutive groups of 3, 2 and 4 digits joined by
/// dashes, not continued by dashes.
#[cfg(test)]
fn check_ssn(input: &[u8], start: usize, end: usize, out: &mut Vec<(Range<usize>, StretchHit)>) {
    // Sliding window of the last three groups; `before` = separator preceding the window.
    let mut win: [Option<Group>; 3] = [None; 3];
    let mut before: Option<u8> = None;
    let sep_of = |g: Group| (g.end < end).then(|| input[g.end]);
    let mut emit = |w: &[Option<Group>; 3], before: Option<u8>| {
        let [Some(a), Some(b), Some(c)] = *w else {
            return;
        };
        let lens = [a.end - a.start, b.end - b.start, c.end - c.start];
        if lens != [3, 2, 4]
            || input[a.end] != b'-'
            || input[b.end] != b'-'
            || before == Some(b'-')
            || sep_of(c) == Some(b'-')
        {
            return;
        }
        let mut d = [0u8; 9];
        d[..3].copy_from_slice(&input[a.start..a.end]);
        d[3..5].copy_from_slice(&input[b.start..b.end]);
        d[5..].copy_from_slice(&input[c.start..c.end]);
        if ssn_ok(&d) {
            out.push((a.start..c.end, StretchHit::Ssn));
        }
    };
    for g in groups(input, start, end) {
        if let Some(first) = win[0] {
            before = sep_of(first);
        }
        win = [win[1], win[2], Some(g)];
        emit(&win, before);
    }
}

/// IBAN lengths by country code (SWIFT IBAN registry).
const IBAN_LENGTHS: &[(&[u8; 2], usize)] = &[
    (b"AD", 24),
    (b"AE", 23),
    (b"AL", 28),
    (b"AT", 20),
    (b"AZ", 28),
    (b"BA", 20),
    (b"BE", 16),
    (b"BG", 22),
    (b"BH", 22),
    (b"BI", 27),
    (b"BR", 29),
    (b"BY", 28),
    (b"CH", 21),
    (b"CR", 22),
    (b"CY", 28),
    (b"CZ", 24),
    (b"DE", 22),
    (b"DJ", 27),
    (b"DK", 18),
    (b"DO", 28),
    (b"EE", 20),
    (b"EG", 29),
    (b"ES", 24),
    (b"FI", 18),
    (b"FK", 18),
    (b"FO", 18),
    (b"FR", 27),
    (b"GB", 22),
    (b"GE", 22),
    (b"GI", 23),
    (b"GL", 18),
    (b"GR", 27),
    (b"GT", 28),
    (b"HN", 28),
    (b"HR", 21),
    (b"HU", 28),
    (b"IE", 22),
    (b"IL", 23),
    (b"IQ", 23),
    (b"IS", 26),
    (b"IT", 27),
    (b"JO", 30),
    (b"KW", 30),
    (b"KZ", 20),
    (b"LB", 28),
    (b"LC", 32),
    (b"LI", 21),
    (b"LT", 20),
    (b"LU", 20),
    (b"LV", 21),
    (b"LY", 25),
    (b"MC", 27),
    (b"MD", 24),
    (b"ME", 22),
    (b"MK", 19),
    (b"MN", 20),
    (b"MR", 27),
    (b"MT", 31),
    (b"MU", 30),
    (b"NI", 28),
    (b"NL", 18),
    (b"NO", 15),
    (b"OM", 23),
    (b"PK", 24),
    (b"PL", 28),
    (b"PS", 29),
    (b"PT", 25),
    (b"QA", 29),
    (b"RO", 24),
    (b"RS", 22),
    (b"RU", 33),
    (b"SA", 24),
    (b"SC", 31),
    (b"SD", 18),
    (b"SE", 24),
    (b"SI", 19),
    (b"SK", 24),
    (b"SM", 27),
    (b"SO", 23),
    (b"ST", 25),
    (b"SV", 28),
    (b"TL", 23),
    (b"TN", 24),
    (b"TR", 26),
    (b"UA", 29),
    (b"VA", 22),
    (b"VG", 24),
    (b"XK", 20),
    (b"YE", 30),
];

fn iban_len(cc: &[u8]) -> Option<usize> {
    IBAN_LENGTHS
        .iter()
        .find(|(c, _)| c.as_slice() == cc)
        .map(|&(_, l)| l)
}

#[inline]
fn is_iban_char(b: u8) -> bool {
    b.is_ascii_digit() || b.is_ascii_uppercase()
}

/// ISO 7064 mod-97 over an IBAN's characters (country code first, as written).
fn iban_mod97_ok(chars: &[u8]) -> bool {
    let mut rem = 0u32;
    let rotated = chars[4..].iter().chain(chars[..4].iter());
    for &c in rotated {
        if c.is_ascii_digit() {
            rem = (rem * 10 + u32::from(c - b'0')) % 97;
        } else {
            let v = u32::from(c - b'A') + 10;
            rem = (rem * 100 + v) % 97;
        }
    }
    rem == 1
}

/// Validate an IBAN starting at `pos` (where `[A-Z]{2}[0-9]{2}` was seen); returns its byte range.
pub(crate) fn check_iban(input: &[u8], pos: usize) -> Option<Range<usize>> {
    let len = iban_len(input.get(pos..pos + 2)?)?;
    let mut chars = Vec::with_capacity(len);
    let mut i = pos;
    let mut spaced = false;
    while chars.len() < len {
        let b = *input.get(i)?;
        if is_iban_char(b) {
            chars.push(b);
            i += 1;
        } else if b == b' '
            && chars.len() % 4 == 0
            && (chars.len() == 4 || spaced)
            && input.get(i + 1).is_some_and(|&c| is_iban_char(c))
        {
            spaced = true;
            i += 1;
        } else {
            return None;
        }
    }
    // An IBAN glued to more IBAN characters is part of something longer.
    if input.get(i).is_some_and(|&c| is_iban_char(c)) {
        return None;
    }
    // An uppercase hex digest can hold an IBAN-shaped run that passes mod-97 by chance.
    (iban_mod97_ok(&chars) && !crate::exempt::in_hex_token(input, &(pos..i))).then_some(pos..i)
}

#[inline]
fn is_local_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-')
}

#[inline]
fn is_domain_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'.' || b == b'-'
}

/// Longest local part [`check_email`] looks at: a found address starts at most this many bytes
/// before its `@`.
pub(crate) const EMAIL_LOCAL_MAX: usize = 64;

/// Validate an email address around the `@` at `at`; returns its byte range.
pub(crate) fn check_email(input: &[u8], at: usize) -> Option<Range<usize>> {
    let mut s = at;
    while s > 0 && at - s < EMAIL_LOCAL_MAX && is_local_char(input[s - 1]) {
        s -= 1;
    }
    while s < at && input[s] == b'.' {
        s += 1;
    }
    if s == at {
        return None;
    }
    let mut e = at + 1;
    while e < input.len() && e - at <= 255 && is_domain_char(input[e]) {
        e += 1;
    }
    while e > at + 1 && matches!(input[e - 1], b'.' | b'-') {
        e -= 1;
    }
    let domain = &input[at + 1..e];
    let dot = domain.iter().rposition(|&b| b == b'.')?;
    let tld = &domain[dot + 1..];
    if dot == 0 || tld.len() < 2 || !tld.iter().all(u8::is_ascii_alphabetic) {
        return None;
    }
    Some(s..e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stretch(s: &str) -> Vec<(Range<usize>, StretchHit)> {
        let b = s.as_bytes();
        let mut out = Vec::new();
        check_stretch(b, 0, b.len(), true, true, &mut out);
        out
    }

    /// The textbook Luhn check, as an oracle for the table-driven one.
    fn luhn_naive(digits: &[u8]) -> bool {
        let mut sum = 0u32;
        for (i, &d) in digits.iter().rev().enumerate() {
            let mut v = u32::from(d - b'0');
            if i % 2 == 1 {
                v *= 2;
                if v > 9 {
                    v -= 9;
                }
            }
            sum += v;
        }
        sum.is_multiple_of(10)
    }

    proptest::proptest! {
        #[test]
        fn luhn_matches_naive(d in proptest::collection::vec(b'0'..=b'9', 0..25)) {
            proptest::prop_assert_eq!(luhn_ok(&d), luhn_naive(&d));
        }

        /// The whole-stretch fast path never changes what the general group search finds.
        #[test]
        fn pan_fast_path_matches_general(
            groups in proptest::collection::vec(
                (proptest::collection::vec(b'0'..=b'9', 1..8), proptest::prop_oneof![
                    proptest::prelude::Just(b' '),
                    proptest::prelude::Just(b'-'),
                ]),
                1..8,
            ),
            pan in proptest::prelude::any::<bool>(),
        ) {
            let mut s = Vec::new();
            for (k, (g, sep)) in groups.iter().enumerate() {
                if k > 0 {
                    s.push(*sep);
                }
                s.extend_from_slice(g);
            }
            if pan {
                // Make the digits a valid Visa number when their count allows it.
                let n = s.iter().filter(|b| b.is_ascii_digit()).count();
                if (PAN_MIN..=PAN_MAX).contains(&n) {
                    let pos: Vec<usize> = (0..s.len()).filter(|&i| s[i].is_ascii_digit()).collect();
                    s[pos[0]] = b'4';
                    for c in b'0'..=b'9' {
                        s[pos[n - 1]] = c;
                        let d: Vec<u8> = s.iter().copied().filter(u8::is_ascii_digit).collect();
                        if luhn_ok(&d) {
                            break;
                        }
                    }
                }
            }
            let (mut fast, mut general) = (Vec::new(), Vec::new());
            check_pan(&s, 0, s.len(), &mut |r| fast.push(r));
            check_pan_groups(&s, 0, s.len(), 0, &mut |r| general.push(r));
            proptest::prop_assert_eq!(fast, general);
        }
    }

    proptest::proptest! {
        /// The branch-free whole-stretch check equals digit extraction + `pan_ok`.
        #[test]
        fn whole_stretch_matches_pan_ok(s in proptest::collection::vec(
            proptest::prop_oneof![
                8 => b'0'..=b'9',
                1 => proptest::prelude::Just(b' '),
                1 => proptest::prelude::Just(b'-'),
            ],
            0..45,
        ), visa in proptest::prelude::any::<bool>()) {
            let mut s = s;
            if visa && !s.is_empty() {
                s[0] = b'4';
            }
            let digits: Vec<u8> = s.iter().copied().filter(u8::is_ascii_digit).collect();
            let mixed = s.contains(&b' ') && s.contains(&b'-');
            let expect = s.len() <= 37 && !mixed && pan_ok(&digits);
            proptest::prop_assert_eq!(whole_stretch_is_pan(&s), expect);
        }
    }

    #[test]
    fn luhn_known_values() {
        assert!(luhn_ok(b"4111111111111111"));
        assert!(luhn_ok(b"378282246310005"));
        assert!(!luhn_ok(b"4111111111111112"));
    }

    #[test]
    fn iin_table() {
        assert!(iin_ok(b"4111111111111111"));
        assert!(iin_ok(b"5555555555554444"));
        assert!(iin_ok(b"2223003122003222"));
        assert!(!iin_ok(b"555555555555444")); // Mastercard must be 16
        assert!(iin_ok(b"378282246310005"));
        assert!(!iin_ok(b"3782822463100050")); // Amex must be 15
        assert!(iin_ok(b"6011111111111117"));
        assert!(iin_ok(b"3530111333300000"));
        assert!(iin_ok(b"30569309025904"));
        assert!(!iin_ok(b"7111111111111111"));
        assert!(!iin_ok(b"0111111111111111"));
    }

    #[test]
    fn stretch_plain_spaced_dashed() {
        assert_eq!(stretch("4111111111111111"), vec![(0..16, StretchHit::Pan)]);
        assert_eq!(
            stretch("4111 1111 1111 1111"),
            vec![(0..19, StretchHit::Pan)]
        );
        assert_eq!(stretch("3782-822463-10005"), vec![(0..17, StretchHit::Pan)]);
        // Inconsistent separators inside the PAN.
        assert!(stretch("4111-1111 1111-1111").is_empty());
        // Embedded in a longer run.
        assert!(stretch("4111111111111111123456789").is_empty());
        // Trailing group after a separator does not hide the PAN.
        assert_eq!(
            stretch("4111111111111111 10"),
            vec![(0..16, StretchHit::Pan)]
        );
        assert_eq!(
            stretch("12 4111111111111111"),
            vec![(3..19, StretchHit::Pan)]
        );
    }

    #[test]
    fn ssn_rules() {
        assert_eq!(stretch("123-45-6789"), vec![(0..11, StretchHit::Ssn)]);
        assert!(stretch("000-45-6789").is_empty());
        assert!(stretch("666-45-6789").is_empty());
        assert!(stretch("912-45-6789").is_empty());
        assert!(stretch("123-00-6789").is_empty());
        assert!(stretch("123-45-0000").is_empty());
        assert!(stretch("123 45 6789").is_empty());
        assert!(stretch("123-45-6789-1234").is_empty());
        assert_eq!(stretch("123-45-6789 77"), vec![(0..11, StretchHit::Ssn)]);
    }

    #[test]
    fn iban_compact_and_spaced() {
        let s = b"x DE89370400440532013000 y";
        assert_eq!(check_iban(s, 2), Some(2..24));
        let s = b"GB29 NWBK 6016 1331 9268 19";
        assert_eq!(check_iban(s, 0), Some(0..s.len()));
        assert_eq!(check_iban(b"DE89370400440532013001", 0), None);
        assert_eq!(check_iban(b"DE893704004405320130001", 0), None);
        assert_eq!(check_iban(b"ZZ89370400440532013000", 0), None);
    }

    #[test]
    fn email_bounds() {
        let s = b"mail: john.doe+x@mail.example.com, next";
        assert_eq!(check_email(s, 16), Some(6..33));
        assert_eq!(check_email(b"a@b", 1), None);
        assert_eq!(check_email(b"@example.com", 0), None);
        assert_eq!(check_email(b"x@example.c0m", 1), None);
    }
}
