//! Removing a staging directory however deep it is.
//!
//! Ours because `std::fs::remove_dir_all` (and tempfile's drop, which uses it) holds one open
//! descriptor per level of the tree: a staging tree deeper than the descriptor limit (an entry
//! 6,000 directories deep, with `ulimit -n 4096`) could not be removed, and was left in DEST.
//! This falls back, only when that fails, to a walk that holds two descriptors at a time and
//! climbs back through `..`: the staging directory is this run's own (mode 0700, made with
//! mkdir), so nothing else renames its directories while we climb.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, OFlags};

/// Removes the directory at `path` and everything in it; a missing one is not an error.
pub(crate) fn remove_tree(path: &Path) -> io::Result<()> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(first) => remove_deep(path).map_err(|_| first),
    }
}

/// Depth-first, one directory open at a time (and a listing of it): enter the first
/// subdirectory, unlink everything else, and when a directory is empty climb to its parent
/// through `..` and remove it there. Only the names on the way down are kept.
fn remove_deep(path: &Path) -> io::Result<()> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut cur = rustix::fs::open(path, flags, Mode::empty())?;
    let mut names: Vec<OsString> = Vec::new();
    loop {
        let mut sub = None;
        for item in rustix::fs::Dir::read_from(&cur)? {
            let item = item?;
            let name = OsStr::from_bytes(item.file_name().to_bytes());
            if name == "." || name == ".." {
                continue;
            }
            let is_dir = match item.file_type() {
                FileType::Directory => true,
                FileType::Unknown => rustix::fs::statat(&cur, name, AtFlags::SYMLINK_NOFOLLOW)
                    .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory),
                _ => false,
            };
            if is_dir {
                sub = Some(name.to_os_string());
                break;
            }
            rustix::fs::unlinkat(&cur, name, AtFlags::empty())?;
        }
        if let Some(name) = sub {
            let next = rustix::fs::openat(&cur, &name, flags, Mode::empty())?;
            names.push(name);
            cur = next;
            continue;
        }
        let Some(name) = names.pop() else {
            drop(cur);
            return std::fs::remove_dir(path);
        };
        let parent = rustix::fs::openat(&cur, "..", flags, Mode::empty())?;
        drop(cur);
        rustix::fs::unlinkat(&parent, &name, AtFlags::REMOVEDIR)?;
        cur = parent;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tree 3,000 levels deep (past PATH_MAX), with files and symlinks on the way: the fallback
    /// removes it whole holding two descriptors at a time. (The end-to-end case, an unpack under
    /// a low descriptor limit, is `unpack::a_staging_tree_deeper_than_the_fd_limit_is_removed`.)
    #[test]
    fn removes_a_tree_deeper_than_the_walk_could_hold_open() {
        let t = tempfile::tempdir().unwrap();
        let top = t.path().join("staging");
        // Built with relative mkdirs from an open handle, past PATH_MAX.
        std::fs::create_dir(&top).unwrap();
        let mut cur =
            rustix::fs::open(&top, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
        for i in 0..3000 {
            rustix::fs::mkdirat(&cur, "d", Mode::from_raw_mode(0o755)).unwrap();
            if i % 100 == 0 {
                let f = rustix::fs::openat(
                    &cur,
                    "f",
                    OFlags::CREATE | OFlags::WRONLY,
                    Mode::from_raw_mode(0o644),
                )
                .unwrap();
                drop(f);
                rustix::fs::symlinkat("d", &cur, "l").unwrap();
            }
            cur = rustix::fs::openat(&cur, "d", OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())
                .unwrap();
        }
        drop(cur);
        remove_deep(&top).unwrap();
        assert!(!top.exists());
        remove_tree(&top).unwrap();
    }
}
