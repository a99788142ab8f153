//! The panel of a Maelstrom run: the network's message counts (Maelstrom's
//! `net` checker), the protocol problems the router saw, set-full's
//! latencies, and links to the Lamport diagrams.

use crate::data::Run;
use crate::html::escape;

/// The panel, when the run was routed by the Maelstrom router.
pub fn section(run: &Run, diagrams: &[String]) -> Option<String> {
    let net = &run.results["checkers"]["net"];
    if net.is_null() && diagrams.is_empty() {
        return None;
    }
    let mut out = String::from("<h2>Network</h2>");
    if !net.is_null() {
        out.push_str(
            "<table><tr><th>messages</th><th>sent</th><th>received</th><th>per operation</th></tr>",
        );
        for group in ["all", "servers", "clients"] {
            let g = &net[group];
            out.push_str(&format!(
                "<tr><td>{group}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                g["send_count"], g["recv_count"], g["msgs_per_op"]
            ));
        }
        out.push_str("</table>");
        out.push_str("<p class=\"note\">Servers are nodes and services talking among themselves; clients are the workload's requests and their replies. Dropped by faults: ");
        out.push_str(&format!("{}.</p>", net["dropped"]));
    }
    let set = &run.results["checkers"]["set-full"];
    if !set.is_null() {
        out.push_str("<table><tr><th>latency ms</th><th>min</th><th>p50</th><th>p95</th><th>p99</th><th>max</th></tr>");
        for (name, q) in [
            ("stable", &set["stable_latency_ms"]),
            ("lost", &set["lost_latency_ms"]),
        ] {
            if q.is_null() {
                continue;
            }
            out.push_str(&format!(
                "<tr><td>{name}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                q["0"], q["0.5"], q["0.95"], q["0.99"], q["1"]
            ));
        }
        out.push_str("</table>");
    }
    let protocol = &run.results["checkers"]["protocol"];
    if let Some(problems) = protocol["problems"].as_array().filter(|p| !p.is_empty()) {
        out.push_str("<h3>Protocol problems</h3><table><tr><th>node</th><th>at s</th><th>what</th><th>line</th></tr>");
        for p in problems {
            out.push_str(&format!(
                "<tr><td>{}</td><td>{:.2}</td><td>{}</td><td><code>{}</code></td></tr>",
                escape(p["node"].as_str().unwrap_or("")),
                p["at_s"].as_f64().unwrap_or(0.0),
                escape(p["what"].as_str().unwrap_or("")),
                escape(p["line"].as_str().unwrap_or(""))
            ));
        }
        out.push_str("</table>");
    }
    if let Some(first) = diagrams.first() {
        out.push_str(&format!(
            "<p><a href=\"{}\">Lamport diagram of the messages</a> ({} windows over the run; a sample of at most 300 messages per second is kept).</p>",
            escape(first),
            diagrams.len()
        ));
    }
    Some(out)
}
