//! Push subscriptions to a broker topic (`GET /topics/{t}/subscribe`, server-
//! sent events) on a real cluster: produced messages arrive as events, one
//! left unacknowledged comes again after its visibility timeout, an
//! acknowledged one does not, and `GET /topics` counts what is left; bad
//! parameters are refused naming them.

mod common;

use std::time::{Duration, Instant};

use common::Cluster;
use serde_json::{json, Value};

/// Reads events `message` off an open subscription until `n` arrived or
/// `within` passed.
async fn messages(r: &mut reqwest::Response, n: usize, within: Duration) -> Vec<Value> {
    let deadline = Instant::now() + within;
    let mut text = String::new();
    let mut out = Vec::new();
    while out.len() < n && Instant::now() < deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(Ok(Some(chunk))) = tokio::time::timeout(left, r.chunk()).await else {
            break;
        };
        text.push_str(&String::from_utf8_lossy(&chunk));
        // Whole events end with a blank line.
        while let Some(end) = text.find("\n\n") {
            let event: String = text.drain(..end + 2).collect();
            if event.lines().any(|l| l == "event: message") {
                let data = event
                    .lines()
                    .find_map(|l| l.strip_prefix("data: "))
                    .unwrap_or("null");
                out.push(serde_json::from_str(data).unwrap());
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_get_produced_messages_pushed_and_unacknowledged_ones_again() {
    let c = Cluster::start(3, &[]).await;
    let leader = c.leader(&["n1", "n2", "n3"]).await;
    for i in 0..3 {
        let (code, body) = c
            .request(
                "POST",
                &leader,
                "/topics/t/produce",
                Some(json!({"key": format!("k{i}"), "value": i})),
            )
            .await;
        assert_eq!(code, 200, "{body}");
    }
    let url = c.url(
        &leader,
        "/topics/t/subscribe?group=g&consumer=c1&visibility_ms=800",
    );
    let client = reqwest::Client::new();
    let mut r = client.get(&url).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let got = messages(&mut r, 3, Duration::from_secs(10)).await;
    let mut values: Vec<i64> = got.iter().map(|m| m["value"].as_i64().unwrap()).collect();
    values.sort();
    assert_eq!(values, [0, 1, 2], "{got:?}");
    // Acknowledge all but value 1; it alone comes again.
    for m in got.iter().filter(|m| m["value"] != 1) {
        let (code, body) = c
            .request(
                "POST",
                &leader,
                "/topics/t/ack",
                Some(json!({"group": "g", "partition": m["partition"], "offset": m["offset"]})),
            )
            .await;
        assert_eq!(code, 200, "{body}");
    }
    let again = messages(&mut r, 2, Duration::from_secs(3)).await;
    assert!(
        !again.is_empty(),
        "the unacknowledged message never came again"
    );
    assert!(again.iter().all(|m| m["value"] == 1), "{again:?}");
    assert!(again[0]["delivery"].as_u64().unwrap() >= 2, "{again:?}");
    // A message produced while the stream is open is pushed at once.
    c.request(
        "POST",
        &leader,
        "/topics/t/produce",
        Some(json!({"key": "late", "value": 9})),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut pushed = false;
    while !pushed && Instant::now() < deadline {
        let got = messages(&mut r, 1, Duration::from_secs(1)).await;
        pushed = got.iter().any(|m| m["value"] == 9);
    }
    assert!(
        pushed,
        "a message produced during the subscription was not pushed"
    );
    drop(r);
    // The queue view: four produced, two acknowledged; value 1 redelivered.
    let (code, summary) = c.request("GET", &leader, "/topics", None).await;
    assert_eq!(code, 200, "{summary}");
    let t = summary["topics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["topic"] == "t")
        .cloned()
        .unwrap();
    assert_eq!(t["messages"], 4, "{summary}");
    let g = &t["groups"][0];
    assert_eq!(
        (g["group"].clone(), g["depth"].clone()),
        (json!("g"), json!(2)),
        "{summary}"
    );
    assert!(g["redeliveries"].as_u64().unwrap() >= 1, "{summary}");

    for (query, names) in [
        ("consumer=c", "`group`"),
        ("group=g", "`consumer`"),
        ("group=g&consumer=c&visibility_ms=0", "visibility_ms"),
        ("group=g&consumer=c&max=x", "`max`"),
    ] {
        let (code, body) = c
            .request(
                "GET",
                &leader,
                &format!("/topics/t/subscribe?{query}"),
                None,
            )
            .await;
        assert_eq!(code, 400, "{query}: {body}");
        assert!(
            body["message"].as_str().unwrap_or_default().contains(names),
            "{query}: {body}"
        );
    }
    // On a follower the stream says so in an event `error` and ends.
    let follower = ["n1", "n2", "n3"]
        .into_iter()
        .find(|n| *n != leader)
        .unwrap();
    let text = client
        .get(c.url(follower, "/topics/t/subscribe?group=g&consumer=c2"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("event: error") && text.contains("not-leader"),
        "{text}"
    );
}
