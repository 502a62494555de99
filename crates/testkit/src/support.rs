//! Integration-test fixtures: the real services (PostgreSQL, the S3/SQS emulator),
//! found or started by [`crate::services`], and names of each test's own. A service
//! that is missing fails the test, unless `TRACKTABLE_SKIP_SERVICES=1` opts out.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_config::BehaviorVersion;
use aws_sdk_s3::config::Credentials;

pub use crate::services::missing;

/// True under CI (`CI=true`).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| value == "true" || value == "1")
}

/// A name no other test (or earlier run) uses: lowercase, digits and `-`/`_` only.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        nanos % 1_000_000_000
    )
}

/// The PostgreSQL the tests use: `DATABASE_URL`, the local server, or a throwaway one.
pub fn database_url() -> String {
    crate::services::postgres_url()
}

/// [`database_url`] as the role `user` (no password: the test server trusts loopback).
pub fn database_url_as(user: &str) -> String {
    let url = database_url();
    let config: tokio_postgres::Config = match url.parse() {
        Ok(config) => config,
        Err(_) => return url,
    };
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        _ => "127.0.0.1".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let database = config.get_dbname().unwrap_or("postgres");
    format!("postgres://{user}@{host}:{port}/{database}")
}

/// A connected PostgreSQL client; `None` only when the user opted out of services.
pub async fn postgres() -> Option<tokio_postgres::Client> {
    let url = database_url();
    match tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
        Ok((client, connection)) => {
            tokio::spawn(async move {
                if let Err(error) = connection.await {
                    eprintln!("postgres connection ended: {error}");
                }
            });
            Some(client)
        }
        Err(error) => {
            let shown = tracktable::conninfo::redacted(&url);
            missing("PostgreSQL", &format!("cannot connect to {shown}: {error}"));
            None
        }
    }
}

/// The moto server's URL (found or started); `None` only when the user opted out.
pub async fn moto_url() -> Option<String> {
    match tokio::task::spawn_blocking(crate::services::moto_url).await {
        Ok(Ok(url)) => Some(url),
        Ok(Err(why)) => {
            missing("moto (the S3/SQS emulator)", &why);
            None
        }
        Err(error) => {
            missing("moto (the S3/SQS emulator)", &error.to_string());
            None
        }
    }
}

/// AWS clients pointed at moto, with path-style S3 addressing and dummy credentials.
pub struct Aws {
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub redshift: aws_sdk_redshift::Client,
}

pub async fn aws(endpoint: &str) -> Aws {
    let shared = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "moto"))
        .load()
        .await;
    let s3_config = aws_sdk_s3::config::Builder::from(&shared)
        .force_path_style(true)
        .build();
    Aws {
        s3: aws_sdk_s3::Client::from_conf(s3_config),
        sqs: aws_sdk_sqs::Client::new(&shared),
        redshift: aws_sdk_redshift::Client::new(&shared),
    }
}

impl Aws {
    /// A new bucket whose "object created" events S3 sends to a new queue, as the SQS
    /// source's setup does; returns the bucket and the queue's URL.
    pub async fn announcing_bucket(&self, prefix: &str) -> (String, String) {
        use aws_sdk_s3::types::{Event, NotificationConfiguration, QueueConfiguration};
        use aws_sdk_sqs::types::QueueAttributeName;
        let bucket = unique(prefix);
        self.s3
            .create_bucket()
            .bucket(&bucket)
            .send()
            .await
            .expect("create bucket");
        let queue_url = self
            .sqs
            .create_queue()
            .queue_name(unique(prefix))
            .send()
            .await
            .expect("create queue")
            .queue_url
            .expect("queue url");
        let queue_arn = self
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
        let queue = QueueConfiguration::builder()
            .queue_arn(&queue_arn)
            .events(Event::from("s3:ObjectCreated:*"))
            .build()
            .expect("queue configuration");
        self.s3
            .put_bucket_notification_configuration()
            .bucket(&bucket)
            .notification_configuration(
                NotificationConfiguration::builder()
                    .queue_configurations(queue)
                    .build(),
            )
            .send()
            .await
            .expect("configure notifications");
        (bucket, queue_url)
    }
}

/// A fresh schema name (lowercase, `_` only), dropped by [`drop_schema`].
pub fn schema(prefix: &str) -> String {
    unique(prefix).replace('-', "_")
}

pub async fn drop_schema(client: &tokio_postgres::Client, schema: &str) {
    client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .await
        .expect("drop schema");
}

/// Writes a pipeline file for a `dir` source into PostgreSQL and returns its path.
pub fn pipeline_file(
    dir: &std::path::Path,
    source: &std::path::Path,
    state: &std::path::Path,
    schema: &str,
    interval: &str,
) -> std::path::PathBuf {
    pipeline_file_at(&database_url(), dir, source, state, schema, interval)
}

/// [`pipeline_file`] into the PostgreSQL at `url`.
pub fn pipeline_file_at(
    url: &str,
    dir: &std::path::Path,
    source: &std::path::Path,
    state: &std::path::Path,
    schema: &str,
    interval: &str,
) -> std::path::PathBuf {
    let path = dir.join(format!("{schema}.toml"));
    let text = format!(
        "name = \"{schema}\"\n\
         [source]\ntype = \"dir\"\npath = \"{}\"\nstate_dir = \"{}\"\npoll_interval = \"200ms\"\n\
         [warehouse]\ntype = \"postgres\"\nurl = \"{}\"\nschema = \"{schema}\"\nsslmode = \"auto\"\n\
         [batch]\ninterval = \"{interval}\"\n",
        source.display(),
        state.display(),
        url
    );
    std::fs::write(&path, text).expect("write pipeline file");
    path
}

/// Writes the pipeline `name`, reading the SQS queue `queue_url` on moto at `endpoint`
/// into `schema` of the test PostgreSQL (500 ms batches, 1 s long polls); returns its path.
pub fn sqs_pipeline_file(
    dir: &std::path::Path,
    name: &str,
    queue_url: &str,
    endpoint: &str,
    schema: &str,
    visibility: &str,
) -> std::path::PathBuf {
    let path = dir.join(format!("{schema}.toml"));
    let text = format!(
        "name = \"{name}\"\n\
         [source]\ntype = \"sqs\"\nqueue_url = \"{queue_url}\"\nregion = \"us-east-1\"\n\
         endpoint_url = \"{endpoint}\"\nwait_time = \"1s\"\nvisibility_timeout = \"{visibility}\"\n\
         [warehouse]\ntype = \"postgres\"\nurl = \"{}\"\nschema = \"{schema}\"\n\
         [batch]\ninterval = \"500ms\"\n",
        database_url()
    );
    std::fs::write(&path, text).expect("write pipeline file");
    path
}

/// A TCP port free on loopback right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

/// Every user table of `schema` (bookkeeping tables excluded): table → message id →
/// column → value as JSON, plus each table's (column, type) set.
pub type Dump = std::collections::BTreeMap<String, Table>;

#[derive(Debug, PartialEq)]
pub struct Table {
    pub columns: std::collections::BTreeMap<String, String>,
    pub rows: std::collections::BTreeMap<String, serde_json::Map<String, serde_json::Value>>,
}

pub async fn dump(client: &tokio_postgres::Client, schema: &str) -> Dump {
    let tables = client
        .query(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = $1 AND table_name NOT IN ('_tracktable_loads') ORDER BY 1",
            &[&schema],
        )
        .await
        .expect("list tables");
    let mut dump = Dump::new();
    for table in tables {
        let name: String = table.get(0);
        let columns = client
            .query(
                "SELECT column_name, CASE WHEN data_type = 'character varying' THEN 'varchar(' || character_maximum_length || ')' ELSE data_type END \
                 FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2",
                &[&schema, &name],
            )
            .await
            .expect("list columns")
            .into_iter()
            .map(|row| (row.get::<_, String>(0), row.get::<_, String>(1)))
            .filter(|(column, _)| column != "discarded_at")
            .collect();
        let key = if name == "_discards" {
            "table_name || '/' || column_name || '/' || message_id"
        } else if name.starts_with('_') {
            "message_id"
        } else {
            "id"
        };
        let rows = client
            .query(&format!("SELECT {key}, (to_jsonb(t) - 'discarded_at' - 'uuid_ts')::text FROM \"{schema}\".\"{name}\" t"), &[])
            .await
            .expect("read rows")
            .into_iter()
            .map(|row| {
                let json: String = row.get(1);
                let value: serde_json::Value = serde_json::from_str(&json).expect("row as JSON");
                let serde_json::Value::Object(map) = value else { panic!("row is not an object") };
                (row.get::<_, String>(0), map)
            })
            .collect();
        dump.insert(name, Table { columns, rows });
    }
    dump
}

/// Waits for a `tracktable` child for at most `limit`; kills it and fails the test if it
/// runs longer, so a hang is a failure with a message rather than a stuck CI job.
pub fn wait_within(
    child: &mut std::process::Child,
    limit: std::time::Duration,
    what: &str,
) -> std::process::ExitStatus {
    wait_logged(child, limit, what, None)
}

/// [`wait_within`], showing the last lines of the child's stderr log on a timeout.
pub fn wait_logged(
    child: &mut std::process::Child,
    limit: std::time::Duration,
    what: &str,
    stderr_log: Option<&std::path::Path>,
) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status,
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                let log = stderr_log
                    .and_then(|path| std::fs::read_to_string(path).ok())
                    .unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                panic!(
                    "{what}: tracktable did not finish within {limit:?}; killed it. Last log lines:\n{}",
                    tail.join("\n")
                );
            }
            Err(error) => panic!("{what}: cannot wait for tracktable: {error}"),
        }
    }
}

/// Every thread's stack of the live process `pid`, read by `gdb` in batch mode: a
/// test that gives up on a stuck `tracktable` puts it in its failure message, so a
/// hang that happens once in many runs says where each thread waits. Says why not
/// when gdb is missing or cannot attach.
pub fn thread_stacks(pid: u32) -> String {
    let output = std::process::Command::new("gdb")
        .args([
            "-p",
            &pid.to_string(),
            "-batch",
            "-ex",
            "thread apply all bt",
        ])
        .output();
    match output {
        Ok(output) if output.status.success() => {
            String::from_utf8_lossy(&output.stdout).into_owned()
        }
        Ok(output) => format!(
            "(gdb could not read the stacks of {pid}: {})",
            String::from_utf8_lossy(&output.stderr).trim()
        ),
        Err(error) => format!("(no stacks of {pid}: cannot run gdb: {error})"),
    }
}

/// A child process killed when the test ends, also when an assertion fails first, so a
/// failing test leaves no `tracktable run` behind.
pub struct KillOnDrop(pub std::process::Child);

impl std::ops::Deref for KillOnDrop {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Sends `signal` (`INT`, `TERM`) to a process, failing the test if `kill` cannot.
pub fn signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid}: {status}");
}

/// A session of the test's own holding `_tracktable_loads` locked, so every load
/// blocks at its bookkeeping insert until the session commits or rolls back.
pub async fn lock_loads(schema: &str) -> tokio_postgres::Client {
    let client = postgres().await.expect("postgres");
    client
        .batch_execute(&format!(
            "BEGIN; LOCK TABLE \"{schema}\"._tracktable_loads IN ACCESS EXCLUSIVE MODE"
        ))
        .await
        .expect("lock _tracktable_loads");
    client
}

/// Whether a tracktable session waits on the lock [`lock_loads`] holds.
pub async fn loads_are_waiting(client: &tokio_postgres::Client, schema: &str) -> bool {
    count(
        client,
        &format!(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'tracktable' \
             AND wait_event_type = 'Lock' AND query ILIKE '%{schema}%_tracktable_loads%'"
        ),
    )
    .await
        > 0
}

/// The single integer a query returns (a `count(*)`); panics with the query on error.
pub async fn count(client: &tokio_postgres::Client, sql: &str) -> i64 {
    client
        .query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

/// Polls until `done` holds, failing with `what` and the log after `limit`.
pub async fn eventually<F, Fut>(
    limit: std::time::Duration,
    what: &str,
    log: &std::path::Path,
    mut done: F,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + limit;
    while !done().await {
        assert!(
            std::time::Instant::now() < deadline,
            "{what} within {limit:?}:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// A throwaway PostgreSQL cluster of a test's own (for what the shared server must not
/// suffer: a restart, an authentication rule), stopped when dropped.
pub struct OwnServer {
    pub server: tracktable_local_postgres::LocalPostgres,
    /// Removed after the server stops (fields drop after `Drop::drop`).
    _dir: tempfile::TempDir,
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        if let Err(error) = self.server.stop() {
            eprintln!("could not stop the throwaway server: {error}");
        }
    }
}

/// Starts an [`OwnServer`]; `None` only when the user opted out of services.
pub fn own_server() -> Option<OwnServer> {
    if tracktable_local_postgres::find_binaries().is_none() {
        missing(
            "PostgreSQL's server binaries (initdb, pg_ctl)",
            "a test starts a server of its own; install the postgresql package",
        );
        return None;
    }
    let dir = tempfile::tempdir().expect("a directory for the throwaway cluster");
    let server = tracktable_local_postgres::start(dir.path()).expect("start a throwaway server");
    Some(OwnServer { server, _dir: dir })
}

/// `files` source files (`f0.json`, ...) of `per_table` track calls to each of
/// `tables` events (`E0 Done` → `e0_done`, ...), every call with a NUL character in
/// its `note`: one discard per row in every table. Each file is a batch of its own
/// with `max_bytes = 1`.
pub fn discards_in_every_table(
    files: usize,
    tables: usize,
    per_table: usize,
) -> Vec<(String, String)> {
    (0..files)
        .map(|file| {
            let lines: Vec<String> = (0..per_table)
                .flat_map(|i| (0..tables).map(move |table| (i, table)))
                .map(|(i, table)| {
                    format!(
                        r#"{{"type":"track","event":"E{table} Done","messageId":"f{file}-e{table}-{i}","receivedAt":"2024-03-01T12:00:00Z","properties":{{"n":{i},"note":"nul\u0000{i}"}}}}"#
                    )
                })
                .collect();
            (format!("f{file}.json"), lines.join("\n"))
        })
        .collect()
}

/// Asserts that what [`discards_in_every_table`] made (`tables` tables of `rows` rows
/// each, counted over all files) loaded: every table holds its rows, `_discards` one
/// per row, and the load records count every discard once.
pub async fn assert_discards_in_every_table(
    client: &tokio_postgres::Client,
    schema: &str,
    tables: usize,
    rows: i64,
) {
    for table in 0..tables {
        let table = format!("e{table}_done");
        let loaded = count(
            client,
            &format!("SELECT count(*) FROM \"{schema}\".{table}"),
        )
        .await;
        assert_eq!(loaded, rows, "{table}");
        let discarded =
            format!("SELECT count(*) FROM \"{schema}\"._discards WHERE table_name = '{table}'");
        assert_eq!(count(client, &discarded).await, rows, "{table}");
    }
    let recorded = format!("SELECT sum(discards)::bigint FROM \"{schema}\"._tracktable_loads");
    assert_eq!(count(client, &recorded).await, tables as i64 * rows);
}

/// The tables of `schema` tracktable made for events (bookkeeping tables, whose names
/// start with `_`, left out), by name.
pub async fn event_tables(client: &tokio_postgres::Client, schema: &str) -> Vec<String> {
    client
        .query(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1 \
             AND left(table_name, 1) <> '_' ORDER BY 1",
            &[&schema],
        )
        .await
        .expect("list the schema's tables")
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// A plain HTTP/1.1 GET of a run's metrics listener on loopback: (status, body), or
/// `None` while it does not answer.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n")?.1.to_owned();
    Some((status, body))
}

/// The number on the exposition line of `series` (a metric's name, with its labels if
/// any), as `/metrics` prints it.
pub fn metric_value(exposition: &str, series: &str) -> Option<f64> {
    exposition.lines().find_map(|line| {
        line.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stuck_childs_threads_are_shown_with_their_stacks() {
        let mut child = KillOnDrop(
            std::process::Command::new("sleep")
                .arg("60")
                .spawn()
                .expect("start sleep"),
        );
        let stacks = thread_stacks(child.id());
        assert!(
            stacks.contains("#0 ") && stacks.contains("Thread 1"),
            "{stacks}"
        );
        let _ = child.kill();
    }
}
