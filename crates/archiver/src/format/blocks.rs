//! Inflating a run of raw deflate bytes only if it is exactly whole, non-final deflate blocks.
//!
//! Why ours: the parallel gzip reader (`gzip_read.rs`) inflates pieces of one deflate stream
//! apart from each other. That gives the bytes every sequential inflater gives only if each piece
//! is *exactly* a run of complete blocks, none of them the stream's last: then the piece's last
//! block ends where the next piece starts, the next piece starts at a block boundary, and (with
//! no dictionary, so no back-reference may reach before the piece) its output does not depend on
//! anything before it. Inflating "to the end" cannot tell that: a final block that starts inside
//! the piece and runs past its end also inflates completely. No safe API of any crate says where
//! a block ends. zlib's documented way does: `inflate(Z_BLOCK)` returns at every block boundary,
//! and `data_type` then says whether the inflater stands at a boundary (128), whether the last
//! block was seen (64) and how many bits of the last byte are still unused (0-7). We call it
//! through libz-rs-sys, zlib's C API over zlib-rs (the same inflater flate2 uses here).
//!
//! The same walk finds where a complete stream's final block starts, so that a stream libdeflate
//! wrote (which always ends in a final block) can be continued: see `deflate.rs`.
//!
//! This is the only `unsafe` among the codecs; it stays in this file, behind a safe API.

use libz_rs_sys::{
    inflate, inflateEnd, inflateInit2_, z_stream, zlibVersion, Z_BLOCK, Z_OK, Z_STREAM_END,
};

/// `data_type`: the inflater stands at a block boundary, about to read a block header.
const AT_BOUNDARY: i32 = 128;
/// `data_type`: the block just decoded (or being decoded) is the stream's last.
const LAST_BLOCK: i32 = 64;
/// `data_type`: bits of the last byte read that are not used yet.
const UNUSED_BITS: i32 = 63;

/// A raw inflater (no zlib or gzip wrapper, no dictionary) for one piece.
pub(crate) struct BlockInflater {
    /// Boxed: zlib's state points back at its stream, so the stream must not move.
    strm: Box<z_stream>,
}

impl BlockInflater {
    pub(crate) fn new() -> Self {
        let mut strm = Box::<z_stream>::default();
        // SAFETY: `strm` is a default z_stream (null buffers, libz-rs-sys's allocator) that
        // stays at this address; the version and size are libz-rs-sys's own.
        let rc = unsafe {
            inflateInit2_(
                &mut *strm,
                -15,
                zlibVersion(),
                std::mem::size_of::<z_stream>() as i32,
            )
        };
        assert_eq!(rc, Z_OK, "raw inflateInit2 of libz-rs-sys failed");
        BlockInflater { strm }
    }

    /// Inflates `input` into `out` (up to `out`'s spare capacity, which is not grown) if, and
    /// only if, `input` is exactly a run of complete non-final deflate blocks. Returns whether it
    /// was; `out` is then its whole output. On `false`, `out` holds something undefined.
    pub(crate) fn whole_blocks(mut self, input: &[u8], out: &mut Vec<u8>) -> bool {
        if input.is_empty() {
            return true; // no blocks at all: nothing to inflate, and no boundary crossed
        }
        let end = self.walk(input, out, |_, last| !last);
        matches!(end, Some(state) if state & AT_BOUNDARY != 0 && state & (LAST_BLOCK | UNUSED_BITS) == 0)
    }

    /// Inflates `input` as the continuation of what this inflater was given before (all of it
    /// starting at a block boundary, with no dictionary), into `out` (up to its spare capacity).
    /// `Some(true)` when everything so far is exactly whole non-final blocks (as
    /// [`Self::whole_blocks`] would say of it all at once), `Some(false)` when it stopped where
    /// more input may still make it so (inside a block, or at a boundary inside a byte), `None`
    /// when nothing can: damaged, a final block seen, or the output full.
    pub(crate) fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Option<bool> {
        let state = if input.is_empty() {
            if self.strm.total_in == 0 {
                return Some(true);
            }
            self.strm.data_type
        } else {
            self.walk(input, out, |_, last| !last)?
        };
        if state & LAST_BLOCK != 0 {
            return None;
        }
        Some(state & AT_BOUNDARY != 0 && state & UNUSED_BITS == 0)
    }

    /// For a complete raw deflate stream (as libdeflate writes one): inflates it into `out` (up
    /// to its spare capacity) and returns the bit positions where its final block starts (its
    /// `BFINAL` bit) and where the stream ends. `None` if `input` is anything else, or has bytes
    /// after the stream's last.
    pub(crate) fn final_block(mut self, input: &[u8], out: &mut Vec<u8>) -> Option<(u64, u64)> {
        let (mut start, mut found) = (0, None);
        let end = self.walk(input, out, |bit, last| {
            if last {
                found = Some((start, bit));
            }
            start = bit;
            true
        })?;
        let (begin, stop) = found?;
        // The stream must end in the last byte given: fewer than 8 bits of padding.
        (end & LAST_BLOCK != 0 && stop + 8 > input.len() as u64 * 8).then_some((begin, stop))
    }

    /// Inflates `input` into `out` with `Z_BLOCK`, telling `boundary` the bit position of every
    /// block boundary reached and whether the block before it was the last; stops when
    /// `boundary` says no, on an error, when the output is full, or when the input is used up.
    /// Returns the final `data_type` when all input was used (`None` otherwise).
    fn walk(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        mut boundary: impl FnMut(u64, bool) -> bool,
    ) -> Option<i32> {
        let avail_in = u32::try_from(input.len()).ok()?;
        let start = out.len();
        let room = u32::try_from(out.capacity() - start).unwrap_or(u32::MAX);
        let strm = &mut *self.strm;
        strm.next_in = input.as_ptr();
        strm.avail_in = avail_in;
        strm.next_out = out.spare_capacity_mut().as_mut_ptr().cast();
        strm.avail_out = room;
        loop {
            // SAFETY: next_in/avail_in describe `input`, next_out/avail_out the spare capacity
            // of `out`, both borrowed for this call; inflate only writes within them.
            let rc = unsafe { inflate(strm, Z_BLOCK) };
            let written = (room - strm.avail_out) as usize;
            // SAFETY: inflate initialised exactly `written` bytes after `start`.
            unsafe { out.set_len(start + written) };
            let state = strm.data_type;
            if rc != Z_OK && rc != Z_STREAM_END {
                return None; // damaged
            }
            if state & AT_BOUNDARY != 0 {
                #[allow(clippy::unnecessary_cast)] // `z_size` is a C `unsigned long`
                let bit = strm.total_in as u64 * 8 - (state & UNUSED_BITS) as u64;
                if !boundary(bit, state & LAST_BLOCK != 0) {
                    return None;
                }
            }
            if strm.avail_in == 0 {
                return Some(state);
            }
            if rc == Z_STREAM_END || state & AT_BOUNDARY == 0 {
                return None; // bytes after the stream, or stopped in a block: the output is full
            }
        }
    }
}

impl Drop for BlockInflater {
    fn drop(&mut self) {
        // SAFETY: the stream was initialised in `new` and is ended once, here.
        unsafe { inflateEnd(&mut *self.strm) };
    }
}

// SAFETY: the stream and its state are owned by this value alone (no shared pointers remain
// between calls: next_in/next_out are set anew on every call).
unsafe impl Send for BlockInflater {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata::{noise, text};
    use flate2::{Compress, Compression, FlushCompress};

    /// Raw deflate of `parts` (with `dict` as preset dictionary), each part ended with a sync
    /// flush (a byte-aligned block boundary), the last one with a finish when `finish` is set.
    fn deflate_with(dict: &[u8], parts: &[&[u8]], finish: bool) -> Vec<u8> {
        let mut c = Compress::new(Compression::new(6), false);
        if !dict.is_empty() {
            c.set_dictionary(dict).unwrap();
        }
        let mut out = Vec::new();
        for (i, p) in parts.iter().enumerate() {
            let flush = if finish && i + 1 == parts.len() {
                FlushCompress::Finish
            } else {
                FlushCompress::Sync
            };
            let mut at = 0;
            loop {
                out.reserve(1 << 16);
                let before = c.total_in();
                c.compress_vec(&p[at..], &mut out, flush).unwrap();
                at += (c.total_in() - before) as usize;
                if at == p.len() && out.len() < out.capacity() {
                    break;
                }
            }
        }
        out
    }

    fn deflate(parts: &[&[u8]], finish: bool) -> Vec<u8> {
        deflate_with(&[], parts, finish)
    }

    fn check(input: &[u8]) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(8 << 20);
        BlockInflater::new()
            .whole_blocks(input, &mut out)
            .then_some(out)
    }

    #[test]
    fn whole_blocks_are_inflated() {
        let a = text(300 << 10, 1);
        let b = noise(200 << 10, 2);
        let blocks = deflate(&[&a, &b], false);
        let mut both = a.clone();
        both.extend_from_slice(&b);
        assert_eq!(check(&blocks).as_deref(), Some(&both[..]));
        assert_eq!(check(&[]).as_deref(), Some(&[][..]));
    }

    #[test]
    fn anything_but_whole_non_final_blocks_is_refused() {
        let a = text(100 << 10, 3);
        let blocks = deflate(&[&a], false);
        // Cut inside a block, at every kind of place.
        for cut in [
            1,
            2,
            100,
            blocks.len() / 2,
            blocks.len() - 5,
            blocks.len() - 1,
        ] {
            assert!(check(&blocks[..cut]).is_none(), "cut at {cut}");
        }
        // A stream ending in a final block (even a complete one).
        assert!(check(&deflate(&[&a], true)).is_none());
        // One more byte after the boundary (a block header begun).
        let mut more = blocks.clone();
        more.push(0);
        assert!(check(&more).is_none());
        // Back-references before the piece's start (into a dictionary it does not have).
        let dict = text(20 << 10, 4);
        let refs = deflate_with(&dict, &[&dict[..10 << 10]], false);
        assert!(refs.len() < 2000, "the test data must be back-references");
        assert!(check(&refs).is_none());
        // Output past the room given.
        let mut small = Vec::with_capacity(1000);
        assert!(!BlockInflater::new().whole_blocks(&blocks, &mut small));
    }

    #[test]
    fn fed_in_parts_it_says_what_whole_blocks_says_of_the_whole() {
        let a = text(200 << 10, 5);
        let b = noise(100 << 10, 6);
        let blocks = deflate(&[&a, &b], false);
        let whole_at = deflate(&[&a], false).len(); // the sync flush after `a`: a boundary
        let mut both = a.clone();
        both.extend_from_slice(&b);
        for cut in [1, 9, whole_at / 2, whole_at, whole_at + 3, blocks.len() - 1] {
            let mut f = BlockInflater::new();
            let mut out = Vec::with_capacity(1 << 20);
            let first = f.feed(&blocks[..cut], &mut out);
            assert_eq!(first, Some(cut == whole_at), "cut at {cut}");
            assert_eq!(f.feed(&[], &mut out), first, "nothing more, cut at {cut}");
            assert_eq!(f.feed(&blocks[cut..], &mut out), Some(true), "cut at {cut}");
            assert_eq!(out, both, "cut at {cut}");
        }
        // A final block, damage or a full output can never become whole blocks.
        let fin = deflate(&[&a], true);
        assert_eq!(
            BlockInflater::new().feed(&fin, &mut Vec::with_capacity(1 << 20)),
            None
        );
        assert_eq!(
            BlockInflater::new().feed(&[0xff; 64], &mut Vec::with_capacity(1 << 20)),
            None
        );
        assert_eq!(
            BlockInflater::new().feed(&blocks, &mut Vec::with_capacity(1000)),
            None
        );
        assert_eq!(BlockInflater::new().feed(&[], &mut Vec::new()), Some(true));
    }

    /// The review's attack on a check that only inflates to the end: a final stored block
    /// whose length runs past the piece's end.
    #[test]
    fn a_final_block_running_past_the_end_is_refused() {
        let data = b"stored data ".repeat(100);
        let len = (data.len() + 2) as u16;
        let mut piece = vec![0x01];
        piece.extend_from_slice(&len.to_le_bytes());
        piece.extend_from_slice(&(!len).to_le_bytes());
        piece.extend_from_slice(&data);
        assert!(check(&piece).is_none());
        // The same block, not final and complete, is fine.
        let mut ok = vec![0x00];
        ok.extend_from_slice(&(data.len() as u16).to_le_bytes());
        ok.extend_from_slice(&(!(data.len() as u16)).to_le_bytes());
        ok.extend_from_slice(&data);
        assert_eq!(check(&ok).as_deref(), Some(&data[..]));
    }
}
