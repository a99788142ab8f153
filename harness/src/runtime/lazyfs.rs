//! The file system behind `lose-unsynced`: a FUSE layer over a node's data
//! directory that keeps written data in memory until the file is fsynced, so a
//! fault can really lose what a node wrote but never synced (the LazyFS idea,
//! Jepsen/VLDB 2024).
//!
//! What is kept back: file data (writes and truncations), per file, in order.
//! What is not: names (create, rename, unlink, mkdir) reach the disk at once, as
//! on a file system that journals its metadata synchronously. Controlled over a
//! Unix socket, one command per line: `drop`, `tear SEED`, `slow MS`, `stats`,
//! `exit`; each answer is one line of JSON.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuse_mt::{
    CallbackResult, CreatedEntry, DirectoryEntry, FileAttr, FileType, FilesystemMT, RequestInfo,
    ResultCreate, ResultEmpty, ResultEntry, ResultOpen, ResultReaddir, ResultSlice, ResultStatfs,
    ResultWrite, Statfs,
};
use serde_json::json;

/// Open flags: none. Without `FOPEN_KEEP_CACHE` the kernel drops a file's
/// cached pages at every open, so a node restarted after a drop reads what the
/// disk holds; without `FOPEN_DIRECT_IO`, mmap works (etcd's bbolt needs it).
const OPEN_FLAGS: u32 = 0;
/// Attributes change under the kernel's feet (a drop shrinks files): no caching.
const TTL: Duration = Duration::ZERO;
/// Torn writes keep whole pages.
const PAGE: u64 = 4096;

/// One unsynced change to a file's data.
#[derive(Clone, Debug, PartialEq)]
enum Pending {
    Write { offset: u64, data: Vec<u8> },
    Truncate(u64),
}

/// Unsynced changes by path (absolute inside the mount), and the fsync delay.
#[derive(Default)]
struct State {
    pending: HashMap<PathBuf, Vec<Pending>>,
    slow_fsync: Duration,
    synced_bytes: u64,
}

/// The file system: `backing` is the disk, `state` the volatile cache.
#[derive(Clone)]
pub struct LazyFs {
    backing: PathBuf,
    state: Arc<Mutex<State>>,
}

fn errno(e: std::io::Error) -> libc::c_int {
    e.raw_os_error().unwrap_or(libc::EIO)
}

/// Size of a file whose disk copy is `base` bytes once `ops` are applied.
fn size_after(base: u64, ops: &[Pending]) -> u64 {
    ops.iter().fold(base, |size, op| match op {
        Pending::Write { offset, data } => size.max(offset + data.len() as u64),
        Pending::Truncate(n) => *n,
    })
}

/// Applies `ops` to `file` on disk, in order.
fn apply(file: &File, ops: &[Pending]) -> std::io::Result<u64> {
    let mut bytes = 0;
    for op in ops {
        match op {
            Pending::Write { offset, data } => {
                file.write_all_at(data, *offset)?;
                bytes += data.len() as u64;
            }
            Pending::Truncate(n) => file.set_len(*n)?,
        }
    }
    Ok(bytes)
}

impl LazyFs {
    /// A file system whose disk is the directory `backing`.
    pub fn new(backing: PathBuf) -> Self {
        LazyFs {
            backing,
            state: Arc::new(Mutex::new(State::default())),
        }
    }

    fn real(&self, path: &Path) -> PathBuf {
        self.backing.join(path.strip_prefix("/").unwrap_or(path))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn attr(&self, path: &Path) -> ResultEntry {
        let meta = std::fs::symlink_metadata(self.real(path)).map_err(errno)?;
        let kind = if meta.is_dir() {
            FileType::Directory
        } else if meta.file_type().is_symlink() {
            FileType::Symlink
        } else {
            FileType::RegularFile
        };
        let size = match self.state().pending.get(path) {
            Some(ops) => size_after(meta.len(), ops),
            None => meta.len(),
        };
        let time = |secs: i64, nsecs: i64| {
            UNIX_EPOCH + Duration::new(secs.max(0) as u64, nsecs.clamp(0, 999_999_999) as u32)
        };
        Ok((
            TTL,
            FileAttr {
                size,
                blocks: size.div_ceil(512),
                atime: time(meta.atime(), meta.atime_nsec()),
                mtime: time(meta.mtime(), meta.mtime_nsec()),
                ctime: time(meta.ctime(), meta.ctime_nsec()),
                crtime: SystemTime::UNIX_EPOCH,
                kind,
                perm: (meta.permissions().mode() & 0o7777) as u16,
                nlink: meta.nlink() as u32,
                uid: meta.uid(),
                gid: meta.gid(),
                rdev: meta.rdev() as u32,
                flags: 0,
            },
        ))
    }

    /// Reads `size` bytes at `offset` as a reader would see them: the disk's
    /// bytes with the unsynced changes laid over them in order.
    fn read_at(&self, path: &Path, offset: u64, size: u32) -> Result<Vec<u8>, libc::c_int> {
        let file = File::open(self.real(path)).map_err(errno)?;
        let disk_size = file.metadata().map_err(errno)?.len();
        let mut buf = vec![0u8; size as usize];
        if offset < disk_size {
            let want = ((disk_size - offset) as usize).min(buf.len());
            let mut got = 0;
            while got < want {
                match file.read_at(&mut buf[got..want], offset + got as u64) {
                    Ok(0) => break,
                    Ok(n) => got += n,
                    Err(e) => return Err(errno(e)),
                }
            }
        }
        let end = offset + size as u64;
        let mut cur = disk_size;
        if let Some(ops) = self.state().pending.get(path) {
            for op in ops {
                match op {
                    Pending::Write { offset: o, data } => {
                        let (a, b) = ((*o).max(offset), (o + data.len() as u64).min(end));
                        if a < b {
                            buf[(a - offset) as usize..(b - offset) as usize]
                                .copy_from_slice(&data[(a - o) as usize..(b - o) as usize]);
                        }
                        cur = cur.max(o + data.len() as u64);
                    }
                    Pending::Truncate(n) => {
                        if *n < end {
                            let from = (n.saturating_sub(offset) as usize).min(buf.len());
                            buf[from..].fill(0);
                        }
                        cur = *n;
                    }
                }
            }
        }
        buf.truncate(cur.saturating_sub(offset).min(size as u64) as usize);
        Ok(buf)
    }

    /// Makes `path`'s unsynced changes durable (fsync).
    fn sync(&self, path: &Path) -> Result<(), libc::c_int> {
        let delay = self.state().slow_fsync;
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        let ops = self.state().pending.remove(path).unwrap_or_default();
        let file = OpenOptions::new()
            .write(true)
            .open(self.real(path))
            .map_err(errno)?;
        let bytes = apply(&file, &ops).map_err(errno)?;
        file.sync_data().map_err(errno)?;
        self.state().synced_bytes += bytes;
        Ok(())
    }

    /// Forgets every unsynced change, as a power loss would. With `tear`, each
    /// file keeps a seeded prefix of its changes, the last one cut at a page
    /// boundary (a write the disk had half done). Answers what was lost.
    pub fn drop_unsynced(&self, tear: Option<u64>) -> serde_json::Value {
        let pending = std::mem::take(&mut self.state().pending);
        let mut rng = tear.unwrap_or(0) | 1;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let (mut files, mut lost, mut kept) = (0u64, 0u64, 0u64);
        let mut paths: Vec<_> = pending.into_iter().collect();
        paths.sort_by(|a, b| a.0.cmp(&b.0));
        for (path, ops) in paths {
            let total: u64 = ops
                .iter()
                .map(|op| match op {
                    Pending::Write { data, .. } => data.len() as u64,
                    Pending::Truncate(_) => 0,
                })
                .sum();
            let mut keep = Vec::new();
            if tear.is_some() && !ops.is_empty() {
                let k = (next() % ops.len() as u64) as usize;
                keep.extend_from_slice(&ops[..k]);
                if let Pending::Write { offset, data } = &ops[k] {
                    let pages = (data.len() as u64 / PAGE) as usize;
                    if pages > 0 {
                        let cut = PAGE as usize * (1 + (next() % pages as u64) as usize);
                        keep.push(Pending::Write {
                            offset: *offset,
                            data: data[..cut.min(data.len())].to_vec(),
                        });
                    }
                }
            }
            if !keep.is_empty() {
                if let Ok(file) = OpenOptions::new().write(true).open(self.real(&path)) {
                    if let Ok(n) = apply(&file, &keep) {
                        kept += n;
                        let _ = file.sync_data();
                    }
                }
            }
            let k: u64 = keep
                .iter()
                .map(|op| match op {
                    Pending::Write { data, .. } => data.len() as u64,
                    Pending::Truncate(_) => 0,
                })
                .sum();
            if total > k {
                files += 1;
                lost += total - k;
            }
        }
        json!({"files": files, "lost_bytes": lost, "kept_bytes": kept})
    }

    fn stats(&self) -> serde_json::Value {
        let s = self.state();
        let unsynced: u64 = s
            .pending
            .values()
            .flatten()
            .map(|op| match op {
                Pending::Write { data, .. } => data.len() as u64,
                Pending::Truncate(_) => 0,
            })
            .sum();
        json!({
            "unsynced_files": s.pending.len(),
            "unsynced_bytes": unsynced,
            "synced_bytes": s.synced_bytes,
            "slow_fsync_ms": s.slow_fsync.as_millis() as u64,
        })
    }

    /// Answers control commands on `socket` until `exit` (then returns).
    pub fn serve_control(&self, socket: &Path) -> std::io::Result<()> {
        let _ = std::fs::remove_file(socket);
        let listener = UnixListener::bind(socket)?;
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let Ok(mut out) = conn.try_clone() else {
                continue;
            };
            for line in BufReader::new(conn).lines() {
                let Ok(line) = line else { break };
                let mut words = line.split_whitespace();
                let answer = match (words.next(), words.next().map(str::parse::<u64>)) {
                    (Some("drop"), None) => self.drop_unsynced(None),
                    (Some("tear"), Some(Ok(seed))) => self.drop_unsynced(Some(seed)),
                    (Some("slow"), Some(Ok(ms))) => {
                        self.state().slow_fsync = Duration::from_millis(ms.min(60_000));
                        json!({"slow_fsync_ms": ms.min(60_000)})
                    }
                    (Some("stats"), None) => self.stats(),
                    (Some("exit"), None) => {
                        let _ = writeln!(out, "{}", json!({"exit": true}));
                        return Ok(());
                    }
                    _ => {
                        json!({"error": format!("unknown command `{line}`: drop, tear SEED, slow MS, stats, exit")})
                    }
                };
                if writeln!(out, "{answer}").is_err() {
                    break;
                }
            }
        }
        Ok(())
    }
}

impl FilesystemMT for LazyFs {
    fn init(&self, _req: RequestInfo) -> ResultEmpty {
        Ok(())
    }

    fn getattr(&self, _req: RequestInfo, path: &Path, _fh: Option<u64>) -> ResultEntry {
        self.attr(path)
    }

    fn chmod(&self, _req: RequestInfo, path: &Path, _fh: Option<u64>, mode: u32) -> ResultEmpty {
        std::fs::set_permissions(self.real(path), std::fs::Permissions::from_mode(mode))
            .map_err(errno)
    }

    fn truncate(&self, _req: RequestInfo, path: &Path, _fh: Option<u64>, size: u64) -> ResultEmpty {
        self.state()
            .pending
            .entry(path.to_path_buf())
            .or_default()
            .push(Pending::Truncate(size));
        Ok(())
    }

    fn utimens(
        &self,
        _req: RequestInfo,
        _path: &Path,
        _fh: Option<u64>,
        _atime: Option<SystemTime>,
        _mtime: Option<SystemTime>,
    ) -> ResultEmpty {
        Ok(())
    }

    fn mkdir(&self, _req: RequestInfo, parent: &Path, name: &OsStr, mode: u32) -> ResultEntry {
        let path = parent.join(name);
        std::fs::create_dir(self.real(&path)).map_err(errno)?;
        let _ = std::fs::set_permissions(self.real(&path), std::fs::Permissions::from_mode(mode));
        self.attr(&path)
    }

    fn unlink(&self, _req: RequestInfo, parent: &Path, name: &OsStr) -> ResultEmpty {
        let path = parent.join(name);
        std::fs::remove_file(self.real(&path)).map_err(errno)?;
        self.state().pending.remove(&path);
        Ok(())
    }

    fn rmdir(&self, _req: RequestInfo, parent: &Path, name: &OsStr) -> ResultEmpty {
        std::fs::remove_dir(self.real(&parent.join(name))).map_err(errno)
    }

    fn rename(
        &self,
        _req: RequestInfo,
        parent: &Path,
        name: &OsStr,
        newparent: &Path,
        newname: &OsStr,
    ) -> ResultEmpty {
        let (from, to) = (parent.join(name), newparent.join(newname));
        std::fs::rename(self.real(&from), self.real(&to)).map_err(errno)?;
        let mut s = self.state();
        s.pending.remove(&to);
        if let Some(ops) = s.pending.remove(&from) {
            s.pending.insert(to, ops);
        }
        Ok(())
    }

    fn open(&self, _req: RequestInfo, path: &Path, _flags: u32) -> ResultOpen {
        std::fs::symlink_metadata(self.real(path)).map_err(errno)?;
        Ok((0, OPEN_FLAGS))
    }

    fn read(
        &self,
        _req: RequestInfo,
        path: &Path,
        _fh: u64,
        offset: u64,
        size: u32,
        callback: impl FnOnce(ResultSlice<'_>) -> CallbackResult,
    ) -> CallbackResult {
        match self.read_at(path, offset, size) {
            Ok(buf) => callback(Ok(&buf)),
            Err(e) => callback(Err(e)),
        }
    }

    fn write(
        &self,
        _req: RequestInfo,
        path: &Path,
        _fh: u64,
        offset: u64,
        data: Vec<u8>,
        _flags: u32,
    ) -> ResultWrite {
        let n = data.len() as u32;
        self.state()
            .pending
            .entry(path.to_path_buf())
            .or_default()
            .push(Pending::Write { offset, data });
        Ok(n)
    }

    fn flush(&self, _req: RequestInfo, _path: &Path, _fh: u64, _lock_owner: u64) -> ResultEmpty {
        Ok(())
    }

    fn release(
        &self,
        _req: RequestInfo,
        _path: &Path,
        _fh: u64,
        _flags: u32,
        _lock_owner: u64,
        _flush: bool,
    ) -> ResultEmpty {
        Ok(())
    }

    fn fsync(&self, _req: RequestInfo, path: &Path, _fh: u64, _datasync: bool) -> ResultEmpty {
        self.sync(path)
    }

    fn opendir(&self, _req: RequestInfo, path: &Path, _flags: u32) -> ResultOpen {
        std::fs::read_dir(self.real(path)).map_err(errno)?;
        Ok((0, 0))
    }

    fn readdir(&self, _req: RequestInfo, path: &Path, _fh: u64) -> ResultReaddir {
        let mut out = vec![
            DirectoryEntry {
                name: ".".into(),
                kind: FileType::Directory,
            },
            DirectoryEntry {
                name: "..".into(),
                kind: FileType::Directory,
            },
        ];
        for e in std::fs::read_dir(self.real(path)).map_err(errno)? {
            let e = e.map_err(errno)?;
            let kind = match e.file_type() {
                Ok(t) if t.is_dir() => FileType::Directory,
                Ok(t) if t.is_symlink() => FileType::Symlink,
                _ => FileType::RegularFile,
            };
            out.push(DirectoryEntry {
                name: e.file_name(),
                kind,
            });
        }
        Ok(out)
    }

    fn releasedir(&self, _req: RequestInfo, _path: &Path, _fh: u64, _flags: u32) -> ResultEmpty {
        Ok(())
    }

    fn fsyncdir(&self, _req: RequestInfo, _path: &Path, _fh: u64, _datasync: bool) -> ResultEmpty {
        Ok(())
    }

    fn statfs(&self, _req: RequestInfo, _path: &Path) -> ResultStatfs {
        Ok(Statfs {
            blocks: 1 << 30,
            bfree: 1 << 29,
            bavail: 1 << 29,
            files: 1 << 20,
            ffree: 1 << 19,
            bsize: PAGE as u32,
            namelen: 255,
            frsize: PAGE as u32,
        })
    }

    fn access(&self, _req: RequestInfo, path: &Path, _mask: u32) -> ResultEmpty {
        std::fs::symlink_metadata(self.real(path))
            .map(|_| ())
            .map_err(errno)
    }

    fn create(
        &self,
        req: RequestInfo,
        parent: &Path,
        name: &OsStr,
        mode: u32,
        flags: u32,
    ) -> ResultCreate {
        let path = parent.join(name);
        let mut o = OpenOptions::new();
        o.write(true).create(true).mode(mode & 0o7777);
        if flags as i32 & libc::O_EXCL != 0 {
            o.create_new(true);
        }
        o.open(self.real(&path)).map_err(errno)?;
        if flags as i32 & libc::O_TRUNC != 0 {
            self.truncate(req, &path, None, 0)?;
        }
        let (ttl, attr) = self.attr(&path)?;
        Ok(CreatedEntry {
            ttl,
            attr,
            fh: 0,
            flags: OPEN_FLAGS,
        })
    }
}

/// Mounts a [`LazyFs`] of `backing` at `mount` and serves `control` until told
/// to exit; then unmounts.
pub fn serve(backing: &Path, mount: &Path, control: &Path) -> anyhow::Result<()> {
    use anyhow::Context;
    std::fs::create_dir_all(backing)
        .with_context(|| format!("cannot create {}", backing.display()))?;
    std::fs::create_dir_all(mount).with_context(|| format!("cannot create {}", mount.display()))?;
    let fs = LazyFs::new(backing.to_path_buf());
    let options = [fuser::MountOption::FSName("faultline-lazyfs".into())];
    let session = fuser::spawn_mount2(fuse_mt::FuseMT::new(fs.clone(), 0), mount, &options)
        .with_context(|| format!("cannot mount a FUSE file system at {}", mount.display()))?;
    let served = fs.serve_control(control);
    drop(session);
    served.with_context(|| format!("control socket {}", control.display()))
}

/// A node's lazy disk as a runtime holds it: the daemon (`harness lazyfs`)
/// and its control socket.
pub struct Disk {
    mount: PathBuf,
    backing: PathBuf,
    control: PathBuf,
    daemon: Option<std::process::Child>,
}

impl Disk {
    /// Starts `exe lazyfs` to mount a lazy layer at `mount` over `backing`
    /// and waits until it answers; its output goes to `log`.
    pub fn start(exe: &Path, backing: &Path, mount: &Path, log: &Path) -> anyhow::Result<Disk> {
        use anyhow::Context;
        let control = mount.with_extension("lazyfs.sock");
        let _ = std::fs::remove_file(&control);
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("cannot open {}", log.display()))?;
        let daemon = std::process::Command::new(exe)
            .arg("lazyfs")
            .arg("--backing")
            .arg(backing)
            .arg("--mount")
            .arg(mount)
            .arg("--control")
            .arg(&control)
            .stdin(std::process::Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("cannot start {} lazyfs", exe.display()))?;
        let mut disk = Disk {
            mount: mount.to_path_buf(),
            backing: backing.to_path_buf(),
            control,
            daemon: Some(daemon),
        };
        for _ in 0..200 {
            if disk.command("stats").is_ok() {
                return Ok(disk);
            }
            if let Some(d) = &mut disk.daemon {
                if let Ok(Some(status)) = d.try_wait() {
                    disk.daemon = None;
                    let text = std::fs::read_to_string(log).unwrap_or_default();
                    anyhow::bail!(
                        "the lazy file system at {} exited ({status}): {}; lose-unsynced needs FUSE (/dev/fuse, root or fusermount3)",
                        mount.display(),
                        text.lines().last().unwrap_or("")
                    );
                }
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        anyhow::bail!(
            "the lazy file system at {} did not answer in 5 s",
            mount.display()
        )
    }

    /// The directory that plays the disk.
    pub fn backing(&self) -> &Path {
        &self.backing
    }

    /// Sends one control command; answers its JSON reply.
    pub fn command(&self, cmd: &str) -> anyhow::Result<serde_json::Value> {
        let mut conn = std::os::unix::net::UnixStream::connect(&self.control)?;
        conn.set_read_timeout(Some(Duration::from_secs(30)))?;
        writeln!(conn, "{cmd}")?;
        let mut line = String::new();
        BufReader::new(conn).read_line(&mut line)?;
        Ok(serde_json::from_str(&line)?)
    }

    /// Unmounts: asks the daemon to exit, then lazily unmounts whatever is left.
    pub fn stop(&mut self) {
        let Some(mut daemon) = self.daemon.take() else {
            return;
        };
        let _ = self.command("exit");
        for _ in 0..100 {
            if let Ok(Some(_)) = daemon.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Ok(None) = daemon.try_wait() {
            let _ = daemon.kill();
            let _ = daemon.wait();
        }
        // A daemon that died leaves a dead mount ("transport endpoint is not
        // connected"); detach it so the run folder stays usable.
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.mount)
            .stderr(std::process::Stdio::null())
            .status();
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ops(list: &[(u64, &[u8])]) -> Vec<Pending> {
        list.iter()
            .map(|(o, d)| Pending::Write {
                offset: *o,
                data: d.to_vec(),
            })
            .collect()
    }

    #[test]
    fn reads_lay_unsynced_changes_over_the_disk_in_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"abcdef").unwrap();
        let fs = LazyFs::new(dir.path().to_path_buf());
        let p = Path::new("/f");
        let mut list = ops(&[(4, b"XYZ"), (1, b"q")]);
        list.push(Pending::Truncate(5));
        list.extend(ops(&[(8, b"!")]));
        fs.state().pending.insert(p.to_path_buf(), list);
        // abcdef -> abcdXYZ -> aqcdXYZ -> aqcdX -> aqcdX\0\0\0!
        assert_eq!(fs.read_at(p, 0, 64).unwrap(), b"aqcdX\0\0\0!");
        assert_eq!(fs.read_at(p, 3, 3).unwrap(), b"dX\0");
        assert_eq!(fs.attr(p).unwrap().1.size, 9);
        // The disk is untouched until fsync.
        assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), b"abcdef");
        fs.sync(p).unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("f")).unwrap(),
            b"aqcdX\0\0\0!"
        );
        assert_eq!(fs.read_at(p, 0, 64).unwrap(), b"aqcdX\0\0\0!");
    }

    #[test]
    fn a_drop_loses_exactly_the_unsynced_bytes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("kept"), b"").unwrap();
        std::fs::write(dir.path().join("lost"), b"old").unwrap();
        let fs = LazyFs::new(dir.path().to_path_buf());
        fs.state()
            .pending
            .insert("/kept".into(), ops(&[(0, b"synced")]));
        fs.sync(Path::new("/kept")).unwrap();
        fs.state()
            .pending
            .insert("/lost".into(), ops(&[(3, b"-new"), (0, b"O")]));
        let report = fs.drop_unsynced(None);
        assert_eq!(report["lost_bytes"], 5);
        assert_eq!(report["files"], 1);
        assert_eq!(fs.read_at(Path::new("/kept"), 0, 64).unwrap(), b"synced");
        assert_eq!(fs.read_at(Path::new("/lost"), 0, 64).unwrap(), b"old");
    }

    #[test]
    fn a_torn_drop_keeps_a_prefix_and_whole_pages_of_the_cut_write() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"").unwrap();
        let fs = LazyFs::new(dir.path().to_path_buf());
        let big = vec![7u8; 3 * PAGE as usize + 100];
        for seed in 1..40u64 {
            std::fs::write(dir.path().join("f"), b"").unwrap();
            let mut list = ops(&[(0, b"head")]);
            list.push(Pending::Write {
                offset: 4,
                data: big.clone(),
            });
            fs.state().pending.insert("/f".into(), list);
            let report = fs.drop_unsynced(Some(seed));
            let disk = std::fs::read(dir.path().join("f")).unwrap();
            let kept = report["kept_bytes"].as_u64().unwrap() as usize;
            // Either nothing, or "head" and then whole pages of the big write.
            assert!(disk.is_empty() || disk.starts_with(b"head"), "seed {seed}");
            if disk.len() > 4 {
                assert_eq!((disk.len() - 4) % PAGE as usize, 0, "seed {seed}");
                assert!(
                    disk.len() - 4 < big.len(),
                    "seed {seed}: the cut write is torn"
                );
            }
            assert_eq!(kept, disk.len(), "seed {seed}");
        }
    }
}
