//! objects: recording committed objects in the warehouse's object log before their
//! source is acknowledged (an SQS message deleted, a backfill's progress counted).
//!
//! The record is idempotent, and a source that acknowledged objects the log does not
//! hold would load them again after a restart only if they are announced again; an
//! SQS message deleted unrecorded is never announced again, so its objects would be
//! missing from the log for good. So the record is retried, like a load, until it
//! holds; only shutdown ends the retries, and then the source does not acknowledge
//! (the message comes back and its objects load again as no-ops).

use crate::retry::Backoff;
use crate::shutdown::Shutdown;
use crate::telemetry::RunStats;
use crate::warehouse::{FailureClass, ObjectId, ObjectLog};

/// How often a record that fails with a configuration error is tried before the run
/// stops (as for loads: once more on a fresh connection).
const CONFIG_ATTEMPTS: u32 = 2;

/// Records `objects` as loaded, retrying transient failures until the record holds.
/// Returns whether it holds: `false` when shutdown came first or a configuration
/// error stopped the run, and then the caller must not acknowledge the objects.
pub async fn record_objects(
    log: &dyn ObjectLog,
    objects: Vec<ObjectId>,
    shutdown: &Shutdown,
    stats: &RunStats,
) -> bool {
    if objects.is_empty() {
        return true;
    }
    let mut backoff = Backoff::default();
    let mut config_failures = 0;
    loop {
        let recording = log.record(objects.clone());
        let recorded = super::warn_while_slow(recording, super::SLOW_LOAD, |elapsed| {
            tracing::warn!(
                objects = objects.len(),
                elapsed_s = elapsed.as_secs(),
                "recording loaded objects in the object log still running without an error: the warehouse is slow, or a statement waits on a lock another session holds"
            );
        });
        let error = match recorded.await {
            Ok(()) => {
                if backoff.failures() > 0 {
                    stats.object_log_recorded();
                }
                return true;
            }
            Err(error) => error,
        };
        if error.class != FailureClass::Transient {
            config_failures += 1;
            if config_failures >= CONFIG_ATTEMPTS {
                tracing::error!(error = %error, "cannot record loaded objects and retrying cannot help; stopping");
                shutdown.fail(format!(
                    "recording loaded objects in the object log failed and retrying cannot help: {error}"
                ));
                return false;
            }
        }
        let wait = backoff.failed();
        stats.object_log_retry(objects.len(), backoff.failures(), &error, wait);
        if !shutdown.sleep(wait).await {
            tracing::warn!(
                objects = objects.len(),
                "shutting down before the object log recorded these objects; they are not acknowledged and load again (as no-ops) when announced again"
            );
            return false;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::Mutex;
    use std::time::Duration;

    use futures_util::future::BoxFuture;

    use super::*;
    use crate::warehouse::ObjectLogError;

    /// An object log that fails its first `failures` records with `class`.
    struct Flaky {
        failures: Mutex<u32>,
        class: FailureClass,
        recorded: Mutex<Vec<ObjectId>>,
    }

    impl ObjectLog for Flaky {
        fn loaded(
            &self,
            _: Vec<ObjectId>,
        ) -> BoxFuture<'_, Result<HashSet<ObjectId>, ObjectLogError>> {
            Box::pin(async { Ok(HashSet::new()) })
        }

        fn record(&self, objects: Vec<ObjectId>) -> BoxFuture<'_, Result<(), ObjectLogError>> {
            Box::pin(async move {
                let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
                if *failures > 0 {
                    *failures -= 1;
                    return Err(ObjectLogError {
                        message: "connection closed".into(),
                        class: self.class,
                    });
                }
                self.recorded
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend(objects);
                Ok(())
            })
        }
    }

    fn flaky(failures: u32, class: FailureClass) -> Flaky {
        Flaky {
            failures: Mutex::new(failures),
            class,
            recorded: Mutex::default(),
        }
    }

    fn objects() -> Vec<ObjectId> {
        vec![("s3://b/k".into(), "etag".into())]
    }

    #[tokio::test]
    async fn a_record_that_fails_transiently_is_retried_until_it_holds() {
        let log = flaky(2, FailureClass::Transient);
        let (shutdown, stats) = (Shutdown::default(), RunStats::default());
        assert!(record_objects(&log, objects(), &shutdown, &stats).await);
        assert_eq!(*log.recorded.lock().unwrap(), objects());
        assert_eq!(stats.snapshot().warehouse_retries, 2);
    }

    #[tokio::test]
    async fn a_configuration_error_stops_the_run_after_one_retry() {
        let log = flaky(u32::MAX, FailureClass::Config);
        let (shutdown, stats) = (Shutdown::default(), RunStats::default());
        assert!(!record_objects(&log, objects(), &shutdown, &stats).await);
        assert!(
            shutdown
                .failure()
                .is_some_and(|m| m.contains("connection closed"))
        );
        assert_eq!(stats.snapshot().warehouse_retries, 1);
    }

    #[tokio::test]
    async fn shutdown_ends_the_retries_without_the_record() {
        let log = flaky(u32::MAX, FailureClass::Transient);
        let (shutdown, stats) = (Shutdown::default(), RunStats::default());
        shutdown.request();
        let recorded = tokio::time::timeout(
            Duration::from_secs(5),
            record_objects(&log, objects(), &shutdown, &stats),
        )
        .await;
        assert_eq!(recorded, Ok(false));
        assert!(log.recorded.lock().unwrap().is_empty());
    }
}
