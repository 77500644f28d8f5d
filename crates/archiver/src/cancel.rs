//! [`Cancel`]: stopping a run from another thread or a signal handler.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// A handle that cancels a running operation from another thread (or a signal handler).
///
/// Cloning gives another handle to the same flag. A cancelled run returns [`Error::Cancelled`](crate::Error::Cancelled)
/// promptly: every stage checks the flag between items.
///
/// Some steps must run to their end once begun, cancelled or not, or the destination is left
/// inconsistent: an unpack moving its entries into place (or, cancelled half way, moving the
/// originals back), and removing its staging directory. While one runs,
/// [`is_finishing`](Self::is_finishing) is true: a program that ends the process on a timer after
/// a signal (as the `archiver` CLI does, for a write blocked on a pipe nobody reads) waits for it
/// to become false first.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    cancelled: AtomicBool,
    /// Steps under way that must finish (see [`Cancel::is_finishing`]).
    finishing: AtomicUsize,
}

impl Cancel {
    /// A fresh, uncancelled handle.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes the handle usable for another run after a cancellation. (A run started with a
    /// cancelled handle stops at once with [`Error::Cancelled`](crate::Error::Cancelled).)
    pub fn reset(&self) {
        self.0.cancelled.store(false, Ordering::SeqCst);
    }

    /// Asks the operation to stop.
    pub fn cancel(&self) {
        self.0.cancelled.store(true, Ordering::SeqCst);
    }

    /// True once [`cancel`](Self::cancel) was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.cancelled.load(Ordering::Relaxed)
    }

    /// True while a run is in a step that must finish to leave the destination consistent
    /// (moving entries into place or back, removing its staging directory). Ending the process
    /// now would leave DEST half changed or a staging directory behind.
    pub fn is_finishing(&self) -> bool {
        self.0.finishing.load(Ordering::SeqCst) > 0
    }

    /// Marks such a step until the returned guard is dropped.
    pub(crate) fn finishing(&self) -> Finishing {
        self.0.finishing.fetch_add(1, Ordering::SeqCst);
        Finishing(Arc::clone(&self.0))
    }
}

/// A step under way that must finish ([`Cancel::is_finishing`]); it ends when this is dropped.
#[derive(Debug)]
pub(crate) struct Finishing(Arc<Inner>);

impl Drop for Finishing {
    fn drop(&mut self) {
        self.0.finishing.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finishing_lasts_while_a_guard_lives() {
        let c = Cancel::new();
        assert!(!c.is_finishing());
        let a = c.finishing();
        let b = c.clone().finishing();
        drop(a);
        assert!(c.is_finishing());
        drop(b);
        assert!(!c.is_finishing());
    }
}
