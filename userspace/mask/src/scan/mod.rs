//! Block-wise candidate scanner: the hot path.
//!
//! Input is processed in 64-byte chunks. An ISA-specific *classifier* ([`x86`] for SSE2/AVX2, or the
//! portable table-driven [`classify_scalar`]) turns a chunk into four 64-bit masks (digits, separators,
//! uppercase letters, `@`). Everything after that is portable integer code on those masks:
//!
//! * a separator counts only when sandwiched between two digits, so `digits | sandwiched separators`
//!   marks exactly the *stretches* (digit groups joined by single separators) the PAN/SSN validators
//!   want; runs shorter than the minimum (13 bytes, or 11 with the SSN detector) are rejected with a few
//!   shift-and operations, so a chunk without a long run costs no branch per byte;
//! * IBAN starts are `upper & upper>>1 & digit>>2 & digit>>3`;
//! * `@` bits nominate email candidates.
//!
//! Only then do the scalar validators in [`crate::detect`] run. The ISA is chosen once at runtime
//! ([`Isa::detect`]); every ISA produces exactly the same events, which the tests check against a naive
//! byte-at-a-time oracle.

#[cfg(target_arch = "x86_64")]
mod x86;

#[cfg(test)]
mod tests;

/// Per-chunk classification: bit `i` describes byte `i` of the chunk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Masks {
    /// ASCII `0`–`9`.
    pub digit: u64,
    /// Space or `-`.
    pub sep: u64,
    /// ASCII `A`–`Z`.
    pub upper: u64,
    /// `@`.
    pub at: u64,
}

/// Which candidate kinds a scan must report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Want {
    /// Minimum stretch length in bytes to report (0 = no stretch events).
    pub min_stretch: usize,
    /// Minimum number of digits in a reported stretch.
    pub min_digits: u32,
    /// Report IBAN start candidates.
    pub iban: bool,
    /// Report `@` positions.
    pub at: bool,
}

/// A candidate found by the scanner.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Event {
    /// An exact stretch `start..end` at least `min_stretch` bytes long.
    Stretch(usize, usize),
    /// `[A-Z]{2}[0-9]{2}` starts here.
    Iban(usize),
    /// An `@` byte.
    At(usize),
}

const F_DIGIT: u8 = 1;
const F_SEP: u8 = 2;
const F_UPPER: u8 = 4;
const F_AT: u8 = 8;

static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = if b.is_ascii_digit() {
            F_DIGIT
        } else if b == b' ' || b == b'-' {
            F_SEP
        } else if b.is_ascii_uppercase() {
            F_UPPER
        } else if b == b'@' {
            F_AT
        } else {
            0
        };
        i += 1;
    }
    t
};

/// Portable classifier.
#[inline(always)]
pub(crate) fn classify_scalar(chunk: &[u8; 64]) -> Masks {
    let mut m = Masks::default();
    for (i, &b) in chunk.iter().enumerate() {
        let c = CLASS[usize::from(b)];
        m.digit |= u64::from(c & F_DIGIT) << i;
        m.sep |= u64::from((c & F_SEP) >> 1) << i;
        m.upper |= u64::from((c & F_UPPER) >> 2) << i;
        m.at |= u64::from((c & F_AT) >> 3) << i;
    }
    m
}

/// Instruction set used for classification, chosen at runtime.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Isa {
    /// Table-driven, any architecture.
    Scalar,
    /// x86-64 baseline (always present on x86-64).
    #[cfg(target_arch = "x86_64")]
    Sse2,
    /// x86-64 with AVX2 (verified with `is_x86_feature_detected!` when constructed).
    #[cfg(target_arch = "x86_64")]
    Avx2,
}

impl Isa {
    /// The best ISA this CPU supports.
    pub(crate) fn detect() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx2") {
                return Isa::Avx2;
            }
            Isa::Sse2
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            Isa::Scalar
        }
    }

    /// Every ISA usable on this CPU (for tests and benchmarks).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn available() -> Vec<Isa> {
        let mut v = vec![Isa::Scalar];
        #[cfg(target_arch = "x86_64")]
        {
            v.push(Isa::Sse2);
            if std::is_x86_feature_detected!("avx2") {
                v.push(Isa::Avx2);
            }
        }
        v
    }

    /// Scan `input`, calling `sink` for every candidate `want` asks for.
    pub(crate) fn scan(self, input: &[u8], want: Want, sink: &mut dyn FnMut(Event)) {
        if want == Want::default() {
            return;
        }
        match self {
            Isa::Scalar => drive(input, want, classify_scalar, sink),
            #[cfg(target_arch = "x86_64")]
            Isa::Sse2 => x86::scan_sse2(input, want, sink),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => x86::scan_avx2(input, want, sink),
        }
    }
}

/// `true` if `x` has a run of at least `t` (8 ≤ t ≤ 16) consecutive set bits.
#[inline(always)]
fn has_run_ge(x: u64, t: usize) -> bool {
    let y = x & (x >> 1);
    let y = y & (y >> 2);
    let y = y & (y >> 4);
    y & (y >> (t - 8)) != 0
}

/// Mask with the low `n` bits set (n ≤ 64).
#[inline(always)]
fn low_bits(n: u32) -> u64 {
    if n >= 64 {
        u64::MAX
    } else {
        (1u64 << n) - 1
    }
}

/// Class flags of the byte at `i`, 0 past the end.
#[inline(always)]
fn class_at(input: &[u8], i: usize) -> u8 {
    input.get(i).map_or(0, |&b| CLASS[usize::from(b)])
}

/// Scan state carried from one chunk to the next.
struct State {
    /// Start of the stretch that reaches the end of the previous chunk.
    run_start: Option<usize>,
    /// Digits of that stretch seen so far.
    run_digits: u32,
    /// Digit bit 63 of the previous chunk.
    prev_digit_top: u64,
}

/// The portable chunk loop; `classify` is inlined into the ISA-specific callers.
#[inline(always)]
pub(crate) fn drive<C: Fn(&[u8; 64]) -> Masks>(
    input: &[u8],
    want: Want,
    classify: C,
    sink: &mut dyn FnMut(Event),
) {
    debug_assert!(want.min_stretch == 0 || (8..=16).contains(&want.min_stretch));
    let mut st = State {
        run_start: None,
        run_digits: 0,
        prev_digit_top: 0,
    };
    let mut chunks = input.chunks_exact(64);
    let mut base = 0;
    for chunk in chunks.by_ref() {
        let chunk: &[u8; 64] = chunk
            .try_into()
            .unwrap_or_else(|_| unreachable!("chunks_exact(64)"));
        let m = classify(chunk);
        step(&mut st, input, base, m, want, sink);
        base += 64;
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let m = classify_tail(rest);
        step(&mut st, input, base, m, want, sink);
    }
    if let Some(s) = st.run_start {
        if input.len() - s >= want.min_stretch && st.run_digits >= want.min_digits {
            sink(Event::Stretch(s, input.len()));
        }
    }
}

/// Classify the final partial chunk (zero padding classifies as nothing).
#[cold]
#[inline(never)]
fn classify_tail(rest: &[u8]) -> Masks {
    let mut pad = [0u8; 64];
    pad[..rest.len()].copy_from_slice(rest);
    classify_scalar(&pad)
}

/// Process the masks of the chunk at `base`.
#[inline(always)]
fn step(
    st: &mut State,
    input: &[u8],
    base: usize,
    m: Masks,
    want: Want,
    sink: &mut dyn FnMut(Event),
) {
    let thr = want.min_stretch;
    if thr != 0 {
        let d = m.digit;
        let next_digit = u64::from(class_at(input, base + 64) & F_DIGIT);
        let prev = (d << 1) | st.prev_digit_top;
        let next = (d >> 1) | (next_digit << 63);
        let v = d | (m.sep & prev & next);
        st.prev_digit_top = d >> 63;
        let mut rest = v;
        let mut whole = false;
        if let Some(s) = st.run_start {
            let lead = v.trailing_ones();
            st.run_digits += (d & low_bits(lead)).count_ones();
            if lead == 64 {
                whole = true;
            } else {
                let e = base + lead as usize;
                if e - s >= thr && st.run_digits >= want.min_digits {
                    sink(Event::Stretch(s, e));
                }
                st.run_start = None;
                rest = v & !low_bits(lead);
            }
        }
        if !whole && rest != 0 {
            let top = rest.leading_ones();
            let inner = rest & low_bits(64 - top);
            if top > 0 {
                st.run_start = Some(base + 64 - top as usize);
                st.run_digits = (d & !low_bits(64 - top)).count_ones();
            }
            if inner != 0 && has_run_ge(inner, thr) {
                let mut x = inner;
                while x != 0 {
                    let s = x.trailing_zeros();
                    let n = (x >> s).trailing_ones();
                    let run = low_bits(n) << s;
                    if n as usize >= thr && (d & run).count_ones() >= want.min_digits {
                        let s = base + s as usize;
                        sink(Event::Stretch(s, s + n as usize));
                    }
                    x &= !run;
                }
            }
        }
    }
    if want.iban {
        let (u, d) = (m.upper, m.digit);
        let mut p = if u >> 62 != 0 {
            // Candidates at 61..63 need up to three bytes of the next chunk.
            let mut ue = u128::from(u);
            let mut de = u128::from(d);
            for k in 0..3 {
                let c = class_at(input, base + 64 + k);
                ue |= u128::from((c & F_UPPER) >> 2) << (64 + k);
                de |= u128::from(c & F_DIGIT) << (64 + k);
            }
            (ue & (ue >> 1) & (de >> 2) & (de >> 3)) as u64
        } else {
            u & (u >> 1) & (d >> 2) & (d >> 3)
        };
        while p != 0 {
            let i = p.trailing_zeros() as usize;
            sink(Event::Iban(base + i));
            p &= p - 1;
        }
    }
    if want.at {
        let mut a = m.at;
        while a != 0 {
            let i = a.trailing_zeros() as usize;
            sink(Event::At(base + i));
            a &= a - 1;
        }
    }
}
