//! A 3-node cluster on loopback with durable writes: throughput and latency for 1
//! and 64 concurrent clients (256-byte values, writes and reads separately), and
//! the time to a new leader after the old one is killed.
//!
//! Run: `cargo bench -p system --bench cluster` (`-- --seconds N` per phase).

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

struct Node {
    id: String,
    client: u16,
    args: Vec<String>,
    child: Option<Child>,
}

fn port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn spawn(args: &[String]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_faultline-node"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start faultline-node")
}

fn start(dir: &std::path::Path) -> Vec<Node> {
    let ids = ["n1", "n2", "n3"];
    let ports: Vec<(u16, u16, u16)> = ids.iter().map(|_| (port(), port(), port())).collect();
    ids.iter()
        .enumerate()
        .map(|(i, id)| {
            let mut args: Vec<String> = vec![
                "--id".into(),
                id.to_string(),
                "--data-dir".into(),
                dir.join(id).display().to_string(),
                "--client".into(),
                format!("127.0.0.1:{}", ports[i].0),
                "--peer-listen".into(),
                format!("127.0.0.1:{}", ports[i].1),
                "--admin".into(),
                format!("127.0.0.1:{}", ports[i].2),
            ];
            for (j, other) in ids.iter().enumerate() {
                if i != j {
                    args.push("--peer".into());
                    args.push(format!("{other}=127.0.0.1:{}", ports[j].1));
                }
            }
            Node {
                id: id.to_string(),
                client: ports[i].0,
                child: Some(spawn(&args)),
                args,
            }
        })
        .collect()
}

async fn leader(http: &reqwest::Client, nodes: &[Node]) -> usize {
    loop {
        for (i, n) in nodes.iter().enumerate() {
            if n.child.is_none() {
                continue;
            }
            let url = format!("http://127.0.0.1:{}/cluster/status", n.client);
            if let Ok(r) = http.get(url).send().await {
                if let Ok(s) = r.json::<Value>().await {
                    if s["role"] == "leader" {
                        return i;
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

async fn phase(http: &reqwest::Client, port: u16, clients: usize, writes: bool, seconds: f64) {
    let value = "x".repeat(256);
    let stop = Instant::now() + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let http = http.clone();
        let value = value.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u64;
            let mut i = 0u64;
            while Instant::now() < stop {
                let key = format!("k{}", (c as u64 * 7919 + i) % 1000);
                i += 1;
                let url = format!("http://127.0.0.1:{port}/kv/{key}");
                let t = Instant::now();
                let r = if writes {
                    http.put(url).json(&json!({"value": value})).send().await
                } else {
                    http.get(url).send().await
                };
                match r {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        lat.push(t.elapsed().as_secs_f64() * 1e3);
                    }
                    _ => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.unwrap();
        all.extend(l);
        errors += e;
    }
    all.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "{:<6} {:>3} clients: {:>8.0} ops/s  p50 {:>6.2} ms  p99 {:>7.2} ms  max {:>7.1} ms  ({} ok, {} errors)",
        if writes { "write" } else { "read" },
        clients,
        all.len() as f64 / seconds,
        quantile(&all, 0.5),
        quantile(&all, 0.99),
        all.last().copied().unwrap_or(f64::NAN),
        all.len(),
        errors
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let seconds: f64 = args
        .iter()
        .position(|a| a == "--seconds")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(5.0);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let mut nodes = start(dir.path());
        let http = reqwest::Client::builder().pool_max_idle_per_host(128).build().unwrap();
        let l = leader(&http, &nodes).await;
        let port = nodes[l].client;
        println!("3-node cluster on loopback, durable writes (fsync per batch), 256-byte values, {seconds} s per phase");
        for clients in [1, 64] {
            phase(&http, port, clients, true, seconds).await;
            phase(&http, port, clients, false, seconds).await;
        }
        // Failover: kill -9 the leader, time until another node says it leads.
        let mut times = Vec::new();
        for _ in 0..7 {
            let l = leader(&http, &nodes).await;
            let http2 = Arc::new(http.clone());
            if let Some(mut c) = nodes[l].child.take() {
                let t = Instant::now();
                let _ = c.kill();
                let _ = c.wait();
                let _ = leader(&http2, &nodes).await;
                times.push(t.elapsed().as_secs_f64() * 1e3);
            }
            nodes[l].child = Some(spawn(&nodes[l].args));
            tokio::time::sleep(Duration::from_millis(1000)).await;
        }
        times.sort_by(|a, b| a.partial_cmp(b).unwrap());
        println!(
            "new leader after kill -9 of the old: median {:.0} ms, min {:.0}, max {:.0} ({} trials)",
            quantile(&times, 0.5),
            times[0],
            times[times.len() - 1],
            times.len()
        );
        for n in &mut nodes {
            if let Some(mut c) = n.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
            let _ = &n.id;
        }
    });
}
