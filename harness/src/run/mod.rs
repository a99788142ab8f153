//! `harness run`, phase by phase: [`config`] (the test's one configuration),
//! [`cluster`] (start and stop any target), [`drive`] (clients, nemesis,
//! recorder, final ops), [`verdict`] (checkers in, one result object out).
//! The run is stored under the run store ([`store`]) and rendered as a report.

pub mod cluster;
pub mod config;
pub mod drive;
pub mod progress;
pub mod recorder;
pub mod store;
pub mod verdict;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use checker::Validity;
use workloads::Rng;

pub use config::{BadInput, Interrupted, TestConfig};

/// What a run produced.
pub struct RunOutcome {
    /// The merged verdict.
    pub valid: Validity,
    /// The run folder.
    pub dir: PathBuf,
}

/// Runs a whole test.
pub async fn run(cfg: TestConfig, quiet: bool) -> anyhow::Result<RunOutcome> {
    let workload = workloads::workload(&cfg.workload).map_err(BadInput)?;
    let target = cluster::validate(&cfg)?;
    let bin = target.binary(&cfg, quiet)?;

    let dir = store::new_run(&cfg.store, &cfg.workload)?;
    std::fs::write(dir.join("test.json"), serde_json::to_vec_pretty(&cfg)?)?;
    let root_rng = Rng::new(cfg.seed);

    // From here on an interrupt tears the cluster down before the process ends.
    let mut signal = Box::pin(config::interrupted());
    let mut node_args = workload.node_args();
    node_args.extend(cfg.node_args.iter().cloned());
    let cluster = tokio::select! {
        c = cluster::start(&cfg, target, &bin, &dir, &root_rng, &node_args, workload.services()) => c?,
        _ = &mut signal => bail!(Interrupted),
    };
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    // Lives until the run ends.
    let _dashboard = match &cfg.dashboard {
        Some(listen) => {
            let watched = crate::dashboard::Watched {
                nodes: cluster
                    .endpoints()
                    .into_iter()
                    .map(|e| (e.id, e.url))
                    .collect(),
                history: Some(dir.join("history.jsonl")),
            };
            let running = match crate::dashboard::start(listen, watched).await {
                Ok(r) => r,
                Err(e) => {
                    // The nodes are up: stop them before giving up.
                    let _ = cluster.teardown().await;
                    return Err(BadInput(format!("--dashboard: {e:#}")).into());
                }
            };
            if !quiet {
                println!("dashboard: http://{}/", running.addr);
            }
            Some(running)
        }
        None => None,
    };
    let driven = tokio::select! {
        r = drive::drive(&cfg, &dir, workload.as_ref(), &cluster, http, root_rng, quiet) => r,
        _ = &mut signal => Err(Interrupted.into()),
    };
    let verdict =
        driven.and_then(|d| verdict::check(&cfg, &dir, workload.as_ref(), &d, &cluster.net));
    let _ = cluster.teardown().await;
    let mut verdict = verdict?;
    // After teardown: the Docker runtime copies the node logs out only then.
    for (name, result) in target.after_teardown(&dir) {
        verdict.add(name, result);
    }
    verdict.write(&dir)?;
    store::point_latest(&cfg.store, &dir)?;
    reports::render_run(&dir).context("cannot render report.html")?;
    reports::index::render(&cfg.store).context("cannot render the store index")?;
    Ok(RunOutcome {
        valid: verdict.valid,
        dir,
    })
}
