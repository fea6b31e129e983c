//! Benchmarks: decode speed of masks measured on the running machine.

pub mod speed;
