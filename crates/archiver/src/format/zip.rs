//! Writing zip, our own rather than the `zip` crate's writer: entries are compressed in parallel by
//! the read workers and laid down in order by one writer, large files stream through in bounded
//! memory, and the bytes must not depend on the thread count or the platform (pinned by
//! `tests/golden.rs`); a writer that compresses as it writes cannot do the first, and
//! determinism needs every field chosen here.
//!
//! The read workers compress every entry (`encode`, `StreamEncoder`); the writer only
//! lays prepared entries down in order and keeps the central directory.
//!
//! Entries up to `SMALL_FILE` (1 MiB) arrive whole with their CRC and sizes, so their local
//! headers carry the real values (streaming readers such as `bsdtar -tf -` need no data descriptor).
//! Larger files arrive as a stream of compressed chunks whose CRC and compressed size are known only at
//! the end: they get a data descriptor (flag bit 3) and are always deflate-framed — at level 0 when the
//! data does not compress — because a *stored* entry with a data descriptor cannot be found the end of
//! by a streaming reader. Memory for a large entry is therefore one stream window, whatever its size.
//!
//! Determinism: explicit DOS time (UTC, clamped to 1980–2107) plus the extended-timestamp field,
//! Unix attributes, UTF-8 flag, fixed version fields, no zopfli, sorted order.

use std::io::{self, Write};
use std::path::Path;

use crate::entry::Meta;
use crate::manifest::path_bytes;

/// The zip records' signatures and fixed lengths (APPNOTE.TXT §4.3), shared by this writer and
/// the reader (`zip_read.rs`), so the two cannot disagree about a layout.
pub(crate) mod record {
    /// Local file header; 30 bytes before its name and extra field.
    pub const LOCAL: u32 = 0x0403_4b50;
    pub const LOCAL_LEN: usize = 30;
    /// Central directory file header; 46 bytes before its name, extra field and comment.
    pub const CENTRAL: u32 = 0x0201_4b50;
    pub const CENTRAL_LEN: usize = 46;
    /// Data descriptor (the signature is optional in the format; we always write it).
    pub const DESCRIPTOR: u32 = 0x0807_4b50;
    /// End of central directory record; 22 bytes before its comment.
    pub const END: u32 = 0x0605_4b50;
    pub const END_LEN: usize = 22;
    /// ZIP64 end of central directory record and its locator (20 bytes).
    pub const ZIP64_END: u32 = 0x0606_4b50;
    pub const ZIP64_LOCATOR: u32 = 0x0706_4b50;
    pub const ZIP64_LOCATOR_LEN: usize = 20;
}

/// A zip compression method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[non_exhaustive]
pub enum ZipMethod {
    /// No compression (method 0).
    Store,
    /// Deflate (method 8), levels 1-9. Every zip reader has it.
    Deflate,
    /// Zstandard (method 93), levels 1-19. Smaller and faster, but Info-ZIP, Python's zipfile
    /// (before 3.14) and 7-Zip 16 cannot read it.
    Zstd,
}

impl ZipMethod {
    fn code(self) -> u16 {
        match self {
            ZipMethod::Store => 0,
            ZipMethod::Deflate => 8,
            ZipMethod::Zstd => 93,
        }
    }

    fn version_needed(self) -> u16 {
        match self {
            ZipMethod::Store => 10,
            ZipMethod::Deflate => 20,
            ZipMethod::Zstd => 63,
        }
    }

    /// Default level and valid range.
    pub fn levels(self) -> (u32, std::ops::RangeInclusive<u32>) {
        match self {
            ZipMethod::Store => (0, 0..=9),
            ZipMethod::Deflate => (6, 1..=9),
            ZipMethod::Zstd => (3, 1..=19),
        }
    }
}

impl std::str::FromStr for ZipMethod {
    type Err = crate::Error;
    fn from_str(s: &str) -> Result<Self, crate::Error> {
        match s.to_ascii_lowercase().as_str() {
            "deflate" => Ok(ZipMethod::Deflate),
            "zstd" => Ok(ZipMethod::Zstd),
            "store" | "stored" | "none" => Ok(ZipMethod::Store),
            other => Err(crate::Error::Usage(format!(
                "unknown zip method {other:?}; expected deflate, zstd or store"
            ))),
        }
    }
}

/// How the workers encode zip entries.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ZipEncoding {
    pub method: ZipMethod,
    pub level: u32,
    /// Threads that deflate one large entry (its bytes do not depend on this).
    pub threads: usize,
}

/// An entry compressed by a worker, ready to be laid down verbatim.
#[derive(Debug)]
pub(crate) struct Encoded {
    pub method: ZipMethod,
    pub crc: u32,
    pub size: u64,
    pub data: Vec<u8>,
}

/// File name extensions whose content is already compressed: stored without trying.
const COMPRESSED_EXTENSIONS: &[&str] = &[
    "7z", "aac", "apk", "avif", "br", "bz2", "deb", "docx", "epub", "flac", "gif", "gz", "heic",
    "jar", "jpeg", "jpg", "lz", "lz4", "lzma", "m4a", "mkv", "mov", "mp3", "mp4", "odt", "ogg",
    "opus", "png", "pptx", "rar", "rpm", "tbz2", "tgz", "txz", "tzst", "webm", "webp", "whl",
    "woff", "woff2", "xlsx", "xz", "zip", "zst",
];

/// True when the name says the content is already compressed.
pub(crate) fn already_compressed(name: &Path) -> bool {
    name.extension().and_then(|e| e.to_str()).is_some_and(|e| {
        COMPRESSED_EXTENSIONS
            .iter()
            .any(|c| c.eq_ignore_ascii_case(e))
    })
}

/// Compresses a whole entry; stores it when compression would not make it smaller.
pub(crate) fn encode(data: Vec<u8>, name: &Path, enc: ZipEncoding) -> io::Result<Encoded> {
    let crc = crc32fast::hash(&data);
    let size = data.len() as u64;
    let stored = |data| Encoded {
        method: ZipMethod::Store,
        crc,
        size,
        data,
    };
    if data.is_empty() || enc.method == ZipMethod::Store || already_compressed(name) {
        return Ok(stored(data));
    }
    // Larger entries are sampled first: deflating random data costs as much as text and gains
    // nothing. Small ones are simply compressed and compared.
    if data.len() > SAMPLE && looks_incompressible(&data)? {
        return Ok(stored(data));
    }
    let packed = match enc.method {
        ZipMethod::Deflate => deflate_all(&data, enc.level)?,
        ZipMethod::Zstd => zstd::bulk::compress(&data, enc.level as i32)?,
        ZipMethod::Store => unreachable!("handled above"),
    };
    if packed.len() >= data.len() {
        return Ok(stored(data));
    }
    Ok(Encoded {
        method: enc.method,
        crc,
        size,
        data: packed,
    })
}

/// The pieces [`ZipSink::streamed_file`] reads its input in (the pack workers' chunk size).
const STREAMED_CHUNK: usize = 256 << 10;

/// Fills `buf` from `r` unless the input ends first; the number of bytes read.
fn read_full(r: &mut impl io::Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// How much of an entry's start decides whether it is worth compressing.
const SAMPLE: usize = 64 << 10;

/// True when the first [`SAMPLE`] bytes do not shrink by 3% at the fastest level: random data, or
/// a compressed format under a name we do not know. Such entries are stored, as most zip tools
/// do; deflating them would gain under 1% at many times the cost.
fn looks_incompressible(data: &[u8]) -> io::Result<bool> {
    let sample = &data[..data.len().min(SAMPLE)];
    Ok(deflate_all(sample, 1)?.len() as f64 >= sample.len() as f64 * 0.97)
}

/// Raw deflate of a whole entry by libdeflate: about 1.5 to 2 times zlib's speed at the same
/// level, with output as small or smaller (docs/BENCHMARKS.md).
fn deflate_all(data: &[u8], level: u32) -> io::Result<Vec<u8>> {
    super::deflate::whole(data, level)
}

/// At most this many threads deflate one large entry. Every worker may be writing a large entry
/// at once, each holding up to `threads + 1` pieces (about 2 MiB each with their output), so the
/// cap keeps that at `5j` pieces; 4 threads already deflate faster than a disk reads.
const ENTRY_DEFLATERS: usize = 4;

/// Compresses a large entry chunk by chunk on a worker. Deflate-framed unless the method is zstd.
pub(crate) struct StreamEncoder {
    kind: StreamKind,
    crc: crc32fast::Hasher,
    compressed: u64,
}

enum StreamKind {
    /// Stored-in-deflate (level 0, data that does not compress).
    Deflate(flate2::Compress),
    /// Compressing levels: independent 1 MiB pieces deflated on a pool, exactly as our tar.gz
    /// (marks included), so one large file no longer leaves the other cores idle at the end of
    /// a run.
    ParDeflate(Box<super::gzip::ParGzWriter<Vec<u8>>>),
    Zstd(zstd::stream::raw::Encoder<'static>),
}

impl StreamEncoder {
    /// `first` is the first chunk, used to decide whether the data compresses at all.
    pub fn new(enc: ZipEncoding, name: &Path, first: &[u8]) -> io::Result<(Self, ZipMethod)> {
        let incompressible = enc.method == ZipMethod::Store
            || already_compressed(name)
            || looks_incompressible(first)?;
        let (kind, method) = match enc.method {
            ZipMethod::Zstd if !incompressible => (
                StreamKind::Zstd(zstd::stream::raw::Encoder::new(enc.level as i32)?),
                ZipMethod::Zstd,
            ),
            _ if incompressible || enc.level == 0 => (
                StreamKind::Deflate(flate2::Compress::new(flate2::Compression::new(0), false)),
                ZipMethod::Deflate,
            ),
            _ => (
                StreamKind::ParDeflate(Box::new(super::gzip::ParGzWriter::raw(
                    Vec::new(),
                    enc.level,
                    enc.threads.min(ENTRY_DEFLATERS),
                )?)),
                ZipMethod::Deflate,
            ),
        };
        Ok((
            StreamEncoder {
                kind,
                crc: crc32fast::Hasher::new(),
                compressed: 0,
            },
            method,
        ))
    }

    /// Compresses `input` (raw bytes) and returns what is ready of the compressed stream.
    pub fn update(&mut self, input: &[u8]) -> io::Result<Vec<u8>> {
        self.crc.update(input);
        let out = self.run(input, false)?;
        self.compressed += out.len() as u64;
        Ok(out)
    }

    /// Ends the stream: the last compressed bytes, the CRC-32 and the compressed size.
    pub fn finish(mut self) -> io::Result<(Vec<u8>, u32, u64)> {
        if let StreamKind::ParDeflate(w) = self.kind {
            let (out, _, _) = w.finish_raw()?;
            self.compressed += out.len() as u64;
            return Ok((out, self.crc.finalize(), self.compressed));
        }
        let out = self.run(&[], true)?;
        self.compressed += out.len() as u64;
        Ok((out, self.crc.finalize(), self.compressed))
    }

    fn run(&mut self, input: &[u8], last: bool) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(input.len() / 2 + 1024);
        match &mut self.kind {
            StreamKind::ParDeflate(w) => {
                debug_assert!(!last, "finish ends a parallel stream");
                w.write_all(input)?;
                Ok(std::mem::take(w.out_mut()))
            }
            StreamKind::Deflate(c) => {
                let flush = if last {
                    flate2::FlushCompress::Finish
                } else {
                    flate2::FlushCompress::None
                };
                let start = c.total_in();
                loop {
                    if out.capacity() - out.len() < 1024 {
                        out.reserve(out.capacity().max(64 << 10));
                    }
                    let consumed = (c.total_in() - start) as usize;
                    let status = c
                        .compress_vec(&input[consumed..], &mut out, flush)
                        .map_err(io::Error::other)?;
                    let all_in = (c.total_in() - start) as usize == input.len();
                    let room_left = out.capacity() - out.len() >= 1024;
                    if (last && status == flate2::Status::StreamEnd)
                        || (!last && all_in && room_left)
                    {
                        return Ok(out);
                    }
                }
            }
            StreamKind::Zstd(z) => {
                use zstd::stream::raw::{InBuffer, Operation, OutBuffer};
                let mut buf =
                    vec![0u8; zstd::zstd_safe::CCtx::out_size().max(input.len() / 2 + 1024)];
                let mut inb = InBuffer::around(input);
                while inb.pos < input.len() {
                    let mut outb = OutBuffer::around(&mut buf[..]);
                    z.run(&mut inb, &mut outb)?;
                    let n = outb.pos();
                    out.extend_from_slice(&buf[..n]);
                }
                if last {
                    loop {
                        let mut outb = OutBuffer::around(&mut buf[..]);
                        let remaining = z.finish(&mut outb, true)?;
                        let n = outb.pos();
                        out.extend_from_slice(&buf[..n]);
                        if remaining == 0 {
                            break;
                        }
                    }
                }
                Ok(out)
            }
        }
    }
}

/// The kinds of zip entries we write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
    Symlink,
}

/// What the central directory needs of an entry already written.
struct Pending {
    name: Vec<u8>,
    kind: Kind,
    mode: u32,
    mtime: i64,
    method: ZipMethod,
    flags: u16,
    crc: u32,
    csize: u64,
    usize: u64,
    offset: u64,
}

/// The zip stream. Owned by the writer thread only.
pub(crate) struct ZipSink<W: Write> {
    out: io::BufWriter<W>,
    offset: u64,
    central: Vec<u8>,
    entries: u64,
    reproducible: Option<u64>,
    /// An open streamed entry, waiting for its CRC and sizes.
    open: Option<Pending>,
    /// Sizes from here on get ZIP64 fields (lowered in tests to exercise that code path).
    zip64_at: u64,
}

/// Sizes and offsets at or above this need ZIP64 fields.
const ZIP64_LIMIT: u64 = 0xFFFF_FFFF;

impl<W: Write> ZipSink<W> {
    pub fn new(out: W, reproducible: Option<u64>) -> Self {
        ZipSink {
            out: io::BufWriter::with_capacity(256 << 10, out),
            offset: 0,
            central: Vec::new(),
            entries: 0,
            reproducible,
            open: None,
            zip64_at: ZIP64_LIMIT,
        }
    }

    #[cfg(test)]
    fn with_zip64_at(mut self, at: u64) -> Self {
        self.zip64_at = at;
        self
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.offset += bytes.len() as u64;
        Ok(())
    }

    fn pending(&self, rel: &Path, kind: Kind, meta: &Meta, method: ZipMethod) -> Pending {
        let mut name = path_bytes(rel).into_owned();
        if kind == Kind::Dir {
            name.push(b'/');
        }
        let utf8 = std::str::from_utf8(&name).is_ok();
        let mtime = self
            .reproducible
            .map_or(meta.mtime, |t| meta.mtime.min(t as i64));
        Pending {
            name,
            kind,
            mode: meta.mode & 0o7777,
            mtime,
            method,
            flags: if utf8 { 1 << 11 } else { 0 },
            crc: 0,
            csize: 0,
            usize: 0,
            offset: self.offset,
        }
    }

    /// Writes a local header. `known`: real CRC and sizes; otherwise a data descriptor follows.
    fn local_header(&mut self, p: &Pending, known: bool, zip64: bool) -> io::Result<()> {
        let (time, date) = dos_time(p.mtime);
        let ut = extended_time(p.mtime);
        let mut h = Vec::with_capacity(record::LOCAL_LEN + p.name.len() + 29);
        h.extend_from_slice(&record::LOCAL.to_le_bytes());
        h.extend_from_slice(&version_needed(p.method, zip64).to_le_bytes());
        h.extend_from_slice(&(p.flags | if known { 0 } else { 1 << 3 }).to_le_bytes());
        h.extend_from_slice(&p.method.code().to_le_bytes());
        h.extend_from_slice(&time.to_le_bytes());
        h.extend_from_slice(&date.to_le_bytes());
        let (crc, csize, usize) = match (known, zip64) {
            (true, false) => (p.crc, p.csize as u32, p.usize as u32),
            (_, true) => (if known { p.crc } else { 0 }, u32::MAX, u32::MAX),
            (false, false) => (0, 0, 0),
        };
        h.extend_from_slice(&crc.to_le_bytes());
        h.extend_from_slice(&csize.to_le_bytes());
        h.extend_from_slice(&usize.to_le_bytes());
        h.extend_from_slice(&(p.name.len() as u16).to_le_bytes());
        let extra_len = ut.as_ref().map_or(0, |u| u.len() as u16) + if zip64 { 20 } else { 0 };
        h.extend_from_slice(&extra_len.to_le_bytes());
        h.extend_from_slice(&p.name);
        h.extend_from_slice(ut.as_ref().map_or(&[][..], |u| &u[..]));
        if zip64 {
            h.extend_from_slice(&1u16.to_le_bytes());
            h.extend_from_slice(&16u16.to_le_bytes());
            let (u, c) = if known { (p.usize, p.csize) } else { (0, 0) };
            h.extend_from_slice(&u.to_le_bytes());
            h.extend_from_slice(&c.to_le_bytes());
        }
        self.write(&h)
    }

    fn central_record(&mut self, p: &Pending, descriptor: bool) {
        let (time, date) = dos_time(p.mtime);
        let zip64_sizes = p.usize >= self.zip64_at || p.csize >= self.zip64_at;
        let zip64_offset = p.offset >= self.zip64_at;
        let mut extra = Vec::new();
        if let Some(ut) = extended_time(p.mtime) {
            extra.extend_from_slice(&ut);
        }
        if zip64_sizes || zip64_offset {
            let mut z = Vec::new();
            if zip64_sizes {
                z.extend_from_slice(&p.usize.to_le_bytes());
                z.extend_from_slice(&p.csize.to_le_bytes());
            }
            if zip64_offset {
                z.extend_from_slice(&p.offset.to_le_bytes());
            }
            extra.extend_from_slice(&1u16.to_le_bytes());
            extra.extend_from_slice(&(z.len() as u16).to_le_bytes());
            extra.extend_from_slice(&z);
        }
        let file_type = match p.kind {
            Kind::File => 0o100000,
            Kind::Dir => 0o040000,
            Kind::Symlink => 0o120000,
        };
        let external = ((file_type | p.mode) << 16) | if p.kind == Kind::Dir { 0x10 } else { 0 };
        let c = &mut self.central;
        c.extend_from_slice(&record::CENTRAL.to_le_bytes());
        c.extend_from_slice(&0x031eu16.to_le_bytes()); // made by: Unix, spec 3.0 (as Info-ZIP)
        c.extend_from_slice(&version_needed(p.method, zip64_sizes || zip64_offset).to_le_bytes());
        c.extend_from_slice(&(p.flags | if descriptor { 1 << 3 } else { 0 }).to_le_bytes());
        c.extend_from_slice(&p.method.code().to_le_bytes());
        c.extend_from_slice(&time.to_le_bytes());
        c.extend_from_slice(&date.to_le_bytes());
        c.extend_from_slice(&p.crc.to_le_bytes());
        let clamp = |v: u64, big: bool| if big { u32::MAX } else { v as u32 };
        c.extend_from_slice(&clamp(p.csize, zip64_sizes).to_le_bytes());
        c.extend_from_slice(&clamp(p.usize, zip64_sizes).to_le_bytes());
        c.extend_from_slice(&(p.name.len() as u16).to_le_bytes());
        c.extend_from_slice(&(extra.len() as u16).to_le_bytes());
        c.extend_from_slice(&0u16.to_le_bytes()); // comment
        c.extend_from_slice(&0u16.to_le_bytes()); // disk
        c.extend_from_slice(&0u16.to_le_bytes()); // internal attributes
        c.extend_from_slice(&external.to_le_bytes());
        c.extend_from_slice(&clamp(p.offset, zip64_offset).to_le_bytes());
        c.extend_from_slice(&p.name);
        c.extend_from_slice(&extra);
        self.entries += 1;
    }

    fn whole(&mut self, mut p: Pending, crc: u32, usize: u64, data: &[u8]) -> io::Result<()> {
        p.crc = crc;
        p.usize = usize;
        p.csize = data.len() as u64;
        let zip64 = p.usize >= self.zip64_at || p.csize >= self.zip64_at;
        self.local_header(&p, true, zip64)?;
        self.write(data)?;
        self.central_record(&p, false);
        Ok(())
    }

    pub fn dir(&mut self, rel: &Path, meta: &Meta) -> io::Result<()> {
        let p = self.pending(rel, Kind::Dir, meta, ZipMethod::Store);
        self.whole(p, 0, 0, &[])
    }

    pub fn symlink(&mut self, rel: &Path, meta: &Meta, target: &Path) -> io::Result<()> {
        let mut meta = *meta;
        meta.mode = 0o777;
        let p = self.pending(rel, Kind::Symlink, &meta, ZipMethod::Store);
        let target = path_bytes(target).into_owned();
        self.whole(p, crc32fast::hash(&target), target.len() as u64, &target)
    }

    /// A file compressed by a worker.
    pub fn encoded(&mut self, rel: &Path, meta: &Meta, e: &Encoded) -> io::Result<()> {
        let p = self.pending(rel, Kind::File, meta, e.method);
        self.whole(p, e.crc, e.size, &e.data)
    }

    /// Starts a streamed file of `size` raw bytes; its compressed bytes follow through
    /// [`stream_data`](Self::stream_data), then [`end_stream`](Self::end_stream).
    pub fn begin_stream(
        &mut self,
        rel: &Path,
        meta: &Meta,
        size: u64,
        method: ZipMethod,
    ) -> io::Result<()> {
        let mut p = self.pending(rel, Kind::File, meta, method);
        p.usize = size;
        // Decided before the data is seen: any size near the limit gets ZIP64, since the compressed
        // size of incompressible data can pass it too.
        let zip64 = size >= self.zip64_at - self.zip64_at.min(size / 64 + (1 << 20));
        self.local_header(&p, false, zip64)?;
        if zip64 {
            p.csize = u64::MAX; // marks "ZIP64 descriptor" until end_stream fills in the real value
        }
        self.open = Some(p);
        Ok(())
    }

    pub fn stream_data(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.write(bytes)
    }

    pub fn end_stream(&mut self, crc: u32, csize: u64) -> io::Result<()> {
        let mut p = self.open.take().expect("a stream is open");
        let zip64 = p.csize == u64::MAX;
        p.crc = crc;
        p.csize = csize;
        let mut d = Vec::with_capacity(24);
        d.extend_from_slice(&record::DESCRIPTOR.to_le_bytes());
        d.extend_from_slice(&crc.to_le_bytes());
        if zip64 {
            d.extend_from_slice(&csize.to_le_bytes());
            d.extend_from_slice(&p.usize.to_le_bytes());
        } else {
            d.extend_from_slice(&(csize as u32).to_le_bytes());
            d.extend_from_slice(&(p.usize as u32).to_le_bytes());
        }
        self.write(&d)?;
        self.central_record(&p, true);
        Ok(())
    }

    /// A file of `size` bytes read from `data` and compressed as it is read, exactly as a large
    /// file from a worker is (the same [`StreamEncoder`], so the same bytes): memory stays at a
    /// few chunks whatever `size` is, and deflating runs on `enc.threads` threads.
    pub(crate) fn streamed_file(
        &mut self,
        rel: &Path,
        meta: &Meta,
        size: u64,
        data: impl io::Read,
        enc: ZipEncoding,
    ) -> io::Result<()> {
        // One byte past `size` is enough to tell the input was longer than announced.
        let mut data = data.take(size.saturating_add(1));
        let mut chunk = vec![0u8; STREAMED_CHUNK];
        let mut got = read_full(&mut data, &mut chunk)?;
        let (mut encoder, method) = StreamEncoder::new(enc, rel, &chunk[..got])?;
        self.begin_stream(rel, meta, size, method)?;
        let mut total = 0u64;
        while got > 0 {
            total += got as u64;
            let out = encoder.update(&chunk[..got])?;
            self.stream_data(&out)?;
            got = read_full(&mut data, &mut chunk)?;
        }
        if total != size {
            return Err(io::Error::other(format!(
                "{}: {total} bytes where {size} were announced",
                rel.display()
            )));
        }
        let (tail, crc, csize) = encoder.finish()?;
        self.stream_data(&tail)?;
        self.end_stream(crc, csize)
    }

    /// Writes the central directory and the end records; returns the output.
    pub fn finish(mut self) -> io::Result<W> {
        let cd_offset = self.offset;
        let central = std::mem::take(&mut self.central);
        self.write(&central)?;
        let cd_size = central.len() as u64;
        let zip64 =
            self.entries >= 0xFFFF || cd_offset >= self.zip64_at || cd_size >= self.zip64_at;
        let mut e = Vec::with_capacity(98);
        if zip64 {
            let record_at = self.offset;
            e.extend_from_slice(&record::ZIP64_END.to_le_bytes());
            e.extend_from_slice(&44u64.to_le_bytes());
            e.extend_from_slice(&0x031eu16.to_le_bytes());
            e.extend_from_slice(&45u16.to_le_bytes());
            e.extend_from_slice(&0u32.to_le_bytes());
            e.extend_from_slice(&0u32.to_le_bytes());
            e.extend_from_slice(&self.entries.to_le_bytes());
            e.extend_from_slice(&self.entries.to_le_bytes());
            e.extend_from_slice(&cd_size.to_le_bytes());
            e.extend_from_slice(&cd_offset.to_le_bytes());
            e.extend_from_slice(&record::ZIP64_LOCATOR.to_le_bytes());
            e.extend_from_slice(&0u32.to_le_bytes());
            e.extend_from_slice(&record_at.to_le_bytes());
            e.extend_from_slice(&1u32.to_le_bytes());
        }
        let entries16 = if zip64 { 0xFFFF } else { self.entries as u16 };
        e.extend_from_slice(&record::END.to_le_bytes());
        e.extend_from_slice(&0u16.to_le_bytes());
        e.extend_from_slice(&0u16.to_le_bytes());
        e.extend_from_slice(&entries16.to_le_bytes());
        e.extend_from_slice(&entries16.to_le_bytes());
        e.extend_from_slice(&(if zip64 { u32::MAX } else { cd_size as u32 }).to_le_bytes());
        e.extend_from_slice(&(if zip64 { u32::MAX } else { cd_offset as u32 }).to_le_bytes());
        e.extend_from_slice(&0u16.to_le_bytes());
        self.write(&e)?;
        self.out.flush()?;
        self.out.into_inner().map_err(|e| e.into_error())
    }
}

fn version_needed(method: ZipMethod, zip64: bool) -> u16 {
    if zip64 {
        method.version_needed().max(45)
    } else {
        method.version_needed()
    }
}

/// MS-DOS time and date of a Unix time, in UTC, clamped to what DOS dates can hold (1980-2107).
/// The extended timestamp field (0x5455, "UT"): the exact mtime in UTC, which unzip prefers to
/// the DOS time. It holds a signed 32-bit time (1901-2038, as Info-ZIP writes and we read it);
/// a time outside that range is left to the DOS time alone (1980-2107, two-second steps), not
/// wrapped into another date.
fn extended_time(mtime: i64) -> Option<[u8; 9]> {
    let t = i32::try_from(mtime).ok()?;
    let mut f = [0u8; 9];
    f[..2].copy_from_slice(&0x5455u16.to_le_bytes());
    f[2..4].copy_from_slice(&5u16.to_le_bytes());
    f[4] = 1;
    f[5..].copy_from_slice(&t.to_le_bytes());
    Some(f)
}

pub(crate) fn dos_time(t: i64) -> (u16, u16) {
    const FIRST: (u16, u16) = (0, (1 << 5) | 1); // 1980-01-01 00:00:00
    const LAST: (u16, u16) = ((23 << 11) | (59 << 5) | 29, (127 << 9) | (12 << 5) | 31);
    let Ok(ts) = jiff::Timestamp::from_second(t) else {
        return if t < 0 { FIRST } else { LAST };
    };
    let dt = jiff::tz::TimeZone::UTC.to_datetime(ts);
    match dt.year() {
        ..1980 => FIRST,
        2108.. => LAST,
        y => {
            let time =
                ((dt.hour() as u16) << 11) | ((dt.minute() as u16) << 5) | (dt.second() as u16 / 2);
            let date = (((y - 1980) as u16) << 9) | ((dt.month() as u16) << 5) | dt.day() as u16;
            (time, date)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn meta(mtime: i64) -> Meta {
        Meta {
            mode: 0o644,
            mtime,
            uid: 0,
            gid: 0,
        }
    }

    #[test]
    fn dos_time_clamps_and_converts() {
        assert_eq!(dos_time(0), (0, (1 << 5) | 1));
        // 2023-11-14 22:13:20 UTC
        let (t, d) = dos_time(1_700_000_000);
        assert_eq!((d >> 9) + 1980, 2023);
        assert_eq!((d >> 5) & 15, 11);
        assert_eq!(d & 31, 14);
        assert_eq!((t >> 11, (t >> 5) & 63, (t & 31) * 2), (22, 13, 20));
        assert_eq!(dos_time(i64::from(u32::MAX) * 2).1 >> 9, 127);
        // A leap day, the last second DOS can hold, the first it cannot, and the extremes.
        let (t, d) = dos_time(1_709_210_096); // 2024-02-29 12:34:56
        assert_eq!((d >> 9, (d >> 5) & 15, d & 31), (44, 2, 29));
        assert_eq!((t >> 11, (t >> 5) & 63, (t & 31) * 2), (12, 34, 56));
        let last = ((23 << 11) | (59 << 5) | 29, (127 << 9) | (12 << 5) | 31);
        assert_eq!(dos_time(4_354_819_198), last);
        assert_eq!(dos_time(4_354_819_200), last);
        assert_eq!(dos_time(i64::MAX), last);
        assert_eq!(dos_time(315_532_799), (0, (1 << 5) | 1));
        assert_eq!(dos_time(i64::MIN), (0, (1 << 5) | 1));
    }

    #[test]
    fn stores_what_does_not_shrink() {
        let enc = ZipEncoding {
            method: ZipMethod::Deflate,
            level: 6,
            threads: 2,
        };
        let text = b"hello hello hello hello hello hello hello".repeat(10);
        assert_eq!(
            encode(text.clone(), Path::new("a.txt"), enc)
                .unwrap()
                .method,
            ZipMethod::Deflate
        );
        assert_eq!(
            encode(text.clone(), Path::new("a.JPG"), enc)
                .unwrap()
                .method,
            ZipMethod::Store
        );
        let noise = crate::testdata::noise(4096, 0x9e37_79b9_7f4a_7c15);
        let e = encode(noise.clone(), Path::new("noise"), enc).unwrap();
        assert_eq!(e.method, ZipMethod::Store);
        assert_eq!(e.data, noise);
        // Larger entries are judged by their first 64 KiB: text after noise is stored too (the
        // price of not deflating every random file), noise after text is deflated.
        let text = crate::testdata::text(200 << 10, 3);
        let noise = crate::testdata::noise(200 << 10, 4);
        let big_noise = crate::testdata::noise(900 << 10, 5);
        let big = encode(big_noise.clone(), Path::new("big"), enc).unwrap();
        assert_eq!((big.method, big.data), (ZipMethod::Store, big_noise));
        let noise_first = [&noise[..], &text[..]].concat();
        let e = encode(noise_first, Path::new("nt"), enc).unwrap();
        assert_eq!(e.method, ZipMethod::Store);
        let text_first = [&text[..], &noise[..]].concat();
        let e = encode(text_first.clone(), Path::new("tn"), enc).unwrap();
        assert_eq!(e.method, ZipMethod::Deflate);
        assert!(e.data.len() < text_first.len());
    }

    /// `streamed_file` gives what the zip crate reads back, with ZIP64 forced or not, for every
    /// method; an input shorter or longer than announced is an error, found at most one byte
    /// past the announced size.
    #[test]
    fn streamed_file_round_trips_and_refuses_a_wrong_length() {
        let text = crate::testdata::text((3 << 20) + 17, 9);
        for method in [ZipMethod::Deflate, ZipMethod::Zstd, ZipMethod::Store] {
            for zip64_at in [u64::from(u32::MAX), 1 << 20] {
                let enc = ZipEncoding {
                    method,
                    level: 6,
                    threads: 2,
                };
                let mut z = ZipSink::new(Vec::new(), None).with_zip64_at(zip64_at);
                let size = text.len() as u64;
                z.streamed_file(Path::new("m"), &meta(7), size, &text[..], enc)
                    .unwrap();
                let bytes = z.finish().unwrap();
                let mut a = ::zip::ZipArchive::new(io::Cursor::new(bytes)).unwrap();
                let mut back = Vec::new();
                a.by_name("m").unwrap().read_to_end(&mut back).unwrap();
                assert!(back == text, "{method:?} at {zip64_at}");
            }
            let enc = ZipEncoding {
                method,
                level: 6,
                threads: 2,
            };
            let short = ZipSink::new(Vec::new(), None).streamed_file(
                Path::new("m"),
                &meta(7),
                text.len() as u64 + 1,
                &text[..],
                enc,
            );
            assert!(short.unwrap_err().to_string().contains("were announced"));
            // An endless input: refused, not read to its end.
            let long = ZipSink::new(Vec::new(), None).streamed_file(
                Path::new("m"),
                &meta(7),
                1000,
                io::repeat(b'x'),
                enc,
            );
            assert!(long.unwrap_err().to_string().contains("1001 bytes"));
        }
    }

    /// Builds an archive with every entry kind, a streamed entry, and ZIP64 forced by a lowered
    /// threshold, then reads it back with the `zip` crate and checks every byte.
    fn sample(zip64_at: u64, method: ZipMethod) -> Vec<u8> {
        let enc = ZipEncoding {
            method,
            level: 6,
            threads: 2,
        };
        let mut z = ZipSink::new(Vec::new(), None).with_zip64_at(zip64_at);
        z.dir(Path::new("d"), &meta(1_700_000_000)).unwrap();
        let e = encode(b"small file\n".repeat(30), Path::new("d/small.txt"), enc).unwrap();
        z.encoded(Path::new("d/small.txt"), &meta(1_700_000_000), &e)
            .unwrap();
        z.symlink(Path::new("link"), &meta(0), Path::new("d/small.txt"))
            .unwrap();
        let big = b"streamed content ".repeat(20_000);
        let (mut s, m) = StreamEncoder::new(enc, Path::new("big"), &big[..1000]).unwrap();
        z.begin_stream(Path::new("big"), &meta(5), big.len() as u64, m)
            .unwrap();
        for part in big.chunks(70_000) {
            let out = s.update(part).unwrap();
            z.stream_data(&out).unwrap();
        }
        let (tail, crc, csize) = s.finish().unwrap();
        z.stream_data(&tail).unwrap();
        z.end_stream(crc, csize).unwrap();
        z.finish().unwrap()
    }

    fn check(bytes: Vec<u8>) {
        // Our own reader, used by list and unpack.
        let mut f = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut f, &bytes).unwrap();
        let dir = crate::format::zip_read::read_directory(&f).unwrap();
        let names: Vec<&[u8]> = dir.iter().map(|e| e.name.as_slice()).collect();
        assert_eq!(names, [&b"d/"[..], b"d/small.txt", b"link", b"big"]);
        let mut big = Vec::new();
        crate::format::zip_read::open_entry(&f, &dir[3])
            .unwrap()
            .read_to_end(&mut big)
            .unwrap();
        assert_eq!(big, b"streamed content ".repeat(20_000));
        assert!(dir[2].is_symlink() && dir[0].is_dir());
        check_with_zip_crate(bytes);
    }

    fn check_with_zip_crate(bytes: Vec<u8>) {
        let mut a = ::zip::ZipArchive::new(io::Cursor::new(bytes)).unwrap();
        assert_eq!(a.len(), 4);
        let names: Vec<String> = (0..a.len())
            .map(|i| String::from_utf8(a.by_index_raw(i).unwrap().name_raw().to_vec()).unwrap())
            .collect();
        assert_eq!(names, ["d/", "d/small.txt", "link", "big"]);
        let mut s = String::new();
        a.by_name("d/small.txt")
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        assert_eq!(s, "small file\n".repeat(30));
        let mut big = Vec::new();
        a.by_name("big").unwrap().read_to_end(&mut big).unwrap();
        assert_eq!(big, b"streamed content ".repeat(20_000));
        let link = a.by_name("link").unwrap();
        assert!(link.is_symlink());
        assert_eq!(link.unix_mode().unwrap() & 0o170000, 0o120000);
    }

    #[test]
    fn zip_crate_reads_plain_and_zip64() {
        check(sample(ZIP64_LIMIT, ZipMethod::Deflate));
        check(sample(100, ZipMethod::Deflate));
        check(sample(ZIP64_LIMIT, ZipMethod::Zstd));
    }
}
