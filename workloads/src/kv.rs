//! Workload `kv`: read, write and cas on independent keys of the Raft KV, checked
//! for linearizability key by key (model `kv`).
//!
//! A few keys are live at once so processes contend on them; each key takes a
//! bounded number of ops and is then retired for a fresh one, which keeps every
//! key's history small enough to check exhaustively.

use std::sync::Arc;

use serde_json::{json, Value};

use checker::{CheckOptions, History};

use crate::http::Nodes;
use crate::{
    BoxFut, Checked, Client, Completion, Endpoint, Generator, Invocation, Rng, Session, Workload,
    WorkloadOptions,
};

/// The `kv` workload.
pub struct Kv;

impl Workload for Kv {
    fn name(&self) -> &'static str {
        "kv"
    }

    fn generator(&self, options: &WorkloadOptions) -> Box<dyn Generator> {
        Box::new(KvGenerator {
            live: Vec::new(),
            keys: options.keys.max(1),
            ops_per_key: options.ops_per_key.max(1),
            next_key: 0,
        })
    }

    fn client(&self, nodes: Vec<Endpoint>, options: &WorkloadOptions) -> Arc<dyn Client> {
        if let crate::Target::Supplied(supplied) = &options.target {
            if let Some(client) = supplied.client(self.name(), nodes.clone(), options) {
                return client;
            }
        }
        if let crate::Target::Maelstrom(link) = &options.target {
            return Arc::new(crate::maelstrom::MaelstromKvClient::new(
                link.clone(),
                nodes,
                options.op_timeout,
            ));
        }
        if let crate::Target::Etcd { serializable } = options.target {
            return Arc::new(crate::etcd::EtcdKvClient::new(
                nodes,
                serializable,
                options.op_timeout,
            ));
        }
        if let crate::Target::Redis {
            replica_reads,
            sentinels,
        } = &options.target
        {
            return Arc::new(crate::redis::RedisKvClient::new(
                nodes,
                *replica_reads,
                sentinels.clone(),
                options.op_timeout,
            ));
        }
        Arc::new(KvClient {
            http: crate::http::client(options),
            nodes: Arc::new(nodes),
        })
    }

    fn model(&self) -> &'static str {
        "kv"
    }

    /// Linearizability, and `lost-writes`: acknowledged writes that a later
    /// read shows gone, named with the nodes involved (failover's typical loss).
    fn check(&self, history: &History, options: &CheckOptions) -> Result<Checked, String> {
        let lin =
            checker::check_named(self.model(), history, options).map_err(|e| e.to_string())?;
        let lost = checker::lost_writes::check(history);
        // The search is the referee; lost-writes decides only what it left open.
        let valid = lin
            .valid
            .with_necessary(lost.valid)
            .map_err(|e| e.to_string())?;
        let mut checked = Checked::default();
        checked.add("linearizable", lin.result());
        checked.add("lost-writes", lost.result());
        checked.valid = valid;
        Ok(checked)
    }
}

/// Ops over a sliding set of live keys.
pub struct KvGenerator {
    live: Vec<(u64, usize)>,
    keys: usize,
    ops_per_key: usize,
    next_key: u64,
}

impl Generator for KvGenerator {
    fn next(&mut self, _process: u64, rng: &mut Rng) -> Option<Invocation> {
        while self.live.len() < self.keys {
            self.live.push((self.next_key, self.ops_per_key));
            self.next_key += 1;
        }
        let slot = rng.below(self.live.len() as u64) as usize;
        let key = self.live[slot].0;
        self.live[slot].1 -= 1;
        if self.live[slot].1 == 0 {
            self.live.swap_remove(slot);
        }
        let roll = rng.below(10);
        let (f, value) = if roll < 4 {
            ("read", Value::Null)
        } else if roll < 7 {
            ("write", json!(rng.below(5)))
        } else {
            ("cas", json!([rng.below(5), rng.below(5)]))
        };
        Some(Invocation {
            f: f.to_string(),
            key: Some(format!("k{key}")),
            value,
        })
    }

    fn final_ops(&self) -> Vec<Invocation> {
        (0..self.next_key)
            .map(|k| Invocation {
                f: "read".into(),
                key: Some(format!("k{k}")),
                value: Value::Null,
            })
            .collect()
    }
}

struct KvClient {
    http: crate::http::Http,
    nodes: Arc<Vec<Endpoint>>,
}

impl Client for KvClient {
    fn open(&self, process: u64) -> Box<dyn Session> {
        Box::new(KvSession {
            nodes: Nodes::homed(self.http.clone(), self.nodes.clone(), process),
        })
    }
}

struct KvSession {
    nodes: Nodes,
}

impl KvSession {
    async fn attempt(&mut self, op: &Invocation) -> (Completion, Option<String>) {
        let key = op.key.clone().unwrap_or_default();
        if !matches!(op.f.as_str(), "read" | "write" | "cas") {
            return (Completion::Fail(format!("kv has no op `{}`", op.f)), None);
        }
        let (answer, node) = self
            .nodes
            .call(|http, base| {
                let url = format!("{base}/kv/{key}");
                match op.f.as_str() {
                    "read" => http.get(&url),
                    "write" => http.put(&url).json(&json!({"value": op.value})),
                    _ => {
                        let pair = op.value.as_array().cloned().unwrap_or_default();
                        let (a, b) = (
                            pair.first().cloned().unwrap_or(Value::Null),
                            pair.get(1).cloned().unwrap_or(Value::Null),
                        );
                        http.post(format!("{url}/cas"))
                            .json(&json!({"expected": a, "new": b}))
                    }
                }
            })
            .await;
        let done = match answer {
            Ok(body) if op.f == "read" => {
                Completion::Ok(body.get("value").cloned().unwrap_or(Value::Null))
            }
            Ok(_) => Completion::Ok(op.value.clone()),
            Err((done, _)) => done,
        };
        (done, node)
    }
}

impl Session for KvSession {
    fn invoke<'a>(&'a mut self, op: &'a Invocation) -> BoxFut<'a, (Completion, Option<String>)> {
        Box::pin(self.attempt(op))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generator_bounds_ops_per_key_and_replays_from_the_seed() {
        let opts = WorkloadOptions {
            keys: 3,
            ops_per_key: 10,
            op_timeout: std::time::Duration::from_secs(1),
            target: crate::Target::Builtin,
            nodes: 3,
        };
        let run = |seed| {
            let mut g = Kv.generator(&opts);
            let mut rng = Rng::new(seed);
            (0..100)
                .map(|p| g.next(p, &mut rng).unwrap())
                .collect::<Vec<_>>()
        };
        let ops = run(5);
        assert_eq!(ops, run(5));
        let mut per_key = std::collections::BTreeMap::new();
        for op in &ops {
            *per_key.entry(op.key.clone().unwrap()).or_insert(0) += 1;
        }
        assert!(per_key.values().all(|&n| n <= 10), "{per_key:?}");
        assert!(per_key.len() >= 10, "{per_key:?}");
        let fs: std::collections::BTreeSet<&str> = ops.iter().map(|o| o.f.as_str()).collect();
        assert_eq!(fs.len(), 3);
    }
}
