//! The `lost-writes` checker in a report: a line for the verdict table and a
//! table of the writes a later read shows gone, with the nodes involved.

use serde_json::Value;

use crate::html::escape;

fn secs(op: &Value, field: &str) -> String {
    op[field]
        .as_f64()
        .map_or("?".into(), |t| format!("{:.3}", t / 1e9))
}

fn node(n: &Value) -> String {
    n.as_str().unwrap_or("?").to_string()
}

/// A table of the examples, or nothing when no read missed a write.
pub fn section(result: &Value) -> String {
    let Some(examples) = result["examples"].as_array().filter(|e| !e.is_empty()) else {
        return String::new();
    };
    let mut html = String::from(
        "<h2>Lost writes</h2><p>Each row: an acknowledged write, then a read that began after it \
         ended and returned a value nothing could have written since. <em>lost</em>: the key's \
         last read misses it too; <em>missed</em>: a later read sees it again (a stale read).</p>\
         <table><tr><th>key</th><th>write</th><th>acknowledged by</th><th>at s</th>\
         <th>read returned</th><th>answered by</th><th>at s</th><th>lines</th><th></th></tr>",
    );
    for e in examples {
        let (w, r) = (&e["write"], &e["read"]);
        html.push_str(&format!(
            "<tr><td>{}</td><td>{} {}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}, {}</td><td>{}</td></tr>",
            escape(
                &e["key"]
                    .as_str()
                    .map_or(e["key"].to_string(), str::to_string)
            ),
            escape(w["f"].as_str().unwrap_or("write")),
            escape(&w["value"].to_string()),
            escape(&node(&e["write_node"])),
            secs(w, "complete_time"),
            escape(&r["output"].to_string()),
            escape(&node(&e["read_node"])),
            secs(r, "invoke_time"),
            w["invoke_line"],
            r["invoke_line"],
            if e["lost"] == true { "lost" } else { "missed" },
        ));
    }
    html.push_str("</table>");
    html
}
