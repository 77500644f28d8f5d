//! `cargo xtask bench`: archiver against the peers on this machine, side by side, same data, same run.
//!
//! Datasets are generated deterministically (no downloads) under `target/bench/data`, scaled by
//! `--size` so a Raspberry Pi is not swamped. Every command writes its archive into a pipe that this
//! harness drains and counts (no tool can skip work because it sees /dev/null). Each workload runs
//! once to warm up, then `--runs` times; we report the median, min and max, throughput, the ratio to
//! the peer measured in the same run, the output size, and the peak RSS of the pipeline's processes.

use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::{have, Result};

struct Opts {
    quick: bool,
    size: f64,
    runs: usize,
    jobs: usize,
    dirs: Vec<PathBuf>,
    only: Option<String>,
}

fn parse(args: &[String]) -> Result<Opts> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut o = Opts {
        quick: false,
        size: 1.0,
        runs: 5,
        jobs: cores,
        dirs: Vec::new(),
        only: None,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().cloned().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--quick" => o.quick = true,
            "--size" => {
                o.size = value("--size")?
                    .parse()
                    .map_err(|e| format!("--size: {e}"))?
            }
            "--runs" => {
                o.runs = value("--runs")?
                    .parse()
                    .map_err(|e| format!("--runs: {e}"))?
            }
            "--jobs" | "-j" => {
                o.jobs = value("--jobs")?
                    .parse()
                    .map_err(|e| format!("--jobs: {e}"))?
            }
            "--dir" => o.dirs.push(PathBuf::from(value("--dir")?)),
            "--only" => o.only = Some(value("--only")?),
            other => return Err(format!("unknown option {other}")),
        }
    }
    if o.quick {
        o.size = o.size.min(0.02);
        o.runs = o.runs.min(1);
    }
    Ok(o)
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
    out_bytes: u64,
    peak_rss_kib: u64,
}

struct Dataset {
    name: String,
    dir: PathBuf,
    files: u64,
    bytes: u64,
}

pub fn run(args: &[String]) -> Result {
    let o = parse(args)?;
    let root = workspace_root();
    let bench_dir = root.join("target/bench");
    fs::create_dir_all(&bench_dir).map_err(|e| e.to_string())?;
    crate::run(
        Command::new(env!("CARGO"))
            .args(["build", "--release", "--quiet", "-p", "archiver-cli"])
            .current_dir(&root),
    )?;
    let bin = root.join("target/release/archiver");

    let mut datasets = generate(&bench_dir.join("data"), o.size, o.only.as_deref())?;
    for d in &o.dirs {
        let (files, bytes) = count(d);
        let name = d
            .file_name()
            .map_or("dir".into(), |n| n.to_string_lossy().into_owned());
        datasets.push(Dataset {
            name,
            dir: d.clone(),
            files,
            bytes,
        });
    }
    let tar = if have("gtar") { "gtar" } else { "tar" };
    let j = o.jobs;
    let a = bin.display().to_string();
    let mut results = Vec::new();
    for ds in &datasets {
        if o.only.as_deref().is_some_and(|only| only != ds.name) {
            continue;
        }
        let dir = ds.dir.display().to_string();
        eprintln!(
            "== {} ({} files, {:.1} MiB)",
            ds.name,
            ds.files,
            ds.bytes as f64 / 1048576.0
        );
        let mut work: Vec<(&str, String, String)> = vec![
            (
                "tar",
                "archiver -j1".into(),
                format!("'{a}' pack -q -j 1 -f tar -C '{dir}' . -o -"),
            ),
            (
                "tar",
                format!("archiver -j{j}"),
                format!("'{a}' pack -q -j {j} -f tar -C '{dir}' . -o -"),
            ),
            (
                "tar",
                format!("{tar} cf"),
                format!("{tar} -C '{dir}' -cf - ."),
            ),
            (
                "tar.gz",
                "archiver -j1".into(),
                format!("'{a}' pack -q -j 1 -f tar.gz -C '{dir}' . -o -"),
            ),
            (
                "tar.gz",
                format!("archiver -j{j}"),
                format!("'{a}' pack -q -j {j} -f tar.gz -C '{dir}' . -o -"),
            ),
            (
                "tar.zst",
                "archiver -j1".into(),
                format!("'{a}' pack -q -j 1 -f tar.zst -C '{dir}' . -o -"),
            ),
            (
                "tar.zst",
                format!("archiver -j{j}"),
                format!("'{a}' pack -q -j {j} -f tar.zst -C '{dir}' . -o -"),
            ),
            (
                "tar.zst",
                format!("{tar} | zstd -T{j} -3"),
                format!("{tar} -C '{dir}' -cf - . | zstd -q -T{j} -3 -c"),
            ),
        ];
        work.push((
            "zip",
            "archiver -j1".into(),
            format!("'{a}' pack -q -j 1 -f zip -C '{dir}' . -o -"),
        ));
        work.push((
            "zip",
            format!("archiver -j{j}"),
            format!("'{a}' pack -q -j {j} -f zip -C '{dir}' . -o -"),
        ));
        if have("zip") {
            work.push((
                "zip",
                "zip -r -6".into(),
                format!("cd '{dir}' && zip -r -q -6 - ."),
            ));
        }
        if have("pigz") {
            work.push((
                "tar.gz",
                format!("{tar} | pigz -p{j} -6"),
                format!("{tar} -C '{dir}' -cf - . | pigz -p {j} -6 -c"),
            ));
        } else if have("gzip") {
            work.push((
                "tar.gz",
                format!("{tar} | gzip -6"),
                format!("{tar} -C '{dir}' -cf - . | gzip -6 -c"),
            ));
        }
        // Unpack: our default makes the data durable, so the peers are timed with `sync -f` after them.
        let out = bench_dir.join("out");
        let o_ = out.display().to_string();
        let arch = bench_dir
            .join(format!("{}.tar", ds.name))
            .display()
            .to_string();
        let archz = bench_dir
            .join(format!("{}.zip", ds.name))
            .display()
            .to_string();
        crate::run(Command::new("sh").arg("-c").arg(format!(
            "'{a}' pack -q -C '{dir}' . -o '{arch}' && '{a}' pack -q -C '{dir}' . -o '{archz}'"
        )))?;
        let prep = format!("rm -rf '{o_}' && mkdir -p '{o_}' ;; ");
        work.push((
            "unpack tar",
            format!("archiver -j{j}"),
            format!("{prep}'{a}' unpack -q -j {j} '{arch}' -C '{o_}'"),
        ));
        work.push((
            "unpack tar",
            format!("{tar} xf + sync"),
            format!("{prep}{tar} -xf '{arch}' -C '{o_}' && sync"),
        ));
        work.push((
            "unpack zip",
            format!("archiver -j{j}"),
            format!("{prep}'{a}' unpack -q -j {j} '{archz}' -C '{o_}'"),
        ));
        if have("unzip") {
            work.push((
                "unpack zip",
                "unzip -q + sync".into(),
                format!("{prep}unzip -q '{archz}' -d '{o_}' && sync"),
            ));
        }
        for (w, tool, cmd) in work {
            let m = measure(&ds.name, w, &tool, &cmd, o.runs)?;
            eprintln!(
                "  {:<8} {:<24} {:>8.3} s  {:>10} bytes  {:>7} KiB RSS",
                w, tool, m.median, m.out_bytes, m.peak_rss_kib
            );
            results.push(m);
        }
    }
    let table = render(&results, &datasets);
    println!("{table}");
    let json = serde_json::json!({
        "machine": machine(),
        "jobs": j,
        "runs": o.runs,
        "size": o.size,
        "results": results.iter().map(|m| serde_json::json!({
            "dataset": m.dataset, "work": m.work, "tool": m.tool, "median_s": m.median,
            "min_s": m.min, "max_s": m.max, "out_bytes": m.out_bytes, "peak_rss_kib": m.peak_rss_kib,
        })).collect::<Vec<_>>(),
    });
    let out = bench_dir.join("results.json");
    fs::write(&out, serde_json::to_vec_pretty(&json).unwrap()).map_err(|e| e.to_string())?;
    fs::write(bench_dir.join("results.md"), &table).map_err(|e| e.to_string())?;
    eprintln!("wrote {} and results.md", out.display());
    Ok(())
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!(
        "{} {} {} cores",
        std::env::consts::OS,
        std::env::consts::ARCH,
        cores
    )
}

/// Runs `cmd` through `sh -c`, draining its stdout here: one warm-up, then `runs` timed runs.
fn measure(dataset: &str, work: &str, tool: &str, cmd: &str, runs: usize) -> Result<Measure> {
    let mut times = Vec::with_capacity(runs);
    let mut out_bytes = 0;
    let mut rss = 0;
    // `PREPARE ;; CMD`: PREPARE runs untimed before every run (clearing an unpack destination).
    let (prepare, cmd) = match cmd.split_once(" ;; ") {
        Some((p, c)) => (Some(p), c),
        None => (None, cmd),
    };
    for i in 0..=runs {
        if let Some(p) = prepare {
            run_piped(p)?;
        }
        let t = Instant::now();
        let (bytes, peak) = run_piped(cmd)?;
        let secs = t.elapsed().as_secs_f64();
        if i > 0 {
            times.push(secs);
        }
        out_bytes = bytes;
        rss = rss.max(peak);
    }
    times.sort_by(f64::total_cmp);
    Ok(Measure {
        dataset: dataset.into(),
        work: work.into(),
        tool: tool.into(),
        median: times[times.len() / 2],
        min: times[0],
        max: times[times.len() - 1],
        out_bytes,
        peak_rss_kib: rss,
    })
}

/// Returns (bytes on stdout, peak RSS in KiB of the largest process in the pipeline).
fn run_piped(cmd: &str) -> Result<(u64, u64)> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("set -e; {cmd}"))
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut out = child.stdout.take().unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        match out.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => total += n as u64,
            Err(e) => return Err(e.to_string()),
        }
    }
    let (ok, rss) = wait_rss(&mut child)?;
    if !ok {
        return Err(format!("`{cmd}` failed"));
    }
    Ok((total, rss))
}

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
    // Linux reports KiB, macOS bytes. The shell's figure covers the children it waited for.
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

fn render(results: &[Measure], datasets: &[Dataset]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "machine: {}\n", machine());
    let _ = writeln!(
        s,
        "| dataset | format | tool | median s | min–max s | MB/s | files/s | time vs peer | size | size vs peer | peak RSS MiB |"
    );
    let _ = writeln!(s, "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for m in results {
        let ds = datasets.iter().find(|d| d.name == m.dataset).unwrap();
        let peer = results.iter().find(|p| {
            p.dataset == m.dataset && p.work == m.work && !p.tool.starts_with("archiver")
        });
        let (tr, sr) = match peer {
            Some(p) if m.tool.starts_with("archiver") && p.out_bytes > 0 => (
                format!("{:.2}×", m.median / p.median),
                format!(
                    "{:+.1}%",
                    (m.out_bytes as f64 / p.out_bytes as f64 - 1.0) * 100.0
                ),
            ),
            Some(p) if m.tool.starts_with("archiver") => {
                (format!("{:.2}×", m.median / p.median), String::new())
            }
            Some(p) if false => (
                format!("{:.2}×", m.median / p.median),
                format!(
                    "{:+.1}%",
                    (m.out_bytes as f64 / p.out_bytes as f64 - 1.0) * 100.0
                ),
            ),
            _ => ("".into(), "".into()),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.3} | {:.3}–{:.3} | {:.0} | {:.0} | {} | {} | {} | {:.1} |",
            m.dataset,
            m.work,
            m.tool,
            m.median,
            m.min,
            m.max,
            ds.bytes as f64 / m.median / 1e6,
            ds.files as f64 / m.median,
            tr,
            m.out_bytes,
            sr,
            m.peak_rss_kib as f64 / 1024.0
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

fn generate(base: &Path, size: f64, only: Option<&str>) -> Result<Vec<Dataset>> {
    let scaled = |n: f64| ((n * size).round() as usize).max(1);
    let specs: [(&str, usize); 4] = [
        ("tiny", 3),
        ("small", scaled(100_000.0)),
        ("large", scaled(128.0 * 1048576.0)),
        ("mixed", scaled(2_000.0)),
    ];
    let mut out = Vec::new();
    for (name, n) in specs {
        if only.is_some_and(|o| o != name) {
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
            fs::write(&stamp, b"").map_err(|e| e.to_string())?;
        }
        let (files, bytes) = count(&dir);
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
pub fn rss(args: &[String]) -> Result {
    let (mut gib, mut files, mut rate) = (4u64, 200_000usize, 20u64);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let v = it.next().ok_or(format!("{a} needs a value"))?;
        match a.as_str() {
            "--gib" => gib = v.parse().map_err(|e| format!("--gib: {e}"))?,
            "--files" => files = v.parse().map_err(|e| format!("--files: {e}"))?,
            "--rate-mb" => rate = v.parse().map_err(|e| format!("--rate-mb: {e}"))?,
            other => return Err(format!("unknown option {other}")),
        }
    }
    let root = workspace_root();
    crate::run(
        Command::new(env!("CARGO"))
            .args(["build", "--release", "--quiet", "-p", "archiver-cli"])
            .current_dir(&root),
    )?;
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
    let bin = root.join("target/release/archiver");
    let mut child = Command::new(&bin)
        .args(["pack", "-q", "-f", "tar", "-C"])
        .arg(&dir)
        .args([".", "-o", "-"])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
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
