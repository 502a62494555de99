//! emulate: PostgreSQL standing in for Redshift, for tests.
//!
//! The loader's statements are Redshift's; this executor runs them on a real
//! PostgreSQL after the few rewrites PostgreSQL needs (table attributes dropped,
//! `GETDATE()` as `now()`), and performs each `COPY ... FROM 's3://...'` itself: it
//! reads the manifest (or lists the prefix, as Redshift does without `MANIFEST`), gets
//! every staged object, gunzips it and streams the CSV into `COPY ... FROM STDIN` with
//! the same NULL marker. The session runs with `standard_conforming_strings = off`, so
//! string literals take backslash escapes as Redshift's do, and serializable, as
//! Redshift's transactions are. Everything the loader
//! writes — staged files, column lists, CSV escaping, merge SQL — meets real data.
//!
//! A COPY PostgreSQL refuses for its data fails the way Redshift's does: with SQLSTATE
//! `XX000` ("Load into table ... failed. Check 'stl_load_errors' ..."), the session's
//! transaction aborted, and a row in an emulated `stl_load_errors` (a real table,
//! `public.stl_load_errors`, written on a connection of the emulator's own because
//! Redshift's system tables outlive the rollback) naming the staged file, the
//! physical line in it and the column, as Redshift's row does. `pg_last_copy_id()` in
//! the loader's statements reads the session's last COPY.
//!
//! A COPY the cluster could not make fails before it reads anything, as Redshift's
//! does, with `XX000` and Redshift's words: a role other than the one the emulated
//! cluster may use ([`Emulator::with_iam_role`]; any role without one) is "Not
//! authorized to get credentials of role ..."; a `REGION` (or, without one, the
//! cluster's, [`CLUSTER_REGION`]) other than the bucket's, as S3 reports it, is S3's
//! `PermanentRedirect`.
//!
//! Every statement is appended, as Redshift would receive it (secrets masked), to the
//! statement log when one is configured, for the grammar checks in the tests. The
//! loader reaches it as its [`Executor`], so no pipeline file can select it.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use futures_util::SinkExt;
use futures_util::future::BoxFuture;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};
use tracktable::warehouse::FailureClass;
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
    Copy {
        message: String,
        class: FailureClass,
    },
    /// PostgreSQL refused the data: reported as Redshift reports a load error.
    #[error("emulated COPY: line {} of {}: {}", .0.line, .0.file, .0.message)]
    Refused(Box<LoadError>),
    #[error("emulated COPY: {0}")]
    Io(#[from] std::io::Error),
}

impl EmulateError {
    /// A statement or manifest it cannot read is a bug to surface; S3 trouble is an
    /// outage to wait out; refused data is data.
    pub fn class(&self) -> FailureClass {
        match self {
            EmulateError::Statement(_) | EmulateError::Manifest { .. } => FailureClass::Config,
            EmulateError::Copy { class, .. } => *class,
            EmulateError::Refused(_) => FailureClass::Data,
            EmulateError::S3(_) | EmulateError::Io(_) => FailureClass::Transient,
        }
    }
}

/// What the emulated `stl_load_errors` keeps of a refused COPY.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    /// The staged object, `s3://bucket/key`.
    pub file: String,
    /// The physical line in it (1-based).
    pub line: u64,
    pub column: String,
    /// The field's text, as PostgreSQL's COPY context quotes it.
    pub value: String,
    /// PostgreSQL's SQLSTATE, and Redshift's load error code for it.
    pub sqlstate: String,
    pub code: i32,
    pub message: String,
}

pub struct Emulator {
    s3: aws_sdk_s3::Client,
    log: Option<Mutex<std::fs::File>>,
    system: SystemTables,
    /// Each session's last COPY query id, by backend process id: `pg_last_copy_id()`.
    last_copy: Mutex<HashMap<i32, i64>>,
    /// The one role COPY may name (its ARN; `IAM_ROLE default` is this role too), or
    /// `None`: any.
    iam_role: Option<String>,
    /// Each bucket's region, as S3 reported it.
    bucket_regions: Mutex<HashMap<String, String>>,
}

/// The emulated cluster's region: where COPY looks for a bucket when it names no
/// `REGION`.
pub const CLUSTER_REGION: &str = "us-east-1";

/// Session settings that make PostgreSQL read literals as Redshift does, and run every
/// transaction serializable as Redshift does: two concurrent transactions that each
/// read what the other writes fail one of them (PostgreSQL's 40001 for Redshift's
/// error 1023).
pub const SESSION_SETUP: &str = "SET standard_conforming_strings = off; SET escape_string_warning = off; \
     SET default_transaction_isolation = 'serializable'";

/// The emulated system table and its query ids, created once per database (under an
/// advisory lock: tests create it concurrently).
const SYSTEM_SETUP: &str = "BEGIN; SELECT pg_advisory_xact_lock(7418529071); \
    CREATE TABLE IF NOT EXISTS public.stl_load_errors (userid integer, slice integer, tbl integer, \
    starttime timestamp, session integer, query integer, filename character(256), line_number bigint, \
    colname character(127), type character(10), col_length character(10), position integer, \
    raw_line character(1024), raw_field_value character(1024), err_code integer, err_reason character(100), \
    is_partial integer, start_offset bigint); \
    CREATE SEQUENCE IF NOT EXISTS public.stl_load_errors_query; COMMIT";

/// The savepoint a COPY runs under, so the emulator can still raise Redshift's error
/// after PostgreSQL's.
const SAVEPOINT: &str = "tracktable_emulated_copy";

/// The emulator's own connection, for the system table: written outside the
/// session's transaction, which the load error aborts.
struct SystemTables {
    url: String,
    client: tokio::sync::Mutex<Option<Arc<Client>>>,
}

impl SystemTables {
    async fn client(&self) -> Result<Arc<Client>, tokio_postgres::Error> {
        let mut slot = self.client.lock().await;
        if let Some(client) = slot.as_ref().filter(|client| !client.is_closed()) {
            return Ok(Arc::clone(client));
        }
        let (client, connection) = tokio_postgres::connect(&self.url, NoTls).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        client.batch_execute(SYSTEM_SETUP).await?;
        let client = Arc::new(client);
        *slot = Some(Arc::clone(&client));
        Ok(client)
    }

    /// A new query id, as Redshift numbers its queries.
    async fn next_query(&self) -> Result<i64, tokio_postgres::Error> {
        let client = self.client().await?;
        let row = client
            .query_one("SELECT nextval('public.stl_load_errors_query')", &[])
            .await?;
        row.try_get(0)
    }

    /// The row Redshift writes for a load error, cut to its columns' widths.
    async fn record(
        &self,
        query: i64,
        session: i32,
        error: &LoadError,
    ) -> Result<(), tokio_postgres::Error> {
        let cut = |text: &str, chars: usize| text.chars().take(chars).collect::<String>();
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO public.stl_load_errors (userid, slice, tbl, starttime, session, query, filename, \
                 line_number, colname, raw_field_value, position, err_code, err_reason, is_partial, start_offset) \
                 VALUES (100, 0, 0, now(), $1, $2, $3, $4, $5, $6, 0, $7, $8, 0, 0)",
                &[
                    &session,
                    &(query as i32),
                    &cut(&error.file, 256),
                    &(error.line as i64),
                    &cut(&error.column, 127),
                    &cut(&error.value, 1024),
                    &error.code,
                    &cut(&error.message, 100),
                ],
            )
            .await
            .map(drop)
    }
}

impl Emulator {
    /// An emulator staging through `s3`, keeping its system table in the PostgreSQL at
    /// `database_url` (the one standing in for the cluster).
    pub fn new(
        s3: aws_sdk_s3::Client,
        database_url: &str,
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
        Ok(Emulator {
            s3,
            log,
            system: SystemTables {
                url: database_url.to_owned(),
                client: tokio::sync::Mutex::default(),
            },
            last_copy: Mutex::default(),
            iam_role: None,
            bucket_regions: Mutex::default(),
        })
    }

    /// Lets COPY name only `arn` (or `IAM_ROLE default`, standing for it), as a
    /// cluster with that one role attached does.
    pub fn with_iam_role(mut self, arn: &str) -> Emulator {
        self.iam_role = Some(arn.to_owned());
        self
    }

    /// Why the cluster would refuse `copy` before reading any data: (message, detail)
    /// in Redshift's words, or `None`.
    async fn refusal(&self, copy: &str) -> Option<(String, String)> {
        let options = CopyOptions::of(copy)?;
        if let (Some(allowed), Some(role)) = (&self.iam_role, &options.role)
            && role != "default"
            && role != allowed
        {
            return Some((
                format!("Not authorized to get credentials of role {role}"),
                format!(
                    "error:  Not authorized to get credentials of role {role} code: 30000 \
                     context: IAM Role={role} query: 0 location: xen_aws_credentials_mgr.cpp:398"
                ),
            ));
        }
        let region = self.bucket_region(&options.bucket).await?;
        let asked = options.region.as_deref().unwrap_or(CLUSTER_REGION);
        if asked != region {
            let message = "S3ServiceException:The bucket you are attempting to access must be \
                 addressed using the specified endpoint. Please send all future requests to this \
                 endpoint.,Status 301,Error PermanentRedirect,Rid EMULATED,CanRetry 1";
            return Some((
                message.to_owned(),
                format!(
                    "error:  {message} code: 8001 context: Listing bucket={} region={asked} \
                     query: 0 location: s3_utility.cpp:665",
                    options.bucket
                ),
            ));
        }
        None
    }

    /// The bucket's region as S3 reports it (`None` when it will not say: the COPY
    /// then fails on reading it, as it would).
    async fn bucket_region(&self, bucket: &str) -> Option<String> {
        if let Some(region) = self
            .bucket_regions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(bucket)
        {
            return Some(region.clone());
        }
        let location = self
            .s3
            .get_bucket_location()
            .bucket(bucket)
            .send()
            .await
            .ok()?;
        let region = match location.location_constraint().map(|c| c.as_str()) {
            None | Some("") => "us-east-1".to_owned(),
            Some("EU") => "eu-west-1".to_owned(),
            Some(region) => region.to_owned(),
        };
        self.bucket_regions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(bucket.to_owned(), region.clone());
        Some(region)
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
        // Redshift declares a table's key but never enforces it: neither does the
        // emulator, so a merge that leaves two rows of one key shows as two rows.
        if text.starts_with("CREATE TABLE")
            && let Some(start) = text.find(", PRIMARY KEY (")
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
        let names = identifiers(target);
        let mut files: Vec<(String, u64)> = Vec::with_capacity(keys.len());
        let failed = |error: tokio_postgres::Error, files: &[(String, u64)]| {
            copy_error(&error, &names, files)
        };
        let sink = client
            .copy_in::<_, Bytes>(&format!(
                "COPY {target} FROM STDIN WITH (FORMAT csv, NULL E'\\\\N')"
            ))
            .await
            .map_err(|error| failed(error, &files))?;
        let mut sink = std::pin::pin!(sink);
        for (bucket, key) in keys {
            let gzip = self.get(&bucket, &key).await?;
            let mut csv = Vec::new();
            std::io::copy(&mut flate2::read::MultiGzDecoder::new(&gzip[..]), &mut csv)?;
            // Physical lines, as PostgreSQL counts them (a quoted line break too).
            let lines = csv.iter().filter(|&&byte| byte == b'\n').count() as u64;
            files.push((format!("s3://{bucket}/{key}"), lines));
            if let Err(error) = sink.send(Bytes::from(csv)).await {
                return Err(failed(error, &files));
            }
        }
        sink.as_mut()
            .finish()
            .await
            .map_err(|error| failed(error, &files))
    }

    /// Performs a `COPY ... FROM 's3://...'` as Redshift would: numbered for
    /// `pg_last_copy_id()`, and, when PostgreSQL refuses the data, recorded in the
    /// emulated `stl_load_errors` and failed with Redshift's `XX000`.
    async fn copy_as_redshift(
        &self,
        client: &Client,
        statement: &str,
    ) -> Result<Vec<SimpleQueryMessage>, ExecutorError> {
        let session = backend_pid(client).await?;
        let query = self.system.next_query().await.map_err(system_error)?;
        self.last_copy
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(session, query);
        // Outside a transaction block (Redshift autocommits a lone COPY) the COPY runs
        // in a transaction of its own, ended here whatever happens.
        let own = match client
            .batch_execute(&format!("SAVEPOINT {SAVEPOINT}"))
            .await
        {
            Ok(()) => false,
            Err(error)
                if error.code()
                    == Some(&tokio_postgres::error::SqlState::NO_ACTIVE_SQL_TRANSACTION) =>
            {
                client
                    .batch_execute(&format!("BEGIN; SAVEPOINT {SAVEPOINT}"))
                    .await?;
                true
            }
            Err(error) => return Err(error.into()),
        };
        let result = self
            .copy_in_savepoint(client, statement, session, query)
            .await;
        if own {
            let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
            client.batch_execute(end).await?;
        }
        result
    }

    /// [`Self::copy_as_redshift`] within its savepoint.
    async fn copy_in_savepoint(
        &self,
        client: &Client,
        statement: &str,
        session: i32,
        query: i64,
    ) -> Result<Vec<SimpleQueryMessage>, ExecutorError> {
        match self.copy(client, statement).await {
            Ok(rows) => {
                client
                    .batch_execute(&format!("RELEASE SAVEPOINT {SAVEPOINT}"))
                    .await?;
                Ok(vec![SimpleQueryMessage::CommandComplete(rows)])
            }
            Err(EmulateError::Refused(refused)) => {
                client
                    .batch_execute(&format!("ROLLBACK TO SAVEPOINT {SAVEPOINT}"))
                    .await?;
                self.system
                    .record(query, session, &refused)
                    .await
                    .map_err(system_error)?;
                let table = identifiers(&statement["COPY ".len()..])
                    .into_iter()
                    .next()
                    .unwrap_or_default()
                    .replace(['\'', '\\', '$'], "");
                let raise = format!(
                    "DO $$ BEGIN RAISE EXCEPTION USING ERRCODE = 'XX000', MESSAGE = \
                     'Load into table ''{table}'' failed.  Check ''stl_load_errors'' system table for details.'; END $$"
                );
                match client.batch_execute(&raise).await {
                    Err(error) => Err(ExecutorError::Query(error)),
                    Ok(()) => Err(ExecutorError::Other {
                        message: "emulated COPY: the load error was not raised".into(),
                        class: FailureClass::Config,
                    }),
                }
            }
            Err(error) => Err(ExecutorError::Other {
                class: error.class(),
                message: error.to_string(),
            }),
        }
    }

    /// `statement` with `pg_last_copy_id()` replaced by the session's last COPY's id
    /// (-1 when it ran none, as Redshift answers).
    async fn with_last_copy(
        &self,
        client: &Client,
        statement: String,
    ) -> Result<String, ExecutorError> {
        if !statement.contains("pg_last_copy_id()") {
            return Ok(statement);
        }
        let session = backend_pid(client).await?;
        let last = self
            .last_copy
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&session)
            .copied()
            .unwrap_or(-1);
        Ok(statement.replace("pg_last_copy_id()", &last.to_string()))
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
                if let Some((message, detail)) = self.refusal(statement).await {
                    return Err(raise(client, &message, &detail).await);
                }
                return self.copy_as_redshift(client, statement).await;
            }
            let statement = self
                .with_last_copy(client, Emulator::translate(statement))
                .await?;
            Ok(client.simple_query(&statement).await?)
        })
    }
}

/// Fails the session's statement as Redshift's internal error (`XX000`) with
/// `message` and `detail`; an open transaction is aborted, as Redshift's is.
async fn raise(client: &Client, message: &str, detail: &str) -> ExecutorError {
    let clean = |text: &str| text.replace(['\'', '\\', '$'], "");
    let statement = format!(
        "DO $$ BEGIN RAISE EXCEPTION USING ERRCODE = 'XX000', MESSAGE = '{}', DETAIL = '{}'; END $$",
        clean(message),
        clean(detail)
    );
    match client.batch_execute(&statement).await {
        Err(error) => ExecutorError::Query(error),
        Ok(()) => ExecutorError::Other {
            message: format!("emulated COPY: {message} was not raised"),
            class: FailureClass::Config,
        },
    }
}

/// What a `COPY ... FROM 's3://...'` names besides its data: the bucket, the role
/// (`default` for the keyword) and the region.
#[derive(Debug, PartialEq, Eq)]
struct CopyOptions {
    bucket: String,
    role: Option<String>,
    region: Option<String>,
}

impl CopyOptions {
    fn of(copy: &str) -> Option<CopyOptions> {
        let from = copy.find(" FROM 's3://")? + " FROM 's3://".len();
        let rest = &copy[from..];
        let url_end = rest.find('\'')?;
        let bucket = rest[..url_end].split('/').next()?.to_owned();
        let options = &rest[url_end + 1..];
        let literal = |after: &str| -> Option<String> {
            let start = options.find(after)? + after.len();
            let value = options[start..].strip_prefix('\'')?;
            Some(value[..value.find('\'')?].to_owned())
        };
        let role = if options.contains(" IAM_ROLE default") {
            Some("default".to_owned())
        } else {
            literal(" IAM_ROLE ")
        };
        Some(CopyOptions {
            bucket,
            role,
            region: literal(" REGION "),
        })
    }
}

/// The session's backend process id: Redshift's session id.
async fn backend_pid(client: &Client) -> Result<i32, ExecutorError> {
    let messages = client.simple_query("SELECT pg_backend_pid()").await?;
    messages
        .iter()
        .find_map(|message| match message {
            SimpleQueryMessage::Row(row) => row.get(0)?.parse().ok(),
            _ => None,
        })
        .ok_or_else(|| ExecutorError::Other {
            message: "emulator: no backend process id".into(),
            class: FailureClass::Transient,
        })
}

fn system_error(error: tokio_postgres::Error) -> ExecutorError {
    ExecutorError::Other {
        message: format!("emulated stl_load_errors: {error}"),
        class: FailureClass::Transient,
    }
}

/// The quoted identifiers at the start of a COPY target, `"stage" ("a", "b")`: the
/// relation, then its columns.
fn identifiers(target: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut chars = target.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '"' {
            if c == ')' {
                break;
            }
            continue;
        }
        let mut name = String::new();
        while let Some(c) = chars.next() {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    name.push('"');
                }
                '"' => break,
                other => name.push(other),
            }
        }
        names.push(name);
    }
    names
}

/// Redshift's load error code for what PostgreSQL refused: 1204 a value too long or
/// out of range, 1207 invalid digits, 1213 a missing NOT NULL value, 1216 any other
/// bad input line.
fn load_error_code(sqlstate: &str) -> i32 {
    match sqlstate {
        "22001" | "22003" => 1204,
        "22P02" => 1207,
        "23502" => 1213,
        _ => 1216,
    }
}

/// A failed `COPY FROM STDIN` of `files` (each `s3://` url with its physical lines,
/// streamed in order) into `names` (relation, then columns), as the emulator reports
/// it: data PostgreSQL refused becomes a load error on a file's line.
fn copy_error(
    error: &tokio_postgres::Error,
    names: &[String],
    files: &[(String, u64)],
) -> EmulateError {
    let Some(db) = error.as_db_error() else {
        return EmulateError::Copy {
            message: error.to_string(),
            class: FailureClass::Transient,
        };
    };
    let code = db.code().code();
    let message = format!(
        "{} {}: {}{}",
        db.severity(),
        code,
        db.message(),
        db.where_().map(|w| format!(" ({w})")).unwrap_or_default()
    );
    let class = tracktable::warehouse::postgres::failure_class(code);
    let located = db
        .where_()
        .zip(names.split_first())
        .and_then(|(context, (relation, columns))| copy_context(context, relation, columns))
        .and_then(|(line, column, value)| {
            let mut before = 0;
            files
                .iter()
                .find_map(|(file, lines)| {
                    let found = (line <= before + lines).then(|| (file.clone(), line - before));
                    before += lines;
                    found
                })
                .map(|(file, line)| (file, line, column, value))
        });
    match located {
        Some((file, line, column, value)) if class == FailureClass::Data => {
            EmulateError::Refused(Box::new(LoadError {
                file,
                line,
                column,
                value,
                sqlstate: code.to_owned(),
                code: load_error_code(code),
                message: db.message().to_owned(),
            }))
        }
        _ => EmulateError::Copy { message, class },
    }
}

/// The line (of the whole stream), column and value PostgreSQL's COPY context names:
/// `COPY {relation}, line {n}[, column {column}: "{value}"][: ...]`. Of the columns,
/// the longest that fits is the one meant (a column name may itself hold `: `).
fn copy_context(
    context: &str,
    relation: &str,
    columns: &[String],
) -> Option<(u64, String, String)> {
    let prefix = format!("COPY {relation}, line ");
    context.lines().find_map(|line| {
        let rest = line.strip_prefix(&prefix)?;
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let number = rest[..digits].parse().ok()?;
        let named = rest[digits..].strip_prefix(", column ");
        let column = named
            .and_then(|named| {
                columns
                    .iter()
                    .filter(|column| {
                        named
                            .strip_prefix(column.as_str())
                            .is_some_and(|after| after.is_empty() || after.starts_with(':'))
                    })
                    .max_by_key(|column| column.len())
            })
            .cloned()
            .unwrap_or_default();
        let value = named
            .and_then(|named| named.get(column.len()..))
            .and_then(|after| after.strip_prefix(": \""))
            .and_then(|quoted| quoted.strip_suffix('"'))
            .unwrap_or_default()
            .to_owned();
        Some((number, column, value))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_attributes_keys_and_getdate_are_rewritten() {
        assert_eq!(
            Emulator::translate(
                "CREATE TABLE IF NOT EXISTS \"s\".\"t\" (\"message_id\" varchar(1024) NOT NULL, PRIMARY KEY (\"message_id\")) \
                 DISTSTYLE AUTO SORTKEY (\"received_at\") ENCODE AUTO"
            ),
            "CREATE TABLE IF NOT EXISTS \"s\".\"t\" (\"message_id\" varchar(1024) NOT NULL)",
            "the key is declared, not enforced"
        );
        assert_eq!(
            Emulator::translate("x timestamp NOT NULL DEFAULT GETDATE())"),
            "x timestamp NOT NULL DEFAULT now())"
        );
    }

    #[test]
    fn a_copy_names_its_bucket_role_and_region() {
        let credentials = sql::Credentials::role("arn:aws:iam::1:role/copy");
        let source = sql::CopySource {
            url: "s3://bucket/p/part-00000.csv.gz".into(),
            manifest: false,
        };
        let copy = sql::copy_from_s3("t", &["a"], &source, &credentials, Some("eu-west-1"), None);
        assert_eq!(
            CopyOptions::of(&copy),
            Some(CopyOptions {
                bucket: "bucket".into(),
                role: Some("arn:aws:iam::1:role/copy".into()),
                region: Some("eu-west-1".into()),
            })
        );
        let keys = sql::Credentials::Keys {
            id: "AK".into(),
            secret: "S".into(),
            token: None,
        };
        let copy = sql::copy_from_s3("t", &["a"], &source, &keys, None, None);
        let options = CopyOptions::of(&copy).expect("a COPY");
        assert_eq!((options.role, options.region), (None, None));
        let copy = sql::copy_from_s3(
            "t",
            &["a"],
            &source,
            &sql::Credentials::DefaultIamRole,
            None,
            None,
        );
        let options = CopyOptions::of(&copy).expect("a COPY");
        assert_eq!(options.role.as_deref(), Some("default"));
    }

    #[test]
    fn a_copy_target_names_its_relation_and_columns() {
        assert_eq!(
            identifiers("\"_tracktable_stage\" (\"message_id\", \"a\"\"b\", \"c: d\")"),
            ["_tracktable_stage", "message_id", "a\"b", "c: d"]
        );
    }

    #[test]
    fn the_copy_context_gives_the_line_and_the_column() {
        let columns = ["total".to_owned(), "c".to_owned(), "c: d".to_owned()];
        assert_eq!(
            copy_context(
                "COPY _tracktable_stage, line 3, column total: \"5000\"",
                "_tracktable_stage",
                &columns
            ),
            Some((3, "total".to_owned(), "5000".to_owned()))
        );
        assert_eq!(
            copy_context(
                "SQL function\nCOPY _tracktable_stage, line 12, column c: d: \"x\"",
                "_tracktable_stage",
                &columns
            ),
            Some((12, "c: d".to_owned(), "x".to_owned()))
        );
        assert_eq!(
            copy_context("COPY t, line 7: \"raw\"", "t", &columns),
            Some((7, String::new(), String::new()))
        );
        assert_eq!(copy_context("COPY other, line 7", "t", &columns), None);
    }
}
