//! A partition between two containers really drops their packets, and healing
//! lets them through again. Needs a Docker engine, iptables and root; runs when
//! `FAULTLINE_DOCKER_TESTS=1` (scripts/test sets it when `docker info` answers).

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use futures_util::FutureExt;

use super::*;
use crate::runtime::ports::Reserved;

/// Whether a TCP connection from inside `pid`'s namespace to `addr` (ip:port)
/// opens within a second.
fn connects(pid: u32, addr: &str) -> bool {
    let (ip, port) = addr.rsplit_once(':').unwrap();
    Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-n", "timeout", "1", "bash", "-c"])
        .arg(format!("exec 3<>/dev/tcp/{ip}/{port}"))
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_drops_packets_between_containers_and_healing_restores_them() {
    if std::env::var("FAULTLINE_DOCKER_TESTS").as_deref() != Ok("1") {
        eprintln!("skipped: set FAULTLINE_DOCKER_TESTS=1 with a Docker engine (scripts/test does)");
        return;
    }
    // This is the only test in the crate that talks to Docker; testcontainers
    // reads DOCKER_HOST when it first connects.
    std::env::set_var("DOCKER_HOST", format!("unix://{}", shim_socket().display()));
    let bin = tokio::task::spawn_blocking(|| image::static_binary(None, true))
        .await
        .unwrap()
        .expect("static node binary");
    let run_dir = tempfile::tempdir().unwrap();
    let mut reserved = Reserved::new();
    let plans = ["n1", "n2"]
        .iter()
        .map(|id| DockerPlan {
            id: id.to_string(),
            client: reserved.take().unwrap(),
            peer: reserved.take().unwrap(),
            admin: reserved.take().unwrap(),
        })
        .collect();
    reserved.release();
    let (mut rt, net) = DockerRuntime::create(
        &run_dir.path().join("partition-test"),
        &bin,
        plans,
        &[],
        &[],
        &Rng::new(1),
    )
    .await
    .expect("docker runtime");
    rt.start("n1").await.unwrap();
    rt.start("n2").await.unwrap();
    let c1 = rt.container_id("n1").unwrap();
    let c2 = rt.container_id("n2").unwrap();
    let (pid1, _) = rt.pid_and_ip(&c1).await.unwrap();
    let (pid2, ip2) = rt.pid_and_ip(&c2).await.unwrap();
    let gateway = rt.filter.gateway.clone();
    let link = format!("{gateway}:{}", net.port("n1", "n2").unwrap());
    let back = format!("{gateway}:{}", net.port("n2", "n1").unwrap());
    let direct = format!("{ip2}:{PEER_PORT}");

    let outcome = async {
        assert!(
            connects(pid1, &link),
            "n1 reaches n2's link before the partition"
        );
        assert!(
            connects(pid1, &direct),
            "n1 reaches n2 directly before the partition"
        );
        // n2 drops n1: n1's packets towards n2 go nowhere, the other way works.
        let mut grudge: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        grudge.insert("n2".into(), ["n1".to_string()].into_iter().collect());
        net.partition(&grudge).unwrap();
        assert!(
            !connects(pid1, &link),
            "n1 still reaches n2's link while cut off"
        );
        assert!(
            !connects(pid1, &direct),
            "n1 still reaches n2 directly while cut off"
        );
        assert!(connects(pid2, &back), "the other direction was cut too");
        let dropped = net.packets_dropped().unwrap();
        assert!(dropped > 0, "no packet was dropped by the rules");
        net.heal().unwrap();
        assert!(connects(pid1, &link), "n1 does not reach n2 after healing");
        assert!(
            connects(pid1, &direct),
            "n1 does not reach n2 directly after healing"
        );
        // A restarted container gets a fresh namespace; the rules follow it.
        net.partition(&grudge).unwrap();
        rt.kill("n1").await.unwrap();
        rt.start("n1").await.unwrap();
        let (pid1, _) = rt
            .pid_and_ip(&rt.container_id("n1").unwrap())
            .await
            .unwrap();
        assert!(
            !connects(pid1, &link),
            "the partition did not survive a restart"
        );
        net.heal().unwrap();
        assert!(
            connects(pid1, &link),
            "n1 does not reach n2 after the restart and heal"
        );
    };
    // Tear down whatever happened, then report.
    let result = std::panic::AssertUnwindSafe(outcome).catch_unwind().await;
    rt.teardown().await.unwrap();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}
