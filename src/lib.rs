//! tracktable streams Segment-spec clickstream events from S3 into Redshift and
//! PostgreSQL: one table per tracked event, one column per property.
//!
//! The modules follow the data (ARCHITECTURE.md has the drawing):
//!
//! - [`config`]: the pipeline file, validated; [`conninfo`]: connection strings, masked.
//! - [`source`]: where objects come from (a directory, SQS notifications, an S3 prefix).
//! - [`decode`]: an object's bytes → messages or rejections (framing, gzip, limits).
//! - [`route`]: a message → typed rows for its tables (naming, flattening, typing, plan).
//! - [`columns`]: the distinct (table, column, type) a batch needs.
//! - [`batch`]: batch numbers and when a batch closes.
//! - [`dataflow`]: the timely operators, wired.
//! - [`load`]: hands a closed batch to the warehouse and retries it.
//! - [`warehouse`]: where rows land (PostgreSQL, Redshift).
//! - [`run`], [`backfill`], [`shutdown`]: one process of the pipeline, start to stop.
//! - [`report`]: errors for people, each cause once.
//! - [`retry`]: the one retry policy (the AWS SDK's included).
//! - [`telemetry`], [`metrics`], [`freshness`], [`allocator`]: what the process reports,
//!   and its heap.
//! - [`admin`], [`explain`], `demo`: the operator's other commands.

pub mod admin;
pub mod allocator;
pub mod backfill;
pub mod batch;
pub mod columns;
pub mod config;
pub mod conninfo;
pub mod dataflow;
pub mod decode;
#[cfg(feature = "demo")]
pub mod demo;
pub mod explain;
pub mod freshness;
pub mod load;
pub mod metrics;
pub mod report;
pub mod retry;
pub mod route;
pub mod run;
pub mod shutdown;
pub mod source;
pub mod stable_hash;
pub mod telemetry;
pub mod warehouse;
