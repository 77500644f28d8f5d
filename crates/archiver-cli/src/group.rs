//! `archiver group`: one archive per file stem.

use anyhow::Context;
use archiver::{Format, Packer};

use crate::cli::GroupArgs;
use crate::input::terminal_safe;
use crate::Outcome;

pub fn run(args: GroupArgs, quiet: bool, cancel: &archiver::Cancel) -> anyhow::Result<Outcome> {
    let format: Format = args.format.parse()?;
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
    let reporter = std::sync::Arc::new(crate::progress::Reporter::counter(
        args.progress,
        args.no_progress,
        quiet,
        "stems",
    ));
    let shown = std::sync::Arc::clone(&reporter);
    let grouper = archiver::group::Grouper::new(&args.dir, &args.output)
        .packer(template)
        .threads(threads)
        .extensions(args.ext.iter().cloned())
        .cancel_with(cancel.clone())
        .on_progress(move |done, total| {
            if let Some(r) = shown.as_ref() {
                r.count(done as u64, total as u64, "stems");
            }
        });
    // OUTDIR may be DIR itself: archives written there by an earlier run are never grouped again.
    let stems = grouper.plan()?;
    let results = grouper.run_stems(&stems);
    if let Some(r) = reporter.as_ref() {
        r.finish();
    }
    if cancel.is_cancelled() {
        return Err(archiver::Error::Cancelled.into());
    }
    let (failed, incomplete, warned) = print_results(&args.dir, &stems, &results);
    eprintln!(
        "{} stems: {} packed, {} incomplete, {} failed",
        stems.len(),
        stems.len() - failed - incomplete,
        incomplete,
        failed
    );
    if failed > 0 {
        anyhow::bail!("{failed} of {} stems failed (see above)", stems.len());
    }
    Ok(if warned + incomplete > 0 {
        Outcome::Warnings
    } else {
        Outcome::Success
    })
}

/// Prints one line per stem (its archive, or why it failed; a stem whose archive lacks a file it
/// should hold is INCOMPLETE, one packed with other warnings says WARNINGS, each naming the first
/// warning); returns how many failed, were incomplete, and were packed with warnings. Stems are
/// names from disk: escaped like every name we print.
fn print_results(
    dir: &std::path::Path,
    stems: &[archiver::group::Stem],
    results: &[archiver::group::StemResult],
) -> (usize, usize, usize) {
    let mut failed = 0;
    let mut incomplete = 0;
    let mut warned = 0;
    eprintln!("{:<32} {:>6} {:>12}  result", "stem", "files", "bytes in");
    for (stem, r) in stems.iter().zip(results) {
        let name = terminal_safe(&stem.stem);
        match &r.result {
            Ok((path, report)) => {
                let mut result = terminal_safe(&path.display().to_string());
                if let Some(first) = report.warnings.first() {
                    let label = if report.stats.skipped > 0 {
                        incomplete += 1;
                        "INCOMPLETE"
                    } else {
                        warned += 1;
                        "WARNINGS"
                    };
                    result = format!(
                        "{label}: {} ({} warning{}; first: {}: {})",
                        result,
                        report.warnings.len(),
                        if report.warnings.len() == 1 { "" } else { "s" },
                        terminal_safe(&dir.join(&first.path).display().to_string()),
                        terminal_safe(&first.message)
                    );
                }
                eprintln!(
                    "{:<32} {:>6} {:>12}  {}",
                    name, report.stats.files, report.stats.bytes_in, result
                );
            }
            Err(e) => {
                failed += 1;
                eprintln!(
                    "{:<32} {:>6} {:>12}  FAILED: {}",
                    name,
                    stem.files.len(),
                    "-",
                    terminal_safe(&format!("{e}{}", chain_of(e)))
                );
            }
        }
    }
    (failed, incomplete, warned)
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
