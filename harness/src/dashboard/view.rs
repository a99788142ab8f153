//! What the dashboard shows, built from the nodes' answers and the run's
//! history: who leads and since when, the faults in force, the ops of the
//! last minute.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

/// Leader changes and fault events kept for the page.
const KEEP_EVENTS: usize = 30;
/// Seconds of ops kept.
const WINDOW_S: i64 = 60;

/// One node's answers to one poll (`None`: it did not answer).
pub struct NodePoll {
    /// Node id.
    pub id: String,
    /// Its client URL.
    pub url: String,
    /// `/cluster/state`.
    pub state: Option<Value>,
    /// `/cache`.
    pub cache: Option<Value>,
    /// `/mesh/state`: the node's sidecar, its breakers and health views.
    pub mesh: Option<Value>,
    /// `/topics`: the broker's topics and consumer groups (a read through the
    /// leader, so any node that answers gives the same).
    pub broker: Option<Value>,
}

/// Every breaker of a sidecar's `/mesh/state`: service, instance, state, and
/// whether its health checks find the instance up.
fn breakers(mesh: Option<&Value>) -> Vec<Value> {
    let Some(services) = mesh.and_then(|m| m["services"].as_object()) else {
        return Vec::new();
    };
    services
        .iter()
        .flat_map(|(name, s)| {
            s["instances"].as_array().into_iter().flatten().map(move |i| {
                json!({"service": name, "instance": i["instance"], "breaker": i["breaker"], "up": i["up"]})
            })
        })
        .collect()
}

/// Ops completed in one second of the run.
#[derive(Default, Clone)]
struct Second {
    ok: u64,
    fail: u64,
    info: u64,
    latencies_ms: Vec<f64>,
}

/// What the dashboard remembers between polls.
pub struct Tracker {
    history: Option<PathBuf>,
    offset: u64,
    partial: String,
    invoked: HashMap<String, i64>,
    seconds: BTreeMap<i64, Second>,
    last_time_ns: i64,
    in_force: BTreeMap<String, (Value, u64)>,
    faults: VecDeque<Value>,
    leader: Option<(String, u64)>,
    changes: VecDeque<Value>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn push_capped(list: &mut VecDeque<Value>, v: Value) {
    if list.len() == KEEP_EVENTS {
        list.pop_front();
    }
    list.push_back(v);
}

/// The `q` quantile of sorted `xs`.
fn quantile(xs: &[f64], q: f64) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    let i = ((xs.len() - 1) as f64 * q).round() as usize;
    Some(xs[i.min(xs.len() - 1)])
}

impl Tracker {
    /// A tracker following `history` (a run's `history.jsonl`), if given.
    pub fn new(history: Option<PathBuf>) -> Self {
        Tracker {
            history,
            offset: 0,
            partial: String::new(),
            invoked: HashMap::new(),
            seconds: BTreeMap::new(),
            last_time_ns: 0,
            in_force: BTreeMap::new(),
            faults: VecDeque::new(),
            leader: None,
            changes: VecDeque::new(),
        }
    }

    /// Reads what the history gained since the last call.
    pub fn follow_history(&mut self) {
        let Some(path) = &self.history else { return };
        let Ok(mut file) = std::fs::File::open(path) else {
            return;
        };
        if file.seek(SeekFrom::Start(self.offset)).is_err() {
            return;
        }
        let mut more = String::new();
        let Ok(n) = file.read_to_string(&mut more) else {
            return;
        };
        self.offset += n as u64;
        self.partial.push_str(&more);
        let Some(end) = self.partial.rfind('\n') else {
            return;
        };
        let complete: String = self.partial.drain(..=end).collect();
        for line in complete.lines() {
            if let Ok(e) = serde_json::from_str::<Value>(line) {
                self.event(&e);
            }
        }
    }

    /// Takes one history event into account.
    pub fn event(&mut self, e: &Value) {
        let time = e["time"].as_i64().unwrap_or(self.last_time_ns);
        self.last_time_ns = self.last_time_ns.max(time);
        let f = e["f"].as_str().unwrap_or_default();
        if e["process"] == "nemesis" {
            let at = now_ms();
            if let Some(fault) = f.strip_prefix("start-") {
                self.in_force
                    .insert(fault.to_string(), (e["value"].clone(), at));
            } else if let Some(fault) = f.strip_prefix("stop-") {
                self.in_force.remove(fault);
            } else if f == "heal-all" {
                self.in_force.clear();
            }
            push_capped(
                &mut self.faults,
                json!({"at_ms": at, "f": f, "value": e["value"]}),
            );
            return;
        }
        let process = e["process"].to_string();
        match e["type"].as_str() {
            Some("invoke") => {
                self.invoked.insert(process, time);
            }
            Some(kind @ ("ok" | "fail" | "info")) => {
                let second = self.seconds.entry(time / 1_000_000_000).or_default();
                match kind {
                    "ok" => second.ok += 1,
                    "fail" => second.fail += 1,
                    _ => second.info += 1,
                }
                if let Some(start) = self.invoked.remove(&process) {
                    if kind == "ok" {
                        second.latencies_ms.push((time - start).max(0) as f64 / 1e6);
                    }
                }
                let oldest = time / 1_000_000_000 - WINDOW_S;
                self.seconds = self.seconds.split_off(&oldest);
            }
            _ => {}
        }
    }

    /// The view of this poll's answers, noting a leader change.
    pub fn view(&mut self, polls: Vec<NodePoll>) -> Value {
        // The leader of the highest term any answering node claims to lead.
        let leader = polls
            .iter()
            .filter_map(|p| {
                let c = &p.state.as_ref()?["consensus"];
                (c["role"] == "leader").then(|| (p.id.clone(), c["term"].as_u64().unwrap_or(0)))
            })
            .max_by_key(|(_, term)| *term);
        if leader.as_ref().map(|l| &l.0) != self.leader.as_ref().map(|l| &l.0) {
            push_capped(
                &mut self.changes,
                json!({"at_ms": now_ms(), "leader": leader.as_ref().map(|l| &l.0),
                       "term": leader.as_ref().map(|l| l.1)}),
            );
            self.leader = leader.clone();
        }
        let nodes: Vec<Value> = polls
            .iter()
            .map(|p| {
                let c = p.state.as_ref().map(|s| s["consensus"].clone());
                let stats = p.cache.as_ref().map(|c| c["stats"].clone());
                let (hits, misses) = stats
                    .as_ref()
                    .map(|s| (s["hits"].as_u64().unwrap_or(0), s["misses"].as_u64().unwrap_or(0)))
                    .unwrap_or((0, 0));
                json!({
                    "id": p.id, "url": p.url, "up": p.state.is_some(),
                    "role": c.as_ref().map(|c| c["role"].clone()),
                    "term": c.as_ref().map(|c| c["term"].clone()),
                    "leader": c.as_ref().map(|c| c["leader"].clone()),
                    "commit_index": c.as_ref().map(|c| c["commit_index"].clone()),
                    "applied_index": c.as_ref().map(|c| c["applied_index"].clone()),
                    "members": c.as_ref().map(|c| c["members"].clone()),
                    "mailbox": p.state.as_ref().map(|s| s["mailbox"].clone()),
                    "breakers": breakers(p.mesh.as_ref()),
                    "cache": p.cache.as_ref().map(|c| json!({
                        "entries": c["entries"], "hits": hits, "misses": misses,
                        "hit_ratio": if hits + misses > 0 { json!(hits as f64 / (hits + misses) as f64) } else { Value::Null },
                    })),
                })
            })
            .collect();
        let mut latencies: Vec<f64> = self
            .seconds
            .values()
            .flat_map(|s| s.latencies_ms.iter().copied())
            .collect();
        latencies.sort_by(f64::total_cmp);
        let per_second: Vec<Value> = self
            .seconds
            .iter()
            .map(|(t, s)| json!({"t": t, "ok": s.ok, "fail": s.fail, "info": s.info}))
            .collect();
        json!({
            "now_ms": now_ms(),
            "nodes": nodes,
            "broker": polls.iter().find_map(|p| p.broker.clone()),
            "leader": self.leader.as_ref().map(|l| &l.0),
            "term": self.leader.as_ref().map(|l| l.1),
            "leader_changes": self.changes,
            "faults": {
                "in_force": self.in_force.iter()
                    .map(|(f, (v, since))| json!({"fault": f, "value": v, "since_ms": since}))
                    .collect::<Vec<_>>(),
                "recent": self.faults,
            },
            "ops": {
                "following": self.history.is_some(),
                "per_second": per_second,
                "latency_ms": {"p50": quantile(&latencies, 0.5), "p99": quantile(&latencies, 0.99)},
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poll(id: &str, role: Option<(&str, u64)>) -> NodePoll {
        NodePoll {
            id: id.into(),
            url: format!("http://{id}"),
            state: role.map(|(r, t)| json!({"consensus": {"role": r, "term": t}, "mailbox": {}})),
            cache: Some(json!({"entries": 2, "stats": {"hits": 3, "misses": 1}})),
            mesh: None,
            broker: None,
        }
    }

    #[test]
    fn each_sidecar_s_breakers_are_shown() {
        let mut t = Tracker::new(None);
        let mut p = poll("n1", Some(("leader", 1)));
        p.mesh = Some(json!({"sidecar": "n1", "services": {"api": {"instances": [
            {"instance": "api1", "breaker": "closed", "up": true},
            {"instance": "api2", "breaker": "open", "up": false}]}}}));
        let v = t.view(vec![p, poll("n2", Some(("follower", 1)))]);
        assert_eq!(
            v["nodes"][0]["breakers"],
            json!([{"service": "api", "instance": "api1", "breaker": "closed", "up": true},
                   {"service": "api", "instance": "api2", "breaker": "open", "up": false}])
        );
        // A node that is no sidecar (or is down) shows none.
        assert_eq!(v["nodes"][1]["breakers"], json!([]));
    }

    #[test]
    fn queue_depths_come_from_the_first_node_that_answers() {
        let mut t = Tracker::new(None);
        let v = t.view(vec![poll("n1", None)]);
        assert_eq!(v["broker"], Value::Null, "nobody answered");
        let mut p = poll("n2", Some(("leader", 1)));
        let topics = json!({"topics": [{"topic": "t", "messages": 5, "groups": [
            {"group": "g", "depth": 2, "in_flight": 1, "redeliveries": 3, "dead_letters": 0}]}]});
        p.broker = Some(topics.clone());
        let v = t.view(vec![poll("n1", None), p]);
        assert_eq!(v["broker"], topics);
    }

    #[test]
    fn leader_changes_faults_and_ops_are_tracked() {
        let mut t = Tracker::new(None);
        let v = t.view(vec![
            poll("n1", Some(("leader", 1))),
            poll("n2", Some(("follower", 1))),
        ]);
        assert_eq!(v["leader"], "n1");
        assert_eq!(v["nodes"][0]["cache"]["hit_ratio"], 0.75);
        // n1 is down, a stale n3 still says it leads term 1, n2 leads term 2.
        let v = t.view(vec![
            poll("n1", None),
            poll("n2", Some(("leader", 2))),
            poll("n3", Some(("leader", 1))),
        ]);
        assert_eq!(
            (v["leader"].clone(), v["term"].clone()),
            (json!("n2"), json!(2))
        );
        assert_eq!(v["nodes"][0]["up"], false);
        assert_eq!(v["leader_changes"].as_array().unwrap().len(), 2);
        for e in [
            json!({"process": "nemesis", "f": "start-kill", "value": ["n1"], "time": 1}),
            json!({"process": 0, "type": "invoke", "f": "read", "time": 1_000_000_000}),
            json!({"process": 0, "type": "ok", "f": "read", "time": 1_004_000_000}),
            json!({"process": 1, "type": "invoke", "f": "write", "time": 1_100_000_000}),
            json!({"process": 1, "type": "info", "f": "write", "time": 2_100_000_000}),
        ] {
            t.event(&e);
        }
        let v = t.view(vec![poll("n2", Some(("leader", 2)))]);
        assert_eq!(v["faults"]["in_force"][0]["fault"], "kill");
        assert_eq!(v["ops"]["latency_ms"]["p50"], 4.0);
        assert_eq!(v["ops"]["per_second"].as_array().unwrap().len(), 2);
        t.event(&json!({"process": "nemesis", "f": "stop-kill", "value": ["n1"]}));
        let v = t.view(vec![poll("n2", Some(("leader", 2)))]);
        assert!(v["faults"]["in_force"].as_array().unwrap().is_empty());
        assert_eq!(v["faults"]["recent"].as_array().unwrap().len(), 2);
    }
}
