//! An entry's kind and metadata as the walk saw them: what pack's stages pass along and the format
//! writers build headers from. Shared by `pack/` and `format/`, so neither depends on the other.

use std::path::PathBuf;

/// What an entry is, as decided by the walk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A regular file of `size` bytes at walk time; `linked`: later entries are hard links to it.
    File { size: u64, linked: bool },
    /// A directory.
    Dir,
    /// A symbolic link, stored as a link.
    Symlink,
    /// A second name for the file stored earlier under `target`.
    HardLink { target: PathBuf },
    /// Nothing is stored; the walk has a warning to report at this position.
    Warning { message: String },
}

/// The metadata the headers need, taken from one `lstat` in the walk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Meta {
    pub mode: u32,
    pub mtime: i64,
    pub uid: u32,
    pub gid: u32,
}
