//! ddl: the schema decisions both warehouses share, as one pure planner.
//!
//! Given what a table has (its known columns; none when it does not exist), what a
//! batch observed, and the tracking plan's caps, [`plan_table`] says what to do: refuse
//! the table (its rows go to `_discards` whole), or create it, add and widen columns,
//! and refuse the columns the cap keeps out (their values go to `_discards`). Each
//! loader executes the plan in its own dialect and transaction discipline
//! (`postgres::ddl`, `redshift::ddl`). No SQL text and no I/O here.
//!
//! Besides the tracking plan's caps, the warehouse's own limit on columns per table
//! (1600 in both PostgreSQL and Redshift) is always a cap: a table never grows past
//! it, and room is kept for the columns tracktable itself writes ([`OWN_COLUMNS`]), so
//! only properties and traits (and `context_*` fields) are ever refused by it.
//!
//! Invariants: a column keeps the type it was created with, and only varchar widths
//! grow (up to 65535); the caps never refuse what the table already has; the tables
//! tracktable always creates (`sql::is_fixed_table`) are never refused; no plan takes
//! a table past [`Caps::warehouse_columns`].

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasherDefault;

use super::discard::DiscardReason;
use super::plan::TableSchema;
use super::sql::{has_load_time, is_fixed_table, is_latest, key_column};
use crate::columns::{AddressHasher, VARCHAR_WIDTHS, creation_type, width_class};
use crate::route::{ColumnName, ColumnType, Row, own};

/// One column change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaChange {
    AddColumn {
        column: ColumnName,
        column_type: ColumnType,
    },
    Widen {
        column: ColumnName,
        width: u32,
    },
}

/// The most columns a table can have, in PostgreSQL (`MaxHeapAttributeNumber`) and in
/// Redshift alike.
pub const WAREHOUSE_MAX_COLUMNS: usize = 1600;

/// The columns tracktable itself writes into event, `users` and `accounts` tables
/// besides properties, traits and context: every table's key (`id`), the load time,
/// the common fields of every call, and each call type's own (`route::own`, where a
/// property of one of these names is renamed). The warehouse's column limit keeps
/// room for all of them.
pub const OWN_COLUMNS: [&str; 16] = own::ALL;

/// Whether `column` is one of tracktable's own ([`OWN_COLUMNS`]).
pub fn is_own_column(column: &str) -> bool {
    OWN_COLUMNS.contains(&column)
}

/// The caps on a schema: the tracking plan's (tables in the schema, bookkeeping
/// tables named with a leading `_` aside, and columns per table) and the warehouse's
/// own limit on columns per table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    pub tables: Option<usize>,
    pub columns: Option<usize>,
    /// The warehouse's limit on columns per table ([`WAREHOUSE_MAX_COLUMNS`]); a
    /// parameter only so tests can plan against a small one.
    pub warehouse_columns: usize,
}

impl Default for Caps {
    fn default() -> Caps {
        Caps {
            tables: None,
            columns: None,
            warehouse_columns: WAREHOUSE_MAX_COLUMNS,
        }
    }
}

impl Caps {
    /// The tracking plan's caps, under the warehouse's column limit.
    pub fn plan(tables: Option<usize>, columns: Option<usize>) -> Caps {
        Caps {
            tables,
            columns,
            ..Caps::default()
        }
    }

    /// How many columns other than tracktable's own a table may have under the
    /// warehouse's limit.
    pub fn room_for_properties(&self) -> usize {
        self.warehouse_columns.saturating_sub(OWN_COLUMNS.len())
    }

    /// Why a table with `columns` (of which `properties` are not tracktable's own)
    /// cannot take the column `column`, if it cannot: the tracking plan's cap, counting
    /// every column, or the warehouse's limit, which keeps room for tracktable's own.
    pub fn refuses(
        &self,
        columns: usize,
        properties: usize,
        column: &str,
    ) -> Option<DiscardReason> {
        if let Some(cap) = self.columns
            && columns >= cap
        {
            return Some(DiscardReason::ColumnCap { cap });
        }
        let full = if is_own_column(column) {
            columns >= self.warehouse_columns
        } else {
            properties >= self.room_for_properties() || columns >= self.warehouse_columns
        };
        full.then_some(DiscardReason::ColumnLimit {
            limit: self.warehouse_columns,
        })
    }

    /// The table cap that `table` must fit under before it is created, if any: the
    /// tables tracktable always creates are never refused. A loader counts the schema's
    /// tables (for [`plan_table`]) only when this is `Some` and the table is missing.
    pub fn table_cap(&self, table: &str) -> Option<usize> {
        self.tables.filter(|_| !is_fixed_table(table))
    }
}

/// What a table batch needs before its rows can load.
#[derive(Debug, Clone, PartialEq)]
pub enum TablePlan {
    /// The table does not exist and the table cap keeps it out: every row of the batch
    /// goes to `_discards` whole, with this reason.
    Refuse(DiscardReason),
    /// Create and change the table as planned (possibly nothing).
    Apply(SchemaPlan),
}

/// The DDL for one table batch, in the order it runs.
#[derive(Debug, Clone, PartialEq)]
pub struct SchemaPlan {
    /// `Some`: the table does not exist; create it with these columns, in name order,
    /// besides its key (and, for `users`/`accounts`, `timestamp`, which their merge
    /// orders by and which is created as `timestamp` whatever its observed type).
    pub create: Option<Vec<(ColumnName, ColumnType)>>,
    /// Then these changes, in column name order.
    pub alter: Vec<SchemaChange>,
    /// Observed columns the column cap keeps out: their values go to `_discards`.
    pub refused: Vec<(ColumnName, DiscardReason)>,
    /// The table's columns once the plan has run (the key column as
    /// `Varchar(u32::MAX)`, as the loaders' catalogue reads mark it).
    pub columns: TableSchema,
}

impl SchemaPlan {
    /// Whether the plan runs no DDL.
    pub fn is_empty(&self) -> bool {
        self.create.is_none() && self.alter.is_empty()
    }
}

/// Whether `known` (a table's columns, as last read) already holds everything
/// `observed`, so a load needs no DDL, no lock and no catalogue read. A column the cap
/// refused still counts as unsettled: the loader looks at the catalogue again.
pub fn is_settled(table: &str, known: &TableSchema, observed: &[(ColumnName, ColumnType)]) -> bool {
    !known.is_empty() && wanted_changes(table, known, observed, &[]).is_empty()
}

/// Plans the DDL that makes `table` (with columns `known`, empty when it does not
/// exist) hold the columns `observed` in a batch, under the tracking plan's `caps`.
/// `tables_in_schema` is how many tables count against the table cap; it is read only
/// when the table is missing and [`Caps::table_cap`] applies (`None` there admits the
/// table).
pub fn plan_table(
    table: &str,
    known: &TableSchema,
    observed: &[(ColumnName, ColumnType)],
    rows: &[Row],
    caps: Caps,
    tables_in_schema: Option<usize>,
) -> TablePlan {
    let mut columns = known.clone();
    let creating = columns.is_empty();
    if creating {
        if let Some(cap) = caps.table_cap(table)
            && tables_in_schema.is_some_and(|tables| tables >= cap)
        {
            return TablePlan::Refuse(DiscardReason::TableCap { cap });
        }
        columns.insert(key_column(table).to_owned(), ColumnType::Varchar(u32::MAX));
    }
    // `users` and `accounts` are created with a `timestamp` (their merge orders by
    // it) whether or not the batch observed one: until it is there it holds a place.
    // So is every event table's load time.
    let reserved = |columns: &TableSchema| {
        usize::from(creating && is_latest(table) && !columns.contains_key("timestamp"))
            + usize::from(creating && has_load_time(table) && !columns.contains_key(own::LOAD_TIME))
    };
    let mut properties = columns.keys().filter(|name| !is_own_column(name)).count();
    let mut changes = wanted_changes(table, &columns, observed, rows);
    // Tracktable's own columns first, so no cap keeps them out for a property that
    // sorts before them; the plan lists every change in name order anyway.
    changes.sort_by_key(|change| !is_own_column(changed_column(change).as_str()));
    let mut applied = Vec::new();
    let mut refused = Vec::new();
    for change in changes {
        if let SchemaChange::AddColumn {
            column,
            column_type,
        } = &change
        {
            let count = columns.len() + reserved(&columns);
            if let Some(reason) = caps.refuses(count, properties, column.as_str()) {
                refused.push((column.clone(), reason));
                continue;
            }
            if !is_own_column(column.as_str()) {
                properties += 1;
            }
            columns.insert(column.as_str().to_owned(), *column_type);
        } else if let SchemaChange::Widen { column, width } = &change {
            columns.insert(column.as_str().to_owned(), ColumnType::Varchar(*width));
        }
        applied.push(change);
    }
    applied.sort_by(|a, b| changed_column(a).cmp(changed_column(b)));
    refused.sort_by(|a, b| a.0.cmp(&b.0));
    let create = creating.then(|| {
        if is_latest(table) {
            columns.insert("timestamp".to_owned(), ColumnType::Timestamp);
        }
        if has_load_time(table) {
            columns.insert(own::LOAD_TIME.to_owned(), ColumnType::Timestamp);
        }
        // A new table has no column to widen: every change adds one.
        std::mem::take(&mut applied)
            .into_iter()
            .filter_map(|change| match change {
                SchemaChange::AddColumn {
                    column,
                    column_type,
                } => Some((column, column_type)),
                SchemaChange::Widen { .. } => None,
            })
            .collect()
    });
    TablePlan::Apply(SchemaPlan {
        create,
        alter: applied,
        refused,
        columns,
    })
}

/// The column a change is about.
fn changed_column(change: &SchemaChange) -> &ColumnName {
    match change {
        SchemaChange::AddColumn { column, .. } | SchemaChange::Widen { column, .. } => column,
    }
}

/// `observed` less the columns `known` lacks: what a batch can still use of a table
/// that cannot take another column (the server refused the last one the plan added,
/// `54011`, though the plan kept under the limit: PostgreSQL also counts columns
/// dropped by hand). Their values go to `_discards` (no such column).
pub fn without_new_columns(
    known: &TableSchema,
    observed: &[(ColumnName, ColumnType)],
) -> Vec<(ColumnName, ColumnType)> {
    observed
        .iter()
        .filter(|(column, _)| known.contains_key(column.as_str()))
        .cloned()
        .collect()
}

/// The column type of a catalogue entry (`information_schema.columns`' `data_type` and
/// `character_maximum_length`), if it is one tracktable writes: a column made by hand
/// with another type is not, and its values go to `_discards`. A varchar of no stated
/// length holds up to 65535 bytes.
pub fn catalogue_type(data_type: &str, length: Option<u32>) -> Option<ColumnType> {
    match data_type {
        "boolean" => Some(ColumnType::Boolean),
        "bigint" => Some(ColumnType::BigInt),
        "double precision" => Some(ColumnType::Double),
        "timestamp without time zone" => Some(ColumnType::Timestamp),
        "character varying" => Some(ColumnType::Varchar(length.unwrap_or(65535).max(1))),
        _ => None,
    }
}

/// Logs the column changes a load applied (nothing when there are none).
pub fn log_changes<'a>(
    table: &str,
    batch: u64,
    applied: impl IntoIterator<Item = &'a SchemaChange>,
) {
    let mut added = Vec::new();
    let mut widened = Vec::new();
    for change in applied {
        match change {
            SchemaChange::AddColumn { column, .. } => added.push(column.as_str().to_owned()),
            SchemaChange::Widen { column, width } => {
                widened.push(format!("{column} to varchar({width})"))
            }
        }
    }
    if !added.is_empty() || !widened.is_empty() {
        tracing::info!(table, batch, added = ?added, widened = ?widened, "schema changed");
    }
}

/// Logs the columns the column cap kept out of a table (nothing when there are none).
pub fn log_refused(table: &str, batch: u64, refused: &[(ColumnName, DiscardReason)]) {
    if let Some((_, reason)) = refused.first() {
        let columns: Vec<&str> = refused.iter().map(|(column, _)| column.as_str()).collect();
        tracing::warn!(
            table,
            batch,
            columns = ?columns,
            reason = %reason,
            "columns not added; their values go to _discards"
        );
    }
}

/// The changes that make `schema` (of `table`) hold everything `observed`, caps
/// aside, in column name order. A column keeps the type it was created with; only
/// varchar widths grow (up to 65535). A new column's type is decided by how many of the
/// batch's `rows` hold each observed type (`columns::creation_type`; with no rows, one
/// vote per observed type), except tracktable's timestamps, which are always
/// `timestamp` (`route::own::is_timestamp`).
pub fn wanted_changes(
    table: &str,
    schema: &TableSchema,
    observed: &[(ColumnName, ColumnType)],
    rows: &[Row],
) -> Vec<SchemaChange> {
    let mut by_column: BTreeMap<&ColumnName, Vec<ColumnType>> = BTreeMap::new();
    for (column, column_type) in observed {
        by_column.entry(column).or_default().push(*column_type);
    }
    let disputed: Vec<&ColumnName> = by_column
        .iter()
        .filter(|(column, types)| {
            !schema.contains_key(column.as_str())
                && !own::is_timestamp(table, column.as_str())
                && !kinds_agree(types)
        })
        .map(|(column, _)| *column)
        .collect();
    let mut tallies = tally(&disputed, rows);
    let mut changes = Vec::new();
    for (column, types) in by_column {
        match schema.get(column.as_str()) {
            None => {
                let column_type = if own::is_timestamp(table, column.as_str()) {
                    Some(ColumnType::Timestamp)
                } else {
                    let votes: Vec<(ColumnType, u64)> = match tallies.remove(column.as_str()) {
                        Some(counts) if !rows.is_empty() => counts.into_iter().collect(),
                        _ => types.iter().map(|t| (*t, 1)).collect(),
                    };
                    creation_type(&votes)
                };
                if let Some(column_type) = column_type {
                    changes.push(SchemaChange::AddColumn {
                        column: column.clone(),
                        column_type: cap_width(column_type),
                    });
                }
            }
            Some(ColumnType::Varchar(current)) => {
                let wanted = types
                    .iter()
                    .filter_map(|t| match t {
                        ColumnType::Varchar(width) => Some(*width),
                        // Other kinds are stored as text in a varchar column.
                        _ => None,
                    })
                    .max()
                    .map(|width| width.min(max_width()));
                if let Some(width) = wanted
                    && width > *current
                {
                    changes.push(SchemaChange::Widen {
                        column: column.clone(),
                        width,
                    });
                }
            }
            Some(_) => {}
        }
    }
    changes
}

/// Whether observed types are all of one kind (widths aside): then one vote per
/// observed type is all a new column's type needs.
fn kinds_agree(observed: &[ColumnType]) -> bool {
    let kinds = |t: &ColumnType| std::mem::discriminant(t);
    observed.iter().all(|t| kinds(t) == kinds(&observed[0]))
}

/// How many of `rows` hold each type (width class) in each of `columns`, by column
/// name: one pass over the cells for all of them, a name found by its address after its
/// first lookup by text (a pass per column was 2% of tracktable's CPU in a batch with
/// many new, drifting columns). `rows` are borrowed throughout, so no address is reused.
fn tally<'c>(
    columns: &[&'c ColumnName],
    rows: &[Row],
) -> HashMap<&'c str, BTreeMap<ColumnType, u64>> {
    let mut counts: HashMap<&'c str, BTreeMap<ColumnType, u64>> = HashMap::new();
    if columns.is_empty() {
        return counts;
    }
    let index: HashMap<&str, usize> = columns
        .iter()
        .enumerate()
        .map(|(at, column)| (column.as_str(), at))
        .collect();
    let mut by_address: HashMap<usize, Option<usize>, BuildHasherDefault<AddressHasher>> =
        HashMap::default();
    let mut tallies = vec![BTreeMap::<ColumnType, u64>::new(); columns.len()];
    for (column, value) in rows.iter().flat_map(Row::cells) {
        let slot = *by_address
            .entry(column.address())
            .or_insert_with(|| index.get(column.as_str()).copied());
        if let Some(at) = slot {
            *tallies[at]
                .entry(width_class(value.column_type()))
                .or_default() += 1;
        }
    }
    for (column, tally) in columns.iter().zip(tallies) {
        counts.insert(column.as_str(), tally);
    }
    counts
}

fn max_width() -> u32 {
    VARCHAR_WIDTHS[VARCHAR_WIDTHS.len() - 1]
}

fn cap_width(column_type: ColumnType) -> ColumnType {
    match column_type {
        ColumnType::Varchar(width) => ColumnType::Varchar(width.min(max_width())),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::naming::column_name;
    use ColumnType::{BigInt, Boolean, Double, Timestamp, Varchar};

    const KEY: ColumnType = Varchar(u32::MAX);

    fn schema(columns: &[(&str, ColumnType)]) -> TableSchema {
        columns
            .iter()
            .map(|(name, t)| (name.to_string(), *t))
            .collect()
    }

    /// Names as the router makes them: `timestamp` is its own fixed column (a property
    /// of that name is normalised to `timestamp_`).
    fn named(columns: &'static [(&'static str, ColumnType)]) -> Vec<(ColumnName, ColumnType)> {
        columns
            .iter()
            .map(|(name, t)| match *name {
                "timestamp" => (ColumnName::fixed(name), *t),
                _ => (column_name(name), *t),
            })
            .collect()
    }

    fn add(column: &str, column_type: ColumnType) -> SchemaChange {
        SchemaChange::AddColumn {
            column: column_name(column),
            column_type,
        }
    }

    fn widen(column: &str, width: u32) -> SchemaChange {
        SchemaChange::Widen {
            column: column_name(column),
            width,
        }
    }

    fn refused(columns: &[&str], cap: usize) -> Vec<(ColumnName, DiscardReason)> {
        columns
            .iter()
            .map(|name| (column_name(name), DiscardReason::ColumnCap { cap }))
            .collect()
    }

    fn apply(
        create: Option<&'static [(&'static str, ColumnType)]>,
        alter: Vec<SchemaChange>,
        refused: Vec<(ColumnName, DiscardReason)>,
        columns: &[(&str, ColumnType)],
    ) -> TablePlan {
        TablePlan::Apply(SchemaPlan {
            create: create.map(named),
            alter,
            refused,
            columns: schema(columns),
        })
    }

    struct Case {
        name: &'static str,
        table: &'static str,
        known: &'static [(&'static str, ColumnType)],
        observed: &'static [(&'static str, ColumnType)],
        caps: Caps,
        tables_in_schema: Option<usize>,
        expected: TablePlan,
    }

    const NO_CAPS: Caps = Caps {
        tables: None,
        columns: None,
        warehouse_columns: WAREHOUSE_MAX_COLUMNS,
    };

    fn caps(tables: Option<usize>, columns: Option<usize>) -> Caps {
        Caps::plan(tables, columns)
    }

    /// No plan; the warehouse's limit at `limit` columns (room for 16 own columns,
    /// `limit - 16` others).
    fn limit(limit: usize) -> Caps {
        Caps {
            warehouse_columns: limit,
            ..NO_CAPS
        }
    }

    fn over_limit(columns: &[&str], limit: usize) -> Vec<(ColumnName, DiscardReason)> {
        columns
            .iter()
            .map(|name| (column_name(name), DiscardReason::ColumnLimit { limit }))
            .collect()
    }

    fn cases() -> Vec<Case> {
        vec![
            Case {
                name: "a table that has every observed column needs nothing",
                table: "tracks",
                known: &[("id", KEY), ("event", Varchar(64))],
                observed: &[("event", Varchar(64))],
                caps: NO_CAPS,
                tables_in_schema: None,
                expected: apply(None, vec![], vec![], &[("id", KEY), ("event", Varchar(64))]),
            },
            Case {
                name: "new columns take the type that holds every observed value",
                table: "order_completed",
                known: &[("id", KEY), ("known", BigInt)],
                observed: &[
                    ("price", BigInt),
                    ("price", Double),
                    ("sku", Varchar(64)),
                    ("known", BigInt),
                    ("gift", Boolean),
                ],
                caps: NO_CAPS,
                tables_in_schema: None,
                expected: apply(
                    None,
                    vec![
                        add("gift", Boolean),
                        add("price", Double),
                        add("sku", Varchar(64)),
                    ],
                    vec![],
                    &[
                        ("id", KEY),
                        ("known", BigInt),
                        ("gift", Boolean),
                        ("price", Double),
                        ("sku", Varchar(64)),
                    ],
                ),
            },
            Case {
                name: "varchars widen (to 65535 at most); other types never change",
                table: "t",
                known: &[
                    ("id", KEY),
                    ("name", Varchar(64)),
                    ("note", Varchar(256)),
                    ("price", BigInt),
                    ("same", Varchar(1024)),
                ],
                observed: &[
                    ("name", Varchar(1024)),
                    ("note", Varchar(100_000)),
                    ("price", Varchar(64)),
                    ("same", Varchar(256)),
                ],
                caps: NO_CAPS,
                tables_in_schema: None,
                expected: apply(
                    None,
                    vec![widen("name", 1024), widen("note", 65535)],
                    vec![],
                    &[
                        ("id", KEY),
                        ("name", Varchar(1024)),
                        ("note", Varchar(65535)),
                        ("price", BigInt),
                        ("same", Varchar(1024)),
                    ],
                ),
            },
            Case {
                name: "a missing table is created with every observed column",
                table: "page_viewed",
                known: &[],
                observed: &[("url", Varchar(256)), ("depth", BigInt)],
                caps: NO_CAPS,
                tables_in_schema: None,
                expected: apply(
                    Some(&[("depth", BigInt), ("url", Varchar(256))]),
                    vec![],
                    vec![],
                    &[
                        ("id", KEY),
                        ("depth", BigInt),
                        ("url", Varchar(256)),
                        ("uuid_ts", Timestamp),
                    ],
                ),
            },
            Case {
                name: "users are keyed by id and always have a timestamp",
                table: "users",
                known: &[],
                observed: &[("plan", Varchar(64)), ("timestamp", Timestamp)],
                caps: NO_CAPS,
                tables_in_schema: None,
                expected: apply(
                    Some(&[("plan", Varchar(64)), ("timestamp", Timestamp)]),
                    vec![],
                    vec![],
                    &[
                        ("id", KEY),
                        ("plan", Varchar(64)),
                        ("timestamp", Timestamp),
                        ("uuid_ts", Timestamp),
                    ],
                ),
            },
            Case {
                name: "the table cap refuses a new table once the schema is full",
                table: "order_completed",
                known: &[],
                observed: &[("total", Double)],
                caps: caps(Some(4), None),
                tables_in_schema: Some(4),
                expected: TablePlan::Refuse(DiscardReason::TableCap { cap: 4 }),
            },
            Case {
                name: "the table cap admits a new table while there is room",
                table: "order_completed",
                known: &[],
                observed: &[("total", Double)],
                caps: caps(Some(4), None),
                tables_in_schema: Some(3),
                expected: apply(
                    Some(&[("total", Double)]),
                    vec![],
                    vec![],
                    &[("id", KEY), ("total", Double), ("uuid_ts", Timestamp)],
                ),
            },
            Case {
                name: "the table cap never refuses the tables tracktable always creates",
                table: "tracks",
                known: &[],
                observed: &[("event", Varchar(64))],
                caps: caps(Some(0), None),
                tables_in_schema: Some(9),
                expected: apply(
                    Some(&[("event", Varchar(64))]),
                    vec![],
                    vec![],
                    &[("id", KEY), ("event", Varchar(64)), ("uuid_ts", Timestamp)],
                ),
            },
            Case {
                name: "the table cap never refuses a table that exists",
                table: "order_completed",
                known: &[("id", KEY)],
                observed: &[("total", Double)],
                caps: caps(Some(1), None),
                tables_in_schema: Some(9),
                expected: apply(
                    None,
                    vec![add("total", Double)],
                    vec![],
                    &[("id", KEY), ("total", Double)],
                ),
            },
            Case {
                name: "the column cap, key and load time included, cuts a new table's columns in name order",
                table: "t",
                known: &[],
                observed: &[("d", BigInt), ("a", BigInt), ("c", BigInt), ("b", BigInt)],
                caps: caps(None, Some(4)),
                tables_in_schema: None,
                expected: apply(
                    Some(&[("a", BigInt), ("b", BigInt)]),
                    vec![],
                    refused(&["c", "d"], 4),
                    &[
                        ("id", KEY),
                        ("a", BigInt),
                        ("b", BigInt),
                        ("uuid_ts", Timestamp),
                    ],
                ),
            },
            Case {
                name: "the column cap counts a users table's id, timestamp and load time",
                table: "users",
                known: &[],
                observed: &[("a", BigInt), ("b", BigInt), ("c", BigInt)],
                caps: caps(None, Some(4)),
                tables_in_schema: None,
                expected: apply(
                    Some(&[("a", BigInt)]),
                    vec![],
                    refused(&["b", "c"], 4),
                    &[
                        ("id", KEY),
                        ("a", BigInt),
                        ("timestamp", Timestamp),
                        ("uuid_ts", Timestamp),
                    ],
                ),
            },
            Case {
                name: "a table at the column cap adds nothing but still widens",
                table: "t",
                known: &[("id", KEY), ("a", Varchar(64)), ("b", BigInt)],
                observed: &[("a", Varchar(256)), ("z", Boolean), ("c", BigInt)],
                caps: caps(None, Some(3)),
                tables_in_schema: None,
                expected: apply(
                    None,
                    vec![widen("a", 256)],
                    refused(&["c", "z"], 3),
                    &[("id", KEY), ("a", Varchar(256)), ("b", BigInt)],
                ),
            },
            Case {
                name: "a table below the column cap adds until it is full",
                table: "t",
                known: &[("id", KEY), ("a", BigInt)],
                observed: &[("c", BigInt), ("b", BigInt), ("d", BigInt)],
                caps: caps(None, Some(4)),
                tables_in_schema: None,
                expected: apply(
                    None,
                    vec![add("b", BigInt), add("c", BigInt)],
                    refused(&["d"], 4),
                    &[("id", KEY), ("a", BigInt), ("b", BigInt), ("c", BigInt)],
                ),
            },
            Case {
                name: "the warehouse's limit keeps room for tracktable's own columns",
                table: "t",
                known: &[],
                observed: &[
                    ("a", BigInt),
                    ("b", BigInt),
                    ("c", BigInt),
                    ("received_at", Timestamp),
                    ("user_id", Varchar(64)),
                ],
                caps: limit(18),
                tables_in_schema: None,
                expected: apply(
                    Some(&[
                        ("a", BigInt),
                        ("b", BigInt),
                        ("received_at", Timestamp),
                        ("user_id", Varchar(64)),
                    ]),
                    vec![],
                    over_limit(&["c"], 18),
                    &[
                        ("id", KEY),
                        ("a", BigInt),
                        ("b", BigInt),
                        ("received_at", Timestamp),
                        ("user_id", Varchar(64)),
                        ("uuid_ts", Timestamp),
                    ],
                ),
            },
            Case {
                name: "a table at the warehouse's limit takes its own columns, no property",
                table: "t",
                known: &[("id", KEY), ("a", BigInt), ("b", BigInt)],
                observed: &[("aa", BigInt), ("event", Varchar(64)), ("zz", Boolean)],
                caps: limit(18),
                tables_in_schema: None,
                expected: apply(
                    None,
                    vec![add("event", Varchar(64))],
                    over_limit(&["aa", "zz"], 18),
                    &[
                        ("id", KEY),
                        ("a", BigInt),
                        ("b", BigInt),
                        ("event", Varchar(64)),
                    ],
                ),
            },
            Case {
                name: "the tracking plan's cap still applies under the warehouse's limit",
                table: "t",
                known: &[("id", KEY)],
                observed: &[("a", BigInt), ("b", BigInt), ("c", BigInt)],
                caps: Caps {
                    columns: Some(3),
                    ..limit(18)
                },
                tables_in_schema: None,
                expected: apply(
                    None,
                    vec![add("a", BigInt), add("b", BigInt)],
                    refused(&["c"], 3),
                    &[("id", KEY), ("a", BigInt), ("b", BigInt)],
                ),
            },
            Case {
                name: "a column cap below the key still creates the table, with no column",
                table: "t",
                known: &[],
                observed: &[("a", BigInt)],
                caps: caps(None, Some(0)),
                tables_in_schema: None,
                expected: apply(
                    Some(&[]),
                    vec![],
                    refused(&["a"], 0),
                    &[("id", KEY), ("uuid_ts", Timestamp)],
                ),
            },
        ]
    }

    #[test]
    fn every_case_plans_as_expected() {
        for case in cases() {
            let plan = plan_table(
                case.table,
                &schema(case.known),
                &named(case.observed),
                &[],
                case.caps,
                case.tables_in_schema,
            );
            assert_eq!(plan, case.expected, "{}", case.name);
        }
    }

    #[test]
    fn new_columns_take_the_type_most_of_the_batch_has_and_segment_timestamps_are_timestamps() {
        use crate::route::{Row, Text, Value};
        use std::sync::Arc;
        let row = |id: usize, cells: Vec<(&str, Value)>| {
            let cells = cells
                .into_iter()
                .map(|(name, value)| match name {
                    "timestamp" => (ColumnName::fixed(&"timestamp"), value),
                    _ => (column_name(name), value),
                })
                .collect();
            Row::new(
                crate::route::naming::table_name("order_completed"),
                format!("m{id}"),
                Arc::from("o"),
                crate::decode::Position::line(id as u64),
                cells,
            )
        };
        let text = |s: &str| Value::Varchar(Text::new(s));
        // Two disputed columns, tallied together: `revenue` mostly doubles, `items`
        // mostly integers.
        let mut rows: Vec<Row> = (0..47)
            .map(|i| {
                row(
                    i,
                    vec![
                        ("revenue", Value::Double(i as f64 + 0.5)),
                        ("items", Value::BigInt(i as i64)),
                    ],
                )
            })
            .collect();
        rows.extend((47..50).map(|i| {
            row(
                i,
                vec![("items", text("several")), ("revenue", text("USD 185.85"))],
            )
        }));
        rows.push(row(50, vec![("timestamp", text("yesterday"))]));
        let observed = named(&[
            ("items", BigInt),
            ("items", Varchar(64)),
            ("revenue", Double),
            ("revenue", Varchar(64)),
            ("timestamp", Varchar(64)),
        ]);
        let TablePlan::Apply(plan) = plan_table(
            "order_completed",
            &TableSchema::new(),
            &observed,
            &rows,
            NO_CAPS,
            None,
        ) else {
            panic!("no caps: applied");
        };
        assert_eq!(
            plan.create,
            Some(named(&[
                ("items", BigInt),
                ("revenue", Double),
                ("timestamp", Timestamp)
            ]))
        );
        // Without rows each observed type is one vote: text holds both.
        let TablePlan::Apply(plan) = plan_table(
            "order_completed",
            &TableSchema::new(),
            &observed,
            &[],
            NO_CAPS,
            None,
        ) else {
            panic!("no caps: applied");
        };
        assert_eq!(
            plan.create,
            Some(named(&[
                ("items", Varchar(256)),
                ("revenue", Varchar(256)),
                ("timestamp", Timestamp)
            ]))
        );
    }

    #[test]
    fn catalogue_types_are_the_ones_tracktable_writes() {
        assert_eq!(catalogue_type("bigint", None), Some(BigInt));
        assert_eq!(catalogue_type("boolean", None), Some(Boolean));
        assert_eq!(catalogue_type("double precision", None), Some(Double));
        let timestamp = catalogue_type("timestamp without time zone", None);
        assert_eq!(timestamp, Some(Timestamp));
        assert_eq!(
            catalogue_type("character varying", Some(256)),
            Some(Varchar(256))
        );
        assert_eq!(
            catalogue_type("character varying", None),
            Some(Varchar(65535))
        );
        assert_eq!(
            catalogue_type("character varying", Some(0)),
            Some(Varchar(1))
        );
        assert_eq!(catalogue_type("timestamp with time zone", None), None);
        assert_eq!(catalogue_type("jsonb", None), None);
    }

    #[test]
    fn a_table_is_settled_only_when_it_exists_and_wants_nothing() {
        let known = schema(&[("id", KEY), ("a", Varchar(64))]);
        assert!(is_settled("t", &known, &named(&[("a", Varchar(64))])));
        assert!(!is_settled("t", &known, &named(&[("a", Varchar(256))])));
        assert!(!is_settled("t", &known, &named(&[("b", BigInt)])));
        assert!(!is_settled("t", &TableSchema::new(), &[]));
        // A column the cap refuses is not settled: the catalogue is read again.
        let full = schema(&[("id", KEY)]);
        let plan = plan_table(
            "t",
            &full,
            &named(&[("b", BigInt)]),
            &[],
            caps(None, Some(1)),
            None,
        );
        assert!(matches!(&plan, TablePlan::Apply(plan) if plan.is_empty()));
        assert!(!is_settled("t", &full, &named(&[("b", BigInt)])));
    }

    #[test]
    fn no_table_grows_past_the_warehouse_limit_however_many_properties_arrive() {
        static OWN: [&str; OWN_COLUMNS.len()] = OWN_COLUMNS;
        let observed: Vec<(ColumnName, ColumnType)> = (0..2000)
            .map(|i| (column_name(&format!("p{i:04}")), BigInt))
            .chain(
                OWN.iter()
                    .filter(|own| !["timestamp", "uuid_ts"].contains(own))
                    .map(|own| (ColumnName::fixed(own), Varchar(64))),
            )
            .collect();
        for table in ["t", "users"] {
            let TablePlan::Apply(plan) = plan_table(
                table,
                &TableSchema::new(),
                &observed,
                &[],
                Caps::default(),
                None,
            ) else {
                panic!("a table is never refused without a table cap");
            };
            let properties = plan.columns.keys().filter(|c| !is_own_column(c)).count();
            assert_eq!(properties, Caps::default().room_for_properties(), "{table}");
            assert!(plan.columns.len() <= WAREHOUSE_MAX_COLUMNS, "{table}");
            for (column, _) in observed.iter().filter(|(c, _)| is_own_column(c.as_str())) {
                assert!(
                    plan.columns.contains_key(column.as_str()),
                    "{table} keeps {column}"
                );
            }
            assert!(
                plan.refused.iter().all(|(column, reason)| {
                    !is_own_column(column.as_str())
                        && *reason == DiscardReason::ColumnLimit { limit: 1600 }
                }),
                "{table}: only properties are refused, naming the limit"
            );
            // Grown batch by batch, it stops at the limit as well.
            let mut known = plan.columns.clone();
            let more: Vec<(ColumnName, ColumnType)> = (0..50)
                .map(|i| (column_name(&format!("q{i}")), Boolean))
                .collect();
            if let TablePlan::Apply(plan) =
                plan_table(table, &known, &more, &[], Caps::default(), None)
            {
                assert!(plan.alter.is_empty(), "{table}: {:?}", plan.alter);
                assert_eq!(plan.refused.len(), 50);
                known = plan.columns;
            }
            assert!(known.len() <= WAREHOUSE_MAX_COLUMNS);
        }
    }

    #[test]
    fn a_table_that_refused_a_column_loads_the_columns_it_has() {
        let known = schema(&[("id", KEY), ("a", BigInt)]);
        let observed = named(&[("a", BigInt), ("b", Boolean), ("c", Double)]);
        assert_eq!(
            without_new_columns(&known, &observed),
            named(&[("a", BigInt)])
        );
    }

    #[test]
    fn applying_a_plan_settles_the_table() {
        for case in cases() {
            let observed = named(case.observed);
            if let TablePlan::Apply(plan) = plan_table(
                case.table,
                &schema(case.known),
                &observed,
                &[],
                case.caps,
                case.tables_in_schema,
            ) && plan.refused.is_empty()
            {
                assert!(
                    is_settled(case.table, &plan.columns, &observed),
                    "{}",
                    case.name
                );
            }
        }
    }
}
