//! Deflate by libdeflate: whole buffers (zip entries) and pieces of one longer stream (tar.gz,
//! large zip entries).
//!
//! libdeflate compresses about 1.5 times as fast as zlib-rs at the same level here, with smaller
//! output (docs/BENCHMARKS.md), and gives the same bytes on every run and platform for a given
//! version (pinned by Cargo.lock; the golden tests pin the bytes). It compresses only whole
//! buffers into complete streams, whose last block is marked final. A piece of a longer stream
//! must not be final, so [`piece`] continues libdeflate's stream by hand: it finds the final
//! block's `BFINAL` bit by inflating the piece block by block (`blocks.rs`), clears it, and ends
//! the piece with an empty stored block (a sync flush: byte-aligned, not final) and the second
//! empty stored block of [`PIECE_END`](super::gzip::PIECE_END). Ours because no crate continues a
//! libdeflate stream.
//!
//! That inflation also checks the compressor: a piece is written only if it inflates back to
//! exactly its input.

use std::cell::RefCell;
use std::io;

use super::blocks::BlockInflater;
use super::gzip::PIECE_END;

/// Raw deflate of `data` as one complete stream (its last block final).
pub(crate) fn whole(data: &[u8], level: u32) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    whole_into(data, level, &mut out)?;
    Ok(out)
}

/// [`whole`] into `out` (replacing what it held), reusing its memory.
fn whole_into(data: &[u8], level: u32, out: &mut Vec<u8>) -> io::Result<()> {
    thread_local! {
        /// One compressor per level and thread: allocating one costs more than compressing a
        /// small file.
        static COMPRESSORS: RefCell<Vec<(u32, libdeflater::Compressor)>> = const { RefCell::new(Vec::new()) };
    }
    COMPRESSORS.with(|cs| {
        let mut cs = cs.borrow_mut();
        let at = match cs.iter().position(|(l, _)| *l == level) {
            Some(at) => at,
            None => {
                let lvl = libdeflater::CompressionLvl::new(level as i32).map_err(|e| {
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("deflate level {level}: {e:?}"),
                    )
                })?;
                cs.push((level, libdeflater::Compressor::new(lvl)));
                cs.len() - 1
            }
        };
        let c = &mut cs[at].1;
        out.clear();
        out.resize(c.deflate_compress_bound(data.len()), 0);
        let n = c
            .deflate_compress(data, out)
            .map_err(|e| io::Error::other(format!("deflate: {e:?}")))?;
        out.truncate(n);
        Ok(())
    })
}

/// Raw deflate of one piece of a longer stream: no back-reference before `data`. The `last`
/// piece ends the stream (its last block final); any other ends, byte-aligned and not final, with
/// [`PIECE_END`](super::gzip::PIECE_END), so the next piece starts a block there.
pub(crate) fn piece_into(data: &[u8], level: u32, last: bool, out: &mut Vec<u8>) -> io::Result<()> {
    thread_local! {
        /// Where each piece is inflated back to be checked: reused, since a fresh megabyte per
        /// piece is a thousand page faults.
        static BACK: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    }
    whole_into(data, level, out)?;
    let found = BACK.with(|back| {
        let mut back = back.borrow_mut();
        back.clear();
        back.reserve_exact(data.len());
        let found = BlockInflater::new().final_block(out, &mut back);
        let same = back.as_slice() == data;
        if back.capacity() > 2 * super::gzip::PIECE {
            *back = Vec::new(); // a one-off large input keeps no large buffer
        }
        found.filter(|_| same)
    });
    let Some((start, end)) = found else {
        return Err(io::Error::other(
            "deflate: libdeflate's output does not inflate back to its input",
        ));
    };
    if last {
        return Ok(());
    }
    out[(start / 8) as usize] &= !(1 << (start % 8)); // BFINAL off
    out.truncate(end.div_ceil(8) as usize);
    let used = (end % 8) as u32;
    if used != 0 {
        let last_byte = out.last_mut().expect("a stream has bytes");
        *last_byte &= (1u8 << used) - 1; // padding after the end: zero, the stored header's bits
    }
    // An empty stored block: 3 header bits (0: not final, type 00), padding to the byte, LEN 0,
    // NLEN 0xffff. The header fits in the last byte if 3 bits are free there.
    if used == 0 || used > 5 {
        out.push(0);
    }
    out.extend_from_slice(&PIECE_END); // LEN, NLEN; then the second empty stored block
    Ok(())
}

/// [`piece_into`] a new buffer.
#[cfg(test)]
pub(crate) fn piece(data: &[u8], level: u32, last: bool) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    piece_into(data, level, last, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata::{noise, text};
    use std::io::Read;

    /// Inflates a raw deflate stream with flate2 (zlib-rs), which must use every byte.
    fn inflate(stream: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut d = flate2::bufread::DeflateDecoder::new(stream);
        d.read_to_end(&mut out).unwrap();
        assert_eq!(
            d.total_in() as usize,
            stream.len(),
            "bytes after the stream"
        );
        out
    }

    #[test]
    fn pieces_continue_one_stream_at_every_end_bit() {
        // Many sizes and kinds, so that the final block ends at every bit position of a byte.
        let mut ends = std::collections::BTreeSet::new();
        for seed in 0..40u64 {
            let n = 1 + (seed as usize * 7919) % 5000;
            let a = if seed % 3 == 0 {
                noise(n, seed)
            } else {
                text(n, seed)
            };
            let b = text(3000, seed + 100);
            let mut stream = piece(&a, 6, false).unwrap();
            assert!(stream.ends_with(&PIECE_END));
            let c = whole(&a, 6).unwrap();
            ends.insert(
                BlockInflater::new()
                    .final_block(&c, &mut Vec::with_capacity(n))
                    .unwrap()
                    .1
                    % 8,
            );
            stream.extend(piece(&b, 6, true).unwrap());
            let mut both = a.clone();
            both.extend_from_slice(&b);
            assert_eq!(inflate(&stream), both, "seed {seed}");
        }
        assert_eq!(ends.len(), 8, "end bits seen: {ends:?}");
    }

    #[test]
    fn empty_and_large_pieces() {
        for data in [Vec::new(), text(1 << 20, 5), noise(1 << 20, 6)] {
            for level in [1, 6, 9] {
                let mut stream = piece(&data, level, false).unwrap();
                stream.extend(piece(&data, level, false).unwrap());
                stream.extend(piece(&[], level, true).unwrap());
                let mut twice = data.clone();
                twice.extend_from_slice(&data);
                assert_eq!(
                    inflate(&stream),
                    twice,
                    "level {level}, {} bytes",
                    data.len()
                );
            }
        }
    }

    #[test]
    fn a_piece_is_whole_non_final_blocks() {
        let data = text(300 << 10, 7);
        let p = piece(&data, 6, false).unwrap();
        let mut out = Vec::with_capacity(data.len());
        assert!(BlockInflater::new().whole_blocks(&p, &mut out));
        assert_eq!(out, data);
        let last = piece(&data, 6, true).unwrap();
        assert!(!BlockInflater::new().whole_blocks(&last, &mut Vec::with_capacity(data.len())));
    }
}
