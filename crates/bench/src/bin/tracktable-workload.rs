//! `tracktable-workload WORKLOAD FILE`: one pass of one stage over the NDJSON lines of
//! FILE, for counting its instructions under callgrind. Only the function `measured`
//! does the work, so `--toggle-collect=*measured*` counts that and nothing else
//! (neither reading the file nor building what an encoder needs).
//!
//! Workloads: `value-parse` (a plain `serde_json::Value` parse of each line, the
//! yardstick), `decode-route` (tracktable's decode and route into typed rows),
//! `encode-postgres` (the binary COPY encoding of those rows), `encode-redshift` (the
//! gzip CSV parts of those rows).

use std::hint::black_box;
use std::process::ExitCode;
use std::sync::Arc;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use tracktable::decode::{self, Decoded, Limits};
use tracktable::route::Router;
use tracktable_bench::workload::{self, Table};

/// What a workload needs, prepared outside the measured function.
enum Input {
    Lines(Vec<u8>),
    Tables(Vec<Table>),
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
        "encode-postgres" | "encode-redshift" => Input::Tables(workload::tables(&ndjson)),
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
        ("encode-postgres", Input::Tables(tables)) => workload::encode_postgres(tables),
        ("encode-redshift", Input::Tables(tables)) => workload::encode_redshift(tables),
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
