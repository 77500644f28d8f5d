//! Micro-benchmarks of the stages: `cargo bench -p archiver-benches`.
//!
//! - `reorder`: the reorder buffer under a shuffled arrival order;
//! - `hash`: BLAKE3 on small and large buffers (a real stage on a Raspberry Pi);
//! - `gzip`: the deterministic parallel gzip encoder, 1 and 2 threads;
//! - `entries`: per-entry cost of the whole pack pipeline on empty files (headers, channels, writer).

use std::io::Write;

fn main() {
    divan::main();
}

#[divan::bench(args = [1_000, 100_000])]
fn reorder(bencher: divan::Bencher, n: u64) {
    // A deterministic shuffle: blocks of 64 reversed, like workers finishing out of order.
    let order: Vec<u64> = (0..n)
        .map(|i| (i / 64) * 64 + (63 - i % 64))
        .filter(|&s| s < n)
        .collect();
    bencher.bench(|| {
        let mut buf = archiver::reorder::ReorderBuffer::new(0);
        let mut out = 0u64;
        for &s in &order {
            buf.insert(s, s);
            while let Some(v) = buf.pop() {
                out = out.wrapping_add(v);
            }
        }
        out
    });
}

#[divan::bench(args = [512, 4096, 1 << 20])]
fn hash(bencher: divan::Bencher, len: usize) {
    let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
    bencher
        .counter(divan::counter::BytesCount::new(len))
        .bench(|| blake3::hash(divan::black_box(&data)));
}

#[divan::bench(args = [1, 2])]
fn gzip(bencher: divan::Bencher, threads: usize) {
    let words: [&[u8]; 6] = [b"fn ", b"let ", b"value", b" = ", b";\n", b"archive "];
    let mut data = Vec::with_capacity(8 << 20);
    let mut s = 7u64;
    while data.len() < 8 << 20 {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        data.extend_from_slice(words[(s >> 61) as usize % 6]);
    }
    bencher
        .counter(divan::counter::BytesCount::new(data.len()))
        .bench(|| {
            let mut w = archiver::format::gzip::ParGzWriter::new(Vec::new(), 6, threads).unwrap();
            w.write_all(&data).unwrap();
            w.finish().unwrap().len()
        });
}

#[divan::bench(sample_count = 10)]
fn entries(bencher: divan::Bencher) {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..2_000 {
        std::fs::write(dir.path().join(format!("f{i:05}")), b"").unwrap();
    }
    bencher
        .counter(divan::counter::ItemsCount::new(2_000usize))
        .bench(|| {
            archiver::Packer::new(["."])
                .directory(dir.path())
                .jobs(2)
                .pack(std::io::sink())
                .unwrap()
        });
}
