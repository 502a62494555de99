//! `tracktable-workload WORKLOAD FILE`: one pass of one stage over the NDJSON lines of
//! FILE, for counting its instructions under callgrind. Only the function `measured`
//! does the work, so `--toggle-collect=*measured*` counts that and nothing else
//! (neither reading the file nor building what an encoder needs).
//!
//! Workloads: `value-parse` (a plain `serde_json::Value` parse of each line, the
//! yardstick), `decode-route` (tracktable's decode and route into typed rows),
//! `encode-postgres` (the binary COPY encoding of those rows), `encode-redshift` (the
//! gzip CSV parts of those rows).

use std::collections::HashMap;
use std::hint::black_box;
use std::process::ExitCode;
use std::sync::Arc;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use tracktable::columns::width_class;
use tracktable::decode::{self, Decoded, Limits};
use tracktable::route::{ColumnType, Router, Row};
use tracktable::warehouse::pg_copy::CopyEncoder;
use tracktable::warehouse::plan::{Layout, TableSchema};
use tracktable::warehouse::redshift::csv::PartWriter;
use tracktable::warehouse::sql::key_column;

/// What a workload needs, prepared outside the measured function.
enum Input {
    Lines(Vec<u8>),
    Tables(Vec<(String, TableSchema, Vec<Row>)>),
}

fn main() -> ExitCode {
    tracktable::allocator::tune();
    let args: Vec<String> = std::env::args().collect();
    let (Some(workload), Some(file)) = (args.get(1), args.get(2)) else {
        eprintln!(
            "usage: tracktable-workload value-parse|decode-route|encode-postgres|encode-redshift FILE"
        );
        return ExitCode::FAILURE;
    };
    let ndjson = match std::fs::read(file) {
        Ok(bytes) => bytes,
        Err(error) => {
            eprintln!("cannot read {file}: {error}");
            return ExitCode::FAILURE;
        }
    };
    let input = match workload.as_str() {
        "value-parse" | "decode-route" => Input::Lines(ndjson),
        "encode-postgres" | "encode-redshift" => Input::Tables(tables(&ndjson)),
        other => {
            eprintln!("unknown workload {other:?}");
            return ExitCode::FAILURE;
        }
    };
    let done = measured(workload, &input);
    // One line for the caller: how many items the measured pass handled.
    println!("{done}");
    ExitCode::SUCCESS
}

/// The measured pass; returns the items it handled (lines, or rows encoded).
#[inline(never)]
fn measured(workload: &str, input: &Input) -> usize {
    match (workload, input) {
        ("value-parse", Input::Lines(ndjson)) => value_parse(ndjson),
        ("decode-route", Input::Lines(ndjson)) => decode_route(ndjson),
        ("encode-postgres", Input::Tables(tables)) => encode_postgres(tables),
        ("encode-redshift", Input::Tables(tables)) => encode_redshift(tables),
        _ => 0,
    }
}

fn value_parse(ndjson: &[u8]) -> usize {
    let mut parsed = 0;
    for line in ndjson.split(|&byte| byte == b'\n') {
        if let Ok(value) = serde_json::from_slice::<serde_json::Value>(line) {
            parsed += value.is_object() as usize;
            black_box(value);
        }
    }
    parsed
}

fn decode_route(ndjson: &[u8]) -> usize {
    let object: Arc<str> = Arc::from("workload.ndjson");
    let mut router = Router::new();
    let mut rows = Vec::new();
    let summary = decode::decode_object(ndjson, &object, &Limits::default(), |item| {
        if let Decoded::Message {
            position, message, ..
        } = item
        {
            rows.clear();
            router.rows_for(&message, &object, position, &mut rows);
            black_box(&rows);
        }
    });
    summary.messages as usize
}

fn encode_postgres(tables: &[(String, TableSchema, Vec<Row>)]) -> usize {
    let mut encoded = 0;
    let mut discards = Vec::new();
    for (table, schema, rows) in tables {
        let mut layout = Layout::of_table(key_column(table), schema, None);
        let mut cells = vec![None; layout.names.len()];
        let mut encoder = CopyEncoder::new();
        for row in rows {
            layout.place(table, row, &mut cells, &mut discards);
            encoder.row(&cells);
            if encoder.is_full() {
                black_box(encoder.take());
            }
            encoded += 1;
        }
        black_box(encoder.finish());
        discards.clear();
    }
    encoded
}

fn encode_redshift(tables: &[(String, TableSchema, Vec<Row>)]) -> usize {
    let mut encoded = 0;
    let mut discards = Vec::new();
    for (table, schema, rows) in tables {
        let mut layout = Layout::of_table(key_column(table), schema, None);
        let mut cells = vec![None; layout.names.len()];
        let mut writer = PartWriter::new(64 * 1024 * 1024);
        for row in rows {
            layout.place(table, row, &mut cells, &mut discards);
            if writer.push(&cells).is_ok() {
                encoded += 1;
            }
        }
        black_box(writer.finish().ok());
        discards.clear();
    }
    encoded
}

/// The rows of every line, by table, with the schema that holds them.
fn tables(ndjson: &[u8]) -> Vec<(String, TableSchema, Vec<Row>)> {
    let object: Arc<str> = Arc::from("workload.ndjson");
    let mut router = Router::new();
    let mut rows = Vec::new();
    tracktable::route::rows_for_object(ndjson, &object, &Limits::default(), &mut router, &mut rows);
    let mut by_table: HashMap<String, Vec<Row>> = HashMap::new();
    for row in rows {
        by_table
            .entry(row.table.as_str().to_owned())
            .or_default()
            .push(row);
    }
    let mut tables: Vec<_> = by_table
        .into_iter()
        .map(|(table, rows)| {
            let schema = schema(&rows);
            (table, schema, rows)
        })
        .collect();
    tables.sort_by(|a, b| a.0.cmp(&b.0));
    tables
}

fn schema(rows: &[Row]) -> TableSchema {
    let mut schema = TableSchema::new();
    for row in rows {
        for (name, value) in row.cells() {
            let observed = width_class(value.column_type());
            schema
                .entry(name.as_str().to_owned())
                .and_modify(|known| {
                    if let (ColumnType::Varchar(a), ColumnType::Varchar(b)) = (*known, observed) {
                        *known = ColumnType::Varchar(a.max(b));
                    }
                })
                .or_insert(observed);
        }
    }
    schema
}
