//! The verdict: the workload's checkers over the history, the final reads,
//! the recorder's figures and the target's own checkers (run after teardown),
//! merged into one result object, built once and written once as `results.json`.

use std::path::Path;
use std::time::Duration;

use checker::{CheckOptions, CheckerResult, Validity};
use serde_json::{json, Map, Value};

use super::config::TestConfig;
use super::drive::Drove;
use crate::net::Net;

/// The result object of a run before its last checkers join it.
pub struct Verdict {
    /// All checkers so far, merged.
    pub valid: Validity,
    /// Checker name to its result (each with a `valid` entry).
    pub checkers: Map<String, Value>,
    /// The rest of the object (faults, nemesis events, drops, runtime, seed).
    pub facts: Map<String, Value>,
}

/// Whether every node the nemesis restarted came back: a node that cannot start
/// from its own disk (after a power loss, say) lost what it promised to keep.
/// Only said when a restart failed or the run lost unsynced writes.
fn recovery(history: &checker::History) -> Option<CheckerResult> {
    let failed: Vec<&checker::history::NemesisEvent> = history
        .nemesis
        .iter()
        .filter(|e| &*e.f == "restart-failed")
        .collect();
    let power_lost = history
        .nemesis
        .iter()
        .filter(|e| &*e.f == "start-lose-unsynced")
        .count();
    if failed.is_empty() && power_lost == 0 {
        return None;
    }
    let list: Vec<Value> = failed
        .iter()
        .map(|e| json!({"line": e.line, "at_s": e.time.unwrap_or(0) as f64 / 1e9, "failure": serde_json::to_value(&e.value).unwrap_or(Value::Null)}))
        .collect();
    Some(CheckerResult::new(
        if failed.is_empty() {
            Validity::Valid
        } else {
            Validity::Invalid
        },
        if failed.is_empty() {
            format!("every node came back after {power_lost} power losses")
        } else {
            format!(
                "{} restarts failed (first: {})",
                failed.len(),
                list[0]["failure"]
            )
        },
        json!({"failed": list, "power_losses": power_lost}),
    ))
}

/// Checks the run's history with `workload`'s checkers.
pub fn check(
    cfg: &TestConfig,
    dir: &Path,
    workload: &dyn workloads::Workload,
    drove: &Drove,
    net: &Net,
) -> anyhow::Result<Verdict> {
    let history = checker::format::read_file(&dir.join("history.jsonl"), checker::Format::Jsonl)?;
    let options = CheckOptions {
        time_limit: Some(Duration::from_secs_f64(cfg.check_time_limit)),
        ..CheckOptions::default()
    };
    let checked = workload
        .check(&history, &options)
        .map_err(anyhow::Error::msg)?;
    let mut verdict = Verdict {
        valid: checked.valid,
        checkers: checked.checkers,
        facts: Map::new(),
    };
    // After healing, every key must be readable: a cluster that never recovers is a failure.
    verdict.add(
        "final-reads".into(),
        CheckerResult::new(
            if drove.unanswered == 0 {
                Validity::Valid
            } else {
                Validity::Invalid
            },
            format!(
                "{} keys read after healing, {} unanswered",
                drove.finals, drove.unanswered
            ),
            json!({"keys": drove.finals, "unanswered": drove.unanswered}),
        ),
    );
    if let Some(result) = recovery(&history) {
        verdict.add("recovery".into(), result);
    }
    let s = &drove.summary;
    let h = &history.stats;
    verdict.add(
        "stats".into(),
        CheckerResult::new(
            Validity::Valid,
            format!(
                "{} ops: {} ok, {} failed, {} indeterminate, {} unfinished",
                h.ok + h.fail + h.info + h.unfinished,
                h.ok,
                h.fail,
                h.info,
                h.unfinished
            ),
            json!({"by_f": s.stats, "history": history.stats}),
        ),
    );
    verdict.add(
        "perf".into(),
        CheckerResult::new(
            Validity::Valid,
            format!(
                "{:.0} ok ops/s, availability {:.1}%",
                s.ok_per_second,
                s.availability * 100.0
            ),
            json!({
                "latency_ms": s.latency_ms,
                "throughput": s.throughput,
                "availability": s.availability,
                "ok_per_second": s.ok_per_second,
            }),
        ),
    );
    let mut facts = Map::new();
    facts.insert("faults".into(), json!(drove.faults));
    facts.insert("nemesis_events".into(), json!(s.nemesis_events));
    facts.insert("frames_dropped".into(), json!(net.dropped()));
    facts.insert("packets_dropped".into(), json!(net.packets_dropped()));
    facts.insert("runtime".into(), drove.runtime.clone());
    facts.insert("seed".into(), json!(cfg.seed));
    verdict.facts = facts;
    Ok(verdict)
}

impl Verdict {
    /// Adds one checker's result; its verdict joins the run's.
    pub fn add(&mut self, name: String, result: CheckerResult) {
        self.valid = self.valid.merge(result.valid);
        self.checkers.insert(name, result.to_value());
    }

    /// Writes `results.json` into the run folder.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        let mut object = Map::new();
        object.insert("valid".into(), json!(self.valid));
        object.insert("checkers".into(), Value::Object(self.checkers.clone()));
        object.extend(self.facts.clone());
        std::fs::write(
            dir.join("results.json"),
            serde_json::to_vec_pretty(&Value::Object(object))?,
        )?;
        Ok(())
    }
}
