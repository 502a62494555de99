//! telemetry: every fact tracktable counts is counted and logged from one function here,
//! so counters and logs never drift apart.
//!
//! `RunStats` is one set of process-wide counters (atomics: workers only add to them).
//! It feeds `run`'s closing summary and the `demo` report; the Prometheus exporter of the
//! operations issue will read the same counters.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::decode::DecodeSummary;
use crate::warehouse::LoadReport;

#[derive(Debug, Default)]
pub struct RunStats {
    objects: AtomicU64,
    input_bytes: AtomicU64,
    messages: AtomicU64,
    rejections: AtomicU64,
    batches: AtomicU64,
    rows_loaded: AtomicU64,
    duplicates: AtomicU64,
    discards: AtomicU64,
    schema_changes: AtomicU64,
    warehouse_retries: AtomicU64,
    objects_acknowledged: AtomicU64,
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
    pub discards: u64,
    pub schema_changes: u64,
    pub warehouse_retries: u64,
    pub objects_acknowledged: u64,
}

impl RunStats {
    pub fn object_decoded(&self, object: &str, summary: &DecodeSummary) {
        self.objects.fetch_add(1, Ordering::Relaxed);
        self.input_bytes.fetch_add(summary.bytes, Ordering::Relaxed);
        self.messages.fetch_add(summary.messages, Ordering::Relaxed);
        self.rejections
            .fetch_add(summary.rejections, Ordering::Relaxed);
        tracing::debug!(
            object,
            messages = summary.messages,
            rejections = summary.rejections,
            bytes = summary.bytes,
            "object decoded"
        );
    }

    pub fn batch_loaded(&self, report: &LoadReport) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.rows_loaded
            .fetch_add(report.rows_loaded, Ordering::Relaxed);
        self.duplicates
            .fetch_add(report.duplicates, Ordering::Relaxed);
        self.discards.fetch_add(report.discards, Ordering::Relaxed);
        self.schema_changes
            .fetch_add(report.schema_changes, Ordering::Relaxed);
        tracing::debug!(
            rows = report.rows_loaded,
            duplicates = report.duplicates,
            discards = report.discards,
            schema_changes = report.schema_changes,
            "batch committed on this worker"
        );
    }

    pub fn warehouse_retry(&self) {
        self.warehouse_retries.fetch_add(1, Ordering::Relaxed);
    }

    pub fn objects_acknowledged(&self, batch: u64, count: u64) {
        self.objects_acknowledged
            .fetch_add(count, Ordering::Relaxed);
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
            discards: get(&self.discards),
            schema_changes: get(&self.schema_changes),
            warehouse_retries: get(&self.warehouse_retries),
            objects_acknowledged: get(&self.objects_acknowledged),
        }
    }
}
