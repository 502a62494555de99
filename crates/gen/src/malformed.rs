//! Malformed lines: one kind for each way the decoder rejects an item, each built from
//! a real track call so it looks like what a broken client would really send.

use rand_chacha::ChaCha8Rng;

use super::population::index;

/// How a generated line is broken. Each maps to one decoder rejection reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Malformed {
    /// A truncated object (`not_json`).
    NotJson,
    /// Valid JSON that is not an object: `[1,2]` or a string (`not_an_object`).
    NotAnObject,
    /// An object without `type` (`missing_type`).
    MissingType,
    /// A misspelt `type` such as `"tarck"` (`unknown_type`).
    UnknownType,
    /// A track call without `event` (`track_without_event`).
    TrackWithoutEvent,
    /// A line over 32 KiB: a huge property value (`too_large`).
    TooLarge,
    /// Objects nested 100 levels deep, beyond any configurable limit (`too_deep`).
    TooDeep,
    /// Latin-1 bytes in a string: not UTF-8 (`invalid_utf8`).
    InvalidUtf8,
}

impl Malformed {
    /// Every kind, in the order bad lines cycle through them.
    pub const ALL: [Malformed; 8] = [
        Malformed::NotJson,
        Malformed::NotAnObject,
        Malformed::MissingType,
        Malformed::UnknownType,
        Malformed::TrackWithoutEvent,
        Malformed::TooLarge,
        Malformed::TooDeep,
        Malformed::InvalidUtf8,
    ];

    /// The decoder's rejection code this kind should produce.
    pub fn reject_code(self) -> &'static str {
        match self {
            Malformed::NotJson => "not_json",
            Malformed::NotAnObject => "not_an_object",
            Malformed::MissingType => "missing_type",
            Malformed::UnknownType => "unknown_type",
            Malformed::TrackWithoutEvent => "track_without_event",
            Malformed::TooLarge => "too_large",
            Malformed::TooDeep => "too_deep",
            Malformed::InvalidUtf8 => "invalid_utf8",
        }
    }
}

/// Size of the value that makes a [`Malformed::TooLarge`] line (Segment's limit is
/// 32 KiB per message).
const HUGE_VALUE_BYTES: usize = 40 * 1024;
/// Nesting depth of a [`Malformed::TooDeep`] line.
const DEEP_LEVELS: usize = 100;

/// Breaks `line`, a well-formed track call, in the given way.
pub(super) fn corrupt(line: &mut Vec<u8>, kind: Malformed, rng: &mut ChaCha8Rng) {
    match kind {
        Malformed::NotJson => {
            // Cut mid-object, on a UTF-8 boundary so only the JSON is broken.
            let mut cut = line.len() / 2 + index(rng, line.len() / 3 + 1);
            while cut > 1 && (line[cut] & 0b1100_0000) == 0b1000_0000 {
                cut -= 1;
            }
            line.truncate(cut);
        }
        Malformed::NotAnObject => {
            line.clear();
            let text: &[u8] = match index(rng, 3) {
                0 => b"[1,2]",
                1 => b"\"Order Completed\"",
                _ => b"null",
            };
            line.extend_from_slice(text);
        }
        Malformed::MissingType => {
            replace(line, b"\"type\":\"track\",", b"");
        }
        Malformed::UnknownType => {
            let typo: &[u8] = match index(rng, 3) {
                0 => b"\"type\":\"tarck\"",
                1 => b"\"type\":\"Track\"",
                _ => b"\"type\":\"pageview\"",
            };
            replace(line, b"\"type\":\"track\"", typo);
        }
        Malformed::TrackWithoutEvent => {
            if let Some(start) = find(line, b"\"event\":\"") {
                let value = start + b"\"event\":\"".len();
                if let Some(end) = find(&line[value..], b"\",") {
                    // Drop `"event":"…",` entirely.
                    line.drain(start..value + end + 2);
                }
            }
        }
        Malformed::TooLarge => {
            let mut member = Vec::with_capacity(HUGE_VALUE_BYTES + 32);
            member.extend_from_slice(b"\"debug_dump\":\"");
            let pattern = b"0123456789abcdef";
            while member.len() < HUGE_VALUE_BYTES {
                member.extend_from_slice(pattern);
            }
            member.push(b'"');
            insert_property(line, &member);
        }
        Malformed::TooDeep => {
            let mut member = Vec::with_capacity(DEEP_LEVELS * 6 + 16);
            member.extend_from_slice(b"\"nested\":");
            for _ in 0..DEEP_LEVELS {
                member.extend_from_slice(b"{\"a\":");
            }
            member.push(b'1');
            member.extend(std::iter::repeat_n(b'}', DEEP_LEVELS));
            insert_property(line, &member);
        }
        Malformed::InvalidUtf8 => {
            // "Café Crème" sent as Latin-1 by a misconfigured client.
            insert_property(line, b"\"store_name\":\"Caf\xe9 Cr\xe8me\"");
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

fn replace(line: &mut Vec<u8>, from: &[u8], to: &[u8]) {
    if let Some(at) = find(line, from) {
        line.splice(at..at + from.len(), to.iter().copied());
    }
}

/// Inserts `member` as the first member of `properties`.
fn insert_property(line: &mut Vec<u8>, member: &[u8]) {
    let key = b"\"properties\":{";
    let Some(at) = find(line, key) else {
        return;
    };
    let at = at + key.len();
    let mut inserted = member.to_vec();
    if line.get(at) != Some(&b'}') {
        inserted.push(b',');
    }
    line.splice(at..at, inserted);
}
