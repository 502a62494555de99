//! The loader's own CPU: placing a batch's rows in their tables' column layouts and
//! encoding them as PostgreSQL binary COPY, with no server. In the end-to-end runs this
//! work shares the client's cores with decoding (a quarter of a core in BENCHMARKS.md's
//! split-core profile), so it is measured on its own here.
//!
//! Run: `cargo bench --bench encode`. Figures go in BENCHMARKS.md.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;

/// The binary's allocator, so the bench measures what `tracktable` runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

use tracktable::columns::width_class;
use tracktable::decode::Limits;
use tracktable::route::{ColumnType, Router, Row};
use tracktable::warehouse::pg_copy::CopyEncoder;
use tracktable::warehouse::plan::{Layout, TableSchema};
use tracktable::warehouse::sql::key_column;
use tracktable_gen::{GenConfig, write_dir};

const EVENTS: u64 = 50_000;

/// The rows of `EVENTS` generated events, by table.
fn batch() -> HashMap<String, Vec<Row>> {
    let dir = tempfile::tempdir().expect("scratch dir");
    let config = GenConfig {
        events: EVENTS,
        seed: 7,
        drift_rate: 0.005,
        bad_rate: 0.001,
    };
    write_dir(&config, dir.path(), 5_000).expect("generate");
    let mut router = Router::new();
    let mut rows = Vec::new();
    let mut paths: Vec<_> = std::fs::read_dir(dir.path())
        .expect("read dir")
        .map(|entry| entry.expect("dir entry").path())
        .collect();
    paths.sort();
    for path in paths {
        let name: Arc<str> = Arc::from(path.display().to_string());
        let file = std::fs::File::open(&path).expect("open object");
        tracktable::route::rows_for_object(file, &name, &Limits::default(), &mut router, &mut rows);
    }
    let mut tables: HashMap<String, Vec<Row>> = HashMap::new();
    for row in rows {
        tables
            .entry(row.table.as_str().to_owned())
            .or_default()
            .push(row);
    }
    tables
}

/// Each table's columns as the warehouse would hold them: the first type seen, varchar
/// at its widest class (drifted values then fail to fit and become discards, as live).
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

fn encode_all(tables: &[(String, TableSchema, Vec<&Row>)]) -> usize {
    let mut bytes = 0;
    let mut discards = Vec::new();
    for (table, schema, rows) in tables {
        let mut layout = Layout::of_table(key_column(table), schema, None);
        let mut cells = vec![None; layout.names.len()];
        let mut encoder = CopyEncoder::new();
        for row in rows {
            layout.place(table, row, &mut cells, &mut discards);
            encoder.row(&cells);
            if encoder.is_full() {
                bytes += encoder.take().len();
            }
        }
        bytes += encoder.finish().len();
        discards.clear();
    }
    bytes
}

fn benches(c: &mut Criterion) {
    let batch = batch();
    let rows: usize = batch.values().map(Vec::len).sum();
    let tables: Vec<(String, TableSchema, Vec<&Row>)> = batch
        .iter()
        .map(|(table, rows)| (table.clone(), schema(rows), rows.iter().collect()))
        .collect();
    let mut group = c.benchmark_group("loader_encode");
    group.throughput(Throughput::Elements(rows as u64));
    group.bench_function("layout_place_copy", |b| {
        b.iter(|| black_box(encode_all(black_box(&tables))))
    });
    group.finish();
}

criterion_group!(encode_benches, benches);
criterion_main!(encode_benches);
