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
/// from its own disk after a crash or a power loss lost what it promised to
/// keep. A node whose files the `corrupt` fault damaged may refuse to start
/// (fail-stop): that is reported, not judged. Only said when a restart failed
/// or the run lost unsynced writes.
fn recovery(history: &checker::History) -> Option<CheckerResult> {
    let mut damaged = std::collections::BTreeSet::new();
    let (mut failed, mut refused) = (Vec::new(), Vec::new());
    let mut power_lost = 0;
    for e in &history.nemesis {
        let value = serde_json::to_value(&e.value).unwrap_or(Value::Null);
        match &*e.f {
            "start-corrupt" => {
                if let Some(n) = value["node"].as_str() {
                    damaged.insert(n.to_string());
                }
            }
            "start-lose-unsynced" => power_lost += 1,
            "restart-failed" => {
                let item = json!({"line": e.line, "at_s": e.time.unwrap_or(0) as f64 / 1e9, "failure": value});
                if value["node"].as_str().is_some_and(|n| damaged.contains(n)) {
                    refused.push(item);
                } else {
                    failed.push(item);
                }
            }
            _ => {}
        }
    }
    if failed.is_empty() && refused.is_empty() && power_lost == 0 {
        return None;
    }
    let summary = if let Some(first) = failed.first() {
        format!(
            "{} restarts failed (first: {})",
            failed.len(),
            first["failure"]
        )
    } else if refused.is_empty() {
        format!("every node came back after {power_lost} power losses")
    } else {
        format!(
            "{} restarts refused damaged data (fail-stop, not judged); every other node came back",
            refused.len()
        )
    };
    Some(CheckerResult::new(
        if failed.is_empty() {
            Validity::Valid
        } else {
            Validity::Invalid
        },
        summary,
        json!({"failed": failed, "refused_damaged": refused, "power_losses": power_lost}),
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
    let ops = h.ok + h.fail + h.info + h.unfinished;
    if let Some(required) = &cfg.availability {
        let need = super::cluster::required_availability(required).map_err(anyhow::Error::msg)?;
        let got = if ops == 0 {
            0.0
        } else {
            h.ok as f64 / ops as f64
        };
        verdict.add(
            "availability".into(),
            CheckerResult::new(
                if got >= need {
                    Validity::Valid
                } else {
                    Validity::Invalid
                },
                format!(
                    "{:.2}% of {ops} operations succeeded; {:.2}% required",
                    got * 100.0,
                    need * 100.0
                ),
                json!({"ok": h.ok, "ops": ops, "availability": got, "required": need}),
            ),
        );
    }
    if let Some(router) = net.router() {
        routed(&mut verdict, &router, ops, dir)?;
    }
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

/// What the Maelstrom router saw: the `net` figures, the nodes' protocol
/// problems, and the message sample for the Lamport diagram (`messages.jsonl`).
fn routed(
    verdict: &mut Verdict,
    router: &crate::targets::maelstrom::Router,
    ops: u64,
    dir: &Path,
) -> anyhow::Result<()> {
    let stats = router.stats(ops);
    verdict.add(
        "net".into(),
        CheckerResult::new(
            Validity::Valid,
            format!(
                "{} messages, {} per op (between servers {} per op, with clients {})",
                stats["all"]["send_count"],
                stats["all"]["msgs_per_op"],
                stats["servers"]["msgs_per_op"],
                stats["clients"]["msgs_per_op"]
            ),
            stats,
        ),
    );
    let (count, problems) = router.problems();
    let summary = match problems.first() {
        None => "every node spoke the protocol".to_string(),
        Some(p) => format!(
            "{count} protocol problems (first: {} {} at {:.2} s: {})",
            p.node, p.what, p.at_s, p.line
        ),
    };
    verdict.add(
        "protocol".into(),
        CheckerResult::new(
            if count == 0 {
                Validity::Valid
            } else {
                Validity::Invalid
            },
            summary,
            json!({"count": count, "problems": problems}),
        ),
    );
    let mut lines = String::new();
    for m in router.journaled() {
        lines.push_str(&serde_json::to_string(&m)?);
        lines.push('\n');
    }
    std::fs::write(dir.join("messages.jsonl"), lines)?;
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn history(lines: &[&str]) -> checker::History {
        checker::format::jsonl::read(lines.join("\n").as_bytes()).unwrap()
    }

    #[test]
    fn a_failed_restart_is_invalid_unless_the_node_s_data_was_damaged_on_purpose() {
        let nemesis = |f: &str, value: &str, t: u64| {
            format!(r#"{{"type":"info","process":"nemesis","f":"{f}","value":{value},"time":{t}}}"#)
        };
        let failed = nemesis("restart-failed", r#"{"node":"n2","error":"exited"}"#, 3);
        let lost = nemesis("start-lose-unsynced", r#"{"n2":{}}"#, 1);
        let r = recovery(&history(&[&lost, &failed])).unwrap();
        assert_eq!(r.valid, Validity::Invalid, "{}", r.summary);
        let damaged = nemesis("start-corrupt", r#"{"node":"n2","kind":"log-middle"}"#, 1);
        let r = recovery(&history(&[&damaged, &failed])).unwrap();
        assert_eq!(r.valid, Validity::Valid, "{}", r.summary);
        assert!(r.summary.contains("refused damaged data"));
        // Another node's damage excuses nothing.
        let other = nemesis("start-corrupt", r#"{"node":"n3","kind":"log-middle"}"#, 1);
        let r = recovery(&history(&[&other, &failed])).unwrap();
        assert_eq!(r.valid, Validity::Invalid);
        // Nothing to say without failures or power losses.
        assert!(recovery(&history(&[&other])).is_none());
        let r = recovery(&history(&[&lost])).unwrap();
        assert_eq!(r.valid, Validity::Valid);
    }
}
