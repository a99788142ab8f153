//! The counterexample of an invalid linearizability result, drawn: the last ops of
//! the longest linearizable prefix, the op that cannot be linearized, and the
//! concurrent ops, as bars on a time axis, with the model state after the prefix.

use serde_json::Value;

use crate::html::escape;

/// How many prefix ops to draw before the failing op.
const PREFIX_TAIL: usize = 8;

fn bar_label(op: &Value) -> String {
    let out = match op.get("output") {
        Some(v) => format!(" → {v}"),
        None => " → ? (indeterminate)".to_string(),
    };
    format!(
        "p{} {} {}{} (line {})",
        op["process"],
        op["f"].as_str().unwrap_or("?"),
        op["value"],
        out,
        op["invoke_line"]
    )
}

/// An SVG of the ops around the violation, plus a text summary, for one failure.
pub fn section(failure: &Value) -> String {
    let prefix: Vec<&Value> = failure["prefix"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let tail = &prefix[prefix.len().saturating_sub(PREFIX_TAIL)..];
    let pending: Vec<&Value> = failure["pending"]
        .as_array()
        .map(|a| a.iter().take(8).collect())
        .unwrap_or_default();
    let op = &failure["op"];
    let mut rows: Vec<(&Value, &str)> = tail.iter().map(|v| (*v, "prefix")).collect();
    rows.push((op, "blocked"));
    rows.extend(pending.iter().map(|v| (*v, "pending")));
    let time = |v: &Value, k: &str| v.get(k).and_then(Value::as_f64);
    let starts: Vec<f64> = rows
        .iter()
        .filter_map(|(v, _)| time(v, "invoke_time"))
        .collect();
    let ends: Vec<f64> = rows
        .iter()
        .filter_map(|(v, _)| time(v, "complete_time").or(time(v, "invoke_time")))
        .collect();
    let key = failure
        .get("key")
        .map(|k| format!(" on key {}", escape(&k.to_string())))
        .unwrap_or_default();
    let mut html = match failure.get("reason").and_then(Value::as_str) {
        Some(reason) => format!(
            "<div class=\"counterexample\"><h3>Cannot linearize{key}: {}</h3><p>Refuted without searching: {}.</p>",
            escape(&bar_label(op)),
            escape(reason)
        ),
        None => format!(
            "<div class=\"counterexample\"><h3>Cannot linearize{key}: {}</h3><p>After the longest linearizable prefix ({} ops) the model state is <code>{}</code>; the op in red completed before any order could place it, and none of the concurrent ops (grey) fits next.</p>",
            escape(&bar_label(op)),
            prefix.len(),
            escape(&failure["state"].to_string())
        ),
    };
    if let (Some(t0), Some(t1)) = (
        starts.iter().copied().reduce(f64::min),
        ends.iter()
            .copied()
            .chain(starts.iter().copied())
            .reduce(f64::max),
    ) {
        let (w, row_h, left) = (940.0, 22.0, 330.0);
        let span = (t1 - t0).max(1.0);
        let x = |t: f64| left + (t - t0) / span * (w - left - 20.0);
        let height = rows.len() as f64 * row_h + 30.0;
        html.push_str(&format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{height}\">"
        ));
        for (i, (v, role)) in rows.iter().enumerate() {
            let y = i as f64 * row_h + 4.0;
            let colour = match *role {
                "blocked" => "#c83232",
                "pending" => "#999999",
                _ => "#2e8b57",
            };
            let s = time(v, "invoke_time").unwrap_or(t0);
            let e = time(v, "complete_time").unwrap_or(t1);
            let (x0, x1) = (x(s), x(e).max(x(s) + 3.0));
            html.push_str(&format!(
                "<text x=\"4\" y=\"{:.1}\" font-size=\"11\" fill=\"{colour}\">{}</text><rect x=\"{x0:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{colour}\" opacity=\"0.8\"/>",
                y + 13.0,
                escape(&format!("{} {}", role, bar_label(v))),
                x1 - x0,
                row_h - 6.0
            ));
        }
        html.push_str(&format!(
            "<text x=\"{left}\" y=\"{:.1}\" font-size=\"11\">{:.3} s</text><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\">{:.3} s</text></svg>",
            height - 6.0,
            t0 / 1e9,
            w - 20.0,
            height - 6.0,
            t1 / 1e9
        ));
    }
    html.push_str("<details><summary>The whole prefix, in linearization order</summary><ol>");
    for v in &prefix {
        html.push_str(&format!("<li>{}</li>", escape(&bar_label(v))));
    }
    html.push_str("</ol></details></div>");
    html
}
