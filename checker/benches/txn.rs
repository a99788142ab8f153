//! Transactional checker benchmarks: generated list-append histories of 100k and
//! 1M transactions (1-4 micro-ops) with 10 and 100 processes, parse and check
//! measured separately.
//!
//! Run: `cargo bench -p checker --bench txn` (figures in the issue notes).

use std::time::Duration;

use checker::txn::generate::{list_append_history, Shape};
use checker::txn::{self, Kind, TxnOptions};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn bench(c: &mut Criterion) {
    for txns in [100_000usize, 1_000_000] {
        for processes in [10usize, 100] {
            let text = list_append_history(&Shape {
                txns,
                processes,
                seed: 1,
                ..Shape::default()
            });
            let mut group = c.benchmark_group(format!("list_append_{}k_p{processes}", txns / 1000));
            group.throughput(Throughput::Elements(txns as u64));
            if txns >= 1_000_000 {
                group
                    .sample_size(10)
                    .measurement_time(Duration::from_secs(40));
            } else {
                group
                    .sample_size(10)
                    .measurement_time(Duration::from_secs(10));
            }
            group.bench_function("parse", |b| {
                b.iter(|| txn::jsonl::read_fast(text.as_bytes(), Kind::ListAppend).unwrap())
            });
            let parsed = txn::jsonl::read_fast(text.as_bytes(), Kind::ListAppend).unwrap();
            let options = TxnOptions::default();
            group.bench_function("check", |b| {
                b.iter(|| txn::check(&parsed, &options).unwrap())
            });
            group.finish();
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
