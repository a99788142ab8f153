//! Workload `saga`: concurrent orders against limited stock and wallets, each
//! run by the node's order saga (reserve, charge, ship; release, refund and
//! cancel to undo), with the services' fault switch set so steps fail and
//! replies get lost. At the end every saga and the services' state are read,
//! after waiting for the ones still running to end. The checkers are in
//! [`checks`].

pub mod checks;

use std::sync::Arc;
use std::time::{Duration, Instant};

use checker::{CheckOptions, History};
use serde_json::{json, Value};

use crate::http::Nodes;
use crate::{
    BoxFut, Checked, Client, Completion, Endpoint, Generator, Invocation, Rng, Session, Workload,
    WorkloadOptions,
};

/// Items, each with this much stock at the start.
const ITEMS: u64 = 4;
const STOCK: i64 = 300;
/// Customers, each with this much money at the start.
const CUSTOMERS: u64 = 5;
const WALLET: i64 = 2000;
/// The final read waits this long at most for running sagas to end.
const SETTLE_MAX: Duration = Duration::from_secs(30);

/// The faults switched on in the services: steps fail, and replies are lost
/// after the step acted (so the orchestrator repeats it).
pub fn faults() -> Value {
    json!({
        "inventory": {"fail": 0.2, "lose_reply": 0.2},
        "payment": {"fail": 0.2, "lose_reply": 0.3},
        "shipping": {"fail": 0.6, "lose_reply": 0.1},
    })
}

/// The `saga` workload.
pub struct SagaWorkload;

impl Workload for SagaWorkload {
    fn name(&self) -> &'static str {
        "saga"
    }

    fn generator(&self, _options: &WorkloadOptions) -> Box<dyn Generator> {
        Box::new(SagaGenerator::default())
    }

    fn client(&self, nodes: Vec<Endpoint>, options: &WorkloadOptions) -> Arc<dyn Client> {
        Arc::new(SagaClient {
            http: crate::http::client(options),
            nodes: Arc::new(nodes),
        })
    }

    fn model(&self) -> &'static str {
        "none"
    }

    fn check(&self, history: &History, _options: &CheckOptions) -> Result<Checked, String> {
        Ok(checks::check(history))
    }
}

/// Sets up once (until a setup succeeds), then places orders.
#[derive(Default)]
pub struct SagaGenerator {
    set_up: bool,
    setting_up: bool,
    orders: u64,
}

impl Generator for SagaGenerator {
    fn next(&mut self, process: u64, rng: &mut Rng) -> Option<Invocation> {
        // Orders placed before the setup lands find no such item and are
        // compensated: harmless, and worth checking too.
        if !self.set_up && !self.setting_up {
            self.setting_up = true;
            let stock: serde_json::Map<String, Value> = (0..ITEMS)
                .map(|i| (format!("i{i}"), json!(STOCK)))
                .collect();
            let wallets: serde_json::Map<String, Value> = (0..CUSTOMERS)
                .map(|c| (format!("c{c}"), json!(WALLET)))
                .collect();
            return Some(Invocation {
                f: "setup".into(),
                key: None,
                value: json!({"stock": stock, "wallets": wallets, "faults": faults()}),
            });
        }
        self.orders += 1;
        Some(Invocation {
            f: "order".into(),
            key: None,
            value: json!({"order": format!("o{}-p{process}", self.orders),
                          "customer": format!("c{}", rng.below(CUSTOMERS)),
                          "item": format!("i{}", rng.below(ITEMS)),
                          "qty": 1 + rng.below(3), "amount": 5 + rng.below(20)}),
        })
    }

    fn completed(&mut self, _process: u64, op: &Invocation, done: &Completion) {
        if op.f == "setup" {
            self.setting_up = false;
            self.set_up |= matches!(done, Completion::Ok(_));
        }
    }

    fn final_ops(&self) -> Vec<Invocation> {
        vec![Invocation {
            f: "read".into(),
            key: None,
            value: Value::Null,
        }]
    }
}

struct SagaClient {
    http: crate::http::Http,
    nodes: Arc<Vec<Endpoint>>,
}

impl Client for SagaClient {
    fn open(&self, process: u64) -> Box<dyn Session> {
        Box::new(SagaSession {
            nodes: Nodes::new(self.http.clone(), self.nodes.clone(), process),
        })
    }
}

struct SagaSession {
    nodes: Nodes,
}

type Answer = (Result<Value, (Completion, Value)>, Option<String>);

impl SagaSession {
    async fn get(&mut self, path: &str) -> Answer {
        self.nodes
            .call(|http, base| http.get(format!("{base}{path}")))
            .await
    }

    async fn post(&mut self, path: &str, body: &Value) -> Answer {
        self.nodes
            .call(|http, base| http.post(format!("{base}{path}")).json(body))
            .await
    }

    /// Stock and wallets first, then each service's faults.
    async fn setup(&mut self, v: &Value) -> Answer {
        let (answer, node) = self
            .post(
                "/saga/setup",
                &json!({"stock": v["stock"], "wallets": v["wallets"]}),
            )
            .await;
        if answer.is_err() {
            return (answer, node);
        }
        for (service, f) in v["faults"].as_object().into_iter().flatten() {
            let (answer, node) = self
                .post(&format!("/saga/services/{service}/faults"), f)
                .await;
            if let Err((done, body)) = answer {
                // The stock is set: a failed fault switch leaves an unknown setup.
                let done = match done {
                    Completion::Fail(e) => Completion::Info(format!("faults not set: {e}")),
                    other => other,
                };
                return (Err((done, body)), node);
            }
        }
        (Ok(json!({})), node)
    }

    /// Every saga and the services, once no saga is running (or after
    /// [`SETTLE_MAX`]; the checker then reports the ones still running).
    async fn read(&mut self) -> (Completion, Option<String>) {
        let started = Instant::now();
        loop {
            let (sagas, node) = self.get("/sagas").await;
            let sagas = match sagas {
                Ok(s) => s,
                Err(_) if started.elapsed() < SETTLE_MAX => {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    continue;
                }
                Err((done, _)) => return (done, node),
            };
            let running = sagas["sagas"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|s| s["end"].is_null());
            if running && started.elapsed() < SETTLE_MAX {
                tokio::time::sleep(Duration::from_millis(300)).await;
                continue;
            }
            let (services, node) = self.get("/saga/services").await;
            let services = match services {
                Ok(s) => s,
                // A shard still electing after the heal: try again in time.
                Err(_) if started.elapsed() < SETTLE_MAX => {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    continue;
                }
                Err((done, _)) => return (done, node),
            };
            // The two reads are one picture only if no saga moved between
            // them: read the sagas again, and start over if they changed.
            let (again, node) = self.get("/sagas").await;
            if again.as_ref().ok() != Some(&sagas) && started.elapsed() < SETTLE_MAX {
                continue;
            }
            return (
                Completion::Ok(json!({"sagas": sagas["sagas"], "services": services,
                                      "waited_ms": started.elapsed().as_millis() as u64})),
                node,
            );
        }
    }
}

impl Session for SagaSession {
    fn invoke<'a>(&'a mut self, op: &'a Invocation) -> BoxFut<'a, (Completion, Option<String>)> {
        Box::pin(async move {
            let answer = match op.f.as_str() {
                "setup" => self.setup(&op.value).await,
                "order" => self.post("/sagas", &op.value).await,
                "read" => return self.read().await,
                other => return (Completion::Fail(format!("unknown op `{other}`")), None),
            };
            match answer {
                (Ok(b), node) => (Completion::Ok(b), node),
                (Err((done, _)), node) => (done, node),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_up_once_then_places_distinct_orders() {
        let mut g = SagaGenerator::default();
        let mut rng = Rng::new(1);
        let setup = g.next(0, &mut rng).unwrap();
        assert_eq!(setup.f, "setup");
        assert_eq!(g.next(1, &mut rng).unwrap().f, "order");
        g.completed(0, &setup, &Completion::Info("timeout".into()));
        assert_eq!(g.next(1, &mut rng).unwrap().f, "setup");
        g.completed(1, &setup, &Completion::Ok(json!({})));
        let a = g.next(2, &mut rng).unwrap();
        let b = g.next(2, &mut rng).unwrap();
        assert_eq!(a.f, "order");
        assert_ne!(a.value["order"], b.value["order"]);
    }
}
