//! DecodeProgress: the two-way edge between Admit and DecodeRoute on one worker.
//!
//! Admit closes a batch when it holds `max_rows` decoded messages (or `max_bytes`
//! decoded bytes) and admits only while few objects wait undecoded, so it must learn how
//! far decoding has got. DecodeRoute decodes every part into the batch Admit has open, and
//! only while that batch has room and the closed batches awaiting their commit leave
//! room, so it must learn which batch that is and how much it still takes: an object
//! larger than a batch then spans several. That is shared state on the worker rather
//! than streams: Admit is a source with no input, both operators run on the same worker
//! thread, and each needs the other's latest word at its next activation, not once a
//! frontier has moved.

use std::cell::{Cell, RefCell};
use std::cmp::Ordering;
use std::rc::Rc;

use timely::scheduling::Activator;

use super::Time;

/// Where Admit's activator is put once the operator exists. DecodeRoute wakes Admit
/// through it after each object and when the open batch is full, the worker loop after
/// acknowledgements.
pub type AdmitActivator = Rc<RefCell<Option<Activator>>>;

/// Messages and bytes (after decompression) decoded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Decoded {
    pub messages: u64,
    pub bytes: u64,
}

impl Decoded {
    fn add(self, other: Decoded) -> Decoded {
        Decoded {
            messages: self.messages + other.messages,
            bytes: self.bytes + other.bytes,
        }
    }
}

/// What Admit tells DecodeRoute after each of its activations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenBatch {
    /// The batch Admit has open: every part decoded now goes out at it.
    pub batch: Time,
    /// What the batch takes before it is full, as of Admit's last look (decoded input
    /// Admit has not taken yet comes off it: see [`DecodeProgress::allowance`]).
    pub room: Decoded,
    /// Whether the closed batches awaiting their commit on the worker leave room for
    /// more (`max_in_flight`): without it decoding waits, however much the open batch
    /// still takes, or one large object would fill batch after batch.
    pub in_flight_room: bool,
}

/// What DecodeRoute and Admit tell each other. One per worker, shared by the two
/// operators.
#[derive(Default)]
pub struct DecodeProgress {
    /// Decoded input not yet taken by Admit, with the batch it went out at. Only that
    /// batch's count matters: see [`credit`].
    decoded: Cell<(Time, Decoded)>,
    /// Objects admitted on this worker and not yet wholly decoded.
    undecoded: Cell<usize>,
    /// Admit's open batch, as last published.
    open: Cell<OpenBatch>,
    /// DecodeRoute stopped because the open batch was full or the in-flight bound was
    /// reached: Admit wakes it once it may go on.
    decoder_waiting: Cell<bool>,
    admit: AdmitActivator,
    decoder: RefCell<Option<Activator>>,
}

impl DecodeProgress {
    /// Progress that wakes the Admit operator registered in `admit`.
    pub fn new(admit: AdmitActivator) -> DecodeProgress {
        DecodeProgress {
            admit,
            ..DecodeProgress::default()
        }
    }

    /// Registers DecodeRoute's activator, which Admit wakes it through.
    pub fn set_decoder(&self, decoder: Activator) {
        *self.decoder.borrow_mut() = Some(decoder);
    }

    /// Admit stamped one more object, which DecodeRoute has yet to decode.
    pub fn object_admitted(&self) {
        self.undecoded.set(self.undecoded.get() + 1);
    }

    /// `fresh` more input went out at `batch`.
    pub fn decoded(&self, batch: Time, fresh: Decoded) {
        self.decoded.set(credit(self.decoded.get(), batch, fresh));
    }

    /// An object is wholly decoded: one fewer waits, so Admit may take another.
    pub fn object_decoded(&self) {
        self.undecoded.set(self.undecoded.get().saturating_sub(1));
        self.wake_admit();
    }

    /// Objects admitted and not yet wholly decoded.
    pub fn undecoded(&self) -> usize {
        self.undecoded.get()
    }

    /// The input decoded since the last call if it went out at batch `open`, and
    /// nothing if at another: a closed batch's late input fills no other batch.
    pub fn take_decoded_for(&self, open: Time) -> Decoded {
        let (batch, decoded) = self.decoded.get();
        self.decoded.set((batch, Decoded::default()));
        if batch == open {
            decoded
        } else {
            Decoded::default()
        }
    }

    /// Admit's word after an activation: its open batch, what that takes, and whether
    /// the in-flight bound leaves room. Wakes DecodeRoute if it waits and may now go on,
    /// or if the open batch moved on: even if it may not decode yet, it must move its
    /// capability up, or the batch it waits in could never load and make room.
    pub fn publish(&self, open: OpenBatch) {
        let moved_on = open.batch != self.open.get().batch;
        self.open.set(open);
        if self.decoder_waiting.get() && (moved_on || self.allowance().is_some()) {
            self.wake_decoder();
        }
    }

    /// The batch Admit has open: where everything DecodeRoute holds belongs now.
    pub fn open_batch(&self) -> Time {
        self.open.get().batch
    }

    /// How many more messages DecodeRoute may decode into the open batch now (at least
    /// one), or `None` when it must wait: the batch is full (Admit closes it at its next
    /// activation) or the closed batches awaiting their commit leave no room.
    pub fn allowance(&self) -> Option<u64> {
        let open = self.open.get();
        let (batch, decoded) = self.decoded.get();
        let pending = if batch == open.batch {
            decoded
        } else {
            Decoded::default()
        };
        let full = pending.messages >= open.room.messages || pending.bytes >= open.room.bytes;
        (open.in_flight_room && !full).then(|| open.room.messages - pending.messages)
    }

    /// DecodeRoute stops until [`publish`](Self::publish) lets it go on; Admit is woken
    /// now, so a full batch closes at once rather than at Admit's next timer.
    pub fn wait(&self) {
        self.decoder_waiting.set(true);
        self.wake_admit();
    }

    /// Wakes DecodeRoute whatever it waits for (at shutdown, so it stops).
    pub fn wake_decoder(&self) {
        self.decoder_waiting.set(false);
        if let Some(decoder) = self.decoder.borrow().as_ref() {
            decoder.activate();
        }
    }

    fn wake_admit(&self) {
        if let Some(admit) = self.admit.borrow().as_ref() {
            admit.activate();
        }
    }
}

/// The decoded count `(batch, input)` after `fresh` more input went out at `batch`:
/// added to its count for `batch`, started afresh over an older (closed) batch's, and
/// dropped when a newer batch is already counting (then `batch` has closed and it counts
/// toward nothing).
///
/// DecodeRoute decodes into the batch Admit has open, but Admit may close that batch on
/// the clock before it takes the count; credited to whichever batch was open next, that
/// input closed the next one early.
fn credit((counted_for, count): (Time, Decoded), batch: Time, fresh: Decoded) -> (Time, Decoded) {
    match counted_for.cmp(&batch) {
        Ordering::Equal => (batch, count.add(fresh)),
        Ordering::Less => (batch, fresh),
        Ordering::Greater => (counted_for, count),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(messages: u64) -> Decoded {
        Decoded {
            messages,
            bytes: messages * 100,
        }
    }

    fn open(batch: Time, room: u64, in_flight_room: bool) -> OpenBatch {
        OpenBatch {
            batch,
            room: Decoded {
                messages: room,
                bytes: u64::MAX,
            },
            in_flight_room,
        }
    }

    #[test]
    fn decoded_input_counts_only_toward_its_own_batch() {
        // The same batch accumulates; a newer batch starts afresh.
        assert_eq!(
            credit((7, messages(150)), 7, messages(100)),
            (7, messages(250))
        );
        assert_eq!(
            credit((7, messages(150)), 8, messages(100)),
            (8, messages(100))
        );
        // Input that went out at a batch that has closed since, counted after the next
        // one's first: it must not fill the open batch.
        assert_eq!(
            credit((8, messages(40)), 7, messages(100)),
            (8, messages(40))
        );
    }

    #[test]
    fn admit_takes_only_the_open_batchs_input_and_each_once() {
        let progress = DecodeProgress::default();
        progress.decoded(7, messages(100));
        progress.decoded(7, messages(50));
        assert_eq!(progress.take_decoded_for(7), messages(150));
        assert_eq!(progress.take_decoded_for(7), messages(0), "taken already");
        progress.decoded(8, messages(30));
        progress.decoded(7, messages(90));
        assert_eq!(progress.take_decoded_for(8), messages(30));
        // Counts of a batch that is not the open one are dropped, not kept for later.
        progress.decoded(8, messages(20));
        assert_eq!(progress.take_decoded_for(9), messages(0));
        assert_eq!(progress.take_decoded_for(8), messages(0));
    }

    #[test]
    fn undecoded_objects_are_counted_down_as_they_finish() {
        let progress = DecodeProgress::default();
        progress.object_admitted();
        progress.object_admitted();
        assert_eq!(progress.undecoded(), 2);
        progress.object_decoded();
        assert_eq!(progress.undecoded(), 1);
        progress.object_decoded();
        progress.object_decoded();
        assert_eq!(progress.undecoded(), 0, "never below zero");
    }

    #[test]
    fn decoding_may_fill_the_open_batch_and_no_more() {
        let progress = DecodeProgress::default();
        assert_eq!(
            progress.allowance(),
            None,
            "nothing published: nothing open"
        );
        progress.publish(open(7, 100, true));
        assert_eq!(progress.allowance(), Some(100));
        progress.decoded(7, messages(60));
        assert_eq!(
            progress.allowance(),
            Some(40),
            "what Admit has not taken counts"
        );
        progress.decoded(7, messages(40));
        assert_eq!(
            progress.allowance(),
            None,
            "full: wait for Admit to close it"
        );
        // Admit takes the count, closes batch 7 and opens 8.
        assert_eq!(progress.take_decoded_for(7), messages(100));
        progress.publish(open(8, 100, true));
        assert_eq!(progress.open_batch(), 8);
        assert_eq!(progress.allowance(), Some(100));
        // Decoded bytes fill a batch as messages do.
        progress.publish(OpenBatch {
            room: Decoded {
                messages: 100,
                bytes: 1000,
            },
            ..open(8, 100, true)
        });
        progress.decoded(8, messages(10));
        assert_eq!(progress.allowance(), None, "1000 bytes of 1000");
    }

    #[test]
    fn decoding_waits_while_the_in_flight_bound_leaves_no_room() {
        let progress = DecodeProgress::default();
        progress.publish(open(7, 100, false));
        assert_eq!(progress.allowance(), None, "an empty batch, but no room");
        progress.wait();
        assert!(progress.decoder_waiting.get());
        // Admit publishes again after an acknowledgement freed room.
        progress.publish(open(7, 100, true));
        assert!(!progress.decoder_waiting.get(), "woken");
        assert_eq!(progress.allowance(), Some(100));
        // Still no room, but the batch it waits in closed: woken to move on from it,
        // or that batch could never load and make room.
        progress.publish(open(7, 100, false));
        progress.wait();
        progress.publish(open(7, 100, false));
        assert!(progress.decoder_waiting.get(), "nothing changed");
        progress.publish(open(8, 100, false));
        assert!(
            !progress.decoder_waiting.get(),
            "woken to move up to batch 8"
        );
        assert_eq!(progress.allowance(), None);
    }
}
