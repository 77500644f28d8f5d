//! Archive formats: which ones we write, how we recognise them from their first bytes, and the
//! compression layer between the tar stream and the output.

mod blocks;
mod deflate;
pub mod gzip;
pub mod gzip_read;
pub(crate) mod pool;
pub(crate) mod tar;
pub(crate) mod tar_read;
pub mod zip;
pub(crate) mod zip_read;
pub mod zstd_frames;

use std::fmt;
use std::io::{self, Write};
use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, Instant};

use crate::error::Error;

/// An archive format `pack` can write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[non_exhaustive]
pub enum Format {
    /// Plain tar (GNU format; long names as GNU `L`/`K` entries).
    Tar,
    /// tar compressed with gzip (parallel, deterministic blocks).
    TarGz,
    /// tar compressed with zstd: independent 4 MiB frames, compressed and decompressed in
    /// parallel, with a seek table.
    TarZst,
    /// zip: entries compressed by the workers (deflate by default), ZIP64 when needed.
    Zip,
}

impl Format {
    /// Every format, in the order help texts list them.
    pub const ALL: [Format; 4] = [Format::Tar, Format::TarGz, Format::TarZst, Format::Zip];

    /// The format an output file name implies (`.tar`, `.tar.gz`/`.tgz`, `.tar.zst`/`.tzst`).
    pub fn from_path(path: &Path) -> Option<Format> {
        let name = path.file_name()?.to_string_lossy().to_ascii_lowercase();
        [
            (".tar.gz", Format::TarGz),
            (".tgz", Format::TarGz),
            (".tar.zst", Format::TarZst),
            (".tzst", Format::TarZst),
            (".tar", Format::Tar),
            (".zip", Format::Zip),
        ]
        .into_iter()
        .find(|(ext, _)| name.ends_with(ext))
        .map(|(_, f)| f)
    }

    /// The name used on the command line and in listings.
    pub fn name(self) -> &'static str {
        match self {
            Format::Tar => "tar",
            Format::TarGz => "tar.gz",
            Format::TarZst => "tar.zst",
            Format::Zip => "zip",
        }
    }

    /// The default compression level, and the valid range.
    pub fn levels(self) -> Option<(u32, std::ops::RangeInclusive<u32>)> {
        match self {
            Format::Tar => None,
            Format::TarGz => Some((6, 1..=9)),
            Format::TarZst => Some((3, 1..=19)),
            Format::Zip => Some((6, 1..=9)),
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Format {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s.to_ascii_lowercase().as_str() {
            "tar" => Ok(Format::Tar),
            "tar.gz" | "tgz" | "gz" | "gzip" => Ok(Format::TarGz),
            "tar.zst" | "tzst" | "zst" | "zstd" => Ok(Format::TarZst),
            "zip" => Ok(Format::Zip),
            other => Err(Error::Usage(format!(
                "unknown format {other:?}; expected one of: tar, tar.gz, tar.zst, zip"
            ))),
        }
    }
}

/// What the first bytes of an input say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detected {
    /// A tar stream (ustar magic or a valid header checksum).
    Tar,
    /// gzip-compressed (anything; usually tar).
    Gzip,
    /// zstd-compressed.
    Zstd,
    /// A zip archive.
    Zip,
}

/// Recognises a format from up to the first 512 bytes of input. `None`: not something we read.
pub fn detect(head: &[u8]) -> Option<Detected> {
    if head.starts_with(&[0x1f, 0x8b]) {
        Some(Detected::Gzip)
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) || is_zstd_skippable(head) {
        Some(Detected::Zstd)
    } else if head.starts_with(b"PK\x03\x04")
        || head.starts_with(b"PK\x05\x06")
        || head.starts_with(b"PK\x07\x08")
    {
        Some(Detected::Zip)
    } else if looks_like_tar(head) {
        Some(Detected::Tar)
    } else {
        None
    }
}

/// zstd skippable frames (magic 0x184D2A50-5F) may come before the data frames.
fn is_zstd_skippable(head: &[u8]) -> bool {
    head.len() >= 4 && head[0] & 0xf0 == 0x50 && head[1..4] == [0x2a, 0x4d, 0x18]
}

fn looks_like_tar(head: &[u8]) -> bool {
    if head.len() < 512 {
        return false;
    }
    use tar_read::field;
    if head[field::MAGIC].starts_with(b"ustar") {
        return true;
    }
    // Pre-POSIX (v7) headers have no magic: trust the checksum. An all-zero block is an empty archive.
    if head[..512].iter().all(|&b| b == 0) {
        return true;
    }
    // The checksum as GNU tar checks it: the unsigned sum, or the signed one some old tars
    // wrote (a v7 tar with high bytes in a name would otherwise be "no format we know").
    let block: &[u8; 512] = head[..512].try_into().expect("512 bytes checked above");
    tar_read::checksum_ok(block)
}

/// The compression layer under the tar stream.
pub(crate) enum Codec<W: Write> {
    Plain(W),
    Gzip(gzip::ParGzWriter<W>),
    Zstd(zstd_frames::ZstdFramesWriter<W>),
}

impl<W: Write> Codec<W> {
    pub fn new(format: Format, out: W, level: u32, threads: usize) -> io::Result<Self> {
        Ok(match format {
            Format::Tar => Codec::Plain(out),
            Format::TarGz => Codec::Gzip(gzip::ParGzWriter::new(out, level, threads)?),
            Format::Zip => unreachable!("zip is not a tar codec"),
            Format::TarZst => Codec::Zstd(zstd_frames::ZstdFramesWriter::new(out, level, threads)?),
        })
    }

    /// The compressing pool's time accounting (none for plain tar).
    pub fn times(&self) -> Option<std::sync::Arc<pool::PoolTimes>> {
        match self {
            Codec::Plain(_) => None,
            Codec::Gzip(g) => Some(g.times()),
            Codec::Zstd(z) => Some(z.times()),
        }
    }

    pub fn finish(self) -> io::Result<W> {
        match self {
            Codec::Plain(mut w) => {
                w.flush()?;
                Ok(w)
            }
            Codec::Gzip(g) => g.finish(),
            Codec::Zstd(z) => z.finish(),
        }
    }
}

impl<W: Write> Write for Codec<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Codec::Plain(w) => w.write(buf),
            Codec::Gzip(w) => w.write(buf),
            Codec::Zstd(w) => w.write(buf),
        }
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Codec::Plain(w) => w.write_all(buf),
            Codec::Gzip(w) => w.write_all(buf),
            Codec::Zstd(w) => w.write_all(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Codec::Plain(w) => w.flush(),
            Codec::Gzip(w) => w.flush(),
            Codec::Zstd(w) => w.flush(),
        }
    }
}

/// Counts the bytes that reach the real output and the time spent handing them over (time the writer
/// was blocked by its consumer: a slow disk or pipe).
pub(crate) struct Metered<W> {
    pub inner: W,
    pub bytes: u64,
    pub blocked: Duration,
    /// Once set, every write fails: a run that failed must not let a layer's `Drop` (the tar
    /// builder appends its end-of-archive blocks when dropped) make a cut archive look complete.
    pub closed: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl<W> Metered<W> {
    pub fn new(inner: W) -> Self {
        Metered {
            inner,
            bytes: 0,
            blocked: Duration::ZERO,
            closed: Default::default(),
        }
    }
}

impl<W: Write> Write for Metered<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.closed.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(io::Error::other("the run failed; output closed"));
        }
        let t = Instant::now();
        let n = self.inner.write(buf);
        self.blocked += t.elapsed();
        if let Ok(n) = n {
            self.bytes += n as u64;
        }
        n
    }
    fn flush(&mut self) -> io::Result<()> {
        if self.closed.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(io::Error::other("the run failed; output closed"));
        }
        let t = Instant::now();
        let r = self.inner.flush();
        self.blocked += t.elapsed();
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_from_output_name() {
        assert_eq!(Format::from_path(Path::new("a.tar")), Some(Format::Tar));
        assert_eq!(Format::from_path(Path::new("A.TGZ")), Some(Format::TarGz));
        assert_eq!(
            Format::from_path(Path::new("x/a.tar.zst")),
            Some(Format::TarZst)
        );
        assert_eq!(Format::from_path(Path::new("a.tzst")), Some(Format::TarZst));
        assert_eq!(Format::from_path(Path::new("a.txt")), None);
    }

    #[test]
    fn detects_by_magic_and_checksum() {
        assert_eq!(detect(&[0x1f, 0x8b, 8]), Some(Detected::Gzip));
        assert_eq!(detect(&[0x28, 0xb5, 0x2f, 0xfd, 0]), Some(Detected::Zstd));
        assert_eq!(detect(b"PK\x03\x04rest"), Some(Detected::Zip));
        assert_eq!(
            detect(&[0x50, 0x2a, 0x4d, 0x18, 4, 0, 0, 0]),
            Some(Detected::Zstd)
        );
        let mut h = ::tar::Header::new_old();
        h.set_path("v7-file").unwrap();
        h.set_size(0);
        h.set_cksum();
        assert_eq!(detect(h.as_bytes()), Some(Detected::Tar));
        let mut junk = h.as_bytes().to_vec();
        junk[0] ^= 1;
        assert_eq!(detect(&junk), None);
        assert_eq!(detect(b"hello"), None);
        // A v7 header whose checksum is the signed sum (old tars; GNU tar accepts it): a name
        // with high bytes makes the two sums differ.
        let mut v7 = [0u8; 512];
        v7[..8].copy_from_slice(b"caf\xe9.txt");
        v7[100..108].copy_from_slice(b"0000644\0");
        v7[124..136].copy_from_slice(b"00000000000\0");
        let signed: i64 = v7
            .iter()
            .enumerate()
            .map(|(i, &b)| {
                if (148..156).contains(&i) {
                    32
                } else {
                    i64::from(b as i8)
                }
            })
            .sum();
        v7[148..156].copy_from_slice(format!("{signed:06o}\0 ").as_bytes());
        assert_eq!(detect(&v7), Some(Detected::Tar));
    }
}
