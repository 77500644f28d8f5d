//! The byte budget: how much entry data may be in flight between admission and the writer.
//!
//! The feeder reserves an entry's cost *in sequence order* before handing it to a worker, and the writer
//! releases it once the entry is written. Because reservations are granted in order, the entry the writer
//! waits for is always already admitted, so the budget can never deadlock the pipeline, and one huge or
//! slow entry can never let later results pile up without limit.

use std::sync::{Condvar, Mutex};

/// A counting semaphore over bytes that can be closed to wake every waiter (shutdown, error).
#[derive(Debug)]
pub(crate) struct Budget {
    limit: u64,
    state: Mutex<State>,
    freed: Condvar,
}

#[derive(Debug, Default)]
struct State {
    in_use: u64,
    peak: u64,
    closed: bool,
}

/// The budget was closed while waiting: the pipeline is shutting down.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Closed;

impl Budget {
    pub fn new(limit: u64) -> Self {
        Budget {
            limit: limit.max(1),
            state: Mutex::new(State::default()),
            freed: Condvar::new(),
        }
    }

    /// Waits until `cost` bytes fit, then takes them. A cost larger than the whole budget is admitted
    /// alone (when nothing else is in flight), so no entry can be refused forever. Returns the amount
    /// actually taken, to be given back with [`release`](Self::release).
    /// `stop` is polled while waiting, so cancellation is noticed even when nothing is released.
    pub fn acquire(&self, cost: u64, stop: &dyn Fn() -> bool) -> Result<u64, Closed> {
        let cost = cost.min(self.limit);
        let mut st = self.lock();
        loop {
            if st.closed || stop() {
                return Err(Closed);
            }
            if st.in_use + cost <= self.limit {
                st.in_use += cost;
                st.peak = st.peak.max(st.in_use);
                return Ok(cost);
            }
            st = self
                .freed
                .wait_timeout(st, std::time::Duration::from_millis(50))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Takes `cost` bytes if they fit now (see [`acquire`](Self::acquire)); `None` otherwise.
    pub fn try_acquire(&self, cost: u64) -> Option<u64> {
        let cost = cost.min(self.limit);
        let mut st = self.lock();
        if st.closed || st.in_use + cost > self.limit {
            return None;
        }
        st.in_use += cost;
        st.peak = st.peak.max(st.in_use);
        Some(cost)
    }

    pub fn release(&self, cost: u64) {
        let mut st = self.lock();
        st.in_use = st.in_use.saturating_sub(cost);
        drop(st);
        self.freed.notify_all();
    }

    /// Wakes every waiter with `Closed`; later acquisitions fail at once.
    pub fn close(&self) {
        self.lock().closed = true;
        self.freed.notify_all();
    }

    /// The most bytes ever reserved at once.
    pub fn peak(&self) -> u64 {
        self.lock().peak
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn blocks_until_released_and_tracks_peak() {
        let b = Arc::new(Budget::new(100));
        assert_eq!(b.acquire(60, &|| false), Ok(60));
        let b2 = Arc::clone(&b);
        let waiter = std::thread::spawn(move || b2.acquire(50, &|| false));
        std::thread::sleep(Duration::from_millis(50));
        assert!(!waiter.is_finished(), "50 more bytes must not fit in 40");
        b.release(60);
        assert_eq!(waiter.join().unwrap(), Ok(50));
        assert_eq!(b.peak(), 60);
    }

    #[test]
    fn oversized_cost_is_admitted_alone() {
        let b = Budget::new(10);
        assert_eq!(b.acquire(1_000, &|| false), Ok(10));
        b.release(10);
        assert_eq!(b.peak(), 10);
    }

    #[test]
    fn close_wakes_waiters() {
        let b = Arc::new(Budget::new(10));
        b.acquire(10, &|| false).unwrap();
        let b2 = Arc::clone(&b);
        let waiter = std::thread::spawn(move || b2.acquire(5, &|| false));
        std::thread::sleep(Duration::from_millis(20));
        b.close();
        assert_eq!(waiter.join().unwrap(), Err(Closed));
    }
}
