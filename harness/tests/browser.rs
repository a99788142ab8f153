//! The browser check: headless Chromium loads a generated report and the store
//! index without console errors and takes a screenshot of a sensible size.
//! Runs when `FAULTLINE_BROWSER_CHECK=1` (scripts/test sets it after installing
//! Debian's chromium); otherwise it says why it did nothing.

use std::path::Path;
use std::process::Command;

mod common;

const HISTORY: &str = r#"{"type":"invoke","process":0,"f":"write","key":"a","value":1,"time":1000000}
{"type":"ok","process":0,"f":"write","key":"a","value":1,"time":2000000}
{"type":"info","process":"nemesis","f":"start-partition","value":{"shape":"one"},"time":2500000}
{"type":"invoke","process":0,"f":"write","key":"a","value":2,"time":3000000}
{"type":"ok","process":0,"f":"write","key":"a","value":2,"time":4000000}
{"type":"invoke","process":1,"f":"read","key":"a","value":null,"time":5000000}
{"type":"ok","process":1,"f":"read","key":"a","value":1,"time":6000000}
{"type":"info","process":"nemesis","f":"stop-partition","value":null,"time":7000000}
"#;

fn png_size(path: &Path) -> (u32, u32) {
    let bytes = std::fs::read(path).expect("screenshot written");
    assert_eq!(&bytes[1..4], b"PNG", "not a PNG");
    let w = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    let h = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
    (w, h)
}

fn chromium(page: &Path, shot: &Path) -> String {
    let out = Command::new("chromium")
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1280,2400",
        ])
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("run chromium");
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn report_and_index_load_in_chromium_without_console_errors() {
    if std::env::var("FAULTLINE_BROWSER_CHECK").as_deref() != Ok("1") {
        eprintln!("browser check skipped: set FAULTLINE_BROWSER_CHECK=1 with chromium installed (scripts/test does)");
        return;
    }
    let store = tempfile::tempdir().unwrap();
    let run = store.path().join("kv").join("20260101T000000.000Z");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::write(run.join("history.jsonl"), HISTORY).unwrap();
    // results.json from the real checker, through the CLI.
    let check = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["check", "--model", "kv", "--json"])
        .arg(run.join("history.jsonl"))
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(1));
    std::fs::write(run.join("results.json"), &check.stdout).unwrap();
    std::fs::write(
        run.join("test.json"),
        r#"{"workload":"kv","seed":1,"nemesis":["partition"],"bugs":[]}"#,
    )
    .unwrap();
    std::os::unix::fs::symlink("kv/20260101T000000.000Z", store.path().join("latest")).unwrap();
    let rendered = Command::new(env!("CARGO_BIN_EXE_harness"))
        .arg("report")
        .arg(&run)
        .output()
        .unwrap();
    assert!(
        rendered.status.success(),
        "{}",
        String::from_utf8_lossy(&rendered.stderr)
    );

    for (page, shot) in [
        (run.join("report.html"), store.path().join("report.png")),
        (
            store.path().join("index.html"),
            store.path().join("index.png"),
        ),
    ] {
        eprintln!("loading {}", page.display());
        no_console(&chromium(&page, &shot));
        let (w, h) = png_size(&shot);
        assert_eq!((w, h), (1280, 2400), "{}", page.display());
        // A blank page compresses to almost nothing; a drawn report does not.
        let size = std::fs::metadata(&shot).unwrap().len();
        assert!(
            size > 20_000,
            "{}: screenshot only {size} bytes",
            page.display()
        );
        if let Ok(keep) = std::env::var("FAULTLINE_SCREENSHOT_DIR") {
            let _ = std::fs::copy(&shot, Path::new(&keep).join(shot.file_name().unwrap()));
        }
    }
}

/// Loads the live dashboard in headless Chromium until it has drawn `views`
/// views (`?until=`), answering the DOM and the browser's log.
fn dashboard_dom(addr: &str, views: u32, shot: Option<&Path>) -> (String, String) {
    let mut cmd = Command::new("chromium");
    cmd.args([
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--enable-logging=stderr",
        "--v=0",
        "--window-size=1280,1000",
        "--virtual-time-budget=8000",
    ]);
    match shot {
        Some(s) => cmd.arg(format!("--screenshot={}", s.display())),
        None => cmd.arg("--dump-dom"),
    };
    let out = cmd
        .arg(format!("http://{addr}/?until={views}"))
        .output()
        .expect("run chromium");
    (
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn no_console(log: &str) {
    let console: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("CONSOLE") || l.contains("Uncaught"))
        .collect();
    assert!(
        console.is_empty(),
        "console output:\n{}",
        console.join("\n")
    );
}

/// The dashboard during a run with kills: the page Chromium draws shows the
/// leader, and shows a kill and the leader change it causes within a few
/// seconds of the history recording the kill.
#[test]
fn the_live_dashboard_shows_faults_and_leader_changes_as_they_happen() {
    if std::env::var("FAULTLINE_BROWSER_CHECK").as_deref() != Ok("1") {
        eprintln!("browser check skipped: set FAULTLINE_BROWSER_CHECK=1 with chromium installed (scripts/test does)");
        return;
    }
    let store = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_harness"));
    cmd.args([
        "run",
        "--workload",
        "kv",
        "--quiet",
        "--nodes",
        "3",
        "--nemesis",
        "kill",
        "--nemesis-interval",
        "3",
        "--time-limit",
        "16",
        "--seed",
        "4",
        "--dashboard",
        &addr,
        "--store",
    ])
    .arg(store.path());
    if let Some(bin) = Path::new(env!("CARGO_BIN_EXE_harness"))
        .parent()
        .map(|d| d.join("faultline-node"))
        .filter(|p| p.is_file())
    {
        cmd.arg("--node-bin").arg(bin);
    }
    /// Stops the run if the test fails halfway.
    struct Run(std::process::Child);
    impl Drop for Run {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Run(cmd.spawn().expect("start harness run"));
    let state = |addr: &str| common::get_json(addr, "/state");
    let started = std::time::Instant::now();
    let within = |secs: u64| started.elapsed() < std::time::Duration::from_secs(secs);
    // A leader first.
    while within(20) && state(&addr).is_none_or(|v| v["leader"].is_null()) {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // The page names the leader (retried: an election may be under way).
    let mut shown_leader = String::new();
    while within(30) {
        let (dom, log) = dashboard_dom(&addr, 2, None);
        no_console(&log);
        shown_leader = dom
            .split_once("<b id=\"leader\">")
            .and_then(|(_, rest)| rest.split_once("</b>"))
            .map(|(l, _)| l.to_string())
            .unwrap_or_default();
        if shown_leader != "none" {
            break;
        }
    }
    assert!(
        ["n1", "n2", "n3"].contains(&shown_leader.as_str()),
        "the page names no leader: `{shown_leader}`"
    );
    // The kill, as the history records it, then on the page.
    let history = std::fs::read_dir(store.path().join("kv"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("history.jsonl"))
        .find(|p| p.is_file())
        .expect("the run's history");
    while within(30)
        && !std::fs::read_to_string(&history)
            .unwrap_or_default()
            .contains("\"start-kill\"")
    {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let recorded = std::time::Instant::now();
    let mut shown = None;
    while recorded.elapsed() < std::time::Duration::from_secs(5) {
        let (dom, log) = dashboard_dom(&addr, 1, None);
        no_console(&log);
        if dom.contains("start-kill") {
            shown = Some((recorded.elapsed(), dom));
            break;
        }
    }
    let (after, dom) = shown.expect("the kill did not appear on the page within 5 s");
    assert!(dom.contains("data-views=\"1\""), "the page drew no view");
    // The queue view answered through some node: a kv run has no topics yet.
    assert!(
        dom.contains("no topics yet") || dom.contains("data-topic="),
        "the queues table is empty"
    );
    // The leader changes the kill caused: the list grows within a few seconds.
    let changes = |v: &serde_json::Value| v["leader_changes"].as_array().map_or(0, Vec::len);
    let mut changed = false;
    let since = std::time::Instant::now();
    while since.elapsed() < std::time::Duration::from_secs(8) {
        let (dom, _) = dashboard_dom(&addr, 1, None);
        let items = dom.matches("(term ").count() + dom.matches("no leader").count();
        if items >= 2 && state(&addr).is_some_and(|v| changes(&v) >= 2) {
            changed = true;
            break;
        }
    }
    assert!(changed, "no leader change appeared within 8 s of the kill");
    let shot = store.path().join("dashboard.png");
    let (_, log) = dashboard_dom(&addr, 1, Some(&shot));
    no_console(&log);
    assert!(std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0) > 10_000);
    if let Ok(keep) = std::env::var("FAULTLINE_SCREENSHOT_DIR") {
        let _ = std::fs::copy(&shot, Path::new(&keep).join("dashboard.png"));
    }
    eprintln!("the kill appeared on the page {after:?} after the history recorded it");
    let status = child.0.wait().unwrap();
    assert!(status.code().is_some(), "harness run did not end cleanly");
}

/// Every planted bug the node knows is on some pattern's explanation page.
#[test]
fn every_planted_bug_is_explained_on_a_pattern_page() {
    let out = Command::new(env!("CARGO_BIN_EXE_harness"))
        .arg("list")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let listed: Vec<&str> = text
        .split("planted bugs")
        .nth(1)
        .expect("harness list names the planted bugs")
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(listed.len() > 20, "{text}");
    let explained: Vec<&str> = reports::explain::PATTERNS
        .iter()
        .flat_map(|p| p.bugs.iter().map(|b| b.0))
        .collect();
    let missing: Vec<&&str> = listed.iter().filter(|b| !explained.contains(b)).collect();
    assert!(missing.is_empty(), "bugs with no explanation: {missing:?}");
}
