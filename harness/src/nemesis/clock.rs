//! Clock faults: skew each node's clock through its admin API.

use std::collections::BTreeMap;

use serde_json::json;
use workloads::Rng;

use super::Ctx;

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
