//! Writing a file so that readers only ever see the old version or the complete new one: a
//! temporary file beside the target, synced, given the replaced file's permission bits, then
//! renamed over it (and the directory synced). Dropped before [`AtomicFile::commit`], the temporary
//! file is removed, so a failed or cancelled run leaves nothing behind.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A file being written under a temporary name beside its target.
#[derive(Debug)]
pub struct AtomicFile {
    temp: tempfile::NamedTempFile,
    target: PathBuf,
}

impl AtomicFile {
    /// Creates `.NAME.XXXXXX.tmp` beside `target` (a symlink as target: beside the file it names).
    /// New files get 0666 less the umask, like any file a program creates.
    pub fn create(target: impl AsRef<Path>) -> Result<AtomicFile> {
        let target = target.as_ref();
        let io = |source| Error::Io {
            path: target.to_path_buf(),
            source,
        };
        let resolved = match std::fs::canonicalize(target) {
            Ok(p) => p,
            Err(_) => target.to_path_buf(),
        };
        let dir = match resolved.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let name = resolved.file_name().ok_or_else(|| Error::Source {
            path: target.to_path_buf(),
            reason: "is not a file name".into(),
        })?;
        let mut builder = tempfile::Builder::new();
        let prefix = format!(".{}.", name.to_string_lossy());
        builder.prefix(&prefix).suffix(".tmp");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            builder.permissions(std::fs::Permissions::from_mode(0o666));
        }
        // tempfile's error names the random temporary path; the system's own error is enough.
        let temp = builder.tempfile_in(dir).map_err(|e| io(system_error(e)))?;
        Ok(AtomicFile {
            temp,
            target: resolved,
        })
    }

    /// The temporary file's path (to exclude it from a walk, or to remove it from a signal
    /// handler that cannot wait for the normal cleanup).
    pub fn temp_path(&self) -> &Path {
        self.temp.path()
    }

    /// The file that [`commit`](Self::commit) replaces.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// The temporary file, to write to.
    pub fn file_mut(&mut self) -> &mut File {
        self.temp.as_file_mut()
    }

    /// Makes the written data the target: the replaced file's permission bits are kept (an
    /// archive someone made 0600 stays private), the data reaches the disk before the rename, and
    /// the rename itself is made durable by syncing the directory.
    pub fn commit(self) -> Result<PathBuf> {
        let target = self.target;
        let io = |source| Error::Io {
            path: target.clone(),
            source,
        };
        #[cfg(unix)]
        if let Ok(old) = std::fs::metadata(&target) {
            use std::os::unix::fs::PermissionsExt;
            let mode = old.permissions().mode() & 0o7777;
            self.temp
                .as_file()
                .set_permissions(std::fs::Permissions::from_mode(mode))
                .map_err(io)?;
        }
        self.temp.as_file().sync_all().map_err(io)?;
        self.temp.persist(&target).map_err(|e| io(e.error))?;
        if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(target)
    }
}

/// The error without tempfile's ` at path "<temporary name>"`: the caller names the file.
fn system_error(e: std::io::Error) -> std::io::Error {
    let text = e.to_string();
    match text.split_once(" at path ") {
        Some((what, _)) => std::io::Error::new(e.kind(), what.to_string()),
        None => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn dropped_leaves_nothing_and_commit_replaces_keeping_the_mode() {
        let t = tempfile::tempdir().unwrap();
        let target = t.path().join("a.tar");
        {
            let mut f = AtomicFile::create(&target).unwrap();
            f.file_mut().write_all(b"partial").unwrap();
        }
        assert_eq!(std::fs::read_dir(t.path()).unwrap().count(), 0);
        std::fs::write(&target, b"old").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let mut f = AtomicFile::create(&target).unwrap();
        f.file_mut().write_all(b"new").unwrap();
        f.commit().unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&target).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        assert_eq!(std::fs::read_dir(t.path()).unwrap().count(), 1);
    }
}
