//! The services the order saga calls, as replicated state: inventory (stock
//! per item), payment (a wallet per customer, a ledger of charges) and
//! shipping. Every action and compensation carries an idempotency key: the
//! first outcome for a key is recorded and any repeat answers it again without
//! acting. A compensation that arrives before its action cancels the key, so
//! a late action does nothing. Injected faults (per service, chosen from a
//! hash of the key and the attempt, so every replica agrees) make a call fail
//! before it acts or lose its reply after it acted.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// The saga's services.
pub const SERVICES: &[&str] = &["inventory", "payment", "shipping"];

/// A command of the saga's services.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum StepCommand {
    /// Stocks the items and fills the wallets not yet known; known ones are
    /// left as they are, so a repeat is a no-op. `key` routes it on a
    /// sharded node.
    SagaSetup {
        stock: BTreeMap<String, i64>,
        wallets: BTreeMap<String, i64>,
        #[serde(default)]
        key: String,
    },
    /// Sets a service's injected faults.
    SagaFaults { service: String, faults: Faults },
    /// One action or compensation.
    SagaStep(Step),
}

impl StepCommand {
    /// Whether `command` is the saga services'.
    pub fn owns(command: &Value) -> bool {
        matches!(
            command.get("op").and_then(Value::as_str),
            Some("saga-setup" | "saga-faults" | "saga-step")
        )
    }
}

/// The faults a service shows, as shares of calls.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    /// Calls refused before acting (the service is down).
    #[serde(default)]
    pub fail: f64,
    /// Calls that act but whose reply is lost.
    #[serde(default)]
    pub lose_reply: f64,
}

/// What a step does.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Inventory: take `qty` of `item` from stock.
    Reserve,
    /// Inventory: give back what the reserve under `of` took.
    Release,
    /// Payment: take `amount` from `customer`'s wallet.
    Charge,
    /// Payment: give back what the charge under `of` took.
    Refund,
    /// Shipping: ship `qty` of `item` for the order.
    Ship,
    /// Shipping: call back the shipment under `of`.
    Cancel,
}

impl Action {
    /// The service that performs it.
    pub fn service(self) -> &'static str {
        match self {
            Action::Reserve | Action::Release => "inventory",
            Action::Charge | Action::Refund => "payment",
            Action::Ship | Action::Cancel => "shipping",
        }
    }
}

/// One call to a service.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Step {
    pub action: Action,
    /// The idempotency key.
    #[serde(rename = "idempotency_key")]
    pub key: String,
    /// What the call is about (`item/I`, `wallet/C`, `order/O`): on a sharded
    /// node it goes to that key's shard.
    #[serde(rename = "key", default)]
    pub route: String,
    /// The service's injected faults when the call was made (the main
    /// group keeps the switch; a shard's copy of the services has none).
    #[serde(default)]
    pub faults: Option<Faults>,
    /// The order it is for.
    pub order: String,
    #[serde(default)]
    pub item: String,
    #[serde(default)]
    pub qty: i64,
    #[serde(default)]
    pub customer: String,
    #[serde(default)]
    pub amount: i64,
    /// For a compensation, the key of the action it undoes.
    #[serde(default)]
    pub of: String,
    /// Which try this is (faults are drawn per try).
    #[serde(default)]
    pub attempt: u32,
}

/// How a call ended, as the services answer it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// It acted (or had acted for this key before).
    Done,
    /// A business rule refused it (out of stock, not enough money, cancelled);
    /// nothing was done, and a repeat is refused alike.
    Refused(String),
    /// The service failed before acting; a retry may succeed.
    Unavailable,
    /// It acted, but the reply was lost; a retry answers what it did.
    ReplyLost,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Record {
    outcome: Outcome,
    /// The step as done, for its compensation.
    step: Option<Step>,
}

/// The three services' state.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Services {
    set_up: bool,
    stock: BTreeMap<String, i64>,
    wallets: BTreeMap<String, i64>,
    /// Shipments by order.
    shipments: BTreeMap<String, Value>,
    /// Every charge taken and refund given, in order.
    ledger: Vec<Value>,
    /// First outcome per idempotency key.
    outcomes: BTreeMap<String, Record>,
    faults: BTreeMap<String, Faults>,
    /// Planted bug `non-idempotent-charge`.
    #[serde(skip)]
    pub charge_again: bool,
}

/// A share in [0, 1) drawn from the key and the attempt: the same on every replica.
fn draw(key: &str, attempt: u32, salt: u8) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes().chain(attempt.to_le_bytes()).chain([salt]) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // FNV alone leaves the high bits barely touched by the last bytes (the
    // try): mix them all, or one failed try would predict the next.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    (h >> 11) as f64 / (1u64 << 53) as f64
}

impl Services {
    /// Applies a committed command.
    pub fn apply(&mut self, cmd: StepCommand) -> Value {
        match cmd {
            StepCommand::SagaSetup { stock, wallets, .. } => {
                self.set_up = true;
                for (item, n) in stock {
                    self.stock.entry(item).or_insert(n);
                }
                for (customer, n) in wallets {
                    self.wallets.entry(customer).or_insert(n);
                }
                json!({"ok": true})
            }
            StepCommand::SagaFaults { service, faults } => {
                if !SERVICES.contains(&service.as_str()) {
                    return json!({"ok": false, "error": "unknown-service"});
                }
                self.faults.insert(service, faults);
                json!({"ok": true})
            }
            StepCommand::SagaStep(step) => {
                let outcome = self.step(step);
                json!({"ok": true, "outcome": outcome})
            }
        }
    }

    fn step(&mut self, step: Step) -> Outcome {
        let faults = step.faults.unwrap_or_else(|| {
            self.faults
                .get(step.action.service())
                .copied()
                .unwrap_or_default()
        });
        if draw(&step.key, step.attempt, 1) < faults.fail {
            return Outcome::Unavailable;
        }
        let lose = draw(&step.key, step.attempt, 2) < faults.lose_reply;
        let repeat_charge = self.charge_again && step.action == Action::Charge;
        if let Some(r) = self.outcomes.get(&step.key) {
            let first = r.outcome.clone();
            if repeat_charge && first == Outcome::Done {
                // The bug charges again (when the wallet allows) and answers
                // as if it had not.
                self.act(&step);
            }
            return first;
        }
        let outcome = self.act(&step);
        self.outcomes.insert(
            step.key.clone(),
            Record {
                outcome: outcome.clone(),
                step: Some(step),
            },
        );
        if lose && outcome == Outcome::Done {
            return Outcome::ReplyLost;
        }
        outcome
    }

    /// Does what a step asks, the first time its key is seen.
    fn act(&mut self, s: &Step) -> Outcome {
        let refused = |why: &str| Outcome::Refused(why.to_string());
        match s.action {
            Action::Reserve => match self.stock.get_mut(&s.item) {
                None => refused("unknown-item"),
                Some(n) if *n < s.qty => refused("out-of-stock"),
                Some(n) => {
                    *n -= s.qty;
                    Outcome::Done
                }
            },
            Action::Charge => match self.wallets.get_mut(&s.customer) {
                None => refused("unknown-customer"),
                Some(n) if *n < s.amount => refused("insufficient-funds"),
                Some(n) => {
                    *n -= s.amount;
                    self.ledger.push(json!({"charge": s.key, "order": s.order,
                                            "customer": s.customer, "amount": s.amount}));
                    Outcome::Done
                }
            },
            Action::Ship => {
                self.shipments
                    .insert(s.order.clone(), json!({"item": s.item, "qty": s.qty}));
                Outcome::Done
            }
            Action::Release | Action::Refund | Action::Cancel => {
                let done = self
                    .outcomes
                    .get(&s.of)
                    .filter(|r| r.outcome == Outcome::Done)
                    .and_then(|r| r.step.clone());
                match done {
                    Some(original) => self.undo(&original),
                    // Nothing was done under that key: cancel it, so a late
                    // call does nothing.
                    None => {
                        self.outcomes.insert(
                            s.of.clone(),
                            Record {
                                outcome: refused("cancelled"),
                                step: None,
                            },
                        );
                    }
                }
                Outcome::Done
            }
        }
    }

    fn undo(&mut self, original: &Step) {
        match original.action {
            Action::Reserve => {
                *self.stock.entry(original.item.clone()).or_default() += original.qty
            }
            Action::Charge => {
                *self.wallets.entry(original.customer.clone()).or_default() += original.amount;
                self.ledger
                    .push(json!({"refund": original.key, "order": original.order,
                                        "customer": original.customer, "amount": original.amount}));
            }
            Action::Ship => {
                self.shipments.remove(&original.order);
            }
            _ => {}
        }
    }

    /// Answers `{"saga-services": true}`: stock, wallets, shipments and the ledger.
    pub fn query(&self, query: &Value) -> Option<Value> {
        query.get("saga-services")?;
        Some(
            json!({"set_up": self.set_up, "stock": self.stock, "wallets": self.wallets,
                    "shipments": self.shipments, "ledger": self.ledger, "faults": self.faults}),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(action: Action, key: &str, of: &str, attempt: u32) -> StepCommand {
        StepCommand::SagaStep(Step {
            action,
            key: key.into(),
            route: String::new(),
            faults: None,
            order: "o1".into(),
            item: "i".into(),
            qty: 2,
            customer: "c".into(),
            amount: 20,
            of: of.into(),
            attempt,
        })
    }

    fn set_up(charge_again: bool) -> Services {
        let mut s = Services {
            charge_again,
            ..Services::default()
        };
        s.apply(StepCommand::SagaSetup {
            stock: [("i".to_string(), 3)].into(),
            wallets: [("c".to_string(), 50)].into(),
            key: String::new(),
        });
        // A second setup changes nothing it names again.
        s.apply(StepCommand::SagaSetup {
            stock: [("i".to_string(), 99)].into(),
            wallets: BTreeMap::new(),
            key: String::new(),
        });
        s
    }

    fn outcome(s: &mut Services, cmd: StepCommand) -> Outcome {
        serde_json::from_value(s.apply(cmd)["outcome"].clone()).unwrap()
    }

    #[test]
    fn a_repeated_key_answers_the_first_outcome_without_acting_again() {
        let mut s = set_up(false);
        assert_eq!(
            outcome(&mut s, step(Action::Charge, "k1", "", 0)),
            Outcome::Done
        );
        assert_eq!(
            outcome(&mut s, step(Action::Charge, "k1", "", 1)),
            Outcome::Done
        );
        assert_eq!(s.wallets["c"], 30);
        assert_eq!(
            outcome(&mut s, step(Action::Charge, "k2", "", 0)),
            Outcome::Done
        );
        let refused = outcome(&mut s, step(Action::Charge, "k3", "", 0));
        assert_eq!(refused, Outcome::Refused("insufficient-funds".into()));
        assert_eq!(outcome(&mut s, step(Action::Charge, "k3", "", 1)), refused);
        assert_eq!(
            outcome(&mut s, step(Action::Refund, "r1", "k1", 0)),
            Outcome::Done
        );
        assert_eq!(
            outcome(&mut s, step(Action::Refund, "r1", "k1", 1)),
            Outcome::Done
        );
        assert_eq!(s.wallets["c"], 30);
        assert_eq!(s.ledger.len(), 3);
        assert_eq!(
            outcome(&mut s, step(Action::Reserve, "v1", "", 0)),
            Outcome::Done
        );
        let out = outcome(&mut s, step(Action::Reserve, "v2", "", 0));
        assert_eq!(out, Outcome::Refused("out-of-stock".into()));
        assert_eq!(s.stock["i"], 1);
    }

    #[test]
    fn a_compensation_before_its_action_cancels_the_action() {
        let mut s = set_up(false);
        assert_eq!(
            outcome(&mut s, step(Action::Release, "rel", "res", 0)),
            Outcome::Done
        );
        let late = outcome(&mut s, step(Action::Reserve, "res", "", 0));
        assert_eq!(late, Outcome::Refused("cancelled".into()));
        assert_eq!(s.stock["i"], 3);
        assert_eq!(
            outcome(&mut s, step(Action::Ship, "sh", "", 0)),
            Outcome::Done
        );
        assert_eq!(
            outcome(&mut s, step(Action::Cancel, "can", "sh", 0)),
            Outcome::Done
        );
        assert!(s.shipments.is_empty());
    }

    #[test]
    fn a_lost_reply_has_acted_and_the_planted_bug_charges_on_the_retry() {
        for bug in [false, true] {
            let mut s = set_up(bug);
            s.apply(StepCommand::SagaFaults {
                service: "payment".into(),
                faults: Faults {
                    fail: 0.0,
                    lose_reply: 1.0,
                },
            });
            assert_eq!(
                outcome(&mut s, step(Action::Charge, "k", "", 0)),
                Outcome::ReplyLost
            );
            assert_eq!(s.wallets["c"], 30);
            s.apply(StepCommand::SagaFaults {
                service: "payment".into(),
                faults: Faults::default(),
            });
            assert_eq!(
                outcome(&mut s, step(Action::Charge, "k", "", 1)),
                Outcome::Done
            );
            assert_eq!(s.wallets["c"], if bug { 10 } else { 30 });
        }
    }

    #[test]
    fn injected_failures_act_on_nothing_and_are_drawn_alike_everywhere() {
        let mut s = set_up(false);
        s.apply(StepCommand::SagaFaults {
            service: "inventory".into(),
            faults: Faults {
                fail: 0.5,
                lose_reply: 0.0,
            },
        });
        let mut unavailable = 0;
        for attempt in 0..200 {
            let key = format!("x{attempt}");
            let mut copy = s.clone();
            let a = outcome(&mut s, step(Action::Release, &key, "none", attempt));
            let b = outcome(&mut copy, step(Action::Release, &key, "none", attempt));
            assert_eq!(a, b);
            unavailable += usize::from(a == Outcome::Unavailable);
        }
        assert!((60..140).contains(&unavailable), "{unavailable}");
        // Tries of one key are drawn independently: all four fail for about
        // one key in sixteen at a share of one half.
        let all_four = (0..2000)
            .filter(|k| {
                let key = format!("o{k}/ship");
                (0..4).all(|t| draw(&key, t, 1) < 0.5)
            })
            .count();
        assert!((75..190).contains(&all_four), "{all_four}");
        let bad = s.apply(StepCommand::SagaFaults {
            service: "billing".into(),
            faults: Faults::default(),
        });
        assert_eq!(bad["error"], "unknown-service");
    }
}
