//! ddl: the shared plan (`warehouse::ddl`) run in Redshift's dialect.
//!
//! DDL runs before the load's transaction, one autocommitted statement at a time:
//! Redshift allows one column per `ALTER TABLE ... ADD COLUMN` and no `ALTER COLUMN
//! ... TYPE` inside a transaction block, and has no advisory locks. A concurrent
//! creator's "already exists" is tolerated, and what is left to do is planned again
//! from the catalogue, which is read after every change.

use super::RedshiftLoader;
use super::session::{RedshiftError, is_bound_by_view, is_race};
use super::sql;
use crate::route::{ColumnName, ColumnType};
use crate::warehouse::ddl::{self, SchemaChange, TablePlan};
use crate::warehouse::discard::DiscardReason;
use crate::warehouse::plan::TableSchema;
use crate::warehouse::postgres::query_error;
use crate::warehouse::{FailureClass, LoadReport, TableBatch, WarehouseError};

impl RedshiftLoader {
    /// The table's columns as the catalogue has them (the key column marks the table
    /// as existing), or none if it does not exist.
    async fn read_columns(&self, table: &str) -> Result<TableSchema, RedshiftError> {
        let context = format!("read the columns of {table}");
        let rows = self
            .session
            .query(
                &sql::select_columns(self.warehouse.schema(), table),
                &context,
            )
            .await?;
        let mut columns = TableSchema::new();
        for row in rows {
            let cell = |index| row.try_get(index).map_err(query_error(context.as_str()));
            let (Some(name), Some(data_type)) = (cell(0)?, cell(1)?) else {
                continue;
            };
            if name == crate::warehouse::sql::key_column(table) {
                columns.insert(name.to_owned(), ColumnType::Varchar(u32::MAX));
                continue;
            }
            let length: Option<u32> = cell(2)?.and_then(|length| length.parse().ok());
            match ddl::catalogue_type(data_type, length) {
                Some(column_type) => {
                    columns.insert(name.to_owned(), column_type);
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

    /// Creates the table or adds and widens its columns, one autocommitted statement at
    /// a time; returns the columns as the catalogue has them afterwards, or the reason
    /// the table cap refuses the table.
    pub(super) async fn settle_schema(
        &self,
        batch: &TableBatch,
        report: &mut LoadReport,
    ) -> Result<Result<TableSchema, DiscardReason>, RedshiftError> {
        let table = batch.table.as_str();
        let caps = self.warehouse.connection.caps();
        if let Some(known) = self.warehouse.connection.cached(table)
            && ddl::is_settled(table, &known, &batch.observed)
        {
            return Ok(Ok(known));
        }
        let mut columns = self.read_columns(table).await?;
        let tables_in_schema = match caps.table_cap(table) {
            Some(_) if columns.is_empty() => Some(self.count_tables().await?),
            _ => None,
        };
        let mut plan = match ddl::plan_table(
            table,
            &columns,
            &batch.observed,
            &batch.rows,
            caps,
            tables_in_schema,
        ) {
            TablePlan::Refuse(reason) => return Ok(Err(reason)),
            TablePlan::Apply(plan) => plan,
        };
        if let Some(create) = &plan.create {
            self.create_table(batch, create, report).await?;
            // What is left to change comes from the catalogue: a concurrent creator may
            // have made the table with other columns.
            columns = self.read_columns(table).await?;
            plan = match ddl::plan_table(table, &columns, &batch.observed, &batch.rows, caps, None)
            {
                TablePlan::Refuse(reason) => return Ok(Err(reason)),
                TablePlan::Apply(plan) => plan,
            };
        }
        ddl::log_refused(table, batch.batch.0, &plan.refused);
        if self.alter_table(batch, &plan.alter, report).await? {
            columns = self.read_columns(table).await?;
        }
        Ok(Ok(columns))
    }

    /// The tables that count against the table cap. Redshift has no advisory locks, so
    /// processes creating different tables at once may overshoot the cap by a few.
    async fn count_tables(&self) -> Result<usize, RedshiftError> {
        Ok(self
            .session
            .query(&sql::count_tables(self.warehouse.schema()), "count tables")
            .await?
            .first()
            .and_then(|row| row.try_get(0).ok().flatten())
            .and_then(|count| count.parse().ok())
            .unwrap_or(0))
    }

    /// Creates the table with the columns the plan starts it with. A concurrent
    /// creator's "already exists" is no error: the catalogue is read next anyway.
    async fn create_table(
        &self,
        batch: &TableBatch,
        create: &[(ColumnName, ColumnType)],
        report: &mut LoadReport,
    ) -> Result<(), RedshiftError> {
        let table = batch.table.as_str();
        let listed: Vec<(&str, ColumnType)> = create
            .iter()
            .map(|(column, column_type)| (column.as_str(), *column_type))
            .collect();
        let statement = sql::create_table(self.warehouse.schema(), table, &listed);
        match self
            .session
            .execute(&statement, &format!("create table {table}"))
            .await
        {
            Ok(_) => {
                report.schema_changes += 1 + create.len() as u64;
                tracing::info!(
                    table,
                    batch = batch.batch.0,
                    columns = create.len(),
                    "table created"
                );
                Ok(())
            }
            Err(error) if is_race(&error) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Applies column changes one statement at a time (Redshift allows one column per
    /// `ALTER TABLE`); a change a concurrent loader made first is no error, and a column
    /// the table cannot take ends the additions. Returns whether any change was
    /// applied.
    async fn alter_table(
        &self,
        batch: &TableBatch,
        changes: &[SchemaChange],
        report: &mut LoadReport,
    ) -> Result<bool, RedshiftError> {
        let schema = self.warehouse.schema();
        let table = batch.table.as_str();
        let mut applied = Vec::new();
        for change in changes {
            if let SchemaChange::Widen { column, .. } = change
                && self.warehouse.is_bound_by_view(table, column.as_str())
            {
                continue;
            }
            let statement = match change {
                SchemaChange::AddColumn {
                    column,
                    column_type,
                } => sql::add_column(schema, table, column.as_str(), *column_type),
                SchemaChange::Widen { column, width } => {
                    sql::widen_varchar(schema, table, column.as_str(), *width)
                }
            };
            match self
                .session
                .execute(&statement, &format!("change table {table}"))
                .await
            {
                Ok(_) => {
                    report.schema_changes += 1;
                    applied.push(change);
                }
                Err(error) if is_race(&error) => {}
                // A view bound to the table reads the column (Redshift cannot drop and
                // recreate it around the change, which runs outside a transaction):
                // the column keeps its width, longer values go to `_discards`, and
                // loading goes on.
                Err(error)
                    if matches!(change, SchemaChange::Widen { .. }) && is_bound_by_view(&error) =>
                {
                    if let SchemaChange::Widen { column, width } = change {
                        self.warehouse.note_bound_by_view(table, column.as_str());
                        tracing::warn!(table, column = column.as_str(), width, error = %error, "a view bound to this table reads the column, so it cannot widen: it keeps its width and longer values go to _discards (recreate the view WITH NO SCHEMA BINDING, then restart, to let it widen)");
                    }
                }
                // The table takes no more columns (the plan keeps under the limit, but
                // columns made by hand count too): the batch goes on with the columns
                // the table has, the others' values to `_discards`.
                Err(error)
                    if error.class() == FailureClass::Data
                        && matches!(change, SchemaChange::AddColumn { .. }) =>
                {
                    tracing::warn!(table, batch = batch.batch.0, error = %error, "the warehouse refused a column this batch needs; loading the columns the table has (the others' values go to _discards)");
                    break;
                }
                Err(error) => return Err(error),
            }
        }
        ddl::log_changes(table, batch.batch.0, applied.iter().copied());
        Ok(!applied.is_empty())
    }
}
