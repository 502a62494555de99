//! text: the text of a varchar value, short ones kept inline.
//!
//! Four in five texts of generated Segment traffic are at most 22 bytes (ids, names,
//! library versions, locales). A row lives from routing on a timely worker until its
//! batch commits on the loader's thread, so each shared allocation was a malloc on one
//! core, a reference-count decrement and a free on another, and 40-odd bytes of heap
//! for the whole batch. Short text now lives in the cell itself (the value stays 24
//! bytes); longer text is an `Arc<str>`, still shared by a track's two rows.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The longest text kept inline.
pub const INLINE_BYTES: usize = 22;

/// The text of a varchar value. Equality, order and hash are by text.
#[derive(Clone)]
pub struct Text(Repr);

#[derive(Clone)]
enum Repr {
    /// Invariant: `bytes[..len]` is valid UTF-8, copied from a `&str`; only
    /// [`Text::new`] makes one.
    Inline {
        len: u8,
        bytes: [u8; INLINE_BYTES],
    },
    Shared(Arc<str>),
}

impl Text {
    pub fn new(text: &str) -> Text {
        if text.len() <= INLINE_BYTES {
            let mut bytes = [0; INLINE_BYTES];
            bytes[..text.len()].copy_from_slice(text.as_bytes());
            Text(Repr::Inline {
                len: text.len() as u8,
                bytes,
            })
        } else {
            Text(Repr::Shared(Arc::from(text)))
        }
    }

    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Inline { len, bytes } => {
                let bytes = &bytes[..usize::from(*len)];
                // SAFETY: `Text::new` is the only maker of `Inline` and copies these
                // bytes, and exactly these many, from a `&str` (see `Repr`).
                unsafe { std::str::from_utf8_unchecked(bytes) }
            }
            Repr::Shared(text) => text,
        }
    }

    /// Whether the text is on the heap (longer than [`INLINE_BYTES`]).
    pub fn is_shared(&self) -> bool {
        matches!(self.0, Repr::Shared(_))
    }
}

impl std::ops::Deref for Text {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl From<&str> for Text {
    fn from(text: &str) -> Text {
        Text::new(text)
    }
}

impl From<String> for Text {
    fn from(text: String) -> Text {
        Text::new(&text)
    }
}

impl From<Arc<str>> for Text {
    /// Keeps sharing a long text that is already shared.
    fn from(text: Arc<str>) -> Text {
        if text.len() <= INLINE_BYTES {
            Text::new(&text)
        } else {
            Text(Repr::Shared(text))
        }
    }
}

impl PartialEq for Text {
    fn eq(&self, other: &Text) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Text {}

impl PartialOrd for Text {
    fn partial_cmp(&self, other: &Text) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Text {
    fn cmp(&self, other: &Text) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl std::hash::Hash for Text {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Text {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Text, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Text, E> {
                Ok(Text::new(text))
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::Value;

    #[test]
    fn short_text_is_inline_and_long_text_is_shared() {
        for (text, shared) in [
            ("", false),
            ("a", false),
            ("é漢字🎉", false),
            ("x".repeat(INLINE_BYTES).as_str(), false),
            ("x".repeat(INLINE_BYTES + 1).as_str(), true),
            ("🎉".repeat(6).as_str(), true),
        ] {
            let made = Text::new(text);
            assert_eq!(made.as_str(), text);
            assert_eq!(made.is_shared(), shared, "{text:?}");
            assert_eq!(Text::from(Arc::<str>::from(text)).as_str(), text);
        }
    }

    #[test]
    fn equal_texts_compare_equal_however_they_are_held() {
        let long = "y".repeat(40);
        assert_eq!(
            Text::from(Arc::<str>::from(long.as_str())),
            Text::new(&long)
        );
        assert!(Text::new("abc") < Text::new("abd"));
        assert!(Text::new("ab") < Text::new(&long));
    }

    #[test]
    fn a_value_stays_three_words() {
        // The inline text must not make every cell bigger: the value's own tag fits
        // in the text's.
        assert_eq!(std::mem::size_of::<Text>(), 24);
        assert_eq!(std::mem::size_of::<Value>(), 24);
    }

    #[test]
    fn text_round_trips_through_serde() {
        for text in ["short", "a longer text that is shared on the heap"] {
            let json = serde_json::to_string(&Text::new(text)).expect("serialise");
            let back: Text = serde_json::from_str(&json).expect("deserialise");
            assert_eq!(back.as_str(), text);
        }
    }
}
