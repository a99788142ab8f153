//! An API-version shim for testcontainers. testcontainers 0.28 speaks Docker API
//! 1.53 and does not negotiate, while the engines seen here (Debian's 20.10) stop
//! at 1.41 and refuse anything newer. The shim is a Unix socket that forwards
//! every request to the engine's socket with the version in the path lowered to
//! what the engine supports; responses stream back untouched. It is started only
//! when the engine is older than the client.

use std::convert::Infallible;
use std::path::{Path, PathBuf};

use anyhow::Context;
use http_body_util::combinators::BoxBody;
use http_body_util::BodyExt;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::{UnixListener, UnixStream};

/// A running shim; the socket file is removed when it is dropped.
pub struct ApiShim {
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl ApiShim {
    /// The `DOCKER_HOST` value that reaches the shim.
    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.path.display())
    }
}

impl Drop for ApiShim {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// `/v1.53/containers/create` → `/v1.41/containers/create` when `engine` is 1.41.
fn lower_version(uri: &Uri, engine: &str) -> String {
    let pq = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    if let Some(rest) = pq.strip_prefix("/v") {
        if let Some(slash) = rest.find('/') {
            let version = &rest[..slash];
            if version.split('.').all(|p| p.parse::<u32>().is_ok()) && newer(version, engine) {
                return format!("/v{engine}{}", &rest[slash..]);
            }
        }
    }
    pq.to_string()
}

/// Whether dotted version `a` is newer than `b`.
pub fn newer(a: &str, b: &str) -> bool {
    let parse = |s: &str| -> Vec<u32> { s.split('.').filter_map(|p| p.parse().ok()).collect() };
    parse(a) > parse(b)
}

async fn forward(
    req: Request<Incoming>,
    engine_socket: PathBuf,
    engine_version: String,
) -> Result<Response<BoxBody<Bytes, hyper::Error>>, Infallible> {
    let failed = |msg: String| {
        let body = http_body_util::Full::new(Bytes::from(
            serde_json::json!({ "message": format!("faultline docker shim: {msg}") }).to_string(),
        ))
        .map_err(|never| match never {})
        .boxed();
        let mut r = Response::new(body);
        *r.status_mut() = hyper::StatusCode::BAD_GATEWAY;
        Ok(r)
    };
    let stream = match UnixStream::connect(&engine_socket).await {
        Ok(s) => s,
        Err(e) => return failed(format!("cannot reach {}: {e}", engine_socket.display())),
    };
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
    {
        Ok(x) => x,
        Err(e) => return failed(format!("handshake: {e}")),
    };
    tokio::spawn(conn);
    let (mut parts, body) = req.into_parts();
    let path = lower_version(&parts.uri, &engine_version);
    parts.uri = match path.parse() {
        Ok(u) => u,
        Err(e) => return failed(format!("bad path {path}: {e}")),
    };
    match sender.send_request(Request::from_parts(parts, body)).await {
        Ok(resp) => Ok(resp.map(|b| b.boxed())),
        Err(e) => failed(format!("engine: {e}")),
    }
}

/// Starts a shim at `path` in front of `engine_socket`, lowering versions to
/// `engine_version`.
pub fn start(path: &Path, engine_socket: &Path, engine_version: &str) -> anyhow::Result<ApiShim> {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)
        .with_context(|| format!("cannot bind the Docker API shim at {}", path.display()))?;
    let engine_socket = engine_socket.to_path_buf();
    let engine_version = engine_version.to_string();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let engine_socket = engine_socket.clone();
            let engine_version = engine_version.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    forward(req, engine_socket.clone(), engine_version.clone())
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(ApiShim {
        path: path.to_path_buf(),
        task,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_newer_versions_are_lowered() {
        let u: Uri = "/v1.53/containers/create?name=x".parse().unwrap();
        assert_eq!(lower_version(&u, "1.41"), "/v1.41/containers/create?name=x");
        let u: Uri = "/v1.40/info".parse().unwrap();
        assert_eq!(lower_version(&u, "1.41"), "/v1.40/info");
        let u: Uri = "/version".parse().unwrap();
        assert_eq!(lower_version(&u, "1.41"), "/version");
        let u: Uri = "/vfoo/bar".parse().unwrap();
        assert_eq!(lower_version(&u, "1.41"), "/vfoo/bar");
        assert!(newer("1.53", "1.41"));
        assert!(!newer("1.9", "1.41"));
    }
}
