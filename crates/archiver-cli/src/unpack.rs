//! `archiver unpack` and `archiver verify`.

use std::io::{self, Write};
use std::path::Path;

use anyhow::bail;
use archiver::Unpacker;

use crate::cli::{UnpackArgs, VerifyArgs};
use crate::input::{self, terminal_safe};
use crate::progress::{ProgressReader, Reporter};
use crate::Outcome;

pub fn run(
    args: UnpackArgs,
    quiet: bool,
    verbose: u8,
    cancel: &archiver::Cancel,
) -> anyhow::Result<Outcome> {
    let path = args.archive.as_deref().filter(|p| *p != Path::new("-"));
    if path.is_none() {
        input::check_not_terminal()?;
    }
    let mut u = Unpacker::new(&args.directory)
        .keep_existing(args.keep_existing)
        .strip_components(args.strip_components)
        .require_manifest(args.require_manifest)
        .allow_outside_links(args.allow_outside_links)
        .sync(!args.no_sync)
        .max_output(args.max_output)
        .cancel_with(cancel.clone());
    if let Some(j) = args.jobs {
        u = u.jobs(j as usize);
    }
    if verbose > 0 {
        // tar -v: each entry on stderr as it is read, escaped.
        u = u.on_entry(|name| {
            let _ = writeln!(io::stderr().lock(), "{}", archiver::escape_name(name));
        });
    }
    let reporter = Reporter::new(args.progress, args.no_progress, quiet);
    let result = unpack_with(&u, path, reporter.as_ref(), cancel);
    finish(
        result,
        path,
        quiet,
        args.stats,
        "nothing was changed in the destination",
    )
}

/// Runs the unpacker on a file or stdin; with a reporter, progress is the share of the archive read.
/// (A zip file is read in place, in parallel, and shows no progress.)
fn unpack_with(
    u: &Unpacker,
    path: Option<&Path>,
    reporter: Option<&Reporter>,
    cancel: &archiver::Cancel,
) -> archiver::Result<archiver::UnpackReport> {
    let result = match (path, reporter) {
        (Some(p), Some(r)) if !is_zip(p) => {
            let file = std::fs::File::open(p).map_err(|e| archiver::Error::Io {
                path: p.to_path_buf(),
                source: e,
            })?;
            let total = file.metadata().map(|m| m.len()).unwrap_or(0);
            u.unpack_from_file(io::BufReader::with_capacity(
                256 << 10,
                ProgressReader::new(file, total, r),
            ))
        }
        (Some(p), _) => u.unpack_path(p),
        (None, Some(r)) if input::Stdin::is_regular_file() => {
            u.unpack_from_file(io::BufReader::with_capacity(
                256 << 10,
                ProgressReader::new(input::Stdin::new(cancel), 0, r),
            ))
        }
        (None, Some(r)) => u.unpack(io::BufReader::with_capacity(
            256 << 10,
            ProgressReader::new(input::Stdin::new(cancel), 0, r),
        )),
        (None, None) if input::Stdin::is_regular_file() => u.unpack_from_file(
            io::BufReader::with_capacity(256 << 10, input::Stdin::new(cancel)),
        ),
        (None, None) => u.unpack(io::BufReader::with_capacity(
            256 << 10,
            input::Stdin::new(cancel),
        )),
    };
    if let Some(r) = reporter {
        r.finish();
    }
    result
}

fn is_zip(p: &Path) -> bool {
    archiver::is_zip_file(p)
}

pub fn verify(args: VerifyArgs, quiet: bool, cancel: &archiver::Cancel) -> anyhow::Result<Outcome> {
    let path = Some(args.archive.as_path()).filter(|p| *p != Path::new("-"));
    if path.is_none() {
        input::check_not_terminal()?;
    }
    let mut u = Unpacker::verify_only()
        .require_manifest(args.require_manifest)
        .cancel_with(cancel.clone());
    if let Some(dir) = &args.against {
        u = u.against(dir);
    }
    if let Some(j) = args.jobs {
        u = u.jobs(j as usize);
    }
    let reporter = Reporter::new(args.progress, args.no_progress, quiet);
    let result = unpack_with(&u, path, reporter.as_ref(), cancel);
    finish(
        result,
        path,
        quiet,
        args.stats,
        "the archive failed verification",
    )
}

/// `--stats`: the counts (the same as pack's: the manifest is not a user file), time and rate.
fn print_stats(report: &archiver::UnpackReport) {
    let s = &report.stats;
    let secs = s.wall.as_secs_f64().max(1e-9);
    eprintln!(
        "files {}  dirs {}  symlinks {}  hardlinks {}  kept {}  warnings {}",
        s.files,
        s.dirs,
        s.symlinks,
        s.hardlinks,
        s.kept_existing,
        report.warnings.len()
    );
    let manifest = s.manifest_checked.map_or_else(
        || "no manifest".to_string(),
        |n| format!("manifest: {n} files checked"),
    );
    eprintln!(
        "bytes {}  wall {:.3}s  {:.1} MB/s  {:.0} files/s  {manifest}",
        s.bytes,
        secs,
        s.bytes as f64 / secs / 1e6,
        s.files as f64 / secs
    );
    eprint!("{}", crate::pack::stage_table(&s.stages));
    eprintln!("{}", s.verdict());
}

fn finish(
    result: archiver::Result<archiver::UnpackReport>,
    path: Option<&Path>,
    quiet: bool,
    stats: bool,
    refused_means: &str,
) -> anyhow::Result<Outcome> {
    let name = path.map_or_else(
        || "<stdin>".to_string(),
        |p| terminal_safe(&p.display().to_string()),
    );
    match result {
        Ok(report) => {
            if stats {
                print_stats(&report);
            }
            if report.stats.manifest_checked.is_none() && !quiet {
                eprintln!(
                    "archiver: {name}: unverified: the archive carries no manifest, so files were checked only against the format's CRCs and checksums (--require-manifest refuses such archives)"
                );
            }
            // Skipped entries are diagnostics (stderr; -q: only the exit status says so);
            // `verify --against` differences are the command's output (stdout), as with
            // `tar --compare`.
            for w in report.warnings.iter().filter(|_| !quiet) {
                eprintln!(
                    "archiver: {}: {}",
                    terminal_safe(&w.path.display().to_string()),
                    terminal_safe(&w.message)
                );
            }
            let mut out = io::stdout().lock();
            for d in &report.differences {
                let shown = archiver::escape_name(d.path.as_os_str().as_encoded_bytes());
                let _ = writeln!(out, "{shown}: {}", terminal_safe(&d.message));
            }
            Ok(
                if report.warnings.is_empty() && report.differences.is_empty() {
                    Outcome::Success
                } else {
                    Outcome::Warnings
                },
            )
        }
        Err(archiver::Error::Refused(list)) => {
            for r in &list {
                eprintln!(
                    "archiver: {}: {}",
                    terminal_safe(&r.entry),
                    terminal_safe(&r.reason)
                );
            }
            let n = archiver::Refused::count(&list);
            bail!(
                "{name}: {n} entr{} refused; {refused_means}",
                if n == 1 { "y" } else { "ies" }
            )
        }
        Err(e) => Err(anyhow::Error::new(e).context(name)),
    }
}
