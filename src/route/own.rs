//! own: the columns tracktable fills itself in each kind of table, named as in Segment's
//! and RudderStack's warehouse schemas, so queries written against those run here.
//!
//! A property or trait is renamed (`properties_name`, `traits_id`) only when its name
//! is one of *its own table's* columns listed here: a page has a `name` column, a
//! track event table does not, so `properties.name` of a track call is `name`.
//!
//! Invariant: every list is sorted and holds the table's key ([`KEY`]) and load time
//! ([`LOAD_TIME`]); [`ALL`] is their union, and the warehouse keeps room for all of it
//! under its column limit.

/// The key column of every event table (the message id) and of `users` / `accounts`
/// (the user or group id).
pub const KEY: &str = "id";

/// When the row was loaded: set by the warehouse in the load's transaction (a column
/// default), never by a message.
pub const LOAD_TIME: &str = "uuid_ts";

/// `tracks` and every track event's own table.
pub const TRACKS: &[&str] = &[
    "anonymous_id",
    "channel",
    "event",
    "event_text",
    "id",
    "original_timestamp",
    "received_at",
    "sent_at",
    "timestamp",
    "user_id",
    "uuid_ts",
];

pub const IDENTIFIES: &[&str] = &[
    "anonymous_id",
    "channel",
    "id",
    "original_timestamp",
    "received_at",
    "sent_at",
    "timestamp",
    "user_id",
    "uuid_ts",
];

pub const PAGES: &[&str] = &[
    "anonymous_id",
    "category",
    "channel",
    "id",
    "name",
    "original_timestamp",
    "received_at",
    "sent_at",
    "timestamp",
    "user_id",
    "uuid_ts",
];

pub const SCREENS: &[&str] = &[
    "anonymous_id",
    "channel",
    "id",
    "name",
    "original_timestamp",
    "received_at",
    "sent_at",
    "timestamp",
    "user_id",
    "uuid_ts",
];

pub const GROUPS: &[&str] = &[
    "anonymous_id",
    "channel",
    "group_id",
    "id",
    "original_timestamp",
    "received_at",
    "sent_at",
    "timestamp",
    "user_id",
    "uuid_ts",
];

pub const ALIASES: &[&str] = &[
    "anonymous_id",
    "channel",
    "id",
    "original_timestamp",
    "previous_id",
    "received_at",
    "sent_at",
    "timestamp",
    "user_id",
    "uuid_ts",
];

/// `users` and `accounts`: the newest traits per user or group id. `message_id` names
/// the call that set them and breaks ties between calls of one `timestamp`.
pub const LATEST: &[&str] = &["id", "message_id", "received_at", "timestamp", "uuid_ts"];

/// Every column named in any list above.
pub const ALL: [&str; 16] = [
    "anonymous_id",
    "category",
    "channel",
    "event",
    "event_text",
    "group_id",
    "id",
    "message_id",
    "name",
    "original_timestamp",
    "previous_id",
    "received_at",
    "sent_at",
    "timestamp",
    "user_id",
    "uuid_ts",
];

/// The columns tracktable fills in `table`: none in its bookkeeping tables (named with
/// a leading `_`), whose columns are the warehouse's own business.
pub fn columns_of(table: &str) -> &'static [&'static str] {
    match table {
        "identifies" => IDENTIFIES,
        "pages" => PAGES,
        "screens" => SCREENS,
        "groups" => GROUPS,
        "aliases" => ALIASES,
        "users" | "accounts" => LATEST,
        _ if table.starts_with('_') => &[],
        // `tracks` and every event table.
        _ => TRACKS,
    }
}

/// The Segment timestamps (and the load time): always `timestamp` columns, whatever
/// a batch holds; a value that does not parse goes to `_discards`.
const TIMESTAMPS: [&str; 5] = [
    "original_timestamp",
    "received_at",
    "sent_at",
    "timestamp",
    "uuid_ts",
];

/// Whether `column` of `table` is one of tracktable's timestamp columns.
pub fn is_timestamp(table: &str, column: &str) -> bool {
    TIMESTAMPS.contains(&column) && columns_of(table).contains(&column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_list_is_sorted_holds_the_key_and_load_time_and_is_in_all() {
        for list in [TRACKS, IDENTIFIES, PAGES, SCREENS, GROUPS, ALIASES, LATEST] {
            assert!(list.is_sorted(), "{list:?}");
            assert!(list.contains(&KEY) && list.contains(&LOAD_TIME), "{list:?}");
            assert!(list.iter().all(|column| ALL.contains(column)), "{list:?}");
        }
        assert!(ALL.is_sorted());
        let union: std::collections::BTreeSet<&str> =
            [TRACKS, IDENTIFIES, PAGES, SCREENS, GROUPS, ALIASES, LATEST]
                .concat()
                .into_iter()
                .collect();
        assert_eq!(union.into_iter().collect::<Vec<_>>(), ALL);
    }

    #[test]
    fn tables_map_to_their_lists() {
        assert_eq!(columns_of("order_completed"), TRACKS);
        assert_eq!(columns_of("tracks"), TRACKS);
        assert_eq!(columns_of("users"), LATEST);
        assert!(columns_of("_discards").is_empty());
        assert!(is_timestamp("pages", "sent_at"));
        assert!(
            !is_timestamp("users", "sent_at"),
            "a trait of users, not a Segment field"
        );
        assert!(!is_timestamp("_discards", "received_at"));
    }
}
