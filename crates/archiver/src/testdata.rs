//! Deterministic test data for the codecs' unit tests (the same bytes on every machine).

/// `n` bytes of compressible but not trivial text: words from a small vocabulary driven by an
/// LCG from `seed`.
pub(crate) fn text(n: usize, seed: u64) -> Vec<u8> {
    let words: [&[u8]; 8] = [
        b"alpha ", b"beta ", b"gamma ", b"delta\n", b"x", b"0123", b"::", b"zz ",
    ];
    let mut s = seed;
    let mut v = Vec::with_capacity(n + 8);
    while v.len() < n {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        v.extend_from_slice(words[(s >> 61) as usize]);
    }
    v.truncate(n);
    v
}

/// `n` incompressible bytes (xorshift64 from `seed`, which must not be 0).
pub(crate) fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 56) as u8
        })
        .collect()
}
