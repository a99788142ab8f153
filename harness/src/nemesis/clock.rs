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
    for n in &ctx.nodes {
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
    for n in &ctx.nodes {
        let _ = ctx
            .http
            .post(format!("{}/admin/clock", n.admin_url))
            .json(&json!({"offset_ms": 0}))
            .send()
            .await;
    }
}
