//! start: every source behind one interface. A run names what to read ([`Spec`]),
//! [`start`] sets its tasks going on the run's tokio runtime, objects arrive in the
//! workers' inboxes, and each worker hands the objects of committed batches back through
//! its [`Acker`]. What the source still has to do after the workers stop (delete the
//! last SQS messages, record the last loaded objects) is [`Started::finish`].
//!
//! Invariant: an object is acknowledged only after every row derived from it has
//! committed; the source alone decides what acknowledging means (a done log, an SQS
//! delete, a record in the warehouse's object log).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::mpsc;

use super::ObjectRef;
use super::backfill::{self, Backfill, BackfillProgress, BackfillSettings};
use super::dir::{self, DoneLog};
use super::sqs::{SqsSettings, SqsSource};
use crate::config::SourceFile;
use crate::shutdown::Shutdown;
use crate::telemetry::RunStats;
use crate::warehouse::ObjectLog;

/// How long the run waits, after its workers stop, for a source's last acknowledgements.
const FINISH_WITHIN: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(
        "source directory {0} does not exist: create it or fix source.path (tracktable never creates it)"
    )]
    MissingDir(PathBuf),
    #[error(transparent)]
    Dir(#[from] dir::DirError),
    #[error(transparent)]
    Backfill(#[from] backfill::BackfillError),
}

/// What a run reads.
pub enum Spec<'a> {
    /// The pipeline file's own source: a directory or an SQS queue.
    Pipeline(&'a SourceFile),
    /// Every object under an S3 prefix, once, counting progress.
    Backfill(BackfillSettings, Arc<BackfillProgress>),
}

/// Where a source delivers: this process's workers.
pub struct Delivery {
    pub runtime: tokio::runtime::Handle,
    /// One bounded channel per local worker; dropping them all ends the run's input.
    pub senders: Vec<mpsc::Sender<ObjectRef>>,
    /// The global index of this process's first worker, and the cluster's worker count
    /// (a directory is shared out between processes by name).
    pub first_worker: usize,
    pub peers: usize,
    /// Deliver what is there now, then close the channels.
    pub once: bool,
    pub shutdown: Arc<Shutdown>,
}

/// A started source.
pub struct Started {
    /// What each worker acknowledges through.
    pub acks: Acks,
    /// The source's own work after every worker has stopped (bounded in time).
    pub finish: BoxFuture<'static, ()>,
}

/// How a source's objects are acknowledged, as every worker's closure captures it.
#[derive(Debug, Clone)]
pub enum Acks {
    /// `dir`: each worker appends to its own done log in this state directory.
    DoneLogs(PathBuf),
    /// Committed objects go to a task of the source, which deletes their SQS messages
    /// or records them in the warehouse's object log; `task` names it in errors.
    Channel {
        sender: mpsc::UnboundedSender<Vec<ObjectRef>>,
        task: &'static str,
    },
}

impl Acks {
    /// The acknowledger of worker `worker` (its global index).
    pub fn for_worker(&self, worker: usize) -> Result<Acker, String> {
        Ok(match self {
            Acks::DoneLogs(state_dir) => {
                Acker::DoneLog(DoneLog::open(state_dir, worker).map_err(|error| error.to_string())?)
            }
            Acks::Channel { sender, task } => Acker::Channel {
                sender: sender.clone(),
                task,
            },
        })
    }
}

/// One worker's acknowledger.
pub enum Acker {
    DoneLog(DoneLog),
    Channel {
        sender: mpsc::UnboundedSender<Vec<ObjectRef>>,
        task: &'static str,
    },
}

impl Acker {
    /// Hands back the objects of a committed batch. An error stops the worker: the
    /// objects stay unacknowledged, so they load again (as no-ops) after a restart.
    pub fn acknowledge(&mut self, objects: Vec<ObjectRef>) -> Result<(), String> {
        match self {
            Acker::DoneLog(log) => log
                .append(objects.iter().map(|object| object.name.as_ref()))
                .map_err(|error| error.to_string()),
            Acker::Channel { sender, task } => sender
                .send(objects)
                .map_err(|_| format!("the {task} stopped")),
        }
    }
}

/// A `dir` source's directory must exist before anything runs: a typo in the path is a
/// configuration error, never an empty source (and never a directory made up for it).
pub fn check_exists(source: &SourceFile) -> Result<(), SourceError> {
    match source {
        SourceFile::Dir { path, .. } if !path.is_dir() => {
            Err(SourceError::MissingDir(path.clone()))
        }
        _ => Ok(()),
    }
}

/// Starts the source `spec` names, delivering into `delivery`.
pub fn start(
    spec: Spec<'_>,
    delivery: Delivery,
    log: Arc<dyn ObjectLog>,
    stats: &Arc<RunStats>,
) -> Result<Started, SourceError> {
    match spec {
        Spec::Backfill(settings, progress) => {
            start_backfill(settings, progress, delivery, log, stats)
        }
        Spec::Pipeline(SourceFile::Dir {
            path,
            state_dir,
            poll_interval,
        }) => {
            let state_dir = state_dir
                .clone()
                .unwrap_or_else(|| path.join(dir::STATE_DIR_NAME));
            let done = dir::read_done(&state_dir)?;
            tracing::info!(
                directory = %path.display(),
                state = %state_dir.display(),
                already_loaded = done.len(),
                "dir source: files already loaded into this pipeline's warehouse are skipped"
            );
            let runtime = delivery.runtime.clone();
            runtime.spawn(dir::list_forever(dir::Lister {
                root: path.clone(),
                done,
                poll_interval: *poll_interval,
                delivery,
            }));
            Ok(Started {
                acks: Acks::DoneLogs(state_dir),
                finish: Box::pin(async {}),
            })
        }
        Spec::Pipeline(SourceFile::Sqs {
            queue_url,
            region,
            endpoint_url,
            receives_in_flight,
            visibility_timeout,
            wait_time,
        }) => {
            let settings = SqsSettings {
                queue_url: queue_url.clone(),
                region: region.clone(),
                endpoint_url: endpoint_url.clone(),
                receives_in_flight: *receives_in_flight,
                visibility_timeout: *visibility_timeout,
                wait_time: *wait_time,
            };
            Ok(start_sqs(settings, delivery, log, stats))
        }
    }
}

fn start_backfill(
    settings: BackfillSettings,
    progress: Arc<BackfillProgress>,
    delivery: Delivery,
    log: Arc<dyn ObjectLog>,
    stats: &Arc<RunStats>,
) -> Result<Started, SourceError> {
    let runtime = delivery.runtime.clone();
    let source = runtime.block_on(Backfill::new(settings.clone(), log, Arc::clone(&progress)));
    let plan = runtime.block_on(source.plan())?;
    tracing::info!(
        bucket = %settings.bucket,
        prefix = %settings.prefix,
        objects = plan.len(),
        already_loaded = progress.skipped.load(std::sync::atomic::Ordering::Relaxed),
        "backfill planned"
    );
    let stats = Arc::clone(stats);
    let (sender, recorder) =
        source.start(&runtime, plan, delivery.senders, delivery.shutdown, stats);
    Ok(Started {
        acks: Acks::Channel {
            sender,
            task: "object recorder",
        },
        finish: Box::pin(async move {
            if tokio::time::timeout(FINISH_WITHIN, recorder).await.is_err() {
                tracing::warn!("recording loaded objects did not finish within 60 s");
            }
        }),
    })
}

fn start_sqs(
    settings: SqsSettings,
    delivery: Delivery,
    log: Arc<dyn ObjectLog>,
    stats: &Arc<RunStats>,
) -> Started {
    let runtime = delivery.runtime.clone();
    let source = runtime.block_on(SqsSource::new(settings, log, Arc::clone(stats)));
    let (sender, acker) =
        source.start(&runtime, delivery.senders, delivery.shutdown, delivery.once);
    let stats = Arc::clone(stats);
    Started {
        acks: Acks::Channel {
            sender,
            task: "SQS acknowledger",
        },
        finish: Box::pin(async move {
            // Every worker is gone, so every acknowledgement is sent: let the acker
            // delete the last messages and release the rest.
            if tokio::time::timeout(FINISH_WITHIN, acker).await.is_err() {
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
        }),
    }
}

/// What `/ready` asks of the pipeline's source: the directory can be read, or the SQS
/// queue answers.
pub fn probe(source: &SourceFile) -> crate::metrics::Probe {
    match source {
        SourceFile::Dir { path, .. } => {
            let path = path.clone();
            Arc::new(move || {
                let path = path.clone();
                Box::pin(async move {
                    std::fs::read_dir(&path)
                        .map(drop)
                        .map_err(|error| format!("{}: {error}", path.display()))
                })
            })
        }
        SourceFile::Sqs {
            queue_url,
            region,
            endpoint_url,
            ..
        } => {
            let (queue_url, region, endpoint_url) =
                (queue_url.clone(), region.clone(), endpoint_url.clone());
            Arc::new(move || {
                let (queue_url, region, endpoint_url) =
                    (queue_url.clone(), region.clone(), endpoint_url.clone());
                Box::pin(async move {
                    let (_, sqs) =
                        super::aws::clients(region.as_deref(), endpoint_url.as_deref()).await;
                    sqs.get_queue_attributes()
                        .queue_url(&queue_url)
                        .send()
                        .await
                        .map(drop)
                        .map_err(|error| {
                            format!("{}", aws_sdk_sqs::error::DisplayErrorContext(&error))
                        })
                })
            })
        }
    }
}
