//! A pigz-style parallel gzip encoder whose output does not depend on the thread count.
//!
//! Ours because that last property is the point: the same tree must give the same `.tar.gz` bytes
//! for any `-j` (the golden test pins them), so block boundaries, dictionaries and flushes are
//! fixed here; each block is deflated by `flate2`.
//!
//! The uncompressed stream is cut into blocks of exactly [`BLOCK`] bytes. Each block is deflated on a
//! pool thread with the previous 32 KiB of input as its dictionary (so the ratio stays close to a
//! single stream) and ends with a sync flush, which byte-aligns it; the last block ends the deflate
//! stream. Block boundaries depend only on the byte count, never on threads or timing, so `-j 1` and
//! `-j 16` give identical bytes. CRC-32s are computed per block and combined.
//!
//! Memory: at most `2 * threads + 2` blocks (input plus output) are in flight.

use std::io::{self, Write};
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Receiver, Sender};
use flate2::{Compress, Compression, FlushCompress, Status};

use crate::reorder::ReorderBuffer;

/// Uncompressed bytes per block (pigz's default).
pub const BLOCK: usize = 128 << 10;
/// Deflate's window: how much history a block may refer back to.
const DICT: usize = 32 << 10;

struct Job {
    seq: u64,
    data: Vec<u8>,
    dict: Vec<u8>,
    last: bool,
}

struct Deflated {
    seq: u64,
    bytes: Result<Vec<u8>, String>,
    crc: crc32fast::Hasher,
    len: u64,
}

/// Parallel gzip writer. Call [`finish`](Self::finish) to write the trailer and get `W` back; dropping
/// it without finishing stops the pool and leaves the output incomplete.
pub struct ParGzWriter<W: Write> {
    /// `None` only after `finish` has handed it back.
    out: Option<W>,
    block: Vec<u8>,
    dict: Vec<u8>,
    next_seq: u64,
    in_flight: usize,
    max_in_flight: usize,
    ready: ReorderBuffer<Deflated>,
    jobs: Option<Sender<Job>>,
    results: Receiver<Deflated>,
    pool: Vec<JoinHandle<()>>,
    crc: crc32fast::Hasher,
    len: u64,
}

impl<W: Write> ParGzWriter<W> {
    /// Writes the gzip header and starts `threads` compression threads.
    pub fn new(mut out: W, level: u32, threads: usize) -> io::Result<Self> {
        let threads = threads.max(1);
        let level = level.clamp(1, 9);
        let xfl = match level {
            9 => 2,
            1 => 4,
            _ => 0,
        };
        // Fixed header: no name, mtime 0, OS = Unix, so the bytes never depend on the machine or time.
        out.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 3])?;
        let (job_tx, job_rx) = bounded::<Job>(threads * 2);
        let (res_tx, res_rx) = bounded::<Deflated>(threads * 2 + 2);
        let mut pool = Vec::with_capacity(threads);
        for _ in 0..threads {
            let job_rx = job_rx.clone();
            let res_tx = res_tx.clone();
            let handle = std::thread::Builder::new()
                .name("archiver-gzip".into())
                .spawn(move || {
                    for job in job_rx {
                        let len = job.data.len() as u64;
                        let mut crc = crc32fast::Hasher::new();
                        crc.update(&job.data);
                        let bytes = std::panic::catch_unwind(|| {
                            deflate_block(level, &job.data, &job.dict, job.last)
                        })
                        .unwrap_or_else(|p| Err(crate::error::panic_message(&*p)));
                        let done = Deflated {
                            seq: job.seq,
                            bytes,
                            crc,
                            len,
                        };
                        if res_tx.send(done).is_err() {
                            break;
                        }
                    }
                })?;
            pool.push(handle);
        }
        Ok(ParGzWriter {
            out: Some(out),
            block: Vec::with_capacity(BLOCK),
            dict: Vec::new(),
            next_seq: 0,
            in_flight: 0,
            max_in_flight: threads * 2 + 2,
            ready: ReorderBuffer::new(0),
            jobs: Some(job_tx),
            results: res_rx,
            pool,
            crc: crc32fast::Hasher::new(),
            len: 0,
        })
    }

    fn submit(&mut self, last: bool) -> io::Result<()> {
        while self.in_flight >= self.max_in_flight {
            self.collect_one()?;
        }
        let data = std::mem::replace(
            &mut self.block,
            Vec::with_capacity(if last { 0 } else { BLOCK }),
        );
        let dict = std::mem::take(&mut self.dict);
        self.dict = data[data.len().saturating_sub(DICT)..].to_vec();
        let job = Job {
            seq: self.next_seq,
            data,
            dict,
            last,
        };
        self.next_seq += 1;
        self.jobs
            .as_ref()
            .expect("pool alive until finish")
            .send(job)
            .map_err(|_| io::Error::other("gzip compression threads stopped"))?;
        self.in_flight += 1;
        // Write out whatever is already done without waiting.
        while let Ok(d) = self.results.try_recv() {
            self.accept(d)?;
        }
        Ok(())
    }

    fn collect_one(&mut self) -> io::Result<()> {
        let d = self
            .results
            .recv()
            .map_err(|_| io::Error::other("gzip compression threads stopped"))?;
        self.accept(d)
    }

    fn accept(&mut self, d: Deflated) -> io::Result<()> {
        self.ready.insert(d.seq, d);
        while let Some(d) = self.ready.pop() {
            self.in_flight -= 1;
            let bytes = d
                .bytes
                .map_err(|e| io::Error::other(format!("deflate failed: {e}")))?;
            self.out_mut().write_all(&bytes)?;
            self.crc.combine(&d.crc);
            self.len += d.len;
        }
        Ok(())
    }

    /// Compresses what is buffered, writes the trailer, stops the pool and returns the output.
    pub fn finish(mut self) -> io::Result<W> {
        self.submit(true)?;
        while self.in_flight > 0 {
            self.collect_one()?;
        }
        let crc = std::mem::take(&mut self.crc).finalize();
        let mut trailer = [0u8; 8];
        trailer[..4].copy_from_slice(&crc.to_le_bytes());
        trailer[4..].copy_from_slice(&(self.len as u32).to_le_bytes());
        let out = self.out_mut();
        out.write_all(&trailer)?;
        out.flush()?;
        self.stop_pool();
        Ok(self.out.take().expect("finish runs once"))
    }

    fn out_mut(&mut self) -> &mut W {
        self.out.as_mut().expect("output present until finish")
    }

    fn stop_pool(&mut self) {
        self.jobs = None;
        // Drain so that no pool thread stays blocked on a full result channel.
        while self.results.try_recv().is_ok() {}
        for h in self.pool.drain(..) {
            while !h.is_finished() {
                while self.results.try_recv().is_ok() {}
                std::thread::yield_now();
            }
            let _ = h.join();
        }
    }
}

impl<W: Write> Write for ParGzWriter<W> {
    fn write(&mut self, mut data: &[u8]) -> io::Result<usize> {
        let total = data.len();
        while !data.is_empty() {
            let take = (BLOCK - self.block.len()).min(data.len());
            self.block.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.block.len() == BLOCK {
                self.submit(false)?;
            }
        }
        Ok(total)
    }

    /// Writes out finished blocks only: flushing a partial block would make block boundaries, and so
    /// the output bytes, depend on when flush was called.
    fn flush(&mut self) -> io::Result<()> {
        while let Ok(d) = self.results.try_recv() {
            self.accept(d)?;
        }
        self.out_mut().flush()
    }
}

impl<W: Write> Drop for ParGzWriter<W> {
    fn drop(&mut self) {
        self.stop_pool();
    }
}

/// Deflates one block as raw deflate: sync-flushed (byte-aligned, not final) unless it is the last.
fn deflate_block(level: u32, data: &[u8], dict: &[u8], last: bool) -> Result<Vec<u8>, String> {
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
        // Compressible but not trivial: words from a small vocabulary driven by an LCG.
        let words: [&[u8]; 8] = [
            b"alpha ", b"beta ", b"gamma ", b"delta\n", b"x", b"0123", b"::", b"zz ",
        ];
        let mut s = 0x2545_f491_u64;
        let mut v = Vec::with_capacity(n);
        while v.len() < n {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            v.extend_from_slice(words[(s >> 61) as usize]);
        }
        v.truncate(n);
        v
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
        let data = sample(3 * BLOCK + 12345);
        let one = gz(&data, 1, 1);
        assert_eq!(one, gz(&data, 2, 7));
        assert_eq!(one, gz(&data, 8, 1000));
    }

    #[test]
    fn decodes_with_flate2_and_checks_trailer() {
        for n in [0, 1, BLOCK - 1, BLOCK, BLOCK + 1, 5 * BLOCK + 3] {
            let data = sample(n);
            let z = gz(&data, 3, 3);
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(&z[..])
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, data, "size {n}");
        }
    }

    #[test]
    fn ratio_close_to_single_stream() {
        let data = sample(8 * BLOCK);
        let par = gz(&data, 2, 1).len() as f64;
        let mut single = flate2::write::GzEncoder::new(Vec::new(), Compression::new(6));
        single.write_all(&data).unwrap();
        let single = single.finish().unwrap().len() as f64;
        assert!(par / single < 1.02, "parallel {par} vs single {single}");
    }
}
