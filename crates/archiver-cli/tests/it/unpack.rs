//! `archiver unpack` and `verify`: round trips, archives from every peer, and hostile archives, one
//! test per rule of the safety policy (docs/SECURITY.md). Each hostile test also checks that nothing
//! appeared outside the destination.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::*;

fn unpack(archive: &Path, dest: &Path, extra: &[&str]) -> std::process::Output {
    archiver()
        .arg("unpack")
        .args(extra)
        .arg(archive)
        .arg("-C")
        .arg(dest)
        .output()
        .unwrap()
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
    let a = work.path().join("infozip-pipe.zip");
    let piped = ok(Command::new("sh")
        .arg("-c")
        .arg("zip -q -r -y - .")
        .current_dir(&src))
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

#[test]
fn refuses_devices_fifos_and_foreign_hard_links() {
    use tar::EntryType as T;
    for (entries, rule) in [
        (
            vec![("dev", T::Char, "", &b""[..])],
            "device and FIFO entries are never created",
        ),
        (
            vec![("fifo", T::Fifo, "", &b""[..])],
            "device and FIFO entries are never created",
        ),
        (
            vec![("h", T::Link, "/etc/passwd", &b""[..])],
            "hard link target: absolute path",
        ),
        (
            vec![
                ("h", T::Link, "later", &b""[..]),
                ("later", T::Regular, "", &b"x"[..]),
            ],
            "not an earlier file of this archive",
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
    // A zip whose name uses backslashes to climb out.
    let mut z = zip_with_name(b"..\\..\\evil.txt");
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

/// A minimal stored zip with one entry of the given raw name.
fn zip_with_name(name: &[u8]) -> Vec<u8> {
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
    z.extend_from_slice(&[0x1e, 3, 10, 0, 0, 0, 0, 0, 0, 0, 0x21, 0]);
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
        assert_same_tree(&strip(snapshot(&theirs)), &strip(snapshot(&ours)));
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
