//! The key-value store's routes: read, write, delete and compare-and-set a key
//! (docs/node-api.md).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{command_ok, KvCommand};
use crate::http::{ask, parse, ApiError, ApiState};

/// Routes under `/kv`.
pub fn routes() -> Router<Arc<ApiState>> {
    Router::new()
        .route("/kv/{key}", get(read).put(write).delete(delete))
        .route("/kv/{key}/cas", post(cas))
}

async fn read(
    State(state): State<Arc<ApiState>>,
    Path(key): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let value = ask(&state, state.consensus.read(json!({"key": key})), false).await?;
    Ok(Json(json!({"value": value})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WriteBody {
    value: Value,
}

async fn propose(state: &ApiState, cmd: KvCommand) -> Result<Value, ApiError> {
    let command = serde_json::to_value(cmd).map_err(|e| ApiError::malformed(e.to_string()))?;
    ask(state, state.consensus.propose(command), true).await
}

async fn write(
    State(state): State<Arc<ApiState>>,
    Path(key): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let WriteBody { value } = parse(&body, "expected {\"value\": V}")?;
    propose(&state, KvCommand::Put { key, value }).await?;
    Ok(Json(json!({})))
}

async fn delete(
    State(state): State<Arc<ApiState>>,
    Path(key): Path<String>,
) -> Result<Json<Value>, ApiError> {
    propose(&state, KvCommand::Delete { key }).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CasBody {
    expected: Value,
    new: Value,
}

async fn cas(
    State(state): State<Arc<ApiState>>,
    Path(key): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let CasBody { expected, new } = parse(&body, "expected {\"expected\": A, \"new\": B}")?;
    let result = propose(&state, KvCommand::Cas { key, expected, new }).await?;
    if command_ok(&result) {
        Ok(Json(json!({})))
    } else {
        Err(ApiError {
            status: StatusCode::CONFLICT,
            body: json!({"error": "precondition-failed", "message": "the current value is not the expected one",
                         "definite": true, "current": result.get("current").cloned().unwrap_or(Value::Null)}),
        })
    }
}
