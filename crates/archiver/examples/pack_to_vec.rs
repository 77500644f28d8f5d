//! Pack a directory into an in-memory tar.zst and list it.
//!
//! `cargo run -p archiver --example pack_to_vec -- some/dir`

fn main() -> Result<(), archiver::Error> {
    let dir = std::env::args().nth(1).unwrap_or_else(|| ".".into());
    let mut archive = Vec::new();
    let report = archiver::Packer::new(["."])
        .directory(&dir)
        .format(archiver::Format::TarZst)
        .pack(&mut archive)?;
    println!(
        "{} files, {} bytes in, {} bytes out",
        report.stats.files,
        report.stats.bytes_in,
        archive.len()
    );
    println!("{}", report.stats.verdict());
    archiver::list(&archive[..], |e| {
        println!("{:>10} {}", e.size, e.path);
        Ok(())
    })?;
    Ok(())
}
