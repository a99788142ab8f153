//! Multi-Paxos (`--consensus paxos`) on a cluster of real node processes:
//! takeover, replication, restarts from disk, catch-up and partitions.

mod common;

use common::{wait_for, Cluster};
use serde_json::json;

const ALL3: &[&str] = &["n1", "n2", "n3"];
const PAXOS: &[&str] = &["--consensus", "paxos"];

fn with(extra: &[&'static str]) -> Vec<&'static str> {
    PAXOS.iter().chain(extra).copied().collect()
}

async fn applied_everywhere(c: &Cluster, among: &[&str], target: u64) {
    for id in among {
        wait_for("every node to apply what the leader committed", || async {
            c.status(id)
                .await
                .is_some_and(|s| s["applied_index"].as_u64() >= Some(target))
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_replicates_writes_and_every_node_applies_them() {
    let c = Cluster::start(3, PAXOS).await;
    let leader = c.leader(ALL3).await;
    for i in 0..30 {
        assert_eq!(c.put(&leader, &format!("k{i}"), json!(i)).await.0, 200);
    }
    assert_eq!(c.get(&leader, "k7").await, (200, json!({"value": 7})));
    let follower = ALL3.iter().find(|n| **n != leader).unwrap();
    let (code, body) = c.put(follower, "x", json!(1)).await;
    assert_eq!(code, 421, "{body}");
    assert_eq!(body["leader"], json!(leader));
    let target = c.status(&leader).await.unwrap()["commit_index"]
        .as_u64()
        .unwrap();
    assert!(target >= 30, "commit {target} after 30 writes");
    applied_everywhere(&c, ALL3, target).await;
    let mut leaders = 0;
    for id in ALL3 {
        let s = c.status(id).await.unwrap();
        leaders += usize::from(s["role"] == "leader");
    }
    assert_eq!(leaders, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_is_replaced_with_a_higher_ballot_and_no_write_is_lost() {
    let mut c = Cluster::start(3, PAXOS).await;
    let old = c.leader(ALL3).await;
    let old_round = c.status(&old).await.unwrap()["term"].as_u64().unwrap();
    for i in 0..20 {
        c.put_acked(ALL3, &format!("k{i}"), json!(i)).await;
    }
    c.kill(&old);
    let rest: Vec<&str> = ALL3.iter().copied().filter(|n| *n != old).collect();
    let new = c.leader(&rest).await;
    let new_round = c.status(&new).await.unwrap()["term"].as_u64().unwrap();
    assert!(
        new_round > old_round,
        "ballot {new_round} after {old_round}"
    );
    // Phase 1 taught the new leader every value the old one had chosen.
    for i in 0..20 {
        let mut got = c.get(&new, &format!("k{i}")).await;
        if got.0 != 200 {
            got = c.get(&c.leader(&rest).await, &format!("k{i}")).await;
        }
        assert_eq!(got, (200, json!({"value": i})), "k{i}");
    }
    c.put_acked(&rest, "after", json!("takeover")).await;
    c.restart(&old);
    let target = c.status(&c.leader(&rest).await).await.unwrap()["commit_index"]
        .as_u64()
        .unwrap();
    applied_everywhere(&c, &[old.as_str()], target).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_of_every_node_from_disk_loses_no_acknowledged_write() {
    let mut c = Cluster::start(3, PAXOS).await;
    for i in 0..40 {
        c.put_acked(ALL3, &format!("k{i}"), json!(format!("v{i}")))
            .await;
    }
    for id in ALL3 {
        c.kill(id);
    }
    for id in ALL3 {
        c.restart(id);
    }
    // Nothing is known chosen after the restart: the new leader learns every
    // slot again from the acceptors' journals.
    for i in 0..40 {
        let mut got = (0, json!(null));
        for _ in 0..50 {
            got = c.get(&c.leader(ALL3).await, &format!("k{i}")).await;
            if got.0 == 200 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(got, (200, json!({"value": format!("v{i}")})), "k{i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_replica_catches_up_from_a_snapshot_after_compaction() {
    // Chunks of 64 bytes: the snapshot (over a kilobyte) travels in many.
    let mut c = Cluster::start(
        3,
        &with(&["--snapshot-every", "40", "--snapshot-chunk-bytes", "64"]),
    )
    .await;
    let leader = c.leader(ALL3).await;
    let lagging = ALL3
        .iter()
        .copied()
        .find(|n| *n != leader)
        .unwrap()
        .to_string();
    c.kill(&lagging);
    let live: Vec<&str> = ALL3.iter().copied().filter(|n| *n != lagging).collect();
    for i in 0..150 {
        c.put_acked(&live, &format!("k{i}"), json!(i)).await;
    }
    c.restart(&lagging);
    let target = c.status(&c.leader(&live).await).await.unwrap()["commit_index"]
        .as_u64()
        .unwrap();
    applied_everywhere(&c, &[lagging.as_str()], target).await;
    assert!(
        c.log_text(&lagging)
            .contains("installed a snapshot up to slot"),
        "{}",
        c.log_text(&lagging)
    );
    // The journal was compacted: it holds far fewer records than writes.
    let journal =
        std::fs::read_to_string(c.node(&leader).dir.join("paxos.journal")).unwrap_or_default();
    assert!(
        journal.lines().count() < 100,
        "{} records",
        journal.lines().count()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minority_cannot_choose_and_the_majority_moves_on() {
    let c = Cluster::start(3, &with(&["--request-timeout-ms", "1000"])).await;
    let old = c.leader(ALL3).await;
    c.put_acked(ALL3, "k", json!("before")).await;
    c.isolate(&old, true);
    let (code, body) = c.put(&old, "k", json!("minority")).await;
    assert!(
        code == 504 || code == 421,
        "isolated leader answered {code} {body}"
    );
    let rest: Vec<&str> = ALL3.iter().copied().filter(|n| *n != old).collect();
    c.put_acked(&rest, "k", json!("majority")).await;
    c.isolate(&old, false);
    wait_for("the old leader to follow again", || async {
        c.status(&old).await.is_some_and(|s| s["role"] != "leader")
    })
    .await;
    let leader = c.leader(ALL3).await;
    assert_eq!(
        c.get(&leader, "k").await,
        (200, json!({"value": "majority"}))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_changes_are_refused_with_a_reason() {
    let c = Cluster::start(3, PAXOS).await;
    let leader = c.leader(ALL3).await;
    let r = c
        .http
        .post(c.url(&leader, "/cluster/leave"))
        .json(&json!({"id": "n3"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 409);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body.to_string().contains("paxos"), "{body}");
}
