//! Planted bugs: each switches one pattern into a known-broken variant that the
//! harness must catch. All are off unless named with `--bug NAME`.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

/// One planted bug.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Bug {
    /// Serve reads from local state on any node, without confirming leadership.
    StaleRead,
    /// Acknowledge without fsync: log writes sit in a user-space buffer that a
    /// crash loses.
    NoFsync,
    /// Acknowledge a write once the leader has it, before a majority does.
    EarlyAck,
    /// Grant a vote to any up-to-date candidate, even after voting in the term.
    VoteTwice,
    /// Protected registers ignore fencing tokens: a holder paused past its lease
    /// keeps writing after the lock has moved on.
    LeaseNoFence,
    /// The leader grants a lock from its local state and answers before the grant
    /// is committed.
    LockNoQuorum,
    /// The lock manager lets any wait join the wait-for graph, cycles included.
    NoDeadlockCheck,
    /// The broker acknowledges a produced message before it is committed.
    AckBeforePersist,
    /// The broker drops a message whose visibility timeout passed instead of
    /// delivering it again.
    SkipRedelivery,
    /// Cache writes are acknowledged without invalidating the cached copies.
    SkipInvalidate,
    /// A follower rejecting an Append of an older term echoes its read round in
    /// a reply stamped with the newer term, and the leader credits any echoed
    /// round: a stale copy of a previous incarnation's Append confirms reads.
    EchoReadSeq,
    /// When a truncation removes every config entry, keep the members in force
    /// instead of falling back to the snapshot's or the initial ones.
    KeepConfigOnTruncate,
    /// A transaction's micro-ops run one at a time (each its own log entry or
    /// read), so other transactions interleave between them.
    TxnNonatomic,
    /// Paxos: a new leader skips phase 1 and proposes in slots it does not
    /// know chosen, over values other acceptors may hold.
    SkipPrepare,
    /// Paxos: an acceptor accepts a value in a ballot below its promise.
    AcceptLowerBallot,
    /// PBFT: prepared, committed, stable and new-view certificates need 2f
    /// replicas instead of 2f+1, so two halves of a partition both go on.
    SmallQuorum,
    /// PBFT: backups accept the primary's batch without checking its digest or
    /// that clients sent its requests.
    TrustPrimary,
    /// Sharded transactions: a participant votes on a prepare before the
    /// prepare is committed in its shard's log (Raft).
    PrepareNotDurable,
    /// Sharded transactions: the coordinator commits once any participant
    /// votes yes, whatever the others answered.
    CommitWithoutAllVotes,
    /// Sharded transactions: reads neither take nor respect locks.
    ReadWithoutLock,
    /// Event store: appends ignore the expected version and write where the
    /// client expected, over what is there.
    NoVersionCheck,
    /// Event store: a subscription that acknowledged anything resumes one
    /// event past its checkpoint.
    SubscriptionSkips,
    /// Sagas: a failed shipment is compensated by releasing the stock but not
    /// refunding the payment.
    SkipCompensation,
    /// Sagas: the payment service charges again for a repeated idempotency key.
    NonIdempotentCharge,
    /// Mailbox: the inbox lives in memory only, so a restarted member has
    /// lost what it acknowledged.
    VolatileInbox,
    /// Mailbox: a message that arrives again is delivered again.
    DeliverTwice,
    /// Mesh: circuit breakers count failures but never open.
    BreakerNeverOpens,
    /// Mesh: retries go out at once, up to ten tries, with no retry budget.
    RetryStorm,
    /// Mesh: the balancer picks instances that health checks found down.
    LbIgnoresHealth,
    /// Mesh: retries and per-try timeouts ignore the caller's deadline.
    NoDeadline,
}

/// Every bug with its name and what it breaks.
pub const ALL: &[(Bug, &str, &str)] = &[
    (
        Bug::StaleRead,
        "stale-read",
        "serve reads from local state without confirming leadership",
    ),
    (
        Bug::NoFsync,
        "no-fsync",
        "acknowledge writes before they are flushed and fsynced",
    ),
    (
        Bug::EarlyAck,
        "early-ack",
        "acknowledge a write before a majority has it",
    ),
    (
        Bug::VoteTwice,
        "vote-twice",
        "a node may grant two votes in one term",
    ),
    (
        Bug::LeaseNoFence,
        "lease-no-fence",
        "protected registers accept writes with stale fencing tokens",
    ),
    (
        Bug::LockNoQuorum,
        "lock-no-quorum",
        "grant locks from the leader's local state without committing",
    ),
    (
        Bug::NoDeadlockCheck,
        "no-deadlock-check",
        "accept waits for a lock that close a cycle in the wait-for graph",
    ),
    (
        Bug::AckBeforePersist,
        "ack-before-persist",
        "acknowledge a produced message before it is replicated and fsynced",
    ),
    (
        Bug::SkipRedelivery,
        "skip-redelivery",
        "drop unacknowledged messages at their visibility timeout instead of redelivering",
    ),
    (
        Bug::SkipInvalidate,
        "skip-invalidate",
        "acknowledge cache writes without invalidating cached copies",
    ),
    (
        Bug::EchoReadSeq,
        "echo-read-seq",
        "a stale Append's read round, echoed in a newer term, confirms reads",
    ),
    (
        Bug::KeepConfigOnTruncate,
        "keep-config-on-truncate",
        "keep a truncated membership change in force",
    ),
    (
        Bug::TxnNonatomic,
        "txn-nonatomic",
        "run a transaction's micro-ops one at a time instead of as one log entry",
    ),
    (
        Bug::SkipPrepare,
        "skip-prepare",
        "paxos: a new leader skips phase 1 for open slots",
    ),
    (
        Bug::AcceptLowerBallot,
        "accept-lower-ballot",
        "paxos: an acceptor accepts below its promised ballot",
    ),
    (
        Bug::SmallQuorum,
        "small-quorum",
        "pbft: certificates of 2f replicas instead of 2f+1",
    ),
    (
        Bug::TrustPrimary,
        "trust-primary",
        "pbft: backups accept a pre-prepare without checking its digest",
    ),
    (
        Bug::PrepareNotDurable,
        "prepare-not-durable",
        "2pc: a participant votes before its prepare record is committed",
    ),
    (
        Bug::CommitWithoutAllVotes,
        "commit-without-all-votes",
        "2pc: commit once any participant votes yes",
    ),
    (
        Bug::ReadWithoutLock,
        "read-without-lock",
        "2pc: reads skip the lock table",
    ),
    (
        Bug::NoVersionCheck,
        "no-version-check",
        "event store: appends ignore the expected version",
    ),
    (
        Bug::SubscriptionSkips,
        "subscription-skips",
        "event store: a subscription resumes after its checkpoint + 1",
    ),
    (
        Bug::SkipCompensation,
        "skip-compensation",
        "sagas: a failed shipment releases the stock but never refunds",
    ),
    (
        Bug::NonIdempotentCharge,
        "non-idempotent-charge",
        "sagas: a retried charge with the same idempotency key charges again",
    ),
    (
        Bug::VolatileInbox,
        "volatile-inbox",
        "mailbox: acknowledge deliveries kept in memory only",
    ),
    (
        Bug::DeliverTwice,
        "deliver-twice",
        "mailbox: deliver a repeated message again instead of only acknowledging it",
    ),
    (
        Bug::BreakerNeverOpens,
        "breaker-never-opens",
        "mesh: circuit breakers count failures but never open",
    ),
    (
        Bug::RetryStorm,
        "retry-storm",
        "mesh: retry at once, up to ten tries, without a retry budget",
    ),
    (
        Bug::LbIgnoresHealth,
        "lb-ignores-health",
        "mesh: the balancer keeps picking instances health checks found down",
    ),
    (
        Bug::NoDeadline,
        "no-deadline",
        "mesh: retry and time out tries past the caller's deadline",
    ),
];

impl Bug {
    /// The `--bug` name.
    pub fn name(self) -> &'static str {
        ALL.iter()
            .find(|(b, _, _)| *b == self)
            .map(|(_, n, _)| *n)
            .unwrap_or("?")
    }
}

impl fmt::Display for Bug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Bug {
    type Err = String;
    fn from_str(s: &str) -> Result<Bug, String> {
        ALL.iter()
            .find(|(_, n, _)| *n == s)
            .map(|(b, _, _)| *b)
            .ok_or_else(|| {
                let names: Vec<&str> = ALL.iter().map(|(_, n, _)| *n).collect();
                format!("unknown bug `{s}` (known: {})", names.join(", "))
            })
    }
}

/// The set of bugs switched on.
#[derive(Clone, Debug, Default)]
pub struct Bugs(BTreeSet<Bug>);

impl Bugs {
    /// The given bugs.
    pub fn new(bugs: impl IntoIterator<Item = Bug>) -> Self {
        Bugs(bugs.into_iter().collect())
    }
    /// Whether `bug` is on.
    pub fn has(&self, bug: Bug) -> bool {
        self.0.contains(&bug)
    }
    /// Names of the bugs on, for logs and status.
    pub fn names(&self) -> Vec<&'static str> {
        self.0.iter().map(|b| b.name()).collect()
    }
}

/// Help text listing every bug, for `--help`.
pub fn help() -> String {
    let mut s = String::from("Planted bugs (--bug NAME, repeatable; all off by default):\n");
    for (_, name, what) in ALL {
        s.push_str(&format!("  {name:<24} {what}\n"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_list_the_known_ones() {
        for (bug, name, _) in ALL {
            assert_eq!(name.parse::<Bug>().unwrap(), *bug);
        }
        let e = "stale-reads".parse::<Bug>().unwrap_err();
        assert!(e.contains("stale-read, no-fsync"), "{e}");
    }
}
