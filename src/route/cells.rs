//! cells: a row's cells packed into one allocation.
//!
//! Rows live from routing until their batch commits, so a batch's memory is mostly its
//! cells, and a run's first touch of that memory (the kernel zeroing fresh pages) was
//! the largest single item of its CPU profile. A cell as a `(ColumnName, Value)` pair
//! took 32 bytes whatever its value, plus a heap allocation for each text longer than
//! the value's inline room. Packed, a cell is a tag byte and its value's bytes (a
//! boolean is just its tag), in one allocation per row however long its texts.
//!
//! Most rows of a table name the same columns in the same order, so the names are kept
//! apart from the values: a [`Shape`], the list of name words, interned per thread and
//! shared by every row with that list. Where a row's names cannot be in a shape (one
//! holds a reference count, or the thread's shapes are at their budget) each cell
//! carries its name's word instead.
//!
//! Layout of each cell: without a shape, the name ([`ColumnName::into_word`], 8 bytes,
//! little-endian); a tag, then the payload: nothing (booleans are two tags), 8 bytes
//! for a bigint, double or timestamp, or a text's length (1 byte, or 8 for texts over
//! 255 bytes) and its UTF-8 bytes. Only [`Cells::new`] writes them, so the reader
//! trusts them.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::naming::ColumnName;
use super::value::{Timestamp, Typed, Value, ValueRef};

const FALSE: u8 = 0;
const TRUE: u8 = 1;
const BIGINT: u8 = 2;
const DOUBLE: u8 = 3;
const TIMESTAMP: u8 = 4;
const SHORT_TEXT: u8 = 5;
const LONG_TEXT: u8 = 6;

/// A row's cells, packed. Each name at most once (route's invariant, not checked here).
#[derive(Default)]
pub struct Cells {
    bytes: Box<[u8]>,
    len: u32,
    /// Whether a name holds a reference count (past the interner's budget), so
    /// dropping and cloning walk the names; otherwise they need not.
    counted_names: bool,
    /// The cells' names, when they are in a shape (then not in `bytes`).
    shape: Option<&'static Shape>,
}

/// The name words of a row's cells, in order. Only uncounted words (interned and fixed
/// names, which live for the process) are ever in a shape, so a shape holds no counts.
pub struct Shape(Box<[u64]>);

/// The most bytes of shapes one thread keeps (leaked, for the life of the process):
/// far more than the distinct layouts of real traffic; hostile input past it only
/// costs its rows 8 bytes a cell.
const SHAPE_BYTES: usize = 8 << 20;

/// The shape holding `words`, made on first sight, or `None` past the budget.
fn shape_of(words: &[u64]) -> Option<&'static Shape> {
    use std::cell::RefCell;
    type Shapes =
        std::collections::HashMap<&'static [u64], &'static Shape, foldhash::fast::RandomState>;
    thread_local! {
        static SHAPES: RefCell<(Shapes, usize)> = RefCell::default();
    }
    SHAPES.with(|shapes| {
        let (shapes, bytes) = &mut *shapes.borrow_mut();
        if let Some(shape) = shapes.get(words) {
            return Some(*shape);
        }
        let cost = 8 * words.len() + 64;
        if *bytes + cost > SHAPE_BYTES {
            return None;
        }
        *bytes += cost;
        let shape: &'static Shape = Box::leak(Box::new(Shape(words.into())));
        shapes.insert(&shape.0, shape);
        Some(shape)
    })
}

/// What a cell can be packed from: an owned [`Value`], or route's [`Typed`] values
/// borrowed from the message they came from.
pub trait CellValue {
    fn cell_value(&self) -> ValueRef<'_>;
}

impl CellValue for Value {
    fn cell_value(&self) -> ValueRef<'_> {
        self.to_ref()
    }
}

impl CellValue for ValueRef<'_> {
    fn cell_value(&self) -> ValueRef<'_> {
        *self
    }
}

impl CellValue for Typed<'_> {
    fn cell_value(&self) -> ValueRef<'_> {
        match self {
            Typed::Borrowed(value) => *value,
            Typed::Owned(value) => value.to_ref(),
        }
    }
}

impl Cells {
    pub fn new<V: CellValue>(cells: Vec<(ColumnName, V)>) -> Cells {
        // A track call's `tracks` row has only shared cells: nothing to pack or shape.
        if cells.is_empty() {
            return Cells::default();
        }
        // Each word holds what its name held (a count, for a counted name); the names
        // in `cells` are dropped at the end.
        let words: Vec<u64> = cells
            .iter()
            .map(|(name, _)| name.clone().into_word())
            .collect();
        let counted_names = words.iter().any(|word| ColumnName::word_is_counted(*word));
        let shape = if counted_names {
            None
        } else {
            shape_of(&words)
        };
        let name_bytes = if shape.is_some() { 0 } else { 8 };
        let size = cells
            .iter()
            .map(|(_, value)| name_bytes + packed_size(value.cell_value()))
            .sum();
        let mut bytes = Vec::with_capacity(size);
        let len = cells.len();
        for ((_, value), word) in cells.iter().zip(&words) {
            if shape.is_none() {
                bytes.extend_from_slice(&word.to_le_bytes());
            }
            match value.cell_value() {
                ValueRef::Boolean(false) => bytes.push(FALSE),
                ValueRef::Boolean(true) => bytes.push(TRUE),
                ValueRef::BigInt(i) => push_number(&mut bytes, BIGINT, i.to_le_bytes()),
                ValueRef::Double(f) => push_number(&mut bytes, DOUBLE, f.to_bits().to_le_bytes()),
                ValueRef::Timestamp(t) => push_number(&mut bytes, TIMESTAMP, t.0.to_le_bytes()),
                ValueRef::Varchar(text) => {
                    match u8::try_from(text.len()) {
                        Ok(short) => bytes.extend_from_slice(&[SHORT_TEXT, short]),
                        Err(_) => {
                            bytes.push(LONG_TEXT);
                            bytes.extend_from_slice(&(text.len() as u64).to_le_bytes());
                        }
                    }
                    bytes.extend_from_slice(text.as_bytes());
                }
            }
        }
        debug_assert_eq!(bytes.len(), size);
        Cells {
            bytes: bytes.into_boxed_slice(),
            // A row's cells come from one JSON line, far fewer than 2^32.
            len: u32::try_from(len).unwrap_or(u32::MAX),
            counted_names,
            shape,
        }
    }

    pub fn len(&self) -> usize {
        self.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The cells in the order they were given.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            bytes: &self.bytes,
            names: self.shape.map_or(&[], |shape| &shape.0),
            left: self.len as usize,
        }
    }

    /// The name words of every cell, to release or count them.
    fn words(&self) -> impl Iterator<Item = u64> + '_ {
        let mut iter = self.iter();
        std::iter::from_fn(move || iter.next_word().map(|(word, _)| word))
    }
}

fn packed_size(value: ValueRef<'_>) -> usize {
    match value {
        ValueRef::Boolean(_) => 1,
        ValueRef::BigInt(_) | ValueRef::Double(_) | ValueRef::Timestamp(_) => 9,
        ValueRef::Varchar(text) if text.len() <= usize::from(u8::MAX) => 2 + text.len(),
        ValueRef::Varchar(text) => 9 + text.len(),
    }
}

fn push_number(bytes: &mut Vec<u8>, tag: u8, payload: [u8; 8]) {
    bytes.push(tag);
    bytes.extend_from_slice(&payload);
}

impl Drop for Cells {
    fn drop(&mut self) {
        if !self.counted_names {
            return;
        }
        let words: Vec<u64> = self.words().collect();
        for word in words {
            if ColumnName::word_is_counted(word) {
                // SAFETY: `Cells::new` stored this word from `into_word`, and these
                // cells release each of their words once, here.
                unsafe { ColumnName::release_word(word) };
            }
        }
    }
}

impl Clone for Cells {
    fn clone(&self) -> Cells {
        if self.counted_names {
            for word in self.words() {
                if ColumnName::word_is_counted(word) {
                    // SAFETY: the word is held by `self`; the clone holds one more
                    // count of it, given up by the clone's `Drop`.
                    let _ = unsafe { ColumnName::from_word(word) }.into_word();
                }
            }
        }
        Cells {
            bytes: self.bytes.clone(),
            len: self.len,
            counted_names: self.counted_names,
            shape: self.shape,
        }
    }
}

/// The cells of [`Cells::iter`], each a name and a value borrowed from the cells.
#[derive(Clone, Default)]
pub struct Iter<'a> {
    bytes: &'a [u8],
    /// The shape's words not yet read; empty when the words are in `bytes`.
    names: &'a [u64],
    left: usize,
}

impl<'a> Iter<'a> {
    /// The next `count` bytes of a cell. Every read here is of a cell that
    /// [`Cells::new`] wrote whole (`left` says how many remain), so the bytes are there:
    /// the reads go unchecked, as this is the inner loop of every pass over a row.
    #[inline(always)]
    fn take(&mut self, count: usize) -> &'a [u8] {
        debug_assert!(count <= self.bytes.len());
        // SAFETY: see above; `Cells::new` is the only writer of `bytes` (deserializing
        // goes through it too).
        let (taken, rest) = unsafe { self.bytes.split_at_unchecked(count) };
        self.bytes = rest;
        taken
    }

    #[inline(always)]
    fn take_8(&mut self) -> [u8; 8] {
        let mut out = [0; 8];
        out.copy_from_slice(self.take(8));
        out
    }

    /// The next cell with its name as the word it is packed as: the loader's inner
    /// loop needs only the name's address ([`ColumnName::word_address`]), not a name.
    #[inline]
    pub(crate) fn next_word(&mut self) -> Option<(u64, ValueRef<'a>)> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let word = match self.names.split_first() {
            Some((word, rest)) => {
                self.names = rest;
                *word
            }
            None => u64::from_le_bytes(self.take_8()),
        };
        let tag = self.take(1)[0];
        let value = match tag {
            FALSE => ValueRef::Boolean(false),
            TRUE => ValueRef::Boolean(true),
            BIGINT => ValueRef::BigInt(i64::from_le_bytes(self.take_8())),
            DOUBLE => ValueRef::Double(f64::from_bits(u64::from_le_bytes(self.take_8()))),
            TIMESTAMP => ValueRef::Timestamp(Timestamp(i64::from_le_bytes(self.take_8()))),
            SHORT_TEXT | LONG_TEXT => {
                let len = if tag == SHORT_TEXT {
                    usize::from(self.take(1)[0])
                } else {
                    u64::from_le_bytes(self.take_8()) as usize
                };
                let text = self.take(len);
                // SAFETY: `Cells::new` copied these bytes, exactly this many, from a
                // `&str`.
                ValueRef::Varchar(unsafe { std::str::from_utf8_unchecked(text) })
            }
            _ => unreachable!("Cells::new writes only the tags above"),
        };
        Some((word, value))
    }
}

impl<'a> Iterator for Iter<'a> {
    type Item = (ColumnName, ValueRef<'a>);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let (word, value) = self.next_word()?;
        // SAFETY: the word is held by the cells `self` borrows.
        Some((unsafe { ColumnName::from_word(word) }, value))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for Iter<'_> {}

impl fmt::Debug for Cells {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl PartialEq for Cells {
    fn eq(&self, other: &Cells) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

impl From<Vec<(ColumnName, Value)>> for Cells {
    fn from(cells: Vec<(ColumnName, Value)>) -> Cells {
        Cells::new(cells)
    }
}

/// Cells cross processes as a list of (name, value) pairs: names are words only within
/// one process.
impl Serialize for Cells {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter().map(|(name, value)| (name, value.to_value())))
    }
}

impl<'de> Deserialize<'de> for Cells {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Cells, D::Error> {
        Vec::<(ColumnName, Value)>::deserialize(deserializer).map(Cells::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::Text;
    use crate::route::naming::column_name;

    #[test]
    fn every_kind_of_value_comes_back_as_it_went_in() {
        let long = "é".repeat(200);
        let cells = vec![
            (column_name("off"), Value::Boolean(false)),
            (column_name("on"), Value::Boolean(true)),
            (column_name("count"), Value::BigInt(-7)),
            (column_name("price"), Value::Double(185.85)),
            (
                column_name("at"),
                Value::Timestamp(Timestamp(1_700_000_000_000_000)),
            ),
            (column_name("empty"), Value::Varchar(Text::new(""))),
            (column_name("short"), Value::Varchar(Text::new("web"))),
            (column_name("long"), Value::Varchar(Text::new(&long))),
        ];
        let packed = Cells::new(cells.clone());
        assert_eq!(packed.len(), cells.len());
        let back: Vec<(ColumnName, Value)> = packed
            .iter()
            .map(|(name, value)| (name, value.to_value()))
            .collect();
        assert_eq!(back, cells);
        assert_eq!(packed.clone(), packed);
        let json = serde_json::to_string(&packed).unwrap_or_default();
        let again: Cells = serde_json::from_str(&json).unwrap_or_default();
        assert_eq!(again, packed);
    }

    #[test]
    fn rows_naming_the_same_columns_in_the_same_order_share_one_shape() {
        let row = |a: i64, b: &str| {
            Cells::new(vec![
                (column_name("a"), Value::BigInt(a)),
                (column_name("b"), Value::Varchar(Text::new(b))),
            ])
        };
        let (first, second) = (row(1, "x"), row(2, "a longer text than the inline room"));
        let shape = |cells: &Cells| cells.shape.map(std::ptr::from_ref);
        assert!(shape(&first).is_some());
        assert_eq!(shape(&first), shape(&second));
        // Each cell's bytes are then only its tag and value.
        assert_eq!(first.bytes.len(), 9 + 3);
        let values: Vec<Value> = second.iter().map(|(_, value)| value.to_value()).collect();
        assert_eq!(
            values,
            [
                Value::BigInt(2),
                Value::Varchar(Text::new("a longer text than the inline room"))
            ]
        );
        let swapped = Cells::new(vec![
            (column_name("b"), Value::Varchar(Text::new("x"))),
            (column_name("a"), Value::BigInt(1)),
        ]);
        assert_ne!(shape(&swapped), shape(&first));
        // A counted name is never in a shape: its word stays with its cell.
        let counted = Cells::new(vec![
            (column_name("a"), Value::BigInt(1)),
            (ColumnName::past_the_budget("rare"), Value::BigInt(2)),
        ]);
        assert!(shape(&counted).is_none());
        let names: Vec<String> = counted.iter().map(|(name, _)| name.to_string()).collect();
        assert_eq!(names, ["a", "rare"]);
    }

    #[test]
    fn a_shared_name_is_counted_once_per_cells_and_released_with_them() {
        let name = ColumnName::past_the_budget("rare_property");
        let probe = name.clone();
        let cells = Cells::new(vec![(name, Value::BigInt(1))]);
        let copy = cells.clone();
        let read: Vec<ColumnName> = copy.iter().map(|(name, _)| name).collect();
        assert_eq!(read, std::slice::from_ref(&probe));
        assert_eq!(read[0].address(), probe.address());
        drop(read);
        assert_eq!(probe.shared_count(), Some(3), "probe, cells, copy");
        drop(cells);
        drop(copy);
        assert_eq!(probe.shared_count(), Some(1));
    }
}
