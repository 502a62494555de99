//! A Redshift pipeline run in-process, with PostgreSQL standing in for the cluster and an
//! S3 emulator (moto) for the staging bucket.

use std::path::Path;
use std::sync::Arc;

use aws_config::BehaviorVersion;
use tracktable::admin::Check;
use tracktable::config::{Pipeline, PipelineFile, RedshiftAuth, RedshiftFile, WarehouseFile};
use tracktable::run::{RunOptions, RunSummary};
use tracktable::warehouse::redshift::RedshiftWarehouse;

use crate::emulate::Emulator;

/// The emulator client's keys: temporary ones, as an instance or task role gives, so
/// a COPY presenting the chain's keys carries a session token.
pub const ACCESS_KEY_ID: &str = "ASIATESTING";
pub const SECRET_ACCESS_KEY: &str = "testing-secret";
pub const SESSION_TOKEN: &str = "testing-session-token";

/// The emulator client's credentials.
pub fn credentials() -> aws_sdk_s3::config::Credentials {
    aws_sdk_s3::config::Credentials::new(
        ACCESS_KEY_ID,
        SECRET_ACCESS_KEY,
        Some(SESSION_TOKEN.to_owned()),
        None,
        "emulator",
    )
}

/// The AWS configuration every emulator client shares: `endpoint`, `us-east-1` and the
/// dummy credentials.
async fn emulator_config(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(credentials())
        .load()
        .await
}

/// An S3 client for an emulator at `endpoint`: path-style, with dummy credentials.
pub async fn s3_client(endpoint: &str) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::config::Builder::from(&emulator_config(endpoint).await)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// A Redshift API client for an emulator at `endpoint`, with the same dummy credentials.
pub async fn redshift_client(endpoint: &str) -> aws_sdk_redshift::Client {
    aws_sdk_redshift::Client::new(&emulator_config(endpoint).await)
}

/// A Redshift Serverless API client for a stand-in at `endpoint`, with the same dummy
/// credentials.
pub async fn serverless_client(endpoint: &str) -> aws_sdk_redshiftserverless::Client {
    aws_sdk_redshiftserverless::Client::new(&emulator_config(endpoint).await)
}

/// The role the emulated cluster may use: test pipelines name it for COPY, and the
/// emulator refuses any other.
pub const IAM_ROLE: &str = "arn:aws:iam::000000000000:role/tracktable-test";

/// The validated pipeline at `path` and its Redshift warehouse file.
fn redshift_pipeline(path: &Path) -> Result<(Pipeline, RedshiftFile), String> {
    let pipeline = PipelineFile::read(path)
        .and_then(|file| file.validate(path))
        .map_err(|error| error.to_string())?;
    let WarehouseFile::Redshift(file) = &pipeline.warehouse else {
        return Err("the pipeline's warehouse is not Redshift".into());
    };
    let file = (**file).clone();
    Ok((pipeline, file))
}

/// The warehouse of `file` with its statements through the emulator (each appended to
/// `statement_log`), staging at `warehouse.staging.endpoint_url` and, with `auth =
/// "iam"`, the Redshift (or Serverless) API at `warehouse.endpoint_url`, all with the emulator's keys.
async fn emulated(
    file: &RedshiftFile,
    statement_log: Option<&Path>,
) -> Result<RedshiftWarehouse, String> {
    let endpoint = file
        .staging
        .endpoint_url
        .as_deref()
        .ok_or("warehouse.staging.endpoint_url must name the S3 emulator")?;
    let s3 = s3_client(endpoint).await;
    // The emulated system tables are written as the test database's own user: with
    // `auth = "iam"` the URL's user signs in only through temporary credentials.
    let system_url = match file.auth {
        RedshiftAuth::Iam => crate::support::database_url(),
        RedshiftAuth::Password => file.url.clone(),
    };
    let emulator = Emulator::new(s3.clone(), &system_url, statement_log)
        .map_err(|error| error.to_string())?
        .with_iam_role(IAM_ROLE);
    let mut warehouse = RedshiftWarehouse::new(file).map_err(|error| error.to_string())?;
    match (&file.endpoint_url, &file.workgroup) {
        (Some(api), Some(_)) => {
            warehouse = warehouse.with_serverless_client(serverless_client(api).await);
        }
        (Some(api), None) => warehouse = warehouse.with_iam_client(redshift_client(api).await),
        (None, _) => {}
    }
    Ok(warehouse
        .with_staging_client(
            s3,
            Some(aws_sdk_s3::config::SharedCredentialsProvider::new(
                credentials(),
            )),
        )
        .with_executor(Arc::new(emulator)))
}

/// Runs the Redshift pipeline in `pipeline` once (`run --once` with `workers` workers),
/// its statements through the emulator, each appended to `statement_log`. The staging
/// bucket is reached at the pipeline's `warehouse.staging.endpoint_url`; with
/// `auth = "iam"`, the Redshift (or, with `workgroup`, Serverless) API at
/// `warehouse.endpoint_url`.
///
/// Call it from a thread that is not running a tokio runtime: the run has its own.
pub fn run_once(
    pipeline: &Path,
    workers: usize,
    statement_log: Option<&Path>,
) -> Result<RunSummary, String> {
    let (pipeline, file) = redshift_pipeline(pipeline)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| error.to_string())?;
    let warehouse = runtime
        .block_on(emulated(&file, statement_log))?
        .with_caps(pipeline.max_tables, pipeline.max_columns);
    let options = RunOptions::once(workers);
    tracktable::run::run_with(&pipeline, &options, Arc::new(warehouse))
        .map_err(|error| error.to_string())
}

/// `tracktable check` of the Redshift pipeline in `pipeline`, its statements through
/// the emulator (each appended to `statement_log`), reached as [`run_once`] reaches it.
pub async fn check(pipeline: &Path, statement_log: Option<&Path>) -> Result<Vec<Check>, String> {
    let (pipeline, file) = redshift_pipeline(pipeline)?;
    let warehouse = emulated(&file, statement_log).await?;
    Ok(tracktable::admin::check_with(&pipeline, Some(warehouse)).await)
}
