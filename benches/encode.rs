//! The loader's own CPU: placing a batch's rows in their tables' column layouts and
//! encoding them as PostgreSQL binary COPY, with no server. In the end-to-end runs this
//! work shares the client's cores with decoding (a quarter of a core in BENCHMARKS.md's
//! split-core profile), so it is measured on its own here.
//!
//! Run: `cargo bench --bench encode`. Figures go in BENCHMARKS.md.

use std::hint::black_box;
use std::sync::Arc;

/// The binary's allocator, so the bench measures what `tracktable` runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

use tracktable::decode::Limits;
use tracktable::route::Router;
use tracktable_bench::workload::{self, Table};
use tracktable_gen::{GenConfig, write_dir};

const EVENTS: u64 = 50_000;

/// The rows of `EVENTS` generated events, by table.
fn batch() -> Vec<Table> {
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
    workload::by_table(rows)
}

fn benches(c: &mut Criterion) {
    let tables = batch();
    let rows: usize = tables.iter().map(|(_, _, rows)| rows.len()).sum();
    let mut group = c.benchmark_group("loader_encode");
    group.throughput(Throughput::Elements(rows as u64));
    group.bench_function("layout_place_copy", |b| {
        b.iter(|| black_box(workload::encode_postgres(black_box(&tables))))
    });
    group.finish();
}

criterion_group!(encode_benches, benches);
criterion_main!(encode_benches);
