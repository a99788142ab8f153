//! Clock faults: skew each node's clock through its admin API.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use workloads::{BoxFut, Rng};

use super::{Ctx, Fault, Injected};

/// Skews node clocks.
pub struct Clock;

impl Fault for Clock {
    fn name(&self) -> &'static str {
        "clock"
    }

    fn about(&self) -> &'static str {
        "skew node clocks by up to ±2 s through the admin API"
    }

    fn start<'a>(&'a self, ctx: &'a Ctx, rng: &'a mut Rng) -> BoxFut<'a, anyhow::Result<Injected>> {
        Box::pin(async move {
            let offsets = skew(ctx, rng).await;
            Ok(Injected {
                in_force: "clocks skewed".into(),
                value: json!(offsets),
                nodes: Vec::new(),
            })
        })
    }

    fn heal<'a>(&'a self, ctx: &'a Ctx, _injected: Injected) -> BoxFut<'a, anyhow::Result<Value>> {
        Box::pin(async move {
            reset(ctx).await;
            Ok(Value::Null)
        })
    }
}

/// Gives every node a random offset in ±2 s; returns the offsets set.
pub async fn skew(ctx: &Ctx, rng: &mut Rng) -> BTreeMap<String, i64> {
    let mut set = BTreeMap::new();
    for n in &ctx.members() {
        let offset = rng.below(4001) as i64 - 2000;
        let ok = ctx
            .http
            .post(format!("{}/admin/clock", n.admin_url))
            .json(&json!({"offset_ms": offset}))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ok {
            set.insert(n.id.clone(), offset);
        }
    }
    set
}

/// Puts every reachable node's clock back to true time.
pub async fn reset(ctx: &Ctx) {
    for n in &ctx.members() {
        let _ = ctx
            .http
            .post(format!("{}/admin/clock", n.admin_url))
            .json(&json!({"offset_ms": 0}))
            .send()
            .await;
    }
}

/// Jumps node clocks far: forward or back by 5 s to 2 min.
pub struct ClockBump;

impl Fault for ClockBump {
    fn name(&self) -> &'static str {
        "clock-bump"
    }

    fn about(&self) -> &'static str {
        "jump the clocks of one node or a majority forward or back by 5-120 s (admin API); reset at heal"
    }

    fn start<'a>(&'a self, ctx: &'a Ctx, rng: &'a mut Rng) -> BoxFut<'a, anyhow::Result<Injected>> {
        Box::pin(async move {
            let hit = super::pick_nodes(rng, &ctx.member_ids(), false);
            let mut bumps = BTreeMap::new();
            for id in &hit {
                let size = 5_000 + rng.below(115_001) as i64;
                let by = if rng.below(2) == 0 { size } else { -size };
                if post_clock(ctx, id, json!({"bump_ms": by})).await {
                    bumps.insert(id.clone(), by);
                }
            }
            Ok(Injected {
                in_force: format!("clocks jumped on {}", hit.join(",")),
                value: json!(bumps),
                nodes: Vec::new(),
            })
        })
    }

    fn heal<'a>(&'a self, ctx: &'a Ctx, _injected: Injected) -> BoxFut<'a, anyhow::Result<Value>> {
        Box::pin(async move {
            reset(ctx).await;
            Ok(Value::Null)
        })
    }
}

/// How long a strobe lasts, and how often it flips.
const STROBE: std::time::Duration = std::time::Duration::from_millis(1500);
const FLIP: std::time::Duration = std::time::Duration::from_millis(20);

/// Makes node clocks oscillate quickly between ahead and behind.
pub struct ClockStrobe;

impl Fault for ClockStrobe {
    fn name(&self) -> &'static str {
        "clock-strobe"
    }

    fn about(&self) -> &'static str {
        "flip the clocks of one node or a majority between +d and -d (d 0.1-2 s) every 20 ms for 1.5 s"
    }

    fn start<'a>(&'a self, ctx: &'a Ctx, rng: &'a mut Rng) -> BoxFut<'a, anyhow::Result<Injected>> {
        Box::pin(async move {
            let hit = super::pick_nodes(rng, &ctx.member_ids(), false);
            let amplitude: BTreeMap<String, i64> = hit
                .iter()
                .map(|id| (id.clone(), 100 + rng.below(1901) as i64))
                .collect();
            let until = std::time::Instant::now() + STROBE;
            let mut flips = 0u64;
            while std::time::Instant::now() < until {
                let sign = if flips.is_multiple_of(2) { 1 } else { -1 };
                for (id, d) in &amplitude {
                    post_clock(ctx, id, json!({"offset_ms": sign * d})).await;
                }
                flips += 1;
                tokio::time::sleep(FLIP).await;
            }
            reset(ctx).await;
            Ok(Injected {
                in_force: format!("clocks strobed on {}", hit.join(",")),
                value: json!({"amplitude_ms": amplitude, "flips": flips}),
                nodes: Vec::new(),
            })
        })
    }

    /// Nothing left to heal: the clocks were reset when the strobe ended.
    fn heal<'a>(&'a self, _ctx: &'a Ctx, _injected: Injected) -> BoxFut<'a, anyhow::Result<Value>> {
        Box::pin(async { Ok(Value::Null) })
    }
}

/// Posts a clock change to node `id`'s admin API; true if it was taken.
async fn post_clock(ctx: &Ctx, id: &str, body: Value) -> bool {
    let Some(n) = ctx.nodes.iter().find(|n| n.id == id) else {
        return false;
    };
    ctx.http
        .post(format!("{}/admin/clock", n.admin_url))
        .json(&body)
        .timeout(std::time::Duration::from_secs(1))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}
