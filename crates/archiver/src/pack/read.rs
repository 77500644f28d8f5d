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
use rustix::fs::{Mode, OFlags};

use crate::entry::Kind;
use crate::error::Error;
use crate::format::zip;
use crate::pack::stats::StageClock;
use crate::pack::walk::{Entry, Source};
use crate::pack::{recv_until, send_until, Shared};

/// Files up to this size are read whole.
pub(crate) const SMALL_FILE: u64 = 1 << 20;
/// Chunk size for streamed files.
pub(crate) const CHUNK: usize = 256 << 10;
/// Chunks a streamed file may have in flight.
pub(crate) const STREAM_DEPTH: usize = 4;

/// A batch of consecutive entries admitted together: batch number, sequence number of its first
/// entry, the entries themselves, and the budget the batch holds. Batching amortises channel traffic
/// over many small files; a streamed file is always a batch of its own.
#[derive(Debug)]
pub(crate) struct Job {
    pub batch: u64,
    pub first: u64,
    pub entries: Vec<Entry>,
    pub cost: u64,
}

/// A finished (or, for a stream, started) batch on its way to the reorder buffer: each entry with
/// its payload, in sequence order.
#[derive(Debug)]
pub(crate) struct Done {
    pub batch: u64,
    pub first: u64,
    pub cost: u64,
    pub items: Vec<(Entry, Payload)>,
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
pub(crate) fn worker(jobs: Receiver<Job>, done: Sender<Done>, shared: &Shared) -> StageClock {
    let mut clock = StageClock::default();
    let stopped = || shared.stopped();
    loop {
        let waited = Instant::now();
        let Some(job) = recv_until(&jobs, &stopped) else {
            break;
        };
        clock.starved += waited.elapsed();
        let started = Instant::now();
        let (batch, first, cost) = (job.batch, job.first, job.cost);
        let mut items = Vec::with_capacity(job.entries.len());
        for entry in job.entries {
            if shared.stopped() {
                return clock;
            }
            let streamed = matches!(entry.kind, Kind::File { size, .. } if size > SMALL_FILE);
            let named = || Some(entry.path.display().to_string());
            let outcome = crate::threads::catch("read", named, || {
                shared.fault_point("read", &entry.path);
                prepare(&entry, shared)
            });
            clock.items += 1;
            match outcome {
                Ok(Prepared::Payload(payload)) => items.push((entry, payload)),
                Ok(Prepared::Stream(stream)) => {
                    let stream = *stream;
                    // A batch of one: its Done goes out now, the data follows through the stream.
                    let d = Done {
                        batch,
                        first,
                        cost,
                        items: vec![(entry, stream.payload)],
                    };
                    if !send_until(&done, d, &stopped) {
                        return clock;
                    }
                    if let Some(feed) = stream.feed {
                        feed.run(shared, &mut clock);
                    }
                }
                Err(failed) => {
                    if streamed {
                        // The writer may already hold this stream; it sees it break and stops.
                        shared.fail(failed);
                        return clock;
                    }
                    items.push((entry, Payload::Failed(failed)));
                }
            }
        }
        clock.busy += started.elapsed();
        if items.is_empty() {
            continue;
        }
        let sending = Instant::now();
        let sent = send_until(
            &done,
            Done {
                batch,
                first,
                cost,
                items,
            },
            &stopped,
        );
        clock.blocked += sending.elapsed();
        if !sent {
            break; // The writer is gone; the orchestrator reports why.
        }
    }
    clock
}

/// What a worker makes of one entry.
enum Prepared {
    Payload(Payload),
    Stream(Box<Started>),
}

/// A large file whose stream has been set up: the payload for the writer, and the work that feeds
/// its chunks (run after the payload was sent).
struct Started {
    payload: Payload,
    feed: Option<StreamFeed>,
}

/// Builds the payload for one entry. Streamed files come back as [`Prepared::Stream`].
fn prepare(entry: &Entry, shared: &Shared) -> Prepared {
    match entry.kind {
        Kind::File { size, .. } if size <= SMALL_FILE => {
            Prepared::Payload(read_small(entry, size, shared))
        }
        Kind::File { size, .. } => match open(entry, shared) {
            Ok(o) => {
                // A large file takes time to read: looked at again once read (ChunkSource::finish).
                let ctime = if o.changed { None } else { Some(entry.ctime) };
                let started = start_stream(o.file, size, ctime, &entry.path, shared);
                Prepared::Stream(Box::new(started))
            }
            Err(e) => Prepared::Payload(open_failure(&e)),
        },
        Kind::Symlink => Prepared::Payload(match read_link(entry) {
            Ok(target) => Payload::Symlink { target },
            Err(e) => open_failure(&e),
        }),
        Kind::Dir | Kind::HardLink { .. } => Prepared::Payload(Payload::Header),
        Kind::Warning { ref message } => Prepared::Payload(Payload::Skip {
            warning: message.clone(),
        }),
    }
}

fn read_link(entry: &Entry) -> io::Result<PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    match &entry.source {
        Source::At(dir) => {
            let target = rustix::fs::readlinkat(&**dir, entry.name(), Vec::new())?;
            Ok(PathBuf::from(std::ffi::OsString::from_vec(
                target.into_bytes(),
            )))
        }
        Source::Path(p) => std::fs::read_link(p),
        Source::None => Err(io::ErrorKind::NotFound.into()),
    }
}

fn read_small(entry: &Entry, size: u64, shared: &Shared) -> Payload {
    let rel = entry.path.as_path();
    let Opened { file, changed } = match open(entry, shared) {
        Ok(f) => f,
        Err(e) => return open_failure(&e),
    };
    let mut data = Vec::new();
    let result = read_expecting(&file, size as usize, &mut data);
    let mut warning = match result {
        Ok(_) => None,
        Err(e) => Some(format!("read error after {} bytes: {e}", data.len())),
    };
    if let Some(w) = fit(&mut data, size) {
        warning.get_or_insert(w);
    }
    // Changed between the walk and the open (a small file is read in one call: no second look).
    if changed {
        warning.get_or_insert_with(|| CHANGED.to_string());
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

/// Reads a file of `expected` bytes into `data`: up to one byte more, which tells whether it grew.
/// A short read that brings the total to exactly `expected` is taken as the end of the file:
/// regular files return fewer bytes than asked only there, so the confirming read that would
/// return 0 is saved, one system call per file (a file growing at that moment is a file
/// changing while read either way). Any other short read goes on until a read returns 0.
fn read_expecting(file: &File, expected: usize, data: &mut Vec<u8>) -> io::Result<()> {
    let limit = expected + 1;
    // Read straight into the spare capacity (zero-filling first would write every byte twice),
    // which must be exactly `limit`: a read fills all of it.
    if data.capacity() == limit {
        data.clear();
    } else {
        *data = Vec::with_capacity(limit);
    }
    loop {
        let want = limit.saturating_sub(data.len());
        if want == 0 {
            return Ok(());
        }
        match rustix::io::read(file, rustix::buffer::spare_capacity(data)) {
            Ok(0) => return Ok(()),
            Ok(n) => {
                if data.len() == expected && n < want {
                    return Ok(());
                }
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
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
    /// The walk's status-change time, checked again at the end; `None`: it had already moved.
    ctime: Option<(i64, i64)>,
}

impl ChunkSource {
    fn new(file: File, size: u64, ctime: Option<(i64, i64)>) -> Self {
        ChunkSource {
            file,
            size,
            remaining: size,
            warning: None,
            ctime,
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
        if self.warning.is_none() && self.ctime.is_none_or(|c| changed_since(&self.file, c)) {
            self.warning = Some(CHANGED.to_string());
        }
        self.warning
    }
}

/// Sets up streaming of a large file: raw chunks for tar, compressed chunks for zip (compression
/// happens on the worker). Reads the first chunk to choose the zip method.
fn start_stream(
    file: File,
    size: u64,
    ctime: Option<(i64, i64)>,
    rel: &Path,
    shared: &Shared,
) -> Started {
    let mut source = ChunkSource::new(file, size, ctime);
    let first = source.next_chunk();
    let mut encoder = None;
    let mut method = None;
    if let (Some(enc), Some(chunk)) = (shared.zip, first.as_ref()) {
        match zip::StreamEncoder::new(enc, rel, chunk) {
            Ok((e, m)) => {
                encoder = Some(e);
                method = Some(m);
            }
            Err(e) => {
                return Started {
                    payload: Payload::Failed(Error::Entry {
                        entry: rel.display().to_string(),
                        reason: format!("compression failed: {e}"),
                    }),
                    feed: None,
                }
            }
        }
    }
    let (tx, rx) = bounded(STREAM_DEPTH);
    Started {
        payload: Payload::Stream {
            size,
            chunks: rx,
            method,
        },
        feed: Some(StreamFeed {
            source,
            first,
            encoder,
            tx,
            size,
        }),
    }
}

/// The worker's side of a stream: reads, hashes, compresses (zip) and sends the chunks.
struct StreamFeed {
    source: ChunkSource,
    first: Option<Vec<u8>>,
    encoder: Option<zip::StreamEncoder>,
    tx: Sender<Chunk>,
    size: u64,
}

impl StreamFeed {
    fn run(mut self, shared: &Shared, clock: &mut StageClock) {
        let stopped = || shared.stopped();
        let mut hasher = blake3::Hasher::new();
        let tx = self.tx;
        let send = |chunk: Chunk, clock: &mut StageClock| {
            let t = Instant::now();
            // Watches the stop flag while blocked: a writer that stopped reading never strands us.
            let sent = send_until(&tx, chunk, &stopped);
            clock.blocked += t.elapsed();
            sent
        };
        while let Some(raw) = self.first.take().or_else(|| self.source.next_chunk()) {
            if shared.stopped() {
                return; // Dropping `tx` tells the writer the stream ended early.
            }
            hasher.update(&raw);
            let out = match self.encoder.as_mut() {
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
            warning: self.source.finish(),
            crc: 0,
            stored: self.size,
        };
        if let Some(e) = self.encoder {
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
}

/// Opens an entry for reading exactly as the walk saw it: relative to its directory's handle,
/// never following a symlink, non-blocking (a file swapped for a FIFO cannot hang us), and only if
/// it is still the same file (device and inode) the walk found.
fn open(entry: &Entry, shared: &Shared) -> io::Result<Opened> {
    let mut flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK;
    if !shared.follow_symlinks {
        flags |= OFlags::NOFOLLOW;
    }
    let fd = match &entry.source {
        Source::At(dir) => rustix::fs::openat(&**dir, entry.name(), flags, Mode::empty())?,
        Source::Path(p) => rustix::fs::open(p, flags, Mode::empty())?,
        Source::None => return Err(io::ErrorKind::NotFound.into()),
    };
    let (id, ctime) = crate::pack::walk::fstat_id(&fd)?;
    if id != entry.id {
        return Err(io::Error::other(REPLACED));
    }
    Ok(Opened {
        file: File::from(fd),
        changed: ctime != entry.ctime,
    })
}

/// A file opened for reading, and whether it changed since the walk saw it (its status-change
/// time moved: written, truncated, chmod-ed; what GNU tar calls "file changed as we read it").
struct Opened {
    file: File,
    changed: bool,
}

const CHANGED: &str = "file changed as we read it; stored as read";

/// Whether `file` changed since the walk (its status-change time is not `ctime` any more).
fn changed_since(file: &File, ctime: (i64, i64)) -> bool {
    crate::pack::walk::fstat_id(file).is_ok_and(|(_, now)| now != ctime)
}

const REPLACED: &str = "was replaced by another file since the walk; skipped";

fn open_failure(e: &io::Error) -> Payload {
    let warning = match e.kind() {
        io::ErrorKind::NotFound => "vanished before it could be read; skipped".to_string(),
        io::ErrorKind::PermissionDenied => "cannot open: permission denied; skipped".to_string(),
        _ if is_loop(e) => "was replaced by a symbolic link since the walk; skipped".to_string(),
        _ if e.to_string() == REPLACED => REPLACED.to_string(),
        _ => format!("cannot read: {e}; skipped"),
    };
    Payload::Skip { warning }
}

fn is_loop(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ELOOP)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_expecting_sees_growth_shrinking_and_exact_sizes() {
        use std::io::Write;
        for (len, expected, got) in [
            (0, 0, 0),
            (10, 10, 10),
            (11, 10, 11), // grew: one byte more is enough to tell
            (500, 10, 11),
            (7, 10, 7), // shrank
            (0, 10, 0),
            (100_000, 100_000, 100_000),
        ] {
            let mut f = tempfile::tempfile().unwrap();
            f.write_all(&vec![7u8; len]).unwrap();
            let f = {
                use std::io::Seek;
                f.rewind().unwrap();
                f
            };
            let mut data = Vec::new();
            read_expecting(&f, expected, &mut data).unwrap();
            assert_eq!(data.len(), got, "file of {len}, expected {expected}");
            assert!(data.iter().all(|&b| b == 7));
        }
    }

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
