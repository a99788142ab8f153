//! `report.html` for one run: verdicts, configuration and replay command, the
//! plots, the counterexample, the timeline and links to the node logs.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::data::Run;
use crate::html::{escape, page, verdict};
use crate::{
    anomalies, bank, cache, counterexample, events, locks, lost_writes, mesh, plots, queue, saga,
    timeline, ReportError,
};

/// Renders the report of the run in `dir` into `dir/report.html`.
pub fn render(dir: &Path) -> Result<PathBuf, ReportError> {
    let run = Run::load(dir)?;
    let diagrams = crate::lamport::write(dir)?;
    let mut html = render_html(&run)?;
    if let Some(panel) = crate::maelstrom::section(&run, &diagrams) {
        // Before the configuration, after the operations table.
        match html.find("<h2>Configuration</h2>") {
            Some(at) => html.insert_str(at, &panel),
            None => html.push_str(&panel),
        }
    }
    let out = dir.join("report.html");
    std::fs::write(&out, html).map_err(|e| ReportError::Io(out.clone(), e))?;
    Ok(out)
}

/// The report page of a loaded run.
pub fn render_html(run: &Run) -> Result<String, ReportError> {
    let r = &run.results;
    let mut body = String::new();
    let name = run
        .dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let workload = run.test["workload"].as_str().unwrap_or("history");
    body.push_str(&format!(
        "<h1>{} — {} {}</h1>",
        escape(workload),
        escape(&name),
        verdict(&r["valid"])
    ));
    if let Some(slug) = crate::explain::slug_for(workload) {
        body.push_str(&format!(
            "<p class=\"note\"><a href=\"../../explain/{slug}.html\">How this pattern works, and which fault exposes which planted bug</a></p>"
        ));
    }

    body.push_str(
        "<h2>Verdicts</h2><table><tr><th>checker</th><th>verdict</th><th>details</th></tr>",
    );
    if let Some(checkers) = r["checkers"].as_object() {
        for (checker, result) in checkers {
            // Every checker says in one line what it saw (its `summary`).
            let details = result["summary"].as_str().unwrap_or_default().to_string();
            let badge = if result.get("valid").is_some() {
                verdict(&result["valid"])
            } else {
                "–".to_string()
            };
            body.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(checker),
                badge,
                escape(&details)
            ));
        }
    }
    body.push_str("</table>");

    if let Some(stats) = r["checkers"]["stats"]["by_f"].as_object() {
        body.push_str("<h2>Operations</h2><table><tr><th>op</th><th>ok</th><th>fail</th><th>info</th><th>p50 ms</th><th>p99 ms</th><th>max ms</th></tr>");
        for (f, counts) in stats {
            let lat = &r["checkers"]["perf"]["latency_ms"][f];
            body.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(f),
                counts["ok"].as_u64().unwrap_or(0),
                counts["fail"].as_u64().unwrap_or(0),
                counts["info"].as_u64().unwrap_or(0),
                lat["p50"],
                lat["p99"],
                lat["max"]
            ));
        }
        body.push_str("</table>");
    }

    body.push_str("<h2>Configuration</h2>");
    if let Some(cmd) = run.test["command"].as_str() {
        body.push_str(&format!("<p>Replay with:</p><pre>{}</pre>", escape(cmd)));
    }
    if !run.test.is_null() {
        body.push_str(&format!(
            "<details><summary>test.json (seed {})</summary><pre>{}</pre></details>",
            run.test["seed"],
            escape(&serde_json::to_string_pretty(&run.test).unwrap_or_default())
        ));
    }

    body.push_str("<h2>Latency and throughput</h2>");
    if run.faults.is_empty() {
        body.push_str("<p class=\"note\">No faults were injected.</p>");
    } else {
        body.push_str("<p class=\"note\">Shaded bands are fault windows: ");
        let kinds: std::collections::BTreeSet<&str> =
            run.faults.iter().map(|f| f.kind.as_str()).collect();
        body.push_str(&escape(&kinds.into_iter().collect::<Vec<_>>().join(", ")));
        body.push_str(".</p>");
    }
    for plot in [
        plots::latency_scatter(run),
        plots::latency_quantiles(run),
        plots::throughput(run),
    ] {
        body.push_str("<div class=\"plot\">");
        body.push_str(&plot.map_err(ReportError::Plot)?);
        body.push_str("</div>");
    }

    for panel in [
        locks::section(run),
        queue::section(run),
        cache::section(run),
        bank::section(run),
        events::section(run),
        saga::section(run),
        mesh::section(run),
    ] {
        if let Some(panel) = panel.map_err(ReportError::Plot)? {
            body.push_str(&panel);
        }
    }

    let failures = r["checkers"]["linearizable"]["failures"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut focus = None;
    if !failures.is_empty() {
        body.push_str("<h2>Counterexample</h2>");
        for f in failures.iter().take(3) {
            body.push_str(&counterexample::section(f));
        }
        focus = failures[0]["op"]["invoke_line"].as_u64();
    }
    body.push_str(&lost_writes::section(&r["checkers"]["lost-writes"]));
    body.push_str(&anomalies::section(r));

    body.push_str(&timeline::section(run, focus));

    if !run.faults.is_empty() {
        body.push_str("<h2>Faults</h2><table><tr><th>fault</th><th>from s</th><th>to s</th><th>what</th></tr>");
        for f in &run.faults {
            body.push_str(&format!(
                "<tr><td>{}</td><td>{:.2}</td><td>{:.2}</td><td><code>{}</code></td></tr>",
                escape(&f.kind),
                f.start as f64 / 1e9,
                f.end as f64 / 1e9,
                escape(&f.detail)
            ));
        }
        body.push_str("</table>");
    }

    if !run.nodes.is_empty() {
        body.push_str("<h2>Node logs</h2><ul>");
        for n in &run.nodes {
            body.push_str(&format!(
                "<li><a href=\"nodes/{0}/node.log\">{0}</a></li>",
                escape(n)
            ));
        }
        body.push_str("</ul>");
    }
    body.push_str("<p class=\"note\"><a href=\"history.jsonl\">history.jsonl</a> · <a href=\"results.json\">results.json</a> · <a href=\"test.json\">test.json</a></p>");
    let _ = Value::Null;
    Ok(page(&format!("Faultline {workload} {name}"), &body))
}
