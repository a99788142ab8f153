//! `POST /txn`: run a transaction (docs/node-api.md). A read-only one is a
//! linearizable read; any other is one proposal.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::parse_op;
use crate::http::{ask, parse, ApiError, ApiState};

/// Routes under `/txn`; `nonatomic` is the planted bug.
pub(super) fn routes(nonatomic: bool) -> Router<Arc<ApiState>> {
    Router::new().route(
        "/txn",
        post(move |state: State<Arc<ApiState>>, body: Bytes| txn(state, body, nonatomic)),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TxnBody {
    ops: Vec<Value>,
}

async fn txn(
    State(state): State<Arc<ApiState>>,
    body: Bytes,
    nonatomic: bool,
) -> Result<Json<Value>, ApiError> {
    let TxnBody { ops } = parse(&body, "expected {\"ops\": [[f, key, value], ...]}")?;
    if ops.is_empty() {
        return Err(ApiError::malformed("`ops` must hold at least one micro-op"));
    }
    for (i, op) in ops.iter().enumerate() {
        parse_op(op).map_err(|e| ApiError::malformed(format!("`ops[{i}]`: {e}")))?;
    }
    if nonatomic {
        // Planted: each micro-op on its own, so others interleave between them.
        let mut done = Vec::with_capacity(ops.len());
        for op in &ops {
            let r = run(&state, std::slice::from_ref(op)).await?;
            done.extend(r.as_array().cloned().unwrap_or_default());
        }
        return Ok(Json(json!({"ops": done})));
    }
    Ok(Json(json!({"ops": run(&state, &ops).await?})))
}

/// Runs `ops` as one read (all reads) or one proposal; answers the filled-in ops.
async fn run(state: &ApiState, ops: &[Value]) -> Result<Value, ApiError> {
    let read_only = ops.iter().all(|op| op[0] == "r");
    let result = if read_only {
        ask(state, state.consensus.read(json!({"txn-read": ops})), false).await?
    } else {
        ask(
            state,
            state.consensus.propose(json!({"op": "txn", "ops": ops})),
            true,
        )
        .await?
    };
    if result["ok"] != true {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "txn-failed",
            result["error"].as_str().unwrap_or("the transaction failed"),
            true,
        ));
    }
    Ok(result["ops"].clone())
}
