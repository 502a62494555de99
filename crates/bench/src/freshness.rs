//! freshness: how stale the warehouse is under a steady stream, as its users feel it.
//!
//! Generated events are written as gzip objects to a bucket of the S3/SQS emulator
//! (moto) at a steady rate; S3 announces each object to an SQS queue, and one
//! `tracktable run` on the SQS path loads them into PostgreSQL. Once every object is
//! acknowledged the run is stopped with SIGTERM, and its summary's freshness line (p50,
//! p99 and max from each object's S3 event time to the commit of its rows) is read,
//! beside how many objects the `tracktable_freshness_seconds` histogram puts within the
//! batch interval plus 2 s, and tracktable's own CPU (`wait4`).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{Event, NotificationConfiguration, QueueConfiguration};
use aws_sdk_sqs::types::QueueAttributeName;
use tracktable_gen::GenConfig;
use tracktable_testkit::support::{http_get, metric_value};

use crate::measures::{MeasureError, drop_schema, sibling};

/// The schema the run loads into (dropped before and after).
const SCHEMA: &str = "tracktable_freshness";

/// The goal: an object's rows committed within the batch interval plus this.
pub const GOAL_OVER_INTERVAL: Duration = Duration::from_secs(2);

/// A put that starts this late behind its slot is counted: the feed was not steady.
const LATE: Duration = Duration::from_millis(100);

#[derive(Debug, Clone)]
pub struct FreshnessOptions {
    /// The S3/SQS emulator.
    pub endpoint_url: String,
    pub database_url: String,
    /// Events per second written.
    pub rate: u64,
    /// How long to write for.
    pub duration: Duration,
    /// Events per object.
    pub per_object: u64,
    pub workers: usize,
    pub batch_interval: Duration,
    pub scratch: PathBuf,
}

/// What one run measured.
#[derive(Debug, Clone)]
pub struct FreshnessReport {
    pub objects: u64,
    pub events: u64,
    /// From the first put to the last.
    pub fed_for: Duration,
    /// Puts that started more than 100 ms behind their slot.
    pub late_puts: u64,
    /// From the last put until every object was acknowledged.
    pub drained_in: Duration,
    /// The run summary's figures.
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
    pub observed: u64,
    /// The histogram's bucket at or below the goal, and the objects in it.
    pub within: Option<(f64, u64)>,
    /// tracktable's user+sys CPU over the whole run.
    pub cpu_seconds: f64,
}

fn failed(what: impl std::fmt::Display) -> MeasureError {
    MeasureError::Failed(what.to_string())
}

fn io(what: &str) -> impl FnOnce(std::io::Error) -> MeasureError + '_ {
    move |source| MeasureError::Io {
        what: what.to_owned(),
        source,
    }
}

pub fn measure(options: &FreshnessOptions) -> Result<FreshnessReport, MeasureError> {
    let tracktable = sibling("tracktable")?;
    let per_object = options.per_object.max(1);
    let events = options.rate * options.duration.as_secs().max(1);
    let source = options.scratch.join("events");
    let _ = std::fs::remove_dir_all(&options.scratch);
    let started = Instant::now();
    let config = GenConfig {
        events,
        seed: 11,
        drift_rate: 0.0,
        bad_rate: 0.0,
    };
    let generated = tracktable_gen::write_dir(&config, &source, per_object).map_err(failed)?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(&source)
        .map_err(io("listing the generated objects"))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .collect();
    files.sort();
    let bodies: Vec<Vec<u8>> = files
        .iter()
        .map(std::fs::read)
        .collect::<Result<_, _>>()
        .map_err(io("reading the generated objects"))?;
    eprintln!(
        "generated {} events in {} objects ({:.0} MB gzip) in {:.1}s",
        generated.lines,
        bodies.len(),
        generated.bytes as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(io("starting the async runtime"))?;
    let aws = runtime.block_on(Aws::connect(&options.endpoint_url));
    let name = format!("tracktable-freshness-{}", std::process::id());
    let queue_url = runtime.block_on(aws.bucket_notifying_queue(&name))?;
    drop_schema(&options.database_url, SCHEMA)?;

    let pipeline = options.scratch.join("freshness.toml");
    std::fs::write(
        &pipeline,
        format!(
            "name = \"freshness\"\n\
             [source]\ntype = \"sqs\"\nqueue_url = \"{queue_url}\"\nregion = \"us-east-1\"\n\
             endpoint_url = \"{}\"\n\
             [warehouse]\ntype = \"postgres\"\nurl = \"{}\"\nschema = \"{SCHEMA}\"\n",
            options.endpoint_url, options.database_url
        ),
    )
    .map_err(io("writing the pipeline file"))?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map_err(io("finding a free port"))?
        .port();
    let log = options.scratch.join("tracktable.log");
    let mut command = Command::new(&tracktable);
    command
        .args(["run", "--pipeline"])
        .arg(&pipeline)
        .args(["--workers", &options.workers.to_string()])
        .args([
            "--batch-interval",
            &humantime::format_duration(options.batch_interval).to_string(),
        ])
        .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
        .env("TRACKTABLE_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).map_err(io("creating the log file"))?);
    for (variable, value) in [
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
    ] {
        if std::env::var_os(variable).is_none() {
            command.env(variable, value);
        }
    }
    let child = command.spawn().map_err(io("starting tracktable"))?;
    let mut child = Child(Some(child));
    let tail = || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    };

    // The run is up once its source answers: start-up is not part of freshness.
    let ready_by = Instant::now() + Duration::from_secs(60);
    while http_get(port, "/ready").is_none_or(|(status, _)| status != 200) {
        if Instant::now() > ready_by || child.exited() {
            return Err(failed(format!("tracktable did not get ready:\n{}", tail())));
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    let objects = bodies.len() as u64;
    let period = Duration::from_secs_f64(per_object as f64 / options.rate.max(1) as f64);
    eprintln!(
        "writing {objects} objects, one every {:.0} ms, for {}",
        period.as_secs_f64() * 1000.0,
        humantime::format_duration(options.duration)
    );
    let (fed_for, late_puts) = runtime.block_on(aws.feed(&name, &files, bodies, period))?;
    let fed = Instant::now();

    let drain_by = fed + Duration::from_secs(600);
    let exposition = loop {
        if let Some((200, body)) = http_get(port, "/metrics")
            && metric_value(&body, "tracktable_objects_acknowledged_total")
                .is_some_and(|acknowledged| acknowledged >= objects as f64)
        {
            break body;
        }
        if Instant::now() > drain_by || child.exited() {
            return Err(failed(format!(
                "not every object was acknowledged within 10 minutes of the last:\n{}",
                tail()
            )));
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let drained_in = fed.elapsed();
    let goal = (options.batch_interval + GOAL_OVER_INTERVAL).as_secs_f64();
    let within = tracktable::freshness::BUCKETS
        .iter()
        .rev()
        .find(|&&bound| bound <= goal)
        .and_then(|&bound| {
            let series = format!("tracktable_freshness_seconds_bucket{{le=\"{bound:?}\"}}");
            Some((bound, metric_value(&exposition, &series)? as u64))
        });

    let cpu_seconds = child.stop()?;
    let text = std::fs::read_to_string(&log).map_err(io("reading tracktable's log"))?;
    let line = text
        .lines()
        .find(|line| line.contains("freshness, from an object written to its rows committed"))
        .ok_or_else(|| failed(format!("no freshness line in the summary:\n{}", tail())))?;
    let figure = |label: &str| -> Result<f64, MeasureError> {
        let rest = line
            .split_once(&format!("{label} "))
            .ok_or_else(|| failed(format!("no {label} in {line}")))?
            .1;
        let number: String = rest
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        number
            .parse()
            .map_err(|_| failed(format!("{label} in {line}")))
    };
    let report = FreshnessReport {
        objects,
        events: generated.lines,
        fed_for,
        late_puts,
        drained_in,
        p50: figure("p50")?,
        p99: figure("p99")?,
        max: figure("max")?,
        observed: figure("over")? as u64,
        within,
        cpu_seconds,
    };
    runtime.block_on(aws.remove(&name, &queue_url, &files));
    drop_schema(&options.database_url, SCHEMA)?;
    Ok(report)
}

/// The bench's clients for the emulator: the environment's credentials, else moto's
/// `testing`.
struct Aws {
    s3: aws_sdk_s3::Client,
    sqs: aws_sdk_sqs::Client,
}

impl Aws {
    async fn connect(endpoint: &str) -> Aws {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(endpoint)
            .region(aws_config::Region::new("us-east-1"));
        if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
            loader = loader.credentials_provider(aws_sdk_s3::config::Credentials::new(
                "testing", "testing", None, None, "moto",
            ));
        }
        let shared = loader.load().await;
        let s3 = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(true)
            .build();
        Aws {
            s3: aws_sdk_s3::Client::from_conf(s3),
            sqs: aws_sdk_sqs::Client::new(&shared),
        }
    }

    /// A bucket `name` whose new objects S3 announces to a queue `name`; the queue's URL.
    async fn bucket_notifying_queue(&self, name: &str) -> Result<String, MeasureError> {
        let aws = |what: &str, error: &dyn std::fmt::Display| {
            failed(format!("{what} at the emulator: {error}"))
        };
        self.s3
            .create_bucket()
            .bucket(name)
            .send()
            .await
            .map_err(|e| aws("create bucket", &aws_sdk_s3::error::DisplayErrorContext(e)))?;
        let queue_url = self
            .sqs
            .create_queue()
            .queue_name(name)
            .send()
            .await
            .map_err(|e| aws("create queue", &aws_sdk_sqs::error::DisplayErrorContext(e)))?
            .queue_url
            .ok_or_else(|| failed("the emulator gave no queue URL"))?;
        let queue_arn = self
            .sqs
            .get_queue_attributes()
            .queue_url(&queue_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|e| {
                aws(
                    "queue attributes",
                    &aws_sdk_sqs::error::DisplayErrorContext(e),
                )
            })?
            .attributes
            .and_then(|map| map.get(&QueueAttributeName::QueueArn).cloned())
            .ok_or_else(|| failed("the emulator gave no queue ARN"))?;
        let queue = QueueConfiguration::builder()
            .queue_arn(&queue_arn)
            .events(Event::from("s3:ObjectCreated:*"))
            .build()
            .map_err(|e| aws("queue configuration", &e))?;
        self.s3
            .put_bucket_notification_configuration()
            .bucket(name)
            .notification_configuration(
                NotificationConfiguration::builder()
                    .queue_configurations(queue)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| aws("notifications", &aws_sdk_s3::error::DisplayErrorContext(e)))?;
        Ok(queue_url)
    }

    /// Puts object `i` at `i * period` after the start, each put on its own task so a
    /// slow one does not delay the next; returns the time from the first put to the last
    /// and how many started more than 100 ms behind their slot.
    async fn feed(
        &self,
        bucket: &str,
        files: &[PathBuf],
        bodies: Vec<Vec<u8>>,
        period: Duration,
    ) -> Result<(Duration, u64), MeasureError> {
        let start = tokio::time::Instant::now();
        let mut late = 0;
        let mut puts = Vec::with_capacity(bodies.len());
        for (index, (path, body)) in files.iter().zip(bodies).enumerate() {
            let slot = start + period * index as u32;
            tokio::time::sleep_until(slot).await;
            if slot.elapsed() > LATE {
                late += 1;
            }
            let key = key(path);
            let put = self
                .s3
                .put_object()
                .bucket(bucket)
                .key(key)
                .body(ByteStream::from(body));
            puts.push(tokio::spawn(put.send()));
        }
        for put in puts {
            match put.await {
                Ok(Ok(_)) => {}
                Ok(Err(error)) => {
                    return Err(failed(format!(
                        "put object: {}",
                        aws_sdk_s3::error::DisplayErrorContext(error)
                    )));
                }
                Err(error) => return Err(failed(format!("put object: {error}"))),
            }
        }
        Ok((start.elapsed(), late))
    }

    /// Removes what the run made at the emulator, so its memory does not grow run by run;
    /// a failure only leaves it there.
    async fn remove(&self, bucket: &str, queue_url: &str, files: &[PathBuf]) {
        let _ = self.sqs.delete_queue().queue_url(queue_url).send().await;
        for path in files {
            let _ = self
                .s3
                .delete_object()
                .bucket(bucket)
                .key(key(path))
                .send()
                .await;
        }
        let _ = self.s3.delete_bucket().bucket(bucket).send().await;
    }
}

fn key(path: &std::path::Path) -> String {
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!("raw/{name}")
}

/// The running `tracktable`, killed if the bench stops early.
struct Child(Option<std::process::Child>);

impl Child {
    fn exited(&mut self) -> bool {
        self.0
            .as_mut()
            .is_none_or(|child| !matches!(child.try_wait(), Ok(None)))
    }

    /// SIGTERM, then its user+sys CPU seconds from `wait4`; it must exit 0.
    fn stop(&mut self) -> Result<f64, MeasureError> {
        let child = self.0.take().ok_or_else(|| failed("tracktable is gone"))?;
        let pid = child.id() as libc::pid_t;
        // SAFETY: `pid` is our own child, not yet waited on, so it names that process.
        if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
            return Err(io("stopping tracktable")(std::io::Error::last_os_error()));
        }
        let mut status = 0;
        // SAFETY: an all-zero rusage is a valid value for wait4 to overwrite.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `pid` is our own child, not yet waited on; the pointers are to live
        // locals.
        let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if waited != pid {
            return Err(io("waiting for tracktable")(std::io::Error::last_os_error()));
        }
        if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
            return Err(failed(format!(
                "tracktable exited with status {status} after SIGTERM"
            )));
        }
        let seconds = |time: libc::timeval| time.tv_sec as f64 + time.tv_usec as f64 / 1e6;
        Ok(seconds(usage.ru_utime) + seconds(usage.ru_stime))
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_series_is_read_by_its_exact_name_and_labels() {
        let exposition = "# TYPE tracktable_freshness_seconds histogram\n\
             tracktable_freshness_seconds_sum 12.5\n\
             tracktable_freshness_seconds_count 4\n\
             tracktable_freshness_seconds_bucket{le=\"7.0\"} 3\n\
             tracktable_freshness_seconds_bucket{le=\"10.0\"} 4\n";
        assert_eq!(
            metric_value(exposition, "tracktable_freshness_seconds_count"),
            Some(4.0)
        );
        assert_eq!(
            metric_value(
                exposition,
                "tracktable_freshness_seconds_bucket{le=\"7.0\"}"
            ),
            Some(3.0)
        );
        assert_eq!(
            metric_value(exposition, "tracktable_freshness_seconds"),
            None
        );
        // `{:?}` of a bound is how the exposition writes it.
        assert_eq!(format!("{:?}", 7.0_f64), "7.0");
    }
}
