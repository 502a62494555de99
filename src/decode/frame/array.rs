//! The top-level JSON array: a byte scanner that cuts it into element texts, a read at
//! a time, holding at most one element (up to the size limit) in memory.
//!
//! The scanner checks each element's structure as it goes (brackets, strings, where
//! `:` and `,` may stand, which bytes a bare value may hold; not escapes or number
//! syntax, which the parser checks), so it notices a syntax fault where the element
//! stops being JSON, usually a token or two after its cause. A fault costs the element
//! it is in, never the rest of the object:
//!
//! - **Faults that keep the structure** (a bad literal, a bad escape, a raw control
//!   character in a string, a repeated or trailing `,`) need nothing special: the
//!   element is framed as usual and the parser rejects it; `,,` is an empty element,
//!   rejected as such.
//! - **Faults that break it** (a string left open, which flips every later quote; a
//!   missing or extra bracket) end the element at a *resynchronisation point*, and the
//!   scanner starts afresh there with the next element. A resynchronisation point is
//!   a `{` that, in an array whose faulty element began its own line, begins a line at
//!   that element's column (pretty-printed and one-per-line arrays); otherwise a `{`
//!   that follows a `,` or begins a line (whitespace aside). The first such point after
//!   the element's first byte is taken: when the fault is found after it (a string
//!   left open is noticed only a token into the next element), the element's held
//!   bytes from that point are scanned again as the next element; otherwise the
//!   scanner skips forward to the next point, and the skipped bytes belong to the
//!   faulty element. Looking back needs the element's bytes, so it happens only for
//!   elements under the size limit, and the bytes scanned again never outnumber the
//!   input read so far, so an object costs at most twice its scan whatever it holds.
//! - A faulty element is rejected as `not_json` (or `too_large`) with its position and
//!   text. Where the rule has to guess, it errs toward more rejections: a point inside
//!   a string or a nested array of objects cuts a faulty element into fragments, each
//!   rejected on its own (a fragment that begins inside a string reads every quote the
//!   wrong way round, so it does not parse as a message); and an element that does not
//!   begin at a point (a bare value, or an element laid out unlike the faulty one) is
//!   skipped with the faulty element, in whose text it is.
//! - Two elements with no `,` between them are two elements: an element ends where its
//!   value ends. After the closing `]`, a `[` opens another array (concatenated arrays)
//!   and anything else is framed as further elements.
//!
//! An element's size is every byte between the separators around it, leading and
//! trailing whitespace included.

use super::{Frame, Position, RejectReason, emit};

/// Nesting tracked bracket by bracket; deeper levels are only counted (the parser
/// refuses anything that deep anyway).
const MAX_TRACKED_DEPTH: usize = 1024;

/// Where the scanner is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the opening `[`.
    Start,
    /// Inside the array, between elements (after `[` or `,`).
    BeforeElement { after_comma: bool },
    /// Inside an element.
    InElement,
    /// After a fault: skipping to the next resynchronisation point. The skipped bytes
    /// belong to the faulty element.
    Resync,
    /// After the closing `]`.
    Done,
}

/// A `{` where a faulty element may end and the next begin, and the scanner's
/// position there, to scan again from it.
#[derive(Debug, Clone, Copy)]
struct Point {
    /// Offset in the element's held bytes.
    offset: usize,
    line: u64,
    column: u64,
    line_blank: bool,
    after_comma: bool,
}

/// The element being read.
#[derive(Debug, Default)]
struct Element {
    /// Its bytes from its first non-blank one, at most `limit + 1` of them.
    bytes: Vec<u8>,
    /// Every byte between the separators around it, leading whitespace included.
    size: u64,
    /// Whitespace before its first byte, counted in `size` but not held.
    leading: u64,
    line: u64,
    index: u32,
    /// The column it starts at, when it is the first thing on its line: then its
    /// resynchronisation points are the `{`s that begin a line at that column.
    column: Option<u64>,
    /// The first resynchronisation point after its first byte.
    point: Option<Point>,
    /// What broke it, once something did.
    fault: Option<String>,
}

impl Element {
    /// Whether every byte since its first one is held (so it can be scanned again).
    fn whole(&self) -> bool {
        self.size - self.leading == self.bytes.len() as u64
    }
}

/// What the grammar expects next, outside strings and bare values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// A value (after `:` or `,` in an array, or at the element's start).
    Value,
    /// A value or `]` (just after `[`).
    ValueOrClose,
    /// A key (after `,` in an object).
    Key,
    /// A key or `}` (just after `{`).
    KeyOrClose,
    /// `:` after a key.
    Colon,
    /// `,` or the innermost closing bracket, after a value.
    CommaOrClose,
    /// Nothing: the element's value is complete.
    End,
}

/// What one byte did to the element's structure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// It belongs to the element.
    Consumed,
    /// The element's value ended before it: the byte is not part of the element.
    Ended,
    /// The element stops being JSON at this byte.
    Fault(&'static str),
}

/// The structure of one element, checked a byte at a time.
#[derive(Debug)]
struct Grammar {
    /// The open brackets, innermost last, up to [`MAX_TRACKED_DEPTH`].
    open: Vec<u8>,
    /// Levels open beyond the tracked ones.
    untracked: u64,
    expect: Expect,
    in_string: bool,
    /// The string being read is an object's key.
    key: bool,
    escaped: bool,
    /// Inside a bare value (number, `true`, `false`, `null`).
    in_bare: bool,
}

impl Grammar {
    fn new() -> Grammar {
        Grammar {
            open: Vec::new(),
            untracked: 0,
            expect: Expect::Value,
            in_string: false,
            key: false,
            escaped: false,
            in_bare: false,
        }
    }

    fn reset(&mut self) {
        self.open.clear();
        self.untracked = 0;
        self.expect = Expect::Value;
        self.in_string = false;
        self.key = false;
        self.escaped = false;
        self.in_bare = false;
    }

    /// Whether the element's value is complete (a bare value is complete when nothing
    /// is open around it).
    fn complete(&self) -> bool {
        self.expect == Expect::End || (self.in_bare && self.open.is_empty() && self.untracked == 0)
    }

    fn step(&mut self, byte: u8) -> Step {
        if self.in_string {
            // Raw control characters (a line break too) are left to the parser: they
            // do not move the structure.
            if self.escaped {
                self.escaped = false;
            } else if byte == b'\\' {
                self.escaped = true;
            } else if byte == b'"' {
                self.in_string = false;
                if self.key {
                    self.expect = Expect::Colon;
                } else {
                    self.after_value();
                }
            }
            return Step::Consumed;
        }
        if self.in_bare {
            if is_bare(byte) {
                return Step::Consumed;
            }
            self.in_bare = false;
            self.after_value();
        }
        if self.untracked > 0 {
            match byte {
                b'"' => {
                    self.in_string = true;
                    self.key = false;
                }
                b'{' | b'[' => self.untracked = self.untracked.saturating_add(1),
                b'}' | b']' => {
                    self.untracked -= 1;
                    if self.untracked == 0 {
                        self.expect = Expect::CommaOrClose;
                    }
                }
                _ => {}
            }
            return Step::Consumed;
        }
        if self.expect == Expect::End {
            return if byte.is_ascii_whitespace() {
                Step::Consumed
            } else {
                Step::Ended
            };
        }
        if byte.is_ascii_whitespace() {
            return Step::Consumed;
        }
        let innermost = self.open.last().copied();
        match (self.expect, byte) {
            (Expect::Value | Expect::ValueOrClose, b'{') => {
                self.push(b'{');
                self.expect = Expect::KeyOrClose;
            }
            (Expect::Value | Expect::ValueOrClose, b'[') => {
                self.push(b'[');
                self.expect = Expect::ValueOrClose;
            }
            (Expect::Value | Expect::ValueOrClose, b'"') => {
                self.in_string = true;
                self.key = false;
            }
            (Expect::Value | Expect::ValueOrClose, byte) if is_bare_start(byte) => {
                self.in_bare = true;
            }
            (Expect::ValueOrClose, b']') | (Expect::KeyOrClose, b'}') => self.close(),
            (Expect::Key | Expect::KeyOrClose, b'"') => {
                self.in_string = true;
                self.key = true;
            }
            (Expect::Colon, b':') => self.expect = Expect::Value,
            (Expect::CommaOrClose, b',') => {
                self.expect = if innermost == Some(b'{') {
                    Expect::Key
                } else {
                    Expect::Value
                };
            }
            (Expect::CommaOrClose, b'}') if innermost == Some(b'{') => self.close(),
            (Expect::CommaOrClose, b']') if innermost == Some(b'[') => self.close(),
            (Expect::CommaOrClose, b'}' | b']') => {
                return Step::Fault("a closing bracket that does not match the open one");
            }
            (Expect::Value | Expect::ValueOrClose, _) => {
                return Step::Fault("a byte that cannot begin a value");
            }
            (Expect::Key | Expect::KeyOrClose, _) => {
                return Step::Fault("a byte where an object key was expected");
            }
            (Expect::Colon, _) => return Step::Fault("a byte where `:` was expected"),
            (Expect::CommaOrClose, _) => {
                return Step::Fault("a byte where `,` or a closing bracket was expected");
            }
            (Expect::End, _) => return Step::Ended,
        }
        Step::Consumed
    }

    fn push(&mut self, bracket: u8) {
        if self.open.len() < MAX_TRACKED_DEPTH {
            self.open.push(bracket);
        } else {
            self.untracked = 1;
        }
    }

    fn close(&mut self) {
        self.open.pop();
        self.after_value();
    }

    fn after_value(&mut self) {
        self.expect = if self.open.is_empty() {
            Expect::End
        } else {
            Expect::CommaOrClose
        };
    }
}

/// A byte that may begin a bare value: a number or `true`, `false`, `null`.
fn is_bare_start(byte: u8) -> bool {
    matches!(byte, b'-' | b'0'..=b'9' | b't' | b'f' | b'n')
}

/// A byte a bare value may hold (its exact syntax is the parser's to check).
fn is_bare(byte: u8) -> bool {
    matches!(
        byte,
        b'-' | b'+' | b'.' | b'0'
            ..=b'9' | b'e' | b'E' | b'a' | b'f' | b'l' | b'n' | b'r' | b's' | b't' | b'u'
    )
}

/// Cuts a top-level JSON array into element texts; see the module documentation.
#[derive(Debug)]
pub(super) struct ArrayScanner {
    state: State,
    limit: usize,
    /// The line of the next byte (1-based), its column, whether only whitespace came
    /// before it on its line, and whether the last non-blank byte was `,`: where the
    /// resynchronisation points are.
    line: u64,
    column: u64,
    line_blank: bool,
    after_comma: bool,
    /// Elements (and empty elements) so far.
    index: u32,
    /// Whitespace since the last separator: the next element's leading bytes.
    pending: u64,
    element: Element,
    grammar: Grammar,
    /// Held bytes to scan again, from a resynchronisation point found looking back.
    replay: Vec<u8>,
    /// Input bytes read and not yet spent on scanning bytes again: what bounds the
    /// work looking back can cause.
    credit: u64,
    /// The current byte is part of `replay`: it must not move the position now.
    rewound: bool,
    /// Bytes scanned, again or not: what the tests bound.
    #[cfg(test)]
    scanned: u64,
}

impl ArrayScanner {
    /// A scanner whose input starts on `line`, at the array's `[`.
    pub(super) fn new(limit: usize, line: u64) -> ArrayScanner {
        ArrayScanner {
            state: State::Start,
            limit,
            line,
            column: 0,
            line_blank: true,
            after_comma: false,
            index: 0,
            pending: 0,
            element: Element::default(),
            grammar: Grammar::new(),
            replay: Vec::new(),
            credit: 0,
            rewound: false,
            #[cfg(test)]
            scanned: 0,
        }
    }

    /// Where reading is: the element being read, or the next one.
    pub(super) fn position(&self) -> Position {
        match self.state {
            State::InElement | State::Resync => Position {
                line: self.element.line,
                element: self.element.index,
            },
            _ => Position {
                line: self.line,
                element: self.index.saturating_add(1),
            },
        }
    }

    pub(super) fn feed(&mut self, bytes: &[u8], on_frame: &mut dyn FnMut(Frame<'_>)) {
        self.credit = self.credit.saturating_add(bytes.len() as u64);
        for &byte in bytes {
            self.byte(byte, on_frame);
            self.drain_replay(on_frame);
        }
    }

    /// Scans again the bytes a look-back handed over. A fault among them may hand over
    /// a later part of them: that part comes first, then the rest.
    fn drain_replay(&mut self, on_frame: &mut dyn FnMut(Frame<'_>)) {
        while !self.replay.is_empty() {
            let bytes = std::mem::take(&mut self.replay);
            for (index, &byte) in bytes.iter().enumerate() {
                self.byte(byte, on_frame);
                if !self.replay.is_empty() {
                    self.replay.extend_from_slice(&bytes[index + 1..]);
                    break;
                }
            }
        }
    }

    fn byte(&mut self, byte: u8, on_frame: &mut dyn FnMut(Frame<'_>)) {
        #[cfg(test)]
        {
            self.scanned += 1;
        }
        let blank = byte.is_ascii_whitespace();
        match self.state {
            State::Start => match byte {
                b'[' => self.state = State::BeforeElement { after_comma: false },
                _ if blank => {}
                // Framing saw `[` first; anything else is framed as elements.
                _ => self.start_element(byte, on_frame),
            },
            State::BeforeElement { after_comma } => match byte {
                _ if blank => self.pending += 1,
                b']' => {
                    if after_comma {
                        self.empty_element("a `,` before `]`", on_frame);
                    }
                    self.pending = 0;
                    self.state = State::Done;
                }
                b',' => {
                    self.empty_element("an empty array element", on_frame);
                    self.state = State::BeforeElement { after_comma: true };
                }
                _ => self.start_element(byte, on_frame),
            },
            State::InElement => self.in_element(byte, on_frame),
            State::Resync => {
                if byte == b'{' && self.is_point() {
                    self.end_element(on_frame);
                    self.start_element(byte, on_frame);
                } else {
                    self.hold(byte);
                }
            }
            State::Done => match byte {
                b'[' => self.state = State::BeforeElement { after_comma: false },
                _ if blank => {}
                _ => self.start_element(byte, on_frame),
            },
        }
        if std::mem::take(&mut self.rewound) {
            return;
        }
        if byte == b'\n' {
            self.line += 1;
            self.column = 0;
            self.line_blank = true;
        } else {
            self.column += 1;
            if !blank {
                self.line_blank = false;
            }
        }
        if !blank {
            self.after_comma = byte == b',';
        }
    }

    /// Whether a `{` here is a resynchronisation point for the element being read.
    fn is_point(&self) -> bool {
        match self.element.column {
            Some(column) => self.line_blank && self.column == column,
            None => self.line_blank || self.after_comma,
        }
    }

    fn start_element(&mut self, byte: u8, on_frame: &mut dyn FnMut(Frame<'_>)) {
        self.index = self.index.saturating_add(1);
        self.element = Element {
            bytes: std::mem::take(&mut self.element.bytes),
            size: self.pending,
            leading: self.pending,
            line: self.line,
            index: self.index,
            column: self.line_blank.then_some(self.column),
            point: None,
            fault: None,
        };
        self.element.bytes.clear();
        self.pending = 0;
        self.grammar.reset();
        self.state = State::InElement;
        self.in_element(byte, on_frame);
    }

    fn in_element(&mut self, byte: u8, on_frame: &mut dyn FnMut(Frame<'_>)) {
        match self.grammar.step(byte) {
            Step::Consumed => self.hold(byte),
            Step::Ended => {
                self.end_element(on_frame);
                match byte {
                    b',' => self.state = State::BeforeElement { after_comma: true },
                    b']' => self.state = State::Done,
                    // A missing `,`: the byte begins the next element.
                    _ => self.start_element(byte, on_frame),
                }
            }
            Step::Fault(what) => {
                self.hold(byte);
                self.fault(what, on_frame);
            }
        }
    }

    /// Adds a byte to the element (held up to the limit), noting the first
    /// resynchronisation point after its first byte.
    fn hold(&mut self, byte: u8) {
        let element = &self.element;
        if byte == b'{'
            && element.point.is_none()
            && element.size > element.leading
            && element.whole()
            && element.bytes.len() <= self.limit
            && self.is_point()
        {
            self.element.point = Some(Point {
                offset: element.bytes.len(),
                line: self.line,
                column: self.column,
                line_blank: self.line_blank,
                after_comma: self.after_comma,
            });
        }
        let element = &mut self.element;
        element.size += 1;
        if element.bytes.len() <= self.limit {
            element.bytes.push(byte);
        }
    }

    /// The element stopped being JSON: it ends at its first resynchronisation point
    /// (and what follows is scanned again) or, without one, at the next.
    fn fault(&mut self, what: &str, on_frame: &mut dyn FnMut(Frame<'_>)) {
        let offset = (self.element.size - self.element.leading).saturating_sub(1);
        self.element.fault = Some(format!("{what}, at byte {offset} of the element"));
        match self.element.point.take() {
            Some(point) if self.can_rewind(&point) => self.rewind(point, on_frame),
            _ => self.state = State::Resync,
        }
    }

    /// Whether the element's bytes from `point` are all held, and scanning them again
    /// stays within the credit.
    fn can_rewind(&self, point: &Point) -> bool {
        let again = self.element.bytes.len().saturating_sub(point.offset) as u64;
        self.element.whole() && again <= self.credit
    }

    /// Ends the faulty element before `point` and hands the held bytes from there over
    /// to be scanned again, from the position they were first read at.
    fn rewind(&mut self, point: Point, on_frame: &mut dyn FnMut(Frame<'_>)) {
        let again = self.element.bytes.split_off(point.offset);
        self.element.size -= again.len() as u64;
        self.credit = self.credit.saturating_sub(again.len() as u64);
        self.end_element(on_frame);
        self.state = State::BeforeElement { after_comma: false };
        self.line = point.line;
        self.column = point.column;
        self.line_blank = point.line_blank;
        self.after_comma = point.after_comma;
        self.replay = again;
        self.rewound = true;
    }

    /// Frames the element read so far: as an item, or rejected with why.
    fn end_element(&mut self, on_frame: &mut dyn FnMut(Frame<'_>)) {
        let element = &mut self.element;
        let position = Position {
            line: element.line,
            element: element.index,
        };
        let mut end = element.bytes.len();
        let trim = |end: usize, bytes: &[u8]| {
            end - bytes[..end]
                .iter()
                .rev()
                .take_while(|byte| byte.is_ascii_whitespace())
                .count()
        };
        end = trim(end, &element.bytes);
        if element.fault.is_some() && end > 0 && element.bytes[end - 1] == b',' {
            // The separator before a resynchronisation point.
            end = trim(end - 1, &element.bytes);
        }
        let bytes = &element.bytes[..end];
        if element.size > self.limit as u64 {
            on_frame(Frame::Rejected {
                position,
                reason: RejectReason::TooLarge {
                    bytes: element.size,
                    limit: self.limit as u64,
                },
                raw: &bytes[..bytes.len().min(self.limit)],
            });
        } else if let Some(fault) = element.fault.take() {
            on_frame(Frame::Rejected {
                position,
                reason: RejectReason::NotJson(fault),
                raw: bytes,
            });
        } else {
            emit(position, bytes, on_frame);
        }
        element.bytes.clear();
        element.fault = None;
        element.point = None;
    }

    fn empty_element(&mut self, what: &str, on_frame: &mut dyn FnMut(Frame<'_>)) {
        self.index = self.index.saturating_add(1);
        self.pending = 0;
        on_frame(Frame::Rejected {
            position: Position {
                line: self.line,
                element: self.index,
            },
            reason: RejectReason::NotJson(format!("{what}: no value between separators")),
            raw: b"",
        });
    }

    /// The input ended: frames what is left.
    pub(super) fn finish(&mut self, on_frame: &mut dyn FnMut(Frame<'_>)) {
        loop {
            match self.state {
                State::Start | State::Done => return,
                State::BeforeElement { .. } => {
                    on_frame(Frame::Rejected {
                        position: Position {
                            line: self.line,
                            element: self.index.saturating_add(1),
                        },
                        reason: RejectReason::NotJson("the JSON array is not closed".into()),
                        raw: b"",
                    });
                    self.state = State::Done;
                    return;
                }
                State::Resync => {
                    self.end_element(on_frame);
                    self.state = State::Done;
                    return;
                }
                State::InElement if self.grammar.complete() => {
                    self.element.fault =
                        Some("the JSON array ends after this element, without `]`".into());
                    self.end_element(on_frame);
                    self.state = State::Done;
                    return;
                }
                State::InElement => match self.element.point.take() {
                    // A string left open to the end may have swallowed later elements.
                    Some(point) if self.can_rewind(&point) => {
                        self.element.fault =
                            Some("the JSON array ends in the middle of this element".into());
                        self.rewind(point, on_frame);
                        self.rewound = false;
                        self.drain_replay(on_frame);
                    }
                    _ => {
                        self.element.fault =
                            Some("the JSON array ends in the middle of this element".into());
                        self.end_element(on_frame);
                        self.state = State::Done;
                        return;
                    }
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scans `input` (after its `[`) in one read; returns the frames' element indices
    /// and how many bytes were scanned, again or not.
    fn scan(input: &[u8], limit: usize) -> (Vec<u32>, u64) {
        let mut scanner = ArrayScanner::new(limit, 1);
        let mut elements = Vec::new();
        let mut on_frame = |frame: Frame<'_>| {
            elements.push(match frame {
                Frame::Item { position, .. } | Frame::Rejected { position, .. } => position.element,
            })
        };
        scanner.feed(input, &mut on_frame);
        scanner.finish(&mut on_frame);
        (elements, scanner.scanned)
    }

    #[test]
    fn scanning_again_costs_at_most_the_input_once_more() {
        // Faults whose resynchronisation points lie behind them, over and over: strings
        // left open, brackets that do not match, points inside strings.
        let shapes: [&[u8]; 4] = [
            br#"{"a":"x,{"b":"y,{"c":"z,{"d":1}"#,
            br#"{"a":[{"b":[{"c":[{"d":1}}}},"#,
            br#"{"s":",{,{\",{\"x\":1},{"#,
            br#"{"a":{"b":"#,
        ];
        for shape in shapes {
            let mut input = b"[".to_vec();
            for _ in 0..2000 {
                input.extend_from_slice(shape);
            }
            let (elements, scanned) = scan(&input, 1 << 20);
            assert!(
                scanned <= 2 * input.len() as u64,
                "{} bytes scanned for {}",
                scanned,
                input.len()
            );
            assert!(elements.windows(2).all(|pair| pair[1] == pair[0] + 1));
        }
    }
}
