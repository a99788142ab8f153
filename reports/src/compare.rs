//! `harness compare BASE CURRENT`: a regression report for CI. Correctness
//! verdicts, throughput, availability and p50/p99 per operation, side by side; a
//! correctness regression, or a performance change beyond the thresholds, fails.

use std::path::Path;

use serde_json::Value;

use crate::html::escape;
use crate::ReportError;

/// Limits beyond which a performance change is a regression.
#[derive(Clone, Copy, Debug)]
pub struct Thresholds {
    /// Largest allowed drop of ok ops/s, in percent.
    pub max_throughput_drop_pct: f64,
    /// Largest allowed rise of any op's p99 latency, in percent.
    pub max_p99_rise_pct: f64,
}

/// One line of the comparison.
#[derive(Clone, Debug)]
pub struct Row {
    /// What is compared.
    pub metric: String,
    /// Base value, as text.
    pub base: String,
    /// Current value, as text.
    pub current: String,
    /// Relative change in percent, for numbers.
    pub change_pct: Option<f64>,
    /// Why this row fails, if it does.
    pub regression: Option<String>,
}

/// The comparison of two runs.
#[derive(Clone, Debug)]
pub struct Comparison {
    /// Base run folder.
    pub base: String,
    /// Current run folder.
    pub current: String,
    /// Every metric.
    pub rows: Vec<Row>,
}

impl Comparison {
    /// True when any row is a regression.
    pub fn failed(&self) -> bool {
        self.rows.iter().any(|r| r.regression.is_some())
    }

    /// A Markdown table.
    pub fn markdown(&self) -> String {
        let mut s = format!(
            "## Faultline regression report\n\nbase `{}` → current `{}`: **{}**\n\n| metric | base | current | change | status |\n|---|---|---|---|---|\n",
            self.base,
            self.current,
            if self.failed() { "REGRESSION" } else { "ok" }
        );
        for r in &self.rows {
            s.push_str(&format!(
                "| {} | {} | {} | {} | {} |\n",
                r.metric,
                r.base,
                r.current,
                r.change_pct
                    .map(|c| format!("{c:+.1}%"))
                    .unwrap_or_default(),
                r.regression.as_deref().unwrap_or("ok")
            ));
        }
        s
    }

    /// A JUnit XML report: one test case per metric.
    pub fn junit(&self) -> String {
        let failures = self.rows.iter().filter(|r| r.regression.is_some()).count();
        let mut s = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuite name=\"faultline-compare\" tests=\"{}\" failures=\"{}\">\n",
            self.rows.len(),
            failures
        );
        for r in &self.rows {
            s.push_str(&format!(
                "  <testcase classname=\"faultline\" name=\"{}\">",
                escape(&r.metric)
            ));
            if let Some(why) = &r.regression {
                s.push_str(&format!(
                    "<failure message=\"{}\">base {} current {}</failure>",
                    escape(why),
                    escape(&r.base),
                    escape(&r.current)
                ));
            }
            s.push_str("</testcase>\n");
        }
        s.push_str("</testsuite>\n");
        s
    }
}

fn load(dir: &Path) -> Result<Value, ReportError> {
    let path = dir.join("results.json");
    let bytes = std::fs::read(&path).map_err(|e| ReportError::Io(path.clone(), e))?;
    let results: Value = serde_json::from_slice(&bytes).map_err(|e| ReportError::Parse {
        path: path.clone(),
        line: e.line() as u64,
        message: e.to_string(),
    })?;
    check_shape(&results).map_err(|message| ReportError::Shape { path, message })?;
    Ok(results)
}

fn found(v: &Value) -> String {
    let text = v.to_string();
    match text.char_indices().nth(60) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text,
    }
}

/// Checks the fields compare reads (docs/results.md): a JSON object with a
/// verdict `valid` and `checkers`, each an object with a verdict; `perf`'s
/// numbers when present. Without this, `[]` compared as "ok".
fn check_shape(results: &Value) -> Result<(), String> {
    let verdict = |v: &Value, field: &str| match v {
        Value::Bool(_) => Ok(()),
        Value::String(s) if s == "unknown" => Ok(()),
        Value::Null => Err(format!(
            "`{field}` is missing (a verdict: true, false or \"unknown\")"
        )),
        other => Err(format!(
            "`{field}` must be a verdict (true, false or \"unknown\"), found {}",
            found(other)
        )),
    };
    let number = |v: &Value, field: &str| match v {
        Value::Null | Value::Number(_) => Ok(()),
        other => Err(format!(
            "`{field}` must be a number, found {}",
            found(other)
        )),
    };
    if !results.is_object() {
        return Err(format!(
            "must be a JSON object with `valid` and `checkers` (docs/results.md), found {}",
            found(results)
        ));
    }
    verdict(&results["valid"], "valid")?;
    let checkers = results["checkers"].as_object().ok_or_else(|| {
        format!(
            "`checkers` must be an object of checker results, found {}",
            found(&results["checkers"])
        )
    })?;
    for (name, result) in checkers {
        if !result.is_object() {
            return Err(format!(
                "`checkers.{name}` must be an object with `valid`, found {}",
                found(result)
            ));
        }
        verdict(&result["valid"], &format!("checkers.{name}.valid"))?;
    }
    let perf = &results["checkers"]["perf"];
    number(&perf["ok_per_second"], "checkers.perf.ok_per_second")?;
    number(&perf["availability"], "checkers.perf.availability")?;
    match &perf["latency_ms"] {
        Value::Null => {}
        Value::Object(ops) => {
            for (f, q) in ops {
                if !q.is_object() {
                    return Err(format!(
                        "`checkers.perf.latency_ms.{f}` must be an object of quantiles, found {}",
                        found(q)
                    ));
                }
                for p in ["p50", "p99"] {
                    number(&q[p], &format!("checkers.perf.latency_ms.{f}.{p}"))?;
                }
            }
        }
        other => {
            return Err(format!(
                "`checkers.perf.latency_ms` must be an object, found {}",
                found(other)
            ))
        }
    }
    Ok(())
}

fn pct(base: f64, current: f64) -> Option<f64> {
    (base != 0.0).then(|| (current - base) / base * 100.0)
}

/// Compares two run folders.
pub fn compare(base: &Path, current: &Path, t: Thresholds) -> Result<Comparison, ReportError> {
    let (b, c) = (load(base)?, load(current)?);
    let mut rows = Vec::new();
    let verdict_row = |name: String, bv: &Value, cv: &Value| Row {
        metric: name,
        base: bv.to_string(),
        current: cv.to_string(),
        change_pct: None,
        regression: (*bv == Value::Bool(true) && *cv != Value::Bool(true))
            .then(|| "correctness regression".to_string()),
    };
    rows.push(verdict_row("valid".into(), &b["valid"], &c["valid"]));
    if let Some(checkers) = b["checkers"].as_object() {
        for (name, result) in checkers {
            if result.get("valid").is_some() && !matches!(name.as_str(), "stats" | "perf") {
                rows.push(verdict_row(
                    format!("{name}.valid"),
                    &result["valid"],
                    &c["checkers"][name]["valid"],
                ));
            }
        }
    }
    let (bp, cp) = (&b["checkers"]["perf"], &c["checkers"]["perf"]);
    let num = |v: &Value| v.as_f64().unwrap_or(0.0);
    let (bt, ct) = (num(&bp["ok_per_second"]), num(&cp["ok_per_second"]));
    let change = pct(bt, ct);
    rows.push(Row {
        metric: "throughput (ok ops/s)".into(),
        base: format!("{bt:.1}"),
        current: format!("{ct:.1}"),
        change_pct: change,
        regression: change.filter(|c| -c > t.max_throughput_drop_pct).map(|c| {
            format!(
                "throughput dropped {:.1}% (limit {}%)",
                -c, t.max_throughput_drop_pct
            )
        }),
    });
    let (ba, ca) = (
        num(&bp["availability"]) * 100.0,
        num(&cp["availability"]) * 100.0,
    );
    rows.push(Row {
        metric: "availability (%)".into(),
        base: format!("{ba:.1}"),
        current: format!("{ca:.1}"),
        change_pct: pct(ba, ca),
        regression: None,
    });
    if let Some(ops) = bp["latency_ms"].as_object() {
        for (f, bl) in ops {
            let cl = &cp["latency_ms"][f];
            for q in ["p50", "p99"] {
                let (x, y) = (num(&bl[q]), num(&cl[q]));
                let change = pct(x, y);
                let regression = (q == "p99")
                    .then_some(change)
                    .flatten()
                    .filter(|c| *c > t.max_p99_rise_pct)
                    .map(|c| format!("{f} p99 rose {c:.1}% (limit {}%)", t.max_p99_rise_pct));
                rows.push(Row {
                    metric: format!("{f} {q} (ms)"),
                    base: format!("{x:.2}"),
                    current: format!("{y:.2}"),
                    change_pct: change,
                    regression,
                });
            }
        }
    }
    Ok(Comparison {
        base: base.display().to_string(),
        current: current.display().to_string(),
        rows,
    })
}
