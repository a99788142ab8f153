//! The `bank` workload's panel: every total a read of all accounts saw, over
//! time, against the opening total, with fault windows shaded, and the reads
//! the checker found wrong.

use plotters::prelude::*;

use crate::data::Run;

const W: u32 = 960;
const H: u32 = 280;

fn plot(run: &Run, points: &[(f64, f64)], total: f64) -> Result<String, String> {
    let top = points.iter().map(|p| p.1).fold(total, f64::max) * 1.1 + 1.0;
    let bottom = points.iter().map(|p| p.1).fold(total, f64::min).min(0.0);
    let end = (run.end as f64 / 1e9).max(1.0);
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .caption("Total of every read of all accounts", ("sans-serif", 15))
            .margin(8)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..end, bottom..top)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("seconds")
            .light_line_style(WHITE)
            .draw()
            .map_err(|e| e.to_string())?;
        crate::plots::shade_faults(&mut chart, run, bottom, top)?;
        let grey = RGBColor(120, 120, 120);
        chart
            .draw_series(LineSeries::new([(0.0, total), (end, total)], grey))
            .map_err(|e| e.to_string())?
            .label("opening total")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], grey));
        let (ok, bad) = (RGBColor(46, 139, 87), RGBColor(200, 50, 50));
        chart
            .draw_series(points.iter().map(|&(t, v)| {
                let colour = if v == total { ok } else { bad };
                Circle::new((t, v), 2, colour.filled())
            }))
            .map_err(|e| e.to_string())?
            .label("a read's total")
            .legend(move |(x, y)| Circle::new((x + 7, y), 3, ok.filled()));
        crate::plots::legend(&mut chart)?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(buf)
}

/// The panel, when the run is a bank run.
pub fn section(run: &Run) -> Result<Option<String>, String> {
    let bank = &run.results["checkers"]["bank"];
    let Some(totals) = bank["totals"].as_array() else {
        return Ok(None);
    };
    let points: Vec<(f64, f64)> = totals
        .iter()
        .filter_map(|p| Some((p[0].as_f64()?, p[1].as_f64()?)))
        .collect();
    let total = bank["total"].as_f64().unwrap_or(0.0);
    let mut html = format!(
        "<h2>Bank</h2><p>{} accounts opened with {total} in all; {} reads, {} of them wrong.</p><div class=\"plot\">",
        bank["accounts"], bank["reads"], bank["bad_reads"]
    );
    html.push_str(&plot(run, &points, total)?);
    html.push_str("</div>");
    html.push_str(&crate::html::findings(&run.results, &["bank"]));
    Ok(Some(html))
}
