//! Fault `partition`: the proxies drop every frame on the cut links, in a
//! shape drawn from `--partitions` (`leader` isolates the node that leads).

use serde_json::{json, Value};
use workloads::{BoxFut, Rng};

use super::{ids, Ctx, Fault, Injected};
use crate::net::partition;

/// Cuts links between groups of nodes.
pub struct Partition;

impl Fault for Partition {
    fn name(&self) -> &'static str {
        "partition"
    }

    fn about(&self) -> &'static str {
        "cut links between groups of nodes (shapes: one, halves, majority, bridge, ring, leader; --partitions picks)"
    }

    fn start<'a>(&'a self, ctx: &'a Ctx, rng: &'a mut Rng) -> BoxFut<'a, anyhow::Result<Injected>> {
        Box::pin(async move {
            let nodes = ids(&ctx.nodes);
            let all: Vec<String> = partition::SHAPES.iter().map(|s| s.to_string()).collect();
            let shapes = if ctx.shapes.is_empty() {
                &all
            } else {
                &ctx.shapes
            };
            let shape = rng.pick(shapes).map_or("halves", String::as_str);
            let grudge = match shape {
                "leader" => match ctx.target.leader(&ctx.cfg, &ctx.http, &ctx.nodes).await {
                    Some(l) => partition::isolate(&l, &nodes),
                    None => partition::grudge("one", &nodes, rng),
                },
                _ => partition::grudge(shape, &nodes, rng),
            };
            ctx.net.partition(&grudge)?;
            Ok(Injected {
                in_force: format!("partition {shape}: {}", partition::describe(&grudge)),
                value: json!({"shape": shape, "grudge": grudge}),
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
