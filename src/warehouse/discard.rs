//! discard: values, and whole rows, that cannot be stored where they belong, and why.
//!
//! A discard is data, not an error: it goes to `_discards` with its reason, a pointer to
//! its source (object and line) and as much of the value as the warehouse can hold.
//! [`DiscardReason`] is the one place a reason is named: its `Display` text is what
//! `_discards.reason` holds (users' tables already hold these texts, so they never
//! change), and [`DiscardReason::label`] is its metric label. No I/O here.

use std::collections::HashMap;

use crate::route::{ColumnType, Row, ValueRef};

/// Why a value (or a whole row) went to `_discards` instead of its column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiscardReason {
    /// The value's type cannot be stored in the column's type.
    TypeMismatch { column_type: ColumnType },
    /// The text is longer than the column, which is already at its widest.
    TooLong { bytes: usize, width: u32 },
    /// The table has no such column (it could not be added: see the log).
    NoColumn,
    /// Text with a NUL character, which neither PostgreSQL nor Redshift can store.
    Nul,
    /// The table is at the tracking plan's cap on columns per table.
    ColumnCap { cap: usize },
    /// Whole row: the tracking plan's cap on tables keeps its table from being created.
    TableCap { cap: usize },
    /// Whole row: its key (message id, or user or group id) holds a NUL character.
    KeyNul,
    /// Whole row: its key is longer than the key column holds (Redshift).
    KeyTooLong { bytes: usize, max: usize },
    /// The table is at the warehouse's own limit on columns per table (room is kept
    /// for the columns tracktable itself writes).
    ColumnLimit { limit: usize },
    /// Whole row: the warehouse refused it; `server` is what the server said (cut to
    /// [`MAX_SERVER_TEXT`] bytes, so the reason fits `_discards.reason` everywhere).
    Refused { server: String },
}

/// The most bytes of a server's message a [`DiscardReason::Refused`] keeps.
pub const MAX_SERVER_TEXT: usize = 900;

/// The reason text of [`DiscardReason::Nul`].
pub const NUL_REASON: &str = "value contains a NUL character, which the warehouse cannot store (kept here with NUL written as \\u0000)";

impl DiscardReason {
    /// Every metric label, in the order [`DiscardCounts`] keeps them.
    pub const LABELS: [&'static str; 9] = [
        "type_mismatch",
        "too_long",
        "no_column",
        "column_cap",
        "table_cap",
        "nul_character",
        "bad_key",
        "column_limit",
        "refused",
    ];

    /// A row the warehouse refused, with the server's words (cut at a character
    /// boundary to [`MAX_SERVER_TEXT`] bytes).
    pub fn refused(server: &str) -> DiscardReason {
        let mut end = server.len().min(MAX_SERVER_TEXT);
        while !server.is_char_boundary(end) {
            end -= 1;
        }
        DiscardReason::Refused {
            server: server[..end].to_owned(),
        }
    }

    /// The metric label: stable and low-cardinality (the text varies with the cap, the
    /// width and the value's length).
    pub fn label(&self) -> &'static str {
        Self::LABELS[self.index()]
    }

    /// This reason's position in [`DiscardReason::LABELS`].
    pub fn index(&self) -> usize {
        match self {
            DiscardReason::TypeMismatch { .. } => 0,
            DiscardReason::TooLong { .. } => 1,
            DiscardReason::NoColumn => 2,
            DiscardReason::ColumnCap { .. } => 3,
            DiscardReason::TableCap { .. } => 4,
            DiscardReason::Nul => 5,
            DiscardReason::KeyNul | DiscardReason::KeyTooLong { .. } => 6,
            DiscardReason::ColumnLimit { .. } => 7,
            DiscardReason::Refused { .. } => 8,
        }
    }
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
            DiscardReason::Nul => f.write_str(NUL_REASON),
            DiscardReason::ColumnCap { cap } => {
                write!(f, "over the tracking plan's cap of {cap} columns per table")
            }
            DiscardReason::TableCap { cap } => write!(
                f,
                "table not created: over the tracking plan's cap of {cap} tables"
            ),
            DiscardReason::KeyNul => {
                f.write_str("key contains a NUL character, which the warehouse cannot store")
            }
            DiscardReason::KeyTooLong { bytes, max } => {
                write!(
                    f,
                    "key is {bytes} bytes, longer than the key column's {max}"
                )
            }
            DiscardReason::ColumnLimit { limit } => write!(
                f,
                "over the warehouse's limit of {limit} columns per table (room is kept for tracktable's own columns)"
            ),
            DiscardReason::Refused { server } => {
                write!(f, "the warehouse refused the row: {server}")
            }
        }
    }
}

/// Why a row's key (message id, or user or group id) cannot be stored, if it cannot:
/// a NUL character, or (Redshift) more bytes than the key column holds. Such rows go
/// to `_discards` whole.
pub fn key_problem(key: &str, max_bytes: Option<usize>) -> Option<DiscardReason> {
    if key.contains('\0') {
        return Some(DiscardReason::KeyNul);
    }
    match max_bytes {
        Some(max) if key.len() > max => Some(DiscardReason::KeyTooLong {
            bytes: key.len(),
            max,
        }),
        _ => None,
    }
}

/// A value that went to `_discards` instead of its column.
#[derive(Debug, Clone)]
pub struct Discard {
    pub table: String,
    pub column: String,
    pub message_id: String,
    pub value: String,
    pub reason: DiscardReason,
    pub object: String,
    pub line: i64,
    pub received_at: Option<i64>,
}

impl Discard {
    pub fn new(
        table: &str,
        column: &str,
        row: &Row,
        value: ValueRef<'_>,
        reason: DiscardReason,
    ) -> Discard {
        let received_at = match row.cell("received_at") {
            Some(ValueRef::Timestamp(t)) => Some(t.0),
            _ => None,
        };
        Discard {
            table: table.to_owned(),
            column: column.to_owned(),
            message_id: row.message_id.replace('\0', "\\u0000"),
            value: value.to_text().replace('\0', "\\u0000"),
            reason,
            object: row.object.to_string(),
            line: row.position.line as i64,
            received_at,
        }
    }

    /// A whole row that cannot load (its table is over a cap, its key too long):
    /// column `*`, the row as a JSON object of text values.
    pub fn whole_row(table: &str, row: &Row, reason: DiscardReason) -> Discard {
        let object: serde_json::Map<String, serde_json::Value> = row
            .cells()
            .map(|(column, value)| {
                (
                    column.as_str().to_owned(),
                    serde_json::Value::String(value.to_text()),
                )
            })
            .collect();
        Discard::new(
            table,
            "*",
            row,
            ValueRef::Varchar(&serde_json::Value::Object(object).to_string()),
            reason,
        )
    }
}

/// Discards counted by reason, indexed like [`DiscardReason::LABELS`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiscardCounts([u64; DiscardReason::LABELS.len()]);

impl DiscardCounts {
    pub fn add(&mut self, reason: &DiscardReason, count: u64) {
        self.0[reason.index()] += count;
    }

    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// (label, count) for every label, zero counts included.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        DiscardReason::LABELS.into_iter().zip(self.0)
    }
}

impl std::ops::AddAssign for DiscardCounts {
    fn add_assign(&mut self, other: DiscardCounts) {
        for (total, more) in self.0.iter_mut().zip(other.0) {
            *total += more;
        }
    }
}

/// Counts the discards a warehouse kept (those new to `_discards`; a replayed batch's
/// are not), by reason. The warehouse names each kept discard by the reason text this
/// load wrote, and no two reasons share a text, so the text finds its reason exactly.
pub struct KeptDiscards<'a> {
    by_text: HashMap<String, &'a DiscardReason>,
    counts: DiscardCounts,
}

impl<'a> KeptDiscards<'a> {
    /// Ready to count what the warehouse kept of `written`.
    pub fn new(written: &'a [Discard]) -> KeptDiscards<'a> {
        let by_text = written
            .iter()
            .map(|discard| (discard.reason.to_string(), &discard.reason))
            .collect();
        KeptDiscards {
            by_text,
            counts: DiscardCounts::default(),
        }
    }

    /// `count` discards kept with reason text `text`.
    pub fn kept(&mut self, text: &str, count: u64) {
        match self.by_text.get(text) {
            Some(reason) => self.counts.add(reason, count),
            // Only a text this load wrote can come back: the warehouse returns the
            // staged rows it inserted.
            None => tracing::warn!(
                reason = text,
                count,
                "the warehouse reported a discard reason this load did not write; not counted"
            ),
        }
    }

    pub fn counts(&self) -> DiscardCounts {
        self.counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::Value;

    /// One of every reason, with the text `_discards` holds for it. These texts are in
    /// users' tables: a change here is a change to their data.
    fn every_reason() -> Vec<(DiscardReason, &'static str, &'static str)> {
        vec![
            (
                DiscardReason::TypeMismatch {
                    column_type: ColumnType::BigInt,
                },
                "value does not fit column type bigint",
                "type_mismatch",
            ),
            (
                DiscardReason::TooLong {
                    bytes: 70,
                    width: 64,
                },
                "value is 70 bytes, longer than varchar(64)",
                "too_long",
            ),
            (
                DiscardReason::NoColumn,
                "table has no such column",
                "no_column",
            ),
            (
                DiscardReason::Nul,
                "value contains a NUL character, which the warehouse cannot store (kept here with NUL written as \\u0000)",
                "nul_character",
            ),
            (
                DiscardReason::ColumnCap { cap: 12 },
                "over the tracking plan's cap of 12 columns per table",
                "column_cap",
            ),
            (
                DiscardReason::TableCap { cap: 4 },
                "table not created: over the tracking plan's cap of 4 tables",
                "table_cap",
            ),
            (
                DiscardReason::KeyNul,
                "key contains a NUL character, which the warehouse cannot store",
                "bad_key",
            ),
            (
                DiscardReason::KeyTooLong {
                    bytes: 1025,
                    max: 1024,
                },
                "key is 1025 bytes, longer than the key column's 1024",
                "bad_key",
            ),
            (
                DiscardReason::ColumnLimit { limit: 1600 },
                "over the warehouse's limit of 1600 columns per table (room is kept for tracktable's own columns)",
                "column_limit",
            ),
            (
                DiscardReason::refused(
                    "ERROR 23514: new row for relation \"t\" violates check constraint \"c\"",
                ),
                "the warehouse refused the row: ERROR 23514: new row for relation \"t\" violates check constraint \"c\"",
                "refused",
            ),
        ]
    }

    #[test]
    fn every_reason_keeps_its_text_and_label() {
        for (reason, text, label) in every_reason() {
            assert_eq!(reason.to_string(), text, "{reason:?}");
            assert_eq!(reason.label(), label, "{reason:?}");
            assert_eq!(DiscardReason::LABELS[reason.index()], label);
        }
        let labels: std::collections::BTreeSet<&str> =
            every_reason().iter().map(|(_, _, label)| *label).collect();
        assert_eq!(
            labels.len(),
            DiscardReason::LABELS.len(),
            "every label used"
        );
    }

    #[test]
    fn the_longest_reason_fits_the_reason_column() {
        // Redshift's `_discards.reason` is varchar(1024).
        let longest = [
            DiscardReason::TypeMismatch {
                column_type: ColumnType::Varchar(u32::MAX),
            },
            DiscardReason::TooLong {
                bytes: usize::MAX,
                width: u32::MAX,
            },
            DiscardReason::ColumnCap { cap: usize::MAX },
            DiscardReason::TableCap { cap: usize::MAX },
            DiscardReason::KeyTooLong {
                bytes: usize::MAX,
                max: usize::MAX,
            },
            DiscardReason::Nul,
            DiscardReason::ColumnLimit { limit: usize::MAX },
            DiscardReason::refused(&"é".repeat(5000)),
        ];
        for reason in longest {
            assert!(reason.to_string().len() <= 1024, "{reason}");
        }
    }

    #[test]
    fn keys_that_cannot_be_stored_say_why() {
        assert_eq!(key_problem("m1", Some(4)), None);
        assert_eq!(key_problem("m\0", None), Some(DiscardReason::KeyNul));
        assert_eq!(
            key_problem("12345", Some(4)),
            Some(DiscardReason::KeyTooLong { bytes: 5, max: 4 })
        );
        assert_eq!(key_problem("12345", None), None);
    }

    #[test]
    fn kept_discards_are_counted_by_the_reason_their_text_names() {
        let row = Row::new(
            crate::route::naming::table_name("t"),
            "m1".into(),
            "obj".into(),
            crate::decode::Position::line(1),
            Vec::new(),
        );
        let value = Value::BigInt(1);
        let written: Vec<Discard> = every_reason()
            .into_iter()
            .map(|(reason, _, _)| Discard::new("t", "c", &row, value.to_ref(), reason))
            .collect();
        let mut kept = KeptDiscards::new(&written);
        kept.kept("value is 70 bytes, longer than varchar(64)", 2);
        kept.kept("key is 1025 bytes, longer than the key column's 1024", 1);
        kept.kept(
            "key contains a NUL character, which the warehouse cannot store",
            1,
        );
        kept.kept("a text no load wrote", 5);
        let counts: Vec<(&str, u64)> = kept
            .counts()
            .iter()
            .filter(|(_, count)| *count > 0)
            .collect();
        assert_eq!(counts, [("too_long", 2), ("bad_key", 2)]);
        assert_eq!(kept.counts().total(), 4);
    }
}
