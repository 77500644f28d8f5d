//! Damaged input never panics or hangs: every reader (list, verify) is fed archives of every format
//! truncated at, and with a byte flipped at, positions across the whole file.

use std::sync::mpsc;
use std::time::Duration;

use archiver::{Format, Packer, Unpacker};

fn sample(format: Format) -> Vec<u8> {
    let t = tempfile::tempdir().unwrap();
    let p = t.path();
    std::fs::create_dir_all(p.join("dir/sub")).unwrap();
    std::fs::write(p.join("dir/a.txt"), b"alpha ".repeat(300)).unwrap();
    std::fs::write(
        p.join("dir/sub/b.bin"),
        (0..5000u32)
            .map(|i| (i * 7919 % 251) as u8)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    std::fs::write(p.join(format!("{}-long-name", "n".repeat(120))), b"x").unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink("dir/a.txt", p.join("link")).unwrap();
    let mut out = Vec::new();
    Packer::new(["."])
        .directory(p)
        .format(format)
        .jobs(2)
        .pack(&mut out)
        .unwrap();
    out
}

/// `sample`, with zip entries stored uncompressed so that content can be found in the bytes.
fn stored_sample(format: Format) -> Vec<u8> {
    let t = tempfile::tempdir().unwrap();
    std::fs::write(t.path().join("a.txt"), b"alpha ".repeat(300)).unwrap();
    let mut out = Vec::new();
    Packer::new(["."])
        .directory(t.path())
        .format(format)
        .zip_method(archiver::ZipMethod::Store)
        .pack(&mut out)
        .unwrap();
    out
}

/// Runs both readers on `bytes` on another thread; fails the test on a panic or a hang.
fn survives(bytes: Vec<u8>, what: &str) {
    let (tx, rx) = mpsc::channel();
    let what2 = what.to_string();
    std::thread::spawn(move || {
        let listed = std::panic::catch_unwind(|| archiver::list(&bytes[..], |_| Ok(())).is_ok());
        let verified =
            std::panic::catch_unwind(|| Unpacker::verify_only().jobs(2).unpack(&bytes[..]).is_ok());
        let _ = tx.send((listed.is_ok(), verified.is_ok(), what2));
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok((true, true, _)) => {}
        Ok((l, v, w)) => panic!("{w}: a reader panicked (list ok: {l}, verify ok: {v})"),
        Err(_) => panic!("{what}: a reader hung"),
    }
}

#[test]
fn truncated_and_flipped_archives_fail_cleanly() {
    for format in [Format::Tar, Format::TarGz, Format::TarZst, Format::Zip] {
        let good = sample(format);
        survives(good.clone(), "intact");
        let n = good.len();
        let mut positions: Vec<usize> = (0..n.min(700)).step_by(7).collect();
        positions.extend((0..60).map(|i| i * n / 60));
        positions.extend([n - 1, n - 4, n - 8, n - 22]);
        for &pos in &positions {
            survives(
                good[..pos].to_vec(),
                &format!("{format} truncated at {pos}"),
            );
            let mut flipped = good.clone();
            flipped[pos] ^= 0x5a;
            survives(flipped, &format!("{format} byte {pos} flipped"));
        }
    }
}

/// A flipped byte inside file content is always caught: by the manifest (tar) or the CRC (zip).
#[test]
fn flipped_content_is_always_detected() {
    for format in [Format::Tar, Format::Zip] {
        let good = stored_sample(format);
        let at = good
            .windows(12)
            .position(|w| w == b"alpha alpha ")
            .expect("content stored as is");
        let mut bad = good.clone();
        bad[at + 3] ^= 0x20;
        let result = Unpacker::verify_only().unpack(&bad[..]);
        assert!(
            result.is_err(),
            "{format}: a changed byte passed verification"
        );
    }
}
