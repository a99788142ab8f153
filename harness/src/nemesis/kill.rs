//! Fault `kill`: SIGKILL one node, a majority or all of them; restart them
//! on the same data at heal.

use serde_json::{json, Value};
use workloads::{BoxFut, Rng};

use super::{pick_nodes, process, Ctx, Fault, Injected};

/// Kills nodes without warning.
pub struct Kill;

impl Fault for Kill {
    fn name(&self) -> &'static str {
        "kill"
    }

    fn about(&self) -> &'static str {
        "SIGKILL one node (40%), a majority (35%) or all (25%); restart them at heal"
    }

    fn start<'a>(&'a self, ctx: &'a Ctx, rng: &'a mut Rng) -> BoxFut<'a, anyhow::Result<Injected>> {
        Box::pin(async move {
            let t = pick_nodes(rng, &ctx.process_targets(), true);
            process::kill(ctx, &t).await?;
            Ok(Injected {
                in_force: format!("killed {}", t.join(",")),
                value: json!(t),
                nodes: t,
            })
        })
    }

    fn heal<'a>(&'a self, ctx: &'a Ctx, injected: Injected) -> BoxFut<'a, anyhow::Result<Value>> {
        Box::pin(async move {
            process::restart(ctx, &injected.nodes).await?;
            Ok(json!(injected.nodes))
        })
    }
}
