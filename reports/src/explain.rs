//! One page per pattern: what it guarantees, how the reference system runs
//! it, and which fault exposes which planted bug. The store index writes them
//! under `store/explain/`, each run's report links its workload's page, and
//! the live dashboard serves them at `/explain/`.

use std::path::{Path, PathBuf};

use crate::html::{escape, page};
use crate::ReportError;

/// A pattern's page.
pub struct Pattern {
    /// File name (without `.html`) and the workloads that exercise it.
    pub slug: &'static str,
    /// Workloads whose reports link here.
    pub workloads: &'static [&'static str],
    /// Heading.
    pub title: &'static str,
    /// What a client may rely on.
    pub guarantees: &'static str,
    /// How the reference system provides it.
    pub how: &'static str,
    /// Planted bug, the fault and workload that expose it, the checker that says so.
    pub bugs: &'static [(&'static str, &'static str, &'static str)],
}

/// Every pattern with a page.
pub const PATTERNS: &[Pattern] = &[
    Pattern {
        slug: "raft",
        workloads: &["kv"],
        title: "Raft and the linearizable key-value store",
        guarantees: "Every acknowledged write survives any minority of crashed or cut-off nodes; reads and writes are linearizable: each takes effect at one instant between its call and its answer.",
        how: "One leader per term, elected by a majority after a pre-vote (a node that cannot win does not disturb the others). The leader appends each write to its log, replicates it, and answers once a majority has it on disk (fsync). Reads are confirmed by a heartbeat round a majority echoes (ReadIndex), so a deposed leader cannot answer from old state. Snapshots bound the log; membership changes one server at a time.",
        bugs: &[
            ("stale-read", "partition (leader cut off)", "linearizable, lost-writes"),
            ("no-fsync", "kill, lose-unsynced", "linearizable, lost-writes, recovery"),
            ("early-ack", "partition", "linearizable, lost-writes"),
            ("vote-twice", "collide", "election-safety"),
            ("echo-read-seq", "comeback", "linearizable"),
            ("keep-config-on-truncate", "orphan-change", "membership-agreement"),
        ],
    },
    Pattern {
        slug: "paxos",
        workloads: &[],
        title: "Multi-Paxos",
        guarantees: "The same services as on Raft, with the same guarantees: one value chosen per slot, applied in slot order.",
        how: "A distinguished proposer runs phase 1 once for all open slots with a ballot higher than any it saw, learns every slot's highest accepted value and fills holes with no-ops, then runs phase 2 per slot. Acceptors sync their promise and accepted values before answering.",
        bugs: &[
            ("skip-prepare", "partition, kill", "linearizable, lost-writes"),
            ("accept-lower-ballot", "partition, kill", "linearizable, lost-writes"),
        ],
    },
    Pattern {
        slug: "pbft",
        workloads: &[],
        title: "PBFT",
        guarantees: "Safety with up to f of 3f+1 replicas lying or crashed: a client accepts an answer once f+1 replicas gave the same one.",
        how: "The primary orders requests (pre-prepare); replicas exchange prepare and commit messages carrying digests, each authenticated; a request runs once 2f+1 replicas committed it. Checkpoints every K requests garbage-collect the log; a faulty or slow primary is replaced by a view change.",
        bugs: &[
            ("small-quorum", "partition (halves)", "linearizable, lost-writes"),
            ("trust-primary", "byzantine primary", "linearizable"),
        ],
    },
    Pattern {
        slug: "locks",
        workloads: &["lock"],
        title: "Lock manager with leases and fencing tokens",
        guarantees: "At most one holder of a lock at a time in the log's order; every grant carries a token larger than any before, and the protected registers refuse writes with an older token, so a holder paused past its lease cannot overwrite its successor.",
        how: "Grants, releases and lease expiries are commands in the log; the lease time is the proposer's clock. Waiters queue; a wait that would close a cycle in the wait-for graph is refused as a deadlock.",
        bugs: &[
            ("lease-no-fence", "pause", "fencing, stale writes"),
            ("lock-no-quorum", "partition", "mutex"),
            ("no-deadlock-check", "none", "deadlocks"),
        ],
    },
    Pattern {
        slug: "broker",
        workloads: &["queue"],
        title: "Message broker",
        guarantees: "Every produced and acknowledged message is delivered to every consumer group at least once, in order per partition; a message not acknowledged within its visibility timeout comes again; one that fails too often goes to the dead letters.",
        how: "Topics are partitioned by key on a hash ring; each partition is an append-only log in the replicated state. Polls, acknowledgements and redeliveries are commands, so every replica agrees on what is in flight. Subscribers may poll or receive pushes (server-sent events).",
        bugs: &[
            ("ack-before-persist", "partition, kill", "lost messages"),
            ("skip-redelivery", "kill", "lost messages"),
        ],
    },
    Pattern {
        slug: "cache",
        workloads: &["cache"],
        title: "Distributed cache with sessions",
        guarantees: "A read never returns a value older than the last write acknowledged before it began (writes invalidate every copy before they are acknowledged); copies never outlive their time to live.",
        how: "Each key has owners on a consistent-hash ring. A read goes to the first owner that answers, which serves its copy or reads through to the store (a linearizable read) and copies the value to the other owners. A write goes to the store, then invalidates every owner's copy, retrying with backoff.",
        bugs: &[("skip-invalidate", "none", "stale reads")],
    },
    Pattern {
        slug: "transactions",
        workloads: &["txn", "txn-rw-register", "bank"],
        title: "Transactions, sharding, 2PC and 3PC",
        guarantees: "Single-group transactions are strictly serializable (one log entry each). Across shards, two-phase commit with strict two-phase locking keeps them serializable and atomic; a coordinator's crash blocks nothing forever, because prepared shards ask the recorded decision.",
        how: "A prepare is one command in the shard's log (locks taken, the vote durable before it is given); the decision is a set-once record in the main group; shards are told only after it is recorded. Wait-die breaks deadlocks. Three-phase commit adds a pre-commit round so participants can decide without the coordinator, which is safe under crashes but not under partitions.",
        bugs: &[
            ("txn-nonatomic", "none", "anomalies (G-single, G2)"),
            ("prepare-not-durable", "none", "bank"),
            ("commit-without-all-votes", "none", "bank"),
            ("read-without-lock", "none", "bank"),
        ],
    },
    Pattern {
        slug: "events",
        workloads: &["events"],
        title: "Event store",
        guarantees: "Each stream's versions are dense from 0; of two appends at one expected version exactly one wins; every acknowledged event is read back once at its version and in the global log; a subscription delivers every event after its checkpoint, in order.",
        how: "Appends are commands checked against the stream's length; the global log orders every event. Aggregates keep a snapshot every 8 events plus the tail; a projection is updated by each append and rebuilt by replay.",
        bugs: &[
            ("no-version-check", "none", "expected-version, appends"),
            ("subscription-skips", "none", "subscriptions"),
        ],
    },
    Pattern {
        slug: "saga",
        workloads: &["saga"],
        title: "Sagas with compensation",
        guarantees: "Every order ends completed (stock reserved, paid, shipped) or compensated (what was done undone), never half; no customer is charged twice; stock and money are conserved.",
        how: "The orchestrator keeps each saga as an event stream, so a new leader resumes a crashed one; every step and compensation carries an idempotency key, since retries repeat them; a step that keeps failing triggers the compensations of the completed ones, newest first.",
        bugs: &[
            ("skip-compensation", "none", "partial, conservation"),
            ("non-idempotent-charge", "none", "partial, conservation"),
        ],
    },
    Pattern {
        slug: "mailbox",
        workloads: &["messaging"],
        title: "Member-to-member messages and reliable broadcast",
        guarantees: "An acknowledged send is in its member's inbox; a broadcast that any member which stays up delivered reaches every member; no member delivers a message twice.",
        how: "Deliveries are retried with backoff until the receiver acknowledges, which it does once the message is on disk; it keeps the ids it delivered. Each member that first delivers a broadcast relays it to the others, so the origin's crash halfway does not stop it.",
        bugs: &[
            ("volatile-inbox", "kill", "sends, broadcasts"),
            ("deliver-twice", "pause", "once"),
        ],
    },
    Pattern {
        slug: "mesh",
        workloads: &["mesh"],
        title: "Service mesh: discovery, health, balancing, breakers, retries, deadlines",
        guarantees: "Requests reach a healthy instance while one exists; an instance known dead gets no traffic past the detection bound; a failing instance is cut off by its breaker and probed back; retries stay within their count, their budget and the caller's deadline, and a request that may have been applied is not sent again unless it is idempotent; every hop is a span of the caller's trace.",
        how: "Instances register in the replicated registry with a lease they renew. Every node's sidecar reads the registry, probes each instance (two failed probes or a phi-accrual suspicion mark it down), picks among the instances up whose breaker admits (round robin, least outstanding, weighted, consistent hash or power of two choices), and retries a failed try elsewhere after an exponential backoff with full jitter, paid from a token bucket that requests fill. A bulkhead caps the tries in flight per instance.",
        bugs: &[
            ("breaker-never-opens", "brownout", "breaker"),
            ("retry-storm", "brownout, kill", "retries"),
            ("lb-ignores-health", "kill, pause, partition", "health-routing"),
            ("no-deadline", "pause, brownout (slow)", "deadline"),
        ],
    },
];

/// The page of `slug`, if there is one.
pub fn page_of(slug: &str) -> Option<String> {
    let p = PATTERNS.iter().find(|p| p.slug == slug)?;
    let mut body = format!(
        "<p><a href=\"index.html\">All patterns</a></p><h1>{}</h1><h2>What it guarantees</h2><p>{}</p><h2>How it runs</h2><p>{}</p>",
        escape(p.title),
        escape(p.guarantees),
        escape(p.how)
    );
    if !p.workloads.is_empty() {
        body.push_str(&format!(
            "<p class=\"note\">Exercised by <code>harness run --workload {}</code>.</p>",
            escape(&p.workloads.join("|"))
        ));
    }
    body.push_str("<h2>Planted bugs</h2><table><tr><th>bug (<code>--bug</code>)</th><th>the fault that exposes it</th><th>the checker that says invalid</th></tr>");
    for (bug, fault, checker) in p.bugs {
        body.push_str(&format!(
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
            escape(bug),
            escape(fault),
            escape(checker)
        ));
    }
    body.push_str("</table><p class=\"note\">The commands and catch rates are in the README, \"Every planted bug, caught\".</p>");
    Some(page(p.title, &body))
}

/// The list of every pattern's page.
pub fn index_page() -> String {
    let mut body = String::from("<h1>How each pattern works</h1><ul>");
    for p in PATTERNS {
        body.push_str(&format!(
            "<li><a href=\"{}.html\">{}</a></li>",
            p.slug,
            escape(p.title)
        ));
    }
    body.push_str("</ul>");
    page("Faultline patterns", &body)
}

/// The page a report of `workload` links to, if any.
pub fn slug_for(workload: &str) -> Option<&'static str> {
    PATTERNS
        .iter()
        .find(|p| p.workloads.contains(&workload))
        .map(|p| p.slug)
}

/// Writes every page under `store/explain/`.
pub fn write(store: &Path) -> Result<PathBuf, ReportError> {
    let dir = store.join("explain");
    std::fs::create_dir_all(&dir).map_err(|e| ReportError::Io(dir.clone(), e))?;
    let mut files = vec![("index".to_string(), index_page())];
    for p in PATTERNS {
        files.push((p.slug.to_string(), page_of(p.slug).unwrap_or_default()));
    }
    for (name, html) in files {
        let path = dir.join(format!("{name}.html"));
        std::fs::write(&path, html).map_err(|e| ReportError::Io(path.clone(), e))?;
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pattern_has_a_page_listing_its_bugs_and_files_are_written() {
        let index = index_page();
        for p in PATTERNS {
            assert!(index.contains(&format!("{}.html", p.slug)));
            let html = page_of(p.slug).unwrap();
            assert!(html.contains(p.title) || html.contains(&escape(p.title)));
            for (bug, _, _) in p.bugs {
                assert!(html.contains(bug));
            }
        }
        assert_eq!(slug_for("bank"), Some("transactions"));
        assert_eq!(slug_for("messaging"), Some("mailbox"));
        assert!(page_of("nothing").is_none());
        let store = tempfile::tempdir().unwrap();
        let dir = write(store.path()).unwrap();
        assert!(dir.join("raft.html").is_file() && dir.join("index.html").is_file());
    }
}
