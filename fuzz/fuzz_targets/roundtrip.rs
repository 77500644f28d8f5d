//! Arbitrary trees: pack (any format, any -j) then read back; every file must come back exactly,
//! and -j 1 must give the same bytes as -j 3.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Tree {
    files: Vec<(Vec<u8>, Vec<u8>)>,
    format: u8,
}

fuzz_target!(|tree: Tree| {
    let dir = tempfile::tempdir().unwrap();
    let mut written = std::collections::BTreeMap::new();
    for (name, data) in tree.files.iter().take(20) {
        // Names from a small alphabet, one or two levels: enough to exercise order and nesting.
        let name: String = name.iter().take(12).map(|b| (b'a' + b % 6) as char).collect();
        if name.is_empty() {
            continue;
        }
        let rel = if name.len() > 6 { format!("{}/{}", &name[..3], &name[3..]) } else { name };
        let path = dir.path().join(&rel);
        if written.keys().any(|k: &String| k.starts_with(&format!("{rel}/")) || rel.starts_with(&format!("{k}/"))) {
            continue;
        }
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, data).unwrap();
        written.insert(rel, data.clone());
    }
    let format = [archiver::Format::Tar, archiver::Format::TarGz, archiver::Format::TarZst, archiver::Format::Zip]
        [tree.format as usize % 4];
    let mut one = Vec::new();
    archiver::Packer::new(["."]).directory(dir.path()).format(format).jobs(1).pack(&mut one).unwrap();
    let mut three = Vec::new();
    archiver::Packer::new(["."]).directory(dir.path()).format(format).jobs(3).pack(&mut three).unwrap();
    assert!(one == three, "output depends on -j");
    let out = tempfile::tempdir().unwrap();
    archiver::Unpacker::new(out.path()).sync(false).unpack(&one[..]).unwrap();
    for (rel, data) in &written {
        assert_eq!(&std::fs::read(out.path().join(rel)).unwrap(), data, "{rel}");
    }
});
