//! Stage 2: the read/hash workers. `jobs` threads take admitted entries, read each file once, hash it
//! with BLAKE3 and hand the bytes to the writer through the reorder buffer.
//!
//! Small files (up to [`SMALL_FILE`]) are read whole; their cost was reserved in the byte budget.
//! Larger files are *streamed*: the worker sends a [`Payload::Stream`] at once and then pushes chunks of
//! [`CHUNK`] bytes into a channel of [`STREAM_DEPTH`] slots that the writer drains when the entry's turn
//! comes. So no file has to fit in memory, and a large file costs at most `CHUNK * STREAM_DEPTH` bytes
//! per worker, whatever its size.
//!
//! A file always yields exactly the size the walk saw (the size the header will claim): a file that
//! shrank is padded with zeros, one that grew is cut, and either way a warning travels with the entry.
//! The hash covers the bytes actually stored, so the manifest always matches the archive.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::Instant;

use crossbeam_channel::{bounded, Receiver, Sender};

use crate::error::{panic_message, Error};
use crate::pipeline::Shared;
use crate::stats::StageClock;
use crate::walk::{Entry, Kind, Walk};

/// Files up to this size are read whole.
pub(crate) const SMALL_FILE: u64 = 1 << 20;
/// Chunk size for streamed files.
pub(crate) const CHUNK: usize = 256 << 10;
/// Chunks a streamed file may have in flight.
pub(crate) const STREAM_DEPTH: usize = 4;

/// A batch of consecutive entries admitted together: batch number, first sequence number (= index
/// in the walk), entry count, and the budget the batch holds. Batching amortises channel traffic
/// over many small files; a streamed file is always a batch of its own.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Job {
    pub batch: u64,
    pub first: u64,
    pub count: u32,
    pub cost: u64,
}

/// A finished (or, for a stream, started) batch on its way to the reorder buffer: one payload per
/// entry, in sequence order.
#[derive(Debug)]
pub(crate) struct Done {
    pub batch: u64,
    pub first: u64,
    pub cost: u64,
    pub payloads: Vec<Payload>,
}

/// What the writer needs to store one entry.
#[derive(Debug)]
pub(crate) enum Payload {
    /// A whole small file, its hash, and a warning if it changed while read.
    File {
        data: Vec<u8>,
        hash: blake3::Hash,
        warning: Option<String>,
    },
    /// A large file arriving in chunks; `size` is what the header claims.
    Stream { size: u64, chunks: Receiver<Chunk> },
    /// A symbolic link and its target.
    Symlink { target: PathBuf },
    /// An entry that is only a header: a directory or a hard link.
    Header,
    /// Nothing to store, only a warning (vanished, unreadable, special file...).
    Skip { warning: String },
    /// A fatal problem with this entry.
    Failed(Error),
}

/// One piece of a streamed file.
#[derive(Debug)]
pub(crate) enum Chunk {
    Data(Vec<u8>),
    End {
        hash: blake3::Hash,
        warning: Option<String>,
    },
}

/// Runs one worker until the job channel closes or the writer goes away.
pub(crate) fn worker(
    walk: &Walk,
    jobs: Receiver<Job>,
    done: Sender<Done>,
    shared: &Shared,
) -> StageClock {
    let mut clock = StageClock::default();
    loop {
        let waited = Instant::now();
        let Ok(job) = jobs.recv() else { break };
        clock.starved += waited.elapsed();
        let started = Instant::now();
        let mut payloads = Vec::with_capacity(job.count as usize);
        for seq in job.first..job.first + u64::from(job.count) {
            if shared.stopped() {
                return clock;
            }
            let entry = &walk.entries[seq as usize];
            let path = walk.source_path(entry);
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                shared.fault_point("read", &entry.rel);
                prepare(entry, &path, job, &done, shared, &mut clock)
            }));
            clock.items += 1;
            match outcome {
                Ok(Some(payload)) => payloads.push(payload),
                // A stream: its Done was sent when it started and the data has followed.
                Ok(None) => {}
                Err(panic) => {
                    let failed = Error::Panic {
                        stage: "read",
                        entry: Some(entry.rel.display().to_string()),
                        message: panic_message(&*panic),
                    };
                    if matches!(entry.kind, Kind::File { size } if size > SMALL_FILE) {
                        // The writer already holds this stream; it sees it break and stops.
                        shared.fail(failed);
                        return clock;
                    }
                    payloads.push(Payload::Failed(failed));
                }
            }
        }
        clock.busy += started.elapsed();
        if payloads.is_empty() {
            continue;
        }
        let sending = Instant::now();
        let sent = done.send(Done {
            batch: job.batch,
            first: job.first,
            cost: job.cost,
            payloads,
        });
        clock.blocked += sending.elapsed();
        if sent.is_err() {
            break; // The writer is gone; the orchestrator reports why.
        }
    }
    clock
}

/// Builds the payload for one entry. Returns `None` for streamed files, whose `Done` (a batch of
/// one) this function sends itself before the data.
fn prepare(
    entry: &Entry,
    path: &Path,
    job: Job,
    done: &Sender<Done>,
    shared: &Shared,
    clock: &mut StageClock,
) -> Option<Payload> {
    match entry.kind {
        Kind::File { size } if size <= SMALL_FILE => Some(read_small(path, size, shared)),
        Kind::File { size } => {
            let file = match open(path, shared) {
                Ok(f) => f,
                Err(e) => return Some(open_failure(&e)),
            };
            let (tx, rx) = bounded(STREAM_DEPTH);
            let started = Done {
                batch: job.batch,
                first: job.first,
                cost: job.cost,
                payloads: vec![Payload::Stream { size, chunks: rx }],
            };
            if done.send(started).is_ok() {
                stream(file, size, &tx, shared, clock);
            }
            None
        }
        Kind::Symlink => Some(match std::fs::read_link(path) {
            Ok(target) => Payload::Symlink { target },
            Err(e) => open_failure(&e),
        }),
        Kind::Dir | Kind::HardLink { .. } => Some(Payload::Header),
        Kind::Warning { ref message } => Some(Payload::Skip {
            warning: message.clone(),
        }),
    }
}

fn read_small(path: &Path, size: u64, shared: &Shared) -> Payload {
    let file = match open(path, shared) {
        Ok(f) => f,
        Err(e) => return open_failure(&e),
    };
    let mut data = Vec::with_capacity(size as usize + 1);
    // One byte more than expected tells us whether the file grew.
    let result = file.take(size + 1).read_to_end(&mut data);
    let mut warning = match result {
        Ok(_) => None,
        Err(e) => Some(format!("read error after {} bytes: {e}", data.len())),
    };
    if let Some(w) = fit(&mut data, size) {
        warning.get_or_insert(w);
    }
    let hash = blake3::hash(&data);
    Payload::File {
        data,
        hash,
        warning,
    }
}

/// Makes `data` exactly `size` bytes long, describing what had to be done.
fn fit(data: &mut Vec<u8>, size: u64) -> Option<String> {
    let len = data.len() as u64;
    if len > size {
        data.truncate(size as usize);
        Some(format!(
            "file grew while being read; stored its first {size} bytes"
        ))
    } else if len < size {
        data.resize(size as usize, 0);
        Some(format!(
            "file shrank by {} bytes while being read; padded with zeros",
            size - len
        ))
    } else {
        None
    }
}

fn stream(mut file: File, size: u64, tx: &Sender<Chunk>, shared: &Shared, clock: &mut StageClock) {
    let mut hasher = blake3::Hasher::new();
    let mut remaining = size;
    let mut warning = None;
    while remaining > 0 {
        if shared.stopped() {
            return; // Dropping `tx` tells the writer the stream ended early.
        }
        let want = remaining.min(CHUNK as u64) as usize;
        let mut buf = Vec::with_capacity(want);
        if warning.is_none() {
            match (&mut file).take(want as u64).read_to_end(&mut buf) {
                Ok(_) => {}
                Err(e) => {
                    warning = Some(format!(
                        "read error at byte {}: {e}; padded with zeros",
                        size - remaining + buf.len() as u64
                    ));
                }
            }
            if buf.len() < want && warning.is_none() {
                warning = Some(format!(
                    "file shrank by {} bytes while being read; padded with zeros",
                    remaining - buf.len() as u64
                ));
            }
        }
        buf.resize(want, 0);
        hasher.update(&buf);
        remaining -= want as u64;
        let sending = Instant::now();
        let sent = tx.send(Chunk::Data(buf));
        clock.blocked += sending.elapsed();
        if sent.is_err() {
            return;
        }
    }
    if warning.is_none() {
        let mut probe = [0u8; 1];
        if matches!(file.read(&mut probe), Ok(1)) {
            warning = Some(format!(
                "file grew while being read; stored its first {size} bytes"
            ));
        }
    }
    let _ = tx.send(Chunk::End {
        hash: hasher.finalize(),
        warning,
    });
}

fn open(path: &Path, shared: &Shared) -> io::Result<File> {
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Non-blocking so that a file swapped for a FIFO since the walk cannot hang us; no-follow so
        // that one swapped for a symlink is not silently dereferenced.
        let mut flags = libc::O_NONBLOCK;
        if !shared.follow_symlinks {
            flags |= libc::O_NOFOLLOW;
        }
        opts.custom_flags(flags);
    }
    #[cfg(not(unix))]
    let _ = shared;
    opts.open(path)
}

fn open_failure(e: &io::Error) -> Payload {
    let warning = match e.kind() {
        io::ErrorKind::NotFound => "vanished before it could be read; skipped".to_string(),
        io::ErrorKind::PermissionDenied => "cannot open: permission denied; skipped".to_string(),
        _ if is_loop(e) => "was replaced by a symbolic link since the walk; skipped".to_string(),
        _ => format!("cannot read: {e}; skipped"),
    };
    Payload::Skip { warning }
}

#[cfg(unix)]
fn is_loop(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ELOOP)
}

#[cfg(not(unix))]
fn is_loop(_e: &io::Error) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_pads_and_truncates() {
        let mut v = b"abc".to_vec();
        assert!(fit(&mut v, 5).unwrap().contains("shrank by 2 bytes"));
        assert_eq!(v, b"abc\0\0");
        let mut v = b"abcdef".to_vec();
        assert!(fit(&mut v, 4).unwrap().contains("grew"));
        assert_eq!(v, b"abcd");
        let mut v = b"ab".to_vec();
        assert_eq!(fit(&mut v, 2), None);
    }
}
