#![cfg(unix)]
//! Soak: a few hundred random trees, each packed with a random format and job count, must give
//! identical bytes for another job count and unpack to exactly the same tree.

use std::collections::BTreeMap;
use std::path::PathBuf;

use archiver::{Format, Packer, Unpacker};
use proptest::prelude::*;

fn tree() -> impl Strategy<Value = BTreeMap<PathBuf, (Vec<u8>, u32)>> {
    let name = prop_oneof![
        "[a-e]{1,4}",
        Just("ü.txt".to_string()),
        Just("x y".to_string()),
        "[a-c]{1,2}\\.[a-c]"
    ];
    prop::collection::btree_map(
        prop::collection::vec(name, 1..4).prop_map(|v| v.iter().collect::<PathBuf>()),
        (
            prop::collection::vec(any::<u8>(), 0..5000),
            prop_oneof![Just(0o644u32), Just(0o600), Just(0o755), Just(0o444)],
        ),
        1..30,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn pack_unpack_soak(files in tree(), format in 0..4usize, jobs in 1..6usize, other in 1..6usize) {
        use std::os::unix::fs::PermissionsExt;
        let src = tempfile::tempdir().unwrap();
        let mut expected = BTreeMap::new();
        for (rel, (data, mode)) in &files {
            if files.keys().any(|o| o != rel && o.starts_with(rel)) || expected.keys().any(|o: &PathBuf| rel.starts_with(o)) {
                continue;
            }
            let p = src.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, data).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode)).unwrap();
            expected.insert(rel.clone(), (data.clone(), *mode));
        }
        let format = [Format::Tar, Format::TarGz, Format::TarZst, Format::Zip][format];
        let mut a = Vec::new();
        Packer::new(["."]).directory(src.path()).format(format).jobs(jobs).pack(&mut a).unwrap();
        let mut b = Vec::new();
        Packer::new(["."]).directory(src.path()).format(format).jobs(other).pack(&mut b).unwrap();
        prop_assert!(a == b, "{format}: -j {jobs} and -j {other} differ");
        let dest = tempfile::tempdir().unwrap();
        let report = Unpacker::new(dest.path()).jobs(other).sync(false).unpack(&a[..]).unwrap();
        prop_assert_eq!(report.stats.manifest_checked, Some(expected.len() as u64 ));
        for (rel, (data, mode)) in &expected {
            let p = dest.path().join(rel);
            prop_assert_eq!(&std::fs::read(&p).unwrap(), data);
            prop_assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, *mode);
        }
    }
}
