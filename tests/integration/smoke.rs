//! Smoke: both real services are reachable and behave as the later scenarios need.

use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;

use crate::support;

/// Bucket → ObjectCreated notification → queue, with a key that needs URL-encoding.
#[tokio::test]
#[cfg_attr(
    skip_services,
    ignore = "needs PostgreSQL or the S3/SQS emulator; TRACKTABLE_SKIP_SERVICES is set"
)]
async fn moto_delivers_object_created_notifications_to_sqs() {
    let Some(endpoint) = support::moto_url().await else {
        return;
    };
    let aws = support::aws(&endpoint).await;
    let (bucket, queue_url) = aws.announcing_bucket("smoke").await;

    let key = "events/2024 01/hello wörld+1.json";
    let body = "{\"type\":\"track\",\"event\":\"Smoke Tested\"}\n";
    aws.s3
        .put_object()
        .bucket(&bucket)
        .key(key)
        .body(ByteStream::from_static(body.as_bytes()))
        .send()
        .await
        .expect("put object");

    // The queue first gets an s3:TestEvent (sent when notifications are configured),
    // then the ObjectCreated record. Wait for the record with a deadline.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut record = None;
    let mut saw_test_event = false;
    while record.is_none() && Instant::now() < deadline {
        let received = aws
            .sqs
            .receive_message()
            .queue_url(&queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("receive message");
        for message in received.messages.unwrap_or_default() {
            let body: serde_json::Value = serde_json::from_str(message.body().unwrap_or_default())
                .expect("notification is JSON");
            if body.get("Event").and_then(|e| e.as_str()) == Some("s3:TestEvent") {
                saw_test_event = true;
            }
            if let Some(first) = body.get("Records").and_then(|r| r.get(0)) {
                record = Some(first.clone());
            }
            aws.sqs
                .delete_message()
                .queue_url(&queue_url)
                .receipt_handle(message.receipt_handle().unwrap_or_default())
                .send()
                .await
                .expect("delete message");
        }
    }
    let record = record.expect("an ObjectCreated notification within 30 s");
    assert!(
        saw_test_event,
        "moto sends s3:TestEvent when notifications are configured"
    );
    assert!(
        record["eventName"]
            .as_str()
            .unwrap_or_default()
            .starts_with("ObjectCreated:")
    );
    assert_eq!(record["s3"]["bucket"]["name"], bucket.as_str());
    assert_eq!(record["s3"]["object"]["size"], body.len());
    // S3 URL-encodes keys in notifications, spaces as `+`.
    let encoded = record["s3"]["object"]["key"].as_str().expect("key");
    assert_ne!(encoded, key, "keys arrive URL-encoded");
    let decoded: String = form_decode(encoded);
    assert_eq!(decoded, key);

    let fetched = aws
        .s3
        .get_object()
        .bucket(&bucket)
        .key(&decoded)
        .send()
        .await
        .expect("get object");
    let bytes = fetched
        .body
        .collect()
        .await
        .expect("object body")
        .into_bytes();
    assert_eq!(&bytes[..], body.as_bytes());

    aws.s3
        .delete_object()
        .bucket(&bucket)
        .key(key)
        .send()
        .await
        .expect("delete object");
    aws.s3
        .delete_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("delete bucket");
    aws.sqs
        .delete_queue()
        .queue_url(&queue_url)
        .send()
        .await
        .expect("delete queue");
}

/// `application/x-www-form-urlencoded` decoding, as S3 applies to notification keys.
fn form_decode(encoded: &str) -> String {
    let bytes = encoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'+' => out.push(b' '),
            b'%' if index + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[index + 1..index + 3]).expect("ascii");
                out.push(u8::from_str_radix(hex, 16).expect("hex escape"));
                index += 2;
            }
            other => out.push(other),
        }
        index += 1;
    }
    String::from_utf8(out).expect("utf-8 key")
}

/// The PostgreSQL the tests use accepts DDL in its own schema.
#[tokio::test]
#[cfg_attr(
    skip_services,
    ignore = "needs PostgreSQL or the S3/SQS emulator; TRACKTABLE_SKIP_SERVICES is set"
)]
async fn postgres_creates_and_drops_a_schema() {
    let Some(client) = support::postgres().await else {
        return;
    };
    let schema = support::unique("smoke").replace('-', "_");
    client
        .batch_execute(&format!("CREATE SCHEMA \"{schema}\""))
        .await
        .expect("create schema");
    client
        .batch_execute(&format!(
            "CREATE TABLE \"{schema}\".t (id bigint primary key, v text)"
        ))
        .await
        .expect("create table");
    client
        .execute(
            &format!("INSERT INTO \"{schema}\".t VALUES ($1, $2)"),
            &[&7i64, &"seven"],
        )
        .await
        .expect("insert");
    let row = client
        .query_one(
            &format!("SELECT v FROM \"{schema}\".t WHERE id = $1"),
            &[&7i64],
        )
        .await
        .expect("select");
    assert_eq!(row.get::<_, String>(0), "seven");
    client
        .batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .await
        .expect("drop schema");
    let remaining = client
        .query_one(
            "SELECT count(*) FROM information_schema.schemata WHERE schema_name = $1",
            &[&schema],
        )
        .await
        .expect("count schemata");
    assert_eq!(remaining.get::<_, i64>(0), 0);
}
