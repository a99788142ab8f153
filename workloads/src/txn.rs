//! Workloads `txn` (list-append) and `txn-rw-register`: transactions over the
//! node's `/txn` route (or Maelstrom's `txn` message), checked with the
//! Elle-style transactional checker (`checker::txn`) for strict serializability.
//!
//! Each transaction holds 1-4 micro-ops (append or read) over a few live keys;
//! a key takes a bounded number of appends and is then retired for a fresh
//! one, so reads stay short. Every appended value is unique per key (a counter
//! per key), which is what lets a read name its writers.

use std::sync::Arc;

use serde_json::{json, Value};

use checker::txn::{ConsistencyModel, Kind, TxnOptions};
use checker::{CheckOptions, History};

use crate::http::Nodes;
use crate::{
    BoxFut, Checked, Client, Completion, Endpoint, Generator, Invocation, Rng, Session, Workload,
    WorkloadOptions,
};

/// A transactional workload over one data type.
pub struct TxnWorkload(pub Kind);

impl Workload for TxnWorkload {
    fn name(&self) -> &'static str {
        match self.0 {
            Kind::ListAppend => "txn",
            Kind::RwRegister => "txn-rw-register",
        }
    }

    fn generator(&self, options: &WorkloadOptions) -> Box<dyn Generator> {
        Box::new(TxnGenerator {
            write: match self.0 {
                Kind::ListAppend => "append",
                Kind::RwRegister => "w",
            },
            live: Vec::new(),
            keys: options.keys.max(1),
            appends_per_key: options.ops_per_key.clamp(1, 64),
            next_key: 0,
        })
    }

    fn client(&self, nodes: Vec<Endpoint>, options: &WorkloadOptions) -> Arc<dyn Client> {
        client(nodes, options)
    }

    fn model(&self) -> &'static str {
        self.0.name()
    }

    fn check(&self, history: &History, _options: &CheckOptions) -> Result<Checked, String> {
        let txns = checker::txn::read(history, self.0).map_err(|e| e.to_string())?;
        let options = TxnOptions {
            consistency: ConsistencyModel::StrictSerializable,
            ..TxnOptions::default()
        };
        let result = checker::txn::check(&txns, &options).map_err(|e| e.to_string())?;
        let mut checked = Checked::default();
        checked.add("txn", result);
        Ok(checked)
    }
}

/// A client sending each op's value as the micro-ops of one transaction, to
/// `/txn` (or Maelstrom's `txn` message).
pub fn client(nodes: Vec<Endpoint>, options: &WorkloadOptions) -> Arc<dyn Client> {
    if let crate::Target::Etcd { .. } = options.target {
        return Arc::new(crate::etcd::EtcdTxnClient::new(nodes, options.op_timeout));
    }
    if let crate::Target::Maelstrom(link) = &options.target {
        return Arc::new(crate::maelstrom::MaelstromKvClient::new(
            link.clone(),
            nodes,
            options.op_timeout,
        ));
    }
    Arc::new(TxnClient {
        http: crate::http::client(options),
        nodes: Arc::new(nodes),
    })
}

/// Transactions over a sliding set of live keys: (key, writes so far).
pub struct TxnGenerator {
    /// The write micro-op: `append` or `w`.
    write: &'static str,
    live: Vec<(u64, usize)>,
    keys: usize,
    appends_per_key: usize,
    next_key: u64,
}

impl Generator for TxnGenerator {
    fn next(&mut self, _process: u64, rng: &mut Rng) -> Option<Invocation> {
        while self.live.len() < self.keys {
            self.live.push((self.next_key, 0));
            self.next_key += 1;
        }
        let n = 1 + rng.below(4) as usize;
        let mut ops = Vec::with_capacity(n);
        for _ in 0..n {
            let slot = rng.below(self.live.len() as u64) as usize;
            let key = self.live[slot].0;
            if rng.below(2) == 0 {
                ops.push(json!(["r", key, null]));
                continue;
            }
            self.live[slot].1 += 1;
            ops.push(json!([self.write, key, self.live[slot].1]));
            if self.live[slot].1 >= self.appends_per_key {
                self.live[slot] = (self.next_key, 0);
                self.next_key += 1;
            }
        }
        Some(Invocation {
            f: "txn".into(),
            key: None,
            value: Value::Array(ops),
        })
    }

    /// A read of every key ever used, eight keys a transaction.
    fn final_ops(&self) -> Vec<Invocation> {
        let keys: Vec<u64> = (0..self.next_key).collect();
        keys.chunks(8)
            .map(|chunk| Invocation {
                f: "txn".into(),
                key: None,
                value: Value::Array(chunk.iter().map(|k| json!(["r", k, null])).collect()),
            })
            .collect()
    }
}

struct TxnClient {
    http: crate::http::Http,
    nodes: Arc<Vec<Endpoint>>,
}

impl Client for TxnClient {
    fn open(&self, process: u64) -> Box<dyn Session> {
        Box::new(TxnSession {
            nodes: Nodes::homed(self.http.clone(), self.nodes.clone(), process),
        })
    }
}

struct TxnSession {
    nodes: Nodes,
}

impl TxnSession {
    async fn attempt(&mut self, op: &Invocation) -> (Completion, Option<String>) {
        let (answer, node) = self
            .nodes
            .call(|http, base| {
                http.post(format!("{base}/txn"))
                    .json(&json!({"ops": op.value}))
            })
            .await;
        let done = match answer {
            Ok(body) => Completion::Ok(body.get("ops").cloned().unwrap_or(Value::Null)),
            Err((done, _)) => done,
        };
        (done, node)
    }
}

impl Session for TxnSession {
    fn invoke<'a>(&'a mut self, op: &'a Invocation) -> BoxFut<'a, (Completion, Option<String>)> {
        Box::pin(self.attempt(op))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_are_unique_per_key_and_keys_rotate() {
        let opts = WorkloadOptions {
            keys: 3,
            ops_per_key: 5,
            op_timeout: std::time::Duration::from_secs(1),
            target: crate::Target::Builtin,
            nodes: 3,
        };
        let mut g = TxnWorkload(Kind::ListAppend).generator(&opts);
        let mut rng = Rng::new(9);
        let mut seen = std::collections::BTreeSet::new();
        let mut keys = std::collections::BTreeSet::new();
        for p in 0..300 {
            let op = g.next(p, &mut rng).unwrap();
            for m in op.value.as_array().unwrap() {
                keys.insert(m[1].as_u64().unwrap());
                if m[0] == "append" {
                    assert!(seen.insert((m[1].as_u64(), m[2].as_u64())), "{m}");
                    assert!(m[2].as_u64().unwrap() <= 5);
                }
            }
        }
        assert!(keys.len() > 10, "{keys:?}");
        assert!(!g.final_ops().is_empty());
    }
}
