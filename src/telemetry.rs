//! telemetry: every fact tracktable counts is counted and logged from one function here,
//! so counters and logs never drift apart.
//!
//! `RunStats` is one set of process-wide counters (atomics: workers only add to them)
//! and the Prometheus metrics (`metrics`) beside them. It feeds `run`'s closing summary,
//! the `demo` report and `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use crate::decode::DecodeSummary;
use crate::freshness::{self, FreshnessSummary, Percentiles};
use crate::metrics::{Metrics, ReasonLabel, TableLabel};
use crate::warehouse::{LoadErrorDetail, LoadReport};

/// How `/ready` names the object log's record while it fails.
const OBJECT_LOG: &str = "the object log";

/// How `/ready` names a table's load while it fails.
fn load_operation(table: &str) -> String {
    format!("table {table}")
}

#[derive(Debug, Default)]
pub struct RunStats {
    objects: AtomicU64,
    input_bytes: AtomicU64,
    messages: AtomicU64,
    rejections: AtomicU64,
    batches: AtomicU64,
    rows_loaded: AtomicU64,
    duplicates: AtomicU64,
    merged: AtomicU64,
    discards: AtomicU64,
    schema_changes: AtomicU64,
    warehouse_retries: AtomicU64,
    objects_acknowledged: AtomicU64,
    /// Each object's freshness, for the summary's percentiles.
    freshness: Percentiles,
    /// The Prometheus view of the same facts (plus labels the snapshot does not keep).
    pub metrics: Metrics,
}

/// A point-in-time copy of [`RunStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub objects: u64,
    pub input_bytes: u64,
    pub messages: u64,
    pub rejections: u64,
    /// (worker, batch) loads committed.
    pub batches: u64,
    pub rows_loaded: u64,
    pub duplicates: u64,
    /// Calls merged into `users`/`accounts` rows (profile updates, not duplicates).
    pub merged: u64,
    pub discards: u64,
    pub schema_changes: u64,
    pub warehouse_retries: u64,
    pub objects_acknowledged: u64,
    /// From objects written to their rows committed; `None` when no object had a time.
    pub freshness: Option<FreshnessSummary>,
}

impl RunStats {
    pub fn object_decoded(&self, object: &str, summary: &DecodeSummary) {
        self.objects.fetch_add(1, Ordering::Relaxed);
        self.input_bytes.fetch_add(summary.bytes, Ordering::Relaxed);
        self.messages.fetch_add(summary.messages, Ordering::Relaxed);
        self.rejections
            .fetch_add(summary.rejections, Ordering::Relaxed);
        self.metrics.objects.inc();
        self.metrics.input_bytes.inc_by(summary.bytes);
        self.metrics.events.inc_by(summary.messages);
        for (reason, count) in summary.reasons() {
            self.metrics
                .rejections
                .get_or_create(&ReasonLabel {
                    reason: reason.to_owned(),
                })
                .inc_by(count);
        }
        tracing::debug!(
            object,
            messages = summary.messages,
            rejections = summary.rejections,
            bytes = summary.bytes,
            "object decoded"
        );
    }

    /// One table of a batch committed.
    pub fn table_loaded(&self, batch: u64, table: &str, rows: u64) {
        self.metrics.clear_warehouse_failure(&load_operation(table));
        self.metrics
            .rows_loaded
            .get_or_create(&TableLabel {
                table: table.to_owned(),
            })
            .inc_by(rows);
        tracing::debug!(batch, table, rows, "table batch committed");
    }

    /// An object admitted into a batch.
    pub fn object_admitted(&self) {
        self.metrics.objects_admitted.inc();
    }

    /// A worker's batches awaiting acknowledgement: the oldest (`None`: none) and how
    /// many.
    pub fn pending_batches(&self, worker: usize, oldest: Option<u64>, batches: usize) {
        self.metrics.set_oldest_unacknowledged(worker, oldest);
        self.metrics.set_in_flight(worker, batches);
    }

    /// How long a worker's batch took from hand-off to commit.
    pub fn batch_load_time(&self, seconds: f64) {
        self.metrics.batch_load_seconds.observe(seconds);
    }

    pub fn sqs_received(&self, messages: u64) {
        self.metrics.sqs_received.inc_by(messages);
        tracing::debug!(messages, "SQS messages received");
    }

    pub fn sqs_deleted(&self, messages: u64) {
        self.metrics.sqs_deleted.inc_by(messages);
        tracing::debug!(messages, "SQS messages deleted");
    }

    pub fn sqs_ignored(&self, message: &str, why: &str) {
        self.metrics.sqs_ignored.inc();
        tracing::info!(
            message,
            why,
            "SQS message announces nothing to load; deleting it"
        );
    }

    /// A message that is not an S3 notification; logged the first time it is seen
    /// (`first`), since it comes back after every visibility timeout.
    pub fn sqs_unparseable(&self, message: &str, problem: &str, body: &str, first: bool) {
        self.metrics.sqs_unparseable.inc();
        if first {
            let prefix: String = body.chars().take(200).collect();
            tracing::warn!(message, problem, body = %prefix, "cannot understand an SQS message; leaving it to the queue's redrive policy");
        }
    }

    pub fn sqs_visibility_extended(&self, messages: u64) {
        self.metrics.sqs_visibility_extensions.inc_by(messages);
        tracing::debug!(messages, "visibility extended for messages still loading");
    }

    pub fn sqs_released(&self, messages: u64) {
        self.metrics.sqs_released.inc_by(messages);
        tracing::info!(
            messages,
            "released unfinished SQS messages for another consumer"
        );
    }

    pub fn s3_missing_object(&self, object: &str) {
        self.metrics.s3_missing_objects.inc();
        tracing::warn!(
            object,
            "announced object no longer exists; recording it in _rejections"
        );
    }

    pub fn s3_fetch_failed(&self, message: &str, object: &str, error: &str) {
        self.metrics.s3_fetch_failures.inc();
        tracing::error!(
            message,
            object,
            error,
            "cannot fetch an announced object; its message is not deleted and will be received again"
        );
    }

    pub fn batch_loaded(&self, report: &LoadReport) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.rows_loaded
            .fetch_add(report.rows_loaded, Ordering::Relaxed);
        self.duplicates
            .fetch_add(report.duplicates, Ordering::Relaxed);
        self.merged.fetch_add(report.merged, Ordering::Relaxed);
        self.discards.fetch_add(report.discards, Ordering::Relaxed);
        self.schema_changes
            .fetch_add(report.schema_changes, Ordering::Relaxed);
        self.metrics.batches.inc();
        self.metrics.duplicates.inc_by(report.duplicates);
        for (reason, count) in report.discards_by_reason.iter() {
            if count > 0 {
                self.metrics
                    .discards
                    .get_or_create(&ReasonLabel {
                        reason: reason.to_owned(),
                    })
                    .inc_by(count);
            }
        }
        self.metrics.schema_changes.inc_by(report.schema_changes);
        self.metrics
            .batch_rows
            .observe((report.rows_loaded + report.duplicates + report.merged) as f64);
        tracing::debug!(
            rows = report.rows_loaded,
            duplicates = report.duplicates,
            merged = report.merged,
            discards = report.discards,
            schema_changes = report.schema_changes,
            "batch committed on this worker"
        );
    }

    /// A (batch, table) load, or the connection for it, failed and is tried again;
    /// `/ready` reports it until the table's load commits.
    pub fn warehouse_retry(
        &self,
        what: &'static str,
        batch: u64,
        table: &str,
        attempt: u32,
        error: &dyn std::fmt::Display,
        retry_in: std::time::Duration,
    ) {
        self.warehouse_retries.fetch_add(1, Ordering::Relaxed);
        self.metrics.warehouse_retries.inc();
        self.metrics.set_warehouse_failure(
            &load_operation(table),
            format!("batch {batch}, attempt {attempt}: {what}: {error}"),
        );
        tracing::warn!(batch, table, attempt, error = %error, retry_in = ?retry_in, "{what}; retrying");
    }

    /// A load of `rows` rows of a (batch, table) failed on its data; `named`: the
    /// server said which row. The refused rows are isolated into `_discards` (and
    /// counted there, with reason `refused`, when they commit).
    pub fn rows_refused(
        &self,
        batch: u64,
        table: &str,
        rows: usize,
        named: bool,
        error: &dyn std::fmt::Display,
    ) {
        self.metrics.data_failures.inc();
        let next = if named {
            "keeping the row the server named in _discards"
        } else {
            "splitting the rows to find the ones it refuses"
        };
        tracing::warn!(batch, table, rows, error = %error, "the warehouse refused this load's data; {next}");
    }

    /// A bulk load of a (batch, table) was refused for its data and the warehouse's
    /// load-error table said where: the staged object, its line, the column, the raw
    /// value (at most 256 characters of it) and the reason. The row it leads to is
    /// isolated into `_discards` by the caller.
    pub fn warehouse_load_error(&self, batch: u64, table: &str, error: &LoadErrorDetail) {
        self.metrics
            .load_errors
            .get_or_create(&TableLabel {
                table: table.to_owned(),
            })
            .inc();
        let value: String = error.value.chars().take(256).collect();
        tracing::warn!(
            batch,
            table,
            object = %error.file,
            line = error.line,
            column = %error.column,
            value = %value,
            code = %error.code,
            reason = %error.reason,
            "the warehouse's load-error table names the refused value"
        );
    }

    /// Recording loaded objects in the object log failed and is tried again; `/ready`
    /// reports it until a record holds.
    pub fn object_log_retry(
        &self,
        objects: usize,
        attempt: u32,
        error: &dyn std::fmt::Display,
        retry_in: std::time::Duration,
    ) {
        self.warehouse_retries.fetch_add(1, Ordering::Relaxed);
        self.metrics.warehouse_retries.inc();
        self.metrics.set_warehouse_failure(
            OBJECT_LOG,
            format!("attempt {attempt}: cannot record loaded objects: {error}"),
        );
        tracing::warn!(objects, attempt, error = %error, retry_in = ?retry_in, "cannot record loaded objects in the object log; retrying before acknowledging them");
    }

    /// A record in the object log held.
    pub fn object_log_recorded(&self) {
        self.metrics.clear_warehouse_failure(OBJECT_LOG);
    }

    /// The batch of these objects' last parts has committed everywhere, at `committed`:
    /// each object's freshness is observed, once, from when it was `written`.
    pub fn objects_committed(
        &self,
        batch: u64,
        written: impl IntoIterator<Item = SystemTime>,
        committed: SystemTime,
    ) {
        let mut oldest = None;
        for written in written {
            let age = freshness::age(written, committed);
            self.freshness.record(age);
            self.metrics.freshness_seconds.observe(age.as_secs_f64());
            oldest = oldest.max(Some(age));
        }
        if let Some(oldest) = oldest {
            tracing::debug!(
                batch,
                oldest_seconds = oldest.as_secs_f64(),
                "objects committed"
            );
        }
    }

    pub fn objects_acknowledged(&self, batch: u64, count: u64) {
        self.objects_acknowledged
            .fetch_add(count, Ordering::Relaxed);
        self.metrics.objects_acknowledged.inc_by(count);
        tracing::debug!(batch, objects = count, "objects acknowledged");
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        StatsSnapshot {
            objects: get(&self.objects),
            input_bytes: get(&self.input_bytes),
            messages: get(&self.messages),
            rejections: get(&self.rejections),
            batches: get(&self.batches),
            rows_loaded: get(&self.rows_loaded),
            duplicates: get(&self.duplicates),
            merged: get(&self.merged),
            discards: get(&self.discards),
            schema_changes: get(&self.schema_changes),
            warehouse_retries: get(&self.warehouse_retries),
            objects_acknowledged: get(&self.objects_acknowledged),
            freshness: self.freshness.summary(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::RunStats;
    use crate::warehouse::LoadErrorDetail;

    #[test]
    fn a_load_error_is_counted_by_table() {
        let stats = RunStats::default();
        let found = LoadErrorDetail {
            file: "s3://b/p/part-00000.csv.gz".into(),
            line: 4,
            column: "total".into(),
            value: "5000.0".into(),
            code: "1216".into(),
            reason: "value for domain small_total violates check constraint".into(),
        };
        stats.warehouse_load_error(7, "order_completed", &found);
        stats.warehouse_load_error(8, "order_completed", &found);
        let text = stats.metrics.encode();
        assert!(
            text.contains("tracktable_warehouse_load_errors_total{table=\"order_completed\"} 2"),
            "{text}"
        );
        assert_eq!(
            found.to_string(),
            "column total: value for domain small_total violates check constraint (load error 1216)"
        );
    }
}
