//! The `tracktable` binary as a user runs it.
