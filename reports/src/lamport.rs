//! Lamport diagrams of a Maelstrom run's messages (`messages.jsonl`, written
//! by the router): one lane per client, node and service, time running down,
//! one arrow per message from its sending to its arrival (dropped ones end in
//! a cross). Long runs are cut into windows of consecutive messages, each its
//! own SVG (`messages.svg`, `messages-2.svg`, ...) linked to the next;
//! hovering an arrow shows the message.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;

use serde::Deserialize;

use crate::html::escape;
use crate::ReportError;

/// Messages drawn per window.
const PER_WINDOW: usize = 250;
/// Windows drawn at most, spread over the run.
const WINDOWS: usize = 12;
/// Pixels between lanes.
const LANE: f64 = 90.0;
/// Height of the drawing area of one window.
const HEIGHT: f64 = 1400.0;

/// One message as the router journaled it.
#[derive(Debug, Deserialize)]
pub struct Message {
    from: String,
    to: String,
    sent_ms: f64,
    recv_ms: Option<f64>,
    body: String,
}

/// Lanes ordered clients, then nodes, then services, each by number.
fn lane_order(id: &str) -> (u8, u64, String) {
    let digits: String = id.chars().filter(char::is_ascii_digit).collect();
    let n = digits.parse().unwrap_or(0);
    let group = match id.chars().next() {
        Some('c') => 0,
        Some('n') => 1,
        _ => 2,
    };
    (group, n, id.to_string())
}

/// A colour for a message type, stable across windows.
fn colour(body: &str) -> &'static str {
    const PALETTE: [&str; 8] = [
        "#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#ff7f0e",
    ];
    let kind = body
        .split("\"type\":\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or("");
    let h = kind
        .bytes()
        .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(b as u32));
    PALETTE[h as usize % PALETTE.len()]
}

/// Draws one window.
fn svg(messages: &[Message], index: usize, total: usize, names: &[String]) -> String {
    let lanes: BTreeSet<(u8, u64, String)> = messages
        .iter()
        .flat_map(|m| [lane_order(&m.from), lane_order(&m.to)])
        .collect();
    let lanes: Vec<String> = lanes.into_iter().map(|l| l.2).collect();
    let x = |id: &str| 60.0 + LANE * lanes.iter().position(|l| l == id).unwrap_or(0) as f64;
    let t0 = messages
        .iter()
        .map(|m| m.sent_ms)
        .fold(f64::INFINITY, f64::min);
    let t1 = messages
        .iter()
        .map(|m| m.recv_ms.unwrap_or(m.sent_ms))
        .fold(f64::NEG_INFINITY, f64::max);
    let span = (t1 - t0).max(1.0);
    let y = |t: f64| 80.0 + (t - t0) / span * HEIGHT;
    let width = 120.0 + LANE * lanes.len().max(1) as f64;
    let height = HEIGHT + 140.0;
    let mut out = String::new();
    let _ = write!(
        out,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" font-family="sans-serif" font-size="12"><defs><marker id="a" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" markerHeight="6" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z"/></marker></defs><rect width="100%" height="100%" fill="white"/>"##
    );
    let _ = write!(
        out,
        r#"<text x="10" y="20">Messages {:.3} s to {:.3} s (window {} of {total}; hover an arrow for its message)</text>"#,
        t0 / 1e3,
        t1 / 1e3,
        index + 1
    );
    // Links to the other windows.
    let mut lx = 10.0;
    for (i, name) in names.iter().enumerate() {
        let label = if i == index {
            format!("[{}]", i + 1)
        } else {
            format!("{}", i + 1)
        };
        let _ = write!(
            out,
            r##"<a href="{}"><text x="{lx:.0}" y="40" fill="#1f5fbf">{label}</text></a>"##,
            escape(name)
        );
        lx += 12.0 + 8.0 * label.len() as f64;
    }
    for id in &lanes {
        let lx = x(id);
        let _ = write!(
            out,
            r##"<text x="{lx:.0}" y="68" text-anchor="middle" font-weight="bold">{}</text><line x1="{lx:.0}" y1="72" x2="{lx:.0}" y2="{:.0}" stroke="#bbb"/>"##,
            escape(id),
            80.0 + HEIGHT
        );
    }
    for m in messages {
        let (x1, y1) = (x(&m.from), y(m.sent_ms));
        let title = format!(
            "{} → {} at {:.1} ms{}: {}",
            m.from,
            m.to,
            m.sent_ms,
            m.recv_ms
                .map_or(" (dropped)".to_string(), |r| format!(", arrived {r:.1} ms")),
            m.body
        );
        match m.recv_ms {
            Some(r) => {
                let _ = write!(
                    out,
                    r#"<g><title>{}</title><line x1="{x1:.1}" y1="{y1:.1}" x2="{:.1}" y2="{:.1}" stroke="{}" stroke-width="1.2" marker-end="url(#a)"/></g>"#,
                    escape(&title),
                    x(&m.to),
                    y(r),
                    colour(&m.body)
                );
            }
            None => {
                // Half way to its receiver, then a cross.
                let (x2, y2) = ((x1 + x(&m.to)) / 2.0, y1 + 12.0);
                let _ = write!(
                    out,
                    r##"<g><title>{}</title><line x1="{x1:.1}" y1="{y1:.1}" x2="{x2:.1}" y2="{y2:.1}" stroke="#d62728" stroke-dasharray="3,2"/><path d="M{:.1},{:.1} l8,8 m0,-8 l-8,8" stroke="#d62728"/></g>"##,
                    escape(&title),
                    x2 - 4.0,
                    y2 - 4.0
                );
            }
        }
    }
    out.push_str("</svg>");
    out
}

/// Draws the run's diagrams into `dir` when it has a `messages.jsonl`;
/// answers the files written, first the one to link.
pub fn write(dir: &Path) -> Result<Vec<String>, ReportError> {
    let path = dir.join("messages.jsonl");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ReportError::Io(path, e)),
    };
    let mut messages = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let m: Message = serde_json::from_str(line).map_err(|e| ReportError::Parse {
            path: path.clone(),
            line: i as u64 + 1,
            message: e.to_string(),
        })?;
        messages.push(m);
    }
    if messages.is_empty() {
        return Ok(Vec::new());
    }
    messages.sort_by(|a, b| a.sent_ms.total_cmp(&b.sent_ms));
    let chunks: Vec<&[Message]> = messages.chunks(PER_WINDOW).collect();
    // Windows spread evenly over the run: the first, the last and between.
    let picked: Vec<usize> = if chunks.len() <= WINDOWS {
        (0..chunks.len()).collect()
    } else {
        let mut p: Vec<usize> = (0..WINDOWS)
            .map(|i| i * (chunks.len() - 1) / (WINDOWS - 1))
            .collect();
        p.dedup();
        p
    };
    let names: Vec<String> = (0..picked.len())
        .map(|i| {
            if i == 0 {
                "messages.svg".to_string()
            } else {
                format!("messages-{}.svg", i + 1)
            }
        })
        .collect();
    for (i, &c) in picked.iter().enumerate() {
        let file = dir.join(&names[i]);
        std::fs::write(&file, svg(chunks[c], i, picked.len(), &names))
            .map_err(|e| ReportError::Io(file, e))?;
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_lanes_and_dropped_messages_are_drawn() {
        let dir = tempfile::tempdir().unwrap();
        let mut lines = Vec::new();
        for i in 0..600 {
            let recv = if i % 7 == 0 {
                "null".to_string()
            } else {
                format!("{}", i as f64 + 0.5)
            };
            lines.push(format!(
                r#"{{"from":"n{}","to":"c1","sent_ms":{i},"recv_ms":{recv},"body":"{{\"type\":\"echo_ok\",\"echo\":\"<{i}>\"}}"}}"#,
                i % 3 + 1
            ));
        }
        std::fs::write(dir.path().join("messages.jsonl"), lines.join("\n")).unwrap();
        let names = write(dir.path()).unwrap();
        assert_eq!(
            names,
            vec!["messages.svg", "messages-2.svg", "messages-3.svg"]
        );
        let first = std::fs::read_to_string(dir.path().join("messages.svg")).unwrap();
        // Lanes: the client first, then the nodes by number.
        let c1 = first.find(">c1</text>").unwrap();
        let n1 = first.find(">n1</text>").unwrap();
        let n3 = first.find(">n3</text>").unwrap();
        assert!(c1 < n1 && n1 < n3);
        assert_eq!(
            first.matches("marker-end").count() + first.matches("stroke-dasharray").count(),
            PER_WINDOW
        );
        // Bodies are escaped in the hover text.
        assert!(first.contains("&lt;0&gt;") && !first.contains("<0>"));
        assert!(first.contains("(dropped)"));
        assert!(first.contains(r#"href="messages-3.svg""#));
        // No journal, no diagram.
        assert!(write(tempfile::tempdir().unwrap().path())
            .unwrap()
            .is_empty());
    }
}
