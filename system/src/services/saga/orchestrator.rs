//! The order saga's orchestrator: reserve stock, charge the customer, ship;
//! when a step is refused or keeps failing, undo what may have been done in
//! reverse order (ship is cancelled, the charge refunded, the stock released).
//!
//! The saga's state is its event stream `saga-ORDER` in the event store: every
//! transition is an append at the version the driver last read, so two
//! drivers of one saga (the node the client asked, and the leader's recovery
//! after a crash) never both move it: the loser reads again and carries on
//! from there. Steps are repeated with the same idempotency key, so a retry
//! after a lost reply or a crash between acting and recording does not act
//! twice.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::steps::{Action, Outcome, Step, StepCommand};
use crate::clock::Clock;
use crate::consensus::{Consensus, Reply};
use crate::services::events::{EventCommand, NewEvent};
use crate::services::shards::{crash, Answer, Kind, Shards};
use crate::types::NodeId;

/// Tries of a forward step before the saga gives up on it and compensates.
pub const TRIES: u32 = 4;
/// A saga whose last event is older than this is taken over by the leader.
pub const STALL_MS: u64 = 2000;
/// How often the leader looks for stalled sagas.
const RECOVER_EVERY: Duration = Duration::from_millis(500);
/// First and largest backoff between tries (full jitter below it).
const BACKOFF_FIRST_MS: u64 = 20;
const BACKOFF_CAP_MS: u64 = 400;

/// The forward steps in order, each with the compensation that undoes it.
pub const STEPS: [(&str, Action, &str, Action); 3] = [
    ("reserve", Action::Reserve, "release", Action::Release),
    ("charge", Action::Charge, "refund", Action::Refund),
    ("ship", Action::Ship, "cancel", Action::Cancel),
];

/// What an order asks for.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Order {
    pub order: String,
    pub customer: String,
    pub item: String,
    pub qty: i64,
    pub amount: i64,
}

/// A saga as its stream tells it.
#[derive(Clone, Debug, Default)]
pub struct Saga {
    /// Events in its stream (the version the next append expects).
    pub version: u64,
    pub order: Option<Order>,
    pub done: Vec<String>,
    /// The step that failed and why.
    pub failed: Option<(String, String)>,
    pub compensated: Vec<String>,
    /// `completed` or `compensated` once it ended.
    pub end: Option<String>,
}

impl Saga {
    /// Folds a stream's events (as the event store reads them).
    pub fn from_events(events: &[Value]) -> Saga {
        let mut s = Saga {
            version: events.len() as u64,
            ..Saga::default()
        };
        for e in events {
            let step = e["data"]["step"].as_str().unwrap_or_default().to_string();
            match e["type"].as_str().unwrap_or_default() {
                "saga-started" => s.order = serde_json::from_value(e["data"].clone()).ok(),
                "step-done" => s.done.push(step),
                "step-failed" => {
                    let reason = e["data"]["reason"].as_str().unwrap_or_default();
                    s.failed = Some((step, reason.to_string()));
                }
                "step-compensated" => s.compensated.push(step),
                "saga-completed" => s.end = Some("completed".into()),
                "saga-compensated" => s.end = Some("compensated".into()),
                _ => {}
            }
        }
        s
    }

    /// What the saga does next.
    fn next(&self, skip_refund_after_ship: bool) -> Next {
        if self.end.is_some() {
            return Next::Ended;
        }
        let Some((failed, _)) = &self.failed else {
            return match STEPS.iter().find(|s| !self.done.iter().any(|d| d == s.0)) {
                Some(&(name, action, _, _)) => Next::Forward(name, action),
                None => Next::Finish("saga-completed"),
            };
        };
        // Undo, newest first, every step done and the one that failed (it may
        // have acted before its reply was lost; undoing what was not done
        // only cancels it).
        for &(name, _, undo, action) in STEPS.iter().rev() {
            let touched = self.done.iter().any(|d| d == name) || failed == name;
            if !touched || self.compensated.iter().any(|c| c == name) {
                continue;
            }
            if skip_refund_after_ship && failed == "ship" && name == "charge" {
                continue;
            }
            return Next::Undo(name, undo, action);
        }
        Next::Finish("saga-compensated")
    }
}

enum Next {
    Ended,
    Forward(&'static str, Action),
    Undo(&'static str, &'static str, Action),
    Finish(&'static str),
}

/// Why a drive stopped before the saga ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Stopped {
    /// This node is not the leader (the saga was not touched by this call).
    NotLeader(Option<NodeId>),
    /// The log did not answer in time; the saga may have moved on.
    Unknown(String),
    /// The request itself is wrong (e.g. the order exists with other contents).
    Refused(String),
}

/// Drives sagas on one node.
pub struct Orchestrator {
    me: NodeId,
    /// The main group: the event store and the fault switch.
    consensus: Arc<dyn Consensus>,
    /// Where the services' calls go: the main group, or on a sharded node
    /// the shard of each call's key (items, wallets and orders spread over
    /// the shards' groups).
    steps: Arc<dyn Consensus>,
    /// The shards, to read every group's services (sharded nodes only).
    shards: Option<Arc<Shards>>,
    clock: Arc<Clock>,
    request_timeout: Duration,
    /// Planted bug `skip-compensation`.
    skip_refund: bool,
    /// Orders this node drives now, so recovery does not start a second driver.
    driving: Mutex<BTreeSet<String>>,
}

/// The saga's stream.
pub fn stream(order: &str) -> String {
    format!("saga-{order}")
}

/// Exponential backoff with full jitter: a random wait up to the try's cap.
fn backoff(try_no: u32) -> Duration {
    static STATE: AtomicU64 = AtomicU64::new(0);
    let cap = (BACKOFF_FIRST_MS << try_no.min(8)).min(BACKOFF_CAP_MS);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(7);
    let mut x = STATE.fetch_add(seed | 1, Ordering::Relaxed) ^ seed;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    Duration::from_millis(1 + x % cap)
}

impl Orchestrator {
    /// An orchestrator proposing through `consensus` (the main group), and
    /// on a sharded node calling the services in the shards.
    pub fn new(
        me: NodeId,
        consensus: Arc<dyn Consensus>,
        shards: Option<Arc<Shards>>,
        clock: Arc<Clock>,
        request_timeout: Duration,
        skip_refund: bool,
    ) -> Self {
        let steps = match &shards {
            Some(s) => crate::services::shards::api::key_routed(s.clone()),
            None => consensus.clone(),
        };
        Orchestrator {
            me,
            consensus,
            steps,
            shards,
            clock,
            request_timeout,
            skip_refund,
            driving: Mutex::new(BTreeSet::new()),
        }
    }

    async fn wait(&self, asked: crate::consensus::Asked<Reply>) -> Result<Value, Stopped> {
        let rx = asked.map_err(|e| Stopped::Unknown(format!("consensus refused: {e:?}")))?;
        match tokio::time::timeout(self.request_timeout, rx).await {
            Ok(Ok(Reply::Ok(v))) => Ok(v),
            Ok(Ok(Reply::NotLeader(l))) => Err(Stopped::NotLeader(l)),
            Ok(Ok(other)) => Err(Stopped::Unknown(format!("{other:?}"))),
            Ok(Err(_)) => Err(Stopped::Unknown("consensus stopped".into())),
            Err(_) => Err(Stopped::Unknown("no answer in time".into())),
        }
    }

    /// The saga as its stream says now (linearizable read).
    pub async fn load(&self, order: &str) -> Result<Saga, Stopped> {
        let q = json!({"events": "read", "stream": stream(order)});
        let v = self.wait(self.consensus.read(q)).await?;
        Ok(Saga::from_events(
            v["events"].as_array().map(Vec::as_slice).unwrap_or(&[]),
        ))
    }

    /// Appends one event at `version`; `false` if another driver got there first.
    async fn record(
        &self,
        order: &str,
        version: u64,
        kind: &str,
        data: Value,
    ) -> Result<bool, Stopped> {
        let cmd = EventCommand::EsAppend {
            stream: stream(order),
            expected: Some(version),
            events: vec![NewEvent {
                kind: kind.into(),
                data,
            }],
            at_ms: self.clock.now_ms().max(0) as u64,
        };
        let cmd = serde_json::to_value(cmd).map_err(|e| Stopped::Refused(e.to_string()))?;
        let v = self.wait(self.consensus.propose(cmd)).await?;
        Ok(v["ok"].as_bool().unwrap_or(false))
    }

    /// Calls a step until it is done or refused, at most `tries` times
    /// (compensations: until `deadline`). `None`: it kept failing.
    async fn call(
        &self,
        step: &mut Step,
        tries: u32,
        deadline: Instant,
    ) -> Result<Option<Outcome>, Stopped> {
        for n in 0.. {
            if n >= tries || Instant::now() >= deadline {
                break;
            }
            step.attempt = n;
            let cmd = serde_json::to_value(StepCommand::SagaStep(step.clone()))
                .map_err(|e| Stopped::Refused(e.to_string()))?;
            match self.wait(self.steps.propose(cmd)).await {
                Ok(v) => {
                    let last = serde_json::from_value(v["outcome"].clone())
                        .unwrap_or(Outcome::Unavailable);
                    if matches!(last, Outcome::Done | Outcome::Refused(_)) {
                        return Ok(Some(last));
                    }
                }
                Err(Stopped::NotLeader(l)) => return Err(Stopped::NotLeader(l)),
                // Unknown outcome: the same key again is safe.
                Err(_) => {}
            }
            tokio::time::sleep(backoff(n)).await;
        }
        Ok(None)
    }

    fn step(order: &Order, name: &str, action: Action, of: &str, faults: &Value) -> Step {
        let route = match action.service() {
            "inventory" => format!("item/{}", order.item),
            "payment" => format!("wallet/{}", order.customer),
            _ => format!("order/{}", order.order),
        };
        Step {
            action,
            key: format!("{}/{name}", order.order),
            route,
            faults: Some(
                serde_json::from_value(faults[action.service()].clone()).unwrap_or_default(),
            ),
            order: order.order.clone(),
            item: order.item.clone(),
            qty: order.qty,
            customer: order.customer.clone(),
            amount: order.amount,
            of: if of.is_empty() {
                String::new()
            } else {
                format!("{}/{of}", order.order)
            },
            attempt: 0,
        }
    }

    /// Starts the saga for `order` (or finds the one already started for it)
    /// and drives it to its end, or until `deadline`.
    pub async fn start(&self, order: Order, deadline: Instant) -> Result<Saga, Stopped> {
        let saga = self.load(&order.order).await?;
        match &saga.order {
            Some(existing) if *existing != order => {
                return Err(Stopped::Refused(format!(
                    "order `{}` exists with other contents",
                    order.order
                )))
            }
            Some(_) => {}
            None => {
                let data =
                    serde_json::to_value(&order).map_err(|e| Stopped::Refused(e.to_string()))?;
                // Lost to another start of the same order: drive that one
                // only if it asks for the same.
                if !self.record(&order.order, 0, "saga-started", data).await? {
                    let won = self.load(&order.order).await?;
                    if won.order.as_ref() != Some(&order) {
                        return Err(Stopped::Refused(format!(
                            "order `{}` exists with other contents",
                            order.order
                        )));
                    }
                }
            }
        }
        // Leadership lost from here on leaves a saga under way, not untouched.
        self.drive(&order.order, deadline)
            .await
            .map_err(|e| match e {
                Stopped::NotLeader(_) => Stopped::Unknown("leadership lost mid-saga".into()),
                e => e,
            })
    }

    /// Stocks the items and fills the wallets, one command per item and per
    /// customer, each in the group its key names.
    pub async fn setup(
        &self,
        stock: BTreeMap<String, i64>,
        wallets: BTreeMap<String, i64>,
    ) -> Result<(), Stopped> {
        let items = stock.into_iter().map(|(i, n)| {
            let key = format!("item/{i}");
            (key, [(i, n)].into(), BTreeMap::new())
        });
        let customers = wallets.into_iter().map(|(c, n)| {
            let key = format!("wallet/{c}");
            (key, BTreeMap::new(), [(c, n)].into())
        });
        for (key, stock, wallets) in items.chain(customers) {
            let cmd = StepCommand::SagaSetup {
                stock,
                wallets,
                key,
            };
            let cmd = serde_json::to_value(cmd).map_err(|e| Stopped::Refused(e.to_string()))?;
            let answer = self.wait(self.steps.propose(cmd)).await?;
            if answer["ok"] != true {
                return Err(Stopped::Refused(format!("setup refused: {answer}")));
            }
        }
        Ok(())
    }

    /// The services' state: the main group's, merged on a sharded node with
    /// every shard's (stock, wallets, shipments and ledger entries each live
    /// in one shard).
    pub async fn services(&self) -> Result<Value, Stopped> {
        let q = json!({"saga-services": true});
        let mut all = self.wait(self.consensus.read(q.clone())).await?;
        let Some(shards) = &self.shards else {
            return Ok(all);
        };
        for shard in 1..=shards.placement().shards() {
            let deadline = Instant::now() + self.request_timeout;
            let part = match shards
                .call(shard, Kind::Read, q.clone(), true, deadline)
                .await
            {
                Answer::Ok(v) => v,
                other => {
                    return Err(Stopped::Unknown(format!("shard {shard}: {other:?}")));
                }
            };
            if part["set_up"] == true {
                all["set_up"] = json!(true);
            }
            for field in ["stock", "wallets", "shipments"] {
                if let (Some(to), Some(from)) =
                    (all[field].as_object_mut(), part[field].as_object())
                {
                    to.extend(from.clone());
                }
            }
            if let (Some(to), Some(from)) =
                (all["ledger"].as_array_mut(), part["ledger"].as_array())
            {
                to.extend(from.iter().cloned());
            }
        }
        Ok(all)
    }

    /// Every saga, read from the global log page by page.
    pub async fn all(&self) -> Result<Vec<Saga>, Stopped> {
        let mut streams: std::collections::BTreeMap<String, Vec<Value>> = Default::default();
        let mut from = 0u64;
        loop {
            let q = json!({"events": "all", "from": from});
            let v = self.wait(self.consensus.read(q)).await?;
            let events = v["events"].as_array().cloned().unwrap_or_default();
            let Some(last) = events.last().and_then(|e| e["position"].as_u64()) else {
                break;
            };
            for e in events {
                if let Some(name) = e["stream"].as_str().filter(|n| n.starts_with("saga-")) {
                    streams.entry(name.to_string()).or_default().push(e);
                }
            }
            from = last + 1;
        }
        Ok(streams.values().map(|e| Saga::from_events(e)).collect())
    }

    /// Moves the saga on until it ends or `deadline` passes (then it answers
    /// the saga as it stands, not ended).
    pub async fn drive(&self, order: &str, deadline: Instant) -> Result<Saga, Stopped> {
        {
            let mut driving = self.driving.lock().unwrap_or_else(|e| e.into_inner());
            driving.insert(order.to_string());
        }
        let result = self.drive_steps(order, deadline).await;
        self.driving
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(order);
        result
    }

    async fn drive_steps(&self, order: &str, deadline: Instant) -> Result<Saga, Stopped> {
        // The fault switch as it stands when the drive begins.
        let q = json!({"saga-services": true});
        let faults = self.wait(self.consensus.read(q)).await?["faults"].take();
        loop {
            let saga = self.load(order).await?;
            let Some(spec) = saga.order.clone() else {
                return Err(Stopped::Refused(format!("no saga for order `{order}`")));
            };
            if Instant::now() >= deadline {
                return Ok(saga);
            }
            let v = saga.version;
            match saga.next(self.skip_refund) {
                Next::Ended => return Ok(saga),
                Next::Finish(kind) => {
                    self.record(order, v, kind, json!({})).await?;
                }
                Next::Forward(name, action) => {
                    let mut step = Self::step(&spec, name, action, "", &faults);
                    let (kind, data) = match self.call(&mut step, TRIES, deadline).await? {
                        Some(Outcome::Done) => {
                            // Acted but not recorded: the next driver repeats
                            // the step under the same key.
                            crash::reach(&self.me, &format!("saga-before-recording-{name}"));
                            ("step-done", json!({"step": name}))
                        }
                        Some(Outcome::Refused(why)) => {
                            ("step-failed", json!({"step": name, "reason": why}))
                        }
                        _ if Instant::now() >= deadline => continue,
                        _ => (
                            "step-failed",
                            json!({"step": name, "reason": format!("no success in {TRIES} tries")}),
                        ),
                    };
                    if self.record(order, v, kind, data).await? && kind == "step-done" {
                        crash::reach(&self.me, &format!("saga-after-{name}"));
                    }
                }
                Next::Undo(name, undo, action) => {
                    let mut step = Self::step(&spec, undo, action, name, &faults);
                    if let Some(Outcome::Done) = self.call(&mut step, u32::MAX, deadline).await? {
                        self.record(order, v, "step-compensated", json!({"step": name}))
                            .await?;
                    }
                }
            }
        }
    }

    /// While this node leads, takes over sagas whose last event is older
    /// than [`STALL_MS`] (their driver crashed, lost leadership or gave up).
    pub async fn recover(self: Arc<Self>) {
        loop {
            tokio::time::sleep(RECOVER_EVERY).await;
            let leads = match self.consensus.status() {
                Ok(rx) => rx
                    .await
                    .is_ok_and(|s| s.leader.as_deref() == Some(&*self.me)),
                Err(_) => false,
            };
            if !leads {
                continue;
            }
            let q = json!({"events": "streams", "prefix": "saga-"});
            let Ok(v) = self.wait(self.consensus.read(q)).await else {
                continue;
            };
            let now = self.clock.now_ms().max(0) as u64;
            for s in v["streams"].as_array().into_iter().flatten() {
                let last = s["last_type"].as_str().unwrap_or_default();
                let at = s["last_at_ms"].as_u64().unwrap_or(0);
                if matches!(last, "saga-completed" | "saga-compensated") || now < at + STALL_MS {
                    continue;
                }
                let Some(order) = s["stream"].as_str().and_then(|n| n.strip_prefix("saga-")) else {
                    continue;
                };
                if self
                    .driving
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .contains(order)
                {
                    continue;
                }
                crate::log_line!(self.me, "saga {order}: stalled since {at}, taking over");
                let me = self.clone();
                let order = order.to_string();
                tokio::spawn(async move {
                    let deadline = Instant::now() + me.request_timeout * 10;
                    let _ = me.drive(&order, deadline).await;
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(kinds: &[(&str, &str)]) -> Vec<Value> {
        let mut out = vec![
            json!({"type": "saga-started", "data": {"order": "o", "customer": "c", "item": "i", "qty": 1, "amount": 5}}),
        ];
        for (kind, step) in kinds {
            out.push(json!({"type": kind, "data": {"step": step, "reason": "r"}}));
        }
        out
    }

    fn next(kinds: &[(&str, &str)], bug: bool) -> String {
        match Saga::from_events(&events(kinds)).next(bug) {
            Next::Ended => "ended".into(),
            Next::Forward(s, _) => format!("do {s}"),
            Next::Undo(s, u, _) => format!("undo {s} by {u}"),
            Next::Finish(k) => k.into(),
        }
    }

    #[test]
    fn steps_run_in_order_and_failures_undo_newest_first() {
        assert_eq!(next(&[], false), "do reserve");
        assert_eq!(next(&[("step-done", "reserve")], false), "do charge");
        let all = [
            ("step-done", "reserve"),
            ("step-done", "charge"),
            ("step-done", "ship"),
        ];
        assert_eq!(next(&all, false), "saga-completed");
        let failed_ship = [
            ("step-done", "reserve"),
            ("step-done", "charge"),
            ("step-failed", "ship"),
        ];
        assert_eq!(next(&failed_ship, false), "undo ship by cancel");
        let mut more = failed_ship.to_vec();
        more.push(("step-compensated", "ship"));
        assert_eq!(next(&more, false), "undo charge by refund");
        // The planted bug never refunds after a failed shipment.
        assert_eq!(next(&more, true), "undo reserve by release");
        more.push(("step-compensated", "charge"));
        more.push(("step-compensated", "reserve"));
        assert_eq!(next(&more, false), "saga-compensated");
        more.push(("saga-compensated", ""));
        assert_eq!(next(&more, false), "ended");
        // A refused charge is undone too (cancelling its key), then the stock.
        let failed_charge = [("step-done", "reserve"), ("step-failed", "charge")];
        assert_eq!(next(&failed_charge, false), "undo charge by refund");
        let s = Saga::from_events(&events(&failed_charge));
        assert_eq!(s.version, 3);
        assert_eq!(s.failed, Some(("charge".into(), "r".into())));
    }
}
