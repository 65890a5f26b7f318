//! x86-64 classifiers (SSE2, AVX2, AVX-512BW). All `unsafe` code of the crate lives here.
//!
//! Each classifier turns 64 bytes into the [`Masks`]: unsigned range checks
//! (`min_epu8(b - lo, hi - lo) == b - lo`, or a mask compare on AVX-512) and equality compares, then
//! `movemask`. Uppercase and `@` masks are computed only when [`Want`] asks for IBAN / email candidates
//! and the dash mask only for SSN candidates (loop-invariant, perfectly predicted branches). The public entry points are safe: SSE2 is part of the
//! x86-64 baseline, and AVX2 / AVX-512 (plus POPCNT, BMI1/2, LZCNT) support is verified with `is_x86_feature_detected!` (a cached
//! atomic load) before a `#[target_feature]` function runs.

use std::arch::x86_64::{
    __cpuid, __m128i, __m256i, __m512i, _mm256_cmpeq_epi8, _mm256_loadu_si256, _mm256_min_epu8,
    _mm256_movemask_epi8, _mm256_or_si256, _mm256_set1_epi8, _mm256_sub_epi8,
    _mm512_cmpeq_epi8_mask, _mm512_cmplt_epu8_mask, _mm512_loadu_si512, _mm512_set1_epi8,
    _mm512_sub_epi8, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8,
    _mm_or_si128, _mm_set1_epi8, _mm_sub_epi8, _pext_u64,
};

use super::{drive, pan_thresholds, Masks, Sink, Want};

/// `i8` view of an ASCII byte for the `set1` intrinsics.
const fn c(b: u8) -> i8 {
    b.cast_signed()
}

/// Whether this CPU has the bit-manipulation instructions the mask code of the AVX2 and AVX-512 paths
/// is compiled for (`popcnt` for digit counts, `tzcnt`/`lzcnt` for run boundaries). Every AVX2 CPU
/// has them, but they are checked anyway.
fn has_bitops() -> bool {
    std::is_x86_feature_detected!("popcnt")
        && std::is_x86_feature_detected!("bmi1")
        && std::is_x86_feature_detected!("bmi2")
        && std::is_x86_feature_detected!("lzcnt")
}

/// Whether `pext` is fast (one µop) on this CPU. AMD before Zen 3 (families 17h and Hygon 18h)
/// microcode it at a cost growing with the mask's set bits, slower than the filter it would save.
/// Cached: `cpuid` may trap to the hypervisor.
fn fast_pext() -> bool {
    static FAST: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *FAST.get_or_init(|| {
        let vendor = __cpuid(0);
        let amd_like = (vendor.ebx, vendor.edx, vendor.ecx)
            == (0x6874_7541, 0x6974_6e65, 0x444d_4163)
            || (vendor.ebx, vendor.edx, vendor.ecx) == (0x6f67_7948, 0x6e65_476e, 0x656e_6975);
        if !amd_like {
            return true;
        }
        let eax = __cpuid(1).eax;
        let family = ((eax >> 8) & 0xF)
            + if (eax >> 8) & 0xF == 0xF {
                (eax >> 20) & 0xFF
            } else {
                0
            };
        family >= 0x19
    })
}

/// Whether this CPU can run the AVX2 path.
pub(super) fn has_avx2() -> bool {
    std::is_x86_feature_detected!("avx2") && has_bitops()
}

/// Whether this CPU can run the AVX-512 path.
pub(super) fn has_avx512() -> bool {
    std::is_x86_feature_detected!("avx512f")
        && std::is_x86_feature_detected!("avx512bw")
        && has_avx2()
}

/// Classify 16 bytes into `m`, shifted to bit `16 * k`.
#[target_feature(enable = "sse2")]
#[inline]
fn class16(v: __m128i, want: Want, k: u32, m: &mut Masks) {
    let mask = |x: __m128i| u64::from(_mm_movemask_epi8(x).cast_unsigned() & 0xFFFF) << (16 * k);
    let d = _mm_sub_epi8(v, _mm_set1_epi8(c(b'0')));
    m.digit |= mask(_mm_cmpeq_epi8(_mm_min_epu8(d, _mm_set1_epi8(9)), d));
    let dash = _mm_cmpeq_epi8(v, _mm_set1_epi8(c(b'-')));
    let space = _mm_cmpeq_epi8(v, _mm_set1_epi8(c(b' ')));
    m.sep |= mask(_mm_or_si128(space, dash));
    if want.ssn {
        m.dash |= mask(dash);
    }
    if want.iban {
        let u = _mm_sub_epi8(v, _mm_set1_epi8(c(b'A')));
        m.upper |= mask(_mm_cmpeq_epi8(_mm_min_epu8(u, _mm_set1_epi8(25)), u));
    }
    if want.at {
        m.at |= mask(_mm_cmpeq_epi8(v, _mm_set1_epi8(c(b'@'))));
    }
}

#[target_feature(enable = "sse2")]
#[inline]
fn classify_sse2(chunk: &[u8; 64], want: Want) -> Masks {
    let mut m = Masks::default();
    for k in 0..4 {
        // SAFETY: `chunk` is 64 readable bytes and `16 * k + 16 <= 64`; `loadu` has no alignment
        // requirement.
        let v = unsafe { _mm_loadu_si128(chunk.as_ptr().add(16 * k).cast::<__m128i>()) };
        class16(v, want, k as u32, &mut m);
    }
    m
}

#[target_feature(enable = "sse2")]
fn drive_sse2<F: Sink>(input: &[u8], want: Want, sink: &mut F) {
    // The closure inherits this function's target features, so the SSE2 classifier is safe to call.
    drive::<false, _, _, _>(
        input,
        want,
        |chunk, w| classify_sse2(chunk, w),
        None::<fn(u64, u64) -> u64>,
        sink,
    );
}

/// Scan with the SSE2 classifier (x86-64 baseline, always available).
pub(super) fn scan_sse2<F: Sink>(input: &[u8], want: Want, sink: &mut F) {
    // SAFETY: SSE2 is part of the x86-64 baseline: every x86-64 CPU has it.
    unsafe { drive_sse2(input, want, sink) }
}

/// Classify 32 bytes into `m`, shifted to bit `32 * k`.
#[target_feature(enable = "avx2")]
#[inline]
fn class32(v: __m256i, want: Want, k: u32, m: &mut Masks) {
    let mask = |x: __m256i| u64::from(_mm256_movemask_epi8(x).cast_unsigned()) << (32 * k);
    let d = _mm256_sub_epi8(v, _mm256_set1_epi8(c(b'0')));
    m.digit |= mask(_mm256_cmpeq_epi8(
        _mm256_min_epu8(d, _mm256_set1_epi8(9)),
        d,
    ));
    let dash = _mm256_cmpeq_epi8(v, _mm256_set1_epi8(c(b'-')));
    let space = _mm256_cmpeq_epi8(v, _mm256_set1_epi8(c(b' ')));
    m.sep |= mask(_mm256_or_si256(space, dash));
    if want.ssn {
        m.dash |= mask(dash);
    }
    if want.iban {
        let u = _mm256_sub_epi8(v, _mm256_set1_epi8(c(b'A')));
        m.upper |= mask(_mm256_cmpeq_epi8(
            _mm256_min_epu8(u, _mm256_set1_epi8(25)),
            u,
        ));
    }
    if want.at {
        m.at |= mask(_mm256_cmpeq_epi8(v, _mm256_set1_epi8(c(b'@'))));
    }
}

#[target_feature(enable = "avx2")]
#[inline]
fn classify_avx2(chunk: &[u8; 64], want: Want) -> Masks {
    // SAFETY: `chunk` is 64 readable bytes, so both unaligned 32-byte loads are in bounds.
    let (lo, hi) = unsafe {
        (
            _mm256_loadu_si256(chunk.as_ptr().cast::<__m256i>()),
            _mm256_loadu_si256(chunk.as_ptr().add(32).cast::<__m256i>()),
        )
    };
    let mut m = Masks::default();
    class32(lo, want, 0, &mut m);
    class32(hi, want, 1, &mut m);
    m
}

#[target_feature(enable = "avx2,popcnt,bmi1,bmi2,lzcnt")]
fn drive_avx2<const PAN: bool, F: Sink>(input: &[u8], want: Want, sink: &mut F) {
    // The closures inherit this function's target features, so the AVX2 classifier and `pext` are
    // safe to call.
    let classify = |chunk: &[u8; 64], w| classify_avx2(chunk, w);
    if fast_pext() {
        drive::<PAN, _, _, _>(input, want, classify, Some(|a, m| _pext_u64(a, m)), sink);
    } else {
        drive::<PAN, _, _, _>(input, want, classify, None::<fn(u64, u64) -> u64>, sink);
    }
}

/// Scan with the AVX2 classifier, falling back to SSE2 if the CPU lacks AVX2.
pub(super) fn scan_avx2<F: Sink>(input: &[u8], want: Want, sink: &mut F) {
    if has_avx2() {
        // SAFETY: AVX2, POPCNT, BMI1/2 and LZCNT support was verified on this CPU just above.
        unsafe {
            if pan_thresholds(want) {
                drive_avx2::<true, F>(input, want, sink);
            } else {
                drive_avx2::<false, F>(input, want, sink);
            }
        }
    } else {
        scan_sse2(input, want, sink);
    }
}

#[target_feature(enable = "avx512f,avx512bw")]
#[inline]
fn classify_avx512(chunk: &[u8; 64], want: Want) -> Masks {
    // SAFETY: `chunk` is 64 readable bytes; `loadu` has no alignment requirement.
    let v = unsafe { _mm512_loadu_si512(chunk.as_ptr().cast::<__m512i>()) };
    let digit = _mm512_cmplt_epu8_mask(
        _mm512_sub_epi8(v, _mm512_set1_epi8(c(b'0'))),
        _mm512_set1_epi8(10),
    );
    let space = _mm512_cmpeq_epi8_mask(v, _mm512_set1_epi8(c(b' ')));
    let dash = _mm512_cmpeq_epi8_mask(v, _mm512_set1_epi8(c(b'-')));
    let upper = if want.iban {
        _mm512_cmplt_epu8_mask(
            _mm512_sub_epi8(v, _mm512_set1_epi8(c(b'A'))),
            _mm512_set1_epi8(26),
        )
    } else {
        0
    };
    let at = if want.at {
        _mm512_cmpeq_epi8_mask(v, _mm512_set1_epi8(c(b'@')))
    } else {
        0
    };
    Masks {
        digit,
        sep: space | dash,
        dash: if want.ssn { dash } else { 0 },
        upper,
        at,
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx2,popcnt,bmi1,bmi2,lzcnt")]
fn drive_avx512<const PAN: bool, F: Sink>(input: &[u8], want: Want, sink: &mut F) {
    // The closures inherit this function's target features, so the AVX-512 classifier and `pext` are
    // safe to call. Every CPU with AVX-512BW has a fast `pext`.
    drive::<PAN, _, _, _>(
        input,
        want,
        |chunk, w| classify_avx512(chunk, w),
        Some(|a, m| _pext_u64(a, m)),
        sink,
    );
}

/// Scan with the AVX-512BW classifier, falling back to AVX2 if the CPU lacks AVX-512F/BW.
pub(super) fn scan_avx512<F: Sink>(input: &[u8], want: Want, sink: &mut F) {
    if has_avx512() {
        // SAFETY: AVX-512F/BW, AVX2, POPCNT, BMI1/2 and LZCNT support was verified on this CPU just
        // above.
        unsafe {
            if pan_thresholds(want) {
                drive_avx512::<true, F>(input, want, sink);
            } else {
                drive_avx512::<false, F>(input, want, sink);
            }
        }
    } else {
        scan_avx2(input, want, sink);
    }
}
