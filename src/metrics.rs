//! metrics: the Prometheus exposition of what `telemetry` counts, and the HTTP endpoint
//! that serves it (`--metrics-addr`): `/metrics`, `/health` (the process is up) and
//! `/ready` (its source and warehouse answer).
//!
//! Every metric is updated from a `telemetry::RunStats` method, the same call that logs
//! the fact, so logs and metrics cannot disagree. Names follow Prometheus conventions:
//! prefix `tracktable_`, counters end in `_total`, durations are seconds.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};

use futures_util::future::BoxFuture;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TableLabel {
    pub table: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

/// The process's metrics.
#[derive(Debug)]
pub struct Metrics {
    pub objects: Counter,
    pub input_bytes: Counter,
    pub events: Counter,
    pub rejections: Family<ReasonLabel, Counter>,
    pub discards: Family<ReasonLabel, Counter>,
    pub rows_loaded: Family<TableLabel, Counter>,
    pub duplicates: Counter,
    pub batches: Counter,
    pub batch_load_seconds: Histogram,
    pub batch_rows: Histogram,
    /// From an object written to the commit of its last rows, once per object.
    pub freshness_seconds: Histogram,
    pub schema_changes: Counter,
    pub warehouse_retries: Counter,
    pub data_failures: Counter,
    pub load_errors: Family<TableLabel, Counter>,
    pub objects_acknowledged: Counter,
    pub objects_admitted: Counter,
    pub sqs_received: Counter,
    pub sqs_deleted: Counter,
    pub sqs_ignored: Counter,
    pub sqs_unparseable: Counter,
    pub sqs_visibility_extensions: Counter,
    pub sqs_released: Counter,
    pub s3_missing_objects: Counter,
    pub s3_fetch_failures: Counter,
    /// Oldest batch each worker admitted and has not acknowledged (its id is the
    /// wall-clock millisecond its window opened), by worker index.
    oldest_unacknowledged: Mutex<HashMap<usize, u64>>,
    /// Batches each worker has admitted and not yet acknowledged, by worker index.
    in_flight: Mutex<HashMap<usize, usize>>,
    /// Warehouse operations being retried (a table's load, the object log's record),
    /// each with what it last failed with, until it succeeds: `/ready` reports them.
    warehouse_failures: Mutex<BTreeMap<String, String>>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            objects: Counter::default(),
            input_bytes: Counter::default(),
            events: Counter::default(),
            rejections: Family::default(),
            discards: Family::default(),
            rows_loaded: Family::default(),
            duplicates: Counter::default(),
            batches: Counter::default(),
            // 10 ms to ~80 s.
            batch_load_seconds: Histogram::new(exponential_buckets(0.01, 2.0, 14)),
            // 1 row to ~1M rows.
            batch_rows: Histogram::new(exponential_buckets(1.0, 4.0, 11)),
            freshness_seconds: Histogram::new(crate::freshness::BUCKETS),
            schema_changes: Counter::default(),
            warehouse_retries: Counter::default(),
            data_failures: Counter::default(),
            load_errors: Family::default(),
            objects_acknowledged: Counter::default(),
            objects_admitted: Counter::default(),
            sqs_received: Counter::default(),
            sqs_deleted: Counter::default(),
            sqs_ignored: Counter::default(),
            sqs_unparseable: Counter::default(),
            sqs_visibility_extensions: Counter::default(),
            sqs_released: Counter::default(),
            s3_missing_objects: Counter::default(),
            s3_fetch_failures: Counter::default(),
            oldest_unacknowledged: Mutex::default(),
            in_flight: Mutex::default(),
            warehouse_failures: Mutex::default(),
        }
    }
}

impl Metrics {
    /// Records worker `worker`'s oldest unacknowledged batch (`None`: nothing pending).
    pub fn set_oldest_unacknowledged(&self, worker: usize, batch: Option<u64>) {
        let mut oldest = self
            .oldest_unacknowledged
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match batch {
            Some(batch) => oldest.insert(worker, batch),
            None => oldest.remove(&worker),
        };
    }

    /// Records how many batches worker `worker` has awaiting acknowledgement.
    pub fn set_in_flight(&self, worker: usize, batches: usize) {
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(worker, batches);
    }

    /// `operation` (a table's load, the object log) failed with `cause` and is being
    /// retried.
    pub fn set_warehouse_failure(&self, operation: &str, cause: String) {
        self.warehouse_failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(operation.to_owned(), cause);
    }

    /// `operation` succeeded.
    pub fn clear_warehouse_failure(&self, operation: &str) {
        let mut failures = self
            .warehouse_failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !failures.is_empty() {
            failures.remove(operation);
        }
    }

    /// Every warehouse operation being retried, with what it last failed with.
    pub fn warehouse_failures(&self) -> Vec<(String, String)> {
        self.warehouse_failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(operation, cause)| (operation.clone(), cause.clone()))
            .collect()
    }

    /// Batches awaiting acknowledgement, summed over workers.
    pub fn in_flight(&self) -> usize {
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .sum()
    }

    /// Seconds since the oldest unacknowledged batch of any worker opened (0 when
    /// nothing awaits acknowledgement): how stale the warehouse may be.
    pub fn oldest_unacknowledged_age(&self, now_ms: u64) -> f64 {
        let oldest = self
            .oldest_unacknowledged
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        oldest
            .values()
            .min()
            .map_or(0.0, |&batch| now_ms.saturating_sub(batch) as f64 / 1000.0)
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut registry = Registry::with_prefix("tracktable");
        for (name, help, counter) in self.counters() {
            registry.register(name, help, counter.clone());
        }
        self.register_families_and_gauges(&mut registry);
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
        text
    }

    /// Every plain counter, with its name and help.
    fn counters(&self) -> [(&'static str, &'static str, &Counter); 18] {
        [
            ("objects", "Objects decoded", &self.objects),
            (
                "input_bytes",
                "Bytes decoded, after decompression",
                &self.input_bytes,
            ),
            ("events", "Messages decoded", &self.events),
            (
                "duplicates",
                "Rows skipped because their message id was already loaded",
                &self.duplicates,
            ),
            ("batches", "Batches committed, per worker", &self.batches),
            (
                "schema_changes",
                "Tables created, columns added or widened",
                &self.schema_changes,
            ),
            (
                "warehouse_retries",
                "Failed warehouse operations retried",
                &self.warehouse_retries,
            ),
            (
                "load_data_failures",
                "Loads the warehouse refused for their data (their refused rows are isolated into _discards)",
                &self.data_failures,
            ),
            (
                "objects_admitted",
                "Objects admitted into a batch",
                &self.objects_admitted,
            ),
            (
                "objects_acknowledged",
                "Objects acknowledged after their batch committed",
                &self.objects_acknowledged,
            ),
            ("sqs_received", "SQS messages received", &self.sqs_received),
            ("sqs_deleted", "SQS messages deleted", &self.sqs_deleted),
            (
                "sqs_ignored",
                "SQS messages deleted without loading (test events, unrelated, repeats)",
                &self.sqs_ignored,
            ),
            (
                "sqs_unparseable",
                "SQS message bodies that could not be understood (left for redrive)",
                &self.sqs_unparseable,
            ),
            (
                "sqs_visibility_extensions",
                "SQS visibility extensions of messages still loading",
                &self.sqs_visibility_extensions,
            ),
            (
                "sqs_released",
                "SQS messages released unfinished (visibility 0)",
                &self.sqs_released,
            ),
            (
                "s3_missing_objects",
                "Announced or listed objects that no longer existed",
                &self.s3_missing_objects,
            ),
            (
                "s3_fetch_failures",
                "Objects that could not be fetched (message left for redelivery)",
                &self.s3_fetch_failures,
            ),
        ]
    }

    /// The labelled families, the histograms and the gauges read at scrape time.
    fn register_families_and_gauges(&self, registry: &mut Registry) {
        registry.register(
            "rejections",
            "Input items rejected (kept in _rejections), by reason",
            self.rejections.clone(),
        );
        registry.register(
            "discards",
            "Values kept in _discards instead of their column, by reason",
            self.discards.clone(),
        );
        registry.register(
            "rows_loaded",
            "Rows committed to the warehouse, by table",
            self.rows_loaded.clone(),
        );
        registry.register(
            "warehouse_load_errors",
            "Bulk loads refused for their data whose load-error row was read (Redshift's stl_load_errors), by table",
            self.load_errors.clone(),
        );
        registry.register(
            "batch_load_seconds",
            "Time from handing a worker's batch to the loader to its commit",
            self.batch_load_seconds.clone(),
        );
        registry.register(
            "batch_rows",
            "Rows per worker's batch",
            self.batch_rows.clone(),
        );
        registry.register(
            "freshness_seconds",
            "Time from an object written (S3 event time, file modification time) to the commit of its last rows",
            self.freshness_seconds.clone(),
        );
        let age: Gauge<f64, AtomicU64> = Gauge::default();
        age.set(self.oldest_unacknowledged_age(crate::batch::now_ms()));
        registry.register(
            "oldest_unacknowledged_seconds",
            "Age of the oldest batch not yet acknowledged (freshness)",
            age,
        );
        let in_flight: Gauge = Gauge::default();
        in_flight.set(self.in_flight() as i64);
        registry.register(
            "batches_in_flight",
            "Batches admitted and not yet acknowledged, summed over workers",
            in_flight,
        );
        let failing: Gauge = Gauge::default();
        failing.set(self.warehouse_failures().len() as i64);
        registry.register(
            "warehouse_failing",
            "Warehouse operations (table loads, the object log) failing and being retried now",
            failing,
        );
    }
}

/// Answers whether a dependency is usable (`Err` says why not).
pub type Probe = Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// Serves `/metrics`, `/health` and `/ready` on `address` until the runtime stops.
/// Binding happens before this returns, so a taken port is reported at start-up.
pub async fn serve(
    address: SocketAddr,
    stats: Arc<crate::telemetry::RunStats>,
    probes: Vec<(&'static str, Probe)>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    tracing::info!(address = %listener.local_addr()?, "serving /metrics, /health and /ready");
    let probes = Arc::new(probes);
    Ok(tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(error = %error, "metrics endpoint: cannot accept");
                    continue;
                }
            };
            let stats = Arc::clone(&stats);
            let probes = Arc::clone(&probes);
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                        let stats = Arc::clone(&stats);
                        let probes = Arc::clone(&probes);
                        async move {
                            Ok::<_, std::convert::Infallible>(
                                respond(&request, &stats.metrics, &probes).await,
                            )
                        }
                    });
                let io = hyper_util::rt::TokioIo::new(stream);
                if let Err(error) = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await
                {
                    tracing::debug!(error = %error, "metrics endpoint: connection ended");
                }
            });
        }
    }))
}

async fn respond(
    request: &Request<hyper::body::Incoming>,
    metrics: &Metrics,
    probes: &[(&'static str, Probe)],
) -> Response<Full<Bytes>> {
    match request.uri().path() {
        "/metrics" => reply(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics.encode(),
        ),
        "/health" => reply(StatusCode::OK, "text/plain", "ok\n".into()),
        "/ready" => {
            let mut body = String::new();
            let mut ready = true;
            for (name, probe) in probes {
                let outcome = tokio::time::timeout(std::time::Duration::from_secs(5), probe())
                    .await
                    .unwrap_or_else(|_| Err("no answer within 5 s".into()));
                match outcome {
                    Ok(()) => body.push_str(&format!("{name}: ok\n")),
                    Err(why) => {
                        ready = false;
                        body.push_str(&format!("{name}: {why}\n"));
                    }
                }
            }
            let status = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            reply(status, "text/plain", body)
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: try /metrics, /health or /ready\n".into(),
        ),
    }
}

fn reply(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = hyper::header::HeaderValue::from_str(content_type) {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_names_every_metric_with_its_labels() {
        let metrics = Metrics::default();
        metrics.objects.inc();
        metrics
            .rows_loaded
            .get_or_create(&TableLabel {
                table: "order_completed".into(),
            })
            .inc_by(7);
        metrics
            .rejections
            .get_or_create(&ReasonLabel {
                reason: "not_json".into(),
            })
            .inc();
        metrics.batch_rows.observe(7.0);
        metrics.freshness_seconds.observe(2.5);
        metrics
            .load_errors
            .get_or_create(&TableLabel {
                table: "order_completed".into(),
            })
            .inc();
        let text = metrics.encode();
        assert!(
            text.contains("tracktable_warehouse_load_errors_total{table=\"order_completed\"} 1"),
            "{text}"
        );
        assert!(text.contains("tracktable_objects_total 1"), "{text}");
        assert!(
            text.contains("tracktable_rows_loaded_total{table=\"order_completed\"} 7"),
            "{text}"
        );
        assert!(
            text.contains("tracktable_rejections_total{reason=\"not_json\"} 1"),
            "{text}"
        );
        assert!(text.contains("tracktable_batch_rows_count 1"), "{text}");
        assert!(
            text.contains("tracktable_freshness_seconds_bucket{le=\"2.0\"} 0")
                && text.contains("tracktable_freshness_seconds_bucket{le=\"3.0\"} 1")
                && text.contains("tracktable_freshness_seconds_count 1"),
            "{text}"
        );
        assert!(
            text.contains("tracktable_oldest_unacknowledged_seconds 0"),
            "{text}"
        );
    }

    #[test]
    fn the_dashboard_uses_only_metrics_that_exist() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards/tracktable.json");
        let dashboard = std::fs::read_to_string(&path).expect("dashboard");
        serde_json::from_str::<serde_json::Value>(&dashboard).expect("dashboard is JSON");
        // Families appear in the exposition once they have a sample.
        let metrics = Metrics::default();
        metrics
            .rows_loaded
            .get_or_create(&TableLabel { table: "t".into() })
            .inc();
        metrics
            .rejections
            .get_or_create(&ReasonLabel { reason: "r".into() })
            .inc();
        metrics
            .discards
            .get_or_create(&ReasonLabel { reason: "r".into() })
            .inc();
        let exposition = metrics.encode();
        let mut checked = 0;
        for (start, _) in dashboard.match_indices("tracktable_") {
            let name: String = dashboard[start..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_' || c.is_ascii_digit())
                .collect();
            let base = ["_total", "_bucket", "_count", "_sum"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .unwrap_or(&name);
            assert!(
                exposition.contains(&format!("# TYPE {base} ")),
                "the dashboard queries {name}, which tracktable does not export"
            );
            checked += 1;
        }
        assert!(checked >= 10, "{checked}");
    }

    #[test]
    fn freshness_is_the_oldest_pending_batch_of_any_worker() {
        let metrics = Metrics::default();
        metrics.set_oldest_unacknowledged(0, Some(10_000));
        metrics.set_oldest_unacknowledged(1, Some(4_000));
        assert_eq!(metrics.oldest_unacknowledged_age(14_000), 10.0);
        metrics.set_oldest_unacknowledged(1, None);
        assert_eq!(metrics.oldest_unacknowledged_age(14_000), 4.0);
        metrics.set_oldest_unacknowledged(0, None);
        assert_eq!(metrics.oldest_unacknowledged_age(14_000), 0.0);
    }
}
