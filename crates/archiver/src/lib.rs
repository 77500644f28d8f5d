//! `archiver`: a pipelined, streaming, deterministic archiver for tar, tar.gz, tar.zst and zip.
//!
//! Packing runs as a pipeline of stages, each on its own threads, joined by bounded channels:
//!
//! 1. the walk: directories listed in parallel ahead of a single sequencer that emits entries in
//!    their final order (a depth-first walk, each directory sorted by name) as soon as it is known;
//! 2. read workers: read and BLAKE3-hash files in parallel, admitted in order against a byte budget;
//! 3. the reorder buffer: restores sequence order;
//! 4. the writer: one thread owns the tar stream and the output; gzip and zstd compress in parallel
//!    below it with output that does not depend on the thread count.
//!
//! The same tree always gives the same bytes, for any number of threads. Memory is bounded by the byte
//! budget and the walk's lookahead, not by the number of files. The library never prints and never exits: warnings are returned
//! in the [`PackReport`] (and emitted as `tracing` events), errors as [`Error`].
//!
//! ```
//! # fn main() -> Result<(), archiver::Error> {
//! let dir = tempfile::tempdir().unwrap();
//! std::fs::write(dir.path().join("hello.txt"), "hello\n").unwrap();
//!
//! let mut archive = Vec::new();
//! let report = archiver::Packer::new(["."])
//!     .directory(dir.path())
//!     .format(archiver::Format::TarZst)
//!     .jobs(2)
//!     .pack(&mut archive)?;
//! assert_eq!(report.stats.files, 1);
//!
//! let mut names = Vec::new();
//! archiver::list(&archive[..], |e| {
//!     names.push(e.path.clone());
//!     Ok(())
//! })?;
//! assert_eq!(names, ["hello.txt", ".archiver/MANIFEST.b3"]);
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

mod atomic;
mod cancel;
mod entry;
mod error;
// Internal modules. The `internals` feature (off by default; on for the micro-benchmarks in
// `benches/`) makes them reachable, hidden from the documentation: no embedder depends on them.
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod format;
#[cfg(not(feature = "internals"))]
mod format;
pub mod group;
mod list;
pub mod manifest;
mod owner;
mod pack;
mod packer;
mod remove;
// The reorder buffer (pack's writer and the parallel gzip writer); `internals` makes it reachable
// at `archiver::reorder` for the benches.
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod reorder;
#[cfg(not(feature = "internals"))]
mod reorder;
mod report;
mod spill;
#[cfg(test)]
mod testdata;
mod threads;
mod unpack;

pub use atomic::AtomicFile;
pub use cancel::Cancel;
pub use error::{Error, Refused, Result, Rule};
pub use format::zip::ZipMethod;
pub use format::{detect, Detected, Format};
pub use list::{escape_name, is_zip_file, list, list_from_file, list_path, EntryInfo, EntryKind};
pub use pack::stats::{StageStats, Stats};
pub use packer::{default_jobs, PackOptions, Packer};
pub use report::{EntryHook, FaultHook, PackReport, Progress, ProgressHook, Warning};
pub use unpack::{UnpackReport, UnpackStats, Unpacker, DEFAULT_MAX_OUTPUT};

/// Where the manifest lives inside every archive we write (unless disabled).
pub const MANIFEST_PATH: &str = ".archiver/MANIFEST.b3";

/// Default byte budget: entry data allowed in flight between the read workers and the writer.
pub const DEFAULT_MEMORY_BUDGET: u64 = 16 << 20;
