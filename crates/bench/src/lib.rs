//! The end-to-end benchmark (`tracktable-bench`), the CPU pinning that gives the
//! warehouse cores of its own, and the noise-free measures (CPU and instructions per
//! event). Developer tooling: nothing here ships in `tracktable`.

pub mod affinity;
pub mod benchmark;
pub mod measures;
pub mod workload;
