//! `tracktable-bench` as a developer runs it, against the real PostgreSQL.

use std::process::{Command, Output};

use tracktable_testkit::support;

fn tracktable_bench(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tracktable-bench"));
    command.args(args);
    command
}

fn output(command: &mut Command, what: &str) -> Output {
    command.output().unwrap_or_else(|e| panic!("{what}: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Benches replace the same schemas, so the tests that run one take turns.
fn bench_turn() -> std::sync::MutexGuard<'static, ()> {
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    TURN.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[tokio::test]
#[cfg_attr(
    skip_services,
    ignore = "needs PostgreSQL or the S3/SQS emulator; TRACKTABLE_SKIP_SERVICES is set"
)]
async fn bench_runs_its_rounds_and_summarises_them() {
    // Needs PostgreSQL (fails under CI=true when none answers).
    let Some(_client) = support::postgres().await else {
        return;
    };
    let _turn = bench_turn();
    let work = tempfile::tempdir().unwrap();
    let scratch = work.path().join("bench");
    let url = support::database_url();
    let out = output(
        tracktable_bench(&[
            "--events",
            "2000",
            "--rounds",
            "2",
            // One connection per worker: every table of a batch in one lane, which the
            // bench's check of both sides' row counts still has to pass.
            "--load-connections",
            "1",
            "--database-url",
            &url,
            "--scratch",
            scratch.to_str().unwrap(),
        ])
        .env("TRACKTABLE_LOG", "warn"),
        "tracktable-bench",
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(
        stdout.contains("round 1 of 2") && stdout.contains("round 2 of 2"),
        "{stdout}"
    );
    let ratios: Vec<f64> = stdout
        .lines()
        .filter_map(|line| line.strip_prefix("ratio pipeline / COPY: "))
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .collect();
    assert_eq!(ratios.len(), 2, "{stdout}");
    // Each phase says how much WAL it made the server write: 2000 events' rows are
    // hundreds of kilobytes of it, so a phase that wrote none was not measured.
    for phase in ["pipeline", "raw COPY", "loader alone"] {
        let prefix = format!("  WAL over the {phase}: ");
        let wal: Vec<f64> = stdout
            .lines()
            .filter_map(|line| line.strip_prefix(prefix.as_str()))
            .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
            .collect();
        assert_eq!(wal.len(), 2, "{phase}: {stdout}");
        assert!(wal.iter().all(|mb| *mb > 0.0), "{phase}: {stdout}");
    }
    let summary = stdout
        .lines()
        .find_map(|line| line.strip_prefix("over 2 rounds: ratio pipeline / COPY median "))
        .unwrap_or_else(|| panic!("no summary line in\n{stdout}"));
    let median: f64 = summary
        .split_whitespace()
        .next()
        .and_then(|number| number.parse().ok())
        .unwrap_or_else(|| panic!("no median in {summary}"));
    // Two rounds: the median is their mean (each printed to two places).
    assert!(
        (median - (ratios[0] + ratios[1]) / 2.0).abs() <= 0.011,
        "{median} from {ratios:?}"
    );

    let refused = output(
        &mut tracktable_bench(&["--load-connections", "0", "--database-url", &url]),
        "tracktable-bench --load-connections 0",
    );
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("--load-connections must be at least 1"),
        "{}",
        text(&refused.stderr)
    );
}

/// `Cpus_allowed_list` of a process, as `/proc` writes it.
fn cpus_of(pid: u32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|line| line.strip_prefix("Cpus_allowed_list:"))
        .unwrap_or_else(|| panic!("no Cpus_allowed_list for {pid}"))
        .trim()
        .to_owned()
}

#[tokio::test]
#[cfg_attr(
    skip_services,
    ignore = "needs PostgreSQL or the S3/SQS emulator; TRACKTABLE_SKIP_SERVICES is set"
)]
async fn bench_gives_the_warehouse_its_own_cpus_and_moves_everything_back() {
    // Needs PostgreSQL on this machine (fails under CI=true when none answers).
    let Some(client) = support::postgres().await else {
        return;
    };
    let backend: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let postmaster = tracktable_bench::affinity::parent_of(backend.unsigned_abs())
        .expect("the test server runs on this machine");
    let _turn = bench_turn();
    let server_before = cpus_of(postmaster);
    let allowed: tracktable_bench::affinity::CpuList = cpus_of(std::process::id()).parse().unwrap();
    let work = tempfile::tempdir().unwrap();
    let scratch = work.path().join("bench");
    let url = support::database_url();
    let bench = |cpus: &str| {
        output(
            tracktable_bench(&[
                "--events",
                "2000",
                "--warehouse-cpus",
                cpus,
                "--database-url",
                &url,
                "--scratch",
                scratch.to_str().unwrap(),
            ])
            .env("TRACKTABLE_LOG", "warn"),
            "tracktable-bench --warehouse-cpus",
        )
    };

    // Every CPU the bench has: nothing would be left for tracktable.
    let all = bench(&allowed.to_string());
    assert!(!all.status.success());
    assert!(
        text(&all.stderr).contains("would leave none for tracktable"),
        "{}",
        text(&all.stderr)
    );
    assert_eq!(
        cpus_of(postmaster),
        server_before,
        "a refusal moves nothing"
    );
    if allowed.len() < 2 {
        return; // One CPU: there is no split to make.
    }

    let last: tracktable_bench::affinity::CpuList = allowed.iter().last().into_iter().collect();
    let rest = allowed.without(&last);
    let out = bench(&last.to_string());
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !out.status.success() && !root {
        // Not root and not the server's user: the error says how to get the right.
        assert!(
            stderr.contains("run the bench as the server's operating-system user or as root"),
            "{stderr}"
        );
        return;
    }
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stderr.contains(&format!("PostgreSQL (postmaster {postmaster}, "))
            && stderr.contains(&format!("on CPUs {last}, this process on CPUs {rest}")),
        "{stderr}"
    );
    assert!(
        stdout.contains(&format!("warehouse on CPUs {last}")),
        "{stdout}"
    );
    assert!(stdout.contains("ratio pipeline / COPY: "), "{stdout}");
    assert_eq!(
        cpus_of(postmaster),
        server_before,
        "the server is back on its CPUs"
    );
}

/// `instructions` counts each stage under callgrind: a positive count per event for
/// every workload, and nearly the same count twice for the same input (hash seeds and
/// the allocator's randomisation move it by a fraction of a percent).
#[test]
fn instructions_counts_each_stage_and_repeats_exactly() {
    if std::process::Command::new("valgrind")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(!support::in_ci(), "CI=true but valgrind is not installed");
        eprintln!("skipping: valgrind is not installed");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let counts = |dir: &str| {
        let out = output(
            tracktable_bench(&["instructions", "--events", "300", "--scratch"])
                .arg(work.path().join(dir)),
            "tracktable-bench instructions",
        );
        let stdout = text(&out.stdout);
        assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
        stdout
            .lines()
            .map(|line| {
                let mut words = line.split_whitespace();
                let workload = words.next().unwrap_or_default().to_owned();
                let count: f64 = words.next().and_then(|n| n.parse().ok()).unwrap_or(0.0);
                (workload, count)
            })
            .collect::<Vec<_>>()
    };
    let first = counts("a");
    let names: Vec<&str> = first.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        names,
        [
            "value-parse",
            "decode-route",
            "encode-postgres",
            "encode-redshift"
        ]
    );
    assert!(first.iter().all(|(_, count)| *count > 100.0), "{first:?}");
    for ((name, a), (_, b)) in first.iter().zip(counts("b")) {
        assert!((a - b).abs() / a < 0.01, "{name}: {a} then {b}");
    }
}

/// The number printed just before the first `suffix` in `stdout`.
fn number_before(stdout: &str, suffix: &str) -> f64 {
    stdout
        .split(suffix)
        .next()
        .and_then(|head| head.rsplit(' ').next())
        .and_then(|number| number.parse().ok())
        .unwrap_or_else(|| panic!("no number before {suffix:?} in {stdout}"))
}

/// `tracktable-bench cpu` with `args`, into the local PostgreSQL, its scratch in
/// `scratch`: fails the test unless it succeeds, and returns its stdout and stderr.
fn bench_cpu(args: &[&str], scratch: &std::path::Path) -> (String, String) {
    let out = output(
        tracktable_bench(&["cpu", "--database-url", &support::database_url()])
            .args(args)
            .arg("--scratch")
            .arg(scratch),
        &format!("tracktable-bench cpu {}", args.join(" ")),
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}{stderr}");
    (stdout, stderr)
}

/// `cpu` runs the real binary over a fixed input and reports its CPU per event.
#[cfg_attr(
    skip_services,
    ignore = "needs PostgreSQL or the S3/SQS emulator; TRACKTABLE_SKIP_SERVICES is set"
)]
#[tokio::test]
async fn cpu_reports_the_binarys_own_cpu_per_event() {
    let Some(_client) = support::postgres().await else {
        return;
    };
    // One process of two workers, then a cluster of two processes of one.
    for (shape, label) in [
        (["-w", "2", "-n", "1"], "-w 2 × 1 process"),
        (["-w", "1", "-n", "2"], "-w 1 × 2 process"),
    ] {
        let work = tempfile::tempdir().unwrap();
        let mut args = vec!["--events", "2000", "--runs", "2"];
        args.extend(shape);
        let (stdout, _) = bench_cpu(&args, work.path());
        assert!(stdout.contains(label), "{stdout}");
        let per_event = number_before(&stdout, " µs of CPU per event");
        assert!(per_event > 0.0 && per_event < 100_000.0, "{stdout}");
    }
}

/// `cpu --instructions` counts a whole run's instructions under callgrind, every thread.
#[cfg_attr(
    skip_services,
    ignore = "needs PostgreSQL or the S3/SQS emulator; TRACKTABLE_SKIP_SERVICES is set"
)]
#[tokio::test]
async fn cpu_instructions_counts_a_whole_run_under_callgrind() {
    let Some(_client) = support::postgres().await else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let (stdout, _) = bench_cpu(
        &["--events", "1000", "--runs", "1", "--instructions"],
        work.path(),
    );
    let per_event = number_before(&stdout, " instructions per event");
    // Decoding and routing alone take tens of thousands an event; start-up spread
    // over only a thousand events adds more.
    assert!(per_event > 10_000.0, "{stdout}");
}

/// `cpu --against` runs a second build alternately with the first over the same input
/// and reports both, with the second's ratio to the first.
#[cfg_attr(
    skip_services,
    ignore = "needs PostgreSQL or the S3/SQS emulator; TRACKTABLE_SKIP_SERVICES is set"
)]
#[tokio::test]
async fn cpu_against_another_build_reports_both_and_their_ratio() {
    let Some(_client) = support::postgres().await else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    // The same binary twice: the ratio is about 1, and the order of runs alternates.
    let same =
        std::path::Path::new(env!("CARGO_BIN_EXE_tracktable-bench")).with_file_name("tracktable");
    let same = same.to_str().expect("a UTF-8 build path");
    let (stdout, stderr) = bench_cpu(
        &["--events", "1000", "--runs", "2", "--against", same],
        work.path(),
    );
    let lines: Vec<&str> = stdout
        .lines()
        .filter(|line| line.contains("µs of CPU per event"))
        .collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(
        lines.iter().all(|line| line.contains("peak resident")),
        "{stdout}"
    );
    assert!(lines[1].contains("× the first"), "{stdout}");
    // Alternating: the second build's first run comes before the first build's second.
    let runs: Vec<&str> = stderr
        .lines()
        .filter(|line| line.starts_with("run "))
        .collect();
    assert_eq!(runs.len(), 4, "{stderr}");
    assert!(
        runs[1].starts_with("run 1 of") && runs[2].starts_with("run 2 of"),
        "{stderr}"
    );
}

/// `freshness` streams objects through moto's S3 and SQS into a real run and reports
/// the run's freshness figures, one per object written.
#[cfg_attr(
    skip_services,
    ignore = "needs PostgreSQL or the S3/SQS emulator; TRACKTABLE_SKIP_SERVICES is set"
)]
#[tokio::test]
async fn freshness_reports_percentiles_over_every_object_written() {
    let Some(_client) = support::postgres().await else {
        return;
    };
    let Some(endpoint) = support::moto_url().await else {
        return;
    };
    let _turn = bench_turn();
    let work = tempfile::tempdir().unwrap();
    let out = output(
        tracktable_bench(&[
            "freshness",
            "--endpoint-url",
            &endpoint,
            "--database-url",
            &support::database_url(),
            "--rate",
            "1000",
            "--duration",
            "4s",
            "--per-object",
            "250",
            "--batch-interval",
            "1s",
            "--scratch",
        ])
        .arg(work.path()),
        "tracktable-bench freshness",
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("4000 events in 16 objects"),
        "every event written:\n{stdout}"
    );
    let line = stdout
        .lines()
        .find(|line| line.starts_with("freshness over 16 objects: p50 "))
        .unwrap_or_else(|| panic!("a freshness line for every object:\n{stdout}"));
    let p99: f64 = line
        .split("p99 ")
        .nth(1)
        .and_then(|rest| rest.split('s').next())
        .and_then(|number| number.parse().ok())
        .unwrap_or_else(|| panic!("no p99 in {line}"));
    assert!(p99 > 0.0 && p99 < 60.0, "{line}");
    assert!(
        stdout.contains("within 3.0s (goal: interval + 2 s = 3.0s): "),
        "{stdout}"
    );
}
