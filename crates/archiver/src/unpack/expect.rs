//! Checking every file of an archive against its embedded manifest, in memory that does not grow
//! with the entries' names: 35 bytes per entry, names and the manifest text spilled to anonymous
//! temporary files past a few MiB.
//!
//! Written here because the check is ours (the manifest format is ours) and because the obvious
//! version, a map from path to hash, costs hundreds of bytes per entry: 1,000,000 entries took
//! 600 MB to verify. Each entry is one fixed-size [`Rec`] instead: a 64-bit keyed hash of its path
//! (the key is random per run), the first 128 bits of its content's BLAKE3 hash, where its name
//! is in the name spill (for messages), its sequence number and its kind. After the archive is
//! read, the records are sorted by path key; the manifest is then streamed in blocks of lines,
//! checked on `-j` threads (the writers are done by then), each line looked up by binary search;
//! blocks are taken in order, so what is reported is what a check line by line reports. The
//! latest entry at a path is the one that counts (tar's rule), and a hard link takes the content
//! of the entry it names as it was at that point of the archive.
//!
//! The manifest travels inside the archive and is no signature: it catches corruption, not an
//! attacker who can rewrite the archive. 128 bits of BLAKE3 are ample for that; the 64-bit path
//! key only groups records (a collision would at worst make a good archive fail, with odds of
//! about 1 in 10^7 for a billion entries).

use std::io::{self, BufRead};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Error, Refused, Result, Rule};
use crate::list::escape_name;
use crate::manifest::{self, path_bytes};
pub(crate) use crate::spill::Spill;
use crate::unpack::policy;
use crate::MANIFEST_PATH;

/// Records per block of the sparse index.
const STRIDE: usize = 16;

/// At most this many problems are listed one by one; the rest are counted.
const MAX_LISTED: usize = 1000;

const FILE: u8 = 1;
const LINK: u8 = 2;
const SYM: u8 = 3;
const DIR: u8 = 4;
/// A link that was refused: counts as nothing at its path.
const GONE: u8 = 5;
const KIND: u8 = 0x0f;
/// Flag: a FILE's hash has arrived.
const FILLED: u8 = 0x40;

/// One entry. Byte arrays only, so a record is 35 bytes with no padding.
#[derive(Clone, Copy)]
struct Rec {
    key: [u8; 8],
    /// FILE: the first 16 bytes of its BLAKE3 hash; LINK: the source's key in the first 8.
    val: [u8; 16],
    /// Offset of its name in the name spill (48 bits).
    name: [u8; 6],
    seq: [u8; 4],
    kind: u8,
}

impl Rec {
    fn seq(&self) -> u32 {
        u32::from_le_bytes(self.seq)
    }
    fn name(&self) -> u64 {
        let mut b = [0u8; 8];
        b[..6].copy_from_slice(&self.name);
        u64::from_le_bytes(b)
    }
}

/// The entries of an archive as far as the manifest check needs them.
pub(crate) struct Expect {
    key: [u8; 32],
    recs: Vec<Rec>,
    names: Spill,
}

impl Expect {
    pub fn new() -> Expect {
        use std::hash::BuildHasher;
        let mut key = [0u8; 32];
        for (i, part) in key.chunks_mut(8).enumerate() {
            let r = std::collections::hash_map::RandomState::new().hash_one(i);
            part.copy_from_slice(&r.to_le_bytes());
        }
        Expect {
            key,
            recs: Vec::new(),
            names: Spill::default(),
        }
    }

    fn key_of(&self, path: &[u8]) -> [u8; 8] {
        let h = blake3::keyed_hash(&self.key, path);
        h.as_bytes()[..8].try_into().expect("8 bytes")
    }

    fn push(
        &mut self,
        seq: u64,
        rel: &Path,
        kind: u8,
        val: [u8; 16],
        extra: Option<&[u8]>,
    ) -> Result<()> {
        let bytes = path_bytes(rel);
        let name = self.names.append_string(&bytes).map_err(spill_error)?;
        if let Some(extra) = extra {
            self.names.append_string(extra).map_err(spill_error)?;
        }
        let seq = u32::try_from(seq)
            .map_err(|_| Error::BadArchive("more than 4,294,967,295 entries".into()))?;
        self.recs.push(Rec {
            key: self.key_of(&bytes),
            val,
            name: name.to_le_bytes()[..6].try_into().expect("6 bytes"),
            seq: seq.to_le_bytes(),
            kind,
        });
        Ok(())
    }

    /// A regular file; its hash follows through [`Expect::file_hash`].
    pub fn file(&mut self, seq: u64, rel: &Path) -> Result<()> {
        self.push(seq, rel, FILE, [0; 16], None)
    }

    /// The hash of the file entry `seq`.
    pub fn file_hash(&mut self, seq: u64, hash: &blake3::Hash) {
        let Ok(seq) = u32::try_from(seq) else { return };
        // Results come back close to the order entries were read: look at the newest first.
        let tail = self.recs.len().saturating_sub(256);
        let found = match self.recs[tail..].binary_search_by_key(&seq, Rec::seq) {
            Ok(i) => Ok(tail + i),
            Err(_) => self.recs[..tail].binary_search_by_key(&seq, Rec::seq),
        };
        if let Ok(i) = found {
            let r = &mut self.recs[i];
            r.val.copy_from_slice(&hash.as_bytes()[..16]);
            r.kind |= FILLED;
        }
    }

    pub fn dir(&mut self, seq: u64, rel: &Path) -> Result<()> {
        self.push(seq, rel, DIR, [0; 16], None)
    }

    pub fn symlink(&mut self, seq: u64, rel: &Path, target: &[u8]) -> Result<()> {
        self.push(seq, rel, SYM, [0; 16], Some(target))
    }

    /// A hard link to the entry at `source`.
    pub fn hard_link(&mut self, seq: u64, rel: &Path, source: &Path) -> Result<()> {
        let src = path_bytes(source);
        let mut val = [0u8; 16];
        val[..8].copy_from_slice(&self.key_of(&src));
        self.push(seq, rel, LINK, val, Some(&src))
    }

    /// The records whose key is `key` (archive order within). A binary search over the sparse
    /// `index` (in cache) and then within one block of [`STRIDE`] records: a plain binary search
    /// over tens of MB costs a cache miss per step.
    fn group(&self, index: &[[u8; 8]], key: &[u8; 8]) -> std::ops::Range<usize> {
        let b = index.partition_point(|k| k < key);
        let start = b.saturating_sub(1) * STRIDE;
        let end = (b * STRIDE).min(self.recs.len());
        let lo = start + self.recs[start..end].partition_point(|r| r.key < *key);
        let hi = lo + self.recs[lo..].iter().take_while(|r| r.key == *key).count();
        lo..hi
    }

    /// Every [`STRIDE`]th key of the sorted records.
    fn index(&self) -> Vec<[u8; 8]> {
        self.recs.iter().step_by(STRIDE).map(|r| r.key).collect()
    }

    fn name_of(&self, r: &Rec) -> io::Result<Vec<u8>> {
        Ok(self.names.string_at(r.name())?.0)
    }

    fn second_of(&self, r: &Rec) -> io::Result<Vec<u8>> {
        let (_, next) = self.names.string_at(r.name())?;
        Ok(self.names.string_at(next)?.0)
    }

    /// Resolves every hard link to the content of its source as it was when the link was read
    /// (checking, when `check_links`, that the source is an earlier file or symlink: verify has no
    /// staging tree that did so), then checks every file against the manifest, if there is one.
    /// Problems go to `refused`; returns the number of manifest lines.
    pub fn finish(
        mut self,
        manifest: Option<Spill>,
        strip: usize,
        check_links: Option<bool>,
        threads: usize,
        refused: &mut Vec<Refused>,
    ) -> Result<(Option<u64>, usize)> {
        let mut problems = Problems::default();
        self.recs.sort_unstable_by_key(|r| (r.key, r.seq()));
        let index = self.index();
        self.resolve_links(&index, check_links, &mut problems)?;
        let Some(manifest) = manifest else {
            problems.into(refused);
            return Ok((None, 1));
        };
        let matched = Matched::new(self.recs.len());
        let (count, used) =
            self.check_lines(manifest, strip, threads, &index, &matched, &mut problems)?;
        // Files the manifest does not list: the first in archive order fill what is left of the
        // report (the records are in key order, random per run; a heap of at most that many
        // keeps the earliest), the rest are counted, and only the listed names are read back.
        let room = MAX_LISTED.saturating_sub(problems.listed.len());
        let mut earliest = std::collections::BinaryHeap::with_capacity(room + 1);
        let mut unlisted = 0u64;
        for (i, r) in self.recs.iter().enumerate() {
            let last = self.recs.get(i + 1).is_none_or(|next| next.key != r.key);
            if last && r.kind & KIND == FILE && !matched.get(i) {
                unlisted += 1;
                earliest.push((r.seq(), i));
                if earliest.len() > room {
                    earliest.pop();
                }
            }
        }
        let earliest = earliest.into_sorted_vec();
        problems.more += unlisted - earliest.len() as u64;
        for (_, i) in earliest {
            let name = self.name_of(&self.recs[i]).map_err(spill_error)?;
            problems.push(&name, Rule::Manifest, "not listed in the manifest");
        }
        problems.into(refused);
        Ok((Some(count), used))
    }

    /// Checks every manifest line against the records; returns how many lines list a file
    /// and on how many threads. Lines go in blocks to `threads` threads (the writers are done
    /// by now); results are taken in block order, so the problems listed and the error returned
    /// are those of a check line by line. A manifest read whole with its first block is checked
    /// here.
    fn check_lines(
        &self,
        manifest: Spill,
        strip: usize,
        threads: usize,
        index: &[[u8; 8]],
        matched: &Matched,
        problems: &mut Problems,
    ) -> Result<(u64, usize)> {
        let mut text = manifest.into_reader().map_err(spill_error)?;
        let mut next_line = 1usize;
        let full = AtomicBool::new(false);
        let check = |b: Block| {
            crate::threads::catch(
                "check",
                || None,
                || self.check_block(b, strip, index, matched, &full),
            )
            .and_then(|r| r)
        };
        let Some(first) = read_block(&mut text, 0, &mut next_line) else {
            return Ok((0, 1));
        };
        if first.last || threads < 2 {
            let mut count = 0;
            let mut block = Some(first);
            while let Some(b) = block {
                let (no, last) = (b.no, b.last);
                let checked = check(b)?;
                count += checked.count;
                problems.absorb(checked.problems);
                block = if last {
                    None
                } else {
                    read_block(&mut text, no + 1, &mut next_line)
                };
            }
            return Ok((count, 1));
        }
        std::thread::scope(|s| {
            let (block_tx, block_rx) = crossbeam_channel::bounded::<Block>(threads);
            let (done_tx, done_rx) = crossbeam_channel::unbounded::<(usize, Result<Checked>)>();
            for _ in 0..threads {
                let (rx, tx, check) = (block_rx.clone(), done_tx.clone(), &check);
                // Every block is answered (a panic as an error): one never answered would
                // leave this thread waiting for it.
                crate::threads::spawn(s, "check", move || {
                    for b in rx {
                        let no = b.no;
                        if tx.send((no, check(b))).is_err() {
                            break;
                        }
                    }
                })?;
            }
            drop((block_rx, done_tx));
            // Results that came back ahead of their turn; at most `2 * threads` blocks are
            // out at once (sent and not yet taken in order), which bounds the memory.
            let mut early = std::collections::BTreeMap::new();
            let (mut sent, mut taken, mut count) = (0usize, 0usize, 0u64);
            let mut take = |early: &mut std::collections::BTreeMap<usize, Result<Checked>>,
                            taken: &mut usize|
             -> Result<()> {
                let checked = loop {
                    if let Some(c) = early.remove(taken) {
                        break c;
                    }
                    let (no, c) = done_rx.recv().expect("a checker answers every block");
                    early.insert(no, c);
                };
                *taken += 1;
                let checked = checked?;
                count += checked.count;
                problems.absorb(checked.problems);
                // From here on, later blocks' problems would only be counted: say so, so
                // that checkers stop building their reports.
                if problems.listed.len() >= MAX_LISTED {
                    full.store(true, Ordering::Relaxed);
                }
                Ok(())
            };
            let mut block = Some(first);
            while let Some(b) = block {
                let (no, last) = (b.no, b.last);
                if sent - taken >= 2 * threads {
                    take(&mut early, &mut taken)?;
                }
                block_tx.send(b).expect("checkers wait for blocks");
                sent += 1;
                block = if last {
                    None
                } else {
                    read_block(&mut text, no + 1, &mut next_line)
                };
            }
            drop(block_tx);
            while taken < sent {
                take(&mut early, &mut taken)?;
            }
            Ok((count, threads))
        })
    }

    /// Checks one block of manifest lines: each listed path's latest record must be a file
    /// with that hash (marked matched here); the rest are problems.
    fn check_block(
        &self,
        block: Block,
        strip: usize,
        index: &[[u8; 8]],
        matched: &Matched,
        full: &AtomicBool,
    ) -> Result<Checked> {
        let mut problems = Problems::default();
        let mut count = 0;
        let mut problem = |path: &[u8], reason: &str| {
            if full.load(Ordering::Relaxed) {
                problems.more += 1;
            } else {
                problems.push(path, Rule::Manifest, reason);
            }
        };
        for (i, body) in block.text.split(|&b| b == b'\n').enumerate() {
            if body.is_empty() {
                continue;
            }
            let n = block.first_line + i;
            let entry = manifest::parse_line(n, body)
                .map_err(|e| Error::BadArchive(format!("{MANIFEST_PATH}: {e}")))?;
            count += 1;
            let path = if strip > 0 {
                match policy::entry_path_stripped(&entry.path, false, strip) {
                    Ok(Some(p)) => path_bytes(&p).into_owned(),
                    // Shorter than what is stripped: not extracted, as its entry is not.
                    Ok(None) => continue,
                    // A name no entry can have (`..`, absolute): missing, as without the option.
                    Err(_) => entry.path,
                }
            } else {
                entry.path
            };
            let g = self.group(index, &self.key_of(&path));
            let last = g.end.checked_sub(1).filter(|&i| i >= g.start);
            match last.map(|i| (i, self.recs[i])) {
                Some((i, r)) if r.kind & KIND == FILE => {
                    matched.set(i);
                    if r.val != entry.hash.as_bytes()[..16] {
                        problem(&path, "content does not match the manifest's BLAKE3 hash");
                    }
                }
                _ => problem(&path, "listed in the manifest but missing from the archive"),
            }
        }
        // What ended the block early (a line too long, a read error), after its lines.
        if let Some(e) = block.error {
            return Err(e);
        }
        Ok(Checked { count, problems })
    }

    /// Gives each hard link its source's content (in archive order, so a link to a link works).
    fn resolve_links(
        &mut self,
        index: &[[u8; 8]],
        check: Option<bool>,
        problems: &mut Problems,
    ) -> Result<()> {
        let mut links: Vec<u32> = (0..self.recs.len() as u32)
            .filter(|&i| self.recs[i as usize].kind & KIND == LINK)
            .collect();
        links.sort_unstable_by_key(|&i| self.recs[i as usize].seq());
        for i in links {
            let link = self.recs[i as usize];
            let src_key: [u8; 8] = link.val[..8].try_into().expect("8 bytes");
            let g = self.group(index, &src_key);
            let src = self.recs[g]
                .iter()
                .rev()
                .find(|r| r.seq() < link.seq())
                .copied();
            let kind = match src {
                Some(s) if s.kind & KIND == FILE => {
                    self.recs[i as usize].val = s.val;
                    FILE | (s.kind & FILLED)
                }
                Some(s) if s.kind & KIND == SYM => match check {
                    Some(anywhere) => {
                        let rel = self.name_of(&link).map_err(spill_error)?;
                        let target = self.second_of(&s).map_err(spill_error)?;
                        let at = super::commit::os_path(&rel);
                        match policy::symlink_target(at, &target, anywhere) {
                            Ok(_) => SYM,
                            Err(r) => {
                                let source = self.second_of(&link).map_err(spill_error)?;
                                let r = policy::via_hardlink(&escape_name(&source), r);
                                problems.push(&rel, r.rule, &r.reason);
                                GONE
                            }
                        }
                    }
                    None => SYM,
                },
                // No earlier file or symlink: verify has no staging tree that refused it; in an
                // unpack the tree linked something no record covers (the manifest itself), so
                // its content was checked by nothing. Either way the link is refused.
                other => {
                    let rel = self.name_of(&link).map_err(spill_error)?;
                    let source = self.second_of(&link).map_err(spill_error)?;
                    let r = match other {
                        Some(s) if s.kind & KIND == DIR => policy::hardlink_to_dir(),
                        _ => policy::not_an_earlier_entry(&escape_name(&source)),
                    };
                    problems.push(&rel, r.rule, &r.reason);
                    GONE
                }
            };
            self.recs[i as usize].kind = kind;
        }
        Ok(())
    }
}

fn spill_error(e: io::Error) -> Error {
    Error::Io {
        path: std::env::temp_dir(),
        source: io::Error::new(
            e.kind(),
            format!("temporary file for the manifest check: {e}"),
        ),
    }
}

/// The longest manifest line read: a hash, two spaces and a name of the longest an archive may
/// hold (64 KiB), every byte of it escaped. A longer line is refused, not buffered.
const MAX_LINE: u64 = 2 * (64 << 10) + 128;

/// Problems found, the first [`MAX_LISTED`] by name.
#[derive(Default)]
struct Problems {
    listed: Vec<Refused>,
    more: u64,
}

/// Manifest lines checked together: whole lines, `\n`-separated, numbered from `first_line`.
struct Block {
    no: usize,
    first_line: usize,
    text: Vec<u8>,
    /// The manifest ends with this block.
    last: bool,
    /// Why the lines stop here, if not at the end of the manifest.
    error: Option<Error>,
}

/// Lines per block, at most (a block also ends past [`BLOCK_BYTES`]).
const BLOCK_LINES: usize = 4096;
const BLOCK_BYTES: usize = 256 << 10;

/// Reads the next block of lines (each at most [`MAX_LINE`] bytes); `None` at the end. A line
/// too long or a failed read ends the manifest: the block carries the error, raised after its
/// lines are checked (as a check line by line would).
fn read_block(text: &mut impl BufRead, no: usize, next_line: &mut usize) -> Option<Block> {
    let first_line = *next_line;
    let mut buf = Vec::new();
    let mut lines = 0;
    let mut last = false;
    let mut error = None;
    while lines < BLOCK_LINES && buf.len() < BLOCK_BYTES {
        let start = buf.len();
        let got = match std::io::Read::take(&mut *text, MAX_LINE).read_until(b'\n', &mut buf) {
            Ok(got) => got,
            Err(e) => {
                buf.truncate(start);
                error = Some(spill_error(e));
                break;
            }
        };
        if got == 0 {
            last = true;
            break;
        }
        if got as u64 == MAX_LINE && !buf.ends_with(b"\n") {
            buf.truncate(start);
            error = Some(Error::BadArchive(format!(
                "{MANIFEST_PATH}: line {} is longer than the line of any name an archive may hold",
                first_line + lines
            )));
            break;
        }
        lines += 1;
        if !buf.ends_with(b"\n") {
            buf.push(b'\n'); // the last line, without its newline
        }
    }
    *next_line = first_line + lines;
    if lines == 0 && error.is_none() {
        return None;
    }
    buf.pop(); // the separator after the last line: `split` would see one empty line more
    Some(Block {
        no,
        first_line,
        text: buf,
        last: last || error.is_some(),
        error,
    })
}

/// What checking a block found.
#[derive(Default)]
struct Checked {
    count: u64,
    problems: Problems,
}

/// Which records a manifest line matched, set from any checking thread.
struct Matched(Vec<std::sync::atomic::AtomicU64>);

impl Matched {
    fn new(n: usize) -> Self {
        Matched((0..n.div_ceil(64)).map(|_| Default::default()).collect())
    }

    fn set(&self, i: usize) {
        self.0[i / 64].fetch_or(1 << (i % 64), Ordering::Relaxed);
    }

    fn get(&self, i: usize) -> bool {
        self.0[i / 64].load(Ordering::Relaxed) & (1 << (i % 64)) != 0
    }
}

impl Problems {
    fn push(&mut self, entry: &[u8], rule: Rule, reason: &str) {
        if self.listed.len() < MAX_LISTED {
            self.keep(Refused {
                entry: super::reported_name(entry),
                rule,
                reason: super::reported_text(reason.into()),
                more: 0,
            });
        } else {
            self.more += 1;
        }
    }

    /// Lists `r` while there is room, else counts it.
    fn keep(&mut self, r: Refused) {
        if self.listed.len() < MAX_LISTED {
            self.listed.push(r);
        } else {
            self.more += 1;
        }
    }

    /// Takes a later block's problems: the first [`MAX_LISTED`] in manifest order stay listed.
    fn absorb(&mut self, later: Problems) {
        for r in later.listed {
            self.keep(r);
        }
        self.more += later.more;
    }

    fn into(mut self, refused: &mut Vec<Refused>) {
        self.listed.sort_by(|a, b| a.entry.cmp(&b.entry));
        refused.append(&mut self.listed);
        if self.more > 0 {
            refused.push(Refused {
                entry: format!("({} more entries)", self.more),
                rule: Rule::Manifest,
                reason: "do not match the manifest either; only the first 1000 are listed".into(),
                more: self.more,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(lines: &[(&str, &[u8])]) -> Spill {
        let mut s = Spill::default();
        for (p, data) in lines {
            s.append(format!("{}  {p}\n", blake3::hash(data).to_hex()).as_bytes())
                .unwrap();
        }
        s
    }

    #[test]
    fn latest_entry_and_links_count() {
        let mut e = Expect::new();
        e.file(1, Path::new("a")).unwrap();
        e.file_hash(1, &blake3::hash(b"one"));
        e.hard_link(2, Path::new("h"), Path::new("a")).unwrap();
        e.file(3, Path::new("a")).unwrap();
        e.file_hash(3, &blake3::hash(b"two"));
        e.symlink(4, Path::new("s"), b"a").unwrap();
        let mut refused = Vec::new();
        let m = manifest(&[("a", b"two"), ("h", b"one")]);
        assert_eq!(
            e.finish(Some(m), 0, Some(false), 1, &mut refused).unwrap(),
            (Some(2), 1)
        );
        assert!(refused.is_empty(), "{refused:?}");
    }

    #[test]
    fn every_disagreement_is_named() {
        let mut e = Expect::new();
        for (i, name) in ["bad", "unlisted", "ok"].iter().enumerate() {
            e.file(i as u64 + 1, Path::new(name)).unwrap();
            e.file_hash(i as u64 + 1, &blake3::hash(name.as_bytes()));
        }
        e.hard_link(9, Path::new("h"), Path::new("nowhere"))
            .unwrap();
        let mut refused = Vec::new();
        let m = manifest(&[("bad", b"other"), ("ok", b"ok"), ("missing", b"")]);
        e.finish(Some(m), 0, Some(false), 1, &mut refused).unwrap();
        let got: Vec<String> = refused
            .iter()
            .map(|r| format!("{}: {}", r.entry, r.reason))
            .collect();
        assert_eq!(
            got,
            [
                "bad: content does not match the manifest's BLAKE3 hash",
                "h: hard link to nowhere, which is not an earlier entry of this archive",
                "missing: listed in the manifest but missing from the archive",
                "unlisted: not listed in the manifest",
            ]
        );
    }

    /// A manifest of many blocks checked on several threads finds what a check line by line
    /// finds: the same count, the same first 1000 problems in manifest order, the same count of
    /// the rest, and the first bad line's error.
    #[test]
    fn many_blocks_on_many_threads_check_as_one() {
        let n = 4 * BLOCK_LINES + 17;
        let run = |threads: usize, bad_line: Option<usize>, long_line: Option<usize>| {
            let mut e = Expect::new();
            let mut text = Vec::new();
            for i in 0..n {
                let name = format!("d/f{i:06}");
                e.file(i as u64 + 1, Path::new(&name)).unwrap();
                e.file_hash(i as u64 + 1, &blake3::hash(name.as_bytes()));
                // Every 5th listed with the wrong hash (the 1000th problem is in the second
                // block: taken out of order, others would be listed; the files not listed come
                // after, in key order, which is random per run), every 11th not listed, an
                // empty line now and then, and one listed that the archive lacks.
                if i % 11 == 0 {
                    continue;
                }
                let data = if i % 5 == 0 { "x" } else { name.as_str() };
                text.extend_from_slice(
                    format!("{}  {name}\n", blake3::hash(data.as_bytes()).to_hex()).as_bytes(),
                );
                if i % 5000 == 0 {
                    text.push(b'\n');
                }
            }
            text.extend_from_slice(format!("{}  gone\n", blake3::hash(b"").to_hex()).as_bytes());
            let long = vec![b'a'; MAX_LINE as usize];
            let mut lines: Vec<&[u8]> = text.split(|&b| b == b'\n').collect();
            if let Some(k) = bad_line {
                lines[k] = b"not a manifest line";
            }
            if let Some(k) = long_line {
                lines[k] = &long;
            }
            let text = lines.join(&b'\n');
            let mut m = Spill::default();
            m.append(&text).unwrap();
            let mut refused = Vec::new();
            let r = e
                .finish(Some(m), 0, Some(false), threads, &mut refused)
                .map(|(count, _)| count);
            let got: Vec<String> = refused
                .iter()
                .map(|r| format!("{}: {}", r.entry, r.reason))
                .collect();
            (r.map_err(|e| e.to_string()), got)
        };
        let one = run(1, None, None);
        assert!(
            one.0.is_ok() && one.1.len() == MAX_LISTED + 1,
            "{:?}",
            one.0
        );
        assert!(one.1[MAX_LISTED].starts_with('('), "{}", one.1[MAX_LISTED]);
        for threads in [2, 3, 8] {
            let many = run(threads, None, None);
            let first_difference = many.1.iter().zip(&one.1).position(|(a, b)| a != b);
            assert_eq!(
                (&many.0, many.1.len(), first_difference),
                (&one.0, one.1.len(), None),
                "{threads} threads: {:?}",
                first_difference.map(|i| (&many.1[i], &one.1[i]))
            );
        }
        // The first bad line's error, also when a line too long comes later (it ends the
        // blocks being read ahead of the check), and the line too long's alone.
        let (bad, long) = (2 * BLOCK_LINES + 5, 3 * BLOCK_LINES + 2);
        for (bad_line, long_line, named) in [
            (Some(bad), None, bad),
            (Some(bad), Some(long), bad),
            (None, Some(long), long),
        ] {
            let one = run(1, bad_line, long_line);
            let message = one.0.clone().unwrap_err();
            let at = |sep: &str| message.contains(&format!("line {}{sep}", named + 1));
            assert!(at(":") || at(" "), "{message}");
            for threads in [2, 8] {
                assert_eq!(
                    run(threads, bad_line, long_line).0,
                    one.0,
                    "{threads} threads"
                );
            }
        }
    }

    #[test]
    fn names_spill_and_read_back() {
        let mut e = Expect::new();
        let n = 200_000u64;
        for i in 0..n {
            e.file(
                i + 1,
                Path::new(&format!("dir/a-rather-long-file-name-{i:08}")),
            )
            .unwrap();
        }
        assert!(e.names.spilled());
        assert_eq!(std::mem::size_of::<Rec>(), 35);
        let r = e.recs[150_000];
        assert_eq!(
            e.name_of(&r).unwrap(),
            b"dir/a-rather-long-file-name-00150000"
        );
        let mut refused = Vec::new();
        e.finish(Some(Spill::default()), 0, None, 2, &mut refused)
            .unwrap();
        assert_eq!(refused.len(), MAX_LISTED + 1);
        assert!(refused[MAX_LISTED].entry.contains("199000 more"));
        // The files listed are the first in archive order, whatever the run's key.
        assert_eq!(refused[0].entry, "dir/a-rather-long-file-name-00000000");
        assert_eq!(
            refused[MAX_LISTED - 1].entry,
            "dir/a-rather-long-file-name-00000999"
        );
    }
}
