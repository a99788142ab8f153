//! The progress line: elapsed time, ops/s, ok/fail/info and the faults in force.
//! Drawn only on a terminal (indicatif hides itself otherwise).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::recorder::Live;

/// A running progress line.
pub struct Progress {
    bar: ProgressBar,
    task: tokio::task::JoinHandle<()>,
}

/// Starts updating the line every 250 ms.
pub fn start(live: Arc<Live>, in_force: Arc<Mutex<String>>, seconds: f64, quiet: bool) -> Progress {
    let bar = ProgressBar::with_draw_target(
        Some((seconds * 10.0) as u64),
        if quiet {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        },
    );
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:20}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let b = bar.clone();
    let task = tokio::spawn(async move {
        let started = std::time::Instant::now();
        let mut last = (0u64, std::time::Instant::now());
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let ok = live.ok.load(Ordering::Relaxed);
            let fail = live.fail.load(Ordering::Relaxed);
            let info = live.info.load(Ordering::Relaxed);
            let total = ok + fail + info;
            let rate = (total - last.0) as f64 / last.1.elapsed().as_secs_f64().max(1e-3);
            last = (total, std::time::Instant::now());
            let faults = in_force.lock().map(|s| s.clone()).unwrap_or_default();
            b.set_position((started.elapsed().as_secs_f64() * 10.0) as u64);
            b.set_message(format!(
                "{rate:>6.0} ops/s  ok {ok} fail {fail} info {info}  {}",
                if faults.is_empty() {
                    "no faults".to_string()
                } else {
                    faults
                }
            ));
        }
    });
    Progress { bar, task }
}

impl Progress {
    /// Stops and clears the line.
    pub fn finish(self) {
        self.task.abort();
        self.bar.finish_and_clear();
    }
}
