//! `archiver list` against archives written by other tools.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::*;

fn names(out: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(out)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// GNU tar's gnu, posix (pax) and ustar formats, plain and compressed: we list the same names as
/// GNU tar, long names included.
#[test]
fn lists_gnu_tar_archives_like_gnu_tar() {
    let gnu = require("tar");
    require("zstd");
    require("gzip");
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    gnarly_tree(&src, 120, 13);
    for format in ["gnu", "posix", "ustar"] {
        for (flag, ext) in [("", "tar"), ("-z", "tar.gz"), ("--zstd", "tar.zst")] {
            let archive = work.path().join(format!("{format}.{ext}"));
            let mut c = Command::new(&gnu);
            c.arg(format!("--format={format}"))
                .arg("-cf")
                .arg(&archive)
                .arg("-C")
                .arg(&src);
            if !flag.is_empty() {
                c.arg(flag);
            }
            c.arg(".");
            let made = c.output().unwrap();
            if format == "ustar" && !made.status.success() {
                // ustar cannot hold our long names; GNU tar says so. Nothing to compare then.
                continue;
            }
            assert!(
                made.status.success(),
                "{}",
                String::from_utf8_lossy(&made.stderr)
            );
            let theirs = names(&ok(Command::new(&gnu).arg("-tf").arg(&archive)).stdout);
            let ours = names(&clean(archiver().arg("list").arg(&archive)).stdout);
            assert_eq!(ours, theirs, "{format}.{ext}");
        }
    }
}

#[test]
fn long_and_json_listings() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    file(&src, "dir/f.txt", b"12345", 0o640);
    std::os::unix::fs::symlink("dir/f.txt", src.join("ln")).unwrap();
    let archive = work.path().join("a.tar.gz");
    ok(archiver()
        .env("SOURCE_DATE_EPOCH", "86400")
        .args(["pack", "--reproducible", "-o"])
        .arg(&archive)
        .arg("-C")
        .arg(&src)
        .arg("."));
    let long = String::from_utf8(
        clean(
            archiver()
                .env("TZ", "UTC")
                .args(["list", "--long"])
                .arg(&archive),
        )
        .stdout,
    )
    .unwrap();
    // Local time, TZ honoured, like `tar tv` (a POSIX TZ string needs no zone database).
    let tokyo = String::from_utf8(
        clean(
            archiver()
                .env("TZ", "UTC-9")
                .args(["list", "-l"])
                .arg(&archive),
        )
        .stdout,
    )
    .unwrap();
    assert!(tokyo.contains(" 1970-01-02 09:00 dir/f.txt"), "{tokyo}");
    let lines: Vec<&str> = long.lines().collect();
    assert_eq!(lines.len(), 4, "{long}");
    assert!(
        lines[0].starts_with("drwxr-xr-x 0/0") && lines[0].ends_with("1970-01-02 00:00 dir/"),
        "{long}"
    );
    assert!(
        lines[1].starts_with("-rw-r----- 0/0")
            && lines[1].contains(" 5 1970-01-02 00:00 dir/f.txt"),
        "{long}"
    );
    assert!(
        lines[2].starts_with("lrwxrwxrwx") && lines[2].ends_with("ln -> dir/f.txt"),
        "{long}"
    );
    let json = clean(archiver().args(["list", "--json"]).arg(&archive)).stdout;
    let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    let arr = v.as_array().unwrap();
    assert_eq!(arr.len(), 4);
    assert_eq!(arr[1]["path"], "dir/f.txt");
    assert_eq!(arr[1]["type"], "file");
    assert_eq!(arr[1]["size"], 5);
    assert_eq!(arr[1]["mode"], 0o640);
    assert_eq!(arr[2]["link_target"], "dir/f.txt");
    // CLI.md lists --long and --json as independent options: together they give the same JSON.
    let both = clean(archiver().args(["list", "--long", "--json"]).arg(&archive)).stdout;
    assert_eq!(both, json);
}

#[test]
fn garbage_and_corruption_are_clear_errors() {
    let work = tempfile::tempdir().unwrap();
    let junk = work.path().join("junk.tar");
    std::fs::write(&junk, b"this is not an archive at all").unwrap();
    let out = archiver().arg("list").arg(&junk).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(&format!("archiver: {}: not an archive", junk.display())),
        "{err}"
    );

    // A gzip stream whose CRC is wrong must not list as a success.
    let src = work.path().join("src");
    file(&src, "f", &vec![b'x'; 10_000], 0o644);
    let gz = work.path().join("a.tar.gz");
    ok(archiver()
        .arg("pack")
        .arg("-C")
        .arg(&src)
        .arg(".")
        .arg("-o")
        .arg(&gz));
    let mut bytes = std::fs::read(&gz).unwrap();
    let n = bytes.len();
    bytes[n - 8] ^= 0xff; // CRC-32 in the trailer
    std::fs::write(&gz, &bytes).unwrap();
    let out = archiver().arg("list").arg(&gz).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "a bad gzip CRC must fail");
}

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus/libarchive")
}

/// Every tar-family archive of the shared corpus lists without a panic or a hang (exit 0 or 2).
#[test]
fn corpus_tar_archives_never_crash() {
    corpus_check(false);
}

/// The corpus archives marked `ok` list successfully with the same names bsdtar printed.
#[test]
fn corpus_ok_archives_list_like_bsdtar() {
    corpus_check(true);
}

fn corpus_check(strict: bool) {
    let root = corpus();
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(root.join("manifest.json")).expect("shared corpus present"),
    )
    .unwrap();
    let mut checked = 0;
    for a in manifest["archives"].as_array().unwrap() {
        let file = a["file"].as_str().unwrap();
        if file.ends_with(".zip") || file.ends_with("zst") && !file.contains(".tar") {
            continue;
        }
        let path = root.join(file);
        let out = archiver().arg("list").arg(&path).output().unwrap();
        let code = out.status.code();
        assert!(
            matches!(code, Some(0) | Some(2)),
            "{file}: exit {code:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if strict && a["kind"] == "ok" && a["bsdtar_exit"] == 0 {
            if tar_lacks_end_marker(&path) {
                // bsdtar lists what is there; we refuse a stream cut before its end marker.
                let err = String::from_utf8_lossy(&out.stderr);
                assert!(
                    code == Some(2) && err.contains("truncated"),
                    "{file}: {err}"
                );
                checked += 1;
                continue;
            }
            assert_eq!(
                code,
                Some(0),
                "{file}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let expected: Vec<String> = a["bsdtar_tvf"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| bsdtar_name(l.as_str().unwrap()))
                .collect();
            let ours: Vec<String> = names(&out.stdout)
                .iter()
                .map(|n| n.trim_end_matches('/').to_string())
                .collect();
            assert_eq!(ours, expected, "{file}");
        }
        checked += 1;
    }
    assert!(checked > 30, "only {checked} corpus archives checked");
}

/// The name in a `bsdtar -tv` line: after the date (`Mon DD  YYYY` or `Mon DD HH:MM`), minus
/// any `-> target` / `link to target` suffix.
fn bsdtar_name(line: &str) -> String {
    let fields: Vec<&str> = line.split_whitespace().collect();
    // perms links owner group size month day year|time name...
    let mut rest = line;
    for f in &fields[..8] {
        let at = rest.find(f).unwrap() + f.len();
        rest = &rest[at..];
    }
    let name = rest.trim_start();
    let name = name.split(" -> ").next().unwrap();
    let name = name.split(" link to ").next().unwrap();
    name.trim_end_matches('/').to_string()
}

/// Control characters in names never reach the terminal raw: `list` and `list --long` escape
/// them exactly as GNU tar does (`\n`, `\r`, `\033`, `\177`, C1 controls, backslash doubled), so
/// a listing can neither rewrite the screen nor forge a line; `--json` keeps the exact name.
/// Warnings about such entries go to stderr, escaped, and nothing to stdout.
#[test]
fn control_characters_are_escaped_like_gnu_tar() {
    let gnu = require("tar");
    let python = require("python3");
    let work = tempfile::tempdir().unwrap();
    let archive = work.path().join("ctl.tar");
    let script = r#"
import io, sys, tarfile
names = ["a\nb", "esc\x1b[2Jx", "bel\x07", "cr\rx", "del\x7f", "c1\x85x", "back\\slash",
         "tab\tx", "fake\n-rw-r--r-- root/root 0 2024-01-01 00:00 forged"]
with tarfile.open(sys.argv[1], "w", format=tarfile.PAX_FORMAT) as t:
    for n in names:
        ti = tarfile.TarInfo(n)
        ti.size = 1
        t.addfile(ti, io.BytesIO(b"x"))
    ti = tarfile.TarInfo("ln")
    ti.type = tarfile.SYMTYPE
    ti.linkname = "tar\x1bget"
    t.addfile(ti)
"#;
    ok(Command::new(&python).arg("-c").arg(script).arg(&archive));
    let theirs = ok(Command::new(&gnu)
        .env("LC_ALL", "C")
        .arg("-tf")
        .arg(&archive))
    .stdout;
    let ours = clean(archiver().arg("list").arg(&archive)).stdout;
    assert_eq!(
        String::from_utf8_lossy(&ours),
        String::from_utf8_lossy(&theirs)
    );
    let long = clean(archiver().args(["list", "-l"]).arg(&archive)).stdout;
    let long = String::from_utf8(long).unwrap();
    assert_eq!(long.lines().count(), 10, "{long}");
    assert!(long.contains("ln -> tar\\033get"), "{long}");
    for text in [&ours[..], long.as_bytes()] {
        assert!(
            !text.iter().any(|&b| (b < 0x20 && b != b'\n') || b == 0x7f),
            "raw control character in a listing"
        );
    }
    let json = clean(archiver().args(["list", "--json"]).arg(&archive)).stdout;
    let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(v[0]["path"], "a\nb");
    assert_eq!(v[1]["path"], "esc\u{1b}[2Jx");
}

/// Warnings about entries (here an entry type we do not extract, named with an escape sequence)
/// go to stderr, escaped; stdout carries nothing.
#[test]
fn unpack_warnings_go_to_stderr_escaped() {
    let python = require("python3");
    let work = tempfile::tempdir().unwrap();
    let archive = work.path().join("odd.tar");
    let script = r#"
import io, sys, tarfile
with tarfile.open(sys.argv[1], "w", format=tarfile.GNU_FORMAT) as t:
    ti = tarfile.TarInfo("fi\x1b]0;pwned\x07fo")
    ti.type = tarfile.FIFOTYPE
    t.addfile(ti)
    ti = tarfile.TarInfo("ok")
    ti.size = 2
    t.addfile(ti, io.BytesIO(b"ok"))
"#;
    ok(Command::new(&python).arg("-c").arg(script).arg(&archive));
    let out = output_within(
        archiver()
            .args(["unpack", "--no-sync", "-C"])
            .arg(work.path().join("dest"))
            .arg(&archive),
        30,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("archiver: fi\\033]0;pwned\\afo: is a FIFO"),
        "{err}"
    );
    assert!(!err.bytes().any(|b| b == 0x1b || b == 0x07), "{err:?}");
}

/// `archiver list` of stdin decompresses our tar.gz and tar.zst on all cores when stdin is a
/// regular file, and as the bytes arrive when it is a pipe: both must give the listing the path
/// gives, and both must refuse a damaged archive.
#[test]
fn list_of_stdin_is_the_same_from_a_file_and_from_a_pipe() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    gnarly_tree(&src, 60, 29);
    file(&src, "big/noise.bin", &noise(3 << 20, 7), 0o644);
    file(
        &src,
        "big/text.txt",
        &"many pieces ".repeat(700_000).into_bytes(),
        0o644,
    );
    for ext in ["tar.gz", "tar.zst"] {
        let archive = work.path().join(format!("a.{ext}"));
        ok(pack_dir(&src).arg("-o").arg(&archive));
        let by_path = ok(archiver().arg("list").arg(&archive)).stdout;
        let from_file = ok(archiver()
            .arg("list")
            .stdin(std::fs::File::open(&archive).unwrap()))
        .stdout;
        let piped = format!("cat '{}' | '{}' list", archive.display(), bin().display());
        let from_pipe = output_within(Command::new("sh").arg("-c").arg(&piped), 60);
        assert!(from_pipe.status.success(), "{ext}: {from_pipe:?}");
        assert!(names(&by_path).len() > 60, "{ext}");
        assert_eq!(
            names(&from_file),
            names(&by_path),
            "{ext}: stdin from a file"
        );
        assert_eq!(
            names(&from_pipe.stdout),
            names(&by_path),
            "{ext}: stdin from a pipe"
        );

        let mut bytes = std::fs::read(&archive).unwrap();
        let at = bytes.len() * 2 / 3;
        bytes[at] ^= 0x55;
        let damaged = work.path().join(format!("damaged.{ext}"));
        std::fs::write(&damaged, &bytes).unwrap();
        let from_file = output_within(
            archiver()
                .arg("list")
                .stdin(std::fs::File::open(&damaged).unwrap()),
            60,
        );
        let piped = format!("cat '{}' | '{}' list", damaged.display(), bin().display());
        let from_pipe = output_within(Command::new("sh").arg("-c").arg(&piped), 60);
        assert!(
            !from_file.status.success(),
            "{ext}: damaged, stdin from a file"
        );
        assert_eq!(from_file.status.code(), from_pipe.status.code(), "{ext}");
    }
}
