//! Operating tracktable: `/metrics`, `/health` and `/ready` during a real run, metrics
//! that agree with the warehouse, JSON logs, and no secret in the logs.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support;

/// `name{label="value"} number` lines of one metric: label value → number.
fn samples(exposition: &str, metric: &str, label: &str) -> BTreeMap<String, f64> {
    let prefix = format!("{metric}{{{label}=\"");
    exposition
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(&prefix)?;
            let (value, number) = rest.split_once("\"} ")?;
            Some((value.to_owned(), number.trim().parse().ok()?))
        })
        .collect()
}

/// A run with `--metrics-addr`: `/health` and `/ready` answer, `/metrics` counts rows
/// per table and rejections per reason exactly as the warehouse holds them, SIGTERM
/// exits 0, every log line is JSON, and the password from `password_env` appears in no
/// log line even at the most verbose level.
#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    skip_services,
    ignore = "needs PostgreSQL or the S3/SQS emulator; TRACKTABLE_SKIP_SERVICES is set"
)]
async fn metrics_agree_with_the_warehouse_and_logs_keep_secrets() {
    let Some(client) = support::postgres().await else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("events");
    let generated = Command::new(support::binary())
        .args([
            "gen",
            "--events",
            "6000",
            "--per-object",
            "500",
            "--bad-rate",
            "0.02",
            "--drift-rate",
            "0.05",
            "--out",
        ])
        .arg(&source)
        .output()
        .expect("run gen");
    assert!(generated.status.success(), "{generated:?}");

    let schema = support::schema("metrics");
    let pipeline = support::pipeline_file(
        work.path(),
        &source,
        &work.path().join("state"),
        &schema,
        "500ms",
    );
    let secret = "s3cr3t-Pa55word-that-must-not-leak";
    let text = std::fs::read_to_string(&pipeline).unwrap().replace(
        "[batch]",
        "password_env = \"TRACKTABLE_TEST_PASSWORD\"\n[batch]",
    );
    std::fs::write(&pipeline, text).unwrap();
    let port = support::free_port();
    let log = work.path().join("stderr.log");
    let mut child = support::KillOnDrop(
        Command::new(support::binary())
            // One object per batch, so type drift in later batches meets columns the
            // first batches created, and values go to _discards.
            .args([
                "run",
                "--log-format",
                "json",
                "--max-batch-bytes",
                "1",
                "--metrics-addr",
            ])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--pipeline")
            .arg(&pipeline)
            .env("TRACKTABLE_TEST_PASSWORD", secret)
            .env("TRACKTABLE_LOG", "trace")
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
            "not every object was acknowledged within 120 s"
        );
        if let Some((200, body)) = support::http_get(port, "/metrics")
            && support::metric_value(&body, "tracktable_objects_acknowledged_total") == Some(12.0)
        {
            break body;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(support::http_get(port, "/health").map(|r| r.0), Some(200));
    let ready = support::http_get(port, "/ready").expect("/ready answers");
    assert_eq!(ready.0, 200, "{}", ready.1);
    assert!(
        ready.1.contains("warehouse: ok") && ready.1.contains("source: ok"),
        "{}",
        ready.1
    );
    assert_eq!(support::http_get(port, "/nothing").map(|r| r.0), Some(404));

    // Rows per table, as counted, are the rows in each event table.
    let rows = samples(&exposition, "tracktable_rows_loaded_total", "table");
    assert!(rows.contains_key("tracks"), "{exposition}");
    for (table, counted) in &rows {
        if table == "users" || table == "accounts" {
            continue; // upserts: a counted row may replace a stored one
        }
        let stored: i64 = client
            .query_one(
                &format!("SELECT count(*) FROM \"{schema}\".\"{table}\""),
                &[],
            )
            .await
            .unwrap_or_else(|e| panic!("{table}: {e}"))
            .get(0);
        assert_eq!(*counted as i64, stored, "rows of {table}");
    }
    // Rejections per reason, as counted, are the rows in _rejections.
    let rejected = samples(&exposition, "tracktable_rejections_total", "reason");
    let stored: BTreeMap<String, f64> = client
        .query(
            &format!("SELECT code, count(*) FROM \"{schema}\"._rejections GROUP BY code"),
            &[],
        )
        .await
        .expect("rejections by code")
        .iter()
        .map(|row| (row.get::<_, String>(0), row.get::<_, i64>(1) as f64))
        .collect();
    assert!(!stored.is_empty());
    assert_eq!(rejected, stored);
    // Discards per reason, as counted, are the rows in _discards.
    let discarded = samples(&exposition, "tracktable_discards_total", "reason");
    let stored_discards: BTreeMap<String, f64> = client
        .query(
            &format!(
                "SELECT CASE WHEN reason LIKE 'value does not fit%' THEN 'type_mismatch' \
                 WHEN reason LIKE 'value is %' THEN 'too_long' ELSE 'other' END, count(*) \
                 FROM \"{schema}\"._discards GROUP BY 1"
            ),
            &[],
        )
        .await
        .expect("discards by reason")
        .iter()
        .map(|row| (row.get::<_, String>(0), row.get::<_, i64>(1) as f64))
        .collect();
    assert!(!stored_discards.is_empty(), "the drift produced discards");
    assert_eq!(discarded, stored_discards);
    assert_eq!(
        support::metric_value(&exposition, "tracktable_events_total"),
        Some(6000.0 - stored.values().sum::<f64>())
    );
    // Each file's freshness, from its modification time, is observed once.
    assert_eq!(
        support::metric_value(&exposition, "tracktable_freshness_seconds_count"),
        Some(12.0),
        "{exposition}"
    );

    // SIGTERM: graceful, exit 0.
    support::signal(child.id(), "TERM");
    let status = support::wait_within(&mut child, Duration::from_secs(30), "SIGTERM");
    assert!(status.success(), "exit after SIGTERM: {status}");

    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(logs.lines().count() > 10, "{logs}");
    for line in logs.lines() {
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_ok(),
            "not a JSON log line: {line}"
        );
    }
    assert!(!logs.contains(secret), "the password leaked into the logs");
    assert!(
        logs.lines().any(|line| line
            .contains("freshness, from an object written to its rows committed: p50 ")
            && line.contains("over 12 objects")),
        "the summary gives the freshness:\n{logs}"
    );
    support::drop_schema(&client, &schema).await;
}
