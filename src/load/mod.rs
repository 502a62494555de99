//! load: the per-worker task that makes batches durable, in batch order.
//!
//! The load operator (in `dataflow`) owns the tables that hash to its worker. When its
//! input frontier passes a batch it sends that batch's tables to this task as one
//! [`LoadJob`] and holds the batch's capability; the task loads each table through the
//! warehouse, retrying transient errors forever with the crate's backoff (`retry`; a
//! batch is never skipped: later batches' acknowledgements wait behind it), then
//! reports [`LoadDone`] and wakes the operator, which releases the capability. So the frontier
//! after the load operator passes a batch only when every table of that batch has
//! committed on every worker. An error the warehouse calls permanent (a syntax error, a
//! missing privilege) stops the run through [`Shutdown::fail`] after a few attempts
//! rather than retrying forever: nothing of the batch is acknowledged.

use std::sync::Arc;

use timely::scheduling::SyncActivator;
use tokio::sync::mpsc;

use crate::batch::BatchId;
use crate::retry::Backoff;
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

/// Runs until the job channel closes (the dataflow finished). A job's tables are spread
/// over `connections` loaders (each its own connection) that load concurrently: a load
/// is mostly round trips and server work, so one connection leaves the server idle.
pub async fn run_loader<W: Warehouse>(
    warehouse: Arc<W>,
    mut jobs: mpsc::UnboundedReceiver<LoadJob>,
    done: mpsc::UnboundedSender<LoadDone>,
    activator: SyncActivator,
    stats: Arc<RunStats>,
    shutdown: Arc<Shutdown>,
    connections: usize,
) {
    let mut loaders: Vec<Option<W::Loader>> = (0..connections.max(1)).map(|_| None).collect();
    while let Some(job) = jobs.recv().await {
        let started = std::time::Instant::now();
        tracing::debug!(
            batch = job.batch.0,
            tables = job.tables.len(),
            rows = job
                .tables
                .iter()
                .map(|table| table.rows.len())
                .sum::<usize>(),
            "batch load started"
        );
        let lanes = assign_lanes(&job.tables, loaders.len());
        let results =
            futures_util::future::join_all(loaders.iter_mut().zip(&lanes).map(|(loader, lane)| {
                let tables = lane.iter().map(|&index| &job.tables[index]);
                load_lane(&*warehouse, loader, job.batch, tables, &stats, &shutdown)
            }))
            .await;
        let mut report = LoadReport::default();
        for result in results {
            match result {
                Some(lane_report) => report += lane_report,
                // Gave up: the run is stopping; this batch is never acknowledged.
                None => return,
            }
        }
        stats.batch_loaded(&report);
        stats.batch_load_time(started.elapsed().as_secs_f64());
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

/// Spreads a job's tables over `lanes` connections, largest first onto the least loaded
/// lane (longest-processing-time scheduling): the biggest table (`tracks`, usually)
/// then shares its lane with as little as possible, so it alone sets the batch's
/// load time. Returns table indices per lane.
pub fn assign_lanes(tables: &[TableBatch], lanes: usize) -> Vec<Vec<usize>> {
    let sizes: Vec<usize> = tables.iter().map(|table| table.rows.len()).collect();
    assign_lanes_by_size(&sizes, lanes)
}

/// [`assign_lanes`] for any jobs, by their row counts (the benchmark's baseline COPY
/// spreads its tables the same way).
pub fn assign_lanes_by_size(sizes: &[usize], lanes: usize) -> Vec<Vec<usize>> {
    let lanes = lanes.max(1);
    let mut order: Vec<usize> = (0..sizes.len()).collect();
    order.sort_by_key(|&index| std::cmp::Reverse(sizes[index]));
    let mut assigned: Vec<Vec<usize>> = vec![Vec::new(); lanes];
    let mut load = vec![0usize; lanes];
    for index in order {
        let lane = (0..lanes).min_by_key(|&lane| load[lane]).unwrap_or(0);
        // A table with no rows still costs a round trip or two.
        load[lane] += sizes[index] + 1;
        assigned[lane].push(index);
    }
    assigned
}

/// Loads `tables` one after another over one loader slot, retrying each until it
/// commits. `None` when a permanent error made it give up (the run is stopping).
async fn load_lane<'a, W: Warehouse>(
    warehouse: &W,
    loader: &mut Option<W::Loader>,
    batch: BatchId,
    tables: impl Iterator<Item = &'a TableBatch>,
    stats: &RunStats,
    shutdown: &Shutdown,
) -> Option<LoadReport> {
    let mut report = LoadReport::default();
    for table in tables {
        let mut backoff = Backoff::default();
        let mut permanent: u32 = 0;
        loop {
            let current = match loader.as_mut() {
                Some(current) => current,
                None => match warehouse.loader().await {
                    Ok(connected) => loader.insert(connected),
                    Err(error) => {
                        if error.is_permanent() {
                            give_up(shutdown, batch, &table.table, &error);
                            return None;
                        }
                        let wait = backoff.failed();
                        stats.warehouse_retry(
                            "cannot connect to the warehouse",
                            batch.0,
                            table.table.as_str(),
                            backoff.failures(),
                            &error,
                            wait,
                        );
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                },
            };
            match current.load(table).await {
                Ok(table_report) => {
                    stats.table_loaded(batch.0, table.table.as_str(), table_report.rows_loaded);
                    report += table_report;
                    break;
                }
                Err(error) => {
                    // Drop the connection: it may be broken, and a fresh one costs little
                    // next to a failed load.
                    *loader = None;
                    // A permanent error is tried a few times (it might have been a
                    // concurrent schema change), then stops the run loudly.
                    if error.is_permanent() {
                        permanent += 1;
                        if permanent >= PERMANENT_ATTEMPTS {
                            give_up(shutdown, batch, &table.table, &error);
                            return None;
                        }
                    }
                    let wait = backoff.failed();
                    stats.warehouse_retry(
                        "load failed",
                        batch.0,
                        table.table.as_str(),
                        backoff.failures(),
                        &error,
                        wait,
                    );
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }
    Some(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::Row;

    fn table(name: &str, rows: usize) -> TableBatch {
        let table = crate::route::naming::table_name(name);
        TableBatch {
            batch: BatchId(1),
            table: table.clone(),
            observed: Vec::new(),
            rows: (0..rows)
                .map(|i| {
                    Row::new(
                        table.clone(),
                        format!("m{i}"),
                        "o".into(),
                        crate::decode::Position::line(1),
                        Vec::new(),
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn the_largest_table_gets_a_lane_to_itself_and_every_table_one_lane() {
        let tables = vec![
            table("a", 5),
            table("tracks", 100),
            table("b", 30),
            table("c", 40),
            table("d", 1),
        ];
        let lanes = assign_lanes(&tables, 3);
        let tracks_lane = lanes
            .iter()
            .find(|lane| lane.contains(&1))
            .expect("tracks assigned");
        assert_eq!(tracks_lane, &vec![1], "{lanes:?}");
        let mut all: Vec<usize> = lanes.concat();
        all.sort();
        assert_eq!(all, [0, 1, 2, 3, 4]);
        assert_eq!(assign_lanes(&tables, 0).len(), 1, "at least one lane");
    }

    #[test]
    fn tables_dealt_by_size_leave_no_lane_far_behind() {
        // The bench's tables in name order, dealt alternately, gave one of two
        // connections 378k of 512k rows; by size neither lane passes half the rows by
        // more than the smallest sizeable table (dealt alternately, one lane gets 424k
        // of these 512k).
        let sizes = [
            9_000, 31_000, 209_523, 12_000, 70_000, 1, 60_000, 45_000, 75_000,
        ];
        let lanes = assign_lanes_by_size(&sizes, 2);
        let loads: Vec<usize> = lanes
            .iter()
            .map(|lane| lane.iter().map(|&index| sizes[index]).sum())
            .collect();
        let total: usize = sizes.iter().sum();
        assert!(
            loads.iter().all(|&load| load <= total / 2 + 9_000),
            "{loads:?}"
        );
        let mut all = lanes.concat();
        all.sort();
        assert_eq!(all, (0..sizes.len()).collect::<Vec<_>>());
    }
}
