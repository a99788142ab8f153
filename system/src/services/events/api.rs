//! The event store's HTTP routes (docs/node-api.md, "Event store"): append with
//! an expected version, reads of a stream, of the global log and of a stream's
//! aggregate, the projection, and catch-up subscriptions with acknowledged
//! checkpoints.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{EventCommand, NewEvent, MAX_READ};
use crate::http::{ask, param, parse, propose_refusable, ApiError, ApiState};

/// Most events one append carries.
const MAX_EVENTS: usize = 100;
/// Longest a subscription poll waits for new events.
const MAX_WAIT_MS: u64 = 10_000;
/// How often a waiting poll looks again.
const POLL_EVERY: Duration = Duration::from_millis(25);

/// Routes under `/events`.
pub fn routes() -> Router<Arc<ApiState>> {
    Router::new()
        .route("/events/streams", get(streams))
        .route("/events/streams/{stream}", get(read))
        .route("/events/streams/{stream}/append", post(append))
        .route("/events/streams/{stream}/state", get(aggregate))
        .route("/events/all", get(all))
        .route("/events/projections/orders", get(projection))
        .route("/events/subscriptions/{name}", post(subscribe))
        .route("/events/subscriptions/{name}/poll", post(poll))
        .route("/events/subscriptions/{name}/ack", post(ack))
}

fn name_ok(what: &str, name: &str) -> Result<(), ApiError> {
    if name.is_empty() || name.len() > 256 {
        return Err(ApiError::malformed(format!(
            "`{what}` must be 1 to 256 bytes"
        )));
    }
    Ok(())
}

/// A non-negative integer field of a body, if present.
fn count(v: &Option<Value>, field: &str, what: &str) -> Result<Option<u64>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(n) => n.as_u64().map(Some).ok_or_else(|| {
            ApiError::malformed(format!(
                "`{field}` must be a non-negative integer ({what}), got {n}"
            ))
        }),
    }
}

/// A linearizable read; a query naming what does not exist is a 404.
async fn read_query(state: &ApiState, query: Value) -> Result<Json<Value>, ApiError> {
    let v = ask(state, state.consensus.read(query), false).await?;
    if let Some(m) = v.get("missing").and_then(Value::as_str) {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "not-found", m, true));
    }
    Ok(Json(v))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AppendBody {
    #[serde(default)]
    expected: Option<Value>,
    events: Vec<Value>,
}

async fn append(
    State(state): State<Arc<ApiState>>,
    Path(stream): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let b: AppendBody = parse(
        &body,
        "expected {\"expected\"?: N, \"events\": [{\"type\": T, \"data\"?: D}, ...]}",
    )?;
    name_ok("stream", &stream)?;
    if stream.starts_with("saga-") {
        return Err(ApiError::malformed(format!(
            "stream `{stream}`: names starting with `saga-` belong to the saga orchestrator"
        )));
    }
    let expected = count(&b.expected, "expected", "the stream's length")?;
    if b.events.is_empty() || b.events.len() > MAX_EVENTS {
        return Err(ApiError::malformed(format!(
            "`events` must hold 1 to {MAX_EVENTS} events, got {}",
            b.events.len()
        )));
    }
    let mut events = Vec::new();
    for (i, e) in b.events.into_iter().enumerate() {
        let event: NewEvent = serde_json::from_value(e).map_err(|err| {
            ApiError::malformed(format!(
                "`events[{i}]` must be {{\"type\": T, \"data\"?: D}}: {err}"
            ))
        })?;
        name_ok(&format!("events[{i}].type"), &event.kind)?;
        events.push(event);
    }
    let command = EventCommand::EsAppend {
        stream,
        expected,
        events,
        at_ms: state.clock.now_ms().max(0) as u64,
    };
    let command = serde_json::to_value(command).map_err(|e| ApiError::malformed(e.to_string()))?;
    propose_refusable(&state, command).await
}

async fn read(
    State(state): State<Arc<ApiState>>,
    Path(stream): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let backwards = match params.get("direction").map(String::as_str) {
        None | Some("forwards") => false,
        Some("backwards") => true,
        Some(other) => {
            return Err(ApiError::malformed(format!(
                "query parameter `direction` must be `forwards` or `backwards`, got `{other}`"
            )))
        }
    };
    let q = json!({"events": "read", "stream": stream, "backwards": backwards,
                   "from": param(&params, "from")?,
                   "max": param(&params, "max")?.unwrap_or(MAX_READ)});
    read_query(&state, q).await
}

async fn aggregate(
    State(state): State<Arc<ApiState>>,
    Path(stream): Path<String>,
) -> Result<Json<Value>, ApiError> {
    read_query(&state, json!({"events": "state", "stream": stream})).await
}

async fn streams(
    State(state): State<Arc<ApiState>>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let prefix = params.get("prefix").cloned().unwrap_or_default();
    read_query(&state, json!({"events": "streams", "prefix": prefix})).await
}

async fn all(
    State(state): State<Arc<ApiState>>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let q = json!({"events": "all", "from": param(&params, "from")?,
                   "max": param(&params, "max")?.unwrap_or(MAX_READ)});
    read_query(&state, q).await
}

async fn projection(State(state): State<Arc<ApiState>>) -> Result<Json<Value>, ApiError> {
    read_query(&state, json!({"events": "projection"})).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubscribeBody {
    #[serde(default)]
    from: Option<Value>,
}

async fn subscribe(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let b: SubscribeBody = parse(&body, "expected {\"from\"?: POSITION}")?;
    name_ok("name", &name)?;
    let from = count(&b.from, "from", "a global position")?.unwrap_or(0);
    let command = serde_json::to_value(EventCommand::EsSubscribe { name, from })
        .map_err(|e| ApiError::malformed(e.to_string()))?;
    propose_refusable(&state, command).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PollBody {
    #[serde(default)]
    max: Option<Value>,
    #[serde(default)]
    wait_ms: Option<Value>,
}

/// The events after the subscription's checkpoint; with `wait_ms`, waits
/// that long for one to be appended (catch-up first, then live).
async fn poll(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let b: PollBody = parse(&body, "expected {\"max\"?: N, \"wait_ms\"?: MS}")?;
    let max = count(&b.max, "max", "most events to return")?.unwrap_or(100);
    if max == 0 || max > MAX_READ {
        return Err(ApiError::malformed(format!(
            "`max` must be 1 to {MAX_READ}, got {max}"
        )));
    }
    let wait = count(&b.wait_ms, "wait_ms", "milliseconds")?.unwrap_or(0);
    if wait > MAX_WAIT_MS {
        return Err(ApiError::malformed(format!(
            "`wait_ms` must be at most {MAX_WAIT_MS}, got {wait}"
        )));
    }
    let deadline = Instant::now() + Duration::from_millis(wait);
    let q = json!({"events": "subscription", "name": name, "max": max});
    loop {
        let answer = read_query(&state, q.clone()).await?;
        let empty = answer["events"].as_array().is_none_or(Vec::is_empty);
        if !empty || Instant::now() >= deadline {
            return Ok(answer);
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AckBody {
    position: Value,
}

async fn ack(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let b: AckBody = parse(&body, "expected {\"position\": P}")?;
    let position = count(&Some(b.position), "position", "a global position")?
        .ok_or_else(|| ApiError::malformed("`position` must be a non-negative integer"))?;
    let command = serde_json::to_value(EventCommand::EsAck { name, position })
        .map_err(|e| ApiError::malformed(e.to_string()))?;
    match propose_refusable(&state, command).await {
        Err(e) if e.body["error"] == "unknown-subscription" => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not-found",
            "no such subscription",
            true,
        )),
        other => other,
    }
}
