//! Fault `brownout`: application-service instances stay up and keep passing
//! health probes, but fail a share of requests, answer slowly, or both; the
//! mesh's breakers, not its health checks, must route around them.

use serde_json::{json, Value};
use workloads::{BoxFut, Rng};

use super::{pick_nodes, Ctx, Fault, Injected};

/// Browns out service instances through their admin switch.
pub struct Brownout;

impl Fault for Brownout {
    fn name(&self) -> &'static str {
        "brownout"
    }

    fn about(&self) -> &'static str {
        "mesh workloads: one instance or a majority fail 50-100% of requests, or answer 200-800 ms late, or both; cleared at heal"
    }

    fn runtimes(&self) -> &'static [&'static str] {
        &["process"]
    }

    fn start<'a>(&'a self, ctx: &'a Ctx, rng: &'a mut Rng) -> BoxFut<'a, anyhow::Result<Injected>> {
        Box::pin(async move {
            if ctx.instances.is_empty() {
                anyhow::bail!("--nemesis brownout needs a workload with service instances (mesh)");
            }
            let t = pick_nodes(rng, &ctx.instances, false);
            let roll = rng.below(3);
            let error_rate = if roll == 1 {
                0.0
            } else {
                0.5 + 0.5 * rng.unit()
            };
            let extra_ms = if roll == 0 { 0 } else { 200 + rng.below(601) };
            let body = json!({"error_rate": (error_rate * 100.0_f64).round() / 100.0, "extra_ms": extra_ms});
            for id in &t {
                if !super::admin_post(ctx, id, "/admin/brownout", body.clone()).await {
                    // A paused or killed instance cannot take it; say so in the history.
                    ctx.recorder
                        .nemesis("brownout-refused", json!({"node": id}));
                }
            }
            Ok(Injected {
                in_force: format!("brownout {} ({body})", t.join(",")),
                value: json!({"nodes": t, "brownout": body}),
                nodes: t,
            })
        })
    }

    fn heal<'a>(&'a self, ctx: &'a Ctx, injected: Injected) -> BoxFut<'a, anyhow::Result<Value>> {
        Box::pin(async move {
            clear(ctx, &injected.nodes).await;
            Ok(json!(injected.nodes))
        })
    }
}

async fn clear(ctx: &Ctx, ids: &[String]) {
    for id in ids {
        if let Some(n) = ctx.nodes.iter().find(|n| n.id == *id) {
            let _ = ctx
                .http
                .delete(format!("{}/admin/brownout", n.admin_url))
                .send()
                .await;
        }
    }
}

/// Clears every instance's brownout.
pub async fn reset(ctx: &Ctx) {
    clear(ctx, &ctx.instances).await;
}
