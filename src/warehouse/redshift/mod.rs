//! redshift: the Redshift warehouse — each (batch, table) staged as gzip CSV in S3,
//! `COPY`ed into a session staging table, merged delete-then-insert on the key, and
//! recorded, in one transaction.
//!
//! What it shares with the PostgreSQL loader: the connection (TLS, password from the
//! environment, the per-process column cache, the tracking plan's caps) and every pure
//! decision — which DDL a batch needs (`warehouse::ddl`), what each value becomes in its
//! column or why it goes to `_discards` (`warehouse::plan`, `warehouse::discard`). What
//! differs is SQL (all of it in [`sql`]) and how rows travel (CSV through S3 instead of
//! binary COPY). The DDL runs one autocommitted statement at a time before the load's
//! transaction (`ddl`); the rows (`load`), their discards and the load's record
//! (`record`) in it. A failed load rolls back, and the retry stages again under a new
//! directory.
//!
//! This file owns the warehouse's shared state (the connection settings, staging
//! client, credentials, executor and the object log's session) and the load's order of
//! steps.

pub mod csv;
mod ddl;
pub mod executor;
pub mod iam;
mod load;
pub mod probe;
mod record;
mod session;
pub mod sql;
pub mod stage;

use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::OnceCell;

use self::executor::Executor;
use self::session::{CopyCredentials, is_race};
pub use self::session::{RedshiftError, Session, failure_class};
use self::stage::Staging;
use super::postgres::{PostgresWarehouse, query_error};
use super::{
    DiscardReason, FailureClass, LoadReport, Loader, ObjectId, TableBatch, Warehouse,
    WarehouseError,
};
use crate::config::RedshiftFile;

/// A Redshift warehouse: one schema, one staging prefix.
#[derive(Clone)]
pub struct RedshiftWarehouse {
    connection: PostgresWarehouse,
    file: Arc<RedshiftFile>,
    credentials: Arc<CopyCredentials>,
    /// `auth = "iam"`: where each new connection's temporary credentials come from.
    iam: Option<Arc<iam::IamAuth>>,
    /// Made on first use (an S3 client needs the tokio runtime).
    staging: Arc<OnceCell<Arc<Staging>>>,
    executor: Arc<dyn Executor>,
    objects: Arc<tokio::sync::Mutex<Option<Arc<Session>>>>,
    /// (table, column) pairs a view keeps from widening: not tried again in this
    /// process, and logged once.
    bound_by_views: Arc<std::sync::Mutex<std::collections::HashSet<(String, String)>>>,
}

impl std::fmt::Debug for RedshiftWarehouse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedshiftWarehouse")
            .field("connection", &self.connection)
            .field("bucket", &self.file.staging.bucket)
            .field("credentials", &self.credentials)
            .finish()
    }
}

impl RedshiftWarehouse {
    /// Whether a view keeps `column` of `table` from widening (seen in this process).
    pub(super) fn is_bound_by_view(&self, table: &str, column: &str) -> bool {
        self.bound_by_views
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(&(table.to_owned(), column.to_owned()))
    }

    pub(super) fn note_bound_by_view(&self, table: &str, column: &str) {
        self.bound_by_views
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert((table.to_owned(), column.to_owned()));
    }

    /// Applies the tracking plan's caps (see `PostgresWarehouse::with_caps`).
    pub fn with_caps(mut self, tables: Option<usize>, columns: Option<usize>) -> Self {
        self.connection = self.connection.with_caps(tables, columns);
        self
    }

    /// Runs every session's statements through `executor` instead of sending them to
    /// the cluster as written.
    pub fn with_executor(mut self, executor: Arc<dyn Executor>) -> Self {
        self.executor = executor;
        self
    }

    /// Stages through `s3` instead of a client made from the AWS default chain (for
    /// credentials the chain cannot find, such as an emulator's); `credentials`
    /// provides its keys, for `access_keys_from_aws_chain`.
    pub fn with_staging_client(
        mut self,
        s3: aws_sdk_s3::Client,
        credentials: Option<aws_sdk_s3::config::SharedCredentialsProvider>,
    ) -> Self {
        let staging = &self.file.staging;
        let staging = Staging::new(s3, credentials, &staging.bucket, &staging.prefix);
        self.staging = Arc::new(OnceCell::new_with(Some(Arc::new(staging))));
        self
    }

    /// Asks for IAM credentials through `redshift` instead of a client made from the
    /// AWS default chain (for credentials the chain cannot find, such as an
    /// emulator's). No effect with `auth = "password"`.
    pub fn with_iam_client(mut self, redshift: aws_sdk_redshift::Client) -> Self {
        self.iam = self.iam.map(|iam| Arc::new(iam.with_client(redshift)));
        self
    }

    /// Asks a Serverless workgroup's IAM credentials through `serverless` instead of a
    /// client made from the AWS default chain. No effect with `auth = "password"`.
    pub fn with_serverless_client(
        mut self,
        serverless: aws_sdk_redshiftserverless::Client,
    ) -> Self {
        self.iam = self
            .iam
            .map(|iam| Arc::new(iam.with_serverless_client(serverless)));
        self
    }

    pub fn schema(&self) -> &str {
        self.connection.schema()
    }

    /// Creates the schema (only when missing) and the bookkeeping tables.
    async fn prepare_once(&self) -> Result<(), RedshiftError> {
        let schema = self.schema();
        let session = self.session().await?;
        let exists = !session
            .query(&sql::schema_exists(schema), "look up the schema")
            .await?
            .is_empty();
        if !exists {
            session
                .execute(&sql::create_schema(schema), "create the schema")
                .await?;
        }
        for statement in sql::create_bookkeeping(schema) {
            session
                .execute(&statement, "create bookkeeping tables")
                .await?;
        }
        Ok(())
    }

    /// The staging area, made on first use.
    async fn staging(&self) -> Arc<Staging> {
        let staging = &self.file.staging;
        Arc::clone(
            self.staging
                .get_or_init(|| async {
                    let endpoint = staging.endpoint_url.as_deref();
                    let shared =
                        crate::source::aws::shared_config(staging.region.as_deref(), endpoint)
                            .await;
                    let s3 = crate::source::aws::s3_client(&shared, endpoint.is_some());
                    Arc::new(Staging::new(
                        s3,
                        shared.credentials_provider(),
                        &staging.bucket,
                        &staging.prefix,
                    ))
                })
                .await,
        )
    }
}

impl Warehouse for RedshiftWarehouse {
    type Error = RedshiftError;
    type Loader = RedshiftLoader;

    async fn prepare(&self) -> Result<(), RedshiftError> {
        let mut backoff = crate::retry::Backoff::default();
        loop {
            match self.prepare_once().await {
                // Several processes preparing at once can collide on a CREATE; the
                // caller waits out a transient failure beyond these few attempts.
                Err(error)
                    if backoff.failures() < 2
                        && (is_race(&error) || error.class() == FailureClass::Transient) =>
                {
                    tracing::debug!(error = %error, "preparing the schema again");
                    tokio::time::sleep(backoff.failed()).await;
                }
                other => return other,
            }
        }
    }

    async fn loader(&self) -> Result<RedshiftLoader, RedshiftError> {
        Ok(RedshiftLoader {
            session: self.session().await?,
            staging: self.staging().await,
            warehouse: self.clone(),
        })
    }

    async fn loaded_objects(
        &self,
        objects: Vec<ObjectId>,
    ) -> Result<HashSet<ObjectId>, RedshiftError> {
        let mut loaded = HashSet::new();
        for chunk in objects.chunks(100) {
            let session = self.object_session().await?;
            let context = "look up loaded objects";
            let rows = session
                .query(&sql::select_loaded_objects(self.schema(), chunk), context)
                .await;
            let rows = match rows {
                Ok(rows) => rows,
                Err(error) => {
                    *self.objects.lock().await = None;
                    return Err(error);
                }
            };
            for row in rows {
                let cell = |index| row.try_get(index).map_err(query_error(context));
                if let (Some(object), Some(content)) = (cell(0)?, cell(1)?) {
                    loaded.insert((object.to_owned(), content.to_owned()));
                }
            }
        }
        Ok(loaded)
    }

    async fn record_objects(&self, objects: Vec<ObjectId>) -> Result<(), RedshiftError> {
        for chunk in objects.chunks(100) {
            let session = self.object_session().await?;
            if let Err(error) = session
                .execute(
                    &sql::record_objects(self.schema(), chunk),
                    "record loaded objects",
                )
                .await
            {
                *self.objects.lock().await = None;
                return Err(error);
            }
        }
        Ok(())
    }
}

/// One worker's session and staging area.
pub struct RedshiftLoader {
    session: Session,
    staging: Arc<Staging>,
    warehouse: RedshiftWarehouse,
}

impl Loader for RedshiftLoader {
    type Error = RedshiftError;

    async fn load(&mut self, batch: &TableBatch) -> Result<LoadReport, RedshiftError> {
        let result = self.load_once(batch).await;
        if result.is_err() {
            self.after_failure(batch).await;
        }
        result
    }

    async fn refuse(
        &mut self,
        batch: &TableBatch,
        reason: &DiscardReason,
    ) -> Result<LoadReport, RedshiftError> {
        let result = self.refuse_rows(batch, reason, LoadReport::default()).await;
        if result.is_err() {
            self.after_failure(batch).await;
        }
        result
    }
}

impl RedshiftLoader {
    async fn after_failure(&mut self, batch: &TableBatch) {
        // The catalogue may differ from what this load thought: read it afresh.
        self.warehouse.connection.forget(batch.table.as_str());
        self.session.rollback().await;
    }

    async fn load_once(&mut self, batch: &TableBatch) -> Result<LoadReport, RedshiftError> {
        let table = batch.table.as_str();
        let mut report = LoadReport::default();
        let columns = match self.settle_schema(batch, &mut report).await? {
            Ok(columns) => columns,
            Err(reason) => {
                let report = self.refuse_rows(batch, &reason, report).await?;
                tracing::warn!(
                    table,
                    batch = batch.batch.0,
                    rows = batch.rows.len(),
                    reason = %reason,
                    "table not created; its rows went to _discards"
                );
                return Ok(report);
            }
        };
        let chosen = load::choose_rows(table, &batch.rows);
        let mut discards = chosen.unkeyed.clone();
        let written = self.write_rows(table, &columns, &chosen.rows, &mut discards)?;
        let lines: Vec<csv::PartLines> = written
            .parts
            .iter()
            .map(|part| part.lines.clone())
            .collect();
        // Rows first, then discards: each load's staging directories are numbered in
        // that order.
        let rows_staged = self.stage_rows(batch, written.parts).await?;
        let discards_staged = match self.stage_discards(batch, &discards).await {
            Ok(staged) => staged,
            Err(error) => {
                self.remove_staged([rows_staged]).await;
                return Err(error);
            }
        };
        let rows = load::StagedRows {
            names: &written.names,
            source: rows_staged.as_ref(),
            lines: &lines,
            chosen: &chosen.rows,
            batch: &batch.rows,
        };
        let unkeyed = chosen.unkeyed.len() as u64;
        let committed = self
            .commit(
                batch,
                &rows,
                discards_staged.as_ref(),
                &discards,
                unkeyed,
                &mut report,
            )
            .await;
        // Committed or not, what this attempt staged is of no further use: a retry
        // stages again under a new directory.
        self.remove_staged([rows_staged, discards_staged]).await;
        committed?;
        self.warehouse.connection.remember(table, columns);
        Ok(report)
    }

    /// The load's transaction: the new discards staged (before it, see
    /// `stage_new_discards`), then in it the staged rows merged, the discards and the
    /// record written, committed. `unkeyed` rows went to `_discards` whole.
    async fn commit(
        &mut self,
        batch: &TableBatch,
        rows: &load::StagedRows<'_>,
        discards_staged: Option<&stage::Staged>,
        discards: &[super::discard::Discard],
        unkeyed: u64,
        report: &mut LoadReport,
    ) -> Result<(), RedshiftError> {
        let new = match discards_staged {
            Some(staged) => Some(self.stage_new_discards(staged, discards).await?),
            None => None,
        };
        self.session.execute(sql::BEGIN, "begin").await?;
        report.rows_loaded = match rows.source {
            Some(_) => self.merge_rows(batch.table.as_str(), rows).await?,
            None => 0,
        };
        report.duplicates = (batch.rows.len() as u64).saturating_sub(report.rows_loaded + unkeyed);
        self.finish(batch, new, report).await
    }
}
