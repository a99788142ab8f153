//! The ways a replica can be made to lie (`POST /admin/byzantine`, for the
//! harness's byzantine nemesis). Each uses only this replica's own keys: a
//! faulty replica can say anything, but only as itself.

use std::sync::Mutex;

use serde_json::Value;

use super::message::{digest_of, Body, Keys, Op, Signed};

/// A misbehaviour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// As primary, sends different batches (each with its own digest) to
    /// different backups.
    Equivocate,
    /// As primary, sends backups a batch with forged requests under the digest
    /// of the real one.
    WrongDigest,
    /// Answers its clients with made-up results.
    WrongResult,
    /// Sends nothing and answers no client.
    Silent,
    /// Sends again, now and then, messages it sent long ago.
    Replay,
    /// Claims, in its votes, a view far past the real one.
    FalseView,
}

impl Behaviour {
    /// Every behaviour, by its admin API name.
    pub const ALL: &'static [(Behaviour, &'static str)] = &[
        (Behaviour::Equivocate, "equivocate"),
        (Behaviour::WrongDigest, "wrong-digest"),
        (Behaviour::WrongResult, "wrong-result"),
        (Behaviour::Silent, "silent"),
        (Behaviour::Replay, "replay"),
        (Behaviour::FalseView, "false-view"),
    ];

    /// The admin API name.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(b, _)| *b == self)
            .map_or("?", |(_, n)| n)
    }

    /// The behaviour called `name`.
    pub fn parse(name: &str) -> Option<Behaviour> {
        Self::ALL.iter().find(|(_, n)| *n == name).map(|(b, _)| *b)
    }
}

/// The behaviour switched on now, shared by the admin API and the replica.
#[derive(Debug, Default)]
pub struct Switch(Mutex<Option<Behaviour>>);

impl Switch {
    /// The behaviour in force, if any.
    pub fn get(&self) -> Option<Behaviour> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
    /// Switches to `b` (`None`: honest again).
    pub fn set(&self, b: Option<Behaviour>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = b;
    }
}

/// How far a false view claims to be ahead.
const FALSE_VIEW_AHEAD: u64 = 7;

/// A vote as a false-view replica sends it.
pub(super) fn false_view(b: Option<Behaviour>, body: Body) -> Body {
    if b != Some(Behaviour::FalseView) {
        return body;
    }
    match body {
        Body::Prepare { view, seq, digest } => Body::Prepare {
            view: view + FALSE_VIEW_AHEAD,
            seq,
            digest,
        },
        Body::Commit { view, seq, digest } => Body::Commit {
            view: view + FALSE_VIEW_AHEAD,
            seq,
            digest,
        },
        other => other,
    }
}

/// The message a lying primary sends the `i`th other replica in place of `msg`.
pub(super) fn as_primary(b: Option<Behaviour>, keys: &Keys, msg: &Signed, i: usize) -> Signed {
    let Body::PrePrepare {
        view,
        seq,
        digest,
        batch,
    } = &msg.body
    else {
        return msg.clone();
    };
    let mut forged = batch.clone();
    for r in &mut forged {
        if let Op::Command(c) = &mut r.op {
            forge_written(c);
        }
    }
    match b {
        // Half the backups get a forged batch with its own true digest.
        Some(Behaviour::Equivocate) if i % 2 == 1 => keys.sign(Body::PrePrepare {
            view: *view,
            seq: *seq,
            digest: digest_of(&forged),
            batch: forged,
        }),
        // Every backup gets the forged batch under the real digest.
        Some(Behaviour::WrongDigest) => keys.sign(Body::PrePrepare {
            view: *view,
            seq: *seq,
            digest: digest.clone(),
            batch: forged,
        }),
        _ => msg.clone(),
    }
}

/// What a replica answers its client with `result` (`None`: nothing).
pub(super) fn as_reply(b: Option<Behaviour>, mut result: Value) -> Option<Value> {
    match b {
        Some(Behaviour::Silent) => None,
        Some(Behaviour::WrongResult) => {
            forge(&mut result);
            Some(result)
        }
        _ => Some(result),
    }
}

/// Changes the values a command writes (fields `value`, `new`, `data`), at
/// any depth, leaving what it does and to which key alone.
fn forge_written(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, x) in map.iter_mut() {
                if matches!(k.as_str(), "value" | "new" | "data") {
                    forge(x);
                } else {
                    forge_written(x);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(forge_written),
        _ => {}
    }
}

/// Changes every number and string in `v` (and makes a null a number), so
/// forged writes store values nobody wrote and forged answers are wrong.
fn forge(v: &mut Value) {
    match v {
        Value::Null => *v = Value::from(999_999),
        Value::Number(n) => {
            *v = match (n.as_i64(), n.as_f64()) {
                (Some(i), _) => Value::from(i.wrapping_add(1_000)),
                (None, Some(f)) => Value::from(f + 1_000.0),
                _ => Value::from(999_999),
            }
        }
        Value::String(s) => s.push_str("-forged"),
        Value::Bool(b) => *b = !*b,
        Value::Array(items) => items.iter_mut().for_each(forge),
        Value::Object(map) => map.values_mut().for_each(forge),
    }
}
