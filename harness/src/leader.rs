//! Which node leads now, asked the way each target tells it. The partition
//! nemesis's `leader` shape and the bench's failover trials both need it.

use std::time::Duration;

use serde_json::{json, Value};

use crate::runtime::NodeAddrs;

/// How long one node may take to say whether it leads; a paused or cut-off
/// node must not hold up the nemesis.
const ASK: Duration = Duration::from_secs(1);

/// The node that says it leads, if one answers so: the builtin system's
/// `/cluster/status` role, etcd's maintenance status (its member id equals
/// the leader id), the primary Redis Sentinel reports, and n1 for the plain
/// Redis target (a fixed primary). Maelstrom nodes do not tell: `None`.
pub async fn leader(target: &str, http: &reqwest::Client, nodes: &[NodeAddrs]) -> Option<String> {
    match target {
        "redis-sentinel" => crate::sentinel::primaries(nodes).await.into_iter().next(),
        "redis" => nodes.first().map(|n| n.id.clone()),
        "maelstrom" => None,
        _ => {
            for n in nodes {
                if says_it_leads(target, http, n).await == Some(true) {
                    return Some(n.id.clone());
                }
            }
            None
        }
    }
}

/// Whether node `n` says it leads; `None` when it does not answer.
async fn says_it_leads(target: &str, http: &reqwest::Client, n: &NodeAddrs) -> Option<bool> {
    let request = if target == "etcd" {
        http.post(format!("{}/v3/maintenance/status", n.client_url))
            .json(&json!({}))
    } else {
        http.get(format!("{}/cluster/status", n.client_url))
    };
    let s: Value = request.timeout(ASK).send().await.ok()?.json().await.ok()?;
    Some(if target == "etcd" {
        s["leader"].is_string() && s["leader"] == s["header"]["member_id"]
    } else {
        s["role"] == "leader"
    })
}
