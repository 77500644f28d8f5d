//! Group-by-stem: one archive per file stem (`model1.dat` + `model1.out` → `model1.zip`), built in
//! parallel across stems by a fixed pool of threads, each stem isolated from the others' failures.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::error::{Error, Result};
use crate::{Cancel, Format, PackReport, Packer};

/// One stem and the files that share it, in name order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stem {
    /// The file name up to its last dot (the whole name if that would be empty).
    pub stem: String,
    /// The files, sorted by name.
    pub files: Vec<PathBuf>,
}

/// The outcome for one stem.
#[derive(Debug)]
pub struct StemResult {
    /// The stem.
    pub stem: String,
    /// The archive written, with its report, or why it failed.
    pub result: Result<(PathBuf, PackReport)>,
}

/// The stem of a file name: up to the last dot; the whole name when it has no dot or only a
/// leading one (`.profile`).
pub fn stem_of(name: &str) -> &str {
    match name.rfind('.') {
        Some(0) | None => name,
        Some(i) => &name[..i],
    }
}

/// Groups the regular files directly in `dir` by stem (see [`Grouper::plan`]). `exts` (without dots, case-insensitive)
/// keeps only files with one of those extensions; empty keeps all.
fn plan(dir: &Path, exts: &[String]) -> Result<Vec<Stem>> {
    let read = std::fs::read_dir(dir).map_err(|e| Error::Io {
        path: dir.to_path_buf(),
        source: e,
    })?;
    let mut stems: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for entry in read {
        let entry = entry.map_err(|e| Error::Io {
            path: dir.to_path_buf(),
            source: e,
        })?;
        let path = entry.path();
        if !std::fs::metadata(&path)
            .map(|m| m.is_file())
            .unwrap_or(false)
        {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase());
        if !exts.is_empty()
            && !ext.as_ref().is_some_and(|e| {
                exts.iter()
                    .any(|x| x.trim_start_matches('.').eq_ignore_ascii_case(e))
            })
        {
            continue;
        }
        stems
            .entry(stem_of(&name).to_string())
            .or_default()
            .push(path);
    }
    Ok(stems
        .into_iter()
        .map(|(stem, mut files)| {
            files.sort();
            Stem { stem, files }
        })
        .collect())
}

/// File name extension for a format's archives.
pub fn extension(format: Format) -> &'static str {
    match format {
        Format::Tar => "tar",
        Format::TarGz => "tar.gz",
        Format::TarZst => "tar.zst",
        Format::Zip => "zip",
    }
}

type StemProgress = dyn Fn(usize, usize) + Send + Sync;

/// Packs one archive per file stem of a directory (`model1.dat` + `model1.out` →
/// `OUTDIR/model1.zip`), several stems at a time, each stem isolated from the others' failures.
///
/// ```
/// # fn main() -> Result<(), archiver::Error> {
/// let dir = tempfile::tempdir().unwrap();
/// for name in ["m1.dat", "m1.out", "m2.dat"] {
///     std::fs::write(dir.path().join(name), name).unwrap();
/// }
/// let out = dir.path().join("archives");
/// let results = archiver::group::Grouper::new(dir.path(), &out)
///     .packer(archiver::Packer::new(Vec::<std::path::PathBuf>::new()).format(archiver::Format::Zip))
///     .threads(2)
///     .run()?;
/// assert_eq!(results.len(), 2);
/// assert!(results.iter().all(|r| r.result.is_ok()));
/// assert!(out.join("m1.zip").is_file());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Grouper {
    dir: PathBuf,
    outdir: PathBuf,
    template: Packer,
    threads: usize,
    extensions: Vec<String>,
    cancel: Cancel,
    progress: Option<std::sync::Arc<StemProgress>>,
}

impl std::fmt::Debug for Grouper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grouper")
            .field("dir", &self.dir)
            .field("outdir", &self.outdir)
            .field("threads", &self.threads)
            .field("extensions", &self.extensions)
            .finish_non_exhaustive()
    }
}

impl Grouper {
    /// Groups the regular files directly in `dir`, writing the archives into `outdir` (created if
    /// missing; it may be `dir` itself). Defaults: tar, all cores, every extension.
    pub fn new(dir: impl Into<PathBuf>, outdir: impl Into<PathBuf>) -> Self {
        Grouper {
            dir: dir.into(),
            outdir: outdir.into(),
            template: Packer::new(Vec::<PathBuf>::new()),
            threads: crate::default_jobs(),
            extensions: Vec::new(),
            cancel: Cancel::new(),
            progress: None,
        }
    }

    /// The options every stem is packed with (format, level, manifest, excludes...): `template`'s,
    /// its paths ignored.
    pub fn packer(mut self, template: Packer) -> Self {
        self.template = template;
        self
    }

    /// The archive format (a shortcut for the template's).
    pub fn format(mut self, format: Format) -> Self {
        self.template = self.template.format(format);
        self
    }

    /// Stems packed at once, each with one worker thread (the machine is shared across stems, not
    /// within one).
    pub fn threads(mut self, n: usize) -> Self {
        self.threads = n.max(1);
        self
    }

    /// Keeps only files with one of these extensions (without the dot, case-insensitive).
    pub fn extensions<I, S>(mut self, exts: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.extensions = exts.into_iter().map(Into::into).collect();
        self
    }

    /// Uses this cancellation handle.
    pub fn cancel_with(mut self, cancel: Cancel) -> Self {
        self.cancel = cancel;
        self
    }

    /// Calls `f(stems done, stems in all)` after each stem, from the thread that packed it.
    pub fn on_progress(mut self, f: impl Fn(usize, usize) + Send + Sync + 'static) -> Self {
        self.progress = Some(std::sync::Arc::new(f));
        self
    }

    /// The stems that [`run`](Self::run) packs, in name order. When OUTDIR is DIR, archives of
    /// this format (and our temporary files) found there are left out, so a second run never packs
    /// the first run's archives.
    pub fn plan(&self) -> Result<Vec<Stem>> {
        let mut stems = plan(&self.dir, &self.extensions)?;
        if let Ok(out) = std::fs::canonicalize(&self.outdir) {
            let ext = extension(self.template.pack_options().format);
            let ours = |f: &PathBuf| {
                f.parent()
                    .and_then(|p| std::fs::canonicalize(p).ok())
                    .is_some_and(|p| p == out)
                    && f.file_name().is_some_and(|n| {
                        let n = n.to_string_lossy();
                        n.ends_with(ext) || (n.starts_with('.') && n.ends_with(".tmp"))
                    })
            };
            for s in &mut stems {
                s.files.retain(|f| !ours(f));
            }
            stems.retain(|s| !s.files.is_empty());
        }
        Ok(stems)
    }

    /// Creates OUTDIR, plans and packs every stem. Fails only when DIR cannot be read or OUTDIR
    /// created; each stem's own outcome is in its [`StemResult`].
    pub fn run(&self) -> Result<Vec<StemResult>> {
        std::fs::create_dir_all(&self.outdir).map_err(|e| Error::Io {
            path: self.outdir.clone(),
            source: io_context(e, "cannot create the output directory"),
        })?;
        let stems = self.plan()?;
        Ok(self.run_stems(&stems))
    }

    /// Packs these stems (from [`plan`](Self::plan)) into OUTDIR, which must exist, each to a
    /// temporary file renamed when complete. Results come back in stem order.
    pub fn run_stems(&self, stems: &[Stem]) -> Vec<StemResult> {
        let next = AtomicUsize::new(0);
        let finished = AtomicUsize::new(0);
        let results: Mutex<Vec<Option<StemResult>>> =
            Mutex::new((0..stems.len()).map(|_| None).collect());
        std::thread::scope(|s| {
            for _ in 0..self.threads.min(stems.len().max(1)) {
                let spawned = crate::threads::spawn(s, "group", || loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(stem) = stems.get(i) else { break };
                    let result = if self.cancel.is_cancelled() {
                        Err(Error::Cancelled)
                    } else {
                        pack_one(stem, &self.outdir, &self.template, &self.cancel)
                    };
                    results.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(StemResult {
                        stem: stem.stem.clone(),
                        result,
                    });
                    let done = finished.fetch_add(1, Ordering::Relaxed) + 1;
                    if let Some(report) = &self.progress {
                        report(done, stems.len());
                    }
                });
                if spawned.is_err() {
                    break; // fewer threads; with none, every stem says so below
                }
            }
        });
        let results = results.into_inner().unwrap_or_else(|p| p.into_inner());
        results
            .into_iter()
            .zip(stems)
            .map(|(r, stem)| {
                r.unwrap_or_else(|| StemResult {
                    stem: stem.stem.clone(),
                    result: Err(Error::Thread(std::io::Error::other(
                        "no thread could be started to pack it",
                    ))),
                })
            })
            .collect()
    }
}

fn io_context(e: std::io::Error, what: &str) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{what}: {e}"))
}

fn pack_one(
    stem: &Stem,
    outdir: &Path,
    template: &Packer,
    cancel: &Cancel,
) -> Result<(PathBuf, PackReport)> {
    let format = template.pack_options().format;
    let target = outdir.join(format!("{}.{}", stem.stem, extension(format)));
    // As `pack -o`: a temporary beside the target (removed if anything fails), 0666 less the
    // umask for a new archive, a replaced one's permission bits kept, durable before the rename.
    let mut out = crate::atomic::AtomicFile::create(&target)?;
    // Each file is stored under its own name, as if packed with `-C DIR name...`.
    let names = stem.files.iter().filter_map(|f| f.file_name());
    let mut packer = Packer::new(names).options(template.pack_options().clone());
    if let Some(dir) = stem.files.first().and_then(|f| f.parent()) {
        packer = packer.directory(dir);
    }
    let packer = packer.jobs(1).cancel_with(cancel.clone());
    let report = crate::threads::catch(
        "group",
        || Some(stem.stem.clone()),
        || packer.pack(out.file_mut()),
    )??;
    out.commit()?;
    Ok((target, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stems() {
        assert_eq!(stem_of("model1.dat"), "model1");
        assert_eq!(stem_of("a.tar.gz"), "a.tar");
        assert_eq!(stem_of("README"), "README");
        assert_eq!(stem_of(".profile"), ".profile");
    }

    #[test]
    fn plans_by_stem_and_extension() {
        let t = tempfile::tempdir().unwrap();
        for n in ["m1.dat", "m1.out", "m2.dat", "m2.log", "notes.txt"] {
            std::fs::write(t.path().join(n), n).unwrap();
        }
        std::fs::create_dir(t.path().join("sub.dir")).unwrap();
        let p = plan(t.path(), &[]).unwrap();
        let names: Vec<&str> = p.iter().map(|s| s.stem.as_str()).collect();
        assert_eq!(names, ["m1", "m2", "notes"]);
        assert_eq!(p[0].files.len(), 2);
        let p = plan(t.path(), &["dat".into(), ".OUT".into()]).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].files.len(), 2);
        assert_eq!(p[1].files.len(), 1);
    }
}
