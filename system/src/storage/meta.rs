//! The current term and the vote cast in it (`meta.json`).

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::types::NodeId;

/// Term and vote, persisted before they are acted on.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    /// Latest term this node has seen.
    pub term: u64,
    /// Whom it voted for in that term.
    pub voted_for: Option<NodeId>,
}

impl Meta {
    fn path(dir: &Path) -> PathBuf {
        dir.join("meta.json")
    }

    /// Reads the saved term and vote; defaults when the node is new.
    pub fn load(dir: &Path) -> io::Result<Meta> {
        match std::fs::read(Self::path(dir)) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("meta.json: {e}"))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Meta::default()),
            Err(e) => Err(e),
        }
    }

    /// Saves durably (unless `sync` is false, a planted bug).
    pub fn save(&self, dir: &Path, sync: bool) -> io::Result<()> {
        let bytes = serde_json::to_vec(self).map_err(io::Error::other)?;
        super::write_atomic(&Self::path(dir), &bytes, sync)
    }
}
