//! Block-wise candidate scanner: the hot path.
//!
//! Input is processed in 64-byte chunks. An ISA-specific *classifier* ([`x86`] for SSE2/AVX2/AVX-512BW,
//! or the portable table-driven [`classify_scalar`]) turns a chunk into five 64-bit masks (digits,
//! separators, dashes, uppercase letters, `@`). Everything after that is portable integer code on those
//! masks, and chunk `k` is processed only once chunk `k + 1` is classified, so every look-ahead across a
//! chunk boundary is a shift of the next chunk's masks (no scalar re-reads of the input):
//!
//! * a separator counts only when sandwiched between two digits, so `digits | sandwiched separators`
//!   marks exactly the *stretches* (digit groups joined by single separators) the PAN validator wants;
//!   the starts of runs at least `min_stretch` long are found with a doubling shift-and
//!   (`r = m & m>>1; r &= r>>2; r &= r>>4; r &= r>>(t-8)`), so a chunk without a long run costs no
//!   branch per byte and the per-run loop visits long runs only. Where BMI2 `pext` is fast, the
//!   same test runs on `pext(stretches, digits | !stretches)` (each stretch squeezed to as many ones
//!   as it has digits), so dates and phone numbers (13–14 bytes, 10–11 digits) are rejected for the
//!   whole chunk at once; the stretch carried across a chunk boundary is tracked without a branch
//!   and checked with one digit count. With the PAN thresholds the chunk filter is about 30 integer
//!   instructions per 64 bytes and the per-run loop runs only for chunks that may report;
//! * SSN candidates are the exact `ddd-dd-dddd` shape as whole digit groups, computed for all 64
//!   positions at once from the digit and dash masks (so dates, phone numbers and order ids never reach
//!   a validator);
//! * IBAN starts are `upper & upper>>1 & digit>>2 & digit>>3`;
//! * `@` bits nominate email candidates.
//!
//! Only then do the scalar validators in [`crate::detect`] run. The ISA is chosen once at runtime
//! ([`Isa::detect`]); every ISA produces exactly the same events, which the tests check against a naive
//! byte-at-a-time oracle.

#[cfg(target_arch = "x86_64")]
mod x86;

#[cfg(test)]
pub(crate) mod tests;

/// Per-chunk classification: bit `i` describes byte `i` of the chunk. Bytes past the end of the input
/// classify as nothing (all bits 0).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Masks {
    /// ASCII `0`–`9`.
    pub digit: u64,
    /// Space or `-`.
    pub sep: u64,
    /// `-` (subset of `sep`; only computed when SSN candidates are wanted).
    pub dash: u64,
    /// ASCII `A`–`Z` (only computed when IBAN candidates are wanted).
    pub upper: u64,
    /// `@` (only computed when email candidates are wanted).
    pub at: u64,
}

/// Which candidate kinds a scan must report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Want {
    /// Minimum stretch length in bytes to report (0 = no stretch events; otherwise 8..=16).
    pub min_stretch: usize,
    /// Minimum number of digits in a reported stretch.
    pub min_digits: u32,
    /// Report `ddd-dd-dddd` SSN shapes.
    pub ssn: bool,
    /// Report IBAN start candidates.
    pub iban: bool,
    /// Report `@` positions.
    pub at: bool,
}

/// A candidate found by the scanner.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Event {
    /// An exact stretch `start..end` at least `min_stretch` bytes long with at least `min_digits`
    /// digits.
    Stretch(usize, usize),
    /// `ddd-dd-dddd` starts here, as three whole digit groups of its stretch: no digit right before or
    /// after it, and not joined by a dash to a further digit group on either side.
    Ssn(usize),
    /// `[A-Z]{2}[0-9]{2}` starts here.
    Iban(usize),
    /// An `@` byte.
    At(usize),
}

/// Receiver of scanner output.
pub(crate) trait Sink {
    /// A candidate.
    fn event(&mut self, ev: Event);

    /// Progress mark: every event reported after this call is at position `pos` or later (a
    /// [`Event::Stretch`] *starts* at `pos` or later). Lets a streaming consumer finish everything
    /// before `pos` without waiting for the end of the input. Called once per chunk, in increasing
    /// order.
    #[inline(always)]
    fn settled(&mut self, pos: usize) {
        let _ = pos;
    }
}

impl<F: FnMut(Event)> Sink for F {
    #[inline(always)]
    fn event(&mut self, ev: Event) {
        self(ev);
    }
}

const F_DIGIT: u8 = 1;
const F_SEP: u8 = 2;
const F_DASH: u8 = 4;
const F_UPPER: u8 = 8;
const F_AT: u8 = 16;

static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = if b.is_ascii_digit() {
            F_DIGIT
        } else if b == b' ' {
            F_SEP
        } else if b == b'-' {
            F_SEP | F_DASH
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

/// Portable classifier (computes every mask regardless of `want`).
#[inline(always)]
pub(crate) fn classify_scalar(chunk: &[u8; 64], _want: Want) -> Masks {
    let mut m = Masks::default();
    for (i, &b) in chunk.iter().enumerate() {
        let c = CLASS[usize::from(b)];
        m.digit |= u64::from(c & F_DIGIT) << i;
        m.sep |= u64::from((c & F_SEP) >> 1) << i;
        m.dash |= u64::from((c & F_DASH) >> 2) << i;
        m.upper |= u64::from((c & F_UPPER) >> 3) << i;
        m.at |= u64::from((c & F_AT) >> 4) << i;
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
    /// x86-64 with AVX2, POPCNT, BMI1/2, LZCNT (verified with `is_x86_feature_detected!` before use).
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// x86-64 with AVX-512F + AVX-512BW on top of [`Isa::Avx2`] (verified before use).
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Isa {
    /// The best ISA this CPU supports.
    pub(crate) fn detect() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            if x86::has_avx512() {
                return Isa::Avx512;
            }
            if x86::has_avx2() {
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
            if x86::has_avx2() {
                v.push(Isa::Avx2);
            }
            if x86::has_avx512() {
                v.push(Isa::Avx512);
            }
        }
        v
    }

    /// Scan `input`, calling `sink` for every candidate `want` asks for. Events of one kind come in
    /// increasing position order; kinds are interleaved chunk by chunk.
    #[inline]
    pub(crate) fn scan<F: Sink>(self, input: &[u8], want: Want, sink: &mut F) {
        if want == Want::default() {
            return;
        }
        match self {
            Isa::Scalar => {
                drive::<false, _, _, _>(
                    input,
                    want,
                    classify_scalar,
                    None::<fn(u64, u64) -> u64>,
                    sink,
                );
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Sse2 => x86::scan_sse2(input, want, sink),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => x86::scan_avx2(input, want, sink),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => x86::scan_avx512(input, want, sink),
        }
    }
}

/// Bit `i` set iff bits `i..i + t` of `x` are all set (8 ≤ t ≤ 16): the starts of `t`-windows.
#[inline(always)]
fn windows(x: u64, t: usize) -> u64 {
    let y = x & (x >> 1);
    let y = y & (y >> 2);
    let y = y & (y >> 4);
    y & (y >> (t - 8))
}

/// `(hi:lo) >> k` truncated to 64 bits (0 < k < 64): look-ahead into the next chunk.
#[inline(always)]
fn ahead(lo: u64, hi: u64, k: u32) -> u64 {
    (lo >> k) | (hi << (64 - k))
}

/// `(lo:prev) << k` truncated to 64 bits (0 < k < 64): look-back into the previous chunk.
#[inline(always)]
fn behind(lo: u64, prev: u64, k: u32) -> u64 {
    (lo << k) | (prev >> (64 - k))
}

/// Hide the provenance of the masks from the optimiser. Without this, LLVM keeps `movemask` results
/// that are carried to the next loop iteration as `<64 x i1>` vectors and rebuilds them byte by byte
/// (`vpinsrb` chains, ~150 extra instructions per chunk, seen in the AVX2 loop's disassembly).
#[inline(always)]
fn opaque<const LEAN: bool>(m: Masks) -> Masks {
    if LEAN {
        Masks {
            digit: std::hint::black_box(m.digit),
            sep: std::hint::black_box(m.sep),
            ..Masks::default()
        }
    } else {
        Masks {
            digit: std::hint::black_box(m.digit),
            sep: std::hint::black_box(m.sep),
            dash: std::hint::black_box(m.dash),
            upper: std::hint::black_box(m.upper),
            at: std::hint::black_box(m.at),
        }
    }
}

/// Scan state carried from one chunk to the next (the default is the state before the first chunk).
#[derive(Default)]
struct State {
    /// Start of the stretch that reaches the end of the previous chunk. When none does, the start of
    /// the current chunk: an empty stretch there, which the stretch starting the chunk (if any)
    /// continues. No `Option`, so the chunk filter ([`stretch_hot`]) and the carry update
    /// ([`carry_out`]) need no branch on whether a stretch is carried.
    run_start: usize,
    /// Digits of that stretch seen so far.
    run_digits: u32,
    /// Digit mask of the previous chunk (zero before the first).
    prev_digit: u64,
    /// Dash mask of the previous chunk (zero before the first).
    prev_dash: u64,
}

/// The portable chunk loop; `classify` is inlined into the ISA-specific callers. Two variants are
/// compiled per ISA: a lean one for stretch events only (the PAN-only masker: no dash, uppercase or `@`
/// masks are computed or carried) and a general one.
///
/// Chunk `k` is stepped once chunk `k + 1` is classified; the final partial chunk is copied into a
/// zero-padded 64-byte buffer and classified by the same classifier (NUL classifies as nothing).
///
/// `PAN` (only when [`pan_thresholds`] holds for `want`) compiles the PAN stretch thresholds in as
/// constants. Callers choose it in separate functions: when one function dispatches on it, LLVM
/// merges the variants back into one loop reading the thresholds from memory.
///
/// `pext` is `Some` where a fast parallel bit extract (BMI2 `pext`) is available: it sharpens the
/// per-chunk stretch filter from "some stretch is `min_stretch` bytes long" to "some stretch holds
/// `min_digits` digits" (see [`step`]). Without it the byte-length filter alone is used.
#[inline(always)]
pub(crate) fn drive<const PAN: bool, C, P, F>(
    input: &[u8],
    want: Want,
    classify: C,
    pext: Option<P>,
    sink: &mut F,
) where
    C: Fn(&[u8; 64], Want) -> Masks,
    P: Fn(u64, u64) -> u64 + Copy,
    F: Sink,
{
    debug_assert!(!PAN || pan_thresholds(want));
    if want.ssn || want.iban || want.at {
        drive_variant::<false, PAN, C, P, F>(input, want, classify, pext, sink);
    } else {
        drive_variant::<true, PAN, C, P, F>(input, want, classify, pext, sink);
    }
}

/// Whether `want` has the PAN detector's stretch thresholds ([`PAN_THRESHOLDS`]).
#[inline]
pub(crate) fn pan_thresholds(want: Want) -> bool {
    (want.min_stretch, want.min_digits) == PAN_THRESHOLDS
}

/// Stretch thresholds (`min_stretch`, `min_digits`) of the PAN detector: compiled in as constants
/// (immediate shift counts, a foldable filter) by the `PAN` variants of [`drive`].
const PAN_THRESHOLDS: (usize, u32) = (crate::detect::PAN_MIN, crate::detect::PAN_MIN as u32);

/// [`drive`] for one variant; `LEAN` = stretch events only, `PAN` = the stretch thresholds are
/// [`PAN_THRESHOLDS`].
#[inline(always)]
fn drive_variant<const LEAN: bool, const PAN: bool, C, P, F>(
    input: &[u8],
    want: Want,
    classify: C,
    pext: Option<P>,
    sink: &mut F,
) where
    C: Fn(&[u8; 64], Want) -> Masks,
    P: Fn(u64, u64) -> u64 + Copy,
    F: Sink,
{
    debug_assert!(want.min_stretch == 0 || (8..=16).contains(&want.min_stretch));
    if input.is_empty() {
        return;
    }
    // In the lean variant the flags are compile-time constants, so the classifier and `step` drop the
    // unused masks and code.
    let want = if PAN {
        Want {
            min_stretch: PAN_THRESHOLDS.0,
            min_digits: PAN_THRESHOLDS.1,
            ..want
        }
    } else {
        want
    };
    let want = if LEAN {
        Want {
            ssn: false,
            iban: false,
            at: false,
            ..want
        }
    } else {
        want
    };
    let mut st = State::default();
    let full = input.len() / 64;
    let chunks = input.len().div_ceil(64);
    let classify_at = |k: usize| -> Masks {
        if k < full {
            let chunk: &[u8; 64] = input[64 * k..64 * k + 64]
                .try_into()
                .unwrap_or_else(|_| unreachable!("64-byte slice"));
            classify(chunk, want)
        } else if k < chunks {
            let rest = &input[64 * k..];
            let mut pad = [0u8; 64];
            pad[..rest.len()].copy_from_slice(rest);
            classify(&pad, want)
        } else {
            Masks::default()
        }
    };
    let mut cur = classify_at(0);
    let mut k = 0;
    // Hot loop: the next chunk is a full one.
    for next_chunk in input.chunks_exact(64).skip(1) {
        let next_chunk: &[u8; 64] = next_chunk
            .try_into()
            .unwrap_or_else(|_| unreachable!("chunks_exact(64)"));
        let next = opaque::<LEAN>(classify(next_chunk, want));
        step(&mut st, 64 * k, cur, next, want, pext, sink);
        cur = next;
        k += 1;
    }
    // The last one or two chunks (a partial tail and/or the end of the input).
    while k < chunks {
        let next = classify_at(k + 1);
        step(&mut st, 64 * k, cur, next, want, pext, sink);
        cur = next;
        k += 1;
    }
    // `run_start` lies past the end when no stretch reaches it (an empty one never qualifies).
    let s = st.run_start;
    if want.min_stretch != 0
        && input.len().saturating_sub(s) >= want.min_stretch
        && st.run_digits >= want.min_digits
    {
        sink.event(Event::Stretch(s, input.len()));
    }
}

/// Process the masks `m` of the chunk at `base`; `n` are the masks of the following chunk.
#[inline(always)]
fn step<P: Fn(u64, u64) -> u64 + Copy, F: Sink>(
    st: &mut State,
    base: usize,
    m: Masks,
    n: Masks,
    want: Want,
    pext: Option<P>,
    sink: &mut F,
) {
    let d = m.digit;
    if want.min_stretch != 0 {
        let v = d | (m.sep & behind(d, st.prev_digit, 1) & ahead(d, n.digit, 1));
        // Fast path (most chunks): no stretch can be reported in this chunk, so only the stretch
        // reaching the next chunk (if any) is recorded, without a branch.
        if stretch_hot(st, base, d, v, want, pext) {
            stretches(st, base, d, v, want, sink);
        } else {
            carry_out(st, base, d, v);
        }
    }
    if want.ssn {
        let (h, nd, nh) = (m.dash, n.digit, n.dash);
        let dk = |k: u32| ahead(d, nd, k);
        let hk = |k: u32| ahead(h, nh, k);
        let shape =
            d & dk(1) & dk(2) & hk(3) & dk(4) & dk(5) & hk(6) & dk(7) & dk(8) & dk(9) & dk(10);
        if shape != 0 {
            // Whole groups: no digit right before or after, and no dash-joined group on either side.
            let (pd, ph) = (st.prev_digit, st.prev_dash);
            let mut p = shape
                & !dk(11)
                & !(hk(11) & dk(12))
                & !behind(d, pd, 1)
                & !(behind(h, ph, 1) & behind(d, pd, 2));
            while p != 0 {
                sink.event(Event::Ssn(base + p.trailing_zeros() as usize));
                p &= p - 1;
            }
        }
    }
    if want.iban {
        let u = m.upper;
        let mut p = u & ahead(u, n.upper, 1) & ahead(d, n.digit, 2) & ahead(d, n.digit, 3);
        while p != 0 {
            sink.event(Event::Iban(base + p.trailing_zeros() as usize));
            p &= p - 1;
        }
    }
    if want.at {
        let mut a = m.at;
        while a != 0 {
            sink.event(Event::At(base + a.trailing_zeros() as usize));
            a &= a - 1;
        }
    }
    st.prev_digit = d;
    st.prev_dash = m.dash;
    // Later events come from later chunks, except a stretch carried into the next chunk.
    let next_base = base + 64;
    sink.settled(if want.min_stretch != 0 {
        st.run_start.min(next_base)
    } else {
        next_base
    });
}

/// Whether the chunk at `base` (stretch mask `v`, digit mask `d`) may report a stretch or continue
/// the carried one to its end: the exact per-run loop ([`stretches`]) runs only then. A necessary
/// condition, decided for all runs of the chunk at once:
///
/// * a run inside the chunk must be `min_stretch` bytes long (a `windows` test on `v`) and, with
///   `pext`, hold `min_digits` digits: extracting the bits of `v` at digit and non-stretch positions
///   drops the separators inside the stretches, so each run becomes a block of as many ones as it has
///   digits (runs stay apart: a byte outside every stretch lies between two runs);
/// * the carried stretch must fill the whole chunk, or reach both thresholds where it ends.
#[inline(always)]
fn stretch_hot<P: Fn(u64, u64) -> u64>(
    st: &State,
    base: usize,
    d: u64,
    v: u64,
    want: Want,
    pext: Option<P>,
) -> bool {
    let (thr, md) = (want.min_stretch, want.min_digits);
    let inner = match pext {
        // `windows` needs 8..=16; capping at 16 keeps the test a necessary condition. A run holds
        // no more digits than bytes, so with `min_digits >= min_stretch` the digit test alone
        // suffices.
        Some(pext) if md >= 8 => {
            let digits_ok = windows(pext(v, d | !v), md.min(16) as usize) != 0;
            digits_ok & (md as usize >= thr || windows(v, thr) != 0)
        }
        _ => windows(v, thr) != 0,
    };
    // The carried stretch (possibly empty) continues with the block of trailing ones of `v`.
    let lead = v & !v.wrapping_add(1);
    let digits = st.run_digits + (d & lead).count_ones();
    let carried = if md as usize >= thr && md <= 32 {
        // Folded for the PAN thresholds: `min_digits` digits span `min_stretch` bytes, and a
        // stretch filling the chunk holds at least 32 digits (its separators are single).
        digits >= md
    } else {
        let end = base + lead.count_ones() as usize;
        (lead == u64::MAX) | ((digits >= md) & (end - st.run_start >= thr))
    };
    inner | carried
}

/// State update of a chunk that reports no stretch (see [`stretch_hot`]): the carried stretch (if
/// any) ends in this chunk without qualifying, and the stretch reaching the next chunk (if any) is
/// carried.
#[inline(always)]
fn carry_out(st: &mut State, base: usize, d: u64, v: u64) {
    let top = v.leading_ones();
    let keep = u64::MAX.checked_shr(top).unwrap_or(0);
    st.run_start = base + 64 - top as usize;
    st.run_digits = (d & !keep).count_ones();
}

/// Stretch events of one chunk: `v` is its stretch mask, `d` its digit mask.
#[inline(always)]
fn stretches<F: Sink>(st: &mut State, base: usize, d: u64, v: u64, want: Want, sink: &mut F) {
    let thr = want.min_stretch;
    // The block of trailing ones continues the carried stretch (empty if none reaches this chunk:
    // then `s == base`).
    let s = st.run_start;
    let lead = v & !v.wrapping_add(1);
    st.run_digits += (d & lead).count_ones();
    if lead == u64::MAX {
        return;
    }
    let e = base + lead.count_ones() as usize;
    if e - s >= thr && st.run_digits >= want.min_digits {
        sink.event(Event::Stretch(s, e));
    }
    st.run_start = base + 64;
    st.run_digits = 0;
    let mut rest = v & !lead;
    if (rest >> 63) != 0 {
        // A stretch reaches the next chunk: carry it.
        let top = rest.leading_ones();
        let keep = u64::MAX.checked_shr(top).unwrap_or(0);
        st.run_start = base + 64 - top as usize;
        st.run_digits = (d & !keep).count_ones();
        rest &= keep;
    }
    // `rest` now holds runs that start and end inside this chunk; the lowest window start of each long
    // run is that run's first byte.
    let mut w = windows(rest, thr);
    while w != 0 {
        let s = w.trailing_zeros();
        let from = rest >> s;
        // The run is the block of trailing ones of `from` (it ends before bit 64 - s).
        let run = (from & !from.wrapping_add(1)) << s;
        if (d & run).count_ones() >= want.min_digits {
            let s = base + s as usize;
            sink.event(Event::Stretch(s, s + run.count_ones() as usize));
        }
        w &= !run;
    }
}
