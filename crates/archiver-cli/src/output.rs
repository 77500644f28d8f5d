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
    File(archiver::AtomicFile),
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
                // Never replace a device or a FIFO (such as /dev/null): write it in place.
                if let Ok(md) = std::fs::metadata(p) {
                    if !md.is_file() {
                        let file = std::fs::OpenOptions::new()
                            .write(true)
                            .open(p)
                            .with_context(|| format!("{}: cannot open for writing", p.display()))?;
                        // `-o /dev/tty` (or /dev/stdout on a terminal) is still a terminal.
                        if file.is_terminal() {
                            bail!(
                                "{}: refusing to write an archive to a terminal; use -o FILE or redirect stdout (| or >)",
                                p.display()
                            );
                        }
                        return Ok(Output::Special {
                            file,
                            path: p.to_path_buf(),
                        });
                    }
                }
                let file = archiver::AtomicFile::create(p).map_err(|e| {
                    // The path once, then what the system said (not the temporary name).
                    let (why, denied) = match &e {
                        archiver::Error::Io { source, .. } => (
                            source.to_string(),
                            source.kind() == std::io::ErrorKind::PermissionDenied,
                        ),
                        other => (other.to_string(), false),
                    };
                    // An existing archive may be writable in a directory that is not: say
                    // where the new one is made.
                    let dir = match p.parent() {
                        Some(d) if !d.as_os_str().is_empty() => d,
                        _ => std::path::Path::new("."),
                    };
                    let place = if denied {
                        format!(
                            " (the archive is written to a temporary file in {}, then renamed over it; write to stdout to avoid that: > {})",
                            dir.display(),
                            p.display()
                        )
                    } else {
                        String::new()
                    };
                    anyhow::anyhow!("{}: cannot create the output file: {why}{place}", p.display())
                })?;
                register(file.temp_path());
                Ok(Output::File(file))
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
            Output::File(f) => vec![f.temp_path().to_path_buf(), f.target().to_path_buf()],
            Output::Special { path, .. } => vec![path.clone()],
            // `> tree/backup.tar`: the file stdout is, when it is one (the walk compares
            // device and inode of regular files only).
            Output::Stdout(_) => vec![PathBuf::from("/dev/stdout")],
        }
    }

    /// What to call the output in a message.
    pub fn name(&self) -> String {
        match self {
            Output::File(f) => f.target().display().to_string(),
            Output::Special { path, .. } => path.display().to_string(),
            Output::Stdout(_) => "stdout".into(),
        }
    }

    pub fn writer(&mut self) -> &mut dyn Write {
        match self {
            Output::File(f) => f.file_mut(),
            Output::Special { file, .. } => file,
            Output::Stdout(s) => s,
        }
    }

    /// Makes the archive visible under its real name (or flushes stdout).
    pub fn commit(self) -> anyhow::Result<()> {
        match self {
            Output::File(f) => {
                let temp_path = f.temp_path().to_path_buf();
                let result = f.commit();
                unregister(&temp_path);
                result.map(drop).map_err(Into::into)
            }
            Output::Special { mut file, path } => file
                .flush()
                .with_context(|| format!("{}: writing the archive", path.display())),
            Output::Stdout(mut s) => s.flush().context("writing the archive"),
        }
    }
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
