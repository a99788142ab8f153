//! The registry's routes: `PUT|DELETE /registry/{service}/{instance}`,
//! `GET /registry/{service}` and `GET /registry` (docs/node-api.md).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::RegistryCommand;
use crate::http::{ask, parse, propose_refusable, ApiError, ApiState};

/// Shortest and longest lease an instance may ask for.
const TTL_MS: std::ops::RangeInclusive<u64> = 100..=600_000;
/// Largest weight.
const MAX_WEIGHT: u32 = 1_000;

/// Routes under `/registry`.
pub fn routes() -> Router<Arc<ApiState>> {
    Router::new()
        .route("/registry", get(list_all))
        .route("/registry/{service}", get(list_one))
        .route(
            "/registry/{service}/{instance}",
            axum::routing::put(register).delete(deregister),
        )
}

/// Whether `name` may name a service or an instance: 1 to 64 of
/// `[A-Za-z0-9._-]`; the error names `field`.
pub fn check_name(field: &str, name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ApiError::malformed(format!(
            "`{field}` must be 1 to 64 of A-Z a-z 0-9 . _ -, got `{}`",
            name.chars().take(80).collect::<String>()
        )))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterBody {
    addr: String,
    #[serde(default = "one")]
    weight: u32,
    ttl_ms: u64,
}

fn one() -> u32 {
    1
}

fn now_ms(state: &ApiState) -> u64 {
    state.clock.now_ms().max(0) as u64
}

async fn register(
    State(state): State<Arc<ApiState>>,
    Path((service, instance)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    check_name("service", &service)?;
    check_name("instance", &instance)?;
    let b: RegisterBody = parse(
        &body,
        "expected {\"addr\": \"HOST:PORT\", \"ttl_ms\": N, \"weight\": N}",
    )?;
    let port_ok = b
        .addr
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
    if !port_ok || b.addr.len() > 256 {
        return Err(ApiError::malformed(format!(
            "`addr` must be HOST:PORT, got `{}`",
            b.addr.chars().take(80).collect::<String>()
        )));
    }
    if b.weight == 0 || b.weight > MAX_WEIGHT {
        return Err(ApiError::malformed(format!(
            "`weight` must be 1 to {MAX_WEIGHT}, got {}",
            b.weight
        )));
    }
    if !TTL_MS.contains(&b.ttl_ms) {
        return Err(ApiError::malformed(format!(
            "`ttl_ms` must be {} to {}, got {}",
            TTL_MS.start(),
            TTL_MS.end(),
            b.ttl_ms
        )));
    }
    let cmd = RegistryCommand::RegistryPut {
        service,
        instance,
        addr: b.addr,
        weight: b.weight,
        ttl_ms: b.ttl_ms,
        now_ms: now_ms(&state),
    };
    let command = serde_json::to_value(cmd).map_err(|e| ApiError::malformed(e.to_string()))?;
    propose_refusable(&state, command).await
}

async fn deregister(
    State(state): State<Arc<ApiState>>,
    Path((service, instance)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    check_name("service", &service)?;
    check_name("instance", &instance)?;
    let command = serde_json::to_value(RegistryCommand::RegistryRemove { service, instance })
        .map_err(|e| ApiError::malformed(e.to_string()))?;
    propose_refusable(&state, command).await
}

async fn list_all(State(state): State<Arc<ApiState>>) -> Result<Json<Value>, ApiError> {
    let q = json!({"registry": null, "now_ms": now_ms(&state)});
    Ok(Json(ask(&state, state.consensus.read(q), false).await?))
}

async fn list_one(
    State(state): State<Arc<ApiState>>,
    Path(service): Path<String>,
) -> Result<Json<Value>, ApiError> {
    check_name("service", &service)?;
    let q = json!({"registry": service, "now_ms": now_ms(&state)});
    let found = ask(&state, state.consensus.read(q), false).await?;
    match found.get(&service) {
        Some(list) => Ok(Json(json!({"service": service, "instances": list}))),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("service `{service}` has no live instance in the registry"),
            true,
        )),
    }
}
