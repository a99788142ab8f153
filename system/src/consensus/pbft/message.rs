//! PBFT's messages, the client requests they order, and the authenticators
//! (a MAC per replica, HMAC-SHA-256 with the pair's key) that stop a replica
//! from speaking for another or a wire from changing what was said.

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::types::NodeId;

/// A SHA-256 digest, as lowercase hex.
pub type Digest = String;

/// SHA-256 of `bytes`, as hex.
pub fn digest(bytes: &[u8]) -> Digest {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of a value's JSON text (serde_json writes object keys sorted and
/// numbers the same way each time, so equal values give equal digests).
pub fn digest_of<T: Serialize>(value: &T) -> Digest {
    digest(&serde_json::to_vec(value).unwrap_or_default())
}

/// A client request's identity: the client and its own request number. Each
/// is executed at most once, however many replicas it reached.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RequestId {
    /// The client (a harness process, say).
    pub client: String,
    /// Grows with each of the client's requests.
    pub number: u64,
}

/// What a request asks the state machine.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "body", rename_all = "kebab-case")]
pub enum Op {
    /// A command to apply.
    Command(Value),
    /// A query, answered at its place in the order.
    Read(Value),
}

/// A client request as replicas order it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// Who asked, and which of its requests this is.
    pub id: RequestId,
    /// What it asks.
    pub op: Op,
}

impl Request {
    /// What the client asked, without the clock of the node that took it
    /// (a command's top-level `now_ms`, which differs between replicas; the
    /// copy the primary orders brings its own): two replicas that got the
    /// same request from the client agree on it.
    pub fn client_digest(&self) -> Digest {
        let mut op = self.op.clone();
        if let Op::Command(Value::Object(map)) = &mut op {
            map.remove("now_ms");
        }
        digest_of(&(&self.id, &op))
    }

    /// The command's `now_ms`, if it has one.
    pub fn now_ms(&self) -> Option<u64> {
        match &self.op {
            Op::Command(c) => c.get("now_ms")?.as_u64(),
            Op::Read(_) => None,
        }
    }
}

/// The requests one sequence number orders, in execution order. An empty
/// batch is the null request a new view fills holes with.
pub type Batch = Vec<Request>;

/// What replicas say to each other (the part the authenticator covers).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Body {
    /// A client request a backup passes to the primary.
    Request(Request),
    /// The primary assigns `seq` to a batch in `view`.
    PrePrepare {
        /// The view.
        view: u64,
        /// The sequence number.
        seq: u64,
        /// SHA-256 of the batch.
        digest: Digest,
        /// The batch.
        batch: Batch,
    },
    /// A backup accepted the pre-prepare.
    Prepare {
        /// The view.
        view: u64,
        /// The sequence number.
        seq: u64,
        /// The batch's digest.
        digest: Digest,
    },
    /// The sender holds a prepared certificate.
    Commit {
        /// The view.
        view: u64,
        /// The sequence number.
        seq: u64,
        /// The batch's digest.
        digest: Digest,
    },
    /// The sender's state after executing `seq`.
    Checkpoint {
        /// The sequence number.
        seq: u64,
        /// SHA-256 of the state.
        digest: Digest,
    },
    /// The sender leaves its view for `view`.
    ViewChange {
        /// The new view.
        view: u64,
        /// The sender's last stable checkpoint.
        stable: u64,
        /// Its proof: 2f+1 matching checkpoint messages (none at 0).
        stable_proof: Vec<Signed>,
        /// A prepared certificate for each sequence number above it.
        prepared: Vec<Prepared>,
    },
    /// The new primary starts `view`.
    NewView {
        /// The view.
        view: u64,
        /// The 2f+1 view changes it starts from.
        view_changes: Vec<Signed>,
        /// The pre-prepares they imply, each signed by the new primary.
        pre_prepares: Vec<Signed>,
    },
    /// Asks for what the receiver has committed from `next` on.
    Fetch {
        /// The first sequence number the sender lacks.
        next: u64,
    },
    /// One committed sequence number and its proof.
    Committed {
        /// The pre-prepare.
        pre_prepare: Box<Signed>,
        /// 2f+1 matching commits.
        commits: Vec<Signed>,
    },
    /// The state at a stable checkpoint, for a replica behind garbage collection.
    State {
        /// The checkpoint's sequence number.
        seq: u64,
        /// 2f+1 matching checkpoint messages.
        proof: Vec<Signed>,
        /// The state (its digest is the checkpoint's).
        state: Value,
    },
}

/// A certificate that a batch prepared: its pre-prepare and 2f prepares.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Prepared {
    /// The pre-prepare.
    pub pre_prepare: Signed,
    /// Matching prepares from distinct backups.
    pub prepares: Vec<Signed>,
}

/// A body, its sender and one MAC per replica.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Signed {
    /// Who said it.
    pub from: NodeId,
    /// What was said.
    pub body: Body,
    /// Hex HMAC-SHA-256 of the body's JSON, with the key `from` shares with
    /// each replica, by replica.
    pub macs: BTreeMap<NodeId, String>,
}

/// The pair keys one replica holds: the key it shares with each member.
#[derive(Clone, Debug)]
pub struct Keys {
    me: NodeId,
    pair: BTreeMap<NodeId, Vec<u8>>,
}

type HmacSha256 = Hmac<Sha256>;

fn mac(key: &[u8], bytes: &[u8]) -> HmacSha256 {
    let mut m = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    m.update(bytes);
    m
}

impl Keys {
    /// The keys of replica `me` among `members`, derived from the cluster
    /// secret: the key of a pair is the secret's MAC of the two names in order.
    pub fn derive(secret: &str, me: &NodeId, members: impl IntoIterator<Item = NodeId>) -> Keys {
        let pair = members
            .into_iter()
            .map(|other| {
                let (a, b) = if *me <= other {
                    (me.as_str(), other.as_str())
                } else {
                    (other.as_str(), me.as_str())
                };
                let key = mac(secret.as_bytes(), format!("{a}\n{b}").as_bytes())
                    .finalize()
                    .into_bytes()
                    .to_vec();
                (other, key)
            })
            .collect();
        Keys {
            me: me.clone(),
            pair,
        }
    }

    /// `body` from this replica, with a MAC for every member.
    pub fn sign(&self, body: Body) -> Signed {
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let macs = self
            .pair
            .iter()
            .map(|(to, key)| (to.clone(), hex(&mac(key, &bytes).finalize().into_bytes())))
            .collect();
        Signed {
            from: self.me.clone(),
            body,
            macs,
        }
    }

    /// Whether this replica's MAC in `msg` is right for its claimed sender.
    pub fn verify(&self, msg: &Signed) -> bool {
        let (Some(key), Some(tag)) = (self.pair.get(&msg.from), msg.macs.get(&self.me)) else {
            return false;
        };
        let Some(tag) = unhex(tag) else { return false };
        let bytes = serde_json::to_vec(&msg.body).unwrap_or_default();
        mac(key, &bytes).verify_slice(&tag).is_ok()
    }
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn keys(me: &str) -> Keys {
        let members = ["n1", "n2", "n3", "n4"].map(String::from);
        Keys::derive("secret", &me.to_string(), members)
    }

    #[test]
    fn a_mac_proves_the_sender_and_the_body_to_every_member() {
        let msg = keys("n1").sign(Body::Prepare {
            view: 1,
            seq: 7,
            digest: "ab".into(),
        });
        for me in ["n2", "n3", "n4", "n1"] {
            assert!(keys(me).verify(&msg), "{me}");
        }
        // Tampered on the wire, or claimed by another sender, or keyed with
        // another secret: refused.
        let mut changed = msg.clone();
        changed.body = Body::Prepare {
            view: 1,
            seq: 8,
            digest: "ab".into(),
        };
        assert!(!keys("n2").verify(&changed));
        let mut impostor = msg.clone();
        impostor.from = "n3".into();
        assert!(!keys("n2").verify(&impostor));
        let other = Keys::derive("other", &"n2".to_string(), ["n1".to_string()]);
        assert!(!other.verify(&msg));
        let mut garbled = msg;
        garbled.macs.insert("n2".into(), "zz".into());
        assert!(!keys("n2").verify(&garbled));
    }

    #[test]
    fn replicas_agree_on_a_request_whatever_their_clocks() {
        let at = |now: u64| Request {
            id: RequestId {
                client: "c1".into(),
                number: 3,
            },
            op: Op::Command(json!({"op": "acquire", "lock": "l", "now_ms": now})),
        };
        assert_eq!(at(5).client_digest(), at(9).client_digest());
        let mut other = at(5);
        other.id.number = 4;
        assert_ne!(at(5).client_digest(), other.client_digest());
    }
}
