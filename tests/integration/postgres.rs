//! The PostgreSQL warehouse through the real binary: exactly-once reloads, type
//! conflicts to `_discards`, hostile names, and connections killed mid-run.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support;

fn track(id: &str, event: &str, properties: &str) -> String {
    format!(
        r#"{{"type":"track","event":{event},"messageId":"{id}","receivedAt":"2024-03-01T12:00:00Z","properties":{properties}}}"#
    )
}

/// Runs the pipeline once over `source` with a fresh state directory (so every file
/// is loaded again) and returns stderr.
fn load(work: &Path, source: &Path, schema: &str, run: &str) -> String {
    load_logging(work, source, schema, run, "info")
}

/// [`load`] with `TRACKTABLE_LOG` set to `filter`.
fn load_logging(work: &Path, source: &Path, schema: &str, run: &str, filter: &str) -> String {
    let state = work.join(format!("state-{run}"));
    let pipeline = support::pipeline_file(work, source, &state, schema, "1h");
    let stderr_path = work.join(format!("stderr-{run}.log"));
    let stderr_file = std::fs::File::create(&stderr_path).expect("create stderr log");
    let mut child = Command::new(support::binary())
        .args(["run", "--once", "--pipeline"])
        .arg(&pipeline)
        .env("TRACKTABLE_LOG", filter)
        .stdout(Stdio::null())
        .stderr(stderr_file)
        .spawn()
        .expect("run tracktable");
    let status = support::wait_within(&mut child, Duration::from_secs(120), run);
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    assert!(status.success(), "tracktable failed:\n{stderr}");
    stderr
}

#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    skip_services,
    ignore = "needs PostgreSQL or the S3/SQS emulator; TRACKTABLE_SKIP_SERVICES is set"
)]
async fn loading_twice_keeps_one_row_per_message_id() {
    let Some(client) = support::postgres().await else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("events");
    std::fs::create_dir_all(&source).unwrap();
    let mut lines: Vec<String> = (0..200)
        .map(|i| {
            track(
                &format!("m{i}"),
                "\"Video Played\"",
                &format!("{{\"n\":{i}}}"),
            )
        })
        .collect();
    // Duplicates inside one batch: the same message twice in one file and across files.
    lines.push(track("m7", "\"Video Played\"", "{\"n\":7}"));
    std::fs::write(source.join("a.json"), lines[..120].join("\n")).unwrap();
    std::fs::write(source.join("b.json"), lines[100..].join("\n")).unwrap();
    let schema = support::schema("twice");
    load(work.path(), &source, &schema, "first");
    load(work.path(), &source, &schema, "second");
    let table = format!("\"{schema}\".video_played");
    assert_eq!(
        support::count(&client, &format!("SELECT count(*) FROM {table}")).await,
        200
    );
    assert_eq!(
        support::count(&client, &format!("SELECT count(DISTINCT id) FROM {table}")).await,
        200
    );
    assert_eq!(
        support::count(
            &client,
            &format!("SELECT count(*) FROM \"{schema}\".tracks")
        )
        .await,
        200
    );
    let loaded = support::count(&client, &format!("SELECT sum(rows_loaded)::bigint FROM \"{schema}\"._tracktable_loads WHERE table_name = 'video_played'")).await;
    let skipped = support::count(&client, &format!("SELECT sum(duplicates)::bigint FROM \"{schema}\"._tracktable_loads WHERE table_name = 'video_played'")).await;
    assert_eq!(
        (loaded, skipped),
        (200, 21 + 221),
        "first run: 21 in-batch duplicates; second: all 221 rows"
    );
    support::drop_schema(&client, &schema).await;
}

/// Loads copy optimistically and fall back to looking stored ids up when the primary
/// key refuses one: a batch half of which the table already holds loads only the new
/// half, once, and the discards of the refused attempt are not written twice. The next
/// batch of the same table, all new, loads too.
#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    skip_services,
    ignore = "needs PostgreSQL or the S3/SQS emulator; TRACKTABLE_SKIP_SERVICES is set"
)]
async fn a_batch_overlapping_stored_rows_loads_only_its_new_rows_once() {
    let Some(client) = support::postgres().await else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let dirs: Vec<_> = ["first", "second", "third"]
        .iter()
        .map(|name| work.path().join(name))
        .collect();
    let priced = |range: std::ops::Range<u32>, odd: u32| -> String {
        range
            .map(|i| {
                let price = if i == odd {
                    "\"USD 5\"".to_owned()
                } else {
                    i.to_string()
                };
                track(
                    &format!("o{i}"),
                    "\"Order Completed\"",
                    &format!("{{\"price\":{price}}}"),
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    for (dir, (range, odd)) in dirs
        .iter()
        .zip([(0..100, 1000), (50..150, 120), (150..160, 1000)])
    {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("a.json"), priced(range, odd)).unwrap();
    }
    let schema = support::schema("overlap");
    let filter = "warn,tracktable::warehouse::postgres=debug";
    let first = load_logging(work.path(), &dirs[0], &schema, "first", filter);
    let second = load_logging(work.path(), &dirs[1], &schema, "second", filter);
    let third = load_logging(work.path(), &dirs[2], &schema, "third", filter);
    let fallback = "repeats stored message ids";
    assert!(!first.contains(fallback), "{first}");
    assert!(
        second.contains(fallback),
        "the overlap was not met:\n{second}"
    );
    assert!(!third.contains(fallback), "{third}");

    let table = format!("\"{schema}\".order_completed");
    assert_eq!(
        support::count(&client, &format!("SELECT count(DISTINCT id) FROM {table}")).await,
        160
    );
    assert_eq!(
        support::count(&client, &format!("SELECT count(*) FROM {table}")).await,
        160
    );
    assert_eq!(
        support::count(
            &client,
            &format!("SELECT count(*) FROM {table} WHERE price IS NULL")
        )
        .await,
        1,
        "o120's price does not fit bigint"
    );
    let discards = client
        .query(
            &format!("SELECT message_id, value FROM \"{schema}\"._discards"),
            &[],
        )
        .await
        .unwrap();
    let discards: Vec<(String, String)> = discards.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(discards, [("o120".to_owned(), "USD 5".to_owned())]);
    let loads = client
        .query(
            &format!(
                "SELECT sum(rows_loaded)::bigint, sum(duplicates)::bigint, sum(discards)::bigint \
                 FROM \"{schema}\"._tracktable_loads WHERE table_name = 'order_completed'"
            ),
            &[],
        )
        .await
        .unwrap();
    let loads: Vec<(i64, i64, i64)> = loads
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    // 100, then 50 new beside 50 stored and one discard, then 10 (one row when the
    // three runs fall in the same batch interval, whose id names the batch).
    assert_eq!(loads, [(160, 50, 1)]);
    support::drop_schema(&client, &schema).await;
}

#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    skip_services,
    ignore = "needs PostgreSQL or the S3/SQS emulator; TRACKTABLE_SKIP_SERVICES is set"
)]
async fn tables_follow_segments_schema_and_types_follow_most_values() {
    let Some(client) = support::postgres().await else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("source");
    std::fs::create_dir_all(&source).unwrap();
    // 19 numeric prices and one odd one, in the batch that introduces the column.
    let mut lines: Vec<String> = (0..19)
        .map(|i| {
            track(
                &format!("o{i:02}"),
                "\"Order Completed\"",
                &format!(r#"{{"revenue":{}.5,"name":"n{i}","id":"p{i}"}}"#, 10 + i),
            )
        })
        .collect();
    lines.push(track(
        "o19",
        "\"Order Completed\"",
        r#"{"revenue":"USD 185.85"}"#,
    ));
    lines.extend([
        r#"{"type":"track","event":"Order Completed","messageId":"o20","channel":"web","request_ip":"9.9.9.9","sentAt":"yesterday","receivedAt":"2024-03-01T12:00:00Z","properties":{"revenue":1,"meta":{},"tags":[],"day":"2024-03-01"}}"#.to_owned(),
        r#"{"type":"identify","messageId":"i1","userId":"u1","timestamp":"2024-03-01T12:00:00Z","context":{"traits":{"email":"e@x","name":"Ada"}}}"#.to_owned(),
        r#"{"type":"alias","messageId":"a1","userId":"u1","previousId":"anon","traits":{"email":"e@x"}}"#.to_owned(),
    ]);
    std::fs::write(source.join("a.json"), lines.join("\n")).unwrap();
    let schema = support::schema("segment");
    load(work.path(), &source, &schema, "first");

    let column_types = |table: &'static str| {
        let client = &client;
        let schema = schema.clone();
        async move {
            client
                .query(
                    "SELECT column_name::text, data_type::text FROM information_schema.columns \
                     WHERE table_schema = $1 AND table_name = $2",
                    &[&schema, &table],
                )
                .await
                .unwrap()
                .iter()
                .map(|row| (row.get::<_, String>(0), row.get::<_, String>(1)))
                .collect::<std::collections::BTreeMap<String, String>>()
        }
    };
    let orders = column_types("order_completed").await;
    assert_eq!(orders["revenue"], "double precision", "{orders:?}");
    assert_eq!(orders["sent_at"], "timestamp without time zone");
    assert_eq!(orders["day"], "timestamp without time zone");
    assert_eq!(orders["uuid_ts"], "timestamp without time zone");
    for (column, present) in [
        ("id", true),
        ("name", true),
        ("properties_id", true),
        ("channel", true),
        ("context_ip", true),
        ("message_id", false),
        ("properties_name", false),
        ("meta", false),
        ("tags", false),
    ] {
        assert_eq!(orders.contains_key(column), present, "{column}: {orders:?}");
    }
    let row = client
        .query_one(
            &format!(
                "SELECT channel, context_ip, properties_id, uuid_ts > now() AT TIME ZONE 'UTC' - interval '10 minutes' \
                 FROM \"{schema}\".order_completed WHERE id = 'o20'"
            ),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, Option<String>>(0).as_deref(), Some("web"));
    assert_eq!(row.get::<_, Option<String>>(1).as_deref(), Some("9.9.9.9"));
    assert_eq!(row.get::<_, Option<String>>(2), None);
    assert!(row.get::<_, bool>(3), "uuid_ts is the load time");
    // The minority values went to _discards, naming their rows (a track's common
    // columns are in `tracks` too).
    let discards: Vec<(String, String, String, String)> = client
        .query(
            &format!(
                "SELECT table_name, column_name, message_id, value FROM \"{schema}\"._discards \
                 ORDER BY 1, 2"
            ),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2), row.get(3)))
        .collect();
    let discard = |table: &str, column: &str, id: &str, value: &str| {
        (table.into(), column.into(), id.into(), value.into())
    };
    assert_eq!(
        discards,
        [
            discard("order_completed", "revenue", "o19", "USD 185.85"),
            discard("order_completed", "sent_at", "o20", "yesterday"),
            discard("tracks", "sent_at", "o20", "yesterday"),
        ]
    );
    // users from context.traits; aliases keep their traits.
    let user = client
        .query_one(
            &format!("SELECT email, name, message_id FROM \"{schema}\".users WHERE id = 'u1'"),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            user.get::<_, String>(0),
            user.get::<_, String>(1),
            user.get::<_, String>(2)
        ),
        ("e@x".into(), "Ada".into(), "i1".into())
    );
    assert_eq!(
        support::count(
            &client,
            &format!("SELECT count(*) FROM \"{schema}\".aliases WHERE email = 'e@x' AND id = 'a1'")
        )
        .await,
        1
    );
    support::drop_schema(&client, &schema).await;
}

#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    skip_services,
    ignore = "needs PostgreSQL or the S3/SQS emulator; TRACKTABLE_SKIP_SERVICES is set"
)]
async fn two_pipelines_reading_one_directory_each_load_every_file() {
    let Some(client) = support::postgres().await else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("source");
    std::fs::create_dir_all(&source).unwrap();
    for file in 0..3 {
        let lines: Vec<String> = (0..10)
            .map(|i| track(&format!("f{file}-{i}"), "\"Song Played\"", "{}"))
            .collect();
        std::fs::write(source.join(format!("{file}.json")), lines.join("\n")).unwrap();
    }
    // No state_dir: each pipeline keeps its own under the directory.
    let pipeline = |schema: &str| {
        let path = work.path().join(format!("{schema}.toml"));
        let text = format!(
            "name = \"{schema}\"\n[source]\ntype = \"dir\"\npath = \"{}\"\n\
             [warehouse]\ntype = \"postgres\"\nurl = \"{}\"\nschema = \"{schema}\"\n\
             [batch]\ninterval = \"1h\"\n",
            source.display(),
            support::database_url()
        );
        std::fs::write(&path, text).unwrap();
        path
    };
    let run = |pipeline: &Path, run: &str| {
        let stderr_path = work.path().join(format!("stderr-{run}.log"));
        let mut child = Command::new(support::binary())
            .args(["run", "--once", "--pipeline"])
            .arg(pipeline)
            .env("TRACKTABLE_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .expect("run tracktable");
        let status = support::wait_within(&mut child, Duration::from_secs(120), run);
        let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
        assert!(status.success(), "tracktable failed:\n{stderr}");
        stderr
    };
    let (first, second) = (support::schema("dir_one"), support::schema("dir_two"));
    run(&pipeline(&first), "first");
    let stderr = run(&pipeline(&second), "second");
    assert!(stderr.contains("already_loaded=0"), "{stderr}");
    for schema in [&first, &second] {
        let rows = format!("SELECT count(*) FROM \"{schema}\".song_played");
        assert_eq!(support::count(&client, &rows).await, 30, "{schema}");
    }
    // Each pipeline still remembers its own files.
    let stderr = run(&pipeline(&first), "again");
    assert!(stderr.contains("already_loaded=3"), "{stderr}");
    for schema in [&first, &second] {
        support::drop_schema(&client, schema).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    skip_services,
    ignore = "needs PostgreSQL or the S3/SQS emulator; TRACKTABLE_SKIP_SERVICES is set"
)]
async fn a_type_conflict_loads_null_and_keeps_the_value_in_discards() {
    let Some(client) = support::postgres().await else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let first = work.path().join("first");
    let second = work.path().join("second");
    std::fs::create_dir_all(&first).unwrap();
    std::fs::create_dir_all(&second).unwrap();
    std::fs::write(
        first.join("a.json"),
        track("p1", "\"Product Viewed\"", r#"{"price":5,"sku":"a"}"#),
    )
    .unwrap();
    std::fs::write(
        second.join("b.json"),
        track("p2", "\"Product Viewed\"", r#"{"price":"USD 5","sku":"b"}"#),
    )
    .unwrap();
    let schema = support::schema("conflict");
    load(work.path(), &first, &schema, "first");
    load(work.path(), &second, &schema, "second");

    let rows = client
        .query(
            &format!("SELECT id, price, sku FROM \"{schema}\".product_viewed ORDER BY id"),
            &[],
        )
        .await
        .unwrap();
    let rows: Vec<(String, Option<i64>, String)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        rows,
        [
            ("p1".into(), Some(5), "a".into()),
            ("p2".into(), None, "b".into())
        ]
    );
    let discards = client
        .query(&format!("SELECT table_name, column_name, message_id, value, reason, object, line FROM \"{schema}\"._discards"), &[])
        .await
        .unwrap();
    assert_eq!(discards.len(), 1);
    let discard = &discards[0];
    assert_eq!(discard.get::<_, String>(0), "product_viewed");
    assert_eq!(discard.get::<_, String>(1), "price");
    assert_eq!(discard.get::<_, String>(2), "p2");
    assert_eq!(discard.get::<_, String>(3), "USD 5");
    assert!(discard.get::<_, String>(4).contains("bigint"));
    assert_eq!(
        (discard.get::<_, String>(5), discard.get::<_, i64>(6)),
        ("b.json".into(), 1)
    );
    // Loading the conflicting file again adds no second discard.
    load(work.path(), &second, &schema, "third");
    assert_eq!(
        support::count(
            &client,
            &format!("SELECT count(*) FROM \"{schema}\"._discards")
        )
        .await,
        1
    );
    support::drop_schema(&client, &schema).await;
}

#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    skip_services,
    ignore = "needs PostgreSQL or the S3/SQS emulator; TRACKTABLE_SKIP_SERVICES is set"
)]
async fn hostile_names_create_safe_tables_and_nothing_else() {
    let Some(client) = support::postgres().await else {
        return;
    };
    // A sentinel: a `users` table elsewhere that an injection would try to drop.
    let sentinel = support::schema("sentinel");
    client
        .batch_execute(&format!(
            "CREATE SCHEMA \"{sentinel}\"; CREATE TABLE \"{sentinel}\".users (id int)"
        ))
        .await
        .unwrap();
    let catalogue = "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname IN ('public', 'pg_catalog', 'information_schema')";
    let before = support::count(&client, catalogue).await;

    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("events");
    std::fs::create_dir_all(&source).unwrap();
    let long = "n".repeat(300);
    let events = [
        track(
            "h1",
            &format!("\"\\\"; DROP TABLE {sentinel}.users; --\""),
            r#"{"a":1}"#,
        ),
        track("h2", "\"🎉 Party 🎈\"", r#"{"名前":"x","价格":2}"#),
        track(
            "h3",
            &format!("\"{long}\""),
            &format!(r#"{{"{long}":1,"{long}x":2}}"#),
        ),
        track(
            "h4",
            "\"select\"",
            r#"{"user":1,"from":2,"select":3,"\"; DROP TABLE x; --":4}"#,
        ),
        track("h5", "\"user\"", r#"{"ok":true}"#),
        track("h6", "\"from\"", r#"{"ok":true}"#),
    ];
    std::fs::write(source.join("hostile.json"), events.join("\n")).unwrap();
    let schema = support::schema("hostile");
    load(work.path(), &source, &schema, "only");

    assert_eq!(
        support::count(&client, catalogue).await,
        before,
        "nothing outside the pipeline's schema changed"
    );
    assert_eq!(
        support::count(
            &client,
            &format!("SELECT count(*) FROM \"{sentinel}\".users")
        )
        .await,
        0,
        "sentinel table intact"
    );
    let tables: Vec<String> = client
        .query("SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1", &[&schema])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        tables.len(),
        6 + 3,
        "six event tables plus tracks, _tracktable_loads, _discards: {tables:?}"
    );
    for table in &tables {
        assert!(
            table.len() <= 63
                && table
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "{table}"
        );
    }
    for expected in ["select_", "user_", "from_", "tracks"] {
        assert!(
            tables.contains(&expected.to_owned()),
            "{expected} in {tables:?}"
        );
    }
    let columns: Vec<String> = client
        .query(
            "SELECT column_name::text FROM information_schema.columns WHERE table_schema = $1",
            &[&schema],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for column in &columns {
        assert!(
            column.len() <= 63
                && column
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "{column}"
        );
    }
    for expected in ["user_", "from_", "select_"] {
        assert!(columns.contains(&expected.to_owned()), "{expected}");
    }
    // Every message landed exactly once in tracks.
    assert_eq!(
        support::count(
            &client,
            &format!("SELECT count(*) FROM \"{schema}\".tracks")
        )
        .await,
        6
    );
    support::drop_schema(&client, &schema).await;
    support::drop_schema(&client, &sentinel).await;
}

/// Connections killed while loading: the loader reconnects and retries, and every
/// message is in the warehouse exactly once.
#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    skip_services,
    ignore = "needs PostgreSQL or the S3/SQS emulator; TRACKTABLE_SKIP_SERVICES is set"
)]
async fn killed_connections_are_retried_until_everything_loads() {
    let Some(client) = support::postgres().await else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("events");
    std::fs::create_dir_all(&source).unwrap();
    for file in 0..40 {
        let lines: Vec<String> = (0..1500)
            .map(|i| {
                track(
                    &format!("k{file}-{i}"),
                    "\"Page Scrolled\"",
                    &format!("{{\"depth\":{i},\"file\":{file}}}"),
                )
            })
            .collect();
        std::fs::write(source.join(format!("f{file:02}.json")), lines.join("\n")).unwrap();
    }
    let schema = support::schema("killed");
    let pipeline = support::pipeline_file(
        work.path(),
        &source,
        &work.path().join("state"),
        &schema,
        "100ms",
    );
    let stderr_path = work.path().join("stderr.log");
    let mut child = support::KillOnDrop(
        Command::new(support::binary())
            .args(["run", "--once", "--max-batch-rows", "3000", "--pipeline"])
            .arg(&pipeline)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .expect("start tracktable"),
    );
    // Kill tracktable's sessions (never our own) while they COPY rows, a few times: each
    // kill is like a server restart under that load. Killing every load forever would
    // only prove that nothing can load.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut kills = 0;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the run did not finish within 120 s"
        );
        if kills < 5 {
            // Only this test's sessions: other tests run tracktable at the same time.
            kills += support::count(
                &client,
                &format!(
                    "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                     WHERE application_name = 'tracktable' AND pid <> pg_backend_pid() AND state = 'active' \
                     AND query ILIKE 'COPY \"{schema}\".%FROM STDIN%') t"
                ),
            )
            .await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    assert!(status.success(), "tracktable failed:\n{stderr}");
    assert!(
        kills >= 1,
        "no loader session was caught copying rows, so nothing was tested"
    );
    assert!(
        stderr.contains("retrying"),
        "the killed loads were retried:\n{stderr}"
    );
    eprintln!("terminated {kills} loader sessions");
    let table = format!("\"{schema}\".page_scrolled");
    assert_eq!(
        support::count(&client, &format!("SELECT count(*) FROM {table}")).await,
        60_000
    );
    assert_eq!(
        support::count(&client, &format!("SELECT count(DISTINCT id) FROM {table}")).await,
        60_000
    );
    assert_eq!(
        support::count(
            &client,
            &format!("SELECT count(*) FROM \"{schema}\".tracks")
        )
        .await,
        60_000
    );
    support::drop_schema(&client, &schema).await;
}

/// A load that fails with a configuration error every time (here: a trigger someone
/// put on the table refuses every insert with `insufficient_privilege`) is tried once
/// more, then stops the run with the server's error instead of retrying forever, and
/// acknowledges nothing: once the table is fixed, the same state directory loads
/// everything.
#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    skip_services,
    ignore = "needs PostgreSQL or the S3/SQS emulator; TRACKTABLE_SKIP_SERVICES is set"
)]
async fn a_configuration_error_stops_the_run_and_acknowledges_nothing() {
    let Some(client) = support::postgres().await else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("events");
    std::fs::create_dir_all(&source).unwrap();
    let lines: Vec<String> = (0..50)
        .map(|i| {
            track(
                &format!("e{i}"),
                "\"Cart Viewed\"",
                &format!("{{\"n\":{i}}}"),
            )
        })
        .collect();
    std::fs::write(source.join("a.json"), lines.join("\n")).unwrap();
    let schema = support::schema("permanent");
    client
        .batch_execute(&format!(
            "CREATE SCHEMA \"{schema}\"; CREATE TABLE \"{schema}\".cart_viewed (id text PRIMARY KEY); \
             CREATE FUNCTION \"{schema}\".refuse() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'loading refused' USING ERRCODE = 'insufficient_privilege'; END $$; \
             CREATE TRIGGER refuse BEFORE INSERT ON \"{schema}\".cart_viewed FOR EACH ROW EXECUTE FUNCTION \"{schema}\".refuse()"
        ))
        .await
        .unwrap();
    let state = work.path().join("state");
    let pipeline = support::pipeline_file(work.path(), &source, &state, &schema, "1h");
    let stderr_path = work.path().join("stderr.log");
    let mut child = support::KillOnDrop(
        Command::new(support::binary())
            .args(["run", "--once", "--pipeline"])
            .arg(&pipeline)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .expect("start tracktable"),
    );
    let status = support::wait_within(&mut child, Duration::from_secs(60), "configuration error");
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    assert!(!status.success(), "the run must fail:\n{stderr}");
    assert!(
        stderr.contains("retrying cannot help") && stderr.contains("ERROR 42501: loading refused"),
        "the server's error is reported:\n{stderr}"
    );
    assert_eq!(
        support::count(
            &client,
            &format!("SELECT count(*) FROM \"{schema}\".cart_viewed")
        )
        .await,
        0
    );

    client
        .batch_execute(&format!("DROP TRIGGER refuse ON \"{schema}\".cart_viewed"))
        .await
        .unwrap();
    let mut child = support::KillOnDrop(
        Command::new(support::binary())
            .args(["run", "--once", "--pipeline"])
            .arg(&pipeline)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start tracktable"),
    );
    let status = support::wait_within(&mut child, Duration::from_secs(60), "after the fix");
    assert!(status.success());
    assert_eq!(
        support::count(
            &client,
            &format!("SELECT count(*) FROM \"{schema}\".cart_viewed")
        )
        .await,
        50,
        "nothing was acknowledged by the failed run"
    );
    support::drop_schema(&client, &schema).await;
}

/// `users` and `accounts` hold the newest call's traits per id, whatever order and
/// batches the calls arrive in, and reloading changes nothing.
#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    skip_services,
    ignore = "needs PostgreSQL or the S3/SQS emulator; TRACKTABLE_SKIP_SERVICES is set"
)]
async fn users_and_accounts_keep_the_newest_traits() {
    let Some(client) = support::postgres().await else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let identify = |id: &str, user: &str, at: &str, traits: &str| {
        format!(
            r#"{{"type":"identify","messageId":"{id}","userId":"{user}","timestamp":"{at}","traits":{traits}}}"#
        )
    };
    let group = |id: &str, group: &str, at: &str, traits: &str| {
        format!(
            r#"{{"type":"group","messageId":"{id}","userId":"u1","groupId":"{group}","timestamp":"{at}","traits":{traits}}}"#
        )
    };
    let first = work.path().join("first");
    let second = work.path().join("second");
    std::fs::create_dir_all(&first).unwrap();
    std::fs::create_dir_all(&second).unwrap();
    // Batch 1: u1's newest call is i2; u2 has one call.
    std::fs::write(
        first.join("a.json"),
        [
            identify(
                "i1",
                "u1",
                "2024-01-01T00:00:00Z",
                r#"{"plan":"free","email":"a@x"}"#,
            ),
            identify("i2", "u1", "2024-01-03T00:00:00Z", r#"{"plan":"pro"}"#),
            identify("i3", "u2", "2024-01-01T00:00:00Z", r#"{"plan":"team"}"#),
            group("g1", "acme", "2024-01-01T00:00:00Z", r#"{"seats":5}"#),
        ]
        .join("\n"),
    )
    .unwrap();
    // Batch 2: an older u1 call arrives late (ignored); u2 and acme change.
    std::fs::write(
        second.join("b.json"),
        [
            identify("i4", "u1", "2024-01-02T00:00:00Z", r#"{"plan":"old"}"#),
            identify(
                "i5",
                "u2",
                "2024-02-01T00:00:00Z",
                r#"{"plan":"enterprise","email":"b@x"}"#,
            ),
            group("g2", "acme", "2024-02-01T00:00:00Z", r#"{"seats":50}"#),
        ]
        .join("\n"),
    )
    .unwrap();
    let schema = support::schema("latest");
    load(work.path(), &first, &schema, "first");
    load(work.path(), &second, &schema, "second");
    load(work.path(), &first, &schema, "replay");

    let users: Vec<(String, String, String, Option<String>)> = client
        .query(
            &format!("SELECT id, message_id, plan, email FROM \"{schema}\".users ORDER BY id"),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(
        users,
        [
            ("u1".into(), "i2".into(), "pro".into(), None),
            (
                "u2".into(),
                "i5".into(),
                "enterprise".into(),
                Some("b@x".into())
            ),
        ]
    );
    let accounts: Vec<(String, i64)> = client
        .query(&format!("SELECT id, seats FROM \"{schema}\".accounts"), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(accounts, [("acme".into(), 50)]);
    assert_eq!(
        support::count(
            &client,
            &format!("SELECT count(*) FROM \"{schema}\".identifies")
        )
        .await,
        5,
        "identifies keeps every call"
    );
    support::drop_schema(&client, &schema).await;
}

/// PostgreSQL restarted in the middle of a run (a real `pg_ctl restart` of a server
/// of the test's own, so no other test's sessions die): the loaders reconnect and
/// retry, the run completes, and every message id is stored exactly once.
#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    skip_services,
    ignore = "needs PostgreSQL or the S3/SQS emulator; TRACKTABLE_SKIP_SERVICES is set"
)]
async fn a_server_restart_mid_run_is_retried_and_loads_everything_once() {
    let Some(server) = support::own_server() else {
        return;
    };
    let (client, connection) = tokio_postgres::connect(&server.server.url, tokio_postgres::NoTls)
        .await
        .expect("connect to the throwaway server");
    let connection = tokio::spawn(connection);

    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("events");
    std::fs::create_dir_all(&source).unwrap();
    let (files, per_file) = (60, 1500);
    for file in 0..files {
        let lines: Vec<String> = (0..per_file)
            .map(|i| {
                track(
                    &format!("r{file}-{i}"),
                    "\"Video Played\"",
                    &format!("{{\"position\":{i},\"file\":{file}}}"),
                )
            })
            .collect();
        std::fs::write(source.join(format!("f{file:02}.json")), lines.join("\n")).unwrap();
    }
    let schema = "restarted";
    let pipeline = support::pipeline_file_at(
        &server.server.url,
        work.path(),
        &source,
        &work.path().join("state"),
        schema,
        "100ms",
    );
    let stderr_path = work.path().join("stderr.log");
    // About two files per batch, so batches keep committing while the server restarts.
    let mut child = support::KillOnDrop(
        Command::new(support::binary())
            .args(["run", "--once", "--max-batch-bytes", "400000", "--pipeline"])
            .arg(&pipeline)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .expect("start tracktable"),
    );

    // Restart as soon as the first batch has committed.
    let loads = format!("SELECT count(DISTINCT batch) FROM \"{schema}\"._tracktable_loads");
    let deadline = Instant::now() + Duration::from_secs(60);
    let committed_before = loop {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run finished before the restart; nothing was tested"
        );
        assert!(Instant::now() < deadline, "no batch committed within 60 s");
        if let Ok(row) = client.query_one(&loads, &[]).await {
            let batches: i64 = row.get(0);
            if batches > 0 {
                break batches;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    server.server.restart().expect("restart the server");
    connection.abort();

    let status = support::wait_within(&mut child, Duration::from_secs(120), "restart");
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    assert!(status.success(), "tracktable failed:\n{stderr}");
    assert!(
        stderr.contains("retrying"),
        "the loads the restart broke were retried:\n{stderr}"
    );

    let (client, connection) = tokio_postgres::connect(&server.server.url, tokio_postgres::NoTls)
        .await
        .expect("reconnect after the restart");
    tokio::spawn(connection);
    let committed = support::count(&client, &loads).await;
    assert!(
        committed > committed_before,
        "batches committed after the restart ({committed} in all, {committed_before} before)"
    );
    let expected = i64::from(files * per_file);
    for table in ["video_played", "tracks"] {
        let table = format!("\"{schema}\".{table}");
        assert_eq!(
            support::count(&client, &format!("SELECT count(*) FROM {table}")).await,
            expected,
            "{table}"
        );
        assert_eq!(
            support::count(&client, &format!("SELECT count(DISTINCT id) FROM {table}")).await,
            expected,
            "{table}"
        );
    }
    eprintln!("restarted after {committed_before} of {committed} batches had committed");
}

/// A table whose rows move between a worker's load connections from batch to batch (its
/// size relative to the others changes, so the largest-first lane assignment changes)
/// still sees columns another connection added: a column added in batch 2 on one
/// connection takes batch 3's values on another, none of them discarded.
#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    skip_services,
    ignore = "needs PostgreSQL or the S3/SQS emulator; TRACKTABLE_SKIP_SERVICES is set"
)]
async fn a_column_added_on_one_load_connection_is_known_to_the_others() {
    let Some(client) = support::postgres().await else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("events");
    std::fs::create_dir_all(&source).unwrap();
    // (file, rows of "X Done", rows of "Y Done", whether X rows carry `colour`)
    let files = [("a", 20, 5, false), ("b", 5, 20, true), ("c", 20, 5, true)];
    let mut expected_colours = 0;
    for (file, xs, ys, colour) in files {
        let mut lines = Vec::new();
        for i in 0..xs {
            let properties = if colour {
                expected_colours += 1;
                format!("{{\"size\":{i},\"colour\":\"red\"}}")
            } else {
                format!("{{\"size\":{i}}}")
            };
            lines.push(track(&format!("{file}-x{i}"), "\"X Done\"", &properties));
        }
        for i in 0..ys {
            lines.push(track(&format!("{file}-y{i}"), "\"Y Done\"", "{\"n\":1}"));
        }
        std::fs::write(source.join(format!("{file}.json")), lines.join("\n")).unwrap();
    }
    let schema = support::schema("lanes");
    let pipeline = support::pipeline_file(
        work.path(),
        &source,
        &work.path().join("state"),
        &schema,
        "1h",
    );
    // Three connections: `tracks` on one, the bigger of X and Y on the next, the
    // smaller on the third.
    let mut text = std::fs::read_to_string(&pipeline).unwrap();
    text.push_str("load_connections = 3\n");
    std::fs::write(&pipeline, text).unwrap();
    let stderr_path = work.path().join("stderr.log");
    // One byte per batch: every file is a batch of its own, in name order.
    let mut child = Command::new(support::binary())
        .args(["run", "--once", "--max-batch-bytes", "1", "--pipeline"])
        .arg(&pipeline)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .expect("start tracktable");
    let status = support::wait_within(&mut child, Duration::from_secs(120), "lanes");
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    assert!(status.success(), "tracktable failed:\n{stderr}");
    assert_eq!(
        support::count(
            &client,
            &format!("SELECT count(DISTINCT batch) FROM \"{schema}\"._tracktable_loads")
        )
        .await,
        3,
        "one batch per file"
    );
    assert_eq!(
        support::count(
            &client,
            &format!("SELECT count(*) FROM \"{schema}\"._discards")
        )
        .await,
        0,
        "no value discarded"
    );
    assert_eq!(
        support::count(
            &client,
            &format!("SELECT count(colour) FROM \"{schema}\".x_done")
        )
        .await,
        expected_colours
    );
    support::drop_schema(&client, &schema).await;
}

/// A tracking plan: blocked and unlisted events and unlisted properties end in
/// `_rejections` (with the raw message), the rest loads; the table cap keeps further
/// event tables out (their rows go to `_discards` whole) and the column cap keeps a wide
/// event's extra columns out (their values go to `_discards`).
#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    skip_services,
    ignore = "needs PostgreSQL or the S3/SQS emulator; TRACKTABLE_SKIP_SERVICES is set"
)]
async fn a_tracking_plan_rejects_what_it_refuses_and_caps_tables_and_columns() {
    let Some(client) = support::postgres().await else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("events");
    std::fs::create_dir_all(&source).unwrap();
    // Two files, one batch each (in name order): the first creates tracks,
    // order_completed and wide_event; of the second's three new event tables only one
    // fits under the cap of 4.
    let (mut first, mut second) = (Vec::new(), Vec::new());
    for i in 0..5 {
        first.push(track(
            &format!("oc{i}"),
            "\"Order Completed\"",
            "{\"revenue\":10,\"coupon\":\"X\",\"secret_field\":\"s\"}",
        ));
        first.push(track(&format!("dp{i}"), "\"Debug Ping\"", "{\"n\":1}"));
        first.push(track(&format!("pv{i}"), "\"Page Scrolled\"", "{\"n\":1}"));
        let wide: Vec<String> = (0..30).map(|p| format!("\"p{p:02}\":{p}")).collect();
        first.push(track(
            &format!("we{i}"),
            "\"Wide Event\"",
            &format!("{{{}}}", wide.join(",")),
        ));
        for extra in ["Extra One", "Extra Two", "Extra Three"] {
            second.push(track(
                &format!("{extra}{i}"),
                &format!("\"{extra}\""),
                "{\"n\":1}",
            ));
        }
    }
    std::fs::write(source.join("a.json"), first.join("\n")).unwrap();
    std::fs::write(source.join("b.json"), second.join("\n")).unwrap();

    let schema = support::schema("plan");
    let pipeline = support::pipeline_file(
        work.path(),
        &source,
        &work.path().join("state"),
        &schema,
        "1h",
    );
    let mut text = std::fs::read_to_string(&pipeline).unwrap();
    text.push_str(
        "[plan]\nallow_events = [\"Order *\", \"Extra *\", \"Wide Event\", \"Debug *\"]\n\
         block_events = [\"Debug *\"]\nmax_tables = 4\nmax_columns = 12\n\
         [plan.properties]\n\"Order Completed\" = [\"revenue\", \"coupon\"]\n",
    );
    std::fs::write(&pipeline, text).unwrap();
    let stderr_path = work.path().join("stderr.log");
    let mut child = Command::new(support::binary())
        .args(["run", "--once", "--max-batch-bytes", "1", "--pipeline"])
        .arg(&pipeline)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .expect("start tracktable");
    let status = support::wait_within(&mut child, Duration::from_secs(120), "plan");
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    assert!(status.success(), "tracktable failed:\n{stderr}");

    let rejections =
        |code: &str| format!("SELECT count(*) FROM \"{schema}\"._rejections WHERE code = '{code}'");
    // Debug Ping (blocked) and Page Scrolled (not allowed): 5 each.
    assert_eq!(
        support::count(&client, &rejections("not_in_plan")).await,
        10,
        "{stderr}"
    );
    assert_eq!(
        support::count(
            &client,
            &format!(
                "SELECT count(*) FROM \"{schema}\"._rejections WHERE code = 'not_in_plan' \
                 AND raw LIKE '%Debug Ping%' AND reason LIKE '%blocked%'"
            )
        )
        .await,
        5
    );
    // Order Completed's secret_field: rejected, the order itself loads without it.
    assert_eq!(
        support::count(&client, &rejections("properties_not_in_plan")).await,
        5
    );
    let tracks = support::count(
        &client,
        &format!("SELECT count(*) FROM \"{schema}\".tracks"),
    )
    .await;
    assert_eq!(
        tracks, 25,
        "5 each of the allowed events: Order, 3 Extras, Wide"
    );
    let tables: Vec<String> = support::event_tables(&client, &schema).await;
    assert_eq!(tables.len(), 4, "the table cap holds: {tables:?}\n{stderr}");
    for table in ["tracks", "order_completed", "wide_event"] {
        assert!(tables.contains(&table.to_owned()), "{table}: {tables:?}");
    }
    {
        let columns = support::count(
            &client,
            &format!(
                "SELECT count(*) FROM information_schema.columns WHERE table_schema = '{schema}' \
                 AND table_name = 'order_completed' AND column_name = 'secret_field'"
            ),
        )
        .await;
        assert_eq!(columns, 0, "secret_field never became a column");
    }
    // Every event table kept out by the cap has its rows in _discards, whole.
    let event_tables = [
        "order_completed",
        "extra_one",
        "extra_two",
        "extra_three",
        "wide_event",
    ];
    let refused = event_tables
        .iter()
        .filter(|table| !tables.contains(&table.to_string()))
        .count() as i64;
    assert_eq!(refused, 2, "{tables:?}");
    assert_eq!(
        support::count(
            &client,
            &format!(
                "SELECT count(*) FROM \"{schema}\"._discards WHERE column_name = '*' \
                 AND reason LIKE '%cap of 4 tables%'"
            )
        )
        .await,
        refused * 5
    );
    {
        let columns = support::count(
            &client,
            &format!(
                "SELECT count(*) FROM information_schema.columns WHERE table_schema = '{schema}' \
                 AND table_name = 'wide_event'"
            ),
        )
        .await;
        assert_eq!(columns, 12, "the column cap holds");
        let capped = support::count(
            &client,
            &format!(
                "SELECT count(*) FROM \"{schema}\"._discards WHERE table_name = 'wide_event' \
                 AND reason LIKE '%cap of 12 columns%'"
            ),
        )
        .await;
        // 30 properties and the common columns, 12 columns in all: most of each
        // row's values are kept in _discards.
        assert!(
            capped >= 5 * 20,
            "the wide event's extra values are kept: {capped}"
        );
    }
    support::drop_schema(&client, &schema).await;
}

/// At SERIALIZABLE (the server's `default_transaction_isolation`, set for the loader's
/// sessions through the URL), loads of different tables on parallel connections, each
/// with discards, never conflict: each load reads only its own table, and writes
/// `_discards` and `_tracktable_loads` without reading them (`ON CONFLICT` on their
/// keys, which differ by table). Every load commits at its first attempt and the
/// counts are exact.
#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    skip_services,
    ignore = "needs PostgreSQL or the S3/SQS emulator; TRACKTABLE_SKIP_SERVICES is set"
)]
async fn parallel_loads_with_discards_in_every_table_commit_at_serializable() {
    let Some(client) = support::postgres().await else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("events");
    std::fs::create_dir_all(&source).unwrap();
    for (name, text) in support::discards_in_every_table(3, 8, 20) {
        std::fs::write(source.join(name), text).unwrap();
    }
    let schema = support::schema("serial");
    let url = format!(
        "{}?options=-c%20default_transaction_isolation%3Dserializable",
        support::database_url()
    );
    let pipeline = support::pipeline_file_at(
        &url,
        work.path(),
        &source,
        &work.path().join("state"),
        &schema,
        "1h",
    );
    let mut text = std::fs::read_to_string(&pipeline).unwrap();
    text.push_str("max_bytes = 1\nload_connections = 4\n");
    std::fs::write(&pipeline, text).unwrap();
    let run = |name: &str| {
        let stderr_path = work.path().join(format!("stderr-{name}.log"));
        let mut child = Command::new(support::binary())
            .args(["run", "--once", "--pipeline"])
            .arg(&pipeline)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .expect("start tracktable");
        let status = support::wait_within(&mut child, Duration::from_secs(120), name);
        let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
        assert!(status.success(), "tracktable failed:\n{stderr}");
        assert!(
            !stderr.contains("retrying"),
            "a load was retried: loads of different tables conflicted\n{stderr}"
        );
    };
    // The URL does make a session serializable.
    let (serializable, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connect with the loader's URL");
    tokio::spawn(connection);
    let isolation: String = serializable
        .query_one("SHOW transaction_isolation", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(isolation, "serializable");
    run("first");
    support::assert_discards_in_every_table(&client, &schema, 8, 60).await;
    std::fs::remove_dir_all(work.path().join("state")).unwrap();
    run("replay");
    assert_eq!(
        support::count(
            &client,
            &format!("SELECT count(*) FROM \"{schema}\"._discards")
        )
        .await,
        480
    );
    assert_eq!(
        support::count(
            &client,
            &format!("SELECT sum(discards)::bigint FROM \"{schema}\"._tracktable_loads")
        )
        .await,
        480,
        "a replay keeps and counts no discard twice"
    );
    support::drop_schema(&client, &schema).await;
}

/// A user's views on an event table (and a view on that view, with a grant and a
/// comment) do not stop a varchar column from widening: PostgreSQL refuses
/// `ALTER COLUMN ... TYPE` under a view, so the DDL transaction drops the views on the
/// widened column and recreates them as they were.
#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    skip_services,
    ignore = "needs PostgreSQL or the S3/SQS emulator; TRACKTABLE_SKIP_SERVICES is set"
)]
async fn widening_a_column_keeps_the_views_that_read_it() {
    let Some(client) = support::postgres().await else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("events");
    std::fs::create_dir_all(&source).unwrap();
    std::fs::write(
        source.join("a.json"),
        track("v1", "\"Note Taken\"", r#"{"note":"short","n":1}"#),
    )
    .unwrap();
    let schema = support::schema("views");
    load(work.path(), &source, &schema, "first");
    assert_eq!(note_width(&client, &schema).await, Some(64));
    client
        .batch_execute(&format!(
            "CREATE VIEW \"{schema}\".notes AS SELECT note, n FROM \"{schema}\".note_taken; \
             CREATE VIEW \"{schema}\".long_notes WITH (security_barrier) AS \
               SELECT note FROM \"{schema}\".notes WHERE length(note) > 100; \
             CREATE VIEW \"{schema}\".counts AS SELECT count(n) AS n FROM \"{schema}\".note_taken; \
             GRANT SELECT ON \"{schema}\".long_notes TO PUBLIC; \
             COMMENT ON VIEW \"{schema}\".notes IS 'the notes'"
        ))
        .await
        .unwrap();
    let long = "x".repeat(300);
    std::fs::write(
        source.join("b.json"),
        track(
            "v2",
            "\"Note Taken\"",
            &format!(r#"{{"note":"{long}","n":2}}"#),
        ),
    )
    .unwrap();
    load(work.path(), &source, &schema, "second");
    assert_eq!(
        note_width(&client, &schema).await,
        Some(1024),
        "the column widened"
    );
    let notes: Vec<String> = client
        .query(&format!("SELECT note FROM \"{schema}\".long_notes"), &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(notes, [long], "the dependent view reads the widened column");
    let granted: bool = client
        .query_one(
            &format!("SELECT has_table_privilege('public', '\"{schema}\".long_notes', 'SELECT')"),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(granted, "the grant survives");
    let (comment, options): (Option<String>, Option<Vec<String>>) = client
        .query_one(
            &format!(
                "SELECT obj_description('\"{schema}\".notes'::regclass, 'pg_class'), \
                 (SELECT reloptions FROM pg_class WHERE oid = '\"{schema}\".long_notes'::regclass)"
            ),
            &[],
        )
        .await
        .map(|row| (row.get(0), row.get(1)))
        .unwrap();
    assert_eq!(comment.as_deref(), Some("the notes"));
    assert_eq!(options, Some(vec!["security_barrier=true".to_owned()]));
    assert_eq!(
        support::count(&client, &format!("SELECT n FROM \"{schema}\".counts")).await,
        2,
        "a view on other columns is untouched"
    );
    support::drop_schema(&client, &schema).await;
}

/// The declared width of `note_taken.note` in `schema`.
async fn note_width(client: &tokio_postgres::Client, schema: &str) -> Option<i32> {
    client
        .query_one(
            "SELECT character_maximum_length FROM information_schema.columns \
             WHERE table_schema = $1 AND table_name = 'note_taken' AND column_name = 'note'",
            &[&schema],
        )
        .await
        .unwrap()
        .get(0)
}
