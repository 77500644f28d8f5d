//! A pigz-style parallel gzip encoder whose output does not depend on the thread count.
//!
//! Ours because that last property is the point: the same tree must give the same `.tar.gz` bytes
//! for any `-j` (the golden test pins them), so piece boundaries are fixed here; each piece is
//! deflated by libdeflate (`deflate.rs`).
//!
//! The uncompressed stream is cut into pieces of exactly [`PIECE`] bytes (1 MiB). Each piece is
//! deflated on a pool thread on its own, with no dictionary (so it can be inflated on its own
//! too), and ends with a sync flush (an empty stored block: byte-aligned, not final) followed by
//! a second empty stored block, so the byte pattern [`PIECE_END`] marks where the next piece
//! starts; the last piece ends the deflate stream. Boundaries depend only on the byte count,
//! never on threads or timing, so `-j 1` and `-j 16` give identical bytes. CRC-32s are computed
//! per piece and combined. It is one gzip member that every inflater reads as any other;
//! `gzip_read::ParGzReader` uses the marks to inflate pieces in parallel (proving each guess,
//! see there). Cost of the independence: 9 bytes and the lost 32 KiB of context per MiB, less
//! than libdeflate gains over zlib at the same level.
//!
//! Memory: at most `threads + 1` pieces (input plus output, about 2 MiB each) are in flight.

use std::io::{self, Write};

use super::pool::OrderedPool;

/// Uncompressed bytes per piece.
pub const PIECE: usize = 1 << 20;
/// How a piece ends: the last 4 bytes of a sync flush (`LEN` 0, `NLEN` 0xffff) and a second empty
/// stored block (header byte, `LEN`, `NLEN`). The next piece starts right after it.
pub const PIECE_END: [u8; 9] = [0, 0, 0xff, 0xff, 0, 0, 0, 0xff, 0xff];

/// A piece to deflate, and a buffer (one the writer is done with) to deflate it into.
struct Job {
    data: Vec<u8>,
    last: bool,
    out: Vec<u8>,
}

/// A deflated piece, with both buffers back for the next pieces: fresh megabytes per piece are
/// page faults (zstd_frames.rs measured the same pattern).
struct Deflated {
    done: io::Result<()>,
    bytes: Vec<u8>,
    data: Vec<u8>,
    crc: crc32fast::Hasher,
}

/// Parallel gzip writer. Call [`finish`](Self::finish) to write the trailer and get `W` back; dropping
/// it without finishing stops the pool and leaves the output incomplete.
pub struct ParGzWriter<W: Write> {
    /// `None` only after `finish` has handed it back.
    out: Option<W>,
    piece: Vec<u8>,
    pool: OrderedPool<Job, Deflated>,
    /// Buffers back from pieces already written: at most the pool's depth + 1 of each kind.
    spare_data: Vec<Vec<u8>>,
    spare_out: Vec<Vec<u8>>,
    crc: crc32fast::Hasher,
    len: u64,
}

impl<W: Write> ParGzWriter<W> {
    /// Writes the gzip header and starts `threads` compression threads.
    pub fn new(mut out: W, level: u32, threads: usize) -> io::Result<Self> {
        let level = level.clamp(1, 9);
        let xfl = match level {
            9 => 2,
            1 => 4,
            _ => 0,
        };
        // Fixed header: no name, mtime 0, OS = Unix, so the bytes never depend on the machine or time.
        out.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 3])?;
        Self::raw(out, level, threads)
    }

    /// The same pieces as a bare deflate stream (a large zip entry's data): no gzip
    /// header; end it with [`finish_raw`](Self::finish_raw), which writes no trailer.
    pub(crate) fn raw(out: W, level: u32, threads: usize) -> io::Result<Self> {
        let level = level.clamp(1, 9);
        let threads = threads.max(1);
        let pool = OrderedPool::new("gzip", threads, threads + 1, move |job: Job| {
            let Job {
                data,
                last,
                mut out,
            } = job;
            let mut crc = crc32fast::Hasher::new();
            crc.update(&data);
            Deflated {
                done: super::deflate::piece_into(&data, level, last, &mut out),
                bytes: out,
                data,
                crc,
            }
        })?;
        Ok(ParGzWriter {
            out: Some(out),
            piece: Vec::new(),
            pool,
            spare_data: Vec::new(),
            spare_out: Vec::new(),
            crc: crc32fast::Hasher::new(),
            len: 0,
        })
    }

    fn submit(&mut self, last: bool) -> io::Result<()> {
        while !self.pool.has_room() {
            self.write_next(true)?;
        }
        let next = self.spare_data.pop().unwrap_or_default();
        let data = std::mem::replace(&mut self.piece, next);
        let out = self.spare_out.pop().unwrap_or_default();
        self.pool.submit(Job { data, last, out })?;
        // Write out whatever is already done without waiting.
        while self.write_next(false)? {}
        Ok(())
    }

    /// Writes the next piece in order if it is done (or, with `wait`, once it is); false when
    /// there was none to write.
    fn write_next(&mut self, wait: bool) -> io::Result<bool> {
        let Some(d) = self.pool.next(wait) else {
            return Ok(false);
        };
        let d = d.map_err(|panic| io::Error::other(format!("deflate failed: {panic}")))?;
        d.done?;
        self.out_mut().write_all(&d.bytes)?;
        self.crc.combine(&d.crc);
        self.len += d.data.len() as u64;
        let mut data = d.data;
        data.clear();
        self.spare_data.push(data);
        self.spare_out.push(d.bytes);
        Ok(true)
    }

    /// The compressing threads' time accounting (for `--stats`).
    pub(crate) fn times(&self) -> std::sync::Arc<super::pool::PoolTimes> {
        self.pool.times()
    }

    /// Compresses what is buffered, writes the trailer, stops the pool and returns the output.
    pub fn finish(self) -> io::Result<W> {
        let (mut out, crc, len) = self.finish_raw()?;
        let mut trailer = [0u8; 8];
        trailer[..4].copy_from_slice(&crc.to_le_bytes());
        trailer[4..].copy_from_slice(&(len as u32).to_le_bytes());
        out.write_all(&trailer)?;
        out.flush()?;
        Ok(out)
    }

    /// Compresses what is buffered and ends the deflate stream; returns the output, the CRC-32
    /// and the length of everything written in.
    pub(crate) fn finish_raw(mut self) -> io::Result<(W, u32, u64)> {
        self.submit(true)?;
        while self.write_next(true)? {}
        let crc = std::mem::take(&mut self.crc).finalize();
        let out = self.out.take().expect("finish runs once");
        Ok((out, crc, self.len))
    }

    /// The output, to take what has been written so far.
    pub(crate) fn out_mut(&mut self) -> &mut W {
        self.out.as_mut().expect("output present until finish")
    }
}

impl<W: Write> Write for ParGzWriter<W> {
    fn write(&mut self, mut data: &[u8]) -> io::Result<usize> {
        let total = data.len();
        while !data.is_empty() {
            if self.piece.capacity() == 0 {
                self.piece.reserve_exact(PIECE);
            }
            let take = (PIECE - self.piece.len()).min(data.len());
            self.piece.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.piece.len() == PIECE {
                self.submit(false)?;
            }
        }
        Ok(total)
    }

    /// Writes out finished pieces only: flushing a partial piece would make piece boundaries, and
    /// so the output bytes, depend on when flush was called.
    fn flush(&mut self) -> io::Result<()> {
        while self.write_next(false)? {}
        self.out_mut().flush()
    }
}

/// Deflates one block by zlib-rs as raw deflate, with `dict` as preset dictionary:
/// sync-flushed (byte-aligned, not final) unless it is the last. For tests that build gzip
/// streams other than ours.
#[cfg(test)]
pub(super) fn deflate_block(
    level: u32,
    data: &[u8],
    dict: &[u8],
    last: bool,
) -> Result<Vec<u8>, String> {
    use flate2::{Compress, Compression, FlushCompress, Status};
    let mut c = Compress::new(Compression::new(level), false);
    if !dict.is_empty() {
        c.set_dictionary(dict).map_err(|e| e.to_string())?;
    }
    let mut out = Vec::with_capacity(data.len() + data.len() / 16 + 1024);
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    loop {
        let consumed = c.total_in() as usize;
        if out.capacity() - out.len() < 64 {
            out.reserve(out.capacity().max(4096));
        }
        let status = c
            .compress_vec(&data[consumed..], &mut out, flush)
            .map_err(|e| e.to_string())?;
        let all_in = c.total_in() as usize == data.len();
        let done = if last {
            status == Status::StreamEnd
        } else {
            all_in && out.len() < out.capacity()
        };
        if done {
            return Ok(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn sample(n: usize) -> Vec<u8> {
        crate::testdata::text(n, 0x2545_f491)
    }

    fn gz(data: &[u8], threads: usize, writes: usize) -> Vec<u8> {
        let mut w = ParGzWriter::new(Vec::new(), 6, threads).unwrap();
        for part in data.chunks((data.len() / writes).max(1)) {
            w.write_all(part).unwrap();
        }
        w.finish().unwrap()
    }

    #[test]
    fn same_bytes_for_any_thread_count_and_write_pattern() {
        let data = sample(3 * PIECE + 12345);
        let one = gz(&data, 1, 1);
        assert_eq!(one, gz(&data, 2, 7));
        assert_eq!(one, gz(&data, 8, 1000));
    }

    #[test]
    fn decodes_with_flate2_and_checks_trailer() {
        for n in [0, 1, PIECE - 1, PIECE, PIECE + 1, 3 * PIECE + 3] {
            let data = sample(n);
            let z = gz(&data, 3, 3);
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(&z[..])
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, data, "size {n}");
        }
    }

    /// Independent pieces cost little against one stream by the same compressor. (Against
    /// zlib the comparison depends on the data: on real trees libdeflate's output is smaller,
    /// see docs/BENCHMARKS.md; on this 8-word text it is larger.)
    #[test]
    fn pieces_cost_little_against_a_single_stream() {
        let data = sample(3 * PIECE);
        let par = gz(&data, 2, 1).len() as f64;
        let single = crate::format::deflate::whole(&data, 6).unwrap().len() as f64 + 18.0;
        assert!(par / single < 1.01, "pieces {par} vs single {single}");
    }
}
