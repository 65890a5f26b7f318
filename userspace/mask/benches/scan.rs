//! Throughput of the masking hot path on realistic CSV-like rows.
//!
//! * `pan_candidates`: PAN detector only, rows without PANs (the block classifier + run filter).
//! * `default_set_no_pan`: pan + ssn + iban + email on rows without sensitive data.
//! * `default_set_one_pan_per_row`: same detectors, one valid PAN per row (validation + rewrite).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dbwarden_mask::{MaskConfig, Masker};

const NAMES: &[&str] = &[
    "Alice Martin",
    "Bob Dupont",
    "Chen Wei",
    "Dana O'Neil",
    "Erik Larsen",
];

/// ~1 MiB of rows: id, name, date, amount, order id, phone, status.
fn rows(with_pan: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 << 20);
    let mut i: u64 = 0;
    while out.len() < (1 << 20) {
        let name = NAMES[(i % 5) as usize];
        let pan = if with_pan { ",4111 1111 1111 1111" } else { "" };
        out.extend_from_slice(
            format!(
                "{i},{name},2024-{:02}-{:02} 10:{:02}:00,{}.{:02},ORD-{:08},+1 555-{:03}-{:04},shipped{pan}\n",
                i % 12 + 1,
                i % 28 + 1,
                i % 60,
                (i * 37) % 100_000,
                i % 100,
                i * 7919 % 100_000_000,
                i % 1000,
                (i * 13) % 10_000,
            )
            .as_bytes(),
        );
        i += 1;
    }
    out
}

fn masker(detectors: &str) -> Masker {
    let cfg =
        MaskConfig::from_policy_toml(&format!("[masking]\ndetectors = {detectors}\n"), "bench")
            .expect("config");
    Masker::new(&cfg, [1; 32]).expect("masker")
}

fn bench(c: &mut Criterion) {
    let clean = rows(false);
    let dirty = rows(true);
    let pan_only = masker("[\"pan\"]");
    let all = masker("[\"pan\", \"ssn\", \"iban\", \"email\"]");
    let mut g = c.benchmark_group("mask");
    g.throughput(Throughput::Bytes(clean.len() as u64));
    g.bench_function("pan_candidates", |b| {
        b.iter(|| black_box(pan_only.find(black_box(&clean))))
    });
    g.bench_function("default_set_no_pan", |b| {
        b.iter(|| black_box(all.mask_bytes(black_box(&clean)).len()))
    });
    g.throughput(Throughput::Bytes(dirty.len() as u64));
    g.bench_function("default_set_one_pan_per_row", |b| {
        b.iter(|| black_box(all.mask_bytes(black_box(&dirty)).len()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
