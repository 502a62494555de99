//! The Segment message model: the six message types and the fields tracktable uses.
//!
//! Built from a parsed [`Json`] object. Everything a message needs to become rows is
//! checked here, so route never has to reject anything: a `Message` always routes.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::json::{Json, JsonObject};
use super::reject::RejectReason;

/// The six Segment message types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum MessageKind {
    Track,
    Identify,
    Page,
    Screen,
    Group,
    Alias,
}

impl MessageKind {
    pub fn from_type(value: &str) -> Option<MessageKind> {
        Some(match value {
            "track" => MessageKind::Track,
            "identify" => MessageKind::Identify,
            "page" => MessageKind::Page,
            "screen" => MessageKind::Screen,
            "group" => MessageKind::Group,
            "alias" => MessageKind::Alias,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Track => "track",
            MessageKind::Identify => "identify",
            MessageKind::Page => "page",
            MessageKind::Screen => "screen",
            MessageKind::Group => "group",
            MessageKind::Alias => "alias",
        }
    }
}

impl fmt::Display for MessageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One decoded Segment message, borrowing from its line.
#[derive(Debug, Clone, PartialEq)]
pub struct Message<'a> {
    pub kind: MessageKind,
    /// `messageId`, or a stable id derived from the object key and line when absent
    /// (see [`super::derived_message_id`]), so reloading the same object is idempotent.
    pub message_id: Cow<'a, str>,
    pub anonymous_id: Option<Cow<'a, str>>,
    pub user_id: Option<Cow<'a, str>>,
    /// The four Segment timestamps, as their raw strings; route types them.
    pub timestamp: Option<Cow<'a, str>>,
    pub original_timestamp: Option<Cow<'a, str>>,
    pub sent_at: Option<Cow<'a, str>>,
    pub received_at: Option<Cow<'a, str>>,
    /// `event` of a track call (required and non-empty for track).
    pub event: Option<Cow<'a, str>>,
    /// `name` of a page or screen call.
    pub name: Option<Cow<'a, str>>,
    /// `category` of a page call.
    pub category: Option<Cow<'a, str>>,
    /// `groupId` of a group call.
    pub group_id: Option<Cow<'a, str>>,
    /// `previousId` of an alias call.
    pub previous_id: Option<Cow<'a, str>>,
    /// `channel` (`web`, `mobile`, `server`, ...).
    pub channel: Option<Cow<'a, str>>,
    /// RudderStack's top-level `request_ip`: the `context_ip` of a message whose
    /// context has no `ip`.
    pub request_ip: Option<Cow<'a, str>>,
    pub context: JsonObject<'a>,
    /// `properties` for track, page and screen; `traits` for identify, group and alias.
    pub properties: JsonObject<'a>,
}

impl<'a> Message<'a> {
    /// Builds a message from a parsed top-level value. `fallback_id` is used when the
    /// message has no `messageId`; it is only called in that case.
    pub fn from_json(
        value: Json<'a>,
        fallback_id: impl FnOnce() -> String,
    ) -> Result<Message<'a>, RejectReason> {
        let Json::Object(object) = value else {
            return Err(RejectReason::NotAnObject);
        };
        let mut kind = None;
        let mut type_seen = false;
        let mut message = MessageFields::default();
        for (key, value) in object.0 {
            match key.as_ref() {
                "type" => {
                    type_seen = true;
                    let Json::Str(text) = value else {
                        return Err(RejectReason::UnknownType(value.to_json_text()));
                    };
                    kind = Some(
                        MessageKind::from_type(&text)
                            .ok_or_else(|| RejectReason::UnknownType(text.into_owned()))?,
                    );
                }
                "messageId" => message.message_id = identifier(value, "messageId")?,
                "anonymousId" => message.anonymous_id = identifier(value, "anonymousId")?,
                "userId" => message.user_id = identifier(value, "userId")?,
                "timestamp" => message.timestamp = text(value, "timestamp")?,
                "originalTimestamp" => {
                    message.original_timestamp = text(value, "originalTimestamp")?
                }
                "sentAt" => message.sent_at = text(value, "sentAt")?,
                "receivedAt" => message.received_at = text(value, "receivedAt")?,
                "event" => message.event = text(value, "event")?,
                "name" => message.name = text(value, "name")?,
                "category" => message.category = text(value, "category")?,
                "groupId" => message.group_id = identifier(value, "groupId")?,
                "previousId" => message.previous_id = identifier(value, "previousId")?,
                "channel" => message.channel = loose_text(value),
                "request_ip" => message.request_ip = loose_text(value),
                "context" => message.context = object_field(value, "context")?,
                "properties" => message.properties = object_field(value, "properties")?,
                "traits" => message.traits = object_field(value, "traits")?,
                _ => {}
            }
        }
        let Some(kind) = kind else {
            return Err(if type_seen {
                RejectReason::UnknownType(String::new())
            } else {
                RejectReason::MissingType
            });
        };
        if kind == MessageKind::Track
            && message
                .event
                .as_deref()
                .is_none_or(|event| event.trim().is_empty())
        {
            return Err(RejectReason::TrackWithoutEvent);
        }
        // What becomes a key column: the message id in every table, the user id in
        // `users` (identify), the group id in `accounts` (group).
        let keys = [
            (message.message_id.as_deref(), "messageId"),
            (
                message
                    .user_id
                    .as_deref()
                    .filter(|_| kind == MessageKind::Identify),
                "userId",
            ),
            (
                message
                    .group_id
                    .as_deref()
                    .filter(|_| kind == MessageKind::Group),
                "groupId",
            ),
        ];
        for (key, field) in keys {
            if let Some(key) = key
                && key.len() > MAX_KEY_BYTES
            {
                return Err(RejectReason::KeyTooLong {
                    field: Cow::Borrowed(field),
                    bytes: key.len(),
                    limit: MAX_KEY_BYTES,
                });
            }
        }
        let properties = match kind {
            MessageKind::Identify | MessageKind::Group | MessageKind::Alias => message.traits,
            MessageKind::Track | MessageKind::Page | MessageKind::Screen => message.properties,
        };
        Ok(Message {
            kind,
            message_id: message
                .message_id
                .unwrap_or_else(|| Cow::Owned(fallback_id())),
            anonymous_id: message.anonymous_id,
            user_id: message.user_id,
            timestamp: message.timestamp,
            original_timestamp: message.original_timestamp,
            sent_at: message.sent_at,
            received_at: message.received_at,
            event: message.event,
            name: message.name,
            category: message.category,
            group_id: message.group_id,
            previous_id: message.previous_id,
            channel: message.channel,
            request_ip: message.request_ip,
            context: message.context,
            properties,
        })
    }
}

#[derive(Default)]
struct MessageFields<'a> {
    message_id: Option<Cow<'a, str>>,
    anonymous_id: Option<Cow<'a, str>>,
    user_id: Option<Cow<'a, str>>,
    timestamp: Option<Cow<'a, str>>,
    original_timestamp: Option<Cow<'a, str>>,
    sent_at: Option<Cow<'a, str>>,
    received_at: Option<Cow<'a, str>>,
    event: Option<Cow<'a, str>>,
    name: Option<Cow<'a, str>>,
    category: Option<Cow<'a, str>>,
    group_id: Option<Cow<'a, str>>,
    previous_id: Option<Cow<'a, str>>,
    channel: Option<Cow<'a, str>>,
    request_ip: Option<Cow<'a, str>>,
    context: JsonObject<'a>,
    properties: JsonObject<'a>,
    traits: JsonObject<'a>,
}

/// The most bytes a key may have: the message id, and the user or group id that keys
/// `users` and `accounts`. It is Redshift's key column (`varchar(1024)`, counted in
/// bytes), and well inside what PostgreSQL's btree index takes in one entry (about
/// 2700 bytes, shared in `_discards` with a table and a column name), where a longer
/// key fails every load of its batch (`54000`) and would be retried forever. One limit
/// for both warehouses, as for names, so moving between them refuses nothing new. A
/// message whose key is longer is rejected here, never loaded.
pub const MAX_KEY_BYTES: usize = 1024;

/// The id fields, whose numbers decoding keeps as their literal text
/// ([`json::parse_keeping`](super::json::parse_keeping)).
pub const ID_FIELDS: [&str; 5] = [
    "messageId",
    "anonymousId",
    "userId",
    "groupId",
    "previousId",
];

/// Ids are strings, but SDKs send numbers too; both are kept as text, a number as its
/// literal text (never through `f64`, which would make two long numeric ids one). An
/// empty string counts as absent.
fn identifier<'a>(
    value: Json<'a>,
    field: &'static str,
) -> Result<Option<Cow<'a, str>>, RejectReason> {
    match value {
        Json::Null => Ok(None),
        Json::Str(text) if text.is_empty() => Ok(None),
        Json::Str(text) | Json::Number(text) => Ok(Some(text)),
        // Only a tree parsed without the id fields named holds these.
        Json::Int(number) => Ok(Some(Cow::Owned(number.to_string()))),
        Json::Float(_) => Ok(Some(Cow::Owned(value.to_json_text()))),
        _ => Err(RejectReason::invalid_field(field, "a string or a number")),
    }
}

fn text<'a>(value: Json<'a>, field: &'static str) -> Result<Option<Cow<'a, str>>, RejectReason> {
    match value {
        Json::Null => Ok(None),
        Json::Str(text) => Ok(Some(text)),
        _ => Err(RejectReason::invalid_field(field, "a string")),
    }
}

/// A field that only fills a column: any value but null is kept, a non-string as its
/// JSON text, so an odd `channel` never costs the message its other columns.
fn loose_text(value: Json<'_>) -> Option<Cow<'_, str>> {
    match value {
        Json::Null => None,
        Json::Str(text) => Some(text),
        other => Some(Cow::Owned(other.to_json_text())),
    }
}

fn object_field<'a>(value: Json<'a>, field: &'static str) -> Result<JsonObject<'a>, RejectReason> {
    match value {
        Json::Null => Ok(JsonObject::default()),
        Json::Object(object) => Ok(object),
        _ => Err(RejectReason::invalid_field(field, "an object")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::json::parse;

    fn message(text: &str) -> Result<Message<'_>, RejectReason> {
        Message::from_json(parse(text, 32).unwrap(), || "derived".to_owned())
    }

    #[test]
    fn track_with_all_common_fields() {
        let m = message(
            r#"{"type":"track","event":"Order Completed","messageId":"m1","anonymousId":"a1","userId":42,
                "timestamp":"2024-01-01T00:00:00Z","sentAt":"2024-01-01T00:00:01Z","receivedAt":"2024-01-01T00:00:02Z",
                "originalTimestamp":"2024-01-01T00:00:00Z","context":{"ip":"1.2.3.4"},"properties":{"total":9.5},
                "integrations":{"All":true}}"#,
        )
        .unwrap();
        assert_eq!(m.kind, MessageKind::Track);
        assert_eq!(m.message_id, "m1");
        assert_eq!(m.user_id.as_deref(), Some("42"));
        assert_eq!(m.event.as_deref(), Some("Order Completed"));
        assert_eq!(m.properties.get("total"), Some(&Json::Float(9.5)));
        assert_eq!(m.context.get("ip"), Some(&Json::Str("1.2.3.4".into())));
    }

    #[test]
    fn identify_and_group_take_traits() {
        let m = message(
            r#"{"type":"identify","userId":"u","traits":{"email":"e@x"},"properties":{"x":1}}"#,
        )
        .unwrap();
        assert_eq!(m.properties.get("email"), Some(&Json::Str("e@x".into())));
        assert_eq!(m.properties.get("x"), None);
        let g = message(r#"{"type":"group","groupId":"g1","traits":{"plan":"pro"}}"#).unwrap();
        assert_eq!(g.group_id.as_deref(), Some("g1"));
        assert_eq!(g.properties.len(), 1);
    }

    #[test]
    fn numeric_ids_keep_their_literal_text() {
        let parse = |text| crate::decode::json::parse_keeping(text, 32, &ID_FIELDS).unwrap();
        let message = |text| Message::from_json(parse(text), || "derived".to_owned()).unwrap();
        // Equal as f64: the ids must still differ.
        let a = message(r#"{"type":"track","event":"e","messageId":12345678901234567890123}"#);
        let b = message(r#"{"type":"track","event":"e","messageId":12345678901234567890124}"#);
        assert_eq!(a.message_id, "12345678901234567890123");
        assert_eq!(b.message_id, "12345678901234567890124");
        let m = message(
            r#"{"type":"group","messageId":9007199254740993,"userId":1.50,"anonymousId":-0,"groupId":1e3,"previousId":18446744073709551616}"#,
        );
        assert_eq!(m.message_id, "9007199254740993");
        assert_eq!(m.user_id.as_deref(), Some("1.50"));
        assert_eq!(m.anonymous_id.as_deref(), Some("-0"));
        assert_eq!(m.group_id.as_deref(), Some("1e3"));
        assert_eq!(m.previous_id.as_deref(), Some("18446744073709551616"));
    }

    #[test]
    fn keys_longer_than_a_key_column_are_rejected_by_their_bytes() {
        // 512 characters of 3 bytes: within 1024 characters, over 1024 bytes.
        let wide = "€".repeat(512);
        let at_limit = "x".repeat(MAX_KEY_BYTES);
        let too_long = |field: &'static str, bytes| {
            Err(RejectReason::KeyTooLong {
                field: field.into(),
                bytes,
                limit: MAX_KEY_BYTES,
            })
        };
        let track = format!(r#"{{"type":"track","event":"e","messageId":"{wide}"}}"#);
        assert_eq!(message(&track).map(|_| ()), too_long("messageId", 1536));
        let track = format!(r#"{{"type":"track","event":"e","messageId":"{at_limit}"}}"#);
        assert!(message(&track).is_ok());
        // A user id keys `users` for identify calls only; elsewhere it is a column.
        let identify = format!(r#"{{"type":"identify","userId":"{wide}"}}"#);
        assert_eq!(message(&identify).map(|_| ()), too_long("userId", 1536));
        let page = format!(r#"{{"type":"page","userId":"{wide}"}}"#);
        assert!(message(&page).is_ok());
        let group = format!(r#"{{"type":"group","groupId":"{wide}"}}"#);
        assert_eq!(message(&group).map(|_| ()), too_long("groupId", 1536));
        let track = format!(r#"{{"type":"track","event":"e","groupId":"{wide}"}}"#);
        assert!(message(&track).is_ok());
    }

    #[test]
    fn the_key_limit_is_redshifts_key_column() {
        assert_eq!(MAX_KEY_BYTES, crate::warehouse::redshift::sql::KEY_WIDTH);
    }

    #[test]
    fn missing_message_id_uses_the_fallback() {
        let m = message(r#"{"type":"alias","previousId":"old","userId":"new"}"#).unwrap();
        assert_eq!(m.message_id, "derived");
        assert_eq!(m.previous_id.as_deref(), Some("old"));
    }

    #[test]
    fn rejections() {
        assert_eq!(message("[1]"), Err(RejectReason::NotAnObject));
        assert_eq!(message(r#"{"event":"x"}"#), Err(RejectReason::MissingType));
        assert_eq!(
            message(r#"{"type":"tarck"}"#),
            Err(RejectReason::UnknownType("tarck".into()))
        );
        assert_eq!(
            message(r#"{"type":7}"#),
            Err(RejectReason::UnknownType("7".into()))
        );
        assert_eq!(
            message(r#"{"type":"track"}"#),
            Err(RejectReason::TrackWithoutEvent)
        );
        assert_eq!(
            message(r#"{"type":"track","event":"  "}"#),
            Err(RejectReason::TrackWithoutEvent)
        );
        assert_eq!(
            message(r#"{"type":"track","event":"e","properties":[1]}"#),
            Err(RejectReason::invalid_field("properties", "an object"))
        );
    }
}
