//! record: what a PostgreSQL load writes besides its rows, in the same transaction —
//! its discards (through a staging table, so a replayed batch adds none twice) and its
//! `_tracktable_loads` row — and the load of rows kept out of their table whole (a
//! table the table cap refuses, rows the server refused).

use std::borrow::Cow;
use std::collections::HashSet;

use tokio_postgres::Transaction;

use super::PostgresLoader;
use super::connect::{PostgresError, query_error};
use super::load::copy_in;
use super::prepared::Prepared;
use crate::warehouse::discard::{Discard, DiscardCounts, DiscardReason, KeptDiscards};
use crate::warehouse::plan::Cell;
use crate::warehouse::{LoadReport, TableBatch, sql};

/// Ends a load's data transaction: writes `discards`, counting in `report` those new
/// to `_discards`, records the load, and commits.
pub(super) async fn finish(
    transaction: Transaction<'_>,
    prepared: &mut Prepared,
    schema: &str,
    batch: &TableBatch,
    discards: &[Discard],
    report: &mut LoadReport,
) -> Result<(), PostgresError> {
    let table = batch.table.as_str();
    if !discards.is_empty() {
        report.discards_by_reason = write_discards(&transaction, schema, discards).await?;
        report.discards = report.discards_by_reason.total();
    }
    let record = prepared
        .get(&transaction, &sql::record_load(schema), || {
            "record the load".to_owned()
        })
        .await?;
    transaction
        .execute(
            &record,
            &[
                &(batch.batch.0 as i64),
                &table,
                &(report.rows_loaded as i64),
                &(report.duplicates as i64),
                &(report.discards as i64),
            ],
        )
        .await
        .map_err(query_error("record the load"))?;
    transaction
        .commit()
        .await
        .map_err(query_error(format!("commit {table}")))
}

/// COPYs `discards` into a staging table and keeps those `_discards` does not hold yet;
/// returns how many were kept, by reason (a replay keeps none).
async fn write_discards(
    transaction: &Transaction<'_>,
    schema: &str,
    discards: &[Discard],
) -> Result<DiscardCounts, PostgresError> {
    let stage = sql::DISCARD_STAGE;
    transaction
        .batch_execute(&sql::create_discard_stage(schema, stage))
        .await
        .map_err(query_error("create discard staging table"))?;
    fn text(value: &str) -> Option<Cell<'_>> {
        Some(Cell::Text(Cow::Borrowed(value)))
    }
    // The reasons' texts, written out once (cells borrow them).
    let reasons: Vec<String> = discards.iter().map(|d| d.reason.to_string()).collect();
    let copy = sql::copy_into_stage(stage, &sql::DISCARD_COLUMNS);
    copy_in(
        transaction,
        &copy,
        "_discards",
        discards.iter().zip(&reasons),
        |encoder, (discard, reason)| {
            encoder.row(&[
                text(&discard.table),
                text(&discard.column),
                text(&discard.message_id),
                text(&discard.value),
                text(reason),
                text(&discard.object),
                Some(Cell::BigInt(discard.line)),
                discard.received_at.map(Cell::Timestamp),
            ]);
        },
    )
    .await?;
    // Counted by reason from what was actually inserted (a replay inserts nothing).
    let mut inserted = KeptDiscards::new(discards);
    for row in transaction
        .query(&sql::merge_discards(schema, stage), &[])
        .await
        .map_err(query_error("merge discards"))?
    {
        let reason: &str = row.try_get(0).map_err(query_error("merge discards"))?;
        inserted.kept(reason, 1);
    }
    transaction
        .batch_execute(&sql::drop_table(stage))
        .await
        .map_err(query_error("drop discard staging table"))?;
    Ok(inserted.counts())
}

impl PostgresLoader {
    /// Every row of the batch to `_discards` whole (column `*`, the row as JSON) with
    /// `reason`, and the load recorded: for a table the tracking plan's table cap keeps
    /// out, and for rows the server refused.
    pub(super) async fn refuse_rows(
        &mut self,
        batch: &TableBatch,
        reason: &DiscardReason,
    ) -> Result<LoadReport, PostgresError> {
        let table = batch.table.as_str();
        let mut seen = HashSet::new();
        let discards: Vec<Discard> = batch
            .rows
            .iter()
            .filter(|row| seen.insert(row.message_id.as_str()))
            .map(|row| Discard::whole_row(table, row, reason.clone()))
            .collect();
        let transaction = self
            .client
            .transaction()
            .await
            .map_err(query_error("begin"))?;
        let mut report = LoadReport::default();
        let schema = &self.warehouse.schema;
        finish(
            transaction,
            &mut self.prepared,
            schema,
            batch,
            &discards,
            &mut report,
        )
        .await?;
        Ok(report)
    }
}
