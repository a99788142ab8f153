//! Fault `collide`: elections that collide. Every node is frozen (SIGSTOP)
//! for longer than any election timeout and thawed (SIGCONT) in one go, so
//! every node's election timer has expired and they all campaign in the same
//! instant, as after a whole-cluster stall (a hypervisor pause, a storage
//! hiccup). Split votes are the correct outcome; two leaders in one term are not.

use std::time::Duration;

use serde_json::{json, Value};
use workloads::{BoxFut, Rng};

use super::{process, Ctx, Fault, Injected};

/// How long the cluster stays frozen: three times the longest election timer
/// of the targets that take this fault (the builtin node's 2 x 100 ms).
const FREEZE: Duration = Duration::from_millis(600);

/// Makes every node campaign at once.
pub struct Collide;

impl Fault for Collide {
    fn name(&self) -> &'static str {
        "collide"
    }

    fn about(&self) -> &'static str {
        "SIGSTOP every node past an election timeout, then SIGCONT all at once: elections collide"
    }

    fn start<'a>(
        &'a self,
        ctx: &'a Ctx,
        _rng: &'a mut Rng,
    ) -> BoxFut<'a, anyhow::Result<Injected>> {
        Box::pin(async move {
            let all = ctx.member_ids();
            process::pause(ctx, &all).await?;
            tokio::time::sleep(FREEZE).await;
            process::resume(ctx, &all).await?;
            Ok(Injected {
                in_force: "elections collide".into(),
                value: json!({"frozen_ms": FREEZE.as_millis() as u64, "nodes": all}),
                nodes: Vec::new(),
            })
        })
    }

    /// Nothing left to heal: the nodes were thawed at once.
    fn heal<'a>(&'a self, _ctx: &'a Ctx, _injected: Injected) -> BoxFut<'a, anyhow::Result<Value>> {
        Box::pin(async { Ok(Value::Null) })
    }
}
