//! The library's one error type. Every variant that concerns a file or an entry carries its path, so a
//! message printed by the binary always tells the user which file is at fault. [`Refused`] and
//! [`Rule`] (the payload of [`Error::Refused`]) live here too, so this module depends on nothing else
//! in the crate.

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
    #[error("{}", shown(path))]
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
    #[error("{}: {reason}", shown(path))]
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
    #[error(
        "{}: would be stored as {archived}, which {} also stores; give only one of them",
        second.display(),
        first.display()
    )]
    Collision {
        /// The first source path.
        first: PathBuf,
        /// The second source path.
        second: PathBuf,
        /// The archive path both would take.
        archived: String,
    },
    /// Entries refused by the safety policy, or that failed verification; the rest was handled.
    #[error("{} entr{} refused: {}", Refused::count(.0), if Refused::count(.0) == 1 { "y" } else { "ies" }, .0.first().map(|r| format!("{}: {}", r.entry, r.reason)).unwrap_or_default())]
    Refused(Vec<Refused>),
    /// `require_manifest` is set and the archive carries no manifest to check its files against.
    // The manifest's path is spelled out (it is `crate::MANIFEST_PATH`; a test keeps them equal) so
    // that this module depends on nothing else in the crate.
    #[error("the archive carries no manifest (.archiver/MANIFEST.b3), so its files cannot be verified, and one is required")]
    NoManifest,
    /// Moving the verified entries into place failed part way; `what` says what was undone.
    #[error("{}: {what}", shown(path))]
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
    #[error("{}: {message} (strict mode)", shown(path))]
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

/// One refused entry: its name, the kind of rule it broke and the rule in words.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Refused {
    /// The entry name as stored.
    pub entry: String,
    /// Which kind of rule: lets a caller tell an unsafe archive from a corrupt one or from a
    /// destination that needs attention, without reading `reason`.
    pub rule: Rule,
    /// The rule, and what to do, in words.
    pub reason: String,
    /// 0 for an entry; for the line that ends a long list ("(N more entries)"), the N entries it
    /// stands for. [`Refused::count`] adds them up.
    pub more: u64,
}

impl Refused {
    /// How many entries a list of refusals names, counting those a summary line stands for.
    pub fn count(list: &[Refused]) -> u64 {
        list.iter()
            .map(|r| if r.more > 0 { r.more } else { 1 })
            .sum()
    }
}

/// The kinds of rule an entry can break (docs/SECURITY.md states each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[non_exhaustive]
pub enum Rule {
    /// An unsafe or unusable name: absolute, `..`, NUL, empty, a drive letter, our staging name.
    Name,
    /// A symlink (or a hard link to one) that is absolute or leads outside the destination.
    LinkOutside,
    /// An entry that would be written through a symlink or below a file (of the archive or of
    /// the destination).
    ThroughLink,
    /// A hard link whose source is not an earlier file of the archive.
    HardLink,
    /// What the destination holds is in the way (a directory where a file goes, or the reverse).
    Conflict,
    /// The destination cannot take the entry (permissions, another filesystem).
    Destination,
    /// The entry's content does not match the manifest, or the manifest and the archive disagree
    /// on which files there are: the archive is corrupt or was changed.
    Manifest,
    /// Something this tool does not extract (encrypted, an unknown compression method, a
    /// multi-volume continuation, an entry that would be the destination itself).
    Unsupported,
}

impl Rule {
    /// True for the rules that protect the system from a hostile archive (names, links).
    pub fn is_unsafe_entry(self) -> bool {
        matches!(
            self,
            Rule::Name | Rule::LinkOutside | Rule::ThroughLink | Rule::HardLink
        )
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

/// A path on disk for a message: as it displays, cut after 4096 bytes (PATH_MAX: a staging path
/// 6,000 directories deep must not become a 12 KB line). Written here because this module
/// depends on nothing else in the crate (list.rs cuts entry names the same way).
fn shown(path: &std::path::Path) -> String {
    const LIMIT: usize = 4096;
    let s = path.display().to_string();
    if s.len() <= LIMIT {
        return s;
    }
    let mut cut = LIMIT;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}... ({} bytes in all)", &s[..cut], path.as_os_str().len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_manifest_names_the_manifest_path() {
        assert!(Error::NoManifest
            .to_string()
            .contains(&format!("({})", crate::MANIFEST_PATH)));
    }
}
