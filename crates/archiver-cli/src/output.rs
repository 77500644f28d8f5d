//! Where an archive goes: an atomically replaced file, or stdout (never a terminal).

use std::fs::File;
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// Temporary output files of this process, removed by [`remove_temporaries`] when a signal ends the
/// process before the normal cleanup (drop) can run.
static TEMPORARIES: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

/// Removes every temporary output file still registered (called from the signal handler).
pub fn remove_temporaries() {
    let list = TEMPORARIES.lock().unwrap_or_else(|p| p.into_inner());
    for p in list.iter() {
        let _ = std::fs::remove_file(p);
    }
}

fn register(p: &Path) {
    TEMPORARIES
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(p.to_path_buf());
}

fn unregister(p: &Path) {
    TEMPORARIES
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .retain(|q| q != p);
}

/// An archive destination. A file is written under a temporary name beside the target and renamed
/// into place only by [`Output::commit`]; dropping an uncommitted output removes the temporary file,
/// so a failed or interrupted run never leaves a half-written archive under the real name.
pub enum Output {
    File {
        temp: tempfile::NamedTempFile,
        target: PathBuf,
    },
    /// Not a regular file (a device such as /dev/null, a FIFO): written in place, never replaced.
    Special {
        file: File,
        path: PathBuf,
    },
    Stdout(StdoutRaw),
}

impl Output {
    /// `None` or `-` means stdout.
    pub fn open(path: Option<&Path>) -> anyhow::Result<Output> {
        match path {
            None => Self::stdout(),
            Some(p) if p == Path::new("-") => Self::stdout(),
            Some(p) => {
                // Follow a symlink to the file it names; never replace a device or a FIFO.
                let p = match std::fs::metadata(p) {
                    Ok(md) if !md.is_file() => {
                        let file = std::fs::OpenOptions::new()
                            .write(true)
                            .open(p)
                            .with_context(|| format!("{}: cannot open for writing", p.display()))?;
                        return Ok(Output::Special {
                            file,
                            path: p.to_path_buf(),
                        });
                    }
                    Ok(_) => std::fs::canonicalize(p)
                        .with_context(|| format!("{}: cannot resolve", p.display()))?,
                    Err(_) => p.to_path_buf(),
                };
                let p = p.as_path();
                let dir = match p.parent() {
                    Some(d) if !d.as_os_str().is_empty() => d,
                    _ => Path::new("."),
                };
                let name = p
                    .file_name()
                    .with_context(|| format!("{}: not a file name", p.display()))?;
                let mut builder = tempfile::Builder::new();
                let prefix = format!(".{}.", name.to_string_lossy());
                builder.prefix(&prefix).suffix(".tmp");
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt;
                    // Like any new file: 0666 less the umask (tempfile's default would be 0600).
                    builder.permissions(std::fs::Permissions::from_mode(0o666));
                }
                let temp = builder
                    .tempfile_in(dir)
                    .with_context(|| format!("{}: cannot create the output file", p.display()))?;
                register(temp.path());
                Ok(Output::File {
                    temp,
                    target: p.to_path_buf(),
                })
            }
        }
    }

    fn stdout() -> anyhow::Result<Output> {
        if io::stdout().is_terminal() {
            bail!("refusing to write an archive to a terminal; use -o FILE or redirect stdout (| or >)");
        }
        Ok(Output::Stdout(StdoutRaw::new()))
    }

    /// Files that must not be packed into themselves: the temporary file and the target.
    pub fn own_files(&self) -> Vec<PathBuf> {
        match self {
            Output::File { temp, target } => vec![temp.path().to_path_buf(), target.clone()],
            Output::Special { path, .. } => vec![path.clone()],
            Output::Stdout(_) => Vec::new(),
        }
    }

    /// What to call the output in a message.
    pub fn name(&self) -> String {
        match self {
            Output::File { target, .. } => target.display().to_string(),
            Output::Special { path, .. } => path.display().to_string(),
            Output::Stdout(_) => "stdout".into(),
        }
    }

    pub fn writer(&mut self) -> &mut dyn Write {
        match self {
            Output::File { temp, .. } => temp.as_file_mut(),
            Output::Special { file, .. } => file,
            Output::Stdout(s) => s,
        }
    }

    /// Makes the archive visible under its real name (or flushes stdout).
    pub fn commit(self) -> anyhow::Result<()> {
        match self {
            Output::File { temp, target } => {
                let temp_path = temp.path().to_path_buf();
                let result = finish_file(temp, &target);
                unregister(&temp_path);
                result
            }
            Output::Special { mut file, path } => file
                .flush()
                .with_context(|| format!("{}: writing the archive", path.display())),
            Output::Stdout(mut s) => s.flush().context("writing the archive"),
        }
    }
}

/// Makes a finished temporary file the archive: the permission bits of a file it replaces are kept
/// (an archive someone made 0600 stays private), the data reaches the disk before the rename, so a
/// crash leaves the old archive or the new one, never a torn one.
fn finish_file(temp: tempfile::NamedTempFile, target: &Path) -> anyhow::Result<()> {
    let what = || format!("{}: writing the archive", target.display());
    #[cfg(unix)]
    if let Ok(old) = std::fs::metadata(target) {
        use std::os::unix::fs::PermissionsExt;
        let mode = old.permissions().mode() & 0o7777;
        temp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode))
            .with_context(what)?;
    }
    temp.as_file().sync_all().with_context(what)?;
    temp.persist(target).map_err(|e| e.error).with_context(|| {
        format!(
            "{}: cannot move the finished archive into place",
            target.display()
        )
    })?;
    // The rename itself is durable once the directory is.
    if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// stdout without Rust's line buffering: archives are binary and large.
pub struct StdoutRaw {
    #[cfg(unix)]
    file: std::mem::ManuallyDrop<File>,
    #[cfg(not(unix))]
    out: io::Stdout,
}

impl StdoutRaw {
    fn new() -> Self {
        #[cfg(unix)]
        {
            use std::os::unix::io::FromRawFd;
            // SAFETY: fd 1 stays open for the life of the process; ManuallyDrop never closes it.
            let file = unsafe { File::from_raw_fd(1) };
            // A 64 KiB pipe makes every 256 KiB write a handful of context switches with the
            // consumer; a 1 MiB pipe (Linux allows it unprivileged) lets both sides run longer.
            #[cfg(target_os = "linux")]
            // SAFETY: fcntl on our own stdout; failure (not a pipe, over the limit) is harmless.
            unsafe {
                libc::fcntl(1, libc::F_SETPIPE_SZ, 1 << 20);
            }
            StdoutRaw {
                file: std::mem::ManuallyDrop::new(file),
            }
        }
        #[cfg(not(unix))]
        StdoutRaw { out: io::stdout() }
    }
}

impl Write for StdoutRaw {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        #[cfg(unix)]
        return (&*self.file).write(buf);
        #[cfg(not(unix))]
        return self.out.write(buf);
    }
    fn flush(&mut self) -> io::Result<()> {
        #[cfg(unix)]
        return Ok(());
        #[cfg(not(unix))]
        return self.out.flush();
    }
}
