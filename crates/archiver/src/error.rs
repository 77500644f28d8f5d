//! The library's one error type. Every variant that concerns a file or an entry carries its path, so a
//! message printed by the binary always tells the user which file is at fault.

use std::io;
use std::path::PathBuf;

/// Everything that can make an archiver operation fail.
///
/// Messages do not repeat their source: print the chain (`{:#}` in anyhow, or walk `source()`) to see
/// every cause once.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O error on a named file (a source file, an archive, a destination).
    #[error("{}", path.display())]
    Io {
        /// The file the operation was about.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// Writing the archive failed (disk full, broken pipe, ...).
    #[error("writing the archive")]
    Output(#[source] io::Error),
    /// Reading the archive failed.
    #[error("reading the archive")]
    Input(#[source] io::Error),
    /// The archive is not in a format we read, or is damaged.
    #[error("{0}")]
    BadArchive(String),
    /// An entry inside the archive is malformed or refused.
    #[error("{entry}: {reason}")]
    Entry {
        /// The entry's name as stored in the archive.
        entry: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A path given to pack does not exist or cannot be read.
    #[error("{}: {reason}", path.display())]
    Source {
        /// The path as the caller gave it.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// An invalid option (a bad glob, a level out of range, ...).
    #[error("{0}")]
    Usage(String),
    /// Two inputs map to the same path inside the archive.
    #[error("{} and {} are both stored as {archived}", first.display(), second.display())]
    Collision {
        /// The first source path.
        first: PathBuf,
        /// The second source path.
        second: PathBuf,
        /// The archive path both would take.
        archived: String,
    },
    /// Entries refused by the safety policy, or that failed verification; the rest was handled.
    #[error("{} entr{} refused: {}", .0.len(), if .0.len() == 1 { "y" } else { "ies" }, .0.first().map(|r| format!("{}: {}", r.entry, r.reason)).unwrap_or_default())]
    Refused(Vec<crate::unpack::Refused>),
    /// `require_manifest` is set and the archive carries no manifest to check its files against.
    #[error("the archive carries no manifest ({}), so its files cannot be verified, and one is required", crate::MANIFEST_PATH)]
    NoManifest,
    /// Moving the verified entries into place failed part way; `what` says what was undone.
    #[error("{}: {what}", path.display())]
    Commit {
        /// The place that could not be written.
        path: PathBuf,
        /// What happened to the entries already placed.
        what: String,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// A thread could not be started.
    #[error("cannot start a thread")]
    Thread(#[source] io::Error),
    /// The operation was cancelled through its [`Cancel`](crate::Cancel) handle.
    #[error("interrupted")]
    Cancelled,
    /// `strict` mode turned a warning into an error.
    #[error("{}: {message} (strict mode)", path.display())]
    Strict {
        /// The file the warning was about.
        path: PathBuf,
        /// The warning.
        message: String,
    },
    /// A pipeline thread panicked. This is a bug in archiver; the message names the stage and entry.
    #[error("internal error in the {stage} stage{}: {message}", entry.as_ref().map(|e| format!(" while handling {e}")).unwrap_or_default())]
    Panic {
        /// Which stage panicked.
        stage: &'static str,
        /// The entry it was working on, when known.
        entry: Option<String>,
        /// The panic payload.
        message: String,
    },
}

impl Error {
    /// True when the error means "the consumer of the output went away" (EPIPE), which callers that
    /// print listings treat as a quiet end rather than a failure.
    pub fn is_broken_pipe(&self) -> bool {
        match self {
            Error::Output(e) | Error::Io { source: e, .. } => e.kind() == io::ErrorKind::BrokenPipe,
            _ => false,
        }
    }
}

/// Turns a panic payload into a printable message.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic payload".to_string()
    }
}

/// Shorthand for this crate's results.
pub type Result<T, E = Error> = std::result::Result<T, E>;
