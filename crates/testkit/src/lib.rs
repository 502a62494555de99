//! What tracktable's tests and benches stand on, kept out of the product crate:
//!
//! - [`emulate`]: PostgreSQL standing in for Redshift, as the Redshift loader's
//!   statement executor (it performs `COPY ... FROM 's3://'` itself);
//! - [`redshift`]: a Redshift pipeline file run in-process through that emulator;
//! - [`serverless`]: a stand-in for Redshift Serverless' `GetCredentials`;
//! - [`counting`]: a warehouse that only counts, to measure the dataflow alone;
//! - [`services`]: PostgreSQL and moto for the integration tests, found or started;
//! - [`support`]: the integration tests' fixtures (services, unique names, waits).

pub mod counting;
pub mod emulate;
pub mod redshift;
pub mod serverless;
pub mod services;
pub mod support;
