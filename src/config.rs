//! Pipeline configuration: the TOML file under `pipelines/`, validated once at start-up.
//!
//! Two types, as ripgrep does: [`PipelineFile`] mirrors the file (serde,
//! `deny_unknown_fields`, every field documented where it is declared) and
//! [`PipelineFile::validate`] turns it into a [`Pipeline`] whose fields are already
//! checked, so nothing downstream re-validates. Command-line flags override fields
//! before validation. Secrets never live in the file: it names the environment variable
//! that holds them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::batch::BatchPolicy;
use crate::decode::Limits;

/// A pipeline file as written.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct PipelineFile {
    /// The pipeline's name, used in logs and metrics.
    pub name: String,
    /// Where objects come from.
    pub source: SourceFile,
    /// Where rows go.
    pub warehouse: WarehouseFile,
    /// When batches close and how far loading may fall behind.
    #[serde(default)]
    pub batch: BatchFile,
    /// Protection against hostile input.
    #[serde(default)]
    pub limits: LimitsFile,
    /// An optional tracking plan: which events and properties may become tables and
    /// columns, and caps on both.
    #[serde(default)]
    pub plan: PlanFile,
}

/// `[plan]`: what the plan refuses goes to `_rejections` (events, properties) or
/// `_discards` (over a cap), never silently away.
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct PlanFile {
    /// Track events that may load, as globs on the raw event name (`Order *`); empty:
    /// every event.
    #[serde(default)]
    pub allow_events: Vec<String>,
    /// Track events that never load, as globs; wins over `allow_events`.
    #[serde(default)]
    pub block_events: Vec<String>,
    /// Per event name, the top-level properties that may become columns; events not
    /// listed keep every property.
    #[serde(default)]
    pub properties: std::collections::BTreeMap<String, Vec<String>>,
    /// At most this many tables in the pipeline's schema (bookkeeping tables aside).
    pub max_tables: Option<usize>,
    /// At most this many columns per table.
    pub max_columns: Option<usize>,
}

/// `[source]`
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, tag = "type", rename_all = "lowercase")]
pub enum SourceFile {
    /// A local directory of objects (gzip or plain NDJSON, JSON arrays, batch envelopes).
    /// Files that appear later are picked up; loaded files are remembered in
    /// `state_dir` so a restart does not load them again.
    Dir {
        /// The directory to read, recursively.
        path: PathBuf,
        /// Where the list of loaded files is kept (default:
        /// `<path>/.tracktable/<schema>-<hash of the warehouse URL and schema>`, one per
        /// warehouse target, so pipelines reading one directory into different schemas
        /// or databases each load every file).
        state_dir: Option<PathBuf>,
        /// How often to look for new files (humantime, default `1s`).
        #[serde(default = "default_poll_interval", with = "humantime_serde_compat")]
        #[cfg_attr(test, schemars(with = "String"))]
        poll_interval: Duration,
    },
    /// An SQS queue receiving S3 "object created" notifications (S3's own, wrapped by
    /// SNS, or EventBridge's). Messages are deleted only after every row of their
    /// objects has committed.
    Sqs {
        /// The queue's URL, e.g. `https://sqs.us-east-1.amazonaws.com/123456789012/events`.
        queue_url: String,
        /// AWS region (default: the AWS default chain: `AWS_REGION`, profile, ...).
        region: Option<String>,
        /// Endpoint for both S3 and SQS, for MinIO, LocalStack or moto (path-style S3
        /// addressing is used then). Default: AWS.
        endpoint_url: Option<String>,
        /// Receive calls in flight at once per process (1 to 16, default 2).
        #[serde(default = "default_receives_in_flight")]
        receives_in_flight: usize,
        /// How long a received message stays hidden from other consumers; extended
        /// while its batch loads (humantime, 10s to 12h, default `5m`).
        #[serde(
            default = "default_visibility_timeout",
            with = "humantime_serde_compat"
        )]
        #[cfg_attr(test, schemars(with = "String"))]
        visibility_timeout: Duration,
        /// Long-poll wait per receive (humantime, 0s to 20s, default `20s`).
        #[serde(default = "default_wait_time", with = "humantime_serde_compat")]
        #[cfg_attr(test, schemars(with = "String"))]
        wait_time: Duration,
    },
}

fn default_receives_in_flight() -> usize {
    2
}
fn default_visibility_timeout() -> Duration {
    Duration::from_secs(300)
}
fn default_wait_time() -> Duration {
    Duration::from_secs(20)
}

fn default_poll_interval() -> Duration {
    Duration::from_secs(1)
}

/// `[warehouse]`
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, tag = "type", rename_all = "lowercase")]
pub enum WarehouseFile {
    /// PostgreSQL.
    Postgres(PostgresFile),
    /// Amazon Redshift, loaded through an S3 staging prefix.
    Redshift(Box<RedshiftFile>),
}

impl WarehouseFile {
    /// The schema the pipeline's tables live in.
    pub fn schema(&self) -> &str {
        match self {
            WarehouseFile::Postgres(file) => &file.schema,
            WarehouseFile::Redshift(file) => &file.schema,
        }
    }

    /// The connection URL (never holds a password: `validate` refuses one).
    pub fn url(&self) -> &str {
        match self {
            WarehouseFile::Postgres(file) => &file.url,
            WarehouseFile::Redshift(file) => &file.url,
        }
    }
}

/// `[warehouse]` with `type = "redshift"`.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RedshiftFile {
    /// Connection URL without a password, e.g.
    /// `postgres://loader@examplecluster.abc123.us-east-1.redshift.amazonaws.com:5439/analytics`.
    pub url: String,
    /// Name of the environment variable holding the password (`auth = "password"`).
    pub password_env: Option<String>,
    /// How the loader signs in: `password` (default: the one `password_env` names) or
    /// `iam` (temporary credentials from the Redshift API, asked for each new
    /// connection and reused until 5 minutes before they expire: for a provisioned
    /// cluster the URL's user and database with `redshift:GetClusterCredentials`, for a
    /// Serverless workgroup the URL's database with `redshift-serverless:GetCredentials`,
    /// as the user the AWS identity maps to).
    #[serde(default)]
    pub auth: RedshiftAuth,
    /// `auth = "iam"` on a provisioned cluster: its identifier (the first label of its
    /// endpoint, e.g. `examplecluster`). Exactly one of this and `workgroup`.
    pub cluster_identifier: Option<String>,
    /// `auth = "iam"` on Redshift Serverless: the workgroup's name (the first label of
    /// its endpoint, e.g. `default-workgroup`). Exactly one of this and
    /// `cluster_identifier`.
    pub workgroup: Option<String>,
    /// `auth = "iam"` on a provisioned cluster: create the URL's user at sign-in when it
    /// does not exist (`AutoCreate`; needs `redshift:CreateClusterUser` too). Default:
    /// false.
    #[serde(default)]
    pub auto_create: bool,
    /// `auth = "iam"` on a provisioned cluster: database groups the user joins for each
    /// connection (`DbGroups`; needs `redshift:JoinGroup` on each group).
    #[serde(default)]
    pub db_groups: Vec<String>,
    /// `auth = "iam"`: the cluster's or workgroup's region (default: the one in the URL's
    /// host, `...REGION.redshift.amazonaws.com` or
    /// `...REGION.redshift-serverless.amazonaws.com`, else the AWS default chain's).
    pub region: Option<String>,
    /// `auth = "iam"`: endpoint of the Redshift API (moto, LocalStack). Default: AWS.
    pub endpoint_url: Option<String>,
    /// Schema the pipeline's tables live in; created if missing.
    pub schema: String,
    /// `require` (the default for Redshift: always TLS) or `disable` (only for a local
    /// stand-in). `auto` means TLS except on loopback.
    #[serde(default = "default_redshift_sslmode")]
    pub sslmode: SslMode,
    /// PEM file of extra root certificates to trust (Amazon's Redshift CA bundle).
    pub sslrootcert: Option<PathBuf>,
    /// Where each (batch, table) is staged as gzip CSV before `COPY`.
    pub staging: StagingFile,
    /// `ACCEPTINVCHARS` replacement character for bytes Redshift cannot store in
    /// varchar (one ASCII character, e.g. `"?"`); unset: such rows fail the load.
    pub accept_invalid_chars: Option<String>,
    /// How far before a load's earliest `received_at` its merge looks for stored copies
    /// of its messages (humantime, default `3days`; `0s`: the whole table). Bounded,
    /// the merge's delete reads a few blocks of the sort key instead of the whole
    /// table; a copy of a message that arrives later than this after the first is
    /// loaded twice.
    #[serde(default = "default_merge_lookback", with = "humantime_serde_compat")]
    #[cfg_attr(test, schemars(with = "String"))]
    pub merge_lookback: Duration,
}

/// How the Redshift warehouse's connections sign in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum RedshiftAuth {
    /// The password in the environment variable `password_env` names, if any.
    #[default]
    Password,
    /// Temporary credentials from the Redshift API (`GetClusterCredentials`, or
    /// `GetCredentials` on Serverless).
    Iam,
}

fn default_redshift_sslmode() -> SslMode {
    SslMode::Require
}

fn default_merge_lookback() -> Duration {
    Duration::from_secs(3 * 24 * 3600)
}

/// `[warehouse.staging]`: the S3 prefix Redshift's `COPY` reads from.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct StagingFile {
    /// Bucket, in the cluster's region.
    pub bucket: String,
    /// Key prefix, e.g. `tracktable/staging/`.
    #[serde(default)]
    pub prefix: String,
    /// The bucket's region (default: the AWS chain's); when set, `COPY` names it too
    /// (`REGION`), for a bucket outside the cluster's region.
    pub region: Option<String>,
    /// S3-compatible endpoint (MinIO, LocalStack, moto), path-style addressing.
    pub endpoint_url: Option<String>,
    /// IAM role the cluster assumes to read the staging prefix (recommended): its ARN,
    /// or `"default"` for the role set as the cluster's default (`IAM_ROLE default`).
    pub iam_role: Option<String>,
    /// Otherwise: environment variables holding an access key pair `COPY` uses.
    pub access_key_id_env: Option<String>,
    pub secret_access_key_env: Option<String>,
    /// Otherwise: `COPY` presents the access keys of the AWS default chain (the ones
    /// tracktable stages with), session token included, read again before any load
    /// whose keys expire within 15 minutes.
    #[serde(default)]
    pub access_keys_from_aws_chain: bool,
    /// Keep staged objects after their load commits (default: removed).
    #[serde(default)]
    pub keep: bool,
    /// Largest uncompressed CSV part in bytes; bigger loads are split, with a manifest.
    #[serde(default = "default_part_bytes")]
    pub part_bytes: usize,
}

fn default_part_bytes() -> usize {
    64 * 1024 * 1024
}

/// `[warehouse]` with `type = "postgres"`.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct PostgresFile {
    /// Connection URL without a password, e.g. `postgres://loader@db.example.com:5432/analytics`.
    pub url: String,
    /// Name of the environment variable holding the password (never the password itself).
    pub password_env: Option<String>,
    /// Schema the pipeline's tables live in; created if missing.
    pub schema: String,
    /// `auto` (default: TLS for every host but loopback), `require` (always TLS) or
    /// `disable`. TLS always verifies the server's certificate and name.
    #[serde(default)]
    pub sslmode: SslMode,
    /// PEM file of extra root certificates to trust (a private CA, Amazon's RDS/Redshift
    /// bundle), besides the system's.
    pub sslrootcert: Option<PathBuf>,
}

/// TLS to the warehouse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum SslMode {
    /// TLS unless the host is a loopback address or a Unix socket.
    #[default]
    Auto,
    Require,
    Disable,
}

/// `[batch]`
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct BatchFile {
    /// Batches close on multiples of this wall-clock interval (humantime: `500ms`, `30s`,
    /// `5m`). Default: `30s` into PostgreSQL, `60s` into Redshift ([`default_interval`]).
    #[serde(default, with = "humantime_serde_compat::option")]
    #[cfg_attr(test, schemars(with = "Option<String>"))]
    pub interval: Option<Duration>,
    /// Close a worker's batch early once this many of its messages are decoded; an
    /// object with more continues in the next batch. `None`: the warehouse's default
    /// ([`default_batch_size`]).
    #[serde(default)]
    pub max_rows: Option<u64>,
    /// Close a worker's batch early once this many bytes of input are decoded into it,
    /// counted after decompression (what its rows are made of, so a small gzip object
    /// that inflates to gigabytes fills many batches). `None`: the warehouse's default.
    #[serde(default)]
    pub max_bytes: Option<u64>,
    /// Stop admitting input while closed batches worth this many full ones await their
    /// commit: each closed batch counts by how full it was (the start-up ramp's small
    /// batches and those the interval closed early count for less), so a worker holds
    /// its open batch plus under `max_in_flight + 1` full batches' worth of closed ones.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// Warehouse connections each worker loads a batch's tables over, concurrently.
    #[serde(default = "default_load_connections")]
    pub load_connections: usize,
}

impl Default for BatchFile {
    fn default() -> BatchFile {
        BatchFile {
            interval: None,
            max_rows: None,
            max_bytes: None,
            max_in_flight: default_max_in_flight(),
            load_connections: default_load_connections(),
        }
    }
}

/// The batch interval when the pipeline file names none. Redshift's commits queue up
/// one at a time across the cluster and AWS advises loading it in micro-batches of a
/// minute or more (Firehose buffers at least 60 s before a Redshift COPY): a minute keeps
/// data fresh to about a minute with half the commits of 30 s. PostgreSQL takes the
/// shorter interval at little cost.
pub fn default_interval(warehouse: &WarehouseFile) -> Duration {
    match warehouse {
        WarehouseFile::Postgres(_) => POSTGRES_INTERVAL,
        WarehouseFile::Redshift(_) => REDSHIFT_INTERVAL,
    }
}

/// [`default_interval`] into PostgreSQL.
pub const POSTGRES_INTERVAL: Duration = Duration::from_secs(30);
/// [`default_interval`] into Redshift.
pub const REDSHIFT_INTERVAL: Duration = Duration::from_secs(60);
/// How many messages and input bytes a worker's batch holds at most, when the pipeline
/// file does not say. A batch's rows stay in memory until it commits, at about 2-3 KB a
/// message, and a worker holds its open batch plus closed ones worth at most
/// `max_in_flight + 1` full ones (see [`BatchFile::max_in_flight`]), so these
/// bound memory under a backlog; a stream slower than this per worker and interval
/// never reaches them.
///
/// - PostgreSQL: 50k messages, 64 MiB: a backlog loads faster and in less memory than
///   with 1M batches and 4 in flight, and 25k batches pay each table's transaction too
///   often (docs/decisions/0003).
/// - Redshift: 250k messages, 256 MiB. Every (batch, table) load there is an S3 upload,
///   a COPY and a merge with a fixed cost of about a second, so a batch of 85 tables
///   costs tens of seconds whatever its size; larger batches amortise it. Not measured
///   here (no Redshift on this machine): a quarter of the old 1M, which at 2-3 KB a
///   message was 2-3 GB a batch, several of them a worker under a backlog.
pub fn default_batch_size(warehouse: &WarehouseFile) -> (u64, u64) {
    match warehouse {
        WarehouseFile::Postgres(_) => (50_000, 64 * 1024 * 1024),
        WarehouseFile::Redshift(_) => (250_000, 256 * 1024 * 1024),
    }
}
fn default_load_connections() -> usize {
    4
}
fn default_max_in_flight() -> usize {
    2
}

/// `[limits]`
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct LimitsFile {
    /// Largest message in bytes (Segment's own limit is 32 KiB).
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    /// Deepest nesting of objects and arrays in a message.
    #[serde(default = "default_max_depth")]
    pub max_depth: usize,
}

impl Default for LimitsFile {
    fn default() -> LimitsFile {
        LimitsFile {
            max_message_bytes: default_max_message_bytes(),
            max_depth: default_max_depth(),
        }
    }
}

fn default_max_message_bytes() -> usize {
    Limits::default().max_message_bytes
}
fn default_max_depth() -> usize {
    Limits::default().max_depth
}

/// A pipeline ready to run.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub name: String,
    pub source: SourceFile,
    pub warehouse: WarehouseFile,
    pub batch: BatchPolicy,
    pub max_in_flight: usize,
    pub load_connections: usize,
    pub limits: Limits,
    /// The compiled tracking plan, if the file has a `[plan]`.
    pub plan: Option<std::sync::Arc<crate::route::plan::TrackingPlan>>,
    /// Caps the warehouse enforces: (tables, columns per table).
    pub max_tables: Option<usize>,
    pub max_columns: Option<usize>,
}

/// A configuration problem, naming the file and key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read pipeline file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("pipeline file {path}, line {line}: {message}\n{line:>5} | {text}")]
    Parse {
        path: PathBuf,
        /// 1-based line of the offending key (or of the syntax error).
        line: usize,
        /// That line, as written.
        text: String,
        message: String,
    },
    #[error("pipeline file {path}: `{key}` {problem}")]
    Invalid {
        path: PathBuf,
        key: &'static str,
        problem: String,
    },
}

impl PipelineFile {
    /// A pipeline over the directory `events` (its done logs in `state`) into `schema`
    /// of the PostgreSQL at `url`, with default limits and no tracking plan: what `demo`,
    /// the benchmarks and the tests run.
    pub fn local(
        name: &str,
        events: &Path,
        state: &Path,
        url: &str,
        schema: &str,
        batch: BatchFile,
    ) -> PipelineFile {
        PipelineFile {
            name: name.to_owned(),
            source: SourceFile::Dir {
                path: events.to_owned(),
                state_dir: Some(state.to_owned()),
                poll_interval: Duration::from_secs(1),
            },
            warehouse: WarehouseFile::Postgres(PostgresFile {
                url: url.to_owned(),
                password_env: None,
                schema: schema.to_owned(),
                sslmode: SslMode::Auto,
                sslrootcert: None,
            }),
            batch,
            limits: LimitsFile::default(),
            plan: PlanFile::default(),
        }
    }

    pub fn read(path: &Path) -> Result<PipelineFile, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<PipelineFile, ConfigError> {
        toml::from_str(text).map_err(|error| parse_error(text, path, &error))
    }

    /// Checks every field; `path` is named in the errors.
    pub fn validate(self, path: &Path) -> Result<Pipeline, ConfigError> {
        let invalid = |key: &'static str, problem: String| ConfigError::Invalid {
            path: path.to_owned(),
            key,
            problem,
        };
        if self.name.trim().is_empty() {
            return Err(invalid("name", "must not be empty".into()));
        }
        check_batch(&self.batch)
            .and_then(|()| check_source(&self.source))
            .and_then(|()| check_limits(&self.limits))
            .and_then(|()| check_warehouse(&self.warehouse))
            .and_then(|()| check_plan_caps(&self.plan))
            .map_err(|(key, problem)| invalid(key, problem))?;
        let has_plan = !self.plan.allow_events.is_empty()
            || !self.plan.block_events.is_empty()
            || !self.plan.properties.is_empty();
        let plan = if has_plan {
            Some(std::sync::Arc::new(
                crate::route::plan::TrackingPlan::compile(&self.plan)
                    .map_err(|error| invalid("plan", error.to_string()))?,
            ))
        } else {
            None
        };
        let (default_rows, default_bytes) = default_batch_size(&self.warehouse);
        let source = with_default_state_dir(self.source, &self.warehouse);
        let interval = self
            .batch
            .interval
            .unwrap_or_else(|| default_interval(&self.warehouse));
        Ok(Pipeline {
            plan,
            max_tables: self.plan.max_tables,
            max_columns: self.plan.max_columns,
            name: self.name,
            source,
            warehouse: self.warehouse,
            batch: BatchPolicy {
                interval,
                max_rows: self.batch.max_rows.unwrap_or(default_rows),
                max_bytes: self.batch.max_bytes.unwrap_or(default_bytes),
            },
            max_in_flight: self.batch.max_in_flight,
            load_connections: self.batch.load_connections,
            limits: Limits {
                max_message_bytes: self.limits.max_message_bytes,
                max_depth: self.limits.max_depth,
                ..Limits::default()
            },
        })
    }
}

/// A TOML error located at the offending key. For an unknown key the parser points at
/// its table's header; the key's own line is what the reader needs, with the known key
/// it most resembles.
fn parse_error(text: &str, path: &Path, error: &toml::de::Error) -> ConfigError {
    let offset = error.span().map_or(0, |span| span.start).min(text.len());
    let mut line = text[..offset].matches('\n').count() + 1;
    let mut message = error.message().trim().to_owned();
    if let Some(rest) = message.strip_prefix("unknown field `")
        && let Some((key, expected)) = rest.split_once('`')
    {
        let table = text
            .lines()
            .nth(line - 1)
            .unwrap_or_default()
            .trim()
            .to_owned();
        if let Some(found) = text
            .lines()
            .enumerate()
            .skip(line - 1)
            .find(|(_, written)| {
                written
                    .trim_start()
                    .strip_prefix(key)
                    .is_some_and(|after| after.trim_start().starts_with('='))
            })
        {
            line = found.0 + 1;
        }
        let known: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
        let suggestion = known
            .iter()
            .map(|candidate| (strsim::levenshtein(key, candidate), *candidate))
            .filter(|(distance, _)| *distance <= 2)
            .min()
            .map(|(_, candidate)| format!("did you mean `{candidate}`? "))
            .unwrap_or_default();
        let within = if table.starts_with('[') {
            format!(" in {table}")
        } else {
            String::new()
        };
        message = format!(
            "unknown key `{key}`{within} ({suggestion}known keys: {})",
            known.join(", ")
        );
    }
    ConfigError::Parse {
        path: path.to_owned(),
        line,
        text: text.lines().nth(line - 1).unwrap_or_default().to_owned(),
        message,
    }
}

/// A field's problem: its key and what is wrong with it.
type Problem = (&'static str, String);

/// A `dir` source without a `state_dir` keeps its state under the directory, one state
/// directory per warehouse target: the list of loaded files says what *this* target
/// holds, so a second pipeline reading the same directory into another schema or
/// database loads every file too, instead of finding them all "already loaded".
fn with_default_state_dir(source: SourceFile, warehouse: &WarehouseFile) -> SourceFile {
    match source {
        SourceFile::Dir {
            path,
            state_dir: None,
            poll_interval,
        } => {
            let (url, _) = crate::conninfo::take_password(warehouse.url());
            let schema = warehouse.schema();
            let target = crate::stable_hash::short_hex(&[url.as_bytes(), schema.as_bytes()]);
            let name: String = schema
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '_' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            let state_dir = path
                .join(crate::source::dir::STATE_DIR_NAME)
                .join(format!("{name}-{target}"));
            SourceFile::Dir {
                path,
                state_dir: Some(state_dir),
                poll_interval,
            }
        }
        other => other,
    }
}

fn check_batch(batch: &BatchFile) -> Result<(), Problem> {
    if let Some(interval) = batch.interval
        && interval < Duration::from_millis(10)
    {
        return Err((
            "batch.interval",
            format!("is {interval:?}; it must be at least 10ms"),
        ));
    }
    if batch.max_rows == Some(0) {
        return Err(("batch.max_rows", "must be at least 1".into()));
    }
    if batch.max_bytes == Some(0) {
        return Err(("batch.max_bytes", "must be at least 1".into()));
    }
    if batch.max_in_flight == 0 {
        return Err(("batch.max_in_flight", "must be at least 1".into()));
    }
    if !(1..=64).contains(&batch.load_connections) {
        return Err(("batch.load_connections", "must be between 1 and 64".into()));
    }
    Ok(())
}

fn check_source(source: &SourceFile) -> Result<(), Problem> {
    if let SourceFile::Sqs {
        queue_url,
        receives_in_flight,
        visibility_timeout,
        wait_time,
        ..
    } = source
    {
        if !queue_url.starts_with("http://") && !queue_url.starts_with("https://") {
            return Err((
                "source.queue_url",
                format!("is {queue_url:?}; it must be the queue's http(s) URL"),
            ));
        }
        if !(1..=16).contains(receives_in_flight) {
            return Err((
                "source.receives_in_flight",
                "must be between 1 and 16".into(),
            ));
        }
        if *visibility_timeout < Duration::from_secs(10)
            || *visibility_timeout > Duration::from_secs(12 * 3600)
        {
            return Err((
                "source.visibility_timeout",
                "must be between 10s and 12h".into(),
            ));
        }
        if *wait_time > Duration::from_secs(20) {
            return Err((
                "source.wait_time",
                "must be at most 20s (SQS's limit)".into(),
            ));
        }
    }
    Ok(())
}

fn check_limits(limits: &LimitsFile) -> Result<(), Problem> {
    if limits.max_message_bytes < 64 {
        return Err(("limits.max_message_bytes", "must be at least 64".into()));
    }
    if limits.max_depth == 0 || limits.max_depth > crate::decode::json::MAX_SUPPORTED_DEPTH {
        return Err((
            "limits.max_depth",
            format!(
                "must be between 1 and {}",
                crate::decode::json::MAX_SUPPORTED_DEPTH
            ),
        ));
    }
    Ok(())
}

fn check_warehouse(warehouse: &WarehouseFile) -> Result<(), Problem> {
    if crate::conninfo::has_password(warehouse.url()) {
        return Err((
            "warehouse.url",
            "contains a password; put it in an environment variable and name it in `password_env`"
                .into(),
        ));
    }
    let schema = warehouse.schema();
    if schema.is_empty()
        || !schema
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err((
            "warehouse.schema",
            format!("{schema:?} must be lowercase letters, digits and `_`"),
        ));
    }
    if let WarehouseFile::Redshift(redshift) = &warehouse {
        let staging = &redshift.staging;
        if staging.bucket.is_empty() {
            return Err((
                "warehouse.staging.bucket",
                "must name the S3 bucket loads are staged in".into(),
            ));
        }
        let keys = (
            staging.access_key_id_env.is_some(),
            staging.secret_access_key_env.is_some(),
        );
        match (
            staging.iam_role.is_some(),
            keys,
            staging.access_keys_from_aws_chain,
        ) {
            (true, (false, false), false)
            | (false, (true, true), false)
            | (false, (false, false), true) => {}
            _ => {
                return Err((
                    "warehouse.staging",
                    "set one of iam_role (recommended), both access_key_id_env and \
                     secret_access_key_env, or access_keys_from_aws_chain = true: COPY needs \
                     one way to read the staging bucket"
                        .into(),
                ));
            }
        }
        if let Some(role) = &staging.iam_role
            && role.trim().is_empty()
        {
            return Err((
                "warehouse.staging.iam_role",
                "must be a role ARN or \"default\" (the cluster's default IAM role)".into(),
            ));
        }
        if staging.part_bytes < 1024 * 1024 {
            return Err((
                "warehouse.staging.part_bytes",
                "must be at least 1 MiB".into(),
            ));
        }
        check_redshift_auth(redshift)?;
        if let Some(replacement) = &redshift.accept_invalid_chars
            && !(replacement.len() == 1 && replacement.is_ascii() && replacement != "'")
        {
            return Err((
                "warehouse.accept_invalid_chars",
                "must be one ASCII character (not a quote)".into(),
            ));
        }
    }
    Ok(())
}

/// `auth` and the keys that go with it: `iam` needs exactly one of a cluster and a
/// workgroup, and no password; a cluster also a user in the URL (it is
/// `GetClusterCredentials`' `DbUser`), while a workgroup takes none of the
/// cluster-only keys (Serverless signs in as the user the AWS identity maps to);
/// `password` takes none of the IAM keys.
fn check_redshift_auth(redshift: &RedshiftFile) -> Result<(), Problem> {
    let iam_keys = [
        (
            "warehouse.cluster_identifier",
            redshift.cluster_identifier.is_some(),
        ),
        ("warehouse.workgroup", redshift.workgroup.is_some()),
        ("warehouse.auto_create", redshift.auto_create),
        ("warehouse.db_groups", !redshift.db_groups.is_empty()),
        ("warehouse.region", redshift.region.is_some()),
        ("warehouse.endpoint_url", redshift.endpoint_url.is_some()),
    ];
    if redshift.auth == RedshiftAuth::Password {
        if let Some((key, _)) = iam_keys.into_iter().find(|(_, set)| *set) {
            return Err((
                key,
                "applies only to IAM authentication: add `auth = \"iam\"` or remove it".into(),
            ));
        }
        return Ok(());
    }
    if redshift.password_env.is_some() {
        return Err((
            "warehouse.password_env",
            "must be absent with `auth = \"iam\"`: each connection's password comes from \
             the Redshift API; remove it"
                .into(),
        ));
    }
    match (&redshift.cluster_identifier, &redshift.workgroup) {
        (Some(_), Some(_)) => {
            return Err((
                "warehouse.workgroup",
                "and `warehouse.cluster_identifier` are both set: set exactly one (a \
                 provisioned cluster's identifier, or a Redshift Serverless workgroup)"
                    .into(),
            ));
        }
        (None, None) => {
            return Err((
                "warehouse.cluster_identifier",
                "is needed with `auth = \"iam\"`: set it to the cluster's identifier (the \
                 first label of its endpoint, e.g. \"examplecluster\"), or set \
                 `warehouse.workgroup` to a Redshift Serverless workgroup's name"
                    .into(),
            ));
        }
        (None, Some(workgroup)) if workgroup.trim().is_empty() => {
            return Err((
                "warehouse.workgroup",
                "must be the workgroup's name, e.g. \"default-workgroup\"".into(),
            ));
        }
        (None, Some(_)) => {
            let cluster_only = [
                ("warehouse.auto_create", redshift.auto_create),
                ("warehouse.db_groups", !redshift.db_groups.is_empty()),
            ];
            if let Some((key, _)) = cluster_only.into_iter().find(|(_, set)| *set) {
                return Err((
                    key,
                    "applies only to a provisioned cluster (`cluster_identifier`): Redshift \
                     Serverless signs in as the user the AWS identity maps to; remove it"
                        .into(),
                ));
            }
            return Ok(());
        }
        (Some(cluster), None) if cluster.trim().is_empty() => {
            return Err((
                "warehouse.cluster_identifier",
                "must be the cluster's identifier, e.g. \"examplecluster\"".into(),
            ));
        }
        (Some(_), None) => {}
    }
    if redshift
        .db_groups
        .iter()
        .any(|group| group.trim().is_empty())
    {
        return Err((
            "warehouse.db_groups",
            "must not hold an empty group name".into(),
        ));
    }
    let user = redshift
        .url
        .parse::<tokio_postgres::Config>()
        .ok()
        .and_then(|config| config.get_user().map(str::to_owned));
    if user.is_none_or(|user| user.is_empty()) {
        return Err((
            "warehouse.url",
            "must name the database user with `auth = \"iam\"` \
             (postgres://USER@host:5439/database): it is the user credentials are asked for"
                .into(),
        ));
    }
    Ok(())
}

fn check_plan_caps(plan: &PlanFile) -> Result<(), Problem> {
    if plan.max_tables == Some(0) {
        return Err(("plan.max_tables", "must be at least 1".into()));
    }
    if let Some(columns) = plan.max_columns
        && !(4..=1600).contains(&columns)
    {
        return Err((
            "plan.max_columns",
            "must be between 4 and 1600 (the warehouses' own limit)".into(),
        ));
    }
    Ok(())
}

/// `Duration` fields written as humantime strings (`"30s"`, `"500ms"`).
mod humantime_serde_compat {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        humantime::parse_duration(&text).map_err(|error| {
            serde::de::Error::custom(format!(
                "{text:?} is not a duration like \"30s\" or \"500ms\": {error}"
            ))
        })
    }

    /// Only the JSON Schema's defaults are written this way (in tests).
    #[cfg(test)]
    pub fn serialize<S: serde::Serializer>(
        duration: &Duration,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&humantime::format_duration(*duration).to_string())
    }

    /// The same for an optional duration: absent is `None`.
    pub mod option {
        use std::time::Duration;

        use serde::Deserializer;

        pub fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Option<Duration>, D::Error> {
            super::deserialize(deserializer).map(Some)
        }

        #[cfg(test)]
        pub fn serialize<S: serde::Serializer>(
            duration: &Option<Duration>,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            match duration {
                Some(duration) => super::serialize(duration, serializer),
                None => serializer.serialize_none(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        name = "web"
        [source]
        type = "dir"
        path = "/tmp/events"
        [warehouse]
        type = "postgres"
        url = "postgres://loader@127.0.0.1:5432/analytics"
        schema = "clickstream_web"
    "#;

    /// The JSON Schema editors validate pipeline files with (Taplo / Even Better TOML
    /// read the `#:schema` line of each example) is derived from these types, so it
    /// cannot drift; `UPDATE_SCHEMA=1` rewrites it.
    #[test]
    fn the_pipeline_schema_file_matches_the_config_types() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/pipeline.schema.json");
        let schema = schemars::schema_for!(PipelineFile);
        let text = serde_json::to_string_pretty(&schema).unwrap() + "\n";
        if std::env::var_os("UPDATE_SCHEMA").is_some() {
            std::fs::write(&path, &text).unwrap();
        }
        let stored = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            stored == text,
            "pipelines/pipeline.schema.json is stale: rerun with UPDATE_SCHEMA=1 and review it"
        );
        let examples = std::fs::read_dir(path.parent().unwrap()).unwrap();
        for example in examples.filter_map(Result::ok).map(|entry| entry.path()) {
            if example.extension().is_some_and(|ext| ext == "toml") {
                let text = std::fs::read_to_string(&example).unwrap();
                assert!(
                    text.starts_with("#:schema ./pipeline.schema.json\n"),
                    "{} does not point editors at the schema",
                    example.display()
                );
            }
        }
    }

    #[test]
    fn every_example_pipeline_parses_and_validates() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|ext| ext == "toml") {
                PipelineFile::read(&path).unwrap().validate(&path).unwrap();
                seen += 1;
            }
        }
        assert!(seen > 0, "no pipelines in {}", dir.display());
    }

    #[test]
    fn redshift_requires_tls_and_a_way_for_copy_to_read_the_bucket() {
        let file = |staging: &str| {
            format!(
                "name = \"p\"\n[source]\ntype = \"dir\"\npath = \"/tmp/in\"\n\
                 [warehouse]\ntype = \"redshift\"\nurl = \"postgres://loader@cluster:5439/db\"\nschema = \"web\"\n\
                 [warehouse.staging]\nbucket = \"b\"\n{staging}"
            )
        };
        let path = Path::new("p.toml");
        let pipeline = PipelineFile::parse(&file("iam_role = \"arn:aws:iam::1:role/r\"\n"), path)
            .unwrap()
            .validate(path)
            .unwrap();
        let WarehouseFile::Redshift(redshift) = &pipeline.warehouse else {
            panic!("a redshift warehouse");
        };
        assert_eq!(redshift.sslmode, SslMode::Require);
        assert_eq!(redshift.staging.part_bytes, 64 * 1024 * 1024);
        // Redshift's loads have a fixed cost each: larger batches by default.
        assert_eq!(pipeline.batch.max_rows, 250_000);
        assert_eq!(pipeline.batch.max_bytes, 256 * 1024 * 1024);
        let explicit = format!(
            "{}[batch]\nmax_rows = 1000\nmax_bytes = 2000\n",
            file("iam_role = \"arn:aws:iam::1:role/r\"\n")
        );
        let pipeline = PipelineFile::parse(&explicit, path)
            .unwrap()
            .validate(path)
            .unwrap();
        assert_eq!(
            (pipeline.batch.max_rows, pipeline.batch.max_bytes),
            (1000, 2000),
            "a file's own limits win"
        );
        assert!(!redshift.staging.keep);
        let error = PipelineFile::parse(&file(""), path)
            .unwrap()
            .validate(path)
            .unwrap_err()
            .to_string();
        assert!(error.contains("iam_role"), "{error}");
        let error =
            PipelineFile::parse(&file("iam_role = \"r\"\naccess_key_id_env = \"K\"\n"), path)
                .unwrap()
                .validate(path)
                .unwrap_err()
                .to_string();
        assert!(error.contains("one of"), "{error}");
        let chain_and_role = file("iam_role = \"default\"\naccess_keys_from_aws_chain = true\n");
        let error = PipelineFile::parse(&chain_and_role, path)
            .unwrap()
            .validate(path)
            .unwrap_err()
            .to_string();
        assert!(error.contains("access_keys_from_aws_chain"), "{error}");
        for staging in [
            "iam_role = \"default\"\n",
            "access_keys_from_aws_chain = true\n",
            "access_key_id_env = \"K\"\nsecret_access_key_env = \"S\"\n",
        ] {
            let pipeline = PipelineFile::parse(&file(staging), path).unwrap();
            if let Err(error) = pipeline.validate(path) {
                panic!("{staging}: {error}");
            }
        }
        let error = PipelineFile::parse(&file("iam_role = \" \"\n"), path)
            .unwrap()
            .validate(path)
            .unwrap_err()
            .to_string();
        assert!(error.contains("warehouse.staging.iam_role"), "{error}");
    }

    #[test]
    fn redshift_iam_auth_needs_one_cluster_a_user_and_no_password() {
        let file = |url: &str, warehouse: &str| {
            format!(
                "name = \"p\"\n[source]\ntype = \"dir\"\npath = \"/tmp/in\"\n\
                 [warehouse]\ntype = \"redshift\"\nurl = \"{url}\"\nschema = \"web\"\n{warehouse}\
                 [warehouse.staging]\nbucket = \"b\"\niam_role = \"default\"\n"
            )
        };
        let url = "postgres://loader@cluster:5439/db";
        let path = Path::new("p.toml");
        let validate = |url: &str, warehouse: &str| {
            PipelineFile::parse(&file(url, warehouse), path)
                .unwrap()
                .validate(path)
        };
        let pipeline = validate(
            url,
            "auth = \"iam\"\ncluster_identifier = \"examplecluster\"\nauto_create = true\n\
             db_groups = [\"loaders\"]\nregion = \"eu-west-1\"\n",
        )
        .unwrap();
        let WarehouseFile::Redshift(redshift) = &pipeline.warehouse else {
            panic!("a redshift warehouse");
        };
        assert_eq!(redshift.auth, RedshiftAuth::Iam);
        assert_eq!(redshift.db_groups, ["loaders"]);
        let pipeline = validate(url, "password_env = \"PW\"\n").unwrap();
        let WarehouseFile::Redshift(redshift) = &pipeline.warehouse else {
            panic!("a redshift warehouse");
        };
        assert_eq!(redshift.auth, RedshiftAuth::Password, "the default");
        // A workgroup needs no user in the URL: Serverless names the user.
        let pipeline = validate(
            "postgres://wg.123456789012.us-east-1.redshift-serverless.amazonaws.com:5439/dev",
            "auth = \"iam\"\nworkgroup = \"default-workgroup\"\n",
        )
        .unwrap();
        let WarehouseFile::Redshift(redshift) = &pipeline.warehouse else {
            panic!("a redshift warehouse");
        };
        assert_eq!(redshift.workgroup.as_deref(), Some("default-workgroup"));
        for (warehouse, url, key, says) in [
            (
                "auth = \"iam\"\ncluster_identifier = \"c\"\npassword_env = \"PW\"\n",
                url,
                "warehouse.password_env",
                "remove it",
            ),
            (
                "auth = \"iam\"\n",
                url,
                "warehouse.cluster_identifier",
                "identifier",
            ),
            (
                "auth = \"iam\"\ncluster_identifier = \"c\"\nworkgroup = \"w\"\n",
                url,
                "warehouse.workgroup",
                "exactly one",
            ),
            (
                "auth = \"iam\"\nworkgroup = \" \"\n",
                url,
                "warehouse.workgroup",
                "workgroup's name",
            ),
            (
                "auth = \"iam\"\nworkgroup = \"w\"\nauto_create = true\n",
                url,
                "warehouse.auto_create",
                "provisioned cluster",
            ),
            (
                "auth = \"iam\"\nworkgroup = \"w\"\ndb_groups = [\"g\"]\n",
                url,
                "warehouse.db_groups",
                "provisioned cluster",
            ),
            (
                "auth = \"iam\"\ncluster_identifier = \" \"\n",
                url,
                "warehouse.cluster_identifier",
                "identifier",
            ),
            (
                "auth = \"iam\"\ncluster_identifier = \"c\"\n",
                "postgres://cluster:5439/db",
                "warehouse.url",
                "user",
            ),
            (
                "cluster_identifier = \"c\"\n",
                url,
                "warehouse.cluster_identifier",
                "auth = \"iam\"",
            ),
            (
                "db_groups = [\"g\"]\n",
                url,
                "warehouse.db_groups",
                "auth = \"iam\"",
            ),
        ] {
            let error = validate(url, warehouse).expect_err(warehouse).to_string();
            assert!(
                error.contains(&format!("`{key}`")) && error.contains(says),
                "{warehouse}: {error}"
            );
        }
    }

    #[test]
    fn the_default_batch_interval_is_the_warehouses_and_a_set_one_wins() {
        let redshift = |batch: &str| {
            format!(
                "name = \"p\"\n[source]\ntype = \"dir\"\npath = \"/tmp/in\"\n\
                 [warehouse]\ntype = \"redshift\"\nurl = \"postgres://loader@cluster:5439/db\"\n\
                 schema = \"web\"\npassword_env = \"P\"\n\
                 [warehouse.staging]\nbucket = \"b\"\niam_role = \"default\"\n{batch}"
            )
        };
        let path = Path::new("p.toml");
        let interval = |text: &str| {
            PipelineFile::parse(text, path)
                .unwrap()
                .validate(path)
                .unwrap()
                .batch
                .interval
        };
        assert_eq!(interval(&redshift("")), Duration::from_secs(60));
        assert_eq!(
            interval(&redshift("[batch]\ninterval = \"5s\"\n")),
            Duration::from_secs(5)
        );
        assert_eq!(interval(MINIMAL), Duration::from_secs(30));
    }

    #[test]
    fn minimal_file_gets_defaults() {
        let pipeline = PipelineFile::parse(MINIMAL, Path::new("p.toml"))
            .unwrap()
            .validate(Path::new("p.toml"))
            .unwrap();
        assert_eq!(pipeline.batch.interval, Duration::from_secs(30));
        assert_eq!(pipeline.batch.max_rows, 50_000);
        assert_eq!(pipeline.batch.max_bytes, 64 * 1024 * 1024);
        assert_eq!(pipeline.max_in_flight, 2);
        assert_eq!(pipeline.limits.max_message_bytes, 32 * 1024);
        let SourceFile::Dir { poll_interval, .. } = pipeline.source else {
            panic!("a dir source: {:?}", pipeline.source);
        };
        assert_eq!(poll_interval, Duration::from_secs(1));
    }

    #[test]
    fn sqs_source_gets_defaults_and_is_validated() {
        let text = MINIMAL.replace(
            &MINIMAL[MINIMAL.find("[source]").unwrap()..MINIMAL.find("[warehouse]").unwrap()],
            "[source]\ntype = \"sqs\"\nqueue_url = \"https://sqs.us-east-1.amazonaws.com/1/events\"\n",
        );
        let pipeline = PipelineFile::parse(&text, Path::new("p.toml"))
            .unwrap()
            .validate(Path::new("p.toml"))
            .unwrap();
        let SourceFile::Sqs {
            receives_in_flight,
            visibility_timeout,
            wait_time,
            endpoint_url,
            ..
        } = pipeline.source
        else {
            panic!("an sqs source: {:?}", pipeline.source);
        };
        assert_eq!(receives_in_flight, 2);
        assert_eq!(visibility_timeout, Duration::from_secs(300));
        assert_eq!(wait_time, Duration::from_secs(20));
        assert_eq!(endpoint_url, None);

        for (bad, key) in [
            ("queue_url = \"events\"", "source.queue_url"),
            ("wait_time = \"30s\"", "source.wait_time"),
            ("visibility_timeout = \"1s\"", "source.visibility_timeout"),
            ("receives_in_flight = 0", "source.receives_in_flight"),
        ] {
            let text = text.replace("[warehouse]", &format!("{bad}\n[warehouse]"));
            let text = if bad.starts_with("queue_url") {
                text.replacen(
                    "queue_url = \"https://sqs.us-east-1.amazonaws.com/1/events\"\n",
                    "",
                    1,
                )
            } else {
                text
            };
            let error = PipelineFile::parse(&text, Path::new("p.toml"))
                .unwrap()
                .validate(Path::new("p.toml"))
                .expect_err(bad)
                .to_string();
            assert!(error.contains(key), "{bad}: {error}");
        }
    }

    #[test]
    fn unknown_keys_are_errors_that_name_the_key() {
        let text = MINIMAL.replace("name = \"web\"", "name = \"web\"\nbatch_interval = \"5s\"");
        let error = PipelineFile::parse(&text, Path::new("p.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("p.toml") && error.contains("batch_interval"),
            "{error}"
        );
    }

    #[test]
    fn bad_values_name_file_and_key() {
        let text = format!("{MINIMAL}\n[batch]\ninterval = \"1ms\"\n");
        let error = PipelineFile::parse(&text, Path::new("p.toml"))
            .unwrap()
            .validate(Path::new("p.toml"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("`batch.interval`"), "{error}");
        let text = format!("{MINIMAL}\n[batch]\ninterval = \"soon\"\n");
        let error = PipelineFile::parse(&text, Path::new("p.toml"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("soon"), "{error}");
    }

    #[test]
    fn a_password_in_the_url_is_refused_in_every_form() {
        for url in [
            "postgres://loader:hunter2@127.0.0.1:5432/analytics",
            "postgres://loader@127.0.0.1:5432/analytics?password=hunter2",
            "postgres://loader@127.0.0.1:5432/analytics?sslmode=disable&password=hunter2",
            "host=127.0.0.1 user=loader password=hunter2 dbname=analytics",
        ] {
            let text = MINIMAL.replace("postgres://loader@127.0.0.1:5432/analytics", url);
            let error = PipelineFile::parse(&text, Path::new("p.toml"))
                .unwrap()
                .validate(Path::new("p.toml"))
                .unwrap_err()
                .to_string();
            assert!(
                error.contains("password_env") && !error.contains("hunter2"),
                "{url}: {error}"
            );
        }
    }
}
