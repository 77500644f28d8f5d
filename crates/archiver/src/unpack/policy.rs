//! The extraction safety policy: which entry names, link targets and types may be written, and how
//! symlink targets are checked (the staging tree, `unpack/stage.rs`, creates paths without following links).
//!
//! Anchors: Python tarfile's `data` filter (PEP 706), libarchive's SECURE_NODOTDOT,
//! SECURE_SYMLINKS and SECURE_NOABSOLUTEPATHS, Go's `filepath.IsLocal`. See docs/SECURITY.md.

use std::path::{Path, PathBuf};

/// Why an entry was refused. The message names the rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal(pub String);

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn refuse(why: impl Into<String>) -> Refusal {
    Refusal(why.into())
}

/// Checks an entry name and returns the relative path to create under the destination.
///
/// Refused: empty names, absolute paths, drive letters, `..` components and NUL. With
/// `backslash_sep` (zip entries written on DOS or Windows, as Info-ZIP unzip decides by the "made
/// by" host) a backslash is a separator, so `..\..\x` is refused as `..` and `dir\file` lands in
/// `dir/file`; elsewhere a backslash is an ordinary byte of a file name. `.` components and a
/// trailing `/` are dropped. A name that is only `.` (the destination itself) yields an empty path.
pub fn entry_path(raw: &[u8], backslash_sep: bool) -> Result<PathBuf, Refusal> {
    let zip = backslash_sep;
    if raw.is_empty() {
        return Err(refuse("empty name"));
    }
    if raw.contains(&0) {
        return Err(refuse("NUL byte in the name"));
    }
    let converted;
    let backslashes = zip && raw.contains(&b'\\');
    let raw = if backslashes {
        converted = raw
            .iter()
            .map(|&b| if b == b'\\' { b'/' } else { b })
            .collect::<Vec<u8>>();
        &converted[..]
    } else {
        raw
    };
    let why_dotdot = if backslashes {
        "`..` in the path (a backslash counts as a separator in zip names)"
    } else {
        "`..` in the path"
    };
    if raw[0] == b'/' {
        return Err(refuse("absolute path"));
    }
    if raw.len() >= 2 && raw[1] == b':' && raw[0].is_ascii_alphabetic() {
        return Err(refuse("drive letter"));
    }
    let mut out = PathBuf::new();
    for part in raw.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err(refuse(why_dotdot)),
            name => out.push(os_str(name)),
        }
    }
    Ok(out)
}

/// [`entry_path`] after GNU tar's `--strip-components`: the whole name is checked first (a hostile
/// name is refused even when its bad part would be stripped), then `strip` leading components are
/// dropped, counting `.` as a component and runs of slashes as one separator, as GNU tar does.
/// `Ok(None)`: the name has no more than `strip` components, and the entry is skipped.
pub fn entry_path_stripped(
    raw: &[u8],
    backslash_sep: bool,
    strip: usize,
) -> Result<Option<PathBuf>, Refusal> {
    let full = entry_path(raw, backslash_sep)?;
    if strip == 0 {
        return Ok(Some(full));
    }
    let sep = |b: &u8| *b == b'/' || (backslash_sep && *b == b'\\');
    let mut rest = raw;
    for _ in 0..strip {
        let start = rest.iter().position(|b| !sep(b)).unwrap_or(rest.len());
        rest = &rest[start..];
        if rest.is_empty() {
            return Ok(None);
        }
        let end = rest.iter().position(sep).unwrap_or(rest.len());
        rest = &rest[end..];
    }
    let start = rest.iter().position(|b| !sep(b)).unwrap_or(rest.len());
    let rest = &rest[start..];
    if rest.is_empty() {
        return Ok(None);
    }
    entry_path(rest, backslash_sep).map(Some)
}

/// Checks a symlink target: it must stay inside the destination when resolved from the link's own
/// directory (lexically; the destination contains no symlink the archive did not make, and those are
/// created last).
pub fn symlink_target(link: &Path, target: &[u8], anywhere: bool) -> Result<PathBuf, Refusal> {
    if target.is_empty() {
        return Err(refuse("empty symlink target"));
    }
    if target.contains(&0) {
        return Err(refuse("NUL byte in the symlink target"));
    }
    if anywhere {
        return Ok(PathBuf::from(os_str(target)));
    }
    if target[0] == b'/' {
        return Err(refuse(
            "symlink to an absolute path (--allow-outside-links creates such links for trusted archives)",
        ));
    }
    let mut depth: i64 = link.parent().map_or(0, |p| p.components().count() as i64);
    for part in target.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                depth -= 1;
                if depth < 0 {
                    return Err(refuse(
                        "symlink target leaves the destination (--allow-outside-links creates such links for trusted archives)",
                    ));
                }
            }
            _ => depth += 1,
        }
    }
    Ok(PathBuf::from(os_str(target)))
}

/// Permission bits we apply: setuid, setgid and sticky are dropped.
pub fn safe_mode(mode: u32) -> u32 {
    mode & 0o777
}

#[cfg(unix)]
fn os_str(b: &[u8]) -> &std::ffi::OsStr {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::OsStr::from_bytes(b)
}

#[cfg(not(unix))]
fn os_str(b: &[u8]) -> std::ffi::OsString {
    String::from_utf8_lossy(b).into_owned().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(entry_path(b"a/./b/", false).unwrap(), PathBuf::from("a/b"));
        assert_eq!(entry_path(b"./", false).unwrap(), PathBuf::new());
        assert!(entry_path(b"/etc/passwd", false).is_err());
        assert!(entry_path(b"a/../../x", false).is_err());
        assert!(entry_path(b"..", false).is_err());
        assert!(entry_path(b"C:/x", false).is_err());
        assert!(entry_path(b"..\\x", true).is_err());
        assert_eq!(
            entry_path(b"dir\\file", true).unwrap(),
            PathBuf::from("dir/file")
        );
        assert!(
            entry_path(b"a\\b", false).is_ok(),
            "a backslash is an ordinary byte in tar names"
        );
        assert!(entry_path(b"", false).is_err());
    }

    #[test]
    fn strip_components_like_gnu_tar() {
        let s = |raw: &[u8], n| entry_path_stripped(raw, false, n).unwrap();
        assert_eq!(s(b"./a/b", 1), Some(PathBuf::from("a/b")));
        assert_eq!(s(b"a//b/c", 2), Some(PathBuf::from("c")));
        assert_eq!(s(b"a/b/", 2), None);
        assert_eq!(s(b"a", 1), None);
        assert_eq!(s(b"./", 1), None);
        assert_eq!(s(b"a/b", 0), Some(PathBuf::from("a/b")));
        assert!(entry_path_stripped(b"../a/b", false, 1).is_err());
        assert_eq!(
            entry_path_stripped(b"top\\x\\y", true, 1).unwrap(),
            Some(PathBuf::from("x/y"))
        );
    }

    #[test]
    fn link_targets() {
        assert!(symlink_target(Path::new("a/b/l"), b"../x", false).is_ok());
        assert!(symlink_target(Path::new("a/b/l"), b"../../x", false).is_ok());
        assert!(symlink_target(Path::new("a/b/l"), b"../../../x", false).is_err());
        assert!(symlink_target(Path::new("l"), b"/etc", false).is_err());
        assert!(symlink_target(Path::new("l"), b"x/../../y", false).is_err());
        assert!(symlink_target(Path::new("l"), b"x/./y/..", false).is_ok());
    }
}
