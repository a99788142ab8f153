//! The node's wall clock, read through an offset that the admin API can move
//! (clock-skew faults). Raft's timers use the monotonic clock and ignore it.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Largest offset from true time, either way: one day. Lock commands carry this
/// clock and replicated lock time never goes back, so a larger skew would leave
/// every lease judged against a far future.
pub const MAX_OFFSET_MS: i64 = 86_400_000;

/// Wall time plus an adjustable offset.
#[derive(Debug, Default)]
pub struct Clock {
    offset_ms: AtomicI64,
}

/// An offset beyond [`MAX_OFFSET_MS`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} would make the clock's offset {offset} ms; it must stay within ±{MAX_OFFSET_MS} ms (one day)")]
pub struct OffsetOutOfRange {
    /// The request field that asked for it.
    pub field: &'static str,
    /// The offset it would give (saturated at the i64 limits).
    pub offset: i64,
}

impl Clock {
    /// Milliseconds since the Unix epoch as this node believes.
    pub fn now_ms(&self) -> i64 {
        let real = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        real.saturating_add(self.offset_ms.load(Ordering::Relaxed))
    }
    /// The current offset.
    pub fn offset_ms(&self) -> i64 {
        self.offset_ms.load(Ordering::Relaxed)
    }
    /// Sets the offset, refusing one beyond [`MAX_OFFSET_MS`].
    pub fn set_offset_ms(&self, ms: i64) -> Result<i64, OffsetOutOfRange> {
        within_bound("offset_ms", ms)?;
        self.offset_ms.store(ms, Ordering::Relaxed);
        Ok(ms)
    }
    /// Moves the offset by `ms`, refusing to move it beyond [`MAX_OFFSET_MS`].
    pub fn bump_ms(&self, ms: i64) -> Result<i64, OffsetOutOfRange> {
        self.offset_ms
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                let new = old.saturating_add(ms);
                within_bound("bump_ms", new).is_ok().then_some(new)
            })
            .map(|old| old.saturating_add(ms))
            .map_err(|old| OffsetOutOfRange {
                field: "bump_ms",
                offset: old.saturating_add(ms),
            })
    }
}

fn within_bound(field: &'static str, offset: i64) -> Result<(), OffsetOutOfRange> {
    if offset.checked_abs().is_some_and(|a| a <= MAX_OFFSET_MS) {
        Ok(())
    } else {
        Err(OffsetOutOfRange { field, offset })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_beyond_a_day_are_refused_and_time_never_wraps() {
        let c = Clock::default();
        assert_eq!(c.set_offset_ms(MAX_OFFSET_MS), Ok(MAX_OFFSET_MS));
        assert_eq!(c.set_offset_ms(-MAX_OFFSET_MS), Ok(-MAX_OFFSET_MS));
        for bad in [
            MAX_OFFSET_MS + 1,
            -MAX_OFFSET_MS - 1,
            i64::MAX,
            i64::MIN,
            1_000_000_000_000,
        ] {
            let e = c.set_offset_ms(bad).unwrap_err();
            assert_eq!((e.field, e.offset), ("offset_ms", bad));
        }
        assert_eq!(
            c.offset_ms(),
            -MAX_OFFSET_MS,
            "a refused offset changes nothing"
        );
        c.set_offset_ms(MAX_OFFSET_MS - 5).unwrap();
        assert_eq!(c.bump_ms(5), Ok(MAX_OFFSET_MS));
        let e = c.bump_ms(i64::MAX).unwrap_err();
        assert_eq!((e.field, e.offset), ("bump_ms", i64::MAX));
        assert!(c.bump_ms(1).is_err());
        assert_eq!(c.offset_ms(), MAX_OFFSET_MS);
        assert_eq!(
            c.bump_ms(i64::MIN).unwrap_err().offset,
            i64::MIN + MAX_OFFSET_MS
        );
        assert!(c.now_ms() > 0);
    }
}
