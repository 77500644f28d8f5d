//! The staging tree of an unpack: the archive's entries, created as they are read, in a mirror of
//! the final tree inside the run's staging directory (`DEST/.archiver-XXXXXX/t`).
//!
//! Written here rather than taken from a crate because no crate offers what it must guarantee:
//! - **The filesystem is the model.** Later entries replace earlier ones at the same path (tar's
//!   rule, whatever the two types; a directory holding entries is not replaced, as GNU tar and
//!   bsdtar refuse it), and
//!   nothing about the entries is kept in memory: unpacking a million files costs no more memory
//!   than unpacking ten.
//! - **Nothing is written through a link.** Every directory is entered with
//!   `openat(O_DIRECTORY | O_NOFOLLOW)` from the one above it, so an entry below a symlink (or a
//!   file) of the archive is refused, never followed; new names are created exclusively
//!   (`O_EXCL`, `mkdirat`, `symlinkat`, `linkat`), and an existing staged name (only ever ours) is
//!   removed first.
//! - **Few system calls.** The reader keeps the open directories of the current entry's parent
//!   chain; archives are in tree order, so a directory is opened once, not once per file. When DEST
//!   holds nothing of the archive, the commit then moves whole top-level directories into place
//!   with one rename each, instead of one rename per file.
//!
//! Only the reader thread changes the tree's structure; writer threads only fill the files it
//! created (through their open descriptors), so creation order is archive order.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{AtFlags, FileType, Mode, OFlags};

use crate::error::Rule;
use crate::list::escape_name;
use crate::manifest::path_bytes;
use crate::unpack::commit::PathList;
use crate::unpack::policy::{self, Refusal};

/// Why an entry cannot be staged: a rule of the archive's own tree (reported as a refusal of that
/// entry), or a system error (fatal for the run).
#[derive(Debug)]
pub(crate) enum StageError {
    Refuse(Rule, String),
    /// The operation touches a path a writer may still be creating: wait for the writers
    /// ([`StageTree::writers_done`]), then run it again.
    Barrier,
    Io(io::Error),
}

impl From<Refusal> for StageError {
    fn from(r: Refusal) -> Self {
        StageError::Refuse(r.rule, r.reason)
    }
}

impl From<io::Error> for StageError {
    fn from(e: io::Error) -> Self {
        StageError::Io(e)
    }
}

impl From<rustix::io::Errno> for StageError {
    fn from(e: rustix::io::Errno) -> Self {
        StageError::Io(e.into())
    }
}

type Staged<T> = std::result::Result<T, StageError>;

/// What a hard link's source is in the staging tree.
pub(crate) enum LinkSource {
    /// A regular file: the link was made.
    Linked,
    /// A symlink: the caller checks its target from the link's own place and makes a symlink.
    Symlink(Vec<u8>),
    /// Not staged (no earlier entry there, or `-k` kept it and it was never staged).
    Missing,
}

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// What the staging tree holds at a path.
pub(crate) enum Kind {
    Dir,
    Symlink(Vec<u8>),
    /// A regular file (or anything else that cannot be looked into).
    Other,
}

/// The mirror tree being built.
pub(crate) struct StageTree {
    root: Arc<OwnedFd>,
    path: PathBuf,
    /// The open directories of the last entry's parent chain, from the root down.
    stack: Vec<(OsString, Arc<OwnedFd>)>,
    /// Every path staged so far (entries and the directories made for them). A file whose path
    /// is certainly not in it is new: its writer may create it, in parallel with the reader.
    seen: Bloom,
    /// Files handed to writers to create since the writers were last known done. Any operation
    /// on such a path (or below it) first waits for the writers, so archive order is kept.
    pending: Bloom,
    pending_any: bool,
    /// Every staged symlink's path, checked against the final tree at commit.
    symlinks: PathList<()>,
    /// The process umask, where it can be read without changing it.
    umask: Option<u32>,
}

impl StageTree {
    /// Creates the (empty) tree at `path`, which must not exist.
    pub fn create(path: &Path) -> io::Result<StageTree> {
        std::fs::create_dir(path)?;
        let root = Arc::new(rustix::fs::open(path, DIR_FLAGS, Mode::empty())?);
        Ok(StageTree {
            root,
            path: path.to_path_buf(),
            stack: Vec::new(),
            seen: Bloom::new(SEEN_BITS),
            pending: Bloom::new(PENDING_BITS),
            pending_any: false,
            symlinks: PathList::default(),
            umask: process_umask(),
        })
    }

    /// Where the tree is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The staged symlinks' paths.
    pub fn symlinks(&self) -> impl Iterator<Item = &Path> {
        self.symlinks.iter().map(|(p, _)| p)
    }

    /// The open parent directory of `rel` (created as needed, every component a real directory of
    /// the tree) and `rel`'s last component.
    fn parent<'a>(&mut self, rel: &'a Path) -> Staged<(&Arc<OwnedFd>, &'a OsStr)> {
        let mut names: Vec<&OsStr> = rel
            .components()
            .map(|c| match c {
                Component::Normal(n) => n,
                other => other.as_os_str(),
            })
            .collect();
        let Some(last) = names.pop() else {
            return Err(policy::empty_name().into());
        };
        let keep = self
            .stack
            .iter()
            .zip(&names)
            .take_while(|((have, _), want)| have.as_os_str() == **want)
            .count();
        self.stack.truncate(keep);
        let bytes = path_bytes(rel);
        for (i, name) in names.iter().enumerate().skip(keep) {
            let prefix = prefix_of(&bytes, i + 1);
            if self.pending_any && self.pending.maybe(prefix) {
                return Err(StageError::Barrier);
            }
            self.seen.insert(prefix);
            let parent = self.stack.last().map_or(&self.root, |(_, fd)| fd);
            match rustix::fs::mkdirat(parent, *name, Mode::from_bits_truncate(0o777)) {
                Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                Err(e) => return Err(e.into()),
            }
            match rustix::fs::openat(parent, *name, DIR_FLAGS, Mode::empty()) {
                Ok(fd) => self.stack.push((name.to_os_string(), Arc::new(fd))),
                Err(rustix::io::Errno::NOTDIR | rustix::io::Errno::LOOP) => {
                    let shown = escape_name(prefix);
                    let is_link = rustix::fs::statat(parent, *name, AtFlags::SYMLINK_NOFOLLOW)
                        .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Symlink);
                    return Err(policy::through_staged(&shown, is_link).into());
                }
                Err(e) => return Err(e.into()),
            }
        }
        let parent = self.stack.last().map_or(&self.root, |(_, fd)| fd);
        Ok((parent, last))
    }

    /// Before any operation on `rel`: wait for the writers if one may still be creating it, and
    /// remember it as staged.
    fn touch(&mut self, rel: &Path) -> Staged<()> {
        let bytes = path_bytes(rel);
        if self.pending_any && self.pending.maybe(&bytes) {
            return Err(StageError::Barrier);
        }
        self.seen.insert(&bytes);
        Ok(())
    }

    /// The writers have created every file handed to them so far.
    pub fn writers_done(&mut self) {
        if self.pending_any {
            self.pending.clear();
            self.pending_any = false;
        }
    }

    /// Removes whatever is staged at `name` in `dir` (an earlier entry at the same path).
    fn remove(&self, dir: &OwnedFd, name: &OsStr, rel: &Path) -> Staged<()> {
        let st = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
        if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
            if self.pending_any {
                return Err(StageError::Barrier); // a writer may be creating a file inside
            }
            // An empty one goes; one that holds earlier entries stays and the later entry is
            // refused, as GNU tar and bsdtar refuse it: dropping them would leave files the
            // manifest lists (and the check counted) out of DEST.
            match rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR) {
                Err(rustix::io::Errno::NOTEMPTY | rustix::io::Errno::EXIST) => {
                    Err(StageError::Refuse(
                        Rule::Conflict,
                        format!(
                            "would replace the directory {}, which holds earlier entries of this archive; refusing (GNU tar and bsdtar refuse it too)",
                            escape_name(&path_bytes(rel))
                        ),
                    ))
                }
                other => Ok(other?),
            }
        } else {
            Ok(rustix::fs::unlinkat(dir, name, AtFlags::empty())?)
        }
    }

    /// Runs `make` for the entry at `rel`; if the name is taken by an earlier entry, removes that
    /// and tries once more (the later entry wins).
    fn replace<T>(
        &mut self,
        rel: &Path,
        make: impl Fn(&OwnedFd, &OsStr) -> rustix::io::Result<T>,
    ) -> Staged<T> {
        self.touch(rel)?;
        let (dir, name) = self.parent(rel)?;
        match make(dir, name) {
            Err(rustix::io::Errno::EXIST) => {}
            other => return Ok(other?),
        }
        let (dir, name) = self.parent(rel)?;
        let dir = Arc::clone(dir);
        self.remove(&dir, name, rel)?;
        Ok(make(&dir, name)?)
    }

    /// Creates the regular file `rel` with the entry's permission bits (the staging tree is ours
    /// alone, so they need not be narrower meanwhile), or, when nothing was ever staged at `rel`,
    /// leaves the creation to its writer ([`NewFile::create`]), so the reader does not pay for it.
    pub fn file(&mut self, rel: &Path, mode: u32) -> Staged<NewFile> {
        let mode = policy::safe_mode(mode);
        let exact = self.umask.is_some_and(|u| mode & u == 0);
        let bytes = path_bytes(rel);
        if !self.seen.maybe(&bytes) {
            let (dir, name) = self.parent(rel)?;
            let (dir, name) = (Arc::clone(dir), name.to_os_string());
            self.seen.insert(&bytes);
            self.pending.insert(&bytes);
            self.pending_any = true;
            return Ok(NewFile {
                file: None,
                deferred: Some((dir, name)),
                mode,
                mode_set: exact,
            });
        }
        let fd = self.replace(rel, |dir, name| create_file(dir, name, mode))?;
        Ok(NewFile {
            file: Some(File::from(fd)),
            deferred: None,
            mode,
            mode_set: exact,
        })
    }

    /// Creates the directory `rel` (a file or symlink staged there before is replaced; an existing
    /// directory stays, with its contents).
    pub fn dir(&mut self, rel: &Path) -> Staged<()> {
        if rel.as_os_str().is_empty() {
            return Ok(());
        }
        self.touch(rel)?;
        let (dir, name) = self.parent(rel)?;
        match rustix::fs::mkdirat(dir, name, Mode::from_bits_truncate(0o777)) {
            Err(rustix::io::Errno::EXIST) => {}
            other => return Ok(other?),
        }
        let st = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
        if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
            return Ok(());
        }
        rustix::fs::unlinkat(dir, name, AtFlags::empty())?;
        Ok(rustix::fs::mkdirat(
            dir,
            name,
            Mode::from_bits_truncate(0o777),
        )?)
    }

    /// Makes `rel` a symlink to `target` (already checked by the caller), with the entry's mtime when given (as GNU tar restores
    /// it; the commit moves it by rename, which keeps it). Setting the time is best effort: a
    /// filesystem that cannot time a symlink still gets the link.
    pub fn symlink(
        &mut self,
        rel: &Path,
        target: &Path,
        mtime: Option<std::time::SystemTime>,
    ) -> Staged<()> {
        let times = mtime.map(timestamps);
        self.replace(rel, |dir, name| {
            rustix::fs::symlinkat(target, dir, name)?;
            if let Some(times) = &times {
                let _ = rustix::fs::utimensat(dir, name, times, AtFlags::SYMLINK_NOFOLLOW);
            }
            Ok(())
        })?;
        self.symlinks.push(rel, ());
        Ok(())
    }

    /// Makes `rel` a hard link to the staged entry `source` (a regular file), or says what
    /// `source` is when no link was made.
    pub fn hard_link(&mut self, rel: &Path, source: &Path) -> Staged<LinkSource> {
        if self.pending_any {
            let bytes = path_bytes(source);
            let parts = bytes.split(|&b| b == b'/').count();
            if (1..=parts).any(|n| self.pending.maybe(prefix_of(&bytes, n))) {
                return Err(StageError::Barrier);
            }
        }
        let Some((src_dir, src_name)) = self.open_existing_parent(source)? else {
            return Ok(LinkSource::Missing);
        };
        let st = match rustix::fs::statat(&src_dir, src_name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(rustix::io::Errno::NOENT) => return Ok(LinkSource::Missing),
            Err(e) => return Err(e.into()),
        };
        match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => {}
            FileType::Directory => return Err(policy::hardlink_to_dir().into()),
            FileType::Symlink => {
                let t = rustix::fs::readlinkat(&src_dir, src_name, Vec::new())?;
                return Ok(LinkSource::Symlink(t.into_bytes()));
            }
            _ => return Ok(LinkSource::Missing),
        }
        if rel == source {
            return Ok(LinkSource::Linked); // a link to itself: the file is already there
        }
        self.replace(rel, |dir, name| {
            rustix::fs::linkat(&src_dir, src_name, dir, name, AtFlags::empty())
        })?;
        Ok(LinkSource::Linked)
    }

    /// Makes `rel` a hard link to `src_name` in `src_dir`: a file DEST holds that `-k` kept,
    /// reached without following any link ([`open_parent_beneath`]), which was the regular file
    /// `id` (device, inode) when looked up. What was linked is checked to be that same file: if
    /// someone swapped it meanwhile (for a symlink, say), the link is removed and refused.
    pub fn hard_link_to(
        &mut self,
        rel: &Path,
        src_dir: &OwnedFd,
        src_name: &OsStr,
        id: (u64, u64),
    ) -> Staged<()> {
        self.replace(rel, |dir, name| {
            rustix::fs::linkat(src_dir, src_name, dir, name, AtFlags::empty())
        })?;
        let (dir, name) = self.parent(rel)?;
        let st = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
        let same = FileType::from_raw_mode(st.st_mode) == FileType::RegularFile
            && (st.st_dev as u64, st.st_ino as u64) == id;
        if !same {
            let _ = rustix::fs::unlinkat(dir, name, AtFlags::empty());
            return Err(policy::kept_file_changed().into());
        }
        Ok(())
    }

    /// What is staged at `rel` (entered without following links), `None` for nothing.
    pub fn kind_of(&self, rel: &Path) -> Option<Kind> {
        let (dir, name) = self.open_existing_parent(rel).ok()??;
        kind_at(&dir, name)
    }

    /// [`kind_of`](Self::kind_of) for many paths resolved a component at a time (symlink
    /// checks): `last` keeps the directory the previous lookup found open, so a lookup just
    /// below it is one `statat` (one `openat` more when it is a directory) instead of a walk
    /// from the root, which for a link deep in the tree with a long target cost depth x length
    /// system calls.
    pub fn kind_of_near(&self, rel: &Path, last: &mut Option<(PathBuf, OwnedFd)>) -> Option<Kind> {
        let parent = rel.parent().unwrap_or(Path::new(""));
        let name = rel.file_name()?;
        let fresh;
        let dir = match last {
            Some((p, fd)) if p.as_path() == parent => &*fd,
            _ => {
                let (d, n) = self.open_existing_parent(rel).ok()??;
                debug_assert_eq!(n, name);
                fresh = d;
                &fresh
            }
        };
        let kind = kind_at(dir, name)?;
        if matches!(kind, Kind::Dir) {
            if let Ok(fd) = rustix::fs::openat(dir, name, DIR_FLAGS, Mode::empty()) {
                *last = Some((rel.to_path_buf(), fd));
            }
        }
        Some(kind)
    }

    /// The parent directory of an existing staged path, entered without following links;
    /// `None` when a component is missing or not a directory.
    fn open_existing_parent<'a>(&self, rel: &'a Path) -> Staged<Option<(OwnedFd, &'a OsStr)>> {
        Ok(open_parent_beneath(&self.root, rel)?)
    }
}

/// What `dir` holds at `name`, not following a symlink.
fn kind_at(dir: &OwnedFd, name: &OsStr) -> Option<Kind> {
    let st = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).ok()?;
    Some(match FileType::from_raw_mode(st.st_mode) {
        FileType::Directory => Kind::Dir,
        FileType::Symlink => Kind::Symlink(
            rustix::fs::readlinkat(dir, name, Vec::new())
                .ok()?
                .into_bytes(),
        ),
        _ => Kind::Other,
    })
}

/// Opens the directory that holds `rel` below `root`, entering every component with
/// `O_DIRECTORY | O_NOFOLLOW`, and gives it with `rel`'s last component: `None` when a component
/// is missing, a symlink or not a directory. Nothing on the way is followed or created.
pub(crate) fn open_parent_beneath<'a>(
    root: &OwnedFd,
    rel: &'a Path,
) -> io::Result<Option<(OwnedFd, &'a OsStr)>> {
    open_parent_beneath_via(root, rel, DIR_FLAGS)
}

/// [`open_parent_beneath`], entering the directories on the way with `flags` (which must hold
/// `O_DIRECTORY | O_NOFOLLOW`; `O_PATH` where only search permission may be had).
pub(crate) fn open_parent_beneath_via<'a>(
    root: &OwnedFd,
    rel: &'a Path,
    flags: OFlags,
) -> io::Result<Option<(OwnedFd, &'a OsStr)>> {
    let mut names: Vec<&OsStr> = rel.iter().collect();
    let Some(last) = names.pop() else {
        return Ok(None);
    };
    let mut dir = root.try_clone()?;
    for name in names {
        match enter(&dir, name, flags)? {
            Some(fd) => dir = fd,
            None => return Ok(None),
        }
    }
    Ok(Some((dir, last)))
}

/// Opens the directory `name` in `dir` with `flags` (`O_DIRECTORY | O_NOFOLLOW` among them):
/// `None` when it is missing, a symlink or not a directory.
pub(crate) fn enter(dir: &OwnedFd, name: &OsStr, flags: OFlags) -> io::Result<Option<OwnedFd>> {
    match rustix::fs::openat(dir, name, flags, Mode::empty()) {
        Ok(fd) => Ok(Some(fd)),
        Err(rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR | rustix::io::Errno::LOOP) => {
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// A regular file entry in the staging tree: created by the reader (`file`), or to be created by
/// its writer in `deferred` (the parent directory, the name).
pub(crate) struct NewFile {
    pub file: Option<File>,
    pub deferred: Option<(Arc<OwnedFd>, OsString)>,
    pub mode: u32,
    /// The file gets exactly `mode` at creation (no umask bit in the way).
    pub mode_set: bool,
}

impl NewFile {
    /// The open file: the reader's, or created now (by a writer) in the deferred place.
    pub fn open(self) -> io::Result<File> {
        if let Some(f) = self.file {
            return Ok(f);
        }
        let (dir, name) = self
            .deferred
            .ok_or_else(|| io::Error::other("no staged file"))?;
        Ok(File::from(create_file(&dir, &name, self.mode)?))
    }
}

/// Creates a file exclusively, never following a link, with these permission bits.
fn create_file(dir: &OwnedFd, name: &OsStr, mode: u32) -> rustix::io::Result<OwnedFd> {
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    rustix::fs::openat(dir, name, flags, Mode::from_bits_truncate(mode as _))
}

/// The bytes of the first `n` components of a normalised relative path.
fn prefix_of(path: &[u8], n: usize) -> &[u8] {
    let mut seen = 0;
    for (i, &b) in path.iter().enumerate() {
        if b == b'/' {
            seen += 1;
            if seen == n {
                return &path[..i];
            }
        }
    }
    path
}

/// Largest level of each filter, as log2 of its bits: `seen` stops growing at 2 MiB (4 MiB in
/// all with its smaller levels, full at about 1,050,000 paths: under one in a thousand false
/// alarms per level, about 0.7% over its nine levels; past that the last level fills up, 17% at
/// five million paths, where one fixed 4 MiB filter gave 5%; a false alarm in `seen` costs a
/// slower, reader-side creation), `pending` at 512 KiB (it is emptied whenever the writers are
/// all done; a false alarm there costs a wait for the writers).
const SEEN_BITS: u32 = 24;
const PENDING_BITS: u32 = 22;
/// The first level: 8 KiB, so a small archive touches a few pages, not megabytes.
const FIRST_BITS: u32 = 16;
/// Paths per level before the next, twice as large, is started: 32 bits per path keeps each
/// level's false alarms under one in a thousand (3 probes).
const BITS_PER_PATH: u64 = 32;

/// A Bloom filter of paths: no false negatives; a false positive only costs a slower path.
///
/// It grows in levels, each twice the size of the last, inserting into the newest and asking all:
/// a fixed filter big enough for a million paths costs a small archive a page fault on the
/// zero page and then a copy-on-write fault (with a TLB flush on every core running our
/// threads) for each page its paths touch, about 1300 for 2,600 paths, more than the
/// whole filter's work. Past its largest level it keeps filling that one (more false alarms,
/// never more memory).
struct Bloom {
    levels: Vec<Level>,
    /// Levels in use; those after them were used before the last `clear` and are kept, zeroed,
    /// so growing again costs no fresh pages.
    active: usize,
    max_log2: u32,
}

struct Level {
    bits: Vec<u64>,
    mask: u64,
    /// Paths inserted, and how many it takes before the next level.
    count: u64,
    capacity: u64,
}

impl Level {
    fn new(log2: u32) -> Level {
        Level {
            bits: vec![0; 1 << (log2 - 6)],
            mask: (1 << log2) - 1,
            count: 0,
            capacity: (1u64 << log2) / BITS_PER_PATH,
        }
    }

    fn log2(&self) -> u32 {
        self.mask.count_ones()
    }

    /// The word and bit of each probe.
    fn probe_bits(&self, h: [u64; 3]) -> [(usize, u64); 3] {
        h.map(|x| {
            let p = x & self.mask;
            ((p >> 6) as usize, 1u64 << (p & 63))
        })
    }
}

impl Bloom {
    fn new(max_log2: u32) -> Bloom {
        Bloom {
            levels: vec![Level::new(FIRST_BITS.min(max_log2))],
            active: 1,
            max_log2,
        }
    }

    fn hashes(path: &[u8]) -> [u64; 3] {
        // FNV-1a, then double hashing for the other probes.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in path {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        let h2 =
            (h.rotate_left(31) ^ 0x9e37_79b9_7f4a_7c15).wrapping_mul(0xff51_afd7_ed55_8ccd) | 1;
        [h, h.wrapping_add(h2), h.wrapping_add(h2.wrapping_mul(2))]
    }

    fn insert(&mut self, path: &[u8]) {
        let last = &self.levels[self.active - 1];
        if last.count >= last.capacity && last.log2() < self.max_log2 {
            if self.active == self.levels.len() {
                let next = Level::new(last.log2() + 1);
                self.levels.push(next);
            }
            self.active += 1;
        }
        let level = &mut self.levels[self.active - 1];
        level.count += 1;
        for (word, bit) in level.probe_bits(Self::hashes(path)) {
            level.bits[word] |= bit;
        }
    }

    fn maybe(&self, path: &[u8]) -> bool {
        let h = Self::hashes(path);
        self.levels[..self.active].iter().any(|level| {
            level
                .probe_bits(h)
                .iter()
                .all(|&(word, bit)| level.bits[word] & bit != 0)
        })
    }

    /// Empties the filter. Only levels that hold paths are zeroed, so the cost follows the paths
    /// inserted since the last clear, not the filter's size.
    fn clear(&mut self) {
        for level in &mut self.levels[..self.active] {
            if level.count > 0 {
                level.bits.fill(0);
                level.count = 0;
            }
        }
        self.active = 1;
    }
}

/// The umask, read from /proc on Linux (calling umask(2) to read it would change it for every
/// thread of the process meanwhile); `None` elsewhere, and every file's mode is then set after it
/// is written.
fn process_umask() -> Option<u32> {
    #[cfg(target_os = "linux")]
    {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find_map(|l| l.strip_prefix("Umask:"))?;
        u32::from_str_radix(line.trim(), 8).ok()
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

/// `mtime` as both times of a `utimensat` call (times before 1970 included).
fn timestamps(mtime: std::time::SystemTime) -> rustix::fs::Timestamps {
    let t = match mtime.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => rustix::fs::Timespec {
            tv_sec: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: d.subsec_nanos() as _,
        },
        Err(e) => {
            let d = e.duration();
            let sec = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            let (mut sec, mut nsec) = (-sec, -i64::from(d.subsec_nanos()));
            if nsec < 0 {
                sec -= 1;
                nsec += 1_000_000_000;
            }
            rustix::fs::Timespec {
                tv_sec: sec,
                tv_nsec: nsec as _,
            }
        }
    };
    rustix::fs::Timestamps {
        last_access: t,
        last_modification: t,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> (tempfile::TempDir, StageTree) {
        let d = tempfile::tempdir().unwrap();
        let t = StageTree::create(&d.path().join("t")).unwrap();
        (d, t)
    }

    #[test]
    fn later_entries_replace_earlier_ones_whatever_the_types() {
        let (_d, mut t) = tree();
        use std::io::Write;
        let f = t.file(Path::new("a/b/f"), 0o644).unwrap();
        assert!(f.deferred.is_some(), "a new path is left to its writer");
        f.open().unwrap().write_all(b"1").unwrap();
        assert!(
            matches!(t.file(Path::new("a/b/f"), 0o644), Err(StageError::Barrier)),
            "the same path again must wait for the writer"
        );
        t.writers_done();
        let f = t.file(Path::new("a/b/f"), 0o644).unwrap();
        assert!(
            f.file.is_some(),
            "a path staged before is replaced by the reader"
        );
        f.open().unwrap().write_all(b"2").unwrap();
        assert_eq!(std::fs::read(t.path().join("a/b/f")).unwrap(), b"2");
        t.dir(Path::new("a/b/f")).unwrap();
        assert!(t.path().join("a/b/f").is_dir());
        // A directory holding entries stays (GNU tar and bsdtar refuse too); an empty one goes.
        assert!(matches!(
            t.file(Path::new("a"), 0o600),
            Err(StageError::Refuse(Rule::Conflict, _))
        ));
        assert!(t.path().join("a/b/f").is_dir());
        t.dir(Path::new("e")).unwrap();
        t.file(Path::new("e"), 0o600).unwrap().open().unwrap();
        assert!(t.path().join("e").is_file());
        let a = Path::new("e");
        t.symlink(a, Path::new("x"), None).unwrap();
        t.dir(a).unwrap();
        assert!(t.path().join(a).is_dir());
        assert_eq!(t.symlinks().count(), 1);
    }

    #[test]
    fn nothing_is_written_below_a_file_or_a_symlink() {
        let (d, mut t) = tree();
        let outside = d.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        t.symlink(Path::new("l"), &outside, None).unwrap();
        match t.file(Path::new("l/x"), 0o644) {
            Err(StageError::Refuse(_, why)) => assert!(why.contains("l is a symlink"), "{why}"),
            _ => panic!("wrote through a symlink"),
        }
        assert!(!outside.join("x").exists());
        t.file(Path::new("f"), 0o644).unwrap().open().unwrap();
        t.writers_done();
        match t.dir(Path::new("f/d")) {
            Err(StageError::Refuse(_, why)) => assert!(why.contains("f is a file"), "{why}"),
            _ => panic!("created below a file"),
        }
        // A hard link whose source lies below the symlink is not followed either.
        std::fs::write(outside.join("secret"), b"s").unwrap();
        assert!(matches!(
            t.hard_link(Path::new("h"), Path::new("l/secret")),
            Ok(LinkSource::Missing)
        ));
        assert!(!t.path().join("h").exists());
    }

    #[test]
    fn the_filter_grows_without_false_negatives_and_empties() {
        let mut b = Bloom::new(FIRST_BITS + 2);
        let paths: Vec<Vec<u8>> = (0..20_000).map(|i| format!("d/{i}").into_bytes()).collect();
        for p in &paths {
            b.insert(p);
        }
        // Grew to its largest level and stopped there.
        assert_eq!(b.levels.len(), 3);
        assert!(paths.iter().all(|p| b.maybe(p)));
        let false_alarms = (0..10_000)
            .filter(|i| b.maybe(format!("e/{i}").as_bytes()))
            .count();
        // Over capacity (20,000 paths in room for 14,336), so more than the design's 1 in
        // 1000, but still a filter.
        assert!(false_alarms < 2_000, "{false_alarms}");
        b.clear();
        assert_eq!(b.active, 1);
        assert!(!b.maybe(b"d/1") || !b.maybe(b"d/2"));
        // Grown again into the kept levels: still no false negatives, nothing left over.
        let again: Vec<Vec<u8>> = (0..9_000).map(|i| format!("f/{i}").into_bytes()).collect();
        for p in &again {
            b.insert(p);
        }
        assert_eq!((b.active, b.levels.len()), (3, 3));
        assert!(again.iter().all(|p| b.maybe(p)));
        let stale = paths.iter().filter(|p| b.maybe(p)).count();
        assert!(
            stale < 1_000,
            "{stale} paths from before the clear still found"
        );
    }

    #[test]
    fn within_capacity_false_alarms_are_rare() {
        let mut b = Bloom::new(SEEN_BITS);
        for i in 0..100_000 {
            b.insert(format!("dir/sub/file-{i}.txt").as_bytes());
        }
        let false_alarms = (0..100_000)
            .filter(|i| b.maybe(format!("dir/sub/other-{i}.txt").as_bytes()))
            .count();
        // One in a thousand per level, a handful of levels.
        assert!(false_alarms < 100 * 6, "{false_alarms}");
    }
}
