//! load: a table batch's rows into PostgreSQL, in the load's data transaction.
//!
//! Event tables: one row per message id (the first in the batch), binary-COPYed
//! straight into the table, whose primary key refuses a second row for an id.
//! Optimistically: most batches hold no id the table already has, so the COPY goes
//! first, with no lookup; if the key refuses a row (SQLSTATE 23505: an earlier object
//! repeated, a replay, a concurrent writer), the transaction rolls back and the rows go
//! again with the stored ids looked up and dropped. A table that met stored ids looks
//! them up first for a while ([`Overlap`]): a replay after a restart brings many in a
//! row. On `tracks` the lookup was about a quarter of a later batch's server work
//! (BENCHMARKS.md). `users`/`accounts`: staged and merged newest-wins.

use std::collections::{HashMap, HashSet};
use std::pin::pin;

use bytes::Bytes;
use futures_util::SinkExt;
use tokio_postgres::{Client, ToStatement, Transaction};

use super::connect::{PostgresError, copy_line, is_unique_violation, query_error};
use super::ddl::read_columns;
use super::prepared::Prepared;
use super::{PostgresLoader, PostgresWarehouse, record};
use crate::route::Row;
use crate::warehouse::ddl::Caps;
use crate::warehouse::discard::{self, Discard};
use crate::warehouse::pg_copy::CopyEncoder;
use crate::warehouse::plan::{self, TableSchema};
use crate::warehouse::{FailureClass, LoadReport, TableBatch, WarehouseError, sql};

/// A batch's rows as they go to the table.
pub(super) struct Keyed<'a> {
    /// One row per message id (event tables: the first in the batch). `users` and
    /// `accounts` keep every row: their merge picks the newest per id.
    pub rows: Vec<&'a Row>,
    /// The rows whose key the server cannot store (a NUL character would fail the
    /// whole COPY), as whole-row discards.
    pub unkeyed: Vec<Discard>,
}

/// Splits `rows` of `table` into the rows to load and the whole-row discards.
pub(super) fn keyed_rows<'a>(table: &str, rows: &'a [Row]) -> Keyed<'a> {
    let mut unkeyed = Vec::new();
    let keyed = rows
        .iter()
        .filter(|row| match discard::key_problem(&row.message_id, None) {
            None => true,
            Some(reason) => {
                unkeyed.push(Discard::whole_row(table, row, reason));
                false
            }
        });
    let rows = if sql::is_latest(table) {
        keyed.collect()
    } else {
        let mut ids =
            HashSet::with_capacity_and_hasher(rows.len(), foldhash::fast::RandomState::default());
        keyed
            .filter(|row| ids.insert(row.message_id.as_str()))
            .collect()
    };
    Keyed { rows, unkeyed }
}

impl PostgresLoader {
    /// Loads `keyed` into the table whose columns are `columns` (`created`: by this
    /// load, so it holds no stored id) in one data transaction with the load's
    /// discards and record, retrying once with a lookup when the table's key refuses
    /// the optimistic COPY.
    pub(super) async fn load_rows(
        &mut self,
        batch: &TableBatch,
        columns: &TableSchema,
        keyed: &Keyed<'_>,
        created: bool,
        report: &mut LoadReport,
    ) -> Result<(), PostgresError> {
        let table = batch.table.as_str();
        let latest = sql::is_latest(table);
        let warehouse = &self.warehouse;
        let target = Target {
            batch: &batch.rows,
            schema: &warehouse.schema,
            table,
            columns,
            caps: warehouse.caps,
        };
        let mut look_up = !latest && !created && warehouse.expects_stored(table);
        let (transaction, inserted, discards) = loop {
            let transaction = self
                .client
                .transaction()
                .await
                .map_err(query_error("begin"))?;
            let prepared = &mut self.prepared;
            let copied = copy_once(&transaction, prepared, warehouse, &target, keyed, look_up);
            let copied = copied.await;
            match copied {
                Err(error) if !look_up && !latest && is_unique_violation(&error) => {
                    tracing::debug!(
                        table,
                        batch = batch.batch.0,
                        "the batch repeats stored message ids; looking them up"
                    );
                    transaction
                        .rollback()
                        .await
                        .map_err(query_error(format!("roll back the COPY into {table}")))?;
                    warehouse.note_stored(table, true);
                    look_up = true;
                }
                other => {
                    let (inserted, discards) = other?;
                    break (transaction, inserted, discards);
                }
            }
        };
        report.rows_loaded = inserted;
        let unkeyed = keyed.unkeyed.len() as u64;
        report.duplicates = (batch.rows.len() as u64).saturating_sub(inserted + unkeyed);
        let prepared = &mut self.prepared;
        record::finish(
            transaction,
            prepared,
            &warehouse.schema,
            batch,
            &discards,
            report,
        )
        .await
    }
}

/// Names the row a failed COPY of `sent` into `relation` (the table or its stage)
/// refused, when the server's error says which line (one row a line, in order). The
/// index is of `batch`, the table batch whose rows `sent` borrows.
fn at_row(error: PostgresError, relation: &str, sent: &[&Row], batch: &[Row]) -> PostgresError {
    if error.class() != FailureClass::Data {
        return error;
    }
    let row = copy_line(&error, relation)
        .and_then(|line| usize::try_from(line).ok()?.checked_sub(1))
        .and_then(|index| sent.get(index))
        .and_then(|sent| batch.iter().position(|row| std::ptr::eq(row, *sent)));
    match row {
        Some(row) => PostgresError::AtRow {
            row,
            source: Box::new(error),
        },
        None => error,
    }
}

/// One try at the rows: drops the ids the table holds first when `look_up`, then
/// copies (or merges) the rest. Returns the rows inserted and the discards to write,
/// the unkeyed rows' among them.
async fn copy_once(
    transaction: &Transaction<'_>,
    prepared: &mut Prepared,
    warehouse: &PostgresWarehouse,
    target: &Target<'_>,
    keyed: &Keyed<'_>,
    look_up: bool,
) -> Result<(u64, Vec<Discard>), PostgresError> {
    let mut rows = keyed.rows.clone();
    if look_up && !rows.is_empty() {
        let stored = stored_keys(transaction, prepared, target, &rows).await?;
        warehouse.note_stored(target.table, !stored.is_empty());
        rows.retain(|row| !stored.contains(&row.message_id));
    }
    let mut discards = keyed.unkeyed.clone();
    if rows.is_empty() {
        return Ok((0, discards));
    }
    let inserted = if sql::is_latest(target.table) {
        merge_latest(transaction, prepared, target, &rows, &mut discards)
            .await
            .map_err(|error| at_row(error, sql::STAGE, &rows, target.batch))?
    } else {
        copy_rows(transaction, prepared, target, &rows, &mut discards)
            .await
            .map_err(|error| at_row(error, target.table, &rows, target.batch))?
    };
    Ok((inserted, discards))
}

/// The table a load writes, and what places its cells.
struct Target<'a> {
    /// The table batch's rows, which the loaded rows borrow.
    batch: &'a [Row],
    schema: &'a str,
    table: &'a str,
    columns: &'a TableSchema,
    caps: Caps,
}

/// Of `rows`' message ids, those the table already holds.
async fn stored_keys(
    transaction: &Transaction<'_>,
    prepared: &mut Prepared,
    target: &Target<'_>,
    rows: &[&Row],
) -> Result<HashSet<String>, PostgresError> {
    let (schema, table) = (target.schema, target.table);
    let mut candidates: Vec<&str> = rows.iter().map(|row| row.message_id.as_str()).collect();
    // In byte order: PostgreSQL sorts an `= ANY` array before probing the index, and
    // finds a sorted one sorted at once (its qsort checks first) where the key's
    // collation orders by code point (C, C.UTF-8); the probes then walk the index in
    // order. On 50k ids against a 419k-row table the lookup took 67-77 ms sorted,
    // 105-128 ms not (BENCHMARKS.md).
    candidates.sort_unstable();
    let context = || format!("look up stored message ids of {table}");
    let lookup = prepared
        .get(
            transaction,
            &sql::select_stored_keys(schema, table),
            context,
        )
        .await?;
    transaction
        .query(&lookup, &[&candidates])
        .await
        .and_then(|stored| stored.iter().map(|row| row.try_get(0)).collect())
        .map_err(query_error(context()))
}

/// Binary-COPYs `rows` straight into the table; returns the rows copied. Values that
/// do not fit their column go to `discards`.
async fn copy_rows(
    transaction: &Transaction<'_>,
    prepared: &mut Prepared,
    target: &Target<'_>,
    rows: &[&Row],
    discards: &mut Vec<Discard>,
) -> Result<u64, PostgresError> {
    let (table, key) = (target.table, sql::key_column(target.table));
    let mut layout = plan::Layout::under(key, target.columns, target.caps);
    let copy = sql::copy_into_table(target.schema, table, &layout.names);
    let copy = prepared
        .get(transaction, &copy, || format!("start COPY into {table}"))
        .await?;
    copy_in(transaction, &copy, table, rows.iter(), |encoder, row| {
        encoder.row(layout.place(table, row, discards));
    })
    .await
}

/// `users`/`accounts`: COPYs `rows` into a staging table and merges it into the table,
/// newest wins; returns the rows inserted or replaced.
async fn merge_latest(
    transaction: &Transaction<'_>,
    prepared: &mut Prepared,
    target: &Target<'_>,
    rows: &[&Row],
    discards: &mut Vec<Discard>,
) -> Result<u64, PostgresError> {
    let (schema, table, key) = (target.schema, target.table, sql::key_column(target.table));
    let stage = sql::STAGE;
    let mut layout = plan::Layout::under(key, target.columns, target.caps);
    transaction
        .batch_execute(&sql::create_stage(schema, table, stage))
        .await
        .map_err(query_error(format!("create staging table for {table}")))?;
    let copy = sql::copy_into_stage(stage, &layout.names);
    let copy = prepared
        .get(transaction, &copy, || format!("start COPY into {table}"))
        .await?;
    copy_in(transaction, &copy, table, rows.iter(), |encoder, row| {
        encoder.row(layout.place(table, row, discards));
    })
    .await?;
    // Every column: the newest call replaces the stored row whole.
    let all: Vec<&str> = std::iter::once(key)
        .chain(
            target
                .columns
                .keys()
                .map(String::as_str)
                .filter(|c| *c != key),
        )
        .collect();
    let merged = transaction
        .execute(&sql::merge_latest(schema, table, stage, &all), &[])
        .await
        .map_err(query_error(format!("merge into {table}")))?;
    transaction
        .batch_execute(&sql::drop_table(stage))
        .await
        .map_err(query_error("drop staging table"))?;
    Ok(merged)
}

/// The warehouse's own limit, for the end-to-end benchmark: one binary COPY of `rows`
/// straight into the existing `schema.table`, in one transaction, with no staging,
/// merge, discards or bookkeeping. Values that do not fit their column are left NULL.
/// The rows must not repeat a key.
pub async fn raw_copy(
    client: &mut Client,
    schema: &str,
    table: &str,
    rows: &[Row],
) -> Result<u64, PostgresError> {
    let transaction = client.transaction().await.map_err(query_error("begin"))?;
    let columns = read_columns(&transaction, &mut Prepared::default(), schema, table).await?;
    let key = sql::key_column(table);
    // The same layout as the loader's, so the baseline's client work is no larger.
    let mut layout = plan::Layout::of_table(key, &columns, None);
    let copy = sql::copy_into_table(schema, table, &layout.names);
    // The baseline keeps no discards (the rows it copies have none).
    let mut ignored = Vec::new();
    let copied = copy_in(&transaction, &copy, table, rows.iter(), |encoder, row| {
        encoder.row(layout.place(table, row, &mut ignored));
    })
    .await?;
    transaction
        .commit()
        .await
        .map_err(query_error(format!("commit {table}")))?;
    Ok(copied)
}

/// Runs the binary COPY `statement` (into `table`, for error messages), encoding each
/// item with `encode` and sending the stream a buffer at a time. Returns the rows the
/// server counted.
pub(super) async fn copy_in<T, S: ToStatement + ?Sized>(
    transaction: &Transaction<'_>,
    statement: &S,
    table: &str,
    items: impl Iterator<Item = T>,
    mut encode: impl FnMut(&mut CopyEncoder, T),
) -> Result<u64, PostgresError> {
    let sink = transaction
        .copy_in::<_, Bytes>(statement)
        .await
        .map_err(query_error(format!("start COPY into {table}")))?;
    let mut sink = pin!(sink);
    let mut encoder = CopyEncoder::new();
    for item in items {
        encode(&mut encoder, item);
        if encoder.is_full() {
            sink.send(encoder.take())
                .await
                .map_err(query_error(format!("COPY into {table}")))?;
        }
    }
    sink.send(encoder.finish())
        .await
        .map_err(query_error(format!("COPY into {table}")))?;
    sink.as_mut()
        .finish()
        .await
        .map_err(query_error(format!("finish COPY into {table}")))
}

/// Which tables look stored message ids up before copying. A table that met stored ids
/// (a refused COPY, or a lookup that found some) looks up for its next
/// [`Overlap::CLEAN_LOADS`] loads, and goes back to copying optimistically once that
/// many lookups in a row found nothing. So a steady trickle of repeats (at-least-once
/// senders) costs a lookup per batch, as before, rather than a refused COPY every other
/// batch, and a table that never repeats never pays for a lookup.
#[derive(Debug, Default)]
pub(super) struct Overlap(HashMap<String, u32>);

impl Overlap {
    const CLEAN_LOADS: u32 = 8;

    pub(super) fn expects_stored(&self, table: &str) -> bool {
        self.0.contains_key(table)
    }

    pub(super) fn note(&mut self, table: &str, met: bool) {
        if met {
            self.0.insert(table.to_owned(), Self::CLEAN_LOADS);
        } else if let Some(left) = self.0.get_mut(table) {
            *left = left.saturating_sub(1);
            if *left == 0 {
                self.0.remove(table);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::Position;
    use crate::route::naming::table_name;

    #[test]
    fn a_table_that_met_stored_ids_looks_up_until_enough_clean_loads_in_a_row() {
        let mut overlap = Overlap::default();
        assert!(!overlap.expects_stored("tracks"), "optimistic at first");
        overlap.note("tracks", false);
        assert!(
            !overlap.expects_stored("tracks"),
            "a clean load changes nothing"
        );
        overlap.note("tracks", true);
        for _ in 1..Overlap::CLEAN_LOADS {
            assert!(overlap.expects_stored("tracks"));
            overlap.note("tracks", false);
        }
        // One more stored id starts the count again.
        overlap.note("tracks", true);
        for _ in 0..Overlap::CLEAN_LOADS {
            assert!(overlap.expects_stored("tracks"));
            assert!(!overlap.expects_stored("pages"), "per table");
            overlap.note("tracks", false);
        }
        assert!(!overlap.expects_stored("tracks"), "optimistic again");
    }

    fn rows(table: &str, ids: &[&str]) -> Vec<Row> {
        ids.iter()
            .zip(1..)
            .map(|(id, line)| {
                Row::new(
                    table_name(table),
                    (*id).into(),
                    "obj".into(),
                    Position::line(line),
                    Vec::new(),
                )
            })
            .collect()
    }

    #[test]
    fn event_rows_keep_the_first_of_each_id_and_unstorable_keys_go_whole() {
        let batch = rows("tracks", &["m1", "m2", "m1", "bad\0id", "m3", "m2"]);
        let keyed = keyed_rows("tracks", &batch);
        let kept: Vec<(&str, u64)> = keyed
            .rows
            .iter()
            .map(|row| (row.message_id.as_str(), row.position.line))
            .collect();
        assert_eq!(kept, [("m1", 1), ("m2", 2), ("m3", 5)]);
        assert_eq!(keyed.unkeyed.len(), 1);
        assert_eq!(keyed.unkeyed[0].column, "*");
        assert_eq!(keyed.unkeyed[0].message_id, "bad\\u0000id");
    }

    #[test]
    fn users_keep_every_row_for_the_merge_to_pick_the_newest() {
        let batch = rows("users", &["u1", "u1", "u2"]);
        assert_eq!(keyed_rows("users", &batch).rows.len(), 3);
    }
}
