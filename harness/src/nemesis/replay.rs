//! Fault `replay`: every link proxy keeps a window of the frames it carried
//! (512, across connections and restarts of the sender) and, for a while,
//! delivers old ones again among the new: a message from an earlier term, or
//! from a previous incarnation of a node that has since been elected again.
//! Raft must shrug all of them off. Seeded like every link decision.

use serde_json::{json, Value};
use workloads::{BoxFut, Rng};

use super::{Ctx, Fault, Injected};
use crate::net::proxy::LinkPolicy;

/// Delivers old messages again.
pub struct Replay;

impl Fault for Replay {
    fn name(&self) -> &'static str {
        "replay"
    }

    fn about(&self) -> &'static str {
        "deliver old messages again (10-30% of frames bring back one of the link's last 512, also from before a restart)"
    }

    fn runtimes(&self) -> &'static [&'static str] {
        &["process"]
    }

    fn start<'a>(&'a self, ctx: &'a Ctx, rng: &'a mut Rng) -> BoxFut<'a, anyhow::Result<Injected>> {
        Box::pin(async move {
            anyhow::ensure!(
                ctx.net.frames(),
                "replay needs links that carry whole messages"
            );
            let shape = LinkPolicy {
                replay: 0.1 + 0.2 * rng.unit(),
                ..LinkPolicy::default()
            };
            ctx.net.degrade(&shape)?;
            Ok(Injected {
                in_force: format!("replay {:.0}%", shape.replay * 100.0),
                value: json!({"replay": shape.replay, "replayed_before": ctx.net.replayed()}),
                nodes: Vec::new(),
            })
        })
    }

    fn heal<'a>(&'a self, ctx: &'a Ctx, _injected: Injected) -> BoxFut<'a, anyhow::Result<Value>> {
        Box::pin(async move {
            ctx.net.heal()?;
            Ok(json!({"replayed": ctx.net.replayed()}))
        })
    }
}
