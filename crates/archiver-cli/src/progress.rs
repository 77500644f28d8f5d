//! Progress: a bar on stderr when it is a terminal; with `--progress` on a non-terminal (a log, CI),
//! one plain line per second instead. Never with -q or --no-progress. The pipeline reports at most
//! every 50 ms from its writer thread and indicatif redraws at most 15 times a second, so progress
//! costs the pipeline nothing measurable.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Where progress goes.
pub enum Reporter {
    /// The bar, and whether it shows an ETA yet (only once the totals are final).
    Bar(ProgressBar, std::sync::atomic::AtomicBool),
    Lines(Mutex<Option<Instant>>),
}

impl Reporter {
    /// A reporter counting items (e.g. stems) instead of bytes.
    pub fn counter(force: bool, never: bool, quiet: bool, unit: &str) -> Option<Reporter> {
        let r = Self::new(force, never, quiet)?;
        if let Reporter::Bar(bar, _) = &r {
            bar.set_style(
                ProgressStyle::with_template(&format!("{{spinner}} [{{elapsed_precise}}] [{{wide_bar}}] {{pos}}/{{len}} {unit} ETA {{eta}}"))
                    .expect("valid template")
                    .progress_chars("=> "),
            );
        }
        Some(r)
    }

    /// A reporter, if progress should be shown.
    pub fn new(force: bool, never: bool, quiet: bool) -> Option<Reporter> {
        let tty = std::io::stderr().is_terminal();
        if never || !(force || (!quiet && tty)) {
            return None;
        }
        if !tty {
            return Some(Reporter::Lines(Mutex::new(None)));
        }
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr_with_hz(15));
        // Until the walk has finished the total still grows: a rate, but no ETA.
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bytes} of {total_bytes}+ {bytes_per_sec} {msg}",
            )
            .expect("valid template"),
        );
        Some(Reporter::Bar(
            bar,
            std::sync::atomic::AtomicBool::new(false),
        ))
    }

    fn show_eta(bar: &ProgressBar) {
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] [{wide_bar}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
    }

    pub fn update(&self, p: &archiver::Progress) {
        match self {
            Reporter::Bar(bar, eta) => {
                use std::sync::atomic::Ordering;
                if p.totals_final && !eta.swap(true, Ordering::Relaxed) {
                    Self::show_eta(bar);
                }
                bar.set_length(p.bytes_total);
                bar.set_position(p.bytes_done);
                if p.entries_total > 0 {
                    let more = if p.totals_final { "" } else { "+" };
                    bar.set_message(format!(
                        "{}/{}{more} entries",
                        p.entries_done, p.entries_total
                    ));
                }
            }
            Reporter::Lines(last) => {
                let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
                let done = p.bytes_total > 0 && p.bytes_done >= p.bytes_total;
                if done || last.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                    *last = Some(Instant::now());
                    let of = if p.bytes_total > 0 {
                        format!(" of {}", HumanBytes(p.bytes_total))
                    } else {
                        String::new()
                    };
                    let entries = if p.entries_total > 0 {
                        format!(", {}/{} entries", p.entries_done, p.entries_total)
                    } else {
                        String::new()
                    };
                    eprintln!(
                        "archiver: progress: {}{of}{entries}",
                        HumanBytes(p.bytes_done)
                    );
                }
            }
        }
    }

    /// Progress in items rather than bytes.
    pub fn count(&self, done: u64, total: u64, unit: &str) {
        match self {
            Reporter::Bar(bar, eta) => {
                if !eta.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    Self::show_eta(bar);
                }
                bar.set_length(total);
                bar.set_position(done);
            }
            Reporter::Lines(last) => {
                let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
                if done == total || last.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                    *last = Some(Instant::now());
                    eprintln!("archiver: progress: {done}/{total} {unit}");
                }
            }
        }
    }

    pub fn finish(&self) {
        if let Reporter::Bar(bar, _) = self {
            bar.finish_and_clear();
        }
    }
}

/// Counts the bytes of an archive as they are read, for unpack and verify progress.
pub struct ProgressReader<'a, R> {
    inner: R,
    total: u64,
    done: u64,
    reported: u64,
    reporter: &'a Reporter,
}

impl<'a, R> ProgressReader<'a, R> {
    pub fn new(inner: R, total: u64, reporter: &'a Reporter) -> Self {
        ProgressReader {
            inner,
            total,
            done: 0,
            reported: 0,
            reporter,
        }
    }
}

impl<R: std::io::Read> std::io::Read for ProgressReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.done += n as u64;
        if self.done - self.reported >= 1 << 20 || (n == 0 && self.done > self.reported) {
            self.reported = self.done;
            self.reporter.update(&archiver::Progress {
                bytes_done: self.done,
                bytes_total: self.total.max(self.done),
                totals_final: self.total > 0,
                ..Default::default()
            });
        }
        Ok(n)
    }
}
