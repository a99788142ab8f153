//! The distributed cache's HTTP routes: read through any node, write through to
//! the store with invalidation, look at one node's own copy and counters, and
//! sessions kept on the cache.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::Extension;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::peer::CacheNode;
use super::store::CachePut;
use crate::http::{ask, parse, ApiError, ApiState};

/// Routes under `/cache` and `/sessions`, served by this node's part of the
/// cache, `node`.
pub fn routes(node: Arc<CacheNode>) -> Router<Arc<ApiState>> {
    Router::new()
        .route("/cache", get(stats))
        .route("/cache/{key}", get(read).put(write).delete(delete))
        .route("/cache/{key}/local", get(local))
        .route(
            "/sessions/{id}",
            get(session_read).put(session_write).delete(session_delete),
        )
        .layer(Extension(node))
}

/// Sessions live in the cache under this prefix: written through to the store
/// (so they survive any node), read from the owners' copies.
const SESSION: &str = "session/";

/// `GET /cache/{key}`: `{"value", "rev", "hit", "node"}` from the key's first
/// owner that answers; a definite 503 when none does (a read changes nothing).
async fn read(
    Extension(cache): Extension<Arc<CacheNode>>,
    Path(key): Path<String>,
) -> Result<Json<Value>, ApiError> {
    match cache.read(&key).await {
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
    /// The value's time to live: reads find none after it.
    #[serde(default)]
    ttl_ms: Option<u64>,
}

/// The longest time to live a write may ask for (30 days).
const MAX_TTL_MS: u64 = 30 * 24 * 3600 * 1000;

fn yes() -> bool {
    true
}

/// `GET /sessions/{id}`: `{"data", "hit"}`, or a 404 when there is no such session.
async fn session_read(
    cache: Extension<Arc<CacheNode>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let Json(v) = read(cache, Path(format!("{SESSION}{id}"))).await?;
    if v["value"].is_null() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("no session `{id}`"),
            true,
        ));
    }
    Ok(Json(json!({"data": v["value"], "hit": v["hit"]})))
}

/// `PUT /sessions/{id}` with `{"data": V}`: stores the session as a cache write.
async fn session_write(
    State(state): State<Arc<ApiState>>,
    Extension(cache): Extension<Arc<CacheNode>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct SessionBody {
        data: Value,
    }
    let b: SessionBody = parse(&body, "expected {\"data\": V}")?;
    if b.data.is_null() {
        return Err(ApiError::malformed(
            "`data` must not be null (DELETE ends a session)",
        ));
    }
    store(&state, &cache, format!("{SESSION}{id}"), b.data, true, None).await
}

/// `DELETE /sessions/{id}`: ends the session (a cache write of null).
async fn session_delete(
    State(state): State<Arc<ApiState>>,
    Extension(cache): Extension<Arc<CacheNode>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    store(
        &state,
        &cache,
        format!("{SESSION}{id}"),
        Value::Null,
        true,
        None,
    )
    .await
}

/// `PUT /cache/{key}`: stores the value through Raft (a 421 off the leader, as
/// for the KV), then invalidates every owner's copy; `{"rev"}` once all
/// confirmed. If some owner did not, the write stands but is not acknowledged:
/// an indefinite 504 naming them (the invalidation goes on in the background).
async fn write(
    State(state): State<Arc<ApiState>>,
    Extension(cache): Extension<Arc<CacheNode>>,
    Path(key): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let b: WriteBody = parse(
        &body,
        "expected {\"value\": V, \"invalidate\"?: bool, \"ttl_ms\"?: MS}",
    )?;
    let expires_at_ms = match b.ttl_ms {
        None => None,
        Some(ms) if (1..=MAX_TTL_MS).contains(&ms) => Some(cache.now_ms() + ms),
        Some(ms) => {
            return Err(ApiError::malformed(format!(
                "`ttl_ms` must be 1 to {MAX_TTL_MS}, got {ms}"
            )))
        }
    };
    store(&state, &cache, key, b.value, b.invalidate, expires_at_ms).await
}

/// `DELETE /cache/{key}`: a write of null, with invalidation (answers as a
/// write does).
async fn delete(
    State(state): State<Arc<ApiState>>,
    Extension(cache): Extension<Arc<CacheNode>>,
    Path(key): Path<String>,
) -> Result<Json<Value>, ApiError> {
    store(&state, &cache, key, Value::Null, true, None).await
}

/// Writes `value` to the store, then (if asked) invalidates every copy.
async fn store(
    state: &ApiState,
    cache: &Arc<CacheNode>,
    key: String,
    value: Value,
    invalidate: bool,
    expires_at_ms: Option<u64>,
) -> Result<Json<Value>, ApiError> {
    let command = serde_json::to_value(CachePut {
        key: key.clone(),
        value,
        expires_at_ms,
    })
    .map_err(|e| ApiError::malformed(e.to_string()))?;
    let stored = ask(state, state.consensus.propose(command), true).await?;
    let rev = stored.get("rev").and_then(Value::as_u64).unwrap_or(0);
    if !invalidate {
        return Ok(Json(json!({"rev": rev})));
    }
    let missing = cache.invalidate(&key, rev).await;
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
async fn local(
    Extension(cache): Extension<Arc<CacheNode>>,
    Path(key): Path<String>,
) -> Json<Value> {
    let mut v = cache.inspect(&key);
    v["owners"] = json!(cache.owners(&key));
    Json(v)
}

/// `GET /cache`: this node's entries, capacity, time to live and counters.
async fn stats(Extension(cache): Extension<Arc<CacheNode>>) -> Json<Value> {
    Json(cache.stats())
}
