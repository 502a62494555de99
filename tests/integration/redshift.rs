//! The Redshift path without a cluster: rows staged as gzip CSV in moto's S3, Redshift
//! SQL run by the emulating executor on the real PostgreSQL (which performs each `COPY
//! ... FROM 's3://...'` by reading the staged objects), and every statement sent parsed
//! with sqlparser's Redshift grammar. The PostgreSQL scenarios again: reload
//! idempotency, type conflicts, hostile names, new columns mid-stream, newest traits;
//! plus CSV escaping of hostile strings, NUL characters, clean-up of staged objects
//! and golden SQL for one fixed load.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use sqlparser::dialect::RedshiftSqlDialect;
use sqlparser::parser::Parser;

use crate::support;

/// The role every test pipeline names for COPY: the one the emulated cluster may use.
const IAM_ROLE: &str = tracktable_testkit::redshift::IAM_ROLE;

fn track(id: &str, event: &str, properties: &str) -> String {
    format!(
        r#"{{"type":"track","event":{event},"messageId":"{id}","receivedAt":"2024-03-01T12:00:00Z","properties":{properties}}}"#
    )
}

/// One test's staging bucket, schema and statement log.
struct Redshift {
    endpoint: String,
    s3: aws_sdk_s3::Client,
    bucket: String,
    schema: String,
    log: PathBuf,
    work: tempfile::TempDir,
    /// Extra lines for `[warehouse.staging]`.
    staging_options: String,
    /// Extra lines for `[warehouse]`.
    warehouse_options: String,
    /// How COPY reads the bucket: the `[warehouse.staging]` line(s).
    copy_credentials: String,
    /// The warehouse URL (default: the test database's, as its superuser).
    url: String,
    /// `[warehouse.staging] region` (default: the bucket's, us-east-1).
    staging_region: String,
}

impl Redshift {
    /// `None` outside CI when moto or PostgreSQL is missing.
    async fn new(name: &str) -> Option<(Redshift, tokio_postgres::Client)> {
        let client = support::postgres().await?;
        let endpoint = support::moto_url().await?;
        let aws = support::aws(&endpoint).await;
        let bucket = support::unique(&format!("rs-{name}")).replace('_', "-");
        aws.s3
            .create_bucket()
            .bucket(&bucket)
            .send()
            .await
            .expect("create the staging bucket");
        let work = tempfile::tempdir().expect("tempdir");
        let log = work.path().join("statements.sql");
        Some((
            Redshift {
                endpoint,
                s3: aws.s3,
                bucket,
                schema: support::schema(&format!("rs_{name}")),
                log,
                work,
                staging_options: String::new(),
                warehouse_options: String::new(),
                copy_credentials: format!("iam_role = \"{IAM_ROLE}\"\n"),
                url: support::database_url(),
                staging_region: "us-east-1".into(),
            },
            client,
        ))
    }

    /// Runs the pipeline once over `source` into the Redshift path, in this process,
    /// with PostgreSQL standing in for the cluster.
    fn load(&self, source: &Path, run: &str, extra: &str) -> tracktable::run::RunSummary {
        match self.try_load(source, run, extra) {
            Ok(summary) => summary,
            Err(error) => panic!("tracktable failed: {error}"),
        }
    }

    /// Writes the pipeline file of run `run` over `source`; returns its path.
    fn pipeline(&self, source: &Path, run: &str, extra: &str) -> PathBuf {
        let state = self.work.path().join(format!("state-{run}"));
        let pipeline = self.work.path().join(format!("{run}.toml"));
        let text = format!(
            "name = \"{schema}\"\n\
             [source]\ntype = \"dir\"\npath = \"{source}\"\nstate_dir = \"{state}\"\npoll_interval = \"200ms\"\n\
             [warehouse]\ntype = \"redshift\"\nurl = \"{url}\"\nschema = \"{schema}\"\nsslmode = \"auto\"\n{warehouse}\
             [warehouse.staging]\nbucket = \"{bucket}\"\nprefix = \"staging/\"\nregion = \"{region}\"\nendpoint_url = \"{endpoint}\"\n\
             {credentials}{staging}\
             [batch]\ninterval = \"1h\"\n{extra}",
            schema = self.schema,
            source = source.display(),
            state = state.display(),
            url = self.url,
            warehouse = self.warehouse_options,
            bucket = self.bucket,
            region = self.staging_region,
            endpoint = self.endpoint,
            staging = self.staging_options,
            credentials = self.copy_credentials,
        );
        std::fs::write(&pipeline, text).expect("write pipeline file");
        pipeline
    }

    /// `check` of run `run`'s pipeline (over an empty source), in this process through
    /// the emulator; each line as the binary prints it.
    async fn check(&self, run: &str) -> (bool, String) {
        let source = self.dir::<&str>(&format!("{run}-source"), &[]);
        let pipeline = self.pipeline(&source, run, "");
        let checks = tracktable_testkit::redshift::check(&pipeline, Some(&self.log))
            .await
            .expect("a Redshift pipeline");
        let report = tracktable::admin::report(&checks);
        (checks.iter().all(|check| check.fix.is_none()), report)
    }

    /// [`Redshift::load`], returning the run's failure.
    fn try_load(
        &self,
        source: &Path,
        run: &str,
        extra: &str,
    ) -> Result<tracktable::run::RunSummary, String> {
        let pipeline = self.pipeline(source, run, extra);
        let log = self.log.clone();
        // The run starts its own runtime, so it cannot run on this test's.
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = done.send(tracktable_testkit::redshift::run_once(
                &pipeline,
                1,
                Some(&log),
            ));
        });
        match finished.recv_timeout(Duration::from_secs(120)) {
            Ok(result) => result,
            Err(error) => panic!("run {run} did not finish within 120 s: {error}"),
        }
    }

    /// Runs `tracktable COMMAND --pipeline` on the pipeline file of run `run`; returns
    /// (success, stdout).
    fn command(&self, command: &str, run: &str) -> (bool, String) {
        let output = Command::new(support::binary())
            .args([command, "--pipeline"])
            .arg(self.work.path().join(format!("{run}.toml")))
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .output()
            .expect("run tracktable");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    }

    fn dir<F: AsRef<str>>(&self, name: &str, files: &[(F, String)]) -> PathBuf {
        let dir = self.work.path().join(name);
        std::fs::create_dir_all(&dir).expect("create source dir");
        for (file, text) in files {
            std::fs::write(dir.join(file.as_ref()), text).expect("write source file");
        }
        dir
    }

    /// Keys left in the staging bucket.
    async fn staged(&self) -> Vec<String> {
        let listed = self
            .s3
            .list_objects_v2()
            .bucket(&self.bucket)
            .send()
            .await
            .expect("list the staging bucket");
        listed
            .contents()
            .iter()
            .filter_map(|object| object.key().map(str::to_owned))
            .collect()
    }

    /// Every statement sent, each parsed with the Redshift grammar.
    fn statements_parse(&self) -> Vec<String> {
        let text = std::fs::read_to_string(&self.log).expect("read the statement log");
        let statements: Vec<String> = text.lines().map(str::to_owned).collect();
        assert!(!statements.is_empty(), "no statement was logged");
        for statement in &statements {
            if let Err(error) =
                Parser::parse_sql(&RedshiftSqlDialect {}, &keys_as_credentials(statement))
            {
                panic!("not Redshift SQL ({error}):\n{statement}");
            }
        }
        statements
    }

    async fn finish(self, client: &tokio_postgres::Client) {
        assert_eq!(
            self.staged().await,
            Vec::<String>::new(),
            "staged objects are removed after commit"
        );
        self.statements_parse();
        support::drop_schema(client, &self.schema).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    skip_services,
    ignore = "needs PostgreSQL or the S3/SQS emulator; TRACKTABLE_SKIP_SERVICES is set"
)]
async fn the_merge_looks_back_only_as_far_as_configured() {
    // A message stored on March 1st, sent again (a client's retry) four days later.
    let retried = |id: &str| {
        track(id, "\"Video Played\"", "{}").replace("2024-03-01T12:00:00Z", "2024-03-05T12:00:00Z")
    };
    for (lookback, rows) in [("1h", 2), ("0s", 1), ("7days", 1)] {
        let Some((mut redshift, client)) = Redshift::new("lookback").await else {
            return;
        };
        redshift.warehouse_options = format!("merge_lookback = \"{lookback}\"\n");
        let first = redshift.dir(
            "first",
            &[("a.json", track("m1", "\"Video Played\"", "{}"))],
        );
        let later = redshift.dir("later", &[("b.json", retried("m1"))]);
        redshift.load(&first, "first", "");
        redshift.load(&later, "later", "");
        let table = format!("\"{}\".video_played", redshift.schema);
        assert_eq!(
            support::count(&client, &format!("SELECT count(*) FROM {table}")).await,
            rows,
            "merge_lookback = {lookback}"
        );
        // A replay of the same object always finds its rows, whatever the look-back.
        redshift.load(&later, "replay", "");
        assert_eq!(
            support::count(&client, &format!("SELECT count(*) FROM {table}")).await,
            rows,
            "replayed, merge_lookback = {lookback}"
        );
        redshift.finish(&client).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    skip_services,
    ignore = "needs PostgreSQL or the S3/SQS emulator; TRACKTABLE_SKIP_SERVICES is set"
)]
async fn a_view_that_blocks_a_widening_keeps_the_width_and_loading_goes_on() {
    let Some((redshift, client)) = Redshift::new("view").await else {
        return;
    };
    let first = redshift.dir(
        "first",
        &[(
            "a.json",
            track("v1", "\"Note Taken\"", r#"{"note":"short"}"#),
        )],
    );
    redshift.load(&first, "first", "");
    let schema = &redshift.schema;
    client
        .batch_execute(&format!(
            "CREATE VIEW \"{schema}\".notes AS SELECT id, note FROM \"{schema}\".note_taken"
        ))
        .await
        .expect("create the view");
    let long = "x".repeat(300);
    let second = redshift.dir(
        "second",
        &[(
            "b.json",
            [
                track("v2", "\"Note Taken\"", &format!(r#"{{"note":"{long}"}}"#)),
                track("v3", "\"Note Taken\"", &format!(r#"{{"note":"{long}y"}}"#)),
                track("v4", "\"Note Taken\"", r#"{"note":"fits"}"#),
            ]
            .join("\n"),
        )],
    );
    redshift.load(&second, "second", "");
    // Every row loaded; the view is still there and still reads the column.
    assert_eq!(
        support::count(&client, &format!("SELECT count(*) FROM \"{schema}\".notes")).await,
        4
    );
    let width = support::count(
        &client,
        &format!(
            "SELECT character_maximum_length::bigint FROM information_schema.columns \
             WHERE table_schema = '{schema}' AND table_name = 'note_taken' AND column_name = 'note'"
        ),
    )
    .await;
    assert_eq!(width, 64, "the column keeps its width");
    let kept = support::count(
        &client,
        &format!(
            "SELECT count(*) FROM \"{schema}\"._discards WHERE table_name = 'note_taken' \
             AND column_name = 'note' AND length(value) >= 300"
        ),
    )
    .await;
    assert_eq!(kept, 2, "the longer values are kept in _discards");
    // The blocked widening was tried once in the run, not once per load of the column.
    let log = std::fs::read_to_string(&redshift.log).unwrap_or_default();
    let tries = log
        .lines()
        .filter(|line| line.contains("ALTER TABLE") && line.contains("\"note\" TYPE"))
        .count();
    assert_eq!(tries, 1, "{log}");
    client
        .batch_execute(&format!("DROP VIEW \"{schema}\".notes"))
        .await
        .expect("drop the view");
    redshift.finish(&client).await;
}

#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    skip_services,
    ignore = "needs PostgreSQL or the S3/SQS emulator; TRACKTABLE_SKIP_SERVICES is set"
)]
async fn reloading_keeps_one_row_per_message_id() {
    let Some((redshift, client)) = Redshift::new("twice").await else {
        return;
    };
    let mut lines: Vec<String> = (0..200)
        .map(|i| {
            track(
                &format!("m{i}"),
                "\"Video Played\"",
                &format!("{{\"n\":{i}}}"),
            )
        })
        .collect();
    lines.push(track("m7", "\"Video Played\"", "{\"n\":7}"));
    let source = redshift.dir(
        "events",
        &[
            ("a.json", lines[..120].join("\n")),
            ("b.json", lines[100..].join("\n")),
        ],
    );
    redshift.load(&source, "first", "");
    redshift.load(&source, "second", "");
    let schema = &redshift.schema;
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
    let (ok, report) = redshift.command("schema", "first");
    assert!(ok && report.contains("video_played — 200 rows"), "{report}");
    let (_, checks) = redshift.command("check", "first");
    assert!(
        checks.contains("pass  write, read and delete under s3://"),
        "{checks}"
    );
    // The test database's user is a superuser: a pass, with the advice to load as a
    // dedicated user.
    assert!(
        checks.contains("warn  loader user") && checks.contains("is a superuser"),
        "{checks}"
    );
    redshift.finish(&client).await;
}

#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    skip_services,
    ignore = "needs PostgreSQL or the S3/SQS emulator; TRACKTABLE_SKIP_SERVICES is set"
)]
async fn a_type_conflict_loads_null_and_keeps_the_value_in_discards() {
    let Some((redshift, client)) = Redshift::new("conflict").await else {
        return;
    };
    let first = redshift.dir(
        "first",
        &[(
            "a.json",
            track("p1", "\"Product Viewed\"", r#"{"price":5,"sku":"a"}"#),
        )],
    );
    let second = redshift.dir(
        "second",
        &[(
            "b.json",
            track("p2", "\"Product Viewed\"", r#"{"price":"USD 5","sku":"b"}"#),
        )],
    );
    redshift.load(&first, "first", "");
    redshift.load(&second, "second", "");
    let schema = &redshift.schema;
    let rows = client
        .query(
            &format!(
                "SELECT id::text, price, sku::text FROM \"{schema}\".product_viewed ORDER BY id"
            ),
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
        .query(
            &format!("SELECT table_name::text, column_name::text, message_id::text, value::text, reason::text, object::text, line FROM \"{schema}\"._discards"),
            &[],
        )
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
    redshift.load(&second, "third", "");
    assert_eq!(
        support::count(
            &client,
            &format!("SELECT count(*) FROM \"{schema}\"._discards")
        )
        .await,
        1,
        "a reload adds no second discard"
    );
    redshift.finish(&client).await;
}

#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    skip_services,
    ignore = "needs PostgreSQL or the S3/SQS emulator; TRACKTABLE_SKIP_SERVICES is set"
)]
async fn hostile_names_create_safe_tables_and_nothing_else() {
    let Some((redshift, client)) = Redshift::new("hostile").await else {
        return;
    };
    let sentinel = support::schema("rs_sentinel");
    client
        .batch_execute(&format!(
            "CREATE SCHEMA \"{sentinel}\"; CREATE TABLE \"{sentinel}\".users (id int)"
        ))
        .await
        .unwrap();
    let catalogue = "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname IN ('public', 'pg_catalog', 'information_schema')";
    let before = support::count(&client, catalogue).await;
    let long = "n".repeat(300);
    let events = [
        track(
            "h1",
            &format!("\"\\\"; DROP TABLE {sentinel}.users; --\""),
            r#"{"a":1}"#,
        ),
        track("h2", "\"🎉 Party 🎈\"", r#"{"名前":"x","价格":2}"#),
        track("h3", &format!("\"{long}\""), &format!(r#"{{"{long}":1}}"#)),
        track(
            "h4",
            "\"select\"",
            r#"{"user":"u","from":"f","select":"s","it's":"q"}"#,
        ),
    ];
    let source = redshift.dir("events", &[("a.json", events.join("\n"))]);
    redshift.load(&source, "first", "");
    assert_eq!(
        support::count(&client, catalogue).await,
        before,
        "nothing outside the schema changed"
    );
    assert_eq!(
        support::count(
            &client,
            &format!("SELECT count(*) FROM \"{sentinel}\".users")
        )
        .await,
        0,
        "the sentinel table is still there"
    );
    let schema = &redshift.schema;
    let tables: Vec<String> = client
        .query(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1",
            &[schema],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(
        tables.len(),
        4 + 3 + 1,
        "four event tables, tracks, bookkeeping: {tables:?}"
    );
    assert!(tables.iter().all(|t| t.len() <= 127), "{tables:?}");
    assert!(tables.contains(&"select_".to_owned()), "{tables:?}");
    let columns: Vec<String> = client
        .query(
            "SELECT column_name::text FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'select_' ORDER BY 1",
            &[schema],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    for word in ["from_", "select_", "user_"] {
        assert!(columns.contains(&word.to_owned()), "{word} in {columns:?}");
    }
    let quote = columns
        .iter()
        .find(|column| column.starts_with("it"))
        .expect("a column for it's");
    let stored: String = client
        .query_one(
            &format!("SELECT \"{quote}\"::text FROM \"{schema}\".select_"),
            &[],
        )
        .await
        .map(|row| row.get(0))
        .expect("read the quoted property");
    assert_eq!(stored, "q");
    client
        .batch_execute(&format!("DROP SCHEMA \"{sentinel}\" CASCADE"))
        .await
        .unwrap();
    redshift.finish(&client).await;
}

#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    skip_services,
    ignore = "needs PostgreSQL or the S3/SQS emulator; TRACKTABLE_SKIP_SERVICES is set"
)]
async fn new_columns_mid_stream_and_the_newest_traits_win() {
    let Some((redshift, client)) = Redshift::new("grow").await else {
        return;
    };
    let identify = |id: &str, user: &str, at: &str, traits: &str| {
        format!(
            r#"{{"type":"identify","messageId":"{id}","userId":"{user}","timestamp":"{at}","receivedAt":"{at}","traits":{traits}}}"#
        )
    };
    let first = redshift.dir(
        "first",
        &[(
            "a.json",
            [
                track("c1", "\"Signed Up\"", r#"{"plan":"free"}"#),
                identify(
                    "i1",
                    "u1",
                    "2024-03-01T10:00:00Z",
                    r#"{"plan":"free","name":"Ann"}"#,
                ),
                identify(
                    "i2",
                    "u1",
                    "2024-03-01T11:00:00Z",
                    r#"{"plan":"pro","name":"Ann"}"#,
                ),
            ]
            .join("\n"),
        )],
    );
    let second = redshift.dir(
        "second",
        &[(
            "b.json",
            [
                track("c2", "\"Signed Up\"", r#"{"plan":"pro","referrer":"a very long referrer text that needs a wider column than the first batch had, since it goes on and on for more than sixty-four bytes"}"#),
                // Older than what is stored: must not replace it.
                identify("i0", "u1", "2024-03-01T09:00:00Z", r#"{"plan":"trial"}"#),
            ]
            .join("\n"),
        )],
    );
    redshift.load(&first, "first", "");
    redshift.load(&second, "second", "");
    let schema = &redshift.schema;
    let rows: Vec<(String, Option<String>)> = client
        .query(
            &format!("SELECT id::text, referrer::text FROM \"{schema}\".signed_up ORDER BY 1"),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        rows[0],
        ("c1".into(), None),
        "earlier rows hold NULL in the new column"
    );
    assert!(rows[1].1.as_deref().is_some_and(|r| r.len() > 64));
    let user: (String, String) = client
        .query_one(
            &format!("SELECT plan::text, message_id::text FROM \"{schema}\".users WHERE id = 'u1'"),
            &[],
        )
        .await
        .map(|row| (row.get(0), row.get(1)))
        .unwrap();
    assert_eq!(user, ("pro".into(), "i2".into()));
    redshift.finish(&client).await;
}

/// Strings that break naive CSV: quotes, commas, newlines, backslashes, multibyte
/// text, the NULL marker itself, empty strings.
fn hostile_text() -> impl Strategy<Value = String> {
    let pieces = prop_oneof![
        Just("\"".to_owned()),
        Just(",".to_owned()),
        Just("\n".to_owned()),
        Just("\r\n".to_owned()),
        Just("\\".to_owned()),
        Just("\\N".to_owned()),
        Just("'".to_owned()),
        Just("é中🎉".to_owned()),
        Just(" ".to_owned()),
        "[a-z]{0,3}",
    ];
    proptest::collection::vec(pieces, 0..8).prop_map(|pieces| pieces.concat())
}

#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    skip_services,
    ignore = "needs PostgreSQL or the S3/SQS emulator; TRACKTABLE_SKIP_SERVICES is set"
)]
async fn csv_escaping_survives_hostile_strings_and_nul_is_discarded() {
    let Some((redshift, client)) = Redshift::new("csv").await else {
        return;
    };
    let mut runner = TestRunner::deterministic();
    let strings: Vec<String> = (0..300)
        .map(|_| {
            hostile_text()
                .new_tree(&mut runner)
                .expect("generate a string")
                .current()
        })
        .chain(["".to_owned(), "\\N".to_owned(), "\"\\N\"".to_owned()])
        .collect();
    let mut lines: Vec<String> = strings
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let properties = serde_json::json!({ "text": text }).to_string();
            track(&format!("s{i}"), "\"Text Sent\"", &properties)
        })
        .collect();
    lines.push(track("nul", "\"Text Sent\"", r#"{"text":"a\u0000b"}"#));
    let source = redshift.dir("events", &[("a.json", lines.join("\n"))]);
    redshift.load(&source, "first", "");
    let schema = &redshift.schema;
    for (i, expected) in strings.iter().enumerate() {
        let stored: Option<String> = client
            .query_one(
                &format!("SELECT text::text FROM \"{schema}\".text_sent WHERE id = $1"),
                &[&format!("s{i}")],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(
            stored.as_deref(),
            Some(expected.as_str()),
            "string {i} {expected:?}"
        );
    }
    let nul: Option<String> = client
        .query_one(
            &format!("SELECT text::text FROM \"{schema}\".text_sent WHERE id = 'nul'"),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(nul, None, "the row loads, without the value");
    let kept: (String, String) = client
        .query_one(&format!("SELECT value::text, reason::text FROM \"{schema}\"._discards WHERE message_id = 'nul'"), &[])
        .await
        .map(|row| (row.get(0), row.get(1)))
        .unwrap();
    assert_eq!(kept.0, "a\\u0000b");
    assert!(kept.1.contains("NUL"), "{}", kept.1);
    redshift.finish(&client).await;
}

/// `statement` with an access key pair (`ACCESS_KEY_ID '..' SECRET_ACCESS_KEY '..'
/// [SESSION_TOKEN '..']`, which Redshift takes but sqlparser's Redshift grammar does
/// not know) written as Redshift's equivalent `CREDENTIALS '..'` string, which it does,
/// so the rest of the COPY is still checked.
fn keys_as_credentials(statement: &str) -> String {
    let Some(start) = statement.find(" ACCESS_KEY_ID '") else {
        return statement.to_owned();
    };
    let mut end = start;
    for option in [
        " ACCESS_KEY_ID '",
        " SECRET_ACCESS_KEY '",
        " SESSION_TOKEN '",
    ] {
        if statement[end..].starts_with(option) {
            let value = end + option.len();
            end = statement[value..]
                .find('\'')
                .map_or(statement.len(), |quote| value + quote + 1);
        }
    }
    format!(
        "{} CREDENTIALS 'aws_access_key_id=..;aws_secret_access_key=..'{}",
        &statement[..start],
        &statement[end..]
    )
}

/// The SQL of one fixed load, reviewed like code. `UPDATE_GOLDEN=1` rewrites it.
#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    skip_services,
    ignore = "needs PostgreSQL or the S3/SQS emulator; TRACKTABLE_SKIP_SERVICES is set"
)]
async fn golden_sql_of_one_load() {
    let Some((redshift, client)) = Redshift::new("golden").await else {
        return;
    };
    let source = redshift.dir(
        "events",
        &[(
            "a.json",
            [
                track(
                    "g1",
                    "\"Order Completed\"",
                    r#"{"total":12.5,"currency":"EUR"}"#,
                ),
                track(
                    "g2",
                    "\"Order Completed\"",
                    r#"{"total":"lots","currency":"US\u0000D"}"#,
                ),
            ]
            .join("\n"),
        )],
    );
    redshift.load(&source, "first", "load_connections = 1\n");
    let statements = redshift.statements_parse();
    let (run, batch) = run_and_batch(&statements).expect("a staged COPY in the log");
    let normalised: String = statements
        .iter()
        .map(|statement| {
            let mut line = statement
                .replace(&redshift.schema, "SCHEMA")
                .replace(&redshift.bucket, "BUCKET");
            line = line.replace(&run, "RUN").replace(&batch, "BATCH");
            line + "\n"
        })
        .collect();
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/redshift_load.sql");
    if std::env::var("UPDATE_GOLDEN").is_ok() {
        std::fs::write(&golden, &normalised).expect("write the golden file");
    }
    let expected = std::fs::read_to_string(&golden).unwrap_or_default();
    assert_eq!(
        normalised, expected,
        "the Redshift SQL changed: review it, then rerun with UPDATE_GOLDEN=1"
    );
    redshift.finish(&client).await;
}

/// How many transactions the statement log shows committed.
fn commits(statements: &[String]) -> usize {
    statements
        .iter()
        .filter(|s| s.as_str() == "COMMIT;")
        .count()
}

/// The staging run id and the batch id (wall-clock based), from the first staged
/// path `staging/SCHEMA/TABLE/RUN-bBATCH-N-rows/`, to normalise.
fn run_and_batch(statements: &[String]) -> Option<(String, String)> {
    statements.iter().find_map(|statement| {
        let start = statement.find("/staging/")? + "/staging/".len();
        let path = &statement[start..];
        let mut parts = path.split('/').nth(2)?.split('-');
        let run = parts.next()?.to_owned();
        let batch = parts.next()?.strip_prefix('b')?.to_owned();
        Some((run, batch))
    })
}

#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    skip_services,
    ignore = "needs PostgreSQL or the S3/SQS emulator; TRACKTABLE_SKIP_SERVICES is set"
)]
async fn a_large_load_is_split_into_parts_under_a_manifest_and_long_values_are_kept_aside() {
    let Some((mut redshift, client)) = Redshift::new("parts").await else {
        return;
    };
    redshift.staging_options = "keep = true\npart_bytes = 1048576\n".into();
    let filler = "x".repeat(400);
    let mut lines: Vec<String> = (0..4000)
        .map(|i| {
            track(
                &format!("r{i}"),
                "\"Page Scrolled\"",
                &format!(r#"{{"depth":{i},"note":"{filler}"}}"#),
            )
        })
        .collect();
    // Longer than Redshift's widest varchar: kept in _discards (cut to fit, with the
    // length in the reason and the object and line to find it whole).
    let huge = "é".repeat(40_000);
    lines.push(track(
        "huge",
        "\"Page Scrolled\"",
        &format!(r#"{{"depth":1,"note":"{huge}"}}"#),
    ));
    let source = redshift.dir("events", &[("a.json", lines.join("\n"))]);
    redshift.load(&source, "first", "[limits]\nmax_message_bytes = 200000\n");
    let schema = &redshift.schema;
    assert_eq!(
        support::count(
            &client,
            &format!("SELECT count(*) FROM \"{schema}\".page_scrolled")
        )
        .await,
        4001
    );
    let staged = redshift.staged().await;
    let table_keys: Vec<&String> = staged
        .iter()
        .filter(|key| key.contains("/page_scrolled/") && key.contains("-rows/"))
        .collect();
    assert!(
        table_keys.iter().any(|key| key.ends_with("manifest.json"))
            && table_keys
                .iter()
                .filter(|key| key.ends_with(".csv.gz"))
                .count()
                >= 2,
        "several parts and a manifest, kept: {table_keys:?}"
    );
    let statements = redshift.statements_parse();
    assert!(
        statements.iter().any(|s| s.starts_with("COPY")
            && s.contains("manifest.json' IAM_ROLE")
            && s.contains(" MANIFEST ")),
        "a COPY from the manifest"
    );
    let (length, reason, line): (i32, String, i64) = client
        .query_one(
            &format!("SELECT octet_length(value), reason::text, line FROM \"{schema}\"._discards WHERE message_id = 'huge'"),
            &[],
        )
        .await
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .expect("the long value in _discards");
    assert!(length <= 65535 && length > 65000, "cut to fit: {length}");
    assert!(reason.contains("80000 bytes"), "{reason}");
    assert_eq!(line, 4001);
    for key in staged {
        redshift
            .s3
            .delete_object()
            .bucket(&redshift.bucket)
            .key(key)
            .send()
            .await
            .expect("empty the bucket");
    }
    redshift.finish(&client).await;
}

/// A COPY the cluster refuses for its data (here a domain's CHECK the planner cannot
/// see: the catalogue shows the domain's base type): the emulator fails it as Redshift
/// does, `XX000` and a row in its `stl_load_errors` naming the staged file, the line
/// and the column; the loader traces that line to its row (past a value whose line
/// break makes the CSV one line longer), keeps the row in `_discards` whole with the
/// cluster's reason, loads the rest and finishes.
#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    skip_services,
    ignore = "needs PostgreSQL or the S3/SQS emulator; TRACKTABLE_SKIP_SERVICES is set"
)]
async fn a_copy_data_error_keeps_the_refused_rows_in_discards_and_loads_the_rest() {
    let Some((redshift, client)) = Redshift::new("copyerr").await else {
        return;
    };
    let schema = &redshift.schema;
    client
        .batch_execute(&format!(
            "CREATE SCHEMA \"{schema}\"; \
             CREATE DOMAIN \"{schema}\".small_total AS double precision CONSTRAINT small_total_below_1000 CHECK (VALUE < 1000); \
             CREATE TABLE \"{schema}\".order_completed (id varchar(1024) NOT NULL PRIMARY KEY, \
               total \"{schema}\".small_total)"
        ))
        .await
        .unwrap();
    let orders = [
        ("o1", r#"{"total":5}"#),
        ("o2", r#"{"total":12.5,"note":"two\nlines"}"#),
        ("o3", r#"{"total":5000}"#),
        (
            "o4",
            r#"{"total":7,"note":"a \"quoted\"\nand\nthree lines"}"#,
        ),
        ("o5", r#"{"total":99999}"#),
        ("o6", r#"{"total":1}"#),
    ];
    let lines: Vec<String> = orders
        .iter()
        .map(|(id, properties)| track(id, "\"Order Completed\"", properties))
        .collect();
    let source = redshift.dir("events", &[("a.json", lines.join("\n"))]);
    // One connection: `tracks` and `order_completed` share the batch's transaction, and
    // the refused COPY rolls `tracks` back too; it loads again with the rest.
    redshift.load(&source, "first", "load_connections = 1\n");

    let loaded: Vec<String> = client
        .query(
            &format!("SELECT id::text FROM \"{schema}\".order_completed ORDER BY 1"),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(loaded, ["o1", "o2", "o4", "o6"]);
    let note: String = client
        .query_one(
            &format!("SELECT note::text FROM \"{schema}\".order_completed WHERE id = 'o4'"),
            &[],
        )
        .await
        .map(|row| row.get(0))
        .unwrap();
    assert_eq!(note, "a \"quoted\"\nand\nthree lines");
    assert_eq!(
        support::count(
            &client,
            &format!("SELECT count(*) FROM \"{schema}\".tracks")
        )
        .await,
        6
    );
    let discards: Vec<(String, String, String, String, i64)> = client
        .query(
            &format!(
                "SELECT column_name::text, message_id::text, reason::text, object::text, line \
                 FROM \"{schema}\"._discards ORDER BY message_id"
            ),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect();
    let found: Vec<(&str, &str, &str, i64)> = discards
        .iter()
        .map(|(column, id, _, object, line)| (column.as_str(), id.as_str(), object.as_str(), *line))
        .collect();
    assert_eq!(found, [("*", "o3", "a.json", 3), ("*", "o5", "a.json", 5)]);
    for (_, _, reason, _, _) in &discards {
        assert!(
            reason.starts_with("the warehouse refused the row: column total: value for domain ")
                && reason.ends_with("(load error 1216)"),
            "the cluster's reason: {reason}"
        );
    }
    // The emulated system table holds what Redshift's would: one row per refused
    // COPY, naming the staged part, the line and the column, its reason cut to 100
    // characters.
    let stl: Vec<(String, i64, String, String)> = client
        .query(
            "SELECT trim(filename), line_number, trim(colname), trim(raw_field_value) FROM public.stl_load_errors \
             WHERE filename LIKE $1 ORDER BY query",
            &[&format!("s3://{}/%", redshift.bucket)],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(stl.len(), 2, "{stl:?}");
    assert!(
        stl.iter()
            .all(|(file, _, column, _)| file.ends_with(".csv.gz") && column == "total"),
        "{stl:?}"
    );
    let values: Vec<&str> = stl.iter().map(|(_, _, _, value)| value.as_str()).collect();
    // As the loader wrote them: `total` is a double precision column.
    assert_eq!(values, ["5000.0", "99999.0"], "the raw field values");
    // o3 is the fourth physical line of the first staged file: o2's value holds a line
    // break.
    assert_eq!(stl[0].1, 4, "{stl:?}");
    let statements = redshift.statements_parse();
    assert!(
        statements
            .iter()
            .any(|statement| statement
                .contains("FROM stl_load_errors WHERE query = pg_last_copy_id()")),
        "the loader read the load errors"
    );
    redshift.load(&source, "replay", "");
    assert_eq!(
        support::count(
            &client,
            &format!("SELECT count(*) FROM \"{schema}\"._discards")
        )
        .await,
        2,
        "a replay keeps no discard twice"
    );
    redshift.finish(&client).await;
}

/// `access_keys_from_aws_chain`: COPY presents the staging client's keys (the AWS
/// default chain's in production, the emulator's here), session token included, with
/// the bucket's region; the statement log shows neither the secret nor the token.
#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    skip_services,
    ignore = "needs PostgreSQL or the S3/SQS emulator; TRACKTABLE_SKIP_SERVICES is set"
)]
async fn copy_presents_the_chain_keys_with_their_session_token_and_the_region() {
    let Some((mut redshift, client)) = Redshift::new("chain").await else {
        return;
    };
    redshift.copy_credentials = "access_keys_from_aws_chain = true\n".into();
    let source = redshift.dir(
        "events",
        &[(
            "a.json",
            [
                track("c1", "\"Signed Up\"", r#"{"plan":"pro"}"#),
                track("c2", "\"Signed Up\"", r#"{"plan":"free"}"#),
            ]
            .join("\n"),
        )],
    );
    redshift.load(&source, "first", "");
    let schema = &redshift.schema;
    assert_eq!(
        support::count(
            &client,
            &format!("SELECT count(*) FROM \"{schema}\".signed_up")
        )
        .await,
        2
    );
    let statements = redshift.statements_parse();
    let copies: Vec<&String> = statements
        .iter()
        .filter(|statement| statement.starts_with("COPY "))
        .collect();
    assert!(!copies.is_empty(), "no COPY logged");
    for copy in copies {
        assert!(
            copy.contains(&format!(
                " ACCESS_KEY_ID '{key}' SECRET_ACCESS_KEY '***' SESSION_TOKEN '***' REGION 'us-east-1' ",
                key = tracktable_testkit::redshift::ACCESS_KEY_ID
            )),
            "{copy}"
        );
        assert!(!copy.contains("IAM_ROLE"), "{copy}");
    }
    let log = std::fs::read_to_string(&redshift.log).expect("read the statement log");
    assert!(
        !log.contains(tracktable_testkit::redshift::SECRET_ACCESS_KEY)
            && !log.contains(tracktable_testkit::redshift::SESSION_TOKEN),
        "a secret reached the statement log"
    );
    redshift.finish(&client).await;
}

/// `iam_role = "default"` is Redshift's keyword, unquoted: the cluster's default role.
#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    skip_services,
    ignore = "needs PostgreSQL or the S3/SQS emulator; TRACKTABLE_SKIP_SERVICES is set"
)]
async fn the_default_iam_role_is_the_keyword() {
    let Some((mut redshift, client)) = Redshift::new("defrole").await else {
        return;
    };
    redshift.copy_credentials = "iam_role = \"default\"\n".into();
    let source = redshift.dir(
        "events",
        &[("a.json", track("d1", "\"Signed Up\"", r#"{"plan":"pro"}"#))],
    );
    redshift.load(&source, "first", "");
    let statements = redshift.statements_parse();
    let copy = statements
        .iter()
        .find(|statement| statement.starts_with("COPY "))
        .expect("a COPY logged");
    assert!(
        copy.contains(" IAM_ROLE default REGION 'us-east-1' "),
        "{copy}"
    );
    redshift.finish(&client).await;
}

/// Redshift runs every transaction serializable, and fails one of two concurrent
/// transactions that each read a table the other writes (error 1023); the emulator
/// runs its sessions serializable too. Loads of different tables on parallel
/// connections, each with discards, must therefore never read `_discards` (or the
/// load record) in the transaction that writes it: every load commits at its first
/// attempt and every count is exact.
#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    skip_services,
    ignore = "needs PostgreSQL or the S3/SQS emulator; TRACKTABLE_SKIP_SERVICES is set"
)]
async fn parallel_loads_with_discards_in_every_table_commit_at_serializable() {
    let Some((redshift, client)) = Redshift::new("serial").await else {
        return;
    };
    let files = support::discards_in_every_table(3, 8, 20);
    let source = redshift.dir("events", &files);
    let summary = redshift.load(&source, "first", "max_bytes = 1\nload_connections = 4\n");
    assert_eq!(
        summary.stats.warehouse_retries, 0,
        "a load was retried: loads of different tables conflicted"
    );
    let schema = &redshift.schema;
    support::assert_discards_in_every_table(&client, schema, 8, 60).await;
    assert_eq!(summary.stats.discards, 480);
    // Loaded again: no discard is kept or counted twice.
    let again = redshift.load(&source, "replay", "max_bytes = 1\nload_connections = 4\n");
    assert_eq!(again.stats.warehouse_retries, 0);
    assert_eq!(again.stats.discards, 0);
    assert_eq!(
        support::count(
            &client,
            &format!("SELECT count(*) FROM \"{schema}\"._discards")
        )
        .await,
        480
    );
    redshift.finish(&client).await;
}

/// The lines of a `check` report, without the fixes.
fn check_lines(report: &str) -> Vec<&str> {
    report
        .lines()
        .filter(|line| !line.starts_with("      fix: "))
        .collect()
}

/// `check` walks a whole load's path through the emulator: the staging prefix, the
/// connection and privileges, then a gzip CSV test object staged by the loader's own
/// writer, `COPY`ed with the loader's options into a temporary table, read back equal
/// to what was written (quotes, a line break, a backslash, `\N` as text, an empty
/// string, NULL, timestamps), and cleaned up: the table dropped, the object deleted.
/// With the chain's keys, COPY presents them with their session token.
#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    skip_services,
    ignore = "needs PostgreSQL or the S3/SQS emulator; TRACKTABLE_SKIP_SERVICES is set"
)]
async fn check_walks_a_whole_copy_round_trip() {
    let Some((mut redshift, client)) = Redshift::new("check").await else {
        return;
    };
    let (ok, report) = redshift.check("role").await;
    let bucket = &redshift.bucket;
    assert!(ok, "{report}");
    let lines = check_lines(&report);
    let round_trip = lines
        .iter()
        .position(|line| line.starts_with("pass  stage a gzip CSV test object"))
        .expect("the round trip was walked");
    assert_eq!(
        lines[round_trip..],
        [
            format!("pass  stage a gzip CSV test object under s3://{bucket}/staging/").as_str(),
            "pass  create temporary table _tracktable_check",
            format!(
                "pass  COPY the test object into the temporary table as a load does (IAM_ROLE {IAM_ROLE}, REGION us-east-1)"
            )
            .as_str(),
            "pass  read the copied rows back as written",
            "pass  drop temporary table _tracktable_check",
            lines.last().copied().unwrap_or_default(),
        ],
        "{report}"
    );
    assert!(
        lines[lines.len() - 1].starts_with(&format!(
            "pass  delete the staged test object s3://{bucket}/staging/{}/_tracktable_check/",
            redshift.schema
        )),
        "{report}"
    );
    assert!(
        lines[..round_trip]
            .iter()
            .any(|line| line.starts_with("pass  write, read and delete under s3://"))
            && lines[..round_trip].contains(&"pass  connect to the warehouse"),
        "{report}"
    );

    redshift.copy_credentials = "access_keys_from_aws_chain = true\n".into();
    let (ok, report) = redshift.check("chain").await;
    assert!(
        ok && report.contains(&format!(
            "pass  COPY the test object into the temporary table as a load does (ACCESS_KEY_ID {} with SESSION_TOKEN, REGION us-east-1)",
            tracktable_testkit::redshift::ACCESS_KEY_ID
        )),
        "{report}"
    );
    let statements = redshift.statements_parse();
    assert!(
        statements.iter().any(|statement| statement
            .starts_with("COPY \"_tracktable_check\" (\"id\", \"text\", \"at\") FROM 's3://")),
        "{statements:?}"
    );
    // The temporary table went with its session; the object was deleted.
    redshift.finish(&client).await;
}

/// A role the cluster may not use fails `check` at the COPY step, as it would fail
/// every load, with the fix naming the role: attach it, trust Redshift, let it read
/// the prefix. The steps after it still clean up.
#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    skip_services,
    ignore = "needs PostgreSQL or the S3/SQS emulator; TRACKTABLE_SKIP_SERVICES is set"
)]
async fn check_fails_at_copy_naming_a_role_the_cluster_may_not_use() {
    let Some((mut redshift, client)) = Redshift::new("badrole").await else {
        return;
    };
    let role = "arn:aws:iam::000000000000:role/not-attached";
    redshift.copy_credentials = format!("iam_role = \"{role}\"\n");
    let (ok, report) = redshift.check("role").await;
    assert!(!ok, "{report}");
    let failed: Vec<&str> = report
        .lines()
        .filter(|line| line.starts_with("FAIL  "))
        .collect();
    assert_eq!(
        failed,
        [format!(
            "FAIL  COPY the test object into the temporary table as a load does (IAM_ROLE {role}, REGION us-east-1)"
        )],
        "{report}"
    );
    assert!(
        report.contains(&format!("Not authorized to get credentials of role {role}"))
            && report.contains(&format!("the cluster may not use IAM role {role}"))
            && report.contains(&format!("--add-iam-roles {role}"))
            && report.contains("redshift.amazonaws.com to call sts:AssumeRole")
            && !report.contains("read the copied rows back")
            && report.contains("pass  drop temporary table _tracktable_check")
            && report.contains("pass  delete the staged test object"),
        "{report}"
    );
    redshift.finish(&client).await;
}

/// `[warehouse.staging] region` other than the bucket's fails `check` at the COPY step
/// with S3's redirect, and the fix names the key and the bucket's own region; a run
/// stops on it as a configuration error instead of retrying.
#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    skip_services,
    ignore = "needs PostgreSQL or the S3/SQS emulator; TRACKTABLE_SKIP_SERVICES is set"
)]
async fn check_fails_at_copy_when_the_bucket_is_in_another_region() {
    let Some((mut redshift, client)) = Redshift::new("region").await else {
        return;
    };
    redshift.staging_region = "eu-west-1".into();
    let (ok, report) = redshift.check("region").await;
    assert!(!ok, "{report}");
    let failed: Vec<&str> = report
        .lines()
        .filter(|line| line.starts_with("FAIL  "))
        .collect();
    assert_eq!(
        failed,
        [format!(
            "FAIL  COPY the test object into the temporary table as a load does (IAM_ROLE {IAM_ROLE}, REGION eu-west-1)"
        )],
        "{report}"
    );
    assert!(
        report.contains("PermanentRedirect")
            && report.contains(&format!(
                "bucket {} is not in region eu-west-1: set `[warehouse.staging] region` to the bucket's region (region = \"us-east-1\")",
                redshift.bucket
            ))
            && report.contains("pass  delete the staged test object"),
        "{report}"
    );
    assert_eq!(redshift.staged().await, Vec::<String>::new(), "{report}");
    let source = redshift.dir(
        "events",
        &[("a.json", track("r1", "\"Signed Up\"", r#"{"plan":"pro"}"#))],
    );
    let error = redshift
        .try_load(&source, "run", "")
        .expect_err("a wrong region stops the run");
    assert!(error.contains("PermanentRedirect"), "{error}");
    // A run stopped part way may leave a load's staged parts (a lifecycle rule sweeps
    // them), so the bucket is not looked at again.
    redshift.statements_parse();
    support::drop_schema(&client, &redshift.schema).await;
}

/// The binary's `check` sends the statements to the warehouse as written: the
/// PostgreSQL standing in here cannot run Redshift's COPY, so the COPY step fails, and
/// the binary still prints every step, drops the table, deletes the staged object and
/// exits non-zero.
#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    skip_services,
    ignore = "needs PostgreSQL or the S3/SQS emulator; TRACKTABLE_SKIP_SERVICES is set"
)]
async fn the_binarys_check_reports_each_step_and_cleans_up_after_a_failed_copy() {
    let Some((redshift, client)) = Redshift::new("clicheck").await else {
        return;
    };
    let source = redshift.dir::<&str>("cli-source", &[]);
    redshift.pipeline(&source, "cli", "");
    let (ok, report) = redshift.command("check", "cli");
    assert!(!ok, "{report}");
    let lines = check_lines(&report);
    let steps: Vec<&str> = lines
        .iter()
        .skip_while(|line| !line.contains("stage a gzip CSV test object"))
        .map(|line| line.split_once("  ").map_or(*line, |(status, _)| status))
        .collect();
    assert_eq!(steps, ["pass", "pass", "FAIL", "pass", "pass"], "{report}");
    assert!(
        report.contains("FAIL  COPY the test object into the temporary table"),
        "{report}"
    );
    assert_eq!(redshift.staged().await, Vec::<String>::new(), "{report}");
    support::drop_schema(&client, &redshift.schema).await;
}

/// A batch commits once per load connection, not once per table: each connection's
/// tables of a batch share one transaction. Ten batches of nine tables over two
/// connections commit twenty times, and every merge's delete looks back only as far as
/// `merge_lookback`.
#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    skip_services,
    ignore = "needs PostgreSQL or the S3/SQS emulator; TRACKTABLE_SKIP_SERVICES is set"
)]
async fn a_batch_commits_once_per_connection_and_every_merge_is_bounded() {
    let Some((redshift, client)) = Redshift::new("commits").await else {
        return;
    };
    let files = support::discards_in_every_table(10, 8, 3);
    let source = redshift.dir("events", &files);
    let summary = redshift.load(&source, "first", "max_bytes = 1\nload_connections = 2\n");
    support::assert_discards_in_every_table(&client, &redshift.schema, 8, 30).await;
    assert_eq!(summary.stats.warehouse_retries, 0);

    let statements = redshift.statements_parse();
    // Each table batch stages its rows under `.../RUN-bBATCH-N-rows/`.
    let mut batches =
        std::collections::BTreeMap::<String, std::collections::BTreeSet<String>>::new();
    for statement in statements.iter().filter(|s| s.starts_with("COPY")) {
        let Some(start) = statement.find("/staging/") else {
            continue;
        };
        let mut path = statement[start + "/staging/".len()..].split('/');
        let (Some(_), Some(table), Some(load)) = (path.next(), path.next(), path.next()) else {
            continue;
        };
        if load.ends_with("-rows") {
            let batch = load.split('-').nth(1).unwrap_or_default().to_owned();
            batches.entry(batch).or_default().insert(table.to_owned());
        }
    }
    assert_eq!(batches.len(), 10, "one batch per file: {batches:?}");
    assert!(
        batches.values().all(|tables| tables.len() == 9),
        "{batches:?}"
    );
    let commits = commits(&statements);
    assert_eq!(
        commits,
        2 * batches.len(),
        "commits per batch = load connections"
    );

    let deletes: Vec<&String> = statements
        .iter()
        .filter(|s| s.starts_with("DELETE FROM") && s.contains("USING \"_tracktable_stage\""))
        .collect();
    assert_eq!(deletes.len(), 90, "one merge per table batch");
    for delete in deletes {
        assert!(
            delete.contains("\"received_at\" >= '2024-02-27 12:00:00.000000'::timestamp"),
            "not bounded by the 3-day look-back: {delete}"
        );
    }
    redshift.finish(&client).await;
}

/// The table cap inside a shared transaction: the tables it keeps out send their rows
/// to `_discards` whole in the same transaction as the tables it lets in, and the batch
/// still commits once.
#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    skip_services,
    ignore = "needs PostgreSQL or the S3/SQS emulator; TRACKTABLE_SKIP_SERVICES is set"
)]
async fn tables_the_cap_keeps_out_go_to_discards_in_the_shared_transaction() {
    let Some((redshift, client)) = Redshift::new("cap").await else {
        return;
    };
    let lines: Vec<String> = ["A", "B", "C", "D"]
        .iter()
        .flat_map(|event| {
            (0..2).map(move |i| {
                track(
                    &format!("{event}{i}"),
                    &format!("\"{event} Done\""),
                    "{\"n\":1}",
                )
            })
        })
        .collect();
    let source = redshift.dir("events", &[("a.json", lines.join("\n"))]);
    let summary = redshift.load(
        &source,
        "first",
        "load_connections = 1\n[plan]\nmax_tables = 3\n",
    );
    assert_eq!(summary.stats.warehouse_retries, 0);
    let schema = &redshift.schema;
    let tables: Vec<String> = support::event_tables(&client, schema).await;
    assert_eq!(tables.len(), 3, "the cap holds: {tables:?}");
    assert!(tables.contains(&"tracks".to_owned()), "{tables:?}");
    let tracks = format!("SELECT count(*) FROM \"{schema}\".tracks");
    assert_eq!(support::count(&client, &tracks).await, 8);
    for event in ["a_done", "b_done", "c_done", "d_done"] {
        let kept = format!(
            "SELECT count(*) FROM \"{schema}\"._discards WHERE table_name = '{event}' AND column_name = '*'"
        );
        let discarded = support::count(&client, &kept).await;
        if tables.contains(&event.to_owned()) {
            let rows = format!("SELECT count(*) FROM \"{schema}\".\"{event}\"");
            assert_eq!(support::count(&client, &rows).await, 2, "{event}");
            assert_eq!(discarded, 0, "{event}");
        } else {
            assert_eq!(discarded, 2, "{event}'s rows are kept whole");
        }
    }
    let statements = redshift.statements_parse();
    let commits = commits(&statements);
    assert_eq!(commits, 1, "one batch, one connection, one commit");
    redshift.finish(&client).await;
}

/// `auth = "iam"`: each connection signs in as the temporary user the Redshift API
/// returns for the URL's user (moto's `GetClusterCredentials` answers `IAM:<user>`, and
/// the test PostgreSQL trusts loopback, so any password is accepted for an existing
/// role). The URL's user itself has no role here: a connection made as it, or with
/// `IAMA:`, fails. `check` reports the credentials; a cluster the API does not know
/// stops the run as a configuration error that names the permission to grant.
#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    skip_services,
    ignore = "needs PostgreSQL or the S3/SQS emulator; TRACKTABLE_SKIP_SERVICES is set"
)]
async fn iam_authentication_connects_as_the_temporary_user() {
    let Some((mut redshift, client)) = Redshift::new("iam").await else {
        return;
    };
    let aws = support::aws(&redshift.endpoint).await;
    let cluster = support::unique("tt-iam");
    aws.redshift
        .create_cluster()
        .cluster_identifier(&cluster)
        .node_type("ra3.xlplus")
        .master_username("admin")
        .master_user_password("Password1")
        .send()
        .await
        .expect("create the cluster in moto");
    let user = support::unique("tt_iam").replace('-', "_");
    let temporary = format!("IAM:{user}");
    let schema = redshift.schema.clone();
    client
        .batch_execute(&format!(
            "CREATE ROLE \"{temporary}\" LOGIN; CREATE SCHEMA \"{schema}\" AUTHORIZATION \"{temporary}\""
        ))
        .await
        .expect("create the temporary user's role");
    redshift.url = support::database_url_as(&user);
    let api = |cluster: &str| {
        format!(
            "auth = \"iam\"\ncluster_identifier = \"{cluster}\"\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\n",
            redshift.endpoint
        )
    };
    redshift.warehouse_options = api(&cluster);
    let lines: Vec<String> = (0..20)
        .map(|i| track(&format!("i{i}"), "\"Signed In\"", &format!("{{\"n\":{i}}}")))
        .collect();
    let source = redshift.dir("events", &[("a.json", lines.join("\n"))]);
    redshift.load(&source, "first", "");
    assert_eq!(
        support::count(
            &client,
            &format!("SELECT count(*) FROM \"{schema}\".signed_in")
        )
        .await,
        20
    );
    // What the loader created belongs to the user it connected as.
    let owners = client
        .query(
            "SELECT DISTINCT tableowner::text FROM pg_tables WHERE schemaname = $1",
            &[&schema],
        )
        .await
        .expect("read table owners");
    let owners: Vec<String> = owners.iter().map(|row| row.get(0)).collect();
    assert_eq!(owners, vec![temporary.clone()]);

    // The whole COPY round trip, signed in as the temporary user.
    let (ok, checks) = redshift.check("checked").await;
    assert!(
        ok && checks.contains("pass  get temporary warehouse credentials")
            && checks.contains(&format!("loader user {temporary}"))
            && checks.contains("pass  read the copied rows back as written"),
        "{checks}"
    );

    redshift.warehouse_options = api("tt-no-such-cluster");
    let error = redshift
        .try_load(&source, "missing", "")
        .expect_err("a cluster the API does not know stops the run");
    assert!(
        error.contains("ClusterNotFound") && error.contains("redshift:GetClusterCredentials"),
        "{error}"
    );
    let (ok, checks) = redshift.command("check", "missing");
    assert!(
        !ok && checks.contains("FAIL  get temporary warehouse credentials")
            && checks.contains(&format!("dbuser:tt-no-such-cluster/{user}")),
        "{checks}"
    );

    redshift.finish(&client).await;
    client
        .batch_execute(&format!(
            "DROP OWNED BY \"{temporary}\" CASCADE; DROP ROLE IF EXISTS \"{temporary}\""
        ))
        .await
        .expect("drop the temporary user's role");
}

/// `auth = "iam"` with `workgroup`: each connection signs in as the user Redshift
/// Serverless' `GetCredentials` returns (a stand-in answering the real SDK's requests,
/// as moto has none), for the workgroup and the URL's database; the URL's user has no
/// role here, so only a sign-in as the returned user loads. Credentials valid for an
/// hour serve every connection of a run; ones expiring within the refresh margin are
/// asked for again by each new connection. `check` reports the Serverless action; an
/// unknown workgroup stops the run as a configuration error naming the permission.
#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    skip_services,
    ignore = "needs PostgreSQL or the S3/SQS emulator; TRACKTABLE_SKIP_SERVICES is set"
)]
async fn serverless_iam_connects_as_the_user_get_credentials_returns() {
    use tracktable_testkit::serverless::Serverless;

    let Some((mut redshift, client)) = Redshift::new("sls").await else {
        return;
    };
    let workgroup = support::unique("tt-wg");
    let user = support::unique("tt_sls").replace('-', "_");
    let temporary = format!("IAM:{user}");
    let schema = redshift.schema.clone();
    client
        .batch_execute(&format!(
            "CREATE ROLE \"{temporary}\" LOGIN; CREATE SCHEMA \"{schema}\" AUTHORIZATION \"{temporary}\""
        ))
        .await
        .expect("create the temporary user's role");
    redshift.url = support::database_url_as(&support::unique("tt_nobody").replace('-', "_"));
    let api = |workgroup: &str, endpoint: &str| {
        format!(
            "auth = \"iam\"\nworkgroup = \"{workgroup}\"\nregion = \"us-east-1\"\nendpoint_url = \"{endpoint}\"\n"
        )
    };
    let hour = Serverless::start(&workgroup, &temporary, Duration::from_secs(3600))
        .expect("start the Serverless stand-in");
    redshift.warehouse_options = api(&workgroup, hour.url());
    let lines: Vec<String> = (0..20)
        .map(|i| track(&format!("s{i}"), "\"Signed In\"", &format!("{{\"n\":{i}}}")))
        .collect();
    let source = redshift.dir("events", &[("a.json", lines.join("\n"))]);
    redshift.load(&source, "first", "");
    let count = |table: &'static str| {
        let client = &client;
        let schema = &schema;
        async move {
            support::count(
                client,
                &format!("SELECT count(*) FROM \"{schema}\".{table}"),
            )
            .await
        }
    };
    assert_eq!(count("signed_in").await, 20);
    let owners = client
        .query(
            "SELECT DISTINCT tableowner::text FROM pg_tables WHERE schemaname = $1",
            &[&schema],
        )
        .await
        .expect("read table owners");
    let owners: Vec<String> = owners.iter().map(|row| row.get(0)).collect();
    assert_eq!(owners, vec![temporary.clone()]);
    assert_eq!(
        hour.calls(),
        1,
        "one hour's credentials serve every connection"
    );
    let asked = hour.last_request().expect("a request");
    assert_eq!(asked["workgroupName"], workgroup.as_str(), "{asked}");
    assert_eq!(asked["dbName"], "postgres", "{asked}");
    assert_eq!(asked["durationSeconds"], 3600, "{asked}");

    let (ok, checks) = redshift.check("checked").await;
    assert!(
        ok && checks.contains(
            "pass  get temporary warehouse credentials (redshift-serverless:GetCredentials)"
        ) && checks.contains(&format!("loader user {temporary}")),
        "{checks}"
    );

    // Credentials that expire within the refresh margin are asked for again by every
    // new connection: a run opens several.
    let brief = Serverless::start(&workgroup, &temporary, Duration::from_secs(60))
        .expect("start the Serverless stand-in");
    redshift.warehouse_options = api(&workgroup, brief.url());
    let more = redshift.dir(
        "more",
        &[("b.json", track("s20", "\"Signed In\"", "{\"n\":20}"))],
    );
    redshift.load(&more, "brief", "");
    assert_eq!(count("signed_in").await, 21);
    assert!(
        brief.calls() >= 2,
        "each new connection asks again: {} requests",
        brief.calls()
    );

    redshift.warehouse_options = api("tt-no-such-workgroup", hour.url());
    let error = redshift
        .try_load(&source, "missing", "")
        .expect_err("a workgroup the API does not know stops the run");
    assert!(
        error.contains("ResourceNotFoundException")
            && error.contains("redshift-serverless:GetCredentials")
            && error.contains("tt-no-such-workgroup"),
        "{error}"
    );
    let (ok, checks) = redshift.check("missing").await;
    assert!(
        !ok && checks.contains(
            "FAIL  get temporary warehouse credentials (redshift-serverless:GetCredentials)"
        ),
        "{checks}"
    );

    redshift.finish(&client).await;
    client
        .batch_execute(&format!(
            "DROP OWNED BY \"{temporary}\" CASCADE; DROP ROLE IF EXISTS \"{temporary}\""
        ))
        .await
        .expect("drop the temporary user's role");
}
