//! plan: the pure decisions every warehouse shares — which DDL a table batch needs, and
//! what each value becomes in its column (the value itself, converted, or a discard).
//!
//! No SQL text here (that is `sql`), and no I/O.

use std::collections::{BTreeMap, HashMap};

use crate::columns::{VARCHAR_WIDTHS, creation_type};
use crate::route::{ColumnName, ColumnType, Value};

/// The columns a table has, by name.
pub type TableSchema = HashMap<String, ColumnType>;

/// One DDL step.
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

/// The changes that make `schema` hold everything `observed` in this batch. A column
/// keeps the type it was created with; only varchar widths grow (up to 65535).
pub fn plan_schema(
    schema: &TableSchema,
    observed: &[(ColumnName, ColumnType)],
) -> Vec<SchemaChange> {
    let mut by_column: BTreeMap<&ColumnName, Vec<ColumnType>> = BTreeMap::new();
    for (column, column_type) in observed {
        by_column.entry(column).or_default().push(*column_type);
    }
    let mut changes = Vec::new();
    for (column, types) in by_column {
        match schema.get(column.as_str()) {
            None => {
                if let Some(column_type) = creation_type(types.iter().copied()) {
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

fn max_width() -> u32 {
    VARCHAR_WIDTHS[VARCHAR_WIDTHS.len() - 1]
}

fn cap_width(column_type: ColumnType) -> ColumnType {
    match column_type {
        ColumnType::Varchar(width) => ColumnType::Varchar(width.min(max_width())),
        other => other,
    }
}

/// What a value becomes in a column.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Boolean(bool),
    BigInt(i64),
    Double(f64),
    /// Microseconds since the Unix epoch, UTC.
    Timestamp(i64),
    Text(String),
}

/// Why a value was discarded instead of loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiscardReason {
    /// The value's type cannot be stored in the column's type.
    TypeMismatch { column_type: ColumnType },
    /// The text is longer than the column, which is already at its widest.
    TooLong { bytes: usize, width: u32 },
    /// The table has no such column (it could not be added: see the log).
    NoColumn,
}

impl std::fmt::Display for DiscardReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DiscardReason::TypeMismatch { column_type } => write!(
                f,
                "value does not fit column type {}",
                column_type.sql_name()
            ),
            DiscardReason::TooLong { bytes, width } => {
                write!(f, "value is {bytes} bytes, longer than varchar({width})")
            }
            DiscardReason::NoColumn => f.write_str("table has no such column"),
        }
    }
}

/// Converts `value` for a column of `column_type`, or says why it cannot be stored.
pub fn cell_for(value: &Value, column_type: Option<ColumnType>) -> Result<Cell, DiscardReason> {
    let Some(column_type) = column_type else {
        return Err(DiscardReason::NoColumn);
    };
    match (column_type, value) {
        (ColumnType::Boolean, Value::Boolean(b)) => Ok(Cell::Boolean(*b)),
        (ColumnType::BigInt, Value::BigInt(i)) => Ok(Cell::BigInt(*i)),
        (ColumnType::Double, Value::Double(f)) => Ok(Cell::Double(*f)),
        (ColumnType::Double, Value::BigInt(i)) => Ok(Cell::Double(*i as f64)),
        (ColumnType::Timestamp, Value::Timestamp(t)) => Ok(Cell::Timestamp(t.0)),
        (ColumnType::Varchar(width), value) => {
            let text = value.to_text();
            if text.len() > width as usize {
                Err(DiscardReason::TooLong {
                    bytes: text.len(),
                    width,
                })
            } else {
                Ok(Cell::Text(text))
            }
        }
        (column_type, _) => Err(DiscardReason::TypeMismatch { column_type }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::naming::column_name;

    fn schema(columns: &[(&str, ColumnType)]) -> TableSchema {
        columns
            .iter()
            .map(|(name, t)| (name.to_string(), *t))
            .collect()
    }

    #[test]
    fn new_columns_are_added_with_the_type_that_holds_the_batch() {
        let observed = vec![
            (column_name("price"), ColumnType::BigInt),
            (column_name("price"), ColumnType::Double),
            (column_name("sku"), ColumnType::Varchar(64)),
            (column_name("known"), ColumnType::BigInt),
        ];
        let changes = plan_schema(&schema(&[("known", ColumnType::BigInt)]), &observed);
        assert_eq!(
            changes,
            vec![
                SchemaChange::AddColumn {
                    column: column_name("price"),
                    column_type: ColumnType::Double
                },
                SchemaChange::AddColumn {
                    column: column_name("sku"),
                    column_type: ColumnType::Varchar(64)
                },
            ]
        );
    }

    #[test]
    fn varchar_columns_widen_but_other_types_never_change() {
        let existing = schema(&[
            ("name", ColumnType::Varchar(64)),
            ("price", ColumnType::BigInt),
        ]);
        let observed = vec![
            (column_name("name"), ColumnType::Varchar(1024)),
            (column_name("price"), ColumnType::Varchar(64)),
        ];
        assert_eq!(
            plan_schema(&existing, &observed),
            vec![SchemaChange::Widen {
                column: column_name("name"),
                width: 1024
            }]
        );
        let huge = vec![(column_name("name"), ColumnType::Varchar(100_000))];
        assert_eq!(
            plan_schema(&existing, &huge),
            vec![SchemaChange::Widen {
                column: column_name("name"),
                width: 65535
            }]
        );
        assert!(
            plan_schema(&existing, &[(column_name("name"), ColumnType::Varchar(64))]).is_empty()
        );
    }

    #[test]
    fn cells_convert_or_say_why_not() {
        assert_eq!(
            cell_for(&Value::BigInt(5), Some(ColumnType::Double)),
            Ok(Cell::Double(5.0))
        );
        assert_eq!(
            cell_for(&Value::BigInt(5), Some(ColumnType::Varchar(64))),
            Ok(Cell::Text("5".into()))
        );
        assert_eq!(
            cell_for(&Value::Varchar("USD 5".into()), Some(ColumnType::BigInt)),
            Err(DiscardReason::TypeMismatch {
                column_type: ColumnType::BigInt
            })
        );
        assert_eq!(
            cell_for(
                &Value::Varchar("x".repeat(70)),
                Some(ColumnType::Varchar(64))
            ),
            Err(DiscardReason::TooLong {
                bytes: 70,
                width: 64
            })
        );
        assert_eq!(
            cell_for(&Value::Boolean(true), None),
            Err(DiscardReason::NoColumn)
        );
    }
}
