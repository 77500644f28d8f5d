//! The extraction safety policy: every rule that can refuse an entry is decided here, and only
//! here. Each function takes the facts (an entry's name and type, what the staging tree or DEST
//! holds at a path, the options) and returns `Ok` or the [`Rule`] broken with the reason in words;
//! the callers (`unpack/mod.rs`, `unpack/stage.rs`, `unpack/commit.rs`, `unpack/expect.rs`) only
//! gather the facts (system calls, open directories) and act on the answer. The staging tree
//! (`unpack/stage.rs`) creates paths without following links.
//!
//! Anchors: Python tarfile's `data` filter (PEP 706), libarchive's SECURE_NODOTDOT,
//! SECURE_SYMLINKS and SECURE_NOABSOLUTEPATHS, Go's `filepath.IsLocal`. See docs/SECURITY.md.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use crate::error::Rule;
use crate::list::escape_name;
use crate::manifest::path_bytes;

/// Why an entry was refused: the kind of rule it broke and the rule in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub rule: Rule,
    pub reason: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

fn refuse(rule: Rule, why: impl Into<String>) -> Refusal {
    Refusal {
        rule,
        reason: why.into(),
    }
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
        return Err(refuse(Rule::Name, "empty name"));
    }
    if raw.contains(&0) {
        return Err(refuse(Rule::Name, "NUL byte in the name"));
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
        return Err(refuse(Rule::Name, "absolute path"));
    }
    if raw.len() >= 2 && raw[1] == b':' && raw[0].is_ascii_alphabetic() {
        return Err(refuse(Rule::Name, "drive letter"));
    }
    let mut out = PathBuf::new();
    for part in raw.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err(refuse(Rule::Name, why_dotdot)),
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
        return Err(refuse(Rule::LinkOutside, "empty symlink target"));
    }
    if target.contains(&0) {
        return Err(refuse(Rule::LinkOutside, "NUL byte in the symlink target"));
    }
    if anywhere {
        return Ok(PathBuf::from(os_str(target)));
    }
    if target[0] == b'/' {
        return Err(refuse(
            Rule::LinkOutside,
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
            Rule::LinkOutside,
                        "symlink target leaves the destination (--allow-outside-links creates such links for trusted archives)",
                    ));
                }
            }
            _ => depth += 1,
        }
    }
    Ok(PathBuf::from(os_str(target)))
}

/// A zip symlink's target is its data: refused past 4096 bytes (PATH_MAX) before it is read.
pub fn symlink_target_size(size: u64) -> Result<(), Refusal> {
    if size > 4096 {
        return Err(refuse(
            Rule::LinkOutside,
            "symlink target longer than 4096 bytes",
        ));
    }
    Ok(())
}

/// What an entry would make at the destination itself (an empty path after `.` and
/// `--strip-components`): never allowed for these types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Makes {
    File,
    Symlink,
    HardLink,
}

/// Refuses a file, symlink or hard link whose path is the destination itself.
pub fn not_the_destination(rel: &Path, makes: Makes) -> Result<(), Refusal> {
    if !rel.as_os_str().is_empty() {
        return Ok(());
    }
    Err(refuse(
        Rule::Unsupported,
        match makes {
            Makes::File => "a file cannot be the destination itself",
            Makes::Symlink => "a symlink cannot be the destination itself",
            Makes::HardLink => "hard link to the destination itself",
        },
    ))
}

/// Refuses an entry whose first component is this run's staging directory's name.
pub fn not_staging(rel: &Path, staging_name: Option<&OsStr>) -> Result<(), Refusal> {
    let first = rel.components().next().map(|c| c.as_os_str());
    if first.is_some() && first == staging_name {
        return Err(refuse(
            Rule::Name,
            "uses the name of this run's staging directory; run unpack again",
        ));
    }
    Ok(())
}

/// Checks a hard link's target name as [`entry_path_stripped`] does an entry's. `Ok(None)`:
/// `--strip-components` removed the target, and the link is skipped.
pub fn hardlink_target(
    raw: &[u8],
    backslash_sep: bool,
    strip: usize,
) -> Result<Option<PathBuf>, Refusal> {
    match entry_path_stripped(raw, backslash_sep, strip) {
        Ok(Some(t)) if t.as_os_str().is_empty() => Err(refuse(
            Rule::Unsupported,
            "hard link to the destination itself",
        )),
        Ok(t) => Ok(t),
        Err(r) => Err(refuse(
            Rule::Name,
            format!("hard link target: {}", r.reason),
        )),
    }
}

/// A hard link to a symlink is that symlink again (what link(2) makes of it), so its target
/// (`target`, of the symlink named `shown`) is checked again from the link's own directory.
pub fn hardlink_to_symlink(
    link: &Path,
    shown: &str,
    target: &[u8],
    anywhere: bool,
) -> Result<PathBuf, Refusal> {
    symlink_target(link, target, anywhere).map_err(|r| via_hardlink(shown, r))
}

/// [`symlink_target`]'s refusal of the symlink `shown` when a hard link makes it again.
pub fn via_hardlink(shown: &str, r: Refusal) -> Refusal {
    refuse(
        Rule::LinkOutside,
        format!("hard link to the symlink {shown}: from here, {}", r.reason),
    )
}

/// A hard link to `shown`, which no earlier entry staged: allowed only when `-k` kept an earlier
/// entry's file there (`held_is_file`: what DEST holds is a regular file, reached without
/// following a link; `None`: not kept, or not reachable so).
pub fn hardlink_to_kept(
    shown: &str,
    keep_existing: bool,
    held_is_file: Option<bool>,
) -> Result<(), Refusal> {
    match held_is_file {
        Some(true) if keep_existing => Ok(()),
        Some(false) if keep_existing => Err(refuse(
            Rule::HardLink,
            format!("hard link to {shown}, which the destination holds (kept) as something other than a regular file"),
        )),
        _ => Err(not_an_earlier_entry(shown)),
    }
}

/// A hard link to a file `-k` kept that changed between its lookup and the link (someone else
/// writes in DEST during the run): nothing is linked.
pub fn kept_file_changed() -> Refusal {
    refuse(
        Rule::HardLink,
        "hard link to a file the destination holds, which changed while it was being linked; nothing was linked",
    )
}

/// A hard link to `shown`, which is not an entry before it in the archive.
pub fn not_an_earlier_entry(shown: &str) -> Refusal {
    refuse(
        Rule::HardLink,
        format!("hard link to {shown}, which is not an earlier entry of this archive"),
    )
}

/// An entry with no name left to create (the callers refuse such names first).
pub fn empty_name() -> Refusal {
    refuse(Rule::Name, "empty name")
}

/// A hard link whose source in the staging tree is a directory.
pub fn hardlink_to_dir() -> Refusal {
    refuse(Rule::HardLink, "hard link to a directory")
}

/// A directory on the way to an entry (`shown`) is not a directory of the staging tree: a
/// symlink (`is_link`) or a file earlier in the archive. Nothing is written through it.
pub fn through_staged(shown: &str, is_link: bool) -> Refusal {
    refuse(
        Rule::ThroughLink,
        if is_link {
            format!("{shown} is a symlink in this archive; refusing to write through it")
        } else {
            format!("{shown} is a file earlier in this archive, not a directory")
        },
    )
}

/// With `-k`, is what DEST holds at a path (`held`: looked up only with `-k`) what the final tree
/// has there? Yes whenever it exists: [`merge`] keeps it against any staged entry that is not a
/// directory, a directory is merged with it (a directory either way), and a staged directory over
/// anything else is refused. The commit's symlink check resolves links through the final tree by
/// this answer: a staged `d -> e` over DEST's directory `d` must not hide DEST's `d/out -> /etc`.
pub fn keeps(keep_existing: bool, held: impl FnOnce() -> Option<fs::Metadata>) -> bool {
    keep_existing && held().is_some()
}

/// With `-k`, is a file of the archive left unstaged because DEST holds something (`held`: what
/// is there, looked up only with `-k`) at its path? The answer [`merge`] gives for a staged file,
/// taken before the file is written.
pub fn keeps_file(keep_existing: bool, held: impl FnOnce() -> bool) -> bool {
    keep_existing && held()
}

/// What the commit does with a staged entry (`staged_dir`: a directory) where DEST holds
/// something of type `held`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    /// Both are directories: merge their contents.
    Descend,
    /// `-k`: leave DEST's entry.
    Keep,
    /// Replace DEST's file.
    Replace,
}

/// Decides [`Merge`] for the staged entry `shown`.
pub fn merge(
    shown: &str,
    staged_dir: bool,
    held: fs::FileType,
    keep_existing: bool,
) -> Result<Merge, Refusal> {
    match (staged_dir, held) {
        (true, t) if t.is_symlink() => Err(refuse(
            Rule::ThroughLink,
            format!("{shown} is a symbolic link in the destination; refusing to write through it"),
        )),
        (true, t) if t.is_dir() => Ok(Merge::Descend),
        (true, _) => Err(refuse(
            Rule::Conflict,
            format!("{shown} exists in the destination and is not a directory; remove it first"),
        )),
        (false, _) if keep_existing => Ok(Merge::Keep),
        (false, t) if t.is_dir() => Err(refuse(
            Rule::Conflict,
            "a directory is in the way in the destination; remove it first (or use -k to keep it)",
        )),
        (false, _) => Ok(Merge::Replace),
    }
}

/// What DEST holds at an entry's path could not be examined.
pub fn unexaminable(e: &io::Error) -> Refusal {
    refuse(
        Rule::Destination,
        format!("cannot examine it in the destination: {e}"),
    )
}

/// Can the commit create and replace entries in the existing directory `shown`? `md`: its
/// metadata; `same_fs`: it is on the staging directory's filesystem (rename cannot cross
/// filesystems); `access`: whether we may write and search it, asked only when the rest holds.
pub fn writable_dir(
    shown: &str,
    md: io::Result<()>,
    same_fs: bool,
    access: impl FnOnce() -> io::Result<()>,
) -> Result<(), Refusal> {
    let why = match md {
        Err(e) => format!("cannot examine {shown}: {e}"),
        Ok(()) if !same_fs => format!(
            "{shown} is on another filesystem than the destination (a mount point); unpack into it separately"
        ),
        Ok(()) => match access() {
            Ok(()) => return Ok(()),
            Err(e) => format!(
                "cannot create or replace anything in {shown}: {e}; fix its permissions or run as its owner"
            ),
        },
    };
    Err(refuse(Rule::Destination, why))
}

/// What the final tree (the staging tree over what DEST holds) has at a path, for resolving
/// symlinks.
pub enum Lookup {
    Dir,
    Link(Vec<u8>),
    /// A file or something else that cannot be looked into.
    Opaque,
    Nothing,
}

/// Resolves the symlink at `link` (target `target`) through the final tree, as `lookup` shows
/// it, and refuses it when it leads out of DEST.
pub fn symlink_escape(
    link: &Path,
    target: &[u8],
    lookup: impl Fn(&Path) -> Lookup,
) -> Result<(), Refusal> {
    escape_reason(link, target, lookup).map_or(Ok(()), |why| Err(refuse(Rule::LinkOutside, why)))
}

fn escape_reason(link: &Path, target: &[u8], lookup: impl Fn(&Path) -> Lookup) -> Option<String> {
    /// One step of a path still to resolve.
    enum Seg {
        Up,
        Name(OsString),
    }
    fn segs(t: &Path) -> Option<Vec<Seg>> {
        let mut out = Vec::new();
        for c in t.components() {
            match c {
                Component::CurDir => {}
                Component::ParentDir => out.push(Seg::Up),
                Component::Normal(n) => out.push(Seg::Name(n.to_owned())),
                Component::RootDir | Component::Prefix(_) => return None,
            }
        }
        Some(out)
    }
    // The path resolved so far, kept as one buffer (extended and cut by a component, never
    // rebuilt: a link deep in a tree with a long target would cost depth x length).
    let mut cur: PathBuf = link.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut depth = cur.components().count();
    let Some(first) = segs(os_path_of(target)) else {
        return Some("symlink to an absolute path".into());
    };
    let mut todo: VecDeque<Seg> = first.into();
    let mut hops = 0;
    // After a regular file (or an unreadable link) nothing more can be looked up; the rest
    // of the path is still followed lexically, so `file/../..` cannot climb out either.
    let mut opaque = false;
    // Below a name that does not exist nothing does: no lookups until a `..` climbs back
    // above it (the depth of that name).
    let mut missing: Option<usize> = None;
    while let Some(seg) = todo.pop_front() {
        let name = match seg {
            Seg::Up => {
                if depth == 0 {
                    return Some(if hops == 0 {
                        "symlink target leaves the destination".into()
                    } else {
                        "symlink resolves outside the destination through other links".into()
                    });
                }
                cur.pop();
                depth -= 1;
                if missing.is_some_and(|m| depth < m) {
                    missing = None;
                }
                continue;
            }
            Seg::Name(n) => n,
        };
        cur.push(name);
        depth += 1;
        if opaque || missing.is_some() {
            continue;
        }
        let t = match lookup(&cur) {
            Lookup::Link(t) => t,
            Lookup::Opaque => {
                opaque = true;
                continue;
            }
            Lookup::Nothing => {
                missing = Some(depth);
                continue;
            }
            Lookup::Dir => continue,
        };
        hops += 1;
        if hops > 40 {
            return Some("symlink chain longer than 40 links, or a loop".into());
        }
        let Some(more) = segs(os_path_of(&t)) else {
            return Some(format!(
                "symlink resolves outside the destination through {}, which points to an absolute path",
                escape_name(&path_bytes(&cur))
            ));
        };
        cur.pop();
        depth -= 1;
        for s in more.into_iter().rev() {
            todo.push_front(s);
        }
    }
    None
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

#[cfg(unix)]
fn os_path_of(b: &[u8]) -> &Path {
    Path::new(os_str(b))
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

    #[test]
    fn links_resolve_through_the_final_tree() {
        let lookup = |p: &Path| {
            if p == Path::new("up") {
                Lookup::Link(b"..".to_vec())
            } else {
                Lookup::Nothing
            }
        };
        let r = symlink_escape(Path::new("l"), b"up/x", lookup).unwrap_err();
        assert_eq!(r.rule, Rule::LinkOutside);
        assert!(r.reason.contains("through other links"), "{r}");
        assert!(symlink_escape(Path::new("l"), b"x/../y", lookup).is_ok());
    }
}
