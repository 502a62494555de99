//! source: where objects come from, and how their arrival wakes the dataflow.
//!
//! A source runs as async tasks on the process's tokio runtime and hands [`ObjectRef`]s
//! to the workers over bounded channels, activating the worker's admit operator on
//! arrival (no polling inside the dataflow). Each object goes to exactly one worker of
//! the cluster, chosen by a stable hash of its name, so decoding spreads over all
//! workers; a worker whose own channel is empty takes from its local siblings'
//! ([`Inbox`]). Acknowledging (marking done, deleting the SQS message) happens only after
//! the object's batch has committed everywhere: see `ack`.

pub mod aws;
pub mod backfill;
pub mod dir;
pub mod notification;
pub mod sqs;
mod start;

pub use start::{Acker, Acks, Delivery, SourceError, Spec, Started, check_exists, probe, start};

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::stable_hash;

/// One input object: a file under a `dir` source, or an S3 object an SQS notification
/// announced. Objects stay in the process that admitted them (Admit → DecodeRoute is a
/// pipeline edge), so a fetched body never crosses processes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ObjectRef {
    /// The object's name: its path relative to the source root, `/`-separated, or
    /// `s3://bucket/key`. It names the object in rejections and derived message ids, so
    /// it must be stable.
    pub name: Arc<str>,
    /// Size in bytes as listed or announced.
    pub bytes: u64,
    /// Where its bytes are.
    #[serde(skip)]
    pub body: Body,
    /// The source's handle for acknowledging it (the SQS source: which message
    /// announced it; the `dir` source: unused, 0).
    #[serde(skip)]
    pub token: u64,
    /// When it was written (the notification's event time, the file's modification
    /// time), for freshness; `None` when unknown or not measured (backfill).
    #[serde(skip)]
    pub written: Option<SystemTime>,
}

impl ObjectRef {
    /// A file of the `dir` source: `name` relative to its root, `path` where it is,
    /// `written` its modification time.
    pub fn file(
        name: Arc<str>,
        path: PathBuf,
        bytes: u64,
        written: Option<SystemTime>,
    ) -> ObjectRef {
        ObjectRef {
            name,
            bytes,
            body: Body::File(Arc::from(path)),
            token: 0,
            written,
        }
    }
}

/// Where an object's bytes are.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Body {
    /// A file, read when it is decoded.
    File(Arc<Path>),
    /// Fetched already, as stored (gzip stays gzip: decode detects it).
    Fetched(bytes::Bytes),
    /// Could not be fetched (deleted before it was): one `_rejections` row says why.
    Missing(String),
}

/// Never used: objects stay in the process that admitted them, so a body is never
/// deserialized. Should one be, it loads as a rejection rather than as nothing.
impl Default for Body {
    fn default() -> Body {
        Body::Missing("the object's bytes stayed in the process that admitted it".into())
    }
}

/// One object, whatever its source, decoded and routed a part at a time: the dataflow
/// decodes for a slice of time and then lets the rest of its worker run, so one large
/// object cannot hold a worker (and every batch's progress behind it) for seconds.
pub struct ObjectRows {
    state: RowsState,
}

enum RowsState {
    Decoding(Box<crate::decode::ObjectDecoder<'static>>),
    /// The object could not be opened: one `_rejections` row says why.
    Unreadable(ObjectRef, String),
    Done(crate::decode::DecodeSummary),
}

impl ObjectRows {
    /// Opens `object`; reads nothing beyond its first bytes.
    pub fn open(object: &ObjectRef, limits: &crate::decode::Limits) -> ObjectRows {
        let state = match &object.body {
            Body::File(path) => match std::fs::File::open(path) {
                Ok(file) => RowsState::Decoding(Box::new(crate::decode::ObjectDecoder::new(
                    file,
                    &object.name,
                    limits,
                ))),
                Err(error) => RowsState::Unreadable(object.clone(), error.to_string()),
            },
            Body::Fetched(bytes) => {
                RowsState::Decoding(Box::new(crate::decode::ObjectDecoder::new(
                    std::io::Cursor::new(bytes.clone()),
                    &object.name,
                    limits,
                )))
            }
            Body::Missing(reason) => RowsState::Unreadable(object.clone(), reason.clone()),
        };
        ObjectRows { state }
    }

    /// Decodes and routes about `items` more items into `out`, handing each message's
    /// rows to `each`. Returns whether any of the object is left.
    pub fn next_rows(
        &mut self,
        items: usize,
        router: &mut crate::route::Router,
        out: &mut Vec<crate::route::Row>,
        observer: Option<&mut crate::columns::Observer>,
    ) -> bool {
        match &mut self.state {
            RowsState::Decoding(decoder) => {
                if crate::route::rows_for_some(decoder, items, router, out, observer) {
                    return true;
                }
                self.state = RowsState::Done(decoder.summary());
                false
            }
            RowsState::Unreadable(object, reason) => {
                let summary = unreadable(object, std::mem::take(reason), out, observer);
                self.state = RowsState::Done(summary);
                false
            }
            RowsState::Done(_) => false,
        }
    }

    /// Counts so far; the object's once `next_rows` has returned false.
    pub fn summary(&self) -> crate::decode::DecodeSummary {
        match &self.state {
            RowsState::Decoding(decoder) => decoder.summary(),
            RowsState::Unreadable(..) => crate::decode::DecodeSummary::default(),
            RowsState::Done(summary) => *summary,
        }
    }
}

/// One `_rejections` row for an object that cannot be read at all, handed to `each`
/// like any other rows.
pub fn unreadable(
    object: &ObjectRef,
    reason: String,
    out: &mut Vec<crate::route::Row>,
    observer: Option<&mut crate::columns::Observer>,
) -> crate::decode::DecodeSummary {
    let reason = crate::decode::RejectReason::Unreadable(reason);
    let mut summary = crate::decode::DecodeSummary::default();
    summary.reject(&reason);
    let rejection =
        crate::decode::Rejection::new(&object.name, crate::decode::Position::line(0), reason, b"");
    let start = out.len();
    out.push(crate::route::rejection_row(&rejection));
    if let Some(observer) = observer {
        observer.observe(&out[start..]);
    }
    summary
}

/// A worker's input: the channels the process's sources fill, one per local worker.
/// A worker takes from its own channel first and, when that is empty, from its
/// siblings': objects are assigned to workers by a hash of their name, which spreads
/// them evenly by count but not by work, and without taking over a sibling's backlog a
/// worker that drew the lighter objects sat idle while the other decoded the tail (5% of
/// both cores over a two-worker benchmark run). Only local siblings: an object never
/// moves to another process. Whichever worker admits an object acknowledges it.
pub struct Inbox {
    own: usize,
    channels: Vec<Arc<Mutex<mpsc::Receiver<ObjectRef>>>>,
}

/// Why [`Inbox::try_recv`] returned nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboxEmpty {
    /// Nothing queued now; more may come.
    Empty,
    /// Every local channel is closed and drained: nothing more will come.
    Closed,
}

impl Inbox {
    /// One inbox per local worker, each over all the channels, its own (index `own`)
    /// first.
    pub fn for_workers(receivers: Vec<mpsc::Receiver<ObjectRef>>) -> Vec<Inbox> {
        let channels: Vec<_> = receivers
            .into_iter()
            .map(|receiver| Arc::new(Mutex::new(receiver)))
            .collect();
        (0..channels.len())
            .map(|own| Inbox {
                own,
                channels: channels.clone(),
            })
            .collect()
    }

    /// The next object: this worker's own first, then a sibling's.
    pub fn try_recv(&mut self) -> Result<ObjectRef, InboxEmpty> {
        let count = self.channels.len();
        let mut open = false;
        for offset in 0..count {
            let channel = &self.channels[(self.own + offset) % count];
            // A sibling holds its lock only for a `try_recv`; skip it rather than wait.
            let mut receiver = match channel.try_lock() {
                Ok(receiver) => receiver,
                Err(std::sync::TryLockError::WouldBlock) => {
                    open = true;
                    continue;
                }
                Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            };
            match receiver.try_recv() {
                Ok(object) => return Ok(object),
                Err(mpsc::error::TryRecvError::Empty) => open = true,
                Err(mpsc::error::TryRecvError::Disconnected) => {}
            }
        }
        if open {
            Err(InboxEmpty::Empty)
        } else {
            Err(InboxEmpty::Closed)
        }
    }
}

/// The global worker index that owns an object.
pub fn owner(name: &str, peers: usize) -> usize {
    (stable_hash::fnv1a64(&[name.as_bytes()]) % peers.max(1) as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ownership_is_stable_and_spread() {
        assert_eq!(owner("a/b.json.gz", 4), owner("a/b.json.gz", 4));
        let mut counts = [0usize; 4];
        for i in 0..1000 {
            counts[owner(&format!("events-{i:06}.ndjson.gz"), 4)] += 1;
        }
        assert!(counts.iter().all(|&count| count > 150), "{counts:?}");
    }

    fn object(name: &str) -> ObjectRef {
        ObjectRef::file(Arc::from(name), PathBuf::from(name), 1, None)
    }

    #[test]
    fn an_inbox_takes_its_own_objects_first_then_a_siblings_and_closes_when_all_are_drained() {
        let (first_sender, first) = mpsc::channel(8);
        let (second_sender, second) = mpsc::channel(8);
        let mut inboxes = Inbox::for_workers(vec![first, second]);
        let mut inbox = inboxes.remove(0);
        first_sender.try_send(object("mine")).unwrap();
        second_sender.try_send(object("sibling's 1")).unwrap();
        second_sender.try_send(object("sibling's 2")).unwrap();
        assert_eq!(&*inbox.try_recv().unwrap().name, "mine");
        assert_eq!(&*inbox.try_recv().unwrap().name, "sibling's 1");
        assert_eq!(
            inboxes[0].try_recv().map(|o| o.name).as_deref(),
            Ok("sibling's 2")
        );
        assert_eq!(inbox.try_recv(), Err(InboxEmpty::Empty));
        drop(first_sender);
        // One channel is still open: more may come.
        assert_eq!(inbox.try_recv(), Err(InboxEmpty::Empty));
        second_sender.try_send(object("late")).unwrap();
        drop(second_sender);
        assert_eq!(&*inbox.try_recv().unwrap().name, "late");
        assert_eq!(inbox.try_recv(), Err(InboxEmpty::Closed));
        assert_eq!(inboxes[0].try_recv(), Err(InboxEmpty::Closed));
    }
}
