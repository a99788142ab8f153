//! The seeds' consensus interface on a cluster of real node processes:
//! proposals from many clients get distinct, consecutive indexes in commit
//! order, the committed sequence reads back in that order, followers send
//! clients to the leader, and every node names the same leader.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::Cluster;
use serde_json::{json, Value};

async fn post(c: &Cluster, id: &str, path: &str, body: Value) -> (u16, Value) {
    c.request("POST", id, path, Some(body)).await
}

async fn get(c: &Cluster, id: &str, path: &str) -> (u16, Value) {
    c.request("GET", id, path, None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proposals_get_consecutive_indexes_and_read_back_in_commit_order() {
    let all = ["n1", "n2", "n3"];
    let c = Cluster::start(3, &[]).await;
    let leader = c.leader(&all).await;
    let follower = all.iter().find(|n| **n != leader).unwrap();
    // A follower refuses with the leader's name; nothing is proposed.
    let (code, body) = post(&c, follower, "/consensus/propose", json!({"value": "x"})).await;
    assert_eq!(
        (code, body["leader"].as_str()),
        (421, Some(leader.as_str())),
        "{body}"
    );
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (http, url) = (c.http.clone(), c.url(&leader, "/consensus/propose"));
        tasks.push(tokio::spawn(async move {
            let r = http
                .post(url)
                .json(&json!({"value": {"n": i}}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 200);
            r.json::<Value>().await.unwrap()["index"].as_u64().unwrap()
        }));
    }
    let mut indexes = BTreeSet::new();
    for t in tasks {
        indexes.insert(t.await.unwrap());
    }
    assert_eq!(indexes, (1..=20).collect::<BTreeSet<u64>>());
    let (code, first) = get(&c, &leader, "/consensus/committed").await;
    assert_eq!(code, 200, "{first}");
    assert_eq!(first["count"], 20);
    assert!(first["commit_index"].as_u64().unwrap() >= 20, "{first}");
    let values = first["values"].as_array().unwrap();
    let seen: BTreeSet<u64> = values
        .iter()
        .map(|v| v["value"]["n"].as_u64().unwrap())
        .collect();
    assert_eq!(seen.len(), 20);
    // A window of the sequence; followers send readers to the leader, and
    // every node names the same leader.
    let (code, window) = get(&c, &leader, "/consensus/committed?from=5&max=3").await;
    assert_eq!(code, 200, "{window}");
    assert_eq!(window["values"], json!(values[4..7]));
    assert_eq!(window["values"][0]["index"], 5);
    for id in all {
        if id != leader {
            let (code, other) = get(&c, id, "/consensus/committed").await;
            assert_eq!(
                (code, other["leader"].as_str()),
                (421, Some(leader.as_str())),
                "{other}"
            );
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (code, l) = get(&c, id, "/consensus/leader").await;
            if code == 200 {
                assert_eq!(l["leader"].as_str(), Some(leader.as_str()), "{l}");
                break;
            }
            assert!(Instant::now() < deadline, "{id}: {code} {l}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    for (path, needle) in [
        ("/consensus/committed?from=0", "`from`"),
        ("/consensus/committed?max=x", "`max`"),
    ] {
        let (code, body) = get(&c, &leader, path).await;
        assert_eq!(code, 400, "{path}: {body}");
        assert!(body["message"].as_str().unwrap().contains(needle), "{body}");
    }
    let (code, body) = post(&c, &leader, "/consensus/propose", json!({"valu": 1})).await;
    assert_eq!(code, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("unknown field `valu`"),
        "{body}"
    );
    let (_, after) = get(&c, &leader, "/consensus/committed").await;
    assert_eq!(after["count"], 20, "refusals proposed nothing");
}
