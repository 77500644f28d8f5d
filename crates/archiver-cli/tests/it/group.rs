//! `archiver group`: one archive per stem, stems isolated from each other's failures.

use std::process::Command;

use crate::util::*;

#[test]
fn one_archive_per_stem_and_failures_are_isolated() {
    let work = tempfile::tempdir().unwrap();
    let runs = work.path().join("runs");
    for (name, body) in [
        ("m1.dat", "d1"),
        ("m1.out", "o1"),
        ("m2.dat", "d2"),
        ("m3.dat", "d3"),
        ("notes.txt", "n"),
    ] {
        file(&runs, name, body.as_bytes(), 0o644);
    }
    let out = work.path().join("out");
    let run = || {
        archiver()
            .arg("group")
            .arg(&runs)
            .arg("-o")
            .arg(&out)
            .args(["--ext", "dat,out"])
            .output()
            .unwrap()
    };
    let first = run();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let names = |stem: &str| {
        String::from_utf8(ok(archiver().arg("list").arg(out.join(format!("{stem}.zip")))).stdout)
            .unwrap()
    };
    assert_eq!(names("m1"), "m1.dat\nm1.out\n.archiver/MANIFEST.b3\n");
    assert_eq!(names("m3"), "m3.dat\n.archiver/MANIFEST.b3\n");
    assert!(!out.join("notes.zip").exists(), "--ext must filter");
    let m1 = std::fs::read(out.join("m1.zip")).unwrap();

    // m2 cannot be written (a directory is in the way): m1 and m3 are still packed; any failed
    // stem makes the exit status 2 (CLI.md), and the reason is printed whole.
    std::fs::remove_file(out.join("m2.zip")).unwrap();
    std::fs::create_dir(out.join("m2.zip")).unwrap();
    let second = run();
    assert_eq!(second.status.code(), Some(2));
    let summary = String::from_utf8_lossy(&second.stderr);
    assert!(
        summary.lines().any(|l| l.starts_with("m2 ")
            && l.contains("FAILED")
            && l.contains("m2.zip")
            && l.contains("directory")),
        "{summary}"
    );
    assert!(
        summary.contains("3 stems: 2 packed, 0 incomplete, 1 failed"),
        "{summary}"
    );
    assert_eq!(
        std::fs::read(out.join("m1.zip")).unwrap(),
        m1,
        "same stem, same bytes"
    );
}

/// OUTDIR = DIR: a second run must not group the archives the first one wrote.
#[test]
fn archives_in_the_output_directory_are_not_grouped_again() {
    let work = tempfile::tempdir().unwrap();
    let runs = work.path().join("runs");
    file(&runs, "m1.dat", b"d1", 0o644);
    file(&runs, "m1.out", b"o1", 0o644);
    for _ in 0..2 {
        ok(archiver().arg("group").arg(&runs).arg("-o").arg(&runs));
    }
    let names =
        String::from_utf8(ok(archiver().arg("list").arg(runs.join("m1.zip"))).stdout).unwrap();
    assert_eq!(names, "m1.dat\nm1.out\n.archiver/MANIFEST.b3\n");
}

/// A stem whose archive lacks a file (unreadable: skipped with a warning) is not "packed": its
/// line says INCOMPLETE and names the file with its directory, its count is of the files stored,
/// the summary counts it apart, exit 1. Archives get 0666 less the umask, as `pack -o`'s do, and
/// a stem's control characters are escaped. Run as an unprivileged user (root reads everything).
#[test]
fn a_stem_missing_a_file_is_incomplete_and_archives_get_the_usual_mode() {
    use std::os::unix::fs::PermissionsExt;
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root to switch to an unprivileged user");
        return;
    }
    let work = tempfile::Builder::new()
        .prefix("group")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let runs = work.path().join("runs");
    file(&runs, "m1.dat", b"d1", 0o644);
    file(&runs, "m1.out", b"o1", 0o000);
    file(&runs, "m2\x1b[1m.dat", b"d2", 0o644);
    let out = work.path().join("out");
    let run = Command::new("sh")
        .arg("-c")
        .arg(r#"umask 022 && exec setpriv --reuid=65534 --regid=65534 --clear-groups "$@""#)
        .arg("sh")
        .arg(env!("CARGO_BIN_EXE_archiver"))
        .arg("group")
        .arg(&runs)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    let summary = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{summary}");
    let m1 = summary
        .lines()
        .find(|l| l.starts_with("m1 "))
        .expect("m1's line");
    let cols: Vec<&str> = m1.split_whitespace().collect();
    assert_eq!(cols[1], "1", "files stored: {m1}");
    assert!(m1.contains("INCOMPLETE"), "{m1}");
    assert!(
        m1.contains(&format!("{}", runs.join("m1.out").display())),
        "{m1}"
    );
    assert!(
        summary.contains("2 stems: 1 packed, 1 incomplete, 0 failed"),
        "{summary}"
    );
    assert!(!summary.contains('\x1b'), "raw escape in {summary:?}");
    assert!(summary.contains("m2\\033[1m"), "{summary}");
    for name in ["m1.zip", "m2\x1b[1m.zip"] {
        let mode = std::fs::metadata(out.join(name))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o644, "{name}");
    }
}
