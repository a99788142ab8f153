//! The broker's HTTP routes: produce, poll, ack, and reads of a topic's logs and
//! a group's progress (docs/node-api.md, errors).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::BrokerCommand;
use crate::http::{param, parse, propose_refusable, query, ApiError, ApiState};

/// Longest visibility timeout a consumer may ask for: ten minutes.
const MAX_VISIBILITY_MS: u64 = 600_000;

/// How long a push subscription waits after a poll that delivered nothing.
const IDLE_WAIT: Duration = Duration::from_millis(200);

/// Routes under `/topics`.
pub fn routes() -> Router<Arc<ApiState>> {
    Router::new()
        .route("/topics", get(summary))
        .route("/topics/{topic}", get(logs))
        .route("/topics/{topic}/produce", post(produce))
        .route("/topics/{topic}/poll", post(poll))
        .route("/topics/{topic}/ack", post(ack))
        .route("/topics/{topic}/subscribe", get(subscribe))
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

/// `GET /topics`: every topic's size and each consumer group's depth, messages
/// in flight, redeliveries and dead letters (a linearizable read).
async fn summary(State(state): State<Arc<ApiState>>) -> Result<Json<Value>, ApiError> {
    query(&state, json!({"broker": "summary"})).await
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

/// `GET /topics/{t}/subscribe?group=G&consumer=C[&max=N][&visibility_ms=MS]`:
/// push delivery as server-sent events. Each message a poll delivers is an
/// event `message` (the poll's message object); acknowledging stays `POST
/// /topics/{t}/ack`, and what is not acknowledged within its visibility
/// timeout is delivered again, as with polling. When a poll fails (not the
/// leader, no quorum) the stream sends an event `error` with the error body
/// and ends, so the client reconnects, perhaps elsewhere.
async fn subscribe(
    State(state): State<Arc<ApiState>>,
    Path(topic): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let field = |name: &str| {
        params
            .get(name)
            .cloned()
            .ok_or_else(|| ApiError::malformed(format!("query parameter `{name}` is required")))
    };
    let (group, consumer) = (field("group")?, field("consumer")?);
    name_ok("group", &group)?;
    name_ok("consumer", &consumer)?;
    let max = param(&params, "max")?
        .unwrap_or(default_max() as u64)
        .clamp(1, 100) as usize;
    let visibility_ms = param(&params, "visibility_ms")?.unwrap_or(default_visibility());
    if visibility_ms == 0 || visibility_ms > MAX_VISIBILITY_MS {
        return Err(ApiError::malformed(format!(
            "`visibility_ms` must be 1 to {MAX_VISIBILITY_MS}, got {visibility_ms}"
        )));
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(64);
    tokio::spawn(async move {
        loop {
            let command = BrokerCommand::Poll {
                topic: topic.clone(),
                group: group.clone(),
                consumer: consumer.clone(),
                max,
                visibility_ms,
                now_ms: state.clock.now_ms().max(0) as u64,
            };
            let messages = match run(&state, command).await {
                Ok(Json(v)) => v["messages"].as_array().cloned().unwrap_or_default(),
                Err(e) => {
                    let _ = tx
                        .send(Event::default().event("error").data(e.body.to_string()))
                        .await;
                    return;
                }
            };
            if messages.is_empty() {
                // Nobody listens any more: stop polling (and taking messages).
                if tx.is_closed() {
                    return;
                }
                tokio::time::sleep(IDLE_WAIT).await;
                continue;
            }
            for m in messages {
                let event = Event::default().event("message").data(m.to_string());
                if tx.send(event).await.is_err() {
                    return;
                }
            }
        }
    });
    let stream =
        futures_util::stream::unfold(
            rx,
            |mut rx| async move { rx.recv().await.map(|e| (Ok(e), rx)) },
        );
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
