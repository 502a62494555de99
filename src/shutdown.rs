//! shutdown: SIGINT/SIGTERM handling.
//!
//! The first signal asks every Admit operator to stop admitting and close its open
//! batch; the dataflow then loads and acknowledges what it admitted and ends, and the
//! process exits 0. A second signal exits at once (status 130): nothing is lost, since
//! unacknowledged input is simply loaded again (idempotently) on the next start.
//!
//! A load that is being retried (the warehouse is down, say) would hold the first
//! signal's graceful end off for as long as the outage lasts. So every retry wait
//! wakes on the signal ([`Shutdown::requested`]), the loader then gives its batch up
//! ([`Shutdown::abandon`]), and the workers stop without acknowledging it: one signal
//! stops the process within the batch interval plus one load, whatever is retried.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

use timely::scheduling::SyncActivator;

#[derive(Default)]
pub struct Shutdown {
    requested: AtomicBool,
    /// Set when the process cannot go on (a load failed with a configuration error):
    /// every worker stops and the run ends with this message, acknowledging nothing
    /// more.
    failure: OnceLock<String>,
    /// Set when a loader gave its batch up because shutdown was requested while the
    /// batch's load was being retried: the workers stop without waiting for it, and
    /// the run ends normally with this batch unacknowledged.
    abandoned: OnceLock<String>,
    activators: Mutex<Vec<SyncActivator>>,
    /// Wakes the tasks waiting in [`Shutdown::requested`].
    notify: tokio::sync::Notify,
}

impl std::fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shutdown")
            .field("requested", &self.is_requested())
            .finish()
    }
}

impl Shutdown {
    pub fn is_requested(&self) -> bool {
        self.requested.load(Ordering::SeqCst)
    }

    /// Registers an operator to wake when shutdown is requested.
    pub fn register(&self, activator: SyncActivator) {
        if let Ok(mut activators) = self.activators.lock() {
            activators.push(activator);
        }
    }

    /// Requests shutdown and wakes every registered operator and every task waiting in
    /// [`Shutdown::requested`].
    pub fn request(&self) {
        self.requested.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
        self.wake_all();
    }

    /// Completes once shutdown is requested (at once if it already is): a retry's wait
    /// races this, so a signal is never held up by a backoff.
    pub async fn requested(&self) {
        loop {
            let notified = self.notify.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before the flag is read, so a request in between still wakes it.
            notified.as_mut().enable();
            if self.is_requested() {
                return;
            }
            notified.await;
        }
    }

    /// Sleeps for `wait`, or less if shutdown is requested meanwhile; returns whether
    /// the whole wait passed without a request.
    pub async fn sleep(&self, wait: std::time::Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(wait) => !self.is_requested(),
            _ = self.requested() => false,
        }
    }

    /// A loader gave a batch up on shutdown (`what` says which, for the log): workers
    /// stop at their next step without waiting for its commit; the batch and every one
    /// after it stay unacknowledged and load again on the next start.
    pub fn abandon(&self, what: String) {
        let _ = self.abandoned.set(what);
        self.request();
    }

    /// What was given up, if a loader gave a batch up on shutdown.
    pub fn abandoned(&self) -> Option<&str> {
        self.abandoned.get().map(String::as_str)
    }

    /// Stops the process with an error: workers return at their next step, nothing more
    /// is acknowledged, and unacknowledged input loads again on the next start. The
    /// first failure wins.
    pub fn fail(&self, message: String) {
        let _ = self.failure.set(message);
        self.request();
    }

    pub fn failure(&self) -> Option<&str> {
        self.failure.get().map(String::as_str)
    }

    /// Wakes every registered operator (also used by the lister when input arrives).
    pub fn wake_all(&self) {
        if let Ok(activators) = self.activators.lock() {
            for activator in activators.iter() {
                let _ = activator.activate();
            }
        }
    }
}

/// Waits for SIGINT or SIGTERM: the first requests a graceful shutdown, the second
/// exits the process immediately.
pub async fn watch_signals(shutdown: std::sync::Arc<Shutdown>) {
    let mut signals = 0;
    loop {
        if wait_for_signal().await.is_err() {
            tracing::warn!("cannot listen for signals; stop with SIGKILL");
            return;
        }
        signals += 1;
        if signals == 1 {
            tracing::info!(
                "shutting down: finishing the open batch (signal again to exit at once)"
            );
            shutdown.request();
        } else {
            tracing::warn!(
                "second signal: exiting now; unacknowledged input will load again on restart"
            );
            std::process::exit(130);
        }
    }
}

async fn wait_for_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = terminate.recv() => Ok(()),
        _ = interrupt.recv() => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::Shutdown;

    #[tokio::test]
    async fn a_request_wakes_a_retry_wait_at_once() {
        let shutdown = Arc::new(Shutdown::default());
        let waiter = Arc::clone(&shutdown);
        let started = Instant::now();
        let sleeping = tokio::spawn(async move { waiter.sleep(Duration::from_secs(60)).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        shutdown.request();
        let slept_through = sleeping.await.expect("the sleep ends");
        assert!(!slept_through, "the wait was cut short");
        assert!(started.elapsed() < Duration::from_secs(5));
        // Once requested, a new wait ends at once.
        assert!(!shutdown.sleep(Duration::from_secs(60)).await);
        shutdown.requested().await;
    }

    #[tokio::test]
    async fn a_wait_without_a_request_passes_whole() {
        let shutdown = Shutdown::default();
        assert!(shutdown.sleep(Duration::from_millis(10)).await);
        assert_eq!(shutdown.abandoned(), None);
        shutdown.abandon("batch 1 of t".into());
        assert!(shutdown.is_requested());
        assert_eq!(shutdown.abandoned(), Some("batch 1 of t"));
        assert_eq!(
            shutdown.failure(),
            None,
            "giving up on shutdown is no failure"
        );
    }
}
