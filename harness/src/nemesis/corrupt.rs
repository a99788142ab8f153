//! Fault `corrupt`: while one node is down, damage one of its data files on
//! disk (flipped bytes in the log's middle or in the snapshot, or a cut log
//! tail), chosen by the seed and recorded; restart it at heal. One node at a
//! time: damage on a majority at once can lose acknowledged writes in any
//! system, so it would judge nothing.

use serde_json::{json, Value};
use workloads::{BoxFut, Rng};

use super::{process, Ctx, Fault, Injected};

/// Damages a stopped node's files.
pub struct Corrupt;

/// Flips `n` bytes of `bytes` from `at` on (each XORed with a nonzero value).
fn flip(bytes: &mut [u8], at: usize, n: usize, rng: &mut Rng) -> usize {
    let end = (at + n).min(bytes.len());
    for b in &mut bytes[at..end] {
        *b ^= 1 + rng.below(255) as u8;
    }
    end - at
}

/// Where the builtin node's log (`u32` length, `u32` checksum, body per
/// record) has its last record.
fn last_record(bytes: &[u8]) -> usize {
    let (mut pos, mut last) = (0usize, 0usize);
    while pos + 8 <= bytes.len() {
        let len = u32::from_le_bytes([bytes[pos], bytes[pos + 1], bytes[pos + 2], bytes[pos + 3]])
            as usize;
        if pos + 8 + len > bytes.len() {
            break;
        }
        last = pos;
        pos += 8 + len;
    }
    last
}

/// Where a journal of Paxos or PBFT (one line per record) has its last line.
fn last_line(bytes: &[u8]) -> usize {
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    body.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1)
}

/// Every regular file under `dir`, sorted (so the seed picks the same one).
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(path),
                Ok(t) if t.is_file() => out.push(path),
                _ => {}
            }
        }
    }
    out.sort();
    out
}

/// A system we did not write: flip bytes in, or cut the tail of, one of its
/// non-empty data files, whatever its format.
fn damage_any(dir: &std::path::Path, rng: &mut Rng) -> anyhow::Result<Value> {
    let files: Vec<_> = files_under(dir)
        .into_iter()
        .filter(|f| std::fs::metadata(f).is_ok_and(|m| m.len() >= 16))
        .collect();
    if files.is_empty() {
        return Ok(json!({"kind": "none", "why": "no data file yet"}));
    }
    let path = &files[rng.below(files.len() as u64) as usize];
    let name = path.strip_prefix(dir).unwrap_or(path).display().to_string();
    let mut bytes = std::fs::read(path)?;
    let done = if rng.below(2) == 0 {
        let cut = 1 + rng.below(bytes.len().min(512) as u64 - 1) as usize;
        bytes.truncate(bytes.len() - cut);
        json!({"kind": "file-tail", "file": name, "cut_bytes": cut})
    } else {
        let at = rng.below((bytes.len() * 9 / 10).max(1) as u64) as usize;
        let n = flip(&mut bytes, at, 1 + rng.below(8) as usize, rng);
        json!({"kind": "file-middle", "file": name, "offset": at, "bytes": n})
    };
    std::fs::write(path, &bytes)?;
    std::fs::File::open(path)?.sync_all()?;
    Ok(done)
}

/// Damages one file in `dir`; answers what was done.
fn damage(dir: &std::path::Path, rng: &mut Rng) -> anyhow::Result<Value> {
    // Raft's log, or the journal of a node running Paxos or PBFT.
    let journal = ["paxos.journal", "pbft.journal"]
        .iter()
        .map(|name| dir.join(name))
        .find(|p| p.exists());
    let paxos = journal.is_some();
    let log = journal.unwrap_or_else(|| dir.join("log.bin"));
    let snap = dir.join("snapshot.json");
    if !log.exists() && !snap.exists() {
        return damage_any(dir, rng);
    }
    let mut kind = ["log-middle", "log-tail", "snapshot"][rng.below(3) as usize];
    if kind == "snapshot" && !snap.exists() {
        kind = "log-middle";
    }
    let path = if kind == "snapshot" { snap } else { log };
    let mut bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(_) => return Ok(json!({"kind": "none", "why": "no data file yet"})),
    };
    if bytes.len() < 16 {
        return Ok(
            json!({"kind": "none", "why": "data file too small", "file": path.file_name().map(|f| f.to_string_lossy().into_owned())}),
        );
    }
    let file = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let done = if kind == "log-tail" {
        // A torn write of the last record: cut inside it. (Cutting whole
        // records would lose synced entries with no trace a node could see.)
        let last = if paxos {
            last_line(&bytes)
        } else {
            last_record(&bytes)
        };
        let len = bytes.len() - last;
        let keep = last + 1 + rng.below(len.saturating_sub(1).max(1) as u64) as usize;
        let cut = bytes.len() - keep.min(bytes.len() - 1);
        bytes.truncate(bytes.len() - cut);
        json!({"kind": kind, "file": file, "cut_bytes": cut, "length": bytes.len()})
    } else {
        // Somewhere before the last tenth, so it is not mistaken for a torn tail.
        let at = rng.below((bytes.len() * 9 / 10).max(1) as u64) as usize;
        let n = flip(&mut bytes, at, 1 + rng.below(8) as usize, rng);
        json!({"kind": kind, "file": file, "offset": at, "bytes": n})
    };
    std::fs::write(&path, &bytes)?;
    std::fs::File::open(&path)?.sync_all()?;
    Ok(done)
}

impl Fault for Corrupt {
    fn name(&self) -> &'static str {
        "corrupt"
    }

    fn about(&self) -> &'static str {
        "SIGKILL one node and damage one of its data files (flip bytes in the log's middle or the snapshot, or tear the last log record; any data file on etcd and Redis); restart it at heal"
    }

    fn runtimes(&self) -> &'static [&'static str] {
        &["process"]
    }

    fn start<'a>(&'a self, ctx: &'a Ctx, rng: &'a mut Rng) -> BoxFut<'a, anyhow::Result<Injected>> {
        Box::pin(async move {
            let all = ctx.member_ids();
            let id = all[rng.below(all.len() as u64) as usize].clone();
            process::kill(ctx, std::slice::from_ref(&id)).await?;
            let dir = ctx
                .runtime
                .lock()
                .await
                .disk_dir(&id)
                .ok_or_else(|| anyhow::anyhow!("node {id}: its data directory is unknown"))?;
            let mut done = damage(&dir, rng)?;
            done["node"] = json!(id);
            Ok(Injected {
                in_force: format!("{id} down with a damaged {}", done["kind"]),
                value: done,
                nodes: vec![id],
            })
        })
    }

    fn heal<'a>(&'a self, ctx: &'a Ctx, injected: Injected) -> BoxFut<'a, anyhow::Result<Value>> {
        Box::pin(async move {
            process::restart(ctx, &injected.nodes).await?;
            Ok(json!(injected.nodes))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_journal_line_starts_after_the_previous_line_end() {
        assert_eq!(last_line(b"aaa\nbb\ncccc\n"), 7);
        assert_eq!(last_line(b"aaa\nbb\ncc"), 7);
        assert_eq!(last_line(b"only\n"), 0);
        assert_eq!(last_line(b""), 0);
    }

    #[test]
    fn a_torn_journal_tail_is_cut_inside_its_last_line_only() {
        let dir = tempfile::tempdir().unwrap();
        let text = b"00000000 {\"a\":1}\n00000000 {\"b\":2}\n".to_vec();
        std::fs::write(dir.path().join("paxos.journal"), &text).unwrap();
        for seed in 0..20 {
            std::fs::write(dir.path().join("paxos.journal"), &text).unwrap();
            let mut rng = Rng::new(seed);
            let done = damage(dir.path(), &mut rng).unwrap();
            let after = std::fs::read(dir.path().join("paxos.journal")).unwrap();
            if done["kind"] == "log-tail" {
                // The first line survives whole; the cut lands in the second.
                assert!(after.len() > 17 && after.len() < text.len(), "{done}");
                assert_eq!(&after[..17], &text[..17]);
            } else {
                assert_eq!(after.len(), text.len(), "{done}");
            }
        }
    }
}
