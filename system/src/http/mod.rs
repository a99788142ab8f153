//! The client API over HTTP/JSON (docs/node-api.md).
//!
//! Every error says whether it is definite (the operation did not happen: bad
//! request, cas mismatch, not the leader, refused before proposing) or not (proposed,
//! outcome unknown), so a client can record `fail` or `info` correctly.

pub mod admin;
mod body;
mod cluster;
pub mod wire;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::consensus::{Asked, Consensus, Refused, Reply};

/// What the handlers share.
pub struct ApiState {
    /// The replicated log.
    pub consensus: Arc<dyn Consensus>,
    /// How long a request waits for consensus before answering 504.
    pub request_timeout: Duration,
    /// The node's clock, which stamps lock commands (leases).
    pub clock: Arc<crate::clock::Clock>,
    /// A planted slowdown (`--slow-writes-ms`): each committed write is answered
    /// this much later, so a benchmark comparison has a regression to catch.
    pub slow_writes: Duration,
}

/// An error answer: HTTP status and the JSON error body of docs/node-api.md.
pub struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) body: Value,
}

impl ApiError {
    pub(crate) fn new(
        status: StatusCode,
        code: &str,
        message: impl Into<String>,
        definite: bool,
    ) -> Self {
        ApiError {
            status,
            body: json!({"error": code, "message": message.into(), "definite": definite}),
        }
    }

    /// 400 malformed.
    pub fn malformed(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "malformed", message, true)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

/// Largest request body a route reads; a larger one is refused with 413.
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

/// Longest piece of a request path quoted in an error.
const QUOTED_PATH_CHARS: usize = 100;

/// The client routes: the services' and the cluster's.
pub fn router(state: Arc<ApiState>, services: Router<Arc<ApiState>>) -> Router {
    guarded(
        Router::new()
            .merge(services)
            .merge(cluster::routes())
            .with_state(state),
    )
    .layer(middleware::from_fn(request_id))
}

/// Serves the request with its `x-request-id` header (if any) in reach of
/// consensus, which PBFT needs to match the copies every replica got.
async fn request_id(req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    crate::consensus::REQUEST_ID.scope(id, next.run(req)).await
}

/// A listener's routes with the node's error answers: JSON 404 and 405, the body
/// limit, and axum's own plain-text refusals turned into the JSON error body.
pub(crate) fn guarded(routes: Router) -> Router {
    routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(json_errors))
}

/// Gives a 4xx answer that is not JSON (axum's refusals: a body over the limit,
/// a path segment that is not UTF-8) the node's error body, naming the route.
async fn json_errors(req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let path = match path.char_indices().nth(QUOTED_PATH_CHARS) {
        Some((i, _)) => format!("{}... ({} bytes)", &path[..i], path.len()),
        None => path.to_string(),
    };
    let route = format!("{} {path}", req.method());
    let response = next.run(req).await;
    let status = response.status();
    let json = response
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !status.is_client_error() || json {
        return response;
    }
    let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
        format!("{route}: the body is larger than {MAX_BODY_BYTES} bytes")
    } else {
        let text = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&text);
        let reason = status.canonical_reason().unwrap_or("refused");
        format!(
            "{route}: {}",
            if text.trim().is_empty() {
                reason
            } else {
                text.trim()
            }
        )
    };
    let code = if status == StatusCode::NOT_FOUND {
        "not-found"
    } else {
        "malformed"
    };
    ApiError::new(status, code, message, true).into_response()
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not-found",
        "no such endpoint (see docs/node-api.md)",
        true,
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "malformed",
        "method not allowed on this endpoint",
        true,
    )
}

/// Reads a request body: a JSON object whose integers fit in 64 bits
/// (`body.rs`); `what` says the expected shape in the error.
pub(crate) fn parse<T: for<'de> Deserialize<'de>>(body: &Bytes, what: &str) -> Result<T, ApiError> {
    body::read(body).map_err(|e| ApiError::malformed(format!("{what}: {e}")))
}

/// A non-negative integer query parameter, if present.
pub(crate) fn param(
    params: &std::collections::HashMap<String, String>,
    field: &str,
) -> Result<Option<u64>, ApiError> {
    params
        .get(field)
        .map(|v| {
            v.parse::<u64>().map_err(|_| {
                ApiError::malformed(format!(
                    "query parameter `{field}` must be a non-negative integer, got `{v}`"
                ))
            })
        })
        .transpose()
}

/// Waits for the answer to a request handed to consensus, as a client answer.
pub(crate) async fn ask(
    state: &ApiState,
    asked: Asked<Reply>,
    proposes: bool,
) -> Result<Value, ApiError> {
    let rx = match asked {
        Ok(rx) => rx,
        Err(Refused::Overloaded) => {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "overloaded: request queue full",
                true,
            ))
        }
        Err(Refused::Stopped) => {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "node is shutting down",
                true,
            ))
        }
    };
    let reply = match tokio::time::timeout(state.request_timeout, rx).await {
        Ok(Ok(reply)) => reply,
        Ok(Err(_)) => Reply::Indeterminate("node stopped while the request was in flight".into()),
        Err(_) => Reply::Indeterminate(format!(
            "no answer within {} ms",
            state.request_timeout.as_millis()
        )),
    };
    if proposes && !state.slow_writes.is_zero() && matches!(reply, Reply::Ok(_)) {
        tokio::time::sleep(state.slow_writes).await;
    }
    match reply {
        Reply::Ok(v) => Ok(v),
        Reply::NotLeader(leader) => Err(ApiError {
            status: StatusCode::MISDIRECTED_REQUEST,
            body: json!({"error": "not-leader", "message": "this node is not the leader", "definite": true, "leader": leader}),
        }),
        Reply::NotFound(m) => Err(ApiError::new(StatusCode::NOT_FOUND, "not-found", m, true)),
        Reply::Refused(m) => Err(ApiError::new(StatusCode::CONFLICT, "refused", m, true)),
        Reply::Unavailable(m) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            m,
            true,
        )),
        // A read changes nothing, so even an unknown outcome is a definite failure.
        Reply::Indeterminate(m) => Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            m,
            !proposes,
        )),
    }
}

/// Proposes a state-machine command answering `{"ok": bool, ...}`: the rest of
/// the answer on success, a definite `409` carrying the refusal's details
/// (`error` and the like) otherwise.
pub(crate) async fn propose_refusable(
    state: &ApiState,
    command: Value,
) -> Result<Json<Value>, ApiError> {
    let mut result = ask(state, state.consensus.propose(command), true).await?;
    let ok = result.get("ok").and_then(Value::as_bool).unwrap_or(false);
    if let Some(map) = result.as_object_mut() {
        map.remove("ok");
    }
    if ok {
        return Ok(Json(result));
    }
    let code = result
        .get("error")
        .and_then(Value::as_str)
        .unwrap_or("refused")
        .to_string();
    let mut body = json!({"message": format!("refused: {code}"), "definite": true});
    if let (Some(b), Some(r)) = (body.as_object_mut(), result.as_object()) {
        b.extend(r.clone());
    }
    Err(ApiError {
        status: StatusCode::CONFLICT,
        body,
    })
}

/// A linearizable read of the state machine (ReadIndex on the leader).
pub(crate) async fn query(state: &ApiState, query: Value) -> Result<Json<Value>, ApiError> {
    Ok(Json(ask(state, state.consensus.read(query), false).await?))
}
