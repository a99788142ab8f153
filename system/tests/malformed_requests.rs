//! Malformed requests to a running node: each gets a 4xx with the node's JSON
//! error body naming what is wrong, and the node keeps serving.

mod common;

use common::{raw_request, Cluster, RawAnswer};
use serde_json::{json, Value};

/// Asserts a 4xx answer with the node's error body whose message holds `needle`.
fn assert_json_refusal(what: &str, answer: &RawAnswer, status: u16, needle: &str) {
    assert_eq!(answer.status, status, "{what}: {answer:?}");
    assert!(
        answer.head.contains("content-type: application/json"),
        "{what}: {answer:?}"
    );
    let body: Value = serde_json::from_slice(&answer.body)
        .unwrap_or_else(|e| panic!("{what}: body is not JSON ({e}): {answer:?}"));
    assert!(body["error"].is_string(), "{what}: {body}");
    assert_eq!(body["definite"], true, "{what}: {body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains(needle), "{what}: {message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_below_the_routes_answer_with_the_json_error_body() {
    let c = Cluster::start(1, &[]).await;
    c.put_acked(&["n1"], "kept", json!("yes")).await;
    let (client, admin) = (c.node("n1").client, c.node("n1").admin);
    let big_body = vec![b'a'; 3 * 1024 * 1024];
    let mut too_large = format!(
        "PUT /kv/a HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        big_body.len()
    )
    .into_bytes();
    too_large.extend_from_slice(&big_body);
    let long_target = format!(
        "GET /kv/{} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        "a".repeat(70_000)
    );
    let many_headers = format!(
        "GET /kv/a HTTP/1.1\r\nhost: x\r\nconnection: close\r\n{}\r\n",
        (0..120)
            .map(|i| format!("x-{i}: 1\r\n"))
            .collect::<String>()
    );
    let huge_header = format!(
        "GET /kv/a HTTP/1.1\r\nhost: x\r\nconnection: close\r\nx-big: {}\r\n\r\n",
        "a".repeat(1_000_000)
    );
    let cases: Vec<(&str, u16, Vec<u8>, u16, &str)> = vec![
        (
            "body over the limit",
            client,
            too_large,
            413,
            "PUT /kv/a: the body is larger than 2097152 bytes",
        ),
        (
            "request target too long",
            client,
            long_target.into_bytes(),
            414,
            "longer than 65534 bytes",
        ),
        (
            "too many headers",
            client,
            many_headers.into_bytes(),
            431,
            "more than 100 headers",
        ),
        (
            "a header too large",
            client,
            huge_header.into_bytes(),
            431,
            "request head is too large",
        ),
        (
            "a percent-encoded path that is not UTF-8",
            client,
            b"GET /kv/%ff HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".to_vec(),
            400,
            "GET /kv/%ff: Invalid URL: Invalid UTF-8 in `key`",
        ),
        (
            "raw bytes that are not UTF-8 in the path",
            client,
            b"GET /kv/\xff\xfe HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".to_vec(),
            400,
            "not a valid HTTP/1.1 request",
        ),
        (
            "a request line that is not HTTP",
            client,
            b"GARBAGE\r\n\r\n".to_vec(),
            400,
            "not a valid HTTP/1.1 request",
        ),
        (
            "an unknown admin path",
            admin,
            b"GET /admin/nope HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".to_vec(),
            404,
            "no such endpoint",
        ),
        (
            "a wrong admin method",
            admin,
            b"DELETE /admin/clock HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".to_vec(),
            405,
            "method not allowed",
        ),
        (
            "an admin header too large",
            admin,
            format!(
                "GET /admin/health HTTP/1.1\r\nhost: x\r\nconnection: close\r\nx-big: {}\r\n\r\n",
                "a".repeat(1_000_000)
            )
            .into_bytes(),
            431,
            "request head is too large",
        ),
    ];
    for (what, port, request, status, needle) in cases {
        let answer = raw_request(port, &request).await;
        assert_json_refusal(what, &answer, status, needle);
    }
    assert_eq!(c.get("n1", "kept").await, (200, json!({"value": "yes"})));
}

#[tokio::test(flavor = "multi_thread")]
async fn bodies_must_be_objects_and_integers_must_fit_in_64_bits() {
    let c = Cluster::start(1, &[]).await;
    c.put_acked(&["n1"], "a", json!("before")).await;
    let send = |method: &str, path: &str, body: &str| {
        format!(
            "{method} {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    };
    let port = c.node("n1").client;
    for (path, method, body, needle) in [
        (
            "/kv/a",
            "PUT",
            "[1]",
            "expected {\"value\": V}: the body must be a JSON object, found an array",
        ),
        ("/kv/a", "PUT", "7", "found a number"),
        ("/kv/a/cas", "POST", "[\"before\", 2]", "found an array"),
        (
            "/locks/l/acquire",
            "POST",
            "[\"o\", 1000]",
            "found an array",
        ),
        ("/fenced/r", "PUT", "[1, 2]", "found an array"),
        ("/topics/t/produce", "POST", "[\"k\", 1]", "found an array"),
        (
            "/cluster/join",
            "POST",
            "[\"n9\", \"127.0.0.1:1\"]",
            "found an array",
        ),
        ("/kv/a", "PUT", "{}", "missing field `value`"),
        (
            "/kv/a",
            "PUT",
            "{\"value\": 18446744073709551617}",
            "`value`: integer 18446744073709551617 does not fit in 64 bits",
        ),
        (
            "/kv/a",
            "PUT",
            "{\"value\": {\"x\": [1, -9223372036854775809]}}",
            "`value.x[1]`: integer -9223372036854775809 does not fit in 64 bits",
        ),
        (
            "/kv/a/cas",
            "POST",
            "{\"expected\": \"before\", \"new\": 99999999999999999999}",
            "`new`: integer 99999999999999999999",
        ),
    ] {
        let answer = raw_request(port, &send(method, path, body)).await;
        assert_json_refusal(&format!("{method} {path} {body}"), &answer, 400, needle);
    }
    assert_eq!(c.get("n1", "a").await, (200, json!({"value": "before"})));
    // The largest 64-bit integers are kept exact.
    for v in [json!(u64::MAX), json!(i64::MIN)] {
        assert_eq!(c.put("n1", "a", v.clone()).await.0, 200);
        assert_eq!(c.get("n1", "a").await, (200, json!({ "value": v })));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn clock_offsets_beyond_a_day_are_refused() {
    let c = Cluster::start(1, &[]).await;
    c.leader(&["n1"]).await;
    let url = format!("http://127.0.0.1:{}/admin/clock", c.node("n1").admin);
    let post = |body: Value| {
        let (http, url) = (c.http.clone(), url.clone());
        async move {
            let r = http.post(url).json(&body).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let day = 86_400_000i64;
    assert_eq!(
        post(json!({"offset_ms": day})).await,
        (200, json!({"offset_ms": day}))
    );
    for (body, field) in [
        (json!({"offset_ms": i64::MAX}), "offset_ms"),
        (json!({"offset_ms": 1_000_000_000_000i64}), "offset_ms"),
        (json!({"offset_ms": -day - 1}), "offset_ms"),
        (json!({"bump_ms": 1}), "bump_ms"),
        (json!({"bump_ms": i64::MAX}), "bump_ms"),
    ] {
        let (status, answer) = post(body.clone()).await;
        assert_eq!(status, 400, "{body}: {answer}");
        let message = answer["message"].as_str().unwrap_or_default();
        assert!(
            message.starts_with(field) && message.contains("within ±86400000 ms"),
            "{body}: {answer}"
        );
    }
    let (status, answer) = post(json!({"bump_ms": -2 * day})).await;
    assert_eq!((status, answer), (200, json!({"offset_ms": -day})));
    let now: Value = c.http.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(now["offset_ms"], -day);
    assert!(now["now_ms"].as_i64().unwrap() > 1_600_000_000_000, "{now}");
}
