//! The `mesh` workload's panel: each sidecar's breaker for each instance
//! over time (closed, open and half-open lanes), tries per instance per
//! second, retries per second, and the failover and availability figures.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use plotters::prelude::*;
use serde_json::Value;

use crate::data::Run;
use crate::html::escape;

/// Width of the lanes' drawing, in pixels, and the height of one lane.
const WIDTH: f64 = 760.0;
const LANE: f64 = 14.0;
const LABEL: f64 = 90.0;

/// The panel, when the run is a mesh run.
pub fn section(run: &Run) -> Result<Option<String>, String> {
    if run.results["checkers"]["health-routing"]["figures"].is_null() {
        return Ok(None);
    }
    let Some(records) = records_output(run) else {
        return Ok(None);
    };
    let offset = offset_ns(run, &records);
    let secs = (run.end / 1_000_000_000 + 1) as usize;
    let at_second = |unix_ms: u64| -> usize {
        let ns = unix_ms as i128 * 1_000_000 - offset as i128;
        ((ns.max(0) / 1_000_000_000) as usize).min(secs - 1)
    };
    let mut per_instance: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut retries = vec![0u64; secs];
    let mut failed = vec![0u64; secs];
    for (_, got) in records.as_object().into_iter().flatten() {
        for r in got["records"].as_array().into_iter().flatten() {
            let tries = r["attempts"].as_array().cloned().unwrap_or_default();
            for (i, a) in tries.iter().enumerate() {
                let s = at_second(a["admitted_ms"].as_u64().unwrap_or(0));
                if let Some(inst) = a["instance"].as_str() {
                    per_instance
                        .entry(inst.to_string())
                        .or_insert_with(|| vec![0; secs])[s] += 1;
                }
                if i > 0 {
                    retries[s] += 1;
                }
            }
            if r["outcome"] != "ok" {
                failed[at_second(r["end_ms"].as_u64().unwrap_or(0))] += 1;
            }
        }
    }
    let figures = &run.results["checkers"]["health-routing"]["figures"];
    let mut html = String::from("<h2>Mesh</h2>");
    let _ = write!(
        html,
        "<p>Failover (an instance lost to the first success elsewhere): median {} ms, worst {} ms over {} faults. Availability while an instance was untouched by faults: {}.</p>",
        figures["failover_ms_median"],
        figures["failover_ms_max"],
        figures["failovers"],
        figures["availability_with_a_healthy_instance"]
            .as_f64()
            .map_or("-".to_string(), |a| format!("{:.2}%", a * 100.0))
    );
    html.push_str(&lanes(run, &records, offset));
    let palette = [
        RGBColor(31, 119, 180),
        RGBColor(46, 139, 87),
        RGBColor(230, 150, 30),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
    ];
    let series: Vec<(&str, RGBColor, Vec<u64>)> = per_instance
        .iter()
        .enumerate()
        .map(|(i, (name, counts))| (name.as_str(), palette[i % palette.len()], counts.clone()))
        .collect();
    html.push_str("<div class=\"plot\">");
    html.push_str(&crate::plots::per_second(
        run,
        "Tries per instance per second",
        "tries",
        &series,
    )?);
    html.push_str("</div><div class=\"plot\">");
    html.push_str(&crate::plots::per_second(
        run,
        "Retries and failed requests per second",
        "per second",
        &[
            ("retries", RGBColor(230, 150, 30), retries),
            ("failed requests", RGBColor(200, 50, 50), failed),
        ],
    )?);
    html.push_str("</div>");
    html.push_str(&crate::html::findings(
        &run.results,
        &["breaker", "retries", "deadline", "health-routing", "traces"],
    ));
    Ok(Some(html))
}

/// The sidecars' records (the final `records` op's answer).
fn records_output(run: &Run) -> Option<Value> {
    let f = run.names.iter().position(|n| n == "records")? as u16;
    let op = run.ops.iter().rev().find(|o| o.f == f)?;
    serde_json::from_str(op.output.as_deref()?).ok()
}

/// Unix ns minus run ns: a request reaches its sidecar after its client sent
/// it, so the smallest difference is the offset plus the fastest hop.
fn offset_ns(run: &Run, records: &Value) -> i64 {
    let mut arrival: BTreeMap<String, u64> = BTreeMap::new();
    for (_, got) in records.as_object().into_iter().flatten() {
        for r in got["records"].as_array().into_iter().flatten() {
            if let (Some(id), Some(at)) = (r["request"].as_str(), r["arrival_ms"].as_u64()) {
                arrival.insert(id.to_string(), at);
            }
        }
    }
    run.ops
        .iter()
        .filter_map(|o| {
            let input: Value = serde_json::from_str(&o.input).ok()?;
            let at = arrival.get(input["id"].as_str()?)?;
            Some(*at as i64 * 1_000_000 - o.start as i64)
        })
        .min()
        .unwrap_or(0)
}

/// One lane per (sidecar, instance breaker): green closed, red open, orange
/// half-open, from the transitions the sidecars logged.
fn lanes(run: &Run, records: &Value, offset: i64) -> String {
    let end_ns = run.end.max(1) as f64;
    let x = |unix_ms: u64| -> f64 {
        let ns = (unix_ms as i128 * 1_000_000 - offset as i128).max(0) as f64;
        LABEL + (ns / end_ns).min(1.0) * (WIDTH - LABEL)
    };
    let mut by_lane: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for (sidecar, got) in records.as_object().into_iter().flatten() {
        for t in got["transitions"].as_array().into_iter().flatten() {
            // An instance that left the registry and came back has a new
            // breaker: a lane of its own.
            let lane = match t["generation"].as_u64() {
                Some(g) if g > 1 => format!(
                    "{sidecar} → {} ({g})",
                    t["instance"].as_str().unwrap_or("?")
                ),
                _ => format!("{sidecar} → {}", t["instance"].as_str().unwrap_or("?")),
            };
            by_lane.entry(lane).or_default().push(t);
        }
    }
    if by_lane.is_empty() {
        return "<p>No breaker left the closed state.</p>".into();
    }
    let height = LANE * by_lane.len() as f64 + 20.0;
    let mut svg = format!(
        "<p>Breakers (green closed, red open, orange half-open):</p><svg width=\"{WIDTH}\" height=\"{height}\" role=\"img\" aria-label=\"breaker states over time\">"
    );
    for (row, (lane, moves)) in by_lane.iter().enumerate() {
        let y = row as f64 * LANE;
        let _ = write!(
            svg,
            "<text x=\"0\" y=\"{:.1}\" font-size=\"10\">{}</text><rect x=\"{LABEL}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#8fd19e\"/>",
            y + LANE - 3.0,
            escape(lane),
            WIDTH - LABEL,
            LANE - 2.0
        );
        for (i, t) in moves.iter().enumerate() {
            let colour = match t["to"].as_str() {
                Some("open") => "#d9534f",
                Some("half-open") => "#f0ad4e",
                _ => continue,
            };
            let from = x(t["at_ms"].as_u64().unwrap_or(0));
            let to = moves
                .get(i + 1)
                .map_or(WIDTH, |n| x(n["at_ms"].as_u64().unwrap_or(0)));
            let _ = write!(
                svg,
                "<rect x=\"{from:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{colour}\"><title>{} {}</title></rect>",
                (to - from).max(1.0),
                LANE - 2.0,
                escape(lane),
                escape(t["to"].as_str().unwrap_or(""))
            );
        }
    }
    let _ = write!(
        svg,
        "<text x=\"{LABEL}\" y=\"{:.1}\" font-size=\"10\">0 s</text><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\">{:.0} s</text></svg>",
        height - 4.0,
        WIDTH - 30.0,
        height - 4.0,
        end_ns / 1e9
    );
    svg
}
