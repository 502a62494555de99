//! Objects larger than a batch, through the binary into the real PostgreSQL: a gzip
//! object that inflates far beyond a batch loads over many batches in memory bounded by
//! the batches, and is acknowledged once; killed part way through such an object, a
//! restart loads every message exactly once.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support;
use crate::support::large_object::{Written, gzip_object, wait_with_peak_rss};

/// The tables that hold one row per message, one per message type.
const MESSAGE_TABLES: [&str; 6] = [
    "tracks",
    "pages",
    "screens",
    "identifies",
    "groups",
    "aliases",
];

/// A `dir` pipeline over `source` into `schema` whose batches close at `max_rows`
/// messages or `max_bytes` decoded bytes (the interval, an hour, never closes them).
fn pipeline(
    work: &Path,
    source: &Path,
    state: &Path,
    schema: &str,
    max_rows: u64,
    max_bytes: u64,
    max_in_flight: usize,
) -> PathBuf {
    let path = support::pipeline_file(work, source, state, schema, "1h");
    let mut text = std::fs::read_to_string(&path).expect("read the pipeline file");
    text.push_str(&format!(
        "max_rows = {max_rows}\nmax_bytes = {max_bytes}\nmax_in_flight = {max_in_flight}\n"
    ));
    std::fs::write(&path, text).expect("write the pipeline file");
    path
}

fn run(pipeline: &Path, once: bool, log: &Path) -> std::process::Child {
    let stderr = std::fs::File::create(log).expect("stderr log");
    let mut command = Command::new(support::binary());
    command.arg("run").arg("--pipeline").arg(pipeline);
    if once {
        command.arg("--once");
    }
    command
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("start tracktable run")
}

/// Messages stored over the message tables, and how many rows repeat a message id.
async fn stored(client: &tokio_postgres::Client, schema: &str) -> (i64, i64) {
    let (mut messages, mut repeated) = (0, 0);
    for table in MESSAGE_TABLES {
        let exists = support::count(
            client,
            &format!(
                "SELECT count(*) FROM information_schema.tables \
                 WHERE table_schema = '{schema}' AND table_name = '{table}'"
            ),
        )
        .await;
        if exists == 0 {
            continue;
        }
        let row = client
            .query_one(
                &format!(
                    "SELECT count(*), count(*) - count(DISTINCT id) \
                     FROM \"{schema}\".\"{table}\""
                ),
                &[],
            )
            .await
            .unwrap_or_else(|error| panic!("count {table}: {error}"));
        messages += row.get::<_, i64>(0);
        repeated += row.get::<_, i64>(1);
    }
    (messages, repeated)
}

/// Batches committed so far (none before the schema is prepared).
async fn batches(client: &tokio_postgres::Client, schema: &str) -> i64 {
    client
        .query_one(
            &format!("SELECT count(DISTINCT batch) FROM \"{schema}\"._tracktable_loads"),
            &[],
        )
        .await
        .map(|row| row.get(0))
        .unwrap_or(0)
}

/// Every line of the run's done logs: one per acknowledged object.
fn acknowledged(state: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(state) else {
        return Vec::new();
    };
    let mut names = Vec::new();
    for entry in entries.flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        names.extend(text.lines().map(str::to_owned));
    }
    names
}

fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// How much the object inflates to, and the batches' byte limit.
const INFLATED: u64 = 300 * 1024 * 1024;
const MAX_BYTES: u64 = 8 * 1024 * 1024;

/// Peak resident size allowed to `tracktable run --once` (the debug build) loading the
/// object. A worker holds its open batch and closed ones worth under `max_in_flight + 1`
/// full batches: with 8 MiB batches, rows for some 30 MiB of input, a few times that in
/// memory, plus the process's fixed cost and the allocator's slack. Measured at 122-134
/// MiB alone (200 MiB inflated), and up to 323 MiB while the rest of the suite loads the
/// same server and both cores (slower loads keep more freed memory in the allocator at
/// once). The build before objects could span batches held all of an object's rows at
/// once, about 2.5 times its inflated size (498 MiB for 200 MiB:
/// docs/decisions/0009-objects-span-batches.md), so some 750 MiB for this one. The bound
/// sits between the two.
const PEAK_LIMIT: u64 = 480 * 1024 * 1024;

/// A gzip object that inflates to 300 MiB of valid events, with 8 MiB batches: it loads
/// completely, in many batches, acknowledged once, and the process's peak memory stays
/// bounded by the batches, not by the object.
#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    skip_services,
    ignore = "needs PostgreSQL or the S3/SQS emulator; TRACKTABLE_SKIP_SERVICES is set"
)]
async fn a_gzip_object_far_larger_than_a_batch_loads_in_bounded_memory() {
    let Some(client) = support::postgres().await else {
        return;
    };
    let work = tempfile::tempdir().expect("tempdir");
    let source = work.path().join("events");
    let state = work.path().join("state");
    std::fs::create_dir_all(&source).expect("events directory");
    let written: Written =
        gzip_object(&source.join("big.ndjson.gz"), INFLATED, 8, 3).expect("write the gzip object");
    let schema = support::schema("large_gzip");
    let pipeline = pipeline(
        work.path(),
        &source,
        &state,
        &schema,
        1_000_000,
        MAX_BYTES,
        2,
    );
    let log = work.path().join("stderr.log");
    let child = run(&pipeline, true, &log);
    let (status, peak) = tokio::task::spawn_blocking(move || {
        wait_with_peak_rss(child, Duration::from_secs(600), "the large gzip object")
    })
    .await
    .expect("wait for tracktable");
    assert!(status.success(), "exit {status}:\n{}", log_tail(&log));

    let (messages, repeated) = stored(&client, &schema).await;
    assert_eq!(messages, written.messages as i64, "every message stored");
    assert_eq!(repeated, 0, "each once");
    let batches = batches(&client, &schema).await;
    assert!(
        batches as u64 >= INFLATED / MAX_BYTES / 2,
        "{batches} batches for {} MiB inflated",
        written.inflated >> 20
    );
    assert_eq!(
        acknowledged(&state),
        ["big.ndjson.gz"],
        "acknowledged once, after its last batch"
    );
    assert!(
        peak < PEAK_LIMIT,
        "peak resident size {} MiB, over the {} MiB bound, for a {} MiB object \
         ({} MiB compressed) in {batches} batches",
        peak >> 20,
        PEAK_LIMIT >> 20,
        written.inflated >> 20,
        written.compressed >> 20
    );
    eprintln!(
        "{} MiB inflated ({} MiB gzip), {} messages, {batches} batches: peak RSS {} MiB",
        written.inflated >> 20,
        written.compressed >> 20,
        written.messages,
        peak >> 20
    );
    support::drop_schema(&client, &schema).await;
}

/// SIGKILL while an object larger than a batch is part loaded: nothing of it is
/// acknowledged, and a restart reads it again from the start; the parts already
/// committed load again as no-ops (the merge on message id), so every message is
/// stored exactly once and the object is acknowledged once.
#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    skip_services,
    ignore = "needs PostgreSQL or the S3/SQS emulator; TRACKTABLE_SKIP_SERVICES is set"
)]
async fn killed_part_way_through_an_object_a_restart_loads_every_message_once() {
    let Some(client) = support::postgres().await else {
        return;
    };
    let work = tempfile::tempdir().expect("tempdir");
    let source = work.path().join("events");
    let state = work.path().join("state");
    std::fs::create_dir_all(&source).expect("events directory");
    let written = gzip_object(&source.join("big.ndjson.gz"), 48 * 1024 * 1024, 8, 5)
        .expect("write the gzip object");
    let schema = support::schema("large_kill");
    // 1000 messages a batch, one in flight: some 40 batches, loaded one at a time.
    let pipeline = pipeline(work.path(), &source, &state, &schema, 1000, 1 << 30, 1);
    let log = work.path().join("first.log");
    let mut child = support::KillOnDrop(run(&pipeline, false, &log));

    let deadline = Instant::now() + Duration::from_secs(120);
    while batches(&client, &schema).await < 4 {
        assert!(
            child.try_wait().expect("poll tracktable").is_none(),
            "tracktable exited:\n{}",
            log_tail(&log)
        );
        assert!(
            Instant::now() < deadline,
            "4 batches not committed within 120 s:\n{}",
            log_tail(&log)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.kill().expect("SIGKILL tracktable");
    let _ = child.wait();
    let (loaded, _) = stored(&client, &schema).await;
    assert!(
        loaded > 0 && loaded < written.messages as i64,
        "killed part way through: {loaded} of {} messages stored",
        written.messages
    );
    assert!(
        acknowledged(&state).is_empty(),
        "nothing acknowledged before the object's last part committed"
    );

    let log = work.path().join("restart.log");
    let restart = run(&pipeline, true, &log);
    let (status, _) = tokio::task::spawn_blocking(move || {
        wait_with_peak_rss(restart, Duration::from_secs(300), "the restart")
    })
    .await
    .expect("wait for tracktable");
    assert!(
        status.success(),
        "restart exit {status}:\n{}",
        log_tail(&log)
    );
    let (messages, repeated) = stored(&client, &schema).await;
    assert_eq!(messages, written.messages as i64, "every message stored");
    assert_eq!(repeated, 0, "exactly once");
    assert_eq!(acknowledged(&state), ["big.ndjson.gz"], "acknowledged once");
    support::drop_schema(&client, &schema).await;
}
