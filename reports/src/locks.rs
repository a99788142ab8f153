//! The `lock` workload's panel: who held which lock when (holds as bars, one lane
//! per lock, take-overs of expired leases and refused stale writes marked), with
//! fault windows shaded, so a double grant or a fenced-off writer shows at a glance.

use std::collections::{BTreeMap, HashMap};

use plotters::prelude::*;

use crate::data::{Outcome, Run};

const W: u32 = 960;
const LANE: u32 = 34;

/// One hold of a lock: [start, end] in ns, whether it took over an expired lease.
struct Hold {
    start: u64,
    end: u64,
    process: i64,
    took_over: bool,
}

/// Holds per lock, from grants (acquire ok, not `queued`) to the holder's release
/// (or the next grant of the lock, or the end of the run).
fn holds(run: &Run) -> BTreeMap<String, Vec<Hold>> {
    let f = |name: &str| run.names.iter().position(|n| n == name);
    let (Some(acquire), release) = (f("acquire"), f("release")) else {
        return BTreeMap::new();
    };
    let mut open: HashMap<(i64, String), usize> = HashMap::new();
    let mut out: BTreeMap<String, Vec<Hold>> = BTreeMap::new();
    for op in &run.ops {
        let Some(key) = &op.key else { continue };
        if op.outcome != Outcome::Ok {
            continue;
        }
        let output = op.output.as_deref().unwrap_or("");
        if op.f as usize == acquire && !output.contains("\"queued\"") {
            let lane = out.entry(key.clone()).or_default();
            // A grant ends every other hold still open on the lock.
            for h in lane.iter_mut().filter(|h| h.end == u64::MAX) {
                if h.process != op.process {
                    h.end = op.end;
                }
            }
            if output.contains("\"renewed\":true") {
                continue;
            }
            lane.push(Hold {
                start: op.end,
                end: u64::MAX,
                process: op.process,
                took_over: output.contains("\"took_over\":true"),
            });
            open.insert((op.process, key.clone()), lane.len() - 1);
        } else if Some(op.f as usize) == release {
            if let Some(i) = open.remove(&(op.process, key.clone())) {
                if let Some(h) = out.get_mut(key).and_then(|l| l.get_mut(i)) {
                    h.end = h.end.min(op.start);
                }
            }
        }
    }
    for lane in out.values_mut() {
        for h in lane.iter_mut() {
            h.end = h.end.min(run.end);
        }
    }
    out
}

fn plot(run: &Run, lanes: &BTreeMap<String, Vec<Hold>>) -> Result<String, String> {
    let names: Vec<&String> = lanes.keys().collect();
    let h = 80 + LANE * names.len() as u32;
    let secs = run.end as f64 / 1e9;
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (W, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "Lock holders over time (bar per hold; orange: took over an expired lease; red tick: stale write refused)",
                ("sans-serif", 14),
            )
            .margin(8)
            .x_label_area_size(30)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..secs.max(0.001), 0f64..names.len() as f64)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("seconds")
            .y_labels(names.len() + 1)
            .y_label_formatter(&|y| {
                let i = y.floor() as usize;
                names
                    .get(i)
                    .filter(|_| (y - y.floor() - 0.0).abs() < 1e-9)
                    .map(|n| n.to_string())
                    .unwrap_or_default()
            })
            .light_line_style(WHITE)
            .draw()
            .map_err(|e| e.to_string())?;
        crate::plots::shade_faults(&mut chart, run, 0.0, names.len() as f64)?;
        let palette = [
            RGBColor(46, 139, 87),
            RGBColor(40, 90, 200),
            RGBColor(120, 60, 180),
            RGBColor(20, 140, 160),
        ];
        for (i, name) in names.iter().enumerate() {
            let y = i as f64;
            for hold in &lanes[*name] {
                let c = if hold.took_over {
                    RGBColor(230, 140, 20)
                } else {
                    palette[hold.process as usize % palette.len()]
                };
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [
                            (hold.start as f64 / 1e9, y + 0.2),
                            ((hold.end.max(hold.start + 1_000_000)) as f64 / 1e9, y + 0.8),
                        ],
                        c.mix(0.8).filled(),
                    )))
                    .map_err(|e| e.to_string())?;
            }
        }
        // Stale writes the registers refused: a fenced-off holder at work.
        let write = run.names.iter().position(|n| n == "write");
        let stale: Vec<(f64, f64)> = run
            .ops
            .iter()
            .filter(|o| Some(o.f as usize) == write && o.outcome == Outcome::Fail)
            .filter_map(|o| {
                let i = names
                    .iter()
                    .position(|n| Some(n.as_str()) == o.key.as_deref())?;
                Some((o.end as f64 / 1e9, i as f64 + 0.5))
            })
            .collect();
        chart
            .draw_series(
                stale
                    .into_iter()
                    .map(|p| Cross::new(p, 4, RGBColor(200, 40, 40).stroke_width(2))),
            )
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(buf)
}

/// The panel, when the run has lock operations.
pub fn section(run: &Run) -> Result<Option<String>, String> {
    let lanes = holds(run);
    if lanes.is_empty() {
        return Ok(None);
    }
    let grants: usize = lanes.values().map(Vec::len).sum();
    let took_over: usize = lanes.values().flatten().filter(|h| h.took_over).count();
    let mut html = format!(
        "<h2>Locks</h2><p>{grants} grants over {} locks, {took_over} of them taking over an expired lease.</p><div class=\"plot\">",
        lanes.len()
    );
    html.push_str(&plot(run, &lanes)?);
    html.push_str("</div>");
    html.push_str(&crate::html::findings(
        &run.results,
        &["fencing-tokens", "fenced-writes", "deadlocks"],
    ));
    Ok(Some(html))
}
