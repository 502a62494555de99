//! sql: every statement the Redshift loader sends — the whole dialect in one place.
//!
//! What differs from PostgreSQL (`warehouse::sql`): no `ON CONFLICT` (merges are
//! delete-then-insert), one column per `ALTER TABLE ... ADD COLUMN` and no `IF NOT
//! EXISTS` there, no advisory locks, no arrays or `unnest`, no `RETURNING`, bulk data
//! only by `COPY ... FROM 's3://...'`, `GETDATE()` for the current time, and table
//! attributes (`DISTSTYLE`, `SORTKEY`). Statements go over the simple-query
//! protocol, so the few values that enter SQL text (object names, batch numbers) are
//! written as escaped literals by [`literal`]; row data never does: it travels through
//! staged CSV.

use crate::route::{ColumnType, Timestamp, own};
use crate::warehouse::sql::{has_load_time, ident, is_latest, key_column, qualified};

pub use crate::warehouse::sql::{DISCARD_COLUMNS, DISCARDS_TABLE, LOADS_TABLE, OBJECTS_TABLE};

/// Width of the key column (`message_id`, or `id` of `users`/`accounts`). Longer keys
/// cannot be stored: such rows go to `_discards` whole.
pub const KEY_WIDTH: usize = 1024;

/// Redshift's widest varchar, in bytes.
pub const MAX_VARCHAR: usize = 65535;

/// Widths of the bookkeeping tables' text columns: names (Redshift's identifiers are at
/// most 127 bytes), discard reasons, object names. A discard's fields are cut to fit.
pub const NAME_WIDTH: usize = 127;
pub const REASON_WIDTH: usize = 1024;
pub const OBJECT_WIDTH: usize = 2048;

/// The staging tables (temporary, per session). A leading `_` cannot clash with an
/// event's table: the router never names one so.
pub const STAGE: &str = "_tracktable_stage";
pub const DISCARD_STAGE: &str = "_tracktable_discard_stage";
/// `check`'s temporary table, which its test object is `COPY`ed into.
pub const CHECK_TABLE: &str = "_tracktable_check";

/// The discard staging table of the `index`th table of a shared load transaction:
/// each table's new discards wait in their own until the transaction inserts them.
pub fn discard_stage(index: usize) -> String {
    match index {
        0 => DISCARD_STAGE.to_owned(),
        _ => format!("{DISCARD_STAGE}_{index}"),
    }
}

/// Transaction control. DDL runs outside any transaction (Redshift refuses some of it
/// inside one); a load's data statements run between these.
pub const BEGIN: &str = "BEGIN";
pub const COMMIT: &str = "COMMIT";
pub const ROLLBACK: &str = "ROLLBACK";

/// The NULL marker in staged CSV; every non-null text field is quoted, so a value that
/// reads `\N` is written `"\N"` and stays text.
pub const CSV_NULL: &str = "\\N";

/// A string literal. Redshift's literals take backslash escapes (as PostgreSQL's did
/// before `standard_conforming_strings`), so backslashes are doubled as well as quotes.
pub fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "''"))
}

pub fn schema_exists(schema: &str) -> String {
    format!(
        "SELECT 1 FROM pg_namespace WHERE nspname = {}",
        literal(schema)
    )
}

pub fn create_schema(schema: &str) -> String {
    format!("CREATE SCHEMA IF NOT EXISTS {}", ident(schema))
}

/// Bookkeeping tables. Redshift does not enforce keys, so the merges below, not the
/// constraints, keep them free of duplicates.
pub fn create_bookkeeping(schema: &str) -> Vec<String> {
    vec![
        format!(
            "CREATE TABLE IF NOT EXISTS {} (batch bigint NOT NULL, table_name varchar({NAME_WIDTH}) NOT NULL, \
             rows_loaded bigint NOT NULL, duplicates bigint NOT NULL, discards bigint NOT NULL, \
             loaded_at timestamp NOT NULL DEFAULT GETDATE())",
            qualified(schema, LOADS_TABLE)
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {} (table_name varchar({NAME_WIDTH}) NOT NULL, column_name varchar({NAME_WIDTH}) NOT NULL, \
             message_id varchar({KEY_WIDTH}) NOT NULL, value varchar({MAX_VARCHAR}), reason varchar({REASON_WIDTH}) NOT NULL, \
             object varchar({OBJECT_WIDTH}), line bigint, received_at timestamp, \
             discarded_at timestamp NOT NULL DEFAULT GETDATE())",
            qualified(schema, DISCARDS_TABLE)
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {} (object varchar({OBJECT_WIDTH}) NOT NULL, content varchar(1024) NOT NULL, \
             loaded_at timestamp NOT NULL DEFAULT GETDATE())",
            qualified(schema, OBJECTS_TABLE)
        ),
    ]
}

pub fn column_type(column_type: ColumnType) -> String {
    column_type.sql_name()
}

/// A new table with every column its first batch needs. Sorted by `received_at` when
/// it has one (every event table does), distribution left to Redshift. Encodings too:
/// `ENCODE AUTO` is Redshift's default for a table whose columns name none, so it is
/// not spelled out (sqlparser's Redshift grammar does not take the clause).
pub fn create_table(schema: &str, table: &str, columns: &[(&str, ColumnType)]) -> String {
    let newest = if is_latest(table) {
        ", \"timestamp\" timestamp"
    } else {
        ""
    };
    let load_time = if has_load_time(table) {
        format!(", {} timestamp DEFAULT GETDATE()", ident(own::LOAD_TIME))
    } else {
        String::new()
    };
    let listed: String = columns
        .iter()
        .filter(|(name, _)| !(is_latest(table) && *name == "timestamp"))
        .filter(|(name, _)| !(has_load_time(table) && *name == own::LOAD_TIME))
        .map(|(name, column_type)| format!(", {} {}", ident(name), self::column_type(*column_type)))
        .collect();
    let sort = if columns.iter().any(|(name, _)| *name == "received_at") {
        " SORTKEY (\"received_at\")"
    } else {
        ""
    };
    let key = ident(key_column(table));
    format!(
        "CREATE TABLE IF NOT EXISTS {} ({key} varchar({KEY_WIDTH}) NOT NULL{newest}{load_time}{listed}, PRIMARY KEY ({key})) \
         DISTSTYLE AUTO{sort}",
        qualified(schema, table),
    )
}

/// One column per statement: Redshift allows no more, and no `IF NOT EXISTS`.
pub fn add_column(schema: &str, table: &str, column: &str, column_type: ColumnType) -> String {
    format!(
        "ALTER TABLE {} ADD COLUMN {} {}",
        qualified(schema, table),
        ident(column),
        self::column_type(column_type)
    )
}

/// Widening a varchar in place (Redshift: only varchar, only wider, and not inside a
/// transaction block).
pub fn widen_varchar(schema: &str, table: &str, column: &str, width: u32) -> String {
    format!(
        "ALTER TABLE {} ALTER COLUMN {} TYPE varchar({width})",
        qualified(schema, table),
        ident(column)
    )
}

/// The columns of a table: (name, data_type, character_maximum_length).
pub fn select_columns(schema: &str, table: &str) -> String {
    format!(
        "SELECT column_name, data_type, character_maximum_length FROM information_schema.columns \
         WHERE table_schema = {} AND table_name = {}",
        literal(schema),
        literal(table)
    )
}

/// Tables in the schema that count against the tracking plan's cap.
pub fn count_tables(schema: &str) -> String {
    format!(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = {} \
         AND table_type = 'BASE TABLE' AND left(table_name, 1) <> '_'",
        literal(schema)
    )
}

pub fn drop_stage(stage: &str) -> String {
    format!("DROP TABLE IF EXISTS {}", ident(stage))
}

/// A session-local staging table shaped like `schema.table`.
pub fn create_stage(schema: &str, table: &str, stage: &str) -> String {
    format!(
        "CREATE TEMP TABLE {} (LIKE {} INCLUDING DEFAULTS)",
        ident(stage),
        qualified(schema, table)
    )
}

/// `check`'s temporary table: the test rows' columns, one of each kind of value the
/// loader's CSV writes that reads back as the same text (a key, quoted text, NULL, a
/// timestamp).
pub fn create_check_table(table: &str) -> String {
    format!(
        "CREATE TEMP TABLE {} (\"id\" bigint, \"text\" varchar(256), \"at\" timestamp)",
        ident(table)
    )
}

/// `check`'s test rows as they were copied, in the order written.
pub fn select_check_rows(table: &str) -> String {
    format!(
        "SELECT \"id\", \"text\", \"at\" FROM {} ORDER BY \"id\"",
        ident(table)
    )
}

/// The columns of [`create_check_table`], in order.
pub const CHECK_COLUMNS: [&str; 3] = ["id", "text", "at"];

/// How `COPY` may read the staging bucket.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// The role set as the cluster's default: `IAM_ROLE default`, a keyword.
    DefaultIamRole,
    /// A role by its ARN.
    IamRole(String),
    /// An access key pair, with the session token temporary keys carry.
    Keys {
        id: String,
        secret: String,
        token: Option<String>,
    },
}

impl Credentials {
    /// The role `iam_role` names: `default` (any case) is the cluster's default role.
    pub fn role(iam_role: &str) -> Credentials {
        if iam_role.trim().eq_ignore_ascii_case("default") {
            Credentials::DefaultIamRole
        } else {
            Credentials::IamRole(iam_role.to_owned())
        }
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::DefaultIamRole => write!(f, "DefaultIamRole"),
            Credentials::IamRole(role) => write!(f, "IamRole({role})"),
            Credentials::Keys { id, token, .. } => {
                let token = if token.is_some() { ", ***" } else { "" };
                write!(f, "Keys({id}, ***{token})")
            }
        }
    }
}

/// Where a `COPY` reads: one object, or a manifest listing several.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopySource {
    /// `s3://bucket/key`.
    pub url: String,
    pub manifest: bool,
}

/// `COPY stage (columns) FROM 's3://...'` of gzip CSV with [`CSV_NULL`] as NULL;
/// `region` is the bucket's, when the pipeline names it.
pub fn copy_from_s3(
    stage: &str,
    columns: &[&str],
    source: &CopySource,
    credentials: &Credentials,
    region: Option<&str>,
    accept_invalid_chars: Option<&str>,
) -> String {
    let list: Vec<String> = columns.iter().map(|c| ident(c)).collect();
    let credentials = match credentials {
        Credentials::DefaultIamRole => " IAM_ROLE default".to_owned(),
        Credentials::IamRole(role) => format!(" IAM_ROLE {}", literal(role)),
        Credentials::Keys { id, secret, token } => format!(
            " ACCESS_KEY_ID {} SECRET_ACCESS_KEY {}{}",
            literal(id),
            literal(secret),
            token
                .as_deref()
                .map(|token| format!(" SESSION_TOKEN {}", literal(token)))
                .unwrap_or_default()
        ),
    };
    let region = region
        .map(|region| format!(" REGION {}", literal(region)))
        .unwrap_or_default();
    let manifest = if source.manifest { " MANIFEST" } else { "" };
    let invalid = accept_invalid_chars
        .map(|replacement| format!(" ACCEPTINVCHARS AS {}", literal(replacement)))
        .unwrap_or_default();
    format!(
        "COPY {} ({}) FROM {}{credentials}{region}{manifest} FORMAT AS CSV NULL AS {} GZIP \
         TIMEFORMAT 'auto'{invalid} COMPUPDATE OFF STATUPDATE OFF",
        ident(stage),
        list.join(", "),
        literal(&source.url),
        literal(CSV_NULL),
    )
}

/// The options whose literal is a secret.
const SECRETS: [&str; 2] = [" SECRET_ACCESS_KEY '", " SESSION_TOKEN '"];

/// A statement as it may be logged: the secret access key and session token masked.
pub fn masked(statement: &str) -> String {
    let mut text = statement.to_owned();
    for option in SECRETS {
        let Some(start) = text.find(option) else {
            continue;
        };
        let value = start + option.len();
        // The literal ends at a quote that is not doubled.
        let bytes = text.as_bytes();
        let mut end = value;
        while end < bytes.len() {
            if bytes[end] == b'\'' {
                if bytes.get(end + 1) == Some(&b'\'') {
                    end += 2;
                    continue;
                }
                break;
            }
            end += 1;
        }
        text.replace_range(value..end, "***");
    }
    text
}

/// Removes rows whose key is in the stage (the first half of the merge; the count is
/// how many staged rows were already loaded). With `since`, only stored rows received
/// since then are looked at: the table is sorted by `received_at`, so the delete reads
/// the blocks of that range, not the whole table.
pub fn delete_staged_keys(
    schema: &str,
    table: &str,
    stage: &str,
    since: Option<Timestamp>,
) -> String {
    let key = ident(key_column(table));
    let t = ident(table);
    let bound = since.map_or(String::new(), |since| {
        format!(
            " AND {t}.\"received_at\" >= {}::timestamp",
            literal(&timestamp_text(since))
        )
    });
    format!(
        "DELETE FROM {} USING {stage} WHERE {t}.{key} = {stage}.{key}{bound}",
        qualified(schema, table),
        stage = ident(stage),
    )
}

/// `2024-01-02 03:04:05.000000`: a timestamp as Redshift reads a `timestamp` literal.
fn timestamp_text(at: Timestamp) -> String {
    at.to_string()
        .replace('T', " ")
        .trim_end_matches('Z')
        .to_owned()
}

/// `users`/`accounts`: drops staged rows older than the stored row of their id (newest
/// by `timestamp`, a missing one counting as oldest, then by `message_id`), so the
/// delete-then-insert that follows keeps the newest call whatever the load order.
pub fn drop_stale_staged(schema: &str, table: &str, stage: &str) -> String {
    let key = ident(key_column(table));
    let stage = ident(stage);
    let when =
        |row: &str| format!("COALESCE({row}.\"timestamp\", '0001-01-01 00:00:00'::timestamp)");
    format!(
        "DELETE FROM {stage} USING {} AS stored WHERE stored.{key} = {stage}.{key} AND ({newer} > {mine} \
         OR ({newer} = {mine} AND stored.\"message_id\" > {stage}.\"message_id\"))",
        qualified(schema, table),
        newer = when("stored"),
        mine = when(&stage),
    )
}

pub fn insert_from_stage(schema: &str, table: &str, stage: &str, columns: &[&str]) -> String {
    let list: Vec<String> = columns.iter().map(|c| ident(c)).collect();
    let list = list.join(", ");
    format!(
        "INSERT INTO {} ({list}) SELECT {list} FROM {}",
        qualified(schema, table),
        ident(stage)
    )
}

/// Drops the staged discards `_discards` already holds (a replay's), before the load's
/// transaction: `_discards` is read there, in a statement of its own, and only written
/// in the transaction, so loads of different tables never read what another writes
/// (Redshift's error 1023). No other load can add this table's discards in between:
/// one loader owns a table at a time.
pub fn drop_known_discards(schema: &str, stage: &str) -> String {
    format!(
        "DELETE FROM {s} USING {} AS kept WHERE kept.table_name = {s}.table_name \
         AND kept.column_name = {s}.column_name AND kept.message_id = {s}.message_id",
        qualified(schema, DISCARDS_TABLE),
        s = ident(stage)
    )
}

/// The staged discards by reason (Redshift has no `RETURNING`).
pub fn count_staged_discards(stage: &str) -> String {
    format!(
        "SELECT reason, count(*) FROM {} GROUP BY reason",
        ident(stage)
    )
}

/// Within the load's transaction: the staged discards, all new, into `_discards`,
/// without reading it.
pub fn insert_discards(schema: &str, stage: &str) -> String {
    let list: Vec<String> = DISCARD_COLUMNS.iter().map(|c| ident(c)).collect();
    let list = list.join(", ");
    format!(
        "INSERT INTO {} ({list}) SELECT {list} FROM {}",
        qualified(schema, DISCARDS_TABLE),
        ident(stage),
    )
}

pub fn create_discard_stage(schema: &str, stage: &str) -> String {
    create_stage(schema, DISCARDS_TABLE, stage)
}

pub fn record_load(
    schema: &str,
    batch: u64,
    table: &str,
    rows_loaded: u64,
    duplicates: u64,
    discards: u64,
) -> String {
    format!(
        "INSERT INTO {} (batch, table_name, rows_loaded, duplicates, discards) VALUES ({batch}, {}, {rows_loaded}, {duplicates}, {discards})",
        qualified(schema, LOADS_TABLE),
        literal(table),
    )
}

/// Of `objects` (name, content), those recorded as loaded.
pub fn select_loaded_objects(schema: &str, objects: &[(String, String)]) -> String {
    let pairs: Vec<String> = objects
        .iter()
        .map(|(object, content)| {
            format!(
                "(object = {} AND content = {})",
                literal(object),
                literal(content)
            )
        })
        .collect();
    format!(
        "SELECT DISTINCT object, content FROM {} WHERE {}",
        qualified(schema, OBJECTS_TABLE),
        pairs.join(" OR ")
    )
}

/// What the load-error table says about the session's last `COPY` (provisioned
/// clusters keep `stl_load_errors`): the staged file, its physical line, the column,
/// the field's raw text, Redshift's error code and reason, first line first.
/// `pg_last_copy_id()` still names a COPY that failed on its data after the
/// transaction rolled back.
pub const SELECT_LOAD_ERRORS: &str = "SELECT TRIM(filename), line_number, TRIM(colname), TRIM(raw_field_value), err_code, \
     TRIM(err_reason) FROM stl_load_errors WHERE query = pg_last_copy_id() ORDER BY line_number";

/// [`SELECT_LOAD_ERRORS`] where `stl_load_errors` does not exist (Redshift
/// Serverless): the session's latest COPY in `sys_load_error_detail`, which keeps no
/// raw field text.
pub const SELECT_LOAD_ERROR_DETAIL: &str = "SELECT TRIM(file_name), line_number, TRIM(column_name), '', error_code, TRIM(error_message) \
     FROM sys_load_error_detail WHERE session_id = pg_backend_pid() AND query_id = \
     (SELECT max(query_id) FROM sys_load_error_detail WHERE session_id = pg_backend_pid()) ORDER BY line_number";

/// Records objects as loaded. Recording one twice leaves two equal rows, which the
/// lookup's `DISTINCT` makes harmless.
pub fn record_objects(schema: &str, objects: &[(String, String)]) -> String {
    let rows: Vec<String> = objects
        .iter()
        .map(|(object, content)| format!("({}, {})", literal(object), literal(content)))
        .collect();
    format!(
        "INSERT INTO {} (object, content) VALUES {}",
        qualified(schema, OBJECTS_TABLE),
        rows.join(", ")
    )
}

#[cfg(test)]
mod tests {
    //! One snapshot per statement family, built from hostile names and values: a
    //! reserved word, embedded quotes, backslashes (Redshift's literals take backslash
    //! escapes), a statement terminator and a comment, non-ASCII. Whatever the name, it
    //! must stay one quoted identifier, and every value one literal. `UPDATE_EXPECT=1
    //! cargo test` rewrites the snapshots after an intended change; review the diff
    //! like code. The statements of one whole load are also pinned, end to end, by
    //! `tests/golden/redshift_load.sql`.

    use expect_test::{Expect, expect};

    use super::*;

    const SCHEMA: &str = "sch\"ema";
    const TABLE: &str = "select";
    const HOSTILE: &str = "a\"; DROP TABLE x; --";
    const UNICODE: &str = "prix_€";
    const QUOTED: &str = "it's \\' OR 1=1; --";

    fn check(statements: &[String], expected: Expect) {
        expected.assert_eq(&(statements.join("\n") + "\n"));
    }

    #[test]
    fn the_check_round_trip() {
        check(
            &[
                create_check_table(CHECK_TABLE),
                select_check_rows(CHECK_TABLE),
                drop_stage(CHECK_TABLE),
            ],
            expect![[r#"
                CREATE TEMP TABLE "_tracktable_check" ("id" bigint, "text" varchar(256), "at" timestamp)
                SELECT "id", "text", "at" FROM "_tracktable_check" ORDER BY "id"
                DROP TABLE IF EXISTS "_tracktable_check"
            "#]],
        );
    }

    #[test]
    fn literals_escape_quotes_and_backslashes() {
        assert_eq!(literal("it's"), "'it''s'");
        assert_eq!(literal("a\\b"), "'a\\\\b'");
        assert_eq!(literal("\\N"), "'\\\\N'");
    }

    #[test]
    fn schema_and_bookkeeping() {
        let mut statements = vec![schema_exists(QUOTED), create_schema(SCHEMA)];
        statements.extend(create_bookkeeping(SCHEMA));
        check(
            &statements,
            expect![[r#"
            SELECT 1 FROM pg_namespace WHERE nspname = 'it''s \\'' OR 1=1; --'
            CREATE SCHEMA IF NOT EXISTS "sch""ema"
            CREATE TABLE IF NOT EXISTS "sch""ema"."_tracktable_loads" (batch bigint NOT NULL, table_name varchar(127) NOT NULL, rows_loaded bigint NOT NULL, duplicates bigint NOT NULL, discards bigint NOT NULL, loaded_at timestamp NOT NULL DEFAULT GETDATE())
            CREATE TABLE IF NOT EXISTS "sch""ema"."_discards" (table_name varchar(127) NOT NULL, column_name varchar(127) NOT NULL, message_id varchar(1024) NOT NULL, value varchar(65535), reason varchar(1024) NOT NULL, object varchar(2048), line bigint, received_at timestamp, discarded_at timestamp NOT NULL DEFAULT GETDATE())
            CREATE TABLE IF NOT EXISTS "sch""ema"."_tracktable_objects" (object varchar(2048) NOT NULL, content varchar(1024) NOT NULL, loaded_at timestamp NOT NULL DEFAULT GETDATE())
        "#]],
        );
    }

    #[test]
    fn catalogue_reads() {
        check(
            &[select_columns(SCHEMA, QUOTED), count_tables(QUOTED)],
            expect![[r#"
                SELECT column_name, data_type, character_maximum_length FROM information_schema.columns WHERE table_schema = 'sch"ema' AND table_name = 'it''s \\'' OR 1=1; --'
                SELECT count(*) FROM information_schema.tables WHERE table_schema = 'it''s \\'' OR 1=1; --' AND table_type = 'BASE TABLE' AND left(table_name, 1) <> '_'
            "#]],
        );
    }

    #[test]
    fn table_creation() {
        check(
            &[
                create_table(
                    SCHEMA,
                    TABLE,
                    &[
                        (HOSTILE, ColumnType::Varchar(64)),
                        ("received_at", ColumnType::Timestamp),
                        (UNICODE, ColumnType::Double),
                    ],
                ),
                // No `received_at`: no sort key.
                create_table(SCHEMA, TABLE, &[(HOSTILE, ColumnType::BigInt)]),
                // `users` always has `timestamp`, once, whatever the batch observed.
                create_table(SCHEMA, "users", &[("timestamp", ColumnType::Varchar(64))]),
                create_table(SCHEMA, "accounts", &[]),
            ],
            expect![[r#"
                CREATE TABLE IF NOT EXISTS "sch""ema"."select" ("id" varchar(1024) NOT NULL, "uuid_ts" timestamp DEFAULT GETDATE(), "a""; DROP TABLE x; --" varchar(64), "received_at" timestamp, "prix_€" double precision, PRIMARY KEY ("id")) DISTSTYLE AUTO SORTKEY ("received_at")
                CREATE TABLE IF NOT EXISTS "sch""ema"."select" ("id" varchar(1024) NOT NULL, "uuid_ts" timestamp DEFAULT GETDATE(), "a""; DROP TABLE x; --" bigint, PRIMARY KEY ("id")) DISTSTYLE AUTO
                CREATE TABLE IF NOT EXISTS "sch""ema"."users" ("id" varchar(1024) NOT NULL, "timestamp" timestamp, "uuid_ts" timestamp DEFAULT GETDATE(), PRIMARY KEY ("id")) DISTSTYLE AUTO
                CREATE TABLE IF NOT EXISTS "sch""ema"."accounts" ("id" varchar(1024) NOT NULL, "timestamp" timestamp, "uuid_ts" timestamp DEFAULT GETDATE(), PRIMARY KEY ("id")) DISTSTYLE AUTO
            "#]],
        );
    }

    #[test]
    fn column_changes_one_per_statement() {
        check(
            &[
                add_column(SCHEMA, TABLE, HOSTILE, ColumnType::Boolean),
                add_column(SCHEMA, TABLE, UNICODE, ColumnType::Varchar(256)),
                widen_varchar(SCHEMA, TABLE, HOSTILE, 65535),
            ],
            expect![[r#"
                ALTER TABLE "sch""ema"."select" ADD COLUMN "a""; DROP TABLE x; --" boolean
                ALTER TABLE "sch""ema"."select" ADD COLUMN "prix_€" varchar(256)
                ALTER TABLE "sch""ema"."select" ALTER COLUMN "a""; DROP TABLE x; --" TYPE varchar(65535)
            "#]],
        );
    }

    #[test]
    fn copy_names_its_source_credentials_and_format() {
        let names = ["message_id", HOSTILE, UNICODE];
        let one = CopySource {
            url: format!("s3://bucket/{QUOTED}/part-00000.csv.gz"),
            manifest: false,
        };
        let manifest = CopySource {
            url: "s3://bucket/p/manifest.json".into(),
            manifest: true,
        };
        let keys = Credentials::Keys {
            id: "AKIA".into(),
            // AWS secret keys are base64: letters, digits, `/` and `+`.
            secret: "wJalrXUtnFEMI/K7MDENG+s3cr3tEXAMPLEKEY".into(),
            token: None,
        };
        let temporary = Credentials::Keys {
            id: "ASIA".into(),
            secret: "s3cr3t/tmp".into(),
            token: Some("IQoJb3JpZ2luX2VjE+t0k3n=='x".into()),
        };
        let role = Credentials::role(&format!("arn:aws:iam::1:role/{QUOTED}"));
        assert_eq!(Credentials::role("default"), Credentials::DefaultIamRole);
        assert_eq!(Credentials::role("DEFAULT"), Credentials::DefaultIamRole);
        let copies = [
            copy_from_s3(STAGE, &names, &one, &role, None, None),
            copy_from_s3(STAGE, &names, &manifest, &keys, None, Some(QUOTED)),
            copy_from_s3(
                STAGE,
                &names,
                &one,
                &Credentials::role("default"),
                Some("eu-west-1"),
                None,
            ),
            copy_from_s3(STAGE, &names, &one, &temporary, Some(QUOTED), None),
        ];
        check(
            &copies,
            expect![[r#"
                COPY "_tracktable_stage" ("message_id", "a""; DROP TABLE x; --", "prix_€") FROM 's3://bucket/it''s \\'' OR 1=1; --/part-00000.csv.gz' IAM_ROLE 'arn:aws:iam::1:role/it''s \\'' OR 1=1; --' FORMAT AS CSV NULL AS '\\N' GZIP TIMEFORMAT 'auto' COMPUPDATE OFF STATUPDATE OFF
                COPY "_tracktable_stage" ("message_id", "a""; DROP TABLE x; --", "prix_€") FROM 's3://bucket/p/manifest.json' ACCESS_KEY_ID 'AKIA' SECRET_ACCESS_KEY 'wJalrXUtnFEMI/K7MDENG+s3cr3tEXAMPLEKEY' MANIFEST FORMAT AS CSV NULL AS '\\N' GZIP TIMEFORMAT 'auto' ACCEPTINVCHARS AS 'it''s \\'' OR 1=1; --' COMPUPDATE OFF STATUPDATE OFF
                COPY "_tracktable_stage" ("message_id", "a""; DROP TABLE x; --", "prix_€") FROM 's3://bucket/it''s \\'' OR 1=1; --/part-00000.csv.gz' IAM_ROLE default REGION 'eu-west-1' FORMAT AS CSV NULL AS '\\N' GZIP TIMEFORMAT 'auto' COMPUPDATE OFF STATUPDATE OFF
                COPY "_tracktable_stage" ("message_id", "a""; DROP TABLE x; --", "prix_€") FROM 's3://bucket/it''s \\'' OR 1=1; --/part-00000.csv.gz' ACCESS_KEY_ID 'ASIA' SECRET_ACCESS_KEY 's3cr3t/tmp' SESSION_TOKEN 'IQoJb3JpZ2luX2VjE+t0k3n==''x' REGION 'it''s \\'' OR 1=1; --' FORMAT AS CSV NULL AS '\\N' GZIP TIMEFORMAT 'auto' COMPUPDATE OFF STATUPDATE OFF
            "#]],
        );
        for copy in &copies {
            assert!(!masked(copy).contains("s3cr3t"), "{copy}");
            assert!(!masked(copy).contains("t0k3n"), "{copy}");
        }
        check(
            &[masked(&copies[1]), masked(&copies[3])],
            expect![[r#"
                COPY "_tracktable_stage" ("message_id", "a""; DROP TABLE x; --", "prix_€") FROM 's3://bucket/p/manifest.json' ACCESS_KEY_ID 'AKIA' SECRET_ACCESS_KEY '***' MANIFEST FORMAT AS CSV NULL AS '\\N' GZIP TIMEFORMAT 'auto' ACCEPTINVCHARS AS 'it''s \\'' OR 1=1; --' COMPUPDATE OFF STATUPDATE OFF
                COPY "_tracktable_stage" ("message_id", "a""; DROP TABLE x; --", "prix_€") FROM 's3://bucket/it''s \\'' OR 1=1; --/part-00000.csv.gz' ACCESS_KEY_ID 'ASIA' SECRET_ACCESS_KEY '***' SESSION_TOKEN '***' REGION 'it''s \\'' OR 1=1; --' FORMAT AS CSV NULL AS '\\N' GZIP TIMEFORMAT 'auto' COMPUPDATE OFF STATUPDATE OFF
            "#]],
        );
    }

    #[test]
    fn transaction_and_merge() {
        let names = ["message_id", HOSTILE, UNICODE];
        check(
            &[
                BEGIN.to_owned(),
                drop_stage(STAGE),
                create_stage(SCHEMA, TABLE, STAGE),
                delete_staged_keys(SCHEMA, TABLE, STAGE, None),
                delete_staged_keys(SCHEMA, TABLE, STAGE, Some(Timestamp(1_704_164_645_000_123))),
                insert_from_stage(SCHEMA, TABLE, STAGE, &names),
                COMMIT.to_owned(),
                ROLLBACK.to_owned(),
            ],
            expect![[r#"
                BEGIN
                DROP TABLE IF EXISTS "_tracktable_stage"
                CREATE TEMP TABLE "_tracktable_stage" (LIKE "sch""ema"."select" INCLUDING DEFAULTS)
                DELETE FROM "sch""ema"."select" USING "_tracktable_stage" WHERE "select"."id" = "_tracktable_stage"."id"
                DELETE FROM "sch""ema"."select" USING "_tracktable_stage" WHERE "select"."id" = "_tracktable_stage"."id" AND "select"."received_at" >= '2024-01-02 03:04:05.000123'::timestamp
                INSERT INTO "sch""ema"."select" ("message_id", "a""; DROP TABLE x; --", "prix_€") SELECT "message_id", "a""; DROP TABLE x; --", "prix_€" FROM "_tracktable_stage"
                COMMIT
                ROLLBACK
            "#]],
        );
    }

    #[test]
    fn newest_wins_merge() {
        check(
            &[
                drop_stale_staged(SCHEMA, "users", STAGE),
                delete_staged_keys(SCHEMA, "users", STAGE, None),
                insert_from_stage(SCHEMA, "users", STAGE, &["id", "timestamp", HOSTILE]),
            ],
            expect![[r#"
                DELETE FROM "_tracktable_stage" USING "sch""ema"."users" AS stored WHERE stored."id" = "_tracktable_stage"."id" AND (COALESCE(stored."timestamp", '0001-01-01 00:00:00'::timestamp) > COALESCE("_tracktable_stage"."timestamp", '0001-01-01 00:00:00'::timestamp) OR (COALESCE(stored."timestamp", '0001-01-01 00:00:00'::timestamp) = COALESCE("_tracktable_stage"."timestamp", '0001-01-01 00:00:00'::timestamp) AND stored."message_id" > "_tracktable_stage"."message_id"))
                DELETE FROM "sch""ema"."users" USING "_tracktable_stage" WHERE "users"."id" = "_tracktable_stage"."id"
                INSERT INTO "sch""ema"."users" ("id", "timestamp", "a""; DROP TABLE x; --") SELECT "id", "timestamp", "a""; DROP TABLE x; --" FROM "_tracktable_stage"
            "#]],
        );
    }

    #[test]
    fn discards() {
        check(
            &[
                create_discard_stage(SCHEMA, DISCARD_STAGE),
                drop_known_discards(SCHEMA, DISCARD_STAGE),
                count_staged_discards(DISCARD_STAGE),
                insert_discards(SCHEMA, DISCARD_STAGE),
                drop_stage(DISCARD_STAGE),
            ],
            expect![[r#"
                CREATE TEMP TABLE "_tracktable_discard_stage" (LIKE "sch""ema"."_discards" INCLUDING DEFAULTS)
                DELETE FROM "_tracktable_discard_stage" USING "sch""ema"."_discards" AS kept WHERE kept.table_name = "_tracktable_discard_stage".table_name AND kept.column_name = "_tracktable_discard_stage".column_name AND kept.message_id = "_tracktable_discard_stage".message_id
                SELECT reason, count(*) FROM "_tracktable_discard_stage" GROUP BY reason
                INSERT INTO "sch""ema"."_discards" ("table_name", "column_name", "message_id", "value", "reason", "object", "line", "received_at") SELECT "table_name", "column_name", "message_id", "value", "reason", "object", "line", "received_at" FROM "_tracktable_discard_stage"
                DROP TABLE IF EXISTS "_tracktable_discard_stage"
            "#]],
        );
    }

    #[test]
    fn load_errors() {
        check(
            &[
                SELECT_LOAD_ERRORS.to_owned(),
                SELECT_LOAD_ERROR_DETAIL.to_owned(),
            ],
            expect![[r#"
                SELECT TRIM(filename), line_number, TRIM(colname), TRIM(raw_field_value), err_code, TRIM(err_reason) FROM stl_load_errors WHERE query = pg_last_copy_id() ORDER BY line_number
                SELECT TRIM(file_name), line_number, TRIM(column_name), '', error_code, TRIM(error_message) FROM sys_load_error_detail WHERE session_id = pg_backend_pid() AND query_id = (SELECT max(query_id) FROM sys_load_error_detail WHERE session_id = pg_backend_pid()) ORDER BY line_number
            "#]],
        );
    }

    #[test]
    fn records() {
        let objects = [
            (format!("s3://bucket/{QUOTED}"), "\"etag\"".to_owned()),
            ("s3://bucket/b.json".to_owned(), "v1".to_owned()),
        ];
        check(
            &[
                record_load(SCHEMA, 17, QUOTED, 3, 2, 1),
                select_loaded_objects(SCHEMA, &objects),
                record_objects(SCHEMA, &objects),
            ],
            expect![[r#"
                INSERT INTO "sch""ema"."_tracktable_loads" (batch, table_name, rows_loaded, duplicates, discards) VALUES (17, 'it''s \\'' OR 1=1; --', 3, 2, 1)
                SELECT DISTINCT object, content FROM "sch""ema"."_tracktable_objects" WHERE (object = 's3://bucket/it''s \\'' OR 1=1; --' AND content = '"etag"') OR (object = 's3://bucket/b.json' AND content = 'v1')
                INSERT INTO "sch""ema"."_tracktable_objects" (object, content) VALUES ('s3://bucket/it''s \\'' OR 1=1; --', '"etag"'), ('s3://bucket/b.json', 'v1')
            "#]],
        );
    }
}
