//! An acceptor's journal (`paxos.journal`): every promise and every accepted
//! value, appended as checksummed lines and fsynced before the acceptor answers.
//!
//! Each line is `CRC32-HEX JSON`. A bad last line is a torn write a crash
//! interrupted (never answered, so safe to cut); a bad line with good lines after
//! it is damage to answered state, and the journal refuses to open.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::{de::DeserializeOwned, Serialize};

/// An append-only file of checksummed JSON records, fsynced in batches.
pub struct Journal {
    path: PathBuf,
    file: File,
    buffer: Vec<u8>,
    records: u64,
}

/// Why a journal could not be opened.
#[derive(Debug)]
pub enum JournalError {
    /// Reading or cutting the file failed.
    Io(PathBuf, io::Error),
    /// A record other than the last is unreadable: answered state is damaged.
    Damaged {
        /// The file.
        path: PathBuf,
        /// The damaged line, from 1.
        line: usize,
        /// What is wrong with it.
        why: String,
    },
}

impl std::fmt::Display for JournalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JournalError::Io(p, e) => write!(f, "{}: {e}", p.display()),
            JournalError::Damaged { path, line, why } => write!(
                f,
                "{} line {line}: {why}; records after it were answered, so the journal is damaged",
                path.display()
            ),
        }
    }
}

impl std::error::Error for JournalError {}

fn encode<R: Serialize>(record: &R) -> Vec<u8> {
    let body = serde_json::to_vec(record).unwrap_or_default();
    let mut line = format!("{:08x} ", crc32fast::hash(&body)).into_bytes();
    line.extend_from_slice(&body);
    line.push(b'\n');
    line
}

fn decode<R: DeserializeOwned>(line: &[u8]) -> Result<R, String> {
    if line.len() < 9 || line[8] != b' ' {
        return Err("no checksum".into());
    }
    let sum = std::str::from_utf8(&line[..8])
        .ok()
        .and_then(|h| u32::from_str_radix(h, 16).ok())
        .ok_or("unreadable checksum")?;
    let body = &line[9..];
    if crc32fast::hash(body) != sum {
        return Err("checksum mismatch".into());
    }
    serde_json::from_slice(body).map_err(|e| e.to_string())
}

impl Journal {
    /// Opens (or creates) `dir/name` and reads its records, cutting a torn last
    /// line.
    pub fn open<R: DeserializeOwned>(
        dir: &Path,
        name: &str,
    ) -> Result<(Journal, Vec<R>), JournalError> {
        let path = dir.join(name);
        let io_err = |e| JournalError::Io(path.clone(), e);
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(io_err)?;
        // The file's name must outlive a power loss as much as its contents.
        super::sync_dir(dir).map_err(io_err)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io_err)?;
        let mut records = Vec::new();
        let mut pos = 0;
        let mut line_no = 0;
        while pos < bytes.len() {
            line_no += 1;
            let end = bytes[pos..].iter().position(|&b| b == b'\n');
            let line = &bytes[pos..end.map_or(bytes.len(), |e| pos + e)];
            match (decode::<R>(line), end) {
                (Ok(r), Some(e)) => {
                    records.push(r);
                    pos += e + 1;
                }
                (result, _) => {
                    let why = result.err().unwrap_or_else(|| "no line end".into());
                    let rest = end.map_or(bytes.len(), |e| pos + e + 1);
                    if bytes[rest..].contains(&b'\n') {
                        return Err(JournalError::Damaged {
                            path,
                            line: line_no,
                            why,
                        });
                    }
                    // A torn tail: cut it, durably, before appending after it.
                    file.set_len(pos as u64).map_err(io_err)?;
                    file.sync_all().map_err(io_err)?;
                    break;
                }
            }
        }
        let n = records.len() as u64;
        Ok((
            Journal {
                path,
                file,
                buffer: Vec::new(),
                records: n,
            },
            records,
        ))
    }

    /// Queues a record; it is durable after the next [`Journal::sync`].
    pub fn append<R: Serialize>(&mut self, record: &R) {
        self.buffer.extend_from_slice(&encode(record));
        self.records += 1;
    }

    /// Whether records are queued and not yet written.
    pub fn dirty(&self) -> bool {
        !self.buffer.is_empty()
    }

    /// Records in the file, written or queued.
    pub fn len(&self) -> u64 {
        self.records
    }

    /// Whether the journal holds no record.
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Writes what is queued and, unless `fsync` is false (a planted bug),
    /// makes it durable.
    pub fn sync(&mut self, fsync: bool) -> io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        self.file.write_all(&self.buffer)?;
        self.buffer.clear();
        if fsync {
            self.file.sync_data()?;
        }
        Ok(())
    }

    /// Replaces the whole journal with `records`, atomically and durably.
    pub fn rewrite<R: Serialize>(&mut self, records: &[R], fsync: bool) -> io::Result<()> {
        let mut bytes = Vec::new();
        for r in records {
            bytes.extend_from_slice(&encode(r));
        }
        super::write_atomic(&self.path, &bytes, fsync)?;
        self.file = OpenOptions::new().append(true).open(&self.path)?;
        self.buffer.clear();
        self.records = records.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("journal-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn records_survive_a_reopen_and_a_torn_tail_is_cut() {
        let d = dir("torn");
        let (mut j, old) = Journal::open::<u64>(&d, "j").unwrap();
        assert!(old.is_empty());
        for i in 0..5u64 {
            j.append(&i);
        }
        j.sync(true).unwrap();
        drop(j);
        let path = d.join("j");
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"1234abcd 5").unwrap();
        drop(f);
        let (mut j, got) = Journal::open::<u64>(&d, "j").unwrap();
        assert_eq!(got, vec![0, 1, 2, 3, 4]);
        j.append(&9u64);
        j.sync(true).unwrap();
        let (_, got) = Journal::open::<u64>(&d, "j").unwrap();
        assert_eq!(got, vec![0, 1, 2, 3, 4, 9]);
    }

    #[test]
    fn a_damaged_record_with_records_after_it_refuses_to_open() {
        let d = dir("damaged");
        let (mut j, _) = Journal::open::<u64>(&d, "j").unwrap();
        for i in 100..104u64 {
            j.append(&i);
        }
        j.sync(true).unwrap();
        let path = d.join("j");
        let mut bytes = std::fs::read(&path).unwrap();
        let second = bytes.iter().position(|&b| b == b'\n').unwrap() + 10;
        bytes[second] ^= 0x01;
        std::fs::write(&path, &bytes).unwrap();
        match Journal::open::<u64>(&d, "j") {
            Err(JournalError::Damaged { line, .. }) => assert_eq!(line, 2),
            other => panic!("expected damage, got {:?}", other.map(|(_, r)| r)),
        }
    }

    #[test]
    fn a_rewrite_replaces_every_record() {
        let d = dir("rewrite");
        let (mut j, _) = Journal::open::<u64>(&d, "j").unwrap();
        j.append(&1u64);
        j.sync(true).unwrap();
        j.rewrite(&[7u64, 8], true).unwrap();
        j.append(&9u64);
        j.sync(true).unwrap();
        let (j, got) = Journal::open::<u64>(&d, "j").unwrap();
        assert_eq!(got, vec![7, 8, 9]);
        assert_eq!(j.len(), 3);
    }
}
