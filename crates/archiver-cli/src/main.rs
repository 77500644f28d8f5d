//! The `archiver` binary: the command-line definition plus glue around the `archiver` library.
//! Exit codes: 0 success, 1 finished with warnings, 2 fatal, 130 interrupted.

mod cli;
mod group;
mod input;
mod list;
mod output;
mod pack;
mod progress;
mod unpack;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc 3's `mi_option_e` indices, from its header (`c_src/mimalloc/v3/include/mimalloc.h`
/// in libmimalloc-sys, whose Rust constants stop short of these): both crates are pinned exactly,
/// so re-read that enum when bumping them.
const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Before the first allocation (a constructor: the Rust runtime allocates before `main`, and
/// mimalloc reads the eager-commit option when it reserves its first arena): commit the
/// allocator's memory as it is used and give freed pages back at once. mimalloc 3's defaults keep
/// them (a 1000 ms purge delay, arenas committed eagerly): pack tar.zst of a 239 MiB tree peaked
/// at 149 MiB against glibc's 39 MiB; with these, 67 MiB. Values set here win over mimalloc's
/// own reading of `MIMALLOC_*` variables, whichever constructor runs first.
#[ctor::ctor]
unsafe fn tune_allocator() {
    // SAFETY: plain stores into mimalloc's option table, made at load time while the process
    // has one thread; they allocate nothing and use nothing of Rust's runtime.
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0);
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0);
    }
}

/// How a command ended, when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// Finished, but something was skipped or differed (exit 1).
    Warnings,
}

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    init_tracing(&cli.global);
    raise_open_file_limit();
    let cancel = archiver::Cancel::new();
    {
        let cancel = cancel.clone();
        // SIGINT, SIGTERM and SIGHUP: ask the run to stop; it cleans up and we exit 130. Every stage
        // watches the flag, but a write blocked on a consumer that reads nothing cannot see it, so a
        // watchdog ends the process after a grace period; a second signal ends it at once. Either way
        // the temporary output file goes first, and so does an unpack's staging directory if it
        // holds only what this run made. Neither cuts short a step that must finish (an unpack
        // moving entries into place or back, removing its staging directory:
        // `Cancel::abandon` says when it is safe); a third signal ends the process whatever it
        // leaves. Nothing here may panic or block on stderr (a closed or paused terminal).
        let signals = std::sync::atomic::AtomicUsize::new(0);
        let _ = ctrlc::set_handler(move || {
            let n = signals.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            if n >= 3 {
                output::remove_temporaries();
                std::process::exit(130);
            }
            if n == 2 {
                // On a thread of its own: removing a large staging directory takes a while, and
                // this handler must stay free to take a third signal meanwhile.
                let cancel = cancel.clone();
                std::thread::spawn(move || {
                    if cancel.abandon() {
                        output::remove_temporaries();
                        std::process::exit(130);
                    }
                    say("archiver: still finishing (putting files in place or back as they were, removing the staging directory); interrupt again to stop at once and leave it half done");
                });
                return;
            }
            cancel.cancel();
            let cancel = cancel.clone();
            std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_secs(2));
                while !cancel.abandon() {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                output::remove_temporaries();
                say("archiver: interrupted");
                std::process::exit(130);
            });
        });
    }
    match run(cli, &cancel) {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::Warnings) => ExitCode::from(1),
        Err(err) => {
            if let Some(archiver::Error::Cancelled) = err.downcast_ref::<archiver::Error>() {
                say("archiver: interrupted");
                return ExitCode::from(130);
            }
            say(&format!("archiver: {}", chain(&err)));
            ExitCode::from(2)
        }
    }
}

/// Prints a line on stderr, ignoring a stderr that is closed or failing: a last message must
/// not turn an exit status into a panic.
fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// A command line clap refused: help and version as clap prints them; anything else as every
/// other diagnostic, `archiver: <what>` on stderr (CLI.md), exit 2.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
        _ => {
            let text = e.render().to_string();
            let text = text.strip_prefix("error: ").unwrap_or(&text);
            // The user's own arguments come back in it: no raw control characters (CLI.md).
            let shown: Vec<String> = text.lines().map(input::terminal_safe).collect();
            say(&format!("archiver: {}", shown.join("\n").trim_end()));
            ExitCode::from(2)
        }
    }
}

fn run(cli: cli::Cli, cancel: &archiver::Cancel) -> anyhow::Result<Outcome> {
    match cli.command {
        cli::Command::Pack(args) => {
            pack::run(args, cli.global.quiet, cli.global.verbose > 0, cancel)
        }
        cli::Command::List(args) => list::run(args, cancel),
        cli::Command::Unpack(args) => {
            unpack::run(args, cli.global.quiet, cli.global.verbose, cancel)
        }
        cli::Command::Verify(args) => unpack::verify(args, cli.global.quiet, cancel),
        cli::Command::Group(args) => group::run(args, cli.global.quiet, cancel),
        cli::Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut text = Vec::new();
            clap_complete::generate(shell, &mut cli::Cli::command(), "archiver", &mut text);
            print_quietly(&text)
        }
        cli::Command::Man { subcommand } => {
            use clap::CommandFactory;
            let top = cli::Cli::command();
            let page = match subcommand {
                None => top,
                Some(name) => top
                    .find_subcommand(&name)
                    .cloned()
                    .ok_or_else(|| anyhow::anyhow!("no subcommand {name:?}"))?
                    // clap names are &'static str; this runs once per process.
                    .name(&*Box::leak(format!("archiver-{name}").into_boxed_str())),
            };
            let mut text = Vec::new();
            clap_mangen::Man::new(page).render(&mut text)?;
            print_quietly(&text)
        }
    }
}

/// The walk holds one directory handle per level of the tree it is in (plus a bounded lookahead):
/// raise the soft limit on open files to the hard limit so that very deep trees do not run out
/// (Linux's default soft limit is 1024). Best effort; macOS caps it at OPEN_MAX.
fn raise_open_file_limit() {
    #[cfg(unix)]
    // SAFETY: getrlimit/setrlimit on our own process with a valid, initialised struct.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            #[cfg(target_os = "macos")]
            let max = lim.rlim_max.min(libc::OPEN_MAX as libc::rlim_t);
            #[cfg(not(target_os = "macos"))]
            let max = lim.rlim_max;
            lim.rlim_cur = max.max(lim.rlim_cur);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Writes text to stdout; a reader that went away (`| head`) is not an error.
fn print_quietly(text: &[u8]) -> anyhow::Result<Outcome> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(Outcome::Success),
    }
}

/// `outer: inner: innermost`, each cause once.
fn chain(err: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in err.chain() {
        let s = cause.to_string();
        if !s.is_empty() && parts.last() != Some(&s) {
            parts.push(s);
        }
    }
    input::terminal_safe(&parts.join(": "))
}

fn init_tracing(global: &cli::Global) {
    use tracing_subscriber::EnvFilter;
    let default = match (global.quiet, global.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, _) => "debug",
    };
    let filter = EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .event_format(Plain)
        .try_init();
}

/// Formats events as `archiver: <message>` (plus the level when it is not a warning or error), the
/// way Unix tools print diagnostics.
struct Plain;

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for Plain
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let level = *event.metadata().level();
        write!(writer, "archiver: ")?;
        if level > tracing::Level::WARN {
            write!(writer, "{}: ", level.as_str().to_ascii_lowercase())?;
        }
        // Fields may carry names from an archive: no raw control characters reach the terminal.
        let mut text = String::new();
        ctx.field_format().format_fields(
            tracing_subscriber::fmt::format::Writer::new(&mut text),
            event,
        )?;
        writeln!(writer, "{}", input::terminal_safe(&text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The constructor ran (a linker that dropped it would bring back mimalloc's 2-4x peak RSS).
    #[test]
    fn allocator_is_tuned_before_main() {
        // SAFETY: plain getters of mimalloc's option table.
        let (eager, delay) = unsafe {
            (
                libmimalloc_sys::mi_option_get(MI_OPTION_ARENA_EAGER_COMMIT),
                libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY),
            )
        };
        assert_eq!((eager, delay), (0, 0));
    }
}
