//! Unpack any archive from any `Read` (here stdin), verified against its manifest.
//!
//! `archiver pack src/ | cargo run -p archiver --example unpack_from_reader -- /tmp/out`

fn main() -> Result<(), archiver::Error> {
    let dest = std::env::args().nth(1).unwrap_or_else(|| "out".into());
    let report = archiver::Unpacker::new(&dest).unpack(std::io::stdin().lock())?;
    match report.stats.manifest_checked {
        Some(n) => println!(
            "{} files in {dest}, {n} checked against the manifest",
            report.stats.files
        ),
        None => println!(
            "{} files in {dest} (no manifest in this archive)",
            report.stats.files
        ),
    }
    Ok(())
}
