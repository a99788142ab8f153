//! Workload `bank` (Jepsen's bank): accounts start with equal balances, clients
//! transfer random amounts between two accounts in one transaction (`add` on
//! each, which refuses to take a balance below zero) and read every account in
//! one transaction. Under any fault, every read must see the same total and no
//! negative balance: a transfer seen half done, a lost or doubled write, or a
//! read across shards that is not one snapshot all show up as a wrong total.
//! With `--shards`, the accounts spread over the shards, so transfers and
//! reads run two-phase commit.

pub mod checks;

use std::sync::Arc;

use checker::{CheckOptions, History};
use serde_json::{json, Value};

use crate::{
    Checked, Client, Completion, Endpoint, Generator, Invocation, Rng, Workload, WorkloadOptions,
};

/// Every account's opening balance.
pub const OPENING: i64 = 100;
/// Largest amount one transfer moves.
const MAX_TRANSFER: u64 = 5;

/// The `bank` workload.
pub struct BankWorkload;

impl Workload for BankWorkload {
    fn name(&self) -> &'static str {
        "bank"
    }

    fn generator(&self, options: &WorkloadOptions) -> Box<dyn Generator> {
        Box::new(BankGenerator::new(options.keys.max(2)))
    }

    fn client(&self, nodes: Vec<Endpoint>, options: &WorkloadOptions) -> Arc<dyn Client> {
        crate::txn::client(nodes, options)
    }

    fn model(&self) -> &'static str {
        "none"
    }

    fn check(&self, history: &History, _options: &CheckOptions) -> Result<Checked, String> {
        let mut checked = Checked::default();
        checked.add("bank", checks::check(history));
        Ok(checked)
    }
}

/// Opens the accounts until an opening succeeds, then transfers (four in
/// five ops) and reads of every account.
pub struct BankGenerator {
    accounts: u64,
    opened: bool,
    opening: bool,
}

impl BankGenerator {
    /// A bank of `accounts` accounts.
    pub fn new(accounts: usize) -> Self {
        BankGenerator {
            accounts: accounts as u64,
            opened: false,
            opening: false,
        }
    }

    fn read_all(&self) -> Invocation {
        Invocation {
            f: "read".into(),
            key: None,
            value: Value::Array((0..self.accounts).map(|a| json!(["r", a, null])).collect()),
        }
    }
}

impl Generator for BankGenerator {
    fn next(&mut self, _process: u64, rng: &mut Rng) -> Option<Invocation> {
        if !self.opened && !self.opening {
            // Opening again after an unknown outcome is harmless: it sets every
            // balance back to the opening one, which keeps the total.
            self.opening = true;
            return Some(Invocation {
                f: "open".into(),
                key: None,
                value: Value::Array(
                    (0..self.accounts)
                        .map(|a| json!(["w", a, OPENING]))
                        .collect(),
                ),
            });
        }
        if rng.below(5) == 0 {
            return Some(self.read_all());
        }
        let from = rng.below(self.accounts);
        let to = (from + 1 + rng.below(self.accounts - 1)) % self.accounts;
        let amount = 1 + rng.below(MAX_TRANSFER) as i64;
        Some(Invocation {
            f: "transfer".into(),
            key: None,
            value: json!([["add", from, -amount], ["add", to, amount]]),
        })
    }

    fn completed(&mut self, _process: u64, op: &Invocation, done: &Completion) {
        if op.f == "open" {
            self.opening = false;
            self.opened |= matches!(done, Completion::Ok(_));
        }
    }

    fn final_ops(&self) -> Vec<Invocation> {
        vec![self.read_all()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_once_then_moves_money_between_distinct_accounts() {
        let mut g = BankGenerator::new(4);
        let mut rng = Rng::new(3);
        let open = g.next(0, &mut rng).unwrap();
        assert_eq!(open.f, "open");
        // While the opening is out, nobody opens again.
        assert_ne!(g.next(1, &mut rng).unwrap().f, "open");
        g.completed(0, &open, &Completion::Info("timeout".into()));
        assert_eq!(g.next(2, &mut rng).unwrap().f, "open");
        g.completed(2, &open, &Completion::Ok(Value::Null));
        let mut transfers = 0;
        for p in 0..200 {
            let op = g.next(p, &mut rng).unwrap();
            assert_ne!(op.f, "open");
            if op.f == "transfer" {
                transfers += 1;
                let v = op.value.as_array().unwrap();
                assert_ne!(v[0][1], v[1][1], "{}", op.value);
                assert_eq!(v[0][2].as_i64().unwrap(), -v[1][2].as_i64().unwrap());
            } else {
                assert_eq!(op.value.as_array().unwrap().len(), 4);
            }
        }
        assert!(transfers > 120, "{transfers}");
    }
}
