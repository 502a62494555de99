//! value: typed values, column types, and the rules between them.
//!
//! JSON gives tracktable booleans, numbers and strings; the warehouse wants boolean,
//! bigint, double precision, timestamp and varchar(n). [`value_of`] makes that choice
//! for one value (an ISO-8601 string is a timestamp, any other string is varchar), and
//! [`ColumnType`] knows how columns relate: what a column accepts and how varchar widens.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::decode::Json;

pub use super::text::Text;

/// Microseconds since 1970-01-01T00:00:00Z.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Timestamp(pub i64);

/// A warehouse column type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ColumnType {
    Boolean,
    BigInt,
    Double,
    Timestamp,
    /// `varchar(n)`, n in bytes.
    Varchar(u32),
}

/// One typed, non-null value. Text is a [`Text`]: up to 22 bytes inline, longer text
/// shared (a track call's common and context values appear in both its `tracks` row and
/// its own table's row, and a clone is then a count, not a copy).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Value {
    Boolean(bool),
    BigInt(i64),
    Double(f64),
    Timestamp(Timestamp),
    Varchar(Text),
}

/// A [`Value`] borrowed from a row's packed cells (`route::cells`): what every reader
/// of a row's cells sees.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ValueRef<'a> {
    Boolean(bool),
    BigInt(i64),
    Double(f64),
    Timestamp(Timestamp),
    Varchar(&'a str),
}

impl ValueRef<'_> {
    /// The narrowest column type that holds this value.
    pub fn column_type(&self) -> ColumnType {
        match self {
            ValueRef::Boolean(_) => ColumnType::Boolean,
            ValueRef::BigInt(_) => ColumnType::BigInt,
            ValueRef::Double(_) => ColumnType::Double,
            ValueRef::Timestamp(_) => ColumnType::Timestamp,
            ValueRef::Varchar(text) => {
                ColumnType::Varchar(u32::try_from(text.len()).unwrap_or(u32::MAX).max(1))
            }
        }
    }

    /// The value as text: how it is stored in a varchar column, and in `_discards`.
    pub fn to_text(&self) -> String {
        match self {
            ValueRef::Boolean(b) => b.to_string(),
            ValueRef::BigInt(i) => i.to_string(),
            ValueRef::Double(f) => f.to_string(),
            ValueRef::Timestamp(t) => t.to_string(),
            ValueRef::Varchar(text) => (*text).to_owned(),
        }
    }

    /// An owned copy.
    pub fn to_value(&self) -> Value {
        match *self {
            ValueRef::Boolean(b) => Value::Boolean(b),
            ValueRef::BigInt(i) => Value::BigInt(i),
            ValueRef::Double(f) => Value::Double(f),
            ValueRef::Timestamp(t) => Value::Timestamp(t),
            ValueRef::Varchar(text) => Value::Varchar(Text::new(text)),
        }
    }
}

impl ColumnType {
    /// The SQL type, e.g. `varchar(256)`.
    pub fn sql_name(&self) -> String {
        match self {
            ColumnType::Varchar(width) => format!("varchar({width})"),
            other => other.kind_name().to_owned(),
        }
    }

    /// The type without its width: what `explain` reports.
    pub fn kind_name(&self) -> &'static str {
        match self {
            ColumnType::Boolean => "boolean",
            ColumnType::BigInt => "bigint",
            ColumnType::Double => "double precision",
            ColumnType::Timestamp => "timestamp",
            ColumnType::Varchar(_) => "varchar",
        }
    }
}

impl Value {
    /// The value borrowed, as a row's cells give it.
    pub fn to_ref(&self) -> ValueRef<'_> {
        match self {
            Value::Boolean(b) => ValueRef::Boolean(*b),
            Value::BigInt(i) => ValueRef::BigInt(*i),
            Value::Double(f) => ValueRef::Double(*f),
            Value::Timestamp(t) => ValueRef::Timestamp(*t),
            Value::Varchar(text) => ValueRef::Varchar(text),
        }
    }

    /// The narrowest column type that holds this value.
    pub fn column_type(&self) -> ColumnType {
        self.to_ref().column_type()
    }

    /// The value as text: how it is stored in a varchar column, and in `_discards`.
    pub fn to_text(&self) -> String {
        self.to_ref().to_text()
    }
}

/// A typed value as route hands it to a row: borrowed from the message wherever the
/// message holds it as it will be stored (a row packs its cells' bytes, so an owned copy
/// of each text on the way would be an allocation and a free per long text); owned only
/// where it is made here, an array's or object's JSON text.
#[derive(Debug, Clone, PartialEq)]
pub enum Typed<'a> {
    Borrowed(ValueRef<'a>),
    Owned(Value),
}

impl Typed<'_> {
    /// An owned copy.
    pub fn to_value(&self) -> Value {
        match self {
            Typed::Borrowed(value) => value.to_value(),
            Typed::Owned(value) => value.clone(),
        }
    }
}

/// The typed value of a JSON value; `None` for null. Arrays and objects are the
/// flattener's business, but are given here as JSON text for completeness.
pub fn value_of<'a>(json: &'a Json<'_>) -> Option<Typed<'a>> {
    Some(Typed::Borrowed(match json {
        Json::Null => return None,
        Json::Bool(b) => ValueRef::Boolean(*b),
        Json::Int(i) => ValueRef::BigInt(*i),
        Json::Float(f) => ValueRef::Double(*f),
        // A number kept as its text (an integer outside `i64`) stays that text: a
        // varchar value. Rounded into a `double precision` column it would be a
        // different number, silently. Where its column is numeric already, the
        // loader's type check sends it to `_discards` with this exact text instead.
        Json::Number(text) => ValueRef::Varchar(text),
        Json::Str(text) => text_value(text),
        Json::Array(_) | Json::Object(_) => {
            return Some(Typed::Owned(Value::Varchar(json.to_json_text().into())));
        }
    }))
}

/// A string as a timestamp when it is one, else as varchar.
pub fn text_value(text: &str) -> ValueRef<'_> {
    match Timestamp::parse(text) {
        Some(timestamp) => ValueRef::Timestamp(timestamp),
        None => ValueRef::Varchar(text),
    }
}

impl Timestamp {
    /// Parses ISO-8601 / RFC 3339 dates and date-times:
    /// `YYYY-MM-DD` (midnight UTC) or
    /// `YYYY-MM-DD[T ]HH:MM[:SS[.f{1,9}]][Z|±HH:MM|±HHMM|±HH]`, no zone meaning UTC.
    /// Digits beyond microseconds are truncated. Anything else is not a timestamp.
    pub fn parse(text: &str) -> Option<Timestamp> {
        let b = text.as_bytes();
        if b.len() < 10 || b.len() > 40 {
            return None;
        }
        let year = digits(b, 0, 4)?;
        let month = digits(b, 5, 2)?;
        let day = digits(b, 8, 2)?;
        if b[4] != b'-'
            || b[7] != b'-'
            || year == 0
            || !(1..=12).contains(&month)
            || day == 0
            || day > days_in_month(year, month)
        {
            return None;
        }
        let days = days_from_civil(i64::from(year), month, day);
        if b.len() == 10 {
            return Some(Timestamp(days * 86_400 * 1_000_000));
        }
        let hour = digits(b, 11, 2)?;
        let minute = digits(b, 14, 2)?;
        if !(b[10] == b'T' || b[10] == b't' || b[10] == b' ')
            || b[13] != b':'
            || hour > 23
            || minute > 59
        {
            return None;
        }
        // Seconds are optional; a fraction only follows seconds.
        let (second, mut index) = if b.get(16) == Some(&b':') {
            (digits(b, 17, 2)?, 19)
        } else {
            (0, 16)
        };
        if second > 59 {
            return None;
        }
        let mut micros: i64 = 0;
        if index == 19 && b.get(index) == Some(&b'.') {
            index += 1;
            let start = index;
            while index < b.len() && b[index].is_ascii_digit() {
                if index - start < 6 {
                    micros = micros * 10 + i64::from(b[index] - b'0');
                }
                index += 1;
            }
            let fraction_digits = index - start;
            if fraction_digits == 0 || fraction_digits > 9 {
                return None;
            }
            for _ in fraction_digits..6 {
                micros *= 10;
            }
        }
        let offset_seconds: i64 = match b.get(index) {
            None => 0,
            Some(b'Z' | b'z') if index + 1 == b.len() => 0,
            Some(&sign @ (b'+' | b'-')) => {
                let rest = &b[index + 1..];
                let (hours, minutes) = match rest.len() {
                    2 => (digits(rest, 0, 2)?, 0),
                    4 => (digits(rest, 0, 2)?, digits(rest, 2, 2)?),
                    5 if rest[2] == b':' => (digits(rest, 0, 2)?, digits(rest, 3, 2)?),
                    _ => return None,
                };
                if hours > 23 || minutes > 59 {
                    return None;
                }
                let seconds = i64::from(hours * 3600 + minutes * 60);
                if sign == b'+' { seconds } else { -seconds }
            }
            _ => return None,
        };
        let seconds =
            days * 86_400 + i64::from(hour * 3600 + minute * 60 + second) - offset_seconds;
        Some(Timestamp(seconds * 1_000_000 + micros))
    }

    /// `YYYY-MM-DDTHH:MM:SS.ffffff` (UTC, no zone) as bytes, written digit by digit:
    /// the Redshift loader writes one per timestamp cell, and through `fmt` its seven
    /// padded integers cost most of the CSV writer's time. `None` for a year outside
    /// 0000–9999 (no parsed timestamp has one), which [`fmt::Display`] writes instead.
    pub fn iso_bytes(self) -> Option<[u8; 26]> {
        let seconds = self.0.div_euclid(1_000_000);
        let micros = self.0.rem_euclid(1_000_000);
        let of_day = seconds.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(seconds.div_euclid(86_400));
        if !(0..=9999).contains(&year) {
            return None;
        }
        let mut out = *b"0000-00-00T00:00:00.000000";
        let mut put = |end: usize, width: usize, mut value: i64| {
            for at in (end - width..end).rev() {
                // `value` is non-negative here, so each digit is 0-9.
                out[at] = b'0' + (value % 10) as u8;
                value /= 10;
            }
        };
        put(4, 4, year);
        put(7, 2, month);
        put(10, 2, day);
        put(13, 2, of_day / 3600);
        put(16, 2, of_day % 3600 / 60);
        put(19, 2, of_day % 60);
        put(26, 6, micros);
        Some(out)
    }
}

/// `2024-01-02T03:04:05.123456Z`: always UTC, always six fraction digits.
impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(bytes) = self.iso_bytes()
            && let Ok(text) = std::str::from_utf8(&bytes)
        {
            f.write_str(text)?;
            return f.write_str("Z");
        }
        let seconds = self.0.div_euclid(1_000_000);
        let micros = self.0.rem_euclid(1_000_000);
        let days = seconds.div_euclid(86_400);
        let of_day = seconds.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{micros:06}Z",
            of_day / 3600,
            of_day % 3600 / 60,
            of_day % 60
        )
    }
}

fn digits(bytes: &[u8], start: usize, count: usize) -> Option<u32> {
    let slice = bytes.get(start..start + count)?;
    slice.iter().try_fold(0u32, |value, &byte| {
        byte.is_ascii_digit()
            .then(|| value * 10 + u32::from(byte - b'0'))
    })
}

fn is_leap(year: u32) -> bool {
    (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(year) => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year =
        (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ts(text: &str) -> Option<String> {
        Timestamp::parse(text).map(|t| t.to_string())
    }

    #[test]
    fn parses_iso_8601_forms() {
        assert_eq!(
            ts("2024-01-02T03:04:05Z").as_deref(),
            Some("2024-01-02T03:04:05.000000Z")
        );
        assert_eq!(
            ts("2024-01-02T03:04:05.123Z").as_deref(),
            Some("2024-01-02T03:04:05.123000Z")
        );
        assert_eq!(
            ts("2024-01-02 03:04:05.123456789").as_deref(),
            Some("2024-01-02T03:04:05.123456Z")
        );
        assert_eq!(
            ts("2024-01-02T03:04:05+02:00").as_deref(),
            Some("2024-01-02T01:04:05.000000Z")
        );
        assert_eq!(
            ts("2024-01-02T03:04:05-0130").as_deref(),
            Some("2024-01-02T04:34:05.000000Z")
        );
        assert_eq!(
            ts("2024-01-02T23:30:00-01").as_deref(),
            Some("2024-01-03T00:30:00.000000Z")
        );
        assert_eq!(
            ts("1969-12-31T23:59:59.5Z").as_deref(),
            Some("1969-12-31T23:59:59.500000Z")
        );
        assert_eq!(Timestamp::parse("1970-01-01T00:00:00Z"), Some(Timestamp(0)));
        assert_eq!(
            ts("2024-02-29T00:00:00Z").as_deref(),
            Some("2024-02-29T00:00:00.000000Z")
        );
        // Dates alone, and minutes without seconds: what peers type as timestamps too.
        assert_eq!(
            ts("2023-05-15").as_deref(),
            Some("2023-05-15T00:00:00.000000Z")
        );
        assert_eq!(
            ts("2023-05-15T10:30").as_deref(),
            Some("2023-05-15T10:30:00.000000Z")
        );
        assert_eq!(
            ts("2023-05-15 10:30+02:00").as_deref(),
            Some("2023-05-15T08:30:00.000000Z")
        );
    }

    proptest! {
        /// Digit by digit, as `fmt` writes it with padded integers, for every instant
        /// `i64` microseconds hold (years past 9999 and before 0 take `fmt`'s way).
        #[test]
        fn timestamps_write_as_padded_integers(micros in any::<i64>(), near in -1i64 << 52..1 << 52) {
            for micros in [micros, near] {
                let seconds = micros.div_euclid(1_000_000);
                let of_day = seconds.rem_euclid(86_400);
                let (year, month, day) = civil_from_days(seconds.div_euclid(86_400));
                let expected = format!(
                    "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
                    of_day / 3600,
                    of_day % 3600 / 60,
                    of_day % 60,
                    micros.rem_euclid(1_000_000)
                );
                prop_assert_eq!(Timestamp(micros).to_string(), expected);
            }
        }
    }

    #[test]
    fn rejects_what_is_not_a_timestamp() {
        for text in [
            "2023-02-29T00:00:00Z",
            "2024-13-01T00:00:00Z",
            "2024-01-32T00:00:00Z",
            "2024-01-01T24:00:00Z",
            "2024-01-01T00:60:00Z",
            "2024-01-01T",
            "2024-01-01T00",
            "2024-01-01T00:0",
            "2024-01-01T00:00:0",
            "2024-01-01T00:00.5",
            "2024-01-01T00:00:00.Z",
            "2024-1-01",
            "20240101",
            "2024-01-01T00:00:00Zx",
            "2024-01-01T00:00:00+5",
            "0000-01-01T00:00:00Z",
            "USD 5",
            "2024/01/01 00:00:00",
        ] {
            assert_eq!(Timestamp::parse(text), None, "{text}");
        }
    }

    #[test]
    fn values_get_their_types() {
        use crate::decode::json::parse;
        let cases = [
            ("true", Some(Value::Boolean(true))),
            ("42", Some(Value::BigInt(42))),
            ("4.5", Some(Value::Double(4.5))),
            ("\"hello\"", Some(Value::Varchar("hello".into()))),
            (
                "\"2024-01-01T00:00:00Z\"",
                Some(Value::Timestamp(Timestamp(1_704_067_200_000_000))),
            ),
            ("[1,\"a\"]", Some(Value::Varchar("[1,\"a\"]".into()))),
            // Outside i64: the exact digits, as text, never a rounded double.
            (
                "12345678901234567890123",
                Some(Value::Varchar("12345678901234567890123".into())),
            ),
            (
                "-9223372036854775809",
                Some(Value::Varchar("-9223372036854775809".into())),
            ),
            ("9223372036854775807", Some(Value::BigInt(i64::MAX))),
            ("1e30", Some(Value::Double(1e30))),
            ("null", None),
        ];
        for (text, expected) in cases {
            let json = parse(text, 8).unwrap();
            assert_eq!(
                value_of(&json).map(|value| value.to_value()),
                expected,
                "{text}"
            );
        }
        assert_eq!(
            Value::Varchar("héllo".into()).column_type(),
            ColumnType::Varchar(6)
        );
        assert_eq!(
            Value::Varchar("".into()).column_type(),
            ColumnType::Varchar(1)
        );
        assert_eq!(ColumnType::Varchar(256).sql_name(), "varchar(256)");
        assert_eq!(ColumnType::Double.sql_name(), "double precision");
    }

    proptest! {
        #[test]
        fn timestamps_round_trip(micros in -62_135_596_800_000_000i64..253_402_300_799_999_999i64) {
            let text = Timestamp(micros).to_string();
            prop_assert_eq!(Timestamp::parse(&text), Some(Timestamp(micros)), "{}", text);
        }
    }
}
