//! The `queue` workload's panel: queue depth per consumer group (messages sent
//! minus messages the group acknowledged) and redeliveries per second, with fault
//! windows shaded, plus the delivery checker's per-group accounting.

use std::collections::BTreeMap;

use plotters::prelude::*;
use serde_json::Value;

use crate::data::{Outcome, Run};
use crate::html::escape;

const W: u32 = 960;
const H: u32 = 320;

struct Series {
    /// Per second: sends acknowledged.
    sent: Vec<f64>,
    /// Per group, per second: acks.
    acked: BTreeMap<String, Vec<f64>>,
    /// Per second: deliveries after the first.
    redelivered: Vec<f64>,
}

fn series(run: &Run) -> Option<Series> {
    let f = |name: &str| run.names.iter().position(|n| n == name);
    let (send, ack, poll) = (f("send")?, f("ack"), f("poll"));
    let secs = (run.end / 1_000_000_000 + 1) as usize;
    let mut s = Series {
        sent: vec![0.0; secs],
        acked: BTreeMap::new(),
        redelivered: vec![0.0; secs],
    };
    for op in run.ops.iter().filter(|o| o.outcome == Outcome::Ok) {
        let sec = ((op.end / 1_000_000_000) as usize).min(secs - 1);
        let fi = op.f as usize;
        if fi == send {
            s.sent[sec] += 1.0;
        } else if Some(fi) == ack {
            let input: Value = serde_json::from_str(&op.input).unwrap_or_default();
            let group = input["group"].as_str().unwrap_or("?").to_string();
            s.acked.entry(group).or_insert_with(|| vec![0.0; secs])[sec] += 1.0;
        } else if Some(fi) == poll {
            let out: Value =
                serde_json::from_str(op.output.as_deref().unwrap_or("null")).unwrap_or_default();
            s.redelivered[sec] += out["messages"].as_array().map_or(0, |m| {
                m.iter()
                    .filter(|m| m["delivery"].as_u64() > Some(1))
                    .count()
            }) as f64;
        }
    }
    Some(s)
}

fn plot(run: &Run, s: &Series) -> Result<String, String> {
    let secs = s.sent.len();
    let cumulative = |v: &[f64]| -> Vec<f64> {
        v.iter()
            .scan(0.0, |acc, x| {
                *acc += x;
                Some(*acc)
            })
            .collect()
    };
    let sent = cumulative(&s.sent);
    let depths: Vec<(String, Vec<f64>)> = s
        .acked
        .iter()
        .map(|(g, a)| {
            let acked = cumulative(a);
            (
                g.clone(),
                sent.iter()
                    .zip(&acked)
                    .map(|(s, a)| (s - a).max(0.0))
                    .collect(),
            )
        })
        .collect();
    let max = depths
        .iter()
        .flat_map(|(_, d)| d.iter())
        .chain(s.redelivered.iter())
        .fold(1.0f64, |m, x| m.max(*x))
        * 1.15;
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "Queue depth per group (sent − acknowledged) and redeliveries per second",
                ("sans-serif", 15),
            )
            .margin(8)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..secs as f64, 0f64..max)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("seconds")
            .light_line_style(WHITE)
            .draw()
            .map_err(|e| e.to_string())?;
        crate::plots::shade_faults(&mut chart, run, 0.0, max)?;
        let colours = [RGBColor(40, 90, 200), RGBColor(46, 139, 87)];
        for (i, (g, d)) in depths.iter().enumerate() {
            let c = colours[i % colours.len()];
            chart
                .draw_series(LineSeries::new(
                    d.iter().enumerate().map(|(t, y)| (t as f64 + 1.0, *y)),
                    c.stroke_width(2),
                ))
                .map_err(|e| e.to_string())?
                .label(format!("depth {g}"))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 14, y)], c.stroke_width(2))
                });
        }
        let red = RGBColor(210, 80, 40);
        chart
            .draw_series(LineSeries::new(
                s.redelivered
                    .iter()
                    .enumerate()
                    .map(|(t, y)| (t as f64 + 0.5, *y)),
                red.stroke_width(2),
            ))
            .map_err(|e| e.to_string())?
            .label("redeliveries/s")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], red.stroke_width(2)));
        crate::plots::legend(&mut chart)?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(buf)
}

/// The panel, when the run has broker operations.
pub fn section(run: &Run) -> Result<Option<String>, String> {
    let Some(s) = series(run) else {
        return Ok(None);
    };
    let mut html = String::from("<h2>Queue</h2><div class=\"plot\">");
    html.push_str(&plot(run, &s)?);
    html.push_str("</div>");
    let groups = &run.results["checkers"]["delivery"]["groups"];
    if let Some(groups) = groups.as_object() {
        html.push_str("<table><tr><th>group</th><th>deliveries</th><th>redeliveries</th><th>acknowledged</th><th>dead letters</th><th>pending at end</th><th>lost</th></tr>");
        for (g, r) in groups {
            html.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(g),
                r["deliveries"],
                r["redeliveries"],
                r["acknowledged"],
                r["dead_letters"],
                r["pending_at_end"],
                r["lost"]
            ));
        }
        html.push_str("</table>");
    }
    html.push_str(&crate::html::findings(
        &run.results,
        &["acknowledged-messages", "delivery"],
    ));
    Ok(Some(html))
}
