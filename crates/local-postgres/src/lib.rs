//! local_postgres: a throwaway PostgreSQL cluster for `demo` when none answers.
//!
//! Uses the server binaries already installed (`initdb` and `pg_ctl` on `PATH`, else the
//! newest `/usr/lib/postgresql/*/bin`), never downloads anything. The cluster lives in
//! one directory (data, log, port file), listens on loopback only with trust
//! authentication, and keeps running after the demo so its `psql` hint works; a second
//! demo reuses it. PostgreSQL refuses to run as root, so as root the commands run as the
//! `postgres` user and the directory is handed to that user.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum LocalPostgresError {
    #[error(
        "no PostgreSQL server binaries found (looked for initdb and pg_ctl on PATH and in \
         /usr/lib/postgresql/*/bin)"
    )]
    NoBinaries,
    #[error("running as root, but there is no `postgres` user to run the server as")]
    NoPostgresUser,
    #[error("{what} in {dir}: {source}")]
    Io {
        what: &'static str,
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("{command} failed ({status}):\n{output}")]
    Command {
        command: String,
        status: String,
        output: String,
    },
    #[error("the throwaway PostgreSQL did not accept connections within 30 s; see {log}")]
    NotReady { log: PathBuf },
}

/// A running throwaway cluster.
#[derive(Debug, Clone)]
pub struct LocalPostgres {
    pub url: String,
    pub dir: PathBuf,
    pub pg_ctl: PathBuf,
    /// Whether this call started it (false: it was already running).
    pub started: bool,
}

impl LocalPostgres {
    /// Restarts the server (`pg_ctl restart -m fast`: every session is disconnected, as
    /// in a real restart), waiting until it accepts connections again.
    pub fn restart(&self) -> Result<(), LocalPostgresError> {
        self.pg_ctl_command("restart")
    }

    /// Stops the server (fast shutdown), waiting until it is down.
    pub fn stop(&self) -> Result<(), LocalPostgresError> {
        self.pg_ctl_command("stop")
    }

    fn pg_ctl_command(&self, action: &str) -> Result<(), LocalPostgresError> {
        run(as_server_user(&self.pg_ctl, is_root())
            .arg(action)
            .args(["-w", "-m", "fast", "-D"])
            .arg(self.dir.join("data"))
            .arg("-l")
            .arg(self.dir.join("server.log")))
    }

    /// The command that stops it.
    pub fn stop_command(&self) -> String {
        let stop = format!(
            "{} -D {} stop",
            self.pg_ctl.display(),
            self.dir.join("data").display()
        );
        if is_root() {
            format!("runuser -u postgres -- {stop}")
        } else {
            stop
        }
    }
}

/// Where the demo keeps its cluster: beside the binary (the cargo target directory when
/// run with `cargo run`). As root, under the system temp directory instead, because the
/// `postgres` user usually cannot enter root's home.
pub fn default_dir() -> PathBuf {
    if is_root() {
        return std::env::temp_dir().join("tracktable-demo-postgres");
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
        .unwrap_or_else(std::env::temp_dir)
        .join("tracktable-demo-postgres")
}

/// The directory holding `initdb` and `pg_ctl`, if the server is installed.
pub fn find_binaries() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let on_path = std::env::split_paths(&path)
        .find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file());
    if on_path.is_some() {
        return on_path;
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("pg_ctl").is_file()).then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// Starts (creating it first if needed) the cluster in `dir`, or finds it running.
pub fn start(dir: &Path) -> Result<LocalPostgres, LocalPostgresError> {
    let bin = find_binaries().ok_or(LocalPostgresError::NoBinaries)?;
    let root = is_root();
    if root && !user_exists("postgres") {
        return Err(LocalPostgresError::NoPostgresUser);
    }
    let io = |what: &'static str| {
        let dir = dir.to_path_buf();
        move |source| LocalPostgresError::Io { what, dir, source }
    };
    std::fs::create_dir_all(dir).map_err(io("cannot create the cluster directory"))?;
    if root {
        run(Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir))?;
    }
    let data = dir.join("data");
    let log = dir.join("server.log");
    let port_file = dir.join("port");
    let pg_ctl = bin.join("pg_ctl");

    if !data.join("PG_VERSION").is_file() {
        run(as_server_user(&bin.join("initdb"), root)
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
                "-D",
            ])
            .arg(&data))?;
    }
    let running = as_server_user(&pg_ctl, root)
        .arg("status")
        .arg("-D")
        .arg(&data)
        .output()
        .is_ok_and(|output| output.status.success());
    let port = match std::fs::read_to_string(&port_file) {
        Ok(text) if running => text.trim().parse::<u16>().ok(),
        _ => None,
    };
    let (port, started) = match port {
        Some(port) => (port, false),
        None => {
            let port = free_port().map_err(io("cannot find a free port"))?;
            std::fs::write(&port_file, port.to_string())
                .map_err(io("cannot write the port file"))?;
            // Loopback TCP only; no Unix socket (its path could be too long here).
            run(as_server_user(&pg_ctl, root)
                .arg("start")
                .arg("-w")
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(&log)
                .arg("-o")
                .arg(format!("-p {port} -c listen_addresses=127.0.0.1 -k ''")))?;
            (port, true)
        }
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err(LocalPostgresError::NotReady { log });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(LocalPostgres {
        url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
        dir: dir.to_path_buf(),
        pg_ctl,
        started,
    })
}

/// Whether this process runs as root (the owner of `/proc/self` is our user).
fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|meta| meta.uid() == 0)
}

fn user_exists(name: &str) -> bool {
    std::fs::read_to_string("/etc/passwd").is_ok_and(|passwd| {
        passwd
            .lines()
            .any(|line| line.split(':').next() == Some(name))
    })
}

fn as_server_user(program: &Path, root: bool) -> Command {
    if root {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn run(command: &mut Command) -> Result<(), LocalPostgresError> {
    let description = format!("{command:?}");
    let output = command
        .output()
        .map_err(|source| LocalPostgresError::Command {
            command: description.clone(),
            status: "could not start".into(),
            output: source.to_string(),
        })?;
    if output.status.success() {
        return Ok(());
    }
    Err(LocalPostgresError::Command {
        command: description,
        status: output.status.to_string(),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    })
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
