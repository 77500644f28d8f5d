//! The pipeline's promises, tested through the public API: failures end the run with the right
//! error and never hang, memory stays within the budget for a slow consumer, the output does not
//! depend on thread timing, and random trees round trip.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use archiver::{Error, Format, Packer};

fn file(root: &Path, rel: &str, content: &[u8]) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, content).unwrap();
}

fn tree(files: usize, big: usize) -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    for i in 0..files {
        file(
            t.path(),
            &format!("d{}/f{i:04}", i % 10),
            format!("content of file {i}\n").repeat(i % 50).as_bytes(),
        );
    }
    if big > 0 {
        let data: Vec<u8> = (0..big).map(|i| (i * 31 % 251) as u8).collect();
        file(t.path(), "big/blob", &data);
    }
    t
}

/// Runs `f` on a thread and fails the test if it does not finish in time: "never hang" must be
/// a failure, not a stuck CI job.
fn within<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(v) => v,
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("the pipeline hung for {secs} s"),
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("the test body panicked (see above)"),
    }
}

fn panic_at(stage: &'static str, name: &'static str) -> archiver::FaultHook {
    Arc::new(move |s: &str, rel: &Path| {
        if s == stage && rel.ends_with(name) {
            panic!("injected fault at {name}");
        }
    })
}

#[test]
fn panic_in_a_read_worker_is_an_error_naming_the_entry() {
    let t = tree(500, 3 << 20);
    let root = t.path().to_path_buf();
    for jobs in [1, 4] {
        let root = root.clone();
        let err = within(60, move || {
            Packer::new(["."])
                .directory(&root)
                .jobs(jobs)
                .fault_hook(panic_at("read", "f0123"))
                .pack(io::sink())
                .unwrap_err()
        });
        match &err {
            Error::Panic {
                stage: "read",
                entry: Some(e),
                message,
            } => {
                assert_eq!(e, "d3/f0123");
                assert!(message.contains("injected fault"), "{message}");
            }
            other => panic!("expected a read panic, got {other:?}"),
        }
    }
}

#[test]
fn panic_while_streaming_a_large_file_does_not_hang() {
    let t = tree(50, 5 << 20);
    let root = t.path().to_path_buf();
    let err = within(60, move || {
        Packer::new(["."])
            .directory(&root)
            .jobs(3)
            .fault_hook(panic_at("read", "blob"))
            .pack(io::sink())
            .unwrap_err()
    });
    assert!(matches!(err, Error::Panic { stage: "read", .. }), "{err:?}");
}

#[test]
fn panic_in_the_writer_is_an_error() {
    let t = tree(300, 0);
    let root = t.path().to_path_buf();
    let err = within(60, move || {
        Packer::new(["."])
            .directory(&root)
            .jobs(4)
            .fault_hook(panic_at("write", "f0200"))
            .pack(io::sink())
            .unwrap_err()
    });
    assert!(
        matches!(err, Error::Panic { stage: "write", .. }),
        "{err:?}"
    );
}

/// A sink that fails with its own, recognisable error after `limit` bytes.
struct FailAfter {
    limit: u64,
    written: u64,
}

impl Write for FailAfter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.written >= self.limit {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "disk quota exceeded in test",
            ));
        }
        self.written += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn the_writers_own_error_is_reported() {
    let t = tree(2000, 4 << 20);
    for format in [Format::Tar, Format::TarGz, Format::TarZst] {
        let root = t.path().to_path_buf();
        let err = within(60, move || {
            Packer::new(["."])
                .directory(&root)
                .jobs(4)
                .format(format)
                .level(1)
                .pack(FailAfter {
                    limit: 40_000,
                    written: 0,
                })
                .unwrap_err()
        });
        match err {
            Error::Output(e) => assert!(
                e.to_string().contains("disk quota exceeded in test"),
                "{format}: {e}"
            ),
            other => panic!("{format}: expected the output error, got {other:?}"),
        }
    }
}

/// A consumer that takes bytes slowly: the readers must wait for it instead of buffering the tree.
struct Slow {
    written: Arc<AtomicU64>,
}

impl Write for Slow {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        std::thread::sleep(Duration::from_micros(200));
        let n = buf.len().min(16 << 10);
        self.written.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn memory_stays_within_the_budget_for_a_slow_consumer() {
    let t = tree(3000, 12 << 20);
    let budget = 2 << 20;
    let written = Arc::new(AtomicU64::new(0));
    let report = Packer::new(["."])
        .directory(t.path())
        .jobs(4)
        .memory_budget(budget)
        .pack(Slow {
            written: Arc::clone(&written),
        })
        .unwrap();
    let s = &report.stats;
    assert!(
        s.budget_peak <= budget,
        "budget peak {} > {budget}",
        s.budget_peak
    );
    assert!(
        s.budget_peak > budget / 2,
        "the budget was never used: peak {}",
        s.budget_peak
    );
    // Without the budget, 4 fast readers would get thousands of entries ahead of a slow writer.
    assert!(
        s.reorder_peak < 2000,
        "reorder buffer held {} entries",
        s.reorder_peak
    );
    assert_eq!(written.load(Ordering::Relaxed), s.bytes_out);
}

#[test]
fn cancel_from_another_thread_stops_promptly() {
    let t = tree(3000, 8 << 20);
    let packer = Packer::new(["."]).directory(t.path()).jobs(3);
    let cancel = packer.cancel_handle();
    let written = Arc::new(AtomicU64::new(0));
    let w = Arc::clone(&written);
    let handle = std::thread::spawn(move || packer.pack(Slow { written: w }));
    while written.load(Ordering::Relaxed) < 100_000 {
        std::thread::sleep(Duration::from_millis(5));
    }
    cancel.cancel();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(handle.join().unwrap());
    });
    let result = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("cancel did not stop the run");
    assert!(matches!(result, Err(Error::Cancelled)), "{result:?}");
}

/// A file deleted between the walk and the read is a warning at its place, and the archive is valid.
#[test]
fn a_vanished_file_is_a_warning_not_a_failure() {
    let t = tree(100, 0);
    let victim = t.path().join("d5/f0055");
    let v = victim.clone();
    let hook: archiver::FaultHook = Arc::new(move |stage: &str, rel: &Path| {
        if stage == "read" && rel.ends_with("f0055") {
            let _ = std::fs::remove_file(&v);
        }
    });
    let mut out = Vec::new();
    let report = Packer::new(["."])
        .directory(t.path())
        .jobs(2)
        .fault_hook(hook)
        .pack(&mut out)
        .unwrap();
    assert_eq!(report.warnings.len(), 1);
    // Named as tar names it with -C: relative to the directory.
    assert_eq!(report.warnings[0].path, Path::new("d5/f0055"));
    assert_eq!(
        report.warnings[0].message,
        "vanished before it could be read; skipped"
    );
    let names = read_back(&out)
        .into_iter()
        .map(|(n, _)| n)
        .collect::<Vec<_>>();
    assert!(!names.iter().any(|n| n.ends_with("f0055")));
    assert_eq!(names.last().unwrap(), ".archiver/MANIFEST.b3");
}

/// Random delays in the readers (a different completion order on every run) never change a byte.
#[test]
fn thread_timing_does_not_change_the_output() {
    let t = tree(400, 2 << 20);
    let jitter: archiver::FaultHook = Arc::new(|stage: &str, rel: &Path| {
        if stage == "read" {
            let h = rel.as_os_str().len() as u64 * 7919 + std::process::id() as u64;
            std::thread::sleep(Duration::from_micros(h % 700));
        }
    });
    for format in [Format::Tar, Format::TarGz, Format::TarZst] {
        let mut a = Vec::new();
        Packer::new(["."])
            .directory(t.path())
            .jobs(1)
            .format(format)
            .pack(&mut a)
            .unwrap();
        let mut b = Vec::new();
        Packer::new(["."])
            .directory(t.path())
            .jobs(6)
            .format(format)
            .fault_hook(Arc::clone(&jitter))
            .pack(&mut b)
            .unwrap();
        assert!(a == b, "{format}: output depends on timing");
    }
}

/// (name, content) of every regular file in a tar, tar.gz or tar.zst, read with the `tar` crate.
fn read_back(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let reader: Box<dyn Read + '_> = match bytes {
        [0x1f, 0x8b, ..] => Box::new(flate2::read::GzDecoder::new(bytes)),
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Box::new(zstd::stream::read::Decoder::new(bytes).unwrap()),
        _ => Box::new(bytes),
    };
    let mut archive = tar::Archive::new(reader);
    let mut out = Vec::new();
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        if e.header().entry_type() == tar::EntryType::Regular {
            out.push((name, data));
        }
    }
    out
}

mod roundtrip {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn name() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-c]{1,3}",
            Just("a.txt".to_string()),
            Just("ü".to_string()),
            Just("a b".to_string()),
            "[x-z]{1,2}\\.[a-b]",
        ]
    }

    fn files() -> impl Strategy<Value = BTreeMap<PathBuf, Vec<u8>>> {
        prop::collection::btree_map(
            prop::collection::vec(name(), 1..4).prop_map(|v| v.iter().collect::<PathBuf>()),
            prop::collection::vec(any::<u8>(), 0..3000),
            1..40,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        /// Random trees come back exactly (every file's bytes, the manifest lists each hash), in
        /// sorted order, identical for -j 1 and -j 4.
        #[test]
        fn random_trees_round_trip(files in files(), format in 0..3usize, jobs in 2..5usize) {
            let t = tempfile::tempdir().unwrap();
            let mut expected = BTreeMap::new();
            for (rel, data) in &files {
                // A path that is a prefix of another one is a directory; skip the clash.
                if files.keys().any(|o| o != rel && o.starts_with(rel)) || expected.keys().any(|o: &PathBuf| rel.starts_with(o)) {
                    continue;
                }
                file(t.path(), rel.to_str().unwrap(), data);
                expected.insert(rel.clone(), data.clone());
            }
            let format = [Format::Tar, Format::TarGz, Format::TarZst][format];
            let mut one = Vec::new();
            Packer::new(["."]).directory(t.path()).jobs(1).format(format).pack(&mut one).unwrap();
            let mut many = Vec::new();
            Packer::new(["."]).directory(t.path()).jobs(jobs).format(format).pack(&mut many).unwrap();
            prop_assert!(one == many);

            let mut got = read_back(&one);
            let (manifest_name, manifest) = got.pop().unwrap();
            prop_assert_eq!(manifest_name, ".archiver/MANIFEST.b3");
            let names: Vec<PathBuf> = got.iter().map(|(n, _)| PathBuf::from(n)).collect();
            let mut sorted = names.clone();
            sorted.sort();
            prop_assert_eq!(&names, &sorted);
            let got: BTreeMap<PathBuf, Vec<u8>> = got.into_iter().map(|(n, d)| (PathBuf::from(n), d)).collect();
            prop_assert_eq!(&got, &expected);
            let lines = archiver::manifest::parse(&manifest).unwrap();
            prop_assert_eq!(lines.len(), expected.len());
            for line in lines {
                let path = PathBuf::from(String::from_utf8(line.path).unwrap());
                prop_assert_eq!(blake3::hash(&expected[&path]), line.hash);
            }
        }
    }
}

/// The progress callback knows the totals from the start and ends at them.
#[test]
fn progress_reports_reach_the_totals() {
    let t = tree(500, 2 << 20);
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let s = Arc::clone(&seen);
    let report = Packer::new(["."])
        .directory(t.path())
        .jobs(2)
        .on_progress(move |p| s.lock().unwrap().push(*p))
        .pack(io::sink())
        .unwrap();
    let seen = seen.lock().unwrap();
    let last = seen.last().expect("at least the final report");
    assert_eq!(last.bytes_done, report.stats.bytes_in);
    assert_eq!(last.bytes_done, last.bytes_total);
    assert_eq!(last.entries_done, last.entries_total);
    assert!(
        seen.windows(2).all(|w| w[0].bytes_done <= w[1].bytes_done),
        "progress went backwards"
    );
}

/// Files that shrink or grow between the walk and the read: the header's size is honoured (zero
/// padding or cut), the manifest matches the stored bytes, and each gets a warning.
#[test]
fn files_changing_while_read_keep_the_archive_valid() {
    let t = tree(0, 0);
    file(t.path(), "shrinks", &vec![b's'; 5000]);
    file(t.path(), "grows", &vec![b'g'; 5000]);
    file(t.path(), "large-shrinks", &vec![b'L'; 3 << 20]);
    // Rewritten at the same size: only the status-change time tells (as GNU tar checks).
    file(t.path(), "same", &vec![b'a'; 5000]);
    file(t.path(), "large-same", &vec![b'A'; 3 << 20]);
    let root = t.path().to_path_buf();
    let hook: archiver::FaultHook = Arc::new(move |stage: &str, rel: &Path| {
        if stage != "read" {
            return;
        }
        let p = root.join(rel);
        match rel.to_str() {
            Some("shrinks") => std::fs::write(&p, b"short").unwrap(),
            Some("grows") => std::fs::write(&p, vec![b'G'; 9000]).unwrap(),
            Some("large-shrinks") => std::fs::write(&p, vec![b'l'; 1 << 20]).unwrap(),
            Some("same") => std::fs::write(&p, vec![b'b'; 5000]).unwrap(),
            Some("large-same") => std::fs::write(&p, vec![b'B'; 3 << 20]).unwrap(),
            _ => {}
        }
    });
    let mut out = Vec::new();
    let report = Packer::new(["."])
        .directory(t.path())
        .jobs(3)
        .fault_hook(hook)
        .pack(&mut out)
        .unwrap();
    let msgs: Vec<(String, String)> = report
        .warnings
        .iter()
        .map(|w| {
            (
                w.path.file_name().unwrap().to_string_lossy().into_owned(),
                w.message.clone(),
            )
        })
        .collect();
    assert_eq!(msgs.len(), 5, "{msgs:?}");
    assert_eq!(msgs[0].0, "grows");
    assert!(msgs[0].1.contains("grew"), "{msgs:?}");
    assert_eq!(msgs[1].0, "large-same");
    assert!(msgs[1].1.contains("changed as we read it"), "{msgs:?}");
    assert_eq!(msgs[2].0, "large-shrinks");
    assert!(msgs[2].1.contains("shrank"), "{msgs:?}");
    assert_eq!(msgs[3].0, "same");
    assert!(msgs[3].1.contains("changed as we read it"), "{msgs:?}");
    assert_eq!(msgs[4].0, "shrinks");
    let files: std::collections::BTreeMap<String, Vec<u8>> = read_back(&out).into_iter().collect();
    assert_eq!(files["shrinks"].len(), 5000);
    assert_eq!(&files["shrinks"][..5], b"short");
    assert!(files["shrinks"][5..].iter().all(|&b| b == 0));
    assert_eq!(files["grows"], vec![b'G'; 5000]);
    assert_eq!(files["large-shrinks"].len(), 3 << 20);
    assert_eq!(files["same"], vec![b'b'; 5000]);
    assert_eq!(files["large-same"], vec![b'B'; 3 << 20]);
    // The manifest describes the bytes stored, so verification of this archive passes.
    let report = archiver::Unpacker::verify_only().unpack(&out[..]).unwrap();
    assert_eq!(report.stats.manifest_checked, Some(5));
}

/// Warnings come out in entry order, whatever order the workers hit them in.
#[test]
fn warnings_come_out_in_entry_order() {
    let t = tree(400, 0);
    let root = t.path().to_path_buf();
    let victims = ["d9/f0399", "d0/f0010", "d5/f0155", "d3/f0003"];
    let hook: archiver::FaultHook = Arc::new(move |stage: &str, rel: &Path| {
        if stage == "read" {
            // Later entries finish first: delay by position, reversed.
            let n: u64 = rel
                .to_string_lossy()
                .bytes()
                .filter(u8::is_ascii_digit)
                .map(u64::from)
                .sum();
            std::thread::sleep(Duration::from_micros(2000u64.saturating_sub(n * 10)));
            if victims.iter().any(|v| rel == Path::new(v)) {
                let _ = std::fs::remove_file(root.join(rel));
            }
        }
    });
    let report = Packer::new(["."])
        .directory(t.path())
        .jobs(4)
        .fault_hook(hook)
        .pack(io::sink())
        .unwrap();
    let got: Vec<PathBuf> = report.warnings.iter().map(|w| w.path.clone()).collect();
    let mut want: Vec<PathBuf> = victims.iter().map(PathBuf::from).collect();
    want.sort();
    assert_eq!(got, want);
}

/// Pack reads what it walked: a directory swapped for a symlink between the walk and the read
/// (here: `d` replaced by a link to a directory holding a "secret" under the same name) is never
/// followed: the read goes through the directory handle the walk opened, so it still gets the
/// file that was walked, and the secret's bytes are nowhere in the archive.
#[test]
fn a_directory_swapped_for_a_symlink_after_the_walk_is_not_followed() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("tree");
    file(&root, "d/f", b"ordinary content");
    file(&root, "z", b"last");
    let secret_dir = t.path().join("secret");
    file(&secret_dir, "f", b"TOP SECRET BYTES");
    let (root2, secret2) = (root.clone(), secret_dir.clone());
    let hook: archiver::FaultHook = Arc::new(move |stage: &str, rel: &Path| {
        if stage == "read" && rel == Path::new("d/f") && root2.join("d").is_dir() {
            std::fs::rename(root2.join("d"), root2.join("d.old")).unwrap();
            std::os::unix::fs::symlink(&secret2, root2.join("d")).unwrap();
        }
    });
    let mut out = Vec::new();
    let report = Packer::new(["."])
        .directory(&root)
        .jobs(1)
        .fault_hook(hook)
        .pack(&mut out)
        .unwrap();
    assert!(
        !out.windows(16).any(|w| w == b"TOP SECRET BYTES"),
        "followed a symlink swapped in after the walk"
    );
    assert!(out.windows(16).any(|w| w == b"ordinary content"));
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
}

/// `Unpacker::on_progress` reports as the archive is read, inside a large file too, never
/// backwards, and ends with exact, final totals: for tar streams and for zip.
#[test]
fn unpack_progress_moves_and_ends_exact() {
    let t = tree(50, 24 << 20);
    for format in [Format::TarZst, Format::Zip] {
        let mut out = Vec::new();
        let packed = Packer::new(["."])
            .directory(t.path())
            .format(format)
            .pack(&mut out)
            .unwrap();
        let seen: Arc<std::sync::Mutex<Vec<archiver::Progress>>> = Arc::default();
        let log = Arc::clone(&seen);
        let dest = tempfile::tempdir().unwrap();
        let archive = dest.path().join("a");
        std::fs::write(&archive, &out).unwrap();
        let report = archiver::Unpacker::new(dest.path().join("x"))
            .sync(false)
            .jobs(2)
            .on_progress(move |p| log.lock().unwrap().push(*p))
            .unpack_path(&archive)
            .unwrap();
        let seen = seen.lock().unwrap();
        let last = seen.last().expect("at least the final report");
        assert!(last.totals_final, "{format:?}");
        assert_eq!(last.bytes_done, last.bytes_total, "{format:?}");
        assert!(last.bytes_done >= report.stats.bytes, "{format:?}"); // the manifest too
        assert!(last.bytes_done >= packed.stats.bytes_in, "{format:?}");
        assert!(
            seen.windows(2)
                .all(|w| w[1].bytes_done >= w[0].bytes_done
                    && w[1].entries_done >= w[0].entries_done),
            "{format:?}: went backwards"
        );
    }
}

/// A refusal says which kind of rule it broke, so a deployment tool can tell "unsafe archive" from
/// "corrupt archive" without reading messages.
#[test]
fn refusals_carry_their_rule() {
    use archiver::Rule;
    // Unsafe: a symlink to an absolute path, and a name that climbs out.
    let mut hostile = Vec::new();
    {
        let mut b = tar::Builder::new(&mut hostile);
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        b.append_link(&mut h, "evil", "/etc").unwrap();
        b.finish().unwrap();
    }
    let dest = tempfile::tempdir().unwrap();
    match archiver::Unpacker::new(dest.path())
        .sync(false)
        .unpack(&hostile[..])
    {
        Err(Error::Refused(list)) => {
            assert_eq!(list[0].rule, Rule::LinkOutside, "{list:?}");
            assert!(list[0].rule.is_unsafe_entry());
        }
        other => panic!("not refused: {other:?}"),
    }
    // Corrupt: one byte of a file changed after packing.
    let t = tree(3, 0);
    let mut out = Vec::new();
    Packer::new(["."])
        .directory(t.path())
        .format(Format::Tar)
        .pack(&mut out)
        .unwrap();
    let at = out
        .windows(15)
        .position(|w| w == b"content of file")
        .unwrap();
    out[at] = b'C';
    match archiver::Unpacker::verify_only().unpack(&out[..]) {
        Err(Error::Refused(list)) => {
            assert!(list.iter().all(|r| r.rule == Rule::Manifest), "{list:?}");
            assert!(!list[0].rule.is_unsafe_entry());
        }
        other => panic!("not refused: {other:?}"),
    }
}

/// A cancel reaches an unpack while it skips data: here a refused entry (`../`) declaring 1 GiB
/// that arrives slowly (64 KiB per millisecond: 16 s in all). Skipped data is read too, so the
/// input must check the flag on every read, not only between entries or streamed chunks.
#[test]
fn cancel_stops_an_unpack_that_skips_a_large_entry() {
    struct Slow {
        head: io::Cursor<Vec<u8>>,
        left: u64,
    }
    impl Read for Slow {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.head.read(buf)?;
            if n > 0 {
                return Ok(n);
            }
            let n = buf.len().min(64 << 10).min(self.left as usize);
            std::thread::sleep(Duration::from_millis(1));
            buf[..n].fill(0);
            self.left -= n as u64;
            Ok(n)
        }
    }
    let size: u64 = 1 << 30;
    let mut header = tar::Header::new_gnu();
    header.as_gnu_mut().unwrap().name[..9].copy_from_slice(b"../escape");
    header.set_size(size);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    let dest = tempfile::tempdir().unwrap();
    let cancel = archiver::Cancel::new();
    let started = std::time::Instant::now();
    let result = within(30, {
        let (dest, cancel) = (dest.path().join("out"), cancel.clone());
        move || {
            std::thread::spawn({
                let cancel = cancel.clone();
                move || {
                    std::thread::sleep(Duration::from_millis(300));
                    cancel.cancel();
                }
            });
            archiver::Unpacker::new(dest)
                .cancel_with(cancel)
                .unpack(Slow {
                    head: io::Cursor::new(header.as_bytes().to_vec()),
                    left: size,
                })
        }
    });
    assert!(matches!(result, Err(Error::Cancelled)), "{result:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?} to notice the cancel",
        started.elapsed()
    );
}
