//! Why an input item did not become a message: rejections are data, not errors.
//!
//! A rejection travels with the object and position it came from and the start of its
//! raw text, so an operator can find and replay it. It never stops the batch and is
//! never dropped: it is counted and kept.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// How much of a rejected item's raw text is kept with the rejection.
pub const RAW_PREFIX_BYTES: usize = 1024;

/// Where an item sits in its object: the 1-based line it starts on and, for items
/// inside a top-level JSON array or a `{"batch": [...]}` envelope, its 1-based
/// position in that array (0 for a plain line).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Position {
    pub line: u64,
    pub element: u32,
}

impl Position {
    pub fn line(line: u64) -> Position {
        Position { line, element: 0 }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.element == 0 {
            write!(f, "line {}", self.line)
        } else {
            write!(f, "line {}, element {}", self.line, self.element)
        }
    }
}

/// Why one item was rejected. `code()` is the stable name used in metrics and in the
/// `_rejections` table; the `Display` text is for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum RejectReason {
    #[error("not JSON: {0}")]
    NotJson(String),
    #[error("not a JSON object")]
    NotAnObject,
    #[error("no \"type\" field")]
    MissingType,
    #[error("unknown message type {0:?}: expected track, identify, page, screen, group or alias")]
    UnknownType(String),
    #[error("track call without an \"event\" name")]
    TrackWithoutEvent,
    #[error("item is {bytes} bytes, over the {limit}-byte limit")]
    TooLarge { bytes: u64, limit: u64 },
    #[error("nested deeper than {limit} levels")]
    TooDeep { limit: usize },
    #[error("invalid UTF-8 at byte {offset} of the item")]
    InvalidUtf8 { offset: usize },
    #[error("field \"{field}\" must be {expected}")]
    InvalidField {
        field: Cow<'static, str>,
        expected: Cow<'static, str>,
    },
    /// A key (message id, or the user or group id keying `users` or `accounts`) longer
    /// than a key column holds.
    #[error("field \"{field}\" is {bytes} bytes, over the {limit}-byte limit of a key")]
    KeyTooLong {
        field: Cow<'static, str>,
        bytes: usize,
        limit: usize,
    },
    #[error("object unreadable from here on: {0}")]
    Unreadable(String),
    /// The tracking plan refuses the event (blocked, or not among the allowed).
    #[error("{0}")]
    NotInPlan(String),
    /// The tracking plan does not allow these properties of the event; the message
    /// loaded without them.
    #[error(
        "properties not in the tracking plan for {event:?} (loaded without them): {properties}"
    )]
    PropertiesNotInPlan { event: String, properties: String },
}

impl RejectReason {
    pub fn invalid_field(field: &'static str, expected: &'static str) -> RejectReason {
        RejectReason::InvalidField {
            field: Cow::Borrowed(field),
            expected: Cow::Borrowed(expected),
        }
    }

    /// Stable, low-cardinality name of the reason (metric label, `_rejections.reason`).
    /// Every reason's code, in a fixed order (metrics label them by these).
    pub const CODES: [&'static str; 13] = [
        "not_json",
        "not_an_object",
        "missing_type",
        "unknown_type",
        "track_without_event",
        "too_large",
        "too_deep",
        "invalid_utf8",
        "invalid_field",
        "unreadable",
        "not_in_plan",
        "properties_not_in_plan",
        "key_too_long",
    ];

    /// This reason's position in [`RejectReason::CODES`].
    pub fn index(&self) -> usize {
        let code = self.code();
        Self::CODES
            .iter()
            .position(|candidate| *candidate == code)
            .unwrap_or(Self::CODES.len() - 1)
    }

    pub fn code(&self) -> &'static str {
        match self {
            RejectReason::NotJson(_) => "not_json",
            RejectReason::NotAnObject => "not_an_object",
            RejectReason::MissingType => "missing_type",
            RejectReason::UnknownType(_) => "unknown_type",
            RejectReason::TrackWithoutEvent => "track_without_event",
            RejectReason::TooLarge { .. } => "too_large",
            RejectReason::TooDeep { .. } => "too_deep",
            RejectReason::InvalidUtf8 { .. } => "invalid_utf8",
            RejectReason::InvalidField { .. } => "invalid_field",
            RejectReason::Unreadable(_) => "unreadable",
            RejectReason::NotInPlan(_) => "not_in_plan",
            RejectReason::PropertiesNotInPlan { .. } => "properties_not_in_plan",
            RejectReason::KeyTooLong { .. } => "key_too_long",
        }
    }
}

/// A rejected item with everything needed to find it again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    /// The object (S3 key or file path) the item came from.
    pub object: Arc<str>,
    pub position: Position,
    pub reason: RejectReason,
    /// The first [`RAW_PREFIX_BYTES`] of the item, invalid UTF-8 replaced.
    pub raw: String,
}

impl Rejection {
    pub fn new(
        object: &Arc<str>,
        position: Position,
        reason: RejectReason,
        raw: &[u8],
    ) -> Rejection {
        let mut end = raw.len().min(RAW_PREFIX_BYTES);
        // Do not cut a UTF-8 sequence in half when the text is valid.
        while end < raw.len() && end > 0 && (raw[end] & 0b1100_0000) == 0b1000_0000 {
            end -= 1;
        }
        Rejection {
            object: Arc::clone(object),
            position,
            reason,
            raw: String::from_utf8_lossy(&raw[..end]).into_owned(),
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.object, self.position, self.reason)
    }
}

#[cfg(test)]
mod tests {
    use super::RejectReason;

    #[test]
    fn every_reason_has_its_own_slot_in_codes() {
        let reasons = [
            RejectReason::NotJson("x".into()),
            RejectReason::NotAnObject,
            RejectReason::MissingType,
            RejectReason::UnknownType("x".into()),
            RejectReason::TrackWithoutEvent,
            RejectReason::TooLarge { bytes: 2, limit: 1 },
            RejectReason::TooDeep { limit: 1 },
            RejectReason::InvalidUtf8 { offset: 0 },
            RejectReason::invalid_field("userId", "must be a string"),
            RejectReason::Unreadable("x".into()),
            RejectReason::NotInPlan("x".into()),
            RejectReason::PropertiesNotInPlan {
                event: "e".into(),
                properties: "p".into(),
            },
            RejectReason::KeyTooLong {
                field: "messageId".into(),
                bytes: 2,
                limit: 1,
            },
        ];
        let mut seen = std::collections::HashSet::new();
        for reason in &reasons {
            assert_eq!(RejectReason::CODES[reason.index()], reason.code());
            assert!(seen.insert(reason.index()), "{reason:?}");
        }
        assert_eq!(seen.len(), RejectReason::CODES.len());
    }
}
