//! run: one process of a tracktable cluster, from start-up to exit.
//!
//! Builds the process's tokio runtime (sources and warehouse I/O), prepares the
//! warehouse, starts the source's lister and the signal watcher, then runs the timely
//! workers: each builds the dataflow (`dataflow::build`) and loops
//! `step_or_park` → acknowledge batches the probe has passed, until the dataflow ends
//! (input exhausted in `--once` mode, or a graceful shutdown).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::config::{Pipeline, SourceFile, WarehouseFile};
use crate::dataflow::{self, Context};
use crate::shutdown::{self, Shutdown};
use crate::source::{self, ObjectRef, backfill, dir, sqs};
use crate::telemetry::{RunStats, StatsSnapshot};
use crate::warehouse::Warehouse;
use crate::warehouse::WarehouseError;
use crate::warehouse::postgres::PostgresWarehouse;

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
    Dir(#[from] dir::DirError),
    #[error("warehouse: {0}")]
    Warehouse(String),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error(transparent)]
    Backfill(#[from] backfill::BackfillError),
    #[error("cannot serve metrics on {address}: {source}")]
    Metrics {
        address: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("a worker failed: {0}")]
    Worker(String),
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

    // The source: a directory lister, the SQS poller with its acker, or a backfill.
    let log = Arc::clone(&warehouse) as Arc<dyn crate::warehouse::ObjectLog>;
    let mut recorder = None;
    let (root, acks, sqs_source) = if let Some((settings, progress)) = &options.backfill {
        let source = runtime.block_on(backfill::Backfill::new(
            settings.clone(),
            Arc::clone(&log),
            Arc::clone(progress),
        ));
        let plan = runtime.block_on(source.plan())?;
        tracing::info!(
            bucket = %settings.bucket,
            prefix = %settings.prefix,
            objects = plan.len(),
            already_loaded = progress.skipped.load(std::sync::atomic::Ordering::Relaxed),
            "backfill planned"
        );
        let (acks, task) = source.start(runtime.handle(), plan, senders, Arc::clone(&shutdown));
        recorder = Some(task);
        (PathBuf::new(), Acks::Objects(acks), None)
    } else {
        match &pipeline.source {
            SourceFile::Dir {
                path: root,
                state_dir,
                poll_interval,
            } => {
                let state_dir = state_dir
                    .clone()
                    .unwrap_or_else(|| root.join(dir::STATE_DIR_NAME));
                let done = dir::read_done(&state_dir)?;
                runtime.spawn(list_forever(ListerConfig {
                    root: root.clone(),
                    done,
                    poll_interval: *poll_interval,
                    first_worker,
                    peers,
                    once: options.once,
                    senders,
                    shutdown: Arc::clone(&shutdown),
                }));
                (root.clone(), Acks::Dir(state_dir), None)
            }
            SourceFile::Sqs {
                queue_url,
                region,
                endpoint_url,
                receives_in_flight,
                visibility_timeout,
                wait_time,
            } => {
                let source = runtime.block_on(sqs::SqsSource::new(
                    sqs::SqsSettings {
                        queue_url: queue_url.clone(),
                        region: region.clone(),
                        endpoint_url: endpoint_url.clone(),
                        receives_in_flight: *receives_in_flight,
                        visibility_timeout: *visibility_timeout,
                        wait_time: *wait_time,
                    },
                    Arc::clone(&log),
                    Arc::clone(&stats),
                ));
                let (acks, acker) = source.start(
                    runtime.handle(),
                    senders,
                    Arc::clone(&shutdown),
                    options.once,
                );
                (PathBuf::new(), Acks::Sqs(acks), Some((source, acker)))
            }
        }
    };

    if let Some(address) = options.metrics_addr {
        let probes = readiness_probes(pipeline, &warehouse, options.backfill.is_some());
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
        root,
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
        let mut acker = match &acks {
            Acks::Dir(state_dir) => Acker::Dir(
                dir::DoneLog::open(state_dir, worker.index()).map_err(|error| error.to_string())?,
            ),
            Acks::Sqs(acks) => Acker::Sqs(acks.clone()),
            Acks::Objects(acks) => Acker::Objects(acks.clone()),
        };
        let shutdown = Arc::clone(&context.shutdown);
        let handles = dataflow::build(worker, &context, objects, |activator| {
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
            acknowledge(&handles, &mut acker, &worker_stats)?;
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
    })
    .map_err(RunError::Cluster)?;

    let mut failure = None;
    for result in guards.join() {
        match result {
            Ok(Ok(())) => {}
            Ok(Err(message)) | Err(message) => failure = Some(message),
        }
    }
    if let Some(recorder) = recorder
        && runtime
            .block_on(async { tokio::time::timeout(Duration::from_secs(60), recorder).await })
            .is_err()
    {
        tracing::warn!("recording loaded objects did not finish within 60 s");
    }
    if let Some((source, acker)) = sqs_source {
        // Every worker is gone, so every acknowledgement is sent: let the acker delete
        // the last messages and release the rest.
        if runtime
            .block_on(async { tokio::time::timeout(Duration::from_secs(60), acker).await })
            .is_err()
        {
            tracing::warn!("SQS acknowledgements did not finish within 60 s");
        }
        let metrics = &stats.metrics;
        tracing::info!(
            received = metrics.sqs_received.get(),
            deleted = metrics.sqs_deleted.get(),
            ignored = metrics.sqs_ignored.get(),
            unparseable = metrics.sqs_unparseable.get(),
            released = metrics.sqs_released.get(),
            "SQS source finished"
        );
        drop(source);
    }
    runtime.shutdown_timeout(Duration::from_secs(5));
    if let Some(message) = failure {
        return Err(RunError::Worker(message));
    }
    Ok(RunSummary {
        stats: stats.snapshot(),
        elapsed: started.elapsed(),
    })
}

/// What `/ready` checks: the warehouse accepts a connection, and the source (the
/// directory, or the SQS queue) answers.
fn readiness_probes<W: Warehouse>(
    pipeline: &Pipeline,
    warehouse: &Arc<W>,
    backfill: bool,
) -> Vec<(&'static str, crate::metrics::Probe)> {
    let mut probes: Vec<(&'static str, crate::metrics::Probe)> = Vec::new();
    let warehouse = Arc::clone(warehouse);
    probes.push((
        "warehouse",
        Arc::new(move || {
            let warehouse = Arc::clone(&warehouse);
            Box::pin(async move {
                warehouse
                    .loader()
                    .await
                    .map(drop)
                    .map_err(|error| error.to_string())
            })
        }),
    ));
    if backfill {
        return probes;
    }
    match &pipeline.source {
        SourceFile::Dir { path, .. } => {
            let path = path.clone();
            probes.push((
                "source",
                Arc::new(move || {
                    let path = path.clone();
                    Box::pin(async move {
                        std::fs::read_dir(&path)
                            .map(drop)
                            .map_err(|error| format!("{}: {error}", path.display()))
                    })
                }),
            ));
        }
        SourceFile::Sqs {
            queue_url,
            region,
            endpoint_url,
            ..
        } => {
            let (queue_url, region, endpoint_url) =
                (queue_url.clone(), region.clone(), endpoint_url.clone());
            probes.push((
                "source",
                Arc::new(move || {
                    let (queue_url, region, endpoint_url) =
                        (queue_url.clone(), region.clone(), endpoint_url.clone());
                    Box::pin(async move {
                        let (_, sqs) =
                            sqs::clients(region.as_deref(), endpoint_url.as_deref()).await;
                        sqs.get_queue_attributes()
                            .queue_url(&queue_url)
                            .send()
                            .await
                            .map(drop)
                            .map_err(|error| {
                                format!("{}", aws_sdk_sqs::error::DisplayErrorContext(&error))
                            })
                    })
                }),
            ));
        }
    }
    probes
}

/// How a source's objects are acknowledged, as the worker closure captures it.
enum Acks {
    /// `dir`: each worker appends to its done log in this state directory.
    Dir(PathBuf),
    /// SQS: committed objects go to the source's acker, which deletes their messages.
    Sqs(sqs::SqsAcks),
    /// Backfill: committed objects are recorded in the warehouse's object log.
    Objects(backfill::ObjectAcks),
}

/// One worker's acknowledger.
enum Acker {
    Dir(dir::DoneLog),
    Sqs(sqs::SqsAcks),
    Objects(backfill::ObjectAcks),
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
        let count = objects.len() as u64;
        match acker {
            Acker::Dir(done_log) => done_log
                .append(objects.iter().map(|object| object.name.as_ref()))
                .map_err(|error| error.to_string())?,
            Acker::Sqs(acks) => {
                if !acks.acknowledge(objects) {
                    return Err("the SQS acknowledger stopped".into());
                }
            }
            Acker::Objects(acks) => {
                if !acks.acknowledge(objects) {
                    return Err("the object recorder stopped".into());
                }
            }
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
    let mut attempt = 0;
    loop {
        match runtime.block_on(warehouse.prepare()) {
            Ok(()) => return Ok(()),
            Err(error) if Instant::now() >= deadline || error.is_permanent() => {
                return Err(RunError::Warehouse(error.to_string()));
            }
            Err(error) => {
                attempt += 1;
                let wait = crate::load::backoff::delay(attempt, rand::random());
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

struct ListerConfig {
    root: PathBuf,
    done: HashSet<Arc<str>>,
    poll_interval: Duration,
    first_worker: usize,
    peers: usize,
    once: bool,
    senders: Vec<mpsc::Sender<ObjectRef>>,
    shutdown: Arc<Shutdown>,
}

/// Lists the directory every poll interval and sends each new object this process owns
/// to its worker. In `once` mode it lists once and then closes the channels, which ends
/// the dataflow after everything listed is loaded.
async fn list_forever(mut lister: ListerConfig) {
    let settle = if lister.once {
        Duration::ZERO
    } else {
        lister.poll_interval
    };
    loop {
        match dir::list(&lister.root, &lister.done, settle) {
            Ok(objects) => {
                for object in objects {
                    let owner = source::owner(&object.name, lister.peers);
                    // Remember it as seen whether it is ours or another process's.
                    lister.done.insert(Arc::clone(&object.name));
                    let Some(local) = owner
                        .checked_sub(lister.first_worker)
                        .filter(|&local| local < lister.senders.len())
                    else {
                        continue;
                    };
                    if lister.senders[local].send(object).await.is_err() {
                        return;
                    }
                    lister.shutdown.wake_all();
                }
            }
            Err(error) => tracing::error!(error = %error, "cannot list the source directory"),
        }
        if lister.once || lister.shutdown.is_requested() {
            // Dropping the senders closes every worker's input; then wake them to see it.
            drop(std::mem::take(&mut lister.senders));
            lister.shutdown.wake_all();
            return;
        }
        tokio::time::sleep(lister.poll_interval).await;
    }
}
