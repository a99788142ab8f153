//! The report's plots, drawn with plotters into inline SVG strings.
//!
//! Large runs stay light: the latency scatter keeps one point per pixel per
//! (operation, outcome), so a million ops draw as a few thousand circles.

use std::collections::HashSet;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::data::{Outcome, Run};

const W: u32 = 960;
const H: u32 = 340;

/// A colour per outcome.
fn outcome_colour(o: Outcome) -> RGBColor {
    match o {
        Outcome::Ok => RGBColor(46, 139, 87),
        Outcome::Fail => RGBColor(200, 50, 50),
        Outcome::Info => RGBColor(230, 150, 20),
    }
}

/// A colour per fault kind, for the shaded windows.
fn fault_colour(kind: &str) -> RGBColor {
    match kind {
        "partition" => RGBColor(120, 120, 220),
        "kill" => RGBColor(220, 80, 80),
        "pause" => RGBColor(150, 100, 200),
        "clock" => RGBColor(90, 170, 170),
        "delay" => RGBColor(200, 170, 60),
        "byzantine" => RGBColor(200, 110, 30),
        "crash-points" => RGBColor(150, 40, 60),
        _ => RGBColor(160, 160, 160),
    }
}

fn seconds(ns: u64) -> f64 {
    ns as f64 / 1e9
}

pub(crate) type Chart<'a, Y> =
    ChartContext<'a, SVGBackend<'a>, Cartesian2d<plotters::coord::types::RangedCoordf64, Y>>;

pub(crate) fn shade_faults<Y>(
    chart: &mut Chart<'_, Y>,
    run: &Run,
    y0: Y::ValueType,
    y1: Y::ValueType,
) -> Result<(), String>
where
    Y: plotters::coord::ranged1d::Ranged,
    Y::ValueType: Clone + 'static,
{
    for f in &run.faults {
        let c = fault_colour(&f.kind);
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(seconds(f.start), y0.clone()), (seconds(f.end), y1.clone())],
                c.mix(0.15).filled(),
            )))
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(std::iter::once(Text::new(
                f.kind.clone(),
                (seconds(f.start), y1.clone()),
                ("sans-serif", 11).into_font().color(&c),
            )))
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// A labelled line of (seconds, value) points.
fn line<Y>(
    chart: &mut Chart<'_, Y>,
    pts: Vec<(f64, Y::ValueType)>,
    c: RGBColor,
    label: &str,
) -> Result<(), String>
where
    Y: plotters::coord::ranged1d::Ranged,
    Y::ValueType: Clone + 'static,
{
    chart
        .draw_series(LineSeries::new(pts, c.stroke_width(2)))
        .map_err(|e| e.to_string())?
        .label(label)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], c.stroke_width(2)));
    Ok(())
}

/// The legend box, drawn last.
pub(crate) fn legend<Y>(chart: &mut Chart<'_, Y>) -> Result<(), String>
where
    Y: plotters::coord::ranged1d::Ranged,
    Y::ValueType: Clone + 'static,
{
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK.mix(0.3))
        .draw()
        .map_err(|e| e.to_string())
}

fn area(buf: &mut String) -> DrawingArea<SVGBackend<'_>, Shift> {
    SVGBackend::with_string(buf, (W, H)).into_drawing_area()
}

/// Every op's latency over time (log scale), coloured by outcome, one marker shape
/// per operation, fault windows shaded.
pub fn latency_scatter(run: &Run) -> Result<String, String> {
    let mut buf = String::new();
    {
        let root = area(&mut buf);
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let end = (seconds(run.end) * 1.02).max(1e-3);
        let max_ms = run
            .ops
            .iter()
            .map(|o| (o.end - o.start) as f64 / 1e6)
            .fold(1.0, f64::max)
            * 1.5;
        let mut chart = ChartBuilder::on(&root)
            .caption("Latency of every operation (ms, log)", ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(0f64..end, (0.01f64..max_ms).log_scale())
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("seconds")
            .y_desc("ms")
            .light_line_style(WHITE)
            .draw()
            .map_err(|e| e.to_string())?;
        shade_faults(&mut chart, run, 0.01, max_ms)?;
        // One point per pixel cell per (op, outcome).
        let mut seen: HashSet<(u16, Outcome, u32, u32)> = HashSet::new();
        let mut points: Vec<(u16, Outcome, f64, f64)> = Vec::new();
        for op in &run.ops {
            let x = seconds(op.end);
            let y = ((op.end - op.start) as f64 / 1e6).max(0.01);
            let px = (x / end * W as f64) as u32;
            let py = (y.ln() * 40.0) as u32;
            if seen.insert((op.f, op.outcome, px, py)) {
                points.push((op.f, op.outcome, x, y));
            }
        }
        for (fi, name) in run.names.iter().enumerate() {
            for outcome in [Outcome::Ok, Outcome::Fail, Outcome::Info] {
                let c = outcome_colour(outcome);
                let pts = points
                    .iter()
                    .filter(|p| p.0 as usize == fi && p.1 == outcome)
                    .map(|p| (p.2, p.3));
                let label = format!("{name} {}", outcome.name());
                let drawn = match fi % 3 {
                    0 => chart.draw_series(pts.map(|p| Circle::new(p, 2, c.filled()))),
                    1 => chart.draw_series(pts.map(|p| TriangleMarker::new(p, 3, c.filled()))),
                    _ => chart.draw_series(pts.map(|p| Cross::new(p, 2, c))),
                }
                .map_err(|e| e.to_string())?;
                let shape = fi % 3;
                drawn.label(label).legend(
                    move |(x, y)| -> DynElement<'static, SVGBackend, (i32, i32)> {
                        match shape {
                            0 => Circle::new((x, y), 3, c.filled()).into_dyn(),
                            1 => TriangleMarker::new((x, y), 4, c.filled()).into_dyn(),
                            _ => Cross::new((x, y), 3, c).into_dyn(),
                        }
                    },
                );
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK.mix(0.3))
            .draw()
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(buf)
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// p50, p95, p99 and max latency of `ok` ops per second.
pub fn latency_quantiles(run: &Run) -> Result<String, String> {
    let secs = (run.end / 1_000_000_000 + 1) as usize;
    let mut buckets: Vec<Vec<f64>> = vec![Vec::new(); secs];
    for op in run.ops.iter().filter(|o| o.outcome == Outcome::Ok) {
        let s = ((op.end / 1_000_000_000) as usize).min(secs - 1);
        buckets[s].push((op.end - op.start) as f64 / 1e6);
    }
    let mut series: [Vec<(f64, f64)>; 4] = Default::default();
    for (s, b) in buckets.iter_mut().enumerate() {
        if b.is_empty() {
            continue;
        }
        b.sort_by(|a, b| a.total_cmp(b));
        let x = s as f64 + 0.5;
        for (i, q) in [0.5, 0.95, 0.99, 1.0].iter().enumerate() {
            series[i].push((x, quantile(b, *q).max(0.01)));
        }
    }
    let max_ms = series[3].iter().map(|p| p.1).fold(1.0, f64::max) * 1.5;
    let mut buf = String::new();
    {
        let root = area(&mut buf);
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "Latency quantiles per second, ok ops (ms, log)",
                ("sans-serif", 16),
            )
            .margin(8)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(0f64..(secs as f64), (0.01f64..max_ms).log_scale())
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("seconds")
            .y_desc("ms")
            .light_line_style(WHITE)
            .draw()
            .map_err(|e| e.to_string())?;
        shade_faults(&mut chart, run, 0.01, max_ms)?;
        let colours = [
            RGBColor(40, 90, 200),
            RGBColor(120, 60, 180),
            RGBColor(220, 120, 20),
            RGBColor(200, 40, 40),
        ];
        for (i, name) in ["p50", "p95", "p99", "max"].iter().enumerate() {
            line(&mut chart, series[i].clone(), colours[i], name)?;
        }
        legend(&mut chart)?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(buf)
}

/// Completions per second by outcome.
pub fn throughput(run: &Run) -> Result<String, String> {
    let counts = count_by_second(run, 3, |op, _| Some(op.outcome as usize));
    let series: Vec<(&str, RGBColor, Vec<u64>)> = [Outcome::Ok, Outcome::Fail, Outcome::Info]
        .into_iter()
        .map(|o| (o.name(), outcome_colour(o), counts[o as usize].clone()))
        .collect();
    per_second(
        run,
        "Throughput by outcome (completions per second)",
        "ops/s",
        &series,
    )
}

/// Counts per second of a run, one line per named series (each a count for
/// every whole second of the run), with fault windows shaded.
pub(crate) fn per_second(
    run: &Run,
    caption: &str,
    y_desc: &str,
    series: &[(&str, RGBColor, Vec<u64>)],
) -> Result<String, String> {
    let secs = (run.end / 1_000_000_000 + 1) as usize;
    let max = series
        .iter()
        .flat_map(|(_, _, c)| c.iter().copied())
        .max()
        .unwrap_or(1)
        .max(1) as f64
        * 1.15;
    let mut buf = String::new();
    {
        let root = area(&mut buf);
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .caption(caption, ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(0f64..(secs as f64), 0f64..max)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("seconds")
            .y_desc(y_desc)
            .light_line_style(WHITE)
            .draw()
            .map_err(|e| e.to_string())?;
        shade_faults(&mut chart, run, 0.0, max)?;
        for (name, colour, counts) in series {
            let pts: Vec<(f64, f64)> = counts
                .iter()
                .enumerate()
                .map(|(s, c)| (s as f64 + 0.5, *c as f64))
                .collect();
            line(&mut chart, pts, *colour, name)?;
        }
        legend(&mut chart)?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(buf)
}

/// Counts of the run's ops whose completion `pick` puts in a series, per
/// second: `series` names are the values `pick` may answer.
pub(crate) fn count_by_second(
    run: &Run,
    series: usize,
    pick: impl Fn(&crate::data::OpRecord, &str) -> Option<usize>,
) -> Vec<Vec<u64>> {
    let secs = (run.end / 1_000_000_000 + 1) as usize;
    let mut counts = vec![vec![0u64; secs]; series];
    for op in &run.ops {
        let name = run.names.get(op.f as usize).map_or("", String::as_str);
        if let Some(i) = pick(op, name).filter(|i| *i < series) {
            counts[i][((op.end / 1_000_000_000) as usize).min(secs - 1)] += 1;
        }
    }
    counts
}
