//! The consensus interface the seeds describe: propose a value and learn its
//! place in the committed sequence, read the committed values, ask who
//! leads. Each proposal is one command in the log; the values, in commit
//! order, are this service's state, so every replica holds the same sequence.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::kv::KvStore;
use super::Service;
use crate::http::{ask, parse, propose_refusable, ApiError, ApiState};

/// Most values one read of the committed sequence returns.
const MAX_READ: usize = 1000;

/// Committed proposals in order.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Proposals {
    values: Vec<Value>,
}

impl Proposals {
    /// Appends a committed value; its index (1-based) in the sequence.
    fn commit(&mut self, value: Value) -> usize {
        self.values.push(value);
        self.values.len()
    }

    /// Values from index `from` (1-based), at most `max`.
    fn read(&self, from: usize, max: usize) -> Value {
        let start = from.max(1) - 1;
        let values: Vec<Value> = self
            .values
            .iter()
            .enumerate()
            .skip(start)
            .take(max.min(MAX_READ))
            .map(|(i, v)| json!({"index": i + 1, "value": v}))
            .collect();
        json!({"count": self.values.len(), "values": values})
    }
}

/// The proposals as a service.
#[derive(Debug, Default)]
pub struct ProposalService {
    proposals: Proposals,
}

impl Service for ProposalService {
    fn owns(&self, command: &Value) -> bool {
        command.get("op").and_then(Value::as_str) == Some("consensus-propose")
    }

    fn apply(&mut self, command: &Value, _keys: &mut KvStore) -> Value {
        match command.get("value") {
            Some(v) => json!({"ok": true, "index": self.proposals.commit(v.clone())}),
            None => json!({"ok": false, "error": "no value"}),
        }
    }

    fn query(&self, query: &Value, _keys: &KvStore) -> Option<Value> {
        let q = query.get("proposals")?;
        let from = q["from"].as_u64().unwrap_or(1) as usize;
        let max = q["max"].as_u64().unwrap_or(MAX_READ as u64) as usize;
        Some(self.proposals.read(from, max))
    }

    fn snapshot(&self, snapshot: &mut Map<String, Value>) {
        snapshot.insert(
            "proposals".into(),
            serde_json::to_value(&self.proposals).unwrap_or(Value::Null),
        );
    }

    /// A snapshot from before the proposals existed has none: start empty.
    fn restore(&mut self, snapshot: &Value) -> Result<(), String> {
        self.proposals = match snapshot.get("proposals") {
            Some(p) => {
                serde_json::from_value(p.clone()).map_err(|e| format!("proposals snapshot: {e}"))?
            }
            None => Proposals::default(),
        };
        Ok(())
    }

    fn routes(&self) -> Router<Arc<ApiState>> {
        Router::new()
            .route("/consensus/propose", post(propose))
            .route("/consensus/committed", get(committed))
            .route("/consensus/leader", get(leader))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProposeBody {
    value: Value,
}

async fn propose(State(state): State<Arc<ApiState>>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let ProposeBody { value } = parse(&body, "expected {\"value\": V}")?;
    propose_refusable(&state, json!({"op": "consensus-propose", "value": value})).await
}

/// The committed values from `from` (1-based) on, with the log's commit index.
async fn committed(
    State(state): State<Arc<ApiState>>,
    Query(params): Query<std::collections::HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let mut q = Map::new();
    for field in ["from", "max"] {
        if let Some(v) = params.get(field) {
            let n = v.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                ApiError::malformed(format!(
                    "query parameter `{field}` must be a positive integer, got `{v}`"
                ))
            })?;
            q.insert(field.into(), json!(n));
        }
    }
    let mut answer = ask(
        &state,
        state.consensus.read(json!({ "proposals": q })),
        false,
    )
    .await?;
    if let Some(s) = status(&state).await {
        answer["commit_index"] = json!(s.commit_index);
    }
    Ok(Json(answer))
}

/// This node's view of consensus, if it answers in time.
async fn status(state: &ApiState) -> Option<crate::consensus::Status> {
    let rx = state.consensus.status().ok()?;
    let wait = state.request_timeout.min(Duration::from_secs(2));
    tokio::time::timeout(wait, rx).await.ok()?.ok()
}

/// Who leads, as this node knows: `503` while it knows of no leader.
async fn leader(State(state): State<Arc<ApiState>>) -> Result<Json<Value>, ApiError> {
    match status(&state).await {
        Some(s) if s.leader.is_some() => Ok(Json(json!({
            "leader": s.leader, "term": s.term, "id": s.id, "role": s.role,
            "commit_index": s.commit_index
        }))),
        Some(s) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("node {} knows of no leader in term {}", s.id, s.term),
            true,
        )),
        None => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "no status from consensus in time",
            true,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_take_indexes_in_commit_order_and_survive_a_snapshot() {
        let mut s = ProposalService::default();
        let mut keys = KvStore::default();
        for v in ["a", "b", "c"] {
            s.apply(&json!({"op": "consensus-propose", "value": v}), &mut keys);
        }
        let r = s.apply(
            &json!({"op": "consensus-propose", "value": {"x": 1}}),
            &mut keys,
        );
        assert_eq!(r["index"], 4);
        let mut snap = Map::new();
        s.snapshot(&mut snap);
        let mut copy = ProposalService::default();
        copy.restore(&Value::Object(snap)).unwrap();
        let read = copy
            .query(&json!({"proposals": {"from": 2, "max": 2}}), &keys)
            .unwrap();
        assert_eq!(read["count"], 4);
        assert_eq!(
            read["values"],
            json!([{"index": 2, "value": "b"}, {"index": 3, "value": "c"}])
        );
        assert_eq!(
            copy.query(&json!({"proposals": {"from": 9}}), &keys)
                .unwrap()["values"],
            json!([])
        );
        assert!(copy.query(&json!({"key": "a"}), &keys).is_none());
    }
}
