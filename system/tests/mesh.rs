//! The mesh on real processes: a node's sidecar spreads requests over the
//! instances the registry lists, stops sending to a killed one, opens the
//! breaker of a browned-out one and retries elsewhere, keeps the caller's
//! trace, and refuses bad registry, sidecar and admin input naming the field.

mod common;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};

use common::{free_port, node_binary, wait_for, Cluster};
use serde_json::{json, Value};

/// A service instance process.
struct Instance {
    port: u16,
    child: Child,
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn instance(id: &str, registry: &str) -> Instance {
    let port = free_port();
    let child = Command::new(node_binary())
        .args([
            "--service=api",
            &format!("--id={id}"),
            &format!("--client=127.0.0.1:{port}"),
            &format!("--registry={registry}"),
            "--lease-ms=1000",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Instance { port, child }
}

/// The sidecar's view of service api: instance to its state.
async fn view(c: &Cluster) -> BTreeMap<String, Value> {
    let (_, s) = c.request("GET", "n1", "/mesh/state", None).await;
    s["services"]["api"]["instances"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| (i["instance"].as_str().unwrap().to_string(), i.clone()))
        .collect()
}

/// Sends `n` GETs through the sidecar; answers how many each instance served.
async fn spread(c: &Cluster, n: usize) -> BTreeMap<String, usize> {
    let mut served = BTreeMap::new();
    for i in 0..n {
        let r = c
            .http
            .get(c.url("n1", &format!("/mesh/api/work/k{i}?ms=1")))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let by = r
            .headers()
            .get("x-mesh-instance")
            .map(|v| v.to_str().unwrap().to_string());
        let body: Value = r.json().await.unwrap_or(Value::Null);
        assert_eq!(status, 200, "request {i}: {body}");
        *served.entry(by.unwrap()).or_insert(0) += 1;
    }
    served
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sidecar_balances_routes_around_dead_and_browned_out_instances_and_traces() {
    // Lenient probes: a loaded machine must not make a live instance look down.
    let c = Cluster::start(
        1,
        &[r#"--mesh-config={"balancer":"round-robin","health":{"timeout_ms":1000,"failures":3}}"#],
    )
    .await;
    let registry = c.url("n1", "");
    // The first request through the sidecar starts its discovery.
    wait_for("an answer through the sidecar", || async {
        c.request("GET", "n1", "/mesh/api/work/k", None).await.0 != 0
    })
    .await;
    let mut instances: BTreeMap<&str, Instance> = ["api1", "api2", "api3"]
        .into_iter()
        .map(|id| (id, instance(id, &registry)))
        .collect();
    wait_for("three instances up in the sidecar's view", || async {
        let v = view(&c).await;
        v.len() == 3 && v.values().all(|i| i["up"] == true)
    })
    .await;
    let (code, listed) = c.request("GET", "n1", "/registry/api", None).await;
    assert_eq!(code, 200, "{listed}");
    assert_eq!(listed["instances"].as_array().unwrap().len(), 3);

    // Round robin over three: each serves a share (exactly a third unless a
    // probe failed on the way; the balancer's own test is exact).
    let served = spread(&c, 60).await;
    assert!(
        served.len() == 3 && served.values().all(|n| *n >= 10),
        "{served:?}"
    );

    // A killed instance is found down and gets nothing more; its lease lapses.
    drop(instances.remove("api2"));
    wait_for("api2 down or gone", || async {
        view(&c).await.get("api2").is_none_or(|i| i["up"] == false)
    })
    .await;
    let served = spread(&c, 40).await;
    assert!(!served.contains_key("api2"), "{served:?}");
    wait_for("api2's lease to lapse", || async {
        let (_, l) = c.request("GET", "n1", "/registry/api", None).await;
        l["instances"].as_array().is_some_and(|a| a.len() == 2)
    })
    .await;

    // api1 fails every request: its breaker opens and retries go to api3,
    // so callers still get answers.
    let (code, b) = c
        .http
        .post(format!(
            "http://127.0.0.1:{}/admin/brownout",
            instances["api1"].port
        ))
        .json(&json!({"error_rate": 1.0}))
        .send()
        .await
        .map(|r| (r.status().as_u16(), r))
        .unwrap();
    assert_eq!(code, 200, "{:?}", b.text().await);
    let served = spread(&c, 40).await;
    assert!(served.get("api3").copied().unwrap_or(0) >= 39, "{served:?}");
    assert_eq!(view(&c).await["api1"]["breaker"], "open");
    let (_, rec) = c
        .request("GET", "n1", "/mesh/records?from=0&limit=5000", None)
        .await;
    assert!(
        rec["transitions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["instance"] == "api1" && t["from"] == "closed" && t["to"] == "open"),
        "{}",
        rec["transitions"]
    );

    // The caller's trace goes through: the sidecar's span is the child of the
    // caller's, the instance's the child of the try.
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let r = c
        .http
        .post(c.url("n1", "/mesh/api/work/traced"))
        .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
        .header("x-request-id", "traced-1")
        .json(&json!({"x": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["span"]["trace"], trace);
    let (_, rec) = c
        .request("GET", "n1", "/mesh/records?from=0&limit=5000", None)
        .await;
    let mine = rec["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["request"] == "traced-1")
        .unwrap()
        .clone();
    assert_eq!(
        (mine["trace"].as_str(), mine["parent"].as_str()),
        (Some(trace), Some("00f067aa0ba902b7"))
    );
    assert_eq!(mine["idempotent"], false);
    let last = mine["attempts"].as_array().unwrap().last().unwrap();
    assert_eq!(last["callee_span"]["parent"], last["span"]);
    assert_eq!(body["span"]["parent"], last["span"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_registry_sidecar_and_admin_input_is_refused_naming_the_field() {
    let c = Cluster::start(1, &[]).await;
    let api = instance("api1", &c.url("n1", ""));
    wait_for("the instance registered", || async {
        c.request("GET", "n1", "/registry/api", None).await.0 == 200
    })
    .await;
    let cases: Vec<(&str, &str, Option<Value>, &str)> = vec![
        (
            "PUT",
            "/registry/api/x",
            Some(json!({"addr": "h:1", "ttl_ms": 1000, "weight": 0})),
            "weight",
        ),
        (
            "PUT",
            "/registry/api/x",
            Some(json!({"addr": "nowhere", "ttl_ms": 1000})),
            "addr",
        ),
        (
            "PUT",
            "/registry/api/x",
            Some(json!({"addr": "h:1", "ttl_ms": 5})),
            "ttl_ms",
        ),
        (
            "PUT",
            "/registry/api/x",
            Some(json!({"addr": "h:1", "ttl_ms": 1000, "zone": 1})),
            "zone",
        ),
        (
            "PUT",
            "/registry/a%20b/x",
            Some(json!({"addr": "h:1", "ttl_ms": 1000})),
            "service",
        ),
        ("GET", "/registry/nothing", None, "nothing"),
        (
            "PUT",
            "/mesh/config/api",
            Some(json!({"breaker": {"failures": 0}})),
            "breaker.failures",
        ),
        (
            "PUT",
            "/mesh/config/api",
            Some(json!({"weights": {"api1": 0}})),
            "weights.api1",
        ),
        (
            "PUT",
            "/mesh/config/api",
            Some(json!({"retry": {"budget_ratio": -1.0}})),
            "retry.budget_ratio",
        ),
        (
            "PUT",
            "/mesh/config/api",
            Some(json!({"balancer": "random"})),
            "random",
        ),
        (
            "PUT",
            "/mesh/config/api",
            Some(json!({"bogus": 1})),
            "bogus",
        ),
        ("GET", "/mesh/unknown/work/x", None, "unknown"),
        ("GET", "/mesh/records?from=x", None, "from"),
    ];
    for (method, path, body, names) in cases {
        let (code, answer) = c.request(method, "n1", path, body.clone()).await;
        assert!(
            (400..500).contains(&code),
            "{method} {path} {body:?}: {code} {answer}"
        );
        assert!(
            answer["message"].as_str().unwrap_or("").contains(names),
            "{method} {path}: {answer}"
        );
    }
    let r = c
        .http
        .get(c.url("n1", "/mesh/api/work/x"))
        .header("x-timeout-ms", "soon")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let text = r.text().await.unwrap();
    assert!(text.contains("x-timeout-ms"), "{text}");
    for (path, body, names) in [
        ("/admin/brownout", json!({"error_rate": 2.0}), "error_rate"),
        (
            "/admin/brownout",
            json!({"extra_ms": 1_000_000}),
            "extra_ms",
        ),
        ("/admin/brownout", json!({"errors": 1}), "errors"),
    ] {
        let r = c
            .http
            .post(format!("http://127.0.0.1:{}{path}", api.port))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 400, "{path} {body}");
        let text = r.text().await.unwrap();
        assert!(text.contains(names), "{text}");
    }
    let r = c
        .http
        .get(format!("http://127.0.0.1:{}/work/x?ms=lots", api.port))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    // The node and the instance still serve.
    assert_eq!(c.request("GET", "n1", "/mesh/state", None).await.0, 200);
    let r = c
        .http
        .get(format!("http://127.0.0.1:{}/health", api.port))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
}
