//! Memory is bounded by the batches, whatever the object: two single objects far larger
//! than a batch.
//!
//! 1. **A JSON array of 1M elements** (one object, about 100 MB), run in this process
//!    into the counting warehouse at PostgreSQL's default batch settings: it must load
//!    in batches of at most `max_rows` messages plus one part's overshoot (a part takes
//!    a whole 64 KiB read of the array), every message once, the object acknowledged
//!    once.
//! 2. **A gzip object that inflates to 2 GiB** of valid generated events: the release
//!    `tracktable run --once` (mimalloc, the real loader) loads it into the real
//!    PostgreSQL at the default batch settings (30 s, 50k messages, 64 MiB, 2 in flight).
//!    Every message must be stored once, in several batches, the object acknowledged
//!    once, and the process's peak resident size (`wait4`'s `ru_maxrss`) must stay
//!    under **512 MiB**. Admitted whole, as objects were, its rows alone needed several
//!    GiB and the process was killed for memory.
//!
//! Run: `cargo bench --bench memory` (PostgreSQL at `DATABASE_URL`, default
//! postgres://postgres@127.0.0.1:5432/postgres; schema `tracktable_memory`, dropped
//! before and after). `TRACKTABLE_MEMORY_ELEMENTS` (default 1000000) and
//! `TRACKTABLE_MEMORY_INFLATED_MIB` (default 2048) size the two objects. It exits
//! non-zero when a bound is broken. Figures go in BENCHMARKS.md.

#[path = "../tests/integration/support/large_object.rs"]
mod large_object;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use tracktable::config::BatchFile;
use tracktable_testkit::counting::run_dir;

const SCHEMA: &str = "tracktable_memory";

/// The bound the 2 GiB object must load within.
const PEAK_LIMIT: u64 = 512 * 1024 * 1024;

/// PostgreSQL's default `max_rows` (`config::default_batch_size`).
const MAX_ROWS: u64 = 50_000;

/// What one part may add to a batch beyond `max_rows`: the elements of one 64 KiB read
/// of the array (about 650 of these) and some slack.
const PART_OVERSHOOT: u64 = 2_000;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn main() -> ExitCode {
    // `cargo bench` passes `--bench`; a filter that names another bench skips this one.
    if std::env::args()
        .skip(1)
        .any(|arg| !arg.starts_with("--") && !"memory".contains(arg.as_str()))
    {
        return ExitCode::SUCCESS;
    }
    let mut failed = false;
    for (name, result) in [
        ("JSON array", json_array_case()),
        ("2 GiB gzip", gzip_case()),
    ] {
        if let Err(error) = result {
            eprintln!("memory: {name}: {error}");
            failed = true;
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// The 1M-element array, in this process, into the counting warehouse.
fn json_array_case() -> Result<(), String> {
    let elements = env_number("TRACKTABLE_MEMORY_ELEMENTS", 1_000_000);
    let work = tempfile::tempdir().map_err(|error| error.to_string())?;
    let source = work.path().join("events");
    let state = work.path().join("state");
    std::fs::create_dir_all(&source).map_err(|error| error.to_string())?;
    let bytes = large_object::json_array(&source.join("array.json"), elements)
        .map_err(|error| format!("write the array: {error}"))?;
    let started = Instant::now();
    let batch = BatchFile {
        interval: Some(Duration::from_secs(3600)),
        ..BatchFile::default()
    };
    let (_, warehouse) = run_dir(&source, &state, 1, batch)?;
    let elapsed = started.elapsed().as_secs_f64();
    let mut batches: BTreeMap<u64, u64> = BTreeMap::new();
    for load in warehouse.loads() {
        if load.table != "tracks" {
            *batches.entry(load.batch.0).or_default() += load.rows;
        }
    }
    let sizes: Vec<u64> = batches.into_values().collect();
    let total: u64 = sizes.iter().sum();
    let largest = sizes.iter().copied().max().unwrap_or(0);
    println!(
        "JSON array: {elements} elements, {} MiB, one object: {} batches, largest {largest} \
         messages (max_rows {MAX_ROWS}), {total} messages, {elapsed:.2} s in-process; \
         this process's peak RSS {} MiB",
        bytes >> 20,
        sizes.len(),
        self_peak_mib().unwrap_or(0),
    );
    if total != elements {
        return Err(format!("{total} messages loaded of {elements}"));
    }
    if largest > MAX_ROWS + PART_OVERSHOOT {
        return Err(format!("a batch of {largest} messages: {sizes:?}"));
    }
    let done = acknowledged(&state);
    if done != ["array.json"] {
        return Err(format!("acknowledged {done:?}, not the object once"));
    }
    Ok(())
}

/// The 2 GiB gzip object through the release binary into PostgreSQL.
fn gzip_case() -> Result<(), String> {
    let inflated = env_number("TRACKTABLE_MEMORY_INFLATED_MIB", 2048) * 1024 * 1024;
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let work = tempfile::tempdir().map_err(|error| error.to_string())?;
    let source = work.path().join("events");
    let state = work.path().join("state");
    std::fs::create_dir_all(&source).map_err(|error| error.to_string())?;
    let generated = Instant::now();
    let written = large_object::gzip_object(&source.join("big.ndjson.gz"), inflated, 8, 7)
        .map_err(|error| format!("write the gzip object: {error}"))?;
    println!(
        "gzip: {} MiB inflated, {} MiB compressed, {} messages (generated in {:.1} s)",
        written.inflated >> 20,
        written.compressed >> 20,
        written.messages,
        generated.elapsed().as_secs_f64()
    );
    let pipeline = work.path().join("memory.toml");
    std::fs::write(
        &pipeline,
        format!(
            "name = \"memory\"\n[source]\ntype = \"dir\"\npath = \"{}\"\nstate_dir = \"{}\"\n\
             [warehouse]\ntype = \"postgres\"\nurl = \"{url}\"\nschema = \"{SCHEMA}\"\n",
            source.display(),
            state.display()
        ),
    )
    .map_err(|error| error.to_string())?;

    let database = Database::connect(&url)?;
    database.execute(&format!("DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))?;
    let log = work.path().join("run.log");
    let started = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_tracktable"))
        .args(["run", "--once", "--pipeline"])
        .arg(&pipeline)
        .env("TRACKTABLE_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).map_err(|error| error.to_string())?)
        .spawn()
        .map_err(|error| format!("start tracktable run: {error}"))?;
    let (status, peak) =
        large_object::wait_with_peak_rss(child, Duration::from_secs(1800), "the 2 GiB object");
    let elapsed = started.elapsed().as_secs_f64();
    if !status.success() {
        return Err(format!(
            "tracktable run exited {status}: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        ));
    }
    let (messages, repeated) = database.messages()?;
    let batches = database.count(&format!(
        "SELECT count(DISTINCT batch) FROM {SCHEMA}._tracktable_loads"
    ))?;
    let _ = database.execute(&format!("DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"));
    println!(
        "gzip: `tracktable run --once`, default batches: {messages} messages stored \
         ({repeated} repeated) in {batches} batches, {elapsed:.1} s; peak RSS {} MiB \
         (bound {} MiB)",
        peak >> 20,
        PEAK_LIMIT >> 20
    );
    if messages != written.messages as i64 || repeated != 0 {
        return Err(format!(
            "{messages} messages stored ({repeated} repeated) of {}",
            written.messages
        ));
    }
    if batches < 2 {
        return Err(format!(
            "{batches} batches: the object did not span batches"
        ));
    }
    let done = acknowledged(&state);
    if done != ["big.ndjson.gz"] {
        return Err(format!("acknowledged {done:?}, not the object once"));
    }
    if peak >= PEAK_LIMIT {
        return Err(format!(
            "peak RSS {} MiB is over the {} MiB bound",
            peak >> 20,
            PEAK_LIMIT >> 20
        ));
    }
    Ok(())
}

/// This process's peak resident size (VmHWM), in MiB.
fn self_peak_mib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

/// Every line of the done logs under `state`: one per acknowledged object.
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

/// A PostgreSQL client on a runtime of its own.
struct Database {
    runtime: tokio::runtime::Runtime,
    client: tokio_postgres::Client,
}

impl Database {
    fn connect(url: &str) -> Result<Database, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|error| error.to_string())?;
        let client = runtime.block_on(async {
            let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                .await
                .map_err(|error| format!("PostgreSQL at {url}: {error}"))?;
            tokio::spawn(connection);
            Ok::<_, String>(client)
        })?;
        Ok(Database { runtime, client })
    }

    fn execute(&self, sql: &str) -> Result<(), String> {
        self.runtime
            .block_on(self.client.batch_execute(sql))
            .map_err(|error| format!("{sql}: {error}"))
    }

    fn count(&self, sql: &str) -> Result<i64, String> {
        self.runtime
            .block_on(self.client.query_one(sql, &[]))
            .map(|row| row.get(0))
            .map_err(|error| format!("{sql}: {error}"))
    }

    /// Messages stored over the tables of one row per message, and how many rows
    /// repeat a message id.
    fn messages(&self) -> Result<(i64, i64), String> {
        let (mut messages, mut repeated) = (0, 0);
        for table in [
            "tracks",
            "pages",
            "screens",
            "identifies",
            "groups",
            "aliases",
        ] {
            let exists = self.count(&format!(
                "SELECT count(*) FROM information_schema.tables \
                 WHERE table_schema = '{SCHEMA}' AND table_name = '{table}'"
            ))?;
            if exists == 0 {
                continue;
            }
            messages += self.count(&format!("SELECT count(*) FROM {SCHEMA}.{table}"))?;
            repeated += self.count(&format!(
                "SELECT count(*) - count(DISTINCT id) FROM {SCHEMA}.{table}"
            ))?;
        }
        Ok((messages, repeated))
    }
}
