//! pg_copy: PostgreSQL's binary COPY format, written straight into the buffers that go
//! to the server.
//!
//! tokio-postgres' `BinaryCopyInWriter` takes each row as `&[&dyn ToSql]` and hands the
//! connection a message every 4 KiB, so the loader built two vectors per row and awaited
//! a send every few rows. The format is small (a header; per row a field count and
//! length-prefixed fields; a trailer), so the loader encodes it itself, in a plain loop,
//! and sends buffers of [`CHUNK`] bytes. The cells' types were chosen by
//! `plan::cell_for` from the columns' own types, so each cell's encoding is the one its
//! column's binary input function reads.

use bytes::{BufMut, Bytes, BytesMut};

use super::plan::Cell;

/// The binary COPY signature, then the flags field and the header extension length.
const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// Bytes buffered before they are handed to the connection.
pub const CHUNK: usize = 256 * 1024;

/// Microseconds between 1970-01-01 and PostgreSQL's epoch, 2000-01-01.
const POSTGRES_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// Encodes rows of cells (`None` is NULL) as one binary COPY stream.
#[derive(Debug)]
pub struct CopyEncoder {
    buffer: BytesMut,
}

impl Default for CopyEncoder {
    fn default() -> Self {
        CopyEncoder::new()
    }
}

impl CopyEncoder {
    /// A stream that starts with the header.
    pub fn new() -> CopyEncoder {
        let mut buffer = BytesMut::with_capacity(CHUNK + CHUNK / 4);
        buffer.put_slice(HEADER);
        CopyEncoder { buffer }
    }

    /// Appends one row. `cells.len()` is the COPY column count (at most 1600, the most
    /// columns a PostgreSQL table can have, so it fits the format's 16-bit count).
    pub fn row(&mut self, cells: &[Option<Cell<'_>>]) {
        self.buffer.put_i16(cells.len() as i16);
        for cell in cells {
            match cell {
                None => self.buffer.put_i32(-1),
                Some(Cell::Boolean(value)) => {
                    self.buffer.put_i32(1);
                    self.buffer.put_u8(u8::from(*value));
                }
                Some(Cell::BigInt(value)) => {
                    self.buffer.put_i32(8);
                    self.buffer.put_i64(*value);
                }
                Some(Cell::Double(value)) => {
                    self.buffer.put_i32(8);
                    self.buffer.put_u64(value.to_bits());
                }
                Some(Cell::Timestamp(micros)) => {
                    self.buffer.put_i32(8);
                    self.buffer
                        .put_i64(micros.saturating_sub(POSTGRES_EPOCH_MICROS));
                }
                Some(Cell::Text(text)) => {
                    // Values are at most 65535 bytes (wider ones are discarded) and keys
                    // 1024, far below the format's 2 GiB field limit.
                    self.buffer.put_i32(text.len() as i32);
                    self.buffer.put_slice(text.as_bytes());
                }
            }
        }
    }

    /// Whether a buffer's worth is ready to send.
    pub fn is_full(&self) -> bool {
        self.buffer.len() >= CHUNK
    }

    /// What is buffered so far; the encoder continues empty.
    pub fn take(&mut self) -> Bytes {
        self.buffer.split().freeze()
    }

    /// The rest of the stream, with the trailer.
    pub fn finish(mut self) -> Bytes {
        self.buffer.put_i16(-1);
        self.buffer.freeze()
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;

    #[test]
    fn a_row_is_a_field_count_and_length_prefixed_big_endian_fields() {
        let mut encoder = CopyEncoder::new();
        encoder.row(&[
            Some(Cell::Text(Cow::Borrowed("hé"))),
            None,
            Some(Cell::Boolean(true)),
            Some(Cell::BigInt(-2)),
            Some(Cell::Double(1.5)),
            Some(Cell::Timestamp(POSTGRES_EPOCH_MICROS + 1)),
        ]);
        let bytes = encoder.finish();
        let mut expected: Vec<u8> = HEADER.to_vec();
        expected.extend_from_slice(&6i16.to_be_bytes());
        expected.extend_from_slice(&3i32.to_be_bytes());
        expected.extend_from_slice("hé".as_bytes());
        expected.extend_from_slice(&(-1i32).to_be_bytes());
        expected.extend_from_slice(&1i32.to_be_bytes());
        expected.push(1);
        expected.extend_from_slice(&8i32.to_be_bytes());
        expected.extend_from_slice(&(-2i64).to_be_bytes());
        expected.extend_from_slice(&8i32.to_be_bytes());
        expected.extend_from_slice(&1.5f64.to_bits().to_be_bytes());
        expected.extend_from_slice(&8i32.to_be_bytes());
        expected.extend_from_slice(&1i64.to_be_bytes());
        expected.extend_from_slice(&(-1i16).to_be_bytes());
        assert_eq!(bytes.as_ref(), expected.as_slice());
    }

    #[test]
    fn taking_a_full_buffer_keeps_the_stream_whole() {
        let mut encoder = CopyEncoder::new();
        let text = "x".repeat(1000);
        let mut sent = Vec::new();
        for _ in 0..600 {
            encoder.row(&[Some(Cell::Text(Cow::Borrowed(&text)))]);
            if encoder.is_full() {
                sent.extend_from_slice(&encoder.take());
            }
        }
        assert!(!sent.is_empty(), "600 KB of rows fill at least one buffer");
        sent.extend_from_slice(&encoder.finish());
        assert_eq!(sent.len(), HEADER.len() + 600 * (2 + 4 + 1000) + 2);
        assert!(sent.starts_with(HEADER) && sent.ends_with(&(-1i16).to_be_bytes()));
    }
}
