//! Writing tar: headers built by us from the walk's metadata (never from a second `stat`), in GNU
//! format, which GNU tar, bsdtar and Python's tarfile all read without warnings.
//!
//! We build headers ourselves because `tar::Builder`'s convenience methods follow symlinks, probe for
//! sparse files, and can only fix mtimes to one constant, while we need SOURCE_DATE_EPOCH. Long paths
//! and link targets become GNU `L`/`K` entries and sizes from 8 GiB base-256 numbers (done by the
//! `tar` crate).

use std::io::{self, BufWriter, Read, Write};
use std::path::Path;

use tar::{EntryType, Header};

use crate::entry::Meta;
use crate::format::Codec;
use crate::owner::Owners;

/// How header metadata is chosen.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct HeaderPolicy {
    /// `Some(t)`: reproducible mode: every mtime is `t`, owners are 0 and nameless.
    pub reproducible: Option<u64>,
}

/// The tar stream over the compression layer. Owned by the writer thread only.
pub(crate) struct TarSink<W: Write> {
    builder: tar::Builder<BufWriter<Codec<W>>>,
    owners: Owners,
    policy: HeaderPolicy,
}

impl<W: Write> TarSink<W> {
    /// The compression layer under the tar stream.
    pub fn codec(&self) -> &Codec<W> {
        self.builder.get_ref().get_ref()
    }

    pub fn new(codec: Codec<W>, policy: HeaderPolicy) -> Self {
        TarSink {
            builder: tar::Builder::new(BufWriter::with_capacity(256 << 10, codec)),
            owners: Owners::default(),
            policy,
        }
    }

    fn header(&mut self, kind: EntryType, meta: &Meta, size: u64) -> Header {
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(meta.mode & 0o7777);
        match self.policy.reproducible {
            Some(t) => {
                // Clamped (reproducible-builds.org, GNU tar's --clamp-mtime): newer times become
                // SOURCE_DATE_EPOCH, older ones stay.
                set_mtime(&mut h, meta.mtime.min(i64::try_from(t).unwrap_or(i64::MAX)));
                h.set_uid(0);
                h.set_gid(0);
            }
            None => {
                set_mtime(&mut h, meta.mtime);
                h.set_uid(u64::from(meta.uid));
                h.set_gid(u64::from(meta.gid));
                // A name that does not fit the 32-byte field is left out; the numeric id remains.
                if let Some(name) = self.owners.user(meta.uid) {
                    let _ = h.set_username(name);
                }
                if let Some(name) = self.owners.group(meta.gid) {
                    let _ = h.set_groupname(name);
                }
            }
        }
        h
    }

    pub fn dir(&mut self, rel: &Path, meta: &Meta) -> io::Result<()> {
        let mut h = self.header(EntryType::Directory, meta, 0);
        // A trailing slash, as GNU tar and bsdtar write directory names.
        let mut name = rel.as_os_str().to_owned();
        name.push("/");
        self.builder
            .append_data(&mut h, Path::new(&name), io::empty())
    }

    pub fn file(&mut self, rel: &Path, meta: &Meta, size: u64, data: impl Read) -> io::Result<()> {
        let mut h = self.header(EntryType::Regular, meta, size);
        self.builder.append_data(&mut h, rel, data)
    }

    pub fn symlink(&mut self, rel: &Path, meta: &Meta, target: &Path) -> io::Result<()> {
        let mut h = self.header(EntryType::Symlink, meta, 0);
        // Symlink permissions mean nothing on Linux; GNU tar and bsdtar store 0777.
        h.set_mode(0o777);
        self.builder.append_link(&mut h, rel, target)
    }

    pub fn hardlink(&mut self, rel: &Path, meta: &Meta, target: &Path) -> io::Result<()> {
        let mut h = self.header(EntryType::Link, meta, 0);
        self.builder.append_link(&mut h, rel, target)
    }

    /// Writes the end-of-archive blocks, finishes compression and returns the output.
    pub fn finish(self) -> io::Result<W> {
        let buffered = self.builder.into_inner()?;
        let codec = buffered.into_inner().map_err(|e| e.into_error())?;
        codec.finish()
    }
}

/// Sets the header's mtime, before 1970 too: the tar crate takes only `u64`, so a negative time
/// is written as GNU tar writes it, in base-256 (the field's first byte 0xff, then the two's
/// complement, big-endian), which GNU tar, bsdtar, Python's tarfile and our reader read.
fn set_mtime(h: &mut Header, t: i64) {
    match u64::try_from(t) {
        Ok(t) => h.set_mtime(t),
        Err(_) => {
            let field = &mut h.as_old_mut().mtime;
            field[..4].fill(0xff);
            field[4..].copy_from_slice(&t.to_be_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mtimes_before_1970_are_written_in_base_256() {
        for t in [-1i64, -315_619_200, -8_589_934_593, 0, 1_700_000_000] {
            let mut h = Header::new_gnu();
            set_mtime(&mut h, t);
            h.set_cksum();
            let read = crate::format::tar_read::signed_number(&h.as_old().mtime).unwrap();
            assert_eq!(read, t, "{t}");
        }
    }
}
