//! Event-time helpers: epoch milliseconds, RFC 3339 parsing and UTC calendar arithmetic.
//!
//! cs-pulse keeps every timestamp as UTC epoch milliseconds (`i64`). These helpers are
//! small and exact so that the core needs no date-time dependency.
//!
//! Three clocks meet at the engine's API, and each has its own type there so that one is
//! never passed for another: [`EventTime`] (when something happened, from the records and
//! the watermark), [`Tick`] (the end of an evaluation interval) and [`WallClock`] (the
//! process's clock, for `emitted_at`, idleness and the future-event rule).

/// Milliseconds in one second.
pub const SECOND_MS: i64 = 1_000;
/// Milliseconds in one hour.
pub const HOUR_MS: i64 = 3_600 * SECOND_MS;
/// Milliseconds in one UTC day.
pub const DAY_MS: i64 = 24 * HOUR_MS;
/// The last millisecond of year 9999 (`9999-12-31T23:59:59.999Z`): the latest time the
/// engine takes in. Any later event is refused like a future one, so that arithmetic on
/// event times cannot overflow.
pub const MAX_TIME_MS: i64 = 253_402_300_799_999;

/// An event time, epoch ms: an event's `occurred_at`, or a watermark (every event before it
/// is expected to have arrived).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventTime(pub i64);

/// The end of an evaluation interval, epoch ms: the tick `T` that evaluates events with
/// `occurred_at < T`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tick(pub i64);

/// The process's wall clock, epoch ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WallClock(pub i64);

impl WallClock {
    /// The wall clock now.
    pub fn now() -> Self {
        WallClock(now_ms())
    }
}

/// Days since 1970-01-01 for a proleptic Gregorian civil date (Howard Hinnant's algorithm).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date (year, month, day) of a day number since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The UTC day number (days since the epoch) holding `ms`.
pub fn utc_day(ms: i64) -> i64 {
    ms.div_euclid(DAY_MS)
}

/// Parses an RFC 3339 timestamp such as `2026-03-01T09:30:00Z` or
/// `2026-03-01T10:30:00.250+01:00` into epoch milliseconds.
///
/// ```
/// assert_eq!(cs_pulse::time::parse_rfc3339("1970-01-02T00:00:00Z"), Some(86_400_000));
/// assert_eq!(cs_pulse::time::parse_rfc3339("2026-13-01T00:00:00Z"), None);
/// ```
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<i64> {
        let part = s.get(from..to)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let year = num(0, 4)?;
    let month = num(5, 7)? as u32;
    let day = num(8, 10)? as u32;
    let (hour, minute, second) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut i = 19;
    let mut millis = 0i64;
    if b[i] == b'.' {
        let start = i + 1;
        let mut end = start;
        while end < b.len() && b[end].is_ascii_digit() {
            end += 1;
        }
        if end == start {
            return None;
        }
        let digits = &s[start..end.min(start + 3)];
        millis = digits.parse::<i64>().ok()? * 10i64.pow(3 - digits.len() as u32);
        i = end;
    }
    let offset_ms = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let (oh, om) = (num(i + 1, i + 3)?, num(i + 4, i + 6)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let off = (oh * 60 + om) * 60 * SECOND_MS;
            if *sign == b'+' {
                off
            } else {
                -off
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    Some(days * DAY_MS + ((hour * 60 + minute) * 60 + second) * SECOND_MS + millis - offset_ms)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Formats epoch milliseconds as RFC 3339 UTC with second precision.
///
/// ```
/// assert_eq!(cs_pulse::time::format_rfc3339(86_400_000), "1970-01-02T00:00:00Z");
/// ```
pub fn format_rfc3339(ms: i64) -> String {
    let (y, m, d) = civil_from_days(utc_day(ms));
    let secs = ms.rem_euclid(DAY_MS) / SECOND_MS;
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs / 60 % 60, secs % 60)
}

/// Parses a human duration: `45s`, `2m`, `1h`, `3d`, `500ms` or a bare number of seconds.
///
/// ```
/// assert_eq!(cs_pulse::time::parse_duration("45s"), Ok(std::time::Duration::from_secs(45)));
/// assert!(cs_pulse::time::parse_duration("soon").is_err());
/// ```
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits.parse().map_err(|_| format!("'{s}' is not a duration (examples: 45s, 2m, 1h)"))?;
    let d = std::time::Duration::from_secs;
    Ok(match unit {
        "" | "s" => d(n),
        "ms" => std::time::Duration::from_millis(n),
        "m" => d(n * 60),
        "h" => d(n * 3600),
        "d" => d(n * 86_400),
        _ => return Err(format!("'{s}' has an unknown unit '{unit}' (use ms, s, m, h or d)")),
    })
}

/// Wall-clock time now, in epoch milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trip() {
        for days in [-800_000, -1, 0, 1, 59, 365, 11_016, 20_000, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }

    #[test]
    fn rfc3339_forms() {
        assert_eq!(parse_rfc3339("2026-01-01T00:00:00Z"), Some(1_767_225_600_000));
        assert_eq!(parse_rfc3339("2026-01-01T01:00:00.5+01:00"), Some(1_767_225_600_500));
        assert_eq!(parse_rfc3339("2026-01-01T00:00:00.123456Z"), Some(1_767_225_600_123));
        assert_eq!(parse_rfc3339("2025-12-31T19:00:00-05:00"), Some(1_767_225_600_000));
        assert!(parse_rfc3339("2024-02-29T00:00:00Z").is_some());
        assert_eq!(parse_rfc3339("2023-02-29T00:00:00Z"), None);
        assert_eq!(parse_rfc3339("2026-01-01T00:00:00"), None);
        assert_eq!(parse_rfc3339("2026-01-01T25:00:00Z"), None);
        assert_eq!(parse_rfc3339("yesterday"), None);
        assert_eq!(parse_rfc3339("2026-01-01T00:00:00.Z"), None);
    }

    #[test]
    fn format_round_trip() {
        let t = 1_767_225_600_000 + 3 * HOUR_MS + 25 * 60_000 + 7_000;
        assert_eq!(format_rfc3339(t), "2026-01-01T03:25:07Z");
        assert_eq!(parse_rfc3339(&format_rfc3339(t)), Some(t));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("2m").unwrap().as_secs(), 120);
        assert_eq!(parse_duration("90").unwrap().as_secs(), 90);
        assert_eq!(parse_duration("250ms").unwrap().as_millis(), 250);
        assert!(parse_duration("5 weeks").is_err());
        assert!(parse_duration("").is_err());
    }
}
