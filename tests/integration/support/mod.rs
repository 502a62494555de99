//! The shared fixtures, and the binary under test (only this package's tests can name it).

#![allow(unused_imports)]

pub use tracktable_testkit::support::*;

/// The `tracktable` binary under test.
pub fn binary() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_BIN_EXE_tracktable"))
}

pub mod large_object;
