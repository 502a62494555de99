//! stage: the S3 prefix a table batch passes through on its way into Redshift.
//!
//! Each load gets its own directory, `{prefix}{schema}/{table}/{run}-{batch}-{n}/`
//! (`run` is random per process, `n` counts this process's loads), so a retry or a
//! second process never reads another load's parts. One part is `COPY`ed by its key;
//! several by a manifest listing each with `mandatory: true`, so a missing part fails
//! the load instead of loading half of it.

use std::sync::atomic::{AtomicU64, Ordering};

use aws_sdk_s3::config::SharedCredentialsProvider;
use aws_sdk_s3::primitives::ByteStream;

use super::csv::Part;
use super::sql::CopySource;
use crate::warehouse::FailureClass;

#[derive(Debug, thiserror::Error)]
#[error("{action} s3://{bucket}/{key}: {message}")]
pub struct StageError {
    pub action: &'static str,
    pub bucket: String,
    pub key: String,
    pub message: String,
    /// Configuration for AccessDenied, NoSuchBucket and the like (retrying will not
    /// help), transient otherwise.
    pub class: FailureClass,
}

/// What one load staged.
#[derive(Debug, Clone)]
pub struct Staged {
    pub source: CopySource,
    /// Every key written (parts and manifest), for clean-up.
    pub keys: Vec<String>,
}

pub struct Staging {
    s3: aws_sdk_s3::Client,
    /// Where the client's credentials come from (the AWS default chain), for a `COPY`
    /// that presents the same keys.
    credentials: Option<SharedCredentialsProvider>,
    bucket: String,
    prefix: String,
    run: String,
    loads: AtomicU64,
}

impl Staging {
    pub fn new(
        s3: aws_sdk_s3::Client,
        credentials: Option<SharedCredentialsProvider>,
        bucket: &str,
        prefix: &str,
    ) -> Staging {
        let run: u64 = rand::random();
        Staging {
            s3,
            credentials,
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
            run: format!("{run:016x}"),
            loads: AtomicU64::new(0),
        }
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    pub fn client(&self) -> &aws_sdk_s3::Client {
        &self.s3
    }

    /// The provider of the client's credentials, when known.
    pub fn credentials(&self) -> Option<&SharedCredentialsProvider> {
        self.credentials.as_ref()
    }

    /// Uploads `parts` for one load of `schema.table` in `batch`; `what` names the kind
    /// of rows (`rows`, `discards`).
    pub async fn put(
        &self,
        schema: &str,
        table: &str,
        batch: u64,
        what: &str,
        parts: Vec<Part>,
    ) -> Result<Staged, StageError> {
        let n = self.loads.fetch_add(1, Ordering::Relaxed);
        let dir = format!(
            "{}{schema}/{table}/{}-b{batch}-{n}-{what}/",
            self.prefix, self.run
        );
        let mut keys = Vec::with_capacity(parts.len() + 1);
        let mut entries = Vec::with_capacity(parts.len());
        for (index, part) in parts.into_iter().enumerate() {
            let key = format!("{dir}part-{index:05}.csv.gz");
            let length = part.gzip.len();
            self.upload("stage", &key, "application/gzip", part.gzip)
                .await?;
            entries.push(serde_json::json!({
                "url": self.url(&key),
                "mandatory": true,
                "meta": {"content_length": length},
            }));
            keys.push(key);
        }
        if let [key] = keys.as_slice() {
            let source = CopySource {
                url: self.url(key),
                manifest: false,
            };
            return Ok(Staged { source, keys });
        }
        let key = format!("{dir}manifest.json");
        let manifest = serde_json::json!({ "entries": entries }).to_string();
        self.upload(
            "stage manifest",
            &key,
            "application/json",
            manifest.into_bytes(),
        )
        .await?;
        let source = CopySource {
            url: self.url(&key),
            manifest: true,
        };
        keys.push(key);
        Ok(Staged { source, keys })
    }

    /// `s3://bucket/key`.
    fn url(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }

    async fn upload(
        &self,
        action: &'static str,
        key: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<(), StageError> {
        self.s3
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(body))
            .send()
            .await
            .map(|_| ())
            .map_err(|error| self.error(action, key, &error))
    }

    /// Removes a load's staged objects (after its commit). A failure is logged, not
    /// returned: the rows are safely loaded, and a bucket lifecycle rule can sweep.
    pub async fn remove(&self, staged: &Staged) {
        if let Err(error) = self.try_remove(staged).await {
            tracing::warn!(bucket = %self.bucket, error = %error, "could not remove staged objects; they are loaded and can be deleted by hand or by a lifecycle rule");
        }
    }

    /// Removes a load's staged objects; fails if any could not be removed.
    pub async fn try_remove(&self, staged: &Staged) -> Result<(), String> {
        for chunk in staged.keys.chunks(1000) {
            let objects: Vec<aws_sdk_s3::types::ObjectIdentifier> = chunk
                .iter()
                .filter_map(|key| {
                    aws_sdk_s3::types::ObjectIdentifier::builder()
                        .key(key)
                        .build()
                        .ok()
                })
                .collect();
            let delete = aws_sdk_s3::types::Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .map_err(|error| error.to_string())?;
            let output = self
                .s3
                .delete_objects()
                .bucket(&self.bucket)
                .delete(delete)
                .send()
                .await
                .map_err(|error| {
                    format!(
                        "DeleteObjects: {}",
                        aws_sdk_s3::error::DisplayErrorContext(error)
                    )
                })?;
            // A quiet delete lists only the keys it could not remove.
            if let Some(refused) = output.errors().first() {
                return Err(format!(
                    "DeleteObjects: {} of s3://{}/{}: {}",
                    refused.code().unwrap_or("refused"),
                    self.bucket,
                    refused.key().unwrap_or_default(),
                    refused.message().unwrap_or_default()
                ));
            }
        }
        Ok(())
    }

    fn error<E>(
        &self,
        action: &'static str,
        key: &str,
        error: &aws_sdk_s3::error::SdkError<E>,
    ) -> StageError
    where
        E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
    {
        let code = match error {
            aws_sdk_s3::error::SdkError::ServiceError(service) => {
                service.err().code().map(str::to_owned)
            }
            _ => None,
        };
        let refused = matches!(
            code.as_deref(),
            Some(
                "AccessDenied"
                    | "NoSuchBucket"
                    | "InvalidAccessKeyId"
                    | "SignatureDoesNotMatch"
                    | "AllAccessDisabled"
            )
        );
        StageError {
            action,
            bucket: self.bucket.clone(),
            key: key.to_owned(),
            message: aws_sdk_s3::error::DisplayErrorContext(error).to_string(),
            class: if refused {
                FailureClass::Config
            } else {
                FailureClass::Transient
            },
        }
    }
}
