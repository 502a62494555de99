//! columns: which (table, column, type) each batch observes, and which of those are new.
//!
//! Every worker reduces its rows of a batch to the distinct set of observations
//! ([`observe`]) — a few hundred triples, not one record per cell — and the dataflow
//! feeds those sets into a differential collection whose `distinct_total` output is the
//! set of observations never seen before: the schema changes of that batch.
//!
//! Varchar lengths are rounded up to a few width classes first, so a column whose
//! values grow slowly produces a handful of widenings over its life, not one per new
//! maximum length.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use crate::route::{ColumnName, ColumnType, Row, TableName, ValueRef};

/// One (table, column, type) observation.
pub type Observation = (TableName, ColumnName, ColumnType);

/// Varchar widths columns are created and widened to. The last is Redshift's maximum;
/// longer values are discarded with a pointer to their source, never truncated.
pub const VARCHAR_WIDTHS: [u32; 6] = [64, 256, 1024, 4096, 16384, 65535];

/// Rounds a varchar length up to its width class; other types are unchanged. A length
/// over the largest class stays as it is, so the loader sees that it cannot fit.
pub fn width_class(column_type: ColumnType) -> ColumnType {
    match column_type {
        ColumnType::Varchar(length) => {
            match VARCHAR_WIDTHS.iter().find(|&&width| width >= length) {
                Some(&width) => ColumnType::Varchar(width),
                None => ColumnType::Varchar(length),
            }
        }
        other => other,
    }
}

/// Collects the distinct observations of many rows, fast: a row's names are shared
/// `Arc<str>`s (the router caches them), so a set of (table address, column address,
/// type) filters out repeats without hashing any string; only a triple not seen yet
/// pays for the full [`Observation`]. Every name whose address is in the filter is kept
/// alive here, so no address can be reused by another name while the filter holds it.
///
/// Before that filter, most cells are settled by a few comparisons: per table, a
/// [`ColumnWalk`] of its columns, each with the width classes already observed as bits
/// ([`class_bit`]). Every bit set there was added to the filter, which keeps the
/// column's address alive; the walk's table is kept with it. Comparing each row with
/// the table's last row instead stopped matching at the first property one had and
/// the other did not, and every cell after that paid a set probe.
#[derive(Debug, Default)]
pub struct Observer {
    filter: Filter,
    walks: HashMap<usize, (TableName, ColumnWalk<u16>), BuildHasherDefault<AddressHasher>>,
}

/// A table's columns in the order its rows name them, each with a `T`, walked by each
/// row with a cursor: rows whose optional properties come and go only skip entries.
/// Rows naming their columns in changing orders make repeated entries; a column
/// further than [`WALK_WINDOW`] past the cursor is not found, and the walk stops
/// growing at [`WALK_LENGTH`], so a lookup costs a bounded scan and the caller's slow
/// path answers the rest. Addresses are the caller's to keep alive.
#[derive(Debug)]
pub struct ColumnWalk<T> {
    columns: Vec<(usize, T)>,
}

impl<T> Default for ColumnWalk<T> {
    fn default() -> ColumnWalk<T> {
        ColumnWalk {
            columns: Vec::new(),
        }
    }
}

const WALK_WINDOW: usize = 32;
const WALK_LENGTH: usize = 512;

impl<T> ColumnWalk<T> {
    /// The entry of the column at `address` near `cursor`, which moves past it.
    pub fn find(&mut self, cursor: &mut usize, address: usize) -> Option<&mut T> {
        let end = self.columns.len().min(*cursor + WALK_WINDOW);
        let offset = self.columns[*cursor..end]
            .iter()
            .position(|(known, _)| *known == address)?;
        let at = *cursor + offset;
        *cursor = at + 1;
        Some(&mut self.columns[at].1)
    }

    /// Puts the column at `address` at `cursor`, which moves past it, if the walk has
    /// room.
    pub fn insert(&mut self, cursor: &mut usize, address: usize, value: T) {
        if self.columns.len() < WALK_LENGTH {
            self.columns.insert(*cursor, (address, value));
            *cursor += 1;
        }
    }
}

/// The observations themselves, and the address filter in front of them.
#[derive(Debug, Default)]
struct Filter {
    addresses: HashSet<(usize, usize, ColumnType), BuildHasherDefault<AddressHasher>>,
    /// foldhash (per-process seed): it is refilled for every object.
    seen: HashSet<Observation, foldhash::fast::RandomState>,
    /// Names whose address is in `addresses` but whose observation `seen` already held
    /// under another allocation.
    alive: Vec<(TableName, ColumnName)>,
}

impl Filter {
    fn add(&mut self, table: &TableName, column: &ColumnName, column_type: ColumnType) {
        if self
            .addresses
            .insert((table.address(), column.address(), column_type))
        {
            let observation = (table.clone(), column.clone(), column_type);
            if !self.seen.insert(observation) {
                self.alive.push((table.clone(), column.clone()));
            }
        }
    }
}

/// A bit per width class: the class of `width_class(value.column_type())`, read
/// straight from the value; `None` for a text longer than the largest class.
fn class_bit(value: ValueRef<'_>) -> Option<u16> {
    match value {
        ValueRef::Boolean(_) => Some(1),
        ValueRef::BigInt(_) => Some(1 << 1),
        ValueRef::Double(_) => Some(1 << 2),
        ValueRef::Timestamp(_) => Some(1 << 3),
        ValueRef::Varchar(text) => VARCHAR_WIDTHS
            .iter()
            .position(|&width| width as usize >= text.len())
            .map(|class| 1 << (4 + class)),
    }
}

impl Observer {
    pub fn observe<'a>(&mut self, rows: impl IntoIterator<Item = &'a Row>) {
        for row in rows {
            self.observe_cells(&row.table, row.cells());
        }
    }

    /// Observes one row's cells, given before they are packed into the row (route
    /// does, so that no pass decodes the packed cells again) or read from it.
    pub fn observe_cells<'v, N: std::borrow::Borrow<ColumnName>>(
        &mut self,
        table: &TableName,
        cells: impl IntoIterator<Item = (N, ValueRef<'v>)>,
    ) {
        let (_, walk) = self
            .walks
            .entry(table.address())
            .or_insert_with(|| (table.clone(), ColumnWalk::default()));
        let mut cursor = 0;
        for (column, value) in cells {
            let column = column.borrow();
            let address = column.address();
            let bit = class_bit(value);
            match walk.find(&mut cursor, address) {
                Some(observed) => match bit {
                    Some(bit) if *observed & bit != 0 => continue,
                    Some(bit) => *observed |= bit,
                    None => {}
                },
                None => walk.insert(&mut cursor, address, bit.unwrap_or_default()),
            }
            let column_type = width_class(value.column_type());
            self.filter.add(table, column, column_type);
        }
    }

    /// The distinct observations so far; the observer starts empty again.
    pub fn drain(&mut self) -> impl Iterator<Item = Observation> + '_ {
        self.walks.clear();
        self.filter.addresses.clear();
        self.filter.alive.clear();
        self.filter.seen.drain()
    }
}

/// FxHash's mixing step: plenty for addresses and small integers, far cheaper than
/// SipHash. Never used where an attacker chooses the keys.
///
/// `finish` rotates, as rustc-hash 2 does: a product's low bits depend only on the low
/// bits of what was multiplied, and an address's low bits are mostly zero (allocations
/// are aligned), while hashbrown picks the bucket from the hash's low bits. Without the
/// rotation most keys started their probe in an eighth of the buckets.
#[derive(Debug, Default, Clone, Copy)]
pub struct AddressHasher(u64);

impl Hasher for AddressHasher {
    fn finish(&self) -> u64 {
        self.0.rotate_left(26)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.write_u64(u64::from(byte));
        }
    }

    fn write_u64(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn write_u32(&mut self, word: u32) {
        self.write_u64(u64::from(word));
    }

    fn write_usize(&mut self, word: usize) {
        self.write_u64(word as u64);
    }

    fn write_isize(&mut self, word: isize) {
        self.write_u64(word as u64);
    }
}

/// Adds the observations of `rows` to `into`.
pub fn observe<'a>(rows: impl IntoIterator<Item = &'a Row>, into: &mut HashSet<Observation>) {
    for row in rows {
        for (column, value) in row.cells() {
            // Names are `Arc<str>`: these clones are reference counts, not copies.
            into.insert((
                row.table.clone(),
                column.clone(),
                width_class(value.column_type()),
            ));
        }
    }
}

/// A new column takes a type other than varchar only when at least this share of the
/// introducing batch's values have it (four in five): a few odd values (`"USD 18.50"`
/// among prices) go to `_discards` rather than turn a numeric column into text for
/// good, while a column whose values really are mixed stays text and loses nothing.
pub const CLEAR_MAJORITY: (u64, u64) = (4, 5);

/// The type a new column is created with, from how many values of the batch that
/// introduces it have each type (`votes`, varchar lengths as width classes). Numbers
/// vote together (double when any is fractional); the kind with the most votes wins
/// when it holds a [`CLEAR_MAJORITY`]; otherwise varchar, which holds every value.
/// Deterministic whatever order the votes arrive in.
pub fn creation_type(votes: &[(ColumnType, u64)]) -> Option<ColumnType> {
    #[derive(Default)]
    struct Tally {
        boolean: u64,
        number: u64,
        double: bool,
        timestamp: u64,
        text: u64,
        widest: u32,
    }
    let mut tally = Tally::default();
    for &(column_type, count) in votes {
        match column_type {
            ColumnType::Boolean => tally.boolean += count,
            ColumnType::BigInt => tally.number += count,
            ColumnType::Double => {
                tally.number += count;
                tally.double = true;
            }
            ColumnType::Timestamp => tally.timestamp += count,
            ColumnType::Varchar(width) => {
                tally.text += count;
                tally.widest = tally.widest.max(width);
            }
        }
    }
    let number = if tally.double {
        ColumnType::Double
    } else {
        ColumnType::BigInt
    };
    let kinds = [
        (tally.number, number),
        (tally.timestamp, ColumnType::Timestamp),
        (tally.boolean, ColumnType::Boolean),
    ];
    let total = tally.boolean + tally.number + tally.timestamp + tally.text;
    if total == 0 {
        return None;
    }
    let present =
        kinds.iter().filter(|(count, _)| *count > 0).count() + usize::from(tally.text > 0);
    let (most, winner) = kinds
        .iter()
        .copied()
        .max_by_key(|(count, _)| *count)
        .unwrap_or((0, number));
    let (share, of) = CLEAR_MAJORITY;
    if present == 1 && most > 0 {
        return Some(winner);
    }
    if most > 0 && most * of >= total * share {
        return Some(winner);
    }
    // Text, as wide as the widest text, and wide enough for another kind's text.
    let width = if present > 1 {
        tally.widest.max(VARCHAR_WIDTHS[1])
    } else {
        tally.widest
    };
    Some(ColumnType::Varchar(width))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_addresses_spread_over_the_low_bits_hashbrown_buckets_by() {
        use std::hash::BuildHasher;
        let build = BuildHasherDefault::<AddressHasher>::default();
        // 1024 addresses 16 bytes apart, as an allocator hands them out.
        let buckets: HashSet<u64> = (0..1024u64)
            .map(|index| build.hash_one(0x7f3a_1200_0000_usize + 16 * index as usize) & 127)
            .collect();
        assert!(
            buckets.len() > 120,
            "only {} of 128 low-bit buckets used",
            buckets.len()
        );
    }

    #[test]
    fn the_observer_finds_exactly_the_distinct_observations() {
        use crate::decode::Limits;
        use std::sync::Arc;
        // Two routers: equal names in separate allocations, the case the address filter
        // must not confuse; generated traffic for variety.
        let config = tracktable_gen::GenConfig {
            events: 400,
            seed: 5,
            drift_rate: 0.05,
            bad_rate: 0.0,
        };
        let mut rows = Vec::new();
        for line in tracktable_gen::Generator::new(&config) {
            let mut router = crate::route::Router::new();
            let object: Arc<str> = Arc::from("o");
            let mut routed = Vec::new();
            crate::route::rows_for_object(
                &line.bytes[..],
                &object,
                &Limits::default(),
                &mut router,
                &mut routed,
            );
            rows.extend(routed);
        }
        let mut expected = HashSet::new();
        observe(rows.iter(), &mut expected);
        let mut observer = Observer::default();
        observer.observe(rows.iter());
        observer.observe(rows.iter().rev());
        let found: HashSet<Observation> = observer.drain().collect();
        assert!(expected.len() > 50, "{}", expected.len());
        assert_eq!(found, expected);
        assert_eq!(observer.drain().count(), 0, "drain empties it");
    }

    #[test]
    fn route_observes_every_row_it_makes_as_it_makes_it() {
        use crate::decode::{Limits, ObjectDecoder};
        use std::sync::Arc;
        // Every kind of call, malformed lines, and a tracking plan that refuses some
        // events and trims others' properties: rejections are rows too.
        let config = tracktable_gen::GenConfig {
            events: 3000,
            seed: 11,
            drift_rate: 0.05,
            bad_rate: 0.02,
        };
        let mut ndjson = Vec::new();
        for line in tracktable_gen::Generator::new(&config) {
            ndjson.extend_from_slice(&line.bytes);
            ndjson.push(b'\n');
        }
        let plan = crate::route::plan::TrackingPlan::compile(&crate::config::PlanFile {
            allow_events: Vec::new(),
            block_events: vec!["Video *".to_owned()],
            properties: [("Product Viewed".to_owned(), vec!["sku".to_owned()])].into(),
            max_tables: None,
            max_columns: None,
        })
        .expect("a valid plan");
        let mut router = crate::route::Router::with_plan(Some(Arc::new(plan)));
        let object: Arc<str> = Arc::from("o");
        let limits = Limits::default();
        let mut decoder = ObjectDecoder::new(&ndjson[..], &object, &limits);
        let mut rows = Vec::new();
        let mut observer = Observer::default();
        while crate::route::rows_for_some(
            &mut decoder,
            100,
            &mut router,
            &mut rows,
            Some(&mut observer),
        ) {}
        let tables: HashSet<&str> = rows.iter().map(|row| row.table.as_str()).collect();
        for table in [
            "_rejections",
            "tracks",
            "pages",
            "identifies",
            "users",
            "groups",
        ] {
            assert!(tables.contains(table), "no {table} rows in {tables:?}");
        }
        let mut expected = HashSet::new();
        observe(rows.iter(), &mut expected);
        let found: HashSet<Observation> = observer.drain().collect();
        assert!(expected.len() > 100, "{}", expected.len());
        assert_eq!(found, expected);
    }

    #[test]
    fn rows_naming_columns_in_any_order_and_number_observe_alike() {
        use crate::decode::Position;
        use crate::route::naming::{column_name, table_name};
        use crate::route::{Text, Value};
        use std::sync::Arc;
        let object: Arc<str> = Arc::from("o");
        let row = |table: &str, cells: Vec<(ColumnName, Value)>| {
            Row::new(
                table_name(table),
                "m".to_owned(),
                Arc::clone(&object),
                Position::line(1),
                cells,
            )
        };
        let text = |length: usize| Value::Varchar(Text::new(&"x".repeat(length)));
        let names: Vec<ColumnName> = (0..600).map(|n| column_name(&format!("c{n}"))).collect();
        let numbered = |range: std::ops::Range<usize>| {
            range
                .map(|n| (names[n].clone(), Value::BigInt(1)))
                .collect::<Vec<_>>()
        };
        let (a, b) = (&names[0], &names[1]);
        let mut rows = vec![
            row(
                "t",
                vec![(a.clone(), Value::BigInt(1)), (b.clone(), text(3))],
            ),
            // A class not yet seen in a known column, then the first row again.
            row(
                "t",
                vec![(a.clone(), Value::BigInt(2)), (b.clone(), text(300))],
            ),
            row(
                "t",
                vec![(a.clone(), Value::BigInt(3)), (b.clone(), text(4))],
            ),
            // The same columns in another table, and in the other order.
            row(
                "u",
                vec![(a.clone(), Value::BigInt(1)), (b.clone(), text(3))],
            ),
            row(
                "t",
                vec![
                    (b.clone(), Value::Boolean(true)),
                    (a.clone(), Value::Double(0.5)),
                ],
            ),
            // A name past the interner's budget.
            row(
                "t",
                vec![(ColumnName::past_the_budget("rare"), Value::BigInt(1))],
            ),
            // Longer than the largest width class: no class bit.
            row("t", vec![(b.clone(), text(70_000))]),
            row("t", vec![(b.clone(), text(70_001))]),
            // Many columns, then rows skipping more of them than a cursor looks past.
            row("v", numbered(0..100)),
            row("v", numbered(60..61)),
            row("v", vec![(names[99].clone(), Value::Double(1.5))]),
            // More columns than a walk holds, and a new class past its end.
            row("w", numbered(0..600)),
            row("w", vec![(names[599].clone(), Value::Boolean(false))]),
        ];
        rows.extend(rows.clone().into_iter().rev());
        let mut expected = HashSet::new();
        observe(rows.iter(), &mut expected);
        let mut observer = Observer::default();
        observer.observe(rows.iter());
        let found: HashSet<Observation> = observer.drain().collect();
        assert_eq!(found.len(), 10 + 100 + 1 + 600 + 1, "{}", found.len());
        assert_eq!(found, expected);
    }

    #[test]
    fn a_class_bit_is_one_per_width_class() {
        use crate::route::Timestamp;
        let mut values = vec![
            ValueRef::Boolean(true),
            ValueRef::BigInt(1),
            ValueRef::Double(1.5),
            ValueRef::Timestamp(Timestamp(0)),
        ];
        let texts: Vec<String> = [0, 1, 64, 65, 256, 257, 1024, 4096, 16384, 16385, 65535]
            .iter()
            .map(|&length| "x".repeat(length))
            .collect();
        values.extend(texts.iter().map(|text| ValueRef::Varchar(text)));
        let mut classes = HashMap::new();
        for value in values {
            let bit = class_bit(value).expect("every value here has a class");
            assert_eq!(bit.count_ones(), 1);
            let class = width_class(value.column_type());
            assert_eq!(*classes.entry(bit).or_insert(class), class, "{value:?}");
        }
        assert_eq!(classes.len(), 4 + VARCHAR_WIDTHS.len());
        let longest = "x".repeat(65536);
        assert_eq!(class_bit(ValueRef::Varchar(&longest)), None);
    }

    #[test]
    fn a_column_walk_finds_columns_near_its_cursor_and_stays_bounded() {
        let mut walk = ColumnWalk::default();
        let mut cursor = 0;
        for address in [10, 20, 30, 40] {
            assert!(walk.find(&mut cursor, address).is_none());
            walk.insert(&mut cursor, address, address * 2);
        }
        // Optional columns skipped: found in order, the cursor past each.
        let mut cursor = 0;
        assert_eq!(walk.find(&mut cursor, 20).copied(), Some(40));
        assert_eq!(cursor, 2);
        assert_eq!(walk.find(&mut cursor, 40).copied(), Some(80));
        // Behind the cursor: not found, and a repeated entry goes in at the cursor.
        assert!(walk.find(&mut cursor, 10).is_none());
        walk.insert(&mut cursor, 10, 7);
        let mut cursor = 0;
        assert_eq!(walk.find(&mut cursor, 10).copied(), Some(20));
        assert_eq!(walk.find(&mut cursor, 10).copied(), Some(7));
        // Further than the window past the cursor: not found.
        let mut wide = ColumnWalk::default();
        let mut cursor = 0;
        for address in 0..WALK_LENGTH + 10 {
            wide.insert(&mut cursor, address, ());
        }
        assert_eq!(wide.columns.len(), WALK_LENGTH, "stops growing");
        let mut cursor = 0;
        assert!(wide.find(&mut cursor, WALK_WINDOW - 1).is_some());
        let mut cursor = 0;
        assert!(wide.find(&mut cursor, WALK_WINDOW).is_none());
    }

    #[test]
    fn width_classes_round_up() {
        assert_eq!(width_class(ColumnType::Varchar(1)), ColumnType::Varchar(64));
        assert_eq!(
            width_class(ColumnType::Varchar(64)),
            ColumnType::Varchar(64)
        );
        assert_eq!(
            width_class(ColumnType::Varchar(65)),
            ColumnType::Varchar(256)
        );
        assert_eq!(
            width_class(ColumnType::Varchar(65535)),
            ColumnType::Varchar(65535)
        );
        assert_eq!(
            width_class(ColumnType::Varchar(70000)),
            ColumnType::Varchar(70000)
        );
        assert_eq!(width_class(ColumnType::BigInt), ColumnType::BigInt);
    }

    #[test]
    fn creation_type_follows_a_clear_majority() {
        use ColumnType::*;
        let one = |types: &[ColumnType]| types.iter().map(|t| (*t, 1)).collect::<Vec<_>>();
        assert_eq!(creation_type(&[]), None);
        assert_eq!(creation_type(&one(&[BigInt])), Some(BigInt));
        assert_eq!(creation_type(&one(&[BigInt, Double])), Some(Double));
        assert_eq!(creation_type(&one(&[Double, BigInt, BigInt])), Some(Double));
        assert_eq!(
            creation_type(&one(&[Varchar(64), Varchar(1024)])),
            Some(Varchar(1024))
        );
        // One vote each: no majority, so text holds them all.
        assert_eq!(
            creation_type(&one(&[BigInt, Varchar(64)])),
            Some(Varchar(256))
        );
        assert_eq!(
            creation_type(&one(&[Boolean, Timestamp])),
            Some(Varchar(256))
        );
        assert_eq!(creation_type(&one(&[Timestamp])), Some(Timestamp));
        // Three odd prices among 197: the column stays numeric.
        assert_eq!(
            creation_type(&[(Double, 150), (BigInt, 47), (Varchar(64), 3)]),
            Some(Double)
        );
        // Odd timestamps among standard ones.
        assert_eq!(
            creation_type(&[(Timestamp, 90), (Varchar(64), 10)]),
            Some(Timestamp)
        );
        // Exactly four in five is a clear majority; less is not.
        assert_eq!(
            creation_type(&[(BigInt, 4), (Varchar(64), 1)]),
            Some(BigInt)
        );
        assert_eq!(
            creation_type(&[(BigInt, 3), (Varchar(64), 1)]),
            Some(Varchar(256))
        );
        assert_eq!(
            creation_type(&[(BigInt, 7), (Boolean, 2), (Varchar(4096), 1)]),
            Some(Varchar(4096))
        );
        // Text in the majority stays text.
        assert_eq!(
            creation_type(&[(Varchar(64), 90), (BigInt, 10)]),
            Some(Varchar(256))
        );
        // Order does not matter.
        assert_eq!(
            creation_type(&[(Varchar(64), 1), (BigInt, 2), (Double, 2)]),
            creation_type(&[(Double, 2), (BigInt, 2), (Varchar(64), 1)]),
        );
    }
}
