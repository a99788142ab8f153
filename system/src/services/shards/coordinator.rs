//! Transactions across shards. A transaction whose keys all live on one shard
//! is one command in that shard's log. One that spans shards runs two-phase
//! commit: every participant shard prepares (locks, reads, the values it would
//! write, all in one logged command) and votes; the decision is recorded once
//! in the main group (the coordinator's durable state); then each participant
//! is told. A participant left holding a prepared transaction (its
//! coordinator crashed or was cut off) asks the main group for the decision,
//! proposing abort, so whatever the coordinator had in flight is finished
//! (if it was decided commit) or aborted, and never half of each.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::task::JoinSet;

use super::participant::Age;
use super::rpc::{Answer, Kind, Shards};
use crate::bugs::Bug;
use crate::log_line;
use crate::services::txn::parse_op;

/// How a transaction failed, as the client API tells it.
#[derive(Debug, Clone, PartialEq)]
pub enum TxnError {
    /// A micro-op cannot run (appending to a register, a balance below zero):
    /// definite.
    Failed(String),
    /// Aborted (a lock conflict under wait-die, a participant that could not
    /// prepare): definite, nothing was written.
    Aborted(String),
    /// Refused before anything was decided: definite.
    Unavailable(String),
    /// The outcome is unknown.
    Indeterminate(String),
}

/// How one try at two-phase commit ended.
enum Attempt {
    /// Finished: committed, or failed for good.
    Done(Result<BTreeMap<u32, Value>, TxnError>),
    /// Aborted before any decision, for a reason that may pass (a lock).
    Again(TxnError),
}

/// One participant's vote.
enum Vote {
    Yes(Value),
    /// Cannot commit: a micro-op fails here.
    Fails(String),
    /// Cannot commit now: a lock, a refusal, no leader.
    No(String),
    /// Its prepare may or may not have been recorded.
    Unknown(String),
}

/// Crash points: named places in the coordinator where an armed node exits
/// at once, as if it crashed there (armed through the admin API).
pub mod crash {
    use std::collections::BTreeSet;
    use std::sync::Mutex;

    /// Every point, in protocol order.
    pub const POINTS: &[&str] = &[
        "after-prepare",
        "after-decision",
        "after-first-commit",
        "saga-after-reserve",
        "saga-before-recording-charge",
    ];

    static ARMED: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());

    /// Arms `point` (`none` disarms every point); the next transaction to
    /// reach an armed point ends the process.
    pub fn arm(point: &str) -> Result<(), String> {
        if point == "none" {
            ARMED.lock().unwrap_or_else(|e| e.into_inner()).clear();
            return Ok(());
        }
        let p = POINTS.iter().find(|p| **p == point).ok_or_else(|| {
            format!(
                "unknown crash point `{point}` (known: {})",
                POINTS.join(", ")
            )
        })?;
        ARMED.lock().unwrap_or_else(|e| e.into_inner()).insert(p);
        Ok(())
    }

    /// The points armed now.
    pub fn armed() -> Vec<&'static str> {
        ARMED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .copied()
            .collect()
    }

    /// Ends the process if `point` is armed.
    pub(crate) fn reach(me: &str, point: &str) {
        if ARMED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(point)
        {
            crate::log_line!(me, "crash point {point} reached: exiting");
            std::process::exit(86);
        }
    }
}

/// The ops of a transaction, split by shard, each with its place in the whole.
type Parts = BTreeMap<u32, Vec<(usize, Value)>>;

fn ops_of(part: &[(usize, Value)]) -> Vec<Value> {
    part.iter().map(|(_, op)| op.clone()).collect()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Shards {
    /// Runs a transaction; answers its micro-ops with reads filled in.
    pub async fn txn(self: &Arc<Self>, ops: Vec<Value>) -> Result<Value, TxnError> {
        let start = Instant::now();
        let budget = self
            .request_timeout
            .saturating_sub(Duration::from_millis(100));
        let deadline = start + budget;
        let mut parts: Parts = BTreeMap::new();
        for (i, op) in ops.iter().enumerate() {
            let (_, key, _) =
                parse_op(op).map_err(|e| TxnError::Failed(format!("micro-op {i}: {e}")))?;
            let shard = self.placement.shard_of(&key.to_string());
            parts.entry(shard).or_default().push((i, op.clone()));
        }
        let mut done = vec![Value::Null; ops.len()];
        if parts.len() == 1 {
            let (shard, part) = parts.into_iter().next().unwrap_or_default();
            let result = self.single(shard, ops_of(&part), deadline).await?;
            fill(&mut done, &part, &result);
            return Ok(Value::Array(done));
        }
        // Prepares may use 60% of the time; the rest is the decision's.
        let prepare_by = start + budget.mul_f32(0.6);
        let results = self.cross(&parts, prepare_by, deadline).await?;
        for (shard, part) in &parts {
            if let Some(r) = results.get(shard) {
                fill(&mut done, part, r);
            }
        }
        Ok(Value::Array(done))
    }

    /// A transaction on one shard: one command (or one read), waiting out
    /// the locks of prepared transactions (it holds none, so it cannot
    /// close a cycle of waits).
    async fn single(
        &self,
        shard: u32,
        ops: Vec<Value>,
        deadline: Instant,
    ) -> Result<Value, TxnError> {
        let read_only = ops.iter().all(|op| op[0] == "r");
        let mut backoff = Duration::from_millis(2);
        loop {
            let answer = if read_only {
                self.call(
                    shard,
                    Kind::Read,
                    json!({"shard-read": ops}),
                    true,
                    deadline,
                )
                .await
            } else {
                self.call(
                    shard,
                    Kind::Propose,
                    json!({"op": "shard-txn", "ops": ops}),
                    false,
                    deadline,
                )
                .await
            };
            let result = match answer {
                Answer::Ok(v) => v,
                Answer::Indeterminate(m) if !read_only => return Err(TxnError::Indeterminate(m)),
                Answer::Refused(m) => return Err(TxnError::Failed(m)),
                other => return Err(TxnError::Unavailable(describe(shard, &other))),
            };
            if result["ok"] == true {
                return Ok(result["ops"].clone());
            }
            if result["error"] != "locked" {
                return Err(TxnError::Failed(text(&result["error"])));
            }
            if Instant::now() + backoff >= deadline {
                return Err(TxnError::Unavailable(format!(
                    "shard {shard}: keys stayed locked by prepared transactions"
                )));
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(40));
        }
    }

    /// Two-phase commit over the shards in `parts`: each shard's reads.
    /// A transaction that dies under wait-die starts again (a new id, the
    /// same start time, so it grows older than newcomers and gets through)
    /// while the prepare deadline allows.
    async fn cross(
        self: &Arc<Self>,
        parts: &Parts,
        prepare_by: Instant,
        deadline: Instant,
    ) -> Result<BTreeMap<u32, Value>, TxnError> {
        let born = now_ms();
        let mut pause = Duration::from_millis(1);
        loop {
            match self.attempt(parts, born, prepare_by, deadline).await {
                Attempt::Done(result) => return result,
                Attempt::Again(why) => {
                    if Instant::now() + pause >= prepare_by {
                        return Err(why);
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(20));
                }
            }
        }
    }

    /// One try at two-phase commit of `parts`.
    async fn attempt(
        self: &Arc<Self>,
        parts: &Parts,
        born: u64,
        prepare_by: Instant,
        deadline: Instant,
    ) -> Attempt {
        let seq = self.next_txn.fetch_add(1, Ordering::Relaxed);
        let txn = format!("{}-{seq}", self.me);
        let age = Age(born, txn.clone());
        let read_only = parts.values().flatten().all(|(_, op)| op[0] == "r");
        let mut prepares = JoinSet::new();
        let span: Vec<u32> = parts.keys().copied().collect();
        for (shard, part) in parts {
            let mut command =
                json!({"op": "shard-prepare", "txn": txn, "age": age, "ops": ops_of(part)});
            if self.three_phase {
                // Each participant knows the others, to ask them if need be.
                command["shards"] = json!(span);
            }
            let (me, shard, age) = (self.clone(), *shard, age.clone());
            prepares
                .spawn(async move { (shard, me.prepare(shard, command, &age, prepare_by).await) });
        }
        let mut votes = BTreeMap::new();
        while let Some(Ok((shard, vote))) = prepares.join_next().await {
            votes.insert(shard, vote);
        }
        let yes: BTreeMap<u32, Value> = votes
            .iter()
            .filter_map(|(s, v)| match v {
                Vote::Yes(ops) => Some((*s, ops.clone())),
                _ => None,
            })
            .collect();
        let all_yes = yes.len() == parts.len();
        let commit = if self.bugs.has(Bug::CommitWithoutAllVotes) {
            !yes.is_empty()
        } else {
            all_yes
        };
        let shards: Vec<u32> = parts.keys().copied().collect();
        if read_only && all_yes {
            // The reads are one snapshot if every shard still held the locks
            // when told to release them (none was released by its sweep).
            let held = self.tell(&txn, &shards, false, deadline).await;
            if held == shards.len() {
                return Attempt::Done(Ok(yes));
            }
            return Attempt::Again(TxnError::Aborted(format!(
                "{txn}: a shard released the read locks before all were taken"
            )));
        }
        if !commit {
            let _ = self.tell(&txn, &shards, false, deadline).await;
            let again = votes
                .values()
                .all(|v| matches!(v, Vote::Yes(_) | Vote::No(_)));
            return if again {
                Attempt::Again(why_not(&votes))
            } else {
                Attempt::Done(Err(why_not(&votes)))
            };
        }
        crash::reach(&self.me, "after-prepare");
        if self.three_phase {
            return Attempt::Done(
                self.precommit_then_commit(&txn, &shards, yes, deadline)
                    .await,
            );
        }
        let decided = self
            .call(
                0,
                Kind::Propose,
                json!({"op": "txn-decide", "txn": txn, "commit": true}),
                true,
                deadline,
            )
            .await;
        Attempt::Done(match decided {
            Answer::Ok(v) if v["commit"] == true => {
                crash::reach(&self.me, "after-decision");
                let held = self.tell(&txn, &shards, true, deadline).await;
                if held < shards.len() && !self.bugs.has(Bug::CommitWithoutAllVotes) {
                    // Every shard voted yes, so each holds it until told;
                    // a retried decide after a lost answer says `applied:
                    // false` too, which is why this only logs.
                    log_line!(
                        self.me,
                        "{txn}: committed; {held} of {} shards answered that they applied it",
                        shards.len()
                    );
                }
                Ok(yes)
            }
            Answer::Ok(_) => {
                let _ = self.tell(&txn, &shards, false, deadline).await;
                Err(TxnError::Aborted(format!(
                    "{txn}: aborted by a participant that timed out waiting for the decision"
                )))
            }
            Answer::Indeterminate(m) => Err(TxnError::Indeterminate(format!(
                "{txn}: the decision's outcome is unknown: {m}"
            ))),
            other => {
                // Not recorded: abort, so the participants need not wait.
                let _ = self.tell(&txn, &shards, false, deadline).await;
                Err(TxnError::Unavailable(format!(
                    "{txn}: cannot record the decision: {}",
                    describe(0, &other)
                )))
            }
        })
    }

    /// Three-phase commit's second and third phases: every shard
    /// pre-commits, then every shard is told to commit. No decision is
    /// recorded anywhere else: a participant left waiting asks the others
    /// (see [`Shards::terminate`]).
    async fn precommit_then_commit(
        self: &Arc<Self>,
        txn: &str,
        shards: &[u32],
        yes: BTreeMap<u32, Value>,
        deadline: Instant,
    ) -> Result<BTreeMap<u32, Value>, TxnError> {
        let mut acks = JoinSet::new();
        for &shard in shards {
            let me = self.clone();
            let command = json!({"op": "shard-precommit", "txn": txn});
            acks.spawn(async move { me.call(shard, Kind::Propose, command, true, deadline).await });
        }
        let mut acked = 0;
        while let Some(done) = acks.join_next().await {
            acked += usize::from(matches!(done, Ok(Answer::Ok(ref v)) if v["ok"] == true));
        }
        if acked < shards.len() {
            // Skeen's coordinator does not abort once pre-commits went out: a
            // shard that did not acknowledge has crashed and will ask the
            // others when it is back. Committing is the outcome, but this
            // coordinator cannot vouch for it.
            let _ = self.tell(txn, shards, true, deadline).await;
            return Err(TxnError::Indeterminate(format!(
                "{txn}: {acked} of {} shards acknowledged the pre-commit; committing without the rest",
                shards.len()
            )));
        }
        crash::reach(&self.me, "after-decision");
        let _ = self.tell(txn, shards, true, deadline).await;
        Ok(yes)
    }

    /// Three-phase commit's termination, run by a participant whose
    /// coordinator fell silent: it asks the other participants (at once,
    /// each with its own deadline) where the transaction stands and applies
    /// Skeen's rule. Any committed: commit. Any aborted or never prepared:
    /// abort. Any pre-committed (itself included): pre-commit the uncertain
    /// ones it reaches, then commit. All uncertain: abort. A participant it
    /// cannot reach is taken for crashed, which is what a partition breaks.
    /// One that held the transaction before its own restart (`recovering`)
    /// decides only on what the others know: with any of them unreachable
    /// and none decided, it waits, since those may have decided without it.
    async fn terminate(self: &Arc<Self>, shard: u32, txn: &str, span: &[u32], recovering: bool) {
        let query = json!({ "shard-state": txn });
        let ask = |g: u32| {
            let (me, query) = (self.clone(), query.clone());
            async move {
                let by = Instant::now() + Duration::from_millis(500);
                match me.call(g, Kind::Read, query, true, by).await {
                    Answer::Ok(v) => v["state"].as_str().map(String::from),
                    _ => None,
                }
            }
        };
        let Some(mine) = ask(shard).await else { return };
        if mine != "uncertain" && mine != "precommitted" {
            return;
        }
        let mut asks = JoinSet::new();
        for &g in span.iter().filter(|g| **g != shard) {
            let a = ask(g);
            asks.spawn(async move { (g, a.await) });
        }
        let mut others: Vec<(u32, Option<String>)> = Vec::new();
        while let Some(Ok(o)) = asks.join_next().await {
            others.push(o);
        }
        others.sort();
        let any = |s: &str| others.iter().any(|(_, st)| st.as_deref() == Some(s));
        let unreachable = others.iter().any(|(_, st)| st.is_none());
        let by = Instant::now() + self.request_timeout;
        let commit = if any("committed") {
            true
        } else if any("aborted") || any("unknown") {
            false
        } else if recovering && unreachable {
            return;
        } else if mine == "precommitted" || any("precommitted") {
            let mut moved = JoinSet::new();
            for (g, st) in &others {
                if st.as_deref() == Some("uncertain") {
                    let (me, g) = (self.clone(), *g);
                    let c = json!({"op": "shard-precommit", "txn": txn});
                    moved.spawn(async move { me.call(g, Kind::Propose, c, true, by).await });
                }
            }
            while moved.join_next().await.is_some() {}
            true
        } else {
            false
        };
        let decide = json!({"op": "shard-decide", "txn": txn, "commit": commit});
        let decided = match self
            .call(shard, Kind::Propose, decide.clone(), true, by)
            .await
        {
            Answer::Ok(v) => v["committed"].as_bool().unwrap_or(commit),
            _ => return,
        };
        let told: Vec<u32> = others.iter().map(|(g, _)| *g).collect();
        let _ = self.tell(txn, &told, decided, by).await;
        let seen: Vec<String> = others
            .iter()
            .map(|(g, st)| format!("shard {g} {}", st.as_deref().unwrap_or("unreachable")))
            .collect();
        log_line!(
            self.me,
            "shard {shard}: in-doubt transaction {txn} finished: {} (3pc termination{}; this shard {mine}, {})",
            if decided { "committed" } else { "aborted" },
            if recovering { " after a restart" } else { "" },
            seen.join(", ")
        );
    }

    /// Prepares `txn`'s `ops` at `shard`. Wait-die: when a prepared
    /// transaction holds a lock it needs, an older `txn` waits and asks
    /// again, a younger one gives up.
    async fn prepare(&self, shard: u32, command: Value, age: &Age, by: Instant) -> Vote {
        let mut backoff = Duration::from_millis(2);
        loop {
            let v = match self
                .call(shard, Kind::Propose, command.clone(), true, by)
                .await
            {
                Answer::Ok(v) => v,
                Answer::Indeterminate(m) => return Vote::Unknown(m),
                other => return Vote::No(describe(shard, &other)),
            };
            if v["ok"] == true {
                return Vote::Yes(v["ops"].clone());
            }
            if v["error"] != "locked" {
                return if v["error"] == "decided" {
                    Vote::No(format!("shard {shard}: already decided"))
                } else {
                    Vote::Fails(text(&v["error"]))
                };
            }
            let holders: Vec<Age> =
                serde_json::from_value(v["holders"].clone()).unwrap_or_default();
            if let Some(older) = holders.iter().find(|h| *h < age) {
                return Vote::No(format!(
                    "wait-die: shard {shard} holds a lock for older transaction {}",
                    older.1
                ));
            }
            if Instant::now() + backoff >= by {
                return Vote::No(format!(
                    "shard {shard}: locks held past the prepare deadline"
                ));
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(40));
        }
    }

    /// Tells every shard in `shards` the decision on `txn`, waiting until
    /// each applied it or `deadline` (a shard not told in time learns it by
    /// asking, once its prepare has waited long enough).
    /// Answers how many shards still held the transaction prepared when told.
    async fn tell(
        self: &Arc<Self>,
        txn: &str,
        shards: &[u32],
        commit: bool,
        deadline: Instant,
    ) -> usize {
        let mut told = JoinSet::new();
        let deadline = deadline.max(Instant::now() + Duration::from_millis(200));
        let decide = |shard: u32| {
            let me = self.clone();
            let command = json!({"op": "shard-decide", "txn": txn, "commit": commit});
            async move { me.call(shard, Kind::Propose, command, true, deadline).await }
        };
        let held = |a: &Answer| matches!(a, Answer::Ok(v) if v["applied"] == true);
        let mut rest = shards;
        let mut count = 0;
        if commit && crash::armed().contains(&"after-first-commit") {
            if let Some((first, others)) = shards.split_first() {
                count += usize::from(held(&decide(*first).await));
                crash::reach(&self.me, "after-first-commit");
                rest = others;
            }
        }
        for shard in rest {
            told.spawn(decide(*shard));
        }
        while let Some(done) = told.join_next().await {
            count += usize::from(done.as_ref().is_ok_and(held));
        }
        count
    }

    /// Finishes transactions prepared on this node's shards whose decision
    /// never arrived: asks the main group (proposing abort, which stands only
    /// if no commit was recorded first) and applies what it answers. Runs on
    /// the shard's leader, for as long as the node does.
    pub async fn sweep(self: Arc<Self>) {
        let mut each = JoinSet::new();
        for &shard in self.local.keys().filter(|s| **s != 0) {
            each.spawn(self.clone().sweep_shard(shard));
        }
        while each.join_next().await.is_some() {}
    }

    async fn sweep_shard(self: Arc<Self>, shard: u32) {
        let Some(consensus) = self.local.get(&shard).cloned() else {
            return;
        };
        let patience = self.request_timeout + Duration::from_secs(1);
        let (mut first_look, mut held_before) = (true, std::collections::BTreeSet::new());
        loop {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let leading = match consensus.status() {
                Ok(rx) => matches!(tokio::time::timeout(Duration::from_millis(200), rx).await,
                                   Ok(Ok(s)) if s.role == "leader"),
                Err(_) => false,
            };
            if !leading {
                self.in_doubt
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .retain(|(s, _), _| *s != shard);
                continue;
            }
            let deadline = Instant::now() + Duration::from_millis(500);
            let query = if self.three_phase {
                json!({"shard-in-doubt": true})
            } else {
                json!({"shard-prepared": true})
            };
            let Answer::Ok(Value::Array(found)) =
                self.call(shard, Kind::Read, query, true, deadline).await
            else {
                continue;
            };
            // Each in-doubt transaction by a name that changes with its state
            // (a pre-commit starts the wait again), and the shards it spans.
            let found: Vec<(String, String, Vec<u32>)> = found
                .iter()
                .filter_map(|v| match v {
                    Value::String(t) => Some((t.clone(), t.clone(), Vec::new())),
                    v => {
                        let t = v["txn"].as_str()?.to_string();
                        let span = serde_json::from_value(v["shards"].clone()).unwrap_or_default();
                        let name = if v["precommitted"] == true {
                            format!("{t}+pre")
                        } else {
                            t.clone()
                        };
                        Some((t, name, span))
                    }
                })
                .collect();
            // What this shard held when this process first looked was
            // prepared before it (re)started.
            if first_look {
                held_before = found.iter().map(|f| f.0.clone()).collect();
                first_look = false;
            }
            let now = Instant::now();
            let mut due = Vec::new();
            {
                let mut seen = self.in_doubt.lock().unwrap_or_else(|e| e.into_inner());
                seen.retain(|(s, t), _| *s != shard || found.iter().any(|f| f.1 == *t));
                for (txn, name, span) in found {
                    let since = *seen.entry((shard, name.clone())).or_insert(now);
                    if now.duration_since(since) >= patience {
                        seen.insert((shard, name), now);
                        due.push((txn, span));
                    }
                }
            }
            for (txn, span) in due {
                let me = self.clone();
                let recovering = held_before.contains(&txn);
                tokio::spawn(async move {
                    if me.three_phase {
                        me.terminate(shard, &txn, &span, recovering).await
                    } else {
                        me.resolve(shard, &txn).await
                    }
                });
            }
        }
    }

    async fn resolve(&self, shard: u32, txn: &str) {
        let deadline = Instant::now() + self.request_timeout;
        let decided = self
            .call(
                0,
                Kind::Propose,
                json!({"op": "txn-decide", "txn": txn, "commit": false}),
                true,
                deadline,
            )
            .await;
        let Answer::Ok(v) = decided else { return };
        let Some(commit) = v["commit"].as_bool() else {
            return;
        };
        let told = self
            .call(
                shard,
                Kind::Propose,
                json!({"op": "shard-decide", "txn": txn, "commit": commit}),
                true,
                deadline,
            )
            .await;
        if matches!(told, Answer::Ok(_)) {
            log_line!(
                self.me,
                "shard {shard}: in-doubt transaction {txn} finished: {}",
                if commit { "committed" } else { "aborted" }
            );
        }
    }
}

/// Why a transaction did not commit, from its votes.
fn why_not(votes: &BTreeMap<u32, Vote>) -> TxnError {
    for v in votes.values() {
        if let Vote::Fails(m) = v {
            return TxnError::Failed(m.clone());
        }
    }
    let reasons: Vec<String> = votes
        .iter()
        .filter_map(|(s, v)| match v {
            Vote::No(m) => Some(m.clone()),
            Vote::Unknown(m) => Some(format!("shard {s}: prepare outcome unknown: {m}")),
            _ => None,
        })
        .collect();
    TxnError::Aborted(reasons.join("; "))
}

fn fill(done: &mut [Value], part: &[(usize, Value)], result: &Value) {
    for (j, (i, _)) in part.iter().enumerate() {
        done[*i] = result.get(j).cloned().unwrap_or(Value::Null);
    }
}

fn text(v: &Value) -> String {
    v.as_str()
        .map(String::from)
        .unwrap_or_else(|| v.to_string())
}

fn describe(shard: u32, a: &Answer) -> String {
    match a {
        Answer::Ok(_) => format!("shard {shard}: answered"),
        Answer::NotLeader(_) => format!("shard {shard}: no leader reachable"),
        Answer::Unavailable(m) | Answer::Indeterminate(m) | Answer::Refused(m) => {
            format!("shard {shard}: {m}")
        }
        Answer::NotHosted => format!("shard {shard}: no member reachable"),
    }
}
