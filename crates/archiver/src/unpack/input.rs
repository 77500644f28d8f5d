//! The input stage of unpack: reading and decompressing the archive stream on the caller's thread,
//! so the reader (the tar parser and staging, on its own thread) does not pay for inflate or zstd.
//!
//! Our own because no crate pipelines a `Read` across threads with the guarantees we need:
//! - the input `R` stays on the caller's thread (it need not be `Send` or `'static`, so
//!   `Unpacker::unpack(&mut file)` and a locked stdin keep working);
//! - bounded: at most [`DEPTH`] chunks of [`CHUNK`] bytes are decompressed ahead of the reader;
//! - it cannot hang the reader: when the reader stops (an error, a refusal), its end of the
//!   channel is dropped and the pump stops at its next hand-over; when the pump fails (a damaged
//!   gzip stream), the reader gets that error at the point of the stream where it happened, so
//!   the message names the entry as before;
//! - buffers go back to the pump once read, so steady state allocates nothing.
//!
//! A plain tar skips the pump (nothing to decompress): the reader reads it through
//! [`TimedInput`], which only measures the time spent reading, for `--stats`.

use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender};

use crate::format::pool::Handout;
use crate::pack::stats::StageClock;
use crate::Cancel;

/// Bytes per hand-over.
pub(super) const CHUNK: usize = 256 << 10;
/// Chunks in flight between the pump and the reader.
const DEPTH: usize = 4;

/// The reader's end: a `Read` over the chunks the pump sends.
pub(super) struct ChunkReader {
    rx: Receiver<io::Result<Vec<u8>>>,
    recycle: Sender<Vec<u8>>,
    current: Handout,
    /// The pump's error, once seen: every later read fails too (never a false end of stream).
    failed: Option<(io::ErrorKind, String)>,
    /// Nanoseconds the reader waited for the pump (its "starved" time).
    starved: Arc<AtomicU64>,
}

/// The pump's end.
pub(super) struct Pump {
    tx: Sender<io::Result<Vec<u8>>>,
    recycle: Receiver<Vec<u8>>,
}

/// A connected pump and reader, and the reader's starved time (read it when the reader is done).
pub(super) fn channel() -> (Pump, ChunkReader, Starved) {
    let starved = Starved(Arc::new(AtomicU64::new(0)));
    let (tx, rx) = bounded(DEPTH);
    // One more than in flight: the reader's current buffer, the ones queued, the pump's own.
    let (recycle_tx, recycle_rx) = bounded(DEPTH + 2);
    (
        Pump {
            tx,
            recycle: recycle_rx,
        },
        ChunkReader {
            rx,
            recycle: recycle_tx,
            current: Handout::default(),
            failed: None,
            starved: starved.0.clone(),
        },
        starved,
    )
}

/// How long the reader waited for input.
pub(super) struct Starved(Arc<AtomicU64>);

impl Starved {
    pub(super) fn get(&self) -> Duration {
        Duration::from_nanos(self.0.load(Ordering::Relaxed))
    }
}

impl Pump {
    /// Reads (and decompresses) `input` to its end, handing it over in chunks. Returns when the
    /// input ends or fails (the reader gets the error) or the reader has gone; the clock says how
    /// long reading took and how long the pump waited for the reader.
    pub(super) fn run(self, input: &mut dyn Read, cancel: &Cancel) -> StageClock {
        let mut clock = StageClock::default();
        let started = Instant::now();
        loop {
            if cancel.is_cancelled() {
                let _ = self.tx.send(Err(io::Error::other("cancelled")));
                break;
            }
            let mut buf = self
                .recycle
                .try_recv()
                .unwrap_or_else(|_| Vec::with_capacity(CHUNK));
            buf.resize(CHUNK, 0);
            // One read, whatever it gives: a slow producer's bytes are passed on at once, and a
            // reader that has gone is noticed at the next hand-over, not after a whole chunk.
            let item = match read_some(input, &mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    buf.truncate(n);
                    Ok(buf)
                }
                Err(e) => Err(e),
            };
            let failed = item.is_err();
            let waited = Instant::now();
            let sent = self.tx.send(item);
            clock.blocked += waited.elapsed();
            clock.items += 1;
            if sent.is_err() || failed {
                break;
            }
        }
        clock.busy = started.elapsed().saturating_sub(clock.blocked);
        clock
    }
}

/// A plain tar's input, read by the reader itself: counts the time spent in `read` (the input
/// stage's busy time, and the reader's starved time) and the reads. Like the pump, it checks the
/// cancel flag before every read (data the reader skips, a refused entry or one `-k` keeps, is
/// read too, and may be large) and retries a read interrupted by a signal.
pub(super) struct TimedInput<'i> {
    inner: Box<dyn Read + 'i>,
    clock: InputClock,
    cancel: Cancel,
}

/// What [`TimedInput`] measured.
#[derive(Clone, Default)]
pub(super) struct InputClock {
    nanos: Arc<AtomicU64>,
    reads: Arc<AtomicU64>,
}

impl InputClock {
    /// The time in `read`, as the reader's starved time.
    pub(super) fn starved(&self) -> Starved {
        Starved(Arc::clone(&self.nanos))
    }

    /// The input stage's clock over the reader's `elapsed` time: busy reading, blocked the rest
    /// (while the reader does other work, as a pump waits for a reader).
    pub(super) fn get(&self, elapsed: Duration) -> StageClock {
        let busy = Duration::from_nanos(self.nanos.load(Ordering::Relaxed));
        StageClock {
            busy,
            blocked: elapsed.saturating_sub(busy),
            items: self.reads.load(Ordering::Relaxed),
            ..StageClock::default()
        }
    }
}

impl<'i> TimedInput<'i> {
    pub(super) fn new(inner: Box<dyn Read + 'i>, cancel: &Cancel) -> (Self, InputClock) {
        let clock = InputClock::default();
        (
            TimedInput {
                inner,
                clock: clock.clone(),
                cancel: cancel.clone(),
            },
            clock,
        )
    }
}

impl Read for TimedInput<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.cancel.is_cancelled() {
            return Err(io::Error::other("cancelled"));
        }
        let started = Instant::now();
        let r = read_some(&mut *self.inner, buf);
        let took = started.elapsed().as_nanos() as u64;
        self.clock.nanos.fetch_add(took, Ordering::Relaxed);
        self.clock.reads.fetch_add(1, Ordering::Relaxed);
        r
    }
}

/// `read`, retried when interrupted by a signal.
pub(super) fn read_some(input: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match input.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

impl Read for ChunkReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        while self.current.is_empty() {
            if let Some((kind, msg)) = &self.failed {
                return Err(io::Error::new(*kind, msg.clone()));
            }
            let waiting = Instant::now();
            let next = self.rx.recv();
            let waited = waiting.elapsed().as_nanos() as u64;
            self.starved.fetch_add(waited, Ordering::Relaxed);
            match next {
                Ok(Ok(next)) => {
                    let done = self.current.refill(next);
                    if done.capacity() > 0 {
                        let _ = self.recycle.try_send(done);
                    }
                }
                Ok(Err(e)) => {
                    self.failed = Some((e.kind(), e.to_string()));
                    return Err(e);
                }
                Err(_) => return Ok(0), // the pump reached the end of the input
            }
        }
        Ok(self.current.read_to(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_every_byte_in_order() {
        let data: Vec<u8> = (0..3 * CHUNK + 17).map(|i| (i * 7 % 251) as u8).collect();
        let (pump, mut reader, _) = channel();
        let out = std::thread::scope(|s| {
            let h = s.spawn(move || {
                let mut out = Vec::new();
                reader.read_to_end(&mut out).unwrap();
                out
            });
            pump.run(&mut &data[..], &Cancel::new());
            h.join().unwrap()
        });
        assert_eq!(out, data);
    }

    #[test]
    fn an_input_error_reaches_the_reader_and_stays() {
        struct Failing(usize);
        impl Read for Failing {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0 == 0 {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "bad crc"));
                }
                let n = buf.len().min(self.0);
                buf[..n].fill(1);
                self.0 -= n;
                Ok(n)
            }
        }
        let (pump, mut reader, _) = channel();
        std::thread::scope(|s| {
            let h = s.spawn(move || {
                let mut out = Vec::new();
                let e = reader.read_to_end(&mut out).unwrap_err();
                assert_eq!(e.kind(), io::ErrorKind::InvalidData);
                assert_eq!(out.len(), 1000);
                // Never a clean end after an error.
                assert!(reader.read(&mut [0u8; 8]).is_err());
            });
            pump.run(&mut Failing(1000), &Cancel::new());
            h.join().unwrap();
        });
    }

    #[test]
    fn the_direct_input_stops_when_cancelled_and_retries_interruptions() {
        struct Flaky(bool);
        impl Read for Flaky {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                self.0 = !self.0;
                if self.0 {
                    return Err(io::Error::from(io::ErrorKind::Interrupted));
                }
                buf.fill(7);
                Ok(buf.len())
            }
        }
        let cancel = Cancel::new();
        let (mut input, clock) = TimedInput::new(Box::new(Flaky(false)), &cancel);
        let mut buf = [0u8; 64];
        assert_eq!(input.read(&mut buf).unwrap(), 64);
        assert_eq!(clock.get(Duration::from_secs(1)).items, 1);
        cancel.cancel();
        // An endless input: a reader skipping data in it must still notice the cancel.
        assert!(input.read(&mut buf).is_err());
    }

    #[test]
    fn a_reader_that_stops_stops_the_pump() {
        let (pump, reader, _) = channel();
        drop(reader);
        // An endless input: the pump must return as soon as the reader is gone.
        let clock = pump.run(&mut io::repeat(0), &Cancel::new());
        assert!(clock.items <= 1);
    }
}
