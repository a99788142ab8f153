//! Records the history as it happens: every invoke and completion goes down a
//! channel to one writer task that appends JSONL (docs/history-format.md) and keeps the
//! live counters and latency histograms for the progress line and `results.json`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use checker::record::{Record, RecordKind, RecordProcess};
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;
use workloads::{Completion, Invocation};

/// Counters the progress line reads while the test runs.
#[derive(Default, Debug)]
pub struct Live {
    /// Completions `ok`.
    pub ok: AtomicU64,
    /// Completions `fail`.
    pub fail: AtomicU64,
    /// Completions `info`.
    pub info: AtomicU64,
}

enum Line {
    Invoke {
        process: u64,
        op: Invocation,
        at: Instant,
    },
    Complete {
        process: u64,
        op: Invocation,
        done: Completion,
        node: Option<String>,
        invoked: Instant,
        at: Instant,
    },
    Nemesis {
        f: String,
        value: Value,
        at: Instant,
    },
}

/// Latency quantiles of one operation, in milliseconds.
#[derive(Debug, Serialize)]
pub struct Quantiles {
    /// Completions counted.
    pub count: u64,
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Slowest.
    pub max: f64,
}

/// Completions in one second of the test, by outcome.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Second {
    /// Seconds since the start.
    pub second: u64,
    /// `ok` completions.
    pub ok: u64,
    /// `fail` completions.
    pub fail: u64,
    /// Of those, refusals that were the system's answer ([`workloads::is_answer`]).
    pub refused: u64,
    /// `info` completions.
    pub info: u64,
}

/// Counts and latencies of the whole run (`stats` and `perf` in results.json).
#[derive(Debug, Serialize)]
pub struct Summary {
    /// ok/fail/info per operation name.
    pub stats: BTreeMap<String, BTreeMap<&'static str, u64>>,
    /// Latency quantiles (ms) per operation name, over `ok` completions.
    pub latency_ms: BTreeMap<String, Quantiles>,
    /// Completions per second.
    pub throughput: Vec<Second>,
    /// Fraction of completions the system answered: `ok`, or a refusal that
    /// is an answer (a cas mismatch is the system working, not unavailable).
    pub availability: f64,
    /// Mean `ok` completions per second.
    pub ok_per_second: f64,
    /// Nemesis events recorded.
    pub nemesis_events: u64,
}

/// The sending side, cheap to clone into every worker.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::UnboundedSender<Line>,
    /// Live counters.
    pub live: Arc<Live>,
}

impl Recorder {
    /// Starts the writer task on `path`; `start` is time zero of the history.
    pub fn start(
        path: &Path,
        start: Instant,
    ) -> std::io::Result<(Recorder, tokio::task::JoinHandle<std::io::Result<Summary>>)> {
        let file = std::fs::File::create(path)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let live = Arc::new(Live::default());
        let task = tokio::spawn(write_all(file, rx, start, live.clone()));
        Ok((Recorder { tx, live }, task))
    }

    /// Records an invocation now; returns its instant for the completion.
    pub fn invoke(&self, process: u64, op: &Invocation) -> Instant {
        let at = Instant::now();
        let _ = self.tx.send(Line::Invoke {
            process,
            op: op.clone(),
            at,
        });
        at
    }

    /// Records a completion now.
    pub fn complete(
        &self,
        process: u64,
        op: &Invocation,
        done: &Completion,
        node: Option<String>,
        invoked: Instant,
    ) {
        let at = Instant::now();
        let counter = match done {
            Completion::Ok(_) => &self.live.ok,
            Completion::Fail(_) => &self.live.fail,
            Completion::Info(_) => &self.live.info,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let _ = self.tx.send(Line::Complete {
            process,
            op: op.clone(),
            done: done.clone(),
            node,
            invoked,
            at,
        });
    }

    /// Records a nemesis action.
    pub fn nemesis(&self, f: &str, value: Value) {
        let _ = self.tx.send(Line::Nemesis {
            f: f.to_string(),
            value,
            at: Instant::now(),
        });
    }
}

fn ns(at: Instant, start: Instant) -> u64 {
    at.saturating_duration_since(start).as_nanos() as u64
}

async fn write_all(
    file: std::fs::File,
    mut rx: mpsc::UnboundedReceiver<Line>,
    start: Instant,
    _live: Arc<Live>,
) -> std::io::Result<Summary> {
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    let mut stats: BTreeMap<String, BTreeMap<&'static str, u64>> = BTreeMap::new();
    let mut hist: BTreeMap<String, Histogram<u64>> = BTreeMap::new();
    let mut seconds: Vec<Second> = Vec::new();
    let mut nemesis_events = 0;
    let mut last_flush = Instant::now();
    loop {
        let line = match tokio::time::timeout(Duration::from_millis(100), rx.recv()).await {
            Ok(Some(line)) => line,
            Ok(None) => break,
            Err(_) => {
                out.flush()?;
                last_flush = Instant::now();
                continue;
            }
        };
        let record = match line {
            Line::Invoke { process, op, at } => Record {
                kind: RecordKind::Invoke,
                process: RecordProcess::Client(process as i64),
                f: op.f,
                key: Some(op.key.map_or(Value::Null, Value::String)),
                value: op.value,
                time: Some(ns(at, start) as i64),
                node: None,
                error: None,
            },
            Line::Complete {
                process,
                op,
                done,
                node,
                invoked,
                at,
            } => {
                let (record_kind, kind, value, error) = match &done {
                    Completion::Ok(v) => (RecordKind::Ok, "ok", v.clone(), None),
                    Completion::Fail(e) => {
                        (RecordKind::Fail, "fail", op.value.clone(), Some(e.clone()))
                    }
                    Completion::Info(e) => {
                        (RecordKind::Info, "info", op.value.clone(), Some(e.clone()))
                    }
                };
                *stats
                    .entry(op.f.clone())
                    .or_default()
                    .entry(kind)
                    .or_insert(0) += 1;
                let second = at.saturating_duration_since(start).as_secs() as usize;
                if seconds.len() <= second {
                    seconds.resize_with(second + 1, Second::default);
                }
                let s = &mut seconds[second];
                match &done {
                    Completion::Ok(_) => s.ok += 1,
                    Completion::Fail(e) => {
                        s.fail += 1;
                        s.refused += u64::from(workloads::is_answer(e));
                    }
                    Completion::Info(_) => s.info += 1,
                }
                if kind == "ok" {
                    let us = at.saturating_duration_since(invoked).as_micros() as u64;
                    let h = hist.entry(op.f.clone()).or_insert_with(|| {
                        Histogram::new_with_bounds(1, 3_600_000_000, 3)
                            .expect("valid histogram bounds")
                    });
                    let _ = h.record(us.max(1));
                }
                Record {
                    kind: record_kind,
                    process: RecordProcess::Client(process as i64),
                    f: op.f,
                    key: Some(op.key.map_or(Value::Null, Value::String)),
                    value,
                    time: Some(ns(at, start) as i64),
                    node,
                    error,
                }
            }
            Line::Nemesis { f, value, at } => {
                nemesis_events += 1;
                Record::nemesis(&f, value, ns(at, start) as i64)
            }
        };
        serde_json::to_writer(&mut out, &record)?;
        out.write_all(b"\n")?;
        if last_flush.elapsed() > Duration::from_millis(100) {
            out.flush()?;
            last_flush = Instant::now();
        }
    }
    out.flush()?;
    for (i, s) in seconds.iter_mut().enumerate() {
        s.second = i as u64;
    }
    let total: u64 = seconds.iter().map(|s| s.ok + s.fail + s.info).sum();
    let ok: u64 = seconds.iter().map(|s| s.ok).sum();
    let answered: u64 = ok + seconds.iter().map(|s| s.refused).sum::<u64>();
    let latency_ms = hist
        .into_iter()
        .map(|(f, h)| {
            let q = |p: f64| h.value_at_quantile(p) as f64 / 1e3;
            (
                f,
                Quantiles {
                    count: h.len(),
                    p50: q(0.5),
                    p95: q(0.95),
                    p99: q(0.99),
                    max: h.max() as f64 / 1e3,
                },
            )
        })
        .collect();
    Ok(Summary {
        stats,
        latency_ms,
        availability: if total == 0 {
            0.0
        } else {
            answered as f64 / total as f64
        },
        ok_per_second: if seconds.is_empty() {
            0.0
        } else {
            ok as f64 / seconds.len() as f64
        },
        throughput: seconds,
        nemesis_events,
    })
}
