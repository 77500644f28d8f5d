//! zip archives we write, checked by every peer that reads zip: Info-ZIP unzip/zipinfo, Python's
//! zipfile, bsdtar (from a file and streaming from a pipe) and 7-Zip.

use std::path::Path;
use std::process::Command;

use crate::util::*;

fn pack_zip(src: &Path, out: &Path, extra: &[&str]) {
    clean(
        archiver()
            .args(["pack", "-j", "2", "-f", "zip"])
            .args(extra)
            .arg("-o")
            .arg(out)
            .arg("-C")
            .arg(src)
            .arg("."),
    );
}

/// Our unpack of `archive` into `dest` gives exactly the tree `src`.
fn unpacks_to_the_tree(archive: &Path, src: &Path, dest: &Path) {
    clean(
        archiver()
            .args(["unpack", "--no-sync"])
            .arg(archive)
            .arg("-C")
            .arg(dest),
    );
    assert_same_tree(&snapshot(src), &snapshot_extracted(dest));
}

/// unzip extracts the tree exactly (content, modes, mtimes, symlinks, empty dirs; hard links become
/// copies), and `unzip -t`, `zipinfo`, Python's `testzip()`, `bsdtar -tf` and `7z t` all accept it.
#[test]
fn every_zip_peer_accepts_what_we_write() {
    let unzip = require("unzip");
    let zipinfo = require("zipinfo");
    let python = require("python3");
    let bsdtar = require("bsdtar");
    let sevenz = require("7z");
    let b3sum = require("b3sum");
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    gnarly_tree(&src, 300, 21);
    // Already compressed content: must be stored, not deflated.
    file(
        &src,
        "photo.jpg",
        &(0..50_000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
            .collect::<Vec<_>>(),
        0o644,
    );
    let archive = work.path().join("out.zip");
    pack_zip(&src, &archive, &[]);

    clean(Command::new(&unzip).arg("-tq").arg(&archive));
    let info = String::from_utf8(clean(Command::new(&zipinfo).arg(&archive)).stdout).unwrap();
    assert!(
        info.lines()
            .any(|l| l.contains(" stor ") && l.ends_with("photo.jpg")),
        "{info}"
    );
    assert!(
        info.lines()
            .any(|l| l.contains(" defN ") && l.ends_with("big.bin")),
        "{info}"
    );
    clean(Command::new(&python).arg("-c").arg(
        "import sys, zipfile\nz = zipfile.ZipFile(sys.argv[1])\nbad = z.testzip()\nassert bad is None, bad\nprint(len(z.namelist()))",
    ).arg(&archive));
    clean(Command::new(&bsdtar).arg("-tf").arg(&archive));
    let t = ok(Command::new(&sevenz).arg("t").arg(&archive));
    assert!(String::from_utf8_lossy(&t.stdout).contains("Everything is Ok"));

    let dest = work.path().join("unzipped");
    clean(
        Command::new(&unzip)
            .arg("-q")
            .arg(&archive)
            .arg("-d")
            .arg(&dest),
    );
    let mut expected = snapshot(&src);
    expected.link_groups.clear(); // zip has no hard links: each name is a file of its own
    assert_same_tree(&expected, &snapshot_extracted(&dest));
    let check = clean(
        Command::new(&b3sum)
            .args(["--check", ".archiver/MANIFEST.b3"])
            .current_dir(&dest),
    );
    assert!(String::from_utf8_lossy(&check.stdout)
        .lines()
        .all(|l| l.ends_with(": OK")));
}

/// Through a pipe: bsdtar reads the stream as it comes (local headers must carry what it needs),
/// and the saved stream passes unzip, Python and 7-Zip like a file would.
#[test]
fn zip_through_a_pipe() {
    let bsdtar = require("bsdtar");
    let unzip = require("unzip");
    let sevenz = require("7z");
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    gnarly_tree(&src, 100, 4);
    let streamed = ok(archiver()
        .args(["pack", "-f", "zip", "-o", "-"])
        .arg("-C")
        .arg(&src)
        .arg("."))
    .stdout;
    let listing = String::from_utf8(
        clean(
            Command::new(&bsdtar)
                .args(["-tf", "-"])
                .stdin_bytes(&streamed),
        )
        .stdout,
    )
    .unwrap();
    let saved = work.path().join("saved.zip");
    std::fs::write(&saved, &streamed).unwrap();
    // bsdtar normalises Unicode names on the way out (é vs e + U+0301), so compare it with itself:
    // the streaming reader must see every entry the central directory lists.
    let from_file =
        String::from_utf8(clean(Command::new(&bsdtar).arg("-tf").arg(&saved)).stdout).unwrap();
    assert_eq!(listing, from_file);
    let ours =
        String::from_utf8(clean(archiver().args(["list", "-"]).stdin_bytes(&streamed)).stdout)
            .unwrap();
    assert_eq!(listing.lines().count(), ours.lines().count());
    let dest = work.path().join("bsd");
    std::fs::create_dir(&dest).unwrap();
    clean(
        Command::new(&bsdtar)
            .args(["-xf", "-", "-C"])
            .arg(&dest)
            .stdin_bytes(&streamed),
    );
    // Streaming readers see no modes (they live in the central directory) and bsdtar renames to
    // NFC, so compare the multiset of file contents.
    let contents = |s: &Snapshot| {
        let mut v: Vec<String> = s
            .nodes
            .values()
            .filter_map(|n| match n {
                Node::File { hash, .. } => Some(hash.clone()),
                _ => None,
            })
            .collect();
        v.sort();
        v
    };
    let mut expected = contents(&snapshot(&src));
    // Symlinks come out of a stream as small files holding the target; drop those from the count.
    let got = contents(&snapshot_extracted(&dest));
    expected.retain(|h| got.contains(h));
    assert_eq!(
        expected.len(),
        contents(&snapshot(&src)).len(),
        "files missing from the streamed extraction"
    );
    clean(Command::new(&unzip).arg("-tq").arg(&saved));
    assert!(
        String::from_utf8_lossy(&ok(Command::new(&sevenz).arg("t").arg(&saved)).stdout)
            .contains("Everything is Ok")
    );
    // The bytes on a pipe are the bytes in a file.
    let to_file = work.path().join("file.zip");
    ok(archiver()
        .args(["pack", "-f", "zip", "-o"])
        .arg(&to_file)
        .arg("-C")
        .arg(&src)
        .arg("."));
    assert!(std::fs::read(&to_file).unwrap() == streamed);
}

/// More than 65,535 entries need the ZIP64 end records; every peer must still count them all.
#[test]
fn zip64_for_many_entries() {
    let python = require("python3");
    let unzip = require("unzip");
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    for d in 0..70 {
        let dir = src.join(format!("d{d:02}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..1000 {
            std::fs::write(dir.join(format!("{f:04}")), b"").unwrap();
        }
    }
    let archive = work.path().join("many.zip");
    pack_zip(&src, &archive, &["--no-manifest"]);
    let count = String::from_utf8(ok(Command::new(&python)
        .arg("-c")
        .arg("import sys, zipfile\nz = zipfile.ZipFile(sys.argv[1])\nassert z.testzip() is None\nprint(len(z.infolist()))")
        .arg(&archive))
    .stdout)
    .unwrap();
    assert_eq!(count.trim(), "70070");
    clean(Command::new(&unzip).arg("-tq").arg(&archive));
    let listed = ok(archiver().arg("list").arg(&archive)).stdout;
    assert_eq!(listed.iter().filter(|&&b| b == b'\n').count(), 70_070);
    ok(archiver().arg("verify").arg(&archive)); // stderr: the one-line "unverified" note
}

/// `--zip-method zstd`: smaller and faster, read back by us and by the zip crate's reader.
#[test]
fn zstd_method_round_trips_through_our_reader() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    gnarly_tree(&src, 60, 8);
    let archive = work.path().join("z.zip");
    pack_zip(&src, &archive, &["--zip-method", "zstd", "-l", "19"]);
    let names = String::from_utf8(clean(archiver().arg("list").arg(&archive)).stdout).unwrap();
    assert!(names.lines().count() > 60);
    let bad = archiver()
        .args(["pack", "-f", "zip", "--zip-method", "lzma", "-o", "-"])
        .arg("-C")
        .arg(&src)
        .arg(".")
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}

/// Our own zip's deflated entries of every read path come back exactly: whole (up to 1 MiB),
/// streamed by one thread (up to 8 MiB) and inflated piece by piece on a pool (larger), each
/// also compressible and not, next to Python's reading of the same archive.
#[test]
fn every_entry_size_class_round_trips() {
    let python = require("python3");
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    let text: Vec<u8> = (0..10u32 << 20)
        .map(|i| b"piece by piece "[(i % 15) as usize] ^ ((i >> 16) as u8 & 1))
        .collect();
    file(&src, "whole.txt", &text[..700 << 10], 0o644);
    file(&src, "streamed.txt", &text[..(3 << 20) + 5], 0o644);
    file(&src, "pool.txt", &text, 0o644);
    file(&src, "pool-noise.bin", &noise(9 << 20, 3), 0o644);
    let archive = work.path().join("sizes.zip");
    pack_zip(&src, &archive, &[]);
    // Python reads every entry and checks its CRC.
    ok(Command::new(&python)
        .arg("-c")
        .arg("import sys, zipfile; assert zipfile.ZipFile(sys.argv[1]).testzip() is None")
        .arg(&archive));
    unpacks_to_the_tree(&archive, &src, &work.path().join("out"));
}

/// An entry whose deflate data gives more, or less, than the size its headers declare is refused
/// by name and nothing is extracted, both for small entries (inflated whole) and for large ones
/// (streamed). The forged sizes agree between local header and central directory, so only the
/// data can tell.
#[test]
fn an_entry_that_inflates_to_another_size_than_declared_is_refused() {
    let python = require("python3");
    let work = tempfile::tempdir().unwrap();
    // name, real size, declared size
    let cases = [
        ("small-more.txt", 5000u32, 4000u32),
        ("small-less.txt", 5000, 6000),
        ("large-more.txt", 3 << 20, (3 << 20) - 100),
        ("large-less.txt", 3 << 20, (3 << 20) + 100),
    ];
    for (name, real, declared) in cases {
        let zip = work.path().join(format!("{name}.zip"));
        let script = r#"
import sys, zipfile, struct
path, name, real, declared = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
data = (b"archiver forged size test line\n" * (real // 31 + 1))[:real]
with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
    z.writestr(name, data)
b = bytearray(open(path, "rb").read())
lh = b.index(b"PK\x03\x04")
struct.pack_into("<I", b, lh + 22, declared)
cd = b.index(b"PK\x01\x02")
struct.pack_into("<I", b, cd + 24, declared)
open(path, "wb").write(b)
"#;
        ok(Command::new(&python)
            .arg("-c")
            .arg(script)
            .arg(&zip)
            .arg(name)
            .arg(real.to_string())
            .arg(declared.to_string()));
        let expected = if real > declared {
            "more than its declared size"
        } else {
            "before its declared size"
        };
        assert_refused(
            &zip,
            &work.path().join(format!("out-{name}")),
            name,
            expected,
        );
    }
}

/// Unpacking `zip` into `dest` fails (exit 2) naming entry `name` and saying `expected`, and
/// `name` is not extracted. Returns `dest`'s path for further checks.
fn assert_refused<'a>(zip: &Path, dest: &'a Path, name: &str, expected: &str) -> &'a Path {
    let out = output_within(
        archiver()
            .args(["unpack", "--no-sync"])
            .arg(zip)
            .arg("-C")
            .arg(dest),
        60,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{name}: {err}");
    assert!(err.contains(name), "{name}: {err}");
    assert!(err.contains(expected), "{name}: {err}");
    assert!(!dest.join(name).exists(), "{name} was extracted");
    dest
}

/// A wrong CRC-32 is refused by name for stored and deflated entries, small (read whole),
/// large (streamed) and larger (inflated on a pool); so is a stored entry whose declared size is not its stored size. The zips
/// come from Python without our manifest, so only these checks can tell.
#[test]
fn a_wrong_crc_or_stored_size_is_refused_whole_or_streamed() {
    let python = require("python3");
    let work = tempfile::tempdir().unwrap();
    // name, method, size, what to forge, expected message
    let cases = [
        ("small-deflated.txt", 8, 5000u32, "crc", "CRC-32 mismatch"),
        ("large-deflated.txt", 8, 3 << 20, "crc", "CRC-32 mismatch"),
        ("pool-deflated.txt", 8, 9 << 20, "crc", "CRC-32 mismatch"),
        ("small-stored.txt", 0, 5000, "crc", "CRC-32 mismatch"),
        ("large-stored.txt", 0, 3 << 20, "crc", "CRC-32 mismatch"),
        (
            "small-stored-less.txt",
            0,
            5000,
            "size+",
            "before its declared size",
        ),
        (
            "small-stored-more.txt",
            0,
            5000,
            "size-",
            "more than its declared size",
        ),
    ];
    for (name, method, size, forge, expected) in cases {
        let zip = work.path().join(format!("{name}.zip"));
        let script = r#"
import sys, zipfile, struct
path, name, method, size, forge = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
data = (b"archiver forged crc test line\n" * (size // 30 + 1))[:size]
with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED if method == 8 else zipfile.ZIP_STORED) as z:
    z.writestr("first.txt", b"a good entry before the bad one\n")
    z.writestr(name, data)
b = bytearray(open(path, "rb").read())
lh = b.index(b"PK\x03\x04" + b"\x14", b.index(name.encode()) - 40)
cd = b.index(b"PK\x01\x02", b.index(b"PK\x01\x02") + 1)
if forge == "crc":
    struct.pack_into("<I", b, lh + 14, struct.unpack_from("<I", b, lh + 14)[0] ^ 1)
    struct.pack_into("<I", b, cd + 16, struct.unpack_from("<I", b, cd + 16)[0] ^ 1)
else:
    declared = size + 100 if forge == "size+" else size - 100
    struct.pack_into("<I", b, lh + 22, declared)
    struct.pack_into("<I", b, cd + 24, declared)
open(path, "wb").write(b)
"#;
        ok(Command::new(&python)
            .arg("-c")
            .arg(script)
            .arg(&zip)
            .arg(name)
            .arg(method.to_string())
            .arg(size.to_string())
            .arg(forge));
        let dest = work.path().join(format!("out-{name}"));
        let dest = assert_refused(&zip, &dest, name, expected);
        assert!(
            !dest.join("first.txt").exists(),
            "{name}: nothing is extracted"
        );
    }
}

/// Sizes are what a hostile directory claims: zip64 allows u64::MAX per entry, and two claims
/// of 2^63 bytes add up past u64. That is refused as too large for the destination, with the
/// entry named, never a panic or a wrapped total.
#[test]
fn claimed_sizes_that_add_up_past_u64_are_refused_cleanly() {
    let python = require("python3");
    let work = tempfile::tempdir().unwrap();
    let zip = work.path().join("huge.zip");
    let script = r#"
import sys, struct, zlib
path = sys.argv[1]
data = zlib.compress(b"x" * 1000)[2:-4]
crc = zlib.crc32(b"x" * 1000)
body, cd = bytearray(), bytearray()
names = [b"first-huge.bin", b"second-huge.bin"]
for name in names:
    at = len(body)
    z64 = struct.pack("<HHQQ", 1, 16, 1 << 63, len(data))
    body += struct.pack("<IHHHHHIIIHH", 0x04034b50, 45, 0, 8, 0, 0x21, crc,
                        0xFFFFFFFF, 0xFFFFFFFF, len(name), len(z64)) + name + z64 + data
    z64c = struct.pack("<HHQQ", 1, 16, 1 << 63, len(data))
    cd += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014b50, 45, 45, 0, 8, 0, 0x21, crc,
                      0xFFFFFFFF, 0xFFFFFFFF, len(name), len(z64c), 0, 0, 0, 0o100644 << 16, at) + name + z64c
end = struct.pack("<IHHHHIIH", 0x06054b50, 0, 0, len(names), len(names), len(cd), len(body), 0)
open(path, "wb").write(bytes(body) + bytes(cd) + end)
"#;
    ok(Command::new(&python).arg("-c").arg(script).arg(&zip));
    let dest = work.path().join("out");
    for cmd in [&["unpack", "--no-sync"][..], &["list"], &["verify"]] {
        let mut run = archiver();
        run.args(cmd).arg(&zip);
        if cmd[0] == "unpack" {
            run.arg("-C").arg(&dest);
        }
        let out = output_within(&mut run, 60);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{cmd:?}: {err}");
        assert!(matches!(out.status.code(), Some(0..=2)), "{cmd:?}: {err}");
        assert!(!dest.join("first-huge.bin").exists(), "{cmd:?}");
        if cmd[0] == "unpack" {
            assert_eq!(out.status.code(), Some(2), "{err}");
            assert!(err.contains("first-huge.bin"), "{err}");
        }
    }
}

/// A manifest over 1 MiB (here 4,000 files with 240-byte names, 1.2 MiB of lines) is written as
/// a large file is: read back from its spill file and deflated in pieces, never held whole.
/// Every reader still reads it, and unpack checks every file against it.
#[test]
fn a_manifest_over_a_mebibyte_is_streamed_and_still_checked() {
    let python = require("python3");
    let unzip = require("unzip");
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    for i in 0..4000 {
        let name = format!("{i:05}-{}", "n".repeat(234));
        file(&src.join("d"), &name, format!("{i}\n").as_bytes(), 0o644);
    }
    let archive = work.path().join("names.zip");
    pack_zip(&src, &archive, &[]);
    let sizes = clean(Command::new(&python).arg("-c").arg(
        "import sys, zipfile\nz = zipfile.ZipFile(sys.argv[1])\nassert z.testzip() is None\ni = z.getinfo('.archiver/MANIFEST.b3')\nprint(i.compress_type, i.file_size, i.compress_size, len(z.read(i).splitlines()), i.flag_bits & 8)",
    ).arg(&archive));
    let sizes = String::from_utf8(sizes.stdout).unwrap();
    let fields: Vec<u64> = sizes
        .split_whitespace()
        .map(|f| f.parse().unwrap())
        .collect();
    assert_eq!(fields[0], 8, "deflated: {sizes}");
    assert!(fields[1] > 1 << 20, "the manifest is over 1 MiB: {sizes}");
    assert!(fields[2] < fields[1] / 2, "and compressed: {sizes}");
    assert_eq!(fields[3], 4000, "one line per file: {sizes}");
    assert_eq!(
        fields[4], 8,
        "streamed (sizes in a data descriptor): {sizes}"
    );
    clean(Command::new(&unzip).arg("-tq").arg(&archive));
    unpacks_to_the_tree(&archive, &src, &work.path().join("out"));
    // The same tree packs to the same bytes with one thread: the pieces do not depend on -j.
    let one = work.path().join("one.zip");
    clean(
        pack_dir(&src)
            .args(["-j", "1", "-f", "zip", "-o"])
            .arg(&one),
    );
    assert_eq!(
        std::fs::read(&one).unwrap(),
        std::fs::read(&archive).unwrap()
    );
}

/// A zip with bytes before it (a self-extractor's program, padding, a block of zeros that looks
/// like an empty tar) is read as unzip and bsdtar read it, from its end record: our own archive
/// so prefixed still passes its manifest check, and the corpus's prefixed zips list the names
/// bsdtar lists. Through a pipe (no end to read first) a program before it is refused (and zeros
/// are an empty tar, as GNU tar reads them).
#[test]
fn zips_after_a_prefix_are_read_from_their_end_record() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    file(&src, "a.txt", b"alpha", 0o644);
    file(&src, "dir/b.txt", b"beta", 0o600);
    let plain = work.path().join("plain.zip");
    pack_zip(&src, &plain, &[]);
    let zip = std::fs::read(&plain).unwrap();
    for (what, prefix) in [
        ("script", b"#!/bin/sh\nexit 0\n".to_vec()),
        ("zeros", vec![0u8; 512]),
        ("zeros and more", vec![0u8; 576]),
    ] {
        let archive = work.path().join(format!("{}.zip", what.replace(' ', "-")));
        std::fs::write(&archive, [prefix.clone(), zip.clone()].concat()).unwrap();
        clean(archiver().arg("verify").arg(&archive));
        let dest = work.path().join(format!("dest-{}", what.replace(' ', "-")));
        unpacks_to_the_tree(&archive, &src, &dest);
        // With a progress bar (a terminal's default) the CLI takes another path to the file.
        let shown = work
            .path()
            .join(format!("shown-{}", what.replace(' ', "-")));
        clean(
            archiver()
                .args(["unpack", "--no-sync", "--progress"])
                .arg(&archive)
                .arg("-C")
                .arg(&shown),
        );
        assert_same_tree(&snapshot(&src), &snapshot_extracted(&shown));
        if what == "script" {
            let piped = archiver()
                .args(["list", "-"])
                .stdin_bytes(&std::fs::read(&archive).unwrap())
                .output()
                .unwrap();
            assert_eq!(piped.status.code(), Some(2), "{what} through a pipe");
        }
    }
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus/libarchive");
    for (name, expected) in [
        ("test_compat_zip_4.zip", "foo\nbar\nbaz\n"),
        ("test_read_format_zip_sfx.zip", "file0\nbuild.sh\n"),
        ("test_read_format_zip_padded1.zip", "file0\nfile1\n"),
    ] {
        let out = archiver()
            .arg("list")
            .arg(corpus.join("archives").join(name))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{name}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), expected, "{name}");
    }
}

/// What other producers write besides stored, deflate and zstd: deflate64 (7-Zip, Windows'
/// compressed folders for large files; a 7-Zip fixture with matches 40,000 bytes back, past
/// deflate's window), bzip2 and LZMA (Python's zipfile, as 7-Zip and Info-ZIP write them: LZMA
/// with its end marker). Each extracts to the right bytes, a damaged one is refused naming the
/// entry, and an LZMA dictionary over the limit is refused before anything is allocated.
#[test]
fn deflate64_bzip2_and_lzma_entries_extract() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/deflate64.zip");
    let dest = tempfile::tempdir().unwrap();
    ok(archiver()
        .args(["unpack", "--no-sync"])
        .arg(&fixture)
        .arg("-C")
        .arg(dest.path()));
    assert_eq!(
        blake3_hex(&std::fs::read(dest.path().join("far.txt")).unwrap()),
        "adc174d58bdb0977-100000"
    );
    assert_eq!(
        std::fs::read(dest.path().join("small.txt")).unwrap(),
        b"deflate64 from 7-Zip\n"
    );

    let python = require("python3");
    let work = tempfile::tempdir().unwrap();
    let data = noise(300_000, 7)
        .iter()
        .map(|b| b"abcdefgh"[usize::from(b % 8)])
        .collect::<Vec<u8>>();
    std::fs::write(work.path().join("data"), &data).unwrap();
    for (method, name) in [("ZIP_BZIP2", "bz"), ("ZIP_LZMA", "lzma")] {
        let zip = work.path().join(format!("{name}.zip"));
        let status = Command::new(&python)
            .arg("-c")
            .arg(format!(
                "import sys, zipfile\n\
                 with zipfile.ZipFile(sys.argv[1], 'w', zipfile.{method}) as z:\n    \
                 z.write(sys.argv[2], 'data')\n    z.writestr('empty', b'')"
            ))
            .arg(&zip)
            .arg(work.path().join("data"))
            .status()
            .unwrap();
        assert!(status.success());
        let dest = tempfile::tempdir().unwrap();
        ok(archiver()
            .args(["unpack", "--no-sync"])
            .arg(&zip)
            .arg("-C")
            .arg(dest.path()));
        assert!(
            std::fs::read(dest.path().join("data")).unwrap() == data,
            "{name}"
        );
        assert_eq!(std::fs::read(dest.path().join("empty")).unwrap(), b"");
        // One byte changed in the middle of the compressed data.
        let mut bytes = std::fs::read(&zip).unwrap();
        let at = bytes.len() / 3;
        bytes[at] ^= 0x10;
        let bad = work.path().join(format!("{name}-bad.zip"));
        std::fs::write(&bad, &bytes).unwrap();
        let dest = tempfile::tempdir().unwrap();
        assert_refused(&bad, dest.path(), "data", "data");
    }

    // An LZMA entry declaring 1 GiB with a 4 GiB dictionary: refused by its header.
    let zip = work.path().join("huge-dict.zip");
    let status = Command::new(&python)
        .arg("-c")
        .arg(
            "import sys, struct, zipfile\n\
             with zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_LZMA) as z:\n    \
             z.writestr('big', b'x' * 1000)\n\
             b = bytearray(open(sys.argv[1], 'rb').read())\n\
             n = struct.unpack('<H', b[26:28])[0]\n\
             b[30 + n + 5:30 + n + 9] = b'\\xff\\xff\\xff\\xff'\n\
             b[22:26] = struct.pack('<I', 1 << 30)\n\
             c = b.find(b'PK\\x01\\x02')\n\
             b[c + 24:c + 28] = struct.pack('<I', 1 << 30)\n\
             open(sys.argv[1], 'wb').write(b)",
        )
        .arg(&zip)
        .status()
        .unwrap();
    assert!(status.success());
    let dest = tempfile::tempdir().unwrap();
    assert_refused(
        &zip,
        dest.path(),
        "big",
        "MiB LZMA dictionary, more than the 256 MiB",
    );
}
