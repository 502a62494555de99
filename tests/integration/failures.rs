//! Warehouse failures by class, through the real binary against the real PostgreSQL:
//! data the server refuses goes to `_discards` and the rest loads; a table with more
//! properties than the warehouse's column limit keeps the rest in `_discards`; a
//! revoked privilege or a wrong password stops the run with the server's message; and
//! SIGTERM stops a run whose load is being retried forever, leaving its batch
//! unacknowledged.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::support;

fn track(id: &str, event: &str, properties: &str) -> String {
    format!(
        r#"{{"type":"track","event":{event},"messageId":"{id}","receivedAt":"2024-03-01T12:00:00Z","properties":{properties}}}"#
    )
}

fn identify(id: &str, user: &str, traits: &str) -> String {
    format!(
        r#"{{"type":"identify","messageId":"{id}","userId":"{user}","timestamp":"2024-03-01T12:00:00Z","traits":{traits}}}"#
    )
}

/// Runs `tracktable run --once` on `pipeline` with `env`; returns its status, stderr
/// and how long it took. Fails the test if it runs past `limit`.
fn run_once(
    pipeline: &Path,
    log: &Path,
    env: &[(&str, &str)],
    limit: Duration,
) -> (ExitStatus, String, Duration) {
    let started = Instant::now();
    let mut command = Command::new(support::binary());
    command
        .args(["run", "--once", "--pipeline"])
        .arg(pipeline)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("create the stderr log"));
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = support::KillOnDrop(command.spawn().expect("start tracktable"));
    let status = support::wait_logged(&mut child, limit, "run --once", Some(log));
    let stderr = std::fs::read_to_string(log).unwrap_or_default();
    (status, stderr, started.elapsed())
}

/// The message ids (or user ids) in `table`, in order.
async fn keys(client: &tokio_postgres::Client, sql: &str) -> Vec<String> {
    client
        .query(sql, &[])
        .await
        .unwrap_or_else(|error| panic!("{sql}: {error}"))
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// `count(*)` of a query, or 0 while its table does not exist yet.
async fn count_or_zero(client: &tokio_postgres::Client, sql: &str) -> i64 {
    match client.query_one(sql, &[]).await {
        Ok(row) => row.get(0),
        Err(_) => 0,
    }
}

/// A role of the test's own (cluster-wide, so dropped at the end) owning `schema`.
async fn role_with_schema(client: &tokio_postgres::Client, prefix: &str) -> (String, String) {
    let role = support::schema(prefix);
    let schema = support::schema(&format!("{prefix}_s"));
    client
        .batch_execute(&format!(
            "CREATE ROLE \"{role}\" LOGIN; CREATE SCHEMA \"{schema}\" AUTHORIZATION \"{role}\""
        ))
        .await
        .expect("create the test's role and schema");
    (role, schema)
}

async fn drop_role(client: &tokio_postgres::Client, role: &str, schema: &str) {
    support::drop_schema(client, schema).await;
    client
        .batch_execute(&format!(
            "DROP OWNED BY \"{role}\" CASCADE; DROP ROLE IF EXISTS \"{role}\""
        ))
        .await
        .expect("drop the test's role");
}

/// Values a CHECK constraint someone added by hand refuses: PostgreSQL names the row
/// of an event table's COPY, so that row goes to `_discards` at once; a `users` merge
/// names none, so its bad rows are cornered by splitting the batch. Every other row
/// loads, the run exits 0, and a replay adds nothing.
#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    skip_services,
    ignore = "needs PostgreSQL or the S3/SQS emulator; TRACKTABLE_SKIP_SERVICES is set"
)]
async fn values_the_server_refuses_go_to_discards_and_the_rest_loads() {
    let Some(client) = support::postgres().await else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("events");
    std::fs::create_dir_all(&source).unwrap();
    let schema = support::schema("refused");
    client
        .batch_execute(&format!(
            "CREATE SCHEMA \"{schema}\"; \
             CREATE TABLE \"{schema}\".order_completed (id text PRIMARY KEY, \
               total double precision CONSTRAINT total_below_1000 CHECK (total < 1000)); \
             CREATE TABLE \"{schema}\".users (id text PRIMARY KEY, \"timestamp\" timestamp, \
               plan varchar(64) CONSTRAINT no_banned_plan CHECK (plan <> 'banned'))"
        ))
        .await
        .unwrap();
    let totals = ["5", "12.5", "5000", "7", "20", "99999", "1", "2"];
    let mut lines: Vec<String> = totals
        .iter()
        .enumerate()
        .map(|(i, total)| {
            track(
                &format!("o{}", i + 1),
                "\"Order Completed\"",
                &format!("{{\"total\":{total}}}"),
            )
        })
        .collect();
    let plans = ["free", "banned", "pro", "banned", "team"];
    lines.extend(plans.iter().enumerate().map(|(i, plan)| {
        identify(
            &format!("i{}", i + 1),
            &format!("u{}", i + 1),
            &format!("{{\"plan\":\"{plan}\"}}"),
        )
    }));
    std::fs::write(source.join("a.json"), lines.join("\n")).unwrap();

    for run in ["first", "replay"] {
        let pipeline = support::pipeline_file(
            work.path(),
            &source,
            &work.path().join(format!("state-{run}")),
            &schema,
            "1h",
        );
        let log = work.path().join(format!("{run}.log"));
        let (status, stderr, _) = run_once(&pipeline, &log, &[], Duration::from_secs(120));
        assert!(status.success(), "{run}: tracktable failed:\n{stderr}");
        if run == "first" {
            assert!(
                stderr.contains("the warehouse refused this load's data"),
                "{stderr}"
            );
        }
        let orders = keys(
            &client,
            &format!("SELECT id FROM \"{schema}\".order_completed ORDER BY 1"),
        )
        .await;
        assert_eq!(orders, ["o1", "o2", "o4", "o5", "o7", "o8"], "{run}");
        let users = keys(
            &client,
            &format!("SELECT id FROM \"{schema}\".users ORDER BY 1"),
        )
        .await;
        assert_eq!(users, ["u1", "u3", "u5"], "{run}");
        for (table, rows) in [("tracks", 8), ("identifies", 5)] {
            let sql = format!("SELECT count(*) FROM \"{schema}\".{table}");
            assert_eq!(support::count(&client, &sql).await, rows, "{run}: {table}");
        }
        let discards: Vec<(String, String, String, String, String, i64)> = client
            .query(
                &format!(
                    "SELECT table_name, column_name, message_id, reason, object, line \
                     FROM \"{schema}\"._discards ORDER BY table_name, message_id"
                ),
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
            .collect();
        let found: Vec<(&str, &str, &str, &str, i64)> = discards
            .iter()
            .map(|(table, column, id, _, object, line)| {
                (
                    table.as_str(),
                    column.as_str(),
                    id.as_str(),
                    object.as_str(),
                    *line,
                )
            })
            .collect();
        assert_eq!(
            found,
            [
                ("order_completed", "*", "o3", "a.json", 3),
                ("order_completed", "*", "o6", "a.json", 6),
                ("users", "*", "u2", "a.json", 10),
                ("users", "*", "u4", "a.json", 12),
            ],
            "{run}: the refused rows, whole, with their object and line"
        );
        for (table, _, _, reason, _, _) in &discards {
            let constraint = match table.as_str() {
                "users" => "no_banned_plan",
                _ => "total_below_1000",
            };
            assert!(
                reason.starts_with("the warehouse refused the row: ERROR 23514: ")
                    && reason.contains(constraint),
                "the server's reason: {reason}"
            );
        }
    }
    support::drop_schema(&client, &schema).await;
}

/// Writes `name` under `source`: five track calls of `event`, message ids
/// `{prefix}{from}` to `{prefix}{from + 4}`.
fn write_five(source: &Path, name: &str, prefix: &str, event: &str, from: usize) {
    let lines: Vec<String> = (from..from + 5)
        .map(|i| {
            track(
                &format!("{prefix}{i}"),
                &format!("\"{event}\""),
                &format!("{{\"n\":{i}}}"),
            )
        })
        .collect();
    std::fs::write(source.join(name), lines.join("\n")).unwrap();
}

/// Without a tracking plan, 1800 distinct properties of one event: the table stops at
/// the warehouse's 1600-column limit, keeping room for tracktable's own columns, and
/// the values of the properties past it go to `_discards` with a reason naming the
/// limit; every row loads.
#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    skip_services,
    ignore = "needs PostgreSQL or the S3/SQS emulator; TRACKTABLE_SKIP_SERVICES is set"
)]
async fn a_table_never_grows_past_the_warehouse_column_limit() {
    let Some(client) = support::postgres().await else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("events");
    std::fs::create_dir_all(&source).unwrap();
    let (events, per_event) = (20, 90);
    let lines: Vec<String> = (0..events)
        .map(|event| {
            let properties: Vec<String> = (0..per_event)
                .map(|p| format!("\"p{event:02}_{p:02}\":{p}"))
                .collect();
            track(
                &format!("w{event}"),
                "\"Wide Event\"",
                &format!("{{{}}}", properties.join(",")),
            )
        })
        .collect();
    std::fs::write(source.join("wide.json"), lines.join("\n")).unwrap();
    let schema = support::schema("wide");
    let pipeline = support::pipeline_file(
        work.path(),
        &source,
        &work.path().join("state"),
        &schema,
        "1h",
    );
    let log = work.path().join("stderr.log");
    let (status, stderr, _) = run_once(&pipeline, &log, &[], Duration::from_secs(180));
    assert!(status.success(), "tracktable failed:\n{stderr}");

    let columns = format!(
        "SELECT count(*) FROM information_schema.columns WHERE table_schema = '{schema}' \
         AND table_name = 'wide_event'"
    );
    let all = support::count(&client, &columns).await;
    let properties = support::count(&client, &format!("{columns} AND column_name LIKE 'p%'")).await;
    assert!(all <= 1600, "{all} columns");
    // 1600 less room for the columns tracktable itself may write.
    assert_eq!(
        properties,
        1600 - tracktable::warehouse::ddl::OWN_COLUMNS.len() as i64
    );
    assert_eq!(
        support::count(
            &client,
            &format!("SELECT count(*) FROM \"{schema}\".wide_event")
        )
        .await,
        events
    );
    let discarded = support::count(
        &client,
        &format!(
            "SELECT count(*) FROM \"{schema}\"._discards WHERE table_name = 'wide_event' \
             AND reason = 'over the warehouse''s limit of 1600 columns per table (room is kept for tracktable''s own columns)'"
        ),
    )
    .await;
    assert_eq!(discarded, events * per_event - properties);
    support::drop_schema(&client, &schema).await;
}

/// A privilege revoked by hand: the load is tried once more, then the run stops with
/// the server's message and SQLSTATE and a non-zero exit, acknowledging nothing; once
/// the privilege is back, the same state directory loads what the failed run had.
#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    skip_services,
    ignore = "needs PostgreSQL or the S3/SQS emulator; TRACKTABLE_SKIP_SERVICES is set"
)]
async fn a_revoked_privilege_stops_the_run_with_the_servers_message() {
    let Some(client) = support::postgres().await else {
        return;
    };
    let (role, schema) = role_with_schema(&client, "tt_revoked").await;
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("events");
    std::fs::create_dir_all(&source).unwrap();
    let batch = |name: &str, from: usize| write_five(&source, name, "c", "Cart Viewed", from);
    batch("a.json", 0);
    let pipeline = support::pipeline_file_at(
        &support::database_url_as(&role),
        work.path(),
        &source,
        &work.path().join("state"),
        &schema,
        "1h",
    );
    let count = format!("SELECT count(*) FROM \"{schema}\".cart_viewed");
    let (status, stderr, _) = run_once(
        &pipeline,
        &work.path().join("first.log"),
        &[],
        Duration::from_secs(60),
    );
    assert!(status.success(), "{stderr}");
    assert_eq!(support::count(&client, &count).await, 5);

    client
        .batch_execute(&format!(
            "REVOKE INSERT ON \"{schema}\".cart_viewed FROM \"{role}\""
        ))
        .await
        .unwrap();
    batch("b.json", 5);
    let (status, stderr, took) = run_once(
        &pipeline,
        &work.path().join("revoked.log"),
        &[],
        Duration::from_secs(60),
    );
    assert!(!status.success(), "the run must fail:\n{stderr}");
    assert!(
        stderr.contains("retrying cannot help")
            && stderr.contains("ERROR 42501: permission denied for table cart_viewed"),
        "the server's message and SQLSTATE:\n{stderr}"
    );
    assert!(
        took < Duration::from_secs(30),
        "stopped within one retry: {took:?}"
    );
    assert_eq!(support::count(&client, &count).await, 5);

    client
        .batch_execute(&format!(
            "GRANT INSERT ON \"{schema}\".cart_viewed TO \"{role}\""
        ))
        .await
        .unwrap();
    let (status, stderr, _) = run_once(
        &pipeline,
        &work.path().join("fixed.log"),
        &[],
        Duration::from_secs(60),
    );
    assert!(status.success(), "{stderr}");
    assert_eq!(
        support::count(&client, &count).await,
        10,
        "nothing was acknowledged by the failed run"
    );
    drop_role(&client, &role, &schema).await;
}

/// A wrong password (a server of the test's own that asks one role for a SCRAM
/// password; the shared test server trusts loopback): the run stops at start-up with
/// the server's message and SQLSTATE and a non-zero exit, at once, without the
/// password in any log line; the right password loads.
#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    skip_services,
    ignore = "needs PostgreSQL or the S3/SQS emulator; TRACKTABLE_SKIP_SERVICES is set"
)]
async fn a_wrong_password_stops_the_run_at_once() {
    let Some(server) = support::own_server() else {
        return;
    };
    let (client, connection) = tokio_postgres::connect(&server.server.url, tokio_postgres::NoTls)
        .await
        .expect("connect to the throwaway server");
    tokio::spawn(connection);
    let right = "right-Pa55word";
    client
        .batch_execute(&format!(
            "SET password_encryption = 'scram-sha-256'; \
             CREATE ROLE tt_password LOGIN PASSWORD '{right}'; \
             CREATE SCHEMA passworded AUTHORIZATION tt_password"
        ))
        .await
        .unwrap();
    let hba = server.server.dir.join("data").join("pg_hba.conf");
    let rules = std::fs::read_to_string(&hba).expect("read pg_hba.conf");
    std::fs::write(
        &hba,
        format!("host all tt_password 127.0.0.1/32 scram-sha-256\n{rules}"),
    )
    .expect("write pg_hba.conf");
    client
        .batch_execute("SELECT pg_reload_conf()")
        .await
        .unwrap();

    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("events");
    std::fs::create_dir_all(&source).unwrap();
    std::fs::write(
        source.join("a.json"),
        track("p1", "\"Signed In\"", "{\"n\":1}"),
    )
    .unwrap();
    let url = server
        .server
        .url
        .replacen("postgres://postgres@", "postgres://tt_password@", 1);
    let pipeline = support::pipeline_file_at(
        &url,
        work.path(),
        &source,
        &work.path().join("state"),
        "passworded",
        "1h",
    );
    let text = std::fs::read_to_string(&pipeline).unwrap().replace(
        "[batch]",
        "password_env = \"TRACKTABLE_TEST_PASSWORD\"\n[batch]",
    );
    std::fs::write(&pipeline, text).unwrap();

    let wrong = "wrong-Pa55word";
    let (status, stderr, took) = run_once(
        &pipeline,
        &work.path().join("wrong.log"),
        &[
            ("TRACKTABLE_TEST_PASSWORD", wrong),
            ("TRACKTABLE_LOG", "debug"),
        ],
        Duration::from_secs(60),
    );
    assert!(!status.success(), "the run must fail:\n{stderr}");
    assert!(
        stderr.contains("28P01") && stderr.contains("password authentication failed"),
        "the server's message and SQLSTATE:\n{stderr}"
    );
    assert!(
        took < Duration::from_secs(10),
        "at once, not retried: {took:?}"
    );
    assert!(!stderr.contains(wrong), "the password leaked:\n{stderr}");

    let (status, stderr, _) = run_once(
        &pipeline,
        &work.path().join("right.log"),
        &[("TRACKTABLE_TEST_PASSWORD", right)],
        Duration::from_secs(60),
    );
    assert!(status.success(), "{stderr}");
    assert_eq!(
        support::count(&client, "SELECT count(*) FROM passworded.signed_in").await,
        1
    );
}

/// Every object name in the state directory's done logs.
fn done(state: &Path) -> Vec<String> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(state).into_iter().flatten().flatten() {
        let path: PathBuf = entry.path();
        if path
            .file_name()
            .and_then(|name| name.to_str())
            .is_some_and(|name| name.starts_with("done-"))
        {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            names.extend(text.lines().map(str::to_owned));
        }
    }
    names
}

/// A load retried forever (the loader's role may open no connection: SQLSTATE 53300,
/// transient): `/ready` reports the failing warehouse and the cause, and one SIGTERM
/// stops the run promptly, exit 0, with the retried batch unacknowledged; it loads on
/// the next start.
#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    skip_services,
    ignore = "needs PostgreSQL or the S3/SQS emulator; TRACKTABLE_SKIP_SERVICES is set"
)]
async fn sigterm_during_an_endless_retry_exits_promptly() {
    let Some(client) = support::postgres().await else {
        return;
    };
    let (role, schema) = role_with_schema(&client, "tt_stuck").await;
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("events");
    std::fs::create_dir_all(&source).unwrap();
    let batch = |name: &str, from: usize| write_five(&source, name, "s", "Song Played", from);
    batch("a.json", 0);
    let state = work.path().join("state");
    let pipeline = support::pipeline_file_at(
        &support::database_url_as(&role),
        work.path(),
        &source,
        &state,
        &schema,
        "200ms",
    );
    let port = support::free_port();
    let log = work.path().join("stderr.log");
    let mut child = support::KillOnDrop(
        Command::new(support::binary())
            .args(["run", "--metrics-addr"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--pipeline")
            .arg(&pipeline)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start tracktable"),
    );
    let count = format!("SELECT count(*) FROM \"{schema}\".song_played");
    support::eventually(
        Duration::from_secs(60),
        "the first file is acknowledged",
        &log,
        || {
            let state = &state;
            async move { done(state).iter().any(|name| name.ends_with("a.json")) }
        },
    )
    .await;
    assert_eq!(count_or_zero(&client, &count).await, 5);

    // From now on the role may open no connection, and its open ones are gone.
    client
        .batch_execute(&format!(
            "ALTER ROLE \"{role}\" CONNECTION LIMIT 0; \
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'"
        ))
        .await
        .unwrap();
    batch("b.json", 5);
    support::eventually(
        Duration::from_secs(60),
        "/ready reports the failing load",
        &log,
        || async move {
            support::http_get(port, "/ready").is_some_and(|(status, body)| {
                status == 503
                    && body.contains("warehouse: table ")
                    && body.contains("failing, retried")
                    && body.contains("53300: too many connections")
            })
        },
    )
    .await;

    let signalled = Instant::now();
    support::signal(child.id(), "TERM");
    let status = support::wait_logged(&mut child, Duration::from_secs(30), "SIGTERM", Some(&log));
    let took = signalled.elapsed();
    let stderr = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "exit 0 after SIGTERM:\n{stderr}");
    assert!(
        took < Duration::from_secs(10),
        "stopped promptly: {took:?}\n{stderr}"
    );
    assert!(
        stderr.contains("leaving the batch unacknowledged"),
        "{stderr}"
    );
    let acknowledged = done(&state);
    assert!(
        acknowledged.iter().any(|name| name.ends_with("a.json"))
            && !acknowledged.iter().any(|name| name.ends_with("b.json")),
        "only the loaded file is acknowledged: {acknowledged:?}"
    );

    client
        .batch_execute(&format!("ALTER ROLE \"{role}\" CONNECTION LIMIT -1"))
        .await
        .unwrap();
    let (status, stderr, _) = run_once(
        &pipeline,
        &work.path().join("after.log"),
        &[],
        Duration::from_secs(60),
    );
    assert!(status.success(), "{stderr}");
    assert_eq!(support::count(&client, &count).await, 10);
    drop_role(&client, &role, &schema).await;
}
