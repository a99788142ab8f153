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

    /// Reads the saved snapshot, if any. A snapshot whose checksum (`crc32`,
    /// over the rest of the object) does not match is refused as
    /// `InvalidData`: its state cannot be trusted.
    pub fn load(dir: &Path) -> io::Result<Option<Snapshot>> {
        let bad = |why: String| {
            io::Error::new(io::ErrorKind::InvalidData, format!("snapshot.json: {why}"))
        };
        let bytes = match std::fs::read(Self::path(dir)) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
        if let Some(obj) = value.as_object_mut() {
            if let Some(sum) = obj.remove("crc32") {
                let body = serde_json::to_vec(obj).map_err(io::Error::other)?;
                if sum.as_u64() != Some(crc32fast::hash(&body) as u64) {
                    return Err(bad("checksum mismatch (damaged)".into()));
                }
            }
        }
        serde_json::from_value(value)
            .map(Some)
            .map_err(|e| bad(e.to_string()))
    }

    /// Saves durably and atomically.
    pub fn save(&self, dir: &Path, sync: bool) -> io::Result<()> {
        let mut value = serde_json::to_value(self).map_err(io::Error::other)?;
        if let Some(obj) = value.as_object_mut() {
            let body = serde_json::to_vec(obj).map_err(io::Error::other)?;
            obj.insert("crc32".into(), crc32fast::hash(&body).into());
        }
        let bytes = serde_json::to_vec(&value).map_err(io::Error::other)?;
        super::write_atomic(&Self::path(dir), &bytes, sync)
    }
}
