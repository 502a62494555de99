//! Whole-stream properties of the generator: determinism, realism, growth, drift,
//! malformed lines and the objects `write_dir` writes.

use std::collections::{HashMap, HashSet};
use std::io::Read;

use serde_json::Value;

use super::*;

fn config(events: u64, seed: u64, drift_rate: f64, bad_rate: f64) -> GenConfig {
    GenConfig {
        events,
        seed,
        drift_rate,
        bad_rate,
    }
}

fn parse(line: &GeneratedLine) -> serde_json::Map<String, Value> {
    match serde_json::from_slice(&line.bytes) {
        Ok(Value::Object(object)) => object,
        other => panic!(
            "good line is not a JSON object ({other:?}): {}",
            String::from_utf8_lossy(&line.bytes)
        ),
    }
}

/// The object holding a message's properties or traits, if any.
fn properties(message: &serde_json::Map<String, Value>) -> Option<&serde_json::Map<String, Value>> {
    message
        .get("properties")
        .or_else(|| message.get("traits"))
        .and_then(Value::as_object)
}

fn shape(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[test]
fn same_config_same_lines_and_seeds_differ() {
    let a: Vec<_> = lines(&config(3_000, 7, 0.02, 0.05)).collect();
    let b: Vec<_> = lines(&config(3_000, 7, 0.02, 0.05)).collect();
    assert_eq!(a.len(), 3_000);
    assert_eq!(a, b);
    let c: Vec<_> = lines(&config(3_000, 8, 0.02, 0.05)).collect();
    assert_ne!(a, c);
}

#[test]
fn good_lines_are_segment_messages_in_the_intended_mix() {
    let mut counts: HashMap<String, usize> = HashMap::new();
    let mut missing_ids = 0;
    let mut last_received = String::new();
    for line in lines(&config(10_000, 1, 0.0, 0.0)) {
        assert!(!line.is_bad());
        let message = parse(&line);
        let kind = message["type"].as_str().unwrap().to_owned();
        match kind.as_str() {
            "track" => assert!(!message["event"].as_str().unwrap().is_empty()),
            "page" | "screen" => assert!(message["name"].is_string()),
            "identify" => assert!(message["traits"].is_object()),
            "group" => assert!(message["groupId"].is_string()),
            "alias" => {
                assert!(message["previousId"].is_string() && message["userId"].is_string())
            }
            other => panic!("unexpected type {other}"),
        }
        assert!(message.contains_key("userId") || message.contains_key("anonymousId"));
        assert!(message["context"]["library"]["name"].is_string());
        assert_eq!(message["version"], 2);
        for key in ["timestamp", "originalTimestamp", "sentAt", "receivedAt"] {
            let time = message[key].as_str().unwrap();
            assert_eq!(time.len(), 24, "{time}");
            assert!(time.ends_with('Z') && time.as_bytes()[19] == b'.', "{time}");
        }
        // The stream is in arrival order, as Segment's S3 destination writes it.
        let received = message["receivedAt"].as_str().unwrap().to_owned();
        assert!(received >= last_received);
        last_received = received;
        missing_ids += usize::from(!message.contains_key("messageId"));
        *counts.entry(kind).or_default() += 1;
    }
    let share = |kind: &str| counts.get(kind).copied().unwrap_or(0) as f64 / 10_000.0;
    for (kind, expected) in [
        ("track", 0.70),
        ("page", 0.15),
        ("identify", 0.06),
        ("screen", 0.05),
        ("group", 0.02),
        ("alias", 0.02),
    ] {
        let got = share(kind);
        assert!(
            (got - expected).abs() < expected * 0.25 + 0.005,
            "{kind}: {got} vs {expected}"
        );
    }
    assert!(
        (10..=120).contains(&missing_ids),
        "{missing_ids} without messageId"
    );
}

#[test]
fn many_events_and_the_schema_keeps_growing() {
    let mut events = HashSet::new();
    let mut early_props = HashSet::new();
    let mut late_props = HashSet::new();
    for (n, line) in lines(&config(50_000, 3, 0.0, 0.0)).enumerate() {
        let message = parse(&line);
        if let Some(event) = message.get("event").and_then(Value::as_str) {
            events.insert(event.to_owned());
        }
        let Some(props) = properties(&message) else {
            continue;
        };
        let names = props.keys().cloned();
        if n < 10_000 {
            early_props.extend(names);
        } else if n >= 40_000 {
            late_props.extend(names);
        }
    }
    assert!(events.len() >= 40, "only {} event names", events.len());
    let new: Vec<_> = late_props.difference(&early_props).collect();
    assert!(!new.is_empty(), "no new property names late in the run");
}

#[test]
fn no_drift_means_one_type_per_property_and_drift_adds_more() {
    fn types(drift_rate: f64) -> (usize, usize) {
        let mut seen: HashMap<(String, String), HashSet<&'static str>> = HashMap::new();
        for line in lines(&config(20_000, 5, drift_rate, 0.0)) {
            let message = parse(&line);
            let table = message
                .get("event")
                .and_then(Value::as_str)
                .unwrap_or_else(|| message["type"].as_str().unwrap())
                .to_owned();
            for (name, value) in properties(&message).into_iter().flatten() {
                seen.entry((table.clone(), name.clone()))
                    .or_default()
                    .insert(shape(value));
            }
        }
        let mixed = seen.values().filter(|shapes| shapes.len() > 1).count();
        (seen.len(), mixed)
    }
    let (columns, mixed) = types(0.0);
    assert!(columns > 300, "{columns} columns");
    assert_eq!(mixed, 0, "types vary without drift");
    let (_, mixed) = types(0.05);
    assert!(mixed > 50, "only {mixed} properties drifted");
}

#[test]
fn bad_lines_come_at_the_rate_asked_and_in_every_kind() {
    assert!(lines(&config(5_000, 2, 0.1, 0.0)).all(|line| !line.is_bad()));
    let mut kinds = HashSet::new();
    let mut bad = 0;
    for line in lines(&config(10_000, 2, 0.0, 0.1)) {
        let Some(kind) = line.bad else {
            parse(&line);
            continue;
        };
        bad += 1;
        kinds.insert(kind);
        check_malformed(kind, &line.bytes);
    }
    assert!((800..=1200).contains(&bad), "{bad} bad lines");
    assert_eq!(kinds.len(), Malformed::ALL.len());
}

/// Each malformed line is broken in its own way and no other.
fn check_malformed(kind: Malformed, bytes: &[u8]) {
    let text = std::str::from_utf8(bytes);
    if kind == Malformed::InvalidUtf8 {
        assert!(text.is_err());
        return;
    }
    let text = text.expect("only InvalidUtf8 lines are not UTF-8");
    if kind == Malformed::TooLarge {
        assert!(bytes.len() > 32 * 1024);
    } else {
        assert!(bytes.len() < 32 * 1024, "{kind:?} line is too large");
    }
    let value: Result<Value, _> = serde_json::from_str(text);
    match kind {
        Malformed::NotJson => assert!(value.is_err()),
        Malformed::TooDeep => {
            // serde_json's own recursion limit (128) is above our 100 levels.
            let value = value.unwrap();
            let mut depth = 0;
            let mut node = &value["properties"]["nested"];
            while let Some(inner) = node.get("a") {
                depth += 1;
                node = inner;
            }
            assert!(depth > 64, "only {depth} levels");
        }
        Malformed::NotAnObject => assert!(!value.unwrap().is_object()),
        Malformed::MissingType => assert!(value.unwrap().get("type").is_none()),
        Malformed::UnknownType => {
            let value = value.unwrap();
            let kind = value["type"].as_str().unwrap();
            assert!(!["track", "identify", "page", "screen", "group", "alias"].contains(&kind));
        }
        Malformed::TrackWithoutEvent => {
            let value = value.unwrap();
            assert_eq!(value["type"], "track");
            assert!(value.get("event").is_none());
        }
        Malformed::TooLarge => assert_eq!(value.unwrap()["type"], "track"),
        Malformed::InvalidUtf8 => unreachable!(),
    }
}

#[test]
fn write_dir_writes_numbered_gzip_objects() {
    let dir = tempfile::TempDir::new().unwrap();
    let out = dir.path().join("out");
    let cfg = config(2_345, 9, 0.01, 0.02);
    let summary = write_dir(&cfg, &out, 1_000).unwrap();
    assert_eq!(summary.objects, 3);
    assert_eq!(summary.lines, 2_345);
    let mut names: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "events-000001.ndjson.gz",
            "events-000002.ndjson.gz",
            "events-000003.ndjson.gz"
        ]
    );
    let mut all = Vec::new();
    let mut bytes = 0;
    for name in &names {
        let compressed = std::fs::read(out.join(name)).unwrap();
        bytes += compressed.len() as u64;
        let mut text = Vec::new();
        flate2::read::GzDecoder::new(&compressed[..])
            .read_to_end(&mut text)
            .unwrap();
        all.extend_from_slice(&text);
    }
    assert_eq!(summary.bytes, bytes);
    let written: Vec<&[u8]> = all
        .strip_suffix(b"\n")
        .unwrap()
        .split(|&b| b == b'\n')
        .collect();
    let expected: Vec<GeneratedLine> = lines(&cfg).collect();
    assert_eq!(written.len(), 2_345);
    assert!(
        written
            .iter()
            .zip(&expected)
            .all(|(w, e)| *w == &e.bytes[..])
    );
    let bad = expected.iter().filter(|line| line.is_bad()).count() as u64;
    assert_eq!(summary.bad_lines, bad);
}

#[test]
fn object_names_sort_in_order() {
    assert_eq!(object_name(1, 3), "events-000001.ndjson.gz");
    assert_eq!(object_name(12, 1_234_567), "events-0000012.ndjson.gz");
}
