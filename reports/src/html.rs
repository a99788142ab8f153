//! HTML helpers: escaping and the page frame (inline CSS, no external resources).

/// Escapes text for HTML content and attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A whole page around `body`.
pub fn page(title: &str, body: &str) -> String {
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{}</title>
<style>
body {{ font-family: sans-serif; margin: 20px auto; max-width: 1000px; color: #222; }}
h1 {{ font-size: 22px; }} h2 {{ font-size: 18px; margin-top: 28px; border-bottom: 1px solid #ddd; }}
.verdict {{ display: inline-block; padding: 2px 10px; border-radius: 4px; color: white; font-weight: bold; }}
.valid {{ background: #2e8b57; }} .invalid {{ background: #c83232; }} .unknown {{ background: #e69614; }}
table {{ border-collapse: collapse; font-size: 13px; }} td, th {{ border: 1px solid #ddd; padding: 3px 8px; text-align: left; }}
code, pre {{ background: #f4f4f4; padding: 1px 4px; }} pre {{ padding: 8px; overflow-x: auto; }}
.note {{ color: #666; font-size: 13px; }} .controls {{ margin: 6px 0; }}
</style></head><body>
{}
</body></html>
"#,
        escape(title),
        body
    )
}

/// A verdict badge for `true`, `false` or `"unknown"`.
pub fn verdict(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Bool(true) => "<span class=\"verdict valid\">valid</span>".to_string(),
        serde_json::Value::Bool(false) => {
            "<span class=\"verdict invalid\">invalid</span>".to_string()
        }
        _ => "<span class=\"verdict unknown\">unknown</span>".to_string(),
    }
}

/// What the named checkers found (their `examples`, or `cycles`), at most five
/// each, as they reported it.
pub(crate) fn findings(results: &serde_json::Value, checkers: &[&str]) -> String {
    let mut html = String::new();
    for name in checkers {
        let r = &results["checkers"][name];
        let found = r["examples"]
            .as_array()
            .or(r["cycles"].as_array())
            .filter(|a| !a.is_empty());
        if let Some(found) = found {
            html.push_str(&format!(
                "<h3>{}: what was found</h3><pre>{}</pre>",
                escape(name),
                escape(
                    &serde_json::to_string_pretty(&found[..found.len().min(5)]).unwrap_or_default()
                )
            ));
        }
    }
    html
}
