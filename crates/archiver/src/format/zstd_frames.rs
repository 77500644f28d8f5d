//! tar.zst as independent zstd frames, compressed and decompressed in parallel.
//!
//! Writing: the tar stream is cut into frames of exactly [`FRAME`] uncompressed bytes (the last
//! shorter); each is compressed on its own by libzstd (content size and XXH64 checksum in its
//! header) on a pool thread, and written in order. A frame's bytes depend only on its input and
//! the level, never on `-j` or timing. After the last frame comes the seek table of zstd's
//! seekable format (contrib/seekable_format) in a skippable frame, so seekable-aware tools can
//! jump to any frame; every zstd decoder (`zstd -d`, libarchive, the `zstd` crate) reads
//! concatenated frames and skips skippable ones, so to them this is an ordinary `.zst`.
//!
//! Reading: [`ParZstdReader`] walks the frames' block headers (3 bytes each, so finding a frame's
//! end costs no decompression) and hands each frame whose header declares a content size of at
//! most [`MAX_PARALLEL_FRAME`] to a pool thread; results come back in order. Anything else (a
//! single-frame `.zst` from another tool, a frame without a size, a dictionary, a header it does
//! not understand) switches the rest of the stream to libzstd's streaming decoder, which decodes
//! and judges it exactly as before; parallel decoding is a shortcut, never a second parser with
//! its own opinion on what is valid.
//!
//! Ours because no crate splits a zstd stream at frame boundaries while reading it from a pipe,
//! or writes the seek table with frames compressed in parallel and deterministic bytes.
//!
//! Memory: writing holds at most `threads + 1` frames in flight, and so does reading
//! `threads + 1` frames (compressed and decompressed), each at most [`MAX_PARALLEL_FRAME`].

use std::cell::RefCell;
use std::io::{self, Read, Write};

use super::pool::{Handout, OrderedPool};

/// Uncompressed bytes per frame. 4 MiB costs +1.7% size against one stream at level 3 on a
/// CPython source tree (2 MiB: +1.9%; 8 MiB: +1.4%) and gives a 100 MiB archive 25 frames.
pub const FRAME: usize = 4 << 20;
/// The largest declared frame content the reader decodes on a pool thread.
pub const MAX_PARALLEL_FRAME: u64 = 8 << 20;

const ZSTD_MAGIC: u32 = 0xFD2F_B528;
/// libzstd's default largest window for streaming decoding (`ZSTD_WINDOWLOG_LIMIT_DEFAULT`).
const MAX_WINDOW: u64 = 1 << 27;
const SKIPPABLE_SEEK_TABLE: u32 = 0x184D_2A5E;
const SEEKABLE_MAGIC: u32 = 0x8F92_EAB1;

fn is_skippable(magic: u32) -> bool {
    magic & 0xFFFF_FFF0 == 0x184D_2A50
}

thread_local! {
    static COMPRESSOR: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { RefCell::new(None) };
}

/// Compresses one frame with this thread's compressor (made once per thread and level) into `out`
/// (cleared first; grown to zstd's bound once, then reused from frame to frame).
fn compress_frame(level: i32, data: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
    COMPRESSOR.with(|c| {
        let mut c = c.borrow_mut();
        if !matches!(&*c, Some((l, _)) if *l == level) {
            let mut z = zstd::bulk::Compressor::new(level)?;
            z.include_checksum(true)?;
            z.include_contentsize(true)?;
            *c = Some((level, z));
        }
        let (_, z) = c.as_mut().expect("set above");
        out.clear();
        out.reserve(zstd::zstd_safe::compress_bound(data.len()));
        z.compress_to_buffer(data, out).map(|_| ())
    })
}

/// A frame to compress, and a buffer (one the writer is done with) to compress it into.
struct FrameIn {
    data: Vec<u8>,
    out: Vec<u8>,
}

/// A compressed frame, with both buffers for reuse: in a run of many frames every frame's
/// buffers would otherwise be fresh pages, faulted in and zeroed by the kernel (61% of a pack's
/// page faults before, measured with `perf record -e page-faults`).
struct Compressed {
    done: io::Result<()>,
    bytes: Vec<u8>,
    data: Vec<u8>,
}

/// Parallel zstd writer of independent frames and a seek table. Call [`finish`](Self::finish);
/// dropping it unfinished stops the pool and leaves the output incomplete.
pub struct ZstdFramesWriter<W: Write> {
    out: Option<W>,
    frame: Vec<u8>,
    pool: OrderedPool<FrameIn, Compressed>,
    /// Buffers back from frames already written, for the next ones: at most the pool's depth + 1
    /// of each kind ever exist.
    spare_data: Vec<Vec<u8>>,
    spare_out: Vec<Vec<u8>>,
    /// (compressed, uncompressed) size of every frame written, for the seek table: 8 bytes per
    /// 4 MiB of input.
    sizes: Vec<(u32, u32)>,
}

impl<W: Write> ZstdFramesWriter<W> {
    /// Starts `threads` compression threads at zstd level `level`.
    pub fn new(out: W, level: u32, threads: usize) -> io::Result<Self> {
        let level = level as i32;
        // One frame beyond the threads' own: 4 MiB frames are big enough that a deeper queue only
        // holds memory (measured: depth 6 at -j2 peaked at 52 MiB, no faster).
        let threads = threads.max(1);
        let pool = OrderedPool::new("zstd", threads, threads + 1, move |job: FrameIn| {
            let FrameIn { data, mut out } = job;
            Compressed {
                done: compress_frame(level, &data, &mut out),
                bytes: out,
                data,
            }
        })?;
        Ok(ZstdFramesWriter {
            out: Some(out),
            frame: Vec::with_capacity(FRAME),
            pool,
            spare_data: Vec::new(),
            spare_out: Vec::new(),
            sizes: Vec::new(),
        })
    }

    fn submit(&mut self) -> io::Result<()> {
        while !self.pool.has_room() {
            self.write_next(true)?;
        }
        let next = self
            .spare_data
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(FRAME));
        let data = std::mem::replace(&mut self.frame, next);
        let out = self.spare_out.pop().unwrap_or_default();
        self.pool.submit(FrameIn { data, out })?;
        while self.write_next(false)? {}
        Ok(())
    }

    fn write_next(&mut self, wait: bool) -> io::Result<bool> {
        let Some(done) = self.pool.next(wait) else {
            return Ok(false);
        };
        let done = done.map_err(|panic| io::Error::other(format!("zstd failed: {panic}")))?;
        done.done
            .map_err(|e| io::Error::other(format!("zstd failed: {e}")))?;
        self.out
            .as_mut()
            .expect("open until finish")
            .write_all(&done.bytes)?;
        self.sizes
            .push((done.bytes.len() as u32, done.data.len() as u32));
        let mut data = done.data;
        data.clear();
        self.spare_data.push(data);
        self.spare_out.push(done.bytes);
        Ok(true)
    }

    /// The compressing threads' time accounting (for `--stats`).
    pub(crate) fn times(&self) -> std::sync::Arc<super::pool::PoolTimes> {
        self.pool.times()
    }

    /// Compresses what is buffered, writes the seek table, returns the output.
    pub fn finish(mut self) -> io::Result<W> {
        // An empty stream is still one (empty) frame: a `.zst` of nothing but a skippable frame
        // is not valid to every decoder.
        if !self.frame.is_empty() || (self.sizes.is_empty() && self.pool.in_flight() == 0) {
            self.submit()?;
        }
        while self.write_next(true)? {}
        let table = seek_table(&self.sizes);
        let mut out = self.out.take().expect("finish runs once");
        out.write_all(&table)?;
        out.flush()?;
        Ok(out)
    }
}

impl<W: Write> Write for ZstdFramesWriter<W> {
    fn write(&mut self, mut data: &[u8]) -> io::Result<usize> {
        let total = data.len();
        while !data.is_empty() {
            let take = (FRAME - self.frame.len()).min(data.len());
            self.frame.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.frame.len() == FRAME {
                self.submit()?;
            }
        }
        Ok(total)
    }

    /// Writes out finished frames only: cutting a frame at a flush would make the bytes depend
    /// on when flush was called.
    fn flush(&mut self) -> io::Result<()> {
        while self.write_next(false)? {}
        self.out.as_mut().expect("open until finish").flush()
    }
}

/// The seekable format's seek table, in a skippable frame: an entry per frame (compressed size,
/// uncompressed size; no per-frame checksums, the frames carry their own), then the footer.
fn seek_table(sizes: &[(u32, u32)]) -> Vec<u8> {
    let body = sizes.len() * 8 + 9;
    let mut t = Vec::with_capacity(8 + body);
    t.extend_from_slice(&SKIPPABLE_SEEK_TABLE.to_le_bytes());
    t.extend_from_slice(&(body as u32).to_le_bytes());
    for &(c, d) in sizes {
        t.extend_from_slice(&c.to_le_bytes());
        t.extend_from_slice(&d.to_le_bytes());
    }
    t.extend_from_slice(&(sizes.len() as u32).to_le_bytes());
    t.push(0); // descriptor: no checksums
    t.extend_from_slice(&SEEKABLE_MAGIC.to_le_bytes());
    t
}

/// A frame read whole, for a pool thread.
struct FrameJob {
    bytes: Vec<u8>,
    content: u64,
    offset: u64,
    /// A buffer to decompress into (one the reader has finished with: no new pages per frame).
    out: Vec<u8>,
}

/// What the frame walker found next.
enum Next {
    Frame(FrameJob),
    /// The input ended cleanly between frames.
    End,
    /// A frame to leave to the streaming decoder; these bytes of it were already read.
    Stream(Vec<u8>),
}

/// Decompresses a zstd stream, frames on pool threads when they allow it (see the module docs).
pub struct ParZstdReader<R: Read> {
    input: Option<io::BufReader<R>>,
    /// Bytes consumed from `input` so far (for error messages).
    offset: u64,
    pool: OrderedPool<FrameJob, Decoded>,
    current: Handout,
    /// Buffers done with, for the next frames: decompressed ones and compressed ones.
    spare: Vec<Vec<u8>>,
    spare_in: Vec<Vec<u8>>,
    /// A frame's decoding error, once returned.
    failed: Option<(io::ErrorKind, String)>,
    /// Set when the walker stopped: the input's end, or where the streaming decoder takes over.
    walked: Option<io::Result<Next>>,
    #[allow(clippy::type_complexity)]
    stream: Option<
        zstd::stream::read::Decoder<
            'static,
            io::BufReader<io::Chain<io::Cursor<Vec<u8>>, io::BufReader<R>>>,
        >,
    >,
}

impl<R: Read> ParZstdReader<R> {
    /// A reader of `input` (starting at a frame) decoding on up to `threads` threads.
    pub fn new(input: R, threads: usize) -> io::Result<Self> {
        let threads = threads.max(1);
        let pool = OrderedPool::new("unzstd", threads, threads + 1, decode_frame)?;
        Ok(ParZstdReader {
            input: Some(io::BufReader::with_capacity(128 << 10, input)),
            offset: 0,
            pool,
            current: Handout::default(),
            spare: Vec::new(),
            spare_in: Vec::new(),
            failed: None,
            walked: None,
            stream: None,
        })
    }

    /// Remembers a decoding error: every later read fails with it too, never skipping a frame.
    fn fail(&mut self, e: io::Error) -> io::Error {
        self.failed = Some((e.kind(), e.to_string()));
        e
    }

    /// Reads exactly `buf.len()` bytes, or fewer only at the input's end; appends them to `keep`.
    fn take(&mut self, n: usize, keep: &mut Vec<u8>) -> io::Result<usize> {
        let input = self.input.as_mut().expect("input until streaming");
        let start = keep.len();
        keep.resize(start + n, 0);
        let mut got = 0;
        while got < n {
            match input.read(&mut keep[start + got..]) {
                Ok(0) => break,
                Ok(k) => got += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    keep.truncate(start + got);
                    return Err(e);
                }
            }
        }
        keep.truncate(start + got);
        self.offset += got as u64;
        Ok(got)
    }

    fn cut(&self, what: &str) -> io::Error {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "the zstd stream is cut short at byte {}: {what} incomplete",
                self.offset
            ),
        )
    }

    /// Reads the next frame (skipping skippable frames).
    fn walk(&mut self) -> io::Result<Next> {
        loop {
            let start = self.offset;
            let mut bytes = self.spare_in.pop().unwrap_or_default();
            bytes.clear();
            match self.take(4, &mut bytes)? {
                // Nothing at all is not a zstd stream (libzstd agrees); the end after frames is.
                0 if start == 0 => return Err(self.cut("the first frame")),
                0 => return Ok(Next::End),
                4 => {}
                _ => return Err(self.cut("a frame header")),
            }
            let magic = u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes"));
            if is_skippable(magic) {
                if self.take(4, &mut bytes)? != 4 {
                    return Err(self.cut("a skippable frame"));
                }
                let len = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
                let input = self.input.as_mut().expect("input until streaming");
                let skipped = io::copy(&mut input.take(u64::from(len)), &mut io::sink())?;
                self.offset += skipped;
                if skipped < u64::from(len) {
                    return Err(self.cut("a skippable frame"));
                }
                continue;
            }
            if magic != ZSTD_MAGIC {
                return Ok(Next::Stream(bytes));
            }
            return self.frame(start, bytes);
        }
    }

    /// Reads one zstd frame whose magic number is in `bytes`; a frame the pool should not take is
    /// handed on to the streaming decoder with what was read of it.
    fn frame(&mut self, start: u64, mut bytes: Vec<u8>) -> io::Result<Next> {
        if self.take(1, &mut bytes)? != 1 {
            return Err(self.cut("a frame header"));
        }
        let fhd = bytes[4];
        let single_segment = fhd & 0x20 != 0;
        let checksum = fhd & 0x04 != 0;
        let dict_len = [0, 1, 2, 4][usize::from(fhd & 3)];
        let fcs_len = match fhd >> 6 {
            0 if single_segment => 1,
            0 => 0,
            1 => 2,
            2 => 4,
            _ => 8,
        };
        let header_rest = usize::from(!single_segment) + dict_len + fcs_len;
        if fhd & 0x08 != 0 || dict_len != 0 || fcs_len == 0 {
            return Ok(Next::Stream(bytes)); // reserved bit, a dictionary, or no content size
        }
        if self.take(header_rest, &mut bytes)? != header_rest {
            return Err(self.cut("a frame header"));
        }
        let mut fcs = [0u8; 8];
        fcs[..fcs_len].copy_from_slice(&bytes[bytes.len() - fcs_len..]);
        let content = u64::from_le_bytes(fcs) + if fcs_len == 2 { 256 } else { 0 };
        if content > MAX_PARALLEL_FRAME {
            return Ok(Next::Stream(bytes));
        }
        // libzstd's one-shot decoder does not enforce the window limit its streaming decoder
        // does (2^27 by default): a frame declaring a larger window is the streaming decoder's
        // to judge, so both paths accept and refuse the same frames.
        if !single_segment {
            let wd = bytes[5];
            let log = 10 + u32::from(wd >> 3);
            let window = (1u64 << log) + ((1u64 << log) / 8) * u64::from(wd & 7);
            if window > MAX_WINDOW {
                return Ok(Next::Stream(bytes));
            }
        }
        // Blocks: a 3-byte header each; raw and compressed blocks carry `size` bytes, RLE one.
        loop {
            let at = bytes.len();
            if self.take(3, &mut bytes)? != 3 {
                return Err(self.cut("a block header"));
            }
            let h = u32::from(bytes[at])
                | u32::from(bytes[at + 1]) << 8
                | u32::from(bytes[at + 2]) << 16;
            let last = h & 1 != 0;
            let size = (h >> 3) as usize;
            let payload = match (h >> 1) & 3 {
                0 | 2 => size,
                1 => 1,
                _ => return Ok(Next::Stream(bytes)), // reserved type: libzstd reports it
            };
            if (bytes.len() + payload) as u64 > MAX_PARALLEL_FRAME + (1 << 20) {
                return Ok(Next::Stream(bytes)); // far more than its content: leave it to libzstd
            }
            if self.take(payload, &mut bytes)? != payload {
                return Err(self.cut("a block"));
            }
            if last {
                break;
            }
        }
        if checksum && self.take(4, &mut bytes)? != 4 {
            return Err(self.cut("a frame checksum"));
        }
        Ok(Next::Frame(FrameJob {
            bytes,
            content,
            offset: start,
            out: Vec::new(),
        }))
    }

    /// Walks one more frame into the pool, or records where walking stopped.
    fn feed(&mut self) {
        match self.walk() {
            Ok(Next::Frame(mut job)) => {
                job.out = self.spare.pop().unwrap_or_default();
                if let Err(e) = self.pool.submit(job) {
                    self.walked = Some(Err(e));
                }
            }
            other => self.walked = Some(other),
        }
    }
}

/// A frame decoded (or not), with its compressed buffer back for reuse.
struct Decoded {
    out: io::Result<Vec<u8>>,
    input: Vec<u8>,
}

fn decode_frame(mut job: FrameJob) -> Decoded {
    let out = std::mem::take(&mut job.out);
    Decoded {
        out: decode(&job, out),
        input: job.bytes,
    }
}

fn decode(job: &FrameJob, mut out: Vec<u8>) -> io::Result<Vec<u8>> {
    out.clear();
    out.reserve(job.content as usize);
    DECOMPRESSOR
        .with(|d| {
            let mut d = d.borrow_mut();
            if d.is_none() {
                *d = Some(zstd::bulk::Decompressor::new()?);
            }
            d.as_mut()
                .expect("set above")
                .decompress_to_buffer(&job.bytes, &mut out)
        })
        .and_then(|_| {
            if out.len() as u64 == job.content {
                Ok(out)
            } else {
                Err(io::Error::other(
                    "frame content size does not match its header",
                ))
            }
        })
        .map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("damaged zstd frame at byte {}: {e}", job.offset),
            )
        })
}

impl<R: Read> Read for ParZstdReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if let Some((kind, msg)) = &self.failed {
            return Err(io::Error::new(*kind, msg.clone()));
        }
        loop {
            if !self.current.is_empty() {
                return Ok(self.current.read_to(out));
            }
            if let Some(stream) = &mut self.stream {
                return stream.read(out);
            }
            // A frame already done goes out first; then the walker reads ahead while there is
            // room; only then is a frame in flight waited for.
            let next = match self.pool.next(false) {
                Some(done) => Some(done),
                None if self.walked.is_none() && self.pool.has_room() => {
                    self.feed();
                    continue;
                }
                None => self.pool.next(true),
            };
            match next {
                Some(Ok(Decoded { out, input })) => {
                    // At most one of each per frame in flight is kept: the pool bounds them.
                    self.spare_in.push(input);
                    let out = match out {
                        Ok(out) => out,
                        Err(e) => return Err(self.fail(e)),
                    };
                    let done = self.current.refill(out);
                    if done.capacity() > 0 {
                        self.spare.push(done);
                    }
                }
                Some(Err(panic)) => {
                    return Err(self.fail(io::Error::other(format!("zstd failed: {panic}"))))
                }
                None => match self.walked.take() {
                    Some(Ok(Next::Stream(prefix))) => {
                        let input = self.input.take().expect("input until streaming");
                        let chained = io::BufReader::new(io::Cursor::new(prefix).chain(input));
                        self.stream = Some(zstd::stream::read::Decoder::with_buffer(chained)?);
                    }
                    Some(Err(e)) => {
                        let (kind, msg) = (e.kind(), e.to_string());
                        self.walked = Some(Err(io::Error::new(kind, msg)));
                        return Err(e);
                    }
                    Some(Ok(Next::End)) | None => {
                        self.walked = Some(Ok(Next::End));
                        return Ok(0);
                    }
                    Some(Ok(Next::Frame(_))) => unreachable!("frames go to the pool"),
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(n: usize) -> Vec<u8> {
        let mut s = 0x9e37_79b9_u64;
        (0..n)
            .map(|i| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1);
                if i % 3 == 0 {
                    (s >> 59) as u8
                } else {
                    b'a' + (i % 7) as u8
                }
            })
            .collect()
    }

    fn pack(data: &[u8], threads: usize) -> Vec<u8> {
        let mut w = ZstdFramesWriter::new(Vec::new(), 3, threads).unwrap();
        for part in data.chunks(100_003) {
            w.write_all(part).unwrap();
        }
        w.finish().unwrap()
    }

    fn unpack(z: &[u8], threads: usize) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        ParZstdReader::new(z, threads)?.read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn round_trips_and_every_decoder_agrees() {
        for n in [0, 1, FRAME - 1, FRAME, FRAME + 1, 2 * FRAME + 12345] {
            let data = sample(n);
            let z = pack(&data, 2);
            assert_eq!(z, pack(&data, 5), "bytes depend on threads at {n}");
            assert_eq!(unpack(&z, 3).unwrap(), data, "parallel, size {n}");
            assert_eq!(
                zstd::stream::decode_all(&z[..]).unwrap(),
                data,
                "libzstd, size {n}"
            );
        }
    }

    #[test]
    fn the_seek_table_describes_the_frames() {
        let data = sample(2 * FRAME + 7);
        let z = pack(&data, 2);
        let tail = &z[z.len() - 9..];
        assert_eq!(u32::from_le_bytes(tail[..4].try_into().unwrap()), 3);
        assert_eq!(
            u32::from_le_bytes(tail[5..].try_into().unwrap()),
            SEEKABLE_MAGIC
        );
        let table_len = 8 + 3 * 8 + 9;
        let table = &z[z.len() - table_len..];
        let mut at = 0usize;
        for i in 0..3 {
            let e = &table[8 + i * 8..16 + i * 8];
            let c = u32::from_le_bytes(e[..4].try_into().unwrap()) as usize;
            let d = u32::from_le_bytes(e[4..].try_into().unwrap()) as usize;
            let frame = zstd::bulk::decompress(&z[at..at + c], FRAME).unwrap();
            assert_eq!(frame.len(), d);
            at += c;
        }
        assert_eq!(at, z.len() - table_len);
    }

    #[test]
    fn other_zstd_streams_decode_through_libzstd() {
        let data = sample(3 * FRAME);
        // One big frame (declared size over the parallel limit), then a frame without a size.
        let mut z = zstd::bulk::compress(&data, 3).unwrap();
        let mut e = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
        e.write_all(&data[..1000]).unwrap();
        z.extend(e.finish().unwrap());
        let mut want = data.clone();
        want.extend_from_slice(&data[..1000]);
        assert_eq!(unpack(&z, 2).unwrap(), want);
    }

    #[test]
    fn damage_and_truncation_are_errors_never_a_short_success() {
        let data = sample(2 * FRAME + 99);
        let z = pack(&data, 2);
        let frames_end = z.len() - (8 + 3 * 8 + 9);
        for cut in [5, 100, FRAME / 8, frames_end - 1] {
            let e = unpack(&z[..cut], 2).unwrap_err();
            assert!(
                e.to_string().contains("cut short") || e.kind() == io::ErrorKind::UnexpectedEof,
                "{e}"
            );
        }
        let mut bad = z.clone();
        bad[frames_end / 2] ^= 0x40;
        assert!(unpack(&bad, 2).is_err());
        // Garbage after the last frame is an error, as with libzstd.
        let mut junk = z.clone();
        junk.extend_from_slice(b"not zstd at all");
        assert!(unpack(&junk, 2).is_err());
    }

    #[test]
    fn a_frame_with_a_huge_window_is_judged_by_the_streaming_decoder() {
        // A small frame (not single-segment) whose window descriptor claims 2 GiB: libzstd's
        // streaming decoder refuses it; so must we, whatever path it takes.
        let mut e = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        e.include_contentsize(true).unwrap();
        // 2 MiB of content with a 1 MiB window: not single-segment, so a window descriptor.
        e.set_pledged_src_size(Some(2 << 20)).unwrap();
        e.set_parameter(zstd::stream::raw::CParameter::WindowLog(20))
            .unwrap();
        e.write_all(&sample(2 << 20)).unwrap();
        let mut z = e.finish().unwrap();
        assert_eq!(z[4] & 0x20, 0, "expected a window descriptor");
        assert_eq!(unpack(&z, 2).unwrap().len(), 2 << 20);
        z[5] = (21u8) << 3; // window log 31
        assert!(
            zstd::stream::decode_all(&z[..]).is_err(),
            "libzstd accepts it"
        );
        assert!(unpack(&z, 2).is_err());
    }

    #[test]
    fn a_frame_that_lies_about_its_size_is_an_error() {
        let data = sample(1000);
        let z = zstd::bulk::compress(&data, 3).unwrap();
        // Single-segment frame with a 2-byte content size (value - 256) right after the FHD.
        assert_eq!(z[4] >> 6, 1, "expected a 2-byte size field");
        for claimed in [500u16, 2000] {
            let mut bad = z.clone();
            bad[5..7].copy_from_slice(&(claimed - 256).to_le_bytes());
            let e = unpack(&bad, 2).unwrap_err();
            assert!(
                e.to_string().contains("damaged zstd frame at byte 0"),
                "{e}"
            );
        }
    }
}
