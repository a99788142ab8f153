//! The lines a Maelstrom node prints, read with a bound: a line longer than
//! [`MAX_LINE_BYTES`] is dropped as it streams, and what the harness echoes of
//! any line is cut to [`ECHO_BYTES`], so a node printing megabytes cannot flood
//! the harness's memory or its terminal.

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// Longest line taken as a message; longer ones are dropped.
pub const MAX_LINE_BYTES: usize = 8 * 1024 * 1024;
/// Most bytes of a line quoted in a message to the user.
pub const ECHO_BYTES: usize = 512;

/// One line read: its text (only the first [`ECHO_BYTES`] of a line longer than
/// the bound) and its length in bytes.
pub struct Line {
    pub text: String,
    pub len: usize,
}

/// Reads the next line (without its newline), keeping at most `max` bytes of
/// it: a longer line comes back with its first `ECHO_BYTES` and its full
/// length. `None` at the end of the output.
pub async fn next_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> std::io::Result<Option<Line>> {
    let mut kept = Vec::new();
    let mut len = 0usize;
    loop {
        let chunk = reader.fill_buf().await?;
        if chunk.is_empty() {
            if len == 0 {
                return Ok(None);
            }
            break;
        }
        let (part, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (&chunk[..i], Some(i + 1)),
            None => (chunk, None),
        };
        len += part.len();
        let room = if len <= max {
            part.len()
        } else {
            ECHO_BYTES.saturating_sub(kept.len())
        };
        kept.extend_from_slice(&part[..room.min(part.len())]);
        let used = done.unwrap_or(chunk.len());
        reader.consume(used);
        if done.is_some() {
            break;
        }
    }
    if len > max {
        kept.truncate(ECHO_BYTES);
    }
    Ok(Some(Line {
        text: String::from_utf8_lossy(&kept).into_owned(),
        len,
    }))
}

/// `text` as it is when short, else its first [`ECHO_BYTES`] and its length.
pub fn excerpt(text: &str, len: usize) -> String {
    if len <= ECHO_BYTES && text.len() <= ECHO_BYTES {
        return text.to_string();
    }
    let mut end = ECHO_BYTES.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({len} bytes)", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn long_lines_are_kept_short_and_counted() {
        let big = "x".repeat(100_000);
        let input = format!("{{\"a\":1}}\n{big}\nlast");
        let mut reader = tokio::io::BufReader::with_capacity(4096, input.as_bytes());
        let first = next_line(&mut reader, 1000).await.unwrap().unwrap();
        assert_eq!((first.text.as_str(), first.len), ("{\"a\":1}", 7));
        let long = next_line(&mut reader, 1000).await.unwrap().unwrap();
        assert_eq!((long.text.len(), long.len), (ECHO_BYTES, 100_000));
        assert_eq!(
            excerpt(&long.text, long.len),
            format!("{}... (100000 bytes)", "x".repeat(ECHO_BYTES))
        );
        let last = next_line(&mut reader, 1000).await.unwrap().unwrap();
        assert_eq!((last.text.as_str(), last.len), ("last", 4));
        assert!(next_line(&mut reader, 1000).await.unwrap().is_none());
        // A line within the bound but over the echo size is cut when echoed.
        let s = "é".repeat(600);
        assert!(excerpt(&s, s.len()).ends_with(&format!("... ({} bytes)", s.len())));
        assert_eq!(excerpt("short", 5), "short");
    }
}
