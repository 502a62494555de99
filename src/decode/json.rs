//! A borrowed JSON tree for one message, parsed with a nesting limit.
//!
//! `serde_json::Value` copies every key and string and keeps objects in a `BTreeMap`.
//! Events are parsed once, flattened and thrown away, so this tree borrows from the
//! input line wherever the text has no escapes, keeps object members in their original
//! order in a `Vec`, and refuses nesting deeper than a configured limit while parsing
//! (not after), so a hostile line cannot make the parser recurse or allocate deeply.
//!
//! Never send a `Json` between workers: it borrows, and it would need `deserialize_any`.
//! Route turns it into owned, typed rows first.

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};

/// serde_json stops at 128 levels on its own; our limit must bite first so the
/// rejection says "too deep" rather than a parser error.
pub const MAX_SUPPORTED_DEPTH: usize = 120;

/// One JSON value, borrowing from the line it was parsed from.
#[derive(Debug, Clone, PartialEq)]
pub enum Json<'a> {
    Null,
    Bool(bool),
    /// An integer that fits `i64`.
    Int(i64),
    /// Any other number: a fraction, an exponent, or an integer outside `i64`.
    Float(f64),
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

    fn dedup_keys(&mut self) {
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
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Why a line did not parse as a JSON value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Nesting went deeper than the limit.
    TooDeep { limit: usize },
    /// Not JSON at all, or not a single JSON value; the text is serde_json's.
    Syntax(String),
}

/// Parses one JSON value from `text`, refusing nesting deeper than `max_depth`
/// (clamped to [`MAX_SUPPORTED_DEPTH`]). A top-level scalar is depth 0, the members of
/// a top-level object are depth 1.
pub fn parse(text: &str, max_depth: usize) -> Result<Json<'_>, ParseError> {
    let too_deep = Cell::new(false);
    let limit = max_depth.min(MAX_SUPPORTED_DEPTH);
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let seed = ValueSeed {
        depth: 0,
        limit,
        too_deep: &too_deep,
    };
    let result = seed
        .deserialize(&mut deserializer)
        .and_then(|value| deserializer.end().map(|()| value));
    match result {
        Ok(value) => Ok(value),
        Err(_) if too_deep.get() => Err(ParseError::TooDeep { limit }),
        Err(error) => Err(ParseError::Syntax(error.to_string())),
    }
}

#[derive(Clone, Copy)]
struct ValueSeed<'c> {
    depth: usize,
    limit: usize,
    too_deep: &'c Cell<bool>,
}

impl ValueSeed<'_> {
    fn nested<E: de::Error>(self) -> Result<Self, E> {
        if self.depth >= self.limit {
            self.too_deep.set(true);
            return Err(E::custom("nesting too deep"));
        }
        Ok(ValueSeed {
            depth: self.depth + 1,
            ..self
        })
    }
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Json<'de>;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Json<'de>, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
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
        Ok(Json::Int(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Json<'de>, E> {
        Ok(match i64::try_from(v) {
            Ok(i) => Json::Int(i),
            Err(_) => Json::Float(v as f64),
        })
    }

    fn visit_f64<E>(self, v: f64) -> Result<Json<'de>, E> {
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
        let mut members = Vec::new();
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let value = map.next_value_seed(inner)?;
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
            Json::Float(18446744073709551615.0)
        );
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
