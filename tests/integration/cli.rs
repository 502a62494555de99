//! The `tracktable` binary as a user runs it: `explain`, `gen`, `setup-sql` + `check` +
//! `run` + `schema` with a dedicated loader user, and `demo` with a throwaway server.

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::support;

fn tracktable(args: &[&str]) -> Command {
    let mut command = Command::new(support::binary());
    command.args(args);
    command
}

fn output(command: &mut Command, what: &str) -> Output {
    command.output().unwrap_or_else(|e| panic!("{what}: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn explain_prints_rows_for_good_lines_and_reasons_for_bad_ones() {
    let mut child = tracktable(&["explain"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start explain");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(
            b"{\"type\":\"track\",\"event\":\"Order Completed\",\"messageId\":\"m1\",\"properties\":{\"revenue\":25.5}}\n\
              {not json\n\
              {\"type\":\"identify\",\"userId\":\"u1\",\"traits\":{\"plan\":\"pro\"}}\n",
        )
        .expect("write stdin");
    let out = child.wait_with_output().expect("explain output");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("explain prints JSON lines"))
        .collect();
    assert_eq!(lines.len(), 3, "one line per input item");
    let tables = |line: &serde_json::Value| -> Vec<String> {
        line["rows"]
            .as_array()
            .map(|rows| {
                rows.iter()
                    .map(|row| row["table"].as_str().unwrap_or("").to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(tables(&lines[0]), ["tracks", "order_completed"]);
    assert_eq!(
        lines[0]["rows"][1]["columns"]["revenue"]["type"],
        "double precision"
    );
    assert!(
        lines[1].get("rows").is_none(),
        "the bad line has no rows: {}",
        lines[1]
    );
    assert!(
        lines[1].to_string().contains("not_json"),
        "the bad line says why: {}",
        lines[1]
    );
    assert_eq!(tables(&lines[2]), ["identifies", "users"]);
}

#[test]
fn gen_writes_the_requested_events_as_gzip_objects() {
    let work = tempfile::tempdir().unwrap();
    let out_dir = work.path().join("gen");
    let out = output(
        tracktable(&[
            "gen",
            "--events",
            "2500",
            "--per-object",
            "1000",
            "--bad-rate",
            "0.01",
            "--out",
        ])
        .arg(&out_dir),
        "gen",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut files: Vec<_> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 3, "{files:?}");
    let mut lines = 0;
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        assert_eq!(&bytes[..2], &[0x1f, 0x8b], "gzip");
        // Bytes, not text: some malformed lines are invalid UTF-8 on purpose.
        let mut decoded = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::MultiGzDecoder::new(&bytes[..]),
            &mut decoded,
        )
        .unwrap();
        lines += decoded
            .split(|b| *b == b'\n')
            .filter(|line| !line.is_empty())
            .count();
    }
    assert_eq!(lines, 2500);
}

/// The loader-user story end to end: `setup-sql` prints SQL a superuser runs; `check`
/// as that user passes every line; `run` loads as that user; `schema` shows the result.
/// A user without those grants fails `check` with the GRANT that fixes it.
#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    skip_services,
    ignore = "needs PostgreSQL or the S3/SQS emulator; TRACKTABLE_SKIP_SERVICES is set"
)]
async fn setup_sql_makes_a_loader_user_that_check_run_and_schema_accept() {
    let Some(client) = support::postgres().await else {
        return;
    };
    let user = support::schema("loader");
    let schema = support::schema("loaded");
    let database: String = client
        .query_one("SELECT current_database()::text", &[])
        .await
        .unwrap()
        .get(0);
    let out = output(
        &mut tracktable(&[
            "setup-sql",
            "--user",
            &user,
            "--database",
            &database,
            "--schema",
            &schema,
        ]),
        "setup-sql",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let setup = text(&out.stdout);
    assert!(
        setup.contains("CREATE ROLE") && setup.contains("GRANT"),
        "{setup}"
    );
    client
        .batch_execute(&setup)
        .await
        .expect("the printed SQL runs");

    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("events");
    std::fs::create_dir_all(&source).unwrap();
    std::fs::write(
        source.join("a.json"),
        r#"{"type":"track","event":"Plan Chosen","messageId":"c1","properties":{"plan":"pro"}}"#,
    )
    .unwrap();
    let url =
        support::database_url().replacen("postgres://postgres@", &format!("postgres://{user}@"), 1);
    assert!(
        url.contains(&user),
        "DATABASE_URL must name the user postgres for this test: {url}"
    );
    let pipeline = work.path().join("loader.toml");
    std::fs::write(
        &pipeline,
        format!(
            "name = \"loader\"\n[source]\ntype = \"dir\"\npath = \"{}\"\n\
             [warehouse]\ntype = \"postgres\"\nurl = \"{url}\"\nschema = \"{schema}\"\npassword_env = \"TT_TEST_LOADER_PASSWORD\"\n",
            source.display()
        ),
    )
    .unwrap();
    let with_password = |command: &mut Command| {
        command.env("TT_TEST_LOADER_PASSWORD", "change-me");
    };

    let mut check = tracktable(&["check", "--pipeline"]);
    check.arg(&pipeline);
    with_password(&mut check);
    let out = output(&mut check, "check");
    let report = text(&out.stdout);
    assert!(
        out.status.success(),
        "check failed:\n{report}{}",
        text(&out.stderr)
    );
    assert!(
        report.lines().count() >= 5 && report.lines().all(|line| line.starts_with("pass")),
        "{report}"
    );
    assert!(report.contains("pass  loader user"), "{report}");
    assert!(
        !report.contains("change-me") && !text(&out.stderr).contains("change-me"),
        "no password in output"
    );

    let mut run = tracktable(&["run", "--once", "--pipeline"]);
    run.arg(&pipeline)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    with_password(&mut run);
    let mut child = support::KillOnDrop(run.spawn().expect("start run"));
    let status = support::wait_within(
        &mut child,
        Duration::from_secs(60),
        "run as the loader user",
    );
    assert!(status.success());

    let mut schema_command = tracktable(&["schema", "--pipeline"]);
    schema_command.arg(&pipeline);
    with_password(&mut schema_command);
    let out = output(&mut schema_command, "schema");
    let listing = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(listing.contains("plan_chosen — 1 rows"), "{listing}");
    assert!(
        listing
            .lines()
            .any(|line| line.trim_start().starts_with("plan ")),
        "{listing}"
    );

    // A user with no grants: check fails, naming the fix.
    let stranger = support::schema("stranger");
    client
        .batch_execute(&format!("CREATE ROLE \"{stranger}\" LOGIN"))
        .await
        .unwrap();
    let stranger_pipeline = work.path().join("stranger.toml");
    let stranger_schema = support::schema("strangers");
    std::fs::write(
        &stranger_pipeline,
        std::fs::read_to_string(&pipeline)
            .unwrap()
            .replace(
                &format!("postgres://{user}@"),
                &format!("postgres://{stranger}@"),
            )
            .replace(&schema, &stranger_schema),
    )
    .unwrap();
    let mut check = tracktable(&["check", "--pipeline"]);
    check.arg(&stranger_pipeline);
    with_password(&mut check);
    let out = output(&mut check, "check as stranger");
    let report = text(&out.stdout);
    assert!(!out.status.success(), "check must fail:\n{report}");
    assert!(
        report.contains("FAIL  create schema") && report.contains("GRANT CREATE ON DATABASE"),
        "{report}"
    );

    support::drop_schema(&client, &schema).await;
    client
        .batch_execute(&format!(
            "DROP OWNED BY \"{user}\"; DROP ROLE \"{user}\"; DROP ROLE \"{stranger}\""
        ))
        .await
        .expect("drop the test roles");
}

/// `demo --local-server` starts its own throwaway PostgreSQL, runs the whole job against
/// it, and stops it at the end.
#[test]
#[cfg_attr(
    skip_services,
    ignore = "needs PostgreSQL or the S3/SQS emulator; TRACKTABLE_SKIP_SERVICES is set"
)]
fn demo_on_a_throwaway_postgres_stops_it_at_the_end() {
    let Some(binaries) = tracktable_local_postgres::find_binaries() else {
        assert!(
            !support::in_ci(),
            "CI=true but no PostgreSQL server binaries (initdb, pg_ctl) are installed"
        );
        eprintln!("skipping: no PostgreSQL server binaries");
        return;
    };
    // Under /tmp directly: as root the server runs as `postgres`, which must reach it.
    let cluster = std::env::temp_dir().join(support::unique("tt-demo-pg"));
    let scratch = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let mut demo = tracktable(&["demo", "--local-server", "--events", "3000", "--scratch"]);
    demo.arg(scratch.path())
        .arg("--local-postgres-dir")
        .arg(&cluster)
        .env_remove("DATABASE_URL")
        // Files, not pipes: a pipe nobody reads until exit fills up and blocks the child.
        .stdout(std::fs::File::create(logs.path().join("stdout")).unwrap())
        .stderr(std::fs::File::create(logs.path().join("stderr")).unwrap());
    let mut child = support::KillOnDrop(demo.spawn().expect("start demo"));
    let status = support::wait_within(&mut child, Duration::from_secs(180), "demo");
    let stdout = std::fs::read_to_string(logs.path().join("stdout")).unwrap_or_default();
    let stderr = std::fs::read_to_string(logs.path().join("stderr")).unwrap_or_default();

    // Whatever happened, leave no server behind; but the demo must have stopped it.
    let left_running = cluster.join("data").join("postmaster.pid").exists();
    if left_running {
        let server = tracktable_local_postgres::LocalPostgres {
            url: String::new(),
            dir: cluster.clone(),
            pg_ctl: binaries.join("pg_ctl"),
            started: true,
        };
        let _ = server.stop();
    }
    let _ = std::fs::remove_dir_all(&cluster);

    assert!(
        status.success(),
        "demo failed:\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(!left_running, "the demo left its server running:\n{stdout}");
    assert!(
        stdout.contains("started a throwaway PostgreSQL"),
        "{stdout}"
    );
    assert!(
        stdout
            .trim_end()
            .lines()
            .last()
            .is_some_and(|line| line.starts_with("stopped the throwaway PostgreSQL")),
        "the last line says the server was stopped:\n{stdout}"
    );
    assert!(stdout.contains("tables created"), "{stdout}");
    let loaded: u64 = stdout
        .lines()
        .find_map(|line| {
            line.strip_prefix("loaded ")?
                .split(' ')
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no 'loaded N events' line:\n{stdout}"));
    assert!(
        (2900..=3000).contains(&loaded),
        "loaded {loaded} of 3000 events (a few are malformed)"
    );
}

/// A `DATABASE_URL` with a password (the user's own environment) runs the demo, and the
/// password appears nowhere in what it prints. The test server trusts every local
/// connection, so any password is accepted.
#[tokio::test]
#[cfg_attr(
    skip_services,
    ignore = "needs PostgreSQL or the S3/SQS emulator; TRACKTABLE_SKIP_SERVICES is set"
)]
async fn demo_takes_a_database_url_with_a_password_and_never_prints_it() {
    let Some(_client) = support::postgres().await else {
        return;
    };
    let secret = "s3cr3t-demo-pw";
    let url = support::database_url().replacen("postgres@", &format!("postgres:{secret}@"), 1);
    assert!(
        url.contains(secret),
        "the test's DATABASE_URL has a user: {url}"
    );
    let scratch = tempfile::tempdir().unwrap();
    let out = output(
        tracktable(&["demo", "--events", "2000", "--scratch"])
            .arg(scratch.path())
            .env("DATABASE_URL", &url)
            .env("TRACKTABLE_LOG", "debug"),
        "demo with a password",
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("tables created"), "{stdout}");
    assert!(
        !stdout.contains(secret) && !stderr.contains(secret),
        "the password was printed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("psql postgres://postgres:***@"), "{stdout}");
}

/// A `DATABASE_URL` that does not answer is an error naming it (password masked) and its
/// cause: the demo never swaps the user's server for a throwaway one.
#[test]
fn demo_with_an_unreachable_database_url_fails_and_starts_nothing() {
    let url = format!(
        "postgres://postgres:hunter2@127.0.0.1:{}/postgres",
        support::free_port()
    );
    let scratch = tempfile::tempdir().unwrap();
    let cluster = scratch.path().join("cluster");
    let out = output(
        tracktable(&["demo", "--events", "100", "--scratch"])
            .arg(scratch.path().join("work"))
            .arg("--local-postgres-dir")
            .arg(&cluster)
            .env("DATABASE_URL", &url),
        "demo with an unreachable server",
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stderr.contains("cannot connect to DATABASE_URL postgres://postgres:***@127.0.0.1:")
            && stderr.contains("refused"),
        "{stderr}"
    );
    assert!(!stdout.contains("hunter2") && !stderr.contains("hunter2"));
    assert!(!cluster.exists(), "no throwaway server was started");
}

/// Completions come from the same flag definitions as the CLI.
#[test]
fn completions_name_every_command_and_flag() {
    for shell in ["bash", "zsh", "fish"] {
        let out = output(&mut tracktable(&["completions", shell]), "completions");
        let script = text(&out.stdout);
        assert!(out.status.success(), "{shell}: {}", text(&out.stderr));
        for word in ["backfill", "setup-sql", "pipeline", "metrics-addr"] {
            assert!(script.contains(word), "{shell} completions lack {word}");
        }
    }
}

/// The main flags also come from the environment, as a container or unit file sets them.
#[test]
fn the_pipeline_and_workers_can_come_from_the_environment() {
    let work = tempfile::tempdir().unwrap();
    let missing = work.path().join("nowhere.toml");
    let out = output(
        tracktable(&["run", "--once"])
            .env("TRACKTABLE_PIPELINE", &missing)
            .env("TRACKTABLE_WORKERS", "0"),
        "run from the environment",
    );
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("nowhere.toml"), "{stderr}");
    let out = output(
        tracktable(&["run", "--once", "--pipeline", "x.toml"]).env("TRACKTABLE_WORKERS", "many"),
        "workers from the environment",
    );
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("many"), "{}", text(&out.stderr));
}

/// A `dir` source whose directory does not exist is a configuration error for every
/// command that reads the pipeline's source, and nothing creates it.
#[test]
#[cfg_attr(
    skip_services,
    ignore = "needs PostgreSQL or the S3/SQS emulator; TRACKTABLE_SKIP_SERVICES is set"
)]
fn a_missing_source_directory_fails_run_check_and_backfill_and_creates_nothing() {
    let work = tempfile::tempdir().unwrap();
    let missing = work.path().join("incomming");
    let pipeline = support::pipeline_file(
        work.path(),
        &missing,
        &missing.join(".tracktable"),
        "tt_missing_dir",
        "1s",
    );
    for args in [
        vec!["run", "--once", "--pipeline"],
        vec!["check", "--pipeline"],
        vec!["backfill", "--bucket", "any", "--pipeline"],
    ] {
        let out = output(tracktable(&args).arg(&pipeline), "a missing directory");
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert!(
            !out.status.success(),
            "{args:?} succeeded:\n{stdout}{stderr}"
        );
        assert!(
            format!("{stdout}{stderr}").contains("does not exist"),
            "{args:?}:\n{stdout}{stderr}"
        );
        assert!(!missing.exists(), "{args:?} created {}", missing.display());
    }
}

/// A mistyped key is reported at its own line, with the key it most resembles.
#[test]
fn a_mistyped_key_is_shown_on_its_line_with_a_suggestion() {
    let work = tempfile::tempdir().unwrap();
    let pipeline = work.path().join("typo.toml");
    std::fs::write(
        &pipeline,
        "name = \"typo\"\n[source]\ntype = \"dir\"\npath = \"/tmp\"\n[warehouse]\ntype = \"postgres\"\n\
         url = \"postgres://loader@127.0.0.1/db\"\nschema = \"typo\"\npasword_env = \"PW\"\n",
    )
    .unwrap();
    let out = output(tracktable(&["check", "--pipeline"]).arg(&pipeline), "typo");
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("line 9: unknown key `pasword_env` in [warehouse]")
            && stderr.contains("did you mean `password_env`?")
            && stderr.contains("    9 | pasword_env = \"PW\""),
        "{stderr}"
    );
}

/// An error's cause is said once, not repeated by every layer that wraps it.
#[test]
fn an_error_says_its_cause_once() {
    let out = output(
        &mut tracktable(&["check", "--pipeline", "/nonexistent/pipeline.toml"]),
        "a missing pipeline file",
    );
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(
        stderr.matches("No such file or directory").count(),
        1,
        "{stderr}"
    );
}

/// The run's closing line counts what the plan refused among the rejected (as
/// `_rejections` holds them), and a first load of unique events skips no duplicates:
/// calls merged into `users` and `accounts` are reported as profile updates.
#[cfg_attr(
    skip_services,
    ignore = "needs PostgreSQL or the S3/SQS emulator; TRACKTABLE_SKIP_SERVICES is set"
)]
#[tokio::test(flavor = "multi_thread")]
async fn the_run_summary_counts_plan_refusals_and_profile_merges_apart() {
    let Some(client) = support::postgres().await else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("events");
    let config = tracktable_gen::GenConfig {
        events: 3000,
        seed: 3,
        drift_rate: 0.0,
        bad_rate: 0.01,
    };
    tracktable_gen::write_dir(&config, &source, 1000).unwrap();
    let schema = support::schema("summary");
    let pipeline = support::pipeline_file(
        work.path(),
        &source,
        &work.path().join("state"),
        &schema,
        "1h",
    );
    let mut file = std::fs::read_to_string(&pipeline).unwrap();
    file.push_str("[plan]\nallow_events = [\"Order *\", \"Product *\"]\n");
    std::fs::write(&pipeline, file).unwrap();
    let out = output(
        tracktable(&["run", "--once", "--pipeline"]).arg(&pipeline),
        "run with a plan",
    );
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let summary = stderr
        .lines()
        .find(|line| line.contains(" rows loaded, "))
        .unwrap_or_else(|| panic!("no summary line:\n{stderr}"));
    let number_before = |label: &str| -> i64 {
        summary
            .split(label)
            .next()
            .and_then(|head| head.rsplit(' ').next())
            .and_then(|number| number.parse().ok())
            .unwrap_or_else(|| panic!("no `{label}` in {summary}"))
    };
    let rejected = number_before(" rejected;");
    let stored = support::count(
        &client,
        &format!("SELECT count(*) FROM \"{schema}\"._rejections"),
    )
    .await;
    let refused = support::count(
        &client,
        &format!("SELECT count(*) FROM \"{schema}\"._rejections WHERE code = 'not_in_plan'"),
    )
    .await;
    support::drop_schema(&client, &schema).await;
    assert!(refused > 0, "the plan refused events: {summary}");
    assert_eq!(rejected, stored, "every rejection is counted: {summary}");
    assert_eq!(number_before(" duplicate messages skipped"), 0, "{summary}");
    assert!(number_before(" profile updates merged") >= 0, "{summary}");
}

/// An unreachable warehouse is reported with its cause, not just "error connecting".
#[test]
fn check_names_why_the_warehouse_cannot_be_reached() {
    let work = tempfile::tempdir().unwrap();
    let pipeline = work.path().join("unreachable.toml");
    std::fs::write(
        &pipeline,
        format!(
            "name = \"x\"\n[source]\ntype = \"dir\"\npath = \"{}\"\n[warehouse]\ntype = \"postgres\"\n\
             url = \"postgres://postgres@127.0.0.1:{}/postgres\"\nschema = \"x\"\n",
            work.path().display(),
            support::free_port()
        ),
    )
    .unwrap();
    let out = output(tracktable(&["check", "--pipeline"]).arg(&pipeline), "check");
    let stdout = text(&out.stdout);
    assert!(!out.status.success());
    assert!(
        stdout.contains("FAIL  connect to the warehouse") && stdout.contains("refused"),
        "{stdout}"
    );
}
