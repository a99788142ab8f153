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
    /// Set when the file held entries past an unreadable record (damage, not a
    /// torn tail): the highest index it held, now lost. `u64::MAX` when the
    /// records found do not follow the snapshot (it was lost).
    damaged: Option<u64>,
}

/// A record that reads back whole: its entry, where it starts and ends.
fn record_at(bytes: &[u8], pos: usize) -> Option<(Entry, usize)> {
    let header = bytes.get(pos..pos + HEADER)?;
    let len = u32::from_le_bytes(header[0..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(header[4..8].try_into().ok()?);
    if len > MAX_RECORD {
        return None;
    }
    let body = bytes.get(pos + HEADER..pos + HEADER + len)?;
    if crc32fast::hash(body) != crc {
        return None;
    }
    let entry = serde_json::from_slice::<Entry>(body).ok()?;
    Some((entry, pos + HEADER + len))
}

/// The highest index of any whole record at or after `pos` (found by trying
/// every byte offset: only after damage, so the cost does not matter).
fn highest_after(bytes: &[u8], pos: usize) -> Option<u64> {
    let mut best = None;
    let mut at = pos;
    while at + HEADER <= bytes.len() {
        match record_at(bytes, at) {
            Some((e, end)) => {
                best = best.max(Some(e.index));
                at = end;
            }
            None => at += 1,
        }
    }
    best
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
        let mut damaged = None;
        while pos + HEADER <= bytes.len() {
            let Some((entry, end)) = record_at(&bytes, pos) else {
                // A short or unreadable record with nothing whole after it is a
                // torn tail: a write a crash interrupted, never acknowledged.
                // Whole records after it, or a whole-length record whose
                // checksum fails, mean damage to data that may have been
                // acknowledged.
                let len =
                    u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap_or_default()) as usize;
                let whole_length = pos + HEADER + len == bytes.len();
                damaged = match highest_after(&bytes, pos + 1) {
                    Some(i) => Some(i.max(next)),
                    None if whole_length => Some(next),
                    None => None,
                };
                break;
            };
            if entry.index > next {
                // A gap: the records do not follow the snapshot (it was lost).
                // What is lost reaches at least as far as the records go.
                damaged = Some(highest_after(&bytes, pos).unwrap_or(entry.index));
                break;
            }
            if entry.index == next {
                offsets.push(pos as u64);
                entries.push(entry);
                next += 1;
            }
            pos = end;
        }
        // Damage found now, or found before and not yet repaired (the marker
        // outlives a crash during the repair).
        let marker = Self::marker(dir);
        // A marker that cannot be read says damage of unknown extent.
        let before = std::fs::read_to_string(&marker)
            .ok()
            .map(|t| t.trim().parse::<u64>().unwrap_or(u64::MAX));
        let damaged = damaged.max(before);
        if damaged > before {
            let d = damaged.unwrap_or(u64::MAX);
            super::write_atomic(&marker, d.to_string().as_bytes(), true)
                .map_err(io_err(&marker))?;
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
            damaged,
        })
    }

    fn marker(dir: &Path) -> PathBuf {
        dir.join("log.damaged")
    }

    /// Records (durably) in `dir`, before the log is opened, that what was lost
    /// reaches an unknown index (the snapshot is about to be set aside).
    pub fn mark_unknown_damage(dir: &Path) -> io::Result<()> {
        super::write_atomic(&Self::marker(dir), u64::MAX.to_string().as_bytes(), true)
    }

    /// Names the index to repair up to when it was unknown (`u64::MAX`): what
    /// the first leader heard says is committed.
    pub fn retarget_damage(&mut self, index: u64) -> io::Result<()> {
        if self.damaged == Some(u64::MAX) {
            super::write_atomic(&Self::marker(&self.dir), index.to_string().as_bytes(), true)?;
            self.damaged = Some(index);
        }
        Ok(())
    }

    /// Forgets the damage once the lost entries are back (from a leader).
    pub fn repaired(&mut self) -> io::Result<()> {
        match std::fs::remove_file(Self::marker(&self.dir)) {
            Ok(()) => super::sync_dir(&self.dir)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        self.damaged = None;
        Ok(())
    }

    /// When the file held entries past unreadable data: the highest index lost
    /// (`u64::MAX` if unknown). The node must not vote until it has them again.
    pub fn damaged(&self) -> Option<u64> {
        self.damaged
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
        // A torn tail is a crash, not damage.
        assert_eq!(log.damaged(), None);
    }

    fn synced_log(dir: &Path, n: u64) -> Vec<u8> {
        let mut log = Log::open(dir, 0, 0).unwrap();
        for i in 1..=n {
            log.append(entry(i, 1));
        }
        log.sync(true).unwrap();
        std::fs::read(dir.join("log.bin")).unwrap()
    }

    #[test]
    fn damage_in_the_middle_is_told_from_a_torn_tail_and_remembered_until_repaired() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = synced_log(dir.path(), 10);
        // Flip a byte inside the fourth record's body.
        let record = bytes.len() / 10;
        bytes[3 * record + HEADER + 2] ^= 0x5a;
        std::fs::write(dir.path().join("log.bin"), &bytes).unwrap();
        let log = Log::open(dir.path(), 0, 0).unwrap();
        assert_eq!(log.last_index(), 3, "the readable prefix stays");
        assert_eq!(log.damaged(), Some(10), "entries up to 10 were there");
        drop(log);
        // A crash before the repair does not make the node forget.
        let mut log = Log::open(dir.path(), 0, 0).unwrap();
        assert_eq!(log.last_index(), 3);
        assert_eq!(log.damaged(), Some(10));
        log.repaired().unwrap();
        let log = Log::open(dir.path(), 0, 0).unwrap();
        assert_eq!(log.damaged(), None);
    }

    #[test]
    fn new_damage_past_a_remembered_extent_enlarges_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = synced_log(dir.path(), 10);
        std::fs::write(dir.path().join("log.damaged"), "2").unwrap();
        let record = bytes.len() / 10;
        bytes[5 * record + HEADER + 2] ^= 0x5a;
        std::fs::write(dir.path().join("log.bin"), &bytes).unwrap();
        assert_eq!(Log::open(dir.path(), 0, 0).unwrap().damaged(), Some(10));
        // And the file says so too: a second restart still knows 10.
        assert_eq!(Log::open(dir.path(), 0, 0).unwrap().damaged(), Some(10));
        // A marker that cannot be read means an unknown extent.
        std::fs::write(dir.path().join("log.damaged"), "garbage").unwrap();
        assert_eq!(
            Log::open(dir.path(), 0, 0).unwrap().damaged(),
            Some(u64::MAX)
        );
    }

    #[test]
    fn a_whole_last_record_that_fails_its_checksum_is_damage() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = synced_log(dir.path(), 4);
        let n = bytes.len();
        bytes[n - 2] ^= 0x01;
        std::fs::write(dir.path().join("log.bin"), &bytes).unwrap();
        let log = Log::open(dir.path(), 0, 0).unwrap();
        assert_eq!(log.last_index(), 3);
        assert_eq!(log.damaged(), Some(4));
    }

    #[test]
    fn records_that_do_not_follow_a_lost_snapshot_are_damage_as_far_as_they_go() {
        let dir = tempfile::tempdir().unwrap();
        synced_log(dir.path(), 6);
        let mut log = Log::open(dir.path(), 0, 0).unwrap();
        log.compact(4, 1, true).unwrap();
        drop(log);
        // The snapshot at 4 is gone: the log starts at 5.
        let mut log = Log::open(dir.path(), 0, 0).unwrap();
        assert_eq!(log.last_index(), 0);
        assert_eq!(
            log.damaged(),
            Some(6),
            "lost at least as far as the records go"
        );
        log.retarget_damage(9).unwrap();
        assert_eq!(log.damaged(), Some(6), "a known extent is kept");
        // With nothing on disk to go by, the extent is unknown until a leader
        // says how far it has committed.
        let empty = tempfile::tempdir().unwrap();
        Log::mark_unknown_damage(empty.path()).unwrap();
        let mut log = Log::open(empty.path(), 0, 0).unwrap();
        assert_eq!(log.damaged(), Some(u64::MAX));
        log.retarget_damage(6).unwrap();
        assert_eq!(log.damaged(), Some(6));
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
