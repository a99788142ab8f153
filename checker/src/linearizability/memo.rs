//! The visited set of the search: which (linearized set, model state) pairs were
//! already explored.
//!
//! The linearized set is identified by a 128-bit Zobrist fingerprint, updated in
//! O(1) as ops are linearized and undone, so a lookup never touches the set's bits.
//! Two distinct reachable sets share a fingerprint with probability 2^-128 per pair;
//! a collision could only prune a branch (never invent a linearization), and an
//! invalid verdict is re-checked with [`ExactMemo`], which stores the bits.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hash, Hasher};

use crate::budget::{Budget, Exhausted};

/// A fast non-cryptographic hasher (FxHash's multiply-rotate) for already-random keys.
#[derive(Default, Clone, Copy)]
pub(crate) struct FxHasher(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.write_u64(i as u64)
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.write_u64(i as u64)
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(SEED);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64)
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

pub(crate) type FxBuild = BuildHasherDefault<FxHasher>;

/// SplitMix64: the per-op random keys of the fingerprint.
#[inline]
pub(crate) fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A visited set over (linearized set, state).
pub(crate) trait Memo<S> {
    /// Records the pair; `Ok(true)` if it was new.
    fn insert(
        &mut self,
        fp: [u64; 2],
        bits: &[u64],
        state: &S,
        budget: &Budget,
    ) -> Result<bool, Exhausted>;
    /// Returns the memory taken from the budget.
    fn release(&mut self, budget: &Budget);
}

struct FpEntry<S> {
    fp: [u64; 2],
    state: S,
}

impl<S: Hash> Hash for FpEntry<S> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        h.write_u64(self.fp[0]);
        self.state.hash(h);
    }
}
impl<S: PartialEq> PartialEq for FpEntry<S> {
    fn eq(&self, o: &Self) -> bool {
        self.fp == o.fp && self.state == o.state
    }
}
impl<S: Eq> Eq for FpEntry<S> {}

/// Bytes a hash table of `capacity` entries of `entry` bytes occupies (hashbrown:
/// buckets are a power of two at most 7/8 full, plus one control byte each).
fn table_bytes(capacity: usize, entry: usize) -> usize {
    let buckets = (capacity.max(1) * 8 / 7).next_power_of_two();
    buckets * (entry + 1)
}

/// Reserves budget before the table doubles, so the limit holds before allocating.
fn reserve_growth<T>(
    set: &HashSet<T, FxBuild>,
    reserved: &mut usize,
    budget: &Budget,
) -> Result<(), Exhausted> {
    if set.len() < set.capacity() && *reserved > 0 {
        return Ok(());
    }
    let want = table_bytes((set.capacity() * 2).max(64), std::mem::size_of::<T>());
    if want > *reserved {
        budget.reserve(want - *reserved)?;
        *reserved = want;
    }
    Ok(())
}

/// Fingerprint-keyed memo: 16 bytes of set identity per entry.
pub(crate) struct FingerprintMemo<S> {
    set: HashSet<FpEntry<S>, FxBuild>,
    reserved: usize,
}

impl<S> FingerprintMemo<S> {
    pub(crate) fn new() -> Self {
        FingerprintMemo {
            set: HashSet::default(),
            reserved: 0,
        }
    }
}

impl<S: Hash + Eq + Clone> Memo<S> for FingerprintMemo<S> {
    #[inline]
    fn insert(
        &mut self,
        fp: [u64; 2],
        _bits: &[u64],
        state: &S,
        budget: &Budget,
    ) -> Result<bool, Exhausted> {
        reserve_growth(&self.set, &mut self.reserved, budget)?;
        Ok(self.set.insert(FpEntry {
            fp,
            state: state.clone(),
        }))
    }
    fn release(&mut self, budget: &Budget) {
        budget.release(self.reserved);
        self.reserved = 0;
        self.set = HashSet::default();
    }
}

struct ExactEntry<S> {
    fp: u64,
    bits: Box<[u64]>,
    state: S,
}

impl<S: Hash> Hash for ExactEntry<S> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        h.write_u64(self.fp);
        self.state.hash(h);
    }
}
impl<S: PartialEq> PartialEq for ExactEntry<S> {
    fn eq(&self, o: &Self) -> bool {
        self.fp == o.fp && self.state == o.state && self.bits == o.bits
    }
}
impl<S: Eq> Eq for ExactEntry<S> {}

/// Memo that stores each linearized set's bits: exact, and larger.
pub(crate) struct ExactMemo<S> {
    set: HashSet<ExactEntry<S>, FxBuild>,
    reserved: usize,
    heap: usize,
}

impl<S> ExactMemo<S> {
    pub(crate) fn new() -> Self {
        ExactMemo {
            set: HashSet::default(),
            reserved: 0,
            heap: 0,
        }
    }
}

impl<S: Hash + Eq + Clone> Memo<S> for ExactMemo<S> {
    fn insert(
        &mut self,
        fp: [u64; 2],
        bits: &[u64],
        state: &S,
        budget: &Budget,
    ) -> Result<bool, Exhausted> {
        reserve_growth(&self.set, &mut self.reserved, budget)?;
        let bytes = std::mem::size_of_val(bits);
        budget.reserve(bytes)?;
        let fresh = self.set.insert(ExactEntry {
            fp: fp[0],
            bits: bits.into(),
            state: state.clone(),
        });
        if fresh {
            self.heap += bytes;
        } else {
            budget.release(bytes);
        }
        Ok(fresh)
    }
    fn release(&mut self, budget: &Budget) {
        budget.release(self.reserved + self.heap);
        self.reserved = 0;
        self.heap = 0;
        self.set = HashSet::default();
    }
}

struct InlineEntry<S, const W: usize> {
    /// Hashed instead of the bits: random, so the table spreads evenly.
    fp: u64,
    bits: [u64; W],
    state: S,
}

impl<S: Hash, const W: usize> Hash for InlineEntry<S, W> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        h.write_u64(self.fp);
        self.state.hash(h);
    }
}
impl<S: PartialEq, const W: usize> PartialEq for InlineEntry<S, W> {
    fn eq(&self, o: &Self) -> bool {
        self.bits == o.bits && self.state == o.state
    }
}
impl<S: Eq, const W: usize> Eq for InlineEntry<S, W> {}

/// Exact memo for histories of at most `64 * W` ops: the bits stored inline, as
/// cheap as a fingerprint, so small searches need no second, exact pass.
pub(crate) struct InlineMemo<S, const W: usize> {
    set: HashSet<InlineEntry<S, W>, FxBuild>,
    reserved: usize,
}

impl<S, const W: usize> InlineMemo<S, W> {
    pub(crate) fn new() -> Self {
        InlineMemo {
            set: HashSet::default(),
            reserved: 0,
        }
    }
}

impl<S: Hash + Eq + Clone, const W: usize> Memo<S> for InlineMemo<S, W> {
    #[inline]
    fn insert(
        &mut self,
        fp: [u64; 2],
        bits: &[u64],
        state: &S,
        budget: &Budget,
    ) -> Result<bool, Exhausted> {
        reserve_growth(&self.set, &mut self.reserved, budget)?;
        let mut inline = [0u64; W];
        inline[..bits.len()].copy_from_slice(bits);
        Ok(self.set.insert(InlineEntry {
            fp: fp[0],
            bits: inline,
            state: state.clone(),
        }))
    }
    fn release(&mut self, budget: &Budget) {
        budget.release(self.reserved);
        self.reserved = 0;
        self.set = HashSet::default();
    }
}
