//! Whole-dataflow throughput with a counting warehouse, beside decode+route alone over
//! the same files in the same run: what the dataflow (batching, exchange, columns,
//! load bookkeeping, acknowledgement) costs on top of the pure work.
//!
//! Run: `cargo bench --bench dataflow`. Figures go in BENCHMARKS.md. After criterion's
//! cases it times the three in interleaved rounds and prints the median ratios.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The binary's allocator, so the bench measures what `tracktable` runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

use tracktable::config::{BatchFile, PipelineFile};
use tracktable::decode::Limits;
use tracktable::route::Router;
use tracktable::run::{RunOptions, run_with};
use tracktable_gen::{GenConfig, write_dir};
use tracktable_testkit::counting::CountingWarehouse;

const EVENTS: u64 = 100_000;

fn decode_route_files(dir: &Path) -> u64 {
    let mut router = Router::new();
    let mut rows = Vec::new();
    let mut messages = 0;
    for entry in std::fs::read_dir(dir).expect("read bench dir") {
        let path = entry.expect("dir entry").path();
        if !path.is_file() {
            continue;
        }
        let name: Arc<str> = Arc::from(
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
        let file = std::fs::File::open(&path).expect("open object");
        let summary = tracktable::route::rows_for_object(
            file,
            &name,
            &Limits::default(),
            &mut router,
            &mut rows,
        );
        messages += summary.messages;
        black_box(&rows);
        rows.clear();
    }
    messages
}

fn run_dataflow(dir: &Path, state: &Path, workers: usize) -> u64 {
    // A fresh state directory each time, or the done logs would skip every file.
    let _ = std::fs::remove_dir_all(state);
    // Batches close by size, as a busy pipeline's do: 10k messages per worker, so a
    // run is several batches and memory holds one or two of them, not the whole input.
    // The warehouse named only sets the batch defaults: nothing connects to it.
    let batch = BatchFile {
        interval: Some(Duration::from_secs(3600)),
        max_rows: Some(10_000),
        ..BatchFile::default()
    };
    let file = PipelineFile::local(
        "bench",
        dir,
        state,
        "postgres://unused@127.0.0.1/unused",
        "unused",
        batch,
    );
    let pipeline = file
        .validate(Path::new("bench.toml"))
        .expect("valid pipeline");
    let warehouse = Arc::new(CountingWarehouse::default());
    let options = RunOptions::once(workers);
    let summary = run_with(&pipeline, &options, Arc::clone(&warehouse)).expect("dataflow run");
    summary.stats.messages
}

fn benches(c: &mut Criterion) {
    tracktable::allocator::tune();
    let scratch = tempfile::tempdir().expect("temp dir");
    let dir = scratch.path().join("events");
    let state = scratch.path().join("state");
    let config = GenConfig {
        events: EVENTS,
        seed: 3,
        drift_rate: 0.0,
        bad_rate: 0.0,
    };
    write_dir(&config, &dir, 2_500).expect("generate");

    let mut group = c.benchmark_group("dataflow");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Elements(EVENTS));
    group.bench_function(BenchmarkId::new("decode_route_only", EVENTS), |b| {
        b.iter(|| assert_eq!(decode_route_files(&dir), EVENTS))
    });
    for workers in [1, 2] {
        group.bench_function(
            BenchmarkId::new(format!("dataflow_{workers}_workers"), EVENTS),
            |b| b.iter(|| assert_eq!(run_dataflow(&dir, &state, workers), EVENTS)),
        );
    }
    group.finish();
    interleaved(&dir, &state);
}

/// The targets are ratios, and on a noisy machine (BENCHMARKS.md: the same case moved
/// by 40% between runs) criterion's cases, measured one after another 20 s apart, can
/// land in different speed regimes. So the three are also timed in interleaved rounds,
/// each round's ratios taken from runs seconds apart, and the medians printed.
/// `TRACKTABLE_BENCH_ROUNDS` sets the rounds (default 7; 0 skips).
fn interleaved(dir: &Path, state: &Path) {
    let rounds: usize = std::env::var("TRACKTABLE_BENCH_ROUNDS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(7);
    if rounds == 0 {
        return;
    }
    let time = |work: &dyn Fn() -> u64| {
        let started = std::time::Instant::now();
        assert_eq!(work(), EVENTS);
        started.elapsed().as_secs_f64()
    };
    let (mut per_worker, mut scaling) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        let alone = time(&|| decode_route_files(dir));
        let one = time(&|| run_dataflow(dir, state, 1));
        let two = time(&|| run_dataflow(dir, state, 2));
        println!(
            "interleaved round {round}: decode+route {alone:.3} s, 1 worker {one:.3} s ({:.2}), \
             2 workers {two:.3} s ({:.2}x)",
            alone / one,
            one / two
        );
        per_worker.push(alone / one);
        scaling.push(one / two);
    }
    println!(
        "interleaved medians over {rounds} rounds: 1 worker {:.2} of decode+route \
         (target >= 0.8), 2 workers {:.2}x one (target >= 1.7)",
        median(per_worker),
        median(scaling)
    );
}

/// The middle value (the mean of the middle two for an even count); NaN for none.
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

criterion_group!(dataflow_benches, benches);
criterion_main!(dataflow_benches);
