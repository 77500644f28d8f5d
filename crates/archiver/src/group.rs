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

/// Groups the regular files directly in `dir` by stem. `exts` (without dots, case-insensitive)
/// keeps only files with one of those extensions; empty keeps all.
pub fn plan(dir: &Path, exts: &[String]) -> Result<Vec<Stem>> {
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

/// Packs every stem into `outdir/<stem>.<ext>` with `threads` stems at a time (each packed with one
/// worker, so the machine is shared across stems, not within one). Each archive is written to a
/// temporary file and renamed when complete. Results come back in stem order. `progress`, if given,
/// is called with (stems done, stems in all) after each stem.
pub fn run(
    stems: &[Stem],
    outdir: &Path,
    template: &Packer,
    threads: usize,
    cancel: &Cancel,
    progress: Option<&(dyn Fn(usize, usize) + Sync)>,
) -> Vec<StemResult> {
    let next = AtomicUsize::new(0);
    let finished = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<StemResult>>> =
        Mutex::new((0..stems.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..threads.max(1).min(stems.len().max(1)) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(stem) = stems.get(i) else { break };
                let result = if cancel.is_cancelled() {
                    Err(Error::Cancelled)
                } else {
                    pack_one(stem, outdir, template, cancel)
                };
                results.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(StemResult {
                    stem: stem.stem.clone(),
                    result,
                });
                let done = finished.fetch_add(1, Ordering::Relaxed) + 1;
                if let Some(report) = progress {
                    report(done, stems.len());
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .flatten()
        .collect()
}

fn pack_one(
    stem: &Stem,
    outdir: &Path,
    template: &Packer,
    cancel: &Cancel,
) -> Result<(PathBuf, PackReport)> {
    let format = template.pack_options().format;
    let target = outdir.join(format!("{}.{}", stem.stem, extension(format)));
    let mut temp = tempfile::Builder::new()
        .prefix(&format!(".{}.", stem.stem))
        .suffix(".tmp")
        .tempfile_in(outdir)
        .map_err(|e| Error::Io {
            path: target.clone(),
            source: e,
        })?;
    // Each file is stored under its own name, as if packed with `-C DIR name...`.
    let names = stem.files.iter().filter_map(|f| f.file_name());
    let mut packer = Packer::new(names).options(template.pack_options().clone());
    if let Some(dir) = stem.files.first().and_then(|f| f.parent()) {
        packer = packer.directory(dir);
    }
    let packer = packer.jobs(1).cancel_with(cancel.clone());
    let report = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        packer.pack(temp.as_file_mut())
    }))
    .unwrap_or_else(|p| {
        Err(Error::Panic {
            stage: "group",
            entry: Some(stem.stem.clone()),
            message: crate::error::panic_message(&*p),
        })
    })?;
    temp.persist(&target).map_err(|e| Error::Io {
        path: target.clone(),
        source: e.error,
    })?;
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
