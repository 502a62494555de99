//! sql: every statement the PostgreSQL warehouse sends — the whole dialect in one
//! place — and the naming facts both dialects share (quoting, key columns, the tables
//! tracktable always creates). Redshift's dialect is `redshift::sql`.
//!
//! Identifiers are always double-quoted, embedded quotes doubled (our names are
//! already `[a-z0-9_]`, so quoting protects against reserved words; a hostile name
//! still cannot leave its quotes); values never enter SQL text — they travel by COPY
//! or as bound parameters.

use crate::route::{ColumnType, own};

/// `"name"`, with embedded quotes doubled.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `"schema"."table"`.
pub fn qualified(schema: &str, table: &str) -> String {
    format!("{}.{}", ident(schema), ident(table))
}

/// The column that names a message in `_discards`, `_rejections` and the [`LATEST`]
/// tables (where it breaks ties between calls of one `timestamp`).
pub const MESSAGE_ID: &str = "message_id";

/// Tables that keep the newest traits per user or group id rather than every message:
/// keyed by `id`, merged newest-`timestamp`-wins.
pub const LATEST: [&str; 2] = ["users", "accounts"];

/// Whether `table` is one of [`LATEST`].
pub fn is_latest(table: &str) -> bool {
    LATEST.contains(&table)
}

/// A table's key column: `id` (Segment's name: the message id in event tables, the
/// user or group id in [`LATEST`] tables); `message_id` in tracktable's own tables.
pub fn key_column(table: &str) -> &'static str {
    if table.starts_with('_') {
        MESSAGE_ID
    } else {
        own::KEY
    }
}

/// Whether `table` has a load-time column (`uuid_ts`, set by its default when a row
/// is written): every table but tracktable's own.
pub fn has_load_time(table: &str) -> bool {
    !table.starts_with('_')
}
/// Bookkeeping tables.
pub const LOADS_TABLE: &str = "_tracktable_loads";
pub const DISCARDS_TABLE: &str = "_discards";

/// Whether a schema exists (one row if it does).
pub const SCHEMA_EXISTS: &str = "SELECT 1 FROM pg_namespace WHERE nspname = $1";

pub fn create_schema(schema: &str) -> String {
    format!("CREATE SCHEMA IF NOT EXISTS {}", ident(schema))
}

/// Bookkeeping tables (PostgreSQL).
pub fn create_bookkeeping(schema: &str) -> Vec<String> {
    vec![
        format!(
            "CREATE TABLE IF NOT EXISTS {} (batch bigint NOT NULL, table_name text NOT NULL, rows_loaded bigint NOT NULL, \
             duplicates bigint NOT NULL, discards bigint NOT NULL, loaded_at timestamptz NOT NULL DEFAULT now(), \
             PRIMARY KEY (batch, table_name))",
            qualified(schema, LOADS_TABLE)
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {} (table_name text NOT NULL, column_name text NOT NULL, message_id text NOT NULL, \
             value text, reason text NOT NULL, object text, line bigint, received_at timestamp, \
             discarded_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (table_name, column_name, message_id))",
            qualified(schema, DISCARDS_TABLE)
        ),
    ]
}

/// The SQL type of a column.
pub fn column_type(column_type: ColumnType) -> String {
    column_type.sql_name()
}

/// A new table with its key (PostgreSQL: enforced primary key) and load time, the
/// transaction's start in UTC. [`LATEST`] tables always have `timestamp`, which their
/// merge orders by.
pub fn create_table(schema: &str, table: &str, columns: &[(&str, ColumnType)]) -> String {
    let newest = if is_latest(table) {
        ", \"timestamp\" timestamp"
    } else {
        ""
    };
    let load_time = if has_load_time(table) {
        format!(
            ", {} timestamp DEFAULT (now() AT TIME ZONE 'UTC')",
            ident(own::LOAD_TIME)
        )
    } else {
        String::new()
    };
    let columns: String = columns
        .iter()
        .filter(|(name, _)| !(is_latest(table) && *name == "timestamp"))
        .filter(|(name, _)| !(has_load_time(table) && *name == own::LOAD_TIME))
        .map(|(name, column_type)| format!(", {} {}", ident(name), self::column_type(*column_type)))
        .collect();
    format!(
        "CREATE TABLE IF NOT EXISTS {} ({} text NOT NULL PRIMARY KEY{newest}{load_time}{columns})",
        qualified(schema, table),
        ident(key_column(table))
    )
}

/// PostgreSQL: `IF NOT EXISTS` makes a concurrent add harmless.
pub fn add_column_clause(column: &str, column_type: ColumnType) -> String {
    format!(
        "ADD COLUMN IF NOT EXISTS {} {}",
        ident(column),
        self::column_type(column_type)
    )
}

pub fn widen_clause(column: &str, width: u32) -> String {
    format!("ALTER COLUMN {} TYPE varchar({width})", ident(column))
}

/// Several column changes in one statement (PostgreSQL; Redshift allows one per ALTER).
pub fn alter_table(schema: &str, table: &str, clauses: &[String]) -> String {
    format!(
        "ALTER TABLE {} {}",
        qualified(schema, table),
        clauses.join(", ")
    )
}

/// The columns of a table, for the catalogue cache.
/// Straight from the catalogue: `information_schema.columns` costs ten times as much.
/// Same shape as information_schema's (name, data_type, character_maximum_length).
pub const SELECT_COLUMNS: &str = "SELECT a.attname::text, \
     CASE a.atttypid WHEN 'boolean'::regtype THEN 'boolean' WHEN 'bigint'::regtype THEN 'bigint' \
     WHEN 'double precision'::regtype THEN 'double precision' \
     WHEN 'timestamp without time zone'::regtype THEN 'timestamp without time zone' \
     WHEN 'character varying'::regtype THEN 'character varying' \
     ELSE format_type(a.atttypid, a.atttypmod) END, \
     CASE WHEN a.atttypid = 'character varying'::regtype AND a.atttypmod > 4 THEN a.atttypmod - 4 END \
     FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
     WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped";

/// The views (and materialized views) that depend on columns `$3` of table `$1.$2`,
/// directly or through other views: what `ALTER COLUMN ... TYPE` refuses to change
/// under (`0A000`). One row per view: its depth (1: on the table itself; a view is
/// deeper than every view it reads), the statement that drops it, and those that
/// recreate it as it was: its definition and options, its owner, its grants and its
/// comment. Dropped deepest first and recreated shallowest first, in the DDL
/// transaction, they let a varchar widen without a user's view noticing.
pub const SELECT_DEPENDENT_VIEWS: &str = "WITH RECURSIVE dependent(oid, depth) AS ( \
       SELECT DISTINCT r.ev_class, 1 FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid \
       JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid \
       WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass \
         AND d.refobjid = format('%I.%I', $1::text, $2::text)::regclass AND a.attname = ANY ($3::text[]) \
         AND r.ev_class <> d.refobjid \
     UNION \
       SELECT r.ev_class, dependent.depth + 1 FROM dependent \
       JOIN pg_depend d ON d.refobjid = dependent.oid AND d.refclassid = 'pg_class'::regclass \
         AND d.classid = 'pg_rewrite'::regclass \
       JOIN pg_rewrite r ON r.oid = d.objid \
       WHERE r.ev_class <> dependent.oid AND dependent.depth < 64) \
     SELECT max(dependent.depth), \
       format('DROP %s %I.%I', CASE c.relkind WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'VIEW' END, n.nspname, c.relname), \
       array_remove(ARRAY[ \
         format('CREATE %s %I.%I%s AS %s%s', CASE c.relkind WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'VIEW' END, \
           n.nspname, c.relname, \
           CASE WHEN c.reloptions IS NULL THEN '' ELSE format(' WITH (%s)', array_to_string(c.reloptions, ', ')) END, \
           rtrim(pg_get_viewdef(c.oid), ';'), \
           CASE WHEN c.relkind <> 'm' THEN '' WHEN c.relispopulated THEN ' WITH DATA' ELSE ' WITH NO DATA' END), \
         format('ALTER %s %I.%I OWNER TO %I', CASE c.relkind WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'VIEW' END, \
           n.nspname, c.relname, pg_get_userbyid(c.relowner)), \
         CASE WHEN obj_description(c.oid, 'pg_class') IS NOT NULL THEN \
           format('COMMENT ON %s %I.%I IS %L', CASE c.relkind WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'VIEW' END, \
             n.nspname, c.relname, obj_description(c.oid, 'pg_class')) END] \
       || ARRAY(SELECT format('GRANT %s ON %I.%I TO %s%s', g.privilege_type, n.nspname, c.relname, \
            CASE g.grantee WHEN 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(g.grantee)) END, \
            CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END) \
          FROM aclexplode(c.relacl) g WHERE g.grantee <> c.relowner), NULL) \
     FROM dependent JOIN pg_class c ON c.oid = dependent.oid JOIN pg_namespace n ON n.oid = c.relnamespace \
     WHERE c.relkind IN ('v', 'm') \
     GROUP BY c.oid, n.nspname, c.relname, c.relkind, c.reloptions, c.relispopulated, c.relowner, c.relacl \
     ORDER BY 1";

/// A temporary staging table shaped like the target, dropped at commit.
pub fn create_stage(schema: &str, table: &str, stage: &str) -> String {
    format!(
        "CREATE TEMPORARY TABLE {} (LIKE {} INCLUDING DEFAULTS) ON COMMIT DROP",
        ident(stage),
        qualified(schema, table)
    )
}

/// `(a, b, c)` for a column list.
fn column_list(columns: &[&str]) -> String {
    let quoted: Vec<String> = columns.iter().map(|c| ident(c)).collect();
    format!("({})", quoted.join(", "))
}

/// PostgreSQL binary COPY into the staging table.
pub fn copy_into_stage(stage: &str, columns: &[&str]) -> String {
    format!(
        "COPY {} {} FROM STDIN (FORMAT binary)",
        ident(stage),
        column_list(columns)
    )
}

/// Which of the keys in `$1` (a text array) a table already holds.
pub fn select_stored_keys(schema: &str, table: &str) -> String {
    format!(
        "SELECT {key} FROM {} WHERE {key} = ANY($1)",
        qualified(schema, table),
        key = ident(key_column(table))
    )
}

/// Binary COPY straight into a table (event tables' loads, and the benchmark's baseline).
pub fn copy_into_table(schema: &str, table: &str, columns: &[&str]) -> String {
    format!(
        "COPY {} {} FROM STDIN (FORMAT binary)",
        qualified(schema, table),
        column_list(columns)
    )
}

/// Upserts a [`LATEST`] table: per id, the newest row wins whole, newest by
/// (`timestamp`, `message_id`), a missing timestamp counting as oldest. `columns` must
/// be every column of the table: the winner's absent traits become NULL, so the result
/// is the newest call's traits however the calls were split into batches, and replaying
/// a batch (or an older call arriving late) changes nothing.
pub fn merge_latest(schema: &str, table: &str, stage: &str, columns: &[&str]) -> String {
    let list = column_list(columns);
    let target = qualified(schema, table);
    let alias = ident(table);
    let key = ident(key_column(table));
    let updates: Vec<String> = columns
        .iter()
        .filter(|column| **column != key_column(table))
        .map(|column| {
            let column = ident(column);
            format!("{column} = EXCLUDED.{column}")
        })
        .collect();
    let newest = |row: &str| {
        format!(
            "(COALESCE({row}.\"timestamp\", '-infinity'), {row}.{id})",
            id = ident(MESSAGE_ID)
        )
    };
    format!(
        "INSERT INTO {target} AS {alias} {list} SELECT DISTINCT ON ({key}) {select} FROM {stage} \
         ORDER BY {key}, \"timestamp\" DESC NULLS LAST, {id} DESC ON CONFLICT ({key}) DO UPDATE SET {updates} \
         WHERE {excluded} >= {stored}",
        select = list.trim_start_matches('(').trim_end_matches(')'),
        stage = ident(stage),
        id = ident(MESSAGE_ID),
        updates = updates.join(", "),
        excluded = newest("EXCLUDED"),
        stored = newest(&alias),
    )
}

/// Discards go through their own staging table so a replayed batch adds none twice.
pub fn create_discard_stage(schema: &str, stage: &str) -> String {
    format!(
        "CREATE TEMPORARY TABLE {} (LIKE {} INCLUDING DEFAULTS) ON COMMIT DROP",
        ident(stage),
        qualified(schema, DISCARDS_TABLE)
    )
}

pub const DISCARD_COLUMNS: [&str; 8] = [
    "table_name",
    "column_name",
    "message_id",
    "value",
    "reason",
    "object",
    "line",
    "received_at",
];

pub fn merge_discards(schema: &str, stage: &str) -> String {
    let list = column_list(&DISCARD_COLUMNS);
    format!(
        "INSERT INTO {} {list} SELECT DISTINCT ON (table_name, column_name, message_id) {} FROM {} \
         ORDER BY table_name, column_name, message_id ON CONFLICT DO NOTHING RETURNING reason",
        qualified(schema, DISCARDS_TABLE),
        list.trim_start_matches('(').trim_end_matches(')'),
        ident(stage)
    )
}

/// Tables tracktable creates whatever the tracking plan says (a cap on tables never
/// refuses them).
pub fn is_fixed_table(table: &str) -> bool {
    table.starts_with('_')
        || matches!(
            table,
            "tracks"
                | "identifies"
                | "pages"
                | "screens"
                | "groups"
                | "aliases"
                | "users"
                | "accounts"
        )
}

/// Tables in schema `$1` that count against the tracking plan's cap (bookkeeping tables,
/// named with a leading `_`, do not).
pub const COUNT_TABLES: &str = "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
     WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND left(c.relname, 1) <> '_'";

/// Objects whose rows have all committed (S3 sources): `(object, content)` where
/// content is the object's version id or ETag. Created on first use.
pub const OBJECTS_TABLE: &str = "_tracktable_objects";

pub fn create_objects_table(schema: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {} (object text NOT NULL, content text NOT NULL, \
         loaded_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (object, content))",
        qualified(schema, OBJECTS_TABLE)
    )
}

/// Of the pairs in `$1` (objects) and `$2` (contents), those recorded as loaded.
pub fn select_loaded_objects(schema: &str) -> String {
    format!(
        "SELECT o.object, o.content FROM {} o JOIN unnest($1::text[], $2::text[]) AS q(object, content) \
         ON o.object = q.object AND o.content = q.content",
        qualified(schema, OBJECTS_TABLE)
    )
}

pub fn record_objects(schema: &str) -> String {
    format!(
        "INSERT INTO {} (object, content) SELECT * FROM unnest($1::text[], $2::text[]) \
         ON CONFLICT DO NOTHING",
        qualified(schema, OBJECTS_TABLE)
    )
}

pub fn record_load(schema: &str) -> String {
    format!(
        "INSERT INTO {} (batch, table_name, rows_loaded, duplicates, discards) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (batch, table_name) DO UPDATE SET rows_loaded = {t}.rows_loaded + EXCLUDED.rows_loaded, \
         duplicates = {t}.duplicates + EXCLUDED.duplicates, discards = {t}.discards + EXCLUDED.discards, loaded_at = now()",
        qualified(schema, LOADS_TABLE),
        t = ident(LOADS_TABLE),
    )
}

/// Serialises DDL on one schema (or table: `$1` is the lock's key) across workers and
/// processes until the transaction ends.
pub const DDL_LOCK: &str = "SELECT pg_advisory_xact_lock($1)";

/// The object log's table, created under the schema's DDL lock (`lock_key`) in a
/// transaction of its own: two processes creating it at once would collide.
pub fn create_objects_table_locked(schema: &str, lock_key: i64) -> String {
    format!(
        "BEGIN; SELECT pg_advisory_xact_lock({lock_key}); {}; COMMIT",
        create_objects_table(schema)
    )
}

/// The staging tables of a load (temporary: per session, dropped at commit).
pub const STAGE: &str = "tracktable_stage";
pub const DISCARD_STAGE: &str = "tracktable_discard_stage";

/// Drops a staging table before the commit would, so the next statement in the same
/// transaction can create it again.
pub fn drop_table(table: &str) -> String {
    format!("DROP TABLE {}", ident(table))
}

#[cfg(test)]
mod tests {
    //! One snapshot per statement family, built from hostile names: a reserved word, an
    //! embedded quote, a statement terminator and a comment, non-ASCII. Whatever the
    //! name, it must stay one quoted identifier. `UPDATE_EXPECT=1 cargo test` rewrites
    //! the snapshots after an intended change; review the diff like code.

    use expect_test::{Expect, expect};

    use super::*;

    const SCHEMA: &str = "sch\"ema";
    const TABLE: &str = "select";
    const HOSTILE: &str = "a\"; DROP TABLE x; --";
    const UNICODE: &str = "prix_€";

    fn check(statements: &[String], expected: Expect) {
        expected.assert_eq(&(statements.join("\n") + "\n"));
    }

    #[test]
    fn identifiers_are_always_quoted() {
        assert_eq!(ident("select"), "\"select\"");
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(qualified("s", "t"), "\"s\".\"t\"");
    }

    #[test]
    fn schema_and_bookkeeping() {
        let mut statements = vec![SCHEMA_EXISTS.to_owned(), create_schema(SCHEMA)];
        statements.extend(create_bookkeeping(SCHEMA));
        statements.push(create_objects_table_locked(SCHEMA, -42));
        statements.push(DDL_LOCK.to_owned());
        check(
            &statements,
            expect![[r#"
            SELECT 1 FROM pg_namespace WHERE nspname = $1
            CREATE SCHEMA IF NOT EXISTS "sch""ema"
            CREATE TABLE IF NOT EXISTS "sch""ema"."_tracktable_loads" (batch bigint NOT NULL, table_name text NOT NULL, rows_loaded bigint NOT NULL, duplicates bigint NOT NULL, discards bigint NOT NULL, loaded_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (batch, table_name))
            CREATE TABLE IF NOT EXISTS "sch""ema"."_discards" (table_name text NOT NULL, column_name text NOT NULL, message_id text NOT NULL, value text, reason text NOT NULL, object text, line bigint, received_at timestamp, discarded_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (table_name, column_name, message_id))
            BEGIN; SELECT pg_advisory_xact_lock(-42); CREATE TABLE IF NOT EXISTS "sch""ema"."_tracktable_objects" (object text NOT NULL, content text NOT NULL, loaded_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (object, content)); COMMIT
            SELECT pg_advisory_xact_lock($1)
        "#]],
        );
    }

    #[test]
    fn catalogue_reads() {
        check(
            &[
                SELECT_COLUMNS.to_owned(),
                COUNT_TABLES.to_owned(),
                SELECT_DEPENDENT_VIEWS.to_owned(),
            ],
            expect![[r#"
                SELECT a.attname::text, CASE a.atttypid WHEN 'boolean'::regtype THEN 'boolean' WHEN 'bigint'::regtype THEN 'bigint' WHEN 'double precision'::regtype THEN 'double precision' WHEN 'timestamp without time zone'::regtype THEN 'timestamp without time zone' WHEN 'character varying'::regtype THEN 'character varying' ELSE format_type(a.atttypid, a.atttypmod) END, CASE WHEN a.atttypid = 'character varying'::regtype AND a.atttypmod > 4 THEN a.atttypmod - 4 END FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped
                SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND left(c.relname, 1) <> '_'
                WITH RECURSIVE dependent(oid, depth) AS ( SELECT DISTINCT r.ev_class, 1 FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass AND d.refobjid = format('%I.%I', $1::text, $2::text)::regclass AND a.attname = ANY ($3::text[]) AND r.ev_class <> d.refobjid UNION SELECT r.ev_class, dependent.depth + 1 FROM dependent JOIN pg_depend d ON d.refobjid = dependent.oid AND d.refclassid = 'pg_class'::regclass AND d.classid = 'pg_rewrite'::regclass JOIN pg_rewrite r ON r.oid = d.objid WHERE r.ev_class <> dependent.oid AND dependent.depth < 64) SELECT max(dependent.depth), format('DROP %s %I.%I', CASE c.relkind WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'VIEW' END, n.nspname, c.relname), array_remove(ARRAY[ format('CREATE %s %I.%I%s AS %s%s', CASE c.relkind WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'VIEW' END, n.nspname, c.relname, CASE WHEN c.reloptions IS NULL THEN '' ELSE format(' WITH (%s)', array_to_string(c.reloptions, ', ')) END, rtrim(pg_get_viewdef(c.oid), ';'), CASE WHEN c.relkind <> 'm' THEN '' WHEN c.relispopulated THEN ' WITH DATA' ELSE ' WITH NO DATA' END), format('ALTER %s %I.%I OWNER TO %I', CASE c.relkind WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'VIEW' END, n.nspname, c.relname, pg_get_userbyid(c.relowner)), CASE WHEN obj_description(c.oid, 'pg_class') IS NOT NULL THEN format('COMMENT ON %s %I.%I IS %L', CASE c.relkind WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'VIEW' END, n.nspname, c.relname, obj_description(c.oid, 'pg_class')) END] || ARRAY(SELECT format('GRANT %s ON %I.%I TO %s%s', g.privilege_type, n.nspname, c.relname, CASE g.grantee WHEN 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(g.grantee)) END, CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END) FROM aclexplode(c.relacl) g WHERE g.grantee <> c.relowner), NULL) FROM dependent JOIN pg_class c ON c.oid = dependent.oid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('v', 'm') GROUP BY c.oid, n.nspname, c.relname, c.relkind, c.reloptions, c.relispopulated, c.relowner, c.relacl ORDER BY 1
            "#]],
        );
    }

    #[test]
    fn table_creation() {
        let columns = [
            (HOSTILE, ColumnType::Varchar(64)),
            (UNICODE, ColumnType::Double),
            ("received_at", ColumnType::Timestamp),
        ];
        check(
            &[
                create_table(SCHEMA, TABLE, &columns),
                create_table(SCHEMA, TABLE, &[]),
                // `users` always has `timestamp`, once, whatever the batch observed.
                create_table(SCHEMA, "users", &[("timestamp", ColumnType::Varchar(64))]),
                create_table(SCHEMA, "accounts", &columns),
            ],
            expect![[r#"
                CREATE TABLE IF NOT EXISTS "sch""ema"."select" ("id" text NOT NULL PRIMARY KEY, "uuid_ts" timestamp DEFAULT (now() AT TIME ZONE 'UTC'), "a""; DROP TABLE x; --" varchar(64), "prix_€" double precision, "received_at" timestamp)
                CREATE TABLE IF NOT EXISTS "sch""ema"."select" ("id" text NOT NULL PRIMARY KEY, "uuid_ts" timestamp DEFAULT (now() AT TIME ZONE 'UTC'))
                CREATE TABLE IF NOT EXISTS "sch""ema"."users" ("id" text NOT NULL PRIMARY KEY, "timestamp" timestamp, "uuid_ts" timestamp DEFAULT (now() AT TIME ZONE 'UTC'))
                CREATE TABLE IF NOT EXISTS "sch""ema"."accounts" ("id" text NOT NULL PRIMARY KEY, "timestamp" timestamp, "uuid_ts" timestamp DEFAULT (now() AT TIME ZONE 'UTC'), "a""; DROP TABLE x; --" varchar(64), "prix_€" double precision, "received_at" timestamp)
            "#]],
        );
    }

    #[test]
    fn column_changes_share_one_statement() {
        check(
            &[alter_table(
                SCHEMA,
                TABLE,
                &[
                    add_column_clause(HOSTILE, ColumnType::BigInt),
                    add_column_clause(UNICODE, ColumnType::Boolean),
                    widen_clause("from", 256),
                ],
            )],
            expect![[r#"
                ALTER TABLE "sch""ema"."select" ADD COLUMN IF NOT EXISTS "a""; DROP TABLE x; --" bigint, ADD COLUMN IF NOT EXISTS "prix_€" boolean, ALTER COLUMN "from" TYPE varchar(256)
            "#]],
        );
    }

    #[test]
    fn rows() {
        let names = [MESSAGE_ID, HOSTILE, UNICODE];
        check(
            &[
                copy_into_table(SCHEMA, TABLE, &names),
                select_stored_keys(SCHEMA, TABLE),
                create_stage(SCHEMA, TABLE, STAGE),
                copy_into_stage(STAGE, &names),
                drop_table(STAGE),
            ],
            expect![[r#"
                COPY "sch""ema"."select" ("message_id", "a""; DROP TABLE x; --", "prix_€") FROM STDIN (FORMAT binary)
                SELECT "id" FROM "sch""ema"."select" WHERE "id" = ANY($1)
                CREATE TEMPORARY TABLE "tracktable_stage" (LIKE "sch""ema"."select" INCLUDING DEFAULTS) ON COMMIT DROP
                COPY "tracktable_stage" ("message_id", "a""; DROP TABLE x; --", "prix_€") FROM STDIN (FORMAT binary)
                DROP TABLE "tracktable_stage"
            "#]],
        );
    }

    #[test]
    fn newest_wins_merge() {
        check(
            &[
                merge_latest(
                    SCHEMA,
                    "users",
                    STAGE,
                    &["id", MESSAGE_ID, "timestamp", HOSTILE],
                ),
                select_stored_keys(SCHEMA, "accounts"),
            ],
            expect![[r#"
                INSERT INTO "sch""ema"."users" AS "users" ("id", "message_id", "timestamp", "a""; DROP TABLE x; --") SELECT DISTINCT ON ("id") "id", "message_id", "timestamp", "a""; DROP TABLE x; --" FROM "tracktable_stage" ORDER BY "id", "timestamp" DESC NULLS LAST, "message_id" DESC ON CONFLICT ("id") DO UPDATE SET "message_id" = EXCLUDED."message_id", "timestamp" = EXCLUDED."timestamp", "a""; DROP TABLE x; --" = EXCLUDED."a""; DROP TABLE x; --" WHERE (COALESCE(EXCLUDED."timestamp", '-infinity'), EXCLUDED."message_id") >= (COALESCE("users"."timestamp", '-infinity'), "users"."message_id")
                SELECT "id" FROM "sch""ema"."accounts" WHERE "id" = ANY($1)
            "#]],
        );
    }

    #[test]
    fn discards() {
        check(
            &[
                create_discard_stage(SCHEMA, DISCARD_STAGE),
                copy_into_stage(DISCARD_STAGE, &DISCARD_COLUMNS),
                merge_discards(SCHEMA, DISCARD_STAGE),
                drop_table(DISCARD_STAGE),
            ],
            expect![[r#"
                CREATE TEMPORARY TABLE "tracktable_discard_stage" (LIKE "sch""ema"."_discards" INCLUDING DEFAULTS) ON COMMIT DROP
                COPY "tracktable_discard_stage" ("table_name", "column_name", "message_id", "value", "reason", "object", "line", "received_at") FROM STDIN (FORMAT binary)
                INSERT INTO "sch""ema"."_discards" ("table_name", "column_name", "message_id", "value", "reason", "object", "line", "received_at") SELECT DISTINCT ON (table_name, column_name, message_id) "table_name", "column_name", "message_id", "value", "reason", "object", "line", "received_at" FROM "tracktable_discard_stage" ORDER BY table_name, column_name, message_id ON CONFLICT DO NOTHING RETURNING reason
                DROP TABLE "tracktable_discard_stage"
            "#]],
        );
    }

    #[test]
    fn records() {
        check(
            &[
                record_load(SCHEMA),
                select_loaded_objects(SCHEMA),
                record_objects(SCHEMA),
            ],
            expect![[r#"
                INSERT INTO "sch""ema"."_tracktable_loads" (batch, table_name, rows_loaded, duplicates, discards) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (batch, table_name) DO UPDATE SET rows_loaded = "_tracktable_loads".rows_loaded + EXCLUDED.rows_loaded, duplicates = "_tracktable_loads".duplicates + EXCLUDED.duplicates, discards = "_tracktable_loads".discards + EXCLUDED.discards, loaded_at = now()
                SELECT o.object, o.content FROM "sch""ema"."_tracktable_objects" o JOIN unnest($1::text[], $2::text[]) AS q(object, content) ON o.object = q.object AND o.content = q.content
                INSERT INTO "sch""ema"."_tracktable_objects" (object, content) SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT DO NOTHING
            "#]],
        );
    }
}
