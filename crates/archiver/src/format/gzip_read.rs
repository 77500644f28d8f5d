//! Reading gzip: our own tar.gz inflated in parallel, every other gzip stream as before.
//!
//! Our writer (`gzip.rs`) keeps one gzip member but makes every 1 MiB piece of the tar stream
//! independent (no back-references before it) and ends each piece with a second empty stored
//! block, so the 9 bytes [`PIECE_END`] mark where the next piece starts. [`open`] looks for those
//! marks in the compressed stream and inflates the pieces between them on pool threads, in order.
//!
//! A mark is only a guess (the same bytes can occur inside compressed data, or a hostile stream
//! can place them anywhere), so every piece is checked, and a piece that fails the check is never
//! an error by itself. It is first joined with the pieces after it (a false mark inside a piece,
//! as a tar.gz stored in the archive carries, then costs one more inflation of that piece, not
//! the parallelism of the rest); a run that cannot be made whole within 4 MiB is handed, with the
//! stream after it, to a sequential inflater (with the 32 KiB of output before it as its
//! dictionary), which decides as any inflater would.
//! The check (`blocks.rs`): the piece must be exactly a run of complete, non-final deflate blocks
//! (zlib's `Z_BLOCK` state after its last byte: at a block boundary, no bits left over, no last
//! block seen), inflated with no dictionary. The first piece starts at a block boundary (right
//! after the header), so by induction every piece does; no distance reaches before its start
//! (the inflater refuses those without a dictionary); so its output is exactly what sequential
//! inflation gives for those bytes. The last piece (running to the input's end) must end the
//! deflate stream. The member's CRC-32 and length are checked over all pieces, as always.
//!
//! Pieces are cut at the first mark at least `MIN_PIECE` (2 KiB) into them, so a stream packed with
//! marks costs a pool job per 2 KiB at most, not per mark.
//!
//! Streams without marks in their first 4 MiB (gzip, pigz, any other producer), with a header
//! that has flags, or that fail on their first piece go to `GzMembers` whole: the path every
//! gzip took before. Memory: at most `threads + 1` pieces in flight, each at most 4 MiB compressed
//! and 4 MiB inflated.
//!
//! Ours because no crate inflates one gzip member in parallel from a pipe.
//!

use std::io::{self, BufRead, Read};

use flate2::{Decompress, FlushDecompress, Status};

use super::blocks::BlockInflater;
use super::gzip::PIECE_END;
use super::pool::{Handout, OrderedPool};

/// The most compressed bytes searched for a mark, and the most a piece may inflate to.
const MAX_PIECE: usize = 4 << 20;
/// The fewest compressed bytes a piece is cut at: marks closer than this to the piece's start
/// are passed over (the piece then holds several of ours, which is as sound). Bounds the work
/// per byte of a hostile stream packed with marks; ours cut at 1 MiB of input, which is at least
/// about 1 KiB compressed, so at most two of ours (2 MiB of output) share a piece.
const MIN_PIECE: usize = 2 << 10;
/// Deflate's window: the dictionary a sequential inflater needs when it takes over.
const WINDOW: usize = 32 << 10;

/// Opens a gzip stream (from its first byte) on `threads` inflating threads (0: sequentially).
pub fn open<'a, R: Read + 'a>(input: R, threads: usize) -> io::Result<Box<dyn Read + 'a>> {
    let mut input: Box<dyn BufRead + 'a> = Box::new(io::BufReader::with_capacity(256 << 10, input));
    let mut header = Vec::with_capacity(10);
    (&mut input).take(10).read_to_end(&mut header)?;
    // Only the plain 10-byte header (deflate, no flags) is ours; anything else as before.
    if header.len() < 10 || header[..4] != [0x1f, 0x8b, 8, 0] || threads == 0 {
        let replay: Box<dyn BufRead + 'a> = Box::new(io::Cursor::new(header).chain(input));
        return Ok(Box::new(GzMembers::new(replay)));
    }
    Ok(Box::new(ParGzReader::new(input, header, threads)?))
}

/// Opens a raw deflate stream (a zip entry's data) on `threads` inflating threads (0:
/// sequentially): the same pieces as [`open`], without a gzip header or trailer. Reading ends
/// with the deflate stream; bytes after it are not read (as with any zip reader).
pub(crate) fn open_raw<'a, R: Read + 'a>(
    input: R,
    threads: usize,
) -> io::Result<Box<dyn Read + 'a>> {
    let input = io::BufReader::with_capacity(256 << 10, input);
    if threads == 0 {
        return Ok(Box::new(flate2::bufread::DeflateDecoder::new(input)));
    }
    Ok(Box::new(ParGzReader::new(
        Box::new(input),
        Vec::new(),
        threads,
    )?))
}

impl<'a> ParGzReader<'a> {
    /// `header` is the gzip header already read (empty: a raw deflate stream).
    fn new(input: Box<dyn BufRead + 'a>, header: Vec<u8>, threads: usize) -> io::Result<Self> {
        Ok(ParGzReader {
            raw: header.is_empty(),
            header,
            input: Some(input),
            pool: OrderedPool::new("ungzip", threads, threads + 1, inflate_piece)?,
            scan: Vec::new(),
            taken: 0,
            searched: 0,
            scanning: true,
            first: true,
            current: Handout::default(),
            spare: Vec::new(),
            spare_in: Vec::new(),
            crc: crc32fast::Hasher::new(),
            len: 0,
            window: Vec::new(),
            after: None,
            taken_over: false,
            pieces: 0,
            failed: false,
        })
    }
}

/// A piece for a pool thread: its compressed bytes, whether it is the stream's last (running to
/// the input's end), and a buffer to inflate into.
struct Piece {
    bytes: Vec<u8>,
    last: bool,
    out: Vec<u8>,
}

/// A piece back from the pool: its bytes (for a sequential take-over), whether it passed the
/// check, its output (its buffer, when it did not), and for the last piece how many bytes the
/// deflate stream used.
struct Inflated {
    bytes: Vec<u8>,
    last: bool,
    passed: bool,
    out: Vec<u8>,
    crc: crc32fast::Hasher,
    used: usize,
}

fn inflate_piece(mut p: Piece) -> Inflated {
    let mut out = std::mem::take(&mut p.out);
    out.clear();
    out.reserve(MAX_PIECE);
    let (passed, used) = if p.last {
        // Runs to the input's end: must end the deflate stream; the trailer may follow.
        let mut d = Decompress::new(false);
        let status = d.decompress_vec(&p.bytes, &mut out, FlushDecompress::Finish);
        (
            matches!(status, Ok(Status::StreamEnd)),
            d.total_in() as usize,
        )
    } else {
        let passed = BlockInflater::new().whole_blocks(&p.bytes, &mut out);
        (passed, p.bytes.len())
    };
    let mut crc = crc32fast::Hasher::new();
    if passed {
        crc.update(&out);
    }
    Inflated {
        bytes: p.bytes,
        last: p.last,
        passed,
        out,
        crc,
        used,
    }
}

struct ParGzReader<'a> {
    /// A raw deflate stream: no header, no trailer, nothing after the stream.
    raw: bool,
    /// The member header, replayed if the first piece fails.
    header: Vec<u8>,
    input: Option<Box<dyn BufRead + 'a>>,
    pool: OrderedPool<Piece, Inflated>,
    /// Compressed bytes read ahead: `scan[taken..]` is the next piece so far, `searched` bytes
    /// of which have been searched for a mark. Cut pieces advance `taken` (no copying of the
    /// rest per piece); the buffer is compacted once what was taken outweighs what is left.
    scan: Vec<u8>,
    taken: usize,
    searched: usize,
    /// Still cutting pieces (false once the input ended or a piece grew past the limit).
    scanning: bool,
    /// No piece has been handed out yet.
    first: bool,
    current: Handout,
    /// Buffers done with: inflated ones and compressed ones.
    spare: Vec<Vec<u8>>,
    spare_in: Vec<Vec<u8>>,
    /// CRC-32 and length of everything handed out.
    crc: crc32fast::Hasher,
    len: u64,
    /// The last 32 KiB handed out.
    window: Vec<u8>,
    /// Where reading continues once the parallel part has ended.
    after: Option<Box<dyn Read + 'a>>,
    /// The sequential reader took over before the stream's end.
    taken_over: bool,
    /// Pieces cut so far.
    pieces: u64,
    /// A read failed: the state may have lost bytes (a run being joined), so every later read
    /// fails too rather than hand out the stream with a gap.
    failed: bool,
}

impl<'a> ParGzReader<'a> {
    /// Reads input until the scan buffer holds a whole piece; submits it. Stops scanning at the
    /// input's end (the rest is the last piece) or when a piece grows past the limit.
    fn cut_piece(&mut self) -> io::Result<()> {
        let input = self.input.as_mut().expect("input while scanning");
        loop {
            let pending = &self.scan[self.taken..];
            // A mark ending before MIN_PIECE is passed over: search from where one could end.
            let from = self
                .searched
                .saturating_sub(PIECE_END.len() - 1)
                .max(MIN_PIECE.saturating_sub(PIECE_END.len()));
            if let Some(at) = pending.get(from..).and_then(|p| find(p, &PIECE_END)) {
                let end = from + at + PIECE_END.len();
                let mut bytes = self.spare_in.pop().unwrap_or_default();
                bytes.clear();
                bytes.extend_from_slice(&pending[..end]);
                self.taken += end;
                self.searched = 0;
                self.pieces += 1;
                let out = self.spare.pop().unwrap_or_default();
                return self.pool.submit(Piece {
                    bytes,
                    last: false,
                    out,
                });
            }
            self.searched = pending.len();
            if pending.len() > MAX_PIECE {
                self.scanning = false; // not our layout: the rest goes to a sequential inflater
                return Ok(());
            }
            let buf = input.fill_buf()?;
            if buf.is_empty() {
                self.scanning = false;
                let bytes = self.take_scan();
                if bytes.is_empty() {
                    return Ok(()); // ended right after a mark: the sequential inflater says so
                }
                self.pieces += 1;
                let out = self.spare.pop().unwrap_or_default();
                return self.pool.submit(Piece {
                    bytes,
                    last: true,
                    out,
                });
            }
            if self.taken >= self.scan.len() - self.taken {
                // What was cut off outweighs what is left: moving the rest down is paid for.
                self.scan.drain(..self.taken);
                self.taken = 0;
            }
            let n = buf
                .len()
                .min(MAX_PIECE + 1 - (self.scan.len() - self.taken));
            self.scan.extend_from_slice(&buf[..n]);
            input.consume(n);
        }
    }

    /// Takes a piece back in order: hands its output out, or on a failed check tries it joined
    /// with the pieces after it; a last piece whose trailer does not match hands the stream from
    /// this piece on to a sequential reader.
    fn accept(&mut self, done: Result<Inflated, String>) -> io::Result<()> {
        let done = done.map_err(inflate_panicked)?;
        if !done.passed {
            return self.join(done);
        }
        let Inflated { out, .. } = done;
        let was_last = done.last;
        let mut crc = self.crc.clone();
        crc.combine(&done.crc);
        let len = self.len + out.len() as u64;
        if was_last && self.raw {
            self.after = Some(Box::new(io::empty()));
        } else if was_last && done.used < done.bytes.len() {
            // The deflate stream ended in this piece: its trailer follows.
            let tail = &done.bytes[done.used..];
            let trailer_ok = tail.len() >= 8
                && tail[..4] == crc.clone().finalize().to_le_bytes()
                && tail[4..8] == (len as u32).to_le_bytes();
            if !trailer_ok {
                return self.take_over(done.bytes);
            }
            let rest: Box<dyn BufRead + 'a> = Box::new(io::Cursor::new(tail[8..].to_vec()));
            self.after = Some(Box::new(GzMembers::after_member(rest)?));
        } else if was_last {
            return self.take_over(done.bytes); // no trailer at all: cut short
        }
        self.crc = crc;
        self.len = len;
        self.first = false;
        let keep = out.len().min(WINDOW);
        if keep < WINDOW {
            let drop = (self.window.len() + keep).saturating_sub(WINDOW);
            self.window.drain(..drop);
        } else {
            self.window.clear();
        }
        self.window.extend_from_slice(&out[out.len() - keep..]);
        let used = self.current.refill(out);
        if used.capacity() > 0 {
            self.spare.push(used);
        }
        self.spare_bytes(done.bytes);
        Ok(())
    }

    /// A piece that failed its check may only have been cut at a false mark: the mark's bytes
    /// inside compressed data (a tar.gz stored in the archive carries ours). Inflates it again
    /// from its start (a proven block boundary), continuing into the pieces after it, until
    /// the run ends at whole non-final blocks: then it goes out as one piece, and the pieces
    /// after it (cut where the run ends) stay valid. A run that can never be whole (damage, a
    /// final block, a back-reference before its start), reaches the last piece, or grows past
    /// the limit goes to the sequential reader. Each byte is inflated once more at most (and,
    /// if the join fails, once more by the sequential reader).
    fn join(&mut self, failed: Inflated) -> io::Result<()> {
        let Inflated {
            mut bytes,
            last,
            mut out,
            ..
        } = failed;
        if last {
            return self.take_over(bytes);
        }
        let mut inflater = BlockInflater::new();
        out.clear();
        out.reserve(MAX_PIECE);
        let mut whole = inflater.feed(&bytes, &mut out);
        while whole == Some(false) {
            // Keep the pool busy meanwhile: the pieces after the run are inflated ahead.
            while self.scanning && self.pool.has_room() {
                self.cut_piece()?;
            }
            let Some(next) = self.pool.next(true) else {
                break;
            };
            let next = next.map_err(inflate_panicked)?;
            let from = bytes.len();
            bytes.extend_from_slice(&next.bytes);
            if next.out.capacity() > 0 {
                self.spare.push(next.out);
            }
            self.spare_bytes(next.bytes);
            if next.last || bytes.len() > MAX_PIECE {
                break;
            }
            whole = inflater.feed(&bytes[from..], &mut out);
        }
        if whole != Some(true) {
            return self.take_over(bytes);
        }
        tracing::trace!(len = bytes.len(), "gzip: pieces joined across a false mark");
        let mut crc = crc32fast::Hasher::new();
        crc.update(&out);
        let used = bytes.len();
        self.accept(Ok(Inflated {
            bytes,
            last: false,
            passed: true,
            out,
            crc,
            used,
        }))
    }

    /// The bytes read ahead and not yet cut into a piece; the scan buffer is then empty.
    fn take_scan(&mut self) -> Vec<u8> {
        let mut rest = std::mem::take(&mut self.scan);
        rest.drain(..std::mem::take(&mut self.taken));
        self.searched = 0;
        rest
    }

    fn spare_bytes(&mut self, bytes: Vec<u8>) {
        // At most one per piece in flight: the pool bounds them.
        self.spare_in.push(bytes);
    }

    /// Hands the stream from the piece in `from` on (the pieces after it, the scan buffer, the
    /// rest of the input) to a sequential reader: the whole stream to `GzMembers` if nothing
    /// was handed out yet, else a raw inflater primed with the last 32 KiB of output.
    fn take_over(&mut self, mut from: Vec<u8>) -> io::Result<()> {
        tracing::debug!(
            after = self.len,
            "gzip: no (more) independent pieces; inflating the rest sequentially"
        );
        self.taken_over = true;
        while let Some(later) = self.pool.next(true) {
            let later = later.map_err(inflate_panicked)?;
            from.extend_from_slice(&later.bytes);
        }
        from.extend_from_slice(&self.take_scan());
        self.scanning = false;
        let input = self.input.take().expect("input until taken over");
        if self.first && !self.raw {
            let mut all = std::mem::take(&mut self.header);
            all.append(&mut from);
            let replay: Box<dyn BufRead + 'a> = Box::new(io::Cursor::new(all).chain(input));
            self.after = Some(Box::new(GzMembers::new(replay)));
        } else {
            let rest: Box<dyn BufRead + 'a> = Box::new(io::Cursor::new(from).chain(input));
            let mut inflate = Decompress::new(false);
            if !self.window.is_empty() {
                inflate
                    .set_dictionary(&self.window)
                    .map_err(|e| io::Error::other(format!("inflate: {e}")))?;
            }
            self.after = Some(Box::new(Sequential {
                input: Some(rest),
                inflate,
                crc: std::mem::take(&mut self.crc),
                len: self.len,
                raw: self.raw,
                members: None,
            }));
        }
        Ok(())
    }
}

/// A pool thread's panic while inflating a piece, as the reader's error.
fn inflate_panicked(panic: String) -> io::Error {
    io::Error::other(format!("inflate failed: {panic}"))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(hay, needle)
}

impl Read for ParGzReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.failed {
            return Err(io::Error::other("the gzip stream failed to read before"));
        }
        let r = self.read_inner(out);
        self.failed = r.is_err();
        r
    }
}

impl ParGzReader<'_> {
    fn read_inner(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if !self.current.is_empty() {
                return Ok(self.current.read_to(out));
            }
            if let Some(after) = &mut self.after {
                return after.read(out);
            }
            // A piece already done goes out first; then more pieces are cut while there is room;
            // only then is a piece in flight waited for.
            if let Some(done) = self.pool.next(false) {
                self.accept(done)?;
            } else if self.scanning && self.pool.has_room() {
                self.cut_piece()?;
            } else if let Some(done) = self.pool.next(true) {
                self.accept(done)?;
            } else if self.input.is_some() {
                // Nothing in flight and no more pieces: what is left was not cut into pieces.
                let rest = self.take_scan();
                self.take_over(rest)?;
            } else {
                return Ok(0);
            }
        }
    }
}

/// A raw inflater taking over mid-member: inflates to the end of the deflate stream, checks the
/// member's trailer against the CRC-32 and length of everything before, then reads any further
/// members.
struct Sequential<'a> {
    input: Option<Box<dyn BufRead + 'a>>,
    inflate: Decompress,
    crc: crc32fast::Hasher,
    len: u64,
    /// A raw deflate stream: it ends with the deflate stream, no trailer follows.
    raw: bool,
    members: Option<GzMembers<'a>>,
}

fn damaged(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

impl Read for Sequential<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if let Some(m) = &mut self.members {
            return m.read(out);
        }
        if out.is_empty() {
            return Ok(0);
        }
        let input = self.input.as_mut().expect("input until the member ends");
        loop {
            let buf = input.fill_buf()?;
            let eof = buf.is_empty();
            let (in0, out0) = (self.inflate.total_in(), self.inflate.total_out());
            let status = self
                .inflate
                .decompress(buf, out, FlushDecompress::None)
                .map_err(|e| damaged(format!("corrupt deflate stream: {e}")))?;
            let used = (self.inflate.total_in() - in0) as usize;
            let made = (self.inflate.total_out() - out0) as usize;
            input.consume(used);
            self.crc.update(&out[..made]);
            self.len += made as u64;
            if status == Status::StreamEnd && self.raw {
                self.members = Some(GzMembers { current: None });
                return Ok(made);
            }
            if status == Status::StreamEnd {
                let mut trailer = [0u8; 8];
                input
                    .read_exact(&mut trailer)
                    .map_err(|_| damaged("the gzip stream is cut short (no trailer)".into()))?;
                if trailer[..4] != std::mem::take(&mut self.crc).finalize().to_le_bytes()
                    || trailer[4..] != (self.len as u32).to_le_bytes()
                {
                    return Err(damaged(
                        "gzip CRC-32 or length mismatch: damaged data".into(),
                    ));
                }
                let rest = self.input.take().expect("checked above");
                self.members = Some(GzMembers::after_member(rest)?);
                if made > 0 {
                    return Ok(made);
                }
                return self.members.as_mut().expect("set above").read(out);
            }
            if made > 0 {
                return Ok(made);
            }
            if eof {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the gzip stream is cut short",
                ));
            }
            if used == 0 {
                return Err(damaged("corrupt deflate stream: no progress".into()));
            }
        }
    }
}

/// Reads gzip members one after another (as `gzip -d` does), each checked by `flate2`. Bytes
/// after a member that do not start another are ignored, as `gzip -d` ignores trailing garbage.
pub(crate) struct GzMembers<'a> {
    current: Option<flate2::bufread::GzDecoder<Box<dyn BufRead + 'a>>>,
}

impl<'a> GzMembers<'a> {
    /// Members from the first byte of `input`.
    pub(crate) fn new(input: Box<dyn BufRead + 'a>) -> Self {
        GzMembers {
            current: Some(flate2::bufread::GzDecoder::new(input)),
        }
    }

    /// Members after one that just ended: another follows only if its magic does.
    fn after_member(mut rest: Box<dyn BufRead + 'a>) -> io::Result<Self> {
        let current = match rest.fill_buf()? {
            [0x1f, 0x8b, ..] => Some(flate2::bufread::GzDecoder::new(rest)),
            [0x1f] => {
                // The buffer ends between the two magic bytes: look at the next one.
                rest.consume(1);
                if rest.fill_buf()?.first() == Some(&0x8b) {
                    let joined: Box<dyn BufRead + 'a> =
                        Box::new(io::Cursor::new([0x1f]).chain(rest));
                    Some(flate2::bufread::GzDecoder::new(joined))
                } else {
                    None
                }
            }
            _ => None,
        };
        Ok(GzMembers { current })
    }
}

impl Read for GzMembers<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let Some(dec) = self.current.as_mut() else {
                return Ok(0);
            };
            let n = dec.read(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            // This member ended, its CRC and size checked.
            let rest = self.current.take().expect("checked above").into_inner();
            *self = GzMembers::after_member(rest)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::gzip::ParGzWriter;
    use std::io::Write;

    use crate::testdata::{noise, text as sample};

    fn ours(data: &[u8]) -> Vec<u8> {
        let mut w = ParGzWriter::new(Vec::new(), 6, 2).unwrap();
        w.write_all(data).unwrap();
        w.finish().unwrap()
    }

    fn read(gz: &[u8], threads: usize) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        open(gz, threads)?.read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn our_pieces_inflate_in_parallel_to_the_same_bytes() {
        for n in [0, 1, 1 << 20, (1 << 20) + 1, (5 << 20) + 12345] {
            let data = sample(n, n as u64 + 1);
            let gz = ours(&data);
            assert_eq!(read(&gz, 3).unwrap(), data, "size {n}");
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(&gz[..])
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, data, "flate2, size {n}");
        }
    }

    #[test]
    fn other_gzip_streams_read_as_before() {
        let data = sample(3 << 20, 7);
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
        e.write_all(&data).unwrap();
        let mut two = e.finish().unwrap();
        // A second member (ours) after the first.
        two.extend(ours(&data[..100_000]));
        let mut want = data.clone();
        want.extend_from_slice(&data[..100_000]);
        assert_eq!(read(&two, 2).unwrap(), want);
        // Longer than a piece may be, without marks: the whole stream to the sequential path.
        let noise = noise(5 << 20, 0x9e37_79b9_7f4a_7c15);
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(1));
        e.write_all(&noise).unwrap();
        let long = e.finish().unwrap();
        assert!(long.len() > MAX_PIECE);
        assert_eq!(read(&long, 2).unwrap(), noise);
        assert!(read(&long[..long.len() - 5], 2).is_err());
    }

    #[test]
    fn a_false_mark_is_taken_over_sequentially() {
        // Marks everywhere a piece cannot start: each guess fails its check (a distance reaches
        // back before it, or its blocks do not end at the mark) and the sequential inflater takes
        // over with the right dictionary. A stored block carrying the mark's bytes as data does it.
        let mut data = sample(3 << 20, 3);
        for at in (0..data.len()).step_by(300_001) {
            data[at..at + 9].copy_from_slice(&PIECE_END);
        }
        let gz = ours(&data);
        assert_eq!(read(&gz, 2).unwrap(), data);
        // Also after pieces have gone out: the second piece's data holds the mark (stored).
        let mut mixed = data.clone();
        mixed.extend_from_slice(&sample(1 << 20, 5));
        let mut raw = Vec::new();
        let mut plain = flate2::write::GzEncoder::new(&mut raw, flate2::Compression::none());
        plain.write_all(&mixed).unwrap();
        plain.finish().unwrap();
        assert_eq!(read(&raw, 2).unwrap(), mixed);
    }

    /// Our tar.gz of a tree holding our own tar.gz: the inner one is stored (incompressible), so
    /// its marks are false marks inside the outer pieces. Pieces are joined across them, and
    /// the rest still inflates in parallel: no sequential take-over.
    #[test]
    fn false_marks_inside_pieces_are_joined_over_and_parallel_inflation_goes_on() {
        let inner = ours(&noise(3 << 20, 41));
        assert!(
            find(&inner, &PIECE_END).is_some(),
            "the inner stream has marks"
        );
        let mut data = sample(2 << 20, 42);
        data.extend_from_slice(&inner);
        data.extend(sample(3 << 20, 43));
        let gz = ours(&data);
        let mut reader = ParGzReader::new(Box::new(&gz[10..]), gz[..10].to_vec(), 2).unwrap();
        let mut got = Vec::new();
        reader.read_to_end(&mut got).unwrap();
        assert!(got == data, "same bytes");
        assert!(!reader.taken_over, "inflated in parallel to the end");
        // Damage still ends in an error, not in other bytes.
        let mut bad = gz.clone();
        let at = 10 + find(&gz[10..], &PIECE_END).unwrap() + 2000;
        bad[at] ^= 0x55;
        assert!(read(&bad, 2).is_err());
    }

    /// The review's attack on joining: stored blocks packed with marks, so that every guess is
    /// false and pieces are as small as marks allow. The work must stay linear: pieces are at
    /// least MIN_PIECE long (no pool round trip per 9 bytes), and cutting one does not move
    /// the rest of the read-ahead (no quadratic copying).
    #[test]
    fn a_stream_packed_with_marks_is_cut_into_few_pieces() {
        let block: Vec<u8> = PIECE_END.repeat(65529 / 9);
        let mut gz = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
        let mut data = Vec::new();
        for _ in 0..24 {
            gz.extend_from_slice(&[0x00, 0xf9, 0xff, 0x06, 0x00]);
            gz.extend_from_slice(&block);
            data.extend_from_slice(&block);
        }
        gz.extend_from_slice(&[0x01, 0, 0, 0xff, 0xff]);
        gz.extend_from_slice(&crc32fast::hash(&data).to_le_bytes());
        gz.extend_from_slice(&(data.len() as u32).to_le_bytes());
        let mut reader = ParGzReader::new(Box::new(&gz[10..]), gz[..10].to_vec(), 2).unwrap();
        let mut got = Vec::new();
        reader.read_to_end(&mut got).unwrap();
        assert!(got == data, "same bytes");
        let most = (gz.len() / 1024) as u64; // pieces of 1 KiB or more
        assert!(
            reader.pieces <= most,
            "{} pieces, at most {most}",
            reader.pieces
        );
        assert!(reader.pieces >= 2, "it was read in pieces at all");
    }

    /// A read that failed leaves every later read failing: no bytes handed out after a gap.
    #[test]
    fn after_an_error_every_read_fails() {
        let data = sample(3 << 20, 51);
        let gz = ours(&data);
        let mut bad = gz.clone();
        let at = 10 + find(&gz[10..], &PIECE_END).unwrap() + 500;
        bad[at] ^= 0xff;
        let mut r = open(&bad[..], 2).unwrap();
        let mut buf = vec![0u8; 64 << 10];
        let failed = loop {
            match r.read(&mut buf) {
                Ok(0) => break false,
                Ok(_) => {}
                Err(_) => break true,
            }
        };
        if failed {
            assert!(r.read(&mut buf).is_err(), "a read after the error");
        }
    }

    /// A segment of a test member: data, level, the previous 32 KiB as dictionary, a piece mark
    /// after it.
    type Segment<'a> = (&'a [u8], u32, bool, bool);

    /// One gzip member from segments; the last segment ends the deflate stream.
    fn member(segments: &[Segment]) -> Vec<u8> {
        use crate::format::gzip::deflate_block;
        let mut gz = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
        let mut crc = crc32fast::Hasher::new();
        let mut len = 0u64;
        let mut prev: &[u8] = &[];
        for (i, &(data, level, dict, mark)) in segments.iter().enumerate() {
            let d = if dict {
                &prev[prev.len().saturating_sub(WINDOW)..]
            } else {
                &[][..]
            };
            let last = i + 1 == segments.len();
            gz.extend(deflate_block(level, data, d, last).unwrap());
            if mark {
                gz.extend_from_slice(&PIECE_END[4..]);
            }
            crc.update(data);
            len += data.len() as u64;
            prev = data;
        }
        gz.extend_from_slice(&crc.finalize().to_le_bytes());
        gz.extend_from_slice(&(len as u32).to_le_bytes());
        gz
    }

    #[test]
    fn pieces_that_fail_their_check_are_taken_over_with_the_right_dictionary() {
        let a = sample(1 << 20, 21);
        let mut b = a[(1 << 20) - 20_000..].to_vec(); // refers back into `a`
        b.extend(sample(200_000, 22));
        let mut c = sample(300_000, 23);
        c[1000..1009].copy_from_slice(&PIECE_END); // a false mark, stored as is below
        let d = sample(500_000, 24);
        let cases: [&[Segment]; 3] = [
            // A good piece, then one that needs the first one's history.
            &[
                (&a, 6, false, true),
                (&b, 6, true, true),
                (&d, 6, false, false),
            ],
            // A good piece, then a stored one with a false mark inside its data.
            &[(&a, 6, false, true), (&c, 0, false, false)],
            // Good pieces, then a mark right before the end of a final block's data.
            &[
                (&a, 6, false, true),
                (&d, 6, false, true),
                (&c, 0, true, false),
            ],
        ];
        for (i, segments) in cases.iter().enumerate() {
            let gz = member(segments);
            let want: Vec<u8> = segments.iter().flat_map(|s| s.0.iter().copied()).collect();
            let mut check = Vec::new();
            flate2::read::GzDecoder::new(&gz[..])
                .read_to_end(&mut check)
                .unwrap();
            assert_eq!(check, want, "case {i}: the test stream itself");
            assert_eq!(read(&gz, 2).unwrap(), want, "case {i}");
        }
    }

    #[test]
    fn raw_deflate_pieces_and_other_raw_streams() {
        let data = sample((3 << 20) + 777, 31);
        let mut w = ParGzWriter::raw(Vec::new(), 6, 2).unwrap();
        w.write_all(&data).unwrap();
        let (ours, crc, len) = w.finish_raw().unwrap();
        assert_eq!((crc, len), (crc32fast::hash(&data), data.len() as u64));
        let read_raw = |z: &[u8]| -> io::Result<Vec<u8>> {
            let mut out = Vec::new();
            open_raw(z, 2)?.read_to_end(&mut out)?;
            Ok(out)
        };
        assert_eq!(read_raw(&ours).unwrap(), data);
        // Bytes after the deflate stream are not read (a zip entry's region may hold them).
        let mut padded = ours.clone();
        padded.extend_from_slice(b"junk");
        assert_eq!(read_raw(&padded).unwrap(), data);
        assert!(read_raw(&ours[..ours.len() - 3]).is_err());
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::new(6));
        e.write_all(&data).unwrap();
        assert_eq!(read_raw(&e.finish().unwrap()).unwrap(), data);
        // Another tool's stream longer than a piece may be, without marks: sequential from the
        // start (no dictionary), cut short or whole.
        let noise = noise(5 << 20, 0x2545_f491_4f6c_dd1d);
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::new(1));
        e.write_all(&noise).unwrap();
        let long = e.finish().unwrap();
        assert!(long.len() > MAX_PIECE);
        assert_eq!(read_raw(&long).unwrap(), noise);
        assert!(read_raw(&long[..long.len() - 100]).is_err());
    }

    /// The review's attack on an earlier check: a final stored block whose data ends with a
    /// mark and whose `LEN` covers the two bytes after it. A sequential inflater stops there,
    /// so must we.
    #[test]
    fn a_final_block_across_a_mark_reads_as_sequentially() {
        let mut data = b"stored data ".repeat(100);
        data.extend_from_slice(&PIECE_END);
        let len = (data.len() + 2) as u16;
        let mut gz = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 0x01];
        gz.extend_from_slice(&len.to_le_bytes());
        gz.extend_from_slice(&(!len).to_le_bytes());
        gz.extend_from_slice(&data);
        // The two bytes the block's LEN covers after the mark (not the closer `03 00`).
        let mut stored = data.clone();
        stored.extend_from_slice(b"AB");
        gz.extend_from_slice(b"AB");
        gz.extend_from_slice(&crc32fast::hash(&stored).to_le_bytes());
        gz.extend_from_slice(&(stored.len() as u32).to_le_bytes());
        gz.extend_from_slice(&[0x03, 0x00, 0, 0, 0, 0, 0, 0, 0, 0]); // after the member: ignored
        let seq = read(&gz, 0).map_err(|e| e.kind());
        let par = read(&gz, 2).map_err(|e| e.kind());
        assert_eq!(par, seq);
    }

    #[test]
    fn damage_and_truncation_are_errors() {
        let data = sample(3 << 20, 11);
        let gz = ours(&data);
        for cut in [11, 1000, gz.len() / 2, gz.len() - 9, gz.len() - 1] {
            assert!(read(&gz[..cut], 2).is_err(), "cut at {cut} of {}", gz.len());
        }
        let mut bad_crc = gz.clone();
        let n = bad_crc.len();
        bad_crc[n - 8] ^= 1;
        assert!(read(&bad_crc, 2).is_err());
        for at in [20, gz.len() / 3, gz.len() * 2 / 3] {
            let mut flipped = gz.clone();
            flipped[at] ^= 0x10;
            // Either an error or, if the flip is in a place inflate ignores, the exact data.
            if let Ok(back) = read(&flipped, 2) {
                assert_eq!(back, data, "flip at {at} gave different data");
            }
        }
    }
}
