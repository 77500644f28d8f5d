//! Stage threads: starting, guarding and joining them, one way for pack, unpack and group.
//!
//! Our own because what a panic means is ours to decide: it becomes an [`Error::Panic`] naming the
//! stage (and the entry, when one is known), never an abort or a thread silently gone, and the
//! caller then stops the rest of its run. `std::thread::scope` does the joining; this module does
//! the naming and the catching, so no stage writes its own `catch_unwind`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::thread::{Scope, ScopedJoinHandle};

use crate::error::{panic_message, Error, Result};

/// Starts a thread named `archiver-{stage}` in `s`.
pub(crate) fn spawn<'scope, 'env, T: Send + 'scope>(
    s: &'scope Scope<'scope, 'env>,
    stage: &'static str,
    f: impl FnOnce() -> T + Send + 'scope,
) -> Result<ScopedJoinHandle<'scope, T>> {
    std::thread::Builder::new()
        .name(format!("archiver-{stage}"))
        .spawn_scoped(s, f)
        .map_err(Error::Thread)
}

/// Joins a thread from [`spawn`]; a panic that escaped it is the stage's [`Error::Panic`].
pub(crate) fn join<T>(stage: &'static str, h: ScopedJoinHandle<'_, T>) -> Result<T> {
    h.join().map_err(|p| Error::Panic {
        stage,
        entry: None,
        message: panic_message(&*p),
    })
}

/// Runs `f`; a panic in it is the stage's [`Error::Panic`], naming the entry `entry` gives.
pub(crate) fn catch<T>(
    stage: &'static str,
    entry: impl FnOnce() -> Option<String>,
    f: impl FnOnce() -> T,
) -> Result<T> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|p| Error::Panic {
        stage,
        entry: entry(),
        message: panic_message(&*p),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_is_the_stages_error_naming_the_entry() {
        let e = catch("read", || Some("a/b".into()), || panic!("boom")).unwrap_err();
        let Error::Panic {
            stage,
            entry,
            message,
        } = e
        else {
            panic!("{e:?}")
        };
        assert_eq!((stage, entry.as_deref()), ("read", Some("a/b")));
        assert!(message.contains("boom"), "{message}");
        assert_eq!(catch("read", || None, || 7).unwrap(), 7);
    }

    #[test]
    fn a_thread_that_panics_joins_as_an_error() {
        std::thread::scope(|s| {
            let h = spawn(s, "test", || panic!("in thread")).unwrap();
            assert!(matches!(
                join("test", h),
                Err(Error::Panic { stage: "test", .. })
            ));
            let h = spawn(s, "test", || 5).unwrap();
            assert_eq!(join("test", h).unwrap(), 5);
        });
    }
}
