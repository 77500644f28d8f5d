//! Reading archives back: format detection on a stream and a listing of every entry.

use std::io::{self, BufRead, Read};

use serde::Serialize;

use crate::error::{Error, Result};
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
    /// The name stored in the archive (lossy UTF-8 for display; see `raw_path`).
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
}

/// Reads an archive from `input` (tar, tar.gz, tar.zst; the format is detected from the bytes) and
/// calls `each` for every entry in order. The whole input is read, so compressed streams' checksums
/// are verified; an error from `each` stops the listing and is returned.
pub fn list<R: Read>(input: R, mut each: impl FnMut(&EntryInfo) -> Result<()>) -> Result<u64> {
    let tar = open_tar(input)?;
    let mut archive = tar::Archive::new(tar);
    let mut count = 0u64;
    let entries = archive.entries().map_err(Error::Input)?;
    for entry in entries {
        let entry = entry.map_err(|e| bad_tar(count, e))?;
        let info = info(&entry).map_err(|e| bad_tar(count, e))?;
        each(&info)?;
        count += 1;
    }
    // Read to the end so that a compressed stream's checksum and trailer are verified too.
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(|e| bad_tar(count, e))?;
    Ok(count)
}

fn bad_tar(after: u64, e: io::Error) -> Error {
    if e.kind() == io::ErrorKind::BrokenPipe {
        return Error::Output(e);
    }
    Error::BadArchive(format!("damaged archive after {after} entries: {e}"))
}

fn info<R: Read>(entry: &tar::Entry<'_, R>) -> io::Result<EntryInfo> {
    let h = entry.header();
    let raw_path = entry.path_bytes().into_owned();
    let kind = match h.entry_type() {
        tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
            EntryKind::File
        }
        tar::EntryType::Directory => EntryKind::Dir,
        tar::EntryType::Symlink => EntryKind::Symlink,
        tar::EntryType::Link => EntryKind::Hardlink,
        tar::EntryType::Char => EntryKind::Char,
        tar::EntryType::Block => EntryKind::Block,
        tar::EntryType::Fifo => EntryKind::Fifo,
        _ => EntryKind::Other,
    };
    let link_target = entry
        .link_name_bytes()
        .filter(|_| matches!(kind, EntryKind::Symlink | EntryKind::Hardlink))
        .map(|b| String::from_utf8_lossy(&b).into_owned());
    Ok(EntryInfo {
        path: String::from_utf8_lossy(&raw_path).into_owned(),
        raw_path,
        kind,
        size: entry.size(),
        mode: h.mode().unwrap_or(0) & 0o7777,
        mtime: h.mtime().map(|t| t as i64).unwrap_or(0),
        uid: h.uid().unwrap_or(0),
        gid: h.gid().unwrap_or(0),
        user: h
            .username()
            .ok()
            .flatten()
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
        group: h
            .groupname()
            .ok()
            .flatten()
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
        link_target,
    })
}

/// Detects the format and returns a reader of the tar stream inside.
pub(crate) fn open_tar<'a, R: Read + 'a>(input: R) -> Result<Box<dyn Read + 'a>> {
    let (kind, input) = sniff(input)?;
    match kind {
        // Empty input is an empty archive, as GNU tar and bsdtar read it.
        None | Some(Detected::Tar) => Ok(input),
        Some(Detected::Gzip) => {
            let (inner, r) = sniff(GzMembers::new(input))?;
            expect_tar(inner, "gzip")?;
            Ok(r)
        }
        Some(Detected::Zstd) => {
            let dec = zstd::stream::read::Decoder::new(input).map_err(Error::Input)?;
            let (inner, r) = sniff(dec)?;
            expect_tar(inner, "zstd")?;
            Ok(r)
        }
        Some(Detected::Zip) => Err(Error::BadArchive(
            "this is a zip archive; zip reading is not available in this build yet".into(),
        )),
    }
}

fn expect_tar(kind: Option<Detected>, outer: &str) -> Result<()> {
    if matches!(kind, Some(Detected::Tar) | None) {
        Ok(())
    } else {
        Err(Error::BadArchive(format!(
            "the {outer} stream does not contain a tar archive"
        )))
    }
}

/// Reads the first bytes to recognise the format, then hands back a reader that replays them.
/// `None`: the input is empty.
fn sniff<'a, R: Read + 'a>(mut input: R) -> Result<(Option<Detected>, Box<dyn Read + 'a>)> {
    let mut head = Vec::with_capacity(512);
    (&mut input)
        .take(512)
        .read_to_end(&mut head)
        .map_err(|e| Error::BadArchive(format!("cannot read the archive: {e}")))?;
    if head.is_empty() {
        return Ok((None, Box::new(io::empty())));
    }
    let kind = detect(&head).ok_or_else(|| {
        Error::BadArchive(
            "not an archive this tool reads (expected tar, tar.gz, tar.zst or zip)".into(),
        )
    })?;
    Ok((Some(kind), Box::new(io::Cursor::new(head).chain(input))))
}

/// gzip members one after another (`cat a.gz b.gz` is one valid gzip file), each checked against its
/// CRC and length. Bytes after the last member that do not start a new member (tape padding, junk)
/// end the stream, as gzip and bsdtar treat them.
struct GzMembers<'a> {
    current: Option<flate2::bufread::GzDecoder<Box<dyn io::BufRead + 'a>>>,
}

impl<'a> GzMembers<'a> {
    fn new<R: Read + 'a>(input: R) -> Self {
        let buffered: Box<dyn io::BufRead + 'a> =
            Box::new(io::BufReader::with_capacity(256 << 10, input));
        GzMembers {
            current: Some(flate2::bufread::GzDecoder::new(buffered)),
        }
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
            // This member ended, its CRC and size checked. Another follows only if its magic does.
            let mut rest = self.current.take().expect("checked above").into_inner();
            let next = rest.fill_buf()?;
            match next {
                [0x1f, 0x8b, ..] => self.current = Some(flate2::bufread::GzDecoder::new(rest)),
                [0x1f] => {
                    // The buffer ends between the two magic bytes: look at the next one.
                    rest.consume(1);
                    if rest.fill_buf()?.first() == Some(&0x8b) {
                        let joined: Box<dyn io::BufRead + '_> =
                            Box::new(io::Cursor::new([0x1f]).chain(rest));
                        self.current = Some(flate2::bufread::GzDecoder::new(joined));
                    }
                }
                _ => {}
            }
        }
    }
}
