//! The `events` workload's panel: acknowledged appends and version conflicts
//! per second, each stream's final length, and what the checkers found.

use plotters::prelude::*;

use crate::data::{Outcome, Run};
use crate::html::escape;

/// The panel, when the run is an events run.
pub fn section(run: &Run) -> Result<Option<String>, String> {
    if run.results["checkers"]["expected-version"].is_null() {
        return Ok(None);
    }
    let counts = crate::plots::count_by_second(run, 3, |op, name| match (name, op.outcome) {
        ("append", Outcome::Ok) => Some(0),
        ("append", Outcome::Fail) => Some(1),
        ("consume", Outcome::Ok) => Some(2),
        _ => None,
    });
    let [appended, conflicts, polls]: [Vec<u64>; 3] = counts.try_into().unwrap_or_default();
    let (a, c) = (appended.iter().sum::<u64>(), conflicts.iter().sum::<u64>());
    let mut html = format!(
        "<h2>Event store</h2><p>{a} appends acknowledged, {c} refused (conflicts on the expected version, or unavailable).</p><div class=\"plot\">"
    );
    html.push_str(&crate::plots::per_second(
        run,
        "Appends and conflicts per second",
        "per second",
        &[
            ("appends acknowledged", RGBColor(46, 139, 87), appended),
            ("appends refused", RGBColor(200, 50, 50), conflicts),
            ("subscription polls", RGBColor(70, 110, 190), polls),
        ],
    )?);
    html.push_str("</div>");
    // Each stream's final length, from the final state reads.
    let mut rows = String::new();
    for op in &run.ops {
        if run.names.get(op.f as usize).map(String::as_str) != Some("state") {
            continue;
        }
        let (Ok(input), Some(Ok(out))) = (
            serde_json::from_str::<serde_json::Value>(&op.input),
            op.output
                .as_deref()
                .map(serde_json::from_str::<serde_json::Value>),
        ) else {
            continue;
        };
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(input["stream"].as_str().unwrap_or("?")),
            out["version"],
            out["snapshot_version"]
        ));
    }
    if !rows.is_empty() {
        html.push_str(&format!(
            "<table><tr><th>stream</th><th>length</th><th>last snapshot at</th></tr>{rows}</table>"
        ));
    }
    html.push_str(&crate::html::findings(
        &run.results,
        &[
            "appends",
            "versions",
            "expected-version",
            "global-order",
            "subscriptions",
            "projection",
            "snapshots",
        ],
    ));
    Ok(Some(html))
}
