//! source: where objects come from, and how their arrival wakes the dataflow.
//!
//! A source runs as async tasks on the process's tokio runtime and hands [`ObjectRef`]s
//! to the workers over bounded channels, activating the worker's admit operator on
//! arrival (no polling inside the dataflow). Each object goes to exactly one worker of
//! the cluster, chosen by a stable hash of its name, so decoding spreads over all
//! workers. Acknowledging (marking done, deleting the SQS message) happens only after
//! the object's batch has committed everywhere: see `ack`.

pub mod backfill;
pub mod dir;
pub mod notification;
pub mod sqs;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

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
}

impl ObjectRef {
    /// A file under the `dir` source's root.
    pub fn file(name: Arc<str>, bytes: u64) -> ObjectRef {
        ObjectRef {
            name,
            bytes,
            body: Body::File,
            token: 0,
        }
    }
}

/// Where an object's bytes are.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Body {
    /// A file under the `dir` source's root, read when it is decoded.
    #[default]
    File,
    /// Fetched already, as stored (gzip stays gzip: decode detects it).
    Fetched(bytes::Bytes),
    /// Could not be fetched (deleted before it was): one `_rejections` row says why.
    Missing(String),
}

/// Decodes and routes one object into `out`, whatever its source, handing each
/// message's rows to `each` as they are made (see `route::rows_for_object_each`).
pub fn rows_of(
    root: &std::path::Path,
    object: &ObjectRef,
    limits: &crate::decode::Limits,
    router: &mut crate::route::Router,
    out: &mut Vec<crate::route::Row>,
    each: &mut dyn FnMut(&[crate::route::Row]),
) -> crate::decode::DecodeSummary {
    match &object.body {
        Body::File => dir::rows_of(root, object, limits, router, out, each),
        Body::Fetched(bytes) => {
            crate::route::rows_for_object_each(&bytes[..], &object.name, limits, router, out, each)
        }
        Body::Missing(reason) => unreadable(object, reason.clone(), out, each),
    }
}

/// One `_rejections` row for an object that cannot be read at all, handed to `each`
/// like any other rows.
pub fn unreadable(
    object: &ObjectRef,
    reason: String,
    out: &mut Vec<crate::route::Row>,
    each: &mut dyn FnMut(&[crate::route::Row]),
) -> crate::decode::DecodeSummary {
    let reason = crate::decode::RejectReason::Unreadable(reason);
    let mut summary = crate::decode::DecodeSummary::default();
    summary.reject(&reason);
    let rejection =
        crate::decode::Rejection::new(&object.name, crate::decode::Position::line(0), reason, b"");
    let start = out.len();
    out.push(crate::route::rejection_row(&rejection));
    each(&out[start..]);
    summary
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
}
