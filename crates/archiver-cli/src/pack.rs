//! `archiver pack`.

use anyhow::Context;
use archiver::{Format, PackReport, Packer};

use crate::cli::PackArgs;
use crate::output::Output;
use crate::Outcome;

pub fn run(
    args: PackArgs,
    quiet: bool,
    verbose: bool,
    cancel: &archiver::Cancel,
) -> anyhow::Result<Outcome> {
    let format = output_format(&args)?;
    if stats_to_stdout(&args) && archive_to_stdout(&args) {
        anyhow::bail!(
            "--stats-json -: stdout carries the archive; give the statistics a file, or the archive one (-o FILE)"
        );
    }
    if let (Some(stats), Some(out)) = (&args.stats_json, &args.output) {
        if !stats_to_stdout(&args) && !archive_to_stdout(&args) && same_file(stats, out) {
            anyhow::bail!(
                "--stats-json {}: that is the archive's own file (-o); give the statistics another",
                stats.display()
            );
        }
    }
    let reproducible = if args.reproducible {
        Some(source_date_epoch()?)
    } else {
        None
    };
    let mut output = Output::open(args.output.as_deref())?;
    let mut packer = Packer::new(&args.paths)
        .format(format)
        .zip_method(args.zip_method.parse()?)
        .skip_files(output.own_files())
        .ignore_files(args.ignore_files)
        .follow_symlinks(args.follow_symlinks)
        .reproducible(reproducible)
        .manifest(!args.no_manifest)
        .strict(args.strict)
        .memory_budget(args.memory << 20)
        .cancel_with(cancel.clone());
    if let Some(dir) = &args.directory {
        packer = packer.directory(dir);
    }
    if verbose {
        packer = packer.on_entry(|path| {
            eprintln!(
                "{}",
                archiver::escape_name(path.as_os_str().as_encoded_bytes())
            )
        });
    }
    if let Some(j) = args.jobs {
        packer = packer.jobs(j as usize);
    }
    if let Some(l) = args.level {
        packer = packer.level(l);
    }
    for glob in &args.exclude {
        packer = packer.exclude(glob.clone());
    }
    packer = test_fault(packer);

    let reporter = crate::progress::Reporter::new(args.progress, args.no_progress, quiet)
        .map(std::sync::Arc::new);
    if let Some(r) = &reporter {
        let r = std::sync::Arc::clone(r);
        packer = packer.on_progress(move |p| r.update(p));
    }
    let report = packer.pack(output.writer());
    if let Some(r) = &reporter {
        r.finish();
    }
    // An output error names the output: the file, or stdout (a closed pipe, say).
    let report = report.map_err(|e| match e {
        archiver::Error::Output(_) => anyhow::Error::new(e).context(output.name()),
        e => e.into(),
    })?;
    output.commit()?;
    write_stats(&args, &report)?;
    Ok(if report.warnings.is_empty() {
        Outcome::Success
    } else {
        Outcome::Warnings
    })
}

/// The format to write: `-f`, checked against `-o PATH`'s extension (or taken from it); plain tar
/// on stdout when neither says.
fn output_format(args: &PackArgs) -> anyhow::Result<Format> {
    let to_stdout = archive_to_stdout(args);
    let explicit = args
        .format
        .as_deref()
        .map(str::parse::<Format>)
        .transpose()?;
    Ok(match &args.output {
        Some(p) if !to_stdout => format_for(p, explicit)?,
        _ => explicit.unwrap_or(Format::Tar),
    })
}

/// The archive goes to stdout (no `-o`, or `-o -`).
fn archive_to_stdout(args: &PackArgs) -> bool {
    args.output
        .as_deref()
        .is_none_or(|p| p == std::path::Path::new("-"))
}

/// Whether two paths name one file: the same file if both exist, else the same name in the
/// same directory.
fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let id = |p: &std::path::Path| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
    if let (Some(x), Some(y)) = (id(a), id(b)) {
        return x == y;
    }
    let place = |p: &std::path::Path| {
        let dir = match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => std::path::Path::new("."),
        };
        Some(std::fs::canonicalize(dir).ok()?.join(p.file_name()?))
    };
    place(a).is_some_and(|x| Some(x) == place(b))
}

/// `--stats-json -`: the statistics on stdout (only when the archive goes to a file).
fn stats_to_stdout(args: &PackArgs) -> bool {
    args.stats_json
        .as_deref()
        .is_some_and(|p| p == std::path::Path::new("-"))
}

/// `--stats` (a table on stderr) and `--stats-json FILE` (`-`: stdout).
fn write_stats(args: &PackArgs, report: &PackReport) -> anyhow::Result<()> {
    if args.stats {
        eprint!("{}", crate::pack::render_stats(report));
    }
    if let Some(path) = &args.stats_json {
        let mut value = serde_json::to_value(&report.stats)?;
        value["verdict"] = report.stats.verdict().into();
        let mut json = serde_json::to_vec_pretty(&value)?;
        if stats_to_stdout(args) {
            use std::io::Write;
            json.push(b'\n');
            let mut out = std::io::stdout().lock();
            out.write_all(&json)
                .and_then(|()| out.flush())
                .context("writing the statistics to stdout")?;
        } else {
            std::fs::write(path, json)
                .with_context(|| format!("{}: cannot write statistics", path.display()))?;
        }
    }
    Ok(())
}

/// Extensions of formats we read or recognise but do not write: naming one is a mistake, not a
/// request for a plain tar.
const FOREIGN: &[&str] = &[
    ".tar.xz", ".txz", ".xz", ".tar.bz2", ".tbz", ".tbz2", ".bz2", ".tar.lz", ".lz", ".lzma",
    ".tar.lz4", ".lz4", ".7z", ".rar", ".gz", ".zst", ".cpio", ".jar",
];

/// The format for `-o PATH`: from its extension, checked against `-f` when both are given.
fn format_for(path: &std::path::Path, explicit: Option<Format>) -> anyhow::Result<Format> {
    let supported = ".tar, .tar.gz, .tgz, .tar.zst, .tzst, .zip";
    // A device or FIFO (such as /dev/null) has no extension to go by.
    if std::fs::metadata(path).is_ok_and(|m| !m.is_file()) {
        return Ok(explicit.unwrap_or(Format::Tar));
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    match (Format::from_path(path), explicit) {
        (Some(by_name), Some(f)) if by_name != f => anyhow::bail!(
            "{}: the extension says {by_name} but -f says {f}; make them agree",
            path.display()
        ),
        (Some(f), _) => Ok(f),
        (None, explicit) => {
            if let Some(ext) = FOREIGN.iter().find(|e| name.ends_with(*e)) {
                anyhow::bail!(
                    "{}: archiver does not write {ext} archives; use one of {supported}",
                    path.display()
                );
            }
            explicit.ok_or_else(|| {
                anyhow::anyhow!(
                    "{}: cannot tell the format from the name; use one of {supported}, or give -f",
                    path.display()
                )
            })
        }
    }
}

/// Fault injection for the test suite only (debug builds): `ARCHIVER_TEST_PANIC_AT=STAGE:NAME` makes
/// the STAGE (`read` or `write`) panic at the entry whose file name is NAME. Release builds ignore it.
fn test_fault(packer: Packer) -> Packer {
    #[cfg(debug_assertions)]
    if let Ok(spec) = std::env::var("ARCHIVER_TEST_PANIC_AT") {
        if let Some((stage, name)) = spec.split_once(':') {
            let (stage, name) = (stage.to_string(), std::ffi::OsString::from(name));
            return packer.fault_hook(std::sync::Arc::new(
                move |s: &str, rel: &std::path::Path| {
                    if s == stage && rel.file_name() == Some(name.as_os_str()) {
                        panic!("injected by ARCHIVER_TEST_PANIC_AT");
                    }
                },
            ));
        }
    }
    packer
}

/// SOURCE_DATE_EPOCH as reproducible-builds.org defines it; 0 when unset.
fn source_date_epoch() -> anyhow::Result<u64> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse::<u64>()
            .with_context(|| format!("SOURCE_DATE_EPOCH={v:?} is not a number of seconds")),
        _ => Ok(0),
    }
}

/// The `--stats` table.
pub fn render_stats(report: &PackReport) -> String {
    let s = &report.stats;
    let secs = s.wall.as_secs_f64().max(1e-9);
    let mut out = format!(
        "files {}  dirs {}  symlinks {}  hardlinks {}  skipped {}  warnings {}\n\
         in {}  out {}  ratio {:.3}  wall {:.3}s  {:.1} MB/s  {:.0} files/s\n",
        s.files,
        s.dirs,
        s.symlinks,
        s.hardlinks,
        s.skipped,
        s.warnings,
        human(s.bytes_in),
        human(s.bytes_out),
        s.ratio(),
        secs,
        s.bytes_in as f64 / secs / 1e6,
        s.files as f64 / secs,
    );
    out.push_str(&stage_table(&s.stages));
    out.push_str(&format!(
        "reorder peak {} entries; budget peak {} of {}\n{}\n",
        s.reorder_peak,
        human(s.budget_peak),
        human(s.budget_limit),
        s.verdict()
    ));
    out
}

/// The per-stage table of `--stats` (pack and unpack alike).
pub(crate) fn stage_table(stages: &[archiver::StageStats]) -> String {
    let w = stages
        .iter()
        .map(|s| s.name.len())
        .max()
        .unwrap_or(0)
        .max(6);
    let mut out = format!(
        "{:<w$} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
        "stage", "threads", "items", "busy s", "busy", "starved", "blocked"
    );
    for st in stages {
        out.push_str(&format!(
            "{:<w$} {:>7} {:>9} {:>9.3} {:>8.0}% {:>8.0}% {:>8.0}%\n",
            st.name,
            st.threads,
            st.items,
            st.busy.as_secs_f64(),
            st.busy_ratio() * 100.0,
            st.starved_ratio() * 100.0,
            st.blocked_ratio() * 100.0
        ));
    }
    out
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
