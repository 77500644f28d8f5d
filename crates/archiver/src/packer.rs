//! [`Packer`] and [`PackOptions`]: the pack side's public builder.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::{
    pack, AtomicFile, Cancel, EntryHook, Error, FaultHook, Format, PackReport, Progress,
    ProgressHook, Result, ZipMethod, DEFAULT_MEMORY_BUDGET,
};

/// Options for a pack run. Build them through [`Packer`]'s methods.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PackOptions {
    /// Output format.
    pub format: Format,
    /// Worker threads per parallel stage (at least 1).
    pub jobs: usize,
    /// Compression level; `None` = the format's (or zip method's) default.
    pub level: Option<u32>,
    /// How zip entries are compressed (zip only).
    pub zip_method: ZipMethod,
    /// Globs (gitignore syntax) to leave out.
    pub excludes: Vec<String>,
    /// Honour `.gitignore` and `.ignore` files.
    pub ignore_files: bool,
    /// Store what symlinks point to instead of the links.
    pub follow_symlinks: bool,
    /// `Some(t)`: every mtime is `t`, owners are 0 and nameless.
    pub reproducible: Option<u64>,
    /// Append `.archiver/MANIFEST.b3`.
    pub manifest: bool,
    /// Byte budget for entry data in flight.
    pub memory_budget: u64,
    /// Turn the first warning into an error.
    pub strict: bool,
    /// Files never to pack, such as the archive being written (matched by device and inode).
    pub skip_files: Vec<PathBuf>,
    /// The directory the paths are relative to (GNU tar's `-C`); `None` = the current directory.
    pub directory: Option<PathBuf>,
}

impl Default for PackOptions {
    fn default() -> Self {
        PackOptions {
            format: Format::Tar,
            jobs: default_jobs(),
            level: None,
            zip_method: ZipMethod::Deflate,
            excludes: Vec::new(),
            ignore_files: false,
            follow_symlinks: false,
            reproducible: None,
            manifest: true,
            memory_budget: DEFAULT_MEMORY_BUDGET,
            strict: false,
            skip_files: Vec::new(),
            directory: None,
        }
    }
}

/// The number of threads to use when the caller does not say: all cores.
pub fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Packs directory trees into an archive.
///
/// Paths are stored as given, like GNU tar: packing `app` stores `app/src/main.rs`; packing `.` with
/// [`directory`](Self::directory)`("app")` stores `src/main.rs`. A leading `/` or anything up to a
/// `..` component is removed (with a warning). Two paths that would store the same name, or one
/// inside another, are an error naming both. Entries are sorted component by component on raw
/// bytes (a depth-first walk with each directory sorted). See the crate documentation for an example.
#[derive(Clone)]
pub struct Packer {
    paths: Vec<PathBuf>,
    opts: PackOptions,
    cancel: Cancel,
    fault: Option<FaultHook>,
    progress: Option<ProgressHook>,
    on_entry: Option<EntryHook>,
}

impl std::fmt::Debug for Packer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Packer")
            .field("paths", &self.paths)
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

impl Packer {
    /// A packer for these paths with default options (tar, all cores, manifest on).
    pub fn new<I, P>(paths: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: AsRef<Path>,
    {
        Packer {
            paths: paths
                .into_iter()
                .map(|p| p.as_ref().to_path_buf())
                .collect(),
            opts: PackOptions::default(),
            cancel: Cancel::new(),
            fault: None,
            progress: None,
            on_entry: None,
        }
    }

    /// All options at once.
    pub fn options(mut self, opts: PackOptions) -> Self {
        self.opts = opts;
        self
    }

    /// The output format.
    pub fn format(mut self, format: Format) -> Self {
        self.opts.format = format;
        self
    }

    /// Parallelism, the output being the same for every value: `n` walk listers (short bursts of
    /// directory reading), `n` read/hash workers, and for tar.gz `n` deflate threads or for
    /// tar.zst `n` libzstd workers; plus the feeder and the writer, which mostly wait. So a run
    /// keeps about `n` cores busy with compression and up to `2n` threads busy in short
    /// overlapping bursts; `jobs(1)` runs one thread per stage, for debugging.
    pub fn jobs(mut self, jobs: usize) -> Self {
        self.opts.jobs = jobs.max(1);
        self
    }

    /// Compression level (gzip 1-9, zstd 1-19).
    pub fn level(mut self, level: u32) -> Self {
        self.opts.level = Some(level);
        self
    }

    /// Compression method for zip entries (default deflate).
    pub fn zip_method(mut self, method: ZipMethod) -> Self {
        self.opts.zip_method = method;
        self
    }

    /// Leaves out paths matching `glob`, matched against the stored path as GNU tar's `--exclude`
    /// does (gitignore syntax, unanchored: `*.o`, `build/`, `app/src`; `./x` or `/x` only at the
    /// top).
    pub fn exclude(mut self, glob: impl Into<String>) -> Self {
        self.opts.excludes.push(glob.into());
        self
    }

    /// Honours `.gitignore` and `.ignore` files, also outside a git repository.
    pub fn ignore_files(mut self, yes: bool) -> Self {
        self.opts.ignore_files = yes;
        self
    }

    /// Stores what symlinks point to instead of the links.
    pub fn follow_symlinks(mut self, yes: bool) -> Self {
        self.opts.follow_symlinks = yes;
        self
    }

    /// Reproducible mode: every mtime later than `mtime` (SOURCE_DATE_EPOCH) becomes `mtime`
    /// (clamped, as GNU tar's `--clamp-mtime`), owners 0 without names.
    pub fn reproducible(mut self, mtime: Option<u64>) -> Self {
        self.opts.reproducible = mtime;
        self
    }

    /// Whether to append the BLAKE3 manifest (default: yes).
    pub fn manifest(mut self, yes: bool) -> Self {
        self.opts.manifest = yes;
        self
    }

    /// Byte budget for file data in flight between readers and writer.
    pub fn memory_budget(mut self, bytes: u64) -> Self {
        self.opts.memory_budget = bytes;
        self
    }

    /// Turns the first warning (vanished, changed or unreadable file) into an error.
    pub fn strict(mut self, yes: bool) -> Self {
        self.opts.strict = yes;
        self
    }

    /// Never packs these files (matched by device and inode, so any path to them counts): pass the
    /// archive being written when it may lie inside the tree.
    pub fn skip_files<I: IntoIterator<Item = PathBuf>>(mut self, paths: I) -> Self {
        self.opts.skip_files.extend(paths);
        self
    }

    /// Makes the paths relative to `dir` (GNU tar's `-C`): `Packer::new(["."]).directory("app")`
    /// stores the contents of `app`.
    pub fn directory(mut self, dir: impl Into<PathBuf>) -> Self {
        self.opts.directory = Some(dir.into());
        self
    }

    /// Uses this cancellation handle (share it with a signal handler or another thread).
    pub fn cancel_with(mut self, cancel: Cancel) -> Self {
        self.cancel = cancel;
        self
    }

    /// A handle that cancels this packer's runs.
    pub fn cancel_handle(&self) -> Cancel {
        self.cancel.clone()
    }

    /// Calls `f` with the progress of every run (from the writer thread, at most every 50 ms).
    pub fn on_progress(mut self, f: impl Fn(&Progress) + Send + Sync + 'static) -> Self {
        self.progress = Some(Arc::new(f));
        self
    }

    /// Calls `f` with each entry's name inside the archive as it is written (a directory's with a
    /// trailing `/`; a file skipped with a warning is not one), from the writer thread, in archive
    /// order (the manifest included). It must be quick.
    pub fn on_entry(mut self, f: impl Fn(&Path) + Send + Sync + 'static) -> Self {
        self.on_entry = Some(Arc::new(f));
        self
    }

    #[doc(hidden)]
    pub fn fault_hook(mut self, hook: FaultHook) -> Self {
        self.fault = Some(hook);
        self
    }

    /// The options in effect.
    pub fn pack_options(&self) -> &PackOptions {
        &self.opts
    }

    /// Packs into the file `path`, atomically: written under a temporary name beside it, synced,
    /// then renamed over it (a replaced file's permission bits are kept). On any error or
    /// cancellation the temporary file is removed and `path` is untouched. The file being written
    /// is never packed into itself.
    pub fn pack_to_path(&self, path: impl AsRef<Path>) -> Result<PackReport> {
        let mut file = AtomicFile::create(path)?;
        let packer = self
            .clone()
            .skip_files([file.temp_path().to_path_buf(), file.target().to_path_buf()]);
        let report = packer.pack(file.file_mut()).map_err(|e| match e {
            Error::Output(source) => Error::Io {
                path: file.target().to_path_buf(),
                source,
            },
            e => e,
        })?;
        file.commit()?;
        Ok(report)
    }

    /// Packs into `out`. The writer is used from the calling thread only; wrap files in nothing (the
    /// pipeline buffers). On error, what was written to `out` is not a valid archive.
    pub fn pack<W: Write>(&self, out: W) -> Result<PackReport> {
        let range = match self.opts.format {
            Format::Zip => Some(self.opts.zip_method.levels()),
            f => f.levels(),
        };
        if let (Some(level), Some((_, range))) = (self.opts.level, range) {
            if !range.contains(&level) {
                return Err(Error::Usage(format!(
                    "compression level {level} is out of range for {}: use {}-{}",
                    self.opts.format,
                    range.start(),
                    range.end()
                )));
            }
        }
        pack::run(
            &self.paths,
            &self.opts,
            &self.cancel,
            pack::Hooks {
                fault: self.fault.clone(),
                progress: self.progress.clone(),
                entry: self.on_entry.clone(),
            },
            out,
        )
    }
}
