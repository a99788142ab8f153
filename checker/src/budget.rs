//! Explicit limits for the search: time, memory, and cancellation.
//!
//! Hitting a limit is an outcome (`unknown`, naming the limit), never a crash or a
//! hang. Memory is accounted in bytes reserved before the visited sets grow, shared
//! by all keys searched in parallel.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Which limit ended a search early.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Exhausted {
    /// The time limit passed.
    Time,
    /// The visited sets would have grown past the memory limit.
    Memory,
    /// Another key was found invalid, so this one's answer no longer matters.
    Cancelled,
}

impl Exhausted {
    /// A phrase for messages.
    pub fn describe(self) -> &'static str {
        match self {
            Exhausted::Time => "time limit reached",
            Exhausted::Memory => "memory limit reached",
            Exhausted::Cancelled => "cancelled after another key was found invalid",
        }
    }
}

/// Limits shared by every search of one check.
#[derive(Debug)]
pub struct Budget {
    deadline: Option<Instant>,
    memory_limit: usize,
    reserved: AtomicUsize,
    peak: AtomicUsize,
    cancelled: AtomicBool,
}

impl Budget {
    /// A budget of `time` (none: unlimited) and `memory` bytes for the visited sets.
    pub fn new(time: Option<Duration>, memory: usize) -> Self {
        Budget {
            deadline: time.map(|t| Instant::now() + t),
            memory_limit: memory,
            reserved: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            cancelled: AtomicBool::new(false),
        }
    }

    /// No time limit and all the memory a `usize` can count.
    pub fn unlimited() -> Self {
        Budget::new(None, usize::MAX)
    }

    /// Takes `bytes` from the memory budget, or says it would run out.
    pub fn reserve(&self, bytes: usize) -> Result<(), Exhausted> {
        let before = self.reserved.fetch_add(bytes, Ordering::Relaxed);
        let after = before.saturating_add(bytes);
        if after > self.memory_limit {
            self.reserved.fetch_sub(bytes, Ordering::Relaxed);
            return Err(Exhausted::Memory);
        }
        self.peak.fetch_max(after, Ordering::Relaxed);
        Ok(())
    }

    /// Gives back bytes taken with [`Budget::reserve`].
    pub fn release(&self, bytes: usize) {
        self.reserved.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// The most bytes reserved at once.
    pub fn peak_bytes(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    /// Asks every search sharing this budget to stop.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }

    /// Whether the search must stop now, and why.
    pub fn check(&self) -> Result<(), Exhausted> {
        if self.cancelled.load(Ordering::Relaxed) {
            return Err(Exhausted::Cancelled);
        }
        if let Some(d) = self.deadline {
            if Instant::now() >= d {
                return Err(Exhausted::Time);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_reservations_stop_at_the_limit_and_are_returned() {
        let b = Budget::new(None, 100);
        assert_eq!(b.reserve(60), Ok(()));
        assert_eq!(b.reserve(60), Err(Exhausted::Memory));
        b.release(60);
        assert_eq!(b.reserve(100), Ok(()));
        assert_eq!(b.peak_bytes(), 100);
    }

    #[test]
    fn cancel_and_deadline_end_the_search() {
        let b = Budget::new(Some(Duration::ZERO), usize::MAX);
        assert_eq!(b.check(), Err(Exhausted::Time));
        let b = Budget::unlimited();
        assert_eq!(b.check(), Ok(()));
        b.cancel();
        assert_eq!(b.check(), Err(Exhausted::Cancelled));
    }
}
