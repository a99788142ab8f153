//! `harness bench --mesh`: what a hop through the mesh costs. One cluster
//! with the mesh workload's service instances; one client sends requests one
//! after another straight to an instance, then to it through the link proxy
//! the sidecar's tries cross, then through a node's sidecar with its circuit
//! breakers, then without them. Prints and stores p50 and p99 of each and
//! what the sidecar adds to the direct call through the proxy.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use serde_json::{json, Value};
use tokio::time::Instant;
use workloads::Rng;

use super::bench::{config, new_bench_dir, store_bench, BenchPlan};

/// Requests sent before measuring, so connections are open and warm.
const WARMUP: usize = 200;

/// Measures the three ways to `api1` for `plan.time_limit` seconds each.
pub async fn mesh_hops(plan: &BenchPlan) -> anyhow::Result<PathBuf> {
    let out = new_bench_dir(plan)?;
    let mut cfg = config(plan, crate::targets::DEFAULT, 1);
    cfg.workload = "mesh".into();
    let workload = workloads::workload("mesh").map_err(anyhow::Error::msg)?;
    let target = crate::run::cluster::validate(&cfg)?;
    let bin = target.binary(&cfg, true)?;
    let dir = out.join("cluster");
    std::fs::create_dir_all(&dir)?;
    let cluster = crate::run::cluster::start(
        &cfg,
        target,
        &bin,
        &dir,
        &Rng::new(plan.seed),
        &workload.node_args(),
        workload.services(),
    )
    .await?;
    let measured = measure(plan, &cfg, &cluster).await;
    let _ = cluster.teardown().await;
    let rows = measured?;
    let result = json!({"mesh": rows, "time_limit": plan.time_limit, "nodes": plan.nodes});
    store_bench(&out, &result, &render(&result))?;
    Ok(out)
}

async fn measure(
    plan: &BenchPlan,
    cfg: &crate::run::TestConfig,
    cluster: &crate::run::cluster::Cluster,
) -> anyhow::Result<Vec<Value>> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    cluster
        .target
        .ready(cfg, &http, &cluster.nodes, &cluster.net)
        .await?;
    let instance = cluster
        .instances
        .first()
        .context("the mesh workload started no instance")?
        .client_url
        .clone();
    let sidecar = cluster.nodes[0].client_url.clone();
    let per = Duration::from_secs_f64(plan.time_limit);
    let mut rows = Vec::new();
    eprintln!("bench: direct to the instance for {} s", plan.time_limit);
    let alone = timed(&http, &format!("{instance}/work/k?ms=0"), per).await?;
    rows.push(row("direct", &alone, None));
    // The sidecar reaches the instance through the harness's link proxy (the
    // one partitions cut): the baseline is a direct call through it too.
    let proxy = cluster
        .net
        .port(&cluster.nodes[0].id, &cluster.instances[0].id)
        .context("no link proxy from the first node to the first instance")?;
    eprintln!(
        "bench: direct through the link proxy for {} s",
        plan.time_limit
    );
    let direct = timed(&http, &format!("http://127.0.0.1:{proxy}/work/k?ms=0"), per).await?;
    rows.push(row("direct, through the link proxy", &direct, None));
    // Only api1 behind the sidecar is the same instance as the direct calls.
    let through = format!("{sidecar}/mesh/api/work/k?ms=0");
    for (name, breakers) in [
        ("sidecar, breakers on", true),
        ("sidecar, breakers off", false),
    ] {
        let mut config = workloads::mesh::mesh_config();
        config["circuit_breaker"] = json!(breakers);
        config["balancer"] = json!("consistent-hash");
        let r = http
            .put(format!("{sidecar}/mesh/config/api"))
            .json(&config)
            .send()
            .await?;
        anyhow::ensure!(
            r.status().is_success(),
            "configuring the sidecar: {}",
            r.status()
        );
        eprintln!("bench: {name} for {} s", plan.time_limit);
        let got = timed(&http, &through, per).await?;
        rows.push(row(name, &got, Some(&direct)));
    }
    Ok(rows)
}

/// Sends GETs to `url` one after another for `per`; the latencies in µs.
async fn timed(http: &reqwest::Client, url: &str, per: Duration) -> anyhow::Result<Vec<f64>> {
    for _ in 0..WARMUP {
        http.get(url).header("x-mesh-key", "k").send().await?;
    }
    let mut took = Vec::new();
    let end = Instant::now() + per;
    while Instant::now() < end {
        let t = Instant::now();
        let r = http.get(url).header("x-mesh-key", "k").send().await?;
        let ok = r.status().is_success();
        r.bytes().await?;
        if ok {
            took.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    took.sort_by(f64::total_cmp);
    Ok(took)
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn row(name: &str, took: &[f64], direct: Option<&[f64]>) -> Value {
    let (p50, p99) = (quantile(took, 0.5), quantile(took, 0.99));
    let added = direct.map(|d| (p50 - quantile(d, 0.5), p99 - quantile(d, 0.99)));
    json!({"path": name, "requests": took.len(), "p50_us": p50.round(), "p99_us": p99.round(),
        "added_p50_us": added.map(|a| a.0.round()), "added_p99_us": added.map(|a| a.1.round())})
}

/// The table of a result.
pub fn render(result: &Value) -> String {
    let mut s = String::from(
        "| path | requests | p50 µs | p99 µs | added p50 µs | added p99 µs |\n|---|---|---|---|---|---|\n",
    );
    for r in result["mesh"].as_array().into_iter().flatten() {
        let num = |v: &Value| v.as_f64().map_or("-".to_string(), |x| format!("{x:.0}"));
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            r["path"].as_str().unwrap_or("?"),
            r["requests"],
            num(&r["p50_us"]),
            num(&r["p99_us"]),
            num(&r["added_p50_us"]),
            num(&r["added_p99_us"]),
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_give_quantiles_and_what_the_hop_adds() {
        let direct: Vec<f64> = (1..=100).map(|x| x as f64).collect();
        let through: Vec<f64> = direct.iter().map(|x| x + 50.0).collect();
        let r = row("sidecar", &through, Some(&direct));
        assert_eq!(
            (r["p50_us"].as_f64(), r["p99_us"].as_f64()),
            (Some(101.0), Some(149.0))
        );
        assert_eq!(r["added_p50_us"].as_f64(), Some(50.0));
        let table = render(&json!({"mesh": [row("direct", &direct, None), r]}));
        assert!(
            table.contains("| direct | 100 | 51 | 99 | - | - |"),
            "{table}"
        );
        assert!(
            table.contains("| sidecar | 100 | 101 | 149 | 50 | 50 |"),
            "{table}"
        );
    }
}
