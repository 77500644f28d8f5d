//! Differential test: `archiver list` reads every tar archive the suite has exactly as GNU tar
//! reads it — the same entries in the same order, with the same types, sizes and link targets.
//!
//! Archives: the shared corpus (tar, tar.gz, tar.zst), archives written by GNU tar, bsdtar and
//! Python's tarfile in each of their formats, and hand-made variants of every header kind (type
//! flags, sizes on types without data, GNU and pax extensions), built here by a small header
//! writer so every byte is explained.
//!
//! The reference is GNU tar's own reading. GNU tar's listing (`tar t`) and its extraction
//! (`tar x`) disagree in one place: after a symlink, device, FIFO or regular-file-typed directory
//! (`name/`) whose size field is not zero, `tar t` skips that many bytes as data while `tar x`
//! (and bsdtar and Python) read the next header there. Where the two differ, extraction is the
//! reference (docs/FORMAT.md, "Reading tar"): it decides what lands on disk.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::*;

/// One entry as compared: name and link target in `archiver list`'s display form.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    name: String,
    kind: &'static str,
    /// Compared only for entries whose data is a file's content.
    size: Option<u64>,
    link: Option<String>,
}

/// `archiver list`'s display form of raw bytes: UTF-8 as is, other bytes as `\ooo`.
fn display(raw: &[u8]) -> String {
    let mut s = String::new();
    for chunk in raw.utf8_chunks() {
        s.push_str(chunk.valid());
        for b in chunk.invalid() {
            s.push_str(&format!("\\{b:03o}"));
        }
    }
    s
}

/// Reads one C-quoted string (GNU tar's `--quoting-style=c`) at the start of `s`; returns the raw
/// bytes and the rest of the line.
fn unquote(s: &[u8]) -> Option<(Vec<u8>, &[u8])> {
    let mut out = Vec::new();
    let mut i = 1;
    if s.first() != Some(&b'"') {
        return None;
    }
    while i < s.len() {
        match s[i] {
            b'"' => return Some((out, &s[i + 1..])),
            b'\\' => {
                let c = *s.get(i + 1)?;
                i += 2;
                match c {
                    b'0'..=b'7' => {
                        let mut v = u32::from(c - b'0');
                        for _ in 0..2 {
                            match s.get(i) {
                                Some(&d @ b'0'..=b'7') => {
                                    v = v * 8 + u32::from(d - b'0');
                                    i += 1;
                                }
                                _ => break,
                            }
                        }
                        out.push(v as u8);
                    }
                    b'a' => out.push(7),
                    b'b' => out.push(8),
                    b'f' => out.push(12),
                    b'n' => out.push(b'\n'),
                    b'r' => out.push(b'\r'),
                    b't' => out.push(b'\t'),
                    b'v' => out.push(11),
                    other => out.push(other),
                }
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    None
}

/// Parses `tar -tvv --quoting-style=c` (or `-xvv`) output: one entry per line.
fn parse_gnu(out: &[u8]) -> Vec<Seen> {
    let mut seen = Vec::new();
    // `tar x -vv` also reports the parent directories it creates: not entries.
    let creating = |l: &[u8]| l.windows(19).any(|w| w == b"Creating directory:");
    for line in out
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty() && !creating(l))
    {
        let Some(q) = line.iter().position(|&b| b == b'"') else {
            panic!("unexpected GNU tar line: {}", String::from_utf8_lossy(line));
        };
        let head = String::from_utf8_lossy(&line[..q]).into_owned();
        let fields: Vec<&str> = head.split_whitespace().collect();
        let letter = fields[0].chars().next().unwrap();
        let (name, rest) = unquote(&line[q..]).expect("quoted name");
        let kind = match letter {
            '-' => "file",
            'C' if name.ends_with(b"/") => "dir",
            'C' => "file",
            'd' => "dir",
            'l' => "symlink",
            'h' => "hardlink",
            'c' => "char",
            'b' => "block",
            'p' => "fifo",
            _ => "other",
        };
        let size = match letter {
            '-' | '?' => fields[2].parse().ok(),
            'C' if kind == "file" => fields[2].parse().ok(),
            _ => None,
        };
        let link = match kind {
            "symlink" => rest.strip_prefix(b" -> ").and_then(unquote).map(|l| l.0),
            // GNU tar prints hard link targets with a leading `/` removed; so do we, below.
            "hardlink" => rest
                .strip_prefix(b" link to ")
                .and_then(unquote)
                .map(|l| l.0),
            _ => None,
        };
        seen.push(Seen {
            name: display(&name),
            kind,
            size,
            link: link.map(|l| display(strip_slashes(&l))),
        });
    }
    seen
}

fn strip_slashes(l: &[u8]) -> &[u8] {
    let mut l = l;
    while let Some(r) = l.strip_prefix(b"/") {
        l = r;
    }
    l
}

fn parse_ours(json: &[u8]) -> Vec<Seen> {
    let v: serde_json::Value = serde_json::from_slice(json).expect("list --json output");
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let kind: &'static str = match e["type"].as_str().unwrap() {
                "file" => "file",
                "dir" => "dir",
                "symlink" => "symlink",
                "hardlink" => "hardlink",
                "char" => "char",
                "block" => "block",
                "fifo" => "fifo",
                _ => "other",
            };
            let link = e["link_target"].as_str().map(|l| match kind {
                "hardlink" => l.trim_start_matches('/').to_string(),
                _ => l.to_string(),
            });
            Seen {
                name: e["path"].as_str().unwrap().to_string(),
                kind,
                size: e["size"].as_u64(),
                link: if matches!(kind, "symlink" | "hardlink") {
                    link
                } else {
                    None
                },
            }
        })
        .collect()
}

fn gnu_tar(args: &[&str], archive: &Path, scratch: Option<&Path>) -> (bool, Vec<Seen>, String) {
    let mut c = Command::new(require("tar"));
    c.env("LC_ALL", "C")
        .env("TZ", "UTC")
        .args(["--numeric-owner", "--quoting-style=c"])
        .args(args)
        .arg("-f")
        .arg(archive);
    if let Some(dir) = scratch {
        c.arg("-C").arg(dir).arg("--no-same-owner");
    }
    let out = c.output().unwrap();
    (
        out.status.success(),
        parse_gnu(&out.stdout),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Compares one archive; returns a description of the difference, if any.
fn compare(archive: &Path, scratch_root: &Path) -> Option<String> {
    let (listed_ok, listed, list_err) = gnu_tar(&["-tvv"], archive, None);
    let scratch = tempfile::tempdir_in(scratch_root).unwrap();
    let (extracted_ok, extracted, _) = gnu_tar(&["-xvv"], archive, Some(scratch.path()));
    let reference = if listed == extracted {
        &listed
    } else {
        &extracted
    };
    // GNU tar reads it cleanly only if both listing and extraction succeed (extraction also fails
    // where it cannot create an entry, e.g. a hard link to a missing file: then we are only held
    // to the same entries).
    let reference_ok = listed_ok && extracted_ok;
    let ours = archiver()
        .args(["list", "--json"])
        .arg(archive)
        .output()
        .unwrap();
    let code = ours.status.code();
    let name = archive.file_name().unwrap().to_string_lossy().into_owned();
    if !matches!(code, Some(0) | Some(2)) {
        return Some(format!("{name}: archiver exited {code:?}"));
    }
    if code == Some(2) {
        let err = String::from_utf8_lossy(&ours.stderr);
        // Stricter than GNU tar on purpose: a stream without its end-of-archive marker is
        // truncated (docs/FORMAT.md).
        if err.contains("without the end-of-archive marker") && tar_lacks_end_marker(archive) {
            return None;
        }
        // We refused it: fine only where GNU tar does not read it cleanly either.
        return reference_ok.then(|| {
            format!(
                "{name}: GNU tar lists it without an error, archiver fails: {}",
                String::from_utf8_lossy(&ours.stderr)
            )
        });
    }
    let mine = parse_ours(&ours.stdout);
    let same = mine.len() == reference.len()
        && mine.iter().zip(reference).all(|(m, r)| {
            m.name == r.name
                && m.kind == r.kind
                && m.link == r.link
                && (r.size.is_none() || m.size == r.size)
        });
    (!same).then(|| {
        format!(
            "{name}: entries differ (GNU tar {}{})\n  GNU tar: {reference:?}\n  archiver: {mine:?}",
            if reference_ok { "ok" } else { "failed: " },
            if reference_ok { "" } else { list_err.trim() }
        )
    })
}

fn corpus_tars() -> Vec<PathBuf> {
    let root =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus/libarchive/archives");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("shared corpus present")
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.ends_with(".tar") || n.ends_with(".tar.gz") || n.ends_with(".tar.zst")
        })
        .collect();
    v.sort();
    v
}

/// A tree with every kind of entry peers store: long names, odd names, symlinks, a hard link, an
/// empty directory, a FIFO and a sparse file.
fn peer_tree(src: &Path) {
    gnarly_tree(src, 40, 7);
    file(src, "links/target.txt", b"hello", 0o644);
    std::os::unix::fs::symlink("target.txt", src.join("links/sym")).unwrap();
    std::os::unix::fs::symlink(
        format!("{}/x", "t".repeat(150)),
        src.join("links/long-target"),
    )
    .unwrap();
    std::fs::hard_link(src.join("links/target.txt"), src.join("links/hard")).unwrap();
    std::fs::create_dir_all(src.join("empty/dir")).unwrap();
    let fifo = src.join("links/fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    let sparse = std::fs::File::create(src.join("sparse.img")).unwrap();
    sparse.set_len(3 << 20).unwrap();
    use std::os::unix::fs::FileExt;
    sparse.write_all_at(b"data in the middle", 1 << 20).unwrap();
}

/// Archives of `src` written by GNU tar, bsdtar, Python and archiver, in each of their formats.
fn peer_archives(src: &Path, out: &Path) -> Vec<PathBuf> {
    let mut made = Vec::new();
    let mut run = |name: &str, cmd: &mut Command| {
        let path = out.join(name);
        let r = cmd.output().unwrap();
        // Formats that cannot hold some entry (v7 and long names) fail: nothing to compare.
        if r.status.success() && path.exists() {
            made.push(path);
        }
    };
    for format in ["gnu", "oldgnu", "posix", "ustar", "v7"] {
        let name = format!("gnu-{format}.tar");
        run(
            &name,
            Command::new(require("tar"))
                .arg(format!("--format={format}"))
                .arg("-cf")
                .arg(out.join(&name))
                .arg("-C")
                .arg(src)
                .arg("."),
        );
    }
    for (format, version) in [
        ("gnu", ""),
        ("posix", "0.0"),
        ("posix", "0.1"),
        ("posix", "1.0"),
    ] {
        let name = format!("gnu-sparse-{format}{version}.tar");
        let mut c = Command::new(require("tar"));
        c.arg(format!("--format={format}")).arg("-S");
        if !version.is_empty() {
            c.arg(format!("--sparse-version={version}"));
        }
        run(
            &name,
            c.arg("-cf")
                .arg(out.join(&name))
                .arg("-C")
                .arg(src)
                .arg("sparse.img")
                .arg("links"),
        );
    }
    for format in ["pax", "ustar", "gnutar", "v7"] {
        let name = format!("bsdtar-{format}.tar");
        run(
            &name,
            Command::new(require("bsdtar"))
                .arg("--format")
                .arg(format)
                .arg("-cf")
                .arg(out.join(&name))
                .arg("-C")
                .arg(src)
                .arg("."),
        );
    }
    for format in ["GNU", "PAX", "USTAR"] {
        let name = format!("python-{format}.tar");
        let script = format!(
            "import tarfile,sys\nwith tarfile.open(sys.argv[1], 'w', format=tarfile.{format}_FORMAT) as t:\n    t.add(sys.argv[2], arcname='.')\n"
        );
        run(
            &name,
            Command::new(require("python3"))
                .arg("-c")
                .arg(script)
                .arg(out.join(&name))
                .arg(src),
        );
    }
    for ext in ["tar", "tar.gz", "tar.zst"] {
        let name = format!("archiver.{ext}");
        run(
            &name,
            archiver()
                .args(["pack", "-q", "--exclude", "fifo", "-o"])
                .arg(out.join(&name))
                .arg(".")
                .current_dir(src),
        );
    }
    made
}

/// A minimal tar header writer for the hand-made variants: ustar (or GNU, or v7) magic, octal
/// fields, a correct checksum.
struct Hdr {
    block: [u8; 512],
}

impl Hdr {
    fn new(name: &[u8], typeflag: u8, size: u64) -> Hdr {
        let mut h = Hdr { block: [0; 512] };
        h.block[..name.len()].copy_from_slice(name);
        h.field(100, 8, 0o644);
        h.field(108, 8, 1000);
        h.field(116, 8, 1000);
        h.field(124, 12, size);
        h.field(136, 12, 1_700_000_000);
        h.block[156] = typeflag;
        h.block[257..265].copy_from_slice(b"ustar\x0000");
        h
    }
    fn field(&mut self, at: usize, len: usize, v: u64) {
        let s = format!("{v:0w$o}\0", w = len - 1);
        self.block[at..at + len].copy_from_slice(s.as_bytes());
    }
    fn link(mut self, target: &[u8]) -> Self {
        self.block[157..157 + target.len()].copy_from_slice(target);
        self
    }
    fn gnu(mut self) -> Self {
        self.block[257..265].copy_from_slice(b"ustar  \0");
        self
    }
    fn v7(mut self) -> Self {
        self.block[257..265].fill(0);
        self
    }
    fn bytes(mut self) -> Vec<u8> {
        self.block[148..156].fill(b' ');
        let sum: u32 = self.block.iter().map(|&b| u32::from(b)).sum();
        self.block[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        self.block.to_vec()
    }
}

fn padded(d: &[u8]) -> Vec<u8> {
    let mut v = d.to_vec();
    v.resize(d.len().div_ceil(512) * 512, 0);
    v
}

fn pax(records: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in records {
        let body = [b" ", k.as_bytes(), b"=", v, b"\n"].concat();
        let mut n = body.len() + 1;
        while n.to_string().len() + body.len() != n {
            n = n.to_string().len() + body.len();
        }
        out.extend_from_slice(n.to_string().as_bytes());
        out.extend_from_slice(&body);
    }
    out
}

/// An extension header (`x`, `X`, `g`, `L`, `K`) and its data.
fn ext(typeflag: u8, name: &[u8], data: &[u8]) -> Vec<u8> {
    let mut h = Hdr::new(name, typeflag, data.len() as u64);
    if matches!(typeflag, b'L' | b'K') {
        h = h.gnu();
    }
    [h.bytes(), padded(data)].concat()
}

/// Hand-made archives, one per header kind and per trap, each ending in two zero blocks.
fn variants() -> Vec<(String, Vec<u8>)> {
    let end = vec![0u8; 1024];
    // A block that parses as a header: what a reader that skips wrongly would list.
    let smuggled = Hdr::new(b"smuggled", b'0', 0).bytes();
    let after = Hdr::new(b"after", b'0', 0).bytes();
    let mut v: Vec<(String, Vec<u8>)> = Vec::new();
    let types: &[u8] = b"01234567ADIMNSVXZ9\0";
    for &t in types {
        let label = if t == 0 {
            "nul".to_string()
        } else {
            (t as char).to_string()
        };
        let link: &[u8] = if matches!(t, b'1' | b'2') {
            b"target"
        } else {
            b""
        };
        for size in [0u64, 5, 512] {
            let mut h = Hdr::new(b"entry", t, size).link(link);
            if t == b'S' {
                // Old GNU sparse: one segment at offset 2 of a 10-byte file.
                h = h.gnu();
                h.field(386, 12, 2);
                h.field(398, 12, size);
                h.field(483, 12, size + 2);
            }
            let data = if size == 512 {
                smuggled.clone()
            } else {
                padded(&b"hello"[..size as usize])
            };
            v.push((
                format!("type-{label}-size-{size}"),
                [h.bytes(), data, after.clone(), end.clone()].concat(),
            ));
        }
        // Trailing slash on the name, with a size.
        v.push((
            format!("type-{label}-slash"),
            [
                Hdr::new(b"d/", t, 512).link(link).bytes(),
                smuggled.clone(),
                after.clone(),
                end.clone(),
            ]
            .concat(),
        ));
        // Old GNU and v7 magic.
        v.push((
            format!("type-{label}-gnu-magic"),
            [
                Hdr::new(b"entry", t, 512).link(link).gnu().bytes(),
                smuggled.clone(),
                after.clone(),
                end.clone(),
            ]
            .concat(),
        ));
        v.push((
            format!("type-{label}-v7"),
            [
                Hdr::new(b"entry", t, 512).link(link).v7().bytes(),
                smuggled.clone(),
                after.clone(),
                end.clone(),
            ]
            .concat(),
        ));
        // pax overrides of size, path, linkpath, uid, mtime, on every type.
        for x in [b'x', b'X'] {
            let recs = pax(&[
                ("path", b"pax/path"),
                ("linkpath", b"pax-link"),
                ("size", b"512"),
                ("uid", b"4242"),
                ("mtime", b"1234567890.5"),
            ]);
            v.push((
                format!("type-{label}-{}-overrides", x as char),
                [
                    ext(x, b"PaxHeaders/entry", &recs),
                    Hdr::new(b"entry", t, 0).link(link).bytes(),
                    smuggled.clone(),
                    after.clone(),
                    end.clone(),
                ]
                .concat(),
            ));
        }
        // Global records apply to every later entry.
        v.push((
            format!("type-{label}-global"),
            [
                ext(
                    b'g',
                    b"GlobalHead",
                    &pax(&[("uid", b"77"), ("linkpath", b"glink")]),
                ),
                Hdr::new(b"entry", t, 0).link(link).bytes(),
                after.clone(),
                end.clone(),
            ]
            .concat(),
        ));
        // GNU long name and link.
        v.push((
            format!("type-{label}-long"),
            [
                ext(
                    b'L',
                    b"././@LongLink",
                    format!("{}/name\0", "n".repeat(200)).as_bytes(),
                ),
                ext(
                    b'K',
                    b"././@LongLink",
                    format!("{}/link\0", "k".repeat(200)).as_bytes(),
                ),
                Hdr::new(b"short", t, 0).link(b"short-link").bytes(),
                after.clone(),
                end.clone(),
            ]
            .concat(),
        ));
    }
    // pax size smaller and larger than the header's; pax beats L in either order; redundant L.
    v.push((
        "pax-size-smaller".into(),
        [
            ext(b'x', b"P", &pax(&[("size", b"3")])),
            Hdr::new(b"f", b'0', 512).bytes(),
            padded(b"abc"),
            after.clone(),
            end.clone(),
        ]
        .concat(),
    ));
    v.push((
        "pax-size-larger".into(),
        [
            ext(b'x', b"P", &pax(&[("size", b"600")])),
            Hdr::new(b"f", b'0', 3).bytes(),
            padded(&[b'z'; 600]),
            after.clone(),
            end.clone(),
        ]
        .concat(),
    ));
    v.push((
        "L-then-x".into(),
        [
            ext(b'L', b"././@LongLink", b"long\0"),
            ext(b'x', b"P", &pax(&[("path", b"pax")])),
            Hdr::new(b"h", b'0', 0).bytes(),
            end.clone(),
        ]
        .concat(),
    ));
    v.push((
        "x-then-L".into(),
        [
            ext(b'x', b"P", &pax(&[("path", b"pax")])),
            ext(b'L', b"././@LongLink", b"long\0"),
            Hdr::new(b"h", b'0', 0).bytes(),
            end.clone(),
        ]
        .concat(),
    ));
    v.push((
        "redundant-L".into(),
        [
            ext(b'L', b"././@LongLink", b"first\0"),
            ext(b'L', b"././@LongLink", b"second\0"),
            Hdr::new(b"h", b'0', 0).bytes(),
            end.clone(),
        ]
        .concat(),
    ));
    v.push((
        "global-replaced".into(),
        [
            ext(b'g', b"G", &pax(&[("uid", b"1")])),
            Hdr::new(b"a", b'0', 0).bytes(),
            ext(b'g', b"G", &pax(&[("uid", b"2"), ("path", b"gpath")])),
            Hdr::new(b"b", b'0', 0).bytes(),
            ext(b'x', b"P", &pax(&[("path", b"local")])),
            Hdr::new(b"c", b'0', 0).bytes(),
            end.clone(),
        ]
        .concat(),
    ));
    v.push((
        "odd-names".into(),
        [
            Hdr::new(b"tab\there", b'0', 0).bytes(),
            Hdr::new(b"nl\nesc\x1b", b'0', 0).bytes(),
            Hdr::new(b"latin1-\xe9", b'0', 0).bytes(),
            Hdr::new(b"quote\"back\\slash", b'2', 0)
                .link(b"t\"\\")
                .bytes(),
            Hdr::new("ünï".as_bytes(), b'0', 0).bytes(),
            end.clone(),
        ]
        .concat(),
    ));
    v.push((
        "old-hardlink-with-size".into(),
        [
            Hdr::new(b"f", b'0', 5).bytes(),
            padded(b"hello"),
            Hdr::new(b"h", b'1', 5).link(b"f").bytes(),
            after.clone(),
            end.clone(),
        ]
        .concat(),
    ));
    v.push((
        "one-zero-block".into(),
        [Hdr::new(b"f", b'0', 0).bytes(), vec![0; 512]].concat(),
    ));
    v.push((
        "dumpdir".into(),
        [
            Hdr::new(b"dir", b'D', 12).gnu().bytes(),
            padded(b"Ya\0Nb\0Dc\0\0\0\0"),
            after.clone(),
            end.clone(),
        ]
        .concat(),
    ));
    v
}

#[test]
fn lists_every_archive_like_gnu_tar() {
    require("tar");
    let work = tempfile::tempdir().unwrap();
    let scratch_root = work.path().join("scratch");
    std::fs::create_dir(&scratch_root).unwrap();

    let mut archives = corpus_tars();
    let src = work.path().join("src");
    peer_tree(&src);
    let peers = work.path().join("peers");
    std::fs::create_dir(&peers).unwrap();
    let made = peer_archives(&src, &peers);
    assert!(
        made.len() >= 15,
        "only these peer archives were made: {made:?}"
    );
    archives.extend(made);
    let hand = work.path().join("hand");
    std::fs::create_dir(&hand).unwrap();
    for (name, bytes) in variants() {
        let p = hand.join(format!("{name}.tar"));
        std::fs::write(&p, bytes).unwrap();
        archives.push(p);
    }

    let failures: Vec<String> = archives
        .iter()
        .filter_map(|a| compare(a, &scratch_root))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} archives read differently from GNU tar:\n{}",
        failures.len(),
        archives.len(),
        failures.join("\n")
    );
}

/// Sparse members extract with their holes as holes, as GNU tar and bsdtar extract them: same
/// content, a few blocks on disk, in every sparse format GNU tar writes. So a small archive
/// whose map declares gigabytes of holes cannot fill the disk with zeros.
#[test]
fn sparse_members_extract_as_sparse_files() {
    use std::os::unix::fs::{FileExt, MetadataExt};
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let f = std::fs::File::create(src.join("disk.img")).unwrap();
    f.set_len(256 << 20).unwrap();
    f.write_all_at(&[7u8; 100_000], 64 << 20).unwrap();
    f.write_all_at(b"tail", (256 << 20) - 4).unwrap();
    drop(f);
    let expected = std::fs::read(src.join("disk.img")).unwrap();
    for (format, version) in [
        ("gnu", ""),
        ("posix", "0.0"),
        ("posix", "0.1"),
        ("posix", "1.0"),
    ] {
        let archive = work.path().join(format!("s-{format}{version}.tar"));
        let mut c = Command::new(require("tar"));
        c.arg(format!("--format={format}")).arg("-S");
        if !version.is_empty() {
            c.arg(format!("--sparse-version={version}"));
        }
        let made = c
            .arg("-cf")
            .arg(&archive)
            .arg("-C")
            .arg(&src)
            .arg(".")
            .status();
        assert!(made.unwrap().success());
        assert!(
            std::fs::metadata(&archive).unwrap().len() < 1 << 20,
            "{format}{version}"
        );
        let dest = work.path().join(format!("d-{format}{version}"));
        let out = archiver()
            .args(["unpack", "--no-sync"])
            .arg(&archive)
            .arg("-C")
            .arg(&dest)
            .output()
            .unwrap();
        assert!(
            out.status.code() == Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got = dest.join("disk.img");
        let md = std::fs::metadata(&got).unwrap();
        assert_eq!(md.len(), 256 << 20, "{format}{version}");
        assert!(
            md.blocks() * 512 < 4 << 20,
            "{format}{version}: {} bytes on disk for a file of 100 KB of data",
            md.blocks() * 512
        );
        assert!(
            std::fs::read(&got).unwrap() == expected,
            "{format}{version}: content"
        );
        std::fs::remove_dir_all(&dest).unwrap();
    }
}
