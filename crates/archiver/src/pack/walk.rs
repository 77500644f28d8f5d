//! Stage 1: the ordered, streaming, parallel walk.
//!
//! Why our own walker: `ignore`'s `WalkParallel` yields entries in no fixed order and ignores its sort
//! settings, so deterministic sequence numbers meant collecting and sorting the whole tree before
//! the first byte (1.84 s and 243 MB on a 1,000,000-file tree). This walker emits entries in their
//! final order as soon as that order is fixed, and lists directories in parallel ahead of it.
//!
//! **Order invariant.** Entries come out in a depth-first walk in which each directory's children are
//! sorted by the raw bytes of their names; roots are sorted by their stored names and no root is a
//! prefix of another (checked up front). Because `/` sorts below every byte a name can hold, this is
//! exactly the component-wise byte order of [`compare_paths`] (`a/b` before `a.txt`). The sequencer
//! thread is the only one that decides what comes next; lister threads only *prepare* sorted
//! listings, so thread timing can change when an entry is known, never where it goes.
//!
//! **Memory invariant.** Nothing holds a list of all entries. The sequencer holds one listing per
//! directory on its depth-first stack (the unvisited remainder) plus prefetched listings of
//! directories ahead of it, limited to [`PREFETCH_LISTINGS`] listings and [`PREFETCH_ENTRIES`]
//! entries in all; the hard-link table holds only files with more than one link.
//!
//! **What is read is what was walked.** Every directory is opened relative to its parent's handle with
//! `O_NOFOLLOW | O_DIRECTORY`, every entry is `fstatat`ed relative to its directory's handle, and the
//! read workers open files relative to the same handle with `O_NOFOLLOW` and check the opened file's
//! identity against the walk: a directory swapped for a symlink between walk and read is never
//! followed (no path is looked up twice).

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{bounded, Receiver, Sender, TryRecvError};
use ignore::gitignore::{Gitignore, GitignoreBuilder};
use ignore::Match;
use rustix::fs::{AtFlags, FileType, Mode, OFlags};

use crate::entry::{Kind, Meta};
use crate::error::{Error, Result};
use crate::pack::stats::StageClock;
use crate::MANIFEST_PATH;

/// Listings requested ahead of the sequencer, at most.
const PREFETCH_LISTINGS: usize = 64;
/// Entries held in prefetched listings not yet reached, at most (beyond this, no new prefetch).
const PREFETCH_ENTRIES: usize = 256 << 10;
/// Entries the sequencer sends downstream in one message.
const CHUNK_ENTRIES: usize = 256;

/// Where an entry is read from.
#[derive(Debug, Clone)]
pub(crate) enum Source {
    /// The entry named like the last component of its stored path, inside this directory handle.
    At(Arc<OwnedFd>),
    /// A root given by path (opened by that path, as tar does).
    Path(PathBuf),
    /// Nothing to read.
    None,
}

/// One entry, in archive order, carrying everything later stages need.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// The name inside the archive (no leading `/`, no `..`, no trailing `/`).
    pub path: PathBuf,
    /// The path on disk, for messages (the PATH as given, joined with the rest).
    pub disk: PathBuf,
    pub kind: Kind,
    pub meta: Meta,
    pub source: Source,
    /// (device, inode) at walk time, so a reader can tell that it opened the same file.
    pub id: (u64, u64),
    /// Status-change time (seconds, nanoseconds) at walk time: if it moved by the time the file
    /// is opened or read to its end, the file changed while being archived (GNU tar's test).
    pub ctime: (i64, i64),
}

impl Entry {
    /// The name to open inside [`Source::At`]'s directory.
    pub fn name(&self) -> &OsStr {
        self.path.file_name().unwrap_or(self.path.as_os_str())
    }
}

/// How to walk.
#[derive(Debug, Clone, Default)]
pub(crate) struct WalkOptions {
    /// Lister threads.
    pub threads: usize,
    /// Directory the PATHs are relative to (`-C`); `None` = the current directory.
    pub directory: Option<PathBuf>,
    pub excludes: Vec<String>,
    pub ignore_files: bool,
    pub follow_symlinks: bool,
    /// Leave out `.archiver/MANIFEST.b3` found in the tree, because we write our own.
    pub skip_manifest: bool,
    /// Files never to pack, by (device, inode): the archive being written.
    pub skip_files: Vec<(u64, u64)>,
    /// Store second names of a file as hard links (tar); otherwise as files of their own (zip).
    pub hard_links: bool,
}

/// Counters the walk keeps for progress (totals so far) and statistics.
#[derive(Debug, Default)]
pub(crate) struct WalkTotals {
    pub entries: std::sync::atomic::AtomicU64,
    pub bytes: std::sync::atomic::AtomicU64,
    pub done: std::sync::atomic::AtomicBool,
}

/// (device, inode) of each path that exists, for [`WalkOptions::skip_files`].
pub(crate) fn file_ids(paths: &[PathBuf]) -> Vec<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    paths
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| (m.dev(), m.ino()))
        .collect()
}

/// A PATH as given, and the name it is stored under.
#[derive(Debug, Clone)]
pub(crate) struct Root {
    /// As given (relative to `-C`), used to open it and in messages.
    pub given: PathBuf,
    /// The stored name: `given` without a leading `/`, `./` or anything up to a `..`.
    pub stored: PathBuf,
    /// What was removed from `given`, to tell the user once the root is known to exist.
    pub note: Option<String>,
}

/// Turns the PATHs into roots: stored names computed as tar does (a leading `/` and anything up to
/// the last `..` removed, with a warning), sorted, and checked so that no two store the same name
/// and none lies inside another (the walk order needs that, and a user never means it).
pub(crate) fn plan_roots(paths: &[PathBuf]) -> Result<Vec<Root>> {
    if paths.is_empty() {
        return Err(Error::Usage(
            "nothing to pack: give at least one path".into(),
        ));
    }
    let mut roots: Vec<Root> = Vec::with_capacity(paths.len());
    for given in paths {
        let mut stored = PathBuf::new();
        // What is removed, as GNU tar names it: `/`, or everything up to the last `..` (`app/../`).
        let mut seen = PathBuf::new();
        let mut removed: Option<PathBuf> = None;
        for c in given.components() {
            seen.push(c);
            match c {
                Component::Prefix(_) | Component::RootDir => removed = Some(seen.clone()),
                Component::CurDir => {}
                Component::ParentDir => {
                    stored.clear();
                    removed = Some(seen.clone());
                }
                Component::Normal(n) => stored.push(n),
            }
        }
        let note = removed.map(|what| {
            let mut what = crate::list::escape_path(&what);
            if !what.ends_with('/') {
                what.push('/');
            }
            format!(
                "{}: removing leading '{what}' from member names",
                crate::list::escape_path(given)
            )
        });
        roots.push(Root {
            given: given.clone(),
            stored,
            note,
        });
    }
    roots.sort_by(|a, b| compare_paths(&a.stored, &b.stored));
    for pair in roots.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        if b.stored.starts_with(&a.stored) {
            return Err(Error::Collision {
                first: a.given.clone(),
                second: b.given.clone(),
                archived: if a.stored == b.stored || a.stored.as_os_str().is_empty() {
                    display_stored(&b.stored)
                } else {
                    format!("{} (inside {})", b.stored.display(), a.stored.display())
                },
            });
        }
    }
    Ok(roots)
}

fn display_stored(p: &Path) -> String {
    if p.as_os_str().is_empty() {
        "the top level".into()
    } else {
        p.display().to_string()
    }
}

/// Checks every root exists (and can be stored) before anything is written, so a missing PATH
/// fails the run up front, with nothing on the output.
pub(crate) fn check_roots(roots: &[Root], opts: &WalkOptions) -> Result<()> {
    stat_roots(roots, opts).map(drop)
}

fn stat_roots(roots: &[Root], opts: &WalkOptions) -> Result<Vec<Stat>> {
    // `-C DIR` first, so a missing or wrong DIR is the error, not every PATH inside it.
    if let Some(d) = &opts.directory {
        let st = rustix::fs::stat(d).map_err(|e| Error::Source {
            path: d.clone(),
            reason: io_reason(&e.into()),
        })?;
        if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
            return Err(Error::Source {
                path: d.clone(),
                reason: "is not a directory (-C)".into(),
            });
        }
    }
    let mut stats = Vec::with_capacity(roots.len());
    for r in roots {
        let path = match &opts.directory {
            Some(d) => d.join(&r.given),
            None => r.given.clone(),
        };
        let st = if opts.follow_symlinks {
            rustix::fs::stat(&path)
        } else {
            rustix::fs::lstat(&path)
        }
        .map_err(|e| Error::Source {
            path: r.given.clone(),
            reason: io_reason(&e.into()),
        })?;
        let st = stat_of(&st);
        if r.stored.as_os_str().is_empty() && st.ft != FileType::Directory {
            return Err(Error::Source {
                path: r.given.clone(),
                reason: "is not a directory, and has no name to store it under".into(),
            });
        }
        stats.push(st);
    }
    Ok(stats)
}

/// A file's facts from one `lstat`.
#[derive(Debug, Clone, Copy)]
struct Stat {
    ft: FileType,
    meta: Meta,
    size: u64,
    dev: u64,
    ino: u64,
    nlink: u64,
    ctime: (i64, i64),
}

#[allow(clippy::unnecessary_cast)] // field widths differ between Linux and macOS
fn stat_of(st: &rustix::fs::Stat) -> Stat {
    Stat {
        ft: FileType::from_raw_mode(st.st_mode as _),
        meta: Meta {
            mode: (st.st_mode as u32) & 0o7777,
            mtime: st.st_mtime as i64,
            uid: st.st_uid as u32,
            gid: st.st_gid as u32,
        },
        size: st.st_size as u64,
        dev: st.st_dev as u64,
        ino: st.st_ino as u64,
        nlink: st.st_nlink as u64,
        ctime: (st.st_ctime as i64, st.st_ctime_nsec as i64),
    }
}

/// An open file's (device, inode) and status-change time, to compare with the walk's.
pub(crate) fn fstat_id(fd: impl AsFd) -> std::io::Result<((u64, u64), (i64, i64))> {
    let st = stat_of(&rustix::fs::fstat(fd)?);
    Ok(((st.dev, st.ino), st.ctime))
}

/// One child in a sorted listing.
struct Listed {
    name: OsString,
    stat: std::result::Result<Stat, std::io::Error>,
    /// A prefetched listing of this directory, once requested.
    pending: Option<Receiver<Listing>>,
}

/// A directory's sorted children and the handle they are read through.
struct Listing {
    result: std::result::Result<(Arc<OwnedFd>, Vec<Listed>), std::io::Error>,
    /// The directory's own ignore rules (with `--ignore-files`), for its descendants.
    ignores: IgnoreChain,
}

/// A request to list `name` inside `parent`.
struct ListRequest {
    parent: Arc<OwnedFd>,
    name: OsString,
    /// The directory's path relative to its root (for ignore files).
    rel: PathBuf,
    ignores: IgnoreChain,
    reply: Sender<Listing>,
}

/// Ignore files in effect, innermost first.
type IgnoreChain = Option<Arc<IgnoreNode>>;

struct IgnoreNode {
    matcher: Gitignore,
    /// The directory holding the ignore file, relative to the walk root (in-tree files)...
    strip: PathBuf,
    /// ...or the walk root relative to the directory holding it (files above the root).
    prepend: PathBuf,
    parent: IgnoreChain,
}

fn ignored(chain: &IgnoreChain, rel: &Path, is_dir: bool) -> bool {
    let mut node = chain.as_deref();
    while let Some(n) = node {
        let inner = rel.strip_prefix(&n.strip).unwrap_or(rel);
        let path = n.prepend.join(inner);
        match n.matcher.matched(&path, is_dir) {
            Match::Ignore(_) => return true,
            Match::Whitelist(_) => return false,
            Match::None => node = n.parent.as_deref(),
        }
    }
    false
}

/// Reads `.gitignore` then `.ignore` (which wins) in `dir`, if any.
fn ignore_node(
    dir: &OwnedFd,
    strip: PathBuf,
    prepend: PathBuf,
    parent: IgnoreChain,
) -> IgnoreChain {
    let mut builder = GitignoreBuilder::new(".");
    let mut any = false;
    for file in [".gitignore", ".ignore"] {
        let Ok(fd) = rustix::fs::openat(
            dir,
            file,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
            Mode::empty(),
        ) else {
            continue;
        };
        let mut text = String::new();
        use std::io::Read;
        if std::fs::File::from(fd)
            .take(1 << 20)
            .read_to_string(&mut text)
            .is_err()
        {
            continue;
        }
        for line in text.lines() {
            any |= builder.add_line(None, line).is_ok();
        }
    }
    if !any {
        return parent;
    }
    match builder.build() {
        Ok(matcher) => Some(Arc::new(IgnoreNode {
            matcher,
            strip,
            prepend,
            parent,
        })),
        Err(_) => parent,
    }
}

/// What the listers share.
struct ListCtx<'a> {
    opts: &'a WalkOptions,
    /// `--exclude` globs, matched against the stored path.
    excludes: &'a Gitignore,
    /// Entries in listings made but not yet reached by the sequencer.
    held: &'a AtomicUsize,
}

fn open_dir(parent: impl AsFd, name: &OsStr, follow: bool) -> std::io::Result<OwnedFd> {
    let mut flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    if !follow {
        flags |= OFlags::NOFOLLOW;
    }
    Ok(rustix::fs::openat(parent, name, flags, Mode::empty())?)
}

/// Lists one directory: read its entries, `fstatat` each through the handle, sort by name bytes.
fn list(req: &ListRequest, ctx: &ListCtx<'_>, stored_prefix: &Path) -> Listing {
    let opened = open_dir(&*req.parent, &req.name, ctx.opts.follow_symlinks);
    let fd = match opened {
        Ok(fd) => Arc::new(fd),
        Err(e) => {
            return Listing {
                result: Err(e),
                ignores: req.ignores.clone(),
            }
        }
    };
    list_fd(fd, &req.rel, req.ignores.clone(), ctx, stored_prefix)
}

fn list_fd(
    fd: Arc<OwnedFd>,
    rel: &Path,
    ignores: IgnoreChain,
    ctx: &ListCtx<'_>,
    stored_prefix: &Path,
) -> Listing {
    let ignores = if ctx.opts.ignore_files {
        ignore_node(&fd, rel.to_path_buf(), PathBuf::new(), ignores)
    } else {
        ignores
    };
    let dir = match rustix::fs::Dir::read_from(&*fd) {
        Ok(d) => d,
        Err(e) => {
            return Listing {
                result: Err(e.into()),
                ignores,
            }
        }
    };
    let stat_flags = if ctx.opts.follow_symlinks {
        AtFlags::empty()
    } else {
        AtFlags::SYMLINK_NOFOLLOW
    };
    let mut out = Vec::new();
    for item in dir {
        let item = match item {
            Ok(i) => i,
            Err(e) => {
                return Listing {
                    result: Err(e.into()),
                    ignores,
                }
            }
        };
        let name = item.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        let name = OsStr::from_bytes(name).to_os_string();
        let hint_dir = item.file_type() == FileType::Directory;
        let child_rel = rel.join(&name);
        let stored = stored_prefix.join(&child_rel);
        if !ctx.excludes.is_empty()
            && matches!(ctx.excludes.matched(&stored, hint_dir), Match::Ignore(_))
        {
            continue;
        }
        let stat = rustix::fs::statat(&*fd, name.as_os_str(), stat_flags)
            .map(|st| stat_of(&st))
            .map_err(std::io::Error::from);
        if let Ok(st) = &stat {
            if left_out(ctx, &ignores, &child_rel, &stored, st, hint_dir) {
                continue;
            }
        }
        out.push(Listed {
            name,
            stat,
            pending: None,
        });
    }
    out.sort_unstable_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    ctx.held.fetch_add(out.len(), Ordering::Relaxed);
    Listing {
        result: Ok((fd, out)),
        ignores,
    }
}

/// Whether an entry the listing stat'ed is left out of the archive: excluded now that its type is
/// known (when the directory listing's hint was wrong), ignored by an ignore file, our own
/// manifest at the top, or one of the files to skip (the output itself).
fn left_out(
    ctx: &ListCtx<'_>,
    ignores: &IgnoreChain,
    child_rel: &Path,
    stored: &Path,
    st: &Stat,
    hint_dir: bool,
) -> bool {
    let is_dir = st.ft == FileType::Directory;
    (is_dir != hint_dir
        && !ctx.excludes.is_empty()
        && matches!(ctx.excludes.matched(stored, is_dir), Match::Ignore(_)))
        || (ctx.opts.ignore_files && ignored(ignores, child_rel, is_dir))
        || (ctx.opts.skip_manifest
            && st.ft == FileType::RegularFile
            && stored == Path::new(MANIFEST_PATH))
        || (st.ft == FileType::RegularFile && ctx.opts.skip_files.contains(&(st.dev, st.ino)))
}

/// The longest name stored (a directory's with its `/`): zip's 16-bit name length. Our tar
/// reader takes up to 64 KiB (tar_read's `MAX_NAME`), so both formats read back what is written.
const MAX_STORED_NAME: usize = u16::MAX as usize;

const LOOP: &str = "symbolic link loop back to a directory above it; skipped";

/// One directory on the sequencer's depth-first stack.
struct Frame {
    dir: Arc<OwnedFd>,
    /// The directory's path relative to its root.
    rel: PathBuf,
    id: (u64, u64),
    children: std::vec::IntoIter<Listed>,
    /// Children taken from `children` so far.
    consumed: usize,
    /// Children already looked at for prefetching (absolute index), so each is looked at once.
    scanned: usize,
    ignores: IgnoreChain,
}

/// The sequencer: walks `roots` depth-first in archive order, sending entries downstream in chunks.
/// Returns the walk's clock; fails only for problems with the roots themselves.
pub(crate) fn run(
    roots: &[Root],
    opts: &WalkOptions,
    out: &Sender<Vec<Entry>>,
    totals: &WalkTotals,
    stopped: &(dyn Fn() -> bool + Sync),
) -> Result<StageClock> {
    let excludes = build_excludes(&opts.excludes)?;
    let held = AtomicUsize::new(0);
    let threads = opts.threads.max(1);
    let (req_tx, req_rx) = bounded::<(ListRequest, PathBuf)>(PREFETCH_LISTINGS + threads);
    let mut clock = StageClock::default();
    let started = Instant::now();
    let result = std::thread::scope(|s| {
        // The listers start with the first directory below a root: a tree without one (a few
        // files) never pays for their threads.
        let (excludes, held) = (&excludes, &held);
        let listers = move || -> Result<()> {
            for _ in 0..threads {
                let req_rx = req_rx.clone();
                let ctx = ListCtx {
                    opts,
                    excludes,
                    held,
                };
                crate::threads::spawn(s, "list", move || {
                    for (req, prefix) in req_rx {
                        if stopped() {
                            break;
                        }
                        let listing = list(&req, &ctx, &prefix);
                        let _ = req.reply.send(listing);
                    }
                })?;
            }
            Ok(())
        };
        let ctx = ListCtx {
            opts,
            excludes,
            held,
        };
        let mut seq = Sequencer {
            opts,
            out,
            totals,
            stopped,
            req_tx,
            listers: Some(Box::new(listers)),
            ctx: &ctx,
            chunk: Vec::with_capacity(CHUNK_ENTRIES),
            outstanding: 0,
            links: HashMap::new(),
            clock: &mut clock,
        };
        let r = seq.walk_roots(roots);
        drop(seq); // closes the request channel: listers end
        r
    });
    totals.done.store(true, Ordering::Relaxed);
    clock.busy = started
        .elapsed()
        .saturating_sub(clock.starved + clock.blocked);
    result.map(|()| clock)
}

fn build_excludes(globs: &[String]) -> Result<Gitignore> {
    let mut b = GitignoreBuilder::new(".");
    for glob in globs {
        // A leading `./` names the top of the tree: GNU tar's member names under `-C dir .` start
        // with it, so `./build` matches `./build` and not `./lib/build`. Stored names have no
        // `./`, so it becomes gitignore's anchor, `/build`.
        let (anchored, g) = match glob.strip_prefix("./") {
            Some(rest) => (true, rest.trim_start_matches('/')),
            None => (false, glob.as_str()),
        };
        if g.is_empty() {
            continue;
        }
        let g = if anchored && !g.starts_with("**/") {
            format!("/{g}")
        } else {
            g.to_string()
        };
        // GNU tar matches a pattern with a slash after any `/` (its --no-anchored default); in
        // gitignore syntax such a pattern is anchored, so add the unanchored form too. Its `*`
        // also matches `/`, so `./*.o` reaches `./lib/x.o`: an anchored pattern that starts with
        // `*` gets the form below any directory as well.
        let inner = g.trim_end_matches('/');
        let mut forms = vec![g.clone()];
        if inner.contains('/') && !g.starts_with('/') && !g.starts_with("**/") {
            forms.push(format!("**/{g}"));
        }
        if anchored && g.starts_with("/*") && !g.starts_with("/**") {
            forms.push(format!("/**{g}"));
        }
        for form in forms {
            b.add_line(None, &form)
                .map_err(|e| Error::Usage(format!("--exclude {glob:?}: {e}")))?;
        }
    }
    b.build()
        .map_err(|e| Error::Usage(format!("--exclude: {e}")))
}

struct Sequencer<'a> {
    opts: &'a WalkOptions,
    out: &'a Sender<Vec<Entry>>,
    totals: &'a WalkTotals,
    stopped: &'a (dyn Fn() -> bool + Sync),
    req_tx: Sender<(ListRequest, PathBuf)>,
    /// Starts the lister threads (taken by the first request).
    listers: Option<Box<dyn FnOnce() -> Result<()> + 'a>>,
    ctx: &'a ListCtx<'a>,
    chunk: Vec<Entry>,
    /// Listings requested and not yet consumed.
    outstanding: usize,
    /// First stored name of each multiply-linked file, by (device, inode).
    links: HashMap<(u64, u64), PathBuf>,
    clock: &'a mut StageClock,
}

impl Sequencer<'_> {
    fn walk_roots(&mut self, roots: &[Root]) -> Result<()> {
        let stats = stat_roots(roots, self.opts)?;
        let base = self.opts.directory.clone();
        let on_disk = |r: &Root| match &base {
            Some(d) => d.join(&r.given),
            None => r.given.clone(),
        };
        for note in roots.iter().filter_map(|r| r.note.as_ref()) {
            tracing::warn!("{note}");
        }
        for (r, st) in roots.iter().zip(stats) {
            let path = on_disk(r);
            let is_dir = st.ft == FileType::Directory;
            if !r.stored.as_os_str().is_empty()
                && matches!(
                    self.ctx.excludes.matched(&r.stored, is_dir),
                    Match::Ignore(_)
                )
            {
                continue;
            }
            if let Some(why) = self.withheld(&r.stored, Some(st.ft)) {
                self.warn_at(r, Path::new(""), why)?;
                continue;
            }
            if !r.stored.as_os_str().is_empty() {
                let entry = Listed {
                    name: OsString::new(),
                    stat: Ok(st),
                    pending: None,
                };
                self.emit(r, Path::new(""), &entry, Source::Path(path.clone()))?;
            }
            if st.ft != FileType::Directory {
                continue;
            }
            let fd = match open_dir(rustix::fs::CWD, path.as_os_str(), true) {
                Ok(fd) => fd,
                Err(e) => {
                    self.warn_at(r, Path::new(""), dir_failure(&e))?;
                    continue;
                }
            };
            let ignores = if self.opts.ignore_files {
                ancestors_ignores(&path)
            } else {
                None
            };
            let listing = list_fd(Arc::new(fd), Path::new(""), ignores, self.ctx, &r.stored);
            self.release(&listing);
            self.walk_tree(r, (st.dev, st.ino), listing)?;
        }
        self.flush()
    }

    /// Depth-first over one root's tree, starting from its listing.
    fn walk_tree(&mut self, root: &Root, id: (u64, u64), first: Listing) -> Result<()> {
        let mut stack: Vec<Frame> = Vec::new();
        match first.result {
            Ok((dir, children)) => stack.push(Frame {
                dir,
                rel: PathBuf::new(),
                id,
                children: children.into_iter(),
                consumed: 0,
                scanned: 0,
                ignores: first.ignores,
            }),
            Err(e) => return self.warn_at(root, Path::new(""), dir_failure(&e)),
        }
        while !stack.is_empty() {
            if (self.stopped)() {
                return Err(Error::Cancelled);
            }
            self.prefetch(&mut stack, root);
            let top = stack.last_mut().expect("stack is not empty");
            let Some(mut child) = top.children.next() else {
                stack.pop();
                continue;
            };
            top.consumed += 1;
            let rel = top.rel.join(&child.name);
            let dir = Arc::clone(&top.dir);
            let ignores = top.ignores.clone();
            let is_dir = matches!(&child.stat, Ok(st) if st.ft == FileType::Directory);
            let pending = child.pending.take();
            let looped = match &child.stat {
                Ok(st) if is_dir => stack.iter().any(|f| f.id == (st.dev, st.ino)),
                _ => false,
            };
            if looped {
                self.skip_loop(root, &rel, pending, LOOP.into())?;
                continue;
            }
            let ft = child.stat.as_ref().ok().map(|st| st.ft);
            if let Some(why) = self.withheld(&stored_path(root, &rel), ft) {
                self.skip_loop(root, &rel, pending, why)?;
                continue;
            }
            self.emit(root, &rel, &child, Source::At(Arc::clone(&dir)))?;
            let Ok(st) = child.stat else { continue };
            if !is_dir {
                continue;
            }
            let id = (st.dev, st.ino);
            let listing = match pending {
                Some(rx) => {
                    self.outstanding -= 1;
                    self.wait(&rx)?
                }
                None => {
                    let (tx, rx) = bounded(1);
                    self.request(dir, &child.name, &rel, ignores, tx, root)?;
                    self.outstanding -= 1;
                    self.wait(&rx)?
                }
            };
            self.release(&listing);
            match listing.result {
                Ok((dir, children)) => stack.push(Frame {
                    dir,
                    rel,
                    id,
                    children: children.into_iter(),
                    consumed: 0,
                    scanned: 0,
                    ignores: listing.ignores,
                }),
                Err(e) => self.warn_at(root, &rel, dir_failure(&e))?,
            }
        }
        Ok(())
    }

    /// Why an entry cannot be stored under `stored` (its type `ft` when known), if it cannot: a
    /// name longer than archive readers take, or a name our manifest needs (pack writes
    /// `.archiver/MANIFEST.b3` itself; an old one, a regular file, is left out silently by the
    /// listing). Such an entry is skipped with a warning, and a directory with all it holds.
    fn withheld(&self, stored: &Path, ft: Option<FileType>) -> Option<String> {
        let len = stored.as_os_str().len() + usize::from(ft == Some(FileType::Directory));
        if len > MAX_STORED_NAME {
            return Some(format!(
                "its stored name is {len} bytes, longer than archive readers take ({MAX_STORED_NAME}, zip's limit); skipped"
            ));
        }
        if !self.opts.skip_manifest {
            return None;
        }
        if stored == Path::new(MANIFEST_PATH) {
            return Some("the name of the manifest pack writes; not stored".into());
        }
        let top = Path::new(MANIFEST_PATH).parent().expect("a directory");
        (stored == top && ft != Some(FileType::Directory)).then(|| {
            format!(
                "not a directory, and the archive's manifest goes in {MANIFEST_PATH}; not stored"
            )
        })
    }

    /// An entry the walk does not store (a directory that is one of its own ancestors, reached
    /// through a followed symlink; see also [`Self::withheld`]): warned about and skipped, its
    /// prefetched listing (if any) taken in and released.
    fn skip_loop(
        &mut self,
        root: &Root,
        rel: &Path,
        pending: Option<Receiver<Listing>>,
        why: String,
    ) -> Result<()> {
        self.warn_at(root, rel, why)?;
        if let Some(rx) = pending {
            self.outstanding -= 1;
            let listing = self.wait(&rx)?;
            self.release(&listing);
        }
        Ok(())
    }

    /// Requests listings of directories ahead, deepest frame first (closest in walk order).
    fn prefetch(&mut self, stack: &mut [Frame], root: &Root) {
        for frame in stack.iter_mut().rev() {
            if self.outstanding >= PREFETCH_LISTINGS
                || self.ctx.held.load(Ordering::Relaxed) >= PREFETCH_ENTRIES
            {
                return;
            }
            // Each child is looked at once: `scanned` is an absolute index into the listing, the
            // iterator's remaining slice starts at `consumed`.
            let from = frame.scanned.saturating_sub(frame.consumed);
            let consumed = frame.consumed;
            for (i, child) in frame
                .children
                .as_mut_slice()
                .iter_mut()
                .enumerate()
                .skip(from)
            {
                if self.outstanding >= PREFETCH_LISTINGS {
                    return;
                }
                frame.scanned = consumed + i + 1;
                let is_dir = matches!(&child.stat, Ok(st) if st.ft == FileType::Directory);
                if !is_dir || child.pending.is_some() {
                    continue;
                }
                let (tx, rx) = bounded(1);
                let rel = frame.rel.join(&child.name);
                if self
                    .request(
                        Arc::clone(&frame.dir),
                        &child.name,
                        &rel,
                        frame.ignores.clone(),
                        tx,
                        root,
                    )
                    .is_err()
                {
                    return;
                }
                child.pending = Some(rx);
            }
        }
    }

    fn request(
        &mut self,
        parent: Arc<OwnedFd>,
        name: &OsStr,
        rel: &Path,
        ignores: IgnoreChain,
        reply: Sender<Listing>,
        root: &Root,
    ) -> Result<()> {
        if let Some(start) = self.listers.take() {
            start()?;
        }
        let req = ListRequest {
            parent,
            name: name.to_os_string(),
            rel: rel.to_path_buf(),
            ignores,
            reply,
        };
        // Never blocks: at most PREFETCH_LISTINGS + 1 requests are outstanding and the channel
        // holds more than that.
        self.req_tx
            .try_send((req, root.stored.clone()))
            .map_err(|_| Error::Cancelled)?;
        self.outstanding += 1;
        Ok(())
    }

    /// A listing reached: it no longer counts against the prefetch limit.
    fn release(&self, listing: &Listing) {
        self.ctx.held.fetch_sub(
            listing.result.as_ref().map_or(0, |(_, l)| l.len()),
            Ordering::Relaxed,
        );
    }

    /// Waits for a listing, sending what is already known downstream first.
    fn wait(&mut self, rx: &Receiver<Listing>) -> Result<Listing> {
        match rx.try_recv() {
            Ok(l) => return Ok(l),
            Err(TryRecvError::Disconnected) => return Err(Error::Cancelled),
            Err(TryRecvError::Empty) => {}
        }
        self.flush()?;
        let t = Instant::now();
        let got = crate::pack::recv_until(rx, self.stopped);
        self.clock.starved += t.elapsed();
        got.ok_or(Error::Cancelled)
    }

    fn emit(&mut self, root: &Root, rel: &Path, child: &Listed, source: Source) -> Result<()> {
        let path = stored_path(root, rel);
        let disk = disk_path(root, rel);
        let (kind, meta, id, ctime) = match &child.stat {
            Err(e) => (
                Kind::Warning {
                    message: match e.kind() {
                        std::io::ErrorKind::NotFound => {
                            "vanished before it could be read; skipped".into()
                        }
                        _ => format!("cannot stat: {}; skipped", io_reason(e)),
                    },
                },
                Meta::default(),
                (0, 0),
                (0, 0),
            ),
            Ok(st) => {
                let kind = match st.ft {
                    FileType::RegularFile => {
                        let mut kind = Kind::File {
                            size: st.size,
                            linked: false,
                        };
                        if st.nlink > 1 && self.opts.hard_links {
                            match self.links.get(&(st.dev, st.ino)) {
                                Some(first) => {
                                    kind = Kind::HardLink {
                                        target: first.clone(),
                                    }
                                }
                                None => {
                                    self.links.insert((st.dev, st.ino), path.clone());
                                    kind = Kind::File {
                                        size: st.size,
                                        linked: true,
                                    };
                                }
                            }
                        }
                        kind
                    }
                    FileType::Directory => Kind::Dir,
                    FileType::Symlink => Kind::Symlink,
                    other => Kind::Warning {
                        message: format!("{}; not archived", special_kind(other)),
                    },
                };
                (kind, st.meta, (st.dev, st.ino), st.ctime)
            }
        };
        if let Kind::File { size, .. } = kind {
            self.totals.bytes.fetch_add(size, Ordering::Relaxed);
        }
        self.totals.entries.fetch_add(1, Ordering::Relaxed);
        self.push(Entry {
            path,
            disk,
            kind,
            meta,
            source,
            id,
            ctime,
        })
    }

    fn warn_at(&mut self, root: &Root, rel: &Path, message: String) -> Result<()> {
        self.push(Entry {
            path: stored_path(root, rel),
            disk: disk_path(root, rel),
            kind: Kind::Warning { message },
            meta: Meta::default(),
            source: Source::None,
            id: (0, 0),
            ctime: (0, 0),
        })
    }

    fn push(&mut self, e: Entry) -> Result<()> {
        self.chunk.push(e);
        if self.chunk.len() >= CHUNK_ENTRIES {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.chunk.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.chunk, Vec::with_capacity(CHUNK_ENTRIES));
        let t = Instant::now();
        let sent = crate::pack::send_until(self.out, chunk, self.stopped);
        self.clock.blocked += t.elapsed();
        self.clock.items += 1;
        if sent {
            Ok(())
        } else {
            Err(Error::Cancelled)
        }
    }
}

/// The stored name of `rel` under `root` (`join` would add a trailing slash for an empty `rel`).
fn stored_path(root: &Root, rel: &Path) -> PathBuf {
    if rel.as_os_str().is_empty() {
        root.stored.clone()
    } else {
        root.stored.join(rel)
    }
}

/// The on-disk path of `rel` under `root`, for messages.
fn disk_path(root: &Root, rel: &Path) -> PathBuf {
    if rel.as_os_str().is_empty() {
        root.given.clone()
    } else if root.given == Path::new(".") {
        rel.to_path_buf()
    } else {
        root.given.join(rel)
    }
}

/// Ignore files in the directories above a root, outermost last in the chain.
fn ancestors_ignores(root: &Path) -> IgnoreChain {
    let Ok(abs) = std::fs::canonicalize(root) else {
        return None;
    };
    let mut dirs: Vec<&Path> = abs.ancestors().skip(1).collect();
    dirs.reverse(); // outermost first, so inner ones end up first in the chain
    let mut chain = None;
    for d in dirs {
        let Ok(fd) = open_dir(rustix::fs::CWD, d.as_os_str(), true) else {
            continue;
        };
        let prepend = abs.strip_prefix(d).unwrap_or(&abs).to_path_buf();
        chain = ignore_node(&fd, PathBuf::new(), prepend, chain);
    }
    chain
}

fn dir_failure(e: &std::io::Error) -> String {
    format!(
        "cannot read directory: {}; its contents are skipped",
        io_reason(e)
    )
}

fn special_kind(ft: FileType) -> &'static str {
    match ft {
        FileType::Fifo => "is a FIFO",
        FileType::Socket => "is a socket",
        FileType::BlockDevice => "is a block device",
        FileType::CharacterDevice => "is a character device",
        _ => "is of an unknown file type",
    }
}

pub(crate) fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
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
    use std::fs;

    fn touch(root: &Path, rel: &str, body: &str) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, body).unwrap();
    }

    /// Walks and returns (stored name, kind) of every entry, in order.
    fn walk_all(paths: &[&str], opts: WalkOptions) -> Result<Vec<(String, Kind)>> {
        let paths: Vec<PathBuf> = paths.iter().map(PathBuf::from).collect();
        let roots = plan_roots(&paths)?;
        let (tx, rx) = bounded(4);
        let totals = WalkTotals::default();
        let never = || false;
        std::thread::scope(|s| {
            let h = s.spawn(|| {
                let r = run(&roots, &opts, &tx, &totals, &never);
                drop(tx);
                r
            });
            let got: Vec<(String, Kind)> = rx
                .iter()
                .flatten()
                .map(|e| (e.path.to_string_lossy().into_owned(), e.kind))
                .collect();
            h.join().unwrap().map(|_| got)
        })
    }

    fn names(v: &[(String, Kind)]) -> Vec<&str> {
        v.iter().map(|(n, _)| n.as_str()).collect()
    }

    fn at(dir: &Path, threads: usize) -> WalkOptions {
        WalkOptions {
            threads,
            directory: Some(dir.to_path_buf()),
            hard_links: true,
            ..Default::default()
        }
    }

    #[test]
    fn order_is_component_wise_bytes() {
        let t = tempfile::tempdir().unwrap();
        for rel in ["a.txt", "a/b", "a/c/d", "a-b", "B", "a0", "é", "z"] {
            touch(t.path(), rel, "x");
        }
        let w = walk_all(&["."], at(t.path(), 4)).unwrap();
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
    }

    #[test]
    fn same_result_for_any_thread_count() {
        let t = tempfile::tempdir().unwrap();
        for i in 0..300 {
            touch(t.path(), &format!("d{}/e{}/f{i}", i % 7, i % 3), "x");
        }
        let one = walk_all(&["."], at(t.path(), 1)).unwrap();
        for threads in [2, 8] {
            let many = walk_all(&["."], at(t.path(), threads)).unwrap();
            assert_eq!(one, many);
        }
        assert_eq!(one.len(), 300 + 7 + 21);
        let mut sorted = names(&one);
        sorted.sort_by(|a, b| compare_paths(Path::new(a), Path::new(b)));
        assert_eq!(sorted, names(&one));
    }

    #[test]
    fn paths_are_stored_as_given() {
        let t = tempfile::tempdir().unwrap();
        touch(t.path(), "app/src/x", "x");
        touch(t.path(), "other/y", "y");
        let w = walk_all(&["other", "app/"], at(t.path(), 2)).unwrap();
        assert_eq!(
            names(&w),
            ["app", "app/src", "app/src/x", "other", "other/y"]
        );
        let w = walk_all(&["./app/src"], at(t.path(), 2)).unwrap();
        assert_eq!(names(&w), ["app/src", "app/src/x"]);
        let w = walk_all(&["app/../other"], at(t.path(), 2)).unwrap();
        assert_eq!(names(&w), ["other", "other/y"]);
    }

    #[test]
    fn two_paths_storing_the_same_name_are_an_error_naming_both() {
        for paths in [&["app", "./app"][..], &["app", "app/src"], &[".", "app"]] {
            let err = plan_roots(&paths.iter().map(PathBuf::from).collect::<Vec<_>>()).unwrap_err();
            assert!(matches!(err, Error::Collision { .. }), "{err}");
            let msg = err.to_string();
            assert!(msg.contains(paths[0]) && msg.contains(paths[1]), "{msg}");
        }
    }

    #[test]
    fn leading_slash_and_dotdot_are_removed_with_a_note() {
        let roots = plan_roots(&[
            PathBuf::from("/etc/hosts"),
            PathBuf::from("../x/y"),
            PathBuf::from("app/../z"),
        ])
        .unwrap();
        let stored: Vec<_> = roots.iter().map(|r| r.stored.clone()).collect();
        assert_eq!(
            stored,
            [
                PathBuf::from("etc/hosts"),
                PathBuf::from("x/y"),
                PathBuf::from("z")
            ]
        );
        // What was removed, named as GNU tar names it.
        let notes: Vec<_> = roots.iter().map(|r| r.note.clone().unwrap()).collect();
        assert!(notes[0].ends_with("removing leading '/' from member names"));
        assert!(notes[1].ends_with("removing leading '../' from member names"));
        assert!(notes[2].ends_with("removing leading 'app/../' from member names"));
    }

    #[test]
    fn packs_hidden_files_and_ignores_gitignore_by_default() {
        let t = tempfile::tempdir().unwrap();
        touch(t.path(), ".hidden", "x");
        touch(t.path(), ".gitignore", "ignored\n");
        touch(t.path(), "ignored", "x");
        touch(t.path(), "sub/.ignore", "*.log\n!keep.log\n");
        touch(t.path(), "sub/a.log", "x");
        touch(t.path(), "sub/keep.log", "x");
        let w = walk_all(&["."], at(t.path(), 2)).unwrap();
        assert_eq!(
            names(&w),
            [
                ".gitignore",
                ".hidden",
                "ignored",
                "sub",
                "sub/.ignore",
                "sub/a.log",
                "sub/keep.log"
            ]
        );
        let mut opts = at(t.path(), 2);
        opts.ignore_files = true;
        let w = walk_all(&["."], opts).unwrap();
        assert_eq!(
            names(&w),
            [
                ".gitignore",
                ".hidden",
                "sub",
                "sub/.ignore",
                "sub/keep.log"
            ]
        );
    }

    #[test]
    fn excludes_match_the_stored_path_like_tar() {
        let t = tempfile::tempdir().unwrap();
        touch(t.path(), "app/keep.rs", "x");
        touch(t.path(), "app/x.o", "x");
        touch(t.path(), "app/sub/y.o", "x");
        touch(t.path(), "app/build/out", "x");
        touch(t.path(), "app/src/main.rs", "x");
        touch(t.path(), "app/lib/src/main.rs", "x");
        let mut opts = at(t.path(), 2);
        opts.excludes = vec!["*.o".into(), "build/".into(), "app/src".into()];
        let w = walk_all(&["app"], opts).unwrap();
        assert_eq!(
            names(&w),
            [
                "app",
                "app/keep.rs",
                "app/lib",
                "app/lib/src",
                "app/lib/src/main.rs",
                "app/sub"
            ]
        );
    }

    #[test]
    fn a_leading_dot_slash_excludes_only_at_the_top() {
        // As GNU tar under `-C dir .`, whose names start with `./`: `--exclude ./build` leaves
        // out `./build`, never `./lib/build`; its `*` matches `/`, so `./*.o` reaches `lib/x.o`.
        let t = tempfile::tempdir().unwrap();
        touch(t.path(), "build/out", "x");
        touch(t.path(), "config", "x");
        touch(t.path(), "lib/build/keep", "x");
        touch(t.path(), "lib/config", "x");
        touch(t.path(), "lib/x.o", "x");
        touch(t.path(), "y.o", "x");
        let mut opts = at(t.path(), 2);
        opts.excludes = vec![
            "./build".into(),
            "./config".into(),
            "./*.o".into(),
            "./".into(),
        ];
        let w = walk_all(&["."], opts).unwrap();
        assert_eq!(
            names(&w),
            ["lib", "lib/build", "lib/build/keep", "lib/config"]
        );
        // Packing `app`, no stored name is `x` at the top: `./x` leaves out nothing (tar too).
        touch(t.path(), "app/x", "x");
        touch(t.path(), "app/src/x", "x");
        let mut opts = at(t.path(), 2);
        opts.excludes = vec!["./x".into()];
        let w = walk_all(&["app"], opts).unwrap();
        assert_eq!(names(&w), ["app", "app/src", "app/src/x", "app/x"]);
    }

    #[test]
    fn hard_links_point_at_the_first_name_in_order() {
        let t = tempfile::tempdir().unwrap();
        touch(t.path(), "b/data", "x");
        fs::hard_link(t.path().join("b/data"), t.path().join("a")).unwrap();
        fs::hard_link(t.path().join("b/data"), t.path().join("c")).unwrap();
        let w = walk_all(&["."], at(t.path(), 3)).unwrap();
        assert_eq!(names(&w), ["a", "b", "b/data", "c"]);
        assert_eq!(
            w[0].1,
            Kind::File {
                size: 1,
                linked: true
            }
        );
        assert_eq!(
            w[2].1,
            Kind::HardLink {
                target: PathBuf::from("a")
            }
        );
    }

    #[test]
    fn a_missing_or_wrong_directory_is_named_itself() {
        let t = tempfile::tempdir().unwrap();
        touch(t.path(), "file", "x");
        let mut opts = at(&t.path().join("nodir"), 1);
        let err = walk_all(&["."], opts.clone()).unwrap_err().to_string();
        assert!(err.ends_with("nodir: no such file or directory"), "{err}");
        opts.directory = Some(t.path().join("file"));
        let err = walk_all(&["x"], opts).unwrap_err().to_string();
        assert!(err.ends_with("file: is not a directory (-C)"), "{err}");
    }

    #[test]
    fn missing_root_names_the_path() {
        let err = walk_all(&["/definitely/not/here"], WalkOptions::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/definitely/not/here: no such file or directory"
        );
    }

    #[test]
    fn existing_manifest_is_skipped() {
        let t = tempfile::tempdir().unwrap();
        touch(t.path(), ".archiver/MANIFEST.b3", "old");
        touch(t.path(), "f", "x");
        let mut opts = at(t.path(), 2);
        opts.skip_manifest = true;
        let w = walk_all(&["."], opts).unwrap();
        assert_eq!(names(&w), [".archiver", "f"]);
    }

    #[test]
    fn symlinked_directory_is_not_followed_unless_asked() {
        let t = tempfile::tempdir().unwrap();
        touch(t.path(), "real/f", "x");
        std::os::unix::fs::symlink("real", t.path().join("link")).unwrap();
        std::os::unix::fs::symlink(".", t.path().join("real/loop")).unwrap();
        let w = walk_all(&["."], at(t.path(), 2)).unwrap();
        assert_eq!(names(&w), ["link", "real", "real/f", "real/loop"]);
        assert_eq!(w[0].1, Kind::Symlink);
        let mut opts = at(t.path(), 2);
        opts.follow_symlinks = true;
        let w = walk_all(&["."], opts).unwrap();
        assert_eq!(
            names(&w),
            ["link", "link/f", "link/loop", "real", "real/f", "real/loop"]
        );
        assert!(matches!(w[2].1, Kind::Warning { .. }), "{:?}", w[2]);
    }

    #[test]
    fn deep_and_wide_trees_stream_in_order() {
        let t = tempfile::tempdir().unwrap();
        let mut deep = String::from("d");
        for i in 0..60 {
            deep.push_str(&format!("/n{i}"));
        }
        touch(t.path(), &format!("{deep}/leaf"), "x");
        for i in 0..200 {
            fs::create_dir_all(t.path().join(format!("w/{i:03}/x"))).unwrap();
        }
        let w = walk_all(&["."], at(t.path(), 3)).unwrap();
        let n = names(&w);
        let mut sorted = n.clone();
        sorted.sort_by(|a, b| compare_paths(Path::new(a), Path::new(b)));
        assert_eq!(n, sorted);
        assert_eq!(n.len(), 62 + 1 + 400);
    }
}
