//! Disk faults, through the lazy file system the process runtime mounts under
//! each node when one of them is asked for (`runtime/lazyfs.rs`):
//! `lose-unsynced` (a power loss: what was written but never synced is gone)
//! and `slow-disk` (every fsync waits).

use std::collections::BTreeMap;

use serde_json::{json, Value};
use workloads::{BoxFut, Rng};

use super::{pick_nodes, process, Ctx, Fault, Injected};

/// Faults that need every node's data behind a lazy disk.
pub const NEEDS_LAZY_DISKS: &[&str] = &["lose-unsynced", "slow-disk"];

/// Power loss: kill nodes and drop their unsynced writes; restart at heal.
pub struct LoseUnsynced;

impl Fault for LoseUnsynced {
    fn name(&self) -> &'static str {
        "lose-unsynced"
    }

    fn about(&self) -> &'static str {
        "SIGKILL one node, a majority or all, and drop what they wrote but never fsynced (half the time a seeded part survives, the last write torn at a page); restart at heal"
    }

    fn runtimes(&self) -> &'static [&'static str] {
        &["process"]
    }

    fn start<'a>(&'a self, ctx: &'a Ctx, rng: &'a mut Rng) -> BoxFut<'a, anyhow::Result<Injected>> {
        Box::pin(async move {
            let hit = pick_nodes(rng, &ctx.member_ids(), true);
            let mut lost = BTreeMap::new();
            {
                let mut rt = ctx.runtime.lock().await;
                for id in &hit {
                    let tear = (rng.below(2) == 0).then(|| rng.below(u32::MAX as u64) + 1);
                    let mut report = rt.lose_unsynced(id, tear).await?;
                    report["torn"] = json!(tear.is_some());
                    lost.insert(id.clone(), report);
                }
            }
            let bytes: u64 = lost
                .values()
                .map(|r| r["lost_bytes"].as_u64().unwrap_or(0))
                .sum();
            Ok(Injected {
                in_force: format!(
                    "power lost on {} ({bytes} unsynced bytes gone)",
                    hit.join(",")
                ),
                value: json!(lost),
                nodes: hit,
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

/// Slow fsync on some nodes.
pub struct SlowDisk;

impl Fault for SlowDisk {
    fn name(&self) -> &'static str {
        "slow-disk"
    }

    fn about(&self) -> &'static str {
        "make every fsync of one node or a majority wait 20-400 ms; normal again at heal"
    }

    fn runtimes(&self) -> &'static [&'static str] {
        &["process"]
    }

    fn start<'a>(&'a self, ctx: &'a Ctx, rng: &'a mut Rng) -> BoxFut<'a, anyhow::Result<Injected>> {
        Box::pin(async move {
            let hit = pick_nodes(rng, &ctx.member_ids(), false);
            let ms = 20 + rng.below(381);
            let mut rt = ctx.runtime.lock().await;
            for id in &hit {
                rt.slow_disk(id, ms).await?;
            }
            Ok(Injected {
                in_force: format!("fsync +{ms} ms on {}", hit.join(",")),
                value: json!({"nodes": hit, "fsync_ms": ms}),
                nodes: hit,
            })
        })
    }

    fn heal<'a>(&'a self, ctx: &'a Ctx, injected: Injected) -> BoxFut<'a, anyhow::Result<Value>> {
        Box::pin(async move {
            let mut rt = ctx.runtime.lock().await;
            for id in &injected.nodes {
                rt.slow_disk(id, 0).await?;
            }
            Ok(json!(injected.nodes))
        })
    }
}
