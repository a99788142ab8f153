//! Transactional anomalies in the report: listed by kind, each with its
//! transactions, its argument step by step and, for a cycle, a drawing of the
//! transactions and their labelled dependency edges.

use serde_json::Value;

use crate::html::escape;

/// The section for every checker result that carries `anomalies` (empty if none).
pub(crate) fn section(results: &Value) -> String {
    let mut html = String::new();
    let Some(checkers) = results["checkers"].as_object() else {
        return html;
    };
    for (name, result) in checkers {
        let Some(by_kind) = result["anomalies"].as_object().filter(|m| !m.is_empty()) else {
            continue;
        };
        html.push_str(&format!(
            "<h2>Anomalies ({})</h2><p>Weakest models ruled out: <b>{}</b>{}</p>",
            escape(name),
            escape(&names(&result["not"])),
            match names(&result["also_not"]) {
                n if n.is_empty() => String::new(),
                n => format!("; and so also {}", escape(&n)),
            }
        ));
        for (kind, list) in by_kind {
            let count = result["anomaly_counts"][kind].as_u64().unwrap_or(0);
            let shown = list.as_array().map_or(0, Vec::len);
            html.push_str(&format!(
                "<h3>{} — {count} found{}</h3>",
                escape(kind),
                if (shown as u64) < count {
                    format!(", {shown} shown")
                } else {
                    String::new()
                }
            ));
            for a in list.as_array().into_iter().flatten() {
                html.push_str(&anomaly(a));
            }
        }
    }
    html
}

fn names(v: &Value) -> String {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

/// One anomaly: drawing (for a cycle), transactions, steps.
fn anomaly(a: &Value) -> String {
    let mut html = String::from("<div class=\"anomaly\">");
    if let Some(cycle) = a["cycle"].as_array().filter(|c| !c.is_empty()) {
        html.push_str(&draw(cycle));
    }
    html.push_str("<table><tr><th>txn</th><th>process</th><th>status</th><th>lines</th><th>micro-ops</th></tr>");
    for t in a["txns"].as_array().into_iter().flatten() {
        html.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}–{}</td><td><code>{}</code></td></tr>",
            escape(t["name"].as_str().unwrap_or("?")),
            t["process"],
            escape(t["status"].as_str().unwrap_or("?")),
            t["line"],
            t["ret_line"]
                .as_u64()
                .map_or("end".to_string(), |l| l.to_string()),
            escape(t["ops"].as_str().unwrap_or(""))
        ));
    }
    html.push_str("</table><ol>");
    for s in a["steps"].as_array().into_iter().flatten() {
        html.push_str(&format!("<li>{}</li>", escape(s.as_str().unwrap_or(""))));
    }
    html.push_str("</ol></div>");
    html
}

/// The cycle's transactions on a circle, each edge a curved arrow with its kind.
fn draw(cycle: &[Value]) -> String {
    let mut nodes: Vec<&str> = Vec::new();
    for e in cycle {
        for end in ["from", "to"] {
            let n = e[end].as_str().unwrap_or("?");
            if !nodes.contains(&n) {
                nodes.push(n);
            }
        }
    }
    let (w, h, r) = (360.0_f64, 260.0_f64, 90.0_f64);
    let (cx, cy) = (w / 2.0, h / 2.0);
    let at = |i: usize| {
        let angle = -std::f64::consts::FRAC_PI_2
            + 2.0 * std::f64::consts::PI * i as f64 / nodes.len() as f64;
        (cx + r * angle.cos(), cy + r * angle.sin())
    };
    let mut svg = format!(
        "<svg class=\"cycle\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"dependency cycle\">\
         <defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto-start-reverse\">\
         <path d=\"M0,0 L10,5 L0,10 z\" fill=\"#444\"/></marker></defs>"
    );
    for e in cycle {
        let index = |end: &str| {
            nodes
                .iter()
                .position(|n| *n == e[end].as_str().unwrap_or("?"))
                .unwrap_or(0)
        };
        let ((x1, y1), (x2, y2)) = (at(index("from")), at(index("to")));
        // Stop short of the node circles; bend to one side so opposite edges part.
        let (dx, dy) = (x2 - x1, y2 - y1);
        let len = (dx * dx + dy * dy).sqrt().max(1.0);
        let (ux, uy) = (dx / len, dy / len);
        let (sx, sy, ex, ey) = (
            x1 + ux * 22.0,
            y1 + uy * 22.0,
            x2 - ux * 22.0,
            y2 - uy * 22.0,
        );
        let (mx, my) = ((sx + ex) / 2.0 - uy * 30.0, (sy + ey) / 2.0 + ux * 30.0);
        let kind = e["kind"].as_str().unwrap_or("?");
        let colour = match kind {
            "ww" => "#1f77b4",
            "wr" => "#2ca02c",
            "rw" => "#d62728",
            "process" => "#9467bd",
            _ => "#7f7f7f",
        };
        svg.push_str(&format!(
            "<path d=\"M{sx:.1},{sy:.1} Q{mx:.1},{my:.1} {ex:.1},{ey:.1}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" marker-end=\"url(#arrow)\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\" text-anchor=\"middle\" fill=\"{colour}\">{}</text>",
            (sx + ex) / 4.0 + mx / 2.0,
            (sy + ey) / 4.0 + my / 2.0 - 4.0,
            escape(kind)
        ));
    }
    for (i, n) in nodes.iter().enumerate() {
        let (x, y) = at(i);
        svg.push_str(&format!(
            "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"20\" fill=\"#fff\" stroke=\"#333\" stroke-width=\"1.5\"/>\
             <text x=\"{x:.1}\" y=\"{:.1}\" font-size=\"13\" text-anchor=\"middle\">{}</text>",
            y + 4.5,
            escape(n)
        ));
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use checker::txn::{self, Kind, TxnOptions};

    #[test]
    fn a_cycle_is_drawn_with_its_edges_and_explained() {
        let text = r#"{"type":"invoke","process":0,"f":"txn","value":[["append",1,1],["append",2,1]]}
{"type":"ok","process":0,"f":"txn","value":[["append",1,1],["append",2,1]]}
{"type":"invoke","process":1,"f":"txn","value":[["r",1,null],["r",2,null]]}
{"type":"ok","process":1,"f":"txn","value":[["r",1,[]],["r",2,[1]]]}
"#;
        let h = checker::format::jsonl::read(text.as_bytes()).unwrap();
        let t = txn::read(&h, Kind::ListAppend).unwrap();
        let r = txn::check(&t, &TxnOptions::default()).unwrap();
        let results = serde_json::json!({"checkers": {"txn": r.to_value()}});
        let html = section(&results);
        assert!(html.contains("<h3>G-single — 1 found</h3>"), "{html}");
        assert!(html.contains("<svg class=\"cycle\""));
        // Both edges of the two-transaction cycle, each labelled.
        assert_eq!(html.matches("marker-end=\"url(#arrow)\"").count(), 2);
        assert!(html.contains(">rw</text>") && html.contains(">wr</text>"));
        assert!(
            html.contains("without T2&#39;s committed append of 1")
                || html.contains("without T2's committed append of 1"),
            "{html}"
        );
        assert!(
            html.contains("Weakest models ruled out: <b>repeatable-read, snapshot-isolation</b>")
        );
        // Nothing to show, nothing shown.
        assert!(section(&serde_json::json!({"checkers": {"txn": {"anomalies": {}}}})).is_empty());
    }
}
