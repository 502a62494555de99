//! demo: the whole job on a laptop — sample traffic into a local PostgreSQL — and a
//! report of what it made.
//!
//! Generates a few hundred thousand Segment-spec events (with type drift and malformed
//! lines) into a scratch directory, runs the real pipeline (`run::run`, the same code
//! as `tracktable run`) into the schema `tracktable_demo`, and prints the tables,
//! columns, discards and rejections it produced.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::PipelineFile;
use crate::run::{self, RunOptions};
use crate::telemetry::RunStats;
use tracktable_gen::{self as generate, GenConfig};
use tracktable_local_postgres as local_postgres;

/// The default database when `DATABASE_URL` is not set.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// The schema the demo (re)creates.
pub const SCHEMA: &str = "tracktable_demo";

/// What to demo.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// The PostgreSQL the user named (`DATABASE_URL`), which may carry a password: it is
    /// the user's own environment. `None`: [`DEFAULT_DATABASE_URL`], or a throwaway
    /// server when nothing answers there.
    pub database_url: Option<String>,
    /// Start a throwaway server even if one answers at the default URL.
    pub local_server: bool,
    /// Leave the throwaway server running when the demo ends (for `psql`).
    pub keep_server: bool,
    pub events: u64,
    pub workers: usize,
    /// Scratch directory for the generated objects (emptied first).
    pub scratch: PathBuf,
    /// Where to keep a throwaway PostgreSQL cluster if none answers on loopback.
    pub local_postgres_dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(
        "no PostgreSQL answers at {}: {}\n\
         (and no PostgreSQL server binaries are installed here to start a throwaway one)\n\
         Start one, or point DATABASE_URL at one, e.g.:\n  \
         sudo apt-get install postgresql && sudo pg_ctlcluster $(ls /etc/postgresql) main start\n  \
         docker run -d -p 5432:5432 -e POSTGRES_HOST_AUTH_METHOD=trust postgres:16\n  \
         DATABASE_URL=postgres://user@host:5432/db tracktable demo",
        crate::conninfo::redacted(url),
        crate::report::causes(source)
    )]
    NoDatabase {
        url: String,
        source: tokio_postgres::Error,
    },
    #[error(
        "cannot connect to DATABASE_URL {}: {}\n\
         (the demo uses the server you name; unset DATABASE_URL to let it find or start one)",
        crate::conninfo::redacted(url),
        crate::report::causes(source)
    )]
    Named {
        url: String,
        source: tokio_postgres::Error,
    },
    #[error("cannot prepare the scratch directory {path}: {source}")]
    Scratch {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Generate(#[from] generate::GenError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Run(#[from] run::RunError),
    #[error("reading the demo's results: {0}")]
    Report(tokio_postgres::Error),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("no PostgreSQL answered, and starting a throwaway one failed: {0}")]
    LocalPostgres(#[from] local_postgres::LocalPostgresError),
}

/// The PostgreSQL the demo loads into, and the throwaway server it started, if any.
struct Target {
    client: tokio_postgres::Client,
    /// Its URL, password included when the user gave one (never printed as is).
    url: String,
    local: Option<local_postgres::LocalPostgres>,
}

/// Runs the demo and prints its report to stdout.
pub fn demo(options: &DemoOptions) -> Result<(), DemoError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(DemoError::Runtime)?;
    let target = connect_or_start(&runtime, options)?;
    let result = demo_on(&runtime, &target, options);
    finish_local(target.local, options.keep_server);
    result
}

/// The demo against `target`.
fn demo_on(
    runtime: &tokio::runtime::Runtime,
    target: &Target,
    options: &DemoOptions,
) -> Result<(), DemoError> {
    let client = &target.client;
    runtime
        .block_on(client.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{SCHEMA}\" CASCADE")))
        .map_err(DemoError::Report)?;
    let (events_dir, generated) = generate_events(options)?;
    let scratch = &options.scratch;
    // The real pipeline, once over the directory. A pipeline file may not hold a
    // password, so it is validated without one and given the user's URL afterwards.
    let (url_without_password, _) = crate::conninfo::take_password(&target.url);
    let file = PipelineFile::local(
        "demo",
        &events_dir,
        &scratch.join("state"),
        &url_without_password,
        SCHEMA,
        crate::config::BatchFile {
            interval: Some(Duration::from_secs(2)),
            ..Default::default()
        },
    );
    let mut pipeline = file.validate(&scratch.join("demo.toml"))?;
    if let crate::config::WarehouseFile::Postgres(postgres) = &mut pipeline.warehouse {
        postgres.url = target.url.clone();
    }
    let stats = Arc::new(RunStats::default());
    let progress = progress_bar(generated.objects, Arc::clone(&stats));
    let run_options = RunOptions {
        stats: Arc::clone(&stats),
        ..RunOptions::once(options.workers)
    }; // Two rounds, like a pipeline that has been running a while: a fifth of the objects,
    // then the rest. Column types settle in the first round, so drifted values in the
    // second go to _discards (as in production) instead of widening the new column.
    let held_back = scratch.join("later");
    let moved = hold_back(&events_dir, &held_back, generated.objects / 5)?;
    let first = run::run(&pipeline, &run_options);
    let summary = match first {
        Ok(first) => {
            for (from, to) in &moved {
                std::fs::rename(to, from).map_err(|source| DemoError::Scratch {
                    path: from.clone(),
                    source,
                })?;
            }
            run::run(&pipeline, &run_options).map(|second| run::RunSummary {
                // `stats` is shared by both rounds, so the second snapshot holds both.
                stats: second.stats,
                elapsed: first.elapsed + second.elapsed,
            })
        }
        Err(error) => Err(error),
    };
    progress.finish();
    let summary = summary?;

    let report = runtime
        .block_on(report(client))
        .map_err(DemoError::Report)?;
    // A throwaway server stopped at the end cannot be looked at: no psql hint then.
    let stays = target.local.is_none() || options.keep_server;
    print_report(&report, &summary, stays.then_some(target.url.as_str()));
    Ok(())
}

/// The user's PostgreSQL when they named one (an error if it does not answer); else
/// the default URL; else, or with `local_server`, a throwaway local server.
fn connect_or_start(
    runtime: &tokio::runtime::Runtime,
    options: &DemoOptions,
) -> Result<Target, DemoError> {
    if let Some(url) = &options.database_url {
        let client = runtime
            .block_on(connect(url))
            .map_err(|error| match error {
                DemoError::NoDatabase { url, source } => DemoError::Named { url, source },
                other => other,
            })?;
        return Ok(Target {
            client,
            url: url.clone(),
            local: None,
        });
    }
    if !options.local_server {
        match runtime.block_on(connect(DEFAULT_DATABASE_URL)) {
            Ok(client) => {
                return Ok(Target {
                    client,
                    url: DEFAULT_DATABASE_URL.to_owned(),
                    local: None,
                });
            }
            Err(error) if local_postgres::find_binaries().is_none() => return Err(error),
            Err(error) => println!(
                "{error_line}; starting a throwaway one",
                error_line = first_line(&error)
            ),
        }
    }
    let local = local_postgres::start(&options.local_postgres_dir)?;
    println!(
        "{} a throwaway PostgreSQL at {} (data in {})",
        if local.started { "started" } else { "using" },
        local.url,
        local.dir.display(),
    );
    let client = runtime.block_on(connect(&local.url))?;
    Ok(Target {
        client,
        url: local.url.clone(),
        local: Some(local),
    })
}

fn first_line(error: &DemoError) -> String {
    error
        .to_string()
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// Stops the throwaway server this demo started, unless asked to keep it; the last line
/// says what became of it.
fn finish_local(local: Option<local_postgres::LocalPostgres>, keep: bool) {
    let Some(local) = local else {
        return;
    };
    if keep || !local.started {
        println!(
            "the throwaway PostgreSQL is still running; stop it with: {}",
            local.stop_command()
        );
        return;
    }
    match local.stop() {
        Ok(()) => println!(
            "stopped the throwaway PostgreSQL (run with --keep-server to look at the tables with psql)"
        ),
        Err(error) => println!(
            "could not stop the throwaway PostgreSQL ({error}); stop it with: {}",
            local.stop_command()
        ),
    }
}

/// Fresh sample traffic in the scratch directory; returns where and what was written.
fn generate_events(options: &DemoOptions) -> Result<(PathBuf, generate::GenSummary), DemoError> {
    let scratch = &options.scratch;
    if scratch.exists() {
        std::fs::remove_dir_all(scratch).map_err(|source| DemoError::Scratch {
            path: scratch.clone(),
            source,
        })?;
    }
    let events_dir = scratch.join("events");
    let started = Instant::now();
    let config = GenConfig {
        events: options.events,
        seed: 2024,
        drift_rate: 0.005,
        bad_rate: 0.001,
    };
    let generated = generate::write_dir(&config, &events_dir, 5_000)?;
    println!(
        "generated {} events ({} malformed) in {} gzip objects under {} ({:.1}s)",
        generated.lines,
        generated.bad_lines,
        generated.objects,
        events_dir.display(),
        started.elapsed().as_secs_f64()
    );

    Ok((events_dir, generated))
}

fn print_report(report: &Report, summary: &run::RunSummary, database_url: Option<&str>) {
    let seconds = summary.elapsed.as_secs_f64();
    let stats = summary.stats;
    println!();
    println!(
        "loaded {} events into schema {SCHEMA} in {seconds:.1}s: {:.0} events/s",
        stats.messages,
        stats.messages as f64 / seconds.max(1e-9)
    );
    if let Some(freshness) = stats.freshness {
        // The files are all written before the first round starts, so this is how long
        // they waited for it, not the pipeline's steady-state freshness.
        println!("freshness, from a file written to its rows committed: {freshness}");
    }
    println!(
        "{} tables created; {} schema changes applied",
        report.tables.len(),
        stats.schema_changes
    );
    println!();
    println!("{:<40} {:>10} {:>8}", "table", "rows", "columns");
    for (table, rows, columns) in &report.tables {
        println!("{table:<40} {rows:>10} {columns:>8}");
    }
    println!();
    println!(
        "values discarded (did not fit their column; kept in {SCHEMA}._discards): {}",
        report.discards.iter().map(|(_, n)| n).sum::<i64>()
    );
    for (reason, count) in &report.discards {
        println!("  {count:>8}  {reason}");
    }
    println!(
        "items rejected (kept in {SCHEMA}._rejections): {}",
        report.rejections.iter().map(|(_, n)| n).sum::<i64>()
    );
    for (code, count) in &report.rejections {
        println!("  {count:>8}  {code}");
    }
    if let Some(url) = database_url {
        println!();
        println!(
            "look at it:  psql {} -c 'SET search_path = {SCHEMA}' -c '\\dt'",
            crate::conninfo::redacted(url)
        );
    }
}

/// Moves every object after the first `keep` (by name) from `dir` into `held`; returns
/// (original, moved) paths.
fn hold_back(dir: &Path, held: &Path, keep: u64) -> Result<Vec<(PathBuf, PathBuf)>, DemoError> {
    let scratch = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DemoError::Scratch { path, source }
    };
    std::fs::create_dir_all(held).map_err(scratch(held))?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(scratch(dir))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    let mut moved = Vec::new();
    for file in files.into_iter().skip(keep.max(1) as usize) {
        let Some(name) = file.file_name() else {
            continue;
        };
        let target = held.join(name);
        std::fs::rename(&file, &target).map_err(scratch(&file))?;
        moved.push((file, target));
    }
    Ok(moved)
}

async fn connect(url: &str) -> Result<tokio_postgres::Client, DemoError> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .map_err(|source| DemoError::NoDatabase {
            url: url.to_owned(),
            source,
        })?;
    tokio::spawn(connection);
    Ok(client)
}

struct Report {
    tables: Vec<(String, i64, i64)>,
    discards: Vec<(String, i64)>,
    rejections: Vec<(String, i64)>,
}

async fn report(client: &tokio_postgres::Client) -> Result<Report, tokio_postgres::Error> {
    let tables = client
        .query(
            "SELECT t.table_name, (SELECT count(*) FROM information_schema.columns c WHERE c.table_schema = t.table_schema AND c.table_name = t.table_name) \
             FROM information_schema.tables t WHERE t.table_schema = $1 AND t.table_name NOT LIKE '\\_%' ORDER BY 1",
            &[&SCHEMA],
        )
        .await?;
    let mut counted = Vec::new();
    for row in tables {
        let name: String = row.get(0);
        let columns: i64 = row.get(1);
        let rows: i64 = client
            .query_one(
                &format!("SELECT count(*) FROM \"{SCHEMA}\".\"{name}\""),
                &[],
            )
            .await?
            .get(0);
        counted.push((name, rows, columns));
    }
    counted.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let discards = client
        .query(
            &format!(
                "SELECT reason, count(*) FROM \"{SCHEMA}\"._discards GROUP BY 1 ORDER BY 2 DESC"
            ),
            &[],
        )
        .await?
        .into_iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let rejections = match client
        .query(
            &format!(
                "SELECT code, count(*) FROM \"{SCHEMA}\"._rejections GROUP BY 1 ORDER BY 2 DESC"
            ),
            &[],
        )
        .await
    {
        Ok(rows) => rows
            .into_iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect(),
        // No rejections at all: the table was never created.
        Err(_) => Vec::new(),
    };
    Ok(Report {
        tables: counted,
        discards,
        rejections,
    })
}

/// A progress bar over objects acknowledged, on a terminal; plain lines otherwise.
fn progress_bar(objects: u64, stats: Arc<RunStats>) -> Progress {
    let bar = indicatif::ProgressBar::new(objects);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} loading [{bar:40}] {pos}/{len} objects, {msg} ({elapsed})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let thread_done = Arc::clone(&done);
    let thread_bar = bar.clone();
    let handle = std::thread::spawn(move || {
        let started = Instant::now();
        while !thread_done.load(std::sync::atomic::Ordering::Relaxed) {
            let snapshot = stats.snapshot();
            thread_bar.set_position(snapshot.objects_acknowledged);
            let rate = snapshot.messages as f64 / started.elapsed().as_secs_f64().max(1e-9);
            thread_bar.set_message(format!(
                "{} events decoded, {:.0}/s",
                snapshot.messages, rate
            ));
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    Progress {
        bar,
        done,
        handle: Some(handle),
    }
}

struct Progress {
    bar: indicatif::ProgressBar,
    done: Arc<std::sync::atomic::AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    fn finish(mut self) {
        self.done.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
        self.bar.finish_and_clear();
    }
}
