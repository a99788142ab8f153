//! The `cache` workload's panel: the hit ratio of reads per second with fault
//! windows shaded, each node's counters at the end (entries against capacity,
//! hits, misses, evictions, expirations, invalidations, refused stale copies),
//! and the cache checkers' findings.

use plotters::prelude::*;
use serde_json::Value;

use crate::data::{Outcome, Run};
use crate::html::escape;

const W: u32 = 960;
const H: u32 = 280;

/// Per second: (hits, reads) among acknowledged reads.
fn series(run: &Run) -> Option<Vec<(f64, f64)>> {
    let f = |name: &str| run.names.iter().position(|n| n == name);
    f("converge")?;
    let read = f("read")?;
    let secs = (run.end / 1_000_000_000 + 1) as usize;
    let mut s = vec![(0.0, 0.0); secs];
    for op in run
        .ops
        .iter()
        .filter(|o| o.outcome == Outcome::Ok && o.f as usize == read)
    {
        let sec = ((op.end / 1_000_000_000) as usize).min(secs - 1);
        let out: Value =
            serde_json::from_str(op.output.as_deref().unwrap_or("null")).unwrap_or_default();
        s[sec].1 += 1.0;
        if out["hit"] == Value::Bool(true) {
            s[sec].0 += 1.0;
        }
    }
    Some(s)
}

fn plot(run: &Run, s: &[(f64, f64)]) -> Result<String, String> {
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "Cache hit ratio of reads per second (%)",
                ("sans-serif", 15),
            )
            .margin(8)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..s.len() as f64, 0f64..105f64)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("seconds")
            .light_line_style(WHITE)
            .draw()
            .map_err(|e| e.to_string())?;
        crate::plots::shade_faults(&mut chart, run, 0.0, 105.0)?;
        let blue = RGBColor(40, 90, 200);
        chart
            .draw_series(LineSeries::new(
                s.iter()
                    .enumerate()
                    .filter(|(_, (_, reads))| *reads > 0.0)
                    .map(|(t, (hits, reads))| (t as f64 + 0.5, 100.0 * hits / reads)),
                blue.stroke_width(2),
            ))
            .map_err(|e| e.to_string())?
            .label("hit ratio")
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 14, y)], blue.stroke_width(2))
            });
        crate::plots::legend(&mut chart)?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(buf)
}

/// The panel, when the run is a cache run.
pub fn section(run: &Run) -> Result<Option<String>, String> {
    let Some(s) = series(run) else {
        return Ok(None);
    };
    let checkers = &run.results["checkers"];
    let stale = &checkers["stale-reads"];
    let mut html = String::from("<h2>Cache</h2>");
    html.push_str(&format!(
        "<p>{} reads, {} from a cached copy (hit ratio {:.1}%).</p><div class=\"plot\">",
        stale["reads"],
        stale["hits"],
        100.0 * stale["hit_ratio"].as_f64().unwrap_or(0.0)
    ));
    html.push_str(&plot(run, &s)?);
    html.push_str("</div>");
    if let Some(nodes) = checkers["eviction"]["nodes"].as_object() {
        html.push_str("<table><tr><th>node</th><th>entries / capacity</th><th>hits</th><th>misses</th><th>evictions</th><th>expirations</th><th>invalidations</th><th>stale copies refused</th></tr>");
        for (id, n) in nodes {
            let st = &n["stats"];
            html.push_str(&format!(
                "<tr><td>{}</td><td>{} / {}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(id),
                n["entries"],
                n["capacity"],
                st["hits"],
                st["misses"],
                st["evictions"],
                st["expirations"],
                st["invalidations"],
                st["stale_fills"]
            ));
        }
        html.push_str("</table>");
    }
    html.push_str(&crate::html::findings(
        &run.results,
        &["stale-reads", "ttl", "eviction", "convergence"],
    ));
    Ok(Some(html))
}
