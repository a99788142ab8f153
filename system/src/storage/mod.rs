//! Durable state: term and vote, the log, snapshots and Paxos's acceptor
//! journal, under one data directory.
//!
//! Everything a node acknowledges is fsynced first: the vote before the vote reply,
//! log entries before an append is acknowledged or counted toward a commit.

mod journal;
mod log;
mod meta;
mod snapshot;

pub use journal::{Journal, JournalError};
pub use log::{Log, LogError};
pub use meta::Meta;
pub use snapshot::Snapshot;

use std::fs::{self, File};
use std::io;
use std::path::Path;

/// Makes a rename or creation in `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes `bytes` to `path` atomically and durably: temp file, fsync, rename, fsync dir.
pub fn write_atomic(path: &Path, bytes: &[u8], sync: bool) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp)?;
        io::Write::write_all(&mut f, bytes)?;
        if sync {
            f.sync_all()?;
        }
    }
    fs::rename(&tmp, path)?;
    if sync {
        if let Some(dir) = path.parent() {
            sync_dir(dir)?;
        }
    }
    Ok(())
}
