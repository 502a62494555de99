//! The backfill source: every object under an S3 prefix, once, through the same
//! dataflow as the live sources.
//!
//! Lists the prefix (`ListObjectsV2`, paginated), keeps the objects last modified in
//! `[since, until)`, drops those the warehouse's object log already holds (so running
//! the same backfill again loads nothing new, and objects the SQS source loaded are
//! not loaded twice), then fetches the rest a few at a time and hands them to this
//! process's workers. When a batch commits, its objects are recorded in the object
//! log. The run ends when every listed object has been handed over and loaded.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::aws::{GetError, get_object};
use super::{Body, ObjectRef};
use crate::shutdown::Shutdown;
use crate::warehouse::{ObjectId, ObjectLog};

/// Objects fetched at once.
const FETCHES_IN_FLIGHT: usize = 8;
/// Object-log lookups per query.
const LOOKUP_CHUNK: usize = 1000;

#[derive(Debug, Clone)]
pub struct BackfillSettings {
    pub bucket: String,
    pub prefix: String,
    /// Only objects last modified at or after this.
    pub since: Option<SystemTime>,
    /// Only objects last modified before this.
    pub until: Option<SystemTime>,
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
}

/// Counters a progress display reads.
#[derive(Debug, Default)]
pub struct BackfillProgress {
    /// Objects under the prefix in the time range.
    pub listed: AtomicU64,
    /// Of those, already loaded before this run.
    pub skipped: AtomicU64,
    /// To load in this run, and their bytes.
    pub to_load: AtomicU64,
    pub bytes_to_load: AtomicU64,
    /// Fetched and handed to the workers.
    pub fetched: AtomicU64,
    pub bytes_fetched: AtomicU64,
    /// Committed and recorded.
    pub loaded: AtomicU64,
    /// Listing finished (`to_load` is final).
    pub listing_done: AtomicU64,
}

#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error("cannot list s3://{bucket}/{prefix}: {message}")]
    List {
        bucket: String,
        prefix: String,
        message: String,
    },
}

/// One listed object.
#[derive(Debug, Clone)]
struct Listed {
    key: String,
    size: u64,
    etag: String,
}

impl Listed {
    fn name(&self, bucket: &str) -> String {
        format!("s3://{bucket}/{}", self.key)
    }
}

pub struct Backfill {
    settings: BackfillSettings,
    s3: aws_sdk_s3::Client,
    log: Arc<dyn ObjectLog>,
    pub progress: Arc<BackfillProgress>,
    /// Content id (ETag) of each object handed over, by name, for the object log.
    contents: Mutex<HashMap<Arc<str>, String>>,
}

impl Backfill {
    pub async fn new(
        settings: BackfillSettings,
        log: Arc<dyn ObjectLog>,
        progress: Arc<BackfillProgress>,
    ) -> Arc<Backfill> {
        let (s3, _) =
            super::aws::clients(settings.region.as_deref(), settings.endpoint_url.as_deref()).await;
        Arc::new(Backfill {
            settings,
            s3,
            log,
            progress,
            contents: Mutex::default(),
        })
    }

    /// Lists what there is to load (before the dataflow starts, so a wrong bucket or
    /// missing permission is reported at once).
    pub async fn plan(&self) -> Result<Vec<ObjectRefPlan>, BackfillError> {
        let listed = self.list().await?;
        self.progress
            .listed
            .store(listed.len() as u64, Ordering::Relaxed);
        let mut fresh = Vec::with_capacity(listed.len());
        for chunk in listed.chunks(LOOKUP_CHUNK) {
            let ids: Vec<ObjectId> = chunk
                .iter()
                .map(|object| (object.name(&self.settings.bucket), object.etag.clone()))
                .collect();
            let loaded = match self.log.loaded(ids).await {
                Ok(loaded) => loaded,
                Err(error) => {
                    tracing::warn!(error = %error, "cannot read the object log; loading these objects again (harmless)");
                    Default::default()
                }
            };
            for object in chunk {
                let id = (object.name(&self.settings.bucket), object.etag.clone());
                if loaded.contains(&id) {
                    self.progress.skipped.fetch_add(1, Ordering::Relaxed);
                } else {
                    fresh.push(ObjectRefPlan(object.clone()));
                }
            }
        }
        self.progress
            .to_load
            .store(fresh.len() as u64, Ordering::Relaxed);
        self.progress.bytes_to_load.store(
            fresh.iter().map(|plan| plan.0.size).sum(),
            Ordering::Relaxed,
        );
        self.progress.listing_done.store(1, Ordering::Relaxed);
        Ok(fresh)
    }

    async fn list(&self) -> Result<Vec<Listed>, BackfillError> {
        let mut listed = Vec::new();
        let mut pages = self
            .s3
            .list_objects_v2()
            .bucket(&self.settings.bucket)
            .prefix(&self.settings.prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|error| BackfillError::List {
                bucket: self.settings.bucket.clone(),
                prefix: self.settings.prefix.clone(),
                message: format!("{}", aws_sdk_s3::error::DisplayErrorContext(&error)),
            })?;
            for object in page.contents.unwrap_or_default() {
                let Some(key) = object.key else { continue };
                if key.ends_with('/') {
                    continue;
                }
                let modified = object
                    .last_modified
                    .and_then(|time| SystemTime::try_from(time).ok());
                if let (Some(since), Some(modified)) = (self.settings.since, modified)
                    && modified < since
                {
                    continue;
                }
                if let (Some(until), Some(modified)) = (self.settings.until, modified)
                    && modified >= until
                {
                    continue;
                }
                listed.push(Listed {
                    key,
                    size: object.size.unwrap_or(0).max(0) as u64,
                    etag: object
                        .e_tag
                        .unwrap_or_default()
                        .trim_matches('"')
                        .to_owned(),
                });
            }
        }
        listed.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(listed)
    }

    /// Fetches the planned objects into the workers' channels and records committed
    /// ones in the object log. Returns where the workers send committed objects, and
    /// the recorder's task, which ends once every sender is dropped.
    pub fn start(
        self: &Arc<Self>,
        runtime: &tokio::runtime::Handle,
        plan: Vec<ObjectRefPlan>,
        senders: Vec<mpsc::Sender<ObjectRef>>,
        shutdown: Arc<Shutdown>,
        stats: Arc<crate::telemetry::RunStats>,
    ) -> (
        mpsc::UnboundedSender<Vec<ObjectRef>>,
        tokio::task::JoinHandle<()>,
    ) {
        let fetcher = Arc::clone(self);
        let fetch_shutdown = Arc::clone(&shutdown);
        runtime.spawn(async move {
            fetcher.fetch_all(plan, senders, &fetch_shutdown).await;
            // fetch_all consumed the senders: dropping them closed the workers' input.
            fetch_shutdown.wake_all();
        });
        let (sender, mut receiver) = mpsc::unbounded_channel::<Vec<ObjectRef>>();
        let recorder = Arc::clone(self);
        let record_shutdown = Arc::clone(&shutdown);
        let task = runtime.spawn(async move {
            while let Some(objects) = receiver.recv().await {
                let ids: Vec<ObjectId> = {
                    let contents = recorder
                        .contents
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    objects
                        .iter()
                        .map(|object| {
                            (
                                object.name.to_string(),
                                contents.get(&object.name).cloned().unwrap_or_default(),
                            )
                        })
                        .collect()
                };
                let count = ids.len() as u64;
                // Retried until the record holds; unrecorded (the run is stopping), a
                // later backfill loads them again (harmless) and they are not counted.
                let log = &*recorder.log;
                if !crate::load::record_objects(log, ids, &record_shutdown, &stats).await {
                    continue;
                }
                recorder.progress.loaded.fetch_add(count, Ordering::Relaxed);
            }
        });
        (sender, task)
    }

    async fn fetch_all(
        &self,
        plan: Vec<ObjectRefPlan>,
        senders: Vec<mpsc::Sender<ObjectRef>>,
        shutdown: &Shutdown,
    ) {
        let next = AtomicUsize::new(0);
        let mut fetched = futures_util::stream::iter(plan)
            .map(|ObjectRefPlan(object)| async move {
                let body = self.fetch(&object).await;
                (object, body)
            })
            .buffered(FETCHES_IN_FLIGHT);
        while let Some((object, body)) = fetched.next().await {
            if shutdown.is_requested() {
                return;
            }
            let name: Arc<str> = Arc::from(object.name(&self.settings.bucket));
            self.contents
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(Arc::clone(&name), object.etag.clone());
            self.progress.fetched.fetch_add(1, Ordering::Relaxed);
            self.progress
                .bytes_fetched
                .fetch_add(object.size, Ordering::Relaxed);
            let object_ref = ObjectRef {
                name,
                bytes: object.size,
                body,
                token: 0,
                // Written before the backfill began: its age would measure the
                // backlog, not the pipeline, so freshness does not observe it.
                written: None,
            };
            let worker = next.fetch_add(1, Ordering::Relaxed) % senders.len().max(1);
            if senders[worker].send(object_ref).await.is_err() {
                return;
            }
            shutdown.wake_all();
        }
    }

    /// The object's bytes; a `Missing` body (one `_rejections` row) when it is gone or
    /// cannot be read after retries, so one bad object does not stop the backfill.
    async fn fetch(&self, object: &Listed) -> Body {
        match get_object(&self.s3, &self.settings.bucket, &object.key, None).await {
            Ok(bytes) => Body::Fetched(bytes),
            Err(GetError::Missing) => Body::Missing(
                "the listed object does not exist any more (deleted before it was fetched)".into(),
            ),
            Err(error) => {
                let name = object.name(&self.settings.bucket);
                tracing::error!(object = %name, error = %error, "cannot fetch an object; recording it in _rejections");
                Body::Missing(format!("cannot fetch the object: {error}"))
            }
        }
    }
}

/// An object the backfill will load (opaque outside this module).
#[derive(Debug, Clone)]
pub struct ObjectRefPlan(Listed);
