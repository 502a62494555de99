//! A borrowed JSON tree for one message, parsed with a nesting limit.
//!
//! `serde_json::Value` copies every key and string and keeps objects in a `BTreeMap`.
//! Events are parsed once, flattened and thrown away, so this tree borrows from the
//! input line wherever the text has no escapes, keeps object members in their original
//! order in a `Vec`, and refuses nesting deeper than a configured limit while parsing
//! (not after), so a hostile line cannot make the parser recurse or allocate deeply.
//!
//! Numbers go through `f64` only where that loses nothing: an integer outside `i64`,
//! and any number given for a field the caller names (the message's ids), keep their
//! literal text ([`Json::Number`]), found again in the input by their place among its
//! numbers, so two ids that differ only past the 16th digit stay two ids.
//!
//! Never send a `Json` between workers: it borrows, and it would need `deserialize_any`.
//! Route turns it into owned, typed rows first.

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};

/// The tokenizer stops at 256 levels on its own (serde_json at 128); our limit must bite
/// first so the rejection says "too deep" rather than a parser error.
pub const MAX_SUPPORTED_DEPTH: usize = 120;

/// One JSON value, borrowing from the line it was parsed from.
#[derive(Debug, Clone, PartialEq)]
pub enum Json<'a> {
    Null,
    Bool(bool),
    /// An integer that fits `i64`.
    Int(i64),
    /// A number with a fraction or an exponent (an `f64` holds what it means).
    Float(f64),
    /// A number kept as its literal text, because no binary form here holds it
    /// exactly or its text is what matters: an integer outside `i64`, or any number
    /// given for a top-level field named in [`parse_keeping`] (ids are text).
    Number(Cow<'a, str>),
    Str(Cow<'a, str>),
    Array(Vec<Json<'a>>),
    Object(JsonObject<'a>),
}

/// Object members in input order. Keys are unique: a repeated key keeps its last value,
/// as `JSON.parse` and `serde_json::Value` do.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct JsonObject<'a>(pub Vec<(Cow<'a, str>, Json<'a>)>);

impl<'a> JsonObject<'a> {
    pub fn get(&self, key: &str) -> Option<&Json<'a>> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Json<'a>)> {
        self.0.iter().map(|(k, v)| (k.as_ref(), v))
    }

    pub(super) fn dedup_keys(&mut self) {
        let members = &mut self.0;
        if members.len() < 2 {
            return;
        }
        let hasher = foldhash::fast::RandomState::default();
        let has_duplicates = if members.len() <= LINEAR_DEDUP_MAX {
            // Most objects are small (a message's top level, `context.app`): comparing
            // every pair is cheaper than building a hash set (a hash-set insert per key
            // was 5% of decode+route). Distinct keys mostly differ in length.
            (0..members.len()).any(|index| {
                members[index + 1..]
                    .iter()
                    .any(|(later, _)| *later == members[index].0)
            })
        } else {
            let mut seen =
                std::collections::HashSet::with_capacity_and_hasher(members.len(), hasher.clone());
            members.iter().any(|(key, _)| !seen.insert(key.as_ref()))
        };
        if !has_duplicates {
            return;
        }
        // Keep the last occurrence of each key, in the position of that occurrence (one
        // way for every size: repeated keys are rare).
        let mut later = std::collections::HashSet::with_capacity_and_hasher(members.len(), hasher);
        let mut keep = vec![false; members.len()];
        for (index, (key, _)) in members.iter().enumerate().rev() {
            keep[index] = later.insert(key.as_ref());
        }
        let mut index = 0;
        members.retain(|_| {
            index += 1;
            keep[index - 1]
        });
    }
}

/// Objects with at most this many members look for repeated keys by comparing every pair.
const LINEAR_DEDUP_MAX: usize = 16;

impl Json<'_> {
    /// Compact JSON text, members in input order. Used for arrays and empty objects,
    /// which the warehouse keeps as JSON text.
    pub fn to_json_text(&self) -> String {
        let mut out = String::new();
        self.write_json(&mut out);
        out
    }

    pub fn write_json(&self, out: &mut String) {
        use std::fmt::Write as _;
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(true) => out.push_str("true"),
            Json::Bool(false) => out.push_str("false"),
            Json::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Json::Float(f) => match serde_json::Number::from_f64(*f) {
                Some(number) => {
                    let _ = write!(out, "{number}");
                }
                None => out.push_str("null"),
            },
            // A JSON number's literal text is JSON already.
            Json::Number(text) => out.push_str(text),
            Json::Str(s) => write_json_string(s, out),
            Json::Array(items) => {
                out.push('[');
                for (index, item) in items.iter().enumerate() {
                    if index > 0 {
                        out.push(',');
                    }
                    item.write_json(out);
                }
                out.push(']');
            }
            Json::Object(object) => {
                out.push('{');
                for (index, (key, value)) in object.0.iter().enumerate() {
                    if index > 0 {
                        out.push(',');
                    }
                    write_json_string(key, out);
                    out.push(':');
                    value.write_json(out);
                }
                out.push('}');
            }
        }
    }
}

fn write_json_string(s: &str, out: &mut String) {
    use std::fmt::Write as _;
    out.push('"');
    // Runs with nothing to escape are copied whole (a `char` at a time cost half as
    // much again). Every escaped byte is ASCII, so runs end on character boundaries.
    let mut run = 0;
    for (index, byte) in s.bytes().enumerate() {
        let escaped = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..0x20 => "",
            _ => continue,
        };
        out.push_str(&s[run..index]);
        if escaped.is_empty() {
            let _ = write!(out, "\\u{byte:04x}");
        } else {
            out.push_str(escaped);
        }
        run = index + 1;
    }
    out.push_str(&s[run..]);
    out.push('"');
}

/// Why a line did not parse as a JSON value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Nesting went deeper than the limit.
    TooDeep { limit: usize },
    /// Not JSON at all, or not a single JSON value; the text is the tokenizer's.
    Syntax(String),
}

/// Parses one JSON value from `text`, refusing nesting deeper than `max_depth`
/// (clamped to [`MAX_SUPPORTED_DEPTH`]). A top-level scalar is depth 0, the members of
/// a top-level object are depth 1.
pub fn parse(text: &str, max_depth: usize) -> Result<Json<'_>, ParseError> {
    parse_keeping(text, max_depth, &[])
}

/// [`parse`], keeping the literal text of any number given for one of `exact_fields`,
/// members of the top-level object ([`Json::Number`]).
pub fn parse_keeping<'a>(
    text: &'a str,
    max_depth: usize,
    exact_fields: &[&str],
) -> Result<Json<'a>, ParseError> {
    let limit = max_depth.min(MAX_SUPPORTED_DEPTH);
    match super::scan::parse(text, limit, exact_fields) {
        Some(value) => Ok(value),
        None => parse_with_tokenizer(text, limit, exact_fields),
    }
}

/// [`parse_keeping`] through the tokenizer alone: what decides a line the scanner does
/// not accept, and says what is wrong with it.
pub(super) fn parse_with_tokenizer<'a>(
    text: &'a str,
    limit: usize,
    exact_fields: &[&str],
) -> Result<Json<'a>, ParseError> {
    let context = Context {
        too_deep: Cell::new(false),
        numbers: Numbers::new(text),
        exact_fields,
    };
    let mut deserializer = sonic_rs::Deserializer::from_str(text);
    let seed = ValueSeed {
        depth: 0,
        limit,
        exact: false,
        context: &context,
    };
    let result = seed
        .deserialize(&mut deserializer)
        .and_then(|value| deserializer.end().map(|()| value));
    match result {
        Ok(value) => Ok(value),
        Err(_) if context.too_deep.get() => Err(ParseError::TooDeep { limit }),
        Err(error) => Err(ParseError::Syntax(error.to_string())),
    }
}

/// What every level of one parse shares.
struct Context<'a, 'f> {
    too_deep: Cell<bool>,
    numbers: Numbers<'a>,
    exact_fields: &'f [&'f str],
}

/// The numbers of the text being parsed, found again by their place among them.
///
/// The deserializer visits numbers in the order they appear, so the n-th number
/// visited is the n-th number token of the text (outside strings). Only a number whose
/// text is kept is looked for, which is rare, and the search resumes where the last
/// one stopped, so all the look-ups of a text read it at most once.
struct Numbers<'a> {
    text: &'a str,
    /// Numbers visited so far.
    visited: Cell<usize>,
    /// Where the search stopped: a byte offset and how many numbers lie before it.
    cursor: Cell<(usize, usize)>,
}

impl<'a> Numbers<'a> {
    fn new(text: &'a str) -> Numbers<'a> {
        Numbers {
            text,
            visited: Cell::new(0),
            cursor: Cell::new((0, 0)),
        }
    }

    /// Counts a visited number; returns its place (0-based).
    fn visit(&self) -> usize {
        let place = self.visited.get();
        self.visited.set(place + 1);
        place
    }

    /// The literal text of the number at `place`, if the text has one there (it
    /// always does for a number the deserializer visited).
    fn literal(&self, place: usize) -> Option<&'a str> {
        let bytes = self.text.as_bytes();
        let (mut offset, mut seen) = self.cursor.get();
        if seen > place {
            // Look-ups come in order; start again rather than answer wrongly.
            (offset, seen) = (0, 0);
        }
        while offset < bytes.len() {
            match bytes[offset] {
                b'"' => {
                    // Skip the string: its end is the next quote not escaped.
                    offset += 1;
                    while let Some(found) =
                        memchr::memchr2(b'"', b'\\', bytes.get(offset..).unwrap_or_default())
                    {
                        offset += found;
                        if bytes[offset] == b'\\' {
                            offset += 2;
                        } else {
                            offset += 1;
                            break;
                        }
                    }
                }
                b'-' | b'0'..=b'9' => {
                    let start = offset;
                    while offset < bytes.len()
                        && matches!(
                            bytes[offset],
                            b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'
                        )
                    {
                        offset += 1;
                    }
                    if seen == place {
                        self.cursor.set((offset, seen + 1));
                        return self.text.get(start..offset);
                    }
                    seen += 1;
                }
                _ => offset += 1,
            }
        }
        self.cursor.set((offset, seen));
        None
    }
}

/// Whether a number's literal text is an integer (no fraction, no exponent).
fn is_integer_literal(text: &str) -> bool {
    !text.bytes().any(|byte| matches!(byte, b'.' | b'e' | b'E'))
}

/// `i64`'s range as an `f64`: a number the deserializer hands over as an `f64` at or
/// beyond it may be an integer literal too large for `i64`.
const I64_BOUND: f64 = 9_223_372_036_854_775_808.0;

#[derive(Clone, Copy)]
struct ValueSeed<'c, 'a, 'f> {
    depth: usize,
    limit: usize,
    /// The value is a top-level field named as exact: a number keeps its text.
    exact: bool,
    context: &'c Context<'a, 'f>,
}

impl<'a> ValueSeed<'_, 'a, '_> {
    fn nested<E: de::Error>(self) -> Result<Self, E> {
        if self.depth >= self.limit {
            self.context.too_deep.set(true);
            return Err(E::custom("nesting too deep"));
        }
        Ok(ValueSeed {
            depth: self.depth + 1,
            exact: false,
            ..self
        })
    }

    /// The number at `place` as its literal text, or `otherwise` if the text has none
    /// there (which a number the deserializer visited cannot lack).
    fn literal(&self, place: usize, otherwise: impl FnOnce() -> Json<'a>) -> Json<'a> {
        match self.context.numbers.literal(place) {
            Some(text) => Json::Number(Cow::Borrowed(text)),
            None => otherwise(),
        }
    }
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_, 'de, '_> {
    type Value = Json<'de>;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Json<'de>, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_, 'de, '_> {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }

    fn visit_none<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }

    fn visit_bool<E>(self, v: bool) -> Result<Json<'de>, E> {
        Ok(Json::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Json<'de>, E> {
        let place = self.context.numbers.visit();
        Ok(if self.exact {
            self.literal(place, || Json::Int(v))
        } else {
            Json::Int(v)
        })
    }

    fn visit_u64<E>(self, v: u64) -> Result<Json<'de>, E> {
        let place = self.context.numbers.visit();
        Ok(match i64::try_from(v) {
            Ok(i) if !self.exact => Json::Int(i),
            Ok(i) => self.literal(place, || Json::Int(i)),
            // An integer literal has no leading zeros or `+`: its digits are its text.
            Err(_) => Json::Number(Cow::Owned(v.to_string())),
        })
    }

    fn visit_f64<E>(self, v: f64) -> Result<Json<'de>, E> {
        let place = self.context.numbers.visit();
        if self.exact {
            return Ok(self.literal(place, || Json::Float(v)));
        }
        // The deserializer hands an integer beyond `u64` (or below `i64`) over as an
        // `f64`, rounded: its text is the only exact form of it.
        if v.abs() >= I64_BOUND
            && let Some(text) = self.context.numbers.literal(place)
            && is_integer_literal(text)
        {
            return Ok(Json::Number(Cow::Borrowed(text)));
        }
        // The tokenizer reads `-0.0` as positive zero; the text keeps its sign.
        if v == 0.0
            && !v.is_sign_negative()
            && self
                .context
                .numbers
                .literal(place)
                .is_some_and(|text| text.starts_with('-'))
        {
            return Ok(Json::Float(-0.0));
        }
        Ok(Json::Float(v))
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Json<'de>, E> {
        Ok(Json::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Json<'de>, E> {
        Ok(Json::Str(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Json<'de>, E> {
        Ok(Json::Str(Cow::Owned(v)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json<'de>, A::Error> {
        let inner = self.nested()?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(inner)? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json<'de>, A::Error> {
        let inner = self.nested()?;
        let top = self.depth == 0 && !self.context.exact_fields.is_empty();
        let mut members = Vec::new();
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let seed = ValueSeed {
                exact: top && self.context.exact_fields.contains(&key.as_ref()),
                ..inner
            };
            let value = map.next_value_seed(seed)?;
            members.push((key, value));
        }
        let mut object = JsonObject(members);
        object.dedup_keys();
        Ok(Json::Object(object))
    }
}

struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Cow<'de, str>, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn borrows_unescaped_strings_and_keys() {
        let value = parse(r#"{"a":"plain","b\u0041":"esc\"aped"}"#, 8).unwrap();
        let Json::Object(object) = value else {
            panic!("not an object")
        };
        assert!(matches!(object.0[0].0, Cow::Borrowed("a")));
        assert!(matches!(object.0[0].1, Json::Str(Cow::Borrowed("plain"))));
        assert_eq!(object.0[1].0, "bA");
        assert_eq!(object.0[1].1, Json::Str(Cow::Owned("esc\"aped".into())));
    }

    #[test]
    fn numbers_keep_integers_exact() {
        assert_eq!(
            parse("9007199254740993", 4).unwrap(),
            Json::Int(9_007_199_254_740_993)
        );
        assert_eq!(parse("1.5", 4).unwrap(), Json::Float(1.5));
        assert_eq!(
            parse("18446744073709551615", 4).unwrap(),
            Json::Number("18446744073709551615".into())
        );
        // Beyond u64 and below i64 the deserializer rounds through f64: the text is
        // found again, after strings holding digits and numbers before it.
        let text = r#"{"s":"12 \"3\" -4","a":[1,2.5e3,-0],"big":12345678901234567890123,"neg":-9223372036854775809,"f":1e300,"g":-1.5}"#;
        let Json::Object(object) = parse(text, 4).unwrap() else {
            panic!("not an object")
        };
        assert_eq!(
            object.get("big"),
            Some(&Json::Number("12345678901234567890123".into()))
        );
        assert_eq!(
            object.get("neg"),
            Some(&Json::Number("-9223372036854775809".into()))
        );
        assert_eq!(object.get("f"), Some(&Json::Float(1e300)));
        assert_eq!(object.get("g"), Some(&Json::Float(-1.5)));
        assert_eq!(
            parse(text, 4).unwrap().to_json_text(),
            r#"{"s":"12 \"3\" -4","a":[1,2500.0,-0.0],"big":12345678901234567890123,"neg":-9223372036854775809,"f":1e+300,"g":-1.5}"#
        );
    }

    #[test]
    fn numbers_in_exact_fields_keep_their_text() {
        let text = r#"{"id":12345678901234567890123,"n":12345678901234567890124,"x":{"id":7},"f":1.50,"i":-0,"m":3}"#;
        let Json::Object(object) = parse_keeping(text, 4, &["id", "f", "i"]).unwrap() else {
            panic!("not an object")
        };
        assert_eq!(
            object.get("id"),
            Some(&Json::Number("12345678901234567890123".into()))
        );
        assert_eq!(
            object.get("n"),
            Some(&Json::Number("12345678901234567890124".into()))
        );
        assert_eq!(object.get("f"), Some(&Json::Number("1.50".into())));
        assert_eq!(object.get("i"), Some(&Json::Number("-0".into())));
        assert_eq!(object.get("m"), Some(&Json::Int(3)));
        // Only top-level fields are exact.
        let Some(Json::Object(inner)) = object.get("x") else {
            panic!("not an object")
        };
        assert_eq!(inner.get("id"), Some(&Json::Int(7)));
    }

    #[test]
    fn depth_limit_counts_objects_and_arrays() {
        assert!(parse(r#"{"a":{"b":[1]}}"#, 3).is_ok());
        assert_eq!(
            parse(r#"{"a":{"b":[1]}}"#, 2),
            Err(ParseError::TooDeep { limit: 2 })
        );
        let hostile = "[".repeat(100_000);
        assert_eq!(parse(&hostile, 32), Err(ParseError::TooDeep { limit: 32 }));
    }

    #[test]
    fn syntax_errors_and_trailing_text_are_rejected() {
        assert!(matches!(parse("{\"a\":", 8), Err(ParseError::Syntax(_))));
        assert!(matches!(parse("{} {}", 8), Err(ParseError::Syntax(_))));
        assert!(matches!(parse("hello", 8), Err(ParseError::Syntax(_))));
    }

    #[test]
    fn repeated_keys_keep_the_last_value() {
        let value = parse(r#"{"a":1,"b":2,"a":3}"#, 4).unwrap();
        let Json::Object(object) = value else {
            panic!("not an object")
        };
        assert_eq!(object.0.len(), 2);
        assert_eq!(object.get("a"), Some(&Json::Int(3)));
        assert_eq!(object.0[0].0, "b");
    }

    /// Both ways of finding repeated keys (pairwise up to `LINEAR_DEDUP_MAX` members, a
    /// hash set above) keep each key's last value at its last position.
    #[test]
    fn repeated_keys_keep_the_last_value_at_every_size() {
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        for members in 0..40usize {
            for _ in 0..20 {
                let keys: Vec<String> = (0..members)
                    .map(|_| {
                        state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                        // Few distinct keys, of different lengths: repeats are common.
                        "k".repeat(1 + (state >> 33) as usize % (members / 2 + 1))
                    })
                    .collect();
                let text = format!(
                    "{{{}}}",
                    keys.iter()
                        .enumerate()
                        .map(|(index, key)| format!("\"{key}\":{index}"))
                        .collect::<Vec<_>>()
                        .join(",")
                );
                let expected: Vec<(String, Json)> = keys
                    .iter()
                    .enumerate()
                    .filter(|(index, key)| !keys[index + 1..].contains(key))
                    .map(|(index, key)| (key.clone(), Json::Int(index as i64)))
                    .collect();
                let Json::Object(object) = parse(&text, 4).unwrap() else {
                    panic!("not an object: {text}")
                };
                let actual: Vec<(String, Json)> = object
                    .0
                    .into_iter()
                    .map(|(key, value)| (key.into_owned(), value))
                    .collect();
                assert_eq!(actual, expected, "{text}");
            }
        }
    }

    #[test]
    fn json_text_round_trips_through_serde_json() {
        let text = r#"{"s":"q\"\\\n\u0001é","n":[1,-2,3.25,true,null],"o":{}}"#;
        let value = parse(text, 8).unwrap();
        let ours: serde_json::Value = serde_json::from_str(&value.to_json_text()).unwrap();
        let theirs: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(ours, theirs);
    }
}
