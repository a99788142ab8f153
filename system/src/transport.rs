//! Node-to-node traffic: one TCP connection per directed link, each message a
//! frame of a 4-byte big-endian length and a JSON [`Envelope`] carrying a
//! [`Wire`] message: consensus traffic and the services' own peer protocols share
//! the links, so a cut link cuts them all.
//!
//! A node sends to a peer only over its own outgoing connection and receives only
//! on its listener, so each directed link is one connection: a proxy placed on it
//! (the address comes from configuration) can cut or slow one direction alone.
//! Messages to an unreachable peer are dropped; Raft retransmits.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::consensus::paxos::{self, PaxosHandle};
use crate::consensus::pbft::{self, PbftHandle};
use crate::consensus::raft::{self, RaftHandle};
use crate::log_line;
use crate::services::cache::{CacheMessage, CacheNode};
use crate::types::NodeId;

/// Largest frame accepted (snapshots included).
pub const MAX_FRAME: usize = 64 << 20;
/// Messages queued per outgoing link before new ones are dropped.
const LINK_QUEUE: usize = 8192;

/// What travels between nodes, tagged by the layer it is for.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Wire {
    /// Consensus: Raft's messages.
    Raft(raft::Message),
    /// Consensus: Multi-Paxos's messages.
    Paxos(paxos::Message),
    /// Consensus: PBFT's messages, each with its authenticator.
    Pbft(pbft::Signed),
    /// The distributed cache's calls between owners, and their answers.
    Cache(CacheMessage),
    /// Calls to a shard's consensus group on another node, and their answers.
    Shard(crate::services::shards::ShardMessage),
    /// Messages between members' mailboxes (`/cluster/send`, `/cluster/broadcast`).
    Mail(crate::services::mailbox::MailMessage),
}

impl From<raft::Message> for Wire {
    fn from(msg: raft::Message) -> Wire {
        Wire::Raft(msg)
    }
}

impl From<pbft::Signed> for Wire {
    fn from(msg: pbft::Signed) -> Wire {
        Wire::Pbft(msg)
    }
}

impl From<paxos::Message> for Wire {
    fn from(msg: paxos::Message) -> Wire {
        Wire::Paxos(msg)
    }
}

/// A message with its sender.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Envelope {
    /// Sending node.
    pub from: NodeId,
    /// Receiving node.
    pub to: NodeId,
    /// The consensus group it is for: 0 is the node's main group, others are
    /// shards (`--shards`); absent on the wire when 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub group: u32,
    /// The message.
    pub msg: Wire,
}

fn is_zero(g: &u32) -> bool {
    *g == 0
}

/// Encodes one frame.
pub fn encode(env: &Envelope) -> Vec<u8> {
    let body = serde_json::to_vec(env).unwrap_or_default();
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// Reads one frame's body; `None` at a clean end of stream.
pub async fn read_frame<R: AsyncReadExt + Unpin>(r: &mut R) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds {MAX_FRAME}"),
        ));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    Ok(Some(body))
}

struct Link {
    addr: String,
    tx: mpsc::Sender<Vec<u8>>,
}

/// Outgoing links to peers, created on first use; each consensus group sends
/// through its own view ([`Transport::for_group`]) of the same links.
pub struct Transport {
    id: NodeId,
    group: u32,
    runtime: tokio::runtime::Handle,
    links: Arc<Mutex<HashMap<NodeId, Link>>>,
}

impl Transport {
    /// A transport for node `id` spawning its link tasks on `runtime`.
    pub fn new(id: NodeId, runtime: tokio::runtime::Handle) -> Self {
        Transport {
            id,
            group: 0,
            runtime,
            links: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// The same links, tagging what is sent as group `group`'s.
    pub fn for_group(&self, group: u32) -> Transport {
        Transport {
            id: self.id.clone(),
            group,
            runtime: self.runtime.clone(),
            links: self.links.clone(),
        }
    }

    /// Queues `msg` for `to` at `addr`; drops it if the link's queue is full.
    pub fn send(&self, to: &NodeId, addr: &str, msg: impl Into<Wire>) {
        let frame = encode(&Envelope {
            from: self.id.clone(),
            to: to.clone(),
            group: self.group,
            msg: msg.into(),
        });
        let mut links = self.links.lock().unwrap_or_else(|e| e.into_inner());
        let stale = links
            .get(to)
            .is_none_or(|l| l.addr != addr || l.tx.is_closed());
        if stale {
            let (tx, rx) = mpsc::channel(LINK_QUEUE);
            self.runtime
                .spawn(run_link(self.id.clone(), to.clone(), addr.to_string(), rx));
            links.insert(
                to.clone(),
                Link {
                    addr: addr.to_string(),
                    tx,
                },
            );
        }
        if let Some(link) = links.get(to) {
            let _ = link.tx.try_send(frame);
        }
    }

    /// Forgets the link to a removed member.
    pub fn forget(&self, peer: &NodeId) {
        self.links
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(peer);
    }
}

async fn run_link(me: NodeId, peer: NodeId, addr: String, mut rx: mpsc::Receiver<Vec<u8>>) {
    let mut backoff = Duration::from_millis(20);
    let mut logged = false;
    loop {
        let conn =
            tokio::time::timeout(Duration::from_millis(500), TcpStream::connect(&addr)).await;
        let mut stream = match conn {
            Ok(Ok(s)) => s,
            _ => {
                if !logged {
                    log_line!(me, "link to {peer} at {addr}: cannot connect, retrying");
                    logged = true;
                }
                // Whatever queued while the peer was unreachable is stale now.
                while rx.try_recv().is_ok() {}
                if rx.is_closed() {
                    return;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(500));
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        logged = false;
        backoff = Duration::from_millis(20);
        loop {
            let Some(frame) = rx.recv().await else { return };
            // Coalesce what is already queued into one write.
            let mut batch = frame;
            while batch.len() < (1 << 20) {
                match rx.try_recv() {
                    Ok(more) => batch.extend_from_slice(&more),
                    Err(_) => break,
                }
            }
            if stream.write_all(&batch).await.is_err() {
                break;
            }
        }
        tokio::time::sleep(backoff).await;
    }
}

/// The consensus thread a node runs, as its peer messages reach it.
pub enum ConsensusInbox {
    /// Raft.
    Raft(RaftHandle),
    /// Multi-Paxos.
    Paxos(PaxosHandle),
    /// PBFT.
    Pbft(PbftHandle),
}

/// Where received messages go: each layer's receiver.
pub struct Receivers {
    /// Consensus: the main group.
    pub consensus: ConsensusInbox,
    /// The shard groups this node hosts, by group number.
    pub groups: HashMap<u32, ConsensusInbox>,
    /// The distributed cache.
    pub cache: Arc<CacheNode>,
    /// Calls to this node's shard groups (none when unsharded).
    pub shards: Option<Arc<crate::services::shards::Shards>>,
    /// The mailbox.
    pub mailbox: Arc<crate::services::mailbox::Mailbox>,
}

impl Receivers {
    fn receive(&self, env: Envelope) {
        let consensus = if env.group == 0 {
            &self.consensus
        } else if let Some(group) = self.groups.get(&env.group) {
            group
        } else {
            if !matches!(env.msg, Wire::Shard(_) | Wire::Mail(_)) {
                log_line!(
                    "-",
                    "dropping a message from {} for group {}, which this node does not host",
                    env.from,
                    env.group
                );
                return;
            }
            &self.consensus
        };
        if let Wire::Mail(msg) = env.msg {
            self.mailbox.receive(env.from, msg);
            return;
        }
        if let Wire::Shard(msg) = env.msg {
            match &self.shards {
                Some(shards) => shards.receive(env.from, msg),
                None => log_line!(
                    "-",
                    "dropping a shard call from {}: this node is not sharded",
                    env.from
                ),
            }
            return;
        }
        match (env.msg, consensus) {
            (Wire::Raft(msg), ConsensusInbox::Raft(raft)) => raft.deliver(env.from, msg),
            (Wire::Paxos(msg), ConsensusInbox::Paxos(paxos)) => paxos.deliver(env.from, msg),
            (Wire::Pbft(msg), ConsensusInbox::Pbft(pbft)) => pbft.deliver(env.from, msg),
            (Wire::Cache(msg), _) => self.cache.receive(env.from, msg),
            (_, _) => crate::log_line!(
                "-",
                "dropping a consensus message from {} for another protocol (mixed --consensus?)",
                env.from
            ),
        }
    }
}

/// Accepts peer connections and hands each message to its layer's receiver.
pub async fn serve(me: NodeId, listener: TcpListener, receivers: Arc<Receivers>) {
    loop {
        let Ok((mut stream, remote)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let me = me.clone();
        let receivers = receivers.clone();
        tokio::spawn(async move {
            loop {
                match read_frame(&mut stream).await {
                    Ok(Some(body)) => match serde_json::from_slice::<Envelope>(&body) {
                        Ok(env) if env.to == me => receivers.receive(env),
                        Ok(env) => {
                            log_line!(
                                me,
                                "dropping a message from {} meant for {}",
                                env.from,
                                env.to
                            );
                        }
                        Err(e) => {
                            log_line!(
                                me,
                                "malformed frame from {remote}: {e}; closing the connection"
                            );
                            return;
                        }
                    },
                    Ok(None) => return,
                    Err(e) => {
                        log_line!(me, "connection from {remote}: {e}");
                        return;
                    }
                }
            }
        });
    }
}
