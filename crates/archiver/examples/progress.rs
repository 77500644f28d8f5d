//! Report progress from the pipeline: totals are known up front, so a percentage is meaningful.
//!
//! `cargo run -p archiver --example progress -- some/dir > /dev/null`

fn main() -> Result<(), archiver::Error> {
    let dir = std::env::args().nth(1).unwrap_or_else(|| ".".into());
    let report = archiver::Packer::new(["."])
        .directory(&dir)
        .format(archiver::Format::TarGz)
        .on_progress(|p| {
            let pct = if p.bytes_total == 0 {
                100.0
            } else {
                100.0 * p.bytes_done as f64 / p.bytes_total as f64
            };
            eprint!(
                "\r{pct:5.1}%  {}/{} entries",
                p.entries_done, p.entries_total
            );
        })
        .pack(std::io::sink())?;
    eprintln!("\ndone in {:.2?}", report.stats.wall);
    Ok(())
}
