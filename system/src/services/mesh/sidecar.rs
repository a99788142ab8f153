//! The sidecar every cluster node runs: `/mesh/{service}/{path}` sends a
//! request to one instance of the service, picked by the service's balancer
//! among those the registry lists, health checks find up and whose circuit
//! breaker admits; a failed try is retried with exponential backoff and full
//! jitter, within a retry budget and the caller's deadline, and never for a
//! non-idempotent request that may have been applied. Each hop is a span of
//! the caller's W3C trace. What happened to every request is kept for
//! `GET /mesh/records`, the evidence the `mesh` workload's checkers read.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::policy::{
    backoff_ms, Balancer, Breaker, BreakerConfig, BreakerState, Bulkhead, Candidate, HealthConfig,
    PhiDetector, Policy, RetryBudget, RetryConfig,
};
use super::trace::{self, Context};
use crate::bugs::{Bug, Bugs};
use crate::log_line;

/// Requests kept for `/mesh/records`; older ones are dropped (and counted).
const KEEP_RECORDS: usize = 500_000;
/// How often the sidecar reads the registry.
const DISCOVER_EVERY: Duration = Duration::from_millis(200);
/// Tries the retry-storm bug makes, whatever the configuration says.
const STORM_TRIES: u32 = 10;
/// Heartbeat samples the phi detector keeps.
const PHI_WINDOW: usize = 100;

/// A service's mesh settings (`--mesh-config` for all, `PUT /mesh/config/{service}`
/// for one); every field may be left out.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MeshConfig {
    /// Which balancer picks instances.
    pub balancer: Policy,
    /// Whether tries go through a circuit breaker per instance (off: only
    /// to measure what the breaker costs).
    pub circuit_breaker: bool,
    /// Circuit breaker thresholds (one breaker per instance).
    pub breaker: BreakerConfig,
    /// Retries, backoff, budget and per-try timeout.
    pub retry: RetryConfig,
    /// Active health checks and the phi detector.
    pub health: HealthConfig,
    /// Most requests in flight to one instance (the bulkhead).
    pub max_in_flight: u32,
    /// The deadline of a request that does not give `x-timeout-ms`.
    pub timeout_ms: u64,
    /// Weights that override the registered ones, by instance.
    pub weights: BTreeMap<String, u32>,
}

impl Default for MeshConfig {
    fn default() -> Self {
        MeshConfig {
            balancer: Policy::PowerOfTwo,
            circuit_breaker: true,
            breaker: BreakerConfig::default(),
            retry: RetryConfig::default(),
            health: HealthConfig::default(),
            max_in_flight: 64,
            timeout_ms: 1_000,
            weights: BTreeMap::new(),
        }
    }
}

impl MeshConfig {
    /// Refuses settings that make no sense, naming the field.
    pub fn validate(&self) -> Result<(), String> {
        self.breaker.validate()?;
        self.retry.validate()?;
        self.health.validate()?;
        if self.max_in_flight == 0 {
            return Err("max_in_flight must be at least 1".into());
        }
        if !(1..=600_000).contains(&self.timeout_ms) {
            return Err(format!(
                "timeout_ms must be 1 to 600000, got {}",
                self.timeout_ms
            ));
        }
        for (id, w) in &self.weights {
            if *w == 0 || *w > 1_000 {
                return Err(format!("weights.{id} must be 1 to 1000, got {w}"));
            }
        }
        Ok(())
    }

    /// Parses a configuration given as JSON text.
    pub fn parse(text: &str) -> Result<MeshConfig, String> {
        let c: MeshConfig = serde_json::from_str(text).map_err(|e| e.to_string())?;
        c.validate()?;
        Ok(c)
    }
}

/// Planted bugs the sidecar carries.
#[derive(Clone, Copy, Debug, Default)]
struct MeshBugs {
    never_opens: bool,
    retry_storm: bool,
    ignore_health: bool,
    no_deadline: bool,
}

/// An instance's health as this sidecar sees it.
struct Health {
    up: bool,
    failed: u32,
    passed: u32,
    phi: PhiDetector,
    probing: bool,
}

/// One instance of a service, as this sidecar knows it.
struct Inst {
    /// Numbers this sidecar's knowledge of the instance: an instance that
    /// leaves (its lease lapsed) and comes back starts a new breaker, whose
    /// results and transitions the checker must not mix with the old one's.
    generation: u64,
    addr: String,
    weight: u32,
    breaker: Breaker,
    bulkhead: Bulkhead,
    /// Results recorded by the breaker so far.
    results: u64,
    health: Health,
    requests: u64,
    failures: u64,
}

/// A service as this sidecar knows it.
struct Svc {
    config: MeshConfig,
    balancer: Balancer,
    budget: RetryBudget,
    instances: BTreeMap<String, Inst>,
    requests: u64,
    retries: u64,
    budget_refused: u64,
    no_instance: u64,
}

#[derive(Default)]
struct Books {
    services: BTreeMap<String, Svc>,
    /// Settings given per service, kept for services not discovered yet.
    configs: BTreeMap<String, MeshConfig>,
    records: Vec<Value>,
    dropped: usize,
    transitions: Vec<Value>,
    health_log: Vec<Value>,
    /// Breakers made so far per `service/instance`.
    generations: BTreeMap<String, u64>,
}

/// The node's sidecar.
pub struct Sidecar {
    id: String,
    http: reqwest::Client,
    registry: Vec<String>,
    routes: BTreeMap<String, String>,
    defaults: MeshConfig,
    bugs: MeshBugs,
    books: Mutex<Books>,
    /// When this sidecar started (unix ms): it keeps nothing from before.
    since_ms: u64,
    /// Whether it reads the registry and probes: from the start when told
    /// where the registry is, else from its first mesh request, so a node
    /// nobody uses as a sidecar puts no reads on its cluster.
    active: std::sync::atomic::AtomicBool,
}

/// An instance a try was let through to.
struct Admitted {
    instance: String,
    addr: String,
    /// The breaker's state when it let the try through.
    admitted_in: BreakerState,
    /// Whether the bulkhead took it.
    entered: bool,
    /// When (unix ms, read under the lock).
    at: u64,
    /// Which breaker of the instance let it through.
    generation: u64,
}

/// What a pick came to.
enum Picked {
    Try(Admitted),
    /// The deadline has passed.
    Deadline,
    /// No instance could take it (at this time).
    Nothing(u64),
}

/// What one try came to.
struct Tried {
    ok: bool,
    /// The connection was refused: nothing listens there (passive health).
    refused: bool,
    /// Whether the instance may have applied it (it was sent and no definite
    /// refusal came back).
    maybe_applied: bool,
    status: Option<u16>,
    error: Option<String>,
    response: Option<(StatusCode, Option<String>, Bytes)>,
}

impl Sidecar {
    /// A sidecar for node `id`, reading the registry from `registry` (client
    /// URLs of the cluster's nodes) and reaching instance `i` at `routes[i]`
    /// when given (a proxy), else at its registered address.
    pub fn new(
        id: String,
        registry: Vec<String>,
        active: bool,
        routes: BTreeMap<String, String>,
        defaults: MeshConfig,
        bugs: &Bugs,
    ) -> Arc<Sidecar> {
        let http = reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(30))
            .tcp_nodelay(true)
            .build()
            .unwrap_or_default();
        Arc::new(Sidecar {
            id,
            http,
            registry,
            routes,
            defaults,
            bugs: MeshBugs {
                never_opens: bugs.has(Bug::BreakerNeverOpens),
                retry_storm: bugs.has(Bug::RetryStorm),
                ignore_health: bugs.has(Bug::LbIgnoresHealth),
                no_deadline: bugs.has(Bug::NoDeadline),
            },
            books: Mutex::new(Books::default()),
            since_ms: trace::now_ms(),
            active: std::sync::atomic::AtomicBool::new(active),
        })
    }

    fn books(&self) -> std::sync::MutexGuard<'_, Books> {
        self.books.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn new_service(&self, config: MeshConfig, now: u64) -> Svc {
        Svc {
            balancer: Balancer::new(config.balancer),
            budget: RetryBudget::new(config.retry.budget_ratio, config.retry.min_per_sec, now),
            config,
            instances: BTreeMap::new(),
            requests: 0,
            retries: 0,
            budget_refused: 0,
            no_instance: 0,
        }
    }

    /// Starts reading the registry (a no-op once started).
    pub fn wake(&self) {
        self.active
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Sets one service's configuration (it applies from the next request).
    pub fn configure(&self, service: &str, config: MeshConfig) {
        self.wake();
        let now = trace::now_ms();
        let mut books = self.books();
        books.configs.insert(service.to_string(), config.clone());
        if let Some(svc) = books.services.get_mut(service) {
            svc.balancer.set_policy(config.balancer);
            svc.budget = RetryBudget::new(config.retry.budget_ratio, config.retry.min_per_sec, now);
            for inst in svc.instances.values_mut() {
                inst.breaker.set_config(config.breaker.clone());
                inst.bulkhead.set_max(config.max_in_flight);
            }
            svc.config = config;
        }
        log_line!(self.id, "mesh: {service} reconfigured");
    }

    /// Reads the registry and the instances' health until the node stops.
    pub async fn run(self: Arc<Self>) {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                if me.active.load(std::sync::atomic::Ordering::Relaxed) {
                    me.discover().await;
                }
                tokio::time::sleep(DISCOVER_EVERY).await;
            }
        });
        loop {
            let every = self.probe_all();
            tokio::time::sleep(every).await;
        }
    }

    /// One read of the registry: instances join and leave this sidecar's view.
    async fn discover(&self) {
        let mut listed = None;
        for base in &self.registry {
            let got = self
                .http
                .get(format!("{base}/registry"))
                .timeout(Duration::from_millis(500))
                .send()
                .await;
            if let Ok(r) = got {
                if r.status().is_success() {
                    if let Ok(v) = r.json::<Value>().await {
                        listed = Some(v);
                        break;
                    }
                }
            }
        }
        // No node answered: keep what is known (a registry outage must not
        // empty the mesh; health checks still judge the instances).
        let Some(Value::Object(listed)) = listed else {
            return;
        };
        let now = trace::now_ms();
        let mut books = self.books();
        let Books {
            services,
            configs,
            generations,
            ..
        } = &mut *books;
        for (name, list) in &listed {
            let svc = services.entry(name.clone()).or_insert_with(|| {
                let config = configs.get(name).cloned().unwrap_or(self.defaults.clone());
                self.new_service(config, now)
            });
            let mut seen = BTreeSet::new();
            for e in list.as_array().into_iter().flatten() {
                let (Some(id), Some(addr)) = (e["instance"].as_str(), e["addr"].as_str()) else {
                    continue;
                };
                seen.insert(id.to_string());
                let addr = self.routes.get(id).cloned().unwrap_or(addr.to_string());
                let weight = e["weight"].as_u64().unwrap_or(1).clamp(1, 1_000) as u32;
                match svc.instances.get_mut(id) {
                    Some(inst) => {
                        inst.addr = addr;
                        inst.weight = weight;
                    }
                    None => {
                        log_line!(self.id, "mesh: {name}/{id} joined at {addr}");
                        let generation = generations.entry(format!("{name}/{id}")).or_insert(0);
                        *generation += 1;
                        svc.instances.insert(
                            id.to_string(),
                            Inst {
                                generation: *generation,
                                addr,
                                weight,
                                breaker: Breaker::with_bug(
                                    svc.config.breaker.clone(),
                                    self.bugs.never_opens,
                                ),
                                bulkhead: Bulkhead::new(svc.config.max_in_flight),
                                results: 0,
                                // Down until probes pass: a new instance
                                // earns its traffic.
                                health: Health {
                                    up: false,
                                    failed: 0,
                                    passed: 0,
                                    phi: PhiDetector::new(PHI_WINDOW, 20.0),
                                    probing: false,
                                },
                                requests: 0,
                                failures: 0,
                            },
                        );
                    }
                }
            }
            forget(&self.id, name, svc, &seen);
        }
        let none = BTreeSet::new();
        for (name, svc) in services.iter_mut() {
            if !listed.contains_key(name) {
                forget(&self.id, name, svc, &none);
            }
        }
    }

    /// Starts a health probe of every instance not already being probed;
    /// answers when to probe again.
    fn probe_all(self: &Arc<Self>) -> Duration {
        let mut books = self.books();
        let mut every = u64::MAX;
        for (name, svc) in books.services.iter_mut() {
            every = every.min(svc.config.health.interval_ms);
            let timeout = Duration::from_millis(svc.config.health.timeout_ms);
            for (id, inst) in svc.instances.iter_mut() {
                if inst.health.probing {
                    continue;
                }
                inst.health.probing = true;
                let (me, name, id) = (self.clone(), name.clone(), id.clone());
                let url = format!("http://{}/health", inst.addr);
                tokio::spawn(async move {
                    let ok = me
                        .http
                        .get(url)
                        .timeout(timeout)
                        .send()
                        .await
                        .is_ok_and(|r| r.status().is_success());
                    me.probed(&name, &id, ok);
                });
            }
        }
        Duration::from_millis(if every == u64::MAX { 100 } else { every })
    }

    /// A probe's result: the phi detector hears a heartbeat, and enough
    /// failures (or a phi over the threshold) mark the instance down, enough
    /// passes up again.
    fn probed(&self, service: &str, id: &str, ok: bool) {
        let now = trace::now_ms();
        let mut books = self.books();
        let Books {
            services,
            health_log,
            ..
        } = &mut *books;
        let Some(svc) = services.get_mut(service) else {
            return;
        };
        let cfg = svc.config.health.clone();
        let Some(inst) = svc.instances.get_mut(id) else {
            return;
        };
        let h = &mut inst.health;
        h.probing = false;
        if ok {
            h.phi.heartbeat(now);
            h.passed += 1;
            h.failed = 0;
        } else {
            h.failed += 1;
            h.passed = 0;
        }
        let phi = h.phi.phi(now);
        let change = if h.up && (h.failed >= cfg.failures || phi > cfg.phi_threshold) {
            Some((
                false,
                if h.failed >= cfg.failures {
                    "probes failed"
                } else {
                    "phi"
                },
            ))
        } else if !h.up && h.passed >= cfg.successes {
            Some((true, "probes passed"))
        } else {
            None
        };
        if let Some((up, why)) = change {
            h.up = up;
            let e = json!({"sidecar": self.id, "service": service, "instance": id,
                "up": up, "at_ms": now, "why": why, "phi": (phi * 100.0).round() / 100.0});
            log_line!(self.id, "health {e}");
            health_log.push(e);
        }
    }

    /// Serves one request through the mesh.
    pub async fn handle(
        &self,
        service: &str,
        method: Method,
        rest: &str,
        query: Option<&str>,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Response {
        self.wake();
        let arrival = trace::now_ms();
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let request = header("x-request-id")
            .map(str::to_string)
            .unwrap_or_else(trace::span_id);
        let ctx = header("traceparent")
            .and_then(Context::parse)
            .unwrap_or_else(Context::fresh);
        let key = header("x-mesh-key").map(str::to_string);
        let idempotent = matches!(
            method,
            Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS
        ) || header("x-idempotent") == Some("true");
        let asked_timeout = match header("x-timeout-ms").map(str::parse::<u64>) {
            None => None,
            Some(Ok(t)) if (1..=600_000).contains(&t) => Some(t),
            Some(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "malformed",
                    "header `x-timeout-ms` must be 1 to 600000".into(),
                    true,
                    0,
                )
            }
        };
        let (config, known) = {
            let books = self.books();
            match books.services.get(service) {
                Some(s) => (s.config.clone(), true),
                None => (
                    books
                        .configs
                        .get(service)
                        .cloned()
                        .unwrap_or(self.defaults.clone()),
                    false,
                ),
            }
        };
        if !known {
            return error(
                StatusCode::NOT_FOUND,
                "not-found",
                format!("service `{service}`: no instance registered (see GET /registry)"),
                true,
                0,
            );
        }
        let timeout = asked_timeout.unwrap_or(config.timeout_ms);
        let deadline = arrival + timeout;
        let max_tries = if self.bugs.retry_storm {
            STORM_TRIES
        } else {
            config.retry.max_attempts
        };
        let span = trace::span_id();
        {
            let mut books = self.books();
            if let Some(svc) = books.services.get_mut(service) {
                svc.requests += 1;
                svc.budget.deposit(arrival);
            }
        }
        let mut attempts: Vec<Value> = Vec::new();
        let mut spans: Vec<Value> = Vec::new();
        let mut tried: BTreeSet<String> = BTreeSet::new();
        let mut maybe_applied = false;
        let mut last: Option<Tried> = None;
        let mut served_by = String::new();
        let mut why = "no-instance";
        for n in 1..=max_tries {
            let picked = match self.pick(service, key.as_deref(), &tried, deadline) {
                Picked::Try(p) => p,
                Picked::Deadline => {
                    why = "deadline";
                    break;
                }
                Picked::Nothing(at) => {
                    why = "no-instance";
                    attempts.push(json!({"n": n, "instance": null, "admitted_ms": at,
                        "ok": false, "error": "no instance up with its breaker admitting"}));
                    if !self
                        .may_retry(
                            service,
                            n,
                            max_tries,
                            idempotent,
                            maybe_applied,
                            deadline,
                            &config,
                        )
                        .await
                    {
                        break;
                    }
                    continue;
                }
            };
            let Admitted {
                instance,
                addr,
                admitted_in,
                entered: bulkhead_ok,
                at: admitted_ms,
                generation,
            } = picked;
            tried.insert(instance.clone());
            let attempt_span = trace::span_id();
            let start = trace::now_ms();
            let tried_now = if !bulkhead_ok {
                Tried {
                    ok: false,
                    refused: false,
                    maybe_applied: false,
                    status: None,
                    error: Some("bulkhead full".into()),
                    response: None,
                }
            } else {
                let per_try = if self.bugs.no_deadline {
                    config.retry.per_try_timeout_ms
                } else {
                    config
                        .retry
                        .per_try_timeout_ms
                        .min(deadline.saturating_sub(start).max(1))
                };
                let remaining = deadline.saturating_sub(start).max(1);
                self.send(
                    &addr,
                    &method,
                    rest,
                    query,
                    &body,
                    &[
                        ("traceparent", ctx.header_for(&attempt_span)),
                        ("x-timeout-ms", remaining.to_string()),
                        ("x-request-id", request.clone()),
                    ],
                    Duration::from_millis(per_try),
                )
                .await
            };
            let (seq, end) = self.finish(
                service,
                &instance,
                bulkhead_ok,
                tried_now.ok,
                tried_now.refused,
            );
            maybe_applied |= tried_now.maybe_applied;
            let instance_span = tried_now
                .response
                .as_ref()
                .and_then(|(_, _, b)| serde_json::from_slice::<Value>(b).ok())
                .map(|v| v["span"].clone())
                .filter(|s| s.is_object());
            spans.push(
                json!({"trace": ctx.trace, "span": attempt_span, "parent": span,
                "name": format!("{} try {n} -> {instance}", self.id), "node": self.id,
                "start_ms": start, "end_ms": end}),
            );
            let callee = instance_span
                .as_ref()
                .map(|s| json!({"trace": s["trace"], "span": s["span"], "parent": s["parent"]}));
            if let Some(s) = instance_span {
                spans.push(s);
            }
            attempts.push(
                json!({"n": n, "instance": instance, "generation": generation,
                "admitted_ms": admitted_ms,
                "start_ms": start, "end_ms": end,
                "span": attempt_span, "callee_span": callee,
                "ok": tried_now.ok, "status": tried_now.status, "error": tried_now.error,
                "maybe_applied": tried_now.maybe_applied, "admitted_in": admitted_in,
                "result_seq": seq}),
            );
            let ok = tried_now.ok;
            served_by = instance;
            last = Some(tried_now);
            if ok {
                break;
            }
            why = "upstream";
            if !self
                .may_retry(
                    service,
                    n,
                    max_tries,
                    idempotent,
                    maybe_applied,
                    deadline,
                    &config,
                )
                .await
            {
                break;
            }
        }
        let end = trace::now_ms();
        let ok = last.as_ref().is_some_and(|t| t.ok);
        let outcome = if ok { "ok" } else { why };
        spans.insert(
            0,
            json!({"trace": ctx.trace, "span": span, "parent": ctx.parent,
                "name": format!("{} mesh {service}", self.id), "node": self.id,
                "start_ms": arrival, "end_ms": end}),
        );
        log_line!(self.id, "spans {}", Value::Array(spans));
        let n_attempts = attempts.len();
        let record = json!({"request": request, "sidecar": self.id, "service": service,
            "method": method.as_str(), "idempotent": idempotent, "key": key,
            "arrival_ms": arrival, "deadline_ms": deadline, "end_ms": end,
            "outcome": outcome, "attempts": attempts,
            "trace": ctx.trace, "span": span, "parent": ctx.parent});
        {
            let mut books = self.books();
            if books.records.len() >= KEEP_RECORDS {
                books.records.remove(0);
                books.dropped += 1;
            }
            books.records.push(record);
        }
        match last {
            Some(Tried {
                ok: true,
                response: Some((status, ctype, bytes)),
                ..
            }) => {
                let mut r = (status, bytes).into_response();
                let h = r.headers_mut();
                if let Some(ct) = ctype.and_then(|c| c.parse().ok()) {
                    h.insert("content-type", ct);
                }
                if let Ok(v) = served_by.parse() {
                    h.insert("x-mesh-instance", v);
                }
                if let Ok(v) = n_attempts.to_string().parse() {
                    h.insert("x-mesh-attempts", v);
                }
                r
            }
            _ => {
                let (status, message) = match outcome {
                    "deadline" => (
                        StatusCode::GATEWAY_TIMEOUT,
                        format!("deadline of {timeout} ms passed after {n_attempts} tries"),
                    ),
                    "no-instance" => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("no instance of `{service}` is up with its breaker admitting"),
                    ),
                    _ => (
                        StatusCode::BAD_GATEWAY,
                        format!(
                            "{n_attempts} tries failed; last: {}",
                            last.as_ref()
                                .and_then(|t| t.error.clone())
                                .unwrap_or_default()
                        ),
                    ),
                };
                error(status, outcome, message, !maybe_applied, n_attempts)
            }
        }
    }

    /// Picks an instance not yet tried for this request (any, once all were)
    /// among those up whose breaker admits, and lets it in: the breaker
    /// admits it and the bulkhead takes it (or is full). The time is read
    /// under the lock, so it orders with the breakers' transitions.
    fn pick(
        &self,
        service: &str,
        key: Option<&str>,
        tried: &BTreeSet<String>,
        deadline: u64,
    ) -> Picked {
        let mut books = self.books();
        let now = trace::now_ms();
        if now >= deadline && !self.bugs.no_deadline {
            return Picked::Deadline;
        }
        let Books {
            services,
            transitions,
            ..
        } = &mut *books;
        let Some(svc) = services.get_mut(service) else {
            return Picked::Nothing(now);
        };
        let breakers = svc.config.circuit_breaker;
        let usable = |i: &Inst| {
            (i.health.up || self.bugs.ignore_health) && (!breakers || i.breaker.would_admit(now))
        };
        // The retry-storm bug does not steer retries away from what failed.
        let fresh = |id: &String| self.bugs.retry_storm || !tried.contains(id);
        let mut ids: Vec<String> = svc
            .instances
            .iter()
            .filter(|(id, i)| usable(i) && fresh(id))
            .map(|(id, _)| id.clone())
            .collect();
        if ids.is_empty() {
            ids = svc
                .instances
                .iter()
                .filter(|(_, i)| usable(i))
                .map(|(id, _)| id.clone())
                .collect();
        }
        let candidates: Vec<Candidate> = ids
            .iter()
            .map(|id| {
                let i = &svc.instances[id];
                Candidate {
                    id: id.clone(),
                    weight: svc.config.weights.get(id).copied().unwrap_or(i.weight),
                    outstanding: i.bulkhead.in_flight(),
                }
            })
            .collect();
        let Some(at) = svc
            .balancer
            .pick(&candidates, key, (trace::random(), trace::random()))
        else {
            return Picked::Nothing(now);
        };
        let id = candidates[at].id.clone();
        let Some(inst) = svc.instances.get_mut(&id) else {
            return Picked::Nothing(now);
        };
        let before = inst.breaker.state();
        let (admitted, change) = if breakers {
            inst.breaker.admit(now)
        } else {
            (true, None)
        };
        if let Some(t) = change {
            let e = transition(&self.id, service, &id, inst.generation, &t, inst.results);
            log_line!(self.id, "breaker {e}");
            transitions.push(e);
        }
        if !admitted {
            return Picked::Nothing(now);
        }
        let admitted_in = if before == BreakerState::Open {
            BreakerState::HalfOpen
        } else {
            before
        };
        let entered = inst.bulkhead.try_enter();
        if !entered {
            // The try goes nowhere: it must not hold a half-open probe slot.
            inst.breaker.release();
        }
        inst.requests += 1;
        Picked::Try(Admitted {
            instance: id,
            addr: inst.addr.clone(),
            admitted_in,
            entered,
            at: now,
            generation: inst.generation,
        })
    }

    /// Ends a try: the bulkhead lets it out and the breaker hears the result
    /// (a try the bulkhead refused never reached the instance: the breaker
    /// hears nothing). Answers the breaker's result number.
    fn finish(
        &self,
        service: &str,
        id: &str,
        entered: bool,
        ok: bool,
        refused: bool,
    ) -> (Option<u64>, u64) {
        let mut books = self.books();
        let now = trace::now_ms();
        let Books {
            services,
            transitions,
            health_log,
            ..
        } = &mut *books;
        let Some(svc) = services.get_mut(service) else {
            return (None, now);
        };
        let probes_to_fail = svc.config.health.failures;
        let breakers = svc.config.circuit_breaker;
        let Some(inst) = svc.instances.get_mut(id) else {
            return (None, now);
        };
        if refused && inst.health.up {
            // Nothing listens there: down at once, without waiting for the
            // probes (passive health checking); probes bring it back.
            inst.health.up = false;
            inst.health.failed = probes_to_fail;
            inst.health.passed = 0;
            let e = json!({"sidecar": self.id, "service": service, "instance": id,
                "up": false, "at_ms": now, "why": "connection refused", "phi": 0.0});
            log_line!(self.id, "health {e}");
            health_log.push(e);
        }
        if !entered {
            return (None, now);
        }
        inst.bulkhead.leave();
        if !ok {
            inst.failures += 1;
        }
        if !breakers {
            return (None, now);
        }
        inst.results += 1;
        let seq = inst.results;
        if let Some(t) = inst.breaker.record(ok, now) {
            let e = transition(&self.id, service, id, inst.generation, &t, seq);
            log_line!(self.id, "breaker {e}");
            transitions.push(e);
        }
        (Some(seq), now)
    }

    /// Whether another try may follow try `n`, and waits the backoff if so.
    #[allow(clippy::too_many_arguments)]
    async fn may_retry(
        &self,
        service: &str,
        n: u32,
        max_tries: u32,
        idempotent: bool,
        maybe_applied: bool,
        deadline: u64,
        config: &MeshConfig,
    ) -> bool {
        if n >= max_tries || (maybe_applied && !idempotent) {
            return false;
        }
        let now = trace::now_ms();
        if !self.bugs.retry_storm {
            let mut books = self.books();
            let Some(svc) = books.services.get_mut(service) else {
                return false;
            };
            if !svc.budget.try_withdraw(now) {
                svc.budget_refused += 1;
                return false;
            }
            svc.retries += 1;
        } else if let Some(svc) = self.books().services.get_mut(service) {
            svc.retries += 1;
        }
        if self.bugs.retry_storm {
            return true;
        }
        let wait = backoff_ms(config.retry.base_ms, config.retry.cap_ms, n, trace::unit());
        if !self.bugs.no_deadline && now + wait >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(wait)).await;
        true
    }

    /// Sends one try to `addr`.
    #[allow(clippy::too_many_arguments)]
    async fn send(
        &self,
        addr: &str,
        method: &Method,
        rest: &str,
        query: Option<&str>,
        body: &Bytes,
        headers: &[(&str, String)],
        timeout: Duration,
    ) -> Tried {
        let url = match query {
            Some(q) => format!("http://{addr}/{rest}?{q}"),
            None => format!("http://{addr}/{rest}"),
        };
        let method =
            reqwest::Method::from_bytes(method.as_str().as_bytes()).unwrap_or(reqwest::Method::GET);
        let mut req = self
            .http
            .request(method, url)
            .timeout(timeout)
            .body(body.clone());
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        if !body.is_empty() {
            req = req.header("content-type", "application/json");
        }
        match req.send().await {
            Ok(r) => {
                let status = r.status().as_u16();
                let ctype = r
                    .headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                match r.bytes().await {
                    Ok(bytes) => {
                        let ok = status < 500;
                        // 503 and 504 from an instance say it did nothing.
                        let definite = ok || status == 503 || status == 504;
                        Tried {
                            ok,
                            refused: false,
                            maybe_applied: !definite,
                            status: Some(status),
                            error: (!ok).then(|| format!("status {status}")),
                            response: Some((
                                StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
                                ctype,
                                bytes,
                            )),
                        }
                    }
                    Err(e) => Tried {
                        ok: false,
                        refused: false,
                        maybe_applied: true,
                        status: Some(status),
                        error: Some(format!("reading the answer: {e}")),
                        response: None,
                    },
                }
            }
            Err(e) => Tried {
                ok: false,
                refused: e.is_connect(),
                maybe_applied: !e.is_connect(),
                status: None,
                error: Some(if e.is_timeout() {
                    format!("no answer within {} ms", timeout.as_millis())
                } else if e.is_connect() {
                    "connection refused".into()
                } else {
                    format!("{e}")
                }),
                response: None,
            },
        }
    }

    /// Every breaker, health and balancer counter (`GET /mesh/state`).
    pub fn state(&self) -> Value {
        let now = trace::now_ms();
        let books = self.books();
        let mut out = serde_json::Map::new();
        for (name, svc) in &books.services {
            let instances: Vec<Value> = svc
                .instances
                .iter()
                .map(|(id, i)| {
                    json!({"instance": id, "addr": i.addr, "weight": i.weight,
                        "up": i.health.up, "phi": (i.health.phi.phi(now) * 100.0).round() / 100.0,
                        "probe_failures": i.health.failed,
                        "breaker": i.breaker.state(), "consecutive_failures": i.breaker.consecutive_failures(),
                        "in_flight": i.bulkhead.in_flight(), "requests": i.requests, "failures": i.failures})
                })
                .collect();
            out.insert(
                name.clone(),
                json!({"balancer": svc.config.balancer, "requests": svc.requests,
                    "retries": svc.retries, "budget_refused": svc.budget_refused,
                    "budget_tokens": (svc.budget.balance() * 100.0).round() / 100.0,
                    "no_instance": svc.no_instance, "instances": instances,
                    "config": svc.config}),
            );
        }
        json!({"sidecar": self.id, "services": out})
    }

    /// Requests from number `from` on (at most `limit`), with every breaker
    /// transition and health change (`GET /mesh/records`).
    pub fn records(&self, from: usize, limit: usize) -> Value {
        let books = self.books();
        let start = from.saturating_sub(books.dropped).min(books.records.len());
        let end = (start + limit).min(books.records.len());
        let configs: serde_json::Map<String, Value> = books
            .services
            .iter()
            .map(|(n, s)| (n.clone(), json!(s.config)))
            .collect();
        json!({"sidecar": self.id, "records": books.records[start..end],
            "next": books.dropped + end, "dropped": books.dropped, "since_ms": self.since_ms,
            "transitions": books.transitions, "health": books.health_log,
            "configs": configs})
    }
}

fn transition(
    sidecar: &str,
    service: &str,
    instance: &str,
    generation: u64,
    t: &super::policy::Transition,
    after_result: u64,
) -> Value {
    json!({"sidecar": sidecar, "service": service, "instance": instance, "generation": generation,
        "from": t.from, "to": t.to, "at_ms": t.at_ms, "after_result": after_result})
}

fn error(
    status: StatusCode,
    code: &str,
    message: String,
    definite: bool,
    tries: usize,
) -> Response {
    let mut r = (
        status,
        axum::Json(
            json!({"error": code, "message": message, "definite": definite, "tries": tries}),
        ),
    )
        .into_response();
    if let Ok(v) = tries.to_string().parse() {
        r.headers_mut().insert("x-mesh-attempts", v);
    }
    r
}
/// Drops the instances of `svc` the registry no longer lists (`seen` is what
/// it lists), except in self-preservation: when more than half would leave at
/// once, a registry that could not renew leases in time (a slow or cut-off
/// majority) is likelier than a mass death, so instances whose probes still
/// pass are kept until the probes say otherwise.
fn forget(sidecar: &str, name: &str, svc: &mut Svc, seen: &BTreeSet<String>) {
    let leaving = svc
        .instances
        .keys()
        .filter(|id| !seen.contains(*id))
        .count();
    let preserve = leaving * 2 > svc.instances.len();
    svc.instances.retain(|id, inst| {
        if seen.contains(id) {
            return true;
        }
        if preserve && inst.health.up {
            log_line!(
                sidecar,
                "mesh: {name}/{id} unlisted but passing its probes: kept (self-preservation)"
            );
            return true;
        }
        log_line!(sidecar, "mesh: {name}/{id} left (lease lapsed)");
        false
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(up: &[bool]) -> Svc {
        let config = MeshConfig::default();
        let mut s = Svc {
            balancer: Balancer::new(config.balancer),
            budget: RetryBudget::new(config.retry.budget_ratio, config.retry.min_per_sec, 0),
            instances: BTreeMap::new(),
            requests: 0,
            retries: 0,
            budget_refused: 0,
            no_instance: 0,
            config,
        };
        for (i, &up) in up.iter().enumerate() {
            s.instances.insert(
                format!("api{i}"),
                Inst {
                    generation: 1,
                    addr: String::new(),
                    weight: 1,
                    breaker: Breaker::with_bug(s.config.breaker.clone(), false),
                    bulkhead: Bulkhead::new(s.config.max_in_flight),
                    results: 0,
                    health: Health {
                        up,
                        failed: 0,
                        passed: 0,
                        phi: PhiDetector::new(PHI_WINDOW, 20.0),
                        probing: false,
                    },
                    requests: 0,
                    failures: 0,
                },
            );
        }
        s
    }

    fn left(s: &Svc) -> Vec<&str> {
        s.instances.keys().map(String::as_str).collect()
    }

    #[test]
    fn unlisted_instances_leave_unless_most_would_and_their_probes_pass() {
        let listed = |ids: &[&str]| ids.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        // One of three unlisted: it leaves, up or not.
        let mut s = svc(&[true, true, true]);
        forget("n1", "api", &mut s, &listed(&["api1", "api2"]));
        assert_eq!(left(&s), vec!["api1", "api2"]);
        // All unlisted at once (a registry that could not renew leases):
        // those passing their probes stay, the down one goes.
        let mut s = svc(&[true, false, true]);
        forget("n1", "api", &mut s, &listed(&[]));
        assert_eq!(left(&s), vec!["api0", "api2"]);
        // Two of three unlisted, both down: gone.
        let mut s = svc(&[false, false, true]);
        forget("n1", "api", &mut s, &listed(&["api2"]));
        assert_eq!(left(&s), vec!["api2"]);
    }
}
