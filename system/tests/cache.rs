//! The distributed cache on a cluster of real node processes: read-through,
//! replica copies, invalidation on write (through partitions), LRU capacity.

mod common;

use std::time::{Duration, Instant};

use common::Cluster;
use serde_json::{json, Value};

const ALL3: &[&str] = &["n1", "n2", "n3"];

async fn call(
    c: &Cluster,
    method: &str,
    id: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    c.request(method, id, path, body).await
}

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Starts a cluster and waits until every node knows its cache floor (until
/// then a node takes no copies from others).
async fn start(extra: &[&str]) -> Cluster {
    let c = Cluster::start(3, extra).await;
    for id in ALL3 {
        eventually("the cache floor", async || {
            !call(&c, "GET", id, "/cache", None).await.1["floor"].is_null()
        })
        .await;
    }
    c
}

/// The owners of `key` as node `id` reports them, first owner first.
async fn owners(c: &Cluster, key: &str) -> Vec<String> {
    let (_, v) = call(c, "GET", "n1", &format!("/cache/{key}/local"), None).await;
    serde_json::from_value(v["owners"].clone()).unwrap()
}

async fn write(c: &Cluster, key: &str, value: Value) -> (u16, Value) {
    let leader = c.leader(ALL3).await;
    call(
        c,
        "PUT",
        &leader,
        &format!("/cache/{key}"),
        Some(json!({"value": value})),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_fill_the_owners_and_writes_invalidate_them_even_after_a_partition() {
    let c = start(&["--cache-ttl-ms", "10000"]).await;
    let key = "k";
    let (code, body) = write(&c, key, json!(1)).await;
    assert_eq!(
        (code, body["rev"].as_u64().is_some()),
        (200, true),
        "{body}"
    );
    let owners = owners(&c, key).await;
    assert_eq!(owners.len(), 2);
    let outsider = ALL3
        .iter()
        .find(|n| !owners.contains(&n.to_string()))
        .unwrap();
    // The first read misses and reads through; the next, from any node, hits the owner.
    let (_, first) = call(&c, "GET", outsider, "/cache/k", None).await;
    assert_eq!(
        (first["value"].clone(), first["hit"].clone()),
        (json!(1), json!(false))
    );
    assert_eq!(first["node"], json!(owners[0]));
    for id in ALL3 {
        let (_, again) = call(&c, "GET", id, "/cache/k", None).await;
        assert_eq!(
            (again["value"].clone(), again["hit"].clone()),
            (json!(1), json!(true))
        );
    }
    // The replica got a copy and the owner's became shared; the outsider keeps none.
    eventually("the copy to be shared", async || {
        call(&c, "GET", &owners[0], "/cache/k/local", None).await.1["state"] == "shared"
    })
    .await;
    let replica = call(&c, "GET", &owners[1], "/cache/k/local", None).await.1;
    assert_eq!(
        (replica["state"].clone(), replica["value"].clone()),
        (json!("shared"), json!(1))
    );
    assert_eq!(
        call(&c, "GET", outsider, "/cache/k/local", None).await.1["state"],
        Value::Null
    );

    // A write leaves tombstones carrying its revision on both owners.
    let (code, body) = write(&c, key, json!(2)).await;
    assert_eq!(code, 200, "{body}");
    let rev = body["rev"].as_u64().unwrap();
    for o in &owners {
        let local = call(&c, "GET", o, "/cache/k/local", None).await.1;
        assert_eq!(
            (local["state"].clone(), local["rev"].clone()),
            (json!("invalid"), json!(rev))
        );
    }
    assert_eq!(
        call(&c, "GET", outsider, "/cache/k", None).await.1["value"],
        json!(2)
    );

    // With the replica cut off, a write cannot be acknowledged: the store has it,
    // the replica's copy may be stale. Once healed the invalidation arrives.
    let leader = c.leader(ALL3).await;
    let cut = owners.iter().find(|o| **o != leader).unwrap().clone();
    c.isolate(&cut, true);
    let rest: Vec<&str> = ALL3.iter().copied().filter(|n| *n != cut).collect();
    let leader = c.leader(&rest).await;
    let (code, body) = call(&c, "PUT", &leader, "/cache/k", Some(json!({"value": 3}))).await;
    assert_eq!(
        (code, body["definite"].clone()),
        (504, json!(false)),
        "{body}"
    );
    let rev3 = body["rev"].as_u64().unwrap();
    assert!(body["message"].as_str().unwrap().contains(&cut), "{body}");
    c.isolate(&cut, false);
    eventually("the retried invalidation", async || {
        call(&c, "GET", &cut, "/cache/k/local", None).await.1["rev"].as_u64() >= Some(rev3)
    })
    .await;
    // Its links come back within a reconnect or two; then it reads the new value.
    eventually("a read through the healed node", async || {
        call(&c, "GET", &cut, "/cache/k", None).await.1["value"] == json!(3)
    })
    .await;

    // Bad input is a 400 naming what is wrong, and the node goes on.
    let (code, body) = call(&c, "PUT", &leader, "/cache/k", Some(json!({"val": 1}))).await;
    assert_eq!(code, 400, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("value"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_live_on_the_cache_and_survive_their_owner() {
    let mut c = start(&[]).await;
    let leader = c.leader(ALL3).await;
    let path = "/sessions/s1";
    assert_eq!(call(&c, "GET", &leader, path, None).await.0, 404);
    let data = json!({"user": "ada", "cart": [1, 2]});
    let (code, body) = call(&c, "PUT", &leader, path, Some(json!({"data": data}))).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(call(&c, "GET", ALL3[0], path, None).await.1["data"], data);
    let (_, second) = call(&c, "GET", ALL3[1], path, None).await;
    assert_eq!(
        (second["data"].clone(), second["hit"].clone()),
        (data.clone(), json!(true))
    );
    // Its first owner dies (if that is not the leader): the session is still there.
    let first = owners(&c, "session%2Fs1").await[0].clone();
    if first != leader {
        c.kill(&first);
        let (code, again) = call(&c, "GET", &leader, path, None).await;
        assert_eq!((code, again["data"].clone()), (200, data), "{again}");
        // Ending the session needs every owner to drop its copy: not while one is down.
        let req = c.http.delete(c.url(&leader, path)).send().await.unwrap();
        assert_eq!(req.status(), 504);
        c.restart(&first);
    }
    eventually("the session to end", async || {
        let req = c.http.delete(c.url(&leader, path)).send().await;
        req.is_ok_and(|r| r.status() == 200)
    })
    .await;
    assert_eq!(call(&c, "GET", &leader, path, None).await.0, 404);
    let (code, body) = call(&c, "PUT", &leader, path, Some(json!({"data": null}))).await;
    assert_eq!(code, 400, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_node_keeps_at_most_its_capacity() {
    let c = start(&["--cache-capacity", "4"]).await;
    for i in 0..40 {
        let (code, body) = call(&c, "GET", ALL3[i % 3], &format!("/cache/cold{i}"), None).await;
        assert_eq!((code, body["value"].clone()), (200, Value::Null), "{body}");
    }
    let mut evictions = 0;
    for id in ALL3 {
        let (_, s) = call(&c, "GET", id, "/cache", None).await;
        assert!(s["entries"].as_u64().unwrap() <= 4, "{s}");
        evictions += s["stats"]["evictions"].as_u64().unwrap();
    }
    // 40 keys with 2 owners each make 80 copies for 12 places.
    assert!(evictions >= 80 - 12, "{evictions}");
}

/// A write with `ttl_ms` is served (from the store and the owners' copies)
/// until it expires and never after; `DELETE` removes a value and its copies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_time_to_live_ends_a_value_and_delete_removes_one() {
    let c = start(&["--cache-ttl-ms", "10000"]).await;
    let leader = c.leader(ALL3).await;
    let put = |v: Value| Some(v);
    let (code, body) = call(
        &c,
        "PUT",
        &leader,
        "/cache/short",
        put(json!({"value": "soon gone", "ttl_ms": 800})),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let written = Instant::now();
    // Read twice through every node: a miss fills the owners, then hits.
    for _ in 0..2 {
        for id in ALL3 {
            let (code, v) = call(&c, "GET", id, "/cache/short", None).await;
            assert_eq!(code, 200);
            if written.elapsed() < Duration::from_millis(700) {
                assert_eq!(v["value"], "soon gone", "{v}");
            }
        }
    }
    tokio::time::sleep(Duration::from_millis(900).saturating_sub(written.elapsed())).await;
    for id in ALL3 {
        let (_, v) = call(&c, "GET", id, "/cache/short", None).await;
        assert_eq!(v["value"], Value::Null, "{id} served an expired value: {v}");
    }
    // Delete: gone from the store and every copy at once.
    assert_eq!(write(&c, "gone", json!(5)).await.0, 200);
    for id in ALL3 {
        assert_eq!(call(&c, "GET", id, "/cache/gone", None).await.1["value"], 5);
    }
    let (code, body) = call(&c, "DELETE", &leader, "/cache/gone", None).await;
    assert_eq!(code, 200, "{body}");
    for id in ALL3 {
        assert_eq!(
            call(&c, "GET", id, "/cache/gone", None).await.1["value"],
            Value::Null
        );
    }
    for bad in [
        json!({"value": 1, "ttl_ms": 0}),
        json!({"value": 1, "ttl_ms": "x"}),
    ] {
        let (code, body) = call(&c, "PUT", &leader, "/cache/k", put(bad)).await;
        assert_eq!(code, 400, "{body}");
        assert!(
            body["message"].as_str().unwrap().contains("ttl_ms"),
            "{body}"
        );
    }
}
