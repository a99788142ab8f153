//! The browser check: headless Chromium loads a generated report and the store
//! index without console errors and takes a screenshot of a sensible size.
//! Runs when `FAULTLINE_BROWSER_CHECK=1` (scripts/test sets it after installing
//! Debian's chromium); otherwise it says why it did nothing.

use std::path::Path;
use std::process::Command;

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
        let log = chromium(&page, &shot);
        let console: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("CONSOLE") || l.contains("Uncaught"))
            .collect();
        assert!(
            console.is_empty(),
            "{}: console output:\n{}",
            page.display(),
            console.join("\n")
        );
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
