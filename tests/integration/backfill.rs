//! `gen --s3` and `backfill` against moto and the real PostgreSQL.

use std::process::{Command, Stdio};
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;

use crate::support;

fn tracktable(args: &[&str], log: &std::path::Path) -> String {
    let mut child = Command::new(support::binary())
        .args(args)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("log file"))
        .spawn()
        .expect("start tracktable");
    let status = support::wait_within(&mut child, Duration::from_secs(300), args[0]);
    let stderr = std::fs::read_to_string(log).unwrap_or_default();
    assert!(status.success(), "tracktable {args:?} failed:\n{stderr}");
    stderr
}

/// A prefix of 1000 generated objects (uploaded by `gen --s3`) backfills completely;
/// an object outside the prefix is left alone; running the backfill again loads
/// nothing new; a time range in the future selects nothing.
#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    skip_services,
    ignore = "needs PostgreSQL or the S3/SQS emulator; TRACKTABLE_SKIP_SERVICES is set"
)]
async fn backfilling_a_prefix_loads_everything_once() {
    let Some(endpoint) = support::moto_url().await else {
        return;
    };
    let Some(client) = support::postgres().await else {
        return;
    };
    let aws = support::aws(&endpoint).await;
    let bucket = support::unique("backfill");
    aws.s3
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("create bucket");
    aws.s3
        .put_object()
        .bucket(&bucket)
        .key("elsewhere/not-this.json")
        .body(ByteStream::from_static(
            br#"{"type":"track","event":"Outside Prefix","messageId":"outside-1"}"#,
        ))
        .send()
        .await
        .expect("put object");

    let work = tempfile::tempdir().unwrap();
    let url = format!("s3://{bucket}/history/2024");
    let stderr = tracktable(
        &[
            "gen",
            "--s3",
            &url,
            "--events",
            "3000",
            "--per-object",
            "3",
            "--region",
            "us-east-1",
            "--endpoint-url",
            &endpoint,
        ],
        &work.path().join("gen.log"),
    );
    assert!(stderr.contains("1000 objects uploaded"), "{stderr}");

    let schema = support::schema("backfill");
    let source = work.path().join("unused");
    std::fs::create_dir_all(&source).unwrap();
    let pipeline = support::pipeline_file(
        work.path(),
        &source,
        &work.path().join("state"),
        &schema,
        "1s",
    );
    let pipeline = pipeline.to_string_lossy().into_owned();
    let backfill = |log: &str| {
        tracktable(
            &[
                "backfill",
                "--pipeline",
                &pipeline,
                "--bucket",
                &bucket,
                "--prefix",
                "history/",
                "--region",
                "us-east-1",
                "--endpoint-url",
                &endpoint,
                "-w",
                "2",
            ],
            &work.path().join(log),
        )
    };
    let first = backfill("first.log");
    assert!(
        first.contains("1000 objects listed, 0 already loaded, 1000 loaded now"),
        "{first}"
    );
    let messages = format!(
        "SELECT (SELECT count(*) FROM \"{schema}\".tracks) + (SELECT count(*) FROM \"{schema}\".pages) \
         + (SELECT count(*) FROM \"{schema}\".screens) + (SELECT count(*) FROM \"{schema}\".identifies) \
         + (SELECT count(*) FROM \"{schema}\".groups) + (SELECT count(*) FROM \"{schema}\".aliases)"
    );
    assert_eq!(support::count(&client, &messages).await, 3000, "{first}");
    assert_eq!(
        support::count(
            &client,
            &format!("SELECT count(*) FROM \"{schema}\"._tracktable_objects")
        )
        .await,
        1000
    );
    assert_eq!(
        support::count(
            &client,
            &format!(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = '{schema}' \
                 AND table_name = 'outside_prefix'"
            )
        )
        .await,
        0,
        "nothing outside the prefix loads"
    );
    let loads = format!("SELECT count(*) FROM \"{schema}\"._tracktable_loads");
    let loads_after_first = support::count(&client, &loads).await;

    let second = backfill("second.log");
    assert!(
        second.contains("1000 objects listed, 1000 already loaded, 0 loaded now"),
        "{second}"
    );
    assert_eq!(support::count(&client, &loads).await, loads_after_first);
    assert_eq!(support::count(&client, &messages).await, 3000);

    let future = tracktable(
        &[
            "backfill",
            "--pipeline",
            &pipeline,
            "--bucket",
            &bucket,
            "--since",
            "2999-01-01",
            "--region",
            "us-east-1",
            "--endpoint-url",
            &endpoint,
        ],
        &work.path().join("future.log"),
    );
    assert!(future.contains("0 objects listed"), "{future}");
    support::drop_schema(&client, &schema).await;
}
