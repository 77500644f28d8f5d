//! An append-only byte store that moves to an anonymous temporary file past a few MiB: what
//! grows with the number of entries (the manifest being written, the names and manifest text an
//! unpack checks against) never grows memory with it.

use std::fs::File;
use std::io::{self, BufRead, Read, Seek, Write};

/// Bytes kept in memory by a [`Spill`] before it moves to a temporary file.
pub(crate) const SPILL_AT: usize = 4 << 20;

/// An append-only byte store that moves to an anonymous temporary file past [`SPILL_AT`].
#[derive(Default)]
pub(crate) struct Spill {
    mem: Vec<u8>,
    file: Option<File>,
    /// Bytes in the file; `mem` holds what follows.
    on_disk: u64,
}

impl Spill {
    /// Appends `bytes`; returns where they start.
    pub fn append(&mut self, bytes: &[u8]) -> io::Result<u64> {
        let at = self.on_disk + self.mem.len() as u64;
        self.mem.extend_from_slice(bytes);
        if self.mem.len() >= SPILL_AT {
            let file = match &mut self.file {
                Some(f) => f,
                None => self.file.insert(tempfile::tempfile()?),
            };
            file.write_all(&self.mem)?;
            self.on_disk += self.mem.len() as u64;
            self.mem.clear();
        }
        Ok(at)
    }

    /// Fills `buf` from offset `at`.
    pub fn read_at(&self, mut at: u64, mut buf: &mut [u8]) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        if at < self.on_disk {
            let n = buf.len().min((self.on_disk - at) as usize);
            let (head, tail) = buf.split_at_mut(n);
            self.file
                .as_ref()
                .expect("spilled bytes are in the file")
                .read_exact_at(head, at)?;
            buf = tail;
            at += n as u64;
        }
        if buf.is_empty() {
            return Ok(());
        }
        let start = (at - self.on_disk) as usize;
        let src = self
            .mem
            .get(start..start + buf.len())
            .ok_or_else(|| io::Error::other("read past the end of a spill"))?;
        buf.copy_from_slice(src);
        Ok(())
    }

    /// The length-prefixed byte string at `at`, and where the next one starts.
    pub fn string_at(&self, at: u64) -> io::Result<(Vec<u8>, u64)> {
        let mut len = [0u8; 4];
        self.read_at(at, &mut len)?;
        let mut s = vec![0u8; u32::from_le_bytes(len) as usize];
        self.read_at(at + 4, &mut s)?;
        let next = at + 4 + s.len() as u64;
        Ok((s, next))
    }

    pub fn append_string(&mut self, s: &[u8]) -> io::Result<u64> {
        let at = self.append(&(s.len() as u32).to_le_bytes())?;
        self.append(s)?;
        Ok(at)
    }

    /// Bytes appended so far.
    pub fn len(&self) -> u64 {
        self.on_disk + self.mem.len() as u64
    }

    /// True once some bytes went to the temporary file.
    #[cfg(test)]
    pub fn spilled(&self) -> bool {
        self.file.is_some()
    }

    /// Bytes held in memory now.
    #[cfg(test)]
    pub fn in_memory(&self) -> usize {
        self.mem.len()
    }

    /// The whole contents, from the start.
    pub fn into_reader(self) -> io::Result<impl BufRead> {
        let head: Box<dyn Read> = match self.file {
            Some(mut f) => {
                f.rewind()?;
                Box::new(f)
            }
            None => Box::new(io::empty()),
        };
        Ok(io::BufReader::with_capacity(
            256 << 10,
            head.chain(io::Cursor::new(self.mem)),
        ))
    }
}
