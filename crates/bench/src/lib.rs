//! The end-to-end benchmark (`tracktable-bench`) and the CPU pinning that gives the
//! warehouse cores of its own. Developer tooling: nothing here ships in `tracktable`.

pub mod affinity;
pub mod benchmark;
