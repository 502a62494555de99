//! Framing: an object's bytes → items (one JSON text each), streaming.
//!
//! - **Gzip** is detected by its magic bytes (`1f 8b`), never by the key; concatenated
//!   gzip members (common in S3 logs) are read as one stream.
//! - **Format** is decided by the first non-blank line: if it starts with `[`, the object
//!   is one top-level JSON array whose elements are streamed one by one (elements may
//!   span lines; position = line the element starts on + its index; see [`array`] for
//!   how a syntax fault inside the array costs only the element it is in). Otherwise it
//!   is newline-delimited JSON: every line is one item (lines of only whitespace
//!   skipped, `\r\n` fine), and lines are never merged, so a broken line cannot swallow
//!   the next one.
//! - **Envelopes**: an NDJSON line that is a Segment batch envelope — an object with a
//!   `"batch"` array and no `"type"` — expands to its elements (position = line +
//!   element index). Such a line may be up to `max_envelope_bytes`.
//! - **Limits**: an item's size is every byte between the separators around it (line
//!   ends, or an array's `[`, `,` and `]`), leading and trailing whitespace included, so
//!   a line padded with megabytes of blanks before its event is an item too large, never
//!   a blank line. An item over `max_message_bytes` is rejected as too large, with its
//!   position and the start of its text, without being held in memory beyond the limit;
//!   an item that is not UTF-8 is rejected with the offset of the first bad byte. Memory
//!   is bounded by the limits, whatever the size of the object.

mod array;

use std::io::{BufRead, BufReader, Cursor, Read};

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;

use super::{Limits, Position, RejectReason};
use array::ArrayScanner;

/// One framed item, or an item rejected before parsing (too large, invalid UTF-8, or an
/// array element whose syntax fault broke the array's structure).
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

/// What marks a line that may be a batch envelope. Searched for in every line, so the
/// searcher is built once rather than per line.
static BATCH_KEY: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\"batch\""));

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
    /// A top-level JSON array, its elements streamed (boxed: one per object, and the
    /// other phases are empty).
    Array(Box<ArrayScanner>),
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
                carried: 0,
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
                        self.phase = Phase::Array(Box::new(ArrayScanner::new(
                            framer.limits.max_message_bytes,
                            framer.line + 1,
                        )))
                    }
                    Some(false) => self.phase = Phase::Lines,
                    None => return Ok(false),
                },
                Phase::Lines => return framer.lines(input, items, on_frame),
                Phase::Array(scanner) => return framer.array(input, scanner, items, on_frame),
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
    /// Whitespace of the first line that [`Framer::start`] consumed: part of that line.
    carried: u64,
    /// The line being framed, from its first non-blank byte, at most the line limit + 1
    /// bytes of it.
    buffer: Vec<u8>,
}

/// One line as [`Framer::read_line`] read it (its text is in `Framer::buffer`).
struct Line {
    /// Every byte of the line but its ending (`\n` or `\r\n`).
    bytes: u64,
    /// Only whitespace, however long: not an item.
    blank: bool,
    /// The buffer holds all of the line from its first non-blank byte.
    whole: bool,
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
                    self.carried = 0;
                } else {
                    self.carried += 1;
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
            let Some(line) = self
                .read_line(input, line_limit)
                .map_err(|error| self.failure(error))?
            else {
                return Ok(false);
            };
            self.line += 1;
            if line.blank {
                continue;
            }
            self.line_item(Position::line(self.line), &line, on_frame);
        }
        Ok(true)
    }

    /// One NDJSON line, its text (from its first non-blank byte) in `self.buffer`.
    fn line_item(&self, position: Position, line: &Line, on_frame: &mut dyn FnMut(Frame<'_>)) {
        let bytes = &self.buffer[..];
        let limit = self.limits.max_message_bytes;
        if line.whole
            && line.bytes <= self.limits.max_envelope_bytes as u64
            && BATCH_KEY.find(bytes).is_some()
            && self.envelope(position, bytes, on_frame)
        {
            return;
        }
        if line.bytes > limit as u64 {
            let reason = RejectReason::TooLarge {
                bytes: line.bytes,
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
        let limit = self.limits.max_message_bytes;
        for (index, element) in batch.iter().enumerate() {
            let position = Position {
                line: position.line,
                element: u32::try_from(index + 1).unwrap_or(u32::MAX),
            };
            let element = element.get().as_bytes();
            let size = element.len() + blanks_around(bytes, element);
            if size > limit {
                on_frame(Frame::Rejected {
                    position,
                    reason: RejectReason::TooLarge {
                        bytes: size as u64,
                        limit: limit as u64,
                    },
                    raw: &element[..element.len().min(limit)],
                });
            } else {
                emit(position, element, on_frame);
            }
        }
        true
    }

    /// Reads one line: its text from its first non-blank byte into `self.buffer`,
    /// keeping at most `limit + 1` bytes of it, however long the line or its leading
    /// whitespace; `None` at end of input.
    fn read_line(
        &mut self,
        input: &mut dyn BufRead,
        limit: usize,
    ) -> std::io::Result<Option<Line>> {
        self.buffer.clear();
        // The first line's leading whitespace was consumed finding the format.
        let mut bytes = std::mem::take(&mut self.carried);
        let mut leading = bytes;
        let mut blank = true;
        let mut last = 0u8;
        let mut any = bytes > 0;
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
            let mut content = if done {
                &chunk[..used - 1]
            } else {
                &chunk[..used]
            };
            bytes += content.len() as u64;
            if let Some(&byte) = content.last() {
                last = byte;
            }
            if blank {
                let skip = content
                    .iter()
                    .take_while(|byte| byte.is_ascii_whitespace())
                    .count();
                leading += skip as u64;
                content = &content[skip..];
                blank = content.is_empty();
            }
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
        if last == b'\r' {
            // A `\r\n` ending: the `\r` is not part of the line.
            if !blank && bytes - leading == self.buffer.len() as u64 {
                self.buffer.pop();
            }
            bytes -= 1;
        }
        let whole = !blank && bytes.checked_sub(leading) == Some(self.buffer.len() as u64);
        Ok(Some(Line {
            bytes,
            blank,
            whole,
        }))
    }

    /// Streams the elements of a top-level JSON array (the input first at its `[`),
    /// a read at a time, until about `items` elements are framed; returns whether any
    /// input is left.
    fn array(
        &mut self,
        input: &mut dyn BufRead,
        scanner: &mut ArrayScanner,
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
                        position: scanner.position(),
                        bytes: self.bytes,
                        error,
                    });
                }
            };
            if chunk.is_empty() {
                scanner.finish(&mut counting);
                return Ok(false);
            }
            let used = chunk.len();
            scanner.feed(chunk, &mut counting);
            input.consume(used);
            self.bytes += used as u64;
            if framed.get() >= items {
                return Ok(true);
            }
        }
    }
}

/// How many whitespace bytes surround `element`, a slice of `text`: up to the
/// separators around it, which count toward its size.
fn blanks_around(text: &[u8], element: &[u8]) -> usize {
    let start = (element.as_ptr() as usize).saturating_sub(text.as_ptr() as usize);
    let end = (start + element.len()).min(text.len());
    let before = text[..start.min(end)]
        .iter()
        .rev()
        .take_while(|byte| byte.is_ascii_whitespace())
        .count();
    let after = text[end..]
        .iter()
        .take_while(|byte| byte.is_ascii_whitespace())
        .count();
    before + after
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

#[cfg(test)]
mod tests;
