//! aws: the AWS clients every part of tracktable uses, and reading one S3 object.
//!
//! Clients come from the default AWS chain (environment, profile, SSO, instance or task
//! role), with the crate's retry policy configured once (`retry::aws_retry_config`).

use bytes::Bytes;

use crate::retry::Backoff;

/// Reads of one object's body, the first included, before it counts as unreadable.
const BODY_ATTEMPTS: u32 = 4;

/// The longest one attempt of an SQS call may take before it is abandoned and retried:
/// a long poll waits at most 20 s, so anything longer is a connection that went silent
/// (a half-open TCP connection waits for hours), which the SDK's retries then replace.
pub const SQS_ATTEMPT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// The longest one attempt to read an object waits for S3's response to begin; the
/// body then streams under the SDK's stalled-stream protection. Without it a request
/// whose answer never comes would hold its object, and so its batch, indefinitely.
pub const GET_ATTEMPT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// S3 and SQS clients configured from the default AWS chain, with an optional endpoint
/// (path-style S3 addressing then, as MinIO, LocalStack and moto need).
pub async fn clients(
    region: Option<&str>,
    endpoint_url: Option<&str>,
) -> (aws_sdk_s3::Client, aws_sdk_sqs::Client) {
    let shared = shared_config(region, endpoint_url).await;
    (
        s3_client(&shared, endpoint_url.is_some()),
        sqs_client(&shared, SQS_ATTEMPT_TIMEOUT),
    )
}

/// An SQS client from `shared` whose every attempt gives up after `attempt_timeout`.
pub fn sqs_client(
    shared: &aws_config::SdkConfig,
    attempt_timeout: std::time::Duration,
) -> aws_sdk_sqs::Client {
    let mut timeouts = shared.timeout_config().map_or_else(
        aws_sdk_sqs::config::timeout::TimeoutConfig::builder,
        |timeouts| timeouts.to_builder(),
    );
    timeouts.set_operation_attempt_timeout(Some(attempt_timeout));
    let sqs = aws_sdk_sqs::config::Builder::from(shared)
        .timeout_config(timeouts.build())
        .build();
    aws_sdk_sqs::Client::from_conf(sqs)
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
    get_object_within(s3, bucket, key, version, GET_ATTEMPT_TIMEOUT).await
}

/// [`get_object`], each attempt waiting at most `attempt_timeout` for the response to
/// begin.
async fn get_object_within(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    version: Option<&str>,
    attempt_timeout: std::time::Duration,
) -> Result<Bytes, GetError> {
    let mut backoff = Backoff::default();
    loop {
        let mut request = s3.get_object().bucket(bucket).key(key);
        if let Some(version) = version {
            request = request.version_id(version);
        }
        // On this operation only: the client also uploads (Redshift's staging, `gen
        // --s3`), where an attempt's time grows with what it sends.
        let timeouts = aws_sdk_s3::config::timeout::TimeoutConfig::builder()
            .operation_attempt_timeout(attempt_timeout)
            .build();
        let asked = std::time::Instant::now();
        let output = request
            .customize()
            .config_override(aws_sdk_s3::config::Builder::default().timeout_config(timeouts))
            .send()
            .await
            .map_err(|error| {
                let status = error.raw_response().map(|r| r.status().as_u16());
                let code = aws_sdk_s3::error::ProvideErrorMetadata::code(&error).map(str::to_owned);
                if status == Some(404)
                    || matches!(code.as_deref(), Some("NoSuchKey" | "NoSuchVersion"))
                {
                    GetError::Missing
                } else if status == Some(403) || code.as_deref() == Some("AccessDenied") {
                    GetError::AccessDenied(sdk_error(&error))
                } else {
                    GetError::Failed(sdk_error(&error))
                }
            })?;
        let waited = asked.elapsed();
        if waited >= attempt_timeout {
            // The SDK retries silently; a minute's silence from S3 is worth a line.
            tracing::warn!(
                bucket,
                key,
                waited_s = waited.as_secs(),
                "S3 took longer than one attempt's timeout to answer a read: an attempt went unanswered or failed and was retried"
            );
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A loopback server that leaves its first connection unanswered and answers each
    /// request on a later one with `body`, or never answers at all without one: a
    /// request lost once, or a half-open connection, as the client sees them.
    async fn test_server(body: Option<&'static str>) -> (String, tokio::task::JoinHandle<()>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let url = format!("http://{}", listener.local_addr().expect("local address"));
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((mut socket, _)) = listener.accept().await {
                let Some(body) = body.filter(|_| !held.is_empty()) else {
                    held.push(socket);
                    continue;
                };
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buffer = [0u8; 4096];
                    // A GET has no body: its headers' end is the request's.
                    while !request.windows(4).any(|end| end == b"\r\n\r\n") {
                        match socket.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(read) => request.extend_from_slice(&buffer[..read]),
                        }
                    }
                    let response = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = socket.write_all(response.as_bytes()).await;
                });
            }
        });
        (url, task)
    }

    /// `key.json` read from the S3 endpoint at `url`, each attempt given 300 ms; fails
    /// the test if the read is still waiting after a minute.
    async fn read_from(url: &str) -> Result<Bytes, GetError> {
        let s3 = s3_client(&test_config(url).await, true);
        let attempt = std::time::Duration::from_millis(300);
        let read = get_object_within(&s3, "bucket", "key.json", None, attempt);
        tokio::time::timeout(std::time::Duration::from_secs(60), read)
            .await
            .expect("the read still waits after 60 s: no attempt timeout applies")
    }

    /// What `tracing` writes while it is in scope, as text.
    #[derive(Clone, Default)]
    struct Logs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Logs {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The crate's retry settings, test credentials and `url` as every service's endpoint.
    async fn test_config(url: &str) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .retry_config(crate::retry::aws_retry_config())
            .credentials_provider(aws_sdk_sqs::config::Credentials::new(
                "testing", "testing", None, None, "test",
            ))
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(url)
            .load()
            .await
    }

    #[tokio::test]
    async fn an_sqs_call_to_a_silent_server_times_out_instead_of_waiting_forever() {
        let (url, server) = test_server(None).await;
        let shared = test_config(&url).await;
        let sqs = sqs_client(&shared, std::time::Duration::from_millis(300));
        let call = sqs.list_queues().send();
        let outcome = tokio::time::timeout(std::time::Duration::from_secs(60), call)
            .await
            .expect("the SQS call still waits after 60 s: no attempt timeout applies");
        let error = outcome.expect_err("a server that never answers cannot succeed");
        assert!(
            matches!(error, aws_sdk_sqs::error::SdkError::TimeoutError(_)),
            "expected a timeout, got {}",
            aws_sdk_sqs::error::DisplayErrorContext(&error)
        );
        server.abort();
    }

    #[tokio::test]
    async fn reading_an_object_from_a_silent_server_fails_instead_of_waiting_forever() {
        let (url, server) = test_server(None).await;
        let outcome = read_from(&url).await;
        match outcome {
            Err(GetError::Failed(message)) => {
                assert!(message.contains("timeout"), "{message}")
            }
            other => panic!("expected a timed-out read, got {other:?}"),
        }
        server.abort();
    }

    #[tokio::test]
    async fn a_read_left_unanswered_once_is_retried_and_says_so() {
        let (url, server) = test_server(Some("hello")).await;
        let logs = Logs::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let _logging = tracing::subscriber::set_default(subscriber);
        let bytes = read_from(&url)
            .await
            .expect("the second attempt is answered");
        assert_eq!(&bytes[..], b"hello");
        let logged = String::from_utf8_lossy(
            &logs
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
        .into_owned();
        assert!(
            logged.contains("S3 took longer than one attempt's timeout to answer a read")
                && logged.contains("key.json"),
            "{logged}"
        );
        server.abort();
    }
}
