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

/// Compares two run folders, or two `harness bench --suite` folders (each
/// with a `bench.json` holding `suite`).
pub fn compare(base: &Path, current: &Path, t: Thresholds) -> Result<Comparison, ReportError> {
    let suite = |d: &Path| d.join("bench.json").is_file();
    match (suite(base), suite(current)) {
        (true, true) => return compare_suites(base, current, t),
        (true, false) | (false, true) => {
            let (bench, run) = if suite(base) {
                (base, current)
            } else {
                (current, base)
            };
            return Err(ReportError::Shape {
                path: run.to_path_buf(),
                message: format!(
                    "is not a bench folder like {} (no bench.json): compare two runs or two benches",
                    bench.display()
                ),
            });
        }
        (false, false) => {}
    }
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

/// Reads a suite's `bench.json` and checks the fields the comparison uses.
fn load_suite(dir: &Path) -> Result<Value, ReportError> {
    let path = dir.join("bench.json");
    let bytes = std::fs::read(&path).map_err(|e| ReportError::Io(path.clone(), e))?;
    let bench: Value = serde_json::from_slice(&bytes).map_err(|e| ReportError::Parse {
        path: path.clone(),
        line: e.line() as u64,
        message: e.to_string(),
    })?;
    let shape = |message: String| ReportError::Shape {
        path: path.clone(),
        message,
    };
    if !bench["suite"].is_array() {
        return Err(shape(
            "`suite` is missing: not a `harness bench --suite` result (target benches are compared by eye)".into(),
        ));
    }
    let rows = bench["rows"].as_array().ok_or_else(|| {
        shape(format!(
            "`rows` must be an array, found {}",
            found(&bench["rows"])
        ))
    })?;
    for (i, r) in rows.iter().enumerate() {
        for field in ["workload", "concurrency", "runs", "valid_runs"] {
            if r[field].is_null() {
                return Err(shape(format!("`rows[{i}].{field}` is missing")));
            }
        }
        for q in ["median", "min", "max"] {
            if !r["ok_per_second"][q].is_number() {
                return Err(shape(format!(
                    "`rows[{i}].ok_per_second.{q}` must be a number, found {}",
                    found(&r["ok_per_second"][q])
                )));
            }
        }
    }
    Ok(bench)
}

/// Compares two suites row by row, (workload, clients) with (workload,
/// clients). A change is a regression only when it passes the threshold on the
/// medians *and* leaves the base's measured spread (current max below base
/// min for throughput, current min above base max for p99), so noise within
/// the spread never fails CI. Fewer valid runs than the base had is a
/// correctness regression.
fn compare_suites(base: &Path, current: &Path, t: Thresholds) -> Result<Comparison, ReportError> {
    let (b, c) = (load_suite(base)?, load_suite(current)?);
    if b["suite"] != c["suite"] {
        return Err(ReportError::Shape {
            path: current.join("bench.json"),
            message: format!(
                "measures the suite {} but the base measures {}: compare like with like",
                c["suite"], b["suite"]
            ),
        });
    }
    let key = |r: &Value| (r["workload"].to_string(), r["concurrency"].to_string());
    let empty = Vec::new();
    let current_rows = c["rows"].as_array().unwrap_or(&empty);
    let mut rows = Vec::new();
    for br in b["rows"].as_array().unwrap_or(&empty) {
        let name = format!(
            "{} x{}",
            br["workload"].as_str().unwrap_or("?"),
            br["concurrency"]
        );
        let Some(cr) = current_rows.iter().find(|r| key(r) == key(br)) else {
            rows.push(Row {
                metric: name,
                base: "measured".into(),
                current: "missing".into(),
                change_pct: None,
                regression: Some("not measured in the current run".into()),
            });
            continue;
        };
        let all_valid = |r: &Value| r["valid_runs"] == r["runs"];
        rows.push(Row {
            metric: format!("{name} valid runs"),
            base: format!("{}/{}", br["valid_runs"], br["runs"]),
            current: format!("{}/{}", cr["valid_runs"], cr["runs"]),
            change_pct: None,
            regression: (all_valid(br) && !all_valid(cr))
                .then(|| "correctness regression".to_string()),
        });
        let q = |v: &Value, f: &str| v[f].as_f64().unwrap_or(0.0);
        let span = |v: &Value| {
            format!(
                "{:.1} [{:.1}-{:.1}]",
                q(v, "median"),
                q(v, "min"),
                q(v, "max")
            )
        };
        let (bt, ct) = (&br["ok_per_second"], &cr["ok_per_second"]);
        let change = pct(q(bt, "median"), q(ct, "median"));
        rows.push(Row {
            metric: format!("{name} ok ops/s"),
            base: span(bt),
            current: span(ct),
            change_pct: change,
            regression: change
                .filter(|c| -c > t.max_throughput_drop_pct && q(ct, "max") < q(bt, "min"))
                .map(|c| {
                    format!(
                        "throughput dropped {:.1}% (limit {}%), beyond the base's spread",
                        -c, t.max_throughput_drop_pct
                    )
                }),
        });
        for (f, bo) in br["ops"].as_object().into_iter().flatten() {
            let (bp, cp) = (&bo["p99_ms"], &cr["ops"][f]["p99_ms"]);
            if !bp["median"].is_number() || !cp["median"].is_number() {
                continue;
            }
            let change = pct(q(bp, "median"), q(cp, "median"));
            rows.push(Row {
                metric: format!("{name} {f} p99 (ms)"),
                base: span(bp),
                current: span(cp),
                change_pct: change,
                regression: change
                    .filter(|c| *c > t.max_p99_rise_pct && q(cp, "min") > q(bp, "max"))
                    .map(|c| {
                        format!(
                            "{f} p99 rose {c:.1}% (limit {}%), beyond the base's spread",
                            t.max_p99_rise_pct
                        )
                    }),
            });
        }
    }
    Ok(Comparison {
        base: base.display().to_string(),
        current: current.display().to_string(),
        rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const T: Thresholds = Thresholds {
        max_throughput_drop_pct: 20.0,
        max_p99_rise_pct: 50.0,
    };

    /// A suite folder with one lock row: throughput and p99 as (median, min, max).
    fn suite(dir: &Path, tput: (f64, f64, f64), p99: (f64, f64, f64), valid: u64) {
        let q = |(m, lo, hi): (f64, f64, f64)| json!({"median": m, "min": lo, "max": hi});
        let bench = json!({"suite": ["lock"], "rows": [{
            "workload": "lock", "concurrency": 16, "runs": 3, "valid_runs": valid,
            "ok_per_second": q(tput),
            "ops": {"acquire": {"p50_ms": q(p99), "p99_ms": q(p99)}}}]});
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("bench.json"), bench.to_string()).unwrap();
    }

    #[test]
    fn suites_fail_only_on_changes_beyond_threshold_and_spread() {
        let d = tempfile::tempdir().unwrap();
        let (base, same, noisy, slow, broken) = (
            d.path().join("base"),
            d.path().join("same"),
            d.path().join("noisy"),
            d.path().join("slow"),
            d.path().join("broken"),
        );
        suite(&base, (1000.0, 800.0, 1100.0), (10.0, 8.0, 14.0), 3);
        suite(&same, (1010.0, 900.0, 1050.0), (11.0, 9.0, 13.0), 3);
        // The median fell 25%, but the runs overlap the base's: noise.
        suite(&noisy, (750.0, 700.0, 900.0), (16.0, 12.0, 20.0), 3);
        suite(&slow, (500.0, 450.0, 550.0), (40.0, 35.0, 45.0), 3);
        suite(&broken, (1000.0, 900.0, 1100.0), (10.0, 9.0, 11.0), 2);
        assert!(!compare(&base, &same, T).unwrap().failed());
        assert!(!compare(&base, &noisy, T).unwrap().failed());
        let c = compare(&base, &slow, T).unwrap();
        let failed: Vec<&str> = c
            .rows
            .iter()
            .filter(|r| r.regression.is_some())
            .map(|r| r.metric.as_str())
            .collect();
        assert_eq!(failed, ["lock x16 ok ops/s", "lock x16 acquire p99 (ms)"]);
        assert!(c.markdown().contains("beyond the base's spread"));
        let c = compare(&base, &broken, T).unwrap();
        assert!(c
            .rows
            .iter()
            .any(|r| r.regression.as_deref() == Some("correctness regression")));
    }

    #[test]
    fn mismatched_or_malformed_benches_are_refused_naming_what_is_wrong() {
        let d = tempfile::tempdir().unwrap();
        let base = d.path().join("base");
        suite(&base, (1000.0, 800.0, 1100.0), (10.0, 8.0, 14.0), 3);
        let other = d.path().join("other");
        std::fs::create_dir_all(&other).unwrap();
        std::fs::write(
            other.join("bench.json"),
            json!({"suite": ["kv"], "rows": []}).to_string(),
        )
        .unwrap();
        let e = compare(&base, &other, T).unwrap_err().to_string();
        assert!(e.contains("compare like with like"), "{e}");
        let run = d.path().join("run");
        std::fs::create_dir_all(&run).unwrap();
        let e = compare(&base, &run, T).unwrap_err().to_string();
        assert!(e.contains("no bench.json"), "{e}");
        let bad = d.path().join("bad");
        std::fs::create_dir_all(&bad).unwrap();
        std::fs::write(
            bad.join("bench.json"),
            json!({"suite": ["lock"], "rows": [{"workload": "lock", "concurrency": 1, "runs": 1, "valid_runs": 1, "ok_per_second": {"median": "fast"}}]}).to_string(),
        )
        .unwrap();
        let e = compare(&base, &bad, T).unwrap_err().to_string();
        assert!(e.contains("rows[0].ok_per_second.median"), "{e}");
    }
}
