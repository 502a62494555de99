//! admin: the operator's commands around a pipeline — `setup-sql` (the statements for a
//! dedicated loader user), `check` (can this pipeline do its job, one line per
//! requirement) and `schema` (what tracktable created, and how close each table is to
//! the column limit).

mod queue;

use std::fmt::Write as _;
use std::path::Path;

use crate::config::{Pipeline, SourceFile, WarehouseFile};
use crate::warehouse::postgres::PostgresWarehouse;
use crate::warehouse::redshift::RedshiftWarehouse;
use crate::warehouse::redshift::iam::{IamAuth, IamError};
use crate::warehouse::sql;

/// Redshift's (and tracktable's) limit on columns per table.
pub const MAX_COLUMNS: i64 = 1600;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(
        "{0:?} is not a valid user or database name: use letters, digits and `_`, not starting with a digit"
    )]
    Name(String),
    #[error(transparent)]
    Postgres(#[from] crate::warehouse::postgres::PostgresError),
    #[error("query failed: {0}")]
    Query(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Iam(#[from] IamError),
}

fn check_name(name: &str) -> Result<(), AdminError> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit();
    if valid {
        Ok(())
    } else {
        Err(AdminError::Name(name.to_owned()))
    }
}

/// Which warehouse `setup-sql` writes for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Dialect {
    Postgres,
    Redshift,
}

/// The statements a superuser runs once to create tracktable's loader user.
pub fn setup_sql(
    dialect: Dialect,
    user: &str,
    database: &str,
    schema: Option<&str>,
) -> Result<String, AdminError> {
    check_name(user)?;
    check_name(database)?;
    if let Some(schema) = schema {
        check_name(schema)?;
    }
    if dialect == Dialect::Redshift {
        return Ok(redshift_setup_sql(user, database, schema));
    }
    let user_ident = sql::ident(user);
    let mut text = String::new();
    let _ = writeln!(
        text,
        "-- Run as a superuser (or the database owner). Replace the password, and give it to"
    );
    let _ = writeln!(
        text,
        "-- tracktable through the environment variable named by warehouse.password_env."
    );
    let _ = writeln!(
        text,
        "CREATE ROLE {user_ident} WITH LOGIN PASSWORD 'change-me';"
    );
    let _ = writeln!(
        text,
        "GRANT CONNECT, TEMPORARY ON DATABASE {} TO {user_ident};",
        sql::ident(database)
    );
    schema_grant(&mut text, &user_ident, database, schema);
    Ok(text)
}

/// The schema part of `setup-sql`, the same in both dialects: the pipeline's schema
/// owned by the loader, or the right to create schemas.
fn schema_grant(text: &mut String, user_ident: &str, database: &str, schema: Option<&str>) {
    match schema {
        Some(schema) => {
            let _ = writeln!(
                text,
                "-- The pipeline's schema, owned by the loader so it can create and alter its tables:"
            );
            let _ = writeln!(
                text,
                "CREATE SCHEMA IF NOT EXISTS {} AUTHORIZATION {user_ident};",
                sql::ident(schema)
            );
        }
        None => {
            let _ = writeln!(
                text,
                "-- Lets the loader create each pipeline's schema itself:"
            );
            let _ = writeln!(
                text,
                "GRANT CREATE ON DATABASE {} TO {user_ident};",
                sql::ident(database)
            );
        }
    }
}

/// Redshift: `CREATE USER` (Redshift has no `CREATE ROLE ... LOGIN`), the grants, and
/// what the staging bucket and the cluster's IAM role need.
fn redshift_setup_sql(user: &str, database: &str, schema: Option<&str>) -> String {
    let user_ident = sql::ident(user);
    let database_ident = sql::ident(database);
    let mut text = String::new();
    let _ = writeln!(
        text,
        "-- Run as the cluster's admin user. Replace the password (8 to 64 characters with an upper-case letter,\n\
         -- a lower-case letter and a digit) and give it to tracktable through warehouse.password_env."
    );
    let _ = writeln!(text, "CREATE USER {user_ident} PASSWORD 'Change-me-1';");
    let _ = writeln!(
        text,
        "GRANT TEMP ON DATABASE {database_ident} TO {user_ident};"
    );
    schema_grant(&mut text, &user_ident, database, schema);
    let _ = write!(
        text,
        "-- Staging (warehouse.staging): tracktable writes each load's gzip CSV under the prefix and
-- removes it after the commit, so the credentials tracktable runs with need, on
-- arn:aws:s3:::BUCKET/PREFIX*: s3:PutObject, s3:GetObject, s3:DeleteObject.
-- The cluster reads the same objects in COPY: attach an IAM role to the cluster
-- (aws redshift modify-cluster-iam-roles --cluster-identifier CLUSTER --add-iam-roles ROLE_ARN)
-- allowing s3:GetObject on arn:aws:s3:::BUCKET/PREFIX* and s3:ListBucket on arn:aws:s3:::BUCKET,
-- and name it in warehouse.staging.iam_role. Keep the bucket in the cluster's region.
-- Optional: a lifecycle rule expiring PREFIX after a few days sweeps what a crash left behind.
"
    );
    text
}

/// One requirement of a pipeline, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub what: String,
    /// `None` when it passed; otherwise what to do about it.
    pub fix: Option<String>,
    /// A pass that deserves attention: what to consider.
    pub warning: Option<String>,
}

/// The checks as `check` prints them: `pass`, `warn` or `FAIL` and what, one line
/// each, a failure's fix on the next.
pub fn report(checks: &[Check]) -> String {
    let mut text = String::new();
    for check in checks {
        let _ = match (&check.fix, &check.warning) {
            (None, None) => writeln!(text, "pass  {}", check.what),
            (None, Some(warning)) => writeln!(text, "warn  {} {warning}", check.what),
            (Some(fix), _) => writeln!(text, "FAIL  {}\n      fix: {fix}", check.what),
        };
    }
    text
}

fn check_dir_source(
    checks: &mut Vec<Check>,
    path: &std::path::Path,
    state_dir: Option<&std::path::Path>,
) {
    let what = format!("source directory {} is readable", path.display());
    let readable = crate::source::check_exists(&crate::config::SourceFile::Dir {
        path: path.to_owned(),
        state_dir: None,
        poll_interval: std::time::Duration::ZERO,
    })
    .map_err(|error| error.to_string())
    .and_then(|()| {
        std::fs::read_dir(path)
            .map(drop)
            .map_err(|error| format!("{error}: fix its permissions"))
    });
    let exists = readable.is_ok();
    checks.push(Check {
        what,
        warning: None,
        fix: readable.err(),
    });
    if exists {
        let state = state_dir
            .map(std::path::Path::to_path_buf)
            .unwrap_or_else(|| path.join(crate::source::dir::STATE_DIR_NAME));
        checks.push(writable(&state));
    }
}

/// Checks everything the pipeline needs, leaving nothing behind. On Redshift this
/// includes one tiny load's whole path (stage, `COPY`, read back, clean up), its
/// statements sent to the cluster as written.
pub async fn check(pipeline: &Pipeline) -> Vec<Check> {
    check_with(pipeline, None).await
}

/// [`check`], reaching a Redshift warehouse through `redshift` (its statement
/// executor, staging and API clients) instead of one made from the pipeline file; no
/// effect on PostgreSQL.
pub async fn check_with(pipeline: &Pipeline, redshift: Option<RedshiftWarehouse>) -> Vec<Check> {
    let mut checks = Vec::new();
    if let SourceFile::Dir {
        path, state_dir, ..
    } = &pipeline.source
    {
        check_dir_source(&mut checks, path, state_dir.as_deref());
    }
    if let SourceFile::Sqs {
        queue_url,
        region,
        endpoint_url,
        ..
    } = &pipeline.source
    {
        checks.extend(queue::check(queue_url, region.as_deref(), endpoint_url.as_deref()).await);
    }

    let settings = |error: &dyn std::fmt::Display| Check {
        what: "warehouse settings".into(),
        warning: None,
        fix: Some(error.to_string()),
    };
    let redshift = match (&pipeline.warehouse, redshift) {
        (WarehouseFile::Redshift(_), Some(redshift)) => Some(redshift),
        (WarehouseFile::Redshift(file), None) => match RedshiftWarehouse::new(file) {
            Ok(redshift) => Some(redshift),
            Err(error) => {
                checks.push(settings(&error));
                return checks;
            }
        },
        (WarehouseFile::Postgres(_), _) => None,
    };
    if let (Some(redshift), WarehouseFile::Redshift(file)) = (&redshift, &pipeline.warehouse) {
        checks.push(check_staging(&file.staging, &redshift.staging_client().await).await);
    }
    let warehouse = match &redshift {
        Some(redshift) => redshift.connection().clone(),
        None => match connection(&pipeline.warehouse) {
            Ok((warehouse, _)) => warehouse,
            Err(error) => {
                checks.push(settings(&error));
                return checks;
            }
        },
    };
    let login = match redshift.as_ref().and_then(RedshiftWarehouse::iam) {
        Some(iam) => {
            let obtained = iam.credentials().await;
            checks.push(Check {
                what: format!("get temporary warehouse credentials ({})", iam.action()),
                warning: None,
                fix: obtained.as_ref().err().map(ToString::to_string),
            });
            match obtained {
                Ok(login) => Some(login),
                Err(_) => return checks,
            }
        }
        None => None,
    };
    let connected = match &login {
        Some(login) => warehouse.connect_as(&login.user, &login.password).await,
        None => warehouse.connect().await,
    };
    let client = match connected {
        Ok(client) => {
            checks.push(Check {
                what: "connect to the warehouse".into(),
                warning: None,
                fix: None,
            });
            client
        }
        Err(error) => {
            checks.push(Check {
                what: "connect to the warehouse".into(),
                warning: None,
                // A password Redshift keeps as a SHA-256 hash has its own fix.
                fix: Some(match &error {
                    crate::warehouse::postgres::PostgresError::DigestPassword { .. } => {
                        error.to_string()
                    }
                    _ => format!("{error}: check warehouse.url, the password variable, and that the server accepts this host"),
                }),
            });
            return checks;
        }
    };
    let schema = warehouse.schema();
    let privileges = client
        .query_one(
            "SELECT current_user::text, current_database()::text, \
             has_database_privilege(current_database(), 'TEMPORARY'), \
             has_database_privilege(current_database(), 'CREATE'), \
             EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1), \
             COALESCE((SELECT has_schema_privilege(oid, 'USAGE') AND has_schema_privilege(oid, 'CREATE') FROM pg_namespace WHERE nspname = $1), false), \
             COALESCE((SELECT usesuper FROM pg_user WHERE usename = current_user), false)",
            &[&schema],
        )
        .await;
    let row = match privileges {
        Ok(row) => row,
        Err(error) => {
            checks.push(Check {
                what: "read privileges".into(),
                warning: None,
                fix: Some(error.to_string()),
            });
            return checks;
        }
    };
    let user: String = row.get(0);
    let database: String = row.get(1);
    let temporary: bool = row.get(2);
    let create_db: bool = row.get(3);
    let schema_exists: bool = row.get(4);
    let schema_rights: bool = row.get(5);
    let superuser: bool = row.get(6);
    let grant = |what: &str| format!("as a superuser: GRANT {what} TO {}", sql::ident(&user));
    checks.push(Check {
        what: format!("create temporary staging tables in {database}"),
        warning: None,
        fix: (!temporary)
            .then(|| grant(&format!("TEMPORARY ON DATABASE {}", sql::ident(&database)))),
    });
    if schema_exists {
        checks.push(Check {
            what: format!("create and alter tables in schema {schema}"),
            warning: None,
            fix: (!schema_rights)
                .then(|| grant(&format!("USAGE, CREATE ON SCHEMA {}", sql::ident(schema)))),
        });
    } else {
        checks.push(Check {
            what: format!("create schema {schema}"),
            warning: None,
            fix: (!create_db)
                .then(|| grant(&format!("CREATE ON DATABASE {}", sql::ident(&database)))),
        });
    }
    checks.push(Check {
        what: format!("loader user {user}"),
        fix: None,
        warning: superuser.then(|| {
            "is a superuser: fine to try tracktable, but load production data as a dedicated \
             user with only these privileges (`tracktable setup-sql`)"
                .to_owned()
        }),
    });
    if let Some(redshift) = &redshift {
        checks.extend(redshift.round_trip().await.into_iter().map(|step| Check {
            what: step.what,
            warning: None,
            fix: step.fix,
        }));
    }
    checks
}

/// The warehouse's connection (PostgreSQL, or Redshift over the same protocol), and
/// for Redshift with `auth = "iam"` where its temporary credentials come from.
fn connection(
    warehouse: &WarehouseFile,
) -> Result<(PostgresWarehouse, Option<IamAuth>), AdminError> {
    match warehouse {
        WarehouseFile::Postgres(config) => Ok((PostgresWarehouse::new(config)?, None)),
        WarehouseFile::Redshift(config) => Ok((
            PostgresWarehouse::new(&crate::config::PostgresFile {
                url: config.url.clone(),
                password_env: config.password_env.clone(),
                schema: config.schema.clone(),
                sslmode: config.sslmode,
                sslrootcert: config.sslrootcert.clone(),
            })?,
            IamAuth::new(config)?,
        )),
    }
}

/// A new connection to the warehouse, signing in with temporary credentials first
/// when `iam` is set.
async fn open(
    warehouse: &PostgresWarehouse,
    iam: Option<&IamAuth>,
) -> Result<tokio_postgres::Client, AdminError> {
    Ok(match iam {
        Some(iam) => {
            let login = iam.credentials().await?;
            warehouse.connect_as(&login.user, &login.password).await?
        }
        None => warehouse.connect().await?,
    })
}

/// Redshift: the staging prefix takes, returns and gives up an object, through `s3`.
async fn check_staging(staging: &crate::config::StagingFile, s3: &aws_sdk_s3::Client) -> Check {
    let what = format!(
        "write, read and delete under s3://{}/{}",
        staging.bucket, staging.prefix
    );
    let key = format!("{}.tracktable-check", staging.prefix);
    let result = async {
        s3.put_object()
            .bucket(&staging.bucket)
            .key(&key)
            .body(aws_sdk_s3::primitives::ByteStream::from_static(b"ok"))
            .send()
            .await
            .map_err(|e| format!("PutObject: {}", aws_sdk_s3::error::DisplayErrorContext(e)))?;
        s3.get_object()
            .bucket(&staging.bucket)
            .key(&key)
            .send()
            .await
            .map_err(|e| format!("GetObject: {}", aws_sdk_s3::error::DisplayErrorContext(e)))?;
        s3.delete_object()
            .bucket(&staging.bucket)
            .key(&key)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "DeleteObject: {}",
                    aws_sdk_s3::error::DisplayErrorContext(e)
                )
            })?;
        Ok::<(), String>(())
    }
    .await;
    Check {
        what,
        warning: None,
        fix: result.err().map(|error| {
            format!("{error}: grant s3:PutObject, s3:GetObject and s3:DeleteObject on the prefix (see `tracktable setup-sql --dialect redshift`)")
        }),
    }
}

/// Whether tracktable could create and write `dir`, found without creating it: a probe
/// file is written and removed in `dir`, or in its nearest existing ancestor.
fn writable(dir: &Path) -> Check {
    let what = format!("state directory {} is writable", dir.display());
    let existing = dir
        .ancestors()
        .find(|ancestor| ancestor.is_dir())
        .unwrap_or(dir);
    let probe = existing.join(".tracktable-check");
    let result = std::fs::write(&probe, b"ok").and_then(|()| std::fs::remove_file(&probe));
    Check {
        what,
        warning: None,
        fix: result
            .err()
            .map(|error| format!("{error}: create it or fix its permissions")),
    }
}

/// One table tracktable created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableReport {
    pub name: String,
    pub rows: i64,
    /// (column, SQL type) in table order.
    pub columns: Vec<(String, String)>,
    /// Redshift: megabytes on disk and percent of the cluster's space.
    pub disk: Option<(i64, String)>,
}

/// Redshift slows down above this share of its disk in use.
pub const DISK_WARNING_PERCENT: f64 = 75.0;

/// The warehouse's disk as a whole: percent in use, or why it could not be read.
pub type ClusterDisk = Option<Result<f64, String>>;

/// The tables of the pipeline's schema with their columns and row counts, and on
/// Redshift their disk use and the cluster's.
pub async fn schema_report(
    pipeline: &Pipeline,
) -> Result<(String, Vec<TableReport>, ClusterDisk), AdminError> {
    let (warehouse, iam) = connection(&pipeline.warehouse)?;
    let client = open(&warehouse, iam.as_ref()).await?;
    let schema = warehouse.schema().to_owned();
    let columns = client
        .query(
            "SELECT table_name::text, column_name::text, \
             CASE WHEN data_type = 'character varying' THEN 'varchar(' || character_maximum_length || ')' \
                  WHEN data_type = 'timestamp without time zone' THEN 'timestamp' ELSE data_type END \
             FROM information_schema.columns WHERE table_schema = $1 ORDER BY table_name, ordinal_position",
            &[&schema],
        )
        .await?;
    let mut tables: Vec<TableReport> = Vec::new();
    for row in columns {
        let table: String = row.get(0);
        if tables.last().is_none_or(|last| last.name != table) {
            tables.push(TableReport {
                name: table,
                rows: 0,
                columns: Vec::new(),
                disk: None,
            });
        }
        if let Some(last) = tables.last_mut() {
            last.columns.push((row.get(1), row.get(2)));
        }
    }
    for table in &mut tables {
        table.rows = client
            .query_one(
                &format!(
                    "SELECT count(*) FROM {}",
                    sql::qualified(&schema, &table.name)
                ),
                &[],
            )
            .await?
            .get(0);
    }
    let on_redshift = matches!(&pipeline.warehouse, WarehouseFile::Redshift(_));
    if !on_redshift {
        return Ok((schema, tables, None));
    }
    // svv_table_info: size in 1 MB blocks, pct_used of the cluster's space.
    match client
        .query(
            "SELECT \"table\"::text, size::bigint, pct_used::text FROM svv_table_info WHERE \"schema\" = $1",
            &[&schema],
        )
        .await
    {
        Ok(rows) => {
            for row in rows {
                let name: String = row.get(0);
                if let Some(table) = tables.iter_mut().find(|table| table.name == name) {
                    table.disk = Some((row.get(1), row.get(2)));
                }
            }
        }
        Err(error) => tracing::warn!(error = %error, "cannot read svv_table_info"),
    }
    let cluster = match client
        .query_one(
            "SELECT (sum(used)::float8 * 100 / NULLIF(sum(capacity), 0)::float8) FROM stv_partitions WHERE part_begin = 0",
            &[],
        )
        .await
    {
        Ok(row) => row
            .get::<_, Option<f64>>(0)
            .ok_or_else(|| "stv_partitions is empty (Redshift Serverless reports no partitions)".to_owned()),
        Err(error) => Err(format!(
            "{error}: stv_partitions is visible to superusers only; run `tracktable schema` with one to see the cluster's disk"
        )),
    };
    Ok((schema, tables, Some(cluster)))
}

/// `schema` as text: one block per table, the column budget in the header.
/// The schema report. `max_tables`/`max_columns`: the tracking plan's caps, which
/// replace the warehouse's 1600-column limit as the budget when set.
pub fn format_schema(
    schema: &str,
    tables: &[TableReport],
    max_tables: Option<usize>,
    max_columns: Option<usize>,
    cluster_disk: &ClusterDisk,
) -> String {
    let mut text = String::new();
    match cluster_disk {
        None => {}
        Some(Ok(percent)) if *percent > DISK_WARNING_PERCENT => {
            let _ = writeln!(
                text,
                "WARNING: the cluster's disk is {percent:.1}% used. Redshift slows down above {DISK_WARNING_PERCENT:.0}%: \
                 drop or unload old data, VACUUM DELETE ONLY, or resize the cluster."
            );
        }
        Some(Ok(percent)) => {
            let _ = writeln!(text, "cluster disk: {percent:.1}% used");
        }
        Some(Err(why)) => {
            let _ = writeln!(text, "cluster disk: unknown ({why})");
        }
    }
    let counted = tables
        .iter()
        .filter(|table| !table.name.starts_with('_'))
        .count();
    match max_tables {
        Some(cap) => {
            let warning = if counted * 100 >= cap * 75 {
                "  <- nearing the tracking plan's table cap"
            } else {
                ""
            };
            let _ = writeln!(
                text,
                "schema {schema}: {} tables ({counted} of the tracking plan's cap of {cap}; bookkeeping tables aside){warning}",
                tables.len()
            );
        }
        None => {
            let _ = writeln!(text, "schema {schema}: {} tables", tables.len());
        }
    }
    let budget = max_columns.map_or(MAX_COLUMNS, |cap| cap as i64);
    let budget_name = if max_columns.is_some() {
        "the tracking plan's cap"
    } else {
        "the limit"
    };
    for table in tables {
        let used = table.columns.len() as i64;
        let percent = used * 100 / budget.max(1);
        let warning = if percent >= 75 {
            format!("  <- nearing {budget_name}: consider a tracking plan")
        } else {
            String::new()
        };
        let disk = table
            .disk
            .as_ref()
            .map(|(mb, share)| format!(", {mb} MB on disk ({share}% of the cluster)"))
            .unwrap_or_default();
        let _ = writeln!(
            text,
            "\n{} — {} rows{disk}, {used}/{budget} columns ({percent}%){warning}",
            table.name, table.rows
        );
        for (column, column_type) in &table.columns {
            let _ = writeln!(text, "  {column:<48} {column_type}");
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setup_sql_for_a_dedicated_user() {
        let text = setup_sql(
            Dialect::Postgres,
            "tracktable_loader",
            "analytics",
            Some("clickstream_web"),
        )
        .unwrap();
        assert!(text.contains("CREATE ROLE \"tracktable_loader\" WITH LOGIN PASSWORD"));
        assert!(text.contains(
            "GRANT CONNECT, TEMPORARY ON DATABASE \"analytics\" TO \"tracktable_loader\";"
        ));
        assert!(text.contains(
            "CREATE SCHEMA IF NOT EXISTS \"clickstream_web\" AUTHORIZATION \"tracktable_loader\";"
        ));
        let without_schema = setup_sql(Dialect::Postgres, "loader", "analytics", None).unwrap();
        assert!(without_schema.contains("GRANT CREATE ON DATABASE \"analytics\" TO \"loader\";"));
        assert!(setup_sql(Dialect::Redshift, "x\"; DROP", "analytics", None).is_err());
        assert!(setup_sql(Dialect::Postgres, "loader", "9db", None).is_err());
        let redshift = setup_sql(Dialect::Redshift, "loader", "analytics", None).unwrap();
        assert!(redshift.contains("CREATE USER \"loader\" PASSWORD"));
        assert!(redshift.contains("GRANT CREATE ON DATABASE \"analytics\" TO \"loader\";"));
        assert!(redshift.contains("s3:GetObject") && redshift.contains("iam_role"));
    }

    #[test]
    fn schema_report_warns_near_the_column_limit() {
        let wide = TableReport {
            name: "wide".into(),
            rows: 3,
            columns: (0..1300)
                .map(|i| (format!("c{i}"), "bigint".into()))
                .collect(),
            disk: None,
        };
        let narrow = TableReport {
            name: "narrow".into(),
            rows: 1,
            columns: vec![("message_id".into(), "text".into())],
            disk: None,
        };
        let text = format_schema("s", &[wide.clone(), narrow.clone()], None, None, &None);
        assert!(text.contains("wide — 3 rows, 1300/1600 columns (81%)  <- nearing the limit"));
        assert!(text.contains("narrow — 1 rows, 1/1600 columns (0%)\n"));

        let capped = format_schema(
            "s",
            &[wide.clone(), narrow.clone()],
            Some(2),
            Some(1500),
            &None,
        );
        let mut on_disk = narrow.clone();
        on_disk.disk = Some((120, "0.40".into()));
        let full = format_schema("s", &[on_disk.clone()], None, None, &Some(Ok(81.5)));
        assert!(
            full.starts_with("WARNING: the cluster's disk is 81.5% used"),
            "{full}"
        );
        assert!(
            full.contains("120 MB on disk (0.40% of the cluster)"),
            "{full}"
        );
        let fine = format_schema("s", &[on_disk], None, None, &Some(Ok(40.0)));
        assert!(fine.starts_with("cluster disk: 40.0% used"), "{fine}");
        assert!(
            capped.contains("2 of the tracking plan's cap of 2;"),
            "{capped}"
        );
        assert!(
            capped.contains("<- nearing the tracking plan's table cap"),
            "{capped}"
        );
        assert!(
            capped.contains(
                "wide — 3 rows, 1300/1500 columns (86%)  <- nearing the tracking plan's cap"
            ),
            "{capped}"
        );
    }
}
