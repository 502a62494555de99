//! dataflow: wires the operators. No business logic lives here: every closure calls a
//! plain function from the stage's own module.
//!
//! ```text
//!  lister task (tokio) ──ObjectRef, bounded channel + SyncActivator──┐
//!                                                                    ▼
//!  Admit (source, one per worker)      stamps objects with the worker's BatchId, closes
//!    │ ObjectRef @ batch                batches on the clock or when full, stops
//!    ▼                                  admitting when too many batches are unacked or
//!                                       decoding is DECODE_AHEAD objects behind
//!  DecodeRoute (unary, pipeline)        decode::decode_object → route::Router → rows;
//!    │ Row | Observation @ batch        rejections become `_rejections` rows; each
//!    │                                  object's distinct (table, column, type) too
//!  ok_err ───────────► Observe (unary, pipeline)   distinct observations per batch
//!    │ Row @ batch      │ Observation @ batch
//!    │                  ▼
//!    │                distinct_total (differential)   observations never seen before
//!    │                  │ (Observation, batch, +1)     = the batch's schema changes
//!    ▼                  ▼
//!  Load (binary_frontier; both inputs exchanged by table: one worker owns a table)
//!    │   when both frontiers pass a batch: LoadJob → loader task (tokio); holds the
//!    │   batch's capability until the task reports the commit
//!    ▼ LoadDone @ batch
//!  probe ── the worker loop acknowledges a batch's objects once the probe passes it
//! ```

mod admit;
mod decode_route;
mod progress;

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

use differential_dataflow::AsCollection;
use differential_dataflow::operators::ThresholdTotal;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::ProbeHandle;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::{Capability, Probe};
use timely::worker::Worker;
use tokio::sync::mpsc;

use self::admit::admit;
use self::decode_route::{decode_route, split};
pub use self::progress::AdmitActivator;
use self::progress::DecodeProgress;
use crate::batch::{BatchId, BatchPolicy};
use crate::columns::Observation;
use crate::decode::Limits;
use crate::load::{self, LoadDone, LoadJob};
use crate::route::{ColumnName, ColumnType, Row, TableName};
use crate::shutdown::Shutdown;
use crate::source::{self, ObjectRef};
use crate::telemetry::RunStats;
use crate::warehouse::{TableBatch, Warehouse};

/// The dataflow's timestamp: a [`BatchId`]'s number.
pub type Time = u64;

/// Objects admitted per batch on this worker, awaiting acknowledgement.
pub type Pending = Rc<RefCell<BTreeMap<Time, Vec<ObjectRef>>>>;

/// What every worker of a process shares.
pub struct Context<W: Warehouse> {
    pub runtime: tokio::runtime::Handle,
    pub warehouse: Arc<W>,
    pub policy: BatchPolicy,
    /// Stop admitting while this many of the worker's batches await acknowledgement.
    pub max_in_flight: usize,
    /// Warehouse connections per worker's loader.
    pub load_connections: usize,
    pub limits: Limits,
    /// The tracking plan route applies, if any.
    pub plan: Option<Arc<crate::route::plan::TrackingPlan>>,
    /// Root of the `dir` source.
    pub root: PathBuf,
    pub shutdown: Arc<Shutdown>,
    pub stats: Arc<RunStats>,
}

/// What the worker loop needs from the dataflow it built.
pub struct Handles {
    /// Passes a batch once every table of it has committed on every worker.
    pub probe: ProbeHandle<Time>,
    pub pending: Pending,
    /// Wakes this worker's Admit operator (after acknowledgements free room).
    pub admit: AdmitActivator,
}

/// Builds the dataflow on one worker. `objects` delivers this worker's objects;
/// `register` receives the admit operator's activator so the lister and the signal
/// handler can wake it.
pub fn build<W: Warehouse>(
    worker: &mut Worker,
    context: &Context<W>,
    objects: source::Inbox,
    register: impl FnOnce(timely::scheduling::SyncActivator),
) -> Handles {
    let probe = ProbeHandle::new();
    let pending: Pending = Rc::default();
    let admit_activator: AdmitActivator = Rc::default();
    // The feedback edge from DecodeRoute to Admit.
    let progress = Rc::new(DecodeProgress::new(Rc::clone(&admit_activator)));

    worker.dataflow::<Time, _, _>(|scope| {
        let admitted = admit(
            scope,
            context,
            objects,
            &pending,
            &progress,
            &admit_activator,
            register,
        );

        let (rows, observations) = split(decode_route(admitted, context, &progress));

        // ---------------------------------------------------------------- Observe + columns
        let schema_changes = observations
            .unary::<CapacityContainerBuilder<Vec<(Observation, Time, isize)>>, _, _, _>(
                Pipeline,
                "Observe",
                |_, _| {
                    move |input, output| {
                        input.for_each_stamp(|stamp, observations| {
                            let Some(&time) = stamp.least() else { return };
                            let seen: HashSet<Observation, foldhash::fast::RandomState> =
                                observations.flat_map(|batch| batch.drain(..)).collect();
                            output.session(&stamp).give_iterator(
                                seen.into_iter().map(|observation| (observation, time, 1)),
                            );
                        });
                    }
                },
            )
            .as_collection()
            .distinct_total()
            .inner;

        // ---------------------------------------------------------------- Load
        let runtime = context.runtime.clone();
        let warehouse = Arc::clone(&context.warehouse);
        let stats = Arc::clone(&context.stats);
        let shutdown = Arc::clone(&context.shutdown);
        let load_connections = context.load_connections;
        let loaded = rows
            .binary_frontier::<_, CapacityContainerBuilder<Vec<LoadDone>>, _, _, _, _>(
                schema_changes,
                Exchange::new(|row: &Row| row.table.owner_hash()),
                Exchange::new(|change: &(Observation, Time, isize)| (change.0).0.owner_hash()),
                "Load",
                move |_, info| {
                    let activator = scope.worker().sync_activator_for(info.address.to_vec());
                    let (job_sender, job_receiver) = mpsc::unbounded_channel::<LoadJob>();
                    let (done_sender, mut done_receiver) = mpsc::unbounded_channel::<LoadDone>();
                    runtime.spawn(load::run_loader(
                        warehouse,
                        job_receiver,
                        done_sender,
                        activator,
                        stats,
                        shutdown,
                        load_connections,
                    ));

                    let mut stash: BTreeMap<Time, (Capability<Time>, Stash)> = BTreeMap::new();
                    let mut in_flight: HashMap<Time, Capability<Time>> = HashMap::new();
                    move |(rows_input, rows_frontier), (changes_input, changes_frontier), output| {
                        let port = output.output_index();
                        rows_input.for_each_stamp(|stamp, rows| {
                            let Some(capability) = stamp.retain_least(port) else {
                                return;
                            };
                            let entry = stash
                                .entry(*capability.time())
                                .or_insert_with(|| (capability, Stash::default()));
                            for batch in rows {
                                entry.1.add_rows(batch.drain(..));
                            }
                        });
                        changes_input.for_each_stamp(|stamp, changes| {
                            for ((table, column, column_type), time, diff) in
                                changes.flat_map(|batch| batch.drain(..))
                            {
                                // Retractions cannot happen (observations are only ever added);
                                // a column is never dropped.
                                if diff <= 0 {
                                    continue;
                                }
                                let entry = stash.entry(time).or_insert_with(|| {
                                    (stamp.delayed(&time, port), Stash::default())
                                });
                                entry.1.add_observation(table, column, column_type);
                            }
                        });
                        // Hand every batch neither input can add to any more to the loader.
                        while let Some((&time, _)) = stash.first_key_value() {
                            if rows_frontier.less_equal(&time) || changes_frontier.less_equal(&time)
                            {
                                break;
                            }
                            let Some((time, (capability, contents))) = stash.pop_first() else {
                                break;
                            };
                            let job = contents.into_job(BatchId(time));
                            // With the loader's "batch load started", this says whether a
                            // batch waited for its frontier or for the loader.
                            tracing::debug!(
                                batch = time,
                                tables = job.tables.len(),
                                "batch handed to the loader"
                            );
                            if job_sender.send(job).is_err() {
                                // The loader task is gone only when the runtime shuts down.
                                tracing::error!(
                                    batch = time,
                                    "loader task ended; batch not loaded"
                                );
                                continue;
                            }
                            in_flight.insert(time, capability);
                        }
                        while let Ok(done) = done_receiver.try_recv() {
                            if let Some(capability) = in_flight.remove(&done.batch.0) {
                                output.session(&capability).give(done);
                            }
                        }
                    }
                },
            );
        loaded.probe_with(&probe);
    });

    Handles {
        probe,
        pending,
        admit: admit_activator,
    }
}

/// One batch's rows and new observations on the worker that owns their tables.
/// Rows arrive one at a time, so the table map uses foldhash (SipHash of every row's
/// table name was a visible share of the worker's time).
#[derive(Default)]
struct Stash {
    tables: HashMap<TableName, TableStash, foldhash::fast::RandomState>,
}

/// A table's rows and new column observations in one batch.
type TableStash = (Vec<Row>, Vec<(ColumnName, ColumnType)>);

impl Stash {
    fn add_rows(&mut self, rows: impl Iterator<Item = Row>) {
        for row in rows {
            self.tables
                .entry(row.table.clone())
                .or_default()
                .0
                .push(row);
        }
    }

    fn add_observation(&mut self, table: TableName, column: ColumnName, column_type: ColumnType) {
        self.tables
            .entry(table)
            .or_default()
            .1
            .push((column, column_type));
    }

    /// Tables in name order, so a worker loads its tables in the same order every run.
    fn into_job(self, batch: BatchId) -> LoadJob {
        let mut tables: Vec<TableBatch> = self
            .tables
            .into_iter()
            .map(|(table, (rows, mut observed))| {
                observed.sort();
                TableBatch {
                    batch,
                    table,
                    observed,
                    rows,
                }
            })
            .collect();
        tables.sort_by(|a, b| a.table.cmp(&b.table));
        LoadJob { batch, tables }
    }
}
