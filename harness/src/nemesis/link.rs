//! Link faults carried out by the proxies: delay with jitter and duplication, loss.

use std::time::Duration;

use serde_json::{json, Value};
use workloads::{BoxFut, Rng};

use super::{Ctx, Fault, Injected};
use crate::net::proxy::LinkPolicy;

/// Delays (with jitter, so messages reorder) and duplicates messages.
pub struct Delay;

impl Fault for Delay {
    fn name(&self) -> &'static str {
        "delay"
    }

    fn about(&self) -> &'static str {
        "delay messages 5-50 ms with up to 100 ms jitter (reordering), duplicate 5%"
    }

    fn start<'a>(&'a self, ctx: &'a Ctx, rng: &'a mut Rng) -> BoxFut<'a, anyhow::Result<Injected>> {
        Box::pin(async move {
            let shape = delay(rng);
            ctx.net.degrade(&shape)?;
            Ok(Injected {
                in_force: format!("delay {:?}+{:?} jitter", shape.delay, shape.jitter),
                value: json!({"delay_ms": shape.delay.as_millis() as u64, "jitter_ms": shape.jitter.as_millis() as u64, "duplicate": shape.duplicate}),
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

/// Drops a share of the messages on every link.
pub struct Loss;

impl Fault for Loss {
    fn name(&self) -> &'static str {
        "loss"
    }

    fn about(&self) -> &'static str {
        "drop 10-40% of messages on every link"
    }

    fn start<'a>(&'a self, ctx: &'a Ctx, rng: &'a mut Rng) -> BoxFut<'a, anyhow::Result<Injected>> {
        Box::pin(async move {
            let shape = loss(rng);
            ctx.net.degrade(&shape)?;
            Ok(Injected {
                in_force: format!("loss {:.0}%", shape.loss * 100.0),
                value: json!({"loss": shape.loss}),
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

/// A random delay shape: 5-50 ms, jitter up to 100 ms, 5% duplicates.
pub fn delay(rng: &mut Rng) -> LinkPolicy {
    LinkPolicy {
        delay: Duration::from_millis(5 + rng.below(46)),
        jitter: Duration::from_millis(rng.below(101)),
        duplicate: 0.05,
        ..LinkPolicy::default()
    }
}

/// A random loss rate of 10-40%.
pub fn loss(rng: &mut Rng) -> LinkPolicy {
    LinkPolicy {
        loss: 0.1 + 0.3 * rng.unit(),
        ..LinkPolicy::default()
    }
}
