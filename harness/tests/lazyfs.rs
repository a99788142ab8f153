//! The lazy file system of `lose-unsynced`, mounted for real (FUSE): a drop
//! loses exactly what was written and not fsynced.

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

struct Mounted {
    mount: PathBuf,
    backing: PathBuf,
    control: PathBuf,
    daemon: Child,
    _dir: tempfile::TempDir,
}

impl Mounted {
    fn start() -> Mounted {
        let dir = tempfile::tempdir().unwrap();
        let (mount, backing, control) = (
            dir.path().join("mnt"),
            dir.path().join("disk"),
            dir.path().join("ctl"),
        );
        let daemon = Command::new(env!("CARGO_BIN_EXE_harness"))
            .arg("lazyfs")
            .arg("--backing")
            .arg(&backing)
            .arg("--mount")
            .arg(&mount)
            .arg("--control")
            .arg(&control)
            .spawn()
            .unwrap();
        let m = Mounted {
            mount,
            backing,
            control,
            daemon,
            _dir: dir,
        };
        for _ in 0..200 {
            if UnixStream::connect(&m.control).is_ok() {
                return m;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("the lazy file system did not come up (needs /dev/fuse and root or fusermount3)");
    }

    fn command(&self, cmd: &str) -> serde_json::Value {
        let mut conn = UnixStream::connect(&self.control).unwrap();
        writeln!(conn, "{cmd}").unwrap();
        let mut line = String::new();
        BufReader::new(conn).read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.mount.join(name)
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = self.command("exit");
        let _ = self.daemon.wait();
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
    }
}

fn append(path: &Path, bytes: &[u8], sync: bool) {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(bytes).unwrap();
    if sync {
        f.sync_all().unwrap();
    }
}

#[test]
fn a_drop_loses_the_unsynced_writes_and_keeps_the_synced_ones() {
    let m = Mounted::start();
    append(&m.path("log"), b"one,", true);
    append(&m.path("log"), b"two,", false);
    append(&m.path("other"), b"never synced", false);
    // Before the drop, readers see every write; the disk holds only the synced.
    assert_eq!(std::fs::read(m.path("log")).unwrap(), b"one,two,");
    assert_eq!(std::fs::read(m.backing.join("log")).unwrap(), b"one,");
    let lost = m.command("drop");
    assert_eq!(lost["lost_bytes"], 4 + 12, "{lost}");
    assert_eq!(std::fs::read(m.path("log")).unwrap(), b"one,");
    // A file created and never synced keeps its name (names are durable at
    // once) but not its data.
    assert_eq!(std::fs::read(m.path("other")).unwrap(), b"");
    // Writing on after a drop goes where the file now ends.
    append(&m.path("log"), b"three,", true);
    assert_eq!(std::fs::read(m.path("log")).unwrap(), b"one,three,");
}

#[test]
fn a_rename_carries_unsynced_data_and_a_rewrite_through_a_synced_temp_file_survives() {
    let m = Mounted::start();
    // The safe pattern: write a temp file, fsync it, rename it over the old one.
    std::fs::write(m.path("state"), b"old").unwrap();
    m.command("drop");
    {
        let mut f = std::fs::File::create(m.path("state.tmp")).unwrap();
        f.write_all(b"new, synced").unwrap();
        f.sync_all().unwrap();
    }
    std::fs::rename(m.path("state.tmp"), m.path("state")).unwrap();
    // The unsafe one: the same without fsync.
    std::fs::write(m.path("meta.tmp"), b"unsynced").unwrap();
    std::fs::rename(m.path("meta.tmp"), m.path("meta")).unwrap();
    assert_eq!(std::fs::read(m.path("meta")).unwrap(), b"unsynced");
    m.command("drop");
    assert_eq!(std::fs::read(m.path("state")).unwrap(), b"new, synced");
    assert_eq!(std::fs::read(m.path("meta")).unwrap(), b"");
    assert!(!m.path("state.tmp").exists());
}

#[test]
fn truncation_waits_for_fsync_too_and_slow_fsync_is_set_and_reset() {
    let m = Mounted::start();
    append(&m.path("f"), b"0123456789", true);
    let f = OpenOptions::new().write(true).open(m.path("f")).unwrap();
    f.set_len(3).unwrap();
    assert_eq!(std::fs::read(m.path("f")).unwrap(), b"012");
    m.command("drop");
    assert_eq!(std::fs::read(m.path("f")).unwrap(), b"0123456789");
    assert_eq!(m.command("slow 30")["slow_fsync_ms"], 30);
    assert_eq!(m.command("stats")["slow_fsync_ms"], 30);
    assert_eq!(m.command("slow 0")["slow_fsync_ms"], 0);
    assert!(m.command("bogus")["error"]
        .as_str()
        .unwrap()
        .contains("unknown command"));
}
