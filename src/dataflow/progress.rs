//! DecodeProgress: the feedback edge from DecodeRoute back to Admit on one worker.
//!
//! Admit closes a batch when it holds `max_rows` decoded messages and admits only while
//! few objects wait undecoded, so it must learn how far decoding has got. That is
//! shared state on the worker rather than a stream: Admit is a source with no input,
//! both operators run on the same worker thread, and Admit needs the latest count at
//! its next activation, not once a frontier has moved.

use std::cell::{Cell, RefCell};
use std::cmp::Ordering;
use std::rc::Rc;

use timely::scheduling::Activator;

use super::Time;

/// Where Admit's activator is put once the operator exists. DecodeRoute wakes Admit
/// through it after each object, the worker loop after acknowledgements.
pub type AdmitActivator = Rc<RefCell<Option<Activator>>>;

/// What DecodeRoute tells Admit: the messages decoded for a batch, and how many admitted
/// objects are not decoded yet. One per worker, shared by the two operators.
#[derive(Default)]
pub struct DecodeProgress {
    /// Messages decoded and not yet taken by Admit, with the batch they belong to.
    /// Only that batch's messages count: see [`credit`].
    decoded: Cell<(Time, u64)>,
    /// Objects admitted on this worker and not yet wholly decoded.
    undecoded: Cell<usize>,
    admit: AdmitActivator,
}

impl DecodeProgress {
    /// Progress that wakes the Admit operator registered in `admit`.
    pub fn new(admit: AdmitActivator) -> DecodeProgress {
        DecodeProgress {
            admit,
            ..DecodeProgress::default()
        }
    }

    /// Admit stamped one more object, which DecodeRoute has yet to decode.
    pub fn object_admitted(&self) {
        self.undecoded.set(self.undecoded.get() + 1);
    }

    /// `fresh` more messages of `batch` are decoded.
    pub fn messages_decoded(&self, batch: Time, fresh: u64) {
        self.decoded.set(credit(self.decoded.get(), batch, fresh));
    }

    /// An object is wholly decoded: one fewer waits, so Admit may take another.
    pub fn object_decoded(&self) {
        self.undecoded.set(self.undecoded.get().saturating_sub(1));
        if let Some(admit) = self.admit.borrow().as_ref() {
            admit.activate();
        }
    }

    /// Objects admitted and not yet wholly decoded.
    pub fn undecoded(&self) -> usize {
        self.undecoded.get()
    }

    /// The messages decoded since the last call if they belong to batch `open`, and 0
    /// if they belong to another: a closed batch's late messages fill no other batch.
    pub fn take_decoded_for(&self, open: Time) -> u64 {
        let (batch, decoded) = self.decoded.get();
        self.decoded.set((batch, 0));
        if batch == open { decoded } else { 0 }
    }
}

/// The decoded count `(batch, messages)` after `fresh` more messages of `batch` are
/// decoded: added to its count for `batch`, started afresh over an older (closed)
/// batch's, and dropped when a newer batch is already counting (then `batch` has closed
/// and they count toward nothing).
///
/// Admit keeps up to `DECODE_AHEAD` objects ahead of decoding, so objects of a batch
/// finish decoding after it closed; credited to whichever batch was open, their messages
/// closed the next one up to two objects early.
fn credit((counted_for, count): (Time, u64), batch: Time, fresh: u64) -> (Time, u64) {
    match counted_for.cmp(&batch) {
        Ordering::Equal => (batch, count + fresh),
        Ordering::Less => (batch, fresh),
        Ordering::Greater => (counted_for, count),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoded_messages_count_only_toward_their_own_batch() {
        // The same batch accumulates; a newer batch starts afresh.
        assert_eq!(credit((7, 150), 7, 100), (7, 250));
        assert_eq!(credit((7, 150), 8, 100), (8, 100));
        // An object of a batch that has closed, finishing after the next one's first:
        // its messages must not fill the open batch.
        assert_eq!(credit((8, 40), 7, 100), (8, 40));
    }

    #[test]
    fn admit_takes_only_the_open_batchs_messages_and_each_once() {
        let progress = DecodeProgress::default();
        progress.messages_decoded(7, 100);
        progress.messages_decoded(7, 50);
        assert_eq!(progress.take_decoded_for(7), 150);
        assert_eq!(progress.take_decoded_for(7), 0, "taken already");
        // Batch 7 closed; its last object finishes after batch 8's first.
        progress.messages_decoded(8, 30);
        progress.messages_decoded(7, 90);
        assert_eq!(progress.take_decoded_for(8), 30);
        // Counts of a batch that is not the open one are dropped, not kept for later.
        progress.messages_decoded(8, 20);
        assert_eq!(progress.take_decoded_for(9), 0);
        assert_eq!(progress.take_decoded_for(8), 0);
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
}
