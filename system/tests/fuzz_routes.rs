//! Property fuzzing of a running node's routes: mutated methods, paths, headers,
//! bodies and framing (route_inputs/). After every request the node must be
//! alive and still read a key written before; every answer it gives must be the
//! documented shape: a 4xx with the JSON error body, no 5xx but 503 and 504
//! (a push subscription answers with an event stream, whose head is checked).

mod common;
mod route_inputs;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::Cluster;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestRunner};
use route_inputs::{case, Case, Listener, ROUTES};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Requests tried; enough to reach every route a dozen times and more.
/// `FUZZ_ROUTE_CASES=N` tries N instead, for a deeper run by hand.
const CASES: u32 = 1_000;
/// The key written before the fuzzing; no generated path can name it.
const CANARY: &str = "canary-5d1e7f0a9b3c";
/// How long a complete request may wait for its answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an incomplete request is watched after the client stops writing.
const HALF_CLOSED_WATCH: Duration = Duration::from_secs(2);

/// An answer read off the wire.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: Vec<u8>,
}

/// The first final answer in `bytes` when it is complete: `None` while more
/// must be read (or with `eof`, when there is none).
fn parse_answer(bytes: &[u8], head_only: bool, eof: bool) -> Option<Answer> {
    let mut rest = bytes;
    loop {
        let end = rest.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&rest[..end]).to_lowercase();
        let status: u16 = head.split(' ').nth(1)?.parse().ok()?;
        rest = &rest[end + 4..];
        if (100..200).contains(&status) {
            continue;
        }
        // A push subscription's stream never ends: its head is the answer.
        if status < 300 && head.contains("content-type: text/event-stream") {
            return Some(Answer {
                status,
                head,
                body: Vec::new(),
            });
        }
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok());
        let body = match length {
            _ if head_only => Vec::new(),
            Some(n) if rest.len() >= n => rest[..n].to_vec(),
            Some(_) => return None,
            None if eof => rest.to_vec(),
            None => return None,
        };
        return Some(Answer { status, head, body });
    }
}

/// Sends one case and reads its answer. An incomplete request is half-closed
/// after writing, so the node sees its end; `None` when nothing came back.
async fn exchange(port: u16, case: &Case) -> Option<Answer> {
    let stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    let (mut rd, mut wr) = stream.into_split();
    let request = case.request.clone();
    let half_close = !case.must_answer;
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(&request).await;
        if half_close {
            let _ = wr.shutdown().await;
        }
        wr
    });
    let wait = if case.must_answer {
        ANSWER_TIMEOUT
    } else {
        HALF_CLOSED_WATCH
    };
    let deadline = Instant::now() + wait;
    let mut bytes = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let answer = loop {
        if let Some(a) = parse_answer(&bytes, case.head_only, false) {
            break Some(a);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rd.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break parse_answer(&bytes, case.head_only, true),
            Ok(Ok(n)) => bytes.extend_from_slice(&buf[..n]),
            Err(_) => break None,
        }
    };
    writer.abort();
    answer
}

/// The documented shape of an answer, or what is wrong with it.
fn check_answer(a: &Answer, head_only: bool) -> Result<(), String> {
    if !(200..600).contains(&a.status) {
        return Err(format!("status {}", a.status));
    }
    if a.status >= 500 && !matches!(a.status, 503 | 504) {
        return Err(format!("undocumented {}", a.status));
    }
    if head_only || (a.status < 300 && a.head.contains("content-type: text/event-stream")) {
        return Ok(());
    }
    let body: Value =
        serde_json::from_slice(&a.body).map_err(|e| format!("body is not JSON: {e}"))?;
    if a.status >= 400 {
        if !a.head.contains("content-type: application/json") {
            return Err("an error without content-type application/json".into());
        }
        let shaped = body["error"].is_string()
            && body["message"].is_string()
            && body["definite"].is_boolean();
        if !shaped {
            return Err(format!("not the error body: {body}"));
        }
        if a.status >= 500 && !matches!(body["error"].as_str(), Some("unavailable" | "timeout")) {
            return Err(format!(
                "a {} that is not unavailable or timeout: {body}",
                a.status
            ));
        }
    }
    Ok(())
}

/// What one route got: cases, then answers by class.
#[derive(Default)]
struct Tally {
    cases: u32,
    ok: u32,
    refused: u32,
    unavailable: u32,
    unanswered: u32,
}

#[test]
fn random_requests_to_every_route_leave_the_node_serving() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cluster = rt.block_on(async {
        let c = Cluster::start(1, &[]).await;
        c.put_acked(&["n1"], CANARY, json!({"kept": [1, 2, 3]}))
            .await;
        c
    });
    let node = cluster.node("n1");
    let (client, admin) = (node.client, node.admin);
    let health = format!("http://127.0.0.1:{admin}/admin/health");
    let tallies: RefCell<BTreeMap<usize, Tally>> = RefCell::new(BTreeMap::new());
    let rng_seed = match std::env::var("PROPTEST_RNG_SEED") {
        Ok(s) => RngSeed::Fixed(s.parse().expect("PROPTEST_RNG_SEED is a u64")),
        Err(_) => RngSeed::Fixed(24),
    };
    let mut runner = TestRunner::new(Config {
        cases: std::env::var("FUZZ_ROUTE_CASES")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(CASES),
        failure_persistence: None,
        max_shrink_iters: 32,
        rng_seed,
        ..Config::default()
    });
    let started = Instant::now();
    let result = runner.run(&case(), |case| {
        rt.block_on(async {
            let port = match case.listener {
                Listener::Client => client,
                Listener::Admin => admin,
            };
            let answer = exchange(port, &case).await;
            {
                let mut tallies = tallies.borrow_mut();
                let t = tallies.entry(case.route).or_default();
                t.cases += 1;
                match answer.as_ref().map(|a| a.status) {
                    None => t.unanswered += 1,
                    Some(s) if s >= 500 => t.unavailable += 1,
                    Some(s) if s >= 400 => t.refused += 1,
                    Some(_) => t.ok += 1,
                }
            }
            match &answer {
                Some(a) => check_answer(a, case.head_only)
                    .map_err(|e| TestCaseError::fail(format!("{e}; answer {a:?}")))?,
                None if case.must_answer => {
                    return Err(TestCaseError::fail("a complete request got no answer"))
                }
                None => {}
            }
            let alive = cluster
                .http
                .get(&health)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if !alive {
                return Err(TestCaseError::fail(
                    "the node's health route does not answer",
                ));
            }
            let (status, read) = cluster.get("n1", CANARY).await;
            if (status, &read) != (200, &json!({"value": {"kept": [1, 2, 3]}})) {
                return Err(TestCaseError::fail(format!(
                    "the canary reads {status} {read}"
                )));
            }
            Ok(())
        })
    });
    let tallies = tallies.into_inner();
    let mut report = format!(
        "fuzz_routes: {} requests in {:.1} s (cases, 2xx, 4xx, 503/504, unanswered incomplete):\n",
        tallies.values().map(|t| t.cases).sum::<u32>(),
        started.elapsed().as_secs_f64()
    );
    for (r, t) in &tallies {
        report.push_str(&format!(
            "  {:<8} {:<30} {:>4} {:>4} {:>4} {:>4} {:>4}\n",
            format!("{:?}", ROUTES[*r].listener).to_lowercase(),
            ROUTES[*r].name,
            t.cases,
            t.ok,
            t.refused,
            t.unavailable,
            t.unanswered
        ));
    }
    eprint!("{report}");
    if let Err(e) = result {
        let log = cluster.log_text("n1");
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        panic!(
            "{e}\nnode log (last lines, newest first):\n{}",
            tail.join("\n")
        );
    }
    assert_eq!(tallies.len(), ROUTES.len(), "every route was tried");
    assert!(tallies.values().all(|t| t.cases >= 5), "{report}");
}
