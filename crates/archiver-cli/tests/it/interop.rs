//! Archives we write, read by the real peers: GNU tar, bsdtar, Python's tarfile, b3sum.

use std::path::Path;
use std::process::Command;

use crate::util::*;

const FORMATS: [(&str, &str); 3] = [("tar", "tar"), ("tar.gz", "tar.gz"), ("tar.zst", "tar.zst")];

fn pack(src: &Path, out: &Path, format: &str, jobs: &str) {
    clean(
        archiver()
            .args(["pack", "-j", jobs, "-f", format, "-o"])
            .arg(out)
            .arg("-C")
            .arg(src)
            .arg("."),
    );
}

/// Every format we write extracts with GNU tar and bsdtar without a word on stderr, gives back the
/// source tree exactly (content, modes, mtimes, symlinks, hard links, empty dirs), and the embedded
/// manifest passes `b3sum --check` in the extracted tree.
#[test]
fn gnu_tar_and_bsdtar_extract_what_we_write() {
    let gnu = require("tar");
    let bsd = require("bsdtar");
    let b3sum = require("b3sum");
    require("zstd");
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    gnarly_tree(&src, 400, 7);
    let expected = snapshot(&src);
    for (format, ext) in FORMATS {
        let archive = work.path().join(format!("out.{ext}"));
        pack(&src, &archive, format, "2");
        for (name, tool) in [("gnu", &gnu), ("bsd", &bsd)] {
            let dest = work.path().join(format!("x-{name}-{ext}"));
            std::fs::create_dir(&dest).unwrap();
            clean(
                Command::new(tool)
                    .arg("-xpf")
                    .arg(&archive)
                    .arg("-C")
                    .arg(&dest),
            );
            assert_same_tree(&expected, &snapshot_extracted(&dest));
            let check = clean(
                Command::new(&b3sum)
                    .args(["--check", ".archiver/MANIFEST.b3"])
                    .current_dir(&dest),
            );
            let report = String::from_utf8_lossy(&check.stdout);
            assert!(
                report.lines().count() > 400,
                "b3sum checked too few files:\n{report}"
            );
            assert!(report.lines().all(|l| l.ends_with(": OK")), "{report}");
        }
    }
}

/// Python's tarfile reads every entry (zstd through a pipe: Python 3.11 has no zstd) and extracts
/// the same tree.
#[test]
fn python_tarfile_reads_what_we_write() {
    let python = require("python3");
    require("zstd");
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    gnarly_tree(&src, 150, 11);
    let expected = snapshot(&src);
    let script = r#"
import sys, tarfile, warnings
warnings.simplefilter("error")
t = tarfile.open(fileobj=sys.stdin.buffer, mode="r|*")
t.extractall(sys.argv[1], filter="fully_trusted") if hasattr(tarfile, "data_filter") else t.extractall(sys.argv[1])
"#;
    for (format, ext) in FORMATS {
        let archive = work.path().join(format!("out.{ext}"));
        pack(&src, &archive, format, "3");
        let dest = work.path().join(format!("py-{ext}"));
        let decompress = match format {
            "tar.zst" => format!("zstd -dc '{}'", archive.display()),
            _ => format!("cat '{}'", archive.display()),
        };
        clean(Command::new("sh").arg("-c").arg(format!(
            "set -e; {decompress} | '{}' -c '{}' '{}'",
            python.display(),
            script,
            dest.display()
        )));
        assert_same_tree(&expected, &snapshot_extracted(&dest));
    }
}

/// `archiver pack dir | tar xf -`: stdout works as a pipe.
#[test]
fn pack_to_a_pipe() {
    require("tar");
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    gnarly_tree(&src, 50, 3);
    let dest = work.path().join("dest");
    std::fs::create_dir(&dest).unwrap();
    clean(Command::new("sh").arg("-c").arg(format!(
        "set -e; '{}' pack -f tar.zst -C '{}' . | tar --zstd -xpf - -C '{}'",
        env!("CARGO_BIN_EXE_archiver"),
        src.display(),
        dest.display()
    )));
    assert_same_tree(&snapshot(&src), &snapshot_extracted(&dest));
}

/// GNU tar's own archives of the same tree list the same names, in the order GNU tar
/// `--sort=name` gives, which is ours.
#[test]
fn our_order_is_gnu_tar_sort_name() {
    let gnu = require("tar");
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    gnarly_tree(&src, 200, 5);
    let theirs = ok(Command::new(&gnu)
        .args(["--sort=name", "-cf", "-", "-C"])
        .arg(&src)
        .arg("."))
    .stdout;
    let their_names: Vec<String> =
        String::from_utf8(ok(Command::new(&gnu).args(["-tf", "-"]).stdin_bytes(&theirs)).stdout)
            .unwrap()
            .lines()
            .filter(|l| *l != "./")
            .map(|l| l.trim_start_matches("./").trim_end_matches('/').to_string())
            .collect();
    let ours = ok(archiver()
        .args(["pack", "--no-manifest", "-o", "-"])
        .arg("-C")
        .arg(&src)
        .arg("."))
    .stdout;
    let our_names: Vec<String> =
        String::from_utf8(ok(Command::new(&gnu).args(["-tf", "-"]).stdin_bytes(&ours)).stdout)
            .unwrap()
            .lines()
            .map(|l| l.trim_end_matches('/').to_string())
            .collect();
    assert_eq!(our_names, their_names);
}

/// A file over 8 GiB needs a base-256 size field: GNU tar, bsdtar and Python's tarfile must read
/// its size back exactly, from one pass of the archive through a pipe (the file is sparse, so
/// this costs time, not disk).
#[test]
fn files_over_8_gib_read_back_everywhere() {
    require("tar");
    require("bsdtar");
    require("python3");
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let size: u64 = (8 << 30) + 101;
    std::fs::File::create(src.join("huge"))
        .unwrap()
        .set_len(size)
        .unwrap();
    let w = work.path();
    let script = format!(
        "set -euo pipefail; '{bin}' pack -f tar -C '{src}' . \
         | tee >(tar -tvf - > '{w}/gnu.txt' 2> '{w}/gnu.err') >(bsdtar -tvf - > '{w}/bsd.txt' 2> '{w}/bsd.err') \
         | python3 -c 'import sys, tarfile\nfor m in tarfile.open(fileobj=sys.stdin.buffer, mode=\"r|\"): print(m.name, m.size)' > '{w}/py.txt'; wait",
        bin = env!("CARGO_BIN_EXE_archiver"),
        src = src.display(),
        w = w.display()
    );
    clean(Command::new("bash").arg("-c").arg(script));
    // The process substitutions may finish just after bash does.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let read = |f: &str| std::fs::read_to_string(w.join(f)).unwrap();
    assert!(
        read("py.txt").starts_with(&format!("huge {size}\n")),
        "{}",
        read("py.txt")
    );
    for tool in ["gnu", "bsd"] {
        assert_eq!(read(&format!("{tool}.err")), "", "{tool} warned");
        let listing = read(&format!("{tool}.txt"));
        let line = listing
            .lines()
            .find(|l| l.contains("huge"))
            .unwrap_or_else(|| panic!("{tool}: {listing}"));
        assert!(
            line.split_whitespace().any(|f| f == size.to_string()),
            "{tool}: {line}"
        );
    }
}
