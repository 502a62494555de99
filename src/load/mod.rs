//! load: the per-worker task that makes batches durable, in batch order.
//!
//! The load operator (in `dataflow`) owns the tables that hash to its worker. When its
//! input frontier passes a batch it sends that batch's tables to this task as one
//! [`LoadJob`] and holds the batch's capability; the task loads each table through the
//! warehouse and reports [`LoadDone`], then wakes the operator, which releases the
//! capability. So the frontier after the load operator passes a batch only when every
//! table of that batch has committed on every worker.
//!
//! A failed load is handled by its [`FailureClass`], here and nowhere else:
//!
//! - *data*: the rows the warehouse refuses go to `_discards` whole with the server's
//!   reason and the rest of the table batch commits ([`isolate`]); never retried as is;
//! - *transient*: retried with the crate's backoff (`retry`) for as long as it takes (a
//!   batch is never skipped: later batches' acknowledgements wait behind it), on a fresh
//!   connection, the failure shown by `/ready` meanwhile;
//! - *configuration*: tried once more, then the run stops through [`Shutdown::fail`]
//!   with the server's message; nothing of the batch is acknowledged.
//!
//! Every retry wait wakes on shutdown: the batch is then given up
//! ([`Shutdown::abandon`]) and stays unacknowledged, so one signal stops the process
//! however long the warehouse stays down.

pub mod isolate;
mod objects;

use std::sync::Arc;

use timely::scheduling::SyncActivator;
use tokio::sync::mpsc;

use self::isolate::{Isolated, Isolation, Step};
pub use self::objects::record_objects;
use crate::batch::BatchId;
use crate::retry::Backoff;
use crate::shutdown::Shutdown;
use crate::telemetry::RunStats;
use crate::warehouse::{FailureClass, LoadReport, Loader, TableBatch, Warehouse, WarehouseError};

/// How often a load that fails with a configuration error is tried before the run
/// stops: once more, on a fresh connection with the catalogue read again, in case a
/// concurrent schema change or a stale cache caused it.
const CONFIG_ATTEMPTS: u32 = 2;

/// How long a batch's load runs before it is reported as slow, and again after each
/// further such period. A failing load is reported by its retries; one that neither
/// finishes nor fails (a statement waiting on a lock) would otherwise be silent.
const SLOW_LOAD: std::time::Duration = std::time::Duration::from_secs(60);

/// Awaits `work`, calling `slow` with the time elapsed after each `every` it is still
/// running.
async fn warn_while_slow<F: std::future::Future>(
    work: F,
    every: std::time::Duration,
    mut slow: impl FnMut(std::time::Duration),
) -> F::Output {
    let started = tokio::time::Instant::now();
    let mut work = std::pin::pin!(work);
    loop {
        tokio::select! {
            output = &mut work => return output,
            _ = tokio::time::sleep(every) => slow(started.elapsed()),
        }
    }
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
        let loading =
            futures_util::future::join_all(loaders.iter_mut().zip(&lanes).map(|(loader, lane)| {
                let tables = lane.iter().map(|&index| &job.tables[index]);
                load_lane(&*warehouse, loader, job.batch, tables, &stats, &shutdown)
            }));
        let (batch, tables) = (job.batch.0, job.tables.len());
        let results = warn_while_slow(loading, SLOW_LOAD, |elapsed| {
            tracing::warn!(
                batch,
                tables,
                elapsed_s = elapsed.as_secs(),
                "batch load still running without an error: the warehouse is slow, or a statement waits on a lock another session holds"
            );
        })
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

/// Loads `tables` over one loader slot until each has committed: all in one
/// transaction where the warehouse shares them, otherwise (and for whatever a shared
/// attempt leaves) one at a time. `None` when the run is stopping (a configuration
/// error, or shutdown during a retry): the batch is never acknowledged.
///
/// A shared transaction that fails on one table's data rolls back every table: that
/// table then loads alone, its refused rows isolated, and the rest together again. Any
/// other failure leaves the rest to load one at a time, each retried as its class
/// says, so a shared attempt adds at most one failed try before the usual handling.
async fn load_lane<'a, W: Warehouse>(
    warehouse: &W,
    slot: &mut Option<W::Loader>,
    batch: BatchId,
    tables: impl Iterator<Item = &'a TableBatch>,
    stats: &RunStats,
    shutdown: &Shutdown,
) -> Option<LoadReport> {
    let mut report = LoadReport::default();
    let mut pending: Vec<&TableBatch> = tables.collect();
    let alone = |table: &'a TableBatch| Attempts {
        batch,
        table,
        stats,
        shutdown,
        backoff: Backoff::default(),
        config_failures: 0,
    };
    while pending.len() > 1 {
        let loader = match slot {
            Some(loader) => loader,
            None => match warehouse.loader().await {
                Ok(connected) => slot.insert(connected),
                // Connecting is retried with its backoff by the tables' own attempts.
                Err(_) => break,
            },
        };
        if !loader.shares_transactions() {
            break;
        }
        let failed = match loader.load_together(&pending).await {
            Ok(reports) => {
                for (table, committed) in pending.drain(..).zip(reports) {
                    report += table_loaded(stats, batch, table, committed);
                }
                break;
            }
            Err(failed) => failed,
        };
        let done = failed.committed.len().min(pending.len());
        for (table, committed) in pending.drain(..done).zip(failed.committed) {
            report += table_loaded(stats, batch, table, committed);
        }
        let class = failed.error.class();
        let culprit = failed.table.and_then(|index| index.checked_sub(done));
        tracing::debug!(
            batch = batch.0,
            table = culprit.and_then(|index| pending.get(index)).map(|table| table.table.as_str()),
            error = %failed.error,
            "a shared load transaction failed; its tables load again"
        );
        match culprit {
            Some(index) if class == FailureClass::Data && index < pending.len() => {
                let table = pending.remove(index);
                let first = Some(failed.error);
                report += alone(table).load_after(warehouse, slot, first).await?;
            }
            _ => {
                if class != FailureClass::Data {
                    // The connection may be broken.
                    *slot = None;
                }
                break;
            }
        }
    }
    for table in pending {
        report += alone(table).load(warehouse, slot).await?;
    }
    Some(report)
}

/// A table batch committed: counted, and its report as the batch sums it.
fn table_loaded(
    stats: &RunStats,
    batch: BatchId,
    table: &TableBatch,
    mut report: LoadReport,
) -> LoadReport {
    stats.table_loaded(batch.0, table.table.as_str(), report.rows_loaded);
    // In `users` and `accounts` several calls per id are the point, not duplicates.
    if crate::warehouse::sql::is_latest(table.table.as_str()) {
        report.merged += std::mem::take(&mut report.duplicates);
    }
    report
}

/// The attempts at one table batch.
struct Attempts<'a> {
    batch: BatchId,
    table: &'a TableBatch,
    stats: &'a RunStats,
    shutdown: &'a Shutdown,
    backoff: Backoff,
    config_failures: u32,
}

impl Attempts<'_> {
    /// Loads the table batch until it commits, the rows the warehouse refuses kept in
    /// `_discards`; `None` when the run is stopping.
    async fn load<W: Warehouse>(
        &mut self,
        warehouse: &W,
        slot: &mut Option<W::Loader>,
    ) -> Option<LoadReport> {
        self.load_after(warehouse, slot, None).await
    }

    /// [`Attempts::load`], when the whole table batch has already failed once with
    /// `failed` (in a shared transaction): its refused rows are isolated from there,
    /// without loading the whole batch again first.
    async fn load_after<W: Warehouse>(
        &mut self,
        warehouse: &W,
        slot: &mut Option<W::Loader>,
        mut failed: Option<W::Error>,
    ) -> Option<LoadReport> {
        let table = self.table;
        let mut report = LoadReport::default();
        // `None` until a data failure: the whole batch in one load.
        let mut isolation: Option<Isolation> = None;
        loop {
            let step = match &isolation {
                None => None,
                Some(isolation) => match isolation.next() {
                    Some(step) => Some(step.clone()),
                    None => break,
                },
            };
            // A retry races shutdown: a connection or statement that hangs (a host
            // gone from the network) must not hold a requested stop up.
            let result = if let Some(error) = failed.take() {
                Attempt::Ran(Err(error))
            } else if self.backoff.failures() > 0 {
                let attempt = attempt(warehouse, slot, table, step.as_ref());
                tokio::select! {
                    result = attempt => result,
                    _ = self.shutdown.requested() => {
                        self.abandon();
                        return None;
                    }
                }
            } else {
                attempt(warehouse, slot, table, step.as_ref()).await
            };
            let result = match result {
                Attempt::Connect(error) => {
                    self.failed("cannot connect to the warehouse", &error)
                        .await?;
                    continue;
                }
                Attempt::Ran(result) => result,
            };
            let error = match result {
                Ok(committed) => {
                    report += committed;
                    self.backoff.reset();
                    self.config_failures = 0;
                    match &mut isolation {
                        None => break,
                        Some(isolation) => {
                            isolation.done();
                            continue;
                        }
                    }
                }
                Err(error) => error,
            };
            if error.class() == FailureClass::Data && !matches!(step, Some(Step::Refuse { .. })) {
                let rows = match &step {
                    Some(Step::Load(rows)) => rows.len(),
                    _ => table.rows.len(),
                };
                if let Some(found) = error.load_error() {
                    self.stats
                        .warehouse_load_error(self.batch.0, table.table.as_str(), found);
                }
                self.stats.rows_refused(
                    self.batch.0,
                    table.table.as_str(),
                    rows,
                    error.refused_row().is_some(),
                    &error,
                );
                let isolation = isolation.get_or_insert_with(|| Isolation::new(table.rows.len()));
                let isolated = isolation.failed(error.refused_row(), &error.refusal());
                if isolated == Isolated::Narrowed {
                    // Not waited out: the next step loads other rows.
                    continue;
                }
            }
            // Drop the connection: it may be broken, and a fresh one costs little next
            // to a failed load. (A refusal the warehouse cannot store, or a data
            // failure no row explains, cannot be retried away: it counts as
            // configuration.)
            *slot = None;
            self.failed("load failed", &error).await?;
        }
        Some(table_loaded(self.stats, self.batch, table, report))
    }

    /// After a failure that is not narrowed down to rows: waits before the next
    /// attempt, or stops the run. `None`: stop (the batch stays unacknowledged).
    async fn failed<E: WarehouseError>(&mut self, what: &'static str, error: &E) -> Option<()> {
        let (batch, table) = (self.batch.0, self.table.table.as_str());
        if error.class() != FailureClass::Transient {
            self.config_failures += 1;
            if self.config_failures >= CONFIG_ATTEMPTS {
                tracing::error!(batch, table, error = %error, "load failed and retrying cannot help; stopping (nothing of this batch is acknowledged)");
                self.shutdown.fail(format!(
                    "loading table {table} of batch {batch} failed and retrying cannot help: {error}"
                ));
                return None;
            }
        }
        let wait = self.backoff.failed();
        let attempt = self.backoff.failures();
        self.stats
            .warehouse_retry(what, batch, table, attempt, error, wait);
        if self.shutdown.sleep(wait).await {
            return Some(());
        }
        self.abandon();
        None
    }

    /// Gives the batch up because shutdown was requested while its load was retried.
    fn abandon(&self) {
        let (batch, table) = (self.batch.0, self.table.table.as_str());
        tracing::warn!(
            batch,
            table,
            "shutting down while this load was being retried; leaving the batch unacknowledged (it loads again on the next start)"
        );
        self.shutdown
            .abandon(format!("table {table} of batch {batch}"));
    }
}

/// How one attempt at a step ended.
enum Attempt<E> {
    /// No connection to run it on.
    Connect(E),
    Ran(Result<LoadReport, E>),
}

/// One attempt at `step` of `table` (`None`: the whole batch), connecting first if the
/// slot has no connection.
async fn attempt<W: Warehouse>(
    warehouse: &W,
    slot: &mut Option<W::Loader>,
    table: &TableBatch,
    step: Option<&Step>,
) -> Attempt<W::Error> {
    let loader = match slot {
        Some(loader) => loader,
        None => match warehouse.loader().await {
            Ok(connected) => slot.insert(connected),
            Err(error) => return Attempt::Connect(error),
        },
    };
    Attempt::Ran(match step {
        None => loader.load(table).await,
        Some(Step::Load(rows)) => loader.load(&part(table, rows)).await,
        Some(Step::Refuse { row, reason }) => loader.refuse(&part(table, &[*row]), reason).await,
    })
}

/// The rows `rows` (indices, in order) of `table` as a table batch of their own, with
/// the batch's schema changes (already applied by the first attempt; applying them
/// again is a no-op).
fn part(table: &TableBatch, rows: &[usize]) -> TableBatch {
    TableBatch {
        batch: table.batch,
        table: table.table.clone(),
        observed: table.observed.clone(),
        rows: rows
            .iter()
            .filter_map(|&index| table.rows.get(index).cloned())
            .collect(),
    }
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

    /// A warehouse whose loads fail as told: the first `injected` attempts with those
    /// classes, then any load holding a message id in `refused` on its data (naming
    /// the row when `names`).
    #[derive(Clone, Default)]
    struct Scripted {
        injected: Arc<std::sync::Mutex<std::collections::VecDeque<FailureClass>>>,
        refused: Vec<String>,
        names: bool,
        loaded: Arc<std::sync::Mutex<Vec<String>>>,
        discarded: Arc<std::sync::Mutex<Vec<String>>>,
        attempts: Arc<std::sync::atomic::AtomicUsize>,
        /// Loads tables together, all or nothing, in one transaction.
        shares: bool,
        /// The tables of each shared attempt, in order.
        together: Arc<std::sync::Mutex<Vec<Vec<String>>>>,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("scripted {class:?} failure")]
    struct ScriptedError {
        class: FailureClass,
        row: Option<usize>,
    }

    impl WarehouseError for ScriptedError {
        fn class(&self) -> FailureClass {
            self.class
        }

        fn refused_row(&self) -> Option<usize> {
            self.row
        }
    }

    impl Warehouse for Scripted {
        type Error = ScriptedError;
        type Loader = Scripted;

        async fn prepare(&self) -> Result<(), ScriptedError> {
            Ok(())
        }

        async fn loader(&self) -> Result<Scripted, ScriptedError> {
            Ok(self.clone())
        }

        async fn loaded_objects(
            &self,
            _: Vec<crate::warehouse::ObjectId>,
        ) -> Result<std::collections::HashSet<crate::warehouse::ObjectId>, ScriptedError> {
            Ok(Default::default())
        }

        async fn record_objects(
            &self,
            _: Vec<crate::warehouse::ObjectId>,
        ) -> Result<(), ScriptedError> {
            Ok(())
        }
    }

    impl Loader for Scripted {
        type Error = ScriptedError;

        async fn load(&mut self, batch: &TableBatch) -> Result<LoadReport, ScriptedError> {
            self.attempts
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let injected = self.injected.lock().unwrap().pop_front();
            if let Some(class) = injected {
                if class == FailureClass::Config {
                    self.injected.lock().unwrap().push_back(class);
                }
                return Err(ScriptedError { class, row: None });
            }
            let bad = batch
                .rows
                .iter()
                .position(|row| self.refused.contains(&row.message_id));
            if let Some(row) = bad {
                return Err(ScriptedError {
                    class: FailureClass::Data,
                    row: self.names.then_some(row),
                });
            }
            let ids = batch.rows.iter().map(|row| row.message_id.clone());
            self.loaded.lock().unwrap().extend(ids);
            Ok(LoadReport {
                rows_loaded: batch.rows.len() as u64,
                ..LoadReport::default()
            })
        }

        fn shares_transactions(&self) -> bool {
            self.shares
        }

        async fn load_together(
            &mut self,
            batches: &[&TableBatch],
        ) -> Result<Vec<LoadReport>, crate::warehouse::TogetherError<ScriptedError>> {
            assert!(
                self.shares,
                "tables are only handed over together when shared"
            );
            let names = batches.iter().map(|batch| batch.table.to_string());
            self.together.lock().unwrap().push(names.collect());
            let failed = |class, table| crate::warehouse::TogetherError {
                error: ScriptedError { class, row: None },
                table,
                committed: Vec::new(),
            };
            if let Some(class) = self.injected.lock().unwrap().pop_front() {
                return Err(failed(class, None));
            }
            for (index, batch) in batches.iter().enumerate() {
                let refused = |row: &Row| self.refused.contains(&row.message_id);
                if let Some(row) = batch.rows.iter().position(refused) {
                    let mut failed = failed(FailureClass::Data, Some(index));
                    failed.error.row = self.names.then_some(row);
                    return Err(failed);
                }
            }
            let mut reports = Vec::new();
            for batch in batches {
                let ids = batch.rows.iter().map(|row| row.message_id.clone());
                self.loaded.lock().unwrap().extend(ids);
                reports.push(LoadReport {
                    rows_loaded: batch.rows.len() as u64,
                    ..LoadReport::default()
                });
            }
            Ok(reports)
        }

        async fn refuse(
            &mut self,
            batch: &TableBatch,
            reason: &crate::warehouse::DiscardReason,
        ) -> Result<LoadReport, ScriptedError> {
            assert_eq!(
                reason.to_string(),
                "the warehouse refused the row: scripted Data failure"
            );
            let ids = batch.rows.iter().map(|row| row.message_id.clone());
            self.discarded.lock().unwrap().extend(ids);
            let mut report = LoadReport {
                discards: batch.rows.len() as u64,
                ..LoadReport::default()
            };
            report.discards_by_reason.add(reason, report.discards);
            Ok(report)
        }
    }

    async fn load_one(
        warehouse: &Scripted,
        rows: usize,
        shutdown: &Shutdown,
    ) -> Option<LoadReport> {
        let table = table("t", rows);
        let stats = RunStats::default();
        let mut slot = None;
        load_lane(
            warehouse,
            &mut slot,
            BatchId(1),
            [&table].into_iter(),
            &stats,
            shutdown,
        )
        .await
    }

    #[tokio::test]
    async fn rows_the_warehouse_refuses_go_to_discards_and_the_rest_commits() {
        for names in [true, false] {
            let warehouse = Scripted {
                refused: vec!["m3".into(), "m17".into()],
                names,
                ..Scripted::default()
            };
            let report = load_one(&warehouse, 20, &Shutdown::default())
                .await
                .expect("the batch commits");
            assert_eq!(report.rows_loaded, 18);
            assert_eq!(report.discards, 2);
            let mut loaded = warehouse.loaded.lock().unwrap().clone();
            loaded.sort();
            let mut expected: Vec<String> = (0..20)
                .map(|i| format!("m{i}"))
                .filter(|id| id != "m3" && id != "m17")
                .collect();
            expected.sort();
            assert_eq!(loaded, expected, "names: {names}");
            assert_eq!(*warehouse.discarded.lock().unwrap(), ["m3", "m17"]);
            let attempts = warehouse
                .attempts
                .load(std::sync::atomic::Ordering::Relaxed);
            // Named: one failed attempt per bad row. Halved: log2(20) rounds per bad row.
            let bound = if names { 3 } else { 1 + 2 * 5 * 2 };
            assert!(attempts <= bound, "{attempts} attempts, names: {names}");
        }
    }

    /// `tables` (name, rows), each row's id its table's name and its index.
    async fn load_tables(warehouse: &Scripted, tables: &[(&str, usize)]) -> Option<LoadReport> {
        let tables: Vec<TableBatch> = tables
            .iter()
            .map(|&(name, rows)| {
                let mut batch = table(name, rows);
                for (index, row) in batch.rows.iter_mut().enumerate() {
                    row.message_id = format!("{name}{index}");
                }
                batch
            })
            .collect();
        let stats = RunStats::default();
        let mut slot = None;
        let shutdown = Shutdown::default();
        load_lane(
            warehouse,
            &mut slot,
            BatchId(1),
            tables.iter(),
            &stats,
            &shutdown,
        )
        .await
    }

    #[tokio::test]
    async fn a_lane_commits_together_and_a_table_refused_on_its_data_loads_alone() {
        let warehouse = Scripted {
            shares: true,
            refused: vec!["b2".into()],
            names: true,
            ..Scripted::default()
        };
        let report = load_tables(&warehouse, &[("a", 3), ("b", 4), ("c", 2)])
            .await
            .expect("the batch commits");
        assert_eq!((report.rows_loaded, report.discards), (8, 1));
        // Tried together, b refused its data: b alone (its bad row isolated), then
        // the rest together again.
        assert_eq!(
            *warehouse.together.lock().unwrap(),
            [vec!["a", "b", "c"], vec!["a", "c"]]
        );
        let mut loaded = warehouse.loaded.lock().unwrap().clone();
        loaded.sort();
        assert_eq!(loaded, ["a0", "a1", "a2", "b0", "b1", "b3", "c0", "c1"]);
        assert_eq!(*warehouse.discarded.lock().unwrap(), ["b2"]);
        // The shared attempt named b's bad row: b is not loaded whole again, only its
        // good rows.
        assert_eq!(
            warehouse
                .attempts
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
    }

    #[tokio::test]
    async fn after_a_shared_transaction_fails_otherwise_the_tables_load_one_at_a_time() {
        let warehouse = Scripted {
            shares: true,
            ..Scripted::default()
        };
        warehouse
            .injected
            .lock()
            .unwrap()
            .extend([FailureClass::Transient, FailureClass::Transient]);
        let report = load_tables(&warehouse, &[("a", 3), ("b", 4)]).await;
        assert_eq!(report.map(|report| report.rows_loaded), Some(7));
        // One shared attempt; then `a` fails once more on its own and is retried.
        assert_eq!(warehouse.together.lock().unwrap().len(), 1);
        assert_eq!(
            warehouse
                .attempts
                .load(std::sync::atomic::Ordering::Relaxed),
            3
        );
        let mut loaded = warehouse.loaded.lock().unwrap().clone();
        loaded.sort();
        assert_eq!(loaded, ["a0", "a1", "a2", "b0", "b1", "b2", "b3"]);
    }

    #[tokio::test]
    async fn a_transient_failure_is_retried_until_the_load_commits() {
        let warehouse = Scripted::default();
        warehouse
            .injected
            .lock()
            .unwrap()
            .extend([FailureClass::Transient, FailureClass::Transient]);
        let report = load_one(&warehouse, 5, &Shutdown::default()).await;
        assert_eq!(report.map(|report| report.rows_loaded), Some(5));
        assert_eq!(warehouse.loaded.lock().unwrap().len(), 5);
    }

    #[tokio::test]
    async fn a_configuration_failure_stops_the_run_after_one_retry() {
        let warehouse = Scripted::default();
        warehouse
            .injected
            .lock()
            .unwrap()
            .push_back(FailureClass::Config);
        let shutdown = Shutdown::default();
        assert!(load_one(&warehouse, 5, &shutdown).await.is_none());
        assert_eq!(
            warehouse
                .attempts
                .load(std::sync::atomic::Ordering::Relaxed),
            2
        );
        let failure = shutdown.failure().expect("the run stops");
        assert!(
            failure.contains("retrying cannot help: scripted Config failure"),
            "{failure}"
        );
        assert!(warehouse.loaded.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn shutdown_during_a_retry_gives_the_batch_up_at_once() {
        let warehouse = Scripted::default();
        // Transient forever: the backoff grows towards 30 s between attempts.
        warehouse
            .injected
            .lock()
            .unwrap()
            .extend(std::iter::repeat_n(FailureClass::Transient, 1000));
        let shutdown = Arc::new(Shutdown::default());
        let stopper = Arc::clone(&shutdown);
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(700)).await;
            stopper.request();
        });
        let started = std::time::Instant::now();
        assert!(load_one(&warehouse, 5, &shutdown).await.is_none());
        assert!(started.elapsed() < std::time::Duration::from_secs(3));
        assert_eq!(shutdown.abandoned(), Some("table t of batch 1"));
        assert_eq!(shutdown.failure(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_load_that_neither_finishes_nor_fails_is_reported_each_period() {
        let period = std::time::Duration::from_secs(60);
        let mut reported = Vec::new();
        let work = tokio::time::sleep(std::time::Duration::from_secs(150));
        warn_while_slow(work, period, |elapsed| reported.push(elapsed.as_secs())).await;
        assert_eq!(reported, [60, 120]);
        let mut quick = 0;
        let output = warn_while_slow(async { 7 }, period, |_| quick += 1).await;
        assert_eq!((output, quick), (7, 0));
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
