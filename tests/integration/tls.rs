//! TLS to PostgreSQL: the local server (Debian's, with its self-signed "snakeoil"
//! certificate for `localhost`) is reached over verified TLS when told to trust that
//! certificate, and refused when the name does not match.

use std::path::Path;

use tracktable::config::{PostgresFile, SslMode};
use tracktable::warehouse::postgres::PostgresWarehouse;

use crate::support;

const SNAKEOIL: &str = "/etc/ssl/certs/ssl-cert-snakeoil.pem";

fn file(host: &str, sslmode: SslMode, sslrootcert: Option<&str>) -> PostgresFile {
    PostgresFile {
        url: support::database_url().replace("127.0.0.1", host),
        password_env: None,
        schema: "unused".into(),
        sslmode,
        sslrootcert: sslrootcert.map(Into::into),
    }
}

#[tokio::test]
#[cfg_attr(
    skip_services,
    ignore = "needs PostgreSQL or the S3/SQS emulator; TRACKTABLE_SKIP_SERVICES is set"
)]
async fn require_verifies_the_server_certificate() {
    let Some(client) = support::postgres().await else {
        return;
    };
    let ssl_on: String = client.query_one("SHOW ssl", &[]).await.unwrap().get(0);
    if ssl_on != "on" || !Path::new(SNAKEOIL).exists() {
        assert!(
            !support::in_ci(),
            "CI's PostgreSQL should serve TLS with {SNAKEOIL}"
        );
        eprintln!("skipping: local PostgreSQL has no TLS");
        return;
    }
    // Trusting the server's own certificate: a verified TLS session.
    let trusted =
        PostgresWarehouse::new(&file("localhost", SslMode::Require, Some(SNAKEOIL))).unwrap();
    let tls_client = trusted
        .connect()
        .await
        .expect("TLS connection with the server's certificate trusted");
    let encrypted: bool = tls_client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(encrypted, "the session must be encrypted");

    // The certificate names `localhost`, not 127.0.0.1: the name check refuses it.
    let wrong_name =
        PostgresWarehouse::new(&file("127.0.0.1", SslMode::Require, Some(SNAKEOIL))).unwrap();
    let error = wrong_name
        .connect()
        .await
        .expect_err("a certificate for another name must be refused")
        .to_string();
    assert!(error.contains("cannot connect"), "{error}");

    // auto to loopback: plain, no certificate needed.
    let auto = PostgresWarehouse::new(&file("localhost", SslMode::Auto, None)).unwrap();
    let plain_client = auto.connect().await.expect("plain loopback connection");
    let encrypted: bool = plain_client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!encrypted);
}
