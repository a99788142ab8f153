//! The node's listeners at the byte level. hyper answers a request it cannot
//! parse (400, 414 URI too long, 431 headers too large) itself, with an empty
//! body and no hook; [`Listener`] hands out connections that replace that answer
//! with the node's JSON error body, so every error a client sees has one shape.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// Most headers hyper reads in one request (its `DEFAULT_MAX_HEADERS`).
pub const MAX_HEADERS: usize = 100;
/// Most bytes hyper buffers for one request head (its `DEFAULT_MAX_BUFFER_SIZE`).
pub const MAX_HEAD_BYTES: usize = 8192 + 4096 * 100;
/// Longest request target hyper accepts (what `http::Uri` can hold).
pub const MAX_TARGET_BYTES: usize = u16::MAX as usize - 1;

/// A TCP listener whose connections answer hyper's own parse errors in JSON.
pub struct Listener(pub TcpListener);

impl axum::serve::Listener for Listener {
    type Io = JsonParseErrors<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (stream, addr) = axum::serve::Listener::accept(&mut self.0).await;
        (JsonParseErrors::new(stream), addr)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

/// A connection on which a response head that hyper wrote for a parse error
/// (status 400, 414 or 431, `content-length: 0`, no `content-type`) is replaced
/// by the same status with the node's JSON error body. The node's own answers
/// always carry `content-type: application/json`, so they never match.
pub struct JsonParseErrors<S> {
    inner: S,
    /// The replacement answer, and how much of it is written.
    pending: Vec<u8>,
    written: usize,
}

impl<S> JsonParseErrors<S> {
    /// Wraps a connection.
    pub fn new(inner: S) -> Self {
        JsonParseErrors {
            inner,
            pending: Vec::new(),
            written: 0,
        }
    }
}

impl<S: AsyncWrite + Unpin> JsonParseErrors<S> {
    /// Writes what is left of a replacement answer.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.pending.len() {
            let n =
                ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.pending.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for JsonParseErrors<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for JsonParseErrors<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.drain(cx))?;
        if let Some((head_len, answer)) = json_answer_for(buf) {
            self.pending = answer;
            // The head counts as written; the answer goes out on this call or
            // on the flush hyper makes before closing.
            if let Poll::Ready(Err(e)) = self.drain(cx) {
                return Poll::Ready(Err(e));
            }
            return Poll::Ready(Ok(head_len));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// When `buf` starts with a head hyper wrote for a parse error: the head's
/// length and the answer to send instead.
fn json_answer_for(buf: &[u8]) -> Option<(usize, Vec<u8>)> {
    let status = buf.strip_prefix(b"HTTP/1.1 ")?.get(..4)?;
    let message = match status {
        b"400 " => "not a valid HTTP/1.1 request: the method, the request target, the version or a header is malformed (the request target must be printable ASCII: percent-encode other bytes)".to_string(),
        b"414 " => format!("the request target is longer than {MAX_TARGET_BYTES} bytes"),
        b"431 " => format!("the request head is too large: more than {MAX_HEADERS} headers or {MAX_HEAD_BYTES} bytes"),
        _ => return None,
    };
    let head_len = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&buf[..head_len]).ok()?;
    let mut lines = head.split("\r\n").filter(|l| !l.is_empty());
    let status_line = lines.next()?;
    let headers: Vec<&str> = lines.collect();
    let has = |name: &str| {
        headers.iter().any(|h| {
            h.split_once(':')
                .is_some_and(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        })
    };
    let empty = headers.iter().any(|h| {
        h.split_once(':').is_some_and(|(n, v)| {
            n.trim().eq_ignore_ascii_case("content-length") && v.trim() == "0"
        })
    });
    if !empty || has("content-type") {
        return None;
    }
    let body = json!({"error": "malformed", "message": message, "definite": true}).to_string();
    let mut answer = format!(
        "{status_line}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
        body.len()
    );
    for h in headers.iter().filter(|h| {
        !h.split_once(':')
            .is_some_and(|(n, _)| n.trim().eq_ignore_ascii_case("content-length"))
    }) {
        answer.push_str(h);
        answer.push_str("\r\n");
    }
    answer.push_str("\r\n");
    answer.push_str(&body);
    Some((head_len, answer.into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hypers_empty_parse_error_heads_are_replaced() {
        let hyper = b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        let (len, answer) = json_answer_for(hyper).unwrap();
        assert_eq!(len, hyper.len());
        let text = String::from_utf8(answer).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 431 "), "{head}");
        assert!(head.contains("connection: close"), "{head}");
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"], "malformed");
        assert_eq!(v["definite"], true);
        // The node's own answers carry a content type and a body.
        let own = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
        assert!(json_answer_for(own).is_none());
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        assert!(json_answer_for(ok).is_none());
        // A partial head is passed on as it is.
        assert!(json_answer_for(&hyper[..20]).is_none());
    }
}
