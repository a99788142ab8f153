//! The mailbox's routes: `POST /cluster/send`, `POST /cluster/broadcast`,
//! `GET /cluster/inbox`, and `GET /cluster/state` (this member's view of the
//! cluster: consensus, members, mailbox figures), which answers even when
//! consensus does not.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::Mailbox;
use crate::http::{param, parse, ApiError, ApiState};

/// How long a send waits for the acknowledgement unless told otherwise.
const DEFAULT_DEADLINE_MS: u64 = 2_000;
/// The longest deadline a client may ask for.
const MAX_DEADLINE_MS: u64 = 60_000;
/// Longest client-given message id.
const MAX_ID_CHARS: usize = 200;
/// Largest message body, as JSON text.
const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Most deliveries one inbox read returns.
const MAX_READ: u64 = 1_000;

/// Routes of the mailbox of `mailbox`.
pub fn routes(mailbox: Arc<Mailbox>) -> Router<Arc<ApiState>> {
    let (m1, m2, m3, m4) = (mailbox.clone(), mailbox.clone(), mailbox.clone(), mailbox);
    Router::new()
        .route(
            "/cluster/send",
            post(move |body: Bytes| send(m1.clone(), body)),
        )
        .route(
            "/cluster/broadcast",
            post(move |body: Bytes| broadcast(m2.clone(), body)),
        )
        .route(
            "/cluster/inbox",
            get(move |q: Query<HashMap<String, String>>| inbox(m3.clone(), q.0)),
        )
        .route(
            "/cluster/state",
            get(move |s: State<Arc<ApiState>>| state(m4.clone(), s.0)),
        )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SendBody {
    to: String,
    body: Value,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    deadline_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BroadcastBody {
    body: Value,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    deadline_ms: Option<u64>,
}

/// The message id: the client's, checked, or a fresh one.
fn message_id(mailbox: &Mailbox, id: Option<String>) -> Result<String, ApiError> {
    match id {
        None => Ok(mailbox.fresh_id()),
        Some(id) if id.is_empty() || id.chars().count() > MAX_ID_CHARS => Err(ApiError::malformed(
            format!("`id` must be 1 to {MAX_ID_CHARS} characters"),
        )),
        Some(id) if id.chars().any(char::is_control) => {
            Err(ApiError::malformed("`id` must not hold control characters"))
        }
        Some(id) => Ok(id),
    }
}

/// The deadline asked for, checked; and the body's size.
fn checked(deadline_ms: Option<u64>, body: &Value) -> Result<Instant, ApiError> {
    let ms = deadline_ms.unwrap_or(DEFAULT_DEADLINE_MS);
    if ms == 0 || ms > MAX_DEADLINE_MS {
        return Err(ApiError::malformed(format!(
            "`deadline_ms` must be 1 to {MAX_DEADLINE_MS}, got {ms}"
        )));
    }
    let size = serde_json::to_vec(body).map(|b| b.len()).unwrap_or(0);
    if size > MAX_MESSAGE_BYTES {
        return Err(ApiError::malformed(format!(
            "`body` is {size} bytes as JSON; at most {MAX_MESSAGE_BYTES}"
        )));
    }
    Ok(Instant::now() + Duration::from_millis(ms))
}

/// The local delivery failed (the disk refused it): nothing was delivered.
fn failed(e: String) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e, true)
}

async fn send(mailbox: Arc<Mailbox>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let b: SendBody = parse(
        &body,
        "expected {\"to\": MEMBER, \"body\": ANY, \"id\"?: ID, \"deadline_ms\"?: MS}",
    )?;
    if !mailbox.is_member(&b.to) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not-found",
            format!(
                "`to`: no member `{}` (members: {})",
                b.to,
                mailbox.members().join(", ")
            ),
            true,
        ));
    }
    let deadline = checked(b.deadline_ms, &b.body)?;
    let id = message_id(&mailbox, b.id)?;
    let to = b.to;
    if mailbox
        .send(id.clone(), &to, b.body, deadline)
        .await
        .map_err(failed)?
    {
        return Ok(Json(json!({"id": id, "to": to, "delivered": true})));
    }
    // It may sit in `to`'s inbox with the acknowledgement lost, or arrive later.
    Err(ApiError {
        status: StatusCode::GATEWAY_TIMEOUT,
        body: json!({"error": "timeout", "definite": false, "id": id, "to": to,
            "delivered": Value::Null,
            "message": format!("{to} did not acknowledge {id} in time; it may still be delivered")}),
    })
}

async fn broadcast(mailbox: Arc<Mailbox>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let b: BroadcastBody = parse(
        &body,
        "expected {\"body\": ANY, \"id\"?: ID, \"deadline_ms\"?: MS}",
    )?;
    let deadline = checked(b.deadline_ms, &b.body)?;
    let id = message_id(&mailbox, b.id)?;
    let acked = mailbox
        .broadcast(id.clone(), b.body, deadline)
        .await
        .map_err(failed)?;
    let pending: Vec<String> = mailbox
        .members()
        .into_iter()
        .filter(|m| !acked.contains(m))
        .collect();
    Ok(Json(
        json!({"id": id, "origin": mailbox.id(), "delivered_to": acked, "pending": pending}),
    ))
}

async fn inbox(
    mailbox: Arc<Mailbox>,
    params: HashMap<String, String>,
) -> Result<Json<Value>, ApiError> {
    let from = param(&params, "from")?.unwrap_or(0);
    let max = param(&params, "max")?.unwrap_or(MAX_READ).min(MAX_READ);
    let (messages, total) = mailbox.read(from, max as usize);
    let next = from.min(total as u64) + messages.len() as u64;
    Ok(Json(
        json!({"member": mailbox.id(), "messages": messages, "next": next, "total": total}),
    ))
}

async fn state(mailbox: Arc<Mailbox>, api: Arc<ApiState>) -> Json<Value> {
    let consensus = match api.consensus.status() {
        Ok(rx) => match tokio::time::timeout(Duration::from_millis(500), rx).await {
            Ok(Ok(s)) => serde_json::to_value(s).unwrap_or(Value::Null),
            _ => Value::Null,
        },
        Err(_) => Value::Null,
    };
    Json(json!({
        "id": mailbox.id(),
        "members": mailbox.members(),
        "consensus": consensus,
        "mailbox": mailbox.stats(),
    }))
}
