//! Differential: arbitrary bytes through our parallel zstd reader and through libzstd's streaming
//! decoder. They must agree: the same bytes out (one a prefix of the other when either stops
//! early), and an error from one is an error from the other. Never a panic or a hang.
#![no_main]

use std::io::Read;

use archiver::format::zstd_frames::ParZstdReader;
use libfuzzer_sys::fuzz_target;

/// Output cap: a few bytes of RLE blocks can claim gigabytes.
const CAP: u64 = 16 << 20;

fn read_capped(r: impl Read) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let ok = r.take(CAP).read_to_end(&mut out).is_ok();
    (out, ok)
}

fuzz_target!(|data: &[u8]| {
    let (ours, ours_ok) = read_capped(ParZstdReader::new(data, 2).unwrap());
    let (theirs, theirs_ok) = match zstd::stream::read::Decoder::new(data) {
        Ok(d) => read_capped(d),
        Err(_) => (Vec::new(), false),
    };
    let n = ours.len().min(theirs.len());
    assert!(ours[..n] == theirs[..n], "different bytes before byte {n}");
    let capped = ours.len() as u64 == CAP || theirs.len() as u64 == CAP;
    if !capped {
        assert_eq!(ours_ok, theirs_ok, "ours ok {ours_ok}, libzstd ok {theirs_ok}");
        if ours_ok {
            assert_eq!(ours.len(), theirs.len());
        }
    }
});
