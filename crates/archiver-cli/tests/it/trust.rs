//! Archives forged to get content past the manifest check: each one was accepted (exit 0, an
//! unchecked file in DEST) before the fix its test names. Built with Python's tarfile and zipfile,
//! as an attacker would, so every member is well formed and only the manifest's promise is
//! broken.

use std::path::Path;
use std::process::Command;

use crate::util::*;

/// Writes `archive` from a Python script given `out` (the path) as `sys.argv[1]`; the script
/// has `b3(data)` (a BLAKE3 hex digest, from b3sum) and `add(tf, name, data, type, link, mode)`.
fn forge(work: &Path, name: &str, script: &str) -> std::path::PathBuf {
    let python = require("python3");
    let b3sum = require("b3sum");
    let out = work.join(name);
    let prelude = format!(
        r#"
import io, sys, subprocess, tarfile, zipfile
def b3(d): return subprocess.run([{b3sum:?}, '--no-names'], input=d, capture_output=True, check=True).stdout.decode().strip()
def add(tf, name, data=b'', typ=tarfile.REGTYPE, link='', mode=0o644):
    t = tarfile.TarInfo(name); t.type = typ; t.linkname = link; t.mode = mode
    t.size = len(data) if typ == tarfile.REGTYPE else 0
    tf.addfile(t, io.BytesIO(data) if t.size else None)
M = '.archiver/MANIFEST.b3'
"#
    );
    let status = Command::new(python)
        .arg("-c")
        .arg(format!("{prelude}\n{script}"))
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success(), "python failed for {name}");
    out
}

/// unpack (with `extra`) into a fresh DEST: exit 2 and nothing in DEST; verify: exit 2. Both
/// name `needle`.
fn refused(archive: &Path, extra: &[&str], needle: &str) {
    let dest = tempfile::tempdir().unwrap();
    let out = output_within(
        archiver()
            .arg("unpack")
            .args(extra)
            .arg(archive)
            .arg("-C")
            .arg(dest.path()),
        60,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{extra:?}: {err}");
    assert!(err.contains(needle), "{extra:?}: {err}");
    assert_eq!(
        std::fs::read_dir(dest.path()).unwrap().count(),
        0,
        "{extra:?}: DEST changed: {err}"
    );
    if extra.is_empty() {
        let out = output_within(archiver().arg("verify").arg(archive), 60);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "verify: {err}");
        assert!(err.contains(needle), "verify: {err}");
    }
}

/// A hard link to the manifest entry: the staging tree linked it, but no record covered the
/// manifest, so the link's (attacker-chosen, executable) content landed unchecked.
#[test]
fn a_hard_link_to_the_manifest_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let tar = forge(
        work.path(),
        "hl.tar",
        r#"
good = b'good\n'
with tarfile.open(sys.argv[1], 'w', format=tarfile.GNU_FORMAT) as tf:
    add(tf, 'a', good)
    add(tf, M, (b3(good) + '  a\n').encode(), mode=0o755)
    add(tf, 'bin/tool', typ=tarfile.LNKTYPE, link=M)
"#,
    );
    for extra in [&[][..], &["-k"], &["--require-manifest"]] {
        refused(&tar, extra, "bin/tool: hard link to .archiver/MANIFEST.b3");
    }
}

/// Two manifests: the first (never parsed when the second replaced it) landed and vouched for
/// nothing, or with --strip-components the one checked was not the one written.
#[test]
fn a_second_manifest_entry_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let two = forge(
        work.path(),
        "two.tar",
        r#"
good = b'good\n'
line = (b3(good) + '  a\n').encode()
with tarfile.open(sys.argv[1], 'w', format=tarfile.GNU_FORMAT) as tf:
    add(tf, 'a', good)
    add(tf, M, line)
    add(tf, 'p/a', good)
    add(tf, './' + M, line)
"#,
    );
    for extra in [&[][..], &["--strip-components", "1"], &["-k"]] {
        refused(&two, extra, "a second entry named .archiver/MANIFEST.b3");
    }
    // Any type: a symlink over the manifest would make `b3sum --check` read another file.
    let sym = forge(
        work.path(),
        "sym.tar",
        r#"
good = b'good\n'
with tarfile.open(sys.argv[1], 'w', format=tarfile.GNU_FORMAT) as tf:
    add(tf, 'a', good)
    add(tf, 'fake', (b3(good) + '  a\n').encode())
    add(tf, M, (b3(good) + '  a\n').encode())
    add(tf, M, typ=tarfile.SYMTYPE, link='../fake')
"#,
    );
    refused(&sym, &[], "a second entry named .archiver/MANIFEST.b3");
    // And in a zip.
    let zip = forge(
        work.path(),
        "two.zip",
        r#"
good = b'good\n'
import warnings; warnings.simplefilter('ignore')
with zipfile.ZipFile(sys.argv[1], 'w') as z:
    z.writestr('a', good)
    z.writestr(M, (b3(good) + '  a\n').encode())
    z.writestr('b', b'unlisted\n')
    z.writestr(M, (b3(good) + '  a\n').encode())
"#,
    );
    refused(&zip, &[], "a second entry named .archiver/MANIFEST.b3");
}

/// A directory holding listed files, replaced later by a symlink or a file: the files were
/// dropped from DEST (or read through the symlink as other content) while the manifest check
/// counted them present. GNU tar and bsdtar refuse to replace a non-empty directory; so do we.
/// An empty directory is still replaced (the later entry wins).
#[test]
fn a_directory_holding_entries_is_not_replaced() {
    let work = tempfile::tempdir().unwrap();
    for (name, last) in [
        ("sym", "add(tf, 'app', typ=tarfile.SYMTYPE, link='other')"),
        ("file", "add(tf, 'app', b'a file now\\n')"),
        (
            "hardlink",
            "add(tf, 'app', typ=tarfile.LNKTYPE, link='other/config')",
        ),
    ] {
        let tar = forge(
            work.path(),
            &format!("{name}.tar"),
            &format!(
                r#"
trusted, evil = b'trusted config\n', b'evil config\n'
with tarfile.open(sys.argv[1], 'w', format=tarfile.GNU_FORMAT) as tf:
    add(tf, 'app/', typ=tarfile.DIRTYPE, mode=0o755)
    add(tf, 'app/config', trusted)
    add(tf, 'other/', typ=tarfile.DIRTYPE, mode=0o755)
    add(tf, 'other/config', evil)
    {last}
    add(tf, M, (b3(trusted) + '  app/config\n' + b3(evil) + '  other/config\n').encode())
"#
            ),
        );
        let dest = tempfile::tempdir().unwrap();
        let out = output_within(
            archiver()
                .arg("unpack")
                .arg(&tar)
                .arg("-C")
                .arg(dest.path()),
            60,
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {err}");
        assert!(
            err.contains("app: would replace the directory app, which holds earlier entries"),
            "{name}: {err}"
        );
        assert_eq!(std::fs::read_dir(dest.path()).unwrap().count(), 0, "{name}");
    }
    let empty = forge(
        work.path(),
        "empty.tar",
        r#"
with tarfile.open(sys.argv[1], 'w', format=tarfile.GNU_FORMAT) as tf:
    add(tf, 'd/', typ=tarfile.DIRTYPE, mode=0o755)
    add(tf, 'd', b'now a file\n')
"#,
    );
    let dest = tempfile::tempdir().unwrap();
    let out = output_within(
        archiver()
            .arg("unpack")
            .arg(&empty)
            .arg("-C")
            .arg(dest.path()),
        60,
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read(dest.path().join("d")).unwrap(),
        b"now a file\n"
    );
}

/// A zip entry marked a directory by its attributes alone (no trailing slash) that holds data:
/// Info-ZIP and Python extract it as a file, bsdtar as a directory; its data was never read,
/// so not even its CRC was checked. Refused.
#[test]
fn a_zip_directory_entry_with_data_is_refused() {
    let work = tempfile::tempdir().unwrap();
    for (name, system, attr) in [("unix", 3, "0o040755 << 16"), ("dos", 0, "0x10")] {
        let zip = forge(
            work.path(),
            &format!("{name}.zip"),
            &format!(
                r#"
good = b'good\n'
with zipfile.ZipFile(sys.argv[1], 'w') as z:
    z.writestr('a', good)
    i = zipfile.ZipInfo('payload.sh'); i.create_system = {system}; i.external_attr = {attr}
    z.writestr(i, b'#!/bin/sh\necho PWNED\n')
    z.writestr(M, (b3(good) + '  a\n').encode())
"#
            ),
        );
        refused(
            &zip,
            &[],
            "payload.sh: is marked as a directory but holds 21 bytes",
        );
    }
}

/// Manifest lines no entry can match (`..`, absolute) stay "missing" with --strip-components,
/// as without it (they were skipped as if stripped away).
#[test]
fn unmatchable_manifest_lines_are_missing_with_strip_components() {
    let work = tempfile::tempdir().unwrap();
    let tar = forge(
        work.path(),
        "lines.tar",
        r#"
good = b'good\n'
with tarfile.open(sys.argv[1], 'w', format=tarfile.GNU_FORMAT) as tf:
    add(tf, 'p/a', good)
    add(tf, M, (b3(good) + '  p/a\n' + b3(good) + '  p/../q/gone\n').encode())
"#,
    );
    refused(
        &tar,
        &["--strip-components", "1"],
        "p/../q/gone: listed in the manifest but missing",
    );
}
