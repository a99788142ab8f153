//! Fault `pause`: SIGSTOP one node or a majority; SIGCONT at heal.

use serde_json::{json, Value};
use workloads::{BoxFut, Rng};

use super::{pick_nodes, process, Ctx, Fault, Injected};

/// Freezes nodes.
pub struct Pause;

impl Fault for Pause {
    fn name(&self) -> &'static str {
        "pause"
    }

    fn about(&self) -> &'static str {
        "SIGSTOP one node or a majority, SIGCONT at heal"
    }

    fn start<'a>(&'a self, ctx: &'a Ctx, rng: &'a mut Rng) -> BoxFut<'a, anyhow::Result<Injected>> {
        Box::pin(async move {
            let t = pick_nodes(rng, &ctx.process_targets(), false);
            process::pause(ctx, &t).await?;
            Ok(Injected {
                in_force: format!("paused {}", t.join(",")),
                value: json!(t),
                nodes: t,
            })
        })
    }

    fn heal<'a>(&'a self, ctx: &'a Ctx, injected: Injected) -> BoxFut<'a, anyhow::Result<Value>> {
        Box::pin(async move {
            process::resume(ctx, &injected.nodes).await?;
            Ok(json!(injected.nodes))
        })
    }
}
