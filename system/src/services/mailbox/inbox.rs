//! A member's inbox: the messages it delivered, in delivery order, kept in
//! `inbox.jsonl` (one JSON line each, synced before the delivery is
//! acknowledged), and the ids it has delivered, so a message that arrives again
//! (a retry whose acknowledgement was lost) is not delivered twice.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Letter;

/// One delivery: the message, who handed it over and when.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Delivered {
    /// Position in this inbox, from 0.
    pub seq: u64,
    /// The message.
    #[serde(flatten)]
    pub letter: Letter,
    /// The member that handed it over (the origin, or a relay).
    pub from: String,
    /// Wall-clock milliseconds since the epoch at delivery.
    pub at_ms: u64,
}

/// The delivered messages of one member.
pub struct Inbox {
    /// The file deliveries are appended to; `None` keeps them in memory only.
    file: Option<File>,
    path: PathBuf,
    entries: Vec<Delivered>,
    seen: HashSet<String>,
}

impl Inbox {
    /// Opens `dir/inbox.jsonl`, reading back what it holds. A last line cut
    /// short by a crash (never acknowledged, since the sync comes first) is
    /// dropped; a bad line before it is an error naming it. `durable: false`
    /// keeps the inbox in memory (the planted bug `volatile-inbox`).
    pub fn open(dir: &Path, durable: bool) -> Result<Inbox, String> {
        let path = dir.join("inbox.jsonl");
        let mut inbox = Inbox {
            file: None,
            path: path.clone(),
            entries: Vec::new(),
            seen: HashSet::new(),
        };
        if !durable {
            return Ok(inbox);
        }
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let mut text = Vec::new();
        file.read_to_end(&mut text)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let mut good = 0usize;
        let mut line_no = 0usize;
        while good < text.len() {
            line_no += 1;
            let Some(end) = text[good..].iter().position(|&b| b == b'\n') else {
                break; // a torn last line
            };
            let line = &text[good..good + end];
            match serde_json::from_slice::<Delivered>(line) {
                Ok(d) if d.seq == inbox.entries.len() as u64 => {
                    inbox.seen.insert(d.letter.id.clone());
                    inbox.entries.push(d);
                }
                Ok(d) => {
                    return Err(format!(
                        "{} line {line_no}: seq {} where {} was due",
                        path.display(),
                        d.seq,
                        inbox.entries.len()
                    ))
                }
                Err(e) if good + end + 1 == text.len() => {
                    crate::log_line!("-", "{} line {line_no}: {e}; dropping it", path.display());
                    break;
                }
                Err(e) => return Err(format!("{} line {line_no}: {e}", path.display())),
            }
            good += end + 1;
        }
        if good < text.len() {
            file.set_len(good as u64)
                .and_then(|_| file.seek(SeekFrom::End(0)).map(|_| ()))
                .map_err(|e| format!("{}: cannot cut the torn tail: {e}", path.display()))?;
        }
        inbox.file = Some(file);
        Ok(inbox)
    }

    /// Whether message `id` was delivered here.
    pub fn has(&self, id: &str) -> bool {
        self.seen.contains(id)
    }

    /// Delivers `letter` (durably, before returning) unless `dedup` is set and
    /// it was delivered already; answers whether it was delivered now.
    pub fn deliver(
        &mut self,
        letter: &Letter,
        from: &str,
        at_ms: u64,
        dedup: bool,
    ) -> Result<bool, String> {
        if dedup && self.has(&letter.id) {
            return Ok(false);
        }
        let d = Delivered {
            seq: self.entries.len() as u64,
            letter: letter.clone(),
            from: from.to_string(),
            at_ms,
        };
        if let Some(file) = &mut self.file {
            let mut line = serde_json::to_vec(&d).map_err(|e| e.to_string())?;
            line.push(b'\n');
            file.write_all(&line)
                .and_then(|_| file.sync_data())
                .map_err(|e| format!("{}: {e}", self.path.display()))?;
        }
        self.seen.insert(letter.id.clone());
        self.entries.push(d);
        Ok(true)
    }

    /// Up to `max` deliveries from position `from`.
    pub fn read(&self, from: u64, max: usize) -> &[Delivered] {
        let start = (from as usize).min(self.entries.len());
        let end = start.saturating_add(max).min(self.entries.len());
        &self.entries[start..end]
    }

    /// How many deliveries it holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::services::mailbox::Kind;

    fn letter(id: &str) -> Letter {
        Letter {
            id: id.into(),
            kind: Kind::Broadcast,
            origin: "n1".into(),
            body: json!({"n": id}),
        }
    }

    #[test]
    fn deliveries_survive_a_reopen_once_each_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let mut inbox = Inbox::open(dir.path(), true).unwrap();
        assert!(inbox.deliver(&letter("a"), "n1", 1, true).unwrap());
        assert!(!inbox.deliver(&letter("a"), "n2", 2, true).unwrap());
        assert!(inbox.deliver(&letter("b"), "n2", 3, true).unwrap());
        drop(inbox);
        // A crash in the middle of the next line.
        let path = dir.path().join("inbox.jsonl");
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"seq\":2,\"id\":\"c\"").unwrap();
        drop(f);
        let mut inbox = Inbox::open(dir.path(), true).unwrap();
        assert_eq!(inbox.len(), 2);
        assert!(inbox.has("a") && inbox.has("b") && !inbox.has("c"));
        assert!(!inbox.deliver(&letter("b"), "n3", 4, true).unwrap());
        assert!(inbox.deliver(&letter("c"), "n3", 5, true).unwrap());
        let reopened = Inbox::open(dir.path(), true).unwrap();
        let ids: Vec<&str> = reopened
            .read(0, 10)
            .iter()
            .map(|d| d.letter.id.as_str())
            .collect();
        assert_eq!(ids, ["a", "b", "c"]);
        assert_eq!(reopened.read(1, 1)[0].from, "n2");
        assert!(reopened.read(7, 3).is_empty());
    }

    #[test]
    fn damage_before_the_last_line_is_an_error_naming_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let mut inbox = Inbox::open(dir.path(), true).unwrap();
        inbox.deliver(&letter("a"), "n1", 1, true).unwrap();
        inbox.deliver(&letter("b"), "n1", 2, true).unwrap();
        drop(inbox);
        let path = dir.path().join("inbox.jsonl");
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replacen("\"seq\":0", "\"seq\":x", 1)).unwrap();
        let err = Inbox::open(dir.path(), true).err().unwrap();
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn a_volatile_inbox_forgets_and_without_dedup_delivers_again() {
        let dir = tempfile::tempdir().unwrap();
        let mut inbox = Inbox::open(dir.path(), false).unwrap();
        assert!(inbox.deliver(&letter("a"), "n1", 1, false).unwrap());
        assert!(inbox.deliver(&letter("a"), "n1", 2, false).unwrap());
        assert_eq!(inbox.len(), 2);
        drop(inbox);
        assert!(Inbox::open(dir.path(), false).unwrap().is_empty());
        assert!(!dir.path().join("inbox.jsonl").exists());
    }
}
