//! Target `custom`: a user's own system, described in a TOML file given with
//! `--target-config`: the command that starts node `{id}`, and the HTTP
//! requests that read, write and cas a key, with which statuses mean ok, a
//! definite failure or an unknown outcome; optionally how to ask who leads.
//! Peer traffic crosses a byte-stream proxy on every directed link, so
//! partitions and delays apply without knowing the system's protocol.
//!
//! ```toml
//! [start]
//! command = "/usr/local/bin/mynode"          # relative: to the TOML file's folder
//! args = ["--name", "{id}", "--http", "127.0.0.1:{port}", "--listen", "127.0.0.1:{peer_port}",
//!         "--data", "{data_dir}", "{peers}"]
//! peer = ["--join", "{peer_id}@{peer_addr}"]  # what "{peers}" expands to, per other node
//!
//! [kv]
//! ok = [200]                # the op took effect
//! fail = [400, 409, 503]    # it certainly did not (anything else: unknown)
//! elsewhere = [421]         # not here, nothing done: try the next node
//! absent = [404]            # a read of a key never written: null
//! value = "/value"          # JSON pointer to the value in a read's answer
//! read = { method = "GET", path = "/kv/{key}" }
//! write = { method = "PUT", path = "/kv/{key}", body = '{"value": {value}}' }
//! cas = { method = "POST", path = "/kv/{key}/cas", body = '{"expected": {expected}, "new": {new}}' }
//!
//! [leader]                  # optional: the `leader` partition shape, bench failover
//! method = "GET"
//! path = "/status"
//! pointer = "/role"
//! equals = "leader"
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::time::Instant;
use workloads::{
    BoxFut, Client, Completion, Endpoint, Invocation, Session, SuppliedClients, WorkloadOptions,
};

use super::{Start, Started, Target};
use crate::net::Net;
use crate::run::{BadInput, TestConfig};
use crate::runtime::process::{Launch, ProcessRuntime};
use crate::runtime::{NodeAddrs, Runtime};

/// A system described by its user.
pub struct Custom;

/// The whole description.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Spec {
    start: StartSpec,
    kv: KvSpec,
    #[serde(default)]
    leader: Option<LeaderSpec>,
}

/// How node `{id}` starts.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StartSpec {
    command: String,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    peer: Vec<String>,
}

/// The key-value API and what its answers mean.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KvSpec {
    ok: Vec<u16>,
    fail: Vec<u16>,
    #[serde(default)]
    elsewhere: Vec<u16>,
    #[serde(default)]
    absent: Vec<u16>,
    #[serde(default = "value_pointer")]
    value: String,
    read: RequestSpec,
    write: RequestSpec,
    cas: RequestSpec,
}

fn value_pointer() -> String {
    "/value".into()
}

/// One templated HTTP request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestSpec {
    method: String,
    path: String,
    #[serde(default)]
    body: Option<String>,
}

/// How to ask a node whether it leads.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LeaderSpec {
    method: String,
    path: String,
    #[serde(default)]
    body: Option<String>,
    pointer: String,
    equals: Value,
}

/// Placeholders each template may use.
const START_ARGS: &[&str] = &["id", "port", "peer_port", "admin_port", "data_dir", "peers"];
const PEER_ARGS: &[&str] = &["id", "peer_id", "peer_addr"];
const METHODS: &[&str] = &["GET", "PUT", "POST", "DELETE", "PATCH"];

/// Reads and checks the description; errors name the file and the field.
fn load(path: &Path) -> Result<Spec, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("--target-config {}: {e}", path.display()))?;
    let spec: Spec =
        toml::from_str(&text).map_err(|e| format!("--target-config {}: {e}", path.display()))?;
    let at = |field: &str, e: String| format!("--target-config {}: {field}: {e}", path.display());
    if spec.start.command.trim().is_empty() {
        return Err(at("start.command", "empty".into()));
    }
    for (i, a) in spec.start.args.iter().enumerate() {
        placeholders(a, START_ARGS).map_err(|e| at(&format!("start.args[{i}]"), e))?;
    }
    for (i, a) in spec.start.peer.iter().enumerate() {
        placeholders(a, PEER_ARGS).map_err(|e| at(&format!("start.peer[{i}]"), e))?;
    }
    let kv = &spec.kv;
    if kv.ok.is_empty() {
        return Err(at("kv.ok", "name at least one status".into()));
    }
    for (name, list) in [
        ("kv.ok", &kv.ok),
        ("kv.fail", &kv.fail),
        ("kv.elsewhere", &kv.elsewhere),
        ("kv.absent", &kv.absent),
    ] {
        if let Some(s) = list.iter().find(|s| !(100..=599).contains(*s)) {
            return Err(at(name, format!("{s} is not an HTTP status")));
        }
    }
    if !kv.value.is_empty() && !kv.value.starts_with('/') {
        return Err(at(
            "kv.value",
            format!("`{}` is not a JSON pointer (like /value)", kv.value),
        ));
    }
    for (name, r, known) in [
        ("kv.read", &kv.read, &["key"][..]),
        ("kv.write", &kv.write, &["key", "value"][..]),
        ("kv.cas", &kv.cas, &["key", "expected", "new"][..]),
    ] {
        request(r, known).map_err(|(field, e)| at(&format!("{name}.{field}"), e))?;
    }
    if let Some(l) = &spec.leader {
        request(
            &RequestSpec {
                method: l.method.clone(),
                path: l.path.clone(),
                body: l.body.clone(),
            },
            &[],
        )
        .map_err(|(field, e)| at(&format!("leader.{field}"), e))?;
        if !l.pointer.is_empty() && !l.pointer.starts_with('/') {
            return Err(at(
                "leader.pointer",
                "not a JSON pointer (like /role)".into(),
            ));
        }
    }
    Ok(spec)
}

/// Checks a request template: its method and the placeholders it uses.
fn request(r: &RequestSpec, known: &[&str]) -> Result<(), (&'static str, String)> {
    if !METHODS.contains(&r.method.as_str()) {
        return Err((
            "method",
            format!("`{}` (known: {})", r.method, METHODS.join(", ")),
        ));
    }
    if !r.path.starts_with('/') {
        return Err(("path", format!("`{}` does not start with /", r.path)));
    }
    placeholders(&r.path, known).map_err(|e| ("path", e))?;
    if let Some(b) = &r.body {
        placeholders(b, known).map_err(|e| ("body", e))?;
    }
    Ok(())
}

/// Refuses a `{name}` the template may not use (JSON braces pass: only
/// `{word}` with a letter first counts as a placeholder).
fn placeholders(template: &str, known: &[&str]) -> Result<(), String> {
    for name in names(template) {
        if !known.contains(&name) {
            return Err(format!(
                "unknown placeholder {{{name}}} (known here: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known
                        .iter()
                        .map(|k| format!("{{{k}}}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ));
        }
    }
    Ok(())
}

/// The placeholder names in `template`.
fn names(template: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) => {
                let name = &after[..close];
                let word = name.starts_with(|c: char| c.is_ascii_alphabetic())
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if word {
                    out.push(name);
                    rest = &after[close + 1..];
                } else {
                    // A JSON brace: look for placeholders inside it too.
                    rest = after;
                }
            }
            None => break,
        }
    }
    out
}

/// Fills `{name}` placeholders from `values`.
fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = template.to_string();
    for (name, value) in values {
        out = out.replace(&format!("{{{name}}}"), value);
    }
    out
}

/// Escapes a key for a URL path segment.
fn path_segment(key: &str) -> String {
    let mut out = String::new();
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The description `cfg` names; every error is bad input.
fn spec_of(cfg: &TestConfig) -> Result<(Spec, PathBuf), BadInput> {
    let path = cfg.target_config.clone().ok_or_else(|| {
        BadInput("--target custom needs --target-config FILE.toml describing the system".into())
    })?;
    Ok((load(&path).map_err(BadInput)?, path))
}

impl Target for Custom {
    fn name(&self) -> &'static str {
        "custom"
    }

    fn about(&self) -> &'static str {
        "your own system, described in a TOML file (--target-config): how node {id} starts with {port}, {peers}, {data_dir}; how to read, write and cas a key over HTTP; who leads"
    }

    fn faults(&self) -> &'static [&'static str] {
        &["partition", "kill", "pause", "delay"]
    }

    fn takes_config(&self) -> bool {
        true
    }

    fn validate(&self, cfg: &TestConfig) -> Result<(), String> {
        if cfg.workload != "kv"
            || cfg.runtime != "process"
            || !cfg.bugs.is_empty()
            || !cfg.node_args.is_empty()
            || cfg.consensus != "raft"
        {
            return Err(
                "--target custom runs the kv workload on the process runtime, without --bug, --consensus or --node-arg (its command lives in --target-config)".into(),
            );
        }
        spec_of(cfg).map(|_| ()).map_err(|e| e.0)
    }

    fn binary(&self, cfg: &TestConfig, _quiet: bool) -> anyhow::Result<PathBuf> {
        let (spec, path) = spec_of(cfg)?;
        let command = Path::new(&spec.start.command);
        let found = if command.components().count() > 1 {
            let base = path.parent().unwrap_or(Path::new("."));
            Some(base.join(command)).filter(|p| p.is_file())
        } else {
            let dirs = std::env::var_os("PATH").unwrap_or_default();
            std::env::split_paths(&dirs)
                .map(|d| d.join(command))
                .find(|p| p.is_file())
        };
        match found {
            Some(p) => Ok(p),
            None => bail!(BadInput(format!(
                "--target-config {}: start.command: `{}` is not a file (a relative path is taken from the TOML file's folder, a bare name from the PATH)",
                path.display(),
                spec.start.command
            ))),
        }
    }

    fn start<'a>(&'a self, s: Start<'a>) -> BoxFut<'a, anyhow::Result<Started>> {
        Box::pin(async move {
            let (spec, _) = spec_of(s.cfg)?;
            let peer_addrs: Vec<(String, String)> = s
                .ids
                .iter()
                .zip(s.ports)
                .map(|(id, p)| (id.clone(), format!("127.0.0.1:{}", p.1)))
                .collect();
            let net = Net::start_streams(&peer_addrs, "127.0.0.1", s.rng)
                .await
                .context("cannot start link proxies")?;
            let mut launches = Vec::new();
            for (id, p) in s.ids.iter().zip(s.ports) {
                let dir = s.dir.join("nodes").join(id);
                let data = dir.join("data").display().to_string();
                let (port, peer_port, admin_port) =
                    (p.0.to_string(), p.1.to_string(), p.2.to_string());
                let mut peers = Vec::new();
                for other in s.ids.iter().filter(|o| *o != id) {
                    let via = net
                        .port(id, other)
                        .with_context(|| format!("no proxy on the link {id} -> {other}"))?;
                    let addr = format!("127.0.0.1:{via}");
                    for t in &spec.start.peer {
                        peers.push(fill(
                            t,
                            &[("id", id), ("peer_id", other), ("peer_addr", &addr)],
                        ));
                    }
                }
                let mut args = Vec::new();
                for a in &spec.start.args {
                    if a == "{peers}" {
                        args.extend(peers.iter().cloned());
                        continue;
                    }
                    args.push(fill(
                        a,
                        &[
                            ("id", id),
                            ("port", &port),
                            ("peer_port", &peer_port),
                            ("admin_port", &admin_port),
                            ("data_dir", &data),
                            ("peers", &peers.join(",")),
                        ],
                    ));
                }
                launches.push(Launch {
                    id: id.clone(),
                    client_url: format!("http://127.0.0.1:{port}"),
                    dir,
                    args,
                    data: None,
                });
            }
            let rt = ProcessRuntime::from_launches(s.bin.to_path_buf(), launches)?;
            Ok((Box::new(rt) as Box<dyn Runtime>, net))
        })
    }

    /// Ready once a write through some node is acknowledged.
    fn ready<'a>(
        &'a self,
        cfg: &'a TestConfig,
        _http: &'a reqwest::Client,
        nodes: &'a [NodeAddrs],
        _net: &'a Net,
    ) -> BoxFut<'a, anyhow::Result<workloads::Target>> {
        Box::pin(async move {
            let (spec, _) = spec_of(cfg)?;
            let clients = Arc::new(HttpKv {
                spec: Arc::new(spec.kv),
            });
            let endpoints: Vec<Endpoint> = nodes
                .iter()
                .map(|n| Endpoint {
                    id: n.id.clone(),
                    url: n.client_url.clone(),
                })
                .collect();
            let options = WorkloadOptions {
                keys: 1,
                ops_per_key: 1,
                op_timeout: Duration::from_secs(1),
                target: workloads::Target::Builtin,
                nodes: 0,
            };
            let client = clients
                .client("kv", endpoints, &options)
                .context("kv client")?;
            let mut session = client.open(0);
            let probe = Invocation {
                f: "write".into(),
                key: Some("faultline-ready".into()),
                value: json!(1),
            };
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut last = String::new();
            while Instant::now() < deadline {
                match session.invoke(&probe).await.0 {
                    Completion::Ok(_) => return Ok(workloads::Target::Supplied(clients)),
                    Completion::Fail(e) | Completion::Info(e) => last = e,
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            bail!("no node acknowledged a write within 30 s (last answer: {last}; see nodes/*/node.log)")
        })
    }

    fn leader<'a>(
        &'a self,
        cfg: &'a TestConfig,
        http: &'a reqwest::Client,
        nodes: &'a [NodeAddrs],
    ) -> BoxFut<'a, Option<String>> {
        Box::pin(async move {
            // Checked when the run started; read again, as nothing holds a copy.
            let (spec, _) = spec_of(cfg).ok()?;
            let spec = spec.leader?;
            for n in nodes {
                let method = reqwest::Method::from_bytes(spec.method.as_bytes()).ok()?;
                let mut req = http
                    .request(method, format!("{}{}", n.client_url, spec.path))
                    .timeout(Duration::from_secs(1));
                if let Some(b) = &spec.body {
                    req = req
                        .header("content-type", "application/json")
                        .body(b.clone());
                }
                let Ok(r) = req.send().await else { continue };
                let Ok(body) = r.json::<Value>().await else {
                    continue;
                };
                if body.pointer(&spec.pointer) == Some(&spec.equals) {
                    return Some(n.id.clone());
                }
            }
            None
        })
    }
}

/// The kv client of a described system.
#[derive(Debug)]
struct HttpKv {
    spec: Arc<KvSpec>,
}

impl SuppliedClients for HttpKv {
    fn client(
        &self,
        workload: &str,
        nodes: Vec<Endpoint>,
        options: &WorkloadOptions,
    ) -> Option<Arc<dyn Client>> {
        (workload == "kv").then(|| {
            Arc::new(HttpKvClient {
                spec: self.spec.clone(),
                nodes: Arc::new(nodes),
                http: reqwest::Client::builder()
                    .timeout(options.op_timeout)
                    .build()
                    .unwrap_or_default(),
            }) as Arc<dyn Client>
        })
    }
}

struct HttpKvClient {
    spec: Arc<KvSpec>,
    nodes: Arc<Vec<Endpoint>>,
    http: reqwest::Client,
}

impl Client for HttpKvClient {
    fn open(&self, process: u64) -> Box<dyn Session> {
        Box::new(HttpKvSession {
            spec: self.spec.clone(),
            nodes: self.nodes.clone(),
            http: self.http.clone(),
            home: (process as usize) % self.nodes.len().max(1),
        })
    }
}

/// One process: each op starts at its home node and moves on only when a
/// node says it did nothing (`elsewhere`) or cannot be reached.
struct HttpKvSession {
    spec: Arc<KvSpec>,
    nodes: Arc<Vec<Endpoint>>,
    http: reqwest::Client,
    home: usize,
}

impl HttpKvSession {
    async fn attempt(&self, op: &Invocation) -> (Completion, Option<String>) {
        let key = path_segment(op.key.as_deref().unwrap_or_default());
        let json = |v: &Value| v.to_string();
        let pair = op.value.as_array().cloned().unwrap_or_default();
        let (expected, new) = (
            json(pair.first().unwrap_or(&Value::Null)),
            json(pair.get(1).unwrap_or(&Value::Null)),
        );
        let value = json(&op.value);
        let (template, values): (&RequestSpec, Vec<(&str, &str)>) = match op.f.as_str() {
            "read" => (&self.spec.read, vec![("key", &key)]),
            "write" => (&self.spec.write, vec![("key", &key), ("value", &value)]),
            "cas" => (
                &self.spec.cas,
                vec![("key", &key), ("expected", &expected), ("new", &new)],
            ),
            other => return (Completion::Fail(format!("kv has no op `{other}`")), None),
        };
        let Ok(method) = reqwest::Method::from_bytes(template.method.as_bytes()) else {
            return (Completion::Fail("bad method".into()), None);
        };
        let path = fill(&template.path, &values);
        let body = template.body.as_ref().map(|b| fill(b, &values));
        let n = self.nodes.len();
        let mut refused = String::from("no node");
        for i in 0..n {
            let node = &self.nodes[(self.home + i) % n];
            let mut req = self
                .http
                .request(method.clone(), format!("{}{path}", node.url));
            if let Some(b) = &body {
                req = req
                    .header("content-type", "application/json")
                    .body(b.clone());
            }
            let answer = match req.send().await {
                Ok(r) => r,
                // Nothing was sent: the op certainly did not happen here.
                Err(e) if e.is_connect() => {
                    refused = format!("{}: cannot connect", node.id);
                    continue;
                }
                Err(e) if e.is_timeout() => {
                    return (Completion::Info("timeout".into()), Some(node.id.clone()))
                }
                Err(e) => return (Completion::Info(e.to_string()), Some(node.id.clone())),
            };
            let status = answer.status().as_u16();
            let text = answer.text().await.unwrap_or_default();
            let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let who = Some(node.id.clone());
            if self.spec.elsewhere.contains(&status) {
                refused = format!("{}: {status}", node.id);
                continue;
            }
            if op.f == "read" && self.spec.absent.contains(&status) {
                return (Completion::Ok(Value::Null), who);
            }
            if self.spec.ok.contains(&status) {
                let result = if op.f == "read" {
                    body.pointer(&self.spec.value)
                        .cloned()
                        .unwrap_or(Value::Null)
                } else {
                    op.value.clone()
                };
                return (Completion::Ok(result), who);
            }
            // The system's own error code, when its body names one.
            let code = body
                .get("error")
                .and_then(Value::as_str)
                .map_or_else(|| format!("http {status}"), str::to_string);
            return if self.spec.fail.contains(&status) {
                (Completion::Fail(code), who)
            } else {
                (Completion::Info(code), who)
            };
        }
        (
            Completion::Fail(format!("every node refused ({refused})")),
            None,
        )
    }
}

impl Session for HttpKvSession {
    fn invoke<'a>(&'a mut self, op: &'a Invocation) -> BoxFut<'a, (Completion, Option<String>)> {
        Box::pin(self.attempt(op))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("target.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    const GOOD: &str = r#"
[start]
command = "node"
args = ["--id", "{id}", "--client", "127.0.0.1:{port}", "{peers}"]
peer = ["--peer", "{peer_id}={peer_addr}"]
[kv]
ok = [200]
fail = [409]
read = { method = "GET", path = "/kv/{key}" }
write = { method = "PUT", path = "/kv/{key}", body = '{"value": {value}}' }
cas = { method = "POST", path = "/kv/{key}/cas", body = '{"expected": {expected}, "new": {new}}' }
"#;

    #[test]
    fn a_good_description_loads_and_json_braces_are_not_placeholders() {
        let (_d, p) = write(GOOD);
        let spec = load(&p).unwrap();
        assert_eq!(spec.kv.value, "/value");
        assert_eq!(names(r#"{"value": {value}}"#), ["value"]);
        assert_eq!(names(r#"{"a": {"b": {key}}, "c": {new}}"#), ["key", "new"]);
        assert_eq!(
            fill(r#"{"expected": {expected}}"#, &[("expected", "[1]")]),
            r#"{"expected": [1]}"#
        );
        assert_eq!(path_segment("a b/c"), "a%20b%2Fc");
    }

    #[test]
    fn every_broken_field_is_named() {
        let cases = [
            (GOOD.replace("[kv]\nok = [200]", "[kv]"), "ok"),
            (GOOD.replace("{peer_id}", "{peer_name}"), "start.peer[1]"),
            (GOOD.replace("{value}}", "{vlaue}}"), "kv.write.body"),
            (
                GOOD.replace("method = \"GET\"", "method = \"FETCH\""),
                "kv.read.method",
            ),
            (GOOD.replace("fail = [409]", "fail = [999]"), "kv.fail"),
            (
                GOOD.replace("path = \"/kv/{key}\" }", "path = \"kv/{key}\" }"),
                "kv.read.path",
            ),
            (GOOD.replace("[kv]", "[kv]\ncolour = 1"), "colour"),
            (GOOD.replace("command = \"node\"", "command = 5"), "command"),
            ("[start\n".to_string(), "line 1"),
        ];
        for (text, needle) in cases {
            let (_d, p) = write(&text);
            let e = load(&p).unwrap_err();
            assert!(
                e.contains(needle) && e.contains("target.toml"),
                "{needle}: {e}"
            );
        }
    }
}
