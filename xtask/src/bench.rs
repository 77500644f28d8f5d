//! `cargo xtask bench`: archiver against the peers on this machine, side by side, same data, same run.
//!
//! Datasets are generated deterministically (no downloads) under `target/bench/data`, scaled by
//! `--size` so a Raspberry Pi is not swamped; `--files-1m` adds a tree of 1,000,000 tiny files that
//! is never scaled. Every pack command writes its archive into a pipe that this harness drains and
//! counts (no tool can skip work because it sees /dev/null). Each tool of a workload runs once to
//! warm up, then the tools take turns, `--runs` rounds (so a drifting machine moves them together,
//! not their ratio); we report the median, min and max wall time, the time to the first output
//! byte (pack rows), throughput, the ratio to the fastest peer measured in the same run, the output
//! size, and the peak RSS of the pipeline's largest process. Unpack rows run on a tmpfs without
//! sync (CPU work compared, not the disk) where one exists, and on disk with sync on both sides.

use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use clap::Args;

use crate::{have, workspace_root, Result};

/// Names of the generated datasets, in the order they run.
const GENERATED: [&str; 4] = ["tiny", "small", "large", "mixed"];
/// The dataset `--files-1m` adds (never scaled, never part of `--quick`).
const FILES_1M: &str = "files-1m";

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Smoke run: generated datasets at 2% of their size, one timed run each (what CI runs)
    #[arg(long)]
    quick: bool,
    /// Scale the generated datasets by F (0.25 on a Raspberry Pi); files-1m is never scaled
    #[arg(long, value_name = "F", default_value_t = 1.0, value_parser = parse_scale)]
    size: f64,
    /// Timed runs per workload, after one untimed warm-up run
    #[arg(long, value_name = "N", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    runs: u32,
    /// Threads for archiver and for the parallel peers (pigz, zstd, crabz) [default: all cores]
    #[arg(short, long, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    jobs: Option<u32>,
    /// Also time a real tree (repeatable); its rows are named after the directory
    #[arg(long, value_name = "PATH")]
    dir: Vec<PathBuf>,
    /// Run only these datasets (repeat or separate with commas): tiny, small, large, mixed,
    /// files-1m, or the name of a --dir
    #[arg(long, value_name = "NAME", value_delimiter = ',')]
    only: Vec<String>,
    /// Add the 1,000,000-file dataset: files of 0-64 bytes in 1,000 directories, generated once
    /// (minutes, about 4 GiB of disk blocks on ext4); rows: pack tar against GNU tar, first
    /// byte, wall time and peak RSS side by side. Not part of --quick; `--only files-1m` implies it
    #[arg(long = "files-1m")]
    files_1m: bool,
    /// Time this archiver binary instead of building one (`cargo build --release`)
    #[arg(long, value_name = "PATH")]
    archiver: Option<PathBuf>,
    /// Skip the unpack rows on disk (synced on both sides): on a slow virtual disk one synced
    /// unpack of 100,000 files takes a minute or more. The tmpfs rows still run
    #[arg(long)]
    no_disk: bool,
}

fn parse_scale(s: &str) -> Result<f64> {
    match s.parse::<f64>() {
        Ok(f) if f.is_finite() && f > 0.0 => Ok(f),
        Ok(_) => Err("must be a number above 0".into()),
        Err(e) => Err(e.to_string()),
    }
}

#[derive(Debug, Args)]
pub struct RssArgs {
    /// Size of the one large (sparse) file, in GiB
    #[arg(long, value_name = "N", default_value_t = 4)]
    gib: u64,
    /// Number of small files (0-2 KiB) beside it
    #[arg(long, value_name = "N", default_value_t = 200_000)]
    files: usize,
    /// Speed of the consumer, in MB/s
    #[arg(long = "rate-mb", value_name = "N", default_value_t = 20,
          value_parser = clap::value_parser!(u64).range(1..))]
    rate_mb: u64,
}

/// One timed measurement series.
#[derive(Debug)]
struct Measure {
    dataset: String,
    work: String,
    tool: String,
    median: f64,
    min: f64,
    max: f64,
    /// Median time from spawn to the first byte on the pipe; `None` when nothing came out of it.
    first_byte: Option<f64>,
    /// Archive size; `None` for unpack rows.
    out_bytes: Option<u64>,
    peak_rss_kib: u64,
}

struct Dataset {
    name: String,
    dir: PathBuf,
    files: u64,
    bytes: u64,
}

/// One row to time: `cmd` runs through `sh -c`; `prepare` runs untimed before every run.
struct Work {
    work: String,
    tool: String,
    prepare: Option<String>,
    cmd: String,
    out: Out,
}

/// Where a workload's output goes, which decides what the size column means.
enum Out {
    /// The archive on stdout, drained and counted here.
    Pipe,
    /// The archive written to this file (tools that cannot write to stdout).
    File(PathBuf),
    /// A tree unpacked on disk: no size.
    Tree,
}

/// Peers that add rows when present; installing them is the user's choice.
const OPTIONAL_PEERS: [(&str, &str); 3] = [
    ("crabz", "pack tar.gz"),
    ("ouch", "pack zip, unpack zip"),
    ("ripunzip", "unpack zip"),
];

/// Resolves `--only` against the datasets this run knows, so a typo fails before any work.
fn select(o: &BenchArgs, dirs: &[(String, PathBuf)]) -> Result<Vec<String>> {
    let mut known: Vec<String> = GENERATED.iter().map(|s| s.to_string()).collect();
    known.push(FILES_1M.into());
    for (name, path) in dirs {
        if known.contains(name) {
            return Err(format!(
                "--dir {}: a dataset named {name} exists already; use a directory with another name",
                path.display()
            ));
        }
        known.push(name.clone());
    }
    if let Some(bad) = o.only.iter().find(|n| !known.contains(n)) {
        return Err(format!(
            "--only {bad}: no dataset of that name; valid names: {}",
            known.join(", ")
        ));
    }
    let wanted = |n: &str| o.only.is_empty() || o.only.iter().any(|x| x == n);
    Ok(known
        .into_iter()
        .filter(|n| {
            if n == FILES_1M {
                (o.files_1m && wanted(n)) || o.only.iter().any(|x| x == n)
            } else {
                wanted(n)
            }
        })
        .collect())
}

pub fn run(mut o: BenchArgs) -> Result {
    if o.quick {
        o.size = o.size.min(0.02);
        o.runs = o.runs.min(1);
    }
    let dirs = o
        .dir
        .iter()
        .map(|d| {
            let full = d
                .canonicalize()
                .map_err(|e| format!("--dir {}: {e}", d.display()))?;
            if !full.is_dir() {
                return Err(format!("--dir {}: not a directory", d.display()));
            }
            let name = full
                .file_name()
                .map_or("root".into(), |n| n.to_string_lossy().into_owned());
            Ok((name, full))
        })
        .collect::<Result<Vec<_>>>()?;
    let selected = select(&o, &dirs)?;
    let j = o.jobs.map_or_else(cores, |j| j as usize);

    let root = workspace_root();
    let bench_dir = root.join("target/bench");
    fs::create_dir_all(&bench_dir).map_err(|e| e.to_string())?;
    let bin = match &o.archiver {
        Some(b) => b.clone(),
        None => crate::build_archiver(true)?,
    };

    let mut datasets = generate(&bench_dir.join("data"), o.size, &selected)?;
    for (name, dir) in dirs {
        if selected.contains(&name) {
            let (files, bytes) = count(&dir);
            datasets.push(Dataset {
                name,
                dir,
                files,
                bytes,
            });
        }
    }

    let missing: Vec<String> = OPTIONAL_PEERS
        .iter()
        .filter(|(t, _)| !have(t))
        .map(|(t, rows)| format!("{t} ({rows})"))
        .collect();
    if !missing.is_empty() {
        eprintln!("not on PATH, rows skipped: {}", missing.join(", "));
    }
    let tmpfs = Scratch::on_tmpfs();
    if tmpfs.is_none() {
        eprintln!("no tmpfs at /dev/shm: unpack rows on disk only");
    }
    let tar = if have("gtar") { "gtar" } else { "tar" };

    let mut results = Vec::new();
    let mut commands = Vec::new();
    for ds in &datasets {
        eprintln!(
            "== {} ({} files, {:.1} MiB)",
            ds.name,
            ds.files,
            ds.bytes as f64 / 1048576.0
        );
        let work = if ds.name == FILES_1M {
            huge_workloads(&bin, ds, tar, j, &bench_dir, tmpfs.as_ref())?
        } else {
            workloads(&bin, ds, tar, j, &bench_dir, tmpfs.as_ref(), !o.no_disk)?
        };
        // The tools of one workload run in turns (a round of each, `runs` times), so a machine
        // that slows down or speeds up during the run shifts them all, not the ratio.
        for group in work.chunk_by(|a, b| a.work == b.work) {
            for (w, m) in group.iter().zip(measure(&ds.name, group, o.runs)?) {
                eprintln!(
                    "  {:<24} {:<24} {:>8.3} s  first byte {:>8}  {:>12} bytes  {:>7} KiB RSS",
                    w.work,
                    w.tool,
                    m.median,
                    m.first_byte.map_or("-".into(), |t| format!("{t:.3} s")),
                    m.out_bytes.map_or("-".into(), |b| b.to_string()),
                    m.peak_rss_kib
                );
                results.push(m);
                commands.push((w.prepare.clone(), w.cmd.clone()));
            }
        }
    }
    let mut table = render(&results, &datasets, &missing);
    table.push_str(&worst_rows(&results, &commands, j)?);
    println!("{table}");
    let json = serde_json::json!({
        "machine": machine(),
        "jobs": j,
        "runs": o.runs,
        "size": o.size,
        "skipped_peers": missing,
        "results": results.iter().map(|m| serde_json::json!({
            "dataset": m.dataset, "work": m.work, "tool": m.tool, "median_s": m.median,
            "min_s": m.min, "max_s": m.max, "first_byte_s": m.first_byte,
            "out_bytes": m.out_bytes, "peak_rss_kib": m.peak_rss_kib,
        })).collect::<Vec<_>>(),
    });
    let out = bench_dir.join("results.json");
    fs::write(&out, serde_json::to_vec_pretty(&json).unwrap()).map_err(|e| e.to_string())?;
    fs::write(bench_dir.join("results.md"), &table).map_err(|e| e.to_string())?;
    eprintln!("wrote {} and results.md", out.display());
    Ok(())
}

/// The pack row and the unpack row where we are furthest behind the fastest peer (of those taking
/// 50 ms or more), run once more with `--stats`: the time of every stage, and the bottleneck
/// verdict.
fn worst_rows(
    results: &[Measure],
    commands: &[(Option<String>, String)],
    j: usize,
) -> Result<String> {
    let ours = format!("archiver -j{j}");
    let ratio = |m: &Measure| {
        results
            .iter()
            .filter(|p| {
                p.dataset == m.dataset && p.work == m.work && !p.tool.starts_with("archiver")
            })
            .map(|p| (m.median / p.median, p.tool.clone()))
            .min_by(|a, b| a.0.total_cmp(&b.0))
    };
    let mut s = String::from("\n## Where the time goes: the worst rows against their peer\n");
    for unpack in [false, true] {
        // Rows of a few milliseconds are process start-up, where stage times say nothing; they
        // count only when there is nothing else (--quick, --only tiny).
        let rows = |min: f64| {
            results
                .iter()
                .zip(commands)
                .filter(|(m, _)| m.tool == ours && m.work.starts_with("unpack") == unpack)
                .filter(move |(m, _)| m.median >= min)
                .filter_map(|(m, c)| ratio(m).map(|r| (m, c, r)))
                .max_by(|a, b| a.2 .0.total_cmp(&b.2 .0))
        };
        let worst = rows(0.05).or_else(|| rows(0.0));
        let Some((m, (prepare, cmd), (r, peer))) = worst else {
            continue;
        };
        let with_stats = cmd
            .replacen("' pack -q ", "' pack -q --stats ", 1)
            .replacen("' unpack -q ", "' unpack -q --stats ", 1);
        let script = match prepare {
            Some(p) => format!("{p} && {with_stats} >/dev/null"),
            None => format!("{with_stats} >/dev/null"),
        };
        let out = Command::new("sh")
            .arg("-c")
            .arg(&script)
            .output()
            .map_err(|e| format!("{script}: {e}"))?;
        let err = String::from_utf8_lossy(&out.stderr);
        let _ = write!(
            s,
            "\n{} of {}: {r:.2}× {peer}\n\n`{with_stats}`\n\n```\n{}```\n",
            m.work,
            m.dataset,
            err.trim_start()
        );
        eprintln!("worst {} row ({}, {r:.2}×):\n{err}", m.work, m.dataset);
    }
    Ok(s)
}

fn pipe(work: &str, tool: String, cmd: String) -> Work {
    Work {
        work: work.into(),
        tool,
        prepare: None,
        cmd,
        out: Out::Pipe,
    }
}

/// The 1,000,000-file rows: pack tar, archiver against GNU tar (the streaming issue's table),
/// then list, verify and unpack of its tar.zst (the trust issue's memory bound: peak RSS must not
/// grow with the number of entries).
fn huge_workloads(
    bin: &Path,
    ds: &Dataset,
    tar: &str,
    j: usize,
    bench_dir: &Path,
    tmpfs: Option<&Scratch>,
) -> Result<Vec<Work>> {
    let (a, dir) = (bin.display(), ds.dir.display());
    let mut work = vec![
        pipe(
            "tar",
            format!("archiver -j{j}"),
            format!("'{a}' pack -q -j {j} -f tar -C '{dir}' . -o -"),
        ),
        pipe(
            "tar",
            format!("{tar} cf"),
            format!("{tar} -C '{dir}' -cf - ."),
        ),
    ];
    let arch = bench_dir.join(format!("{}.tar.zst", ds.name));
    let t = arch.display();
    crate::run(
        Command::new("sh")
            .arg("-c")
            .arg(format!("'{a}' pack -q -C '{dir}' . -o '{t}'")),
    )?;
    let row = |work: &str, tool: String, prepare: Option<String>, cmd: String| Work {
        work: work.into(),
        tool,
        prepare,
        cmd,
        out: Out::Tree,
    };
    work.push(row(
        "list tar.zst",
        "archiver".into(),
        None,
        format!("'{a}' list '{t}' > /dev/null"),
    ));
    work.push(row(
        "list tar.zst",
        format!("{tar} -I zstd -tf"),
        None,
        format!("{tar} -I zstd -tf '{t}' > /dev/null"),
    ));
    work.push(row(
        "verify tar.zst",
        format!("archiver -j{j}"),
        None,
        format!("'{a}' verify -q -j {j} '{t}'"),
    ));
    let (place, out, no_sync) = match tmpfs {
        Some(s) => ("tmpfs", s.0.join("out"), " --no-sync"),
        None => ("disk", bench_dir.join("out"), ""),
    };
    let o_ = out.display();
    let prep = Some(format!("rm -rf '{o_}' && mkdir -p '{o_}'"));
    work.push(row(
        &format!("unpack tar.zst ({place})"),
        format!("archiver -j{j}"),
        prep.clone(),
        format!("'{a}' unpack -q -j {j}{no_sync} '{t}' -C '{o_}'"),
    ));
    work.push(row(
        &format!("unpack tar.zst ({place})"),
        format!("{tar} -I zstd -xf"),
        prep,
        format!("{tar} -I zstd -xf '{t}' -C '{o_}'"),
    ));
    Ok(work)
}

/// Every pack and unpack row for one dataset, with the peers that are on PATH.
fn workloads(
    bin: &Path,
    ds: &Dataset,
    tar: &str,
    j: usize,
    bench_dir: &Path,
    tmpfs: Option<&Scratch>,
    disk: bool,
) -> Result<Vec<Work>> {
    let (a, dir) = (bin.display().to_string(), ds.dir.display().to_string());
    let mut work = Vec::new();
    for (format, peers) in [
        (
            "tar",
            vec![(format!("{tar} cf"), format!("{tar} -C '{dir}' -cf - ."))],
        ),
        ("tar.gz", Vec::new()),
        (
            "tar.zst",
            vec![(
                format!("{tar} | zstd -T{j} -3"),
                format!("{tar} -C '{dir}' -cf - . | zstd -q -T{j} -3 -c"),
            )],
        ),
        ("zip", Vec::new()),
    ] {
        // -j1 beside -jN shows the scaling; with one core they are the same row.
        for jobs in if j > 1 { vec![1, j] } else { vec![1] } {
            work.push(pipe(
                format,
                format!("archiver -j{jobs}"),
                format!("'{a}' pack -q -j {jobs} -f {format} -C '{dir}' . -o -"),
            ));
        }
        for (tool, cmd) in peers {
            work.push(pipe(format, tool, cmd));
        }
    }
    if have("zip") {
        work.push(pipe(
            "zip",
            "zip -r -6".into(),
            format!("cd '{dir}' && zip -r -q -6 - ."),
        ));
    }
    // ouch cannot write an archive to stdout: it writes a file (on the tmpfs when there is one).
    if have("ouch") {
        let scratch = tmpfs.map_or_else(|| bench_dir.to_path_buf(), |t| t.0.clone());
        let file = scratch.join(format!("ouch-{}.zip", ds.name));
        let f = file.display();
        work.push(Work {
            work: "zip".into(),
            tool: "ouch".into(),
            prepare: Some(format!("rm -f '{f}'")),
            cmd: format!("ouch compress -q -y '{dir}' '{f}'"),
            out: Out::File(file),
        });
    }
    if have("pigz") {
        work.push(pipe(
            "tar.gz",
            format!("{tar} | pigz -p{j} -6"),
            format!("{tar} -C '{dir}' -cf - . | pigz -p {j} -6 -c"),
        ));
    } else if have("gzip") {
        work.push(pipe(
            "tar.gz",
            format!("{tar} | gzip -6"),
            format!("{tar} -C '{dir}' -cf - . | gzip -6 -c"),
        ));
    }
    if have("crabz") {
        work.push(pipe(
            "tar.gz",
            format!("{tar} | crabz -p{j} -l6"),
            format!("{tar} -C '{dir}' -cf - . | crabz -p {j} -l 6"),
        ));
    }
    // Pack rows grouped by format, as the table reads best.
    let order = ["tar", "tar.gz", "tar.zst", "zip"];
    work.sort_by_key(|w| order.iter().position(|f| *f == w.work));

    // Unpack: the same archives for every tool, made once here.
    let arch = bench_dir.join(format!("{}.tar", ds.name));
    let archz = bench_dir.join(format!("{}.zip", ds.name));
    let arch_gz = bench_dir.join(format!("{}.tar.gz", ds.name));
    let arch_zst = bench_dir.join(format!("{}.tar.zst", ds.name));
    let (t, z) = (arch.display(), archz.display());
    let (tgz, tzst) = (arch_gz.display(), arch_zst.display());
    crate::run(Command::new("sh").arg("-c").arg(format!(
        "'{a}' pack -q -C '{dir}' . -o '{t}' && '{a}' pack -q -C '{dir}' . -o '{z}' && \
         '{a}' pack -q -C '{dir}' . -o '{tgz}' && '{a}' pack -q -C '{dir}' . -o '{tzst}'"
    )))?;
    // On a tmpfs nobody syncs (CPU work compared); on disk our default makes the data durable,
    // so the peers are timed with `sync` after them.
    let mut places = Vec::new();
    if let Some(t) = tmpfs {
        places.push(("tmpfs", t.0.join("out"), " --no-sync", ""));
    }
    if disk || tmpfs.is_none() {
        places.push(("disk", bench_dir.join("out"), "", " && sync"));
    }
    for (place, out, no_sync, sync) in places {
        let o_ = out.display();
        let prep = Some(format!("rm -rf '{o_}' && mkdir -p '{o_}'"));
        let plus = if sync.is_empty() { "" } else { " + sync" };
        let mut unpack = |format: &str, tool: String, cmd: String| {
            work.push(Work {
                work: format!("unpack {format} ({place})"),
                tool,
                prepare: prep.clone(),
                cmd,
                out: Out::Tree,
            })
        };
        unpack(
            "tar",
            format!("archiver -j{j}"),
            format!("'{a}' unpack -q -j {j}{no_sync} '{t}' -C '{o_}'"),
        );
        unpack(
            "tar",
            format!("{tar} xf{plus}"),
            format!("{tar} -xf '{t}' -C '{o_}'{sync}"),
        );
        for (format, file, peer) in [
            ("tar.gz", &tgz, if have("pigz") { "-I pigz" } else { "-z" }),
            ("tar.zst", &tzst, "-I zstd"),
        ] {
            unpack(
                format,
                format!("archiver -j{j}"),
                format!("'{a}' unpack -q -j {j}{no_sync} '{file}' -C '{o_}'"),
            );
            unpack(
                format,
                format!("{tar} {peer} -xf{plus}"),
                format!("{tar} {peer} -xf '{file}' -C '{o_}'{sync}"),
            );
        }
        unpack(
            "zip",
            format!("archiver -j{j}"),
            format!("'{a}' unpack -q -j {j}{no_sync} '{z}' -C '{o_}'"),
        );
        if have("unzip") {
            unpack(
                "zip",
                format!("unzip -q{plus}"),
                format!("unzip -q '{z}' -d '{o_}'{sync}"),
            );
        }
        if have("ripunzip") {
            unpack(
                "zip",
                format!("ripunzip{plus}"),
                format!("ripunzip unzip-file '{z}' -d '{o_}'{sync}"),
            );
        }
        if have("ouch") {
            unpack(
                "zip",
                format!("ouch{plus}"),
                format!("ouch decompress -q -y '{z}' --dir '{o_}'{sync}"),
            );
        }
    }
    Ok(work)
}

/// A private directory on a tmpfs for unpack destinations, removed when the run ends.
struct Scratch(PathBuf);

impl Scratch {
    #[cfg(target_os = "linux")]
    fn on_tmpfs() -> Option<Scratch> {
        const TMPFS_MAGIC: i64 = 0x0102_1994;
        let shm = c"/dev/shm";
        // SAFETY: statfs is plain data, filled by the kernel for a NUL-terminated path.
        let mut st: libc::statfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statfs(shm.as_ptr(), &mut st) } != 0 || st.f_type as i64 != TMPFS_MAGIC {
            return None;
        }
        let dir = PathBuf::from(format!("/dev/shm/archiver-bench-{}", std::process::id()));
        fs::create_dir_all(&dir).ok()?;
        Some(Scratch(dir))
    }

    #[cfg(not(target_os = "linux"))]
    fn on_tmpfs() -> Option<Scratch> {
        None
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn machine() -> String {
    format!(
        "{} {} {} cores",
        std::env::consts::OS,
        std::env::consts::ARCH,
        cores()
    )
}

/// One warm-up run of each of `works`, then `runs` rounds in which each runs once, in turn.
fn measure(dataset: &str, works: &[Work], runs: u32) -> Result<Vec<Measure>> {
    #[derive(Default)]
    struct Acc {
        times: Vec<f64>,
        first: Vec<f64>,
        out_bytes: u64,
        rss: u64,
    }
    let mut acc: Vec<Acc> = works.iter().map(|_| Acc::default()).collect();
    for i in 0..=runs {
        for (w, a) in works.iter().zip(&mut acc) {
            if let Some(p) = &w.prepare {
                run_piped(p)?;
            }
            let r = run_piped(&w.cmd)?;
            if i > 0 {
                a.times.push(r.wall);
                a.first.extend(r.first_byte);
            }
            a.out_bytes = match &w.out {
                Out::Pipe => r.bytes,
                Out::File(f) => fs::metadata(f)
                    .map_err(|e| format!("{}: {e}", f.display()))?
                    .len(),
                Out::Tree => 0,
            };
            a.rss = a.rss.max(r.rss_kib);
        }
    }
    Ok(works
        .iter()
        .zip(acc)
        .map(|(w, mut a)| {
            a.times.sort_by(f64::total_cmp);
            a.first.sort_by(f64::total_cmp);
            Measure {
                dataset: dataset.into(),
                work: w.work.clone(),
                tool: w.tool.clone(),
                median: a.times[a.times.len() / 2],
                min: a.times[0],
                max: a.times[a.times.len() - 1],
                first_byte: a.first.get(a.first.len() / 2).copied(),
                out_bytes: (!matches!(w.out, Out::Tree)).then_some(a.out_bytes),
                peak_rss_kib: a.rss,
            }
        })
        .collect())
}

/// What one run of a command took.
struct Run {
    /// Seconds from spawn to exit.
    wall: f64,
    /// Seconds from spawn to the first byte on stdout, if any came.
    first_byte: Option<f64>,
    /// Bytes on stdout.
    bytes: u64,
    /// Peak RSS of the largest process in the pipeline, KiB.
    rss_kib: u64,
}

/// Runs `cmd` through `sh -c`, draining and counting its stdout here.
fn run_piped(cmd: &str) -> Result<Run> {
    let mut sh = Command::new("sh");
    sh.arg("-c")
        .arg(format!("set -e; {cmd}"))
        .stdout(Stdio::piped());
    small_spawn(&mut sh);
    let start = Instant::now();
    let mut child = sh.spawn().map_err(|e| e.to_string())?;
    let mut out = child.stdout.take().unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    let mut first_byte = None;
    loop {
        match out.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                first_byte.get_or_insert_with(|| start.elapsed().as_secs_f64());
                total += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    let (ok, rss_kib) = wait_rss(&mut child)?;
    let wall = start.elapsed().as_secs_f64();
    if !ok {
        return Err(format!("`{cmd}` failed"));
    }
    Ok(Run {
        wall,
        first_byte,
        bytes: total,
        rss_kib,
    })
}

/// Makes `cmd` start with fork + exec rather than posix_spawn. A posix_spawn child shares this
/// process's memory until it execs, and Linux then carries our whole RSS (several MiB) into the
/// child's peak as a floor: GNU tar's 2.5 MiB read as 6 MiB. A forked child starts from the few
/// pages it copied.
#[cfg(unix)]
fn small_spawn(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the hook does nothing; having one is what makes std fork instead of posix_spawn.
    unsafe {
        cmd.pre_exec(|| Ok(()));
    }
}

#[cfg(not(unix))]
fn small_spawn(_: &mut Command) {}

#[cfg(unix)]
fn wait_rss(child: &mut std::process::Child) -> Result<(bool, u64)> {
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = child.id() as libc::pid_t;
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    if rc != pid {
        return Err(format!("wait4: {}", std::io::Error::last_os_error()));
    }
    // Linux reports KiB, macOS bytes. The shell's figure is the largest of its own and of every
    // child it waited for, so it covers each process of the pipeline (not their sum).
    let rss = if cfg!(target_os = "macos") {
        usage.ru_maxrss as u64 / 1024
    } else {
        usage.ru_maxrss as u64
    };
    Ok((
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        rss,
    ))
}

#[cfg(not(unix))]
fn wait_rss(child: &mut std::process::Child) -> Result<(bool, u64)> {
    Ok((child.wait().map_err(|e| e.to_string())?.success(), 0))
}

/// A table cell: tool names hold shell pipes, which would end a Markdown cell.
fn cell(s: &str) -> String {
    s.replace('|', "\\|")
}

fn secs(t: Option<f64>) -> String {
    t.map_or(String::new(), |t| format!("{t:.3}"))
}

fn render(results: &[Measure], datasets: &[Dataset], missing: &[String]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "machine: {}\n", machine());
    if !missing.is_empty() {
        let _ = writeln!(s, "not on PATH, rows skipped: {}\n", missing.join(", "));
    }
    let _ = writeln!(
        s,
        "| dataset | work | tool | median s | min–max s | first byte s | MB/s | files/s | time vs fastest peer | size | size vs that peer | peak RSS MiB |"
    );
    let _ = writeln!(
        s,
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    let ours = |m: &Measure| m.tool.starts_with("archiver");
    for m in results {
        let ds = datasets.iter().find(|d| d.name == m.dataset).unwrap();
        let peer = results
            .iter()
            .filter(|p| p.dataset == m.dataset && p.work == m.work && !ours(p))
            .min_by(|a, b| a.median.total_cmp(&b.median));
        let (tr, sr) = match peer {
            Some(p) if ours(m) => (
                format!("{:.2}× {}", m.median / p.median, cell(&p.tool)),
                match (m.out_bytes, p.out_bytes) {
                    (Some(a), Some(b)) if b > 0 => {
                        format!("{:+.1}%", (a as f64 / b as f64 - 1.0) * 100.0)
                    }
                    _ => String::new(),
                },
            ),
            _ => (String::new(), String::new()),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.3} | {:.3}–{:.3} | {} | {:.0} | {:.0} | {} | {} | {} | {:.1} |",
            m.dataset,
            m.work,
            cell(&m.tool),
            m.median,
            m.min,
            m.max,
            secs(m.first_byte),
            ds.bytes as f64 / m.median / 1e6,
            ds.files as f64 / m.median,
            tr,
            m.out_bytes.map_or(String::new(), |b| b.to_string()),
            sr,
            m.peak_rss_kib as f64 / 1024.0
        );
    }
    // The huge tree's three figures side by side, as the streaming goal is stated.
    for ds in datasets.iter().filter(|d| d.name == FILES_1M) {
        let rows: Vec<&Measure> = results.iter().filter(|m| m.dataset == ds.name).collect();
        let (Some(us), Some(peer)) = (
            rows.iter().find(|m| ours(m)),
            rows.iter().find(|m| !ours(m)),
        ) else {
            continue;
        };
        let _ = writeln!(
            s,
            "\n{} ({} files): pack tar, output drained through a pipe\n\n| | {} | {} | ratio |\n|---|---:|---:|---:|",
            ds.name,
            ds.files,
            cell(&peer.tool),
            cell(&us.tool)
        );
        let ratio = |a: f64, b: f64| {
            if b > 0.0 {
                format!("{:.2}×", a / b)
            } else {
                String::new()
            }
        };
        if let (Some(a), Some(b)) = (us.first_byte, peer.first_byte) {
            let _ = writeln!(
                s,
                "| first output byte | {b:.3} s | {a:.3} s | {} |",
                ratio(a, b)
            );
        }
        let (a, b) = (
            us.peak_rss_kib as f64 / 1024.0,
            peer.peak_rss_kib as f64 / 1024.0,
        );
        let _ = writeln!(
            s,
            "| peak RSS | {b:.1} MiB | {a:.1} MiB | {} |",
            ratio(a, b)
        );
        let _ = writeln!(
            s,
            "| wall time (median) | {:.3} s | {:.3} s | {} |",
            peer.median,
            us.median,
            ratio(us.median, peer.median)
        );
    }
    s
}

fn count(dir: &Path) -> (u64, u64) {
    let (mut files, mut bytes) = (0, 0);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let Ok(md) = e.path().symlink_metadata() else {
                continue;
            };
            if md.is_dir() {
                stack.push(e.path());
            } else if md.is_file() {
                files += 1;
                bytes += md.len();
            }
        }
    }
    (files, bytes)
}

/// Deterministic data: the same `--size` gives the same bytes on every machine.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

const WORDS: [&str; 16] = [
    "fn ",
    "let ",
    "self",
    ".iter()",
    "match ",
    "=> ",
    "{\n",
    "}\n",
    "    ",
    "return ",
    "value",
    "archive",
    "// comment ",
    "0x1f8b",
    "Result<",
    ">;\n",
];

fn text(rng: &mut Lcg, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len + 16);
    while v.len() < len {
        let r = rng.next();
        v.extend_from_slice(WORDS[(r % 16) as usize].as_bytes());
        if r.is_multiple_of(7) {
            v.extend_from_slice(format!("{}", r % 100_000).as_bytes());
        }
    }
    v.truncate(len);
    v
}

fn random(rng: &mut Lcg, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        v.extend_from_slice(&(rng.next() ^ (rng.next() << 31)).to_le_bytes());
    }
    v.truncate(len);
    v
}

/// Generates (once) and returns the selected datasets, in the order they run.
fn generate(base: &Path, size: f64, selected: &[String]) -> Result<Vec<Dataset>> {
    let scaled = |n: f64| ((n * size).round() as usize).max(1);
    let specs: [(&str, usize); 5] = [
        ("tiny", 3),
        ("small", scaled(100_000.0)),
        ("large", scaled(128.0 * 1048576.0)),
        ("mixed", scaled(2_000.0)),
        (FILES_1M, 1_000_000),
    ];
    let mut out = Vec::new();
    for (name, n) in specs {
        if !selected.iter().any(|s| s == name) {
            continue;
        }
        let dir = base.join(format!("{name}-{n}"));
        let stamp = base.join(format!("{name}-{n}.complete"));
        if !stamp.exists() {
            eprintln!("generating {}", dir.display());
            let _ = fs::remove_dir_all(&dir);
            let mut rng = Lcg(n as u64 ^ 0x9e37_79b9);
            let write = |rel: String, data: &[u8]| -> Result {
                let p = dir.join(rel);
                fs::create_dir_all(p.parent().unwrap()).map_err(|e| e.to_string())?;
                fs::File::create(&p)
                    .and_then(|mut f| f.write_all(data))
                    .map_err(|e| e.to_string())
            };
            match name {
                "tiny" => {
                    for i in 0..n {
                        write(format!("file{i}.txt"), &text(&mut rng, 2000))?;
                    }
                }
                "small" => {
                    for i in 0..n {
                        let len = (rng.next() % 4097) as usize;
                        write(
                            format!("d{:02}/e{:02}/f{i:06}.txt", i % 97, i % 13),
                            &text(&mut rng, len),
                        )?;
                    }
                }
                "large" => {
                    // Written in 1 MiB pieces: the harness must stay small, because a forked
                    // child's peak RSS starts at its parent's.
                    fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
                    for (file, is_text) in [("random.bin", false), ("text.txt", true)] {
                        let mut f = fs::File::create(dir.join(file)).map_err(|e| e.to_string())?;
                        let mut left = n;
                        while left > 0 {
                            let len = left.min(1 << 20);
                            let piece = if is_text {
                                text(&mut rng, len)
                            } else {
                                random(&mut rng, len)
                            };
                            f.write_all(&piece).map_err(|e| e.to_string())?;
                            left -= len;
                        }
                    }
                }
                FILES_1M => {
                    // 1,000 directories made up front: one create call per file, nothing else.
                    for d in 0..1000 {
                        fs::create_dir_all(dir.join(format!("d{d:03}")))
                            .map_err(|e| e.to_string())?;
                    }
                    for i in 0..n {
                        let len = (rng.next() % 65) as usize;
                        let p = dir.join(format!("d{:03}/f{i:07}", i % 1000));
                        fs::write(&p, text(&mut rng, len))
                            .map_err(|e| format!("{}: {e}", p.display()))?;
                        if (i + 1) % 100_000 == 0 {
                            eprintln!("  {} of {n} files", i + 1);
                        }
                    }
                }
                _ => {
                    for i in 0..n {
                        let len = 1024 + (rng.next() % (48 << 10)) as usize;
                        write(
                            format!("src/m{:02}/file{i:05}.rs", i % 40),
                            &text(&mut rng, len),
                        )?;
                    }
                    for i in 0..(n / 40).max(1) {
                        let len = (100 << 10) + (rng.next() % (2 << 20)) as usize;
                        write(format!("bin/blob{i:03}.bin"), &random(&mut rng, len))?;
                        write(format!("assets/a{i:03}.gz"), &random(&mut rng, len / 4))?;
                    }
                }
            }
            let (files, bytes) = count(&dir);
            fs::write(&stamp, format!("{files} {bytes}\n")).map_err(|e| e.to_string())?;
        }
        // The stamp holds the counts, so a million files are not walked again on every run.
        let stamped = fs::read_to_string(&stamp).ok().and_then(|t| {
            let (f, b) = t.trim().split_once(' ')?;
            Some((f.parse().ok()?, b.parse().ok()?))
        });
        let (files, bytes) = stamped.unwrap_or_else(|| count(&dir));
        out.push(Dataset {
            name: name.into(),
            dir,
            files,
            bytes,
        });
    }
    Ok(out)
}

/// `cargo xtask rss`: the memory bound under backpressure. Packs a tree of one large (sparse) file
/// plus many small files into a consumer that takes only `--rate-mb` MB/s, and reports the peak RSS
/// of `archiver` next to its byte budget. Defaults: 4 GiB, 200,000 files, 20 MB/s (about 4 minutes).
pub fn rss(args: RssArgs) -> Result {
    let RssArgs {
        gib,
        files,
        rate_mb: rate,
    } = args;
    let root = workspace_root();
    let bin = crate::build_archiver(true)?;
    let dir = root.join(format!("target/rss/tree-{gib}g-{files}"));
    let stamp = root.join(format!("target/rss/tree-{gib}g-{files}.complete"));
    if !stamp.exists() {
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        fs::File::create(dir.join("big.bin"))
            .and_then(|f| f.set_len(gib << 30))
            .map_err(|e| e.to_string())?;
        let mut rng = Lcg(7);
        for i in 0..files {
            let p = dir.join(format!("d{:03}/f{i:06}", i % 500));
            if i < 500 {
                fs::create_dir_all(p.parent().unwrap()).map_err(|e| e.to_string())?;
            }
            let len = (rng.next() % 2048) as usize;
            fs::write(&p, text(&mut rng, len)).map_err(|e| e.to_string())?;
        }
        fs::write(&stamp, b"").map_err(|e| e.to_string())?;
    }
    let mut pack = Command::new(&bin);
    pack.args(["pack", "-q", "-f", "tar", "-C"])
        .arg(&dir)
        .args([".", "-o", "-"])
        .stdout(Stdio::piped());
    small_spawn(&mut pack);
    let mut child = pack.spawn().map_err(|e| e.to_string())?;
    let mut out = child.stdout.take().unwrap();
    let started = Instant::now();
    let mut total = 0u64;
    let mut buf = vec![0u8; 64 << 10];
    let per_sec = rate * 1_000_000;
    loop {
        let n = out.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        total += n as u64;
        // Throttle: never run ahead of `rate` MB/s.
        let due = std::time::Duration::from_secs_f64(total as f64 / per_sec as f64);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    let (ok, rss_kib) = wait_rss(&mut child)?;
    if !ok {
        return Err("archiver pack failed".into());
    }
    let budget_mib = crate::bench::DEFAULT_BUDGET_MIB;
    println!(
        "pack of {gib} GiB + {files} files into a {rate} MB/s consumer: {:.1} GB in {:.0} s, peak RSS {:.1} MiB (byte budget {budget_mib} MiB)",
        total as f64 / 1e9,
        started.elapsed().as_secs_f64(),
        rss_kib as f64 / 1024.0
    );
    Ok(())
}

/// The CLI's default `--memory`, for the report.
const DEFAULT_BUDGET_MIB: u64 = 16;
