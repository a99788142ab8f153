//! The broker's HTTP routes: produce, poll, ack, and reads of a topic's logs and
//! a group's progress (docs/node-api.md, errors).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::BrokerCommand;
use crate::http::{parse, propose_refusable, query, ApiError, ApiState};

/// Longest visibility timeout a consumer may ask for: ten minutes.
const MAX_VISIBILITY_MS: u64 = 600_000;

/// Routes under `/topics`.
pub fn routes() -> Router<Arc<ApiState>> {
    Router::new()
        .route("/topics/{topic}", get(logs))
        .route("/topics/{topic}/produce", post(produce))
        .route("/topics/{topic}/poll", post(poll))
        .route("/topics/{topic}/ack", post(ack))
        .route("/topics/{topic}/groups/{group}", get(group))
}

async fn run(state: &ApiState, cmd: BrokerCommand) -> Result<Json<Value>, ApiError> {
    let command = serde_json::to_value(cmd).map_err(|e| ApiError::malformed(e.to_string()))?;
    propose_refusable(state, command).await
}

fn name_ok(what: &str, name: &str) -> Result<(), ApiError> {
    if name.is_empty() || name.len() > 256 {
        return Err(ApiError::malformed(format!(
            "`{what}` must be 1 to 256 bytes"
        )));
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProduceBody {
    key: String,
    value: Value,
}

async fn produce(
    State(state): State<Arc<ApiState>>,
    Path(topic): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let ProduceBody { key, value } = parse(&body, "expected {\"key\": K, \"value\": V}")?;
    run(&state, BrokerCommand::Produce { topic, key, value }).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PollBody {
    group: String,
    consumer: String,
    #[serde(default = "default_max")]
    max: usize,
    #[serde(default = "default_visibility")]
    visibility_ms: u64,
}

fn default_max() -> usize {
    10
}

fn default_visibility() -> u64 {
    1000
}

async fn poll(
    State(state): State<Arc<ApiState>>,
    Path(topic): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let b: PollBody = parse(
        &body,
        "expected {\"group\": G, \"consumer\": C, \"max\"?: N, \"visibility_ms\"?: MS}",
    )?;
    name_ok("group", &b.group)?;
    name_ok("consumer", &b.consumer)?;
    if b.visibility_ms == 0 || b.visibility_ms > MAX_VISIBILITY_MS {
        return Err(ApiError::malformed(format!(
            "`visibility_ms` must be 1 to {MAX_VISIBILITY_MS}, got {}",
            b.visibility_ms
        )));
    }
    let now_ms = state.clock.now_ms().max(0) as u64;
    run(
        &state,
        BrokerCommand::Poll {
            topic,
            group: b.group,
            consumer: b.consumer,
            max: b.max,
            visibility_ms: b.visibility_ms,
            now_ms,
        },
    )
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AckBody {
    group: String,
    partition: u32,
    offset: u64,
}

async fn ack(
    State(state): State<Arc<ApiState>>,
    Path(topic): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let AckBody {
        group,
        partition,
        offset,
    } = parse(
        &body,
        "expected {\"group\": G, \"partition\": P, \"offset\": O}",
    )?;
    name_ok("group", &group)?;
    run(
        &state,
        BrokerCommand::Ack {
            topic,
            group,
            partition,
            offset,
        },
    )
    .await
}

async fn logs(
    State(state): State<Arc<ApiState>>,
    Path(topic): Path<String>,
) -> Result<Json<Value>, ApiError> {
    query(&state, json!({"topic": topic})).await
}

async fn group(
    State(state): State<Arc<ApiState>>,
    Path((topic, group)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    query(&state, json!({"topic": topic, "group": group})).await
}
