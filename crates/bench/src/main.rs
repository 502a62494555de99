//! `tracktable-bench`: the end-to-end benchmark of tracktable against a raw COPY, and
//! the measures that machine noise barely moves (`cpu`, `instructions`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The PostgreSQL the tests and the demo use.
const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// End-to-end benchmark: sample events through the pipeline into PostgreSQL, beside a
/// plain binary COPY of the same rows into the same tables (the warehouse's own limit),
/// and the pipeline's loader alone on the same prepared rows. `cpu` and `instructions`
/// measure tracktable's own work per event instead.
#[derive(Debug, Parser)]
#[command(
    name = "tracktable-bench",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    measure: Option<Measure>,
    #[command(flatten)]
    end_to_end: EndToEnd,
}

#[derive(Debug, clap::Subcommand)]
enum Measure {
    /// User+sys CPU seconds of the `tracktable` process per event: `run --once` over a
    /// fixed generated input into a local PostgreSQL, the median of several runs.
    Cpu {
        #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
        database_url: String,
        #[arg(long, default_value_t = 200_000)]
        events: u64,
        #[arg(long, short = 'w', default_value_t = 2)]
        workers: usize,
        /// Processes of a cluster on this machine (`-w` workers each); their CPU is
        /// summed.
        #[arg(long, short = 'n', default_value_t = 1)]
        processes: usize,
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Scratch directory (default: under the system temp dir).
        #[arg(long)]
        scratch: Option<PathBuf>,
        /// Another `tracktable` binary to run alternately with the one beside this
        /// bench, run after run over the same input, so both share the machine's
        /// noise; its median is reported beside the first's, with their ratio.
        /// Repeatable.
        #[arg(long, value_name = "BINARY")]
        against: Vec<PathBuf>,
        /// Count instructions instead of CPU time: each run under callgrind
        /// (valgrind), all threads, start to end. Machine noise does not move the
        /// count, so one run is enough; the runs take many times longer.
        #[arg(long)]
        instructions: bool,
    },
    /// Freshness under a steady stream: generated objects written at `--rate` events/s
    /// to a bucket of the S3/SQS emulator that notifies a queue, loaded by one
    /// `tracktable run` on the SQS path into PostgreSQL; p50, p99 and max from each
    /// object's S3 event time to its commit, against the batch interval.
    Freshness {
        /// The S3/SQS emulator (moto).
        #[arg(long, env = "TRACKTABLE_MOTO_URL")]
        endpoint_url: String,
        #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
        database_url: String,
        /// Events per second written.
        #[arg(long, default_value_t = 5_000)]
        rate: u64,
        /// How long to write for.
        #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
        duration: std::time::Duration,
        /// Events per object.
        #[arg(long, default_value_t = 1_000)]
        per_object: u64,
        #[arg(long, short = 'w', default_value_t = 2)]
        workers: usize,
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        batch_interval: std::time::Duration,
        /// Scratch directory (default: under the system temp dir).
        #[arg(long)]
        scratch: Option<PathBuf>,
    },
    /// Instructions per event of decode+route (beside a plain serde_json::Value parse)
    /// and of the two encoders, counted by callgrind over a fixed generated input.
    Instructions {
        #[arg(long, default_value_t = 20_000)]
        events: u64,
        /// Scratch directory (default: under the system temp dir).
        #[arg(long)]
        scratch: Option<PathBuf>,
    },
}

#[derive(Debug, clap::Args)]
struct EndToEnd {
    /// PostgreSQL to load into (schemas tracktable_bench and tracktable_bench_copy are replaced).
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    database_url: String,
    /// How many events to generate.
    #[arg(long, default_value_t = 300_000)]
    events: u64,
    /// Worker threads (and baseline COPY connections).
    #[arg(long, short = 'w', default_value_t = 2)]
    workers: usize,
    /// The pipeline's batch interval (default: the pipeline default, 30s, so the bench
    /// measures what `run` does; the generated objects are all there at the start, so
    /// its batches close at `--max-batch-rows` or `--max-batch-bytes`).
    #[arg(long, value_parser = humantime::parse_duration)]
    batch_interval: Option<std::time::Duration>,
    /// Close a worker's batch once it holds this many messages (default: the pipeline
    /// default).
    #[arg(long)]
    max_batch_rows: Option<u64>,
    /// Close a worker's batch once it holds this many input bytes (default: the
    /// pipeline default).
    #[arg(long)]
    max_batch_bytes: Option<u64>,
    /// Stop admitting input while this many full batches' worth await their commit
    /// (default: the pipeline default).
    #[arg(long)]
    max_batches_in_flight: Option<usize>,
    /// Warehouse connections each worker loads over (default: the pipeline default, 4).
    #[arg(long)]
    load_connections: Option<usize>,
    /// Scratch directory for generated objects (default: a directory under the system temp dir).
    #[arg(long)]
    scratch: Option<PathBuf>,
    /// Run the whole benchmark this many times and finish with the medians: one run's
    /// ratio moves by a quarter on a busy machine.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Run PostgreSQL's processes on these CPUs (e.g. `1`, `2-3`) and the bench on the
    /// others, as if the warehouse had a machine of its own; both move back at the end.
    /// Needs the server on this machine and the right to move its processes (its
    /// operating-system user, or root).
    #[arg(long)]
    warehouse_cpus: Option<tracktable_bench::affinity::CpuList>,
}

fn main() -> ExitCode {
    tracktable::allocator::tune();
    let args = Cli::parse();
    // The per-table log lines of the service would bury the report. TRACKTABLE_LOG wins.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TRACKTABLE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match args.measure {
        None => bench(args.end_to_end),
        Some(measure) => measure_one(measure),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn measure_one(measure: Measure) -> anyhow::Result<()> {
    let temp = |name: &str| std::env::temp_dir().join(name);
    match measure {
        Measure::Cpu {
            database_url,
            events,
            workers,
            processes,
            runs,
            scratch,
            against,
            instructions,
        } => {
            anyhow::ensure!(
                runs > 0 && workers > 0 && processes > 0,
                "--runs, --workers and --processes must be at least 1"
            );
            let scratch = scratch.unwrap_or_else(|| temp("tracktable-bench-cpu"));
            let plan = tracktable_bench::measures::CpuRuns {
                events,
                workers,
                processes,
                runs,
                count: if instructions {
                    tracktable_bench::measures::Count::Instructions
                } else {
                    tracktable_bench::measures::Count::Cpu
                },
            };
            let (figures, events) =
                tracktable_bench::measures::cpu_per_event(&database_url, plan, &scratch, &against)?;
            let first = figures[0].per_run.median;
            for (build, figure) in figures.iter().enumerate() {
                let (counted, peak) = (&figure.per_run, &figure.peak_mib);
                // Instruction counts repeat to a thousandth; CPU time does not.
                let digits = if instructions { 3 } else { 2 };
                let against_first = if build == 0 {
                    String::new()
                } else {
                    format!(", {:.digits$}× the first", counted.median / first)
                };
                let measured = if instructions {
                    format!(
                        "median {:.0} instructions ({:.0}-{:.0} over {runs} runs), \
                         {:.0} instructions per event",
                        counted.median,
                        counted.min,
                        counted.max,
                        counted.median / events as f64,
                    )
                } else {
                    format!(
                        "median {:.2} CPU-seconds ({:.2}-{:.2} over {runs} runs), \
                         {:.1} µs of CPU per event, peak resident {:.0} MiB ({:.0}-{:.0})",
                        counted.median,
                        counted.min,
                        counted.max,
                        counted.median * 1e6 / events as f64,
                        peak.median,
                        peak.min,
                        peak.max,
                    )
                };
                println!(
                    "tracktable run --once -w {workers} × {processes} process(es), {events} events: \
                     {measured}{against_first}: {}",
                    figure.binary.display()
                );
            }
        }
        Measure::Freshness {
            endpoint_url,
            database_url,
            rate,
            duration,
            per_object,
            workers,
            batch_interval,
            scratch,
        } => {
            anyhow::ensure!(
                rate > 0 && per_object > 0 && workers > 0,
                "--rate, --per-object and --workers must be at least 1"
            );
            let options = tracktable_bench::freshness::FreshnessOptions {
                endpoint_url,
                database_url,
                rate,
                duration,
                per_object,
                workers,
                batch_interval,
                scratch: scratch.unwrap_or_else(|| temp("tracktable-bench-freshness")),
            };
            let report = tracktable_bench::freshness::measure(&options)?;
            let interval = batch_interval.as_secs_f64();
            let goal = interval + tracktable_bench::freshness::GOAL_OVER_INTERVAL.as_secs_f64();
            println!(
                "{} events/s in objects of {per_object}, -w {workers}, batch interval {}: \
                 {} events in {} objects written over {:.1}s ({} puts late by over 100 ms), \
                 all committed {:.1}s after the last",
                rate,
                humantime::format_duration(batch_interval),
                report.events,
                report.objects,
                report.fed_for.as_secs_f64(),
                report.late_puts,
                report.drained_in.as_secs_f64(),
            );
            println!(
                "freshness over {} objects: p50 {:.1}s, p99 {:.1}s, max {:.1}s; \
                 p99 is the interval {}",
                report.observed,
                report.p50,
                report.p99,
                report.max,
                if report.p99 <= interval {
                    "or less".to_owned()
                } else {
                    format!("+ {:.1}s", report.p99 - interval)
                },
            );
            if let Some((bound, count)) = report.within {
                println!(
                    "within {bound:.1}s (goal: interval + 2 s = {goal:.1}s): {count} of {} objects ({:.1}%)",
                    report.observed,
                    100.0 * count as f64 / report.observed.max(1) as f64
                );
            }
            println!(
                "tracktable's CPU: {:.1} s, {:.1} µs per event",
                report.cpu_seconds,
                report.cpu_seconds * 1e6 / report.events.max(1) as f64
            );
        }
        Measure::Instructions { events, scratch } => {
            let scratch = scratch.unwrap_or_else(|| temp("tracktable-bench-instructions"));
            std::fs::create_dir_all(&scratch)?;
            let lines = scratch.join("lines.ndjson");
            tracktable_bench::measures::write_lines(&lines, events)?;
            for workload in [
                "value-parse",
                "decode-route",
                "encode-postgres",
                "encode-redshift",
            ] {
                let per_event = tracktable_bench::measures::instructions_per_event(
                    workload, &lines, events, &scratch,
                )?;
                println!(
                    "{workload:<16} {per_event:>10.0} instructions per event ({events} events)"
                );
            }
        }
    }
    Ok(())
}

fn bench(args: EndToEnd) -> anyhow::Result<()> {
    anyhow::ensure!(args.workers > 0, "--workers must be at least 1");
    anyhow::ensure!(args.rounds > 0, "--rounds must be at least 1");
    anyhow::ensure!(
        args.load_connections != Some(0),
        "--load-connections must be at least 1"
    );
    let options = tracktable_bench::benchmark::BenchOptions {
        database_url: args.database_url,
        events: args.events,
        workers: args.workers,
        batch_interval: args
            .batch_interval
            .unwrap_or(tracktable::config::POSTGRES_INTERVAL),
        max_batch_rows: args.max_batch_rows,
        max_batch_bytes: args.max_batch_bytes,
        max_batches_in_flight: args.max_batches_in_flight,
        load_connections: args.load_connections,
        scratch: args
            .scratch
            .unwrap_or_else(|| std::env::temp_dir().join("tracktable-bench")),
        warehouse_cpus: args.warehouse_cpus,
    };
    let mut reports = Vec::with_capacity(args.rounds);
    for round in 1..=args.rounds {
        if args.rounds > 1 {
            println!("round {round} of {}", args.rounds);
        }
        let report = tracktable_bench::benchmark::bench(&options)?;
        print_bench_report(&report, &options);
        reports.push(report);
    }
    if reports.len() > 1
        && let Some(summary) = tracktable_bench::benchmark::Summary::of(&reports)
    {
        println!(
            "over {} rounds: ratio pipeline / COPY median {:.2} (from {:.2} to {:.2}), loader / COPY median {:.2}; pipeline median {:.2}s, raw COPY median {:.2}s",
            reports.len(),
            summary.pipeline_ratio.median,
            summary.pipeline_ratio.min,
            summary.pipeline_ratio.max,
            summary.loader_ratio.median,
            summary.pipeline_secs.median,
            summary.copy_secs.median,
        );
    }
    Ok(())
}

fn print_bench_report(
    report: &tracktable_bench::benchmark::BenchReport,
    options: &tracktable_bench::benchmark::BenchOptions,
) {
    let cpus = match &options.warehouse_cpus {
        Some(cpus) => format!("  warehouse on CPUs {cpus}"),
        None => "  warehouse sharing the CPUs".to_owned(),
    };
    println!(
        "events: {}  workers: {}  batch interval: {}{cpus}",
        report.events,
        options.workers,
        humantime::format_duration(options.batch_interval)
    );
    println!(
        "tracktable pipeline: {:>10.0} events/s  ({} rows in {:.2}s, decode to commit)",
        report.pipeline_rate(),
        report.pipeline_rows,
        report.pipeline.as_secs_f64()
    );
    println!(
        "raw binary COPY:     {:>10.0} events/s  ({} rows in {:.2}s, rows prepared in memory)",
        report.copy_rate(),
        report.copy_rows,
        report.copy.as_secs_f64()
    );
    println!(
        "tracktable loader:   {:>10.0} events/s  (the same prepared rows in {:.2}s: the pipeline without decoding)",
        report.loader_rate(),
        report.loader.as_secs_f64()
    );
    for (phase, cpu, wal) in [
        ("pipeline", report.pipeline_cpu, report.pipeline_wal),
        ("raw COPY", report.copy_cpu, report.copy_wal),
        ("loader alone", report.loader_cpu, report.loader_wal),
    ] {
        if let Some(cpu) = cpu {
            let server = match cpu.server {
                Some(server) => format!("PostgreSQL's processes {server:.1} s"),
                None => format!(
                    "the rest, PostgreSQL's if nothing else ran: {:.1} s",
                    cpu.machine_busy - cpu.process
                ),
            };
            println!(
                "  CPU over the {phase}: this process {:.1} s, {server}; the machine busy {:.1} of {:.1} core-seconds",
                cpu.process, cpu.machine_busy, cpu.machine_total,
            );
        }
        if let Some(wal) = wal {
            use tracktable_bench::benchmark::WalRange;
            println!(
                "  WAL over the {phase}: {:.1} MB (pg_waldump --stats -s {} -e {})",
                wal.bytes() as f64 / 1e6,
                WalRange::format(wal.start),
                WalRange::format(wal.end),
            );
        }
    }
    println!(
        "ratio pipeline / COPY: {:.2}   ratio loader / COPY: {:.2}",
        report.pipeline_ratio(),
        report.loader_ratio()
    );
}
