//! naming: raw event and property names → safe, deterministic SQL identifiers.
//!
//! The rules, in order: camelCase → snake_case; lowercase ASCII; anything outside
//! `[a-z0-9]` → `_`, runs collapsed, trailing `_` trimmed; a name that had non-ASCII
//! characters (or nothing left) gets a hash suffix so distinct names stay distinct; a
//! leading digit gets `_`; a reserved word or a system column's name (`xmin`, `ctid`,
//! …) gets a trailing `_`; over 63 bytes it is cut with a hash suffix. The result
//! always matches `^[a-z_][a-z0-9_]{0,62}$`, is never a reserved word or a system
//! column's name, and normalising it again changes nothing.
//!
//! [`TableName`] and [`ColumnName`] can only be made here, so an unnormalised name
//! cannot reach SQL.

use std::fmt;
use std::ptr::NonNull;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::stable_hash;

/// The identifier limit, in bytes: PostgreSQL's (NAMEDATALEN - 1 = 63), the smaller of
/// the two warehouses' (Redshift allows 127). One limit for both keeps routing independent
/// of the warehouse, so moving a pipeline from PostgreSQL to Redshift renames nothing;
/// PostgreSQL would otherwise truncate longer names silently and two could collide.
pub const MAX_NAME_BYTES: usize = 63;

/// A normalised table name; only this module makes one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TableName(Name);

/// A normalised column name; only this module makes one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ColumnName(Name);

/// The text of a name. Every cell of every row carries one, and rows are built on the
/// timely workers and dropped on the loader's threads, so a reference count per name
/// was an atomic increment on one core and a decrement on another for every cell (half
/// of the loader's time dropping rows). Names are therefore interned for the life of
/// the process, up to [`INTERNED_BYTES`]; past that budget (only hostile input gets
/// there) new names fall back to a shared allocation, so memory stays bounded.
///
/// A name is one word: a pointer to a `&'static str` slot (interned or fixed) or to
/// a shared boxed text, with which of the three it is in the pointer's two low bits
/// (every one of them is 8-byte aligned). A cell is then 32 bytes, where an enum of the
/// three pointers made it 40 and a fat pointer 48; cells are most of a batch's memory.
struct Name(NonNull<()>);

/// The kinds of [`Name`], in its pointer's low bits.
const INTERNED: usize = 0;
/// One of tracktable's own names, at a constant's address: the interner may hold the
/// same text at another slot.
const FIXED: usize = 1;
/// Past the interner's budget: an `Arc<Box<str>>`, its pointer from `Arc::into_raw`.
const SHARED: usize = 2;
const KIND: usize = 0b11;

// SAFETY: a name is a `&'static &'static str` or an `Arc<Box<str>>`, both `Send` and
// `Sync`; `Clone` and `Drop` keep the `Arc`'s count as the `Arc` itself would.
unsafe impl Send for Name {}
unsafe impl Sync for Name {}

/// The most bytes of name text interned per process: at 63 bytes a name, over 260,000
/// distinct names.
pub const INTERNED_BYTES: usize = 16 << 20;

impl Name {
    fn new(text: &str) -> Name {
        match intern(text) {
            Some(interned) => Name::slot(interned, INTERNED),
            None => Name::shared(Arc::new(Box::from(text))),
        }
    }

    /// An interned (`INTERNED`) or constant (`FIXED`) slot.
    fn slot(slot: &'static &'static str, kind: usize) -> Name {
        Name::tagged(std::ptr::from_ref(slot).cast(), kind)
    }

    fn shared(text: Arc<Box<str>>) -> Name {
        Name::tagged(Arc::into_raw(text).cast(), SHARED)
    }

    fn tagged(pointer: *const (), kind: usize) -> Name {
        debug_assert_eq!(pointer.addr() & KIND, 0, "names are 8-byte aligned");
        let tagged = pointer.map_addr(|address| address | kind).cast_mut();
        // SAFETY: `pointer` comes from a reference or `Arc::into_raw`, never null, and
        // setting low bits of a non-null address keeps it non-null.
        Name(unsafe { NonNull::new_unchecked(tagged) })
    }

    fn kind(&self) -> usize {
        self.0.as_ptr().addr() & KIND
    }

    fn pointer(&self) -> *const () {
        self.0.as_ptr().map_addr(|address| address & !KIND)
    }

    fn as_str(&self) -> &str {
        let pointer = self.pointer();
        if self.kind() == SHARED {
            // SAFETY: a `SHARED` name holds a count of the `Arc<Box<str>>` this points
            // into, so the text lives at least as long as `self`.
            unsafe { &*pointer.cast::<Box<str>>() }
        } else {
            // SAFETY: `INTERNED` and `FIXED` point at a `&'static &'static str`.
            unsafe { *pointer.cast::<&'static str>() }
        }
    }

    /// The name's identity: the address of its slot or of its shared allocation. Equal
    /// addresses mean equal names (a slot's text never changes, and a holder keeps a
    /// shared allocation alive); equal names may have different addresses.
    fn address(&self) -> usize {
        self.pointer().addr()
    }

    /// The address of the interner's slot, if the name has one: unlike [`Name::address`],
    /// equal texts then have equal addresses (the interner keeps one slot per text).
    fn interned_address(&self) -> Option<usize> {
        (self.kind() == INTERNED).then(|| self.address())
    }
}

impl Clone for Name {
    fn clone(&self) -> Name {
        if self.kind() == SHARED {
            // SAFETY: `self` holds a count of this `Arc` (see `Name::shared`).
            unsafe { Arc::increment_strong_count(self.pointer().cast::<Box<str>>()) };
        }
        Name(self.0)
    }
}

impl Drop for Name {
    fn drop(&mut self) {
        if self.kind() == SHARED {
            // SAFETY: `self` holds a count of this `Arc`, given up exactly once here.
            unsafe { Arc::decrement_strong_count(self.pointer().cast::<Box<str>>()) };
        }
    }
}

impl PartialEq for Name {
    fn eq(&self, other: &Name) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Name {}

impl std::hash::Hash for Name {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl PartialOrd for Name {
    fn partial_cmp(&self, other: &Name) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Name {
    fn cmp(&self, other: &Name) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl Serialize for Name {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Name {
    /// Names arriving from another process are interned here too, so they share
    /// addresses with this process's own.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Name, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        Ok(Name::new(&text))
    }
}

/// The process-wide name table, with a per-thread copy in front of it: a name this
/// thread has seen is found without the lock (names from other processes are interned
/// as every cell is deserialised), and only a name new to the thread takes it.
fn intern(text: &str) -> Option<&'static &'static str> {
    use std::cell::RefCell;
    use std::sync::{Mutex, OnceLock, PoisonError};
    thread_local! {
        static SEEN: RefCell<Slots> = RefCell::default();
    }
    static NAMES: OnceLock<Mutex<Interner>> = OnceLock::new();
    if let Some(found) = SEEN.with(|seen| seen.borrow().get(text).copied()) {
        return Some(found);
    }
    let interned = NAMES
        .get_or_init(|| Mutex::new(Interner::new(INTERNED_BYTES)))
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get_or_leak(text)?;
    // Every entry is in the global table too, so this copy is bounded by its budget.
    SEEN.with(|seen| seen.borrow_mut().insert(*interned, interned));
    Some(interned)
}

/// Interned texts and their slots.
type Slots =
    std::collections::HashMap<&'static str, &'static &'static str, foldhash::fast::RandomState>;

/// Distinct texts, each leaked once with a slot pointing at it, until `budget` bytes
/// are used.
struct Interner {
    names: Slots,
    bytes: usize,
    budget: usize,
}

impl Interner {
    fn new(budget: usize) -> Interner {
        Interner {
            names: Default::default(),
            bytes: 0,
            budget,
        }
    }

    /// The interned slot of `text`; `None` once a new text would exceed the budget.
    fn get_or_leak(&mut self, text: &str) -> Option<&'static &'static str> {
        if let Some(existing) = self.names.get(text) {
            return Some(existing);
        }
        // The slot's 16 bytes count too.
        let cost = text.len() + std::mem::size_of::<&str>();
        if self.bytes + cost > self.budget {
            return None;
        }
        let leaked: &'static str = Box::leak(text.to_owned().into_boxed_str());
        let slot: &'static &'static str = Box::leak(Box::new(leaked));
        self.bytes += cost;
        self.names.insert(leaked, slot);
        Some(slot)
    }
}

impl TableName {
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// One of tracktable's own fixed table names (already normal, never user input),
    /// as a promoted constant: `TableName::fixed(&"tracks")`.
    pub(crate) fn fixed(name: &'static &'static str) -> TableName {
        debug_assert!(is_normal(name), "{name}");
        TableName(Name::slot(name, FIXED))
    }

    /// The name's identity (see `Name::address`): equal addresses mean equal names (not the
    /// reverse). A cheap identity for per-row hot loops (`columns::Observer`); any
    /// holder of the name keeps the address from being reused.
    pub fn address(&self) -> usize {
        self.0.address()
    }

    /// Which worker owns the table (the dataflow exchanges rows and schema changes by
    /// it). Every row pays for it, so it is foldhash rather than differential's
    /// `Hashable` (SipHash, 1.5% of a worker's samples), with a fixed seed so that
    /// every process of a cluster agrees. Not a persistent format: only processes of
    /// one build need to agree, and they do.
    pub fn owner_hash(&self) -> u64 {
        use std::hash::BuildHasher;
        const SEED: u64 = 0x7472_6163_6b74_6162;
        foldhash::fast::FixedState::with_seed(SEED).hash_one(self.as_str())
    }
}

impl ColumnName {
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// One of tracktable's own fixed column names. These may be reserved words
    /// (`timestamp`): SQL always quotes identifiers, and they never come from input.
    pub(crate) fn fixed(name: &'static &'static str) -> ColumnName {
        ColumnName(Name::slot(name, FIXED))
    }

    /// One of tracktable's own names, from the interner: its
    /// [`ColumnName::interned_address`] is then the same as any other name's of that text.
    pub(crate) fn own(name: &'static str) -> ColumnName {
        debug_assert!(is_normal(name) || super::own::ALL.contains(&name), "{name}");
        ColumnName(Name::new(name))
    }

    /// See `Name::interned_address`: two names with an interned address are equal if and
    /// only if their addresses are; a name without one (past the interner's budget, or
    /// made by [`ColumnName::fixed`]) has to be compared by its text.
    pub fn interned_address(&self) -> Option<usize> {
        self.0.interned_address()
    }

    /// See [`TableName::address`].
    pub fn address(&self) -> usize {
        self.0.address()
    }

    /// A column name from an already-normalised string (used by the router's cache).
    pub(crate) fn from_normal(name: String) -> ColumnName {
        debug_assert!(is_normal(&name), "{name}");
        ColumnName(Name::new(&name))
    }
}

impl ColumnName {
    /// The name as one word that holds its reference (for [`super::cells`], which packs
    /// names into a row's bytes): give it back exactly once, to
    /// [`ColumnName::from_word`] or [`ColumnName::release_word`].
    pub(crate) fn into_word(self) -> u64 {
        // Exposed, so `Name::word_pointer` may make a usable pointer of it again.
        let word = self.0.0.as_ptr().expose_provenance() as u64;
        std::mem::forget(self);
        word
    }

    /// Whether a word from [`ColumnName::into_word`] holds a reference count (a name
    /// past the interner's budget), so its holder must release it.
    pub(crate) fn word_is_counted(word: u64) -> bool {
        word as usize & KIND == SHARED
    }

    /// The [`ColumnName::address`] of the name `word` holds.
    pub(crate) fn word_address(word: u64) -> usize {
        word as usize & !KIND
    }

    /// A name equal to the one `word` holds, without giving the word up.
    ///
    /// # Safety
    /// `word` came from [`ColumnName::into_word`] and has not been released.
    pub(crate) unsafe fn from_word(word: u64) -> ColumnName {
        let held = Name(Name::word_pointer(word));
        let name = held.clone();
        std::mem::forget(held);
        ColumnName(name)
    }

    /// Gives up the reference `word` holds.
    ///
    /// # Safety
    /// `word` came from [`ColumnName::into_word`] and is released only this once.
    pub(crate) unsafe fn release_word(word: u64) {
        drop(Name(Name::word_pointer(word)));
    }
}

#[cfg(test)]
impl ColumnName {
    /// A name as it is made past the interner's budget: a counted allocation.
    pub(crate) fn past_the_budget(text: &str) -> ColumnName {
        ColumnName(Name::shared(Arc::new(Box::from(text))))
    }

    /// How many holders a name past the budget has; `None` for other names.
    pub(crate) fn shared_count(&self) -> Option<usize> {
        (self.0.kind() == SHARED).then(|| {
            let pointer = self.0.pointer().cast::<Box<str>>();
            // SAFETY: `self` holds a count, so the allocation is alive; the `Arc` made
            // here is forgotten, not dropped, so the count is unchanged.
            let arc = std::mem::ManuallyDrop::new(unsafe { Arc::from_raw(pointer) });
            Arc::strong_count(&arc)
        })
    }
}

impl Name {
    /// The pointer of a name's word (see [`ColumnName::into_word`]).
    fn word_pointer(word: u64) -> NonNull<()> {
        let pointer = std::ptr::with_exposed_provenance_mut::<()>(word as usize);
        // SAFETY: words come from `ColumnName::into_word` of a name, never null.
        unsafe { NonNull::new_unchecked(pointer) }
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for ColumnName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The table for a raw event name.
pub fn table_name(raw: &str) -> TableName {
    TableName(Name::new(&normalise(raw)))
}

/// The column for a raw property name (or a `_`-joined path of names).
pub fn column_name(raw: &str) -> ColumnName {
    ColumnName(Name::new(&normalise(raw)))
}

/// Applies every naming rule to `raw`.
pub fn normalise(raw: &str) -> String {
    let mut name = snake_case(raw);
    if !raw.is_ascii() || name.is_empty() {
        name.push('_');
        name.push_str(&stable_hash::short_hex(&[raw.as_bytes()]));
    }
    if name.as_bytes()[0].is_ascii_digit() {
        name.insert(0, '_');
    }
    if is_reserved(&name) {
        name.push('_');
    }
    cut(name)
}

/// Cuts a name over [`MAX_NAME_BYTES`] to fit, with a hash of the whole name, so two
/// long names sharing a prefix stay distinct. Shorter names are returned unchanged.
pub fn cut(name: String) -> String {
    if name.len() <= MAX_NAME_BYTES {
        return name;
    }
    // Names here are ASCII, so any byte index is a char boundary.
    let suffix = stable_hash::short_hex(&[name.as_bytes()]);
    let mut short = name[..MAX_NAME_BYTES - 1 - suffix.len()]
        .trim_end_matches('_')
        .to_owned();
    short.push('_');
    short.push_str(&suffix);
    short
}

/// A name with a hash suffix of `salt`, cut to fit: how a name that lost a collision is
/// told apart.
pub fn with_suffix(name: &str, salt: &str) -> String {
    let suffix = stable_hash::short_hex(&[salt.as_bytes()]);
    let room = MAX_NAME_BYTES - 1 - suffix.len();
    let base = if name.len() > room {
        name[..room].trim_end_matches('_')
    } else {
        name
    };
    format!("{base}_{suffix}")
}

/// camelCase → snake_case, lowercase, non-`[a-z0-9]` → `_`, runs of `_` collapsed,
/// trailing `_` trimmed.
fn snake_case(raw: &str) -> String {
    let chars: Vec<char> = raw.chars().collect();
    let mut out = String::with_capacity(raw.len() + 4);
    for (index, &c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() {
            let previous = index.checked_sub(1).map(|i| chars[i]);
            let next = chars.get(index + 1).copied();
            let after_lower_or_digit =
                previous.is_some_and(|p| p.is_ascii_lowercase() || p.is_ascii_digit());
            let acronym_end = previous.is_some_and(|p| p.is_ascii_uppercase())
                && next.is_some_and(|n| n.is_ascii_lowercase());
            if after_lower_or_digit || acronym_end {
                push_underscore(&mut out);
            }
            out.push(c.to_ascii_lowercase());
        } else if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else {
            push_underscore(&mut out);
        }
    }
    while out.ends_with('_') {
        out.pop();
    }
    out
}

fn push_underscore(out: &mut String) {
    if !out.ends_with('_') {
        out.push('_');
    }
}

/// Whether `name` already follows every rule (`normalise(name) == name`).
pub fn is_normal(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_NAME_BYTES
        && (bytes[0].is_ascii_lowercase() || bytes[0] == b'_')
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_')
        && !is_reserved(name)
}

/// Whether `name` is a reserved word in Redshift or PostgreSQL, or a system column's
/// name, which no user column may take even quoted.
pub fn is_reserved(name: &str) -> bool {
    RESERVED.binary_search(&name).is_ok() || SYSTEM_COLUMNS.contains(&name)
}

/// Column names every table already has. PostgreSQL's system columns ("System
/// Columns" in its manual: `tableoid`, `xmin`, `cmin`, `xmax`, `cmax`, `ctid`, and
/// `oid` before version 12), which Redshift's "Names and identifiers" also forbids, and
/// Redshift's hidden columns (a row's insert and delete transaction ids, listed in
/// `pg_attribute` as `insertxid` and `deletexid`; its row id is `oid`). Creating such a
/// column fails (`42701`), and adding one to an existing table reads as a concurrent
/// creator's "already exists", so the load would wait for a column that never comes.
const SYSTEM_COLUMNS: [&str; 9] = [
    "cmax",
    "cmin",
    "ctid",
    "deletexid",
    "insertxid",
    "oid",
    "tableoid",
    "xmax",
    "xmin",
];

/// Redshift's reserved words (AWS "Reserved words" list) plus PostgreSQL's that are not
/// in it; lowercase, sorted for binary search.
const RESERVED: &[&str] = &[
    "aes128",
    "aes256",
    "all",
    "allowoverwrite",
    "analyse",
    "analyze",
    "and",
    "any",
    "array",
    "as",
    "asc",
    "asymmetric",
    "authorization",
    "az64",
    "backup",
    "between",
    "binary",
    "blanksasnull",
    "both",
    "bytedict",
    "bzip2",
    "case",
    "cast",
    "check",
    "collate",
    "column",
    "concurrently",
    "constraint",
    "create",
    "credentials",
    "cross",
    "current_catalog",
    "current_date",
    "current_role",
    "current_schema",
    "current_time",
    "current_timestamp",
    "current_user",
    "current_user_id",
    "default",
    "deferrable",
    "deflate",
    "defrag",
    "delta",
    "delta32k",
    "desc",
    "disable",
    "distinct",
    "do",
    "else",
    "emptyasnull",
    "enable",
    "encode",
    "encrypt",
    "encryption",
    "end",
    "except",
    "explicit",
    "false",
    "fetch",
    "for",
    "foreign",
    "freeze",
    "from",
    "full",
    "globaldict256",
    "globaldict64k",
    "grant",
    "group",
    "gzip",
    "having",
    "identity",
    "ignore",
    "ilike",
    "in",
    "initially",
    "inner",
    "intersect",
    "interval",
    "into",
    "is",
    "isnull",
    "join",
    "language",
    "lateral",
    "leading",
    "left",
    "like",
    "limit",
    "localtime",
    "localtimestamp",
    "lun",
    "luns",
    "lzo",
    "lzop",
    "minus",
    "mostly16",
    "mostly32",
    "mostly8",
    "natural",
    "new",
    "not",
    "notnull",
    "null",
    "nulls",
    "off",
    "offline",
    "offset",
    "oid",
    "old",
    "on",
    "only",
    "open",
    "or",
    "order",
    "outer",
    "overlaps",
    "parallel",
    "partition",
    "percent",
    "permissions",
    "pivot",
    "placing",
    "primary",
    "raw",
    "readratio",
    "recover",
    "references",
    "rejectlog",
    "resort",
    "respect",
    "restore",
    "returning",
    "right",
    "select",
    "session_user",
    "similar",
    "snapshot",
    "some",
    "symmetric",
    "sysdate",
    "system",
    "table",
    "tablesample",
    "tag",
    "tdes",
    "text255",
    "text32k",
    "then",
    "timestamp",
    "to",
    "top",
    "trailing",
    "true",
    "truncatecolumns",
    "type",
    "union",
    "unique",
    "unnest",
    "unpivot",
    "user",
    "using",
    "variadic",
    "verbose",
    "wallet",
    "when",
    "where",
    "window",
    "with",
    "without",
];

#[cfg(test)]
mod tests {
    #[test]
    fn a_tables_owner_hash_is_by_text_and_spreads_tables_over_workers() {
        let interned = table_name("Order Completed");
        let shared = TableName(Name::shared(Arc::new(Box::from("order_completed"))));
        assert_eq!(interned.owner_hash(), shared.owner_hash());
        // Timely picks the worker from the hash's low bits: two workers must each own
        // a fair share of a catalogue's tables.
        let first_of_two = (0..200)
            .filter(|n| {
                table_name(&format!("event {n}"))
                    .owner_hash()
                    .is_multiple_of(2)
            })
            .count();
        assert!((70..=130).contains(&first_of_two), "{first_of_two} of 200");
    }

    #[test]
    fn a_name_is_one_word_and_a_cell_four() {
        // Cells are most of a batch's memory: a fat-pointer name made them 48 bytes.
        assert_eq!(std::mem::size_of::<ColumnName>(), 8);
        assert_eq!(std::mem::size_of::<Option<ColumnName>>(), 8);
        assert_eq!(std::mem::size_of::<(ColumnName, crate::route::Value)>(), 32);
    }

    #[test]
    fn a_shared_name_holds_one_count_of_its_text_per_copy() {
        let text: Arc<Box<str>> = Arc::new(Box::from("past_the_budget"));
        let name = Name::shared(Arc::clone(&text));
        let copy = name.clone();
        assert_eq!(Arc::strong_count(&text), 3);
        assert_eq!(
            (name.as_str(), copy.as_str()),
            ("past_the_budget", "past_the_budget")
        );
        assert_eq!(name.interned_address(), None);
        drop(name);
        assert_eq!(Arc::strong_count(&text), 2);
        drop(copy);
        assert_eq!(Arc::strong_count(&text), 1);
        let fixed = Name::slot(&"tracks", FIXED);
        assert_eq!((fixed.as_str(), fixed.interned_address()), ("tracks", None));
        let interned = Name::new("some_name");
        assert_eq!(interned.interned_address(), Some(interned.address()));
    }

    #[test]
    fn a_name_past_the_budget_is_shared_and_still_compares_by_text() {
        let long = "x".repeat(60);
        let shared = ColumnName(Name::shared(Arc::new(Box::from(long.as_str()))));
        assert_eq!(shared.as_str(), long);
        assert_eq!(shared, column_name(&long));
        assert_eq!(shared.clone().address(), shared.address());
    }

    #[test]
    fn interned_names_are_one_text_per_process_and_compare_by_text() {
        let a = column_name("Some Property");
        let b = column_name("some_property");
        assert_eq!(a, b);
        assert_eq!(a.address(), b.address(), "one interned text");
        let shared = ColumnName(Name::shared(Arc::new(Box::from("some_property"))));
        assert_eq!(shared, a, "equality is by text, whatever the storage");
        assert_eq!(shared.cmp(&a), std::cmp::Ordering::Equal);
        let state = std::hash::RandomState::new();
        use std::hash::BuildHasher;
        assert_eq!(state.hash_one(&shared), state.hash_one(&a));
        assert_ne!(
            ColumnName::fixed(&"user").address(),
            column_name("user_id").address()
        );
    }

    #[test]
    fn the_interner_stops_at_its_budget_and_keeps_what_it_has() {
        // Each name costs its text and its 16-byte slot.
        let mut interner = Interner::new(42);
        let first = interner.get_or_leak("abcdef").unwrap();
        assert_eq!(
            interner.get_or_leak("abcdef"),
            Some(first),
            "found, not leaked again"
        );
        assert_eq!(
            interner.get_or_leak("ghijkl"),
            None,
            "22 + 22 bytes is over 42"
        );
        assert!(interner.get_or_leak("ghij").is_some(), "22 + 20 fits");
        assert_eq!(interner.get_or_leak("abcdef"), Some(first));
    }

    #[test]
    fn names_serialize_as_their_text_and_come_back_interned() {
        let name = column_name("price");
        let json = serde_json::to_string(&name).unwrap();
        assert_eq!(json, "\"price\"");
        let back: ColumnName = serde_json::from_str(&json).unwrap();
        assert_eq!(back, name);
        assert_eq!(back.address(), name.address());
    }

    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reserved_list_is_sorted() {
        assert!(
            RESERVED.windows(2).all(|pair| pair[0] < pair[1]),
            "RESERVED must be sorted and unique"
        );
    }

    #[test]
    fn examples() {
        let cases = [
            ("Order Completed", "order_completed"),
            ("messageId", "message_id"),
            ("HTTPServer", "http_server"),
            ("page2View", "page2_view"),
            ("product_id", "product_id"),
            ("context.page.url", "context_page_url"),
            ("1st place", "_1st_place"),
            ("select", "select_"),
            ("user", "user_"),
            ("FROM", "from_"),
            ("\"; DROP TABLE users; --", "_drop_table_users"),
            ("__private", "_private"),
            ("a  b--c", "a_b_c"),
            ("Ends!!", "ends"),
            ("trailing", "trailing_"),
            ("xmin", "xmin_"),
            ("XMAX", "xmax_"),
            ("ctid", "ctid_"),
            ("tableoid", "tableoid_"),
            ("cmin", "cmin_"),
            ("cmax", "cmax_"),
            ("oid", "oid_"),
            ("insertxid", "insertxid_"),
            ("deleteXid", "delete_xid"),
            ("xMin", "x_min"),
        ];
        for (raw, expected) in cases {
            assert_eq!(normalise(raw), expected, "normalise({raw:?})");
        }
    }

    #[test]
    fn non_ascii_names_stay_distinct() {
        let a = normalise("名前");
        let b = normalise("価格");
        assert_ne!(a, b);
        assert!(a.starts_with('_') && a.len() == 9, "{a}");
        let cafe = normalise("café");
        assert!(cafe.starts_with("caf_"), "{cafe}");
        assert_ne!(normalise("🎉 Party"), normalise("🎈 Party"));
        assert!(normalise("🎉 Party").starts_with("_party_"));
    }

    #[test]
    fn long_names_are_cut_with_a_hash() {
        let long_a = "a".repeat(300);
        let long_b = format!("{}b", "a".repeat(299));
        let cut_a = normalise(&long_a);
        assert_eq!(cut_a.len(), MAX_NAME_BYTES);
        assert_ne!(cut_a, normalise(&long_b));
        assert_eq!(normalise(&cut_a), cut_a);
    }

    fn check(raw: &str) {
        let name = normalise(raw);
        assert!(is_normal(&name), "{raw:?} → {name:?}");
        assert_eq!(normalise(&name), name, "not idempotent for {raw:?}");
    }

    proptest! {
        #[test]
        fn any_string_normalises_to_a_safe_fixed_point(raw in "\\PC*") {
            check(&raw);
        }

        #[test]
        fn ascii_identifiers_normalise_to_a_safe_fixed_point(raw in "[a-zA-Z0-9_ .$-]{0,200}") {
            check(&raw);
        }

        #[test]
        fn system_column_names_in_any_case(index in 0..SYSTEM_COLUMNS.len(), upper in any::<bool>()) {
            let word = if upper { SYSTEM_COLUMNS[index].to_ascii_uppercase() } else { SYSTEM_COLUMNS[index].to_owned() };
            check(&word);
            prop_assert_eq!(normalise(&word), format!("{}_", SYSTEM_COLUMNS[index]));
        }

        #[test]
        fn reserved_words_in_any_case(index in 0..RESERVED.len(), upper in any::<bool>()) {
            let word = if upper { RESERVED[index].to_ascii_uppercase() } else { RESERVED[index].to_owned() };
            check(&word);
        }
    }
}
