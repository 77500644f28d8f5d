//! Statistics: what a run did and where its time went, stage by stage.
//!
//! Every stage thread keeps a [`StageClock`] of its own (no shared counters on the hot path) and hands
//! it back when it ends; the orchestrator sums the clocks of a worker group into one [`StageStats`].
//! *busy* is time spent working, *starved* is time waiting for input, *blocked* is time waiting for the
//! next stage to take output. A stage that is busy nearly all the time while its neighbours starve is the
//! bottleneck.

use std::time::Duration;

use serde::Serialize;

/// Time accounting of one thread.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct StageClock {
    pub busy: Duration,
    pub starved: Duration,
    pub blocked: Duration,
    pub items: u64,
}

impl StageClock {
    pub fn add(&mut self, other: &StageClock) {
        self.busy += other.busy;
        self.starved += other.starved;
        self.blocked += other.blocked;
        self.items += other.items;
    }
}

/// One stage (or worker group) of the pipeline.
#[derive(Debug, Clone, Serialize)]
pub struct StageStats {
    /// Stage name: `walk`, `feed`, `read`, `write`, and for tar.gz and tar.zst `compress` (the
    /// threads the writer hands the tar stream to; pack zip compresses in `read`).
    pub name: &'static str,
    /// Threads in the stage.
    pub threads: usize,
    /// Items the stage handled.
    pub items: u64,
    /// Summed over the stage's threads: seconds spent working.
    #[serde(serialize_with = "secs")]
    pub busy: Duration,
    /// Summed over the stage's threads: seconds waiting for input.
    #[serde(serialize_with = "secs")]
    pub starved: Duration,
    /// Summed over the stage's threads: seconds waiting for the next stage.
    #[serde(serialize_with = "secs")]
    pub blocked: Duration,
}

impl StageStats {
    pub(crate) fn from_clock(name: &'static str, threads: usize, c: StageClock) -> Self {
        StageStats {
            name,
            threads,
            items: c.items,
            busy: c.busy,
            starved: c.starved,
            blocked: c.blocked,
        }
    }

    /// Share of the stage's thread time spent working, 0.0 to 1.0.
    pub fn busy_ratio(&self) -> f64 {
        ratio(self.busy, self.busy + self.starved + self.blocked)
    }

    /// Share of the stage's thread time spent waiting for input.
    pub fn starved_ratio(&self) -> f64 {
        ratio(self.starved, self.busy + self.starved + self.blocked)
    }

    /// Share of the stage's thread time spent waiting for the next stage.
    pub fn blocked_ratio(&self) -> f64 {
        ratio(self.blocked, self.busy + self.starved + self.blocked)
    }
}

fn ratio(part: Duration, whole: Duration) -> f64 {
    if whole.is_zero() {
        0.0
    } else {
        part.as_secs_f64() / whole.as_secs_f64()
    }
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// What a pack run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    /// Regular files stored with their data.
    pub files: u64,
    /// Directories stored.
    pub dirs: u64,
    /// Symbolic links stored.
    pub symlinks: u64,
    /// Hard links stored (as links to an earlier entry).
    pub hardlinks: u64,
    /// Entries skipped with a warning.
    pub skipped: u64,
    /// Warnings reported.
    pub warnings: u64,
    /// File content bytes read.
    pub bytes_in: u64,
    /// Archive bytes written (after compression).
    pub bytes_out: u64,
    /// Wall time of the whole run.
    #[serde(serialize_with = "secs")]
    pub wall: Duration,
    /// The stages, in pipeline order.
    pub stages: Vec<StageStats>,
    /// Most entries the reorder buffer held at once.
    pub reorder_peak: usize,
    /// Most bytes the byte budget had reserved at once.
    pub budget_peak: u64,
    /// The byte budget.
    pub budget_limit: u64,
}

impl Stats {
    /// Output bytes per input byte (0 when nothing was read).
    pub fn ratio(&self) -> f64 {
        if self.bytes_in == 0 {
            0.0
        } else {
            self.bytes_out as f64 / self.bytes_in as f64
        }
    }

    /// A one-line reading of the stage clocks: which stage limited the run.
    pub fn verdict(&self) -> String {
        let busiest = self
            .stages
            .iter()
            .filter(|s| s.name != "walk")
            .max_by(|a, b| a.busy_ratio().total_cmp(&b.busy_ratio()));
        let Some(b) = busiest else {
            return "bottleneck: none measured".into();
        };
        let writer = self.stages.iter().find(|s| s.name == "write");
        let mut line = format!(
            "bottleneck: {} stage, {:.0}% busy",
            b.name,
            b.busy_ratio() * 100.0
        );
        if let Some(w) = writer.filter(|w| w.name != b.name) {
            line.push_str(&format!(
                "; writer starved {:.0}%",
                w.starved_ratio() * 100.0
            ));
        } else if let Some(r) = self.stages.iter().find(|s| s.name == "read") {
            line.push_str(&format!(
                "; readers blocked {:.0}%",
                r.blocked_ratio() * 100.0
            ));
        }
        line
    }
}
