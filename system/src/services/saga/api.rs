//! The saga's HTTP routes (docs/node-api.md, "Sagas"): place an order (its
//! saga driven to an end before the answer), read a saga or all of them, set
//! up stock and wallets, switch a service's injected faults, and read the
//! services' state.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::orchestrator::{Orchestrator, Order, Saga, Stopped};
use super::steps::{Faults, StepCommand, SERVICES};
use crate::http::{parse, propose_refusable, ApiError, ApiState};

/// The saga routes, served by `orchestrator`.
pub fn routes(orchestrator: Arc<Orchestrator>) -> Router<Arc<ApiState>> {
    let (o1, o2, o3) = (
        orchestrator.clone(),
        orchestrator.clone(),
        orchestrator.clone(),
    );
    let (o4, o5) = (orchestrator.clone(), orchestrator);
    Router::new()
        .route(
            "/saga/setup",
            post(move |body: Bytes| setup(o4.clone(), body)),
        )
        .route("/saga/services", get(move || services(o5.clone())))
        .route("/saga/services/{service}/faults", post(faults))
        .route(
            "/sagas",
            post(move |State(s): State<Arc<ApiState>>, body: Bytes| place(s, o1.clone(), body))
                .get(move || list(o2.clone())),
        )
        .route(
            "/sagas/{order}",
            get(move |Path(order): Path<String>| one(o3.clone(), order)),
        )
}

fn stopped(e: Stopped) -> ApiError {
    match e {
        Stopped::NotLeader(leader) => ApiError {
            status: StatusCode::MISDIRECTED_REQUEST,
            body: json!({"error": "not-leader", "message": "this node is not the leader",
                         "definite": true, "leader": leader}),
        },
        Stopped::Refused(m) => ApiError::new(StatusCode::CONFLICT, "refused", m, true),
        Stopped::Unknown(m) => ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            format!("the saga's outcome is not known yet ({m}); it goes on without this request"),
            false,
        ),
    }
}

fn describe(saga: &Saga) -> Value {
    json!({"order": saga.order, "version": saga.version, "done": saga.done,
           "failed": saga.failed.as_ref().map(|(s, r)| json!({"step": s, "reason": r})),
           "compensated": saga.compensated, "end": saga.end})
}

fn non_negative(map: &BTreeMap<String, i64>, field: &str) -> Result<(), ApiError> {
    match map.iter().find(|(_, n)| **n < 0) {
        Some((k, n)) => Err(ApiError::malformed(format!(
            "`{field}.{k}` must not be negative, got {n}"
        ))),
        None => Ok(()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetupBody {
    stock: BTreeMap<String, i64>,
    wallets: BTreeMap<String, i64>,
}

async fn setup(orchestrator: Arc<Orchestrator>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let b: SetupBody = parse(
        &body,
        "expected {\"stock\": {ITEM: N, ...}, \"wallets\": {CUSTOMER: N, ...}}",
    )?;
    non_negative(&b.stock, "stock")?;
    non_negative(&b.wallets, "wallets")?;
    orchestrator
        .setup(b.stock, b.wallets)
        .await
        .map_err(stopped)?;
    Ok(Json(json!({})))
}

async fn services(orchestrator: Arc<Orchestrator>) -> Result<Json<Value>, ApiError> {
    Ok(Json(orchestrator.services().await.map_err(stopped)?))
}

async fn faults(
    State(state): State<Arc<ApiState>>,
    Path(service): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    if !SERVICES.contains(&service.as_str()) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("no service `{service}` (known: {})", SERVICES.join(", ")),
            true,
        ));
    }
    let f: Faults = parse(&body, "expected {\"fail\"?: SHARE, \"lose_reply\"?: SHARE}")?;
    for (field, share) in [("fail", f.fail), ("lose_reply", f.lose_reply)] {
        if !(0.0..=1.0).contains(&share) {
            return Err(ApiError::malformed(format!(
                "`{field}` must be a share from 0 to 1, got {share}"
            )));
        }
    }
    let cmd = serde_json::to_value(StepCommand::SagaFaults { service, faults: f })
        .map_err(|e| ApiError::malformed(e.to_string()))?;
    propose_refusable(&state, cmd).await
}

/// Places an order: starts its saga and drives it; answers once it ended
/// (`completed` or `compensated`), or 504 if it is still going when the
/// request times out (it goes on: the driver is not this request).
async fn place(
    state: Arc<ApiState>,
    orchestrator: Arc<Orchestrator>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let order: Order = parse(
        &body,
        "expected {\"order\": ID, \"customer\": C, \"item\": I, \"qty\": N, \"amount\": N}",
    )?;
    for (field, v) in [
        ("order", &order.order),
        ("customer", &order.customer),
        ("item", &order.item),
    ] {
        if v.is_empty() || v.len() > 256 {
            return Err(ApiError::malformed(format!(
                "`{field}` must be 1 to 256 bytes"
            )));
        }
    }
    for (field, n) in [("qty", order.qty), ("amount", order.amount)] {
        if n <= 0 {
            return Err(ApiError::malformed(format!(
                "`{field}` must be a positive integer, got {n}"
            )));
        }
    }
    let deadline = Instant::now() + state.request_timeout;
    // The saga runs in its own task: a client that gives up does not stop it.
    let task = tokio::spawn(async move { orchestrator.start(order, deadline).await });
    let saga = match task.await {
        Ok(r) => r.map_err(stopped)?,
        Err(e) => return Err(stopped(Stopped::Unknown(format!("driver failed: {e}")))),
    };
    match &saga.end {
        Some(_) => Ok(Json(describe(&saga))),
        None => Err(stopped(Stopped::Unknown("still running".into()))),
    }
}

async fn one(orchestrator: Arc<Orchestrator>, order: String) -> Result<Json<Value>, ApiError> {
    let saga = orchestrator.load(&order).await.map_err(stopped)?;
    if saga.order.is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("no saga for order `{order}`"),
            true,
        ));
    }
    Ok(Json(describe(&saga)))
}

/// Every saga with its state.
async fn list(orchestrator: Arc<Orchestrator>) -> Result<Json<Value>, ApiError> {
    let sagas = orchestrator.all().await.map_err(stopped)?;
    Ok(Json(
        json!({"sagas": sagas.iter().map(describe).collect::<Vec<_>>()}),
    ))
}
