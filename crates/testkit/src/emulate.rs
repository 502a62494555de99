//! emulate: PostgreSQL standing in for Redshift, for tests.
//!
//! The loader's statements are Redshift's; this executor runs them on a real
//! PostgreSQL after the few rewrites PostgreSQL needs (table attributes dropped,
//! `GETDATE()` as `now()`), and performs each `COPY ... FROM 's3://...'` itself: it
//! reads the manifest (or lists the prefix, as Redshift does without `MANIFEST`), gets
//! every staged object, gunzips it and streams the CSV into `COPY ... FROM STDIN` with
//! the same NULL marker. The session runs with `standard_conforming_strings = off`, so
//! string literals take backslash escapes as Redshift's do. Everything the loader
//! writes — staged files, column lists, CSV escaping, merge SQL — meets real data.
//!
//! Every statement is appended, as Redshift would receive it (secrets masked), to the
//! statement log when one is configured, for the grammar checks in the tests. The
//! loader reaches it as its [`Executor`], so no pipeline file can select it.

use std::io::Write;
use std::sync::Mutex;

use bytes::Bytes;
use futures_util::SinkExt;
use futures_util::future::BoxFuture;
use tokio_postgres::{Client, SimpleQueryMessage};
use tracktable::warehouse::redshift::executor::{Executor, ExecutorError};
use tracktable::warehouse::redshift::sql;

#[derive(Debug, thiserror::Error)]
pub enum EmulateError {
    #[error("emulated COPY: cannot understand {0:?}")]
    Statement(String),
    #[error("emulated COPY: {0}")]
    S3(String),
    #[error("emulated COPY: manifest {url}: {message}")]
    Manifest { url: String, message: String },
    #[error("emulated COPY: {message}")]
    Copy { message: String, permanent: bool },
    #[error("emulated COPY: {0}")]
    Io(#[from] std::io::Error),
}

impl EmulateError {
    /// A statement or manifest it cannot read, or data PostgreSQL refuses: a bug to
    /// surface, not an outage to wait out.
    pub fn is_permanent(&self) -> bool {
        match self {
            EmulateError::Statement(_) | EmulateError::Manifest { .. } => true,
            EmulateError::Copy { permanent, .. } => *permanent,
            EmulateError::S3(_) | EmulateError::Io(_) => false,
        }
    }
}

pub struct Emulator {
    s3: aws_sdk_s3::Client,
    log: Option<Mutex<std::fs::File>>,
}

/// Session settings that make PostgreSQL read literals as Redshift does.
pub const SESSION_SETUP: &str =
    "SET standard_conforming_strings = off; SET escape_string_warning = off";

impl Emulator {
    pub fn new(
        s3: aws_sdk_s3::Client,
        statement_log: Option<&std::path::Path>,
    ) -> std::io::Result<Emulator> {
        let log = match statement_log {
            Some(path) => Some(Mutex::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            )),
            None => None,
        };
        Ok(Emulator { s3, log })
    }

    /// Appends a statement to the statement log (one line; newlines cannot occur in
    /// the loader's statements, but are escaped to be sure).
    pub fn record(&self, statement: &str) {
        if let Some(log) = &self.log {
            let mut file = log
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let line = sql::masked(statement).replace('\n', "\\n");
            if let Err(error) = writeln!(file, "{line};") {
                tracing::warn!(error = %error, "cannot write the statement log");
            }
        }
    }

    /// The statement PostgreSQL runs instead of `statement` (not for COPY).
    pub fn translate(statement: &str) -> String {
        let mut text = statement
            .replace(" DISTSTYLE AUTO", "")
            .replace(" ENCODE AUTO", "")
            .replace("GETDATE()", "now()");
        if let Some(start) = text.find(" SORTKEY (")
            && let Some(end) = text[start..].find(')')
        {
            text.replace_range(start..start + end + 1, "");
        }
        text
    }

    /// Whether `statement` is a `COPY ... FROM 's3://...'` this emulator performs.
    pub fn is_s3_copy(statement: &str) -> bool {
        statement.starts_with("COPY ") && statement.contains(" FROM 's3://")
    }

    /// Performs a `COPY ... FROM 's3://...'` on `client`; returns the rows copied.
    pub async fn copy(&self, client: &Client, statement: &str) -> Result<u64, EmulateError> {
        let bad = || EmulateError::Statement(sql::masked(statement));
        let from = statement.find(" FROM 's3://").ok_or_else(bad)?;
        let target = &statement["COPY ".len()..from];
        let rest = &statement[from + " FROM '".len()..];
        let url_end = rest.find('\'').ok_or_else(bad)?;
        let url = &rest[..url_end];
        let options = &rest[url_end..];
        if !options.contains(&format!("NULL AS {}", sql::literal(sql::CSV_NULL)))
            || !options.contains(" GZIP")
            || !options.contains("FORMAT AS CSV")
        {
            return Err(bad());
        }
        let (bucket, key) = url
            .strip_prefix("s3://")
            .and_then(|path| path.split_once('/'))
            .ok_or_else(bad)?;
        let keys = if options.contains(" MANIFEST") {
            self.manifest(url, bucket, key).await?
        } else {
            self.listed(bucket, key).await?
        };
        let sink = client
            .copy_in::<_, Bytes>(&format!(
                "COPY {target} FROM STDIN WITH (FORMAT csv, NULL E'\\\\N')"
            ))
            .await
            .map_err(|error| copy_error(&error))?;
        let mut sink = std::pin::pin!(sink);
        for (bucket, key) in keys {
            let gzip = self.get(&bucket, &key).await?;
            let mut csv = Vec::new();
            std::io::copy(&mut flate2::read::MultiGzDecoder::new(&gzip[..]), &mut csv)?;
            sink.send(Bytes::from(csv))
                .await
                .map_err(|error| copy_error(&error))?;
        }
        sink.as_mut()
            .finish()
            .await
            .map_err(|error| copy_error(&error))
    }

    async fn manifest(
        &self,
        url: &str,
        bucket: &str,
        key: &str,
    ) -> Result<Vec<(String, String)>, EmulateError> {
        let body = self.get(bucket, key).await?;
        let invalid = |message: String| EmulateError::Manifest {
            url: url.to_owned(),
            message,
        };
        let manifest: serde_json::Value =
            serde_json::from_slice(&body).map_err(|error| invalid(error.to_string()))?;
        let entries = manifest
            .get("entries")
            .and_then(|entries| entries.as_array())
            .ok_or_else(|| invalid("no entries".into()))?;
        entries
            .iter()
            .map(|entry| {
                entry
                    .get("url")
                    .and_then(|url| url.as_str())
                    .and_then(|url| url.strip_prefix("s3://"))
                    .and_then(|path| path.split_once('/'))
                    .map(|(bucket, key)| (bucket.to_owned(), key.to_owned()))
                    .ok_or_else(|| invalid(format!("entry without an s3 url: {entry}")))
            })
            .collect()
    }

    /// Without `MANIFEST`, Redshift loads every object whose key starts with the path.
    async fn listed(
        &self,
        bucket: &str,
        prefix: &str,
    ) -> Result<Vec<(String, String)>, EmulateError> {
        let listed = self
            .s3
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .send()
            .await
            .map_err(|error| {
                EmulateError::S3(aws_sdk_s3::error::DisplayErrorContext(error).to_string())
            })?;
        let keys: Vec<(String, String)> = listed
            .contents()
            .iter()
            .filter_map(|object| object.key())
            .map(|key| (bucket.to_owned(), key.to_owned()))
            .collect();
        if keys.is_empty() {
            return Err(EmulateError::S3(format!(
                "no object under s3://{bucket}/{prefix} (Redshift: \"The specified S3 prefix does not exist\")"
            )));
        }
        Ok(keys)
    }

    async fn get(&self, bucket: &str, key: &str) -> Result<Vec<u8>, EmulateError> {
        let object = self
            .s3
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|error| {
                EmulateError::S3(format!(
                    "s3://{bucket}/{key}: {}",
                    aws_sdk_s3::error::DisplayErrorContext(error)
                ))
            })?;
        let body = object
            .body
            .collect()
            .await
            .map_err(|error| EmulateError::S3(format!("s3://{bucket}/{key}: {error}")))?;
        Ok(body.into_bytes().to_vec())
    }
}

impl Executor for Emulator {
    fn open<'a>(&'a self, client: &'a Client) -> BoxFuture<'a, Result<(), ExecutorError>> {
        Box::pin(async move { Ok(client.batch_execute(SESSION_SETUP).await?) })
    }

    fn send<'a>(
        &'a self,
        client: &'a Client,
        statement: &'a str,
    ) -> BoxFuture<'a, Result<Vec<SimpleQueryMessage>, ExecutorError>> {
        Box::pin(async move {
            self.record(statement);
            if Emulator::is_s3_copy(statement) {
                let rows =
                    self.copy(client, statement)
                        .await
                        .map_err(|error| ExecutorError::Other {
                            permanent: error.is_permanent(),
                            message: error.to_string(),
                        })?;
                return Ok(vec![SimpleQueryMessage::CommandComplete(rows)]);
            }
            Ok(client.simple_query(&Emulator::translate(statement)).await?)
        })
    }
}

fn copy_error(error: &tokio_postgres::Error) -> EmulateError {
    match error.as_db_error() {
        Some(db) => EmulateError::Copy {
            message: format!(
                "{} {}: {}{}",
                db.severity(),
                db.code().code(),
                db.message(),
                db.where_().map(|w| format!(" ({w})")).unwrap_or_default()
            ),
            permanent: tracktable::warehouse::postgres::is_permanent_state(db.code().code()),
        },
        None => EmulateError::Copy {
            message: error.to_string(),
            permanent: false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_attributes_and_getdate_are_rewritten() {
        assert_eq!(
            Emulator::translate(
                "CREATE TABLE IF NOT EXISTS \"s\".\"t\" (\"message_id\" varchar(1024) NOT NULL, PRIMARY KEY (\"message_id\")) \
                 DISTSTYLE AUTO SORTKEY (\"received_at\") ENCODE AUTO"
            ),
            "CREATE TABLE IF NOT EXISTS \"s\".\"t\" (\"message_id\" varchar(1024) NOT NULL, PRIMARY KEY (\"message_id\"))"
        );
        assert_eq!(
            Emulator::translate("x timestamp NOT NULL DEFAULT GETDATE())"),
            "x timestamp NOT NULL DEFAULT now())"
        );
    }
}
