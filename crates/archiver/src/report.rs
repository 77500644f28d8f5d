//! What a run reports as it goes and when it ends: warnings, progress, and the pack report.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::Stats;

/// A problem with one file that did not stop the run (the CLI exits 1 when there were any).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Warning {
    /// The file on disk.
    pub path: PathBuf,
    /// What happened and what was done about it.
    pub message: String,
}

/// What [`Packer::pack`](crate::Packer::pack) returns on success.
#[derive(Debug, Clone)]
pub struct PackReport {
    /// Counts, bytes and per-stage timings.
    pub stats: Stats,
    /// Warnings, in entry order.
    pub warnings: Vec<Warning>,
}

/// Test-only hook called at named points of the pipeline (`"read"`, `"write"`) with the entry's path;
/// a test makes a stage panic there to check that the pipeline fails cleanly instead of hanging.
#[doc(hidden)]
pub type FaultHook = Arc<dyn Fn(&str, &Path) + Send + Sync>;

/// How far a run has got. The walk streams ahead of the writer, so the totals grow until
/// `totals_final` is set; from then on they are exact and a caller can show an ETA.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Entries written.
    pub entries_done: u64,
    /// Entries found so far.
    pub entries_total: u64,
    /// File bytes written (counted inside large files too).
    pub bytes_done: u64,
    /// File bytes found so far (as the walk saw them).
    pub bytes_total: u64,
    /// True once the walk has finished: the totals will not grow any more.
    pub totals_final: bool,
}

/// A progress callback. It runs on the writer thread at most every 50 ms and once at the end, so it
/// must be quick (update a counter or a progress bar; never block).
pub type ProgressHook = Arc<dyn Fn(&Progress) + Send + Sync>;

/// Called with each entry's stored name as it is written (for `tar -v` style listings).
pub type EntryHook = Arc<dyn Fn(&Path) + Send + Sync>;
