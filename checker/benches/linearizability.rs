//! Checker benchmarks: the Porcupine anchors and a generated 1M-op history.
//!
//! Run: `cargo bench -p checker` (figures in the issue notes).

use std::path::{Path, PathBuf};

use checker::generate::{cas_register_history, Shape};
use checker::{check_named, CheckOptions, Format, History};
use criterion::{criterion_group, criterion_main, Criterion};

fn anchors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/porcupine")
}

fn etcd_logs() -> Vec<History> {
    (0..=102)
        .filter(|&i| i != 95)
        .map(|i| {
            let p = anchors().join(format!("jepsen/etcd_{i:03}.log"));
            checker::format::read_file(&p, Format::JepsenLog).unwrap()
        })
        .collect()
}

fn bench_etcd(c: &mut Criterion) {
    let logs = etcd_logs();
    let opts = CheckOptions::default();
    c.bench_function("etcd_all_102_check", |b| {
        b.iter(|| {
            for h in &logs {
                check_named("cas-register", h, &opts).unwrap();
            }
        })
    });
    let e002 = &logs[2];
    c.bench_function("etcd_002_check", |b| {
        b.iter(|| check_named("cas-register", e002, &opts).unwrap())
    });
}

fn bench_kv(c: &mut Criterion) {
    let read = |name: &str| {
        checker::format::read_file(&anchors().join(format!("kv/{name}.txt")), Format::JepsenEdn)
            .unwrap()
    };
    let ok = read("c50-ok");
    let bad = read("c50-bad");
    let c10 = read("c10-ok");
    let split = CheckOptions::default();
    let whole = CheckOptions {
        partition: false,
        ..CheckOptions::default()
    };
    c.bench_function("kv_c50_ok_partitioned", |b| {
        b.iter(|| check_named("append-kv", &ok, &split).unwrap())
    });
    c.bench_function("kv_c50_bad_partitioned", |b| {
        b.iter(|| check_named("append-kv", &bad, &split).unwrap())
    });
    c.bench_function("kv_c10_ok_unpartitioned", |b| {
        b.iter(|| check_named("append-kv", &c10, &whole).unwrap())
    });
}

fn bench_million(c: &mut Criterion) {
    let text = cas_register_history(Shape {
        ops: 1_000_000,
        keys: 1000,
        processes: 10,
        seed: 1,
    });
    let mut g = c.benchmark_group("generated_1m_ops_1000_keys_10_procs");
    g.sample_size(10);
    g.bench_function("parse", |b| {
        b.iter(|| checker::format::jsonl::read(text.as_bytes()).unwrap())
    });
    let h = checker::format::jsonl::read(text.as_bytes()).unwrap();
    g.bench_function("check", |b| {
        b.iter(|| check_named("kv", &h, &CheckOptions::default()).unwrap())
    });
    g.bench_function("parse_and_check", |b| {
        b.iter(|| {
            let h = checker::format::jsonl::read(text.as_bytes()).unwrap();
            check_named("kv", &h, &CheckOptions::default()).unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench_etcd, bench_kv, bench_million);
criterion_main!(benches);
