//! The orchestrator: wires walk → feeder → read workers → reorder buffer → writer, joins every thread,
//! and reports the first real cause of a failure.
//!
//! Threads and channels (all bounded):
//! ```text
//! walk (jobs threads, collected + sorted)
//!   └─ feeder ──jobs: bounded(2·jobs)──▶ read workers ×jobs ──done: bounded(4·jobs)──▶ writer (caller's thread)
//!        ▲  reserves bytes in order                             streams: bounded(STREAM_DEPTH) per large file
//!        └──────────── byte budget ◀── released by the writer after each entry
//! ```
//! Shutdown: the writer is the only consumer of `done`; when it returns (finished or failed) it drops
//! the receiver, so workers' sends fail and they stop; [`Shared::fail`] closes the budget so the feeder
//! stops; the feeder dropping `jobs` ends idle workers. Every stage checks the shared stop flag between
//! items. A panicking stage records itself through a drop guard before unwinding, so nothing waits
//! forever for its output.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender};

use crate::budget::Budget;
use crate::error::{panic_message, Error, Result};
use crate::format::tar::{HeaderPolicy, TarSink};
use crate::format::zip::{self, ZipEncoding, ZipSink};
use crate::format::Format;
use crate::format::{Codec, Metered};
use crate::manifest::ManifestWriter;
use crate::read::{self, Chunk, ChunkEnd, Done, Job, Payload, SMALL_FILE, STREAM_DEPTH};
use crate::reorder::ReorderBuffer;
use crate::stats::{StageClock, StageStats, Stats};
use crate::walk::{self, Kind, Meta, Walk, WalkOptions};
use crate::{
    Cancel, FaultHook, PackOptions, PackReport, Progress, ProgressHook, Warning, MANIFEST_PATH,
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
    /// The entry the writer is on (for naming it if the writer panics); `usize::MAX` before any.
    writing: std::sync::atomic::AtomicUsize,
    fault: Option<FaultHook>,
}

impl Shared {
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

    fn halt(&self) {
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

/// Runs a whole pack.
/// Optional callbacks of a run.
pub(crate) struct Hooks {
    pub fault: Option<FaultHook>,
    pub progress: Option<ProgressHook>,
}

pub(crate) fn run<W: Write>(
    paths: &[PathBuf],
    opts: &PackOptions,
    cancel: &Cancel,
    hooks: Hooks,
    out: W,
) -> Result<PackReport> {
    let Hooks { fault, progress } = hooks;
    let started = Instant::now();
    let jobs = opts.jobs.max(1);
    let walk = walk::walk(
        paths,
        &WalkOptions {
            threads: jobs,
            excludes: opts.excludes.clone(),
            ignore_files: opts.ignore_files,
            follow_symlinks: opts.follow_symlinks,
            skip_manifest: opts.manifest,
            skip_files: walk::file_ids(&opts.skip_files),
            hard_links: opts.format != Format::Zip,
        },
        cancel.flag(),
    )?;
    let walk_time = started.elapsed();
    let shared = Shared {
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
            }
        }),
        writing: std::sync::atomic::AtomicUsize::new(usize::MAX),
        fault,
    };
    let (job_tx, job_rx) = bounded::<Job>(jobs * 2);
    let (done_tx, done_rx) = bounded::<Done>(jobs * 4);

    let (written, feed_clock, read_clock) = std::thread::scope(|s| {
        let feeder = std::thread::Builder::new()
            .name("archiver-feed".into())
            .spawn_scoped(s, || {
                let _guard = PanicGuard {
                    shared: &shared,
                    stage: "feed",
                };
                feed(&walk, job_tx, &shared)
            });
        let mut workers = Vec::with_capacity(jobs);
        for _ in 0..jobs {
            let (rx, tx) = (job_rx.clone(), done_tx.clone());
            let (walk, shared) = (&walk, &shared);
            workers.push(
                std::thread::Builder::new()
                    .name("archiver-read".into())
                    .spawn_scoped(s, move || {
                        let _guard = PanicGuard {
                            shared,
                            stage: "read",
                        };
                        read::worker(walk, rx, tx, shared)
                    }),
            );
        }
        drop(job_rx);
        drop(done_tx);

        let written = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            write_stage(&walk, done_rx, &shared, opts, progress.as_ref(), out)
        }))
        .unwrap_or_else(|p| {
            let at = shared.writing.load(Ordering::Relaxed);
            Err(Stop::Error(Error::Panic {
                stage: "write",
                entry: walk.entries.get(at).map(|e| e.rel.display().to_string()),
                message: panic_message(&*p),
            }))
        });
        if written.is_err() {
            shared.halt();
        }

        let mut feed_clock = StageClock::default();
        match feeder.map(|h| h.join()) {
            Ok(Ok(clock)) => feed_clock = clock,
            Ok(Err(p)) => shared.fail(Error::Panic {
                stage: "feed",
                entry: None,
                message: panic_message(&*p),
            }),
            Err(e) => shared.fail(Error::Thread(e)),
        }
        let mut read_clock = StageClock::default();
        for w in workers {
            match w.map(|h| h.join()) {
                Ok(Ok(clock)) => read_clock.add(&clock),
                Ok(Err(p)) => shared.fail(Error::Panic {
                    stage: "read",
                    entry: None,
                    message: panic_message(&*p),
                }),
                Err(e) => shared.fail(Error::Thread(e)),
            }
        }
        (written, feed_clock, read_clock)
    });

    let mut outcome = match written {
        Ok(outcome) => match shared.take_failure() {
            None => outcome,
            Some(e) => return Err(e),
        },
        Err(Stop::Error(e)) => return Err(e),
        Err(Stop::Halted) => {
            return Err(shared.take_failure().unwrap_or(if cancel.is_cancelled() {
                Error::Cancelled
            } else {
                Error::Panic {
                    stage: "write",
                    entry: None,
                    message: "the pipeline stopped without a recorded cause".into(),
                }
            }))
        }
    };
    outcome.stats.wall = started.elapsed();
    outcome.stats.budget_peak = shared.budget.peak();
    outcome.stats.budget_limit = shared.budget.limit();
    let write_clock = outcome.clock;
    outcome.stats.stages = vec![
        StageStats::from_clock(
            "walk",
            jobs,
            StageClock {
                busy: walk_time,
                items: walk.entries.len() as u64,
                ..Default::default()
            },
        ),
        StageStats::from_clock("feed", 1, feed_clock),
        StageStats::from_clock("read", jobs, read_clock),
        StageStats::from_clock("write", 1, write_clock),
    ];
    Ok(PackReport {
        stats: outcome.stats,
        warnings: outcome.warnings,
    })
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
fn cost_of(kind: &Kind, rel: &Path) -> u64 {
    let overhead = 512 + rel.as_os_str().len() as u64;
    overhead
        + match *kind {
            Kind::File { size } if size <= SMALL_FILE => size,
            Kind::File { .. } => (read::CHUNK * STREAM_DEPTH) as u64,
            _ => 0,
        }
}

/// A batch closes at this much budget cost...
const BATCH_BYTES: u64 = 256 << 10;
/// ...or this many entries.
const BATCH_ENTRIES: usize = 64;

/// The feeder: groups consecutive entries into batches and admits them in sequence order against the
/// byte budget. A streamed (large) file is always a batch of its own.
fn feed(walk: &Walk, jobs: Sender<Job>, shared: &Shared) -> StageClock {
    let mut clock = StageClock::default();
    let entries = &walk.entries;
    let mut next = 0;
    let mut batch = 0u64;
    while next < entries.len() {
        if shared.stopped() {
            break;
        }
        let first = next;
        let mut cost = 0;
        while next < entries.len() {
            let e = &entries[next];
            let c = cost_of(&e.kind, &e.rel);
            let streamed = matches!(e.kind, Kind::File { size } if size > SMALL_FILE);
            if next > first && (streamed || cost + c > BATCH_BYTES || next - first >= BATCH_ENTRIES)
            {
                break;
            }
            cost += c;
            next += 1;
            if streamed {
                break;
            }
        }
        let t = Instant::now();
        let cost = match shared.budget.acquire(cost, &|| shared.stopped()) {
            Ok(c) => c,
            Err(_) => break,
        };
        let sent = jobs.send(Job {
            batch,
            first: first as u64,
            count: (next - first) as u32,
            cost,
        });
        clock.blocked += t.elapsed();
        clock.items += (next - first) as u64;
        batch += 1;
        if sent.is_err() {
            break;
        }
    }
    clock
}

struct WriteOutcome {
    stats: Stats,
    warnings: Vec<Warning>,
    clock: StageClock,
}

/// The writer: restores order, writes every entry, appends the manifest, finishes the stream.
fn write_stage<W: Write>(
    walk: &Walk,
    done: Receiver<Done>,
    shared: &Shared,
    opts: &PackOptions,
    progress: Option<&ProgressHook>,
    out: W,
) -> Result<WriteOutcome, Stop> {
    let mut report = Progress {
        entries_total: walk.entries.len() as u64,
        bytes_total: walk
            .entries
            .iter()
            .map(|e| match e.kind {
                Kind::File { size } => size,
                _ => 0,
            })
            .sum(),
        ..Progress::default()
    };
    let mut last_report = Instant::now();
    let level = opts
        .level
        .unwrap_or_else(|| opts.format.levels().map_or(0, |(d, _)| d));
    let mut sink = match opts.format {
        Format::Zip => Sink::Zip(ZipSink::new(Metered::new(out), opts.reproducible)),
        _ => {
            let codec = Codec::new(opts.format, Metered::new(out), level, opts.jobs.max(1))
                .map_err(Error::Output)?;
            Sink::Tar(TarSink::new(
                codec,
                HeaderPolicy {
                    reproducible: opts.reproducible,
                },
            ))
        }
    };
    let mut w = Writer {
        walk,
        shared,
        strict: opts.strict,
        stats: Stats::default(),
        warnings: Vec::new(),
        manifest: ManifestWriter::default(),
        link_hashes: link_targets(walk),
        newest: 0,
        starved: Duration::ZERO,
    };
    let started = Instant::now();
    let mut reorder: ReorderBuffer<Done> = ReorderBuffer::new(0);
    let total = walk.entries.len() as u64;
    let mut written = 0u64;
    // Entries (not batches) held in the reorder buffer, for the statistics.
    let (mut held, mut held_peak) = (0usize, 0usize);
    while written < total {
        if shared.stopped() {
            return Err(Stop::Halted);
        }
        let Some(batch) = reorder.pop() else {
            let t = Instant::now();
            let got = done.recv();
            w.starved += t.elapsed();
            match got {
                Ok(d) => {
                    held += d.payloads.len();
                    held_peak = held_peak.max(held);
                    reorder.insert(d.batch, d);
                }
                Err(_) => return Err(Stop::Halted),
            }
            continue;
        };
        debug_assert_eq!(batch.first, written, "batches arrive in sequence order");
        let cost = batch.cost;
        held -= batch.payloads.len();
        for (i, payload) in batch.payloads.into_iter().enumerate() {
            w.entry(&mut sink, batch.first as usize + i, payload)?;
            written += 1;
        }
        shared.budget.release(cost);
        if let Some(hook) = progress {
            if last_report.elapsed() >= Duration::from_millis(50) {
                report.entries_done = written;
                report.bytes_done = w.stats.bytes_in;
                hook(&report);
                last_report = Instant::now();
            }
        }
    }
    drop(done);
    if let Some(hook) = progress {
        report.entries_done = written;
        report.bytes_done = w.stats.bytes_in;
        hook(&report);
    }
    if opts.manifest {
        let meta = Meta {
            mode: 0o644,
            mtime: opts.reproducible.map_or(w.newest, |t| t as i64),
            uid: 0,
            gid: 0,
        };
        let text = std::mem::take(&mut w.manifest).into_bytes();
        let name = Path::new(MANIFEST_PATH);
        match &mut sink {
            Sink::Tar(t) => t.file(name, &meta, text.len() as u64, &text[..]),
            Sink::Zip(z) => zip::encode(text, name, shared.zip.expect("zip encoding set for zip"))
                .and_then(|e| z.encoded(name, &meta, &e)),
        }
        .map_err(Error::Output)?;
    }
    let metered = sink.finish().map_err(Error::Output)?;
    let mut stats = w.stats;
    stats.bytes_out = metered.bytes;
    stats.reorder_peak = held_peak;
    let elapsed = started.elapsed();
    let clock = StageClock {
        busy: elapsed.saturating_sub(w.starved + metered.blocked),
        starved: w.starved,
        blocked: metered.blocked,
        items: total,
    };
    Ok(WriteOutcome {
        stats,
        warnings: w.warnings,
        clock,
    })
}

/// Entries that later hard links point at: their hashes are kept for the links' manifest lines.
fn link_targets(walk: &Walk) -> std::collections::HashMap<usize, Option<blake3::Hash>> {
    walk.entries
        .iter()
        .filter_map(|e| match e.kind {
            Kind::HardLink { target } => Some((target, None)),
            _ => None,
        })
        .collect()
}

struct Writer<'a> {
    walk: &'a Walk,
    shared: &'a Shared,
    strict: bool,
    stats: Stats,
    warnings: Vec<Warning>,
    manifest: ManifestWriter,
    /// Hard-link targets → their hash, once stored (`None` until then, or if it was skipped).
    link_hashes: std::collections::HashMap<usize, Option<blake3::Hash>>,
    /// Newest mtime stored: the manifest's own mtime, so it does not depend on the clock.
    newest: i64,
    starved: Duration,
}

impl Writer<'_> {
    fn entry<W: Write>(
        &mut self,
        sink: &mut Sink<W>,
        seq: usize,
        payload: Payload,
    ) -> Result<(), Stop> {
        let entry = &self.walk.entries[seq];
        let rel = entry.rel.as_path();
        let meta = &entry.meta;
        self.shared.writing.store(seq, Ordering::Relaxed);
        self.shared.fault_point("write", rel);
        if !matches!(payload, Payload::Skip { .. } | Payload::Failed(_)) {
            self.newest = self.newest.max(meta.mtime);
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
                self.stored_file(seq, data.len() as u64, &hash);
                if let Some(w) = warning {
                    self.warn(entry, w)?;
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
                self.stored_file(seq, encoded.size, &hash);
                if let Some(w) = warning {
                    self.warn(entry, w)?;
                }
            }
            Payload::Stream {
                size,
                chunks,
                method,
            } => {
                let mut reader = ChunkReader::new(&chunks);
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
                let end = reader.end.ok_or(Stop::Halted)?;
                self.stored_file(seq, size, &end.hash);
                if let Some(w) = end.warning {
                    self.warn(entry, w)?;
                }
            }
            Payload::Symlink { target } => {
                sink.symlink(rel, meta, &target).map_err(Error::Output)?;
                self.stats.symlinks += 1;
            }
            Payload::Header => match entry.kind {
                Kind::Dir => {
                    sink.dir(rel, meta).map_err(Error::Output)?;
                    self.stats.dirs += 1;
                }
                Kind::HardLink { target } => match self.link_hashes.get(&target).copied().flatten()
                {
                    Some(hash) => {
                        let target_rel = &self.walk.entries[target].rel;
                        sink.hardlink(rel, meta, target_rel)
                            .map_err(Error::Output)?;
                        self.manifest.add(rel, &hash);
                        self.stats.hardlinks += 1;
                    }
                    None => {
                        let first = self.walk.entries[target].rel.display().to_string();
                        self.stats.skipped += 1;
                        self.warn(
                            entry,
                            format!("hard link to {first}, which was not stored; skipped"),
                        )?;
                    }
                },
                _ => unreachable!("only directories and hard links are header-only"),
            },
            Payload::Skip { warning } => {
                self.stats.skipped += 1;
                self.warn(entry, warning)?;
            }
            Payload::Failed(e) => return Err(Stop::Error(e)),
        }
        Ok(())
    }

    fn stored_file(&mut self, seq: usize, size: u64, hash: &blake3::Hash) {
        let rel = &self.walk.entries[seq].rel;
        self.manifest.add(rel, hash);
        if let Some(slot) = self.link_hashes.get_mut(&seq) {
            *slot = Some(*hash);
        }
        self.stats.files += 1;
        self.stats.bytes_in += size;
    }

    fn warn(&mut self, entry: &walk::Entry, message: String) -> Result<()> {
        let path = self.walk.source_path(entry);
        self.stats.warnings += 1;
        if self.strict {
            return Err(Error::Strict { path, message });
        }
        tracing::warn!("{}: {}", path.display(), message);
        self.warnings.push(Warning { path, message });
        Ok(())
    }
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
}

impl<'a> ChunkReader<'a> {
    fn new(rx: &'a Receiver<Chunk>) -> Self {
        ChunkReader {
            rx,
            buf: Vec::new(),
            pos: 0,
            end: None,
            broken: false,
            starved: Duration::ZERO,
        }
    }
}

impl Read for ChunkReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.pos < self.buf.len() {
                let n = out.len().min(self.buf.len() - self.pos);
                out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
                self.pos += n;
                return Ok(n);
            }
            if self.end.is_some() {
                return Ok(0);
            }
            let t = Instant::now();
            let got = self.rx.recv();
            self.starved += t.elapsed();
            match got {
                Ok(Chunk::Data(v)) => {
                    self.buf = v;
                    self.pos = 0;
                }
                Ok(Chunk::End(end)) => self.end = Some(end),
                Err(_) => {
                    self.broken = true;
                    return Err(io::Error::other("file stream ended early"));
                }
            }
        }
    }
}

/// Makes the cancel flag reachable from the walk, which only knows `AtomicBool`.
impl Cancel {
    pub(crate) fn flag(&self) -> &AtomicBool {
        &self.0
    }
}
