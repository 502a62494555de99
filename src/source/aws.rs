//! aws: the AWS clients every part of tracktable uses, and reading one S3 object.
//!
//! Clients come from the default AWS chain (environment, profile, SSO, instance or task
//! role), with the crate's retry policy configured once (`retry::aws_retry_config`).

use bytes::Bytes;

use crate::retry::Backoff;

/// Reads of one object's body, the first included, before it counts as unreadable.
const BODY_ATTEMPTS: u32 = 4;

/// S3 and SQS clients configured from the default AWS chain, with an optional endpoint
/// (path-style S3 addressing then, as MinIO, LocalStack and moto need).
pub async fn clients(
    region: Option<&str>,
    endpoint_url: Option<&str>,
) -> (aws_sdk_s3::Client, aws_sdk_sqs::Client) {
    let shared = shared_config(region, endpoint_url).await;
    (
        s3_client(&shared, endpoint_url.is_some()),
        aws_sdk_sqs::Client::new(&shared),
    )
}

/// The AWS configuration every client is made from: the default chain (credentials
/// included), the crate's retry policy, an optional region and endpoint.
pub async fn shared_config(
    region: Option<&str>,
    endpoint_url: Option<&str>,
) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .retry_config(crate::retry::aws_retry_config());
    if let Some(region) = region {
        loader = loader.region(aws_config::Region::new(region.to_owned()));
    }
    if let Some(endpoint) = endpoint_url {
        loader = loader.endpoint_url(endpoint);
    }
    loader.load().await
}

/// An S3 client from `shared`; `path_style` for an S3-compatible endpoint.
pub fn s3_client(shared: &aws_config::SdkConfig, path_style: bool) -> aws_sdk_s3::Client {
    let s3 = aws_sdk_s3::config::Builder::from(shared)
        .force_path_style(path_style)
        .build();
    aws_sdk_s3::Client::from_conf(s3)
}

/// Why an object could not be read.
#[derive(Debug, thiserror::Error)]
pub enum GetError {
    /// It does not exist (any more): deleted before it was fetched.
    #[error("the object does not exist")]
    Missing,
    /// The credentials may not read it: a configuration problem, not the object's.
    #[error("access denied: {0}")]
    AccessDenied(String),
    /// The SDK gave up after its retries, or the body could not be read.
    #[error("{0}")]
    Failed(String),
}

/// The bytes of `s3://bucket/key` (at `version`, when given), as stored.
pub async fn get_object(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    version: Option<&str>,
) -> Result<Bytes, GetError> {
    let mut backoff = Backoff::default();
    loop {
        let mut request = s3.get_object().bucket(bucket).key(key);
        if let Some(version) = version {
            request = request.version_id(version);
        }
        let output = request.send().await.map_err(|error| {
            let status = error.raw_response().map(|r| r.status().as_u16());
            let code = aws_sdk_s3::error::ProvideErrorMetadata::code(&error).map(str::to_owned);
            if status == Some(404) || matches!(code.as_deref(), Some("NoSuchKey" | "NoSuchVersion"))
            {
                GetError::Missing
            } else if status == Some(403) || code.as_deref() == Some("AccessDenied") {
                GetError::AccessDenied(sdk_error(&error))
            } else {
                GetError::Failed(sdk_error(&error))
            }
        })?;
        // A body cut off mid-read is the one failure the SDK does not retry.
        match output.body.collect().await {
            Ok(bytes) => return Ok(bytes.into_bytes()),
            Err(error) if backoff.failures() + 1 < BODY_ATTEMPTS => {
                let wait = backoff.failed();
                tracing::warn!(bucket, key, error = %error, retry_in = ?wait, "cannot read an object's body; reading it again");
                tokio::time::sleep(wait).await;
            }
            Err(error) => return Err(GetError::Failed(format!("reading the body: {error}"))),
        }
    }
}

/// An SDK error with its service code and message, not just "service error".
pub fn sdk_error<E, R>(error: &aws_sdk_sqs::error::SdkError<E, R>) -> String
where
    E: aws_sdk_sqs::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match error {
        aws_sdk_sqs::error::SdkError::ServiceError(service) => {
            let inner = service.err();
            format!(
                "{}: {}",
                inner.code().unwrap_or("error"),
                inner.message().unwrap_or("no message")
            )
        }
        other => format!("{}", aws_sdk_sqs::error::DisplayErrorContext(other)),
    }
}
