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

/// A tar.zst over several frames (ours are 4 MiB each, with a seek table in a skippable frame at
/// the end): `zstd -t`, GNU tar and bsdtar read it whole and silently; the bytes do not depend on
/// `-j`; and a multi-frame stream another tool wrote (frames concatenated, a skippable frame
/// between them) unpacks with us and passes its manifest.
#[test]
fn multi_frame_tar_zst_both_ways() {
    let gnu = require("tar");
    let bsd = require("bsdtar");
    let zstd = require("zstd");
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    gnarly_tree(&src, 60, 13);
    // 11 MiB across the frame boundaries: text, noise, text.
    let text: Vec<u8> = (0..5u32 << 20)
        .map(|i| b"frame "[(i % 6) as usize])
        .collect();
    file(&src, "big/a.txt", &text, 0o644);
    file(&src, "big/b.bin", &noise(3 << 20, 9), 0o600);
    file(&src, "big/c.txt", &text[..3 << 20], 0o644);
    let expected = snapshot(&src);
    let one = work.path().join("one.tar.zst");
    let three = work.path().join("three.tar.zst");
    pack(&src, &one, "tar.zst", "1");
    pack(&src, &three, "tar.zst", "3");
    let bytes = std::fs::read(&one).unwrap();
    assert!(
        bytes == std::fs::read(&three).unwrap(),
        "-j changes the bytes"
    );
    // The seekable format's footer: frame count, descriptor, magic.
    let footer = &bytes[bytes.len() - 9..];
    assert_eq!(&footer[5..], &0x8F92_EAB1u32.to_le_bytes());
    assert!(u32::from_le_bytes(footer[..4].try_into().unwrap()) >= 3);
    clean(Command::new(&zstd).arg("-tq").arg(&one));
    for (name, tool) in [("gnu", &gnu), ("bsd", &bsd)] {
        let dest = work.path().join(format!("x-{name}"));
        std::fs::create_dir(&dest).unwrap();
        let mut cmd = Command::new(tool);
        if name == "gnu" {
            cmd.arg("--zstd");
        }
        clean(cmd.arg("-xpf").arg(&one).arg("-C").arg(&dest));
        assert_same_tree(&expected, &snapshot_extracted(&dest));
    }
    // Theirs: our tar split in two, each half a zstd frame of its own, a skippable frame between.
    let tar = ok(archiver()
        .args(["pack", "-f", "tar", "-o", "-", "-C"])
        .arg(&src)
        .arg("."))
    .stdout;
    let half = tar.len() / 2;
    let mut theirs = Vec::new();
    for (i, part) in [&tar[..half], &tar[half..]].into_iter().enumerate() {
        let z = ok(Command::new(&zstd)
            .args(["-q", "-c", "-3"])
            .stdin_bytes(part))
        .stdout;
        theirs.extend_from_slice(&z);
        if i == 0 {
            theirs.extend_from_slice(&0x184D_2A50u32.to_le_bytes());
            theirs.extend_from_slice(&3u32.to_le_bytes());
            theirs.extend_from_slice(b"abc");
        }
    }
    let dest = work.path().join("x-ours");
    let out = clean(
        archiver()
            .args(["unpack", "--require-manifest", "-C"])
            .arg(&dest)
            .stdin_bytes(&theirs),
    );
    assert!(out.status.success());
    assert_same_tree(&expected, &snapshot_extracted(&dest));
    // `list` decodes frames on a pool even on two cores.
    for archive in [&one, &three] {
        let listed = clean(archiver().arg("list").arg(archive));
        assert!(String::from_utf8_lossy(&listed.stdout).contains("big/c.txt"));
    }
    let theirs_file = work.path().join("theirs.tar.zst");
    std::fs::write(&theirs_file, &theirs).unwrap();
    clean(archiver().arg("list").arg(&theirs_file));
}

/// A tar.gz over many independent 1 MiB pieces (one gzip member; each piece's end marked by a
/// second empty stored block): `gzip -t`, GNU tar, bsdtar and Python's tarfile in stream mode
/// (`r|gz`, which reads only a first member) extract it whole; `-j` does not change the bytes;
/// our `list` and `unpack` read it back, and a pigz stream too.
#[test]
fn multi_piece_tar_gz_reads_everywhere() {
    let gnu = require("tar");
    let bsd = require("bsdtar");
    let python = require("python3");
    let gzip = require("gzip");
    let pigz = require("pigz");
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    gnarly_tree(&src, 40, 17);
    let text: Vec<u8> = (0..4u32 << 20)
        .map(|i| b"piece "[(i % 6) as usize])
        .collect();
    file(&src, "big/a.txt", &text, 0o644);
    file(&src, "big/b.bin", &noise(2 << 20, 4), 0o600);
    let expected = snapshot(&src);
    let one = work.path().join("one.tar.gz");
    let three = work.path().join("three.tar.gz");
    pack(&src, &one, "tar.gz", "1");
    pack(&src, &three, "tar.gz", "3");
    assert!(
        std::fs::read(&one).unwrap() == std::fs::read(&three).unwrap(),
        "-j changes the bytes"
    );
    clean(Command::new(&gzip).arg("-t").arg(&one));
    for (name, tool) in [("gnu", &gnu), ("bsd", &bsd)] {
        let dest = work.path().join(format!("x-{name}"));
        std::fs::create_dir(&dest).unwrap();
        clean(
            Command::new(tool)
                .arg("-xpzf")
                .arg(&one)
                .arg("-C")
                .arg(&dest),
        );
        assert_same_tree(&expected, &snapshot_extracted(&dest));
    }
    let py = work.path().join("x-py");
    clean(Command::new(&python).arg("-c").arg(
        "import sys, tarfile\nt = tarfile.open(fileobj=sys.stdin.buffer, mode='r|gz')\nt.extractall(sys.argv[1], filter='fully_trusted') if hasattr(tarfile, 'data_filter') else t.extractall(sys.argv[1])",
    ).arg(&py).stdin_bytes(&std::fs::read(&one).unwrap()));
    assert_same_tree(&expected, &snapshot_extracted(&py));
    let ours = work.path().join("x-ours");
    clean(
        archiver()
            .args(["unpack", "--require-manifest", "-C"])
            .arg(&ours)
            .arg(&one),
    );
    assert_same_tree(&expected, &snapshot_extracted(&ours));
    let listed = clean(archiver().arg("list").arg(&one));
    assert!(String::from_utf8_lossy(&listed.stdout).contains("big/b.bin"));
    // A zip of the same tree: its large entries are deflated in the same marked pieces.
    let zip = work.path().join("one.zip");
    pack(&src, &zip, "zip", "3");
    let unzip = require("unzip");
    clean(Command::new(&unzip).arg("-tq").arg(&zip));
    clean(
        Command::new(&python)
            .arg("-c")
            .arg("import sys, zipfile\nassert zipfile.ZipFile(sys.argv[1]).testzip() is None")
            .arg(&zip),
    );
    let x_zip = work.path().join("x-zip");
    clean(
        archiver()
            .args(["unpack", "--require-manifest", "-C"])
            .arg(&x_zip)
            .arg(&zip),
    );
    let mut no_links = expected.clone();
    no_links.link_groups.clear(); // zip has no hard links: each name is a file of its own
    assert_same_tree(&no_links, &snapshot_extracted(&x_zip));
    // pigz's own stream of our tar (no piece marks): read sequentially, same tree.
    let tar = ok(archiver()
        .args(["pack", "-f", "tar", "-o", "-", "-C"])
        .arg(&src)
        .arg("."))
    .stdout;
    let theirs = ok(Command::new(&pigz)
        .args(["-c", "-p", "2"])
        .stdin_bytes(&tar))
    .stdout;
    let dest = work.path().join("x-pigz");
    clean(
        archiver()
            .args(["unpack", "--require-manifest", "-C"])
            .arg(&dest)
            .stdin_bytes(&theirs),
    );
    assert_same_tree(&expected, &snapshot_extracted(&dest));
}

/// mtimes before 1970 and after 2038: tar keeps them exactly (base-256 before 1970, as GNU tar
/// writes them; they were stored as 1970 before), read the same by GNU tar, bsdtar and our
/// unpack; zip keeps them within its fields' reach (1960 exactly through the signed extended
/// timestamp, 2040 by the DOS time in two-second steps; 2040 came back as 1903 before).
#[test]
fn times_before_1970_and_after_2038_round_trip() {
    let gnu = require("tar");
    let bsd = require("bsdtar");
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    let times: [(&str, i64); 4] = [
        ("y1960", -315_619_200),
        ("minus-one", -1),
        ("y2040", 2_208_988_802),
        ("y2200", 7_258_118_400),
    ];
    for (name, t) in times {
        file(&src, name, name.as_bytes(), 0o644);
        let f = std::fs::File::options()
            .write(true)
            .open(src.join(name))
            .unwrap();
        let when = if t >= 0 {
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(t as u64)
        } else {
            std::time::UNIX_EPOCH - std::time::Duration::from_secs(t.unsigned_abs())
        };
        f.set_modified(when).unwrap();
    }
    let mtime = |p: &Path| {
        use std::os::unix::fs::MetadataExt;
        std::fs::symlink_metadata(p).unwrap().mtime()
    };
    let tar = work.path().join("t.tar");
    pack(&src, &tar, "tar", "2");
    for (tool, args) in [
        (archiver().get_program().to_owned(), &["unpack"][..]),
        (gnu.into_os_string(), &["-xf"][..]),
        (bsd.into_os_string(), &["-xf"][..]),
    ] {
        let dest = tempfile::tempdir().unwrap();
        ok(Command::new(&tool)
            .args(args)
            .arg(&tar)
            .arg("-C")
            .arg(dest.path()));
        for (name, t) in times {
            assert_eq!(mtime(&dest.path().join(name)), t, "{tool:?}: {name}");
        }
    }
    let zip = work.path().join("t.zip");
    clean(
        archiver()
            .args(["pack", "-o"])
            .arg(&zip)
            .arg("-C")
            .arg(&src)
            .arg("."),
    );
    let dest = tempfile::tempdir().unwrap();
    clean(
        archiver()
            .arg("unpack")
            .arg(&zip)
            .arg("-C")
            .arg(dest.path()),
    );
    for (name, t) in times {
        let got = mtime(&dest.path().join(name));
        let want = t.min(4_354_819_198); // the DOS time's last second, 2107-12-31 23:59:58
        assert!(
            (got - want).abs() <= 1,
            "zip: {name}: {got}, expected {want}"
        );
    }
}
