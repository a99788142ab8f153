//! Partition shapes, as grudges over node ids (Jepsen's nemesis shapes).

use std::collections::BTreeSet;

use workloads::Rng;

use super::Grudge;

/// The shapes the partition nemesis draws from; `leader` isolates the node that
/// says it leads (Jepsen's "primaries"), the others are drawn at random.
pub const SHAPES: &[&str] = &["one", "halves", "majority", "bridge", "ring", "leader"];

/// Parses `--partitions`: `all` (answered as empty), or shapes from [`SHAPES`].
pub fn parse_shapes(list: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if item == "all" {
            return Ok(Vec::new());
        }
        if !SHAPES.contains(&item) {
            return Err(format!(
                "unknown partition shape `{item}` (accepted: {}, all)",
                SHAPES.join(", ")
            ));
        }
        out.push(item.to_string());
    }
    if out.is_empty() {
        return Err("no partition shape given (accepted: all, or some of the shapes)".into());
    }
    Ok(out)
}

/// `node` cut off from all the others.
pub fn isolate(node: &str, nodes: &[String]) -> Grudge {
    let others: Vec<String> = nodes.iter().filter(|n| *n != node).cloned().collect();
    split(&[node.to_string()], &others)
}

/// Nodes in two groups never talk across the divide.
fn split(a: &[String], b: &[String]) -> Grudge {
    let mut g = Grudge::new();
    for x in a {
        g.entry(x.clone()).or_default().extend(b.iter().cloned());
    }
    for y in b {
        g.entry(y.clone()).or_default().extend(a.iter().cloned());
    }
    g
}

/// A grudge of the given shape over `nodes`, random choices from `rng`.
pub fn grudge(shape: &str, nodes: &[String], rng: &mut Rng) -> Grudge {
    let mut shuffled = nodes.to_vec();
    rng.shuffle(&mut shuffled);
    let n = shuffled.len();
    match shape {
        // One node cut off from all others.
        "one" => split(&shuffled[..1], &shuffled[1..]),
        // Random halves (the smaller half a minority).
        "halves" => split(&shuffled[..n / 2], &shuffled[n / 2..]),
        // A bare majority against the rest.
        "majority" => split(&shuffled[..n / 2 + 1], &shuffled[n / 2 + 1..]),
        // Two halves that both still see one bridge node.
        "bridge" => {
            let bridge = &shuffled[0];
            let rest = &shuffled[1..];
            let (a, b) = rest.split_at(rest.len() / 2);
            let mut g = split(a, b);
            for v in g.values_mut() {
                v.remove(bridge);
            }
            g
        }
        // Each node sees only its ring neighbours within a majority window: every
        // node is in a majority, but no two majorities agree.
        _ => {
            // Each node sees those within circular distance k, a majority window.
            let k = (n / 2).div_ceil(2);
            let mut g = Grudge::new();
            for (i, node) in shuffled.iter().enumerate() {
                let drops: BTreeSet<String> = shuffled
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| {
                        let d = i.abs_diff(*j);
                        d.min(n - d) > k
                    })
                    .map(|(_, m)| m.clone())
                    .collect();
                g.insert(node.clone(), drops);
            }
            g
        }
    }
}

/// A short description: the sides, or the cut pairs.
pub fn describe(grudge: &Grudge) -> String {
    let mut parts = Vec::new();
    for (node, drops) in grudge {
        if !drops.is_empty() {
            parts.push(format!(
                "{node}x{}",
                drops.iter().cloned().collect::<Vec<_>>().join("+")
            ));
        }
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("n{i}")).collect()
    }

    fn sees(g: &Grudge, a: &str, b: &str) -> bool {
        !g.get(a).is_some_and(|s| s.contains(b))
    }

    #[test]
    fn majority_and_one_leave_exactly_one_majority_side() {
        let mut rng = Rng::new(3);
        let g = grudge("majority", &nodes(5), &mut rng);
        let cut: usize = g.values().filter(|s| !s.is_empty()).count();
        assert_eq!(cut, 5);
        let sizes: BTreeSet<usize> = g.values().map(|s| 5 - s.len()).collect();
        assert_eq!(sizes, BTreeSet::from([2, 3]));
        let g = grudge("one", &nodes(5), &mut rng);
        assert_eq!(g.values().filter(|s| s.len() == 4).count(), 1);
    }

    #[test]
    fn bridge_node_sees_everyone_and_ring_gives_every_node_a_majority() {
        let mut rng = Rng::new(9);
        let ns = nodes(5);
        let g = grudge("bridge", &ns, &mut rng);
        let bridge: Vec<&String> = ns
            .iter()
            .filter(|n| g.get(*n).is_none_or(|s| s.is_empty()))
            .collect();
        assert_eq!(bridge.len(), 1);
        assert!(ns.iter().all(|n| sees(&g, n, bridge[0])));
        let g = grudge("ring", &ns, &mut rng);
        for n in &ns {
            let visible = ns.iter().filter(|m| sees(&g, n, m)).count();
            assert_eq!(visible, 3, "{n} sees {visible}");
        }
        // Symmetric: if a drops b, b drops a.
        for (a, drops) in &g {
            for b in drops {
                assert!(!sees(&g, b, a));
            }
        }
    }
}
