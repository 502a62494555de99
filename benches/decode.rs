//! decode and decode+route throughput on generated Segment traffic, beside a plain
//! `serde_json::from_slice::<serde_json::Value>` parse of the same lines in the same run.
//!
//! Also: framing the same lines out of a gzip object (as the generator and most
//! producers write them: fastest level), which is what each S3 object costs before
//! JSON.
//!
//! Run: `cargo bench --bench decode`. Figures go in BENCHMARKS.md.

use std::hint::black_box;
use std::sync::Arc;

/// The binary's allocator, so the bench measures what `tracktable` runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

use tracktable::decode::{self, Decoded, Limits, frame};
use tracktable::route::Router;
use tracktable_gen::{GenConfig, Generator};

const EVENTS: u64 = 100_000;

/// 100k generated lines (no malformed ones), as one NDJSON object in memory.
fn corpus() -> (Vec<u8>, Vec<(usize, usize)>) {
    let config = GenConfig {
        events: EVENTS,
        seed: 7,
        drift_rate: 0.0,
        bad_rate: 0.0,
    };
    let mut ndjson = Vec::new();
    let mut spans = Vec::new();
    for line in Generator::new(&config) {
        let start = ndjson.len();
        ndjson.extend_from_slice(&line.bytes);
        spans.push((start, ndjson.len()));
        ndjson.push(b'\n');
    }
    (ndjson, spans)
}

fn benches(c: &mut Criterion) {
    tracktable::allocator::tune();
    let (ndjson, spans) = corpus();
    let object: Arc<str> = Arc::from("bench.ndjson");
    let limits = Limits::default();
    eprintln!(
        "corpus: {} events, {} bytes, {:.0} bytes/event",
        spans.len(),
        ndjson.len(),
        ndjson.len() as f64 / spans.len() as f64
    );

    let gzipped = {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder
            .write_all(&ndjson)
            .expect("gzip into memory cannot fail");
        encoder.finish().expect("gzip into memory cannot fail")
    };
    eprintln!("gzipped: {} bytes", gzipped.len());

    for (unit, throughput) in [
        ("events", Throughput::Elements(spans.len() as u64)),
        ("bytes", Throughput::Bytes(ndjson.len() as u64)),
    ] {
        let mut group = c.benchmark_group(format!("decode/{unit}"));
        group.sample_size(10);
        group.throughput(throughput);

        group.bench_function(BenchmarkId::new("serde_json_value", EVENTS), |b| {
            b.iter(|| {
                let mut parsed = 0usize;
                for &(start, end) in &spans {
                    if let Ok(value) =
                        serde_json::from_slice::<serde_json::Value>(&ndjson[start..end])
                    {
                        parsed += value.is_object() as usize;
                        black_box(value);
                    }
                }
                assert_eq!(parsed, spans.len());
            })
        });

        group.bench_function(BenchmarkId::new("decode", EVENTS), |b| {
            b.iter(|| {
                let summary = decode::decode_object(&ndjson[..], &object, &limits, |item| {
                    black_box(item);
                });
                assert_eq!(summary.messages, EVENTS);
            })
        });

        group.bench_function(BenchmarkId::new("decode_route", EVENTS), |b| {
            let mut router = Router::new();
            let mut rows = Vec::new();
            b.iter(|| {
                let mut row_count = 0usize;
                let summary = decode::decode_object(&ndjson[..], &object, &limits, |item| {
                    if let Decoded::Message {
                        position, message, ..
                    } = item
                    {
                        rows.clear();
                        router.rows_for(&message, &object, position, &mut rows);
                        row_count += rows.len();
                        black_box(&rows);
                    }
                });
                assert_eq!(summary.messages, EVENTS);
                black_box(row_count);
            })
        });
        group.bench_function(BenchmarkId::new("gunzip_frame", EVENTS), |b| {
            b.iter(|| {
                let mut items = 0usize;
                let stats = frame::frames(&gzipped[..], &limits, |item| {
                    items += matches!(item, frame::Frame::Item { .. }) as usize;
                })
                .expect("an in-memory gzip object frames");
                assert_eq!(items, spans.len());
                black_box(stats);
            })
        });
        group.finish();
    }
}

criterion_group!(decode_benches, benches);
criterion_main!(decode_benches);
