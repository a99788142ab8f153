//! The lock manager's HTTP routes, beside the KV's (docs/node-api.md, errors).
//!
//! Refusals (busy, queued, deadlock, not-owner, stale-token) are definite `409`s
//! with the lock manager's details; lock commands carry this node's clock.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{LockCommand, Mode};
use crate::http::{parse, propose_refusable, query, ApiError, ApiState};

/// Longest lease a client may ask for: one hour.
const MAX_TTL_MS: u64 = 3_600_000;

/// Routes under `/locks` and `/fenced`.
pub fn routes() -> Router<Arc<ApiState>> {
    Router::new()
        .route("/locks/{lock}", get(lock_state))
        .route("/locks/{lock}/acquire", post(acquire))
        .route("/locks/{lock}/release", post(release))
        .route("/locks/{lock}/cancel", post(cancel))
        .route("/fenced/{resource}", get(resource).put(fenced_write))
}

fn now_ms(state: &ApiState) -> u64 {
    state.clock.now_ms().max(0) as u64
}

/// Proposes a lock command; a refusal becomes a definite 409 carrying its details.
async fn run(state: &ApiState, cmd: LockCommand) -> Result<Json<Value>, ApiError> {
    let command = serde_json::to_value(cmd).map_err(|e| ApiError::malformed(e.to_string()))?;
    propose_refusable(state, command).await
}

fn owner_ok(owner: &str) -> Result<(), ApiError> {
    if owner.is_empty() || owner.len() > 256 {
        return Err(ApiError::malformed("`owner` must be 1 to 256 bytes"));
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AcquireBody {
    owner: String,
    ttl_ms: u64,
    #[serde(default)]
    mode: Mode,
    #[serde(default)]
    wait: bool,
}

async fn acquire(
    State(state): State<Arc<ApiState>>,
    Path(lock): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let b: AcquireBody = parse(
        &body,
        "expected {\"owner\": O, \"ttl_ms\": N, \"mode\"?: \"exclusive\"|\"shared\", \"wait\"?: bool}",
    )?;
    owner_ok(&b.owner)?;
    if b.ttl_ms == 0 || b.ttl_ms > MAX_TTL_MS {
        return Err(ApiError::malformed(format!(
            "`ttl_ms` must be 1 to {MAX_TTL_MS}, got {}",
            b.ttl_ms
        )));
    }
    let now_ms = now_ms(&state);
    run(
        &state,
        LockCommand::LockAcquire {
            lock,
            owner: b.owner,
            mode: b.mode,
            ttl_ms: b.ttl_ms,
            wait: b.wait,
            now_ms,
        },
    )
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OwnerBody {
    owner: String,
}

async fn release(
    State(state): State<Arc<ApiState>>,
    Path(lock): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    by_owner(&state, &body, |owner, now_ms| LockCommand::LockRelease {
        lock,
        owner,
        now_ms,
    })
    .await
}

async fn cancel(
    State(state): State<Arc<ApiState>>,
    Path(lock): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    by_owner(&state, &body, |owner, now_ms| LockCommand::LockCancel {
        lock,
        owner,
        now_ms,
    })
    .await
}

/// Runs a command whose body is just `{"owner": O}`.
async fn by_owner(
    state: &ApiState,
    body: &Bytes,
    make: impl FnOnce(String, u64) -> LockCommand,
) -> Result<Json<Value>, ApiError> {
    let OwnerBody { owner } = parse(body, "expected {\"owner\": O}")?;
    owner_ok(&owner)?;
    let now_ms = now_ms(state);
    run(state, make(owner, now_ms)).await
}

async fn lock_state(
    State(state): State<Arc<ApiState>>,
    Path(lock): Path<String>,
) -> Result<Json<Value>, ApiError> {
    query(&state, json!({"lock": lock})).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FencedBody {
    token: u64,
    value: Value,
}

async fn fenced_write(
    State(state): State<Arc<ApiState>>,
    Path(resource): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let FencedBody { token, value } = parse(&body, "expected {\"token\": N, \"value\": V}")?;
    let now_ms = now_ms(&state);
    run(
        &state,
        LockCommand::FencedWrite {
            resource,
            token,
            value,
            now_ms,
        },
    )
    .await
}

async fn resource(
    State(state): State<Arc<ApiState>>,
    Path(resource): Path<String>,
) -> Result<Json<Value>, ApiError> {
    query(&state, json!({"resource": resource})).await
}
