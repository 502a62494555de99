//! How a backlog is cut into batches, in-process: the real dataflow and sources over a
//! directory of generated objects, into the counting warehouse, which records what each
//! (batch, table) load held. No service needed; each scenario runs in about a second or
//! less, generation included, in the test profile.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use tracktable::config::BatchFile;
use tracktable_gen::{GenConfig, write_dir};
use tracktable_testkit::counting::{CountingWarehouse, run_dir};

use crate::support::large_object::json_array;

/// `events` generated events (none malformed) in objects of `per_object`.
fn backlog(dir: &Path, events: u64, seed: u64, per_object: u64) {
    let config = GenConfig {
        events,
        seed,
        drift_rate: 0.0,
        bad_rate: 0.0,
    };
    write_dir(&config, dir, per_object).expect("generate the backlog");
}

/// Runs the directory once on its own thread (the run has its own runtime), failing
/// the test when it does not finish within a minute.
fn run(source: &Path, workers: usize, batch: BatchFile) -> CountingWarehouse {
    let (source, state) = (source.to_owned(), source.with_extension("state"));
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(run_dir(&source, &state, workers, batch));
    });
    match finished.recv_timeout(Duration::from_secs(60)) {
        Ok(Ok((_summary, warehouse))) => warehouse,
        Ok(Err(error)) => panic!("the run failed: {error}"),
        Err(_) => panic!("the run did not finish within 60 s"),
    }
}

/// Messages per batch, in batch order: each message has exactly one row in its own
/// table (its event's, or `pages`, `identifies`, ...); `tracks` repeats track events,
/// and `users` and `accounts` hold traits.
fn messages_per_batch(warehouse: &CountingWarehouse) -> Vec<u64> {
    let mut batches: BTreeMap<u64, u64> = BTreeMap::new();
    for load in warehouse.loads() {
        if !matches!(load.table.as_str(), "tracks" | "users" | "accounts") {
            *batches.entry(load.batch.0).or_default() += load.rows;
        }
    }
    batches.into_values().collect()
}

fn batch(max_rows: Option<u64>, max_in_flight: usize) -> BatchFile {
    BatchFile {
        interval: Some(Duration::from_secs(3600)),
        max_rows,
        max_in_flight,
        ..BatchFile::default()
    }
}

/// A backlog present at start (a restart, a queue that built up) is cut into batches of
/// about `max_rows` messages, not admitted whole into one batch that can only load once
/// all of it is decoded.
#[test]
fn a_backlog_present_at_start_loads_in_batches_of_max_rows() {
    let work = tempfile::tempdir().expect("tempdir");
    let source = work.path().join("events");
    backlog(&source, 3000, 5, 250);
    let sizes = messages_per_batch(&run(&source, 1, batch(Some(500), 2)));
    // 500 decoded messages close a batch, and a part of an object never asks for more
    // messages than its batch still takes, so no batch holds more; admitted whole, the
    // backlog was one batch.
    assert!(sizes.len() >= 6, "batches: {sizes:?}");
    assert!(sizes.iter().all(|&size| size <= 500), "batches: {sizes:?}");
    assert_eq!(sizes.iter().sum::<u64>(), 3000, "batches: {sizes:?}");
}

/// A run's first batches ramp up (an eighth, a quarter, a half of `max_rows`) so the
/// warehouse gets its first load early; then batches are whole. Messages count toward
/// the batch they went out at only, so the fourth batch is not closed early by the
/// third's.
#[test]
fn the_first_batches_of_a_backlog_ramp_up_to_max_rows() {
    let work = tempfile::tempdir().expect("tempdir");
    let source = work.path().join("events");
    backlog(&source, 3200, 11, 40);
    let sizes = messages_per_batch(&run(&source, 1, batch(Some(800), 1)));
    // Objects span batches, so every batch closes at its limit exactly.
    assert!(sizes.len() >= 5, "batches: {sizes:?}");
    assert_eq!(
        sizes[..3],
        [100, 200, 400],
        "the first three batches ramp up: {sizes:?}"
    );
    assert_eq!(sizes[3], 800, "the fourth batch is whole: {sizes:?}");
    assert_eq!(sizes.iter().sum::<u64>(), 3200, "batches: {sizes:?}");
}

/// `max_in_flight = 1` bounds the closed batches awaiting their commit, not the open
/// one: with a one-hour interval and everything present at start, the backlog fills the
/// open batch and the run finishes (when the open batch counted, Admit took one object
/// per worker and then waited out the interval).
#[test]
fn one_batch_in_flight_still_fills_the_open_batch() {
    let work = tempfile::tempdir().expect("tempdir");
    let source = work.path().join("events");
    backlog(&source, 1200, 8, 100);
    let sizes = messages_per_batch(&run(&source, 2, batch(None, 1)));
    assert_eq!(sizes.iter().sum::<u64>(), 1200, "batches: {sizes:?}");
}

/// The lines of the run's done logs (one per acknowledged object).
fn acknowledged(state: &Path) -> Vec<String> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(state)
        .expect("the state directory")
        .flatten()
    {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        names.extend(text.lines().map(str::to_owned));
    }
    names
}

/// A single object larger than a batch (a JSON array of 100k messages, 2000 a batch)
/// loads over many batches, none of them larger than `max_rows` plus one part's
/// overshoot (an array's elements are cut out of 64 KiB reads, about 650 of these small
/// ones, and a part takes a whole read); and it is acknowledged once, with its last
/// batch. Admitted whole, as it was, it loaded as one batch of 100k messages. The
/// million-element case runs in `benches/memory.rs` (release build).
#[test]
fn one_large_json_array_loads_in_batches_of_max_rows_and_is_acknowledged_once() {
    let work = tempfile::tempdir().expect("tempdir");
    let source = work.path().join("events");
    std::fs::create_dir_all(&source).expect("events directory");
    let elements = 100_000;
    json_array(&source.join("array.json"), elements).expect("write the array object");
    let warehouse = run(&source, 1, batch(Some(2000), 2));
    let sizes = messages_per_batch(&warehouse);
    assert_eq!(sizes.iter().sum::<u64>(), elements, "every message once");
    assert!(sizes.len() >= 35, "{} batches: {sizes:?}", sizes.len());
    assert!(
        sizes.iter().all(|&size| size <= 2000 + 1000),
        "batches: {sizes:?}"
    );
    assert_eq!(
        acknowledged(&source.with_extension("state")),
        ["array.json"],
        "acknowledged once"
    );
}
