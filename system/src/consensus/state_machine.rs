//! The replicated state machine a consensus protocol drives: whatever the
//! committed log's commands mean is behind this trait, out of consensus's sight.

use serde_json::Value;

/// A deterministic state machine fed by the committed log.
pub trait StateMachine: Send + 'static {
    /// Applies a committed command and returns its result.
    fn apply(&mut self, command: &Value) -> Value;
    /// Answers a read-only query from the current state.
    fn query(&self, query: &Value) -> Value;
    /// The whole state, for a snapshot.
    fn snapshot(&self) -> Value;
    /// Replaces the state with a snapshot's.
    fn restore(&mut self, snapshot: &Value) -> Result<(), String>;
    /// The result `command` would have if applied now, without applying it; only
    /// for planted bugs that answer before committing.
    fn speculate(&self, _command: &Value) -> Option<Value> {
        None
    }
}

/// For protocol tests: a state machine that remembers the commands applied,
/// in order, and answers each with how many there are.
#[cfg(test)]
#[derive(Default)]
pub(crate) struct Applied(pub Vec<Value>);

#[cfg(test)]
impl StateMachine for Applied {
    fn apply(&mut self, command: &Value) -> Value {
        self.0.push(command.clone());
        Value::from(self.0.len())
    }
    fn query(&self, _query: &Value) -> Value {
        Value::from(self.0.clone())
    }
    fn snapshot(&self) -> Value {
        Value::from(self.0.clone())
    }
    fn restore(&mut self, snapshot: &Value) -> Result<(), String> {
        self.0 = serde_json::from_value(snapshot.clone()).map_err(|e| e.to_string())?;
        Ok(())
    }
}
