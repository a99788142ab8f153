//! Workload `mesh`: clients send requests with unique ids and their own trace
//! context through random sidecars (`/mesh/api/work/{key}`) to the instances
//! of service `api`, half of them idempotent (GET), half not (POST), each
//! with a deadline. The faults hit the instances. At the end every sidecar's
//! records (each request's tries, breaker transitions, health changes) are
//! read; the checkers in [`checks`] judge them against the history.

pub mod checks;

use std::sync::Arc;
use std::time::Duration;

use checker::{CheckOptions, History};
use serde_json::{json, Value};

use crate::{
    BoxFut, Checked, Client, Completion, Endpoint, Generator, Invocation, Rng, Session, Workload,
    WorkloadOptions,
};

/// The service the instances belong to, and how many there are.
pub const SERVICE: &str = "api";
/// Instances of [`SERVICE`].
pub const INSTANCES: usize = 3;
/// Tries a request may take (the first included).
pub const MAX_TRIES: u32 = 3;
/// Each try's own timeout.
pub const PER_TRY_MS: u64 = 200;
/// The deadline every request carries (`x-timeout-ms`).
pub const DEADLINE_MS: u64 = 300;
/// Consecutive failures that must open a breaker.
pub const BREAKER_FAILURES: u32 = 5;
/// How long a breaker stays open before probing.
pub const BREAKER_COOLDOWN_MS: u64 = 1_000;
/// Retry budget: tokens per request, per second, and the most banked.
pub const BUDGET_RATIO: f64 = 0.2;
/// Retry tokens earned per second whatever the traffic.
pub const BUDGET_PER_SEC: f64 = 10.0;
/// How long after an instance is cut off, paused or killed the sidecars may
/// still send it a try (a probe every 100 ms, each given [`PROBE_TIMEOUT_MS`];
/// two failures mark it down: about 600 ms at worst).
pub const DETECTION_MS: u64 = 1_000;
/// How long a health probe waits: above the round trip the delay fault makes
/// (up to 2 x 150 ms at its worst, rarely over 250), so a slow network does
/// not mark every instance down and leave nothing to route to.
pub const PROBE_TIMEOUT_MS: u64 = 250;
/// Work each request asks of an instance.
const WORK_MS: u64 = 2;
/// Keys requests spread over (the consistent-hash balancer's keys).
const KEYS: u64 = 64;
/// Records one page of `GET /mesh/records` holds.
const PAGE: usize = 5_000;

/// The `mesh` workload.
pub struct MeshWorkload;

/// The sidecar settings every node gets.
pub fn mesh_config() -> Value {
    json!({
        "balancer": "p2c",
        "breaker": {"failures": BREAKER_FAILURES, "cooldown_ms": BREAKER_COOLDOWN_MS},
        "retry": {"max_attempts": MAX_TRIES, "per_try_timeout_ms": PER_TRY_MS,
                  "budget_ratio": BUDGET_RATIO, "min_per_sec": BUDGET_PER_SEC},
        "timeout_ms": DEADLINE_MS,
        "health": {"timeout_ms": PROBE_TIMEOUT_MS},
    })
}

impl Workload for MeshWorkload {
    fn name(&self) -> &'static str {
        "mesh"
    }

    fn generator(&self, _options: &WorkloadOptions) -> Box<dyn Generator> {
        Box::new(MeshGenerator::default())
    }

    fn client(&self, nodes: Vec<Endpoint>, options: &WorkloadOptions) -> Arc<dyn Client> {
        Arc::new(MeshClient {
            http: crate::http::client(options).raw(),
            nodes: Arc::new(nodes),
            timeout: options.op_timeout.max(Duration::from_secs(2)),
        })
    }

    fn model(&self) -> &'static str {
        "none"
    }

    fn node_args(&self) -> Vec<String> {
        vec![format!("--mesh-config={}", mesh_config())]
    }

    fn services(&self) -> &'static [(&'static str, usize)] {
        &[(SERVICE, INSTANCES)]
    }

    fn check(&self, history: &History, _options: &CheckOptions) -> Result<Checked, String> {
        Ok(checks::check(history))
    }
}

/// Numbers the requests and gives each its trace.
#[derive(Default)]
pub struct MeshGenerator {
    next: u64,
}

fn hex(rng: &mut Rng, digits: usize) -> String {
    let mut s = String::new();
    while s.len() < digits {
        s.push_str(&format!("{:016x}", rng.next_u64() | 1));
    }
    s.truncate(digits);
    s
}

impl Generator for MeshGenerator {
    fn next(&mut self, _process: u64, rng: &mut Rng) -> Option<Invocation> {
        self.next += 1;
        let n = self.next;
        let method = if rng.below(2) == 0 { "get" } else { "post" };
        Some(Invocation {
            f: method.into(),
            key: None,
            value: json!({"id": format!("r{n}"), "key": format!("k{}", rng.below(KEYS)),
                "trace": hex(rng, 32), "span": hex(rng, 16), "via": rng.below(1 << 16)}),
        })
    }

    fn final_ops(&self) -> Vec<Invocation> {
        vec![Invocation {
            f: "records".into(),
            key: None,
            value: Value::Null,
        }]
    }
}

struct MeshClient {
    http: reqwest::Client,
    nodes: Arc<Vec<Endpoint>>,
    timeout: Duration,
}

impl Client for MeshClient {
    fn open(&self, _process: u64) -> Box<dyn Session> {
        Box::new(MeshSession {
            http: self.http.clone(),
            nodes: self.nodes.clone(),
            timeout: self.timeout,
        })
    }
}

struct MeshSession {
    http: reqwest::Client,
    nodes: Arc<Vec<Endpoint>>,
    timeout: Duration,
}

impl MeshSession {
    async fn request(&self, op: &Invocation) -> (Completion, Option<String>) {
        let v = &op.value;
        let via = v["via"].as_u64().unwrap_or(0) as usize % self.nodes.len().max(1);
        let Some(node) = self.nodes.get(via) else {
            return (Completion::Fail("no nodes".into()), None);
        };
        let url = format!(
            "{}/mesh/{SERVICE}/work/{}?ms={WORK_MS}",
            node.url,
            v["key"].as_str().unwrap_or("k")
        );
        let builder = if op.f == "get" {
            self.http.get(url)
        } else {
            self.http.post(url).json(&json!({"id": v["id"]}))
        };
        let sent = builder
            .timeout(self.timeout)
            .header("x-request-id", v["id"].as_str().unwrap_or(""))
            .header("x-mesh-key", v["key"].as_str().unwrap_or(""))
            .header("x-timeout-ms", DEADLINE_MS.to_string())
            .header(
                "traceparent",
                format!(
                    "00-{}-{}-01",
                    v["trace"].as_str().unwrap_or(""),
                    v["span"].as_str().unwrap_or("")
                ),
            )
            .send()
            .await;
        let at = Some(node.id.clone());
        let response = match sent {
            Ok(r) => r,
            Err(e) if e.is_connect() => return (Completion::Fail("connect failed".into()), at),
            Err(e) if e.is_timeout() => return (Completion::Info("timeout".into()), at),
            Err(e) => return (Completion::Info(format!("request failed: {e}")), at),
        };
        let status = response.status();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|h| h.to_str().ok())
                .map(str::to_string)
        };
        let instance = header("x-mesh-instance");
        let tries = header("x-mesh-attempts").and_then(|t| t.parse::<u64>().ok());
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let done = match crate::http::decide(status, body) {
            Ok(_) => Completion::Ok(json!({"instance": instance, "tries": tries})),
            Err((done, _)) => done,
        };
        (done, at)
    }

    /// Every sidecar's records, transitions and health changes.
    async fn records(&self) -> Completion {
        let mut all = serde_json::Map::new();
        for node in self.nodes.iter() {
            let mut records = Vec::new();
            let mut from = 0u64;
            let mut last;
            loop {
                let got = self
                    .http
                    .get(format!(
                        "{}/mesh/records?from={from}&limit={PAGE}",
                        node.url
                    ))
                    .timeout(Duration::from_secs(30))
                    .send()
                    .await;
                let page: Value = match got {
                    Ok(r) if r.status().is_success() => r.json().await.unwrap_or(Value::Null),
                    Ok(r) => {
                        return Completion::Info(format!(
                            "{}: records: status {}",
                            node.id,
                            r.status()
                        ))
                    }
                    Err(e) => return Completion::Info(format!("{}: records: {e}", node.id)),
                };
                let got_now = page["records"].as_array().map_or(0, Vec::len);
                records.extend(page["records"].as_array().cloned().unwrap_or_default());
                from = page["next"].as_u64().unwrap_or(from);
                last = page;
                if got_now < PAGE {
                    break;
                }
            }
            all.insert(
                node.id.clone(),
                json!({"records": records, "dropped": last["dropped"], "since_ms": last["since_ms"],
                    "transitions": last["transitions"], "health": last["health"],
                    "configs": last["configs"]}),
            );
        }
        Completion::Ok(Value::Object(all))
    }
}

impl Session for MeshSession {
    fn invoke<'a>(&'a mut self, op: &'a Invocation) -> BoxFut<'a, (Completion, Option<String>)> {
        Box::pin(async move {
            match op.f.as_str() {
                "records" => (self.records().await, None),
                _ => self.request(op).await,
            }
        })
    }
}
