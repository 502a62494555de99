//! record: what a Redshift load writes besides its rows, in the same transaction — its
//! discards (staged as CSV like the rows, merged only where `_discards` lacks them, so
//! a replayed batch adds none twice) and its `_tracktable_loads` row. Rows kept out of
//! their table whole (a table the table cap refuses, rows the cluster refused) take the
//! same path with no rows to merge.

use std::collections::HashSet;

use super::RedshiftLoader;
use super::csv::{self, PartWriter};
use super::session::RedshiftError;
use super::sql;
use super::stage::Staged;
use crate::warehouse::discard::{Discard, DiscardCounts, KeptDiscards};
use crate::warehouse::postgres::query_error;
use crate::warehouse::{LoadReport, TableBatch};

/// The text a column of `max` bytes keeps of `text`: all of it, or as much as fits,
/// cut at a character boundary. A discarded value's reason says how long the whole
/// value was, and its object and line point to it.
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

impl RedshiftLoader {
    /// Writes `discards` as gzip CSV parts (one per `_discards` key: the table keeps
    /// no duplicate) and stages them; `None` when there are none.
    pub(super) async fn stage_discards(
        &self,
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
                    Some(fit(&discard.column, sql::NAME_WIDTH)),
                    Some(message_id),
                    Some(fit(&discard.value, sql::MAX_VARCHAR)),
                    Some(fit(&reason, sql::REASON_WIDTH)),
                    Some(fit(&discard.object, sql::OBJECT_WIDTH)),
                    Some(&line),
                    received_at.as_deref(),
                ])
                .map_err(RedshiftError::Csv)?;
        }
        let parts = writer.finish().map_err(RedshiftError::Csv)?;
        let (schema, table) = (self.warehouse.schema(), batch.table.as_str());
        let staged = self
            .staging
            .put(schema, table, batch.batch.0, "discards", parts);
        Ok(Some(staged.await?))
    }

    /// Before the load's transaction: COPYs the staged discards (`written`, staged
    /// from `source`) into the session's discard staging table `stage` and drops those `_discards`
    /// already holds; returns the rest, by reason. Reading `_discards` here, and only
    /// writing it in the transaction ([`Self::record`]), keeps loads of different
    /// tables out of each other's read sets: on Redshift, two transactions that each
    /// read and write `_discards` fail one of them with error 1023.
    pub(super) async fn stage_new_discards(
        &self,
        source: &Staged,
        written: &[Discard],
        stage: &str,
    ) -> Result<DiscardCounts, RedshiftError> {
        let (session, schema) = (&self.session, self.warehouse.schema());
        let drop = sql::drop_stage(stage);
        session
            .execute(&drop, "drop an old discard staging table")
            .await?;
        let create = sql::create_discard_stage(schema, stage);
        session
            .execute(&create, "create the discard staging table")
            .await?;
        let copy = self.copy_from(stage, &sql::DISCARD_COLUMNS, source).await?;
        session.execute(&copy, "COPY discards").await?;
        let known = sql::drop_known_discards(schema, stage);
        session
            .execute(&known, "skip discards already kept")
            .await?;
        let context = "count new discards";
        let mut kept = KeptDiscards::new(written);
        let count = sql::count_staged_discards(stage);
        for row in session.query(&count, context).await? {
            let cell = |index| row.try_get(index).map_err(query_error(context));
            let (reason, count) = (cell(0)?, cell(1)?);
            let count: u64 = count.and_then(|c| c.parse().ok()).unwrap_or(0);
            kept.kept(reason.unwrap_or(""), count);
        }
        Ok(kept.counts())
    }

    /// Within a load's open transaction: inserts the discards
    /// [`Self::stage_new_discards`] staged in `stage` (`new`: how many, by reason;
    /// `None`: none were staged) and records the load. `_discards` and
    /// `_tracktable_loads` are only written here, never read.
    pub(super) async fn record(
        &self,
        batch: &TableBatch,
        new: Option<(DiscardCounts, &str)>,
        report: &mut LoadReport,
    ) -> Result<(), RedshiftError> {
        let (schema, table) = (self.warehouse.schema(), batch.table.as_str());
        if let Some((new, stage)) = new {
            let insert = sql::insert_discards(schema, stage);
            self.session.execute(&insert, "keep discards").await?;
            let drop = sql::drop_stage(stage);
            self.session
                .execute(&drop, "drop the discard staging table")
                .await?;
            report.discards = new.total();
            report.discards_by_reason = new;
        }
        let record = sql::record_load(
            schema,
            batch.batch.0,
            table,
            report.rows_loaded,
            report.duplicates,
            report.discards,
        );
        self.session.execute(&record, "record the load").await?;
        Ok(())
    }

    /// After the commit (or a failed attempt: a retry stages afresh): removes what the
    /// load staged, unless the pipeline keeps it.
    pub(super) async fn remove_staged(&self, staged: impl IntoIterator<Item = Option<Staged>>) {
        if !self.warehouse.file.staging.keep {
            for put in staged.into_iter().flatten() {
                self.staging.remove(&put).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fit;

    #[test]
    fn discarded_values_are_cut_at_a_character_boundary() {
        assert_eq!(fit("héllo", 2), "h");
        assert_eq!(fit("héllo", 3), "hé");
        assert_eq!(fit("abc", 10), "abc");
    }
}
