//! measures: figures that machine noise barely moves, for a shared 2-core VM where wall
//! clock varies by a third between identical runs.
//!
//! - [`cpu_per_event`]: user+sys CPU seconds of the `tracktable` process itself
//!   (`wait4`'s rusage of the child) over a fixed generated input loaded with
//!   `run --once` into a local PostgreSQL, divided by events; the median of N runs,
//!   with the peak resident size. Other builds given beside it run alternately with
//!   it over the same input, so both share whatever the machine was doing.
//!   Or, with [`Count::Instructions`], each run under callgrind: every thread's
//!   instructions over the whole run, the end-to-end figure noise does not move.
//! - [`instructions_per_event`]: instructions of one stage over a fixed input, counted
//!   by callgrind (`valgrind --tool=callgrind`), which counts the same total whatever
//!   else the machine is doing; only `tracktable-workload`'s measured pass is counted.

use std::path::{Path, PathBuf};
use std::process::Command;

use tracktable_gen::{GenConfig, Generator};

use crate::benchmark::Spread;

#[derive(Debug, thiserror::Error)]
pub enum MeasureError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Failed(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> MeasureError {
    let what = what.into();
    move |source| MeasureError::Io { what, source }
}

/// A binary built beside this one (`cargo build --release --workspace` builds both).
pub fn sibling(name: &str) -> Result<PathBuf, MeasureError> {
    let me = std::env::current_exe().map_err(io("where is tracktable-bench"))?;
    let path = me.with_file_name(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(MeasureError::Failed(format!(
            "{} is not built: run `cargo build --release --workspace` first",
            path.display()
        )))
    }
}

/// The fixed input: `events` generated lines (seed 7, no drift, no malformed lines).
pub fn write_lines(path: &Path, events: u64) -> Result<(), MeasureError> {
    let config = GenConfig {
        events,
        seed: 7,
        drift_rate: 0.0,
        bad_rate: 0.0,
    };
    let mut ndjson = Vec::new();
    for line in Generator::new(&config) {
        ndjson.extend_from_slice(&line.bytes);
        ndjson.push(b'\n');
    }
    std::fs::write(path, ndjson).map_err(io(format!("writing {}", path.display())))
}

/// What [`cpu_per_event`] counts of each run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    /// User+sys CPU seconds, and the peak resident size.
    Cpu,
    /// Instructions of every thread, counted by callgrind (`valgrind`), which runs the
    /// process many times slower and on one thread at a time, so no peak is kept.
    Instructions,
}

/// One build's figures from [`cpu_per_event`].
#[derive(Debug, Clone)]
pub struct CpuFigures {
    pub binary: PathBuf,
    /// Per run, summed over a cluster's processes: user+sys CPU seconds, or
    /// instructions ([`Count`]).
    pub per_run: Spread,
    /// Peak resident size per run in MiB, the largest of a cluster's processes
    /// (zero when counting instructions).
    pub peak_mib: Spread,
}

/// What [`cpu_per_event`] runs: `runs` runs over `events` generated events, each of
/// `processes` processes of `workers` workers (a cluster on this machine, over
/// loopback), counting `count`.
#[derive(Debug, Clone, Copy)]
pub struct CpuRuns {
    pub events: u64,
    pub workers: usize,
    pub processes: usize,
    pub runs: usize,
    pub count: Count,
}

/// CPU (or instructions) of one `tracktable run --once` per run, summed over its
/// processes, with the events it loaded. The `tracktable` beside this binary runs
/// first, then each of `against` in turn, run after run, over the same input.
pub fn cpu_per_event(
    database_url: &str,
    plan: CpuRuns,
    scratch: &Path,
    against: &[PathBuf],
) -> Result<(Vec<CpuFigures>, u64), MeasureError> {
    let CpuRuns {
        events,
        workers,
        processes,
        runs,
        count,
    } = plan;
    let binaries: Vec<PathBuf> = std::iter::once(sibling("tracktable")?)
        .chain(against.iter().cloned())
        .collect();
    if let Some(missing) = binaries.iter().find(|binary| !binary.is_file()) {
        return Err(MeasureError::Failed(format!(
            "no tracktable binary at {}",
            missing.display()
        )));
    }
    let source = scratch.join("events");
    let _ = std::fs::remove_dir_all(scratch);
    let config = GenConfig {
        events,
        seed: 7,
        drift_rate: 0.005,
        bad_rate: 0.001,
    };
    tracktable_gen::write_dir(&config, &source, 10_000)
        .map_err(|error| MeasureError::Failed(error.to_string()))?;
    let mut seconds = vec![Vec::new(); binaries.len()];
    let mut peaks = vec![Vec::new(); binaries.len()];
    for run in 0..runs {
        for (build, tracktable) in binaries.iter().enumerate() {
            let (used, peak) = run_once(
                tracktable,
                database_url,
                &source,
                &scratch.join(format!("{run}-{build}")),
                workers,
                processes,
                count,
            )?;
            match count {
                Count::Cpu => eprintln!(
                    "run {} of {}: {used:.2} CPU-seconds, peak {peak:.0} MiB",
                    run + 1,
                    tracktable.display()
                ),
                Count::Instructions => eprintln!(
                    "run {} of {}: {used:.0} instructions",
                    run + 1,
                    tracktable.display()
                ),
            }
            seconds[build].push(used);
            peaks[build].push(peak);
        }
    }
    let figures = binaries
        .into_iter()
        .zip(seconds.into_iter().zip(peaks))
        .map(|(binary, (seconds, peaks))| {
            Some(CpuFigures {
                binary,
                per_run: Spread::of(seconds)?,
                peak_mib: Spread::of(peaks)?,
            })
        })
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| MeasureError::Failed("no runs".into()))?;
    Ok((figures, events))
}

/// One `run --once` of `tracktable` over `source` into a fresh schema, with its own
/// state in `dir`: CPU seconds or instructions (summed over processes) and peak MiB
/// (the largest).
fn run_once(
    tracktable: &Path,
    database_url: &str,
    source: &Path,
    dir: &Path,
    workers: usize,
    processes: usize,
    count: Count,
) -> Result<(f64, f64), MeasureError> {
    std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    // The bench's process id keeps two benches on one server (tests run in parallel)
    // out of each other's schemas.
    let schema = format!(
        "tracktable_cpu_{}_{}",
        std::process::id(),
        dir.file_name()
            .and_then(|name| name.to_str())
            .unwrap_or("run")
            .replace('-', "_")
    );
    let pipeline = dir.join("cpu.toml");
    let text = format!(
        "name = \"cpu\"\n[source]\ntype = \"dir\"\npath = \"{}\"\nstate_dir = \"{}\"\n\
         [warehouse]\ntype = \"postgres\"\nurl = \"{database_url}\"\nschema = \"{schema}\"\n",
        source.display(),
        dir.join("state").display()
    );
    std::fs::write(&pipeline, text).map_err(io("writing the pipeline file"))?;
    drop_schema(database_url, &schema)?;
    let hostfile = dir.join("hosts.txt");
    let hosts: Vec<String> = (0..processes)
        .map(|_| free_port().map(|port| format!("127.0.0.1:{port}")))
        .collect::<Result<_, _>>()?;
    std::fs::write(&hostfile, hosts.join("\n") + "\n").map_err(io("writing the hostfile"))?;
    let counts = |process: usize| dir.join(format!("callgrind.{process}.out"));
    let children = (0..processes)
        .map(|process| {
            let mut command = match count {
                Count::Cpu => Command::new(tracktable),
                Count::Instructions => {
                    let mut valgrind = Command::new("valgrind");
                    valgrind
                        .args(["--tool=callgrind", "--quiet"])
                        .arg(format!(
                            "--callgrind-out-file={}",
                            counts(process).display()
                        ))
                        .arg(tracktable);
                    valgrind
                }
            };
            command
                .args(["run", "--once", "--workers", &workers.to_string()])
                .arg("--pipeline")
                .arg(&pipeline)
                .env("TRACKTABLE_LOG", "warn");
            if processes > 1 {
                command
                    .args(["--processes", &processes.to_string()])
                    .args(["--process", &process.to_string()])
                    .arg("--hostfile")
                    .arg(&hostfile);
            }
            command.spawn().map_err(io(match count {
                Count::Cpu => "starting tracktable",
                Count::Instructions => "starting valgrind (is it installed?)",
            }))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let (mut used, mut peak) = (0.0, 0.0f64);
    for (process, child) in children.into_iter().enumerate() {
        let (seconds, mib) = wait_child(child)?;
        match count {
            Count::Cpu => {
                used += seconds;
                peak = peak.max(mib);
            }
            Count::Instructions => used += callgrind_total(&counts(process))? as f64,
        }
    }
    drop_schema(database_url, &schema)?;
    Ok((used, peak))
}

pub(crate) fn drop_schema(database_url: &str, schema: &str) -> Result<(), MeasureError> {
    let status = Command::new("psql")
        .args([
            database_url,
            "-qc",
            &format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"),
        ])
        .env("PGOPTIONS", "--client-min-messages=warning")
        .stdout(std::process::Stdio::null())
        .status()
        .map_err(io("running psql"))?;
    if status.success() {
        Ok(())
    } else {
        Err(MeasureError::Failed(format!(
            "psql could not drop schema {schema}"
        )))
    }
}

/// A TCP port free on loopback right now.
fn free_port() -> Result<u16, MeasureError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .map_err(io("finding a free port"))
}

/// Waits for a child to end; its user+sys CPU seconds, from `wait4`.
/// A child's user+sys CPU seconds and peak resident size in MiB, from `wait4`.
fn wait_child(child: std::process::Child) -> Result<(f64, f64), MeasureError> {
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our own child, not yet waited on; the pointers are to live locals.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    if waited != pid {
        return Err(io("waiting for tracktable")(std::io::Error::last_os_error()));
    }
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        return Err(MeasureError::Failed(format!(
            "tracktable exited with status {status}"
        )));
    }
    let seconds = |time: libc::timeval| time.tv_sec as f64 + time.tv_usec as f64 / 1e6;
    // Linux gives `ru_maxrss` in KiB.
    Ok((
        seconds(usage.ru_utime) + seconds(usage.ru_stime),
        usage.ru_maxrss as f64 / 1024.0,
    ))
}

/// Instructions per event of `workload` over `events` generated lines.
pub fn instructions_per_event(
    workload: &str,
    lines: &Path,
    events: u64,
    scratch: &Path,
) -> Result<f64, MeasureError> {
    let binary = sibling("tracktable-workload")?;
    let out = scratch.join(format!("callgrind.{workload}.out"));
    let output = Command::new("valgrind")
        .args(["--tool=callgrind", "--toggle-collect=*measured*"])
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(&binary)
        .arg(workload)
        .arg(lines)
        .output()
        .map_err(io("running valgrind (is it installed?)"))?;
    if !output.status.success() {
        return Err(MeasureError::Failed(format!(
            "{workload} under callgrind failed: {}",
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    Ok(callgrind_total(&out)? as f64 / events as f64)
}

/// The instruction total of a callgrind output file.
fn callgrind_total(out: &Path) -> Result<u64, MeasureError> {
    let text = std::fs::read_to_string(out).map_err(io(format!("reading {}", out.display())))?;
    text.lines()
        .find_map(|line| {
            line.strip_prefix("totals:")
                .or_else(|| line.strip_prefix("summary:"))
        })
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| MeasureError::Failed(format!("no instruction total in {}", out.display())))
}
