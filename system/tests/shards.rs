//! The sharded store (`--shards`) on a cluster of real node processes:
//! placement, transactions within and across shards, locks held by prepared
//! transactions, and in-doubt participants finishing what a crashed
//! coordinator left (crash points), both ways.

mod common;

use std::time::Duration;

use common::Cluster;
use serde_json::{json, Value};
use system::services::shards::Placement;

const ALL5: &[&str] = &["n1", "n2", "n3", "n4", "n5"];
const SHARDED: &[&str] = &[
    "--shards",
    "3",
    "--replicas",
    "3",
    "--request-timeout-ms",
    "1500",
];

fn placement() -> Placement {
    let ids: Vec<String> = ALL5.iter().map(|s| s.to_string()).collect();
    Placement::new(&ids, 3, 3).unwrap()
}

/// Integer keys, each on its own shard: (key, shard).
fn keys_on_distinct_shards() -> Vec<(u64, u32)> {
    let p = placement();
    let mut found: Vec<(u64, u32)> = Vec::new();
    for k in 0..1000u64 {
        let s = p.shard_of(&k.to_string());
        if !found.iter().any(|(_, t)| *t == s) {
            found.push((k, s));
        }
    }
    assert_eq!(found.len(), 3);
    found
}

async fn txn(c: &Cluster, via: &str, ops: Value) -> (u16, Value) {
    match c
        .http
        .post(c.url(via, "/txn"))
        .json(&json!({ "ops": ops }))
        .send()
        .await
    {
        Ok(r) => (r.status().as_u16(), r.json().await.unwrap_or(Value::Null)),
        Err(_) => (0, Value::Null),
    }
}

/// Retries a transaction until it is acknowledged (through any live node).
async fn txn_ok(c: &Cluster, among: &[&str], ops: Value) -> Value {
    for attempt in 0..200 {
        let via = among[attempt % among.len()];
        let (code, body) = txn(c, via, ops.clone()).await;
        if code == 200 {
            return body["ops"].clone();
        }
        assert!(
            code != 400 && code != 409 || body["error"] == "aborted",
            "{code} {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("transaction {ops} never acknowledged");
}

async fn every_shard_has_a_leader(c: &Cluster) -> Value {
    for _ in 0..400 {
        if let Ok(r) = c.http.get(c.url("n1", "/cluster/shards")).send().await {
            let v: Value = r.json().await.unwrap_or(Value::Null);
            let led = v["shards"]
                .as_array()
                .is_some_and(|s| s.len() == 3 && s.iter().all(|g| g["leader"].is_string()));
            if led {
                return v;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no leader in every shard within 20 s");
}

async fn arm(c: &Cluster, id: &str, point: &str) {
    c.arm_crash_point(id, point).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_are_placed_and_transactions_span_them_atomically() {
    let c = Cluster::start(5, SHARDED).await;
    let shards = every_shard_has_a_leader(&c).await;
    let p = placement();
    for g in shards["shards"].as_array().unwrap() {
        let s = g["shard"].as_u64().unwrap() as u32;
        let members: Vec<String> = serde_json::from_value(g["members"].clone()).unwrap();
        assert_eq!(members, p.members(s), "{shards}");
        assert!(members.contains(&g["leader"].as_str().unwrap().to_string()));
    }
    let keys = keys_on_distinct_shards();
    let (a, b, d) = (keys[0].0, keys[1].0, keys[2].0);
    // Accounts opened on three shards at once, then money moved between them.
    txn_ok(&c, ALL5, json!([["w", a, 10], ["w", b, 10], ["w", d, 10]])).await;
    let done = txn_ok(
        &c,
        ALL5,
        json!([
            ["add", a, -4],
            ["add", b, 4],
            ["r", a, null],
            ["r", b, null]
        ]),
    )
    .await;
    assert_eq!(
        done,
        json!([["add", a, -4], ["add", b, 4], ["r", a, 6], ["r", b, 14]])
    );
    // Too much: a definite failure, and nothing moved.
    let (code, body) = txn(&c, "n3", json!([["add", d, -11], ["add", a, 11]])).await;
    assert_eq!(
        (code, body["error"].clone(), body["definite"].clone()),
        (409, json!("txn-failed"), json!(true)),
        "{body}"
    );
    let all = txn_ok(
        &c,
        &["n5"],
        json!([["r", a, null], ["r", b, null], ["r", d, null]]),
    )
    .await;
    assert_eq!(all, json!([["r", a, 6], ["r", b, 14], ["r", d, 10]]));
    // The KV goes to each key's shard; any node answers for any key.
    for i in 0..12 {
        assert_eq!(c.put(ALL5[i % 5], &format!("k{i}"), json!(i)).await.0, 200);
    }
    for i in 0..12 {
        assert_eq!(
            c.get(ALL5[(i + 2) % 5], &format!("k{i}")).await,
            (200, json!({"value": i}))
        );
    }
    // Bad input names the micro-op; membership is fixed.
    let (code, body) = txn(&c, "n2", json!([["r", a, null], ["frob", b, 1]])).await;
    assert_eq!(code, 400);
    assert!(
        body["message"].as_str().unwrap().contains("`ops[1]`"),
        "{body}"
    );
    let r = c
        .http
        .post(c.url("n1", "/cluster/leave"))
        .json(&json!({"id": "n5"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 409);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_transfers_across_shards_keep_the_total() {
    let c = std::sync::Arc::new(Cluster::start(5, SHARDED).await);
    every_shard_has_a_leader(&c).await;
    let accounts: Vec<u64> = (0..6).collect();
    let open: Vec<Value> = accounts.iter().map(|a| json!(["w", a, 50])).collect();
    txn_ok(&c, ALL5, json!(open)).await;
    let mut tasks = Vec::new();
    for t in 0..6u64 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut seen) = (0, Vec::new());
            for i in 0..40u64 {
                let from = (t + i) % 6;
                let to = (from + 1 + i % 5) % 6;
                let via = ALL5[((t + i) % 5) as usize];
                let (code, _) = txn(&c, via, json!([["add", from, -3], ["add", to, 3]])).await;
                ok += usize::from(code == 200);
                if i % 5 == 0 {
                    let reads: Vec<Value> = (0..6).map(|a| json!(["r", a, null])).collect();
                    let (code, body) = txn(&c, via, json!(reads)).await;
                    if code == 200 {
                        seen.push(body["ops"].clone());
                    }
                }
            }
            (ok, seen)
        }));
    }
    let (mut ok, mut reads) = (0, 0);
    for t in tasks {
        let (n, seen) = t.await.unwrap();
        ok += n;
        for read in seen {
            let total: i64 = read
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m[2].as_i64().unwrap())
                .sum();
            assert_eq!(total, 300, "a read saw {read}");
            reads += 1;
        }
    }
    assert!(
        ok > 100 && reads > 10,
        "{ok} transfers, {reads} reads acknowledged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_crash_before_the_decision_aborts_and_releases_the_locks() {
    let mut c = Cluster::start(5, SHARDED).await;
    every_shard_has_a_leader(&c).await;
    let keys = keys_on_distinct_shards();
    let (a, b) = (keys[0].0, keys[1].0);
    txn_ok(&c, ALL5, json!([["w", a, 1], ["w", b, 1]])).await;
    arm(&c, "n1", "after-prepare").await;
    // Both shards prepare, then the coordinator exits: no answer.
    let (code, _) = txn(&c, "n1", json!([["w", a, 2], ["w", b, 2]])).await;
    assert_eq!(code, 0, "the coordinator should have crashed");
    c.kill("n1");
    // The prepared transaction's locks hold off others while it is in doubt...
    let (code, body) = txn(&c, "n2", json!([["r", a, null]])).await;
    assert_eq!(
        (code, body["definite"].clone()),
        (503, json!(true)),
        "{body}"
    );
    // ...until the participants ask, learn abort, and let go.
    let after = txn_ok(
        &c,
        &["n2", "n3", "n4", "n5"],
        json!([["r", a, null], ["r", b, null]]),
    )
    .await;
    assert_eq!(after, json!([["r", a, 1], ["r", b, 1]]));
    assert!(
        ["n2", "n3", "n4", "n5"]
            .iter()
            .any(|n| c.log_text(n).contains("finished: aborted")),
        "no participant logged resolving the in-doubt transaction"
    );
    c.restart("n1");
    txn_ok(&c, &["n1"], json!([["w", a, 3], ["w", b, 3]])).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_crash_after_the_decision_commits_on_every_shard() {
    let mut c = Cluster::start(5, SHARDED).await;
    every_shard_has_a_leader(&c).await;
    let keys = keys_on_distinct_shards();
    let (a, b, d) = (keys[0].0, keys[1].0, keys[2].0);
    txn_ok(&c, ALL5, json!([["w", a, 1], ["w", b, 1], ["w", d, 1]])).await;
    arm(&c, "n2", "after-first-commit").await;
    let (code, _) = txn(&c, "n2", json!([["w", a, 7], ["w", b, 7], ["w", d, 7]])).await;
    assert_eq!(code, 0, "the coordinator should have crashed");
    c.kill("n2");
    // Told or not, every shard ends with the write: commit was recorded.
    let after = txn_ok(
        &c,
        &["n1", "n3", "n4", "n5"],
        json!([["r", a, null], ["r", b, null], ["r", d, null]]),
    )
    .await;
    assert_eq!(after, json!([["r", a, 7], ["r", b, 7], ["r", d, 7]]));
    assert!(
        ["n1", "n3", "n4", "n5"]
            .iter()
            .any(|n| c.log_text(n).contains("finished: committed")),
        "no participant logged finishing the committed transaction"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_phase_commit_participants_finish_without_their_coordinator() {
    const ALL3: &[&str] = &["n1", "n2", "n3"];
    let mut c = Cluster::start(
        3,
        &[
            "--shards",
            "3",
            "--replicas",
            "1",
            "--txn",
            "3pc",
            "--request-timeout-ms",
            "1500",
        ],
    )
    .await;
    let ids: Vec<String> = ALL3.iter().map(|s| s.to_string()).collect();
    let p = Placement::new(&ids, 3, 1).unwrap();
    // A key on n2's shard and one on n3's, so n1 coordinates without holding either.
    let key_on = |node: &str| {
        (0..1000u64)
            .find(|k| p.members(p.shard_of(&k.to_string())) == [node.to_string()])
            .unwrap()
    };
    let (a, b) = (key_on("n2"), key_on("n3"));
    txn_ok(&c, ALL3, json!([["w", a, 1], ["w", b, 1]])).await;
    // Both pre-committed, then the coordinator dies: they commit by themselves.
    arm(&c, "n1", "after-decision").await;
    assert_eq!(txn(&c, "n1", json!([["w", a, 2], ["w", b, 2]])).await.0, 0);
    c.kill("n1");
    let after = txn_ok(&c, &["n2", "n3"], json!([["r", a, null], ["r", b, null]])).await;
    assert_eq!(after, json!([["r", a, 2], ["r", b, 2]]));
    // Both only prepared (uncertain), then the coordinator dies: they abort.
    c.restart("n1");
    // Both participants reach the restarted coordinator again.
    txn_ok(&c, &["n1"], json!([["r", a, null], ["r", b, null]])).await;
    arm(&c, "n1", "after-prepare").await;
    let (code, body) = txn(&c, "n1", json!([["w", a, 3], ["w", b, 3]])).await;
    assert_eq!(code, 0, "{body}");
    c.kill("n1");
    let after = txn_ok(&c, &["n2", "n3"], json!([["r", a, null], ["r", b, null]])).await;
    assert_eq!(after, json!([["r", a, 2], ["r", b, 2]]));
    let logs = c.log_text("n2") + &c.log_text("n3");
    assert!(
        logs.contains("3pc termination"),
        "no participant ran the termination rule"
    );
}
