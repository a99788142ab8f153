//! Fault `comeback`: a leader dies and comes back as leader, its previous life's
//! messages arrive late, and then it is cut off.
//!
//! The leader is killed (SIGKILL) and restarted at once; while another node
//! leads, that node is killed and restarted too, until the first one wins an
//! election again (a flapping node, or a rolling restart that lands badly). The
//! link proxies then deliver old frames again, among them the previous
//! incarnation's appends (its links keep the frames it sent before it died,
//! not the newer ones), which the followers reject in a newer term. Last, the
//! leader is isolated while clients keep talking to it, old frames still
//! crossing its links now and then: a node that let stale replies vouch for
//! its reads serves them from a deposed state while the others elect a leader
//! and write. Needs links that carry whole messages, as `replay` does.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use workloads::{BoxFut, Rng};

use super::{process, Ctx, Fault, Injected};
use crate::net::partition;
use crate::net::proxy::LinkPolicy;

/// How long to keep restarting other leaders before giving up on a comeback.
const REELECT_WITHIN: Duration = Duration::from_secs(6);
/// How long the old messages flow before the leader is cut off.
const REPLAY_FOR: Duration = Duration::from_millis(600);

/// A leader's comeback, then its isolation.
pub struct Comeback;

impl Fault for Comeback {
    fn name(&self) -> &'static str {
        "comeback"
    }

    fn about(&self) -> &'static str {
        "kill and restart the leader, restart other leaders until it leads again, replay its old messages, then isolate it"
    }

    fn runtimes(&self) -> &'static [&'static str] {
        &["process"]
    }

    fn start<'a>(&'a self, ctx: &'a Ctx, rng: &'a mut Rng) -> BoxFut<'a, anyhow::Result<Injected>> {
        Box::pin(async move {
            anyhow::ensure!(
                ctx.net.frames(),
                "comeback needs links that carry whole messages"
            );
            let nodes = ctx.member_ids();
            let Some(first) = ctx.target.leader(&ctx.cfg, &ctx.http, &ctx.members()).await else {
                return Ok(Injected {
                    in_force: "comeback: no leader to restart".into(),
                    value: json!({"leader": null}),
                    nodes: Vec::new(),
                });
            };
            // What this incarnation last sent is what replay will bring back.
            ctx.net.freeze_where(|from, _| from == first);
            process::kill(ctx, std::slice::from_ref(&first)).await?;
            process::restart(ctx, std::slice::from_ref(&first)).await?;
            let mut restarted = vec![first.clone()];
            let began = Instant::now();
            let mut leads_again = false;
            while began.elapsed() < REELECT_WITHIN {
                tokio::time::sleep(Duration::from_millis(60)).await;
                match ctx.target.leader(&ctx.cfg, &ctx.http, &ctx.members()).await {
                    Some(l) if l == first => {
                        leads_again = true;
                        break;
                    }
                    Some(other) => {
                        process::kill(ctx, std::slice::from_ref(&other)).await?;
                        process::restart(ctx, std::slice::from_ref(&other)).await?;
                        restarted.push(other);
                    }
                    None => {}
                }
            }
            let replay = 0.2 + 0.2 * rng.unit();
            ctx.net.degrade(&LinkPolicy {
                replay,
                ..LinkPolicy::default()
            })?;
            tokio::time::sleep(REPLAY_FOR).await;
            // Cut off, but old frames still cross both ways now and then: its
            // previous incarnation's appends reach the others, and their old
            // replies reach it (so it may keep believing it leads, but learns
            // nothing new), while the others elect a leader of their own.
            ctx.net
                .replay_where(replay, |from, to| to == first || from == first);
            let grudge = partition::isolate(&first, &nodes);
            ctx.net.partition(&grudge)?;
            Ok(Injected {
                in_force: format!(
                    "comeback of {first} ({}), replay {:.0}%, then isolated",
                    if leads_again {
                        "leads again"
                    } else {
                        "did not lead again"
                    },
                    replay * 100.0
                ),
                value: json!({
                    "leader": first,
                    "restarted": restarted,
                    "leads_again": leads_again,
                    "replay": replay,
                    "grudge": grudge,
                }),
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
