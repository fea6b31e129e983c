//! Benchmarks: decode speed of masks measured on the running machine.

pub mod probe;
pub mod soak;
pub mod speed;
