//! The `tracktable` command line: parses flags and hands off to the library.

use std::path::PathBuf;
use std::process::ExitCode;

/// mimalloc, not glibc's malloc: rows are allocated on timely workers and freed on the
/// loader's tokio threads, a pattern glibc handles with arena locks and consolidation
/// (see BENCHMARKS.md for the difference it makes). Tuned in `tracktable::allocator`.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

/// Streams Segment-spec clickstream events from S3 into Redshift and PostgreSQL.
#[derive(Debug, Parser)]
#[command(name = "tracktable", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log lines as human-readable text (default) or one JSON object per line.
    /// Verbosity: TRACKTABLE_LOG (e.g. `info`, `tracktable=debug`), else RUST_LOG.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate deterministic sample Segment traffic as gzip NDJSON objects.
    #[cfg(feature = "demo")]
    Gen(GenArgs),
    /// Print, for each input line, the rows it becomes or why it is rejected (JSON lines).
    Explain(ExplainArgs),
    /// Run a pipeline: stream objects into the warehouse until stopped (SIGINT/SIGTERM).
    Run(RunArgs),
    /// Load every object under an S3 prefix (optionally a time range) through the
    /// pipeline's warehouse, once; objects already loaded are skipped.
    Backfill(BackfillArgs),
    /// The whole job locally: sample events into PostgreSQL at DATABASE_URL (default
    /// postgres://postgres@127.0.0.1:5432/postgres, schema tracktable_demo), then a report.
    #[cfg(feature = "demo")]
    Demo(DemoArgs),
    /// Print the SQL that creates a dedicated loader user (run it as a superuser).
    SetupSql(SetupSqlArgs),
    /// Check that a pipeline can reach and use its source and warehouse, one line per requirement.
    Check(PipelineArgs),
    /// Show the tables and columns tracktable created, with types, row counts and column budget.
    Schema(PipelineArgs),
    /// Print shell completions: `tracktable completions bash > /etc/bash_completion.d/tracktable`.
    Completions(CompletionsArgs),
}

#[derive(Debug, clap::Args)]
struct BackfillArgs {
    /// The pipeline file: its warehouse and batch settings are used (and, for an SQS
    /// pipeline, its region and endpoint).
    #[arg(long, env = "TRACKTABLE_PIPELINE")]
    pipeline: PathBuf,
    /// The bucket to list.
    #[arg(long)]
    bucket: String,
    /// Only keys starting with this.
    #[arg(long, default_value = "")]
    prefix: String,
    /// Only objects last modified at or after this (RFC 3339: 2024-03-01T00:00:00Z, or 2024-03-01).
    #[arg(long, value_parser = parse_time)]
    since: Option<std::time::SystemTime>,
    /// Only objects last modified before this.
    #[arg(long, value_parser = parse_time)]
    until: Option<std::time::SystemTime>,
    /// AWS region (default: the pipeline's, else the AWS default chain).
    #[arg(long)]
    region: Option<String>,
    /// S3 endpoint for MinIO, LocalStack or moto (default: the pipeline's, else AWS).
    #[arg(long)]
    endpoint_url: Option<String>,
    /// Worker threads.
    #[arg(long, short = 'w', default_value_t = 1)]
    workers: usize,
}

fn parse_time(text: &str) -> Result<std::time::SystemTime, String> {
    let full = if text.len() == 10 {
        format!("{text}T00:00:00Z")
    } else {
        text.to_owned()
    };
    humantime::parse_rfc3339_weak(&full)
        .map_err(|error| format!("{text:?} is not an RFC 3339 time or a date: {error}"))
}

#[derive(Debug, clap::Args)]
struct SetupSqlArgs {
    /// The loader user to create.
    #[arg(long)]
    user: String,
    /// The database it loads into.
    #[arg(long)]
    database: String,
    /// The pipeline's schema, created owned by the user (otherwise the user may create schemas).
    #[arg(long)]
    schema: Option<String>,
    /// Which warehouse's SQL: `postgres` or `redshift` (adds what the staging bucket
    /// and the cluster's IAM role need).
    #[arg(long, value_enum, default_value = "postgres")]
    dialect: tracktable::admin::Dialect,
}

#[derive(Debug, clap::Args)]
struct CompletionsArgs {
    /// bash, zsh, fish, elvish or powershell.
    shell: clap_complete::Shell,
}

#[derive(Debug, clap::Args)]
struct PipelineArgs {
    /// The pipeline file (TOML; see pipelines/).
    #[arg(long, env = "TRACKTABLE_PIPELINE")]
    pipeline: PathBuf,
    /// S3 and SQS endpoint (MinIO, LocalStack, moto), overriding the pipeline's.
    #[arg(long)]
    endpoint_url: Option<String>,
}

#[cfg(feature = "demo")]
#[derive(Debug, clap::Args)]
struct DemoArgs {
    /// PostgreSQL to load into; it must answer. Unset: postgres://postgres@127.0.0.1:5432/postgres,
    /// or a throwaway local server when nothing answers there.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Load into a throwaway local PostgreSQL even if one answers at the default URL.
    #[arg(long, conflicts_with = "database_url")]
    local_server: bool,
    /// Leave the throwaway server running at the end (the last line says how to stop it).
    #[arg(long)]
    keep_server: bool,
    /// How many events to generate.
    #[arg(long, default_value_t = 300_000)]
    events: u64,
    /// Worker threads.
    #[arg(long, short = 'w', default_value_t = 2)]
    workers: usize,
    /// Scratch directory for generated objects (default: a directory under the system temp dir).
    #[arg(long)]
    scratch: Option<PathBuf>,
    /// Where to keep the throwaway PostgreSQL cluster (default: beside the binary, in the
    /// target dir).
    #[arg(long)]
    local_postgres_dir: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The pipeline file (TOML; see pipelines/).
    #[arg(long, env = "TRACKTABLE_PIPELINE")]
    pipeline: PathBuf,
    #[command(flatten)]
    cluster: ClusterArgs,
    #[command(flatten)]
    batch: BatchArgs,
    /// Load the objects present at start, then exit (instead of running until a signal).
    /// With SQS: until a receive finds the queue empty.
    #[arg(long)]
    once: bool,
    /// S3 and SQS endpoint (MinIO, LocalStack, moto), overriding the pipeline's.
    #[arg(long)]
    endpoint_url: Option<String>,
    /// Serve Prometheus metrics (/metrics), liveness (/health) and readiness (/ready)
    /// on this address, e.g. 0.0.0.0:9464 (default: off).
    #[arg(long, env = "TRACKTABLE_METRICS_ADDR")]
    metrics_addr: Option<std::net::SocketAddr>,
}

/// Cluster flags: the same `--processes`, `--workers` and hostfile on every process.
#[derive(Debug, clap::Args)]
struct ClusterArgs {
    /// Worker threads in this process.
    #[arg(long, short = 'w', env = "TRACKTABLE_WORKERS", default_value_t = 1)]
    workers: usize,
    /// Processes in the cluster.
    #[arg(long, short = 'n', env = "TRACKTABLE_PROCESSES", default_value_t = 1)]
    processes: usize,
    /// This process's index in the hostfile, from 0 (in Kubernetes: the pod's ordinal).
    #[arg(long, short = 'p', env = "TRACKTABLE_PROCESS", default_value_t = 0)]
    process: usize,
    /// One `host:port` line per process, in process order.
    #[arg(long, env = "TRACKTABLE_HOSTFILE")]
    hostfile: Option<PathBuf>,
}

/// Batch flags; each overrides the pipeline file's `[batch]` value.
#[derive(Debug, clap::Args)]
struct BatchArgs {
    /// Close batches on multiples of this interval (500ms, 30s, 5m; default 30s into
    /// PostgreSQL, 60s into Redshift).
    #[arg(long, value_parser = humantime::parse_duration)]
    batch_interval: Option<std::time::Duration>,
    /// Close a worker's batch early at this many messages.
    #[arg(long)]
    max_batch_rows: Option<u64>,
    /// Close a worker's batch early at this many bytes of decoded (decompressed) input.
    #[arg(long)]
    max_batch_bytes: Option<u64>,
    /// Stop admitting input while this many full batches' worth await their commit.
    #[arg(long)]
    max_batches_in_flight: Option<usize>,
}

impl BatchArgs {
    /// The flags given, over the pipeline file's `[batch]`.
    fn apply(&self, batch: &mut tracktable::config::BatchFile) {
        if let Some(interval) = self.batch_interval {
            batch.interval = Some(interval);
        }
        if let Some(rows) = self.max_batch_rows {
            batch.max_rows = Some(rows);
        }
        if let Some(bytes) = self.max_batch_bytes {
            batch.max_bytes = Some(bytes);
        }
        if let Some(in_flight) = self.max_batches_in_flight {
            batch.max_in_flight = in_flight;
        }
    }
}

#[cfg(feature = "demo")]
#[derive(Debug, clap::Args)]
struct GenArgs {
    /// Directory to write objects into (created if missing).
    #[arg(long, required_unless_present = "s3", conflicts_with = "s3")]
    out: Option<PathBuf>,
    /// Upload the objects to this S3 prefix instead: s3://bucket/prefix.
    #[arg(long)]
    s3: Option<String>,
    /// AWS region for --s3 (default: the AWS default chain).
    #[arg(long, requires = "s3")]
    region: Option<String>,
    /// S3 endpoint for --s3 (MinIO, LocalStack, moto; default: AWS).
    #[arg(long, requires = "s3")]
    endpoint_url: Option<String>,
    /// Number of lines (events, including malformed ones) to write.
    #[arg(long)]
    events: u64,
    /// Seed; the same seed and flags always produce the same files.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Lines per object.
    #[arg(long, default_value_t = 10_000)]
    per_object: u64,
    /// Probability that a property value arrives with a different JSON type (0..1).
    #[arg(long, default_value_t = 0.0)]
    drift_rate: f64,
    /// Probability that a line is malformed (0..1).
    #[arg(long, default_value_t = 0.0)]
    bad_rate: f64,
}

#[derive(Debug, clap::Args)]
struct ExplainArgs {
    /// File to explain (gzip or plain; NDJSON, JSON array or batch envelope); `-` or
    /// nothing reads standard input.
    file: Option<PathBuf>,
}

fn main() -> ExitCode {
    tracktable::allocator::tune();
    let cli = Cli::parse();
    // `demo` prints its own report: the service's per-table log lines
    // (85 "table created" on a fresh schema) would bury it. TRACKTABLE_LOG (else
    // RUST_LOG) still wins.
    let default_filter = match cli.command {
        #[cfg(feature = "demo")]
        Command::Demo(_) => "warn",
        _ => "info,tokio_postgres=warn",
    };
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TRACKTABLE_LOG")
                .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Json => logs.json().init(),
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", tracktable::report::causes(error.as_ref()));
            ExitCode::FAILURE
        }
    }
}

/// The pipeline file at `path`, validated after the flags that override it: the batch
/// flags, and an S3/SQS endpoint for its SQS source and Redshift staging bucket.
fn pipeline(
    path: &std::path::Path,
    endpoint: Option<String>,
    batch: Option<&BatchArgs>,
) -> anyhow::Result<tracktable::config::Pipeline> {
    let mut file = tracktable::config::PipelineFile::read(path)?;
    if let Some(batch) = batch {
        batch.apply(&mut file.batch);
    }
    if let Some(endpoint) = endpoint {
        let mut applied = false;
        if let tracktable::config::SourceFile::Sqs { endpoint_url, .. } = &mut file.source {
            *endpoint_url = Some(endpoint.clone());
            applied = true;
        }
        if let tracktable::config::WarehouseFile::Redshift(redshift) = &mut file.warehouse {
            redshift.staging.endpoint_url = Some(endpoint);
            applied = true;
        }
        anyhow::ensure!(
            applied,
            "--endpoint-url applies to an SQS source or a Redshift staging bucket; this pipeline has neither"
        );
    }
    Ok(file.validate(path)?)
}

fn block_on<F: std::future::Future>(future: F) -> anyhow::Result<F::Output> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok(runtime.block_on(future))
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Completions(args) => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(
                args.shell,
                &mut command,
                "tracktable",
                &mut std::io::stdout(),
            );
            Ok(())
        }
        Command::SetupSql(args) => setup_sql(args),
        Command::Check(args) => check(args),
        Command::Schema(args) => schema(args),
        #[cfg(feature = "demo")]
        Command::Demo(args) => demo(args),
        Command::Run(args) => run_pipeline(args),
        Command::Backfill(args) => backfill(args),
        #[cfg(feature = "demo")]
        Command::Gen(args) => generate(args),
        Command::Explain(args) => explain(args),
    }
}

/// `setup-sql`: the SQL that creates a dedicated loader user.
fn setup_sql(args: SetupSqlArgs) -> anyhow::Result<()> {
    print!(
        "{}",
        tracktable::admin::setup_sql(
            args.dialect,
            &args.user,
            &args.database,
            args.schema.as_deref()
        )?
    );
    Ok(())
}

/// `check`: one line per requirement; fails when any fails.
fn check(args: PipelineArgs) -> anyhow::Result<()> {
    let pipeline = pipeline(&args.pipeline, args.endpoint_url.clone(), None)?;
    let checks = block_on(tracktable::admin::check(&pipeline))?;
    print!("{}", tracktable::admin::report(&checks));
    let failed = checks.iter().filter(|check| check.fix.is_some()).count();
    anyhow::ensure!(failed == 0, "{failed} of {} checks failed", checks.len());
    Ok(())
}

/// `schema`: the tables tracktable created.
fn schema(args: PipelineArgs) -> anyhow::Result<()> {
    let pipeline = pipeline(&args.pipeline, args.endpoint_url.clone(), None)?;
    let (schema, tables, cluster_disk) = block_on(tracktable::admin::schema_report(&pipeline))??;
    print!(
        "{}",
        tracktable::admin::format_schema(
            &schema,
            &tables,
            pipeline.max_tables,
            pipeline.max_columns,
            &cluster_disk
        )
    );
    Ok(())
}

/// `demo`: the whole job locally.
#[cfg(feature = "demo")]
fn demo(args: DemoArgs) -> anyhow::Result<()> {
    let options = tracktable::demo::DemoOptions {
        database_url: args.database_url,
        local_server: args.local_server,
        keep_server: args.keep_server,
        events: args.events,
        workers: args.workers,
        scratch: args
            .scratch
            .unwrap_or_else(|| std::env::temp_dir().join("tracktable-demo")),
        local_postgres_dir: args
            .local_postgres_dir
            .unwrap_or_else(tracktable_local_postgres::default_dir),
    };
    tracktable::demo::demo(&options)?;
    Ok(())
}

/// `run`: one process of the pipeline, flags over the pipeline file.
fn run_pipeline(args: RunArgs) -> anyhow::Result<()> {
    let pipeline = pipeline(&args.pipeline, args.endpoint_url, Some(&args.batch))?;
    let options = tracktable::run::RunOptions {
        cluster: tracktable::run::Cluster {
            workers: args.cluster.workers,
            processes: args.cluster.processes,
            process: args.cluster.process,
            hostfile: args.cluster.hostfile,
        },
        once: args.once,
        stats: Default::default(),
        backfill: None,
        metrics_addr: args.metrics_addr,
    };
    let summary = tracktable::run::run(&pipeline, &options)?;
    let stats = summary.stats;
    // A log event, so `--log-format json` keeps every line JSON.
    tracing::info!(
        "{}: {} objects, {} messages, {} rejected; {} rows loaded, {} duplicate messages skipped, {} profile updates merged, {} values discarded, {} schema changes, in {:.1}s",
        pipeline.name,
        stats.objects,
        stats.messages,
        stats.rejections,
        stats.rows_loaded,
        stats.duplicates,
        stats.merged,
        stats.discards,
        stats.schema_changes,
        summary.elapsed.as_secs_f64()
    );
    if let Some(freshness) = stats.freshness {
        tracing::info!(
            "{}: freshness, from an object written to its rows committed: {freshness}",
            pipeline.name
        );
    }
    Ok(())
}

/// `backfill`: an S3 prefix through the pipeline's warehouse, once.
fn backfill(args: BackfillArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.workers > 0, "--workers must be at least 1");
    // --endpoint-url is where the prefix is listed, not an override of the pipeline.
    let pipeline = pipeline(&args.pipeline, None, None)?;
    let (pipeline_region, pipeline_endpoint) = match &pipeline.source {
        tracktable::config::SourceFile::Sqs {
            region,
            endpoint_url,
            ..
        } => (region.clone(), endpoint_url.clone()),
        tracktable::config::SourceFile::Dir { .. } => (None, None),
    };
    let settings = tracktable::source::backfill::BackfillSettings {
        bucket: args.bucket.clone(),
        prefix: args.prefix.clone(),
        since: args.since,
        until: args.until,
        region: args.region.or(pipeline_region),
        endpoint_url: args.endpoint_url.or(pipeline_endpoint),
    };
    let summary = tracktable::backfill::backfill(&pipeline, settings, args.workers)?;
    tracing::info!(
        "backfill of s3://{}/{}: {} objects listed, {} already loaded, {} loaded now ({} events, {} rejected, {} rows) in {:.1}s",
        args.bucket,
        args.prefix,
        summary.listed,
        summary.skipped,
        summary.loaded,
        summary.run.stats.messages,
        summary.run.stats.rejections,
        summary.run.stats.rows_loaded,
        summary.run.elapsed.as_secs_f64()
    );
    Ok(())
}

/// `gen`: sample traffic to a directory or an S3 prefix.
#[cfg(feature = "demo")]
fn generate(args: GenArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.drift_rate),
        "--drift-rate must be between 0 and 1"
    );
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.bad_rate),
        "--bad-rate must be between 0 and 1"
    );
    anyhow::ensure!(args.per_object > 0, "--per-object must be at least 1");
    let config = tracktable_gen::GenConfig {
        events: args.events,
        seed: args.seed,
        drift_rate: args.drift_rate,
        bad_rate: args.bad_rate,
    };
    let (out, upload) = match (&args.out, &args.s3) {
        (Some(out), _) => (out.clone(), None),
        (None, Some(url)) => {
            let target = tracktable_gen::to_s3::parse_url(url)
                .map_err(|message| anyhow::anyhow!(message))?;
            let scratch =
                std::env::temp_dir().join(format!("tracktable-gen-{}", std::process::id()));
            (scratch, Some(target))
        }
        (None, None) => anyhow::bail!("give --out DIR or --s3 s3://bucket/prefix"),
    };
    let summary = tracktable_gen::write_dir(&config, &out, args.per_object)
        .with_context(|| format!("generating into {}", out.display()))?;
    let destination = match upload {
        None => out.display().to_string(),
        Some((bucket, prefix)) => {
            let uploaded = block_on(async {
                let (s3, _) = tracktable::source::aws::clients(
                    args.region.as_deref(),
                    args.endpoint_url.as_deref(),
                )
                .await;
                tracktable_gen::to_s3::upload_dir(&s3, &out, &bucket, &prefix).await
            });
            let _ = std::fs::remove_dir_all(&out);
            let uploaded = uploaded?.map_err(|message| anyhow::anyhow!(message))?;
            format!("s3://{bucket}/{prefix} ({uploaded} objects uploaded)")
        }
    };
    eprintln!(
        "wrote {} lines ({} malformed) in {} objects, {} bytes compressed, to {destination}",
        summary.lines, summary.bad_lines, summary.objects, summary.bytes,
    );
    Ok(())
}

/// `explain`: what each input line becomes.
fn explain(args: ExplainArgs) -> anyhow::Result<()> {
    let limits = tracktable::decode::Limits::default();
    let stdout = std::io::stdout().lock();
    let summary = match args.file.as_deref() {
        None => tracktable::explain::explain(std::io::stdin().lock(), "-", &limits, stdout),
        Some(path) if path.as_os_str() == "-" => {
            tracktable::explain::explain(std::io::stdin().lock(), "-", &limits, stdout)
        }
        Some(path) => {
            let file = std::fs::File::open(path)
                .with_context(|| format!("cannot open {}", path.display()))?;
            tracktable::explain::explain(file, &path.to_string_lossy(), &limits, stdout)
        }
    };
    let summary = match summary {
        Ok(summary) => summary,
        // `tracktable explain big.gz | head` closes the pipe early: not an error.
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
        Err(error) => return Err(error).context("writing the explanation"),
    };
    eprintln!(
        "{} messages became {} rows; {} items rejected",
        summary.messages, summary.rows, summary.rejections
    );
    Ok(())
}
