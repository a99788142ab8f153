//! A Maelstrom node in Rust for the `echo`, `unique-ids`, `broadcast`, `g-set`
//! and `g-counter`/`pn-counter` workloads: the second-language node of the
//! integration tests and the fast node of the router benchmark.
//!
//! Usage: `maelstrom_node WORKLOAD [--bug]`. It speaks Maelstrom's protocol,
//! one JSON message per line on stdin and stdout; a background thread gossips
//! every 200 ms for broadcast, the set and the counters. `--bug` plants one
//! flaw per workload (garbled echoes, colliding ids, broadcasts and set
//! elements lost to partitions, double-counting merges) for the harness to catch.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{self, BufRead, BufWriter, Stdout, Write};
use std::process::{self, ExitCode};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

/// Printed on a bad command line.
const USAGE: &str = "usage: maelstrom_node WORKLOAD [--bug]\n  \
    WORKLOAD: echo, unique-ids, broadcast, g-set, g-counter or pn-counter";
/// How often the background thread gossips.
const TICK: Duration = Duration::from_millis(200);
/// Every this many ticks a broadcast node resends everything it knows, acked
/// or not, so a restarted neighbour (empty memory) catches up.
const FULL_RESEND_EVERY: u64 = 5;
/// Maelstrom's error code for a request type the node does not support.
const NOT_SUPPORTED: u64 = 10;
/// Maelstrom's error code for a request with a missing or mistyped field.
const MALFORMED: u64 = 12;
/// At most this many bytes of a bad input line are quoted on stderr.
const QUOTE_LIMIT: usize = 200;

/// The workload this process serves.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Workload {
    Echo,
    UniqueIds,
    Broadcast,
    /// `g-set`: the broadcast machinery under the set's message names.
    GSet,
    /// `g-counter` and `pn-counter`: one CRDT serves both.
    Counter,
}

impl Workload {
    /// Parses the arguments after the program name: `WORKLOAD [--bug]`.
    fn from_args(args: &[String]) -> Option<(Workload, bool)> {
        let (name, rest) = args.split_first()?;
        let workload = match name.as_str() {
            "echo" => Workload::Echo,
            "unique-ids" => Workload::UniqueIds,
            "broadcast" => Workload::Broadcast,
            "g-set" => Workload::GSet,
            "g-counter" | "pn-counter" => Workload::Counter,
            _ => return None,
        };
        match rest {
            [] => Some((workload, false)),
            [flag] if flag == "--bug" => Some((workload, true)),
            _ => None,
        }
    }
}

/// One node: who it is, its output and its memory, shared by the reader loop
/// and the gossip thread.
struct Node {
    workload: Workload,
    bug: bool,
    id: String,
    /// Every other node in the cluster, from `init`.
    others: Vec<String>,
    /// Node id plus incarnation: names this process (not just this node id)
    /// in unique ids and counter entries, so restarts never reuse a name.
    contributor: String,
    /// Echo replies or ids handed out so far.
    served: AtomicU64,
    /// The next `msg_id` for a request to another node.
    next_msg_id: AtomicU64,
    /// Stdout, buffered; each line is written whole and flushed under the lock.
    out: Mutex<BufWriter<Stdout>>,
    state: Mutex<State>,
}

/// What the broadcast and counter workloads remember.
#[derive(Default)]
struct State {
    /// Broadcast: every message this node has seen.
    messages: BTreeSet<i64>,
    /// Broadcast: where new messages go (all other nodes until `topology`).
    neighbours: Vec<String>,
    /// Broadcast: per neighbour, messages sent to it and not yet acknowledged.
    unacked: HashMap<String, BTreeSet<i64>>,
    /// Counter: contributor -> (sum of increments, sum of decrements).
    counts: BTreeMap<String, (i64, i64)>,
}

impl State {
    /// Neighbour `by` has `messages`: none of them is owed to it any more.
    fn settle(&mut self, by: &str, messages: &[i64]) {
        if let Some(owed) = self.unacked.get_mut(by) {
            for message in messages {
                owed.remove(message);
            }
        }
    }
}

impl Node {
    /// The node an `init` body describes, or `None` if it names no node.
    fn from_init(workload: Workload, bug: bool, init: &Value) -> Option<Node> {
        let id = init["node_id"].as_str()?.to_owned();
        let mut others = strings(&init["node_ids"]);
        others.retain(|other| *other != id);
        // Nanoseconds at start plus the pid tell this process from earlier ones.
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos());
        let contributor = format!("{id}-{nanos}.{}", process::id());
        let state = State {
            neighbours: others.clone(),
            ..State::default()
        };
        Some(Node {
            workload,
            bug,
            id,
            others,
            contributor,
            served: AtomicU64::new(0),
            next_msg_id: AtomicU64::new(1),
            out: Mutex::new(BufWriter::new(io::stdout())),
            state: Mutex::new(state),
        })
    }

    /// The node's memory; a poisoned lock means another thread panicked.
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("state lock poisoned")
    }

    /// A fresh `msg_id` for a request to another node.
    fn msg_id(&self) -> u64 {
        self.next_msg_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Writes one message to `dest` as a line and flushes it.
    fn send(&self, dest: &str, body: &Value) {
        let (src, dest) = (Value::from(self.id.as_str()), Value::from(dest));
        let mut out = self.out.lock().expect("stdout lock poisoned");
        let line = writeln!(out, r#"{{"src":{src},"dest":{dest},"body":{body}}}"#);
        if let Err(e) = line.and_then(|()| out.flush()) {
            // The harness is gone or closed our stdout; stdin's EOF ends us.
            eprintln!("maelstrom_node {}: writing stdout: {e}", self.id);
        }
    }

    /// Sends `body` to `dest` as the reply to `request`.
    fn reply(&self, dest: &str, request: &Value, mut body: Value) {
        if let Some(fields) = body.as_object_mut() {
            fields.insert("in_reply_to".to_owned(), request["msg_id"].clone());
        }
        self.send(dest, &body);
    }

    /// Answers `request` from `dest` with a Maelstrom error.
    fn error(&self, dest: &str, request: &Value, code: u64, text: &str) {
        let body = json!({"type": "error", "code": code, "text": text});
        self.reply(dest, request, body);
    }
}

/// Handles one message that arrived after `init`.
fn handle(node: &Node, src: &str, body: &Value) {
    let kind = body["type"].as_str().unwrap_or_default();
    match (node.workload, kind) {
        (_, "init") => node.reply(src, body, json!({"type": "init_ok"})),
        (Workload::Echo, "echo") => echo(node, src, body),
        (Workload::UniqueIds, "generate") => generate(node, src, body),
        (Workload::Broadcast, "topology") => topology(node, src, body),
        (Workload::Broadcast, "broadcast") => broadcast(node, src, body),
        (Workload::Broadcast, "read") => {
            let messages: Vec<i64> = node.state().messages.iter().copied().collect();
            node.reply(src, body, json!({"type": "read_ok", "messages": messages}));
        }
        (Workload::GSet, "add") => {
            let Some(element) = body["element"].as_i64() else {
                node.error(src, body, MALFORMED, "add needs an integer `element`");
                return;
            };
            learn(node, src, &[element]);
            node.reply(src, body, json!({"type": "add_ok"}));
        }
        (Workload::GSet, "read") => {
            let value: Vec<i64> = node.state().messages.iter().copied().collect();
            node.reply(src, body, json!({"type": "read_ok", "value": value}));
        }
        (Workload::Broadcast | Workload::GSet, "gossip") => gossip(node, src, body),
        (Workload::Broadcast | Workload::GSet, "gossip_ok") => {
            node.state().settle(src, &ints(&body["messages"]))
        }
        (Workload::Counter, "add") => add(node, src, body),
        (Workload::Counter, "read") => {
            let value = node
                .state()
                .counts
                .values()
                .fold(0i64, |sum, &(p, n)| sum.saturating_add(p.saturating_sub(n)));
            node.reply(src, body, json!({"type": "read_ok", "value": value}));
        }
        (Workload::Counter, "merge") => merge(node, body),
        _ if src.starts_with('c') && !body["msg_id"].is_null() => {
            let text = format!("`{kind}` is not supported by this node");
            node.error(src, body, NOT_SUPPORTED, &text);
        }
        // Unknown messages from nodes (and client non-requests) are ignored.
        _ => {}
    }
}

/// `echo`: sends the value back. The buggy node garbles one reply in ten,
/// starting with its 3rd, so even a short run shows it.
fn echo(node: &Node, src: &str, body: &Value) {
    let served = node.served.fetch_add(1, Ordering::Relaxed) + 1;
    let echo = &body["echo"];
    let mut reply = json!({"type": "echo_ok", "echo": echo});
    if node.bug && served % 10 == 3 {
        // A string that differs from any echo, string or not.
        reply["echo"] = Value::String(format!("{echo} (garbled)"));
    }
    node.reply(src, body, reply);
}

/// `generate`: a cluster-unique id; the buggy node's ids are a bare counter,
/// so different nodes (and a restarted node) hand out the same ones.
fn generate(node: &Node, src: &str, body: &Value) {
    let count = node.served.fetch_add(1, Ordering::Relaxed) + 1;
    let id = if node.bug {
        Value::from(count)
    } else {
        Value::String(format!("{}-{count}", node.contributor))
    };
    node.reply(src, body, json!({"type": "generate_ok", "id": id}));
}

/// `topology`: takes this node's neighbours from it (a new neighbour gets
/// everything known at the next full resend).
fn topology(node: &Node, src: &str, body: &Value) {
    let listed = &body["topology"][node.id.as_str()];
    if listed.is_array() {
        node.state().neighbours = strings(listed);
    }
    node.reply(src, body, json!({"type": "topology_ok"}));
}

/// `broadcast` {message} from a client: learn it, pass it on, acknowledge.
fn broadcast(node: &Node, src: &str, body: &Value) {
    let Some(message) = body["message"].as_i64() else {
        node.error(src, body, MALFORMED, "broadcast needs an integer `message`");
        return;
    };
    learn(node, src, &[message]);
    node.reply(src, body, json!({"type": "broadcast_ok"}));
}

/// `gossip` {messages} from a node: learn them and, unless buggy, list what
/// arrived in a `gossip_ok` so the sender stops resending it.
fn gossip(node: &Node, src: &str, body: &Value) {
    let messages = ints(&body["messages"]);
    learn(node, src, &messages);
    if !node.bug {
        let ack = json!({"type": "gossip_ok", "messages": messages});
        node.reply(src, body, ack);
    }
}

/// Adds `messages` heard from `src` (a client or a node) and forwards the new
/// ones to every neighbour but `src`. Unless buggy, they stay owed to each
/// neighbour until its `gossip_ok` lists them.
fn learn(node: &Node, src: &str, messages: &[i64]) {
    let mut guard = node.state();
    let state = &mut *guard;
    state.settle(src, messages);
    let fresh: Vec<i64> = messages
        .iter()
        .copied()
        .filter(|message| state.messages.insert(*message))
        .collect();
    if fresh.is_empty() {
        return;
    }
    let mut targets = state.neighbours.clone();
    targets.retain(|neighbour| neighbour.as_str() != src);
    if !node.bug {
        for target in &targets {
            let owed = state.unacked.entry(target.clone()).or_default();
            owed.extend(&fresh);
        }
    }
    drop(guard);
    for target in &targets {
        let body = json!({"type": "gossip", "msg_id": node.msg_id(), "messages": fresh});
        node.send(target, &body);
    }
}

/// The integers in a JSON array; anything else in it is skipped.
fn ints(value: &Value) -> Vec<i64> {
    let items = value.as_array().map(Vec::as_slice).unwrap_or_default();
    items.iter().filter_map(Value::as_i64).collect()
}

/// The strings in a JSON array; anything else in it is skipped.
fn strings(value: &Value) -> Vec<String> {
    let items = value.as_array().map(Vec::as_slice).unwrap_or_default();
    items
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect()
}

/// One broadcast gossip round: each neighbour gets what it has not
/// acknowledged or, when `everything`, every message known.
fn broadcast_tick(node: &Node, everything: bool) {
    let state = node.state();
    let mut batches = Vec::new();
    for neighbour in &state.neighbours {
        let batch: Vec<i64> = match state.unacked.get(neighbour) {
            _ if everything => state.messages.iter().copied().collect(),
            Some(owed) => owed.iter().copied().collect(),
            None => Vec::new(),
        };
        if !batch.is_empty() {
            batches.push((neighbour.clone(), batch));
        }
    }
    drop(state);
    for (neighbour, batch) in &batches {
        let body = json!({"type": "gossip", "msg_id": node.msg_id(), "messages": batch});
        node.send(neighbour, &body);
    }
}

/// `add` {delta}: adds to this process's own entry (increments and decrements
/// kept apart, so both only grow and merge by max).
fn add(node: &Node, src: &str, body: &Value) {
    let Some(delta) = body["delta"].as_i64() else {
        node.error(src, body, MALFORMED, "add needs an integer `delta`");
        return;
    };
    let mut state = node.state();
    let own = state.counts.entry(node.contributor.clone()).or_default();
    if delta >= 0 {
        own.0 = own.0.saturating_add(delta);
    } else {
        own.1 = own.1.saturating_sub(delta);
    }
    drop(state);
    node.reply(src, body, json!({"type": "add_ok"}));
}

/// `merge` {from, counts: {contributor: [increments, decrements]}} from the
/// process `from`: per-entry max, harmless to repeat or reorder. The buggy
/// node adds the sender's own entry to its copy instead, so every round
/// counts that sender's adds again (linearly, never overflowing in a run).
fn merge(node: &Node, body: &Value) {
    let (Some(from), Some(counts)) = (body["from"].as_str(), body["counts"].as_object()) else {
        return;
    };
    let mut state = node.state();
    for (contributor, totals) in counts {
        let (Some(p), Some(n)) = (totals[0].as_i64(), totals[1].as_i64()) else {
            continue;
        };
        let entry = state.counts.entry(contributor.clone()).or_default();
        if node.bug && contributor == from {
            entry.0 = entry.0.saturating_add(p);
            entry.1 = entry.1.saturating_add(n);
        } else {
            entry.0 = entry.0.max(p);
            entry.1 = entry.1.max(n);
        }
    }
}

/// One counter gossip round: the whole state to every other node.
fn counter_tick(node: &Node) {
    let state = node.state();
    if state.counts.is_empty() {
        return;
    }
    let counts: Map<String, Value> = state
        .counts
        .iter()
        .map(|(contributor, &(p, n))| (contributor.clone(), json!([p, n])))
        .collect();
    drop(state);
    let mut body = json!({"type": "merge", "from": node.contributor});
    body["counts"] = Value::Object(counts);
    for peer in &node.others {
        node.send(peer, &body);
    }
}

/// The background thread: a gossip round every [`TICK`], forever.
fn gossip_loop(node: &Node) {
    let mut tick: u64 = 0;
    loop {
        thread::sleep(TICK);
        tick += 1;
        match node.workload {
            Workload::Broadcast | Workload::GSet => {
                broadcast_tick(node, tick.is_multiple_of(FULL_RESEND_EVERY))
            }
            Workload::Counter => counter_tick(node),
            Workload::Echo | Workload::UniqueIds => return,
        }
    }
}

/// Answers `init` from `src` and starts the gossip thread if the workload
/// gossips; `None` if the `init` names no node.
fn start(workload: Workload, bug: bool, src: &str, init: &Value) -> Option<Arc<Node>> {
    let Some(node) = Node::from_init(workload, bug, init) else {
        eprintln!("maelstrom_node: init without a node_id: {init}");
        return None;
    };
    let node = Arc::new(node);
    node.reply(src, init, json!({"type": "init_ok"}));
    let gossips = matches!(workload, Workload::Broadcast | Workload::GSet);
    if workload == Workload::Counter || (gossips && !bug) {
        let gossiper = Arc::clone(&node);
        thread::spawn(move || gossip_loop(&gossiper));
    }
    Some(node)
}

/// The start of a bad input line and its length, for a log message.
fn quote(line: &[u8]) -> String {
    let shown = String::from_utf8_lossy(&line[..line.len().min(QUOTE_LIMIT)]);
    format!("{}... ({} bytes)", shown.trim_end(), line.len())
}

/// Reads messages until stdin closes; exits 2 on a bad command line.
fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((workload, bug)) = Workload::from_args(&args) else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let mut running: Option<Arc<Node>> = None;
    let mut input = io::stdin().lock();
    let mut line = Vec::new();
    loop {
        line.clear();
        match input.read_until(b'\n', &mut line) {
            Ok(0) => return ExitCode::SUCCESS,
            Ok(_) => {}
            Err(e) => {
                eprintln!("maelstrom_node: reading stdin: {e}");
                return ExitCode::FAILURE;
            }
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let msg: Value = match serde_json::from_slice(&line) {
            Ok(msg) => msg,
            Err(e) => {
                eprintln!("maelstrom_node: not JSON ({e}): {}", quote(&line));
                continue;
            }
        };
        let src = msg["src"].as_str().unwrap_or_default();
        let body = &msg["body"];
        if let Some(node) = &running {
            handle(node, src, body);
        } else if body["type"] == "init" {
            running = start(workload, bug, src, body);
        } else {
            eprintln!("maelstrom_node: ignoring {} before init", body["type"]);
        }
    }
}
