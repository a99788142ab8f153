//! Rendering a report for a 1,000,000-op history (generated, linearizable).
//!
//! Run: `cargo bench -p reports --bench render`.

use std::io::Write;

use criterion::{criterion_group, criterion_main, Criterion};

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let text = checker::generate::cas_register_history(checker::generate::Shape {
        ops: 1_000_000,
        keys: 1000,
        processes: 10,
        seed: 1,
    });
    let mut f = std::fs::File::create(dir.path().join("history.jsonl")).unwrap();
    f.write_all(text.as_bytes()).unwrap();
    // A nemesis window so fault shading is drawn too.
    writeln!(f, "{{\"type\":\"info\",\"process\":\"nemesis\",\"f\":\"start-partition\",\"value\":null,\"time\":1000000}}").unwrap();
    writeln!(f, "{{\"type\":\"info\",\"process\":\"nemesis\",\"f\":\"stop-partition\",\"value\":null,\"time\":50000000}}").unwrap();
    drop(f);
    let mut g = c.benchmark_group("report_1m_ops");
    g.sample_size(10);
    g.bench_function("render", |b| {
        b.iter(|| reports::render_run(dir.path()).unwrap())
    });
    g.finish();
    let size = std::fs::metadata(dir.path().join("report.html"))
        .unwrap()
        .len();
    println!("report.html for 1M ops: {size} bytes");
}

criterion_group!(benches, bench);
criterion_main!(benches);
