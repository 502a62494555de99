//! route: a decoded message → the rows it becomes, with names and types settled.
//!
//! This is the only place raw names become [`TableName`]s and [`ColumnName`]s, and the
//! only place JSON values become typed [`Value`]s. It is pure and deterministic: the
//! same message gives the same rows on every worker, process and run, whatever was
//! routed before it (the [`Router`]'s caches never change a result).
//!
//! | message  | rows                                                              |
//! |----------|-------------------------------------------------------------------|
//! | track    | `tracks` (common + `event`, `event_text`) and the event's own table (the same + properties) |
//! | identify | `identifies` (common + traits); with a user id, also `users` (latest traits per user) |
//! | page     | `pages` (common + `name`, `category` + properties)               |
//! | screen   | `screens` (common + `name` + properties)                         |
//! | group    | `groups` (common + `group_id` + traits); also `accounts` (latest traits per group) |
//! | alias    | `aliases` (common + `previous_id` + traits)                      |
//!
//! Common columns: `anonymous_id`, `user_id`, `timestamp`, `original_timestamp`,
//! `sent_at`, `received_at`, `channel`, and `context` flattened as `context_*`
//! (`context_ip` falls back to a top-level `request_ip`). The key is
//! [`Row::message_id`]: the message id, stored as the `id` column; `users` and
//! `accounts` rows are keyed by the user or group id instead (also `id`), carry
//! `message_id`, `received_at`, `timestamp` and the traits, and are merged newest-wins.
//! An identify call with no `traits` gives `users` its `context.traits`. The column
//! names follow Segment's warehouse schema ([`own`]); `uuid_ts` is the warehouse's.

pub mod cells;
pub mod naming;
pub mod own;
pub mod plan;
pub mod text;
pub mod value;

use std::collections::{HashMap, HashSet};

use foldhash::fast::RandomState;
use std::io::Read;
use std::rc::Rc;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::columns::Observer;
use crate::decode::{
    self, DecodeSummary, Decoded, Json, JsonObject, Limits, Message, MessageKind, Position,
    RejectReason, Rejection,
};

pub use cells::Cells;
pub use naming::{ColumnName, TableName};
pub use value::{ColumnType, Text, Timestamp, Typed, Value, ValueRef};

/// One row for one table. Owned and serializable: rows cross workers and processes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub table: TableName,
    /// The row's key: the message id, or for `users` and `accounts` the user or group id.
    pub message_id: String,
    /// Where the message came from, for `_discards` and `_rejections` pointers.
    pub object: Arc<str>,
    pub position: Position,
    /// Cells this row shares with another row of its message: a track call's `tracks`
    /// row is exactly the first cells of its event table's row (the common columns,
    /// the context, `event` and `event_text`), so the two hold one copy. Rows live until
    /// their batch commits, and the copy was a third of a batch's cells.
    pub shared: Option<Arc<Cells>>,
    /// The row's other cells. Across both, non-null columns only, each name at most
    /// once; absent columns load as NULL. Read them with [`Row::cells`].
    pub own: Cells,
    /// Whether a text of this row may hold a NUL character, which neither warehouse can
    /// store. In a message only a JSON `\u0000` escape makes one, so the rows of a line
    /// without that escape say `false` and the loader skips its per-text check (a
    /// `memchr` per text was 4% of tracktable's CPU). Rows made any other way say `true`.
    pub may_hold_nul: bool,
}

impl Row {
    /// A row whose cells are all its own, and which may hold a NUL character.
    pub fn new(
        table: TableName,
        message_id: String,
        object: Arc<str>,
        position: Position,
        cells: Vec<(ColumnName, Value)>,
    ) -> Row {
        Row::packed(table, message_id, object, position, cells)
    }

    /// [`Row::new`] from any values cells are packed from.
    fn packed(
        table: TableName,
        message_id: String,
        object: Arc<str>,
        position: Position,
        cells: Vec<(ColumnName, impl cells::CellValue)>,
    ) -> Row {
        Row {
            table,
            message_id,
            object,
            position,
            shared: None,
            own: Cells::new(cells),
            may_hold_nul: true,
        }
    }

    /// Every cell: the shared ones, then the row's own. The names live as long as the
    /// row (an address read from one stays unused by any other name while the row is
    /// borrowed).
    pub fn cells(&self) -> impl ExactSizeIterator<Item = (ColumnName, ValueRef<'_>)> + Clone {
        let shared = self.shared.as_deref().map(Cells::iter).unwrap_or_default();
        CellsIter {
            shared,
            own: self.own.iter(),
        }
    }

    /// Every cell, as [`Row::cells`], in the two parts they are packed in: the
    /// shared, then the row's own. Read with [`cells::Iter::next_word`].
    pub(crate) fn cell_parts(&self) -> [cells::Iter<'_>; 2] {
        let shared = self.shared.as_deref().map(Cells::iter).unwrap_or_default();
        [shared, self.own.iter()]
    }

    /// How many cells the row has.
    pub fn cell_count(&self) -> usize {
        self.shared.as_deref().map_or(0, Cells::len) + self.own.len()
    }

    /// The value of the column `name`, if the row has it.
    pub fn cell(&self, name: &str) -> Option<ValueRef<'_>> {
        self.cells()
            .find(|(column, _)| column.as_str() == name)
            .map(|(_, value)| value)
    }

    /// An owned copy of [`Row::cell`].
    pub fn value(&self, name: &str) -> Option<Value> {
        self.cell(name).map(|value| value.to_value())
    }
}

/// [`Row::cells`]: a chain that knows its length.
#[derive(Clone)]
struct CellsIter<'a> {
    shared: cells::Iter<'a>,
    own: cells::Iter<'a>,
}

impl<'a> Iterator for CellsIter<'a> {
    type Item = (ColumnName, ValueRef<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        self.shared.next().or_else(|| self.own.next())
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let len = self.shared.len() + self.own.len();
        (len, Some(len))
    }
}

impl ExactSizeIterator for CellsIter<'_> {}

/// Table names tracktable fills itself; an event whose name normalises to one of these
/// (or to any name starting with `_`, which tracktable keeps for its own tables) gets
/// its table prefixed with `track_`.
const OWN_TABLES: [&str; 8] = [
    "accounts",
    "aliases",
    "groups",
    "identifies",
    "pages",
    "screens",
    "tracks",
    "users",
];

/// Caches are cleared when they grow past this, so hostile input cannot grow memory.
const CACHE_LIMIT: usize = 100_000;

/// Routes messages to rows. Holds caches only: results never depend on what it saw
/// before.
#[derive(Debug, Default)]
pub struct Router {
    /// The pipeline's tracking plan, if any.
    plan: Option<Arc<plan::TrackingPlan>>,
    // foldhash, not SipHash: these are looked up for every leaf of every message, and
    // foldhash is still seeded per process, so hostile names cannot aim collisions.
    tables: HashMap<String, TableName, RandomState>,
    /// Raw `.`-joined path → normalised name and its [`own_mask`], for properties/traits
    /// and for context (keyed with a `context.` prefix). Every leaf of every message
    /// takes a reference to its path and drops it: counted without atomics, since a
    /// router and its candidates never leave their worker's thread.
    columns: HashMap<Rc<str>, (ColumnName, u8), RandomState>,
    /// Prefixed raw path (`properties.name`) → the name [`Router::prefix_clashes`] gives
    /// it: a page call's `name` and `category` properties are prefixed in every call.
    prefixed: HashMap<Rc<str>, (ColumnName, u8), RandomState>,
    path: String,
    /// tracktable's own column names as the interner holds them, by the address of the
    /// constant that names them: the clash check compares names by interned address.
    own_names: Vec<(usize, ColumnName)>,
    /// What the tracking plan refused since [`Router::take_refusals`] last ran: route's
    /// own rejections, counted like decode's so the run's totals hold every item that
    /// did not load.
    refused: crate::decode::DecodeSummary,
}

/// A column of a row before collisions are resolved.
#[derive(Clone)]
struct Candidate<'m> {
    name: ColumnName,
    /// The raw path it came from; decides collisions. `None` for fixed columns.
    raw: Option<Rc<str>>,
    /// Who wins a collision first: fixed columns (0), then context (1), then
    /// properties and traits (2).
    origin: u8,
    /// Which of tracktable's column lists the name is in ([`own_mask`]); 0 for fixed
    /// columns, which are never prefixed.
    own: u8,
    value: Typed<'m>,
}

/// One of [`own`]'s lists of a table's own columns, with its bit in [`own_mask`].
#[derive(Clone, Copy)]
struct OwnColumns {
    bit: u8,
    columns: &'static [&'static str],
}

const TRACKS: OwnColumns = OwnColumns {
    bit: 1,
    columns: own::TRACKS,
};
const IDENTIFIES: OwnColumns = OwnColumns {
    bit: 1 << 1,
    columns: own::IDENTIFIES,
};
const PAGES: OwnColumns = OwnColumns {
    bit: 1 << 2,
    columns: own::PAGES,
};
const SCREENS: OwnColumns = OwnColumns {
    bit: 1 << 3,
    columns: own::SCREENS,
};
const GROUPS: OwnColumns = OwnColumns {
    bit: 1 << 4,
    columns: own::GROUPS,
};
const ALIASES: OwnColumns = OwnColumns {
    bit: 1 << 5,
    columns: own::ALIASES,
};
const LATEST: OwnColumns = OwnColumns {
    bit: 1 << 6,
    columns: own::LATEST,
};

/// The lists of own columns `name` is in, one bit each: worked out once per cached
/// name, so a property's clash test is a bit test rather than a search per list.
fn own_mask(name: &str) -> u8 {
    [TRACKS, IDENTIFIES, PAGES, SCREENS, GROUPS, ALIASES, LATEST]
        .iter()
        .filter(|list| list.columns.binary_search(&name).is_ok())
        .fold(0, |mask, list| mask | list.bit)
}

impl Router {
    pub fn new() -> Router {
        Router::default()
    }

    /// A router that applies a tracking plan.
    pub fn with_plan(plan: Option<Arc<plan::TrackingPlan>>) -> Router {
        Router {
            plan,
            ..Router::default()
        }
    }

    /// The plan's refusals counted since the last call (only their rejection counts and
    /// reasons are set).
    pub fn take_refusals(&mut self) -> crate::decode::DecodeSummary {
        std::mem::take(&mut self.refused)
    }

    /// Appends the rows for `message` to `out`, or, where the tracking plan refuses the
    /// event or some of its properties, a `_rejections` row keeping `raw`. Every row's
    /// cells go to `observer`, if given, as they are made.
    pub fn rows_for_item(
        &mut self,
        message: &Message<'_>,
        raw: &str,
        object: &Arc<str>,
        position: Position,
        out: &mut Vec<Row>,
        mut observer: Option<&mut Observer>,
    ) {
        let Some(plan) = self.plan.clone() else {
            return self.route(message, object, position, out, observer);
        };
        if message.kind != MessageKind::Track {
            return self.route(message, object, position, out, observer);
        }
        let event = message.event.as_deref().unwrap_or_default();
        let refused = &mut self.refused;
        let mut reject = |reason: RejectReason, out: &mut Vec<Row>| {
            refused.reject(&reason);
            let row = rejection_row(&Rejection::new(object, position, reason, raw.as_bytes()));
            if let Some(observer) = observer.as_deref_mut() {
                observer.observe([&row]);
            }
            out.push(row);
        };
        match plan.verdict(event) {
            plan::Verdict::Load => self.route(message, object, position, out, observer),
            plan::Verdict::Refuse(why) => reject(RejectReason::NotInPlan(why), out),
            plan::Verdict::LoadOnly(allowed) => {
                let (kept, extra): (Vec<_>, Vec<_>) = message
                    .properties
                    .0
                    .iter()
                    .cloned()
                    .partition(|(key, _)| allowed.contains(key.as_ref()));
                if extra.is_empty() {
                    return self.route(message, object, position, out, observer);
                }
                let names: Vec<&str> = extra.iter().map(|(key, _)| key.as_ref()).collect();
                reject(
                    RejectReason::PropertiesNotInPlan {
                        event: event.to_owned(),
                        properties: names.join(", "),
                    },
                    out,
                );
                let mut trimmed = message.clone();
                trimmed.properties = JsonObject(kept);
                self.route(&trimmed, object, position, out, observer);
            }
        }
    }

    /// Appends the rows for `message` to `out` (no tracking plan applied).
    pub fn rows_for(
        &mut self,
        message: &Message<'_>,
        object: &Arc<str>,
        position: Position,
        out: &mut Vec<Row>,
    ) {
        self.route(message, object, position, out, None);
    }

    /// [`Router::rows_for`], giving each row's cells to `observer` as they are packed.
    fn route(
        &mut self,
        message: &Message<'_>,
        object: &Arc<str>,
        position: Position,
        out: &mut Vec<Row>,
        mut observer: Option<&mut Observer>,
    ) {
        let mut common = Vec::with_capacity(8 + message.context.len() * 2);
        push_text(
            &mut common,
            self.own(&"anonymous_id"),
            message.anonymous_id.as_deref(),
            false,
        );
        push_text(
            &mut common,
            self.own(&"user_id"),
            message.user_id.as_deref(),
            false,
        );
        push_text(
            &mut common,
            self.own(&"timestamp"),
            message.timestamp.as_deref(),
            true,
        );
        push_text(
            &mut common,
            self.own(&"original_timestamp"),
            message.original_timestamp.as_deref(),
            true,
        );
        push_text(
            &mut common,
            self.own(&"sent_at"),
            message.sent_at.as_deref(),
            true,
        );
        push_text(
            &mut common,
            self.own(&"received_at"),
            message.received_at.as_deref(),
            true,
        );
        push_text(
            &mut common,
            self.own(&"channel"),
            message.channel.as_deref(),
            false,
        );
        self.flatten(&message.context, "context", &mut common);
        if let Some(ip) = message.request_ip.as_deref()
            && message.context.get("ip").is_none_or(|ip| *ip == Json::Null)
        {
            // The column the context's own `ip` would have made, from the same cache.
            self.path.clear();
            self.path.push_str("context.ip");
            let (raw, name, own) = self.column();
            common.push(Candidate {
                name,
                raw: Some(raw),
                value: Typed::Borrowed(ValueRef::Varchar(ip)),
                origin: 1,
                own,
            });
        }

        // A row of `table` keyed by `key`, its cells observed before they are packed.
        let row = |observer: &mut Option<&mut Observer>,
                   table: TableName,
                   key: &str,
                   candidates: Vec<Candidate>| {
            let cells = resolve(&[], candidates);
            if let Some(observer) = observer {
                observer.observe_cells(&table, cells.iter().map(cell_ref));
            }
            Row::packed(table, key.to_owned(), Arc::clone(object), position, cells)
        };
        let id = message.message_id.as_ref();
        match message.kind {
            MessageKind::Track => {
                let raw_event = message.event.as_deref().unwrap_or_default();
                let table = self.event_table(raw_event);
                let mut fixed = common;
                fixed.push(fixed_text(self.own(&"event"), table.as_str()));
                fixed.push(fixed_text(self.own(&"event_text"), raw_event));
                let fixed = resolve(&[], fixed);
                let mut properties = Vec::with_capacity(message.properties.len());
                self.properties(&message.properties, "properties", TRACKS, &mut properties);
                let own = resolve(&fixed, properties);
                if let Some(observer) = observer.as_deref_mut() {
                    observer
                        .observe_cells(&TableName::fixed(&"tracks"), fixed.iter().map(cell_ref));
                    observer.observe_cells(&table, fixed.iter().chain(&own).map(cell_ref));
                }
                let shared = Arc::new(Cells::new(fixed));
                let sharing = |table: TableName, own: Vec<(ColumnName, Typed<'_>)>| Row {
                    table,
                    message_id: id.to_owned(),
                    object: Arc::clone(object),
                    position,
                    shared: Some(Arc::clone(&shared)),
                    own: Cells::new(own),
                    may_hold_nul: true,
                };
                out.push(sharing(TableName::fixed(&"tracks"), Vec::new()));
                out.push(sharing(table, own));
            }
            MessageKind::Identify => {
                let start = common.len();
                self.flatten_properties(&message.properties, &mut common);
                let latest = message.user_id.as_deref().map(|user_id| {
                    // SDKs that keep traits only in `context.traits` (RudderStack's do)
                    // still give `users` its traits.
                    let traits = match message.context.get("traits") {
                        Some(Json::Object(traits)) if message.properties.is_empty() => {
                            let mut flat = Vec::with_capacity(traits.len());
                            self.flatten_properties(traits, &mut flat);
                            flat
                        }
                        _ => common[start..].to_vec(),
                    };
                    (user_id, self.latest_row(message, traits))
                });
                self.prefix_clashes(&mut common[start..], "traits", IDENTIFIES);
                out.push(row(
                    &mut observer,
                    TableName::fixed(&"identifies"),
                    id,
                    common,
                ));
                if let Some((user_id, latest)) = latest {
                    out.push(row(
                        &mut observer,
                        TableName::fixed(&"users"),
                        user_id,
                        latest,
                    ));
                }
            }
            MessageKind::Page => {
                push_text(
                    &mut common,
                    self.own(&"name"),
                    message.name.as_deref(),
                    false,
                );
                push_text(
                    &mut common,
                    self.own(&"category"),
                    message.category.as_deref(),
                    false,
                );
                self.properties(&message.properties, "properties", PAGES, &mut common);
                out.push(row(&mut observer, TableName::fixed(&"pages"), id, common));
            }
            MessageKind::Screen => {
                push_text(
                    &mut common,
                    self.own(&"name"),
                    message.name.as_deref(),
                    false,
                );
                self.properties(&message.properties, "properties", SCREENS, &mut common);
                out.push(row(&mut observer, TableName::fixed(&"screens"), id, common));
            }
            MessageKind::Group => {
                push_text(
                    &mut common,
                    self.own(&"group_id"),
                    message.group_id.as_deref(),
                    false,
                );
                let start = common.len();
                self.flatten_properties(&message.properties, &mut common);
                let latest = message
                    .group_id
                    .as_deref()
                    .map(|group_id| (group_id, self.latest_row(message, common[start..].to_vec())));
                self.prefix_clashes(&mut common[start..], "traits", GROUPS);
                out.push(row(&mut observer, TableName::fixed(&"groups"), id, common));
                if let Some((group_id, latest)) = latest {
                    out.push(row(
                        &mut observer,
                        TableName::fixed(&"accounts"),
                        group_id,
                        latest,
                    ));
                }
            }
            MessageKind::Alias => {
                push_text(
                    &mut common,
                    self.own(&"previous_id"),
                    message.previous_id.as_deref(),
                    false,
                );
                self.properties(&message.properties, "traits", ALIASES, &mut common);
                out.push(row(&mut observer, TableName::fixed(&"aliases"), id, common));
            }
        }
    }

    fn event_table(&mut self, raw_event: &str) -> TableName {
        if let Some(table) = self.tables.get(raw_event) {
            return table.clone();
        }
        let name = naming::normalise(raw_event);
        let table = if name.starts_with('_') || OWN_TABLES.contains(&name.as_str()) {
            naming::table_name(&format!("track_{name}"))
        } else {
            naming::table_name(&name)
        };
        if self.tables.len() >= CACHE_LIMIT {
            self.tables.clear();
        }
        self.tables.insert(raw_event.to_owned(), table.clone());
        table
    }

    /// Flattens properties or traits into a table whose own columns are `own`
    /// ([`own::columns_of`]), prefixed where they clash with them ([`prefix_clashes`]).
    fn properties<'m>(
        &mut self,
        object: &'m JsonObject<'_>,
        prefix: &str,
        own: OwnColumns,
        out: &mut Vec<Candidate<'m>>,
    ) {
        let start = out.len();
        self.flatten_properties(object, out);
        self.prefix_clashes(&mut out[start..], prefix, own);
    }

    /// Flattens properties or traits, unprefixed: the candidates of an identify or
    /// group call serve two tables, whose own columns differ.
    fn flatten_properties<'m>(&mut self, object: &'m JsonObject<'_>, out: &mut Vec<Candidate<'m>>) {
        let start = out.len();
        self.flatten(object, "", out);
        for candidate in &mut out[start..] {
            candidate.origin = 2;
        }
    }

    /// Flattens `object` under the raw path `root` (empty for top-level properties).
    fn flatten<'m>(
        &mut self,
        object: &'m JsonObject<'_>,
        root: &str,
        out: &mut Vec<Candidate<'m>>,
    ) {
        self.path.clear();
        self.path.push_str(root);
        self.flatten_into(object, out);
    }

    fn flatten_into<'m>(&mut self, object: &'m JsonObject<'_>, out: &mut Vec<Candidate<'m>>) {
        for (key, json) in object.iter() {
            let base = self.path.len();
            // `.` joins raw paths (the normaliser turns it into `_`), so a nested
            // `a.b` and a literal `a_b` stay distinguishable when they collide.
            if base > 0 {
                self.path.push('.');
            }
            self.path.push_str(key);
            match json {
                // Nothing to store: no column, as Segment and RudderStack do.
                Json::Null => {}
                Json::Object(inner) => self.flatten_into(inner, out),
                Json::Array(items) if items.is_empty() => {}
                leaf => {
                    if let Some(value) = value::value_of(leaf) {
                        let (raw, name, own) = self.column();
                        out.push(Candidate {
                            name,
                            raw: Some(raw),
                            value,
                            origin: 1,
                            own,
                        });
                    }
                }
            }
            self.path.truncate(base);
        }
    }

    /// The raw path being flattened (shared, so candidates need not copy it), its
    /// column name and the name's [`own_mask`].
    fn column(&mut self) -> (Rc<str>, ColumnName, u8) {
        if let Some((raw, (name, own))) = self.columns.get_key_value(self.path.as_str()) {
            return (Rc::clone(raw), name.clone(), *own);
        }
        let raw: Rc<str> = Rc::from(self.path.as_str());
        let name = ColumnName::from_normal(naming::normalise(&raw));
        let own = own_mask(name.as_str());
        if self.columns.len() >= CACHE_LIMIT {
            self.columns.clear();
        }
        self.columns.insert(Rc::clone(&raw), (name.clone(), own));
        (raw, name, own)
    }

    /// tracktable's own column `column`, as interned (see `own_names`).
    fn own(&mut self, column: &'static &'static str) -> ColumnName {
        let address = std::ptr::from_ref(column) as usize;
        if let Some((_, name)) = self.own_names.iter().find(|(at, _)| *at == address) {
            return name.clone();
        }
        // One entry per constant the router names its columns with: a few dozen.
        let name = ColumnName::own(column);
        self.own_names.push((address, name.clone()));
        name
    }

    /// A name equal to one of `own`'s columns (the row's table's own columns) gets
    /// `prefix` (`properties_id`), so a property never overwrites tracktable's columns.
    fn prefix_clashes(&mut self, candidates: &mut [Candidate<'_>], prefix: &str, own: OwnColumns) {
        for candidate in candidates {
            // (`timestamp` itself normalises to `timestamp_`, a reserved word made safe.)
            if candidate.own & own.bit == 0 {
                continue;
            }
            let raw = candidate.raw.as_deref().unwrap_or_default();
            self.path.clear();
            self.path.push_str(prefix);
            self.path.push('.');
            self.path.push_str(raw);
            let (raw, (name, mask)) = match self.prefixed.get_key_value(self.path.as_str()) {
                Some((raw, (name, mask))) => (Rc::clone(raw), (name.clone(), *mask)),
                None => {
                    let name = naming::column_name(&format!("{prefix}_{}", candidate.name));
                    let mask = own_mask(name.as_str());
                    let raw: Rc<str> = Rc::from(self.path.as_str());
                    if self.prefixed.len() >= CACHE_LIMIT {
                        self.prefixed.clear();
                    }
                    self.prefixed.insert(Rc::clone(&raw), (name.clone(), mask));
                    (raw, (name, mask))
                }
            };
            candidate.name = name;
            candidate.raw = Some(raw);
            candidate.own = mask;
        }
    }

    /// The candidates of a `users` or `accounts` row: the flattened `traits`, plus what
    /// decides which call is newest (`timestamp`, else `received_at`) and the message
    /// that set them. The row's key ([`Row::message_id`]) is the user or group id; the
    /// warehouse keeps, per id, the traits of the newest call (see
    /// `warehouse::sql::LATEST`).
    fn latest_row<'m>(
        &mut self,
        message: &'m Message<'_>,
        mut traits: Vec<Candidate<'m>>,
    ) -> Vec<Candidate<'m>> {
        self.prefix_clashes(&mut traits, "traits", LATEST);
        let mut latest = Vec::with_capacity(traits.len() + 3);
        latest.push(fixed_text(
            self.own(&"message_id"),
            message.message_id.as_ref(),
        ));
        push_text(
            &mut latest,
            self.own(&"received_at"),
            message.received_at.as_deref(),
            true,
        );
        let newest = message
            .timestamp
            .as_deref()
            .or(message.original_timestamp.as_deref())
            .or(message.received_at.as_deref());
        push_text(&mut latest, self.own(&"timestamp"), newest, true);
        latest.extend(traits);
        latest
    }
}

fn fixed_text(name: ColumnName, text: &str) -> Candidate<'_> {
    Candidate {
        name,
        raw: None,
        value: Typed::Borrowed(ValueRef::Varchar(text)),
        origin: 0,
        own: 0,
    }
}

fn push_text<'m>(
    out: &mut Vec<Candidate<'m>>,
    name: ColumnName,
    text: Option<&'m str>,
    timestamp: bool,
) {
    if let Some(text) = text {
        let value = if timestamp {
            value::text_value(text)
        } else {
            ValueRef::Varchar(text)
        };
        out.push(Candidate {
            name,
            raw: None,
            value: Typed::Borrowed(value),
            origin: 0,
            own: 0,
        });
    }
}

/// Whether a candidate's name is one of `before`'s or another candidate's.
///
/// Every row asks. Names are interned, and two interned names are equal exactly when
/// their interned addresses are (`ColumnName::interned_address`), so the check is on
/// addresses, in a table per thread reused from row to row: no name is hashed or
/// compared as text (hashing every name's text was a tenth of decode + route). Only a
/// row with a name the interner does not hold (past its budget) compares texts.
fn clashes(before: &[(ColumnName, Typed<'_>)], candidates: &[Candidate<'_>]) -> bool {
    use std::cell::RefCell;
    thread_local! {
        static SEEN: RefCell<AddressSet> = RefCell::default();
    }
    let names = || {
        before
            .iter()
            .map(|(name, _)| name)
            .chain(candidates.iter().map(|candidate| &candidate.name))
    };
    let by_address = SEEN.with(|cell| {
        cell.borrow_mut().repeats(
            before.len() + candidates.len(),
            names().map(ColumnName::interned_address),
        )
    });
    if let Some(repeats) = by_address {
        return repeats;
    }
    let mut exact =
        HashSet::with_capacity_and_hasher(before.len() + candidates.len(), RandomState::default());
    names().any(|name| !exact.insert(name.as_str()))
}

/// A set of addresses for one question at a time, emptied in O(1): a slot belongs to
/// the current question only when it carries the current stamp.
#[derive(Default)]
struct AddressSet {
    slots: Vec<(usize, u32)>,
    stamp: u32,
}

impl AddressSet {
    /// Whether `addresses` (at most `count` of them) hold one twice; `None` as soon as
    /// one is missing.
    fn repeats(
        &mut self,
        count: usize,
        addresses: impl Iterator<Item = Option<usize>>,
    ) -> Option<bool> {
        // At most half full, so probes stay short; only this prefix of the table is used.
        let size = (count * 2).next_power_of_two().max(64);
        if self.slots.len() < size {
            self.slots = vec![(0, 0); size];
            self.stamp = 0;
        }
        if self.stamp == u32::MAX {
            self.slots.iter_mut().for_each(|slot| *slot = (0, 0));
            self.stamp = 0;
        }
        self.stamp += 1;
        let (stamp, mask, bits) = (self.stamp, size - 1, size.trailing_zeros());
        for address in addresses {
            let address = address?;
            // Fibonacci hashing: the product's high bits mix every bit of the address.
            let mut index =
                ((address as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - bits)) as usize;
            loop {
                let slot = &mut self.slots[index];
                if slot.1 != stamp {
                    *slot = (address, stamp);
                    break;
                }
                if slot.0 == address {
                    return Some(true);
                }
                index = (index + 1) & mask;
            }
        }
        Some(false)
    }
}

/// Makes column names unique within a row, deterministically. Of candidates sharing a
/// name, fixed columns win, then context, then properties; within those, a raw path
/// already equal to the name, then the smallest raw path. Every other one gets a hash
/// suffix of its raw path. `before` are cells the row already has (a track's shared
/// cells: fixed and context, which win over its properties); their names are taken.
fn resolve<'m>(
    before: &[(ColumnName, Typed<'_>)],
    candidates: Vec<Candidate<'m>>,
) -> Vec<(ColumnName, Typed<'m>)> {
    if !clashes(before, &candidates) {
        // Collected in place: the cells are packed (`Cells::new`) before a row keeps them.
        return candidates
            .into_iter()
            .map(|candidate| (candidate.name, candidate.value))
            .collect();
    }
    let mut order: Vec<usize> = (0..candidates.len()).collect();
    order.sort_by(|&a, &b| {
        let (a, b) = (&candidates[a], &candidates[b]);
        let rank = |c: &Candidate| (c.origin, c.raw.as_deref() != Some(c.name.as_str()));
        a.name
            .cmp(&b.name)
            .then(rank(a).cmp(&rank(b)))
            .then(a.raw.cmp(&b.raw))
    });
    let mut taken: HashSet<String, RandomState> =
        HashSet::with_capacity_and_hasher(before.len() + candidates.len(), RandomState::default());
    taken.extend(before.iter().map(|(name, _)| name.as_str().to_owned()));
    let mut names: Vec<Option<ColumnName>> = vec![None; candidates.len()];
    // Winners first, so a suffixed name can never take a name a winner needs.
    let mut losers = Vec::new();
    for &index in &order {
        let name = &candidates[index].name;
        if taken.insert(name.as_str().to_owned()) {
            names[index] = Some(name.clone());
        } else {
            losers.push(index);
        }
    }
    for index in losers {
        let candidate = &candidates[index];
        let mut salt = candidate.raw.as_deref().unwrap_or_default().to_owned();
        loop {
            let name = naming::with_suffix(candidate.name.as_str(), &salt);
            if taken.insert(name.clone()) {
                names[index] = Some(ColumnName::from_normal(name));
                break;
            }
            salt.push('#');
        }
    }
    let mut cells = Vec::with_capacity(candidates.len());
    cells.extend(
        candidates
            .into_iter()
            .zip(names)
            .filter_map(|(candidate, name)| name.map(|name| (name, candidate.value))),
    );
    cells
}

/// The `_rejections` row that keeps a rejected item. Its message id is derived from
/// the item's position, so a replayed object does not keep it twice.
pub fn rejection_row(rejection: &Rejection) -> Row {
    let position = rejection.position;
    let mut columns = vec![
        (
            ColumnName::fixed(&"object"),
            Value::Varchar(Text::from(Arc::clone(&rejection.object))),
        ),
        (
            ColumnName::fixed(&"line"),
            Value::BigInt(position.line as i64),
        ),
        (
            ColumnName::fixed(&"element"),
            Value::BigInt(i64::from(position.element)),
        ),
        (
            ColumnName::fixed(&"code"),
            Value::Varchar(rejection.reason.code().into()),
        ),
        (
            ColumnName::fixed(&"reason"),
            Value::Varchar(rejection.reason.to_string().into()),
        ),
    ];
    if !rejection.raw.is_empty() {
        columns.push((
            ColumnName::fixed(&"raw"),
            Value::Varchar(rejection.raw.as_str().into()),
        ));
    }
    // The raw text of a refused line may hold anything: `Row::new` says it may hold NUL.
    Row::new(
        TableName::fixed(&"_rejections"),
        decode::derived_message_id(&rejection.object, position),
        Arc::clone(&rejection.object),
        position,
        columns,
    )
}

/// The JSON escape of U+0000: a parsed string can hold a NUL character only through it
/// (the parser refuses raw control characters in strings). Searched for in every line,
/// so the searcher is built once rather than per line.
static NUL_ESCAPE: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\\u0000"));

/// Decodes one object and routes every item: messages to their rows, rejections to
/// `_rejections` rows.
pub fn rows_for_object<R: Read>(
    reader: R,
    object: &Arc<str>,
    limits: &Limits,
    router: &mut Router,
    out: &mut Vec<Row>,
) -> DecodeSummary {
    let mut decoder = decode::ObjectDecoder::new(reader, object, limits);
    while rows_for_some(&mut decoder, usize::MAX, router, out, None) {}
    decoder.summary()
}

/// Decodes and routes about `items` more items of an object being decoded a part at a
/// time, giving every row's cells to `observer`, if given, as the rows are made: the
/// cells are at hand before they are packed, where a pass over the packed rows decoded
/// them all again. Returns whether any of the object is left.
pub fn rows_for_some(
    decoder: &mut decode::ObjectDecoder<'_>,
    items: usize,
    router: &mut Router,
    out: &mut Vec<Row>,
    mut observer: Option<&mut Observer>,
) -> bool {
    let object = Arc::clone(decoder.object());
    decoder.decode_some(items, &mut |item| {
        let start = out.len();
        match item {
            Decoded::Message {
                position,
                message,
                raw,
            } => {
                router.rows_for_item(
                    &message,
                    raw,
                    &object,
                    position,
                    out,
                    observer.as_deref_mut(),
                );
                if NUL_ESCAPE.find(raw.as_bytes()).is_none() {
                    for row in &mut out[start..] {
                        row.may_hold_nul = false;
                    }
                }
            }
            Decoded::Rejected(rejection) => {
                let row = rejection_row(&rejection);
                if let Some(observer) = observer.as_deref_mut() {
                    observer.observe([&row]);
                }
                out.push(row);
            }
        }
    })
}

/// A cell before packing, as [`Observer::observe_cells`] takes it.
fn cell_ref<'c>((name, value): &'c (ColumnName, Typed<'_>)) -> (&'c ColumnName, ValueRef<'c>) {
    (name, cells::CellValue::cell_value(value))
}

#[cfg(test)]
mod tests;
