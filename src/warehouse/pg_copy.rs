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

/// A buffer's size: a chunk and room for the row that fills it.
const BUFFER: usize = CHUNK + CHUNK / 4;

/// The most bytes a field other than a text takes: its length and 8 bytes of value.
const MAX_FIXED_FIELD: usize = 12;

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
        let mut buffer = BytesMut::with_capacity(BUFFER);
        buffer.put_slice(HEADER);
        CopyEncoder { buffer }
    }

    /// Appends one row. `cells.len()` is the COPY column count (at most 1600, the most
    /// columns a PostgreSQL table can have, so it fits the format's 16-bit count).
    ///
    /// A table has far more columns than a row has values, so most fields are NULL: the
    /// row reserves room for every field but a text's bytes up front and writes each
    /// field without a capacity check of its own. Before each field at least
    /// [`MAX_FIXED_FIELD`] bytes per field left are reserved; a text reserves its bytes
    /// on top of that.
    pub fn row(&mut self, cells: &[Option<Cell<'_>>]) {
        self.buffer.reserve(2 + MAX_FIXED_FIELD * cells.len());
        self.put_reserved((cells.len() as i16).to_be_bytes());
        for (index, cell) in cells.iter().enumerate() {
            match cell {
                None => self.put_reserved((-1i32).to_be_bytes()),
                Some(Cell::Boolean(value)) => {
                    self.put_reserved([0, 0, 0, 1, u8::from(*value)]);
                }
                Some(Cell::BigInt(value)) => self.put_fixed(value.to_be_bytes()),
                Some(Cell::Double(value)) => self.put_fixed(value.to_bits().to_be_bytes()),
                Some(Cell::Timestamp(micros)) => {
                    self.put_fixed(micros.saturating_sub(POSTGRES_EPOCH_MICROS).to_be_bytes());
                }
                Some(Cell::Text(text)) => {
                    // Values are at most 65535 bytes (wider ones are discarded) and keys
                    // 1024, far below the format's 2 GiB field limit.
                    let left = cells.len() - index - 1;
                    self.buffer.reserve(4 + text.len() + MAX_FIXED_FIELD * left);
                    self.put_reserved((text.len() as i32).to_be_bytes());
                    self.buffer.put_slice(text.as_bytes());
                }
            }
        }
    }

    /// An 8-byte field: its length, then its value.
    #[inline(always)]
    fn put_fixed(&mut self, value: [u8; 8]) {
        let mut field = [0; 12];
        field[..4].copy_from_slice(&8i32.to_be_bytes());
        field[4..].copy_from_slice(&value);
        self.put_reserved(field);
    }

    /// Appends `bytes` to room [`CopyEncoder::row`] reserved.
    #[inline(always)]
    fn put_reserved<const N: usize>(&mut self, bytes: [u8; N]) {
        let len = self.buffer.len();
        assert!(
            self.buffer.capacity() - len >= N,
            "COPY row room not reserved"
        );
        // SAFETY: the buffer has room for `N` more bytes past `len` (checked above), so
        // the pointer stays inside its allocation; the bytes are written before the
        // length covers them.
        unsafe {
            self.buffer
                .as_mut_ptr()
                .add(len)
                .copy_from_nonoverlapping(bytes.as_ptr(), N);
            self.buffer.set_len(len + N);
        }
    }

    /// Whether a buffer's worth is ready to send.
    pub fn is_full(&self) -> bool {
        self.buffer.len() >= CHUNK
    }

    /// What is buffered so far; the encoder continues in a new buffer. (Splitting
    /// the buffer kept the rest of its allocation, shared with the bytes sent, and the
    /// next row that outgrew it copied what was written since into a new one.)
    pub fn take(&mut self) -> Bytes {
        std::mem::replace(&mut self.buffer, BytesMut::with_capacity(BUFFER)).freeze()
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

    /// The format written field by field with checked writes, for comparison.
    fn plainly(rows: &[Vec<Option<Cell<'_>>>]) -> Vec<u8> {
        let mut out = HEADER.to_vec();
        for row in rows {
            out.extend_from_slice(&(row.len() as i16).to_be_bytes());
            for cell in row {
                let (length, value): (i32, Vec<u8>) = match cell {
                    None => (-1, Vec::new()),
                    Some(Cell::Boolean(value)) => (1, vec![u8::from(*value)]),
                    Some(Cell::BigInt(value)) => (8, value.to_be_bytes().to_vec()),
                    Some(Cell::Double(value)) => (8, value.to_bits().to_be_bytes().to_vec()),
                    Some(Cell::Timestamp(micros)) => {
                        let since = micros.saturating_sub(POSTGRES_EPOCH_MICROS);
                        (8, since.to_be_bytes().to_vec())
                    }
                    Some(Cell::Text(text)) => (text.len() as i32, text.as_bytes().to_vec()),
                };
                out.extend_from_slice(&length.to_be_bytes());
                out.extend_from_slice(&value);
            }
        }
        out.extend_from_slice(&(-1i16).to_be_bytes());
        out
    }

    fn any_cell() -> impl proptest::strategy::Strategy<Value = Option<Cell<'static>>> {
        use proptest::prelude::*;
        prop_oneof![
            4 => Just(None),
            1 => any::<bool>().prop_map(|value| Some(Cell::Boolean(value))),
            1 => any::<i64>().prop_map(|value| Some(Cell::BigInt(value))),
            1 => any::<f64>().prop_map(|value| Some(Cell::Double(value))),
            1 => any::<i64>().prop_map(|value| Some(Cell::Timestamp(value))),
            // Long texts too, so a row outgrows the room reserved for its other fields.
            2 => (0usize..70_000).prop_map(|len| Some(Cell::Text(Cow::Owned("t".repeat(len % 3 * len / 2))))),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        #[test]
        fn rows_encode_as_written_field_by_field(
            rows in proptest::collection::vec(proptest::collection::vec(any_cell(), 0..200), 1..40)
        ) {
            let mut encoder = CopyEncoder::new();
            let mut sent = Vec::new();
            for row in &rows {
                encoder.row(row);
                if encoder.is_full() {
                    sent.extend_from_slice(&encoder.take());
                }
            }
            sent.extend_from_slice(&encoder.finish());
            proptest::prop_assert_eq!(sent, plainly(&rows));
        }
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
