//! load: a table batch's rows into Redshift — one row per key chosen in memory,
//! written as gzip CSV parts, staged in S3, `COPY`ed into a session staging table and
//! merged delete-then-insert on the key inside the load's transaction.
//!
//! Redshift enforces no key, so the merge, not a constraint, keeps one row per key: the
//! delete removes what the staged keys replace (a replay, an earlier object repeated),
//! and for `users`/`accounts` staged rows older than the stored row are dropped first,
//! so the newest call wins whatever the load order.

use std::collections::HashMap;

use super::RedshiftLoader;
use super::csv::{Part, PartWriter};
use super::session::RedshiftError;
use super::sql::{self, STAGE};
use super::stage::Staged;
use crate::route::{Row, Value};
use crate::warehouse::TableBatch;
use crate::warehouse::discard::{self, Discard};
use crate::warehouse::plan::{self, Cell, TableSchema};

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
            ("timestamp", Value::Timestamp(t)) => timestamp = Some(t.0),
            ("message_id", Value::Varchar(id)) => message_id = Some(&**id),
            _ => {}
        }
    }
    (timestamp, message_id)
}

/// Rows written as CSV in a table's layout.
pub(super) struct Written<'a> {
    /// The `COPY` column list.
    pub names: Vec<&'a str>,
    pub parts: Vec<Part>,
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
        let max_columns = self.warehouse.connection.caps().columns;
        let mut layout = plan::Layout::of_table(key, columns, max_columns);
        let mut writer = PartWriter::new(self.warehouse.file.staging.part_bytes);
        let mut cells: Vec<Option<Cell>> = vec![None; layout.names.len()];
        for row in rows {
            layout.place(table, row, &mut cells, discards);
            writer.push(&cells).map_err(RedshiftError::Csv)?;
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

    /// Within the open transaction: COPYs the staged rows (columns `names`) into the
    /// session's staging table and merges them into `table`; returns the rows that
    /// were new.
    pub(super) async fn merge_rows(
        &self,
        table: &str,
        names: &[&str],
        source: &Staged,
    ) -> Result<u64, RedshiftError> {
        let (session, schema) = (&self.session, self.warehouse.schema());
        let latest = crate::warehouse::sql::is_latest(table);
        let drop = sql::drop_stage(STAGE);
        session.execute(&drop, "drop an old staging table").await?;
        let create = sql::create_stage(schema, table, STAGE);
        let context = format!("create staging table for {table}");
        session.execute(&create, &context).await?;
        let copy = self.copy_from(STAGE, names, source);
        let context = format!("COPY into the staging table of {table}");
        session.execute(&copy, &context).await?;
        if latest {
            let stale = sql::drop_stale_staged(schema, table, STAGE);
            let context = format!("compare {table} with stored rows");
            session.execute(&stale, &context).await?;
        }
        let context = format!("merge into {table}");
        let delete = sql::delete_staged_keys(schema, table, STAGE);
        let replaced = session.execute(&delete, &context).await?;
        let insert = sql::insert_from_stage(schema, table, STAGE, names);
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

    /// The `COPY` of `source` into `stage`, with the pipeline's credentials and
    /// options.
    pub(super) fn copy_from(&self, stage: &str, names: &[&str], source: &Staged) -> String {
        sql::copy_from_s3(
            stage,
            names,
            &source.source,
            &self.warehouse.credentials,
            self.warehouse.file.accept_invalid_chars.as_deref(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::Position;
    use crate::route::Timestamp;
    use crate::route::naming::{column_name, table_name};

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
