//! Framing tests, including chunk-boundary robustness (property tests).

use std::io::{Read, Write};

use proptest::prelude::*;

use super::*;

/// What a frame turned into, owned, for comparisons.
#[derive(Debug, Clone, PartialEq)]
enum Got {
    Item(Position, String),
    Rejected(Position, String),
}

fn collect(bytes: &[u8], limits: &Limits) -> (Vec<Got>, Result<FrameStats, String>) {
    collect_from(bytes, limits)
}

fn collect_from<R: Read>(reader: R, limits: &Limits) -> (Vec<Got>, Result<FrameStats, String>) {
    let mut got = Vec::new();
    let result = frames(reader, limits, |frame| match frame {
        Frame::Item { position, text } => got.push(Got::Item(position, text.to_owned())),
        Frame::Rejected {
            position, reason, ..
        } => got.push(Got::Rejected(position, reason.code().to_owned())),
    })
    .map_err(|failure| format!("{} at {}", failure.error, failure.position));
    (got, result)
}

fn items(got: &[Got]) -> Vec<(u64, u32, &str)> {
    got.iter()
        .filter_map(|g| match g {
            Got::Item(p, text) => Some((p.line, p.element, text.as_str())),
            Got::Rejected(..) => None,
        })
        .collect()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn limits() -> Limits {
    Limits {
        max_message_bytes: 64,
        max_depth: 8,
        max_envelope_bytes: 256,
    }
}

#[test]
fn ndjson_with_blank_lines_crlf_bom_and_no_final_newline() {
    let input = b"\xef\xbb\xbf{\"a\":1}\r\n\r\n   \n{\"b\":2}\n\n{\"c\":3}";
    let (got, result) = collect(input, &Limits::default());
    assert_eq!(
        items(&got),
        [
            (1, 0, "{\"a\":1}"),
            (4, 0, "{\"b\":2}"),
            (6, 0, "{\"c\":3}")
        ]
    );
    assert_eq!(result.unwrap().bytes, input.len() as u64);
}

#[test]
fn leading_blank_lines_count() {
    let (got, _) = collect(b"\n\n  {\"a\":1}\n", &Limits::default());
    assert_eq!(items(&got), [(3, 0, "{\"a\":1}")]);
}

#[test]
fn gzip_is_detected_by_content_including_concatenated_members() {
    let mut both = gzip(b"{\"a\":1}\n");
    both.extend(gzip(b"{\"b\":2}\n"));
    let (got, result) = collect(&both, &Limits::default());
    assert_eq!(items(&got), [(1, 0, "{\"a\":1}"), (2, 0, "{\"b\":2}")]);
    assert_eq!(result.unwrap().bytes, 16, "bytes count decompressed input");
}

#[test]
fn top_level_array_elements_stream_with_positions() {
    let input = b"  [\n {\"s\":\"a]b,c\\\"{\"}, [1,[2]],\n  3 ,\"x\",\n{\"n\":\n{}}\n]\n";
    let (got, result) = collect(input, &Limits::default());
    result.unwrap();
    assert_eq!(
        items(&got),
        [
            (2, 1, "{\"s\":\"a]b,c\\\"{\"}"),
            (2, 2, "[1,[2]]"),
            (3, 3, "3"),
            (3, 4, "\"x\""),
            (4, 5, "{\"n\":\n{}}")
        ]
    );
    let (empty, result) = collect(b"[]", &Limits::default());
    assert!(empty.is_empty());
    result.unwrap();
}

#[test]
fn broken_arrays_keep_what_came_before() {
    let (got, _) = collect(b"[{\"a\":1},{\"b\":", &Limits::default());
    assert_eq!(
        got[0],
        Got::Item(
            Position {
                line: 1,
                element: 1
            },
            "{\"a\":1}".into()
        )
    );
    assert_eq!(
        got[1],
        Got::Rejected(
            Position {
                line: 1,
                element: 2
            },
            "not_json".into()
        )
    );
    let (got, _) = collect(b"[1,2", &Limits::default());
    assert_eq!(got.len(), 2);
    assert!(matches!(got[1], Got::Rejected(_, ref code) if code == "not_json"));
    let (got, _) = collect(b"[1,,2]", &Limits::default());
    assert_eq!(
        got[0],
        Got::Item(
            Position {
                line: 1,
                element: 1
            },
            "1".into()
        )
    );
    assert!(matches!(got[1], Got::Rejected(_, ref code) if code == "not_json"));
    let (got, _) = collect(b"[1] x", &Limits::default());
    assert!(matches!(got[1], Got::Rejected(_, ref code) if code == "not_json"));
}

#[test]
fn envelopes_expand_but_batch_properties_do_not() {
    let input = b"{\"type\":\"track\",\"event\":\"e\",\"properties\":{\"batch\":[1]}}\n{\"sentAt\":\"x\",\"batch\":[{\"type\":\"track\"},{\"type\":\"page\"}]}\n";
    let (got, _) = collect(input, &Limits::default());
    let items = items(&got);
    assert_eq!(items.len(), 3);
    assert_eq!((items[0].0, items[0].1), (1, 0));
    assert_eq!(items[1], (2, 1, "{\"type\":\"track\"}"));
    assert_eq!(items[2], (2, 2, "{\"type\":\"page\"}"));
}

#[test]
fn too_large_lines_and_elements_are_rejected_without_stopping() {
    let big = format!("{{\"a\":\"{}\"}}", "x".repeat(100));
    let input = format!("{big}\n{{\"b\":1}}\n");
    let (got, _) = collect(input.as_bytes(), &limits());
    assert_eq!(got[0], Got::Rejected(Position::line(1), "too_large".into()));
    assert_eq!(got[1], Got::Item(Position::line(2), "{\"b\":1}".into()));
    // The reason carries the full size.
    let mut reasons = Vec::new();
    frames(input.as_bytes(), &limits(), |frame| {
        if let Frame::Rejected { reason, raw, .. } = frame {
            reasons.push((reason, raw.len()));
        }
    })
    .unwrap();
    assert_eq!(
        reasons,
        [(
            RejectReason::TooLarge {
                bytes: big.len() as u64,
                limit: 64
            },
            64
        )]
    );

    let array = format!("[{big},{{\"b\":1}}]");
    let (got, _) = collect(array.as_bytes(), &limits());
    assert_eq!(
        got[0],
        Got::Rejected(
            Position {
                line: 1,
                element: 1
            },
            "too_large".into()
        )
    );
    assert_eq!(
        got[1],
        Got::Item(
            Position {
                line: 1,
                element: 2
            },
            "{\"b\":1}".into()
        )
    );

    // Far over the envelope limit too: still one rejection, then the next line.
    let huge = format!("{}\n{{\"c\":1}}\n", "y".repeat(10_000));
    let (got, _) = collect(huge.as_bytes(), &limits());
    assert_eq!(
        got,
        [
            Got::Rejected(Position::line(1), "too_large".into()),
            Got::Item(Position::line(2), "{\"c\":1}".into())
        ]
    );
}

#[test]
fn invalid_utf8_is_rejected_per_item() {
    let input = b"{\"a\":\"\xff\"}\n{\"b\":1}\n";
    let mut offsets = Vec::new();
    let (got, _) = collect(input, &Limits::default());
    frames(&input[..], &Limits::default(), |frame| {
        if let Frame::Rejected {
            reason: RejectReason::InvalidUtf8 { offset },
            ..
        } = frame
        {
            offsets.push(offset);
        }
    })
    .unwrap();
    assert_eq!(offsets, [6]);
    assert_eq!(got[1], Got::Item(Position::line(2), "{\"b\":1}".into()));
}

#[test]
fn truncated_gzip_fails_after_the_good_lines() {
    let lines: String = (0..2000).map(|i| format!("{{\"n\":{i}}}\n")).collect();
    let compressed = gzip(lines.as_bytes());
    let cut = &compressed[..compressed.len() * 3 / 4];
    let (got, result) = collect(cut, &Limits::default());
    assert!(result.is_err(), "a truncated gzip stream is an error");
    assert!(got.len() > 100, "lines before the cut are yielded");
    for (index, item) in items(&got).iter().enumerate() {
        assert_eq!(item.0, index as u64 + 1);
    }
}

/// A reader that returns a few bytes per call, to move chunk boundaries around.
struct Trickle<'a> {
    bytes: &'a [u8],
    sizes: Vec<usize>,
    call: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let size = self.sizes[self.call % self.sizes.len()]
            .min(out.len())
            .min(self.bytes.len());
        self.call += 1;
        out[..size].copy_from_slice(&self.bytes[..size]);
        self.bytes = &self.bytes[size..];
        Ok(size)
    }
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i32>().prop_map(serde_json::Value::from),
        "[a-z\\[\\]{},\"\\\\ é]{0,8}".prop_map(serde_json::Value::from),
        Just(serde_json::Value::Null),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            proptest::collection::btree_map("[a-z]{1,3}", inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn ndjson_yields_every_non_blank_line(
        lines in proptest::collection::vec(prop_oneof![json_value().prop_map(|v| Some(v.to_string())), Just(None)], 0..20),
        crlf in any::<bool>(),
    ) {
        let ending = if crlf { "\r\n" } else { "\n" };
        let text: String = lines.iter().map(|line| format!("{}{ending}", line.as_deref().unwrap_or("  "))).collect();
        // Objects only: a first line starting with `[` would make it a JSON array.
        prop_assume!(!text.trim_start().starts_with('['));
        let (got, result) = collect(text.as_bytes(), &Limits::default());
        prop_assert!(result.is_ok());
        let expected: Vec<(u64, u32, &str)> = lines
            .iter()
            .enumerate()
            .filter_map(|(i, line)| line.as_deref().map(|l| (i as u64 + 1, 0, l)))
            .collect();
        prop_assert_eq!(items(&got), expected);
    }

    #[test]
    fn arrays_yield_every_element(values in proptest::collection::vec(json_value(), 0..12), spaces in proptest::collection::vec("[ \n]{0,3}", 12)) {
        let mut text = String::from("[");
        for (index, value) in values.iter().enumerate() {
            if index > 0 {
                text.push(',');
            }
            text.push_str(&spaces[index]);
            text.push_str(&serde_json::to_string_pretty(value).unwrap());
            text.push_str(&spaces[(index + 1) % spaces.len()]);
        }
        text.push(']');
        let (got, result) = collect(text.as_bytes(), &Limits::default());
        prop_assert!(result.is_ok());
        let parsed: Vec<serde_json::Value> = items(&got).iter().map(|(_, _, t)| serde_json::from_str(t).unwrap()).collect();
        prop_assert_eq!(parsed, values);
    }

    #[test]
    fn chunk_boundaries_do_not_matter(
        values in proptest::collection::vec(json_value(), 1..10),
        array in any::<bool>(),
        compress in any::<bool>(),
        sizes in proptest::collection::vec(1usize..8, 1..5),
    ) {
        let text = if array {
            serde_json::Value::Array(values).to_string()
        } else {
            values.iter().map(|v| format!("{{\"v\":{v}}}\n")).collect()
        };
        let bytes = if compress { gzip(text.as_bytes()) } else { text.into_bytes() };
        let whole = collect(&bytes[..], &Limits::default());
        let trickled = collect_from(Trickle { bytes: &bytes, sizes, call: 0 }, &Limits::default());
        prop_assert_eq!(whole, trickled);
    }
}
