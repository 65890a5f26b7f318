//! x86-64 classifiers (SSE2 and AVX2). All `unsafe` code of the crate lives here.
//!
//! Each classifier turns 64 bytes into the four [`Masks`] with unsigned range checks
//! (`min_epu8(b - lo, hi - lo) == b - lo`) and equality compares, then `movemask`. The public entry
//! points are safe: SSE2 is part of the x86-64 baseline, and AVX2 is verified with
//! `is_x86_feature_detected!` (a cached atomic load) before the `#[target_feature]` function runs.

use std::arch::x86_64::{
    __m128i, __m256i, _mm256_cmpeq_epi8, _mm256_loadu_si256, _mm256_min_epu8, _mm256_movemask_epi8,
    _mm256_or_si256, _mm256_set1_epi8, _mm256_sub_epi8, _mm_cmpeq_epi8, _mm_loadu_si128,
    _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8, _mm_sub_epi8,
};

use super::{drive, Event, Masks, Want};

/// `i8` view of an ASCII byte for the `set1` intrinsics.
const fn c(b: u8) -> i8 {
    b.cast_signed()
}

/// Classify 16 bytes: (digit, sep, upper, at) as 16-bit masks.
#[target_feature(enable = "sse2")]
#[inline]
fn class16(v: __m128i) -> (u64, u64, u64, u64) {
    let d = _mm_sub_epi8(v, _mm_set1_epi8(c(b'0')));
    let digit = _mm_cmpeq_epi8(_mm_min_epu8(d, _mm_set1_epi8(9)), d);
    let u = _mm_sub_epi8(v, _mm_set1_epi8(c(b'A')));
    let upper = _mm_cmpeq_epi8(_mm_min_epu8(u, _mm_set1_epi8(25)), u);
    let sep = _mm_or_si128(
        _mm_cmpeq_epi8(v, _mm_set1_epi8(c(b' '))),
        _mm_cmpeq_epi8(v, _mm_set1_epi8(c(b'-'))),
    );
    let at = _mm_cmpeq_epi8(v, _mm_set1_epi8(c(b'@')));
    (
        u64::from(_mm_movemask_epi8(digit).cast_unsigned() & 0xFFFF),
        u64::from(_mm_movemask_epi8(sep).cast_unsigned() & 0xFFFF),
        u64::from(_mm_movemask_epi8(upper).cast_unsigned() & 0xFFFF),
        u64::from(_mm_movemask_epi8(at).cast_unsigned() & 0xFFFF),
    )
}

#[target_feature(enable = "sse2")]
#[inline]
fn classify_sse2(chunk: &[u8; 64]) -> Masks {
    let mut m = Masks::default();
    for k in 0..4 {
        // SAFETY: `chunk` is 64 readable bytes and `16 * k + 16 <= 64`; `loadu` has no alignment
        // requirement.
        let v = unsafe { _mm_loadu_si128(chunk.as_ptr().add(16 * k).cast::<__m128i>()) };
        let (d, s, u, a) = class16(v);
        m.digit |= d << (16 * k);
        m.sep |= s << (16 * k);
        m.upper |= u << (16 * k);
        m.at |= a << (16 * k);
    }
    m
}

#[target_feature(enable = "sse2")]
fn drive_sse2(input: &[u8], want: Want, sink: &mut dyn FnMut(Event)) {
    // The closure inherits this function's target features, so the SSE2 classifier is safe to call.
    drive(input, want, |chunk| classify_sse2(chunk), sink);
}

/// Scan with the SSE2 classifier (x86-64 baseline, always available).
pub(super) fn scan_sse2(input: &[u8], want: Want, sink: &mut dyn FnMut(Event)) {
    // SAFETY: SSE2 is part of the x86-64 baseline: every x86-64 CPU has it.
    unsafe { drive_sse2(input, want, sink) }
}

#[target_feature(enable = "avx2")]
#[inline]
fn class32(v: __m256i) -> (u64, u64, u64, u64) {
    let d = _mm256_sub_epi8(v, _mm256_set1_epi8(c(b'0')));
    let digit = _mm256_cmpeq_epi8(_mm256_min_epu8(d, _mm256_set1_epi8(9)), d);
    let u = _mm256_sub_epi8(v, _mm256_set1_epi8(c(b'A')));
    let upper = _mm256_cmpeq_epi8(_mm256_min_epu8(u, _mm256_set1_epi8(25)), u);
    let sep = _mm256_or_si256(
        _mm256_cmpeq_epi8(v, _mm256_set1_epi8(c(b' '))),
        _mm256_cmpeq_epi8(v, _mm256_set1_epi8(c(b'-'))),
    );
    let at = _mm256_cmpeq_epi8(v, _mm256_set1_epi8(c(b'@')));
    (
        u64::from(_mm256_movemask_epi8(digit).cast_unsigned()),
        u64::from(_mm256_movemask_epi8(sep).cast_unsigned()),
        u64::from(_mm256_movemask_epi8(upper).cast_unsigned()),
        u64::from(_mm256_movemask_epi8(at).cast_unsigned()),
    )
}

#[target_feature(enable = "avx2")]
#[inline]
fn classify_avx2(chunk: &[u8; 64]) -> Masks {
    // SAFETY: `chunk` is 64 readable bytes, so both unaligned 32-byte loads are in bounds.
    let (lo, hi) = unsafe {
        (
            _mm256_loadu_si256(chunk.as_ptr().cast::<__m256i>()),
            _mm256_loadu_si256(chunk.as_ptr().add(32).cast::<__m256i>()),
        )
    };
    let (d0, s0, u0, a0) = class32(lo);
    let (d1, s1, u1, a1) = class32(hi);
    Masks {
        digit: d0 | d1 << 32,
        sep: s0 | s1 << 32,
        upper: u0 | u1 << 32,
        at: a0 | a1 << 32,
    }
}

#[target_feature(enable = "avx2")]
fn drive_avx2(input: &[u8], want: Want, sink: &mut dyn FnMut(Event)) {
    // The closure inherits this function's target features, so the AVX2 classifier is safe to call.
    drive(input, want, |chunk| classify_avx2(chunk), sink);
}

/// Scan with the AVX2 classifier, falling back to SSE2 if the CPU lacks AVX2.
pub(super) fn scan_avx2(input: &[u8], want: Want, sink: &mut dyn FnMut(Event)) {
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 support was verified on this CPU just above.
        unsafe { drive_avx2(input, want, sink) }
    } else {
        scan_sse2(input, want, sink);
    }
}
