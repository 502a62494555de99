//! tracktable streams Segment-spec clickstream events from S3 into Redshift and
//! PostgreSQL: one table per tracked event, one column per property.
//!
//! # Layout
//!
//! The modules follow the data (see ARCHITECTURE.md for the drawing):
//!
//! - [`decode`]: an object's bytes → messages or rejections (framing, gzip, limits).
//! - [`route`]: a message → typed rows for its tables (naming, flattening, typing).
//! - [`generate`]: deterministic sample Segment traffic, for demos, tests and benches.
//! - [`explain`]: what each input line becomes, as JSON, for people and tests.
//! - [`dataflow`], [`run`], [`load`], [`source`]: the timely/differential pipeline.
//! - [`warehouse`]: where rows land (PostgreSQL; Redshift next).
//! - [`demo`], [`local_postgres`], [`admin`]: the operator-facing commands.
//! - [`benchmark`], [`affinity`]: `tracktable bench`, and the CPUs it gives the warehouse.

pub mod admin;
pub mod affinity;
pub mod allocator;
pub mod backfill;
pub mod batch;
pub mod benchmark;
pub mod columns;
pub mod config;
pub mod dataflow;
pub mod decode;
pub mod demo;
pub mod explain;
pub mod generate;
pub mod load;
pub mod local_postgres;
pub mod metrics;
pub mod route;
pub mod run;
pub mod shutdown;
pub mod source;
pub mod stable_hash;
pub mod telemetry;
pub mod warehouse;
