//! Reaching a shard's consensus group from any node: directly when this node
//! hosts it, otherwise by a call over the peer links ([`ShardMessage`]) to a
//! member, which hands it to its own copy of the group. Calls follow the
//! leader a member names and move on to the next member when one is silent.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::oneshot;

use super::placement::Placement;
use crate::bugs::Bugs;
use crate::consensus::{Asked, Consensus, Refused, Reply};
use crate::log_line;
use crate::transport::{Transport, Wire};
use crate::types::NodeId;

/// What a call asks of a group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Order a command in the group's log.
    Propose,
    /// A linearizable read of the group's state.
    Read,
    /// The member's view of the group (`Status`).
    Status,
}

/// A group's answer as it travels between nodes.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "type", content = "detail", rename_all = "kebab-case")]
pub enum Answer {
    /// Done: the result.
    Ok(Value),
    /// The member is not the group's leader; the one it knows, if any.
    NotLeader(Option<NodeId>),
    /// Refused before anything was proposed.
    Unavailable(String),
    /// Proposed, outcome unknown.
    Indeterminate(String),
    /// Refused, definitely (not found, unsafe now).
    Refused(String),
    /// The receiving node does not host the group.
    NotHosted,
}

impl From<Reply> for Answer {
    fn from(r: Reply) -> Answer {
        match r {
            Reply::Ok(v) => Answer::Ok(v),
            Reply::NotLeader(l) => Answer::NotLeader(l),
            Reply::Unavailable(m) => Answer::Unavailable(m),
            Reply::Indeterminate(m) => Answer::Indeterminate(m),
            Reply::NotFound(m) | Reply::Refused(m) => Answer::Refused(m),
        }
    }
}

/// Shard traffic between two nodes.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ShardMessage {
    /// Ask group `group` on the receiving node.
    Call {
        /// Matches the answer.
        id: u64,
        /// The group (0: the main group).
        group: u32,
        /// What is asked.
        kind: Kind,
        /// The command or query.
        body: Value,
    },
    /// The answer to the call with the same `id`.
    Answer {
        /// The call's id.
        id: u64,
        /// Its outcome.
        answer: Answer,
    },
}

impl From<ShardMessage> for Wire {
    fn from(msg: ShardMessage) -> Wire {
        Wire::Shard(msg)
    }
}

/// How long one try at one member may take before the next is tried.
const TRY_TIMEOUT: Duration = Duration::from_millis(500);

/// A node's access to every shard group, and its coordinator of transactions.
pub struct Shards {
    pub(super) me: NodeId,
    pub(super) placement: Placement,
    /// Groups this node hosts (0, the main group, always).
    pub(super) local: HashMap<u32, Arc<dyn Consensus>>,
    peers: BTreeMap<NodeId, String>,
    transport: Arc<Transport>,
    /// Calls awaiting answers, by callee and call id (an answer from anyone
    /// else, or meant for an earlier run of this node, completes nothing).
    pending: Mutex<HashMap<(NodeId, u64), oneshot::Sender<Answer>>>,
    next_call: AtomicU64,
    leaders: Mutex<HashMap<u32, NodeId>>,
    /// How long a client request may take in all.
    pub(super) request_timeout: Duration,
    /// Transactions started here, for ids unique across restarts.
    pub(super) next_txn: AtomicU64,
    pub(super) bugs: Bugs,
    /// Transactions this node's sweep saw prepared, and since when.
    pub(super) in_doubt: Mutex<HashMap<(u32, String), Instant>>,
    /// Three-phase commit instead of two (`--txn 3pc`).
    pub(super) three_phase: bool,
}

impl Shards {
    /// Access for node `me` to the groups of `placement`, those in `local` run here.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        me: NodeId,
        placement: Placement,
        local: HashMap<u32, Arc<dyn Consensus>>,
        peers: BTreeMap<NodeId, String>,
        transport: Arc<Transport>,
        request_timeout: Duration,
        bugs: Bugs,
        three_phase: bool,
    ) -> Shards {
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Shards {
            me,
            placement,
            local,
            peers,
            transport,
            pending: Mutex::new(HashMap::new()),
            // Ids differ from the previous run's, whose answers may still come.
            next_call: AtomicU64::new(started * 1000),
            leaders: Mutex::new(HashMap::new()),
            request_timeout,
            next_txn: AtomicU64::new(started * 1000),
            bugs,
            in_doubt: Mutex::new(HashMap::new()),
            three_phase,
        }
    }

    /// The shards' layout.
    pub fn placement(&self) -> &Placement {
        &self.placement
    }

    fn members(&self, group: u32) -> Vec<NodeId> {
        if group == 0 {
            let mut all: Vec<NodeId> = self.peers.keys().cloned().collect();
            all.push(self.me.clone());
            all.sort();
            all
        } else {
            self.placement.members(group).to_vec()
        }
    }

    /// Asks this node's own copy of `group`.
    async fn ask_local(&self, group: u32, kind: Kind, body: Value, wait: Duration) -> Answer {
        let Some(c) = self.local.get(&group) else {
            return Answer::NotHosted;
        };
        let asked: Asked<Value> = match kind {
            Kind::Propose => return wait_reply(c.propose(body), wait).await,
            Kind::Read => return wait_reply(c.read(body), wait).await,
            Kind::Status => c.status().map(|rx| {
                let (tx, out) = oneshot::channel();
                tokio::spawn(async move {
                    if let Ok(s) = rx.await {
                        let _ = tx.send(serde_json::to_value(s).unwrap_or(Value::Null));
                    }
                });
                out
            }),
        };
        match asked {
            Ok(rx) => match tokio::time::timeout(wait, rx).await {
                Ok(Ok(v)) => Answer::Ok(v),
                _ => Answer::Unavailable("no status".into()),
            },
            Err(r) => refused(r),
        }
    }

    /// Asks `group` at member `to` (this node's copy if `to` is this node).
    async fn ask(
        &self,
        to: &NodeId,
        group: u32,
        kind: Kind,
        body: Value,
        wait: Duration,
    ) -> Option<Answer> {
        if *to == self.me {
            return Some(self.ask_local(group, kind, body, wait).await);
        }
        let addr = self.peers.get(to)?;
        let id = self.next_call.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((to.clone(), id), tx);
        self.transport.send(
            to,
            addr,
            ShardMessage::Call {
                id,
                group,
                kind,
                body,
            },
        );
        let answer = tokio::time::timeout(wait, rx).await;
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(to.clone(), id));
        answer.ok().and_then(Result::ok)
    }

    /// Asks `group` until an answer or `deadline`, following leaders. A call
    /// whose outcome is unknown is tried again elsewhere only if `idempotent`
    /// (asking twice does what asking once does); otherwise the unknown
    /// outcome is the answer.
    pub(crate) async fn call(
        &self,
        group: u32,
        kind: Kind,
        body: Value,
        idempotent: bool,
        deadline: Instant,
    ) -> Answer {
        let members = self.members(group);
        if members.is_empty() {
            return Answer::Refused(format!("no shard {group}"));
        }
        let mut next = 0usize;
        let mut last = Answer::Unavailable(format!("no member of group {group} answered"));
        let mut uncertain = false;
        loop {
            let now = Instant::now();
            if now >= deadline {
                return if uncertain {
                    Answer::Indeterminate(format!("group {group}: no answer in time"))
                } else {
                    last
                };
            }
            let hint = self
                .leaders
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&group)
                .cloned();
            let to = match hint {
                Some(l) => l,
                // A call that cannot be repeated goes to a leader some member
                // names, not to whoever is next (which may be down).
                None if kind == Kind::Propose && !idempotent => {
                    match self.find_leader(group, &members, deadline).await {
                        Some(l) => l,
                        None => continue,
                    }
                }
                None => {
                    next += 1;
                    members[next % members.len()].clone()
                }
            };
            // A call that cannot be repeated waits for its member as long as
            // the caller may: giving up early would leave its outcome unknown.
            let wait = if kind == Kind::Propose && !idempotent {
                deadline - now
            } else {
                TRY_TIMEOUT.min(deadline - now)
            };
            let answer = self.ask(&to, group, kind, body.clone(), wait).await;
            let forget = || {
                self.leaders
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&group);
            };
            match answer {
                Some(Answer::NotLeader(Some(l))) if l != to && members.contains(&l) => {
                    self.leaders
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(group, l);
                    // Two members naming each other mid-election: do not spin.
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    continue;
                }
                Some(a @ (Answer::NotLeader(_) | Answer::Unavailable(_) | Answer::NotHosted)) => {
                    forget();
                    last = a;
                }
                Some(Answer::Indeterminate(_)) | None if kind == Kind::Propose => {
                    forget();
                    if !idempotent {
                        return answer.unwrap_or_else(|| {
                            Answer::Indeterminate(format!("group {group}: {to} did not answer"))
                        });
                    }
                    uncertain = true;
                }
                None | Some(Answer::Indeterminate(_)) => forget(),
                Some(a) => {
                    self.leaders
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(group, to);
                    // After a try whose outcome is unknown, only success is
                    // certain: a refusal now says nothing of that try.
                    if uncertain && !matches!(a, Answer::Ok(_)) {
                        return Answer::Indeterminate(format!(
                            "group {group}: an earlier try's outcome is unknown"
                        ));
                    }
                    return a;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The leader of `group` as the first member to answer names it (one
    /// round over the members; `None` if none knows, after a short pause).
    async fn find_leader(
        &self,
        group: u32,
        members: &[NodeId],
        deadline: Instant,
    ) -> Option<NodeId> {
        for m in members {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            let wait = Duration::from_millis(200).min(left);
            if let Some(Answer::Ok(s)) = self.ask(m, group, Kind::Status, Value::Null, wait).await {
                if let Some(l) = s.get("leader").and_then(Value::as_str) {
                    if members.iter().any(|x| x == l) {
                        return Some(l.to_string());
                    }
                }
            }
        }
        tokio::time::sleep(
            Duration::from_millis(20).min(deadline.saturating_duration_since(Instant::now())),
        )
        .await;
        None
    }

    /// Handles shard traffic from a peer: serves calls, completes our own.
    pub fn receive(self: &Arc<Self>, from: NodeId, msg: ShardMessage) {
        match msg {
            ShardMessage::Answer { id, answer } => {
                let waiter = self
                    .pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&(from, id));
                if let Some(w) = waiter {
                    let _ = w.send(answer);
                }
            }
            ShardMessage::Call {
                id,
                group,
                kind,
                body,
            } => {
                let Some(addr) = self.peers.get(&from).cloned() else {
                    log_line!(self.me, "dropping a shard call from {from}, not a peer");
                    return;
                };
                let me = self.clone();
                tokio::spawn(async move {
                    let answer = me.ask_local(group, kind, body, me.request_timeout).await;
                    me.transport
                        .send(&from, &addr, ShardMessage::Answer { id, answer });
                });
            }
        }
    }
}

fn refused(r: Refused) -> Answer {
    Answer::Unavailable(match r {
        Refused::Overloaded => "overloaded: request queue full".into(),
        Refused::Stopped => "node is shutting down".into(),
    })
}

async fn wait_reply(asked: Asked<Reply>, wait: Duration) -> Answer {
    match asked {
        Ok(rx) => match tokio::time::timeout(wait, rx).await {
            Ok(Ok(r)) => r.into(),
            Ok(Err(_)) => {
                Answer::Indeterminate("the group stopped while the request was in flight".into())
            }
            Err(_) => Answer::Indeterminate(format!("no answer within {} ms", wait.as_millis())),
        },
        Err(r) => refused(r),
    }
}
