//! Developer chores: `cargo xtask test` (install the test peers if missing, run the suite) and
//! `cargo xtask bench` (time archiver against GNU tar/bsdtar, pigz, zstd, Info-ZIP on generated data).

mod bench;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use clap::{Parser, Subcommand};

/// Developer chores for archiver: tests with their peers, benchmarks, fuzzing, the man page.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Install missing test peers, then run `cargo test --workspace [ARGS]`
    ///
    /// Sets ARCHIVER_STRESS_RUNS=10 unless it is set already, and ends with one summary line over
    /// every test binary. Everything after `test` goes to `cargo test` as it is, `--` included:
    /// `cargo xtask test -p archiver -- --nocapture`.
    Test {
        /// Arguments for `cargo test`
        #[arg(allow_hyphen_values = true, value_name = "ARGS")]
        args: Vec<String>,
        /// Arguments after a leading `--` (clap takes that `--` as its own separator)
        #[arg(last = true, hide = true)]
        after: Vec<String>,
    },
    /// Install the peers the tests drive (GNU tar, bsdtar, zstd, pigz, zip, unzip, 7z, b3sum)
    Deps,
    /// Time archiver against the peers on PATH; results in target/bench/
    Bench(bench::BenchArgs),
    /// Write the man page to target/man/archiver.1
    Man,
    /// Run the cargo-fuzz targets (nightly), seeded from ../shared/corpus
    Fuzz {
        /// Seconds per target
        #[arg(long, value_name = "N", default_value_t = 60)]
        seconds: u64,
        /// Run only this target (default: all)
        #[arg(value_parser = ["read", "unpack", "roundtrip", "zstd", "gzip"])]
        target: Option<String>,
    },
    /// Peak RSS of pack into a throttled consumer (the memory bound under backpressure)
    Rss(bench::RssArgs),
    /// Run the library's unit tests and the golden archives on aarch64 Linux under qemu
    ///
    /// The golden test pins the bytes of every format, so this checks that the same tree gives
    /// the same archives on the Raspberry Pi's architecture as here (libdeflate, zstd, zlib-rs).
    /// Installs the cross compiler, qemu and the Rust target when missing (Debian, x86-64 hosts).
    Cross,
}

fn main() -> ExitCode {
    let result = match Cli::parse().cmd {
        Cmd::Test { mut args, after } => {
            if !after.is_empty() {
                args.push("--".into());
                args.extend(after);
            }
            test(&args)
        }
        Cmd::Deps => deps(),
        Cmd::Bench(args) => bench::run(args),
        Cmd::Man => man(),
        Cmd::Fuzz { seconds, target } => fuzz(seconds, target.as_deref()),
        Cmd::Rss(args) => bench::rss(args),
        Cmd::Cross => cross(),
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

/// The workspace root (xtask lives one level below it).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits inside the workspace")
        .to_path_buf()
}

/// Builds the `archiver` binary (release or debug) and returns its path as cargo reports it, so
/// CARGO_TARGET_DIR, `build.target-dir` and the like are honoured without guessing.
pub fn build_archiver(release: bool) -> Result<PathBuf> {
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args([
        "build",
        "--quiet",
        "-p",
        "archiver-cli",
        "--bin",
        "archiver",
    ])
    .arg("--message-format=json-render-diagnostics")
    .current_dir(workspace_root())
    .stdout(std::process::Stdio::piped());
    if release {
        cmd.arg("--release");
    }
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{cmd:?} failed: {}", out.status));
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "archiver")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .ok_or_else(|| format!("{cmd:?} reported no archiver executable"))
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
fn fuzz(seconds: u64, only: Option<&str>) -> Result {
    let root = workspace_root();
    if !have("cargo-fuzz") {
        run(Command::new("cargo").args(["install", "--locked", "cargo-fuzz"]))?;
    }
    let shared = root.join("../shared/corpus/libarchive/archives");
    for target in ["read", "unpack", "roundtrip", "zstd", "gzip"] {
        if only.is_some_and(|o| o != target) {
            continue;
        }
        let corpus = root.join("fuzz/corpus").join(target);
        std::fs::create_dir_all(&corpus).map_err(|e| e.to_string())?;
        if target == "read" || target == "unpack" {
            if let Ok(rd) = std::fs::read_dir(&shared) {
                for e in rd.flatten() {
                    let _ = std::fs::copy(e.path(), corpus.join(e.file_name()));
                }
            }
        }
        // Hand-made seeds kept in git (the corpus itself is not): e.g. multi-frame zstd streams.
        if let Ok(rd) = std::fs::read_dir(root.join("fuzz/seeds").join(target)) {
            for e in rd.flatten() {
                let _ = std::fs::copy(e.path(), corpus.join(e.file_name()));
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
    let root = workspace_root();
    let bin = build_archiver(false)?;
    let dir = root.join("target/man");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    // One page for the command and one per subcommand, as git and cargo ship them.
    for sub in [
        None,
        Some("pack"),
        Some("unpack"),
        Some("list"),
        Some("verify"),
        Some("group"),
        Some("completions"),
    ] {
        let out = Command::new(&bin)
            .arg("man")
            .args(sub)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!("archiver man {sub:?} failed"));
        }
        let name = sub.map_or("archiver.1".to_string(), |s| format!("archiver-{s}.1"));
        std::fs::write(dir.join(&name), out.stdout).map_err(|e| e.to_string())?;
        eprintln!("wrote target/man/{name}");
    }
    eprintln!("view: man target/man/archiver-pack.1");
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

/// The library's unit tests and golden archives, cross-compiled for aarch64 Linux and run under
/// qemu-user.
fn cross() -> Result {
    const TARGET: &str = "aarch64-unknown-linux-gnu";
    if !cfg!(all(target_os = "linux", target_arch = "x86_64")) {
        return Err("cross: runs on x86-64 Linux hosts only".into());
    }
    // The C library for the target (headers, crt files, and what qemu loads) is a package of its
    // own: the compiler can be there without it.
    let libc = std::path::Path::new("/usr/aarch64-linux-gnu/lib/libc.so.6").exists();
    // Each package, and whether what it provides is there.
    let packages = [
        ("gcc-aarch64-linux-gnu", have("aarch64-linux-gnu-gcc")),
        ("qemu-user", have("qemu-aarch64")),
        ("libc6-dev-arm64-cross", libc),
    ];
    let missing: Vec<&str> = packages
        .iter()
        .filter(|(_, there)| !there)
        .map(|(p, _)| *p)
        .collect();
    if !missing.is_empty() {
        if !have("apt-get") {
            return Err(format!("cross: install {} first", missing.join(" ")));
        }
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0"));
        let sudo: &[&str] = if root { &[] } else { &["sudo"] };
        let apt = |args: &[&str]| {
            let all: Vec<&str> = sudo.iter().chain(args).copied().collect();
            run(Command::new(all[0])
                .args(&all[1..])
                .env("DEBIAN_FRONTEND", "noninteractive"))
        };
        apt(&["apt-get", "update", "-qq"])?;
        let mut install = vec!["apt-get", "install", "-y", "-qq", "--no-install-recommends"];
        install.extend(&missing);
        apt(&install)?;
    }
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map_err(|e| format!("cross: rustup not found ({e}); install the Rust toolchain with rustup, or the {TARGET} standard library by other means"))?;
    if !String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|l| l.trim() == TARGET)
    {
        run(Command::new("rustup").args(["target", "add", TARGET]))
            .map_err(|e| format!("cross: could not add the {TARGET} target with rustup: {e}"))?;
    }
    let cargo = |args: &[&str]| {
        run(Command::new(env!("CARGO"))
            .args(args)
            .current_dir(workspace_root())
            .env("CC_aarch64_unknown_linux_gnu", "aarch64-linux-gnu-gcc")
            .env(
                "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER",
                "aarch64-linux-gnu-gcc",
            )
            .env(
                "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER",
                "qemu-aarch64 -L /usr/aarch64-linux-gnu",
            ))
    };
    cargo(&[
        "test", "-p", "archiver", "--target", TARGET, "--lib", "--test", "golden",
    ])?;
    // The binary too: its allocator (mimalloc, C) and its load-time constructor are its own.
    // Its unit tests (the allocator's options took), then a pack and an unpack under qemu.
    cargo(&[
        "test",
        "-p",
        "archiver-cli",
        "--target",
        TARGET,
        "--bin",
        "archiver",
    ])?;
    let bin = ["run", "-q", "-p", "archiver-cli", "--target", TARGET, "--"];
    let pack = [
        "pack",
        "-C",
        "crates/archiver",
        "src",
        "-o",
        "target/cross-smoke.tar.zst",
    ];
    cargo(&[&bin[..], &pack].concat())?;
    let _ = std::fs::remove_dir_all(workspace_root().join("target/cross-smoke"));
    let unpack = [
        "unpack",
        "-C",
        "target/cross-smoke",
        "target/cross-smoke.tar.zst",
    ];
    cargo(&[&bin[..], &unpack].concat())
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> std::result::Result<Cmd, clap::Error> {
        Cli::try_parse_from(std::iter::once("xtask").chain(args.iter().copied())).map(|c| c.cmd)
    }

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }

    #[test]
    fn test_passes_everything_through_to_cargo_test() {
        for args in [
            &["-p", "archiver", "--", "--nocapture"][..],
            &["--", "--nocapture"],
            &["stress", "--release"],
            &["--no-fail-fast", "-p", "archiver-cli", "--test", "it"],
            &["-j", "1", "--", "--test-threads", "1", "--exact", "x"],
            &[],
        ] {
            let want = args;
            let all: Vec<&str> = std::iter::once("test")
                .chain(args.iter().copied())
                .collect();
            match parse(&all) {
                Ok(Cmd::Test { mut args, after }) => {
                    if !after.is_empty() {
                        args.push("--".into());
                        args.extend(after);
                    }
                    assert_eq!(args, want, "{all:?}")
                }
                other => panic!("{all:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn bench_rejects_zero_runs() {
        assert!(parse(&["bench", "--runs", "0"]).is_err());
        assert!(parse(&["bench", "--runs", "1"]).is_ok());
        assert!(parse(&["bench", "-j", "0"]).is_err());
        assert!(parse(&["bench", "--size", "-1"]).is_err());
    }
}
