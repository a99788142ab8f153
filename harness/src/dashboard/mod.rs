//! The live dashboard: one page that shows a running cluster as it changes.
//!
//! A watcher polls every node's `/cluster/state` and `/cache` twice a second
//! and, during a run, tails the run's `history.jsonl` for the faults in force
//! and the ops of the last minute. The page (`page.html`, plain JavaScript)
//! gets each new view as a server-sent event from `/events`; `/state` answers
//! the latest view as JSON. A node that does not answer is shown down, and the
//! page keeps going.

pub mod view;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::{Json, Router};
use futures_util::stream::Stream;
use serde_json::Value;
use tokio::sync::watch;

use view::{NodePoll, Tracker};

/// How often the nodes are asked.
const POLL: Duration = Duration::from_millis(500);
/// How long one node may take to answer before it counts as down.
const NODE_TIMEOUT: Duration = Duration::from_millis(400);

/// The page, served as it is.
const PAGE: &str = include_str!("page.html");

/// What the dashboard watches.
#[derive(Clone, Debug)]
pub struct Watched {
    /// Nodes: id and client base URL.
    pub nodes: Vec<(String, String)>,
    /// A run's history to follow, if any.
    pub history: Option<PathBuf>,
}

/// A dashboard being served: its address, and the task to stop.
pub struct Running {
    /// Where it listens.
    pub addr: SocketAddr,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Starts watching `watched` and serving the page on `listen`.
pub async fn start(listen: &str, watched: Watched) -> anyhow::Result<Running> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("dashboard: cannot listen on {listen}: {e}"))?;
    let addr = listener.local_addr()?;
    let (tx, rx) = watch::channel(Value::Null);
    let watcher = tokio::spawn(watch_loop(watched, tx));
    let app = Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/state", get(state))
        .route("/events", get(events))
        .route(
            "/explain",
            get(|| async { Html(reports::explain::index_page()) }),
        )
        .route(
            "/explain/",
            get(|| async { Html(reports::explain::index_page()) }),
        )
        .route("/explain/{page}", get(explain))
        .with_state(rx);
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(Running {
        addr,
        tasks: vec![watcher, server],
    })
}

/// `GET /explain/{slug}.html`: a pattern's explanation page.
async fn explain(
    axum::extract::Path(page): axum::extract::Path<String>,
) -> axum::response::Response {
    let slug = page.strip_suffix(".html").unwrap_or(&page);
    let found = if slug == "index" {
        Some(reports::explain::index_page())
    } else {
        reports::explain::page_of(slug)
    };
    match found {
        Some(html) => Html(html).into_response(),
        None => (
            axum::http::StatusCode::NOT_FOUND,
            format!("no page `{page}`: see /explain/"),
        )
            .into_response(),
    }
}

async fn state(State(rx): State<watch::Receiver<Value>>) -> impl IntoResponse {
    Json(rx.borrow().clone())
}

async fn events(
    State(rx): State<watch::Receiver<Value>>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let stream = futures_util::stream::unfold((rx, true), |(mut rx, first)| async move {
        if !first && rx.changed().await.is_err() {
            return None;
        }
        let data = rx.borrow_and_update().to_string();
        Some((Ok(Event::default().event("view").data(data)), (rx, false)))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// Asks every node for its state, follows the history, publishes each view.
async fn watch_loop(watched: Watched, tx: watch::Sender<Value>) {
    let http = reqwest::Client::builder()
        .timeout(NODE_TIMEOUT)
        .build()
        .unwrap_or_default();
    let mut tracker = Tracker::new(watched.history.clone());
    let mut tick = tokio::time::interval(POLL);
    loop {
        tick.tick().await;
        let polls = futures_util::future::join_all(
            watched
                .nodes
                .iter()
                .map(|(id, url)| poll_node(&http, id.clone(), url.clone())),
        )
        .await;
        tracker.follow_history();
        let view = tracker.view(polls);
        if tx.send(view).is_err() {
            return;
        }
    }
}

async fn poll_node(http: &reqwest::Client, id: String, url: String) -> NodePoll {
    let get = |path: &str| {
        let req = http.get(format!("{url}{path}"));
        async move {
            let r = req.send().await.ok()?;
            r.status().is_success().then_some(())?;
            r.json::<Value>().await.ok()
        }
    };
    let (state, cache, mesh, broker) = tokio::join!(
        get("/cluster/state"),
        get("/cache"),
        get("/mesh/state"),
        get("/topics")
    );
    NodePoll {
        id,
        url,
        state,
        cache,
        mesh,
        broker,
    }
}

/// `harness dashboard`: watches the nodes given until interrupted.
pub async fn command(listen: &str, nodes: &str, history: Option<PathBuf>) -> anyhow::Result<()> {
    let mut list = Vec::new();
    for (i, part) in nodes
        .split(',')
        .filter(|p| !p.trim().is_empty())
        .enumerate()
    {
        let part = part.trim();
        let (id, url) = match part.split_once('=') {
            Some((id, url)) => (id.to_string(), url.to_string()),
            None => (format!("n{}", i + 1), part.to_string()),
        };
        if !url.starts_with("http://") && !url.starts_with("https://") {
            anyhow::bail!(
                "--nodes entry {} (`{part}`): expected URL or ID=URL with an http:// URL",
                i + 1
            );
        }
        list.push((id, url.trim_end_matches('/').to_string()));
    }
    if list.is_empty() {
        anyhow::bail!("--nodes: expected a comma-separated list of URL or ID=URL");
    }
    let running = start(
        listen,
        Watched {
            nodes: list,
            history,
        },
    )
    .await?;
    println!("dashboard: http://{}/", running.addr);
    let _ = tokio::signal::ctrl_c().await;
    Ok(())
}
