//! Unpacking and verifying: one reader parses the archive, N workers write (and hash) files.
//!
//! ```text
//! tar:  reader (caller's thread) ──jobs: bounded(2·j)──▶ writers ×j ──results──▶ commit (caller)
//!         reads entry data against the byte budget;        staged file, hash,
//!         large files as a stream of chunks                 mode, mtime
//! zip:  directory parsed and checked up front; each writer reads and inflates its entries itself
//!       through its own positioned reads of the archive file
//! ```
//!
//! Nothing in the destination is touched while the archive is read: every file is written into a
//! per-run staging directory inside DEST (`.archiver-XXXXXX`, created exclusively, its files named
//! by number, so any name the filesystem accepts can be extracted), and the reader only builds a
//! model of the entries (later entries replace earlier ones at the same path, as in tar). When the
//! whole archive has been read, every CRC and checksum has passed and every file matches the
//! embedded manifest, [`commit`] checks the final tree against what DEST holds (links,
//! type conflicts, permissions) and only then moves entries into place, keeping every replaced
//! original until the end so a failure part way puts everything back.

mod commit;
mod expect;
mod input;
mod policy;
mod stage;

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{bounded, unbounded, Receiver, Sender};

use crate::error::{Error, Refused, Result, Rule};
use crate::format::tar_read::TarReader;
use crate::format::zip_read::{self, ZipEntry};
use crate::list::{damaged, escape_name, open_tar, read_head, DecodeThreads, Opened};
use crate::manifest;
use crate::pack::budget::Budget;
use crate::pack::stats::{StageClock, StageStats};
use crate::unpack::expect::{Expect, Spill};
use crate::unpack::policy::Makes;
use crate::unpack::stage::{LinkSource, NewFile, StageError, StageTree};
use crate::{Cancel, Warning, MANIFEST_PATH};
use rustix::fs::FileType;

/// Default limit on the total size an archive may expand to.
pub const DEFAULT_MAX_OUTPUT: u64 = 1 << 40;

/// What an unpack (or verify) did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct UnpackStats {
    /// Regular files written (or checked); the manifest is ours, not counted (as in pack).
    pub files: u64,
    /// Directories.
    pub dirs: u64,
    /// Symbolic links.
    pub symlinks: u64,
    /// Hard links.
    pub hardlinks: u64,
    /// File bytes written (or checked), the manifest not included.
    pub bytes: u64,
    /// Files left alone because they existed (`keep_existing`).
    pub kept_existing: u64,
    /// Files checked against the embedded manifest (`None`: the archive has none).
    pub manifest_checked: Option<u64>,
    /// Wall time.
    #[serde(serialize_with = "secs")]
    pub wall: Duration,
    /// Where the time went: `read` (the archive reader: parsing, decompressing, creating entries
    /// in the staging tree), `write` (the writer threads: file data, hashes), `check` (the manifest
    /// check) and `commit` (moving everything into place).
    pub stages: Vec<StageStats>,
}

impl UnpackStats {
    /// A one-line reading of the stage clocks: which stage limited the run.
    pub fn verdict(&self) -> String {
        let find = |n: &str| self.stages.iter().find(|s| s.name == n);
        let (Some(r), Some(w)) = (find("read"), find("write")) else {
            return "bottleneck: none measured".into();
        };
        let tail = |n: &str| find(n).map_or(0.0, |s| s.busy.as_secs_f64());
        let after = format!(
            "; then check {:.3} s, commit {:.3} s",
            tail("check"),
            tail("commit")
        );
        let input = find("input");
        if input.is_some_and(|i| i.busy_ratio() >= r.busy_ratio().max(w.busy_ratio())) {
            let i = input.expect("checked");
            format!(
                "bottleneck: input stage (reading, decompressing), {:.0}% busy; reader starved {:.0}%{after}",
                i.busy_ratio() * 100.0,
                r.starved_ratio() * 100.0
            )
        } else if r.busy_ratio() >= w.busy_ratio() {
            format!(
                "bottleneck: read stage, {:.0}% busy; writers starved {:.0}%{after}",
                r.busy_ratio() * 100.0,
                w.starved_ratio() * 100.0
            )
        } else {
            format!(
                "bottleneck: write stage, {:.0}% busy; reader blocked {:.0}%{after}",
                w.busy_ratio() * 100.0,
                r.blocked_ratio() * 100.0
            )
        }
    }
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// The result of a successful unpack or verify.
#[derive(Debug, Clone, Default)]
pub struct UnpackReport {
    /// Counts.
    pub stats: UnpackStats,
    /// Non-fatal problems (entries skipped), in entry order.
    pub warnings: Vec<Warning>,
    /// `verify --against`: each way the directory differs from the archive, in entry order.
    pub differences: Vec<Warning>,
}

/// Called with each entry's stored name as it is read (`unpack -v`).
#[derive(Clone)]
struct EntryHook(Arc<HookFn>);

type HookFn = dyn Fn(&[u8]) + Send + Sync;

impl std::fmt::Debug for EntryHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EntryHook")
    }
}

/// Extracts (or only verifies) archives: tar, tar.gz, tar.zst and zip, detected from the bytes.
///
/// ```
/// # fn main() -> Result<(), archiver::Error> {
/// let src = tempfile::tempdir().unwrap();
/// std::fs::write(src.path().join("a.txt"), "hi").unwrap();
/// let mut archive = Vec::new();
/// archiver::Packer::new(["."]).directory(src.path()).pack(&mut archive)?;
///
/// let dest = tempfile::tempdir().unwrap();
/// let report = archiver::Unpacker::new(dest.path()).sync(false).unpack(&archive[..])?;
/// assert_eq!(report.stats.manifest_checked, Some(1));
/// assert_eq!(std::fs::read(dest.path().join("a.txt")).unwrap(), b"hi");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Unpacker {
    dest: Option<PathBuf>,
    jobs: usize,
    keep_existing: bool,
    sync: bool,
    max_output: u64,
    memory_budget: u64,
    cancel: Cancel,
    against: Option<PathBuf>,
    require_manifest: bool,
    strip: usize,
    on_entry: Option<EntryHook>,
    on_progress: Option<ProgressHookDebug>,
    allow_outside_links: bool,
}

/// The progress hook, printable in `Unpacker`'s `Debug`.
#[derive(Clone)]
struct ProgressHookDebug(crate::ProgressHook);

impl std::fmt::Debug for ProgressHookDebug {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProgressHook")
    }
}

/// Small files handed to a writer together, at most (files, bytes).
const BATCH_FILES: usize = 64;
const BATCH_BYTES: u64 = 1 << 20;

/// How often the progress hook is called at most.
const PROGRESS_EVERY: Duration = Duration::from_millis(50);

impl Unpacker {
    /// Extracts into `dest` (created if missing).
    pub fn new(dest: impl Into<PathBuf>) -> Self {
        Unpacker {
            dest: Some(dest.into()),
            jobs: crate::default_jobs(),
            keep_existing: false,
            sync: true,
            max_output: DEFAULT_MAX_OUTPUT,
            memory_budget: crate::DEFAULT_MEMORY_BUDGET,
            cancel: Cancel::new(),
            against: None,
            require_manifest: false,
            strip: 0,
            on_entry: None,
            on_progress: None,
            allow_outside_links: false,
        }
    }

    /// Reads and checks everything (CRCs, checksums, manifest) without writing anything.
    pub fn verify_only() -> Self {
        Unpacker {
            dest: None,
            ..Unpacker::new("")
        }
    }

    /// Verify mode only: also compare every entry with the tree in `dir` (type, size, mode, content,
    /// link target), like GNU tar's `--compare`. Differences come back in
    /// [`UnpackReport::differences`].
    pub fn against(mut self, dir: impl Into<PathBuf>) -> Self {
        self.against = Some(dir.into());
        self
    }

    /// Writer threads (they create, fill and hash the files). The reader, which also
    /// decompresses a tar.gz or tar.zst, runs on the calling thread, so a run keeps at most
    /// `jobs + 1` threads busy; the final moves into place use up to `jobs` threads.
    pub fn jobs(mut self, jobs: usize) -> Self {
        self.jobs = jobs.max(1);
        self
    }

    /// Never modify a file that already exists. Its data in the archive is still read and checked
    /// against the manifest.
    pub fn keep_existing(mut self, yes: bool) -> Self {
        self.keep_existing = yes;
        self
    }

    /// Fail with [`Error::NoManifest`] unless the archive carries `.archiver/MANIFEST.b3` (every
    /// file is checked against it whenever it is present).
    pub fn require_manifest(mut self, yes: bool) -> Self {
        self.require_manifest = yes;
        self
    }

    /// Trusted archives only: create symlinks whose targets are absolute or lead outside the
    /// destination (`bin/python -> /usr/bin/python3`) as they are, instead of refusing them.
    /// Nothing is ever written *through* a symlink, this option or not: an entry below a
    /// symlink is still refused.
    pub fn allow_outside_links(mut self, yes: bool) -> Self {
        self.allow_outside_links = yes;
        self
    }

    /// Drop `n` leading components of every name, as GNU tar's `--strip-components` does (also in
    /// hard-link targets); entries with no more than `n` components are skipped.
    pub fn strip_components(mut self, n: usize) -> Self {
        self.strip = n;
        self
    }

    /// Calls `f` with each entry's stored name as it is read (for `tar -v` style listings).
    pub fn on_entry(mut self, f: impl Fn(&[u8]) + Send + Sync + 'static) -> Self {
        self.on_entry = Some(EntryHook(Arc::new(f)));
        self
    }

    /// Calls `f` with the progress of every run, from the reading thread, at most every 50 ms and
    /// once at the end. Entries and file bytes count as they are read (inside large files too).
    /// For a tar stream the totals grow with what has been read (`totals_final` is set at the
    /// end); for a zip they come from its central directory and are final from the start.
    pub fn on_progress(mut self, f: impl Fn(&crate::Progress) + Send + Sync + 'static) -> Self {
        self.on_progress = Some(ProgressHookDebug(Arc::new(f)));
        self
    }

    /// Make the data durable before returning (default on): one `syncfs` of the destination's
    /// filesystem on Linux, `sync` elsewhere.
    pub fn sync(mut self, yes: bool) -> Self {
        self.sync = yes;
        self
    }

    /// Refuse archives that expand to more than `bytes` (default 1 TiB).
    pub fn max_output(mut self, bytes: u64) -> Self {
        self.max_output = bytes;
        self
    }

    /// Byte budget for file data between the reader and the writers.
    pub fn memory_budget(mut self, bytes: u64) -> Self {
        self.memory_budget = bytes;
        self
    }

    /// Uses this cancellation handle.
    pub fn cancel_with(mut self, cancel: Cancel) -> Self {
        self.cancel = cancel;
        self
    }

    /// Unpacks from a stream. A zip is first copied to a temporary file (its directory is at the end).
    /// An empty stream is an error, never an empty archive. A compressed stream is decompressed
    /// as its bytes arrive, so a slow or stalled producer's data (and any damage in it) is acted
    /// on at once; for a file, [`unpack_path`](Self::unpack_path) or
    /// [`unpack_from_file`](Self::unpack_from_file) decompress in parallel.
    pub fn unpack<R: Read>(&self, input: R) -> Result<UnpackReport> {
        self.unpack_with(input, DecodeThreads::SEQUENTIAL)
    }

    /// Like [`unpack`](Self::unpack), for a stream whose reads never wait on a producer (a file,
    /// perhaps behind a progress-counting wrapper): our tar.gz and tar.zst are decompressed in
    /// parallel, reading up to a few MiB ahead.
    pub fn unpack_from_file<R: Read>(&self, input: R) -> Result<UnpackReport> {
        self.unpack_with(input, DecodeThreads::beside_writers(self.jobs))
    }

    fn unpack_with<R: Read>(&self, input: R, threads: DecodeThreads) -> Result<UnpackReport> {
        let result = match open_tar(input, threads) {
            Ok(Opened::Tar(tar, plain)) => self.run(Source::Tar(tar, plain)),
            Ok(Opened::Zip(mut all)) => tempfile::tempfile()
                .and_then(|mut spool| io::copy(&mut all, &mut spool).map(|_| spool))
                .map_err(Error::Input)
                .and_then(|spool| self.run(Source::Zip(&spool))),
            Err(e) => Err(e),
        };
        result.map_err(|e| self.or_cancelled(e))
    }

    /// Unpacks an archive file (a zip is read in place, in parallel).
    pub fn unpack_path(&self, path: &Path) -> Result<UnpackReport> {
        let file = File::open(path).map_err(|e| Error::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
        if zip_read::is_zip(&file, &read_head(&file)?) {
            return self
                .run(Source::Zip(&file))
                .map_err(|e| self.or_cancelled(e));
        }
        drop(file);
        let file = File::open(path).map_err(Error::Input)?;
        self.unpack_from_file(io::BufReader::with_capacity(256 << 10, file))
    }

    /// A read that failed because the user cancelled (a cancellable input gives up with an error)
    /// is reported as the cancel it is.
    fn or_cancelled(&self, e: Error) -> Error {
        if self.cancel.is_cancelled() {
            Error::Cancelled
        } else {
            e
        }
    }

    /// One unpack or verify: read the archive (input stage, reader, writers), then check it
    /// against its manifest, then commit the staging tree into DEST.
    fn run(&self, source: Source<'_>) -> Result<UnpackReport> {
        let started = Instant::now();
        if let Some(dir) = &self.against {
            // A directory that is not there is a mistake in the command, not a tree that lacks
            // every file (GNU tar --diff: "Cannot open", exit 2).
            match fs::metadata(dir) {
                Ok(md) if md.is_dir() => {}
                Ok(_) => {
                    return Err(Error::Source {
                        path: dir.clone(),
                        reason: "is not a directory (--against)".into(),
                    })
                }
                Err(e) => {
                    return Err(Error::Io {
                        path: dir.clone(),
                        source: e,
                    })
                }
            }
        }
        let (mut staging, tree) = self.create_staging()?;
        let done = self.read_archive(source, staging.as_ref(), tree)?;
        let ReadDone {
            tree,
            dirs,
            expect,
            mut refused,
            mut warnings,
            mut differences,
            write_error,
            manifest,
            manifest_lead,
            mut stats,
            mut progress,
        } = done;
        if let Some((_, e)) = write_error {
            return Err(e);
        }
        if self.cancel.is_cancelled() {
            return Err(Error::Cancelled);
        }
        self.check(expect, manifest, manifest_lead, &mut stats, &mut refused)?;
        if let (Some(dest), Some(staging), Some(tree)) = (&self.dest, staging.as_mut(), &tree) {
            let opts = commit::Options {
                keep_existing: self.keep_existing,
                allow_outside_links: self.allow_outside_links,
                sync: self.sync,
                jobs: self.jobs,
                cancel: &self.cancel,
            };
            let committing = Instant::now();
            commit::commit(&opts, dest, staging, tree, &dirs, &mut stats, &mut warnings)?;
            let clock = StageClock {
                busy: committing.elapsed(),
                ..StageClock::default()
            };
            stats
                .stages
                .push(StageStats::from_clock("commit", 1, clock));
        }
        differences.sort_by_key(|(seq, _)| *seq);
        stats.wall = started.elapsed();
        if let Some(hook) = &self.on_progress {
            progress.entries_total = progress.entries_done;
            progress.bytes_total = progress.bytes_done;
            progress.totals_final = true;
            (hook.0)(&progress);
        }
        Ok(UnpackReport {
            stats,
            warnings,
            differences: differences.into_iter().map(|(_, w)| w).collect(),
        })
    }

    /// DEST (created if missing), the run's staging directory in it and the mirror tree the
    /// entries are created in; none of them when only verifying.
    fn create_staging(&self) -> Result<(Option<commit::Staging>, Option<StageTree>)> {
        let Some(dest) = &self.dest else {
            return Ok((None, None));
        };
        fs::create_dir_all(dest).map_err(|e| {
            // create_dir_all says only "File exists" when DEST is not a directory (a file, a
            // dangling symlink).
            let not_a_dir = e.kind() == io::ErrorKind::AlreadyExists
                && fs::symlink_metadata(dest).is_ok()
                && !fs::metadata(dest).is_ok_and(|m| m.is_dir());
            let source = if not_a_dir {
                io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "the destination exists and is not a directory",
                )
            } else {
                e
            };
            Error::Io {
                path: dest.clone(),
                source,
            }
        })?;
        let staging = commit::Staging::create(dest, &self.cancel)?;
        let tree = StageTree::create(&staging.tree_path()).map_err(|e| Error::Io {
            path: staging.path().to_path_buf(),
            source: e,
        })?;
        Ok((Some(staging), Some(tree)))
    }

    /// The manifest check (after every entry has been read and written): refusals end the run.
    fn check(
        &self,
        expect: Expect,
        manifest: Option<Spill>,
        manifest_lead: usize,
        stats: &mut UnpackStats,
        refused: &mut Vec<Refused>,
    ) -> Result<()> {
        // Verify has no staging tree that checked hard links as they came: the records do.
        let check_links = self.dest.is_none().then_some(self.allow_outside_links);
        let checking = Instant::now();
        // The manifest's lines have no leading `./` when the archive's names do (GNU tar's
        // `-C dir .` of an extracted tree): those components are stripped from the names only.
        let strip = self.strip.saturating_sub(manifest_lead);
        let (checked, threads) = expect.finish(manifest, strip, check_links, self.jobs, refused)?;
        stats.manifest_checked = checked;
        // Wall time: the check's threads work side by side.
        let check = StageClock {
            busy: checking.elapsed(),
            items: stats.manifest_checked.unwrap_or(0),
            ..StageClock::default()
        };
        stats
            .stages
            .push(StageStats::from_clock("check", threads, check));
        if !refused.is_empty() {
            return Err(Error::Refused(std::mem::take(refused)));
        }
        if stats.manifest_checked.is_none() && self.require_manifest {
            return Err(Error::NoManifest);
        }
        Ok(())
    }

    /// Reads the whole archive: the input stage on this thread (a tar stream), the reader on a
    /// thread of its own, `jobs` writers; returns what the reader gathered once all have stopped.
    fn read_archive(
        &self,
        source: Source<'_>,
        staging: Option<&commit::Staging>,
        tree: Option<StageTree>,
    ) -> Result<ReadDone> {
        let budget = Budget::new(self.memory_budget);
        let (job_tx, job_rx) = bounded::<Vec<WriteJob>>(self.jobs * 2);
        let (res_tx, res_rx) = unbounded::<Vec<Written>>();
        std::thread::scope(|s| {
            let mut workers = Vec::new();
            for _ in 0..self.jobs {
                let (rx, tx, budget) = (job_rx.clone(), res_tx.clone(), &budget);
                let (dest, against) = (self.dest.as_deref(), self.against.as_deref());
                let cancel = &self.cancel;
                workers.push(crate::threads::spawn(s, "unpack-write", move || {
                    writer(dest, against, rx, tx, budget, cancel)
                }));
            }
            drop(job_rx);
            drop(res_tx);
            let staging_name = staging.map(|s| s.name().to_owned());
            let ctx = Ctx::new(self, job_tx, res_rx, &budget, staging_name, tree);
            let (mut ctx, read_result, input_clock) = match source {
                // A plain tar being unpacked has nothing to decompress, so an input stage would
                // only add a copy and a hand-over per 256 KiB while the writers do the heavy
                // work: the reader parses it here, on the caller's thread (the input need not
                // be Send), straight from the input; a large file's chunks are read into the
                // buffers its writer gets. When only verifying, the reader hashes and has no
                // writer work to overlap, so reading on a thread of its own pays (verify of
                // two 128 MiB files: 0.049 s with it, 0.086 s without).
                Source::Tar(tar, true) if self.dest.is_some() => {
                    let (timed, clock) = input::TimedInput::new(tar, &self.cancel);
                    let starved = clock.starved();
                    let buffered = io::BufReader::with_capacity(input::CHUNK, timed);
                    let started = Instant::now();
                    let (ctx, result) = reader_thread(ctx, Input::Plain(buffered), Some(starved));
                    (ctx, result, Some(clock.get(started.elapsed())))
                }
                // Otherwise it is read (and decompressed) here, on the caller's thread, and the
                // reader parses it on a thread of its own.
                Source::Tar(tar, _) => {
                    let (pump, chunks, starved) = input::channel();
                    let reader = crate::threads::spawn(s, "unpack-read", move || {
                        reader_thread(ctx, Input::Tar(chunks), Some(starved))
                    })?;
                    // A panic while decompressing (in a codec) is an error like any other
                    // stage's: the pump's end drops as it unwinds, so the reader stops too and
                    // is joined first.
                    let mut tar = tar;
                    let input = crate::threads::catch(
                        "unpack-input",
                        || None,
                        || pump.run(&mut *tar, &self.cancel),
                    );
                    let (ctx, read_result) = crate::threads::join("unpack-read", reader)?;
                    match input {
                        Ok(clock) => (ctx, read_result, Some(clock)),
                        Err(e) => (ctx, Err(e), None),
                    }
                }
                Source::Zip(file) => {
                    let reader = crate::threads::spawn(s, "unpack-read", move || {
                        reader_thread(ctx, Input::Zip(file), None)
                    })?;
                    let (ctx, read_result) = crate::threads::join("unpack-read", reader)?;
                    (ctx, read_result, None)
                }
            };
            ctx.jobs = None; // workers finish what they have and stop
            if read_result.is_err() {
                budget.close();
            }
            while let Ok(done) = ctx.results.recv() {
                ctx.absorb_batch(done);
            }
            let writers = join_writers(workers)?;
            read_result?;
            ctx.stats.stages = input_clock
                .map(|c| StageStats::from_clock("input", 1, c))
                .into_iter()
                .chain([
                    StageStats::from_clock("read", 1, ctx.clock),
                    StageStats::from_clock("write", self.jobs, writers),
                ])
                .collect();
            Ok(ctx.finish())
        })
    }
}

/// The reader thread: parses the archive and hands files to the writers; gives its state back
/// (with its clock) whatever happens, a panic included.
fn reader_thread<'a>(
    mut ctx: Ctx<'a>,
    input: Input<'_>,
    starved: Option<input::Starved>,
) -> (Ctx<'a>, Result<()>) {
    let started = Instant::now();
    let result = crate::threads::catch(
        "unpack-read",
        || None,
        || match input {
            Input::Tar(chunks) => read_tar(&mut ctx, Box::new(chunks)),
            Input::Plain(input) => read_tar(&mut ctx, Box::new(input)),
            Input::Zip(file) => read_zip(&mut ctx, file),
        },
    )
    .and_then(|r| r);
    let result = result.and_then(|()| ctx.flush());
    ctx.clock.starved = starved.map_or(Duration::ZERO, |s| s.get());
    ctx.clock.busy = started
        .elapsed()
        .saturating_sub(ctx.clock.blocked + ctx.clock.starved);
    ctx.clock.items = ctx.seq;
    (ctx, result)
}

/// Joins the writer threads and adds up their clocks; a writer's panic is the run's error.
fn join_writers(
    workers: Vec<Result<std::thread::ScopedJoinHandle<'_, StageClock>>>,
) -> Result<StageClock> {
    let mut writers = StageClock::default();
    for w in workers {
        writers.add(&crate::threads::join("unpack-write", w?)?);
    }
    Ok(writers)
}

/// `verify --against`: how the file at `path` differs from a regular file entry.
fn compare_file(path: &Path, hash: &blake3::Hash, size: u64, mode: u32) -> Vec<String> {
    let mut out = Vec::new();
    match fs::symlink_metadata(path) {
        Err(_) => out.push("missing on disk".into()),
        Ok(md) if !md.is_file() => out.push("is not a regular file on disk".into()),
        Ok(md) => {
            if md.len() != size {
                out.push(format!("size differs: archive {size}, disk {}", md.len()));
            } else if hash_file(path).ok().as_ref() != Some(hash) {
                out.push("contents differ".into());
            }
            if let Some(m) = disk_mode(&md).filter(|m| m & 0o777 != mode & 0o777) {
                out.push(format!(
                    "mode differs: archive {:o}, disk {:o}",
                    mode & 0o777,
                    m & 0o777
                ));
            }
        }
    }
    out
}

fn hash_file(path: &Path) -> io::Result<blake3::Hash> {
    let mut h = blake3::Hasher::new();
    io::copy(&mut File::open(path)?, &mut h)?;
    Ok(h.finalize())
}

#[cfg(unix)]
fn disk_mode(md: &fs::Metadata) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    Some(md.permissions().mode())
}

#[cfg(not(unix))]
fn disk_mode(_md: &fs::Metadata) -> Option<u32> {
    None
}

/// Bytes available to us on the filesystem holding `dir`.
#[cfg(unix)]
fn free_space(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs fills the struct for a NUL-terminated path.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

#[cfg(not(unix))]
fn free_space(_dir: &Path) -> Option<u64> {
    None
}

/// `fchmod` on the open file: no second path lookup.
#[cfg(unix)]
fn set_file_mode(f: &File, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    f.set_permissions(fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_file_mode(_f: &File, _mode: u32) -> io::Result<()> {
    Ok(())
}

fn time_of(mtime: i64) -> SystemTime {
    crate::format::tar_read::unix_time(mtime, 0)
}

/// What DEST holds at a path: its directory (opened without following links), name, type and
/// (device, inode).
type Held = (
    std::os::fd::OwnedFd,
    std::ffi::OsString,
    FileType,
    (u64, u64),
);

/// Refusals, warnings and differences found while reading are listed up to this many of each;
/// the rest are counted in one last line.
const MAX_REPORTED: usize = 1000;

/// An entry's name as a report shows it: escaped, and cut after
/// [`REPORTED_NAME`](crate::list::REPORTED_NAME) bytes (a name that long is refused anyway, and a
/// thousand escaped 64 KiB names would be a quarter gigabyte).
pub(super) fn reported_name(raw: &[u8]) -> String {
    match crate::list::cut_name(raw) {
        (name, None) => escape_name(name),
        (cut, Some(n)) => format!("{}... ({n} bytes in all)", escape_name(cut)),
    }
}

/// A reason or message as a report keeps it: cut after [`REPORTED_TEXT`] bytes (it may quote a
/// link target of 64 KiB, escaped to four times that).
pub(super) fn reported_text(mut text: String) -> String {
    if text.len() > REPORTED_TEXT {
        let mut cut = REPORTED_TEXT;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("...");
    }
    text
}

/// Bytes of a reason or message kept in a report.
const REPORTED_TEXT: usize = 2 * crate::list::REPORTED_NAME + 512;

/// What the reader collected, handed to the manifest check and the commit.
struct ReadDone {
    tree: Option<StageTree>,
    dirs: commit::DirMetas,
    expect: Expect,
    refused: Vec<Refused>,
    warnings: Vec<Warning>,
    differences: Vec<(u64, Warning)>,
    write_error: Option<(u64, Error)>,
    manifest: Option<Spill>,
    manifest_lead: usize,
    stats: UnpackStats,
    progress: crate::Progress,
}

/// What `run` reads: a tar stream (decompressed on the caller's thread) or a zip file.
enum Source<'i> {
    /// The tar stream, and whether it is stored plain (not decompressed).
    Tar(Box<dyn Read + 'i>, bool),
    Zip(&'i File),
}

/// The reader thread's end of a [`Source`].
enum Input<'i> {
    Tar(input::ChunkReader),
    /// A plain tar, read directly (see `read_archive`): buffered here, as the input may not be.
    Plain(io::BufReader<input::TimedInput<'i>>),
    Zip(&'i File),
}

/// A file for a writer: its staged file (if it is written), metadata and data.
struct WriteJob {
    seq: u64,
    rel: PathBuf,
    mode: u32,
    mtime: SystemTime,
    /// The file in the staging tree (open, or to be created by the writer); `None`: only hash it
    /// (verify, or a file `-k` keeps).
    file: Option<NewFile>,
    data: JobData,
    cost: u64,
}

enum JobData {
    /// Small file, whole.
    Whole(Vec<u8>),
    /// Large file, in chunks; `size` bytes in all. Chunks written go back through `recycle`.
    /// `sparse`: a sparse tar entry, whose zero blocks are left as holes.
    Chunks {
        rx: Receiver<Piece>,
        size: u64,
        recycle: Sender<Vec<u8>>,
        sparse: bool,
    },
    /// A zip entry the writer reads and inflates itself.
    Zip(Arc<File>, Box<ZipEntry>),
}

/// A streamed file's data on its way to its writer.
enum Piece {
    Data(Vec<u8>),
    /// Every chunk has been sent; the hash of them all. The reader hashes each chunk right after
    /// copying it (while it is in the cache), so a large file's writer only writes: the two
    /// stages of a large file cost about the same instead of the writer doing both halves.
    End(blake3::Hash),
}

/// A writer's outcome for one file: its hash and size, and (`verify --against`) how the
/// directory's copy differs.
struct Written {
    seq: u64,
    result: Result<(blake3::Hash, u64)>,
    differences: Vec<Warning>,
}

/// The reader's state.
struct Ctx<'a> {
    opts: &'a Unpacker,
    jobs: Option<Sender<Vec<WriteJob>>>,
    /// Small files waiting to go to a writer together (one hand-over per batch, not per file).
    batch: Vec<WriteJob>,
    /// Files handed to the writers whose results have not come back.
    in_flight: u64,
    batch_bytes: u64,
    results: Receiver<Vec<Written>>,
    budget: &'a Budget,
    seq: u64,
    total: u64,
    /// Bytes free in the destination's filesystem when we started: a bomb meets a clear error
    /// before it fills the disk.
    free: u64,
    /// The staging directory's name in DEST: no entry may use it.
    staging_name: Option<std::ffi::OsString>,
    /// The mirror tree the entries are created in (`None` when only verifying).
    tree: Option<StageTree>,
    /// With `-k`: DEST, opened once, where what it holds is looked up without following links.
    dest_dir: Option<std::os::fd::OwnedFd>,
    /// With `-k`: the files of the archive DEST held and kept, the only ones a hard link that
    /// finds no staged source may name (one path per kept file).
    kept: std::collections::HashSet<PathBuf>,
    dirs: commit::DirMetas,
    /// What the manifest check needs of each entry.
    expect: Expect,
    /// Problems found while reading: the first [`MAX_REPORTED`] of each kind, the rest counted
    /// (a hostile archive of a million refused entries must not grow memory).
    refused: Vec<Refused>,
    warnings: Vec<Warning>,
    differences: Vec<(u64, Warning)>,
    /// How many of each were not kept: refused, warnings, differences.
    unreported: [u64; 3],
    /// The first writer error (by entry order).
    write_error: Option<(u64, Error)>,
    /// The manifest's text.
    manifest: Option<Spill>,
    /// Leading components of the manifest's own stored name before `.archiver` (see
    /// [`manifest_lead`]).
    manifest_lead: usize,
    stats: UnpackStats,
    progress: crate::Progress,
    last_progress: Option<Instant>,
    /// The manifest entry: ours, not a user file, so not in the counts (as in pack's).
    manifest_seq: Option<u64>,
    /// An entry (of any type) named as the manifest was read: a second one is refused.
    manifest_named: bool,
    /// The reader's time waiting for the writers (busy is the rest).
    clock: StageClock,
    /// Streamed chunks the writers have written, back for the next one (no allocation and no
    /// fresh pages per chunk).
    spare: (Sender<Vec<u8>>, Receiver<Vec<u8>>),
}

impl<'a> Ctx<'a> {
    fn new(
        opts: &'a Unpacker,
        jobs: Sender<Vec<WriteJob>>,
        results: Receiver<Vec<Written>>,
        budget: &'a Budget,
        staging_name: Option<std::ffi::OsString>,
        tree: Option<StageTree>,
    ) -> Self {
        Ctx {
            opts,
            jobs: Some(jobs),
            batch: Vec::new(),
            in_flight: 0,
            batch_bytes: 0,
            results,
            budget,
            seq: 0,
            total: 0,
            free: opts
                .dest
                .as_deref()
                .and_then(free_space)
                .unwrap_or(u64::MAX),
            staging_name,
            dest_dir: opts
                .dest
                .as_deref()
                .filter(|_| opts.keep_existing)
                .and_then(|d| {
                    let flags = rustix::fs::OFlags::RDONLY
                        | rustix::fs::OFlags::DIRECTORY
                        | rustix::fs::OFlags::CLOEXEC;
                    rustix::fs::open(d, flags, rustix::fs::Mode::empty()).ok()
                }),
            kept: std::collections::HashSet::new(),
            tree,
            dirs: commit::DirMetas::default(),
            expect: Expect::new(),
            refused: Vec::new(),
            warnings: Vec::new(),
            differences: Vec::new(),
            unreported: [0; 3],
            write_error: None,
            manifest: None,
            manifest_lead: 0,
            stats: UnpackStats::default(),
            progress: crate::Progress::default(),
            last_progress: None,
            manifest_seq: None,
            manifest_named: false,
            clock: StageClock::default(),
            spare: bounded(SPARE_CHUNKS),
        }
    }
}

impl Ctx<'_> {
    /// Counts `bytes` more of file data read and reports progress when it is time.
    fn advance(&mut self, entries: u64, bytes: u64) {
        let p = &mut self.progress;
        p.entries_done += entries;
        p.bytes_done += bytes;
        if !p.totals_final {
            p.entries_total = p.entries_total.max(p.entries_done);
            p.bytes_total = p.bytes_total.max(p.bytes_done);
        }
        let Some(hook) = &self.opts.on_progress else {
            return;
        };
        let now = Instant::now();
        if self
            .last_progress
            .is_none_or(|t| now.duration_since(t) >= PROGRESS_EVERY)
        {
            self.last_progress = Some(now);
            (hook.0)(&self.progress);
        }
    }

    fn finish(mut self) -> ReadDone {
        let [refused, warnings, differences] = self.unreported;
        let more = |n: u64| format!("({n} more entries)");
        if refused > 0 {
            self.refused.push(Refused {
                entry: more(refused),
                rule: self.refused[0].rule,
                reason: format!("refused too; only the first {MAX_REPORTED} are listed"),
                more: refused,
            });
        }
        if warnings > 0 {
            self.warnings.push(Warning {
                path: PathBuf::from(more(warnings)),
                message: format!("warned about too; only the first {MAX_REPORTED} are listed"),
            });
        }
        if differences > 0 {
            self.differences.push((
                u64::MAX,
                Warning {
                    path: PathBuf::from(more(differences)),
                    message: format!("differ too; only the first {MAX_REPORTED} are listed"),
                },
            ));
        }
        ReadDone {
            tree: self.tree,
            dirs: self.dirs,
            expect: self.expect,
            refused: self.refused,
            warnings: self.warnings,
            differences: self.differences,
            write_error: self.write_error,
            manifest: self.manifest,
            manifest_lead: self.manifest_lead,
            stats: self.stats,
            progress: self.progress,
        }
    }

    /// Takes in a writer's result.
    fn absorb(&mut self, w: Written) {
        match w.result {
            Ok((hash, size)) => {
                if self.manifest_seq != Some(w.seq) {
                    self.stats.files += 1;
                    self.stats.bytes += size;
                }
                self.expect.file_hash(w.seq, &hash);
                if self.progress.totals_final {
                    self.advance(0, size); // zip: the writers read the data themselves
                }
            }
            Err(e) => {
                if self.write_error.as_ref().is_none_or(|(s, _)| w.seq < *s) {
                    self.write_error = Some((w.seq, e));
                }
            }
        }
        for d in w.differences {
            self.push_difference(w.seq, d);
        }
    }

    fn push_difference(&mut self, seq: u64, d: Warning) {
        if self.differences.len() < MAX_REPORTED {
            self.differences.push((seq, d));
        } else {
            self.unreported[2] += 1;
        }
    }

    /// Takes in one batch of results.
    fn absorb_batch(&mut self, done: Vec<Written>) {
        self.in_flight = self.in_flight.saturating_sub(done.len() as u64);
        done.into_iter().for_each(|w| self.absorb(w));
    }

    /// Takes in the results that are ready, so none pile up.
    fn absorb_ready(&mut self) {
        while let Ok(done) = self.results.try_recv() {
            self.absorb_batch(done);
        }
    }

    /// Whether `raw` names the manifest a second time (whatever the two entries' types): refused,
    /// since which one is checked and which one lands would depend on the order and on
    /// `--strip-components` (an appended manifest could vouch for one file while another lands).
    fn second_manifest(&mut self, raw: &[u8], backslash_sep: bool) -> bool {
        if !is_manifest_name(raw, backslash_sep)
            || !std::mem::replace(&mut self.manifest_named, true)
        {
            return false;
        }
        self.refuse(
            raw,
            Rule::Manifest,
            format!("a second entry named {MANIFEST_PATH}: an archive carries one manifest (this one was altered or appended to)"),
        );
        true
    }

    fn refuse(&mut self, entry: &[u8], rule: Rule, reason: impl Into<String>) {
        if self.refused.len() < MAX_REPORTED {
            self.refused.push(Refused {
                entry: reported_name(entry),
                rule,
                reason: reported_text(reason.into()),
                more: 0,
            });
        } else {
            self.unreported[0] += 1;
        }
    }

    fn warn(&mut self, entry: &[u8], message: impl Into<String>) {
        let message = message.into();
        tracing::debug!("{}: {message}", escape_name(entry));
        if self.warnings.len() < MAX_REPORTED {
            let path = PathBuf::from(reported_name(entry));
            let message = reported_text(message);
            self.warnings.push(Warning { path, message });
        } else {
            self.unreported[1] += 1;
        }
    }

    /// `verify --against`: one difference of the entry `seq`.
    fn differ(&mut self, seq: u64, rel: &Path, message: String) {
        if let Some(dir) = &self.opts.against {
            let path = dir.join(rel);
            let message = reported_text(message);
            self.push_difference(seq, Warning { path, message });
        }
    }

    /// Whether an entry is written out as far as being the manifest goes: our manifest lands in
    /// DEST as `.archiver/MANIFEST.b3` (so `b3sum --check` works there), but not when names are
    /// stripped of more than its leading `./`. Its paths are the unstripped ones, so it would
    /// check nothing there, and stripped itself it would land as `MANIFEST.b3`, over a user's
    /// file of that name from the archive. It is read and checked either way.
    fn manifest_written(&self, is_manifest: bool) -> bool {
        !is_manifest || self.opts.strip <= self.manifest_lead
    }

    /// The checked (and stripped) path of an entry; `None` when it was refused or stripped away.
    /// Reports the entry to the `on_entry` hook.
    fn name(&mut self, raw: &[u8], backslash_sep: bool) -> Option<PathBuf> {
        match policy::entry_path_stripped(raw, backslash_sep, self.opts.strip) {
            Ok(Some(rel)) => {
                if let Some(hook) = &self.opts.on_entry {
                    (hook.0)(raw);
                }
                if let Err(r) = policy::not_staging(&rel, self.staging_name.as_deref()) {
                    self.refuse(raw, r.rule, r.reason);
                    return None;
                }
                Some(rel)
            }
            Ok(None) => None,
            Err(r) => {
                self.refuse(raw, r.rule, r.reason);
                None
            }
        }
    }

    /// Runs `op` on the staging tree; when it must wait for the writers (it touches a path one may
    /// still be creating), waits and runs it again.
    fn on_tree<T>(
        &mut self,
        op: impl Fn(&mut StageTree) -> std::result::Result<T, StageError>,
    ) -> Result<std::result::Result<T, StageError>> {
        loop {
            let tree = self.tree.as_mut().expect("unpacking");
            match op(tree) {
                Err(StageError::Barrier) => self.barrier()?,
                other => return Ok(other),
            }
        }
    }

    /// Waits until the writers have handled every file handed to them.
    fn barrier(&mut self) -> Result<()> {
        self.flush()?;
        let waited = Instant::now();
        while self.in_flight > 0 {
            let Ok(done) = self.results.recv() else {
                break; // every writer is gone: their errors are reported from the results
            };
            self.absorb_batch(done);
        }
        self.clock.blocked += waited.elapsed();
        if let Some(tree) = &mut self.tree {
            tree.writers_done();
        }
        Ok(())
    }

    /// A staging error: a refusal of the entry (`Ok(false)`), or fatal.
    fn staged(
        &mut self,
        raw: &[u8],
        rel: &Path,
        r: std::result::Result<(), StageError>,
    ) -> Result<bool> {
        match r {
            Ok(()) => Ok(true),
            Err(StageError::Refuse(rule, why)) => {
                self.refuse(raw, rule, why);
                Ok(false)
            }
            Err(StageError::Barrier) => unreachable!("on_tree waits and retries"),
            Err(StageError::Io(e)) => Err(Error::Io {
                path: self.final_path(rel),
                source: e,
            }),
        }
    }

    /// Where an entry ends up (errors name it, never the staging name).
    fn final_path(&self, rel: &Path) -> PathBuf {
        self.opts
            .dest
            .as_deref()
            .map_or_else(|| rel.to_path_buf(), |d| d.join(rel))
    }

    fn dir(
        &mut self,
        raw: &[u8],
        rel: PathBuf,
        mode: u32,
        mtime: SystemTime,
        seq: u64,
    ) -> Result<()> {
        if self.tree.is_some() {
            let made = self.on_tree(|t| t.dir(&rel))?;
            if !self.staged(raw, &rel, made)? {
                return Ok(());
            }
            self.dirs.push(&rel, (mode, mtime));
        }
        let missing = (self.opts.against.as_deref()).is_some_and(|d| !d.join(&rel).is_dir());
        if missing {
            self.differ(seq, &rel, "missing on disk, or not a directory".into());
        }
        self.stats.dirs += 1;
        self.expect.dir(seq, &rel)
    }

    /// Registers a regular file: `Ok(Some(file))` when its data goes to a writer (always, so it is
    /// hashed; the staged file, or `None` when verifying or when `-k` keeps an existing file),
    /// `Ok(None)` when it was refused. `check`: the manifest lists it (all but the manifest).
    fn file(
        &mut self,
        raw: &[u8],
        rel: &Path,
        mode: u32,
        seq: u64,
        check: bool,
    ) -> Result<Option<Option<NewFile>>> {
        if let Err(r) = policy::not_the_destination(rel, Makes::File) {
            self.refuse(raw, r.rule, r.reason);
            return Ok(None);
        }
        let kept = policy::keeps_file(self.opts.keep_existing, || self.held(rel).is_some());
        let mut file = None;
        if self.tree.is_some() && !kept {
            match self.on_tree(|t| t.file(rel, mode))? {
                Ok(f) => file = Some(f),
                Err(e) => {
                    self.staged(raw, rel, Err(e))?;
                    return Ok(None);
                }
            }
        }
        if kept {
            self.kept.insert(rel.to_path_buf());
            self.stats.kept_existing += 1;
            tracing::info!("{}: exists; kept", escape_name(raw));
        }
        if check {
            self.expect.file(seq, rel)?;
        }
        Ok(Some(file))
    }

    fn symlink(
        &mut self,
        raw: &[u8],
        rel: PathBuf,
        target: &[u8],
        mtime: SystemTime,
        seq: u64,
    ) -> Result<()> {
        let checked = policy::not_the_destination(&rel, Makes::Symlink)
            .and_then(|()| policy::symlink_target(&rel, target, self.opts.allow_outside_links));
        let target = match checked {
            Ok(t) => t,
            Err(r) => {
                self.refuse(raw, r.rule, r.reason);
                return Ok(());
            }
        };
        if self.tree.is_some() {
            let made = self.on_tree(|t| t.symlink(&rel, &target, Some(mtime)))?;
            if !self.staged(raw, &rel, made)? {
                return Ok(());
            }
        }
        if let Some(dir) = &self.opts.against {
            match fs::read_link(dir.join(&rel)) {
                Ok(t) if t == target => {}
                Ok(t) => self.differ(
                    seq,
                    &rel,
                    format!(
                        "symlink target differs: archive {}, disk {}",
                        target.display(),
                        t.display()
                    ),
                ),
                Err(_) => self.differ(seq, &rel, "missing on disk, or not a symlink".into()),
            }
        }
        self.stats.symlinks += 1;
        self.expect
            .symlink(seq, &rel, &manifest::path_bytes(&target))
    }

    /// A hard link to `target`, the path of an earlier entry. A link to a regular file shares that
    /// entry's data; a link to a symlink is that symlink again (what link(2) makes of it), so its
    /// target is checked again from the link's own directory.
    fn hardlink(
        &mut self,
        raw: &[u8],
        rel: PathBuf,
        target_raw: &[u8],
        backslash_sep: bool,
        seq: u64,
    ) -> Result<()> {
        let checked = policy::not_the_destination(&rel, Makes::HardLink)
            .and_then(|()| policy::hardlink_target(target_raw, backslash_sep, self.opts.strip));
        let target = match checked {
            Ok(Some(t)) => t,
            Ok(None) => {
                self.warn(
                    raw,
                    format!(
                        "hard link to {}, which --strip-components removed; skipped",
                        escape_name(target_raw)
                    ),
                );
                return Ok(());
            }
            Err(r) => {
                self.refuse(raw, r.rule, r.reason);
                return Ok(());
            }
        };
        if let Some(dir) = &self.opts.against {
            let same = hash_file(&dir.join(&rel))
                .ok()
                .zip(hash_file(&dir.join(&target)).ok());
            if !same.is_some_and(|(a, b)| a == b) {
                self.differ(
                    seq,
                    &rel,
                    format!("contents differ from its link target {}", target.display()),
                );
            }
        }
        if self.tree.is_none() {
            // Verify: the records check the source when the whole archive is known.
            self.stats.hardlinks += 1;
            return self.expect.hard_link(seq, &rel, &target);
        }
        let linked = self.on_tree(|t| t.hard_link(&rel, &target))?;
        match linked {
            Ok(LinkSource::Linked) => {
                self.stats.hardlinks += 1;
                self.expect.hard_link(seq, &rel, &target)
            }
            Ok(LinkSource::Symlink(t)) => self.hardlink_to_symlink(raw, &rel, &target, &t, seq),
            Ok(LinkSource::Missing) => self.hardlink_to_kept(raw, &rel, &target, seq),
            Err(e) => self.staged(raw, &rel, Err(e)).map(drop),
        }
    }

    /// A hard link whose source `target` is a staged symlink (to `link_target`): made as that
    /// symlink again, if the policy allows it from the link's own directory.
    fn hardlink_to_symlink(
        &mut self,
        raw: &[u8],
        rel: &Path,
        target: &Path,
        link_target: &[u8],
        seq: u64,
    ) -> Result<()> {
        let shown = escape_name(&manifest::path_bytes(target));
        let anywhere = self.opts.allow_outside_links;
        match policy::hardlink_to_symlink(rel, &shown, link_target, anywhere) {
            Ok(checked) => {
                // A link to a symlink: its time is not in the link's entry; left as created.
                let made = self.on_tree(|t| t.symlink(rel, &checked, None))?;
                if self.staged(raw, rel, made)? {
                    self.stats.symlinks += 1;
                    self.expect.symlink(seq, rel, link_target)?;
                }
                Ok(())
            }
            Err(r) => {
                self.refuse(raw, r.rule, r.reason);
                Ok(())
            }
        }
    }

    /// A hard link whose source `target` was never staged: `-k` may have kept the file it links
    /// to, and then it links to the file DEST holds.
    fn hardlink_to_kept(&mut self, raw: &[u8], rel: &Path, target: &Path, seq: u64) -> Result<()> {
        let shown = escape_name(&manifest::path_bytes(target));
        // Only a file of this archive that `-k` kept, looked up without following links: not
        // any file DEST happens to hold, and never one reached through a symlink in DEST.
        let held = if self.kept.contains(target) {
            self.held(target)
        } else {
            None
        };
        let is_file = held
            .as_ref()
            .map(|(_, _, t, _)| *t == FileType::RegularFile);
        if let Err(r) = policy::hardlink_to_kept(&shown, self.opts.keep_existing, is_file) {
            self.refuse(raw, r.rule, r.reason);
            return Ok(());
        }
        let (dir, name, _, id) = held.expect("checked above");
        let made = self.on_tree(|t| t.hard_link_to(rel, &dir, &name, id))?;
        if self.staged(raw, rel, made)? {
            self.stats.hardlinks += 1;
            self.expect.hard_link(seq, rel, target)?;
        }
        Ok(())
    }

    /// What DEST holds at `rel` (with `-k` only): its directory, name and type, every component
    /// entered without following a link; `None` when nothing is there or a component on the way
    /// is a symlink or not a directory (such an entry is then staged, and the commit refuses to
    /// write through the link).
    #[allow(clippy::unnecessary_cast)] // field widths differ between Linux and macOS
    fn held(&self, rel: &Path) -> Option<Held> {
        let root = self.dest_dir.as_ref()?;
        let (dir, name) = stage::open_parent_beneath(root, rel).ok()??;
        let st = rustix::fs::statat(&dir, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW).ok()?;
        let name = name.to_os_string();
        let id = (st.st_dev as u64, st.st_ino as u64);
        Some((dir, name, FileType::from_raw_mode(st.st_mode), id))
    }

    /// Devices, FIFOs and sockets are never created; the rest of the archive still is.
    fn special(&mut self, raw: &[u8], what: &str) {
        self.warn(
            raw,
            format!("is a {what}; such entries are never created, skipped"),
        );
    }

    fn check_cancel(&self) -> Result<()> {
        if self.opts.cancel.is_cancelled() {
            Err(Error::Cancelled)
        } else {
            Ok(())
        }
    }

    /// Accounts for `size` more bytes of output against the limit.
    fn grow(&mut self, name: &[u8], size: u64) -> Result<()> {
        self.total = self.total.saturating_add(size);
        if self.total > self.free {
            return Err(Error::Entry {
                entry: escape_name(name),
                reason: format!(
                    "the archive needs more than the {} bytes free in the destination; nothing was changed",
                    self.free
                ),
            });
        }
        if self.total > self.opts.max_output {
            return Err(Error::Entry {
                entry: escape_name(name),
                reason: format!(
                    "the archive expands to more than the {} byte limit; raise it with --max-output if this is expected",
                    self.opts.max_output
                ),
            });
        }
        Ok(())
    }

    /// Hands a file to the writers: small ones in batches, a streamed one at once (its chunks
    /// follow).
    fn send(&mut self, job: WriteJob) -> Result<()> {
        let streamed = matches!(job.data, JobData::Chunks { .. });
        // A zip entry costs the budget nothing (its writer reads it), but its size still
        // counts here: a batch holding several large entries would leave the other writers idle.
        // Saturating: a zip entry's size is what its header claims, up to u64::MAX.
        self.batch_bytes = self.batch_bytes.saturating_add(match &job.data {
            JobData::Zip(_, e) => e.usize,
            _ => job.cost,
        });
        self.batch.push(job);
        if streamed || self.batch.len() >= BATCH_FILES || self.batch_bytes >= BATCH_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    /// Sends the waiting batch.
    fn flush(&mut self) -> Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.batch);
        self.batch_bytes = 0;
        self.in_flight += batch.len() as u64;
        let jobs = self.jobs.as_ref().expect("jobs open while reading");
        let waited = Instant::now();
        let sent = jobs.send(batch);
        self.clock.blocked += waited.elapsed();
        sent.map_err(|_| Error::Panic {
            stage: "unpack-write",
            entry: None,
            message: "writers stopped".into(),
        })
    }

    /// Reserves a small file's bytes in the budget; a waiting batch goes out first rather than
    /// hold bytes while the reader waits for bytes.
    fn reserve(&mut self, cost: u64) -> Result<u64> {
        if let Some(c) = self.budget.try_acquire(cost) {
            return Ok(c);
        }
        self.flush()?;
        let cancel = &self.opts.cancel;
        let waited = Instant::now();
        let got = self.budget.acquire(cost, &|| cancel.is_cancelled());
        self.clock.blocked += waited.elapsed();
        got.map_err(|_| Error::Cancelled)
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }
}

/// Reads a tar stream entry by entry, dispatching file data to the writers.
fn read_tar(ctx: &mut Ctx<'_>, tar: Box<dyn Read + '_>) -> Result<()> {
    let mut archive = TarReader::new(tar);
    let mut count = 0u64;
    while let Some(entry) = archive.next_entry().map_err(|e| damaged(count, e))? {
        ctx.check_cancel()?;
        count += 1;
        let seq = ctx.next_seq();
        let raw = entry.path.clone();
        let (mode, mtime) = (entry.mode, entry.mtime);
        if entry.typeflag == b'V' {
            continue; // a volume label names the archive, not a file: GNU tar skips it too
        }
        if ctx.second_manifest(&raw, false) {
            continue;
        }
        // The manifest is recognised by its stored name, whatever --strip-components does to it.
        let is_manifest = entry.is_file() && is_manifest_name(&raw, false);
        if is_manifest {
            ctx.manifest = Some(Spill::default());
            ctx.manifest_seq = Some(seq);
            ctx.manifest_lead = manifest_lead(&raw, false);
        }
        ctx.absorb_ready();
        ctx.advance(1, 0);
        let Some(rel) = ctx
            .manifest_written(is_manifest)
            .then(|| ctx.name(&raw, false))
            .flatten()
        else {
            if is_manifest {
                let mut data = archive.data().take(MANIFEST_LIMIT);
                copy_to_spill(&mut data, ctx.manifest.as_mut().expect("set above"))
                    .map_err(|e| damaged(count, e))?;
            }
            continue; // the rest of its data is skipped by the next `next_entry`
        };
        match entry.typeflag {
            // The reader gives `5` for dumpdirs and for pre-POSIX directories too (a regular-file
            // type and a trailing slash).
            b'5' => ctx.dir(&raw, rel, mode, mtime, seq)?,
            b'M' => ctx.refuse(
                &raw,
                Rule::Unsupported,
                "continuation of a file from another volume of a multi-volume archive; cannot extract it alone",
            ),
            _ if entry.is_file() => {
                let file = TarFile { raw: &raw, rel, typeflag: entry.typeflag, size: entry.size, sparse: entry.is_sparse(), mode, mtime, seq, is_manifest, count };
                tar_file(ctx, &mut archive, file)?;
            }
            b'2' => ctx.symlink(&raw, rel, &entry.link, mtime, seq)?,
            b'1' => ctx.hardlink(&raw, rel, &entry.link, false, seq)?,
            b'3' => ctx.special(&raw, "character device"),
            b'4' => ctx.special(&raw, "block device"),
            b'6' => ctx.special(&raw, "FIFO"),
            other => ctx.warn(
                &raw,
                format!(
                    "entry type {:?} is not supported; skipped",
                    other.escape_ascii().to_string()
                ),
            ),
        }
    }
    // Read to the end: the gzip or zstd checksum and trailer are verified there.
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(|e| damaged(count, e))?;
    Ok(())
}

/// A regular file entry of a tar, as `read_tar` found it.
struct TarFile<'r> {
    raw: &'r [u8],
    rel: PathBuf,
    typeflag: u8,
    size: u64,
    /// A sparse file: its holes are made holes again (see [`write_one`]).
    sparse: bool,
    mode: u32,
    mtime: SystemTime,
    seq: u64,
    is_manifest: bool,
    /// Entries read so far (for messages about damage).
    count: u64,
}

/// A regular file's data: hashed here when nothing is written, whole to a writer when small,
/// streamed in chunks when large (the manifest is also kept for the check).
fn tar_file<R: Read>(ctx: &mut Ctx<'_>, archive: &mut TarReader<R>, f: TarFile<'_>) -> Result<()> {
    let TarFile {
        raw,
        rel,
        typeflag,
        size,
        sparse,
        mode,
        mtime,
        seq,
        is_manifest,
        count,
    } = f;
    let raw = raw.to_vec();
    if !matches!(typeflag, b'0' | 0 | b'7') {
        // GNU tar, bsdtar and Python all extract unknown types as regular files.
        ctx.warn(
            &raw,
            format!(
                "unknown entry type {:?}, extracted as a regular file",
                typeflag as char
            ),
        );
    }
    ctx.grow(&raw, size)?;
    let Some(staged) = ctx.file(&raw, &rel, mode, seq, !is_manifest)? else {
        if is_manifest {
            let mut data = archive.data().take(MANIFEST_LIMIT);
            copy_to_spill(&mut data, ctx.manifest.as_mut().expect("set above"))
                .map_err(|e| damaged(count, e))?;
        }
        return Ok(());
    };
    let file = staged;
    let mut data_in = archive.data();
    if size <= crate::pack::read::SMALL_FILE
        && file.is_none()
        && !is_manifest
        && ctx.opts.against.is_none()
    {
        // Nothing to write: hashing here costs less than handing it over.
        let mut out = HashingWriter {
            inner: io::sink(),
            hasher: blake3::Hasher::new(),
            bytes: 0,
        };
        io::copy(&mut data_in, &mut out).map_err(|e| damaged(count, e))?;
        ctx.advance(0, out.bytes);
        ctx.absorb(Written {
            seq,
            result: Ok((out.hasher.finalize(), out.bytes)),
            differences: Vec::new(),
        });
    } else if size <= crate::pack::read::SMALL_FILE && !is_manifest {
        let cost = ctx.reserve(size + 512)?;
        let mut data = Vec::with_capacity(size as usize);
        data_in
            .read_to_end(&mut data)
            .map_err(|e| damaged(count, e))?;
        ctx.advance(0, data.len() as u64);
        ctx.send(WriteJob {
            seq,
            rel,
            mode,
            mtime,
            file,
            data: JobData::Whole(data),
            cost,
        })?;
    } else {
        let (tx, rx) = bounded(crate::pack::read::STREAM_DEPTH);
        let recycle = ctx.spare.0.clone();
        ctx.send(WriteJob {
            seq,
            rel,
            mode,
            mtime,
            file,
            data: JobData::Chunks {
                rx,
                size,
                recycle,
                sparse,
            },
            cost: 0,
        })?;
        stream_chunks(ctx, &mut data_in, &tx, is_manifest, count)?;
    }
    Ok(())
}

/// Hands a large file's data to its writer in chunks (keeping the manifest's text as it goes),
/// hashing each chunk here; the hash goes last.
fn stream_chunks(
    ctx: &mut Ctx<'_>,
    data_in: &mut dyn Read,
    tx: &Sender<Piece>,
    is_manifest: bool,
    count: u64,
) -> Result<()> {
    let mut hasher = blake3::Hasher::new();
    loop {
        let mut chunk = ctx
            .spare
            .1
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(crate::pack::read::CHUNK));
        chunk.clear();
        let n = data_in
            .take(crate::pack::read::CHUNK as u64)
            .read_to_end(&mut chunk)
            .map_err(|e| damaged(count, e))?;
        let piece = if n == 0 {
            let _ = ctx.spare.0.try_send(chunk);
            Piece::End(hasher.finalize())
        } else {
            ctx.check_cancel()?;
            ctx.advance(0, n as u64);
            if is_manifest {
                let spill = ctx.manifest.as_mut().expect("set above");
                spill.append(&chunk).map_err(Error::Input)?;
            }
            hasher.update(&chunk);
            Piece::Data(chunk)
        };
        let last = n == 0;
        let waited = Instant::now();
        let sent = tx.send(piece);
        ctx.clock.blocked += waited.elapsed();
        if sent.is_err() || last {
            return Ok(()); // a writer that failed reports why from its result
        }
    }
}

/// Streamed chunks kept for reuse: the ones in flight for one file and the writer's current.
const SPARE_CHUNKS: usize = crate::pack::read::STREAM_DEPTH + 2;

/// Largest manifest read when its entry is not extracted (about 10 million files).
const MANIFEST_LIMIT: u64 = 1 << 30;

/// Whether a stored name is our manifest's (`.archiver/MANIFEST.b3`, `./` and the like allowed).
fn is_manifest_name(raw: &[u8], backslash_sep: bool) -> bool {
    // Most names are not: no path is built for them.
    memchr::memmem::find(raw, b"MANIFEST.b3").is_some()
        && policy::entry_path(raw, backslash_sep).is_ok_and(|p| p == Path::new(MANIFEST_PATH))
}

/// How many leading components the manifest's stored name has before `.archiver` (`./`: one).
/// The archive's other names carry the same (a tree repacked with `tar -C dir .`), the lines
/// inside the manifest do not, so `--strip-components` takes that many fewer from the lines.
fn manifest_lead(raw: &[u8], backslash_sep: bool) -> usize {
    (1..16)
        .take_while(|&k| {
            matches!(policy::entry_path_stripped(raw, backslash_sep, k),
                Ok(Some(p)) if p == Path::new(MANIFEST_PATH))
        })
        .count()
}

/// Appends everything `r` gives to `spill`.
fn copy_to_spill(r: &mut impl Read, spill: &mut Spill) -> io::Result<()> {
    let mut buf = vec![0u8; 256 << 10];
    loop {
        match input::read_some(r, &mut buf)? {
            0 => return Ok(()),
            n => {
                spill.append(&buf[..n])?;
            }
        }
    }
}

/// Reads a zip's directory and hands each file to the writers, which read their data themselves.
fn read_zip(ctx: &mut Ctx<'_>, file: &File) -> Result<()> {
    let entries = zip_read::read_directory(file)?;
    let shared = Arc::new(file.try_clone().map_err(Error::Input)?);
    ctx.progress.entries_total = entries.len() as u64;
    // Saturating: the sizes are what the directory claims (zip64: up to u64::MAX each).
    ctx.progress.bytes_total = entries.iter().fold(0u64, |t, e| t.saturating_add(e.usize));
    ctx.progress.totals_final = true;
    for e in entries {
        ctx.check_cancel()?;
        ctx.advance(1, 0);
        let seq = ctx.next_seq();
        let sep = e.backslash_is_separator();
        if ctx.second_manifest(&e.name, sep) {
            continue;
        }
        let is_manifest =
            !e.is_dir() && !e.is_symlink() && is_manifest_name(&e.name, sep) && !e.encrypted();
        ctx.absorb_ready();
        if is_manifest {
            ctx.manifest_seq = Some(seq);
            ctx.manifest = Some(zip_manifest(file, &e)?);
            ctx.manifest_lead = manifest_lead(&e.name, sep);
        }
        let Some(rel) = ctx
            .manifest_written(is_manifest)
            .then(|| ctx.name(&e.name, sep))
            .flatten()
        else {
            continue;
        };
        let mode = e
            .unix_mode
            .unwrap_or(if e.is_dir() { 0o755 } else { 0o644 });
        if e.is_dir() {
            if e.usize > 0 {
                // Marked a directory by its attributes alone, holding data: Info-ZIP and
                // Python extract it as a file, bsdtar as a directory. Neither is safe to guess.
                ctx.refuse(
                    &e.name,
                    Rule::Unsupported,
                    format!("is marked as a directory but holds {} bytes of data; zip readers disagree on what it is (refused)", e.usize),
                );
                continue;
            }
            ctx.dir(&e.name, rel, mode, time_of(e.mtime), seq)?;
            continue;
        }
        if let Some(what) = zip_special(&e) {
            ctx.special(&e.name, what);
            continue;
        }
        ctx.grow(&e.name, e.usize)?;
        if e.is_symlink() {
            zip_symlink(ctx, file, &e, rel, seq)?;
            continue;
        }
        // Refuse what cannot be read before any writer starts on it.
        if e.encrypted() || !matches!(e.method, 0 | 8 | 93) {
            if let Err(err) = zip_read::open_entry(file, &e) {
                let reason = match err {
                    Error::Entry { reason, .. } => reason,
                    other => other.to_string(),
                };
                ctx.refuse(&e.name, Rule::Unsupported, reason);
                continue;
            }
        }
        let Some(staged) = ctx.file(&e.name, &rel, mode, seq, !is_manifest)? else {
            continue;
        };
        let file = staged;
        ctx.send(WriteJob {
            seq,
            rel,
            mode,
            mtime: time_of(e.mtime),
            file,
            data: JobData::Zip(Arc::clone(&shared), Box::new(e)),
            cost: 0,
        })?;
    }
    Ok(())
}

/// The manifest's text, read from its zip entry (at most `MANIFEST_LIMIT` bytes).
fn zip_manifest(file: &File, e: &ZipEntry) -> Result<Spill> {
    let mut text = Spill::default();
    copy_to_spill(
        &mut zip_read::open_entry(file, e)?.take(MANIFEST_LIMIT),
        &mut text,
    )
    .map_err(|err| entry_error(e, err))?;
    Ok(text)
}

/// What a zip entry's Unix mode makes of it when that is something never created (a device,
/// FIFO, socket or unknown type), for the warning.
fn zip_special(e: &ZipEntry) -> Option<&'static str> {
    match e.unix_mode.map(|m| m & 0o170000)? {
        0o100000 | 0o120000 | 0 => None,
        0o020000 => Some("character device"),
        0o060000 => Some("block device"),
        0o010000 => Some("FIFO"),
        0o140000 => Some("socket"),
        _ => Some("file of an unknown type"),
    }
}

/// A zip symlink: its target is the entry's data.
fn zip_symlink(ctx: &mut Ctx<'_>, file: &File, e: &ZipEntry, rel: PathBuf, seq: u64) -> Result<()> {
    if let Err(r) = policy::symlink_target_size(e.usize) {
        ctx.refuse(&e.name, r.rule, r.reason);
        return Ok(());
    }
    let mut target = Vec::new();
    zip_read::open_entry(file, e)?
        .read_to_end(&mut target)
        .map_err(|err| entry_error(e, err))?;
    ctx.symlink(&e.name, rel, &target, time_of(e.mtime), seq)
}

fn entry_error(e: &ZipEntry, err: io::Error) -> Error {
    Error::Entry {
        entry: escape_name(&e.name),
        reason: err.to_string(),
    }
}

/// A writer thread: fills each staged file the reader created (none when only verifying or when
/// `-k` keeps the file), hashing as it goes; `against`: compares with that directory's copy.
fn writer(
    dest: Option<&Path>,
    against: Option<&Path>,
    jobs: Receiver<Vec<WriteJob>>,
    results: Sender<Vec<Written>>,
    budget: &Budget,
    cancel: &Cancel,
) -> StageClock {
    let mut clock = StageClock::default();
    let mut waited = Instant::now();
    for batch in jobs {
        let started = Instant::now();
        clock.starved += started.duration_since(waited);
        let mut done = Vec::with_capacity(batch.len());
        let mut cost = 0;
        for job in batch {
            cost += job.cost;
            if cancel.is_cancelled() {
                // Still answered, so a reader waiting for every result is not left waiting.
                done.push(Written {
                    seq: job.seq,
                    result: Err(Error::Cancelled),
                    differences: Vec::new(),
                });
                continue;
            }
            clock.items += 1;
            done.push(write_job(dest, against, job));
        }
        budget.release(cost);
        clock.busy += started.elapsed();
        if results.send(done).is_err() {
            break;
        }
        waited = Instant::now();
    }
    clock
}

/// Fault injection for the test suite (debug builds only): `ARCHIVER_TEST_PANIC_AT=unpack-write:NAME`
/// makes the writer panic at the file named NAME, as pack's hook does for its stages.
fn injected_panic(rel: &Path) {
    #[cfg(debug_assertions)]
    if let Ok(spec) = std::env::var("ARCHIVER_TEST_PANIC_AT") {
        if let Some(("unpack-write", name)) = spec.split_once(':') {
            if rel.file_name() == Some(std::ffi::OsStr::new(name)) {
                panic!("injected by ARCHIVER_TEST_PANIC_AT");
            }
        }
    }
    #[cfg(not(debug_assertions))]
    let _ = rel;
}

/// Writes one file, guarded: a panic becomes an error naming the entry.
fn write_job(dest: Option<&Path>, against: Option<&Path>, job: WriteJob) -> Written {
    let (seq, mode) = (job.seq, job.mode);
    let rel = job.rel.clone();
    let named = || Some(rel.display().to_string());
    let result = crate::threads::catch("unpack-write", named, || {
        injected_panic(&rel);
        write_one(dest, job)
    })
    .and_then(|r| r);
    let differences = match (&result, against) {
        (Ok((hash, size)), Some(dir)) if rel != Path::new(MANIFEST_PATH) => {
            let path = dir.join(&rel);
            compare_file(&path, hash, *size, mode)
                .into_iter()
                .map(|message| Warning {
                    path: path.clone(),
                    message,
                })
                .collect()
        }
        _ => Vec::new(),
    };
    Written {
        seq,
        result,
        differences,
    }
}

/// Which side of a copy failed: the archive's data, or the file written.
enum Copy {
    Read(io::Error),
    Write(io::Error),
}

/// `io::copy` through a buffer of a streamed chunk's size, not 8 KiB: fewer, larger writes and
/// hash updates (BLAKE3 hashes up to 16 KiB-wide batches at once).
fn copy_large(r: &mut impl Read, w: &mut impl Write) -> std::result::Result<(), Copy> {
    let mut buf = vec![0u8; crate::pack::read::CHUNK];
    loop {
        match input::read_some(r, &mut buf).map_err(Copy::Read)? {
            0 => return Ok(()),
            n => w.write_all(&buf[..n]).map_err(Copy::Write)?,
        }
    }
}

/// Hashes everything written through it.
struct HashingWriter<W> {
    inner: W,
    hasher: blake3::Hasher,
    bytes: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Writes `chunk` at `at`, leaving every all-zero block of it unwritten (a hole once the file's
/// length is set past it).
fn write_skipping_zeros(f: &File, chunk: &[u8], at: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    const BLOCK: usize = 4096;
    // Where the run of blocks with data that is not written yet starts.
    let mut data_from = None;
    for (i, block) in chunk.chunks(BLOCK).enumerate() {
        let here = i * BLOCK;
        match (block.iter().all(|&b| b == 0), data_from) {
            (true, Some(from)) => {
                f.write_all_at(&chunk[from..here], at + from as u64)?;
                data_from = None;
            }
            (false, None) => data_from = Some(here),
            _ => {}
        }
    }
    match data_from {
        Some(from) => f.write_all_at(&chunk[from..], at + from as u64),
        None => Ok(()),
    }
}

fn write_one(dest: Option<&Path>, job: WriteJob) -> Result<(blake3::Hash, u64)> {
    // Errors name the entry's final place, never the staging name.
    let io_err = |e: io::Error| Error::Io {
        path: dest.map_or_else(|| job.rel.clone(), |d| d.join(&job.rel)),
        source: e,
    };
    let mode_set = job.file.as_ref().is_some_and(|f| f.mode_set);
    let mut file = job.file.map(NewFile::open).transpose().map_err(io_err)?;
    // A small file is one write; a large one goes through a buffer.
    let whole = match &job.data {
        JobData::Whole(_) => true,
        JobData::Zip(_, e) => zip_read::is_whole(e),
        JobData::Chunks { .. } => false,
    };
    // A sparse entry's chunks are written at their offsets (a second handle: the sink below
    // holds the first).
    let holes = match (&job.data, file.as_ref()) {
        (JobData::Chunks { sparse: true, .. }, Some(f)) => Some(f.try_clone().map_err(io_err)?),
        _ => None,
    };
    let sink: Box<dyn Write + '_> = match file.as_mut() {
        Some(f) if whole => Box::new(f),
        Some(f) => Box::new(io::BufWriter::with_capacity(256 << 10, f)),
        None => Box::new(io::sink()),
    };
    let mut out = HashingWriter {
        inner: sink,
        hasher: blake3::Hasher::new(),
        bytes: 0,
    };
    let mut hashed = None;
    match job.data {
        JobData::Whole(data) => out.write_all(&data).map_err(io_err)?,
        JobData::Chunks {
            rx, size, recycle, ..
        } => {
            // Hashed by the reader: written straight to the file. A sparse entry's holes come
            // as zeros: blocks of them are skipped and the file's length set at the end, so they
            // are holes again (as GNU tar and bsdtar extract them), and a map declaring terabytes
            // of holes costs no disk.
            for piece in rx {
                match piece {
                    Piece::Data(chunk) => {
                        match holes.as_ref() {
                            Some(f) => write_skipping_zeros(f, &chunk, out.bytes),
                            None => out.inner.write_all(&chunk),
                        }
                        .map_err(io_err)?;
                        out.bytes += chunk.len() as u64;
                        let _ = recycle.try_send(chunk);
                    }
                    Piece::End(hash) => hashed = Some(hash),
                }
            }
            if let Some(f) = holes {
                f.set_len(out.bytes).map_err(io_err)?;
            }
            if hashed.is_none() || out.bytes != size {
                // The reader stopped early: it reports why (damaged archive, cancel).
                return Err(Error::BadArchive(format!(
                    "{}: data ends early",
                    job.rel.display()
                )));
            }
        }
        JobData::Zip(file, entry) if whole => {
            let data = zip_read::read_whole(&file, &entry)?;
            out.write_all(&data).map_err(io_err)?;
        }
        JobData::Zip(file, entry) => {
            let mut r = zip_read::open_entry(&file, &entry)?;
            copy_large(&mut r, &mut out).map_err(|e| match e {
                Copy::Read(e) => Error::Entry {
                    entry: escape_name(&entry.name),
                    reason: e.to_string(),
                },
                Copy::Write(e) => io_err(e),
            })?;
        }
    }
    out.flush().map_err(io_err)?;
    let (hash, bytes) = (hashed.unwrap_or_else(|| out.hasher.finalize()), out.bytes);
    drop(out);
    if let Some(f) = file {
        if !mode_set {
            set_file_mode(&f, policy::safe_mode(job.mode)).map_err(io_err)?;
        }
        f.set_modified(job.mtime).map_err(io_err)?;
    }
    Ok((hash, bytes))
}
