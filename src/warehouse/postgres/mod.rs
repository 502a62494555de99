//! PostgreSQL: per (batch, table), the schema changes in a short transaction of their
//! own under an advisory lock per table (so workers and processes that grow the same
//! table at once serialise instead of failing, and no lock is held while rows are
//! copied), then one data transaction: rows de-duplicated by message id in memory and
//! binary-COPYed straight into the table, whose primary key refuses an id it holds (then
//! the transaction rolls back and the rows go again with the stored ids looked up and
//! dropped; `users`/`accounts` go through a staging table and a newest-wins merge),
//! discards, and the `_tracktable_loads` row. A failed load rolls the data back and is
//! retried by the loader task with a fresh connection; committed DDL is what the retry
//! needs anyway.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::pin::pin;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use futures_util::SinkExt;
use tokio_postgres::{Client, NoTls, Statement, ToStatement};

use super::ddl::{self, Caps, SchemaChange, SchemaPlan, TablePlan};
use super::discard::{self, Discard, DiscardCounts, DiscardReason, KeptDiscards};
use super::pg_copy::CopyEncoder;
use super::plan::{self, Cell, TableSchema};
use super::sql;
use super::{LoadReport, Loader, ObjectId, TableBatch, Warehouse};
use crate::config::{PostgresFile, SslMode};
use crate::route::ColumnType;
use crate::stable_hash;

#[derive(Debug, thiserror::Error)]
pub enum PostgresError {
    #[error("warehouse.url {url:?} is not a PostgreSQL URL: {source}")]
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

impl super::WarehouseError for PostgresError {
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
fn is_unique_violation(error: &PostgresError) -> bool {
    match error {
        PostgresError::Query { source, .. } => source
            .as_db_error()
            .is_some_and(|db| *db.code() == tokio_postgres::error::SqlState::UNIQUE_VIOLATION),
        _ => false,
    }
}

pub(crate) fn query_error(
    context: impl Into<String>,
) -> impl FnOnce(tokio_postgres::Error) -> PostgresError {
    let context = context.into();
    move |source| PostgresError::Query { context, source }
}

/// A PostgreSQL warehouse: one schema in one database.
#[derive(Clone)]
pub struct PostgresWarehouse {
    config: tokio_postgres::Config,
    /// `None`: plain connections (loopback, or `sslmode = "disable"`).
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    /// `host:port/db` for messages: never the password.
    target: String,
    schema: String,
    /// What this process knows of its tables' columns, shared by every loader
    /// connection: a table's batches go to whichever of its worker's connections is
    /// free, so a per-connection cache went stale when another connection added a
    /// column (and that column's values were discarded). One worker owns each table,
    /// and loads it on one connection at a time, so the entry is never contended.
    tables: Arc<Mutex<HashMap<String, TableSchema>>>,
    /// Tables whose recent loads met message ids they already held: their loads look
    /// stored ids up before copying instead of copying optimistically.
    overlapping: Arc<Mutex<Overlap>>,
    /// The object log's connection (S3 sources), made on first use.
    objects: Arc<tokio::sync::Mutex<Option<Arc<Client>>>>,
    /// The tracking plan's caps: tables in the schema, columns per table.
    caps: Caps,
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

    /// Applies the tracking plan's caps: at most `tables` tables in the schema
    /// (bookkeeping tables, whose names start with `_`, aside) and `columns` columns
    /// per table. What does not fit goes to `_discards` with the reason.
    pub fn with_caps(mut self, tables: Option<usize>, columns: Option<usize>) -> Self {
        self.caps = Caps { tables, columns };
        self
    }

    /// The object log's connection, connecting (and creating the table) if needed.
    async fn object_log_client(&self) -> Result<Arc<Client>, PostgresError> {
        let mut slot = self.objects.lock().await;
        if let Some(client) = slot.as_ref() {
            return Ok(Arc::clone(client));
        }
        let client = self.connect().await?;
        // Under the schema's lock: two processes creating it at once would collide.
        client
            .batch_execute(&sql::create_objects_table_locked(
                &self.schema,
                self.schema_lock_key(),
            ))
            .await
            .map_err(query_error("create the object log"))?;
        let client = Arc::new(client);
        *slot = Some(Arc::clone(&client));
        Ok(client)
    }

    pub(crate) fn cached(&self, table: &str) -> Option<TableSchema> {
        self.tables
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(table)
            .cloned()
    }

    pub(crate) fn remember(&self, table: &str, columns: TableSchema) {
        self.tables
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(table.to_owned(), columns);
    }

    pub(crate) fn forget(&self, table: &str) {
        self.tables
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(table);
    }

    /// Whether `table`'s next load should look stored ids up first.
    fn expects_stored(&self, table: &str) -> bool {
        self.overlapping
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .expects_stored(table)
    }

    /// What a load of `table` found: stored ids among its rows, or none.
    fn note_stored(&self, table: &str, met: bool) {
        self.overlapping
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .note(table, met);
    }

    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The tracking plan's caps.
    pub fn caps(&self) -> Caps {
        self.caps
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

    /// The advisory lock that serialises schema set-up (`prepare`) across workers and
    /// processes.
    fn schema_lock_key(&self) -> i64 {
        stable_hash::fnv1a64(&[b"tracktable ddl ", self.schema.as_bytes()]) as i64
    }

    /// The advisory lock that serialises one table's DDL. Per table, not per schema:
    /// different tables' DDL does not conflict, and a schema-wide lock made a first
    /// batch's dozens of CREATE TABLEs wait on each other.
    fn table_lock_key(&self, table: &str) -> i64 {
        stable_hash::fnv1a64(&[
            b"tracktable ddl ",
            self.schema.as_bytes(),
            b"\0",
            table.as_bytes(),
        ]) as i64
    }
}

/// Which tables look stored message ids up before copying. A table that met stored ids
/// (a refused COPY, or a lookup that found some) looks up for its next
/// [`Overlap::CLEAN_LOADS`] loads, and goes back to copying optimistically once that
/// many lookups in a row found nothing. So a steady trickle of repeats (at-least-once
/// senders) costs a lookup per batch, as before, rather than a refused COPY every other
/// batch, and a table that never repeats never pays for a lookup.
#[derive(Debug, Default)]
struct Overlap(HashMap<String, u32>);

impl Overlap {
    const CLEAN_LOADS: u32 = 8;

    fn expects_stored(&self, table: &str) -> bool {
        self.0.contains_key(table)
    }

    fn note(&mut self, table: &str, met: bool) {
        if met {
            self.0.insert(table.to_owned(), Self::CLEAN_LOADS);
        } else if let Some(left) = self.0.get_mut(table) {
            *left = left.saturating_sub(1);
            if *left == 0 {
                self.0.remove(table);
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
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for certificate in native.certs {
        // A malformed system certificate is skipped, as every TLS client does.
        let _ = roots.add(certificate);
    }
    if let Some(path) = extra_roots {
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
    }
    if roots.is_empty() {
        return Err(PostgresError::Tls(
            "no trusted root certificates found: install ca-certificates or set sslrootcert".into(),
        ));
    }
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| PostgresError::Tls(error.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
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

impl Warehouse for PostgresWarehouse {
    type Error = PostgresError;
    type Loader = PostgresLoader;

    async fn prepare(&self) -> Result<(), PostgresError> {
        let mut client = self.connect().await?;
        let transaction = client.transaction().await.map_err(query_error("begin"))?;
        transaction
            .execute(sql::DDL_LOCK, &[&self.schema_lock_key()])
            .await
            .map_err(query_error("take the DDL lock"))?;
        // Only when missing: CREATE SCHEMA IF NOT EXISTS still needs CREATE on the
        // database, which a loader given its own schema (setup-sql --schema) lacks.
        let exists = transaction
            .query_opt(sql::SCHEMA_EXISTS, &[&self.schema])
            .await
            .map_err(query_error(format!("look up schema {}", self.schema)))?
            .is_some();
        if !exists {
            transaction
                .batch_execute(&sql::create_schema(&self.schema))
                .await
                .map_err(query_error(format!("create schema {}", self.schema)))?;
        }
        for statement in sql::create_bookkeeping(&self.schema) {
            transaction
                .batch_execute(&statement)
                .await
                .map_err(query_error("create bookkeeping tables"))?;
        }
        transaction
            .commit()
            .await
            .map_err(query_error("commit schema"))
    }

    async fn loaded_objects(
        &self,
        objects: Vec<ObjectId>,
    ) -> Result<HashSet<ObjectId>, PostgresError> {
        if objects.is_empty() {
            return Ok(HashSet::new());
        }
        let (names, contents): (Vec<String>, Vec<String>) = objects.into_iter().unzip();
        let client = self.object_log_client().await?;
        let result = client
            .query(
                &sql::select_loaded_objects(&self.schema),
                &[&names, &contents],
            )
            .await;
        match result {
            Ok(rows) => Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect()),
            Err(error) => {
                *self.objects.lock().await = None;
                Err(query_error("look up loaded objects")(error))
            }
        }
    }

    async fn record_objects(&self, objects: Vec<ObjectId>) -> Result<(), PostgresError> {
        if objects.is_empty() {
            return Ok(());
        }
        let (names, contents): (Vec<String>, Vec<String>) = objects.into_iter().unzip();
        let client = self.object_log_client().await?;
        let result = client
            .execute(&sql::record_objects(&self.schema), &[&names, &contents])
            .await;
        if let Err(error) = result {
            *self.objects.lock().await = None;
            return Err(query_error("record loaded objects")(error));
        }
        Ok(())
    }

    async fn loader(&self) -> Result<PostgresLoader, PostgresError> {
        Ok(PostgresLoader {
            client: self.connect().await?,
            warehouse: self.clone(),
            prepared: Prepared::default(),
        })
    }
}

/// One worker's connection and its cache of the tables it owns.
pub struct PostgresLoader {
    client: Client,
    warehouse: PostgresWarehouse,
    prepared: Prepared,
}

/// A connection's prepared statements, by their text. Sent as text, each load's COPY,
/// bookkeeping insert and column read was parsed again, and the insert planned again,
/// a round trip each, about 600 times per 300k events. Prepared statements belong to
/// the session, not the transaction, so a rolled-back load keeps them; a COPY whose
/// column list grew is a new text. Bounded: past [`Prepared::MAX`] texts (tables ×
/// column lists) the cache starts again.
#[derive(Default)]
struct Prepared(HashMap<String, Statement>);

impl Prepared {
    const MAX: usize = 512;

    async fn get(
        &mut self,
        transaction: &tokio_postgres::Transaction<'_>,
        text: &str,
        what: impl FnOnce() -> String,
    ) -> Result<Statement, PostgresError> {
        if let Some(statement) = self.0.get(text) {
            return Ok(statement.clone());
        }
        let statement = transaction
            .prepare(text)
            .await
            .map_err(|error| query_error(what())(error))?;
        if self.0.len() >= Self::MAX {
            self.0.clear();
        }
        self.0.insert(text.to_owned(), statement.clone());
        Ok(statement)
    }
}

impl Loader for PostgresLoader {
    type Error = PostgresError;

    async fn load(&mut self, batch: &TableBatch) -> Result<LoadReport, PostgresError> {
        let result = self.load_once(batch).await;
        if result.is_err() {
            // The transaction rolled back its DDL too: forget what we thought we knew.
            self.warehouse.forget(batch.table.as_str());
            // And prepare afresh: a statement the server no longer knows (SQLSTATE
            // 26000, say behind a pooler that moved the session) fails one try only.
            self.prepared = Prepared::default();
        }
        result
    }
}

impl PostgresLoader {
    async fn load_once(&mut self, batch: &TableBatch) -> Result<LoadReport, PostgresError> {
        let schema = self.warehouse.schema.clone();
        let table = batch.table.as_str();
        let mut report = LoadReport::default();
        let (columns, created) = match self.settle_schema(batch, &mut report).await? {
            Settled::Ready { columns, created } => (columns, created),
            Settled::Refused(reason) => return self.refuse_table(batch, reason).await,
        };

        // Rows. Event tables: one row per message id (the first in the batch), COPYed
        // straight into the table, whose primary key refuses a second row for an id.
        // Optimistically: most batches hold no id the table already has, so the COPY
        // goes first, with no lookup; if the key refuses a row (SQLSTATE 23505: an
        // earlier object repeated, a replay, a concurrent writer), the transaction rolls
        // back and the rows go again with the stored ids looked up and dropped. A table
        // that met stored ids looks them up first for a while ([`Overlap`]): a replay
        // after a restart brings many in a row. On `tracks` the lookup was about a
        // quarter of a later batch's server work (BENCHMARKS.md, session 8).
        // `users`/`accounts`: staged and merged newest-wins.
        let latest = sql::is_latest(table);
        let key = sql::key_column(table);
        // A key the server cannot store (a NUL character) would fail the whole COPY.
        let mut unkeyed_discards = Vec::new();
        let keyed: Vec<&crate::route::Row> = batch
            .rows
            .iter()
            .filter(|row| match discard::key_problem(&row.message_id, None) {
                None => true,
                Some(reason) => {
                    unkeyed_discards.push(Discard::whole_row(table, row, reason));
                    false
                }
            })
            .collect();
        let unkeyed = unkeyed_discards.len() as u64;
        let unique: Vec<&crate::route::Row> = if latest {
            keyed
        } else {
            let mut ids = HashSet::with_capacity_and_hasher(
                keyed.len(),
                foldhash::fast::RandomState::default(),
            );
            keyed
                .into_iter()
                .filter(|row| ids.insert(row.message_id.as_str()))
                .collect()
        };
        let mut look_up = !latest && !created && self.warehouse.expects_stored(table);

        let stage = sql::STAGE;
        let (transaction, inserted, discards) = loop {
            let transaction = self
                .client
                .transaction()
                .await
                .map_err(query_error("begin"))?;
            let mut rows = unique.clone();
            if look_up && !rows.is_empty() {
                let mut candidates: Vec<&str> =
                    rows.iter().map(|row| row.message_id.as_str()).collect();
                // In byte order: PostgreSQL sorts an `= ANY` array before probing the
                // index, and finds a sorted one sorted at once (its qsort checks first)
                // where the key's collation orders by code point (C, C.UTF-8); the
                // probes then walk the index in order. On 50k ids against a 419k-row
                // table the lookup took 67-77 ms sorted, 105-128 ms not (BENCHMARKS.md).
                candidates.sort_unstable();
                let lookup = self
                    .prepared
                    .get(
                        &transaction,
                        &sql::select_stored_keys(&schema, table),
                        || format!("look up stored message ids of {table}"),
                    )
                    .await?;
                let stored: HashSet<String> = transaction
                    .query(&lookup, &[&candidates])
                    .await
                    .map_err(query_error(format!(
                        "look up stored message ids of {table}"
                    )))?
                    .iter()
                    .map(|row| row.get(0))
                    .collect();
                self.warehouse.note_stored(table, !stored.is_empty());
                rows.retain(|row| !stored.contains(&row.message_id));
            }
            let mut discards = unkeyed_discards.clone();
            if rows.is_empty() {
                break (transaction, 0, discards);
            }
            let mut layout = plan::Layout::of_table(key, &columns, self.warehouse.caps.columns);
            let copy = if latest {
                transaction
                    .batch_execute(&sql::create_stage(&schema, table, stage))
                    .await
                    .map_err(query_error(format!("create staging table for {table}")))?;
                sql::copy_into_stage(stage, &layout.names)
            } else {
                sql::copy_into_table(&schema, table, &layout.names)
            };
            let mut cells: Vec<Option<Cell>> = vec![None; layout.names.len()];
            let copy = self
                .prepared
                .get(&transaction, &copy, || format!("start COPY into {table}"))
                .await?;
            let copied = copy_in(&transaction, &copy, table, rows.iter(), |encoder, row| {
                layout.place(table, row, &mut cells, &mut discards);
                encoder.row(&cells);
            })
            .await;
            let copied = match copied {
                Err(error) if !look_up && !latest && is_unique_violation(&error) => {
                    tracing::debug!(
                        table,
                        batch = batch.batch.0,
                        "the batch repeats stored message ids; looking them up"
                    );
                    transaction
                        .rollback()
                        .await
                        .map_err(query_error(format!("roll back the COPY into {table}")))?;
                    self.warehouse.note_stored(table, true);
                    look_up = true;
                    continue;
                }
                other => other?,
            };
            if !latest {
                break (transaction, copied, discards);
            }
            // Every column: the newest call replaces the stored row whole.
            let all: Vec<&str> = std::iter::once(key)
                .chain(columns.keys().map(String::as_str).filter(|c| *c != key))
                .collect();
            let merged = transaction
                .execute(&sql::merge_latest(&schema, table, stage, &all), &[])
                .await
                .map_err(query_error(format!("merge into {table}")))?;
            transaction
                .batch_execute(&sql::drop_table(stage))
                .await
                .map_err(query_error("drop staging table"))?;
            break (transaction, merged, discards);
        };
        report.rows_loaded = inserted;
        report.duplicates = (batch.rows.len() as u64).saturating_sub(inserted + unkeyed);

        if !discards.is_empty() {
            report.discards_by_reason = write_discards(&transaction, &schema, &discards).await?;
            report.discards = report.discards_by_reason.total();
        }
        let record = self
            .prepared
            .get(&transaction, &sql::record_load(&schema), || {
                "record the load".to_owned()
            })
            .await?;
        transaction
            .execute(
                &record,
                &[
                    &(batch.batch.0 as i64),
                    &table,
                    &(report.rows_loaded as i64),
                    &(report.duplicates as i64),
                    &(report.discards as i64),
                ],
            )
            .await
            .map_err(query_error("record the load"))?;
        transaction
            .commit()
            .await
            .map_err(query_error(format!("commit {table}")))?;
        self.warehouse.remember(table, columns);
        Ok(report)
    }
}

/// What [`PostgresLoader::settle_schema`] found: the table's columns (and whether
/// this load created it), or the table cap's refusal.
enum Settled {
    Ready { columns: TableSchema, created: bool },
    Refused(DiscardReason),
}

impl PostgresLoader {
    /// Brings the table up to what the batch observed, in a short transaction of its
    /// own: the DDL lock (one per table, across workers and processes) is held only
    /// while the table is created and altered, not while rows are copied, so loads of
    /// different tables run in parallel. Committed DDL that outlives a failed data load
    /// is harmless: it is what the retry needs.
    async fn settle_schema(
        &mut self,
        batch: &TableBatch,
        report: &mut LoadReport,
    ) -> Result<Settled, PostgresError> {
        let schema = self.warehouse.schema.clone();
        let table = batch.table.as_str();
        let mut columns = self.warehouse.cached(table).unwrap_or_default();
        if ddl::is_settled(&columns, &batch.observed) {
            return Ok(Settled::Ready {
                columns,
                created: false,
            });
        }
        let transaction = self
            .client
            .transaction()
            .await
            .map_err(query_error("begin"))?;
        if columns.is_empty() {
            columns = read_columns(&transaction, &mut self.prepared, &schema, table).await?;
        }
        let mut created = false;
        if !ddl::is_settled(&columns, &batch.observed) {
            transaction
                .execute(sql::DDL_LOCK, &[&self.warehouse.table_lock_key(table)])
                .await
                .map_err(query_error("take the DDL lock"))?;
            // Another worker or process may have changed the table meanwhile.
            columns = read_columns(&transaction, &mut self.prepared, &schema, table).await?;
            let caps = self.warehouse.caps;
            let tables_in_schema = match caps.table_cap(table) {
                Some(_) if columns.is_empty() => {
                    Some(count_tables(&transaction, &self.warehouse).await?)
                }
                _ => None,
            };
            match ddl::plan_table(table, &columns, &batch.observed, caps, tables_in_schema) {
                TablePlan::Refuse(reason) => {
                    transaction
                        .commit()
                        .await
                        .map_err(query_error("end the schema transaction"))?;
                    return Ok(Settled::Refused(reason));
                }
                TablePlan::Apply(plan) => {
                    created = plan.create.is_some();
                    apply_plan(&transaction, &schema, batch, &plan, report).await?;
                    columns = plan.columns;
                }
            }
        }
        transaction
            .commit()
            .await
            .map_err(query_error(format!("commit schema changes of {table}")))?;
        Ok(Settled::Ready { columns, created })
    }
}

/// The tables that count against the table cap, counted under the schema's lock so
/// that workers creating different tables at once cannot overshoot the cap.
async fn count_tables(
    transaction: &tokio_postgres::Transaction<'_>,
    warehouse: &PostgresWarehouse,
) -> Result<usize, PostgresError> {
    transaction
        .execute(sql::DDL_LOCK, &[&warehouse.schema_lock_key()])
        .await
        .map_err(query_error("take the schema lock"))?;
    let existing: i64 = transaction
        .query_one(sql::COUNT_TABLES, &[&warehouse.schema])
        .await
        .and_then(|row| row.try_get(0))
        .map_err(query_error("count tables"))?;
    Ok(usize::try_from(existing).unwrap_or(0))
}

/// Runs `plan` in PostgreSQL's dialect: the table with every column it starts with in
/// one statement (the table and its columns appear together), then every column change
/// in one `ALTER TABLE` (a new event table brings dozens of columns, and one ALTER per
/// column made first loads DDL-bound).
async fn apply_plan(
    transaction: &tokio_postgres::Transaction<'_>,
    schema: &str,
    batch: &TableBatch,
    plan: &SchemaPlan,
    report: &mut LoadReport,
) -> Result<(), PostgresError> {
    let table = batch.table.as_str();
    if let Some(create) = &plan.create {
        let listed: Vec<(&str, ColumnType)> = create
            .iter()
            .map(|(column, column_type)| (column.as_str(), *column_type))
            .collect();
        transaction
            .batch_execute(&sql::create_table(schema, table, &listed))
            .await
            .map_err(query_error(format!("create table {table}")))?;
        report.schema_changes += 1 + create.len() as u64;
        tracing::info!(
            table,
            batch = batch.batch.0,
            columns = create.len(),
            "table created"
        );
    }
    if !plan.alter.is_empty() {
        let clauses: Vec<String> = plan
            .alter
            .iter()
            .map(|change| match change {
                SchemaChange::AddColumn {
                    column,
                    column_type,
                } => sql::add_column_clause(column.as_str(), *column_type),
                SchemaChange::Widen { column, width } => sql::widen_clause(column.as_str(), *width),
            })
            .collect();
        transaction
            .batch_execute(&sql::alter_table(schema, table, &clauses))
            .await
            .map_err(query_error(format!("change table {table}")))?;
        report.schema_changes += plan.alter.len() as u64;
        ddl::log_changes(table, batch.batch.0, &plan.alter);
    }
    ddl::log_refused(table, batch.batch.0, &plan.refused);
    Ok(())
}

impl PostgresLoader {
    /// A table the tracking plan's table cap keeps out: every row of the batch goes to
    /// `_discards` whole (column `*`, the row as JSON), and the load is recorded.
    async fn refuse_table(
        &mut self,
        batch: &TableBatch,
        reason: DiscardReason,
    ) -> Result<LoadReport, PostgresError> {
        let schema = self.warehouse.schema.clone();
        let table = batch.table.as_str();
        let mut seen = HashSet::new();
        let discards: Vec<Discard> = batch
            .rows
            .iter()
            .filter(|row| seen.insert(row.message_id.as_str()))
            .map(|row| Discard::whole_row(table, row, reason.clone()))
            .collect();
        let transaction = self
            .client
            .transaction()
            .await
            .map_err(query_error("begin"))?;
        let mut report = LoadReport::default();
        if !discards.is_empty() {
            report.discards_by_reason = write_discards(&transaction, &schema, &discards).await?;
            report.discards = report.discards_by_reason.total();
        }
        let record = self
            .prepared
            .get(&transaction, &sql::record_load(&schema), || {
                "record the load".to_owned()
            })
            .await?;
        transaction
            .execute(
                &record,
                &[
                    &(batch.batch.0 as i64),
                    &table,
                    &0i64,
                    &0i64,
                    &(report.discards as i64),
                ],
            )
            .await
            .map_err(query_error("record the load"))?;
        transaction
            .commit()
            .await
            .map_err(query_error(format!("commit {table}")))?;
        tracing::warn!(
            table,
            batch = batch.batch.0,
            rows = batch.rows.len(),
            cap = self.warehouse.caps.tables.unwrap_or(0),
            "table over the tracking plan's table cap; its rows went to _discards"
        );
        Ok(report)
    }
}

/// The table's columns (other than the message id), or none if it does not exist.
async fn read_columns(
    transaction: &tokio_postgres::Transaction<'_>,
    prepared: &mut Prepared,
    schema: &str,
    table: &str,
) -> Result<TableSchema, PostgresError> {
    let statement = prepared
        .get(transaction, sql::SELECT_COLUMNS, || {
            format!("read the columns of {table}")
        })
        .await?;
    let rows = transaction
        .query(&statement, &[&schema, &table])
        .await
        .map_err(query_error(format!("read the columns of {table}")))?;
    let mut columns = TableSchema::new();
    for row in rows {
        let name: String = row.get(0);
        let data_type: String = row.get(1);
        let length: Option<i32> = row.get(2);
        if name == sql::key_column(table) {
            // Present in every table we create; marks the table as existing.
            columns.insert(name, ColumnType::Varchar(u32::MAX));
            continue;
        }
        let column_type = match data_type.as_str() {
            "boolean" => ColumnType::Boolean,
            "bigint" => ColumnType::BigInt,
            "double precision" => ColumnType::Double,
            "timestamp without time zone" => ColumnType::Timestamp,
            "character varying" => ColumnType::Varchar(length.map_or(65535, |l| l.max(1) as u32)),
            other => {
                tracing::warn!(
                    table,
                    column = name,
                    data_type = other,
                    "column has a type tracktable does not write; its values go to _discards"
                );
                continue;
            }
        };
        columns.insert(name, column_type);
    }
    Ok(columns)
}

/// The warehouse's own limit, for the end-to-end benchmark: one binary COPY of `rows`
/// straight into the existing `schema.table`, in one transaction, with no staging,
/// merge, discards or bookkeeping. Values that do not fit their column are left NULL.
/// The rows must not repeat a key.
pub async fn raw_copy(
    client: &mut Client,
    schema: &str,
    table: &str,
    rows: &[crate::route::Row],
) -> Result<u64, PostgresError> {
    let transaction = client.transaction().await.map_err(query_error("begin"))?;
    let columns = read_columns(&transaction, &mut Prepared::default(), schema, table).await?;
    let key = sql::key_column(table);
    // The same layout as the loader's, so the baseline's client work is no larger.
    let mut layout = plan::Layout::of_table(key, &columns, None);
    let copy = sql::copy_into_table(schema, table, &layout.names);
    let mut cells: Vec<Option<Cell>> = vec![None; layout.names.len()];
    // The baseline keeps no discards (the rows it copies have none).
    let mut ignored = Vec::new();
    let copied = copy_in(&transaction, &copy, table, rows.iter(), |encoder, row| {
        layout.place(table, row, &mut cells, &mut ignored);
        encoder.row(&cells);
    })
    .await?;
    transaction
        .commit()
        .await
        .map_err(query_error(format!("commit {table}")))?;
    Ok(copied)
}

/// Runs the binary COPY `statement` (into `table`, for error messages), encoding each
/// item with `encode` and sending the stream a buffer at a time. Returns the rows the
/// server counted.
async fn copy_in<T, S: ToStatement + ?Sized>(
    transaction: &tokio_postgres::Transaction<'_>,
    statement: &S,
    table: &str,
    items: impl Iterator<Item = T>,
    mut encode: impl FnMut(&mut CopyEncoder, T),
) -> Result<u64, PostgresError> {
    let sink = transaction
        .copy_in::<_, Bytes>(statement)
        .await
        .map_err(query_error(format!("start COPY into {table}")))?;
    let mut sink = pin!(sink);
    let mut encoder = CopyEncoder::new();
    for item in items {
        encode(&mut encoder, item);
        if encoder.is_full() {
            sink.send(encoder.take())
                .await
                .map_err(query_error(format!("COPY into {table}")))?;
        }
    }
    sink.send(encoder.finish())
        .await
        .map_err(query_error(format!("COPY into {table}")))?;
    sink.as_mut()
        .finish()
        .await
        .map_err(query_error(format!("finish COPY into {table}")))
}

async fn write_discards(
    transaction: &tokio_postgres::Transaction<'_>,
    schema: &str,
    discards: &[Discard],
) -> Result<DiscardCounts, PostgresError> {
    let stage = sql::DISCARD_STAGE;
    transaction
        .batch_execute(&sql::create_discard_stage(schema, stage))
        .await
        .map_err(query_error("create discard staging table"))?;
    fn text(value: &str) -> Option<Cell<'_>> {
        Some(Cell::Text(Cow::Borrowed(value)))
    }
    // The reasons' texts, written out once (cells borrow them).
    let reasons: Vec<String> = discards.iter().map(|d| d.reason.to_string()).collect();
    let copy = sql::copy_into_stage(stage, &sql::DISCARD_COLUMNS);
    copy_in(
        transaction,
        &copy,
        "_discards",
        discards.iter().zip(&reasons),
        |encoder, (discard, reason)| {
            encoder.row(&[
                text(&discard.table),
                text(&discard.column),
                text(&discard.message_id),
                text(&discard.value),
                text(reason),
                text(&discard.object),
                Some(Cell::BigInt(discard.line)),
                discard.received_at.map(Cell::Timestamp),
            ]);
        },
    )
    .await?;
    // Counted by reason from what was actually inserted (a replay inserts nothing).
    let mut inserted = KeptDiscards::new(discards);
    for row in transaction
        .query(&sql::merge_discards(schema, stage), &[])
        .await
        .map_err(query_error("merge discards"))?
    {
        let reason: &str = row.try_get(0).map_err(query_error("merge discards"))?;
        inserted.kept(reason, 1);
    }
    transaction
        .batch_execute(&sql::drop_table(stage))
        .await
        .map_err(query_error("drop discard staging table"))?;
    Ok(inserted.counts())
}

#[cfg(test)]
mod tests {
    use super::{Overlap, is_permanent_state};

    #[test]
    fn a_table_that_met_stored_ids_looks_up_until_enough_clean_loads_in_a_row() {
        let mut overlap = Overlap::default();
        assert!(!overlap.expects_stored("tracks"), "optimistic at first");
        overlap.note("tracks", false);
        assert!(
            !overlap.expects_stored("tracks"),
            "a clean load changes nothing"
        );
        overlap.note("tracks", true);
        for _ in 1..Overlap::CLEAN_LOADS {
            assert!(overlap.expects_stored("tracks"));
            overlap.note("tracks", false);
        }
        // One more stored id starts the count again.
        overlap.note("tracks", true);
        for _ in 0..Overlap::CLEAN_LOADS {
            assert!(overlap.expects_stored("tracks"));
            assert!(!overlap.expects_stored("pages"), "per table");
            overlap.note("tracks", false);
        }
        assert!(!overlap.expects_stored("tracks"), "optimistic again");
    }

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
