//! Fault `orphan-change`: a membership change that only a deposed leader ever
//! holds. The leader is cut off from every peer and, at once, asked to remove
//! one of its followers: it appends the change but can replicate it to no one.
//! The others elect a new leader, whose entries take that index; when the
//! partition heals, the old leader must drop the change from its log and fall
//! back to the configuration that is left, the initial one if none is. Nothing
//! was acknowledged, so a correct cluster ends as if the change never happened.

use std::time::Duration;

use serde_json::{json, Value};
use workloads::{BoxFut, Rng};

use super::{Ctx, Fault, Injected};
use crate::net::partition;

/// How long the cut-off leader is given to answer the change (it cannot commit it).
const ANSWER_WITHIN: Duration = Duration::from_millis(1500);

/// A membership change stranded on a leader that is cut off.
pub struct OrphanChange;

impl Fault for OrphanChange {
    fn name(&self) -> &'static str {
        "orphan-change"
    }

    fn about(&self) -> &'static str {
        "cut the leader off, then ask it to remove a follower: a change no one else ever sees, truncated after the heal"
    }

    fn start<'a>(&'a self, ctx: &'a Ctx, rng: &'a mut Rng) -> BoxFut<'a, anyhow::Result<Injected>> {
        Box::pin(async move {
            let nodes = ctx.member_ids();
            // A cut that lands after the leader already stepped down (a slow
            // machine) strands nothing: heal and try again, up to three times.
            let mut tries = 0;
            let (leader, victim, grudge, status) = loop {
                tries += 1;
                let Some(leader) = ctx.target.leader(&ctx.cfg, &ctx.http, &ctx.members()).await
                else {
                    if tries < 3 {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                    return Ok(Injected {
                        in_force: "orphan-change: no leader".into(),
                        value: json!({"leader": null}),
                        nodes: Vec::new(),
                    });
                };
                let followers: Vec<&String> = nodes.iter().filter(|n| **n != leader).collect();
                let victim = followers[rng.below(followers.len() as u64) as usize].clone();
                let grudge = partition::isolate(&leader, &nodes);
                ctx.net.partition(&grudge)?;
                let url = ctx
                    .nodes
                    .iter()
                    .find(|n| n.id == leader)
                    .map(|n| format!("{}/cluster/leave", n.client_url));
                let mut status = None;
                if let Some(url) = url {
                    let sent = ctx
                        .http
                        .post(url)
                        .json(&json!({"id": victim}))
                        .timeout(ANSWER_WITHIN)
                        .send()
                        .await;
                    status = sent.ok().map(|r| r.status().as_u16());
                }
                // 421: it no longer led when the change arrived.
                if status != Some(421) || tries >= 3 {
                    break (leader, victim, grudge, status);
                }
                ctx.net.heal()?;
                tokio::time::sleep(Duration::from_millis(500)).await;
            };
            Ok(Injected {
                in_force: format!("{leader} cut off, asked to remove {victim}"),
                value: json!({"leader": leader, "remove": victim, "status": status, "grudge": grudge, "tries": tries}),
                nodes: Vec::new(),
            })
        })
    }

    fn heal<'a>(&'a self, ctx: &'a Ctx, _injected: Injected) -> BoxFut<'a, anyhow::Result<Value>> {
        Box::pin(async move {
            ctx.net.heal()?;
            Ok(Value::Null)
        })
    }
}
