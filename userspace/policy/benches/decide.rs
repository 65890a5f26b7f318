//! Decision cost on an analysis-cache hit and miss, for a few realistic
//! statements, under the embedded pci-dss policy.
//!
//! Run: `cargo bench -p dbwarden-policy --bench decide`. Targets: ≤ 2 µs p50
//! on a hit, ≤ 20 µs p50 on a miss (see the `median` in criterion's output
//! or `target/criterion/*/new/estimates.json`).

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{criterion_group, criterion_main, Criterion};
use dbwarden_policy::{Dialect, Engine, Identity, Policy, Protocol, Target};

const STATEMENTS: &[(&str, Dialect, &str)] = &[
    ("point_select", Dialect::Postgres, "SELECT id, name, email FROM customers WHERE id = 42"),
    (
        "join_limit",
        Dialect::Postgres,
        "SELECT o.id, o.total, c.name FROM orders o JOIN customers c ON c.id = o.customer_id \
         WHERE o.created_at > '2024-01-01' AND o.status IN ('paid', 'sent') ORDER BY o.id DESC LIMIT 50",
    ),
    ("insert", Dialect::Postgres, "INSERT INTO orders (id, customer_id, total, note) VALUES (1, 2, 3.5, 'gift')"),
    ("cardholder_select", Dialect::Postgres, "SELECT pan, expiry FROM billing.cards WHERE customer_id = 7"),
    ("mysql_update", Dialect::MySql, "UPDATE `orders` SET `status` = 'sent' WHERE `id` = 12345"),
];

fn identity() -> Identity {
    Identity {
        pid: 4242,
        uid: 1000,
        gid: 1000,
        user: Some("agent".into()),
        cgroup: "/agents.slice/agent-1.scope".into(),
        exe: "/usr/bin/python3.12".into(),
        comm: "python3".into(),
        labels: [("ci_job".to_owned(), "nightly-1".to_owned())]
            .into_iter()
            .collect(),
        privileged: false,
    }
}

fn target() -> Target {
    Target {
        addr: Some("127.0.0.1:5432".into()),
        protocol: Protocol::Postgres,
        database: Some("shop".into()),
        user: Some("app".into()),
    }
}

fn bench(c: &mut Criterion) {
    let engine = Engine::new(Policy::embedded_default());
    let (id, t) = (identity(), target());

    let mut hit = c.benchmark_group("decide_hit");
    for (name, dialect, sql) in STATEMENTS {
        // Warm the cache; every iteration is then a hit.
        let _ = engine.decide(sql, *dialect, &id, &t);
        hit.bench_function(*name, |b| {
            b.iter(|| engine.decide(black_box(sql), *dialect, &id, &t));
        });
    }
    hit.finish();

    let mut miss = c.benchmark_group("decide_miss");
    let counter = AtomicU64::new(0);
    for (name, dialect, sql) in STATEMENTS {
        miss.bench_function(*name, |b| {
            b.iter_batched(
                || {
                    // A fresh alias makes a new cache key, so this is a miss.
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    format!("{sql} /* q{n} */")
                },
                |s| engine.decide(black_box(&s), *dialect, &id, &t),
                criterion::BatchSize::SmallInput,
            );
        });
    }
    miss.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
