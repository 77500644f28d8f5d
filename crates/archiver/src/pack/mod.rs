//! The orchestrator: wires walk → feeder → read workers → reorder buffer → writer, joins every thread,
//! and reports the first real cause of a failure.
//!
//! Threads and channels (all bounded):
//! ```text
//! listers ×jobs ◀─requests─ walk sequencer ──entries: bounded(8 × 256)──▶ feeder
//!   feeder ──jobs: bounded(2·jobs)──▶ read workers ×jobs ──done: bounded(4·jobs)──▶ writer (caller's thread)
//!        ▲  reserves bytes in order                             streams: bounded(STREAM_DEPTH) per large file
//!        └──────────── byte budget ◀── released by the writer after each batch
//! ```
//! Shutdown: no stage blocks without watching the stop flag. Every blocking send and receive goes
//! through [`send_until`] / [`recv_until`], which wake every 50 ms to check [`Shared::stopped`] (a
//! stage failed, the writer's output broke, or the caller cancelled); the budget wait polls it too.
//! So whatever ends a run, every thread returns within a poll interval plus the item it is on, and
//! the orchestrator can join them all. A panicking stage records itself through a drop guard before
//! unwinding, so nothing waits forever for its output.

// The stages. `budget` and `read` are shared with unpack (the byte budget; the SMALL_FILE, CHUNK
// and STREAM_DEPTH sizes). An entry's kind and metadata (`crate::entry`) and the reorder buffer
// (`crate::reorder`) are top-level modules, shared with the format writers.
pub(crate) mod budget;
pub(crate) mod read;
pub(crate) mod stats;
pub(crate) mod walk;

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crossbeam_channel::{
    bounded, Receiver, RecvTimeoutError, SendTimeoutError, Sender, TryRecvError,
};

use crate::entry::{Kind, Meta};
use crate::error::{Error, Result};
use crate::format::tar::{HeaderPolicy, TarSink};
use crate::format::zip::{self, ZipEncoding, ZipSink};
use crate::format::Format;
use crate::format::{Codec, Metered};
use crate::manifest::ManifestWriter;
use crate::pack::budget::Budget;
use crate::pack::read::{Chunk, ChunkEnd, Done, Job, Payload, SMALL_FILE, STREAM_DEPTH};
use crate::pack::stats::{StageClock, StageStats, Stats};
use crate::pack::walk::{Entry, WalkOptions, WalkTotals};
use crate::reorder::ReorderBuffer;
use crate::{
    Cancel, EntryHook, FaultHook, PackOptions, PackReport, Progress, ProgressHook, Warning,
    MANIFEST_PATH,
};

/// State every stage of one run can see.
pub(crate) struct Shared {
    cancel: Cancel,
    stop: AtomicBool,
    failure: Mutex<Option<Error>>,
    pub budget: Budget,
    pub follow_symlinks: bool,
    /// `Some` when writing zip: the workers compress entries with it.
    pub zip: Option<ZipEncoding>,
    /// The entry the writer is on (for naming it if the writer panics).
    writing: Mutex<Option<PathBuf>>,
    /// What the walk has found so far (progress totals).
    pub totals: WalkTotals,
    /// Batches the feeder admitted in all, once it has finished (`u64::MAX` until then).
    batches: AtomicU64,
    fault: Option<FaultHook>,
}

impl Shared {
    /// The state of a run with these options, nothing failed yet.
    fn new(opts: &PackOptions, cancel: &Cancel, fault: Option<FaultHook>) -> Shared {
        Shared {
            cancel: cancel.clone(),
            stop: AtomicBool::new(false),
            failure: Mutex::new(None),
            budget: Budget::new(opts.memory_budget),
            follow_symlinks: opts.follow_symlinks,
            zip: (opts.format == Format::Zip).then(|| {
                let method = opts.zip_method;
                ZipEncoding {
                    method,
                    level: opts.level.unwrap_or(method.levels().0),
                    threads: opts.jobs,
                }
            }),
            writing: Mutex::new(None),
            totals: WalkTotals::default(),
            batches: AtomicU64::new(u64::MAX),
            fault,
        }
    }

    /// True once the run must end: cancelled, or a stage failed.
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || self.cancel.is_cancelled()
    }

    /// Records the first real failure and stops every stage.
    pub fn fail(&self, e: Error) {
        {
            let mut slot = self.failure.lock().unwrap_or_else(|p| p.into_inner());
            if slot.is_none() {
                *slot = Some(e);
            }
        }
        self.halt();
    }

    pub fn halt(&self) {
        self.stop.store(true, Ordering::Relaxed);
        self.budget.close();
    }

    fn take_failure(&self) -> Option<Error> {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// Test-only fault injection: lets a test panic a stage at a chosen entry.
    pub fn fault_point(&self, stage: &str, rel: &Path) {
        if let Some(hook) = &self.fault {
            hook(stage, rel);
        }
    }
}

/// Records a panic of the stage it guards, so the rest of the pipeline stops instead of waiting.
struct PanicGuard<'a> {
    shared: &'a Shared,
    stage: &'static str,
}

impl Drop for PanicGuard<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.shared.fail(Error::Panic {
                stage: self.stage,
                entry: None,
                message: "thread panicked".into(),
            });
        }
    }
}

/// Optional callbacks of a run.
pub(crate) struct Hooks {
    pub fault: Option<FaultHook>,
    pub progress: Option<ProgressHook>,
    pub entry: Option<EntryHook>,
}

/// How often a blocked stage looks at the stop flag.
const POLL: Duration = Duration::from_millis(50);

/// Sends `msg`, giving up (false) once `stopped()` says so or the receiver is gone. Every blocking
/// send in a pack goes through here, so no stage can sleep forever on a consumer that stopped.
pub(crate) fn send_until<T>(tx: &Sender<T>, mut msg: T, stopped: &dyn Fn() -> bool) -> bool {
    loop {
        match tx.send_timeout(msg, POLL) {
            Ok(()) => return true,
            Err(SendTimeoutError::Disconnected(_)) => return false,
            Err(SendTimeoutError::Timeout(back)) => {
                if stopped() {
                    return false;
                }
                msg = back;
            }
        }
    }
}

/// Receives, giving up (`None`) once `stopped()` says so or every sender is gone.
pub(crate) fn recv_until<T>(rx: &Receiver<T>, stopped: &dyn Fn() -> bool) -> Option<T> {
    loop {
        match rx.recv_timeout(POLL) {
            Ok(v) => return Some(v),
            Err(RecvTimeoutError::Disconnected) => return None,
            Err(RecvTimeoutError::Timeout) => {
                if stopped() {
                    return None;
                }
            }
        }
    }
}

/// Spawns a named stage thread whose panic stops the whole run (recorded as the stage's failure).
fn spawn_stage<'scope, 'env, T: Send + 'scope>(
    s: &'scope std::thread::Scope<'scope, 'env>,
    shared: &'scope Shared,
    stage: &'static str,
    f: impl FnOnce() -> T + Send + 'scope,
) -> Result<std::thread::ScopedJoinHandle<'scope, T>> {
    crate::threads::spawn(s, stage, move || {
        let _guard = PanicGuard { shared, stage };
        f()
    })
    .inspect_err(|_| shared.halt())
}

/// Joins a stage thread; a panic becomes the run's recorded failure.
fn join_stage<T>(
    shared: &Shared,
    stage: &'static str,
    h: Result<std::thread::ScopedJoinHandle<'_, T>>,
) -> Option<T> {
    match h.and_then(|h| crate::threads::join(stage, h)) {
        Ok(v) => Some(v),
        Err(e) => {
            shared.fail(e);
            None
        }
    }
}

/// Runs a whole pack: walk → feeder → read workers → writer (on the caller's thread).
pub(crate) fn run<W: Write>(
    paths: &[PathBuf],
    opts: &PackOptions,
    cancel: &Cancel,
    hooks: Hooks,
    out: W,
) -> Result<PackReport> {
    let Hooks {
        fault,
        progress,
        entry: on_entry,
    } = hooks;
    let started = Instant::now();
    let jobs = opts.jobs.max(1);
    let roots = walk::plan_roots(paths)?;
    let walk_opts = walk_options(opts, jobs);
    walk::check_roots(&roots, &walk_opts)?;
    let shared = Shared::new(opts, cancel, fault);
    let stopped = || shared.stopped();
    let (walk_tx, walk_rx) = bounded::<Vec<Entry>>(8);
    let (job_tx, job_rx) = bounded::<Job>(jobs * 2);
    let (done_tx, done_rx) = bounded::<Done>(jobs * 4);

    let (written, clocks) = std::thread::scope(|s| {
        let walker = spawn_stage(s, &shared, "walk", || {
            let r = walk::run(&roots, &walk_opts, &walk_tx, &shared.totals, &stopped);
            drop(walk_tx);
            r.map_err(|e| {
                if !matches!(e, Error::Cancelled) {
                    shared.fail(e);
                }
                shared.halt();
            })
            .ok()
        });
        let feeder = spawn_stage(s, &shared, "feed", || feed(walk_rx, job_tx, &shared));
        let mut workers = Vec::with_capacity(jobs);
        for _ in 0..jobs {
            let (rx, tx, shared) = (job_rx.clone(), done_tx.clone(), &shared);
            workers.push(spawn_stage(s, shared, "read", move || {
                read::worker(rx, tx, shared)
            }));
        }
        drop(job_rx);
        drop(done_tx);

        let hooks = (progress.as_ref(), on_entry.as_ref());
        let written = write_caught(done_rx, &shared, opts, hooks, out);
        if written.is_err() {
            shared.halt();
        }
        let walk_clock = join_stage(&shared, "walk", walker).flatten();
        let feed_clock = join_stage(&shared, "feed", feeder).unwrap_or_default();
        let mut read_clock = StageClock::default();
        for w in workers {
            if let Some(c) = join_stage(&shared, "read", w) {
                read_clock.add(&c);
            }
        }
        (
            written,
            (walk_clock.unwrap_or_default(), feed_clock, read_clock),
        )
    });
    let outcome = first_cause(written, &shared, cancel)?;
    Ok(report(outcome, &shared, started, jobs, clocks))
}

/// The report of a finished run: the writer's statistics with the wall time, the budget's peak
/// and every stage's clock.
fn report(
    mut outcome: WriteOutcome,
    shared: &Shared,
    started: Instant,
    jobs: usize,
    (walk_clock, feed_clock, read_clock): (StageClock, StageClock, StageClock),
) -> PackReport {
    outcome.stats.wall = started.elapsed();
    outcome.stats.budget_peak = shared.budget.peak();
    outcome.stats.budget_limit = shared.budget.limit();
    let write_clock = outcome.clock;
    outcome.stats.stages = vec![
        StageStats::from_clock("walk", jobs, walk_clock),
        StageStats::from_clock("feed", 1, feed_clock),
        StageStats::from_clock("read", jobs, read_clock),
        StageStats::from_clock("write", 1, write_clock),
    ];
    if let Some((threads, clock)) = outcome.compress {
        // After the writer: it hands the tar stream to these threads.
        let compress = StageStats::from_clock("compress", threads, clock);
        outcome.stats.stages.push(compress);
    }
    PackReport {
        stats: outcome.stats,
        warnings: outcome.warnings,
    }
}

/// How the walk goes for these options.
fn walk_options(opts: &PackOptions, jobs: usize) -> WalkOptions {
    WalkOptions {
        threads: jobs,
        directory: opts.directory.clone(),
        excludes: opts.excludes.clone(),
        ignore_files: opts.ignore_files,
        follow_symlinks: opts.follow_symlinks,
        skip_manifest: opts.manifest,
        skip_files: walk::file_ids(&opts.skip_files),
        hard_links: opts.format != Format::Zip,
    }
}

/// The writer on the caller's thread, its panic turned into an error naming the entry it was
/// writing.
fn write_caught<W: Write>(
    done: Receiver<Done>,
    shared: &Shared,
    opts: &PackOptions,
    hooks: (Option<&ProgressHook>, Option<&EntryHook>),
    out: W,
) -> Result<WriteOutcome, Stop> {
    let writing = || {
        shared
            .writing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|p| p.display().to_string())
    };
    crate::threads::catch("write", writing, || {
        write_stage(done, shared, opts, hooks, out)
    })
    .unwrap_or_else(|e| Err(Stop::Error(e)))
}

/// The run's result once every thread is joined: the writer's outcome, unless a stage recorded a
/// failure; the writer's own error as is; when the writer was halted, the first recorded cause,
/// else `Cancelled`.
fn first_cause(
    written: Result<WriteOutcome, Stop>,
    shared: &Shared,
    cancel: &Cancel,
) -> Result<WriteOutcome> {
    match written {
        Ok(outcome) => match shared.take_failure() {
            None => Ok(outcome),
            Some(e) => Err(e),
        },
        Err(Stop::Error(e)) => Err(e),
        Err(Stop::Halted) => Err(shared.take_failure().unwrap_or(if cancel.is_cancelled() {
            Error::Cancelled
        } else {
            Error::Panic {
                stage: "write",
                entry: None,
                message: "the pipeline stopped without a recorded cause".into(),
            }
        })),
    }
}

/// Why the writer stopped early.
enum Stop {
    /// Its own error (output failed, an entry failed): this is the cause to report.
    Error(Error),
    /// Another stage stopped the run (cancelled, or failed and recorded why in [`Shared`]).
    Halted,
}

impl From<Error> for Stop {
    fn from(e: Error) -> Self {
        Stop::Error(e)
    }
}

/// What an entry costs in the byte budget: its data if read whole (or one stream window), plus a
/// fixed overhead so that even empty entries are counted.
fn cost_of(e: &Entry) -> u64 {
    let overhead = 512 + e.path.as_os_str().len() as u64;
    overhead
        + match e.kind {
            Kind::File { size, .. } if size <= SMALL_FILE => size,
            Kind::File { .. } => (read::CHUNK * STREAM_DEPTH) as u64,
            _ => 0,
        }
}

fn is_streamed(e: &Entry) -> bool {
    matches!(e.kind, Kind::File { size, .. } if size > SMALL_FILE)
}

/// A batch closes at this much budget cost...
const BATCH_BYTES: u64 = 256 << 10;
/// ...or this many entries.
const BATCH_ENTRIES: usize = 64;

/// The feeder: takes entries from the walk in order, groups consecutive ones into batches and admits
/// them in sequence order against the byte budget. A streamed (large) file is always a batch of its
/// own. A batch closes early when the walk has nothing more ready, so the first bytes never wait
/// for a full batch.
fn feed(walk: Receiver<Vec<Entry>>, jobs: Sender<Job>, shared: &Shared) -> StageClock {
    let mut clock = StageClock::default();
    let stopped = || shared.stopped();
    let mut pending: VecDeque<Entry> = VecDeque::new();
    let mut walk_open = true;
    let (mut batch, mut seq) = (0u64, 0u64);
    let started = Instant::now();
    loop {
        if shared.stopped() {
            return clock;
        }
        if pending.is_empty() {
            if !walk_open {
                break;
            }
            let t = Instant::now();
            match recv_until(&walk, &stopped) {
                Some(chunk) => pending.extend(chunk),
                None => walk_open = false,
            }
            clock.starved += t.elapsed();
            continue;
        }
        while walk_open && pending.len() < BATCH_ENTRIES {
            match walk.try_recv() {
                Ok(chunk) => pending.extend(chunk),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => walk_open = false,
            }
        }
        let mut entries = Vec::with_capacity(pending.len().min(BATCH_ENTRIES));
        let mut cost = 0;
        while let Some(e) = pending.front() {
            let c = cost_of(e);
            let streamed = is_streamed(e);
            if !entries.is_empty()
                && (streamed || cost + c > BATCH_BYTES || entries.len() >= BATCH_ENTRIES)
            {
                break;
            }
            cost += c;
            entries.push(pending.pop_front().expect("front exists"));
            if streamed {
                break;
            }
        }
        let t = Instant::now();
        let Ok(cost) = shared.budget.acquire(cost, &stopped) else {
            return clock;
        };
        let count = entries.len() as u64;
        let sent = send_until(
            &jobs,
            Job {
                batch,
                first: seq,
                entries,
                cost,
            },
            &stopped,
        );
        clock.blocked += t.elapsed();
        if !sent {
            return clock;
        }
        clock.items += count;
        batch += 1;
        seq += count;
    }
    // Every entry was admitted: the writer may end once it has written `batch` batches.
    shared.batches.store(batch, Ordering::SeqCst);
    clock.busy = started
        .elapsed()
        .saturating_sub(clock.starved + clock.blocked);
    clock
}

struct WriteOutcome {
    stats: Stats,
    warnings: Vec<Warning>,
    clock: StageClock,
    /// The compressing threads of tar.gz and tar.zst: their count and clock.
    compress: Option<(usize, StageClock)>,
}

/// Calls the caller's progress hook at a bounded rate, with the walk's totals so far.
struct Reporter<'a> {
    hook: Option<&'a ProgressHook>,
    totals: &'a WalkTotals,
    report: Progress,
    last: Instant,
}

impl Reporter<'_> {
    fn tick(&mut self, entries_done: u64, bytes_done: u64, force: bool) {
        let Some(hook) = self.hook else { return };
        if !force && self.last.elapsed() < Duration::from_millis(50) {
            return;
        }
        self.report.entries_done = entries_done;
        self.report.bytes_done = bytes_done;
        self.report.entries_total = self.totals.entries.load(Ordering::Relaxed);
        self.report.bytes_total = self.totals.bytes.load(Ordering::Relaxed);
        self.report.totals_final = self.totals.done.load(Ordering::Relaxed);
        hook(&self.report);
        self.last = Instant::now();
    }
}

/// The writer: restores order, writes every entry, appends the manifest, finishes the stream.
fn write_stage<W: Write>(
    done: Receiver<Done>,
    shared: &Shared,
    opts: &PackOptions,
    (progress, on_entry): (Option<&ProgressHook>, Option<&EntryHook>),
    out: W,
) -> Result<WriteOutcome, Stop> {
    let mut reporter = Reporter {
        hook: progress,
        totals: &shared.totals,
        report: Progress::default(),
        last: Instant::now(),
    };
    let (mut sink, closed) = Sink::open(opts, out)?;
    // Declared after `sink` on purpose: locals drop in reverse order, so on an early return this
    // closes the output before the sink's layers drop (the tar builder would append end blocks).
    let mut abandon = Abandon(Some(closed));
    let mut w = Writer {
        shared,
        strict: opts.strict,
        stats: Stats::default(),
        warnings: Vec::new(),
        manifest: ManifestWriter::default(),
        link_hashes: HashMap::new(),
        newest: 0,
        starved: Duration::ZERO,
        written: 0,
        on_entry,
    };
    let started = Instant::now();
    let held_peak = w.write_in_order(&done, &mut sink, &mut reporter)?;
    drop(done);
    reporter.tick(w.written, w.stats.bytes_in, true);
    if opts.manifest {
        w.write_manifest(&mut sink, opts.reproducible)?;
    }
    abandon.0 = None;
    let times = sink.compress_times();
    let metered = sink.finish().map_err(Error::Output)?;
    let pool = times.map(|t| t.read());
    let mut stats = w.stats;
    stats.bytes_out = metered.bytes;
    stats.reorder_peak = held_peak;
    let elapsed = started.elapsed();
    // Waiting for the compressing threads is waiting for the next stage, as a full pipe is.
    let blocked = metered.blocked + pool.map_or(Duration::ZERO, |p| p.owner_waited);
    let clock = StageClock {
        busy: elapsed.saturating_sub(w.starved + blocked),
        starved: w.starved,
        blocked,
        items: w.written,
    };
    let compress = pool.map(|p| {
        let clock = StageClock {
            busy: p.busy,
            starved: p.starved,
            blocked: p.blocked,
            items: p.jobs,
        };
        (p.threads, clock)
    });
    Ok(WriteOutcome {
        stats,
        warnings: w.warnings,
        clock,
        compress,
    })
}

/// Closes the output when the writer leaves early (see [`Metered::closed`]).
struct Abandon(Option<std::sync::Arc<AtomicBool>>);

impl Drop for Abandon {
    fn drop(&mut self) {
        if let Some(closed) = &self.0 {
            closed.store(true, Ordering::Relaxed);
        }
    }
}

struct Writer<'a> {
    shared: &'a Shared,
    strict: bool,
    stats: Stats,
    warnings: Vec<Warning>,
    manifest: ManifestWriter,
    /// Files that later hard links point at (stored name) → their hash once stored (`None` if it
    /// was skipped). Only multiply-linked files are here, so this does not grow with the tree.
    link_hashes: HashMap<PathBuf, Option<blake3::Hash>>,
    /// Newest mtime stored: the manifest's own mtime, so it does not depend on the clock.
    newest: i64,
    starved: Duration,
    /// Entries written so far.
    written: u64,
    on_entry: Option<&'a EntryHook>,
}

impl Writer<'_> {
    /// Takes finished batches in, puts them back in sequence order and writes each, releasing its
    /// budget; returns the most entries the reorder buffer held at once.
    fn write_in_order<W: Write>(
        &mut self,
        done: &Receiver<Done>,
        sink: &mut Sink<W>,
        reporter: &mut Reporter<'_>,
    ) -> Result<usize, Stop> {
        let shared = self.shared;
        let stopped = || shared.stopped();
        let mut reorder: ReorderBuffer<Done> = ReorderBuffer::new(0);
        let mut batches = 0u64;
        // Entries (not batches) held in the reorder buffer, for the statistics.
        let (mut held, mut held_peak) = (0usize, 0usize);
        loop {
            if self.shared.stopped() {
                return Err(Stop::Halted);
            }
            let Some(batch) = reorder.pop() else {
                // The feeder stores how many batches it admitted once it is done (and before the
                // workers can all be gone); all of them written means the end.
                if batches == self.shared.batches.load(Ordering::SeqCst) {
                    break;
                }
                let t = Instant::now();
                let got = recv_until(done, &stopped);
                self.starved += t.elapsed();
                match got {
                    Some(d) => {
                        held += d.items.len();
                        held_peak = held_peak.max(held);
                        reorder.insert(d.batch, d);
                    }
                    // Every worker is gone (or the run stopped) with batches still missing.
                    None if batches != self.shared.batches.load(Ordering::SeqCst) => {
                        return Err(Stop::Halted)
                    }
                    None => break,
                }
                continue;
            };
            debug_assert_eq!(
                batch.first, self.written,
                "batches arrive in sequence order"
            );
            let cost = batch.cost;
            held -= batch.items.len();
            for (entry, payload) in batch.items {
                self.entry(sink, entry, payload, reporter)?;
            }
            batches += 1;
            self.shared.budget.release(cost);
            reporter.tick(self.written, self.stats.bytes_in, false);
        }
        Ok(held_peak)
    }

    /// Appends the manifest, dated by the newest entry (clamped like the others when reproducible).
    fn write_manifest<W: Write>(
        &mut self,
        sink: &mut Sink<W>,
        reproducible: Option<u64>,
    ) -> Result<(), Stop> {
        let meta = Meta {
            mode: 0o644,
            mtime: reproducible.map_or(self.newest, |t| self.newest.min(t as i64)),
            uid: 0,
            gid: 0,
        };
        let manifest = std::mem::take(&mut self.manifest);
        let size = manifest.size();
        let name = Path::new(MANIFEST_PATH);
        match sink {
            Sink::Tar(t) => manifest
                .into_reader()
                .and_then(|r| t.file(name, &meta, size, r)),
            Sink::Zip(z) => {
                let enc = self.shared.zip.expect("zip encoding set for zip");
                if size <= SMALL_FILE {
                    // As a small file is: compressed whole.
                    manifest
                        .into_bytes()
                        .and_then(|text| zip::encode(text, name, enc))
                        .and_then(|e| z.encoded(name, &meta, &e))
                } else {
                    // As a large file is: streamed from the spill file and deflated on all
                    // threads (100,000 files make a 9 MiB manifest: 85 ms on one thread while
                    // the others had nothing left to do).
                    manifest
                        .into_reader()
                        .and_then(|r| z.streamed_file(name, &meta, size, r, enc))
                }
            }
        }
        .map_err(Error::Output)?;
        if let Some(hook) = self.on_entry {
            hook(name);
        }
        Ok(())
    }

    fn entry<W: Write>(
        &mut self,
        sink: &mut Sink<W>,
        entry: Entry,
        payload: Payload,
        reporter: &mut Reporter<'_>,
    ) -> Result<(), Stop> {
        let rel = entry.path.as_path();
        let meta = &entry.meta;
        *self
            .shared
            .writing
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(entry.path.clone());
        self.shared.fault_point("write", rel);
        self.written += 1;
        if !matches!(payload, Payload::Skip { .. } | Payload::Failed(_)) {
            self.newest = self.newest.max(meta.mtime);
        }
        if let Kind::File { linked: true, .. } = entry.kind {
            // Stays `None` unless the file is stored below.
            self.link_hashes.insert(entry.path.clone(), None);
        }
        match payload {
            Payload::File {
                data,
                hash,
                warning,
            } => {
                let Sink::Tar(tar) = sink else {
                    unreachable!("zip entries arrive encoded")
                };
                tar.file(rel, meta, data.len() as u64, &data[..])
                    .map_err(Error::Output)?;
                self.stored_file(&entry, data.len() as u64, &hash)?;
                if let Some(w) = warning {
                    self.warn(&entry, w)?;
                }
            }
            Payload::Encoded {
                encoded,
                hash,
                warning,
            } => {
                let Sink::Zip(z) = sink else {
                    unreachable!("only zip entries are encoded")
                };
                z.encoded(rel, meta, &encoded).map_err(Error::Output)?;
                self.stored_file(&entry, encoded.size, &hash)?;
                if let Some(w) = warning {
                    self.warn(&entry, w)?;
                }
            }
            Payload::Stream {
                size,
                chunks,
                method,
            } => self.streamed(sink, &entry, size, &chunks, method, reporter)?,
            Payload::Symlink { target } => self.symlink(sink, &entry, &target)?,
            Payload::Header => match &entry.kind {
                Kind::Dir => {
                    sink.dir(rel, meta).map_err(Error::Output)?;
                    self.stats.dirs += 1;
                }
                Kind::HardLink { target } => self.hardlink(sink, &entry, target)?,
                _ => unreachable!("only directories and hard links are header-only"),
            },
            Payload::Skip { warning } => {
                self.stats.skipped += 1;
                // Not written: not reported as an entry (`-v` lists what the archive holds).
                return self.warn(&entry, warning).map_err(Stop::from);
            }
            Payload::Failed(e) => return Err(Stop::Error(e)),
        }
        match (self.on_entry, &entry.kind) {
            (None, _) | (_, Kind::Warning { .. }) => {}
            // A directory as the archive names it (and as `tar cv` lists it): with a slash.
            (Some(hook), Kind::Dir) => hook(&entry.path.join("")),
            (Some(hook), _) => hook(&entry.path),
        }
        Ok(())
    }

    /// A large file, written as its chunks arrive from the worker that reads it.
    fn streamed<W: Write>(
        &mut self,
        sink: &mut Sink<W>,
        entry: &Entry,
        size: u64,
        chunks: &Receiver<Chunk>,
        method: Option<zip::ZipMethod>,
        reporter: &mut Reporter<'_>,
    ) -> Result<(), Stop> {
        let (rel, meta) = (entry.path.as_path(), &entry.meta);
        let base = self.stats.bytes_in;
        let written_so_far = self.written;
        let stopped = || self.shared.stopped();
        let mut reader = ChunkReader {
            rx: chunks,
            buf: Vec::new(),
            pos: 0,
            end: None,
            broken: false,
            starved: Duration::ZERO,
            stopped: &stopped,
            done: 0,
            on_bytes: &mut |n| reporter.tick(written_so_far, base + n, false),
        };
        let written = match sink {
            Sink::Tar(t) => t.file(rel, meta, size, &mut reader),
            Sink::Zip(z) => {
                let method = method.expect("zip streams carry their method");
                z.begin_stream(rel, meta, size, method).and_then(|()| {
                    io::copy(&mut reader, &mut ZipStreamData(z))?;
                    match &reader.end {
                        Some(end) => z.end_stream(end.crc, end.stored),
                        None => Ok(()),
                    }
                })
            }
        };
        self.starved += reader.starved;
        if reader.broken {
            return Err(Stop::Halted);
        }
        written.map_err(Error::Output)?;
        let end = reader.end.take().ok_or(Stop::Halted)?;
        self.stored_file(entry, size, &end.hash)?;
        if let Some(w) = end.warning {
            self.warn(entry, w)?;
        }
        Ok(())
    }

    /// A symbolic link, stored as it is; one that leads outside the archive is logged.
    fn symlink<W: Write>(
        &mut self,
        sink: &mut Sink<W>,
        entry: &Entry,
        target: &Path,
    ) -> Result<(), Stop> {
        let (rel, meta) = (entry.path.as_path(), &entry.meta);
        sink.symlink(rel, meta, target).map_err(Error::Output)?;
        self.stats.symlinks += 1;
        if leads_outside(rel, target) {
            // Not a warning about the run (the link is stored as it is), so not counted.
            tracing::warn!(
                "{}: symbolic link to {} leads outside the archive; archiver unpack \
                 refuses it unless --allow-outside-links is given",
                crate::list::escape_path(&entry.disk),
                crate::list::escape_path(target)
            );
        }
        Ok(())
    }

    /// A hard link to `target`, stored only when its target was.
    fn hardlink<W: Write>(
        &mut self,
        sink: &mut Sink<W>,
        entry: &Entry,
        target: &Path,
    ) -> Result<(), Stop> {
        let (rel, meta) = (entry.path.as_path(), &entry.meta);
        match self.link_hashes.get(target).copied().flatten() {
            Some(hash) => {
                sink.hardlink(rel, meta, target).map_err(Error::Output)?;
                self.manifest.add(rel, &hash).map_err(Error::Output)?;
                self.stats.hardlinks += 1;
            }
            None => {
                self.stats.skipped += 1;
                let first = target.display().to_string();
                self.warn(
                    entry,
                    format!("hard link to {first}, which was not stored; skipped"),
                )?;
            }
        }
        Ok(())
    }

    fn stored_file(&mut self, entry: &Entry, size: u64, hash: &blake3::Hash) -> Result<(), Stop> {
        self.manifest
            .add(&entry.path, hash)
            .map_err(Error::Output)?;
        if let Some(slot) = self.link_hashes.get_mut(&entry.path) {
            *slot = Some(*hash);
        }
        self.stats.files += 1;
        self.stats.bytes_in += size;
        Ok(())
    }

    fn warn(&mut self, entry: &Entry, message: String) -> Result<()> {
        let path = entry.disk.clone();
        self.stats.warnings += 1;
        if self.strict {
            return Err(Error::Strict { path, message });
        }
        tracing::warn!("{}: {}", crate::list::escape_path(&path), message);
        self.warnings.push(Warning { path, message });
        Ok(())
    }
}

/// True when a symlink stored at `rel` with this target resolves outside the archive's top level
/// (absolute, or more `..` than it has parents): unpack's policy refuses such links.
pub(crate) fn leads_outside(rel: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return true;
    }
    let mut depth = rel.components().count() as i64 - 1;
    for c in target.components() {
        match c {
            std::path::Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return true;
                }
            }
            std::path::Component::Normal(_) => depth += 1,
            _ => {}
        }
    }
    false
}

/// Adapts the zip sink's streamed-entry data to `Write`, for `io::copy`.
struct ZipStreamData<'a, W: Write>(&'a mut ZipSink<W>);

impl<W: Write> Write for ZipStreamData<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.stream_data(buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The container being written.
#[allow(clippy::large_enum_variant)] // one per run, never moved in a hot path
enum Sink<W: Write> {
    Tar(TarSink<Metered<W>>),
    Zip(ZipSink<Metered<W>>),
}

impl<W: Write> Sink<W> {
    /// The container for `opts.format` over `out`, and the flag that closes the output early.
    fn open(opts: &PackOptions, out: W) -> Result<(Sink<W>, std::sync::Arc<AtomicBool>)> {
        let level = opts
            .level
            .unwrap_or_else(|| opts.format.levels().map_or(0, |(d, _)| d));
        let metered = Metered::new(out);
        let closed = std::sync::Arc::clone(&metered.closed);
        let sink = match opts.format {
            Format::Zip => Sink::Zip(ZipSink::new(metered, opts.reproducible)),
            _ => {
                let codec = Codec::new(opts.format, metered, level, opts.jobs.max(1))
                    .map_err(Error::Output)?;
                Sink::Tar(TarSink::new(
                    codec,
                    HeaderPolicy {
                        reproducible: opts.reproducible,
                    },
                ))
            }
        };
        Ok((sink, closed))
    }

    fn dir(&mut self, rel: &Path, meta: &Meta) -> io::Result<()> {
        match self {
            Sink::Tar(t) => t.dir(rel, meta),
            Sink::Zip(z) => z.dir(rel, meta),
        }
    }

    fn symlink(&mut self, rel: &Path, meta: &Meta, target: &Path) -> io::Result<()> {
        match self {
            Sink::Tar(t) => t.symlink(rel, meta, target),
            Sink::Zip(z) => z.symlink(rel, meta, target),
        }
    }

    fn hardlink(&mut self, rel: &Path, meta: &Meta, target: &Path) -> io::Result<()> {
        match self {
            Sink::Tar(t) => t.hardlink(rel, meta, target),
            Sink::Zip(_) => unreachable!("the walk turns hard links into files for zip"),
        }
    }

    /// The time accounting of tar.gz's and tar.zst's compressing threads.
    fn compress_times(&self) -> Option<std::sync::Arc<crate::format::pool::PoolTimes>> {
        match self {
            Sink::Tar(t) => t.codec().times(),
            Sink::Zip(_) => None,
        }
    }

    fn finish(self) -> io::Result<Metered<W>> {
        match self {
            Sink::Tar(t) => t.finish(),
            Sink::Zip(z) => z.finish(),
        }
    }
}

/// Presents a streamed file's chunks as a `Read` for the writer, keeping what the end chunk says.
struct ChunkReader<'a> {
    rx: &'a Receiver<Chunk>,
    buf: Vec<u8>,
    pos: usize,
    end: Option<ChunkEnd>,
    broken: bool,
    starved: Duration,
    stopped: &'a dyn Fn() -> bool,
    /// Raw bytes handed out so far, for progress inside large files.
    done: u64,
    on_bytes: &'a mut dyn FnMut(u64),
}

impl Read for ChunkReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.pos < self.buf.len() {
                let n = out.len().min(self.buf.len() - self.pos);
                out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
                self.pos += n;
                self.done += n as u64;
                (self.on_bytes)(self.done);
                return Ok(n);
            }
            if self.end.is_some() {
                return Ok(0);
            }
            let t = Instant::now();
            let got = recv_until(self.rx, self.stopped);
            self.starved += t.elapsed();
            match got {
                Some(Chunk::Data(v)) => {
                    self.buf = v;
                    self.pos = 0;
                }
                Some(Chunk::End(end)) => self.end = Some(end),
                None => {
                    self.broken = true;
                    return Err(io::Error::other("file stream ended early"));
                }
            }
        }
    }
}
