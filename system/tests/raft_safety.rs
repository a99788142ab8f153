//! Raft safety regressions (issue "Raft II"), each driven through real node
//! processes and cuttable link proxies, and each run twice: with the planted
//! version of the old code (which the test must catch) and with the fix.

mod common;

use std::time::Duration;

use common::{wait_for, Cluster};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

const ALL3: &[&str] = &["n1", "n2", "n3"];

/// Writes one peer frame (4-byte length, JSON envelope) straight to `to`'s
/// peer listener, as a delayed copy would arrive from the network.
async fn deliver(c: &Cluster, to: &str, envelope: Value) {
    let body = serde_json::to_vec(&envelope).unwrap();
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", c.node(to).peer))
        .await
        .unwrap();
    s.write_all(&frame).await.unwrap();
    s.flush().await.unwrap();
    // Let the follower read it before the connection goes.
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Part 1: a copy of an older-term Append (read round 1,000,000, as a leader's
/// earlier incarnation could have sent) reaches a follower of the current
/// leader. The follower rejects it; its reply must not confirm reads of the
/// current term. Then the leader is cut off and asked to read: it may answer
/// only after a quorum round, which can no longer happen.
async fn read_on_a_cut_off_leader_after_a_stale_append(bug: Option<&str>) -> (u16, Value) {
    let extra: Vec<&str> = bug.map(|b| vec!["--bug", b]).unwrap_or_default();
    let c = Cluster::start(3, &extra).await;
    let leader = c.leader(ALL3).await;
    c.put_acked(ALL3, "k", json!("before")).await;
    let term = c.status(&leader).await.unwrap()["term"].as_u64().unwrap();
    let follower = ALL3.iter().copied().find(|n| *n != leader).unwrap();
    let stale = json!({
        "from": leader, "to": follower,
        "msg": {"raft": {"type": "append", "term": term - 1, "prev_index": 0, "prev_term": 0,
                         "entries": [], "commit": 0, "read_seq": 1_000_000u64}}
    });
    deliver(&c, follower, stale).await;
    // The follower's rejection travels back over its link to the leader.
    tokio::time::sleep(Duration::from_millis(150)).await;
    c.isolate(&leader, true);
    let answer = c.get(&leader, "k").await;
    // The leader must still have been the leader (not stepped down) when asked.
    assert!(
        c.log_text(&leader).matches("stepping down").count() == 0 || answer.0 != 200,
        "the test raced check-quorum"
    );
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_appends_read_round_confirms_no_read_of_a_newer_term() {
    let (code, body) = read_on_a_cut_off_leader_after_a_stale_append(None).await;
    assert_ne!(
        code, 200,
        "a leader cut off from every peer served a read: {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planted_echo_read_seq_serves_a_read_no_quorum_confirmed() {
    let (code, body) = read_on_a_cut_off_leader_after_a_stale_append(Some("echo-read-seq")).await;
    assert_eq!(
        (code, &body),
        (200, &json!({"value": "before"})),
        "the planted bug should let the cut-off leader answer at once"
    );
}

/// Part 2: leader L appends `leave X`, is cut off before replicating it; the
/// others elect a leader whose entries overwrite that index. When L rejoins,
/// its configuration must roll back with the truncated entry.
async fn members_after_a_truncated_leave(bug: Option<&str>) -> Vec<String> {
    let extra: Vec<&str> = bug.map(|b| vec!["--bug", b]).unwrap_or_default();
    let c = Cluster::start(3, &extra).await;
    let old = c.leader(ALL3).await;
    c.put_acked(ALL3, "k", json!(1)).await;
    let leaver = ALL3.iter().copied().find(|n| *n != old).unwrap();
    c.isolate(&old, true);
    // Appended on the old leader alone: it cannot commit.
    let r = c
        .http
        .post(c.url(&old, "/cluster/leave"))
        .json(&json!({"id": leaver}))
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(r.map_or(true, |r| r.status().as_u16() != 200));
    let s = c.status(&old).await.unwrap();
    assert_eq!(
        s["members"].as_array().map(Vec::len),
        Some(2),
        "the leave should be in force on the old leader while uncommitted: {s}"
    );
    let rest: Vec<&str> = ALL3.iter().copied().filter(|n| *n != old).collect();
    c.leader(&rest).await;
    c.put_acked(&rest, "k", json!(2)).await;
    c.isolate(&old, false);
    // The old leader follows, and the new leader's entries replace its leave.
    wait_for("the old leader to apply the majority's write", || async {
        c.get(&old, "k").await.1 == json!({"value": 2})
            || c.status(&old)
                .await
                .is_some_and(|s| s["role"] == "follower" && s["applied_index"].as_u64() >= Some(4))
    })
    .await;
    let s = c.status(&old).await.unwrap();
    s["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_membership_change_is_rolled_back() {
    let members = members_after_a_truncated_leave(None).await;
    assert_eq!(members, ["n1", "n2", "n3"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planted_keep_config_on_truncate_keeps_the_removed_configuration() {
    let members = members_after_a_truncated_leave(Some("keep-config-on-truncate")).await;
    assert_eq!(members.len(), 2, "{members:?}");
}

/// Part 3: the leader's own removal answers 200 once it commits (it used to
/// answer an indefinite 504), and a leave naming no member is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leave_answers_name_what_happened() {
    let c = Cluster::start(3, &[]).await;
    let leader = c.leader(ALL3).await;
    c.put_acked(ALL3, "k", json!(1)).await;
    let leave = |id: &str| {
        c.http
            .post(c.url(&leader, "/cluster/leave"))
            .json(&json!({ "id": id }))
            .send()
    };
    let r = leave("n9").await.unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        (&body["error"], &body["definite"]),
        (&json!("not-found"), &json!(true))
    );
    assert!(body["message"].as_str().unwrap().contains("n9"), "{body}");
    assert_eq!(leave("").await.unwrap().status().as_u16(), 400);
    let r = leave(&leader).await.unwrap();
    let status = r.status().as_u16();
    assert_eq!(status, 200, "{:?}", r.text().await);
    let rest: Vec<&str> = ALL3.iter().copied().filter(|n| *n != leader).collect();
    let new = c.leader(&rest).await;
    let s = c.status(&new).await.unwrap();
    assert_eq!(s["members"].as_array().map(Vec::len), Some(2), "{s}");
    assert!(!s["members"].as_array().unwrap().contains(&json!(leader)));
}
