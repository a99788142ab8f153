//! `store/index.html`: every run, newest first, verdict coloured, linking to its
//! report; then every bench, linking to its page of plots.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::html::{escape, page, verdict};
use crate::ReportError;

/// One run found in the store.
#[derive(Debug, Clone)]
pub struct RunEntry {
    /// Workload folder.
    pub workload: String,
    /// Run folder name (its timestamp).
    pub name: String,
    /// Path relative to the store root.
    pub rel: String,
    /// Verdict from results.json.
    pub valid: Value,
    /// Seed and nemesis, from test.json.
    pub test: Value,
    /// ok ops/s.
    pub ok_per_second: f64,
}

/// Every run under `store`, newest first.
pub fn runs(store: &Path) -> Vec<RunEntry> {
    let mut out = Vec::new();
    let Ok(workloads) = std::fs::read_dir(store) else {
        return out;
    };
    for w in workloads.filter_map(|e| e.ok()) {
        let wpath = w.path();
        if !wpath.is_dir() || w.file_name() == "latest" {
            continue;
        }
        let Ok(runs) = std::fs::read_dir(&wpath) else {
            continue;
        };
        for r in runs.filter_map(|e| e.ok()) {
            let rpath = r.path();
            let results: Value = std::fs::read(rpath.join("results.json"))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or(Value::Null);
            if results.is_null() {
                continue;
            }
            let test: Value = std::fs::read(rpath.join("test.json"))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or(Value::Null);
            out.push(RunEntry {
                workload: w.file_name().to_string_lossy().to_string(),
                name: r.file_name().to_string_lossy().to_string(),
                rel: format!(
                    "{}/{}",
                    w.file_name().to_string_lossy(),
                    r.file_name().to_string_lossy()
                ),
                valid: results["valid"].clone(),
                ok_per_second: results["checkers"]["perf"]["ok_per_second"]
                    .as_f64()
                    .unwrap_or(0.0),
                test,
            });
        }
    }
    out.sort_by(|a, b| b.name.cmp(&a.name));
    out
}

/// Every bench under `store/bench/` that has its page, newest first, with
/// its `bench.json`.
fn benches(store: &Path) -> Vec<(String, Value)> {
    let mut out: Vec<(String, Value)> = std::fs::read_dir(store.join("bench"))
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("bench.html").is_file())
        .filter_map(|e| {
            let json = std::fs::read(e.path().join("bench.json")).ok()?;
            Some((
                e.file_name().to_string_lossy().to_string(),
                serde_json::from_slice(&json).ok()?,
            ))
        })
        .collect();
    out.sort_by(|a, b| b.0.cmp(&a.0));
    out
}

/// Writes `store/index.html`.
pub fn render(store: &Path) -> Result<PathBuf, ReportError> {
    crate::explain::write(store)?;
    let mut body = String::from("<h1>Faultline runs</h1><p class=\"note\"><a href=\"explain/index.html\">How each pattern works</a></p><table><tr><th>run</th><th>workload</th><th>verdict</th><th>nemesis</th><th>bugs</th><th>seed</th><th>ok ops/s</th></tr>");
    let list = |v: &Value| {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default()
    };
    for r in runs(store) {
        body.push_str(&format!(
            "<tr><td><a href=\"{}/report.html\">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.0}</td></tr>",
            escape(&r.rel),
            escape(&r.name),
            escape(&r.workload),
            verdict(&r.valid),
            escape(&list(&r.test["nemesis"])),
            escape(&list(&r.test["bugs"])),
            r.test["seed"],
            r.ok_per_second
        ));
    }
    body.push_str("</table>");
    let benches = benches(store);
    if !benches.is_empty() {
        body.push_str(
            "<h2>Benches</h2><table><tr><th>bench</th><th>what</th><th>clients</th></tr>",
        );
        for (name, bench) in benches {
            let what = match (bench["suite"].as_array(), bench["targets"].as_array()) {
                (Some(s), _) => format!("suite: {}", list(&Value::Array(s.clone()))),
                (None, Some(t)) => format!("targets: {}", list(&Value::Array(t.clone()))),
                _ => String::new(),
            };
            let clients: Vec<String> = bench["concurrency"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| c.to_string())
                .collect();
            body.push_str(&format!(
                "<tr><td><a href=\"bench/{0}/bench.html\">{0}</a></td><td>{1}</td><td>{2}</td></tr>",
                escape(&name),
                escape(&what),
                escape(&clients.join(","))
            ));
        }
        body.push_str("</table>");
    }
    let out = store.join("index.html");
    std::fs::write(&out, page("Faultline runs", &body))
        .map_err(|e| ReportError::Io(out.clone(), e))?;
    Ok(out)
}
