//! The per-process timeline (like Jepsen's): one row per process, one bar per op.
//! The page embeds a bounded window of ops and draws a page of them at a time with
//! a few lines of JavaScript, so a long run never freezes the browser.

use crate::data::{Outcome, Run};

/// Ops embedded in the page at most.
pub const MAX_EMBEDDED: usize = 20_000;
/// Ops drawn per page.
pub const PAGE: usize = 300;

/// The ops to embed: all of them if few, else a window around `focus` (the first
/// failure's invoke line), else the first ones.
fn window(run: &Run, focus_line: Option<u64>) -> (usize, usize) {
    let n = run.ops.len();
    if n <= MAX_EMBEDDED {
        return (0, n);
    }
    let centre = focus_line
        .and_then(|l| run.ops.iter().position(|o| o.line >= l))
        .unwrap_or(MAX_EMBEDDED / 2);
    let start = centre
        .saturating_sub(MAX_EMBEDDED / 2)
        .min(n - MAX_EMBEDDED);
    (start, start + MAX_EMBEDDED)
}

/// The timeline section: data, controls and the drawing script.
pub fn section(run: &Run, focus_line: Option<u64>) -> String {
    let (from, to) = window(run, focus_line);
    let mut data = String::with_capacity((to - from) * 48);
    data.push('[');
    for (i, op) in run.ops[from..to].iter().enumerate() {
        if i > 0 {
            data.push(',');
        }
        let label = format!(
            "{} {} {}{}",
            run.names[op.f as usize],
            op.key.as_deref().unwrap_or(""),
            op.input,
            op.output
                .as_ref()
                .map(|o| format!(" → {o}"))
                .unwrap_or_default()
        );
        let outcome = match op.outcome {
            Outcome::Ok => 0,
            Outcome::Fail => 1,
            Outcome::Info => 2,
        };
        data.push_str(&format!(
            "[{},{:.3},{:.3},{},{},{}]",
            op.process,
            op.start as f64 / 1e6,
            op.end as f64 / 1e6,
            outcome,
            op.line,
            serde_json::to_string(&label).unwrap_or_else(|_| "\"\"".into())
        ));
    }
    data.push(']');
    // JSON inside <script>: keep "</" from closing the tag.
    let data = data.replace("</", "<\\/");
    let note = if to - from < run.ops.len() {
        format!(
            "<p class=\"note\">Showing ops {}–{} of {} (a window around the first failure, or the start).</p>",
            from + 1,
            to,
            run.ops.len()
        )
    } else {
        String::new()
    };
    format!(
        r##"<section id="timeline"><h2>Timeline</h2>{note}
<div class="controls"><button id="tl-prev">◀ earlier</button> <button id="tl-next">later ▶</button>
<span id="tl-range"></span></div>
<div id="tl-svg"></div>
<script>
(function() {{
  const ops = {data};
  const page = {PAGE};
  let at = 0;
  const colours = ["#2e8b57", "#c83232", "#e69614"];
  function draw() {{
    const slice = ops.slice(at, at + page);
    const procs = [...new Set(slice.map(o => o[0]))].sort((a, b) => a - b);
    const row = new Map(procs.map((p, i) => [p, i]));
    const t0 = Math.min(...slice.map(o => o[1]));
    const t1 = Math.max(...slice.map(o => o[2]), t0 + 1);
    const w = 940, rowH = 18, left = 60;
    const x = t => left + (t - t0) / (t1 - t0) * (w - left - 10);
    let svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${{w}}" height="${{procs.length * rowH + 30}}">`;
    procs.forEach((p, i) => {{ svg += `<text x="4" y="${{i * rowH + 13}}" font-size="11">p${{p}}</text>`; }});
    for (const o of slice) {{
      const y = row.get(o[0]) * rowH + 2;
      const x0 = x(o[1]), x1 = Math.max(x(o[2]), x0 + 2);
      const title = o[5].replace(/&/g, "&amp;").replace(/</g, "&lt;");
      svg += `<rect x="${{x0}}" y="${{y}}" width="${{x1 - x0}}" height="${{rowH - 4}}" fill="${{colours[o[3]]}}" opacity="0.75"><title>line ${{o[4]}}: ${{title}} (${{(o[2] - o[1]).toFixed(2)}} ms)</title></rect>`;
    }}
    svg += `<text x="${{left}}" y="${{procs.length * rowH + 20}}" font-size="11">${{t0.toFixed(1)}} ms</text>`;
    svg += `<text x="${{w - 10}}" y="${{procs.length * rowH + 20}}" font-size="11" text-anchor="end">${{t1.toFixed(1)}} ms</text></svg>`;
    document.getElementById("tl-svg").innerHTML = svg;
    document.getElementById("tl-range").textContent = `ops ${{at + 1}}–${{Math.min(at + page, ops.length)}} of ${{ops.length}} embedded`;
  }}
  document.getElementById("tl-prev").onclick = () => {{ at = Math.max(0, at - page); draw(); }};
  document.getElementById("tl-next").onclick = () => {{ if (at + page < ops.length) {{ at += page; draw(); }} }};
  if (ops.length) draw();
}})();
</script></section>"##,
        note = note,
        data = data,
        PAGE = PAGE
    )
}
