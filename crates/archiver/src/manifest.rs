//! The BLAKE3 manifest, `.archiver/MANIFEST.b3`: one line per regular file, in entry order, in
//! b3sum's check format, so `b3sum --check .archiver/MANIFEST.b3` passes in an extracted tree.
//!
//! Line format: `<64 lowercase hex>  <path>\n`. A path containing `\`, newline or CR is escaped
//! (`\\`, `\n`, `\r`) and its line starts with `\`, exactly as b3sum does. Paths are stored as raw
//! bytes; b3sum itself can only check UTF-8 names.

use std::path::Path;

/// Builds the manifest text as entries are written. Its memory stays below
/// [`SPILL_AT`](crate::spill::SPILL_AT) whatever the number of files: past it the text moves to an
/// anonymous temporary file (its tar header needs its size, so it cannot be streamed out before it
/// is complete).
#[derive(Default)]
pub(crate) struct ManifestWriter {
    text: crate::spill::Spill,
    line: Vec<u8>,
}

impl std::fmt::Debug for ManifestWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManifestWriter")
            .field("size", &self.size())
            .finish_non_exhaustive()
    }
}

impl ManifestWriter {
    /// Adds one file.
    pub fn add(&mut self, path: &Path, hash: &blake3::Hash) -> std::io::Result<()> {
        let line = &mut self.line;
        line.clear();
        let name = path_bytes(path);
        let escape = name.iter().any(|&b| matches!(b, b'\\' | b'\n' | b'\r'));
        if escape {
            line.push(b'\\');
        }
        line.extend_from_slice(hash.to_hex().as_bytes());
        line.extend_from_slice(b"  ");
        if escape {
            for &b in name.as_ref() {
                match b {
                    b'\\' => line.extend_from_slice(b"\\\\"),
                    b'\n' => line.extend_from_slice(b"\\n"),
                    b'\r' => line.extend_from_slice(b"\\r"),
                    b => line.push(b),
                }
            }
        } else {
            line.extend_from_slice(&name);
        }
        line.push(b'\n');
        self.text.append(line)?;
        Ok(())
    }

    /// The manifest's size in bytes.
    pub fn size(&self) -> u64 {
        self.text.len()
    }

    /// The whole text, to be read once.
    pub fn into_reader(self) -> std::io::Result<Box<dyn std::io::Read>> {
        Ok(Box::new(self.text.into_reader()?))
    }

    /// The whole text in memory (zip entries are compressed whole).
    pub fn into_bytes(self) -> std::io::Result<Vec<u8>> {
        use std::io::Read;
        let mut v = Vec::with_capacity(self.size() as usize);
        self.into_reader()?.read_to_end(&mut v)?;
        Ok(v)
    }
}

/// One parsed manifest line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestEntry {
    /// The path as raw bytes, unescaped.
    pub path: Vec<u8>,
    /// The file's BLAKE3 hash.
    pub hash: blake3::Hash,
}

/// Parses a manifest. Errors name the line number and what is wrong.
pub fn parse(text: &[u8]) -> Result<Vec<ManifestEntry>, String> {
    let mut out = Vec::new();
    for (i, line) in text.split(|&b| b == b'\n').enumerate() {
        if !line.is_empty() {
            out.push(parse_line(i + 1, line)?);
        }
    }
    Ok(out)
}

/// Parses line `n` of a manifest (without its newline).
pub(crate) fn parse_line(n: usize, line: &[u8]) -> Result<ManifestEntry, String> {
    let (escaped, line) = match line.strip_prefix(b"\\") {
        Some(rest) => (true, rest),
        None => (false, line),
    };
    if line.len() < 66 || &line[64..66] != b"  " {
        return Err(format!(
            "manifest line {n}: expected \"<64 hex digits>  <path>\""
        ));
    }
    let hex =
        std::str::from_utf8(&line[..64]).map_err(|_| format!("manifest line {n}: bad hash"))?;
    let hash = blake3::Hash::from_hex(hex).map_err(|_| format!("manifest line {n}: bad hash"))?;
    let raw = &line[66..];
    if !escaped {
        return Ok(ManifestEntry {
            path: raw.to_vec(),
            hash,
        });
    }
    let mut path = Vec::with_capacity(raw.len());
    let mut it = raw.iter();
    while let Some(&b) = it.next() {
        if b == b'\\' {
            match it.next() {
                Some(b'\\') => path.push(b'\\'),
                Some(b'n') => path.push(b'\n'),
                Some(b'r') => path.push(b'\r'),
                _ => return Err(format!("manifest line {n}: bad escape")),
            }
        } else {
            path.push(b);
        }
    }
    Ok(ManifestEntry { path, hash })
}

/// The raw bytes of a path (lossy UTF-8 where the platform has no byte paths).
pub(crate) fn path_bytes(path: &Path) -> std::borrow::Cow<'_, [u8]> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        std::borrow::Cow::Borrowed(path.as_os_str().as_bytes())
    }
    #[cfg(not(unix))]
    {
        match path.to_string_lossy() {
            std::borrow::Cow::Borrowed(s) => std::borrow::Cow::Borrowed(s.as_bytes()),
            std::borrow::Cow::Owned(s) => {
                std::borrow::Cow::Owned(s.replace('\\', "/").into_bytes())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spill::SPILL_AT;

    #[test]
    fn plain_and_escaped_lines_round_trip() {
        let h = blake3::hash(b"x");
        let mut m = ManifestWriter::default();
        m.add(Path::new("dir/plain name.txt"), &h).unwrap();
        m.add(Path::new("we\\ird\nname\r"), &h).unwrap();
        let text = m.into_bytes().unwrap();
        let expected = format!(
            "{h}  dir/plain name.txt\n\\{h}  we\\\\ird\\nname\\r\n",
            h = h.to_hex()
        );
        assert_eq!(String::from_utf8(text.clone()).unwrap(), expected);
        let parsed = parse(&text).unwrap();
        assert_eq!(parsed[0].path, b"dir/plain name.txt");
        assert_eq!(parsed[1].path, b"we\\ird\nname\r");
        assert_eq!(parsed[1].hash, h);
    }

    #[test]
    fn a_large_manifest_spills_to_a_file_and_reads_back_whole() {
        let h = blake3::hash(b"x");
        let mut m = ManifestWriter::default();
        let mut expected = Vec::new();
        for i in 0..60_000 {
            let name = format!("dir/file-{i:06}");
            m.add(Path::new(&name), &h).unwrap();
            expected.extend_from_slice(format!("{}  {name}\n", h.to_hex()).as_bytes());
        }
        assert!(
            m.text.spilled(),
            "over {SPILL_AT} bytes the text must leave memory"
        );
        assert!(m.text.in_memory() < SPILL_AT);
        assert_eq!(m.size(), expected.len() as u64);
        assert_eq!(m.into_bytes().unwrap(), expected);
    }

    #[test]
    fn rejects_malformed_lines() {
        assert!(parse(b"nothex  a\n").unwrap_err().contains("line 1"));
        let h = blake3::hash(b"").to_hex();
        assert!(parse(format!("{h} one-space\n").as_bytes()).is_err());
        assert!(parse(format!("\\{h}  bad\\q\n").as_bytes())
            .unwrap_err()
            .contains("escape"));
    }
}
