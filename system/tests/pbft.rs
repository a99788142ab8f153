//! PBFT (`--consensus pbft`) on four real node processes: the normal case,
//! view change after the primary dies, restarts from disk, checkpoints and
//! garbage collection, and a Byzantine replica of each behaviour tolerated.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::{wait_for, Cluster};
use serde_json::{json, Value};

const ALL4: &[&str] = &["n1", "n2", "n3", "n4"];
const PBFT: &[&str] = &["--consensus", "pbft"];

static REQUESTS: AtomicU64 = AtomicU64::new(0);

/// What a PBFT client does: one request id, the request to every replica,
/// and the first answer f+1 = 2 of them gave alike (`None` if none did).
async fn bft(c: &Cluster, method: &str, path: &str, body: Option<Value>) -> Option<(u16, Value)> {
    let id = format!("test:{}", REQUESTS.fetch_add(1, Ordering::Relaxed) + 1);
    bft_as(c, &id, method, path, body).await
}

/// [`bft`] under a given request id.
async fn bft_as(
    c: &Cluster,
    id: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Option<(u16, Value)> {
    let (tx, mut rx) = tokio::sync::mpsc::channel(ALL4.len());
    for n in ALL4 {
        let url = c.url(n, path);
        let mut req = match method {
            "GET" => c.http.get(url),
            _ => c.http.put(url),
        }
        .header("x-request-id", id)
        .timeout(Duration::from_secs(3));
        if let Some(b) = &body {
            req = req.json(b);
        }
        let tx = tx.clone();
        tokio::spawn(async move {
            let answer = match req.send().await {
                Ok(r) => {
                    let status = r.status().as_u16();
                    Some((status, r.json::<Value>().await.unwrap_or(Value::Null)))
                }
                Err(_) => None,
            };
            let _ = tx.send(answer).await;
        });
    }
    drop(tx);
    let mut answers: Vec<(u16, Value)> = Vec::new();
    while let Some(answer) = rx.recv().await {
        let Some(a) = answer.filter(|a| a.0 < 500) else {
            continue;
        };
        if answers.contains(&a) {
            return Some(a);
        }
        answers.push(a);
    }
    None
}

async fn put(c: &Cluster, key: &str, value: Value) -> Option<u16> {
    bft(
        c,
        "PUT",
        &format!("/kv/{key}"),
        Some(json!({"value": value})),
    )
    .await
    .map(|a| a.0)
}

/// Writes until one is acknowledged (a view change may refuse the first tries).
async fn put_acked(c: &Cluster, key: &str, value: Value) {
    wait_for("a write to be acknowledged", || async {
        put(c, key, value.clone()).await == Some(200)
    })
    .await;
}

async fn get(c: &Cluster, key: &str) -> Option<(u16, Value)> {
    bft(c, "GET", &format!("/kv/{key}"), None).await
}

async fn status_u64(c: &Cluster, id: &str, field: &str) -> Option<u64> {
    c.status(id).await?[field].as_u64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_normal_case_orders_writes_and_f_plus_1_replicas_answer_alike() {
    let c = Cluster::start(4, PBFT).await;
    c.leader(ALL4).await;
    for i in 0..20 {
        assert_eq!(put(&c, &format!("k{i}"), json!(i)).await, Some(200), "k{i}");
    }
    assert_eq!(get(&c, "k7").await, Some((200, json!({"value": 7}))));
    // Every replica executed the same requests in the same order.
    let executed = status_u64(&c, "n1", "applied_index").await.unwrap();
    for n in ALL4 {
        wait_for("every replica to execute the same", || async {
            status_u64(&c, n, "applied_index").await >= Some(executed)
        })
        .await;
    }
    // A request without an id cannot be matched across replicas: refused.
    let r = c.put("n2", "lonely", json!(1)).await;
    assert_eq!(r.0, 409, "{}", r.1);
    assert!(r.1["message"].as_str().unwrap().contains("x-request-id"));
    // The same request id again is answered from the reply cache, not
    // executed again over the write that followed it.
    let write = |v: i64| bft_as(&c, "dup:1", "PUT", "/kv/d", Some(json!({"value": v})));
    assert_eq!(write(1).await.map(|a| a.0), Some(200));
    put_acked(&c, "d", json!(2)).await;
    assert_eq!(write(1).await.map(|a| a.0), Some(200));
    assert_eq!(get(&c, "d").await, Some((200, json!({"value": 2}))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_primary_is_replaced_by_a_view_change_and_no_write_is_lost() {
    let mut c = Cluster::start(4, PBFT).await;
    let primary = c.leader(ALL4).await;
    for i in 0..10 {
        put_acked(&c, &format!("k{i}"), json!(i)).await;
    }
    c.kill(&primary);
    let rest: Vec<&str> = ALL4.iter().copied().filter(|n| *n != primary).collect();
    put_acked(&c, "after", json!("view change")).await;
    let new = c.leader(&rest).await;
    assert_ne!(new, primary);
    assert!(status_u64(&c, &new, "term").await.unwrap() > 0);
    for i in 0..10 {
        assert_eq!(
            get(&c, &format!("k{i}")).await,
            Some((200, json!({"value": i})))
        );
    }
    // The old primary comes back from its disk and catches up.
    c.restart(&primary);
    put_acked(&c, "later", json!(1)).await;
    let target = status_u64(&c, &new, "applied_index").await.unwrap();
    wait_for("the restarted replica to catch up", || async {
        status_u64(&c, &primary, "applied_index").await >= Some(target)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_replica_killed_at_once_comes_back_from_disk_with_every_write() {
    let mut c = Cluster::start(4, PBFT).await;
    c.leader(ALL4).await;
    for i in 0..30 {
        put_acked(&c, &format!("k{i}"), json!(i)).await;
    }
    for n in ALL4 {
        c.kill(n);
    }
    for n in ALL4 {
        c.restart(n);
    }
    put_acked(&c, "after", json!(1)).await;
    for i in 0..30 {
        assert_eq!(
            get(&c, &format!("k{i}")).await,
            Some((200, json!({"value": i})))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_become_stable_and_a_replica_behind_them_gets_the_state() {
    let mut c = Cluster::start(4, &["--consensus", "pbft", "--snapshot-every", "8"]).await;
    c.leader(ALL4).await;
    c.kill("n4");
    for i in 0..60 {
        put_acked(&c, &format!("k{i}"), json!(i)).await;
    }
    // The log below a stable checkpoint is gone: n4 can only catch up from state.
    let dir = c.node("n1").dir.clone();
    wait_for("a stable checkpoint on disk", || async {
        std::fs::read(dir.join("snapshot.json")).is_ok()
    })
    .await;
    c.restart("n4");
    c.isolate("n1", true);
    // With n1 cut off, progress needs n4: it must have installed the state.
    put_acked(&c, "with-n4", json!(1)).await;
    assert_eq!(get(&c, "k42").await, Some((200, json!({"value": 42}))));
    assert!(c
        .log_text("n4")
        .contains("installed the state at checkpoint"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minority_cut_off_cannot_execute_anything() {
    let c = Cluster::start(4, PBFT).await;
    c.leader(ALL4).await;
    put_acked(&c, "a", json!(1)).await;
    c.isolate("n1", true);
    c.isolate("n2", true);
    // Two of four cannot form a quorum of three: the write is not acknowledged.
    assert_ne!(put(&c, "b", json!(2)).await, Some(200));
    c.isolate("n1", false);
    c.isolate("n2", false);
    put_acked(&c, "c", json!(3)).await;
}

/// Switches a replica's misbehaviour through its admin API.
async fn behave(c: &Cluster, id: &str, behaviour: &str) {
    let r = c
        .http
        .post(format!(
            "http://127.0.0.1:{}/admin/byzantine",
            c.node(id).admin
        ))
        .json(&json!({"behaviour": behaviour}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{behaviour}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_byzantine_replica_of_each_behaviour_is_tolerated() {
    let c = Cluster::start(4, PBFT).await;
    let primary = c.leader(ALL4).await;
    let mut n = 0;
    for behaviour in [
        "wrong-result",
        "silent",
        "replay",
        "false-view",
        "equivocate",
        "wrong-digest",
    ] {
        // The primary lies: it is the one that can do the most harm.
        let liar = c.leader(ALL4).await;
        behave(&c, &liar, behaviour).await;
        for _ in 0..5 {
            n += 1;
            put_acked(&c, "x", json!(n)).await;
            assert_eq!(
                get(&c, "x").await,
                Some((200, json!({"value": n}))),
                "{behaviour} by {liar}"
            );
        }
        behave(&c, &liar, "honest").await;
    }
    let _ = primary;
    // A bad name is refused with the known ones.
    let r = c
        .http
        .post(format!(
            "http://127.0.0.1:{}/admin/byzantine",
            c.node("n1").admin
        ))
        .json(&json!({"behaviour": "sneaky"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("equivocate"));
}
