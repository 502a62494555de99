//! postgres: the PostgreSQL warehouse — one schema in one database.
//!
//! Per (batch, table): the schema changes in a short transaction of their own under an
//! advisory lock per table (`ddl`), then one data transaction: the rows, de-duplicated
//! by message id in memory and binary-COPYed straight into the table or merged newest-wins
//! (`load`), their discards and the `_tracktable_loads` row (`record`). A failed
//! load rolls the data back and is retried by the loader task with a fresh connection;
//! committed DDL is what the retry needs anyway. Every statement's text is in
//! `warehouse::sql`; the connection and its errors are `connect`'s.
//!
//! This file owns the warehouse's shared state: the per-process column cache, which
//! tables expect stored ids, the object log's connection, and the lock keys.

mod connect;
mod ddl;
mod load;
mod prepared;
mod record;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use tokio_postgres::Client;

pub(crate) use self::connect::query_error;
pub use self::connect::{PostgresError, failure_class};
use self::ddl::Settled;
use self::load::Overlap;
pub use self::load::raw_copy;
use self::prepared::Prepared;
use super::ddl::Caps;
use super::plan::TableSchema;
use super::sql;
use super::{DiscardReason, LoadReport, Loader, ObjectId, TableBatch, Warehouse};
use crate::stable_hash;

/// A PostgreSQL warehouse: one schema in one database.
#[derive(Clone)]
pub struct PostgresWarehouse {
    config: tokio_postgres::Config,
    /// `None`: plain connections (loopback, or `sslmode = "disable"`).
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    /// `host:port/db` for messages: never the password.
    target: String,
    schema: String,
    /// What this process knows of its tables' columns, shared by every loader
    /// connection: a table's batches go to whichever of its worker's connections is
    /// free, so a per-connection cache went stale when another connection added a
    /// column (and that column's values were discarded). One worker owns each table,
    /// and loads it on one connection at a time, so the entry is never contended.
    tables: Arc<Mutex<HashMap<String, TableSchema>>>,
    /// Tables whose recent loads met message ids they already held: their loads look
    /// stored ids up before copying instead of copying optimistically.
    overlapping: Arc<Mutex<Overlap>>,
    /// The object log's connection (S3 sources), made on first use.
    objects: Arc<tokio::sync::Mutex<Option<Arc<Client>>>>,
    /// The tracking plan's caps: tables in the schema, columns per table.
    caps: Caps,
}

impl PostgresWarehouse {
    /// Applies the tracking plan's caps: at most `tables` tables in the schema
    /// (bookkeeping tables, whose names start with `_`, aside) and `columns` columns
    /// per table, under the warehouse's own column limit, which applies without a plan
    /// too. What does not fit goes to `_discards` with the reason.
    pub fn with_caps(mut self, tables: Option<usize>, columns: Option<usize>) -> Self {
        self.caps = Caps::plan(tables, columns);
        self
    }

    /// The object log's connection, connecting (and creating the table) if needed.
    async fn object_log_client(&self) -> Result<Arc<Client>, PostgresError> {
        let mut slot = self.objects.lock().await;
        if let Some(client) = slot.as_ref() {
            return Ok(Arc::clone(client));
        }
        let client = self.connect().await?;
        // Under the schema's lock: two processes creating it at once would collide.
        client
            .batch_execute(&sql::create_objects_table_locked(
                &self.schema,
                self.schema_lock_key(),
            ))
            .await
            .map_err(query_error("create the object log"))?;
        let client = Arc::new(client);
        *slot = Some(Arc::clone(&client));
        Ok(client)
    }

    pub(crate) fn cached(&self, table: &str) -> Option<TableSchema> {
        self.tables
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(table)
            .cloned()
    }

    pub(crate) fn remember(&self, table: &str, columns: TableSchema) {
        self.tables
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(table.to_owned(), columns);
    }

    pub(crate) fn forget(&self, table: &str) {
        self.tables
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(table);
    }

    /// Whether `table`'s next load should look stored ids up first.
    fn expects_stored(&self, table: &str) -> bool {
        self.overlapping
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .expects_stored(table)
    }

    /// What a load of `table` found: stored ids among its rows, or none.
    fn note_stored(&self, table: &str, met: bool) {
        self.overlapping
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .note(table, met);
    }

    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The tracking plan's caps.
    pub fn caps(&self) -> Caps {
        self.caps
    }

    /// The advisory lock that serialises schema set-up (`prepare`) across workers and
    /// processes.
    fn schema_lock_key(&self) -> i64 {
        stable_hash::fnv1a64(&[b"tracktable ddl ", self.schema.as_bytes()]) as i64
    }

    /// The advisory lock that serialises one table's DDL. Per table, not per schema:
    /// different tables' DDL does not conflict, and a schema-wide lock made a first
    /// batch's dozens of CREATE TABLEs wait on each other.
    fn table_lock_key(&self, table: &str) -> i64 {
        stable_hash::fnv1a64(&[
            b"tracktable ddl ",
            self.schema.as_bytes(),
            b"\0",
            table.as_bytes(),
        ]) as i64
    }
}

impl Warehouse for PostgresWarehouse {
    type Error = PostgresError;
    type Loader = PostgresLoader;

    async fn prepare(&self) -> Result<(), PostgresError> {
        let mut client = self.connect().await?;
        let transaction = client.transaction().await.map_err(query_error("begin"))?;
        transaction
            .execute(sql::DDL_LOCK, &[&self.schema_lock_key()])
            .await
            .map_err(query_error("take the DDL lock"))?;
        // Only when missing: CREATE SCHEMA IF NOT EXISTS still needs CREATE on the
        // database, which a loader given its own schema (setup-sql --schema) lacks.
        let exists = transaction
            .query_opt(sql::SCHEMA_EXISTS, &[&self.schema])
            .await
            .map_err(query_error(format!("look up schema {}", self.schema)))?
            .is_some();
        if !exists {
            transaction
                .batch_execute(&sql::create_schema(&self.schema))
                .await
                .map_err(query_error(format!("create schema {}", self.schema)))?;
        }
        for statement in sql::create_bookkeeping(&self.schema) {
            transaction
                .batch_execute(&statement)
                .await
                .map_err(query_error("create bookkeeping tables"))?;
        }
        transaction
            .commit()
            .await
            .map_err(query_error("commit schema"))
    }

    async fn loaded_objects(
        &self,
        objects: Vec<ObjectId>,
    ) -> Result<HashSet<ObjectId>, PostgresError> {
        if objects.is_empty() {
            return Ok(HashSet::new());
        }
        let (names, contents): (Vec<String>, Vec<String>) = objects.into_iter().unzip();
        let client = self.object_log_client().await?;
        let result = client
            .query(
                &sql::select_loaded_objects(&self.schema),
                &[&names, &contents],
            )
            .await
            .and_then(|rows| {
                rows.iter()
                    .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
                    .collect()
            });
        match result {
            Ok(loaded) => Ok(loaded),
            Err(error) => {
                *self.objects.lock().await = None;
                Err(query_error("look up loaded objects")(error))
            }
        }
    }

    async fn record_objects(&self, objects: Vec<ObjectId>) -> Result<(), PostgresError> {
        if objects.is_empty() {
            return Ok(());
        }
        let (names, contents): (Vec<String>, Vec<String>) = objects.into_iter().unzip();
        let client = self.object_log_client().await?;
        let result = client
            .execute(&sql::record_objects(&self.schema), &[&names, &contents])
            .await;
        if let Err(error) = result {
            *self.objects.lock().await = None;
            return Err(query_error("record loaded objects")(error));
        }
        Ok(())
    }

    async fn loader(&self) -> Result<PostgresLoader, PostgresError> {
        Ok(PostgresLoader {
            client: self.connect().await?,
            warehouse: self.clone(),
            prepared: Prepared::default(),
        })
    }
}

/// One worker's connection and its cache of the tables it owns.
pub struct PostgresLoader {
    client: Client,
    warehouse: PostgresWarehouse,
    prepared: Prepared,
}

impl Loader for PostgresLoader {
    type Error = PostgresError;

    async fn load(&mut self, batch: &TableBatch) -> Result<LoadReport, PostgresError> {
        let result = self.load_once(batch).await;
        if result.is_err() {
            self.after_failure(batch);
        }
        result
    }

    async fn refuse(
        &mut self,
        batch: &TableBatch,
        reason: &DiscardReason,
    ) -> Result<LoadReport, PostgresError> {
        let result = self.refuse_rows(batch, reason).await;
        if result.is_err() {
            self.after_failure(batch);
        }
        result
    }
}

impl PostgresLoader {
    fn after_failure(&mut self, batch: &TableBatch) {
        // The transaction rolled back its DDL too: forget what we thought we knew.
        self.warehouse.forget(batch.table.as_str());
        // And prepare afresh: a statement the server no longer knows (SQLSTATE
        // 26000, say behind a pooler that moved the session) fails one try only.
        self.prepared = Prepared::default();
    }

    async fn load_once(&mut self, batch: &TableBatch) -> Result<LoadReport, PostgresError> {
        let table = batch.table.as_str();
        let mut report = LoadReport::default();
        let (columns, created) = match self.settle_schema(batch, &mut report).await? {
            Settled::Ready { columns, created } => (columns, created),
            Settled::Refused(reason) => {
                let report = self.refuse_rows(batch, &reason).await?;
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
        let keyed = load::keyed_rows(table, &batch.rows);
        self.load_rows(batch, &columns, &keyed, created, &mut report)
            .await?;
        self.warehouse.remember(table, columns);
        Ok(report)
    }
}
