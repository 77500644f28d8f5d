//! Numbers from hostile headers at the edges of their types: offsets that overflow when added,
//! times with no positive counterpart, sizes past any file. Each must end in a clear refusal or
//! a clean result, never a panic (the test binary is a debug build: overflow panics there) and
//! never a wrapped value that slips past a bounds check.

use std::path::Path;
use std::process::{Command, Output};

use crate::util::*;

/// Builds `path` with the Python `script` (which gets the path as its argument).
fn craft(script: &str, path: &Path) {
    let python = require("python3");
    ok(Command::new(python).arg("-c").arg(script).arg(path));
}

fn run(args: &[&str], archive: &Path, dest: Option<&Path>) -> Output {
    let mut cmd = archiver();
    cmd.args(args).arg(archive);
    if let Some(d) = dest {
        cmd.arg("-C").arg(d);
    }
    output_within(&mut cmd, 60)
}

/// `list`, `verify` and `unpack` all refuse `archive` cleanly, naming `what`.
fn refused_everywhere(archive: &Path, what: &str) {
    let dest = archive.with_extension("out");
    for args in [&["list"][..], &["verify"], &["unpack", "--no-sync"]] {
        let d = (args[0] == "unpack").then_some(dest.as_path());
        let out = run(args, archive, d);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(what), "{args:?} should say {what:?}: {err}");
    }
    assert!(
        !dest.exists() || std::fs::read_dir(&dest).unwrap().next().is_none(),
        "nothing may be extracted"
    );
}

/// A ZIP64 locator whose offset is within 56 bytes of 2^64: `offset + 56` wraps to a small
/// number that would pass a "points past the end" check.
#[test]
fn a_zip64_locator_offset_near_u64_max_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let zip = work.path().join("locator.zip");
    craft(
        r#"
import sys, zipfile, struct
path = sys.argv[1]
with zipfile.ZipFile(path, "w") as z:
    z.writestr("a.txt", b"hello")
b = open(path, "rb").read()
eocd = b.rindex(b"PK\x05\x06")
loc = struct.pack("<IIQI", 0x07064b50, 0, (1 << 64) - 8, 1)
open(path, "wb").write(b[:eocd] + loc + b[eocd:])
"#,
        &zip,
    );
    refused_everywhere(&zip, "ZIP64 end record");
}

/// A central record whose ZIP64 local-header offset plus the prefix shift wraps to 0, where a
/// real local header is: wrapping would accept an entry that lies before the archive's start.
#[test]
fn a_zip_local_offset_that_wraps_with_the_prefix_shift_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let zip = work.path().join("wrap.zip");
    craft(
        r#"
import sys, zipfile, struct
path = sys.argv[1]
with zipfile.ZipFile(path, "w") as z:
    z.writestr("wrapped.txt", b"hello")
b = bytearray(open(path, "rb").read())
eocd = b.rindex(b"PK\x05\x06")
count, cd_size, cd_at = struct.unpack_from("<HII", b, eocd + 10)
rec = bytearray(b[cd_at:cd_at + cd_size])
n, m = struct.unpack_from("<HH", rec, 28)
struct.pack_into("<I", rec, 42, 0xFFFFFFFF)
struct.pack_into("<H", rec, 30, m + 12)
rec[46 + n:46 + n] = struct.pack("<HHQ", 1, 8, (1 << 64) - 16)
end = bytearray(b[eocd:])
struct.pack_into("<I", end, 12, len(rec))
struct.pack_into("<I", end, 16, cd_at - 16)  # the directory seems 16 bytes later: a prefix
open(path, "wb").write(bytes(b[:cd_at]) + bytes(rec) + bytes(end))
"#,
        &zip,
    );
    refused_everywhere(&zip, "wrapped.txt");
}

/// A symlink whose mtime is base-256 -2^63 (i64::MIN): negating it for `utimensat` has no
/// answer in i64. It unpacks, with the earliest time there is.
#[test]
fn a_tar_time_of_i64_min_unpacks() {
    let work = tempfile::tempdir().unwrap();
    let tar = work.path().join("time.tar");
    craft(
        r#"
import sys, tarfile, io
path = sys.argv[1]
with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as t:
    for name, kind in (("old-link", tarfile.SYMTYPE), ("old-file", tarfile.REGTYPE)):
        i = tarfile.TarInfo(name)
        i.type = kind
        i.linkname = "target" if kind == tarfile.SYMTYPE else ""
        t.addfile(i, io.BytesIO(b""))
b = bytearray(open(path, "rb").read())
for at in (0, 512):
    b[at + 136:at + 148] = bytes([0xff, 0xff, 0xff, 0xff, 0x80] + [0] * 7)
    b[at + 148:at + 156] = b" " * 8
    b[at + 148:at + 156] = b"%06o\0 " % sum(b[at:at + 512])
open(path, "wb").write(b)
"#,
        &tar,
    );
    let dest = work.path().join("out");
    let out = run(&["unpack", "--no-sync"], &tar, Some(&dest));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(matches!(out.status.code(), Some(0 | 1)), "{err}");
    assert!(dest.join("old-link").symlink_metadata().is_ok(), "{err}");
    assert!(dest.join("old-file").is_file(), "{err}");
    let list = run(&["list"], &tar, None);
    assert!(
        list.status.success(),
        "{}",
        String::from_utf8_lossy(&list.stderr)
    );
}

/// A pax sparse file claiming a real size of u64::MAX: refused like any size past i64::MAX,
/// not carried on as a size that any later sum could wrap.
#[test]
fn a_sparse_real_size_past_i64_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let tar = work.path().join("sparse.tar");
    craft(
        r#"
import sys, tarfile, io
path = sys.argv[1]
body = b"1\n0\n5\n".ljust(512, b"\0") + b"hello".ljust(512, b"\0")
with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as t:
    i = tarfile.TarInfo("GNUSparseFile.0/huge-sparse")
    i.size = 1024
    i.pax_headers = {
        "GNU.sparse.major": "1",
        "GNU.sparse.minor": "0",
        "GNU.sparse.name": "huge-sparse",
        "GNU.sparse.realsize": str((1 << 64) - 1),
    }
    t.addfile(i, io.BytesIO(body))
"#,
        &tar,
    );
    refused_everywhere(&tar, "out of range");
}
