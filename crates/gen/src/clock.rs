//! Time for generated traffic: a stream clock that starts at a date derived from the
//! seed (never the wall clock, so output is reproducible) and ISO-8601 formatting.

/// 2024-01-01T00:00:00Z in Unix milliseconds.
const EPOCH_2024_MS: i64 = 1_704_067_200_000;
const DAY_MS: i64 = 86_400_000;

/// The first `receivedAt` of a stream: some day of 2024 chosen by the seed, 08:00 UTC.
pub(super) fn start_ms(seed: u64) -> i64 {
    // FNV-1a of the seed's bytes: fixed forever, so a seed always starts on the same day.
    let hash = seed
        .to_le_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, &byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
        });
    let day = (hash % 365) as i64;
    EPOCH_2024_MS + day * DAY_MS + 8 * 3_600_000
}

/// Writes `ms` (Unix milliseconds) as `YYYY-MM-DDTHH:MM:SS.mmmZ`, without quotes.
pub(super) fn write_iso(buf: &mut Vec<u8>, ms: i64) {
    let days = ms.div_euclid(DAY_MS);
    let in_day = ms.rem_euclid(DAY_MS);
    let (year, month, day) = civil_from_days(days);
    let (hour, minute) = (in_day / 3_600_000, in_day / 60_000 % 60);
    let (second, milli) = (in_day / 1000 % 60, in_day % 1000);
    let year = year.clamp(0, 9999);
    push_digits(buf, year, 4);
    buf.push(b'-');
    push_digits(buf, month, 2);
    buf.push(b'-');
    push_digits(buf, day, 2);
    buf.push(b'T');
    push_digits(buf, hour, 2);
    buf.push(b':');
    push_digits(buf, minute, 2);
    buf.push(b':');
    push_digits(buf, second, 2);
    buf.push(b'.');
    push_digits(buf, milli, 3);
    buf.push(b'Z');
}

/// Writes `ms` as a date only, `YYYY-MM-DD`.
pub(super) fn write_date(buf: &mut Vec<u8>, ms: i64) {
    let (year, month, day) = civil_from_days(ms.div_euclid(DAY_MS));
    push_digits(buf, year.clamp(0, 9999), 4);
    buf.push(b'-');
    push_digits(buf, month, 2);
    buf.push(b'-');
    push_digits(buf, day, 2);
}

fn push_digits(buf: &mut Vec<u8>, value: i64, width: u32) {
    let mut divisor = 10i64.pow(width - 1);
    while divisor > 0 {
        buf.push(b'0' + (value / divisor % 10) as u8);
        divisor /= 10;
    }
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iso(ms: i64) -> String {
        let mut buf = Vec::new();
        write_iso(&mut buf, ms);
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn formats_known_instants() {
        assert_eq!(iso(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso(EPOCH_2024_MS), "2024-01-01T00:00:00.000Z");
        // 2024-02-29T23:59:59.999Z: a leap day.
        assert_eq!(iso(1_709_251_199_999), "2024-02-29T23:59:59.999Z");
        assert_eq!(iso(1_735_689_600_123), "2025-01-01T00:00:00.123Z");
        let mut buf = Vec::new();
        write_date(&mut buf, 1_709_251_199_999);
        assert_eq!(buf, b"2024-02-29");
    }

    #[test]
    fn start_depends_on_the_seed_only() {
        assert_eq!(start_ms(7), start_ms(7));
        assert!(start_ms(1) >= EPOCH_2024_MS);
        assert!(start_ms(1) < EPOCH_2024_MS + 366 * DAY_MS);
    }
}
