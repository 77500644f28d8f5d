//! `archiver list`.

use std::io::{self, BufWriter, Write};
use std::path::Path;

use anyhow::Context;
use archiver::EntryInfo;

use crate::cli::ListArgs;
use crate::Outcome;

pub fn run(args: ListArgs, cancel: &archiver::Cancel) -> anyhow::Result<Outcome> {
    let path = args.archive.as_deref().filter(|p| *p != Path::new("-"));
    if path.is_none() {
        crate::input::check_not_terminal()?;
    }
    let name = path.map_or_else(
        || "<stdin>".to_string(),
        |p| crate::input::terminal_safe(&p.display().to_string()),
    );
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(64 << 10, stdout.lock());
    let mut first = true;
    // The system's zone, TZ honoured (a zone name or a POSIX string such as UTC-9).
    let tz = jiff::tz::TimeZone::try_system().unwrap_or(jiff::tz::TimeZone::UTC);
    let each = |e: &EntryInfo| {
        let line = if args.json {
            let mut s = if first {
                "[\n".to_string()
            } else {
                ",\n".to_string()
            };
            s.push_str(&serde_json::to_string(e).expect("entry serialises"));
            s
        } else if args.long {
            format!("{}\n", long_line(e, &tz))
        } else {
            // Escaped like GNU tar, so a name cannot rewrite the terminal or forge a line.
            format!("{}\n", archiver::escape_name(&e.raw_path))
        };
        first = false;
        out.write_all(line.as_bytes())
            .map_err(archiver::Error::Output)
    };
    let result = match path {
        Some(p) => archiver::list_path(p, each),
        None if crate::input::Stdin::is_regular_file() => archiver::list_from_file(
            io::BufReader::with_capacity(256 << 10, crate::input::Stdin::new(cancel)),
            each,
        ),
        None => archiver::list(
            io::BufReader::with_capacity(256 << 10, crate::input::Stdin::new(cancel)),
            each,
        ),
    };
    let result = match result {
        Err(_) if cancel.is_cancelled() => Err(archiver::Error::Cancelled),
        other => other,
    };
    let finish = |out: &mut BufWriter<_>| -> io::Result<()> {
        if args.json {
            out.write_all(if first { b"[]\n" } else { b"\n]\n" })?;
        }
        out.flush()
    };
    match result {
        Ok(_) => match finish(&mut out) {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(Outcome::Success),
            other => {
                other.context("writing the listing")?;
                Ok(Outcome::Success)
            }
        },
        // The reader of the listing went away (`| head`): a quiet success, like other Unix tools.
        Err(e) if e.is_broken_pipe() => Ok(Outcome::Success),
        // Only the listing is written here: say so (the library's variant speaks of archives).
        Err(archiver::Error::Output(e)) => {
            Err(anyhow::Error::new(e).context("writing the listing"))
        }
        Err(e) => Err(anyhow::Error::new(e).context(name)),
    }
}

/// `-rw-r--r-- user/group   1234 2024-05-01 12:00 name -> target`, as `tar tv` prints it (local
/// time).
fn long_line(e: &EntryInfo, tz: &jiff::tz::TimeZone) -> String {
    let owner = format!(
        "{}/{}",
        e.user.clone().unwrap_or_else(|| e.uid.to_string()),
        e.group.clone().unwrap_or_else(|| e.gid.to_string())
    );
    let mut s = format!(
        "{}{} {:<17} {:>10} {} {}",
        e.kind.letter(),
        mode_string(e.mode),
        owner,
        e.size,
        time_in(e.mtime, tz),
        archiver::escape_name(&e.raw_path)
    );
    if let Some(t) = &e.raw_link_target {
        s.push_str(if e.kind == archiver::EntryKind::Hardlink {
            " link to "
        } else {
            " -> "
        });
        s.push_str(&archiver::escape_name(t));
    }
    s
}

fn mode_string(mode: u32) -> String {
    let mut s = String::with_capacity(9);
    for (i, c) in ['r', 'w', 'x', 'r', 'w', 'x', 'r', 'w', 'x']
        .into_iter()
        .enumerate()
    {
        let bit = 1 << (8 - i);
        let mut ch = if mode & bit != 0 { c } else { '-' };
        let special = match i {
            2 => mode & 0o4000 != 0,
            5 => mode & 0o2000 != 0,
            8 => mode & 0o1000 != 0,
            _ => false,
        };
        if special {
            ch = match (i, ch) {
                (8, 'x') => 't',
                (8, _) => 'T',
                (_, 'x') => 's',
                _ => 'S',
            };
        }
        s.push(ch);
    }
    s
}

/// `YYYY-MM-DD HH:MM` in `tz` (the local time zone, TZ honoured, as `tar tv` shows it).
fn time_in(t: i64, tz: &jiff::tz::TimeZone) -> String {
    match jiff::Timestamp::from_second(t) {
        Ok(ts) => ts
            .to_zoned(tz.clone())
            .strftime("%Y-%m-%d %H:%M")
            .to_string(),
        Err(_) => format!("@{t}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_modes() {
        let utc = |t| time_in(t, &jiff::tz::TimeZone::UTC);
        assert_eq!(utc(0), "1970-01-01 00:00");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13");
        assert_eq!(utc(-86_400), "1969-12-31 00:00");
        let tokyo = jiff::tz::TimeZone::fixed(jiff::tz::offset(9));
        assert_eq!(time_in(1_700_000_000, &tokyo), "2023-11-15 07:13");
        assert_eq!(mode_string(0o755), "rwxr-xr-x");
        assert_eq!(mode_string(0o4755), "rwsr-xr-x");
        assert_eq!(mode_string(0o1777), "rwxrwxrwt");
    }
}
