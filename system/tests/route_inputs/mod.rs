//! Inputs for fuzzing a node's routes: every route of docs/node-api.md with a
//! valid body, and strategies that mutate the method, the path, the headers,
//! the body and the HTTP framing of a request to it.

use proptest::prelude::*;
use proptest::sample::{select, Index};
use serde_json::{Map, Value};

/// The listener a route is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listener {
    Client,
    Admin,
}

/// A route as the node serves it; `{}` in `path` is a parameter.
pub struct Route {
    pub name: &'static str,
    pub listener: Listener,
    pub method: &'static str,
    pub path: &'static str,
    /// A body the route takes, as JSON text; `None` for no body.
    pub body: Option<&'static str>,
}

const fn route(
    name: &'static str,
    method: &'static str,
    path: &'static str,
    body: Option<&'static str>,
) -> Route {
    Route {
        name,
        listener: Listener::Client,
        method,
        path,
        body,
    }
}

const fn admin(
    name: &'static str,
    method: &'static str,
    path: &'static str,
    body: Option<&'static str>,
) -> Route {
    Route {
        name,
        listener: Listener::Admin,
        method,
        path,
        body,
    }
}

/// Every route, and one path that is none. `/cluster/join`'s address has no
/// port and every case keeps it so (see [`never_a_join`]): a joined phantom
/// member would take the single node's quorum away.
pub static ROUTES: &[Route] = &[
    route("GET /kv/{key}", "GET", "/kv/{}", None),
    route("PUT /kv/{key}", "PUT", "/kv/{}", Some(r#"{"value": 1}"#)),
    route("DELETE /kv/{key}", "DELETE", "/kv/{}", None),
    route(
        "POST /kv/{key}/cas",
        "POST",
        "/kv/{}/cas",
        Some(r#"{"expected": null, "new": 1}"#),
    ),
    route("GET /cluster/status", "GET", "/cluster/status", None),
    route(
        "POST /cluster/join",
        "POST",
        "/cluster/join",
        Some(r#"{"id": "n9", "addr": "no-port"}"#),
    ),
    route(
        "POST /cluster/leave",
        "POST",
        "/cluster/leave",
        Some(r#"{"id": "n9"}"#),
    ),
    route("GET /locks/{lock}", "GET", "/locks/{}", None),
    route(
        "POST /locks/{lock}/acquire",
        "POST",
        "/locks/{}/acquire",
        Some(r#"{"owner": "o", "ttl_ms": 1000, "mode": "exclusive", "wait": false}"#),
    ),
    route(
        "POST /locks/{lock}/release",
        "POST",
        "/locks/{}/release",
        Some(r#"{"owner": "o"}"#),
    ),
    route(
        "POST /locks/{lock}/cancel",
        "POST",
        "/locks/{}/cancel",
        Some(r#"{"owner": "o"}"#),
    ),
    route("GET /fenced/{name}", "GET", "/fenced/{}", None),
    route(
        "PUT /fenced/{name}",
        "PUT",
        "/fenced/{}",
        Some(r#"{"token": 1, "value": 1}"#),
    ),
    route(
        "POST /events/streams/{s}/append",
        "POST",
        "/events/streams/{}/append",
        Some(r#"{"expected": 0, "events": [{"type": "t", "data": {"n": 1}}]}"#),
    ),
    route("GET /events/streams/{s}", "GET", "/events/streams/{}", None),
    route(
        "GET /events/streams/{s}/state",
        "GET",
        "/events/streams/{}/state",
        None,
    ),
    route("GET /events/streams", "GET", "/events/streams", None),
    route("GET /events/all", "GET", "/events/all", None),
    route(
        "GET /events/projections/orders",
        "GET",
        "/events/projections/orders",
        None,
    ),
    route(
        "POST /events/subscriptions/{n}",
        "POST",
        "/events/subscriptions/{}",
        Some(r#"{"from": 0}"#),
    ),
    route(
        "POST /events/subscriptions/{n}/poll",
        "POST",
        "/events/subscriptions/{}/poll",
        Some(r#"{"max": 5}"#),
    ),
    route(
        "POST /events/subscriptions/{n}/ack",
        "POST",
        "/events/subscriptions/{}/ack",
        Some(r#"{"position": 0}"#),
    ),
    route(
        "POST /saga/setup",
        "POST",
        "/saga/setup",
        Some(r#"{"stock": {"i": 5}, "wallets": {"c": 50}}"#),
    ),
    route("GET /saga/services", "GET", "/saga/services", None),
    route(
        "POST /saga/services/{s}/faults",
        "POST",
        "/saga/services/{}/faults",
        Some(r#"{"fail": 0.1, "lose_reply": 0.1}"#),
    ),
    route(
        "POST /sagas",
        "POST",
        "/sagas",
        Some(r#"{"order": "o1", "customer": "c", "item": "i", "qty": 1, "amount": 5}"#),
    ),
    route("GET /sagas", "GET", "/sagas", None),
    route("GET /sagas/{order}", "GET", "/sagas/{}", None),
    route(
        "POST /consensus/propose",
        "POST",
        "/consensus/propose",
        Some(r#"{"value": {"n": 1}}"#),
    ),
    route(
        "GET /consensus/committed",
        "GET",
        "/consensus/committed",
        None,
    ),
    route("GET /consensus/leader", "GET", "/consensus/leader", None),
    route(
        "POST /cluster/send",
        "POST",
        "/cluster/send",
        Some(r#"{"to": "n1", "body": {"n": 1}, "id": "m1", "deadline_ms": 500}"#),
    ),
    route(
        "POST /cluster/broadcast",
        "POST",
        "/cluster/broadcast",
        Some(r#"{"body": [1, "two"], "deadline_ms": 500}"#),
    ),
    route(
        "GET /cluster/inbox",
        "GET",
        "/cluster/inbox?from=0&max=5",
        None,
    ),
    route("GET /cluster/state", "GET", "/cluster/state", None),
    route("GET /topics", "GET", "/topics", None),
    route("GET /topics/{t}", "GET", "/topics/{}", None),
    route(
        "POST /topics/{t}/produce",
        "POST",
        "/topics/{}/produce",
        Some(r#"{"key": "k", "value": 1}"#),
    ),
    route(
        "POST /topics/{t}/poll",
        "POST",
        "/topics/{}/poll",
        Some(r#"{"group": "g", "consumer": "c", "max": 10, "visibility_ms": 1000}"#),
    ),
    route(
        "POST /topics/{t}/ack",
        "POST",
        "/topics/{}/ack",
        Some(r#"{"group": "g", "partition": 0, "offset": 0}"#),
    ),
    route(
        "GET /topics/{t}/subscribe",
        "GET",
        "/topics/{}/subscribe?group=g&consumer=c&max=5&visibility_ms=1000",
        None,
    ),
    route(
        "GET /topics/{t}/groups/{g}",
        "GET",
        "/topics/{}/groups/{}",
        None,
    ),
    route("GET /cache", "GET", "/cache", None),
    route("GET /cache/{key}", "GET", "/cache/{}", None),
    route(
        "PUT /cache/{key}",
        "PUT",
        "/cache/{}",
        Some(r#"{"value": 1, "invalidate": true, "ttl_ms": 60000}"#),
    ),
    route("DELETE /cache/{key}", "DELETE", "/cache/{}", None),
    route("GET /cache/{key}/local", "GET", "/cache/{}/local", None),
    route("GET /sessions/{id}", "GET", "/sessions/{}", None),
    route(
        "PUT /sessions/{id}",
        "PUT",
        "/sessions/{}",
        Some(r#"{"data": 1}"#),
    ),
    route("DELETE /sessions/{id}", "DELETE", "/sessions/{}", None),
    route(
        "POST /txn",
        "POST",
        "/txn",
        Some(r#"{"ops": [["append", 1, 2], ["r", 1, null], ["w", "k", 3]]}"#),
    ),
    route("GET /registry", "GET", "/registry", None),
    route("GET /registry/{service}", "GET", "/registry/{}", None),
    route(
        "PUT /registry/{service}/{instance}",
        "PUT",
        "/registry/api/{}",
        Some(r#"{"addr": "127.0.0.1:9", "ttl_ms": 1000, "weight": 2}"#),
    ),
    route(
        "DELETE /registry/{service}/{instance}",
        "DELETE",
        "/registry/api/{}",
        None,
    ),
    route("GET /mesh/state", "GET", "/mesh/state", None),
    route(
        "GET /mesh/records",
        "GET",
        "/mesh/records?from=0&limit=10",
        None,
    ),
    route(
        "PUT /mesh/config/{service}",
        "PUT",
        "/mesh/config/{}",
        Some(r#"{"balancer": "weighted", "breaker": {"failures": 3}, "weights": {"a": 2}}"#),
    ),
    route(
        "POST /mesh/{service}/{path}",
        "POST",
        "/mesh/{}/work/k",
        Some(r#"{"x": 1}"#),
    ),
    route("GET /{no such path}", "GET", "/{}", None),
    admin("GET /admin/clock", "GET", "/admin/clock", None),
    admin(
        "POST /admin/clock",
        "POST",
        "/admin/clock",
        Some(r#"{"offset_ms": 0}"#),
    ),
    admin("GET /admin/health", "GET", "/admin/health", None),
    admin("GET /admin/{no such path}", "GET", "/admin/{}", None),
];

/// How the body is framed on the wire.
#[derive(Clone, Debug)]
pub enum Framing {
    ContentLength,
    Chunked,
    /// A chunk size that is not hexadecimal.
    BadChunk,
    /// `content-length` shorter than the body: the rest trails the request.
    ShortLength,
    /// `content-length` longer than the body: the request never completes.
    LongLength,
    /// No length: the body trails the request.
    NoLength,
    /// The request cut inside its head: it never completes.
    TruncatedHead(Index),
}

/// One request, as bytes, and what the test may expect of its answer.
pub struct Case {
    pub route: usize,
    pub listener: Listener,
    pub request: Vec<u8>,
    /// A `HEAD` request: the answer has no body.
    pub head_only: bool,
    /// The request is complete and nothing trails it, so it must be answered.
    pub must_answer: bool,
}

/// Most bytes of a request shown when a case fails.
const SHOWN_BYTES: usize = 600;

impl std::fmt::Debug for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = &self.request[..self.request.len().min(SHOWN_BYTES)];
        f.debug_struct("Case")
            .field("route", &ROUTES[self.route].name)
            .field("listener", &self.listener)
            .field("must_answer", &self.must_answer)
            .field("bytes", &self.request.len())
            .field("request", &String::from_utf8_lossy(shown))
            .finish()
    }
}

/// Any JSON value, small.
pub fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
            .map(Value::Number)),
        "\\PC{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{0,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn percent(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("%{b:02X}")).collect()
}

/// One path parameter: plain, percent-encoded bytes (often not UTF-8), text
/// that is, odd tokens, or very long.
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "[a-z0-9_-]{1,8}",
        2 => prop::collection::vec(any::<u8>(), 1..6).prop_map(|b| percent(&b)),
        1 => "\\PC{1,4}".prop_map(|s| percent(s.as_bytes())),
        2 => select(vec![
            "", ".", "..", "%", "%zz", "%2F", "a%00b", "%ff%fe", "%C3%28", "+", "a b", "a?b",
            "a#b", "*", "é", "\u{0}", "a\tb",
        ])
        .prop_map(String::from),
        1 => (1usize..4000).prop_map(|n| "a".repeat(n)),
    ]
}

/// A change to a request target.
#[derive(Clone, Debug)]
enum PathMutation {
    None,
    Insert(Index, u8),
    Query(String),
    Remove(Index),
    /// Arbitrary bytes for the whole target.
    Replace(Vec<u8>),
}

/// The request target: the route's path with parameters; with `mutate`, odd
/// parameters and sometimes a broken path.
fn target(path: &'static str, mutate: bool) -> BoxedStrategy<Vec<u8>> {
    let holes = path.matches("{}").count();
    if !mutate {
        return prop::collection::vec("[a-z0-9_-]{1,8}", holes)
            .prop_map(move |params| fill(path, &params).into_bytes())
            .boxed();
    }
    let mutation = prop_oneof![
        2 => Just(PathMutation::None),
        1 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| PathMutation::Insert(i, b)),
        1 => "[a-z=&%]{0,12}".prop_map(PathMutation::Query),
        1 => any::<Index>().prop_map(PathMutation::Remove),
        1 => prop::collection::vec(any::<u8>(), 0..20).prop_map(PathMutation::Replace),
    ];
    (prop::collection::vec(segment(), holes), mutation)
        .prop_map(move |(params, mutation)| {
            let mut t = fill(path, &params).into_bytes();
            match mutation {
                PathMutation::None => {}
                PathMutation::Insert(i, b) => t.insert(i.index(t.len() + 1), b),
                PathMutation::Query(q) => {
                    t.push(b'?');
                    t.extend(q.into_bytes());
                }
                PathMutation::Remove(i) => {
                    t.remove(i.index(t.len()));
                }
                PathMutation::Replace(b) => t = b,
            }
            t
        })
        .boxed()
}

/// `path` with its `{}` replaced by `params` in order.
fn fill(path: &str, params: &[String]) -> String {
    let mut t = String::new();
    let mut rest = path;
    for p in params {
        let (before, after) = rest.split_once("{}").unwrap_or((rest, ""));
        t.push_str(before);
        t.push_str(p);
        rest = after;
    }
    t.push_str(rest);
    t
}

/// A method other than the route's, or not a method at all.
fn method() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => select(vec![
            "GET", "PUT", "POST", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "CONNECT",
            "FOO", "get", "",
        ])
        .prop_map(|m| m.as_bytes().to_vec()),
        1 => prop::collection::vec(any::<u8>(), 0..8),
    ]
}

/// Extra header lines (without CRLF).
fn headers() -> impl Strategy<Value = Vec<Vec<u8>>> {
    let one = prop_oneof![
        3 => select(vec![
            "content-type: application/json",
            "content-type: text/plain",
            "content-type: application/json; charset=utf-8",
            "content-type:",
            "content-type: multipart/form-data; boundary=x",
            "expect: 100-continue",
            "transfer-encoding: gzip",
            "transfer-encoding: chunked, gzip",
            "content-length: abc",
            "content-length: -1",
            "content-length: 99999999999999999999",
            "connection: keep-alive",
            "host: ",
            "accept: */*",
        ])
        .prop_map(|h| h.as_bytes().to_vec()),
        2 => ("[A-Za-z0-9-]{1,16}", prop::collection::vec(any::<u8>(), 0..40)).prop_map(
            |(n, v)| {
                let mut h = n.into_bytes();
                h.extend_from_slice(b": ");
                h.extend(v);
                h
            }
        ),
    ];
    prop_oneof![
        30 => prop::collection::vec(one, 1..4),
        1 => (101usize..130).prop_map(|n| (0..n).map(|i| format!("x-{i}: 1").into_bytes()).collect()),
        1 => (450_000usize..1_000_000)
            .prop_map(|n| vec![format!("x-big: {}", "a".repeat(n)).into_bytes()]),
    ]
}

/// A framing other than a plain `content-length`.
fn framing() -> impl Strategy<Value = Framing> {
    prop_oneof![
        3 => Just(Framing::Chunked),
        1 => Just(Framing::BadChunk),
        1 => Just(Framing::ShortLength),
        1 => Just(Framing::LongLength),
        1 => Just(Framing::NoLength),
        1 => any::<Index>().prop_map(Framing::TruncatedHead),
    ]
}

/// A JSON number written as text that serde_json reads unlike a 64-bit value,
/// or not at all.
fn odd_number() -> impl Strategy<Value = &'static str> {
    select(vec![
        "18446744073709551617",
        "-9223372036854775809",
        "1e999",
        "-0",
        "1.0e-400",
        "00",
        "1.",
        "NaN",
        "99999999999999999999999999999999999999",
    ])
}

/// A body `template` takes, its values random at times; empty for no body.
fn valid_body(template: Option<&'static str>) -> BoxedStrategy<Vec<u8>> {
    let Some(template) = template else {
        return Just(Vec::new()).boxed();
    };
    let base: Map<String, Value> = serde_json::from_str(template).expect("template is an object");
    let names: Vec<String> = base.keys().cloned().collect();
    prop::collection::vec(prop::option::weighted(0.3, json_value()), names.len())
        .prop_map(move |vals| {
            let mut m = base.clone();
            for (name, v) in names.iter().zip(vals) {
                if let Some(v) = v {
                    m.insert(name.clone(), v);
                }
            }
            Value::Object(m).to_string().into_bytes()
        })
        .boxed()
}

/// A body for a route taking `template`: valid with random values, or broken
/// in one of many ways.
fn body(template: Option<&'static str>) -> BoxedStrategy<Vec<u8>> {
    let Some(template) = template else {
        return prop_oneof![
            4 => Just(Vec::new()),
            1 => json_value().prop_map(|v| v.to_string().into_bytes()),
            1 => prop::collection::vec(any::<u8>(), 0..64),
        ]
        .boxed();
    };
    let base: Map<String, Value> = serde_json::from_str(template).expect("template is an object");
    let with_values = valid_body(Some(template));
    let (b1, b2, b3, b4, b5, b6) = (
        base.clone(),
        base.clone(),
        base.clone(),
        base.clone(),
        base.clone(),
        base,
    );
    prop_oneof![
        4 => with_values,
        1 => any::<Index>().prop_map(move |i| {
            let mut m = b1.clone();
            let key = m.keys().nth(i.index(m.len().max(1))).cloned();
            if let Some(k) = key {
                m.remove(&k);
            }
            Value::Object(m).to_string().into_bytes()
        }),
        1 => ("[a-z_]{1,8}", json_value()).prop_map(move |(k, v)| {
            let mut m = b2.clone();
            m.insert(k, v);
            Value::Object(m).to_string().into_bytes()
        }),
        1 => Just(Value::Array(b3.values().cloned().collect()).to_string().into_bytes()),
        1 => json_value().prop_map(|v| v.to_string().into_bytes()),
        1 => (100usize..400).prop_map(|d| format!("{}{}", "[".repeat(d), "]".repeat(d)).into_bytes()),
        1 => (any::<Index>(), odd_number()).prop_map(move |(i, number)| {
            let key = b4.keys().nth(i.index(b4.len().max(1))).cloned().unwrap_or_default();
            let mut m = b4.clone();
            m.insert(key.clone(), Value::from("@@"));
            Value::Object(m)
                .to_string()
                .replace("\"@@\"", number)
                .into_bytes()
        }),
        1 => any::<Index>().prop_map(move |i| {
            let text = Value::Object(b5.clone()).to_string().into_bytes();
            text[..i.index(text.len())].to_vec()
        }),
        1 => (any::<Index>(), any::<u8>()).prop_map(move |(i, b)| {
            let mut text = Value::Object(b6.clone()).to_string().into_bytes();
            let at = i.index(text.len() + 1);
            text.insert(at, b);
            text
        }),
        1 => prop::collection::vec(any::<u8>(), 0..200),
        1 => Just(Vec::new()),
        1 => Just(vec![b' '; 2 * 1024 * 1024 + 1]),
    ]
    .boxed()
}

/// Keeps a body from being a valid `/cluster/join`: an `addr` with a colon
/// would add a member that never answers, and the node would lose its quorum.
fn never_a_join(body: Vec<u8>) -> Vec<u8> {
    match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(mut m))
            if m.get("addr")
                .and_then(Value::as_str)
                .is_some_and(|a| a.contains(':')) =>
        {
            m.insert("addr".into(), Value::from("no-port"));
            Value::Object(m).to_string().into_bytes()
        }
        _ => body,
    }
}

/// Writes the request.
fn build(
    route: usize,
    method: Vec<u8>,
    target: Vec<u8>,
    headers: Vec<Vec<u8>>,
    body: Vec<u8>,
    framing: Framing,
) -> Case {
    let body = never_a_join(body);
    let mut head = method.clone();
    head.push(b' ');
    head.extend(target);
    head.extend_from_slice(b" HTTP/1.1\r\nhost: fuzz\r\nconnection: close\r\n");
    for h in headers {
        head.extend(h);
        head.extend_from_slice(b"\r\n");
    }
    let with_length = |n: usize| {
        let mut r = head.clone();
        r.extend(format!("content-length: {n}\r\n\r\n").into_bytes());
        r
    };
    let (mut request, must_answer) = match &framing {
        Framing::ContentLength => (with_length(body.len()), true),
        Framing::Chunked | Framing::BadChunk => {
            let mut r = head.clone();
            r.extend_from_slice(b"transfer-encoding: chunked\r\n\r\n");
            let half = body.len() / 2;
            for part in [&body[..half], &body[half..]] {
                if matches!(framing, Framing::BadChunk) {
                    r.extend_from_slice(b"zz");
                } else {
                    r.extend(format!("{:x}", part.len()).into_bytes());
                }
                r.extend_from_slice(b"\r\n");
                r.extend_from_slice(part);
                r.extend_from_slice(b"\r\n");
            }
            r.extend_from_slice(b"0\r\n\r\n");
            (r, true)
        }
        Framing::ShortLength => (with_length(body.len() / 2), false),
        Framing::LongLength => (with_length(body.len() + 10), false),
        Framing::NoLength | Framing::TruncatedHead(_) => {
            let mut r = head.clone();
            r.extend_from_slice(b"\r\n");
            (r, false)
        }
    };
    match framing {
        Framing::Chunked | Framing::BadChunk => {}
        Framing::TruncatedHead(i) => request.truncate(i.index(head.len())),
        _ => request.extend_from_slice(&body),
    }
    Case {
        route,
        listener: ROUTES[route].listener,
        head_only: method == b"HEAD",
        must_answer,
        request,
    }
}

/// Which part of a request a case breaks; the others stay as the route takes
/// them, so that most cases reach the route's own checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Focus {
    Body,
    Path,
    Method,
    Headers,
    Framing,
    All,
}

/// A request to any route with one part (or all) mutated.
pub fn case() -> impl Strategy<Value = Case> {
    let focus = prop_oneof![
        10 => Just(Focus::Body),
        3 => Just(Focus::Path),
        2 => Just(Focus::Method),
        3 => Just(Focus::Headers),
        2 => Just(Focus::Framing),
        1 => Just(Focus::All),
    ];
    (0..ROUTES.len(), focus).prop_flat_map(|(r, focus)| {
        let route = &ROUTES[r];
        let broken = |part: Focus| focus == part || focus == Focus::All;
        let method = if broken(Focus::Method) {
            method().boxed()
        } else {
            Just(route.method.as_bytes().to_vec()).boxed()
        };
        let headers = if broken(Focus::Headers) {
            headers().boxed()
        } else {
            Just(vec![b"content-type: application/json".to_vec()]).boxed()
        };
        let body = if broken(Focus::Body) {
            body(route.body)
        } else {
            valid_body(route.body)
        };
        let framing = if broken(Focus::Framing) {
            framing().boxed()
        } else {
            Just(Framing::ContentLength).boxed()
        };
        (
            Just(r),
            method,
            target(route.path, broken(Focus::Path)),
            headers,
            body,
            framing,
        )
            .prop_map(|(r, m, t, h, b, f)| build(r, m, t, h, b, f))
    })
}
