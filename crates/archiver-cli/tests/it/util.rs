//! Helpers shared by the CLI tests: running the binary, finding peers, building and comparing trees.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Path of the `archiver` binary under test: `ARCHIVER_TEST_BIN` when set (a private copy, for
/// machines where several worktrees share one target directory and overwrite each other's
/// binary), else the one Cargo built for this test.
pub fn bin() -> PathBuf {
    std::env::var_os("ARCHIVER_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_archiver")))
}

/// The `archiver` binary under test.
pub fn archiver() -> Command {
    let mut c = Command::new(bin());
    c.env_remove("RUST_LOG").env_remove("SOURCE_DATE_EPOCH");
    c
}

/// Path of a peer tool. Peers are part of the test suite: `cargo xtask test` and `.ci/run` install
/// them, so a missing one is a failure with instructions, never a silent skip.
pub fn require(tool: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let p = dir.join(tool);
        if p.is_file() {
            return p;
        }
    }
    panic!("peer tool `{tool}` not found on PATH: run `cargo xtask deps` (or .ci/run) to install the test peers");
}

/// Runs a command, asserting success, and returns its output.
#[track_caller]
pub fn ok(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{:?} failed with {}\nstderr:\n{}",
        cmd,
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Like [`ok`] and also asserts that nothing was printed on stderr (peers warn there).
#[track_caller]
pub fn clean(cmd: &mut Command) -> Output {
    let out = ok(cmd);
    assert!(
        out.stderr.is_empty(),
        "{:?} printed on stderr:\n{}",
        cmd,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Creates a file with content and mode, making parents.
pub fn file(root: &Path, rel: &str, content: &[u8], mode: u32) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(&p, content).unwrap();
    set_mode(&p, mode);
}

pub fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

/// What a tree holds, for equality checks: every path with its type, mode, content hash or link
/// target and mtime, plus the groups of paths that are hard links of each other.
#[derive(Debug, PartialEq, Eq, Clone)]
pub struct Snapshot {
    pub nodes: BTreeMap<PathBuf, Node>,
    pub link_groups: BTreeSet<Vec<PathBuf>>,
}

#[derive(Debug, PartialEq, Eq, Clone)]
pub enum Node {
    File { mode: u32, mtime: i64, hash: String },
    Dir { mode: u32 },
    Symlink { target: PathBuf },
}

/// Snapshot of `root`, leaving out paths for which `skip` is true.
pub fn snapshot_filtered(root: &Path, skip: &dyn Fn(&Path) -> bool) -> Snapshot {
    use std::os::unix::fs::MetadataExt;
    let mut nodes = BTreeMap::new();
    let mut inodes: BTreeMap<(u64, u64), Vec<PathBuf>> = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            if skip(&rel) {
                continue;
            }
            let md = fs::symlink_metadata(&p).unwrap();
            let node = if md.file_type().is_symlink() {
                Node::Symlink {
                    target: fs::read_link(&p).unwrap(),
                }
            } else if md.is_dir() {
                stack.push(p.clone());
                Node::Dir {
                    mode: md.mode() & 0o7777,
                }
            } else {
                if md.nlink() > 1 {
                    inodes
                        .entry((md.dev(), md.ino()))
                        .or_default()
                        .push(rel.clone());
                }
                Node::File {
                    mode: md.mode() & 0o7777,
                    mtime: md.mtime(),
                    hash: blake3_hex(&fs::read(&p).unwrap()),
                }
            };
            nodes.insert(rel, node);
        }
    }
    let link_groups = inodes
        .into_values()
        .filter(|v| v.len() > 1)
        .map(|mut v| {
            v.sort();
            v
        })
        .collect();
    Snapshot { nodes, link_groups }
}

pub fn snapshot(root: &Path) -> Snapshot {
    snapshot_filtered(root, &|_| false)
}

/// Snapshot of an extracted tree without our manifest directory.
pub fn snapshot_extracted(root: &Path) -> Snapshot {
    snapshot_filtered(root, &|rel| rel.starts_with(".archiver"))
}

pub fn blake3_hex(data: &[u8]) -> String {
    // Any stable content digest works for comparing trees; use the std-only FNV-1a to keep the
    // test independent of the hash under test.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}-{}", data.len())
}

/// Asserts two snapshots are equal, printing only the differences.
#[track_caller]
pub fn assert_same_tree(expected: &Snapshot, actual: &Snapshot) {
    if expected == actual {
        return;
    }
    let mut msg = String::new();
    for (k, v) in &expected.nodes {
        match actual.nodes.get(k) {
            None => msg.push_str(&format!("missing: {}\n", k.display())),
            Some(a) if a != v => msg.push_str(&format!(
                "differs: {}: expected {v:?}, got {a:?}\n",
                k.display()
            )),
            _ => {}
        }
    }
    for k in actual.nodes.keys() {
        if !expected.nodes.contains_key(k) {
            msg.push_str(&format!("unexpected: {}\n", k.display()));
        }
    }
    if expected.link_groups != actual.link_groups {
        msg.push_str(&format!(
            "hard link groups differ: expected {:?}, got {:?}\n",
            expected.link_groups, actual.link_groups
        ));
    }
    panic!("trees differ:\n{msg}");
}

/// A deterministic pseudo-random generator for test trees (no dependency, same on every machine).
pub struct Lcg(pub u64);

impl Lcg {
    pub fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A tree with the shapes that break archivers: deep nesting, unicode and long names, names that
/// sort differently bytewise and component-wise, empty dirs and files, symlinks (relative, dangling,
/// long targets), hard links, odd modes, a file over 1 MiB (the streamed path). `files` regular
/// files in all.
pub fn gnarly_tree(root: &Path, files: usize, seed: u64) {
    let names = [
        "a",
        "a.txt",
        "a-b",
        "a b",
        "Zed",
        "ünïcödé",
        "日本語",
        "e\u{301}",
        "x",
    ];
    tree_with_names(root, files, seed, &names);
}

/// [`gnarly_tree`] without decomposed Unicode, for comparisons with tools that normalise names to
/// NFC (bsdtar does, on some paths).
pub fn nfc_tree(root: &Path, files: usize, seed: u64) {
    let names = ["a", "a.txt", "a-b", "a b", "Zed", "ünïcödé", "日本語", "x"];
    tree_with_names(root, files, seed, &names);
}

fn tree_with_names(root: &Path, files: usize, seed: u64, names: &[&str]) {
    let mut rng = Lcg(seed);
    let long = "l".repeat(120);
    for i in 0..files {
        let depth = rng.below(6) as usize;
        let mut rel = PathBuf::new();
        for d in 0..depth {
            rel.push(format!(
                "{}{}",
                names[rng.below(names.len() as u64) as usize],
                d
            ));
        }
        let leaf = match i % 50 {
            0 => format!("{long}-{i}"),
            _ => format!("{}-{i}", names[rng.below(names.len() as u64) as usize]),
        };
        rel.push(leaf);
        let size = match rng.below(20) {
            0 => 0,
            1..=15 => rng.below(2048) as usize,
            _ => rng.below(64 << 10) as usize,
        };
        let content: Vec<u8> = (0..size)
            .map(|j| (j as u64 * 31 + seed + i as u64) as u8 % 97 + 32)
            .collect();
        let mode = [0o644, 0o600, 0o755, 0o444, 0o664][rng.below(5) as usize];
        file(root, rel.to_str().unwrap(), &content, mode);
    }
    // A deep path well past 255 bytes in total.
    let deep: PathBuf = (0..12)
        .map(|i| format!("deep-directory-level-{i:02}"))
        .collect();
    file(
        root,
        deep.join("bottom.txt").to_str().unwrap(),
        b"bottom\n",
        0o644,
    );
    // Large enough to be streamed in chunks.
    let big: Vec<u8> = (0..(3 << 20) + 17)
        .map(|i: usize| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    file(root, "big.bin", &big, 0o644);
    fs::create_dir_all(root.join("empty/nested-empty")).unwrap();
    set_mode(&root.join("empty"), 0o700);
    file(root, "empty-file", b"", 0o644);
    std::os::unix::fs::symlink("big.bin", root.join("link-to-big")).unwrap();
    std::os::unix::fs::symlink("does/not/exist", root.join("dangling")).unwrap();
    std::os::unix::fs::symlink(format!("{long}/{long}/target"), root.join("long-target")).unwrap();
    std::os::unix::fs::symlink("../a.txt-x", root.join("empty/up")).unwrap();
    file(root, "hard/original", b"shared bytes\n", 0o640);
    fs::hard_link(root.join("hard/original"), root.join("hard/second")).unwrap();
    fs::hard_link(root.join("hard/original"), root.join("a-first-name")).unwrap();
}

/// Feeding bytes to a child's stdin (through a temporary file: no thread, no deadlock).
pub trait StdinBytes {
    fn stdin_bytes(&mut self, bytes: &[u8]) -> &mut Self;
}

impl StdinBytes for Command {
    fn stdin_bytes(&mut self, bytes: &[u8]) -> &mut Self {
        use std::io::{Seek, Write};
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(bytes).unwrap();
        f.rewind().unwrap();
        self.stdin(f)
    }
}

/// Every entry below `root` that is not a directory (files, symlinks, ...), at any depth.
pub fn non_dirs_under(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

/// Whether a tar (plain, .gz or .zst) stops without its end-of-archive marker: its last block is
/// not zeros (or it is not a whole number of blocks). GNU tar and bsdtar list such archives;
/// archiver refuses them as truncated (docs/FORMAT.md, "Reading tar").
pub fn tar_lacks_end_marker(path: &Path) -> bool {
    let name = path.to_string_lossy();
    let tool = if name.ends_with(".gz") {
        Some("gzip")
    } else if name.ends_with(".zst") {
        Some("zstd")
    } else {
        None
    };
    let bytes = match tool {
        Some(t) => {
            let out = Command::new(require(t))
                .arg("-dc")
                .arg(path)
                .output()
                .unwrap();
            out.stdout
        }
        None => fs::read(path).unwrap(),
    };
    bytes.len() % 512 != 0
        || bytes.len() < 512
        || bytes[bytes.len() - 512..].iter().any(|&b| b != 0)
}

/// `archiver pack <dir>`, ready for more arguments: an archive holding `dir`'s contents. Every new
/// test that packs a directory goes through here, so a change in how paths are stored (CLI.md:
/// `pack -C dir .`) is made in one place.
pub fn pack_dir(dir: &Path) -> Command {
    let mut c = archiver();
    c.arg("pack").arg("-C").arg(dir).arg(".");
    c
}

/// Runs a command that must finish within `secs` seconds (a hang is a failure, never a stuck
/// suite); returns its output.
#[track_caller]
pub fn output_within(cmd: &mut Command, secs: u64) -> Output {
    use std::process::Stdio;
    if cmd.get_program().is_empty() {
        panic!("no program");
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // Drain both pipes on threads so a chatty child cannot block on a full pipe.
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let t1 = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut so, &mut v).ok();
        v
    });
    let t2 = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut se, &mut v).ok();
        v
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {secs} s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    Output {
        status,
        stdout: t1.join().unwrap(),
        stderr: t2.join().unwrap(),
    }
}

/// A tmpfs of `size` (`1m`, `8m`) mounted on `dir`, unmounted when dropped: a small disk that fills
/// up. `None` (the test then skips, saying so) where mounting needs a root we do not have, but
/// never on CI, which runs as root.
pub fn mount_tmpfs(dir: &Path, size: &str) -> Option<Unmount> {
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .status();
    if !mounted.is_ok_and(|s| s.success()) {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must be able to mount a tmpfs for this test"
        );
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return None;
    }
    Some(Unmount(dir.to_path_buf()))
}

/// Unmounts its directory when dropped.
pub struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// `len` incompressible bytes (xorshift64; `seed` > 0 picks the stream), the same on every machine:
/// data that keeps a compressor busy, so a signal or a closed pipe lands mid-run.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64.wrapping_mul(seed);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}
