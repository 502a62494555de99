//! load: the per-worker task that makes batches durable, in batch order.
//!
//! The load operator (in `dataflow`) owns the tables that hash to its worker. When its
//! input frontier passes a batch it sends that batch's tables to this task as one
//! [`LoadJob`] and holds the batch's capability; the task loads each table through the
//! warehouse, retrying transient errors forever with capped exponential backoff and
//! jitter (a batch is never skipped: later batches' acknowledgements wait behind it),
//! then reports
//! [`LoadDone`] and wakes the operator, which releases the capability. So the frontier
//! after the load operator passes a batch only when every table of that batch has
//! committed on every worker. An error the warehouse calls permanent (a syntax error, a
//! missing privilege) stops the run through [`Shutdown::fail`] after a few attempts
//! rather than retrying forever: nothing of the batch is acknowledged.

pub mod backoff;

use std::sync::Arc;

use timely::scheduling::SyncActivator;
use tokio::sync::mpsc;

use crate::batch::BatchId;
use crate::route::TableName;
use crate::shutdown::Shutdown;
use crate::telemetry::RunStats;
use crate::warehouse::{LoadReport, Loader, TableBatch, Warehouse, WarehouseError};

/// How often a load that fails with a permanent error is tried before the run stops.
const PERMANENT_ATTEMPTS: u32 = 3;

/// Stops the run: the batch is not acknowledged, so its input loads again once the cause
/// is fixed.
fn give_up(shutdown: &Shutdown, batch: BatchId, table: &TableName, error: &dyn WarehouseError) {
    tracing::error!(batch = batch.0, table = %table, error = %error, "load failed permanently; stopping (nothing of this batch is acknowledged)");
    shutdown.fail(format!(
        "loading table {table} of batch {} failed and retrying cannot help: {error}",
        batch.0
    ));
}

/// One worker's share of one batch.
#[derive(Debug)]
pub struct LoadJob {
    pub batch: BatchId,
    pub tables: Vec<TableBatch>,
}

/// A batch committed on this worker.
#[derive(Debug, Clone, Copy)]
pub struct LoadDone {
    pub batch: BatchId,
    pub report: LoadReport,
}

/// Runs until the job channel closes (the dataflow finished).
pub async fn run_loader<W: Warehouse>(
    warehouse: Arc<W>,
    mut jobs: mpsc::UnboundedReceiver<LoadJob>,
    done: mpsc::UnboundedSender<LoadDone>,
    activator: SyncActivator,
    stats: Arc<RunStats>,
    shutdown: Arc<Shutdown>,
) {
    let mut loader: Option<W::Loader> = None;
    while let Some(job) = jobs.recv().await {
        let mut report = LoadReport::default();
        for table in &job.tables {
            let mut attempt: u32 = 0;
            let mut permanent: u32 = 0;
            loop {
                let current = match loader.as_mut() {
                    Some(current) => current,
                    None => match warehouse.loader().await {
                        Ok(connected) => loader.insert(connected),
                        Err(error) => {
                            attempt += 1;
                            if error.is_permanent() {
                                give_up(&shutdown, job.batch, &table.table, &error);
                                return;
                            }
                            stats.warehouse_retry();
                            let wait = backoff::delay(attempt, rand::random());
                            tracing::warn!(batch = job.batch.0, table = %table.table, attempt, error = %error, retry_in = ?wait, "cannot connect to the warehouse");
                            tokio::time::sleep(wait).await;
                            continue;
                        }
                    },
                };
                match current.load(table).await {
                    Ok(table_report) => {
                        tracing::debug!(batch = job.batch.0, table = %table.table, rows = table_report.rows_loaded, "table batch committed");
                        report += table_report;
                        break;
                    }
                    Err(error) => {
                        // Drop the connection: it may be broken, and a fresh one costs little
                        // next to a failed load.
                        loader = None;
                        attempt += 1;
                        // A permanent error is tried a few times (it might have been a
                        // concurrent schema change), then stops the run loudly.
                        if error.is_permanent() {
                            permanent += 1;
                            if permanent >= PERMANENT_ATTEMPTS {
                                give_up(&shutdown, job.batch, &table.table, &error);
                                return;
                            }
                        }
                        stats.warehouse_retry();
                        let wait = backoff::delay(attempt, rand::random());
                        tracing::warn!(batch = job.batch.0, table = %table.table, attempt, error = %error, retry_in = ?wait, "load failed; retrying");
                        tokio::time::sleep(wait).await;
                    }
                }
            }
        }
        stats.batch_loaded(&report);
        if done
            .send(LoadDone {
                batch: job.batch,
                report,
            })
            .is_err()
        {
            return;
        }
        // The operator may have been dropped already (shutdown); nothing to wake then.
        let _ = activator.activate();
    }
}
