//! A multi-process cluster of `faultline-node` for tests: real processes, real
//! SIGKILL, and a TCP proxy on every directed link that a test can cut.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::TcpListener as StdListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// A free loopback port below the kernel's ephemeral range (32768+), so no
/// `bind(0)` or outgoing connection can take it before the node binds it; a
/// process-wide counter keeps parallel tests apart.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = 20_000 + (std::process::id() * 97) % 8_000;
    loop {
        let port =
            (20_000 + (base - 20_000 + NEXT.fetch_add(1, Ordering::Relaxed)) % 12_000) as u16;
        if StdListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A proxy on one directed link; `cut` drops every byte and connection.
pub struct LinkProxy {
    pub port: u16,
    cut: Arc<AtomicBool>,
}

impl LinkProxy {
    pub async fn start(target: String) -> LinkProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let flag = cut.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                let flag = flag.clone();
                let target = target.clone();
                tokio::spawn(async move {
                    if flag.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(mut outbound) = TcpStream::connect(&target).await else {
                        return;
                    };
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        use tokio::io::AsyncReadExt;
                        let n = tokio::select! {
                            r = inbound.read(&mut buf) => match r { Ok(0) | Err(_) => return, Ok(n) => n },
                            _ = tokio::time::sleep(Duration::from_millis(20)) => 0,
                        };
                        if flag.load(Ordering::SeqCst) {
                            // Cut: close both sides; the sender reconnects into a dead link.
                            return;
                        }
                        if n > 0 && outbound.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        LinkProxy { port, cut }
    }

    pub fn set_cut(&self, cut: bool) {
        self.cut.store(cut, Ordering::SeqCst);
    }
}

/// Polls `check` every 50 ms until it holds; panics naming `what` after 20 s.
pub async fn wait_for<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

/// One node process and its addresses.
pub struct NodeProc {
    pub id: String,
    pub client: u16,
    pub peer: u16,
    pub admin: u16,
    pub dir: PathBuf,
    pub args: Vec<String>,
    pub child: Option<Child>,
}

/// A cluster of node processes with a proxy on every directed link.
pub struct Cluster {
    pub nodes: Vec<NodeProc>,
    pub links: BTreeMap<(String, String), LinkProxy>,
    pub root: tempfile::TempDir,
    pub http: reqwest::Client,
    extra: Vec<String>,
}

pub fn node_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_faultline-node"))
}

impl Cluster {
    /// Starts `n` nodes with extra flags for all of them.
    pub async fn start(n: usize, extra: &[&str]) -> Cluster {
        let root = tempfile::tempdir().unwrap();
        let ids: Vec<String> = (1..=n).map(|i| format!("n{i}")).collect();
        let ports: Vec<(u16, u16, u16)> = ids
            .iter()
            .map(|_| (free_port(), free_port(), free_port()))
            .collect();
        let mut links = BTreeMap::new();
        for (i, a) in ids.iter().enumerate() {
            for (j, b) in ids.iter().enumerate() {
                if i != j {
                    let proxy = LinkProxy::start(format!("127.0.0.1:{}", ports[j].1)).await;
                    links.insert((a.clone(), b.clone()), proxy);
                }
            }
        }
        let mut cluster = Cluster {
            nodes: Vec::new(),
            links,
            root,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        for (i, id) in ids.iter().enumerate() {
            let peers: Vec<String> = ids
                .iter()
                .filter(|p| *p != id)
                .map(|p| {
                    format!(
                        "{p}=127.0.0.1:{}",
                        cluster.links[&(id.clone(), p.clone())].port
                    )
                })
                .collect();
            cluster.add_node(id, ports[i], &peers, false);
        }
        cluster
    }

    /// Starts one more node process (not yet a member when `join`).
    pub fn add_node(
        &mut self,
        id: &str,
        (client, peer, admin): (u16, u16, u16),
        peers: &[String],
        join: bool,
    ) {
        let dir = self.root.path().join(id);
        let mut args = vec![
            "--id".to_string(),
            id.to_string(),
            "--data-dir".into(),
            dir.display().to_string(),
            "--client".into(),
            format!("127.0.0.1:{client}"),
            "--peer-listen".into(),
            format!("127.0.0.1:{peer}"),
            "--admin".into(),
            format!("127.0.0.1:{admin}"),
        ];
        for p in peers {
            args.push("--peer".into());
            args.push(p.clone());
        }
        if join {
            args.push("--join".into());
        }
        args.extend(self.extra.iter().cloned());
        let mut node = NodeProc {
            id: id.to_string(),
            client,
            peer,
            admin,
            dir,
            args,
            child: None,
        };
        spawn(&mut node, self.root.path());
        self.nodes.push(node);
    }

    pub fn node(&self, id: &str) -> &NodeProc {
        self.nodes.iter().find(|n| n.id == id).unwrap()
    }

    fn node_mut(&mut self, id: &str) -> &mut NodeProc {
        self.nodes.iter_mut().find(|n| n.id == id).unwrap()
    }

    /// SIGKILL.
    pub fn kill(&mut self, id: &str) {
        if let Some(mut c) = self.node_mut(id).child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts a killed node again on the same data directory.
    pub fn restart(&mut self, id: &str) {
        let root = self.root.path().to_path_buf();
        spawn(self.node_mut(id), &root);
    }

    /// Cuts (or heals) every link to and from `id`.
    pub fn isolate(&self, id: &str, cut: bool) {
        for ((a, b), proxy) in &self.links {
            if a == id || b == id {
                proxy.set_cut(cut);
            }
        }
    }

    pub fn url(&self, id: &str, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.node(id).client)
    }

    /// Sends `method path` (with a JSON body, if any) to node `id`: the HTTP
    /// status and the JSON body, or `(0, null)` when nothing answered.
    pub async fn request(
        &self,
        method: &str,
        id: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let url = self.url(id, path);
        let req = match method {
            "PUT" => self.http.put(url),
            "POST" => self.http.post(url),
            "DELETE" => self.http.delete(url),
            _ => self.http.get(url),
        };
        let req = match body {
            Some(b) => req.json(&b),
            None => req,
        };
        match req.send().await {
            Ok(r) => (r.status().as_u16(), r.json().await.unwrap_or(Value::Null)),
            Err(_) => (0, Value::Null),
        }
    }

    /// Arms crash point `point` on node `id` through its admin API.
    pub async fn arm_crash_point(&self, id: &str, point: &str) {
        let r = self
            .http
            .post(format!(
                "http://127.0.0.1:{}/admin/crash-points",
                self.node(id).admin
            ))
            .json(&json!({ "point": point }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }

    pub async fn status(&self, id: &str) -> Option<Value> {
        let r = self
            .http
            .get(self.url(id, "/cluster/status"))
            .send()
            .await
            .ok()?;
        r.json().await.ok()
    }

    /// Waits until some live node among `among` says it is the leader.
    pub async fn leader(&self, among: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            for id in among {
                if let Some(s) = self.status(id).await {
                    if s["role"] == "leader" {
                        return id.to_string();
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut logs = String::new();
        for n in &self.nodes {
            logs.push_str(&format!("== {}\n{}\n", n.id, self.log_text(&n.id)));
        }
        panic!("no leader among {among:?} within 20 s\n{logs}");
    }

    /// PUT through `id`: the HTTP status and body.
    pub async fn put(&self, id: &str, key: &str, value: Value) -> (u16, Value) {
        match self
            .http
            .put(self.url(id, &format!("/kv/{key}")))
            .json(&json!({"value": value}))
            .send()
            .await
        {
            Ok(r) => (r.status().as_u16(), r.json().await.unwrap_or(Value::Null)),
            Err(_) => (0, Value::Null),
        }
    }

    pub async fn get(&self, id: &str, key: &str) -> (u16, Value) {
        match self
            .http
            .get(self.url(id, &format!("/kv/{key}")))
            .send()
            .await
        {
            Ok(r) => (r.status().as_u16(), r.json().await.unwrap_or(Value::Null)),
            Err(_) => (0, Value::Null),
        }
    }

    /// Writes through whichever node is leader, retrying until acknowledged.
    pub async fn put_acked(&self, among: &[&str], key: &str, value: Value) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let leader = self.leader(among).await;
            if self.put(&leader, key, value.clone()).await.0 == 200 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("write {key}={value} not acknowledged within 20 s");
    }

    pub fn log_text(&self, id: &str) -> String {
        std::fs::read_to_string(self.root.path().join(format!("{id}.log"))).unwrap_or_default()
    }
}

fn spawn(node: &mut NodeProc, root: &std::path::Path) {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(root.join(format!("{}.log", node.id)))
        .unwrap();
    let child = Command::new(node_binary())
        .args(&node.args)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start faultline-node");
    node.child = Some(child);
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// An answer read off the wire: status, head (lower-cased) and body.
#[derive(Debug)]
pub struct RawAnswer {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

/// Sends `request` as bytes to a loopback port and reads the answer until the
/// node closes the connection (send `connection: close`) or 10 s pass; writing
/// goes on beside reading, as a node may answer before the body is sent. An
/// interim `100 Continue` is skipped; no answer is status 0.
pub async fn raw_request(port: u16, request: &[u8]) -> RawAnswer {
    use tokio::io::AsyncReadExt;
    let stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to node");
    let (mut rd, mut wr) = stream.into_split();
    let request = request.to_vec();
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(&request).await;
        wr
    });
    let mut bytes = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), rd.read_to_end(&mut bytes)).await;
    writer.abort();
    let mut rest = &bytes[..];
    loop {
        let Some(end) = rest.windows(4).position(|w| w == b"\r\n\r\n") else {
            return RawAnswer {
                status: 0,
                head: String::from_utf8_lossy(rest).into_owned(),
                body: Vec::new(),
            };
        };
        let head = String::from_utf8_lossy(&rest[..end]).to_lowercase();
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        rest = &rest[end + 4..];
        if status != 100 {
            return RawAnswer {
                status,
                head,
                body: rest.to_vec(),
            };
        }
    }
}
