//! The same tree gives byte-identical archives for any -j and any run.

use std::path::Path;

use crate::util::*;

fn pack_bytes(src: &Path, format: &str, jobs: &str, extra: &[&str]) -> Vec<u8> {
    ok(archiver()
        .args(["pack", "-q", "-f", format, "-j", jobs])
        .args(extra)
        .arg("-C")
        .arg(src)
        .arg(".")
        .arg("-o")
        .arg("-"))
    .stdout
}

#[test]
fn byte_identical_for_any_jobs_and_runs() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    gnarly_tree(&src, 3000, 42);
    for format in ["tar", "tar.gz", "tar.zst", "zip"] {
        let one = pack_bytes(&src, format, "1", &[]);
        assert!(one.len() > 100_000, "{format}: suspiciously small archive");
        for jobs in ["2", "8", "8"] {
            let other = pack_bytes(&src, format, jobs, &[]);
            assert!(
                one == other,
                "{format}: -j 1 and -j {jobs} differ ({} vs {} bytes)",
                one.len(),
                other.len()
            );
        }
    }
}

/// --reproducible: mtimes later than SOURCE_DATE_EPOCH become it (clamped), owners 0 without
/// names, so touching every file does not change a byte; a file older than SOURCE_DATE_EPOCH
/// keeps its own mtime (clamped, not set).
#[test]
fn reproducible_ignores_mtimes_and_owners() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    gnarly_tree(&src, 100, 9);
    file(&src, "old.txt", b"from 2020\n", 0o644);
    let old = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_600_000_000);
    let set_old = || {
        let f = std::fs::File::options()
            .write(true)
            .open(src.join("old.txt"))
            .unwrap();
        f.set_modified(old).unwrap();
    };
    set_old();
    let run = || {
        ok(archiver()
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .args(["pack", "--reproducible", "-f", "tar", "-o", "-"])
            .arg("-C")
            .arg(&src)
            .arg("."))
        .stdout
    };
    let before = run();
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
    for e in non_dirs_under(&src)
        .into_iter()
        .filter(|p| p.symlink_metadata().unwrap().is_file())
    {
        let f = std::fs::File::options().write(true).open(&e).unwrap();
        f.set_modified(later).unwrap();
    }
    set_old();
    assert!(
        before == run(),
        "touching files changed a reproducible archive"
    );
    let listing = String::from_utf8(
        ok(archiver()
            .args(["list", "--json", "-"])
            .stdin_bytes(&before))
        .stdout,
    )
    .unwrap();
    let entries: Vec<serde_json::Value> = serde_json::from_str(&listing).unwrap();
    assert!(entries.len() > 100);
    for e in &entries {
        let expected = if e["path"] == "old.txt" {
            1_600_000_000
        } else {
            1_700_000_000
        };
        assert_eq!(e["mtime"], expected, "{e}");
        assert_eq!(e["uid"], 0);
        assert_eq!(e["user"], serde_json::Value::Null);
    }
}
