//! source: where objects come from, and how their arrival wakes the dataflow.
//!
//! A source runs as async tasks on the process's tokio runtime and hands [`ObjectRef`]s
//! to the workers over bounded channels, activating the worker's admit operator on
//! arrival (no polling inside the dataflow). Each object goes to exactly one worker of
//! the cluster, chosen by a stable hash of its name, so decoding spreads over all
//! workers. Acknowledging (marking done, deleting the SQS message) happens only after
//! the object's batch has committed everywhere: see `ack`.

pub mod dir;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::stable_hash;

/// One input object: a file under a `dir` source (later, an S3 object).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ObjectRef {
    /// The object's name: its path relative to the source root, `/`-separated. It names
    /// the object in rejections and derived message ids, so it must be stable.
    pub name: Arc<str>,
    /// Size in bytes as listed.
    pub bytes: u64,
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
