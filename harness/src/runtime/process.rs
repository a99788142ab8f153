//! The process runtime: every node a local `faultline-node` process on loopback,
//! with its data directory and log under the run folder, and its peer traffic
//! through the harness's link proxies.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context};
use workloads::BoxFut;

use super::{NodeAddrs, Runtime};

/// How to launch one node.
struct Proc {
    id: String,
    addrs: NodeAddrs,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
    /// Where it keeps its data, if known.
    data: Option<PathBuf>,
    /// Its data directory behind a lazy file system (`lose-unsynced`).
    disk: Option<super::lazyfs::Disk>,
}

/// One process of a third-party system: its arguments and where it answers.
pub struct Launch {
    /// Node id.
    pub id: String,
    /// Where clients reach it (e.g. `redis://127.0.0.1:PORT`).
    pub client_url: String,
    /// Its working directory, which holds its data and its log.
    pub dir: PathBuf,
    /// Arguments of the system's binary.
    pub args: Vec<String>,
    /// The directory where it keeps its data, if the harness knows it (what a
    /// lazy disk is mounted over for `lose-unsynced`).
    pub data: Option<PathBuf>,
}

/// Local node processes.
pub struct ProcessRuntime {
    bin: PathBuf,
    nodes: Vec<Proc>,
}

/// One node's launch plan.
pub struct NodePlan {
    /// Node id.
    pub id: String,
    /// Client API port.
    pub client: u16,
    /// Peer listen port.
    pub peer: u16,
    /// Admin API port.
    pub admin: u16,
    /// `--peer ID=ADDR` for every other node (through the proxies).
    pub peers: Vec<(String, String)>,
    /// Flags for this node alone.
    pub own_args: Vec<String>,
}

impl ProcessRuntime {
    /// Plans the nodes; `start` launches them.
    pub fn new(
        bin: PathBuf,
        run_dir: &Path,
        plans: Vec<NodePlan>,
        bugs: &[String],
        extra: &[String],
    ) -> anyhow::Result<Self> {
        let mut nodes = Vec::new();
        for plan in plans {
            let dir = run_dir.join("nodes").join(&plan.id);
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let mut args = vec![
                "--id".to_string(),
                plan.id.clone(),
                "--data-dir".into(),
                dir.join("data").display().to_string(),
                "--client".into(),
                format!("127.0.0.1:{}", plan.client),
                "--peer-listen".into(),
                format!("127.0.0.1:{}", plan.peer),
                "--admin".into(),
                format!("127.0.0.1:{}", plan.admin),
            ];
            for (peer, addr) in &plan.peers {
                args.push("--peer".into());
                args.push(format!("{peer}={addr}"));
            }
            for bug in bugs {
                args.push("--bug".into());
                args.push(bug.clone());
            }
            args.extend(extra.iter().cloned());
            args.extend(plan.own_args.iter().cloned());
            nodes.push(Proc {
                addrs: NodeAddrs::loopback(&plan.id, plan.client, plan.admin),
                id: plan.id,
                args,
                log: dir.join("node.log"),
                child: None,
                data: Some(dir.join("data")),
                disk: None,
            });
        }
        Ok(ProcessRuntime { bin, nodes })
    }

    /// Puts every node's data directory behind a lazy file system (a FUSE
    /// layer served by `exe lazyfs`, its disk in `disk/` beside `data/`), so
    /// `lose-unsynced` can drop what a node wrote but never synced.
    pub fn with_lazy_disks(&mut self, exe: &Path) -> anyhow::Result<()> {
        for p in &mut self.nodes {
            let Some(data) = p.data.clone() else {
                bail!(
                    "node {}: its data directory is unknown, so it cannot lose unsynced writes",
                    p.id
                );
            };
            let node_dir = data.parent().unwrap_or(Path::new(".")).to_path_buf();
            p.disk = Some(super::lazyfs::Disk::start(
                exe,
                &node_dir.join("disk"),
                &data,
                &node_dir.join("lazyfs.log"),
            )?);
        }
        Ok(())
    }

    /// Adds processes launched as given with the runtime's binary, each with
    /// its admin API on its client address (the mesh's service instances).
    pub fn add_launches(&mut self, launches: Vec<Launch>) -> anyhow::Result<()> {
        let extra = Self::from_launches(self.bin.clone(), launches)?;
        for mut p in extra.into_nodes() {
            p.addrs.admin_url = p.addrs.client_url.clone();
            self.nodes.push(p);
        }
        Ok(())
    }

    fn into_nodes(mut self) -> Vec<Proc> {
        std::mem::take(&mut self.nodes)
    }

    /// Processes of a third-party system, launched as given (no admin API).
    pub fn from_launches(bin: PathBuf, launches: Vec<Launch>) -> anyhow::Result<Self> {
        let mut nodes = Vec::new();
        for l in launches {
            std::fs::create_dir_all(&l.dir)
                .with_context(|| format!("cannot create {}", l.dir.display()))?;
            if let Some(data) = &l.data {
                std::fs::create_dir_all(data)
                    .with_context(|| format!("cannot create {}", data.display()))?;
            }
            nodes.push(Proc {
                addrs: NodeAddrs {
                    id: l.id.clone(),
                    client_url: l.client_url,
                    admin_url: String::new(),
                },
                log: l.dir.join("node.log"),
                id: l.id,
                args: l.args,
                child: None,
                data: l.data,
                disk: None,
            });
        }
        Ok(ProcessRuntime { bin, nodes })
    }

    fn proc_mut(&mut self, id: &str) -> anyhow::Result<&mut Proc> {
        self.nodes
            .iter_mut()
            .find(|n| n.id == id)
            .with_context(|| format!("no node `{id}`"))
    }

    fn signal(&mut self, id: &str, sig: libc::c_int) -> anyhow::Result<()> {
        let p = self.proc_mut(id)?;
        let Some(child) = &p.child else { return Ok(()) };
        // SAFETY: kill(2) on a child we spawned and have not reaped; no memory involved.
        let rc = unsafe { libc::kill(child.id() as libc::pid_t, sig) };
        if rc != 0 {
            bail!("signal {sig} to {id}: {}", std::io::Error::last_os_error());
        }
        Ok(())
    }
}

impl Runtime for ProcessRuntime {
    fn nodes(&self) -> Vec<NodeAddrs> {
        self.nodes.iter().map(|n| n.addrs.clone()).collect()
    }

    fn start<'a>(&'a mut self, id: &'a str) -> BoxFut<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let bin = self.bin.clone();
            let p = self.proc_mut(id)?;
            // Running: nothing to do. Exited on its own (a crash point, a
            // panic): reaped, and started again below.
            if let Some(child) = &mut p.child {
                match child.try_wait() {
                    Ok(Some(_)) => p.child = None,
                    _ => return Ok(()),
                }
            }
            let log = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&p.log)
                .with_context(|| format!("cannot open {}", p.log.display()))?;
            let child = Command::new(&bin)
                .args(&p.args)
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .with_context(|| format!("cannot start {}", bin.display()))?;
            p.child = Some(child);
            // A node that cannot start (a port taken, a bad data dir) exits at once.
            tokio::time::sleep(std::time::Duration::from_millis(30)).await;
            if let Some(child) = &mut p.child {
                if let Ok(Some(status)) = child.try_wait() {
                    p.child = None;
                    let log = std::fs::read_to_string(&p.log).unwrap_or_default();
                    let last = log.lines().last().unwrap_or("").to_string();
                    bail!("node {id} exited at start ({status}): {last}");
                }
            }
            Ok(())
        })
    }

    fn kill<'a>(&'a mut self, id: &'a str) -> BoxFut<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let p = self.proc_mut(id)?;
            if let Some(mut child) = p.child.take() {
                child.kill().with_context(|| format!("SIGKILL {id}"))?;
                let _ = child.wait();
            }
            Ok(())
        })
    }

    fn pause<'a>(&'a mut self, id: &'a str) -> BoxFut<'a, anyhow::Result<()>> {
        Box::pin(async move { self.signal(id, libc::SIGSTOP) })
    }

    fn resume<'a>(&'a mut self, id: &'a str) -> BoxFut<'a, anyhow::Result<()>> {
        Box::pin(async move { self.signal(id, libc::SIGCONT) })
    }

    fn teardown(&mut self) -> BoxFut<'_, anyhow::Result<()>> {
        Box::pin(async move {
            for p in &mut self.nodes {
                if let Some(mut child) = p.child.take() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
                // What was never synced is gone with the node's end, as it
                // would be at a power loss; the disk holds the rest.
                if let Some(mut disk) = p.disk.take() {
                    disk.stop();
                }
            }
            Ok(())
        })
    }

    fn lose_unsynced<'a>(
        &'a mut self,
        id: &'a str,
        tear: Option<u64>,
    ) -> BoxFut<'a, anyhow::Result<serde_json::Value>> {
        Box::pin(async move {
            let p = self.proc_mut(id)?;
            if let Some(mut child) = p.child.take() {
                child.kill().with_context(|| format!("SIGKILL {id}"))?;
                let _ = child.wait();
            }
            let Some(disk) = &p.disk else {
                bail!("node {id} has no lazy disk");
            };
            disk.command(&match tear {
                Some(seed) => format!("tear {seed}"),
                None => "drop".into(),
            })
        })
    }

    fn disk_dir(&self, id: &str) -> Option<PathBuf> {
        let p = self.nodes.iter().find(|n| n.id == id)?;
        match &p.disk {
            Some(d) => Some(d.backing().to_path_buf()),
            None => p.data.clone(),
        }
    }

    fn slow_disk<'a>(&'a mut self, id: &'a str, fsync_ms: u64) -> BoxFut<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let p = self.proc_mut(id)?;
            let Some(disk) = &p.disk else {
                bail!("node {id} has no lazy disk");
            };
            disk.command(&format!("slow {fsync_ms}"))?;
            Ok(())
        })
    }
}

impl Drop for ProcessRuntime {
    fn drop(&mut self) {
        for p in &mut self.nodes {
            if let Some(mut child) = p.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
            p.disk = None;
        }
    }
}
