//! Stress tests of pack's shutdown: whatever ends a run (a consumer that closes its end, a full
//! disk, SIGINT/SIGTERM/SIGHUP at a random moment), every format stops promptly, exits with the
//! right code and leaves no temporary file. Races need repetition: each test runs
//! `ARCHIVER_STRESS_RUNS` times per format (default 2 in the normal suite; `.ci/run` runs them with
//! a larger bounded count). Every run has a deadline; missing it is a failure, not a stuck job.
//! The random moments come from a seed printed on failure (`ARCHIVER_STRESS_SEED` replays it).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::util::*;

const FORMATS: [&str; 4] = ["tar", "tar.gz", "tar.zst", "zip"];
/// A run that has not ended this long after its cause has hung.
const DEADLINE: Duration = Duration::from_secs(15);

fn runs() -> usize {
    std::env::var("ARCHIVER_STRESS_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2)
}

fn seed() -> u64 {
    std::env::var("ARCHIVER_STRESS_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        })
}

/// Several incompressible files of tens of MB (the streamed path, where workers block on
/// per-file channels) and some small ones, made once for the whole test binary.
fn big_tree() -> &'static Path {
    static TREE: OnceLock<tempfile::TempDir> = OnceLock::new();
    TREE.get_or_init(|| {
        let t = tempfile::tempdir().unwrap();
        for i in 0..4 {
            file(
                t.path(),
                &format!("big{i}.bin"),
                &noise(24 << 20, i + 1),
                0o644,
            );
        }
        for i in 0..200 {
            file(
                t.path(),
                &format!("small/{i:03}.txt"),
                b"small file\n",
                0o644,
            );
        }
        t
    })
    .path()
}

/// Waits for `child` until the deadline; kills it and fails the test if it is still running.
fn wait_or_fail(mut child: Child, what: &str) -> std::process::Output {
    let started = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running {DEADLINE:?} after its end was caused: a hang");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn temporaries(dir: &Path) -> Vec<PathBuf> {
    non_dirs_under(dir)
        .into_iter()
        .filter(|p| p.file_name().unwrap().to_string_lossy().ends_with(".tmp"))
        .collect()
}

/// A consumer that reads a little and closes: exit 2, one line naming stdout and the broken pipe.
#[test]
fn pack_into_a_consumer_that_closes_never_hangs() {
    let tree = big_tree();
    let seed = seed();
    let mut rng = Lcg(seed);
    for run in 0..runs() {
        for format in FORMATS {
            let keep = 1 + rng.below(3 << 20);
            let what = format!("{format} run {run} head -c {keep} (ARCHIVER_STRESS_SEED={seed})");
            let child = Command::new("bash")
                .arg("-c")
                .arg(format!(
                    "'{}' pack -f {format} -C '{}' . | head -c {keep} >/dev/null; \
                     echo ${{PIPESTATUS[0]}}",
                    env!("CARGO_BIN_EXE_archiver"),
                    tree.display()
                ))
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let out = wait_or_fail(child, &what);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                String::from_utf8_lossy(&out.stdout).trim(),
                "2",
                "{what}: {err}"
            );
            assert_eq!(err.lines().count(), 1, "{what}: {err}");
            assert!(
                err.starts_with("archiver: stdout: writing the archive: ")
                    && err.contains("Broken pipe"),
                "{what}: {err}"
            );
        }
    }
}

/// SIGINT, SIGTERM and SIGHUP at a random moment of a pack to a file: exit 130 within the
/// deadline (0 if the run finished first), and never a temporary file left behind.
#[test]
fn signals_at_random_moments_stop_pack_cleanly() {
    let tree = big_tree();
    let seed = seed();
    let mut rng = Lcg(seed);
    let work = tempfile::tempdir().unwrap();
    for run in 0..runs() {
        for format in FORMATS {
            for (signal, name) in [
                (libc::SIGINT, "INT"),
                (libc::SIGTERM, "TERM"),
                (libc::SIGHUP, "HUP"),
            ] {
                let target = work.path().join(format!("a.{format}"));
                let delay = Duration::from_millis(rng.below(400));
                let what = format!(
                    "{format} run {run} SIG{name} after {delay:?} (ARCHIVER_STRESS_SEED={seed})"
                );
                let child = archiver()
                    .args(["pack", "-l", "9", "-f", format, "-o"])
                    .arg(&target)
                    .arg("-C")
                    .arg(tree)
                    .arg(".")
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap();
                std::thread::sleep(delay);
                // SAFETY: a signal to our own child.
                unsafe {
                    libc::kill(child.id() as i32, signal);
                }
                let out = wait_or_fail(child, &what);
                let err = String::from_utf8_lossy(&out.stderr);
                match out.status.code() {
                    Some(130) => {
                        assert!(!target.exists(), "{what}: archive left after a signal");
                        assert!(err.contains("interrupted"), "{what}: {err}");
                    }
                    Some(0) => assert!(target.exists(), "{what}: finished without an archive"),
                    // Signalled before main() installed its handler: the default action ended the
                    // process before it created anything.
                    None if delay < Duration::from_millis(50) => {
                        assert!(!target.exists(), "{what}: archive left")
                    }
                    other => panic!("{what}: exit {other:?}: {err}"),
                }
                let temps = temporaries(work.path());
                assert!(temps.is_empty(), "{what}: temporary files left: {temps:?}");
                let _ = std::fs::remove_file(&target);
            }
        }
    }
}

/// A small full tmpfs: every format fails with exit 2, one line naming the output file and the
/// full disk, and nothing left on the filesystem. Needs root (mount).
#[test]
fn a_full_disk_stops_pack_cleanly_in_every_format() {
    let work = tempfile::tempdir().unwrap();
    let small = work.path().join("small");
    std::fs::create_dir(&small).unwrap();
    let Some(_mounted) = mount_tmpfs(&small, "8m") else {
        return;
    };
    let tree = big_tree();
    for run in 0..runs() {
        for format in FORMATS {
            let target = small.join(format!("a.{format}"));
            let what = format!("{format} run {run}");
            let child = archiver()
                .args(["pack", "-o"])
                .arg(&target)
                .arg("-C")
                .arg(tree)
                .arg(".")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let out = wait_or_fail(child, &what);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{what}: {err}");
            assert_eq!(err.lines().count(), 1, "{what}: {err}");
            assert!(
                err.contains(&target.display().to_string()) && err.contains("No space left"),
                "{what}: {err}"
            );
            assert_eq!(
                std::fs::read_dir(&small).unwrap().count(),
                0,
                "{what}: partial file left"
            );
        }
    }
}
