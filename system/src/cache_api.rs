//! The distributed cache's HTTP routes: read through any node, write through to
//! the store with invalidation, and look at one node's own copy and counters.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::{ask, parse, ApiError, ApiState};
use crate::cache_store::CachePut;
use crate::raft::Event;

/// Routes under `/cache`.
pub fn routes() -> Router<Arc<ApiState>> {
    Router::new()
        .route("/cache", get(stats))
        .route("/cache/{key}", get(read).put(write))
        .route("/cache/{key}/local", get(local))
}

/// `GET /cache/{key}`: `{"value", "rev", "hit", "node"}` from the key's first
/// owner that answers; a definite 503 when none does (a read changes nothing).
async fn read(
    State(state): State<Arc<ApiState>>,
    Path(key): Path<String>,
) -> Result<Json<Value>, ApiError> {
    match state.cache.read(&key).await {
        Ok(served) => Ok(Json(serde_json::to_value(served).unwrap_or(Value::Null))),
        Err(why) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("no owner of `{key}` could serve it: {why}"),
            true,
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WriteBody {
    value: Value,
    /// `false` changes the store alone, as a writer that bypasses the cache
    /// would: only the time to live then bounds how long old copies are served.
    #[serde(default = "yes")]
    invalidate: bool,
}

fn yes() -> bool {
    true
}

/// `PUT /cache/{key}`: stores the value through Raft (a 421 off the leader, as
/// for the KV), then invalidates every owner's copy; `{"rev"}` once all
/// confirmed. If some owner did not, the write stands but is not acknowledged:
/// an indefinite 504 naming them (the invalidation goes on in the background).
async fn write(
    State(state): State<Arc<ApiState>>,
    Path(key): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let b: WriteBody = parse(&body, "expected {\"value\": V, \"invalidate\"?: bool}")?;
    let command = serde_json::to_value(CachePut {
        key: key.clone(),
        value: b.value,
    })
    .map_err(|e| ApiError::malformed(e.to_string()))?;
    let stored = ask(&state, |reply| Event::Propose { command, reply }, true).await?;
    let rev = stored.get("rev").and_then(Value::as_u64).unwrap_or(0);
    if !b.invalidate {
        return Ok(Json(json!({"rev": rev})));
    }
    let missing = state.cache.invalidate(&key, rev).await;
    if missing.is_empty() {
        return Ok(Json(json!({"rev": rev})));
    }
    let mut err = ApiError::new(
        StatusCode::GATEWAY_TIMEOUT,
        "timeout",
        format!(
            "stored at revision {rev}, but {} did not confirm the invalidation",
            missing.join(", ")
        ),
        false,
    );
    err.body["rev"] = json!(rev);
    Err(err)
}

/// `GET /cache/{key}/local`: this node's own entry, `{"state", "value", "rev"}`
/// (`state` null when it holds none), without reading through or counting.
async fn local(State(state): State<Arc<ApiState>>, Path(key): Path<String>) -> Json<Value> {
    let mut v = state.cache.inspect(&key);
    v["owners"] = json!(state.cache.owners(&key));
    Json(v)
}

/// `GET /cache`: this node's entries, capacity, time to live and counters.
async fn stats(State(state): State<Arc<ApiState>>) -> Json<Value> {
    Json(state.cache.stats())
}
