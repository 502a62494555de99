//! Routing tests: each message kind, flattening, collisions; property tests for
//! uniqueness and completeness.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use proptest::prelude::*;

use super::*;
use crate::decode::json::parse;

fn route(text: &str) -> Vec<Row> {
    let message = Message::from_json(parse(text, 32).unwrap(), || "derived".into()).unwrap();
    let mut rows = Vec::new();
    Router::new().rows_for(&message, &Arc::from("obj"), Position::line(1), &mut rows);
    rows
}

fn columns(row: &Row) -> BTreeMap<String, Value> {
    row.cells()
        .map(|(name, value)| (name.as_str().to_owned(), value.to_value()))
        .collect()
}

#[test]
fn track_becomes_tracks_and_event_table_rows() {
    let rows = route(
        r#"{"type":"track","event":"Order Completed","messageId":"m1","userId":"u1","anonymousId":"a1",
            "timestamp":"2024-01-01T00:00:00Z","receivedAt":"not a time",
            "context":{"ip":"1.2.3.4","page":{"url":"https://x"},"userAgent":"UA"},
            "properties":{"orderId":"o1","revenue":25.5,"products":[{"sku":"s"}],"coupon":null,"meta":{},"qty":2,"gift":false}}"#,
    );
    assert_eq!(rows.len(), 2);
    let (tracks, event) = (&rows[0], &rows[1]);
    assert_eq!(tracks.table.as_str(), "tracks");
    assert_eq!(event.table.as_str(), "order_completed");
    assert!(rows.iter().all(|row| row.message_id == "m1"));
    let tracks = columns(tracks);
    assert_eq!(tracks["event"], Value::Varchar("order_completed".into()));
    assert_eq!(
        tracks["event_text"],
        Value::Varchar("Order Completed".into())
    );
    assert_eq!(tracks["user_id"], Value::Varchar("u1".into()));
    assert_eq!(
        tracks["timestamp"],
        Value::Timestamp(Timestamp(1_704_067_200_000_000))
    );
    // A common timestamp that does not parse stays as text (the warehouse discards it).
    assert_eq!(tracks["received_at"], Value::Varchar("not a time".into()));
    assert_eq!(
        tracks["context_page_url"],
        Value::Varchar("https://x".into())
    );
    assert_eq!(tracks["context_user_agent"], Value::Varchar("UA".into()));
    assert!(
        !tracks.contains_key("revenue"),
        "properties only in the event table"
    );
    let event = columns(event);
    assert_eq!(event["order_id"], Value::Varchar("o1".into()));
    assert_eq!(event["revenue"], Value::Double(25.5));
    assert_eq!(event["qty"], Value::BigInt(2));
    assert_eq!(event["gift"], Value::Boolean(false));
    assert_eq!(event["products"], Value::Varchar(r#"[{"sku":"s"}]"#.into()));
    assert!(
        !event.contains_key("meta"),
        "an empty object makes no column"
    );
    assert!(!event.contains_key("coupon"), "null values are absent");
    assert_eq!(event["context_ip"], Value::Varchar("1.2.3.4".into()));
}

#[test]
fn every_kind_routes_to_its_table() {
    let cases = [
        (
            r#"{"type":"identify","userId":"u","traits":{"email":"e@x","plan":"pro"}}"#,
            "identifies",
            vec!["email", "plan", "user_id"],
        ),
        (
            r#"{"type":"page","name":"Home","category":"Docs","properties":{"path":"/"}}"#,
            "pages",
            vec!["category", "name", "path"],
        ),
        (
            r#"{"type":"screen","name":"Cart","properties":{"items":3}}"#,
            "screens",
            vec!["items", "name"],
        ),
        (
            r#"{"type":"group","groupId":"g","traits":{"industry":"x"}}"#,
            "groups",
            vec!["group_id", "industry"],
        ),
        (
            r#"{"type":"alias","previousId":"old","userId":"new","traits":{"email":"e@x"}}"#,
            "aliases",
            vec!["email", "previous_id", "user_id"],
        ),
    ];
    for (text, table, expected) in cases {
        let rows = route(text);
        let latest = usize::from(table == "identifies" || table == "groups");
        assert_eq!(rows.len(), 1 + latest, "{text}");
        assert_eq!(rows[0].table.as_str(), table);
        let names: Vec<String> = columns(&rows[0]).into_keys().collect();
        assert_eq!(names, expected, "{text}");
    }
}

#[test]
fn events_named_like_our_tables_are_prefixed() {
    assert_eq!(
        route(r#"{"type":"track","event":"Pages"}"#)[1]
            .table
            .as_str(),
        "track_pages"
    );
    assert_eq!(
        route(r#"{"type":"track","event":"_rejections"}"#)[1]
            .table
            .as_str(),
        "track_rejections"
    );
    assert_eq!(
        route(r#"{"type":"track","event":"select"}"#)[1]
            .table
            .as_str(),
        "select_"
    );
}

#[test]
fn only_properties_shadowing_a_column_of_their_own_table_are_prefixed() {
    let rows = route(
        r#"{"type":"track","event":"e","userId":"real","properties":{"userId":"prop","received_at":"x","name":"n","category":"c","id":"p"}}"#,
    );
    let event = columns(&rows[1]);
    assert_eq!(event["user_id"], Value::Varchar("real".into()));
    assert_eq!(event["properties_user_id"], Value::Varchar("prop".into()));
    assert_eq!(event["properties_received_at"], Value::Varchar("x".into()));
    assert_eq!(event["properties_id"], Value::Varchar("p".into()));
    // An event table has no `name` or `category` of its own: no prefix.
    assert_eq!(event["name"], Value::Varchar("n".into()));
    assert_eq!(event["category"], Value::Varchar("c".into()));
    // A page has both.
    let page = route(r#"{"type":"page","name":"Home","properties":{"name":"n","category":"c"}}"#);
    let page = columns(&page[0]);
    assert_eq!(page["name"], Value::Varchar("Home".into()));
    assert_eq!(page["properties_name"], Value::Varchar("n".into()));
    assert_eq!(page["properties_category"], Value::Varchar("c".into()));
    // Identify and group traits: `name` is theirs to use.
    let identify =
        route(r#"{"type":"identify","userId":"u","traits":{"timestamp":"t","name":"Ada"}}"#);
    assert_eq!(
        columns(&identify[0])["timestamp_"],
        Value::Varchar("t".into())
    );
    assert_eq!(columns(&identify[0])["name"], Value::Varchar("Ada".into()));
    assert_eq!(columns(&identify[1])["name"], Value::Varchar("Ada".into()));
    let group = route(r#"{"type":"group","groupId":"g","traits":{"name":"Acme"}}"#);
    assert_eq!(columns(&group[0])["name"], Value::Varchar("Acme".into()));
    assert_eq!(columns(&group[1])["name"], Value::Varchar("Acme".into()));
}

#[test]
fn segment_columns_channel_and_the_request_ip() {
    let rows = route(
        r#"{"type":"track","event":"e","channel":"web","request_ip":"9.9.9.9","context":{"library":{"name":"js"}}}"#,
    );
    for row in &rows {
        assert_eq!(row.value("channel"), Some(Value::Varchar("web".into())));
        assert_eq!(
            row.value("context_ip"),
            Some(Value::Varchar("9.9.9.9".into()))
        );
    }
    // The context's own ip wins over the request's.
    let rows = route(r#"{"type":"page","request_ip":"9.9.9.9","context":{"ip":"1.1.1.1"}}"#);
    assert_eq!(
        rows[0].value("context_ip"),
        Some(Value::Varchar("1.1.1.1".into()))
    );
    // An odd channel is kept as its JSON text, never a reason to refuse the message.
    let rows = route(r#"{"type":"screen","name":"s","channel":5}"#);
    assert_eq!(rows[0].value("channel"), Some(Value::Varchar("5".into())));
}

#[test]
fn identify_without_traits_gives_users_the_context_traits() {
    let rows = route(
        r#"{"type":"identify","messageId":"m","userId":"u","context":{"traits":{"email":"e@x","plan":"pro"}}}"#,
    );
    let users = columns(&rows[1]);
    assert_eq!(users["email"], Value::Varchar("e@x".into()));
    assert_eq!(users["plan"], Value::Varchar("pro".into()));
    // identifies keeps them where they came from.
    let identifies = columns(&rows[0]);
    assert_eq!(
        identifies["context_traits_email"],
        Value::Varchar("e@x".into())
    );
    assert!(!identifies.contains_key("email"));
    // Traits of the call itself win over the context's.
    let rows = route(
        r#"{"type":"identify","userId":"u","traits":{"plan":"team"},"context":{"traits":{"email":"e@x"}}}"#,
    );
    let users = columns(&rows[1]);
    assert_eq!(users["plan"], Value::Varchar("team".into()));
    assert!(!users.contains_key("email"));
}

#[test]
fn empty_objects_and_arrays_make_no_column() {
    let rows =
        route(r#"{"type":"track","event":"e","properties":{"a":{},"b":[],"c":[1],"d":{"e":{}}}}"#);
    let event = columns(&rows[1]);
    assert!(!event.contains_key("a") && !event.contains_key("b") && !event.contains_key("d_e"));
    assert_eq!(event["c"], Value::Varchar("[1]".into()));
}

#[test]
fn collisions_in_one_row_resolve_deterministically() {
    let rows = route(
        r#"{"type":"track","event":"e","properties":{"userName":"camel","user_name":"snake","a":{"b":1},"a_b":2}}"#,
    );
    let event = columns(&rows[1]);
    // The raw name already in normal form keeps the plain name.
    assert_eq!(event["user_name"], Value::Varchar("snake".into()));
    let suffixed: Vec<&String> = event
        .keys()
        .filter(|k| k.starts_with("user_name_"))
        .collect();
    assert_eq!(suffixed.len(), 1);
    assert_eq!(event[suffixed[0]], Value::Varchar("camel".into()));
    assert_eq!(event["a_b"], Value::BigInt(2));
    // Same input, same names: order of keys does not matter.
    let swapped = route(
        r#"{"type":"track","event":"e","properties":{"user_name":"snake","a_b":2,"a":{"b":1},"userName":"camel"}}"#,
    );
    let mut first: Vec<_> = rows[1]
        .cells()
        .map(|(name, value)| (name, value.to_value()))
        .collect();
    let mut second: Vec<_> = swapped[1]
        .cells()
        .map(|(name, value)| (name, value.to_value()))
        .collect();
    first.sort_by(|a, b| a.0.cmp(&b.0));
    second.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(first, second);
    // A property colliding with a flattened context column.
    let context = route(
        r#"{"type":"track","event":"e","context":{"ip":"1.1.1.1"},"properties":{"context_ip":"2.2.2.2"}}"#,
    );
    let event = columns(&context[1]);
    assert_eq!(event["context_ip"], Value::Varchar("1.1.1.1".into()));
    assert_eq!(
        event
            .values()
            .filter(|v| **v == Value::Varchar("2.2.2.2".into()))
            .count(),
        1
    );
}

#[test]
fn hostile_names_become_safe_identifiers() {
    let rows = route(
        r#"{"type":"track","event":"\"; DROP TABLE users; --","properties":{"select":1,"🎉":2,"from":3,"x\"y":4}}"#,
    );
    let event = &rows[1];
    assert!(naming::is_normal(event.table.as_str()), "{}", event.table);
    for (name, _) in event.cells() {
        assert!(
            name.as_str()
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "{name}"
        );
    }
    let names: HashSet<String> = event.cells().map(|(n, _)| n.as_str().to_owned()).collect();
    assert!(names.contains("select_") && names.contains("from_") && names.contains("x_y"));
}

#[test]
fn rejections_become_rows_with_stable_ids() {
    let rejection = Rejection::new(
        &Arc::from("o.json"),
        Position::line(7),
        decode::RejectReason::MissingType,
        b"{\"a\":1}",
    );
    let row = rejection_row(&rejection);
    assert_eq!(row.table.as_str(), "_rejections");
    assert_eq!(
        row.message_id,
        decode::derived_message_id("o.json", Position::line(7))
    );
    let columns = columns(&row);
    assert_eq!(columns["code"], Value::Varchar("missing_type".into()));
    assert_eq!(columns["line"], Value::BigInt(7));
    assert_eq!(columns["raw"], Value::Varchar("{\"a\":1}".into()));
}

/// Raw keys that often collide after normalising.
fn colliding_key() -> impl Strategy<Value = String> {
    "[aAbB_ .-]{1,4}"
}

proptest! {
    #[test]
    fn distinct_raw_names_never_share_a_column(keys in proptest::collection::btree_set(colliding_key(), 1..12)) {
        let properties: serde_json::Map<String, serde_json::Value> =
            keys.iter().enumerate().map(|(i, k)| (k.clone(), serde_json::Value::from(i))).collect();
        let text = serde_json::json!({"type": "track", "event": "e", "userId": "u", "properties": properties}).to_string();
        let rows = route(&text);
        let names: Vec<String> = rows[1].cells().map(|(n, _)| n.as_str().to_owned()).collect();
        let unique: HashSet<&String> = names.iter().collect();
        prop_assert_eq!(unique.len(), names.len(), "{:?}", names);
        for name in &names {
            prop_assert!(name.len() <= crate::route::naming::MAX_NAME_BYTES && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'));
        }
    }

    #[test]
    fn every_scalar_leaf_lands_exactly_once(value in nested_object()) {
        let text = serde_json::json!({"type": "track", "event": "e", "properties": value}).to_string();
        let rows = route(&text);
        let leaves: usize = value.as_object().map_or(0, |map| map.values().map(count_leaves).sum());
        // Event table columns: event, event_text, then one per non-null leaf.
        prop_assert_eq!(rows[1].cell_count(), 2 + leaves);
    }
}

fn nested_object() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        "[a-z]{0,5}".prop_map(serde_json::Value::from),
        Just(serde_json::Value::Null),
        Just(serde_json::json!([1, 2])),
    ];
    let tree = leaf.prop_recursive(3, 24, 4, |inner| {
        proptest::collection::btree_map("[a-z]{1,3}", inner, 0..4)
            .prop_map(|map| serde_json::Value::Object(map.into_iter().collect()))
    });
    proptest::collection::btree_map("[a-z]{1,3}", tree, 0..5)
        .prop_map(|map| serde_json::Value::Object(map.into_iter().collect()))
}

/// Non-null scalars and non-empty arrays: what becomes a column.
fn count_leaves(value: &serde_json::Value) -> usize {
    match value {
        serde_json::Value::Object(map) => map.values().map(count_leaves).sum(),
        serde_json::Value::Array(items) if items.is_empty() => 0,
        serde_json::Value::Null => 0,
        _ => 1,
    }
}

#[test]
fn identify_and_group_also_keep_the_latest_traits_per_user_and_group() {
    let rows = route(
        r#"{"type":"identify","messageId":"m1","userId":"u1","timestamp":"2024-01-02T03:04:05Z","traits":{"plan":"pro","id":7}}"#,
    );
    let users = &rows[1];
    assert_eq!(users.table.as_str(), "users");
    assert_eq!(users.message_id, "u1", "keyed by the user id");
    let names: Vec<String> = columns(users).into_keys().collect();
    assert_eq!(names, ["message_id", "plan", "timestamp", "traits_id"]);
    // identifies has an `id` of its own too (the message id).
    assert_eq!(columns(&rows[0])["traits_id"], Value::BigInt(7));
    assert_eq!(columns(users)["message_id"], Value::Varchar("m1".into()));

    let rows = route(
        r#"{"type":"group","messageId":"m2","groupId":"g1","receivedAt":"2024-01-02T03:04:05Z","traits":{"seats":5}}"#,
    );
    let accounts = &rows[1];
    assert_eq!(
        (accounts.table.as_str(), accounts.message_id.as_str()),
        ("accounts", "g1")
    );
    assert_eq!(
        columns(accounts)["timestamp"],
        columns(accounts)["received_at"],
        "received_at stands in for a missing timestamp"
    );

    // Without a user id there is no user to keep traits for.
    let anonymous = route(r#"{"type":"identify","anonymousId":"a","traits":{"plan":"free"}}"#);
    assert_eq!(anonymous.len(), 1);
}

#[test]
fn only_rows_of_a_line_with_a_nul_escape_may_hold_a_nul() {
    let lines = [
        r#"{"type":"track","event":"Sent","messageId":"m1","properties":{"text":"a\u0000b"}}"#,
        r#"{"type":"track","event":"Sent","messageId":"m2","properties":{"text":"a\\u0000b"}}"#,
        r#"{"type":"track","event":"Sent","messageId":"m3","properties":{"text":"ab"}}"#,
        r#"{"type":"identify","messageId":"m4","userId":"u","traits":{"n":"x"}}"#,
        "not json",
    ];
    let mut rows = Vec::new();
    rows_for_object(
        lines.join("\n").as_bytes(),
        &Arc::from("obj"),
        &Limits::default(),
        &mut Router::new(),
        &mut rows,
    );
    let flags: Vec<(&str, &str, bool)> = rows
        .iter()
        .map(|row| {
            (
                row.table.as_str(),
                row.message_id.as_str(),
                row.may_hold_nul,
            )
        })
        .collect();
    let derived = rows.last().map(|row| row.message_id.as_str()).unwrap_or("");
    assert_eq!(
        flags,
        [
            ("tracks", "m1", true),
            ("sent", "m1", true),
            // An escaped backslash before `u0000` is no NUL, but checking it is harmless.
            ("tracks", "m2", true),
            ("sent", "m2", true),
            ("tracks", "m3", false),
            ("sent", "m3", false),
            ("identifies", "m4", false),
            ("users", "u", false),
            ("_rejections", derived, true),
        ]
    );
    let text = |row: &Row| {
        row.cells()
            .find(|(name, _)| name.as_str() == "text")
            .map(|(_, value)| value.to_text())
    };
    assert_eq!(text(&rows[1]).as_deref(), Some("a\0b"));
    assert_eq!(text(&rows[3]).as_deref(), Some("a\\u0000b"));
}

#[test]
fn a_tracks_row_shares_its_cells_with_the_event_row_and_properties_never_take_their_names() {
    let rows = route(
        r#"{"type":"track","event":"Sent","messageId":"m1","context":{"ip":"1.2.3.4"},
            "properties":{"context_ip":"from properties","event":"x","n":1}}"#,
    );
    let (tracks, event) = (&rows[0], &rows[1]);
    let (Some(shared), Some(also)) = (&tracks.shared, &event.shared) else {
        panic!("both rows of a track share their common cells");
    };
    assert!(Arc::ptr_eq(shared, also), "one copy, not two");
    assert!(tracks.own.is_empty());
    assert_eq!(tracks.cell_count(), shared.len());
    assert_eq!(event.cell_count(), shared.len() + event.own.len());
    let names: Vec<String> = event
        .cells()
        .map(|(name, _)| name.as_str().to_owned())
        .collect();
    let distinct: HashSet<&String> = names.iter().collect();
    assert_eq!(names.len(), distinct.len(), "{names:?}");
    assert_eq!(
        tracks.value("context_ip"),
        Some(Value::Varchar("1.2.3.4".into()))
    );
    assert_eq!(event.value("context_ip"), tracks.value("context_ip"));
    assert_eq!(
        event.value("properties_event"),
        Some(Value::Varchar("x".into()))
    );
    // The property that collided with the context's column kept its value under a
    // suffixed name of its own.
    let suffixed: Vec<String> = event
        .own
        .iter()
        .filter(|(name, _)| name.as_str().starts_with("context_ip_"))
        .map(|(name, _)| name.as_str().to_owned())
        .collect();
    assert_eq!(suffixed.len(), 1, "{names:?}");
    assert_eq!(
        event.value(&suffixed[0]),
        Some(Value::Varchar("from properties".into()))
    );
}

/// The clash check compares interned addresses, and texts wherever a name has none (a
/// fixed name, or one past the interner's budget): equal texts always clash.
#[test]
fn clashes_are_found_by_address_and_by_text() {
    let candidate = |name: ColumnName| Candidate {
        name,
        raw: None,
        origin: 2,
        own: 0,
        value: Typed::Borrowed(ValueRef::Boolean(true)),
    };
    let interned = |text: &str| candidate(naming::column_name(text));
    assert!(!clashes(&[], &[interned("a_b"), interned("a_c")]));
    assert!(clashes(
        &[],
        &[interned("a_b"), interned("a_c"), interned("a_b")]
    ));
    let fixed = candidate(ColumnName::fixed(&"user_id"));
    assert!(clashes(&[], &[interned("user_id"), fixed.clone()]));
    assert!(!clashes(&[], &[interned("user_idx"), fixed]));
    let before = [(
        ColumnName::own("event"),
        Typed::Borrowed(ValueRef::Boolean(false)),
    )];
    assert!(clashes(&before, &[interned("event")]));
    // Many rows through one table: every row starts empty.
    let wide: Vec<Candidate> = (0..300).map(|i| interned(&format!("p{i}"))).collect();
    for _ in 0..3 {
        assert!(!clashes(&[], &wide));
        assert!(!clashes(&[], &wide[..5]));
    }
}
