//! One replica's rules, driven by hand-made messages signed with the keys of
//! the others: what a backup refuses, when it prepares, what a new-view must
//! prove, and what survives a restart.

use super::*;
use crate::bugs::Bugs;
use serde_json::json;

use crate::consensus::state_machine::Applied;

const SECRET: &str = "test-secret";

fn members() -> Vec<String> {
    ["n1", "n2", "n3", "n4"].map(String::from).to_vec()
}

fn keys(id: &str) -> Keys {
    Keys::derive(SECRET, &id.to_string(), members())
}

/// Replica n2 (a backup in view 0, whose primary is n1); its peers are at
/// an address nothing listens on, so what it sends is lost.
fn open(dir: &std::path::Path, bugs: &[Bug]) -> Pbft<Applied> {
    let cfg = Config {
        id: "n2".into(),
        data_dir: dir.to_path_buf(),
        members: members()
            .into_iter()
            .map(|m| (m, "127.0.0.1:9".to_string()))
            .collect(),
        peer_addrs: Default::default(),
        election_timeout: Duration::from_secs(60),
        heartbeat: Duration::from_secs(10),
        snapshot_every: 1_000,
        snapshot_chunk: 1 << 20,
        bugs: Bugs::new(bugs.iter().copied()),
        group: 0,
    };
    let transport = Arc::new(Transport::new(
        "n2".into(),
        tokio::runtime::Handle::current(),
    ));
    Pbft::open(cfg, Applied::default(), transport, SECRET, Arc::default()).unwrap()
}

fn request(client: &str, value: i64) -> Request {
    Request {
        id: RequestId {
            client: client.into(),
            number: 1,
        },
        op: Op::Command(json!({"op": "put", "key": "k", "value": value})),
    }
}

fn pre_prepare(seq: u64, batch: Vec<Request>) -> Signed {
    keys("n1").sign(Body::PrePrepare {
        view: 0,
        seq,
        digest: message::digest_of(&batch),
        batch,
    })
}

/// Hands the replica a request as its client would (with the request id).
fn from_client(p: &mut Pbft<Applied>, r: &Request) -> oneshot::Receiver<Reply> {
    let (tx, rx) = oneshot::channel();
    let id = format!("{}:{}", r.id.client, r.id.number);
    p.on_client(json!({"id": id, "op": r.op}), tx, Instant::now());
    rx
}

fn prepared_here(p: &Pbft<Applied>, seq: u64) -> bool {
    p.slots
        .get(&seq)
        .and_then(|s| s.views.get(&0))
        .is_some_and(|v| v.sent_prepare)
}

#[tokio::test]
async fn a_backup_refuses_a_forged_batch_a_lying_digest_and_a_pre_prepare_from_a_backup() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = open(dir.path(), &[]);
    let real = request("c1", 5);
    let _rx = from_client(&mut p, &real);
    // The digest of the real batch over a forged one.
    let mut forged = pre_prepare(1, vec![real.clone()]);
    if let Body::PrePrepare { batch, .. } = &mut forged.body {
        batch[0] = request("c1", 1_005);
    }
    forged = keys("n1").sign(forged.body);
    p.handle(Event::Peer {
        from: "n1".into(),
        msg: forged,
    });
    assert!(!prepared_here(&p, 1));
    // A pre-prepare from n3, which is not the primary of view 0.
    let batch = vec![real.clone()];
    let from_backup = keys("n3").sign(Body::PrePrepare {
        view: 0,
        seq: 1,
        digest: message::digest_of(&batch),
        batch,
    });
    p.handle(Event::Peer {
        from: "n3".into(),
        msg: from_backup,
    });
    assert!(!prepared_here(&p, 1));
    // A message whose MAC does not match (tampered on the wire) is dropped.
    let dropped = p.dropped;
    let mut tampered = pre_prepare(1, vec![real.clone()]);
    tampered.macs.insert("n2".into(), "00".repeat(32));
    p.handle(Event::Peer {
        from: "n1".into(),
        msg: tampered,
    });
    assert_eq!(p.dropped, dropped + 1);
    assert!(!prepared_here(&p, 1));
    // The genuine one is prepared.
    p.handle(Event::Peer {
        from: "n1".into(),
        msg: pre_prepare(1, vec![real]),
    });
    assert!(prepared_here(&p, 1));
}

#[tokio::test]
async fn trust_primary_prepares_a_forged_batch() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = open(dir.path(), &[Bug::TrustPrimary]);
    let real = request("c1", 5);
    let _rx = from_client(&mut p, &real);
    let mut forged = pre_prepare(1, vec![real]);
    if let Body::PrePrepare { batch, .. } = &mut forged.body {
        batch[0] = request("c1", 1_005);
    }
    p.handle(Event::Peer {
        from: "n1".into(),
        msg: keys("n1").sign(forged.body),
    });
    assert!(prepared_here(&p, 1));
}

#[tokio::test]
async fn a_backup_prepares_a_request_no_client_sent_it_only_once_f_backups_vouch() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = open(dir.path(), &[]);
    let r = request("c9", 7);
    let pp = pre_prepare(1, vec![r]);
    let Body::PrePrepare { digest, .. } = pp.body.clone() else {
        unreachable!()
    };
    p.handle(Event::Peer {
        from: "n1".into(),
        msg: pp,
    });
    assert!(!prepared_here(&p, 1), "no client copy, no vouchers");
    p.handle(Event::Peer {
        from: "n3".into(),
        msg: keys("n3").sign(Body::Prepare {
            view: 0,
            seq: 1,
            digest,
        }),
    });
    assert!(prepared_here(&p, 1), "the primary and one backup are f+1");
}

#[tokio::test]
async fn a_quorum_of_commits_executes_in_order_answers_the_client_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let batch = vec![request("c1", 5)];
    {
        let mut p = open(dir.path(), &[]);
        let rx = from_client(&mut p, &batch[0]);
        let pp = pre_prepare(1, batch.clone());
        let digest = message::digest_of(&batch);
        p.handle(Event::Peer {
            from: "n1".into(),
            msg: pp,
        });
        for n in ["n3", "n4"] {
            p.handle(Event::Peer {
                from: n.into(),
                msg: keys(n).sign(Body::Prepare {
                    view: 0,
                    seq: 1,
                    digest: digest.clone(),
                }),
            });
        }
        // n2 is prepared and has committed; two more commits make 2f+1.
        assert_eq!(p.executed, 0);
        for n in ["n1", "n3"] {
            p.handle(Event::Peer {
                from: n.into(),
                msg: keys(n).sign(Body::Commit {
                    view: 0,
                    seq: 1,
                    digest: digest.clone(),
                }),
            });
        }
        p.flush().unwrap();
        assert_eq!(p.executed, 1);
        assert_eq!(rx.await.unwrap(), Reply::Ok(json!(1)));
    }
    // The journal holds the votes: a restart executes the batch again.
    let p = open(dir.path(), &[]);
    assert_eq!(p.executed, 1);
    assert_eq!(p.sm.0.len(), 1);
    assert_eq!(p.replies.get("c1").map(|r| r.0), Some(1));
}

#[tokio::test]
async fn a_new_view_resting_on_a_forged_view_change_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = open(dir.path(), &[]);
    // View 1's primary is n2 itself; take n4 as a would-be primary of view 3.
    let change = |from: &str, macs_ok: bool| {
        let mut m = keys(from).sign(Body::ViewChange {
            view: 3,
            stable: 0,
            stable_proof: Vec::new(),
            prepared: Vec::new(),
        });
        if !macs_ok {
            for mac in m.macs.values_mut() {
                *mac = "11".repeat(32);
            }
        }
        m
    };
    let forged_batch = vec![request("nobody", 1)];
    let new_view = |changes: Vec<Signed>| {
        keys("n4").sign(Body::NewView {
            view: 3,
            view_changes: changes,
            pre_prepares: vec![keys("n4").sign(Body::PrePrepare {
                view: 3,
                seq: 1,
                digest: message::digest_of(&forged_batch),
                batch: forged_batch.clone(),
            })],
        })
    };
    // Two real view changes and a forged third: not a quorum that checks out.
    p.handle(Event::Peer {
        from: "n4".into(),
        msg: new_view(vec![
            change("n4", true),
            change("n3", true),
            change("n1", false),
        ]),
    });
    assert_eq!(p.view, 0);
    // Three real ones that prepared nothing: a new-view re-proposing a batch
    // at 1 does not follow from them.
    p.handle(Event::Peer {
        from: "n4".into(),
        msg: new_view(vec![
            change("n4", true),
            change("n3", true),
            change("n1", true),
        ]),
    });
    assert_eq!(p.view, 0);
    // The same quorum with nothing re-proposed is a new view to enter.
    let honest = keys("n4").sign(Body::NewView {
        view: 3,
        view_changes: vec![change("n4", true), change("n3", true), change("n1", true)],
        pre_prepares: Vec::new(),
    });
    p.handle(Event::Peer {
        from: "n4".into(),
        msg: honest,
    });
    assert_eq!((p.view, p.changing), (3, false));
}
