//! The Docker runtime: every node a container of the `FROM scratch` node image on
//! a private network made for the run, created, restarted and removed through
//! testcontainers. Kill, pause and resume are signals sent through the Docker API
//! (SIGKILL, SIGSTOP, SIGCONT); partitions and loss are iptables rules in each
//! container's namespace ([`crate::net::iptables`]); delay and duplication go
//! through the harness's link proxies, which listen on the network's gateway.
//! Everything is labelled with the harness's pid, and whatever a dead harness
//! left behind is removed before a new run starts.

pub mod api_shim;
pub mod image;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use futures_util::StreamExt;
use serde_json::{json, Value};
use testcontainers::bollard::models::NetworkCreateRequest;
use testcontainers::bollard::query_parameters::{
    KillContainerOptionsBuilder, ListContainersOptionsBuilder, ListNetworksOptionsBuilder,
    LogsOptionsBuilder, RemoveContainerOptionsBuilder,
};
use testcontainers::bollard::Docker;
use testcontainers::core::{IntoContainerPort, Mount};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};
use workloads::{BoxFut, Rng};

use super::{NodeAddrs, Runtime};
use crate::net::iptables::PacketFilter;
use crate::net::Net;

/// Label naming the harness process that owns a container or network.
const OWNER: &str = "faultline.owner";
/// Ports inside every container.
const CLIENT_PORT: u16 = 8080;
const PEER_PORT: u16 = 7000;
const ADMIN_PORT: u16 = 8081;

/// The socket testcontainers is pointed at (see [`api_shim`]); `harness run`
/// sets `DOCKER_HOST` to it before any thread starts.
pub fn shim_socket() -> PathBuf {
    std::env::temp_dir().join(format!("faultline-docker-{}.sock", std::process::id()))
}

/// The engine's own socket.
fn engine_socket() -> PathBuf {
    PathBuf::from("/var/run/docker.sock")
}

struct DockerNode {
    id: String,
    client: u16,
    peer: u16,
    admin: u16,
    args: Vec<String>,
    data: PathBuf,
    log: PathBuf,
    container: Option<ContainerAsync<GenericImage>>,
}

/// Nodes as containers.
pub struct DockerRuntime {
    docker: Docker,
    image: image::NodeImage,
    network: String,
    run: String,
    nodes: Vec<DockerNode>,
    filter: Arc<PacketFilter>,
    start_seconds: Vec<f64>,
    torn_down: bool,
    _shim: api_shim::ApiShim,
}

/// What the Docker runtime needs to place one node.
pub struct DockerPlan {
    /// Node id.
    pub id: String,
    /// Host port published for the client API.
    pub client: u16,
    /// Host port published for peer traffic (the proxies' target).
    pub peer: u16,
    /// Host port published for the admin API.
    pub admin: u16,
}

fn alive(pid: i32) -> bool {
    // SAFETY: kill(2) with signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

/// Removes containers and networks whose owning harness is gone (a run that was
/// killed before it could clean up).
async fn sweep(docker: &Docker) -> anyhow::Result<()> {
    let mut filters = HashMap::new();
    filters.insert("label", vec![OWNER]);
    let containers = docker
        .list_containers(Some(
            ListContainersOptionsBuilder::new()
                .all(true)
                .filters(&filters)
                .build(),
        ))
        .await?;
    for c in containers {
        let owner = c
            .labels
            .as_ref()
            .and_then(|l| l.get(OWNER))
            .and_then(|p| p.parse().ok());
        if owner.is_some_and(|pid: i32| !alive(pid)) {
            if let Some(id) = c.id {
                let _ = docker
                    .remove_container(
                        &id,
                        Some(
                            RemoveContainerOptionsBuilder::new()
                                .force(true)
                                .v(true)
                                .build(),
                        ),
                    )
                    .await;
            }
        }
    }
    let networks = docker
        .list_networks(Some(
            ListNetworksOptionsBuilder::new().filters(&filters).build(),
        ))
        .await?;
    for n in networks {
        let owner = n
            .labels
            .as_ref()
            .and_then(|l| l.get(OWNER))
            .and_then(|p| p.parse().ok());
        if owner.is_some_and(|pid: i32| !alive(pid)) {
            if let Some(name) = n.name {
                let _ = docker.remove_network(&name).await;
            }
        }
    }
    Ok(())
}

/// Connects to the local engine at a version it speaks.
pub async fn connect() -> anyhow::Result<Docker> {
    let docker = Docker::connect_with_unix(
        &engine_socket().display().to_string(),
        120,
        testcontainers::bollard::API_DEFAULT_VERSION,
    )
    .context("cannot open the Docker socket")?;
    docker
        .negotiate_version()
        .await
        .context("the Docker engine does not answer on /var/run/docker.sock (is dockerd running?)")
}

impl DockerRuntime {
    /// Builds the image of `bin` (static) if needed, creates the run's network and link proxies on
    /// its gateway, and plans the containers; `start` launches them.
    #[allow(clippy::too_many_arguments)]
    pub async fn create(
        run_dir: &Path,
        bin: &Path,
        plans: Vec<DockerPlan>,
        bugs: &[String],
        extra: &[String],
        rng: &Rng,
    ) -> anyhow::Result<(DockerRuntime, Net)> {
        let docker = connect().await?;
        let engine = docker
            .version()
            .await
            .context("docker version")?
            .api_version
            .unwrap_or_else(|| "1.41".into());
        let shim = api_shim::start(&shim_socket(), &engine_socket(), &engine)?;
        if std::env::var("DOCKER_HOST").ok().as_deref() != Some(shim.docker_host().as_str()) {
            bail!("DOCKER_HOST must point at the harness's API shim before the runtime starts (a bug in Faultline)");
        }
        sweep(&docker)
            .await
            .context("cleaning up after earlier runs")?;

        let image = image::ensure(&docker, bin).await?;

        let run = run_dir
            .file_name()
            .map(|n| n.to_string_lossy().replace(['.', ':'], "-").to_lowercase())
            .unwrap_or_else(|| "run".into());
        let network = format!("faultline-{}-{run}", std::process::id());
        let owner = std::process::id().to_string();
        docker
            .create_network(NetworkCreateRequest {
                name: network.clone(),
                driver: Some("bridge".into()),
                labels: Some(HashMap::from([(OWNER.to_string(), owner.clone())])),
                ..Default::default()
            })
            .await
            .with_context(|| format!("cannot create docker network {network}"))?;
        let gateway = docker
            .inspect_network(&network, None)
            .await?
            .ipam
            .and_then(|i| i.config)
            .and_then(|c| c.into_iter().find_map(|c| c.gateway))
            .with_context(|| format!("network {network} has no gateway"))?;

        let peer_targets: Vec<(String, String)> = plans
            .iter()
            .map(|p| (p.id.clone(), format!("127.0.0.1:{}", p.peer)))
            .collect();
        let mut net = match Net::start(&peer_targets, &gateway, rng).await {
            Ok(net) => net,
            Err(e) => {
                let _ = docker.remove_network(&network).await;
                bail!("cannot start link proxies on {gateway}: {e}");
            }
        };
        let filter = Arc::new(PacketFilter::new(gateway.clone(), net.ports()));
        net.use_packet_filter(filter.clone());

        let mut nodes = Vec::new();
        for plan in &plans {
            let dir = run_dir.join("nodes").join(&plan.id);
            let data = dir.join("data");
            std::fs::create_dir_all(&data)
                .with_context(|| format!("cannot create {}", data.display()))?;
            let mut args = vec![
                "--id".to_string(),
                plan.id.clone(),
                "--data-dir".into(),
                "/data".into(),
                "--client".into(),
                format!("0.0.0.0:{CLIENT_PORT}"),
                "--peer-listen".into(),
                format!("0.0.0.0:{PEER_PORT}"),
                "--admin".into(),
                format!("0.0.0.0:{ADMIN_PORT}"),
            ];
            for other in &plans {
                if other.id != plan.id {
                    let port = net.port(&plan.id, &other.id).unwrap_or(0);
                    args.push("--peer".into());
                    args.push(format!("{}={gateway}:{port}", other.id));
                }
            }
            for bug in bugs {
                args.push("--bug".into());
                args.push(bug.clone());
            }
            args.extend(extra.iter().cloned());
            nodes.push(DockerNode {
                id: plan.id.clone(),
                client: plan.client,
                peer: plan.peer,
                admin: plan.admin,
                args,
                data,
                log: dir.join("node.log"),
                container: None,
            });
        }
        let rt = DockerRuntime {
            docker,
            image,
            network,
            run,
            nodes,
            filter,
            start_seconds: Vec::new(),
            torn_down: false,
            _shim: shim,
        };
        Ok((rt, net))
    }
}

impl DockerRuntime {
    fn node_mut(&mut self, id: &str) -> anyhow::Result<&mut DockerNode> {
        self.nodes
            .iter_mut()
            .find(|n| n.id == id)
            .with_context(|| format!("no node `{id}`"))
    }

    fn container_id(&self, id: &str) -> anyhow::Result<String> {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .and_then(|n| n.container.as_ref())
            .map(|c| c.id().to_string())
            .with_context(|| format!("node {id} has no container"))
    }

    async fn signal(&self, id: &str, signal: &str) -> anyhow::Result<()> {
        let cid = self.container_id(id)?;
        self.docker
            .kill_container(
                &cid,
                Some(KillContainerOptionsBuilder::new().signal(signal).build()),
            )
            .await
            .with_context(|| format!("{signal} to node {id}"))
    }

    /// The running container's pid on the host and address on the run network.
    async fn pid_and_ip(&self, cid: &str) -> anyhow::Result<(u32, String)> {
        let info = self.docker.inspect_container(cid, None).await?;
        let pid = info
            .state
            .as_ref()
            .and_then(|s| s.pid)
            .filter(|p| *p > 0)
            .with_context(|| format!("container {cid} is not running"))?;
        let ip = info
            .network_settings
            .and_then(|n| n.networks)
            .and_then(|mut n| n.remove(&self.network))
            .and_then(|e| e.ip_address)
            .unwrap_or_default();
        Ok((pid as u32, ip))
    }

    async fn save_logs(&self, node: &DockerNode) {
        let Some(c) = &node.container else { return };
        let mut stream = self.docker.logs(
            c.id(),
            Some(LogsOptionsBuilder::new().stdout(true).stderr(true).build()),
        );
        let mut text = Vec::new();
        while let Some(Ok(chunk)) = stream.next().await {
            text.extend_from_slice(&chunk.into_bytes());
        }
        let _ = std::fs::write(&node.log, text);
    }
}

impl Runtime for DockerRuntime {
    fn nodes(&self) -> Vec<NodeAddrs> {
        self.nodes
            .iter()
            .map(|n| NodeAddrs::loopback(&n.id, n.client, n.admin))
            .collect()
    }

    fn start<'a>(&'a mut self, id: &'a str) -> BoxFut<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let started = Instant::now();
            let tag = self.image.tag.clone();
            let network = self.network.clone();
            let name = format!("faultline-{}-{}-{id}", std::process::id(), self.run);
            let node = self.node_mut(id)?;
            let cid = match &node.container {
                Some(c) => {
                    if c.is_running().await.unwrap_or(false) {
                        return Ok(());
                    }
                    c.start()
                        .await
                        .with_context(|| format!("restart container of {id}"))?;
                    c.id().to_string()
                }
                None => {
                    let (repo, version) = tag.split_once(':').unwrap_or((&tag, "latest"));
                    let request = GenericImage::new(repo, version)
                        .with_cmd(node.args.clone())
                        .with_network(network)
                        .with_container_name(name)
                        .with_label(OWNER, std::process::id().to_string())
                        .with_mapped_port(node.client, CLIENT_PORT.tcp())
                        .with_mapped_port(node.peer, PEER_PORT.tcp())
                        .with_mapped_port(node.admin, ADMIN_PORT.tcp())
                        .with_mount(Mount::bind_mount(node.data.display().to_string(), "/data"));
                    let c = request
                        .start()
                        .await
                        .with_context(|| format!("cannot start the container of node {id}"))?;
                    let cid = c.id().to_string();
                    node.container = Some(c);
                    cid
                }
            };
            let (pid, ip) = self.pid_and_ip(&cid).await?;
            self.filter.attach(id, pid, ip)?;
            self.start_seconds.push(started.elapsed().as_secs_f64());
            Ok(())
        })
    }

    fn kill<'a>(&'a mut self, id: &'a str) -> BoxFut<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let cid = self.container_id(id)?;
            self.filter.detach(id);
            let _ = self.signal(id, "SIGKILL").await;
            // Docker answers once the signal is sent; wait until the engine has
            // seen the process die, so a restart is a real one.
            for _ in 0..200 {
                let info = self.docker.inspect_container(&cid, None).await?;
                if !info.state.and_then(|s| s.running).unwrap_or(false) {
                    return Ok(());
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            bail!("node {id} still runs 2 s after SIGKILL")
        })
    }

    fn pause<'a>(&'a mut self, id: &'a str) -> BoxFut<'a, anyhow::Result<()>> {
        Box::pin(async move { self.signal(id, "SIGSTOP").await })
    }

    fn resume<'a>(&'a mut self, id: &'a str) -> BoxFut<'a, anyhow::Result<()>> {
        Box::pin(async move { self.signal(id, "SIGCONT").await })
    }

    fn teardown(&mut self) -> BoxFut<'_, anyhow::Result<()>> {
        Box::pin(async move {
            let nodes = std::mem::take(&mut self.nodes);
            for node in &nodes {
                self.save_logs(node).await;
            }
            for mut node in nodes {
                if let Some(c) = node.container.take() {
                    let _ = c.rm().await;
                }
            }
            let _ = self.docker.remove_network(&self.network).await;
            self.torn_down = true;
            Ok(())
        })
    }

    fn describe(&self) -> Value {
        json!({
            "runtime": "docker",
            "image": self.image.tag,
            "image_built": self.image.built,
            "image_build_seconds": self.image.build_seconds,
            "image_bytes": self.image.bytes,
            "container_start_seconds": self.start_seconds,
            "network": self.network,
        })
    }
}

impl Drop for DockerRuntime {
    /// A run that fails or is interrupted still removes its containers (their own
    /// drop does, through the shim that is still up) and then its network.
    fn drop(&mut self) {
        if self.torn_down {
            return;
        }
        for n in &mut self.nodes {
            drop(n.container.take());
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if handle.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
            return;
        }
        let docker = self.docker.clone();
        let network = self.network.clone();
        tokio::task::block_in_place(|| {
            handle.block_on(async move {
                let _ = docker.remove_network(&network).await;
            })
        });
    }
}
