//! The command line, as agreed in CLI.md. Scripts drive `archiver` by these names: add, never rename.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Fast, deterministic, verified archives: tar, tar.gz, tar.zst and zip.
#[derive(Debug, Parser)]
#[command(
    name = "archiver",
    version,
    after_help = "Examples:\n  \
        archiver pack src -o src.tar.zst         pack a directory (stored as src/...; format from the extension)\n  \
        archiver pack -C app . | ssh pi 'archiver unpack -C /opt/app'\n  \
        archiver list src.tar.zst --long         show what an archive holds\n\n\
        Exit status: 0 success, 1 finished with warnings, 2 error, 130 interrupted."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// Print only errors
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// List each entry on stderr as it is written, like tar -v (-vv: debug messages too); RUST_LOG overrides
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Pack files and directories into an archive
    #[command(
        after_help = "Paths are stored as given, like GNU tar: `archiver pack app` stores app/src/x; \
        `archiver pack -C app .` stores src/x. A leading / or .. is removed with a warning.\n\
        Entries are sorted by name; the output is byte-identical for any -j.\n\n\
        Examples:\n  archiver pack -C site . -o site.tar.gz --exclude '*.o' --exclude target/\n  \
        SOURCE_DATE_EPOCH=1700000000 archiver pack --reproducible dist -o dist.tar"
    )]
    Pack(PackArgs),
    /// Extract an archive safely, checking every file against its embedded manifest
    #[command(
        after_help = "The format is detected from the bytes. Files appear under their final names only \
        after the whole archive was read and verified; entries that would escape DIR (absolute paths, `..`, \
        symlinks leading out unless --allow-outside-links) are refused; devices and FIFOs are skipped with a warning.\n\nExamples:\n  archiver unpack site.tar.zst -C /srv/site\n  \
        archiver pack -C app . | ssh pi 'archiver unpack -C /opt/app'"
    )]
    Unpack(UnpackArgs),
    /// List the entries of an archive (tar, tar.gz, tar.zst, zip)
    List(ListArgs),
    /// Read a whole archive and check every checksum and the manifest, extracting nothing
    Verify(VerifyArgs),
    /// One archive per file stem: model1.dat + model1.out -> OUTDIR/model1.zip
    #[command(
        after_help = "The stem is the file name up to its last dot. Only regular files directly in DIR \
        are grouped. Stems are packed in parallel; one failing stem does not stop the others (summary on \
        stderr naming each failed stem and why; exit 2 if any failed).\n\nExample:\n  archiver group runs/ -o archives/ --ext dat,out"
    )]
    Group(GroupArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    #[command(
        after_help = "Example:\n  archiver completions bash > /etc/bash_completion.d/archiver"
    )]
    Completions {
        /// The shell
        shell: clap_complete::Shell,
    },
    /// Print a man page (roff) on stdout: archiver(1), or archiver-SUBCOMMAND(1)
    #[command(hide = true)]
    Man {
        /// A subcommand (pack, unpack, list, verify, group, completions)
        subcommand: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct GroupArgs {
    /// Directory whose files are grouped
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Where the archives go (created if missing)
    #[arg(short, long, value_name = "OUTDIR")]
    pub output: PathBuf,
    /// Only files with these extensions (comma-separated, e.g. dat,out)
    #[arg(long, value_name = "a,b,...", value_delimiter = ',')]
    pub ext: Vec<String>,
    /// tar | tar.gz | tar.zst | zip
    #[arg(short, long, value_name = "FMT", default_value = "zip")]
    pub format: String,
    /// Stems packed at once (default: all cores)
    #[arg(short, long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub jobs: Option<u32>,
    /// Compression level
    #[arg(short, long, value_name = "N")]
    pub level: Option<u32>,
    /// Do not embed the BLAKE3 manifest
    #[arg(long)]
    pub no_manifest: bool,
    /// Show a progress bar over the stems (default: when stderr is a terminal)
    #[arg(long, overrides_with = "no_progress")]
    pub progress: bool,
    /// Never show a progress bar
    #[arg(long)]
    pub no_progress: bool,
}

#[derive(Debug, Args)]
pub struct UnpackArgs {
    /// The archive; '-' or omitted = stdin
    #[arg(value_name = "ARCHIVE")]
    pub archive: Option<PathBuf>,
    /// Destination (created if missing)
    #[arg(
        short = 'C',
        long = "directory",
        value_name = "DIR",
        default_value = "."
    )]
    pub directory: PathBuf,
    /// Writer threads (default: all cores)
    #[arg(short, long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub jobs: Option<u32>,
    /// Never modify a file that already exists (default: replace it atomically)
    #[arg(short, long)]
    pub keep_existing: bool,
    /// Drop N leading path components from entry names, as GNU tar does (also from hard-link
    /// targets); entries with no more than N components are skipped
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub strip_components: usize,
    /// Fail (exit 2) unless the archive carries a manifest and every file matches it
    #[arg(long)]
    pub require_manifest: bool,
    /// Trusted archives only: create symlinks that are absolute or lead outside DIR as they are
    /// (e.g. bin/python -> /usr/bin/python3); nothing is ever written through a symlink
    #[arg(long)]
    pub allow_outside_links: bool,
    /// Do not wait for the data to reach the disk (faster; a power cut may lose it)
    #[arg(long)]
    pub no_sync: bool,
    /// Refuse archives that expand to more than this many bytes (500M, 1.5G, 20GiB, 1T: binary multiples)
    #[arg(long, value_name = "SIZE", default_value = "1T", value_parser = parse_size)]
    pub max_output: u64,
    /// Show a progress bar (default: when stderr is a terminal)
    #[arg(long, overrides_with = "no_progress")]
    pub progress: bool,
    /// Never show a progress bar
    #[arg(long)]
    pub no_progress: bool,
    /// Print counts, time and rate to stderr at the end (the same counts as pack's --stats)
    #[arg(long)]
    pub stats: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The archive; '-' = stdin
    #[arg(value_name = "ARCHIVE")]
    pub archive: PathBuf,
    /// Also compare every entry with this directory (type, size, mode, content, link target)
    #[arg(long, value_name = "DIR")]
    pub against: Option<PathBuf>,
    /// Fail (exit 2) unless the archive carries a manifest and every file matches it
    #[arg(long)]
    pub require_manifest: bool,
    /// Reader threads (default: all cores)
    #[arg(short, long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub jobs: Option<u32>,
    /// Show a progress bar (default: when stderr is a terminal)
    #[arg(long, overrides_with = "no_progress")]
    pub progress: bool,
    /// Never show a progress bar
    #[arg(long)]
    pub no_progress: bool,
    /// Print counts, time and rate to stderr at the end (the same counts as pack's --stats)
    #[arg(long)]
    pub stats: bool,
}

/// `123`, `10K`, `5M`, `2G`, `1T` (powers of 1024).
/// A size such as `500M`, `1.5G`, `20GiB` or `1T` (binary multiples, as GNU tools read them).
fn parse_size(s: &str) -> Result<u64, String> {
    parse_size::Config::new()
        .with_binary()
        .parse_size(s.trim())
        .map_err(|e| format!("{s:?} is not a size ({e}; examples: 500M, 1.5G, 20GiB)"))
}

#[derive(Debug, Args)]
pub struct PackArgs {
    /// Files and directories to pack, stored as given (`app` stores app/...; `-C app .` stores the contents)
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Change to DIR first: PATHs are relative to it (GNU tar's -C)
    #[arg(short = 'C', long = "directory", value_name = "DIR")]
    pub directory: Option<PathBuf>,
    /// Write the archive here; '-' = stdout (the default when stdout is not a terminal)
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// tar | tar.gz | tar.zst | zip (default: from the -o extension; tar on stdout)
    #[arg(short, long, value_name = "FMT", value_parser = ["tar", "tar.gz", "tgz", "tar.zst", "tzst", "zip"])]
    pub format: Option<String>,
    /// zip entries: deflate (default; every reader has it), zstd (smaller, faster; few readers) or store
    #[arg(long, value_name = "METHOD", default_value = "deflate", value_parser = ["deflate", "zstd", "store"])]
    pub zip_method: String,
    /// Worker threads (default: all cores); the output is identical for every value
    #[arg(short, long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub jobs: Option<u32>,
    /// Compression level (gzip/deflate 1-9, default 6; zstd 1-19, default 3)
    #[arg(short, long, value_name = "N")]
    pub level: Option<u32>,
    /// Leave out paths matching GLOB (repeatable), matched against the stored path as GNU tar
    /// does: `*.o`, `build/`, `app/src`; `./x` only at the top
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// Honour .gitignore and .ignore files (default: pack everything, hidden files too)
    #[arg(long)]
    pub ignore_files: bool,
    /// Store what symbolic links point to instead of the links
    #[arg(long)]
    pub follow_symlinks: bool,
    /// Mtimes clamped to SOURCE_DATE_EPOCH (or 0): later ones become it; uid/gid 0, no
    /// user/group names
    #[arg(long)]
    pub reproducible: bool,
    /// Do not append the BLAKE3 manifest .archiver/MANIFEST.b3
    #[arg(long)]
    pub no_manifest: bool,
    /// Treat warnings (vanished, changed or unreadable files) as errors
    #[arg(long)]
    pub strict: bool,
    /// Print per-stage statistics to stderr at the end
    #[arg(long)]
    pub stats: bool,
    /// Write the statistics as JSON to FILE (`-`: stdout, when the archive goes to -o FILE)
    #[arg(long, value_name = "FILE")]
    pub stats_json: Option<PathBuf>,
    /// Show a progress bar (default: when stderr is a terminal)
    #[arg(long, overrides_with = "no_progress")]
    pub progress: bool,
    /// Never show a progress bar
    #[arg(long)]
    pub no_progress: bool,
    /// Memory for file data in flight, in MiB
    #[arg(long, value_name = "MIB", default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    pub memory: u64,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// The archive; '-' or omitted = stdin
    #[arg(value_name = "ARCHIVE")]
    pub archive: Option<PathBuf>,
    /// Type, mode, owner, size, mtime, name and link target, like `tar tv`
    #[arg(short, long)]
    pub long: bool,
    /// One JSON array of entry objects, with every field (so --long adds nothing to it)
    #[arg(long)]
    pub json: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }
}
