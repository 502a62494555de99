//! DecodeRoute: decodes and routes the objects Admit stamped, on the worker that admitted
//! them, into rows and each object's distinct observations ([`Routed`]), which [`split`]
//! then parts. [`DecodeQueue`] keeps the objects by batch and decodes them a part at a
//! time.

use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use timely::container::CapacityContainerBuilder;
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::{Operator, OutputBuilder};
use timely::progress::operate::FrontierInterest;

use super::progress::DecodeProgress;
use super::{Context, Time};
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

/// Items DecodeRoute decodes between looks at the clock (a few milliseconds' work).
const DECODE_PART: usize = 256;

/// What DecodeRoute sends: rows for Load, and the distinct observations Observe turns
/// into schema changes. One stream for both, so each row is moved, never cloned: a
/// stream with two consumers would clone every row for the first of them.
#[derive(Debug)]
pub enum Routed {
    Row(Row),
    Observation(Observation),
}

/// The DecodeRoute operator: `admitted` objects decoded and routed, at their batch.
pub fn decode_route<'scope, W: Warehouse>(
    admitted: StreamVec<'scope, Time, ObjectRef>,
    context: &Context<W>,
    progress: &Rc<DecodeProgress>,
) -> StreamVec<'scope, Time, Routed> {
    let mut queue = DecodeQueue::new(
        context.limits,
        context.plan.clone(),
        Rc::clone(progress),
        Arc::clone(&context.stats),
    );
    let scope = admitted.scope();
    admitted.unary::<CapacityContainerBuilder<Vec<Routed>>, _, _, _>(
        Pipeline,
        "DecodeRoute",
        move |_, info| {
            let activator = scope.activator_for(Rc::clone(&info.address));
            move |input, output| {
                let port = output.output_index();
                input.for_each_stamp(|stamp, objects| {
                    let Some(capability) = stamp.retain_least(port) else {
                        return;
                    };
                    let batch = *capability.time();
                    queue.enqueue(batch, capability, objects.flat_map(|batch| batch.drain(..)));
                });
                // Decode for a slice of time, then yield: the frontier can only move
                // between activations, so a backlog decoded in one go would hold every
                // batch's load back until all of it was decoded. Objects are decoded a
                // part at a time, so the slice holds however large an object is.
                let started = Instant::now();
                while started.elapsed() < DECODE_SLICE {
                    match queue.step() {
                        None => break,
                        Some(Step::BatchDecoded) => {}
                        Some(Step::Part(part)) => {
                            let capability = part.capability();
                            output.session(capability).give_iterator(part.into_routed());
                        }
                    }
                }
                queue.release_decoded();
                if !queue.is_idle() {
                    activator.activate();
                }
            }
        },
    )
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
    /// Its messages already counted into [`DecodeProgress`].
    counted: u64,
}

/// One worker's admitted objects awaiting decoding, oldest batch first, each batch with
/// the capability `C` that holds it open until its last object is decoded.
pub struct DecodeQueue<C> {
    queue: BTreeMap<Time, (C, VecDeque<ObjectRef>)>,
    /// The object being decoded: the first of the oldest batch.
    current: Option<Decoding>,
    router: Router,
    /// The rows of the part last decoded.
    rows: Vec<Row>,
    /// The distinct observations of the object being decoded.
    seen: Observer,
    limits: Limits,
    progress: Rc<DecodeProgress>,
    stats: Arc<RunStats>,
}

/// What one [`DecodeQueue::step`] did.
pub enum Step<'a, C> {
    /// The oldest batch's objects were all decoded: it is gone, with its capability.
    BatchDecoded,
    /// Part of an object was decoded.
    Part(Part<'a, C>),
}

/// What a part of an object yields, to send at its batch's capability.
pub struct Part<'a, C> {
    capability: &'a C,
    rows: &'a mut Vec<Row>,
    /// The object's distinct observations, when this part was its last.
    observations: Option<&'a mut Observer>,
}

impl<'a, C> Part<'a, C> {
    pub fn capability(&self) -> &'a C {
        self.capability
    }

    /// The object's distinct observations if it is done, then the part's rows. An
    /// object's observations go out once: sent per part they were sent many times over,
    /// and this process spent 2-3 core-s more per 1M events (BENCHMARKS.md).
    pub fn into_routed(self) -> impl Iterator<Item = Routed> + 'a {
        let observations = self.observations.into_iter().flat_map(Observer::drain);
        observations
            .map(Routed::Observation)
            .chain(self.rows.drain(..).map(Routed::Row))
    }
}

impl<C> DecodeQueue<C> {
    pub fn new(
        limits: Limits,
        plan: Option<Arc<TrackingPlan>>,
        progress: Rc<DecodeProgress>,
        stats: Arc<RunStats>,
    ) -> DecodeQueue<C> {
        DecodeQueue {
            queue: BTreeMap::new(),
            current: None,
            router: Router::with_plan(plan),
            rows: Vec::new(),
            seen: Observer::default(),
            limits,
            progress,
            stats,
        }
    }

    /// Queues `objects` admitted into `batch`, which `capability` holds open.
    pub fn enqueue(
        &mut self,
        batch: Time,
        capability: C,
        objects: impl IntoIterator<Item = ObjectRef>,
    ) {
        self.queue
            .entry(batch)
            .or_insert_with(|| (capability, VecDeque::new()))
            .1
            .extend(objects);
    }

    /// Whether nothing waits to be decoded.
    pub fn is_idle(&self) -> bool {
        self.queue.is_empty()
    }

    /// Decodes the next part of the oldest batch's first object, crediting its messages
    /// to that batch; or, if that batch has no object left, releases it. `None` when
    /// nothing is queued.
    pub fn step(&mut self) -> Option<Step<'_, C>> {
        let mut entry = self.queue.first_entry()?;
        let decoding = match self.current.as_mut() {
            Some(decoding) => decoding,
            None => {
                let Some(object) = entry.get_mut().1.pop_front() else {
                    tracing::debug!(batch = *entry.key(), "batch decoded");
                    entry.remove();
                    return Some(Step::BatchDecoded);
                };
                let rows = ObjectRows::open(&object, &self.limits);
                self.current.insert(Decoding {
                    object,
                    rows,
                    counted: 0,
                })
            }
        };
        let seen = &mut self.seen;
        let more =
            decoding
                .rows
                .next_rows(DECODE_PART, &mut self.router, &mut self.rows, &mut |new| {
                    seen.observe(new)
                });
        let summary = decoding.rows.summary();
        self.progress
            .messages_decoded(*entry.key(), summary.messages - decoding.counted);
        decoding.counted = summary.messages;
        if !more {
            self.stats.object_decoded(&decoding.object.name, &summary);
            self.progress.object_decoded();
            self.current = None;
        }
        Some(Step::Part(Part {
            capability: &entry.into_mut().0,
            rows: &mut self.rows,
            observations: (!more).then_some(&mut self.seen),
        }))
    }

    /// Releases every leading batch whose objects are all decoded, so its capability
    /// goes now, not at the next activation.
    pub fn release_decoded(&mut self) {
        while let Some(entry) = self.queue.first_entry() {
            if !entry.get().1.is_empty() || self.current.is_some() {
                break;
            }
            tracing::debug!(batch = *entry.key(), "batch decoded");
            entry.remove();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Body;

    /// An object of `messages` track calls of `event`, fetched already.
    fn object(name: &str, event: &str, messages: usize) -> ObjectRef {
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
            body: Body::Fetched(bytes::Bytes::from(body)),
            token: 0,
        }
    }

    /// A queue whose capabilities are the batches' own numbers.
    fn queue(progress: &Rc<DecodeProgress>) -> DecodeQueue<Time> {
        DecodeQueue::new(Limits::default(), None, Rc::clone(progress), Arc::default())
    }

    #[derive(Debug, PartialEq)]
    enum Took {
        Part {
            batch: Time,
            rows: usize,
            observations: usize,
        },
        BatchDecoded,
        Idle,
    }

    /// One step, summarised; checks that observations go out before rows.
    fn step(queue: &mut DecodeQueue<Time>) -> Took {
        match queue.step() {
            None => Took::Idle,
            Some(Step::BatchDecoded) => Took::BatchDecoded,
            Some(Step::Part(part)) => {
                let batch = *part.capability();
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

    #[test]
    fn a_large_object_is_decoded_a_part_at_a_time() {
        let progress = Rc::new(DecodeProgress::default());
        let mut queue = queue(&progress);
        progress.object_admitted();
        queue.enqueue(7, 7, [object("big", "Clicked", 600)]);
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
            credited.push(progress.take_decoded_for(7));
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
    }

    #[test]
    fn undecoded_objects_are_counted_down_as_each_finishes() {
        let progress = Rc::new(DecodeProgress::default());
        let mut queue = queue(&progress);
        progress.object_admitted();
        queue.enqueue(7, 7, [object("big", "Clicked", 600)]);
        let Took::Part { .. } = step(&mut queue) else {
            panic!("a part")
        };
        assert_eq!(progress.undecoded(), 1, "the object is not done yet");
        while let Took::Part { .. } = step(&mut queue) {}
        assert_eq!(progress.undecoded(), 0);
    }

    #[test]
    fn batches_are_decoded_oldest_first_and_released_when_done() {
        let progress = Rc::new(DecodeProgress::default());
        let mut queue = queue(&progress);
        queue.enqueue(2, 2, [object("c", "Viewed", 3)]);
        queue.enqueue(1, 1, [object("a", "Clicked", 3)]);
        queue.enqueue(1, 1, [object("b", "Clicked", 2)]);
        let Took::Part {
            batch: 1, rows: 6, ..
        } = step(&mut queue)
        else {
            panic!("object a first")
        };
        assert_eq!(progress.take_decoded_for(1), 3);
        let Took::Part {
            batch: 1, rows: 4, ..
        } = step(&mut queue)
        else {
            panic!("then b")
        };
        // Batch 1's objects are done: it goes before the next step, with its capability.
        queue.release_decoded();
        assert_eq!(queue.queue.keys().collect::<Vec<_>>(), [&2]);
        let Took::Part {
            batch: 2, rows: 6, ..
        } = step(&mut queue)
        else {
            panic!("then c")
        };
        assert_eq!(progress.take_decoded_for(2), 3, "batch 2's messages");
        assert_eq!(step(&mut queue), Took::BatchDecoded);
        assert_eq!(step(&mut queue), Took::Idle);
        assert!(queue.is_idle());
    }

    #[test]
    fn a_batch_waits_for_its_object_in_progress() {
        let progress = Rc::new(DecodeProgress::default());
        let mut queue = queue(&progress);
        queue.enqueue(1, 1, [object("big", "Clicked", 600)]);
        queue.enqueue(2, 2, [object("c", "Viewed", 1)]);
        step(&mut queue);
        queue.release_decoded();
        assert_eq!(queue.queue.len(), 2, "batch 1 still decoding");
    }
}
