//! The mailbox routes on a real cluster: sends and broadcasts land in inboxes
//! once, survive a restart, and reach a cut-off member through the relays
//! after the origin dies; bad requests are refused naming the field.

mod common;

use common::{wait_for, Cluster};
use serde_json::{json, Value};

/// The ids in member `id`'s inbox, in delivery order.
async fn inbox(c: &Cluster, id: &str) -> Vec<String> {
    let (code, body) = c.request("GET", id, "/cluster/inbox", None).await;
    assert_eq!(code, 200, "{body}");
    body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect()
}

/// Waits until every member answers.
async fn up(c: &Cluster) {
    for n in &c.nodes {
        wait_for("the member to answer", || async {
            c.request("GET", &n.id, "/cluster/state", None).await.0 == 200
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_and_broadcasts_land_once_survive_restarts_and_outlive_their_origin() {
    let mut c = Cluster::start(3, &[]).await;
    up(&c).await;
    let send = |to: &str, id: &str, n: u64| json!({"to": to, "id": id, "body": {"n": n}});
    let (code, body) = c
        .request("POST", "n1", "/cluster/send", Some(send("n2", "m1", 1)))
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["delivered"], true);
    let (code, _) = c
        .request("POST", "n1", "/cluster/send", Some(send("n1", "m2", 2)))
        .await;
    assert_eq!(code, 200);
    let (code, body) = c
        .request(
            "POST",
            "n3",
            "/cluster/broadcast",
            Some(json!({"id": "b1", "body": "hello"})),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["origin"], "n3");
    assert_eq!(body["delivered_to"], json!(["n1", "n2", "n3"]));
    // A repeat of m1 is acknowledged, not delivered again.
    let (code, _) = c
        .request("POST", "n1", "/cluster/send", Some(send("n2", "m1", 1)))
        .await;
    assert_eq!(code, 200);
    assert_eq!(inbox(&c, "n1").await, ["m2", "b1"]);
    assert_eq!(inbox(&c, "n2").await, ["m1", "b1"]);
    assert_eq!(inbox(&c, "n3").await, ["b1"]);
    let (_, body) = c.request("GET", "n2", "/cluster/inbox", None).await;
    let m1 = &body["messages"][0];
    assert_eq!(
        (&m1["kind"], &m1["origin"], &m1["from"], &m1["body"]),
        (&json!("send"), &json!("n1"), &json!("n1"), &json!({"n": 1}))
    );

    // n3 is cut off; n1 broadcasts, n2 acknowledges, and n1 dies: n2 relays.
    c.isolate("n3", true);
    let (code, body) = c
        .request(
            "POST",
            "n1",
            "/cluster/broadcast",
            Some(json!({"id": "b2", "body": 2, "deadline_ms": 300})),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["pending"], json!(["n3"]), "{body}");
    c.kill("n1");
    c.isolate("n3", false);
    wait_for("n3 to get b2 from the relay", || async {
        inbox(&c, "n3").await.contains(&"b2".to_string())
    })
    .await;
    // Inboxes are on disk: a restarted member keeps them and still refuses
    // to deliver a repeat.
    c.kill("n2");
    c.restart("n2");
    c.restart("n1");
    wait_for("n2 to answer", || async {
        c.request("GET", "n2", "/cluster/state", None).await.0 == 200
    })
    .await;
    assert_eq!(inbox(&c, "n2").await, ["m1", "b1", "b2"]);
    let (code, _) = c
        .request("POST", "n3", "/cluster/send", Some(send("n2", "m1", 1)))
        .await;
    assert_eq!(code, 200);
    assert_eq!(inbox(&c, "n2").await, ["m1", "b1", "b2"]);
    wait_for("n1 to answer", || async {
        c.request("GET", "n1", "/cluster/state", None).await.0 == 200
    })
    .await;
    assert_eq!(inbox(&c, "n1").await, ["m2", "b1", "b2"]);
    // Paging.
    let (_, page) = c
        .request("GET", "n2", "/cluster/inbox?from=1&max=1", None)
        .await;
    assert_eq!(page["messages"][0]["id"], "b1");
    assert_eq!(
        (page["next"].clone(), page["total"].clone()),
        (json!(2), json!(3))
    );
    let (code, state) = c.request("GET", "n2", "/cluster/state", None).await;
    assert_eq!(code, 200);
    assert_eq!(state["members"], json!(["n1", "n2", "n3"]));
    assert_eq!(state["mailbox"]["inbox"], 3);
    assert!(state["consensus"]["role"].is_string(), "{state}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_to_a_cut_off_member_times_out_and_is_delivered_once_later() {
    let c = Cluster::start(2, &[]).await;
    up(&c).await;
    c.isolate("n2", true);
    let (code, body) = c
        .request(
            "POST",
            "n1",
            "/cluster/send",
            Some(json!({"to": "n2", "id": "late", "body": 1, "deadline_ms": 200})),
        )
        .await;
    assert_eq!(code, 504, "{body}");
    assert_eq!(body["definite"], false);
    assert_eq!(body["id"], "late");
    c.isolate("n2", false);
    // The client tries again with the same id: delivered, once.
    let (code, body) = c
        .request(
            "POST",
            "n1",
            "/cluster/send",
            Some(json!({"to": "n2", "id": "late", "body": 1})),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(inbox(&c, "n2").await, ["late"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_mailbox_requests_are_refused_naming_what_is_wrong() {
    let c = Cluster::start(2, &[]).await;
    up(&c).await;
    let big = "x".repeat(70 * 1024);
    let cases: Vec<(&str, &str, Option<Value>, u16, &str)> = vec![
        (
            "POST",
            "/cluster/send",
            Some(json!({"body": 1})),
            400,
            "`to`",
        ),
        (
            "POST",
            "/cluster/send",
            Some(json!({"to": "n9", "body": 1})),
            404,
            "n9",
        ),
        (
            "POST",
            "/cluster/send",
            Some(json!({"to": "n2"})),
            400,
            "`body`",
        ),
        (
            "POST",
            "/cluster/send",
            Some(json!({"to": "n2", "body": 1, "deadline_ms": 0})),
            400,
            "deadline_ms",
        ),
        (
            "POST",
            "/cluster/send",
            Some(json!({"to": "n2", "body": 1, "id": ""})),
            400,
            "`id`",
        ),
        (
            "POST",
            "/cluster/broadcast",
            Some(json!({"body": big})),
            400,
            "`body`",
        ),
        (
            "POST",
            "/cluster/broadcast",
            Some(json!({"body": 1, "extra": true})),
            400,
            "extra",
        ),
        ("GET", "/cluster/inbox?from=x", None, 400, "`from`"),
        ("GET", "/cluster/inbox?max=-1", None, 400, "`max`"),
    ];
    for (method, path, body, want, names) in cases {
        let (code, answer) = c.request(method, "n1", path, body).await;
        assert_eq!(code, want, "{method} {path}: {answer}");
        let message = answer["message"].as_str().unwrap_or_default();
        assert!(message.contains(names), "{method} {path}: {answer}");
        assert_eq!(answer["definite"], true, "{answer}");
    }
    let (code, _) = c.request("GET", "n1", "/cluster/state", None).await;
    assert_eq!(code, 200);
    assert!(inbox(&c, "n1").await.is_empty() && inbox(&c, "n2").await.is_empty());
}
