use super::*;
use crate::Rng;
use checker::format::jsonl;

const MEMBERS: [&str; 3] = ["n1", "n2", "n3"];

/// One client op: f, input, completion type, output, the node it went to.
#[derive(Clone)]
struct Step {
    f: &'static str,
    input: Value,
    done: &'static str,
    output: Value,
    node: &'static str,
}

fn send(n: u64, to: u64, done: &'static str, node: &'static str) -> Step {
    Step {
        f: "send",
        input: json!({"id": format!("m{n}"), "to": to, "body": {"n": n}}),
        done,
        output: if done == "ok" {
            json!({"to": MEMBERS[to as usize % 3]})
        } else {
            Value::Null
        },
        node,
    }
}

fn broadcast(n: u64, done: &'static str, node: &'static str, acked_by: &[&str]) -> Step {
    Step {
        f: "broadcast",
        input: json!({"id": format!("b{n}"), "body": {"n": n}}),
        done,
        output: if done == "ok" {
            json!({"origin": node, "delivered_to": acked_by})
        } else {
            Value::Null
        },
        node,
    }
}

/// A delivery as the final read lists it.
fn got(id: &str, kind: &str, origin: &str, n: u64) -> Value {
    json!([id, kind, origin, origin, {"n": n}])
}

/// The history of `steps`, a kill of `killed` in the middle, and a final read
/// finding `inboxes`.
fn history(steps: &[Step], killed: &[&str], inboxes: Value, settled: bool) -> History {
    let mut text = String::new();
    let mut line = |v: Value| text.push_str(&format!("{v}\n"));
    for (p, s) in steps.iter().enumerate() {
        line(json!({"type": "invoke", "process": p, "f": s.f, "value": s.input}));
        if p == steps.len() / 2 && !killed.is_empty() {
            line(json!({"type": "info", "process": "nemesis", "f": "start-kill", "value": killed}));
            line(json!({"type": "info", "process": "nemesis", "f": "stop-kill", "value": killed}));
        }
        let error = if s.done == "ok" {
            Value::Null
        } else {
            json!("timeout")
        };
        line(
            json!({"type": s.done, "process": p, "f": s.f, "value": s.output,
                    "node": s.node, "error": error}),
        );
    }
    let p = steps.len();
    line(json!({"type": "invoke", "process": p, "f": "inboxes", "value": null}));
    line(
        json!({"type": "ok", "process": p, "f": "inboxes", "value": {
        "members": MEMBERS, "settle": {"settled": settled}, "inboxes": inboxes, "unread": {}}}),
    );
    jsonl::read(text.as_bytes()).unwrap()
}

fn verdicts(c: &Checked) -> BTreeMap<String, Value> {
    c.checkers
        .iter()
        .map(|(k, v)| (k.clone(), v["valid"].clone()))
        .collect()
}

fn assert_only(c: &Checked, invalid: &str) {
    for (name, v) in verdicts(c) {
        let want = if name == invalid {
            json!(false)
        } else {
            json!(true)
        };
        assert_eq!(v, want, "{name}: {:?}", c.checkers);
    }
}

fn base() -> (Vec<Step>, Value) {
    let steps = vec![
        send(1, 1, "ok", "n1"),
        send(2, 2, "info", "n1"),
        broadcast(3, "ok", "n2", &["n1", "n2", "n3"]),
        broadcast(4, "info", "n3", &[]),
        send(5, 0, "fail", "n3"),
    ];
    let inboxes = json!({
        "n1": [got("b3", "broadcast", "n2", 3)],
        "n2": [got("m1", "send", "n1", 1), got("b3", "broadcast", "n2", 3)],
        "n3": [got("b3", "broadcast", "n2", 3), got("m2", "send", "n1", 2)],
    });
    (steps, inboxes)
}

#[test]
fn a_history_of_correct_deliveries_is_valid() {
    let (steps, inboxes) = base();
    let c = history(&steps, &[], inboxes, true);
    assert_eq!(c_valid(&c), Validity::Valid);
}

fn c_valid(h: &History) -> Validity {
    let c = check(h);
    for (name, v) in verdicts(&c) {
        assert_ne!(v, json!(false), "{name}: {:?}", c.checkers);
    }
    c.valid
}

#[test]
fn an_acknowledged_send_missing_from_its_inbox_is_lost() {
    let (steps, mut inboxes) = base();
    inboxes["n2"] = json!([got("b3", "broadcast", "n2", 3)]);
    assert_only(&check(&history(&steps, &[], inboxes, true)), "sends");
}

#[test]
fn a_message_twice_in_one_inbox_breaks_once() {
    let (steps, mut inboxes) = base();
    inboxes["n3"]
        .as_array_mut()
        .unwrap()
        .push(got("m2", "send", "n1", 2));
    assert_only(&check(&history(&steps, &[], inboxes, true)), "once");
}

#[test]
fn a_broadcast_some_members_miss_is_caught_unless_deliveries_were_in_flight() {
    let (steps, mut inboxes) = base();
    // The unacknowledged b4 reached a member that stayed up, so all need it.
    inboxes["n1"]
        .as_array_mut()
        .unwrap()
        .push(got("b4", "broadcast", "n3", 4));
    assert_only(
        &check(&history(&steps, &[], inboxes.clone(), true)),
        "broadcasts",
    );
    // Had the members still been relaying, missing copies prove nothing.
    let c = check(&history(&steps, &[], inboxes, false));
    assert_eq!(
        verdicts(&c)["broadcasts"],
        json!("unknown"),
        "{:?}",
        c.checkers
    );
}

#[test]
fn a_broadcast_only_a_crashed_member_delivered_may_stay_there() {
    let (steps, mut inboxes) = base();
    inboxes["n3"]
        .as_array_mut()
        .unwrap()
        .push(got("b4", "broadcast", "n3", 4));
    assert_eq!(
        c_valid(&history(&steps, &["n3"], inboxes.clone(), true)),
        Validity::Valid
    );
    // Without the crash, n3 stayed up: the others must have it too.
    assert_only(&check(&history(&steps, &[], inboxes, true)), "broadcasts");
}

#[test]
fn a_member_the_origin_named_as_acknowledging_must_hold_it_even_after_a_crash() {
    let (steps, mut inboxes) = base();
    inboxes["n1"] = json!([]);
    assert_only(
        &check(&history(&steps, &["n1"], inboxes, true)),
        "broadcasts",
    );
}

#[test]
fn invented_altered_misdelivered_and_refused_messages_break_integrity() {
    let cases = [
        got("zz", "send", "n1", 9),
        got("m1", "send", "n1", 7),
        got("b3", "send", "n2", 3),
        got("m1", "send", "n3", 1),
        got("m5", "send", "n3", 5),
    ];
    for (i, extra) in cases.into_iter().enumerate() {
        let (steps, mut inboxes) = base();
        // n1 holds none of these legitimately.
        inboxes["n1"].as_array_mut().unwrap().push(extra);
        let c = check(&history(&steps, &[], inboxes, true));
        assert_eq!(
            verdicts(&c)["integrity"],
            json!(false),
            "case {i}: {:?}",
            c.checkers
        );
    }
}

#[test]
fn without_a_final_read_nothing_is_claimed() {
    let (steps, _) = base();
    let mut h = history(&steps, &[], json!({}), true);
    h.ops.retain(|op| &*op.f != "inboxes");
    let c = check(&h);
    assert!(verdicts(&c).values().all(|v| *v == json!("unknown")));
}

/// A random run of a correct mailbox: what each op did, drawn within what
/// the protocol allows, and the inboxes that follow from it.
fn correct_run(
    rng: &mut Rng,
) -> (
    Vec<Step>,
    Vec<&'static str>,
    BTreeMap<&'static str, Vec<Value>>,
) {
    let killed: Vec<&str> = MEMBERS
        .iter()
        .copied()
        .filter(|_| rng.below(4) == 0)
        .collect();
    let mut inboxes: BTreeMap<&str, Vec<Value>> = MEMBERS.iter().map(|m| (*m, vec![])).collect();
    let mut steps = Vec::new();
    for n in 1..=(2 + rng.below(8)) {
        let node = MEMBERS[rng.below(3) as usize];
        let done = ["ok", "info", "fail"][rng.below(3) as usize];
        if rng.below(2) == 0 {
            let to = rng.below(6);
            let member = MEMBERS[to as usize % 3];
            let delivered = done == "ok" || (done == "info" && rng.below(2) == 0);
            if delivered {
                inboxes
                    .get_mut(member)
                    .unwrap()
                    .push(got(&format!("m{n}"), "send", node, n));
            }
            steps.push(send(n, to, done, node));
        } else {
            let id = format!("b{n}");
            let everywhere = done == "ok" && !killed.contains(&node) || rng.below(2) == 0;
            let holders: Vec<&str> = if everywhere {
                MEMBERS.to_vec()
            } else if done == "fail" {
                vec![]
            } else {
                // Only members that crashed, the origin among them if any.
                killed
                    .iter()
                    .copied()
                    .filter(|_| rng.below(2) == 0)
                    .collect()
            };
            let acked_by: Vec<&str> = if everywhere { holders.clone() } else { vec![] };
            for h in &holders {
                inboxes
                    .get_mut(h)
                    .unwrap()
                    .push(got(&id, "broadcast", node, n));
            }
            let done = if done == "fail" && everywhere {
                "info"
            } else {
                done
            };
            let done = if done == "ok" && !everywhere {
                "info"
            } else {
                done
            };
            steps.push(broadcast(n, done, node, &acked_by));
        }
    }
    (steps, killed, inboxes)
}

#[test]
fn random_correct_runs_are_valid_and_each_mutation_of_them_is_caught() {
    let mut rng = Rng::new(7);
    for round in 0..400 {
        let (steps, killed, inboxes) = correct_run(&mut rng);
        let h = history(&steps, &killed, json!(inboxes), true);
        let c = check(&h);
        assert_ne!(
            c.valid,
            Validity::Invalid,
            "round {round}: {:?}",
            c.checkers
        );
        // Duplicate one delivery: `once` must see it.
        let nonempty: Vec<&str> = inboxes
            .iter()
            .filter(|(_, l)| !l.is_empty())
            .map(|(m, _)| *m)
            .collect();
        if let Some(m) = nonempty.first() {
            let mut twice = inboxes.clone();
            let first = twice[m][0].clone();
            twice.get_mut(m).unwrap().push(first);
            let c = check(&history(&steps, &killed, json!(twice), true));
            assert_eq!(verdicts(&c)["once"], json!(false), "round {round}");
        }
        // Drop a delivery the rules require: some checker must object.
        for (i, s) in steps.iter().enumerate() {
            let id = s.input["id"].as_str().unwrap();
            let required_at: Vec<&str> = match (s.f, s.done) {
                ("send", "ok") => vec![MEMBERS[s.input["to"].as_u64().unwrap() as usize % 3]],
                ("broadcast", "ok") => MEMBERS.to_vec(),
                _ => continue,
            };
            for m in required_at {
                let mut lost = inboxes.clone();
                lost.get_mut(m).unwrap().retain(|d| d[0] != id);
                let c = check(&history(&steps, &killed, json!(lost), true));
                assert_eq!(
                    c.valid,
                    Validity::Invalid,
                    "round {round}, step {i}, {id} at {m}"
                );
            }
        }
    }
}
