//! The last step of an unpack: merge the staging tree into DEST, all or nothing.
//!
//! While the archive is read, nothing in DEST is touched: entries are created in a mirror tree
//! inside the run's staging directory (`DEST/.archiver-XXXXXX/t`, see [`crate::unpack::stage`]), which
//! already is the final tree of the archive (later entries replaced earlier ones there).
//!
//! [`commit`] then works in two phases:
//!
//! 1. **Plan** (reads only): the staging tree is merged with DEST, top down. A name DEST lacks is
//!    one move, whole subtree included; a directory both have is descended into; a file replacing
//!    a file is one replacement. Every check that can refuse an entry runs here: directories on the
//!    way must be real directories (a symlink in DEST is never followed), a directory in the way of
//!    a file or a file in the way of a directory is refused, each directory we must write in is
//!    writable and on the staging directory's filesystem, and every symlink is resolved through the
//!    final tree (the staging tree over what DEST holds) and must stay inside DEST. Any refusal ends
//!    the run here: DEST unchanged.
//! 2. **Apply**: every move and replacement is made. An existing file is first hard-linked (or,
//!    where the filesystem has no hard links, renamed) to a name in the staging directory, so the
//!    replacement stays atomic and the original survives until the whole commit succeeded. If any
//!    step fails (ENOSPC, EIO, EPERM, a cancel), every move is taken back and the originals
//!    return; the error says so. Directory modes and times are applied last, deepest first.
//!
//! Unpacking into an empty DEST thus costs one rename per top-level entry, not one per file.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use crate::error::{Error, Refused, Result};
use crate::manifest::path_bytes;
use crate::unpack::policy::{self, Lookup, Merge, Refusal};
use crate::unpack::stage::{self, StageTree};
use crate::unpack::UnpackStats;
use crate::{Cancel, Warning};

/// An entry name for messages: escaped, never raw control characters.
fn show(p: &Path) -> String {
    crate::list::escape_path(p)
}

/// The per-run staging directory inside DEST. Dropping it removes it with everything inside,
/// unless [`Staging::keep`] was called (originals that could not be restored are there).
pub(crate) struct Staging {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
    name: OsString,
    dev: Option<u64>,
    cancel: Cancel,
    /// Set once the commit begins: from then until the directory is gone, the run must finish.
    finishing: Option<crate::cancel::Finishing>,
}

impl Drop for Staging {
    /// Removes the directory (unless kept) as a step that must finish: a signal's watchdog
    /// waits rather than leave half of it behind. If the process is being abandoned
    /// ([`Cancel::abandon`]), that removed the directory already (nothing was committed), or
    /// the commit is being cut short at the user's third signal: either way, leave it.
    fn drop(&mut self) {
        let finishing = self.finishing.take().or_else(|| self.cancel.finishing());
        self.cancel.not_disposable(&self.path);
        match finishing {
            Some(_guard) => {
                let _ = self.close();
            }
            None => self.keep(),
        }
    }
}

impl Staging {
    /// Creates `DEST/.archiver-XXXXXX` exclusively (mkdir, never reusing or deleting a name).
    pub fn create(dest: &Path, cancel: &Cancel) -> Result<Staging> {
        let dir = tempfile::Builder::new()
            .prefix(".archiver-")
            .rand_bytes(6)
            .tempdir_in(dest)
            .map_err(|e| Error::Io {
                path: dest.to_path_buf(),
                source: io::Error::new(
                    e.kind(),
                    format!("cannot create a staging directory in it: {e}"),
                ),
            })?;
        let path = dir.path().to_path_buf();
        let name = path.file_name().unwrap_or_default().to_owned();
        let dev = fs::symlink_metadata(&path).ok().and_then(|m| dev_of(&m));
        // Until the commit begins it holds only what this run made: a process that must end
        // at once may remove it (Cancel::abandon).
        cancel.disposable(&path);
        Ok(Staging {
            dir: Some(dir),
            path,
            name,
            dev,
            cancel: cancel.clone(),
            finishing: None,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn name(&self) -> &OsStr {
        &self.name
    }

    /// Where the mirror tree of the archive is built.
    pub fn tree_path(&self) -> PathBuf {
        self.path.join("t")
    }

    fn keep(&mut self) {
        if let Some(d) = self.dir.take() {
            let _ = d.keep();
        }
    }

    fn close(&mut self) -> io::Result<()> {
        match self.dir.take() {
            // However deep the tree is (tempfile's removal holds a descriptor per level).
            Some(d) => crate::remove::remove_tree(&d.keep()),
            None => Ok(()),
        }
    }
}

/// What the commit needs from the unpacker's options.
pub(crate) struct Options<'a> {
    pub keep_existing: bool,
    /// Symlinks may point anywhere (`--allow-outside-links`); entries below one are still refused.
    pub allow_outside_links: bool,
    pub sync: bool,
    pub jobs: usize,
    pub cancel: &'a Cancel,
}

/// Relative paths in one byte arena, each with a value: a few bytes per path plus its length,
/// where a `Vec<PathBuf>` costs an allocation each.
pub(crate) struct PathList<T> {
    paths: Vec<u8>,
    list: Vec<(u64, u32, T)>,
}

impl<T> Default for PathList<T> {
    fn default() -> Self {
        PathList {
            paths: Vec::new(),
            list: Vec::new(),
        }
    }
}

impl<T> PathList<T> {
    pub fn push(&mut self, rel: &Path, value: T) {
        let bytes = path_bytes(rel);
        self.list
            .push((self.paths.len() as u64, bytes.len() as u32, value));
        self.paths.extend_from_slice(&bytes);
    }

    pub fn get(&self, i: usize) -> (&Path, &T) {
        let (at, len, value) = &self.list[i];
        let at = *at as usize;
        (os_path(&self.paths[at..at + *len as usize]), value)
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Path, &T)> {
        (0..self.len()).map(|i| self.get(i))
    }
}

/// The directory entries' modes and times, applied after everything is in place (their times
/// would change as entries move in).
pub(crate) type DirMetas = PathList<(u32, SystemTime)>;

/// The moves of a commit: each path, and whether it replaces something DEST holds.
type Ops = PathList<bool>;

/// A path from its raw bytes.
pub(crate) fn os_path(b: &[u8]) -> &Path {
    use std::os::unix::ffi::OsStrExt;
    Path::new(OsStr::from_bytes(b))
}

/// The first failure of a commit: where, and what the system said.
type Failure = Option<(PathBuf, io::Error)>;

/// What was done for one op, so it can be undone.
struct Done {
    op: usize,
    aside: bool,
    placed: bool,
}

/// At most this many refusals are listed; the rest are counted.
const MAX_REFUSED: usize = 1000;

struct Planner<'a> {
    dest: &'a Path,
    tree: &'a StageTree,
    dev: Option<u64>,
    keep: bool,
    writable: HashMap<PathBuf, Result<(), Refusal>>,
    refused: Vec<Refused>,
    more_refused: u64,
    ops: Ops,
    kept: u64,
    /// `-k`: the directories DEST already had (merged with the archive's): their modes and times
    /// are left as they are, as GNU tar and bsdtar leave them with -k.
    existing_dirs: std::collections::HashSet<PathBuf>,
}

impl Planner<'_> {
    fn refuse(&mut self, entry: &Path, r: Refusal) {
        if self.refused.len() < MAX_REFUSED {
            self.refused.push(Refused {
                entry: show(entry),
                rule: r.rule,
                reason: r.reason,
                more: 0,
            });
        } else {
            self.more_refused += 1;
        }
    }

    /// Can we create and rename entries in the existing directory `dir`? Checked once per
    /// directory ([`policy::writable_dir`]).
    fn can_write_in(&mut self, dir: &Path) -> Result<(), Refusal> {
        if let Some(r) = self.writable.get(dir) {
            return r.clone();
        }
        let full = self.dest.join(dir);
        let shown = if dir.as_os_str().is_empty() {
            "the destination".to_string()
        } else {
            show(dir)
        };
        let md = fs::symlink_metadata(&full);
        let same_fs = md.as_ref().is_ok_and(|md| dev_of(md) == self.dev);
        let r = policy::writable_dir(&shown, md.map(|_| ()), same_fs, || access_write(&full));
        self.writable.insert(dir.to_path_buf(), r.clone());
        r
    }

    /// Adds a move or a replacement into the existing directory `parent`.
    fn place(&mut self, parent: &Path, child: &Path, replace: bool) {
        match self.can_write_in(parent) {
            Ok(()) => self.ops.push(child, replace),
            Err(r) => self.refuse(child, r),
        }
    }

    /// Merges the staged directory `start` (a real directory in DEST too) and every directory
    /// below it that both trees have. Iterative: a deep tree costs memory, not stack.
    fn merge(&mut self, start: PathBuf) -> io::Result<()> {
        let mut todo = vec![start];
        while let Some(rel) = todo.pop() {
            for ent in fs::read_dir(self.tree.path().join(&rel))? {
                let ent = ent?;
                let child = rel.join(ent.file_name());
                let staged_dir = ent.file_type()?.is_dir();
                let md = match fs::symlink_metadata(self.dest.join(&child)) {
                    Ok(md) => md,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        self.place(&rel, &child, false);
                        continue;
                    }
                    Err(e) => {
                        self.refuse(&child, policy::unexaminable(&e));
                        continue;
                    }
                };
                match policy::merge(&show(&child), staged_dir, md.file_type(), self.keep) {
                    Ok(Merge::Descend) => {
                        if self.keep {
                            self.existing_dirs.insert(child.clone());
                        }
                        todo.push(child)
                    }
                    Ok(Merge::Keep) => {
                        self.kept += 1;
                        tracing::info!("{}: exists; kept", show(&child));
                    }
                    Ok(Merge::Replace) => self.place(&rel, &child, true),
                    Err(r) => self.refuse(&child, r),
                }
            }
        }
        Ok(())
    }

    /// Refuses every staged symlink (one `-k` does not keep) that leads out of DEST through the
    /// final tree.
    fn check_symlinks(&mut self) {
        let tree = self.tree;
        // The directory of the last staged lookup, kept open across links (see kind_of_near).
        let last = std::cell::RefCell::new(None);
        for link in tree.symlinks() {
            let Some(crate::unpack::stage::Kind::Symlink(target)) = tree.kind_of(link) else {
                continue; // replaced by a later entry
            };
            if self.kept(link) {
                continue;
            }
            let lookup = |here: &Path| self.lookup(here, &mut last.borrow_mut());
            if let Err(r) = policy::symlink_escape(link, &target, lookup) {
                self.refuse(link, r);
            }
        }
    }

    /// Whether `-k` keeps what DEST holds at `rel` ([`policy::keeps`]).
    fn kept(&self, rel: &Path) -> bool {
        policy::keeps(self.keep, || fs::symlink_metadata(self.dest.join(rel)).ok())
    }

    /// What the final tree holds at `here`: the staging tree's entry, else what DEST holds (or
    /// DEST's, where `-k` keeps it). `Some(Some(target))` for a symlink, `Some(None)` for a
    /// directory, `None` for anything else that cannot be looked into or nothing at all.
    fn lookup(&self, here: &Path, last: &mut Option<(PathBuf, std::os::fd::OwnedFd)>) -> Lookup {
        if !self.kept(here) {
            match self.tree.kind_of_near(here, last) {
                Some(crate::unpack::stage::Kind::Dir) => return Lookup::Dir,
                Some(crate::unpack::stage::Kind::Symlink(t)) => return Lookup::Link(t),
                Some(crate::unpack::stage::Kind::Other) => return Lookup::Opaque,
                None => {}
            }
        }
        match fs::symlink_metadata(self.dest.join(here)) {
            Ok(md) if md.file_type().is_symlink() => match fs::read_link(self.dest.join(here)) {
                Ok(t) => Lookup::Link(path_bytes(&t).into_owned()),
                Err(_) => Lookup::Opaque,
            },
            Ok(md) if !md.is_dir() => Lookup::Opaque,
            Ok(_) => Lookup::Dir,
            Err(_) => Lookup::Nothing,
        }
    }
}

/// Checks the staging tree against DEST, then moves everything into place (see the module docs).
pub(crate) fn commit(
    opts: &Options<'_>,
    dest: &Path,
    staging: &mut Staging,
    tree: &StageTree,
    dirs: &DirMetas,
    stats: &mut UnpackStats,
    warnings: &mut Vec<Warning>,
) -> Result<()> {
    let (ops, kept, existing_dirs) = plan(opts, dest, staging.dev, tree)?;
    stats.kept_existing += kept;
    if opts.cancel.is_cancelled() {
        return Err(Error::Cancelled);
    }
    // From the first move until the staging directory is gone (on success, failure or cancel),
    // the run must finish: ending the process half way would strand originals kept aside.
    // A process already being abandoned (its staging directory removed) begins no move.
    staging.finishing = Some(opts.cancel.finishing().ok_or(Error::Cancelled)?);
    opts.cancel.not_disposable(&staging.path);
    apply(opts, dest, staging, tree, &ops)?;
    // Success: the originals kept aside go with the staging directory.
    if let Err(e) = staging.close() {
        warnings.push(Warning {
            path: dest.to_path_buf(),
            message: format!("could not remove this run's staging directory: {e}"),
        });
    }
    staging.finishing = None;
    apply_dir_metas(dest, dirs, &existing_dirs, warnings);
    if opts.sync {
        sync_dir(dest).map_err(|e| Error::Io {
            path: dest.to_path_buf(),
            source: e,
        })?;
    }
    Ok(())
}

/// Phase 1 (reads only): merges the staging tree with DEST and checks every symlink through the
/// final tree. Returns the moves to make, how many files `-k` kept and (with `-k`) the
/// directories DEST already had, or every refusal.
type Plan = (Ops, u64, std::collections::HashSet<PathBuf>);

fn plan(opts: &Options<'_>, dest: &Path, dev: Option<u64>, tree: &StageTree) -> Result<Plan> {
    let mut p = Planner {
        dest,
        tree,
        dev,
        keep: opts.keep_existing,
        writable: HashMap::new(),
        refused: Vec::new(),
        more_refused: 0,
        ops: Ops::default(),
        kept: 0,
        existing_dirs: std::collections::HashSet::new(),
    };
    if opts.keep_existing {
        p.existing_dirs.insert(PathBuf::new()); // DEST itself
    }
    p.merge(PathBuf::new()).map_err(|e| Error::Io {
        path: dest.to_path_buf(),
        source: io::Error::new(
            e.kind(),
            format!("reading this run's staging directory: {e}"),
        ),
    })?;
    if !opts.allow_outside_links {
        p.check_symlinks();
    }
    if !p.refused.is_empty() {
        let mut refused = std::mem::take(&mut p.refused);
        refused.sort_by(|a, b| a.entry.cmp(&b.entry));
        refused.dedup();
        if p.more_refused > 0 {
            refused.push(Refused {
                entry: format!("({} more entries)", p.more_refused),
                rule: refused[0].rule,
                reason: "refused too; only the first 1000 are listed".into(),
                more: p.more_refused,
            });
        }
        return Err(Error::Refused(refused));
    }
    Ok((std::mem::take(&mut p.ops), p.kept, p.existing_dirs))
}

/// Phase 2: makes every move; on a failure takes them all back and says what became of them.
fn apply(
    opts: &Options<'_>,
    dest: &Path,
    staging: &mut Staging,
    tree: &StageTree,
    ops: &Ops,
) -> Result<()> {
    // From here on every change is recorded so that a failure can undo it.
    let aside = staging.path().join("o");
    let (journal, failure) = match fs::create_dir(&aside) {
        Ok(()) => place_all(dest, tree.path(), &aside, ops, opts),
        Err(e) => (Vec::new(), Some((dest.to_path_buf(), e))),
    };
    let Some((path, source)) = failure else {
        return Ok(());
    };
    let cancelled = opts.cancel.is_cancelled();
    let undone = rollback(dest, tree.path(), &aside, ops, &journal, staging);
    if cancelled && undone.is_none() {
        return Err(Error::Cancelled);
    }
    let placed = journal.iter().filter(|d| d.placed).count();
    let what = match undone {
        None => format!(
            "could not be put in place, so nothing was changed: the {placed} entries already placed were taken back, every replaced file restored and the directories this run created removed"
        ),
        Some(lost) => format!(
            "could not be put in place; undoing the {placed} entries already placed failed for some: {lost}"
        ),
    };
    Err(Error::Commit { path, what, source })
}

/// Directory modes and times, deepest first (after everything inside them was placed), on real
/// directories only: each is entered from DEST a component at a time without following a link
/// (a later entry may have replaced a directory on the way by a symlink, even one leading out
/// of DEST with `--allow-outside-links`), which also reaches paths longer than `PATH_MAX`. With
/// `-k`, the directories DEST already had (`leave`, DEST itself among them) keep theirs.
fn apply_dir_metas(
    dest: &Path,
    dirs: &DirMetas,
    leave: &std::collections::HashSet<PathBuf>,
    warnings: &mut Vec<Warning>,
) {
    use rustix::fs::{Mode, OFlags};
    let dir_flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let root = match rustix::fs::open(dest, search_flags(), Mode::empty()) {
        Ok(fd) => fd,
        Err(e) => {
            warnings.push(Warning {
                path: dest.to_path_buf(),
                message: format!(
                    "could not apply the directories' modes and times: {}",
                    io::Error::from(e)
                ),
            });
            return;
        }
    };
    let mut order: Vec<u32> = (0..dirs.len() as u32).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(dirs.get(i as usize).0.components().count()));
    for i in order {
        let (rel, &(mode, mtime)) = dirs.get(i as usize);
        if leave.contains(rel) {
            continue;
        }
        let opened = if rel.as_os_str().is_empty() {
            rustix::fs::open(dest, dir_flags, Mode::empty())
                .map(Some)
                .map_err(io::Error::from)
        } else {
            open_dir_beneath(&root, rel)
        };
        let applied = opened.and_then(|fd| match fd {
            Some(fd) => {
                let d = fs::File::from(fd);
                d.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(
                    policy::safe_mode(mode),
                ))?;
                d.set_modified(mtime)
            }
            None => Ok(()),
        });
        if let Err(e) = applied {
            warnings.push(Warning {
                path: dest.join(rel),
                message: format!("could not apply the directory's mode and time: {e}"),
            });
        }
    }
}

/// Flags to open a directory only to go through it: `O_PATH` where Linux has it (search
/// permission is enough), elsewhere a read-only open.
fn search_flags() -> rustix::fs::OFlags {
    use rustix::fs::OFlags;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let how = OFlags::PATH;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let how = OFlags::RDONLY;
    how | OFlags::DIRECTORY | OFlags::CLOEXEC
}

/// Opens the directory `rel` below `root` to set its mode and time, entering every component
/// without following a link; `None` when one is missing, a link or not a directory (a later entry
/// replaced it). The directories on the way need only search permission, as for a path-based
/// open: Linux enters them with `O_PATH`.
fn open_dir_beneath(
    root: &std::os::fd::OwnedFd,
    rel: &Path,
) -> io::Result<Option<std::os::fd::OwnedFd>> {
    use rustix::fs::OFlags;
    let on_the_way = search_flags() | OFlags::NOFOLLOW;
    let Some((parent, name)) = stage::open_parent_beneath_via(root, rel, on_the_way)? else {
        return Ok(None);
    };
    let last = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    stage::enter(&parent, name, last)
}

/// Makes every planned move, in parallel. Returns what was done and the first failure.
fn place_all(
    dest: &Path,
    tree: &Path,
    aside: &Path,
    ops: &Ops,
    opts: &Options<'_>,
) -> (Vec<Done>, Failure) {
    let stop = AtomicBool::new(false);
    let n = ops.len();
    let chunk = n.div_ceil(opts.jobs.max(1)).max(1);
    let results: Vec<(Vec<Done>, Failure)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .step_by(chunk)
            .map(|start| {
                let stop = &stop;
                crate::threads::spawn(s, "commit", move || {
                    let mut journal = Vec::new();
                    for i in start..(start + chunk).min(n) {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let to = dest.join(ops.get(i).0);
                        if opts.cancel.is_cancelled() {
                            stop.store(true, Ordering::Relaxed);
                            return (journal, Some((to, io::Error::other("interrupted"))));
                        }
                        // A panic is a failure like any other: the journal (outside the catch)
                        // keeps every move made so far, so all of them are rolled back.
                        let placed = crate::threads::catch(
                            "commit",
                            || None,
                            || place(dest, tree, aside, ops, i, &mut journal),
                        )
                        .unwrap_or_else(|e| Err(io::Error::other(e.to_string())));
                        if let Err(e) = placed {
                            stop.store(true, Ordering::Relaxed);
                            return (journal, Some((to, e)));
                        }
                    }
                    (journal, None)
                })
            })
            .collect();
        let failed = |why: String| {
            (
                Vec::new(),
                Some((dest.to_path_buf(), io::Error::other(why))),
            )
        };
        handles
            .into_iter()
            .map(
                |h| match h.and_then(|h| crate::threads::join("commit", h)) {
                    Ok(done) => done,
                    Err(e) => failed(e.to_string()),
                },
            )
            .collect()
    });
    let mut journal = Vec::new();
    let mut failure = None;
    for (j, f) in results {
        journal.extend(j);
        if failure.is_none() {
            failure = f;
        }
    }
    (journal, failure)
}

/// Makes one move. An existing entry is first given a second name in the staging directory (a
/// hard link, so the replacement below stays atomic; a rename where the filesystem has no hard
/// links), so it can be restored until the whole commit succeeded. A new name is never allowed
/// to replace anything (something that appeared since the plan fails the commit instead).
fn place(
    dest: &Path,
    tree: &Path,
    aside: &Path,
    ops: &Ops,
    i: usize,
    journal: &mut Vec<Done>,
) -> io::Result<()> {
    let (rel, &replace) = ops.get(i);
    let to = dest.join(rel);
    let mut done = Done {
        op: i,
        aside: false,
        placed: false,
    };
    if replace {
        let kept = aside.join(i.to_string());
        match fs::hard_link(&to, &kept) {
            Ok(()) => done.aside = true,
            Err(_) => match fs::rename(&to, &kept) {
                Ok(()) => done.aside = true,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            },
        }
    }
    let from = tree.join(rel);
    let result = match injected_fault() {
        Some(e) => Err(e),
        None if replace => fs::rename(&from, &to),
        None => rename_new(&from, &to),
    };
    done.placed = result.is_ok();
    journal.push(done);
    result
}

/// Renames `from` to `to`, which must not exist.
fn rename_new(from: &Path, to: &Path) -> io::Result<()> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use rustix::fs::{renameat_with, RenameFlags, CWD};
        match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
            Ok(()) => return Ok(()),
            // Filesystems without RENAME_NOREPLACE: check, then rename.
            Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS) => {}
            Err(e) => return Err(e.into()),
        }
    }
    if fs::symlink_metadata(to).is_ok() {
        return Err(io::Error::from(io::ErrorKind::AlreadyExists));
    }
    fs::rename(from, to)
}

/// Undoes `journal`: moves go back into the staging tree, replaced originals return. `None` when
/// everything was restored; otherwise which originals could not be, and where they are kept (the
/// staging directory is then left in place).
fn rollback(
    dest: &Path,
    tree: &Path,
    aside: &Path,
    ops: &Ops,
    journal: &[Done],
    staging: &mut Staging,
) -> Option<String> {
    injected_delay();
    let mut lost = Vec::new();
    for d in journal.iter().rev() {
        let rel = ops.get(d.op).0;
        let to = dest.join(rel);
        let kept = aside.join(d.op.to_string());
        let restored = if d.aside {
            // Renaming the original back replaces our entry atomically.
            fs::rename(&kept, &to)
        } else if d.placed {
            fs::rename(&to, tree.join(rel))
        } else {
            Ok(())
        };
        if let Err(e) = restored {
            lost.push(if d.aside {
                format!(
                    "{} ({e}; the original is kept as {})",
                    to.display(),
                    kept.display()
                )
            } else {
                format!("{} ({e}; the new entry remains)", to.display())
            });
        }
    }
    if lost.is_empty() {
        None
    } else {
        staging.keep();
        Some(lost.join(", "))
    }
}

/// Fault injection for the test suite (debug builds only): `ARCHIVER_TEST_FAIL_COMMIT_AT=N` makes
/// the N-th move into place fail with ENOSPC, after the entry it replaces was set aside.
/// `ARCHIVER_TEST_SIGNAL_AT_COMMIT=N` sends this process SIGINT at the N-th move instead (the
/// signal lands mid-commit at a known point).
fn injected_fault() -> Option<io::Error> {
    #[cfg(all(debug_assertions, unix))]
    {
        use std::sync::atomic::AtomicU64;
        static PLACED: AtomicU64 = AtomicU64::new(0);
        let n = PLACED.fetch_add(1, Ordering::SeqCst) + 1;
        let at = |var: &str| std::env::var(var).ok()?.parse::<u64>().ok();
        if at("ARCHIVER_TEST_SIGNAL_AT_COMMIT") == Some(n) {
            // SAFETY: signalling our own process; the handler only sets flags.
            unsafe { libc::kill(libc::getpid(), libc::SIGINT) };
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        if at("ARCHIVER_TEST_FAIL_COMMIT_AT") == Some(n) {
            return Some(io::Error::from_raw_os_error(libc::ENOSPC));
        }
    }
    None
}

/// Test hook (debug builds only): `ARCHIVER_TEST_SLOW_ROLLBACK_MS=M` starts the rollback M ms
/// late, as a slow disk would, so a test sees whether a signal's watchdog waits for it.
fn injected_delay() {
    #[cfg(all(debug_assertions, unix))]
    if let Some(ms) = std::env::var("ARCHIVER_TEST_SLOW_ROLLBACK_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}

#[cfg(unix)]
fn dev_of(md: &fs::Metadata) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    Some(md.dev())
}

#[cfg(not(unix))]
fn dev_of(_md: &fs::Metadata) -> Option<u64> {
    None
}

/// Whether we may create and rename entries in `dir` (write and search permission, for our
/// effective ids; a read-only filesystem fails too).
#[cfg(unix)]
fn access_write(dir: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| io::Error::other("NUL in a path"))?;
    // SAFETY: a NUL-terminated path; faccessat only reads it.
    let r = unsafe {
        libc::faccessat(
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::W_OK | libc::X_OK,
            libc::AT_EACCESS,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(unix))]
fn access_write(_dir: &Path) -> io::Result<()> {
    Ok(())
}

/// Makes everything written under `dest` durable with one call: `syncfs` on Linux; elsewhere
/// `sync`, which is what POSIX offers without an fsync per file.
fn sync_dir(dest: &Path) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::io::AsRawFd;
        let d = fs::File::open(dest)?;
        // SAFETY: a valid open descriptor.
        if unsafe { libc::syncfs(d.as_raw_fd()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
    #[cfg(all(unix, not(target_os = "linux")))]
    {
        let _ = dest;
        // SAFETY: sync takes no arguments and cannot fail.
        unsafe { libc::sync() };
        Ok(())
    }
    #[cfg(not(unix))]
    {
        let _ = dest;
        Ok(())
    }
}
