//! A JSON scanner for the lines that make up nearly all input: it builds the same
//! [`Json`] tree as the tokenizer's visitor, straight from the borrowed text, without
//! the visitor's per-token calls or the search for a number's text afterwards.
//!
//! It answers only where it is sure. Anything it does not accept (a syntax error,
//! nesting past the limit, a lone surrogate, a number out of `f64`'s range) gives
//! `None`, and the caller parses the line again with the tokenizer, which says what is
//! wrong or builds the tree. So it never accepts a line the tokenizer refuses, and where
//! both accept, both give equal trees (the unit tests compare them on the shapes the
//! decoder meets, on random numbers and on random edits of sample events).

use std::borrow::Cow;

use super::json::{Json, JsonObject};

/// Parses `text` as one JSON value, or returns `None` when the tokenizer must decide.
/// `limit` and `exact_fields` mean what they mean to [`super::json::parse_keeping`].
pub(super) fn parse<'a>(text: &'a str, limit: usize, exact_fields: &[&str]) -> Option<Json<'a>> {
    let mut scanner = Scanner {
        text,
        bytes: text.as_bytes(),
        at: 0,
        limit,
        exact_fields,
        members: Vec::with_capacity(32),
        items: Vec::new(),
    };
    scanner.whitespace();
    let value = scanner.value(0, false)?;
    scanner.whitespace();
    (scanner.at == scanner.bytes.len()).then_some(value)
}

struct Scanner<'a, 'f> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
    limit: usize,
    exact_fields: &'f [&'f str],
    /// Members of the objects being read, innermost last: an object's members are
    /// moved into a `Vec` of exactly their number when it closes, so no object's
    /// `Vec` grows while it is read.
    members: Vec<(Cow<'a, str>, Json<'a>)>,
    /// The same for arrays' items.
    items: Vec<Json<'a>>,
}

impl<'a> Scanner<'a, '_> {
    #[inline]
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    #[inline]
    fn whitespace(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.at += 1;
        }
    }

    /// A value at nesting `depth` (a top-level scalar is 0, the members of a top-level
    /// object 1). `exact` keeps a number's text.
    fn value(&mut self, depth: usize, exact: bool) -> Option<Json<'a>> {
        match self.peek()? {
            b'"' => self.string().map(Json::Str),
            b'{' => self.object(depth),
            b'[' => self.array(depth),
            b't' => self.literal(b"true", Json::Bool(true)),
            b'f' => self.literal(b"false", Json::Bool(false)),
            b'n' => self.literal(b"null", Json::Null),
            b'-' | b'0'..=b'9' => self.number(exact),
            _ => None,
        }
    }

    fn literal(&mut self, word: &[u8], value: Json<'a>) -> Option<Json<'a>> {
        if self.bytes.get(self.at..self.at + word.len())? != word {
            return None;
        }
        self.at += word.len();
        Some(value)
    }

    fn object(&mut self, depth: usize) -> Option<Json<'a>> {
        // The tokenizer's visitor refuses to enter a container at the limit.
        if depth >= self.limit {
            return None;
        }
        self.at += 1;
        let start = self.members.len();
        let top = depth == 0 && !self.exact_fields.is_empty();
        self.whitespace();
        if self.peek()? == b'}' {
            self.at += 1;
            return Some(Json::Object(JsonObject::default()));
        }
        loop {
            if self.peek()? != b'"' {
                return None;
            }
            let key = self.string()?;
            self.whitespace();
            if self.peek()? != b':' {
                return None;
            }
            self.at += 1;
            self.whitespace();
            // Only a number keeps its text, so only a number's key is looked for.
            let exact = top
                && matches!(self.peek(), Some(b'-' | b'0'..=b'9'))
                && self.exact_fields.contains(&key.as_ref());
            let value = self.value(depth + 1, exact)?;
            self.members.push((key, value));
            if self.closes(b'}')? {
                break;
            }
        }
        let mut object = JsonObject(self.members.drain(start..).collect());
        object.dedup_keys();
        Some(Json::Object(object))
    }

    fn array(&mut self, depth: usize) -> Option<Json<'a>> {
        if depth >= self.limit {
            return None;
        }
        self.at += 1;
        let start = self.items.len();
        self.whitespace();
        if self.peek()? == b']' {
            self.at += 1;
            return Some(Json::Array(Vec::new()));
        }
        loop {
            let item = self.value(depth + 1, false)?;
            self.items.push(item);
            if self.closes(b']')? {
                break;
            }
        }
        Some(Json::Array(self.items.drain(start..).collect()))
    }

    /// After a member or an item: `Some(true)` past the container's `close`,
    /// `Some(false)` past a `,` (and the whitespace after it), `None` on anything else.
    fn closes(&mut self, close: u8) -> Option<bool> {
        self.whitespace();
        let byte = self.peek()?;
        self.at += 1;
        if byte == close {
            return Some(true);
        }
        if byte != b',' {
            return None;
        }
        self.whitespace();
        Some(false)
    }

    /// A string starting at its opening quote: borrowed when it has no escapes.
    #[inline(always)]
    fn string(&mut self) -> Option<Cow<'a, str>> {
        self.at += 1;
        let start = self.at;
        let end = self.plain_run(start);
        match *self.bytes.get(end)? {
            b'"' => {
                self.at = end + 1;
                // The run ends before an ASCII byte, so on a character boundary.
                self.text.get(start..end).map(Cow::Borrowed)
            }
            b'\\' => self.escaped(start, end).map(Cow::Owned),
            // A control character: JSON wants it escaped.
            _ => None,
        }
    }

    /// Where the run of bytes from `from` that need no attention ends: at a quote, a
    /// backslash, a control character or the end of the text. Eight bytes at a time.
    #[inline]
    fn plain_run(&self, from: usize) -> usize {
        const ONES: u64 = 0x0101_0101_0101_0101;
        const HIGHS: u64 = 0x8080_8080_8080_8080;
        let bytes = self.bytes;
        let mut at = from;
        while let Some(chunk) = bytes.get(at..at + 8) {
            let mut word = [0; 8];
            word.copy_from_slice(chunk);
            let word = u64::from_le_bytes(word);
            // A byte below 0x20, or equal to `"` or `\`, sets its high bit here (the
            // classic has-zero-byte test on `word`, `word ^ "…"` and `word ^ \…`;
            // bytes of 0x80 and above are masked out, since they are never special).
            let quote = word ^ (ONES * u64::from(b'"'));
            let backslash = word ^ (ONES * u64::from(b'\\'));
            let special = (word.wrapping_sub(ONES * 0x20)
                | quote.wrapping_sub(ONES)
                | backslash.wrapping_sub(ONES))
                & !word
                & HIGHS;
            if special != 0 {
                return at + (special.trailing_zeros() / 8) as usize;
            }
            at += 8;
        }
        while let Some(&byte) = bytes.get(at) {
            if byte == b'"' || byte == b'\\' || byte < 0x20 {
                break;
            }
            at += 1;
        }
        at
    }

    /// A string with escapes: `start` is its first byte, `at` its first backslash.
    fn escaped(&mut self, start: usize, mut at: usize) -> Option<String> {
        let mut out = String::with_capacity(at - start + 16);
        let mut run = start;
        loop {
            out.push_str(self.text.get(run..at)?);
            match *self.bytes.get(at)? {
                b'"' => {
                    self.at = at + 1;
                    return Some(out);
                }
                b'\\' => {}
                _ => return None,
            }
            let escape = *self.bytes.get(at + 1)?;
            at += 2;
            match escape {
                b'"' => out.push('"'),
                b'\\' => out.push('\\'),
                b'/' => out.push('/'),
                b'b' => out.push('\u{8}'),
                b'f' => out.push('\u{c}'),
                b'n' => out.push('\n'),
                b'r' => out.push('\r'),
                b't' => out.push('\t'),
                b'u' => {
                    let unit = self.hex4(at)?;
                    at += 4;
                    let code = match unit {
                        0xD800..=0xDBFF => {
                            // A high surrogate must pair with a low one; anything else
                            // is the tokenizer's to judge.
                            if self.bytes.get(at..at + 2)? != b"\\u" {
                                return None;
                            }
                            let low = self.hex4(at + 2)?;
                            if !(0xDC00..=0xDFFF).contains(&low) {
                                return None;
                            }
                            at += 6;
                            0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)
                        }
                        0xDC00..=0xDFFF => return None,
                        unit => unit,
                    };
                    out.push(char::from_u32(code)?);
                }
                _ => return None,
            }
            run = at;
            at = self.plain_run(at);
        }
    }

    fn hex4(&self, at: usize) -> Option<u32> {
        let digits = self.bytes.get(at..at + 4)?;
        digits.iter().try_fold(0, |code, &digit| {
            Some(code << 4 | char::from(digit).to_digit(16)?)
        })
    }

    /// A number, by JSON's grammar: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
    fn number(&mut self, exact: bool) -> Option<Json<'a>> {
        let bytes = self.bytes;
        let start = self.at;
        let mut at = start;
        if bytes[at] == b'-' {
            at += 1;
        }
        let digits = at;
        match *bytes.get(at)? {
            b'0' => at += 1,
            b'1'..=b'9' => {
                while let Some(b'0'..=b'9') = bytes.get(at) {
                    at += 1;
                }
            }
            _ => return None,
        }
        let integer_digits = at - digits;
        let mut integer = true;
        if bytes.get(at) == Some(&b'.') {
            integer = false;
            at += 1;
            let from = at;
            while let Some(b'0'..=b'9') = bytes.get(at) {
                at += 1;
            }
            if at == from {
                return None;
            }
        }
        if let Some(b'e' | b'E') = bytes.get(at) {
            integer = false;
            at += 1;
            if let Some(b'+' | b'-') = bytes.get(at) {
                at += 1;
            }
            let from = at;
            while let Some(b'0'..=b'9') = bytes.get(at) {
                at += 1;
            }
            if at == from {
                return None;
            }
        }
        self.at = at;
        let text = self.text.get(start..at)?;
        if exact {
            return Some(Json::Number(Cow::Borrowed(text)));
        }
        if integer {
            // Up to 18 digits always fit an i64; past that, parse and keep the text
            // of what does not fit.
            if integer_digits <= 18 {
                let magnitude = bytes[digits..at]
                    .iter()
                    .fold(0i64, |sum, digit| sum * 10 + i64::from(digit - b'0'));
                return Some(match (digits > start, magnitude) {
                    // The tokenizer reads `-0` as a float, and its sign is kept.
                    (true, 0) => Json::Float(-0.0),
                    (true, magnitude) => Json::Int(-magnitude),
                    (false, magnitude) => Json::Int(magnitude),
                });
            }
            return Some(match text.parse::<i64>() {
                Ok(value) => Json::Int(value),
                Err(_) => Json::Number(Cow::Borrowed(text)),
            });
        }
        let value: f64 = text.parse().ok()?;
        value.is_finite().then_some(Json::Float(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::json::{ParseError, parse_keeping};
    use crate::decode::message::ID_FIELDS;

    /// What the tokenizer alone makes of `text`.
    fn tokenizer(text: &str, limit: usize) -> Result<Json<'_>, ParseError> {
        super::super::json::parse_with_tokenizer(text, limit, &ID_FIELDS)
    }

    /// The scanner never accepts what the tokenizer refuses, and both build equal trees.
    fn agrees(text: &str, limit: usize) -> bool {
        let scanned = parse(text, limit, &ID_FIELDS);
        let tokenized = tokenizer(text, limit);
        if let Some(scanned) = &scanned {
            assert_eq!(
                Ok(scanned),
                tokenized.as_ref(),
                "scanner and tokenizer differ on {text:?}"
            );
            // Floats compare by value above; their signs must agree too.
            assert_eq!(
                scanned.to_json_text(),
                tokenized
                    .as_ref()
                    .map(Json::to_json_text)
                    .unwrap_or_default(),
                "{text:?}"
            );
        }
        assert_eq!(
            parse_keeping(text, limit, &ID_FIELDS),
            tokenized,
            "{text:?} parses differently through parse_keeping"
        );
        scanned.is_some()
    }

    #[test]
    fn takes_the_lines_decoding_sees_every_day() {
        for text in [
            r#"{"type":"track","event":"Order Completed","messageId":"m1","properties":{"total":9.5,"n":3,"ok":true,"none":null,"tags":["a","b"],"o":{"p":{"q":-1}}}}"#,
            r#"  { "a" : [ 1 , 2.5e3 , -0 , -0.0 , 1E-7 , {} , [] ] , "b" : { } }  "#,
            r#"{"s":"q\"\\\/\b\f\n\r\t\u0041\u00e9\ud83d\ude00é€"}"#,
            r#"{"messageId":12345678901234567890123,"userId":1.50,"anonymousId":-0,"groupId":1e3,"previousId":7}"#,
            r#"{"big":12345678901234567890123,"neg":-9223372036854775809,"min":-9223372036854775808,"max":9223372036854775807,"u":18446744073709551615}"#,
            r#"{"a":1,"b":2,"a":3}"#,
            "123456789012345678",
            "-123456789012345678",
            "0.1",
            "\"\"",
            "[]",
        ] {
            assert!(agrees(text, 32), "the scanner passed on {text:?}");
        }
    }

    #[test]
    fn leaves_what_it_does_not_accept_to_the_tokenizer() {
        for text in [
            "",
            " ",
            "{",
            "}",
            r#"{"a":}"#,
            r#"{"a":1,}"#,
            "[1,]",
            "[1 2]",
            r#"{"a" 1}"#,
            r#"{a:1}"#,
            "01",
            "-",
            "1.",
            ".5",
            "1e",
            "1e+",
            "+1",
            "1e400",
            "-1e400",
            "tru",
            "truex",
            "nul",
            "{} {}",
            "\"\u{1}\"",
            "\"\\x\"",
            "\"\\u12\"",
            "\"\\ud800\"",
            "\"\\udc00\"",
            "\"\\ud800\\u0041\"",
            "\"open",
            "\u{a0}1",
            "NaN",
            "Infinity",
            r#"{"a":{"b":[1]}}"#,
        ] {
            let limit = if text.starts_with(r#"{"a":{"#) { 2 } else { 32 };
            assert!(!agrees(text, limit), "the scanner accepted {text:?}");
        }
        let hostile = "[".repeat(100_000);
        assert!(parse(&hostile, 32, &[]).is_none());
        assert_eq!(
            parse_keeping(&hostile, 32, &[]),
            Err(ParseError::TooDeep { limit: 32 })
        );
    }

    #[test]
    fn numbers_parse_as_the_tokenizer_parses_them() {
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let bits = next();
            let text = match bits % 5 {
                0 => format!("{}", f64::from_bits(next())),
                1 => format!("{:e}", f64::from_bits(next())),
                2 => format!(
                    "{}.{}e{}",
                    next() % 1_000_000,
                    next(),
                    (next() % 600) as i64 - 300
                ),
                3 => format!("{}", next() as i64),
                _ => format!("-{}{}", next(), next() % 1000),
            };
            if text.contains("inf") || text.contains("NaN") {
                continue;
            }
            agrees(&text, 32);
            agrees(&format!("{{\"n\":{text}}}"), 32);
        }
    }

    /// Random edits of real events: wherever the scanner accepts one, the tokenizer
    /// accepts it too and builds the same tree.
    #[test]
    fn random_edits_of_events_agree_with_the_tokenizer() {
        let events = events();
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as usize
        };
        let alphabet = b"{}[]\":,\\ 0123456789.eE+-tfnulrsa\x01\xc3\xa9u";
        let mut accepted = 0;
        for round in 0..20_000 {
            let mut bytes = events[round % events.len()].as_bytes().to_vec();
            for _ in 0..1 + next() % 3 {
                let at = next() % (bytes.len() + 1);
                match next() % 3 {
                    0 if at < bytes.len() => {
                        bytes.remove(at);
                    }
                    1 if at < bytes.len() => bytes[at] = alphabet[next() % alphabet.len()],
                    _ => bytes.insert(at, alphabet[next() % alphabet.len()]),
                }
            }
            let Ok(text) = std::str::from_utf8(&bytes) else {
                continue;
            };
            accepted += usize::from(agrees(text, 4));
        }
        // Most single edits inside strings leave valid JSON: the comparison ran.
        assert!(accepted > 1_000, "only {accepted} edited events parsed");
    }

    fn events() -> Vec<String> {
        vec![
            r#"{"type":"track","event":"Product Viewed","messageId":"0f5c-1","anonymousId":"a-1","userId":"u-1","timestamp":"2024-03-01T10:00:00.000Z","context":{"app":{"name":"Shop","version":"1.2.3","build":"42"},"device":{"id":"d1","manufacturer":"Apple"},"ip":"10.0.0.1","library":{"name":"analytics.js","version":"4.1.0"},"locale":"en-US","screen":{"width":1440,"height":900,"density":2},"userAgent":"Mozilla/5.0 (Macintosh)"},"properties":{"product_id":"p-9","price":19.99,"quantity":2,"tags":["new","sale"],"in_stock":true,"discount":null,"nested":{"level":{"deep":1}}}}"#.to_owned(),
            r#"{"type":"identify","userId":42,"traits":{"email":"e@example.com","plan":"pro","logins":7,"address":{"city":"Paris","zip":"75001"}},"context":{"traits":{"name":"N"}},"receivedAt":"2024-03-01T10:00:01Z"}"#.to_owned(),
            r#"[{"type":"page","name":"Home","properties":{"path":"/","title":"Welcome \"home\"","referrer":""}},{"x":[1,2,[3,{"y":-0.5e-3}]]}]"#.to_owned(),
        ]
    }
}
