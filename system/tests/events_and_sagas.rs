//! The event store and the order saga on clusters of real node processes:
//! racing appends at one expected version, bad requests to every new route,
//! and an orchestrator that dies mid-saga (crash points) with the next
//! leader finishing the saga, the charge taken once.

mod common;

use std::time::{Duration, Instant};

use common::Cluster;
use serde_json::{json, Value};

async fn send(
    c: &Cluster,
    id: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    c.request(method, id, path, body).await
}

/// Retries through the leader until a 200.
async fn ok(c: &Cluster, among: &[&str], method: &str, path: &str, body: Value) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let leader = c.leader(among).await;
        let body = (method != "GET").then(|| body.clone());
        let (code, answer) = send(c, &leader, method, path, body).await;
        if code == 200 {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{method} {path} never answered 200");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_appends_at_one_expected_version_have_one_winner() {
    let c = Cluster::start(3, &[]).await;
    let leader = c.leader(&["n1", "n2", "n3"]).await;
    let mut racers = Vec::new();
    for i in 0..8 {
        let url = c.url(&leader, "/events/streams/race/append");
        let http = c.http.clone();
        racers.push(tokio::spawn(async move {
            let r = http
                .post(url)
                .json(&json!({"expected": 0, "events": [{"type": "t", "data": {"i": i}}]}))
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }));
    }
    let mut won = 0;
    for r in racers {
        let (code, body) = r.await.unwrap();
        match code {
            200 => won += 1,
            409 => {
                assert_eq!(body["error"], "wrong-expected-version", "{body}");
                assert_eq!(body["current"], 1, "{body}");
            }
            other => panic!("{other} {body}"),
        }
    }
    assert_eq!(won, 1);
    let read = ok(
        &c,
        &["n1", "n2", "n3"],
        "GET",
        "/events/streams/race",
        Value::Null,
    )
    .await;
    assert_eq!(read["version"], 1);
    assert_eq!(read["events"][0]["version"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_to_the_new_routes_get_a_4xx_naming_the_field() {
    let c = Cluster::start(1, &[]).await;
    c.leader(&["n1"]).await;
    ok(&c, &["n1"], "POST", "/events/subscriptions/s", json!({})).await;
    let cases: Vec<(&str, &str, Option<Value>, u16, &str)> = vec![
        (
            "POST",
            "/events/streams/a/append",
            Some(json!({"expected": -1, "events": [{"type": "t"}]})),
            400,
            "`expected` must be a non-negative integer",
        ),
        (
            "POST",
            "/events/streams/a/append",
            Some(json!({"expected": "x", "events": [{"type": "t"}]})),
            400,
            "`expected`",
        ),
        (
            "POST",
            "/events/streams/a/append",
            Some(json!({"events": []})),
            400,
            "`events` must hold 1 to 100",
        ),
        (
            "POST",
            "/events/streams/a/append",
            Some(json!({"events": [{"data": 1}]})),
            400,
            "`events[0]`",
        ),
        (
            "POST",
            "/events/streams/a/append",
            Some(json!({"events": [{"type": ""}]})),
            400,
            "`events[0].type`",
        ),
        (
            "POST",
            "/events/streams/a/append",
            Some(json!({"expected": 0})),
            400,
            "missing field `events`",
        ),
        (
            "POST",
            "/events/streams/saga-o1/append",
            Some(json!({"events": [{"type": "saga-completed"}]})),
            400,
            "belong to the saga orchestrator",
        ),
        ("GET", "/events/streams/a?from=-2", None, 400, "`from`"),
        (
            "GET",
            "/events/streams/a?direction=up",
            None,
            400,
            "`direction`",
        ),
        (
            "GET",
            "/events/streams/unknown",
            None,
            404,
            "no stream `unknown`",
        ),
        (
            "GET",
            "/events/streams/unknown/state",
            None,
            404,
            "no stream `unknown`",
        ),
        ("GET", "/events/all?max=x", None, 400, "`max`"),
        (
            "POST",
            "/events/subscriptions/s",
            Some(json!({"from": -1})),
            400,
            "`from`",
        ),
        (
            "POST",
            "/events/subscriptions/nope/poll",
            Some(json!({})),
            404,
            "no subscription `nope`",
        ),
        (
            "POST",
            "/events/subscriptions/s/poll",
            Some(json!({"max": 0})),
            400,
            "`max`",
        ),
        (
            "POST",
            "/events/subscriptions/s/poll",
            Some(json!({"wait_ms": 99999})),
            400,
            "`wait_ms`",
        ),
        (
            "POST",
            "/events/subscriptions/s/ack",
            Some(json!({"position": -3})),
            400,
            "`position`",
        ),
        (
            "POST",
            "/events/subscriptions/s/ack",
            Some(json!({})),
            400,
            "missing field `position`",
        ),
        (
            "POST",
            "/events/subscriptions/nope/ack",
            Some(json!({"position": 0})),
            404,
            "no such subscription",
        ),
        (
            "POST",
            "/saga/setup",
            Some(json!({"stock": {"i": -1}, "wallets": {}})),
            400,
            "`stock.i`",
        ),
        (
            "POST",
            "/saga/setup",
            Some(json!({"stock": []})),
            400,
            "expected {\"stock\"",
        ),
        (
            "POST",
            "/saga/services/billing/faults",
            Some(json!({})),
            404,
            "no service `billing`",
        ),
        (
            "POST",
            "/saga/services/payment/faults",
            Some(json!({"fail": 2})),
            400,
            "`fail`",
        ),
        (
            "POST",
            "/saga/services/payment/faults",
            Some(json!({"fial": 0.1})),
            400,
            "unknown field `fial`",
        ),
        (
            "POST",
            "/sagas",
            Some(json!({"order": "o", "customer": "c", "item": "i", "qty": 0, "amount": 5})),
            400,
            "`qty`",
        ),
        (
            "POST",
            "/sagas",
            Some(json!({"order": "", "customer": "c", "item": "i", "qty": 1, "amount": 5})),
            400,
            "`order`",
        ),
        (
            "POST",
            "/sagas",
            Some(json!({"order": "o", "customer": "c", "item": "i", "qty": 1})),
            400,
            "missing field `amount`",
        ),
        (
            "POST",
            "/sagas",
            Some(json!({"order": "o", "customer": "c", "item": "i", "qty": "1", "amount": 5})),
            400,
            "invalid type",
        ),
        (
            "GET",
            "/sagas/unknown",
            None,
            404,
            "no saga for order `unknown`",
        ),
    ];
    for (method, path, body, status, needle) in cases {
        let (code, answer) = send(&c, "n1", method, path, body).await;
        let message = answer["message"].as_str().unwrap_or_default();
        assert_eq!(code, status, "{method} {path}: {answer}");
        assert!(message.contains(needle), "{method} {path}: {message}");
        assert_eq!(answer["definite"], true, "{method} {path}: {answer}");
    }
    // Still serving, and none of the refusals changed anything.
    let (code, _) = send(&c, "n1", "GET", "/events/streams/a", None).await;
    assert_eq!(code, 404);
    let services = ok(&c, &["n1"], "GET", "/saga/services", Value::Null).await;
    assert_eq!(services["set_up"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saga_whose_orchestrator_dies_is_finished_by_the_next_leader() {
    let all = ["n1", "n2", "n3"];
    let mut c = Cluster::start(3, &["--request-timeout-ms", "1500"]).await;
    ok(
        &c,
        &all,
        "POST",
        "/saga/setup",
        json!({"stock": {"i": 10}, "wallets": {"c": 100}}),
    )
    .await;
    for (n, point) in ["saga-after-reserve", "saga-before-recording-charge"]
        .iter()
        .enumerate()
    {
        let order = format!("o{n}");
        let leader = c.leader(&all).await;
        c.arm_crash_point(&leader, point).await;
        let body = json!({"order": order, "customer": "c", "item": "i", "qty": 2, "amount": 30});
        let (code, answer) = send(&c, &leader, "POST", "/sagas", Some(body)).await;
        assert_eq!(
            code, 0,
            "the orchestrator answered instead of dying at {point}: {answer}"
        );
        c.kill(&leader);
        let others: Vec<&str> = all.iter().copied().filter(|id| *id != leader).collect();
        // The new leader's recovery takes the stalled saga over.
        let deadline = Instant::now() + Duration::from_secs(30);
        let saga = loop {
            let s = ok(&c, &others, "GET", &format!("/sagas/{order}"), Value::Null).await;
            if !s["end"].is_null() {
                break s;
            }
            assert!(Instant::now() < deadline, "saga {order} never ended: {s}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert_eq!(saga["end"], "completed", "{saga}");
        assert_eq!(saga["done"], json!(["reserve", "charge", "ship"]), "{saga}");
        c.restart(&leader);
    }
    let services = ok(&c, &all, "GET", "/saga/services", Value::Null).await;
    let charges = services["ledger"].as_array().unwrap();
    assert_eq!(charges.len(), 2, "one charge per order: {services}");
    assert_eq!(services["wallets"]["c"], 40, "{services}");
    assert_eq!(services["stock"]["i"], 6, "{services}");
    assert_eq!(
        services["shipments"].as_object().unwrap().len(),
        2,
        "{services}"
    );
}
