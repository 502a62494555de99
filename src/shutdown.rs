//! shutdown: SIGINT/SIGTERM handling.
//!
//! The first signal asks every Admit operator to stop admitting and close its open
//! batch; the dataflow then loads and acknowledges what it admitted and ends, and the
//! process exits 0. A second signal exits at once (status 130): nothing is lost, since
//! unacknowledged input is simply loaded again (idempotently) on the next start.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

use timely::scheduling::SyncActivator;

#[derive(Default)]
pub struct Shutdown {
    requested: AtomicBool,
    /// Set when the process cannot go on (a load failed permanently): every worker stops
    /// and the run ends with this message, acknowledging nothing more.
    failure: OnceLock<String>,
    activators: Mutex<Vec<SyncActivator>>,
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

    /// Requests shutdown and wakes every registered operator.
    pub fn request(&self) {
        self.requested.store(true, Ordering::SeqCst);
        self.wake_all();
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
