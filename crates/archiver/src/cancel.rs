//! [`Cancel`]: stopping a run from another thread or a signal handler.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A handle that cancels a running operation from another thread (or a signal handler).
///
/// Cloning gives another handle to the same flag. A cancelled run returns [`Error::Cancelled`](crate::Error::Cancelled)
/// promptly: every stage checks the flag between items.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// A fresh, uncancelled handle.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes the handle usable for another run after a cancellation. (A run started with a
    /// cancelled handle stops at once with [`Error::Cancelled`](crate::Error::Cancelled).)
    pub fn reset(&self) {
        self.0.store(false, Ordering::SeqCst);
    }

    /// Asks the operation to stop.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// True once [`cancel`](Self::cancel) was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}
