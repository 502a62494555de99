//! dataflow: wires the operators. No business logic lives here or in an operator's
//! closure: each operator's file holds its decisions in a plain struct, unit-tested
//! without timely (`admit::Admission`, `decode_route::DecodeQueue`, `load::LoadQueue`),
//! and calls the stages' own modules for the data.
//!
//! ```text
//!  lister task (tokio) ──ObjectRef, bounded channel + SyncActivator──┐
//!                                                                    ▼
//!  Admit (source, one per worker) ◄──────────────┐  stamps objects with the worker's
//!    │ ObjectRef @ admitted     ▲ decoded counts │  BatchId, closes batches on the clock
//!    ▼                          ▼ open batch,    │  or when the input decoded into them
//!                                 its room,      │  fills them, stops admitting when too
//!                                 in-flight room │  many batches are unacked or decoding
//!  DecodeRoute (unary, pipeline) ────────────────┘  is DECODE_AHEAD objects behind
//!    │ Routed @ the batch open      source::ObjectRows → route::Router, a part at a time,
//!    │ when each part is decoded    each part no larger than the open batch still takes:
//!    │ (Row | Observation)          an object larger than a batch spans several;
//!    ▼                              rejections become `_rejections` rows; the distinct
//!                                   (table, column, type) of each object in each batch
//!  Split ─────────────► Observe (unary, pipeline)   distinct observations per batch
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
//!
//! `DecodeProgress` (`progress.rs`) is the one edge that is not a stream: a handle Admit
//! and DecodeRoute share on a worker. DecodeRoute tells Admit the messages and bytes it
//! decoded into a batch (for `max_rows` and `max_bytes`) and the objects admitted but
//! not yet decoded (for `DECODE_AHEAD`); Admit tells DecodeRoute the batch it has open,
//! what that still takes and whether the batches in flight leave room. Each wakes the
//! other through it.

mod admit;
mod decode_route;
mod load;
mod observe;
mod progress;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

use differential_dataflow::AsCollection;
use differential_dataflow::operators::ThresholdTotal;
use timely::dataflow::ProbeHandle;
use timely::dataflow::operators::Probe;
use timely::scheduling::SyncActivator;
use timely::worker::Worker;

use self::admit::admit;
use self::decode_route::{decode_route, split};
use self::load::load;
use self::observe::observe;
pub use self::progress::AdmitActivator;
use self::progress::DecodeProgress;
use crate::batch::BatchPolicy;
use crate::decode::Limits;
use crate::route::plan::TrackingPlan;
use crate::shutdown::Shutdown;
use crate::source::{Inbox, ObjectRef};
use crate::telemetry::RunStats;
use crate::warehouse::Warehouse;

/// The dataflow's timestamp: a [`BatchId`](crate::batch::BatchId)'s number.
pub type Time = u64;

/// The batches DecodeRoute sent rows at on this worker, awaiting acknowledgement, each
/// with the objects whose last part went out at it (possibly none: a batch may hold only
/// a middle part of an object larger than a batch). An object is acknowledged with the
/// batch of its last part, so only once all of it has committed.
pub type Pending = Rc<RefCell<BTreeMap<Time, Vec<ObjectRef>>>>;

/// What every worker of a process shares.
pub struct Context<W: Warehouse> {
    pub runtime: tokio::runtime::Handle,
    pub warehouse: Arc<W>,
    pub policy: BatchPolicy,
    /// Stop admitting while closed batches worth this many full ones await
    /// acknowledgement on the worker (see `Admission`).
    pub max_in_flight: usize,
    /// Warehouse connections per worker's loader.
    pub load_connections: usize,
    pub limits: Limits,
    /// The tracking plan route applies, if any.
    pub plan: Option<Arc<TrackingPlan>>,
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
    objects: Inbox,
    register: impl FnOnce(SyncActivator),
) -> Handles {
    let probe = ProbeHandle::new();
    let pending: Pending = Rc::default();
    let admit_activator: AdmitActivator = Rc::default();
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
        let (rows, observations) = split(decode_route(admitted, context, &progress, &pending));
        let schema_changes = observe(observations).as_collection().distinct_total().inner;
        load(rows, schema_changes, context).probe_with(&probe);
    });

    Handles {
        probe,
        pending,
        admit: admit_activator,
    }
}
