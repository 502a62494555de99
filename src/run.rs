//! run: one process of a tracktable cluster, from start-up to exit.
//!
//! Builds the process's tokio runtime (sources and warehouse I/O), prepares the
//! warehouse, starts the source (`source::start`: it does not matter which) and the
//! signal watcher, then runs the timely workers: each builds the dataflow
//! (`dataflow::build`) and loops `step_or_park` → acknowledge batches the probe has
//! passed, until the dataflow ends (input exhausted in `--once` mode, or a graceful
//! shutdown).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc;

use crate::config::{Pipeline, WarehouseFile};
use crate::dataflow::{self, Context};
use crate::shutdown::{self, Shutdown};
use crate::source::{self, Acker, Delivery, ObjectRef, Spec, Started, backfill};
use crate::telemetry::{RunStats, StatsSnapshot};
use crate::warehouse::postgres::PostgresWarehouse;
use crate::warehouse::{FailureClass, Warehouse, WarehouseError};

/// How this process joins its cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    /// Worker threads in this process.
    pub workers: usize,
    /// Processes in the cluster.
    pub processes: usize,
    /// This process's index, 0-based.
    pub process: usize,
    /// One `host:port` per process, in index order (required when `processes > 1`).
    pub hostfile: Option<PathBuf>,
}

impl Default for Cluster {
    fn default() -> Cluster {
        Cluster {
            workers: 1,
            processes: 1,
            process: 0,
            hostfile: None,
        }
    }
}

/// Options of one run beyond the pipeline file.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub cluster: Cluster,
    /// Load what is present at start and exit, instead of running until a signal.
    pub once: bool,
    /// Where the run counts what it does (shared so a caller can show progress).
    pub stats: Arc<RunStats>,
    /// Load an S3 prefix once instead of the pipeline's own source
    /// (`tracktable backfill`), counting its progress here.
    pub backfill: Option<(backfill::BackfillSettings, Arc<backfill::BackfillProgress>)>,
    /// Serve `/metrics`, `/health` and `/ready` here.
    pub metrics_addr: Option<std::net::SocketAddr>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cluster: {0}")]
    Cluster(String),
    #[error("cannot read hostfile {path}: {source}")]
    Hostfile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Source(#[from] source::SourceError),
    #[error("warehouse: {0}")]
    Warehouse(String),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot serve metrics on {address}: {source}")]
    Metrics {
        address: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("a worker failed: {0}")]
    Worker(String),
}

impl RunOptions {
    /// `run --once` with `workers` worker threads in one process.
    pub fn once(workers: usize) -> RunOptions {
        RunOptions {
            cluster: Cluster {
                workers,
                ..Cluster::default()
            },
            once: true,
            ..RunOptions::default()
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, Copy)]
pub struct RunSummary {
    pub stats: StatsSnapshot,
    pub elapsed: Duration,
}

/// Runs one process of the pipeline to completion.
pub fn run(pipeline: &Pipeline, options: &RunOptions) -> Result<RunSummary, RunError> {
    match &pipeline.warehouse {
        WarehouseFile::Postgres(config) => {
            let warehouse = PostgresWarehouse::new(config)
                .map_err(|error| RunError::Warehouse(error.to_string()))?
                .with_caps(pipeline.max_tables, pipeline.max_columns);
            run_with(pipeline, options, Arc::new(warehouse))
        }
        WarehouseFile::Redshift(config) => {
            let warehouse = crate::warehouse::redshift::RedshiftWarehouse::new(config)
                .map_err(|error| RunError::Warehouse(error.to_string()))?
                .with_caps(pipeline.max_tables, pipeline.max_columns);
            run_with(pipeline, options, Arc::new(warehouse))
        }
    }
}

/// Runs one process of the pipeline against any warehouse (benches use a counting one).
pub fn run_with<W: Warehouse>(
    pipeline: &Pipeline,
    options: &RunOptions,
    warehouse: Arc<W>,
) -> Result<RunSummary, RunError> {
    let started = Instant::now();
    source::check_exists(&pipeline.source)?;
    let timely_config = timely_config(&options.cluster)?;

    // Few threads: the timely workers need the cores.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("tracktable-io")
        .enable_all()
        .build()
        .map_err(RunError::Runtime)?;
    prepare(&runtime, warehouse.as_ref())?;

    let shutdown = Arc::new(Shutdown::default());
    let stats = Arc::clone(&options.stats);
    runtime.spawn(shutdown::watch_signals(Arc::clone(&shutdown)));

    let local_workers = options.cluster.workers;
    let first_worker = options.cluster.process * local_workers;
    let peers = options.cluster.processes * local_workers;
    let mut senders = Vec::with_capacity(local_workers);
    let mut receivers = Vec::with_capacity(local_workers);
    for _ in 0..local_workers {
        // Small bound: objects wait in the lister (and in the queue) rather than in memory.
        let (sender, receiver) = mpsc::channel::<ObjectRef>(64);
        senders.push(sender);
        receivers.push(receiver);
    }
    let inboxes: Vec<Option<source::Inbox>> = source::Inbox::for_workers(receivers)
        .into_iter()
        .map(Some)
        .collect();
    let inboxes = Arc::new(Mutex::new(inboxes));

    let spec = match &options.backfill {
        Some((settings, progress)) => Spec::Backfill(settings.clone(), Arc::clone(progress)),
        None => Spec::Pipeline(&pipeline.source),
    };
    let delivery = Delivery {
        runtime: runtime.handle().clone(),
        senders,
        first_worker,
        peers,
        once: options.once,
        shutdown: Arc::clone(&shutdown),
    };
    let log = Arc::clone(&warehouse) as Arc<dyn crate::warehouse::ObjectLog>;
    let Started { acks, finish } = source::start(spec, delivery, log, &stats)?;

    if let Some(address) = options.metrics_addr {
        let probes = readiness_probes(pipeline, &warehouse, &stats, options.backfill.is_some());
        runtime
            .block_on(crate::metrics::serve(address, Arc::clone(&stats), probes))
            .map_err(|source| RunError::Metrics { address, source })?;
    }

    let context = Arc::new(Context {
        runtime: runtime.handle().clone(),
        warehouse,
        policy: pipeline.batch,
        max_in_flight: pipeline.max_in_flight,
        load_connections: pipeline.load_connections,
        limits: pipeline.limits,
        plan: pipeline.plan.clone(),
        shutdown: Arc::clone(&shutdown),
        stats: Arc::clone(&stats),
    });
    let worker_stats = Arc::clone(&stats);
    let guards = timely::execute(timely_config, move |worker| {
        let local = worker.index() % local_workers;
        let objects = match inboxes.lock() {
            Ok(mut inboxes) => inboxes[local].take(),
            Err(_) => None,
        };
        let Some(objects) = objects else {
            return Err(format!("worker {} has no object channel", worker.index()));
        };
        let acker = acks.for_worker(worker.index())?;
        work(worker, &context, objects, acker, &worker_stats)
    })
    .map_err(RunError::Cluster)?;

    let mut failure = None;
    for result in guards.join() {
        match result {
            Ok(Ok(())) => {}
            Ok(Err(message)) | Err(message) => failure = Some(message),
        }
    }
    runtime.block_on(finish);
    runtime.shutdown_timeout(Duration::from_secs(5));
    if let Some(message) = failure {
        return Err(RunError::Worker(message));
    }
    Ok(RunSummary {
        stats: stats.snapshot(),
        elapsed: started.elapsed(),
    })
}

/// One worker: builds the dataflow, then steps it and acknowledges the batches it has
/// committed until its input ends or the run stops.
fn work<W: Warehouse>(
    worker: &mut timely::worker::Worker,
    context: &Context<W>,
    objects: source::Inbox,
    mut acker: Acker,
    worker_stats: &RunStats,
) -> Result<(), String> {
    let shutdown = Arc::clone(&context.shutdown);
    let handles = dataflow::build(worker, context, objects, |activator| {
        shutdown.register(activator)
    });
    loop {
        let running = worker.step_or_park(Some(Duration::from_secs(1)));
        if let Some(failure) = shutdown.failure() {
            // timely keeps stepping a worker until its dataflows complete, which a
            // failed load never lets happen: drop them. (Other processes of the
            // cluster then lose this one and stop too; nothing was acknowledged.)
            for dataflow in worker.installed_dataflows() {
                worker.drop_dataflow(dataflow);
            }
            return Err(failure.to_owned());
        }
        acknowledge(&handles, &mut acker, worker_stats)?;
        if let Some(abandoned) = shutdown.abandoned() {
            // A loader gave a batch up on shutdown while retrying it: the dataflow
            // cannot complete, so drop it, acknowledging nothing more.
            for dataflow in worker.installed_dataflows() {
                worker.drop_dataflow(dataflow);
            }
            tracing::warn!(
                worker = worker.index(),
                abandoned,
                "stopped with batches unloaded; their input loads again on the next start"
            );
            return Ok(());
        }
        {
            let pending = handles.pending.borrow();
            worker_stats.pending_batches(
                worker.index(),
                pending.first_key_value().map(|(batch, _)| *batch),
                pending.len(),
            );
        }
        if !running {
            return Ok(());
        }
    }
}

/// What `/ready` checks: no warehouse operation is failing and being retried, the
/// warehouse accepts a connection, and the source (the directory, or the SQS queue)
/// answers.
fn readiness_probes<W: Warehouse>(
    pipeline: &Pipeline,
    warehouse: &Arc<W>,
    stats: &Arc<RunStats>,
    backfill: bool,
) -> Vec<(&'static str, crate::metrics::Probe)> {
    let mut probes: Vec<(&'static str, crate::metrics::Probe)> = Vec::new();
    let warehouse = Arc::clone(warehouse);
    let stats = Arc::clone(stats);
    probes.push((
        "warehouse",
        Arc::new(move || {
            let warehouse = Arc::clone(&warehouse);
            let failing = stats.metrics.warehouse_failures();
            Box::pin(async move {
                if !failing.is_empty() {
                    let failing: Vec<String> = failing
                        .into_iter()
                        .map(|(operation, cause)| format!("{operation} failing, retried: {cause}"))
                        .collect();
                    return Err(failing.join("; "));
                }
                warehouse
                    .loader()
                    .await
                    .map(drop)
                    .map_err(|error| error.to_string())
            })
        }),
    ));
    if !backfill {
        probes.push(("source", source::probe(&pipeline.source)));
    }
    probes
}

/// Marks every batch the probe has passed as done: its objects are durable everywhere.
fn acknowledge(
    handles: &dataflow::Handles,
    acker: &mut Acker,
    stats: &RunStats,
) -> Result<(), String> {
    let mut acknowledged_any = false;
    loop {
        let mut pending = handles.pending.borrow_mut();
        let Some((&batch, _)) = pending.first_key_value() else {
            break;
        };
        if handles.probe.less_equal(&batch) {
            break;
        }
        let Some((_, objects)) = pending.pop_first() else {
            break;
        };
        drop(pending);
        stats.objects_committed(
            batch,
            objects.iter().filter_map(|object| object.written),
            SystemTime::now(),
        );
        let count = objects.len() as u64;
        // A batch that held only part of an object has nothing to acknowledge: the
        // object goes with the batch of its last part.
        if count > 0 {
            acker.acknowledge(objects)?;
        }
        stats.objects_acknowledged(batch, count);
        acknowledged_any = true;
    }
    if acknowledged_any && let Some(activator) = handles.admit.borrow().as_ref() {
        activator.activate();
    }
    Ok(())
}

fn prepare<W: Warehouse>(runtime: &tokio::runtime::Runtime, warehouse: &W) -> Result<(), RunError> {
    // Start-up waits for the warehouse like a load does, but gives up after a while
    // so a wrong URL is reported instead of retried forever.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut backoff = crate::retry::Backoff::default();
    loop {
        match runtime.block_on(warehouse.prepare()) {
            Ok(()) => return Ok(()),
            Err(error)
                if Instant::now() >= deadline || error.class() != FailureClass::Transient =>
            {
                return Err(RunError::Warehouse(error.to_string()));
            }
            Err(error) => {
                let wait = backoff.failed();
                let attempt = backoff.failures();
                tracing::warn!(attempt, error = %error, retry_in = ?wait, "cannot prepare the warehouse");
                std::thread::sleep(wait);
            }
        }
    }
}

fn timely_config(cluster: &Cluster) -> Result<timely::Config, RunError> {
    if cluster.workers == 0 {
        return Err(RunError::Cluster("--workers must be at least 1".into()));
    }
    if cluster.process >= cluster.processes {
        return Err(RunError::Cluster(format!(
            "--process {} is not below --processes {}",
            cluster.process, cluster.processes
        )));
    }
    let communication = if cluster.processes > 1 {
        let Some(path) = &cluster.hostfile else {
            return Err(RunError::Cluster(
                "--processes > 1 needs --hostfile (one host:port line per process)".into(),
            ));
        };
        let addresses = read_hostfile(path)?;
        if addresses.len() < cluster.processes {
            return Err(RunError::Cluster(format!(
                "hostfile {} has {} addresses for {} processes",
                path.display(),
                addresses.len(),
                cluster.processes
            )));
        }
        timely::CommunicationConfig::Cluster {
            threads: cluster.workers,
            process: cluster.process,
            addresses: addresses.into_iter().take(cluster.processes).collect(),
            report: false,
            zerocopy: false,
        }
    } else if cluster.workers > 1 {
        timely::CommunicationConfig::Process(cluster.workers)
    } else {
        timely::CommunicationConfig::Thread
    };
    Ok(timely::Config {
        communication,
        worker: timely::WorkerConfig::default(),
    })
}

fn read_hostfile(path: &Path) -> Result<Vec<String>, RunError> {
    let text = std::fs::read_to_string(path).map_err(|source| RunError::Hostfile {
        path: path.to_owned(),
        source,
    })?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_owned)
        .collect())
}
