//! Micro-benchmarks live in benches/stages.rs.
