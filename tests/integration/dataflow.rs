//! The dataflow end to end: generated objects in a directory → `tracktable run` → the
//! real PostgreSQL, across topologies, batches and signals.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracktable::decode::Limits;
use tracktable::route::{Router, Value};
use tracktable_gen::{GenConfig, write_dir};

use crate::support;

fn run_once(pipeline: &Path, extra: &[&str]) -> std::process::Child {
    Command::new(support::binary())
        .arg("run")
        .arg("--pipeline")
        .arg(pipeline)
        .arg("--once")
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start tracktable run")
}

/// `tracktable run` without `--once`: it runs until signalled (or the test ends).
fn run_until_stopped(pipeline: &Path, extra: &[&str], stderr: Stdio) -> support::KillOnDrop {
    support::KillOnDrop(
        Command::new(support::binary())
            .arg("run")
            .arg("--pipeline")
            .arg(pipeline)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start tracktable run"),
    )
}

fn wait_ok(mut child: std::process::Child, what: &str) {
    let status = support::wait_within(&mut child, Duration::from_secs(180), what);
    assert!(status.success(), "{what}: tracktable exited with {status}");
}

/// What route produces directly for every file: table → message id → columns.
fn expected_rows(source: &Path) -> BTreeMap<String, BTreeMap<String, BTreeMap<String, Value>>> {
    let mut expected: BTreeMap<String, BTreeMap<String, BTreeMap<String, Value>>> = BTreeMap::new();
    let mut router = Router::new();
    let mut rows = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(source)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    for path in files {
        let name: Arc<str> = Arc::from(path.file_name().unwrap().to_string_lossy().as_ref());
        let file = std::fs::File::open(&path).unwrap();
        tracktable::route::rows_for_object(file, &name, &Limits::default(), &mut router, &mut rows);
        for row in rows.drain(..) {
            let columns = row
                .cells()
                .map(|(c, v)| (c.as_str().to_owned(), v.to_value()))
                .collect();
            let table = expected.entry(row.table.as_str().to_owned()).or_default();
            if matches!(row.table.as_str(), "users" | "accounts") {
                // Newest call wins: by (timestamp, message id), no timestamp oldest.
                let newest = |columns: &BTreeMap<String, Value>| {
                    let timestamp = match columns.get("timestamp") {
                        Some(Value::Timestamp(t)) => Some(*t),
                        _ => None,
                    };
                    (timestamp, columns.get("message_id").map(Value::to_text))
                };
                if let Some(stored) = table.get(&row.message_id)
                    && newest(stored) > newest(&columns)
                {
                    continue;
                }
            }
            table.insert(row.message_id, columns);
        }
    }
    expected
}

/// Every expected row is in the warehouse with every value, or the value is in
/// `_discards`; no table holds a row route did not produce.
fn assert_matches_route(
    dump: &support::Dump,
    expected: &BTreeMap<String, BTreeMap<String, BTreeMap<String, Value>>>,
) {
    let discards = dump.get("_discards").map(|t| &t.rows);
    for (table, rows) in expected {
        let actual = dump
            .get(table)
            .unwrap_or_else(|| panic!("table {table} missing"));
        let expected_ids: BTreeSet<&String> = rows.keys().collect();
        let actual_ids: BTreeSet<&String> = actual.rows.keys().collect();
        assert_eq!(expected_ids, actual_ids, "message ids of {table}");
        for (message_id, columns) in rows {
            let stored = &actual.rows[message_id];
            for (column, value) in columns {
                let cell = stored.get(column).unwrap_or(&serde_json::Value::Null);
                let discarded = discards
                    .is_some_and(|d| d.contains_key(&format!("{table}/{column}/{message_id}")));
                if discarded {
                    assert!(
                        cell.is_null(),
                        "{table}.{column} of {message_id} both loaded and discarded"
                    );
                    continue;
                }
                assert!(
                    same_value(value, cell),
                    "{table}.{column} of {message_id}: route {value:?}, warehouse {cell}"
                );
            }
        }
    }
}

fn same_value(value: &Value, cell: &serde_json::Value) -> bool {
    match (value, cell) {
        (Value::Boolean(b), serde_json::Value::Bool(c)) => b == c,
        (Value::BigInt(i), serde_json::Value::Number(n)) => {
            n.as_i64() == Some(*i) || n.as_f64() == Some(*i as f64)
        }
        (Value::Double(f), serde_json::Value::Number(n)) => {
            n.as_f64().is_some_and(|g| (g - f).abs() <= f.abs() * 1e-12)
        }
        (Value::Timestamp(t), serde_json::Value::String(s)) => t
            .to_string()
            .trim_end_matches('Z')
            .starts_with(s.trim_end_matches('0').trim_end_matches('.')),
        (value, serde_json::Value::String(s)) => value.to_text() == *s,
        _ => false,
    }
}

/// The same objects through 1×1, 1×2 and 2 processes × 1 worker give identical
/// warehouses, and those match what route produces directly.
#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    skip_services,
    ignore = "needs PostgreSQL or the S3/SQS emulator; TRACKTABLE_SKIP_SERVICES is set"
)]
async fn topologies_load_identical_warehouses() {
    let Some(client) = support::postgres().await else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("events");
    // No type drift here: with drift, a column's creation type depends on which batch
    // first sees it, and batch boundaries follow the wall clock (tested separately).
    let config = GenConfig {
        events: 6000,
        seed: 11,
        drift_rate: 0.0,
        bad_rate: 0.01,
    };
    write_dir(&config, &source, 400).unwrap();
    let expected = expected_rows(&source);

    let mut dumps = Vec::new();
    for (label, processes, workers) in [
        ("one", 1usize, 1usize),
        ("two_workers", 1, 2),
        ("two_processes", 2, 1),
    ] {
        let schema = support::schema(&format!("topo_{label}"));
        let state = work.path().join(format!("state-{label}"));
        let pipeline = support::pipeline_file(work.path(), &source, &state, &schema, "1h");
        if processes == 1 {
            wait_ok(
                run_once(&pipeline, &["--workers", &workers.to_string()]),
                label,
            );
        } else {
            let hostfile = work.path().join("hosts");
            std::fs::write(
                &hostfile,
                format!(
                    "127.0.0.1:{}\n127.0.0.1:{}\n",
                    support::free_port(),
                    support::free_port()
                ),
            )
            .unwrap();
            let hostfile = hostfile.to_string_lossy().into_owned();
            let children: Vec<_> = (0..processes)
                .map(|p| {
                    run_once(
                        &pipeline,
                        &[
                            "--processes",
                            "2",
                            "--process",
                            &p.to_string(),
                            "--hostfile",
                            &hostfile,
                        ],
                    )
                })
                .collect();
            for child in children {
                wait_ok(child, label);
            }
        }
        let dump = support::dump(&client, &schema).await;
        support::drop_schema(&client, &schema).await;
        dumps.push((label, dump));
    }
    let (_, first) = &dumps[0];
    assert!(
        first.len() > 20,
        "expected many tables, got {}",
        first.len()
    );
    assert!(
        first.contains_key("_rejections"),
        "malformed lines are kept in _rejections"
    );
    assert_matches_route(first, &expected);
    for (label, dump) in &dumps[1..] {
        assert_eq!(
            dump.keys().collect::<Vec<_>>(),
            first.keys().collect::<Vec<_>>(),
            "tables of {label}"
        );
        for (table, contents) in first {
            assert_eq!(&dump[table], contents, "table {table} differs in {label}");
        }
    }
}

/// A property first seen in a later batch becomes a column in that batch; earlier rows
/// hold NULL there. Then SIGINT: the open batch commits and the process exits 0.
#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    skip_services,
    ignore = "needs PostgreSQL or the S3/SQS emulator; TRACKTABLE_SKIP_SERVICES is set"
)]
async fn new_property_becomes_a_column_in_its_batch_and_sigint_exits_cleanly() {
    let Some(client) = support::postgres().await else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("events");
    std::fs::create_dir_all(&source).unwrap();
    let schema = support::schema("newprop");
    let pipeline = support::pipeline_file(
        work.path(),
        &source,
        &work.path().join("state"),
        &schema,
        "300ms",
    );
    let mut child = run_until_stopped(&pipeline, &[], Stdio::inherit());

    let line = |id: &str, extra: &str| {
        format!(
            r#"{{"type":"track","event":"Song Played","messageId":"{id}","receivedAt":"2024-05-01T10:00:00Z","properties":{{"title":"t"{extra}}}}}"#
        )
    };
    std::fs::write(
        source.join("a.json"),
        format!("{}\n{}\n", line("a1", ""), line("a2", "")),
    )
    .unwrap();
    wait_for_count(&client, &schema, "song_played", 2).await;
    std::fs::write(
        source.join("b.json"),
        format!("{}\n", line("b1", r#","bpm":128"#)),
    )
    .unwrap();
    wait_for_count(&client, &schema, "song_played", 3).await;

    let rows = client
        .query(
            &format!("SELECT id, bpm FROM \"{schema}\".song_played ORDER BY id"),
            &[],
        )
        .await
        .expect("read song_played");
    let values: Vec<(String, Option<i64>)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        values,
        [
            ("a1".into(), None),
            ("a2".into(), None),
            ("b1".into(), Some(128))
        ]
    );
    let batches = client
        .query(&format!("SELECT batch FROM \"{schema}\"._tracktable_loads WHERE table_name = 'song_played' ORDER BY batch"), &[])
        .await
        .expect("read loads");
    assert_eq!(batches.len(), 2, "a.json and b.json loaded in two batches");

    // SIGINT: graceful shutdown with exit status 0.
    support::signal(child.id(), "INT");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "exit status after SIGINT: {status}");
            break;
        }
        assert!(Instant::now() < deadline, "no exit within 20 s of SIGINT");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    support::drop_schema(&client, &schema).await;
}

async fn wait_for_count(client: &tokio_postgres::Client, schema: &str, table: &str, count: i64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let found = client
            .query_opt(
                &format!("SELECT count(*) FROM \"{schema}\".\"{table}\""),
                &[],
            )
            .await
            .ok()
            .flatten()
            .map(|row| row.get::<_, i64>(0))
            .unwrap_or(0);
        if found >= count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{table} has {found} rows, wanted {count}, after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An idle pipeline parks its workers: under 5% of a core over several seconds.
#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    skip_services,
    ignore = "needs PostgreSQL or the S3/SQS emulator; TRACKTABLE_SKIP_SERVICES is set"
)]
async fn idle_pipeline_uses_almost_no_cpu() {
    let Some(client) = support::postgres().await else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("events");
    std::fs::create_dir_all(&source).unwrap();
    let schema = support::schema("idle");
    let pipeline = support::pipeline_file(
        work.path(),
        &source,
        &work.path().join("state"),
        &schema,
        "1s",
    );
    let mut child = run_until_stopped(&pipeline, &["--workers", "2"], Stdio::inherit());
    // Let it start up (connect, prepare), then measure a quiet window.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = cpu_seconds(child.id());
    let window = Duration::from_secs(5);
    tokio::time::sleep(window).await;
    let used = cpu_seconds(child.id()) - before;
    support::signal(child.id(), "INT");
    let _ = child.wait();
    support::drop_schema(&client, &schema).await;
    let share = used / window.as_secs_f64();
    assert!(
        share < 0.05,
        "idle pipeline used {:.1}% of a core",
        share * 100.0
    );
}

/// User + system CPU time of a process, from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc stat");
    // Fields after the parenthesised command name; utime and stime are 14th and 15th.
    let after = &stat[stat.rfind(')').expect("stat format") + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// A graceful stop waits for the open batch to commit; a second signal does not wait:
/// the process exits at once with 130, having acknowledged nothing of the blocked batch,
/// and a restart loads it exactly once.
#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    skip_services,
    ignore = "needs PostgreSQL or the S3/SQS emulator; TRACKTABLE_SKIP_SERVICES is set"
)]
async fn a_second_signal_exits_at_once_and_a_restart_loads_the_batch_once() {
    let Some(client) = support::postgres().await else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("events");
    let state = work.path().join("state");
    std::fs::create_dir_all(&source).unwrap();
    let schema = support::schema("second_signal");
    let pipeline = support::pipeline_file(work.path(), &source, &state, &schema, "300ms");
    let log = work.path().join("stderr.log");
    let stderr = std::fs::File::create(&log).expect("stderr file");
    let mut child = run_until_stopped(&pipeline, &[], stderr.into());

    // Every load blocks at its bookkeeping insert while this session holds the lock.
    let prepared = format!(
        "SELECT count(*) FROM information_schema.tables \
         WHERE table_schema = '{schema}' AND table_name = '_tracktable_loads'"
    );
    support::eventually(
        Duration::from_secs(60),
        "the schema is prepared",
        &log,
        || async { support::count(&client, &prepared).await == 1 },
    )
    .await;
    let locker = support::lock_loads(&schema).await;
    let lines: String = (1..=3)
        .map(|i| {
            format!(
                "{{\"type\":\"track\",\"event\":\"Song Played\",\"messageId\":\"s{i}\",\"properties\":{{\"n\":{i}}}}}\n"
            )
        })
        .collect();
    std::fs::write(source.join("songs.json"), lines).unwrap();
    support::eventually(
        Duration::from_secs(60),
        "a load waits on the lock",
        &log,
        || async { support::loads_are_waiting(&client, &schema).await },
    )
    .await;

    // The first signal asks for a graceful stop, which waits for the blocked batch.
    support::signal(child.id(), "INT");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "a graceful stop waits for the open batch to commit"
    );
    // The second does not.
    support::signal(child.id(), "INT");
    let status = support::wait_within(&mut child, Duration::from_secs(10), "second signal");
    assert_eq!(
        status.code(),
        Some(130),
        "exit status after a second signal"
    );
    let done = std::fs::read_dir(&state)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| std::fs::read_to_string(entry.path()).unwrap_or_default())
                .collect::<String>()
        })
        .unwrap_or_default();
    assert!(
        !done.contains("songs.json"),
        "nothing of the blocked batch is acknowledged: {done}"
    );
    locker.batch_execute("ROLLBACK").await.expect("unlock");

    // A restart loads the file; whatever the killed process's session did once the lock
    // was gone, every message is there exactly once.
    wait_ok(run_once(&pipeline, &[]), "restart");
    let rows = client
        .query(
            &format!("SELECT id, n FROM \"{schema}\".song_played ORDER BY id"),
            &[],
        )
        .await
        .expect("read song_played");
    let rows: Vec<(String, i64)> = rows.iter().map(|row| (row.get(0), row.get(1))).collect();
    assert_eq!(rows, [("s1".into(), 1), ("s2".into(), 2), ("s3".into(), 3)]);
    let done = std::fs::read_to_string(state.join("done-w0.log")).unwrap_or_default();
    assert!(
        done.contains("songs.json"),
        "acknowledged after the restart"
    );
    support::drop_schema(&client, &schema).await;
}
