//! Why our own rather than the `zip` crate's reader (which the tests use as an independent
//! check): extraction workers must read entries in parallel with positioned reads of their own, and
//! every disagreement between the central directory, the local header and the data descriptor, or
//! any overlap of entries, must be refused before a byte is extracted.
//!
//! Reading zip archives defensively: the central directory is parsed once, every entry's local header
//! is checked against it (name, method, sizes), entries may not overlap each other or the central
//! directory, and entry data is decompressed with the output held to the declared size and CRC.
//!
//! Each extraction worker opens the archive file itself and reads with positioned reads, so workers
//! never share a file offset (ripunzip's lesson: one locked reader serialises everything).

use std::fs::File;
use std::io::{self, Read};

use super::zip::record;
use crate::error::{Error, Result};

/// One central directory record, validated against its local header.
#[derive(Debug, Clone)]
pub(crate) struct ZipEntry {
    pub name: Vec<u8>,
    pub flags: u16,
    pub method: u16,
    pub crc: u32,
    pub csize: u64,
    pub usize: u64,
    /// Where the compressed data starts.
    pub data_offset: u64,
    /// Unix mode from the external attributes, when the archive was made on Unix.
    pub unix_mode: Option<u32>,
    /// mtime: the extended-timestamp field if present, else the DOS time read as UTC.
    pub mtime: i64,
    /// When an Info-ZIP Unicode Path field (0x7075) of the central header gave `name`: the raw
    /// name it replaced, which the local header's raw name must be (byte for byte).
    raw_name: Option<Box<[u8]>>,
    /// The central header's name is not UTF-8 and its Unicode Path field (this name) does not
    /// belong to it (a CRC of another spelling): the name is taken when the local header's own
    /// Unicode Path field, checked against the local raw name, spells the same.
    stale_unicode: Option<Box<[u8]>>,
    /// The MS-DOS attribute byte (0x10: directory), set by DOS and Windows tools and Info-ZIP.
    dos_attrs: u8,
    /// The "version made by" host system (0 MS-DOS, 3 Unix, 10 NTFS, 19 OS X, ...).
    host: u8,
}

impl ZipEntry {
    pub fn is_dir(&self) -> bool {
        self.name.ends_with(b"/")
            || self.unix_mode.is_some_and(|m| m & 0o170000 == 0o040000)
            || (self.unix_mode.is_none() && self.dos_attrs & 0x10 != 0)
    }

    pub fn is_symlink(&self) -> bool {
        self.unix_mode.is_some_and(|m| m & 0o170000 == 0o120000)
    }

    /// Whether a backslash in the name separates directories. Only archives made on Unix-like
    /// systems (Unix, OS X) can hold it as an ordinary byte of a file name; for every other
    /// host it is a separator, as Info-ZIP unzip reads them.
    pub fn backslash_is_separator(&self) -> bool {
        !matches!(self.host, 3 | 19)
    }

    pub fn encrypted(&self) -> bool {
        self.flags & 1 != 0
    }

    /// The name for messages, escaped (no raw control characters).
    pub fn name_lossy(&self) -> String {
        crate::list::escape_name(&self.name)
    }
}

fn bad(msg: impl Into<String>) -> Error {
    Error::BadArchive(msg.into())
}

fn u16le(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32le(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64le(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Positioned read of exactly `buf.len()` bytes.
pub(crate) fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileExt;
        file.read_exact_at(buf, offset)
    }
    #[cfg(not(unix))]
    {
        use std::io::{Seek, SeekFrom};
        let mut f = file.try_clone()?;
        f.seek(SeekFrom::Start(offset))?;
        f.read_exact(buf)
    }
}

/// A `Read` over a byte range of a file, by positioned reads.
pub(crate) struct RangeReader<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl<'a> RangeReader<'a> {
    pub fn new(file: &'a File, start: u64, len: u64) -> Self {
        RangeReader {
            file,
            pos: start,
            end: start + len,
        }
    }
}

impl Read for RangeReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // In u64 first: on 32-bit targets an entry may be larger than usize.
        let n = (buf.len() as u64).min(self.end - self.pos) as usize;
        if n == 0 {
            return Ok(0);
        }
        read_at(self.file, &mut buf[..n], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Whether `file` (its first bytes `head`, up to 512) is a zip: by those bytes, or, when they are
/// no format we know or an all-zero block, by its end record (a self-extracting archive's
/// program, padding or zeros before the entries, as unzip and bsdtar accept): one must be found,
/// and the central directory it points at (offsets shifted by the prefix) must start with a
/// central header or hold no entries.
pub(crate) fn is_zip(file: &File, head: &[u8]) -> bool {
    match crate::detect(head) {
        Some(crate::Detected::Zip) => return true,
        None => {}
        Some(crate::Detected::Tar) if head.len() >= 512 && head[..512].iter().all(|&b| b == 0) => {}
        Some(_) => return false,
    }
    let Ok(dir) = locate_directory(file) else {
        return false;
    };
    if dir.entries == 0 {
        return dir.size == 0;
    }
    let mut sig = [0u8; 4];
    read_at(file, &mut sig, dir.start).is_ok() && u32::from_le_bytes(sig) == record::CENTRAL
}

/// Parses and validates the central directory of the zip in `file`.
pub(crate) fn read_directory(file: &File) -> Result<Vec<ZipEntry>> {
    let dir = locate_directory(file)?;
    let mut cd = vec![0u8; dir.size as usize];
    read_at(file, &mut cd, dir.start).map_err(|_| bad("central directory is truncated"))?;
    let mut out = Vec::with_capacity(dir.entries.min(1 << 20) as usize);
    let mut p = 0usize;
    while p + record::CENTRAL_LEN <= cd.len() && u32le(&cd, p) == record::CENTRAL {
        let (entry, rec_end) = central_record(&cd, p, dir.shift, out.len())?;
        out.push(entry);
        p = rec_end;
    }
    if out.len() as u64 != dir.entries {
        return Err(bad(format!(
            "the central directory lists {} entries, the end record says {}",
            out.len(),
            dir.entries
        )));
    }
    check_locals(file, &mut out, dir.start)?;
    Ok(out)
}

/// Where the central directory is, as the end records say.
struct Directory {
    /// Entries it should hold.
    entries: u64,
    /// Where it starts in the file, and its size.
    start: u64,
    size: u64,
    /// Bytes before the archive proper (self-extracting archives and other prefixes): offsets
    /// in the records are relative to this.
    shift: u64,
}

/// Finds the end of central directory record (and the ZIP64 one, through its locator).
fn locate_directory(file: &File) -> Result<Directory> {
    let len = file.metadata().map_err(Error::Input)?.len();
    if len < record::END_LEN as u64 {
        return Err(bad(
            "not a zip archive: too short for an end of central directory record",
        ));
    }
    let tail_len = len.min(record::END_LEN as u64 + 65_535);
    let mut tail = vec![0u8; tail_len as usize];
    read_at(file, &mut tail, len - tail_len).map_err(Error::Input)?;
    let eocd = (0..=tail.len() - record::END_LEN)
        .rev()
        .find(|&i| u32le(&tail, i) == record::END)
        .ok_or_else(|| {
            bad("no end of central directory record: not a zip archive, or truncated")
        })?;
    let eocd_at = len - tail_len + eocd as u64;
    let e = &tail[eocd..];
    let mut entries = u64::from(u16le(e, 10));
    let mut cd_size = u64::from(u32le(e, 12));
    let mut cd_offset = u64::from(u32le(e, 16));
    // Where the central directory ends: the end record, or the ZIP64 end record before it.
    let mut cd_end_at = eocd_at;
    // ZIP64: a locator right before the end record points at the ZIP64 end record.
    let loc_len = record::ZIP64_LOCATOR_LEN;
    if eocd_at >= loc_len as u64 {
        let mut loc = [0u8; record::ZIP64_LOCATOR_LEN];
        read_at(file, &mut loc, eocd_at - loc_len as u64).map_err(Error::Input)?;
        if u32le(&loc, 0) == record::ZIP64_LOCATOR {
            let at = u64le(&loc, 8);
            let mut rec = [0u8; 56];
            if at.checked_add(56).is_none_or(|end| end > len) {
                return Err(bad("ZIP64 end record points past the end of the file"));
            }
            read_at(file, &mut rec, at).map_err(Error::Input)?;
            if u32le(&rec, 0) != record::ZIP64_END {
                return Err(bad("ZIP64 locator points at no ZIP64 end record"));
            }
            entries = u64le(&rec, 32);
            cd_size = u64le(&rec, 40);
            cd_offset = u64le(&rec, 48);
            cd_end_at = at;
        }
    }
    // Self-extracting archives and other prefixes: offsets are then relative to a later start.
    let cd_end = cd_offset
        .checked_add(cd_size)
        .ok_or_else(|| bad("central directory size overflows"))?;
    let shift = if cd_end <= cd_end_at {
        cd_end_at - cd_end
    } else {
        return Err(bad("central directory overlaps its end record"));
    };
    let cd_start = cd_offset + shift;
    if cd_size >= 1 << 32 {
        return Err(bad("central directory larger than 4 GiB"));
    }
    Ok(Directory {
        entries,
        start: cd_start,
        size: cd_size,
        shift,
    })
}

/// Parses the central directory record at `p` (the `index`th): the entry, and where the next
/// record starts.
fn central_record(cd: &[u8], p: usize, shift: u64, index: usize) -> Result<(ZipEntry, usize)> {
    let made_by = u16le(cd, p + 4);
    let flags = u16le(cd, p + 8);
    let method = u16le(cd, p + 10);
    let dos_time = u16le(cd, p + 12);
    let dos_date = u16le(cd, p + 14);
    let crc = u32le(cd, p + 16);
    let mut csize = u64::from(u32le(cd, p + 20));
    let mut usize = u64::from(u32le(cd, p + 24));
    let n = usize::from(u16le(cd, p + 28));
    let m = usize::from(u16le(cd, p + 30));
    let k = usize::from(u16le(cd, p + 32));
    let external = u32le(cd, p + 38);
    let mut local = u64::from(u32le(cd, p + 42));
    let rec_end = p + record::CENTRAL_LEN + n + m + k;
    if rec_end > cd.len() {
        return Err(bad(format!("central directory entry {index} is truncated")));
    }
    let raw = cd[p + record::CENTRAL_LEN..p + record::CENTRAL_LEN + n].to_vec();
    let extra = &cd[p + record::CENTRAL_LEN + n..p + record::CENTRAL_LEN + n + m];
    let mut mtime = None;
    // An Info-ZIP Unicode Path field names the entry when its CRC is of this raw name; one made
    // for another spelling of a legacy (not UTF-8) name is kept for the local header to confirm.
    let (name, raw_name, stale_unicode) = match unicode_path(extra) {
        Some((crc, u)) if crc == crc32fast::hash(&raw) => {
            (u.to_vec(), Some(raw.into_boxed_slice()), None)
        }
        Some((_, u)) if std::str::from_utf8(&raw).is_err() => (raw, None, Some(u.into())),
        _ => (raw, None, None),
    };
    for (id, data) in extra_fields(extra) {
        match id {
            0x0001 => {
                let mut q = 0;
                let mut take = |v: &mut u64| {
                    if *v == u64::from(u32::MAX) && q + 8 <= data.len() {
                        *v = u64le(data, q);
                        q += 8;
                    }
                };
                take(&mut usize);
                take(&mut csize);
                take(&mut local);
            }
            0x5455 if !data.is_empty() && data[0] & 1 != 0 && data.len() >= 5 => {
                // A signed 32-bit Unix time (APPNOTE 4.5.3): before 1970 is negative.
                mtime = Some(i64::from(u32le(data, 1) as i32));
            }
            _ => {}
        }
    }
    let unix_mode = (made_by >> 8 == 3)
        .then_some(external >> 16)
        .filter(|&m| m != 0);
    let Some(data_offset) = local.checked_add(shift) else {
        return Err(bad(format!(
            "{}: local header offset {local} is out of range",
            crate::list::escape_name(&name)
        )));
    };
    let entry = ZipEntry {
        name,
        flags,
        method,
        crc,
        csize,
        usize,
        data_offset, // fixed up below, after the local header is read
        unix_mode,
        mtime: mtime.unwrap_or_else(|| dos_to_unix(dos_date, dos_time)),
        raw_name,
        stale_unicode,
        dos_attrs: external as u8,
        host: (made_by >> 8) as u8,
    };
    Ok((entry, rec_end))
}

/// The first Info-ZIP Unicode Path field (0x7075, version 1) of an extra field: the CRC-32 it
/// gives of the raw name it belongs to, and the UTF-8 name.
fn unicode_path(extra: &[u8]) -> Option<(u32, &[u8])> {
    let (_, d) = extra_fields(extra).find(|(id, _)| *id == 0x7075)?;
    (d.len() > 5 && d[0] == 1).then(|| (u32le(d, 1), &d[5..]))
}

/// Every block of an extra field fits inside it (a few trailing padding bytes are tolerated).
fn extra_well_formed(mut extra: &[u8]) -> bool {
    while extra.len() >= 4 {
        let len = usize::from(u16le(extra, 2));
        if 4 + len > extra.len() {
            return false;
        }
        extra = &extra[4 + len..];
    }
    true
}

fn extra_fields(mut extra: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if extra.len() < 4 {
            return None;
        }
        let id = u16le(extra, 0);
        let len = usize::from(u16le(extra, 2));
        if 4 + len > extra.len() {
            return None;
        }
        let data = &extra[4..4 + len];
        extra = &extra[4 + len..];
        Some((id, data))
    })
}

/// Reads every local header: it must exist, name the same file with the same method, and agree on
/// sizes and CRC unless a data descriptor carries them. Entries must not overlap one another or the
/// central directory (the classic zip bomb shares data between entries).
fn check_locals(file: &File, entries: &mut [ZipEntry], cd_start: u64) -> Result<()> {
    let mut spans = Vec::with_capacity(entries.len());
    for (i, e) in entries.iter_mut().enumerate() {
        let at = e.data_offset;
        let end = check_local(file, e, cd_start)?;
        spans.push((at, end, i));
    }
    check_overlaps(entries, spans)
}

/// Checks one entry's local header against the central directory, points `data_offset` at its
/// data, and returns where the entry (data descriptor included) ends.
fn check_local(file: &File, e: &mut ZipEntry, cd_start: u64) -> Result<u64> {
    let (h, extra) = read_local(file, e)?;
    let at = e.data_offset;
    let (n, m) = (usize::from(u16le(&h, 26)), extra.len());
    let lflags = u16le(&h, 6);
    let local_zip64 = check_local_sizes(e, &h, &extra)?;
    e.data_offset = at + record::LOCAL_LEN as u64 + n as u64 + m as u64;
    let overflows = |e: &ZipEntry| Error::Entry {
        entry: e.name_lossy(),
        reason: "its compressed size runs past the largest file size (malformed archive)".into(),
    };
    let mut end = e
        .data_offset
        .checked_add(e.csize)
        .ok_or_else(|| overflows(e))?;
    if lflags & 8 != 0 {
        end = end
            .checked_add(check_descriptor(file, e, end, local_zip64, cd_start)?)
            .ok_or_else(|| overflows(e))?;
    }
    if end > cd_start {
        return Err(Error::Entry {
            entry: e.name_lossy(),
            reason: "its data runs into the central directory (truncated or malformed archive)"
                .into(),
        });
    }
    Ok(end)
}

/// Reads an entry's local header and its extra field; the header must be there and name the
/// same file with the same method.
fn read_local(file: &File, e: &mut ZipEntry) -> Result<([u8; record::LOCAL_LEN], Vec<u8>)> {
    let at = e.data_offset;
    let mut h = [0u8; record::LOCAL_LEN];
    read_at(file, &mut h, at).map_err(|_| {
        bad(format!(
            "{}: local header missing (truncated archive)",
            e.name_lossy()
        ))
    })?;
    if u32le(&h, 0) != record::LOCAL {
        return Err(bad(format!(
            "{}: no local header where the central directory points",
            e.name_lossy()
        )));
    }
    let n = usize::from(u16le(&h, 26));
    let m = usize::from(u16le(&h, 28));
    let mut name = vec![0u8; n];
    read_at(file, &mut name, at + record::LOCAL_LEN as u64).map_err(Error::Input)?;
    let mut extra = vec![0u8; m];
    read_at(file, &mut extra, at + record::LOCAL_LEN as u64 + n as u64).map_err(Error::Input)?;
    // The central directory names the entry (as unzip, 7-Zip and Python's zipfile read it). The
    // local header must agree: the same raw name, or the same name through its own Unicode Path
    // field (producers write the raw names in different code pages, the Unicode one in both).
    // Never the local header's name instead: it would let the local header rename what a reader
    // of the central directory was shown.
    // One exception: a legacy (not UTF-8) central name whose Unicode Path field was made for
    // another spelling of it. When the local header's own field gives the same name and checks
    // out against the local raw name (libarchive's corpus has such archives), that name is the
    // entry's, as libarchive and bsdtar read it; otherwise the central raw name stays.
    if let Some(uname) = e.stale_unicode.take() {
        if unicode_path(&extra)
            .is_some_and(|(crc, n)| crc == crc32fast::hash(&name) && n == &uname[..])
        {
            let raw = std::mem::replace(&mut e.name, uname.into_vec());
            e.raw_name = Some(raw.into_boxed_slice());
        }
    }
    let central_raw: &[u8] = e.raw_name.as_deref().unwrap_or(&e.name);
    // A local Unicode Path field counts when it spells the central name and its CRC is of the
    // local raw name or of the central one (libarchive's corpus has both).
    let local_unicode = unicode_path(&extra).is_some_and(|(crc, n)| {
        n == &e.name[..] && [crc32fast::hash(&name), crc32fast::hash(central_raw)].contains(&crc)
    });
    let agrees = name == central_raw || local_unicode;
    if !agrees {
        return Err(Error::Entry {
            entry: e.name_lossy(),
            reason: format!(
                "the local header names it {:?}: local and central headers disagree; refusing the archive",
                String::from_utf8_lossy(&name)
            ),
        });
    }
    if u16le(&h, 8) != e.method {
        return Err(Error::Entry {
            entry: e.name_lossy(),
            reason: "local and central headers disagree on the compression method".into(),
        });
    }
    if !extra_well_formed(&extra) {
        return Err(Error::Entry {
            entry: e.name_lossy(),
            reason: "malformed extra field in the local header (a block runs past the end); refusing the archive".into(),
        });
    }
    Ok((h, extra))
}

/// The local header's flags, CRC and sizes (through its ZIP64 field where the 32-bit ones are
/// saturated) must agree with the central directory's. Returns whether it has a ZIP64 field.
fn check_local_sizes(e: &ZipEntry, h: &[u8; record::LOCAL_LEN], extra: &[u8]) -> Result<bool> {
    let disagree = |what: &str| Error::Entry {
        entry: e.name_lossy(),
        reason: format!("{what}; refusing the archive (damaged or forged)"),
    };
    let lflags = u16le(h, 6);
    if (lflags ^ e.flags) & 8 != 0 {
        return Err(disagree(
            "local and central headers disagree on whether a data descriptor follows",
        ));
    }
    // The local header's sizes, through its ZIP64 field where the 32-bit ones are saturated.
    let (lcrc, mut lc, mut lu) = (
        u32le(h, 14),
        u64::from(u32le(h, 18)),
        u64::from(u32le(h, 22)),
    );
    let local_zip64 = extra_fields(extra).find(|(id, _)| *id == 0x0001);
    if let Some((_, data)) = local_zip64 {
        let mut q = 0;
        for v in [&mut lu, &mut lc] {
            if *v == u64::from(u32::MAX) && q + 8 <= data.len() {
                *v = u64le(data, q);
                q += 8;
            }
        }
    }
    // With a data descriptor a local field may be zero (not known yet when it was written:
    // streaming writers zero the CRC and compressed size, Info-ZIP keeps the uncompressed
    // size); whatever is there must agree with the central directory.
    let dd = lflags & 8 != 0;
    let agrees = |local: u64, central: u64| local == central || (dd && local == 0);
    if !(agrees(lc, e.csize) && agrees(lu, e.usize) && agrees(u64::from(lcrc), u64::from(e.crc))) {
        return Err(disagree(&format!(
            "local header (CRC {lcrc:08x}, sizes {lc}/{lu}) and central directory (CRC {:08x}, sizes {}/{}) disagree",
            e.crc, e.csize, e.usize
        )));
    }
    Ok(local_zip64.is_some())
}

/// No two entries' data may overlap (`spans`: start, end and index of each).
fn check_overlaps(entries: &[ZipEntry], mut spans: Vec<(u64, u64, usize)>) -> Result<()> {
    spans.sort_unstable();
    for w in spans.windows(2) {
        if w[1].0 < w[0].1 {
            return Err(Error::Entry {
                entry: entries[w[1].2].name_lossy(),
                reason: format!(
                    "overlaps the data of {}; overlapping entries are refused (zip bomb)",
                    entries[w[0].2].name_lossy()
                ),
            });
        }
    }
    Ok(())
}

/// Reads the data descriptor that follows an entry's data at `at` and checks it against the
/// central directory; returns its length. The signature is optional and the sizes are 4 or 8
/// bytes (ZIP64): whichever layout is there must carry the same CRC and sizes.
fn check_descriptor(
    file: &File,
    e: &ZipEntry,
    at: u64,
    zip64_hint: bool,
    limit: u64,
) -> Result<u64> {
    let mut d = [0u8; 24];
    let avail = limit.saturating_sub(at).min(24) as usize;
    read_at(file, &mut d[..avail], at).map_err(Error::Input)?;
    let d = &d[..avail];
    let mut layouts: Vec<(usize, bool)> = Vec::with_capacity(4);
    for sig in [true, false] {
        for wide in [zip64_hint, !zip64_hint] {
            layouts.push((usize::from(sig) * 4, wide));
        }
    }
    for (skip, wide) in layouts {
        if skip == 4 && (d.len() < 4 || u32le(d, 0) != record::DESCRIPTOR) {
            continue;
        }
        let len = skip + if wide { 20 } else { 12 };
        if d.len() < len {
            continue;
        }
        let crc = u32le(d, skip);
        let (c, u) = if wide {
            (u64le(d, skip + 4), u64le(d, skip + 12))
        } else {
            (u64::from(u32le(d, skip + 4)), u64::from(u32le(d, skip + 8)))
        };
        if crc == e.crc && c == e.csize && u == e.usize {
            return Ok(len as u64);
        }
    }
    Err(Error::Entry {
        entry: e.name_lossy(),
        reason: format!(
            "its data descriptor is missing or disagrees with the central directory (CRC {:08x}, sizes {}/{}); refusing the archive (damaged or forged)",
            e.crc, e.csize, e.usize
        ),
    })
}

/// The largest zstd window (log2) that writers decode at the same time: 8 MiB, what zstd's levels
/// up to 19 use. A frame may ask for up to 128 MiB (libzstd's limit, `--long` and `--ultra`
/// levels), and every writer decodes its own entries: decoded side by side, such entries would
/// take 128 MiB per writer, from a few kilobytes of archive. So an entry whose first frame asks
/// for more (or whose first frame cannot be read) is decoded while holding [`BIG_WINDOW`], one
/// at a time across the process; the others are held to this window, and a later frame that
/// asks for more fails with an error naming the entry instead of growing.
const SHARED_WINDOW_LOG: u32 = 23;
static BIG_WINDOW: std::sync::Mutex<()> = std::sync::Mutex::new(());

type GuardedDecoder<'a> = (
    Box<dyn Read + 'a>,
    Option<std::sync::MutexGuard<'static, ()>>,
);

fn zstd_entry<'a>(
    file: &'a File,
    e: &ZipEntry,
    raw: RangeReader<'a>,
) -> Result<GuardedDecoder<'a>> {
    // The longest frame header: magic, descriptor, window, 4-byte dictionary id, 8-byte size.
    let mut head = [0u8; 18];
    let n = head.len().min(e.csize as usize);
    let small = read_at(file, &mut head[..n], e.data_offset).is_ok()
        && zstd_window(&head[..n]).is_some_and(|w| w <= 1 << SHARED_WINDOW_LOG);
    let guard = (!small).then(|| BIG_WINDOW.lock().unwrap_or_else(|p| p.into_inner()));
    let mut dec = zstd::stream::read::Decoder::new(raw).map_err(Error::Input)?;
    if small {
        dec.window_log_max(SHARED_WINDOW_LOG)
            .map_err(Error::Input)?;
    }
    Ok((Box::new(dec), guard))
}

/// The largest LZMA dictionary decoded at all (after the cut to the entry's size): 7-Zip's
/// largest zip preset (-mx9) asks for 256 MiB, cut to the file's size; its default is 32 MiB.
const MAX_LZMA_DICT: u64 = 256 << 20;

/// An LZMA entry (APPNOTE 5.8.8: a 4-byte header of version and properties size, the 5-byte
/// properties, then the raw LZMA stream, ended by its size or an end marker) read through
/// liblzma's `.lzma` decoder, whose 13-byte header (properties, then the uncompressed size) is
/// made from the zip's. The dictionary never needs to be larger than the data, so it is cut to
/// the declared size first; one still over [`SHARED_WINDOW_LOG`] is decoded holding
/// [`BIG_WINDOW`], one over [`MAX_LZMA_DICT`] refused.
fn lzma_entry<'a>(e: &ZipEntry, mut raw: RangeReader<'a>) -> Result<GuardedDecoder<'a>> {
    let refuse = |reason: String| Error::Entry {
        entry: e.name_lossy(),
        reason,
    };
    let mut head = [0u8; 9];
    raw.read_exact(&mut head)
        .map_err(|_| refuse("its LZMA header is cut short; the archive is damaged".into()))?;
    if u16::from_le_bytes([head[2], head[3]]) != 5 {
        return Err(refuse(
            "its LZMA properties are not 5 bytes long; the archive is damaged".into(),
        ));
    }
    let declared = u64::from(u32::from_le_bytes([head[5], head[6], head[7], head[8]]));
    let dict = declared.min(e.usize.max(4096));
    if dict > MAX_LZMA_DICT {
        return Err(refuse(format!(
            "asks for a {} MiB LZMA dictionary, more than the {} MiB this tool decodes",
            dict >> 20,
            MAX_LZMA_DICT >> 20
        )));
    }
    let mut alone = [0u8; 13];
    alone[0] = head[4];
    alone[1..5].copy_from_slice(&(dict as u32).to_le_bytes());
    alone[5..].copy_from_slice(&e.usize.to_le_bytes());
    let guard = (dict > 1 << SHARED_WINDOW_LOG)
        .then(|| BIG_WINDOW.lock().unwrap_or_else(|p| p.into_inner()));
    // The limit covers the dictionary and liblzma's own state (about 30 KiB).
    let stream = liblzma::stream::Stream::new_lzma_decoder(dict + (1 << 20))
        .map_err(|err| refuse(format!("cannot start the LZMA decoder: {err}")))?;
    let input = io::Read::chain(io::Cursor::new(alone), raw);
    Ok((
        Box::new(liblzma::read::XzDecoder::new_stream(input, stream)),
        guard,
    ))
}

/// The window a zstd frame header declares (RFC 8878 3.1.1.1): from the window descriptor, or
/// the content size for a single-segment frame. `None`: not a zstd frame header (a skippable
/// frame first, or too short).
fn zstd_window(h: &[u8]) -> Option<u64> {
    if h.len() < 6 || u32le(h, 0) != 0xFD2F_B528 {
        return None;
    }
    let fhd = h[4];
    if fhd & 0x20 == 0 {
        let wd = h[5];
        let log = 10 + u64::from(wd >> 3);
        let base = 1u64 << log;
        return Some(base + (base / 8) * u64::from(wd & 7));
    }
    // Single segment: no window descriptor; the window is the content size, whose field
    // follows the dictionary id.
    let did = [0usize, 1, 2, 4][usize::from(fhd & 3)];
    let fcs = [1usize, 2, 4, 8][usize::from(fhd >> 6)];
    let at = 5 + did;
    let field = h.get(at..at + fcs)?;
    let mut v = 0u64;
    for (i, b) in field.iter().enumerate() {
        v |= u64::from(*b) << (8 * i);
    }
    Some(if fcs == 2 { v + 256 } else { v })
}

/// A reader of one entry's uncompressed data, held to the declared size, with the CRC checked at
/// the end. Errors name the entry.
pub(crate) fn open_entry<'a>(file: &'a File, e: &ZipEntry) -> Result<EntryReader<'a>> {
    if e.encrypted() {
        return Err(Error::Entry {
            entry: e.name_lossy(),
            reason:
                "is encrypted; encrypted entries are not supported (no passphrase is ever asked)"
                    .into(),
        });
    }
    let raw = RangeReader::new(file, e.data_offset, e.csize);
    let mut big_window = None;
    let inner: Box<dyn Read + 'a> = match e.method {
        0 => Box::new(raw),
        8 if e.usize <= INFLATE_WHOLE && e.csize <= INFLATE_WHOLE => {
            Box::new(io::Cursor::new(inflate_whole(file, e)?))
        }
        // Larger entries: our own are cut into independent pieces (as our tar.gz), inflated on
        // a small pool; any other deflate stream is inflated sequentially (gzip_read::open_raw).
        8 => {
            let threads = if e.usize >= PARALLEL_ENTRY {
                ENTRY_INFLATERS
            } else {
                0
            };
            crate::format::gzip_read::open_raw(raw, threads).map_err(Error::Thread)?
        }
        93 => {
            let (dec, guard) = zstd_entry(file, e, raw)?;
            big_window = guard;
            dec
        }
        // What other producers write: deflate64 (Windows' compressed folders for large files,
        // 7-Zip), bzip2 (Info-ZIP's -Z bzip2, 7-Zip), LZMA (7-Zip). Deflate64's window is 64 KiB,
        // bzip2's blocks at most 900 kB: bounded. LZMA's dictionary is the header's choice.
        9 => Box::new(deflate64::Deflate64Decoder::new(raw)),
        12 => Box::new(bzip2::read::BzDecoder::new(raw)),
        14 => {
            let (dec, guard) = lzma_entry(e, raw)?;
            big_window = guard;
            dec
        }
        m => {
            return Err(Error::Entry {
                entry: e.name_lossy(),
                reason: format!(
                    "uses compression method {m} ({}), which is not supported",
                    method_name(m)
                ),
            })
        }
    };
    Ok(EntryReader {
        inner,
        _big_window: big_window,
        left: e.usize,
        crc: crc32fast::Hasher::new(),
        expected_crc: e.crc,
        done: false,
    })
}

/// Whether [`read_whole`] reads this entry (small, stored or deflated): then its data is one
/// buffer, written and hashed in one call each instead of through a copying stream.
pub(crate) fn is_whole(e: &ZipEntry) -> bool {
    !e.encrypted()
        && e.csize <= INFLATE_WHOLE
        && match e.method {
            0 => true,
            8 => e.usize <= INFLATE_WHOLE,
            _ => false,
        }
}

/// The data of an entry for which [`is_whole`] holds, checked as a read to its end through
/// [`open_entry`] checks it (declared size, CRC-32), with the same messages.
pub(crate) fn read_whole(file: &File, e: &ZipEntry) -> Result<Vec<u8>> {
    let data = if e.method == 8 {
        inflate_whole(file, e)?
    } else {
        let mut data = vec![0u8; e.csize as usize];
        read_at(file, &mut data, e.data_offset).map_err(|err| Error::Entry {
            entry: e.name_lossy(),
            reason: format!("cannot read its data: {err}"),
        })?;
        data
    };
    let reason = match (data.len() as u64).cmp(&e.usize) {
        std::cmp::Ordering::Less => "data ends before its declared size".to_string(),
        std::cmp::Ordering::Greater => {
            "decompresses to more than its declared size (refused)".to_string()
        }
        std::cmp::Ordering::Equal => match crc32fast::hash(&data) {
            crc if crc == e.crc => return Ok(data),
            crc => format!("CRC-32 mismatch (stored {:08x}, computed {crc:08x})", e.crc),
        },
    };
    Err(Error::Entry {
        entry: e.name_lossy(),
        reason,
    })
}

/// Threads that inflate one large deflated entry. Each writer may hold one such pool; two
/// threads let one big entry at the end of a run use a second core without multiplying threads
/// (and pieces in memory: up to 3 × 8 MiB per pool) by the core count.
const ENTRY_INFLATERS: usize = 2;

/// Deflated entries from this size up get the pool: below it, starting two threads and their
/// buffers costs more than the few pieces gain (mixed: 32 entries of 1-2 MiB, 0.105 s with a
/// pool each, 0.088 s without; ripunzip 0.106 s).
const PARALLEL_ENTRY: u64 = 8 << 20;

/// Entries up to this size (compressed and declared) are inflated whole by libdeflate: about
/// twice the speed of streaming zlib, and the common case (small files).
const INFLATE_WHOLE: u64 = 1 << 20;

/// A small deflated entry, inflated in one call. The output buffer is exactly the declared size:
/// more data is refused as the streaming path refuses it, less is left to [`EntryReader`], which
/// reports the shortfall; the CRC is checked there as for every entry. As with the streaming
/// decoder (and other zip readers), bytes after the end of the deflate stream are not read.
fn inflate_whole(file: &File, e: &ZipEntry) -> Result<Vec<u8>> {
    use std::cell::RefCell;
    thread_local! {
        static INFLATER: RefCell<Option<libdeflater::Decompressor>> = const { RefCell::new(None) };
    }
    let mut packed = vec![0u8; e.csize as usize];
    read_at(file, &mut packed, e.data_offset).map_err(|err| Error::Entry {
        entry: e.name_lossy(),
        reason: format!("cannot read its data: {err}"),
    })?;
    let mut out = vec![0u8; e.usize as usize];
    let got = INFLATER.with(|d| {
        let mut d = d.borrow_mut();
        d.get_or_insert_with(libdeflater::Decompressor::new)
            .deflate_decompress(&packed, &mut out)
    });
    let reason = match got {
        Ok(n) => {
            out.truncate(n);
            return Ok(out);
        }
        Err(libdeflater::DecompressionError::InsufficientSpace) => {
            "decompresses to more than its declared size (refused)".to_string()
        }
        Err(err) => format!("damaged compressed data (deflate: {err:?})"),
    };
    Err(Error::Entry {
        entry: e.name_lossy(),
        reason,
    })
}

fn method_name(m: u16) -> &'static str {
    match m {
        1 => "shrink",
        6 => "implode",
        9 => "deflate64",
        12 => "bzip2",
        14 => "lzma",
        95 => "xz",
        98 => "ppmd",
        99 => "AES encryption",
        _ => "unknown",
    }
}

pub(crate) struct EntryReader<'a> {
    inner: Box<dyn Read + 'a>,
    /// Held while a zstd entry with a large window is decoded (see [`zstd_entry`]).
    _big_window: Option<std::sync::MutexGuard<'static, ()>>,
    left: u64,
    crc: crc32fast::Hasher,
    expected_crc: u32,
    done: bool,
}

impl Read for EntryReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done {
            return Ok(0);
        }
        if self.left == 0 {
            // The declared size is reached: the stream must end here and the CRC must match.
            let mut probe = [0u8; 1];
            if self.inner.read(&mut probe)? != 0 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "decompresses to more than its declared size (refused)",
                ));
            }
            let crc = std::mem::take(&mut self.crc).finalize();
            if crc != self.expected_crc {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "CRC-32 mismatch (stored {:08x}, computed {crc:08x})",
                        self.expected_crc
                    ),
                ));
            }
            self.done = true;
            return Ok(0);
        }
        let want = buf.len().min(self.left.min(usize::MAX as u64) as usize);
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "data ends before its declared size",
            ));
        }
        self.crc.update(&buf[..n]);
        self.left -= n as u64;
        Ok(n)
    }
}

/// A DOS date and time, read as UTC.
pub(crate) fn dos_to_unix(date: u16, time: u16) -> i64 {
    let y = i64::from(date >> 9) + 1980;
    let m = i64::from((date >> 5) & 15).clamp(1, 12);
    let d = i64::from(date & 31).max(1);
    let (hh, mm, ss) = (
        i64::from(time >> 11),
        i64::from((time >> 5) & 63),
        i64::from(time & 31) * 2,
    );
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86_400 + hh * 3600 + mm * 60 + ss
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dos_epoch() {
        assert_eq!(dos_to_unix((1 << 5) | 1, 0), 315_532_800);
        let (t, d) = crate::format::zip::dos_time(1_700_000_000);
        assert_eq!(dos_to_unix(d, t), 1_700_000_000);
    }

    /// The window each frame header declares, checked against frames libzstd wrote.
    #[test]
    fn zstd_windows_from_frame_headers() {
        let data = vec![7u8; 300_000];
        // Content size known, small: a single-segment frame, window = content size.
        let one = zstd::bulk::compress(&data, 3).unwrap();
        assert_eq!(zstd_window(&one[..14]), Some(300_000));
        // Streamed (no content size) with a 2^27 window: the window descriptor says so.
        let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        enc.set_parameter(zstd::zstd_safe::CParameter::WindowLog(27))
            .unwrap();
        enc.include_contentsize(false).unwrap();
        std::io::Write::write_all(&mut enc, &data).unwrap();
        let big = enc.finish().unwrap();
        assert_eq!(zstd_window(&big[..14]), Some(1 << 27));
        assert_eq!(zstd_window(b"\x50\x2a\x4d\x18skippable"), None);
        assert_eq!(zstd_window(&big[..5]), None);
    }
}
