//! `archiver group`: one archive per file stem.

use anyhow::Context;
use archiver::{Format, Packer};

use crate::cli::GroupArgs;
use crate::Outcome;

pub fn run(args: GroupArgs, quiet: bool, cancel: &archiver::Cancel) -> anyhow::Result<Outcome> {
    let format: Format = args.format.parse()?;
    std::fs::create_dir_all(&args.output).with_context(|| {
        format!(
            "{}: cannot create the output directory",
            args.output.display()
        )
    })?;
    let mut stems = archiver::group::plan(&args.dir, &args.ext)?;
    // OUTDIR may be DIR itself: archives written there by an earlier run are never grouped again.
    if let Ok(out) = std::fs::canonicalize(&args.output) {
        let in_out = |f: &std::path::PathBuf| {
            f.parent()
                .and_then(|p| std::fs::canonicalize(p).ok())
                .is_some_and(|p| p == out)
                && f.file_name().is_some_and(|n| {
                    let n = n.to_string_lossy();
                    n.ends_with(archiver::group::extension(format))
                        || (n.starts_with('.') && n.ends_with(".tmp"))
                })
        };
        for s in &mut stems {
            s.files.retain(|f| !in_out(f));
        }
        stems.retain(|s| !s.files.is_empty());
    }
    let mut template = Packer::new(Vec::<std::path::PathBuf>::new())
        .format(format)
        .manifest(!args.no_manifest);
    if let Some(l) = args.level {
        template = template.level(l);
    }
    let threads = args
        .jobs
        .map_or_else(archiver::default_jobs, |j| j as usize);
    let reporter =
        crate::progress::Reporter::counter(args.progress, args.no_progress, quiet, "stems");
    let report = |done: usize, total: usize| {
        if let Some(r) = &reporter {
            r.count(done as u64, total as u64, "stems");
        }
    };
    let results = archiver::group::run(
        &stems,
        &args.output,
        &template,
        threads,
        cancel,
        Some(&report),
    );
    if let Some(r) = &reporter {
        r.finish();
    }
    if cancel.is_cancelled() {
        return Err(archiver::Error::Cancelled.into());
    }
    let mut failed = 0;
    let mut warned = 0;
    eprintln!("{:<32} {:>6} {:>12}  result", "stem", "files", "bytes in");
    for (stem, r) in stems.iter().zip(&results) {
        match &r.result {
            Ok((path, report)) => {
                if !report.warnings.is_empty() {
                    warned += 1;
                }
                eprintln!(
                    "{:<32} {:>6} {:>12}  {}",
                    stem.stem,
                    stem.files.len(),
                    report.stats.bytes_in,
                    path.display()
                );
            }
            Err(e) => {
                failed += 1;
                eprintln!(
                    "{:<32} {:>6} {:>12}  FAILED: {e}{}",
                    stem.stem,
                    stem.files.len(),
                    "-",
                    chain_of(e)
                );
            }
        }
    }
    eprintln!(
        "{} stems: {} packed, {} failed",
        stems.len(),
        stems.len() - failed,
        failed
    );
    if failed > 0 {
        anyhow::bail!("{failed} of {} stems failed (see above)", stems.len());
    }
    Ok(if warned > 0 {
        Outcome::Warnings
    } else {
        Outcome::Success
    })
}

/// `: cause: deeper cause` for every source below `e`.
fn chain_of(e: &dyn std::error::Error) -> String {
    let mut out = String::new();
    let mut cur = e.source();
    while let Some(c) = cur {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cur = c.source();
    }
    out
}
