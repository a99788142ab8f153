//! The checker agrees with a brute-force enumeration on random small histories.

mod common;

use checker::history::Op;
use checker::value::Value;
use checker::{check_named, CheckOptions, Engine, Validity};
use common::{apply, brute_force, linearizable};
use proptest::prelude::*;
use proptest::strategy::ValueTree;

/// One client step of a generated history.
#[derive(Clone, Debug)]
enum Gen {
    Read,
    Write(i64),
    Cas(i64, i64),
}

fn gen_op(with_cas: bool) -> BoxedStrategy<Gen> {
    if with_cas {
        prop_oneof![
            Just(Gen::Read),
            (0i64..3).prop_map(Gen::Write),
            (0i64..3, 0i64..3).prop_map(|(a, b)| Gen::Cas(a, b)),
        ]
        .boxed()
    } else {
        prop_oneof![Just(Gen::Read), (0i64..3).prop_map(Gen::Write)].boxed()
    }
}

/// A process's open op: its id, what it does, the dice for its outcome, what a read saw.
type Open = (u64, Gen, u8, Option<i64>);

/// Interleaves up to 3 processes' ops into JSONL, with random results and outcomes.
fn gen_history() -> impl Strategy<Value = String> {
    gen_history_of(true)
}

/// As [`gen_history`]; without cas ops when `with_cas` is false (`register`).
fn gen_history_of(with_cas: bool) -> impl Strategy<Value = String> {
    (
        proptest::collection::vec(
            (
                0u64..3,
                gen_op(with_cas),
                0u8..10,
                prop::option::of(0i64..3),
            ),
            1..8,
        ),
        proptest::collection::vec(any::<bool>(), 16),
    )
        .prop_map(|(ops, coin)| {
            let mut lines = Vec::new();
            let mut open: Vec<Option<Open>> = vec![None, None, None];
            let mut next_id = [0u64, 1, 2];
            let mut fresh = 3;
            let mut c = 0;
            let emit_completion = |slot: usize,
                                   lines: &mut Vec<String>,
                                   open: &mut Vec<Option<Open>>,
                                   next_id: &mut [u64; 3],
                                   fresh: &mut u64| {
                if let Some((p, g, roll, seen)) = open[slot].take() {
                    let kind = match roll {
                        0 | 1 => "info",
                        2 if matches!(g, Gen::Cas(..)) => "fail",
                        _ => "ok",
                    };
                    let (f, v) = match g {
                        Gen::Read => ("read", seen.map_or("null".into(), |x| x.to_string())),
                        Gen::Write(x) => ("write", x.to_string()),
                        // Jepsen's etcd client answers a mismatch with `false`.
                        Gen::Cas(_, _) if roll == 3 && kind == "ok" => ("cas", "false".to_string()),
                        Gen::Cas(a, b) => ("cas", format!("[{a},{b}]")),
                    };
                    lines.push(format!(
                        "{{\"type\":\"{kind}\",\"process\":{p},\"f\":\"{f}\",\"value\":{v}}}"
                    ));
                    if kind == "info" {
                        next_id[slot] = *fresh;
                        *fresh += 1;
                    }
                }
            };
            for (slot, g, roll, seen) in ops {
                let slot = slot as usize;
                // Sometimes complete another process first, to vary the overlap.
                if coin[c % coin.len()] {
                    let other = (slot + 1) % 3;
                    emit_completion(other, &mut lines, &mut open, &mut next_id, &mut fresh);
                }
                c += 1;
                emit_completion(slot, &mut lines, &mut open, &mut next_id, &mut fresh);
                let p = next_id[slot];
                let (f, v) = match g {
                    Gen::Read => ("read", "null".to_string()),
                    Gen::Write(x) => ("write", x.to_string()),
                    Gen::Cas(a, b) => ("cas", format!("[{a},{b}]")),
                };
                lines.push(format!(
                    "{{\"type\":\"invoke\",\"process\":{p},\"f\":\"{f}\",\"value\":{v}}}"
                ));
                open[slot] = Some((p, g, roll, seen));
            }
            for slot in 0..3 {
                if coin[(c + slot) % coin.len()] {
                    emit_completion(slot, &mut lines, &mut open, &mut next_id, &mut fresh);
                }
            }
            lines.join("\n") + "\n"
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn checker_agrees_with_brute_force(text in gen_history()) {
        let history = checker::format::jsonl::read(text.as_bytes()).unwrap();
        let expected = brute_force(&history.ops);
        let got = check_named("cas-register", &history, &CheckOptions::default()).unwrap();
        let want = if expected { Validity::Valid } else { Validity::Invalid };

        prop_assert_eq!(got.valid, want, "history:\n{}", text);
        // The unpartitioned search must agree too.
        let whole = CheckOptions { partition: false, ..CheckOptions::default() };
        prop_assert_eq!(check_named("cas-register", &history, &whole).unwrap().valid, want);
        // And the configuration-set sweep on its own.
        let sweep = CheckOptions { engine: Engine::Sweep, ..CheckOptions::default() };
        prop_assert_eq!(check_named("cas-register", &history, &sweep).unwrap().valid, want, "sweep");
        // And the depth-first search alone, nothing refuted before it, so its
        // deferral of indeterminate ops is what decides.
        let search = CheckOptions { engine: Engine::Search, reachability: false, ..CheckOptions::default() };
        prop_assert_eq!(check_named("cas-register", &history, &search).unwrap().valid, want, "search");
    }
}

/// Puts every op of process `p` on key `k{p % 2}`, for the `kv` model.
fn with_keys(text: &str) -> String {
    text.lines()
        .map(|l| {
            let start = l.find("\"process\":").unwrap() + 10;
            let digits: String = l[start..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            let p: u64 = digits.parse().unwrap();
            l.replacen(
                "\"process\":",
                &format!("\"key\":\"k{}\",\"process\":", p % 2),
                1,
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// Brute force per key: a kv history is linearizable when every key's is.
fn brute_force_by_key(history: &checker::History) -> bool {
    (0..history.keys.len().max(1)).all(|k| {
        let ops: Vec<Op> = history
            .ops
            .iter()
            .filter(|op| op.key.map_or(0, |x| x as usize) == k)
            .cloned()
            .collect();
        brute_force(&ops)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

    /// lost-writes is a necessary condition: it never refutes a history that
    /// the complete search (and the brute force) finds linearizable, for every
    /// register model, with failed, indeterminate and no-match cas ops.
    #[test]
    fn lost_writes_never_refutes_a_linearizable_history(
        text in gen_history(),
        plain in gen_history_of(false),
    ) {
        let cases = [("cas-register", text.clone()), ("register", plain), ("kv", with_keys(&text))];
        for (model, text) in cases {
            let history = checker::format::jsonl::read(text.as_bytes()).unwrap();
            let linearizable = brute_force_by_key(&history);
            let search = check_named(model, &history, &CheckOptions::default()).unwrap().valid;
            prop_assert_eq!(search == Validity::Valid, linearizable, "{} search\n{}", model, text);
            let alone = CheckOptions { engine: Engine::Search, reachability: false, ..CheckOptions::default() };
            let alone = check_named(model, &history, &alone).unwrap().valid;
            prop_assert_eq!(alone == Validity::Valid, linearizable, "{} search alone\n{}", model, text);
            let lost = checker::lost_writes::check(&history);
            if linearizable {
                prop_assert_eq!(lost.valid, Validity::Valid, "{} lost-writes\n{}\n{:?}", model, text, lost);
            }
            // And the combined verdict `harness check` gives is the search's.
            prop_assert_eq!(search.with_necessary(lost.valid), Ok(search));
        }
    }
}

/// The property above means something only if lost-writes does refute some
/// of the generated histories.
#[test]
fn lost_writes_refutes_some_generated_histories() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let mut refuted = 0;
    for _ in 0..2000 {
        let text = gen_history().new_tree(&mut runner).unwrap().current();
        let history = checker::format::jsonl::read(text.as_bytes()).unwrap();
        if checker::lost_writes::check(&history).valid == Validity::Invalid {
            refuted += 1;
        }
    }
    assert!(refuted > 10, "only {refuted} of 2000 refuted");
}

#[test]
fn generated_histories_mix_valid_and_invalid() {
    // The property above means little if nearly every case had the same answer.
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let (mut valid, mut total) = (0, 0);
    for _ in 0..500 {
        let text = gen_history().new_tree(&mut runner).unwrap().current();
        let history = checker::format::jsonl::read(text.as_bytes()).unwrap();
        total += 1;
        if brute_force(&history.ops) {
            valid += 1;
        }
    }
    assert!(
        valid * 5 > total && valid * 5 < total * 4,
        "{valid} of {total} valid"
    );
}

/// Every real-time-respecting order over the whole map (one register per key, no
/// splitting by key), so the unpartitioned check is judged without locality.
fn brute_force_whole(history: &checker::History) -> bool {
    let keys = history.keys.len().max(1);
    linearizable(&history.ops, vec![Value::Null; keys], |state, op| {
        let k = op.key.map_or(0, |x| x as usize);
        let mut next = state.clone();
        next[k] = apply(&state[k], op)?;
        Some(next)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Unpartitioned, a multi-key history is decided by a merged order replayed on
    /// the whole map (or by the whole search); both must match a brute force that
    /// knows nothing of keys being independent.
    #[test]
    fn unpartitioned_kv_agrees_with_a_whole_map_brute_force(text in gen_history()) {
        let text = with_keys(&text);
        let history = checker::format::jsonl::read(text.as_bytes()).unwrap();
        let want = if brute_force_whole(&history) { Validity::Valid } else { Validity::Invalid };
        let whole = CheckOptions { partition: false, ..CheckOptions::default() };
        prop_assert_eq!(check_named("kv", &history, &whole).unwrap().valid, want, "{}", text);
    }
}

/// The merged order really is what decides those: on linearizable multi-key
/// histories it is found and replays.
#[test]
fn composed_orders_prove_generated_multi_key_histories() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let mut proved = 0;
    for _ in 0..500 {
        let text = with_keys(&gen_history().new_tree(&mut runner).unwrap().current());
        let history = checker::format::jsonl::read(text.as_bytes()).unwrap();
        if history.keys.len() < 2 || !brute_force_whole(&history) {
            continue;
        }
        let proof = checker::linearizability::composed(
            &checker::model::Register::kv(),
            &history,
            &CheckOptions::default(),
        )
        .unwrap();
        assert!(
            proof.is_some(),
            "no proof for a linearizable history:\n{text}"
        );
        proved += 1;
    }
    assert!(
        proved > 50,
        "only {proved} multi-key linearizable histories"
    );
}
