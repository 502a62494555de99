//! warehouse: where a table's batch of rows ends up.
//!
//! The load stage hands each (batch, table) to a [`Loader`] as one [`TableBatch`]: the
//! column observations that are new in this batch (the output of the `columns` stage)
//! and the rows. A loader must make the batch durable *idempotently*: loading the same
//! batch again, or rows an earlier batch already loaded, must not duplicate anything,
//! because acknowledgement happens after the commit and a crash in between replays the
//! inputs.
//!
//! The decisions both warehouses share are pure and tested without a server: which DDL
//! a batch needs ([`ddl`]), what each value becomes in its column ([`plan`]), and what
//! cannot be stored and why ([`discard`]). Each warehouse ([`postgres`], [`redshift`])
//! executes them in its own dialect, whose every statement is in one file ([`sql`],
//! [`redshift::sql`]).

use std::collections::HashSet;
use std::future::Future;

use futures_util::future::BoxFuture;

use crate::batch::BatchId;
use crate::route::{ColumnName, ColumnType, Row, TableName};
pub use discard::{DiscardCounts, DiscardReason};

/// One table's share of one batch.
#[derive(Debug, Clone, PartialEq)]
pub struct TableBatch {
    pub batch: BatchId,
    pub table: TableName,
    /// (column, type) pairs first observed for this table in this batch, varchar
    /// lengths rounded up to their width class (`columns::width_class`). Columns the
    /// warehouse already has may appear again (after a restart, say): harmless.
    pub observed: Vec<(ColumnName, ColumnType)>,
    pub rows: Vec<Row>,
}

/// What one load did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Rows inserted (new message ids).
    pub rows_loaded: u64,
    /// Rows skipped because their message id was already in the table or repeated in
    /// the batch.
    pub duplicates: u64,
    /// Calls merged into a `users` or `accounts` row (the newest per id wins): profile
    /// updates, not duplicate messages, though the load record counts them as skipped.
    pub merged: u64,
    /// Values that did not fit their column and went to `_discards`.
    pub discards: u64,
    /// DDL statements applied (tables created, columns added or widened).
    pub schema_changes: u64,
    /// `discards` by reason.
    pub discards_by_reason: DiscardCounts,
}

impl std::ops::AddAssign for LoadReport {
    fn add_assign(&mut self, other: LoadReport) {
        self.rows_loaded += other.rows_loaded;
        self.duplicates += other.duplicates;
        self.merged += other.merged;
        self.discards += other.discards;
        self.schema_changes += other.schema_changes;
        self.discards_by_reason += other.discards_by_reason;
    }
}

/// What a failed warehouse operation says about retrying it: decided from the
/// server's SQLSTATE (and, on Redshift, its message) in one function per dialect
/// (`postgres::failure_class`, `redshift::failure_class`), and acted on in one place,
/// the loader task (`load`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    /// The rows or names themselves cannot be stored (a value the server refuses, too
    /// many columns, an oversized index row, a Redshift COPY data error). Retrying the
    /// same rows fails the same way: the loader isolates the rows the server refuses,
    /// sends them to `_discards` and commits the rest.
    Data,
    /// The server or the way to it failed (a lost connection, a restart, a
    /// serialization conflict, a lock timeout, throttling): the same load may succeed
    /// later, so it is retried with backoff for as long as it takes.
    Transient,
    /// The warehouse is set up so that no load can succeed (a missing privilege, a
    /// wrong password, a table changed by hand in a way the loader cannot repair). It is
    /// tried once more, on a fresh connection with the catalogue read again, and then
    /// the run stops with the server's message, acknowledging nothing.
    Config,
}

/// An error a warehouse reports, and what retrying it can do.
pub trait WarehouseError: std::error::Error + Send + Sync + 'static {
    fn class(&self) -> FailureClass;

    /// For a [`FailureClass::Data`] failure of [`Loader::load`]: the row the server
    /// named (its index in the [`TableBatch::rows`] loaded), when it named one. `None`
    /// makes the loader find the refused rows by splitting the batch.
    fn refused_row(&self) -> Option<usize> {
        None
    }

    /// For a [`FailureClass::Data`] failure: the server's own words about it, as
    /// `_discards.reason` keeps them for a refused row.
    fn refusal(&self) -> String {
        self.to_string()
    }

    /// For a [`FailureClass::Data`] failure of a bulk load: what the warehouse's own
    /// load-error table says about it (Redshift's `stl_load_errors`), when it was read.
    fn load_error(&self) -> Option<&LoadErrorDetail> {
        None
    }
}

/// One row of a warehouse's load-error table: where in the staged files a bulk load
/// stopped, and why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadErrorDetail {
    /// The staged object, `s3://bucket/key`.
    pub file: String,
    /// Its physical line (1-based).
    pub line: u64,
    pub column: String,
    /// The field's text as the warehouse read it (empty where its table does not keep
    /// it, as Redshift Serverless's `sys_load_error_detail`).
    pub value: String,
    /// The warehouse's load error code, and its reason.
    pub code: String,
    pub reason: String,
}

impl std::fmt::Display for LoadErrorDetail {
    /// The reason a refused row keeps in `_discards`: the column and the warehouse's
    /// words, never the value (the row itself is kept beside it).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.column.is_empty() {
            write!(f, "{} (load error {})", self.reason, self.code)
        } else {
            write!(
                f,
                "column {}: {} (load error {})",
                self.column, self.reason, self.code
            )
        }
    }
}

impl WarehouseError for std::convert::Infallible {
    fn class(&self) -> FailureClass {
        match *self {}
    }
}

/// A destination. One per process, shared by its workers.
pub trait Warehouse: Send + Sync + 'static {
    type Error: WarehouseError;
    type Loader: Loader<Error = Self::Error>;

    /// Creates the schema and bookkeeping tables if needed. Called once per process
    /// before any load; safe to call from several processes at once.
    fn prepare(&self) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// A loader with its own connection, for one worker.
    fn loader(&self) -> impl Future<Output = Result<Self::Loader, Self::Error>> + Send;

    /// Of `objects` (name, content id), the ones recorded as loaded by
    /// [`Warehouse::record_objects`].
    fn loaded_objects(
        &self,
        objects: Vec<ObjectId>,
    ) -> impl Future<Output = Result<HashSet<ObjectId>, Self::Error>> + Send;

    /// Records objects as loaded. Called only after every row derived from them has
    /// committed; recording twice is harmless.
    fn record_objects(
        &self,
        objects: Vec<ObjectId>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// An input object's identity: its name (`s3://bucket/key`) and content (version id
/// or ETag), so a re-uploaded object under the same key is new input.
pub type ObjectId = (String, String);

/// A failure of the object log, with its class (a lost connection is retried, a
/// missing privilege stops the run).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ObjectLogError {
    pub message: String,
    pub class: FailureClass,
}

impl ObjectLogError {
    fn of<E: WarehouseError>(error: &E) -> ObjectLogError {
        ObjectLogError {
            message: error.to_string(),
            class: error.class(),
        }
    }
}

/// The object-safe view of a warehouse's object log, for the S3 sources (which are not
/// generic over the warehouse).
pub trait ObjectLog: Send + Sync {
    fn loaded(
        &self,
        objects: Vec<ObjectId>,
    ) -> BoxFuture<'_, Result<HashSet<ObjectId>, ObjectLogError>>;
    fn record(&self, objects: Vec<ObjectId>) -> BoxFuture<'_, Result<(), ObjectLogError>>;
}

impl<W: Warehouse> ObjectLog for W {
    fn loaded(
        &self,
        objects: Vec<ObjectId>,
    ) -> BoxFuture<'_, Result<HashSet<ObjectId>, ObjectLogError>> {
        Box::pin(async move {
            self.loaded_objects(objects)
                .await
                .map_err(|error| ObjectLogError::of(&error))
        })
    }

    fn record(&self, objects: Vec<ObjectId>) -> BoxFuture<'_, Result<(), ObjectLogError>> {
        Box::pin(async move {
            self.record_objects(objects)
                .await
                .map_err(|error| ObjectLogError::of(&error))
        })
    }
}

/// Loads table batches, one at a time, over one connection.
pub trait Loader: Send + 'static {
    type Error: WarehouseError;

    /// Applies the schema changes for, and loads, one table's batch in one transaction.
    /// On error nothing of the batch is visible and the call may be retried.
    fn load(
        &mut self,
        batch: &TableBatch,
    ) -> impl Future<Output = Result<LoadReport, Self::Error>> + Send;

    /// Keeps every row of `batch` out of its table: each goes to `_discards` whole
    /// (column `*`, the row as JSON) with `reason`, and the load is recorded, in one
    /// transaction. For a table the tracking plan's table cap refuses, and for rows
    /// the server refused. Idempotent like [`Loader::load`].
    fn refuse(
        &mut self,
        batch: &TableBatch,
        reason: &DiscardReason,
    ) -> impl Future<Output = Result<LoadReport, Self::Error>> + Send;

    /// Whether [`Loader::load_together`] commits its tables in one transaction, so
    /// the loader should hand it a connection's tables of a batch at once. Where a
    /// commit is cheap (PostgreSQL), tables load one at a time through
    /// [`Loader::load`].
    fn shares_transactions(&self) -> bool {
        false
    }

    /// Applies the schema changes for, and loads, several tables' batches, in one
    /// transaction where [`Loader::shares_transactions`]: then, on error, nothing of
    /// any of them is visible. The default loads them one after another through
    /// [`Loader::load`], each committed on its own.
    fn load_together(
        &mut self,
        batches: &[&TableBatch],
    ) -> impl Future<Output = Result<Vec<LoadReport>, TogetherError<Self::Error>>> + Send {
        async move {
            let mut committed = Vec::with_capacity(batches.len());
            for (index, batch) in batches.iter().enumerate() {
                match self.load(batch).await {
                    Ok(report) => committed.push(report),
                    Err(error) => {
                        return Err(TogetherError {
                            error,
                            table: Some(index),
                            committed,
                        });
                    }
                }
            }
            Ok(committed)
        }
    }
}

/// A failed [`Loader::load_together`].
#[derive(Debug)]
pub struct TogetherError<E> {
    pub error: E,
    /// The table (its index in the call's batches) whose step failed; `None` when the
    /// failure is no one table's (the commit).
    pub table: Option<usize>,
    /// The reports of the leading tables that committed before the failure, in order:
    /// none where the tables share one transaction.
    pub committed: Vec<LoadReport>,
}

pub mod ddl;
pub mod discard;
pub mod pg_copy;
pub mod plan;
pub mod postgres;
pub mod redshift;
pub mod sql;
