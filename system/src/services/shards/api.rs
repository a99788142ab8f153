//! The sharded node's client routes: `POST /txn` through the coordinator,
//! `/kv/{key}` sent to the key's shard, and `GET /cluster/shards`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::oneshot;

use super::coordinator::TxnError;
use super::rpc::{Answer, Kind, Shards};
use crate::consensus::{Asked, Consensus, Reply, Status};
use crate::http::{parse, ApiError, ApiState};
use crate::services::txn::parse_op;
use crate::types::NodeId;

/// The routes, for a node whose client state is `state`.
pub fn routes(shards: Arc<Shards>, state: &ApiState) -> Router<Arc<ApiState>> {
    let routed = Arc::new(ApiState {
        consensus: Arc::new(KeyRouted(shards.clone())),
        request_timeout: state.request_timeout,
        clock: state.clock.clone(),
        slow_writes: state.slow_writes,
    });
    let txn_shards = shards.clone();
    Router::new()
        .route(
            "/txn",
            post(move |body: Bytes| txn(txn_shards.clone(), body)),
        )
        .route("/cluster/shards", get(move || placement(shards.clone())))
        .merge(crate::services::kv::api::routes().with_state(routed))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TxnBody {
    ops: Vec<Value>,
}

async fn txn(shards: Arc<Shards>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let TxnBody { ops } = parse(&body, "expected {\"ops\": [[f, key, value], ...]}")?;
    if ops.is_empty() {
        return Err(ApiError::malformed("`ops` must hold at least one micro-op"));
    }
    for (i, op) in ops.iter().enumerate() {
        parse_op(op).map_err(|e| ApiError::malformed(format!("`ops[{i}]`: {e}")))?;
    }
    match shards.txn(ops).await {
        Ok(done) => Ok(Json(json!({ "ops": done }))),
        Err(TxnError::Failed(m)) => Err(ApiError::new(StatusCode::CONFLICT, "txn-failed", m, true)),
        Err(TxnError::Aborted(m)) => Err(ApiError::new(StatusCode::CONFLICT, "aborted", m, true)),
        Err(TxnError::Unavailable(m)) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            m,
            true,
        )),
        Err(TxnError::Indeterminate(m)) => Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            m,
            false,
        )),
    }
}

/// `GET /cluster/shards`: each shard's members and its leader as a member
/// reports it.
async fn placement(shards: Arc<Shards>) -> Json<Value> {
    let deadline = Instant::now() + Duration::from_millis(1000);
    let mut out = Vec::new();
    for info in shards.placement().info() {
        let status = match shards
            .call(info.shard, Kind::Status, Value::Null, true, deadline)
            .await
        {
            Answer::Ok(s) => s,
            _ => Value::Null,
        };
        out.push(json!({
            "shard": info.shard,
            "members": info.members,
            "leader": status.get("leader").cloned().unwrap_or(Value::Null),
            "term": status.get("term").cloned().unwrap_or(Value::Null),
            "commit_index": status.get("commit_index").cloned().unwrap_or(Value::Null),
        }));
    }
    Json(json!({"shards": out}))
}

/// Consensus as the KV routes see it on a sharded node: each command and
/// query goes to the group of the shard its `key` names.
struct KeyRouted(Arc<Shards>);

/// A [`Consensus`] that sends each command and query to the shard its `key`
/// names (the saga's services use it too).
pub fn key_routed(shards: Arc<Shards>) -> Arc<dyn Consensus> {
    Arc::new(KeyRouted(shards))
}

impl KeyRouted {
    fn route(&self, body: Value, kind: Kind) -> Asked<Reply> {
        let (tx, rx) = oneshot::channel();
        let shards = self.0.clone();
        tokio::spawn(async move {
            let key = body.get("key").and_then(Value::as_str).unwrap_or_default();
            let shard = shards.placement().shard_of(key);
            let deadline = Instant::now()
                + shards
                    .request_timeout
                    .saturating_sub(Duration::from_millis(100));
            let reply = match shards.call(shard, kind, body, false, deadline).await {
                Answer::Ok(v) => Reply::Ok(v),
                Answer::Indeterminate(m) => Reply::Indeterminate(m),
                Answer::Refused(m) => Reply::Refused(m),
                Answer::Unavailable(m) => Reply::Unavailable(format!("shard {shard}: {m}")),
                Answer::NotLeader(_) | Answer::NotHosted => {
                    Reply::Unavailable(format!("shard {shard}: no leader reachable"))
                }
            };
            let _ = tx.send(reply);
        });
        Ok(rx)
    }
}

impl Consensus for KeyRouted {
    fn propose(&self, command: Value) -> Asked<Reply> {
        self.route(command, Kind::Propose)
    }

    fn read(&self, query: Value) -> Asked<Reply> {
        self.route(query, Kind::Read)
    }

    fn join(&self, _id: NodeId, _addr: String) -> Asked<Reply> {
        refuse()
    }

    fn leave(&self, _id: NodeId) -> Asked<Reply> {
        refuse()
    }

    fn status(&self) -> Asked<Status> {
        match self.0.local.get(&0) {
            Some(main) => main.status(),
            None => Err(crate::consensus::Refused::Stopped),
        }
    }
}

fn refuse() -> Asked<Reply> {
    let (tx, rx) = oneshot::channel();
    let _ = tx.send(Reply::Refused("shard groups have fixed members".into()));
    Ok(rx)
}

/// The main group as a sharded node's client routes see it: membership
/// changes are refused, since the shards were placed on the members given
/// at start.
pub struct FixedMembers(pub Arc<dyn Consensus>);

impl Consensus for FixedMembers {
    fn propose(&self, command: Value) -> Asked<Reply> {
        self.0.propose(command)
    }

    fn read(&self, query: Value) -> Asked<Reply> {
        self.0.read(query)
    }

    fn join(&self, _id: NodeId, _addr: String) -> Asked<Reply> {
        refuse()
    }

    fn leave(&self, _id: NodeId) -> Asked<Reply> {
        refuse()
    }

    fn status(&self) -> Asked<Status> {
        self.0.status()
    }
}
