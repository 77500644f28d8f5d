//! Differential: arbitrary bytes through our parallel gzip reader and through the sequential one
//! (flate2, member by member). Same bytes out (one a prefix of the other when either stops early),
//! an error from one is an error from the other. Never a panic or a hang.
#![no_main]

use std::io::Read;

use archiver::format::gzip_read;
use libfuzzer_sys::fuzz_target;

/// Output cap: a few bytes can claim a lot of output.
const CAP: u64 = 16 << 20;

fn read_capped(threads: usize, data: &[u8]) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let ok = match gzip_read::open(data, threads) {
        Ok(r) => r.take(CAP).read_to_end(&mut out).is_ok(),
        Err(_) => false,
    };
    (out, ok)
}

fuzz_target!(|data: &[u8]| {
    let (par, par_ok) = read_capped(2, data);
    let (seq, seq_ok) = read_capped(0, data);
    let n = par.len().min(seq.len());
    assert!(par[..n] == seq[..n], "different bytes before byte {n}");
    if par.len() as u64 != CAP && seq.len() as u64 != CAP {
        assert_eq!(par_ok, seq_ok, "parallel ok {par_ok}, sequential ok {seq_ok}");
        if par_ok {
            assert_eq!(par.len(), seq.len());
        }
    }
});
