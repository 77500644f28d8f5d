//! Our tar reader: streaming, tolerant of what real producers write, strict about what would
//! corrupt data, and bounded against hostile headers.
//!
//! Why our own (we still write with the `tar` crate): what we must guarantee is a reading policy,
//! not a parser. Entry boundaries must fall exactly where GNU tar's extraction puts them, on
//! malformed and hostile headers too (or one tool sees an entry another hides); every extension
//! header (pax local and global records, GNU long names, sparse maps) needs a cap checked before
//! anything is allocated and a linear-time parser; a stream cut before its end-of-archive marker
//! must be an error, not a short archive. Those rules cut across the whole parser, so they are
//! written here, once, and tested against GNU tar (`tests/it/tarparity.rs`).
//!
//! Reads v7, ustar, GNU and pax archives: GNU long names and links (`L`/`K`, the last of redundant
//! ones wins), pax local (`x`, and Solaris/star `X`) and global (`g`) records (path, linkpath, size,
//! mtime with fractions, uid, gid, uname, gname), base-256 and blank numeric fields, headers
//! checksummed signed or unsigned, volume labels, and GNU sparse files in every format GNU tar writes
//! (old `S` headers, pax 0.0, 0.1 and 1.0), expanded with their holes as zeros.
//!
//! Where an entry's data starts and ends is decided as GNU tar decides it when it extracts (see
//! docs/FORMAT.md, "Reading tar"): hard links, symlinks, devices, directories and FIFOs never carry
//! data whatever their size field says; a regular-file type whose name ends in `/` is a directory
//! (no data); every other type, unknown letters included, carries `size` bytes.
//!
//! Every extension header has a size cap ([`MAX_PAX_HEADER`], [`MAX_NAME`],
//! [`MAX_SPARSE_SEGMENTS`]) checked before anything is allocated, only the records we use are kept
//! (later values replace earlier ones, for global records too), and every parser is linear in its
//! input, so no header can exhaust memory or time.

use std::io::{self, Read};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Largest pax extended header (`x`, `X` or `g`) read: 16 MiB. Real ones hold a path, a link
/// target, times, ids, names and maybe ACLs and xattrs: a few KiB, rarely megabytes (libarchive's
/// test suite has an 8 MB attribute, which GNU tar reads). The header is held in memory only while
/// it is parsed; only the records we use are kept.
pub(crate) const MAX_PAX_HEADER: u64 = 16 << 20;
/// Largest name or link target (GNU `L`/`K` data, pax `path`/`linkpath` values): 64 KiB, sixteen
/// times Linux's PATH_MAX.
pub(crate) const MAX_NAME: u64 = 64 << 10;
/// Most segments in one sparse map, in any encoding: 2^20 (16 MiB in memory).
pub(crate) const MAX_SPARSE_SEGMENTS: usize = 1 << 20;
/// Largest size field accepted (GNU tar's limit: `off_t`).
const MAX_SIZE: u64 = i64::MAX as u64;

/// One entry's header, with every extension applied.
#[derive(Debug, Clone)]
pub(crate) struct TarEntry {
    pub path: Vec<u8>,
    pub link: Vec<u8>,
    /// The type, normalised: `5` also for GNU dumpdirs (`D`) and for regular-file types whose name
    /// ends in `/`; `0` for sparse files. Unknown letters are kept (they read as regular files).
    pub typeflag: u8,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: SystemTime,
    pub mtime_secs: i64,
    pub uname: Option<String>,
    pub gname: Option<String>,
    /// Size of the data as extracted (holes included for sparse files); 0 for types without data.
    pub size: u64,
    /// For sparse files: (offset, length) of each data segment, in order.
    sparse: Option<Vec<(u64, u64)>>,
}

impl TarEntry {
    /// Whether the entry's data is a file's content: regular, contiguous, sparse, and unknown types,
    /// which GNU tar, bsdtar and Python all extract as regular files.
    pub fn is_file(&self) -> bool {
        !is_known_special(self.typeflag)
    }

    /// Whether the entry is a sparse file (its data has holes the map declares).
    pub fn is_sparse(&self) -> bool {
        self.sparse.is_some()
    }
}

/// Types that are not regular files (GNU tar's own types included).
fn is_known_special(t: u8) -> bool {
    matches!(t, b'1'..=b'6' | b'D' | b'M' | b'V')
}

/// Where each field of a 512-byte tar header block lives (POSIX ustar, with the GNU and old-GNU
/// fields that share the block): the reader and format detection name fields through these, never
/// through bare offsets.
pub(crate) mod field {
    use std::ops::Range;

    pub const NAME: Range<usize> = 0..100;
    pub const MODE: Range<usize> = 100..108;
    pub const UID: Range<usize> = 108..116;
    pub const GID: Range<usize> = 116..124;
    pub const SIZE: Range<usize> = 124..136;
    pub const MTIME: Range<usize> = 136..148;
    pub const CHECKSUM: Range<usize> = 148..156;
    pub const TYPEFLAG: usize = 156;
    pub const LINKNAME: Range<usize> = 157..257;
    /// `ustar\0` (POSIX; version `00` follows) or `ustar ` (GNU; version ` \0`).
    pub const MAGIC: Range<usize> = 257..263;
    pub const UNAME: Range<usize> = 265..297;
    pub const GNAME: Range<usize> = 297..329;
    /// POSIX ustar: the path's leading part.
    pub const PREFIX: Range<usize> = 345..500;
    /// Old GNU sparse header: four (offset, size) slots of 12 bytes each.
    pub const GNU_SPARSE: Range<usize> = 386..482;
    /// Old GNU sparse header: set when extension blocks with more slots follow.
    pub const GNU_IS_EXTENDED: usize = 482;
    /// Old GNU sparse header: the file's full (expanded) size.
    pub const GNU_REAL_SIZE: Range<usize> = 483..495;
}

/// The entry a header block describes, before its size and data: the name and link target
/// (precedence as GNU tar applies it: header, then GNU long name/link, then global pax records,
/// then local ones), owner, mode, time, and the type as GNU tar extracts it. Size 0, not sparse.
fn header_entry(
    block: &[u8; 512],
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    pax: PaxValues,
) -> TarEntry {
    let raw_type = block[field::TYPEFLAG];
    let ustar = &block[field::MAGIC] == b"ustar\0";
    let gnu = &block[field::MAGIC] == b"ustar ";
    let mut path = long_name.unwrap_or_else(|| {
        let name = trim_nul(&block[field::NAME]);
        let prefix = if ustar {
            trim_nul(&block[field::PREFIX])
        } else {
            Vec::new()
        };
        if prefix.is_empty() {
            name
        } else {
            [prefix, b"/".to_vec(), name].concat()
        }
    });
    let mut link = long_link.unwrap_or_else(|| trim_nul(&block[field::LINKNAME]));
    if let Some(p) = pax.path {
        path = p;
    }
    if let Some(l) = pax.linkpath {
        link = l;
    }
    let (mtime_secs, mtime) = pax.mtime.unwrap_or_else(|| {
        let s = signed_number(&block[field::MTIME]).unwrap_or(0);
        (s, unix_time(s, 0))
    });
    let uid = pax
        .uid
        .unwrap_or_else(|| number(&block[field::UID]).unwrap_or(0));
    let gid = pax
        .gid
        .unwrap_or_else(|| number(&block[field::GID]).unwrap_or(0));
    let mode = number(&block[field::MODE]).unwrap_or(0o644) as u32;
    let text = |b: &[u8]| {
        Some(String::from_utf8_lossy(&trim_nul(b)).into_owned()).filter(|s| !s.is_empty())
    };
    let uname = match pax.uname {
        Some(u) => Some(u).filter(|s| !s.is_empty()),
        None if ustar || gnu => text(&block[field::UNAME]),
        None => None,
    };
    let gname = match pax.gname {
        Some(g) => Some(g).filter(|s| !s.is_empty()),
        None if ustar || gnu => text(&block[field::GNAME]),
        None => None,
    };
    // The type as GNU tar extracts it: regular-file types named with a trailing slash are
    // directories (pre-POSIX tars marked directories that way); dumpdirs are directories.
    let typeflag = match raw_type {
        b'0' | 0 | b'7' if path.ends_with(b"/") => b'5',
        b'D' => b'5',
        t => t,
    };
    TarEntry {
        path,
        link,
        typeflag,
        mode,
        uid,
        gid,
        mtime,
        mtime_secs,
        uname,
        gname,
        size: 0,
        sparse: None,
    }
}

/// What [`TarReader::sparse_map`] found: the map (`None`: not a sparse file), and the real size
/// and name where the encoding gives them.
struct Sparse {
    map: Option<Vec<(u64, u64)>>,
    real_size: Option<u64>,
    name: Option<Vec<u8>>,
}

/// Whether an entry of this (normalised) type has `size` bytes of data after its header.
fn carries_data(t: u8) -> bool {
    !matches!(t, b'1'..=b'6')
}

fn err(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn eof(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, msg.into())
}

/// A name for messages.
fn shown(name: &[u8]) -> String {
    let (cut, len) = crate::list::cut_name(name);
    let shown = format!("'{}'", crate::list::display_name(cut).escape_debug());
    match len {
        Some(n) => format!("{shown}... ({n} bytes in all)"),
        None => shown,
    }
}

/// pax records we use; `None` = not set. Global and local records are parsed into one of these
/// each, so a repeated key replaces the earlier value instead of piling up.
#[derive(Debug, Default, Clone)]
struct PaxValues {
    path: Option<Vec<u8>>,
    linkpath: Option<Vec<u8>>,
    size: Option<u64>,
    mtime: Option<(i64, SystemTime)>,
    uid: Option<u64>,
    gid: Option<u64>,
    uname: Option<String>,
    gname: Option<String>,
}

impl PaxValues {
    /// Takes one record; `Ok(false)`: not one of ours.
    fn set(&mut self, key: &[u8], value: &[u8]) -> io::Result<bool> {
        let text = || String::from_utf8_lossy(value).trim().to_string();
        match key {
            b"path" => self.path = Some(name_value(value, "path")?),
            b"linkpath" => self.linkpath = Some(name_value(value, "linkpath")?),
            b"size" => {
                let s: u64 = text()
                    .parse()
                    .ok()
                    .filter(|&s| s <= MAX_SIZE)
                    .ok_or_else(|| err(format!("bad pax size {:?}", text())))?;
                self.size = Some(s);
            }
            b"mtime" => {
                if let Some(t) = parse_time(&text()) {
                    self.mtime = Some(t);
                }
            }
            b"uid" => {
                if let Ok(v) = text().parse() {
                    self.uid = Some(v);
                }
            }
            b"gid" => {
                if let Ok(v) = text().parse() {
                    self.gid = Some(v);
                }
            }
            b"uname" => self.uname = Some(text()),
            b"gname" => self.gname = Some(text()),
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// `other`'s values override ours.
    fn overlay(&self, other: &PaxValues) -> PaxValues {
        PaxValues {
            path: other.path.clone().or_else(|| self.path.clone()),
            linkpath: other.linkpath.clone().or_else(|| self.linkpath.clone()),
            size: other.size.or(self.size),
            mtime: other.mtime.or(self.mtime),
            uid: other.uid.or(self.uid),
            gid: other.gid.or(self.gid),
            uname: other.uname.clone().or_else(|| self.uname.clone()),
            gname: other.gname.clone().or_else(|| self.gname.clone()),
        }
    }
}

fn name_value(v: &[u8], what: &str) -> io::Result<Vec<u8>> {
    if v.len() as u64 > MAX_NAME {
        return Err(err(format!(
            "pax {what} of {} bytes is longer than the {} KiB limit for names",
            v.len(),
            MAX_NAME >> 10
        )));
    }
    Ok(v.to_vec())
}

/// GNU sparse records of one entry's local pax headers.
#[derive(Debug, Default)]
struct PaxSparse {
    major: Option<u32>,
    name: Option<Vec<u8>>,
    realsize: Option<u64>,
    /// pax 0.1: `GNU.sparse.map`.
    map: Option<Vec<(u64, u64)>>,
    /// pax 0.0: repeated `GNU.sparse.offset` / `GNU.sparse.numbytes`.
    offsets: Vec<u64>,
    lengths: Vec<u64>,
}

impl PaxSparse {
    fn set(&mut self, key: &[u8], value: &[u8]) -> io::Result<()> {
        let text = || String::from_utf8_lossy(value).trim().to_string();
        let num = |what: &str| -> io::Result<u64> {
            text()
                .parse()
                .map_err(|_| err(format!("bad {what} {:?}", text())))
        };
        let full = |v: &Vec<u64>| {
            if v.len() >= MAX_SPARSE_SEGMENTS {
                Err(too_many_segments())
            } else {
                Ok(())
            }
        };
        match key {
            b"GNU.sparse.major" => self.major = text().parse().ok(),
            b"GNU.sparse.name" => self.name = Some(name_value(value, "GNU.sparse.name")?),
            b"GNU.sparse.size" | b"GNU.sparse.realsize" => {
                self.realsize = Some(num("GNU.sparse.realsize")?)
            }
            b"GNU.sparse.offset" => {
                full(&self.offsets)?;
                self.offsets.push(num("GNU.sparse.offset")?);
            }
            b"GNU.sparse.numbytes" => {
                full(&self.lengths)?;
                self.lengths.push(num("GNU.sparse.numbytes")?);
            }
            b"GNU.sparse.map" => {
                // Linear: one pass over the value, which the pax header cap bounds.
                let mut nums = Vec::new();
                for s in value.split(|&b| b == b',').filter(|s| !s.is_empty()) {
                    if nums.len() >= 2 * MAX_SPARSE_SEGMENTS {
                        return Err(too_many_segments());
                    }
                    let n = std::str::from_utf8(s)
                        .ok()
                        .and_then(|s| s.trim().parse::<u64>().ok())
                        .ok_or_else(|| err("bad GNU.sparse.map"))?;
                    nums.push(n);
                }
                if nums.len() % 2 != 0 {
                    return Err(err("GNU.sparse.map has an odd count of numbers"));
                }
                self.map = Some(nums.chunks_exact(2).map(|c| (c[0], c[1])).collect());
            }
            _ => {}
        }
        Ok(())
    }
}

fn too_many_segments() -> io::Error {
    err(format!(
        "sparse map has more than {MAX_SPARSE_SEGMENTS} segments (the limit)"
    ))
}

/// Reads entries one by one; each entry's data through [`TarReader::data`].
pub(crate) struct TarReader<R: Read> {
    r: R,
    /// Data (plus padding) of the current entry not yet consumed.
    skip: u64,
    /// Global pax records in force (`g` headers, later values replacing earlier ones).
    globals: PaxValues,
    /// Whether any block was read (an empty input is not an archive).
    started: bool,
    done: bool,
    /// Name of the last entry returned, for messages.
    last: Option<Vec<u8>>,
    /// The current entry, for `data`.
    current: Option<TarEntry>,
    /// Stored bytes of the current entry still unread by `data`.
    left: u64,
}

impl<R: Read> TarReader<R> {
    pub fn new(r: R) -> Self {
        TarReader {
            r,
            skip: 0,
            globals: PaxValues::default(),
            started: false,
            done: false,
            last: None,
            current: None,
            left: 0,
        }
    }

    /// The underlying reader, positioned after the last block read.
    pub fn into_inner(self) -> R {
        self.r
    }

    /// Where we are, for messages: "after 'name'" or "at the start of the archive".
    fn place(&self) -> String {
        match &self.last {
            Some(n) => format!("after {}", shown(n)),
            None => "at the start of the archive".into(),
        }
    }

    /// Reads one block; `false` at a clean end of input (no byte of the block).
    fn read_block(&mut self, block: &mut [u8; 512]) -> io::Result<bool> {
        let mut got = 0;
        while got < 512 {
            match self.r.read(&mut block[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        match got {
            0 => Ok(false),
            512 => {
                self.started = true;
                Ok(true)
            }
            _ => Err(eof(format!(
                "truncated archive: it ends inside a header block {}",
                self.place()
            ))),
        }
    }

    fn discard(&mut self, n: u64, what: impl FnOnce() -> String) -> io::Result<()> {
        let copied = io::copy(&mut (&mut self.r).take(n), &mut io::sink())?;
        if copied < n {
            return Err(eof(format!("truncated archive: it ends inside {}", what())));
        }
        Ok(())
    }

    /// The data of an extension header (`L`, `K`, `x`, `X`, `g`), after checking its size against
    /// `cap`: nothing is allocated from a size field before that check.
    fn read_extension(&mut self, block: &[u8; 512], size: u64, cap: u64) -> io::Result<Vec<u8>> {
        let kind = match block[field::TYPEFLAG] {
            b'L' => "GNU long name",
            b'K' => "GNU long link name",
            b'g' => "pax global header",
            _ => "pax extended header",
        };
        let name = shown(&trim_nul(&block[field::NAME]));
        if size > cap {
            let limit = if cap >= 1 << 20 {
                format!("{} MiB", cap >> 20)
            } else {
                format!("{} KiB", cap >> 10)
            };
            return Err(err(format!(
                "{name} ({}): {kind} of {size} bytes is larger than the {limit} limit; no tar \
                 program writes one that large, so the archive is damaged or hostile",
                self.place()
            )));
        }
        let mut v = vec![0u8; size as usize];
        if self.r.read_exact(&mut v).is_err() {
            return Err(eof(format!(
                "truncated archive: it ends inside the {kind} {name} ({})",
                self.place()
            )));
        }
        self.discard(pad(size), || format!("the {kind} {name}"))?;
        Ok(v)
    }

    /// Reads the next header block and checks it; `Ok(false)` at the end-of-archive marker.
    fn header_block(&mut self, block: &mut [u8; 512]) -> io::Result<bool> {
        if !self.read_block(block)? {
            return Err(eof(if !self.started {
                "empty input: not a tar archive".to_string()
            } else {
                format!(
                    "truncated archive: it ends {} without the end-of-archive marker",
                    self.place()
                )
            }));
        }
        if block.iter().all(|&b| b == 0) {
            // End of archive. Two zero blocks are the marker; GNU tar and bsdtar also stop at
            // one (GNU tar warns about "a lone zero block"), and so do we: what follows is
            // neither read as entries nor required.
            self.done = true;
            return Ok(false);
        }
        if !checksum_ok(block) {
            return Err(err(format!(
                "header checksum mismatch {}: damaged archive or not a tar",
                self.place()
            )));
        }
        Ok(true)
    }

    /// The next entry, or `None` at the end of the archive.
    pub fn next_entry(&mut self) -> io::Result<Option<TarEntry>> {
        // Finish the previous entry's data.
        let rest = self.skip + self.left;
        self.skip = 0;
        self.left = 0;
        if let Some(prev) = self.current.take() {
            self.discard(rest, || format!("the data of {}", shown(&prev.path)))?;
        }
        if self.done {
            return Ok(None);
        }
        let mut long_name: Option<Vec<u8>> = None;
        let mut long_link: Option<Vec<u8>> = None;
        let mut local = PaxValues::default();
        let mut pax_sparse = PaxSparse::default();
        let mut block = [0u8; 512];
        loop {
            if !self.header_block(&mut block)? {
                return Ok(None);
            }
            let typeflag = block[field::TYPEFLAG];
            if !matches!(typeflag, b'L' | b'K' | b'x' | b'X' | b'g') {
                break;
            }
            let size = self.header_size(&block)?;
            match typeflag {
                b'L' => long_name = Some(trim_nul(&self.read_extension(&block, size, MAX_NAME)?)),
                b'K' => long_link = Some(trim_nul(&self.read_extension(&block, size, MAX_NAME)?)),
                b'g' => {
                    let data = self.read_extension(&block, size, MAX_PAX_HEADER)?;
                    let name = trim_nul(&block[field::NAME]);
                    let mut globals = std::mem::take(&mut self.globals);
                    let r = for_each_record(&data, |k, v| globals.set(k, v).map(drop));
                    self.globals = globals;
                    r.map_err(|e| err(format!("{} ({}): {e}", shown(&name), self.place())))?;
                }
                _ => {
                    // `x` (POSIX) and `X` (Solaris/star, read the same way by GNU tar, bsdtar and
                    // Python): records for the next entry. A second one replaces the first
                    // entirely, as in GNU tar and bsdtar.
                    let data = self.read_extension(&block, size, MAX_PAX_HEADER)?;
                    let name = trim_nul(&block[field::NAME]);
                    local = PaxValues::default();
                    pax_sparse = PaxSparse::default();
                    for_each_record(&data, |k, v| {
                        if !local.set(k, v)? {
                            pax_sparse.set(k, v)?;
                        }
                        Ok(())
                    })
                    .map_err(|e| err(format!("{} ({}): {e}", shown(&name), self.place())))?;
                }
            }
        }
        let entry = self
            .entry(&block, long_name, long_link, local, pax_sparse)
            .map_err(|e| {
                let name = shown(&trim_nul(&block[field::NAME]));
                io::Error::new(e.kind(), format!("{name} ({}): {e}", self.place()))
            })?;
        self.last = Some(entry.path.clone());
        self.current = Some(entry.clone());
        Ok(Some(entry))
    }

    fn header_size(&self, block: &[u8; 512]) -> io::Result<u64> {
        let size = number(&block[field::SIZE])?;
        if size > MAX_SIZE {
            return Err(err(format!(
                "{} ({}): size field {size} is out of range",
                shown(&trim_nul(&block[field::NAME])),
                self.place()
            )));
        }
        Ok(size)
    }

    /// Builds the entry of a header block with its extensions and positions the reader at its data.
    fn entry(
        &mut self,
        block: &[u8; 512],
        long_name: Option<Vec<u8>>,
        long_link: Option<Vec<u8>>,
        local: PaxValues,
        pax_sparse: PaxSparse,
    ) -> io::Result<TarEntry> {
        let raw_type = block[field::TYPEFLAG];
        let pax = self.globals.overlay(&local);
        let pax_size = pax.size;
        let mut e = header_entry(block, long_name, long_link, pax);
        // Types that carry no data ignore their size field and any pax size (GNU tar extracting,
        // and Python; see docs/FORMAT.md); their size field is not even parsed.
        if !carries_data(e.typeflag) && raw_type != b'D' {
            return Ok(e);
        }
        let stored = match pax_size {
            Some(s) => s,
            None => number(&block[field::SIZE])?,
        };
        if stored > MAX_SIZE {
            return Err(err(format!("size field {stored} is out of range")));
        }
        self.skip = pad(stored);
        self.left = stored;

        let Sparse {
            map: sparse,
            real_size,
            name: sparse_name,
        } = self.sparse_map(block, stored, pax_sparse)?;
        if sparse.is_some() {
            if let Some(n) = sparse_name {
                e.path = n;
            }
        }
        let mut size = stored;
        if let Some(map) = &sparse {
            e.typeflag = b'0';
            size = real_size.unwrap_or(stored);
            if size > MAX_SIZE {
                return Err(err(format!("sparse file size {size} is out of range")));
            }
            check_sparse_map(map, size, self.left)?;
        }
        if !is_file_type(e.typeflag) {
            // Labels, continuations, dumpdirs: their data is skipped, never extracted.
            size = 0;
        }
        e.size = size;
        e.sparse = sparse;
        Ok(e)
    }

    /// A sparse file's map, in whichever encoding (old GNU header slots and extension blocks,
    /// pax 0.0, 0.1 or 1.0, which is read from the start of the data).
    fn sparse_map(
        &mut self,
        block: &[u8; 512],
        stored: u64,
        pax_sparse: PaxSparse,
    ) -> io::Result<Sparse> {
        let mut sparse = None;
        let mut real_size = None;
        if block[field::TYPEFLAG] == b'S' {
            let gnu = &block[field::MAGIC] == b"ustar ";
            // The real size is in the old GNU header only; GNU tar ignores that field otherwise.
            real_size = Some(if gnu {
                number(&block[field::GNU_REAL_SIZE])?
            } else {
                stored
            });
            sparse = Some(self.old_gnu_sparse(block)?);
        }
        let PaxSparse {
            major,
            name,
            realsize,
            map,
            offsets,
            lengths,
        } = pax_sparse;
        if let Some(m) = map {
            sparse = Some(m); // 0.1
        }
        if !offsets.is_empty() {
            if offsets.len() != lengths.len() {
                return Err(err(
                    "sparse map: GNU.sparse.offset and GNU.sparse.numbytes do not pair up",
                ));
            }
            sparse = Some(offsets.into_iter().zip(lengths).collect()); // 0.0
        }
        if major == Some(1) {
            // 1.0: the map is at the start of the data, in decimal lines, block-padded.
            let (m, used) = self.read_sparse_v1(stored)?;
            sparse = Some(m);
            self.left = stored - used;
            self.skip = pad(stored);
        }
        if realsize.is_some() {
            real_size = realsize;
        }
        Ok(Sparse {
            map: sparse,
            real_size,
            name,
        })
    }

    /// Old GNU sparse map: four slots in the header, 21 more per extension block.
    fn old_gnu_sparse(&mut self, block: &[u8; 512]) -> io::Result<Vec<(u64, u64)>> {
        let mut map = Vec::new();
        let finished = read_sparse_slots(&block[field::GNU_SPARSE], &mut map)?;
        let mut extended = !finished && block[field::GNU_IS_EXTENDED] != 0;
        while extended {
            let mut ext = [0u8; 512];
            if !self.read_block(&mut ext)? {
                return Err(eof("truncated archive: it ends inside a sparse map"));
            }
            let finished = read_sparse_slots(&ext[..504], &mut map)?;
            extended = !finished && ext[504] != 0;
        }
        Ok(map)
    }

    /// pax sparse 1.0: `count\n` then `offset\nlength\n` pairs, at the start of the data, padded to
    /// a block. Read block by block with the partial line carried over: linear in the map's size.
    fn read_sparse_v1(&mut self, stored: u64) -> io::Result<(Vec<(u64, u64)>, u64)> {
        let mut used: u64 = 0;
        let mut block = [0u8; 512];
        // The number being read and how many digits it has so far.
        let mut cur: u64 = 0;
        let mut digits = 0usize;
        let mut count: Option<u64> = None;
        let mut pending: Option<u64> = None;
        let mut map = Vec::new();
        loop {
            if used + 512 > stored {
                return Err(err("sparse map runs past the entry's data"));
            }
            self.r
                .read_exact(&mut block)
                .map_err(|_| eof("truncated archive: it ends inside a sparse map"))?;
            used += 512;
            for &b in &block {
                match b {
                    b'0'..=b'9' => {
                        cur = cur
                            .checked_mul(10)
                            .and_then(|c| c.checked_add(u64::from(b - b'0')))
                            .ok_or_else(|| err("bad sparse map: number too large"))?;
                        digits += 1;
                    }
                    b'\n' if digits > 0 => {
                        let n = std::mem::take(&mut cur);
                        digits = 0;
                        match count {
                            None => {
                                if n > MAX_SPARSE_SEGMENTS as u64 {
                                    return Err(too_many_segments());
                                }
                                count = Some(n);
                            }
                            Some(_) => match pending.take() {
                                None => pending = Some(n),
                                Some(off) => map.push((off, n)),
                            },
                        }
                        if count == Some(map.len() as u64) {
                            return Ok((map, used));
                        }
                    }
                    _ => return Err(err("bad sparse map: not a decimal number per line")),
                }
            }
        }
    }

    /// The current entry's data, expanded (sparse holes read as zeros), exactly `size` bytes.
    pub fn data(&mut self) -> EntryData<'_, R> {
        let entry = self.current.clone();
        let map = entry
            .as_ref()
            .and_then(|e| e.sparse.clone())
            .unwrap_or_default();
        let size = entry
            .as_ref()
            .map_or(0, |e| if e.is_file() { e.size } else { 0 });
        let sparse = entry.as_ref().is_some_and(|e| e.sparse.is_some());
        EntryData {
            reader: self,
            pos: 0,
            size,
            map,
            seg: 0,
            sparse,
        }
    }
}

fn is_file_type(t: u8) -> bool {
    !is_known_special(t)
}

/// A sparse map must list segments in order, without overlap, inside the file, and describe no
/// more data than the entry stores; the data reader relies on all of it.
fn check_sparse_map(map: &[(u64, u64)], size: u64, stored: u64) -> io::Result<()> {
    let mut end = 0u64;
    let mut data = 0u64;
    for &(off, len) in map {
        let seg_end = off
            .checked_add(len)
            .filter(|&e| off >= end && e <= size)
            .ok_or_else(|| {
                err("bad sparse map: segments out of order, overlapping or past the file's size")
            })?;
        end = seg_end;
        data += len;
    }
    if data > stored {
        return Err(err("sparse map describes more data than the entry stores"));
    }
    Ok(())
}

/// Reads an entry's data; see [`TarReader::data`].
pub(crate) struct EntryData<'a, R: Read> {
    reader: &'a mut TarReader<R>,
    pos: u64,
    size: u64,
    map: Vec<(u64, u64)>,
    seg: usize,
    sparse: bool,
}

impl<R: Read> EntryData<'_, R> {
    fn stored(&mut self, buf: &mut [u8], want: u64, what: &str) -> io::Result<usize> {
        let want = want.min(self.reader.left).min(buf.len() as u64) as usize;
        let n = if want == 0 {
            0
        } else {
            self.reader.r.read(&mut buf[..want])?
        };
        if n == 0 {
            let name = self
                .reader
                .current
                .as_ref()
                .map(|e| shown(&e.path))
                .unwrap_or_default();
            return Err(eof(format!(
                "truncated archive: it ends inside the {what} of {name}"
            )));
        }
        self.reader.left -= n as u64;
        self.pos += n as u64;
        Ok(n)
    }
}

impl<R: Read> Read for EntryData<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.size || buf.is_empty() {
            return Ok(0);
        }
        let max = (self.size - self.pos).min(buf.len() as u64);
        if !self.sparse {
            return self.stored(buf, max, "data");
        }
        // Sparse: zeros up to the next segment, then its data. The map is checked: in order,
        // no overlap, inside `size`.
        while self.seg < self.map.len() && self.map[self.seg].0 + self.map[self.seg].1 <= self.pos {
            self.seg += 1;
        }
        match self.map.get(self.seg) {
            Some(&(off, len)) if self.pos >= off => {
                self.stored(buf, (off + len - self.pos).min(max), "sparse data")
            }
            next => {
                let hole = next.map_or(max, |&(off, _)| (off - self.pos).min(max)) as usize;
                buf[..hole].fill(0);
                self.pos += hole as u64;
                Ok(hole)
            }
        }
    }
}

fn pad(n: u64) -> u64 {
    (512 - n % 512) % 512
}

fn trim_nul(v: &[u8]) -> Vec<u8> {
    match v.iter().position(|&b| b == 0) {
        Some(i) => v[..i].to_vec(),
        None => v.to_vec(),
    }
}

pub(crate) fn checksum_ok(block: &[u8; 512]) -> bool {
    let field = &block[field::CHECKSUM];
    let Ok(stored) = number(field) else {
        return false;
    };
    let mut unsigned: u64 = 0;
    let mut signed: i64 = 0;
    for (i, &b) in block.iter().enumerate() {
        let b = if field::CHECKSUM.contains(&i) {
            b' '
        } else {
            b
        };
        unsigned += u64::from(b);
        signed += i64::from(b as i8);
    }
    stored == unsigned || stored as i64 == signed
}

/// A numeric field, parsed exactly as GNU tar parses it (`from_header`), since a size decides where
/// the next header is: one leading NUL is skipped (old tars wrote one when the previous field
/// overflowed), then spaces; octal digits up to the end, a NUL or a space (none = 0); or GNU
/// base-256 (first byte 0x80). A field of spaces only is an error.
fn number(field: &[u8]) -> io::Result<u64> {
    let mut rest = field.strip_prefix(&[0]).unwrap_or(field);
    while let Some((&b, r)) = rest.split_first() {
        if !b.is_ascii_whitespace() && b != 0x0b {
            break;
        }
        rest = r;
    }
    match rest.first() {
        None => return Err(err("blank number in a tar header")),
        Some(0x80) => {
            let mut v: u64 = 0;
            for &b in &rest[1..] {
                v = v
                    .checked_mul(256)
                    .and_then(|v| v.checked_add(u64::from(b)))
                    .ok_or_else(|| err("number too large in a tar header"))?;
            }
            return Ok(v);
        }
        Some(0xff) => return Err(err("negative number in a tar header")),
        _ => {}
    }
    let digits = rest
        .iter()
        .take_while(|b| (b'0'..=b'7').contains(b))
        .count();
    if rest
        .get(digits)
        .is_some_and(|&b| b != 0 && b != b' ' && !b.is_ascii_whitespace())
    {
        let shown = String::from_utf8_lossy(&field[..field.len().min(12)]).into_owned();
        return Err(err(format!("bad number {shown:?} in a tar header")));
    }
    let mut v: u64 = 0;
    for &b in &rest[..digits] {
        v = v
            .checked_mul(8)
            .map(|v| v + u64::from(b - b'0'))
            .ok_or_else(|| err("number too large in a tar header"))?;
    }
    Ok(v)
}

/// Like [`number`], also accepting negative base-256 values (mtimes before 1970).
pub(crate) fn signed_number(field: &[u8]) -> io::Result<i64> {
    if field.first() == Some(&0xff) {
        let mut v: i64 = -1;
        for &b in &field[1..] {
            v = v.checked_mul(256).ok_or_else(|| err("number too large"))? | i64::from(b);
        }
        // i64::MIN has no positive counterpart: times are negated downstream.
        return Ok(v.max(-i64::MAX));
    }
    number(field).map(|v| v.min(i64::MAX as u64) as i64)
}

/// Old GNU sparse slots (12-byte offset, 12-byte length) into `map`. Returns `true` when a slot with
/// an empty length ended the map (GNU tar then reads no extension blocks, whatever the flag says).
fn read_sparse_slots(area: &[u8], map: &mut Vec<(u64, u64)>) -> io::Result<bool> {
    for c in area.chunks_exact(24) {
        if c[12] == 0 {
            return Ok(true);
        }
        if map.len() >= MAX_SPARSE_SEGMENTS {
            return Err(too_many_segments());
        }
        map.push((number(&c[..12])?, number(&c[12..])?));
    }
    Ok(false)
}

/// Calls `each(key, value)` for every pax record (`LEN key=value\n`), in one pass.
fn for_each_record(
    data: &[u8],
    mut each: impl FnMut(&[u8], &[u8]) -> io::Result<()>,
) -> io::Result<()> {
    let mut rest = data;
    while let Some(&first) = rest.first() {
        if first == 0 {
            // NUL padding after the last record (some writers pad the header to a block).
            if rest.iter().all(|&b| b == 0) {
                break;
            }
            return Err(err("bad pax record"));
        }
        let digits = rest
            .iter()
            .take(21)
            .take_while(|b| b.is_ascii_digit())
            .count();
        if digits == 0 || rest.get(digits) != Some(&b' ') {
            return Err(err("bad pax record length"));
        }
        let len: usize = std::str::from_utf8(&rest[..digits])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| err("bad pax record length"))?;
        if len <= digits + 1 || len > rest.len() {
            return Err(err("pax record length out of range"));
        }
        let record = &rest[digits + 1..len];
        let record = record.strip_suffix(b"\n").unwrap_or(record);
        let eq = record
            .iter()
            .position(|&b| b == b'=')
            .ok_or_else(|| err("pax record without '='"))?;
        each(&record[..eq], &record[eq + 1..])?;
        rest = &rest[len..];
    }
    Ok(())
}

fn parse_time(s: &str) -> Option<(i64, SystemTime)> {
    let (neg, digits) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let (secs, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let secs: u64 = secs.parse().ok().filter(|&s| s <= i64::MAX as u64)?;
    let mut nanos = 0u32;
    for (i, c) in frac.chars().take(9).enumerate() {
        nanos += c.to_digit(10)? * 10u32.pow(8 - i as u32);
    }
    let d = Duration::new(secs, nanos);
    let t = if neg {
        UNIX_EPOCH.checked_sub(d)?
    } else {
        UNIX_EPOCH.checked_add(d)?
    };
    let whole = if neg { -(secs as i64) } else { secs as i64 };
    Some((whole, t))
}

/// A Unix time (seconds, possibly negative, plus nanoseconds) as a `SystemTime`.
pub(crate) fn unix_time(secs: i64, nanos: u32) -> SystemTime {
    // Times no `SystemTime` can hold (hostile headers) read as the epoch instead of panicking.
    let t = if secs >= 0 {
        UNIX_EPOCH.checked_add(Duration::new(secs as u64, nanos))
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_secs(secs.unsigned_abs()))
    };
    t.unwrap_or(UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// A header block: ustar magic, the given type, size and link, a correct checksum.
    pub(crate) fn hdr(name: &[u8], typeflag: u8, size: u64, link: &[u8]) -> Vec<u8> {
        let mut h = vec![0u8; 512];
        h[..name.len()].copy_from_slice(name);
        h[100..108].copy_from_slice(b"0000644\0");
        h[108..116].copy_from_slice(b"0000000\0");
        h[116..124].copy_from_slice(b"0000000\0");
        if size < 1 << 33 {
            h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
        } else {
            // GNU base-256.
            h[124] = 0x80;
            h[128..136].copy_from_slice(&size.to_be_bytes());
        }
        h[136..148].copy_from_slice(b"00000000000\0");
        h[156] = typeflag;
        h[157..157 + link.len()].copy_from_slice(link);
        h[257..265].copy_from_slice(b"ustar\x0000");
        seal(&mut h);
        h
    }

    fn seal(h: &mut [u8]) {
        h[148..156].fill(b' ');
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    }

    fn padded(mut d: Vec<u8>) -> Vec<u8> {
        d.resize(d.len() + pad(d.len() as u64) as usize, 0);
        d
    }

    pub(crate) fn pax(records: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (k, v) in records {
            let body = [b" ", k.as_bytes(), b"=", v, b"\n"].concat();
            let mut n = body.len() + 1;
            while n.to_string().len() + body.len() != n {
                n = n.to_string().len() + body.len();
            }
            out.extend_from_slice(n.to_string().as_bytes());
            out.extend_from_slice(&body);
        }
        out
    }

    /// An extension header (`x`, `X`, `g`, `L`, `K`) with its data.
    fn ext(typeflag: u8, data: &[u8]) -> Vec<u8> {
        [
            hdr(b"ext", typeflag, data.len() as u64, b""),
            padded(data.to_vec()),
        ]
        .concat()
    }

    const END: [u8; 1024] = [0; 1024];

    fn entries(bytes: &[u8]) -> io::Result<Vec<TarEntry>> {
        let mut r = TarReader::new(bytes);
        let mut out = Vec::new();
        while let Some(e) = r.next_entry()? {
            out.push(e);
        }
        Ok(out)
    }

    fn names(bytes: &[u8]) -> Vec<String> {
        entries(bytes)
            .unwrap()
            .iter()
            .map(|e| String::from_utf8_lossy(&e.path).into_owned())
            .collect()
    }

    /// Runs `f` on another thread; fails if it takes longer than `secs`.
    fn bounded<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = mpsc::channel();
        let t = std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        match rx.recv_timeout(Duration::from_secs(secs)) {
            Ok(v) => v,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                std::panic::resume_unwind(t.join().expect_err("no result, so it panicked"))
            }
            Err(mpsc::RecvTimeoutError::Timeout) => panic!("took longer than {secs} s"),
        }
    }

    /// A reader of generated pieces, so tests can feed hundreds of MiB without holding them.
    struct Pieces<I: Iterator<Item = Vec<u8>>> {
        it: I,
        cur: io::Cursor<Vec<u8>>,
    }

    impl<I: Iterator<Item = Vec<u8>>> Read for Pieces<I> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            loop {
                let n = self.cur.read(buf)?;
                if n > 0 || buf.is_empty() {
                    return Ok(n);
                }
                match self.it.next() {
                    Some(p) => self.cur = io::Cursor::new(p),
                    None => return Ok(0),
                }
            }
        }
    }

    fn pieces(it: impl Iterator<Item = Vec<u8>>) -> Pieces<impl Iterator<Item = Vec<u8>>> {
        Pieces {
            it,
            cur: io::Cursor::new(Vec::new()),
        }
    }

    fn list_all(r: impl Read) -> io::Result<Vec<TarEntry>> {
        let mut t = TarReader::new(r);
        let mut out = Vec::new();
        while let Some(e) = t.next_entry()? {
            out.push(e);
        }
        Ok(out)
    }

    #[test]
    fn numbers() {
        assert_eq!(number(b"0000644\0").unwrap(), 0o644);
        // GNU tar: one leading NUL skipped, then digits stop at the next NUL.
        assert_eq!(number(b"\0\0\0\0\0\0\x000016\0").unwrap(), 0);
        assert_eq!(number(b"\0 12 ").unwrap(), 0o12);
        assert!(number(b"        ").is_err());
        assert!(number(b"12x").is_err());
        assert!(number(&[0x81, 0, 0, 0, 0, 0, 0, 0]).is_err());
        assert_eq!(number(b"   \0    ").unwrap(), 0);
        assert_eq!(number(b" 17 \0").unwrap(), 0o17);
        assert_eq!(
            number(&[0x80, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 1]).unwrap(),
            (2 << 32) + 1
        );
        assert_eq!(signed_number(&[0xff; 12]).unwrap(), -1);
    }

    fn records(data: &[u8]) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::new();
        for_each_record(data, |k, v| {
            out.push((k.to_vec(), v.to_vec()));
            Ok(())
        })?;
        Ok(out)
    }

    #[test]
    fn pax_records() {
        let r = records(b"18 path=a/b/c.txt\n12 uid=1000\n").unwrap();
        assert_eq!(r[0], (b"path".to_vec(), b"a/b/c.txt".to_vec()));
        assert_eq!(r[1].1, b"1000");
        assert!(records(b"99 path=x\n").is_err());
        assert!(records(b"x path=x\n").is_err());
        assert_eq!(records(b"9 path=x\n\0\0\0").unwrap().len(), 1);
    }

    /// Types that carry no data ignore their size field: the block after them is the next header
    /// (GNU tar extracting, bsdtar and Python agree). The old reader skipped a "data" block and
    /// swallowed `smuggled` after each of them but the hard link.
    #[test]
    fn dataless_types_with_a_size_carry_no_data() {
        for t in [b'1', b'2', b'3', b'4', b'5', b'6'] {
            let a = [
                hdr(b"entry", t, 512, b"target"),
                hdr(b"smuggled", b'0', 0, b""),
                hdr(b"after", b'0', 0, b""),
                END.to_vec(),
            ]
            .concat();
            assert_eq!(
                names(&a),
                ["entry", "smuggled", "after"],
                "type {}",
                t as char
            );
            // A pax size changes nothing either.
            let a = [
                ext(b'x', &pax(&[("size", b"512")])),
                hdr(b"entry", t, 0, b"target"),
                hdr(b"smuggled", b'0', 0, b""),
                END.to_vec(),
            ]
            .concat();
            let e = entries(&a).unwrap();
            assert_eq!(e.len(), 2, "type {}", t as char);
            assert_eq!(e[0].size, 0);
        }
    }

    /// A regular-file type named with a trailing slash is a directory without data (GNU tar
    /// extracting, bsdtar); dumpdirs are directories whose data is skipped.
    #[test]
    fn directories_by_slash_and_dumpdirs() {
        for t in [b'0', 0, b'7'] {
            let a = [
                hdr(b"d/", t, 512, b""),
                hdr(b"smuggled", b'0', 0, b""),
                END.to_vec(),
            ]
            .concat();
            let e = entries(&a).unwrap();
            assert_eq!(e.len(), 2);
            assert_eq!(e[0].typeflag, b'5');
        }
        let a = [
            hdr(b"dump", b'D', 10, b""),
            padded(b"Nfile\0\0\0\0\0".to_vec()),
            hdr(b"after", b'0', 0, b""),
            END.to_vec(),
        ]
        .concat();
        let e = entries(&a).unwrap();
        assert_eq!(names(&a), ["dump", "after"]);
        assert_eq!((e[0].typeflag, e[0].size), (b'5', 0));
    }

    /// Unknown letters are regular files with data (GNU tar, bsdtar, Python); labels and
    /// continuations are entries whose data is skipped.
    #[test]
    fn unknown_labels_and_continuations() {
        for t in [b'A', b'N', b'Z', b'9', b'V', b'M'] {
            let a = [
                hdr(b"entry", t, 5, b""),
                padded(b"hello".to_vec()),
                hdr(b"after", b'0', 0, b""),
                END.to_vec(),
            ]
            .concat();
            let mut r = TarReader::new(&a[..]);
            let e = r.next_entry().unwrap().unwrap();
            assert_eq!(e.path, b"entry");
            let mut data = Vec::new();
            r.data().read_to_end(&mut data).unwrap();
            if matches!(t, b'V' | b'M') {
                assert!(!e.is_file() && data.is_empty(), "{}", t as char);
            } else {
                assert!(e.is_file() && data == b"hello", "{}", t as char);
            }
            assert_eq!(r.next_entry().unwrap().unwrap().path, b"after");
            assert!(r.next_entry().unwrap().is_none());
        }
    }

    /// `X` (Solaris/star) is a pax extended header for the next entry. The old reader listed it as
    /// a file named like `/tmp/PaxHeaders.378/...`.
    #[test]
    fn solaris_x_header_applies_to_the_next_entry() {
        let a = [
            ext(
                b'X',
                &pax(&[("path", b"real/name"), ("linkpath", b"tgt"), ("uid", b"42")]),
            ),
            hdr(b"short", b'2', 0, b"old"),
            END.to_vec(),
        ]
        .concat();
        let e = entries(&a).unwrap();
        assert_eq!(e.len(), 1);
        assert_eq!(
            (e[0].path.as_slice(), e[0].link.as_slice()),
            (&b"real/name"[..], &b"tgt"[..])
        );
        assert_eq!(e[0].uid, 42);
    }

    /// pax beats GNU long names whatever their order (GNU tar); local beats global; globals apply
    /// to every later entry and a later global replaces an earlier one.
    #[test]
    fn extension_precedence() {
        let a = [
            ext(b'g', &pax(&[("uid", b"7"), ("mtime", b"86400.5")])),
            ext(b'L', b"long-name\0"),
            ext(b'x', &pax(&[("path", b"pax-name"), ("size", b"3")])),
            hdr(b"a", b'0', 0, b""),
            padded(b"abc".to_vec()),
            ext(b'g', &pax(&[("uid", b"8")])),
            ext(b'x', &pax(&[("path", b"second")])),
            ext(b'L', b"long-2\0"),
            hdr(b"b", b'0', 0, b""),
            END.to_vec(),
        ]
        .concat();
        let e = entries(&a).unwrap();
        assert_eq!(e[0].path, b"pax-name");
        assert_eq!((e[0].size, e[0].uid, e[0].mtime_secs), (3, 7, 86400));
        assert_eq!(e[1].path, b"second");
        assert_eq!((e[1].uid, e[1].mtime_secs), (8, 86400));
    }

    #[test]
    fn empty_and_truncated_inputs_are_errors() {
        let e = entries(b"").unwrap_err();
        assert!(e.to_string().contains("empty input"), "{e}");
        let one = [hdr(b"f", b'0', 3, b""), padded(b"abc".to_vec())].concat();
        // Cut right after the last entry's data: no end-of-archive marker.
        let e = entries(&one).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        assert!(
            e.to_string().contains("truncated") && e.to_string().contains("'f'"),
            "{e}"
        );
        // Cut inside the data, inside a header, inside an extension header.
        for cut in [514, 520, 1024 + 100] {
            let a = [one.clone(), hdr(b"g", b'0', 0, b""), END.to_vec()].concat();
            let e = entries(&a[..cut]).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "cut at {cut}: {e}");
            assert!(e.to_string().contains("truncated"), "{e}");
        }
        let x = ext(b'x', &pax(&[("path", b"p")]));
        let e = entries(&x[..600]).unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");
        // One zero block then the end: accepted, as GNU tar does.
        assert_eq!(names(&[one.clone(), vec![0; 512]].concat()), ["f"]);
        assert_eq!(names(&[one, END.to_vec()].concat()), ["f"]);
    }

    #[test]
    fn hostile_numbers_do_not_panic() {
        let mut h = hdr(b"f", b'0', 0, b"");
        h[124..136].copy_from_slice(&[
            0x80, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        ]);
        seal(&mut h);
        let e = entries(&[h.clone(), END.to_vec()].concat()).unwrap_err();
        assert!(e.to_string().contains("out of range"), "{e}");
        h[124..136].copy_from_slice(b"00000000000\0");
        h[136..148].copy_from_slice(&[0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        seal(&mut h);
        assert_eq!(entries(&[h, END.to_vec()].concat()).unwrap().len(), 1);
        let a = [
            ext(
                b'x',
                &pax(&[
                    ("mtime", b"99999999999999999999.9"),
                    ("size", b"18446744073709551615"),
                ]),
            ),
            hdr(b"f", b'0', 0, b""),
            END.to_vec(),
        ]
        .concat();
        assert!(entries(&a).is_err());
    }

    /// A 60 MiB pax header of small records is refused at its size, before anything is allocated
    /// or parsed; one just under the cap parses in linear time.
    #[test]
    fn pax_header_bomb_is_refused_quickly() {
        let err = bounded(20, || {
            let total: u64 = 60 << 20;
            let record = b"6 a=b\n".repeat(10_000);
            let count = total / record.len() as u64;
            let head = hdr(b"PaxHeaders/bomb", b'x', count * record.len() as u64, b"");
            let body = std::iter::repeat_n(record, count as usize);
            list_all(pieces(std::iter::once(head).chain(body))).unwrap_err()
        });
        let msg = err.to_string();
        assert!(
            msg.contains("PaxHeaders/bomb") && msg.contains("16 MiB limit"),
            "{msg}"
        );
        // Just under the cap, 2.8 million records: fine, and fast.
        let n = bounded(20, || {
            let mut data = b"6 a=b\n".repeat(((MAX_PAX_HEADER - 100) / 6) as usize);
            data.extend_from_slice(&pax(&[("path", b"ok")]));
            let a = [ext(b'x', &data), hdr(b"f", b'0', 0, b""), END.to_vec()].concat();
            entries(&a).unwrap()
        });
        assert_eq!(n[0].path, b"ok");
    }

    /// 100,000 global headers, each with new values of the same keys and an unknown key: the
    /// reader keeps one value per key (and none for unknown keys) and finishes quickly.
    #[test]
    fn repeated_global_headers_replace_not_accumulate() {
        let e = bounded(30, || {
            let globals = (0..100_000u32).map(|i| {
                ext(
                    b'g',
                    &pax(&[
                        ("uid", i.to_string().as_bytes()),
                        ("comment", &[b'c'; 900][..]),
                    ]),
                )
            });
            let tail = [hdr(b"f", b'0', 0, b""), END.to_vec()].concat();
            list_all(pieces(globals.chain(std::iter::once(tail)))).unwrap()
        });
        assert_eq!(e[0].uid, 99_999);
    }

    /// Many long names before one entry: only the last is kept; one over the cap is an error
    /// naming the header.
    #[test]
    fn long_names_are_capped() {
        let e = bounded(60, || {
            let names = (0..2_000u32).map(|i| {
                let mut n = vec![b'n'; 60 << 10];
                n.extend_from_slice(i.to_string().as_bytes());
                n.push(0);
                ext(b'L', &n)
            });
            let tail = [hdr(b"f", b'0', 0, b""), END.to_vec()].concat();
            list_all(pieces(names.chain(std::iter::once(tail)))).unwrap()
        });
        assert!(e[0].path.ends_with(b"1999"));
        for t in [b'L', b'K'] {
            let mut big = hdr(b"././@LongLink", t, MAX_NAME + 1, b"");
            big.extend(vec![b'a'; 70 << 10]);
            let err = entries(&big).unwrap_err().to_string();
            assert!(
                err.contains("././@LongLink") && err.contains("64 KiB limit"),
                "{err}"
            );
        }
        let a = [
            ext(
                b'x',
                &pax(&[("path", &vec![b'p'; (MAX_NAME + 1) as usize])]),
            ),
            hdr(b"f", b'0', 0, b""),
            END.to_vec(),
        ]
        .concat();
        let err = entries(&a).unwrap_err().to_string();
        assert!(err.contains("64 KiB limit"), "{err}");
    }

    fn sparse10(map_text: impl Iterator<Item = Vec<u8>>, stored: u64) -> impl Read {
        let head = [
            ext(
                b'x',
                &pax(&[
                    ("GNU.sparse.major", b"1"),
                    ("GNU.sparse.minor", b"0"),
                    ("GNU.sparse.name", b"sparse"),
                    ("GNU.sparse.realsize", b"1099511627776"),
                ]),
            ),
            hdr(b"GNUSparseFile.0/sparse", b'0', stored, b""),
        ]
        .concat();
        pieces(std::iter::once(head).chain(map_text))
    }

    /// pax sparse 1.0 maps are parsed in linear time (the old parser re-read the whole map for
    /// every block: quadratic) and capped in segments.
    #[test]
    fn sparse_1_0_map_is_linear_and_capped() {
        // 2^20 - 1 segments declared, 500,000 given, then the input ends: a clean error, fast.
        let err = bounded(30, || {
            let lines = std::iter::once(b"1048575\n".to_vec()).chain((0..500u64).map(|k| {
                (0..1000u64)
                    .flat_map(|i| format!("{}\n1\n", (k * 1000 + i) * 2).into_bytes())
                    .collect()
            }));
            list_all(sparse10(lines, 1 << 40)).unwrap_err()
        });
        assert!(err.to_string().contains("truncated"), "{err}");
        // A count over the cap is refused at once.
        let err = list_all(sparse10(
            std::iter::once(padded(b"1048577\n".to_vec())),
            1 << 40,
        ))
        .unwrap_err();
        assert!(err.to_string().contains("segments"), "{err}");
        // A map that runs past the entry's stored size.
        let mut text = b"1000\n".to_vec();
        text.extend(b"1\n".repeat(300));
        text.truncate(512);
        let err = list_all(sparse10(std::iter::once(text), 512)).unwrap_err();
        assert!(err.to_string().contains("past"), "{err}");
    }

    /// Old GNU sparse headers with endless extension blocks stop at the segment cap.
    #[test]
    fn old_sparse_extension_blocks_are_capped() {
        let err = bounded(60, || {
            let mut h = hdr(b"s", b'S', 0, b"");
            for i in 0..4 {
                let at = 386 + i * 24;
                h[at..at + 12].copy_from_slice(format!("{:011o}\0", i * 2).as_bytes());
                h[at + 12..at + 24].copy_from_slice(b"00000000001\0");
            }
            h[482] = 1;
            h[483..495].copy_from_slice(b"77777777777\0");
            seal(&mut h);
            let mut ext = vec![0u8; 512];
            for i in 0..21 {
                ext[i * 24..i * 24 + 12].copy_from_slice(b"00000000002\0");
                ext[i * 24 + 12..i * 24 + 24].copy_from_slice(b"00000000001\0");
            }
            ext[504] = 1;
            let blocks = std::iter::repeat_n(ext, MAX_SPARSE_SEGMENTS / 21 + 2);
            list_all(pieces(std::iter::once(h).chain(blocks))).unwrap_err()
        });
        assert!(err.to_string().contains("segments"), "{err}");
    }

    /// Sparse maps out of order, overlapping or past the size are refused; a good one expands.
    #[test]
    fn sparse_maps_are_checked() {
        let entry = |map: &[u8], real: &[u8], data: &[u8]| {
            [
                ext(
                    b'x',
                    &pax(&[
                        ("GNU.sparse.major", b"0"),
                        ("GNU.sparse.minor", b"1"),
                        ("GNU.sparse.map", map),
                        ("GNU.sparse.size", real),
                        ("GNU.sparse.name", b"s"),
                    ]),
                ),
                hdr(b"GNUSparseFile.1/s", b'0', data.len() as u64, b""),
                padded(data.to_vec()),
                END.to_vec(),
            ]
            .concat()
        };
        let a = entry(b"2,2,6,1", b"8", b"abc");
        let mut r = TarReader::new(&a[..]);
        let e = r.next_entry().unwrap().unwrap();
        assert_eq!((e.path.as_slice(), e.size), (&b"s"[..], 8));
        let mut out = Vec::new();
        r.data().read_to_end(&mut out).unwrap();
        assert_eq!(out, b"\0\0ab\0\0c\0");
        for (map, real) in [
            (&b"6,1,2,2"[..], &b"8"[..]),
            (b"2,2,3,1", b"8"),
            (b"2,2,7,1", b"7"),
            (b"18446744073709551615,1", b"8"),
            (b"2,2,6", b"8"),
            (b"0,9", b"9"),
        ] {
            assert!(
                entries(&entry(map, real, b"abc")).is_err(),
                "{}",
                String::from_utf8_lossy(map)
            );
        }
    }

    /// Reading a tar is linear: a bounded time for a few hundred thousand small entries.
    #[test]
    fn many_entries_are_fast() {
        let n = bounded(60, || {
            let body = (0..200_000u32).map(|i| hdr(format!("f{i}").as_bytes(), b'0', 0, b""));
            list_all(pieces(body.chain(std::iter::once(END.to_vec()))))
                .unwrap()
                .len()
        });
        assert_eq!(n, 200_000);
    }
}
