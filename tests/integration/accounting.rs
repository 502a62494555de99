//! Nothing vanishes: for every hostile shape of input, each item comes out as a row, a
//! `_rejections` row or a whole-row discard, and the pipeline neither stalls nor
//! crashes on it.
//!
//! Each shape is generated with the number of items it holds (a line of only blanks
//! is not one; everything else a producer wrote is). In-process through decode and
//! route (and `explain`, which shows the same), through the real dataflow into the
//! counting warehouse, and where the warehouse matters (ids, exact numbers, system
//! column names, keys) into the real PostgreSQL, whose stored rows are checked.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tracktable::config::{BatchFile, PipelineFile};
use tracktable::decode::Limits;
use tracktable::route::{self, Router, Row, Value};

use crate::support;

/// One hostile input and what it must become.
struct Case {
    name: &'static str,
    bytes: Vec<u8>,
    /// Items in the input: each must be a row, a rejection or a whole-row discard.
    items: u64,
    /// Rejections it must produce, by code.
    rejections: &'static [(&'static str, u64)],
}

fn track(id: &str, properties: &str) -> String {
    format!(
        r#"{{"type":"track","event":"Hostile","messageId":"{id}","receivedAt":"2024-03-01T12:00:00Z","properties":{properties}}}"#
    )
}

fn lines(lines: &[String]) -> Vec<u8> {
    let mut text = lines.join("\n");
    text.push('\n');
    text.into_bytes()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).expect("writing to memory");
    encoder.finish().expect("writing to memory")
}

/// A gzip object cut short: the lines a reader gets whole before the stream breaks are
/// items, and the unreadable rest is one more (its `unreadable` rejection).
fn gzip_cut_short() -> Case {
    let text: Vec<String> = (0..3000)
        .map(|n| {
            track(
                &format!("gz-{n}"),
                &format!(r#"{{"n":{n},"pad":"{}"}}"#, "p".repeat(n % 50)),
            )
        })
        .collect();
    let whole = gzip(&lines(&text));
    let cut = whole[..whole.len() * 2 / 3].to_vec();
    let mut prefix = Vec::new();
    let read = flate2::read::MultiGzDecoder::new(&cut[..]).read_to_end(&mut prefix);
    assert!(read.is_err(), "a gzip stream cut short is an error");
    let complete = prefix.iter().filter(|&&byte| byte == b'\n').count() as u64;
    Case {
        name: "gzip cut short",
        bytes: cut,
        items: complete + 1,
        rejections: &[("unreadable", 1)],
    }
}

/// An array of tracks, one of every kind of syntax fault in four of its elements,
/// laid out on one line or pretty-printed.
fn faulty_array(name: &'static str, tag: &str, pretty: bool) -> Case {
    let elements: Vec<String> = (0..20)
        .map(|n| {
            let id = format!("{tag}-{n}");
            let text = match n {
                3 => track(&id, r#"{"s":"left open}"#),
                7 => track(&id, r#"{"s":"a","o":{"p":1}"#),
                12 => track(&id, r#"{"s":"the "best" one"}"#),
                15 => track(&id, r#"{"s":[1}"#),
                _ => track(&id, &format!(r#"{{"n":{n}}}"#)),
            };
            if pretty {
                // Elements begin their lines at the same column, as a pretty printer
                // lays them out.
                text.replace(",\"", ",\n    \"")
            } else {
                text
            }
        })
        .collect();
    let bytes = if pretty {
        format!("[\n  {}\n]\n", elements.join(",\n  "))
    } else {
        format!("[{}]", elements.join(","))
    }
    .into_bytes();
    Case {
        name,
        bytes,
        items: 20,
        rejections: &[("not_json", 4)],
    }
}

/// Every hostile shape, each object's message ids its own.
fn cases() -> Vec<Case> {
    let deep = format!(
        r#"{{"type":"track","event":"Hostile","properties":{}1{}}}"#,
        r#"{"a":"#.repeat(200),
        "}".repeat(200)
    );
    let mut bom = b"\xef\xbb\xbf".to_vec();
    bom.extend(lines(&[
        track("bom-1", "{}"),
        format!("\u{feff}{}", track("bom-2", "{}")),
    ]));
    vec![
        Case {
            name: "leading whitespace past every limit",
            bytes: lines(&[
                format!("{}{}", " \t".repeat(5 << 19), track("ws-1", "{}")),
                track("ws-2", "{}"),
                format!("{}{}", " ".repeat(5 << 20), track("ws-3", "{}")),
            ]),
            items: 3,
            rejections: &[("too_large", 2)],
        },
        Case {
            name: "a line of only blanks, however long, is no item",
            bytes: lines(&[" ".repeat(5 << 20), track("blank-1", "{}")]),
            items: 1,
            rejections: &[],
        },
        Case {
            name: "a line over the envelope limit",
            bytes: lines(&["x".repeat(5 << 20), track("long-1", "{}")]),
            items: 2,
            rejections: &[("too_large", 1)],
        },
        Case {
            name: "numeric ids beyond f64",
            bytes: lines(&[
                r#"{"type":"track","event":"Hostile","messageId":12345678901234567890123,"userId":98765432109876543210}"#.into(),
                r#"{"type":"track","event":"Hostile","messageId":12345678901234567890124,"userId":98765432109876543211}"#.into(),
            ]),
            items: 2,
            rejections: &[],
        },
        faulty_array("syntax faults in a one-line array", "arr", false),
        faulty_array("syntax faults in a pretty-printed array", "pretty", true),
        Case {
            name: "an array cut off inside an element",
            bytes: format!("[{},{},{{\"type\":\"tr", track("cut-1", "{}"), track("cut-2", "{}"))
                .into_bytes(),
            items: 3,
            rejections: &[("not_json", 1)],
        },
        Case {
            name: "integers beyond i64",
            bytes: lines(&[track(
                "int-1",
                r#"{"big":123456789012345678901234567890,"low":-9223372036854775809,"max":9223372036854775807}"#,
            )]),
            items: 1,
            rejections: &[],
        },
        Case {
            name: "system column names",
            bytes: lines(&[track(
                "sys-1",
                r#"{"xmin":1,"xmax":2,"cmin":3,"cmax":4,"ctid":"t","tableoid":5,"oid":6,"insertxid":7,"deletexid":8}"#,
            )]),
            items: 1,
            rejections: &[],
        },
        Case {
            name: "keys over a key column",
            bytes: lines(&[
                track(&"€".repeat(1000), "{}"),
                track(&"k".repeat(1024), "{}"),
                format!(r#"{{"type":"identify","messageId":"key-2","userId":"{}"}}"#, "é".repeat(600)),
                format!(r#"{{"type":"group","messageId":"key-3","groupId":"{}"}}"#, "g".repeat(2000)),
                format!(r#"{{"type":"page","messageId":"key-4","userId":"{}"}}"#, "é".repeat(600)),
            ]),
            items: 5,
            rejections: &[("key_too_long", 3)],
        },
        Case {
            name: "deeply nested",
            bytes: lines(&[deep, "[".repeat(100_000), track("deep-1", "{}")]),
            items: 3,
            rejections: &[("too_deep", 1), ("too_large", 1)],
        },
        Case {
            name: "invalid UTF-8",
            bytes: [
                b"{\"type\":\"track\",\"event\":\"\xff\xfe\",\"messageId\":\"utf-1\"}\n".as_slice(),
                track("utf-2", "{}").as_bytes(),
                b"\n[ is not an array here\n",
            ]
            .concat(),
            items: 3,
            rejections: &[("invalid_utf8", 1), ("not_json", 1)],
        },
        Case {
            name: "byte order marks",
            bytes: bom,
            items: 2,
            rejections: &[("not_json", 1)],
        },
        Case {
            name: "CRLF line ends",
            bytes: format!(
                "{}\r\n\r\n{}\r\n{}",
                track("crlf-1", "{}"),
                track("crlf-2", "{}"),
                track("crlf-3", "{}")
            )
            .into_bytes(),
            items: 3,
            rejections: &[],
        },
        Case {
            name: "empty objects and bare values",
            bytes: lines(&[
                "{}".into(),
                "   ".into(),
                "\"text\"".into(),
                "null".into(),
                "[]".into(),
                track("empty-1", "{}"),
            ]),
            items: 5,
            rejections: &[("missing_type", 1), ("not_an_object", 3)],
        },
        gzip_cut_short(),
        Case {
            name: "NUL bytes",
            bytes: [
                b"{\"type\":\"track\",\"event\":\"a\0b\",\"messageId\":\"nul-1\"}\n".as_slice(),
                track("nul-2", r#"{"s":"a\u0000b"}"#).as_bytes(),
                b"\n",
                track("nul-3\\u0000", "{}").as_bytes(),
                b"\n\0\0\0\n",
            ]
            .concat(),
            items: 4,
            rejections: &[("not_json", 2)],
        },
        Case {
            name: "an envelope with an element too large",
            bytes: lines(&[format!(
                r#"{{"batch":[{},{},{}]}}"#,
                track("env-1", "{}"),
                track("env-2", &format!(r#"{{"x":"{}"}}"#, "x".repeat(40_000))),
                track("env-3", "{}")
            )]),
            items: 3,
            rejections: &[("too_large", 1)],
        },
        Case {
            name: "every call type, and a drifting property",
            bytes: lines(&[
                r#"{"type":"page","messageId":"call-1","name":"Home"}"#.into(),
                r#"{"type":"screen","messageId":"call-2","name":"Feed"}"#.into(),
                r#"{"type":"identify","messageId":"call-3","userId":"u1","traits":{"plan":"pro"}}"#.into(),
                r#"{"type":"group","messageId":"call-4","groupId":"g1","traits":{"seats":3}}"#.into(),
                r#"{"type":"alias","messageId":"call-5","previousId":"a","userId":"u1"}"#.into(),
                track("call-6", r#"{"drift":1}"#),
                track("call-7", r#"{"drift":"one"}"#),
                track("call-8", r#"{"drift":true}"#),
            ]),
            items: 8,
            rejections: &[],
        },
    ]
}

/// Tables that hold a row per message: the call's own table. `tracks` repeats track
/// calls, `users` and `accounts` hold traits per id, `_rejections` is counted apart.
fn is_message_table(table: &str) -> bool {
    !matches!(table, "tracks" | "users" | "accounts" | "_rejections")
}

/// What decode and route made of one input.
#[derive(Debug, Default)]
struct Tally {
    messages: u64,
    rejections: BTreeMap<String, u64>,
}

impl Tally {
    fn rejected(&self) -> u64 {
        self.rejections.values().sum()
    }
}

fn tally(rows: &[Row]) -> Tally {
    let mut tally = Tally::default();
    for row in rows {
        if row.table.as_str() == "_rejections" {
            let Some(Value::Varchar(code)) = row.value("code") else {
                panic!("a rejection row without its code: {row:?}");
            };
            *tally.rejections.entry(code.to_string()).or_default() += 1;
        } else if is_message_table(row.table.as_str()) {
            tally.messages += 1;
        }
    }
    tally
}

/// Runs `work` on a thread of its own, failing the test if it takes over `limit`: a
/// stall is a failure with a name, not a hung test binary.
fn within<T: Send + 'static>(
    limit: Duration,
    what: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(work());
    });
    match finished.recv_timeout(limit) {
        Ok(result) => result,
        Err(_) => panic!("{what}: did not finish within {limit:?}"),
    }
}

/// Decode and route, in process: every item of every shape is a row or a rejection,
/// with the reasons expected, and `explain` reports the same counts.
#[test]
fn every_hostile_shape_is_accounted_for_by_decode_and_route() {
    for case in cases() {
        let name = case.name;
        let bytes = Arc::new(case.bytes);
        let (rows, summary) = within(Duration::from_secs(60), name, {
            let bytes = Arc::clone(&bytes);
            move || {
                let object: Arc<str> = Arc::from("hostile.json");
                let mut rows = Vec::new();
                let summary = route::rows_for_object(
                    &bytes[..],
                    &object,
                    &Limits::default(),
                    &mut Router::new(),
                    &mut rows,
                );
                (rows, summary)
            }
        });
        let tally = tally(&rows);
        assert_eq!(
            tally.messages + tally.rejected(),
            case.items,
            "{name}: items in = messages + rejections ({tally:?})"
        );
        assert_eq!(
            (summary.messages, summary.rejections),
            (tally.messages, tally.rejected()),
            "{name}: the decode summary counts what was routed"
        );
        let expected: BTreeMap<String, u64> = case
            .rejections
            .iter()
            .map(|(code, count)| ((*code).to_owned(), *count))
            .collect();
        assert_eq!(tally.rejections, expected, "{name}: rejections by reason");
        // Every rejection says where it was.
        for row in rows
            .iter()
            .filter(|row| row.table.as_str() == "_rejections")
        {
            assert!(row.position.line > 0, "{name}: {row:?}");
        }
        let explained = tracktable::explain::explain(
            &bytes[..],
            "hostile.json",
            &Limits::default(),
            std::io::sink(),
        )
        .expect("explain to a sink");
        assert_eq!(
            (explained.messages, explained.rejections),
            (summary.messages, summary.rejections),
            "{name}: explain shows the same"
        );
    }
}

/// The shapes whose result is in the values: ids that differ past the 16th digit stay
/// two, integers beyond i64 keep their digits (and `explain` shows them so), system
/// column names get a suffix, a syntax fault in an array keeps its raw text.
#[test]
fn hostile_values_keep_their_exact_text() {
    let by_name: BTreeMap<&str, Case> = cases().into_iter().map(|case| (case.name, case)).collect();
    let route = |name: &str| {
        let mut rows = Vec::new();
        route::rows_for_object(
            &by_name[name].bytes[..],
            &Arc::from("values.json"),
            &Limits::default(),
            &mut Router::new(),
            &mut rows,
        );
        rows
    };
    let ids: Vec<(String, Option<Value>)> = route("numeric ids beyond f64")
        .into_iter()
        .filter(|row| row.table.as_str() == "tracks")
        .map(|row| (row.message_id.clone(), row.value("user_id")))
        .collect();
    assert_eq!(
        ids,
        [
            (
                "12345678901234567890123".to_owned(),
                Some(Value::Varchar("98765432109876543210".into()))
            ),
            (
                "12345678901234567890124".to_owned(),
                Some(Value::Varchar("98765432109876543211".into()))
            ),
        ]
    );

    let rows = route("integers beyond i64");
    let event = rows
        .iter()
        .find(|row| row.table.as_str() == "hostile")
        .expect("the event row");
    assert_eq!(
        event.value("big"),
        Some(Value::Varchar("123456789012345678901234567890".into()))
    );
    assert_eq!(
        event.value("low"),
        Some(Value::Varchar("-9223372036854775809".into()))
    );
    assert_eq!(event.value("max"), Some(Value::BigInt(i64::MAX)));
    let mut explained = Vec::new();
    tracktable::explain::explain(
        &by_name["integers beyond i64"].bytes[..],
        "values.json",
        &Limits::default(),
        &mut explained,
    )
    .expect("explain into memory");
    let explained: serde_json::Value =
        serde_json::from_slice(&explained).expect("one JSON line per item");
    assert_eq!(
        explained["rows"][1]["columns"]["big"],
        serde_json::json!({"type": "varchar", "value": "123456789012345678901234567890"})
    );

    let rows = route("system column names");
    let event = rows
        .iter()
        .find(|row| row.table.as_str() == "hostile")
        .expect("the event row");
    let mut names: Vec<String> = event
        .cells()
        .map(|(name, _)| name.as_str().to_owned())
        .collect();
    names.retain(|name| !matches!(name.as_str(), "event" | "event_text" | "received_at"));
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "cmax_",
            "cmin_",
            "ctid_",
            "deletexid_",
            "insertxid_",
            "oid_",
            "tableoid_",
            "xmax_",
            "xmin_"
        ]
    );

    let rows = route("syntax faults in a one-line array");
    let raws: Vec<(u32, String)> = rows
        .iter()
        .filter(|row| row.table.as_str() == "_rejections")
        .map(|row| {
            let Some(Value::Varchar(raw)) = row.value("raw") else {
                panic!("a syntax fault keeps its raw text: {row:?}");
            };
            (row.position.element, raw.to_string())
        })
        .collect();
    let elements: Vec<u32> = raws.iter().map(|(element, _)| *element).collect();
    assert_eq!(elements, [4, 8, 13, 16]);
    for (element, raw) in &raws {
        assert!(
            raw.starts_with("{\"type\":\"track\"") && raw.contains(&format!("arr-{}", element - 1)),
            "element {element}: {raw}"
        );
    }
}

/// Every shape, one object each, through the real dataflow (two workers) into the
/// counting warehouse: the run finishes, and every item is a row or a rejection.
#[test]
fn hostile_objects_flow_through_the_dataflow_without_stalling() {
    let work = tempfile::tempdir().expect("tempdir");
    let source = work.path().join("events");
    std::fs::create_dir_all(&source).expect("source directory");
    let mut items = 0;
    for (index, case) in cases().into_iter().enumerate() {
        std::fs::write(source.join(format!("{index:02}.json")), &case.bytes).expect("write object");
        items += case.items;
    }
    let state = work.path().join("state");
    let warehouse = within(Duration::from_secs(180), "the dataflow run", move || {
        tracktable_testkit::counting::run_dir(&source, &state, 2, BatchFile::default())
    })
    .unwrap_or_else(|error| panic!("the run failed: {error}"));
    let (mut messages, mut rejections) = (0, 0);
    for load in warehouse.1.loads() {
        if load.table == "_rejections" {
            rejections += load.rows;
        } else if is_message_table(&load.table) {
            messages += load.rows;
        }
    }
    assert_eq!(
        messages + rejections,
        items,
        "{messages} messages, {rejections} rejections"
    );
}

/// Runs a `dir` pipeline once over `source` into `schema` of the test PostgreSQL, in
/// this process, failing the test if it does not finish.
async fn load(work: &Path, source: &Path, schema: &str, run: &str) {
    let state = work.join(format!("state-{run}"));
    let file = PipelineFile::local(
        schema,
        source,
        &state,
        &support::database_url(),
        schema,
        BatchFile::default(),
    );
    let pipeline = file
        .validate(&work.join(format!("{schema}.toml")))
        .expect("a valid pipeline");
    let what = format!("loading {run}");
    let result = tokio::task::spawn_blocking(move || {
        within(Duration::from_secs(180), &what, move || {
            tracktable::run::run(&pipeline, &tracktable::run::RunOptions::once(1))
                .map_err(|error| error.to_string())
        })
    })
    .await
    .expect("the run's thread");
    if let Err(error) = result {
        panic!("{run}: the run failed: {error}");
    }
}

/// Every shape into the real PostgreSQL: the run finishes (a long key, a system column
/// name or a NUL in a key retried forever before), and every item is a stored message,
/// a `_rejections` row or a whole-row discard.
#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    skip_services,
    ignore = "needs PostgreSQL or the S3/SQS emulator; TRACKTABLE_SKIP_SERVICES is set"
)]
async fn every_hostile_shape_is_loaded_rejected_or_discarded_in_postgres() {
    let Some(client) = support::postgres().await else {
        return;
    };
    let work = tempfile::tempdir().expect("tempdir");
    let source = work.path().join("events");
    std::fs::create_dir_all(&source).expect("source directory");
    let mut items = 0;
    for (index, case) in cases().into_iter().enumerate() {
        std::fs::write(source.join(format!("{index:02}.json")), &case.bytes).expect("write object");
        items += case.items;
    }
    let schema = support::schema("accounting");
    load(work.path(), &source, &schema, "hostile").await;

    let tables: Vec<String> = client
        .query(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1",
            &[&schema],
        )
        .await
        .expect("list tables")
        .iter()
        .map(|row| row.get(0))
        .filter(|table: &String| is_message_table(table) && !table.starts_with('_'))
        .collect();
    let mut stored = 0;
    for table in &tables {
        stored += support::count(
            &client,
            &format!("SELECT count(*) FROM \"{schema}\".\"{table}\""),
        )
        .await;
    }
    let rejected = support::count(
        &client,
        &format!("SELECT count(*) FROM \"{schema}\"._rejections"),
    )
    .await;
    // Whole rows discarded from a message's own table (a NUL in its message id).
    let discarded = support::count(
        &client,
        &format!(
            "SELECT count(*) FROM \"{schema}\"._discards WHERE column_name = '*' \
             AND table_name NOT IN ('tracks', 'users', 'accounts')"
        ),
    )
    .await;
    assert_eq!(discarded, 1, "the message id holding NUL");
    assert_eq!(
        (stored + rejected + discarded) as u64,
        items,
        "{stored} stored, {rejected} rejected, {discarded} discarded, in {tables:?}"
    );
    let key_too_long = support::count(
        &client,
        &format!("SELECT count(*) FROM \"{schema}\"._rejections WHERE code = 'key_too_long'"),
    )
    .await;
    assert_eq!(key_too_long, 3);
    support::drop_schema(&client, &schema).await;
}

/// The stored values of the shapes where the warehouse matters: two numeric message
/// ids equal as f64 are two rows; an integer beyond i64 is stored as its exact digits
/// (a new column: varchar) or, in a bigint column, kept in `_discards` with them;
/// system column names are stored under a suffix.
#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    skip_services,
    ignore = "needs PostgreSQL or the S3/SQS emulator; TRACKTABLE_SKIP_SERVICES is set"
)]
async fn postgres_stores_numeric_ids_big_integers_and_system_names_exactly() {
    let Some(client) = support::postgres().await else {
        return;
    };
    let work = tempfile::tempdir().expect("tempdir");
    let first = work.path().join("first");
    let second = work.path().join("second");
    std::fs::create_dir_all(&first).expect("source directory");
    std::fs::create_dir_all(&second).expect("source directory");
    let by_name: BTreeMap<&str, Case> = cases().into_iter().map(|case| (case.name, case)).collect();
    for name in [
        "numeric ids beyond f64",
        "integers beyond i64",
        "system column names",
    ] {
        std::fs::write(first.join(format!("{name}.json")), &by_name[name].bytes)
            .expect("write object");
    }
    std::fs::write(
        first.join("amount.json"),
        lines(&[track("amount-1", r#"{"amount":5}"#)]),
    )
    .expect("write object");
    let schema = support::schema("exact");
    load(work.path(), &first, &schema, "first").await;
    // A later batch: `amount` is a bigint column now.
    std::fs::write(
        second.join("amount.json"),
        lines(&[track(
            "amount-2",
            r#"{"amount":123456789012345678901234567890}"#,
        )]),
    )
    .expect("write object");
    load(work.path(), &second, &schema, "second").await;

    let ids: Vec<(String, String)> = client
        .query(
            &format!(
                "SELECT id, user_id FROM \"{schema}\".tracks WHERE id LIKE '1234%' ORDER BY 1"
            ),
            &[],
        )
        .await
        .expect("read ids")
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(
        ids,
        [
            (
                "12345678901234567890123".to_owned(),
                "98765432109876543210".to_owned()
            ),
            (
                "12345678901234567890124".to_owned(),
                "98765432109876543211".to_owned()
            ),
        ]
    );

    let row = client
        .query_one(
            &format!(
                "SELECT big, pg_typeof(big)::text, low, max FROM \"{schema}\".hostile \
                 WHERE id = 'int-1'"
            ),
            &[],
        )
        .await
        .expect("read the exact values");
    assert_eq!(
        row.get::<_, Option<String>>(0).as_deref(),
        Some("123456789012345678901234567890")
    );
    assert!(row.get::<_, String>(1).starts_with("character varying"));
    assert_eq!(
        row.get::<_, Option<String>>(2).as_deref(),
        Some("-9223372036854775809")
    );
    assert_eq!(row.get::<_, Option<i64>>(3), Some(i64::MAX));
    let names = client
        .query_one(
            &format!(
                "SELECT xmin_, ctid_, tableoid_, deletexid_ FROM \"{schema}\".hostile \
                 WHERE id = 'sys-1'"
            ),
            &[],
        )
        .await
        .expect("read the suffixed columns");
    assert_eq!(names.get::<_, Option<i64>>(0), Some(1));
    assert_eq!(names.get::<_, Option<String>>(1).as_deref(), Some("t"));
    assert_eq!(names.get::<_, Option<i64>>(2), Some(5));
    assert_eq!(names.get::<_, Option<i64>>(3), Some(8));

    let discard = client
        .query_one(
            &format!(
                "SELECT value, reason FROM \"{schema}\"._discards \
                 WHERE table_name = 'hostile' AND column_name = 'amount' AND message_id = 'amount-2'"
            ),
            &[],
        )
        .await
        .expect("the big amount is kept in _discards");
    assert_eq!(
        discard.get::<_, Option<String>>(0).as_deref(),
        Some("123456789012345678901234567890")
    );
    assert_eq!(
        discard.get::<_, String>(1),
        "value does not fit column type bigint"
    );
    support::drop_schema(&client, &schema).await;
}
