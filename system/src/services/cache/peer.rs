//! The distributed cache across nodes: keys placed on a consistent-hash ring of
//! the configured members, each kept by `replicas` owners. A read goes to the
//! key's first owner that answers, which serves its copy or reads through to
//! the Raft store and copies the value to the other owners; a write goes to the
//! store, then invalidates every owner's copy before it is acknowledged.
//! Invalidations not confirmed in time are retried with exponential backoff and
//! jitter until confirmed or until every copy older than the write has outlived
//! its time to live.
//!
//! Calls between nodes travel as [`CacheMessage`]s on the peer links (the
//! transport's [`Wire::Cache`]), so the harness's partitions, delays and losses
//! apply to them as to consensus.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::oneshot;

use crate::consensus::{Consensus, Reply};
use crate::log_line;
use crate::ring::Ring;
use crate::transport::{Transport, Wire};
use crate::types::NodeId;

use super::local::{Fill, LocalCache, State};
use super::store::read_query;

/// A request from one node's cache to another's.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum CacheCall {
    /// Serve a read of `key` as its owner.
    Get {
        /// The key.
        key: String,
    },
    /// Read `key` from the store (sent to the Raft leader).
    StoreRead {
        /// The key.
        key: String,
    },
    /// Keep a copy of a value the owner read from the store.
    Fill {
        /// The key.
        key: String,
        /// Its value.
        value: Value,
        /// Revision of the write that produced it.
        rev: u64,
        /// The store's revision when it was read.
        read_rev: u64,
        /// How long the copy may still be served.
        ttl_left_ms: u64,
    },
    /// Drop copies older than the write at revision `rev`.
    Invalidate {
        /// The key.
        key: String,
        /// The write's revision.
        rev: u64,
    },
}

/// Cache traffic between two nodes: a call, or the answer to one.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum CacheMessage {
    /// A request to the cache on another node.
    Call {
        /// Matches the answer to the call.
        id: u64,
        /// What is asked.
        call: CacheCall,
    },
    /// The answer to the [`CacheMessage::Call`] with the same `id`.
    Answer {
        /// The call's id.
        id: u64,
        /// Its outcome.
        result: Result<Value, String>,
    },
}

impl From<CacheMessage> for Wire {
    fn from(msg: CacheMessage) -> Wire {
        Wire::Cache(msg)
    }
}

/// How the cache is laid out and how long it waits.
#[derive(Clone, Debug)]
pub struct CacheConfig {
    /// Owners per key.
    pub replicas: usize,
    /// Entries per node.
    pub capacity: usize,
    /// How long a copy is served after the store read that produced it began.
    pub ttl: Duration,
    /// Virtual nodes per member on the ring.
    pub vnodes: usize,
    /// How long a call to another node may take before the next owner is tried.
    pub call_timeout: Duration,
    /// Planted bug: acknowledge writes without invalidating any copy.
    pub skip_invalidate: bool,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            replicas: 2,
            capacity: 1024,
            ttl: Duration::from_millis(2000),
            vnodes: 128,
            call_timeout: Duration::from_millis(300),
            skip_invalidate: false,
        }
    }
}

/// A read's answer.
#[derive(Clone, Debug, Serialize)]
pub struct Served {
    /// The value (`null`: absent).
    pub value: Value,
    /// Revision of the write that produced it.
    pub rev: u64,
    /// Whether it came from a cached copy.
    pub hit: bool,
    /// The node that served it.
    pub node: NodeId,
}

/// One node's part of the distributed cache: its copies, its place on the ring
/// and its calls to the other owners.
pub struct CacheNode {
    id: NodeId,
    cfg: CacheConfig,
    ring: Ring,
    peers: BTreeMap<NodeId, String>,
    transport: Arc<Transport>,
    consensus: Arc<dyn Consensus>,
    /// Stamps writes with a time to live and judges their expiry.
    clock: Arc<crate::clock::Clock>,
    local: Mutex<LocalCache>,
    pending: Mutex<HashMap<u64, oneshot::Sender<Result<Value, String>>>>,
    next_call: AtomicU64,
}

impl CacheNode {
    /// The cache of node `id`, whose ring holds it and its configured `peers`.
    pub fn new(
        id: NodeId,
        cfg: CacheConfig,
        peers: BTreeMap<NodeId, String>,
        transport: Arc<Transport>,
        consensus: Arc<dyn Consensus>,
        clock: Arc<crate::clock::Clock>,
    ) -> Self {
        let ring = Ring::with(
            cfg.vnodes,
            peers.keys().cloned().chain(std::iter::once(id.clone())),
        );
        CacheNode {
            local: Mutex::new(LocalCache::new(cfg.capacity)),
            id,
            cfg,
            ring,
            peers,
            transport,
            consensus,
            clock,
            pending: Mutex::new(HashMap::new()),
            next_call: AtomicU64::new(1),
        }
    }

    /// This node's clock now, in ms since the epoch.
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms().max(0) as u64
    }

    fn local(&self) -> std::sync::MutexGuard<'_, LocalCache> {
        self.local.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The nodes keeping `key`, first owner first.
    pub fn owners(&self, key: &str) -> Vec<NodeId> {
        self.ring
            .owners(key, self.cfg.replicas)
            .into_iter()
            .map(str::to_string)
            .collect()
    }

    /// This node's counters and settings, for `GET /cache`.
    pub fn stats(&self) -> Value {
        let local = self.local();
        json!({"node": self.id, "entries": local.len(), "capacity": local.capacity(),
               "ttl_ms": self.cfg.ttl.as_millis() as u64, "replicas": self.cfg.replicas,
               "floor": local.floor(), "stats": local.stats()})
    }

    /// This node's own entry for `key` (tombstones too), touching nothing.
    pub fn inspect(&self, key: &str) -> Value {
        let local = self.local();
        let found = local.peek(key, Instant::now());
        match (found, local.state(key)) {
            (Some(f), _) => json!({"state": f.state, "value": f.value, "rev": f.rev}),
            (None, Some((State::Invalid, rev))) => json!({"state": State::Invalid, "rev": rev}),
            _ => json!({"state": null}),
        }
    }

    /// Learns the floor for copies from other owners: the store's revision
    /// read after this node started. Until then it takes copies only from its
    /// own reads, since a restart forgot every tombstone it held.
    pub async fn learn_floor(self: Arc<Self>) {
        let mut backoff = Duration::from_millis(50);
        loop {
            if let Ok(read) = self.read_store("").await {
                if let Some(rev) = read.get("read_rev").and_then(Value::as_u64) {
                    self.local().learn_floor(rev);
                    return;
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(200));
        }
    }

    /// Calls `call` on node `to`; `Err` if it does not answer within the call timeout.
    async fn call(&self, to: &NodeId, call: CacheCall) -> Result<Value, String> {
        let Some(addr) = self.peers.get(to) else {
            return Err(format!("{to} is not a peer"));
        };
        let id = self.next_call.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, tx);
        self.transport
            .send(to, addr, CacheMessage::Call { id, call });
        let answer = tokio::time::timeout(self.cfg.call_timeout, rx).await;
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        match answer {
            Ok(Ok(result)) => result,
            _ => Err(format!(
                "no answer from {to} within {} ms",
                self.cfg.call_timeout.as_millis()
            )),
        }
    }

    /// Handles cache traffic from a peer: answers calls, completes our calls.
    pub fn receive(self: &Arc<Self>, from: NodeId, msg: CacheMessage) {
        match msg {
            CacheMessage::Answer { id, result } => {
                let waiter = self
                    .pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&id);
                if let Some(tx) = waiter {
                    let _ = tx.send(result);
                }
            }
            CacheMessage::Call { id, call } => {
                let me = self.clone();
                tokio::spawn(async move {
                    let result = me.answer(call).await;
                    if let Some(addr) = me.peers.get(&from) {
                        me.transport
                            .send(&from, addr, CacheMessage::Answer { id, result });
                    }
                });
            }
        }
    }

    async fn answer(self: &Arc<Self>, call: CacheCall) -> Result<Value, String> {
        match call {
            CacheCall::Get { key } => self
                .serve(&key)
                .await
                .and_then(|s| serde_json::to_value(s).map_err(|e| e.to_string())),
            CacheCall::StoreRead { key } => self.read_local_store(&key).await,
            CacheCall::Fill {
                key,
                value,
                rev,
                read_rev,
                ttl_left_ms,
            } => {
                let now = Instant::now();
                let installed = self.local().fill(
                    Fill {
                        key,
                        value,
                        rev,
                        read_rev,
                        expires: now + Duration::from_millis(ttl_left_ms),
                        state: State::Shared,
                    },
                    now,
                );
                Ok(json!({"installed": installed}))
            }
            CacheCall::Invalidate { key, rev } => {
                self.local().invalidate(&key, rev);
                Ok(json!({}))
            }
        }
    }

    /// A linearizable read through this node's consensus, if it leads.
    async fn read_local_store(&self, key: &str) -> Result<Value, String> {
        let rx = self
            .consensus
            .read(read_query(key, self.now_ms()))
            .map_err(|_| "request queue full".to_string())?;
        match tokio::time::timeout(self.cfg.call_timeout, rx).await {
            Ok(Ok(Reply::Ok(v))) => Ok(v),
            Ok(Ok(Reply::NotLeader(leader))) => {
                Err(format!("not-leader:{}", leader.unwrap_or_default()))
            }
            Ok(Ok(
                Reply::Unavailable(m)
                | Reply::Indeterminate(m)
                | Reply::NotFound(m)
                | Reply::Refused(m),
            )) => Err(m),
            _ => Err("no answer from the store in time".into()),
        }
    }

    /// A linearizable read of the store: here if this node leads, else at the leader.
    async fn read_store(&self, key: &str) -> Result<Value, String> {
        match self.read_local_store(key).await {
            Err(e) if e.starts_with("not-leader:") => {
                let leader = e["not-leader:".len()..].to_string();
                if leader.is_empty() || leader == self.id {
                    return Err("no known leader".into());
                }
                self.call(
                    &leader,
                    CacheCall::StoreRead {
                        key: key.to_string(),
                    },
                )
                .await
            }
            other => other,
        }
    }

    /// Serves a read of `key` as one of its owners: the cached copy, or a read
    /// through to the store whose value is kept here and copied to the others.
    pub async fn serve(self: &Arc<Self>, key: &str) -> Result<Served, String> {
        let hit = self.local().get(key, Instant::now());
        if let Some(found) = hit {
            return Ok(Served {
                value: found.value,
                rev: found.rev,
                hit: true,
                node: self.id.clone(),
            });
        }
        // The copy's life starts before the read: a copy of a value some later
        // write replaced is then never served past `ttl` after that write.
        let started = Instant::now();
        let read = self.read_store(key).await?;
        let (value, rev, read_rev) = (
            read.get("value").cloned().unwrap_or(Value::Null),
            read.get("rev").and_then(Value::as_u64).unwrap_or(0),
            read.get("read_rev").and_then(Value::as_u64).unwrap_or(0),
        );
        // A value written with a time to live is not kept past it either.
        let mut expires = started + self.cfg.ttl;
        if let Some(at) = read.get("expires_at_ms").and_then(Value::as_u64) {
            let left = Duration::from_millis(at.saturating_sub(self.now_ms()));
            expires = expires.min(started + left);
        }
        let installed = {
            let mut local = self.local();
            local.learn_floor(read_rev);
            local.fill(
                Fill {
                    key: key.to_string(),
                    value: value.clone(),
                    rev,
                    read_rev,
                    expires,
                    state: State::Exclusive,
                },
                Instant::now(),
            )
        };
        if installed {
            for owner in self.owners(key).into_iter().filter(|o| *o != self.id) {
                let me = self.clone();
                let (key, value) = (key.to_string(), value.clone());
                let ttl_left_ms = expires
                    .saturating_duration_since(Instant::now())
                    .as_millis() as u64;
                tokio::spawn(async move {
                    let call = CacheCall::Fill {
                        key: key.clone(),
                        value,
                        rev,
                        read_rev,
                        ttl_left_ms,
                    };
                    if let Ok(answer) = me.call(&owner, call).await {
                        if answer["installed"] == json!(true) {
                            me.local().shared(&key, rev);
                        }
                    }
                });
            }
        }
        Ok(Served {
            value,
            rev,
            hit: false,
            node: self.id.clone(),
        })
    }

    /// A client's read: the first owner of `key` that answers serves it.
    pub async fn read(self: &Arc<Self>, key: &str) -> Result<Served, String> {
        let mut errors = Vec::new();
        for owner in self.owners(key) {
            let result = if owner == self.id {
                self.serve(key).await
            } else {
                self.call(
                    &owner,
                    CacheCall::Get {
                        key: key.to_string(),
                    },
                )
                .await
                .map(|v| Served {
                    value: v.get("value").cloned().unwrap_or(Value::Null),
                    rev: v.get("rev").and_then(Value::as_u64).unwrap_or(0),
                    hit: v.get("hit").and_then(Value::as_bool).unwrap_or(false),
                    node: owner.clone(),
                })
            };
            match result {
                Ok(s) => return Ok(s),
                Err(e) => errors.push(format!("{owner}: {e}")),
            }
        }
        Err(errors.join("; "))
    }

    async fn invalidate_at(self: &Arc<Self>, owner: &NodeId, key: &str, rev: u64) -> bool {
        if *owner == self.id {
            self.local().invalidate(key, rev);
            return true;
        }
        let call = CacheCall::Invalidate {
            key: key.to_string(),
            rev,
        };
        self.call(owner, call).await.is_ok()
    }

    /// Invalidates every owner's copy of `key` older than the write at `rev`.
    /// Answers the owners that did not confirm; those keep being retried in the
    /// background until they confirm or `ttl` has passed (by then every older
    /// copy has expired).
    pub async fn invalidate(self: &Arc<Self>, key: &str, rev: u64) -> Vec<NodeId> {
        if self.cfg.skip_invalidate {
            return Vec::new();
        }
        let stored = Instant::now();
        let owners = self.owners(key);
        // Ask every owner at once, then collect the confirmations.
        let asks: Vec<_> = owners
            .iter()
            .map(|o| {
                let (me, o, key) = (self.clone(), o.clone(), key.to_string());
                tokio::spawn(async move { me.invalidate_at(&o, &key, rev).await })
            })
            .collect();
        let mut missing = Vec::new();
        for (owner, ask) in owners.into_iter().zip(asks) {
            if !ask.await.unwrap_or(false) {
                missing.push(owner);
            }
        }
        for owner in &missing {
            let (me, owner, key) = (self.clone(), owner.clone(), key.to_string());
            tokio::spawn(async move { me.retry_invalidation(owner, key, rev, stored).await });
        }
        missing
    }

    async fn retry_invalidation(
        self: Arc<Self>,
        owner: NodeId,
        key: String,
        rev: u64,
        since: Instant,
    ) {
        let mut backoff = Duration::from_millis(20);
        let mut salt = rev ^ crate::ring::hash(owner.as_bytes());
        while since.elapsed() < self.cfg.ttl {
            // Full jitter: sleep a random part of the current backoff.
            salt = crate::ring::hash(&salt.to_le_bytes());
            let sleep = backoff.mul_f64((salt % 1000) as f64 / 1000.0);
            tokio::time::sleep(sleep).await;
            if self.invalidate_at(&owner, &key, rev).await {
                return;
            }
            backoff = (backoff * 2).min(Duration::from_millis(500));
        }
        log_line!(
            self.id,
            "cache: gave up invalidating {key}@{rev} on {owner}; its copies have expired"
        );
    }
}
