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
use crate::format::zip;
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
    /// A whole small file, compressed for zip by the worker.
    Encoded {
        encoded: zip::Encoded,
        hash: blake3::Hash,
        warning: Option<String>,
    },
    /// A large file arriving in chunks; `size` is what the header claims. `method`: the chunks are
    /// compressed with it (zip), otherwise raw (tar).
    Stream {
        size: u64,
        chunks: Receiver<Chunk>,
        method: Option<zip::ZipMethod>,
    },
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
    End(ChunkEnd),
}

/// What is known once a streamed file has been read.
#[derive(Debug, Clone)]
pub(crate) struct ChunkEnd {
    /// BLAKE3 of the raw bytes stored.
    pub hash: blake3::Hash,
    pub warning: Option<String>,
    /// CRC-32 of the raw bytes (zip only).
    pub crc: u32,
    /// Bytes sent in `Data` chunks (compressed size for zip).
    pub stored: u64,
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
        Kind::File { size } if size <= SMALL_FILE => {
            Some(read_small(path, &entry.rel, size, shared))
        }
        Kind::File { size } => {
            let file = match open(path, shared) {
                Ok(f) => f,
                Err(e) => return Some(open_failure(&e)),
            };
            stream(file, size, &entry.rel, job, done, shared, clock);
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

fn read_small(path: &Path, rel: &Path, size: u64, shared: &Shared) -> Payload {
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
    match shared.zip {
        None => Payload::File {
            data,
            hash,
            warning,
        },
        Some(enc) => match zip::encode(data, rel, enc) {
            Ok(encoded) => Payload::Encoded {
                encoded,
                hash,
                warning,
            },
            Err(e) => Payload::Failed(Error::Entry {
                entry: rel.display().to_string(),
                reason: format!("compression failed: {e}"),
            }),
        },
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

/// Reads a large file chunk by chunk: exactly `size` bytes, zero-padded if it shrank.
struct ChunkSource {
    file: File,
    size: u64,
    remaining: u64,
    warning: Option<String>,
}

impl ChunkSource {
    fn new(file: File, size: u64) -> Self {
        ChunkSource {
            file,
            size,
            remaining: size,
            warning: None,
        }
    }

    fn next_chunk(&mut self) -> Option<Vec<u8>> {
        if self.remaining == 0 {
            return None;
        }
        let want = self.remaining.min(CHUNK as u64) as usize;
        let mut buf = Vec::with_capacity(want);
        if self.warning.is_none() {
            if let Err(e) = (&mut self.file).take(want as u64).read_to_end(&mut buf) {
                let at = self.size - self.remaining + buf.len() as u64;
                self.warning = Some(format!("read error at byte {at}: {e}; padded with zeros"));
            }
            if buf.len() < want && self.warning.is_none() {
                self.warning = Some(format!(
                    "file shrank by {} bytes while being read; padded with zeros",
                    self.remaining - buf.len() as u64
                ));
            }
        }
        buf.resize(want, 0);
        self.remaining -= want as u64;
        Some(buf)
    }

    /// The warning to report, after checking whether the file grew past `size`.
    fn finish(mut self) -> Option<String> {
        if self.warning.is_none() {
            let mut probe = [0u8; 1];
            if matches!(self.file.read(&mut probe), Ok(1)) {
                self.warning = Some(format!(
                    "file grew while being read; stored its first {} bytes",
                    self.size
                ));
            }
        }
        self.warning
    }
}

/// Streams a large file to the writer: raw chunks for tar, compressed chunks for zip (compression
/// happens here, on the worker). Sends the `Done` for the entry first, once the method is known.
fn stream(
    file: File,
    size: u64,
    rel: &Path,
    job: Job,
    done: &Sender<Done>,
    shared: &Shared,
    clock: &mut StageClock,
) {
    let mut source = ChunkSource::new(file, size);
    let mut hasher = blake3::Hasher::new();
    let mut first = source.next_chunk();
    let mut encoder = None;
    let mut method = None;
    if let (Some(enc), Some(chunk)) = (shared.zip, first.as_ref()) {
        match zip::StreamEncoder::new(enc, rel, chunk) {
            Ok((e, m)) => {
                encoder = Some(e);
                method = Some(m);
            }
            Err(e) => {
                let _ = done.send(one(
                    job,
                    Payload::Failed(Error::Entry {
                        entry: rel.display().to_string(),
                        reason: format!("compression failed: {e}"),
                    }),
                ));
                return;
            }
        }
    }
    let (tx, rx) = bounded(STREAM_DEPTH);
    if done
        .send(one(
            job,
            Payload::Stream {
                size,
                chunks: rx,
                method,
            },
        ))
        .is_err()
    {
        return;
    }
    let send = |chunk: Chunk, clock: &mut StageClock| {
        let t = Instant::now();
        let sent = tx.send(chunk).is_ok();
        clock.blocked += t.elapsed();
        sent
    };
    while let Some(raw) = first.take().or_else(|| source.next_chunk()) {
        if shared.stopped() {
            return; // Dropping `tx` tells the writer the stream ended early.
        }
        hasher.update(&raw);
        let out = match encoder.as_mut() {
            None => raw,
            Some(e) => match e.update(&raw) {
                Ok(out) => out,
                Err(_) => return, // The writer sees the stream break; compression cannot fail on valid input.
            },
        };
        if !out.is_empty() && !send(Chunk::Data(out), clock) {
            return;
        }
    }
    let mut end = ChunkEnd {
        hash: hasher.finalize(),
        warning: source.finish(),
        crc: 0,
        stored: size,
    };
    if let Some(e) = encoder {
        let Ok((tail, crc, csize)) = e.finish() else {
            return;
        };
        if !tail.is_empty() && !send(Chunk::Data(tail), clock) {
            return;
        }
        end.crc = crc;
        end.stored = csize;
    }
    send(Chunk::End(end), clock);
}

fn one(job: Job, payload: Payload) -> Done {
    Done {
        batch: job.batch,
        first: job.first,
        cost: job.cost,
        payloads: vec![payload],
    }
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
