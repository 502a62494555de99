//! ddl: the shared plan (`warehouse::ddl`) run in PostgreSQL's dialect.
//!
//! A table batch's schema changes run in a short transaction of their own under an
//! advisory lock per table, so workers and processes that grow the same table at once
//! serialise instead of failing, and no lock is held while rows are copied: loads of
//! different tables run in parallel. Committed DDL that outlives a failed data load is
//! harmless: it is what the retry needs. The catalogue is read again under the lock,
//! and the table cap counted under the schema's lock, so the plan starts from the
//! table as it is.

use std::borrow::Cow;

use tokio_postgres::Transaction;

use super::connect::{PostgresError, query_error};
use super::prepared::Prepared;
use super::{PostgresLoader, PostgresWarehouse};
use crate::route::{ColumnName, ColumnType};
use crate::warehouse::ddl::{self, SchemaChange, SchemaPlan, TablePlan};
use crate::warehouse::discard::DiscardReason;
use crate::warehouse::plan::TableSchema;
use crate::warehouse::{FailureClass, LoadReport, TableBatch, WarehouseError, sql};

/// What [`PostgresLoader::settle_schema`] found: the table's columns (and whether
/// this load created it), or the table cap's refusal.
pub(super) enum Settled {
    Ready { columns: TableSchema, created: bool },
    Refused(DiscardReason),
}

impl PostgresLoader {
    /// Brings the table up to what the batch observed; the DDL it ran is counted in
    /// `report`. Nothing is sent when the cached columns already hold the batch. If
    /// the server refuses a column the plan adds (`54011`: PostgreSQL counts columns
    /// dropped by hand towards its limit), the batch goes on with the columns the
    /// table has, the others' values to `_discards`.
    pub(super) async fn settle_schema(
        &mut self,
        batch: &TableBatch,
        report: &mut LoadReport,
    ) -> Result<Settled, PostgresError> {
        let table = batch.table.as_str();
        let mut columns = self.warehouse.cached(table).unwrap_or_default();
        if ddl::is_settled(table, &columns, &batch.observed) {
            return Ok(Settled::Ready {
                columns,
                created: false,
            });
        }
        let mut observed = Cow::Borrowed(batch.observed.as_slice());
        loop {
            let transaction = self
                .client
                .transaction()
                .await
                .map_err(query_error("begin"))?;
            if columns.is_empty() {
                let schema = &self.warehouse.schema;
                columns = read_columns(&transaction, &mut self.prepared, schema, table).await?;
            }
            if ddl::is_settled(table, &columns, &observed) {
                transaction
                    .commit()
                    .await
                    .map_err(query_error(format!("commit schema changes of {table}")))?;
                return Ok(Settled::Ready {
                    columns,
                    created: false,
                });
            }
            let changed = change_schema(
                &transaction,
                &mut self.prepared,
                &self.warehouse,
                batch,
                &observed,
                report,
            )
            .await;
            let settled = match changed {
                Ok(settled) => settled,
                Err(error)
                    if error.class() == FailureClass::Data
                        && matches!(observed, Cow::Borrowed(_)) =>
                {
                    transaction
                        .rollback()
                        .await
                        .map_err(query_error(format!("roll back the DDL of {table}")))?;
                    tracing::warn!(table, batch = batch.batch.0, error = %error, "the warehouse refused a column this batch needs; loading the columns the table has (the others' values go to _discards)");
                    observed = Cow::Owned(ddl::without_new_columns(&columns, &batch.observed));
                    continue;
                }
                Err(error) => return Err(error),
            };
            let context = match settled {
                Settled::Refused(_) => "end the schema transaction".to_owned(),
                Settled::Ready { .. } => format!("commit schema changes of {table}"),
            };
            transaction.commit().await.map_err(query_error(context))?;
            return Ok(settled);
        }
    }
}

/// Under the table's DDL lock: reads the catalogue again (another worker or process may
/// have changed the table meanwhile), plans for `observed`, and runs the plan.
async fn change_schema(
    transaction: &Transaction<'_>,
    prepared: &mut Prepared,
    warehouse: &PostgresWarehouse,
    batch: &TableBatch,
    observed: &[(ColumnName, ColumnType)],
    report: &mut LoadReport,
) -> Result<Settled, PostgresError> {
    let table = batch.table.as_str();
    transaction
        .execute(sql::DDL_LOCK, &[&warehouse.table_lock_key(table)])
        .await
        .map_err(query_error("take the DDL lock"))?;
    let columns = read_columns(transaction, prepared, &warehouse.schema, table).await?;
    let tables_in_schema = match warehouse.caps.table_cap(table) {
        Some(_) if columns.is_empty() => Some(count_tables(transaction, warehouse).await?),
        _ => None,
    };
    let caps = warehouse.caps;
    match ddl::plan_table(
        table,
        &columns,
        observed,
        &batch.rows,
        caps,
        tables_in_schema,
    ) {
        TablePlan::Refuse(reason) => Ok(Settled::Refused(reason)),
        TablePlan::Apply(plan) => {
            apply_plan(transaction, &warehouse.schema, batch, &plan, report).await?;
            Ok(Settled::Ready {
                created: plan.create.is_some(),
                columns: plan.columns,
            })
        }
    }
}

/// The tables that count against the table cap, counted under the schema's lock so
/// that workers creating different tables at once cannot overshoot the cap.
async fn count_tables(
    transaction: &Transaction<'_>,
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

/// Runs `plan`: the table with every column it starts with in one statement (the table
/// and its columns appear together), then every column change in one `ALTER TABLE` (a
/// new event table brings dozens of columns, and one ALTER per column made first loads
/// DDL-bound).
async fn apply_plan(
    transaction: &Transaction<'_>,
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
        let views = set_views_aside(transaction, schema, table, &plan.alter).await?;
        let clauses: Vec<String> = plan.alter.iter().map(alter_clause).collect();
        transaction
            .batch_execute(&sql::alter_table(schema, table, &clauses))
            .await
            .map_err(query_error(format!("change table {table}")))?;
        views.restore(transaction, table).await?;
        report.schema_changes += plan.alter.len() as u64;
        ddl::log_changes(table, batch.batch.0, &plan.alter);
    }
    ddl::log_refused(table, batch.batch.0, &plan.refused);
    Ok(())
}

/// Views dropped so their table's columns can widen, and how to recreate them.
struct ViewsAside {
    /// Each view's statements, shallowest first: its `CREATE`, owner, comment, grants.
    recreate: Vec<Vec<String>>,
}

/// Drops the views that depend on the columns `changes` widen (PostgreSQL refuses
/// `ALTER COLUMN ... TYPE` under a view, `0A000`), deepest first, recording how to
/// recreate each. In the DDL transaction: nobody sees them missing, and if their
/// recreation fails the widening rolls back with it. Only widening needs it; adding a
/// column never touches a view.
async fn set_views_aside(
    transaction: &Transaction<'_>,
    schema: &str,
    table: &str,
    changes: &[SchemaChange],
) -> Result<ViewsAside, PostgresError> {
    let widened: Vec<&str> = changes
        .iter()
        .filter_map(|change| match change {
            SchemaChange::Widen { column, .. } => Some(column.as_str()),
            SchemaChange::AddColumn { .. } => None,
        })
        .collect();
    if widened.is_empty() {
        return Ok(ViewsAside {
            recreate: Vec::new(),
        });
    }
    let context = || format!("find the views on the columns of {table} being widened");
    let rows = transaction
        .query(sql::SELECT_DEPENDENT_VIEWS, &[&schema, &table, &widened])
        .await
        .map_err(query_error(context()))?;
    let mut recreate = Vec::with_capacity(rows.len());
    let mut drops = Vec::with_capacity(rows.len());
    for row in &rows {
        let drop: String = row.try_get(1).map_err(query_error(context()))?;
        let statements: Vec<String> = row.try_get(2).map_err(query_error(context()))?;
        drops.push(drop);
        recreate.push(statements);
    }
    for drop in drops.iter().rev() {
        transaction
            .batch_execute(drop)
            .await
            .map_err(query_error(format!(
                "drop a view on {table} to widen its columns ({drop})"
            )))?;
    }
    if !drops.is_empty() {
        tracing::info!(
            table,
            views = drops.len(),
            "views on columns being widened are recreated after the change"
        );
    }
    Ok(ViewsAside { recreate })
}

impl ViewsAside {
    async fn restore(
        self,
        transaction: &Transaction<'_>,
        table: &str,
    ) -> Result<(), PostgresError> {
        for statement in self.recreate.iter().flatten() {
            transaction
                .batch_execute(statement)
                .await
                .map_err(query_error(format!(
                    "recreate a view on {table} after widening its columns ({statement})"
                )))?;
        }
        Ok(())
    }
}

fn alter_clause(change: &SchemaChange) -> String {
    match change {
        SchemaChange::AddColumn {
            column,
            column_type,
        } => sql::add_column_clause(column.as_str(), *column_type),
        SchemaChange::Widen { column, width } => sql::widen_clause(column.as_str(), *width),
    }
}

/// The table's columns as the catalogue has them (the key column marks the table as
/// existing), or none if it does not exist.
pub(super) async fn read_columns(
    transaction: &Transaction<'_>,
    prepared: &mut Prepared,
    schema: &str,
    table: &str,
) -> Result<TableSchema, PostgresError> {
    let context = || format!("read the columns of {table}");
    let statement = prepared
        .get(transaction, sql::SELECT_COLUMNS, context)
        .await?;
    let rows = transaction
        .query(&statement, &[&schema, &table])
        .await
        .map_err(query_error(context()))?;
    let mut columns = TableSchema::new();
    for row in rows {
        let name: String = row.try_get(0).map_err(query_error(context()))?;
        let data_type: &str = row.try_get(1).map_err(query_error(context()))?;
        let length: Option<i32> = row.try_get(2).map_err(query_error(context()))?;
        if name == sql::key_column(table) {
            columns.insert(name, ColumnType::Varchar(u32::MAX));
            continue;
        }
        let length = length.map(|length| length.max(1) as u32);
        match ddl::catalogue_type(data_type, length) {
            Some(column_type) => {
                columns.insert(name, column_type);
            }
            None => tracing::warn!(
                table,
                column = name,
                data_type,
                "column has a type tracktable does not write; its values go to _discards"
            ),
        }
    }
    Ok(columns)
}
