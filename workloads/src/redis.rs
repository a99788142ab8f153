//! The `kv` workload against Redis: a primary (the first node) with replicas.
//! Writes and cas go to the primary (cas as a Lua script, which Redis runs
//! atomically); reads go to the primary or, with replica reads, to a replica
//! chosen by the process, which is what a read-scaling deployment does, and
//! what linearizability forbids. With Sentinel, each process asks its node's
//! sentinel which node is the primary and sticks to that answer until the
//! node refuses it (a replica answers READONLY) or cannot be reached, as
//! Sentinel-aware client libraries do. Speaks RESP over one connection per node.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::{BoxFut, Client, Completion, Endpoint, Invocation, Session};

/// Sets the key to ARGV[2] if it holds ARGV[1]; answers 1 if it did.
const CAS: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
                   redis.call('SET', KEYS[1], ARGV[2]) return 1 else return 0 end";

/// The name the sentinels monitor the primary under.
pub const MASTER: &str = "faultline";

/// How Sentinel clients find the primary.
#[derive(Clone, Debug, Default)]
pub struct Sentinels {
    /// Each node's sentinel, `host:port`, in node order.
    pub addrs: Vec<String>,
    /// Redis addresses the sentinels announce (`host:port`) to node ids.
    pub announced: BTreeMap<String, String>,
}

/// A RESP reply.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    /// `+OK`.
    Simple(String),
    /// `-ERR ...`.
    Error(String),
    /// `:n`.
    Int(i64),
    /// `$n` bulk string, `None` for nil.
    Bulk(Option<Vec<u8>>),
    /// `*n` array (nil arrays read as empty).
    Array(Vec<Reply>),
}

/// Encodes a command as a RESP array of bulk strings.
pub fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Reads one reply.
pub async fn read_reply<R: AsyncBufReadExt + Unpin>(r: &mut R) -> std::io::Result<Reply> {
    let mut line = String::new();
    if r.read_line(&mut line).await? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let line = line.trim_end_matches(['\r', '\n']);
    let bad = || {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("bad reply `{line}`"),
        )
    };
    let (kind, rest) = line.split_at_checked(1).ok_or_else(bad)?;
    match kind {
        "+" => Ok(Reply::Simple(rest.to_string())),
        "-" => Ok(Reply::Error(rest.to_string())),
        ":" => rest.parse().map(Reply::Int).map_err(|_| bad()),
        "$" => {
            let n: i64 = rest.parse().map_err(|_| bad())?;
            if n < 0 {
                return Ok(Reply::Bulk(None));
            }
            let mut body = vec![0u8; n as usize + 2];
            r.read_exact(&mut body).await?;
            body.truncate(n as usize);
            Ok(Reply::Bulk(Some(body)))
        }
        "*" => {
            let n: i64 = rest.parse().map_err(|_| bad())?;
            let mut items = Vec::new();
            for _ in 0..n.max(0) {
                items.push(Box::pin(read_reply(r)).await?);
            }
            Ok(Reply::Array(items))
        }
        _ => Err(bad()),
    }
}

/// One connection to one Redis node.
struct Conn {
    stream: BufReader<TcpStream>,
}

/// Why a command got no reply.
enum CallError {
    /// Could not connect: nothing was sent.
    Connect(String),
    /// Sent, then the connection failed or the answer was late.
    Lost(String),
}

impl Conn {
    async fn open(addr: &str) -> Result<Conn, String> {
        let stream = tokio::time::timeout(Duration::from_millis(500), TcpStream::connect(addr))
            .await
            .map_err(|_| format!("connect to {addr} timed out"))?
            .map_err(|e| format!("connect to {addr}: {e}"))?;
        let _ = stream.set_nodelay(true);
        Ok(Conn {
            stream: BufReader::new(stream),
        })
    }

    async fn call(&mut self, args: &[&[u8]]) -> std::io::Result<Reply> {
        self.stream.get_mut().write_all(&encode(args)).await?;
        read_reply(&mut self.stream).await
    }
}

/// Makes sessions that talk to the Redis nodes.
pub struct RedisKvClient {
    nodes: Arc<Vec<Endpoint>>,
    replica_reads: bool,
    sentinels: Option<Arc<Sentinels>>,
    timeout: Duration,
}

impl RedisKvClient {
    /// A client for `nodes` (the first is the primary unless `sentinels` say
    /// otherwise), reading from replicas when `replica_reads`.
    pub fn new(
        nodes: Vec<Endpoint>,
        replica_reads: bool,
        sentinels: Option<Sentinels>,
        timeout: Duration,
    ) -> Self {
        RedisKvClient {
            nodes: Arc::new(nodes),
            replica_reads,
            sentinels: sentinels.map(Arc::new),
            timeout,
        }
    }
}

impl Client for RedisKvClient {
    fn open(&self, process: u64) -> Box<dyn Session> {
        let n = self.nodes.len();
        let reader = if self.replica_reads && n > 1 {
            1 + (process as usize % (n - 1))
        } else {
            0
        };
        let sentinel = self
            .sentinels
            .clone()
            .map(|s| (s, process as usize % n.max(1)));
        Box::new(RedisSession {
            nodes: self.nodes.clone(),
            conns: (0..n).map(|_| None).collect(),
            reader,
            primary: if sentinel.is_some() { None } else { Some(0) },
            sentinel,
            timeout: self.timeout,
        })
    }
}

struct RedisSession {
    nodes: Arc<Vec<Endpoint>>,
    conns: Vec<Option<Conn>>,
    reader: usize,
    /// The node taken for the primary (`None`: ask the sentinel).
    primary: Option<usize>,
    /// The sentinels and the one this process asks (its node's).
    sentinel: Option<(Arc<Sentinels>, usize)>,
    timeout: Duration,
}

/// `redis://host:port` to `host:port`.
fn addr(url: &str) -> &str {
    url.strip_prefix("redis://").unwrap_or(url)
}

impl RedisSession {
    async fn call(&mut self, node: usize, args: &[&[u8]]) -> Result<Reply, CallError> {
        if self.conns[node].is_none() {
            let conn = Conn::open(addr(&self.nodes[node].url))
                .await
                .map_err(CallError::Connect)?;
            self.conns[node] = Some(conn);
        }
        let Some(conn) = self.conns[node].as_mut() else {
            return Err(CallError::Connect("no connection".into()));
        };
        match tokio::time::timeout(self.timeout, conn.call(args)).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(e)) => {
                self.conns[node] = None;
                Err(CallError::Lost(e.to_string()))
            }
            Err(_) => {
                // The reply may still come; a fresh connection keeps replies in step.
                self.conns[node] = None;
                Err(CallError::Lost("timeout".into()))
            }
        }
    }

    /// The primary's node index: the one in use, or the sentinel's answer.
    async fn primary(&mut self) -> Result<usize, String> {
        if let Some(p) = self.primary {
            return Ok(p);
        }
        let Some((sentinels, mine)) = self.sentinel.clone() else {
            return Ok(0);
        };
        let addr = &sentinels.addrs[mine % sentinels.addrs.len().max(1)];
        let ask = async {
            let mut conn = Conn::open(addr).await?;
            conn.call(&[b"SENTINEL", b"get-master-addr-by-name", MASTER.as_bytes()])
                .await
                .map_err(|e| format!("sentinel {addr}: {e}"))
        };
        let reply = tokio::time::timeout(self.timeout, ask)
            .await
            .map_err(|_| format!("sentinel {addr} did not answer"))??;
        let text = |r: Option<&Reply>| match r {
            Some(Reply::Bulk(Some(b))) => String::from_utf8_lossy(b).to_string(),
            _ => String::new(),
        };
        let Reply::Array(items) = reply else {
            return Err(format!("sentinel {addr} answered {reply:?}"));
        };
        let at = format!("{}:{}", text(items.first()), text(items.get(1)));
        let id = sentinels
            .announced
            .get(&at)
            .ok_or_else(|| format!("sentinel {addr} names {at}, no node of this run"))?;
        let node = self
            .nodes
            .iter()
            .position(|n| &n.id == id)
            .ok_or_else(|| format!("no endpoint for node {id}"))?;
        self.primary = Some(node);
        Ok(node)
    }

    async fn attempt(&mut self, op: &Invocation) -> (Completion, Option<String>) {
        let key = op.key.clone().unwrap_or_default();
        let int = |v: &Value| v.as_i64().map(|i| i.to_string()).unwrap_or_default();
        let primary = match self.primary().await {
            Ok(p) => p,
            Err(e) => return (Completion::Fail(e), None),
        };
        let (node, result) = match op.f.as_str() {
            "read" if self.sentinel.is_some() => {
                (primary, self.call(primary, &[b"GET", key.as_bytes()]).await)
            }
            "read" => {
                let node = self.reader;
                (node, self.call(node, &[b"GET", key.as_bytes()]).await)
            }
            "write" => {
                let v = int(&op.value);
                (
                    primary,
                    self.call(primary, &[b"SET", key.as_bytes(), v.as_bytes()])
                        .await,
                )
            }
            "cas" => {
                let pair = op.value.as_array().cloned().unwrap_or_default();
                let (a, b) = (
                    int(pair.first().unwrap_or(&Value::Null)),
                    int(pair.get(1).unwrap_or(&Value::Null)),
                );
                let args: [&[u8]; 6] = [
                    b"EVAL",
                    CAS.as_bytes(),
                    b"1",
                    key.as_bytes(),
                    a.as_bytes(),
                    b.as_bytes(),
                ];
                (primary, self.call(primary, &args).await)
            }
            other => return (Completion::Fail(format!("kv has no op `{other}`")), None),
        };
        let id = Some(self.nodes[node].id.clone());
        // A replica refusing a write, or a node out of reach: ask the sentinel again.
        let refused = matches!(&result, Ok(Reply::Error(e)) if e.starts_with("READONLY"));
        if self.sentinel.is_some() && node == primary && (refused || result.is_err()) {
            self.primary = None;
        }
        let done = match result {
            Ok(Reply::Error(e)) => Completion::Fail(e),
            Ok(Reply::Bulk(None)) if op.f == "read" => Completion::Ok(Value::Null),
            Ok(Reply::Bulk(Some(bytes))) if op.f == "read" => {
                let text = String::from_utf8_lossy(&bytes).to_string();
                Completion::Ok(text.parse::<i64>().map_or(json!(text), |i| json!(i)))
            }
            Ok(Reply::Int(0)) if op.f == "cas" => Completion::Fail("precondition-failed".into()),
            Ok(_) => Completion::Ok(op.value.clone()),
            Err(CallError::Connect(e)) => Completion::Fail(e),
            // A read changes nothing, so a lost one certainly did not happen.
            Err(CallError::Lost(e)) if op.f == "read" => Completion::Fail(e),
            Err(CallError::Lost(e)) => Completion::Info(e),
        };
        (done, id)
    }
}

impl Session for RedisSession {
    fn invoke<'a>(&'a mut self, op: &'a Invocation) -> BoxFut<'a, (Completion, Option<String>)> {
        Box::pin(self.attempt(op))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn replies_of_every_kind_parse() {
        let wire = b"+OK\r\n-ERR wrong\r\n:42\r\n$3\r\nabc\r\n$-1\r\n*2\r\n:1\r\n$0\r\n\r\n";
        let mut r = BufReader::new(&wire[..]);
        assert_eq!(
            read_reply(&mut r).await.unwrap(),
            Reply::Simple("OK".into())
        );
        assert_eq!(
            read_reply(&mut r).await.unwrap(),
            Reply::Error("ERR wrong".into())
        );
        assert_eq!(read_reply(&mut r).await.unwrap(), Reply::Int(42));
        assert_eq!(
            read_reply(&mut r).await.unwrap(),
            Reply::Bulk(Some(b"abc".to_vec()))
        );
        assert_eq!(read_reply(&mut r).await.unwrap(), Reply::Bulk(None));
        assert_eq!(
            read_reply(&mut r).await.unwrap(),
            Reply::Array(vec![Reply::Int(1), Reply::Bulk(Some(Vec::new()))])
        );
        assert!(read_reply(&mut r).await.is_err(), "end of input");
        let mut bad = BufReader::new(&b"?what\r\n"[..]);
        assert!(read_reply(&mut bad).await.is_err());
        assert_eq!(encode(&[b"GET", b"k"]), b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
    }
}
