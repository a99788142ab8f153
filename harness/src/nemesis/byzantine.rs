//! Byzantine faults: up to f PBFT replicas start to lie through their admin
//! API (equivocate, forge batches under the real digest, answer clients
//! wrongly, fall silent, replay old messages, claim a false view).

use serde_json::{json, Value};
use workloads::{BoxFut, Rng};

use super::{Ctx, Fault, Injected};

/// Every behaviour a replica's `/admin/byzantine` takes; the first two only
/// do harm from the primary, so the nemesis gives them to it.
pub const BEHAVIOURS: &[&str] = &[
    "equivocate",
    "wrong-digest",
    "wrong-result",
    "silent",
    "replay",
    "false-view",
];

/// Makes replicas lie.
pub struct Byzantine;

impl Fault for Byzantine {
    fn name(&self) -> &'static str {
        "byzantine"
    }

    fn about(&self) -> &'static str {
        "--consensus pbft: f replicas (the primary first) lie: equivocate, wrong-digest, wrong-result, silent, replay or false-view, by seed or --byzantine"
    }

    fn start<'a>(&'a self, ctx: &'a Ctx, rng: &'a mut Rng) -> BoxFut<'a, anyhow::Result<Injected>> {
        Box::pin(async move {
            let behaviour = match &ctx.cfg.byzantine {
                Some(b) => b.clone(),
                None => BEHAVIOURS[rng.below(BEHAVIOURS.len() as u64) as usize].to_string(),
            };
            let f = (ctx.members().len().max(1) - 1) / 3;
            let mut ids = ctx.member_ids();
            let mut liars = Vec::new();
            if let Some(primary) = ctx.target.leader(&ctx.cfg, &ctx.http, &ctx.members()).await {
                ids.retain(|i| *i != primary);
                liars.push(primary);
            }
            while liars.len() < f && !ids.is_empty() {
                let i = rng.below(ids.len() as u64) as usize;
                liars.push(ids.swap_remove(i));
            }
            liars.truncate(f);
            let mut set = Vec::new();
            for id in &liars {
                if behave(ctx, id, &behaviour).await {
                    set.push(id.clone());
                }
            }
            Ok(Injected {
                in_force: format!("{} {behaviour}", set.join(",")),
                value: json!({"nodes": set, "behaviour": behaviour}),
                nodes: set,
            })
        })
    }

    fn heal<'a>(&'a self, ctx: &'a Ctx, injected: Injected) -> BoxFut<'a, anyhow::Result<Value>> {
        Box::pin(async move {
            for id in &injected.nodes {
                behave(ctx, id, "honest").await;
            }
            Ok(json!(injected.nodes))
        })
    }
}

/// Sets `id`'s behaviour; whether the node took it.
async fn behave(ctx: &Ctx, id: &str, behaviour: &str) -> bool {
    super::admin_post(
        ctx,
        id,
        "/admin/byzantine",
        json!({ "behaviour": behaviour }),
    )
    .await
}

/// Makes every replica honest again (the end of a test).
pub async fn reset(ctx: &Ctx) {
    for n in &ctx.members() {
        behave(ctx, &n.id, "honest").await;
    }
}
