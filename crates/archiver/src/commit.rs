//! The last step of an unpack: turn the model of the archive into files in DEST, all or nothing.
//!
//! While the archive is read, nothing in DEST is touched: files go to a staging directory inside
//! DEST (`.archiver-XXXXXX`, created exclusively, holding files named by number, so their names
//! are short whatever the entry's name). The reader builds a [`Model`]: every accepted entry in
//! archive order, and for each path the entry that wins (the later one, whatever the types, as GNU
//! tar and bsdtar do).
//!
//! [`commit`] then works in two phases:
//!
//! 1. **Plan** (reads only): the final tree is computed, and every check that can refuse an entry
//!    runs against it and against what DEST holds: directories on the way must be real directories
//!    (a symlink in DEST is never followed), a directory in the way of a file or a file in the way
//!    of a directory is refused, each directory we must write in is writable and on the staging
//!    directory's filesystem, every symlink is resolved through the final tree (archive entries and
//!    DEST's own links) and must stay inside DEST. Any refusal ends the run here: DEST unchanged.
//! 2. **Apply**: missing directories are created, links are made inside the staging directory,
//!    then every entry is renamed into place. An existing file is first hard-linked (or, where the
//!    filesystem has no hard links, renamed) to a staging name, so the replacement stays atomic
//!    and the original survives until the whole commit succeeded. If any step fails (ENOSPC, EIO,
//!    EPERM, a cancel), every entry already placed is taken back, the originals return and the
//!    directories this run created are removed; the error says so.

use std::collections::{HashMap, VecDeque};
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use crate::error::{Error, Result};
use crate::list::escape_name;
use crate::manifest::path_bytes;
use crate::unpack::{Refused, UnpackStats};
use crate::{safety, Cancel, Warning};

/// What an accepted entry is.
#[derive(Debug)]
pub(crate) enum Kind {
    /// A regular file; `staged`: its data is in the staging directory (false: verify only, or
    /// `-k` keeps the existing file). `hash` and `size` arrive from the writer.
    File {
        mode: u32,
        staged: bool,
        hash: Option<blake3::Hash>,
        size: u64,
    },
    Dir {
        mode: u32,
        mtime: SystemTime,
    },
    Sym {
        target: PathBuf,
    },
    /// A hard link to the regular file entry `source` (an index into [`Model::nodes`]).
    Hard {
        source: usize,
    },
}

impl Kind {
    fn is_dir(&self) -> bool {
        matches!(self, Kind::Dir { .. })
    }
}

/// One accepted entry.
#[derive(Debug)]
pub(crate) struct Node {
    pub seq: u64,
    pub rel: Arc<Path>,
    pub kind: Kind,
}

/// The archive as the reader accepted it.
#[derive(Debug, Default)]
pub(crate) struct Model {
    /// In archive order (ascending `seq`).
    pub nodes: Vec<Node>,
    /// For each path, the latest entry there.
    pub latest: HashMap<Arc<Path>, usize>,
    /// Paths where a directory replaced a non-directory: the latest such non-directory's `seq`.
    /// Entries below it that are older than it were removed with it.
    cut: HashMap<Arc<Path>, u64>,
}

impl Model {
    /// Adds an entry; it replaces whatever was at its path.
    pub fn insert(&mut self, seq: u64, rel: PathBuf, kind: Kind) -> Arc<Path> {
        let rel: Arc<Path> = Arc::from(rel);
        if kind.is_dir() {
            if let Some(&prev) = self.latest.get(&rel) {
                if !self.nodes[prev].kind.is_dir() {
                    self.cut.insert(Arc::clone(&rel), self.nodes[prev].seq);
                }
            }
        }
        self.nodes.push(Node {
            seq,
            rel: Arc::clone(&rel),
            kind,
        });
        self.latest.insert(Arc::clone(&rel), self.nodes.len() - 1);
        rel
    }

    /// Why an entry at `rel` cannot be made: a parent is, at this point of the archive, a file or
    /// a symlink (the archive would have to write through it).
    pub fn parent_conflict(&self, rel: &Path) -> Option<String> {
        for a in rel.ancestors().skip(1) {
            if a.as_os_str().is_empty() {
                break;
            }
            if let Some(&i) = self.latest.get(a) {
                return match &self.nodes[i].kind {
                    Kind::Dir { .. } => continue,
                    Kind::Sym { .. } => Some(format!(
                        "{} is a symlink in this archive; refusing to write through it",
                        show(a)
                    )),
                    _ => Some(format!(
                        "{} is a file earlier in this archive, not a directory",
                        show(a)
                    )),
                };
            }
        }
        None
    }

    /// True when a later entry at one of `i`'s parents removed it.
    fn removed(&self, i: usize) -> bool {
        let n = &self.nodes[i];
        n.rel.ancestors().skip(1).any(|a| {
            self.latest
                .get(a)
                .is_some_and(|&j| !self.nodes[j].kind.is_dir() && self.nodes[j].seq > n.seq)
                || self.cut.get(a).is_some_and(|&s| s > n.seq)
        })
    }
}

/// An entry name for messages: escaped, never raw control characters.
fn show(p: &Path) -> String {
    escape_name(&path_bytes(p))
}

/// The per-run staging directory inside DEST. Dropping it removes it with everything inside,
/// unless [`Staging::keep`] was called (originals that could not be restored are there).
pub(crate) struct Staging {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
    name: OsString,
    dev: Option<u64>,
}

impl Staging {
    /// Creates `DEST/.archiver-XXXXXX` exclusively (mkdir, never reusing or deleting a name).
    pub fn create(dest: &Path) -> Result<Staging> {
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
        Ok(Staging {
            dir: Some(dir),
            path,
            name,
            dev,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn name(&self) -> &OsStr {
        &self.name
    }

    fn keep(&mut self) {
        if let Some(d) = self.dir.take() {
            let _ = d.keep();
        }
    }

    fn close(&mut self) -> io::Result<()> {
        match self.dir.take() {
            Some(d) => d.close(),
            None => Ok(()),
        }
    }
}

/// Creates a staged file exclusively (`O_EXCL`), readable only by us until its mode is set.
pub(crate) fn create_staged(path: &Path) -> io::Result<fs::File> {
    let mut o = fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path)
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

/// What DEST holds at a directory path the final tree needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DirState {
    /// A real directory, already there.
    Exists,
    /// Not there: this run creates it.
    Create,
    /// In the way (a symlink or a file); already reported.
    Bad,
}

/// One entry to move into place.
struct Op {
    rel: Arc<Path>,
    /// Its staged name.
    from: PathBuf,
    /// Something exists at its place and is replaced (kept aside until the end).
    replace: bool,
    seq: u64,
}

/// The first failure of a commit: where, and what the system said.
type Failure = Option<(PathBuf, io::Error)>;

/// What was done for one [`Op`], so it can be undone.
struct Done {
    to: PathBuf,
    aside: Option<PathBuf>,
    placed: bool,
}

struct Planner<'a> {
    dest: &'a Path,
    staging: &'a Staging,
    model: &'a Model,
    keep: bool,
    dirs: HashMap<PathBuf, DirState>,
    writable: HashMap<PathBuf, Option<String>>,
    creates: Vec<PathBuf>,
    refused: Vec<Refused>,
    /// The final entry at each path (indices into the model), kept paths excluded.
    finals: HashMap<&'a Path, usize>,
}

impl Planner<'_> {
    fn refuse(&mut self, entry: &Path, reason: String) {
        self.refused.push(Refused {
            entry: show(entry),
            reason,
        });
    }

    /// Can we create and rename entries in the existing directory `dir`? Checked once per
    /// directory: write and search permission, and the staging directory's filesystem (rename
    /// cannot cross filesystems).
    fn can_write_in(&mut self, dir: &Path) -> Option<String> {
        if let Some(r) = self.writable.get(dir) {
            return r.clone();
        }
        let full = self.dest.join(dir);
        let shown = if dir.as_os_str().is_empty() {
            "the destination".to_string()
        } else {
            show(dir)
        };
        let why = match fs::symlink_metadata(&full) {
            Err(e) => Some(format!("cannot examine {shown}: {e}")),
            Ok(md) if dev_of(&md) != self.staging.dev => Some(format!(
                "{shown} is on another filesystem than the destination (a mount point); unpack into it separately"
            )),
            Ok(_) => match access_write(&full) {
                Ok(()) => None,
                Err(e) => Some(format!(
                    "cannot create or replace anything in {shown}: {e}; fix its permissions or run as its owner"
                )),
            },
        };
        self.writable.insert(dir.to_path_buf(), why.clone());
        why
    }

    /// The state of directory `rel` (a parent of some entry, or a directory entry), checking and
    /// memoising every directory on the way. `entry` names the entry a refusal is reported for.
    fn dir_state(&mut self, rel: &Path, entry: &Path) -> DirState {
        if rel.as_os_str().is_empty() {
            return DirState::Exists;
        }
        if let Some(&s) = self.dirs.get(rel) {
            return s;
        }
        let parent = rel.parent().unwrap_or(Path::new(""));
        let state = match self.dir_state(parent, entry) {
            DirState::Bad => DirState::Bad,
            DirState::Create => {
                self.creates.push(rel.to_path_buf());
                DirState::Create
            }
            DirState::Exists => match fs::symlink_metadata(self.dest.join(rel)) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => match self.can_write_in(parent) {
                    None => {
                        self.creates.push(rel.to_path_buf());
                        DirState::Create
                    }
                    Some(why) => {
                        self.refuse(entry, why);
                        DirState::Bad
                    }
                },
                Err(e) => {
                    self.refuse(entry, format!("cannot examine {}: {e}", show(rel)));
                    DirState::Bad
                }
                Ok(md) if md.file_type().is_symlink() => {
                    self.refuse(
                        entry,
                        format!(
                            "{} is a symbolic link in the destination; refusing to write through it",
                            show(rel)
                        ),
                    );
                    DirState::Bad
                }
                Ok(md) if md.is_dir() => DirState::Exists,
                Ok(_) => {
                    self.refuse(
                        entry,
                        format!(
                            "{} exists in the destination and is not a directory; remove it first",
                            show(rel)
                        ),
                    );
                    DirState::Bad
                }
            },
        };
        self.dirs.insert(rel.to_path_buf(), state);
        state
    }

    /// Resolves the symlink at `link` (target `target`) through the final tree: archive entries
    /// first, then what DEST holds. Returns why it is refused when it leads out of DEST.
    fn escapes(&self, link: &Path, target: &Path) -> Option<String> {
        /// One step of a path still to resolve.
        enum Seg {
            Up,
            Name(OsString),
        }
        fn segs(t: &Path) -> Option<Vec<Seg>> {
            let mut out = Vec::new();
            for c in t.components() {
                match c {
                    Component::CurDir => {}
                    Component::ParentDir => out.push(Seg::Up),
                    Component::Normal(n) => out.push(Seg::Name(n.to_owned())),
                    Component::RootDir | Component::Prefix(_) => return None,
                }
            }
            Some(out)
        }
        let mut cur: Vec<OsString> = link
            .parent()
            .map(|p| p.iter().map(OsStr::to_owned).collect())
            .unwrap_or_default();
        let Some(first) = segs(target) else {
            return Some("symlink to an absolute path".into());
        };
        let mut todo: VecDeque<Seg> = first.into();
        let mut hops = 0;
        // After a regular file (or an unreadable link) nothing more can be looked up; the rest
        // of the path is still followed lexically, so `file/../..` cannot climb out either.
        let mut opaque = false;
        while let Some(seg) = todo.pop_front() {
            let name = match seg {
                Seg::Up => {
                    if cur.pop().is_none() {
                        return Some(if hops == 0 {
                            "symlink target leaves the destination".into()
                        } else {
                            "symlink resolves outside the destination through other links".into()
                        });
                    }
                    continue;
                }
                Seg::Name(n) => n,
            };
            cur.push(name);
            if opaque {
                continue;
            }
            let here: PathBuf = cur.iter().collect();
            let next: Option<PathBuf> = match self.finals.get(here.as_path()) {
                Some(&i) => match &self.model.nodes[i].kind {
                    Kind::Sym { target } => Some(target.clone()),
                    Kind::Dir { .. } => None,
                    _ => {
                        opaque = true;
                        None
                    }
                },
                // Not an entry of the archive (or one `-k` keeps): what DEST holds counts.
                None => match fs::symlink_metadata(self.dest.join(&here)) {
                    Ok(md) if md.file_type().is_symlink() => {
                        let t = fs::read_link(self.dest.join(&here)).ok();
                        opaque = t.is_none();
                        t
                    }
                    Ok(md) if !md.is_dir() => {
                        opaque = true;
                        None
                    }
                    _ => None,
                },
            };
            let Some(t) = next else { continue };
            hops += 1;
            if hops > 40 {
                return Some("symlink chain longer than 40 links, or a loop".into());
            }
            let Some(more) = segs(&t) else {
                return Some(format!(
                    "symlink resolves outside the destination through {}, which points to an absolute path",
                    show(&here)
                ));
            };
            cur.pop();
            for s in more.into_iter().rev() {
                todo.push_front(s);
            }
        }
        None
    }
}

/// Checks the final tree against DEST, then moves everything into place (see the module docs).
pub(crate) fn commit(
    opts: &Options<'_>,
    dest: &Path,
    staging: &mut Staging,
    model: &Model,
    stats: &mut UnpackStats,
    warnings: &mut Vec<Warning>,
) -> Result<()> {
    // The final tree: the latest entry at each path, unless a later entry at a parent removed it.
    let mut finals: Vec<usize> = model
        .latest
        .values()
        .copied()
        .filter(|&i| !model.removed(i))
        .collect();
    finals.sort_unstable_by(|&a, &b| model.nodes[a].rel.cmp(&model.nodes[b].rel));
    let mut p = Planner {
        dest,
        staging,
        model,
        keep: opts.keep_existing,
        dirs: HashMap::new(),
        writable: HashMap::new(),
        creates: Vec::new(),
        refused: Vec::new(),
        finals: HashMap::with_capacity(finals.len()),
    };
    let mut ops: Vec<Op> = Vec::new();
    let mut links: Vec<usize> = Vec::new();
    let mut dir_meta: Vec<usize> = Vec::new();
    for &i in &finals {
        let n = &model.nodes[i];
        let rel: &Path = &n.rel;
        if let Kind::Dir { .. } = n.kind {
            if p.dir_state(rel, rel) != DirState::Bad {
                dir_meta.push(i);
                p.finals.insert(rel, i);
            }
            continue;
        }
        let parent = rel.parent().unwrap_or(Path::new(""));
        let parent_state = p.dir_state(parent, rel);
        let exists = match parent_state {
            DirState::Bad => continue,
            DirState::Create => None,
            DirState::Exists => match fs::symlink_metadata(dest.join(rel)) {
                Ok(md) => Some(md),
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(e) => {
                    p.refuse(rel, format!("cannot examine it in the destination: {e}"));
                    continue;
                }
            },
        };
        let staged_file = matches!(n.kind, Kind::File { staged: true, .. });
        let kept_file = matches!(n.kind, Kind::File { staged: false, .. });
        match &exists {
            Some(_) if p.keep || kept_file => {
                stats.kept_existing += 1;
                tracing::info!("{}: exists; kept", show(rel));
                continue;
            }
            None if kept_file => continue, // existed when read, gone now: nothing to keep
            Some(md) if md.is_dir() => {
                p.refuse(
                    rel,
                    "a directory is in the way in the destination; remove it first (or use -k to keep it)"
                        .into(),
                );
                continue;
            }
            _ => {}
        }
        if parent_state == DirState::Exists {
            if let Some(why) = p.can_write_in(parent) {
                p.refuse(rel, why);
                continue;
            }
        }
        p.finals.insert(rel, i);
        let from = if staged_file {
            staging.path().join(n.seq.to_string())
        } else {
            links.push(i);
            staging.path().join(format!("l{}", n.seq))
        };
        ops.push(Op {
            rel: Arc::clone(&n.rel),
            from,
            replace: exists.is_some(),
            seq: n.seq,
        });
    }
    // Links, checked against the final tree now that it is known.
    for &i in &links {
        let n = &model.nodes[i];
        match &n.kind {
            Kind::Sym { target } if !opts.allow_outside_links => {
                if let Some(why) = p.escapes(&n.rel, target) {
                    p.refuse(&n.rel, why);
                }
            }
            Kind::Hard { source } => {
                let src = &model.nodes[*source];
                if let Kind::File { staged: false, .. } = src.kind {
                    // `-k` kept the file this links to: link to the file DEST holds, which
                    // must then be a regular file.
                    match fs::symlink_metadata(dest.join(&src.rel)) {
                        Ok(md) if md.is_file() => {}
                        _ => p.refuse(
                            &n.rel,
                            format!(
                                "hard link to {}, which the destination holds (kept) as something other than a regular file",
                                show(&src.rel)
                            ),
                        ),
                    }
                }
            }
            _ => {}
        }
    }
    if !p.refused.is_empty() {
        return Err(Error::Refused(std::mem::take(&mut p.refused)));
    }
    let creates = std::mem::take(&mut p.creates);
    drop(p);
    if opts.cancel.is_cancelled() {
        return Err(Error::Cancelled);
    }

    // Apply. From here on every change is recorded so that a failure can undo it.
    let mut created: Vec<&Path> = Vec::with_capacity(creates.len());
    let mut failure: Failure = None;
    for d in &creates {
        match fs::create_dir(dest.join(d)) {
            Ok(()) => created.push(d),
            Err(e) => {
                failure = Some((dest.join(d), e));
                break;
            }
        }
    }
    if failure.is_none() {
        for &i in &links {
            let n = &model.nodes[i];
            let at = staging.path().join(format!("l{}", n.seq));
            let made = match &n.kind {
                Kind::Sym { target } => make_symlink(target, &at),
                Kind::Hard { source } => {
                    let src = &model.nodes[*source];
                    let from = match src.kind {
                        Kind::File { staged: true, .. } => staging.path().join(src.seq.to_string()),
                        _ => dest.join(&src.rel),
                    };
                    fs::hard_link(from, &at)
                }
                _ => Ok(()),
            };
            if let Err(e) = made {
                failure = Some((dest.join(&n.rel), e));
                break;
            }
        }
    }
    let mut journal: Vec<Done> = Vec::with_capacity(ops.len());
    if failure.is_none() {
        let (j, f) = place_all(dest, staging.path(), &ops, opts);
        journal = j;
        failure = f;
    }
    if let Some((path, source)) = failure {
        let cancelled = opts.cancel.is_cancelled();
        let undone = rollback(dest, &journal, &created, staging);
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
        return Err(Error::Commit { path, what, source });
    }
    stats.symlinks = 0;
    stats.hardlinks = 0;
    for &i in &links {
        match model.nodes[i].kind {
            Kind::Sym { .. } => stats.symlinks += 1,
            _ => stats.hardlinks += 1,
        }
    }
    // Success: the originals kept aside go with the staging directory.
    if let Err(e) = staging.close() {
        warnings.push(Warning {
            path: dest.to_path_buf(),
            message: format!("could not remove this run's staging directory: {e}"),
        });
    }
    // Directory modes and times, deepest first (after everything inside them was placed).
    dir_meta.sort_by_key(|&i| std::cmp::Reverse(model.nodes[i].rel.components().count()));
    for &i in &dir_meta {
        let n = &model.nodes[i];
        if let Kind::Dir { mode, mtime } = n.kind {
            let path = dest.join(&n.rel);
            let applied = set_mode(&path, safety::safe_mode(mode))
                .and_then(|()| fs::File::open(&path)?.set_modified(mtime));
            if let Err(e) = applied {
                warnings.push(Warning {
                    path: path.clone(),
                    message: format!("could not apply the directory's mode and time: {e}"),
                });
            }
        }
    }
    if opts.sync {
        sync_dir(dest).map_err(|e| Error::Io {
            path: dest.to_path_buf(),
            source: e,
        })?;
    }
    Ok(())
}

/// Moves every staged entry into place, in parallel. Returns what was done and the first failure.
fn place_all(dest: &Path, staging: &Path, ops: &[Op], opts: &Options<'_>) -> (Vec<Done>, Failure) {
    let stop = AtomicBool::new(false);
    let chunk = ops.len().div_ceil(opts.jobs.max(1)).max(1);
    let results: Vec<(Vec<Done>, Failure)> = std::thread::scope(|s| {
        let handles: Vec<_> = ops
            .chunks(chunk)
            .map(|part| {
                let stop = &stop;
                s.spawn(move || {
                    let mut journal = Vec::with_capacity(part.len());
                    for op in part {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        if opts.cancel.is_cancelled() {
                            stop.store(true, Ordering::Relaxed);
                            return (
                                journal,
                                Some((dest.join(&op.rel), io::Error::other("interrupted"))),
                            );
                        }
                        if let Err(e) = place(dest, staging, op, &mut journal) {
                            stop.store(true, Ordering::Relaxed);
                            return (journal, Some((dest.join(&op.rel), e)));
                        }
                    }
                    (journal, None)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    (
                        Vec::new(),
                        Some((
                            dest.to_path_buf(),
                            io::Error::other("a commit thread panicked"),
                        )),
                    )
                })
            })
            .collect()
    });
    let mut journal = Vec::with_capacity(ops.len());
    let mut failure = None;
    for (j, f) in results {
        journal.extend(j);
        if failure.is_none() {
            failure = f;
        }
    }
    (journal, failure)
}

/// Puts one entry in place. An existing entry is first given a second name in the staging
/// directory (a hard link, so the replacement below stays atomic; a rename where the filesystem
/// has no hard links), so it can be restored until the whole commit succeeded.
fn place(dest: &Path, staging: &Path, op: &Op, journal: &mut Vec<Done>) -> io::Result<()> {
    let to = dest.join(&op.rel);
    let mut done = Done {
        to,
        aside: None,
        placed: false,
    };
    if op.replace {
        let aside = staging.join(format!("o{}", op.seq));
        match fs::hard_link(&done.to, &aside) {
            Ok(()) => done.aside = Some(aside),
            Err(_) => match fs::rename(&done.to, &aside) {
                Ok(()) => done.aside = Some(aside),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            },
        }
    }
    let result = injected_fault().map_or_else(|| fs::rename(&op.from, &done.to), Err);
    done.placed = result.is_ok();
    journal.push(done);
    result
}

/// Fault injection for the test suite (debug builds only): `ARCHIVER_TEST_FAIL_COMMIT_AT=N` makes
/// the N-th move into place fail with ENOSPC, after the entry it replaces was set aside.
fn injected_fault() -> Option<io::Error> {
    #[cfg(all(debug_assertions, unix))]
    {
        use std::sync::atomic::AtomicU64;
        static PLACED: AtomicU64 = AtomicU64::new(0);
        let at: u64 = std::env::var("ARCHIVER_TEST_FAIL_COMMIT_AT")
            .ok()?
            .parse()
            .ok()?;
        if PLACED.fetch_add(1, Ordering::SeqCst) + 1 == at {
            return Some(io::Error::from_raw_os_error(libc::ENOSPC));
        }
    }
    None
}

/// Undoes `journal` and removes the directories this run created. `None` when everything was
/// restored; otherwise which originals could not be, and where they are kept (the staging
/// directory is then left in place).
fn rollback(
    dest: &Path,
    journal: &[Done],
    created: &[&Path],
    staging: &mut Staging,
) -> Option<String> {
    let mut lost = Vec::new();
    for d in journal.iter().rev() {
        let restored = match &d.aside {
            // Renaming the original back replaces our entry atomically.
            Some(aside) => fs::rename(aside, &d.to),
            None if d.placed => fs::remove_file(&d.to),
            None => Ok(()),
        };
        if let Err(e) = restored {
            lost.push(match &d.aside {
                Some(aside) => format!(
                    "{} ({e}; the original is kept as {})",
                    d.to.display(),
                    aside.display()
                ),
                None => format!("{} ({e}; the new entry remains)", d.to.display()),
            });
        }
    }
    for d in created.iter().rev() {
        let _ = fs::remove_dir(dest.join(d));
    }
    if lost.is_empty() {
        None
    } else {
        staging.keep();
        Some(lost.join(", "))
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

#[cfg(unix)]
fn make_symlink(target: &Path, at: &Path) -> io::Result<()> {
    std::os::unix::fs::symlink(target, at)
}

#[cfg(not(unix))]
fn make_symlink(_target: &Path, _at: &Path) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "symbolic links are not supported on this platform",
    ))
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> io::Result<()> {
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
