//! A warehouse that only counts: for measuring the dataflow without a database's cost,
//! and for batching scenarios that need to know which rows each batch held, run
//! in-process in a fraction of a second.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tracktable::batch::BatchId;
use tracktable::warehouse::{DiscardReason, LoadReport, Loader, ObjectId, TableBatch, Warehouse};

#[derive(Debug, Default, Clone)]
pub struct CountingWarehouse {
    rows: Arc<AtomicU64>,
    objects: Arc<Mutex<HashSet<ObjectId>>>,
    loads: Arc<Mutex<Vec<Load>>>,
}

/// One (batch, table) load as the warehouse received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Load {
    pub batch: BatchId,
    pub table: String,
    pub rows: u64,
}

impl CountingWarehouse {
    /// Rows loaded, over every table.
    pub fn rows(&self) -> u64 {
        self.rows.load(Ordering::Relaxed)
    }

    /// Every load so far, in the order they arrived.
    pub fn loads(&self) -> Vec<Load> {
        self.loads
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Warehouse for CountingWarehouse {
    type Error = std::convert::Infallible;
    type Loader = CountingWarehouse;

    async fn prepare(&self) -> Result<(), Self::Error> {
        Ok(())
    }

    async fn loader(&self) -> Result<CountingWarehouse, Self::Error> {
        Ok(self.clone())
    }

    async fn loaded_objects(
        &self,
        objects: Vec<ObjectId>,
    ) -> Result<HashSet<ObjectId>, Self::Error> {
        let known = self.objects.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(objects
            .into_iter()
            .filter(|object| known.contains(object))
            .collect())
    }

    async fn record_objects(&self, objects: Vec<ObjectId>) -> Result<(), Self::Error> {
        self.objects
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(objects);
        Ok(())
    }
}

impl Loader for CountingWarehouse {
    type Error = std::convert::Infallible;

    async fn load(&mut self, batch: &TableBatch) -> Result<LoadReport, Self::Error> {
        let rows = batch.rows.len() as u64;
        self.rows.fetch_add(rows, Ordering::Relaxed);
        self.loads
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Load {
                batch: batch.batch,
                table: batch.table.as_str().to_owned(),
                rows,
            });
        Ok(LoadReport {
            rows_loaded: rows,
            ..LoadReport::default()
        })
    }

    async fn refuse(
        &mut self,
        batch: &TableBatch,
        reason: &DiscardReason,
    ) -> Result<LoadReport, Self::Error> {
        let mut report = LoadReport {
            discards: batch.rows.len() as u64,
            ..LoadReport::default()
        };
        report.discards_by_reason.add(reason, report.discards);
        Ok(report)
    }
}

/// Runs a `dir` pipeline once over `source` (`run --once` with `workers` workers and
/// `batch`) into a fresh counting warehouse, in this process; returns the run's summary
/// and the warehouse. Call it from a thread that is not running a tokio runtime.
pub fn run_dir(
    source: &std::path::Path,
    state: &std::path::Path,
    workers: usize,
    batch: tracktable::config::BatchFile,
) -> Result<(tracktable::run::RunSummary, CountingWarehouse), String> {
    use tracktable::config::PipelineFile;
    // The warehouse named only sets the batch defaults: nothing connects to it.
    let file = PipelineFile::local(
        "counting",
        source,
        state,
        "postgres://counting@127.0.0.1/counting",
        "counting",
        batch,
    );
    let pipeline = file
        .validate(&state.join("counting.toml"))
        .map_err(|error| error.to_string())?;
    let warehouse = CountingWarehouse::default();
    let options = tracktable::run::RunOptions::once(workers);
    let summary = tracktable::run::run_with(&pipeline, &options, Arc::new(warehouse.clone()))
        .map_err(|error| error.to_string())?;
    Ok((summary, warehouse))
}
