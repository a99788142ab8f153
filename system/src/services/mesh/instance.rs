//! `faultline-node --service NAME`: one instance of a small application
//! service behind the mesh. `ANY /work/{key}?ms=N` does N ms of work and
//! answers; `GET /health` is what the sidecars probe; `/admin/brownout`
//! switches on errors and slowness (a brownout: alive and answering health
//! probes, yet failing or slow). The instance registers itself in the cluster's
//! registry with a lease and renews it while it runs.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::trace::{self, Context};
use crate::http::{param, parse, ApiError};
use crate::log_line;

/// Longest work a request may ask for.
const MAX_WORK_MS: u64 = 10_000;

/// How an instance runs.
#[derive(Clone, Debug)]
pub struct InstanceConfig {
    /// The instance's id (e.g. api1).
    pub id: String,
    /// The service it is an instance of.
    pub service: String,
    /// Where it listens.
    pub listen: std::net::SocketAddr,
    /// The address it registers (its own, or a proxy in front of it).
    pub advertise: String,
    /// Client URLs of the cluster's nodes, tried in turn to register.
    pub registry: Vec<String>,
    /// Lease length; it renews every fifth of it.
    pub lease: Duration,
    /// Weight for the weighted balancer.
    pub weight: u32,
}

/// Errors and slowness switched on by the admin route.
#[derive(Clone, Copy, Debug, Default, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Brownout {
    /// Share of work requests answered 503 without doing the work.
    #[serde(default)]
    pub error_rate: f64,
    /// Extra latency added to every work request, ms.
    #[serde(default)]
    pub extra_ms: u64,
}

struct Instance {
    cfg: InstanceConfig,
    brownout: Mutex<Brownout>,
    served: AtomicU64,
}

/// Serves until the process ends.
pub async fn run(cfg: InstanceConfig) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", cfg.listen))?;
    let me = Arc::new(Instance {
        cfg: cfg.clone(),
        brownout: Mutex::new(Brownout::default()),
        served: AtomicU64::new(0),
    });
    log_line!(
        cfg.id,
        "instance of `{}` listening on {}, advertised as {}",
        cfg.service,
        cfg.listen,
        cfg.advertise
    );
    tokio::spawn(register_forever(cfg.clone()));
    axum::serve(listener, routes(me))
        .await
        .map_err(|e| anyhow::anyhow!("serving: {e}"))
}

fn routes(me: Arc<Instance>) -> Router {
    crate::http::guarded(
        Router::new()
            .route("/health", get(health))
            .route("/work/{*key}", any(work))
            .route(
                "/admin/brownout",
                post(set_brownout).delete(clear_brownout).get(show_brownout),
            )
            .with_state(me),
    )
}

async fn health(State(me): State<Arc<Instance>>) -> Json<Value> {
    Json(
        json!({"instance": me.cfg.id, "service": me.cfg.service, "served": me.served.load(Ordering::Relaxed)}),
    )
}

async fn work(
    State(me): State<Arc<Instance>>,
    method: Method,
    Path(key): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    _body: Bytes,
) -> Response {
    let start = trace::now_ms();
    let ms = match param(&params, "ms") {
        Ok(ms) => ms.unwrap_or(1),
        Err(e) => return e.into_response(),
    };
    if ms > MAX_WORK_MS {
        return ApiError::malformed(format!(
            "query parameter `ms` must be at most {MAX_WORK_MS}, got {ms}"
        ))
        .into_response();
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let ctx = header("traceparent")
        .and_then(Context::parse)
        .unwrap_or_else(Context::fresh);
    let deadline = header("x-timeout-ms")
        .and_then(|v| v.parse::<u64>().ok())
        .map(|t| start + t);
    let request = header("x-request-id").unwrap_or("").to_string();
    let b = *me.brownout.lock().unwrap_or_else(|e| e.into_inner());
    tokio::time::sleep(Duration::from_millis(ms + b.extra_ms)).await;
    let span = trace::span_id();
    let end = trace::now_ms();
    let (status, outcome) = if deadline.is_some_and(|d| end > d) {
        (StatusCode::GATEWAY_TIMEOUT, "deadline")
    } else if b.error_rate > 0.0 && trace::unit() < b.error_rate {
        (StatusCode::SERVICE_UNAVAILABLE, "brownout")
    } else {
        me.served.fetch_add(1, Ordering::Relaxed);
        (StatusCode::OK, "ok")
    };
    let record = json!({"trace": ctx.trace, "span": span, "parent": ctx.parent,
        "name": format!("{} {method} /work/{key}", me.cfg.id), "node": me.cfg.id,
        "request": request, "start_ms": start, "end_ms": end, "outcome": outcome});
    log_line!(me.cfg.id, "span {record}");
    let body = if status == StatusCode::OK {
        json!({"instance": me.cfg.id, "key": key, "method": method.as_str(), "span": record})
    } else {
        // Nothing was done: a 503 or 504 from an instance is always definite.
        json!({"error": outcome, "message": format!("{} did not do the work: {outcome}", me.cfg.id),
               "definite": true, "instance": me.cfg.id, "span": record})
    };
    (status, Json(body)).into_response()
}

async fn set_brownout(
    State(me): State<Arc<Instance>>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let b: Brownout = parse(&body, "expected {\"error_rate\": 0..1, \"extra_ms\": N}")?;
    if !(0.0..=1.0).contains(&b.error_rate) {
        return Err(ApiError::malformed(format!(
            "`error_rate` must be between 0 and 1, got {}",
            b.error_rate
        )));
    }
    if b.extra_ms > MAX_WORK_MS {
        return Err(ApiError::malformed(format!(
            "`extra_ms` must be at most {MAX_WORK_MS}, got {}",
            b.extra_ms
        )));
    }
    *me.brownout.lock().unwrap_or_else(|e| e.into_inner()) = b;
    log_line!(
        me.cfg.id,
        "brownout: {} errors, +{} ms",
        b.error_rate,
        b.extra_ms
    );
    Ok(Json(json!(b)))
}

async fn clear_brownout(State(me): State<Arc<Instance>>) -> Json<Value> {
    *me.brownout.lock().unwrap_or_else(|e| e.into_inner()) = Brownout::default();
    log_line!(me.cfg.id, "brownout over");
    Json(json!(Brownout::default()))
}

async fn show_brownout(State(me): State<Arc<Instance>>) -> Json<Value> {
    Json(json!(*me
        .brownout
        .lock()
        .unwrap_or_else(|e| e.into_inner())))
}

/// Registers, then renews every fifth of the lease, trying the cluster's
/// nodes in turn (a follower refuses; the next one may lead).
async fn register_forever(cfg: InstanceConfig) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap_or_default();
    let body = json!({"addr": cfg.advertise, "weight": cfg.weight, "ttl_ms": cfg.lease.as_millis() as u64});
    let every = (cfg.lease / 5).max(Duration::from_millis(20));
    let mut next = 0usize;
    let mut registered = false;
    loop {
        let mut done = false;
        for _ in 0..cfg.registry.len().max(1) {
            let Some(base) = cfg.registry.get(next % cfg.registry.len().max(1)) else {
                break;
            };
            let url = format!("{base}/registry/{}/{}", cfg.service, cfg.id);
            match http.put(&url).json(&body).send().await {
                Ok(r) if r.status().is_success() => {
                    done = true;
                    break;
                }
                _ => next += 1,
            }
        }
        if done != registered {
            registered = done;
            log_line!(
                cfg.id,
                "registration {}",
                if done {
                    "holds"
                } else {
                    "failing: no node took it"
                }
            );
        }
        tokio::time::sleep(every).await;
    }
}
