//! redshift: each (batch, table) staged as gzip CSV in S3, `COPY`ed into a session
//! staging table, merged delete-then-insert on the key, and recorded, in one
//! transaction.
//!
//! What it shares with the PostgreSQL loader: the connection (TLS, password from the
//! environment, the per-process column cache, the tracking plan's caps) and every pure
//! decision in `plan` — which DDL a batch needs, what each value becomes in its column
//! or why it goes to `_discards`. What differs is SQL (all of it in [`sql`]) and how
//! rows travel (CSV through S3 instead of binary COPY). DDL runs before the load's
//! transaction, one autocommitted statement at a time: Redshift allows one column per
//! `ALTER TABLE ... ADD COLUMN` and no `ALTER COLUMN ... TYPE` inside a transaction
//! block, and has no advisory locks; a concurrent creator's "already exists" is
//! tolerated and the catalogue re-read. A failed load rolls back, and the retry stages
//! again under a new directory.

pub mod csv;
pub mod executor;
pub mod sql;
pub mod stage;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tokio::sync::OnceCell;
use tokio_postgres::{Client, SimpleQueryMessage, SimpleQueryRow};

use self::csv::PartWriter;
use self::executor::{Direct, Executor, ExecutorError};
use self::sql::{Credentials, DISCARD_STAGE, STAGE};
use self::stage::{StageError, Staged, Staging};
use super::ddl::{self, SchemaChange, TablePlan};
use super::discard::{self, Discard, DiscardCounts, DiscardReason, KeptDiscards};
use super::plan::{self, Cell, TableSchema};
use super::postgres::{PostgresError, PostgresWarehouse, query_error};
use super::{LoadReport, Loader, ObjectId, TableBatch, Warehouse, WarehouseError};
use crate::config::{PostgresFile, RedshiftFile};
use crate::route::{ColumnName, ColumnType, Row, Value};

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

/// A Redshift warehouse: one schema, one staging prefix.
#[derive(Clone)]
pub struct RedshiftWarehouse {
    connection: PostgresWarehouse,
    file: Arc<RedshiftFile>,
    credentials: Credentials,
    /// Made on first use (an S3 client needs the tokio runtime).
    staging: Arc<OnceCell<Arc<Staging>>>,
    executor: Arc<dyn Executor>,
    objects: Arc<tokio::sync::Mutex<Option<Arc<Session>>>>,
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
    pub fn new(file: &RedshiftFile) -> Result<RedshiftWarehouse, RedshiftError> {
        let connection = PostgresWarehouse::new(&PostgresFile {
            url: file.url.clone(),
            password_env: file.password_env.clone(),
            schema: file.schema.clone(),
            sslmode: file.sslmode,
            sslrootcert: file.sslrootcert.clone(),
        })?;
        let staging = &file.staging;
        let env = |name: &String, field| {
            std::env::var(name).map_err(|_| RedshiftError::MissingKey {
                name: name.clone(),
                field,
            })
        };
        let credentials = match (
            &staging.iam_role,
            &staging.access_key_id_env,
            &staging.secret_access_key_env,
        ) {
            (Some(role), None, None) => Credentials::IamRole(role.clone()),
            (None, Some(id), Some(secret)) => Credentials::Keys {
                id: env(id, "access_key_id_env")?,
                secret: env(secret, "secret_access_key_env")?,
            },
            _ => return Err(RedshiftError::NoCredentials),
        };
        Ok(RedshiftWarehouse {
            connection,
            file: Arc::new(file.clone()),
            credentials,
            staging: Arc::default(),
            executor: Arc::new(Direct),
            objects: Arc::default(),
        })
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
    /// credentials the chain cannot find, such as an emulator's).
    pub fn with_staging_client(mut self, s3: aws_sdk_s3::Client) -> Self {
        let staging = &self.file.staging;
        let staging = Staging::new(s3, &staging.bucket, &staging.prefix);
        self.staging = Arc::new(OnceCell::new_with(Some(Arc::new(staging))));
        self
    }

    pub fn schema(&self) -> &str {
        self.connection.schema()
    }

    async fn staging(&self) -> Arc<Staging> {
        let staging = &self.file.staging;
        Arc::clone(
            self.staging
                .get_or_init(|| async {
                    let (s3, _) = crate::source::sqs::clients(
                        staging.region.as_deref(),
                        staging.endpoint_url.as_deref(),
                    )
                    .await;
                    Arc::new(Staging::new(s3, &staging.bucket, &staging.prefix))
                })
                .await,
        )
    }

    /// A new session.
    pub async fn session(&self) -> Result<Session, RedshiftError> {
        let client = self.connection.connect().await?;
        let executor = Arc::clone(&self.executor);
        executor
            .open(&client)
            .await
            .map_err(executor_error("open the session"))?;
        Ok(Session { client, executor })
    }

    async fn object_session(&self) -> Result<Arc<Session>, RedshiftError> {
        let mut slot = self.objects.lock().await;
        if let Some(session) = slot.as_ref() {
            return Ok(Arc::clone(session));
        }
        let session = Arc::new(self.session().await?);
        *slot = Some(Arc::clone(&session));
        Ok(session)
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
fn executor_error(context: &str) -> impl FnOnce(ExecutorError) -> RedshiftError + '_ {
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
fn is_race(error: &RedshiftError) -> bool {
    matches!(error, RedshiftError::Connection(PostgresError::Query { source, .. })
        if source.as_db_error().is_some_and(|db| matches!(db.code().code(), "42701" | "42P07" | "42P06" | "23505")))
}

impl Warehouse for RedshiftWarehouse {
    type Error = RedshiftError;
    type Loader = RedshiftLoader;

    async fn prepare(&self) -> Result<(), RedshiftError> {
        let schema = self.schema().to_owned();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = async {
                let session = self.session().await?;
                let exists = !session
                    .query(&sql::schema_exists(&schema), "look up the schema")
                    .await?
                    .is_empty();
                if !exists {
                    session
                        .execute(&sql::create_schema(&schema), "create the schema")
                        .await?;
                }
                for statement in sql::create_bookkeeping(&schema) {
                    session
                        .execute(&statement, "create bookkeeping tables")
                        .await?;
                }
                Ok::<(), RedshiftError>(())
            }
            .await;
            match result {
                // Several processes preparing at once can collide on a CREATE.
                Err(error) if attempt < 3 && (is_race(&error) || !error.is_permanent()) => {
                    tracing::debug!(error = %error, "preparing the schema again");
                    tokio::time::sleep(std::time::Duration::from_millis(200 * attempt)).await;
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
            let rows = session
                .query(
                    &sql::select_loaded_objects(self.schema(), chunk),
                    "look up loaded objects",
                )
                .await;
            let rows = match rows {
                Ok(rows) => rows,
                Err(error) => {
                    *self.objects.lock().await = None;
                    return Err(error);
                }
            };
            for row in rows {
                if let (Some(object), Some(content)) = (row.get(0), row.get(1)) {
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
            self.warehouse.connection.forget(batch.table.as_str());
            // The transaction may be open; the loader task drops this session anyway.
            let _ = self.session.client.batch_execute(sql::ROLLBACK).await;
        }
        result
    }
}

/// The text `_discards.value` keeps of a value: at most Redshift's widest varchar, cut
/// at a character boundary. The reason says how long the whole value was, and the
/// object and line point to it.
fn fit(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The newest of a `users`/`accounts` row's calls: (timestamp, message id), a missing
/// timestamp oldest — as the merge in SQL orders them.
fn recency(row: &Row) -> (Option<i64>, Option<&str>) {
    let mut timestamp = None;
    let mut message_id = None;
    for (column, value) in row.cells() {
        match (column.as_str(), value) {
            ("timestamp", Value::Timestamp(t)) => timestamp = Some(t.0),
            ("message_id", Value::Varchar(id)) => message_id = Some(&**id),
            _ => {}
        }
    }
    (timestamp, message_id)
}

impl RedshiftLoader {
    async fn read_columns(&self, table: &str) -> Result<TableSchema, RedshiftError> {
        let rows = self
            .session
            .query(
                &sql::select_columns(self.warehouse.schema(), table),
                &format!("read the columns of {table}"),
            )
            .await?;
        let mut columns = TableSchema::new();
        for row in rows {
            let (Some(name), Some(data_type)) = (row.get(0), row.get(1)) else {
                continue;
            };
            let length: Option<u32> = row.get(2).and_then(|l| l.parse().ok());
            if name == crate::warehouse::sql::key_column(table) {
                columns.insert(name.to_owned(), ColumnType::Varchar(u32::MAX));
                continue;
            }
            let column_type = match data_type {
                "boolean" => ColumnType::Boolean,
                "bigint" => ColumnType::BigInt,
                "double precision" => ColumnType::Double,
                "timestamp without time zone" => ColumnType::Timestamp,
                "character varying" => ColumnType::Varchar(length.unwrap_or(65535).max(1)),
                other => {
                    tracing::warn!(
                        table,
                        column = name,
                        data_type = other,
                        "column has a type tracktable does not write; its values go to _discards"
                    );
                    continue;
                }
            };
            columns.insert(name.to_owned(), column_type);
        }
        Ok(columns)
    }

    /// Creates the table or adds and widens its columns, one autocommitted statement at
    /// a time; returns the columns as the catalogue has them afterwards, or the reason
    /// the table cap refuses the table.
    async fn settle_schema(
        &self,
        batch: &TableBatch,
        report: &mut LoadReport,
    ) -> Result<Result<TableSchema, DiscardReason>, RedshiftError> {
        let table = batch.table.as_str();
        let caps = self.warehouse.connection.caps();
        if let Some(known) = self.warehouse.connection.cached(table)
            && ddl::is_settled(&known, &batch.observed)
        {
            return Ok(Ok(known));
        }
        let mut columns = self.read_columns(table).await?;
        let tables_in_schema = match caps.table_cap(table) {
            Some(_) if columns.is_empty() => Some(self.count_tables().await?),
            _ => None,
        };
        let mut plan =
            match ddl::plan_table(table, &columns, &batch.observed, caps, tables_in_schema) {
                TablePlan::Refuse(reason) => return Ok(Err(reason)),
                TablePlan::Apply(plan) => plan,
            };
        if let Some(create) = &plan.create {
            self.create_table(batch, create, report).await?;
            // What is left to change comes from the catalogue: a concurrent creator may
            // have made the table with other columns.
            columns = self.read_columns(table).await?;
            plan = match ddl::plan_table(table, &columns, &batch.observed, caps, None) {
                TablePlan::Refuse(reason) => return Ok(Err(reason)),
                TablePlan::Apply(plan) => plan,
            };
        }
        ddl::log_refused(table, batch.batch.0, &plan.refused);
        if self.alter_table(batch, &plan.alter, report).await? {
            columns = self.read_columns(table).await?;
        }
        Ok(Ok(columns))
    }

    /// The tables that count against the table cap. Redshift has no advisory locks, so
    /// processes creating different tables at once may overshoot the cap by a few.
    async fn count_tables(&self) -> Result<usize, RedshiftError> {
        Ok(self
            .session
            .query(&sql::count_tables(self.warehouse.schema()), "count tables")
            .await?
            .first()
            .and_then(|row| row.get(0))
            .and_then(|count| count.parse().ok())
            .unwrap_or(0))
    }

    /// Creates the table with the columns the plan starts it with. A concurrent
    /// creator's "already exists" is no error: the catalogue is read next anyway.
    async fn create_table(
        &self,
        batch: &TableBatch,
        create: &[(ColumnName, ColumnType)],
        report: &mut LoadReport,
    ) -> Result<(), RedshiftError> {
        let table = batch.table.as_str();
        let listed: Vec<(&str, ColumnType)> = create
            .iter()
            .map(|(column, column_type)| (column.as_str(), *column_type))
            .collect();
        let statement = sql::create_table(self.warehouse.schema(), table, &listed);
        match self
            .session
            .execute(&statement, &format!("create table {table}"))
            .await
        {
            Ok(_) => {
                report.schema_changes += 1 + create.len() as u64;
                tracing::info!(
                    table,
                    batch = batch.batch.0,
                    columns = create.len(),
                    "table created"
                );
                Ok(())
            }
            Err(error) if is_race(&error) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Applies column changes one statement at a time (Redshift allows one column per
    /// `ALTER TABLE`); a change a concurrent loader made first is no error. Returns
    /// whether any change was applied.
    async fn alter_table(
        &self,
        batch: &TableBatch,
        changes: &[SchemaChange],
        report: &mut LoadReport,
    ) -> Result<bool, RedshiftError> {
        let schema = self.warehouse.schema();
        let table = batch.table.as_str();
        let mut applied = Vec::new();
        for change in changes {
            let statement = match change {
                SchemaChange::AddColumn {
                    column,
                    column_type,
                } => sql::add_column(schema, table, column.as_str(), *column_type),
                SchemaChange::Widen { column, width } => {
                    sql::widen_varchar(schema, table, column.as_str(), *width)
                }
            };
            match self
                .session
                .execute(&statement, &format!("change table {table}"))
                .await
            {
                Ok(_) => {
                    report.schema_changes += 1;
                    applied.push(change);
                }
                Err(error) if is_race(&error) => {}
                Err(error) => return Err(error),
            }
        }
        ddl::log_changes(table, batch.batch.0, applied.iter().copied());
        Ok(!applied.is_empty())
    }

    async fn load_once(&mut self, batch: &TableBatch) -> Result<LoadReport, RedshiftError> {
        let schema = self.warehouse.schema().to_owned();
        let table = batch.table.as_str();
        let mut report = LoadReport::default();
        let columns = match self.settle_schema(batch, &mut report).await? {
            Ok(columns) => columns,
            Err(reason) => return self.refuse_table(batch, reason, report).await,
        };
        let max_columns = self.warehouse.connection.caps().columns;
        let latest = crate::warehouse::sql::is_latest(table);
        let key = crate::warehouse::sql::key_column(table);

        // Rows with a key Redshift cannot store go to _discards whole; of the rest, one
        // row per key: the first in the batch, or for users/accounts the newest.
        let mut discards: Vec<Discard> = Vec::new();
        let mut chosen: HashMap<&str, &Row> = HashMap::with_capacity(batch.rows.len());
        let mut order: Vec<&str> = Vec::with_capacity(batch.rows.len());
        for row in &batch.rows {
            if let Some(reason) = discard::key_problem(&row.message_id, Some(sql::KEY_WIDTH)) {
                discards.push(Discard::whole_row(table, row, reason));
                continue;
            }
            match chosen.get_mut(row.message_id.as_str()) {
                None => {
                    chosen.insert(&row.message_id, row);
                    order.push(&row.message_id);
                }
                Some(kept) => {
                    if latest && recency(row) > recency(kept) {
                        *kept = row;
                    }
                }
            }
        }
        let unkeyed = discards.len() as u64;
        let rows: Vec<&Row> = order
            .iter()
            .filter_map(|id| chosen.get(id).copied())
            .collect();

        let mut layout = plan::Layout::of_table(key, &columns, max_columns);

        let mut writer = PartWriter::new(self.warehouse.file.staging.part_bytes);
        let mut cells: Vec<Option<Cell>> = vec![None; layout.names.len()];
        for row in &rows {
            layout.place(table, row, &mut cells, &mut discards);
            writer.push(&cells).map_err(RedshiftError::Csv)?;
        }
        let parts = writer.finish().map_err(RedshiftError::Csv)?;
        let mut staged: Vec<Staged> = Vec::new();
        let rows_staged = if parts.is_empty() {
            None
        } else {
            let put = self
                .staging
                .put(&schema, table, batch.batch.0, "rows", parts)
                .await?;
            staged.push(put.clone());
            Some(put)
        };
        let discards_staged = self
            .stage_discards(&schema, table, batch, &discards)
            .await?;
        if let Some(put) = &discards_staged {
            staged.push(put.clone());
        }

        let session = &self.session;
        session.execute(sql::BEGIN, "begin").await?;
        let mut inserted = 0;
        if let Some(source) = &rows_staged {
            session
                .execute(&sql::drop_stage(STAGE), "drop an old staging table")
                .await?;
            session
                .execute(
                    &sql::create_stage(&schema, table, STAGE),
                    &format!("create staging table for {table}"),
                )
                .await?;
            session
                .execute(
                    &sql::copy_from_s3(
                        STAGE,
                        &layout.names,
                        &source.source,
                        &self.warehouse.credentials,
                        self.warehouse.file.accept_invalid_chars.as_deref(),
                    ),
                    &format!("COPY into the staging table of {table}"),
                )
                .await?;
            if latest {
                session
                    .execute(
                        &sql::drop_stale_staged(&schema, table, STAGE),
                        &format!("compare {table} with stored rows"),
                    )
                    .await?;
            }
            let replaced = session
                .execute(
                    &sql::delete_staged_keys(&schema, table, STAGE),
                    &format!("merge into {table}"),
                )
                .await?;
            let added = session
                .execute(
                    &sql::insert_from_stage(&schema, table, STAGE, &layout.names),
                    &format!("merge into {table}"),
                )
                .await?;
            inserted = if latest {
                added
            } else {
                added.saturating_sub(replaced)
            };
            session
                .execute(&sql::drop_stage(STAGE), "drop the staging table")
                .await?;
        }
        report.rows_loaded = inserted;
        report.duplicates = (batch.rows.len() as u64).saturating_sub(inserted + unkeyed);
        if let Some(source) = &discards_staged {
            report.discards_by_reason = self.merge_discards(&schema, source, &discards).await?;
            report.discards = report.discards_by_reason.total();
        }
        session
            .execute(
                &sql::record_load(
                    &schema,
                    batch.batch.0,
                    table,
                    report.rows_loaded,
                    report.duplicates,
                    report.discards,
                ),
                "record the load",
            )
            .await?;
        session
            .execute(sql::COMMIT, &format!("commit {table}"))
            .await?;
        self.warehouse.connection.remember(table, columns);
        if !self.warehouse.file.staging.keep {
            for put in &staged {
                self.staging.remove(put).await;
            }
        }
        Ok(report)
    }

    async fn stage_discards(
        &self,
        schema: &str,
        table: &str,
        batch: &TableBatch,
        discards: &[Discard],
    ) -> Result<Option<Staged>, RedshiftError> {
        if discards.is_empty() {
            return Ok(None);
        }
        let mut seen = HashSet::new();
        let mut writer = PartWriter::new(self.warehouse.file.staging.part_bytes);
        for discard in discards {
            let message_id = fit(&discard.message_id, sql::KEY_WIDTH);
            if !seen.insert((discard.table.as_str(), discard.column.as_str(), message_id)) {
                continue;
            }
            let line = discard.line.to_string();
            let reason = discard.reason.to_string();
            let received_at = discard.received_at.map(|micros| {
                let mut text = String::new();
                csv::timestamp(&mut text, micros);
                text
            });
            writer
                .push_text(&[
                    Some(&discard.table),
                    Some(fit(&discard.column, 127)),
                    Some(message_id),
                    Some(fit(&discard.value, sql::MAX_VARCHAR)),
                    Some(fit(&reason, 1024)),
                    Some(fit(&discard.object, 2048)),
                    Some(&line),
                    received_at.as_deref(),
                ])
                .map_err(RedshiftError::Csv)?;
        }
        let parts = writer.finish().map_err(RedshiftError::Csv)?;
        Ok(Some(
            self.staging
                .put(schema, table, batch.batch.0, "discards", parts)
                .await?,
        ))
    }

    /// Within the open transaction: COPYs the staged discards and keeps the new ones;
    /// returns how many were new, by reason.
    async fn merge_discards(
        &self,
        schema: &str,
        source: &Staged,
        written: &[Discard],
    ) -> Result<DiscardCounts, RedshiftError> {
        let session = &self.session;
        session
            .execute(
                &sql::drop_stage(DISCARD_STAGE),
                "drop an old discard staging table",
            )
            .await?;
        session
            .execute(
                &sql::create_discard_stage(schema, DISCARD_STAGE),
                "create the discard staging table",
            )
            .await?;
        session
            .execute(
                &sql::copy_from_s3(
                    DISCARD_STAGE,
                    &sql::DISCARD_COLUMNS,
                    &source.source,
                    &self.warehouse.credentials,
                    self.warehouse.file.accept_invalid_chars.as_deref(),
                ),
                "COPY discards",
            )
            .await?;
        let mut kept = KeptDiscards::new(written);
        for row in session
            .query(
                &sql::count_new_discards(schema, DISCARD_STAGE),
                "count new discards",
            )
            .await?
        {
            let count: u64 = row.get(1).and_then(|c| c.parse().ok()).unwrap_or(0);
            kept.kept(row.get(0).unwrap_or(""), count);
        }
        session
            .execute(
                &sql::merge_discards(schema, DISCARD_STAGE),
                "merge discards",
            )
            .await?;
        session
            .execute(
                &sql::drop_stage(DISCARD_STAGE),
                "drop the discard staging table",
            )
            .await?;
        Ok(kept.counts())
    }

    /// A table the tracking plan's table cap keeps out: its rows go to `_discards`
    /// whole and the load is recorded.
    async fn refuse_table(
        &mut self,
        batch: &TableBatch,
        reason: DiscardReason,
        mut report: LoadReport,
    ) -> Result<LoadReport, RedshiftError> {
        let schema = self.warehouse.schema().to_owned();
        let table = batch.table.as_str();
        let discards: Vec<Discard> = batch
            .rows
            .iter()
            .map(|row| Discard::whole_row(table, row, reason.clone()))
            .collect();
        let staged = self
            .stage_discards(&schema, table, batch, &discards)
            .await?;
        self.session.execute(sql::BEGIN, "begin").await?;
        if let Some(source) = &staged {
            report.discards_by_reason = self.merge_discards(&schema, source, &discards).await?;
            report.discards = report.discards_by_reason.total();
        }
        self.session
            .execute(
                &sql::record_load(&schema, batch.batch.0, table, 0, 0, report.discards),
                "record the load",
            )
            .await?;
        self.session
            .execute(sql::COMMIT, &format!("commit {table}"))
            .await?;
        if let Some(put) = &staged
            && !self.warehouse.file.staging.keep
        {
            self.staging.remove(put).await;
        }
        tracing::warn!(
            table,
            batch = batch.batch.0,
            rows = batch.rows.len(),
            cap = self.warehouse.connection.caps().tables.unwrap_or(0),
            "table over the tracking plan's table cap; its rows went to _discards"
        );
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discarded_values_are_cut_at_a_character_boundary() {
        assert_eq!(fit("héllo", 2), "h");
        assert_eq!(fit("héllo", 3), "hé");
        assert_eq!(fit("abc", 10), "abc");
    }
}
