//! Reading an archive from stdin: refused when stdin is a terminal, and interruptible, so a signal
//! stops a command that waits on an idle pipe instead of leaving it blocked in `read`.

use std::io::{self, IsTerminal, Read};

use anyhow::bail;

/// Refuses to read an archive from a terminal, as GNU tar does: the user forgot the file name.
pub fn check_not_terminal() -> anyhow::Result<()> {
    if io::stdin().is_terminal() {
        bail!(
            "refusing to read an archive from a terminal; name the archive, or redirect stdin (| or <)"
        );
    }
    Ok(())
}

/// stdin, read in a way that notices `cancel` within a tenth of a second even when no data comes.
/// A cancelled read fails with an error; the library then reports [`archiver::Error::Cancelled`].
pub struct Stdin {
    cancel: archiver::Cancel,
}

impl Stdin {
    pub fn new(cancel: &archiver::Cancel) -> Self {
        Stdin {
            cancel: cancel.clone(),
        }
    }

    /// Standard input is a regular file (`< archive.tar.gz`): its reads never wait on a producer,
    /// so it may be decompressed in parallel, reading ahead.
    pub fn is_regular_file() -> bool {
        #[cfg(unix)]
        {
            use std::os::fd::AsFd;
            io::stdin()
                .as_fd()
                .try_clone_to_owned()
                .map(std::fs::File::from)
                .and_then(|f| f.metadata())
                .is_ok_and(|m| m.is_file())
        }
        #[cfg(not(unix))]
        {
            false
        }
    }
}

impl Read for Stdin {
    #[cfg(unix)]
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.cancel.is_cancelled() {
                return Err(io::Error::other("interrupted"));
            }
            let mut fds = libc::pollfd {
                fd: 0,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd for fd 0.
            let r = unsafe { libc::poll(&mut fds, 1, 100) };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if r == 0 {
                continue; // nothing yet; look at the cancel flag again
            }
            // SAFETY: reading into our own buffer of the given length.
            let n = unsafe { libc::read(0, buf.as_mut_ptr().cast(), buf.len()) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            return Ok(n as usize);
        }
    }

    #[cfg(not(unix))]
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.cancel.is_cancelled() {
            return Err(io::Error::other("interrupted"));
        }
        io::stdin().lock().read(buf)
    }
}

/// Escapes control characters in a diagnostic (GNU tar's escapes: `\n`, `\r`, `\033`, ...), so no
/// message can move the cursor or forge a line. Backslashes are left alone: names inside messages
/// from the library are already escaped by [`archiver::escape_name`].
pub fn terminal_safe(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            let mut buf = [0u8; 4];
            out.push_str(&archiver::escape_name(c.encode_utf8(&mut buf).as_bytes()));
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn diagnostics_lose_their_control_characters() {
        assert_eq!(super::terminal_safe("a\nb\x1b[2J"), "a\\nb\\033[2J");
        assert_eq!(super::terminal_safe("back\\slash"), "back\\slash");
    }
}
