//! Link faults carried out by the proxies: delay with jitter and duplication, loss.

use std::time::Duration;

use workloads::Rng;

use crate::net::proxy::LinkPolicy;

/// A random delay shape: 5-50 ms, jitter up to 100 ms, 5% duplicates.
pub fn delay(rng: &mut Rng) -> LinkPolicy {
    LinkPolicy {
        delay: Duration::from_millis(5 + rng.below(46)),
        jitter: Duration::from_millis(rng.below(101)),
        duplicate: 0.05,
        ..LinkPolicy::default()
    }
}

/// A random loss rate of 10-40%.
pub fn loss(rng: &mut Rng) -> LinkPolicy {
    LinkPolicy {
        loss: 0.1 + 0.3 * rng.unit(),
        ..LinkPolicy::default()
    }
}
