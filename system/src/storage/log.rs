//! The durable Raft log (`log.bin`): length- and CRC-framed JSON records.
//!
//! Appends collect in a user-space buffer; [`Log::sync`] writes them and fsyncs,
//! once per batch (group commit). On open, a torn or corrupt tail (a crash in the
//! middle of a write) is cut off; everything before it was fsynced whole.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::types::Entry;

/// A log that cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The file system failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

const HEADER: usize = 8;
/// Largest record accepted when reading back; bigger means corruption.
const MAX_RECORD: usize = 64 << 20;

/// The log: entries after the snapshot, in memory and on disk.
pub struct Log {
    dir: PathBuf,
    file: File,
    entries: Vec<Entry>,
    /// Byte offset of each entry's record (file bytes, then buffered bytes).
    offsets: Vec<u64>,
    snapshot_index: u64,
    snapshot_term: u64,
    buffer: Vec<u8>,
    file_len: u64,
    dirty: bool,
    synced_index: u64,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> LogError + '_ {
    move |source| LogError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Log {
    fn path(dir: &Path) -> PathBuf {
        dir.join("log.bin")
    }

    /// Opens (or creates) the log in `dir`, whose snapshot ends at
    /// (`snapshot_index`, `snapshot_term`), cutting off a torn tail.
    pub fn open(dir: &Path, snapshot_index: u64, snapshot_term: u64) -> Result<Log, LogError> {
        let path = Self::path(dir);
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io_err(&path))?;
        let mut entries = Vec::new();
        let mut offsets = Vec::new();
        let mut pos = 0usize;
        let mut next = snapshot_index + 1;
        while pos + HEADER <= bytes.len() {
            let len =
                u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap_or_default()) as usize;
            let crc = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().unwrap_or_default());
            if len > MAX_RECORD || pos + HEADER + len > bytes.len() {
                break;
            }
            let body = &bytes[pos + HEADER..pos + HEADER + len];
            if crc32fast::hash(body) != crc {
                break;
            }
            let Ok(entry) = serde_json::from_slice::<Entry>(body) else {
                break;
            };
            if entry.index > next {
                // A gap: what follows cannot be trusted.
                break;
            }
            if entry.index == next {
                offsets.push(pos as u64);
                entries.push(entry);
                next += 1;
            }
            pos += HEADER + len;
        }
        let valid = pos as u64;
        if valid < bytes.len() as u64 {
            file.set_len(valid).map_err(io_err(&path))?;
            file.sync_all().map_err(io_err(&path))?;
        }
        let synced_index = snapshot_index + entries.len() as u64;
        Ok(Log {
            dir: dir.to_path_buf(),
            file,
            entries,
            offsets,
            snapshot_index,
            snapshot_term,
            buffer: Vec::new(),
            file_len: valid,
            dirty: false,
            synced_index,
        })
    }

    /// Index of the last entry (the snapshot's when the log is empty).
    pub fn last_index(&self) -> u64 {
        self.snapshot_index + self.entries.len() as u64
    }

    /// Term of the last entry.
    pub fn last_term(&self) -> u64 {
        self.entries.last().map_or(self.snapshot_term, |e| e.term)
    }

    /// Last index covered by the snapshot.
    pub fn snapshot_index(&self) -> u64 {
        self.snapshot_index
    }

    /// Term of the entry at `index`, if known (the snapshot's last included).
    pub fn term_at(&self, index: u64) -> Option<u64> {
        if index == self.snapshot_index {
            return Some(self.snapshot_term);
        }
        self.entry(index).map(|e| e.term)
    }

    /// The entry at `index`, if it is in the log.
    pub fn entry(&self, index: u64) -> Option<&Entry> {
        if index <= self.snapshot_index {
            return None;
        }
        self.entries.get((index - self.snapshot_index - 1) as usize)
    }

    /// Up to `max` entries starting at `from` (which must be after the snapshot).
    pub fn entries_from(&self, from: u64, max: usize) -> Vec<Entry> {
        if from <= self.snapshot_index {
            return Vec::new();
        }
        let start = (from - self.snapshot_index - 1) as usize;
        self.entries.iter().skip(start).take(max).cloned().collect()
    }

    /// Entries in `(from, to]`, for recomputing membership after a truncation.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Entry> {
        self.entries.iter()
    }

    /// Appends an entry (buffered until [`Log::sync`]).
    pub fn append(&mut self, entry: Entry) {
        debug_assert_eq!(
            entry.index,
            self.last_index() + 1,
            "log entries must be contiguous"
        );
        let body = serde_json::to_vec(&entry).unwrap_or_default();
        self.offsets.push(self.file_len + self.buffer.len() as u64);
        self.buffer
            .extend_from_slice(&(body.len() as u32).to_le_bytes());
        self.buffer
            .extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        self.buffer.extend_from_slice(&body);
        self.entries.push(entry);
    }

    /// Removes every entry at `index` and after.
    pub fn truncate_from(&mut self, index: u64) -> io::Result<()> {
        if index <= self.snapshot_index || index > self.last_index() {
            return Ok(());
        }
        let keep = (index - self.snapshot_index - 1) as usize;
        let cut = self.offsets[keep];
        self.entries.truncate(keep);
        self.offsets.truncate(keep);
        if cut >= self.file_len {
            self.buffer.truncate((cut - self.file_len) as usize);
        } else {
            self.buffer.clear();
            self.file.set_len(cut)?;
            self.file_len = cut;
            self.dirty = true;
        }
        self.synced_index = self.synced_index.min(index - 1);
        Ok(())
    }

    /// Last index known to be on disk (fsynced).
    pub fn synced_index(&self) -> u64 {
        self.synced_index
    }

    /// Bytes appended but not yet written to the file.
    pub fn buffered_bytes(&self) -> usize {
        self.buffer.len()
    }

    /// Writes buffered entries; with `fsync`, makes them and any truncation durable.
    pub fn sync(&mut self, fsync: bool) -> io::Result<()> {
        if !self.buffer.is_empty() {
            self.file.write_all(&self.buffer)?;
            self.file_len += self.buffer.len() as u64;
            self.buffer.clear();
            self.dirty = true;
        }
        if fsync && self.dirty {
            self.file.sync_data()?;
            self.dirty = false;
        }
        if fsync {
            self.synced_index = self.last_index();
        }
        Ok(())
    }

    /// Drops entries up to `index` (now in a snapshot ending at `term`) and rewrites
    /// the file with the rest.
    pub fn compact(&mut self, index: u64, term: u64, fsync: bool) -> io::Result<()> {
        if index <= self.snapshot_index {
            return Ok(());
        }
        let drop = ((index - self.snapshot_index) as usize).min(self.entries.len());
        let keep: Vec<Entry> = self.entries.split_off(drop);
        self.rewrite(index, term, keep, fsync)
    }

    /// Replaces the log after installing a snapshot at (`index`, `term`): keeps the
    /// suffix if the log has that very entry, else empties the log.
    pub fn reset_to_snapshot(&mut self, index: u64, term: u64, fsync: bool) -> io::Result<()> {
        let keep = if self.term_at(index) == Some(term) && index >= self.snapshot_index {
            self.entries
                .split_off(((index - self.snapshot_index) as usize).min(self.entries.len()))
        } else {
            Vec::new()
        };
        self.rewrite(index, term, keep, fsync)
    }

    fn rewrite(&mut self, index: u64, term: u64, keep: Vec<Entry>, fsync: bool) -> io::Result<()> {
        let path = Self::path(&self.dir);
        let tmp = path.with_extension("tmp");
        {
            let mut f = File::create(&tmp)?;
            let mut out = Vec::new();
            for e in &keep {
                let body = serde_json::to_vec(e).unwrap_or_default();
                out.extend_from_slice(&(body.len() as u32).to_le_bytes());
                out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
                out.extend_from_slice(&body);
            }
            f.write_all(&out)?;
            if fsync {
                f.sync_all()?;
            }
        }
        std::fs::rename(&tmp, &path)?;
        if fsync {
            super::sync_dir(&self.dir)?;
        }
        let reopened = Log::open(&self.dir, index, term).map_err(|e| match e {
            LogError::Io { source, .. } => source,
        })?;
        *self = reopened;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Payload;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            payload: Payload::Command {
                command: serde_json::json!({"n": index}),
            },
        }
    }

    #[test]
    fn synced_entries_survive_reopen_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), 0, 0).unwrap();
        for i in 1..=5 {
            log.append(entry(i, 1));
        }
        log.sync(true).unwrap();
        log.append(entry(6, 1));
        // Not synced: a crash here loses entry 6 with the buffer.
        drop(log);
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join("log.bin"))
            .unwrap();
        f.write_all(&[9, 0, 0, 0, 1, 2]).unwrap();
        let log = Log::open(dir.path(), 0, 0).unwrap();
        assert_eq!(log.last_index(), 5);
        assert_eq!(log.entry(3).unwrap(), &entry(3, 1));
    }

    #[test]
    fn truncation_and_compaction_persist() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), 0, 0).unwrap();
        for i in 1..=10 {
            log.append(entry(i, 1));
        }
        log.sync(true).unwrap();
        log.truncate_from(8).unwrap();
        log.append(entry(8, 2));
        log.sync(true).unwrap();
        log.compact(4, 1, true).unwrap();
        let log = Log::open(dir.path(), 4, 1).unwrap();
        assert_eq!(log.last_index(), 8);
        assert_eq!(log.term_at(8), Some(2));
        assert_eq!(log.term_at(4), Some(1));
        assert!(log.entry(4).is_none());
        assert_eq!(log.entries_from(5, 10).len(), 4);
    }
}
