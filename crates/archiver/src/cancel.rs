//! [`Cancel`]: stopping a run from another thread or a signal handler.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// A handle that cancels a running operation from another thread (or a signal handler).
///
/// Cloning gives another handle to the same flag. A cancelled run returns [`Error::Cancelled`](crate::Error::Cancelled)
/// promptly: every stage checks the flag between items.
///
/// Some steps must run to their end once begun, cancelled or not, or the destination is left
/// inconsistent: an unpack moving its entries into place (or, cancelled half way, moving the
/// originals back), and removing its staging directory. While one runs,
/// [`is_finishing`](Self::is_finishing) is true. A program that must end the process without
/// waiting for the run (the `archiver` CLI does, 2 s after a signal, for a write blocked on a
/// pipe nobody reads) calls [`abandon`](Self::abandon) until it returns true, then exits.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    cancelled: AtomicBool,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Steps under way that must finish.
    finishing: usize,
    /// Set by [`Cancel::abandon`]: the process is about to end; no such step may begin.
    abandoned: bool,
    /// Staging directories holding only what their runs created (nothing committed yet):
    /// [`Cancel::abandon`] removes them.
    disposable: Vec<PathBuf>,
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
        self.state().abandoned = false;
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
        self.state().finishing > 0
    }

    /// Prepares for ending the process now, if that is safe: false while a step that must finish
    /// runs (try again later). Otherwise cancels, removes the staging directories of runs that
    /// have not begun to commit (they hold only what those runs created), makes sure no run
    /// begins such a step from here on, and returns true: the caller then exits.
    pub fn abandon(&self) -> bool {
        self.cancel();
        // The removal happens under the lock: a second caller (the CLI's watchdog and a second
        // signal race to it) must not return, and end the process, while the first is still
        // removing a large staging tree.
        let mut state = self.state();
        if state.finishing > 0 {
            return false;
        }
        state.abandoned = true;
        for dir in std::mem::take(&mut state.disposable) {
            remove_soon(&dir);
        }
        true
    }

    /// Marks a step that must finish until the returned guard is dropped; `None` once the
    /// handle was abandoned (the process is ending: do not begin it).
    pub(crate) fn finishing(&self) -> Option<Finishing> {
        let mut state = self.state();
        if state.abandoned {
            return None;
        }
        state.finishing += 1;
        Some(Finishing(Arc::clone(&self.0)))
    }

    /// Registers a staging directory that [`abandon`](Self::abandon) may remove.
    pub(crate) fn disposable(&self, dir: &Path) {
        self.state().disposable.push(dir.to_path_buf());
    }

    /// Takes a staging directory off that list (its run begins to commit, or removes it).
    pub(crate) fn not_disposable(&self, dir: &Path) {
        self.state().disposable.retain(|d| d != dir);
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.0.state()
    }
}

impl Inner {
    /// The state; a panic elsewhere while holding it leaves counts that are still right.
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Removes a staging directory its run may still be adding to for a moment (the run was only
/// just cancelled: two signals back to back): a removal that meets a new entry fails with
/// "directory not empty", so it is tried again, for up to a second, until the directory is gone.
fn remove_soon(dir: &Path) {
    for _ in 0..50 {
        match crate::remove::remove_tree(dir) {
            Ok(()) => return,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
        }
    }
}

/// A step under way that must finish ([`Cancel::is_finishing`]); it ends when this is dropped.
#[derive(Debug)]
pub(crate) struct Finishing(Arc<Inner>);

impl Drop for Finishing {
    fn drop(&mut self) {
        self.0.state().finishing -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finishing_lasts_while_a_guard_lives_and_blocks_abandon() {
        let c = Cancel::new();
        assert!(!c.is_finishing());
        let a = c.finishing().unwrap();
        let b = c.clone().finishing().unwrap();
        drop(a);
        assert!(c.is_finishing());
        assert!(!c.abandon(), "abandoned during a step that must finish");
        drop(b);
        assert!(!c.is_finishing());
        assert!(c.abandon());
        assert!(c.is_cancelled());
        assert!(c.finishing().is_none(), "a step began after abandon");
    }

    /// Two callers at once (a watchdog and a second signal): whichever returns, the staging
    /// directory is already gone, however long its removal takes.
    #[test]
    fn a_second_abandon_waits_for_the_first_removal() {
        for _ in 0..5 {
            let t = tempfile::tempdir().unwrap();
            let dir = t.path().join("staging");
            for d in 0..20 {
                std::fs::create_dir_all(dir.join(format!("d{d}"))).unwrap();
                for f in 0..400 {
                    std::fs::write(dir.join(format!("d{d}/f{f}")), b"x").unwrap();
                }
            }
            let c = Cancel::new();
            c.disposable(&dir);
            std::thread::scope(|s| {
                let first = s.spawn(|| c.abandon());
                while dir.join("d0/f0").exists() && !first.is_finished() {
                    std::thread::yield_now();
                }
                assert!(c.abandon());
                assert!(
                    !dir.exists(),
                    "abandon returned while the directory was still there"
                );
                assert!(first.join().unwrap());
            });
        }
    }

    #[test]
    fn abandon_removes_only_disposable_directories() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        std::fs::create_dir_all(a.join("x")).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        let c = Cancel::new();
        c.disposable(&a);
        c.disposable(&b);
        c.not_disposable(&b);
        assert!(c.abandon());
        assert!(!a.exists() && b.exists());
    }
}
