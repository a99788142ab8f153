//! One client for every Maelstrom workload: a [`Protocol`] says what request
//! an operation sends and what the reply means; this module carries it,
//! maps Maelstrom's error codes, and runs the setup a workload needs first
//! (broadcast's topology). An op whose value names a `node` (an index into
//! the nodes) goes to that node (the final reads on every node); any other goes to the process's node,
//! and the next one after a failure.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::OnceCell;

use super::{definite, Link};
use crate::{BoxFut, Client, Completion, Endpoint, Invocation, Session, WorkloadOptions};

/// What a workload's operations look like on the wire.
pub trait Protocol: Send + Sync {
    /// The request body for `op` (the client adds `msg_id`).
    fn body(&self, op: &Invocation) -> Value;
    /// What a reply that is not an error means for `op`.
    fn done(&self, op: &Invocation, reply: &Value) -> Completion;
    /// Whether `op` changes nothing (a read): unanswered, it certainly failed.
    fn harmless(&self, op: &Invocation) -> bool;
    /// Requests to send to nodes once, before the first operation.
    fn setup(&self, _nodes: &[String], _link: &Link) -> Result<Vec<(String, Value)>, String> {
        Ok(Vec::new())
    }
}

/// The index of the node an op names in its value (`{"node": 2, ...}`), if any.
pub fn named_node(op: &Invocation) -> Option<usize> {
    op.value
        .get("node")
        .and_then(Value::as_u64)
        .map(|i| i as usize)
}

/// Makes sessions for a Maelstrom workload.
pub struct MaelstromClient {
    link: Option<Link>,
    nodes: Arc<Vec<Endpoint>>,
    timeout: Duration,
    protocol: Arc<dyn Protocol>,
    setup: Arc<OnceCell<Result<(), String>>>,
}

impl MaelstromClient {
    /// A client speaking `protocol` to `nodes`, if the target is Maelstrom's.
    pub fn for_nodes(
        protocol: Arc<dyn Protocol>,
        nodes: Vec<Endpoint>,
        options: &WorkloadOptions,
    ) -> Arc<dyn Client> {
        let link = match &options.target {
            crate::Target::Maelstrom(link) => Some(link.clone()),
            _ => None,
        };
        Arc::new(MaelstromClient {
            link,
            nodes: Arc::new(nodes),
            timeout: options.op_timeout,
            protocol,
            setup: Arc::new(OnceCell::new()),
        })
    }
}

impl Client for MaelstromClient {
    fn open(&self, process: u64) -> Box<dyn Session> {
        Box::new(MaelstromOps {
            link: self.link.clone(),
            nodes: self.nodes.clone(),
            timeout: self.timeout,
            protocol: self.protocol.clone(),
            setup: self.setup.clone(),
            client: format!("c{}", process + 1),
            target: process as usize % self.nodes.len().max(1),
        })
    }
}

struct MaelstromOps {
    link: Option<Link>,
    nodes: Arc<Vec<Endpoint>>,
    timeout: Duration,
    protocol: Arc<dyn Protocol>,
    setup: Arc<OnceCell<Result<(), String>>>,
    client: String,
    target: usize,
}

impl MaelstromOps {
    async fn attempt(&mut self, op: &Invocation) -> (Completion, Option<String>) {
        let Some(link) = self.link.clone() else {
            let e = "this workload speaks Maelstrom's protocol: run it with --target maelstrom";
            return (Completion::Fail(e.into()), None);
        };
        let ids: Vec<String> = self.nodes.iter().map(|n| n.id.clone()).collect();
        let (protocol, timeout) = (self.protocol.clone(), self.timeout);
        let ready = self
            .setup
            .get_or_init(|| async move {
                for (node, body) in protocol.setup(&ids, &link)? {
                    let reply = link.rpc.call("c0", &node, body.clone(), timeout * 4).await;
                    let want = format!("{}_ok", body["type"].as_str().unwrap_or_default());
                    match reply {
                        Some(r) if r["type"] == want.as_str() => {}
                        other => {
                            return Err(format!(
                                "{node} answered {} with {} instead of {want}",
                                body["type"],
                                other.map_or("nothing".to_string(), |r| r.to_string())
                            ))
                        }
                    }
                }
                Ok(())
            })
            .await;
        if let Err(e) = ready {
            return (Completion::Fail(format!("setup: {e}")), None);
        }
        let Some(link) = &self.link else {
            return (Completion::Fail("no link".into()), None);
        };
        let node = match named_node(op).and_then(|i| self.nodes.get(i)) {
            Some(n) => n.id.clone(),
            None => self.nodes[self.target].id.clone(),
        };
        let harmless = self.protocol.harmless(op);
        let reply = link
            .rpc
            .call(&self.client, &node, self.protocol.body(op), self.timeout)
            .await;
        let done = match reply {
            None if harmless => Completion::Fail("no reply".into()),
            None => Completion::Info("no reply".into()),
            Some(r) if r["type"] == "error" => {
                let code = r["code"].as_i64().unwrap_or(13);
                let text = format!("error {code}: {}", r["text"].as_str().unwrap_or(""));
                if definite(code) || harmless {
                    Completion::Fail(text)
                } else {
                    Completion::Info(text)
                }
            }
            Some(r) => self.protocol.done(op, &r),
        };
        if !matches!(done, Completion::Ok(_)) {
            self.target = (self.target + 1) % self.nodes.len().max(1);
        }
        (done, Some(node))
    }
}

impl Session for MaelstromOps {
    fn invoke<'a>(&'a mut self, op: &'a Invocation) -> BoxFut<'a, (Completion, Option<String>)> {
        Box::pin(self.attempt(op))
    }
}

/// The reply's field `name`, or a failure saying the reply lacked it.
pub fn field(reply: &Value, name: &str) -> Completion {
    match reply.get(name) {
        Some(v) => Completion::Ok(v.clone()),
        None => Completion::Info(format!("reply without `{name}`: {reply}")),
    }
}

/// Final reads: one `read` on every node (by its index), marked final.
pub fn final_reads(nodes: usize) -> Vec<crate::Invocation> {
    (0..nodes)
        .map(|i| crate::Invocation {
            f: "read".into(),
            key: None,
            value: serde_json::json!({"node": i, "final": true}),
        })
        .collect()
}

/// Sorted values' quantiles 0, 0.5, 0.95, 0.99 and 1, as a JSON object.
pub fn quantiles(mut values: Vec<f64>) -> Value {
    if values.is_empty() {
        return Value::Null;
    }
    values.sort_by(f64::total_cmp);
    let at = |q: f64| {
        let i = ((values.len() - 1) as f64 * q).round() as usize;
        (values[i] * 10.0).round() / 10.0
    };
    serde_json::json!({"0": at(0.0), "0.5": at(0.5), "0.95": at(0.95), "0.99": at(0.99), "1": at(1.0)})
}
