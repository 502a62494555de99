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

use super::progress::{AdmitActivator, DecodeProgress};
use super::{Context, Pending, Time};
use crate::batch::{BatchClock, BatchPolicy, RAMP_BATCHES, now_ms};
use crate::source::{Inbox, InboxEmpty, ObjectRef};
use crate::warehouse::Warehouse;

/// How many admitted objects may wait undecoded on a worker. Admit takes the next object
/// only when decoding has caught up this far, so a batch's message count (fed back from
/// DecodeRoute) is known when the next object is stamped: without the limit a backlog
/// present at start was admitted whole into one batch, whatever `max_rows` said, and
/// nothing could load until all of it was decoded. Two keeps the decoder fed while Admit
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
            let mut admission = Admission::new(policy, max_in_flight, now_ms(), pending, progress);
            let mut capability: Option<Capability<Time>> = Some(capability);
            let mut timer_for: Option<u64> = None;
            move |output| {
                let Some(held) = capability.as_mut() else {
                    return;
                };
                if shutdown.is_requested() {
                    // Close the open batch: dropping the capability lets the frontier
                    // pass it, so it loads and is acknowledged, and the dataflow ends.
                    capability = None;
                    return;
                }
                // Advance the batch whether or not anything is admitted: every worker
                // must move its capability on or the frontier stalls everywhere.
                advance(held, admission.tick(now_ms()));
                let mut budget = ADMIT_BUDGET;
                let mut closed = false;
                // Input left here waits in the channel, the lister, and SQS. The worker
                // loop wakes this operator when a batch is acknowledged, DecodeRoute
                // after each object.
                while budget > 0 && admission.may_admit() {
                    match objects.try_recv() {
                        Ok(object) => {
                            budget -= 1;
                            let batch = admission.admit(&object);
                            debug_assert_eq!(batch, *held.time());
                            output.session(&*held).give(object);
                            stats.object_admitted();
                            advance(held, admission.batch());
                        }
                        Err(InboxEmpty::Empty) => break,
                        Err(InboxEmpty::Closed) => {
                            closed = true;
                            break;
                        }
                    }
                }
                if closed {
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
/// (on the clock, or when its decoded messages or input bytes fill it, smaller during
/// the start-up ramp), and whether to take more input at all.
pub struct Admission {
    clock: BatchClock,
    /// Closed batches' fill (a fraction of a full batch), for the in-flight bound;
    /// pruned as batches are acknowledged.
    fills: BTreeMap<Time, f64>,
    /// Admitted objects by batch; the worker loop removes a batch once acknowledged.
    pending: Pending,
    progress: Rc<DecodeProgress>,
    /// Stop admitting while closed batches worth this many full ones await their commit.
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
        Admission {
            clock: BatchClock::new(policy, now_ms),
            fills: BTreeMap::new(),
            pending,
            progress,
            max_in_flight,
        }
    }

    /// The open batch: what an object admitted now is stamped with.
    pub fn batch(&self) -> Time {
        self.clock.current().0
    }

    /// When the open batch's window ends, in ms since the Unix epoch.
    pub fn window_end_ms(&self) -> u64 {
        self.clock.window_end_ms()
    }

    /// Brings the open batch up to date at `now_ms`: closes it if its window has ended,
    /// counts the messages decoded for it since the last tick (only its own: a closed
    /// batch's late ones fill no other), and closes it if that fills it. Returns the
    /// open batch.
    pub fn tick(&mut self, now_ms: u64) -> Time {
        self.clock.tick(now_ms);
        let decoded = self.progress.take_decoded_for(self.batch());
        self.clock.admit(decoded, 0);
        if self.clock.is_full() {
            self.clock.close_early();
        }
        record_fills(&mut self.fills, &mut self.clock, &self.pending.borrow());
        self.batch()
    }

    /// Whether to take another object: only while decoding is fewer than
    /// [`DECODE_AHEAD`] objects behind and the batches awaiting their commit leave room
    /// (see [`room_for_more`]; the open batch does not count).
    pub fn may_admit(&self) -> bool {
        self.progress.undecoded() < DECODE_AHEAD
            && room_for_more(
                &self.pending.borrow(),
                &self.fills,
                self.batch(),
                self.max_in_flight,
            )
    }

    /// Admits `object` into the open batch, and closes the batch if its bytes fill it.
    /// Returns the batch the object joined.
    pub fn admit(&mut self, object: &ObjectRef) -> Time {
        let batch = self.batch();
        self.progress.object_admitted();
        self.clock.admit(0, object.bytes);
        self.pending
            .borrow_mut()
            .entry(batch)
            .or_default()
            .push(object.clone());
        if self.clock.is_full() && self.clock.close_early() {
            record_fills(&mut self.fills, &mut self.clock, &self.pending.borrow());
        }
        batch
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

/// Whether Admit may take more input while the batches in `pending` before `open` await
/// their commit on this worker.
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

    fn object(bytes: u64) -> ObjectRef {
        ObjectRef::file(Arc::from("o.jsonl"), "o.jsonl".into(), bytes)
    }

    /// Admit and DecodeRoute on one worker, without timely: every round Admit ticks and
    /// takes what it may of a backlog, then DecodeRoute decodes its oldest object (of
    /// `messages` messages). The clock stands still, so batches close only when full.
    /// Returns the messages admitted into each batch, in batch order, once the backlog
    /// of `objects` is admitted and decoded.
    fn admit_backlog(admission: &mut Admission, objects: usize, messages: u64) -> Vec<u64> {
        let mut backlog = objects;
        let mut decoding: VecDeque<Time> = VecDeque::new();
        while backlog > 0 || !decoding.is_empty() {
            admission.tick(START);
            while backlog > 0 && admission.may_admit() {
                decoding.push_back(admission.admit(&object(1)));
                backlog -= 1;
            }
            if let Some(batch) = decoding.pop_front() {
                admission.progress.messages_decoded(batch, messages);
                admission.progress.object_decoded();
            }
        }
        let pending = admission.pending.borrow();
        pending
            .values()
            .map(|objects| objects.len() as u64 * messages)
            .collect()
    }

    #[test]
    fn a_backlog_is_admitted_in_batches_of_max_rows() {
        let mut admission = admission(80, u64::MAX, 100);
        let sizes = admit_backlog(&mut admission, 60, 10);
        // Past the ramp every batch closes at max_rows, plus the object admitted ahead
        // of decoding; the last holds what is left.
        assert_eq!(sizes[3..], [90, 90, 90, 90, 90, 50]);
    }

    #[test]
    fn the_first_three_batches_ramp_up_to_max_rows() {
        let mut admission = admission(80, u64::MAX, 100);
        let sizes = admit_backlog(&mut admission, 60, 10);
        // An eighth, a quarter and a half of 80 messages, each plus the object admitted
        // ahead. Were a closed batch's late messages counted toward the open one, the
        // second would hold 20, not 30.
        assert_eq!(sizes[..4], [20, 30, 50, 90]);
    }

    #[test]
    fn a_batch_closes_at_its_windows_end_and_when_its_bytes_fill_it() {
        let mut admission = admission(u64::MAX, 800, 100);
        assert_eq!(admission.tick(START + 59_999), START);
        assert_eq!(admission.window_end_ms(), START + 60_000);
        assert_eq!(admission.admit(&object(50)), START);
        // The window ends: the next object joins the next window's batch.
        assert_eq!(admission.tick(START + 60_000), START + 60_000);
        assert_eq!(admission.admit(&object(50)), START + 60_000);
        // 800 bytes ramp to 200 in the run's second batch: the object that reaches them
        // is the last of its batch.
        assert_eq!(admission.admit(&object(150)), START + 60_000);
        assert_eq!(admission.batch(), START + 60_001);
        let pending = admission.pending.borrow();
        let sizes: Vec<usize> = pending.values().map(Vec::len).collect();
        assert_eq!(sizes, [1, 2]);
    }

    #[test]
    fn admission_waits_for_decoding_to_catch_up() {
        let mut admission = admission(1000, u64::MAX, 100);
        admission.tick(START);
        for _ in 0..DECODE_AHEAD {
            assert!(admission.may_admit());
            admission.admit(&object(1));
        }
        assert!(!admission.may_admit(), "{DECODE_AHEAD} objects undecoded");
        admission.progress.object_decoded();
        assert!(admission.may_admit());
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
        admission.admit(&object(1));
        admission.progress.messages_decoded(first, 40);
        admission.progress.object_decoded();
        assert_eq!(admission.tick(now), first);
        let second = admission.tick(now + 60_000);
        assert!(admission.may_admit(), "half a batch in flight, of one");
        // A full one does not: admission stops until a batch is acknowledged.
        admission.admit(&object(1));
        admission.progress.messages_decoded(second, 80);
        admission.progress.object_decoded();
        let third = admission.tick(now + 60_000);
        assert_eq!(third, second + 1, "closed when full, within the window");
        assert!(!admission.may_admit(), "1.5 batches in flight");
        admission.pending.borrow_mut().remove(&first);
        assert!(!admission.may_admit(), "still 1 batch in flight");
        admission.pending.borrow_mut().remove(&second);
        assert!(admission.may_admit(), "admission resumes once acknowledged");
    }

    #[test]
    fn late_decoded_messages_do_not_fill_the_open_batch() {
        let mut admission = admission(80, u64::MAX, 100);
        for window in 1..=RAMP_BATCHES as u64 {
            admission.tick(START + 60_000 * window);
        }
        let now = START + 60_000 * RAMP_BATCHES as u64;
        let first = admission.tick(now);
        admission.admit(&object(1));
        admission.admit(&object(1));
        admission.progress.messages_decoded(first, 80);
        admission.progress.object_decoded();
        let second = admission.tick(now);
        assert_eq!(second, first + 1, "80 messages fill a batch");
        // The first batch's second object finishes after the next batch's first.
        admission.admit(&object(1));
        admission.progress.messages_decoded(second, 40);
        admission.progress.messages_decoded(first, 70);
        admission.progress.object_decoded();
        admission.progress.object_decoded();
        assert_eq!(admission.tick(now), second, "40 of 80, not 110");
        admission.progress.messages_decoded(second, 40);
        assert_eq!(admission.tick(now), second + 1);
    }
}
