//! Developer chores: `cargo xtask test` (install the test peers if missing, run the suite) and
//! `cargo xtask bench` (time archiver against GNU tar/bsdtar, pigz, zstd, Info-ZIP on generated data).

mod bench;

use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(&args[1..]),
        Some("deps") => deps(),
        Some("bench") => bench::run(&args[1..]),
        Some("man") => man(),
        Some("fuzz") => fuzz(&args[1..]),
        Some("rss") => bench::rss(&args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask <command>\n\n\
                 commands:\n  \
                 test [ARGS]   install missing test peers, then cargo test --workspace [ARGS]\n  \
                 man           write the man page to target/man/archiver.1\n  \
                 fuzz [--seconds N] [TARGET]  run the cargo-fuzz targets (nightly), seeded from ../shared/corpus\n  \
                 rss [--gib N] [--files N] [--rate-mb N]  peak RSS of pack into a throttled consumer\n  \
                 deps          install the peers the tests drive (GNU tar, bsdtar, zstd, pigz, zip, unzip, 7z, b3sum)\n  \
                 bench [--quick] [--size F] [--runs N] [--jobs N] [--dir PATH]...\n                \
                 time archiver against the peers on PATH; results in target/bench/"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

type Result<T = ()> = std::result::Result<T, String>;

/// Runs a command, failing with its name if it does not succeed.
pub fn run(cmd: &mut Command) -> Result {
    let status = cmd.status().map_err(|e| format!("{cmd:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?} failed: {status}"))
    }
}

pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool} >/dev/null 2>&1"))
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs every fuzz target (or one) for `--seconds` each, seeding the readers' corpora with the
/// shared corpus of real archives. Crashes land in `fuzz/artifacts/<target>/`.
fn fuzz(args: &[String]) -> Result {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let mut seconds = 60u64;
    let mut only = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seconds" => {
                seconds = it
                    .next()
                    .and_then(|s| s.parse().ok())
                    .ok_or("--seconds needs a number")?
            }
            t => only = Some(t.to_string()),
        }
    }
    if !have("cargo-fuzz") {
        run(Command::new("cargo").args(["install", "--locked", "cargo-fuzz"]))?;
    }
    let shared = root.join("../shared/corpus/libarchive/archives");
    for target in ["read", "unpack", "roundtrip"] {
        if only.as_deref().is_some_and(|o| o != target) {
            continue;
        }
        let corpus = root.join("fuzz/corpus").join(target);
        std::fs::create_dir_all(&corpus).map_err(|e| e.to_string())?;
        if target != "roundtrip" {
            if let Ok(rd) = std::fs::read_dir(&shared) {
                for e in rd.flatten() {
                    let _ = std::fs::copy(e.path(), corpus.join(e.file_name()));
                }
            }
        }
        eprintln!("== fuzzing {target} for {seconds} s");
        run(Command::new("cargo")
            .args(["+nightly", "fuzz", "run", target])
            .arg(&corpus)
            .args([
                "--",
                &format!("-max_total_time={seconds}"),
                "-rss_limit_mb=4096",
                "-timeout=30",
                "-max_len=262144",
            ])
            .current_dir(root.join("fuzz")))?;
    }
    Ok(())
}

/// Renders the man page from the clap definition (through the binary, so it is always current).
fn man() -> Result {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    run(Command::new(env!("CARGO"))
        .args(["build", "--quiet", "-p", "archiver-cli"])
        .current_dir(&root))?;
    let out = Command::new(root.join("target/debug/archiver"))
        .arg("man")
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err("archiver man failed".into());
    }
    let dir = root.join("target/man");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("archiver.1"), out.stdout).map_err(|e| e.to_string())?;
    eprintln!("wrote target/man/archiver.1 (view: man target/man/archiver.1)");
    Ok(())
}

/// Peers the tests run, with the Debian package that provides each.
const PEERS: [(&str, &str); 9] = [
    ("tar", "tar"),
    ("bsdtar", "libarchive-tools"),
    ("zstd", "zstd"),
    ("gzip", "gzip"),
    ("pigz", "pigz"),
    ("zip", "zip"),
    ("unzip", "unzip"),
    ("7z", "p7zip-full"),
    ("python3", "python3"),
];

fn deps() -> Result {
    let missing: Vec<&str> = PEERS
        .iter()
        .filter(|(t, _)| !have(t))
        .map(|(_, p)| *p)
        .collect();
    if !missing.is_empty() {
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0"));
        if have("apt-get") {
            let sudo = if root { vec![] } else { vec!["sudo"] };
            let mut update: Vec<&str> = sudo.clone();
            update.extend(["apt-get", "update", "-qq"]);
            run(Command::new(update[0]).args(&update[1..]))?;
            let mut install: Vec<&str> = sudo;
            install.extend(["apt-get", "install", "-y", "-qq", "--no-install-recommends"]);
            install.extend(&missing);
            run(Command::new(install[0])
                .args(&install[1..])
                .env("DEBIAN_FRONTEND", "noninteractive"))?;
        } else if have("brew") {
            // macOS: bsdtar is the system tar; GNU tar is gtar.
            run(Command::new("brew").args(["install", "gnu-tar", "zstd", "pigz", "p7zip"]))?;
        } else {
            return Err(format!(
                "install these packages first: {}",
                missing.join(" ")
            ));
        }
    }
    if !have("b3sum") {
        run(Command::new("cargo").args(["install", "--locked", "b3sum"]))?;
    }
    Ok(())
}

/// Installs missing peers, runs the suite, and ends with one summary line over every test binary
/// (cargo's own last line is often an empty doc-test run).
fn test(extra: &[String]) -> Result {
    use std::io::{BufRead, BufReader, Write};
    deps()?;
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args(["test", "--workspace"]).args(extra);
    // The shutdown stress tests repeat each race this many times (bounded: about half a minute).
    if std::env::var_os("ARCHIVER_STRESS_RUNS").is_none() {
        cmd.env("ARCHIVER_STRESS_RUNS", "10");
    }
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cargo test: {e}"))?;
    let (mut passed, mut failed, mut ignored) = (0u64, 0u64, 0u64);
    let stdout = child.stdout.take().expect("piped");
    let mut out = std::io::stdout().lock();
    for line in BufReader::new(stdout).lines() {
        let line = line.map_err(|e| e.to_string())?;
        let _ = writeln!(out, "{line}");
        if let Some(rest) = line.strip_prefix("test result: ") {
            for part in rest.split([';', '.']).map(str::trim) {
                let mut it = part.split_whitespace();
                if let (Some(n), Some(what)) = (it.next(), it.next()) {
                    let n: u64 = n.parse().unwrap_or(0);
                    match what {
                        "passed" => passed += n,
                        "failed" => failed += n,
                        "ignored" => ignored += n,
                        _ => {}
                    }
                }
            }
        }
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    let _ = writeln!(
        out,
        "tests: {passed} passed, {failed} failed, {ignored} skipped"
    );
    if status.success() {
        Ok(())
    } else {
        Err(format!("cargo test failed: {status}"))
    }
}
