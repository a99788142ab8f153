//! The `saga` workload's panel: orders answered per second by outcome
//! (completed, compensated, unknown), the final count by end, and the stuck
//! or partial sagas the checkers listed.

use plotters::prelude::*;

use crate::data::{Outcome, Run};

/// The panel, when the run is a saga run.
pub fn section(run: &Run) -> Result<Option<String>, String> {
    let outcomes = &run.results["checkers"]["outcomes"];
    if outcomes.is_null() || run.results["checkers"]["partial"].is_null() {
        return Ok(None);
    }
    let counts = crate::plots::count_by_second(run, 3, |op, name| {
        if name != "order" {
            return None;
        }
        match op.outcome {
            Outcome::Ok
                if op
                    .output
                    .as_deref()
                    .is_some_and(|o| o.contains("\"end\":\"completed\"")) =>
            {
                Some(0)
            }
            Outcome::Ok => Some(1),
            _ => Some(2),
        }
    });
    let [completed, compensated, unknown]: [Vec<u64>; 3] = counts.try_into().unwrap_or_default();
    let by_end = &outcomes["counts"]["by_end"];
    let mut html = format!(
        "<h2>Sagas</h2><p>At the end: {} completed, {} compensated, {} still running.</p><div class=\"plot\">",
        by_end["completed"].as_u64().unwrap_or(0),
        by_end["compensated"].as_u64().unwrap_or(0),
        by_end["running"].as_u64().unwrap_or(0),
    );
    html.push_str(&crate::plots::per_second(
        run,
        "Orders answered per second, by the saga's end",
        "per second",
        &[
            ("completed", RGBColor(46, 139, 87), completed),
            ("compensated", RGBColor(230, 150, 30), compensated),
            ("unknown or refused", RGBColor(200, 50, 50), unknown),
        ],
    )?);
    html.push_str("</div>");
    html.push_str(&crate::html::findings(
        &run.results,
        &["outcomes", "partial", "conservation"],
    ));
    Ok(Some(html))
}
