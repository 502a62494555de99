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
        got,
        [
            Got::Item(at(1, 1), "1".into()),
            Got::Rejected(at(1, 2), "not_json".into()),
            Got::Item(at(1, 3), "2".into()),
        ],
        "an empty element costs itself only"
    );
    let (got, _) = collect(b"[1] x", &Limits::default());
    assert!(matches!(got[1], Got::Rejected(_, ref code) if code == "not_json"));
}

fn at(line: u64, element: u32) -> Position {
    Position { line, element }
}

/// Every frame with the raw text of rejections, for the resynchronisation cases.
fn frames_with_raw(bytes: &[u8], limits: &Limits) -> Vec<(Position, Result<String, String>)> {
    let mut got = Vec::new();
    frames(bytes, limits, |frame| match frame {
        Frame::Item { position, text } => got.push((position, Ok(text.to_owned()))),
        Frame::Rejected {
            position,
            reason,
            raw,
        } => got.push((
            position,
            Err(format!(
                "{}: {}",
                reason.code(),
                String::from_utf8_lossy(raw)
            )),
        )),
    })
    .expect("in memory");
    got
}

#[test]
fn a_string_left_open_costs_its_element_only() {
    // Single line: the open string swallows `},{` and the next key shows the fault;
    // the scanner looks back to the `{` after the `,` and scans from there again.
    let got = frames_with_raw(
        br#"[{"a":"x},{"b":1},{"c":"y},{"d":2}]"#,
        &Limits::default(),
    );
    assert_eq!(
        got,
        [
            (at(1, 1), Err(r#"not_json: {"a":"x}"#.into())),
            (at(1, 2), Ok(r#"{"b":1}"#.into())),
            (at(1, 3), Err(r#"not_json: {"c":"y}"#.into())),
            (at(1, 4), Ok(r#"{"d":2}"#.into())),
        ]
    );
    // Pretty-printed: elements begin lines at column 2, and so do resynchronisation
    // points; a nested object at a deeper column is not one.
    let pretty =
        "[\n  {\n    \"a\": \"x,\n    \"o\": {\"p\": 1}\n  },\n  {\n    \"b\": 1\n  }\n]\n";
    let got = frames_with_raw(pretty.as_bytes(), &Limits::default());
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0].0, at(2, 1));
    assert!(
        matches!(&got[0].1, Err(raw) if raw.starts_with("not_json: {\n    \"a\": \"x,") && raw.ends_with('}')),
        "{got:?}"
    );
    assert_eq!(got[1], (at(6, 2), Ok("{\n    \"b\": 1\n  }".into())));
}

#[test]
fn missing_and_extra_brackets_and_quotes_cost_their_element_only() {
    let limits = Limits::default();
    // A missing `}`: the `{` where a key should be begins the next element.
    assert_eq!(
        frames_with_raw(br#"[{"a":1,{"b":2}]"#, &limits),
        [
            (at(1, 1), Err(r#"not_json: {"a":1"#.into())),
            (at(1, 2), Ok(r#"{"b":2}"#.into())),
        ]
    );
    // An extra `}`: the stray bracket is rejected on its own.
    assert_eq!(
        frames_with_raw(br#"[{"a":1}},{"b":2}]"#, &limits),
        [
            (at(1, 1), Ok(r#"{"a":1}"#.into())),
            (at(1, 2), Err("not_json: }".into())),
            (at(1, 3), Ok(r#"{"b":2}"#.into())),
        ]
    );
    // Unescaped quotes inside a value: skipped forward to the next element.
    assert_eq!(
        frames_with_raw(br#"[{"n":"The "Best" one","m":[1]},{"b":2}]"#, &limits),
        [
            (
                at(1, 1),
                Err(r#"not_json: {"n":"The "Best" one","m":[1]}"#.into())
            ),
            (at(1, 2), Ok(r#"{"b":2}"#.into())),
        ]
    );
    // A bracket that does not match.
    assert_eq!(
        frames_with_raw(br#"[{"a":[1}, {"b":2}]"#, &limits),
        [
            (at(1, 1), Err(r#"not_json: {"a":[1}"#.into())),
            (at(1, 2), Ok(r#"{"b":2}"#.into())),
        ]
    );
    // A string left open in the last element: the rest of the object is that element.
    assert_eq!(
        frames_with_raw(br#"[{"a":1},{"b":"open}]"#, &limits),
        [
            (at(1, 1), Ok(r#"{"a":1}"#.into())),
            (at(1, 2), Err(r#"not_json: {"b":"open}]"#.into())),
        ]
    );
}

#[test]
fn structure_keeping_faults_are_framed_for_the_parser() {
    let limits = Limits::default();
    // A raw line break inside a string, a bad literal, a missing `,` between elements,
    // a trailing `,`, and arrays one after another.
    let input = b"[{\"a\":\"x\ny\"},\n{\"b\":tru},{\"c\":1} {\"d\":2},]\n[{\"e\":3}] x";
    assert_eq!(
        frames_with_raw(input, &limits),
        [
            (at(1, 1), Ok("{\"a\":\"x\ny\"}".into())),
            (at(3, 2), Ok("{\"b\":tru}".into())),
            (at(3, 3), Ok("{\"c\":1}".into())),
            (at(3, 4), Ok("{\"d\":2}".into())),
            (at(3, 5), Err("not_json: ".into())),
            (at(4, 6), Ok("{\"e\":3}".into())),
            (at(4, 7), Err("not_json: x".into())),
        ]
    );
}

#[test]
fn leading_whitespace_counts_toward_an_items_size() {
    // A line of blanks longer than any limit before an event: one rejection, with the
    // start of the event as its text, and the buffer never beyond the limit.
    let limits = limits();
    let line_limit = limits.max_envelope_bytes;
    let padded = format!("{}{{\"a\":1}}", " \t".repeat(50_000));
    for first in [true, false] {
        let input = if first {
            format!("{padded}\n{{\"b\":2}}\n")
        } else {
            format!("{{\"z\":0}}\n{padded}\r\n{{\"b\":2}}\n")
        };
        let line = if first { 1 } else { 2 };
        let got = frames_with_raw(input.as_bytes(), &limits);
        let expected_bytes = padded.len();
        let tail = &got[got.len() - 2..];
        assert_eq!(
            tail,
            [
                (Position::line(line), Err("too_large: {\"a\":1}".into())),
                (Position::line(line + 1), Ok("{\"b\":2}".into())),
            ],
            "first line: {first}"
        );
        let mut sizes = Vec::new();
        let mut reader = FrameReader::new(input.as_bytes(), &limits).expect("in memory");
        while reader
            .next_frames(usize::MAX, &mut |frame| {
                if let Frame::Rejected {
                    reason: RejectReason::TooLarge { bytes, .. },
                    ..
                } = frame
                {
                    sizes.push(bytes);
                }
            })
            .expect("in memory")
        {}
        assert_eq!(sizes, [expected_bytes as u64]);
        assert!(reader.framer.buffer.capacity() <= 2 * (line_limit + 1));
    }
    // A line of nothing but blanks, however long, is not an item.
    let blank = format!("{}\n{{\"b\":2}}\n", " ".repeat(100_000));
    assert_eq!(
        frames_with_raw(blank.as_bytes(), &limits),
        [(Position::line(2), Ok("{\"b\":2}".into()))]
    );
    // Within the limit, blanks around an item are still counted: 60 + 7 > 64.
    let near = format!("{}{{\"a\":1}}\n", " ".repeat(60));
    assert!(matches!(
        &frames_with_raw(near.as_bytes(), &limits)[0].1,
        Err(raw) if raw.starts_with("too_large")
    ));
    // An array element's leading whitespace counts too.
    let array = format!("[{}{{\"a\":1}},{{\"b\":2}}]", " ".repeat(100));
    assert_eq!(
        frames_with_raw(array.as_bytes(), &limits),
        [
            (at(1, 1), Err("too_large: {\"a\":1}".into())),
            (at(1, 2), Ok("{\"b\":2}".into())),
        ]
    );
}

#[test]
fn envelopes_count_blanks_and_refuse_lines_over_their_limit() {
    let limits = limits();
    // An envelope element padded past the message limit.
    let padded = format!(
        "{{\"batch\":[{{\"a\":1}},{}{{\"b\":2}}]}}\n",
        " ".repeat(70)
    );
    assert_eq!(
        frames_with_raw(padded.as_bytes(), &limits),
        [
            (at(1, 1), Ok("{\"a\":1}".into())),
            (at(1, 2), Err("too_large: {\"b\":2}".into())),
        ]
    );
    // An envelope whose line (blanks first) is over the envelope limit: one rejection.
    let over = format!("{}{{\"batch\":[{{\"a\":1}}]}}\n", " ".repeat(300));
    let got = frames_with_raw(over.as_bytes(), &limits);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(matches!(&got[0].1, Err(raw) if raw.starts_with("too_large: {\"batch\"")));
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

/// One object element of the resynchronisation properties: a number, a nested object
/// and a string, last, whose quotes the corruptions break. `pretty` lays it out over
/// lines, indented as `serde_json::to_string_pretty` does inside an array.
fn element(n: usize, pretty: bool) -> String {
    if pretty {
        format!("{{\n    \"n\": {n},\n    \"o\": {{\"p\": 1}},\n    \"k\": \"v{n}\"\n  }}")
    } else {
        format!("{{\"n\":{n},\"o\":{{\"p\":1}},\"k\":\"v{n}\"}}")
    }
}

/// A syntax fault in one element's text.
fn corrupt(text: &str, n: usize, how: u8) -> String {
    let value = format!("\"v{n}\"");
    match how {
        // The string is left open: every later quote flips.
        0 => text.replace(&value, &format!("\"v{n}")),
        // The element's `}` is missing.
        1 => text[..text.len() - 1].to_owned(),
        // Unescaped quotes inside the value, in a pair and alone.
        2 => text.replace(&value, "\"a \"q\" b\""),
        3 => text.replace(&value, "\"a \"q b\""),
        // A bracket that does not match.
        _ => text
            .replace("{\"p\": 1}", "{\"p\": [1}")
            .replace("{\"p\":1}", "{\"p\":[1}"),
    }
}

/// The elements laid out as one line (0), one per line (1) or pretty-printed (2).
fn lay_out(elements: &[String], style: u8) -> String {
    match style {
        0 => format!("[{}]", elements.join(",")),
        1 => format!("[\n{}\n]\n", elements.join(",\n")),
        _ => format!("[\n  {}\n]\n", elements.join(",\n  ")),
    }
}

proptest! {
    /// A syntax fault inside a top-level array costs exactly its element: every other
    /// element is framed with its exact text and position, whatever the layout, and
    /// however the input is cut into reads.
    #[test]
    fn a_fault_in_an_array_costs_only_its_element(
        count in 1usize..8,
        faulty in 0usize..8,
        how in 0u8..5,
        style in 0u8..3,
        sizes in proptest::collection::vec(1usize..9, 1..5),
    ) {
        let faulty = faulty % count;
        let pretty = style == 2;
        let elements: Vec<String> = (0..count)
            .map(|n| {
                let text = element(n, pretty);
                if n == faulty { corrupt(&text, n, how) } else { text }
            })
            .collect();
        let input = lay_out(&elements, style);
        let whole = frames_with_raw(input.as_bytes(), &Limits::default());
        prop_assert_eq!(whole.len(), count, "{}\n{:?}", input, whole);
        for (n, (position, got)) in whole.iter().enumerate() {
            prop_assert_eq!(position.element as usize, n + 1);
            if n == faulty {
                prop_assert!(matches!(got, Err(raw) if raw.starts_with("not_json: {")), "{:?}", got);
            } else {
                prop_assert_eq!(got, &Ok(element(n, pretty)), "{}", input);
            }
        }
        let mut trickled = Vec::new();
        frames(Trickle { bytes: input.as_bytes(), sizes, call: 0 }, &Limits::default(), |frame| {
            trickled.push(match frame {
                Frame::Item { position, text } => (position, Ok(text.to_owned())),
                Frame::Rejected { position, reason, raw } => (
                    position,
                    Err(format!("{}: {}", reason.code(), String::from_utf8_lossy(raw))),
                ),
            });
        })
        .expect("in memory");
        prop_assert_eq!(trickled, whole);
    }

    /// Any bytes after a `[`: the scanner frames every element, empty ones included,
    /// once, in order, the same way however the input is cut into reads, and holds no
    /// element beyond the limit.
    #[test]
    fn hostile_arrays_frame_every_element_once_whatever_the_reads(
        body in proptest::collection::vec(prop_oneof![
            Just(b'{'), Just(b'}'), Just(b'['), Just(b']'), Just(b','), Just(b':'),
            Just(b'"'), Just(b'\\'), Just(b' '), Just(b'\n'), Just(b'a'), Just(b'1'),
        ], 0..300),
        sizes in proptest::collection::vec(1usize..9, 1..5),
    ) {
        let mut input = b"[".to_vec();
        input.extend(&body);
        let limits = limits();
        let whole = collect(&input, &limits);
        let trickled = collect_from(Trickle { bytes: &input, sizes, call: 0 }, &limits);
        prop_assert_eq!(&whole, &trickled);
        let (got, result) = whole;
        prop_assert!(result.is_ok());
        let mut elements = Vec::new();
        frames(&input[..], &limits, |frame| match frame {
            Frame::Item { position, text } => {
                elements.push((position.element, text.len()));
            }
            Frame::Rejected { position, raw, .. } => elements.push((position.element, raw.len())),
        })
        .expect("in memory");
        prop_assert_eq!(elements.len(), got.len());
        for (n, (index, held)) in elements.iter().enumerate() {
            prop_assert_eq!(*index as usize, n + 1, "{:?}", got);
            prop_assert!(*held <= limits.max_message_bytes);
        }
    }
}
