//! The sidecar's routes: `ANY /mesh/{service}/{path}` (a request through the
//! mesh), `GET /mesh/state`, `GET /mesh/records` and `PUT /mesh/config/{service}`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, put};
use axum::{Json, Router};
use serde_json::Value;

use super::{MeshConfig, Sidecar};
use crate::http::{param, ApiError};
use crate::services::registry::api::check_name;

/// Most records one `GET /mesh/records` returns.
const MAX_RECORDS: u64 = 5_000;

/// The sidecar's routes, for any router state.
pub fn routes<S: Clone + Send + Sync + 'static>(sidecar: Arc<Sidecar>) -> Router<S> {
    Router::new()
        .route("/mesh/state", get(state))
        .route("/mesh/records", get(records))
        .route("/mesh/config/{service}", put(configure))
        .route("/mesh/{service}/{*rest}", any(forward))
        .with_state(sidecar)
}

/// A look only: reading the state starts no discovery (the dashboard polls
/// every node's, sidecar or not).
async fn state(State(s): State<Arc<Sidecar>>) -> Json<Value> {
    Json(s.state())
}

async fn records(
    State(s): State<Arc<Sidecar>>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let from = param(&params, "from")?.unwrap_or(0);
    let limit = param(&params, "limit")?
        .unwrap_or(1_000)
        .clamp(1, MAX_RECORDS);
    Ok(Json(s.records(from as usize, limit as usize)))
}

async fn configure(
    State(s): State<Arc<Sidecar>>,
    Path(service): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    check_name("service", &service)?;
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::malformed("the body must be UTF-8 JSON"))?;
    let config = MeshConfig::parse(text)
        .map_err(|e| ApiError::malformed(format!("PUT /mesh/config/{service}: {e}")))?;
    s.configure(&service, config.clone());
    Ok(Json(
        serde_json::json!({"service": service, "config": config}),
    ))
}

async fn forward(
    State(s): State<Arc<Sidecar>>,
    Path((service, rest)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(e) = check_name("service", &service) {
        return e.into_response();
    }
    s.handle(&service, method, &rest, query.as_deref(), &headers, body)
        .await
}
