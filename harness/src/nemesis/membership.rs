//! Fault `membership`: a node is removed from the cluster through the leader's
//! `POST /cluster/leave` (the leader itself a third of the time) and added back
//! with `POST /cluster/join` at heal, while the other faults run. The removed
//! node keeps running, outside the configuration, until it is added again and
//! catches up; a change the cluster refuses (409: it would leave no reachable
//! quorum; 503: another change is still in flight) is recorded as refused.

use std::time::Duration;

use serde_json::{json, Value};
use workloads::{BoxFut, Rng};

use super::{Ctx, Fault, Injected};

/// How many times a change is tried (following `421` leader hints, waiting out `503`).
const TRIES: usize = 20;

/// Removes a member and adds it back.
pub struct Membership;

impl Fault for Membership {
    fn name(&self) -> &'static str {
        "membership"
    }

    fn about(&self) -> &'static str {
        "remove a node (the leader a third of the time) through /cluster/leave; add it back at heal"
    }

    fn start<'a>(&'a self, ctx: &'a Ctx, rng: &'a mut Rng) -> BoxFut<'a, anyhow::Result<Injected>> {
        Box::pin(async move {
            let leader = ctx.target.leader(&ctx.cfg, &ctx.http, &ctx.members()).await;
            let all = ctx.member_ids();
            let victim = match &leader {
                Some(l) if rng.below(3) == 0 => l.clone(),
                _ => {
                    let others: Vec<&String> =
                        all.iter().filter(|n| Some(*n) != leader.as_ref()).collect();
                    others[rng.below(others.len() as u64) as usize].clone()
                }
            };
            // The address the configuration records, to restore the member as it was.
            let addr = member_addr(ctx, leader.as_deref(), &victim).await;
            let (status, answer) = change(ctx, leader, "leave", json!({"id": victim})).await;
            // 404: not a member, as after a retried removal that had committed.
            let removed = matches!(status, Some(200 | 404));
            Ok(Injected {
                in_force: if removed {
                    format!("{victim} removed")
                } else {
                    format!("removal of {victim} refused")
                },
                value: json!({"remove": victim, "status": status, "answer": answer, "addr": addr}),
                nodes: if removed { vec![victim] } else { Vec::new() },
            })
        })
    }

    fn heal<'a>(&'a self, ctx: &'a Ctx, injected: Injected) -> BoxFut<'a, anyhow::Result<Value>> {
        Box::pin(async move {
            let Some(victim) = injected.nodes.first() else {
                return Ok(Value::Null);
            };
            let addr = injected.value["addr"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| "127.0.0.1:1".to_string());
            let leader = ctx.target.leader(&ctx.cfg, &ctx.http, &ctx.members()).await;
            let (status, answer) =
                change(ctx, leader, "join", json!({"id": victim, "addr": addr})).await;
            Ok(json!({"add": victim, "status": status, "answer": answer}))
        })
    }
}

/// `victim`'s peer address as the leader's (or any node's) status lists it.
async fn member_addr(ctx: &Ctx, leader: Option<&str>, victim: &str) -> Option<String> {
    let members = ctx.members();
    let mut order: Vec<&crate::runtime::NodeAddrs> = members.iter().collect();
    order.sort_by_key(|n| Some(n.id.as_str()) != leader);
    for n in order {
        let status: Option<Value> = async {
            let r = ctx
                .http
                .get(format!("{}/cluster/status", n.client_url))
                .timeout(Duration::from_secs(1))
                .send()
                .await
                .ok()?;
            r.json().await.ok()
        }
        .await;
        if let Some(a) = status
            .as_ref()
            .and_then(|s| s["member_addrs"][victim].as_str())
        {
            return Some(a.to_string());
        }
    }
    None
}

/// Posts a membership change to the leader, following hints and retrying while
/// the cluster is busy; answers the last status code and body.
async fn change(
    ctx: &Ctx,
    mut leader: Option<String>,
    route: &str,
    body: Value,
) -> (Option<u16>, Value) {
    let mut last = (None, Value::Null);
    let members = ctx.members();
    for attempt in 0..TRIES {
        let target = leader
            .as_deref()
            .and_then(|l| members.iter().find(|n| n.id == l))
            .unwrap_or(&members[attempt % members.len().max(1)]);
        let sent = ctx
            .http
            .post(format!("{}/cluster/{route}", target.client_url))
            .json(&body)
            .timeout(Duration::from_secs(3))
            .send()
            .await;
        let Ok(r) = sent else {
            leader = None;
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let code = r.status().as_u16();
        let answer: Value = r.json().await.unwrap_or(Value::Null);
        last = (Some(code), answer.clone());
        match code {
            200 | 404 | 409 => return last,
            421 => leader = answer["leader"].as_str().map(str::to_string),
            _ => leader = None,
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    last
}
