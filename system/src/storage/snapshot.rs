//! The latest snapshot of the state machine (`snapshot.json`).

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::types::Members;

/// State up to and including `last_index`, replacing that prefix of the log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Last log index the snapshot covers.
    pub last_index: u64,
    /// Term of that entry.
    pub last_term: u64,
    /// Membership as of `last_index`.
    pub members: Members,
    /// The state machine's own serialization.
    pub data: Value,
}

impl Snapshot {
    fn path(dir: &Path) -> PathBuf {
        dir.join("snapshot.json")
    }

    /// Reads the saved snapshot, if any.
    pub fn load(dir: &Path) -> io::Result<Option<Snapshot>> {
        match std::fs::read(Self::path(dir)) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                io::Error::new(io::ErrorKind::InvalidData, format!("snapshot.json: {e}"))
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Saves durably and atomically.
    pub fn save(&self, dir: &Path, sync: bool) -> io::Result<()> {
        let bytes = serde_json::to_vec(self).map_err(io::Error::other)?;
        super::write_atomic(&Self::path(dir), &bytes, sync)
    }
}
