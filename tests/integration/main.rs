//! Integration scenarios against real services: the PostgreSQL on 127.0.0.1:5432 (or
//! `DATABASE_URL`) and the moto S3/SQS server at `TRACKTABLE_MOTO_URL` that `.ci/run`
//! starts. One binary for all scenarios (faster to link than one per file); one scenario
//! per module. Every scenario makes its own schema, bucket and queue, so they run in
//! parallel and leave nothing behind.
//!
//! Without a service a scenario is skipped with a note, except under `CI=true`, where
//! it fails: CI must never pass by skipping.

mod accounting;
mod backfill;
mod batching;
mod cli;
mod dataflow;
mod deploy;
mod failures;
mod freshness;
mod large_objects;
mod metrics;
mod postgres;
mod redshift;
mod smoke;
mod sqs;
mod support;
mod tls;
