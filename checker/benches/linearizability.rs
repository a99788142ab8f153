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

/// A history from `../shared/tools/genkv.py` when it is there (the one the
/// Porcupine figures were measured on), else our own generator's equivalent.
fn genkv(ops: usize, keys: usize, procs: usize, seed: u64) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let script = root.join("shared/tools/genkv.py");
    let out = std::env::temp_dir().join(format!("genkv-{ops}-{keys}-{procs}-{seed}.jsonl"));
    if script.is_file() && !out.is_file() {
        let _ = std::process::Command::new("python3")
            .arg(&script)
            .arg(&out)
            .args([ops, keys, procs, seed as usize].map(|n| n.to_string()))
            .status();
    }
    std::fs::read_to_string(&out).unwrap_or_else(|_| {
        cas_register_history(Shape {
            ops,
            keys,
            processes: procs,
            seed,
        })
    })
}

/// The same history with the read at `at` (a fraction of all reads) reporting a
/// value nobody wrote: certainly invalid, and refuting it means exhausting every
/// order of the ops before it.
fn corrupted(text: &str, at: f64) -> History {
    let reads = text.matches("\"f\":\"read\"").count() / 2;
    let nth = (reads as f64 * at) as usize;
    let bad =
        checker::generate::with_read_result(text, nth, "999999").expect("the history has reads");
    let h = checker::format::jsonl::read(bad.as_bytes()).unwrap();
    let r = check_named("cas-register", &h, &CheckOptions::default()).unwrap();
    assert_eq!(r.valid, checker::Validity::Invalid);
    h
}

fn bench_genkv(c: &mut Criterion) {
    let mut g = c.benchmark_group("genkv");
    g.sample_size(10);
    let opts = CheckOptions::default();
    for (name, procs) in [("5000_1_20", 20), ("5000_1_30", 30)] {
        let text = genkv(5000, 1, procs, 4);
        let h = checker::format::jsonl::read(text.as_bytes()).unwrap();
        g.bench_function(format!("{name}_check"), |b| {
            b.iter(|| check_named("cas-register", &h, &opts).unwrap())
        });
        // A read of a value nobody wrote, early and late: the reachability pass
        // refutes both before searching. Beside it, the search alone on the early
        // one (20 processes only: with 30 it does not finish in a minute).
        for at in [0.05, 0.75] {
            let bad = corrupted(&text, at);
            g.bench_function(
                format!("{name}_corrupted_at_{}pct_refute", at * 100.0),
                |b| b.iter(|| check_named("cas-register", &bad, &opts).unwrap()),
            );
            if procs == 20 && at < 0.5 {
                let search_only = CheckOptions {
                    reachability: false,
                    ..CheckOptions::default()
                };
                g.bench_function(format!("{name}_corrupted_at_5pct_search_only"), |b| {
                    b.iter(|| check_named("cas-register", &bad, &search_only).unwrap())
                });
            }
        }
    }
    let text = genkv(1_000_000, 1000, 10, 1);
    g.bench_function("1m_1000_10_parse_and_check", |b| {
        b.iter(|| {
            let h = checker::format::jsonl::read(text.as_bytes()).unwrap();
            check_named("cas-register", &h, &opts).unwrap()
        })
    });
    let bad = corrupted(&text, 0.75);
    g.bench_function("1m_1000_10_corrupted_refute", |b| {
        b.iter(|| check_named("cas-register", &bad, &opts).unwrap())
    });
    // The lost-writes pass beside the search, on the same parsed history.
    let h = checker::format::jsonl::read(text.as_bytes()).unwrap();
    g.bench_function("1m_1000_10_check_only", |b| {
        b.iter(|| check_named("cas-register", &h, &opts).unwrap())
    });
    g.bench_function("1m_1000_10_lost_writes", |b| {
        b.iter(|| {
            let r = checker::lost_writes::check(&h);
            assert_eq!(r.valid, checker::Validity::Valid);
            r
        })
    });
    g.finish();
}

/// The configuration-set sweep beside the depth-first search on one key with 20
/// processes: valid as generated, and with a read late in it naming a value
/// nobody wrote (the reachability pass off, so an engine must refute it).
fn bench_sweep(c: &mut Criterion) {
    use checker::Engine;
    let mut g = c.benchmark_group("sweep_5000_1_20");
    g.sample_size(10);
    let text = genkv(5000, 1, 20, 4);
    let valid = checker::format::jsonl::read(text.as_bytes()).unwrap();
    let bad = corrupted(&text, 0.75);
    for (name, engine) in [
        ("search", Engine::Search),
        ("sweep", Engine::Sweep),
        ("both", Engine::Both),
    ] {
        let opts = CheckOptions {
            engine,
            reachability: false,
            ..CheckOptions::default()
        };
        g.bench_function(format!("valid_{name}"), |b| {
            b.iter(|| check_named("cas-register", &valid, &opts).unwrap())
        });
        // The search alone does not finish this one in a minute.
        if engine != Engine::Search {
            g.bench_function(format!("corrupted_at_75pct_{name}"), |b| {
                b.iter(|| check_named("cas-register", &bad, &opts).unwrap())
            });
        }
    }
    g.finish();
}

criterion_group!(
    benches,
    bench_etcd,
    bench_kv,
    bench_million,
    bench_genkv,
    bench_sweep
);
criterion_main!(benches);
