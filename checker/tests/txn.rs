//! The transactional checker: every anomaly kind on a hand-made history, valid
//! histories kept valid, planted anomalies found in large generated histories,
//! bad input refused, and agreement with a brute-force search of serial orders.

use checker::format::jsonl;
use checker::txn::generate::{list_append_history, Plant, Shape};
use checker::txn::{self, ConsistencyModel, Kind, TxnOptions};
use checker::{CheckerResult, Validity};
use serde_json::Value as Json;

/// One transaction: (process, status, micro-ops as JSON with read results).
type T<'a> = (i64, &'a str, &'a str);

/// A history where each transaction runs alone, one after another.
fn sequential(txns: &[T]) -> String {
    let mut out = String::new();
    for (i, &(p, status, ops)) in txns.iter().enumerate() {
        out += &invoke(p, ops, 2 * i);
        out += &complete(p, status, ops, 2 * i + 1);
    }
    out
}

/// A history where every transaction is invoked before any completes.
fn concurrent(txns: &[T]) -> String {
    let mut out = String::new();
    for (i, &(p, _, ops)) in txns.iter().enumerate() {
        out += &invoke(p, ops, i);
    }
    for (i, &(p, status, ops)) in txns.iter().enumerate() {
        out += &complete(p, status, ops, txns.len() + i);
    }
    out
}

fn invoke(p: i64, ops: &str, time: usize) -> String {
    let mut v: Json = serde_json::from_str(ops).unwrap();
    for m in v.as_array_mut().unwrap() {
        if m[0] == "r" {
            m[2] = Json::Null;
        }
    }
    format!("{{\"type\":\"invoke\",\"process\":{p},\"f\":\"txn\",\"value\":{v},\"time\":{time}}}\n")
}

fn complete(p: i64, status: &str, ops: &str, time: usize) -> String {
    let ops = if status == "ok" {
        ops.to_string()
    } else {
        invoke(p, ops, 0)
            .split("\"value\":")
            .nth(1)
            .unwrap()
            .split(",\"time\"")
            .next()
            .unwrap()
            .to_string()
    };
    format!(
        "{{\"type\":\"{status}\",\"process\":{p},\"f\":\"txn\",\"value\":{ops},\"time\":{time}}}\n"
    )
}

fn check_as(text: &str, kind: Kind, model: ConsistencyModel) -> CheckerResult {
    let h = jsonl::read(text.as_bytes()).expect("history reads");
    let t = txn::read(&h, kind).expect("txns read");
    let opts = TxnOptions {
        consistency: model,
        ..TxnOptions::default()
    };
    txn::check(&t, &opts).expect("checks")
}

fn check(text: &str) -> CheckerResult {
    check_as(text, Kind::ListAppend, ConsistencyModel::StrictSerializable)
}

fn kinds(r: &CheckerResult) -> Vec<String> {
    r.details["anomaly_types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_string())
        .collect()
}

fn steps(r: &CheckerResult, kind: &str) -> String {
    r.details["anomalies"][kind][0]["steps"]
        .as_array()
        .unwrap_or_else(|| panic!("no {kind} in {}", r.to_value()))
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect::<Vec<_>>()
        .join(" | ")
}

#[test]
fn valid_histories_stay_valid() {
    let h = sequential(&[
        (0, "ok", r#"[["append",1,1],["r",2,[]]]"#),
        (1, "ok", r#"[["r",1,[1]],["append",2,1],["append",1,2]]"#),
        (0, "fail", r#"[["append",1,9]]"#),
        (2, "info", r#"[["append",3,1]]"#),
        (
            1,
            "ok",
            r#"[["r",1,[1,2]],["r",2,[1]],["r",3,null],["append",1,3],["r",1,[1,2,3]]]"#,
        ),
    ]);
    let r = check(&h);
    assert_eq!(r.valid, Validity::Valid, "{}", r.to_value());
    assert!(kinds(&r).is_empty());
    // An info txn whose append was read took effect, and may come later than its invoke.
    let h = sequential(&[
        (2, "info", r#"[["append",3,1]]"#),
        (0, "ok", r#"[["r",3,[1]]]"#),
    ]);
    assert_eq!(check(&h).valid, Validity::Valid);
}

#[test]
fn g0_two_writers_ordered_differently_on_two_keys() {
    let h = sequential(&[
        (0, "ok", r#"[["append",1,1],["append",2,1]]"#),
        (1, "ok", r#"[["append",1,2],["append",2,2]]"#),
        (2, "ok", r#"[["r",1,[1,2]],["r",2,[2,1]]]"#),
    ]);
    let r = check_as(&h, Kind::ListAppend, ConsistencyModel::ReadUncommitted);
    assert_eq!(r.valid, Validity::Invalid);
    assert_eq!(kinds(&r), ["G0"]);
    let s = steps(&r, "G0");
    assert!(
        s.contains("T1 appended 1 to key 1, and T2 appended 2 right after it"),
        "{s}"
    );
    assert!(
        s.contains("T2 appended 2 to key 2, and T1 appended 1 right after it"),
        "{s}"
    );
    assert!(s.contains("so T1 < T2 < T1"), "{s}");
    assert_eq!(r.details["not"], serde_json::json!(["read-uncommitted"]));
}

#[test]
fn g1c_circular_information_flow() {
    let h = sequential(&[
        (0, "ok", r#"[["append",1,1],["r",2,[1]]]"#),
        (1, "ok", r#"[["append",2,1],["r",1,[1]]]"#),
    ]);
    let r = check_as(&h, Kind::ListAppend, ConsistencyModel::ReadCommitted);
    assert_eq!(r.valid, Validity::Invalid);
    assert!(kinds(&r).contains(&"G1c".to_string()), "{:?}", kinds(&r));
    assert!(steps(&r, "G1c").contains("which holds"));
    assert_eq!(r.details["not"], serde_json::json!(["read-committed"]));
    // Read uncommitted allows it.
    let r = check_as(&h, Kind::ListAppend, ConsistencyModel::ReadUncommitted);
    assert_eq!(r.valid, Validity::Valid);
}

#[test]
fn g1a_aborted_read_and_dirty_update() {
    let h = sequential(&[
        (0, "fail", r#"[["append",1,1]]"#),
        (1, "ok", r#"[["append",1,2]]"#),
        (2, "ok", r#"[["r",1,[1,2]]]"#),
    ]);
    let r = check_as(&h, Kind::ListAppend, ConsistencyModel::ReadCommitted);
    assert_eq!(r.valid, Validity::Invalid);
    assert_eq!(kinds(&r), ["G1a", "dirty-update"]);
    assert!(steps(&r, "G1a").contains("T2 appended 1 to key 1 and aborted"));
    assert!(steps(&r, "dirty-update").contains("a committed write on top of an aborted one"));
}

#[test]
fn g1b_intermediate_read() {
    let h = sequential(&[
        (0, "ok", r#"[["append",1,1],["append",1,2]]"#),
        (1, "ok", r#"[["r",1,[1]]]"#),
    ]);
    let r = check_as(&h, Kind::ListAppend, ConsistencyModel::ReadCommitted);
    assert!(kinds(&r).contains(&"G1b".to_string()), "{:?}", kinds(&r));
    assert!(steps(&r, "G1b").contains("intermediate"));
}

#[test]
fn g_single_read_skew() {
    let h = sequential(&[
        (0, "ok", r#"[["append",1,1],["append",2,1]]"#),
        (1, "ok", r#"[["r",1,[]],["r",2,[1]]]"#),
    ]);
    let r = check_as(&h, Kind::ListAppend, ConsistencyModel::SnapshotIsolation);
    assert_eq!(r.valid, Validity::Invalid);
    assert_eq!(kinds(&r), ["G-single"]);
    let s = steps(&r, "G-single");
    assert!(s.contains("without T"), "{s}");
    assert_eq!(
        r.details["not"],
        serde_json::json!(["repeatable-read", "snapshot-isolation"])
    );
}

#[test]
fn g2_item_write_skew_is_allowed_by_snapshot_isolation() {
    // Neither append is ever read: the checker still orders each read before it.
    let h = concurrent(&[
        (0, "ok", r#"[["r",1,[]],["append",2,1]]"#),
        (1, "ok", r#"[["r",2,[]],["append",1,1]]"#),
    ]);
    let r = check_as(&h, Kind::ListAppend, ConsistencyModel::SnapshotIsolation);
    assert_eq!(r.valid, Validity::Valid, "{}", r.to_value());
    let r = check_as(&h, Kind::ListAppend, ConsistencyModel::Serializable);
    assert_eq!(r.valid, Validity::Invalid);
    assert_eq!(kinds(&r), ["G2-item"]);
    assert!(steps(&r, "G2-item").contains("which no read saw"));
    assert_eq!(r.details["not"], serde_json::json!(["repeatable-read"]));
}

#[test]
fn g_nonadjacent_needs_two_rw_edges_apart() {
    // T1 -rw-> T2 -wr-> T3 -rw-> T4 -wr-> T1
    let h = sequential(&[
        (0, "ok", r#"[["r",1,[]],["r",4,[1]]]"#),
        (1, "ok", r#"[["append",1,1],["append",2,1]]"#),
        (2, "ok", r#"[["r",2,[1]],["r",3,[]]]"#),
        (3, "ok", r#"[["append",3,1],["append",4,1]]"#),
    ]);
    let r = check_as(&h, Kind::ListAppend, ConsistencyModel::SnapshotIsolation);
    assert_eq!(r.valid, Validity::Invalid);
    assert!(
        kinds(&r).contains(&"G-nonadjacent".to_string()),
        "{:?}",
        kinds(&r)
    );
}

#[test]
fn stale_read_is_a_realtime_cycle() {
    let h = sequential(&[
        (0, "ok", r#"[["append",1,1]]"#),
        (1, "ok", r#"[["r",1,[]]]"#),
    ]);
    let r = check(&h);
    assert_eq!(r.valid, Validity::Invalid);
    assert_eq!(kinds(&r), ["G-single-realtime"]);
    assert!(steps(&r, "G-single-realtime").contains("in real time"));
    assert_eq!(r.details["not"], serde_json::json!(["strict-serializable"]));
    let r = check_as(&h, Kind::ListAppend, ConsistencyModel::Serializable);
    assert_eq!(r.valid, Validity::Valid);
    // The same on one process is a session anomaly too.
    let h = sequential(&[
        (0, "ok", r#"[["append",1,1]]"#),
        (0, "ok", r#"[["r",1,[]]]"#),
    ]);
    let r = check_as(
        &h,
        Kind::ListAppend,
        ConsistencyModel::StrongSessionSerializable,
    );
    assert_eq!(kinds(&r), ["G-single-process"]);
    assert_eq!(r.valid, Validity::Invalid);
}

#[test]
fn non_cycle_anomalies() {
    let cases: [(&[T], &str, &str); 4] = [
        (
            &[(0, "ok", r#"[["append",1,1],["r",1,[]]]"#)],
            "internal",
            "its own",
        ),
        (
            &[
                (0, "ok", r#"[["append",1,1]]"#),
                (1, "ok", r#"[["append",1,2]]"#),
                (2, "ok", r#"[["r",1,[1,2]]]"#),
                (3, "ok", r#"[["r",1,[2]]]"#),
            ],
            "incompatible-order",
            "neither is a prefix",
        ),
        (
            &[
                (0, "ok", r#"[["append",1,1]]"#),
                (1, "ok", r#"[["r",1,[1,1]]]"#),
            ],
            "duplicate-elements",
            "appears twice",
        ),
        (
            &[(0, "ok", r#"[["r",1,[7]]]"#)],
            "garbage-read",
            "no transaction appended 7",
        ),
    ];
    for (txns, kind, words) in cases {
        let r = check_as(
            &sequential(txns),
            Kind::ListAppend,
            ConsistencyModel::ReadUncommitted,
        );
        assert_eq!(r.valid, Validity::Invalid, "{kind}");
        assert!(
            kinds(&r).contains(&kind.to_string()),
            "{kind}: {:?}",
            kinds(&r)
        );
        assert!(
            steps(&r, kind).contains(words),
            "{kind}: {}",
            steps(&r, kind)
        );
    }
}

#[test]
fn failed_and_indeterminate_txns_bear_no_false_evidence() {
    // An info append nobody read may never have happened: the empty read is fine.
    let h = sequential(&[
        (0, "info", r#"[["append",1,1]]"#),
        (1, "ok", r#"[["r",1,[]]]"#),
    ]);
    assert_eq!(check(&h).valid, Validity::Valid);
    // A failed txn's reads and appends are not evidence.
    let h = sequential(&[
        (0, "fail", r#"[["r",1,[5]],["append",1,1]]"#),
        (1, "ok", r#"[["r",1,[]]]"#),
    ]);
    assert_eq!(check(&h).valid, Validity::Valid);
}

#[test]
fn rw_register_anomalies() {
    let reg = |txns: &[T], model| check_as(&sequential(txns), Kind::RwRegister, model);
    let r = reg(
        &[
            (0, "ok", r#"[["w",1,1],["w",2,1]]"#),
            (1, "ok", r#"[["r",1,null],["r",2,1]]"#),
        ],
        ConsistencyModel::Serializable,
    );
    assert_eq!(kinds(&r), ["G-single"], "{}", r.to_value());
    let r = reg(
        &[(0, "fail", r#"[["w",1,1]]"#), (1, "ok", r#"[["r",1,1]]"#)],
        ConsistencyModel::ReadCommitted,
    );
    assert_eq!(kinds(&r), ["G1a"]);
    let r = reg(
        &[
            (0, "ok", r#"[["w",1,1],["r",1,2]]"#),
            (1, "ok", r#"[["w",1,2]]"#),
        ],
        ConsistencyModel::ReadUncommitted,
    );
    assert!(kinds(&r).contains(&"internal".to_string()));
    let r = reg(
        &[
            (0, "ok", r#"[["r",1,null],["w",1,1]]"#),
            (1, "ok", r#"[["r",1,1],["w",1,2]]"#),
            (2, "ok", r#"[["r",1,2]]"#),
        ],
        ConsistencyModel::StrictSerializable,
    );
    assert_eq!(r.valid, Validity::Valid, "{}", r.to_value());
}

#[test]
fn planted_anomalies_are_found_in_large_histories() {
    let base = Shape {
        txns: 20_000,
        processes: 20,
        keys: 8,
        seed: 7,
        ..Shape::default()
    };
    let text = list_append_history(&base);
    let r = check(&text);
    assert_eq!(r.valid, Validity::Valid, "{}", r.summary);
    assert!(r.details["info"].as_u64().unwrap() > 0);
    assert!(r.details["fail"].as_u64().unwrap() > 0);
    for (plant, kind) in Plant::ALL {
        let shape = Shape {
            plant: vec![plant],
            ..base.clone()
        };
        let r = check(&list_append_history(&shape));
        assert_eq!(r.valid, Validity::Invalid, "{kind}");
        assert!(
            kinds(&r).contains(&kind.to_string()),
            "{kind}: {:?}",
            kinds(&r)
        );
    }
}

#[test]
fn bad_input_names_line_and_field() {
    let cases = [
        (r#"[["r",1,5]]"#, "a list-append read returns a list"),
        (r#"5"#, "must be a list of micro-ops"),
        (r#"[["frob",1,5]]"#, "unknown micro-op"),
        (r#"[["append",[1],5]]"#, "the key must be"),
    ];
    for (ops, words) in cases {
        let text = format!(
            "{{\"type\":\"invoke\",\"process\":0,\"f\":\"txn\",\"value\":null}}\n{{\"type\":\"ok\",\"process\":0,\"f\":\"txn\",\"value\":{ops}}}\n"
        );
        let h = jsonl::read(text.as_bytes()).unwrap();
        let e = txn::read(&h, Kind::ListAppend).unwrap_err();
        assert_eq!(e.line, 2, "{ops}");
        assert_eq!(e.field, Some("value"));
        assert!(e.message.contains(words), "{ops}: {}", e.message);
    }
    let text = sequential(&[
        (0, "ok", r#"[["append",1,1]]"#),
        (1, "ok", r#"[["append",1,1]]"#),
    ]);
    let h = jsonl::read(text.as_bytes()).unwrap();
    let t = txn::read(&h, Kind::ListAppend).unwrap();
    let e = txn::check(&t, &TxnOptions::default()).unwrap_err();
    assert!(
        e.message.contains("appended to key 1 twice"),
        "{}",
        e.message
    );
    let text = "{\"type\":\"invoke\",\"process\":0,\"f\":\"read\",\"value\":null}\n";
    let h = jsonl::read(text.as_bytes()).unwrap();
    let e = txn::read(&h, Kind::ListAppend).unwrap_err();
    assert_eq!(e.field, Some("f"));
}

// ---- brute force -------------------------------------------------------------

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Clone, Debug)]
enum M {
    Append(u64, u64),
    Read(u64, Option<Vec<u64>>),
}

#[derive(Clone, Debug)]
struct BTxn {
    process: i64,
    status: &'static str,
    ops: Vec<M>,
    call: usize,
    ret: usize,
}

/// A random small history: executed in a random serial order, reads then
/// perturbed now and then, statuses and real-time intervals drawn at random.
fn random_history(rng: &mut Rng, register: bool) -> Vec<BTxn> {
    random_history_timed(rng, register, true)
}

/// As [`random_history`]; with `reorder` false, real time always follows the
/// execution order (so, unperturbed, every key is a linearizable register).
fn random_history_timed(rng: &mut Rng, register: bool, reorder: bool) -> Vec<BTxn> {
    let n = 2 + rng.below(4) as usize;
    let keys = 1 + rng.below(3);
    let mut next_value = 1;
    let mut txns: Vec<BTxn> = (0..n)
        .map(|i| {
            let ops = (0..1 + rng.below(3))
                .map(|_| {
                    let k = rng.below(keys);
                    if rng.below(2) == 0 {
                        next_value += 1;
                        M::Append(k, next_value)
                    } else {
                        M::Read(k, None)
                    }
                })
                .collect();
            let status = match rng.below(10) {
                0 => "info",
                1 => "fail",
                _ => "ok",
            };
            BTxn {
                process: i as i64,
                status,
                ops,
                call: 0,
                ret: 0,
            }
        })
        .collect();
    // Execute in a random order; info txns take effect or not.
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        order.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let mut state: Vec<Vec<u64>> = vec![Vec::new(); keys as usize];
    for &t in &order {
        let applied = match txns[t].status {
            "ok" => true,
            "info" => rng.below(2) == 0,
            _ => false,
        };
        let mut local = state.clone();
        for m in &mut txns[t].ops {
            match m {
                M::Append(k, v) => {
                    if register {
                        local[*k as usize] = vec![*v];
                    } else {
                        local[*k as usize].push(*v);
                    }
                }
                M::Read(k, r) => *r = Some(local[*k as usize].clone()),
            }
        }
        if applied {
            state = local;
        }
    }
    // Perturb one read half the time.
    let reads: Vec<(usize, usize)> = (0..n)
        .flat_map(|t| (0..txns[t].ops.len()).map(move |i| (t, i)))
        .filter(|&(t, i)| matches!(txns[t].ops[i], M::Read(..)))
        .collect();
    if !reads.is_empty() && rng.below(2) == 0 {
        let (t, i) = reads[rng.below(reads.len() as u64) as usize];
        if let M::Read(_, Some(r)) = &mut txns[t].ops[i] {
            match rng.below(3) {
                0 if !r.is_empty() => {
                    r.pop();
                }
                1 if r.len() > 1 => r.reverse(),
                _ => r.insert(
                    rng.below(r.len() as u64 + 1) as usize,
                    2 + rng.below(next_value),
                ),
            }
        }
    }
    // A third of the time, real time follows another order than execution.
    if reorder && rng.below(3) == 0 {
        for i in (1..n).rev() {
            order.swap(i, rng.below(i as u64 + 1) as usize);
        }
    }
    // Real time: intervals along the execution order, overlapping at random.
    let mut events: Vec<(u64, usize, bool)> = Vec::new();
    for (rank, &t) in order.iter().enumerate() {
        let at = rank as u64 * 10;
        let start = at - rng.below(at.min(25) + 1);
        let end = at + 1 + rng.below(25);
        events.push((start * 2, t, false));
        events.push((end * 2 + 1, t, true));
    }
    events.sort();
    for (pos, &(_, t, done)) in events.iter().enumerate() {
        if done {
            txns[t].ret = pos;
        } else {
            txns[t].call = pos;
        }
    }
    txns
}

fn to_jsonl(txns: &[BTxn], register: bool) -> String {
    let mut events: Vec<(usize, String)> = Vec::new();
    let w = if register { "w" } else { "append" };
    for t in txns {
        let show = |with_reads: bool| {
            let parts: Vec<String> = t
                .ops
                .iter()
                .map(|m| match m {
                    M::Append(k, v) => format!("[\"{w}\",{k},{v}]"),
                    M::Read(k, r) => match (with_reads, r) {
                        (true, Some(r)) if register => match r.last() {
                            Some(v) => format!("[\"r\",{k},{v}]"),
                            None => format!("[\"r\",{k},null]"),
                        },
                        (true, Some(r)) => format!(
                            "[\"r\",{k},[{}]]",
                            r.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
                        ),
                        _ => format!("[\"r\",{k},null]"),
                    },
                })
                .collect();
            format!("[{}]", parts.join(","))
        };
        let p = t.process;
        events.push((
            t.call,
            format!(
                "{{\"type\":\"invoke\",\"process\":{p},\"f\":\"txn\",\"value\":{}}}",
                show(false)
            ),
        ));
        events.push((
            t.ret,
            format!(
                "{{\"type\":\"{}\",\"process\":{p},\"f\":\"txn\",\"value\":{}}}",
                t.status,
                show(t.status == "ok")
            ),
        ));
    }
    events.sort();
    events.into_iter().map(|(_, l)| l + "\n").collect()
}

/// Whether some serial order of the txns that took effect explains every read
/// (respecting real time when `strict`).
fn brute(txns: &[BTxn], keys: usize, register: bool, strict: bool) -> bool {
    let info: Vec<usize> = (0..txns.len())
        .filter(|&t| txns[t].status == "info")
        .collect();
    for mask in 0..(1u32 << info.len()) {
        let mut chosen: Vec<usize> = (0..txns.len())
            .filter(|&t| txns[t].status == "ok")
            .collect();
        for (i, &t) in info.iter().enumerate() {
            if mask & (1 << i) != 0 {
                chosen.push(t);
            }
        }
        if permute(&mut chosen, 0, &mut |order| {
            run(txns, order, keys, register, strict)
        }) {
            return true;
        }
    }
    false
}

fn permute(v: &mut Vec<usize>, i: usize, f: &mut dyn FnMut(&[usize]) -> bool) -> bool {
    if i == v.len() {
        return f(v);
    }
    for j in i..v.len() {
        v.swap(i, j);
        if permute(v, i + 1, f) {
            return true;
        }
        v.swap(i, j);
    }
    false
}

fn run(txns: &[BTxn], order: &[usize], keys: usize, register: bool, strict: bool) -> bool {
    if strict {
        for (i, &a) in order.iter().enumerate() {
            for &b in &order[i + 1..] {
                if txns[b].status == "ok" && txns[b].ret < txns[a].call {
                    return false;
                }
            }
        }
    }
    let mut state: Vec<Vec<u64>> = vec![Vec::new(); keys];
    for &t in order {
        for m in &txns[t].ops {
            match m {
                M::Append(k, v) => {
                    if register {
                        state[*k as usize] = vec![*v];
                    } else {
                        state[*k as usize].push(*v);
                    }
                }
                M::Read(k, Some(r)) if txns[t].status == "ok" => {
                    let seen = &state[*k as usize];
                    let fine = if register {
                        seen.last() == r.last()
                    } else {
                        seen == r
                    };
                    if !fine {
                        return false;
                    }
                }
                M::Read(..) => {}
            }
        }
    }
    true
}

#[test]
fn list_append_agrees_with_brute_force_on_small_random_histories() {
    let mut rng = Rng(11);
    let (mut valid, mut invalid) = (0, 0);
    for case in 0..3000 {
        let txns = random_history(&mut rng, false);
        let text = to_jsonl(&txns, false);
        for (model, strict) in [
            (ConsistencyModel::Serializable, false),
            (ConsistencyModel::StrictSerializable, true),
        ] {
            let expected = brute(&txns, 3, false, strict);
            let r = check_as(&text, Kind::ListAppend, model);
            assert_ne!(r.valid, Validity::Unknown);
            assert_eq!(
                r.valid == Validity::Valid,
                expected,
                "case {case}, {}: brute force says {expected}\n{text}\n{}",
                model.name(),
                r.to_value()
            );
            if expected {
                valid += 1;
            } else {
                invalid += 1;
            }
        }
    }
    // Both answers are well represented.
    assert!(
        valid > 1000 && invalid > 1000,
        "{valid} valid, {invalid} invalid"
    );
}

#[test]
fn rw_register_never_cries_wolf_on_small_random_histories() {
    let mut rng = Rng(5);
    let mut caught = 0;
    for case in 0..3000 {
        let txns = random_history(&mut rng, true);
        let text = to_jsonl(&txns, true);
        for (model, strict) in [
            (ConsistencyModel::Serializable, false),
            (ConsistencyModel::StrictSerializable, true),
        ] {
            let r = check_as(&text, Kind::RwRegister, model);
            if r.valid == Validity::Invalid {
                assert!(
                    !brute(&txns, 3, true, strict),
                    "case {case}, {}: checker says invalid, a serial order exists\n{text}\n{}",
                    model.name(),
                    r.to_value()
                );
                caught += 1;
            }
        }
    }
    assert!(caught > 300, "only {caught} invalid verdicts");
}

#[test]
fn the_fast_jsonl_reader_matches_the_general_one() {
    // The last one spans several 4 MiB blocks, parsed apart and merged.
    for (seed, processes, txns) in [(1, 3, 3000), (2, 30, 3000), (3, 20, 40_000)] {
        let shape = Shape {
            txns,
            processes,
            seed,
            plant: Plant::ALL.iter().map(|p| p.0).collect(),
            ..Shape::default()
        };
        let mut text = list_append_history(&shape);
        text += "{\"type\":\"info\",\"process\":\"nemesis\",\"f\":\"kill\",\"value\":[\"n1\"]}\n\n";
        text += "{\"type\":\"invoke\",\"process\":999,\"f\":\"txn\",\"value\":[[\"append\",\"k\",\"v\"],[\"r\",\"k\",null]]}\n";
        let fast =
            txn::jsonl::read_fast(text.as_bytes(), Kind::ListAppend).expect("fast path takes it");
        let general = txn::read(&jsonl::read(text.as_bytes()).unwrap(), Kind::ListAppend).unwrap();
        let (a, b) = (resolved(&fast), resolved(&general));
        assert_eq!(a.len(), b.len());
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            assert_eq!(x, y, "txn {i} differs");
        }
    }
    // What it does not take, it leaves to the general reader.
    let odd = "{\"type\":\"invoke\",\"process\":0,\"f\":\"txn\",\"value\":[[\"append\",1,1.5]]}\n";
    assert!(txn::jsonl::read_fast(odd.as_bytes(), Kind::ListAppend).is_none());
}

/// Each txn with its micro-ops spelled out, independent of interning order.
fn resolved(h: &txn::TxnHistory) -> Vec<String> {
    (0..h.txns.len())
        .map(|t| {
            let x = &h.txns[t];
            let mops: Vec<String> = h
                .mops_of(t)
                .iter()
                .map(|m| match *m {
                    txn::Mop::Write { key, value } => {
                        format!("w {} {}", h.keys[key as usize], h.values[value as usize])
                    }
                    txn::Mop::Read { key, known, .. } => format!(
                        "r {} {known} {:?}",
                        h.keys[key as usize],
                        h.elems(m)
                            .iter()
                            .map(|&v| h.values[v as usize].to_string())
                            .collect::<Vec<_>>()
                    ),
                })
                .collect();
            format!(
                "{} {:?} {} {} {} {:?} {}",
                x.process,
                x.status,
                x.call,
                x.ret,
                x.line,
                x.ret_line,
                mops.join("; ")
            )
        })
        .collect()
}

#[test]
fn a_search_that_runs_out_says_unknown_never_valid() {
    let h = sequential(&[
        (0, "ok", r#"[["append",1,1],["append",2,1]]"#),
        (1, "ok", r#"[["r",1,[]],["r",2,[1]]]"#),
    ]);
    let t = txn::read(&jsonl::read(h.as_bytes()).unwrap(), Kind::ListAppend).unwrap();
    let opts = TxnOptions {
        consistency: ConsistencyModel::Serializable,
        budget: 0,
        linearizable_keys: false,
    };
    let r = txn::check(&t, &opts).unwrap();
    assert_eq!(r.valid, Validity::Unknown, "{}", r.to_value());
    let unknown = r.details["unknown"].as_array().unwrap();
    assert!(unknown.iter().any(|u| u == "G-single"), "{unknown:?}");
    // A model that forbids none of the undecided classes still gets its verdict.
    let opts = TxnOptions {
        consistency: ConsistencyModel::ReadCommitted,
        budget: 0,
        linearizable_keys: false,
    };
    assert_eq!(txn::check(&t, &opts).unwrap().valid, Validity::Valid);
}

#[test]
fn linearizable_keys_infer_more_and_never_cry_wolf() {
    // Strict serializability makes every key a linearizable register, so where
    // a strictly serializable order exists the assumption holds and the checker
    // must not say invalid; where it says invalid, no such order exists.
    let mut rng = Rng(21);
    let (mut plain, mut with_keys) = (0, 0);
    for case in 0..3000 {
        let txns = random_history_timed(&mut rng, true, false);
        let text = to_jsonl(&txns, true);
        let h = jsonl::read(text.as_bytes()).unwrap();
        let t = txn::read(&h, Kind::RwRegister).unwrap();
        let verdict = |linearizable_keys| {
            let opts = TxnOptions {
                consistency: ConsistencyModel::StrictSerializable,
                linearizable_keys,
                ..TxnOptions::default()
            };
            txn::check(&t, &opts).unwrap()
        };
        let (a, b) = (verdict(false), verdict(true));
        if b.valid == Validity::Invalid {
            assert!(
                !brute(&txns, 3, true, true),
                "case {case}: invalid with linearizable keys, but a strict order exists\n{text}\n{}",
                b.to_value()
            );
            with_keys += 1;
        }
        if a.valid == Validity::Invalid {
            assert_eq!(
                b.valid,
                Validity::Invalid,
                "case {case}: the assumption lost an anomaly"
            );
            plain += 1;
        }
    }
    assert!(
        with_keys > plain,
        "linearizable keys found {with_keys}, without {plain}"
    );
}
