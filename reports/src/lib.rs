//! Faultline reports: a self-contained HTML report per run (plots inline as SVG,
//! drawn with plotters), the run index, and the regression comparison for CI.

mod anomalies;
mod bank;
pub mod bench;
mod cache;
pub mod compare;
mod counterexample;
pub mod data;
mod events;
pub mod explain;
pub mod html;
pub mod index;
pub mod lamport;
mod locks;
mod lost_writes;
mod maelstrom;
mod mesh;
mod plots;
mod queue;
pub mod recovery;
pub mod report;
mod saga;
mod timeline;

use std::path::PathBuf;

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A file could not be read or written.
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    /// A file is not what it should be.
    #[error("{path}:{line}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The line.
        line: u64,
        /// What is wrong.
        message: String,
    },
    /// A JSON file parses but is not the shape its format says.
    #[error("{path}: {message}")]
    Shape {
        /// The file.
        path: PathBuf,
        /// Which field is wrong and how.
        message: String,
    },
    /// Drawing a plot failed.
    #[error("plot: {0}")]
    Plot(String),
}

pub use report::render as render_run;
