//! Freshness as users feel it: objects written to S3 and announced by S3's own
//! notifications, loaded by `tracktable run` from the queue; `/metrics` observes each
//! object once, from its notification's event time to its commit, and the closing
//! summary gives the percentiles.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;

use crate::support;

const OBJECTS: usize = 6;

/// How long the objects wait in the queue before tracktable starts: every object's
/// freshness is at least this.
const AGED: Duration = Duration::from_secs(2);

/// The seconds after `label` in the summary line (`p50 2.3s`).
fn seconds_after(line: &str, label: &str) -> f64 {
    let rest = line
        .split_once(&format!("{label} "))
        .unwrap_or_else(|| panic!("no {label} in {line}"))
        .1;
    let number: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    number
        .parse()
        .unwrap_or_else(|_| panic!("{label} in {line}"))
}

/// Objects aged 2 s in the queue load, and the freshness histogram counts each exactly
/// once with a value between that age and the time since the first was written; the
/// summary printed at SIGTERM gives p50, p99 and max in the same range.
#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    skip_services,
    ignore = "needs PostgreSQL or the S3/SQS emulator; TRACKTABLE_SKIP_SERVICES is set"
)]
async fn freshness_counts_each_object_once_from_its_s3_event_time_to_its_commit() {
    let Some(endpoint) = support::moto_url().await else {
        return;
    };
    let Some(client) = support::postgres().await else {
        return;
    };
    let aws = support::aws(&endpoint).await;
    let (bucket, queue_url) = aws.announcing_bucket("fresh").await;

    let first_written = Instant::now();
    for object in 0..OBJECTS {
        let lines: Vec<String> = (0..20)
            .map(|i| {
                format!(
                    r#"{{"type":"track","event":"Fresh","messageId":"f{object}-{i}","properties":{{"n":{i}}}}}"#
                )
            })
            .collect();
        aws.s3
            .put_object()
            .bucket(&bucket)
            .key(format!("raw/{object}.json"))
            .body(ByteStream::from(lines.join("\n").into_bytes()))
            .send()
            .await
            .expect("put object");
    }
    // Not a wait for work: the age the objects are given before anything reads them.
    tokio::time::sleep(AGED).await;

    let schema = support::schema("fresh");
    let work = tempfile::tempdir().unwrap();
    let pipeline =
        support::sqs_pipeline_file(work.path(), "fresh", &queue_url, &endpoint, &schema, "30s");
    let port = support::free_port();
    let log = work.path().join("stderr.log");
    let mut child = support::KillOnDrop(
        Command::new(support::binary())
            .args(["run", "--metrics-addr"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--pipeline")
            .arg(&pipeline)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("TRACKTABLE_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start tracktable"),
    );

    let deadline = Instant::now() + Duration::from_secs(120);
    let exposition = loop {
        assert!(
            child.try_wait().unwrap().is_none(),
            "tracktable exited:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        assert!(
            Instant::now() < deadline,
            "not every object was acknowledged within 120 s:\n{}\nthreads:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default(),
            support::thread_stacks(child.id())
        );
        if let Some((200, body)) = support::http_get(port, "/metrics")
            && support::metric_value(&body, "tracktable_objects_acknowledged_total")
                == Some(OBJECTS as f64)
        {
            break body;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let oldest_possible = first_written.elapsed().as_secs_f64();
    let objects = OBJECTS as f64;
    assert_eq!(
        support::metric_value(&exposition, "tracktable_freshness_seconds_count"),
        Some(objects),
        "{exposition}"
    );
    assert_eq!(
        support::metric_value(
            &exposition,
            "tracktable_freshness_seconds_bucket{le=\"+Inf\"}"
        ),
        Some(objects),
        "{exposition}"
    );
    // No object is fresher than the age it was given.
    assert_eq!(
        support::metric_value(
            &exposition,
            "tracktable_freshness_seconds_bucket{le=\"1.5\"}"
        ),
        Some(0.0),
        "{exposition}"
    );
    let sum =
        support::metric_value(&exposition, "tracktable_freshness_seconds_sum").expect("a sum");
    assert!(
        sum >= objects * AGED.as_secs_f64() && sum <= objects * oldest_possible,
        "freshness sum {sum} for {OBJECTS} objects written at most {oldest_possible:.1}s ago"
    );
    assert_eq!(
        support::count(&client, &format!("SELECT count(*) FROM \"{schema}\".fresh")).await,
        (OBJECTS * 20) as i64
    );

    support::signal(child.id(), "TERM");
    let status = support::wait_within(&mut child, Duration::from_secs(30), "SIGTERM");
    let logs = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "exit after SIGTERM: {status}\n{logs}");
    let summary = logs
        .lines()
        .find(|line| {
            line.contains("fresh: freshness, from an object written to its rows committed")
        })
        .unwrap_or_else(|| panic!("no freshness summary:\n{logs}"));
    assert!(
        summary.contains(&format!("over {OBJECTS} objects")),
        "{summary}"
    );
    let (p50, p99, max) = (
        seconds_after(summary, "p50"),
        seconds_after(summary, "p99"),
        seconds_after(summary, "max"),
    );
    assert!(
        AGED.as_secs_f64() - 0.05 <= p50 && p50 <= p99 && p99 <= max,
        "{summary}"
    );
    assert!(max <= oldest_possible + 0.05, "{summary}");
    support::drop_schema(&client, &schema).await;
}
