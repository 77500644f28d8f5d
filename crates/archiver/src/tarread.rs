//! Our tar reader: streaming, tolerant of what real producers write, strict about what would
//! corrupt data.
//!
//! Reads v7, ustar, GNU and pax archives: GNU long names and links (`L`/`K`, the last of redundant
//! ones wins), pax local and global headers (path, linkpath, size, mtime with fractions, uid, gid,
//! uname, gname), base-256 and blank numeric fields, headers checksummed signed or unsigned, link
//! entries that carry a size but no data (old tars), volume labels, and GNU sparse files in every
//! format GNU tar writes (old `S` headers, pax 0.0, 0.1 and 1.0), expanded with their holes as zeros.
//! The `tar` crate, used before, rejected some of these and extracted pax sparse files wrongly.

use std::io::{self, Read};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// One entry's header, with every extension applied.
#[derive(Debug, Clone)]
pub(crate) struct TarEntry {
    pub path: Vec<u8>,
    pub link: Vec<u8>,
    pub typeflag: u8,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: SystemTime,
    pub mtime_secs: i64,
    pub uname: Option<String>,
    pub gname: Option<String>,
    /// Size of the file as extracted (holes included for sparse files).
    pub size: u64,
    /// For sparse files: (offset, length) of each data segment, in order.
    sparse: Option<Vec<(u64, u64)>>,
}

impl TarEntry {
    pub fn is_file(&self) -> bool {
        matches!(self.typeflag, b'0' | 0 | b'7' | b'S')
    }
}

fn err(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Reads entries one by one; each entry's data through [`TarReader::data`].
pub(crate) struct TarReader<R: Read> {
    r: R,
    /// Data (plus padding) of the current entry not yet consumed.
    skip: u64,
    globals: Vec<(Vec<u8>, Vec<u8>)>,
    done: bool,
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
            globals: Vec::new(),
            done: false,
            current: None,
            left: 0,
        }
    }

    /// The underlying reader, positioned after the last block read.
    pub fn into_inner(self) -> R {
        self.r
    }

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
            512 => Ok(true),
            _ => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "archive ends inside a header block",
            )),
        }
    }

    fn discard(&mut self, mut n: u64) -> io::Result<()> {
        let copied = io::copy(&mut (&mut self.r).take(n), &mut io::sink())?;
        n -= copied;
        if n > 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "archive ends inside an entry's data",
            ));
        }
        Ok(())
    }

    fn read_exact_vec(&mut self, n: u64) -> io::Result<Vec<u8>> {
        if n > 64 << 20 {
            return Err(err(format!("extension header of {n} bytes is too large")));
        }
        let mut v = vec![0u8; n as usize];
        self.r.read_exact(&mut v).map_err(|_| {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "archive ends inside an extension header",
            )
        })?;
        self.discard(pad(n))?;
        Ok(v)
    }

    /// The next entry, or `None` at the end of the archive.
    pub fn next_entry(&mut self) -> io::Result<Option<TarEntry>> {
        // Finish the previous entry's data.
        let rest = self.skip + self.left;
        self.skip = 0;
        self.left = 0;
        self.current = None;
        self.discard(rest)?;
        if self.done {
            return Ok(None);
        }
        let mut long_name: Option<Vec<u8>> = None;
        let mut long_link: Option<Vec<u8>> = None;
        let mut pax: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut block = [0u8; 512];
        loop {
            if !self.read_block(&mut block)? {
                self.done = true;
                return Ok(None);
            }
            if block.iter().all(|&b| b == 0) {
                // End of archive (one zero block is enough; GNU tar warns about a lone one).
                self.done = true;
                return Ok(None);
            }
            if !checksum_ok(&block) {
                return Err(err(
                    "header checksum mismatch: damaged archive or not a tar",
                ));
            }
            let typeflag = block[156];
            let size = number(&block[124..136])?;
            match typeflag {
                b'L' => long_name = Some(trim_nul(self.read_exact_vec(size)?)),
                b'K' => long_link = Some(trim_nul(self.read_exact_vec(size)?)),
                b'x' => pax.extend(parse_pax(&self.read_exact_vec(size)?)?),
                b'g' => {
                    let g = parse_pax(&self.read_exact_vec(size)?)?;
                    self.globals.extend(g);
                }
                b'V' | b'N' => self.discard(size + pad(size))?,
                _ => break,
            }
        }
        let typeflag = block[156];
        let ustar = &block[257..263] == b"ustar\0";
        let gnu = &block[257..263] == b"ustar ";
        let mut path = match long_name {
            Some(n) => n,
            None => {
                let name = trim_nul(block[..100].to_vec());
                let prefix = if ustar {
                    trim_nul(block[345..500].to_vec())
                } else {
                    Vec::new()
                };
                if prefix.is_empty() {
                    name
                } else {
                    [prefix, b"/".to_vec(), name].concat()
                }
            }
        };
        let mut link = long_link.unwrap_or_else(|| trim_nul(block[157..257].to_vec()));
        let mut size = number(&block[124..136])?;
        let mut mtime_secs = signed_number(&block[136..148]).unwrap_or(0);
        let mut mtime = unix_time(mtime_secs, 0);
        let mut uid = number(&block[108..116]).unwrap_or(0);
        let mut gid = number(&block[116..124]).unwrap_or(0);
        let mode = number(&block[100..108]).unwrap_or(0o644) as u32;
        let text = |b: &[u8]| {
            Some(String::from_utf8_lossy(&trim_nul(b.to_vec())).into_owned())
                .filter(|s| !s.is_empty())
        };
        let mut uname = if ustar || gnu {
            text(&block[265..297])
        } else {
            None
        };
        let mut gname = if ustar || gnu {
            text(&block[297..329])
        } else {
            None
        };

        // Old GNU sparse: the map is in the header (and extension blocks).
        let mut sparse = None;
        let mut real_size = None;
        if typeflag == b'S' && gnu {
            let mut map = read_sparse_slots(&block[386..482]);
            let mut extended = block[482] != 0;
            real_size = Some(number(&block[483..495])?);
            while extended {
                let mut ext = [0u8; 512];
                if !self.read_block(&mut ext)? {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "archive ends inside a sparse map",
                    ));
                }
                map.extend(read_sparse_slots(&ext[..504]));
                extended = ext[504] != 0;
            }
            sparse = Some(map);
        }

        // pax records: globals first, then this entry's own.
        let mut sparse_major = None;
        let mut sparse_offsets: Vec<u64> = Vec::new();
        let mut sparse_lengths: Vec<u64> = Vec::new();
        for (k, v) in self.globals.iter().chain(pax.iter()) {
            let val = || String::from_utf8_lossy(v).trim().to_string();
            match k.as_slice() {
                b"path" => path = v.clone(),
                b"linkpath" => link = v.clone(),
                b"size" => size = val().parse().map_err(|_| err("bad pax size"))?,
                b"mtime" => {
                    if let Some((s, t)) = parse_time(&val()) {
                        mtime_secs = s;
                        mtime = t;
                    }
                }
                b"uid" => uid = val().parse().unwrap_or(uid),
                b"gid" => gid = val().parse().unwrap_or(gid),
                b"uname" => uname = Some(val()).filter(|s| !s.is_empty()),
                b"gname" => gname = Some(val()).filter(|s| !s.is_empty()),
                b"GNU.sparse.name" => path = v.clone(),
                b"GNU.sparse.size" | b"GNU.sparse.realsize" => real_size = val().parse().ok(),
                b"GNU.sparse.major" => sparse_major = val().parse::<u32>().ok(),
                b"GNU.sparse.offset" => {
                    sparse_offsets.push(val().parse().map_err(|_| err("bad sparse offset"))?)
                }
                b"GNU.sparse.numbytes" => {
                    sparse_lengths.push(val().parse().map_err(|_| err("bad sparse length"))?)
                }
                b"GNU.sparse.map" => {
                    let nums: Vec<u64> = val()
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(|s| s.parse().map_err(|_| err("bad GNU.sparse.map")))
                        .collect::<io::Result<_>>()?;
                    sparse = Some(
                        nums.chunks(2)
                            .filter(|c| c.len() == 2)
                            .map(|c| (c[0], c[1]))
                            .collect(),
                    );
                }
                _ => {}
            }
        }
        if !sparse_offsets.is_empty() {
            // pax sparse 0.0: repeated offset/numbytes records.
            sparse = Some(sparse_offsets.into_iter().zip(sparse_lengths).collect());
        }
        let stored = size;
        let mut entry_typeflag = typeflag;
        if sparse_major == Some(1) {
            // pax sparse 1.0: the map is at the start of the data, in decimal lines, block-padded.
            let (map, used) = self.read_sparse_v1(stored)?;
            sparse = Some(map);
            self.left = stored - used;
        } else {
            self.left = stored;
        }
        if sparse.is_some() {
            entry_typeflag = b'0';
        }
        // POSIX: symlinks, devices and FIFOs store no data whatever their size field says. Hard links
        // "shall" have size 0, yet old tars put the target's size there and wrote no data (GNU tar
        // and bsdtar read none); only a pax hard link may carry data. Every other type stores
        // `size` bytes, which are skipped if not read.
        let has_data = match typeflag {
            b'2' | b'3' | b'4' | b'6' => false,
            b'1' => !pax.is_empty() && stored > 0,
            _ => true,
        };
        if has_data {
            self.skip = pad(stored);
        } else {
            self.skip = 0;
            self.left = 0;
        }
        if !matches!(entry_typeflag, b'0' | 0 | b'7') {
            size = 0;
        }
        if let Some(map) = &sparse {
            let data: u64 = map.iter().map(|&(_, n)| n).sum();
            if data > self.left {
                return Err(err("sparse map describes more data than the entry stores"));
            }
        }
        let entry = TarEntry {
            path,
            link,
            typeflag: entry_typeflag,
            mode,
            uid,
            gid,
            mtime,
            mtime_secs,
            uname,
            gname,
            size: real_size.filter(|_| sparse.is_some()).unwrap_or(size),
            sparse,
        };
        self.current = Some(entry.clone());
        Ok(Some(entry))
    }

    fn read_sparse_v1(&mut self, stored: u64) -> io::Result<(Vec<(u64, u64)>, u64)> {
        let mut buf = Vec::new();
        let mut block = [0u8; 512];
        let mut lines: Vec<u64> = Vec::new();
        let mut need: Option<usize> = None;
        loop {
            if buf.len() as u64 + 512 > stored {
                return Err(err("sparse map runs past the entry's data"));
            }
            self.r.read_exact(&mut block).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "archive ends inside a sparse map",
                )
            })?;
            buf.extend_from_slice(&block);
            lines.clear();
            // Only lines ended by a newline are complete; the last piece may continue in the next block.
            let complete = buf.iter().filter(|&&b| b == b'\n').count();
            for line in buf.split(|&b| b == b'\n').take(complete) {
                let n = std::str::from_utf8(line)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| err("bad sparse map"))?;
                lines.push(n);
            }
            if need.is_none() && !lines.is_empty() {
                let count = lines[0];
                if count > 1 << 20 {
                    return Err(err("sparse map too large"));
                }
                need = Some(1 + 2 * count as usize);
            }
            if let Some(n) = need {
                if lines.len() >= n {
                    let map = lines[1..n].chunks(2).map(|c| (c[0], c[1])).collect();
                    return Ok((map, buf.len() as u64));
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

/// Reads an entry's data; see [`TarReader::data`].
pub(crate) struct EntryData<'a, R: Read> {
    reader: &'a mut TarReader<R>,
    pos: u64,
    size: u64,
    map: Vec<(u64, u64)>,
    seg: usize,
    sparse: bool,
}

impl<R: Read> Read for EntryData<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.size || buf.is_empty() {
            return Ok(0);
        }
        let max = (self.size - self.pos).min(buf.len() as u64) as usize;
        if !self.sparse {
            let want = max.min(self.reader.left as usize);
            if want == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "archive ends inside an entry's data",
                ));
            }
            let n = self.reader.r.read(&mut buf[..want])?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "archive ends inside an entry's data",
                ));
            }
            self.reader.left -= n as u64;
            self.pos += n as u64;
            return Ok(n);
        }
        // Sparse: zeros up to the next segment, then its data.
        while self.seg < self.map.len() && self.map[self.seg].0 + self.map[self.seg].1 <= self.pos {
            self.seg += 1;
        }
        let (n, from_data) = match self.map.get(self.seg) {
            Some(&(off, _)) if self.pos < off => (((off - self.pos) as usize).min(max), false),
            Some(&(off, len)) => (((off + len - self.pos) as usize).min(max), true),
            None => (max, false),
        };
        if from_data {
            let want = n.min(self.reader.left as usize);
            let got = self.reader.r.read(&mut buf[..want])?;
            if got == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "archive ends inside sparse data",
                ));
            }
            self.reader.left -= got as u64;
            self.pos += got as u64;
            Ok(got)
        } else {
            buf[..n].fill(0);
            self.pos += n as u64;
            Ok(n)
        }
    }
}

fn pad(n: u64) -> u64 {
    (512 - n % 512) % 512
}

fn trim_nul(mut v: Vec<u8>) -> Vec<u8> {
    if let Some(i) = v.iter().position(|&b| b == 0) {
        v.truncate(i);
    }
    v
}

fn checksum_ok(block: &[u8; 512]) -> bool {
    let field = &block[148..156];
    let Ok(stored) = number(field) else {
        return false;
    };
    let mut unsigned: u64 = 0;
    let mut signed: i64 = 0;
    for (i, &b) in block.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += u64::from(b);
        signed += i64::from(b as i8);
    }
    stored == unsigned || stored as i64 == signed
}

/// A numeric field: octal (blank = 0, surrounded by spaces or NULs) or GNU base-256.
fn number(field: &[u8]) -> io::Result<u64> {
    if field.first().is_some_and(|&b| b & 0x80 != 0) {
        if field[0] == 0xff {
            return Err(err("negative number in a tar header"));
        }
        let mut v: u64 = u64::from(field[0] & 0x7f);
        for &b in &field[1..] {
            v = v
                .checked_mul(256)
                .and_then(|v| v.checked_add(u64::from(b)))
                .ok_or_else(|| err("number too large"))?;
        }
        return Ok(v);
    }
    let s: Vec<u8> = field
        .iter()
        .copied()
        .skip_while(|&b| b == b' ' || b == 0)
        .take_while(|&b| b != b' ' && b != 0)
        .collect();
    if s.is_empty() {
        return Ok(0);
    }
    let s = std::str::from_utf8(&s).map_err(|_| err("bad number in a tar header"))?;
    u64::from_str_radix(s, 8).map_err(|_| err(format!("bad number {s:?} in a tar header")))
}

/// Like [`number`], also accepting negative base-256 values (mtimes before 1970).
fn signed_number(field: &[u8]) -> io::Result<i64> {
    if field.first() == Some(&0xff) {
        let mut v: i64 = -1;
        for &b in &field[1..] {
            v = v.checked_mul(256).ok_or_else(|| err("number too large"))? | i64::from(b);
        }
        return Ok(v);
    }
    number(field).map(|v| v.min(i64::MAX as u64) as i64)
}

fn read_sparse_slots(area: &[u8]) -> Vec<(u64, u64)> {
    area.chunks_exact(24)
        .map(|c| (number(&c[..12]).unwrap_or(0), number(&c[12..]).unwrap_or(0)))
        .take_while(|&(o, n)| o != 0 || n != 0)
        .collect()
}

/// pax records: `LEN key=value\n`.
fn parse_pax(data: &[u8]) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        if rest.iter().all(|&b| b == 0) {
            break;
        }
        let sp = rest
            .iter()
            .position(|&b| b == b' ')
            .ok_or_else(|| err("bad pax record"))?;
        let len: usize = std::str::from_utf8(&rest[..sp])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| err("bad pax record length"))?;
        if len <= sp + 1 || len > rest.len() {
            return Err(err("pax record length out of range"));
        }
        let record = &rest[sp + 1..len];
        let record = record.strip_suffix(b"\n").unwrap_or(record);
        let eq = record
            .iter()
            .position(|&b| b == b'=')
            .ok_or_else(|| err("pax record without '='"))?;
        out.push((record[..eq].to_vec(), record[eq + 1..].to_vec()));
        rest = &rest[len..];
    }
    Ok(out)
}

fn parse_time(s: &str) -> Option<(i64, SystemTime)> {
    let (neg, digits) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let (secs, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let secs: u64 = secs.parse().ok()?;
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
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, nanos)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(number(b"0000644\0").unwrap(), 0o644);
        assert_eq!(number(b"   \0    ").unwrap(), 0);
        assert_eq!(number(b" 17 \0").unwrap(), 0o17);
        assert_eq!(
            number(&[0x80, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 1]).unwrap(),
            (2 << 32) + 1
        );
        assert_eq!(signed_number(&[0xff; 12]).unwrap(), -1);
    }

    #[test]
    fn pax_records() {
        let r = parse_pax(b"18 path=a/b/c.txt\n12 uid=1000\n").unwrap();
        assert_eq!(r[0], (b"path".to_vec(), b"a/b/c.txt".to_vec()));
        assert_eq!(r[1].1, b"1000");
        assert!(parse_pax(b"99 path=x\n").is_err());
    }
}
