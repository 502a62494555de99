//! The SQS source end to end: bucket → notification → queue → tracktable → PostgreSQL,
//! against moto and the real PostgreSQL.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_sqs::types::QueueAttributeName;

use crate::support;

fn track(id: &str, properties: &str) -> String {
    format!(
        r#"{{"type":"track","event":"File Uploaded","messageId":"{id}","receivedAt":"2024-03-01T12:00:00Z","properties":{properties}}}"#
    )
}

fn gzip(text: &str) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(text.as_bytes()).expect("gzip");
    encoder.finish().expect("gzip")
}

/// Every kind of body a real queue carries, in one run: S3 notifications for objects
/// whose keys hold spaces, `+` and unicode (plain and gzip), the `s3:TestEvent` moto
/// sends when notifications are configured, an SNS-wrapped and an EventBridge-form
/// notification, a notification for an object deleted before it could be fetched, and
/// a garbage body. Every message id loads exactly once, the deleted object is one
/// `_rejections` row, and the queue ends holding only the garbage (left for the redrive
/// policy).
#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    skip_services,
    ignore = "needs PostgreSQL or the S3/SQS emulator; TRACKTABLE_SKIP_SERVICES is set"
)]
async fn notifications_load_every_object_once_and_empty_the_queue() {
    let Some(endpoint) = support::moto_url().await else {
        return;
    };
    let Some(client) = support::postgres().await else {
        return;
    };
    let aws = support::aws(&endpoint).await;
    let (bucket, queue_url) = aws.announcing_bucket("sqs").await;
    let queue_name = queue_url.rsplit('/').next().unwrap_or_default().to_owned();

    // Objects announced by S3 itself.
    let keys = [
        "raw/2024 03 01/first batch.json",
        "raw/2024 03 01/événements ✓+2.json.gz",
        "raw/plain.ndjson",
    ];
    let mut expected = 0;
    for (index, key) in keys.iter().enumerate() {
        let lines: Vec<String> = (0..50)
            .map(|i| track(&format!("o{index}-{i}"), &format!("{{\"n\":{i}}}")))
            .collect();
        expected += lines.len() as i64;
        let text = lines.join("\n");
        let body = if key.ends_with(".gz") {
            gzip(&text)
        } else {
            text.into_bytes()
        };
        aws.s3
            .put_object()
            .bucket(&bucket)
            .key(*key)
            .body(ByteStream::from(body))
            .send()
            .await
            .expect("put object");
    }
    // An object deleted before tracktable fetches it: its notification is queued.
    aws.s3
        .put_object()
        .bucket(&bucket)
        .key("raw/gone.json")
        .body(ByteStream::from(track("gone-1", "{}").into_bytes()))
        .send()
        .await
        .expect("put object");
    aws.s3
        .delete_object()
        .bucket(&bucket)
        .key("raw/gone.json")
        .send()
        .await
        .expect("delete object");

    // Objects announced in other shapes: put them into a second bucket without
    // notifications, then send the bodies by hand.
    let quiet = support::unique("sqs-quiet");
    aws.s3
        .create_bucket()
        .bucket(&quiet)
        .send()
        .await
        .expect("create bucket");
    for (key, prefix) in [("sns/a b.json", "sns"), ("eventbridge/c+d.json", "eb")] {
        let lines: Vec<String> = (0..20)
            .map(|i| track(&format!("{prefix}-{i}"), "{\"n\":1}"))
            .collect();
        expected += lines.len() as i64;
        aws.s3
            .put_object()
            .bucket(&quiet)
            .key(key)
            .body(ByteStream::from(lines.join("\n").into_bytes()))
            .send()
            .await
            .expect("put object");
    }
    let s3_event = serde_json::json!({"Records": [{
        "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": quiet}, "object": {"key": "sns/a+b.json", "size": 10}}
    }]})
    .to_string();
    let sns = serde_json::json!({"Type": "Notification", "Message": s3_event}).to_string();
    let eventbridge = serde_json::json!({
        "detail-type": "Object Created", "source": "aws.s3",
        "detail": {"bucket": {"name": quiet}, "object": {"key": "eventbridge/c%2Bd.json", "size": 10}}
    })
    .to_string();
    for body in [
        sns.as_str(),
        eventbridge.as_str(),
        "this is not a notification",
    ] {
        aws.sqs
            .send_message()
            .queue_url(&queue_url)
            .message_body(body)
            .send()
            .await
            .expect("send message");
    }

    let schema = support::schema("sqs");
    let work = tempfile::tempdir().unwrap();
    let pipeline =
        support::sqs_pipeline_file(work.path(), "sqs", &queue_url, &endpoint, &schema, "30s");
    let stderr_path = work.path().join("stderr.log");
    let mut child = Command::new(support::binary())
        .args(["run", "--once", "--pipeline"])
        .arg(&pipeline)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .expect("start tracktable");
    let status = support::wait_within(&mut child, Duration::from_secs(120), "sqs");
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    assert!(status.success(), "tracktable failed:\n{stderr}");

    let table = format!("\"{schema}\".file_uploaded");
    assert_eq!(
        support::count(&client, &format!("SELECT count(*) FROM {table}")).await,
        expected,
        "{stderr}"
    );
    assert_eq!(
        support::count(&client, &format!("SELECT count(DISTINCT id) FROM {table}")).await,
        expected
    );
    // `check` reaches the queue; with a wrong queue URL it fails and says what to fix.
    let checked = Command::new(support::binary())
        .args(["check", "--pipeline"])
        .arg(&pipeline)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .output()
        .expect("run check");
    let report = String::from_utf8_lossy(&checked.stdout);
    assert!(
        report.contains(&format!("SQS queue {queue_url} is reachable"))
            && !report.contains("FAIL  SQS queue"),
        "{report}"
    );
    for permission in [
        "pass  receive messages (sqs:ReceiveMessage)",
        "pass  delete loaded messages (sqs:DeleteMessage)",
        "pass  keep loading messages invisible (sqs:ChangeMessageVisibility)",
        "read announced objects (s3:GetObject",
    ] {
        assert!(report.contains(permission), "{permission}:\n{report}");
    }
    let wrong = work.path().join("wrong.toml");
    std::fs::write(
        &wrong,
        std::fs::read_to_string(&pipeline)
            .unwrap()
            .replace(&queue_name, "no-such-queue"),
    )
    .unwrap();
    let checked = Command::new(support::binary())
        .args(["check", "--pipeline"])
        .arg(&wrong)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .output()
        .expect("run check");
    let report = String::from_utf8_lossy(&checked.stdout);
    assert!(!checked.status.success(), "{report}");
    assert!(report.contains("FAIL  SQS queue"), "{report}");
    assert!(!report.contains("pass  SQS queue"), "{report}");
    assert!(report.contains("sqs:ReceiveMessage"), "{report}");

    let gone = format!("s3://{bucket}/raw/gone.json");
    assert_eq!(
        support::count(
            &client,
            &format!(
                "SELECT count(*) FROM \"{schema}\"._rejections WHERE object = '{gone}' \
                 AND reason ILIKE '%does not exist%'"
            )
        )
        .await,
        1,
        "the deleted object is recorded:\n{stderr}"
    );
    assert!(
        stderr.contains("cannot understand an SQS message"),
        "the garbage body is logged:\n{stderr}"
    );
    assert!(
        stderr.contains("S3 test event"),
        "the test event is recognised:\n{stderr}"
    );

    // Only the garbage is left (in flight until its visibility timeout runs out).
    let attributes = aws
        .sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .expect("queue attributes")
        .attributes
        .unwrap_or_default();
    let number = |name: QueueAttributeName| {
        attributes
            .get(&name)
            .and_then(|value| value.parse::<i64>().ok())
            .unwrap_or(-1)
    };
    assert_eq!(
        number(QueueAttributeName::ApproximateNumberOfMessages)
            + number(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        1,
        "only the garbage body stays in the queue:\n{stderr}"
    );
    support::drop_schema(&client, &schema).await;
}

/// A bucket with objects and a queue, announced by hand-sent S3 notifications (no
/// bucket notification configuration, so no test event races the test's own polling).
struct Setup {
    aws: support::Aws,
    endpoint: String,
    bucket: String,
    queue_url: String,
    /// Message ids written into the objects.
    expected: i64,
}

async fn setup(endpoint: String, prefix: &str, objects: usize, per_object: usize) -> Setup {
    let aws = support::aws(&endpoint).await;
    let bucket = support::unique(prefix);
    aws.s3
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("create bucket");
    let queue_url = aws
        .sqs
        .create_queue()
        .queue_name(support::unique(prefix))
        .send()
        .await
        .expect("create queue")
        .queue_url
        .expect("queue url");
    for object in 0..objects {
        let lines: Vec<String> = (0..per_object)
            .map(|i| track(&format!("{prefix}-{object}-{i}"), &format!("{{\"n\":{i}}}")))
            .collect();
        let key = format!("raw/{object:03}.json");
        aws.s3
            .put_object()
            .bucket(&bucket)
            .key(&key)
            .body(ByteStream::from(lines.join("\n").into_bytes()))
            .send()
            .await
            .expect("put object");
    }
    Setup {
        aws,
        endpoint,
        bucket,
        queue_url,
        expected: (objects * per_object) as i64,
    }
}

impl Setup {
    /// Sends one S3 notification per object.
    async fn announce(&self, objects: std::ops::Range<usize>) {
        for object in objects {
            let body = serde_json::json!({"Records": [{
                "eventName": "ObjectCreated:Put",
                "s3": {"bucket": {"name": self.bucket},
                       "object": {"key": format!("raw/{object:03}.json"), "size": 1}}
            }]})
            .to_string();
            self.aws
                .sqs
                .send_message()
                .queue_url(&self.queue_url)
                .message_body(body)
                .send()
                .await
                .expect("send message");
        }
    }

    fn pipeline(
        &self,
        dir: &std::path::Path,
        schema: &str,
        visibility: &str,
    ) -> std::path::PathBuf {
        support::sqs_pipeline_file(
            dir,
            "sqs",
            &self.queue_url,
            &self.endpoint,
            schema,
            visibility,
        )
    }

    /// Messages visible plus in flight.
    async fn messages_left(&self) -> i64 {
        let attributes = self
            .aws
            .sqs
            .get_queue_attributes()
            .queue_url(&self.queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .expect("queue attributes")
            .attributes
            .unwrap_or_default();
        attributes
            .values()
            .map(|value| value.parse::<i64>().unwrap_or(0))
            .sum()
    }
}

fn start(pipeline: &std::path::Path, stderr: &std::path::Path) -> support::KillOnDrop {
    support::KillOnDrop(
        Command::new(support::binary())
            .args(["run", "--pipeline"])
            .arg(pipeline)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("TRACKTABLE_LOG", "info,tracktable=debug")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(stderr).expect("stderr file"))
            .spawn()
            .expect("start tracktable"),
    )
}

/// A load slower than the visibility timeout: tracktable keeps extending the
/// message's visibility, so a second consumer polling all along never sees it; once
/// the load commits, the message is deleted and the queue is empty.
#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    skip_services,
    ignore = "needs PostgreSQL or the S3/SQS emulator; TRACKTABLE_SKIP_SERVICES is set"
)]
async fn a_slow_load_keeps_its_messages_invisible_until_they_are_deleted() {
    let Some(endpoint) = support::moto_url().await else {
        return;
    };
    let Some(client) = support::postgres().await else {
        return;
    };
    let setup = setup(endpoint, "slow", 2, 30).await;
    let schema = support::schema("slow");
    let work = tempfile::tempdir().unwrap();
    let pipeline = setup.pipeline(work.path(), &schema, "10s");
    let log = work.path().join("stderr.log");
    let mut child = start(&pipeline, &log);
    let loads = format!(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = '{schema}' AND table_name = '_tracktable_loads'"
    );
    support::eventually(
        Duration::from_secs(60),
        "the schema is prepared",
        &log,
        || async { support::count(&client, &loads).await == 1 },
    )
    .await;
    let locker = support::lock_loads(&schema).await;
    setup.announce(0..2).await;
    support::eventually(
        Duration::from_secs(60),
        "a load waits on the lock",
        &log,
        || async { support::loads_are_waiting(&client, &schema).await },
    )
    .await;

    // Past the 10 s visibility timeout, a second consumer must see nothing.
    let until = std::time::Instant::now() + Duration::from_secs(16);
    while std::time::Instant::now() < until {
        let stolen = setup
            .aws
            .sqs
            .receive_message()
            .queue_url(&setup.queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("receive")
            .messages
            .unwrap_or_default();
        assert!(
            stolen.is_empty(),
            "a message became visible while its batch was loading: {stolen:?}\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "tracktable is still running"
    );
    locker.batch_execute("COMMIT").await.expect("unlock");

    let table = format!("SELECT count(*) FROM \"{schema}\".file_uploaded");
    support::eventually(Duration::from_secs(60), "every row loads", &log, || async {
        client
            .query_one(&table, &[])
            .await
            .map(|row| row.get::<_, i64>(0) == setup.expected)
            .unwrap_or(false)
    })
    .await;
    support::eventually(
        Duration::from_secs(30),
        "the queue empties",
        &log,
        || async { setup.messages_left().await == 0 },
    )
    .await;
    let stderr = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        stderr.contains("visibility extended"),
        "visibility was extended:\n{stderr}"
    );
    drop(child);
    support::drop_schema(&client, &schema).await;
}

/// tracktable killed with SIGKILL while a batch is loading, then started again: the
/// messages it held reappear after their visibility timeout, and every message id is
/// in the warehouse exactly once.
#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    skip_services,
    ignore = "needs PostgreSQL or the S3/SQS emulator; TRACKTABLE_SKIP_SERVICES is set"
)]
async fn killed_mid_batch_and_restarted_loads_everything_exactly_once() {
    let Some(endpoint) = support::moto_url().await else {
        return;
    };
    let Some(client) = support::postgres().await else {
        return;
    };
    let setup = setup(endpoint, "kill", 6, 40).await;
    let schema = support::schema("kill");
    let work = tempfile::tempdir().unwrap();
    let pipeline = setup.pipeline(work.path(), &schema, "10s");
    let first_log = work.path().join("first.log");
    let mut first = start(&pipeline, &first_log);
    let loads = format!(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = '{schema}' AND table_name = '_tracktable_loads'"
    );
    support::eventually(
        Duration::from_secs(60),
        "the schema is prepared",
        &first_log,
        || async { support::count(&client, &loads).await == 1 },
    )
    .await;
    // Half the objects load and are acknowledged; the rest are caught mid-load.
    setup.announce(0..3).await;
    let table = format!("SELECT count(*) FROM \"{schema}\".file_uploaded");
    support::eventually(
        Duration::from_secs(60),
        "the first half loads",
        &first_log,
        || async {
            client
                .query_one(&table, &[])
                .await
                .map(|row| row.get::<_, i64>(0) == setup.expected / 2)
                .unwrap_or(false)
        },
    )
    .await;
    let locker = support::lock_loads(&schema).await;
    setup.announce(3..6).await;
    support::eventually(
        Duration::from_secs(60),
        "a load waits on the lock",
        &first_log,
        || async { support::loads_are_waiting(&client, &schema).await },
    )
    .await;
    first.kill().expect("SIGKILL");
    first.wait().expect("reap");
    locker.batch_execute("ROLLBACK").await.expect("unlock");

    let second_log = work.path().join("second.log");
    let second = start(&pipeline, &second_log);
    support::eventually(
        Duration::from_secs(90),
        "every row loads after the restart",
        &second_log,
        || async {
            client
                .query_one(&table, &[])
                .await
                .map(|row| row.get::<_, i64>(0) == setup.expected)
                .unwrap_or(false)
        },
    )
    .await;
    support::eventually(
        Duration::from_secs(30),
        "the queue empties",
        &second_log,
        || async { setup.messages_left().await == 0 },
    )
    .await;
    assert_eq!(
        support::count(
            &client,
            &format!("SELECT count(DISTINCT id) FROM \"{schema}\".file_uploaded")
        )
        .await,
        setup.expected
    );
    assert_eq!(
        support::count(
            &client,
            &format!("SELECT count(*) FROM \"{schema}\".tracks")
        )
        .await,
        setup.expected
    );
    drop(second);
    support::drop_schema(&client, &schema).await;
}

fn run_once(pipeline: &std::path::Path, log: &std::path::Path) -> String {
    let mut child = Command::new(support::binary())
        .args(["run", "--once", "--pipeline"])
        .arg(pipeline)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("stderr file"))
        .spawn()
        .expect("start tracktable");
    let status = support::wait_within(&mut child, Duration::from_secs(120), "run --once");
    let stderr = std::fs::read_to_string(log).unwrap_or_default();
    assert!(status.success(), "tracktable failed:\n{stderr}");
    stderr
}

/// The same object announced again, after a restart: the object log in the warehouse
/// says it is loaded, so the repeat is deleted without loading anything.
#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    skip_services,
    ignore = "needs PostgreSQL or the S3/SQS emulator; TRACKTABLE_SKIP_SERVICES is set"
)]
async fn an_object_announced_again_after_a_restart_loads_once() {
    let Some(endpoint) = support::moto_url().await else {
        return;
    };
    let Some(client) = support::postgres().await else {
        return;
    };
    let setup = setup(endpoint, "again", 2, 25).await;
    let schema = support::schema("again");
    let work = tempfile::tempdir().unwrap();
    let pipeline = setup.pipeline(work.path(), &schema, "30s");
    setup.announce(0..2).await;
    run_once(&pipeline, &work.path().join("first.log"));
    let loads = format!("SELECT count(*) FROM \"{schema}\"._tracktable_loads");
    let loads_after_first = support::count(&client, &loads).await;
    assert_eq!(
        support::count(
            &client,
            &format!("SELECT count(*) FROM \"{schema}\"._tracktable_objects")
        )
        .await,
        2,
        "both objects are in the object log"
    );

    setup.announce(0..2).await;
    let stderr = run_once(&pipeline, &work.path().join("second.log"));
    assert!(
        stderr.contains("objects already loaded"),
        "the repeats were recognised:\n{stderr}"
    );
    assert_eq!(
        support::count(&client, &loads).await,
        loads_after_first,
        "the second run loaded nothing:\n{stderr}"
    );
    assert_eq!(
        support::count(
            &client,
            &format!("SELECT count(*) FROM \"{schema}\".file_uploaded")
        )
        .await,
        setup.expected
    );
    assert_eq!(setup.messages_left().await, 0, "the repeats were deleted");
    support::drop_schema(&client, &schema).await;
}

/// SIGTERM while messages are held but not yet admitted (loading is behind, so
/// backpressure keeps them waiting): the loading batch commits and its message is
/// deleted, and the waiting messages are released (visibility 0), so another consumer
/// gets them at once rather than after the visibility timeout.
#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    skip_services,
    ignore = "needs PostgreSQL or the S3/SQS emulator; TRACKTABLE_SKIP_SERVICES is set"
)]
async fn a_graceful_stop_releases_messages_it_has_not_loaded() {
    let Some(endpoint) = support::moto_url().await else {
        return;
    };
    let Some(client) = support::postgres().await else {
        return;
    };
    let setup = setup(endpoint, "release", 6, 10).await;
    let schema = support::schema("release");
    let work = tempfile::tempdir().unwrap();
    let pipeline = setup.pipeline(work.path(), &schema, "60s");
    let log = work.path().join("stderr.log");
    let mut child = support::KillOnDrop(
        Command::new(support::binary())
            // Every object fills a batch as it is admitted (`--max-batch-bytes 1`), so
            // the first, held by the lock, is a whole batch in flight: backpressure
            // weighs batches by how full they are.
            .args([
                "run",
                "--max-batches-in-flight",
                "1",
                "--max-batch-bytes",
                "1",
                "--pipeline",
            ])
            .arg(&pipeline)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start tracktable"),
    );
    let loads = format!(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = '{schema}' AND table_name = '_tracktable_loads'"
    );
    support::eventually(
        Duration::from_secs(60),
        "the schema is prepared",
        &log,
        || async { support::count(&client, &loads).await == 1 },
    )
    .await;
    let locker = support::lock_loads(&schema).await;
    setup.announce(0..1).await;
    support::eventually(
        Duration::from_secs(60),
        "the first batch waits on the lock",
        &log,
        || async { support::loads_are_waiting(&client, &schema).await },
    )
    .await;
    setup.announce(1..6).await;
    // All six received (none visible): one loading, five held behind backpressure.
    support::eventually(
        Duration::from_secs(30),
        "tracktable receives the rest",
        &log,
        || async {
            let attributes = setup
                .aws
                .sqs
                .get_queue_attributes()
                .queue_url(&setup.queue_url)
                .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
                .send()
                .await
                .expect("attributes")
                .attributes
                .unwrap_or_default();
            attributes
                .get(&QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
                .and_then(|value| value.parse::<i64>().ok())
                == Some(6)
        },
    )
    .await;

    support::signal(child.id(), "TERM");
    tokio::time::sleep(Duration::from_millis(500)).await;
    locker.batch_execute("COMMIT").await.expect("unlock");
    let status = support::wait_within(&mut child, Duration::from_secs(60), "SIGTERM");
    let stderr = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "exit after SIGTERM: {status}\n{stderr}");

    // The first object committed; the waiting messages are visible again at once
    // (their visibility timeout is 60 s). On a loaded machine the second object may
    // already sit in the open batch when the signal arrives, and a graceful stop
    // finishes that batch too; every message not loaded is released either way.
    let rows = support::count(
        &client,
        &format!("SELECT count(*) FROM \"{schema}\".file_uploaded"),
    )
    .await;
    assert!(rows == 10 || rows == 20, "{rows} rows:\n{stderr}");
    let waiting = 6 - rows as usize / 10;
    let mut released = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while released < waiting && std::time::Instant::now() < deadline {
        released += setup
            .aws
            .sqs
            .receive_message()
            .queue_url(&setup.queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("receive")
            .messages
            .unwrap_or_default()
            .len();
    }
    assert_eq!(
        released, waiting,
        "the unloaded messages were released:\n{stderr}"
    );
    assert!(
        stderr.contains("released unfinished SQS messages"),
        "{stderr}"
    );
    support::drop_schema(&client, &schema).await;
}

/// `check` reads an object a waiting notification announces, and leaves the message
/// where it was: visible, still waiting to be loaded.
#[cfg_attr(
    skip_services,
    ignore = "needs PostgreSQL or the S3/SQS emulator; TRACKTABLE_SKIP_SERVICES is set"
)]
#[tokio::test(flavor = "multi_thread")]
async fn check_reads_an_announced_object_and_leaves_its_message() {
    let Some(endpoint) = support::moto_url().await else {
        return;
    };
    let setup = setup(endpoint, "check", 1, 3).await;
    setup.announce(0..1).await;
    let work = tempfile::tempdir().unwrap();
    let pipeline = setup.pipeline(work.path(), &support::schema("check"), "30s");
    let checked = Command::new(support::binary())
        .args(["check", "--pipeline"])
        .arg(&pipeline)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .output()
        .expect("run check");
    let report = String::from_utf8_lossy(&checked.stdout);
    assert!(
        report.contains(&format!(
            "pass  read announced objects (s3:GetObject on s3://{}/raw/000.json)",
            setup.bucket
        )),
        "{report}"
    );
    assert!(report.contains("has no redrive policy"), "{report}");
    assert_eq!(setup.messages_left().await, 1, "the message is still there");
}

/// The object log's connection dies between an object's announcement and its commit
/// (as in a warehouse restart): the first record after the commit fails with
/// "connection closed", and is retried until it holds before the message is deleted,
/// so the object log never misses a committed object.
#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    skip_services,
    ignore = "needs PostgreSQL or the S3/SQS emulator; TRACKTABLE_SKIP_SERVICES is set"
)]
async fn the_object_log_records_every_object_before_its_message_is_deleted() {
    let Some(endpoint) = support::moto_url().await else {
        return;
    };
    let Some(client) = support::postgres().await else {
        return;
    };
    let setup = setup(endpoint, "objlog", 2, 10).await;
    let schema = support::schema("objlog");
    let work = tempfile::tempdir().unwrap();
    let pipeline = setup.pipeline(work.path(), &schema, "30s");
    let log = work.path().join("stderr.log");
    let mut child = support::KillOnDrop(
        Command::new(support::binary())
            .args(["run", "--pipeline"])
            .arg(&pipeline)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start tracktable"),
    );
    let objects = format!("SELECT count(*) FROM \"{schema}\"._tracktable_objects");
    let recorded = |expected: i64| {
        let (client, objects) = (&client, &objects);
        move || async move {
            client
                .query_one(objects.as_str(), &[])
                .await
                .is_ok_and(|row| row.get::<_, i64>(0) == expected)
        }
    };
    setup.announce(0..1).await;
    support::eventually(
        Duration::from_secs(60),
        "the first object is recorded",
        &log,
        recorded(1),
    )
    .await;

    // The second object's batch waits at its bookkeeping insert while the object
    // log's session (idle, its last query on `_tracktable_objects`) is killed.
    let locker = support::lock_loads(&schema).await;
    setup.announce(1..2).await;
    support::eventually(
        Duration::from_secs(60),
        "the second batch waits on the lock",
        &log,
        || async { support::loads_are_waiting(&client, &schema).await },
    )
    .await;
    let killed = support::count(
        &client,
        &format!(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = 'tracktable' AND pid <> pg_backend_pid() AND state = 'idle' \
             AND query ILIKE '%{schema}%_tracktable_objects%') t"
        ),
    )
    .await;
    assert_eq!(killed, 1, "the object log's session was found and killed");
    locker.batch_execute("COMMIT").await.expect("unlock");

    support::eventually(
        Duration::from_secs(60),
        "the second object is recorded",
        &log,
        recorded(2),
    )
    .await;
    support::eventually(
        Duration::from_secs(60),
        "every message is deleted",
        &log,
        || async { setup.messages_left().await == 0 },
    )
    .await;
    support::signal(child.id(), "TERM");
    let status = support::wait_within(&mut child, Duration::from_secs(60), "SIGTERM");
    let stderr = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains("cannot record loaded objects in the object log; retrying"),
        "the record met the dead connection and was retried:\n{stderr}"
    );
    support::drop_schema(&client, &schema).await;
}
