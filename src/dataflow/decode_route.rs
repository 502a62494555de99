//! DecodeRoute: decodes and routes the objects Admit stamped, on the worker that admitted
//! them, into rows and each object's distinct observations ([`Routed`]), which [`split`]
//! then parts. [`DecodeQueue`] holds the objects and decodes them a part at a time, each
//! part into the batch Admit has open when it is decoded, so an object larger than a
//! batch spans several.

use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use timely::container::CapacityContainerBuilder;
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::{Operator, OutputBuilder};
use timely::progress::operate::FrontierInterest;

use super::progress::{DecodeProgress, Decoded};
use super::{Context, Pending, Time};
use crate::columns::{Observation, Observer};
use crate::decode::Limits;
use crate::route::plan::TrackingPlan;
use crate::route::{Router, Row};
use crate::source::{ObjectRef, ObjectRows};
use crate::telemetry::RunStats;
use crate::warehouse::Warehouse;

/// How long DecodeRoute decodes before it yields to the rest of the worker (and lets
/// finished batches' frontier move on to Load).
const DECODE_SLICE: Duration = Duration::from_millis(20);

/// Items DecodeRoute decodes between looks at the clock (a few milliseconds' work), at
/// most: a part never asks for more messages than the open batch still takes.
const DECODE_PART: usize = 256;

/// What DecodeRoute sends: rows for Load, and the distinct observations Observe turns
/// into schema changes. One stream for both, so each row is moved, never cloned: a
/// stream with two consumers would clone every row for the first of them.
#[derive(Debug)]
pub enum Routed {
    Row(Row),
    Observation(Observation),
}

/// The DecodeRoute operator: `admitted` objects decoded and routed, each part at the
/// batch Admit had open when it was decoded.
///
/// It holds one capability, at the batch everything it holds belongs to
/// ([`DecodeQueue::batch`]): that is Admit's open batch, or the batch an object was
/// admitted into until DecodeRoute next runs. It moves the capability up as Admit opens batches, so a batch's
/// frontier passes once Admit has closed it and DecodeRoute has moved past it, that is
/// once every row of it is sent, and never while the rest of an object may still go
/// out at it.
pub fn decode_route<'scope, W: Warehouse>(
    admitted: StreamVec<'scope, Time, ObjectRef>,
    context: &Context<W>,
    progress: &Rc<DecodeProgress>,
    pending: &Pending,
) -> StreamVec<'scope, Time, Routed> {
    let mut queue = DecodeQueue::new(
        context.limits,
        context.plan.clone(),
        Rc::clone(progress),
        Rc::clone(pending),
        Arc::clone(&context.stats),
    );
    let progress = Rc::clone(progress);
    let shutdown = Arc::clone(&context.shutdown);
    let scope = admitted.scope();
    admitted.unary::<CapacityContainerBuilder<Vec<Routed>>, _, _, _>(
        Pipeline,
        "DecodeRoute",
        move |_, info| {
            let activator = scope.activator_for(Rc::clone(&info.address));
            progress.set_decoder(scope.activator_for(Rc::clone(&info.address)));
            let mut held: Option<Capability<Time>> = None;
            move |input, output| {
                let port = output.output_index();
                input.for_each_stamp(|stamp, objects| {
                    let Some(capability) = stamp.retain_least(port) else {
                        return;
                    };
                    let batch = *capability.time();
                    // Keep the earlier capability: everything held goes out at or after it.
                    if held.as_ref().is_none_or(|held| batch < *held.time()) {
                        held = Some(capability);
                    }
                    queue.enqueue(batch, objects.flat_map(|batch| batch.drain(..)));
                });
                if shutdown.is_requested() {
                    // Stop at a part boundary: what is not wholly decoded stays
                    // unacknowledged and is read again after a restart.
                    if let (Some(part), Some(capability)) = (queue.abandon(), held.as_mut()) {
                        advance(capability, part.batch());
                        output
                            .session(&*capability)
                            .give_iterator(part.into_routed());
                    }
                    held = None;
                    return;
                }
                // Decode for a slice of time, then yield: the frontier can only move
                // between activations, so a backlog decoded in one go would hold every
                // batch's load back until all of it was decoded. Objects are decoded a
                // part at a time, so the slice holds however large an object is.
                let started = Instant::now();
                let mut more = false;
                while let Some(capability) = held.as_mut() {
                    if started.elapsed() >= DECODE_SLICE {
                        more = true;
                        break;
                    }
                    match queue.step() {
                        Step::Idle | Step::Waiting => break,
                        Step::Part(part) => {
                            advance(capability, part.batch());
                            output
                                .session(&*capability)
                                .give_iterator(part.into_routed());
                        }
                    }
                }
                // Move the capability up to where the queue is, even when it waits:
                // batches Admit closed meanwhile must be able to load, or waiting for
                // their acknowledgement would wait forever.
                match (queue.batch(), held.as_mut()) {
                    (None, _) => held = None,
                    (Some(batch), Some(capability)) => advance(capability, batch),
                    (Some(_), None) => {}
                }
                if more {
                    activator.activate();
                }
            }
        },
    )
}

/// Moves `capability` up to `batch`.
fn advance(capability: &mut Capability<Time>, batch: Time) {
    if *capability.time() < batch {
        capability.downgrade(&batch);
    }
}

/// Parts DecodeRoute's output into rows and observations, moving every record.
pub fn split<'scope>(
    routed: StreamVec<'scope, Time, Routed>,
) -> (
    StreamVec<'scope, Time, Row>,
    StreamVec<'scope, Time, Observation>,
) {
    let mut builder = OperatorBuilder::new("Split".to_owned(), routed.scope());
    let mut input = builder.new_input(routed, Pipeline);
    builder.set_notify_for(0, FrontierInterest::Never);
    let (rows_output, rows) = builder.new_output();
    let (observations_output, observations) = builder.new_output();
    let mut rows_output = OutputBuilder::<_, CapacityContainerBuilder<Vec<Row>>>::from(rows_output);
    let mut observations_output =
        OutputBuilder::<_, CapacityContainerBuilder<Vec<Observation>>>::from(observations_output);
    builder.build(move |_| {
        move |_| {
            let mut rows_output = rows_output.activate();
            let mut observations_output = observations_output.activate();
            input.for_each_stamp(|stamp, data| {
                let mut rows = rows_output.session(&stamp);
                let mut observations = observations_output.session(&stamp);
                for routed in data.flat_map(|batch| batch.drain(..)) {
                    match routed {
                        Routed::Row(row) => rows.give(row),
                        Routed::Observation(observation) => observations.give(observation),
                    }
                }
            });
        }
    });
    (rows, observations)
}

/// An object DecodeRoute is part way through.
struct Decoding {
    object: ObjectRef,
    rows: ObjectRows,
    /// Its input already counted into [`DecodeProgress`].
    counted: Decoded,
}

/// One worker's admitted objects awaiting decoding, in admission order, all at one
/// batch: the batch Admit has open, which every part decoded goes out at.
///
/// **Invariant:** an object is put into `pending` under the batch its last part went
/// out at, and only once that part has: so it is acknowledged only once every part of it
/// has committed. Every batch a part goes out at has an entry in `pending`, with or
/// without objects, so Admit counts it in flight until it is acknowledged. An object
/// not wholly decoded is never in `pending`.
pub struct DecodeQueue {
    /// Admitted objects not started yet, oldest first.
    waiting: VecDeque<ObjectRef>,
    /// The object being decoded: the oldest.
    current: Option<Decoding>,
    /// The batch the objects held here are at: their next part goes out at it (once
    /// moved up to Admit's open batch). `None` while nothing is held.
    batch: Option<Time>,
    router: Router,
    /// The rows of the part last decoded.
    rows: Vec<Row>,
    /// The distinct observations of the rows of the current object sent at `batch`:
    /// they go out at `batch` with the object's last part there, before it moves on.
    seen: Observer,
    /// Whether rows of the current object went out at `batch` without their
    /// observations.
    unobserved: bool,
    limits: Limits,
    progress: Rc<DecodeProgress>,
    pending: Pending,
    stats: Arc<RunStats>,
}

/// What one [`DecodeQueue::step`] did.
pub enum Step<'a> {
    /// Nothing is held: the operator drops its capability.
    Idle,
    /// Objects are held but may not be decoded now: the open batch is full or the
    /// in-flight bound leaves no room. Admit wakes DecodeRoute when that changes.
    Waiting,
    /// Part of an object was decoded, or its observations at a batch it moves on from.
    Part(Part<'a>),
}

/// What a part of an object yields, to send at its batch.
pub struct Part<'a> {
    batch: Time,
    rows: &'a mut Vec<Row>,
    /// The object's distinct observations at `batch`, when it is done there (its last
    /// part, or it moves on to the next batch).
    observations: Option<&'a mut Observer>,
}

impl<'a> Part<'a> {
    /// The batch to send the part at.
    pub fn batch(&self) -> Time {
        self.batch
    }

    /// The object's distinct observations if it is done at the batch, then the part's
    /// rows. An object's observations go out once per batch it spans: sent per part they
    /// were sent many times over, and this process spent 2-3 core-s more per 1M events
    /// (BENCHMARKS.md); sent only with its last part, a batch before it would load rows
    /// into columns no batch had created yet.
    pub fn into_routed(self) -> impl Iterator<Item = Routed> + 'a {
        let observations = self.observations.into_iter().flat_map(Observer::drain);
        observations
            .map(Routed::Observation)
            .chain(self.rows.drain(..).map(Routed::Row))
    }
}

impl DecodeQueue {
    pub fn new(
        limits: Limits,
        plan: Option<Arc<TrackingPlan>>,
        progress: Rc<DecodeProgress>,
        pending: Pending,
        stats: Arc<RunStats>,
    ) -> DecodeQueue {
        DecodeQueue {
            waiting: VecDeque::new(),
            current: None,
            batch: None,
            router: Router::with_plan(plan),
            rows: Vec::new(),
            seen: Observer::default(),
            unobserved: false,
            limits,
            progress,
            pending,
            stats,
        }
    }

    /// Queues `objects` admitted into `batch`.
    pub fn enqueue(&mut self, batch: Time, objects: impl IntoIterator<Item = ObjectRef>) {
        let before = self.waiting.len();
        self.waiting.extend(objects);
        if self.waiting.len() > before {
            self.batch = Some(self.batch.map_or(batch, |held| held.min(batch)));
        }
    }

    /// The batch everything held is at (the operator's capability), `None` if nothing
    /// is held.
    pub fn batch(&self) -> Option<Time> {
        self.batch
    }

    /// Moves up to Admit's open batch, then decodes the next part into it if Admit lets
    /// it: about as many items as the batch still takes, at most [`DECODE_PART`].
    pub fn step(&mut self) -> Step<'_> {
        let Some(batch) = self.batch else {
            return Step::Idle;
        };
        if self.current.is_none() && self.waiting.is_empty() {
            self.batch = None;
            return Step::Idle;
        }
        let open = self.progress.open_batch();
        if batch < open {
            // Admit closed the batch: the rest goes out at the open one. The current
            // object's observations at the old batch go out there first.
            self.batch = Some(open);
            if self.unobserved {
                self.unobserved = false;
                return Step::Part(Part {
                    batch,
                    rows: &mut self.rows,
                    observations: Some(&mut self.seen),
                });
            }
        }
        let batch = self.batch.unwrap_or(open);
        let Some(allowance) = self.progress.allowance() else {
            self.progress.wait();
            return Step::Waiting;
        };
        let decoding = match self.current.as_mut() {
            Some(decoding) => decoding,
            None => {
                let Some(object) = self.waiting.pop_front() else {
                    return Step::Idle;
                };
                let rows = ObjectRows::open(&object, &self.limits);
                self.current.insert(Decoding {
                    object,
                    rows,
                    counted: Decoded::default(),
                })
            }
        };
        let items = usize::try_from(allowance).map_or(DECODE_PART, |left| left.min(DECODE_PART));
        let more = decoding.rows.next_rows(
            items,
            &mut self.router,
            &mut self.rows,
            Some(&mut self.seen),
        );
        let summary = decoding.rows.summary();
        let counted = Decoded {
            messages: summary.messages,
            bytes: summary.bytes,
        };
        self.progress.decoded(
            batch,
            Decoded {
                messages: counted.messages - decoding.counted.messages,
                bytes: counted.bytes.saturating_sub(decoding.counted.bytes),
            },
        );
        decoding.counted = counted;
        self.unobserved = more;
        let mut pending = self.pending.borrow_mut();
        let objects = pending.entry(batch).or_default();
        if !more {
            // The plan's refusals are rejections too: the run's totals count them.
            let mut summary = summary;
            summary.add_rejections(&self.router.take_refusals());
            self.stats.object_decoded(&decoding.object.name, &summary);
            if let Some(done) = self.current.take() {
                objects.push(done.object);
            }
            self.progress.object_decoded();
        }
        Step::Part(Part {
            batch,
            rows: &mut self.rows,
            observations: (!more).then_some(&mut self.seen),
        })
    }

    /// Drops everything held (at shutdown). The object part way through and those not
    /// started are never put into `pending`, so they stay unacknowledged and are read
    /// again from the start after a restart; the parts already sent load, and load again
    /// then as no-ops (the merge on message id). Returns the current object's
    /// observations at its batch, which its rows sent there need.
    pub fn abandon(&mut self) -> Option<Part<'_>> {
        if !self.waiting.is_empty() || self.current.is_some() {
            tracing::info!(
                objects = self.waiting.len() + usize::from(self.current.is_some()),
                "stopping: objects not wholly decoded are left unacknowledged"
            );
        }
        self.waiting.clear();
        self.current = None;
        let batch = self.batch.take()?;
        if !std::mem::take(&mut self.unobserved) {
            return None;
        }
        Some(Part {
            batch,
            rows: &mut self.rows,
            observations: Some(&mut self.seen),
        })
    }
}

/// An object of `messages` track calls of `event`, fetched already: for the tests of
/// DecodeRoute's and Admit's state machines.
#[cfg(test)]
pub fn track_calls(name: &str, event: &str, messages: usize) -> ObjectRef {
    let body: String = (0..messages)
        .map(|i| {
            format!(
                r#"{{"type":"track","event":"{event}","messageId":"{name}-{i}","userId":"u","properties":{{"n":{i}}}}}"#
            ) + "\n"
        })
        .collect();
    ObjectRef {
        name: Arc::from(name),
        bytes: body.len() as u64,
        body: crate::source::Body::Fetched(bytes::Bytes::from(body)),
        token: 0,
        written: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataflow::progress::OpenBatch;

    fn object(name: &str, event: &str, messages: usize) -> ObjectRef {
        track_calls(name, event, messages)
    }

    /// A queue on `progress`, putting decoded objects into `pending`.
    fn queue(progress: &Rc<DecodeProgress>, pending: &Pending) -> DecodeQueue {
        DecodeQueue::new(
            Limits::default(),
            None,
            Rc::clone(progress),
            Rc::clone(pending),
            Arc::default(),
        )
    }

    /// What Admit publishes: `batch` is open and takes `room` more messages; the
    /// in-flight bound leaves room or not.
    fn open(progress: &DecodeProgress, batch: Time, room: u64, in_flight_room: bool) {
        progress.publish(OpenBatch {
            batch,
            room: Decoded {
                messages: room,
                bytes: u64::MAX,
            },
            in_flight_room,
        });
    }

    #[derive(Debug, PartialEq)]
    enum Took {
        Part {
            batch: Time,
            rows: usize,
            observations: usize,
        },
        Waiting,
        Idle,
    }

    /// One step, summarised; checks that observations go out before rows.
    fn step(queue: &mut DecodeQueue) -> Took {
        match queue.step() {
            Step::Idle => Took::Idle,
            Step::Waiting => Took::Waiting,
            Step::Part(part) => {
                let batch = part.batch();
                let (mut rows, mut observations) = (0, 0);
                for routed in part.into_routed() {
                    match routed {
                        Routed::Row(_) => rows += 1,
                        Routed::Observation(_) => {
                            assert_eq!(rows, 0, "observations go out before the rows");
                            observations += 1;
                        }
                    }
                }
                Took::Part {
                    batch,
                    rows,
                    observations,
                }
            }
        }
    }

    /// The names of the objects awaiting acknowledgement, by batch.
    fn acknowledged_with(pending: &Pending) -> Vec<(Time, Vec<String>)> {
        pending
            .borrow()
            .iter()
            .map(|(batch, objects)| {
                let names = objects.iter().map(|object| object.name.to_string());
                (*batch, names.collect())
            })
            .collect()
    }

    #[test]
    fn a_large_object_is_decoded_a_part_at_a_time() {
        let (progress, pending) = (Rc::new(DecodeProgress::default()), Pending::default());
        let mut queue = queue(&progress, &pending);
        open(&progress, 7, u64::MAX, true);
        progress.object_admitted();
        queue.enqueue(7, [object("big", "Clicked", 600)]);
        let mut parts = Vec::new();
        let mut credited = Vec::new();
        while let Took::Part {
            batch,
            rows,
            observations,
        } = step(&mut queue)
        {
            assert_eq!(batch, 7);
            parts.push((rows, observations));
            credited.push(progress.take_decoded_for(7).messages);
        }
        assert!(parts.len() >= 3, "600 messages in parts of 256: {parts:?}");
        assert!(
            credited
                .iter()
                .all(|&messages| messages <= DECODE_PART as u64)
        );
        assert_eq!(credited.iter().sum::<u64>(), 600, "{credited:?}");
        // A track call is a `tracks` row and an event table row.
        assert_eq!(parts.iter().map(|(rows, _)| rows).sum::<usize>(), 1200);
        // Observations go out once, with the last part.
        let (last, earlier) = parts.split_last().unwrap();
        assert!(last.1 > 0);
        assert!(earlier.iter().all(|&(_, observations)| observations == 0));
        assert_eq!(acknowledged_with(&pending), [(7, vec!["big".into()])]);
        assert_eq!(queue.batch(), None, "nothing held");
    }

    #[test]
    fn undecoded_objects_are_counted_down_as_each_finishes() {
        let (progress, pending) = (Rc::new(DecodeProgress::default()), Pending::default());
        let mut queue = queue(&progress, &pending);
        open(&progress, 7, u64::MAX, true);
        progress.object_admitted();
        queue.enqueue(7, [object("big", "Clicked", 600)]);
        let Took::Part { .. } = step(&mut queue) else {
            panic!("a part")
        };
        assert_eq!(progress.undecoded(), 1, "the object is not done yet");
        while let Took::Part { .. } = step(&mut queue) {}
        assert_eq!(progress.undecoded(), 0);
    }

    #[test]
    fn objects_are_decoded_in_order_into_the_batch_open_when_they_are() {
        let (progress, pending) = (Rc::new(DecodeProgress::default()), Pending::default());
        let mut queue = queue(&progress, &pending);
        open(&progress, 1, u64::MAX, true);
        queue.enqueue(1, [object("a", "Clicked", 3), object("b", "Clicked", 2)]);
        assert_eq!(queue.batch(), Some(1));
        let Took::Part {
            batch: 1, rows: 6, ..
        } = step(&mut queue)
        else {
            panic!("object a first")
        };
        assert_eq!(progress.take_decoded_for(1).messages, 3);
        // Admit closes batch 1 before b is started: b goes out at batch 2, with c.
        open(&progress, 2, u64::MAX, true);
        queue.enqueue(2, [object("c", "Viewed", 3)]);
        let Took::Part {
            batch: 2, rows: 4, ..
        } = step(&mut queue)
        else {
            panic!("then b")
        };
        let Took::Part {
            batch: 2, rows: 6, ..
        } = step(&mut queue)
        else {
            panic!("then c")
        };
        assert_eq!(progress.take_decoded_for(2).messages, 5, "b's and c's");
        assert_eq!(step(&mut queue), Took::Idle);
        assert_eq!(queue.batch(), None);
        assert_eq!(
            acknowledged_with(&pending),
            [(1, vec!["a".into()]), (2, vec!["b".into(), "c".into()])]
        );
    }

    /// An object larger than a batch: the open batch takes 250 messages, and the rest
    /// goes out at the batches Admit opens after it. The object is acknowledged with its
    /// last part's batch; every batch it spans awaits acknowledgement, and each gets the
    /// observations of the rows it holds.
    #[test]
    fn an_object_larger_than_a_batch_spans_batches_and_is_acknowledged_with_its_last() {
        let (progress, pending) = (Rc::new(DecodeProgress::default()), Pending::default());
        let mut queue = queue(&progress, &pending);
        open(&progress, 7, 250, true);
        progress.object_admitted();
        queue.enqueue(7, [object("big", "Clicked", 600)]);
        let part = |batch, messages: usize, observations| Took::Part {
            batch,
            rows: 2 * messages,
            observations,
        };
        assert_eq!(
            step(&mut queue),
            part(7, 250, 0),
            "no more than the batch takes"
        );
        assert_eq!(step(&mut queue), Took::Waiting, "batch 7 is full");
        assert_eq!(progress.take_decoded_for(7).messages, 250);
        assert_eq!(
            acknowledged_with(&pending),
            [(7, vec![])],
            "in flight, not done"
        );
        // Admit closes batch 7 and opens 8. First the observations of batch 7's rows
        // (the `tracks` and event tables' columns), at 7; then the next part, at 8.
        open(&progress, 8, 250, true);
        let Took::Part {
            batch: 7,
            rows: 0,
            observations,
        } = step(&mut queue)
        else {
            panic!("batch 7's observations")
        };
        assert!(observations > 0);
        assert_eq!(queue.batch(), Some(8), "the capability moves up to 8");
        assert_eq!(step(&mut queue), part(8, 250, 0));
        assert_eq!(step(&mut queue), Took::Waiting);
        assert_eq!(progress.take_decoded_for(8).messages, 250);
        open(&progress, 9, 250, true);
        assert!(matches!(
            step(&mut queue),
            Took::Part {
                batch: 8,
                rows: 0,
                ..
            }
        ));
        let Took::Part {
            batch: 9,
            rows: 200,
            observations,
        } = step(&mut queue)
        else {
            panic!("the last 100 messages, at 9")
        };
        assert!(observations > 0, "with the last part");
        assert_eq!(progress.undecoded(), 0);
        assert_eq!(
            acknowledged_with(&pending),
            [(7, vec![]), (8, vec![]), (9, vec!["big".into()])]
        );
        assert_eq!(step(&mut queue), Took::Idle);
    }

    #[test]
    fn decoding_waits_for_in_flight_room_but_moves_up_with_the_open_batch() {
        let (progress, pending) = (Rc::new(DecodeProgress::default()), Pending::default());
        let mut queue = queue(&progress, &pending);
        open(&progress, 7, 100, true);
        queue.enqueue(7, [object("a", "Clicked", 300)]);
        assert!(matches!(step(&mut queue), Took::Part { batch: 7, .. }));
        // Batch 7 closes with no room left for another in flight: the queue waits, but
        // its capability moves up to 8, so batch 7 can load and make room.
        progress.take_decoded_for(7);
        open(&progress, 8, 100, false);
        assert!(matches!(
            step(&mut queue),
            Took::Part {
                batch: 7,
                rows: 0,
                ..
            }
        ));
        assert_eq!(step(&mut queue), Took::Waiting);
        assert_eq!(queue.batch(), Some(8));
        // The window moves on while it waits: so does the queue (no rows went out at 8,
        // so no observations either).
        open(&progress, 9, 100, false);
        assert_eq!(step(&mut queue), Took::Waiting);
        assert_eq!(queue.batch(), Some(9));
        open(&progress, 9, 100, true);
        assert!(matches!(
            step(&mut queue),
            Took::Part {
                batch: 9,
                rows: 200,
                ..
            }
        ));
    }

    #[test]
    fn abandoning_leaves_unfinished_objects_unacknowledged() {
        let (progress, pending) = (Rc::new(DecodeProgress::default()), Pending::default());
        let mut queue = queue(&progress, &pending);
        open(&progress, 7, u64::MAX, true);
        queue.enqueue(7, [object("a", "Clicked", 600), object("b", "Viewed", 1)]);
        assert!(matches!(step(&mut queue), Took::Part { batch: 7, .. }));
        let Some(part) = queue.abandon() else {
            panic!("the rows sent need their observations")
        };
        assert_eq!(part.batch(), 7);
        let routed: Vec<Routed> = part.into_routed().collect();
        assert!(!routed.is_empty());
        assert!(
            routed
                .iter()
                .all(|routed| matches!(routed, Routed::Observation(_)))
        );
        assert_eq!(
            acknowledged_with(&pending),
            [(7, vec![])],
            "neither a nor b"
        );
        assert_eq!(queue.batch(), None);
        assert_eq!(step(&mut queue), Took::Idle);
        assert!(queue.abandon().is_none());
    }
}
