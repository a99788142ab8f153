//! One node's share of the distributed cache: entries with a MESI-like state, an
//! LRU bound on their number and a time to live.
//!
//! The cache is write-through over the Raft KV, so no entry is ever dirty: the
//! states are `Exclusive` (valid, this node's copy not yet confirmed on the
//! replicas), `Shared` (valid, the replicas hold it too) and `Invalid` (a
//! tombstone). Every value carries the store revision of the write that made it,
//! and a tombstone keeps the revision of the write that invalidated it, so a fill
//! computed from an older read (a slow read-through, a late replica copy) can
//! never resurrect a value a later write replaced. Tombstones evicted to make
//! room, and a restart that forgot them all, raise a floor instead: a fill must
//! come from a store read at or after that revision.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use serde::Serialize;
use serde_json::Value;

/// An entry's coherence state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// Valid here; the replicas have not confirmed a copy.
    Exclusive,
    /// Valid here and on the replicas that confirmed it.
    Shared,
    /// Invalidated by the write with this entry's revision.
    Invalid,
}

#[derive(Clone, Debug)]
struct Entry {
    value: Value,
    rev: u64,
    state: State,
    expires: Instant,
    used: u64,
}

/// Counters for the report and for checking eviction from outside.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Stats {
    /// Reads answered from a valid entry.
    pub hits: u64,
    /// Reads that found nothing valid.
    pub misses: u64,
    /// Entries dropped to stay within capacity.
    pub evictions: u64,
    /// Valid entries dropped because their time to live ran out.
    pub expirations: u64,
    /// Invalidations applied.
    pub invalidations: u64,
    /// Fills refused as older than what this node knows.
    pub stale_fills: u64,
}

/// A value found in the cache.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Found {
    /// The cached value (`null`: the key is absent in the store).
    pub value: Value,
    /// Store revision of the write that produced it (0: never written).
    pub rev: u64,
    /// Its state.
    pub state: State,
}

/// A fill: a value read from the store (or copied from the key's owner).
#[derive(Clone, Debug)]
pub struct Fill {
    /// The key.
    pub key: String,
    /// Its value in the store.
    pub value: Value,
    /// Revision of the write that produced the value.
    pub rev: u64,
    /// The store's revision when it was read.
    pub read_rev: u64,
    /// When the copy stops being served.
    pub expires: Instant,
    /// `Exclusive` for the reader's own copy, `Shared` for a replica's.
    pub state: State,
}

/// One node's cache entries.
#[derive(Debug)]
pub struct LocalCache {
    capacity: usize,
    entries: HashMap<String, Entry>,
    /// Entries by last use, oldest first.
    lru: BTreeMap<u64, String>,
    tick: u64,
    /// Fills from reads before this store revision are refused; `None` until the
    /// node has read the store once (it may have forgotten tombstones).
    floor: Option<u64>,
    stats: Stats,
}

impl LocalCache {
    /// An empty cache holding at most `capacity` entries (tombstones included).
    /// Its floor is unknown: until [`LocalCache::learn_floor`], only fills
    /// from this node's own reads are taken.
    pub fn new(capacity: usize) -> Self {
        LocalCache {
            capacity: capacity.max(1),
            entries: HashMap::new(),
            lru: BTreeMap::new(),
            tick: 0,
            floor: None,
            stats: Stats::default(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Entries held now (tombstones included).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The store revision copies from others must be read at or after, once known.
    pub fn floor(&self) -> Option<u64> {
        self.floor
    }

    /// The most entries this cache keeps.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Records that a store read started after this node came up returned
    /// `read_rev`: everything forgotten at the start is older than that.
    pub fn learn_floor(&mut self, read_rev: u64) {
        if self.floor.is_none() {
            self.floor = Some(read_rev);
        }
    }

    fn touch(&mut self, key: &str) {
        self.tick += 1;
        if let Some(e) = self.entries.get_mut(key) {
            self.lru.remove(&e.used);
            e.used = self.tick;
            self.lru.insert(self.tick, key.to_string());
        }
    }

    fn remove(&mut self, key: &str) -> Option<Entry> {
        let e = self.entries.remove(key)?;
        self.lru.remove(&e.used);
        Some(e)
    }

    /// Drops an entry past its time to live; a valid one counts as expired.
    fn expire(&mut self, key: &str, now: Instant) {
        let stale = self
            .entries
            .get(key)
            .is_some_and(|e| e.state != State::Invalid && e.expires <= now);
        if stale {
            self.remove(key);
            self.stats.expirations += 1;
        }
    }

    /// A read: the valid, unexpired entry for `key`, counted as a hit or a miss.
    pub fn get(&mut self, key: &str, now: Instant) -> Option<Found> {
        self.expire(key, now);
        let found = self.peek(key, now);
        match &found {
            Some(_) => {
                self.stats.hits += 1;
                self.touch(key);
            }
            None => self.stats.misses += 1,
        }
        found
    }

    /// What `get` would answer, without counting or touching anything.
    pub fn peek(&self, key: &str, now: Instant) -> Option<Found> {
        let e = self.entries.get(key)?;
        (e.state != State::Invalid && e.expires > now).then(|| Found {
            value: e.value.clone(),
            rev: e.rev,
            state: e.state,
        })
    }

    /// The state and revision held for `key`, tombstones included.
    pub fn state(&self, key: &str) -> Option<(State, u64)> {
        self.entries.get(key).map(|e| (e.state, e.rev))
    }

    /// Installs a fill unless it is older than what this node knows: a
    /// tombstone or a valid entry with a later revision, or a store read from
    /// before the floor. Answers whether it was installed.
    pub fn fill(&mut self, fill: Fill, now: Instant) -> bool {
        self.expire(&fill.key, now);
        let below_floor = self.floor.is_none_or(|f| fill.read_rev < f);
        let superseded = match self.entries.get(&fill.key) {
            Some(e) if e.state == State::Invalid => fill.rev < e.rev,
            Some(e) => fill.rev <= e.rev && !(fill.rev == e.rev && fill.expires > e.expires),
            None => false,
        };
        if superseded || below_floor || fill.expires <= now {
            self.stats.stale_fills += u64::from(superseded || below_floor);
            return false;
        }
        self.remove(&fill.key);
        self.make_room();
        self.entries.insert(
            fill.key.clone(),
            Entry {
                value: fill.value,
                rev: fill.rev,
                state: fill.state,
                expires: fill.expires,
                used: 0,
            },
        );
        self.touch(&fill.key);
        true
    }

    /// Marks the reader's copy shared once a replica confirmed it (if it is
    /// still the same version).
    pub fn shared(&mut self, key: &str, rev: u64) {
        if let Some(e) = self.entries.get_mut(key) {
            if e.state == State::Exclusive && e.rev == rev {
                e.state = State::Shared;
            }
        }
    }

    /// Applies the invalidation by the write at store revision `rev`: any
    /// older copy becomes a tombstone carrying `rev`.
    pub fn invalidate(&mut self, key: &str, rev: u64) {
        self.stats.invalidations += 1;
        if let Some(e) = self.entries.get_mut(key) {
            if e.rev >= rev && e.state != State::Invalid {
                return; // already holds that write's value or a later one
            }
            e.state = State::Invalid;
            e.rev = e.rev.max(rev);
            e.value = Value::Null;
            return;
        }
        self.make_room();
        self.entries.insert(
            key.to_string(),
            Entry {
                value: Value::Null,
                rev,
                state: State::Invalid,
                // Tombstones do not expire; only eviction removes them.
                expires: Instant::now(),
                used: 0,
            },
        );
        self.touch(key);
    }

    /// Evicts least recently used entries until one more fits. An evicted
    /// tombstone's revision raises the floor, so its protection outlives it.
    fn make_room(&mut self) {
        while self.entries.len() >= self.capacity {
            let Some((_, key)) = self.lru.pop_first() else {
                break;
            };
            if let Some(e) = self.entries.remove(&key) {
                self.stats.evictions += 1;
                if e.state == State::Invalid {
                    self.floor = Some(self.floor.unwrap_or(0).max(e.rev));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    fn fill(key: &str, value: i64, rev: u64, read_rev: u64, at: Instant) -> Fill {
        Fill {
            key: key.into(),
            value: json!(value),
            rev,
            read_rev,
            expires: at + Duration::from_secs(10),
            state: State::Exclusive,
        }
    }

    fn cache(capacity: usize) -> LocalCache {
        let mut c = LocalCache::new(capacity);
        c.learn_floor(0);
        c
    }

    #[test]
    fn a_fill_is_served_until_its_time_to_live_runs_out() {
        let t = Instant::now();
        let mut c = cache(4);
        assert_eq!(c.get("a", t), None);
        let mut f = fill("a", 1, 3, 5, t);
        f.expires = t + Duration::from_millis(100);
        assert!(c.fill(f, t));
        assert_eq!(
            c.get("a", t + Duration::from_millis(99)).unwrap().value,
            json!(1)
        );
        assert_eq!(c.get("a", t + Duration::from_millis(100)), None);
        let s = c.stats();
        assert_eq!((s.hits, s.misses, s.expirations), (1, 2, 1));
        assert!(c.is_empty());
    }

    #[test]
    fn least_recently_used_entries_go_first() {
        let t = Instant::now();
        let mut c = cache(3);
        for (i, k) in ["a", "b", "c"].iter().enumerate() {
            assert!(c.fill(fill(k, i as i64, 1, 1, t), t));
        }
        c.get("a", t); // b is now the oldest
        assert!(c.fill(fill("d", 9, 1, 1, t), t));
        assert_eq!(c.len(), 3);
        assert!(c.peek("b", t).is_none());
        for k in ["a", "c", "d"] {
            assert!(c.peek(k, t).is_some(), "{k}");
        }
        assert_eq!(c.stats().evictions, 1);
    }

    #[test]
    fn an_invalidated_value_is_never_brought_back_by_an_older_fill() {
        let t = Instant::now();
        let mut c = cache(8);
        assert!(c.fill(fill("a", 1, 3, 4, t), t));
        c.invalidate("a", 7);
        assert_eq!(c.get("a", t), None);
        assert_eq!(c.state("a"), Some((State::Invalid, 7)));
        // A read-through that read the store before the write finishes late.
        assert!(!c.fill(fill("a", 1, 3, 6, t), t));
        assert_eq!(c.stats().stale_fills, 1);
        // One that saw the write is taken.
        assert!(c.fill(fill("a", 2, 7, 7, t), t));
        assert_eq!(c.get("a", t).unwrap().value, json!(2));
        // An invalidation older than the value held changes nothing.
        c.invalidate("a", 5);
        assert_eq!(c.get("a", t).unwrap().rev, 7);
        // A copy of an older value does not replace a newer one.
        assert!(!c.fill(fill("a", 1, 3, 9, t), t));
    }

    #[test]
    fn evicted_tombstones_raise_the_floor() {
        let t = Instant::now();
        let mut c = cache(2);
        c.invalidate("a", 10);
        c.invalidate("b", 4);
        c.invalidate("c", 5); // evicts a's tombstone
        assert_eq!(c.state("a"), None);
        // A fill of `a` read before revision 10 may predate the lost tombstone.
        assert!(!c.fill(fill("a", 1, 2, 9, t), t));
        assert!(c.fill(fill("a", 1, 2, 10, t), t));
    }

    #[test]
    fn a_restarted_node_takes_no_fill_until_it_knows_its_floor() {
        let t = Instant::now();
        let mut c = LocalCache::new(4);
        assert!(!c.fill(fill("a", 1, 1, 100, t), t));
        c.learn_floor(50);
        assert!(!c.fill(fill("a", 1, 1, 49, t), t));
        assert!(c.fill(fill("a", 1, 1, 50, t), t));
        c.shared("a", 1);
        assert_eq!(c.peek("a", t).unwrap().state, State::Shared);
    }
}
