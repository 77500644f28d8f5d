//! The command line's promises: exit codes, messages naming the path, atomic output, pipes.

use std::path::Path;
use std::process::Command;

use crate::util::*;

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn missing_path_is_fatal_and_named() {
    let out = archiver()
        .args(["pack", "/no/such/dir", "-o", "-"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr_of(&out),
        "archiver: /no/such/dir: no such file or directory\n"
    );
    assert!(
        out.stdout.is_empty(),
        "nothing may reach stdout on a fatal error"
    );
}

/// `-C DIR` that is missing or not a directory: the error names DIR, not the PATHs inside it.
#[test]
fn a_bad_directory_is_named() {
    let work = tempfile::tempdir().unwrap();
    file(work.path(), "plain", b"x", 0o644);
    for (dir, what) in [
        ("nodir", "no such file or directory"),
        ("plain", "is not a directory (-C)"),
    ] {
        let dir = work.path().join(dir);
        let out = archiver()
            .arg("pack")
            .arg("-C")
            .arg(&dir)
            .args([".", "-o", "-"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        assert_eq!(
            stderr_of(&out),
            format!("archiver: {}: {what}\n", dir.display())
        );
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn bad_flags_and_values_are_usage_errors() {
    let out = archiver()
        .args(["pack", "--no-such-flag", "."])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    // Diagnostics read `archiver: <what happened>` (CLI.md), usage errors too.
    assert!(
        stderr_of(&out).starts_with("archiver: unexpected argument '--no-such-flag'"),
        "{}",
        stderr_of(&out)
    );
    let out = archiver()
        .args(["pack", "-f", "rar", ".", "-o", "-"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr_of(&out).contains("invalid value 'rar'"),
        "{}",
        stderr_of(&out)
    );
    let out = archiver()
        .args(["pack", "-f", "tar.gz", "-l", "12", ".", "-o", "-"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr_of(&out).contains("level 12 is out of range for tar.gz: use 1-9"),
        "{}",
        stderr_of(&out)
    );
}

/// A FIFO cannot be archived: a warning naming it, the rest is packed, exit 1.
#[test]
fn special_files_are_skipped_with_a_warning() {
    let work = tempfile::tempdir().unwrap();
    file(work.path(), "a", b"a", 0o644);
    let fifo = work.path().join("pipe");
    let status = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(status.success());
    let out = archiver()
        .args(["pack", "-o", "-"])
        .arg("-C")
        .arg(work.path())
        .arg(".")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    assert_eq!(
        stderr_of(&out),
        // Named as stored, relative to -C, as tar names it.
        "archiver: pipe: is a FIFO; not archived\n"
    );
    let names =
        String::from_utf8(ok(archiver().args(["list", "-"]).stdin_bytes(&out.stdout)).stdout)
            .unwrap();
    assert_eq!(names, "a\n.archiver/MANIFEST.b3\n");
    // --strict turns it into an error.
    let out = archiver()
        .args(["pack", "--strict", "-o", "-"])
        .arg("-C")
        .arg(work.path())
        .arg(".")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr_of(&out).contains("is a FIFO; not archived (strict mode)"),
        "{}",
        stderr_of(&out)
    );
}

/// A failed run leaves an existing archive untouched and no temporary file behind; a good run
/// replaces it, and the archive being written is never packed into itself.
#[test]
fn output_file_is_replaced_atomically() {
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("tree");
    file(&tree, "f", b"data", 0o644);
    let target = tree.join("out.tar");
    std::fs::write(&target, b"previous archive").unwrap();
    let out = archiver()
        .args(["pack", "/no/such/input"])
        .arg("-C")
        .arg(&tree)
        .arg(".")
        .arg("-o")
        .arg(&target)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(std::fs::read(&target).unwrap(), b"previous archive");
    let leftovers: Vec<_> = std::fs::read_dir(&tree)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers.len(),
        2,
        "temporary file left behind: {leftovers:?}"
    );

    ok(archiver()
        .args(["pack", "-o"])
        .arg(&target)
        .arg("-C")
        .arg(&tree)
        .arg("."));
    let names = String::from_utf8(ok(archiver().arg("list").arg(&target)).stdout).unwrap();
    assert_eq!(
        names, "f\n.archiver/MANIFEST.b3\n",
        "the archive must not contain itself"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&target).unwrap().permissions().mode() & 0o777;
    assert_ne!(
        mode, 0o600,
        "a new archive gets the usual 0666 & !umask, not a temp file's 0600"
    );
}

/// A tree that already holds a manifest (an extracted archive being repacked) still gives one
/// manifest, the new one, listing the files actually stored.
#[test]
fn repacking_an_extracted_tree_keeps_one_manifest() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    file(&src, "x", b"x", 0o644);
    file(&src, ".archiver/MANIFEST.b3", b"stale manifest\n", 0o644);
    let out = ok(archiver()
        .args(["pack", "-o", "-"])
        .arg("-C")
        .arg(&src)
        .arg("."))
    .stdout;
    let names =
        String::from_utf8(ok(archiver().args(["list", "-"]).stdin_bytes(&out)).stdout).unwrap();
    assert_eq!(names, ".archiver/\nx\n.archiver/MANIFEST.b3\n");
}

/// What would collide with the manifest pack writes is not stored, with a warning naming it
/// (exit 1): `.archiver/MANIFEST.b3` given as an input (two entries of that name; unpack refuses
/// such an archive), `.archiver` as a file or a symlink (GNU tar would write our manifest
/// through the symlink, over the user's file), a directory named `MANIFEST.b3` (dropped silently
/// before). Each archive then verifies and extracts with GNU tar.
#[test]
fn entries_in_the_manifests_way_are_left_out_with_a_warning() {
    let gnu = require("tar");
    let work = tempfile::tempdir().unwrap();
    type Case<'a> = (&'a str, &'a dyn Fn(&Path), &'a [&'a str], &'a str);
    let cases: [Case<'_>; 4] = [
        (
            "input",
            &|d| file(d, ".archiver/MANIFEST.b3", b"old\n", 0o644),
            &[".archiver/MANIFEST.b3", "f"],
            ".archiver/MANIFEST.b3: the name of the manifest pack writes; not stored",
        ),
        (
            "file",
            &|d| file(d, ".archiver", b"user data\n", 0o644),
            &["."],
            ".archiver: not a directory",
        ),
        (
            "symlink",
            &|d| {
                file(d, "sub/MANIFEST.b3", b"USER DATA\n", 0o644);
                std::os::unix::fs::symlink("sub", d.join(".archiver")).unwrap();
            },
            &["."],
            ".archiver: not a directory",
        ),
        (
            "dir",
            &|d| file(d, ".archiver/MANIFEST.b3/z", b"z\n", 0o644),
            &["."],
            ".archiver/MANIFEST.b3: the name of the manifest pack writes; not stored",
        ),
    ];
    for (name, make, inputs, warning) in cases {
        let src = work.path().join(name);
        file(&src, "f", b"f\n", 0o644);
        make(&src);
        let archive = work.path().join(format!("{name}.tar"));
        let out = archiver()
            .args(["pack", "-o"])
            .arg(&archive)
            .arg("-C")
            .arg(&src)
            .args(inputs)
            .output()
            .unwrap();
        let err = stderr_of(&out);
        assert_eq!(out.status.code(), Some(1), "{name}: {err}");
        assert!(err.contains(warning), "{name}: {err}");
        ok(archiver().arg("verify").arg(&archive));
        let dest = work.path().join(format!("{name}-gnu"));
        std::fs::create_dir(&dest).unwrap();
        ok(Command::new(&gnu)
            .arg("-xf")
            .arg(&archive)
            .arg("-C")
            .arg(&dest));
        assert!(dest.join(".archiver/MANIFEST.b3").is_file(), "{name}");
        if name == "symlink" {
            assert_eq!(
                std::fs::read(src.join("sub/MANIFEST.b3")).unwrap(),
                b"USER DATA\n"
            );
        }
    }
}

/// A name longer than zip's 16-bit length field (a deep tree, ~70 KB) is skipped with a warning
/// in every format: the zip's length wrapped (a corrupt archive, exit 0) and the tar's exceeded
/// our own reader's 64 KiB cap.
#[test]
fn names_longer_than_readers_take_are_skipped_with_a_warning() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("deep");
    std::fs::create_dir(&src).unwrap();
    // Built through directory handles: the path is far past PATH_MAX.
    let mut dir = std::fs::File::open(&src).unwrap();
    for i in 0..280 {
        use std::os::fd::AsRawFd;
        let name = std::ffi::CString::new(format!("{i:03}{}", "q".repeat(247))).unwrap();
        assert_eq!(
            unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), 0o755) },
            0
        );
        let fd = unsafe {
            libc::openat(
                dir.as_raw_fd(),
                name.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY,
            )
        };
        assert!(fd >= 0);
        dir = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    }
    file(&src, "top.txt", b"top\n", 0o644);
    for ext in ["zip", "tar"] {
        let archive = work.path().join(format!("deep.{ext}"));
        let out = archiver()
            .args(["pack", "-o"])
            .arg(&archive)
            .arg("-C")
            .arg(work.path())
            .arg("deep")
            .output()
            .unwrap();
        let err = stderr_of(&out);
        assert_eq!(out.status.code(), Some(1), "{ext}: {err}");
        assert!(
            err.contains("longer than archive readers take"),
            "{ext}: {err}"
        );
        let listed = String::from_utf8(ok(archiver().arg("list").arg(&archive)).stdout).unwrap();
        assert!(listed.contains("deep/top.txt\n"), "{ext}: {listed}");
        ok(archiver().arg("verify").arg(&archive));
    }
    // Removed through handles too (tempdir's removal would fail past PATH_MAX).
    let _ = Command::new("rm").arg("-rf").arg(&src).status();
}

/// `> tree/backup.tar` with the tree being packed: the archive is not packed into itself (it was
/// stored empty or cut, with a "file grew" warning); `--stats-json` naming the archive's own file
/// is refused before anything is written (the statistics replaced the archive).
#[test]
fn the_archive_is_never_packed_into_itself_or_overwritten_by_statistics() {
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("tree");
    file(&tree, "f", b"data", 0o644);
    let target = tree.join("backup.tar");
    let out = archiver()
        .args(["pack", "-C"])
        .arg(&tree)
        .arg(".")
        .stdout(std::fs::File::create(&target).unwrap())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let names = String::from_utf8(ok(archiver().arg("list").arg(&target)).stdout).unwrap();
    assert_eq!(names, "f\n.archiver/MANIFEST.b3\n");

    let archive = work.path().join("s.tar");
    let out = archiver()
        .args(["pack", "-o"])
        .arg(&archive)
        .arg("--stats-json")
        .arg(work.path().join(".").join("s.tar"))
        .arg("-C")
        .arg(&tree)
        .arg("f")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr_of(&out).contains("that is the archive's own file"));
    assert!(!archive.exists());
}

#[test]
fn listing_into_a_closed_pipe_is_quiet() {
    let work = tempfile::tempdir().unwrap();
    for i in 0..3000 {
        file(
            work.path(),
            &format!("d/file-with-a-long-name-{i:05}"),
            b"",
            0o644,
        );
    }
    let archive = work.path().join("a.tar");
    ok(archiver()
        .arg("pack")
        .arg("-C")
        .arg(work.path().join("d"))
        .arg(".")
        .arg("-o")
        .arg(&archive));
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "'{}' list '{}' | head -n 1; echo \"status=${{PIPESTATUS:-$?}}\"",
            env!("CARGO_BIN_EXE_archiver"),
            archive.display()
        ))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("file-with-a-long-name-00000\n"), "{text}");
    assert!(out.stderr.is_empty(), "{}", stderr_of(&out));
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "'{}' list '{}' | head -n 1 >/dev/null; echo ${{PIPESTATUS[0]}}",
            env!("CARGO_BIN_EXE_archiver"),
            archive.display()
        ))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "0",
        "{}",
        stderr_of(&out)
    );
}

#[test]
fn archive_into_a_closed_pipe_is_an_error() {
    let work = tempfile::tempdir().unwrap();
    let big: Vec<u8> = (0..8 << 20).map(|i: u32| ((i * 7) >> 3) as u8).collect();
    file(work.path(), "big", &big, 0o644);
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "'{}' pack -C '{}' . | head -c 1000 >/dev/null; echo ${{PIPESTATUS[0]}}",
            env!("CARGO_BIN_EXE_archiver"),
            work.path().display()
        ))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "2");
    let err = stderr_of(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("archiver: stdout: writing the archive: ") && err.contains("Broken pipe"),
        "{err}"
    );
}

/// `-o /dev/null` or a FIFO: written in place. Replacing a device with a regular file by an atomic
/// rename would be a disaster (as root it would replace /dev/null).
#[test]
fn output_to_a_fifo_is_written_in_place() {
    let work = tempfile::tempdir().unwrap();
    file(work.path(), "src/f", b"hello", 0o644);
    let fifo = work.path().join("out.fifo");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(fifo).unwrap())
    };
    ok(archiver()
        .arg("pack")
        .arg("-C")
        .arg(work.path().join("src"))
        .arg(".")
        .arg("-o")
        .arg(&fifo));
    let bytes = reader.join().unwrap();
    let names =
        String::from_utf8(ok(archiver().args(["list", "-"]).stdin_bytes(&bytes)).stdout).unwrap();
    assert_eq!(names, "f\n.archiver/MANIFEST.b3\n");
    use std::os::unix::fs::FileTypeExt;
    assert!(
        std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo(),
        "the FIFO was replaced"
    );
}

/// No bar on a pipe unless asked; `--progress` forces it, `-q` and `--no-progress` never show it.
#[test]
fn progress_bar_only_when_wanted() {
    let work = tempfile::tempdir().unwrap();
    file(work.path(), "f", &vec![7u8; 300_000], 0o644);
    let quiet = archiver()
        .args(["pack", "-o", "-"])
        .arg("-C")
        .arg(work.path())
        .arg(".")
        .output()
        .unwrap();
    assert!(quiet.stderr.is_empty());
    let forced = archiver()
        .args(["pack", "--progress", "-o", "-"])
        .arg("-C")
        .arg(work.path())
        .arg(".")
        .output()
        .unwrap();
    assert!(forced.status.success());
    assert!(
        String::from_utf8_lossy(&forced.stderr).contains("entries"),
        "{}",
        String::from_utf8_lossy(&forced.stderr)
    );
    let never = archiver()
        .args(["pack", "--progress", "--no-progress", "-o", "-"])
        .arg("-C")
        .arg(work.path())
        .arg(".")
        .output()
        .unwrap();
    assert!(never.stderr.is_empty());
    let archive = work.path().join("a.tar");
    ok(archiver()
        .arg("pack")
        .arg("-C")
        .arg(work.path())
        .arg(".")
        .arg("-o")
        .arg(&archive));
    for cmd in ["unpack", "verify"] {
        let mut c = archiver();
        c.args([cmd, "--progress"]).arg(&archive);
        if cmd == "unpack" {
            c.arg("-C").arg(work.path().join("x"));
        }
        let out = c.output().unwrap();
        assert!(out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("archiver: progress: "),
            "{cmd}"
        );
    }
}

#[test]
fn completions_and_man_page_come_from_the_cli_definition() {
    for shell in ["bash", "zsh", "fish"] {
        let out = clean(archiver().args(["completions", shell]));
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(
            text.contains("archiver") && text.contains("unpack") && text.contains("keep-existing"),
            "{shell}"
        );
    }
    let man = String::from_utf8(clean(archiver().arg("man")).stdout).unwrap();
    assert!(
        man.contains(".TH archiver 1") && man.contains("Fast, deterministic"),
        "{man}"
    );
    // One page per subcommand, with its own options.
    let pack = String::from_utf8(clean(archiver().args(["man", "pack"])).stdout).unwrap();
    assert!(
        pack.contains(".TH archiver-pack 1") && pack.contains("directory"),
        "{pack}"
    );
    // Completions offer the values of --format and --zip-method.
    let bash = String::from_utf8(clean(archiver().args(["completions", "bash"])).stdout).unwrap();
    assert!(
        bash.contains("tar.zst") && bash.contains("deflate"),
        "{bash}"
    );
}

/// Symlinks that unpack will refuse (absolute, or leading above the archive's top) are stored as
/// they are, with a notice naming each and the option that extracts them; not a warning about the
/// run, so the exit status stays 0.
#[test]
fn pack_names_links_that_unpack_will_refuse() {
    let work = tempfile::tempdir().unwrap();
    let app = work.path().join("app");
    file(&app, "run.sh", b"#!/bin/sh\n", 0o755);
    std::fs::create_dir_all(app.join("bin")).unwrap();
    std::os::unix::fs::symlink("/usr/bin/python3", app.join("bin/python")).unwrap();
    std::os::unix::fs::symlink("../run.sh", app.join("bin/run")).unwrap();
    let out = archiver()
        .args(["pack", "-o", "-", "-C"])
        .arg(&app)
        .arg(".")
        .output()
        .unwrap();
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("bin/python") && err.contains("--allow-outside-links"),
        "{err}"
    );
}

/// `-o` names a format we do not write, or contradicts `-f`: an error, never a silent tar.
#[test]
fn output_extension_must_name_a_format_we_write() {
    let work = tempfile::tempdir().unwrap();
    file(work.path(), "src/a", b"a", 0o644);
    for (args, says) in [
        (vec!["-o", "x.tar.xz"], "does not write .tar.xz"),
        (vec!["-o", "x.7z"], "does not write .7z"),
        (vec!["-o", "x"], "cannot tell the format"),
        (vec!["-o", "x.zip", "-f", "tar"], "says zip but -f says tar"),
    ] {
        let out = archiver()
            .current_dir(work.path())
            .arg("pack")
            .args(&args)
            .arg("src")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            stderr_of(&out).contains(says),
            "{args:?}: {}",
            stderr_of(&out)
        );
    }
    let names: Vec<_> = std::fs::read_dir(work.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["src"], "nothing may be written");
    ok(archiver()
        .current_dir(work.path())
        .args(["pack", "-o", "x.bin", "-f", "tar", "src"]));
}

/// Paths are stored as given (CLI.md): `pack app` keeps `app/`, `-C app .` stores the contents,
/// a leading `/` is removed with a warning, and two paths storing one name are an error.
#[test]
fn paths_are_stored_as_given() {
    let work = tempfile::tempdir().unwrap();
    file(work.path(), "app/src/x", b"x", 0o644);
    let list = |args: &[&str]| {
        let out = ok(archiver()
            .current_dir(work.path())
            .arg("pack")
            .args(args)
            .args(["-o", "-"]));
        String::from_utf8(ok(archiver().args(["list", "-"]).stdin_bytes(&out.stdout)).stdout)
            .unwrap()
    };
    assert_eq!(
        list(&["app"]),
        "app/\napp/src/\napp/src/x\n.archiver/MANIFEST.b3\n"
    );
    assert_eq!(
        list(&["-C", "app", "."]),
        "src/\nsrc/x\n.archiver/MANIFEST.b3\n"
    );
    let abs = work.path().join("app/src");
    let out = archiver()
        .args(["pack", "-o", "-"])
        .arg(&abs)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(
        stderr_of(&out).contains("removing leading '/'"),
        "{}",
        stderr_of(&out)
    );
    let out = archiver()
        .current_dir(work.path())
        .args(["pack", "-o", "-", "app", "./app/"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr_of(&out).starts_with(
            "archiver: ./app/: would be stored as app, which app also stores; give only one of them"
        ),
        "{}",
        stderr_of(&out)
    );
    assert!(out.stdout.is_empty());
}

/// Replacing an existing archive keeps its permission bits: a private (0600) archive never becomes
/// world-readable because it was written again.
#[test]
fn replacing_an_archive_keeps_its_mode() {
    use std::os::unix::fs::PermissionsExt;
    let work = tempfile::tempdir().unwrap();
    file(work.path(), "src/a", b"a", 0o644);
    let target = work.path().join("private.tar");
    std::fs::write(&target, b"old").unwrap();
    set_mode(&target, 0o600);
    ok(archiver()
        .current_dir(work.path())
        .args(["pack", "-o", "private.tar", "src"]));
    let mode = std::fs::metadata(&target).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_ne!(std::fs::read(&target).unwrap(), b"old");
}

/// `--stats` of pack, unpack and verify count the same things the same way: the manifest is ours,
/// not a user file, in none of them.
#[test]
fn pack_and_unpack_counts_agree() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    file(&src, "a.txt", b"a", 0o644);
    file(&src, "d/b.txt", b"bb", 0o644);
    file(&src, "d/e/c.txt", b"ccc", 0o644);
    std::os::unix::fs::symlink("a.txt", src.join("link")).unwrap();
    std::fs::hard_link(src.join("a.txt"), src.join("hard")).unwrap();
    let counts = |out: &std::process::Output| -> String {
        let err = stderr_of(out);
        let line = err
            .lines()
            .find(|l| l.starts_with("files "))
            .unwrap_or_else(|| panic!("no counts in: {err}"));
        // files N  dirs N  symlinks N  hardlinks N
        line.split("  ").take(4).collect::<Vec<_>>().join("  ")
    };
    for format in ["tar", "tar.zst", "zip"] {
        let archive = work.path().join(format!("a.{format}"));
        let json_path = work.path().join(format!("stats-{format}.json"));
        let packed = ok(pack_dir(&src)
            .arg("--stats")
            .arg("--stats-json")
            .arg(&json_path)
            .arg("-o")
            .arg(&archive));
        let want = counts(&packed);
        // The JSON says what the table says, the bottleneck verdict included (CLI.md).
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&json_path).unwrap()).unwrap();
        let verdict = json["verdict"].as_str().unwrap_or_default();
        assert!(
            verdict.starts_with("bottleneck: ") && stderr_of(&packed).contains(verdict),
            "{format}: {json}"
        );
        let files = if format == "zip" { 4 } else { 3 };
        assert_eq!(json["files"], files, "{format}: {json}");
        assert!(
            json["stages"].as_array().is_some_and(|s| s.len() >= 4),
            "{format}: {json}"
        );
        // tar.zst's compressing threads are a stage of their own; plain tar and zip have none.
        let compress = stderr_of(&packed)
            .lines()
            .any(|l| l.starts_with("compress "));
        assert_eq!(
            compress,
            format == "tar.zst",
            "{format}: {}",
            stderr_of(&packed)
        );
        // zip has no hard links: the second name is stored as a file of its own.
        let expected = if format == "zip" {
            "files 4  dirs 2  symlinks 1  hardlinks 0"
        } else {
            "files 3  dirs 2  symlinks 1  hardlinks 1"
        };
        assert_eq!(want, expected, "{format}");
        let dest = work.path().join(format!("x-{format}"));
        let unpacked = ok(archiver()
            .args(["unpack", "--stats", "--no-sync"])
            .arg(&archive)
            .arg("-C")
            .arg(&dest));
        let verified = ok(archiver().args(["verify", "--stats"]).arg(&archive));
        assert_eq!(counts(&unpacked), want, "{format}: unpack");
        assert_eq!(counts(&verified), want, "{format}: verify");
        // Where the time went, stage by stage, as pack's --stats says it.
        let err = stderr_of(&unpacked);
        for stage in ["read ", "write ", "check ", "commit "] {
            assert!(err.lines().any(|l| l.starts_with(stage)), "{format}: {err}");
        }
        assert!(err.contains("bottleneck: "), "{format}: {err}");
    }
}

/// `--max-output` reads sizes as GNU tools do (binary multiples, fractions, IEC suffixes) and
/// refuses what is not a size, as a usage error.
#[test]
fn max_output_takes_the_usual_size_forms() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    file(&src, "big", &[7u8; 2900], 0o644);
    let archive = work.path().join("a.tar");
    ok(pack_dir(&src).arg("-o").arg(&archive));
    for (limit, fits) in [
        ("2K", false),
        ("2.5KiB", false),
        ("3K", true),
        ("1.5G", true),
    ] {
        let out = archiver()
            .args(["unpack", "--no-sync", "--max-output", limit])
            .arg(&archive)
            .arg("-C")
            .arg(work.path().join(format!("x-{limit}")))
            .output()
            .unwrap();
        let want = if fits { Some(0) } else { Some(2) };
        assert_eq!(out.status.code(), want, "{limit}: {}", stderr_of(&out));
        if !fits {
            assert!(
                stderr_of(&out).contains("--max-output"),
                "{}",
                stderr_of(&out)
            );
        }
    }
    let out = archiver()
        .args(["unpack", "--max-output", "12 parsecs"])
        .arg(&archive)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr_of(&out).contains("is not a size"),
        "{}",
        stderr_of(&out)
    );
}

/// An output in a directory that does not exist: the path once and what the system said, never
/// the temporary file's random name.
#[test]
fn an_output_that_cannot_be_created_is_named_once() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    file(&src, "a.txt", b"a", 0o644);
    let out = work.path().join("missing-dir/out.tar");
    let run = archiver()
        .arg("pack")
        .arg(&src)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{err}");
    assert!(
        err.contains("out.tar: cannot create the output file: No such file or directory"),
        "{err}"
    );
    assert!(
        !err.contains(".out.tar.") && !err.contains(" at path "),
        "{err}"
    );
    assert_eq!(err.matches("out.tar").count(), 1, "{err}");
}

/// pack refuses to write an archive to a terminal: stdout a terminal, or `-o` naming one (a
/// terminal device is not a file to replace, and `-o /dev/tty` is no way around the rule).
#[test]
fn an_archive_is_never_written_to_a_terminal() {
    let python = require("python3");
    let script = r#"
import os, pty, subprocess, sys
master, slave = pty.openpty()
args = [a.replace("@TTY@", os.ttyname(slave)) for a in sys.argv[1:]]
p = subprocess.run(args, stdin=subprocess.DEVNULL, stdout=slave, stderr=subprocess.PIPE, timeout=20)
sys.stderr.buffer.write(p.stderr)
sys.exit(p.returncode)
"#;
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    file(&src, "a.txt", b"a", 0o644);
    for extra in [&[][..], &["-o", "@TTY@", "-f", "tar"], &["-o", "-"]] {
        let out = output_within(
            Command::new(&python)
                .arg("-c")
                .arg(script)
                .arg(bin())
                .args(["pack", "-C"])
                .arg(&src)
                .arg(".")
                .args(extra),
            30,
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {err}");
        assert!(err.contains("to a terminal"), "{extra:?}: {err}");
    }
}

/// `pack -v` lists each entry as the archive names it, on stderr, as `tar cv` does: directories
/// with a trailing slash; stdout carries only the archive.
#[test]
fn pack_verbose_lists_entries_like_tar() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    file(&src, "sub/f.txt", b"x", 0o644);
    file(&src, "top.txt", b"y", 0o644);
    let out = archiver()
        .args(["pack", "-v", "-j", "2", "-f", "tar", "-C"])
        .arg(&src)
        .arg(".")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let listed = stderr_of(&out);
    assert_eq!(
        listed.lines().collect::<Vec<_>>(),
        ["sub/", "sub/f.txt", "top.txt", ".archiver/MANIFEST.b3"]
    );
    assert!(out.stdout.len() >= 2048, "the archive on stdout");
}

/// `--stats-json -` writes the statistics to stdout when the archive goes to a file, and is
/// refused up front (exit 2, nothing written) when stdout carries the archive.
#[test]
fn stats_json_dash_is_stdout_unless_the_archive_is_there() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    file(&src, "a.txt", b"a", 0o644);
    let archive = work.path().join("a.tar");
    let out = archiver()
        .args(["pack", "--stats-json", "-", "-o"])
        .arg(&archive)
        .arg("-C")
        .arg(&src)
        .arg(".")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["files"], 1);
    assert!(!work.path().join("-").exists() && !std::path::Path::new("-").exists());
    let out = archiver()
        .args(["pack", "--stats-json", "-", "-C"])
        .arg(&src)
        .arg(".")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert!(stderr_of(&out).contains("--stats-json -: stdout carries the archive"));
}
