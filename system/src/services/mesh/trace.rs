//! W3C trace context (`traceparent: 00-TRACE-SPAN-FLAGS`) and the ids and
//! random draws the mesh needs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// Milliseconds since the Unix epoch (the mesh's timestamps; every process of
/// a local run shares the clock, so the checker can compare them).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

static STATE: AtomicU64 = AtomicU64::new(0);

/// A random u64 (splitmix64 over a process-wide counter seeded from the clock
/// and pid): ids and jitter, not cryptography.
pub fn random() -> u64 {
    let mut seed = STATE.load(Ordering::Relaxed);
    if seed == 0 {
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        seed = t ^ ((std::process::id() as u64) << 32) | 1;
        let _ = STATE.compare_exchange(0, seed, Ordering::Relaxed, Ordering::Relaxed);
    }
    let mut z = STATE
        .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A uniform draw in [0, 1).
pub fn unit() -> f64 {
    (random() >> 11) as f64 / (1u64 << 53) as f64
}

/// A fresh 16-hex-digit span id.
pub fn span_id() -> String {
    format!("{:016x}", random() | 1)
}

/// A trace context: which trace, and the span that is the parent of the next.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Context {
    /// 32 hex digits.
    pub trace: String,
    /// 16 hex digits: the calling span.
    pub parent: String,
}

impl Context {
    /// Parses a `traceparent` header; `None` when it is not version 00 with
    /// lowercase hex ids that are not all zero.
    pub fn parse(header: &str) -> Option<Context> {
        let parts: Vec<&str> = header.trim().split('-').collect();
        let hex = |s: &str, n: usize| {
            s.len() == n
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                && s.bytes().any(|b| b != b'0')
        };
        match parts.as_slice() {
            ["00", trace, span, flags] if hex(trace, 32) && hex(span, 16) && flags.len() == 2 => {
                Some(Context {
                    trace: trace.to_string(),
                    parent: span.to_string(),
                })
            }
            _ => None,
        }
    }

    /// A new trace with no parent span.
    pub fn fresh() -> Context {
        Context {
            trace: format!("{:016x}{:016x}", random(), random() | 1),
            parent: String::new(),
        }
    }

    /// The header that makes `span` the parent of the callee's spans.
    pub fn header_for(&self, span: &str) -> String {
        format!("00-{}-{span}-01", self.trace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips_and_malformed_headers_are_refused() {
        let c = Context::fresh();
        let span = span_id();
        let back = Context::parse(&c.header_for(&span)).unwrap();
        assert_eq!((back.trace, back.parent), (c.trace.clone(), span));
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        ] {
            assert_eq!(Context::parse(bad), None, "{bad}");
        }
        let draws: Vec<f64> = (0..1000).map(|_| unit()).collect();
        assert!(draws.iter().all(|u| (0.0..1.0).contains(u)));
        let mean = draws.iter().sum::<f64>() / 1000.0;
        assert!((0.4..0.6).contains(&mean), "{mean}");
    }
}
