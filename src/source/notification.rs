//! notification: what an SQS message body says about S3 objects.
//!
//! Three shapes announce new objects: S3's own event notification (`Records[]`), the
//! same wrapped in an SNS envelope (`{"Type": "Notification", "Message": "<json>"}`),
//! and EventBridge's `Object Created` event. S3 sends `s3:TestEvent` when a
//! notification is configured. Pure: no I/O, so every shape is unit-tested here.

use std::time::SystemTime;

use serde::Deserialize;

/// An S3 object a notification announces.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct S3Object {
    pub bucket: String,
    /// Decoded: S3 sends keys URL-encoded, with `+` for a space.
    pub key: String,
    pub size: u64,
    pub etag: Option<String>,
    pub version: Option<String>,
    pub sequencer: Option<String>,
    /// When S3 finished writing it (the record's `eventTime`, EventBridge's `time`),
    /// for freshness; `None` when absent or not a UTC RFC 3339 time.
    pub event_time: Option<SystemTime>,
}

impl S3Object {
    /// The object's stable name (rejections and derived message ids use it).
    pub fn name(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }

    /// What identifies this object's content, (name, version id or ETag): a second
    /// announcement with the same identity is the same upload and loads once.
    pub fn identity(&self) -> crate::warehouse::ObjectId {
        let content = self
            .version
            .clone()
            .or_else(|| self.etag.clone())
            .unwrap_or_default();
        (self.name(), content)
    }
}

/// What a message body is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notification {
    /// New objects to load (at least one).
    Created(Vec<S3Object>),
    /// `s3:TestEvent`, sent when a notification is configured: delete it.
    Test,
    /// A well-formed body that announces nothing to load (another event type, another
    /// service): delete it.
    Unrelated(String),
}

/// A body that cannot be understood: left in the queue for its redrive policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unparseable(pub String);

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "Records")]
    records: Option<Vec<Record>>,
    #[serde(rename = "Event")]
    event: Option<String>,
    /// SNS
    #[serde(rename = "Type")]
    kind: Option<String>,
    #[serde(rename = "Message")]
    message: Option<String>,
    /// EventBridge
    #[serde(rename = "detail-type")]
    detail_type: Option<String>,
    source: Option<String>,
    detail: Option<Detail>,
    time: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Record {
    #[serde(rename = "eventName", default)]
    event_name: String,
    /// Any JSON: an odd time must not make the body unreadable.
    #[serde(rename = "eventTime")]
    event_time: Option<serde_json::Value>,
    s3: Option<RecordS3>,
}

#[derive(Deserialize)]
struct RecordS3 {
    bucket: Bucket,
    object: RecordObject,
}

#[derive(Deserialize)]
struct Bucket {
    name: String,
}

#[derive(Deserialize)]
struct RecordObject {
    key: String,
    #[serde(default)]
    size: u64,
    #[serde(rename = "eTag")]
    etag: Option<String>,
    #[serde(rename = "versionId")]
    version: Option<String>,
    sequencer: Option<String>,
}

#[derive(Deserialize)]
struct Detail {
    bucket: Option<Bucket>,
    object: Option<DetailObject>,
}

#[derive(Deserialize)]
struct DetailObject {
    key: String,
    #[serde(default)]
    size: u64,
    etag: Option<String>,
    #[serde(rename = "version-id")]
    version: Option<String>,
    sequencer: Option<String>,
}

/// Parses one SQS message body.
pub fn parse(body: &str) -> Result<Notification, Unparseable> {
    parse_nested(body, 0)
}

fn parse_nested(body: &str, depth: u8) -> Result<Notification, Unparseable> {
    let envelope: Envelope = serde_json::from_str(body)
        .map_err(|error| Unparseable(format!("not a JSON notification: {error}")))?;
    if let Some(records) = envelope.records {
        let mut objects = Vec::new();
        let mut other = Vec::new();
        for record in records {
            if !record.event_name.starts_with("ObjectCreated:") {
                other.push(record.event_name);
                continue;
            }
            let Some(s3) = record.s3 else {
                return Err(Unparseable(format!(
                    "{} record without an s3 section",
                    record.event_name
                )));
            };
            objects.push(S3Object {
                bucket: s3.bucket.name,
                key: decode_key(&s3.object.key)?,
                size: s3.object.size,
                etag: s3.object.etag.map(unquote),
                version: s3.object.version.filter(|v| !v.is_empty() && v != "null"),
                sequencer: s3.object.sequencer,
                event_time: record
                    .event_time
                    .as_ref()
                    .and_then(serde_json::Value::as_str)
                    .and_then(event_time),
            });
        }
        return Ok(if objects.is_empty() {
            Notification::Unrelated(format!("S3 events {other:?}"))
        } else {
            Notification::Created(objects)
        });
    }
    if envelope.event.as_deref() == Some("s3:TestEvent") {
        return Ok(Notification::Test);
    }
    if envelope.kind.as_deref() == Some("Notification") {
        let Some(message) = envelope.message else {
            return Err(Unparseable("SNS notification without a Message".into()));
        };
        // An SNS envelope around an SNS envelope is not something AWS produces.
        if depth > 0 {
            return Err(Unparseable("SNS envelope nested in an SNS envelope".into()));
        }
        return parse_nested(&message, depth + 1);
    }
    if let Some(detail_type) = envelope.detail_type {
        if envelope.source.as_deref() != Some("aws.s3") || detail_type != "Object Created" {
            return Ok(Notification::Unrelated(format!(
                "EventBridge {detail_type:?} from {:?}",
                envelope.source.unwrap_or_default()
            )));
        }
        let detail = envelope
            .detail
            .ok_or_else(|| Unparseable("EventBridge Object Created event without detail".into()))?;
        let (Some(bucket), Some(object)) = (detail.bucket, detail.object) else {
            return Err(Unparseable(
                "EventBridge Object Created event without bucket or object".into(),
            ));
        };
        return Ok(Notification::Created(vec![S3Object {
            bucket: bucket.name,
            key: decode_key(&object.key)?,
            size: object.size,
            etag: object.etag.map(unquote),
            version: object.version.filter(|v| !v.is_empty()),
            sequencer: object.sequencer,
            event_time: envelope
                .time
                .as_ref()
                .and_then(serde_json::Value::as_str)
                .and_then(event_time),
        }]));
    }
    Err(Unparseable(
        "JSON, but neither an S3 event notification, an SNS envelope nor an EventBridge event"
            .into(),
    ))
}

/// S3 URL-encodes keys in notifications, with `+` for a space (`%2B` is a literal `+`).
fn decode_key(raw: &str) -> Result<String, Unparseable> {
    let spaced = raw.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .map(|key| key.into_owned())
        .map_err(|_| Unparseable(format!("object key {raw:?} is not UTF-8 once decoded")))
}

/// A notification's time (`2026-11-25T00:00:00.000Z`): S3 and EventBridge write UTC
/// RFC 3339, with or without fractions of a second. Anything else is no time at all: it
/// only costs the object its freshness observation, never its load.
pub fn event_time(text: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339(text).ok()
}

fn unquote(etag: String) -> String {
    etag.trim_matches('"').to_owned()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const S3_EVENT: &str = r#"{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"us-east-1",
        "eventTime":"2026-11-25T00:00:00.000Z","eventName":"ObjectCreated:Put",
        "s3":{"s3SchemaVersion":"1.0","bucket":{"name":"events","arn":"arn:aws:s3:::events"},
        "object":{"key":"raw/day+one/caf%C3%A9%2B1.json.gz","size":1234,"eTag":"\"abc\"",
        "versionId":"v1","sequencer":"0055AED6DCD90281E5"}}}]}"#;

    fn object(key: &str) -> S3Object {
        S3Object {
            bucket: "events".into(),
            key: key.into(),
            size: 1234,
            etag: Some("abc".into()),
            version: Some("v1".into()),
            sequencer: Some("0055AED6DCD90281E5".into()),
            event_time: Some(nov_25()),
        }
    }

    /// 2026-11-25T00:00:00Z.
    fn nov_25() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_564_800)
    }

    #[test]
    fn an_s3_event_names_its_objects_with_decoded_keys() {
        assert_eq!(
            parse(S3_EVENT),
            Ok(Notification::Created(vec![object(
                "raw/day one/café+1.json.gz"
            )]))
        );
        assert_eq!(
            object("a b/c").name(),
            "s3://events/a b/c",
            "the name keeps the decoded key"
        );
    }

    #[test]
    fn the_same_event_wrapped_by_sns_is_understood() {
        let wrapped = serde_json::json!({
            "Type": "Notification",
            "MessageId": "m",
            "TopicArn": "arn:aws:sns:us-east-1:1:t",
            "Message": S3_EVENT,
        })
        .to_string();
        assert_eq!(parse(&wrapped), parse(S3_EVENT));
    }

    #[test]
    fn an_eventbridge_object_created_event_is_understood() {
        let body = r#"{"version":"0","id":"1","detail-type":"Object Created","source":"aws.s3",
            "account":"1","time":"2026-11-25T00:00:00Z","region":"us-east-1","resources":[],
            "detail":{"version":"0","bucket":{"name":"events"},"object":{"key":"raw/day+one/caf%C3%A9%2B1.json.gz",
            "size":1234,"etag":"abc","version-id":"v1","sequencer":"0055AED6DCD90281E5"},"reason":"PutObject"}}"#;
        assert_eq!(
            parse(body),
            Ok(Notification::Created(vec![object(
                "raw/day one/café+1.json.gz"
            )]))
        );
    }

    #[test]
    fn test_events_and_other_events_are_recognised() {
        let test = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2026-11-25T00:00:00.000Z","Bucket":"events","RequestId":"r","HostId":"h"}"#;
        assert_eq!(parse(test), Ok(Notification::Test));
        let removed = S3_EVENT.replace("ObjectCreated:Put", "ObjectRemoved:Delete");
        assert!(matches!(parse(&removed), Ok(Notification::Unrelated(_))));
        let other = r#"{"detail-type":"EC2 Instance State-change Notification","source":"aws.ec2","detail":{}}"#;
        assert!(matches!(parse(other), Ok(Notification::Unrelated(_))));
    }

    #[test]
    fn garbage_is_unparseable_with_a_reason() {
        for body in [
            "not json",
            "[1,2]",
            r#"{"hello":"world"}"#,
            r#"{"Type":"Notification"}"#,
            r#"{"Records":[{"eventName":"ObjectCreated:Put"}]}"#,
            r#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"%FF"}}}]}"#,
        ] {
            let error = parse(body).expect_err(body);
            assert!(!error.0.is_empty(), "{body}");
        }
    }

    #[test]
    fn event_times_are_utc_rfc3339_and_anything_else_is_no_time() {
        assert_eq!(event_time("2026-11-25T00:00:00Z"), Some(nov_25()));
        assert_eq!(
            event_time("2026-11-25T00:00:01.250Z"),
            Some(nov_25() + Duration::from_millis(1_250))
        );
        for text in [
            "",
            "yesterday",
            "2026-11-25",
            "2026-11-25T00:00:00+01:00",
            "2026-13-25T00:00:00Z",
            "1795564800",
        ] {
            assert_eq!(event_time(text), None, "{text}");
        }
    }

    #[test]
    fn an_unreadable_event_time_still_announces_the_object() {
        let mut expected = object("raw/day one/café+1.json.gz");
        expected.event_time = None;
        for time in ["\"not a time\"", "null", "17", "{}"] {
            let body = S3_EVENT.replace("\"2026-11-25T00:00:00.000Z\"", time);
            assert_eq!(
                parse(&body),
                Ok(Notification::Created(vec![expected.clone()])),
                "{time}"
            );
        }
        let without = S3_EVENT.replace("\"eventTime\":\"2026-11-25T00:00:00.000Z\",", "");
        assert_eq!(parse(&without), Ok(Notification::Created(vec![expected])));
    }

    #[test]
    fn identity_prefers_the_version_then_the_etag() {
        let mut announced = object("k");
        assert_eq!(announced.identity(), ("s3://events/k".into(), "v1".into()));
        announced.version = None;
        assert_eq!(announced.identity().1, "abc");
    }
}
