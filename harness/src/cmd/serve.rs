//! `harness serve`: a small static file server for the run store, on loopback only.

use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::{EXIT_BAD_INPUT, EXIT_INTERNAL};

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("json") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        _ => "text/plain; charset=utf-8",
    }
}

/// The file under `root` a request path names, refusing any escape from it.
fn resolve(root: &Path, request: &str) -> Option<PathBuf> {
    let path = request.split('?').next().unwrap_or("/");
    let mut out = root.to_path_buf();
    for part in Path::new(path.trim_start_matches('/')).components() {
        match part {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            _ => return None,
        }
    }
    if out.is_dir() {
        out.push("index.html");
    }
    Some(out)
}

async fn answer(root: PathBuf, mut stream: tokio::net::TcpStream) {
    let mut buf = vec![0u8; 8192];
    let Ok(n) = stream.read(&mut buf).await else {
        return;
    };
    let head = String::from_utf8_lossy(&buf[..n]);
    let mut parts = head.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
    let (status, ctype, body) = if method != "GET" {
        (
            "405 Method Not Allowed",
            "text/plain",
            b"only GET\n".to_vec(),
        )
    } else {
        match resolve(&root, target).map(|p| (std::fs::read(&p), p)) {
            Some((Ok(bytes), p)) => ("200 OK", content_type(&p), bytes),
            Some((Err(_), _)) => ("404 Not Found", "text/plain", b"not found\n".to_vec()),
            None => ("400 Bad Request", "text/plain", b"bad path\n".to_vec()),
        }
    };
    let header = format!("HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    let _ = stream.write_all(header.as_bytes()).await;
    let _ = stream.write_all(&body).await;
}

/// Serves `store` on 127.0.0.1:`port` until interrupted.
pub fn run(store: &Path, port: u16) -> ExitCode {
    if !store.is_dir() {
        eprintln!(
            "harness serve: {} is not a directory (run `harness run` first)",
            store.display()
        );
        return ExitCode::from(EXIT_BAD_INPUT);
    }
    let _ = reports::index::render(store);
    let root = store.to_path_buf();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("harness serve: {e}");
            return ExitCode::from(EXIT_INTERNAL);
        }
    };
    rt.block_on(async move {
        let listener = match TcpListener::bind(("127.0.0.1", port)).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("harness serve: cannot listen on 127.0.0.1:{port}: {e}");
                return ExitCode::from(EXIT_BAD_INPUT);
            }
        };
        println!("serving {} at http://127.0.0.1:{port}/ (Ctrl-C to stop)", root.display());
        loop {
            tokio::select! {
                Ok((stream, _)) = listener.accept() => { tokio::spawn(answer(root.clone(), stream)); }
                _ = tokio::signal::ctrl_c() => return ExitCode::SUCCESS,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside_the_store() {
        let root = Path::new("/srv/store");
        assert_eq!(
            resolve(root, "/kv/x/report.html"),
            Some(PathBuf::from("/srv/store/kv/x/report.html"))
        );
        assert_eq!(resolve(root, "/../etc/passwd"), None);
        assert_eq!(resolve(root, "/kv/../../x"), None);
    }
}
