//! The bench page (`bench.html` beside `bench.json`): throughput against the
//! number of clients, p50 and p99 of each operation against the same, the
//! table, and failover times; self-contained, plots inline as SVG.
//!
//! It reads both shapes `harness bench` writes: a comparison of targets (one
//! figure per target and concurrency) and a suite of workloads (the median of
//! repeated runs with its smallest and largest, drawn as a whisker).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use plotters::prelude::*;
use serde_json::Value;

use crate::html::{escape, page};

const W: u32 = 960;
const H: u32 = 320;

/// One figure at one concurrency: the median (or only value) and its spread.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Point {
    clients: f64,
    mid: f64,
    lo: f64,
    hi: f64,
}

/// A figure as either a plain number or `{"median", "min", "max"}`.
fn point(clients: f64, v: &Value) -> Option<Point> {
    if let Some(x) = v.as_f64() {
        return Some(Point {
            clients,
            mid: x,
            lo: x,
            hi: x,
        });
    }
    let mid = v["median"].as_f64()?;
    Some(Point {
        clients,
        mid,
        lo: v["min"].as_f64().unwrap_or(mid),
        hi: v["max"].as_f64().unwrap_or(mid),
    })
}

/// Series by name (a target, or a suite's workload) for one figure of a row.
fn series(result: &Value, figure: impl Fn(&Value) -> Vec<(String, Value)>) -> Series {
    let mut out: Series = BTreeMap::new();
    for row in result["rows"].as_array().into_iter().flatten() {
        let who = row["target"]
            .as_str()
            .or_else(|| row["workload"].as_str())
            .unwrap_or("?");
        let Some(clients) = row["concurrency"].as_f64() else {
            continue;
        };
        for (suffix, v) in figure(row) {
            if let Some(p) = point(clients, &v) {
                out.entry((who.to_string(), suffix.clone()))
                    .or_default()
                    .push(p);
            }
        }
    }
    for pts in out.values_mut() {
        pts.sort_by(|a, b| a.clients.total_cmp(&b.clients));
    }
    out
}

/// Points by (target or workload, figure suffix such as " p99").
type Series = BTreeMap<(String, String), Vec<Point>>;

const COLOURS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

/// A line chart of `series` against the number of clients (log scale), with
/// a whisker where a point has a spread.
fn chart(title: &str, y_label: &str, series: &Series) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let all = series.values().flatten();
        let max_x = all.clone().map(|p| p.clients).fold(1.0, f64::max);
        let max_y = all.map(|p| p.hi).fold(0.0, f64::max).max(1e-9) * 1.1;
        let mut c = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(36)
            .y_label_area_size(60)
            .build_cartesian_2d(-0.2f64..max_x.log2() + 0.2, 0f64..max_y)
            .map_err(|e| e.to_string())?;
        c.configure_mesh()
            .x_desc("clients")
            .y_desc(y_label)
            .x_labels(8)
            .x_label_formatter(&|x| format!("{:.0}", 2f64.powf(*x)))
            .draw()
            .map_err(|e| e.to_string())?;
        // One colour per target or workload in every chart; a second figure
        // of it (p99 beside p50) is drawn thinner, with hollow markers.
        let mut whos: Vec<&String> = series.keys().map(|(w, _)| w).collect();
        whos.dedup();
        for ((who, suffix), pts) in series {
            let i = whos.iter().position(|w| *w == who).unwrap_or(0);
            let colour = COLOURS[i % COLOURS.len()];
            let first = series.keys().find(|(w, _)| w == who).map(|(_, s)| s) == Some(suffix);
            let width = if first { 2 } else { 1 };
            let xy: Vec<(f64, f64)> = pts.iter().map(|p| (p.clients.log2(), p.mid)).collect();
            c.draw_series(LineSeries::new(xy.clone(), colour.stroke_width(width)))
                .map_err(|e| e.to_string())?
                .label(format!("{who}{suffix}"))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 14, y)], colour.stroke_width(width))
                });
            let style = if first {
                colour.filled()
            } else {
                colour.stroke_width(1)
            };
            c.draw_series(xy.iter().map(|&p| Circle::new(p, 3, style)))
                .map_err(|e| e.to_string())?;
            for p in pts.iter().filter(|p| p.hi > p.lo) {
                let x = p.clients.log2();
                c.draw_series(std::iter::once(PathElement::new(
                    vec![(x, p.lo), (x, p.hi)],
                    colour.stroke_width(1),
                )))
                .map_err(|e| e.to_string())?;
            }
        }
        c.configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK.mix(0.3))
            .draw()
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

/// A markdown table (as `harness bench` prints it) as an HTML table.
fn table(markdown: &str) -> String {
    // Tables are separated by blank lines; each one's first line is its header.
    let mut out = String::new();
    for block in markdown.split("\n\n").filter(|b| !b.trim().is_empty()) {
        out.push_str("<table>");
        for (i, line) in block.trim().lines().enumerate() {
            let cells: Vec<&str> = line.trim().trim_matches('|').split('|').collect();
            if cells.iter().all(|c| c.trim().chars().all(|ch| ch == '-')) {
                continue;
            }
            let tag = if i == 0 { "th" } else { "td" };
            out.push_str("<tr>");
            for c in cells {
                let _ = write!(out, "<{tag}>{}</{tag}>", escape(c.trim()));
            }
            out.push_str("</tr>");
        }
        out.push_str("</table>");
    }
    out
}

/// The suite's fault runs: per workload, the time from each heal to the first
/// acknowledged op after it, as a whisker (smallest to largest, dot at the
/// median) on one shared millisecond scale.
fn recovery_plot(faults: &[Value]) -> String {
    let rows: Vec<(String, Point)> = faults
        .iter()
        .filter_map(|r| {
            let name = match r["shards"].as_u64() {
                Some(n) if n > 0 => format!("{} ({n} shards)", r["workload"].as_str()?),
                _ => r["workload"].as_str()?.to_string(),
            };
            Some((name, point(0.0, &r["recovery_ms"])?))
        })
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    let top = rows.iter().map(|(_, p)| p.hi).fold(1.0, f64::max);
    let (left, width, step) = (180.0, W as f64 - 240.0, 28.0);
    let x = |ms: f64| left + width * ms / top;
    let height = step * rows.len() as f64 + 40.0;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">"
    );
    for (i, (name, p)) in rows.iter().enumerate() {
        let y = 20.0 + step * i as f64;
        let _ = write!(
            svg,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text><line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{y}\" y2=\"{y}\" stroke=\"#36c\" stroke-width=\"2\"/><circle cx=\"{:.1}\" cy=\"{y}\" r=\"4\" fill=\"#36c\"/><text x=\"{:.1}\" y=\"{}\">{:.0} ms</text>",
            left - 8.0,
            y + 4.0,
            escape(name),
            x(p.lo),
            x(p.hi),
            x(p.mid),
            x(p.hi) + 8.0,
            y + 4.0,
            p.mid
        );
    }
    let axis = 20.0 + step * rows.len() as f64;
    let _ = write!(
        svg,
        "<line x1=\"{left}\" x2=\"{:.1}\" y1=\"{axis}\" y2=\"{axis}\" stroke=\"#999\"/><text x=\"{left}\" y=\"{}\">0</text><text x=\"{:.1}\" y=\"{}\" text-anchor=\"end\">{top:.0} ms after heal</text></svg>",
        left + width,
        axis + 14.0,
        left + width,
        axis + 14.0
    );
    svg
}

/// The whole page for a `bench.json` and the table printed beside it.
pub fn html(result: &Value, markdown: &str) -> Result<String, String> {
    let suite = result.get("suite").is_some();
    let mut body = String::new();
    let what = if suite {
        "suite of our own workloads (median of repeated runs, whiskers from the smallest to the largest)"
    } else {
        "targets side by side, one run each"
    };
    let _ = write!(
        body,
        "<h1>Faultline bench</h1><p class=\"note\">{}; {} s of load per point on {} nodes.</p>",
        escape(what),
        result["time_limit"],
        result["nodes"]
    );
    let tput = series(result, |row| {
        vec![(String::new(), row["ok_per_second"].clone())]
    });
    body.push_str("<h2>Throughput</h2>");
    body.push_str(&chart("ok ops/s against clients", "ok ops/s", &tput)?);
    let mut ops: Vec<String> = result["rows"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|r| {
            r["ops"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, _)| k.clone())
        })
        .collect();
    ops.sort();
    ops.dedup();
    body.push_str("<h2>Latency</h2>");
    for op in ops {
        let lat = series(result, |row| {
            vec![
                (" p50".to_string(), row["ops"][&op]["p50_ms"].clone()),
                (" p99".to_string(), row["ops"][&op]["p99_ms"].clone()),
            ]
        });
        if lat.is_empty() {
            continue;
        }
        body.push_str(&chart(
            &format!("{op}: p50 and p99 against clients"),
            "ms",
            &lat,
        )?);
    }
    if let Some(f) = result["failover_ms"].as_object().filter(|f| !f.is_empty()) {
        body.push_str("<h2>Leader failover</h2><p class=\"note\">SIGKILL the leader; time to the first acknowledged write, per trial.</p><table><tr><th>target</th><th>ms</th></tr>");
        for (t, trials) in f {
            let ms: Vec<String> = trials
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_f64)
                .map(|x| format!("{x:.0}"))
                .collect();
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{}</td></tr>",
                escape(t),
                ms.join(", ")
            );
        }
        body.push_str("</table>");
    }
    if let Some(f) = result["faults"].as_array().filter(|f| !f.is_empty()) {
        body.push_str("<h2>Recovery after heal</h2><p class=\"note\">One run per repeat under the standard faults at the most clients; per heal that found ops waiting, the time to the first acknowledged op invoked after it (smallest to largest, dot at the median). The table below gives the share of ops that succeeded under faults.</p>");
        body.push_str(&recovery_plot(f));
    }
    body.push_str("<h2>Table</h2>");
    body.push_str(&table(markdown));
    Ok(page("Faultline bench", &body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_target_comparison_plots_one_line_per_target_and_a_chart_per_op() {
        let result = json!({"targets": ["builtin:raft", "builtin:paxos"], "time_limit": 10, "nodes": 3,
            "rows": [
                {"target": "builtin:raft", "concurrency": 1, "ok_per_second": 600.0,
                 "ops": {"read": {"p50_ms": 0.7, "p99_ms": 1.3}, "write": {"p50_ms": 1.2, "p99_ms": 3.0}}},
                {"target": "builtin:raft", "concurrency": 16, "ok_per_second": 2400.0,
                 "ops": {"read": {"p50_ms": 4.0, "p99_ms": 13.0}}},
                {"target": "builtin:paxos", "concurrency": 1, "ok_per_second": 700.0,
                 "ops": {"read": {"p50_ms": 0.5, "p99_ms": 0.9}}}],
            "failover_ms": {"builtin:raft": [113.0, 159.0]}});
        let tput = series(&result, |r| {
            vec![(String::new(), r["ok_per_second"].clone())]
        });
        assert_eq!(tput.len(), 2);
        let raft = &tput[&("builtin:raft".to_string(), String::new())];
        assert_eq!(raft.len(), 2);
        assert_eq!(raft[1].mid, 2400.0);
        let page = html(&result, "| a | b |\n|---|---|\n| 1 | x<y |\n").unwrap();
        assert_eq!(page.matches("<svg").count(), 3, "throughput, read, write");
        assert!(page.contains("builtin:paxos"));
        assert!(page.contains("113, 159"));
        assert!(page.contains("<td>x&lt;y</td>"));
    }

    #[test]
    fn a_suite_draws_medians_with_their_spread() {
        let result = json!({"suite": ["kv"], "time_limit": 5, "nodes": 5, "rows": [
            {"workload": "kv", "concurrency": 4,
             "ok_per_second": {"median": 900.0, "min": 850.0, "max": 990.0},
             "ops": {"read": {"p50_ms": {"median": 2.0, "min": 1.5, "max": 2.5},
                              "p99_ms": {"median": 9.0, "min": 8.0, "max": 12.0}}}}]});
        let tput = series(&result, |r| {
            vec![(String::new(), r["ok_per_second"].clone())]
        });
        assert_eq!(
            tput[&("kv".to_string(), String::new())],
            vec![Point {
                clients: 4.0,
                mid: 900.0,
                lo: 850.0,
                hi: 990.0
            }]
        );
        let page = html(&result, "").unwrap();
        assert!(page.contains("median of repeated runs"));
        assert_eq!(page.matches("<svg").count(), 2);
    }

    #[test]
    fn a_suite_with_fault_runs_draws_recovery_whiskers_and_both_tables() {
        let result = json!({"suite": ["kv", "lock"], "time_limit": 5, "nodes": 3, "rows": [
            {"workload": "kv", "concurrency": 4,
             "ok_per_second": {"median": 900.0, "min": 850.0, "max": 990.0}, "ops": {}}],
            "faults": [
                {"workload": "kv", "shards": 0, "recovery_ms": {"median": 40.0, "min": 3.0, "max": 400.0}},
                {"workload": "lock", "shards": 2, "recovery_ms": {"median": 900.0, "min": 20.0, "max": 1200.0}},
                {"workload": "queue", "shards": 0, "recovery_ms": null}]});
        let md = "| a | b |\n|---|---|\n| 1 | 2 |\n\n| faults | ms |\n|---|---|\n| kv | 40 |\n";
        let page = html(&result, md).unwrap();
        assert!(page.contains("Recovery after heal"), "{page}");
        // One whisker per workload that recovered at least once, on one scale.
        let section =
            &page[page.find("Recovery after heal").unwrap()..page.find("<h2>Table").unwrap()];
        assert_eq!(section.matches("<circle").count(), 2, "{section}");
        assert!(page.contains("lock (2 shards)") && page.contains("1200 ms after heal"));
        assert!(!page.contains(">queue<"));
        // Two tables, each with its own header.
        assert_eq!(page.matches("<table>").count(), 2);
        assert!(page.contains("<th>faults</th>") && page.contains("<td>kv</td>"));
    }
}
