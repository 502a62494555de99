//! plan: what each value of a table batch becomes in its column — the value itself,
//! converted, or a discard with its reason — and where each column goes in a load.
//!
//! Pure and shared by both warehouses; which DDL a batch needs is `ddl`'s. No SQL text
//! here (that is `sql`), and no I/O.

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use super::ddl::{Caps, is_own_column};
use super::discard::{Discard, DiscardReason};
use crate::columns::{AddressHasher, ColumnWalk};
use crate::route::naming::ColumnName;
use crate::route::{ColumnType, Row, ValueRef, own};

/// The columns a table has, by name.
pub type TableSchema = HashMap<String, ColumnType>;

/// What a value becomes in a column. Text borrows the row's value where it can: a
/// load converts every cell of every row, and copying each string cost more than
/// encoding it.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell<'a> {
    Boolean(bool),
    BigInt(i64),
    Double(f64),
    /// Microseconds since the Unix epoch, UTC.
    Timestamp(i64),
    Text(Cow<'a, str>),
}

/// The largest integer magnitude below which every integer has an exact `f64`: 2^53.
const EXACT_IN_DOUBLE: u64 = 1 << 53;

/// Converts `value` for a column of `column_type`, or says why it cannot be stored.
/// Text is searched for NUL characters only when `nul_possible` (see
/// [`Row::may_hold_nul`]).
#[inline]
pub fn cell_for(
    value: ValueRef<'_>,
    column_type: Option<ColumnType>,
    nul_possible: bool,
) -> Result<Cell<'_>, DiscardReason> {
    let Some(column_type) = column_type else {
        return Err(DiscardReason::NoColumn);
    };
    match (column_type, value) {
        (ColumnType::Boolean, ValueRef::Boolean(b)) => Ok(Cell::Boolean(b)),
        (ColumnType::BigInt, ValueRef::BigInt(i)) => Ok(Cell::BigInt(i)),
        (ColumnType::Double, ValueRef::Double(f)) => Ok(Cell::Double(f)),
        // Only an integer a double holds exactly: past 2^53 the cast would store a
        // different number, so the value goes to `_discards` with its exact digits.
        (ColumnType::Double, ValueRef::BigInt(i)) if i.unsigned_abs() <= EXACT_IN_DOUBLE => {
            Ok(Cell::Double(i as f64))
        }
        (ColumnType::Timestamp, ValueRef::Timestamp(t)) => Ok(Cell::Timestamp(t.0)),
        (ColumnType::Varchar(width), value) => {
            let text = match value {
                ValueRef::Varchar(text) => Cow::Borrowed(text),
                other => Cow::Owned(other.to_text()),
            };
            if nul_possible && text.contains('\0') {
                Err(DiscardReason::Nul)
            } else if text.len() > width as usize {
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

/// A column's position in a load and its type; `None` when the table has no such column.
type Slot = Option<(usize, ColumnType)>;

/// Where one load puts each column: the key first, then every other column of the table
/// but the load time, in name order. Built once per (batch, table). Names are interned
/// (`route::naming`), so a cell finds its place by its name's address: one integer hash
/// per cell, where hashing or comparing every name string was a third of the loader's
/// time. A name that is not interned (past the interner's budget) only makes the
/// address table larger, never a cell misplaced.
pub struct Layout<'a> {
    /// The COPY column list.
    pub names: Vec<&'a str>,
    /// Name address → position and type; `None` when the table has no such column.
    /// The rows borrowed for `'a` keep every address alive, so none is reused.
    slots: HashMap<usize, Slot, BuildHasherDefault<AddressHasher>>,
    /// Name → position and type, from which `slots` fills as names first appear.
    positions: HashMap<&'a str, (usize, ColumnType)>,
    /// The slots of the names rows use, in the order they name them: rows of a table
    /// list their names in a steady order, optional properties only skipping some, and
    /// a few comparisons cost less than a hash probe per cell.
    walk: ColumnWalk<Slot>,
    /// The caps on columns per table, and how many columns (and of those, how many
    /// not tracktable's own) the table has: a column missing because of a cap is
    /// discarded with the cap as its reason.
    caps: Caps,
    columns: usize,
    properties: usize,
    /// One cell per name, of the row placed last.
    cells: Vec<Option<Cell<'a>>>,
}

impl<'a> Layout<'a> {
    /// The layout of every column of a table with `schema` whose key column is `key`,
    /// whatever the rows use: absent columns load as NULL. Listing only the columns the
    /// rows use took a pass over every cell of the batch first, cells written seconds
    /// earlier and cold in cache by then (5% of tracktable's CPU in a warm round, a
    /// quarter of the loader's); instead each name's address is learnt as `place` meets
    /// it. A batch of thousands of rows uses nearly every column of its table anyway.
    pub fn of_table(
        key: &'a str,
        schema: &'a TableSchema,
        max_columns: Option<usize>,
    ) -> Layout<'a> {
        Layout::under(key, schema, Caps::plan(None, max_columns))
    }

    /// [`Layout::of_table`] under `caps` (the tracking plan's and the warehouse's
    /// column limit), which name the reason a column is missing.
    pub fn under(key: &'a str, schema: &'a TableSchema, caps: Caps) -> Layout<'a> {
        // The load time is the warehouse's to set (a column default), never a cell's.
        let mut used: Vec<(&'a str, ColumnType)> = schema
            .iter()
            .filter(|(name, _)| name.as_str() != key && name.as_str() != own::LOAD_TIME)
            .map(|(name, column_type)| (name.as_str(), *column_type))
            .collect();
        used.sort_unstable();
        let positions = used
            .iter()
            .enumerate()
            .map(|(index, (name, column_type))| (*name, (index + 1, *column_type)))
            .collect();
        let mut names = vec![key];
        names.extend(used.into_iter().map(|(name, _)| name));
        Layout {
            cells: vec![None; names.len()],
            names,
            slots: HashMap::default(),
            positions,
            walk: ColumnWalk::default(),
            caps,
            columns: schema.len(),
            properties: schema.keys().filter(|name| !is_own_column(name)).count(),
        }
    }

    /// `row`'s key and values, one cell per name (`None` for a column the row lacks);
    /// every value of `table` that cannot be stored goes to `discards` with its reason
    /// instead. The row is borrowed for the layout's life: `slots` remembers names by
    /// address, and a name freed while the layout lives could give its address to
    /// another.
    pub fn place(
        &mut self,
        table: &str,
        row: &'a Row,
        discards: &mut Vec<Discard>,
    ) -> &[Option<Cell<'a>>] {
        // Not `fill(None)`: it clones a `None` into every cell, many times the cost.
        self.cells.iter_mut().for_each(|cell| *cell = None);
        self.cells[0] = Some(Cell::Text(Cow::Borrowed(row.message_id.as_str())));
        let mut cursor = 0;
        for mut part in row.cell_parts() {
            while let Some((word, value)) = part.next_word() {
                let address = ColumnName::word_address(word);
                // Only the slow paths need the name itself.
                // SAFETY: the word is held by `row`'s cells, borrowed here.
                let column = || unsafe { ColumnName::from_word(word) };
                let slot = match self.walk.find(&mut cursor, address) {
                    Some(slot) => *slot,
                    None => {
                        let slot = self.slot(address, column().as_str());
                        self.walk.insert(&mut cursor, address, slot);
                        slot
                    }
                };
                let reason = match slot {
                    Some((index, column_type)) => {
                        match cell_for(value, Some(column_type), row.may_hold_nul) {
                            Ok(cell) => {
                                self.cells[index] = Some(cell);
                                continue;
                            }
                            Err(reason) => reason,
                        }
                    }
                    None => self
                        .caps
                        .refuses(self.columns, self.properties, column().as_str())
                        .unwrap_or(DiscardReason::NoColumn),
                };
                discards.push(Discard::new(table, column().as_str(), row, value, reason));
            }
        }
        &self.cells
    }

    /// The slot of the name at `address`: a name not yet in `slots` is looked up by its
    /// text once, and `None` (the table has no such column) is remembered too.
    fn slot(&mut self, address: usize, name: &str) -> Slot {
        match self.slots.get(&address) {
            Some(slot) => *slot,
            None => {
                let slot = self.positions.get(name).copied();
                self.slots.insert(address, slot);
                slot
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::Value;
    use crate::route::naming::column_name;

    #[test]
    fn cells_convert_or_say_why_not() {
        assert_eq!(
            cell_for(Value::BigInt(5).to_ref(), Some(ColumnType::Double), true),
            Ok(Cell::Double(5.0))
        );
        assert_eq!(
            cell_for(
                Value::BigInt(5).to_ref(),
                Some(ColumnType::Varchar(64)),
                true
            ),
            Ok(Cell::Text("5".into()))
        );
        // A double holds every integer up to 2^53 exactly, and no further.
        assert_eq!(
            cell_for(
                Value::BigInt(-(1 << 53)).to_ref(),
                Some(ColumnType::Double),
                true
            ),
            Ok(Cell::Double(-9_007_199_254_740_992.0))
        );
        assert_eq!(
            cell_for(
                Value::BigInt((1 << 53) + 1).to_ref(),
                Some(ColumnType::Double),
                true
            ),
            Err(DiscardReason::TypeMismatch {
                column_type: ColumnType::Double
            })
        );
        assert_eq!(
            cell_for(
                Value::Varchar("USD 5".into()).to_ref(),
                Some(ColumnType::BigInt),
                true
            ),
            Err(DiscardReason::TypeMismatch {
                column_type: ColumnType::BigInt
            })
        );
        assert_eq!(
            cell_for(
                Value::Varchar("x".repeat(70).into()).to_ref(),
                Some(ColumnType::Varchar(64)),
                true
            ),
            Err(DiscardReason::TooLong {
                bytes: 70,
                width: 64
            })
        );
        assert_eq!(
            cell_for(Value::Boolean(true).to_ref(), None, true),
            Err(DiscardReason::NoColumn)
        );
        assert_eq!(
            cell_for(
                Value::Varchar("a\0b".into()).to_ref(),
                Some(ColumnType::Varchar(64)),
                true
            ),
            Err(DiscardReason::Nul)
        );
    }

    #[test]
    fn a_row_that_may_hold_a_nul_has_its_nul_text_discarded() {
        let schema: TableSchema = [("text".to_owned(), ColumnType::Varchar(64))].into();
        let row = Row::new(
            crate::route::naming::table_name("sent"),
            "m1".into(),
            "obj".into(),
            crate::decode::Position::line(1),
            vec![(column_name("text"), Value::Varchar("a\0b".into()))],
        );
        let trusted = Row {
            may_hold_nul: false,
            ..row.clone()
        };
        let mut layout = Layout::of_table("message_id", &schema, None);
        let mut discards = Vec::new();
        let cells = layout.place("sent", &row, &mut discards);
        assert_eq!(cells[1], None);
        assert_eq!(discards.len(), 1);
        assert_eq!(discards[0].value, "a\\u0000b");
        // A row that says it holds none is taken at its word: route sets the flag from
        // the line (see `route::tests`), so the check is not repeated per text.
        let mut discards = Vec::new();
        let cells = layout.place("sent", &trusted, &mut discards);
        assert_eq!(cells[1], Some(Cell::Text("a\0b".into())));
        assert!(discards.is_empty());
    }

    #[test]
    fn cells_land_in_their_columns_whatever_the_order_of_names_from_row_to_row() {
        let schema: TableSchema = [
            ("a".to_owned(), ColumnType::BigInt),
            ("b".to_owned(), ColumnType::BigInt),
            ("c".to_owned(), ColumnType::BigInt),
        ]
        .into();
        let row = |id: &str, names: &[&str]| {
            let cells = names
                .iter()
                .zip(1..)
                .map(|(name, value)| (column_name(name), Value::BigInt(value)))
                .collect();
            Row::new(
                crate::route::naming::table_name("t"),
                id.into(),
                "obj".into(),
                crate::decode::Position::line(1),
                cells,
            )
        };
        let rows = [
            row("m1", &["a", "b", "c"]),
            row("m2", &["b", "a"]),
            row("m3", &["a", "x", "c"]),
            row("m4", &["c", "b", "a", "x"]),
            row("m5", &["a", "b", "c"]),
            // The same names at the same places as the row before.
            row("m6", &["a", "b", "c"]),
            row("m7", &["a", "b"]),
        ];
        type Placed = (Vec<Vec<Option<i64>>>, Vec<(String, String)>);
        fn place_all<'a>(layout: &mut Layout<'a>, rows: &'a [Row]) -> Placed {
            let mut placed = Vec::new();
            let mut discards = Vec::new();
            for row in rows {
                let cells = layout.place("t", row, &mut discards);
                let values: Vec<Option<i64>> = cells[1..4]
                    .iter()
                    .map(|cell| match cell {
                        Some(Cell::BigInt(value)) => Some(*value),
                        _ => None,
                    })
                    .collect();
                assert!(cells[4..].iter().all(Option::is_none), "{cells:?}");
                placed.push(values);
            }
            let missing: Vec<(String, String)> = discards
                .iter()
                .map(|discard| (discard.message_id.clone(), discard.column.clone()))
                .collect();
            (placed, missing)
        }
        let expected = vec![
            vec![Some(1), Some(2), Some(3)],
            vec![Some(2), Some(1), None],
            vec![Some(1), None, Some(3)],
            vec![Some(3), Some(2), Some(1)],
            vec![Some(1), Some(2), Some(3)],
            vec![Some(1), Some(2), Some(3)],
            vec![Some(1), Some(2), None],
        ];
        let missing = vec![
            ("m3".to_owned(), "x".to_owned()),
            ("m4".to_owned(), "x".to_owned()),
        ];
        // Every column of the table, names learnt as they come: a column no row uses
        // (`d`) loads NULL.
        let mut wider = schema.clone();
        wider.insert("d".to_owned(), ColumnType::BigInt);
        let mut layout = Layout::of_table("message_id", &wider, None);
        assert_eq!(layout.names, ["message_id", "a", "b", "c", "d"]);
        assert_eq!(place_all(&mut layout, &rows), (expected, missing));
        // A name the table lacks because of the plan's cap says so.
        let mut layout = Layout::of_table("message_id", &wider, Some(4));
        let mut discards = Vec::new();
        layout.place("t", &rows[2], &mut discards);
        assert_eq!(discards.len(), 1);
        assert_eq!(discards[0].reason, DiscardReason::ColumnCap { cap: 4 });
        // A property the warehouse's limit keeps out says so.
        let limited = Caps {
            warehouse_columns: 4 + crate::warehouse::ddl::OWN_COLUMNS.len(),
            ..Caps::default()
        };
        let mut layout = Layout::under("message_id", &wider, limited);
        let mut discards = Vec::new();
        layout.place("t", &rows[2], &mut discards);
        assert_eq!(
            discards[0].reason,
            DiscardReason::ColumnLimit {
                limit: limited.warehouse_columns
            }
        );
    }
}
