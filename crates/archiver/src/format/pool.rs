//! An ordered block pool: jobs go in numbered, run on a few threads, and their results come out in
//! the order the jobs went in. The compressors (parallel gzip blocks, zstd frames) and the parallel
//! zstd decoder are built on it.
//!
//! Ours because these codecs live behind `Read`/`Write` on a caller's thread that need not be
//! scoped (a `Codec` is a plain writer), so the threads are owned here, and three things matter
//! that no pool crate gives together: results strictly in submission order (the output bytes must
//! not depend on timing), a hard bound on what is in flight (`max_in_flight` jobs and results, so
//! memory does not grow with the input), and a panic in a job that becomes that job's error in its
//! place in the order, never a lost thread or an abort.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender};

use crate::reorder::ReorderBuffer;

/// Where a pool's threads spent their time, summed over them (for `--stats`): running jobs,
/// waiting for one, waiting to hand a result back. Each thread adds once per job, so counting
/// costs two clock reads and three relaxed additions per job of a megabyte or more.
pub(crate) struct PoolTimes {
    threads: usize,
    jobs: AtomicU64,
    busy_ns: AtomicU64,
    starved_ns: AtomicU64,
    blocked_ns: AtomicU64,
    /// The pool's owner waiting for a result it needs (the writer held up by compression).
    owner_waited_ns: AtomicU64,
}

/// A reading of [`PoolTimes`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PoolClock {
    pub threads: usize,
    pub jobs: u64,
    pub busy: Duration,
    pub starved: Duration,
    pub blocked: Duration,
    pub owner_waited: Duration,
}

impl PoolTimes {
    pub(crate) fn read(&self) -> PoolClock {
        let d = |a: &AtomicU64| Duration::from_nanos(a.load(Ordering::Relaxed));
        PoolClock {
            threads: self.threads,
            jobs: self.jobs.load(Ordering::Relaxed),
            busy: d(&self.busy_ns),
            starved: d(&self.starved_ns),
            blocked: d(&self.blocked_ns),
            owner_waited: d(&self.owner_waited_ns),
        }
    }

    fn add(a: &AtomicU64, d: Duration) {
        a.fetch_add(
            d.as_nanos().min(u128::from(u64::MAX)) as u64,
            Ordering::Relaxed,
        );
    }
}

/// Runs `work` on `threads` threads, giving results back in submission order.
pub(crate) struct OrderedPool<J: Send + 'static, R: Send + 'static> {
    jobs: Option<Sender<(u64, J)>>,
    /// The job queue's other end, to drop queued jobs unrun when the pool is dropped.
    queued: Receiver<(u64, J)>,
    results: Receiver<(u64, Result<R, String>)>,
    ready: ReorderBuffer<Result<R, String>>,
    next_seq: u64,
    in_flight: usize,
    max_in_flight: usize,
    threads: Vec<JoinHandle<()>>,
    times: Arc<PoolTimes>,
}

impl<J: Send + 'static, R: Send + 'static> OrderedPool<J, R> {
    /// Starts `threads` threads named `archiver-{name}`; at most `depth` jobs are submitted
    /// and not yet taken back with [`next`](Self::next).
    pub(crate) fn new<F>(name: &str, threads: usize, depth: usize, work: F) -> std::io::Result<Self>
    where
        F: Fn(J) -> R + Send + Sync + 'static,
    {
        let threads = threads.max(1);
        let max_in_flight = depth.max(1);
        let (job_tx, job_rx) = bounded::<(u64, J)>(max_in_flight);
        let (res_tx, res_rx) = bounded(max_in_flight);
        let work = Arc::new(work);
        let times = Arc::new(PoolTimes {
            threads,
            jobs: AtomicU64::new(0),
            busy_ns: AtomicU64::new(0),
            starved_ns: AtomicU64::new(0),
            blocked_ns: AtomicU64::new(0),
            owner_waited_ns: AtomicU64::new(0),
        });
        let mut handles = Vec::with_capacity(threads);
        for _ in 0..threads {
            let (job_rx, res_tx, work) = (job_rx.clone(), res_tx.clone(), work.clone());
            let times = Arc::clone(&times);
            let spawned = std::thread::Builder::new()
                .name(format!("archiver-{name}"))
                .spawn(move || {
                    let mut waited = Instant::now();
                    for (seq, job) in &job_rx {
                        let started = Instant::now();
                        let out =
                            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(job)))
                                .map_err(|p| crate::error::panic_message(&*p));
                        let done = Instant::now();
                        let sent = res_tx.send((seq, out));
                        let after = Instant::now();
                        PoolTimes::add(&times.starved_ns, started - waited);
                        PoolTimes::add(&times.busy_ns, done - started);
                        PoolTimes::add(&times.blocked_ns, after - done);
                        times.jobs.fetch_add(1, Ordering::Relaxed);
                        waited = after;
                        if sent.is_err() {
                            return;
                        }
                    }
                    // The wait for a job that never came (the input ended).
                    PoolTimes::add(&times.starved_ns, waited.elapsed());
                });
            match spawned {
                Ok(h) => handles.push(h),
                Err(e) => {
                    // Stop the threads already started before reporting.
                    drop(job_tx);
                    for h in handles {
                        let _ = h.join();
                    }
                    return Err(e);
                }
            }
        }
        Ok(OrderedPool {
            jobs: Some(job_tx),
            queued: job_rx,
            results: res_rx,
            ready: ReorderBuffer::new(0),
            next_seq: 0,
            in_flight: 0,
            max_in_flight,
            threads: handles,
            times,
        })
    }

    /// The threads' time so far, readable after the pool is gone.
    pub(crate) fn times(&self) -> Arc<PoolTimes> {
        Arc::clone(&self.times)
    }

    /// True when a job may be submitted without first taking a result back.
    pub(crate) fn has_room(&self) -> bool {
        self.in_flight < self.max_in_flight
    }

    /// Jobs submitted whose results have not been taken back.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Submits a job. The caller keeps the bound: call only when [`has_room`](Self::has_room).
    pub(crate) fn submit(&mut self, job: J) -> std::io::Result<()> {
        debug_assert!(self.has_room(), "submit past the in-flight bound");
        let seq = self.next_seq;
        self.next_seq += 1;
        self.jobs
            .as_ref()
            .expect("jobs open until drop")
            .send((seq, job))
            .map_err(|_| std::io::Error::other("compression threads stopped"))?;
        self.in_flight += 1;
        Ok(())
    }

    /// The next result in submission order: waits for it when `wait`, else only if it is already
    /// done. `None` when nothing is in flight (or, without `wait`, when it is not done yet). A job
    /// that panicked gives `Err` with the panic's message.
    pub(crate) fn next(&mut self, wait: bool) -> Option<Result<R, String>> {
        loop {
            if let Some(r) = self.ready.pop() {
                self.in_flight -= 1;
                return Some(r);
            }
            if self.in_flight == 0 {
                return None;
            }
            let got = if wait {
                let started = Instant::now();
                let got = self.results.recv().ok();
                PoolTimes::add(&self.times.owner_waited_ns, started.elapsed());
                got
            } else {
                self.results.try_recv().ok()
            };
            match got {
                Some((seq, r)) => self.ready.insert(seq, r),
                // All threads gone with work in flight: only a failed spawn or a bug leads here.
                None if wait => {
                    self.in_flight = 0;
                    self.ready = ReorderBuffer::new(self.next_seq);
                    return Some(Err("compression threads stopped".into()));
                }
                None => return None,
            }
        }
    }
}

impl<J: Send + 'static, R: Send + 'static> Drop for OrderedPool<J, R> {
    fn drop(&mut self) {
        // Jobs not started are dropped unrun; each thread finishes the one it has, and the
        // result channel ends once every thread has gone (draining it meanwhile, so none blocks).
        self.jobs = None;
        while self.queued.try_recv().is_ok() {}
        for _ in self.results.iter() {}
        for h in self.threads.drain(..) {
            let _ = h.join();
        }
    }
}

/// A buffer being handed out to a reader: the bytes not yet read of the last piece received.
/// Shared by the readers that pass on whole buffers (the decoders, the unpack input stage).
#[derive(Default)]
pub(crate) struct Handout {
    buf: Vec<u8>,
    pos: usize,
}

impl Handout {
    /// True when every byte has been read.
    pub(crate) fn is_empty(&self) -> bool {
        self.pos == self.buf.len()
    }

    /// Copies what fits of the unread bytes into `out`; the count.
    pub(crate) fn read_to(&mut self, out: &mut [u8]) -> usize {
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        n
    }

    /// Starts handing out `next`; returns the buffer it replaces, for reuse.
    pub(crate) fn refill(&mut self, next: Vec<u8>) -> Vec<u8> {
        self.pos = 0;
        std::mem::replace(&mut self.buf, next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_threads_time_is_accounted() {
        let mut pool = OrderedPool::new("t", 2, 3, |ms: u64| {
            std::thread::sleep(Duration::from_millis(ms));
            ms
        })
        .unwrap();
        let times = pool.times();
        for _ in 0..3 {
            pool.submit(20).unwrap();
        }
        for _ in 0..3 {
            assert_eq!(pool.next(true).unwrap().unwrap(), 20);
        }
        drop(pool);
        let c = times.read();
        assert_eq!((c.threads, c.jobs), (2, 3));
        // Sleeps last at least as long as asked: a lower bound only, never a timing race. (How
        // long the owner waited depends on when this thread runs: not asserted.)
        assert!(c.busy >= Duration::from_millis(60), "{c:?}");
    }

    #[test]
    fn results_in_submission_order_whatever_the_timing() {
        let mut pool = OrderedPool::new("test", 4, 10, |n: u64| {
            std::thread::sleep(std::time::Duration::from_micros((n * 7919) % 500));
            n * 2
        })
        .unwrap();
        let mut out = Vec::new();
        for n in 0..200 {
            while !pool.has_room() {
                out.push(pool.next(true).unwrap().unwrap());
            }
            pool.submit(n).unwrap();
        }
        while let Some(r) = pool.next(true) {
            out.push(r.unwrap());
        }
        assert_eq!(out, (0..200).map(|n| n * 2).collect::<Vec<_>>());
    }

    #[test]
    fn a_panicking_job_is_an_error_in_its_place() {
        let mut pool = OrderedPool::new("test", 2, 6, |n: u32| {
            assert!(n != 1, "job one fails");
            n
        })
        .unwrap();
        for n in 0..3 {
            pool.submit(n).unwrap();
        }
        assert_eq!(pool.next(true), Some(Ok(0)));
        assert!(pool
            .next(true)
            .unwrap()
            .unwrap_err()
            .contains("job one fails"));
        assert_eq!(pool.next(true), Some(Ok(2)));
        assert_eq!(pool.next(true), None);
    }

    #[test]
    fn dropping_with_work_in_flight_returns() {
        let mut pool = OrderedPool::new("test", 2, 6, |n: u32| n).unwrap();
        for n in 0..6 {
            pool.submit(n).unwrap();
        }
        drop(pool);
    }
}
