//! Empty and truncated inputs are errors (exit 2) for `list`, `verify` and `unpack`: a cut
//! `pack | ssh … unpack` never passes as complete. A tar stream must end with its end-of-archive
//! marker; a single zero block is accepted, as GNU tar accepts it.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::util::*;

/// Runs `archiver ARGS` with `stdin` as its standard input; returns (exit code, stderr).
fn run(args: &[&str], archive: Option<&Path>, stdin: Option<&[u8]>) -> (Option<i32>, String) {
    let mut c = archiver();
    c.args(args);
    if let Some(a) = archive {
        c.arg(a);
    }
    c.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    if let Some(bytes) = stdin {
        let mut w = child.stdin.take().unwrap();
        let _ = w.write_all(bytes); // the reader may stop early
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `list`, `verify` and `unpack` of `archive` all fail with exit 2 and a message containing
/// `expect`; unpack leaves no file in its destination.
#[track_caller]
fn all_fail(archive: &Path, expect: &str, what: &str) {
    let dest = tempfile::tempdir().unwrap();
    let d = dest.path().join("out");
    for args in [
        vec!["list"],
        vec!["verify"],
        vec!["unpack", "-q", "-C", d.to_str().unwrap()],
    ] {
        let (code, err) = run(&args, Some(archive), None);
        assert_eq!(code, Some(2), "{what}: {args:?} exit {code:?}: {err}");
        assert!(
            err.contains(expect) && err.starts_with("archiver: "),
            "{what}: {args:?}: {err}"
        );
    }
    assert!(
        !d.exists() || non_dirs_under(&d).is_empty(),
        "{what}: unpack left files behind"
    );
}

#[test]
fn empty_input_is_an_error() {
    let work = tempfile::tempdir().unwrap();
    let empty = work.path().join("empty.tar");
    std::fs::write(&empty, b"").unwrap();
    all_fail(&empty, "empty input", "0-byte file");
    // Empty stdin: `archiver pack nosuch | archiver unpack` must fail at the unpacking end too.
    let d = work.path().join("out");
    for args in [vec!["list", "-"], vec!["unpack", "-C", d.to_str().unwrap()]] {
        let (code, err) = run(&args, None, Some(b""));
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(err.contains("empty input"), "{args:?}: {err}");
    }
    // A compressed stream holding nothing.
    for (tool, ext) in [("gzip", "gz"), ("zstd", "zst")] {
        let p = work.path().join(format!("empty.tar.{ext}"));
        let out = ok(Command::new(require(tool)).arg("-c").arg(&empty));
        std::fs::write(&p, out.stdout).unwrap();
        all_fail(&p, "empty", ext);
    }
}

/// Offsets where each entry's header starts in a plain tar, and where the end blocks start.
fn boundaries(tar: &[u8]) -> (Vec<usize>, usize) {
    let mut at = 0;
    let mut starts = Vec::new();
    while tar[at..at + 512].iter().any(|&b| b != 0) {
        starts.push(at);
        let size = std::str::from_utf8(&tar[at + 124..at + 135]).unwrap();
        let size = usize::from_str_radix(size.trim_matches(|c| c == '\0' || c == ' '), 8).unwrap();
        at += 512 + size.div_ceil(512) * 512;
    }
    (starts, at)
}

fn compress(tool: &str, data: &[u8]) -> Vec<u8> {
    let mut child = Command::new(require(tool))
        .arg("-c")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut w = child.stdin.take().unwrap();
    let input = data.to_vec();
    let feeder = std::thread::spawn(move || w.write_all(&input).unwrap());
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    assert!(out.status.success());
    out.stdout
}

/// A tar cut anywhere before its end-of-archive marker — inside a header, inside data, exactly at
/// an entry boundary, right after the last entry — is a truncated archive for list, verify and
/// unpack, plain or inside a complete gzip or zstd stream.
#[test]
fn truncated_tar_streams_are_errors() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    file(&src, "a.txt", b"first file", 0o644);
    file(&src, "b/c.bin", &vec![7u8; 3000], 0o644);
    file(&src, "d.txt", b"last", 0o644);
    let full = work.path().join("full.tar");
    ok(archiver()
        .args(["pack", "-q", "--no-manifest", "-o"])
        .arg(&full)
        .arg(".")
        .current_dir(&src));
    let tar = std::fs::read(&full).unwrap();
    let (starts, end) = boundaries(&tar);
    assert!(starts.len() >= 4, "{starts:?}");
    let mut cuts = vec![end]; // after the last entry's data, no end blocks
    for &s in &starts[1..] {
        cuts.push(s); // exactly at an entry boundary
    }
    cuts.push(starts[1] + 100); // inside a header
    cuts.push(starts[2] + 512 + 1000); // inside c.bin's data
    cuts.push(end - 1); // inside the last entry's padding
    for cut in cuts {
        let bytes = &tar[..cut];
        for (ext, data) in [
            ("tar", bytes.to_vec()),
            ("tar.gz", compress("gzip", bytes)),
            ("tar.zst", compress("zstd", bytes)),
        ] {
            let p = work.path().join(format!("cut-{cut}.{ext}"));
            std::fs::write(&p, &data).unwrap();
            all_fail(&p, "truncated", &format!("{ext} cut at {cut}"));
        }
        // Through stdin too.
        let (code, err) = run(&["list", "-"], None, Some(bytes));
        assert_eq!(code, Some(2), "stdin cut at {cut}: {err}");
    }
    // The compressed stream itself cut in the middle.
    let gz = compress("gzip", &tar);
    let p = work.path().join("cut-stream.tar.gz");
    std::fs::write(&p, &gz[..gz.len() / 2]).unwrap();
    for args in [vec!["list"], vec!["verify"]] {
        let (code, err) = run(&args, Some(&p), None);
        assert_eq!(code, Some(2), "{args:?}: {err}");
    }
    // One zero block then the end: accepted, as GNU tar accepts it.
    let p = work.path().join("one-zero-block.tar");
    std::fs::write(&p, &tar[..end + 512]).unwrap();
    for args in [vec!["list"], vec!["verify"]] {
        let (code, err) = run(&args, Some(&p), None);
        assert_eq!(code, Some(0), "{args:?}: {err}");
    }
    // And the complete archive, of course.
    let (code, err) = run(&["verify"], Some(&full), None);
    assert_eq!(code, Some(0), "{err}");
}
