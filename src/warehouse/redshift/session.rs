//! session: how the Redshift warehouse reaches its cluster — a PostgreSQL-protocol
//! connection (URL, password, TLS: `postgres::connect`) whose statements go through
//! the [`Executor`], and the staging credentials `COPY` presents — and what its errors
//! mean: the server's own words, and their [`FailureClass`], decided by
//! [`failure_class`] alone.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_s3::config::{Credentials as AwsCredentials, ProvideCredentials};
use tokio_postgres::{Client, SimpleQueryMessage, SimpleQueryRow};

use super::RedshiftWarehouse;
use super::executor::{Direct, Executor, ExecutorError};
use super::iam::{IamAuth, IamError};
use super::sql::{self, Credentials};
use super::stage::{StageError, Staging};
use crate::config::{PostgresFile, RedshiftFile, StagingFile};
use crate::warehouse::postgres::{self, PostgresError, PostgresWarehouse, query_error};
use crate::warehouse::{FailureClass, LoadErrorDetail, WarehouseError};

#[derive(Debug, thiserror::Error)]
pub enum RedshiftError {
    #[error(transparent)]
    Connection(#[from] PostgresError),
    #[error("environment variable {name} (named by warehouse.staging.{field}) is not set")]
    MissingKey { name: String, field: &'static str },
    #[error(
        "warehouse.staging: set iam_role, access_key_id_env and secret_access_key_env, or access_keys_from_aws_chain"
    )]
    NoCredentials,
    /// The AWS default chain gave no keys for `COPY` (`access_keys_from_aws_chain`).
    #[error(
        "cannot read the AWS default chain's keys for COPY (warehouse.staging.access_keys_from_aws_chain): {message}"
    )]
    ChainCredentials {
        message: String,
        class: FailureClass,
    },
    /// No temporary credentials for a connection (`auth = "iam"`).
    #[error(transparent)]
    Iam(#[from] IamError),
    #[error(transparent)]
    Stage(#[from] StageError),
    #[error("{context}: {message}")]
    Executor {
        context: String,
        message: String,
        class: FailureClass,
    },
    #[error("cannot write staged CSV: {0}")]
    Csv(std::io::Error),
    /// A `COPY` the cluster refused for its data, with what its load-error table says;
    /// `row` is the refused row's index in the loaded batch's rows, when the
    /// load-error row's file and line could be traced to it.
    #[error("{source} ({detail})")]
    LoadError {
        source: Box<RedshiftError>,
        detail: String,
        row: Option<usize>,
        found: Option<Box<LoadErrorDetail>>,
    },
}

/// The class of a Redshift error by its SQLSTATE and message: the one place Redshift's
/// errors are sorted. Redshift reports many different failures as `XX000` (internal
/// error), so for that code the message decides: a COPY data error (which points to
/// `stl_load_errors`) is data; a serializable isolation violation (error 1023), a full
/// disk or a resize is transient; S3 or IAM refusing the cluster access to the staging
/// bucket, or the bucket being in another region than `COPY` looks in, is
/// configuration. Every other code means what it means on PostgreSQL.
pub fn failure_class(code: &str, message: &str) -> FailureClass {
    if code != "XX000" {
        return postgres::failure_class(code);
    }
    let message = message.to_ascii_lowercase();
    let mentions = |words: &[&str]| words.iter().any(|word| message.contains(word));
    if mentions(&["stl_load_errors", "sys_load_error_detail"]) {
        FailureClass::Data
    } else if mentions(&[
        "s3serviceexception:access denied",
        "invalidaccesskeyid",
        "signaturedoesnotmatch",
        "nosuchbucket",
        "not authorized to assume iam role",
        "not authorized to get credentials of role",
        // A bucket outside the region COPY names (or the cluster's, when it names none).
        "permanentredirect",
        "must be addressed using the specified endpoint",
    ]) {
        FailureClass::Config
    } else {
        FailureClass::Transient
    }
}

/// What the server said, for a statement that reached it.
fn server_error(error: &PostgresError) -> Option<&tokio_postgres::error::DbError> {
    match error {
        PostgresError::Connect { source, .. } | PostgresError::Query { source, .. } => {
            source.as_db_error()
        }
        _ => None,
    }
}

impl WarehouseError for RedshiftError {
    fn class(&self) -> FailureClass {
        match self {
            RedshiftError::Connection(error) => match server_error(error) {
                Some(db) => failure_class(db.code().code(), db.message()),
                None => error.class(),
            },
            RedshiftError::MissingKey { .. } | RedshiftError::NoCredentials => FailureClass::Config,
            RedshiftError::Stage(error) => error.class,
            RedshiftError::Iam(error) => error.class,
            RedshiftError::Executor { class, .. }
            | RedshiftError::ChainCredentials { class, .. } => *class,
            RedshiftError::Csv(_) => FailureClass::Transient,
            RedshiftError::LoadError { .. } => FailureClass::Data,
        }
    }

    fn refused_row(&self) -> Option<usize> {
        match self {
            RedshiftError::LoadError { row, .. } => *row,
            _ => None,
        }
    }

    fn refusal(&self) -> String {
        match self {
            RedshiftError::LoadError { detail, .. } => detail.clone(),
            RedshiftError::Connection(error) => error.refusal(),
            other => other.to_string(),
        }
    }

    fn load_error(&self) -> Option<&LoadErrorDetail> {
        match self {
            RedshiftError::LoadError { found, .. } => found.as_deref(),
            _ => None,
        }
    }
}

impl RedshiftWarehouse {
    pub fn new(file: &RedshiftFile) -> Result<RedshiftWarehouse, RedshiftError> {
        let connection = PostgresWarehouse::new(&PostgresFile {
            url: file.url.clone(),
            password_env: file.password_env.clone(),
            schema: file.schema.clone(),
            sslmode: file.sslmode,
            sslrootcert: file.sslrootcert.clone(),
        })?;
        let credentials = Arc::new(credentials(&file.staging)?);
        let iam = IamAuth::new(file)?.map(Arc::new);
        Ok(RedshiftWarehouse {
            connection,
            file: Arc::new(file.clone()),
            credentials,
            iam,
            staging: Arc::default(),
            executor: Arc::new(Direct),
            objects: Arc::default(),
            bound_by_views: Arc::default(),
        })
    }

    /// A new session: a connection of its own, opened by the executor. With
    /// `auth = "iam"` it signs in as the temporary user, with credentials held since an
    /// earlier connection when they are not about to expire.
    pub async fn session(&self) -> Result<Session, RedshiftError> {
        let client = match &self.iam {
            Some(iam) => {
                let login = iam.credentials().await?;
                self.connection
                    .connect_as(&login.user, &login.password)
                    .await?
            }
            None => self.connection.connect().await?,
        };
        let executor = Arc::clone(&self.executor);
        executor
            .open(&client)
            .await
            .map_err(executor_error("open the session"))?;
        Ok(Session { client, executor })
    }

    /// The object log's session (S3 sources), made on first use.
    pub(super) async fn object_session(&self) -> Result<Arc<Session>, RedshiftError> {
        let mut slot = self.objects.lock().await;
        if let Some(session) = slot.as_ref() {
            return Ok(Arc::clone(session));
        }
        let session = Arc::new(self.session().await?);
        *slot = Some(Arc::clone(&session));
        Ok(session)
    }
}

/// How long the chain's temporary keys must still be valid to be presented to a
/// `COPY` again; closer to their expiry they are read afresh, so a long COPY never
/// outlives its keys.
const KEYS_MARGIN: Duration = Duration::from_secs(15 * 60);

/// Where `COPY`'s credentials come from.
pub(super) enum CopyCredentials {
    /// The same for every load: a role, or a key pair read from the environment at
    /// start.
    Fixed(Credentials),
    /// The AWS default chain's keys (the staging client's provider), with those last
    /// read while they stay valid beyond [`KEYS_MARGIN`].
    AwsChain(tokio::sync::Mutex<Option<AwsCredentials>>),
}

impl std::fmt::Debug for CopyCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CopyCredentials::Fixed(credentials) => credentials.fmt(f),
            CopyCredentials::AwsChain(_) => write!(f, "AwsChain"),
        }
    }
}

/// How `COPY` may read the staging bucket: an IAM role (`default`: the cluster's
/// default role), a key pair read from the environment variables the pipeline file
/// names, or the AWS default chain's keys, read for each load.
fn credentials(staging: &StagingFile) -> Result<CopyCredentials, RedshiftError> {
    let env = |name: &String, field| {
        std::env::var(name).map_err(|_| RedshiftError::MissingKey {
            name: name.clone(),
            field,
        })
    };
    match (
        &staging.iam_role,
        &staging.access_key_id_env,
        &staging.secret_access_key_env,
        staging.access_keys_from_aws_chain,
    ) {
        (Some(role), None, None, false) => Ok(CopyCredentials::Fixed(Credentials::role(role))),
        (None, Some(id), Some(secret), false) => Ok(CopyCredentials::Fixed(Credentials::Keys {
            id: env(id, "access_key_id_env")?,
            secret: env(secret, "secret_access_key_env")?,
            token: None,
        })),
        (None, None, None, true) => Ok(CopyCredentials::AwsChain(Default::default())),
        _ => Err(RedshiftError::NoCredentials),
    }
}

impl RedshiftWarehouse {
    /// The credentials the next `COPY` presents. The chain's keys are asked of the
    /// staging client's provider (the default chain, or the client a test injects)
    /// unless those held are temporary and valid beyond [`KEYS_MARGIN`].
    pub(super) async fn copy_credentials(
        &self,
        staging: &Staging,
    ) -> Result<Credentials, RedshiftError> {
        let held = match &*self.credentials {
            CopyCredentials::Fixed(credentials) => return Ok(credentials.clone()),
            CopyCredentials::AwsChain(held) => held,
        };
        let mut held = held.lock().await;
        let valid = held.as_ref().is_some_and(|keys| {
            keys.expiry()
                .is_some_and(|expiry| expiry > SystemTime::now() + KEYS_MARGIN)
        });
        if !valid {
            let provider =
                staging
                    .credentials()
                    .ok_or_else(|| RedshiftError::ChainCredentials {
                        message: "the AWS configuration has no credentials provider".into(),
                        class: FailureClass::Config,
                    })?;
            let keys = provider.provide_credentials().await.map_err(|error| {
                RedshiftError::ChainCredentials {
                    class: chain_failure_class(&error),
                    message: aws_sdk_s3::error::DisplayErrorContext(error).to_string(),
                }
            })?;
            *held = Some(keys);
        }
        let keys = held.as_ref().ok_or(RedshiftError::NoCredentials)?;
        Ok(Credentials::Keys {
            id: keys.access_key_id().to_owned(),
            secret: keys.secret_access_key().to_owned(),
            token: keys.session_token().map(str::to_owned),
        })
    }
}

/// No credentials in the chain, or a chain set up wrongly, is configuration; a
/// provider that timed out or failed (the instance metadata service, STS) may answer
/// on the next load.
pub(super) fn chain_failure_class(error: &CredentialsError) -> FailureClass {
    match error {
        CredentialsError::CredentialsNotLoaded(_) | CredentialsError::InvalidConfiguration(_) => {
            FailureClass::Config
        }
        _ => FailureClass::Transient,
    }
}

/// One connection, speaking Redshift's SQL over the simple-query protocol (no
/// prepared statements: parameters would need a type round trip Redshift handles
/// poorly, and the loader's only literals are names and numbers).
pub struct Session {
    client: Client,
    executor: Arc<dyn Executor>,
}

impl Session {
    /// Runs one statement; returns the rows it affected.
    pub async fn execute(&self, statement: &str, context: &str) -> Result<u64, RedshiftError> {
        let messages = self.send(statement, context).await?;
        Ok(messages
            .iter()
            .rev()
            .find_map(|message| match message {
                SimpleQueryMessage::CommandComplete(rows) => Some(*rows),
                _ => None,
            })
            .unwrap_or(0))
    }

    /// Runs one query; returns its rows as text.
    pub async fn query(
        &self,
        statement: &str,
        context: &str,
    ) -> Result<Vec<SimpleQueryRow>, RedshiftError> {
        let messages = self.send(statement, context).await?;
        Ok(messages
            .into_iter()
            .filter_map(|message| match message {
                SimpleQueryMessage::Row(row) => Some(row),
                _ => None,
            })
            .collect())
    }

    /// Ends an open transaction, if any, without waiting on the executor: after a
    /// failed load the transaction may be open, and the loader task drops this session
    /// anyway, so a failure here is of no interest.
    pub(super) async fn rollback(&self) {
        let _ = self.client.batch_execute(sql::ROLLBACK).await;
    }

    async fn send(
        &self,
        statement: &str,
        context: &str,
    ) -> Result<Vec<SimpleQueryMessage>, RedshiftError> {
        self.executor
            .send(&self.client, statement)
            .await
            .map_err(executor_error(context))
    }
}

/// Names a failed statement by what it was for.
pub(super) fn executor_error(context: &str) -> impl FnOnce(ExecutorError) -> RedshiftError + '_ {
    move |error| match error {
        ExecutorError::Query(error) => query_error(context.to_owned())(error).into(),
        ExecutorError::Other { message, class } => RedshiftError::Executor {
            context: context.to_owned(),
            message,
            class,
        },
    }
}

/// Whether a statement failed because a concurrent creator got there first.
pub(super) fn is_race(error: &RedshiftError) -> bool {
    matches!(error, RedshiftError::Connection(PostgresError::Query { source, .. })
        if source.as_db_error().is_some_and(|db| matches!(db.code().code(), "42701" | "42P07" | "42P06" | "23505")))
}

/// Whether a widening failed because a view bound to the table reads the column
/// (`0A000`, "cannot alter type of a column used by a view or rule").
pub(super) fn is_bound_by_view(error: &RedshiftError) -> bool {
    matches!(error, RedshiftError::Connection(PostgresError::Query { source, .. })
        if source.as_db_error().is_some_and(|db| db.code().code() == "0A000" && db.message().contains("view")))
}

/// Whether a statement failed because the relation it reads does not exist.
pub(super) fn is_undefined_table(error: &RedshiftError) -> bool {
    matches!(error, RedshiftError::Connection(PostgresError::Query { source, .. })
        if source.as_db_error().is_some_and(|db| db.code().code() == "42P01"))
}

#[cfg(test)]
mod tests {
    use super::failure_class;
    use crate::warehouse::FailureClass::{Config, Data, Transient};

    #[test]
    fn redshift_errors_have_their_class() {
        let cases = [
            (
                "XX000",
                "Load into table '_tracktable_stage' failed.  Check 'stl_load_errors' system table for details.",
                Data,
            ),
            (
                "XX000",
                "Load into table 't' failed. Check 'sys_load_error_detail' system view for details.",
                Data,
            ),
            ("XX000", "1023", Transient),
            (
                "XX000",
                "1023 DETAIL: Serializable isolation violation on table - 100167",
                Transient,
            ),
            ("XX000", "Disk Full", Transient),
            (
                "XX000",
                "Cannot execute write query because system is in resize mode",
                Transient,
            ),
            (
                "XX000",
                "S3ServiceException:Access Denied,Status 403,Error AccessDenied",
                Config,
            ),
            (
                "XX000",
                "User arn:aws:redshift:... is not authorized to assume IAM Role arn:aws:iam::1:role/x",
                Config,
            ),
            (
                "XX000",
                "Not authorized to get credentials of role arn:aws:iam::1:role/x",
                Config,
            ),
            (
                "XX000",
                "S3ServiceException:The bucket you are attempting to access must be addressed using the specified endpoint. Please send all future requests to this endpoint.,Status 301,Error PermanentRedirect",
                Config,
            ),
            (
                "XX000",
                "The specified S3 prefix 'p' does not exist",
                Transient,
            ),
            ("40001", "serializable isolation violation", Transient),
            ("53300", "too many connections", Transient),
            (
                "57P01",
                "terminating connection due to administrator command",
                Transient,
            ),
            ("54011", "tables can have at most 1600 columns", Data),
            ("22001", "Value too long for character type", Data),
            ("42501", "permission denied for relation t", Config),
            ("42501", "must be owner of relation t", Config),
            (
                "28000",
                "password authentication failed for user \"loader\"",
                Config,
            ),
            ("42P07", "relation \"t\" already exists", Transient),
        ];
        for (code, message, class) in cases {
            assert_eq!(failure_class(code, message), class, "{code} {message}");
        }
    }

    mod chain {
        //! The chain's keys, as COPY presents them: read from the staging client's
        //! provider, reused only while valid beyond the margin.

        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::time::{Duration, SystemTime};

        use aws_credential_types::provider::future;
        use aws_sdk_s3::config::{
            BehaviorVersion, Credentials as AwsCredentials, ProvideCredentials,
            SharedCredentialsProvider,
        };

        use crate::config::RedshiftFile;
        use crate::warehouse::redshift::RedshiftWarehouse;
        use crate::warehouse::redshift::sql::Credentials;
        use crate::warehouse::redshift::stage::Staging;

        /// Temporary keys numbered by the call that made them, valid for `lifetime`.
        #[derive(Debug)]
        struct Issuer {
            calls: Arc<AtomicUsize>,
            lifetime: Duration,
        }

        impl ProvideCredentials for Issuer {
            fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
            where
                Self: 'a,
            {
                let n = self.calls.fetch_add(1, Ordering::SeqCst);
                future::ProvideCredentials::ready(Ok(AwsCredentials::new(
                    format!("ASIA{n}"),
                    format!("secret{n}"),
                    Some(format!("token{n}")),
                    Some(SystemTime::now() + self.lifetime),
                    "issuer",
                )))
            }
        }

        async fn presented(lifetime: Duration) -> (Vec<Credentials>, usize) {
            let file: RedshiftFile = toml::from_str(
                "url = \"postgres://loader@cluster:5439/db\"\nschema = \"web\"\n\
                 [staging]\nbucket = \"b\"\naccess_keys_from_aws_chain = true\n",
            )
            .expect("a Redshift warehouse");
            let calls = Arc::new(AtomicUsize::new(0));
            let issuer = SharedCredentialsProvider::new(Issuer {
                calls: Arc::clone(&calls),
                lifetime,
            });
            let config = aws_sdk_s3::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(aws_sdk_s3::config::Region::new("us-east-1"))
                .credentials_provider(issuer.clone())
                .build();
            let s3 = aws_sdk_s3::Client::from_conf(config);
            let staging = Staging::new(s3, Some(issuer), "b", "");
            let warehouse = RedshiftWarehouse::new(&file).expect("a warehouse");
            let mut presented = Vec::new();
            for _ in 0..3 {
                presented.push(warehouse.copy_credentials(&staging).await.expect("keys"));
            }
            (presented, calls.load(Ordering::SeqCst))
        }

        #[tokio::test]
        async fn keys_near_their_expiry_are_read_again_for_every_load() {
            let (presented, calls) = presented(Duration::from_secs(5 * 60)).await;
            assert_eq!(calls, 3);
            assert_eq!(
                presented[2],
                Credentials::Keys {
                    id: "ASIA2".into(),
                    secret: "secret2".into(),
                    token: Some("token2".into()),
                }
            );
        }

        #[tokio::test]
        async fn keys_valid_well_beyond_the_load_are_reused() {
            let (presented, calls) = presented(Duration::from_secs(3600)).await;
            assert_eq!(calls, 1);
            assert!(presented.iter().all(|keys| *keys == presented[0]));
        }
    }
}
