//! session: how the Redshift warehouse reaches its cluster — a PostgreSQL-protocol
//! connection (URL, password, TLS: `postgres::connect`) whose statements go through
//! the [`Executor`], and the staging credentials `COPY` presents — and what its errors
//! mean: the server's own words, and whether retrying can help.

use std::sync::Arc;

use tokio_postgres::{Client, SimpleQueryMessage, SimpleQueryRow};

use super::RedshiftWarehouse;
use super::executor::{Direct, Executor, ExecutorError};
use super::sql::{self, Credentials};
use super::stage::StageError;
use crate::config::{PostgresFile, RedshiftFile, StagingFile};
use crate::warehouse::WarehouseError;
use crate::warehouse::postgres::{PostgresError, PostgresWarehouse, query_error};

#[derive(Debug, thiserror::Error)]
pub enum RedshiftError {
    #[error(transparent)]
    Connection(#[from] PostgresError),
    #[error("environment variable {name} (named by warehouse.staging.{field}) is not set")]
    MissingKey { name: String, field: &'static str },
    #[error("warehouse.staging: set iam_role, or access_key_id_env and secret_access_key_env")]
    NoCredentials,
    #[error(transparent)]
    Stage(#[from] StageError),
    #[error("{context}: {message}")]
    Executor {
        context: String,
        message: String,
        permanent: bool,
    },
    #[error("cannot write staged CSV: {0}")]
    Csv(std::io::Error),
}

impl WarehouseError for RedshiftError {
    fn is_permanent(&self) -> bool {
        match self {
            RedshiftError::Connection(error) => error.is_permanent(),
            RedshiftError::MissingKey { .. } | RedshiftError::NoCredentials => true,
            RedshiftError::Stage(error) => error.permanent,
            RedshiftError::Executor { permanent, .. } => *permanent,
            RedshiftError::Csv(_) => false,
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
        let credentials = credentials(&file.staging)?;
        Ok(RedshiftWarehouse {
            connection,
            file: Arc::new(file.clone()),
            credentials,
            staging: Arc::default(),
            executor: Arc::new(Direct),
            objects: Arc::default(),
        })
    }

    /// A new session: a connection of its own, opened by the executor.
    pub async fn session(&self) -> Result<Session, RedshiftError> {
        let client = self.connection.connect().await?;
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

/// How `COPY` may read the staging bucket: an IAM role, or a key pair read from the
/// environment variables the pipeline file names.
fn credentials(staging: &StagingFile) -> Result<Credentials, RedshiftError> {
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
    ) {
        (Some(role), None, None) => Ok(Credentials::IamRole(role.clone())),
        (None, Some(id), Some(secret)) => Ok(Credentials::Keys {
            id: env(id, "access_key_id_env")?,
            secret: env(secret, "secret_access_key_env")?,
        }),
        _ => Err(RedshiftError::NoCredentials),
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
        ExecutorError::Other { message, permanent } => RedshiftError::Executor {
            context: context.to_owned(),
            message,
            permanent,
        },
    }
}

/// Whether a statement failed because a concurrent creator got there first.
pub(super) fn is_race(error: &RedshiftError) -> bool {
    matches!(error, RedshiftError::Connection(PostgresError::Query { source, .. })
        if source.as_db_error().is_some_and(|db| matches!(db.code().code(), "42701" | "42P07" | "42P06" | "23505")))
}
