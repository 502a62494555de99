//! The SQS source end to end: bucket → notification → queue → tracktable → PostgreSQL,
//! against moto and the real PostgreSQL.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{Event, NotificationConfiguration, QueueConfiguration};
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

async fn count(client: &tokio_postgres::Client, sql: &str) -> i64 {
    client
        .query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

/// Every kind of body a real queue carries, in one run: S3 notifications for objects
/// whose keys hold spaces, `+` and unicode (plain and gzip), the `s3:TestEvent` moto
/// sends when notifications are configured, an SNS-wrapped and an EventBridge-form
/// notification, a notification for an object deleted before it could be fetched, and
/// a garbage body. Every message id loads exactly once, the deleted object is one
/// `_rejections` row, and the queue ends holding only the garbage (left for the redrive
/// policy).
#[tokio::test(flavor = "multi_thread")]
async fn notifications_load_every_object_once_and_empty_the_queue() {
    let Some(endpoint) = support::moto_url().await else {
        return;
    };
    let Some(client) = support::postgres().await else {
        return;
    };
    let aws = support::aws(&endpoint).await;
    let bucket = support::unique("sqs");
    let queue_name = support::unique("sqs");
    aws.s3
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("create bucket");
    let queue_url = aws
        .sqs
        .create_queue()
        .queue_name(&queue_name)
        .send()
        .await
        .expect("create queue")
        .queue_url
        .expect("queue url");
    let queue_arn = aws
        .sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("queue attributes")
        .attributes
        .and_then(|map| map.get(&QueueAttributeName::QueueArn).cloned())
        .expect("queue arn");
    aws.s3
        .put_bucket_notification_configuration()
        .bucket(&bucket)
        .notification_configuration(
            NotificationConfiguration::builder()
                .queue_configurations(
                    QueueConfiguration::builder()
                        .queue_arn(&queue_arn)
                        .events(Event::from("s3:ObjectCreated:*"))
                        .build()
                        .expect("queue configuration"),
                )
                .build(),
        )
        .send()
        .await
        .expect("configure notifications");

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
    let pipeline = work.path().join("sqs.toml");
    std::fs::write(
        &pipeline,
        format!(
            "name = \"sqs\"\n\
             [source]\ntype = \"sqs\"\nqueue_url = \"{queue_url}\"\nregion = \"us-east-1\"\n\
             endpoint_url = \"{endpoint}\"\nwait_time = \"1s\"\nvisibility_timeout = \"30s\"\n\
             [warehouse]\ntype = \"postgres\"\nurl = \"{}\"\nschema = \"{schema}\"\n\
             [batch]\ninterval = \"500ms\"\n",
            support::database_url()
        ),
    )
    .unwrap();
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
        count(&client, &format!("SELECT count(*) FROM {table}")).await,
        expected,
        "{stderr}"
    );
    assert_eq!(
        count(
            &client,
            &format!("SELECT count(DISTINCT message_id) FROM {table}")
        )
        .await,
        expected
    );
    let gone = format!("s3://{bucket}/raw/gone.json");
    assert_eq!(
        count(
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
