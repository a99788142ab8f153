//! The cluster's routes: this node's view (`/cluster/status`) and membership
//! changes (`/cluster/join`, `/cluster/leave`), answered by consensus.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{ask, parse, ApiError, ApiState};

/// Routes under `/cluster`.
pub(super) fn routes() -> Router<Arc<ApiState>> {
    Router::new()
        .route("/cluster/status", get(status))
        .route("/cluster/join", post(join))
        .route("/cluster/leave", post(leave))
}

async fn status(State(state): State<Arc<ApiState>>) -> Result<Json<Value>, ApiError> {
    let rx = state.consensus.status().map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "request queue full",
            true,
        )
    })?;
    match tokio::time::timeout(state.request_timeout, rx).await {
        Ok(Ok(s)) => Ok(Json(serde_json::to_value(s).unwrap_or(Value::Null))),
        _ => Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            "no status in time",
            true,
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JoinBody {
    id: String,
    addr: String,
}

async fn join(State(state): State<Arc<ApiState>>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let JoinBody { id, addr } = parse(&body, "expected {\"id\": ID, \"addr\": HOST:PORT}")?;
    if id.is_empty() || addr.parse::<std::net::SocketAddr>().is_err() && !addr.contains(':') {
        return Err(ApiError::malformed(
            "`id` must be non-empty and `addr` a host:port",
        ));
    }
    ask(&state, state.consensus.join(id, addr), true).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LeaveBody {
    id: String,
}

async fn leave(State(state): State<Arc<ApiState>>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let LeaveBody { id } = parse(&body, "expected {\"id\": ID}")?;
    if id.is_empty() {
        return Err(ApiError::malformed("`id` must be non-empty"));
    }
    ask(&state, state.consensus.leave(id), true).await?;
    Ok(Json(json!({})))
}
