//! connect: how the PostgreSQL warehouse reaches its server — the URL, the password
//! from the environment, TLS (verifying, with the system's roots and an optional
//! `sslrootcert`; plain only to loopback or when disabled) — and what its errors mean:
//! the server's own words, and their [`FailureClass`], decided from the SQLSTATE by
//! [`failure_class`] alone.
//!
//! The Redshift warehouse connects through this too: Redshift speaks PostgreSQL's
//! protocol.

use std::sync::Arc;

use tokio_postgres::{Client, NoTls};

use super::PostgresWarehouse;
use crate::config::{PostgresFile, SslMode};
use crate::warehouse::ddl::Caps;
use crate::warehouse::{FailureClass, WarehouseError};

#[derive(Debug, thiserror::Error)]
pub enum PostgresError {
    #[error(
        "warehouse.url {:?} is not a PostgreSQL URL: {source}",
        crate::conninfo::redacted(url)
    )]
    Url {
        url: String,
        source: tokio_postgres::Error,
    },
    #[error("environment variable {name} (named by warehouse.password_env) is not set")]
    MissingPassword { name: String },
    #[error("TLS setup: {0}")]
    Tls(String),
    #[error("cannot connect to PostgreSQL at {target}: {}", server_error(source))]
    Connect {
        target: String,
        source: tokio_postgres::Error,
    },
    /// Redshift asked for its SHA-256 password digest (authentication request 13),
    /// which it does for a user whose password was set as a `sha256|...` hash, and
    /// which no PostgreSQL client speaks: only Amazon's own drivers do.
    #[error(
        "cannot connect to {target}: user {user:?} has a password stored as a SHA-256 hash \
         ('sha256|...'), for which Redshift asks a digest only Amazon's own drivers compute; \
         set the password again in plain text, so Redshift keeps an MD5 hash: \
         ALTER USER \"{user}\" PASSWORD '<the same password, in plain text>'"
    )]
    DigestPassword { target: String, user: String },
    #[error("{context}: {}", server_error(source))]
    Query {
        context: String,
        source: tokio_postgres::Error,
    },
    /// A data failure in which the server named the row it refused: `row` is its index
    /// in the loaded batch's rows.
    #[error("{source} (row {} of the batch)", row + 1)]
    AtRow {
        row: usize,
        source: Box<PostgresError>,
    },
}

/// tokio-postgres prints a server error as just "db error"; this adds what the server
/// said: severity, SQLSTATE, message, detail and hint.
fn server_error(error: &tokio_postgres::Error) -> String {
    let Some(db) = error.as_db_error() else {
        // "error connecting to server" keeps its cause (connection refused, a TLS
        // failure, ...) in its source.
        return crate::report::causes(error);
    };
    let mut text = format!("{} {}: {}", db.severity(), db.code().code(), db.message());
    if let Some(detail) = db.detail() {
        text.push_str(&format!(" (detail: {detail})"));
    }
    if let Some(hint) = db.hint() {
        text.push_str(&format!(" (hint: {hint})"));
    }
    text
}

/// The class of a PostgreSQL error by its SQLSTATE: the one place PostgreSQL's errors
/// are sorted into data, transient and configuration failures. A class of codes not
/// named here is configuration: stopping loudly after one retry is better than
/// retrying forever something nobody has seen fail.
pub fn failure_class(code: &str) -> FailureClass {
    use FailureClass::{Config, Data, Transient};
    match code {
        // Duplicate objects: a concurrent creator won a race; the retry finds the
        // object and goes on.
        "42P07" | "42701" | "42P06" | "42710" => return Transient,
        // The database itself was dropped.
        "57P04" => return Config,
        _ => {}
    }
    match code.get(..2).unwrap_or("") {
        // The rows themselves: a value the column or a constraint refuses (22: data
        // exceptions, 23: integrity, 21: a key merged twice), a limit they exceed (54:
        // too many columns, an index row or a row too large), a trigger someone added
        // raising an exception about a row (P0).
        "21" | "22" | "23" | "54" | "P0" => Data,
        // The server or the way to it: connection failures (08), serialization
        // failures and deadlocks (40), no disk, memory or connection slots (53),
        // shutdowns, restarts, cancelled statements and timeouts (57), lock timeouts
        // and objects in use (55), a read-only standby after a failover or a
        // transaction the failure left aborted (25), a prepared statement a pooler
        // lost (26), I/O (58), a snapshot too old (72), internal errors (XX).
        "08" | "25" | "26" | "40" | "53" | "55" | "57" | "58" | "72" | "XX" => Transient,
        // Authorization (28: a wrong password, a role that cannot log in), names and
        // privileges (42: a privilege the loader lacks, a table or column changed by
        // hand), unsupported features (0A), a missing database or schema (3D, 3F),
        // and everything else.
        _ => Config,
    }
}

/// The class of an error the client reports without a SQLSTATE, by its kind as
/// tokio-postgres words it: the connection failing is transient; a value the client
/// cannot convert or a configuration it cannot use is not.
fn client_failure_class(kind: &str) -> FailureClass {
    const TRANSIENT: [&str; 8] = [
        "error communicating with the server",
        "unexpected message from server",
        "error performing TLS handshake",
        "connection closed",
        "error parsing response from server",
        "error encoding message to server",
        "error connecting to server",
        "timeout waiting for server",
    ];
    if TRANSIENT.contains(&kind) {
        FailureClass::Transient
    } else {
        FailureClass::Config
    }
}

/// The class of any tokio-postgres error: by SQLSTATE when the server sent one.
pub(crate) fn error_class(error: &tokio_postgres::Error) -> FailureClass {
    match error.as_db_error() {
        Some(db) => failure_class(db.code().code()),
        None if error.is_closed() => FailureClass::Transient,
        None => client_failure_class(&error.to_string()),
    }
}

impl WarehouseError for PostgresError {
    fn class(&self) -> FailureClass {
        match self {
            PostgresError::Url { .. } | PostgresError::MissingPassword { .. } => {
                FailureClass::Config
            }
            PostgresError::Tls(_) | PostgresError::DigestPassword { .. } => FailureClass::Config,
            PostgresError::Connect { source, .. } | PostgresError::Query { source, .. } => {
                error_class(source)
            }
            PostgresError::AtRow { source, .. } => source.class(),
        }
    }

    fn refused_row(&self) -> Option<usize> {
        match self {
            PostgresError::AtRow { row, .. } => Some(*row),
            _ => None,
        }
    }

    fn refusal(&self) -> String {
        match self {
            PostgresError::Connect { source, .. } | PostgresError::Query { source, .. } => {
                server_error(source)
            }
            PostgresError::AtRow { source, .. } => source.refusal(),
            other => other.to_string(),
        }
    }
}

/// The line of a failed `COPY` into `table` that the server's error names, if it names
/// one: PostgreSQL's context reads `COPY {table}, line {n}` (then, maybe, `, column
/// ...`). The count is of rows for binary COPY, of physical lines for CSV.
pub(crate) fn copy_line(error: &PostgresError, table: &str) -> Option<u64> {
    let PostgresError::Query { source, .. } = error else {
        return None;
    };
    let context = source.as_db_error()?.where_()?;
    let prefix = format!("COPY {table}, line ");
    context.lines().find_map(|line| {
        let rest = line.strip_prefix(&prefix)?;
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        rest[..digits].parse().ok()
    })
}

/// Whether the server refused a row for repeating a unique key (SQLSTATE 23505).
pub(super) fn is_unique_violation(error: &PostgresError) -> bool {
    match error {
        PostgresError::AtRow { source, .. } => is_unique_violation(source),
        PostgresError::Query { source, .. } => source
            .as_db_error()
            .is_some_and(|db| *db.code() == tokio_postgres::error::SqlState::UNIQUE_VIOLATION),
        _ => false,
    }
}

/// Names a failed statement by what it was for.
pub(crate) fn query_error(
    context: impl Into<String>,
) -> impl FnOnce(tokio_postgres::Error) -> PostgresError {
    let context = context.into();
    move |source| PostgresError::Query { context, source }
}

impl PostgresWarehouse {
    pub fn new(file: &PostgresFile) -> Result<PostgresWarehouse, PostgresError> {
        let mut config: tokio_postgres::Config =
            file.url.parse().map_err(|source| PostgresError::Url {
                url: file.url.clone(),
                source,
            })?;
        if let Some(name) = &file.password_env {
            let password = std::env::var(name)
                .map_err(|_| PostgresError::MissingPassword { name: name.clone() })?;
            config.password(password);
        }
        config.application_name("tracktable");
        let tls = match file.sslmode {
            SslMode::Disable => None,
            SslMode::Auto if only_loopback(&config) => None,
            SslMode::Auto | SslMode::Require => Some(tls_connector(file.sslrootcert.as_deref())?),
        };
        config.ssl_mode(if tls.is_some() {
            tokio_postgres::config::SslMode::Require
        } else {
            tokio_postgres::config::SslMode::Disable
        });
        let target = describe(&config);
        Ok(PostgresWarehouse {
            config,
            tls,
            target,
            schema: file.schema.clone(),
            tables: Arc::default(),
            overlapping: Arc::default(),
            objects: Arc::default(),
            caps: Caps::default(),
        })
    }

    /// A new connection, its driver running on the current tokio runtime.
    pub async fn connect(&self) -> Result<Client, PostgresError> {
        self.connect_with(&self.config).await
    }

    /// A new connection as `user` with `password` (temporary credentials), the URL's
    /// host, database and TLS otherwise.
    pub async fn connect_as(&self, user: &str, password: &str) -> Result<Client, PostgresError> {
        let mut config = self.config.clone();
        config.user(user).password(password);
        self.connect_with(&config).await
    }

    async fn connect_with(&self, config: &tokio_postgres::Config) -> Result<Client, PostgresError> {
        let connect_error = |source: tokio_postgres::Error| {
            if crate::report::causes(&source).contains("unknown authentication tag `13`") {
                return PostgresError::DigestPassword {
                    target: self.target.clone(),
                    user: config.get_user().unwrap_or_default().to_owned(),
                };
            }
            PostgresError::Connect {
                target: self.target.clone(),
                source,
            }
        };
        match &self.tls {
            None => {
                let (client, connection) = config.connect(NoTls).await.map_err(connect_error)?;
                tokio::spawn(drive(connection));
                Ok(client)
            }
            Some(tls) => {
                let (client, connection) =
                    config.connect(tls.clone()).await.map_err(connect_error)?;
                tokio::spawn(drive(connection));
                Ok(client)
            }
        }
    }
}

async fn drive<F: std::future::Future<Output = Result<(), tokio_postgres::Error>>>(connection: F) {
    if let Err(error) = connection.await {
        tracing::debug!(error = %error, "postgres connection ended");
    }
}

/// Whether every host of the URL is a loopback address or a Unix socket.
fn only_loopback(config: &tokio_postgres::Config) -> bool {
    config.get_hosts().iter().all(|host| match host {
        tokio_postgres::config::Host::Unix(_) => true,
        tokio_postgres::config::Host::Tcp(name) => {
            name == "localhost"
                || name
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
    })
}

/// A verifying rustls connector: the system's roots plus `extra_roots` (PEM).
fn tls_connector(
    extra_roots: Option<&std::path::Path>,
) -> Result<tokio_postgres_rustls::MakeRustlsConnect, PostgresError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for certificate in native.certs {
        // A malformed system certificate is skipped, as every TLS client does.
        let _ = roots.add(certificate);
    }
    if let Some(path) = extra_roots {
        add_roots(&mut roots, path)?;
    }
    if roots.is_empty() {
        return Err(PostgresError::Tls(
            "no trusted root certificates found: install ca-certificates or set sslrootcert".into(),
        ));
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| PostgresError::Tls(error.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// Adds every certificate of the PEM file at `path` (`sslrootcert`) to `roots`.
fn add_roots(
    roots: &mut rustls::RootCertStore,
    path: &std::path::Path,
) -> Result<(), PostgresError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let certificates = CertificateDer::pem_file_iter(path).map_err(|error| {
        PostgresError::Tls(format!(
            "cannot read sslrootcert {}: {error}",
            path.display()
        ))
    })?;
    for certificate in certificates {
        let certificate = certificate.map_err(|error| {
            PostgresError::Tls(format!("sslrootcert {}: {error}", path.display()))
        })?;
        roots.add(certificate).map_err(|error| {
            PostgresError::Tls(format!("sslrootcert {}: {error}", path.display()))
        })?;
    }
    Ok(())
}

impl std::fmt::Debug for PostgresWarehouse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the config: it holds the password.
        f.debug_struct("PostgresWarehouse")
            .field("target", &self.target)
            .field("schema", &self.schema)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// `host:port/db`, for messages: never the password.
fn describe(config: &tokio_postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|host| match host {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "{host}:{port}/{}",
        config.get_dbname().unwrap_or("postgres")
    )
}

#[cfg(test)]
mod tests {
    /// A user whose Redshift password is a SHA-256 hash: the server asks for its digest
    /// (authentication request 13), here from a listener that answers the start-up
    /// message as Redshift does. The error is configuration, and says how to fix it.
    #[tokio::test]
    async fn a_sha256_password_user_is_refused_with_the_fix() {
        use std::io::{Read, Write};

        use crate::config::{PostgresFile, SslMode};
        use crate::warehouse::WarehouseError;
        use crate::warehouse::postgres::PostgresWarehouse;

        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("address").port();
        let server = std::thread::spawn(move || {
            let (mut socket, _) = listener.accept().expect("accept");
            let mut startup = [0u8; 512];
            let _ = socket.read(&mut startup);
            // 'R', length, request 13 (digest), then its algorithm and salt length.
            let mut request = vec![b'R'];
            for field in [16i32, 13, 0, 0] {
                request.extend(field.to_be_bytes());
            }
            let _ = socket.write_all(&request);
            let _ = socket.read(&mut startup);
        });
        let warehouse = PostgresWarehouse::new(&PostgresFile {
            url: format!("postgres://loader@127.0.0.1:{port}/analytics"),
            password_env: None,
            schema: "web".into(),
            sslmode: SslMode::Disable,
            sslrootcert: None,
        })
        .expect("a warehouse");
        let Err(error) = warehouse.connect().await else {
            panic!("connected to a server asking for a digest");
        };
        assert_eq!(error.class(), super::FailureClass::Config);
        let message = error.to_string();
        assert!(
            message.contains("SHA-256") && message.contains("ALTER USER \"loader\" PASSWORD"),
            "{message}"
        );
        drop(warehouse);
        let _ = server.join();
    }

    use super::{client_failure_class, failure_class};
    use crate::warehouse::FailureClass::{self, Config, Data, Transient};

    /// Every class of SQLSTATE the loader meets, with the class it is given.
    const CASES: [(&str, FailureClass, &str); 34] = [
        ("22001", Data, "value too long for the column"),
        ("22P02", Data, "invalid text for the type"),
        ("22003", Data, "number out of range"),
        ("22021", Data, "bytes invalid in the encoding"),
        ("23514", Data, "a CHECK constraint added by hand"),
        ("23502", Data, "NOT NULL added by hand"),
        ("23505", Data, "a unique index on a property column"),
        ("21000", Data, "a key merged twice in one statement"),
        ("54011", Data, "more than 1600 columns"),
        ("54000", Data, "an index row or a row too large"),
        ("P0001", Data, "a trigger raising about a row"),
        ("08006", Transient, "connection failure"),
        ("08001", Transient, "cannot establish a connection"),
        ("40001", Transient, "serialization failure"),
        ("40P01", Transient, "deadlock"),
        ("53100", Transient, "disk full"),
        ("53300", Transient, "too many connections"),
        ("57P01", Transient, "administrator shutdown (a restart)"),
        ("57P03", Transient, "cannot connect now (starting up)"),
        ("57014", Transient, "statement or lock timeout"),
        ("55P03", Transient, "lock not available"),
        ("25006", Transient, "read-only standby after a failover"),
        ("26000", Transient, "a prepared statement a pooler lost"),
        ("XX000", Transient, "internal error"),
        ("42P07", Transient, "a concurrent creator made the table"),
        ("42701", Transient, "a concurrent creator added the column"),
        ("28P01", Config, "wrong password"),
        ("28000", Config, "role missing or not allowed to log in"),
        ("42501", Config, "missing privilege"),
        ("42P01", Config, "table dropped by hand"),
        ("42703", Config, "column dropped by hand"),
        ("42601", Config, "syntax error"),
        ("0A000", Config, "feature not supported"),
        ("3D000", Config, "database missing"),
    ];

    #[test]
    fn every_sqlstate_has_its_class() {
        for (code, class, what) in CASES {
            assert_eq!(failure_class(code), class, "{code}: {what}");
        }
        assert_eq!(failure_class("57P04"), Config, "database dropped");
        assert_eq!(failure_class(""), Config, "no code at all");
    }

    #[test]
    fn client_errors_are_transient_only_when_the_connection_failed() {
        for kind in [
            "connection closed",
            "error communicating with the server",
            "error connecting to server",
            "timeout waiting for server",
        ] {
            assert_eq!(client_failure_class(kind), Transient, "{kind}");
        }
        for kind in [
            "error deserializing column 1",
            "error serializing parameter 0",
            "invalid configuration",
            "authentication error",
        ] {
            assert_eq!(client_failure_class(kind), Config, "{kind}");
        }
    }
}
