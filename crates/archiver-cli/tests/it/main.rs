//! CLI integration tests: one binary, so the archiver binary and the peers are set up once.

mod cli;
mod determinism;
mod faults;
mod group;
mod interop;
mod list;
mod numbers;
mod stress;
mod tarparity;
mod truncated;
mod trust;
mod unpack;
mod util;
mod zip;
