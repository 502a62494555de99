//! decode: an object's bytes → Segment messages, or rejections that say why.
//!
//! Streaming: the object is read through a `BufRead` (gunzipped when it starts with the
//! gzip magic bytes, whatever its key says) and framed item by item, so an object of
//! any size is decoded in memory bounded by the item limits. Framing accepts
//! newline-delimited JSON, a top-level JSON array, and Segment's `{"batch": [...]}`
//! envelope (see [`frame`]). Every item yields exactly one [`Decoded`]: a message
//! borrowing from the item's text, or a [`Rejection`] with its reason, object and
//! position. Nothing here does network I/O; sources hand in readers.

pub mod frame;
pub mod json;
pub mod message;
pub mod reject;
mod scan;

use std::io::Read;
use std::sync::Arc;

pub use json::{Json, JsonObject};
pub use message::{Message, MessageKind};
pub use reject::{Position, RejectReason, Rejection};

use crate::stable_hash;

/// Size and shape limits that protect the decoder from hostile input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest single message, in bytes (Segment's own limit is 32 KiB).
    pub max_message_bytes: usize,
    /// Deepest nesting of objects and arrays in a message (at most
    /// [`json::MAX_SUPPORTED_DEPTH`]).
    pub max_depth: usize,
    /// Largest `{"batch": [...]}` envelope held in memory at once, in bytes.
    pub max_envelope_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_message_bytes: 32 * 1024,
            max_depth: 32,
            max_envelope_bytes: 4 * 1024 * 1024,
        }
    }
}

/// One decoded item.
// Messages are the hot path and never stored: boxing them would cost an allocation per
// message to save stack space in a value that lives for one callback.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Decoded<'a> {
    Message {
        position: Position,
        message: Message<'a>,
        /// The item's text, for the tracking plan's `_rejections` rows.
        raw: &'a str,
    },
    Rejected(Rejection),
}

/// Counts for one object.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecodeSummary {
    pub messages: u64,
    pub rejections: u64,
    /// Rejections by reason, indexed like [`RejectReason::CODES`].
    pub by_reason: [u64; RejectReason::CODES.len()],
    /// Bytes read after decompression.
    pub bytes: u64,
}

impl DecodeSummary {
    /// Counts one rejection.
    pub fn reject(&mut self, reason: &RejectReason) {
        self.rejections += 1;
        self.by_reason[reason.index()] += 1;
    }

    /// Adds the rejections counted elsewhere (the tracking plan's, in route).
    pub fn add_rejections(&mut self, other: &DecodeSummary) {
        self.rejections += other.rejections;
        for (mine, theirs) in self.by_reason.iter_mut().zip(other.by_reason) {
            *mine += theirs;
        }
    }

    /// (reason code, count) for every reason that occurred.
    pub fn reasons(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        RejectReason::CODES
            .iter()
            .zip(self.by_reason)
            .filter(|(_, count)| *count > 0)
            .map(|(code, count)| (*code, count))
    }
}

/// The id given to a message that has no `messageId`: derived from where it sits, so
/// decoding the same object again gives the same id and the load stays idempotent.
pub fn derived_message_id(object: &str, position: Position) -> String {
    let hash = stable_hash::fnv1a64(&[object.as_bytes()]);
    if position.element == 0 {
        format!("tt-{hash:016x}-{}", position.line)
    } else {
        format!("tt-{hash:016x}-{}-{}", position.line, position.element)
    }
}

/// Decodes one object, calling `on_item` once per item in order.
///
/// A read error (a truncated gzip stream, say) ends the object with one
/// [`RejectReason::Unreadable`] rejection at the position where reading stopped; the
/// items before it stand. The summary counts it.
pub fn decode_object<R: Read>(
    reader: R,
    object: &Arc<str>,
    limits: &Limits,
    mut on_item: impl FnMut(Decoded<'_>),
) -> DecodeSummary {
    let mut decoder = ObjectDecoder::new(reader, object, limits);
    while decoder.decode_some(usize::MAX, &mut on_item) {}
    decoder.summary()
}

/// One object decoded a part at a time: [`ObjectDecoder::decode_some`] decodes about
/// as many items as it is asked for, so the dataflow can stop between parts, however
/// large the object. The same items and summary as [`decode_object`].
pub struct ObjectDecoder<'r> {
    frames: Option<frame::FrameReader<'r>>,
    /// Opening failed: reported by the first `decode_some`.
    failed: Option<frame::FrameFailure>,
    object: Arc<str>,
    limits: Limits,
    summary: DecodeSummary,
}

impl<'r> ObjectDecoder<'r> {
    pub fn new<R: Read + 'r>(reader: R, object: &Arc<str>, limits: &Limits) -> ObjectDecoder<'r> {
        let (frames, failed) = match frame::FrameReader::new(reader, limits) {
            Ok(frames) => (Some(frames), None),
            Err(failure) => (None, Some(failure)),
        };
        ObjectDecoder {
            frames,
            failed,
            object: Arc::clone(object),
            limits: *limits,
            summary: DecodeSummary::default(),
        }
    }

    /// Decodes about `items` more items, calling `on_item` once per item in order.
    /// Returns whether any of the object is left.
    pub fn decode_some(&mut self, items: usize, on_item: &mut dyn FnMut(Decoded<'_>)) -> bool {
        let ObjectDecoder {
            frames,
            failed,
            object,
            limits,
            summary,
        } = self;
        let outcome = match frames.as_mut() {
            Some(frames) => frames.next_frames(items, &mut |frame| match frame {
                frame::Frame::Item { position, text } => {
                    match decode_item(text, object, position, limits) {
                        Ok(message) => {
                            summary.messages += 1;
                            on_item(Decoded::Message {
                                position,
                                message,
                                raw: text,
                            });
                        }
                        Err(reason) => {
                            summary.reject(&reason);
                            on_item(Decoded::Rejected(Rejection::new(
                                object,
                                position,
                                reason,
                                text.as_bytes(),
                            )));
                        }
                    }
                }
                frame::Frame::Rejected {
                    position,
                    reason,
                    raw,
                } => {
                    summary.reject(&reason);
                    on_item(Decoded::Rejected(Rejection::new(
                        object, position, reason, raw,
                    )));
                }
            }),
            None => match failed.take() {
                Some(failure) => Err(failure),
                None => Ok(false),
            },
        };
        if let Some(frames) = frames.as_ref() {
            summary.bytes = frames.stats().bytes;
        }
        match outcome {
            Ok(more) => more,
            Err(failure) => {
                summary.bytes = failure.bytes;
                let reason = RejectReason::Unreadable(failure.error.to_string());
                summary.reject(&reason);
                on_item(Decoded::Rejected(Rejection::new(
                    object,
                    failure.position,
                    reason,
                    b"",
                )));
                *frames = None;
                false
            }
        }
    }

    /// The object's name.
    pub fn object(&self) -> &Arc<str> {
        &self.object
    }

    /// Counts so far; the object's once `decode_some` has returned false.
    pub fn summary(&self) -> DecodeSummary {
        self.summary
    }
}

/// Parses one framed item into a message.
pub fn decode_item<'a>(
    text: &'a str,
    object: &str,
    position: Position,
    limits: &Limits,
) -> Result<Message<'a>, RejectReason> {
    let value =
        json::parse_keeping(text, limits.max_depth, &message::ID_FIELDS).map_err(|error| {
            match error {
                json::ParseError::TooDeep { limit } => RejectReason::TooDeep { limit },
                json::ParseError::Syntax(detail) => RejectReason::NotJson(detail),
            }
        })?;
    Message::from_json(value, || derived_message_id(object, position))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixed_file_yields_every_good_line_and_every_reason() {
        let deep = format!(
            "{{\"type\":\"track\",\"event\":\"e\",\"properties\":{}1{}}}",
            "{\"a\":".repeat(40),
            "}".repeat(40)
        );
        let huge = format!(
            "{{\"type\":\"track\",\"event\":\"e\",\"properties\":{{\"x\":\"{}\"}}}}",
            "x".repeat(40_000)
        );
        let good =
            |n: u32| format!("{{\"type\":\"track\",\"event\":\"Good\",\"messageId\":\"g{n}\"}}");
        let mut lines: Vec<Vec<u8>> = vec![
            good(1).into_bytes(),
            b"{\"type\":\"track\",".to_vec(),
            good(2).into_bytes(),
            b"[1,2]".to_vec(),
            b"{\"event\":\"no type\"}".to_vec(),
            b"{\"type\":\"tarck\",\"event\":\"e\"}".to_vec(),
            b"{\"type\":\"track\"}".to_vec(),
            huge.into_bytes(),
            deep.into_bytes(),
            b"{\"type\":\"track\",\"event\":\"\xff\"}".to_vec(),
            b"{\"type\":\"identify\",\"traits\":[]}".to_vec(),
            good(3).into_bytes(),
        ];
        lines.push(Vec::new());
        let input = lines.join(&b'\n');
        let object: Arc<str> = Arc::from("mixed.ndjson");
        let mut good_ids = Vec::new();
        let mut reasons = Vec::new();
        let summary = decode_object(&input[..], &object, &Limits::default(), |item| match item {
            Decoded::Message { message, .. } => good_ids.push(message.message_id.into_owned()),
            Decoded::Rejected(rejection) => {
                assert_eq!(&*rejection.object, "mixed.ndjson");
                reasons.push((rejection.position.line, rejection.reason.code()));
            }
        });
        assert_eq!(good_ids, ["g1", "g2", "g3"]);
        assert_eq!(
            reasons,
            [
                (2, "not_json"),
                (4, "not_an_object"),
                (5, "missing_type"),
                (6, "unknown_type"),
                (7, "track_without_event"),
                (8, "too_large"),
                (9, "too_deep"),
                (10, "invalid_utf8"),
                (11, "invalid_field"),
            ]
        );
        assert_eq!(summary.messages, 3);
        assert_eq!(summary.rejections, 9);
    }

    #[test]
    fn unreadable_objects_end_with_a_rejection() {
        struct Failing;
        impl std::io::Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("connection reset"))
            }
        }
        let mut reasons = Vec::new();
        let summary = decode_object(Failing, &Arc::from("o"), &Limits::default(), |item| {
            if let Decoded::Rejected(rejection) = item {
                reasons.push(rejection.reason);
            }
        });
        assert_eq!(summary.rejections, 1);
        assert!(
            matches!(&reasons[0], RejectReason::Unreadable(text) if text.contains("connection reset"))
        );
    }

    /// What a decode produced, item by item, in a form two decodes can be compared by.
    fn transcript(item: Decoded<'_>) -> String {
        match item {
            Decoded::Message {
                position, message, ..
            } => format!("message {} at {position:?}", message.message_id),
            Decoded::Rejected(rejection) => format!(
                "rejected {} at {:?}",
                rejection.reason.code(),
                rejection.position
            ),
        }
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(bytes).expect("writing to memory");
        encoder.finish().expect("writing to memory")
    }

    proptest::proptest! {
        /// Decoding a part at a time (as the dataflow does, to keep its worker steps
        /// short) gives exactly the items and counts of decoding in one go, and a part
        /// of plain lines never holds more items than were asked for.
        #[test]
        fn decoding_in_parts_gives_the_same_items_and_summary(
            kinds in proptest::collection::vec(0u8..6, 0..40),
            array in proptest::bool::ANY,
            gzipped in proptest::bool::ANY,
            truncate in proptest::option::of(1usize..200),
            part in 1usize..8,
        ) {
            let items: Vec<String> = kinds
                .iter()
                .enumerate()
                .map(|(n, kind)| match kind {
                    0 | 1 => format!("{{\"type\":\"track\",\"event\":\"E\",\"messageId\":\"m{n}\"}}"),
                    2 => "{\"type\":\"track\",".to_owned(),
                    3 => "{\"event\":\"no type\"}".to_owned(),
                    4 => format!("{{\"batch\":[{{\"type\":\"page\",\"messageId\":\"b{n}\"}},{{\"type\":\"screen\",\"messageId\":\"c{n}\"}}]}}"),
                    _ => String::new(),
                })
                .collect();
            let plain = if array {
                let elements: Vec<&String> = items.iter().filter(|item| !item.is_empty()).collect();
                format!("[\n{}\n]", elements.iter().map(|item| item.as_str()).collect::<Vec<_>>().join(",\n"))
            } else {
                items.join("\n")
            };
            let mut input = if gzipped { gzip(plain.as_bytes()) } else { plain.clone().into_bytes() };
            if let Some(cut) = truncate {
                input.truncate(input.len().saturating_sub(cut));
            }
            let object: Arc<str> = Arc::from("parts.ndjson");
            let limits = Limits::default();

            let mut whole = Vec::new();
            let whole_summary = decode_object(&input[..], &object, &limits, |item| whole.push(transcript(item)));

            let mut parts = Vec::new();
            let mut decoder = ObjectDecoder::new(&input[..], &object, &limits);
            let plain_lines = !array && !kinds.contains(&4);
            loop {
                let before = parts.len();
                let more = decoder.decode_some(part, &mut |item| parts.push(transcript(item)));
                // Lines are framed no more than asked for (an unreadable tail adds its
                // one rejection to the last part).
                let framed = parts[before..]
                    .iter()
                    .filter(|item| !item.starts_with("rejected unreadable"))
                    .count();
                if plain_lines {
                    proptest::prop_assert!(framed <= part, "{framed} items in a part of {part}");
                }
                if !more {
                    break;
                }
            }
            proptest::prop_assert!(!decoder.decode_some(part, &mut |item| parts.push(transcript(item))));
            proptest::prop_assert_eq!(&parts, &whole);
            proptest::prop_assert_eq!(decoder.summary(), whole_summary);
        }
    }

    #[test]
    fn derived_ids_are_stable_and_distinct() {
        let a = derived_message_id("s3://b/k.json.gz", Position::line(3));
        assert_eq!(a, derived_message_id("s3://b/k.json.gz", Position::line(3)));
        assert_ne!(a, derived_message_id("s3://b/k.json.gz", Position::line(4)));
        assert_ne!(
            a,
            derived_message_id("s3://b/other.json.gz", Position::line(3))
        );
        assert_ne!(
            a,
            derived_message_id(
                "s3://b/k.json.gz",
                Position {
                    line: 3,
                    element: 1
                }
            )
        );
        assert!(a.starts_with("tt-"));
    }
}
