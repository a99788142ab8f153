//! The `cache` workload's generator: reads of hot keys (served from the cache
//! most of the time), writes of unique values to them (stored, then
//! invalidated), writes to a few keys that bypass invalidation (only the time
//! to live bounds their staleness), and reads of cold keys, never written, that
//! push the hot ones towards eviction.

use serde_json::json;

use crate::{Generator, Invocation, Rng};

/// Keys whose writes skip invalidation.
pub const TTL_KEYS: u64 = 2;
/// Cold keys, read now and then to exercise eviction.
pub const COLD_KEYS: u64 = 5000;

/// Ops of the `cache` workload.
pub struct CacheGenerator {
    keys: u64,
    next_value: u64,
}

impl CacheGenerator {
    /// Hot keys `c0..c{keys-1}` beside the bypassed `t0`, `t1`.
    pub fn new(keys: usize) -> Self {
        CacheGenerator {
            keys: keys.max(1) as u64,
            next_value: 0,
        }
    }

    fn written_keys(&self) -> Vec<String> {
        (0..self.keys)
            .map(|i| format!("c{i}"))
            .chain((0..TTL_KEYS).map(|i| format!("t{i}")))
            .collect()
    }
}

impl Generator for CacheGenerator {
    fn next(&mut self, _process: u64, rng: &mut Rng) -> Option<Invocation> {
        let roll = rng.below(100);
        if roll < 10 {
            return Some(Invocation {
                f: "read".into(),
                key: Some(format!("cold{}", rng.below(COLD_KEYS))),
                value: json!(null),
            });
        }
        let bypass = rng.chance(0.15);
        let key = if bypass {
            format!("t{}", rng.below(TTL_KEYS))
        } else {
            format!("c{}", rng.below(self.keys))
        };
        if roll < 75 {
            return Some(Invocation {
                f: "read".into(),
                key: Some(key),
                value: json!(null),
            });
        }
        self.next_value += 1;
        Some(Invocation {
            f: "write".into(),
            key: Some(key),
            value: json!({"value": self.next_value, "invalidate": !bypass}),
        })
    }

    fn final_ops(&self) -> Vec<Invocation> {
        vec![Invocation {
            f: "converge".into(),
            key: None,
            value: json!({"keys": self.written_keys()}),
        }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_unique_and_only_bypassed_keys_skip_invalidation() {
        let mut g = CacheGenerator::new(3);
        let mut rng = Rng::new(4);
        let mut values = std::collections::BTreeSet::new();
        let (mut reads, mut cold) = (0, 0);
        for _ in 0..2000 {
            let op = g.next(0, &mut rng).unwrap();
            let key = op.key.clone().unwrap();
            match op.f.as_str() {
                "write" => {
                    assert!(values.insert(op.value["value"].as_u64().unwrap()));
                    assert_eq!(op.value["invalidate"], json!(key.starts_with('c')), "{key}");
                    assert!(!key.starts_with("cold"));
                }
                _ => {
                    reads += 1;
                    cold += usize::from(key.starts_with("cold"));
                }
            }
        }
        assert!(
            reads > 1000 && cold > 100 && values.len() > 300,
            "{reads} {cold}"
        );
        let finals = g.final_ops();
        assert_eq!(
            finals[0].value["keys"],
            json!(["c0", "c1", "c2", "t0", "t1"])
        );
    }
}
