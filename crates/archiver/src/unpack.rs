//! Unpacking and verifying: one reader parses the archive, N workers write (and hash) files.
//!
//! ```text
//! tar:  reader (caller's thread) ──jobs: bounded(2·j)──▶ writers ×j ──results──▶ commit (caller)
//!         reads entry data against the byte budget;        temp file, hash,
//!         large files as a stream of chunks                 mode, mtime
//! zip:  directory parsed and checked up front; each writer reads and inflates its entries itself
//!       through its own positioned reads of the archive file
//! ```
//!
//! Every file is written under a temporary name in its final directory. Nothing gets its final name
//! until the whole archive has been read, every CRC and checksum has passed and, when the archive
//! carries `.archiver/MANIFEST.b3`, every file matches it. Then files are renamed into place, hard
//! links and symlinks are made (last, so nothing is ever written through a link the archive created),
//! directory metadata is applied deepest first, and the filesystem is synced. A failed or
//! interrupted unpack therefore leaves no half-written or unverified file under a final name.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{bounded, unbounded, Receiver, Sender};

use crate::budget::Budget;
use crate::error::{panic_message, Error, Result};
use crate::list::{open_tar, Opened};
use crate::manifest;
use crate::safety::{self, DirGuard};
use crate::tarread::TarReader;
use crate::zipread::{self, ZipEntry};
use crate::{Cancel, Warning, MANIFEST_PATH};

/// Default limit on the total size an archive may expand to.
pub const DEFAULT_MAX_OUTPUT: u64 = 1 << 40;

/// One refused entry: its name and the rule it broke.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Refused {
    /// The entry name as stored.
    pub entry: String,
    /// The rule.
    pub reason: String,
}

/// What an unpack (or verify) did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct UnpackStats {
    /// Regular files written (or checked).
    pub files: u64,
    /// Directories.
    pub dirs: u64,
    /// Symbolic links.
    pub symlinks: u64,
    /// Hard links.
    pub hardlinks: u64,
    /// File bytes written (or checked).
    pub bytes: u64,
    /// Files left alone because they existed (`keep_existing`).
    pub kept_existing: u64,
    /// Files checked against the embedded manifest (`None`: the archive has none).
    pub manifest_checked: Option<u64>,
    /// Wall time.
    #[serde(serialize_with = "secs")]
    pub wall: Duration,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// The result of a successful unpack or verify.
#[derive(Debug, Clone, Default)]
pub struct UnpackReport {
    /// Counts.
    pub stats: UnpackStats,
    /// Non-fatal problems, in entry order.
    pub warnings: Vec<Warning>,
}

/// Extracts (or only verifies) archives: tar, tar.gz, tar.zst and zip, detected from the bytes.
///
/// ```
/// # fn main() -> Result<(), archiver::Error> {
/// let src = tempfile::tempdir().unwrap();
/// std::fs::write(src.path().join("a.txt"), "hi").unwrap();
/// let mut archive = Vec::new();
/// archiver::Packer::new(["."]).directory(src.path()).pack(&mut archive)?;
///
/// let dest = tempfile::tempdir().unwrap();
/// let report = archiver::Unpacker::new(dest.path()).sync(false).unpack(&archive[..])?;
/// assert_eq!(report.stats.manifest_checked, Some(1));
/// assert_eq!(std::fs::read(dest.path().join("a.txt")).unwrap(), b"hi");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Unpacker {
    dest: Option<PathBuf>,
    jobs: usize,
    keep_existing: bool,
    sync: bool,
    max_output: u64,
    memory_budget: u64,
    cancel: Cancel,
    against: Option<PathBuf>,
}

impl Unpacker {
    /// Extracts into `dest` (created if missing).
    pub fn new(dest: impl Into<PathBuf>) -> Self {
        Unpacker {
            dest: Some(dest.into()),
            jobs: crate::default_jobs(),
            keep_existing: false,
            sync: true,
            max_output: DEFAULT_MAX_OUTPUT,
            memory_budget: crate::DEFAULT_MEMORY_BUDGET,
            cancel: Cancel::new(),
            against: None,
        }
    }

    /// Reads and checks everything (CRCs, checksums, manifest) without writing anything.
    pub fn verify_only() -> Self {
        Unpacker {
            dest: None,
            ..Unpacker::new("")
        }
    }

    /// Verify mode only: also compare every entry with the tree in `dir` (type, size, mode, content,
    /// link target), like GNU tar's `--compare`. Differences come back as warnings.
    pub fn against(mut self, dir: impl Into<PathBuf>) -> Self {
        self.against = Some(dir.into());
        self
    }

    /// Writer threads.
    pub fn jobs(mut self, jobs: usize) -> Self {
        self.jobs = jobs.max(1);
        self
    }

    /// Never modify a file that already exists.
    pub fn keep_existing(mut self, yes: bool) -> Self {
        self.keep_existing = yes;
        self
    }

    /// Make the data durable before returning (default on): one `syncfs` of the destination's
    /// filesystem on Linux, `sync` elsewhere.
    pub fn sync(mut self, yes: bool) -> Self {
        self.sync = yes;
        self
    }

    /// Refuse archives that expand to more than `bytes` (default 1 TiB).
    pub fn max_output(mut self, bytes: u64) -> Self {
        self.max_output = bytes;
        self
    }

    /// Byte budget for file data between the reader and the writers.
    pub fn memory_budget(mut self, bytes: u64) -> Self {
        self.memory_budget = bytes;
        self
    }

    /// Uses this cancellation handle.
    pub fn cancel_with(mut self, cancel: Cancel) -> Self {
        self.cancel = cancel;
        self
    }

    /// Unpacks from a stream. A zip is first copied to a temporary file (its directory is at the end).
    pub fn unpack<R: Read>(&self, input: R) -> Result<UnpackReport> {
        match open_tar(input)? {
            Opened::Tar(tar) => self.run(|ctx| read_tar(ctx, tar)),
            Opened::Zip(mut all) => {
                let mut spool = tempfile::tempfile().map_err(Error::Input)?;
                io::copy(&mut all, &mut spool).map_err(Error::Input)?;
                self.run(|ctx| read_zip(ctx, &spool))
            }
        }
    }

    /// Unpacks an archive file (a zip is read in place, in parallel).
    pub fn unpack_path(&self, path: &Path) -> Result<UnpackReport> {
        let file = File::open(path).map_err(|e| Error::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
        let mut head = [0u8; 4];
        let n = (&file).read(&mut head).map_err(Error::Input)?;
        if crate::detect(&head[..n]) == Some(crate::Detected::Zip) {
            return self.run(|ctx| read_zip(ctx, &file));
        }
        drop(file);
        let file = File::open(path).map_err(Error::Input)?;
        self.unpack(io::BufReader::with_capacity(256 << 10, file))
    }

    fn run(&self, read: impl FnOnce(&mut Ctx<'_>) -> Result<()>) -> Result<UnpackReport> {
        let started = Instant::now();
        if let Some(dest) = &self.dest {
            fs::create_dir_all(dest).map_err(|e| Error::Io {
                path: dest.clone(),
                source: e,
            })?;
        }
        let budget = Budget::new(self.memory_budget);
        let (job_tx, job_rx) = bounded::<WriteJob>(self.jobs * 2);
        let (res_tx, res_rx) = unbounded::<Written>();
        let outcome = std::thread::scope(|s| {
            let mut workers = Vec::new();
            for _ in 0..self.jobs {
                let (rx, tx, budget) = (job_rx.clone(), res_tx.clone(), &budget);
                let dest = self.dest.as_deref();
                let cancel = &self.cancel;
                workers.push(
                    std::thread::Builder::new()
                        .name("archiver-unpack".into())
                        .spawn_scoped(s, move || writer(dest, rx, tx, budget, cancel)),
                );
            }
            drop(job_rx);
            drop(res_tx);
            let mut ctx = Ctx {
                opts: self,
                jobs: Some(job_tx),
                budget: &budget,
                guard: DirGuard::default(),
                seq: 0,
                total: 0,
                free: self
                    .dest
                    .as_deref()
                    .and_then(free_space)
                    .unwrap_or(u64::MAX),
                dirs: Vec::new(),
                links: Vec::new(),
                refused: Vec::new(),
                warnings: Vec::new(),
                manifest: None,
                stats: UnpackStats::default(),
                files: Default::default(),
            };
            let read_result =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| read(&mut ctx)))
                    .unwrap_or_else(|p| {
                        Err(Error::Panic {
                            stage: "unpack-read",
                            entry: None,
                            message: panic_message(&*p),
                        })
                    });
            ctx.jobs = None; // workers finish what they have and stop
            if read_result.is_err() {
                budget.close();
            }
            let mut written: Vec<Written> = res_rx.iter().collect();
            for w in workers {
                match w.map(|h| h.join()) {
                    Ok(Ok(())) => {}
                    Ok(Err(p)) => {
                        return Err(Error::Panic {
                            stage: "unpack-write",
                            entry: None,
                            message: panic_message(&*p),
                        })
                    }
                    Err(e) => return Err(Error::Thread(e)),
                }
            }
            read_result?;
            written.sort_by_key(|w| w.seq);
            Ok((ctx.finish_fields(), written))
        });
        let (done, written) = outcome?;
        let report = self.commit(done, written)?;
        Ok(UnpackReport {
            stats: UnpackStats {
                wall: started.elapsed(),
                ..report.stats
            },
            warnings: report.warnings,
        })
    }

    /// Checks everything, then gives every file its final name, makes links, applies directory
    /// metadata and syncs.
    fn commit(&self, done: ReadDone, written: Vec<Written>) -> Result<UnpackReport> {
        let ReadDone {
            mut dirs,
            links,
            mut refused,
            warnings,
            manifest,
            mut stats,
        } = done;
        if self.cancel.is_cancelled() {
            return Err(Error::Cancelled);
        }
        let mut files: Vec<(u64, PathBuf, Option<tempfile::TempPath>, blake3::Hash)> =
            Vec::with_capacity(written.len());
        let mut sizes: Vec<(u64, u32)> = Vec::with_capacity(written.len());
        for w in written {
            match w.result {
                Ok((temp, hash, size)) => {
                    stats.files += 1;
                    stats.bytes += size;
                    sizes.push((size, w.mode));
                    files.push((w.seq, w.rel, temp, hash));
                }
                Err(e) => return Err(e),
            }
        }
        // The manifest: every regular file and hard link must match it, and nothing may be missing.
        if let Some(text) = &manifest {
            let lines = manifest::parse(text)
                .map_err(|e| Error::BadArchive(format!("{MANIFEST_PATH}: {e}")))?;
            let mut hashes: HashMap<Vec<u8>, blake3::Hash> = HashMap::with_capacity(files.len());
            for (_, rel, _, hash) in &files {
                hashes.insert(manifest::path_bytes(rel).into_owned(), *hash);
            }
            for l in &links {
                if let Link::Hard { target, .. } = &l.kind {
                    if let Some(h) = hashes.get(manifest::path_bytes(target).as_ref()).copied() {
                        hashes.insert(manifest::path_bytes(&l.rel).into_owned(), h);
                    }
                }
            }
            let mut problems = Vec::new();
            let mut listed = std::collections::HashSet::with_capacity(lines.len());
            for line in &lines {
                listed.insert(line.path.as_slice());
                match hashes.get(line.path.as_slice()) {
                    Some(h) if *h == line.hash => {}
                    Some(_) => problems.push(Refused {
                        entry: String::from_utf8_lossy(&line.path).into_owned(),
                        reason: "content does not match the manifest's BLAKE3 hash".into(),
                    }),
                    None if self.keep_existing && stats.kept_existing > 0 => {}
                    None => problems.push(Refused {
                        entry: String::from_utf8_lossy(&line.path).into_owned(),
                        reason: "listed in the manifest but missing from the archive".into(),
                    }),
                }
            }
            for key in hashes.keys() {
                if !listed.contains(key.as_slice()) && key.as_slice() != MANIFEST_PATH.as_bytes() {
                    problems.push(Refused {
                        entry: String::from_utf8_lossy(key).into_owned(),
                        reason: "not listed in the manifest".into(),
                    });
                }
            }
            problems.sort_by(|a, b| a.entry.cmp(&b.entry));
            refused.extend(problems);
            stats.manifest_checked = Some(lines.len() as u64);
        }
        if !refused.is_empty() {
            return Err(Error::Refused(refused));
        }
        let Some(dest) = &self.dest else {
            let mut warnings = warnings;
            if let Some(dir) = &self.against {
                warnings.extend(compare(dir, &files, &sizes, &links, &dirs));
            }
            return Ok(UnpackReport { stats, warnings });
        };
        // An archive may hold a path twice; the later entry wins, as in tar. With duplicates gone,
        // the renames are independent and run in parallel.
        let mut last: HashMap<&Path, usize> = HashMap::with_capacity(files.len());
        for (i, (_, rel, _, _)) in files.iter().enumerate() {
            last.insert(rel.as_path(), i);
        }
        let keep: Vec<bool> = (0..files.len())
            .map(|i| last.get(files[i].1.as_path()) == Some(&i))
            .collect();
        drop(last);
        let mut renames: Vec<(PathBuf, Option<tempfile::TempPath>)> =
            Vec::with_capacity(files.len());
        for ((_, rel, temp, _), keep) in files.iter_mut().zip(keep) {
            if let (Some(temp), true) = (temp.take(), keep) {
                renames.push((dest.join(&*rel), Some(temp)));
            }
        }
        let chunk = renames.len().div_ceil(self.jobs.max(1)).max(1);
        let failures: Vec<Error> = std::thread::scope(|s| {
            let handles: Vec<_> = renames
                .chunks_mut(chunk)
                .map(|part| {
                    s.spawn(move || {
                        let mut errors = Vec::new();
                        for (target, temp) in part.iter_mut() {
                            let Some(temp) = temp.take() else { continue };
                            if let Err(e) = temp.persist(&*target) {
                                errors.push(Error::Io {
                                    path: target.clone(),
                                    source: e.error,
                                });
                            }
                        }
                        errors
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_default())
                .collect()
        });
        if let Some(e) = failures.into_iter().next() {
            return Err(e);
        }
        // Links last: hard links first (their targets are files), then symlinks.
        let mut symlinks = Vec::new();
        for l in &links {
            let path = dest.join(&l.rel);
            if self.keep_existing && fs::symlink_metadata(&path).is_ok() {
                stats.kept_existing += 1;
                continue;
            }
            let temp = dest.join(temp_sibling(&l.rel, l.seq));
            let made = match &l.kind {
                Link::Hard { target } => {
                    stats.hardlinks += 1;
                    fs::hard_link(dest.join(target), &temp)
                }
                Link::Sym { target } => {
                    stats.symlinks += 1;
                    symlinks.push(l.rel.clone());
                    make_symlink(target, &temp)
                }
            };
            made.and_then(|()| fs::rename(&temp, &path)).map_err(|e| {
                let _ = fs::remove_file(&temp);
                Error::Io {
                    path: path.clone(),
                    source: e,
                }
            })?;
        }
        // A chain of symlinks, each inside on its own, can still lead out; check them resolved.
        for rel in &symlinks {
            if escapes(dest, rel) {
                let _ = fs::remove_file(dest.join(rel));
                refused.push(Refused {
                    entry: rel.display().to_string(),
                    reason: "symlink resolves outside the destination through other links; removed"
                        .into(),
                });
            }
        }
        dirs.sort_by_key(|d| std::cmp::Reverse(d.rel.components().count()));
        for d in &dirs {
            let path = dest.join(&d.rel);
            set_mode(&path, safety::safe_mode(d.mode)).map_err(|e| Error::Io {
                path: path.clone(),
                source: e,
            })?;
            if let Ok(f) = File::open(&path) {
                let _ = f.set_modified(d.mtime);
            }
        }
        if self.sync {
            sync_dir(dest).map_err(|e| Error::Io {
                path: dest.clone(),
                source: e,
            })?;
        }
        if !refused.is_empty() {
            return Err(Error::Refused(refused));
        }
        Ok(UnpackReport { stats, warnings })
    }
}

/// Compares what the archive holds with a directory tree; one warning per difference.
fn compare(
    dir: &Path,
    files: &[(u64, PathBuf, Option<tempfile::TempPath>, blake3::Hash)],
    sizes: &[(u64, u32)],
    links: &[LinkJob],
    dirs: &[DirMeta],
) -> Vec<Warning> {
    let mut out: Vec<(u64, Warning)> = Vec::new();
    let mut differ = |seq: u64, rel: &Path, message: String| {
        out.push((
            seq,
            Warning {
                path: dir.join(rel),
                message,
            },
        ));
    };
    let mut by_path: HashMap<&Path, blake3::Hash> = HashMap::new();
    for ((seq, rel, _, hash), (size, mode)) in files.iter().zip(sizes) {
        by_path.insert(rel, *hash);
        if rel == Path::new(MANIFEST_PATH) {
            continue; // ours, not part of the packed tree
        }
        let path = dir.join(rel);
        match fs::symlink_metadata(&path) {
            Err(_) => differ(*seq, rel, "missing on disk".into()),
            Ok(md) if !md.is_file() => differ(*seq, rel, "is not a regular file on disk".into()),
            Ok(md) => {
                if md.len() != *size {
                    differ(
                        *seq,
                        rel,
                        format!("size differs: archive {size}, disk {}", md.len()),
                    );
                } else if hash_file(&path).ok() != Some(*hash) {
                    differ(*seq, rel, "contents differ".into());
                }
                if let Some(m) = disk_mode(&md).filter(|m| m & 0o777 != mode & 0o777) {
                    differ(
                        *seq,
                        rel,
                        format!(
                            "mode differs: archive {:o}, disk {:o}",
                            mode & 0o777,
                            m & 0o777
                        ),
                    );
                }
            }
        }
    }
    for l in links {
        let path = dir.join(&l.rel);
        match &l.kind {
            Link::Sym { target } => match fs::read_link(&path) {
                Ok(t) if &t == target => {}
                Ok(t) => differ(
                    l.seq,
                    &l.rel,
                    format!(
                        "symlink target differs: archive {}, disk {}",
                        target.display(),
                        t.display()
                    ),
                ),
                Err(_) => differ(l.seq, &l.rel, "missing on disk, or not a symlink".into()),
            },
            Link::Hard { target } => {
                let want = by_path.get(target.as_path()).copied();
                if want.is_none() || hash_file(&path).ok() != want {
                    differ(
                        l.seq,
                        &l.rel,
                        format!("contents differ from its link target {}", target.display()),
                    );
                }
            }
        }
    }
    for d in dirs {
        if !dir.join(&d.rel).is_dir() {
            differ(0, &d.rel, "missing on disk, or not a directory".into());
        }
    }
    out.sort_by_key(|(seq, _)| *seq);
    out.into_iter().map(|(_, w)| w).collect()
}

fn hash_file(path: &Path) -> io::Result<blake3::Hash> {
    let mut h = blake3::Hasher::new();
    io::copy(&mut File::open(path)?, &mut h)?;
    Ok(h.finalize())
}

#[cfg(unix)]
fn disk_mode(md: &fs::Metadata) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    Some(md.permissions().mode())
}

#[cfg(not(unix))]
fn disk_mode(_md: &fs::Metadata) -> Option<u32> {
    None
}

/// Bytes available to us on the filesystem holding `dir`.
#[cfg(unix)]
fn free_space(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs fills the struct for a NUL-terminated path.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

#[cfg(not(unix))]
fn free_space(_dir: &Path) -> Option<u64> {
    None
}

/// `.NAME.archiver-SEQ` beside `rel`: where a link is made before it is renamed into place.
fn temp_sibling(rel: &Path, seq: u64) -> PathBuf {
    let name = rel
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    rel.with_file_name(format!(".{name}.archiver-{seq}"))
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

/// `fchmod` on the open file: no second path lookup.
#[cfg(unix)]
fn set_file_mode(f: &File, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    f.set_permissions(fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_file_mode(_f: &File, _mode: u32) -> io::Result<()> {
    Ok(())
}

/// Makes everything written under `dest` durable with one call: `syncfs` on Linux; elsewhere
/// `sync`, which is what POSIX offers without an fsync per file.
fn sync_dir(dest: &Path) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::io::AsRawFd;
        let d = File::open(dest)?;
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

/// Follows `rel`'s link chain inside `dest` and says whether it ever leaves `dest`.
fn escapes(dest: &Path, rel: &Path) -> bool {
    use std::path::Component;
    let mut cur: Vec<std::ffi::OsString> = rel
        .parent()
        .map(|p| p.components().map(|c| c.as_os_str().to_owned()).collect())
        .unwrap_or_default();
    let Ok(first) = fs::read_link(dest.join(rel)) else {
        return false;
    };
    let mut todo: std::collections::VecDeque<std::ffi::OsString> = first
        .components()
        .map(|c| c.as_os_str().to_owned())
        .collect();
    if first.has_root() {
        return true;
    }
    let mut hops = 0;
    while let Some(c) = todo.pop_front() {
        match Path::new(&c).components().next() {
            Some(Component::CurDir) | None => {}
            Some(Component::ParentDir) => {
                if cur.pop().is_none() {
                    return true;
                }
            }
            Some(Component::Normal(n)) => {
                cur.push(n.to_owned());
                let here: PathBuf = cur.iter().collect();
                if let Ok(target) = fs::read_link(dest.join(&here)) {
                    hops += 1;
                    if hops > 40 || target.has_root() {
                        return true;
                    }
                    cur.pop();
                    for (i, t) in target.components().enumerate() {
                        todo.insert(i, t.as_os_str().to_owned());
                    }
                }
            }
            Some(_) => return true,
        }
    }
    false
}

fn time_of(mtime: i64) -> SystemTime {
    crate::tarread::unix_time(mtime, 0)
}

struct DirMeta {
    rel: PathBuf,
    mode: u32,
    mtime: SystemTime,
}

enum Link {
    Hard { target: PathBuf },
    Sym { target: PathBuf },
}

struct LinkJob {
    seq: u64,
    rel: PathBuf,
    kind: Link,
}

/// What the reader collected, handed to the commit step.
struct ReadDone {
    dirs: Vec<DirMeta>,
    links: Vec<LinkJob>,
    refused: Vec<Refused>,
    warnings: Vec<Warning>,
    manifest: Option<Vec<u8>>,
    stats: UnpackStats,
}

/// A file for a writer: where, with what metadata, and its data.
struct WriteJob {
    seq: u64,
    rel: PathBuf,
    mode: u32,
    mtime: SystemTime,
    data: JobData,
    cost: u64,
}

enum JobData {
    /// Small file, whole.
    Whole(Vec<u8>),
    /// Large file, in chunks; `size` bytes in all.
    Chunks(Receiver<Vec<u8>>, u64),
    /// A zip entry the writer reads and inflates itself.
    Zip(std::sync::Arc<File>, Box<ZipEntry>),
}

/// A writer's outcome for one file.
struct Written {
    seq: u64,
    rel: PathBuf,
    mode: u32,
    result: Result<(Option<tempfile::TempPath>, blake3::Hash, u64)>,
}

/// The reader's state.
struct Ctx<'a> {
    opts: &'a Unpacker,
    jobs: Option<Sender<WriteJob>>,
    budget: &'a Budget,
    guard: DirGuard,
    seq: u64,
    total: u64,
    /// Bytes free in the destination's filesystem when we started: a bomb meets a clear error
    /// before it fills the disk.
    free: u64,
    dirs: Vec<DirMeta>,
    links: Vec<LinkJob>,
    refused: Vec<Refused>,
    warnings: Vec<Warning>,
    manifest: Option<Vec<u8>>,
    stats: UnpackStats,
    /// Regular files seen so far: the only valid hard-link targets.
    files: std::collections::HashSet<PathBuf>,
}

impl Ctx<'_> {
    fn finish_fields(self) -> ReadDone {
        ReadDone {
            dirs: self.dirs,
            links: self.links,
            refused: self.refused,
            warnings: self.warnings,
            manifest: self.manifest,
            stats: self.stats,
        }
    }

    fn refuse(&mut self, entry: &[u8], reason: impl Into<String>) {
        let r = Refused {
            entry: String::from_utf8_lossy(entry).into_owned(),
            reason: reason.into(),
        };
        self.refused.push(r);
    }

    fn check_cancel(&self) -> Result<()> {
        if self.opts.cancel.is_cancelled() {
            Err(Error::Cancelled)
        } else {
            Ok(())
        }
    }

    /// Accounts for `size` more bytes of output against the limit.
    fn grow(&mut self, name: &[u8], size: u64) -> Result<()> {
        self.total = self.total.saturating_add(size);
        if self.total > self.free {
            return Err(Error::Entry {
                entry: String::from_utf8_lossy(name).into_owned(),
                reason: format!(
                    "the archive needs more than the {} bytes free in the destination; nothing was given its final name",
                    self.free
                ),
            });
        }
        if self.total > self.opts.max_output {
            return Err(Error::Entry {
                entry: String::from_utf8_lossy(name).into_owned(),
                reason: format!(
                    "the archive expands to more than the {} byte limit; raise it with --max-output if this is expected",
                    self.opts.max_output
                ),
            });
        }
        Ok(())
    }

    fn dir(&mut self, rel: PathBuf, mode: u32, mtime: SystemTime) -> Result<()> {
        self.stats.dirs += 1;
        if let Some(dest) = &self.opts.dest {
            if !rel.as_os_str().is_empty() {
                self.guard.create(dest, &rel).map_err(|e| Error::Io {
                    path: dest.join(&rel),
                    source: e,
                })?;
            }
        }
        self.dirs.push(DirMeta { rel, mode, mtime });
        Ok(())
    }

    /// Prepares a file's place: parent directories, and the keep-existing rule. `false`: skip it.
    fn place(&mut self, rel: &Path) -> Result<bool> {
        let Some(dest) = &self.opts.dest else {
            return Ok(true);
        };
        self.guard.parents(dest, rel).map_err(|e| Error::Io {
            path: dest.join(rel),
            source: e,
        })?;
        let path = dest.join(rel);
        // In a directory this run created, nothing can be in the way: skip the lstat.
        if rel.parent().is_some_and(|p| self.guard.created_here(p)) {
            return Ok(true);
        }
        match fs::symlink_metadata(&path) {
            Ok(_) if self.opts.keep_existing => {
                self.stats.kept_existing += 1;
                tracing::info!("{}: exists; kept", path.display());
                Ok(false)
            }
            Ok(md) if md.is_dir() => Err(Error::Io {
                path,
                source: io::Error::other("a directory is in the way of a file"),
            }),
            _ => Ok(true),
        }
    }

    fn send(&mut self, job: WriteJob) -> Result<()> {
        let jobs = self.jobs.as_ref().expect("jobs open while reading");
        jobs.send(job).map_err(|_| Error::Panic {
            stage: "unpack-write",
            entry: None,
            message: "writers stopped".into(),
        })
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }
}

/// Reads a tar stream entry by entry, dispatching file data to the writers.
fn read_tar(ctx: &mut Ctx<'_>, tar: Box<dyn Read + '_>) -> Result<()> {
    let mut archive = TarReader::new(tar);
    let mut count = 0u64;
    while let Some(entry) = archive.next_entry().map_err(|e| damaged(count, e))? {
        ctx.check_cancel()?;
        count += 1;
        let seq = ctx.next_seq();
        let raw = entry.path.clone();
        let (mode, mtime) = (entry.mode, entry.mtime);
        if entry.typeflag == b'V' {
            continue; // a volume label names the archive, not a file: GNU tar skips it too
        }
        let rel = match safety::entry_path(&raw, false) {
            Ok(rel) => rel,
            Err(r) => {
                ctx.refuse(&raw, r.0);
                continue;
            }
        };
        match entry.typeflag {
            // The reader also gives `5` for dumpdirs and for pre-POSIX directories (a regular-file
            // type and a trailing slash).
            b'5' => ctx.dir(rel, mode, mtime)?,
            b'M' => ctx.refuse(
                &raw,
                "continuation of a file from another volume of a multi-volume archive; cannot extract it alone",
            ),
            _ if entry.is_file() => {
                if !matches!(entry.typeflag, b'0' | 0 | b'7') {
                    // GNU tar, bsdtar and Python all extract unknown types as regular files.
                    let w = Warning {
                        path: rel.clone(),
                        message: format!(
                            "unknown entry type {:?}, extracted as a regular file",
                            entry.typeflag as char
                        ),
                    };
                    tracing::warn!("{}: {}", w.path.display(), w.message);
                    ctx.warnings.push(w);
                }
                if rel.as_os_str().is_empty() {
                    ctx.refuse(&raw, "a file cannot be the destination itself");
                    continue;
                }
                let size = entry.size;
                ctx.grow(&raw, size)?;
                let is_manifest = rel == Path::new(MANIFEST_PATH);
                ctx.files.insert(rel.clone());
                if !ctx.place(&rel)? {
                    continue; // the rest of its data is skipped by the next `next_entry`
                }
                let mut data_in = archive.data();
                if size <= crate::read::SMALL_FILE || is_manifest {
                    let cost = ctx
                        .budget
                        .acquire(size + 512, &|| ctx.opts.cancel.is_cancelled())
                        .map_err(|_| Error::Cancelled)?;
                    let mut data = Vec::with_capacity(size.min(64 << 20) as usize);
                    data_in
                        .read_to_end(&mut data)
                        .map_err(|e| damaged(count, e))?;
                    if is_manifest {
                        ctx.manifest = Some(data.clone());
                    }
                    ctx.send(WriteJob {
                        seq,
                        rel,
                        mode,
                        mtime,
                        data: JobData::Whole(data),
                        cost,
                    })?;
                } else {
                    let (tx, rx) = bounded(crate::read::STREAM_DEPTH);
                    ctx.send(WriteJob {
                        seq,
                        rel,
                        mode,
                        mtime,
                        data: JobData::Chunks(rx, size),
                        cost: 0,
                    })?;
                    loop {
                        let mut chunk = Vec::with_capacity(crate::read::CHUNK);
                        let n = (&mut data_in)
                            .take(crate::read::CHUNK as u64)
                            .read_to_end(&mut chunk)
                            .map_err(|e| damaged(count, e))?;
                        if n == 0 {
                            break;
                        }
                        ctx.check_cancel()?;
                        if tx.send(chunk).is_err() {
                            break; // the writer failed; its error is reported from its result
                        }
                    }
                }
            }
            b'2' => match safety::symlink_target(&rel, &entry.link) {
                Ok(target) if ctx.place(&rel)? => ctx.links.push(LinkJob {
                    seq,
                    rel,
                    kind: Link::Sym { target },
                }),
                Ok(_) => {}
                Err(r) => ctx.refuse(&raw, r.0),
            },
            b'1' => match safety::entry_path(&entry.link, false) {
                Ok(target) if target.as_os_str().is_empty() => {
                    ctx.refuse(&raw, "hard link to the destination itself")
                }
                // Only to a regular file this archive extracted before the link.
                Ok(target) if !ctx.files.contains(&target) => ctx.refuse(
                    &raw,
                    format!(
                        "hard link to {}, which is not an earlier file of this archive",
                        target.display()
                    ),
                ),
                Ok(target) => {
                    if ctx.place(&rel)? {
                        ctx.links.push(LinkJob {
                            seq,
                            rel,
                            kind: Link::Hard { target },
                        });
                    }
                }
                Err(r) => ctx.refuse(&raw, format!("hard link target: {}", r.0)),
            },
            _ => ctx.refuse(&raw, "device and FIFO entries are never created"),
        }
    }
    // Read to the end: the gzip or zstd checksum and trailer are verified there.
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(|e| damaged(count, e))?;
    Ok(())
}

fn damaged(after: u64, e: io::Error) -> Error {
    Error::BadArchive(format!("damaged archive after {after} entries: {e}"))
}

/// Reads a zip's directory and hands each file to the writers, which read their data themselves.
fn read_zip(ctx: &mut Ctx<'_>, file: &File) -> Result<()> {
    let entries = zipread::read_directory(file)?;
    let shared = std::sync::Arc::new(file.try_clone().map_err(Error::Input)?);
    for e in entries {
        ctx.check_cancel()?;
        let seq = ctx.next_seq();
        let rel = match safety::entry_path(&e.name, true) {
            Ok(rel) => rel,
            Err(r) => {
                ctx.refuse(&e.name, r.0);
                continue;
            }
        };
        let mode = e
            .unix_mode
            .unwrap_or(if e.is_dir() { 0o755 } else { 0o644 });
        if e.is_dir() {
            ctx.dir(rel, mode, time_of(e.mtime))?;
            continue;
        }
        if let Some(m) = e.unix_mode.map(|m| m & 0o170000) {
            if !matches!(m, 0o100000 | 0o120000 | 0) {
                ctx.refuse(&e.name, "device, FIFO and socket entries are never created");
                continue;
            }
        }
        ctx.grow(&e.name, e.usize)?;
        if e.is_symlink() {
            if e.usize > 4096 {
                ctx.refuse(&e.name, "symlink target longer than 4096 bytes");
                continue;
            }
            let mut target = Vec::new();
            zipread::open_entry(file, &e)?
                .read_to_end(&mut target)
                .map_err(|err| entry_error(&e, err))?;
            match safety::symlink_target(&rel, &target) {
                Ok(target) if ctx.place(&rel)? => ctx.links.push(LinkJob {
                    seq,
                    rel,
                    kind: Link::Sym { target },
                }),
                Ok(_) => {}
                Err(r) => ctx.refuse(&e.name, r.0),
            }
            continue;
        }
        if rel.as_os_str().is_empty() {
            ctx.refuse(&e.name, "a file cannot be the destination itself");
            continue;
        }
        // Refuse what cannot be read before any writer starts on it.
        if e.encrypted() || !matches!(e.method, 0 | 8 | 93) {
            if let Err(err) = zipread::open_entry(file, &e) {
                let reason = match err {
                    Error::Entry { reason, .. } => reason,
                    other => other.to_string(),
                };
                ctx.refuse(&e.name, reason);
                continue;
            }
        }
        if rel == Path::new(MANIFEST_PATH) {
            let mut text = Vec::new();
            zipread::open_entry(file, &e)?
                .read_to_end(&mut text)
                .map_err(|err| entry_error(&e, err))?;
            ctx.manifest = Some(text);
        }
        if !ctx.place(&rel)? {
            continue;
        }
        ctx.send(WriteJob {
            seq,
            rel,
            mode,
            mtime: time_of(e.mtime),
            data: JobData::Zip(std::sync::Arc::clone(&shared), Box::new(e)),
            cost: 0,
        })?;
    }
    Ok(())
}

fn entry_error(e: &ZipEntry, err: io::Error) -> Error {
    Error::Entry {
        entry: e.name_lossy(),
        reason: err.to_string(),
    }
}

/// A writer thread: writes each file to a temporary name beside its final place, hashing as it goes.
fn writer(
    dest: Option<&Path>,
    jobs: Receiver<WriteJob>,
    results: Sender<Written>,
    budget: &Budget,
    cancel: &Cancel,
) {
    for job in jobs {
        if cancel.is_cancelled() {
            budget.release(job.cost);
            continue;
        }
        let (seq, rel, cost, mode) = (job.seq, job.rel.clone(), job.cost, job.mode);
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| write_one(dest, job)))
                .unwrap_or_else(|p| {
                    Err(Error::Panic {
                        stage: "unpack-write",
                        entry: Some(rel.display().to_string()),
                        message: panic_message(&*p),
                    })
                });
        budget.release(cost);
        if results
            .send(Written {
                seq,
                rel,
                mode,
                result,
            })
            .is_err()
        {
            break;
        }
    }
}

/// Hashes everything written through it.
struct HashingWriter<W> {
    inner: W,
    hasher: blake3::Hasher,
    bytes: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn write_one(
    dest: Option<&Path>,
    job: WriteJob,
) -> Result<(Option<tempfile::TempPath>, blake3::Hash, u64)> {
    let final_path = dest.map(|d| d.join(&job.rel));
    let io_err = |e: io::Error| Error::Io {
        path: final_path.clone().unwrap_or_else(|| job.rel.clone()),
        source: e,
    };
    let mut temp = match dest {
        Some(d) => {
            let dir = d.join(job.rel.parent().unwrap_or(Path::new("")));
            let name = job
                .rel
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let prefix = format!(".{name}.");
            Some(
                tempfile::Builder::new()
                    .prefix(&prefix)
                    .suffix(".archiver-tmp")
                    .tempfile_in(dir)
                    .map_err(io_err)?,
            )
        }
        None => None,
    };
    let sink: Box<dyn Write + '_> = match temp.as_mut() {
        Some(t) => Box::new(io::BufWriter::with_capacity(256 << 10, t.as_file_mut())),
        None => Box::new(io::sink()),
    };
    let mut out = HashingWriter {
        inner: sink,
        hasher: blake3::Hasher::new(),
        bytes: 0,
    };
    match job.data {
        JobData::Whole(data) => out.write_all(&data).map_err(io_err)?,
        JobData::Chunks(rx, size) => {
            for chunk in rx {
                out.write_all(&chunk).map_err(io_err)?;
            }
            if out.bytes != size {
                // The reader stopped early: it reports why (damaged archive, cancel).
                return Err(Error::BadArchive(format!(
                    "{}: data ends early",
                    job.rel.display()
                )));
            }
        }
        JobData::Zip(file, entry) => {
            let mut r = zipread::open_entry(&file, &entry)?;
            io::copy(&mut r, &mut out).map_err(|e| Error::Entry {
                entry: entry.name_lossy(),
                reason: e.to_string(),
            })?;
        }
    }
    out.flush().map_err(io_err)?;
    let (hash, bytes) = (out.hasher.finalize(), out.bytes);
    drop(out);
    let temp = match temp {
        Some(t) => {
            set_file_mode(t.as_file(), safety::safe_mode(job.mode)).map_err(io_err)?;
            t.as_file().set_modified(job.mtime).map_err(io_err)?;
            Some(t.into_temp_path())
        }
        None => None,
    };
    Ok((temp, hash, bytes))
}
