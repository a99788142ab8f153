//! The admin API, on its own listener: clock offset (skew faults), a PBFT
//! replica's misbehaviour (the byzantine nemesis), crash points of the
//! transaction coordinator, and health.
//! Kept apart from the client API so clients can never move a node's clock.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::clock::Clock;
use crate::consensus::pbft::{Behaviour, Switch};
use crate::http::{guarded, parse, ApiError};

/// What the admin handlers share.
pub struct AdminState {
    /// This node's id.
    pub id: String,
    /// Its clock.
    pub clock: Arc<Clock>,
    /// The misbehaviour switch of a PBFT replica (`None` under other protocols).
    pub byzantine: Option<Arc<crate::consensus::pbft::Switch>>,
}

/// The admin routes, with the client listener's JSON errors.
pub fn router(state: Arc<AdminState>) -> Router {
    guarded(
        Router::new()
            .route("/admin/clock", get(clock).post(set_clock))
            .route("/admin/health", get(health))
            .route("/admin/byzantine", get(byzantine).post(set_byzantine))
            .route(
                "/admin/crash-points",
                get(crash_points).post(arm_crash_point),
            )
            .with_state(state),
    )
}

async fn clock(State(s): State<Arc<AdminState>>) -> Json<Value> {
    Json(json!({"offset_ms": s.clock.offset_ms(), "now_ms": s.clock.now_ms()}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClockBody {
    offset_ms: Option<i64>,
    bump_ms: Option<i64>,
}

async fn set_clock(State(s): State<Arc<AdminState>>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let b: ClockBody = parse(&body, "expected {\"offset_ms\": N} or {\"bump_ms\": N}")?;
    let offset = match (b.offset_ms, b.bump_ms) {
        (Some(o), None) => s.clock.set_offset_ms(o),
        (None, Some(d)) => s.clock.bump_ms(d),
        _ => {
            return Err(ApiError::malformed(
                "give exactly one of offset_ms and bump_ms",
            ))
        }
    }
    .map_err(|e| ApiError::malformed(e.to_string()))?;
    crate::log_line!(s.id, "clock offset now {offset} ms");
    Ok(Json(json!({"offset_ms": offset})))
}

async fn health(State(s): State<Arc<AdminState>>) -> Json<Value> {
    Json(json!({"ok": true, "id": s.id}))
}

fn behaviour_json(b: Option<Behaviour>) -> Value {
    json!({"behaviour": b.map_or("honest", Behaviour::name)})
}

fn switch(s: &AdminState) -> Result<&Switch, ApiError> {
    s.byzantine.as_deref().ok_or_else(|| {
        ApiError::new(
            axum::http::StatusCode::CONFLICT,
            "refused",
            "only a --consensus pbft replica can be made byzantine",
            true,
        )
    })
}

async fn byzantine(State(s): State<Arc<AdminState>>) -> Result<Json<Value>, ApiError> {
    Ok(Json(behaviour_json(switch(&s)?.get())))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ByzantineBody {
    behaviour: String,
}

/// `POST /admin/byzantine {"behaviour": NAME}`, or `"honest"` to stop.
async fn set_byzantine(
    State(s): State<Arc<AdminState>>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let b: ByzantineBody = parse(&body, "expected {\"behaviour\": NAME}")?;
    let sw = switch(&s)?;
    let behaviour = match b.behaviour.as_str() {
        "honest" => None,
        name => Some(Behaviour::parse(name).ok_or_else(|| {
            let names: Vec<&str> = Behaviour::ALL.iter().map(|(_, n)| *n).collect();
            ApiError::malformed(format!(
                "`behaviour`: unknown `{name}` (known: honest, {})",
                names.join(", ")
            ))
        })?),
    };
    sw.set(behaviour);
    crate::log_line!(
        s.id,
        "byzantine behaviour now {}",
        behaviour.map_or("honest", Behaviour::name)
    );
    Ok(Json(behaviour_json(behaviour)))
}

async fn crash_points() -> Json<Value> {
    use crate::services::shards::crash;
    Json(json!({"armed": crash::armed(), "known": crash::POINTS}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CrashBody {
    point: String,
}

/// `POST /admin/crash-points {"point": NAME}`: the node exits when a
/// transaction it coordinates next reaches that point.
async fn arm_crash_point(
    State(s): State<Arc<AdminState>>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    use crate::services::shards::crash;
    let b: CrashBody = parse(&body, "expected {\"point\": NAME}")?;
    crash::arm(&b.point).map_err(|e| ApiError::malformed(format!("`point`: {e}")))?;
    crate::log_line!(s.id, "crash point {} armed", b.point);
    Ok(Json(json!({"armed": crash::armed()})))
}
