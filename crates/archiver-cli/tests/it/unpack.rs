//! `archiver unpack` and `verify`: round trips, archives from every peer, and hostile archives, one
//! test per rule of the safety policy (docs/SECURITY.md). Each hostile test also checks that nothing
//! appeared outside the destination.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::*;

/// Unpacks under a deadline: a hostile archive that made us hang fails the test, not the suite.
fn unpack(archive: &Path, dest: &Path, extra: &[&str]) -> std::process::Output {
    output_within(
        archiver()
            .arg("unpack")
            .args(extra)
            .arg(archive)
            .arg("-C")
            .arg(dest),
        120,
    )
}

/// Everything we write comes back exactly, through a file and through a pipe.
#[test]
fn our_archives_round_trip() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    gnarly_tree(&src, 300, 31);
    for format in ["tar", "tar.gz", "tar.zst", "zip"] {
        let archive = work.path().join(format!("a.{format}"));
        ok(archiver()
            .args(["pack", "-f", format, "-o"])
            .arg(&archive)
            .arg("-C")
            .arg(&src)
            .arg("."));
        let dest = work.path().join(format!("x-{format}"));
        clean(archiver().arg("unpack").arg(&archive).arg("-C").arg(&dest));
        let mut want = snapshot(&src);
        if format == "zip" {
            want.link_groups.clear();
        }
        assert_same_tree(&want, &snapshot_extracted(&dest));
        // stdin, with one writer thread
        let dest = work.path().join(format!("pipe-{format}"));
        let bytes = std::fs::read(&archive).unwrap();
        clean(
            archiver()
                .args(["unpack", "-j", "1", "-C"])
                .arg(&dest)
                .stdin_bytes(&bytes),
        );
        assert_same_tree(&want, &snapshot_extracted(&dest));
        clean(archiver().arg("verify").arg(&archive));
    }
}

/// Archives written by GNU tar (gnu, posix, ustar), bsdtar, Info-ZIP (file and `zip -` pipe),
/// Python and 7-Zip extract to the same tree bsdtar extracts.
#[test]
fn peers_archives_extract_like_bsdtar() {
    let gnu = require("tar");
    let bsdtar = require("bsdtar");
    let zip = require("zip");
    let python = require("python3");
    let sevenz = require("7z");
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    nfc_tree(&src, 120, 17);
    let mut archives: Vec<PathBuf> = Vec::new();
    for format in ["gnu", "posix", "ustar"] {
        let a = work.path().join(format!("gnu-{format}.tar.gz"));
        let out = Command::new(&gnu)
            .arg(format!("--format={format}"))
            .arg("-czf")
            .arg(&a)
            .arg("-C")
            .arg(&src)
            .arg(".")
            .output()
            .unwrap();
        if out.status.success() {
            archives.push(a);
        } else {
            assert_eq!(format, "ustar", "{}", String::from_utf8_lossy(&out.stderr));
            // ustar can't hold long names
        }
    }
    let a = work.path().join("bsd.tar.zst");
    ok(Command::new(&bsdtar)
        .arg("--zstd")
        .arg("-cf")
        .arg(&a)
        .arg("-C")
        .arg(&src)
        .arg("."));
    archives.push(a);
    let a = work.path().join("infozip.zip");
    ok(Command::new(&zip)
        .args(["-q", "-r", "-y"])
        .arg(&a)
        .arg(".")
        .current_dir(&src));
    archives.push(a);
    // Info-ZIP writing to a pipe (data descriptors). Whether `zip -y` may store symlinks into a
    // pipe differs between Info-ZIP builds, so this archive is made from a copy of the tree
    // without symlinks: the test depends on no such quirk.
    let plain = work.path().join("plain");
    nfc_tree(&plain, 120, 17);
    for p in non_dirs_under(&plain) {
        if std::fs::symlink_metadata(&p)
            .unwrap()
            .file_type()
            .is_symlink()
        {
            std::fs::remove_file(&p).unwrap();
        }
    }
    let a = work.path().join("infozip-pipe.zip");
    let piped = ok(Command::new("sh")
        .arg("-c")
        .arg("zip -q -r - .")
        .current_dir(&plain))
    .stdout;
    std::fs::write(&a, piped).unwrap();
    archives.push(a);
    let a = work.path().join("python.tar");
    ok(Command::new(&python)
        .arg("-c")
        .arg("import sys, tarfile\nwith tarfile.open(sys.argv[1], 'w') as t: t.add(sys.argv[2], arcname='.')")
        .arg(&a)
        .arg(&src));
    archives.push(a);
    let a = work.path().join("7z.zip");
    ok(Command::new(&sevenz)
        .args(["a", "-tzip", "-bd", "-bso0"])
        .arg(&a)
        .arg(".")
        .current_dir(&src));
    archives.push(a);

    for a in &archives {
        let name = a.file_name().unwrap().to_string_lossy().into_owned();
        let theirs = work.path().join(format!("bsd-{name}"));
        std::fs::create_dir(&theirs).unwrap();
        ok(Command::new(&bsdtar)
            .arg("-xpf")
            .arg(a)
            .arg("-C")
            .arg(&theirs));
        let ours = work.path().join(format!("ours-{name}"));
        let out = unpack(a, &ours, &[]);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut expected = snapshot(&theirs);
        let mut got = snapshot(&ours);
        // Directory mtimes and the destination root's own entry differ between tools by design.
        for s in [&mut expected, &mut got] {
            for n in s.nodes.values_mut() {
                if let Node::Dir { mode } = n {
                    *mode &= 0o777;
                }
            }
        }
        assert_same_tree(&expected, &got);
    }
}

/// Builds a tar from (name, type, link target, data) with raw headers, so nothing sanitises it.
fn hostile_tar(entries: &[(&str, tar::EntryType, &str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, kind, link, data) in entries {
        let mut h = tar::Header::new_gnu();
        {
            let raw = h.as_old_mut();
            raw.name[..name.len()].copy_from_slice(name.as_bytes());
            raw.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_entry_type(*kind);
        h.set_mode(0o6755);
        h.set_size(data.len() as u64);
        h.set_mtime(1_000_000_000);
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

/// Runs a hostile archive into `work/dest` and returns (exit code, stderr). Checks that nothing
/// was created in `work` beside `dest` and the archive.
fn attack(work: &Path, archive: &[u8], extra: &[&str]) -> (Option<i32>, String) {
    let file = work.join("evil.bin");
    std::fs::write(&file, archive).unwrap();
    let dest = work.join("dest");
    std::fs::create_dir_all(&dest).unwrap();
    let out = unpack(&file, &dest, extra);
    let mut outside: Vec<_> = std::fs::read_dir(work)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    outside.sort();
    assert_eq!(
        outside,
        ["dest", "evil.bin"],
        "something was written outside the destination"
    );
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn refuses_absolute_and_dotdot_paths() {
    use tar::EntryType as T;
    for (name, rule) in [
        ("/tmp/abs-evil", "absolute path"),
        ("../escape", "`..` in the path"),
        ("a/../../x", "`..` in the path"),
    ] {
        let work = tempfile::tempdir().unwrap();
        let (code, err) = attack(
            work.path(),
            &hostile_tar(&[
                ("ok.txt", T::Regular, "", b"fine"),
                (name, T::Regular, "", b"evil"),
            ]),
            &[],
        );
        assert_eq!(code, Some(2), "{name}: {err}");
        assert!(err.contains(&format!("archiver: {name}: {rule}")), "{err}");
        assert!(!Path::new("/tmp/abs-evil").exists());
        // All or nothing: the good entry did not get its final name either.
        assert!(!work.path().join("dest/ok.txt").exists());
    }
}

#[test]
fn refuses_symlinks_that_lead_out() {
    use tar::EntryType as T;
    for (target, rule) in [
        ("/etc", "symlink to an absolute path"),
        ("../../outside", "symlink target leaves the destination"),
    ] {
        let work = tempfile::tempdir().unwrap();
        let (code, err) = attack(
            work.path(),
            &hostile_tar(&[("d/link", T::Symlink, target, b"")]),
            &[],
        );
        assert_eq!(code, Some(2), "{err}");
        assert!(err.contains(rule), "{err}");
        assert!(std::fs::symlink_metadata(work.path().join("dest/d/link")).is_err());
    }
}

/// `--allow-outside-links` (trusted archives) creates links that point outside as they are, and
/// still never writes through one: an entry below such a link is refused and nothing lands
/// outside the destination.
#[test]
fn allow_outside_links_creates_them_but_never_writes_through_them() {
    use tar::EntryType as T;
    let work = tempfile::tempdir().unwrap();
    let archive = hostile_tar(&[
        ("app/bin/python", T::Symlink, "/usr/bin/python3", b""),
        ("app/up", T::Symlink, "../../elsewhere", b""),
        ("app/run.sh", T::Regular, "", b"#!/bin/sh\n"),
    ]);
    let (code, err) = attack(work.path(), &archive, &["--allow-outside-links"]);
    assert_eq!(code, Some(0), "{err}");
    let dest = work.path().join("dest");
    assert_eq!(
        std::fs::read_link(dest.join("app/bin/python")).unwrap(),
        Path::new("/usr/bin/python3")
    );
    assert_eq!(
        std::fs::read_link(dest.join("app/up")).unwrap(),
        Path::new("../../elsewhere")
    );

    let work = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().to_str().unwrap().to_string();
    let archive = hostile_tar(&[
        ("lib", T::Symlink, &target, b""),
        ("lib/evil.so", T::Regular, "", b"evil"),
    ]);
    let (code, err) = attack(work.path(), &archive, &["--allow-outside-links"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        std::fs::read_dir(outside.path()).unwrap().next().is_none(),
        "written through a symlink: {err}"
    );
}

/// The classic two-step: a symlink to outside, then a file written "through" it. Also a chain of
/// links that are each inside on their own but lead out together.
#[test]
fn never_writes_through_a_symlink() {
    use tar::EntryType as T;
    let work = tempfile::tempdir().unwrap();
    let (code, err) = attack(
        work.path(),
        &hostile_tar(&[
            ("sub", T::Symlink, ".", b""),
            ("sub/x", T::Symlink, "..", b""),
            ("sub/x/pwned", T::Regular, "", b"evil"),
        ]),
        &[],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(!work.path().join("pwned").exists());

    // A symlink already in the destination is not followed either.
    let work = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(work.path().join("dest")).unwrap();
    std::os::unix::fs::symlink(outside.path(), work.path().join("dest/existing")).unwrap();
    let (code, err) = attack(
        work.path(),
        &hostile_tar(&[("existing/file", T::Regular, "", b"evil")]),
        &[],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("refusing to write through it"), "{err}");
    assert!(std::fs::read_dir(outside.path()).unwrap().next().is_none());
}

/// Devices and FIFOs (system backups hold them) are skipped with a warning naming each, exit 1;
/// nothing is created for them and the rest of the archive is extracted.
#[test]
fn devices_and_fifos_are_skipped_with_a_warning() {
    use tar::EntryType as T;
    let work = tempfile::tempdir().unwrap();
    let (code, err) = attack(
        work.path(),
        &hostile_tar(&[
            ("dev/null", T::Char, "", b""),
            ("sda", T::Block, "", b""),
            ("fifo", T::Fifo, "", b""),
            ("ok.txt", T::Regular, "", b"fine"),
        ]),
        &[],
    );
    assert_eq!(code, Some(1), "{err}");
    for (name, what) in [
        ("dev/null", "character device"),
        ("sda", "block device"),
        ("fifo", "FIFO"),
    ] {
        assert!(
            err.contains(&format!("archiver: {name}: is a {what}")) && err.contains("skipped"),
            "{err}"
        );
    }
    let dest = work.path().join("dest");
    assert_eq!(std::fs::read(dest.join("ok.txt")).unwrap(), b"fine");
    for p in ["dev/null", "sda", "fifo"] {
        assert!(
            std::fs::symlink_metadata(dest.join(p)).is_err(),
            "{p} created"
        );
    }
    // -q prints only errors: the same warnings, told by the exit status alone.
    let quiet = tempfile::tempdir().unwrap();
    let (code, err) = attack(
        quiet.path(),
        &hostile_tar(&[
            ("fifo", T::Fifo, "", b""),
            ("ok.txt", T::Regular, "", b"fine"),
        ]),
        &["-q"],
    );
    assert_eq!((code, err.as_str()), (Some(1), ""));
}

/// A hostile archive of 3,000 refused entries with 8 KiB names of invalid UTF-8 (each escaped
/// to 32 KiB): the report lists the first 1,000 with names cut at 4096 bytes and counts the rest,
/// so neither memory nor the report grows with the entries.
#[test]
fn refusals_are_listed_up_to_a_thousand_with_long_names_cut() {
    let mut archive = Vec::new();
    for i in 0..3000 {
        let mut name = vec![0xffu8; 8000];
        name.extend_from_slice(format!("/../x{i}").as_bytes());
        name.push(0);
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
        h.set_entry_type(tar::EntryType::GNULongName);
        h.set_size(name.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_cksum();
        archive.extend_from_slice(h.as_bytes());
        archive.extend_from_slice(&name);
        archive.resize(archive.len().div_ceil(512) * 512, 0);
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..1].copy_from_slice(b"x");
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(0);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_cksum();
        archive.extend_from_slice(h.as_bytes());
    }
    archive.resize(archive.len() + 1024, 0);
    let work = tempfile::tempdir().unwrap();
    let (code, err) = attack(work.path(), &archive, &["--no-sync"]);
    assert_eq!(code, Some(2), "{}", &err[..err.len().min(2000)]);
    let lines: Vec<&str> = err.lines().collect();
    assert!(lines.len() <= 1010, "{} lines", lines.len());
    assert!(
        err.contains("(2000 more entries)"),
        "{}",
        lines[lines.len() - 3..].join("\n")
    );
    assert!(
        lines.last().unwrap().contains(": 3000 entries refused;"),
        "{}",
        lines.last().unwrap()
    );
    let longest = lines.iter().map(|l| l.len()).max().unwrap();
    assert!(longest < 4 * 4096 + 500, "a line of {longest} bytes");
    assert!(
        err.contains(" bytes in all)"),
        "{}",
        &lines[0][..lines[0].len().min(300)]
    );
}

/// A manifest line longer than any name an archive may hold (here 300 KB) is refused as it is
/// read, not buffered; so is the whole archive, by unpack and by verify.
#[test]
fn a_manifest_line_longer_than_any_name_is_refused() {
    use tar::EntryType as T;
    let mut manifest = "0".repeat(64).into_bytes();
    manifest.extend_from_slice(b"  ");
    manifest.extend(std::iter::repeat_n(b'x', 300_000));
    manifest.push(b'\n');
    let archive = hostile_tar(&[
        ("a.txt", T::Regular, "", b"a\n"),
        (".archiver/MANIFEST.b3", T::Regular, "", &manifest),
    ]);
    let work = tempfile::tempdir().unwrap();
    let (code, err) = attack(work.path(), &archive, &["--no-sync"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("line 1 is longer than"), "{err}");
    assert!(err.len() < 2000, "{err}");
    let (code, err) = verify_within(&work.path().join("evil.bin"));
    assert_eq!(code, Some(2), "{err}");
}

#[test]
fn refuses_foreign_hard_links() {
    use tar::EntryType as T;
    for (entries, rule) in [
        (
            vec![("h", T::Link, "/etc/passwd", &b""[..])],
            "hard link target: absolute path",
        ),
        (
            vec![
                ("h", T::Link, "later", &b""[..]),
                ("later", T::Regular, "", &b"x"[..]),
            ],
            "not an earlier entry of this archive",
        ),
    ] {
        let work = tempfile::tempdir().unwrap();
        let (code, err) = attack(work.path(), &hostile_tar(&entries), &[]);
        assert_eq!(code, Some(2), "{err}");
        assert!(err.contains(rule), "{err}");
    }
}

#[test]
fn strips_setuid_setgid_and_sticky_bits() {
    use std::os::unix::fs::PermissionsExt;
    use tar::EntryType as T;
    let work = tempfile::tempdir().unwrap();
    let (code, err) = attack(
        work.path(),
        &hostile_tar(&[("suid", T::Regular, "", b"#!/bin/sh\n")]),
        &[],
    );
    assert_eq!(code, Some(0), "{err}");
    let mode = std::fs::metadata(work.path().join("dest/suid"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o755);
}

#[test]
fn refuses_zip_backslash_names_and_encrypted_entries() {
    let corpus =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus/libarchive/archives");
    for (file, rule) in [
        ("test_read_format_zip_encryption_data.zip", "encrypted"),
        ("test_read_format_zip_winzip_aes128.zip", "encrypted"),
    ] {
        let work = tempfile::tempdir().unwrap();
        let (code, err) = attack(work.path(), &std::fs::read(corpus.join(file)).unwrap(), &[]);
        assert_eq!(code, Some(2), "{file}: {err}");
        assert!(err.contains(rule), "{file}: {err}");
    }
    // A zip made on Windows whose name uses backslashes to climb out.
    let mut z = zip_with_name(b"..\\..\\evil.txt", 0);
    let work = tempfile::tempdir().unwrap();
    let (code, err) = attack(work.path(), &z, &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("backslash"), "{err}");
    // The same archive with the local header's name changed: local and central disagree.
    let at = z.iter().position(|&b| b == b'.').unwrap();
    z[at] = b'x';
    let work = tempfile::tempdir().unwrap();
    let (code, err) = attack(work.path(), &z, &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("disagree"), "{err}");
}

/// A minimal stored zip with one entry of the given raw name, "made by" `host` (0 MS-DOS, 3 Unix).
fn zip_with_name(name: &[u8], host: u8) -> Vec<u8> {
    let data = b"evil";
    let crc = {
        let mut h = 0xffff_ffffu32;
        for &b in data {
            h ^= u32::from(b);
            for _ in 0..8 {
                h = if h & 1 != 0 {
                    (h >> 1) ^ 0xedb8_8320
                } else {
                    h >> 1
                };
            }
        }
        !h
    };
    let mut z = Vec::new();
    let local = |z: &mut Vec<u8>| {
        z.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        z.extend_from_slice(&[10, 0, 0, 0, 0, 0, 0, 0, 0x21, 0]);
        z.extend_from_slice(&crc.to_le_bytes());
        z.extend_from_slice(&(data.len() as u32).to_le_bytes());
        z.extend_from_slice(&(data.len() as u32).to_le_bytes());
        z.extend_from_slice(&(name.len() as u16).to_le_bytes());
        z.extend_from_slice(&0u16.to_le_bytes());
        z.extend_from_slice(name);
    };
    local(&mut z);
    z.extend_from_slice(data);
    let cd = z.len();
    z.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
    z.extend_from_slice(&[0x1e, host, 10, 0, 0, 0, 0, 0, 0, 0, 0x21, 0]);
    z.extend_from_slice(&crc.to_le_bytes());
    z.extend_from_slice(&(data.len() as u32).to_le_bytes());
    z.extend_from_slice(&(data.len() as u32).to_le_bytes());
    z.extend_from_slice(&(name.len() as u16).to_le_bytes());
    z.extend_from_slice(&[0; 8]);
    z.extend_from_slice(&(0o100644u32 << 16).to_le_bytes());
    z.extend_from_slice(&0u32.to_le_bytes());
    z.extend_from_slice(name);
    let cd_len = z.len() - cd;
    z.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    z.extend_from_slice(&[0, 0, 0, 0, 1, 0, 1, 0]);
    z.extend_from_slice(&(cd_len as u32).to_le_bytes());
    z.extend_from_slice(&(cd as u32).to_le_bytes());
    z.extend_from_slice(&0u16.to_le_bytes());
    z
}

/// A tampered file is caught by the manifest; a corrupted gzip trailer by its CRC. Either way no
/// file gets its final name.
#[test]
fn manifest_and_checksums_are_enforced() {
    let work = tempfile::tempdir().unwrap();
    let src_dir = tempfile::tempdir().unwrap();
    let src = src_dir.path().join("src");
    file(&src, "a.txt", b"original content\n", 0o644);
    file(&src, "b.txt", b"other\n", 0o644);
    let tar = ok(archiver()
        .args(["pack", "-f", "tar", "-o", "-"])
        .arg("-C")
        .arg(&src)
        .arg("."))
    .stdout;
    let mut tampered = tar.clone();
    let at = tampered.windows(8).position(|w| w == b"original").unwrap();
    tampered[at] = b'O';
    let (code, err) = attack(work.path(), &tampered, &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("a.txt: content does not match the manifest"),
        "{err}"
    );
    assert!(!work.path().join("dest/a.txt").exists() && !work.path().join("dest/b.txt").exists());
    let out = archiver()
        .args(["verify", "-"])
        .stdin_bytes(&tampered)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));

    let mut gz = ok(archiver()
        .args(["pack", "-f", "tar.gz", "-o", "-"])
        .arg("-C")
        .arg(&src)
        .arg("."))
    .stdout;
    let n = gz.len();
    gz[n - 6] ^= 0x55; // inside the CRC-32
    let work = tempfile::tempdir().unwrap();
    let (code, err) = attack(work.path(), &gz, &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(!work.path().join("dest/a.txt").exists());
}

/// The manifest check is whole whatever the options: a file the manifest lists that the archive
/// lacks, or a file the archive holds that the manifest does not list (both archives rewritten
/// by Python's tarfile and zipfile, each member intact), is refused by unpack with no option,
/// `-k`, `-j 1` and `--strip-components 0`, and by verify; nothing is extracted.
#[test]
fn a_file_missing_from_or_added_to_the_archive_is_refused_with_any_options() {
    let python = require("python3");
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    file(&src, "a.txt", b"a\n", 0o644);
    file(&src, "b.txt", b"b\n", 0o644);
    let script = r#"
import io, sys, tarfile, zipfile
src, kind, out = sys.argv[1], sys.argv[2], sys.argv[3]
if src.endswith(".tar"):
    with tarfile.open(src) as t, tarfile.open(out, "w", format=tarfile.GNU_FORMAT) as o:
        for m in t.getmembers():
            if kind == "missing" and m.name == "b.txt":
                continue
            if kind == "unlisted" and m.name == ".archiver/MANIFEST.b3":
                extra = tarfile.TarInfo("c.txt"); extra.size = 2
                o.addfile(extra, io.BytesIO(b"c\n"))
            o.addfile(m, t.extractfile(m) if m.isfile() else None)
else:
    with zipfile.ZipFile(src) as z, zipfile.ZipFile(out, "w") as o:
        for i in z.infolist():
            if kind == "missing" and i.filename == "b.txt":
                continue
            if kind == "unlisted" and i.filename == ".archiver/MANIFEST.b3":
                o.writestr("c.txt", b"c\n")
            o.writestr(i, z.read(i))
"#;
    for format in ["tar", "zip"] {
        let ours = work.path().join(format!("ours.{format}"));
        ok(pack_dir(&src).arg("-o").arg(&ours));
        for (kind, says) in [
            (
                "missing",
                "b.txt: listed in the manifest but missing from the archive",
            ),
            ("unlisted", "c.txt: not listed in the manifest"),
        ] {
            let bad = work.path().join(format!("{kind}.{format}"));
            clean(
                Command::new(&python)
                    .arg("-c")
                    .arg(script)
                    .arg(&ours)
                    .arg(kind)
                    .arg(&bad),
            );
            let archive = std::fs::read(&bad).unwrap();
            for extra in [&[][..], &["-k"], &["-j", "1"], &["--strip-components", "0"]] {
                let run = tempfile::tempdir().unwrap();
                let (code, err) = attack(run.path(), &archive, extra);
                assert_eq!(code, Some(2), "{format} {kind} {extra:?}: {err}");
                assert!(err.contains(says), "{format} {kind} {extra:?}: {err}");
                let dest = run.path().join("dest");
                assert_eq!(std::fs::read_dir(&dest).unwrap().count(), 0, "{err}");
            }
            let (code, err) = verify_within(&bad);
            assert_eq!(code, Some(2), "{format} {kind} verify: {err}");
            assert!(err.contains(says), "{format} {kind} verify: {err}");
        }
    }
}

/// `-k` never modifies an existing file; the default replaces it atomically.
#[test]
fn keep_existing_and_replace() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    file(&src, "a.txt", b"from the archive", 0o644);
    let archive = work.path().join("a.tar");
    ok(archiver()
        .arg("pack")
        .arg("-C")
        .arg(&src)
        .arg(".")
        .arg("-o")
        .arg(&archive));
    let dest = work.path().join("dest");
    file(&dest, "a.txt", b"precious local edit", 0o600);
    clean(
        archiver()
            .args(["unpack", "-k"])
            .arg(&archive)
            .arg("-C")
            .arg(&dest),
    );
    assert_eq!(
        std::fs::read(dest.join("a.txt")).unwrap(),
        b"precious local edit"
    );
    clean(archiver().arg("unpack").arg(&archive).arg("-C").arg(&dest));
    assert_eq!(
        std::fs::read(dest.join("a.txt")).unwrap(),
        b"from the archive"
    );
    let leftovers: Vec<_> = std::fs::read_dir(&dest)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("archiver-tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// Every archive of the shared corpus: unpack and verify end with 0 or 2 (never a panic or a hang),
/// nothing is written outside the destination, and the well-formed ones succeed.
#[test]
fn corpus_unpacks_and_verifies_without_crashing() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus/libarchive");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("manifest.json")).unwrap()).unwrap();
    for a in manifest["archives"].as_array().unwrap() {
        let file = a["file"].as_str().unwrap();
        let work = tempfile::tempdir().unwrap();
        let (code, err) = attack(
            work.path(),
            &std::fs::read(root.join(file)).unwrap(),
            &["--no-sync"],
        );
        assert!(
            matches!(code, Some(0) | Some(2)),
            "{file}: exit {code:?}: {err}"
        );
        assert!(
            !err.contains("panicked") && !err.contains("internal error"),
            "{file}: {err}"
        );
        let out = archiver()
            .arg("verify")
            .arg(root.join(file))
            .output()
            .unwrap();
        assert!(
            matches!(out.status.code(), Some(0) | Some(2)),
            "{file}: verify exit {:?}",
            out.status.code()
        );
        // Encrypted archives are always refused; a malformed one must fail where the reference
        // reader (bsdtar) fails too. (One "malformed" zip only uses 0xFFFF placeholders in its
        // classic end record, which APPNOTE allows with ZIP64; bsdtar and unzip read it, and so do we.)
        let reference_failed = a["bsdtar_exit"] != 0;
        if a["kind"] == "encrypted" || (a["kind"] == "malformed" && reference_failed) {
            assert_eq!(
                code,
                Some(2),
                "{file} ({}) must be refused: {err}",
                a["kind"]
            );
        }
    }
}

/// `verify --against DIR` reports every difference (content, mode, symlinks) and exits 1; an
/// unchanged tree gives 0 and no output.
#[test]
fn verify_against_a_directory() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    file(&src, "a.txt", b"alpha", 0o644);
    file(&src, "dir/b.txt", b"beta", 0o640);
    std::os::unix::fs::symlink("a.txt", src.join("ln")).unwrap();
    let archive = work.path().join("a.tar.gz");
    ok(archiver()
        .arg("pack")
        .arg("-C")
        .arg(&src)
        .arg(".")
        .arg("-o")
        .arg(&archive));
    let same = clean(
        archiver()
            .arg("verify")
            .arg(&archive)
            .arg("--against")
            .arg(&src),
    );
    assert!(
        same.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&same.stdout)
    );

    std::fs::write(src.join("a.txt"), b"ALPHA").unwrap();
    set_mode(&src.join("dir/b.txt"), 0o600);
    std::fs::remove_file(src.join("ln")).unwrap();
    std::os::unix::fs::symlink("dir/b.txt", src.join("ln")).unwrap();
    let out = archiver()
        .arg("verify")
        .arg(&archive)
        .arg("--against")
        .arg(&src)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let report = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = report.lines().collect();
    assert_eq!(lines.len(), 3, "{report}");
    assert!(lines[0].ends_with("a.txt: contents differ"), "{report}");
    assert!(
        lines[1].ends_with("dir/b.txt: mode differs: archive 640, disk 600"),
        "{report}"
    );
    assert!(
        lines[2].ends_with("ln: symlink target differs: archive a.txt, disk dir/b.txt"),
        "{report}"
    );

    // A DIR that is not there is a mistake in the command (exit 2, naming it), not a tree that
    // lacks every file (exit 1 and a line per entry).
    let gone = work.path().join("no-such-dir");
    let out = archiver()
        .arg("verify")
        .arg(&archive)
        .arg("--against")
        .arg(&gone)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}: ", gone.display())), "{err}");
}

/// The corpus archives marked `ok` extract to the same tree bsdtar extracts (content, modes less
/// the bits we strip, mtimes, symlinks): sparse files, long names, old hard links, zip variants.
#[test]
fn corpus_ok_archives_extract_like_bsdtar() {
    let bsdtar = require("bsdtar");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus/libarchive");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("manifest.json")).unwrap()).unwrap();
    let mut compared = 0;
    for a in manifest["archives"].as_array().unwrap() {
        if a["kind"] != "ok" || a["bsdtar_exit"] != 0 {
            continue;
        }
        let file = root.join(a["file"].as_str().unwrap());
        let work = tempfile::tempdir().unwrap();
        let theirs = work.path().join("bsd");
        std::fs::create_dir(&theirs).unwrap();
        let bsd = Command::new(&bsdtar)
            .arg("-xpf")
            .arg(&file)
            .arg("-C")
            .arg(&theirs)
            .output()
            .unwrap();
        if !bsd.status.success() {
            continue; // e.g. a name bsdtar cannot convert on this system
        }
        let ours = work.path().join("ours");
        let out = unpack(&file, &ours, &["--no-sync"]);
        let err = String::from_utf8_lossy(&out.stderr);
        // A tar cut before its end-of-archive marker: bsdtar extracts what is there, we refuse it
        // as truncated (docs/FORMAT.md).
        if file.extension().is_some_and(|e| e != "zip") && tar_lacks_end_marker(&file) {
            assert!(
                out.status.code() == Some(2) && err.contains("truncated"),
                "{}: {err}",
                a["file"]
            );
            continue;
        }
        // bsdtar creates symlinks that point outside; our policy refuses them (docs/SECURITY.md).
        if !out.status.success()
            && (err.contains("symlink target leaves the destination")
                || err.contains("symlink to an absolute path"))
        {
            continue;
        }
        assert!(out.status.success(), "{}: {err}", a["file"]);
        // Zip entries made on DOS/Windows carry no mode; bsdtar defaults to 0664/0775, we (like
        // unzip with the usual umask) to 0644/0755. Group write is therefore not compared for zip.
        let mask = if file.extension().is_some_and(|e| e == "zip") {
            0o755
        } else {
            0o777
        };
        let strip = |mut s: Snapshot| {
            for n in s.nodes.values_mut() {
                match n {
                    Node::File { mode, .. } | Node::Dir { mode } => *mode &= mask,
                    Node::Symlink { .. } => {}
                }
            }
            s
        };
        let mut expected = strip(snapshot(&theirs));
        if a["file"] == "archives/test_read_format_zip_7075_utf8_paths.zip" {
            // Its fourth entry's central Unicode Path field checks out against the central name:
            // we, like Info-ZIP unzip, name it by the central directory (`å`); libarchive takes
            // the local header's raw name (docs/SECURITY.md: the central directory names entries).
            let node = expected.nodes.remove(Path::new("File 4 - xx.txt")).unwrap();
            expected
                .nodes
                .insert(PathBuf::from("File 4 - \u{e5}.txt"), node);
        }
        assert_same_tree(&expected, &strip(snapshot(&ours)));
        compared += 1;
    }
    assert!(compared >= 20, "only {compared} archives compared");
}

/// A path stored twice: the later entry wins, as with tar.
#[test]
fn a_path_stored_twice_ends_as_the_later_entry() {
    use tar::EntryType as T;
    let work = tempfile::tempdir().unwrap();
    let (code, err) = attack(
        work.path(),
        &hostile_tar(&[
            ("d/a.txt", T::Regular, "", b"first"),
            ("d/a.txt", T::Regular, "", b"second"),
        ]),
        &[],
    );
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        std::fs::read(work.path().join("dest/d/a.txt")).unwrap(),
        b"second"
    );
}

/// Nothing of ours is left in DEST after a run: no staging directory, no temporary file.
fn assert_no_debris(dest: &Path) {
    let debris: Vec<_> = std::fs::read_dir(dest)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".archiver-") || n.contains("archiver-tmp"))
        .collect();
    assert!(debris.is_empty(), "left in {}: {debris:?}", dest.display());
}

fn unpack_within(archive: &Path, dest: &Path, extra: &[&str]) -> (Option<i32>, String) {
    let out = output_within(
        archiver()
            .arg("unpack")
            .args(extra)
            .arg(archive)
            .arg("-C")
            .arg(dest),
        60,
    );
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `archiver verify ARCHIVE` under a deadline: (exit code, stderr).
fn verify_within(archive: &Path) -> (Option<i32>, String) {
    let out = output_within(archiver().arg("verify").arg(archive), 60);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Any name the filesystem accepts extracts: 240-byte names, in ASCII and in multibyte scripts
/// (the old temporary name `.NAME.XXXXXX.archiver-tmp` overflowed NAME_MAX).
#[test]
fn names_up_to_the_filesystem_limit_extract() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    let names = [
        "a".repeat(240),
        "é".repeat(120),
        "日".repeat(80),
        format!("d/{}", "x".repeat(255)),
    ];
    for n in &names {
        file(&src, n, n.as_bytes(), 0o644);
    }
    std::os::unix::fs::symlink("d", src.join("l".repeat(250))).unwrap();
    for format in ["tar", "tar.zst", "zip"] {
        let archive = work.path().join(format!("long.{format}"));
        ok(pack_dir(&src).args(["-f", format, "-o"]).arg(&archive));
        let dest = work.path().join(format!("x-{format}"));
        let (code, err) = unpack_within(&archive, &dest, &["--no-sync"]);
        assert_eq!(code, Some(0), "{format}: {err}");
        assert_same_tree(&snapshot(&src), &snapshot_extracted(&dest));
        // Replacing them (an existing file at each name) works too.
        let (code, err) = unpack_within(&archive, &dest, &["--no-sync"]);
        assert_eq!(code, Some(0), "{format}, again: {err}");
        assert_no_debris(&dest);
    }
}

/// A refusal found late (a symlink that leads out only through other links, or through a link
/// already in DEST) changes nothing in DEST: existing files keep their content, nothing new
/// appears. The old code had already replaced files, and lost a user's file under a removed link.
#[test]
fn a_late_refusal_changes_nothing() {
    use tar::EntryType as T;
    let outside = tempfile::tempdir().unwrap();
    // Each link stays inside on its own; `e` leads out through `d/up`.
    let chain = hostile_tar(&[
        ("a.txt", T::Regular, "", b"new content"),
        ("d", T::Directory, "", b""),
        ("d/up", T::Symlink, "..", b""),
        ("e", T::Symlink, "d/up/..", b""),
        ("new.txt", T::Regular, "", b"new"),
    ]);
    let work = tempfile::tempdir().unwrap();
    file(&work.path().join("dest"), "a.txt", b"precious", 0o644);
    let (code, err) = attack(work.path(), &chain, &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("archiver: e: symlink resolves outside the destination"),
        "{err}"
    );
    let dest = work.path().join("dest");
    assert_eq!(std::fs::read(dest.join("a.txt")).unwrap(), b"precious");
    for p in ["d", "e", "new.txt"] {
        assert!(
            std::fs::symlink_metadata(dest.join(p)).is_err(),
            "{p} exists"
        );
    }
    assert_no_debris(&dest);

    // A user's own link in DEST that points outside: an archive link through it is refused, and
    // the user's file the archive wanted to replace with that link is untouched.
    let work = tempfile::tempdir().unwrap();
    let dest = work.path().join("dest");
    file(&dest, "mine", b"user data", 0o644);
    std::os::unix::fs::symlink(outside.path(), dest.join("ext")).unwrap();
    let (code, err) = attack(
        work.path(),
        &hostile_tar(&[
            ("b.txt", T::Regular, "", b"b"),
            ("mine", T::Symlink, "ext/x", b""),
        ]),
        &[],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("archiver: mine: symlink resolves outside"),
        "{err}"
    );
    assert_eq!(std::fs::read(dest.join("mine")).unwrap(), b"user data");
    assert!(!dest.join("b.txt").exists());
    assert_no_debris(&dest);
}

/// A directory in the way of a file, a file in the way of a directory: refused before anything
/// is touched, naming the entry and what to do.
#[test]
fn type_conflicts_are_refused_before_anything_changes() {
    use tar::EntryType as T;
    for (entries, setup, rule) in [
        (
            vec![
                ("a.txt", T::Regular, "", &b"new"[..]),
                ("x", T::Regular, "", &b"file"[..]),
            ],
            "dir",
            "x: a directory is in the way",
        ),
        (
            vec![
                ("a.txt", T::Regular, "", &b"new"[..]),
                ("y/z", T::Regular, "", &b"z"[..]),
            ],
            "file",
            "y exists in the destination and is not a directory",
        ),
    ] {
        let work = tempfile::tempdir().unwrap();
        let dest = work.path().join("dest");
        file(&dest, "a.txt", b"precious", 0o644);
        match setup {
            "dir" => file(&dest, "x/keep", b"k", 0o644),
            _ => file(&dest, "y", b"a file", 0o644),
        }
        let (code, err) = attack(work.path(), &hostile_tar(&entries), &[]);
        assert_eq!(code, Some(2), "{err}");
        assert!(err.contains(rule), "{err}");
        assert!(err.contains("nothing was changed"), "{err}");
        assert_eq!(std::fs::read(dest.join("a.txt")).unwrap(), b"precious");
        assert_no_debris(&dest);
    }
}

/// A failure while moving entries into place (here ENOSPC, injected at the third move in debug
/// builds) puts everything back: replaced files return with their content, new files and the
/// directories this run created disappear, and the message says so.
#[test]
fn a_failed_commit_restores_the_originals() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    for i in 0..6 {
        file(
            &src,
            &format!("f{i}.txt"),
            format!("new {i}").as_bytes(),
            0o644,
        );
    }
    file(&src, "sub/deeper/n.txt", b"new file", 0o644);
    std::os::unix::fs::symlink("f0.txt", src.join("link")).unwrap();
    let archive = work.path().join("a.tar");
    ok(pack_dir(&src).arg("-o").arg(&archive));
    let dest = work.path().join("dest");
    for i in 0..6 {
        file(
            &dest,
            &format!("f{i}.txt"),
            format!("old {i}").as_bytes(),
            0o600,
        );
    }
    file(
        &dest,
        "link",
        b"a user's file where the archive has a link",
        0o644,
    );
    let before = snapshot(&dest);
    for at in ["1", "3", "8"] {
        let out = output_within(
            archiver()
                .env("ARCHIVER_TEST_FAIL_COMMIT_AT", at)
                .args(["unpack", "-j", "1", "--no-sync"])
                .arg(&archive)
                .arg("-C")
                .arg(&dest),
            60,
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains("No space left on device") && err.contains("nothing was changed"),
            "{err}"
        );
        assert!(!err.contains(".archiver-"), "temporary names shown: {err}");
        assert_same_tree(&before, &snapshot(&dest));
        assert_no_debris(&dest);
    }
    // Without the fault the same unpack succeeds.
    let (code, err) = unpack_within(&archive, &dest, &["--no-sync"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(std::fs::read(dest.join("f3.txt")).unwrap(), b"new 3");
}

/// The same path twice: the later entry wins whatever the two types are, as GNU tar and bsdtar
/// do (the old code kept the symlink when a file followed it).
#[test]
fn the_later_entry_wins_whatever_the_types() {
    use tar::EntryType as T;
    type Case<'a> = (Vec<(&'a str, T, &'a str, &'a [u8])>, &'a str, &'a str);
    let cases: Vec<Case<'_>> = vec![
        (
            vec![("p", T::Symlink, "t", b""), ("p", T::Regular, "", b"file")],
            "p",
            "file",
        ),
        (
            vec![("p", T::Regular, "", b"file"), ("p", T::Symlink, "t", b"")],
            "p",
            "symlink",
        ),
        (
            vec![("p", T::Regular, "", b"file"), ("p", T::Directory, "", b"")],
            "p",
            "dir",
        ),
        (
            vec![("p", T::Directory, "", b""), ("p", T::Regular, "", b"file")],
            "p",
            "file",
        ),
        (
            vec![
                ("f", T::Regular, "", b"data"),
                ("p", T::Link, "f", b""),
                ("p", T::Symlink, "f", b""),
            ],
            "p",
            "symlink",
        ),
        (
            vec![("p", T::Symlink, "t", b""), ("p", T::Directory, "", b"")],
            "p",
            "dir",
        ),
    ];
    for (entries, path, want) in cases {
        let work = tempfile::tempdir().unwrap();
        let (code, err) = attack(work.path(), &hostile_tar(&entries), &[]);
        assert_eq!(code, Some(0), "{entries:?}: {err}");
        let md = std::fs::symlink_metadata(work.path().join("dest").join(path)).unwrap();
        let got = if md.file_type().is_symlink() {
            "symlink"
        } else if md.is_dir() {
            "dir"
        } else {
            "file"
        };
        assert_eq!(got, want, "{entries:?}");
        if want == "file" {
            assert_eq!(
                std::fs::read(work.path().join("dest").join(path)).unwrap(),
                b"file"
            );
            assert!(!work.path().join("dest/p/child").exists());
        }
    }
}

/// A hard link to an archive symlink is that symlink again, made at the link's own place, so its
/// target is checked from there: `h -> d/s` where `d/s -> ../x` would lead out from the top.
#[test]
fn a_hard_link_to_a_symlink_is_checked_like_the_symlink() {
    use tar::EntryType as T;
    let work = tempfile::tempdir().unwrap();
    let (code, err) = attack(
        work.path(),
        &hostile_tar(&[("d/s", T::Symlink, "../x", b""), ("h", T::Link, "d/s", b"")]),
        &[],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("archiver: h: hard link to the symlink d/s"),
        "{err}"
    );
    assert!(std::fs::symlink_metadata(work.path().join("dest/h")).is_err());
    // Same place, same meaning: allowed, and it is a symlink with the same target.
    let work = tempfile::tempdir().unwrap();
    let (code, err) = attack(
        work.path(),
        &hostile_tar(&[
            ("d/s", T::Symlink, "../x", b""),
            ("d/h", T::Link, "d/s", b""),
        ]),
        &[],
    );
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        std::fs::read_link(work.path().join("dest/d/h")).unwrap(),
        Path::new("../x")
    );
}

/// `-k` reads and checks every file against the manifest even when DEST already holds
/// `.archiver/MANIFEST.b3` (the old code then skipped the check and gave a corrupted file its
/// final name with exit 0).
/// With `-k`, a hard link whose source was not staged may only name a file of this archive that
/// `-k` kept, reached without following a link: not a file DEST holds that the archive never
/// named, and never a file behind a symlink in DEST (which would link a file outside DEST).
#[test]
fn keep_existing_hard_links_reach_only_kept_files_inside_dest() {
    use std::os::unix::fs::MetadataExt;
    use tar::EntryType as T;
    let work = tempfile::tempdir().unwrap();
    let outside = work.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("secret"), b"outside\n").unwrap();
    let secret_ino = std::fs::metadata(outside.join("secret")).unwrap().ino();
    for (entries, rule) in [
        // Through a symlink DEST holds: the archive names it as an earlier entry, which -k
        // "keeps" only if the lookup follows `ext`.
        (
            vec![
                ("ext/secret", T::Regular, "", &b"x"[..]),
                ("h", T::Link, "ext/secret", &b""[..]),
            ],
            "",
        ),
        // A link straight to the file behind the symlink, never an entry.
        (
            vec![("h", T::Link, "ext/secret", &b""[..])],
            "not an earlier entry of this archive",
        ),
        // A file DEST holds that the archive never named.
        (
            vec![("h", T::Link, "own", &b""[..])],
            "not an earlier entry of this archive",
        ),
    ] {
        let run = tempfile::tempdir().unwrap();
        let file = run.path().join("evil.tar");
        std::fs::write(&file, hostile_tar(&entries)).unwrap();
        let dest = run.path().join("dest");
        std::fs::create_dir(&dest).unwrap();
        std::os::unix::fs::symlink(&outside, dest.join("ext")).unwrap();
        std::fs::write(dest.join("own"), b"mine\n").unwrap();
        let (code, err) = unpack_within(&file, &dest, &["--no-sync", "-k"]);
        assert_eq!(code, Some(2), "{entries:?}: {err}");
        assert!(err.contains(rule), "{entries:?}: {err}");
        if let Ok(md) = std::fs::symlink_metadata(dest.join("h")) {
            panic!(
                "h was created (inode {}, secret {secret_ino}): {err}",
                md.ino()
            );
        }
        assert_eq!(std::fs::read(outside.join("secret")).unwrap(), b"outside\n");
        assert_eq!(
            std::fs::metadata(outside.join("secret")).unwrap().nlink(),
            1
        );
        assert_no_debris(&dest);
    }
    // What -k is for: the archive's file is kept, and its hard link shares DEST's file.
    let run = tempfile::tempdir().unwrap();
    let file = run.path().join("ok.tar");
    let entries = [
        ("a", T::Regular, "", &b"archive\n"[..]),
        ("b", T::Link, "a", &b""[..]),
    ];
    std::fs::write(&file, hostile_tar(&entries)).unwrap();
    let dest = run.path().join("dest");
    std::fs::create_dir(&dest).unwrap();
    std::fs::write(dest.join("a"), b"mine\n").unwrap();
    let (code, err) = unpack_within(&file, &dest, &["--no-sync", "-k"]);
    assert_eq!(code, Some(0), "{err}");
    let (a, b) = (
        std::fs::metadata(dest.join("a")).unwrap(),
        std::fs::metadata(dest.join("b")).unwrap(),
    );
    assert_eq!(
        (a.ino(), std::fs::read(dest.join("b")).unwrap()),
        (b.ino(), b"mine\n".to_vec())
    );
}

#[test]
fn keep_existing_still_checks_every_file() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    file(&src, "a.txt", b"original content\n", 0o644);
    file(&src, "b.txt", b"other\n", 0o644);
    let tar = ok(pack_dir(&src).args(["-f", "tar", "-o", "-"])).stdout;
    let dest = work.path().join("dest");
    let good = work.path().join("good.tar");
    std::fs::write(&good, &tar).unwrap();
    let (code, err) = unpack_within(&good, &dest, &["--no-sync"]);
    assert_eq!(code, Some(0), "{err}");
    std::fs::remove_file(dest.join("a.txt")).unwrap();
    let mut tampered = tar.clone();
    let at = tampered.windows(8).position(|w| w == b"original").unwrap();
    tampered[at] = b'O';
    let bad = work.path().join("bad.tar");
    std::fs::write(&bad, &tampered).unwrap();
    for extra in [
        &["-k"][..],
        &["-k", "-j", "1"],
        &["-k", "--strip-components", "0"],
    ] {
        let mut args = vec!["--no-sync"];
        args.extend_from_slice(extra);
        let (code, err) = unpack_within(&bad, &dest, &args);
        assert_eq!(code, Some(2), "{extra:?}: {err}");
        assert!(
            err.contains("a.txt: content does not match the manifest"),
            "{err}"
        );
        assert!(
            !dest.join("a.txt").exists(),
            "{extra:?}: corrupted file placed"
        );
    }
    // A file -k keeps is still hashed from the archive: a tampered kept file is caught too.
    file(&dest, "a.txt", b"local", 0o644);
    let (code, err) = unpack_within(&bad, &dest, &["--no-sync", "-k"]);
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(std::fs::read(dest.join("a.txt")).unwrap(), b"local");
}

/// `--require-manifest` refuses an archive without one (unpack and verify, exit 2, nothing
/// extracted); without the option such an archive is said to be unverified, in one line.
#[test]
fn require_manifest_and_the_unverified_note() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    file(&src, "a.txt", b"alpha", 0o644);
    for format in ["tar.gz", "zip"] {
        let bare = work.path().join(format!("bare.{format}"));
        ok(pack_dir(&src).args(["--no-manifest", "-o"]).arg(&bare));
        let signed = work.path().join(format!("signed.{format}"));
        ok(pack_dir(&src).arg("-o").arg(&signed));

        let dest = work.path().join(format!("d-{format}"));
        let (code, err) = unpack_within(&bare, &dest, &["--require-manifest"]);
        assert_eq!(code, Some(2), "{err}");
        assert!(err.contains("carries no manifest"), "{err}");
        assert!(!dest.join("a.txt").exists());
        let out = output_within(
            archiver().args(["verify", "--require-manifest"]).arg(&bare),
            60,
        );
        assert_eq!(out.status.code(), Some(2));

        let (code, err) = unpack_within(&bare, &dest, &[]);
        assert_eq!(code, Some(0), "{err}");
        let notes: Vec<&str> = err.lines().filter(|l| l.contains("unverified")).collect();
        assert_eq!(notes.len(), 1, "{err}");
        let (code, err) = unpack_within(&signed, &dest, &["--require-manifest"]);
        assert_eq!(code, Some(0), "{err}");
        assert!(err.is_empty(), "{err}");
        let out = output_within(
            archiver()
                .args(["verify", "--require-manifest"])
                .arg(&signed),
            60,
        );
        assert_eq!(out.status.code(), Some(0));
    }
}

/// An empty input is an error for unpack, list and verify, from a file (any name) or a pipe, so
/// `archiver pack nosuch | archiver unpack` fails at the unpacking end too.
#[test]
fn empty_input_is_an_error() {
    let work = tempfile::tempdir().unwrap();
    for name in ["empty.tar", "empty.zip"] {
        let empty = work.path().join(name);
        std::fs::write(&empty, b"").unwrap();
        for cmd in [&["unpack", "-C", "d"][..], &["list"], &["verify"]] {
            let out = output_within(
                archiver().args(cmd).arg(&empty).current_dir(work.path()),
                30,
            );
            assert_eq!(out.status.code(), Some(2), "{cmd:?} {name}");
            assert!(
                String::from_utf8_lossy(&out.stderr).contains("empty"),
                "{cmd:?}"
            );
            let out = output_within(
                archiver()
                    .args(cmd)
                    .arg("-")
                    .stdin_bytes(b"")
                    .current_dir(work.path()),
                30,
            );
            assert_eq!(out.status.code(), Some(2), "{cmd:?} from stdin");
        }
    }
    let out = output_within(
        Command::new("sh")
            .arg("-c")
            .arg(format!(
                "{} pack nosuch | {} unpack -C d; echo \"unpack exit $?\"",
                bin().display(),
                bin().display()
            ))
            .current_dir(work.path()),
        30,
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "unpack exit 2",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A stored zip entry with a data descriptor: `local_crc` in the local header, `dd_crc` in the
/// descriptor; the data and the central directory are right.
fn zip_with_descriptor(local_crc: u32, dd_crc: u32, dd_size: u32) -> Vec<u8> {
    let name = b"entry.txt";
    let data = b"descriptor data";
    let crc = crc32(data);
    let mut z = Vec::new();
    z.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
    z.extend_from_slice(&[10, 0, 8, 0, 0, 0, 0, 0, 0x21, 0]);
    z.extend_from_slice(&local_crc.to_le_bytes());
    z.extend_from_slice(&[0; 8]);
    z.extend_from_slice(&(name.len() as u16).to_le_bytes());
    z.extend_from_slice(&0u16.to_le_bytes());
    z.extend_from_slice(name);
    z.extend_from_slice(data);
    z.extend_from_slice(&0x0807_4b50u32.to_le_bytes());
    z.extend_from_slice(&dd_crc.to_le_bytes());
    z.extend_from_slice(&dd_size.to_le_bytes());
    z.extend_from_slice(&dd_size.to_le_bytes());
    let cd = z.len();
    z.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
    z.extend_from_slice(&[0x1e, 3, 10, 0, 8, 0, 0, 0, 0, 0, 0x21, 0]);
    z.extend_from_slice(&crc.to_le_bytes());
    z.extend_from_slice(&(data.len() as u32).to_le_bytes());
    z.extend_from_slice(&(data.len() as u32).to_le_bytes());
    z.extend_from_slice(&(name.len() as u16).to_le_bytes());
    z.extend_from_slice(&[0; 8]);
    z.extend_from_slice(&(0o100644u32 << 16).to_le_bytes());
    z.extend_from_slice(&0u32.to_le_bytes());
    z.extend_from_slice(name);
    let cd_len = z.len() - cd;
    z.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    z.extend_from_slice(&[0, 0, 0, 0, 1, 0, 1, 0]);
    z.extend_from_slice(&(cd_len as u32).to_le_bytes());
    z.extend_from_slice(&(cd as u32).to_le_bytes());
    z.extend_from_slice(&0u16.to_le_bytes());
    z
}

fn crc32(data: &[u8]) -> u32 {
    let mut h = 0xffff_ffffu32;
    for &b in data {
        h ^= u32::from(b);
        for _ in 0..8 {
            h = if h & 1 != 0 {
                (h >> 1) ^ 0xedb8_8320
            } else {
                h >> 1
            };
        }
    }
    !h
}

/// Local header, data descriptor and central directory must agree on CRC and sizes; any
/// disagreement refuses the archive, naming the entry (the old code never read the descriptor).
#[test]
fn zip_headers_and_descriptor_must_agree() {
    let crc = crc32(b"descriptor data");
    let len = b"descriptor data".len() as u32;
    let work = tempfile::tempdir().unwrap();
    let (code, err) = attack(work.path(), &zip_with_descriptor(0, crc, len), &[]);
    assert_eq!(code, Some(0), "{err}");
    for (z, what) in [
        (zip_with_descriptor(0, crc ^ 1, len), "data descriptor"),
        (zip_with_descriptor(0, crc, len + 1), "data descriptor"),
        (zip_with_descriptor(crc ^ 1, crc, len), "local header"),
    ] {
        let work = tempfile::tempdir().unwrap();
        let (code, err) = attack(work.path(), &z, &[]);
        assert_eq!(code, Some(2), "{what}: {err}");
        assert!(
            err.contains("entry.txt") && err.contains(what) && err.contains("refusing"),
            "{err}"
        );
        assert!(!work.path().join("dest/entry.txt").exists());
        let out = output_within(archiver().arg("list").arg(work.path().join("evil.bin")), 30);
        assert_eq!(out.status.code(), Some(2), "list must refuse it too");
    }
}

/// A zip made on Unix may hold a backslash inside a file name: it is a file name byte there
/// (our own archives round-trip), never a way to climb out.
#[test]
fn unix_zip_backslashes_are_name_bytes() {
    let work = tempfile::tempdir().unwrap();
    let (code, err) = attack(work.path(), &zip_with_name(b"..\\..\\evil.txt", 3), &[]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        std::fs::read(work.path().join("dest/..\\..\\evil.txt")).unwrap(),
        b"evil"
    );
}

/// A stored zip entry: local header, name, data.
fn zip_local(name: &[u8], data: &[u8]) -> Vec<u8> {
    let mut z = Vec::new();
    z.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
    z.extend_from_slice(&[10, 0, 0, 0, 0, 0, 0, 0, 0x21, 0]);
    z.extend_from_slice(&crc32(data).to_le_bytes());
    z.extend_from_slice(&(data.len() as u32).to_le_bytes());
    z.extend_from_slice(&(data.len() as u32).to_le_bytes());
    z.extend_from_slice(&(name.len() as u16).to_le_bytes());
    z.extend_from_slice(&0u16.to_le_bytes());
    z.extend_from_slice(name);
    z.extend_from_slice(data);
    z
}

/// A central directory of stored entries (name, data, local header offset) and its end record.
fn zip_central(entries: &[(&[u8], &[u8], u32)], at: usize) -> Vec<u8> {
    let mut z = Vec::new();
    for (name, data, offset) in entries {
        z.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        z.extend_from_slice(&[0x1e, 3, 10, 0, 0, 0, 0, 0, 0, 0, 0x21, 0]);
        z.extend_from_slice(&crc32(data).to_le_bytes());
        z.extend_from_slice(&(data.len() as u32).to_le_bytes());
        z.extend_from_slice(&(data.len() as u32).to_le_bytes());
        z.extend_from_slice(&(name.len() as u16).to_le_bytes());
        z.extend_from_slice(&[0; 8]);
        z.extend_from_slice(&(0o100644u32 << 16).to_le_bytes());
        z.extend_from_slice(&offset.to_le_bytes());
        z.extend_from_slice(name);
    }
    let n = entries.len() as u16;
    let cd_len = z.len() as u32;
    z.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    z.extend_from_slice(&[0, 0, 0, 0]);
    z.extend_from_slice(&n.to_le_bytes());
    z.extend_from_slice(&n.to_le_bytes());
    z.extend_from_slice(&cd_len.to_le_bytes());
    z.extend_from_slice(&(at as u32).to_le_bytes());
    z.extend_from_slice(&0u16.to_le_bytes());
    z
}

/// An Info-ZIP Unicode Path field (0x7075) naming `name`, for a header whose raw name is `raw`.
fn unicode_path_field(name: &[u8], raw: &[u8]) -> Vec<u8> {
    let mut f = 0x7075u16.to_le_bytes().to_vec();
    f.extend_from_slice(&((5 + name.len()) as u16).to_le_bytes());
    f.push(1);
    f.extend_from_slice(&crc32(raw).to_le_bytes());
    f.extend_from_slice(name);
    f
}

/// One stored entry whose local and central headers each carry their own raw name and extra
/// field: the shapes a renaming attack needs.
fn zip_two_names(local: (&[u8], &[u8]), central: (&[u8], &[u8]), data: &[u8]) -> Vec<u8> {
    let mut z = zip_local(local.0, data);
    // zip_local writes no extra field: patch its length in and insert it after the name.
    z[28..30].copy_from_slice(&(local.1.len() as u16).to_le_bytes());
    let at = 30 + local.0.len();
    z.splice(at..at, local.1.iter().copied());
    let mut cd = zip_central(&[(central.0, data, 0)], z.len());
    cd[30..32].copy_from_slice(&(central.1.len() as u16).to_le_bytes());
    let at = 46 + central.0.len();
    cd.splice(at..at, central.1.iter().copied());
    let end = cd.len() - 22;
    let cd_len = end as u32;
    cd[end + 12..end + 16].copy_from_slice(&cd_len.to_le_bytes());
    z.extend(cd);
    z
}

/// The central directory names an entry, as unzip, 7-Zip and Python's zipfile read it: a Unicode
/// Path field in the local header alone cannot rename the file written (`.profile` for a
/// `good.txt` every lister shows), and a local raw name that is not the central header's is
/// refused even when the central name came from its own Unicode Path field.
#[test]
fn the_local_header_cannot_rename_a_zip_entry() {
    let data = b"payload";
    let local_rename = zip_two_names(
        (b"good.txt", &unicode_path_field(b".profile", b"good.txt")),
        (b"good.txt", b""),
        data,
    );
    let work = tempfile::tempdir().unwrap();
    let (code, err) = attack(work.path(), &local_rename, &["--no-sync"]);
    assert_eq!(code, Some(0), "{err}");
    let dest = work.path().join("dest");
    assert_eq!(std::fs::read(dest.join("good.txt")).unwrap(), data);
    assert!(!dest.join(".profile").exists());
    let listed = archiver()
        .arg("list")
        .arg(work.path().join("evil.bin"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&listed.stdout), "good.txt\n");

    let other_raw = zip_two_names(
        (b".bashrc", b""),
        (b"raw-name", &unicode_path_field(b"good.txt", b"raw-name")),
        data,
    );
    let work = tempfile::tempdir().unwrap();
    let (code, err) = attack(work.path(), &other_raw, &["--no-sync"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("disagree"), "{err}");
    assert_eq!(
        std::fs::read_dir(work.path().join("dest")).unwrap().count(),
        0
    );

    // A legacy (not UTF-8) central name with a Unicode Path field made for another spelling:
    // only a local field giving the same name (and checking out) may name the entry; a local
    // header that simply names something else is refused.
    let stale = zip_two_names(
        (b".ssh/authorized_keys", b""),
        (
            b"\xffnotes.txt",
            &unicode_path_field(b"notes.txt", b"other"),
        ),
        data,
    );
    let work = tempfile::tempdir().unwrap();
    let (code, err) = attack(work.path(), &stale, &["--no-sync"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("disagree"), "{err}");

    // Another raw name in the local header, vouched for by a local Unicode Path field whose CRC
    // is of neither name: a streaming reader would see `evil/x`; refused.
    let mut field = unicode_path_field(b"good.txt", b"good.txt");
    field[5..9].copy_from_slice(&0xdead_beefu32.to_le_bytes());
    let bogus = zip_two_names((b"evil/x", &field), (b"good.txt", b""), data);
    let work = tempfile::tempdir().unwrap();
    let (code, err) = attack(work.path(), &bogus, &["--no-sync"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("disagree"), "{err}");
}

/// A zip of zstd (method 93) entries, each `data` compressed into the given frames.
fn zip_zstd(entries: &[(&[u8], Vec<u8>, &[u8])]) -> Vec<u8> {
    let mut z = Vec::new();
    let mut cd = Vec::new();
    for (name, comp, data) in entries {
        let at = z.len() as u32;
        let head = |sig: u32, central: bool| {
            let mut h = sig.to_le_bytes().to_vec();
            if central {
                h.extend_from_slice(&[0x3f, 3]);
            }
            h.extend_from_slice(&[63, 0, 0, 0, 93, 0, 0, 0, 0x21, 0]);
            h.extend_from_slice(&crc32(data).to_le_bytes());
            h.extend_from_slice(&(comp.len() as u32).to_le_bytes());
            h.extend_from_slice(&(data.len() as u32).to_le_bytes());
            h.extend_from_slice(&(name.len() as u16).to_le_bytes());
            h.extend_from_slice(&0u16.to_le_bytes());
            if central {
                h.extend_from_slice(&[0; 6]);
                h.extend_from_slice(&(0o100644u32 << 16).to_le_bytes());
                h.extend_from_slice(&at.to_le_bytes());
            }
            h.extend_from_slice(name);
            h
        };
        z.extend(head(0x0403_4b50, false));
        z.extend_from_slice(comp);
        cd.extend(head(0x0201_4b50, true));
    }
    let (cd_at, cd_len, n) = (z.len() as u32, cd.len() as u32, entries.len() as u16);
    z.extend(cd);
    z.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    z.extend_from_slice(&[0; 4]);
    z.extend_from_slice(&n.to_le_bytes());
    z.extend_from_slice(&n.to_le_bytes());
    z.extend_from_slice(&cd_len.to_le_bytes());
    z.extend_from_slice(&cd_at.to_le_bytes());
    z.extend_from_slice(&0u16.to_le_bytes());
    z
}

/// One zstd frame of `data` without a content size, declaring a 2^`log` window.
fn zstd_frame(data: &[u8], log: u32) -> Vec<u8> {
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
    enc.set_parameter(zstd::zstd_safe::CParameter::WindowLog(log))
        .unwrap();
    enc.include_contentsize(false).unwrap();
    std::io::Write::write_all(&mut enc, data).unwrap();
    enc.finish().unwrap()
}

/// zstd entries asking for 128 MiB windows are decoded one at a time (memory does not grow
/// with -j; measured by hand, see docs/SECURITY.md) and still extract whole, side by side with
/// small-window ones; an entry whose first frame declares a small window and a later one a large
/// window is refused naming the entry, never decoded with the larger window.
#[test]
fn zstd_zip_entries_with_large_windows_extract_one_at_a_time() {
    let big: Vec<u8> = (0..3u32 << 20).map(|i| (i % 251) as u8).collect();
    let small = b"small window".repeat(100);
    let mut entries: Vec<(&[u8], Vec<u8>, &[u8])> = Vec::new();
    let names: Vec<Vec<u8>> = (0..6).map(|i| format!("big{i}").into_bytes()).collect();
    for name in &names {
        entries.push((name, zstd_frame(&big, 27), &big));
    }
    entries.push((b"small", zstd_frame(&small, 20), &small));
    let work = tempfile::tempdir().unwrap();
    let (code, err) = attack(work.path(), &zip_zstd(&entries), &["--no-sync", "-j", "4"]);
    assert_eq!(code, Some(0), "{err}");
    let dest = work.path().join("dest");
    for name in &names {
        assert!(std::fs::read(dest.join(String::from_utf8_lossy(name).as_ref())).unwrap() == big);
    }
    assert_eq!(std::fs::read(dest.join("small")).unwrap(), small);

    let both = [&small[..], &big[..]].concat();
    let frames = [zstd_frame(&small, 20), zstd_frame(&big, 27)].concat();
    let work = tempfile::tempdir().unwrap();
    let (code, err) = attack(
        work.path(),
        &zip_zstd(&[(b"sneaky", frames, &both)]),
        &["--no-sync"],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("sneaky"), "{err}");
    assert_eq!(
        std::fs::read_dir(work.path().join("dest")).unwrap().count(),
        0
    );
}

/// Overlapping entries, the construction of the non-recursive zip bombs (one entry's data holds
/// another entry whole), and two central entries sharing one local entry: both refused by unpack
/// and verify, naming the overlap, nothing extracted. Each entry alone is valid (names, CRCs and
/// sizes agree), so only the overlap check can catch them.
#[test]
fn overlapping_zip_entries_are_refused() {
    let inner_data = b"the same bytes counted twice".repeat(40);
    let inner = zip_local(b"inner.txt", &inner_data);
    let outer = zip_local(b"outer.bin", &inner);
    let inner_at = (outer.len() - inner.len()) as u32;
    let mut nested = outer.clone();
    nested.extend(zip_central(
        &[
            (b"outer.bin", &inner, 0),
            (b"inner.txt", &inner_data, inner_at),
        ],
        outer.len(),
    ));
    let once = zip_local(b"twice.txt", &inner_data);
    let mut shared = once.clone();
    shared.extend(zip_central(
        &[
            (b"twice.txt", &inner_data, 0),
            (b"twice.txt", &inner_data, 0),
        ],
        once.len(),
    ));
    for (what, archive) in [("nested", nested), ("shared", shared)] {
        let work = tempfile::tempdir().unwrap();
        let (code, err) = attack(work.path(), &archive, &["--no-sync"]);
        assert_eq!(code, Some(2), "{what}: {err}");
        assert!(err.contains("overlap"), "{what}: {err}");
        let dest = work.path().join("dest");
        assert_eq!(
            std::fs::read_dir(&dest).unwrap().count(),
            0,
            "{what}: {err}"
        );
        let (code, err) = verify_within(&work.path().join("evil.bin"));
        assert_eq!(code, Some(2), "{what}: verify: {err}");
        assert!(err.contains("overlap"), "{what}: verify: {err}");
    }
}

/// Compression methods we do not read (shrink 1, implode 6, PPMd 98, an unknown 99) are refused
/// by unpack and verify naming the entry and the method, not skipped and not misread, whatever
/// the bytes say; nothing is extracted.
#[test]
fn zip_methods_we_do_not_read_are_refused_by_name() {
    for method in [1u16, 6, 98, 99] {
        let data = b"not really compressed".to_vec();
        let mut local = zip_local(b"packed.bin", &data);
        local[8..10].copy_from_slice(&method.to_le_bytes());
        let mut central = zip_central(&[(b"packed.bin", &data, 0)], local.len());
        central[10..12].copy_from_slice(&method.to_le_bytes());
        let mut archive = local;
        archive.extend(central);
        let work = tempfile::tempdir().unwrap();
        let (code, err) = attack(work.path(), &archive, &["--no-sync"]);
        assert_eq!(code, Some(2), "method {method}: {err}");
        assert!(
            err.contains("packed.bin") && err.contains(&format!("compression method {method}")),
            "method {method}: {err}"
        );
        assert_eq!(
            std::fs::read_dir(work.path().join("dest")).unwrap().count(),
            0
        );
        let (code, err) = verify_within(&work.path().join("evil.bin"));
        assert_eq!(code, Some(2), "method {method}: verify: {err}");
    }
}

/// verify judges names and links by the same rules as unpack: an archive unpack would refuse is
/// not "verified", even though verify writes nothing.
#[test]
fn verify_refuses_what_unpack_refuses() {
    use tar::EntryType as T;
    for (entries, rule) in [
        (
            vec![("../x", T::Regular, "", &b"x"[..])],
            "`..` in the path",
        ),
        (vec![("/abs", T::Regular, "", &b"x"[..])], "absolute path"),
        (
            vec![("l", T::Symlink, "/etc/passwd", &b""[..])],
            "l: symlink to an absolute path",
        ),
        (
            vec![
                ("h", T::Link, "later", &b""[..]),
                ("later", T::Regular, "", &b"x"[..]),
            ],
            "not an earlier entry",
        ),
    ] {
        let work = tempfile::tempdir().unwrap();
        let file = work.path().join("evil.tar");
        std::fs::write(&file, hostile_tar(&entries)).unwrap();
        let (code, err) = verify_within(&file);
        assert_eq!(code, Some(2), "{entries:?}: {err}");
        assert!(err.contains(rule), "{entries:?}: {err}");
    }
}

/// Our own archives round-trip names with backslashes, invalid UTF-8, newlines and other
/// control characters, through unpack and verify, in every format.
#[test]
fn odd_names_round_trip() {
    use std::os::unix::ffi::OsStrExt;
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    std::fs::create_dir_all(src.join("dir\\with\\backslashes")).unwrap();
    let names: [&[u8]; 6] = [
        b"back\\slash.txt",
        b"dir\\with\\backslashes/inner",
        b"new\nline",
        b"carriage\rreturn",
        b"latin1-\xe9t\xe9",
        b"esc\x1b[31mred",
    ];
    for n in names {
        let p = src.join(std::ffi::OsStr::from_bytes(n));
        std::fs::write(&p, n).unwrap();
    }
    for format in ["tar", "tar.gz", "tar.zst", "zip"] {
        let archive = work.path().join(format!("odd.{format}"));
        ok(pack_dir(&src).args(["-f", format, "-o"]).arg(&archive));
        let out = output_within(archiver().arg("verify").arg(&archive), 60);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{format}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let dest = work.path().join(format!("x-{format}"));
        let (code, err) = unpack_within(&archive, &dest, &["--no-sync"]);
        assert_eq!(code, Some(0), "{format}: {err}");
        assert_same_tree(&snapshot(&src), &snapshot_extracted(&dest));
    }
}

/// `--strip-components N` extracts what GNU tar's does: N leading components dropped (a leading
/// `.` counts), shorter entries skipped, hard-link targets stripped too.
#[test]
fn strip_components_like_gnu_tar() {
    let gnu = require("tar");
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    file(&src, "top/a/b.txt", b"b", 0o644);
    file(&src, "top/c.txt", b"c", 0o600);
    std::fs::hard_link(src.join("top/c.txt"), src.join("top/a/hard")).unwrap();
    std::os::unix::fs::symlink("../c.txt", src.join("top/a/sym")).unwrap();
    let archive = work.path().join("g.tar");
    ok(Command::new(&gnu)
        .arg("-cf")
        .arg(&archive)
        .arg("-C")
        .arg(&src)
        .arg("."));
    for n in ["1", "2"] {
        let theirs = work.path().join(format!("gnu-{n}"));
        std::fs::create_dir(&theirs).unwrap();
        ok(Command::new(&gnu)
            .arg("-xf")
            .arg(&archive)
            .arg(format!("--strip-components={n}"))
            .arg("-C")
            .arg(&theirs));
        let ours = work.path().join(format!("ours-{n}"));
        let (code, err) = unpack_within(&archive, &ours, &["--strip-components", n, "--no-sync"]);
        assert_eq!(code, Some(0), "{n}: {err}");
        let mut want = snapshot(&theirs);
        let mut got = snapshot(&ours);
        for s in [&mut want, &mut got] {
            s.nodes.retain(|_, v| !matches!(v, Node::Dir { .. }));
        }
        assert_same_tree(&want, &got);
    }
    // Stripped once more, `sym -> ../c.txt` would point out of DEST: the policy still holds.
    let (code, err) = unpack_within(
        &archive,
        &work.path().join("ours-3"),
        &["--strip-components", "3"],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("./top/a/sym: symlink target leaves the destination"),
        "{err}"
    );
}

/// `unpack -v` lists each entry on stderr as it is read, escaped; stdout stays empty.
#[test]
fn verbose_lists_entries_on_stderr() {
    use tar::EntryType as T;
    let work = tempfile::tempdir().unwrap();
    let archive = work.path().join("v.tar");
    std::fs::write(
        &archive,
        hostile_tar(&[
            ("d", T::Directory, "", b""),
            ("d/one", T::Regular, "", b"1"),
            ("d/t\x1bwo", T::Regular, "", b"2"),
        ]),
    )
    .unwrap();
    let out = output_within(
        archiver()
            .args(["unpack", "-v", "--no-sync", "-C"])
            .arg(work.path().join("dest"))
            .arg(&archive),
        30,
    );
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8(out.stderr).unwrap();
    let listed: Vec<&str> = err.lines().filter(|l| !l.contains("unverified")).collect();
    assert_eq!(listed, ["d", "d/one", "d/t\\033wo"], "{err}");
}

/// Reading an archive from a terminal is refused at once (unpack, list, verify -), as GNU tar
/// does, instead of waiting for the user to type an archive.
#[test]
fn an_archive_is_never_read_from_a_terminal() {
    let python = require("python3");
    let script = r#"
import os, pty, subprocess, sys
master, slave = pty.openpty()
p = subprocess.run(sys.argv[1:], stdin=slave, capture_output=True, timeout=20)
sys.stderr.buffer.write(p.stderr)
sys.exit(p.returncode)
"#;
    let work = tempfile::tempdir().unwrap();
    for args in [&["unpack", "-C", "d"][..], &["list"], &["verify", "-"]] {
        let out = output_within(
            Command::new(&python)
                .arg("-c")
                .arg(script)
                .arg(bin())
                .args(args)
                .current_dir(work.path()),
            30,
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("from a terminal"), "{err}");
    }
}

/// SIGTERM stops an unpack (and a list) that waits on an idle stdin, promptly, with exit 130 and
/// nothing left in DEST.
#[test]
fn sigterm_stops_a_command_waiting_on_stdin() {
    use std::process::Stdio;
    for args in [&["unpack", "-C", "dest"][..], &["list"]] {
        let work = tempfile::tempdir().unwrap();
        let mut child = archiver()
            .args(args)
            .current_dir(work.path())
            .stdin(Stdio::piped()) // held open, never written
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(500));
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let started = std::time::Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if started.elapsed() > std::time::Duration::from_secs(5) {
                let _ = child.kill();
                panic!("{args:?}: still running 5 s after SIGTERM");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        assert_eq!(status.code(), Some(130), "{args:?}");
        // DEST is created only once the archive's first bytes arrived: none here.
        if args[0] == "unpack" && work.path().join("dest").exists() {
            assert_no_debris(&work.path().join("dest"));
        }
    }
}

/// A damaged archive from a producer that keeps its end of the pipe open and trickles bytes (a
/// stalled download, `yes |`): unpack stops at the damage and exits promptly, it does not wait
/// for the producer's end of stream. Plain and gzip, since gzip is decompressed on a thread of
/// its own ahead of the parser; and zstd in two frames, as ours are cut (a reader that waited for
/// a whole frame before passing any of it on would wait here for ever).
#[test]
fn a_damaged_archive_from_a_trickling_producer_fails_promptly() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    for i in 0..50 {
        file(&src, &format!("f{i:02}.txt"), &noise(3000, i), 0o644);
    }
    let good = ok(pack_dir(&src).args(["-f", "tar", "-o", "-"])).stdout;
    // Keep the first entry, then 4 KiB of junk where the second header should be.
    let first_end = 512 + 3072;
    let mut damaged = good[..first_end].to_vec();
    damaged.extend(std::iter::repeat_n(0xA5u8, 4096));
    let gz = {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(&damaged).unwrap();
        e.finish().unwrap()
    };
    // zstd: the good entry in a frame of its own, then a frame of junk cut right after its first
    // block. The trickled bytes that follow read as a block header declaring ~1 MB, so only a
    // reader that passes on each block as it is decoded sees the damage; one that waits for the
    // whole frame waits for ever.
    let mut zst = zstd::bulk::compress(&damaged[..first_end], 3).unwrap();
    {
        use std::io::Write;
        let mut e = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        e.include_checksum(true).unwrap();
        // A declared content size, as our frames have (a frame without one is streamed anyway).
        e.include_contentsize(true).unwrap();
        e.set_pledged_src_size(Some(256 << 10)).unwrap();
        e.write_all(&[0xA5u8; 128 << 10]).unwrap();
        e.flush().unwrap();
        zst.extend_from_slice(e.get_ref());
    }
    for (name, bytes) in [("tar", &damaged), ("tar.gz", &gz), ("tar.zst", &zst)] {
        let archive = work.path().join(format!("d.{name}"));
        std::fs::write(&archive, bytes).unwrap();
        let dest = work.path().join(format!("out-{name}"));
        let script = format!(
            "(cat '{}'; while :; do sleep 0.2; printf x || exit 0; done) | '{}' unpack -C '{}' --no-sync",
            archive.display(),
            bin().display(),
            dest.display()
        );
        let started = std::time::Instant::now();
        let out = output_within(Command::new("sh").arg("-c").arg(&script), 30);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {err}");
        assert!(err.contains("damaged archive"), "{name}: {err}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "{name}: took {:?}",
            started.elapsed()
        );
        if dest.exists() {
            assert_no_debris(&dest);
        }
    }
}

/// `--strip-components` and the manifest: the manifest's paths are stripped like the entries, so
/// our archives still verify every file (the manifest entry itself may be stripped away), and a
/// tampered file is still caught.
#[test]
fn strip_components_keeps_the_manifest_check() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    file(&src, "top/a/b.txt", b"original content\n", 0o644);
    file(&src, "top/c.txt", b"c", 0o644);
    let tar = ok(pack_dir(&src).args(["-f", "tar", "-o", "-"])).stdout;
    let archive = work.path().join("a.tar");
    std::fs::write(&archive, &tar).unwrap();
    for n in ["1", "2"] {
        let dest = work.path().join(format!("d{n}"));
        let (code, err) = unpack_within(
            &archive,
            &dest,
            &["--strip-components", n, "--require-manifest", "--no-sync"],
        );
        assert_eq!(code, Some(0), "{n}: {err}");
        assert!(err.is_empty(), "{err}");
    }
    let mut tampered = tar.clone();
    let at = tampered.windows(8).position(|w| w == b"original").unwrap();
    tampered[at] = b'O';
    std::fs::write(&archive, &tampered).unwrap();
    let dest = work.path().join("bad");
    let (code, err) = unpack_within(&archive, &dest, &["--strip-components", "1"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("a/b.txt: content does not match the manifest"),
        "{err}"
    );
}

/// With `--strip-components`, our manifest is checked but not written: stripped it would land as
/// `MANIFEST.b3` in DEST, over the archive's own file of that name (silently, exit 0, before),
/// and its unstripped paths would check nothing there.
#[test]
fn strip_components_never_writes_the_manifest_over_a_file() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    file(&src, "proj/MANIFEST.b3", b"the user's own file\n", 0o644);
    file(&src, "proj/main.rs", b"fn main() {}\n", 0o644);
    for format in ["tar", "tar.zst", "zip"] {
        let bytes = ok(pack_dir(&src).args(["-f", format, "-o", "-"])).stdout;
        let archive = work.path().join(format!("a.{format}"));
        std::fs::write(&archive, &bytes).unwrap();
        let dest = work.path().join(format!("strip-{format}"));
        let (code, err) = unpack_within(
            &archive,
            &dest,
            &["--strip-components", "1", "--require-manifest", "--no-sync"],
        );
        assert_eq!(code, Some(0), "{format}: {err}");
        assert_eq!(
            std::fs::read(dest.join("MANIFEST.b3")).unwrap(),
            b"the user's own file\n",
            "{format}"
        );
        assert!(dest.join("main.rs").is_file(), "{format}");
        assert!(!dest.join(".archiver").exists(), "{format}");
        // Unstripped, the manifest lands where b3sum --check finds it, as always.
        let plain = work.path().join(format!("plain-{format}"));
        let (code, err) = unpack_within(&archive, &plain, &["--no-sync"]);
        assert_eq!(code, Some(0), "{format}: {err}");
        assert!(plain.join(".archiver/MANIFEST.b3").is_file(), "{format}");
        assert_eq!(
            std::fs::read(plain.join("proj/MANIFEST.b3")).unwrap(),
            b"the user's own file\n",
            "{format}"
        );
    }
}

/// A tree we unpacked, repacked by GNU tar with `-C dir .`: every name starts with `./`, the
/// manifest's lines do not. `--strip-components` counts that `./` as GNU tar does, for the names
/// and not for the lines, so the check still matches every file (before: every file was
/// "listed but missing" and "not listed"), and a changed byte is still caught.
#[test]
fn strip_components_of_a_dot_prefixed_repack_keeps_the_manifest_check() {
    let gnu = require("tar");
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    file(&src, "top/a/b.txt", b"original content\n", 0o644);
    file(&src, "top/c.txt", b"c", 0o644);
    let ours = work.path().join("ours.tar");
    ok(pack_dir(&src).arg("-o").arg(&ours));
    let tree = work.path().join("tree");
    let (code, err) = unpack_within(&ours, &tree, &["--no-sync"]);
    assert_eq!(code, Some(0), "{err}");
    let repack = work.path().join("repack.tar");
    ok(Command::new(&gnu)
        .arg("-cf")
        .arg(&repack)
        .arg("-C")
        .arg(&tree)
        .arg("."));
    for (n, file_at, manifest) in [("1", "top/a/b.txt", true), ("2", "a/b.txt", false)] {
        let dest = work.path().join(format!("strip{n}"));
        let args = ["--strip-components", n, "--require-manifest", "--no-sync"];
        let (code, err) = unpack_within(&repack, &dest, &args);
        assert_eq!(code, Some(0), "strip {n}: {err}");
        assert_eq!(
            std::fs::read(dest.join(file_at)).unwrap(),
            b"original content\n"
        );
        // Stripped of only its `./`, the manifest is where b3sum --check finds it.
        assert_eq!(
            dest.join(".archiver/MANIFEST.b3").is_file(),
            manifest,
            "strip {n}"
        );
    }
    let mut tampered = std::fs::read(&repack).unwrap();
    let at = tampered.windows(8).position(|w| w == b"original").unwrap();
    tampered[at] = b'O';
    std::fs::write(&repack, &tampered).unwrap();
    let (code, err) = unpack_within(
        &repack,
        &work.path().join("bad"),
        &["--strip-components", "1"],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("top/a/b.txt: content does not match the manifest"),
        "{err}"
    );
}

/// A DEST that is a file is refused with a message that says so (create_dir_all alone says
/// "File exists"), and the file is left as it was.
#[test]
fn a_destination_that_is_a_file_is_refused_clearly() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    file(&src, "a.txt", b"a", 0o644);
    let archive = work.path().join("a.tar");
    ok(pack_dir(&src).arg("-o").arg(&archive));
    let dest = work.path().join("not-a-dir");
    std::fs::write(&dest, b"precious").unwrap();
    let (code, err) = unpack_within(&archive, &dest, &["--no-sync"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("not-a-dir") && err.contains("not a directory"),
        "{err}"
    );
    assert_eq!(std::fs::read(&dest).unwrap(), b"precious");
    // A dangling symlink as DEST: the same, and the link is left alone.
    let link = work.path().join("dangling");
    std::os::unix::fs::symlink("nowhere", &link).unwrap();
    let (code, err) = unpack_within(&archive, &link, &["--no-sync"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("dangling") && err.contains("not a directory"),
        "{err}"
    );
    assert!(!work.path().join("nowhere").exists());
}

/// Unpacking into a tree that already holds part of the archive merges: what the archive does not
/// hold stays, directories both have are merged at any depth, new subtrees arrive whole, replaced
/// files take the archive's content, and directory modes are the archive's.
#[test]
fn unpacking_into_an_existing_tree_merges() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    file(&src, "a/b/c/new.txt", b"new deep", 0o644);
    file(&src, "a/b/replaced.txt", b"archive version", 0o640);
    file(&src, "a/fresh/sub/x.txt", b"x", 0o644);
    file(&src, "top.txt", b"top", 0o644);
    set_mode(&src.join("a/b"), 0o750);
    let dest = work.path().join("dest");
    file(&dest, "a/b/mine.txt", b"user file", 0o600);
    file(&dest, "a/b/replaced.txt", b"old version", 0o644);
    file(&dest, "a/other/keep.txt", b"keep", 0o644);
    for format in ["tar.zst", "zip"] {
        let archive = work.path().join(format!("m.{format}"));
        ok(pack_dir(&src).arg("-o").arg(&archive));
        let (code, err) = unpack_within(&archive, &dest, &["--no-sync"]);
        assert_eq!(code, Some(0), "{format}: {err}");
        for (rel, want) in [
            ("a/b/c/new.txt", &b"new deep"[..]),
            ("a/b/replaced.txt", b"archive version"),
            ("a/fresh/sub/x.txt", b"x"),
            ("top.txt", b"top"),
            ("a/b/mine.txt", b"user file"),
            ("a/other/keep.txt", b"keep"),
        ] {
            assert_eq!(
                std::fs::read(dest.join(rel)).unwrap(),
                want,
                "{format}: {rel}"
            );
        }
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &str| {
            std::fs::metadata(dest.join(p))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode("a/b"), 0o750, "{format}");
        assert_eq!(mode("a/b/replaced.txt"), 0o640, "{format}");
        assert_no_debris(&dest);
    }
}

/// Hard links: one made before its source is replaced keeps the content the source had then (as
/// GNU tar extracts it), and the manifest check agrees; a link whose source lies below an archive
/// symlink finds nothing there and is refused, never followed out of the destination.
#[test]
fn hard_links_follow_the_archive_order_and_never_a_symlink() {
    use tar::EntryType as T;
    let work = tempfile::tempdir().unwrap();
    let (code, err) = attack(
        work.path(),
        &hostile_tar(&[
            ("f", T::Regular, "", b"first"),
            ("h", T::Link, "f", b""),
            ("f", T::Regular, "", b"second"),
        ]),
        &[],
    );
    assert_eq!(code, Some(0), "{err}");
    let dest = work.path().join("dest");
    assert_eq!(std::fs::read(dest.join("h")).unwrap(), b"first");
    assert_eq!(std::fs::read(dest.join("f")).unwrap(), b"second");

    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), b"secret").unwrap();
    let work = tempfile::tempdir().unwrap();
    let target = outside.path().to_str().unwrap();
    for extra in [&[][..], &["--allow-outside-links"]] {
        let (code, err) = attack(
            work.path(),
            &hostile_tar(&[
                ("l", T::Symlink, target, b""),
                ("h", T::Link, "l/secret", b""),
            ]),
            extra,
        );
        assert_eq!(code, Some(2), "{extra:?}: {err}");
        assert!(
            !work.path().join("dest/h").exists(),
            "{extra:?}: linked a file from outside"
        );
    }
}

/// Archives that name the same few paths over and over, with every type, give the same result
/// (the same tree, or the same refusals) whatever the number of writers and however the threads
/// run: writers create new files in parallel, and everything that could conflict waits for them.
/// A race would show as two runs that disagree.
#[test]
fn conflicting_entries_give_one_result_whatever_the_threads() {
    use tar::EntryType as T;
    let paths = ["a", "b", "a/x", "a/y", "b/x", "a/x/z", "c"];
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    let work = tempfile::tempdir().unwrap();
    for round in 0..12 {
        let mut entries: Vec<(String, T, String, Vec<u8>)> = Vec::new();
        for i in 0..(6 + next(10)) {
            let path = paths[next(paths.len())].to_string();
            let (kind, link, data) = match next(5) {
                0 => (T::Directory, String::new(), Vec::new()),
                1 => (T::Symlink, "c".to_string(), Vec::new()),
                2 if !entries.is_empty() => {
                    let src = entries[next(entries.len())].0.clone();
                    (T::Link, src, Vec::new())
                }
                _ => (
                    T::Regular,
                    String::new(),
                    format!("{round}:{i}").into_bytes(),
                ),
            };
            entries.push((path, kind, link, data));
        }
        let list: Vec<(&str, T, &str, &[u8])> = entries
            .iter()
            .map(|(p, k, l, d)| (p.as_str(), *k, l.as_str(), d.as_slice()))
            .collect();
        let archive = work.path().join(format!("r{round}.tar"));
        std::fs::write(&archive, hostile_tar(&list)).unwrap();
        let mut first: Option<(Option<i32>, String, Snapshot)> = None;
        for run in 0..6 {
            let jobs = ["1", "2", "4"][run % 3];
            let dest = work.path().join(format!("d{round}-{run}"));
            let (code, err) = unpack_within(&archive, &dest, &["--no-sync", "-j", jobs]);
            let mut lines: Vec<&str> = err.lines().collect();
            lines.sort_unstable();
            let got = (code, lines.join("\n"), snapshot_extracted(&dest));
            match &first {
                None => first = Some(got),
                Some(want) => assert!(
                    *want == got,
                    "round {round}, -j {jobs}: {entries:?}\nfirst: {:?}\nnow: {:?}",
                    (want.0, &want.1),
                    (got.0, &got.1)
                ),
            }
        }
    }
}

/// Symlinks keep their stored mtime, as GNU tar restores it, from our own tar and zip alike
/// (the staging tree times them; the commit's rename keeps it).
#[test]
fn symlinks_keep_their_mtime() {
    use tar::EntryType as T;
    let work = tempfile::tempdir().unwrap();
    // hostile_tar stamps every entry with mtime 1,000,000,000.
    let tar = hostile_tar(&[
        ("t.txt", T::Regular, "", b"target"),
        ("l", T::Symlink, "t.txt", b""),
    ]);
    let archive = work.path().join("s.tar");
    std::fs::write(&archive, &tar).unwrap();
    let dest = work.path().join("from-tar");
    let (code, err) = unpack_within(&archive, &dest, &["--no-sync"]);
    assert_eq!(code, Some(0), "{err}");
    let mtime = |p: &Path| {
        std::fs::symlink_metadata(p)
            .unwrap()
            .modified()
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    assert_eq!(mtime(&dest.join("l")), 1_000_000_000);

    // Our zip: a tree whose symlink has an old mtime, packed and unpacked.
    let src = work.path().join("src");
    file(&src, "t.txt", b"target", 0o644);
    std::os::unix::fs::symlink("t.txt", src.join("l")).unwrap();
    {
        use std::os::unix::ffi::OsStrExt;
        let path = std::ffi::CString::new(src.join("l").as_os_str().as_bytes()).unwrap();
        let t = libc::timespec {
            tv_sec: 1_200_000_000,
            tv_nsec: 0,
        };
        // SAFETY: a valid C path and two timespecs.
        let r = unsafe {
            libc::utimensat(
                libc::AT_FDCWD,
                path.as_ptr(),
                [t, t].as_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
    }
    let zip = work.path().join("s.zip");
    ok(pack_dir(&src).args(["-f", "zip", "-o"]).arg(&zip));
    let dest = work.path().join("from-zip");
    let (code, err) = unpack_within(&zip, &dest, &["--no-sync"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(mtime(&dest.join("l")), 1_200_000_000);
}

/// Symlinks deep in the tree with long targets through directories that exist: checking where
/// each leads costs a few system calls per step of its target, not a walk from the top per step
/// (which took about 7 s per link at this depth: a 6 KB tar.gz ran for many minutes). Under a
/// deadline: a hang guard, not a speed target. The deepest directories' modes and times are
/// applied too, though their paths are longer than PATH_MAX.
#[test]
fn deep_symlinks_with_long_targets_are_checked_promptly() {
    let work = tempfile::tempdir().unwrap();
    let base = vec!["d"; 2500].join("/");
    let xs = vec!["x"; 1000].join("/");
    let mut b = tar::Builder::new(Vec::new());
    let mut dir = tar::Header::new_gnu();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o700);
    dir.set_mtime(1_000_000_000);
    b.append_data(&mut dir, format!("{base}/{xs}/"), std::io::empty())
        .unwrap();
    for i in 0..100 {
        let mut l = tar::Header::new_gnu();
        l.set_entry_type(tar::EntryType::Symlink);
        l.set_mtime(1_000_000_000);
        b.append_link(&mut l, format!("{base}/l{i}"), &xs).unwrap();
    }
    let archive = work.path().join("deep.tar");
    std::fs::write(&archive, b.into_inner().unwrap()).unwrap();
    let dest = work.path().join("dest");
    let (code, err) = unpack_within(&archive, &dest, &["--no-sync"]);
    assert_eq!(code, Some(0), "{}", &err[..err.len().min(2000)]);
    // Paths past PATH_MAX: counted by find(1), which walks with relative opens.
    let count = |args: &[&str]| {
        let out = Command::new("find").arg(&dest).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout.iter().filter(|&&b| b == b'\n').count()
    };
    assert_eq!(count(&["-type", "l"]), 100);
    assert_eq!(count(&["-type", "d", "-name", "x"]), 1000);
    // The one directory entry (the deepest), with its mode; the others were implied.
    assert_eq!(count(&["-type", "d", "-name", "x", "-perm", "700"]), 1);
}

/// A directory replaced by a later symlink entry: the directory's recorded mode and time are not
/// applied through the link to the directory it points at.
#[test]
fn directory_modes_are_never_applied_through_a_later_symlink() {
    use std::os::unix::fs::PermissionsExt;
    use tar::EntryType as T;
    let work = tempfile::tempdir().unwrap();
    let archive = hostile_tar(&[
        ("c/", T::Directory, "", b""),
        ("c/b/", T::Directory, "", b""),
        ("a/", T::Directory, "", b""),
        ("a/b/", T::Directory, "", b""),
        // The empty a/b is replaced; a non-empty `a` would not be (trust.rs).
        ("a/b", T::Symlink, "../c/b", b""),
    ]);
    // hostile_tar gives every entry 6755: make c/b's 0755 and a/b's 0700 by hand.
    let mut archive = archive;
    for (at, mode) in [(512usize, b"0000755\0"), (1536, b"0000700\0")] {
        archive[at + 100..at + 108].copy_from_slice(mode);
        archive[at + 148..at + 156].copy_from_slice(b"        ");
        let sum: u32 = archive[at..at + 512].iter().map(|&b| u32::from(b)).sum();
        archive[at + 148..at + 156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    }
    let (code, err) = attack(work.path(), &archive, &["--no-sync"]);
    assert_eq!(code, Some(0), "{err}");
    let dest = work.path().join("dest");
    assert!(std::fs::symlink_metadata(dest.join("a/b"))
        .unwrap()
        .is_symlink());
    let mode = std::fs::metadata(dest.join("c/b"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(
        mode, 0o755,
        "a/b's mode went through the link a/b -> ../c/b"
    );
}

/// With -k, DEST's directory stays where the archive has a symlink (`d -> e`): the final tree has
/// DEST's `d`, so a link through `d/...` is resolved through DEST's directory and what it holds
/// (`d/out -> /etc`), not through the staged link that is never placed: refused.
#[test]
fn keep_existing_resolves_links_through_the_kept_directory() {
    use tar::EntryType as T;
    let work = tempfile::tempdir().unwrap();
    let dest = work.path().join("dest");
    std::fs::create_dir_all(dest.join("d")).unwrap();
    std::os::unix::fs::symlink("/etc", dest.join("d/out")).unwrap();
    let archive = hostile_tar(&[
        ("e/", T::Directory, "", b""),
        ("d", T::Symlink, "e", b""),
        ("l", T::Symlink, "d/out/passwd", b""),
    ]);
    let (code, err) = attack(work.path(), &archive, &["--no-sync", "-k"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("archiver: l: "), "{err}");
    assert!(err.contains("outside"), "{err}");
    assert!(std::fs::symlink_metadata(dest.join("l")).is_err());
    assert!(dest.join("d").is_dir(), "DEST's directory is untouched");
}

/// An entry deeper than the process may hold directories open (the staging tree keeps one per
/// level; `ulimit -n 256` here): a clear error, exit 2, the message cut to a readable length, and
/// the staging directory removed although it is deeper than a removal holding one descriptor per
/// level could go (it was left in DEST before).
#[test]
fn a_staging_tree_deeper_than_the_fd_limit_is_removed() {
    let work = tempfile::tempdir().unwrap();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_size(1);
    let deep = format!("{}/f", vec!["a"; 1500].join("/"));
    b.append_data(&mut h, &deep, &b"x"[..]).unwrap();
    let archive = work.path().join("deep.tar");
    std::fs::write(&archive, b.into_inner().unwrap()).unwrap();
    let dest = work.path().join("dest");
    std::fs::create_dir(&dest).unwrap();
    let out = output_within(
        Command::new("sh")
            .arg("-c")
            .arg(r#"ulimit -n 256 && exec "$0" unpack --no-sync "$1" -C "$2""#)
            .arg(env!("CARGO_BIN_EXE_archiver"))
            .arg(&archive)
            .arg(&dest),
        60,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{}", &err[..err.len().min(500)]);
    assert!(err.len() < 6000, "a {} byte message", err.len());
    let left: Vec<_> = std::fs::read_dir(&dest).unwrap().collect();
    assert!(left.is_empty(), "left in DEST: {left:?}");
}

/// `-k` leaves the directories DEST already has as they are, DEST itself included (GNU tar and
/// bsdtar with -k do): an archive's `./` and `d/` entries cannot open up `~` with -k. Without -k
/// their modes are applied, as GNU tar applies them.
#[test]
fn keep_existing_leaves_existing_directories_modes_alone() {
    use std::os::unix::fs::PermissionsExt;
    use tar::EntryType as T;
    let archive = hostile_tar(&[
        ("./", T::Directory, "", b""),
        ("d/", T::Directory, "", b""),
        ("d/f", T::Regular, "", b"x"),
    ]);
    for (extra, expected) in [
        (&["--no-sync", "-k"][..], 0o700),
        (&["--no-sync"][..], 0o755),
    ] {
        let work = tempfile::tempdir().unwrap();
        let dest = work.path().join("dest");
        std::fs::create_dir_all(dest.join("d")).unwrap();
        set_mode(&dest.join("d"), 0o700);
        set_mode(&dest, 0o700);
        let (code, err) = attack(work.path(), &archive, extra);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let (dest_mode, d_mode) = (mode(&dest), mode(&dest.join("d")));
        set_mode(&dest, 0o755);
        assert_eq!(code, Some(0), "{extra:?}: {err}");
        assert_eq!(d_mode, expected, "{extra:?}: d");
        assert_eq!(dest_mode, expected, "{extra:?}: DEST");
        assert_eq!(std::fs::read(dest.join("d/f")).unwrap(), b"x");
    }
}
