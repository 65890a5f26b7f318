//! Throughput of the masking hot path on realistic CSV-like rows (1 MiB buffers, throughput in bytes).
//!
//! Rows: id, name, datetime, amount, order id, phone number, status — the digit-heavy look-alikes
//! (dates, phone numbers, order ids, amounts) that a PAN/SSN scanner must reject cheaply.
//!
//! * `pan_candidates`: PAN detector only, rows without PANs (the block classifier + run filter).
//! * `default_set_no_pan`: pan + ssn + iban + email on rows without sensitive data.
//! * `default_set_one_pan_per_row`: same detectors, one valid PAN per row in a rotating printed format
//!   (plain, spaced, dashed, Amex 4-6-5), so validation and the rewrite are included; through
//!   `mask_into` with one reused output buffer, as the daemon calls it.
//! * `default_set_one_pan_per_row_mask_bytes`: the same through `mask_bytes` (a fresh result per call).
//!
//! Instruction counts (the machine is shared, wall time is noisy): `MASK_ICOUNT=<bench name>` runs that
//! workload `MASK_ICOUNT_ITERS` times (default 10) without criterion, for `valgrind --tool=callgrind`;
//! run it with 0 and N iterations and divide the difference by N.

use std::cell::RefCell;
use std::hint::black_box;

use criterion::{Criterion, Throughput};
use dbwarden_mask::{MaskConfig, Masker};

const NAMES: &[&str] = &[
    "Alice Martin",
    "Bob Dupont",
    "Chen Wei",
    "Dana O'Neil",
    "Erik Larsen",
];

/// Valid test PANs in the formats people print them.
const PANS: &[&str] = &[
    "4111 1111 1111 1111",
    "5555555555554444",
    "3782-822463-10005",
    "4012-8888-8888-1881",
    "6011 1111 1111 1117",
    "2223003122003222",
];

/// ~1 MiB of rows: id, name, datetime, amount, order id, phone, status[, pan].
fn rows(with_pan: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 << 20);
    let mut i: u64 = 0;
    while out.len() < (1 << 20) {
        let name = NAMES[(i % 5) as usize];
        let pan = if with_pan {
            format!(",{}", PANS[(i % PANS.len() as u64) as usize])
        } else {
            String::new()
        };
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
    out.truncate(1 << 20);
    out
}

fn masker(detectors: &str) -> Masker {
    let cfg =
        MaskConfig::from_policy_toml(&format!("[masking]\ndetectors = {detectors}\n"), "bench")
            .expect("config");
    Masker::new(&cfg, [1; 32]).expect("masker")
}

struct Work {
    clean: Vec<u8>,
    dirty: Vec<u8>,
    pan_only: Masker,
    all: Masker,
    /// Output buffer reused across `mask_into` calls.
    buf: RefCell<Vec<u8>>,
}

impl Work {
    fn new() -> Work {
        let w = Work {
            clean: rows(false),
            dirty: rows(true),
            pan_only: masker("[\"pan\"]"),
            all: masker("[\"pan\", \"ssn\", \"iban\", \"email\"]"),
            buf: RefCell::new(Vec::new()),
        };
        // The workloads must be what their names say.
        assert!(
            w.all.find(&w.clean).is_empty(),
            "clean rows must hold no findings"
        );
        let rows = w.dirty.iter().filter(|&&b| b == b'\n').count();
        let pans = w.all.find(&w.dirty).len();
        assert!(
            pans >= rows,
            "one PAN per row: {pans} findings, {rows} rows"
        );
        w
    }

    fn run(&self, name: &str) -> usize {
        match name {
            "pan_candidates" => self.pan_only.find(black_box(&self.clean)).len(),
            "default_set_no_pan" => self.all.mask_bytes(black_box(&self.clean)).len(),
            "default_set_one_pan_per_row" => {
                let mut buf = self.buf.borrow_mut();
                assert!(self.all.mask_into(black_box(&self.dirty), &mut buf));
                buf.len()
            }
            "default_set_one_pan_per_row_mask_bytes" => {
                self.all.mask_bytes(black_box(&self.dirty)).len()
            }
            _ => panic!("unknown workload {name}"),
        }
    }
}

const WORKLOADS: [&str; 4] = [
    "pan_candidates",
    "default_set_no_pan",
    "default_set_one_pan_per_row",
    "default_set_one_pan_per_row_mask_bytes",
];

fn main() {
    let work = Work::new();
    if let Ok(name) = std::env::var("MASK_ICOUNT") {
        let iters: usize =
            std::env::var("MASK_ICOUNT_ITERS").map_or(10, |v| v.parse().expect("iters"));
        for _ in 0..iters {
            black_box(work.run(&name));
        }
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    let mut g = c.benchmark_group("mask");
    g.throughput(Throughput::Bytes(1 << 20));
    for name in WORKLOADS {
        g.bench_function(name, |b| b.iter(|| black_box(work.run(name))));
    }
    g.finish();
    c.final_summary();
}
