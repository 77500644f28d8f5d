//! Arbitrary bytes unpacked into a temporary directory: never a panic, and nothing may appear
//! outside the destination.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let root = tempfile::tempdir().unwrap();
    let dest = root.path().join("dest");
    let r = archiver::Unpacker::new(&dest).jobs(2).sync(false).max_output(64 << 20).unpack(data);
    // Pipeline threads catch their panics and report them as errors: those are bugs too.
    if let Err(e @ archiver::Error::Panic { .. }) = r {
        panic!("{e}");
    }
    let outside: Vec<_> = std::fs::read_dir(root.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(outside.len() <= 1, "written outside the destination: {outside:?}");
});
