//! services: the real services the integration tests need, found or started.
//!
//! - PostgreSQL: `DATABASE_URL` when set; else the server on 127.0.0.1:5432 when one
//!   answers; else a throwaway cluster from the installed server binaries
//!   (`tracktable-local-postgres`), shared by every test process of the run and left
//!   running for the next (it keeps nothing but test schemas).
//! - S3/SQS: `TRACKTABLE_MOTO_URL` when set; else a `moto_server` on a free loopback
//!   port, from `PATH` or the virtualenv `.ci/run` installs, for this test process only.
//!
//! A service that can be neither found nor started fails the test with what to install,
//! unless `TRACKTABLE_SKIP_SERVICES=1` opts out: then the tests that need it are
//! compiled as ignored (see the root package's `build.rs`), so the runner counts them
//! as ignored, never as passed.

use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The PostgreSQL the tests use when `DATABASE_URL` is unset and it answers.
const DEFAULT_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Whether the user opted out of the tests that need services. Never under `CI=true`:
/// CI must not pass by skipping.
pub fn skipping() -> bool {
    let ci = std::env::var("CI").is_ok_and(|value| value == "true" || value == "1");
    !ci && std::env::var("TRACKTABLE_SKIP_SERVICES")
        .is_ok_and(|value| !value.is_empty() && value != "0")
}

/// A service is missing: the test fails with how to get it, or (opted out) is skipped.
pub fn missing(service: &str, how: &str) {
    if skipping() {
        eprintln!("skipping: {service} is not available ({how}); TRACKTABLE_SKIP_SERVICES is set");
        return;
    }
    panic!(
        "{service} is needed by this test but is not available: {how}\n\
         Run `.ci/run` (it installs and starts everything), or see README.md; \
         TRACKTABLE_SKIP_SERVICES=1 skips the tests that need services (counted as ignored)."
    );
}

/// The PostgreSQL URL the tests use (see the module doc).
pub fn postgres_url() -> String {
    if let Ok(url) = std::env::var("DATABASE_URL") {
        return url;
    }
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        if answers("127.0.0.1:5432") {
            return DEFAULT_POSTGRES.to_owned();
        }
        if tracktable_local_postgres::find_binaries().is_none() {
            return DEFAULT_POSTGRES.to_owned();
        }
        let dir = std::env::temp_dir().join(format!("tracktable-tests-pg-{}", uid()));
        match tracktable_local_postgres::start(&dir) {
            Ok(local) => {
                eprintln!(
                    "tests use a throwaway PostgreSQL at {} (data in {})",
                    local.url,
                    dir.display()
                );
                local.url
            }
            Err(error) => {
                eprintln!(
                    "cannot start a throwaway PostgreSQL in {}: {error}",
                    dir.display()
                );
                DEFAULT_POSTGRES.to_owned()
            }
        }
    })
    .clone()
}

/// The moto server's URL, found or started; `Err` says why there is none.
pub fn moto_url() -> Result<String, String> {
    if let Ok(url) = std::env::var("TRACKTABLE_MOTO_URL") {
        let address = url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        return if answers(&address) {
            Ok(url)
        } else {
            Err(format!("nothing answers at TRACKTABLE_MOTO_URL {url}"))
        };
    }
    static URL: OnceLock<Result<String, String>> = OnceLock::new();
    URL.get_or_init(start_moto).clone()
}

/// A `moto_server` of this test process's own, killed when the process ends.
fn start_moto() -> Result<String, String> {
    let venv = std::env::var_os("HOME")
        .map(|home| PathBuf::from(home).join(".cache/tracktable/venv/bin/moto_server"));
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("moto_server"))
            .find(|candidate| candidate.is_file())
    });
    let Some(binary) = on_path.or(venv.filter(|path| path.is_file())) else {
        return Err(
            "TRACKTABLE_MOTO_URL is not set and no moto_server is installed \
             (pip install 'moto[server]', or run .ci/run)"
                .into(),
        );
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .map_err(|error| format!("no free port for moto: {error}"))?;
    let mut command = std::process::Command::new(&binary);
    command
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // SAFETY: prctl with PR_SET_PDEATHSIG only sets a flag on the child; it allocates
    // nothing and is async-signal-safe, as code between fork and exec must be.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut command, || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    // The parent-death signal fires when the spawning *thread* ends, and test threads end
    // with their test: spawn from a thread that lives as long as the process.
    let (started, spawned) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let child = command.spawn();
        let failed = child.is_err();
        let _ = started.send(child.map(drop));
        if !failed {
            loop {
                std::thread::park();
            }
        }
    });
    spawned
        .recv()
        .map_err(|_| "the thread starting moto_server ended".to_owned())?
        .map_err(|error| format!("cannot start {}: {error}", binary.display()))?;
    let address = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if answers(&address) {
            eprintln!("tests use a moto_server of their own at http://{address}");
            return Ok(format!("http://{address}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!(
        "{} did not answer on {address} within 30 s",
        binary.display()
    ))
}

/// Whether something accepts TCP connections at `address` (`host:port`).
fn answers(address: &str) -> bool {
    address
        .to_socket_addrs()
        .ok()
        .and_then(|mut addresses| addresses.next())
        .is_some_and(|address| TcpStream::connect_timeout(&address, Duration::from_secs(2)).is_ok())
}

fn uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}
