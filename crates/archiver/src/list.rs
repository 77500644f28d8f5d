//! Reading archives back: format detection on a stream and a listing of every entry.

use std::io::{self, Read};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::format::zstd_frames::ParZstdReader;
use crate::format::{detect, Detected};

/// The type of an entry in an archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A hard link to an earlier entry.
    Hardlink,
    /// A character device.
    Char,
    /// A block device.
    Block,
    /// A FIFO.
    Fifo,
    /// Anything else (sparse, contiguous, vendor types...).
    Other,
}

impl EntryKind {
    /// The letter `ls -l` and `tar tv` show.
    pub fn letter(self) -> char {
        match self {
            EntryKind::File => '-',
            EntryKind::Dir => 'd',
            EntryKind::Symlink => 'l',
            EntryKind::Hardlink => 'h',
            EntryKind::Char => 'c',
            EntryKind::Block => 'b',
            EntryKind::Fifo => 'p',
            EntryKind::Other => '?',
        }
    }
}

/// One entry of an archive, as [`list`] reports it.
#[derive(Debug, Clone, Serialize)]
pub struct EntryInfo {
    /// The name stored in the archive, for display: bytes that are not UTF-8 appear as `\ooo`
    /// escapes (see `raw_path` for the bytes).
    pub path: String,
    /// The stored name's raw bytes.
    #[serde(skip)]
    pub raw_path: Vec<u8>,
    /// Entry type.
    #[serde(rename = "type")]
    pub kind: EntryKind,
    /// Data size in bytes.
    pub size: u64,
    /// Permission bits.
    pub mode: u32,
    /// Modification time, seconds since the Unix epoch.
    pub mtime: i64,
    /// Owner id.
    pub uid: u64,
    /// Group id.
    pub gid: u64,
    /// Owner name, if stored.
    pub user: Option<String>,
    /// Group name, if stored.
    pub group: Option<String>,
    /// Target of a symbolic or hard link.
    pub link_target: Option<String>,
    /// The link target's raw bytes.
    #[serde(skip)]
    pub raw_link_target: Option<Vec<u8>>,
}

/// Reads an archive from `input` (tar, tar.gz, tar.zst or zip; the format is detected from the bytes)
/// and calls `each` for every entry in order. The whole input is read, so compressed streams'
/// checksums are verified; an error from `each` stops the listing and is returned. A zip, whose
/// directory is at its end, is first copied to a temporary file; use [`list_path`] for files.
pub fn list<R: Read>(input: R, each: impl FnMut(&EntryInfo) -> Result<()>) -> Result<u64> {
    list_with(input, DecodeThreads::SEQUENTIAL, each)
}

/// Like [`list`], for a reader over a regular file (stdin redirected from one, say): such a read
/// never waits on a producer, so our tar.gz and tar.zst are decompressed on all cores, as by
/// [`list_path`]. Over a pipe, use [`list`]: it passes on entries as the bytes arrive.
pub fn list_from_file<R: Read>(
    input: R,
    each: impl FnMut(&EntryInfo) -> Result<()>,
) -> Result<u64> {
    list_with(input, DecodeThreads::all_cores(), each)
}

/// `threads`: see [`DecodeThreads`]; parallel only for inputs that never wait on a producer.
fn list_with<R: Read>(
    input: R,
    threads: DecodeThreads,
    each: impl FnMut(&EntryInfo) -> Result<()>,
) -> Result<u64> {
    match open_tar(input, threads)? {
        Opened::Tar(tar, _) => list_tar(tar, each),
        Opened::Zip(mut head) => {
            let mut spool = tempfile::tempfile().map_err(Error::Input)?;
            io::copy(&mut head, &mut spool).map_err(Error::Input)?;
            list_zip(spool, each)
        }
    }
}

/// Like [`list`], for an archive in a file (zip is read in place).
pub fn list_path(
    path: &std::path::Path,
    each: impl FnMut(&EntryInfo) -> Result<()>,
) -> Result<u64> {
    let file = std::fs::File::open(path).map_err(|e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    if crate::format::zip_read::is_zip(&file, &read_head(&file)?) {
        return list_zip(file, each);
    }
    let file = std::fs::File::open(path).map_err(Error::Input)?;
    list_from_file(io::BufReader::with_capacity(256 << 10, file), each)
}

/// Whether the archive file at `path` is a zip: by its first bytes, or (a self-extractor, a
/// padded zip) by its end record when its first bytes are no format we know. `unpack`, `verify`
/// and `list` read such a file as a zip, in place.
pub fn is_zip_file(path: &std::path::Path) -> bool {
    let Ok(file) = std::fs::File::open(path) else {
        return false;
    };
    read_head(&file).is_ok_and(|head| crate::format::zip_read::is_zip(&file, &head))
}

/// Up to the first 512 bytes of an archive file, to tell its format.
pub(crate) fn read_head(file: &std::fs::File) -> Result<Vec<u8>> {
    let mut head = vec![0u8; 512];
    let mut len = 0;
    while len < head.len() {
        match (&*file).read(&mut head[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::Input(e)),
        }
    }
    head.truncate(len);
    Ok(head)
}

/// Lists a zip through our own directory reader, so `list` sees exactly the names, types and checks
/// that `unpack` applies.
fn list_zip(file: std::fs::File, mut each: impl FnMut(&EntryInfo) -> Result<()>) -> Result<u64> {
    let entries = crate::format::zip_read::read_directory(&file)?;
    let mut count = 0;
    for e in &entries {
        let kind = if e.is_dir() {
            EntryKind::Dir
        } else if e.is_symlink() {
            EntryKind::Symlink
        } else {
            EntryKind::File
        };
        let raw_link_target = if kind == EntryKind::Symlink && e.usize <= 4096 {
            let mut t = Vec::new();
            crate::format::zip_read::open_entry(&file, e)?
                .read_to_end(&mut t)
                .map_err(|err| Error::Entry {
                    entry: e.name_lossy(),
                    reason: err.to_string(),
                })?;
            Some(t)
        } else {
            None
        };
        let link_target = raw_link_target.as_deref().map(display_name);
        let info = EntryInfo {
            path: display_name(&e.name),
            raw_path: e.name.clone(),
            kind,
            size: e.usize,
            mode: e
                .unix_mode
                .map_or(if kind == EntryKind::Dir { 0o755 } else { 0o644 }, |m| {
                    m & 0o7777
                }),
            mtime: e.mtime,
            uid: 0,
            gid: 0,
            user: None,
            group: None,
            link_target,
            raw_link_target,
        };
        each(&info)?;
        count += 1;
    }
    Ok(count)
}

fn list_tar<R: Read>(tar: R, mut each: impl FnMut(&EntryInfo) -> Result<()>) -> Result<u64> {
    let mut archive = crate::format::tar_read::TarReader::new(tar);
    let mut count = 0u64;
    while let Some(e) = archive.next_entry().map_err(|e| bad_tar(count, e))? {
        let kind = match e.typeflag {
            b'0' | 0 if e.path.ends_with(b"/") => EntryKind::Dir,
            b'0' | 0 | b'7' => EntryKind::File,
            b'1' => EntryKind::Hardlink,
            b'2' => EntryKind::Symlink,
            b'3' => EntryKind::Char,
            b'4' => EntryKind::Block,
            b'5' => EntryKind::Dir,
            b'6' => EntryKind::Fifo,
            _ => EntryKind::Other,
        };
        let raw_link_target =
            matches!(kind, EntryKind::Symlink | EntryKind::Hardlink).then(|| e.link.clone());
        let link_target = raw_link_target.as_deref().map(display_name);
        let info = EntryInfo {
            path: display_name(&e.path),
            raw_path: e.path,
            kind,
            size: e.size,
            mode: e.mode & 0o7777,
            mtime: e.mtime_secs,
            uid: e.uid,
            gid: e.gid,
            user: e.uname,
            group: e.gname,
            link_target,
            raw_link_target,
        };
        each(&info)?;
        count += 1;
    }
    // Read to the end so that a compressed stream's checksum and trailer are verified too.
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(|e| bad_tar(count, e))?;
    Ok(count)
}

/// Bytes of a name shown in a message: PATH_MAX, past which no name can be created.
pub(crate) const REPORTED_NAME: usize = 4096;

/// At most the first [`REPORTED_NAME`] bytes of `raw` (a name in a message), and how long it is
/// when cut: a 20 KB name in an archive must not become a 20 KB line.
pub(crate) fn cut_name(raw: &[u8]) -> (&[u8], Option<usize>) {
    if raw.len() <= REPORTED_NAME {
        (raw, None)
    } else {
        (&raw[..REPORTED_NAME], Some(raw.len()))
    }
}

/// A path for messages: [`escape_name`] of its bytes, never raw control characters.
pub(crate) fn escape_path(p: &std::path::Path) -> String {
    escape_name(&crate::manifest::path_bytes(p))
}

/// A name made safe to print on a terminal or in a line-based listing, the way GNU tar quotes names
/// (its default `escape` style): a backslash is doubled; BEL, BS, TAB, LF, VT, FF and CR become `\a`
/// `\b` `\t` `\n` `\v` `\f` `\r`; every other C0 control, DEL, C1 control (U+0080-U+009F) and byte
/// that is not UTF-8 becomes `\ooo` octal. So a name can neither move the cursor, change colours nor
/// forge a line, and two different names never print alike.
pub fn escape_name(raw: &[u8]) -> String {
    let mut s = String::with_capacity(raw.len());
    for chunk in raw.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => s.push_str("\\\\"),
                '\x07' => s.push_str("\\a"),
                '\x08' => s.push_str("\\b"),
                '\t' => s.push_str("\\t"),
                '\n' => s.push_str("\\n"),
                '\x0b' => s.push_str("\\v"),
                '\x0c' => s.push_str("\\f"),
                '\r' => s.push_str("\\r"),
                c if c.is_control() => {
                    let mut buf = [0u8; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        s.push_str(&format!("\\{b:03o}"));
                    }
                }
                c => s.push(c),
            }
        }
        for b in chunk.invalid() {
            s.push_str(&format!("\\{b:03o}"));
        }
    }
    s
}

/// A name for display: UTF-8 as is, other bytes as `\ooo` octal escapes (as bsdtar and GNU tar
/// print names in other charsets), so distinct names never look alike.
pub(crate) fn display_name(raw: &[u8]) -> String {
    let mut s = String::with_capacity(raw.len());
    for chunk in raw.utf8_chunks() {
        s.push_str(chunk.valid());
        for b in chunk.invalid() {
            s.push_str(&format!("\\{b:03o}"));
        }
    }
    s
}

fn bad_tar(after: u64, e: io::Error) -> Error {
    if e.kind() == io::ErrorKind::BrokenPipe {
        return Error::Output(e);
    }
    damaged(after, e)
}

/// A read of the archive that failed after `after` entries, with a hint where the decoder's own
/// words need one.
pub(crate) fn damaged(after: u64, e: io::Error) -> Error {
    Error::BadArchive(format!(
        "damaged archive after {after} entries: {e}{}",
        decoder_hint(&e)
    ))
}

/// What to add to a decoder's own words, where they need it.
fn decoder_hint(e: &io::Error) -> &'static str {
    if e.to_string().contains("Frame requires too much memory") {
        " (a zstd window over 128 MiB, made with `zstd --long` above 27: not read, as `zstd -d` \
         does not read it without --long or --memory)"
    } else {
        ""
    }
}

/// Threads that decompress our own tar.gz (independent pieces) and tar.zst (frames); 0 means
/// sequentially, on the thread that reads (the streaming decoder, decoding into the reader's
/// buffers). Parallel decoding reads a whole piece or frame before any of it comes out, so it is
/// used only for inputs that never wait on a producer (files): from a pipe whose producer stalls,
/// the bytes already received (and any damage in them) must be acted on at once. Measured on 2 cores, unpack of the CPython tree (`docs/BENCHMARKS.md`): a pool of one
/// inflater beat sequential gzip by 6%, while any zstd pool lost 15% to sequential zstd, whose
/// output stays in cache (zstd decodes ~1 GB/s; the pool's 4 MiB frames go through memory).
#[derive(Debug, Clone, Copy)]
pub(crate) struct DecodeThreads {
    pub gzip: usize,
    pub zstd: usize,
}

impl DecodeThreads {
    /// Decode on the reading thread, as the bytes arrive.
    pub(crate) const SEQUENTIAL: DecodeThreads = DecodeThreads { gzip: 0, zstd: 0 };

    /// For unpack and verify with `jobs` writers: the cores the reader and the writers leave.
    pub(crate) fn beside_writers(jobs: usize) -> Self {
        let cores = crate::default_jobs().min(jobs.max(1));
        let zstd = cores.saturating_sub(2).min(Self::MAX);
        DecodeThreads {
            gzip: cores.saturating_sub(1).min(Self::MAX),
            // A pool of one only adds a copy; two or more decode in parallel.
            zstd: if zstd >= 2 { zstd } else { 0 },
        }
    }

    /// At most this many: 4 threads decode gzip at ~1.5 GB/s and zstd at ~4 GB/s, more than a
    /// disk takes, and each one more holds another piece or frame (up to 8 MiB) in memory.
    pub(crate) const MAX: usize = 4;

    /// For `list` of a file: listing itself is light, so every core may decompress.
    pub(crate) fn all_cores() -> Self {
        let cores = crate::default_jobs().min(Self::MAX);
        DecodeThreads {
            gzip: cores,
            zstd: cores,
        }
    }
}

/// An input after format detection.
pub(crate) enum Opened<'a> {
    /// The tar stream (decompressed), and whether it was stored plain (no codec in between).
    Tar(Box<dyn Read + 'a>, bool),
    /// A zip archive: the whole input, from its first byte.
    Zip(Box<dyn Read + 'a>),
}

/// Detects the format and returns a reader of the tar stream inside, or the zip input.
/// Our tar.gz and tar.zst are decompressed on `threads` (0: sequentially, on the reading thread).
pub(crate) fn open_tar<'a, R: Read + 'a>(input: R, threads: DecodeThreads) -> Result<Opened<'a>> {
    let (kind, input) = sniff(input)?;
    match kind {
        // Even an archive of no entries has its end-of-archive blocks: no bytes at all is a lost
        // or truncated input (GNU tar also refuses it), never an empty success.
        None => Err(Error::BadArchive("empty input: not an archive".into())),
        Some(Detected::Tar) => Ok(Opened::Tar(input, true)),
        Some(Detected::Gzip) => {
            let gz = crate::format::gzip_read::open(input, threads.gzip).map_err(Error::Input)?;
            let (inner, r) = sniff(gz)?;
            expect_tar(inner, "gzip")?;
            Ok(Opened::Tar(r, false))
        }
        Some(Detected::Zstd) => {
            let dec: Box<dyn Read> = if threads.zstd == 0 {
                Box::new(zstd::stream::read::Decoder::new(input).map_err(Error::Input)?)
            } else {
                Box::new(ParZstdReader::new(input, threads.zstd).map_err(Error::Thread)?)
            };
            let (inner, r) = sniff(dec)?;
            expect_tar(inner, "zstd")?;
            Ok(Opened::Tar(r, false))
        }
        Some(Detected::Zip) => Ok(Opened::Zip(input)),
    }
}

fn expect_tar(kind: Option<Detected>, outer: &str) -> Result<()> {
    if kind.is_none() {
        Err(Error::BadArchive(format!(
            "the {outer} stream is empty: no tar archive inside"
        )))
    } else if kind == Some(Detected::Tar) {
        Ok(())
    } else {
        Err(Error::BadArchive(format!(
            "the {outer} stream does not contain a tar archive"
        )))
    }
}

/// Reads the first bytes to recognise the format, then hands back a reader that replays them.
/// An empty input is an error. Reads no more than it needs to decide: a compressed or zip input
/// is known by its first 4 bytes, so a short archive from a producer that keeps the pipe open
/// (and sends nothing more) is not kept waiting for 512 bytes that never come.
fn sniff<'a, R: Read + 'a>(mut input: R) -> Result<(Option<Detected>, Box<dyn Read + 'a>)> {
    let mut head = vec![0u8; 512];
    let mut len = 0;
    while len < head.len() {
        match input.read(&mut head[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(Error::BadArchive(format!(
                    "cannot read the archive: {e}{}",
                    decoder_hint(&e)
                )))
            }
        }
        if len >= 4 && matches!(detect(&head[..len]), Some(d) if d != Detected::Tar) {
            break;
        }
    }
    head.truncate(len);
    if head.is_empty() {
        // Never an empty archive: a producer that failed (`archiver pack nosuch | archiver
        // unpack`) or a lost file must not pass as success.
        return Err(Error::BadArchive(
            "empty input (0 bytes): not an archive; did the command that produced it fail?".into(),
        ));
    }
    let kind = detect(&head).ok_or_else(|| {
        Error::BadArchive(
            "not an archive this tool reads (expected tar, tar.gz, tar.zst or zip)".into(),
        )
    })?;
    Ok((Some(kind), Box::new(io::Cursor::new(head).chain(input))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_escaped_like_gnu_tar() {
        assert_eq!(escape_name(b"plain/\xc3\xbc.txt"), "plain/\u{fc}.txt");
        assert_eq!(escape_name(b"a\nb\rc\td"), "a\\nb\\rc\\td");
        assert_eq!(escape_name(b"\x1b[2Jx\x07"), "\\033[2Jx\\a");
        assert_eq!(escape_name(b"back\\slash"), "back\\\\slash");
        assert_eq!(escape_name(b"del\x7f"), "del\\177");
        assert_eq!(escape_name("c1\u{9b}".as_bytes()), "c1\\302\\233");
        assert_eq!(escape_name(b"bad\xff"), "bad\\377");
    }
}
