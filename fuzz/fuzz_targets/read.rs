//! Arbitrary bytes into every reader: format detection, list, and verify (tar, tar.gz, tar.zst,
//! zip). Must never panic, hang or allocate without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = archiver::list(data, |_| Ok(()));
    // Pipeline threads catch their panics and report them as errors: those are bugs too.
    let r = archiver::Unpacker::verify_only().jobs(2).max_output(64 << 20).unpack(data);
    if let Err(e @ archiver::Error::Panic { .. }) = r {
        panic!("{e}");
    }
});
