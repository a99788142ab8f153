//! Raft KV on a cluster of real node processes: election, replication, crashes,
//! restarts from disk, snapshots, membership and partitions.

mod common;

use std::time::Duration;

use common::{free_port, wait_for, Cluster};
use serde_json::{json, Value};

const ALL3: &[&str] = &["n1", "n2", "n3"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elects_one_leader_and_replicates_writes_to_every_node() {
    let c = Cluster::start(3, &[]).await;
    let leader = c.leader(ALL3).await;
    for i in 0..20 {
        assert_eq!(c.put(&leader, &format!("k{i}"), json!(i)).await.0, 200);
    }
    assert_eq!(c.get(&leader, "k7").await, (200, json!({"value": 7})));
    // Followers redirect with the leader's id and apply the same log.
    let follower = ALL3.iter().find(|n| **n != leader).unwrap();
    let (code, body) = c.put(follower, "x", json!(1)).await;
    assert_eq!(code, 421);
    assert_eq!(body["leader"], json!(leader));
    assert_eq!(body["definite"], json!(true));
    let target = c.status(&leader).await.unwrap()["commit_index"]
        .as_u64()
        .unwrap();
    for id in ALL3 {
        wait_for("followers to apply", || async {
            c.status(id)
                .await
                .is_some_and(|s| s["applied_index"].as_u64() >= Some(target))
        })
        .await;
    }
    let leaders = futures_count_leaders(&c).await;
    assert_eq!(leaders, 1);
}

async fn futures_count_leaders(c: &Cluster) -> usize {
    let mut n = 0;
    for id in ALL3 {
        if c.status(id).await.is_some_and(|s| s["role"] == "leader") {
            n += 1;
        }
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_crash_elects_new_leader_and_keeps_acked_writes() {
    let mut c = Cluster::start(3, &[]).await;
    let old = c.leader(ALL3).await;
    for i in 0..10 {
        c.put_acked(ALL3, &format!("k{i}"), json!(i)).await;
    }
    c.kill(&old);
    let rest: Vec<&str> = ALL3.iter().copied().filter(|n| *n != old).collect();
    let new = c.leader(&rest).await;
    assert_ne!(new, old);
    for i in 0..10 {
        assert_eq!(
            c.get(&new, &format!("k{i}")).await,
            (200, json!({"value": i}))
        );
    }
    c.put_acked(&rest, "after", json!("crash")).await;
    c.restart(&old);
    wait_for(
        "the old leader to rejoin as follower and catch up",
        || async {
            c.status(&old)
                .await
                .is_some_and(|s| s["role"] == "follower" && s["applied_index"].as_u64() > Some(10))
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_of_every_node_from_disk_loses_no_acknowledged_write() {
    let mut c = Cluster::start(3, &[]).await;
    for i in 0..30 {
        c.put_acked(ALL3, &format!("k{i}"), json!(format!("v{i}")))
            .await;
    }
    for id in ALL3 {
        c.kill(id);
    }
    for id in ALL3 {
        c.restart(id);
    }
    let leader = c.leader(ALL3).await;
    for i in 0..30 {
        let mut got = c.get(&leader, &format!("k{i}")).await;
        if got.0 != 200 {
            let l = c.leader(ALL3).await;
            got = c.get(&l, &format!("k{i}")).await;
        }
        assert_eq!(got, (200, json!({"value": format!("v{i}")})), "k{i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_follower_catches_up_through_a_snapshot() {
    // Chunks of 64 bytes: the snapshot (over a kilobyte) travels in many.
    let mut c = Cluster::start(
        3,
        &["--snapshot-every", "40", "--snapshot-chunk-bytes", "64"],
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
    wait_for("the lagging follower to catch up", || async {
        c.status(&lagging)
            .await
            .is_some_and(|s| s["applied_index"].as_u64() >= Some(target))
    })
    .await;
    let log = c.log_text(&lagging);
    let bytes: usize = log
        .lines()
        .find_map(|l| {
            l.split("installed a snapshot")
                .nth(1)?
                .split('(')
                .nth(1)?
                .split(' ')
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no snapshot installed: {log}"));
    assert!(bytes > 64 * 4, "a snapshot of {bytes} bytes: {log}");
    // Its state is whole: the snapshot it installed holds every key (under `kv`, beside
    // the lock manager and the broker).
    let snap: Value =
        serde_json::from_slice(&std::fs::read(c.node(&lagging).dir.join("snapshot.json")).unwrap())
            .unwrap();
    assert_eq!(snap["data"]["kv"]["k3"], json!(3));
}

/// Flips a byte at `at` (a fraction of the length) in `file`.
fn damage(file: &std::path::Path, at: f64) {
    let mut bytes = std::fs::read(file).unwrap();
    let i = ((bytes.len() as f64) * at) as usize;
    bytes[i] ^= 0x5a;
    std::fs::write(file, &bytes).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_with_a_damaged_log_or_snapshot_abstains_until_repaired_and_loses_nothing() {
    for (file, extra) in [
        ("log.bin", &[][..]),
        ("snapshot.json", &["--snapshot-every", "20"][..]),
    ] {
        let mut c = Cluster::start(3, extra).await;
        let leader = c.leader(ALL3).await;
        let f = ALL3.iter().copied().find(|n| *n != leader).unwrap();
        for i in 0..60 {
            c.put_acked(ALL3, &format!("k{i}"), json!(i)).await;
        }
        c.kill(f);
        damage(&c.node(f).dir.join(file), 0.4);
        c.restart(f);
        wait_for("the damaged node to notice", || async {
            c.log_text(f)
                .contains("not voting until a leader restores them")
        })
        .await;
        c.put_acked(ALL3, "after", json!(1)).await;
        for _ in 0..100 {
            if c.log_text(f).contains("log repaired") {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(
            c.log_text(f).contains("log repaired"),
            "{file}: {}",
            c.log_text(f)
        );
        let target = c.status(&c.leader(ALL3).await).await.unwrap()["commit_index"]
            .as_u64()
            .unwrap();
        wait_for("the repaired node to catch up", || async {
            c.status(f)
                .await
                .is_some_and(|s| s["applied_index"].as_u64() >= Some(target))
        })
        .await;
        for i in 0..60 {
            let l = c.leader(ALL3).await;
            assert_eq!(
                c.get(&l, &format!("k{i}")).await,
                (200, json!({"value": i})),
                "{file}"
            );
        }
        // The node restarts cleanly afterwards: the damage is forgotten only
        // once repaired.
        c.kill(f);
        c.restart(f);
        wait_for("a clean restart", || async {
            c.status(f).await.is_some_and(|s| s["role"] == "follower")
        })
        .await;
        let log = c.log_text(f);
        assert_eq!(log.matches("log damaged").count(), 1, "{file}: {log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_joins_and_another_leaves() {
    let mut c = Cluster::start(3, &[]).await;
    let leader = c.leader(ALL3).await;
    c.put_acked(ALL3, "before", json!(1)).await;
    // n4 reaches the others directly (no proxy) and they reach it at its listener.
    let ports = (free_port(), free_port(), free_port());
    let peers: Vec<String> = c
        .nodes
        .iter()
        .map(|n| format!("{}=127.0.0.1:{}", n.id, n.peer))
        .collect();
    c.add_node("n4", ports, &peers, true);
    let r = c
        .http
        .post(c.url(&leader, "/cluster/join"))
        .json(&json!({"id": "n4", "addr": format!("127.0.0.1:{}", ports.1)}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{:?}", r.text().await);
    wait_for("n4 to hold the data", || async {
        c.status("n4").await.is_some_and(|s| {
            s["members"].as_array().is_some_and(|m| m.len() == 4)
                && s["applied_index"].as_u64() >= Some(2)
        })
    })
    .await;
    let leaver = ALL3.iter().copied().find(|n| *n != leader).unwrap();
    let r = c
        .http
        .post(c.url(&leader, "/cluster/leave"))
        .json(&json!({"id": leaver}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let s = c.status(&leader).await.unwrap();
    assert!(
        !s["members"].as_array().unwrap().contains(&json!(leaver)),
        "{s}"
    );
    c.kill(leaver);
    let rest: Vec<&str> = ["n1", "n2", "n3", "n4"]
        .into_iter()
        .filter(|n| *n != leaver)
        .collect();
    c.put_acked(&rest, "after", json!(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_node_hears_of_its_removal_and_stops_campaigning() {
    let c = Cluster::start(3, &[]).await;
    let leader = c.leader(ALL3).await;
    let leaver = ALL3.iter().copied().find(|n| *n != leader).unwrap();
    let r = c
        .http
        .post(c.url(&leader, "/cluster/leave"))
        .json(&json!({"id": leaver}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // No leader sends to it any more; when it asks for votes, a member says it
    // was removed, and its status shows the configuration that left it out.
    wait_for("the removed node to know", || async {
        c.status(leaver).await.is_some_and(|s| {
            s["role"] == "removed" && !s["members"].as_array().unwrap().contains(&json!(leaver))
        })
    })
    .await;
    assert!(c.log_text(leaver).contains("removed from the cluster"));
    // It campaigns no more. Before, it asked for pre-votes every election
    // timeout (100-200 ms) and spent most of its time a pre-candidate.
    for _ in 0..40 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let s = c.status(leaver).await.unwrap();
        assert_eq!(s["role"], "removed", "{s}");
    }
    let rest: Vec<&str> = ALL3.iter().copied().filter(|n| *n != leaver).collect();
    c.put_acked(&rest, "after", json!(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_of_unreachable_members_cannot_strand_the_cluster_without_a_quorum() {
    let c = Cluster::start(3, &[]).await;
    let leader = c.leader(ALL3).await;
    c.put_acked(ALL3, "before", json!(1)).await;
    // Each join names an address nobody listens on. The first two leave a
    // reachable majority (3 of 4, 3 of 5); the third (3 of 6) would not.
    let mut codes = Vec::new();
    for id in ["a", "b", "c"] {
        let r = c
            .http
            .post(c.url(&leader, "/cluster/join"))
            .json(&json!({"id": id, "addr": "127.0.0.1:1"}))
            .send()
            .await
            .unwrap();
        let code = r.status().as_u16();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        codes.push((code, body));
    }
    assert_eq!(codes[0].0, 200, "{codes:?}");
    assert_eq!(codes[1].0, 200, "{codes:?}");
    assert_eq!(codes[2].0, 409, "{codes:?}");
    assert_eq!(codes[2].1["error"], "refused");
    assert!(
        codes[2].1["message"]
            .as_str()
            .unwrap()
            .contains("short of a quorum of 4"),
        "{codes:?}"
    );
    // Five members, three reachable: still a quorum, still writable.
    c.put_acked(ALL3, "after", json!(2)).await;
    // Removing a reachable member now would leave 2 of 4: refused too.
    let other = ALL3.iter().copied().find(|n| *n != leader).unwrap();
    let r = c
        .http
        .post(c.url(&leader, "/cluster/leave"))
        .json(&json!({"id": other}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 409);
    // Removing the unreachable ones is always allowed.
    for id in ["a", "b"] {
        let r = c
            .http
            .post(c.url(&leader, "/cluster/leave"))
            .json(&json!({"id": id}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{:?}", r.text().await);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_leader_cannot_commit_and_the_majority_moves_on() {
    let c = Cluster::start(3, &["--request-timeout-ms", "1000"]).await;
    let old = c.leader(ALL3).await;
    c.put_acked(ALL3, "k", json!("before")).await;
    c.isolate(&old, true);
    // The minority side never acknowledges a write.
    let (code, body) = c.put(&old, "k", json!("minority")).await;
    assert!(
        code == 504 || code == 421,
        "isolated leader answered {code} {body}"
    );
    let rest: Vec<&str> = ALL3.iter().copied().filter(|n| *n != old).collect();
    let new = c.leader(&rest).await;
    c.put_acked(&rest, "k", json!("majority")).await;
    c.isolate(&old, false);
    wait_for("the old leader to learn the new value", || async {
        c.status(&old).await.is_some_and(|s| s["role"] != "leader")
    })
    .await;
    assert_eq!(c.get(&new, "k").await, (200, json!({"value": "majority"})));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_follower_asks_for_pre_votes_and_keeps_its_term() {
    let c = Cluster::start(3, &[]).await;
    let leader = c.leader(ALL3).await;
    c.put_acked(ALL3, "k", json!(1)).await;
    let follower = *ALL3.iter().find(|n| **n != leader).unwrap();
    let before = c.status(follower).await.unwrap();
    // It may have campaigned in the first election; only what it logs while
    // cut off counts.
    let logged = c.log_text(follower).len();
    c.isolate(follower, true);
    // Ten election timeouts and more alone: no one answers its pre-votes, so
    // it never campaigns and its term stays (without pre-vote it would climb,
    // and on its return the higher term would depose the leader).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cut = c.status(follower).await.unwrap();
    assert_eq!(cut["role"], "pre-candidate", "{cut}");
    assert_eq!(cut["term"], before["term"], "{before} then {cut}");
    let log = c.log_text(follower);
    assert!(
        !log[logged.min(log.len())..].contains("campaigning"),
        "{}",
        log
    );
    c.isolate(follower, false);
    wait_for("the follower to follow a leader again", || async {
        c.status(follower)
            .await
            .is_some_and(|s| s["role"] == "follower" && s["leader"].is_string())
    })
    .await;
    c.put_acked(ALL3, "k", json!(2)).await;
    let leader = c.leader(ALL3).await;
    let target = c.status(&leader).await.unwrap()["commit_index"]
        .as_u64()
        .unwrap();
    wait_for("the follower to apply the write", || async {
        c.status(follower)
            .await
            .is_some_and(|s| s["applied_index"].as_u64() >= Some(target))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_a_4xx_and_the_node_keeps_serving() {
    let c = Cluster::start(1, &[]).await;
    let leader = c.leader(&["n1"]).await;
    for (method, path, body) in [
        ("PUT", "/kv/a", "not json"),
        ("PUT", "/kv/a", "{\"val\": 1}"),
        ("POST", "/kv/a/cas", "{\"expected\": 1}"),
        ("POST", "/cluster/join", "[]"),
        ("GET", "/nowhere", ""),
    ] {
        let req = c
            .http
            .request(method.parse().unwrap(), c.url(&leader, path))
            .body(body);
        let r = req.send().await.unwrap();
        let code = r.status().as_u16();
        assert!((400..500).contains(&code), "{method} {path}: {code}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["definite"], json!(true), "{v}");
    }
    let r = c
        .http
        .post(c.url(&leader, "/kv/a/cas"))
        .json(&json!({"expected": 9, "new": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 409);
    assert_eq!(c.put(&leader, "a", json!(1)).await.0, 200);
    assert_eq!(c.get(&leader, "a").await, (200, json!({"value": 1})));
}
