//! `archiver group`: one archive per file stem.

use anyhow::Context;
use archiver::{Format, Packer};

use crate::cli::GroupArgs;
use crate::Outcome;

pub fn run(args: GroupArgs, quiet: bool, cancel: &archiver::Cancel) -> anyhow::Result<Outcome> {
    let format: Format = args.format.parse()?;
    let stems = archiver::group::plan(&args.dir, &args.ext)?;
    std::fs::create_dir_all(&args.output).with_context(|| {
        format!(
            "{}: cannot create the output directory",
            args.output.display()
        )
    })?;
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
                    "{:<32} {:>6} {:>12}  FAILED: {e}",
                    stem.stem,
                    stem.files.len(),
                    "-"
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
    Ok(if failed > 0 || warned > 0 {
        Outcome::Warnings
    } else {
        Outcome::Success
    })
}
