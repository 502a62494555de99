//! workload: the loader's encoding stages over prepared rows, shared by the criterion
//! bench (`benches/encode.rs`) and `tracktable-workload` (instructions per event).

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;

use tracktable::columns::width_class;
use tracktable::decode::Limits;
use tracktable::route::{ColumnType, Router, Row};
use tracktable::warehouse::pg_copy::CopyEncoder;
use tracktable::warehouse::plan::{Layout, TableSchema};
use tracktable::warehouse::redshift::csv::PartWriter;
use tracktable::warehouse::sql::key_column;

/// One table's prepared rows and the schema that holds them.
pub type Table = (String, TableSchema, Vec<Row>);

/// Encodes every row as PostgreSQL's binary COPY; returns the rows encoded.
pub fn encode_postgres(tables: &[Table]) -> usize {
    let mut encoded = 0;
    let mut discards = Vec::new();
    for (table, schema, rows) in tables {
        let mut layout = Layout::of_table(key_column(table), schema, None);
        let mut encoder = CopyEncoder::new();
        for row in rows {
            encoder.row(layout.place(table, row, &mut discards));
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

/// Writes every row into Redshift's gzip CSV parts; returns the rows written.
pub fn encode_redshift(tables: &[Table]) -> usize {
    let mut encoded = 0;
    let mut discards = Vec::new();
    for (table, schema, rows) in tables {
        let mut layout = Layout::of_table(key_column(table), schema, None);
        let mut writer = PartWriter::new(64 * 1024 * 1024);
        for row in rows {
            if writer.push(layout.place(table, row, &mut discards)).is_ok() {
                encoded += 1;
            }
        }
        black_box(writer.finish().ok());
        discards.clear();
    }
    encoded
}

/// The rows of every line of `ndjson`, by table.
pub fn tables(ndjson: &[u8]) -> Vec<Table> {
    let object: Arc<str> = Arc::from("workload.ndjson");
    let mut router = Router::new();
    let mut rows = Vec::new();
    tracktable::route::rows_for_object(ndjson, &object, &Limits::default(), &mut router, &mut rows);
    by_table(rows)
}

/// Rows grouped by table (in name order), each with the schema that holds them.
pub fn by_table(rows: Vec<Row>) -> Vec<Table> {
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

/// Each table's columns as the warehouse would hold them: the first type seen, varchar
/// at its widest class (drifted values then fail to fit and become discards, as live).
pub fn schema(rows: &[Row]) -> TableSchema {
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
