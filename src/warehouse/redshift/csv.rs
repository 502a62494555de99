//! csv: rows as the gzip CSV parts Redshift's `COPY ... CSV GZIP` reads.
//!
//! Every non-null text field is quoted (quotes doubled; commas, newlines, backslashes
//! and any UTF-8 kept as they are), NULL is the unquoted [`CSV_NULL`], other values are
//! written bare. Parts are cut at `part_bytes` of CSV, so one huge table batch becomes
//! several objects `COPY` reads in parallel from a manifest. NUL characters never
//! reach here: `plan::cell_for` sends such values to `_discards`.

use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;

use super::sql::CSV_NULL;
use crate::route::Timestamp;
use crate::warehouse::plan::Cell;

/// One finished part: gzip bytes and what they hold.
#[derive(Debug)]
pub struct Part {
    pub gzip: Vec<u8>,
    pub csv_bytes: usize,
    pub rows: usize,
    /// Where its rows' lines are, to trace a load error's line back to its row.
    pub lines: PartLines,
}

/// Which physical line of a part each of its rows starts on. A row is one line unless
/// a quoted value holds line breaks, so only those rows are listed: a load error names
/// a physical line (Redshift and PostgreSQL both count a quoted line break as a new
/// line), and the row holding that line is the one it refuses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartLines {
    pub rows: usize,
    /// (row index within the part, line breaks inside that row), in row order.
    pub multi_line: Vec<(usize, u64)>,
}

impl PartLines {
    /// The row (index within the part) on whose lines 1-based physical `line` falls.
    pub fn row_at(&self, line: u64) -> Option<usize> {
        let index = line.checked_sub(1)?;
        // Line breaks inside the rows before the one being looked at.
        let mut inner: u64 = 0;
        for &(row, breaks) in &self.multi_line {
            let start = row as u64 + inner;
            if index < start {
                break;
            }
            if index <= start + breaks {
                return Some(row);
            }
            inner += breaks;
        }
        let row = usize::try_from(index - inner).ok()?;
        (row < self.rows).then_some(row)
    }
}

/// Writes rows into gzip CSV parts of bounded size.
pub struct PartWriter {
    part_bytes: usize,
    line: String,
    current: Option<GzEncoder<Vec<u8>>>,
    current_bytes: usize,
    current_rows: usize,
    current_lines: Vec<(usize, u64)>,
    parts: Vec<Part>,
}

impl PartWriter {
    pub fn new(part_bytes: usize) -> PartWriter {
        PartWriter {
            part_bytes,
            line: String::new(),
            current: None,
            current_bytes: 0,
            current_rows: 0,
            current_lines: Vec::new(),
            parts: Vec::new(),
        }
    }

    /// Appends one row of cells (`None` is NULL).
    pub fn push(&mut self, cells: &[Option<Cell<'_>>]) -> std::io::Result<()> {
        self.line.clear();
        for (index, cell) in cells.iter().enumerate() {
            if index > 0 {
                self.line.push(',');
            }
            write_cell(&mut self.line, cell.as_ref());
        }
        self.line.push('\n');
        self.write_line()
    }

    /// Appends one row of text fields (`None` is NULL).
    pub fn push_text(&mut self, fields: &[Option<&str>]) -> std::io::Result<()> {
        self.line.clear();
        for (index, field) in fields.iter().enumerate() {
            if index > 0 {
                self.line.push(',');
            }
            match field {
                None => self.line.push_str(CSV_NULL),
                Some(text) => quote(&mut self.line, text),
            }
        }
        self.line.push('\n');
        self.write_line()
    }

    fn write_line(&mut self) -> std::io::Result<()> {
        if self.current.is_some() && self.current_bytes + self.line.len() > self.part_bytes {
            self.finish_part()?;
        }
        let encoder = self
            .current
            .get_or_insert_with(|| GzEncoder::new(Vec::new(), Compression::fast()));
        encoder.write_all(self.line.as_bytes())?;
        // Every line ends with one break; more are inside quoted values.
        let breaks = memchr::memchr_iter(b'\n', self.line.as_bytes()).count() as u64;
        if breaks > 1 {
            self.current_lines.push((self.current_rows, breaks - 1));
        }
        self.current_bytes += self.line.len();
        self.current_rows += 1;
        Ok(())
    }

    fn finish_part(&mut self) -> std::io::Result<()> {
        if let Some(encoder) = self.current.take() {
            self.parts.push(Part {
                gzip: encoder.finish()?,
                csv_bytes: self.current_bytes,
                rows: self.current_rows,
                lines: PartLines {
                    rows: self.current_rows,
                    multi_line: std::mem::take(&mut self.current_lines),
                },
            });
        }
        self.current_bytes = 0;
        self.current_rows = 0;
        Ok(())
    }

    /// The parts written (none if no row was pushed).
    pub fn finish(mut self) -> std::io::Result<Vec<Part>> {
        self.finish_part()?;
        Ok(self.parts)
    }
}

fn write_cell(out: &mut String, cell: Option<&Cell>) {
    use std::fmt::Write as _;
    match cell {
        None => out.push_str(CSV_NULL),
        Some(Cell::Text(text)) => quote(out, text),
        Some(Cell::Boolean(value)) => out.push_str(if *value { "true" } else { "false" }),
        Some(Cell::BigInt(value)) => out.push_str(itoa::Buffer::new().format(*value)),
        // Debug keeps full precision and uses an exponent for very large or small values.
        Some(Cell::Double(value)) => {
            let _ = write!(out, "{value:?}");
        }
        Some(Cell::Timestamp(micros)) => timestamp(out, *micros),
    }
}

/// `2024-01-02 03:04:05.123456`: UTC, without zone, as `TIMEFORMAT 'auto'` reads it.
pub fn timestamp(out: &mut String, micros: i64) {
    match Timestamp(micros).iso_bytes() {
        Some(mut bytes) => {
            bytes[10] = b' ';
            out.push_str(std::str::from_utf8(&bytes).unwrap_or_default());
        }
        None => {
            let text = Timestamp(micros).to_string();
            out.push_str(&text.replacen('T', " ", 1).replace('Z', ""));
        }
    }
}

/// `text` in double quotes, each `"` in it doubled.
fn quote(out: &mut String, text: &str) {
    out.reserve(text.len() + 2);
    out.push('"');
    let mut rest = text;
    // memchr's search: most texts are short, and `str::find`'s set-up cost more
    // than the search.
    while let Some(at) = memchr::memchr(b'"', rest.as_bytes()) {
        out.push_str(&rest[..=at]);
        out.push('"');
        rest = &rest[at + 1..];
    }
    out.push_str(rest);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn unzip(parts: &[Part]) -> Vec<String> {
        parts
            .iter()
            .map(|part| {
                let mut text = String::new();
                flate2::read::GzDecoder::new(&part.gzip[..])
                    .read_to_string(&mut text)
                    .unwrap();
                text
            })
            .collect()
    }

    #[test]
    fn cells_are_quoted_or_bare_and_null_is_unquoted() {
        let mut writer = PartWriter::new(1 << 20);
        let text = Cell::Text("say \"hi\", then\nleave \\N".into());
        let empty = Cell::Text(String::new().into());
        writer
            .push(&[
                Some(text),
                None,
                Some(empty),
                Some(Cell::Boolean(true)),
                Some(Cell::BigInt(-7)),
                Some(Cell::Double(0.1)),
                Some(Cell::Double(1e300)),
                Some(Cell::Timestamp(1_704_164_645_123_456)),
            ])
            .unwrap();
        let parts = writer.finish().unwrap();
        assert_eq!(
            unzip(&parts),
            [
                "\"say \"\"hi\"\", then\nleave \\N\",\\N,\"\",true,-7,0.1,1e300,2024-01-02 03:04:05.123456\n"
            ]
        );
    }

    proptest::proptest! {
        #[test]
        fn texts_are_quoted_with_every_quote_doubled(text in "[a\"\\\\,\n]{0,12}") {
            let mut out = String::from("x");
            quote(&mut out, &text);
            proptest::prop_assert_eq!(out, format!("x\"{}\"", text.replace('"', "\"\"")));
        }
    }

    #[test]
    fn parts_are_cut_at_the_size_limit() {
        let mut writer = PartWriter::new(100);
        for i in 0..50 {
            writer.push_text(&[Some(&format!("row {i:04}"))]).unwrap();
        }
        let parts = writer.finish().unwrap();
        assert!(parts.len() > 1);
        assert!(parts.iter().all(|part| part.csv_bytes <= 100));
        assert_eq!(parts.iter().map(|part| part.rows).sum::<usize>(), 50);
        let all: String = unzip(&parts).concat();
        assert_eq!(all.lines().count(), 50);
        assert!(all.starts_with("\"row 0000\"\n"));
    }

    #[test]
    fn a_line_number_finds_the_row_whose_lines_hold_it() {
        let mut writer = PartWriter::new(1 << 20);
        let texts = ["one", "two\nlines", "three", "four\nfive\nsix", "seven"];
        for text in texts {
            writer.push_text(&[Some(text)]).unwrap();
        }
        let parts = writer.finish().unwrap();
        let lines = &parts[0].lines;
        assert_eq!(lines.multi_line, [(1, 1), (3, 2)]);
        // Physical lines: 1 one, 2-3 two, 4 three, 5-7 four, 8 seven.
        let rows: Vec<Option<usize>> = (0..=9).map(|line| lines.row_at(line)).collect();
        assert_eq!(
            rows,
            [
                None,
                Some(0),
                Some(1),
                Some(1),
                Some(2),
                Some(3),
                Some(3),
                Some(3),
                Some(4),
                None
            ]
        );
        // The CSV has as many physical lines as the rows span.
        assert_eq!(unzip(&parts).concat().lines().count(), 8);
        let plain = PartLines {
            rows: 3,
            multi_line: vec![],
        };
        assert_eq!(plain.row_at(3), Some(2));
        assert_eq!(plain.row_at(4), None);
    }

    #[test]
    fn nothing_pushed_is_no_part() {
        assert!(PartWriter::new(100).finish().unwrap().is_empty());
    }
}
