//! Memory over a long run: one `tracktable run` process (the real binary, two workers,
//! the real PostgreSQL) fed a new round of objects after the last round is
//! acknowledged, with its resident memory read from `/proc` after every round.
//!
//! The pipeline must not grow with the number of batches it has loaded: the column
//! collection's arrangement is compacted as batches complete, the router's caches and the
//! name table are capped, and a batch's rows are freed once it commits. A leak shows as
//! a resident size that climbs round after round once the first rounds have warmed up.
//!
//! Run: `cargo bench --bench soak` (PostgreSQL at `DATABASE_URL`, default
//! postgres://postgres@127.0.0.1:5432/postgres; schema `tracktable_soak`, dropped before
//! and after). `TRACKTABLE_SOAK_ROUNDS` (default 40) and `TRACKTABLE_SOAK_EVENTS` (events
//! per round, default 25000). Figures go in BENCHMARKS.md.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use tracktable_gen::{GenConfig, write_dir};

const SCHEMA: &str = "tracktable_soak";

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// VmRSS and VmHWM of a process, in MiB.
fn memory_mib(pid: u32) -> Option<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<f64> {
        let line = status.lines().find(|line| line.starts_with(name))?;
        let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib / 1024.0)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Objects the run has acknowledged: the lines of its workers' done logs.
fn acknowledged(state: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(state) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| std::fs::read_to_string(entry.path()).ok())
        .map(|text| text.lines().count())
        .sum()
}

fn drop_schema(url: &str) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| error.to_string())?;
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .map_err(|error| format!("PostgreSQL at {url}: {error}"))?;
        tokio::spawn(connection);
        client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
            .await
            .map_err(|error| error.to_string())
    })
}

struct Stop(Child);

impl Drop for Stop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() -> ExitCode {
    match soak() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("soak: {error}");
            ExitCode::FAILURE
        }
    }
}

fn soak() -> Result<(), String> {
    // `cargo bench` passes `--bench`; a filter that names another bench skips this one.
    if std::env::args()
        .skip(1)
        .any(|arg| !arg.starts_with("--") && !"soak".contains(arg.as_str()))
    {
        return Ok(());
    }
    let rounds = env_number("TRACKTABLE_SOAK_ROUNDS", 40);
    let events = env_number("TRACKTABLE_SOAK_EVENTS", 25_000);
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    drop_schema(&url)?;

    let work = tempfile::tempdir().map_err(|error| error.to_string())?;
    let events_dir = work.path().join("events");
    let state = work.path().join("state");
    std::fs::create_dir_all(&events_dir).map_err(|error| error.to_string())?;
    let pipeline = work.path().join("soak.toml");
    std::fs::write(
        &pipeline,
        format!(
            r#"name = "soak"
[source]
type = "dir"
path = "{}"
state_dir = "{}"
poll_interval = "200ms"
[warehouse]
type = "postgres"
url = "{url}"
schema = "{SCHEMA}"
[batch]
interval = "1s"
"#,
            events_dir.display(),
            state.display()
        ),
    )
    .map_err(|error| error.to_string())?;

    let log = work.path().join("run.log");
    let child = Command::new(env!("CARGO_BIN_EXE_tracktable"))
        .args(["run", "--workers", "2", "--pipeline"])
        .arg(&pipeline)
        .env("TRACKTABLE_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).map_err(|error| error.to_string())?)
        .spawn()
        .map_err(|error| format!("start tracktable run: {error}"))?;
    let pid = child.id();
    let mut child = Stop(child);

    println!(
        "soak: {rounds} rounds of {events} events, `tracktable run -w 2` into {SCHEMA}, 1s batches"
    );
    println!(
        "{:>5} {:>10} {:>8} {:>9} {:>9} {:>7}",
        "round", "events", "objects", "RSS MiB", "peak MiB", "load s"
    );
    let mut objects = 0usize;
    let mut resident = Vec::new();
    let started = Instant::now();
    for round in 1..=rounds {
        let staging = work.path().join(format!("staging-{round}"));
        let generated = write_dir(
            &GenConfig {
                events,
                seed: round,
                drift_rate: 0.005,
                bad_rate: 0.001,
            },
            &staging,
            5_000,
        )
        .map_err(|error| error.to_string())?;
        let round_started = Instant::now();
        publish(&staging, &events_dir, round)?;
        objects += generated.objects as usize;
        let deadline = Instant::now() + Duration::from_secs(180);
        while acknowledged(&state) < objects {
            if let Ok(Some(status)) = child.0.try_wait() {
                return Err(format!("tracktable run exited ({status}): {}", tail(&log)));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "round {round} not acknowledged within 180s ({} of {objects} objects): {}",
                    acknowledged(&state),
                    tail(&log)
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let load = round_started.elapsed().as_secs_f64();
        let (rss, peak) =
            memory_mib(pid).ok_or_else(|| format!("cannot read /proc/{pid}/status"))?;
        resident.push(rss);
        println!(
            "{round:>5} {:>10} {objects:>8} {rss:>9.1} {peak:>9.1} {load:>7.2}",
            round * events
        );
    }
    let elapsed = started.elapsed().as_secs_f64();

    // A graceful stop: the run must exit 0.
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .map_err(|error| error.to_string())?;
    let status = child.0.wait().map_err(|error| error.to_string())?;
    let _ = drop_schema(&url);
    if !status.success() {
        return Err(format!("tracktable run exited {status}: {}", tail(&log)));
    }

    // Warm-up is the first quarter; growth is judged after it.
    let warm = resident.len() / 4;
    if let (Some(first), Some(last)) = (resident.get(warm), resident.last()) {
        let most = resident[warm..].iter().cloned().fold(f64::MIN, f64::max);
        println!(
            "resident after round {}: {first:.1} MiB; after round {}: {last:.1} MiB ({:+.1}%); highest since: {most:.1} MiB; {:.0} events/s over {elapsed:.0}s",
            warm + 1,
            resident.len(),
            (last - first) / first * 100.0,
            (rounds * events) as f64 / elapsed
        );
    }
    Ok(())
}

/// Moves a round's objects into the watched directory under names of their own (the
/// generator names every round's objects alike); a rename, so the source never sees a
/// half-written file.
fn publish(staging: &Path, events_dir: &Path, round: u64) -> Result<(), String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(staging)
        .map_err(|error| error.to_string())?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .collect();
    files.sort();
    for file in files {
        let name = file
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        std::fs::rename(&file, events_dir.join(format!("r{round:04}-{name}")))
            .map_err(|error| error.to_string())?;
    }
    Ok(())
}

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}
