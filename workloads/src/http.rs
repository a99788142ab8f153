//! The HTTP side every workload on the builtin system shares: find the leader
//! (following `421 not-leader` hints), and turn each answer into a completion that
//! says whether the op certainly failed or may have happened (docs/node-api.md).

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{RequestBuilder, StatusCode};
use serde_json::Value;

use crate::{Completion, Endpoint, WorkloadOptions};

/// Redirects followed within one op at least (the op's interval covers them all).
const REDIRECTS: usize = 2;

/// How soon a PBFT client sends a request again to a replica that refused
/// the connection.
const RESEND: Duration = Duration::from_millis(100);

/// How long a process passes over its home node after failing to reach it.
const HOME_PAUSE: Duration = Duration::from_secs(1);

/// An HTTP client tuned for many short requests with the run's op timeout,
/// and how many replicas must agree on an answer.
#[derive(Clone)]
pub(crate) struct Http {
    client: reqwest::Client,
    /// Under PBFT, the f of n = 3f+1: each request goes to every replica and
    /// an answer counts once f+1 of them gave it.
    bft: Option<usize>,
    op_timeout: Duration,
}

impl Http {
    /// The plain client, for requests to one node that no quorum decides.
    pub(crate) fn raw(&self) -> reqwest::Client {
        self.client.clone()
    }
}

/// The HTTP side of a workload's client for `options`.
pub(crate) fn client(options: &WorkloadOptions) -> Http {
    Http {
        client: reqwest::Client::builder()
            .timeout(options.op_timeout)
            .connect_timeout(Duration::from_millis(500))
            .pool_max_idle_per_host(256)
            .build()
            .unwrap_or_default(),
        bft: match options.target {
            crate::Target::Bft { f } => Some(f),
            _ => None,
        },
        op_timeout: options.op_timeout,
    }
}

/// One process's view of the cluster: which node it talks to now.
pub(crate) struct Nodes {
    http: reqwest::Client,
    bft: Option<usize>,
    /// This process's name and last request number, for `x-request-id`.
    client: String,
    requests: u64,
    op_timeout: Duration,
    nodes: Arc<Vec<Endpoint>>,
    target: usize,
    /// The node each op starts at, for a process bound to its node.
    home: Option<usize>,
    /// Until then ops start elsewhere: the home node could not be reached
    /// (a killed container can take the whole connect timeout to say so).
    home_down_until: Option<Instant>,
}

impl Nodes {
    /// Starts at a node chosen by the process number, so load spreads, and
    /// then stays with the leader it is sent to.
    pub(crate) fn new(http: Http, nodes: Arc<Vec<Endpoint>>, process: u64) -> Self {
        let target = (process as usize) % nodes.len().max(1);
        Nodes {
            http: http.client,
            bft: http.bft,
            client: format!("p{process}"),
            requests: 0,
            op_timeout: http.op_timeout,
            nodes,
            target,
            home: None,
            home_down_until: None,
        }
    }

    /// Like [`Nodes::new`], but every op starts at the process's own node and
    /// follows a leader hint for that op only (Jepsen binds a client to a node
    /// the same way). Reads then reach every node, so a node that answers them
    /// from a stale copy is seen; a client that stayed with the leader would
    /// only ever ask the node least likely to be behind.
    pub(crate) fn homed(http: Http, nodes: Arc<Vec<Endpoint>>, process: u64) -> Self {
        let mut n = Nodes::new(http, nodes, process);
        n.home = Some(n.target);
        n
    }

    fn rotate(&mut self) {
        self.target = (self.target + 1) % self.nodes.len().max(1);
    }

    /// Sends the request `make` builds for a node's base URL, following leader
    /// hints. `Ok(body)` on 200; otherwise the completion to record and the
    /// error body: a definite refusal (409 and other 4xx, 503, connect failures)
    /// is `Fail` with the error code, anything that may have taken effect `Info`.
    pub(crate) async fn call(
        &mut self,
        make: impl Fn(&reqwest::Client, &str) -> RequestBuilder,
    ) -> (Result<Value, (Completion, Value)>, Option<String>) {
        if let Some(f) = self.bft {
            return self.call_replicas(make, f).await;
        }
        let none = || Value::Null;
        if let Some(home) = self.home {
            if self.home_down_until.is_none_or(|t| Instant::now() >= t) {
                self.target = home;
            }
        }
        // Enough to follow a hint and to go round every node once.
        let attempts = REDIRECTS.max(self.nodes.len());
        for attempt in 0..=attempts {
            let node = &self.nodes[self.target];
            let id = Some(node.id.clone());
            let response = match make(&self.http, &node.url).send().await {
                Ok(r) => r,
                Err(e) if e.is_connect() => {
                    if self.home == Some(self.target) {
                        self.home_down_until = Some(Instant::now() + HOME_PAUSE);
                    }
                    // Nothing was sent: try another node, after a pause so a dead
                    // cluster is not hammered; a definite failure if none answers.
                    self.rotate();
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    if attempt < attempts {
                        continue;
                    }
                    return (Err((Completion::Fail("connect failed".into()), none())), id);
                }
                Err(e) if e.is_timeout() => {
                    return (Err((Completion::Info("timeout".into()), none())), id)
                }
                Err(e) => {
                    let why = format!("request failed: {e}");
                    return (Err((Completion::Info(why), none())), id);
                }
            };
            let status = response.status();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            if status == StatusCode::OK {
                return (Ok(body), id);
            }
            let code = body
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("error")
                .to_string();
            if status == StatusCode::MISDIRECTED_REQUEST {
                let leader = body.get("leader").and_then(Value::as_str);
                match leader.and_then(|l| self.nodes.iter().position(|n| n.id == l)) {
                    Some(i) if i != self.target => {
                        self.target = i;
                        continue;
                    }
                    _ => {
                        // Refused, so nothing happened: ask the next node.
                        self.rotate();
                        if attempt < attempts {
                            continue;
                        }
                        return (Err((Completion::Fail("not-leader".into()), body)), id);
                    }
                }
            }
            let definite = body
                .get("definite")
                .and_then(Value::as_bool)
                .unwrap_or(status.is_client_error() || status == StatusCode::SERVICE_UNAVAILABLE);
            if status == StatusCode::SERVICE_UNAVAILABLE {
                self.rotate();
            }
            let done = if definite {
                Completion::Fail(code)
            } else {
                Completion::Info(code)
            };
            return (Err((done, body)), id);
        }
        (Err((Completion::Fail("not-leader".into()), none())), None)
    }
}

/// An answer as it decides an op: 200 with its body, or the error body.
pub(crate) fn decide(status: StatusCode, body: Value) -> Result<Value, (Completion, Value)> {
    if status == StatusCode::OK {
        return Ok(body);
    }
    let code = body
        .get("error")
        .and_then(Value::as_str)
        .unwrap_or("error")
        .to_string();
    let definite = body
        .get("definite")
        .and_then(Value::as_bool)
        .unwrap_or(status.is_client_error());
    if definite {
        Err((Completion::Fail(code), body))
    } else {
        Err((Completion::Info(code), body))
    }
}

impl Nodes {
    /// Sends the request to every replica under one request id, as PBFT
    /// clients do, and takes the first answer f+1 replicas gave alike (so at
    /// least one correct replica gave it). Only answers a replica reaches by
    /// executing or judging the request vote: a 5xx, a timeout or a refused
    /// connection says nothing about the outcome. No f+1 alike: unknown,
    /// unless no replica could even be reached.
    async fn call_replicas(
        &mut self,
        make: impl Fn(&reqwest::Client, &str) -> RequestBuilder,
        f: usize,
    ) -> (Result<Value, (Completion, Value)>, Option<String>) {
        self.requests += 1;
        let id = format!("{}:{}", self.client, self.requests);
        let (tx, mut rx) = tokio::sync::mpsc::channel(self.nodes.len().max(1));
        let deadline = Instant::now() + self.op_timeout;
        for node in self.nodes.iter() {
            let request = make(&self.http, &node.url).header("x-request-id", &id);
            let (tx, node) = (tx.clone(), node.id.clone());
            tokio::spawn(async move {
                // A replica that refuses the connection (down, restarting) gets
                // the same request again until the op's time is up, as a PBFT
                // client retransmits: one request id, executed at most once.
                let answer = loop {
                    let Some(attempt) = request.try_clone() else {
                        break Err(false);
                    };
                    match attempt.send().await {
                        Ok(r) => {
                            let status = r.status();
                            break Ok((status, r.json::<Value>().await.unwrap_or(Value::Null)));
                        }
                        Err(e) if e.is_connect() && Instant::now() + RESEND < deadline => {
                            tokio::time::sleep(RESEND).await;
                        }
                        Err(e) => break Err(e.is_connect()),
                    }
                };
                let _ = tx.send((node, answer)).await;
            });
        }
        drop(tx);
        let mut votes: Vec<((StatusCode, Value), Vec<String>)> = Vec::new();
        let mut reached = false;
        while let Some((node, answer)) = rx.recv().await {
            let (status, body) = match answer {
                Ok(a) => a,
                Err(connect) => {
                    reached |= !connect;
                    continue;
                }
            };
            reached = true;
            if status.is_server_error() {
                continue;
            }
            let key = (status, body);
            let at = match votes
                .iter()
                .position(|(k, _)| k.0 == key.0 && alike(&k.1, &key.1))
            {
                Some(i) => i,
                None => {
                    votes.push((key, Vec::new()));
                    votes.len() - 1
                }
            };
            votes[at].1.push(node);
            if votes[at].1.len() > f {
                let ((status, body), nodes) = votes.swap_remove(at);
                return (decide(status, body), nodes.into_iter().next());
            }
        }
        let why = if reached {
            format!("no {} replicas answered alike", f + 1)
        } else {
            "connect failed".to_string()
        };
        let done = if reached {
            Completion::Info(why)
        } else {
            Completion::Fail(why)
        };
        (Err((done, Value::Null)), None)
    }
}

/// Fields of an answer that say which replica served it and from what (a
/// cache hit or miss): replicas agreeing on the rest agree on the answer.
const REPLICA_LOCAL: &[&str] = &["hit", "node"];

/// Whether two answers agree, apart from [`REPLICA_LOCAL`] fields.
fn alike(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keep = |m: &serde_json::Map<String, Value>| {
                m.iter()
                    .filter(|(k, _)| !REPLICA_LOCAL.contains(&k.as_str()))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect::<Vec<_>>()
            };
            keep(x) == keep(y)
        }
        _ => a == b,
    }
}
