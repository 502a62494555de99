//! `tracktable backfill`: load the history under an S3 prefix through the pipeline's
//! warehouse and dataflow, once, with progress on the terminal (a bar) or in the log
//! (a line every few seconds when stderr is not a terminal).

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::config::Pipeline;
use crate::run::{self, Cluster, RunOptions, RunSummary};
use crate::source::backfill::{BackfillProgress, BackfillSettings};
use crate::telemetry::RunStats;

/// What a backfill did.
#[derive(Debug, Clone, Copy)]
pub struct BackfillSummary {
    pub run: RunSummary,
    pub listed: u64,
    pub skipped: u64,
    pub loaded: u64,
}

/// Runs the backfill to completion.
pub fn backfill(
    pipeline: &Pipeline,
    settings: BackfillSettings,
    workers: usize,
) -> Result<BackfillSummary, run::RunError> {
    let progress = Arc::new(BackfillProgress::default());
    let stats = Arc::new(RunStats::default());
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let progress = Arc::clone(&progress);
        let stats = Arc::clone(&stats);
        let done = Arc::clone(&done);
        std::thread::spawn(move || watch(&progress, &stats, &done))
    };
    let result = run::run(
        pipeline,
        &RunOptions {
            cluster: Cluster {
                workers,
                ..Cluster::default()
            },
            once: true,
            stats,
            backfill: Some((settings, Arc::clone(&progress))),
            metrics_addr: None,
        },
    );
    done.store(true, Ordering::Relaxed);
    let _ = watcher.join();
    let run = result?;
    Ok(BackfillSummary {
        run,
        listed: progress.listed.load(Ordering::Relaxed),
        skipped: progress.skipped.load(Ordering::Relaxed),
        loaded: progress.loaded.load(Ordering::Relaxed),
    })
}

/// Shows progress until `done`: objects and bytes loaded of those to load, events/s and
/// an ETA from the bytes fetched so far.
fn watch(progress: &BackfillProgress, stats: &RunStats, done: &AtomicBool) {
    let terminal = std::io::stderr().is_terminal();
    let started = Instant::now();
    let bar = terminal.then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} backfill [{bar:40}] {pos}/{len} objects, {msg} (ETA {eta})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar
    });
    let mut last_line = Instant::now();
    while !done.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(250));
        let listing = progress.listing_done.load(Ordering::Relaxed) == 0;
        let to_load = progress.to_load.load(Ordering::Relaxed);
        let loaded = progress.loaded.load(Ordering::Relaxed);
        let fetched_bytes = progress.bytes_fetched.load(Ordering::Relaxed);
        let total_bytes = progress.bytes_to_load.load(Ordering::Relaxed);
        let events = stats.snapshot().messages;
        let elapsed = started.elapsed().as_secs_f64().max(1e-9);
        let rate = events as f64 / elapsed;
        let message = format!(
            "{} of {} fetched, {events} events, {rate:.0} events/s",
            human_bytes(fetched_bytes),
            human_bytes(total_bytes)
        );
        match &bar {
            Some(bar) => {
                if listing {
                    bar.set_message("listing the prefix...");
                } else {
                    bar.set_length(to_load);
                    bar.set_position(loaded);
                    bar.set_message(message);
                }
                bar.tick();
            }
            None if last_line.elapsed() >= Duration::from_secs(5) && !listing => {
                last_line = Instant::now();
                let eta = if fetched_bytes > 0 && total_bytes > fetched_bytes {
                    let seconds =
                        elapsed * (total_bytes - fetched_bytes) as f64 / fetched_bytes as f64;
                    format!(", ETA {:.0}s", seconds)
                } else {
                    String::new()
                };
                eprintln!("backfill: {loaded}/{to_load} objects loaded, {message}{eta}");
            }
            None => {}
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
}

fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::human_bytes;

    #[test]
    fn bytes_read_like_a_person_would_write_them() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 * 1024 * 1024 * 1024), "5.0 GiB");
    }
}
