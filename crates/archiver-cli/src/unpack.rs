//! `archiver unpack` and `archiver verify`.

use std::io;
use std::path::Path;

use anyhow::bail;
use archiver::Unpacker;

use crate::cli::{UnpackArgs, VerifyArgs};
use crate::progress::{ProgressReader, Reporter};
use crate::Outcome;

pub fn run(args: UnpackArgs, quiet: bool, cancel: &archiver::Cancel) -> anyhow::Result<Outcome> {
    let mut u = Unpacker::new(&args.directory)
        .keep_existing(args.keep_existing)
        .sync(!args.no_sync)
        .max_output(args.max_output)
        .cancel_with(cancel.clone());
    if let Some(j) = args.jobs {
        u = u.jobs(j as usize);
    }
    let path = args.archive.as_deref().filter(|p| *p != Path::new("-"));
    let reporter = Reporter::new(args.progress, args.no_progress, quiet);
    let result = unpack_with(&u, path, reporter.as_ref());
    finish(result, path)
}

/// Runs the unpacker on a file or stdin; with a reporter, progress is the share of the archive read.
/// (A zip file is read in place, in parallel, and shows no progress.)
fn unpack_with(
    u: &Unpacker,
    path: Option<&Path>,
    reporter: Option<&Reporter>,
) -> archiver::Result<archiver::UnpackReport> {
    let result = match (path, reporter) {
        (Some(p), Some(r)) if !is_zip(p) => {
            let file = std::fs::File::open(p).map_err(|e| archiver::Error::Io {
                path: p.to_path_buf(),
                source: e,
            })?;
            let total = file.metadata().map(|m| m.len()).unwrap_or(0);
            u.unpack(io::BufReader::with_capacity(
                256 << 10,
                ProgressReader::new(file, total, r),
            ))
        }
        (Some(p), _) => u.unpack_path(p),
        (None, Some(r)) => u.unpack(io::BufReader::with_capacity(
            256 << 10,
            ProgressReader::new(io::stdin().lock(), 0, r),
        )),
        (None, None) => u.unpack(io::BufReader::with_capacity(256 << 10, io::stdin().lock())),
    };
    if let Some(r) = reporter {
        r.finish();
    }
    result
}

fn is_zip(p: &Path) -> bool {
    let mut head = [0u8; 4];
    std::fs::File::open(p)
        .and_then(|mut f| io::Read::read(&mut f, &mut head))
        .is_ok_and(|n| archiver::detect(&head[..n]) == Some(archiver::Detected::Zip))
}

pub fn verify(args: VerifyArgs, quiet: bool, cancel: &archiver::Cancel) -> anyhow::Result<Outcome> {
    let mut u = Unpacker::verify_only().cancel_with(cancel.clone());
    if let Some(dir) = &args.against {
        u = u.against(dir);
    }
    if let Some(j) = args.jobs {
        u = u.jobs(j as usize);
    }
    let path = Some(args.archive.as_path()).filter(|p| *p != Path::new("-"));
    let reporter = Reporter::new(args.progress, args.no_progress, quiet);
    let result = unpack_with(&u, path, reporter.as_ref());
    let outcome = finish(result, path)?;
    Ok(outcome)
}

fn finish(
    result: archiver::Result<archiver::UnpackReport>,
    path: Option<&Path>,
) -> anyhow::Result<Outcome> {
    let name = path.map_or_else(|| "<stdin>".to_string(), |p| p.display().to_string());
    match result {
        Ok(report) => {
            if report.stats.manifest_checked.is_none() {
                tracing::info!("{name}: no embedded manifest; checked CRCs and checksums only");
            }
            for w in &report.warnings {
                println!("{}: {}", w.path.display(), w.message);
            }
            Ok(if report.warnings.is_empty() {
                Outcome::Success
            } else {
                Outcome::Warnings
            })
        }
        Err(archiver::Error::Refused(list)) => {
            for r in &list {
                eprintln!("archiver: {}: {}", r.entry, r.reason);
            }
            bail!(
                "{name}: {} entr{} refused or failed verification; no file was given its final name",
                list.len(),
                if list.len() == 1 { "y" } else { "ies" }
            )
        }
        Err(e) => Err(anyhow::Error::new(e).context(name)),
    }
}
