//! Cancel a running pack from another thread: the run ends promptly with `Error::Cancelled`.
//!
//! `cargo run -p archiver --example cancel -- some/big/dir`

use std::time::Duration;

fn main() {
    let dir = std::env::args().nth(1).unwrap_or_else(|| ".".into());
    let packer = archiver::Packer::new(["."])
        .directory(&dir)
        .format(archiver::Format::TarGz);
    let cancel = packer.cancel_handle();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        cancel.cancel();
    });
    match packer.pack(std::io::sink()) {
        Err(archiver::Error::Cancelled) => println!("cancelled after 100 ms, as asked"),
        Ok(r) => println!("finished before the cancel: {} files", r.stats.files),
        Err(e) => println!("failed: {e}"),
    }
}
