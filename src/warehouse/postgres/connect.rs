//! connect: how the PostgreSQL warehouse reaches its server — the URL, the password
//! from the environment, TLS (verifying, with the system's roots and an optional
//! `sslrootcert`; plain only to loopback or when disabled) — and what its errors mean:
//! the server's own words, and whether retrying can help.
//!
//! The Redshift warehouse connects through this too: Redshift speaks PostgreSQL's
//! protocol.

use std::sync::Arc;

use tokio_postgres::{Client, NoTls};

use super::PostgresWarehouse;
use crate::config::{PostgresFile, SslMode};
use crate::warehouse::WarehouseError;
use crate::warehouse::ddl::Caps;

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
    #[error("{context}: {}", server_error(source))]
    Query {
        context: String,
        source: tokio_postgres::Error,
    },
}

/// tokio-postgres prints a server error as just "db error"; this adds what the server
/// said: severity, SQLSTATE, message, detail and hint.
fn server_error(error: &tokio_postgres::Error) -> String {
    let Some(db) = error.as_db_error() else {
        return error.to_string();
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

/// SQLSTATEs that retrying cannot fix: syntax and naming errors, missing privileges,
/// data exceptions, unsupported features. Duplicate-object errors (a concurrent creator
/// won a race) are not among them: the retry sees the object and goes on.
pub fn is_permanent_state(code: &str) -> bool {
    const RACES: [&str; 4] = ["42P07", "42701", "42P06", "42710"];
    let class = code.get(..2).unwrap_or("");
    matches!(class, "42" | "22" | "0A" | "28") && !RACES.contains(&code)
}

impl WarehouseError for PostgresError {
    fn is_permanent(&self) -> bool {
        match self {
            PostgresError::Url { .. } | PostgresError::MissingPassword { .. } => true,
            PostgresError::Tls(_) => true,
            PostgresError::Connect { source, .. } | PostgresError::Query { source, .. } => source
                .as_db_error()
                .is_some_and(|db| is_permanent_state(db.code().code())),
        }
    }
}

/// Whether the server refused a row for repeating a unique key (SQLSTATE 23505).
pub(super) fn is_unique_violation(error: &PostgresError) -> bool {
    match error {
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
        let connect_error = |source| PostgresError::Connect {
            target: self.target.clone(),
            source,
        };
        match &self.tls {
            None => {
                let (client, connection) =
                    self.config.connect(NoTls).await.map_err(connect_error)?;
                tokio::spawn(drive(connection));
                Ok(client)
            }
            Some(tls) => {
                let (client, connection) = self
                    .config
                    .connect(tls.clone())
                    .await
                    .map_err(connect_error)?;
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
    use super::is_permanent_state;

    #[test]
    fn naming_privilege_and_data_errors_are_permanent_and_races_and_outages_are_not() {
        for code in [
            "42601", "42P01", "42501", "42622", "22P02", "0A000", "28P01",
        ] {
            assert!(is_permanent_state(code), "{code}");
        }
        // Duplicate objects (a concurrent creator), serialization failures, deadlocks,
        // shutdowns, connection failures, disk full: a retry may succeed.
        for code in [
            "42P07", "42701", "40001", "40P01", "57P01", "08006", "53100", "",
        ] {
            assert!(!is_permanent_state(code), "{code}");
        }
    }
}
