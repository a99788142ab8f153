//! Packet faults inside container network namespaces: iptables rules applied from
//! the host with `nsenter -t PID -n`, so the image needs nothing. Every rule lives
//! in a chain of ours, `FAULTLINE`, hooked into `OUTPUT` of the sending node:
//! a partition drops the sender's packets to the link's proxy port and to the
//! receiver's own address; loss drops a random share of them with the
//! `statistic` match. A restarted container has a fresh namespace, so the rules
//! in force are applied again when it comes back.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Mutex;

use anyhow::{bail, Context};

/// Our chain's name in every namespace.
pub const CHAIN: &str = "FAULTLINE";

/// One node as the filter sees it.
#[derive(Clone, Debug)]
struct Attached {
    pid: u32,
    ip: String,
    hooked: bool,
}

/// Delay shape for netem, where the kernel has it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Netem {
    /// Base delay, ms.
    pub delay_ms: u64,
    /// Jitter, ms.
    pub jitter_ms: u64,
    /// Share of packets sent twice.
    pub duplicate: f64,
}

impl Netem {
    /// `tc` arguments that put this shape on `eth0` (or take it off when empty).
    pub fn tc_args(&self) -> Vec<String> {
        if *self == Netem::default() {
            return ["qdisc", "del", "dev", "eth0", "root"]
                .map(String::from)
                .to_vec();
        }
        let mut a: Vec<String> = ["qdisc", "replace", "dev", "eth0", "root", "netem", "delay"]
            .map(String::from)
            .to_vec();
        a.push(format!("{}ms", self.delay_ms));
        if self.jitter_ms > 0 {
            a.push(format!("{}ms", self.jitter_ms));
        }
        if self.duplicate > 0.0 {
            a.push("duplicate".into());
            a.push(format!("{:.2}%", self.duplicate * 100.0));
        }
        a
    }
}

#[derive(Default)]
struct State {
    nodes: BTreeMap<String, Attached>,
    /// sender → receivers it cannot reach.
    cut: BTreeMap<String, BTreeSet<String>>,
    loss: f64,
    /// Drops counted by rules since replaced or gone with their namespace.
    dropped_before: u64,
    /// Whether the kernel has the netem qdisc: probed once in a container.
    netem: Option<bool>,
    delay: Netem,
}

/// iptables rules for a cluster whose links go through proxies on `gateway`.
pub struct PacketFilter {
    /// The address the link proxies listen on.
    pub gateway: String,
    /// (from, to) → proxy port on the gateway.
    ports: BTreeMap<(String, String), u16>,
    state: Mutex<State>,
}

/// Runs `iptables-restore --noflush` (or `iptables` with `args`) in `pid`'s
/// network namespace.
fn in_netns(pid: u32, program: &str, args: &[&str], stdin: Option<&str>) -> anyhow::Result<String> {
    let mut child = Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-n", program])
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run nsenter (util-linux) for iptables; the Docker runtime needs root")?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "nsenter -t {pid} -n {program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

impl PacketFilter {
    /// A filter with no node attached and no fault in force.
    pub fn new(gateway: String, ports: BTreeMap<(String, String), u16>) -> Self {
        PacketFilter {
            gateway,
            ports,
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The `iptables-restore` input that puts `id`'s rules in force.
    fn rules(&self, id: &str, st: &State, hook: bool) -> String {
        let mut s = format!("*filter\n:{CHAIN} - [0:0]\n");
        if hook {
            s.push_str(&format!("-I OUTPUT 1 -j {CHAIN}\n"));
        }
        if let Some(cut) = st.cut.get(id) {
            for to in cut {
                if let Some(port) = self.ports.get(&(id.to_string(), to.clone())) {
                    s.push_str(&format!(
                        "-A {CHAIN} -p tcp -d {} --dport {port} -j DROP\n",
                        self.gateway
                    ));
                }
                if let Some(peer) = st.nodes.get(to) {
                    s.push_str(&format!("-A {CHAIN} -d {} -j DROP\n", peer.ip));
                }
            }
        }
        if st.loss > 0.0 {
            for ((from, _), port) in &self.ports {
                if from == id {
                    s.push_str(&format!(
                        "-A {CHAIN} -p tcp -d {} --dport {port} -m statistic --mode random --probability {:.4} -j DROP\n",
                        self.gateway, st.loss
                    ));
                }
            }
        }
        s.push_str("COMMIT\n");
        s
    }

    fn apply(&self, st: &mut State, id: &str) -> anyhow::Result<()> {
        let Some(node) = st.nodes.get(id).cloned() else {
            return Ok(());
        };
        if node.hooked {
            // Replacing the rules resets their counters: keep what they counted.
            st.dropped_before += count_drops(node.pid).unwrap_or(0);
        }
        let text = self.rules(id, st, !node.hooked);
        in_netns(node.pid, "iptables-restore", &["--noflush"], Some(&text))
            .with_context(|| format!("iptables rules for node {id}"))?;
        if let Some(n) = st.nodes.get_mut(id) {
            n.hooked = true;
        }
        if st.netem == Some(true) && (st.delay != Netem::default() || !node.hooked) {
            let args = st.delay.tc_args();
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let r = in_netns(node.pid, "tc", &args, None);
            // Deleting a qdisc that is not there fails harmlessly.
            if st.delay != Netem::default() {
                r.with_context(|| format!("netem on node {id}"))?;
            }
        }
        Ok(())
    }

    /// Whether delay and duplication can be done by netem in the containers'
    /// namespaces (probed once, in the first attached container).
    pub fn has_netem(&self) -> bool {
        let mut st = self.lock();
        if let Some(known) = st.netem {
            return known;
        }
        let Some(pid) = st.nodes.values().next().map(|n| n.pid) else {
            return false;
        };
        let add = [
            "qdisc", "add", "dev", "eth0", "root", "netem", "delay", "0ms",
        ];
        let ok = in_netns(pid, "tc", &add, None).is_ok();
        if ok {
            let _ = in_netns(pid, "tc", &["qdisc", "del", "dev", "eth0", "root"], None);
        }
        st.netem = Some(ok);
        ok
    }

    /// Delays (and duplicates) every packet leaving every node with netem.
    pub fn set_delay(&self, delay: Netem) -> anyhow::Result<()> {
        let mut st = self.lock();
        st.delay = delay;
        let ids: Vec<String> = st.nodes.keys().cloned().collect();
        for id in ids {
            let Some(pid) = st.nodes.get(&id).map(|n| n.pid) else {
                continue;
            };
            let args = delay.tc_args();
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let r = in_netns(pid, "tc", &args, None);
            if delay != Netem::default() {
                r.with_context(|| format!("netem on node {id}"))?;
            }
        }
        Ok(())
    }

    fn apply_all(&self, st: &mut State) -> anyhow::Result<()> {
        let ids: Vec<String> = st.nodes.keys().cloned().collect();
        for id in ids {
            self.apply(st, &id)?;
        }
        Ok(())
    }

    /// A (re)started node: its namespace is new, so the rules in force go in again.
    pub fn attach(&self, id: &str, pid: u32, ip: String) -> anyhow::Result<()> {
        let mut st = self.lock();
        st.nodes.insert(
            id.to_string(),
            Attached {
                pid,
                ip,
                hooked: false,
            },
        );
        // Other nodes' rules name this node's address, which may have changed.
        self.apply_all(&mut st)
    }

    /// A node about to be killed: its namespace goes with it.
    pub fn detach(&self, id: &str) {
        let mut st = self.lock();
        if let Some(node) = st.nodes.remove(id) {
            st.dropped_before += count_drops(node.pid).unwrap_or(0);
        }
    }

    /// Cuts `sender → receiver` for every pair in `cut` and restores the rest.
    pub fn set_cut(&self, cut: BTreeMap<String, BTreeSet<String>>) -> anyhow::Result<()> {
        let mut st = self.lock();
        st.cut = cut;
        self.apply_all(&mut st)
    }

    /// Drops a share `loss` of every link's packets (0 for none).
    pub fn set_loss(&self, loss: f64) -> anyhow::Result<()> {
        let mut st = self.lock();
        st.loss = loss;
        self.apply_all(&mut st)
    }

    /// Packets dropped by our rules since the filter was made.
    pub fn dropped_total(&self) -> u64 {
        let st = self.lock();
        st.dropped_before
            + st.nodes
                .values()
                .filter_map(|n| count_drops(n.pid).ok())
                .sum::<u64>()
    }
}

/// The packet counts of every rule in our chain in `pid`'s namespace.
fn count_drops(pid: u32) -> anyhow::Result<u64> {
    let out = in_netns(
        pid,
        "iptables",
        &["-w", "-L", CHAIN, "-v", "-x", "-n"],
        None,
    )?;
    Ok(out
        .lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().next()?.parse::<u64>().ok())
        .sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter() -> PacketFilter {
        let mut ports = BTreeMap::new();
        ports.insert(("n1".to_string(), "n2".to_string()), 4001);
        ports.insert(("n2".to_string(), "n1".to_string()), 4002);
        PacketFilter::new("172.30.0.1".into(), ports)
    }

    #[test]
    fn a_cut_drops_the_link_port_and_the_peer_address() {
        let f = filter();
        let mut st = State::default();
        st.nodes.insert(
            "n2".into(),
            Attached {
                pid: 1,
                ip: "172.30.0.3".into(),
                hooked: true,
            },
        );
        st.cut
            .insert("n1".into(), ["n2".to_string()].into_iter().collect());
        let r = f.rules("n1", &st, true);
        assert!(r.contains("-I OUTPUT 1 -j FAULTLINE"));
        assert!(r.contains("-A FAULTLINE -p tcp -d 172.30.0.1 --dport 4001 -j DROP"));
        assert!(r.contains("-A FAULTLINE -d 172.30.0.3 -j DROP"));
        // The other direction is untouched.
        assert!(!f.rules("n2", &st, false).contains("DROP"));
    }

    #[test]
    fn netem_arguments() {
        let n = Netem {
            delay_ms: 20,
            jitter_ms: 5,
            duplicate: 0.05,
        };
        assert_eq!(
            n.tc_args().join(" "),
            "qdisc replace dev eth0 root netem delay 20ms 5ms duplicate 5.00%"
        );
        assert_eq!(
            Netem::default().tc_args().join(" "),
            "qdisc del dev eth0 root"
        );
    }

    #[test]
    fn loss_applies_to_every_outgoing_link() {
        let f = filter();
        let st = State {
            loss: 0.25,
            ..State::default()
        };
        let r = f.rules("n2", &st, false);
        assert!(r.contains("--dport 4002 -m statistic --mode random --probability 0.2500 -j DROP"));
        assert!(!r.contains("4001"));
        assert!(!r.contains("-I OUTPUT"));
    }
}
