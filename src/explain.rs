//! explain: what each input item becomes, one JSON object per item.
//!
//! This is how a user answers "what will this event turn into?" without a warehouse,
//! and how tests check the event → rows mapping from outside the crate. It runs the same
//! decode and route code as the pipeline; nothing here decides anything about names or
//! types.
//!
//! Output, one line per item, in input order:
//! `{"line":N,"rows":[{"table":T,"columns":{NAME:{"type":TYPE,"value":V},...}},...]}`
//! or `{"line":N,"rejected":REASON,"code":CODE}`; items inside a JSON array or batch
//! envelope also carry `"element":E`.

use std::io::{self, Read, Write};
use std::sync::Arc;

use serde::Serialize;
use serde::ser::SerializeMap;

use crate::decode::{self, Decoded, Limits, Position};
use crate::route::{Router, Row, ValueRef};

/// Counts of what was explained.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExplainSummary {
    pub messages: u64,
    pub rejections: u64,
    pub rows: u64,
}

/// Explains every item of `input` (named `object` in derived message ids) to `output`.
pub fn explain<R: Read, W: Write>(
    input: R,
    object: &str,
    limits: &Limits,
    output: W,
) -> io::Result<ExplainSummary> {
    let object: Arc<str> = Arc::from(object);
    let mut output = io::BufWriter::new(output);
    let mut router = Router::new();
    let mut rows = Vec::new();
    let mut summary = ExplainSummary::default();
    let mut write_error = None;
    decode::decode_object(input, &object, limits, |item| {
        if write_error.is_some() {
            return;
        }
        let result = match item {
            Decoded::Message {
                position, message, ..
            } => {
                rows.clear();
                router.rows_for(&message, &object, position, &mut rows);
                summary.messages += 1;
                summary.rows += rows.len() as u64;
                write_line(
                    &mut output,
                    &Explained::Rows {
                        position,
                        rows: &rows,
                    },
                )
            }
            Decoded::Rejected(rejection) => {
                summary.rejections += 1;
                write_line(
                    &mut output,
                    &Explained::Rejected {
                        position: rejection.position,
                        reason: rejection.reason.to_string(),
                        code: rejection.reason.code(),
                    },
                )
            }
        };
        if let Err(error) = result {
            write_error = Some(error);
        }
    });
    if let Some(error) = write_error {
        return Err(error);
    }
    output.flush()?;
    Ok(summary)
}

fn write_line<W: Write>(output: &mut W, explained: &Explained<'_>) -> io::Result<()> {
    serde_json::to_writer(&mut *output, explained)?;
    output.write_all(b"\n")
}

enum Explained<'a> {
    Rows {
        position: Position,
        rows: &'a [Row],
    },
    Rejected {
        position: Position,
        reason: String,
        code: &'static str,
    },
}

impl Serialize for Explained<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        let position = match self {
            Explained::Rows { position, .. } | Explained::Rejected { position, .. } => position,
        };
        map.serialize_entry("line", &position.line)?;
        if position.element != 0 {
            map.serialize_entry("element", &position.element)?;
        }
        match self {
            Explained::Rows { rows, .. } => {
                let rows: Vec<ExplainedRow<'_>> = rows.iter().map(ExplainedRow).collect();
                map.serialize_entry("rows", &rows)?;
            }
            Explained::Rejected { reason, code, .. } => {
                map.serialize_entry("rejected", reason)?;
                map.serialize_entry("code", code)?;
            }
        }
        map.end()
    }
}

struct ExplainedRow<'a>(&'a Row);

impl Serialize for ExplainedRow<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let row = self.0;
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("table", row.table.as_str())?;
        map.serialize_entry("columns", &ExplainedColumns(row))?;
        map.end()
    }
}

struct ExplainedColumns<'a>(&'a Row);

impl Serialize for ExplainedColumns<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let row = self.0;
        let mut map = serializer.serialize_map(Some(row.cell_count() + 1))?;
        // The row's key, under the name of its table's key column (`id`).
        let key = ValueRef::Varchar(&row.message_id);
        let column = crate::warehouse::sql::key_column(row.table.as_str());
        map.serialize_entry(column, &ExplainedValue(key))?;
        for (name, value) in row.cells() {
            map.serialize_entry(name.as_str(), &ExplainedValue(value))?;
        }
        map.end()
    }
}

struct ExplainedValue<'a>(ValueRef<'a>);

impl Serialize for ExplainedValue<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("type", self.0.column_type().kind_name())?;
        match self.0 {
            ValueRef::Boolean(b) => map.serialize_entry("value", &b)?,
            ValueRef::BigInt(i) => map.serialize_entry("value", &i)?,
            ValueRef::Double(f) => map.serialize_entry("value", &f)?,
            ValueRef::Timestamp(t) => map.serialize_entry("value", &t.to_string())?,
            ValueRef::Varchar(s) => map.serialize_entry("value", s)?,
        }
        map.end()
    }
}
