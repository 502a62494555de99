//! A tiny append-only JSON writer: generation builds every line by hand into one reused
//! buffer, which is several times faster than building `serde_json::Value`s.

use std::io::Write as _;

/// Writes JSON tokens into a byte buffer, inserting commas where they belong.
///
/// The caller is responsible for balancing `begin_*`/`end_*` and for calling `key`
/// before each member value; `debug_assert`s are not worth their cost here because the
/// tests parse every generated line with serde_json.
pub(super) struct JsonOut<'a> {
    pub(super) buf: &'a mut Vec<u8>,
    comma: bool,
}

impl<'a> JsonOut<'a> {
    pub(super) fn new(buf: &'a mut Vec<u8>) -> JsonOut<'a> {
        JsonOut { buf, comma: false }
    }

    fn sep(&mut self) {
        if self.comma {
            self.buf.push(b',');
        }
    }

    pub(super) fn key(&mut self, key: &str) -> &mut Self {
        self.sep();
        write_escaped(self.buf, key);
        self.buf.push(b':');
        self.comma = false;
        self
    }

    pub(super) fn begin_object(&mut self) -> &mut Self {
        self.sep();
        self.buf.push(b'{');
        self.comma = false;
        self
    }

    pub(super) fn end_object(&mut self) -> &mut Self {
        self.buf.push(b'}');
        self.comma = true;
        self
    }

    pub(super) fn begin_array(&mut self) -> &mut Self {
        self.sep();
        self.buf.push(b'[');
        self.comma = false;
        self
    }

    pub(super) fn end_array(&mut self) -> &mut Self {
        self.buf.push(b']');
        self.comma = true;
        self
    }

    pub(super) fn str(&mut self, value: &str) -> &mut Self {
        self.sep();
        write_escaped(self.buf, value);
        self.comma = true;
        self
    }

    pub(super) fn int(&mut self, value: i64) -> &mut Self {
        self.sep();
        let _ = write!(self.buf, "{value}");
        self.comma = true;
        self
    }

    /// A float with a fixed number of decimals (always written with a decimal point,
    /// so readers see a float even when the value is whole).
    pub(super) fn float(&mut self, value: f64, decimals: usize) -> &mut Self {
        self.sep();
        let _ = write!(self.buf, "{value:.prec$}", prec = decimals.max(1));
        self.comma = true;
        self
    }

    pub(super) fn bool(&mut self, value: bool) -> &mut Self {
        self.sep();
        self.buf
            .extend_from_slice(if value { b"true" } else { b"false" });
        self.comma = true;
        self
    }

    /// Already-serialised object members (`"a":1,"b":2`), spliced into the open object.
    pub(super) fn raw_members(&mut self, members: &str) -> &mut Self {
        if members.is_empty() {
            return self;
        }
        self.sep();
        self.buf.extend_from_slice(members.as_bytes());
        self.comma = true;
        self
    }

    /// A string value written piecewise: `begin_str`, raw bytes that need no escaping,
    /// `end_str`. Used for ids and timestamps, which are ASCII by construction.
    pub(super) fn begin_str(&mut self) -> &mut Vec<u8> {
        self.sep();
        self.buf.push(b'"');
        self.comma = true;
        self.buf
    }

    pub(super) fn end_str(&mut self) -> &mut Self {
        self.buf.push(b'"');
        self
    }
}

/// Writes `value` as a JSON string literal.
pub(super) fn write_escaped(buf: &mut Vec<u8>, value: &str) {
    buf.push(b'"');
    let bytes = value.as_bytes();
    if !bytes.iter().any(|&b| b == b'"' || b == b'\\' || b < 0x20) {
        buf.extend_from_slice(bytes);
    } else {
        for c in value.chars() {
            match c {
                '"' => buf.extend_from_slice(b"\\\""),
                '\\' => buf.extend_from_slice(b"\\\\"),
                '\n' => buf.extend_from_slice(b"\\n"),
                '\r' => buf.extend_from_slice(b"\\r"),
                '\t' => buf.extend_from_slice(b"\\t"),
                c if (c as u32) < 0x20 => {
                    let _ = write!(buf, "\\u{:04x}", c as u32);
                }
                c => {
                    let mut utf8 = [0u8; 4];
                    buf.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
                }
            }
        }
    }
    buf.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_nested_values_with_commas() {
        let mut buf = Vec::new();
        let mut out = JsonOut::new(&mut buf);
        out.begin_object();
        out.key("a").int(1);
        out.key("b")
            .begin_array()
            .str("x\"y")
            .float(2.0, 2)
            .bool(true);
        out.end_array();
        out.key("c").begin_object().end_object();
        out.key("d").begin_object().raw_members("");
        out.raw_members(r#""x":1"#).key("y").int(2).end_object();
        out.key("e").begin_str().extend_from_slice(b"id-1");
        out.end_str();
        out.end_object();
        let text = String::from_utf8(buf).unwrap();
        assert_eq!(
            text,
            r#"{"a":1,"b":["x\"y",2.00,true],"c":{},"d":{"x":1,"y":2},"e":"id-1"}"#
        );
    }

    #[test]
    fn escapes_control_characters() {
        let mut buf = Vec::new();
        write_escaped(&mut buf, "a\nb\u{1}é");
        let back: String = serde_json::from_slice(&buf).unwrap();
        assert_eq!(back, "a\nb\u{1}é");
    }
}
