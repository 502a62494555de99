//! redshift: the Redshift warehouse — each (batch, table) staged as gzip CSV in S3,
//! `COPY`ed into a session staging table, merged delete-then-insert on the key, and
//! recorded; the tables one connection loads of a batch all in one transaction.
//!
//! What it shares with the PostgreSQL loader: the connection (TLS, password from the
//! environment, the per-process column cache, the tracking plan's caps) and every pure
//! decision — which DDL a batch needs (`warehouse::ddl`), what each value becomes in its
//! column or why it goes to `_discards` (`warehouse::plan`, `warehouse::discard`). What
//! differs is SQL (all of it in [`sql`]) and how rows travel (CSV through S3 instead of
//! binary COPY). The DDL runs one autocommitted statement at a time before the load's
//! transaction (`ddl`), and so do the staging of rows and discards; the merges
//! (`load`), the discards and the loads' records (`record`) run in it, so a batch
//! costs one commit per connection, not one per table: Redshift queues commits
//! cluster-wide. A failed load rolls back every table in it, and the retry stages
//! again under new directories.
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
use super::discard::{Discard, DiscardCounts};
use super::plan::TableSchema;
use super::postgres::{PostgresWarehouse, query_error};
use super::{
    DiscardReason, FailureClass, LoadReport, Loader, ObjectId, TableBatch, TogetherError,
    Warehouse, WarehouseError,
};
use crate::config::RedshiftFile;
use crate::route::Row;

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
        let mut reports = self
            .load_together(&[batch])
            .await
            .map_err(|failed| failed.error)?;
        Ok(reports.pop().unwrap_or_default())
    }

    async fn refuse(
        &mut self,
        batch: &TableBatch,
        reason: &DiscardReason,
    ) -> Result<LoadReport, RedshiftError> {
        let settled = [Err(reason.clone())];
        let reports = vec![LoadReport::default()];
        match self.load_settled(&[batch], &settled, reports).await {
            Ok(mut reports) => Ok(reports.pop().unwrap_or_default()),
            Err(failed) => {
                self.after_failure(batch).await;
                Err(failed.error)
            }
        }
    }

    /// Every table's DDL and staging first, then one transaction for all of them:
    /// Redshift serializes commits cluster-wide, so a batch commits once per
    /// connection, not once per table.
    fn shares_transactions(&self) -> bool {
        true
    }

    async fn load_together(
        &mut self,
        batches: &[&TableBatch],
    ) -> Result<Vec<LoadReport>, TogetherError<RedshiftError>> {
        let result = self.load_shared(batches).await;
        if let Err(failed) = &result {
            match failed.table.and_then(|index| batches.get(index)) {
                Some(batch) => self.after_failure(batch).await,
                None => {
                    for batch in batches {
                        self.warehouse.connection.forget(batch.table.as_str());
                    }
                    self.session.rollback().await;
                }
            }
        }
        result
    }
}

/// One table of a shared load, staged and ready for the transaction.
struct Prepared<'a> {
    batch: &'a TableBatch,
    chosen: Vec<&'a Row>,
    names: Vec<&'a str>,
    lines: Vec<csv::PartLines>,
    rows_staged: Option<stage::Staged>,
    discards_staged: Option<stage::Staged>,
    /// New discards by reason, in their staging table.
    new: Option<(DiscardCounts, String)>,
    /// Rows that went to `_discards` whole instead of to the table.
    whole: u64,
    report: LoadReport,
}

impl RedshiftLoader {
    async fn after_failure(&mut self, batch: &TableBatch) {
        // The catalogue may differ from what this load thought: read it afresh.
        self.warehouse.connection.forget(batch.table.as_str());
        self.session.rollback().await;
    }

    /// [`Loader::load_together`]: settles every table's schema (autocommitted DDL),
    /// writes and stages its rows and discards, then merges and records all of them in
    /// one transaction. Whatever was staged is removed, committed or not: a retry
    /// stages again under new directories.
    async fn load_shared(
        &mut self,
        batches: &[&TableBatch],
    ) -> Result<Vec<LoadReport>, TogetherError<RedshiftError>> {
        let mut reports = vec![LoadReport::default(); batches.len()];
        let mut settled = Vec::with_capacity(batches.len());
        for (index, batch) in batches.iter().enumerate() {
            let columns = self
                .settle_schema(batch, &mut reports[index])
                .await
                .map_err(|error| TogetherError {
                    error,
                    table: Some(index),
                    committed: Vec::new(),
                })?;
            settled.push(columns);
        }
        let reports = self.load_settled(batches, &settled, reports).await?;
        for (batch, columns) in batches.iter().zip(settled) {
            let table = batch.table.as_str();
            match columns {
                Ok(columns) => self.warehouse.connection.remember(table, columns),
                Err(reason) => tracing::warn!(
                    table,
                    batch = batch.batch.0,
                    rows = batch.rows.len(),
                    reason = %reason,
                    "table not created; its rows went to _discards"
                ),
            }
        }
        Ok(reports)
    }

    /// Stages and commits `batches` whose schemas are `settled`: into their tables,
    /// or, where `settled` holds a reason, every row to `_discards` whole with it.
    /// `reports` holds what each table's DDL did.
    async fn load_settled(
        &mut self,
        batches: &[&TableBatch],
        settled: &[Result<TableSchema, DiscardReason>],
        reports: Vec<LoadReport>,
    ) -> Result<Vec<LoadReport>, TogetherError<RedshiftError>> {
        let mut prepared: Vec<Prepared<'_>> = Vec::with_capacity(batches.len());
        let mut failure = None;
        let tables = batches.iter().zip(settled).zip(reports);
        for (index, ((batch, columns), report)) in tables.enumerate() {
            match self.prepare(index, batch, columns, report).await {
                Ok(table) => prepared.push(table),
                Err((error, staged)) => {
                    self.remove_staged(staged).await;
                    failure = Some(TogetherError {
                        error,
                        table: Some(index),
                        committed: Vec::new(),
                    });
                    break;
                }
            }
        }
        let committed = match failure {
            Some(failure) => Err(failure),
            None => self.commit(&mut prepared).await,
        };
        for table in &mut prepared {
            let staged = [table.rows_staged.take(), table.discards_staged.take()];
            self.remove_staged(staged).await;
        }
        committed?;
        Ok(prepared.into_iter().map(|table| table.report).collect())
    }

    /// Before the transaction: one table's rows chosen, written and staged, its
    /// discards staged and those `_discards` lacks copied into its discard staging
    /// table. On error, returns what it staged, to remove.
    async fn prepare<'a>(
        &self,
        index: usize,
        batch: &'a TableBatch,
        settled: &'a Result<TableSchema, DiscardReason>,
        report: LoadReport,
    ) -> Result<Prepared<'a>, (RedshiftError, [Option<stage::Staged>; 2])> {
        let table = batch.table.as_str();
        let (chosen, discards, written, whole) = match settled {
            Ok(columns) => {
                let chosen = load::choose_rows(table, &batch.rows);
                let mut discards = chosen.unkeyed.clone();
                let whole = discards.len() as u64;
                let written = self
                    .write_rows(table, columns, &chosen.rows, &mut discards)
                    .map_err(|error| (error, [None, None]))?;
                (chosen.rows, discards, Some(written), whole)
            }
            Err(reason) => {
                let discards: Vec<Discard> = batch
                    .rows
                    .iter()
                    .map(|row| Discard::whole_row(table, row, reason.clone()))
                    .collect();
                let whole = discards.len() as u64;
                (Vec::new(), discards, None, whole)
            }
        };
        let (names, parts) = match written {
            Some(written) => (written.names, written.parts),
            None => (Vec::new(), Vec::new()),
        };
        let lines = parts.iter().map(|part| part.lines.clone()).collect();
        // Rows first, then discards: each load's staging directories are numbered in
        // that order.
        let rows_staged = self
            .stage_rows(batch, parts)
            .await
            .map_err(|error| (error, [None, None]))?;
        let discards_staged = match self.stage_discards(batch, &discards).await {
            Ok(staged) => staged,
            Err(error) => return Err((error, [rows_staged, None])),
        };
        let new = match &discards_staged {
            Some(staged) => {
                let stage = sql::discard_stage(index);
                match self.stage_new_discards(staged, &discards, &stage).await {
                    Ok(counts) => Some((counts, stage)),
                    Err(error) => return Err((error, [rows_staged, discards_staged])),
                }
            }
            None => None,
        };
        Ok(Prepared {
            batch,
            chosen,
            names,
            lines,
            rows_staged,
            discards_staged,
            new,
            whole,
            report,
        })
    }

    /// The shared transaction: every table's staged rows merged, its discards and its
    /// record written; committed once.
    async fn commit(
        &mut self,
        prepared: &mut [Prepared<'_>],
    ) -> Result<(), TogetherError<RedshiftError>> {
        let whole = |error| TogetherError {
            error,
            table: None,
            committed: Vec::new(),
        };
        self.session
            .execute(sql::BEGIN, "begin")
            .await
            .map_err(whole)?;
        for (index, table) in prepared.iter_mut().enumerate() {
            self.merge_and_record(table)
                .await
                .map_err(|error| TogetherError {
                    error,
                    table: Some(index),
                    committed: Vec::new(),
                })?;
        }
        let tables = prepared.len();
        let context = match prepared {
            [one] => format!("commit {}", one.batch.table.as_str()),
            _ => format!("commit {tables} tables"),
        };
        self.session
            .execute(sql::COMMIT, &context)
            .await
            .map_err(whole)?;
        Ok(())
    }

    /// Within the shared transaction: one table's rows merged, its discards and its
    /// load recorded.
    async fn merge_and_record(&self, table: &mut Prepared<'_>) -> Result<(), RedshiftError> {
        let batch = table.batch;
        let rows = load::StagedRows {
            names: &table.names,
            source: table.rows_staged.as_ref(),
            lines: &table.lines,
            chosen: &table.chosen,
            batch: &batch.rows,
        };
        let report = &mut table.report;
        report.rows_loaded = match rows.source {
            Some(_) => self.merge_rows(batch.table.as_str(), &rows).await?,
            None => 0,
        };
        report.duplicates =
            (batch.rows.len() as u64).saturating_sub(report.rows_loaded + table.whole);
        let new = table
            .new
            .as_ref()
            .map(|(counts, stage)| (*counts, stage.as_str()));
        self.record(batch, new, report).await
    }
}
