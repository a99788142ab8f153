//! Fault `crash-points` (as etcd's failpoints): arms a named point of the
//! transaction coordinator (`after-prepare`, `after-decision`,
//! `after-first-commit`) or, under the saga workload, of the saga
//! orchestrator (`saga-after-reserve`, `saga-before-recording-charge`) on one
//! or two nodes through their admin API; a node exits when a transaction or
//! saga it drives reaches the point. At heal the points are disarmed and
//! every node that exited is started again.

use serde_json::{json, Value};
use workloads::{BoxFut, Rng};

use super::{process, Ctx, Fault, Injected};

/// The coordinator's crash points (faultline-node's own list).
pub const POINTS: &[&str] = &["after-prepare", "after-decision", "after-first-commit"];
/// The saga orchestrator's: after recording a step, and after acting before
/// recording (the next driver repeats the step under its idempotency key).
pub const SAGA_POINTS: &[&str] = &["saga-after-reserve", "saga-before-recording-charge"];

/// Arms crash points.
pub struct CrashPoints;

impl Fault for CrashPoints {
    fn name(&self) -> &'static str {
        "crash-points"
    }

    fn about(&self) -> &'static str {
        "--shards: a node exits at a named point of two-phase commit (after-prepare, after-decision, after-first-commit); --workload saga: of the saga orchestrator (saga-after-reserve, saga-before-recording-charge); armed on one or two nodes, restarted at heal"
    }

    fn start<'a>(&'a self, ctx: &'a Ctx, rng: &'a mut Rng) -> BoxFut<'a, anyhow::Result<Injected>> {
        Box::pin(async move {
            let points = if ctx.cfg.workload == "saga" {
                SAGA_POINTS
            } else {
                POINTS
            };
            let point = points[rng.below(points.len() as u64) as usize];
            let mut all = ctx.member_ids();
            let mut armed = Vec::new();
            // Sagas are driven where clients send them, the leader: arm it.
            if ctx.cfg.workload == "saga" {
                if let Some(leader) = ctx.target.leader(&ctx.cfg, &ctx.http, &ctx.members()).await {
                    all.retain(|n| *n != leader);
                    if arm(ctx, &leader, point).await {
                        armed.push(leader);
                    }
                }
            }
            for _ in 0..1 + rng.below(2) {
                if all.is_empty() {
                    break;
                }
                let id = all.swap_remove(rng.below(all.len() as u64) as usize);
                if arm(ctx, &id, point).await {
                    armed.push(id);
                }
            }
            Ok(Injected {
                in_force: format!("{point} armed on {}", armed.join(",")),
                value: json!({"point": point, "nodes": armed}),
                nodes: armed,
            })
        })
    }

    fn heal<'a>(&'a self, ctx: &'a Ctx, injected: Injected) -> BoxFut<'a, anyhow::Result<Value>> {
        Box::pin(async move {
            // A node that did not reach its point keeps running, disarmed; one
            // that did is started again (a no-op for a running node).
            for id in &injected.nodes {
                arm(ctx, id, "none").await;
            }
            process::restart(ctx, &injected.nodes).await?;
            Ok(json!(injected.nodes))
        })
    }
}

/// Arms `point` on `id` (`none` disarms); whether the node took it.
async fn arm(ctx: &Ctx, id: &str, point: &str) -> bool {
    super::admin_post(ctx, id, "/admin/crash-points", json!({ "point": point })).await
}
