//! `archiver unpack` and `archiver verify`.

use std::io;
use std::path::Path;

use anyhow::bail;
use archiver::Unpacker;

use crate::cli::{UnpackArgs, VerifyArgs};
use crate::Outcome;

pub fn run(args: UnpackArgs, cancel: &archiver::Cancel) -> anyhow::Result<Outcome> {
    let mut u = Unpacker::new(&args.directory)
        .keep_existing(args.keep_existing)
        .sync(!args.no_sync)
        .max_output(args.max_output)
        .cancel_with(cancel.clone());
    if let Some(j) = args.jobs {
        u = u.jobs(j as usize);
    }
    let path = args.archive.as_deref().filter(|p| *p != Path::new("-"));
    let result = match path {
        Some(p) => u.unpack_path(p),
        None => u.unpack(io::BufReader::with_capacity(256 << 10, io::stdin().lock())),
    };
    finish(result, path)
}

pub fn verify(args: VerifyArgs, cancel: &archiver::Cancel) -> anyhow::Result<Outcome> {
    let mut u = Unpacker::verify_only().cancel_with(cancel.clone());
    if let Some(dir) = &args.against {
        u = u.against(dir);
    }
    if let Some(j) = args.jobs {
        u = u.jobs(j as usize);
    }
    let path = Some(args.archive.as_path()).filter(|p| *p != Path::new("-"));
    let result = match path {
        Some(p) => u.unpack_path(p),
        None => u.unpack(io::BufReader::with_capacity(256 << 10, io::stdin().lock())),
    };
    let outcome = finish(result, path)?;
    Ok(outcome)
}

fn finish(
    result: archiver::Result<archiver::UnpackReport>,
    path: Option<&Path>,
) -> anyhow::Result<Outcome> {
    let name = path.map_or_else(|| "<stdin>".to_string(), |p| p.display().to_string());
    match result {
        Ok(report) => {
            if report.stats.manifest_checked.is_none() {
                tracing::info!("{name}: no embedded manifest; checked CRCs and checksums only");
            }
            for w in &report.warnings {
                println!("{}: {}", w.path.display(), w.message);
            }
            Ok(if report.warnings.is_empty() {
                Outcome::Success
            } else {
                Outcome::Warnings
            })
        }
        Err(archiver::Error::Refused(list)) => {
            for r in &list {
                eprintln!("archiver: {}: {}", r.entry, r.reason);
            }
            bail!(
                "{name}: {} entr{} refused or failed verification; no file was given its final name",
                list.len(),
                if list.len() == 1 { "y" } else { "ies" }
            )
        }
        Err(e) => Err(anyhow::Error::new(e).context(name)),
    }
}
