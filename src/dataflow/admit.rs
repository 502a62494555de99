//! Admit: the dataflow's source on each worker. It takes objects from the worker's
//! [`Inbox`] and stamps each with the worker's open batch. [`Admission`] decides when a
//! batch closes and when to stop taking input.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::generic::source;
use timely::dataflow::{Scope, StreamVec};
use timely::scheduling::SyncActivator;

use super::progress::{AdmitActivator, DecodeProgress, Decoded, OpenBatch};
use super::{Context, Pending, Time};
use crate::batch::{BatchClock, BatchPolicy, RAMP_BATCHES, now_ms};
use crate::source::{Inbox, InboxEmpty, ObjectRef};
use crate::warehouse::Warehouse;

/// How many admitted objects may wait undecoded on a worker. Admit takes the next object
/// only when decoding has caught up this far: an admitted object waits in DecodeRoute
/// with its bytes (an S3 object's whole stored body), and without the limit a backlog
/// present at start was admitted whole at once. Two keeps the decoder fed while Admit
/// runs between objects.
pub const DECODE_AHEAD: usize = 2;

/// Objects Admit takes in one activation before it yields and reschedules itself.
const ADMIT_BUDGET: usize = 256;

/// The Admit operator: objects from `objects`, each at the batch it was admitted into.
/// Its activator goes to `register` (for the lister and the signal handler) and into
/// `activator` (for DecodeRoute and the worker loop).
pub fn admit<'scope, W: Warehouse>(
    scope: Scope<'scope, Time>,
    context: &Context<W>,
    mut objects: Inbox,
    pending: &Pending,
    progress: &Rc<DecodeProgress>,
    activator: &AdmitActivator,
    register: impl FnOnce(SyncActivator),
) -> StreamVec<'scope, Time, ObjectRef> {
    let pending = Rc::clone(pending);
    let progress = Rc::clone(progress);
    let slot = Rc::clone(activator);
    let shutdown = Arc::clone(&context.shutdown);
    let stats = Arc::clone(&context.stats);
    let (policy, max_in_flight) = (context.policy, context.max_in_flight);
    source::<_, CapacityContainerBuilder<Vec<ObjectRef>>, _, _>(
        scope,
        "Admit",
        move |capability, info| {
            let activator = scope.activator_for(Rc::clone(&info.address));
            register(scope.worker().sync_activator_for(info.address.to_vec()));
            *slot.borrow_mut() = Some(scope.activator_for(Rc::clone(&info.address)));
            let mut admission = Admission::new(
                policy,
                max_in_flight,
                now_ms(),
                pending,
                Rc::clone(&progress),
            );
            let mut capability: Option<Capability<Time>> = Some(capability);
            let mut input_closed = false;
            let mut timer_for: Option<u64> = None;
            move |output| {
                let Some(held) = capability.as_mut() else {
                    return;
                };
                if shutdown.is_requested() {
                    // Close the open batch: dropping the capability lets the frontier
                    // pass it, so it loads and is acknowledged, and the dataflow ends.
                    // DecodeRoute stops too (it may be waiting for room that never
                    // comes), leaving what it had not finished unacknowledged.
                    progress.wake_decoder();
                    capability = None;
                    return;
                }
                // Advance the batch whether or not anything is admitted: every worker
                // must move its capability on or the frontier stalls everywhere.
                advance(held, admission.tick(now_ms()));
                let mut budget = ADMIT_BUDGET;
                // Input left here waits in the channel, the lister, and SQS. The worker
                // loop wakes this operator when a batch is acknowledged, DecodeRoute
                // after each object and when the open batch is full.
                while !input_closed && budget > 0 && admission.may_admit() {
                    match objects.try_recv() {
                        Ok(object) => {
                            budget -= 1;
                            let batch = admission.admit();
                            debug_assert_eq!(batch, *held.time());
                            output.session(&*held).give(object);
                            stats.object_admitted();
                        }
                        Err(InboxEmpty::Empty) => break,
                        Err(InboxEmpty::Closed) => input_closed = true,
                    }
                }
                // With the input ended, the batches stay Admit's to close until the
                // last object admitted is decoded: the rest of an object larger than a
                // batch goes into batches opened after its input ended.
                if input_closed && admission.all_decoded() {
                    capability = None;
                    return;
                }
                if budget == 0 {
                    activator.activate();
                }
                // Wake at the window's end even when nothing arrives, so every worker
                // advances and the frontier moves.
                let end = admission.window_end_ms();
                if timer_for != Some(end) {
                    activator
                        .activate_after(Duration::from_millis(end.saturating_sub(now_ms()).max(1)));
                    timer_for = Some(end);
                }
            }
        },
    )
}

/// Moves the held capability up to `batch`.
fn advance(held: &mut Capability<Time>, batch: Time) {
    if *held.time() < batch {
        held.downgrade(&batch);
    }
}

/// One worker's admission decisions: which batch an object joins, when a batch closes
/// (on the clock, or when the messages or bytes decoded into it fill it, smaller during
/// the start-up ramp), and whether to take more input at all. What it decides about the
/// open batch it publishes to DecodeRoute through [`DecodeProgress`], which decodes
/// into that batch and no further than it takes.
pub struct Admission {
    clock: BatchClock,
    /// Closed batches' fill (a fraction of a full batch), for the in-flight bound;
    /// pruned as batches are acknowledged.
    fills: BTreeMap<Time, f64>,
    /// The batches DecodeRoute sent rows at, awaiting acknowledgement; the worker loop
    /// removes a batch once acknowledged.
    pending: Pending,
    progress: Rc<DecodeProgress>,
    /// Stop admitting and decoding while closed batches worth this many full ones await
    /// their commit.
    max_in_flight: usize,
}

impl Admission {
    pub fn new(
        policy: BatchPolicy,
        max_in_flight: usize,
        now_ms: u64,
        pending: Pending,
        progress: Rc<DecodeProgress>,
    ) -> Admission {
        let admission = Admission {
            clock: BatchClock::new(policy, now_ms),
            fills: BTreeMap::new(),
            pending,
            progress,
            max_in_flight,
        };
        admission.publish();
        admission
    }

    /// The open batch: what an object admitted now is stamped with, and where every
    /// part decoded now goes.
    pub fn batch(&self) -> Time {
        self.clock.current().0
    }

    /// When the open batch's window ends, in ms since the Unix epoch.
    pub fn window_end_ms(&self) -> u64 {
        self.clock.window_end_ms()
    }

    /// Brings the open batch up to date at `now_ms`: closes it if its window has ended,
    /// counts the input decoded into it since the last tick (only its own: a closed
    /// batch's late input fills no other), and closes it if that fills it. Then tells
    /// DecodeRoute the open batch, what it takes, and whether the in-flight bound leaves
    /// room. Returns the open batch.
    pub fn tick(&mut self, now_ms: u64) -> Time {
        self.clock.tick(now_ms);
        let decoded = self.progress.take_decoded_for(self.batch());
        self.clock.admit(decoded.messages, decoded.bytes);
        if self.clock.is_full() {
            self.clock.close_early();
        }
        record_fills(&mut self.fills, &mut self.clock, &self.pending.borrow());
        self.publish();
        self.batch()
    }

    /// Whether to take another object: only while decoding is fewer than
    /// [`DECODE_AHEAD`] objects behind and the batches awaiting their commit leave room
    /// (see [`room_for_more`]; the open batch does not count).
    pub fn may_admit(&self) -> bool {
        self.progress.undecoded() < DECODE_AHEAD && self.room_for_more()
    }

    /// Admits an object into the open batch; returns the batch. It counts toward the
    /// batch as it is decoded, and its rows go out at whichever batch is open when each
    /// part of it is decoded.
    pub fn admit(&mut self) -> Time {
        self.progress.object_admitted();
        self.batch()
    }

    /// Whether every object admitted has been decoded.
    pub fn all_decoded(&self) -> bool {
        self.progress.undecoded() == 0
    }

    fn room_for_more(&self) -> bool {
        room_for_more(
            &self.pending.borrow(),
            &self.fills,
            self.batch(),
            self.max_in_flight,
        )
    }

    fn publish(&self) {
        let (messages, bytes) = self.clock.room();
        self.progress.publish(OpenBatch {
            batch: self.batch(),
            room: Decoded { messages, bytes },
            in_flight_room: self.room_for_more(),
        });
    }
}

/// Notes the fill of batches the clock closed, and forgets acknowledged ones.
fn record_fills(
    fills: &mut BTreeMap<Time, f64>,
    clock: &mut BatchClock,
    pending: &BTreeMap<Time, Vec<ObjectRef>>,
) {
    for (batch, fill) in clock.take_closed() {
        fills.insert(batch.0, fill);
    }
    fills.retain(|batch, _| pending.contains_key(batch));
}

/// Whether Admit may take more input, and DecodeRoute decode more, while the batches in
/// `pending` before `open` await their commit on this worker.
///
/// They are weighed by their fill when they closed, and may add up to `max_in_flight`
/// full batches: the start-up ramp's small batches (an eighth, a quarter and a half) and
/// those a short interval closes early then do not stop decoding while the warehouse has
/// little to do (counting batches, the warehouse idled between loads: BENCHMARKS.md).
/// Their number is capped too, at `max_in_flight +` [`RAMP_BATCHES`]: while
/// the warehouse is down a trickle would otherwise close a tiny batch every interval, and
/// each is a load of its own once it is back (on Redshift, a second a table), where
/// input left in the queue joins whole batches. The open batch does not count: counting
/// it made `max_in_flight = 1` admit one object per worker and batch, a sixth of the
/// throughput.
fn room_for_more(
    pending: &BTreeMap<Time, Vec<ObjectRef>>,
    fills: &BTreeMap<Time, f64>,
    open: Time,
    max_in_flight: usize,
) -> bool {
    let (batches, worth) = in_flight(pending, fills, open);
    batches < max_in_flight + RAMP_BATCHES as usize && worth < max_in_flight as f64
}

/// The closed batches before `open` awaiting their commit on this worker: how many, and
/// how many full batches they are worth (each by its fill when it closed, 1 if unknown).
fn in_flight(
    pending: &BTreeMap<Time, Vec<ObjectRef>>,
    fills: &BTreeMap<Time, f64>,
    open: Time,
) -> (usize, f64) {
    pending
        .range(..open)
        .fold((0, 0.0), |(batches, worth), (batch, _)| {
            (
                batches + 1,
                worth + fills.get(batch).copied().unwrap_or(1.0),
            )
        })
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;
    use crate::dataflow::decode_route::{DecodeQueue, Routed, Step, track_calls};
    use crate::decode::Limits;

    #[test]
    fn in_flight_weighs_pending_batches_by_their_fill() {
        let pending: BTreeMap<Time, Vec<ObjectRef>> = [
            (10, Vec::new()),
            (20, Vec::new()),
            (30, Vec::new()),
            (40, Vec::new()),
        ]
        .into_iter()
        .collect();
        let fills: BTreeMap<Time, f64> = [(10, 0.125), (20, 0.25)].into_iter().collect();
        // Batch 30's fill is unknown and counts as a full batch; the open batch 40 does
        // not count at all.
        assert_eq!(in_flight(&pending, &fills, 40), (3, 1.375));
        assert_eq!(in_flight(&pending, &fills, 30), (2, 0.375));
        assert_eq!(in_flight(&BTreeMap::new(), &fills, 40), (0, 0.0));
        assert!(room_for_more(&pending, &fills, 40, 2));
        assert!(!room_for_more(&pending, &fills, 40, 1));
    }

    #[test]
    fn tiny_batches_are_capped_in_number() {
        let open = 100;
        let pending: BTreeMap<Time, Vec<ObjectRef>> =
            (0..open).map(|batch| (batch, Vec::new())).collect();
        let fills: BTreeMap<Time, f64> = (0..open).map(|batch| (batch, 0.001)).collect();
        let room = |batches: usize| {
            let pending = pending
                .range(open - batches as Time..)
                .map(|(k, v)| (*k, v.clone()));
            room_for_more(&pending.collect(), &fills, open, 2)
        };
        assert!(room(2 + RAMP_BATCHES as usize - 1));
        assert!(
            !room(2 + RAMP_BATCHES as usize),
            "a stalled warehouse stops admission"
        );
    }

    #[test]
    fn fills_are_recorded_at_close_and_forgotten_once_acknowledged() {
        let policy = BatchPolicy {
            interval: Duration::from_secs(60),
            max_rows: 80,
            max_bytes: u64::MAX,
        };
        let mut clock = BatchClock::new(policy, 60_000);
        clock.admit(10, 0);
        assert!(clock.is_full() && clock.close_early());
        let first = 60_000;
        let mut pending: BTreeMap<Time, Vec<ObjectRef>> = BTreeMap::new();
        pending.insert(first, Vec::new());
        let mut fills = BTreeMap::new();
        record_fills(&mut fills, &mut clock, &pending);
        assert_eq!(fills.get(&first), Some(&0.125));
        pending.remove(&first);
        record_fills(&mut fills, &mut clock, &pending);
        assert!(
            fills.is_empty(),
            "acknowledged batches are forgotten: {fills:?}"
        );
    }

    /// The window every test starts in: batch ids are ms, so the first batch is 60_000.
    const START: u64 = 60_000;

    fn admission(max_rows: u64, max_bytes: u64, max_in_flight: usize) -> Admission {
        let policy = BatchPolicy {
            interval: Duration::from_secs(60),
            max_rows,
            max_bytes,
        };
        Admission::new(
            policy,
            max_in_flight,
            START,
            Pending::default(),
            Rc::default(),
        )
    }

    /// DecodeRoute's queue beside `admission`, on the same progress and pending batches.
    fn decode_queue(admission: &Admission) -> DecodeQueue {
        DecodeQueue::new(
            Limits::default(),
            None,
            Rc::clone(&admission.progress),
            Rc::clone(&admission.pending),
            Arc::default(),
        )
    }

    fn messages(messages: u64) -> Decoded {
        Decoded { messages, bytes: 0 }
    }

    /// Admit and DecodeRoute on one worker, without timely: every round Admit ticks and
    /// takes what it may of `backlog`, DecodeRoute takes one step, and `acknowledge`
    /// may remove committed batches from `pending`. The clock stands still, so batches
    /// close only when full. Returns the messages sent at each batch, in batch order,
    /// once the backlog is decoded.
    fn run_backlog(
        admission: &mut Admission,
        backlog: impl IntoIterator<Item = ObjectRef>,
        mut acknowledge: impl FnMut(&Admission),
    ) -> Vec<u64> {
        let mut queue = decode_queue(admission);
        let mut backlog: VecDeque<ObjectRef> = backlog.into_iter().collect();
        let mut sent: BTreeMap<Time, u64> = BTreeMap::new();
        for _ in 0..100_000 {
            admission.tick(START);
            while !backlog.is_empty() && admission.may_admit() {
                let batch = admission.admit();
                queue.enqueue(batch, backlog.pop_front());
            }
            match queue.step() {
                Step::Part(part) => {
                    let batch = part.batch();
                    for routed in part.into_routed() {
                        // One row a message in its event's table, one more in `tracks`.
                        if let Routed::Row(row) = routed
                            && row.table.as_str() != "tracks"
                        {
                            *sent.entry(batch).or_default() += 1;
                        }
                    }
                }
                Step::Idle if backlog.is_empty() => return sent.into_values().collect(),
                Step::Idle | Step::Waiting => {}
            }
            acknowledge(admission);
        }
        panic!("the backlog was never decoded: {sent:?}");
    }

    #[test]
    fn a_backlog_is_admitted_in_batches_of_max_rows() {
        let mut admission = admission(80, u64::MAX, 100);
        let objects = (0..60).map(|i| track_calls(&format!("o{i}"), "Clicked", 10));
        let sizes = run_backlog(&mut admission, objects, |_| {});
        // Past the ramp every batch closes at max_rows exactly (a part never asks for
        // more than the open batch takes); the last holds what is left.
        assert_eq!(sizes[3..], [80, 80, 80, 80, 80, 80, 50]);
    }

    #[test]
    fn the_first_three_batches_ramp_up_to_max_rows() {
        let mut admission = admission(80, u64::MAX, 100);
        let objects = (0..60).map(|i| track_calls(&format!("o{i}"), "Clicked", 10));
        let sizes = run_backlog(&mut admission, objects, |_| {});
        // An eighth, a quarter and a half of 80 messages.
        assert_eq!(sizes[..4], [10, 20, 40, 80]);
    }

    #[test]
    fn an_object_larger_than_a_batch_loads_in_batches_of_max_rows_and_waits_for_its_last() {
        let mut admission = admission(80, u64::MAX, 100);
        let object = track_calls("big", "Clicked", 1000);
        let sizes = run_backlog(&mut admission, [object], |_| {});
        let mut expected = vec![10, 20, 40];
        expected.extend([80; 11]);
        expected.push(50);
        assert_eq!(sizes, expected, "the ramp, then max_rows, then the rest");
        let pending = admission.pending.borrow();
        let (last, objects) = pending.last_key_value().expect("batches in flight");
        assert_eq!(objects.len(), 1, "acknowledged with its last part's batch");
        assert_eq!(
            pending.len(),
            15,
            "every batch it spans awaits acknowledgement"
        );
        assert!(
            pending.range(..last).all(|(_, objects)| objects.is_empty()),
            "and only the last acknowledges it"
        );
    }

    #[test]
    fn max_in_flight_stops_decoding_a_large_object_until_batches_are_acknowledged() {
        let max_in_flight = 1;
        let mut admission = admission(80, u64::MAX, max_in_flight);
        let object = track_calls("big", "Clicked", 1000);
        let mut stalled = 0;
        let mut most = 0.0f64;
        let sizes = run_backlog(&mut admission, [object], |admission| {
            let (_, worth) = in_flight(
                &admission.pending.borrow(),
                &admission.fills,
                admission.batch(),
            );
            most = most.max(worth);
            if admission.room_for_more() {
                return;
            }
            // No room: decoding has stopped. Acknowledge the oldest batch only after a
            // few rounds, as a warehouse would commit it later.
            stalled += 1;
            if stalled % 3 == 0 {
                admission.pending.borrow_mut().pop_first();
            }
        });
        assert_eq!(sizes.iter().sum::<u64>(), 1000);
        assert!(
            stalled > 10,
            "decoding waited for acknowledgements: {stalled}"
        );
        // It stops once closed batches worth one full one are in flight; the batch that
        // reached that is the most it holds beyond (the open one does not count).
        assert!(
            most < (max_in_flight + 1) as f64,
            "closed batches in flight worth {most} full ones"
        );
    }

    #[test]
    fn a_batch_closes_at_its_windows_end_and_when_its_decoded_bytes_fill_it() {
        let mut admission = admission(u64::MAX, 800, 100);
        assert_eq!(admission.tick(START + 59_999), START);
        assert_eq!(admission.window_end_ms(), START + 60_000);
        assert_eq!(admission.admit(), START);
        admission.progress.decoded(
            START,
            Decoded {
                messages: 1,
                bytes: 50,
            },
        );
        // The window ends: the next object joins the next window's batch.
        assert_eq!(admission.tick(START + 60_000), START + 60_000);
        assert_eq!(admission.admit(), START + 60_000);
        // 800 bytes ramp to 200 in the run's second batch: the bytes decoded into it
        // fill it.
        let bytes = |bytes| Decoded { messages: 1, bytes };
        admission.progress.decoded(START + 60_000, bytes(150));
        assert_eq!(admission.tick(START + 60_000), START + 60_000);
        assert!(admission.progress.allowance().is_some(), "150 bytes of 200");
        admission.progress.decoded(START + 60_000, bytes(50));
        assert_eq!(
            admission.progress.allowance(),
            None,
            "full before Admit looks"
        );
        assert_eq!(admission.tick(START + 60_000), START + 60_001);
        assert!(admission.progress.allowance().is_some());
    }

    #[test]
    fn admission_waits_for_decoding_to_catch_up() {
        let mut admission = admission(1000, u64::MAX, 100);
        admission.tick(START);
        for _ in 0..DECODE_AHEAD {
            assert!(admission.may_admit());
            admission.admit();
        }
        assert!(!admission.may_admit(), "{DECODE_AHEAD} objects undecoded");
        admission.progress.object_decoded();
        assert!(admission.may_admit());
        admission.progress.object_decoded();
        assert!(admission.all_decoded());
    }

    #[test]
    fn max_in_flight_stops_admission_until_batches_are_acknowledged() {
        let mut admission = admission(80, u64::MAX, 1);
        // Leave the ramp behind: the batches the clock opens count toward it.
        for window in 1..=RAMP_BATCHES as u64 {
            admission.tick(START + 60_000 * window);
        }
        let now = START + 60_000 * RAMP_BATCHES as u64;
        let first = admission.tick(now);
        // A batch closed by its window at half full leaves room for more.
        admission.pending.borrow_mut().insert(first, Vec::new());
        admission.progress.decoded(first, messages(40));
        assert_eq!(admission.tick(now), first);
        let second = admission.tick(now + 60_000);
        assert!(admission.may_admit(), "half a batch in flight, of one");
        assert!(admission.progress.allowance().is_some());
        // A full one does not: admission and decoding stop until a batch is
        // acknowledged.
        admission.pending.borrow_mut().insert(second, Vec::new());
        admission.progress.decoded(second, messages(80));
        let third = admission.tick(now + 60_000);
        assert_eq!(third, second + 1, "closed when full, within the window");
        assert!(!admission.may_admit(), "1.5 batches in flight");
        assert_eq!(admission.progress.allowance(), None);
        admission.pending.borrow_mut().remove(&first);
        admission.tick(now + 60_000);
        assert!(!admission.may_admit(), "still 1 batch in flight");
        admission.pending.borrow_mut().remove(&second);
        admission.tick(now + 60_000);
        assert!(admission.may_admit(), "admission resumes once acknowledged");
        assert!(admission.progress.allowance().is_some(), "and decoding");
    }

    #[test]
    fn input_decoded_into_a_batch_the_clock_closed_does_not_fill_the_open_one() {
        let mut admission = admission(80, u64::MAX, 100);
        for window in 1..=RAMP_BATCHES as u64 {
            admission.tick(START + 60_000 * window);
        }
        let now = START + 60_000 * RAMP_BATCHES as u64;
        let first = admission.tick(now);
        // Decoded into the first batch, but its window ends before Admit counts it.
        admission.progress.decoded(first, messages(70));
        let second = admission.tick(now + 60_000);
        assert_eq!(second, now + 60_000);
        admission.progress.decoded(second, messages(40));
        assert_eq!(admission.tick(now + 60_000), second, "40 of 80, not 110");
        admission.progress.decoded(second, messages(40));
        assert_eq!(admission.tick(now + 60_000), second + 1);
    }
}
