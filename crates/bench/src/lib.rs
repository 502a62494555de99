//! The end-to-end benchmark (`tracktable-bench`), the CPU pinning that gives the
//! warehouse cores of its own, the noise-free measures (CPU and instructions per
//! event) and freshness under a steady stream. Developer tooling: nothing here ships
//! in `tracktable`.

pub mod affinity;
pub mod benchmark;
pub mod freshness;
pub mod measures;
pub mod workload;
