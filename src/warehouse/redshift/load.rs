//! load: a table batch's rows into Redshift — one row per key chosen in memory,
//! written as gzip CSV parts, staged in S3, `COPY`ed into a session staging table and
//! merged delete-then-insert on the key inside the load's transaction.
//!
//! Redshift enforces no key, so the merge, not a constraint, keeps one row per key: the
//! delete removes what the staged keys replace (a replay, an earlier object repeated),
//! and for `users`/`accounts` staged rows older than the stored row are dropped first,
//! so the newest call wins whatever the load order.
//!
//! A COPY the cluster refuses for its data fails the load with the load-error table's
//! row; its staged file and physical line lead back to the refused row.

use std::collections::HashMap;
use std::time::Duration;

use super::RedshiftLoader;
use super::csv::{Part, PartLines, PartWriter};
use super::session::{RedshiftError, is_undefined_table};
use super::sql::{self, STAGE};
use super::stage::Staged;
use crate::route::{Row, Timestamp, ValueRef};
use crate::warehouse::discard::{self, Discard};
use crate::warehouse::plan::{self, TableSchema};
use crate::warehouse::{FailureClass, LoadErrorDetail, TableBatch, WarehouseError};

/// A batch's rows as they go to the table.
pub(super) struct Chosen<'a> {
    /// One row per key, in the batch's order of first appearance: the first of its
    /// key, or for `users`/`accounts` the newest.
    pub rows: Vec<&'a Row>,
    /// The rows whose key Redshift cannot store (a NUL character, or longer than the
    /// key column), as whole-row discards.
    pub unkeyed: Vec<Discard>,
}

/// Chooses the rows of `table` to load, one per key.
pub(super) fn choose_rows<'a>(table: &str, rows: &'a [Row]) -> Chosen<'a> {
    let latest = crate::warehouse::sql::is_latest(table);
    let mut unkeyed = Vec::new();
    let mut chosen: HashMap<&str, &Row> = HashMap::with_capacity(rows.len());
    let mut order: Vec<&str> = Vec::with_capacity(rows.len());
    for row in rows {
        if let Some(reason) = discard::key_problem(&row.message_id, Some(sql::KEY_WIDTH)) {
            unkeyed.push(Discard::whole_row(table, row, reason));
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
    let rows = order
        .iter()
        .filter_map(|id| chosen.get(id).copied())
        .collect();
    Chosen { rows, unkeyed }
}

/// The newest of a `users`/`accounts` row's calls: (timestamp, message id), a missing
/// timestamp oldest — as the merge in SQL orders them.
fn recency(row: &Row) -> (Option<i64>, Option<&str>) {
    let mut timestamp = None;
    let mut message_id = None;
    for (column, value) in row.cells() {
        match (column.as_str(), value) {
            ("timestamp", ValueRef::Timestamp(t)) => timestamp = Some(t.0),
            ("message_id", ValueRef::Varchar(id)) => message_id = Some(id),
            _ => {}
        }
    }
    (timestamp, message_id)
}

/// A load's staged rows, and how to trace a staged file's line back to its row.
pub(super) struct StagedRows<'a> {
    /// The `COPY` column list.
    pub names: &'a [&'a str],
    /// `None`: no row to load.
    pub source: Option<&'a Staged>,
    /// Each part's lines, in the order the parts were staged.
    pub lines: &'a [PartLines],
    /// The rows written, in the parts' order.
    pub chosen: &'a [&'a Row],
    /// The table batch's rows, which `chosen` borrows.
    pub batch: &'a [Row],
}

impl StagedRows<'_> {
    /// The index in the batch of the row on physical `line` of the staged file `file`
    /// (`s3://bucket/key`, as the load-error table names it).
    pub fn row_at(&self, file: &str, line: u64) -> Option<usize> {
        let keys = &self.source?.keys;
        let part = keys
            .iter()
            .take(self.lines.len())
            .position(|key| file.trim().ends_with(key.as_str()))?;
        let before: usize = self.lines[..part].iter().map(|lines| lines.rows).sum();
        let written = self.chosen.get(before + self.lines[part].row_at(line)?)?;
        self.batch
            .iter()
            .position(|row| std::ptr::eq(row, *written))
    }
}

/// Rows written as CSV in a table's layout.
pub(super) struct Written<'a> {
    /// The `COPY` column list.
    pub names: Vec<&'a str>,
    pub parts: Vec<Part>,
}

/// The earliest `received_at` the merge's delete looks at: `lookback` before the
/// earliest of the rows. A replayed message carries the `received_at` it was stored
/// with, so replays are always inside the bound; a row with no `received_at` (none
/// sent, or one that did not parse) could match a stored row anywhere, so then, as
/// with a zero `lookback`, the whole table is looked at.
pub(super) fn lookback_bound(rows: &[&Row], lookback: Duration) -> Option<Timestamp> {
    if lookback.is_zero() {
        return None;
    }
    let mut earliest = i64::MAX;
    for row in rows {
        match row.cell("received_at") {
            Some(ValueRef::Timestamp(at)) => earliest = earliest.min(at.0),
            _ => return None,
        }
    }
    let micros = i64::try_from(lookback.as_micros()).unwrap_or(i64::MAX);
    (earliest != i64::MAX).then(|| Timestamp(earliest.saturating_sub(micros)))
}

impl RedshiftLoader {
    /// Writes `rows` of `table` (whose columns are `columns`) as gzip CSV parts; every
    /// value that does not fit its column goes to `discards` instead.
    pub(super) fn write_rows<'a>(
        &self,
        table: &str,
        columns: &'a TableSchema,
        rows: &[&'a Row],
        discards: &mut Vec<Discard>,
    ) -> Result<Written<'a>, RedshiftError> {
        let key = crate::warehouse::sql::key_column(table);
        let caps = self.warehouse.connection.caps();
        let mut layout = plan::Layout::under(key, columns, caps);
        let mut writer = PartWriter::new(self.warehouse.file.staging.part_bytes);
        for row in rows {
            writer
                .push(layout.place(table, row, discards))
                .map_err(RedshiftError::Csv)?;
        }
        let parts = writer.finish().map_err(RedshiftError::Csv)?;
        Ok(Written {
            names: layout.names,
            parts,
        })
    }

    /// Stages the parts of a batch's rows; `None` when there are none.
    pub(super) async fn stage_rows(
        &self,
        batch: &TableBatch,
        parts: Vec<Part>,
    ) -> Result<Option<Staged>, RedshiftError> {
        if parts.is_empty() {
            return Ok(None);
        }
        let (schema, table) = (self.warehouse.schema(), batch.table.as_str());
        let staged = self
            .staging
            .put(schema, table, batch.batch.0, "rows", parts);
        Ok(Some(staged.await?))
    }

    /// Within the open transaction: COPYs the staged rows into the session's staging
    /// table and merges them into `table`; returns the rows that were new. A COPY the
    /// cluster refuses for its data fails with what the load-error table says, the
    /// refused row named when its file and line can be traced.
    pub(super) async fn merge_rows(
        &self,
        table: &str,
        rows: &StagedRows<'_>,
    ) -> Result<u64, RedshiftError> {
        let (session, schema) = (&self.session, self.warehouse.schema());
        let Some(source) = rows.source else {
            return Ok(0);
        };
        let latest = crate::warehouse::sql::is_latest(table);
        let drop = sql::drop_stage(STAGE);
        session.execute(&drop, "drop an old staging table").await?;
        let create = sql::create_stage(schema, table, STAGE);
        let context = format!("create staging table for {table}");
        session.execute(&create, &context).await?;
        let copy = self.copy_from(STAGE, rows.names, source).await?;
        let context = format!("COPY into the staging table of {table}");
        if let Err(error) = session.execute(&copy, &context).await {
            return Err(match error.class() {
                FailureClass::Data => self.load_error(error, rows).await,
                _ => error,
            });
        }
        if latest {
            let stale = sql::drop_stale_staged(schema, table, STAGE);
            let context = format!("compare {table} with stored rows");
            session.execute(&stale, &context).await?;
        }
        let context = format!("merge into {table}");
        let lookback = self.warehouse.file.merge_lookback;
        let since = if latest {
            None
        } else {
            lookback_bound(rows.chosen, lookback)
        };
        let delete = sql::delete_staged_keys(schema, table, STAGE, since);
        let replaced = session.execute(&delete, &context).await?;
        let insert = sql::insert_from_stage(schema, table, STAGE, rows.names);
        let added = session.execute(&insert, &context).await?;
        session.execute(&drop, "drop the staging table").await?;
        // A replaced row was stored before: only the rest are new (`users`/`accounts`
        // count every row their merge wrote).
        Ok(if latest {
            added
        } else {
            added.saturating_sub(replaced)
        })
    }

    /// After a COPY failed on its data (Redshift reports every such failure as
    /// `XX000`, pointing to its load-error table): ends the aborted transaction, reads
    /// the load error and traces its file and line to the row it refused.
    async fn load_error(&self, error: RedshiftError, rows: &StagedRows<'_>) -> RedshiftError {
        self.session.rollback().await;
        let context = "read the COPY's load errors";
        let found = match self.session.query(sql::SELECT_LOAD_ERRORS, context).await {
            Err(missing) if is_undefined_table(&missing) => {
                self.session
                    .query(sql::SELECT_LOAD_ERROR_DETAIL, context)
                    .await
            }
            other => other,
        };
        let first = found.map(|found| {
            found.first().map(|row| {
                let cell = |index| row.try_get(index).ok().flatten().unwrap_or("");
                LoadErrorDetail {
                    file: cell(0).to_owned(),
                    line: cell(1).parse().unwrap_or(0),
                    column: cell(2).to_owned(),
                    value: cell(3).to_owned(),
                    code: cell(4).to_owned(),
                    reason: cell(5).to_owned(),
                }
            })
        });
        match first {
            Ok(Some(load_error)) => RedshiftError::LoadError {
                row: rows.row_at(&load_error.file, load_error.line),
                detail: load_error.to_string(),
                source: Box::new(error),
                found: Some(Box::new(load_error)),
            },
            Ok(None) => RedshiftError::LoadError {
                row: None,
                detail: "the load-error table holds nothing for this COPY".into(),
                source: Box::new(error),
                found: None,
            },
            Err(unreadable) => {
                tracing::warn!(error = %unreadable, "cannot read the COPY's load errors; the refused rows are found by splitting the batch");
                RedshiftError::LoadError {
                    row: None,
                    detail: format!("the load-error table cannot be read: {unreadable}"),
                    source: Box::new(error),
                    found: None,
                }
            }
        }
    }

    /// The `COPY` of `source` into `stage`, with the pipeline's credentials (the
    /// chain's read for this load) and options.
    pub(super) async fn copy_from(
        &self,
        stage: &str,
        names: &[&str],
        source: &Staged,
    ) -> Result<String, RedshiftError> {
        let credentials = self.warehouse.copy_credentials(&self.staging).await?;
        Ok(self
            .warehouse
            .copy_statement(stage, names, &source.source, &credentials))
    }
}

impl super::RedshiftWarehouse {
    /// The `COPY` of `source` into `stage` presenting `credentials`, with the
    /// pipeline's region and options: what every load runs, and `check` too.
    pub(super) fn copy_statement(
        &self,
        stage: &str,
        names: &[&str],
        source: &sql::CopySource,
        credentials: &sql::Credentials,
    ) -> String {
        sql::copy_from_s3(
            stage,
            names,
            source,
            credentials,
            self.file.staging.region.as_deref(),
            self.file.accept_invalid_chars.as_deref(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::Position;
    use crate::route::Value;
    use crate::route::naming::{column_name, table_name};

    #[test]
    fn the_merge_looks_back_from_the_earliest_row_unless_a_row_has_no_received_at() {
        let at = |micros: i64| Value::Timestamp(Timestamp(micros));
        let hour = Duration::from_secs(3600);
        let a = row("t", "a", 1, vec![("received_at", at(5_000_000_000))]);
        let b = row("t", "b", 2, vec![("received_at", at(9_000_000_000))]);
        assert_eq!(
            lookback_bound(&[&b, &a], hour),
            Some(Timestamp(5_000_000_000 - 3_600_000_000))
        );
        // No look-back, or a row that could match a stored row anywhere: the whole table.
        assert_eq!(lookback_bound(&[&a, &b], Duration::ZERO), None);
        let odd = row(
            "t",
            "c",
            3,
            vec![("received_at", Value::Varchar("soon".into()))],
        );
        let none = row("t", "d", 4, vec![]);
        assert_eq!(lookback_bound(&[&a, &odd], hour), None);
        assert_eq!(lookback_bound(&[&none, &b], hour), None);
        // A look-back longer than the epoch saturates rather than wraps.
        assert!(lookback_bound(&[&a], Duration::MAX).is_some_and(|t| t.0 < 0));
    }

    fn row(table: &str, id: &str, line: u64, cells: Vec<(&str, Value)>) -> Row {
        let cells = cells
            .into_iter()
            .map(|(name, value)| match name {
                // The router's own columns (a property of that name gets a suffix).
                "timestamp" => (crate::route::ColumnName::fixed(&"timestamp"), value),
                "message_id" => (crate::route::ColumnName::fixed(&"message_id"), value),
                _ => (column_name(name), value),
            })
            .collect();
        Row::new(
            table_name(table),
            id.into(),
            "obj".into(),
            Position::line(line),
            cells,
        )
    }

    #[test]
    fn event_rows_keep_the_first_of_each_key_and_unstorable_keys_go_whole() {
        let long = "k".repeat(sql::KEY_WIDTH + 1);
        let batch = [
            row("tracks", "m1", 1, vec![]),
            row("tracks", &long, 2, vec![]),
            row("tracks", "m2", 3, vec![]),
            row("tracks", "m1", 4, vec![]),
            row("tracks", "nul\0", 5, vec![]),
        ];
        let chosen = choose_rows("tracks", &batch);
        let lines: Vec<u64> = chosen.rows.iter().map(|row| row.position.line).collect();
        assert_eq!(lines, [1, 3]);
        let reasons: Vec<String> = chosen
            .unkeyed
            .iter()
            .map(|discard| discard.reason.to_string())
            .collect();
        assert_eq!(
            reasons,
            [
                "key is 1025 bytes, longer than the key column's 1024",
                "key contains a NUL character, which the warehouse cannot store"
            ]
        );
    }

    #[test]
    fn a_load_error_line_leads_back_to_its_row_across_parts() {
        let batch: Vec<Row> = (0..7)
            .map(|i| row("tracks", &format!("m{i}"), i + 1, vec![]))
            .collect();
        // The batch's rows 1 and 3 repeat keys: only the others were written, five
        // rows in two parts; the first part's second row spans two lines.
        let chosen: Vec<&Row> = [0, 2, 4, 5, 6].iter().map(|&i| &batch[i]).collect();
        let lines = [
            PartLines {
                rows: 3,
                multi_line: vec![(1, 1)],
            },
            PartLines {
                rows: 2,
                multi_line: vec![],
            },
        ];
        let staged = Staged {
            source: sql::CopySource {
                url: "s3://b/p/manifest.json".into(),
                manifest: true,
            },
            keys: vec![
                "p/part-00000.csv.gz".into(),
                "p/part-00001.csv.gz".into(),
                "p/manifest.json".into(),
            ],
        };
        let rows = StagedRows {
            names: &[],
            source: Some(&staged),
            lines: &lines,
            chosen: &chosen,
            batch: &batch,
        };
        // Redshift pads the file name; lines 2 and 3 of part 0 are its second row.
        let padded = format!("{:<256}", "s3://b/p/part-00000.csv.gz");
        let found: Vec<Option<usize>> = (1..=5).map(|line| rows.row_at(&padded, line)).collect();
        assert_eq!(found, [Some(0), Some(2), Some(2), Some(4), None]);
        assert_eq!(rows.row_at("s3://b/p/part-00001.csv.gz", 2), Some(6));
        assert_eq!(rows.row_at("s3://b/p/manifest.json", 1), None);
        assert_eq!(rows.row_at("s3://b/elsewhere.csv.gz", 1), None);
    }

    #[test]
    fn users_keep_the_newest_call_of_each_id() {
        let at = |micros| Value::Timestamp(Timestamp(micros));
        let id = |text: &str| Value::Varchar(text.into());
        let batch = [
            row(
                "users",
                "u1",
                1,
                vec![("timestamp", at(20)), ("message_id", id("a"))],
            ),
            row("users", "u2", 2, vec![("message_id", id("z"))]),
            row(
                "users",
                "u1",
                3,
                vec![("timestamp", at(30)), ("message_id", id("b"))],
            ),
            row(
                "users",
                "u1",
                4,
                vec![("timestamp", at(30)), ("message_id", id("a"))],
            ),
            // No timestamp counts as oldest.
            row(
                "users",
                "u2",
                5,
                vec![("timestamp", at(1)), ("message_id", id("a"))],
            ),
        ];
        let chosen = choose_rows("users", &batch);
        let lines: Vec<u64> = chosen.rows.iter().map(|row| row.position.line).collect();
        assert_eq!(lines, [3, 5]);
    }
}
