//! Stage 1: the walk. `ignore`'s parallel walker lists every root with `jobs` threads; the result is
//! collected and sorted, because the parallel walker yields entries in no fixed order and sequence numbers
//! must not depend on thread timing.
//!
//! Invariant: the entry list is sorted by [`Path`]'s `Ord`, which compares paths component by component
//! on raw bytes (`a/b` < `a.txt`), the order of a depth-first walk that sorts each directory's children.
//! Sequence number = index in this list. Collecting also gives the total file count and byte count up
//! front, so progress can show a real ETA. The list ("the path list") is the one part of memory that
//! grows with the tree; everything after it is bounded by the byte budget.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use ignore::{overrides::OverrideBuilder, WalkBuilder, WalkState};

use crate::error::{Error, Result};
use crate::MANIFEST_PATH;

/// What an entry is, as decided by the walk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A regular file of `size` bytes at walk time.
    File { size: u64 },
    /// A directory.
    Dir,
    /// A symbolic link, stored as a link.
    Symlink,
    /// A second name for the file at entry `target` (an earlier index).
    HardLink { target: usize },
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

/// One item of the sorted entry list.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// Index of the root (in [`Walk::roots`]) the entry was found under.
    pub root: u32,
    /// The path inside the archive, relative to its root.
    pub rel: PathBuf,
    pub kind: Kind,
    pub meta: Meta,
}

/// The result of the walk: the roots and the sorted entry list.
#[derive(Debug, Default)]
pub(crate) struct Walk {
    /// The directories (or, for a single-file root, the parent) that relative paths are relative to.
    pub roots: Vec<PathBuf>,
    pub entries: Vec<Entry>,
}

impl Walk {
    /// The path to open on disk for entry `e`.
    pub fn source_path(&self, e: &Entry) -> PathBuf {
        self.roots[e.root as usize].join(&e.rel)
    }
}

/// How to walk.
#[derive(Debug, Clone, Default)]
pub(crate) struct WalkOptions {
    pub threads: usize,
    pub excludes: Vec<String>,
    pub ignore_files: bool,
    pub follow_symlinks: bool,
    /// Leave out `.archiver/MANIFEST.b3` found in a root, because we write our own.
    pub skip_manifest: bool,
    /// Files never to pack, by (device, inode): the archive being written.
    pub skip_files: Vec<(u64, u64)>,
    /// Store second names of a file as hard links (tar); otherwise as files of their own (zip).
    pub hard_links: bool,
}

/// (device, inode) of each path that exists, for [`WalkOptions::skip_files`].
pub(crate) fn file_ids(paths: &[PathBuf]) -> Vec<(u64, u64)> {
    paths
        .iter()
        .filter_map(|p| fs::metadata(p).ok())
        .filter_map(|m| file_id(&m))
        .collect()
}

#[cfg(unix)]
fn file_id(md: &fs::Metadata) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    Some((md.dev(), md.ino()))
}

#[cfg(not(unix))]
fn file_id(_md: &fs::Metadata) -> Option<(u64, u64)> {
    None
}

/// Raw facts about one path, before sorting and hard-link detection.
struct Found {
    root: u32,
    rel: PathBuf,
    kind: Kind,
    meta: Meta,
    /// (dev, ino) for regular files with more than one link.
    link_key: Option<(u64, u64)>,
}

/// Walks every root and returns the sorted entry list. Fails only for problems with the roots
/// themselves (missing, unreadable) or bad options; problems below a root become warning entries.
pub(crate) fn walk(paths: &[PathBuf], opts: &WalkOptions, cancel: &AtomicBool) -> Result<Walk> {
    if paths.is_empty() {
        return Err(Error::Usage(
            "nothing to pack: give at least one path".into(),
        ));
    }
    let mut roots = Vec::with_capacity(paths.len());
    let mut found: Vec<Found> = Vec::new();
    for (i, path) in paths.iter().enumerate() {
        let i = u32::try_from(i).map_err(|_| Error::Usage("too many paths".into()))?;
        let lmeta = fs::symlink_metadata(path).map_err(|e| Error::Source {
            path: path.clone(),
            reason: io_reason(&e),
        })?;
        // A root that is a symlink to a directory is followed (like `find -H`): the user named it.
        let is_dir = lmeta.is_dir()
            || (lmeta.file_type().is_symlink()
                && fs::metadata(path).map(|m| m.is_dir()).unwrap_or(false));
        if is_dir {
            let root = if lmeta.file_type().is_symlink() {
                path.join(".")
            } else {
                path.clone()
            };
            walk_dir(i, &root, opts, cancel, &mut found)?;
            roots.push(root);
        } else {
            let name = path.file_name().ok_or_else(|| Error::Source {
                path: path.clone(),
                reason: "has no file name".into(),
            })?;
            let meta = if opts.follow_symlinks {
                fs::metadata(path).map_err(|e| Error::Source {
                    path: path.clone(),
                    reason: io_reason(&e),
                })?
            } else {
                lmeta
            };
            let parent = path.parent().map(Path::to_path_buf).unwrap_or_default();
            found.push(classify(i, PathBuf::from(name), &meta));
            roots.push(parent);
        }
    }
    if cancel.load(Ordering::Relaxed) {
        return Err(Error::Cancelled);
    }
    let entries = finish(found, &roots, opts.hard_links)?;
    Ok(Walk { roots, entries })
}

fn walk_dir(
    root_index: u32,
    root: &Path,
    opts: &WalkOptions,
    cancel: &AtomicBool,
    out: &mut Vec<Found>,
) -> Result<()> {
    let mut builder = WalkBuilder::new(root);
    builder
        .standard_filters(false)
        .hidden(false)
        .follow_links(opts.follow_symlinks)
        .threads(opts.threads.max(1));
    if opts.ignore_files {
        // The user's global git excludes are left out on purpose: they differ between machines, and the
        // same tree must give the same archive everywhere.
        builder
            .ignore(true)
            .git_ignore(true)
            .git_exclude(true)
            .require_git(false)
            .parents(true);
    }
    if !opts.excludes.is_empty() {
        let mut ob = OverrideBuilder::new(root);
        for glob in &opts.excludes {
            ob.add(&format!("!{glob}"))
                .map_err(|e| Error::Usage(format!("--exclude {glob:?}: {e}")))?;
        }
        builder.overrides(
            ob.build()
                .map_err(|e| Error::Usage(format!("--exclude: {e}")))?,
        );
    }

    let shared: Arc<Mutex<Vec<Found>>> = Arc::default();
    builder.build_parallel().run(|| {
        let mut local = Collector {
            items: Vec::new(),
            shared: Arc::clone(&shared),
        };
        let root = root.to_path_buf();
        let skip_manifest = opts.skip_manifest;
        let skip_files = &opts.skip_files;
        Box::new(move |result| {
            if cancel.load(Ordering::Relaxed) {
                return WalkState::Quit;
            }
            match result {
                Ok(dent) => {
                    if dent.depth() == 0 {
                        return WalkState::Continue;
                    }
                    let rel = match dent.path().strip_prefix(&root) {
                        Ok(rel) => rel.to_path_buf(),
                        Err(_) => return WalkState::Continue,
                    };
                    if skip_manifest && rel == Path::new(MANIFEST_PATH) {
                        return WalkState::Continue;
                    }
                    match dent.metadata() {
                        Ok(meta) if is_skipped(&meta, skip_files) => {}
                        Ok(meta) => local.items.push(classify(root_index, rel, &meta)),
                        Err(e) => local.items.push(warning(root_index, rel, walk_reason(&e))),
                    }
                }
                Err(err) => {
                    let rel = error_path(&err)
                        .and_then(|p| p.strip_prefix(&root).ok().map(Path::to_path_buf))
                        .unwrap_or_default();
                    local
                        .items
                        .push(warning(root_index, rel, walk_reason(&err)));
                }
            }
            WalkState::Continue
        })
    });
    let mut items = std::mem::take(&mut *shared.lock().unwrap_or_else(|p| p.into_inner()));
    out.append(&mut items);
    Ok(())
}

/// Per-thread buffer that hands its findings over once, when the walker drops the visitor.
struct Collector {
    items: Vec<Found>,
    shared: Arc<Mutex<Vec<Found>>>,
}

impl Drop for Collector {
    fn drop(&mut self) {
        let mut shared = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        shared.append(&mut self.items);
    }
}

fn is_skipped(md: &fs::Metadata, skip: &[(u64, u64)]) -> bool {
    !skip.is_empty() && md.is_file() && file_id(md).is_some_and(|id| skip.contains(&id))
}

fn warning(root: u32, rel: PathBuf, message: String) -> Found {
    Found {
        root,
        rel,
        kind: Kind::Warning { message },
        meta: Meta::default(),
        link_key: None,
    }
}

fn classify(root: u32, rel: PathBuf, md: &fs::Metadata) -> Found {
    let ft = md.file_type();
    let meta = meta_of(md);
    let mut link_key = None;
    let kind = if ft.is_file() {
        link_key = hard_link_key(md);
        Kind::File { size: md.len() }
    } else if ft.is_dir() {
        Kind::Dir
    } else if ft.is_symlink() {
        Kind::Symlink
    } else {
        Kind::Warning {
            message: format!("{}; not archived", special_kind(&ft)),
        }
    };
    Found {
        root,
        rel,
        kind,
        meta,
        link_key,
    }
}

#[cfg(unix)]
fn meta_of(md: &fs::Metadata) -> Meta {
    use std::os::unix::fs::MetadataExt;
    Meta {
        mode: md.mode() & 0o7777,
        mtime: md.mtime(),
        uid: md.uid(),
        gid: md.gid(),
    }
}

#[cfg(not(unix))]
fn meta_of(md: &fs::Metadata) -> Meta {
    let mode = if md.is_dir() {
        0o755
    } else if md.permissions().readonly() {
        0o444
    } else {
        0o644
    };
    let mtime = md
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    Meta {
        mode,
        mtime,
        uid: 0,
        gid: 0,
    }
}

#[cfg(unix)]
fn hard_link_key(md: &fs::Metadata) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    (md.nlink() > 1).then(|| (md.dev(), md.ino()))
}

#[cfg(not(unix))]
fn hard_link_key(_md: &fs::Metadata) -> Option<(u64, u64)> {
    None
}

#[cfg(unix)]
fn special_kind(ft: &fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_fifo() {
        "is a FIFO"
    } else if ft.is_socket() {
        "is a socket"
    } else if ft.is_block_device() {
        "is a block device"
    } else if ft.is_char_device() {
        "is a character device"
    } else {
        "is of an unknown file type"
    }
}

#[cfg(not(unix))]
fn special_kind(_ft: &fs::FileType) -> &'static str {
    "is of an unknown file type"
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

fn error_path(err: &ignore::Error) -> Option<&Path> {
    match err {
        ignore::Error::WithPath { path, .. } => Some(path),
        ignore::Error::WithDepth { err, .. } | ignore::Error::WithLineNumber { err, .. } => {
            error_path(err)
        }
        ignore::Error::Loop { child, .. } => Some(child),
        ignore::Error::Partial(errs) => errs.iter().find_map(error_path),
        _ => None,
    }
}

/// The message of an `ignore` error without the path it carries (the path is printed separately).
fn walk_reason(err: &ignore::Error) -> String {
    match err {
        ignore::Error::WithPath { err, .. }
        | ignore::Error::WithDepth { err, .. }
        | ignore::Error::WithLineNumber { err, .. } => walk_reason(err),
        ignore::Error::Io(e) => format!("cannot read: {}; skipped", io_reason(e)),
        ignore::Error::Loop { ancestor, .. } => {
            format!("symbolic link loop back to {}; skipped", ancestor.display())
        }
        other => format!("{other}; skipped"),
    }
}

/// Sorts, rejects collisions between roots, merges directories that several roots share, and turns
/// second names of a multiply-linked file into hard links to the first name in order.
fn finish(mut found: Vec<Found>, roots: &[PathBuf], hard_links: bool) -> Result<Vec<Entry>> {
    // Warnings sort after the entry of the same path (an unreadable directory is still stored).
    found.sort_by(|a, b| {
        compare_paths(&a.rel, &b.rel)
            .then_with(|| {
                matches!(a.kind, Kind::Warning { .. }).cmp(&matches!(b.kind, Kind::Warning { .. }))
            })
            .then_with(|| a.root.cmp(&b.root))
    });
    let mut entries: Vec<Entry> = Vec::with_capacity(found.len());
    let mut first_name: HashMap<(u64, u64), usize> = HashMap::new();
    for f in found {
        if let Some(prev) = entries.last() {
            let same = prev.rel == f.rel && !matches!(f.kind, Kind::Warning { .. });
            if same && !matches!(prev.kind, Kind::Warning { .. }) {
                if prev.kind == Kind::Dir && f.kind == Kind::Dir {
                    continue; // Two roots share a directory: store it once, with the first root's metadata.
                }
                return Err(Error::Collision {
                    first: roots[prev.root as usize].join(&prev.rel),
                    second: roots[f.root as usize].join(&f.rel),
                    archived: f.rel.display().to_string(),
                });
            }
        }
        let mut kind = f.kind;
        if let Some(key) = f.link_key.filter(|_| hard_links) {
            match first_name.get(&key) {
                Some(&target) => kind = Kind::HardLink { target },
                None => {
                    first_name.insert(key, entries.len());
                }
            }
        }
        entries.push(Entry {
            root: f.root,
            rel: f.rel,
            kind,
            meta: f.meta,
        });
    }
    Ok(entries)
}

/// The archive order: component by component on raw bytes, so `a/b` < `a.txt` (the order of a
/// depth-first walk that sorts each directory). Equal to `Path`'s `Ord` for normalised relative paths,
/// but done on bytes: the separator compares lower than every other byte (names cannot contain NUL),
/// which turns a component-wise comparison into one `memcmp`-like scan.
pub(crate) fn compare_paths(a: &Path, b: &Path) -> std::cmp::Ordering {
    let (a, b) = (
        crate::manifest::path_bytes(a),
        crate::manifest::path_bytes(b),
    );
    let common = a.iter().zip(b.iter()).take_while(|(x, y)| x == y).count();
    let key = |s: &[u8]| {
        s.get(common)
            .map(|&c| if c == b'/' { 0 } else { u16::from(c) + 1 })
    };
    key(&a).cmp(&key(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(root: &Path, rel: &str, body: &str) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, body).unwrap();
    }

    fn names(w: &Walk) -> Vec<String> {
        w.entries
            .iter()
            .map(|e| e.rel.to_string_lossy().into_owned())
            .collect()
    }

    fn run(paths: &[PathBuf], mut opts: WalkOptions) -> Walk {
        opts.hard_links = true;
        walk(paths, &opts, &AtomicBool::new(false)).unwrap()
    }

    #[test]
    fn order_is_component_wise_bytes() {
        let t = tempfile::tempdir().unwrap();
        for rel in ["a.txt", "a/b", "a/c/d", "a-b", "B", "a0", "é", "z"] {
            touch(t.path(), rel, "x");
        }
        let w = run(
            &[t.path().to_path_buf()],
            WalkOptions {
                threads: 4,
                ..Default::default()
            },
        );
        assert_eq!(
            names(&w),
            ["B", "a", "a/b", "a/c", "a/c/d", "a-b", "a.txt", "a0", "z", "é"]
        );
    }

    #[test]
    fn byte_order_equals_component_order() {
        let mut paths: Vec<PathBuf> = [
            "a.txt", "a/b", "a", "a/b/c", "a-b/x", "ab", "a/b.c", "é/z", "B", "a/a",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        let mut by_components = paths.clone();
        by_components.sort();
        paths.sort_by(|a, b| compare_paths(a, b));
        assert_eq!(paths, by_components);
        assert_eq!(
            compare_paths(Path::new("a/b"), Path::new("a.txt")),
            std::cmp::Ordering::Less
        );
    }

    #[test]
    fn same_result_for_any_thread_count() {
        let t = tempfile::tempdir().unwrap();
        for i in 0..300 {
            touch(t.path(), &format!("d{}/e{}/f{i}", i % 7, i % 3), "x");
        }
        let one = names(&run(
            &[t.path().to_path_buf()],
            WalkOptions {
                threads: 1,
                ..Default::default()
            },
        ));
        for threads in [2, 8] {
            let many = names(&run(
                &[t.path().to_path_buf()],
                WalkOptions {
                    threads,
                    ..Default::default()
                },
            ));
            assert_eq!(one, many);
        }
        assert_eq!(one.len(), 300 + 7 + 21);
    }

    #[test]
    fn packs_hidden_files_and_ignores_gitignore_by_default() {
        let t = tempfile::tempdir().unwrap();
        touch(t.path(), ".hidden", "x");
        touch(t.path(), ".gitignore", "ignored\n");
        touch(t.path(), "ignored", "x");
        let w = run(
            &[t.path().to_path_buf()],
            WalkOptions {
                threads: 2,
                ..Default::default()
            },
        );
        assert_eq!(names(&w), [".gitignore", ".hidden", "ignored"]);
        let w = run(
            &[t.path().to_path_buf()],
            WalkOptions {
                threads: 2,
                ignore_files: true,
                ..Default::default()
            },
        );
        assert_eq!(names(&w), [".gitignore", ".hidden"]);
    }

    #[test]
    fn excludes_match_like_gitignore() {
        let t = tempfile::tempdir().unwrap();
        touch(t.path(), "keep.rs", "x");
        touch(t.path(), "x.o", "x");
        touch(t.path(), "sub/y.o", "x");
        touch(t.path(), "build/out", "x");
        let w = run(
            &[t.path().to_path_buf()],
            WalkOptions {
                threads: 2,
                excludes: vec!["*.o".into(), "build/".into()],
                ..Default::default()
            },
        );
        assert_eq!(names(&w), ["keep.rs", "sub"]);
    }

    #[cfg(unix)]
    #[test]
    fn hard_links_point_at_the_first_name_in_order() {
        let t = tempfile::tempdir().unwrap();
        touch(t.path(), "b/data", "x");
        fs::hard_link(t.path().join("b/data"), t.path().join("a")).unwrap();
        fs::hard_link(t.path().join("b/data"), t.path().join("c")).unwrap();
        let w = run(
            &[t.path().to_path_buf()],
            WalkOptions {
                threads: 3,
                ..Default::default()
            },
        );
        assert_eq!(names(&w), ["a", "b", "b/data", "c"]);
        assert_eq!(w.entries[0].kind, Kind::File { size: 1 });
        assert_eq!(w.entries[2].kind, Kind::HardLink { target: 0 });
        assert_eq!(w.entries[3].kind, Kind::HardLink { target: 0 });
    }

    #[test]
    fn roots_merge_directories_and_reject_file_collisions() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        touch(a.path(), "src/one", "1");
        touch(b.path(), "src/two", "2");
        let w = run(
            &[a.path().to_path_buf(), b.path().to_path_buf()],
            WalkOptions {
                threads: 2,
                ..Default::default()
            },
        );
        assert_eq!(names(&w), ["src", "src/one", "src/two"]);
        touch(b.path(), "src/one", "other");
        let err = walk(
            &[a.path().to_path_buf(), b.path().to_path_buf()],
            &WalkOptions {
                threads: 2,
                ..Default::default()
            },
            &AtomicBool::new(false),
        )
        .unwrap_err();
        assert!(matches!(err, Error::Collision { .. }), "{err}");
    }

    #[test]
    fn missing_root_names_the_path() {
        let err = walk(
            &[PathBuf::from("/definitely/not/here")],
            &WalkOptions::default(),
            &AtomicBool::new(false),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "/definitely/not/here: no such file or directory"
        );
    }

    #[test]
    fn file_root_is_stored_under_its_name_and_existing_manifest_is_skipped() {
        let t = tempfile::tempdir().unwrap();
        touch(t.path(), "dir/.archiver/MANIFEST.b3", "old");
        touch(t.path(), "dir/f", "x");
        touch(t.path(), "single.txt", "x");
        let w = run(
            &[t.path().join("dir"), t.path().join("single.txt")],
            WalkOptions {
                threads: 2,
                skip_manifest: true,
                ..Default::default()
            },
        );
        assert_eq!(names(&w), [".archiver", "f", "single.txt"]);
    }
}
