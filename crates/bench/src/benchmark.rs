//! benchmark: the end-to-end benchmark behind `tracktable-bench`.
//!
//! Generates a directory of sample events, loads it through the real pipeline into
//! PostgreSQL (schema `tracktable_bench`), then copies the very same rows (decoded and
//! routed beforehand, outside the timing) with one plain binary COPY per table into
//! identical empty tables (schema `tracktable_bench_copy`), over as many connections as
//! the pipeline has workers. The COPY rate is the warehouse's own limit; the ratio says
//! what tracktable's guarantees (staging, merge on message id, discards, bookkeeping,
//! batching, acknowledgement) cost on top of it. Last, tracktable's own loader loads the
//! same prepared rows into a third schema (`_load`): the pipeline without decoding, which
//! separates what the guarantees cost from what decoding on the server's cores costs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::affinity::{AffinityError, CpuList, Split};
use tracktable::config::{BatchFile, PipelineFile, PostgresFile, SslMode};
use tracktable::decode::Limits;
use tracktable::route::{Router, Row};
use tracktable::run::{self, RunOptions};
use tracktable::telemetry::RunStats;
use tracktable::warehouse::{postgres, sql};
use tracktable_gen::{self as generate, GenConfig};

/// The pipeline's schema; the COPY baseline's is this with `_copy`.
pub const SCHEMA: &str = "tracktable_bench";

#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub database_url: String,
    pub events: u64,
    pub workers: usize,
    pub batch_interval: Duration,
    /// Close a worker's batch once it holds this many messages (`None`: the pipeline
    /// default).
    pub max_batch_rows: Option<u64>,
    /// Close a worker's batch once it holds this many input bytes (`None`: the
    /// pipeline default).
    pub max_batch_bytes: Option<u64>,
    /// Closed batches awaiting their commit before input stops (`None`: the pipeline
    /// default).
    pub max_batches_in_flight: Option<usize>,
    /// Warehouse connections per worker (`None`: the pipeline default); the loader-alone
    /// phase uses as many per worker.
    pub load_connections: Option<usize>,
    /// Scratch directory for the generated objects (emptied first).
    pub scratch: PathBuf,
    /// Run the (local) server's processes on these CPUs and this process on the others,
    /// as if the warehouse had a machine of its own (`None`: leave both where they are).
    pub warehouse_cpus: Option<CpuList>,
}

/// What one benchmark run measured.
#[derive(Debug, Clone, Copy)]
pub struct BenchReport {
    pub events: u64,
    /// Rows the pipeline stored (all tables, bookkeeping excluded).
    pub pipeline_rows: i64,
    pub pipeline: Duration,
    /// CPU over the pipeline phase (Linux only).
    pub pipeline_cpu: Option<CpuUse>,
    /// Rows the baseline copied.
    pub copy_rows: u64,
    pub copy: Duration,
    /// CPU over the baseline phase (Linux only).
    pub copy_cpu: Option<CpuUse>,
    /// tracktable's own load path (DDL, staging, merge on message id, bookkeeping, one
    /// transaction per table) over the baseline's prepared rows: the pipeline without
    /// decoding.
    pub loader: Duration,
    /// CPU over the loader phase (Linux only).
    pub loader_cpu: Option<CpuUse>,
    /// The write-ahead log each phase wrote (`None` where the server would not say).
    pub pipeline_wal: Option<WalRange>,
    pub copy_wal: Option<WalRange>,
    pub loader_wal: Option<WalRange>,
}

impl BenchReport {
    pub fn pipeline_rate(&self) -> f64 {
        self.events as f64 / self.pipeline.as_secs_f64().max(1e-9)
    }

    pub fn copy_rate(&self) -> f64 {
        self.events as f64 / self.copy.as_secs_f64().max(1e-9)
    }

    pub fn loader_rate(&self) -> f64 {
        self.events as f64 / self.loader.as_secs_f64().max(1e-9)
    }

    /// The pipeline's rate as a share of the raw COPY's.
    pub fn pipeline_ratio(&self) -> f64 {
        self.pipeline_rate() / self.copy_rate()
    }

    pub fn loader_ratio(&self) -> f64 {
        self.loader_rate() / self.copy_rate()
    }
}

/// Where the server's write-ahead log stood before and after a phase: how much the
/// phase made it write (every row, index entry and page image the server logged, so two
/// phases that store the same rows can be compared for the work around them), and the
/// positions to give `pg_waldump --stats` to see what it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalRange {
    pub start: u64,
    pub end: u64,
}

impl WalRange {
    /// Bytes of WAL between the two positions (other sessions' writes included).
    pub fn bytes(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    /// A position as PostgreSQL writes a `pg_lsn`: `3/9F91EB58`.
    pub fn format(position: u64) -> String {
        format!("{:X}/{:X}", position >> 32, position & 0xFFFF_FFFF)
    }

    /// Parses a `pg_lsn` as PostgreSQL prints it.
    pub fn parse(lsn: &str) -> Option<u64> {
        let (high, low) = lsn.split_once('/')?;
        let high = u32::from_str_radix(high, 16).ok()?;
        let low = u32::from_str_radix(low, 16).ok()?;
        Some(u64::from(high) << 32 | u64::from(low))
    }
}

/// The server's current WAL insert position; `None` on a standby, where the function is
/// refused, or on anything that does not answer it like PostgreSQL 10 and later.
async fn wal_position(client: &tokio_postgres::Client) -> Option<u64> {
    let row = client
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .ok()?;
    WalRange::parse(row.try_get::<_, &str>(0).ok()?)
}

/// The WAL written between `start` and now.
async fn wal_since(client: &tokio_postgres::Client, start: Option<u64>) -> Option<WalRange> {
    let end = wal_position(client).await?;
    Some(WalRange { start: start?, end })
}

/// The spread of one figure over several rounds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    /// `None` for no values. The median of an even count is the mean of the middle two.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<Spread> {
        let mut sorted: Vec<f64> = values.into_iter().collect();
        sorted.sort_by(f64::total_cmp);
        let (&min, &max) = (sorted.first()?, sorted.last()?);
        let middle = sorted.len() / 2;
        let median = if sorted.len() % 2 == 1 {
            sorted[middle]
        } else {
            (sorted[middle - 1] + sorted[middle]) / 2.0
        };
        Some(Spread { median, min, max })
    }
}

/// What several rounds of the benchmark measured, figure by figure.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub pipeline_ratio: Spread,
    pub loader_ratio: Spread,
    pub pipeline_secs: Spread,
    pub copy_secs: Spread,
}

impl Summary {
    /// `None` for no reports.
    pub fn of(reports: &[BenchReport]) -> Option<Summary> {
        let spread = |figure: fn(&BenchReport) -> f64| Spread::of(reports.iter().map(figure));
        Some(Summary {
            pipeline_ratio: spread(BenchReport::pipeline_ratio)?,
            loader_ratio: spread(BenchReport::loader_ratio)?,
            pipeline_secs: spread(|report| report.pipeline.as_secs_f64())?,
            copy_secs: spread(|report| report.copy.as_secs_f64())?,
        })
    }
}

/// CPU seconds spent over a phase: by this process (the pipeline's decoding and loading,
/// or the baseline's encoding) and by the whole machine (PostgreSQL's share is the
/// difference, when nothing else runs), out of the core-seconds the machine had. The
/// wall clock alone could not say whether a phase was short of CPU; these do.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuUse {
    pub process: f64,
    pub machine_busy: f64,
    pub machine_total: f64,
    /// CPU of the processes named `postgres` on this machine (backends, and through
    /// their parent's counters the ones that exited), when the server is local: the
    /// machine's busy time minus this process also counts whatever else ran.
    pub server: Option<f64>,
}

/// A reading of the CPU counters in `/proc` (Linux; `None` elsewhere or when unreadable).
#[derive(Debug, Clone, Copy)]
struct CpuReading {
    process: f64,
    busy: f64,
    total: f64,
    server: Option<f64>,
}

impl CpuReading {
    /// Clock ticks per second of `/proc`'s counters (`USER_HZ`, 100 on Linux).
    const TICKS: f64 = 100.0;

    fn now() -> Option<CpuReading> {
        let own = std::fs::read_to_string("/proc/self/stat").ok()?;
        let process = Self::ticks(&own, false)?.1;
        let machine = std::fs::read_to_string("/proc/stat").ok()?;
        // user nice system idle iowait irq softirq steal (guest time is inside user).
        let counters: Vec<f64> = machine
            .lines()
            .next()?
            .split_whitespace()
            .skip(1)
            .take(8)
            .map(|field| field.parse().ok())
            .collect::<Option<_>>()?;
        let idle = counters.get(3)? + counters.get(4)?;
        let total: f64 = counters.iter().sum();
        Some(CpuReading {
            process: process / Self::TICKS,
            busy: (total - idle) / Self::TICKS,
            total: total / Self::TICKS,
            server: Self::server_ticks().map(|ticks| ticks / Self::TICKS),
        })
    }

    /// A `/proc/<pid>/stat` line's command name and its CPU ticks: utime + stime, and
    /// with `children` also the reaped children's cutime + cstime.
    fn ticks(stat: &str, children: bool) -> Option<(&str, f64)> {
        let name = stat.get(stat.find('(')? + 1..stat.rfind(')')?)?;
        // After the parenthesised command name: utime, stime, cutime and cstime are the
        // 12th to 15th fields.
        let after = stat.get(stat.rfind(')')? + 2..)?;
        let fields: Vec<&str> = after.split_whitespace().collect();
        let field = |index: usize| fields.get(index)?.parse::<f64>().ok();
        let mut ticks = field(11)? + field(12)?;
        if children {
            ticks += field(13)? + field(14)?;
        }
        Some((name, ticks))
    }

    /// CPU ticks of every process named `postgres`, counting children they reaped (a
    /// backend's CPU moves to the postmaster's counters when its connection closes).
    /// `None` when there is none.
    fn server_ticks() -> Option<f64> {
        let mut found = false;
        let mut total = 0.0;
        for entry in std::fs::read_dir("/proc").ok()?.flatten() {
            let is_pid = entry
                .file_name()
                .to_str()
                .is_some_and(|name| name.bytes().all(|byte| byte.is_ascii_digit()));
            if !is_pid {
                continue;
            }
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue; // exited meanwhile
            };
            if let Some(("postgres", ticks)) = Self::ticks(&stat, true) {
                found = true;
                total += ticks;
            }
        }
        found.then_some(total)
    }

    fn since(self, start: Option<CpuReading>) -> Option<CpuUse> {
        let start = start?;
        Some(CpuUse {
            process: self.process - start.process,
            machine_busy: self.busy - start.busy,
            machine_total: self.total - start.total,
            server: self
                .server
                .zip(start.server)
                .map(|(end, start)| end - start),
        })
    }
}

/// CPU spent since `start`, if both readings exist.
fn cpu_since(start: Option<CpuReading>) -> Option<CpuUse> {
    CpuReading::now()?.since(start)
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("cannot prepare the scratch directory {path}: {source}")]
    Scratch {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Generate(#[from] generate::GenError),
    #[error(transparent)]
    Config(#[from] tracktable::config::ConfigError),
    #[error(transparent)]
    Run(#[from] run::RunError),
    #[error("PostgreSQL at {url}: {source}")]
    Database {
        url: String,
        source: tokio_postgres::Error,
    },
    #[error(transparent)]
    Copy(#[from] postgres::PostgresError),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error(transparent)]
    Affinity(#[from] AffinityError),
    #[error(
        "the baseline copied {copied} rows but the pipeline stored {stored}: not the same rows"
    )]
    Mismatch { copied: u64, stored: i64 },
}

/// Runs the benchmark, printing progress lines to stderr.
pub fn bench(options: &BenchOptions) -> Result<BenchReport, BenchError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(options.workers.max(1))
        .enable_all()
        .build()
        .map_err(BenchError::Runtime)?;
    let url = options.database_url.clone();
    let database = |source| BenchError::Database {
        url: url.clone(),
        source,
    };
    let client = runtime
        .block_on(connect(&options.database_url))
        .map_err(database)?;
    // Held to the end of the round; dropping it moves the server and this process back.
    let _split = match &options.warehouse_cpus {
        None => None,
        Some(cpus) => {
            let backend: i32 = runtime
                .block_on(client.query_one("SELECT pg_backend_pid()", &[]))
                .map_err(database)?
                .get(0);
            let split = Split::new(backend.unsigned_abs(), cpus)?;
            eprintln!(
                "bench: PostgreSQL (postmaster {}, {} processes) on CPUs {}, this process on CPUs {}; \
                 the server moves back when the round ends (if the bench is killed first: {})",
                split.server.root(),
                split.server.moved,
                split.server.cpus,
                split.tracktable,
                split.server.undo_command()
            );
            Some(split)
        }
    };
    let copy_schema = format!("{SCHEMA}_copy");
    let load_schema = format!("{SCHEMA}_load");
    runtime
        .block_on(client.batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {} CASCADE; DROP SCHEMA IF EXISTS {} CASCADE; \
             DROP SCHEMA IF EXISTS {} CASCADE",
            sql::ident(SCHEMA),
            sql::ident(&copy_schema),
            sql::ident(&load_schema)
        )))
        .map_err(database)?;

    // 1. Sample traffic (no type drift: both sides must agree on every column).
    let scratch = &options.scratch;
    if scratch.exists() {
        std::fs::remove_dir_all(scratch).map_err(|source| BenchError::Scratch {
            path: scratch.clone(),
            source,
        })?;
    }
    let events_dir = scratch.join("events");
    let config = GenConfig {
        events: options.events,
        seed: 7,
        drift_rate: 0.0,
        bad_rate: 0.001,
    };
    let generated = generate::write_dir(&config, &events_dir, 5_000)?;
    eprintln!(
        "bench: generated {} events in {} objects",
        generated.lines, generated.objects
    );

    // 2. The pipeline, on a quiet server.
    settle(&runtime, &client, &options.database_url, &[])?;
    let defaults = BatchFile::default();
    let batch = BatchFile {
        interval: Some(options.batch_interval),
        max_rows: options.max_batch_rows,
        max_bytes: options.max_batch_bytes,
        max_in_flight: options
            .max_batches_in_flight
            .unwrap_or(defaults.max_in_flight),
        load_connections: options
            .load_connections
            .unwrap_or(defaults.load_connections),
    };
    let file = PipelineFile::local(
        "bench",
        &events_dir,
        &scratch.join("state"),
        &options.database_url,
        SCHEMA,
        batch,
    );
    let pipeline = file.validate(&scratch.join("bench.toml"))?;
    let stats = Arc::new(RunStats::default());
    let wal_start = runtime.block_on(wal_position(&client));
    let cpu_start = CpuReading::now();
    let summary = run::run(
        &pipeline,
        &RunOptions {
            stats,
            ..RunOptions::once(options.workers)
        },
    )?;
    let pipeline_cpu = cpu_since(cpu_start);
    let pipeline_wal = runtime.block_on(wal_since(&client, wal_start));
    let events = summary.stats.messages;
    eprintln!(
        "bench: pipeline loaded {events} events in {:.2}s",
        summary.elapsed.as_secs_f64()
    );

    // 3. The same rows, routed outside the timing, one entry per key.
    let by_table = route_dir(&events_dir);
    let tables: Vec<String> = runtime
        .block_on(client.query(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1 \
             AND table_name NOT IN ('_tracktable_loads', '_discards') ORDER BY 1",
            &[&SCHEMA],
        ))
        .map_err(database)?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let mut ddl = vec![format!("CREATE SCHEMA {}", sql::ident(&copy_schema))];
    for table in &tables {
        ddl.push(format!(
            "CREATE TABLE {} (LIKE {} INCLUDING ALL)",
            sql::qualified(&copy_schema, table),
            sql::qualified(SCHEMA, table)
        ));
    }
    runtime
        .block_on(client.batch_execute(&ddl.join("; ")))
        .map_err(database)?;
    let pipeline_rows: i64 = {
        let mut total = 0;
        for table in &tables {
            let row = runtime
                .block_on(client.query_one(
                    &format!("SELECT count(*) FROM {}", sql::qualified(SCHEMA, table)),
                    &[],
                ))
                .map_err(database)?;
            total += row.get::<_, i64>(0);
        }
        total
    };

    // 4. The baseline: plain binary COPY over `workers` connections, the tables spread
    //    largest first onto the least loaded connection, as the loader spreads them.
    //    Dealt out in name order instead, one connection got 378k of the 512k rows
    //    (`tracks` among them) and the baseline took 3.9-4.6 s where balanced it takes
    //    2.9 s: it measured its own imbalance, not the warehouse (BENCHMARKS.md).
    let present: Vec<(&String, &Vec<Row>)> = tables
        .iter()
        .filter_map(|table| by_table.get(table.as_str()).map(|rows| (table, rows)))
        .collect();
    let sizes: Vec<usize> = present.iter().map(|(_, rows)| rows.len()).collect();
    let shares: Vec<Vec<(String, Vec<Row>)>> =
        tracktable::load::assign_lanes_by_size(&sizes, options.workers.max(1))
            .into_iter()
            .map(|lane| {
                lane.into_iter()
                    .map(|index| (present[index].0.clone(), present[index].1.clone()))
                    .collect()
            })
            .collect();
    // The baseline starts right after the pipeline's half-million inserts, where
    // autovacuum's analyze of the fresh tables and the checkpointer's writes can land on
    // it. Settling first did not remove every slow baseline (BENCHMARKS.md).
    settle(&runtime, &client, &options.database_url, &tables)?;
    let wal_start = runtime.block_on(wal_position(&client));
    let started = Instant::now();
    let cpu_start = CpuReading::now();
    let copied = runtime.block_on(async {
        let mut tasks = Vec::new();
        for share in shares {
            let url = options.database_url.clone();
            let schema = copy_schema.clone();
            tasks.push(tokio::spawn(async move {
                let mut client = connect(&url).await.map_err(|source| BenchError::Database {
                    url: url.clone(),
                    source,
                })?;
                let mut copied = 0;
                for (table, rows) in &share {
                    copied += postgres::raw_copy(&mut client, &schema, table, rows).await?;
                }
                Ok::<u64, BenchError>(copied)
            }));
        }
        Ok::<u64, BenchError>(join(tasks).await?.into_iter().sum())
    })?;
    let copy = started.elapsed();
    let copy_cpu = cpu_since(cpu_start);
    let copy_wal = runtime.block_on(wal_since(&client, wal_start));
    eprintln!(
        "bench: raw COPY of the same {copied} rows in {:.2}s",
        copy.as_secs_f64()
    );
    if copied as i64 != pipeline_rows {
        return Err(BenchError::Mismatch {
            copied,
            stored: pipeline_rows,
        });
    }

    // 5. tracktable's loader alone on the same prepared rows, into a third schema.
    settle(&runtime, &client, &options.database_url, &[])?;
    let wal_start = runtime.block_on(wal_position(&client));
    let (loader, loader_cpu) = load_prepared(&runtime, options, &load_schema, &by_table)?;
    let loader_wal = runtime.block_on(wal_since(&client, wal_start));
    eprintln!(
        "bench: tracktable's loader on the same prepared rows in {:.2}s",
        loader.as_secs_f64()
    );
    Ok(BenchReport {
        events,
        pipeline_rows,
        pipeline: summary.elapsed,
        pipeline_cpu,
        copy_rows: copied,
        copy,
        copy_cpu,
        loader,
        loader_cpu,
        pipeline_wal,
        copy_wal,
        loader_wal,
    })
}

/// Loads `by_table` through [`postgres::PostgresWarehouse`]'s loader into `schema`, as
/// one batch spread over as many connections as the pipeline would use (`workers` ×
/// the default load connections, largest table first: `load::assign_lanes`). The
/// schema is prepared and each table's new columns are worked out before the timing;
/// the timing covers what a batch's load costs the pipeline: creating the tables,
/// staging, the merge on message id, `_discards`, the bookkeeping, the commits. Returns
/// the time and the CPU of that timed part.
fn load_prepared(
    runtime: &tokio::runtime::Runtime,
    options: &BenchOptions,
    schema: &str,
    by_table: &HashMap<String, Vec<Row>>,
) -> Result<(Duration, Option<CpuUse>), BenchError> {
    use tracktable::warehouse::{Loader, TableBatch, Warehouse};
    let warehouse = Arc::new(postgres::PostgresWarehouse::new(&PostgresFile {
        url: options.database_url.clone(),
        password_env: None,
        schema: schema.to_owned(),
        sslmode: SslMode::Auto,
        sslrootcert: None,
    })?);
    runtime.block_on(warehouse.prepare())?;
    let mut names: Vec<&String> = by_table.keys().collect();
    names.sort();
    let mut batches = Vec::new();
    for name in names {
        let rows = by_table[name].clone();
        let Some(table) = rows.first().map(|row| row.table.clone()) else {
            continue;
        };
        let mut seen = std::collections::HashSet::new();
        tracktable::columns::observe(&rows, &mut seen);
        let mut observed: Vec<_> = seen
            .into_iter()
            .map(|(_, column, column_type)| (column, column_type))
            .collect();
        observed.sort();
        batches.push(TableBatch {
            batch: tracktable::batch::BatchId(1),
            table,
            observed,
            rows,
        });
    }
    let lanes = tracktable::load::assign_lanes(
        &batches,
        options.workers.max(1)
            * options
                .load_connections
                .unwrap_or(BatchFile::default().load_connections),
    );
    let batches = Arc::new(batches);
    let started = Instant::now();
    let cpu_start = CpuReading::now();
    runtime.block_on(async {
        let mut tasks = Vec::new();
        for lane in lanes {
            let warehouse = Arc::clone(&warehouse);
            let batches = Arc::clone(&batches);
            tasks.push(tokio::spawn(async move {
                let mut loader = warehouse.loader().await?;
                for index in lane {
                    loader.load(&batches[index]).await?;
                }
                Ok::<(), BenchError>(())
            }));
        }
        join(tasks).await
    })?;
    Ok((started.elapsed(), cpu_since(cpu_start)))
}

/// Every row of every object, grouped by table, one per key (the baseline only needs
/// the same number of rows per table as the pipeline stores).
fn route_dir(dir: &Path) -> HashMap<String, Vec<Row>> {
    let mut router = Router::new();
    let mut rows = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    for path in files.iter().filter(|path| path.is_file()) {
        let name: Arc<str> = Arc::from(
            path.file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
        if let Ok(file) = std::fs::File::open(path) {
            tracktable::route::rows_for_object(
                file,
                &name,
                &Limits::default(),
                &mut router,
                &mut rows,
            );
        }
    }
    let mut keyed: HashMap<String, HashMap<String, Row>> = HashMap::new();
    for row in rows {
        let table = keyed.entry(row.table.as_str().to_owned()).or_default();
        if sql::is_latest(row.table.as_str()) || !table.contains_key(&row.message_id) {
            table.insert(row.message_id.clone(), row);
        }
    }
    keyed
        .into_iter()
        .map(|(table, rows)| (table, rows.into_values().collect()))
        .collect()
}

/// Leaves the server quiet before a timed phase, outside the timing: the pipeline's
/// tables analysed (so autovacuum has nothing to start on them) and a checkpoint
/// written. `CHECKPOINT` needs superuser or `pg_checkpoint`; without it, the bench says
/// so and goes on.
fn settle(
    runtime: &tokio::runtime::Runtime,
    client: &tokio_postgres::Client,
    url: &str,
    tables: &[String],
) -> Result<(), BenchError> {
    runtime.block_on(async {
        for table in tables {
            client
                .batch_execute(&format!("ANALYZE {}", sql::qualified(SCHEMA, table)))
                .await
                .map_err(|source| BenchError::Database {
                    url: url.to_owned(),
                    source,
                })?;
        }
        if let Err(error) = client.batch_execute("CHECKPOINT").await {
            eprintln!(
                "bench: no CHECKPOINT before the timed phase ({error}); figures may be noisier"
            );
        }
        Ok(())
    })
}

/// Waits for every task; the first error (or a task that panicked) wins.
async fn join<T>(
    tasks: Vec<tokio::task::JoinHandle<Result<T, BenchError>>>,
) -> Result<Vec<T>, BenchError> {
    let mut results = Vec::with_capacity(tasks.len());
    for task in tasks {
        results.push(
            task.await
                .map_err(|error| BenchError::Runtime(std::io::Error::other(error)))??,
        );
    }
    Ok(results)
}

async fn connect(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_summarise_to_medians_and_ranges() {
        let report = |pipeline: f64, copy: f64| BenchReport {
            events: 300_000,
            pipeline_rows: 1,
            pipeline: Duration::from_secs_f64(pipeline),
            pipeline_cpu: None,
            copy_rows: 1,
            copy: Duration::from_secs_f64(copy),
            copy_cpu: None,
            loader: Duration::from_secs_f64(copy),
            loader_cpu: None,
            pipeline_wal: None,
            copy_wal: None,
            loader_wal: None,
        };
        assert_eq!(Summary::of(&[]), None);
        let one = Summary::of(&[report(10.0, 8.0)]).map(|summary| summary.pipeline_ratio);
        assert_eq!(
            one,
            Some(Spread {
                median: 0.8,
                min: 0.8,
                max: 0.8
            })
        );
        // Ratios 0.5, 0.75, 0.6, 0.8: the median of an even count is the middle pair's mean.
        let rounds = [
            report(10.0, 5.0),
            report(8.0, 6.0),
            report(10.0, 6.0),
            report(7.5, 6.0),
        ];
        let Some(summary) = Summary::of(&rounds) else {
            panic!("four rounds summarise");
        };
        assert!((summary.pipeline_ratio.median - 0.675).abs() < 1e-9);
        assert!((summary.pipeline_ratio.min - 0.5).abs() < 1e-9);
        assert!((summary.pipeline_ratio.max - 0.8).abs() < 1e-9);
        assert!((summary.loader_ratio.median - 1.0).abs() < 1e-9);
        assert!((summary.pipeline_secs.median - 9.0).abs() < 1e-9);
        assert!((summary.copy_secs.median - 6.0).abs() < 1e-9);
    }

    #[test]
    fn wal_positions_read_and_print_as_postgresql_writes_them() {
        let start = WalRange::parse("3/9F91EB58");
        assert_eq!(start, Some(0x3_9F91_EB58));
        assert_eq!(WalRange::format(0x3_9F91_EB58), "3/9F91EB58");
        assert_eq!(WalRange::format(0), "0/0");
        let range = WalRange {
            start: 0x3_FFFF_FF00,
            end: 0x4_0000_0100,
        };
        assert_eq!(range.bytes(), 0x200, "the high half carries");
        for bad in ["", "3", "3/", "/5", "G/1", "1/100000000", "1/2/3"] {
            assert_eq!(WalRange::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn stat_lines_give_the_command_and_its_ticks() {
        // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt
        // cmajflt utime stime cutime cstime ...
        let postmaster =
            "812 (postgres) S 1 812 812 0 -1 4194560 900 52000 0 3 150 70 4000 1200 20 0";
        assert_eq!(
            CpuReading::ticks(postmaster, false),
            Some(("postgres", 220.0))
        );
        assert_eq!(
            CpuReading::ticks(postmaster, true),
            Some(("postgres", 5420.0))
        );
        // A command name may hold spaces and parentheses; the last `)` ends it.
        let odd = "77 (tokio (io) 1) R 5 77 77 0 -1 0 0 0 0 0 9 1 0 0 20 0";
        assert_eq!(CpuReading::ticks(odd, true), Some(("tokio (io) 1", 10.0)));
        assert_eq!(CpuReading::ticks("77 (cut", true), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn cpu_readings_parse_and_count_this_process_work() {
        let start = CpuReading::now();
        assert!(start.is_some(), "/proc/self/stat and /proc/stat parse");
        // Spin for a while: at least a few clock ticks of this process's time.
        let spun = Instant::now();
        let mut x: u64 = 1;
        while spun.elapsed() < Duration::from_millis(200) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let used = cpu_since(start).expect("a second reading");
        assert!(used.process >= 0.05, "{used:?}");
        assert!(used.machine_busy >= used.process * 0.5, "{used:?}");
        assert!(used.machine_busy <= used.machine_total + 0.01, "{used:?}");
    }
}
