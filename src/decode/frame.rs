//! Framing: an object's bytes → items (one JSON text each), streaming.
//!
//! - **Gzip** is detected by its magic bytes (`1f 8b`), never by the key; concatenated
//!   gzip members (common in S3 logs) are read as one stream.
//! - **Format** is decided by the first non-blank line: if it starts with `[`, the object
//!   is one top-level JSON array whose elements are streamed one by one (elements may
//!   span lines; position = line the element starts on + its index). Otherwise it is
//!   newline-delimited JSON: every line is one item (blank lines skipped, `\r\n` fine),
//!   and lines are never merged, so a broken line cannot swallow the next one.
//! - **Envelopes**: an NDJSON line that is a Segment batch envelope — an object with a
//!   `"batch"` array and no `"type"` — expands to its elements (position = line +
//!   element index). Such a line may be up to `max_envelope_bytes`.
//! - **Limits**: an item over `max_message_bytes` is rejected as too large without being
//!   held in memory beyond the limit; an item that is not UTF-8 is rejected with the
//!   offset of the first bad byte. Memory is bounded by the limits, whatever the size of
//!   the object.

use std::io::{BufRead, BufReader, Cursor, Read};

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;

use super::{Limits, Position, RejectReason};

/// One framed item, or an item rejected before parsing (too large, invalid UTF-8).
#[derive(Debug)]
pub enum Frame<'a> {
    Item {
        position: Position,
        text: &'a str,
    },
    Rejected {
        position: Position,
        reason: RejectReason,
        raw: &'a [u8],
    },
}

/// Totals for a fully read object.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FrameStats {
    /// Bytes read after decompression.
    pub bytes: u64,
}

/// Reading stopped early: where, after how many bytes, and why.
#[derive(Debug)]
pub struct FrameFailure {
    pub position: Position,
    pub bytes: u64,
    pub error: std::io::Error,
}

const READ_BUFFER: usize = 64 * 1024;
const BOM: &[u8] = &[0xef, 0xbb, 0xbf];

/// Frames `reader`, calling `on_frame` once per item in order.
pub fn frames<R: Read>(
    reader: R,
    limits: &Limits,
    mut on_frame: impl FnMut(Frame<'_>),
) -> Result<FrameStats, FrameFailure> {
    let mut frames = FrameReader::new(reader, limits)?;
    while frames.next_frames(usize::MAX, &mut on_frame)? {}
    Ok(frames.stats())
}

/// An object being framed a part at a time: [`FrameReader::next_frames`] frames about
/// as many items as it is asked for and returns, so a caller can stop between parts
/// (the dataflow decodes for a slice of time, then lets the rest of the worker run,
/// whatever the size of the object).
pub struct FrameReader<'r> {
    input: BufReader<Box<dyn Read + 'r>>,
    framer: Framer,
    phase: Phase,
}

/// Where a [`FrameReader`] is in its object.
enum Phase {
    /// Skipping leading whitespace to see how the object starts.
    Start,
    /// Newline-delimited JSON: one item per line.
    Lines,
    /// A top-level JSON array, its elements streamed; `line` is the line being read.
    Array { scanner: ArrayScanner, line: u64 },
    /// The object is read (or reading failed, which was reported).
    Done,
}

impl<'r> FrameReader<'r> {
    /// Opens `reader`: reads just enough to tell gzip from plain and skip a byte order
    /// mark. Fails only when those first bytes cannot be read.
    pub fn new<R: Read + 'r>(reader: R, limits: &Limits) -> Result<FrameReader<'r>, FrameFailure> {
        let failure = |error| FrameFailure {
            position: Position::line(1),
            bytes: 0,
            error,
        };
        let mut raw = reader;
        let magic = read_head(&mut raw, 2).map_err(failure)?;
        let gzip = magic == [0x1f, 0x8b];
        let raw = Cursor::new(magic).chain(raw);
        let mut plain: Box<dyn Read + 'r> = if gzip {
            Box::new(flate2::read::MultiGzDecoder::new(raw))
        } else {
            Box::new(raw)
        };
        let head = read_head(&mut plain, BOM.len()).map_err(failure)?;
        let skip = if head == BOM { BOM.len() } else { 0 };
        let rest: Box<dyn Read + 'r> = Box::new(Cursor::new(head[skip..].to_vec()).chain(plain));
        Ok(FrameReader {
            input: BufReader::with_capacity(READ_BUFFER, rest),
            framer: Framer {
                limits: *limits,
                bytes: skip as u64,
                line: 0,
                buffer: Vec::new(),
            },
            phase: Phase::Start,
        })
    }

    /// Frames the next items, calling `on_frame` for each: about `items` of them (an
    /// envelope line's elements, or a read of an array's elements, are never split).
    /// Returns whether any of the object is left. After an error, which ends the
    /// object, it returns `Ok(false)`.
    pub fn next_frames(
        &mut self,
        items: usize,
        on_frame: &mut dyn FnMut(Frame<'_>),
    ) -> Result<bool, FrameFailure> {
        let result = self.step(items.max(1), on_frame);
        if !matches!(result, Ok(true)) {
            self.phase = Phase::Done;
        }
        result
    }

    /// Totals so far (all of them once the object is read).
    pub fn stats(&self) -> FrameStats {
        FrameStats {
            bytes: self.framer.bytes,
        }
    }

    fn step(
        &mut self,
        items: usize,
        on_frame: &mut dyn FnMut(Frame<'_>),
    ) -> Result<bool, FrameFailure> {
        let framer = &mut self.framer;
        let input = &mut self.input;
        loop {
            match &mut self.phase {
                Phase::Done => return Ok(false),
                Phase::Start => match framer.start(input)? {
                    Some(true) => {
                        self.phase = Phase::Array {
                            scanner: ArrayScanner::new(framer.limits.max_message_bytes),
                            line: framer.line + 1,
                        }
                    }
                    Some(false) => self.phase = Phase::Lines,
                    None => return Ok(false),
                },
                Phase::Lines => return framer.lines(input, items, on_frame),
                Phase::Array { scanner, line } => {
                    return framer.array(input, scanner, line, items, on_frame);
                }
            }
        }
    }
}

/// Up to `count` bytes from the start of `reader`, however it chunks its reads.
fn read_head<R: Read + ?Sized>(reader: &mut R, count: usize) -> std::io::Result<Vec<u8>> {
    let mut head = vec![0; count];
    let mut filled = 0;
    while filled < count {
        match reader.read(&mut head[filled..]) {
            Ok(0) => break,
            Ok(read) => filled += read,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    head.truncate(filled);
    Ok(head)
}

struct Framer {
    limits: Limits,
    bytes: u64,
    /// The last line number read (1-based).
    line: u64,
    buffer: Vec<u8>,
}

impl Framer {
    fn failure(&self, error: std::io::Error) -> FrameFailure {
        FrameFailure {
            position: Position::line(self.line + 1),
            bytes: self.bytes,
            error,
        }
    }

    /// Skips leading whitespace; says whether the object is a JSON array (`Some(true)`,
    /// the input at its `[`), lines (`Some(false)`), or empty (`None`).
    fn start(&mut self, input: &mut dyn BufRead) -> Result<Option<bool>, FrameFailure> {
        loop {
            let chunk = match input.fill_buf() {
                Ok(chunk) => chunk,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(self.failure(error)),
            };
            if chunk.is_empty() {
                return Ok(None);
            }
            let mut skip = 0;
            while skip < chunk.len() && chunk[skip].is_ascii_whitespace() {
                if chunk[skip] == b'\n' {
                    self.line += 1;
                }
                skip += 1;
            }
            let first = chunk.get(skip).copied();
            input.consume(skip);
            self.bytes += skip as u64;
            match first {
                Some(b'[') => return Ok(Some(true)),
                Some(_) => return Ok(Some(false)),
                None => {}
            }
        }
    }

    /// Frames up to `items` lines; returns whether any input is left.
    fn lines(
        &mut self,
        input: &mut dyn BufRead,
        items: usize,
        on_frame: &mut dyn FnMut(Frame<'_>),
    ) -> Result<bool, FrameFailure> {
        let line_limit = self
            .limits
            .max_message_bytes
            .max(self.limits.max_envelope_bytes);
        for _ in 0..items {
            let Some(total) = self
                .read_line(input, line_limit)
                .map_err(|error| self.failure(error))?
            else {
                return Ok(false);
            };
            self.line += 1;
            if self.buffer.trim_ascii().is_empty() {
                continue;
            }
            self.line_item(Position::line(self.line), &self.buffer, total, on_frame);
        }
        Ok(true)
    }

    /// One NDJSON line (without its line ending).
    fn line_item(
        &self,
        position: Position,
        bytes: &[u8],
        total: u64,
        on_frame: &mut dyn FnMut(Frame<'_>),
    ) {
        let limit = self.limits.max_message_bytes;
        let complete = total == bytes.len() as u64;
        if complete
            && memchr::memmem::find(bytes, b"\"batch\"").is_some()
            && self.envelope(position, bytes, on_frame)
        {
            return;
        }
        if total > limit as u64 {
            let reason = RejectReason::TooLarge {
                bytes: total,
                limit: limit as u64,
            };
            on_frame(Frame::Rejected {
                position,
                reason,
                raw: &bytes[..bytes.len().min(limit)],
            });
            return;
        }
        emit(position, bytes, on_frame);
    }

    /// Expands a batch envelope line; false if the line is not one.
    fn envelope(
        &self,
        position: Position,
        bytes: &[u8],
        on_frame: &mut dyn FnMut(Frame<'_>),
    ) -> bool {
        #[derive(Deserialize)]
        struct Envelope<'a> {
            #[serde(borrow)]
            batch: Option<Vec<&'a RawValue>>,
            #[serde(rename = "type")]
            kind: Option<IgnoredAny>,
        }
        let Ok(text) = std::str::from_utf8(bytes) else {
            return false;
        };
        let Ok(Envelope {
            batch: Some(batch),
            kind: None,
        }) = serde_json::from_str::<Envelope<'_>>(text)
        else {
            return false;
        };
        for (index, element) in batch.iter().enumerate() {
            let position = Position {
                line: position.line,
                element: u32::try_from(index + 1).unwrap_or(u32::MAX),
            };
            let element = element.get().as_bytes();
            if element.len() > self.limits.max_message_bytes {
                let limit = self.limits.max_message_bytes;
                on_frame(Frame::Rejected {
                    position,
                    reason: RejectReason::TooLarge {
                        bytes: element.len() as u64,
                        limit: limit as u64,
                    },
                    raw: &element[..limit],
                });
            } else {
                emit(position, element, on_frame);
            }
        }
        true
    }

    /// Reads one line into `self.buffer` (without `\n` or `\r\n`), keeping at most
    /// `limit + 1` bytes; returns the line's full length, or `None` at end of input.
    fn read_line(&mut self, input: &mut dyn BufRead, limit: usize) -> std::io::Result<Option<u64>> {
        self.buffer.clear();
        let mut total: u64 = 0;
        let mut any = false;
        loop {
            let chunk = match input.fill_buf() {
                Ok(chunk) => chunk,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            };
            if chunk.is_empty() {
                break;
            }
            any = true;
            let (used, done) = match memchr::memchr(b'\n', chunk) {
                Some(end) => (end + 1, true),
                None => (chunk.len(), false),
            };
            let content = if done {
                &chunk[..used - 1]
            } else {
                &chunk[..used]
            };
            total += content.len() as u64;
            let room = (limit + 1).saturating_sub(self.buffer.len());
            self.buffer
                .extend_from_slice(&content[..content.len().min(room)]);
            input.consume(used);
            self.bytes += used as u64;
            if done {
                break;
            }
        }
        if !any {
            return Ok(None);
        }
        if self.buffer.last() == Some(&b'\r') && total == self.buffer.len() as u64 {
            self.buffer.pop();
            total -= 1;
        }
        Ok(Some(total))
    }

    /// Streams the elements of a top-level JSON array (the input first at its `[`),
    /// a read at a time, until about `items` elements are framed; returns whether any
    /// input is left.
    fn array(
        &mut self,
        input: &mut dyn BufRead,
        scanner: &mut ArrayScanner,
        line: &mut u64,
        items: usize,
        on_frame: &mut dyn FnMut(Frame<'_>),
    ) -> Result<bool, FrameFailure> {
        let framed = std::cell::Cell::new(0usize);
        let mut counting = |frame: Frame<'_>| {
            framed.set(framed.get() + 1);
            on_frame(frame);
        };
        loop {
            let chunk = match input.fill_buf() {
                Ok(chunk) => chunk,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    return Err(FrameFailure {
                        position: scanner.position(*line),
                        bytes: self.bytes,
                        error,
                    });
                }
            };
            if chunk.is_empty() {
                scanner.finish(*line, &mut counting);
                return Ok(false);
            }
            let used = chunk.len();
            scanner.feed(chunk, line, &mut counting);
            input.consume(used);
            self.bytes += used as u64;
            if framed.get() >= items {
                return Ok(true);
            }
        }
    }
}

fn emit(position: Position, bytes: &[u8], on_frame: &mut dyn FnMut(Frame<'_>)) {
    match std::str::from_utf8(bytes) {
        Ok(text) => on_frame(Frame::Item { position, text }),
        Err(error) => on_frame(Frame::Rejected {
            position,
            reason: RejectReason::InvalidUtf8 {
                offset: error.valid_up_to(),
            },
            raw: bytes,
        }),
    }
}

/// Where the array scanner is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the opening `[`.
    Start,
    /// Inside the array, between elements (after `[` or `,`).
    BeforeElement { after_comma: bool },
    /// Inside an element.
    InElement,
    /// After an element, expecting `,` or `]`.
    AfterElement,
    /// After the closing `]`: only whitespace may follow.
    Done,
    /// Something broke; the rest of the object was reported once.
    Broken,
}

/// A byte-level scanner that cuts a top-level JSON array into element texts. It tracks
/// strings and nesting only; each element is parsed properly later.
struct ArrayScanner {
    state: State,
    limit: usize,
    element: Vec<u8>,
    element_bytes: u64,
    element_line: u64,
    index: u32,
    depth: u32,
    in_string: bool,
    escaped: bool,
}

impl ArrayScanner {
    fn new(limit: usize) -> ArrayScanner {
        ArrayScanner {
            state: State::Start,
            limit,
            element: Vec::new(),
            element_bytes: 0,
            element_line: 0,
            index: 0,
            depth: 0,
            in_string: false,
            escaped: false,
        }
    }

    fn position(&self, line: u64) -> Position {
        match self.state {
            State::InElement => Position {
                line: self.element_line,
                element: self.index,
            },
            _ => Position {
                line,
                element: self.index + 1,
            },
        }
    }

    fn feed(&mut self, bytes: &[u8], line: &mut u64, on_frame: &mut dyn FnMut(Frame<'_>)) {
        for &byte in bytes {
            if self.state == State::InElement {
                if self.element_byte(byte, on_frame) {
                    // The byte ended the element (`,` or `]` at array level): handle it
                    // as a separator below.
                } else {
                    if byte == b'\n' {
                        *line += 1;
                    }
                    continue;
                }
            }
            if byte == b'\n' {
                *line += 1;
            }
            match self.state {
                State::Start => match byte {
                    b'[' => self.state = State::BeforeElement { after_comma: false },
                    byte if byte.is_ascii_whitespace() => {}
                    _ => self.broken(*line, "expected `[`", on_frame),
                },
                State::BeforeElement { after_comma } => match byte {
                    byte if byte.is_ascii_whitespace() => {}
                    b']' if !after_comma => self.state = State::Done,
                    b',' | b']' => self.broken(*line, "empty array element", on_frame),
                    _ => {
                        self.index += 1;
                        self.state = State::InElement;
                        self.element.clear();
                        self.element_bytes = 0;
                        self.element_line = *line;
                        self.depth = 0;
                        self.in_string = false;
                        self.escaped = false;
                        self.element_byte(byte, on_frame);
                    }
                },
                State::InElement => {}
                State::AfterElement => match byte {
                    byte if byte.is_ascii_whitespace() => {}
                    b',' => self.state = State::BeforeElement { after_comma: true },
                    b']' => self.state = State::Done,
                    _ => self.broken(
                        *line,
                        "expected `,` or `]` after an array element",
                        on_frame,
                    ),
                },
                State::Done => {
                    if !byte.is_ascii_whitespace() {
                        self.broken(
                            *line,
                            "data after the end of the top-level JSON array",
                            on_frame,
                        );
                    }
                }
                State::Broken => return,
            }
        }
    }

    /// Adds a byte to the current element; true when the byte ends it (and was not
    /// part of it).
    fn element_byte(&mut self, byte: u8, on_frame: &mut dyn FnMut(Frame<'_>)) -> bool {
        if self.in_string {
            if self.escaped {
                self.escaped = false;
            } else if byte == b'\\' {
                self.escaped = true;
            } else if byte == b'"' {
                self.in_string = false;
            }
        } else {
            match byte {
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' if self.depth > 0 => self.depth -= 1,
                b',' | b']' if self.depth == 0 => {
                    self.end_element(on_frame);
                    return true;
                }
                _ => {}
            }
        }
        self.element_bytes += 1;
        if self.element.len() <= self.limit {
            self.element.push(byte);
        }
        false
    }

    fn end_element(&mut self, on_frame: &mut dyn FnMut(Frame<'_>)) {
        let position = Position {
            line: self.element_line,
            element: self.index,
        };
        // Trailing whitespace between the element and its separator is not part of it.
        while self.element.last().is_some_and(u8::is_ascii_whitespace) {
            self.element.pop();
            self.element_bytes -= 1;
        }
        if self.element_bytes > self.limit as u64 {
            on_frame(Frame::Rejected {
                position,
                reason: RejectReason::TooLarge {
                    bytes: self.element_bytes,
                    limit: self.limit as u64,
                },
                raw: &self.element[..self.element.len().min(self.limit)],
            });
        } else {
            emit(position, &self.element, on_frame);
        }
        self.element.clear();
        self.state = State::AfterElement;
    }

    fn broken(&mut self, line: u64, what: &str, on_frame: &mut dyn FnMut(Frame<'_>)) {
        on_frame(Frame::Rejected {
            position: Position {
                line,
                element: self.index + 1,
            },
            reason: RejectReason::NotJson(format!("{what}; the rest of the object is skipped")),
            raw: b"",
        });
        self.state = State::Broken;
    }

    fn finish(&mut self, line: u64, on_frame: &mut dyn FnMut(Frame<'_>)) {
        match self.state {
            State::Done | State::Broken | State::Start => {}
            State::InElement => {
                let position = Position {
                    line: self.element_line,
                    element: self.index,
                };
                on_frame(Frame::Rejected {
                    position,
                    reason: RejectReason::NotJson(
                        "the JSON array ends in the middle of this element".into(),
                    ),
                    raw: &self.element[..self.element.len().min(self.limit)],
                });
            }
            State::BeforeElement { .. } | State::AfterElement => {
                on_frame(Frame::Rejected {
                    position: Position {
                        line,
                        element: self.index + 1,
                    },
                    reason: RejectReason::NotJson("the JSON array is not closed".into()),
                    raw: b"",
                });
            }
        }
    }
}

#[cfg(test)]
mod tests;
