//! The SQS source: S3 "object created" notifications in, objects fetched, messages
//! deleted only after everything derived from them has committed.
//!
//! One instance per process, on the process's tokio runtime:
//!
//! - `receives_in_flight` receive loops long-poll the queue (10 messages, `wait_time`).
//!   Each body is parsed ([`notification::parse`]): test events and unrelated bodies are
//!   deleted at once with a log line; a body that cannot be understood is left alone
//!   (its visibility runs out, and the queue's redrive policy moves it aside after
//!   `maxReceiveCount` tries), logged once; an object announcement is *held*.
//! - Each announced object is fetched (`GetObject`, retried on transient errors) and
//!   handed to one of this process's workers over its bounded channel, which wakes the
//!   worker's Admit operator. A 404 (the object was deleted before it was fetched)
//!   becomes a `_rejections` row, so its message is deleted like any other once that
//!   row committed. Any other fetch failure (AccessDenied, say) is logged loudly and
//!   the message is let go, not deleted: it comes back after its visibility timeout.
//! - While a message is held, a keeper task extends its visibility every third of the
//!   timeout, so a slow load never lets it reappear to another consumer.
//! - Workers send the objects of every committed batch to the acker
//!   (through the channel `start` returns); a message is deleted (`DeleteMessageBatch`, failures retried) when
//!   all its objects have been acknowledged.
//! - When the run ends, messages still held (received but not committed) are released
//!   with visibility 0, so another process takes them at once.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry,
};
use tokio::sync::mpsc;

use super::aws::{GetError, clients, get_object, sdk_error};
use super::notification::{self, Notification, S3Object};
use super::{Body, ObjectRef};
use crate::retry::Backoff;
use crate::shutdown::Shutdown;
use crate::telemetry::RunStats;
use crate::warehouse::{ObjectId, ObjectLog};

/// How often a failed delete is tried before it is left to a redelivery (harmless:
/// the objects load again and the idempotent merge keeps one row per message).
const DELETE_ATTEMPTS: u32 = 5;

/// Settings from the pipeline file's `[source]` (`type = "sqs"`).
#[derive(Debug, Clone)]
pub struct SqsSettings {
    pub queue_url: String,
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    pub receives_in_flight: usize,
    pub visibility_timeout: Duration,
    pub wait_time: Duration,
}

/// A received message whose objects are not all committed yet.
#[derive(Debug)]
struct Held {
    receipt: String,
    /// Objects handed to workers and not yet acknowledged.
    outstanding: usize,
    /// Whether every object of the message has been handed over (until then a
    /// message with an early-committed object must not be deleted).
    complete: bool,
}

#[derive(Debug, Default)]
struct State {
    next_token: u64,
    held: HashMap<u64, Held>,
    /// Objects (bucket, key, version or etag) committed in this process: announced
    /// again, their message is deleted without loading them twice.
    loaded: HashSet<ObjectId>,
    /// Identity of each object in flight, by token, to fill `loaded` on commit.
    identities: HashMap<u64, Vec<ObjectId>>,
    /// Message ids of bodies already reported as unparseable (logged once each).
    reported: HashSet<String>,
    /// Set when the held messages were released at the end of the run: a receive loop
    /// still handling a message then gives it back itself.
    released: bool,
}

/// The running source, shared by its tasks.
pub struct SqsSource {
    settings: SqsSettings,
    s3: aws_sdk_s3::Client,
    sqs: aws_sdk_sqs::Client,
    state: Mutex<State>,
    /// Which objects have loaded, across restarts (the warehouse's object log).
    log: Arc<dyn ObjectLog>,
    stats: Arc<RunStats>,
}

impl SqsSource {
    pub async fn new(
        settings: SqsSettings,
        log: Arc<dyn ObjectLog>,
        stats: Arc<RunStats>,
    ) -> Arc<SqsSource> {
        let (s3, sqs) = clients(settings.region.as_deref(), settings.endpoint_url.as_deref()).await;
        Arc::new(SqsSource {
            settings,
            s3,
            sqs,
            state: Mutex::default(),
            log,
            stats,
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts the receive loops, the visibility keeper and the acker. Objects go to
    /// `senders` (this process's workers). In `once` mode the receive loops stop at the
    /// first empty receive, which closes the workers' channels and so ends the run.
    /// Returns where the workers send committed objects, and the acker's task, which
    /// finishes (deleting, then releasing what is left) once every sender is dropped.
    pub fn start(
        self: &Arc<Self>,
        runtime: &tokio::runtime::Handle,
        senders: Vec<mpsc::Sender<ObjectRef>>,
        shutdown: Arc<Shutdown>,
        once: bool,
    ) -> (
        mpsc::UnboundedSender<Vec<ObjectRef>>,
        tokio::task::JoinHandle<()>,
    ) {
        let senders = Arc::new(senders);
        let next_worker = Arc::new(AtomicUsize::new(0));
        let loops = Arc::new(AtomicUsize::new(self.settings.receives_in_flight));
        for _ in 0..self.settings.receives_in_flight {
            let source = Arc::clone(self);
            let senders = Arc::clone(&senders);
            let shutdown = Arc::clone(&shutdown);
            let next_worker = Arc::clone(&next_worker);
            let loops = Arc::clone(&loops);
            runtime.spawn(async move {
                source
                    .receive_loop(&senders, &next_worker, &shutdown, once)
                    .await;
                // The last loop to end closes the workers' channels (dropping its
                // `senders`) and wakes them to see it.
                drop(senders);
                if loops.fetch_sub(1, Ordering::AcqRel) == 1 {
                    shutdown.wake_all();
                }
            });
        }
        let keeper = Arc::clone(self);
        runtime.spawn(async move { keeper.keep_visible().await });
        let (sender, receiver) = mpsc::unbounded_channel();
        let acker = Arc::clone(self);
        let task = runtime.spawn(async move { acker.acknowledge_loop(receiver, &shutdown).await });
        (sender, task)
    }

    async fn receive_loop(
        &self,
        senders: &[mpsc::Sender<ObjectRef>],
        next_worker: &AtomicUsize,
        shutdown: &Shutdown,
        once: bool,
    ) {
        let mut backoff = Backoff::default();
        while !shutdown.is_requested() {
            let received = self
                .sqs
                .receive_message()
                .queue_url(&self.settings.queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(self.settings.wait_time.as_secs() as i32)
                .visibility_timeout(self.settings.visibility_timeout.as_secs() as i32)
                .send()
                .await;
            let messages = match received {
                Ok(output) => {
                    backoff.reset();
                    output.messages.unwrap_or_default()
                }
                Err(error) => {
                    let wait = backoff.failed();
                    tracing::warn!(queue = %self.settings.queue_url, error = %sdk_error(&error), retry_in = ?wait, "cannot receive from SQS");
                    tokio::time::sleep(wait).await;
                    continue;
                }
            };
            if messages.is_empty() {
                if once {
                    return;
                }
                continue;
            }
            if shutdown.is_requested() {
                // Received while stopping: give them straight back.
                let receipts: Vec<String> = messages
                    .iter()
                    .filter_map(|message| message.receipt_handle.clone())
                    .collect();
                self.give_back(receipts).await;
                return;
            }
            self.stats.sqs_received(messages.len() as u64);
            let mut messages = messages.into_iter();
            while let Some(message) = messages.next() {
                if !self.handle(message, senders, next_worker, shutdown).await {
                    // The workers are gone: the rest of this receive was never held,
                    // so the final release cannot know them. Give them back here.
                    let rest: Vec<String> = messages
                        .filter_map(|message| message.receipt_handle)
                        .collect();
                    self.give_back(rest).await;
                    return;
                }
            }
        }
    }

    /// Handles one received message. `false` when the workers are gone.
    async fn handle(
        &self,
        message: aws_sdk_sqs::types::Message,
        senders: &[mpsc::Sender<ObjectRef>],
        next_worker: &AtomicUsize,
        shutdown: &Shutdown,
    ) -> bool {
        let id = message.message_id.clone().unwrap_or_default();
        let Some(receipt) = message.receipt_handle.clone() else {
            return true;
        };
        let body = message.body.as_deref().unwrap_or_default();
        let Some(objects) = self.announced(&id, &receipt, body).await else {
            return true;
        };
        let (token, fresh, released) = self.hold(&receipt, objects).await;
        if released {
            // The run ended while this message was being looked at.
            self.give_back(vec![receipt]).await;
            return false;
        }
        if fresh.is_empty() {
            self.stats
                .sqs_ignored(&id, "objects already loaded (a repeated notification)");
            self.delete(vec![receipt]).await;
            return true;
        }

        self.hand_over(&id, token, fresh, senders, next_worker, shutdown)
            .await
    }

    /// The objects a message announces; `None` when it announces none (a test event,
    /// an unrelated or unreadable body), which this has dealt with.
    async fn announced(&self, id: &str, receipt: &str, body: &str) -> Option<Vec<S3Object>> {
        match notification::parse(body) {
            Ok(Notification::Created(objects)) => Some(objects),
            Ok(Notification::Test) => {
                self.stats.sqs_ignored(id, "S3 test event");
                self.delete(vec![receipt.to_owned()]).await;
                None
            }
            Ok(Notification::Unrelated(what)) => {
                self.stats.sqs_ignored(id, &what);
                self.delete(vec![receipt.to_owned()]).await;
                None
            }
            Err(problem) => {
                let first = self.state().reported.insert(id.to_owned());
                self.stats
                    .sqs_unparseable(id, &problem.to_string(), body, first);
                None
            }
        }
    }

    /// Holds `receipt` for the objects not loaded before; returns its token, those
    /// objects, and whether the run has already released every message.
    async fn hold(&self, receipt: &str, objects: Vec<S3Object>) -> (u64, Vec<S3Object>, bool) {
        // Objects already loaded (a repeated announcement, in this process or before a
        // restart) are not loaded again. If the log cannot be read, load them: the
        // merge on message id makes that harmless.
        let identities: Vec<ObjectId> = objects.iter().map(S3Object::identity).collect();
        let logged = match self.log.loaded(identities).await {
            Ok(logged) => logged,
            Err(error) => {
                tracing::warn!(error = %error, "cannot read the object log; loading the objects again");
                HashSet::new()
            }
        };
        {
            let mut state = self.state();
            let fresh: Vec<S3Object> = objects
                .into_iter()
                .filter(|object| {
                    let identity = object.identity();
                    !state.loaded.contains(&identity) && !logged.contains(&identity)
                })
                .collect();
            state.next_token += 1;
            let token = state.next_token;
            if !fresh.is_empty() && !state.released {
                state.held.insert(
                    token,
                    Held {
                        receipt: receipt.to_owned(),
                        outstanding: 0,
                        complete: false,
                    },
                );
                state
                    .identities
                    .insert(token, fresh.iter().map(S3Object::identity).collect());
            }
            (token, fresh, state.released)
        }
    }

    /// Hands each fresh object to a worker, fetched; `false` when the workers are gone.
    async fn hand_over(
        &self,
        id: &str,
        token: u64,
        fresh: Vec<S3Object>,
        senders: &[mpsc::Sender<ObjectRef>],
        next_worker: &AtomicUsize,
        shutdown: &Shutdown,
    ) -> bool {
        for object in fresh {
            let body = match self.fetch(&object).await {
                Ok(body) => body,
                Err(error) => {
                    // Let the message go: it reappears after its visibility timeout.
                    self.stats.s3_fetch_failed(id, &object.name(), &error);
                    let mut state = self.state();
                    state.held.remove(&token);
                    state.identities.remove(&token);
                    return true;
                }
            };
            let object_ref = ObjectRef {
                name: Arc::from(object.name()),
                bytes: object.size,
                body,
                token,
                written: object.event_time,
            };
            {
                let mut state = self.state();
                match state.held.get_mut(&token) {
                    Some(held) => held.outstanding += 1,
                    None => return true,
                }
            }
            let worker = next_worker.fetch_add(1, Ordering::Relaxed) % senders.len().max(1);
            if senders[worker].send(object_ref).await.is_err() {
                // The workers are gone (the run is ending) while this message waited
                // for room: give it back now unless the final release already did.
                let held = {
                    let mut state = self.state();
                    state.identities.remove(&token);
                    state.held.remove(&token)
                };
                if let Some(held) = held {
                    self.give_back(vec![held.receipt]).await;
                }
                return false;
            }
            shutdown.wake_all();
        }
        let finished = {
            let mut state = self.state();
            match state.held.get_mut(&token) {
                Some(held) => {
                    held.complete = true;
                    held.outstanding == 0
                }
                None => false,
            }
        };
        if finished {
            // Every object committed before the last was handed over.
            self.finish(vec![token], shutdown).await;
        }
        true
    }

    /// The object's bytes, a `Missing` body when it no longer exists, or an error to
    /// leave its message for a redelivery (the SDK has retried it already).
    async fn fetch(&self, object: &S3Object) -> Result<Body, String> {
        let fetched = get_object(
            &self.s3,
            &object.bucket,
            &object.key,
            object.version.as_deref(),
        )
        .await;
        match fetched {
            Ok(bytes) => Ok(Body::Fetched(bytes)),
            Err(GetError::Missing) => {
                self.stats.s3_missing_object(&object.name());
                Ok(Body::Missing(
                    "the announced object does not exist (deleted before it was fetched)".into(),
                ))
            }
            Err(error) => Err(error.to_string()),
        }
    }

    /// Extends the visibility of every held message, every third of the timeout.
    async fn keep_visible(&self) {
        let period = (self.settings.visibility_timeout / 3).max(Duration::from_secs(1));
        let mut last = Instant::now();
        loop {
            tokio::time::sleep_until((last + period).into()).await;
            last = Instant::now();
            let receipts: Vec<String> = self
                .state()
                .held
                .values()
                .map(|held| held.receipt.clone())
                .collect();
            if receipts.is_empty() {
                continue;
            }
            let extended = self
                .change_visibility(&receipts, self.settings.visibility_timeout)
                .await;
            self.stats.sqs_visibility_extended(extended as u64);
        }
    }

    /// Sets the visibility of messages, 10 per call; returns how many succeeded.
    async fn change_visibility(&self, receipts: &[String], timeout: Duration) -> usize {
        let mut changed = 0;
        for chunk in receipts.chunks(10) {
            let entries: Vec<ChangeMessageVisibilityBatchRequestEntry> = chunk
                .iter()
                .enumerate()
                .filter_map(|(index, receipt)| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(index.to_string())
                        .receipt_handle(receipt)
                        .visibility_timeout(timeout.as_secs() as i32)
                        .build()
                        .ok()
                })
                .collect();
            match self
                .sqs
                .change_message_visibility_batch()
                .queue_url(&self.settings.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
            {
                Ok(output) => {
                    changed += output.successful.len();
                    for failure in output.failed {
                        tracing::warn!(code = %failure.code, message = ?failure.message, "cannot change a message's visibility");
                    }
                }
                Err(error) => {
                    tracing::warn!(error = %sdk_error(&error), "cannot change message visibility")
                }
            }
        }
        changed
    }

    /// Receives committed objects from the workers and deletes every message whose
    /// objects are all committed. When every worker is done, releases what is left.
    async fn acknowledge_loop(
        &self,
        mut acks: mpsc::UnboundedReceiver<Vec<ObjectRef>>,
        shutdown: &Shutdown,
    ) {
        while let Some(objects) = acks.recv().await {
            let mut finished = Vec::new();
            {
                let mut state = self.state();
                for object in objects {
                    let Some(held) = state.held.get_mut(&object.token) else {
                        continue;
                    };
                    held.outstanding = held.outstanding.saturating_sub(1);
                    if held.outstanding == 0 && held.complete {
                        finished.push(object.token);
                    }
                }
            }
            if !finished.is_empty() {
                self.finish(finished, shutdown).await;
            }
        }
        self.release().await;
    }

    /// Deletes the messages of `tokens`, whose objects have all committed.
    async fn finish(&self, tokens: Vec<u64>, shutdown: &Shutdown) {
        let (receipts, loaded): (Vec<String>, Vec<ObjectId>) = {
            let mut state = self.state();
            let mut receipts = Vec::new();
            let mut loaded = Vec::new();
            for token in tokens {
                if let Some(held) = state.held.remove(&token) {
                    receipts.push(held.receipt);
                }
                if let Some(identities) = state.identities.remove(&token) {
                    loaded.extend(identities.iter().cloned());
                    state.loaded.extend(identities);
                }
            }
            (receipts, loaded)
        };
        // Recorded before the delete, retried until the record holds: a deleted
        // message is never announced again, so objects deleted unrecorded would be
        // missing from the log for good. Unrecorded (the run is stopping), the
        // messages are not deleted and come back after their visibility timeout.
        if !crate::load::record_objects(&*self.log, loaded, shutdown, &self.stats).await {
            return;
        }
        self.delete(receipts).await;
    }

    /// `DeleteMessageBatch`, 10 per call, the entries it reports failed retried with
    /// backoff (a call that failed whole has been retried by the SDK already). A message
    /// left undeleted is received again, and its objects load as no-ops.
    async fn delete(&self, receipts: Vec<String>) {
        for chunk in receipts.chunks(10) {
            let mut pending: Vec<String> = chunk.to_vec();
            let mut backoff = Backoff::default();
            while !pending.is_empty() {
                let entries: Vec<DeleteMessageBatchRequestEntry> = pending
                    .iter()
                    .enumerate()
                    .filter_map(|(index, receipt)| {
                        DeleteMessageBatchRequestEntry::builder()
                            .id(index.to_string())
                            .receipt_handle(receipt)
                            .build()
                            .ok()
                    })
                    .collect();
                let result = self
                    .sqs
                    .delete_message_batch()
                    .queue_url(&self.settings.queue_url)
                    .set_entries(Some(entries))
                    .send()
                    .await;
                let failed: Vec<String> = match result {
                    Ok(output) => {
                        self.stats.sqs_deleted(output.successful.len() as u64);
                        output
                            .failed
                            .iter()
                            .filter_map(|failure| failure.id.parse::<usize>().ok())
                            .filter_map(|index| pending.get(index).cloned())
                            .collect()
                    }
                    Err(error) => {
                        tracing::error!(error = %sdk_error(&error), messages = pending.len(), "cannot delete SQS messages; they will be received again and load as no-ops");
                        break;
                    }
                };
                if failed.is_empty() {
                    break;
                }
                if backoff.failures() + 1 >= DELETE_ATTEMPTS {
                    tracing::error!(
                        messages = failed.len(),
                        "giving up deleting SQS messages; they will be received again and load as no-ops"
                    );
                    break;
                }
                tokio::time::sleep(backoff.failed()).await;
                pending = failed;
            }
        }
    }

    /// Makes every held message visible again at once, for another consumer.
    async fn release(&self) {
        let receipts: Vec<String> = {
            let mut state = self.state();
            state.released = true;
            state.held.drain().map(|(_, held)| held.receipt).collect()
        };
        self.give_back(receipts).await;
    }

    /// Makes these messages visible again at once.
    async fn give_back(&self, receipts: Vec<String>) {
        if receipts.is_empty() {
            return;
        }
        let released = self.change_visibility(&receipts, Duration::ZERO).await;
        self.stats.sqs_released(released as u64);
    }
}
