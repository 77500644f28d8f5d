//! `archiver group`: one archive per stem, stems isolated from each other's failures.

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
    assert!(summary.contains("3 stems: 2 packed, 1 failed"), "{summary}");
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
